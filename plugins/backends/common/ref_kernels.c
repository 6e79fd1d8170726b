/* Reference kernels: op dispatch and the argument checks every family shares.
 * The kernels themselves are in ref_<family>.c / .inc. */
#include "ref_internal.h"

#include <stdarg.h>
#include <stdio.h>

/* Indexed by nnopt_op_kind; a missing entry means "not implemented". */
static const ref_op_fn ref_ops[NNOPT_OP_KIND_COUNT] = {
    [NNOPT_OP_CONV2D] = ref_conv2d,
    [NNOPT_OP_CONV2D_BWD_DATA] = ref_conv2d_bwd_data,
    [NNOPT_OP_CONV2D_BWD_FILTER] = ref_conv2d_bwd_filter,
    [NNOPT_OP_DENSE] = ref_dense,
    [NNOPT_OP_DENSE_BWD_DATA] = ref_dense_bwd_data,
    [NNOPT_OP_DENSE_BWD_WEIGHT] = ref_dense_bwd_weight,
    [NNOPT_OP_BIAS_BWD] = ref_bias_bwd,
    [NNOPT_OP_POOL2D] = ref_pool2d,
    [NNOPT_OP_POOL2D_BWD] = ref_pool2d_bwd,
    [NNOPT_OP_ACT] = ref_act,
    [NNOPT_OP_ACT_BWD] = ref_act_bwd,
    [NNOPT_OP_ADD] = ref_add,
    [NNOPT_OP_SOFTMAX_XENT] = ref_softmax_xent,
    [NNOPT_OP_SGD_UPDATE] = ref_sgd_update,
    [NNOPT_OP_ADAM_UPDATE] = ref_adam_update,
    [NNOPT_OP_CAST] = ref_cast,
    [NNOPT_OP_BATCHNORM] = ref_batchnorm,
    [NNOPT_OP_BATCHNORM_BWD] = ref_batchnorm_bwd,
    [NNOPT_OP_DROPOUT] = ref_dropout,
    [NNOPT_OP_DROPOUT_BWD] = ref_dropout_bwd,
    [NNOPT_OP_CONV2D_INT8] = ref_qlinear,
    [NNOPT_OP_DENSE_INT8] = ref_qlinear,
    [NNOPT_OP_BATCHNORM_RELU] = ref_batchnorm,
    [NNOPT_OP_BATCHNORM_RELU_BWD] = ref_batchnorm_bwd,
    [NNOPT_OP_CONV2D_RELU] = ref_conv2d,
    [NNOPT_OP_ADD_RELU] = ref_add,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD] = ref_conv2d_bwd_data,
    [NNOPT_OP_CONV2D_ADD_RELU] = ref_conv2d,
    [NNOPT_OP_BATCHNORM_ADD_RELU] = ref_batchnorm,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED] = ref_conv2d_bwd_data,
};

int nnopt_ref_supports(nnopt_op_kind op, nnopt_dtype dtype) {
    if ((unsigned)op >= NNOPT_OP_KIND_COUNT || ref_ops[op] == NULL) return 0;
    /* The int8 ops take f32 activations (their weights are i8). */
    if (op == NNOPT_OP_CONV2D_INT8 || op == NNOPT_OP_DENSE_INT8) return dtype == NNOPT_F32;
    if (dtype == NNOPT_BF16) return nnopt_ref_bf16_op(op);
    return dtype == NNOPT_F32 || dtype == NNOPT_F64;
}

/* The f32 kernels, as nnopt_bf16_via_f32 calls them. */
static nnopt_status run_f32_kernel(void *host, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out) {
    return ref_ops[op->kind](host, op, in, n_in, out, n_out);
}

