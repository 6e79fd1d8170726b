/* Post-training int8 quantisation with real int8 kernels. After training
 * (or, with epochs = 0, right after init_from / load_checkpoint), every
 * conv2d and dense becomes conv2d_int8 / dense_int8: weights stored as int8
 * per output channel (symmetric), activations quantised to u8 on the fly
 * with a scale and zero point calibrated on the first training batches, a
 * batch norm that follows alone is folded into the weights and bias, and a
 * ReLU that follows alone is fused into the output. The f32 weights and
 * folded statistics are freed, so the model's bytes shrink. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"
#include "quant_math.h"

static const nnopt_param_spec quantization_params[] = {
    {"calibration_batches", NNOPT_PARAM_INT, "8",
     "training batches run through the trained model to measure each layer's input range", NULL, 1,
     100000},
};

typedef struct quantization {
    const nnopt_host_api *host;
    int64_t calibration_batches;
    int layers, folded_bn, fused_relu;
    int64_t bytes_before, bytes_after;
} quantization;

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    if (host->struct_size < offsetof(nnopt_host_api, run_fold_node) + sizeof host->run_fold_node) {
        host->set_error("quantization: the core is older than ABI 1.1");
        return NNOPT_STATUS_ABI_MISMATCH;
    }
    quantization *q = calloc(1, sizeof *q);
    if (!q) return NNOPT_STATUS_OUT_OF_MEMORY;
    q->host = host;
    q->calibration_batches = host->config_int(cfg, "calibration_batches");
    *out = q;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    free(ctx);
}

static int64_t numel(const nnopt_node_info *info) {
    int64_t n = 1;
    for (int d = 0; d < info->ndim; d++) n *= info->shape[d];
    return n;
}

/* Bytes of every state tensor the network holds. */
static int64_t model_bytes(const nnopt_host_api *h, const nnopt_graph *g) {
    int64_t total = 0;
    nnopt_node_info info;
    for (int i = 0; i < h->graph_node_count(g); i++)
        if (h->graph_node_info(g, i, &info) == NNOPT_OK && info.has_tensor)
            total += numel(&info) * (int64_t)nnopt_dtype_size(info.dtype);
    return total;
}

/* The only node reading n, or -1 when none or several do. */
static nnopt_node sole_consumer(const nnopt_host_api *h, const nnopt_graph *g, nnopt_node n) {
    nnopt_node_info info;
    if (h->graph_node_info(g, n, &info) != NNOPT_OK || info.consumers != 1) return -1;
    for (int i = n + 1; i < h->graph_node_count(g); i++) {
        h->graph_node_info(g, i, &info);
        for (int k = 0; k < info.n_inputs; k++)
            if (info.inputs[k] == n) return i;
    }
    return -1; /* n is the output */
}

static int is_op(const nnopt_node_info *info, nnopt_op_kind kind) {
    return info->role == NNOPT_ROLE_OP && info->op.kind == kind;
}

/* Host copies of one layer's tensors while it is rewritten. */
typedef struct layer {
    nnopt_node op, x, w, b, bn, relu;
    int64_t channels, per_channel;
    float *w_f32, *bias, *w_scale;
    int8_t *w_i8;
} layer;

static void layer_free(layer *l) {
    free(l->w_f32);
    free(l->bias);
    free(l->w_scale);
    free(l->w_i8);
}

static nnopt_status read_state(quantization *q, nnopt_run *run, nnopt_node n, float **out) {
    nnopt_node_info info;
    q->host->graph_node_info(q->host->run_graph(run), n, &info);
    *out = malloc((size_t)numel(&info) * sizeof **out);
    if (!*out) return NNOPT_STATUS_OUT_OF_MEMORY;
    return q->host->run_read_state(run, n, *out);
}

