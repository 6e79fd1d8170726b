/* LeNet-5 as in the study: conv 5x5 'same', pool, conv 5x5 'valid', pool,
 * dense layers, with widths, activation, pooling and dtype as parameters.
 * Defaults give the study's teacher (61,706 parameters); channels = 3,8 and
 * dense = 50 give its student (11,246). */
#include <stdio.h>
#include <string.h>

#include "nnopt/nnopt.h"

#define MAX_LAYERS 8

static const nnopt_param_spec lenet5_params[] = {
    {"activation", NNOPT_PARAM_ENUM, "gelu", "activation after each hidden layer",
     "relu|gelu|gelu_erf|tanh|sigmoid|relu6|identity", 0, 0},
    {"pool", NNOPT_PARAM_ENUM, "avg", "2x2 pooling after each conv", "avg|max", 0, 0},
    {"channels", NNOPT_PARAM_INT_LIST, "6,16", "output channels of the conv layers", NULL, 1, 4096},
    {"dense", NNOPT_PARAM_INT_LIST, "120,84", "hidden dense layer sizes (may be empty)", NULL, 1, 1 << 20},
    {"kernel", NNOPT_PARAM_INT, "5", "conv kernel size", NULL, 1, 15},
    {"dtype", NNOPT_PARAM_ENUM, "f64", "parameter and activation precision", "f32|f64", 0, 0},
};

static nnopt_status build(const nnopt_host_api *h, const nnopt_config *cfg, nnopt_graph *g,
                          nnopt_node *logits) {
    int64_t channels[MAX_LAYERS], dense[MAX_LAYERS];
    int n_conv = h->config_int_list(cfg, "channels", channels, MAX_LAYERS);
    int n_dense = h->config_int_list(cfg, "dense", dense, MAX_LAYERS);
    if (n_conv < 1 || n_conv > MAX_LAYERS || n_dense < 0 || n_dense > MAX_LAYERS) {
        h->set_error("lenet5: channels needs 1 to %d values and dense at most %d", MAX_LAYERS,
                     MAX_LAYERS);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_act_kind act = (nnopt_act_kind)h->act_from_name(h->config_string(cfg, "activation"));
    int64_t k = h->config_int(cfg, "kernel");
    nnopt_dtype dtype = strcmp(h->config_string(cfg, "dtype"), "f64") == 0 ? NNOPT_F64 : NNOPT_F32;
    nnopt_pool2d_params pool = {
        .kind = strcmp(h->config_string(cfg, "pool"), "max") == 0 ? NNOPT_POOL_MAX : NNOPT_POOL_AVG,
        .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};

    nnopt_node x = h->graph_input(g, dtype);
    int64_t shape[NNOPT_MAX_DIMS];
    char name[32];
    for (int i = 0; i < n_conv; i++) {
        h->graph_shape(g, x, shape);
        int64_t wshape[4] = {channels[i], shape[1], k, k}, bshape[1] = {channels[i]};
        snprintf(name, sizeof name, "conv%d.weight", i + 1);
        nnopt_node w = h->graph_param(g, name, 4, wshape, NNOPT_INIT_GLOROT_UNIFORM);
        snprintf(name, sizeof name, "conv%d.bias", i + 1);
        nnopt_node b = h->graph_param(g, name, 1, bshape, NNOPT_INIT_ZEROS);
        /* The first conv keeps the image size ('same'), later ones shrink it ('valid'). */
        int32_t pad = i == 0 ? (int32_t)(k / 2) : 0;
        nnopt_conv2d_params conv = {1, 1, pad, pad, 1};
        x = h->graph_act(g, h->graph_conv2d(g, x, w, b, &conv), act);
        x = h->graph_pool2d(g, x, &pool);
    }
    x = h->graph_flatten(g, x);
    for (int i = 0; i <= n_dense; i++) {
        h->graph_shape(g, x, shape);
        int64_t out = i < n_dense ? dense[i] : h->graph_num_classes(g);
        int64_t wshape[2] = {out, shape[1]}, bshape[1] = {out};
        snprintf(name, sizeof name, "fc%d.weight", i + 1);
        nnopt_node w = h->graph_param(g, name, 2, wshape, NNOPT_INIT_GLOROT_UNIFORM);
        snprintf(name, sizeof name, "fc%d.bias", i + 1);
        nnopt_node b = h->graph_param(g, name, 1, bshape, NNOPT_INIT_ZEROS);
        x = h->graph_dense(g, x, w, b);
        if (i < n_dense) x = h->graph_act(g, x, act);
    }
    *logits = x;
    return x < 0 ? NNOPT_STATUS_INVALID_ARGUMENT : NNOPT_OK;
}

static const nnopt_model_vtable lenet5_vtable = {
    .struct_size = sizeof(nnopt_model_vtable),
    .build = build,
};

static const nnopt_plugin_desc lenet5_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_MODEL,
    .name = "lenet5",
    .version = "1.0.0",
    .description = "LeNet-5 for 28x28 images (the study's teacher by default)",
    .params = lenet5_params,
    .n_params = sizeof lenet5_params / sizeof lenet5_params[0],
    .vtable = &lenet5_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &lenet5_descriptor;
}
