/* Moves a model to another floating-point precision.
 * stage = train: before it is built on the backend, so parameters,
 *   activations and gradients all take the new dtype; with init_from, the
 *   starting weights are converted from the earlier run's.
 * stage = inference: the model trains in its own dtype and is converted
 *   after training; the run's final accuracy and inference time are then
 *   those of the converted model (the epoch table keeps the trained one's).
 * Conversions round to nearest, ties to even. bf16 is for inference: backends
 * run only forward ops in bf16, so a bf16 run that trains (stage = train,
 * epochs > 0) stops at check time with the list of ops it lacks. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec precision_params[] = {
    {"dtype", NNOPT_PARAM_ENUM, NULL,
     "the precision the model runs in (bf16: storage in bf16, arithmetic in f32; "
     "inference only)",
     "f32|f64|bf16", 0, 0},
    {"stage", NNOPT_PARAM_ENUM, "train",
     "train: the model is built, trained and evaluated in dtype; inference: it trains in its "
     "own dtype and is converted to dtype after training, for the final evaluation",
     "train|inference", 0, 0},
};

typedef struct precision {
    const nnopt_host_api *host;
    nnopt_dtype to, from;
    int after_training; /* stage = inference */
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
    p->after_training = strcmp(host->config_string(cfg, "stage"), "inference") == 0;
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
    if (p->after_training) return NNOPT_OK;
    nnopt_status st = h->graph_set_dtype(g, p->to);
    if (st != NNOPT_OK)
        h->set_error("precision: cannot move run '%s' from %s to %s", h->run_name(run),
                     nnopt_dtype_name(p->from), nnopt_dtype_name(p->to));
    return st;
}

static nnopt_status after_train(void *ctx, nnopt_run *run) {
    precision *p = ctx;
    const nnopt_host_api *h = p->host;
    if (!p->after_training) return NNOPT_OK;
    const size_t needed = offsetof(nnopt_host_api, run_set_dtype) + sizeof h->run_set_dtype;
    if (h->struct_size < needed || !h->run_set_dtype) {
        h->set_error("precision: stage = inference needs a newer nnopt core (run_set_dtype)");
        return NNOPT_STATUS_UNSUPPORTED;
    }
    /* On failure the core has said why (an op the backend lacks in that dtype). */
    return h->run_set_dtype(run, p->to);
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
    .after_train = after_train,
    .report = report,
};

static const nnopt_plugin_desc precision_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "precision",
    .version = "1.1.0",
    .description =
        "runs a model in another floating-point precision (f64, f32, bf16 for inference)",
    .params = precision_params,
    .n_params = sizeof precision_params / sizeof precision_params[0],
    .vtable = &precision_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &precision_descriptor;
}
