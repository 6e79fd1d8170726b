/* The backend op set. Every op is one call of nnopt_backend_vtable.run with an
 * nnopt_op (kind + parameters) and arrays of input and output tensors. The
 * order and meaning of those tensors is fixed per op and documented below; a
 * backend may rely on every shape having been checked by the core.
 *
 * Layouts: images are NCHW; conv weights are [K, C/groups, R, S]; dense weights
 * are [OUT, IN] (y = x W^T + b); bias vectors are [K]. All tensors contiguous.
 * Outputs are overwritten (never accumulated into) unless an op says otherwise.
 * New ops are appended at the end of the enum (an ABI minor bump). */
#ifndef NNOPT_OPS_H
#define NNOPT_OPS_H

#include "nnopt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nnopt_op_kind {
    /* in: x[N,C,H,W], w[K,C/g,R,S], b[K] (optional: n_in 2 or 3)  out: y[N,K,P,Q] */
    NNOPT_OP_CONV2D = 0,
    /* in: dy[N,K,P,Q], w                                    out: dx[N,C,H,W] */
    NNOPT_OP_CONV2D_BWD_DATA,
    /* in: x, dy                                             out: dw[K,C/g,R,S] */
    NNOPT_OP_CONV2D_BWD_FILTER,
    /* in: x[N,IN], w[OUT,IN], b[OUT] (optional)             out: y[N,OUT] */
    NNOPT_OP_DENSE,
    /* in: dy[N,OUT], w                                      out: dx[N,IN] */
    NNOPT_OP_DENSE_BWD_DATA,
    /* in: x, dy                                             out: dw[OUT,IN] */
    NNOPT_OP_DENSE_BWD_WEIGHT,
    /* in: dy[N,K,...]   out: db[K] = sum of dy over every axis but 1 */
    NNOPT_OP_BIAS_BWD,
    /* in: x[N,C,H,W]    out: y[N,C,P,Q]  (params.pool) */
    NNOPT_OP_POOL2D,
    /* in: x, y, dy      out: dx */
    NNOPT_OP_POOL2D_BWD,
    /* in: x             out: y, same shape (params.act) */
    NNOPT_OP_ACT,
    /* in: x, y, dy      out: dx */
    NNOPT_OP_ACT_BWD,
    /* in: a, b (same shape)  out: y = a + b; y may be the same tensor as a */
    NNOPT_OP_ADD,
    /* Softmax cross-entropy, mean over the batch.
     * in: logits[N,K], target (I32 labels [N], or probabilities [N,K] in the
     *     logits' dtype when params.xent.soft_targets)
     * out: loss[1] (logits' dtype), dlogits[N,K] = d(loss)/d(logits).
     * weight and accumulate let several loss terms share one gradient
     * (distillation: soft targets at temperature T plus hard labels). */
    NNOPT_OP_SOFTMAX_XENT,
    /* In-place SGD: in: param, grad, velocity (unused, may be absent, when
     * momentum == 0)  out: (none; param and velocity are updated in place) */
    NNOPT_OP_SGD_UPDATE,
    /* In-place Adam (weight decay added to the gradient, as PyTorch's Adam):
     * in: param, grad, m, v  out: none */
    NNOPT_OP_ADAM_UPDATE,
    /* in: x  out: y, same shape; dtypes may differ (conversion) or match (copy) */
    NNOPT_OP_CAST,
    /* Batch normalization over every axis but 1 (x is [N,C,H,W] or [N,C]).
     * params.bn.training = 1: normalise with the batch's mean and biased
     *   variance; in: x, gamma[C], beta[C], running_mean[C], running_var[C]
     *   (updated in place: r = (1 - momentum) r + momentum * batch, with the
     *   unbiased variance for running_var, as PyTorch does);
     *   out: y, save_mean[C], save_invstd[C] (1 / sqrt(var + eps), for backward)
     * params.bn.training = 0: normalise with the running statistics;
     *   in: x, gamma, beta, running_mean, running_var  out: y */
    NNOPT_OP_BATCHNORM,
    /* in: x, gamma, dy, save_mean, save_invstd  out: dx, dgamma[C], dbeta[C] */
    NNOPT_OP_BATCHNORM_BWD,
    /* Inverted dropout. in: x  out: y, mask (x's dtype: 0 or 1 / (1 - p)).
     * Element i (flat index) is kept iff u(seed, i) >= p, where u(seed, i) =
     * (splitmix64(seed + i) >> 11) * 2^-53 and splitmix64(z) is: z +=
     * 0x9e3779b97f4a7c15; z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
     * z = (z ^ (z >> 27)) * 0x94d049bb133111eb; return z ^ (z >> 31). Every
     * backend draws the same mask for the same seed. */
    NNOPT_OP_DROPOUT,
    /* in: dy, mask  out: dx = dy * mask */
    NNOPT_OP_DROPOUT_BWD,
    /* int8 inference (ABI 1.1; params.qlinear). Activations are quantised to
     * u8 with a zero point, weights are symmetric int8 per output channel:
     *   xq = (int)rint(clamp(x * (1.0f / x_scale) + zero_point, 0, 255))
     *        (f32 arithmetic, ties to even; padding is x = 0, i.e. xq = zero_point)
     *   acc[k] = sum over the window of (xq - zero_point) * w   (exact, int32)
     *   y = act((float)acc[k] * (x_scale * w_scale[k]) + b[k])  (act: identity or relu)
     * in: x[N,C,H,W] (f32), w[K,C/g,R,S] (i8, in [-127, 127]), w_scale[K] (f32),
     *     b[K] (f32)  out: y[N,K,P,Q] (f32); params.qlinear.conv as for conv2d */
    NNOPT_OP_CONV2D_INT8,
    /* The dense counterpart: in: x[N,IN] (f32), w[OUT,IN] (i8), w_scale[OUT],
     * b[OUT] (f32)  out: y[N,OUT] (f32) */
    NNOPT_OP_DENSE_INT8,
    /* batchnorm followed by relu, in one pass over memory (params.bn, ins and
     * outs as batchnorm's): y = max(0, batchnorm(x)). The core fuses a
     * batchnorm whose only reader is a relu where the backend supports both
     * of these ops. */
    NNOPT_OP_BATCHNORM_RELU,
    /* Its gradient: batchnorm_bwd of dy masked by y > 0.
     * in: x, gamma, dy, save_mean, save_invstd, y  out: dx, dgamma[C], dbeta[C] */
    NNOPT_OP_BATCHNORM_RELU_BWD,
    /* conv2d followed by relu, the relu applied as each output is written
     * (params.conv2d, ins and outs as conv2d's): y = max(0, conv2d(x) + b).
     * Inference executors run a conv (with any batchnorm folded in) whose
     * only reader is a relu this way where the backend supports it. */
    NNOPT_OP_CONV2D_RELU,
    /* in: a, b (same shape)  out: y = max(0, a + b); y may be the same tensor
     * as a. Executors (training and inference) fuse an add whose only reader
     * is a relu. */
    NNOPT_OP_ADD_RELU,
    /* conv2d_bwd_data adding into its output: in: dy[N,K,P,Q], w
     * out: dx[N,C,H,W], dx += conv2d_bwd_data(dy, w). Training executors
     * use it for the second and later gradients of a node read by several
     * convs' ops (a residual shortcut) where the backend has it, instead of a
     * separate add. */
    NNOPT_OP_CONV2D_BWD_DATA_ADD,
    /* conv2d, a residual added, then relu (params.conv2d): in: x, w, b[K],
     * r[N,K,P,Q]  out: y = max(0, conv2d(x, w, b) + r); y is never r.
     * Inference executors run a residual block's last conv (batchnorm folded
     * in), its add and the add's relu this way where the backend has it. */
    NNOPT_OP_CONV2D_ADD_RELU,
    /* batchnorm, a residual added, then relu (params.bn): in: batchnorm's
     * five, then r (x's shape)  out: as batchnorm's, with
     * y = max(0, batchnorm(x) + r); y is neither x nor r. Training executors
     * run a batchnorm whose only reader is an add with a fused relu (a
     * residual block's last batchnorm) this way where the backend has it:
     * the batchnorm's own output is never written. */
    NNOPT_OP_BATCHNORM_ADD_RELU,
    /* conv2d_bwd_data_add, then the gradient through the relu whose output y
     * is the conv's input: in: dy[N,K,P,Q], w, y[N,C,H,W]  out: dx (y's
     * shape), dx = y > 0 ? dx + conv2d_bwd_data(dy, w) : 0. Training
     * executors use it for the last gradient a relu's output receives (a
     * residual block's first conv, after the shortcut's) where the backend
     * has it: the relu's own backward pass goes. */
    NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED,
    NNOPT_OP_KIND_COUNT
} nnopt_op_kind;

