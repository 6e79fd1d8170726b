/* Error reporting inside the core: a status plus one human-readable line that
 * names the place (file:line, path, plugin) and what is wrong. */
#ifndef NNOPT_CORE_ERROR_H
#define NNOPT_CORE_ERROR_H

#include "nnopt/host.h"
#include "nnopt/types.h"

typedef struct nnopt_error {
    nnopt_status status;
    char message[1024];
} nnopt_error;

/* Records the first error only (later calls keep it); returns st. err may be NULL. */
nnopt_status nnopt_error_set(nnopt_error *err, nnopt_status st, const char *fmt, ...)
    NNOPT_FMT_PRINTF(3, 4);
/* Like nnopt_error_set but overwrites any earlier message. */
nnopt_status nnopt_error_reset(nnopt_error *err, nnopt_status st, const char *fmt, ...)
    NNOPT_FMT_PRINTF(3, 4);
void nnopt_error_clear(nnopt_error *err);

/* The message a plugin left with host->set_error on this thread ("" if none);
 * taking it clears it. */
const char *nnopt_plugin_error_take(void);
void nnopt_plugin_error_setv(const char *fmt, va_list ap);

const char *nnopt_status_name(nnopt_status st);

#endif
