/* Pooling, activations, batch normalization and softmax cross-entropy:
 * through cuDNN (kernels = cudnn, the default) or the plugin's own kernels
 * (kernels = own). Activations cuDNN lacks (identity, both GELUs) and
 * batch-norm cases it cannot do (one value per channel in training, eps below
 * CUDNN_BN_MIN_EPSILON) always use the own kernels, and so does bf16: they
 * compute and round as the reference's bf16 path does (f32 result, then
 * bf16), which cuDNN's bf16 modes of these memory-bound ops would not
 * promise, for no speed worth having. */
#include "cuda_internal.h"

#include <math.h>

static void destroy_descriptors(cudnnTensorDescriptor_t *descs, int count) {
    for (int i = 0; i < count; i++)
        if (descs[i] != NULL) cudnnDestroyTensorDescriptor(descs[i]);
}

/* ---- pooling ---- */

static nnopt_status pool_geometry_check(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                        const nnopt_tensor *y, const char *y_role,
                                        cuda_pool_geometry *g) {
    const char *name = nnopt_op_kind_name(op->kind);
    const nnopt_pool2d_params *pp = &op->p.pool2d;
    nnopt_status status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, y, y_role, (int)x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 4) {
        cuda_error(b, "%s: x must be 4-D (NCHW)", name);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (pp->kind != NNOPT_POOL_MAX && pp->kind != NNOPT_POOL_AVG) {
        cuda_error(b, "%s: unknown pooling kind %d", name, (int)pp->kind);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (pp->kernel_h < 1 || pp->kernel_w < 1 || pp->stride_h < 1 || pp->stride_w < 1 ||
        pp->pad_h < 0 || pp->pad_w < 0 || pp->pad_h > pp->kernel_h / 2 ||
        pp->pad_w > pp->kernel_w / 2) {
        cuda_error(b, "%s: bad parameters (kernel %dx%d, stride %dx%d, pad %dx%d)", name,
                   pp->kernel_h, pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (cuda_pool_geometry){.kind = pp->kind,
                              .planes = x->shape[0] * x->shape[1],
                              .h = x->shape[2],
                              .w = x->shape[3],
                              .kernel_h = pp->kernel_h,
                              .kernel_w = pp->kernel_w,
                              .stride_h = pp->stride_h,
                              .stride_w = pp->stride_w,
                              .pad_h = pp->pad_h,
                              .pad_w = pp->pad_w};
    const int64_t padded_h = g->h + 2 * g->pad_h, padded_w = g->w + 2 * g->pad_w;
    if (padded_h < g->kernel_h || padded_w < g->kernel_w) {
        cuda_error(b, "%s: %dx%d window does not fit the padded %lldx%lld input", name,
                   pp->kernel_h, pp->kernel_w, (long long)padded_h, (long long)padded_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    g->p = (padded_h - g->kernel_h) / g->stride_h + 1;
    g->q = (padded_w - g->kernel_w) / g->stride_w + 1;
    const int64_t y_shape[4] = {x->shape[0], x->shape[1], g->p, g->q};
    return cuda_check_shape(b, op, y, y_role, 4, y_shape);
}

static nnopt_status pooling_descriptor(cuda_backend *b, const cuda_pool_geometry *g,
                                       cudnnPoolingDescriptor_t *out) {
    nnopt_status status =
        cudnn_check(b, cudnnCreatePoolingDescriptor(out), "cudnnCreatePoolingDescriptor");
    if (status != NNOPT_OK) return status;
    /* MAX_DETERMINISTIC: the same backward result run to run; padding never
     * wins a max. Average pooling divides by the whole window, padding included. */
    const cudnnPoolingMode_t mode = g->kind == NNOPT_POOL_MAX
                                        ? CUDNN_POOLING_MAX_DETERMINISTIC
                                        : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    status =
        cudnn_check(b,
                    cudnnSetPooling2dDescriptor(*out, mode, CUDNN_NOT_PROPAGATE_NAN,
                                                (int)g->kernel_h, (int)g->kernel_w, (int)g->pad_h,
                                                (int)g->pad_w, (int)g->stride_h, (int)g->stride_w),
                    "cudnnSetPooling2dDescriptor");
    if (status != NNOPT_OK) {
        cudnnDestroyPoolingDescriptor(*out);
        *out = NULL;
    }
    return status;
}

nnopt_status cuda_pool2d(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    cuda_pool_geometry g;
    status = pool_geometry_check(b, op, x, y, "y", &g);
    if (status != NNOPT_OK || nnopt_tensor_numel(y) == 0) return status;
    if (b->own_kernels || x->dtype == NNOPT_BF16)
        return cuda_check(b, cuda_pool2d_forward(b->stream, x->dtype, &g, x->data, y->data),
                          "pool2d");
    cudnnTensorDescriptor_t descs[2] = {NULL, NULL};
    cudnnPoolingDescriptor_t pool = NULL;
    status = cuda_tensor_descriptor(b, op, x, &descs[0]);
    if (status == NNOPT_OK) status = cuda_tensor_descriptor(b, op, y, &descs[1]);
    if (status == NNOPT_OK) status = pooling_descriptor(b, &g, &pool);
    if (status == NNOPT_OK)
        status = cudnn_check(b,
                             cudnnPoolingForward(b->cudnn, pool, cuda_one(x->dtype), descs[0],
                                                 x->data, cuda_zero(x->dtype), descs[1], y->data),
                             "cudnnPoolingForward");
    if (pool != NULL) cudnnDestroyPoolingDescriptor(pool);
    destroy_descriptors(descs, 2);
    return status;
}

nnopt_status cuda_pool2d_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 3, 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *y = in[1], *dy = in[2];
    nnopt_tensor *dx = out[0];
    cuda_pool_geometry g;
    status = pool_geometry_check(b, op, x, dy, "dy", &g);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", dy);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dx, "dx", x);
    if (status != NNOPT_OK || nnopt_tensor_numel(dx) == 0) return status;
    if (b->own_kernels)
        return cuda_check(
            b, cuda_pool2d_backward(b->stream, x->dtype, &g, x->data, dy->data, dx->data),
            "pool2d_bwd");
    cudnnTensorDescriptor_t descs[2] = {NULL, NULL}; /* x and dx; y and dy */
    cudnnPoolingDescriptor_t pool = NULL;
    status = cuda_tensor_descriptor(b, op, x, &descs[0]);
    if (status == NNOPT_OK) status = cuda_tensor_descriptor(b, op, y, &descs[1]);
    if (status == NNOPT_OK) status = pooling_descriptor(b, &g, &pool);
    if (status == NNOPT_OK)
        status = cudnn_check(b,
                             cudnnPoolingBackward(b->cudnn, pool, cuda_one(x->dtype), descs[1],
                                                  y->data, descs[1], dy->data, descs[0], x->data,
                                                  cuda_zero(x->dtype), descs[0], dx->data),
                             "cudnnPoolingBackward");
    if (pool != NULL) cudnnDestroyPoolingDescriptor(pool);
    destroy_descriptors(descs, 2);
    return status;
}

/* ---- activations ---- */

/* cuDNN's mode for kind; 0 when cuDNN has none (the own kernels run). */
static int cudnn_activation_mode(nnopt_act_kind kind, cudnnActivationMode_t *mode, double *coef) {
    *coef = 0.0;
    switch (kind) {
    case NNOPT_ACT_RELU:
        *mode = CUDNN_ACTIVATION_RELU;
        return 1;
    case NNOPT_ACT_TANH:
        *mode = CUDNN_ACTIVATION_TANH;
        return 1;
    case NNOPT_ACT_SIGMOID:
        *mode = CUDNN_ACTIVATION_SIGMOID;
        return 1;
    case NNOPT_ACT_RELU6:
        *mode = CUDNN_ACTIVATION_CLIPPED_RELU;
        *coef = 6.0;
        return 1;
    default:
        return 0;
    }
}

/* Runs cuDNN's activation forward (dy == NULL) or backward on x's shape. */
static nnopt_status cudnn_activation(cuda_backend *b, const nnopt_op *op,
                                     cudnnActivationMode_t mode, double coef, const nnopt_tensor *x,
                                     const nnopt_tensor *y, const nnopt_tensor *dy,
                                     nnopt_tensor *result) {
    cudnnTensorDescriptor_t desc = NULL;
    cudnnActivationDescriptor_t act = NULL;
    nnopt_status status = cuda_tensor_descriptor(b, op, x, &desc);
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnCreateActivationDescriptor(&act),
                             "cudnnCreateActivationDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnSetActivationDescriptor(act, mode, CUDNN_PROPAGATE_NAN, coef),
                             "cudnnSetActivationDescriptor");
    const void *one = cuda_one(x->dtype), *zero = cuda_zero(x->dtype);
    if (status == NNOPT_OK && dy == NULL)
        status = cudnn_check(
            b, cudnnActivationForward(b->cudnn, act, one, desc, x->data, zero, desc, result->data),
            "cudnnActivationForward");
    else if (status == NNOPT_OK)
        status =
            cudnn_check(b,
                        cudnnActivationBackward(b->cudnn, act, one, desc, y->data, desc, dy->data,
                                                desc, x->data, zero, desc, result->data),
                        "cudnnActivationBackward");
    if (act != NULL) cudnnDestroyActivationDescriptor(act);
    if (desc != NULL) cudnnDestroyTensorDescriptor(desc);
    return status;
}

static nnopt_status check_act_kind(cuda_backend *b, const nnopt_op *op) {
    if ((unsigned)op->p.act.kind < NNOPT_ACT_KIND_COUNT) return NNOPT_OK;
    cuda_error(b, "%s: unknown activation kind %d", nnopt_op_kind_name(op->kind),
               (int)op->p.act.kind);
    return NNOPT_STATUS_INVALID_ARGUMENT;
}

nnopt_status cuda_act(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 1, 1, n_out, 1);
    if (status == NNOPT_OK) status = check_act_kind(b, op);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", x);
    const int64_t count = nnopt_tensor_numel(x);
    if (status != NNOPT_OK || count == 0) return status;
    cudnnActivationMode_t mode;
    double coef;
    if (!b->own_kernels && x->dtype != NNOPT_BF16 &&
        cudnn_activation_mode(op->p.act.kind, &mode, &coef))
        return cudnn_activation(b, op, mode, coef, x, NULL, NULL, y);
    return cuda_check(
        b, cuda_act_forward(b->stream, x->dtype, op->p.act.kind, count, x->data, y->data), "act");
}

nnopt_status cuda_act_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 3, 3, n_out, 1);
    if (status == NNOPT_OK) status = check_act_kind(b, op);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *y = in[1], *dy = in[2];
    nnopt_tensor *dx = out[0];
    status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dy, "dy", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dx, "dx", x);
    const int64_t count = nnopt_tensor_numel(x);
    if (status != NNOPT_OK || count == 0) return status;
    cudnnActivationMode_t mode;
    double coef;
    /* cuDNN's backward reads y (the forward's output), as the op allows. */
    if (!b->own_kernels && cudnn_activation_mode(op->p.act.kind, &mode, &coef))
        return cudnn_activation(b, op, mode, coef, x, y, dy, dx);
    return cuda_check(
        b,
        cuda_act_backward(b->stream, x->dtype, op->p.act.kind, count, x->data, dy->data, dx->data),
        "act_bwd");
}