typedef enum nnopt_act_kind {
    NNOPT_ACT_IDENTITY = 0,
    NNOPT_ACT_RELU,
    NNOPT_ACT_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    NNOPT_ACT_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt(2))) */
    NNOPT_ACT_TANH,
    NNOPT_ACT_SIGMOID,
    NNOPT_ACT_RELU6,
    NNOPT_ACT_KIND_COUNT
} nnopt_act_kind;

typedef enum nnopt_pool_kind { NNOPT_POOL_MAX = 0, NNOPT_POOL_AVG } nnopt_pool_kind;

typedef struct nnopt_conv2d_params {
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w; /* zero padding on each side */
    int32_t groups;       /* 1 = ordinary conv; == C == K: depthwise */
} nnopt_conv2d_params;

typedef struct nnopt_pool2d_params {
    nnopt_pool_kind kind;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w; /* avg pool divides by the full window (count_include_pad) */
} nnopt_pool2d_params;

typedef struct nnopt_act_params {
    nnopt_act_kind kind;
} nnopt_act_params;

typedef struct nnopt_xent_params {
    int32_t soft_targets; /* 0: I32 labels; 1: probabilities */
    double temperature;   /* logits are divided by this first; 1 = plain softmax */
    double weight;        /* loss and dlogits are multiplied by this; 0 is read as 1 */
    int32_t accumulate;   /* 1: add into loss and dlogits instead of overwriting */
} nnopt_xent_params;

