/* The CIFAR ResNet family: basic-block nets of depth 6n+2 (20, 32, 44, 56,
 * 110, ...) and bottleneck nets such as ResNet-152 with stage blocks
 * 3,8,36,3, as the study used them. Default: ResNet-56 (3 stages x 9 blocks,
 * 16/32/64 channels, projection shortcuts). */
#include <stdio.h>
#include <string.h>

#include "nnopt/nnopt.h"

#define MAX_STAGES 6

static const nnopt_param_spec resnet_params[] = {
    {"depth", NNOPT_PARAM_INT, "56",
     "layers: 6n+2 gives basic blocks [n,n,n]; 50, 101, 152 give bottleneck nets", NULL, 8, 1202},
    {"blocks", NNOPT_PARAM_INT_LIST, "", "blocks per stage (overrides depth), e.g. 6,6,6", NULL, 1, 200},
    {"block", NNOPT_PARAM_ENUM, "auto", "block type (auto: basic for 6n+2 depths)",
     "auto|basic|bottleneck", 0, 0},
    {"width", NNOPT_PARAM_INT, "16", "channels of the stem and first stage", NULL, 1, 1024},
    {"shortcut", NNOPT_PARAM_ENUM, "projection",
     "where shapes change: 1x1 conv + BN, or strided identity padded with zeros",
     "projection|identity", 0, 0},
    {"activation", NNOPT_PARAM_ENUM, "relu", "activation", "relu|gelu|gelu_erf|tanh|sigmoid|relu6", 0, 0},
    {"bn_momentum", NNOPT_PARAM_FLOAT, "0.1", "batch norm momentum (PyTorch convention)", NULL, 0, 1},
    {"bn_eps", NNOPT_PARAM_FLOAT, "1e-5", "batch norm epsilon", NULL, 1e-12, 1},
    {"dtype", NNOPT_PARAM_ENUM, "f32", "parameter and activation precision", "f32|f64", 0, 0},
};

typedef struct builder {
    const nnopt_host_api *h;
    nnopt_graph *g;
    nnopt_act_kind act;
    double eps, momentum;
    int projection;
} builder;

static int64_t channels_of(const builder *b, nnopt_node x) {
    int64_t shape[NNOPT_MAX_DIMS];
    b->h->graph_shape(b->g, x, shape);
    return shape[1];
}

/* conv (no bias, He init) + batch norm. */
static nnopt_node conv_bn(builder *b, const char *name, nnopt_node x, int64_t out, int k, int stride) {
    char full[96];
    int64_t wshape[4] = {out, channels_of(b, x), k, k};
    snprintf(full, sizeof full, "%s.conv.weight", name);
    nnopt_node w = b->h->graph_param(b->g, full, 4, wshape, NNOPT_INIT_KAIMING_NORMAL);
    nnopt_conv2d_params p = {stride, stride, k / 2, k / 2, 1};
    nnopt_node y = b->h->graph_conv2d(b->g, x, w, -1, &p);
    snprintf(full, sizeof full, "%s.bn", name);
    return b->h->graph_batchnorm(b->g, full, y, b->eps, b->momentum);
}

static nnopt_node shortcut(builder *b, const char *name, nnopt_node x, int64_t out, int stride) {
    if (stride == 1 && channels_of(b, x) == out) return x;
    char full[96];
    snprintf(full, sizeof full, "%s.shortcut", name);
    if (b->projection) return conv_bn(b, full, x, out, 1, stride);
    /* Option A: subsample and pad channels with zeros, as a fixed 1x1 conv. */
    int64_t wshape[4] = {out, channels_of(b, x), 1, 1};
    snprintf(full, sizeof full, "%s.shortcut.select", name);
    nnopt_node w = b->h->graph_buffer(b->g, full, 4, wshape, NNOPT_INIT_IDENTITY);
    nnopt_conv2d_params p = {stride, stride, 0, 0, 1};
    return b->h->graph_conv2d(b->g, x, w, -1, &p);
}

static nnopt_node basic_block(builder *b, const char *name, nnopt_node x, int64_t out, int stride) {
    char part[96];
    snprintf(part, sizeof part, "%s.1", name);
    nnopt_node y = b->h->graph_act(b->g, conv_bn(b, part, x, out, 3, stride), b->act);
    snprintf(part, sizeof part, "%s.2", name);
    y = conv_bn(b, part, y, out, 3, 1);
    return b->h->graph_act(b->g, b->h->graph_add(b->g, y, shortcut(b, name, x, out, stride)), b->act);
}

