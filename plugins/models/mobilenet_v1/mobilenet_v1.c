/* MobileNetV1: a 3x3 stem then 13 depthwise-separable blocks (3x3 depthwise
 * + BN + act, 1x1 pointwise + BN + act), global average pooling, dropout
 * and a classifier. cifar = false is the study's unadapted network (five
 * stride-2 stages take 32x32 down to 1x1); cifar = true keeps the stem and
 * at stride 1 so 32x32 inputs end at 2x2. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec mobilenet_params[] = {
    {"width", NNOPT_PARAM_FLOAT, "1.0", "width multiplier (alpha)", NULL, 0.05, 4},
    {"cifar", NNOPT_PARAM_BOOL, "false",
     "adapt strides to 32x32 inputs (stem stride 1) instead of shrinking them to 1x1", NULL, 0, 0},
    {"stem_stride", NNOPT_PARAM_INT, "0", "stem stride (0: 1 with cifar, else 2)", NULL, 0, 4},
    {"activation", NNOPT_PARAM_ENUM, "relu", "activation", "relu|relu6", 0, 0},
    {"dropout", NNOPT_PARAM_FLOAT, "0.001", "dropout before the classifier", NULL, 0, 0.99},
    {"bn_momentum", NNOPT_PARAM_FLOAT, "0.1", "batch norm momentum (PyTorch convention)", NULL, 0, 1},
    {"bn_eps", NNOPT_PARAM_FLOAT, "1e-5", "batch norm epsilon", NULL, 1e-12, 1},
    {"dtype", NNOPT_PARAM_ENUM, "f32", "parameter and activation precision", "f32|f64", 0, 0},
};

/* Output channels and stride of the 13 depthwise-separable blocks. */
static const struct {
    int channels, stride;
} blocks[13] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1}, {512, 2},  {512, 1},
                {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};

typedef struct builder {
    const nnopt_host_api *h;
    nnopt_graph *g;
    nnopt_act_kind act;
    double eps, momentum;
} builder;

static nnopt_node conv_bn_act(builder *b, const char *name, nnopt_node x, int64_t out, int k,
                              int stride, int depthwise) {
    int64_t shape[NNOPT_MAX_DIMS];
    b->h->graph_shape(b->g, x, shape);
    int64_t in = shape[1];
    int64_t wshape[4] = {out, depthwise ? 1 : in, k, k};
    char full[96];
    snprintf(full, sizeof full, "%s.conv.weight", name);
    nnopt_node w = b->h->graph_param(b->g, full, 4, wshape, NNOPT_INIT_KAIMING_NORMAL);
    nnopt_conv2d_params p = {stride, stride, k / 2, k / 2, depthwise ? (int32_t)in : 1};
    nnopt_node y = b->h->graph_conv2d(b->g, x, w, -1, &p);
    snprintf(full, sizeof full, "%s.bn", name);
    y = b->h->graph_batchnorm(b->g, full, y, b->eps, b->momentum);
    return b->h->graph_act(b->g, y, b->act);
}

static nnopt_status build(const nnopt_host_api *h, const nnopt_config *cfg, nnopt_graph *g,
                          nnopt_node *logits) {
    builder b = {h, g, strcmp(h->config_string(cfg, "activation"), "relu6") == 0 ? NNOPT_ACT_RELU6 : NNOPT_ACT_RELU,
                 h->config_float(cfg, "bn_eps"), h->config_float(cfg, "bn_momentum")};
    double alpha = h->config_float(cfg, "width");
    int cifar = h->config_bool(cfg, "cifar");
    int stem_stride = (int)h->config_int(cfg, "stem_stride");
    if (stem_stride == 0) stem_stride = cifar ? 1 : 2;
    nnopt_dtype dtype = strcmp(h->config_string(cfg, "dtype"), "f64") == 0 ? NNOPT_F64 : NNOPT_F32;
#define SCALED(c) ((int64_t)fmax(8.0, floor((c) * alpha + 0.5)))
    nnopt_node x = h->graph_input(g, dtype);
    x = conv_bn_act(&b, "stem", x, SCALED(32), 3, stem_stride, 0);
    for (int i = 0; i < 13; i++) {
        char name[48];
        int64_t channels;
        int64_t shape[NNOPT_MAX_DIMS];
        h->graph_shape(g, x, shape);
        channels = shape[1];
        snprintf(name, sizeof name, "block%d.depthwise", i + 1);
        x = conv_bn_act(&b, name, x, channels, 3, blocks[i].stride, 1);
        snprintf(name, sizeof name, "block%d.pointwise", i + 1);
        x = conv_bn_act(&b, name, x, SCALED(blocks[i].channels), 1, 1, 0);
    }
#undef SCALED
    x = h->graph_global_avg_pool(g, x);
    double p = h->config_float(cfg, "dropout");
    if (p > 0) x = h->graph_dropout(g, x, p);
    int64_t shape[NNOPT_MAX_DIMS];
    h->graph_shape(g, x, shape);
    int64_t classes = h->graph_num_classes(g);
    int64_t wshape[2] = {classes, shape[1]}, bshape[1] = {classes};
    nnopt_node w = h->graph_param(g, "fc.weight", 2, wshape, NNOPT_INIT_LECUN_UNIFORM);
    nnopt_node bias = h->graph_param(g, "fc.bias", 1, bshape, NNOPT_INIT_ZEROS);
    *logits = h->graph_dense(g, x, w, bias);
    return *logits < 0 ? NNOPT_STATUS_INVALID_ARGUMENT : NNOPT_OK;
}

static const nnopt_model_vtable mobilenet_vtable = {
    .struct_size = sizeof(nnopt_model_vtable),
    .build = build,
};

static const nnopt_plugin_desc mobilenet_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_MODEL,
    .name = "mobilenet_v1",
    .version = "1.0.0",
    .description = "MobileNetV1 (depthwise-separable), unadapted or CIFAR-adapted strides",
    .params = mobilenet_params,
    .n_params = sizeof mobilenet_params / sizeof mobilenet_params[0],
    .vtable = &mobilenet_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &mobilenet_descriptor;
}