typedef struct nnopt_sgd_params {
    double lr, momentum, weight_decay;
    int32_t nesterov;
} nnopt_sgd_params;

typedef struct nnopt_adam_params {
    double lr, beta1, beta2, eps, weight_decay;
    int64_t step; /* 1-based step count, for bias correction */
} nnopt_adam_params;

typedef struct nnopt_bn_params {
    double eps, momentum; /* PyTorch's convention: momentum 0.1 = keep 90% */
    int32_t training;
} nnopt_bn_params;

typedef struct nnopt_dropout_params {
    double p; /* probability of dropping an element, in [0, 1) */
    uint64_t seed;
} nnopt_dropout_params;

/* Quantised conv2d/dense (conv ignored by dense_int8). */
typedef struct nnopt_qlinear_params {
    nnopt_conv2d_params conv;
    float x_scale;      /* activation step (> 0) */
    int32_t zero_point; /* the u8 code of x = 0, in [0, 255] */
    nnopt_act_kind act; /* fused into the output: NNOPT_ACT_IDENTITY or NNOPT_ACT_RELU */
} nnopt_qlinear_params;

typedef struct nnopt_op {
    nnopt_op_kind kind;
    union {
        nnopt_conv2d_params conv2d;
        nnopt_pool2d_params pool2d;
        nnopt_act_params act;
        nnopt_xent_params xent;
        nnopt_sgd_params sgd;
        nnopt_adam_params adam;
        nnopt_bn_params bn;
        nnopt_dropout_params dropout;
        nnopt_qlinear_params qlinear;
        unsigned char reserved[128]; /* keeps the union's size stable as params grow */
    } p;
} nnopt_op;

static inline const char *nnopt_op_kind_name(nnopt_op_kind kind) {
    static const char *const names[NNOPT_OP_KIND_COUNT] = {"conv2d",
                                                           "conv2d_bwd_data",
                                                           "conv2d_bwd_filter",
                                                           "dense",
                                                           "dense_bwd_data",
                                                           "dense_bwd_weight",
                                                           "bias_bwd",
                                                           "pool2d",
                                                           "pool2d_bwd",
                                                           "act",
                                                           "act_bwd",
                                                           "add",
                                                           "softmax_xent",
                                                           "sgd_update",
                                                           "adam_update",
                                                           "cast",
                                                           "batchnorm",
                                                           "batchnorm_bwd",
                                                           "dropout",
                                                           "dropout_bwd",
                                                           "conv2d_int8",
                                                           "dense_int8",
                                                           "batchnorm_relu",
                                                           "batchnorm_relu_bwd",
                                                           "conv2d_relu",
                                                           "add_relu",
                                                           "conv2d_bwd_data_add",
                                                           "conv2d_add_relu",
                                                           "batchnorm_add_relu",
                                                           "conv2d_bwd_data_add_masked"};
    return (unsigned)kind < NNOPT_OP_KIND_COUNT ? names[kind] : "?";
}

static inline const char *nnopt_act_kind_name(nnopt_act_kind kind) {
    static const char *const names[NNOPT_ACT_KIND_COUNT] = {
        "identity", "relu", "gelu", "gelu_erf", "tanh", "sigmoid", "relu6"};
    return (unsigned)kind < NNOPT_ACT_KIND_COUNT ? names[kind] : "?";
}

#ifdef __cplusplus
}
#endif
#endif
