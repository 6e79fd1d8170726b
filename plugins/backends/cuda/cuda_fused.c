/* The fused op kinds (include/nnopt/ops.h), in f32 and f64: the passes of the
 * unfused ops (cuDNN or the plugin's kernels, chosen as conv2d,
 * conv2d_bwd_data and batchnorm choose them), then at most one element-wise
 * kernel of the plugin's, in place:
 *
 *   conv2d_relu, conv2d_add_relu  the convolution without cuDNN's separate
 *       bias pass, then bias, residual and relu in one kernel: 2 launches
 *       (the unfused ops: conv, bias, [add,] relu)
 *   conv2d_bwd_data_add           cuDNN's backward data with beta = 1, or the
 *       direct kernel adding into dx: 1 launch (unfused: 2)
 *   conv2d_bwd_data_add_masked    the same, then the mask kernel: 2 launches
 *   add_relu                      one kernel
 *   batchnorm_relu, batchnorm_add_relu  batchnorm into y, then the relu (with
 *       the residual added) in place on y: 2 launches
 *   batchnorm_relu_bwd            dy masked by y > 0 into scratch, then
 *       batchnorm_bwd: 2 launches
 *
 * Results are the reference's (plugins/backends/common): conv2d_relu,
 * conv2d_add_relu, add_relu and batchnorm_add_relu take relu as v < 0 ? 0 : v
 * (NaN and -0 pass through), batchnorm_relu as v > 0 ? v : 0 (NaN and -0 give
 * +0), and the masked gradients are 0 where y is not > 0 (NaN included). */
#include "cuda_internal.h"

static nnopt_status launched(cuda_backend *b, const nnopt_op *op, cudaError_t status) {
    return cuda_check(b, status, nnopt_op_kind_name(op->kind));
}

/* conv2d_relu: in x, w, [b]; conv2d_add_relu: in x, w, b, r. out y. */
nnopt_status cuda_fused_conv2d_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out) {
    const int residual = op->kind == NNOPT_OP_CONV2D_ADD_RELU;
    nnopt_status status =
        cuda_check_counts(b, op, n_in, residual ? 4 : 2, residual ? 4 : 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *bias = n_in >= 3 ? in[2] : NULL, *r = residual ? in[3] : NULL;
    nnopt_tensor *y = out[0];
    if (residual) {
        /* The residual is checked before the convolution writes y. */
        status = cuda_check_tensor(b, op, y, "y", -1);
        if (status == NNOPT_OK) status = cuda_check_like(b, op, r, "r", y);
        if (status == NNOPT_OK && r->data == y->data) {
            cuda_error(b, "conv2d_add_relu: y must not be r");
            status = NNOPT_STATUS_INVALID_ARGUMENT;
        }
        if (status != NNOPT_OK) return status;
    }
    int bias_added = 0;
    status = cuda_conv2d_forward_deferred_bias(b, op, in[0], in[1], bias, y, &bias_added);
    if (status != NNOPT_OK || nnopt_tensor_numel(y) == 0) return status;
    /* y is [N, K, P, Q] (checked by the convolution). */
    const void *pending_bias = bias != NULL && !bias_added ? bias->data : NULL;
    return launched(b, op,
                    cuda_bias_add_relu(b->stream, y->dtype, y->shape[0], y->shape[1],
                                       y->shape[2] * y->shape[3], y->data, pending_bias,
                                       r != NULL ? r->data : NULL, y->data));
}

/* conv2d_bwd_data_add: in dy, w; conv2d_bwd_data_add_masked: in dy, w, y.
 * out dx (added to). */
nnopt_status cuda_fused_conv2d_bwd_data_add(cuda_backend *b, const nnopt_op *op,
                                            nnopt_tensor *const *in, int n_in,
                                            nnopt_tensor *const *out, int n_out) {
    const int masked = op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
    nnopt_status status = cuda_check_counts(b, op, n_in, 2 + masked, 2 + masked, n_out, 1);
    if (status != NNOPT_OK) return status;
    nnopt_tensor *dx = out[0];
    const nnopt_tensor *relu_y = masked ? in[2] : NULL;
    if (masked) {
        status = cuda_check_tensor(b, op, dx, "dx", -1);
        if (status == NNOPT_OK) status = cuda_check_like(b, op, relu_y, "y", dx);
        if (status != NNOPT_OK) return status;
    }
    status = cuda_conv2d_bwd_data_accumulate(b, op, in[0], in[1], dx);
    if (status != NNOPT_OK || !masked) return status;
    const int64_t count = nnopt_tensor_numel(dx);
    if (count == 0) return NNOPT_OK;
    return launched(
        b, op,
        cuda_keep_where_positive(b->stream, dx->dtype, count, relu_y->data, dx->data, dx->data));
}

/* in a, b  out y = relu(a + b); y may be a. */
nnopt_status cuda_fused_add_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_elementwise_pair(b, op, in, n_in, out, n_out);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *a = in[0], *b_in = in[1];
    nnopt_tensor *y = out[0];
    const int64_t count = nnopt_tensor_numel(a);
    if (count == 0) return NNOPT_OK;
    return launched(
        b, op,
        cuda_bias_add_relu(b->stream, a->dtype, 1, 1, count, a->data, NULL, b_in->data, y->data));
}

