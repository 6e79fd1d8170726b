/* Reference batch normalization (training and inference modes, alone or
 * with a fused relu) and its training-mode gradient. Statistics are per
 * channel (axis 1) over every other axis, for x of shape [N,C,H,W] or [N,C]. */
#include "ref_internal.h"

#include <math.h>

typedef struct bn_sizes {
    int64_t batch, channels, spatial; /* spatial: H * W, or 1 for 2-D x */
} bn_sizes;

#define T float
#define REF_SUFFIX f32
#include "ref_norm.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_norm.inc"
#undef T
#undef REF_SUFFIX

/* x is a float tensor of 2 or 4 dimensions; in training (need_values) it must
 * hold at least one value per channel, or the batch mean is undefined. */
static nnopt_status bn_sizes_check(const nnopt_host_api *host, const nnopt_op *op,
                                   const nnopt_tensor *x, int need_values, bn_sizes *sizes) {
    nnopt_status status = ref_check_float(host, op, x, "x");
    if (status != NNOPT_OK) return status;
    if (x->ndim != 2 && x->ndim != 4) {
        ref_error(host, "%s: x must be [N,C,H,W] or [N,C], got %d dimensions",
                  nnopt_op_kind_name(op->kind), (int)x->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *sizes = (bn_sizes){x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
    if (need_values && sizes->channels > 0 && sizes->batch * sizes->spatial == 0) {
        ref_error(host, "%s: x has no values per channel to take statistics over",
                  nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* t has x's dtype and shape [C]. */
static nnopt_status check_per_channel(const nnopt_host_api *host, const nnopt_op *op,
                                      const nnopt_tensor *t, const char *role,
                                      const nnopt_tensor *x) {
    nnopt_status status = ref_check_tensor(host, op, t, role, x->dtype);
    if (status == NNOPT_OK) status = ref_check_shape(host, op, t, role, 1, &x->shape[1]);
    return status;
}

static nnopt_status check_bn_params(const nnopt_host_api *host, const nnopt_bn_params *bp) {
    if (!(bp->eps >= 0) || !isfinite(bp->eps)) {
        ref_error(host, "batchnorm: eps must be a finite number >= 0 (got %g)", bp->eps);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (bp->training && !(bp->momentum >= 0 && bp->momentum <= 1)) {
        ref_error(host, "batchnorm: momentum must be in [0, 1] (got %g)", bp->momentum);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

static nnopt_status bn_infer(const bn_sizes *sizes, const nnopt_bn_params *bp, int relu,
                             nnopt_tensor *const *in, nnopt_tensor *y) {
    if (in[0]->dtype == NNOPT_F32)
        batchnorm_infer_f32(sizes, bp->eps, relu, in[0]->data, in[1]->data, in[2]->data,
                            in[3]->data, in[4]->data, y->data);
    else
        batchnorm_infer_f64(sizes, bp->eps, relu, in[0]->data, in[1]->data, in[2]->data,
                            in[3]->data, in[4]->data, y->data);
    return NNOPT_OK;
}

/* Training: also updates the running statistics (in[3], in[4]) and saves
 * the batch's (out[1], out[2]). */
static nnopt_status bn_train(const nnopt_host_api *host, const nnopt_op *op, const bn_sizes *sizes,
                             int relu, nnopt_tensor *const *in, nnopt_tensor *const *out) {
    const nnopt_tensor *x = in[0];
    nnopt_tensor *save_mean = out[1], *save_invstd = out[2];
    nnopt_status status = check_per_channel(host, op, save_mean, "save_mean", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, save_invstd, "save_invstd", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        batchnorm_train_f32(sizes, &op->p.bn, relu, x->data, in[1]->data, in[2]->data, in[3]->data,
                            in[4]->data, out[0]->data, save_mean->data, save_invstd->data);
    else
        batchnorm_train_f64(sizes, &op->p.bn, relu, x->data, in[1]->data, in[2]->data, in[3]->data,
                            in[4]->data, out[0]->data, save_mean->data, save_invstd->data);
    return NNOPT_OK;
}

nnopt_status ref_batchnorm(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                           int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_bn_params *bp = &op->p.bn;
    const int training = bp->training != 0;
    const int residual = op->kind == NNOPT_OP_BATCHNORM_ADD_RELU;
    const int relu = op->kind == NNOPT_OP_BATCHNORM_RELU; /* batchnorm_add_relu's comes last */
    nnopt_status status =
        ref_check_counts(host, op, n_in, 5 + residual, 5 + residual, n_out, training ? 3 : 1);
    if (status == NNOPT_OK) status = check_bn_params(host, bp);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *gamma = in[1], *beta = in[2];
    nnopt_tensor *running_mean = in[3], *running_var = in[4]; /* updated in training */
    nnopt_tensor *y = out[0];
    bn_sizes sizes;
    status = bn_sizes_check(host, op, x, training, &sizes);
    if (status == NNOPT_OK) status = check_per_channel(host, op, gamma, "gamma", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, beta, "beta", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, running_mean, "running_mean", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, running_var, "running_var", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", x);
    if (status == NNOPT_OK && residual) status = ref_check_like(host, op, in[5], "r", x);
    if (status == NNOPT_OK && residual && (y->data == x->data || y->data == in[5]->data)) {
        ref_error(host, "batchnorm_add_relu: y must be neither x nor r");
        status = NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (status != NNOPT_OK) return status;
    status =
        training ? bn_train(host, op, &sizes, relu, in, out) : bn_infer(&sizes, bp, relu, in, y);
    if (status == NNOPT_OK && residual) {
        ref_add_in_place(y, in[5]);
        ref_relu_in_place(y);
    }
    return status;
}

nnopt_status ref_batchnorm_bwd(const nnopt_host_api *host, const nnopt_op *op,
                               nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                               int n_out) {
    const int relu = op->kind == NNOPT_OP_BATCHNORM_RELU_BWD;
    nnopt_status status = ref_check_counts(host, op, n_in, 5 + relu, 5 + relu, n_out, 3);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *gamma = in[1], *dy = in[2], *save_mean = in[3],
                       *save_invstd = in[4], *relu_y = relu ? in[5] : NULL;
    nnopt_tensor *dx = out[0], *dgamma = out[1], *dbeta = out[2];
    bn_sizes sizes;
    status = bn_sizes_check(host, op, x, 1, &sizes);
    if (status == NNOPT_OK) status = check_per_channel(host, op, gamma, "gamma", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dy, "dy", x);
    if (status == NNOPT_OK && relu) status = ref_check_like(host, op, relu_y, "y", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, save_mean, "save_mean", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, save_invstd, "save_invstd", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dx, "dx", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, dgamma, "dgamma", x);
    if (status == NNOPT_OK) status = check_per_channel(host, op, dbeta, "dbeta", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        batchnorm_backward_f32(&sizes, x->data, gamma->data, dy->data, relu_y ? relu_y->data : NULL,
                               save_mean->data, save_invstd->data, dx->data, dgamma->data,
                               dbeta->data);
    else
        batchnorm_backward_f64(&sizes, x->data, gamma->data, dy->data, relu_y ? relu_y->data : NULL,
                               save_mean->data, save_invstd->data, dx->data, dgamma->data,
                               dbeta->data);
    return NNOPT_OK;
}