nnopt_status nnopt_ref_run(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                           int n_in, nnopt_tensor *const *out, int n_out) {
    if (op == NULL || (n_in > 0 && in == NULL) || (n_out > 0 && out == NULL)) {
        ref_error(host, "reference kernels: NULL op or tensor array");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if ((unsigned)op->kind >= NNOPT_OP_KIND_COUNT || ref_ops[op->kind] == NULL) {
        ref_error(host, "reference kernels: unknown op kind %d", (int)op->kind);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    if (nnopt_op_has_bf16((const nnopt_tensor *const *)in, n_in, (const nnopt_tensor *const *)out,
                          n_out)) {
        if (!nnopt_ref_bf16_op(op->kind)) {
            ref_error(host,
                      "reference kernels: %s has no bf16 version (bf16 runs forward ops only)",
                      nnopt_op_kind_name(op->kind));
            return NNOPT_STATUS_UNSUPPORTED;
        }
        return nnopt_bf16_via_f32(host, run_f32_kernel, (void *)host, op, in, n_in, out, n_out);
    }
    return ref_ops[op->kind](host, op, in, n_in, out, n_out);
}

void ref_error(const nnopt_host_api *host, const char *fmt, ...) {
    if (host == NULL || host->set_error == NULL) return;
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    host->set_error("%s", message);
}

nnopt_status ref_check_counts(const nnopt_host_api *host, const nnopt_op *op, int n_in, int min_in,
                              int max_in, int n_out, int want_out) {
    const char *name = nnopt_op_kind_name(op->kind);
    if (n_in < min_in || n_in > max_in) {
        if (min_in == max_in)
            ref_error(host, "%s: expected %d inputs, got %d", name, min_in, n_in);
        else
            ref_error(host, "%s: expected %d to %d inputs, got %d", name, min_in, max_in, n_in);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (n_out != want_out) {
        ref_error(host, "%s: expected %d outputs, got %d", name, want_out, n_out);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* Presence, allocation and shape sanity, whatever the dtype. */
static nnopt_status check_present(const nnopt_host_api *host, const nnopt_op *op,
                                  const nnopt_tensor *t, const char *role) {
    const char *name = nnopt_op_kind_name(op->kind);
    if (t == NULL) {
        ref_error(host, "%s: %s tensor is missing", name, role);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (t->ndim < 0 || t->ndim > NNOPT_MAX_DIMS) {
        ref_error(host, "%s: %s has %d dimensions", name, role, (int)t->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) {
            ref_error(host, "%s: %s has a negative dimension", name, role);
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
    }
    if (t->data == NULL) {
        ref_error(host, "%s: %s tensor is not allocated", name, role);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

nnopt_status ref_check_tensor(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, nnopt_dtype dtype) {
    nnopt_status status = check_present(host, op, t, role);
    if (status != NNOPT_OK) return status;
    if (t->dtype != dtype) {
        ref_error(host, "%s: %s is %s, expected %s", nnopt_op_kind_name(op->kind), role,
                  nnopt_dtype_name(t->dtype), nnopt_dtype_name(dtype));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

nnopt_status ref_check_float(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role) {
    nnopt_status status = check_present(host, op, t, role);
    if (status != NNOPT_OK) return status;
    if (t->dtype != NNOPT_F32 && t->dtype != NNOPT_F64) {
        ref_error(host, "%s: %s dtype %s is not supported by the reference kernels (f32, f64)",
                  nnopt_op_kind_name(op->kind), role, nnopt_dtype_name(t->dtype));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    return NNOPT_OK;
}

nnopt_status ref_check_shape(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role, int ndim, const int64_t *dims) {
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == dims[i];
    if (!same) {
        char expected[128] = "", actual[128] = "";
        size_t used = 0;
        for (int i = 0; i < ndim && used < sizeof expected; i++)
            used += (size_t)snprintf(expected + used, sizeof expected - used, "%s%lld",
                                     i ? "," : "", (long long)dims[i]);
        used = 0;
        for (int i = 0; i < t->ndim && used < sizeof actual; i++)
            used += (size_t)snprintf(actual + used, sizeof actual - used, "%s%lld", i ? "," : "",
                                     (long long)t->shape[i]);
        ref_error(host, "%s: %s has shape [%s], expected [%s]", nnopt_op_kind_name(op->kind), role,
                  actual, expected);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

nnopt_status ref_check_like(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                            const char *role, const nnopt_tensor *like) {
    nnopt_status status = ref_check_tensor(host, op, t, role, like->dtype);
    if (status != NNOPT_OK) return status;
    return ref_check_shape(host, op, t, role, like->ndim, like->shape);
}