static nnopt_node bottleneck_block(builder *b, const char *name, nnopt_node x, int64_t planes,
                                   int stride) {
    char part[96];
    snprintf(part, sizeof part, "%s.1", name);
    nnopt_node y = b->h->graph_act(b->g, conv_bn(b, part, x, planes, 1, 1), b->act);
    snprintf(part, sizeof part, "%s.2", name);
    y = b->h->graph_act(b->g, conv_bn(b, part, y, planes, 3, stride), b->act);
    snprintf(part, sizeof part, "%s.3", name);
    y = conv_bn(b, part, y, planes * 4, 1, 1);
    return b->h->graph_act(b->g, b->h->graph_add(b->g, y, shortcut(b, name, x, planes * 4, stride)),
                           b->act);
}

/* Stage sizes and block type from depth/blocks/block. */
static int plan(const nnopt_host_api *h, const nnopt_config *cfg, int64_t *blocks, int *bottleneck) {
    int n = h->config_int_list(cfg, "blocks", blocks, MAX_STAGES);
    const char *block = h->config_string(cfg, "block");
    int64_t depth = h->config_int(cfg, "depth");
    if (n > MAX_STAGES) return -1;
    if (n == 0) {
        static const int64_t b50[] = {3, 4, 6, 3}, b101[] = {3, 4, 23, 3}, b152[] = {3, 8, 36, 3};
        const int64_t *known = depth == 50 ? b50 : depth == 101 ? b101 : depth == 152 ? b152 : NULL;
        if (known && strcmp(block, "basic") != 0) {
            memcpy(blocks, known, 4 * sizeof *blocks);
            *bottleneck = 1;
            return 4;
        }
        if ((depth - 2) % 6 != 0) return -1;
        for (int i = 0; i < 3; i++) blocks[i] = (depth - 2) / 6;
        n = 3;
    }
    *bottleneck = strcmp(block, "bottleneck") == 0;
    return n;
}

static nnopt_status build(const nnopt_host_api *h, const nnopt_config *cfg, nnopt_graph *g,
                          nnopt_node *logits) {
    int64_t blocks[MAX_STAGES];
    int bottleneck = 0;
    int stages = plan(h, cfg, blocks, &bottleneck);
    if (stages < 1) {
        h->set_error("resnet: depth %lld is neither 6n+2 nor one of 50, 101, 152; give blocks = ...",
                     (long long)h->config_int(cfg, "depth"));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    builder b = {h, g, (nnopt_act_kind)h->act_from_name(h->config_string(cfg, "activation")),
                 h->config_float(cfg, "bn_eps"), h->config_float(cfg, "bn_momentum"),
                 strcmp(h->config_string(cfg, "shortcut"), "projection") == 0};
    nnopt_dtype dtype = strcmp(h->config_string(cfg, "dtype"), "f64") == 0 ? NNOPT_F64 : NNOPT_F32;
    int64_t width = h->config_int(cfg, "width");
    nnopt_node x = h->graph_input(g, dtype);
    x = h->graph_act(g, conv_bn(&b, "stem", x, width, 3, 1), b.act);
    for (int s = 0; s < stages; s++) {
        for (int64_t i = 0; i < blocks[s]; i++) {
            char name[48];
            snprintf(name, sizeof name, "stage%d.block%lld", s + 1, (long long)i + 1);
            int stride = s > 0 && i == 0 ? 2 : 1;
            int64_t planes = width << s;
            x = bottleneck ? bottleneck_block(&b, name, x, planes, stride)
                           : basic_block(&b, name, x, planes, stride);
        }
    }
    x = h->graph_global_avg_pool(g, x);
    int64_t features = channels_of(&b, x), classes = h->graph_num_classes(g);
    int64_t wshape[2] = {classes, features}, bshape[1] = {classes};
    nnopt_node w = h->graph_param(g, "fc.weight", 2, wshape, NNOPT_INIT_LECUN_UNIFORM);
    nnopt_node bias = h->graph_param(g, "fc.bias", 1, bshape, NNOPT_INIT_ZEROS);
    *logits = h->graph_dense(g, x, w, bias);
    return *logits < 0 ? NNOPT_STATUS_INVALID_ARGUMENT : NNOPT_OK;
}

static const nnopt_model_vtable resnet_vtable = {
    .struct_size = sizeof(nnopt_model_vtable),
    .build = build,
};

static const nnopt_plugin_desc resnet_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_MODEL,
    .name = "resnet",
    .version = "1.0.0",
    .description = "CIFAR ResNets: basic 6n+2 (ResNet-56 default) and bottleneck (ResNet-152)",
    .params = resnet_params,
    .n_params = sizeof resnet_params / sizeof resnet_params[0],
    .vtable = &resnet_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &resnet_descriptor;
}
