/* A complete model plugin: the README's example, built and loaded by the tests. */
#include "nnopt/nnopt.h"

static const nnopt_param_spec params[] = {
    {"hidden", NNOPT_PARAM_INT, "128", "hidden units", NULL, 1, 65536},
};

static nnopt_status build(const nnopt_host_api *h, const nnopt_config *cfg, nnopt_graph *g,
                          nnopt_node *logits) {
    nnopt_node x = h->graph_flatten(g, h->graph_input(g, NNOPT_F32));
    int64_t shape[NNOPT_MAX_DIMS];
    h->graph_shape(g, x, shape);
    int64_t hidden = h->config_int(cfg, "hidden"), classes = h->graph_num_classes(g);
    nnopt_node w1 = h->graph_param(g, "fc1.weight", 2, (int64_t[]){hidden, shape[1]}, NNOPT_INIT_GLOROT_UNIFORM);
    nnopt_node b1 = h->graph_param(g, "fc1.bias", 1, (int64_t[]){hidden}, NNOPT_INIT_ZEROS);
    nnopt_node w2 = h->graph_param(g, "fc2.weight", 2, (int64_t[]){classes, hidden}, NNOPT_INIT_GLOROT_UNIFORM);
    nnopt_node b2 = h->graph_param(g, "fc2.bias", 1, (int64_t[]){classes}, NNOPT_INIT_ZEROS);
    x = h->graph_act(g, h->graph_dense(g, x, w1, b1), NNOPT_ACT_RELU);
    *logits = h->graph_dense(g, x, w2, b2);
    return *logits < 0 ? NNOPT_STATUS_INVALID_ARGUMENT : NNOPT_OK;
}

static const nnopt_model_vtable vtable = {sizeof(nnopt_model_vtable), build};
static const nnopt_plugin_desc desc = {
    NNOPT_ABI_MAJOR, NNOPT_ABI_MINOR, sizeof(nnopt_plugin_desc), NNOPT_PLUGIN_MODEL,
    "mlp", "1.0.0", "a one-hidden-layer perceptron", params, 1, NULL, &vtable};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) { return &desc; }
