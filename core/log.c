#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int current_level = -1;

void nnopt_log_set_level(nnopt_log_level level) {
    current_level = (int)level;
}

static int level_from_env(void) {
    const char *v = getenv("NNOPT_LOG_LEVEL");
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; v && i < 4; i++)
        if (strcmp(v, names[i]) == 0) return i;
    return NNOPT_LOG_INFO;
}

void nnopt_logv(nnopt_log_level level, const char *fmt, va_list ap) {
    if (current_level < 0) current_level = level_from_env();
    if ((int)level > current_level) return;
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
    fputs("nnopt: ", stderr);
    fputs(prefix[level], stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void nnopt_log(nnopt_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnopt_logv(level, fmt, ap);
    va_end(ap);
}
