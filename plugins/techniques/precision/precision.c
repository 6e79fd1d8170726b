/* Moves a model to another floating-point precision before it is built on
 * the backend: parameters, activations and gradients all take the new dtype.
 * With init_from, the starting weights are converted from the earlier run's
 * (to bf16: rounded to nearest, ties to even). bf16 is for inference: a run
 * with `epochs = 0` and `init_from` a trained f32 run evaluates the trained
 * model in bf16; backends run only forward ops in bf16, so a bf16 run that
 * trains stops at check time with the list of ops it lacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec precision_params[] = {
    {"dtype", NNOPT_PARAM_ENUM, NULL,
     "the precision the model runs in (bf16: storage in bf16, arithmetic in f32; "
     "inference only)",
     "f32|f64|bf16", 0, 0},
};

typedef struct precision {
    const nnopt_host_api *host;
    nnopt_dtype to, from;
} precision;

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    precision *p = calloc(1, sizeof *p);
    if (!p) return NNOPT_STATUS_OUT_OF_MEMORY;
    p->host = host;
    const char *dtype = host->config_string(cfg, "dtype");
    p->to = strcmp(dtype, "f64") == 0    ? NNOPT_F64
            : strcmp(dtype, "bf16") == 0 ? NNOPT_BF16
                                         : NNOPT_F32;
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
                     nnopt_dtype_name(p->from), nnopt_dtype_name(p->to));
    return st;
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    precision *p = ctx;
    (void)run;
    char value[64];
    snprintf(value, sizeof value, "%s -> %s", nnopt_dtype_name(p->from), nnopt_dtype_name(p->to));
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
    .description =
        "runs a model in another floating-point precision (f64, f32, bf16 for inference)",
    .params = precision_params,
    .n_params = sizeof precision_params / sizeof precision_params[0],
    .vtable = &precision_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &precision_descriptor;
}