/* The folded f32 weights and bias of layer l (batch norm included). */
static nnopt_status folded_weights(quantization *q, nnopt_run *run, layer *l) {
    const nnopt_host_api *h = q->host;
    const nnopt_graph *g = h->run_graph(run);
    nnopt_status st = read_state(q, run, l->w, &l->w_f32);
    l->bias = calloc((size_t)l->channels, sizeof *l->bias);
    if (st == NNOPT_OK && !l->bias) st = NNOPT_STATUS_OUT_OF_MEMORY;
    if (st == NNOPT_OK && l->b >= 0) {
        float *b = NULL;
        st = read_state(q, run, l->b, &b);
        if (st == NNOPT_OK) memcpy(l->bias, b, (size_t)l->channels * sizeof *b);
        free(b);
    }
    if (st != NNOPT_OK || l->bn < 0) return st;
    nnopt_node_info bn;
    h->graph_node_info(g, l->bn, &bn);
    float *stats[4] = {NULL, NULL, NULL, NULL}; /* gamma, beta, running mean, running var */
    for (int k = 0; k < 4 && st == NNOPT_OK; k++)
        st = read_state(q, run, bn.inputs[k + 1], &stats[k]);
    if (st == NNOPT_OK)
        quant_fold_batchnorm(l->w_f32, l->bias, l->channels, l->per_channel, stats[0], stats[1],
                             stats[2], stats[3], bn.op.p.bn.eps);
    for (int k = 0; k < 4; k++) free(stats[k]);
    return st;
}

/* Rewrites layer l as an int8 op reading x quantised with (scale, zp). */
static nnopt_status quantize_layer(quantization *q, nnopt_run *run, layer *l, float x_scale,
                                   int32_t zero_point) {
    const nnopt_host_api *h = q->host;
    nnopt_graph *g = h->run_graph(run);
    nnopt_node_info op, w, bn;
    h->graph_node_info(g, l->op, &op);
    h->graph_node_info(g, l->w, &w);
    nnopt_status st = folded_weights(q, run, l);
    l->w_i8 = malloc((size_t)(l->channels * l->per_channel));
    l->w_scale = malloc((size_t)l->channels * sizeof *l->w_scale);
    if (st == NNOPT_OK && (!l->w_i8 || !l->w_scale)) st = NNOPT_STATUS_OUT_OF_MEMORY;
    if (st != NNOPT_OK) return st;
    quant_weights_int8(l->w_f32, l->channels, l->per_channel, l->w_i8, l->w_scale);

    /* Where the bias goes: the layer's own, the batch norm's beta, or a new buffer. */
    char name[160];
    const int64_t channels[1] = {l->channels};
    nnopt_node bias_node = l->b;
    if (bias_node < 0 && l->bn >= 0) {
        h->graph_node_info(g, l->bn, &bn);
        bias_node = bn.inputs[2];
    }
    snprintf(name, sizeof name, "%s_bias", w.name);
    bias_node = h->run_set_state(run, bias_node, name, NNOPT_F32, 1, channels, l->bias);
    snprintf(name, sizeof name, "%s_scale", w.name);
    const nnopt_node scale_node =
        bias_node < 0 ? -1 : h->run_set_state(run, -1, name, NNOPT_F32, 1, channels, l->w_scale);
    const nnopt_node w_node =
        scale_node < 0 ? -1 : h->run_set_state(run, l->w, NULL, NNOPT_I8, w.ndim, w.shape, l->w_i8);
    if (w_node < 0) return NNOPT_STATUS_INVALID_ARGUMENT;

    nnopt_op qop;
    memset(&qop, 0, sizeof qop);
    qop.kind = op.op.kind == NNOPT_OP_CONV2D ? NNOPT_OP_CONV2D_INT8 : NNOPT_OP_DENSE_INT8;
    if (op.op.kind == NNOPT_OP_CONV2D) qop.p.qlinear.conv = op.op.p.conv2d;
    qop.p.qlinear.x_scale = x_scale;
    qop.p.qlinear.zero_point = zero_point;
    qop.p.qlinear.act = l->relu >= 0 ? NNOPT_ACT_RELU : NNOPT_ACT_IDENTITY;
    const nnopt_node inputs[4] = {l->x, w_node, scale_node, bias_node};
    st = h->run_set_op(run, l->op, &qop, inputs, 4);
    if (st == NNOPT_OK && l->bn >= 0) st = h->run_fold_node(run, l->bn);
    if (st == NNOPT_OK && l->relu >= 0) st = h->run_fold_node(run, l->relu);
    /* What the int8 op no longer reads: the batch norm's statistics and gamma. */
    if (st == NNOPT_OK && l->bn >= 0) {
        h->graph_node_info(g, l->bn, &bn);
        nnopt_node_info stat;
        for (int i = 0; i < h->graph_node_count(g) && st == NNOPT_OK; i++) {
            h->graph_node_info(g, i, &stat);
            if (!stat.has_tensor || stat.consumers || i == bias_node) continue;
            st = h->run_drop_state(run, i);
        }
    }
    return st;
}