/* batchnorm_relu: batchnorm's ins and outs; batchnorm_add_relu: batchnorm's
 * five ins, then r (x's shape). */
nnopt_status cuda_fused_batchnorm_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                       int n_in, nnopt_tensor *const *out, int n_out) {
    const int residual = op->kind == NNOPT_OP_BATCHNORM_ADD_RELU;
    nnopt_status status = cuda_check_counts(b, op, n_in, 5 + residual, 5 + residual, n_out,
                                            op->p.bn.training ? 3 : 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *r = residual ? in[5] : NULL;
    nnopt_tensor *y = out[0];
    if (residual) {
        status = cuda_check_tensor(b, op, x, "x", -1);
        if (status == NNOPT_OK) status = cuda_check_like(b, op, r, "r", x);
        if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", x);
        if (status == NNOPT_OK && (y->data == x->data || y->data == r->data)) {
            cuda_error(b, "batchnorm_add_relu: y must be neither x nor r");
            status = NNOPT_STATUS_INVALID_ARGUMENT;
        }
        if (status != NNOPT_OK) return status;
    }
    status = cuda_batchnorm(b, op, in, 5, out, n_out);
    if (status != NNOPT_OK) return status;
    const int64_t count = nnopt_tensor_numel(y);
    if (count == 0) return NNOPT_OK;
    /* The relu of batchnorm's output (ref_act's: NaN and -0 pass through). */
    return launched(b, op,
                    cuda_bias_add_relu(b->stream, y->dtype, 1, 1, count, y->data, NULL,
                                       residual ? r->data : NULL, y->data));
}

/* in x, gamma, dy, save_mean, save_invstd, y  out dx, dgamma, dbeta. */
nnopt_status cuda_fused_batchnorm_relu_bwd(cuda_backend *b, const nnopt_op *op,
                                           nnopt_tensor *const *in, int n_in,
                                           nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 6, 6, n_out, 3);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *dy = in[2], *relu_y = in[5];
    status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dy, "dy", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, relu_y, "y", x);
    if (status != NNOPT_OK) return status;
    /* The gradient reaching the batchnorm: dy where y > 0, else 0. */
    nnopt_tensor masked_dy = *dy;
    masked_dy.data = NULL;
    const int64_t count = nnopt_tensor_numel(dy);
    status = cuda_device_alloc(b, nnopt_tensor_nbytes(dy), &masked_dy.data);
    if (status == NNOPT_OK && count > 0)
        status = launched(b, op,
                          cuda_keep_where_positive(b->stream, dy->dtype, count, relu_y->data,
                                                   dy->data, masked_dy.data));
    if (status == NNOPT_OK) {
        nnopt_tensor *const bn_in[5] = {in[0], in[1], &masked_dy, in[3], in[4]};
        status = cuda_batchnorm_bwd(b, op, bn_in, 5, out, n_out);
    }
    cuda_device_free(b, masked_dy.data);
    return status;
}
