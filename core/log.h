/* Diagnostics on stderr. NNOPT_LOG_LEVEL (error|warn|info|debug) filters. */
#ifndef NNOPT_CORE_LOG_H
#define NNOPT_CORE_LOG_H

#include <stdarg.h>
#include "nnopt/host.h"

void nnopt_log(nnopt_log_level level, const char *fmt, ...) NNOPT_FMT_PRINTF(2, 3);
void nnopt_logv(nnopt_log_level level, const char *fmt, va_list ap);
void nnopt_log_set_level(nnopt_log_level level);

#endif
