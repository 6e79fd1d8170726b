/* Schema-checked parameter values for one INI section (nnopt_config, opaque
 * to plugins). Values are validated when set, so getters cannot fail for a
 * parameter the schema declares. */
#ifndef NNOPT_CORE_CONFIG_H
#define NNOPT_CORE_CONFIG_H

#include <stdio.h>
#include "error.h"
#include "nnopt/params.h"

/* Reasons a schema entry is itself invalid (NULL when fine). */
const char *nnopt_param_spec_check(const nnopt_param_spec *spec);
/* Checks `value` against spec; on failure writes why into `why`. */
int nnopt_param_value_ok(const nnopt_param_spec *spec, const char *value, char *why, size_t size);
const char *nnopt_param_type_name(nnopt_param_type type);

/* owner: what the section is, for messages ("[training]", "backend 'cpu'"). */
nnopt_config *nnopt_config_create(const nnopt_param_spec *specs, int n_specs, const char *owner);
void nnopt_config_free(nnopt_config *cfg);

/* Sets key = value; `where` is "file:line" (or "--set") for messages. Unknown
 * keys and bad values are errors listing what is accepted. */
nnopt_status nnopt_config_set(nnopt_config *cfg, const char *key, const char *value,
                              const char *where, nnopt_error *err);
/* Fills defaults; errors for required parameters left unset. */
nnopt_status nnopt_config_finish(nnopt_config *cfg, const char *where, nnopt_error *err);

int nnopt_config_has(const nnopt_config *cfg, const char *key);    /* declared in the schema */
int nnopt_config_is_set(const nnopt_config *cfg, const char *key); /* given, not defaulted */
const char *nnopt_config_get(const nnopt_config *cfg, const char *key);
int64_t nnopt_config_get_int(const nnopt_config *cfg, const char *key);
double nnopt_config_get_float(const nnopt_config *cfg, const char *key);
int nnopt_config_get_bool(const nnopt_config *cfg, const char *key);
int nnopt_config_get_int_list(const nnopt_config *cfg, const char *key, int64_t *out, int max);
int nnopt_config_get_float_list(const nnopt_config *cfg, const char *key, double *out, int max);

/* Writes "key = value" lines for every parameter, in schema order. */
void nnopt_config_write(const nnopt_config *cfg, FILE *f);

#endif
