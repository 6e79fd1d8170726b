#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct nnopt_config {
    const nnopt_param_spec *specs;
    int n_specs;
    char **values; /* per spec; NULL = unset */
    char **where;  /* where each value was set */
    char owner[128];
};

const char *nnopt_param_type_name(nnopt_param_type type) {
    static const char *const names[NNOPT_PARAM_TYPE_COUNT] = {
        "int", "float", "bool", "string", "enum", "int list", "float list"};
    return (unsigned)type < NNOPT_PARAM_TYPE_COUNT ? names[type] : "?";
}

static int parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (isspace((unsigned char)*end)) end++;
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end)) end++;
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 1;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

static int enum_has(const char *choices, const char *value) {
    size_t len = strlen(value);
    for (const char *p = choices; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && strncmp(p, value, n) == 0) return 1;
        p += n;
        if (*p == '|') p++;
    }
    return 0;
}

/* Splits a comma-separated list; calls item() on each trimmed element. */
static int for_each_item(const char *list, int (*item)(const char *s, void *u), void *u) {
    char buf[64];
    const char *p = list;
    int count = 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *a = p, *b = p + n;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if ((size_t)(b - a) >= sizeof buf || b == a) return -1;
        memcpy(buf, a, (size_t)(b - a));
        buf[b - a] = '\0';
        if (!item(buf, u)) return -1;
        count++;
        p += n;
        if (!*p) break;
        p++;
    }
    return count;
}

typedef struct range_check {
    const nnopt_param_spec *spec;
    int ok;
} range_check;

static int in_range(const nnopt_param_spec *spec, double v) {
    return !(spec->min < spec->max) || (v >= spec->min && v <= spec->max);
}

static int check_list_item(const char *s, void *u) {
    range_check *rc = u;
    int64_t i;
    double f;
    int ok = rc->spec->type == NNOPT_PARAM_INT_LIST ? parse_int(s, &i) && (f = (double)i, 1)
                                                    : parse_float(s, &f);
    if (!ok || !in_range(rc->spec, f)) return rc->ok = 0;
    return 1;
}

int nnopt_param_value_ok(const nnopt_param_spec *spec, const char *value, char *why, size_t size) {
    int64_t i;
    double f;
    int b;
    switch (spec->type) {
    case NNOPT_PARAM_INT:
        if (!parse_int(value, &i)) return snprintf(why, size, "expected an integer"), 0;
        if (!in_range(spec, (double)i))
            return snprintf(why, size, "must be in [%g, %g]", spec->min, spec->max), 0;
        return 1;
    case NNOPT_PARAM_FLOAT:
        if (!parse_float(value, &f)) return snprintf(why, size, "expected a number"), 0;
        if (!in_range(spec, f))
            return snprintf(why, size, "must be in [%g, %g]", spec->min, spec->max), 0;
        return 1;
    case NNOPT_PARAM_BOOL:
        if (!parse_bool(value, &b)) return snprintf(why, size, "expected true or false"), 0;
        return 1;
    case NNOPT_PARAM_STRING:
        return 1;
    case NNOPT_PARAM_ENUM:
        if (!enum_has(spec->choices, value))
            return snprintf(why, size, "expected one of %s", spec->choices), 0;
        return 1;
    case NNOPT_PARAM_INT_LIST:
    case NNOPT_PARAM_FLOAT_LIST: {
        range_check rc = {spec, 1};
        if (!value[0]) return 1; /* an empty list */
        if (for_each_item(value, check_list_item, &rc) < 0 || !rc.ok) {
            const char *what = spec->type == NNOPT_PARAM_INT_LIST ? "integers" : "numbers";
            if (spec->min < spec->max)
                snprintf(why, size, "expected comma-separated %s in [%g, %g]", what, spec->min,
                         spec->max);
            else
                snprintf(why, size, "expected comma-separated %s", what);
            return 0;
        }
        return 1;
    }
    default:
        break;
    }
    snprintf(why, size, "unknown parameter type");
    return 0;
}

const char *nnopt_param_spec_check(const nnopt_param_spec *spec) {
    if (!spec->name || !spec->name[0]) return "has no name";
    if ((unsigned)spec->type >= NNOPT_PARAM_TYPE_COUNT) return "has an unknown type";
    if (spec->type == NNOPT_PARAM_ENUM && (!spec->choices || !spec->choices[0]))
        return "is an enum without choices";
    char why[128];
    if (spec->default_value && !nnopt_param_value_ok(spec, spec->default_value, why, sizeof why))
        return "has a default that fails its own type";
    return NULL;
}

nnopt_config *nnopt_config_create(const nnopt_param_spec *specs, int n_specs, const char *owner) {
    nnopt_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cfg->specs = specs;
    cfg->n_specs = n_specs;
    cfg->values = calloc((size_t)(n_specs ? n_specs : 1), sizeof *cfg->values);
    cfg->where = calloc((size_t)(n_specs ? n_specs : 1), sizeof *cfg->where);
    if (!cfg->values || !cfg->where) {
        nnopt_config_free(cfg);
        return NULL;
    }
    snprintf(cfg->owner, sizeof cfg->owner, "%s", owner);
    return cfg;
}

