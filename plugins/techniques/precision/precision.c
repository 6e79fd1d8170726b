/* Moves a model to another floating-point precision before it is built on
 * the backend: parameters, activations and gradients all take the new dtype.
 * With init_from, the starting weights are converted from the earlier run's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec precision_params[] = {
    {"dtype", NNOPT_PARAM_ENUM, NULL, "the precision the model runs in", "f32|f64", 0, 0},
};

typedef struct precision {
    const nnopt_host_api *host;
    nnopt_dtype to, from;
} precision;

static const char *dtype_name(nnopt_dtype dtype) {
    return dtype == NNOPT_F64 ? "f64" : dtype == NNOPT_F32 ? "f32" : "?";
}

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    precision *p = calloc(1, sizeof *p);
    if (!p) return NNOPT_STATUS_OUT_OF_MEMORY;
    p->host = host;
    p->to = strcmp(host->config_string(cfg, "dtype"), "f64") == 0 ? NNOPT_F64 : NNOPT_F32;
    p->from = p->to;
    *out = p;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    free(ctx);
}

static nnopt_status before_train(void *ctx, nnopt_run *run) {
    precision *p = ctx;
    const nnopt_host_api *h = p->host;
    nnopt_graph *g = h->run_graph(run);
    p->from = h->graph_dtype(g);
    nnopt_status st = h->graph_set_dtype(g, p->to);
    if (st != NNOPT_OK)
        h->set_error("precision: cannot move run '%s' from %s to %s", h->run_name(run),
                     dtype_name(p->from), dtype_name(p->to));
    return st;
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    precision *p = ctx;
    (void)run;
    char value[64];
    snprintf(value, sizeof value, "%s -> %s", dtype_name(p->from), dtype_name(p->to));
    column(sink, "precision", value);
}

static const nnopt_technique_vtable precision_vtable = {
    .struct_size = sizeof(nnopt_technique_vtable),
    .create = create,
    .destroy = destroy,
    .before_train = before_train,
    .report = report,
};

static const nnopt_plugin_desc precision_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "precision",
    .version = "1.0.0",
    .description = "runs a model in another floating-point precision (f64 <-> f32)",
    .params = precision_params,
    .n_params = sizeof precision_params / sizeof precision_params[0],
    .vtable = &precision_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &precision_descriptor;
}
