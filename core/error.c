#include "error.h"

#include <stdio.h>
#include <string.h>

static void error_vset(nnopt_error *err, nnopt_status st, const char *fmt, va_list ap) {
    err->status = st;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

nnopt_status nnopt_error_set(nnopt_error *err, nnopt_status st, const char *fmt, ...) {
    if (!err || err->status != NNOPT_OK) return st;
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, st, fmt, ap);
    va_end(ap);
    return st;
}

nnopt_status nnopt_error_reset(nnopt_error *err, nnopt_status st, const char *fmt, ...) {
    if (!err) return st;
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, st, fmt, ap);
    va_end(ap);
    return st;
}

void nnopt_error_clear(nnopt_error *err) {
    if (!err) return;
    err->status = NNOPT_OK;
    err->message[0] = '\0';
}

static _Thread_local char plugin_error[1024];

void nnopt_plugin_error_setv(const char *fmt, va_list ap) {
    vsnprintf(plugin_error, sizeof plugin_error, fmt, ap);
}

const char *nnopt_plugin_error_take(void) {
    static _Thread_local char taken[1024];
    memcpy(taken, plugin_error, sizeof taken);
    plugin_error[0] = '\0';
    return taken;
}

const char *nnopt_status_name(nnopt_status st) {
    switch (st) {
    case NNOPT_OK:
        return "ok";
    case NNOPT_STATUS_INVALID_ARGUMENT:
        return "invalid argument";
    case NNOPT_STATUS_UNSUPPORTED:
        return "unsupported";
    case NNOPT_STATUS_OUT_OF_MEMORY:
        return "out of memory";
    case NNOPT_STATUS_IO:
        return "I/O error";
    case NNOPT_STATUS_FORMAT:
        return "format error";
    case NNOPT_STATUS_CONFIG:
        return "config error";
    case NNOPT_STATUS_PLUGIN:
        return "plugin error";
    case NNOPT_STATUS_ABI_MISMATCH:
        return "ABI mismatch";
    case NNOPT_STATUS_INIT_FAILED:
        return "init failed";
    case NNOPT_STATUS_NUMERIC:
        return "numeric error";
    case NNOPT_STATUS_DEVICE:
        return "device error";
    case NNOPT_STATUS_INTERNAL:
        return "internal error";
    }
    return "unknown status";
}