/* Finds layer op's batch norm and ReLU, if they follow it alone. */
static void find_followers(const nnopt_host_api *h, const nnopt_graph *g, layer *l) {
    nnopt_node_info info;
    l->bn = l->relu = -1;
    nnopt_node tail = l->op, next = sole_consumer(h, g, tail);
    if (next >= 0 && h->graph_node_info(g, next, &info) == NNOPT_OK &&
        is_op(&info, NNOPT_OP_BATCHNORM) && info.inputs[0] == tail) {
        l->bn = tail = next;
        next = sole_consumer(h, g, tail);
    }
    if (next >= 0 && h->graph_node_info(g, next, &info) == NNOPT_OK && is_op(&info, NNOPT_OP_ACT) &&
        info.op.p.act.kind == NNOPT_ACT_RELU)
        l->relu = next;
}

static nnopt_status after_train(void *ctx, nnopt_run *run) {
    quantization *q = ctx;
    const nnopt_host_api *h = q->host;
    nnopt_graph *g = h->run_graph(run);
    if (h->graph_dtype(g) != NNOPT_F32) {
        h->set_error("quantization: run '%s' is %s; int8 quantisation starts from f32",
                     h->run_name(run), nnopt_dtype_name(h->graph_dtype(g)));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    const int count = h->graph_node_count(g);
    double *lo = malloc((size_t)count * sizeof *lo), *hi = malloc((size_t)count * sizeof *hi);
    nnopt_status st = lo && hi ? NNOPT_OK : NNOPT_STATUS_OUT_OF_MEMORY;
    q->bytes_before = model_bytes(h, g);
    if (st == NNOPT_OK) st = h->run_calibrate(run, q->calibration_batches, lo, hi);
    for (nnopt_node n = 0; st == NNOPT_OK && n < count; n++) {
        nnopt_node_info op, w;
        h->graph_node_info(g, n, &op);
        if (!is_op(&op, NNOPT_OP_CONV2D) && !is_op(&op, NNOPT_OP_DENSE)) continue;
        h->graph_node_info(g, op.inputs[1], &w);
        if (w.consumers != 1) continue; /* shared weights stay f32 */
        layer l = {.op = n,
                   .x = op.inputs[0],
                   .w = op.inputs[1],
                   .b = op.n_inputs > 2 ? op.inputs[2] : -1};
        l.channels = w.shape[0];
        l.per_channel = numel(&w) / l.channels;
        find_followers(h, g, &l);
        float x_scale;
        int32_t zero_point;
        quant_activation_params(lo[l.x], hi[l.x], &x_scale, &zero_point);
        st = quantize_layer(q, run, &l, x_scale, zero_point);
        layer_free(&l);
        if (st != NNOPT_OK) break;
        q->layers++;
        q->folded_bn += l.bn >= 0;
        q->fused_relu += l.relu >= 0;
    }
    free(lo);
    free(hi);
    if (st != NNOPT_OK) return st; /* the core's entries explain */
    q->bytes_after = model_bytes(h, g);
    h->log(NNOPT_LOG_INFO,
           "quantization: run '%s': %d layers int8 (%d batch norms folded, %d ReLUs fused), "
           "model %lld -> %lld bytes",
           h->run_name(run), q->layers, q->folded_bn, q->fused_relu, (long long)q->bytes_before,
           (long long)q->bytes_after);
    return NNOPT_OK;
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    quantization *q = ctx;
    (void)run;
    char value[64];
    snprintf(value, sizeof value, "%d", q->layers);
    column(sink, "int8_layers", value);
    snprintf(value, sizeof value, "%lld", (long long)q->bytes_before);
    column(sink, "model_bytes_f32", value);
    snprintf(value, sizeof value, "%lld", (long long)q->bytes_after);
    column(sink, "model_bytes_int8", value);
    snprintf(value, sizeof value, "%lld", (long long)q->calibration_batches);
    column(sink, "calibration_batches", value);
}

static const nnopt_technique_vtable quantization_vtable = {
    .struct_size = sizeof(nnopt_technique_vtable),
    .create = create,
    .destroy = destroy,
    .after_train = after_train,
    .report = report,
};

static const nnopt_plugin_desc quantization_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "quantization",
    .version = "1.0.0",
    .description = "int8 post-training quantisation with real int8 kernels (per-channel weights, "
                   "calibrated activations, batch norm folded, ReLU fused)",
    .params = quantization_params,
    .n_params = sizeof quantization_params / sizeof quantization_params[0],
    .vtable = &quantization_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &quantization_descriptor;
}
