/* Replaces one activation by another (gelu -> relu, say) in every node of a
 * model, before it is built on the backend. With init_from the model starts
 * from an earlier run's trained weights; the run's epochs fine-tune it, and
 * with epochs = 0 the swapped model is only evaluated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"

#define ACTIVATIONS "relu|gelu|gelu_erf|tanh|sigmoid|relu6|identity"

static const nnopt_param_spec activation_swap_params[] = {
    {"from", NNOPT_PARAM_ENUM, NULL, "the activation to replace", ACTIVATIONS, 0, 0},
    {"to", NNOPT_PARAM_ENUM, NULL, "its replacement", ACTIVATIONS, 0, 0},
};

typedef struct activation_swap {
    const nnopt_host_api *host;
    char from_name[16], to_name[16];
    int from, to;
    int rewritten;
} activation_swap;

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    const char *from = host->config_string(cfg, "from"), *to = host->config_string(cfg, "to");
    int from_kind = host->act_from_name(from), to_kind = host->act_from_name(to);
    if (from_kind < 0 || to_kind < 0) {
        host->set_error("activation_swap: unknown activation '%s'", from_kind < 0 ? from : to);
        return NNOPT_STATUS_CONFIG;
    }
    activation_swap *s = calloc(1, sizeof *s);
    if (!s) return NNOPT_STATUS_OUT_OF_MEMORY;
    s->host = host;
    snprintf(s->from_name, sizeof s->from_name, "%s", from);
    snprintf(s->to_name, sizeof s->to_name, "%s", to);
    s->from = from_kind;
    s->to = to_kind;
    *out = s;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    free(ctx);
}

static nnopt_status before_train(void *ctx, nnopt_run *run) {
    activation_swap *s = ctx;
    const nnopt_host_api *h = s->host;
    nnopt_graph *g = h->run_graph(run);
    int n = h->graph_node_count(g);
    s->rewritten = 0;
    for (nnopt_node i = 0; i < n; i++) {
        if (h->graph_node_act(g, i) != s->from) continue;
        nnopt_status st = h->graph_set_act(g, i, (nnopt_act_kind)s->to);
        if (st != NNOPT_OK) {
            h->set_error("activation_swap: cannot rewrite node %d of run '%s'", (int)i,
                         h->run_name(run));
            return st;
        }
        s->rewritten++;
    }
    if (s->rewritten == 0) {
        /* Nothing to swap is almost always a config mistake (the wrong model or name). */
        h->set_error("activation_swap: run '%s' has no %s activation to replace with %s",
                     h->run_name(run), s->from_name, s->to_name);
        return NNOPT_STATUS_CONFIG;
    }
    return NNOPT_OK;
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    activation_swap *s = ctx;
    (void)run;
    char value[64];
    snprintf(value, sizeof value, "%s -> %s, %d node%s", s->from_name, s->to_name, s->rewritten,
             s->rewritten == 1 ? "" : "s");
    column(sink, "activation_swap", value);
}

static const nnopt_technique_vtable activation_swap_vtable = {
    .struct_size = sizeof(nnopt_technique_vtable),
    .create = create,
    .destroy = destroy,
    .before_train = before_train,
    .report = report,
};

static const nnopt_plugin_desc activation_swap_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "activation_swap",
    .version = "1.0.0",
    .description = "replaces one activation by another in every node of a model",
    .params = activation_swap_params,
    .n_params = sizeof activation_swap_params / sizeof activation_swap_params[0],
    .vtable = &activation_swap_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &activation_swap_descriptor;
}