void nnopt_config_free(nnopt_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg->n_specs && cfg->values; i++) {
        free(cfg->values[i]);
        if (cfg->where) free(cfg->where[i]);
    }
    free(cfg->values);
    free(cfg->where);
    free(cfg);
}

static int find_spec(const nnopt_config *cfg, const char *key) {
    for (int i = 0; i < cfg->n_specs; i++)
        if (strcmp(cfg->specs[i].name, key) == 0) return i;
    return -1;
}

nnopt_status nnopt_config_set(nnopt_config *cfg, const char *key, const char *value,
                              const char *where, nnopt_error *err) {
    int i = find_spec(cfg, key);
    if (i < 0) {
        char known[512] = "";
        size_t used = 0;
        for (int k = 0; k < cfg->n_specs && used < sizeof known; k++)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", k ? ", " : "",
                                     cfg->specs[k].name);
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: unknown key '%s' in %s (known: %s)",
                               where, key, cfg->owner, cfg->n_specs ? known : "none");
    }
    char why[256];
    if (!nnopt_param_value_ok(&cfg->specs[i], value, why, sizeof why))
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: bad value '%s' for %s in %s: %s",
                               where, value, key, cfg->owner, why);
    free(cfg->values[i]);
    free(cfg->where[i]);
    cfg->values[i] = strdup(value);
    cfg->where[i] = strdup(where);
    if (!cfg->values[i] || !cfg->where[i])
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    return NNOPT_OK;
}

nnopt_status nnopt_config_finish(nnopt_config *cfg, const char *where, nnopt_error *err) {
    for (int i = 0; i < cfg->n_specs; i++) {
        if (cfg->values[i]) continue;
        if (!cfg->specs[i].default_value)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG, "%s: %s needs '%s' (%s)", where,
                                   cfg->owner, cfg->specs[i].name, cfg->specs[i].help);
        cfg->values[i] = strdup(cfg->specs[i].default_value);
    }
    return NNOPT_OK;
}

int nnopt_config_has(const nnopt_config *cfg, const char *key) {
    return find_spec(cfg, key) >= 0;
}

int nnopt_config_is_set(const nnopt_config *cfg, const char *key) {
    int i = find_spec(cfg, key);
    return i >= 0 && cfg->where[i] != NULL;
}

const char *nnopt_config_get(const nnopt_config *cfg, const char *key) {
    int i = find_spec(cfg, key);
    if (i < 0) return NULL;
    return cfg->values[i] ? cfg->values[i] : cfg->specs[i].default_value;
}

int64_t nnopt_config_get_int(const nnopt_config *cfg, const char *key) {
    const char *v = nnopt_config_get(cfg, key);
    int64_t out = 0;
    if (v) parse_int(v, &out);
    return out;
}

double nnopt_config_get_float(const nnopt_config *cfg, const char *key) {
    const char *v = nnopt_config_get(cfg, key);
    double out = 0;
    if (v) parse_float(v, &out);
    return out;
}

int nnopt_config_get_bool(const nnopt_config *cfg, const char *key) {
    const char *v = nnopt_config_get(cfg, key);
    int out = 0;
    if (v) parse_bool(v, &out);
    return out;
}

typedef struct list_out {
    int64_t *ints;
    double *floats;
    int max, n;
} list_out;

static int collect_int(const char *s, void *u) {
    list_out *o = u;
    int64_t v;
    if (!parse_int(s, &v)) return 0;
    if (o->n < o->max) o->ints[o->n] = v;
    o->n++;
    return 1;
}

static int collect_float(const char *s, void *u) {
    list_out *o = u;
    double v;
    if (!parse_float(s, &v)) return 0;
    if (o->n < o->max) o->floats[o->n] = v;
    o->n++;
    return 1;
}

int nnopt_config_get_int_list(const nnopt_config *cfg, const char *key, int64_t *out, int max) {
    const char *v = nnopt_config_get(cfg, key);
    list_out o = {out, NULL, max, 0};
    if (!v || !v[0]) return 0;
    return for_each_item(v, collect_int, &o) < 0 ? -1 : o.n;
}

int nnopt_config_get_float_list(const nnopt_config *cfg, const char *key, double *out, int max) {
    const char *v = nnopt_config_get(cfg, key);
    list_out o = {NULL, out, max, 0};
    if (!v || !v[0]) return 0;
    return for_each_item(v, collect_float, &o) < 0 ? -1 : o.n;
}

void nnopt_config_write(const nnopt_config *cfg, FILE *f) {
    for (int i = 0; i < cfg->n_specs; i++) {
        const char *v = cfg->values[i] ? cfg->values[i] : cfg->specs[i].default_value;
        if (v) fprintf(f, "%s = %s\n", cfg->specs[i].name, v);
    }
}
