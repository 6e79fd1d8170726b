/* Parameter schemas. Every plugin (and every core INI section) describes the
 * keys it accepts with a table of nnopt_param_spec. The core validates INI
 * values against it, fills defaults, rejects unknown keys and prints it in
 * `nnopt plugins NAME`; plugins read the resolved values through the host API. */
#ifndef NNOPT_PARAMS_H
#define NNOPT_PARAMS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nnopt_param_type {
    NNOPT_PARAM_INT = 0,    /* 64-bit integer, optional [min, max] */
    NNOPT_PARAM_FLOAT,      /* double, optional [min, max] */
    NNOPT_PARAM_BOOL,       /* true|false|yes|no|on|off|1|0 */
    NNOPT_PARAM_STRING,     /* free text (paths, names) */
    NNOPT_PARAM_ENUM,       /* one of `choices`, written "a|b|c" */
    NNOPT_PARAM_INT_LIST,   /* comma-separated integers, each within [min, max] */
    NNOPT_PARAM_FLOAT_LIST, /* comma-separated numbers, each within [min, max] */
    NNOPT_PARAM_TYPE_COUNT
} nnopt_param_type;

typedef struct nnopt_param_spec {
    const char *name;
    nnopt_param_type type;
    const char *default_value; /* as it would be written in the INI; NULL = required */
    const char *help;
    const char *choices; /* ENUM only: "a|b|c" */
    double min, max;     /* checked when min < max */
} nnopt_param_spec;

/* Resolved, validated values of one INI section for one plugin instance.
 * Opaque: read it through nnopt_host_api's config_* functions. */
typedef struct nnopt_config nnopt_config;

#ifdef __cplusplus
}
#endif
#endif