/* ---- batch normalization ---- */

typedef struct bn_sizes {
    int64_t batch, channels, spatial;
} bn_sizes;

static nnopt_status bn_sizes_check(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                   int need_values, bn_sizes *sizes) {
    nnopt_status status = cuda_check_tensor(b, op, x, "x", -1);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 2 && x->ndim != 4) {
        cuda_error(b, "%s: x must be [N,C,H,W] or [N,C], got %d dimensions",
                   nnopt_op_kind_name(op->kind), (int)x->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *sizes = (bn_sizes){x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
    if (need_values && sizes->channels > 0 && sizes->batch * sizes->spatial == 0) {
        cuda_error(b, "%s: x has no values per channel to take statistics over",
                   nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

static nnopt_status check_per_channel(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                                      const char *role, const nnopt_tensor *x) {
    nnopt_status status = cuda_check_tensor(b, op, t, role, (int)x->dtype);
    if (status == NNOPT_OK) status = cuda_check_shape(b, op, t, role, 1, &x->shape[1]);
    return status;
}

/* cuDNN serves this batch norm: kernels = cudnn, not bf16, eps within its
 * limit and, in training, more than one value per channel (cuDNN's unbiased
 * running variance would divide by zero; the reference then uses the biased
 * one). */
static int bn_uses_cudnn(const cuda_backend *b, nnopt_dtype dtype, const bn_sizes *sizes,
                         double eps, int training) {
    if (b->own_kernels || dtype == NNOPT_BF16 || eps < CUDNN_BN_MIN_EPSILON) return 0;
    return !training || sizes->batch * sizes->spatial > 1;
}

/* cuDNN refused the shape or its parameters (NOT_SUPPORTED or BAD_PARAM, in
 * any of cuDNN 9's detailed codes): the own kernels can run it instead. */
static int declined(cudnnStatus_t status) {
    const int category = (int)CUDNN_STATUS_CATEGORY(status);
    return category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM;
}

/* x's descriptor ([N,C,1,1] for 2-D x) and the derived per-channel one. */
static nnopt_status bn_descriptors(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                   cudnnTensorDescriptor_t descs[2]) {
    nnopt_status status = cuda_tensor_descriptor(b, op, x, &descs[0]);
    if (status == NNOPT_OK)
        status =
            cudnn_check(b, cudnnCreateTensorDescriptor(&descs[1]), "cudnnCreateTensorDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(
            b, cudnnDeriveBNTensorDescriptor(descs[1], descs[0], CUDNN_BATCHNORM_SPATIAL),
            "cudnnDeriveBNTensorDescriptor");
    return status;
}

nnopt_status cuda_batchnorm(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    const nnopt_bn_params *bp = &op->p.bn;
    const int training = bp->training != 0;
    nnopt_status status = cuda_check_counts(b, op, n_in, 5, 5, n_out, training ? 3 : 1);
    if (status != NNOPT_OK) return status;
    if (!(bp->eps >= 0) || !isfinite(bp->eps) ||
        (training && !(bp->momentum >= 0 && bp->momentum <= 1))) {
        cuda_error(b, "batchnorm: need eps >= 0 and momentum in [0, 1] (got %g, %g)", bp->eps,
                   bp->momentum);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const nnopt_tensor *x = in[0], *gamma = in[1], *beta = in[2];
    nnopt_tensor *running_mean = in[3], *running_var = in[4], *y = out[0];
    bn_sizes sizes;
    status = bn_sizes_check(b, op, x, training, &sizes);
    if (status == NNOPT_OK) status = check_per_channel(b, op, gamma, "gamma", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, beta, "beta", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, running_mean, "running_mean", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, running_var, "running_var", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", x);
    nnopt_tensor *save_mean = training ? out[1] : NULL, *save_invstd = training ? out[2] : NULL;
    if (status == NNOPT_OK && training)
        status = check_per_channel(b, op, save_mean, "save_mean", x);
    if (status == NNOPT_OK && training)
        status = check_per_channel(b, op, save_invstd, "save_invstd", x);
    if (status != NNOPT_OK || sizes.channels == 0) return status;
    if (sizes.batch * sizes.spatial == 0) return NNOPT_OK; /* inference on an empty batch */

    if (bn_uses_cudnn(b, x->dtype, &sizes, bp->eps, training)) {
        cudnnTensorDescriptor_t descs[2] = {NULL, NULL};
        status = bn_descriptors(b, op, x, descs);
        const void *one = cuda_one(x->dtype), *zero = cuda_zero(x->dtype);
        cudnnStatus_t cudnn_status = CUDNN_STATUS_SUCCESS;
        /* cuDNN's exponentialAverageFactor is PyTorch's momentum; its running
         * variance uses the unbiased batch variance, as PyTorch's does. */
        if (status == NNOPT_OK && training)
            cudnn_status = cudnnBatchNormalizationForwardTraining(
                b->cudnn, CUDNN_BATCHNORM_SPATIAL, one, zero, descs[0], x->data, descs[0], y->data,
                descs[1], gamma->data, beta->data, bp->momentum, running_mean->data,
                running_var->data, bp->eps, save_mean->data, save_invstd->data);
        else if (status == NNOPT_OK)
            cudnn_status = cudnnBatchNormalizationForwardInference(
                b->cudnn, CUDNN_BATCHNORM_SPATIAL, one, zero, descs[0], x->data, descs[0], y->data,
                descs[1], gamma->data, beta->data, running_mean->data, running_var->data, bp->eps);
        destroy_descriptors(descs, 2);
        /* A shape cuDNN declines runs on the own kernels below. */
        if (status != NNOPT_OK || !declined(cudnn_status))
            return status != NNOPT_OK
                       ? status
                       : cudnn_check(b, cudnn_status,
                                     training ? "cudnnBatchNormalizationForwardTraining"
                                              : "cudnnBatchNormalizationForwardInference");
    }
    const cudaError_t launch =
        training
            ? cuda_batchnorm_train(b->stream, x->dtype, sizes.batch, sizes.channels, sizes.spatial,
                                   bp, x->data, gamma->data, beta->data, running_mean->data,
                                   running_var->data, y->data, save_mean->data, save_invstd->data)
            : cuda_batchnorm_infer(b->stream, x->dtype, sizes.batch, sizes.channels, sizes.spatial,
                                   bp->eps, x->data, gamma->data, beta->data, running_mean->data,
                                   running_var->data, y->data);
    return cuda_check(b, launch, "batchnorm");
}

nnopt_status cuda_batchnorm_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 5, 5, n_out, 3);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *gamma = in[1], *dy = in[2], *save_mean = in[3],
                       *save_invstd = in[4];
    nnopt_tensor *dx = out[0], *dgamma = out[1], *dbeta = out[2];
    bn_sizes sizes;
    status = bn_sizes_check(b, op, x, 1, &sizes);
    if (status == NNOPT_OK) status = check_per_channel(b, op, gamma, "gamma", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dy, "dy", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, save_mean, "save_mean", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, save_invstd, "save_invstd", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dx, "dx", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, dgamma, "dgamma", x);
    if (status == NNOPT_OK) status = check_per_channel(b, op, dbeta, "dbeta", x);
    if (status != NNOPT_OK || sizes.channels == 0) return status;

    /* cuDNN takes eps here too; with the saved statistics given it does not
     * use it (and it is at least CUDNN_BN_MIN_EPSILON, or the own kernels run). */
    const double eps = op->p.bn.eps;
    /* cuDNN wherever the forward pass used it (not for one value per
     * channel, an eps below cuDNN's minimum, kernels = own). */
    if (bn_uses_cudnn(b, x->dtype, &sizes, op->p.bn.eps, 1)) {
        cudnnTensorDescriptor_t descs[2] = {NULL, NULL};
        status = bn_descriptors(b, op, x, descs);
        const void *one = cuda_one(x->dtype), *zero = cuda_zero(x->dtype);
        cudnnStatus_t cudnn_status = CUDNN_STATUS_SUCCESS;
        if (status == NNOPT_OK)
            cudnn_status = cudnnBatchNormalizationBackward(
                b->cudnn, CUDNN_BATCHNORM_SPATIAL, one, zero, one, zero, descs[0], x->data,
                descs[0], dy->data, descs[0], dx->data, descs[1], gamma->data, dgamma->data,
                dbeta->data, eps, save_mean->data, save_invstd->data);
        destroy_descriptors(descs, 2);
        /* A shape cuDNN declines runs on the own kernels below. */
        if (status != NNOPT_OK || !declined(cudnn_status))
            return status != NNOPT_OK
                       ? status
                       : cudnn_check(b, cudnn_status, "cudnnBatchNormalizationBackward");
    }
    return cuda_check(b,
                      cuda_batchnorm_backward(b->stream, x->dtype, sizes.batch, sizes.channels,
                                              sizes.spatial, x->data, gamma->data, dy->data,
                                              save_mean->data, save_invstd->data, dx->data,
                                              dgamma->data, dbeta->data),
                      "batchnorm_bwd");
}

/* ---- softmax cross-entropy ---- */

/* log softmax(logits / temperature) by cuDNN into log_probs (a logits-sized
 * device buffer; scaled is scratch of the same size, used when T != 1). */
static nnopt_status cudnn_log_softmax(cuda_backend *b, const nnopt_op *op,
                                      const nnopt_tensor *logits, double temperature, void *scaled,
                                      void *log_probs) {
    const int64_t count = nnopt_tensor_numel(logits);
    const void *input = logits->data;
    nnopt_status status = NNOPT_OK;
    if (temperature != 1.0) {
        status = cuda_check(
            b, cuda_scale(b->stream, logits->dtype, count, 1.0 / temperature, logits->data, scaled),
            "softmax_xent");
        input = scaled;
    }
    cudnnTensorDescriptor_t desc = NULL;
    if (status == NNOPT_OK) status = cuda_tensor_descriptor(b, op, logits, &desc);
    if (status == NNOPT_OK)
        status =
            cudnn_check(b,
                        cudnnSoftmaxForward(b->cudnn, CUDNN_SOFTMAX_LOG,
                                            CUDNN_SOFTMAX_MODE_INSTANCE, cuda_one(logits->dtype),
                                            desc, input, cuda_zero(logits->dtype), desc, log_probs),
                        "cudnnSoftmaxForward");
    if (desc != NULL) cudnnDestroyTensorDescriptor(desc);
    return status;
}

nnopt_status cuda_softmax_xent_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 2);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *logits = in[0], *target = in[1];
    nnopt_tensor *loss = out[0], *dlogits = out[1];
    const nnopt_xent_params *xp = &op->p.xent;
    status = cuda_check_tensor(b, op, logits, "logits", -1);
    if (status != NNOPT_OK) return status;
    if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1) {
        cuda_error(b, "softmax_xent: logits must be [N,K] with N, K >= 1");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (!(xp->temperature > 0) || !isfinite(xp->temperature)) {
        cuda_error(b, "softmax_xent: temperature must be a positive number (got %g)",
                   xp->temperature);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int64_t batch = logits->shape[0], classes = logits->shape[1], one = 1;
    if (xp->soft_targets) {
        status = cuda_check_like(b, op, target, "target", logits);
    } else {
        status = cuda_check_tensor(b, op, target, "labels", NNOPT_I32);
        if (status == NNOPT_OK) status = cuda_check_shape(b, op, target, "labels", 1, &batch);
    }
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, loss, "loss", (int)logits->dtype);
    if (status == NNOPT_OK) status = cuda_check_shape(b, op, loss, "loss", 1, &one);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dlogits, "dlogits", logits);
    if (status != NNOPT_OK) return status;

    const int use_cudnn = !b->own_kernels && logits->dtype != NNOPT_BF16;
    const size_t logits_bytes = nnopt_tensor_nbytes(logits);
    void *row_loss = NULL, *bad_label = NULL, *log_probs = NULL, *scaled = NULL;
    status = cuda_device_alloc(b, (size_t)batch * sizeof(double), &row_loss);
    if (status == NNOPT_OK) status = cuda_device_alloc(b, sizeof(int), &bad_label);
    if (status == NNOPT_OK && use_cudnn) status = cuda_device_alloc(b, logits_bytes, &log_probs);
    if (status == NNOPT_OK && use_cudnn && xp->temperature != 1.0)
        status = cuda_device_alloc(b, logits_bytes, &scaled);
    if (status == NNOPT_OK)
        status =
            cuda_check(b, cudaMemsetAsync(bad_label, 0, sizeof(int), b->stream), "cudaMemsetAsync");
    if (status == NNOPT_OK && use_cudnn)
        status = cudnn_log_softmax(b, op, logits, xp->temperature, scaled, log_probs);
    if (status == NNOPT_OK) {
        const cuda_xent_args args = {
            .batch = batch,
            .classes = classes,
            .temperature = xp->temperature,
            .weight = xp->weight == 0 ? 1.0 : xp->weight, /* 0 is read as 1 (ops.h) */
            .accumulate = xp->accumulate != 0,
            .logits = logits->data,
            .log_probs = log_probs,
            .labels = xp->soft_targets ? NULL : target->data,
            .soft_targets = xp->soft_targets ? target->data : NULL,
            .loss = loss->data,
            .dlogits = dlogits->data,
            .row_loss = row_loss,
            .bad_label = bad_label,
        };
        status = cuda_check(b, cuda_softmax_xent(b->stream, logits->dtype, &args), "softmax_xent");
    }
    /* Labels are checked on the device: wait for the verdict (once per step). */
    if (status == NNOPT_OK && !xp->soft_targets) {
        status = cuda_check(b,
                            cudaMemcpyAsync(b->host_flag, bad_label, sizeof(int),
                                            cudaMemcpyDeviceToHost, b->stream),
                            "cudaMemcpyAsync");
        if (status == NNOPT_OK)
            status = cuda_check(b, cudaStreamSynchronize(b->stream), "softmax_xent");
        if (status == NNOPT_OK && *b->host_flag != 0) {
            cuda_error(b, "softmax_xent: the label of sample %d is outside [0, %lld)",
                       *b->host_flag - 1, (long long)classes);
            status = NNOPT_STATUS_INVALID_ARGUMENT;
        }
    }
    cuda_device_free(b, row_loss);
    cuda_device_free(b, bad_label);
    cuda_device_free(b, log_probs);
    cuda_device_free(b, scaled);
    return status;
}
