/* Reference dense (fully connected) layer, its two gradients, and the bias
 * gradient shared with conv2d. */
#include "ref_internal.h"

#define T float
#define REF_SUFFIX f32
#include "ref_dense.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_dense.inc"
#undef T
#undef REF_SUFFIX

typedef struct dense_sizes {
    int64_t batch, in_features, out_features;
} dense_sizes;

/* Checks x[N,IN], w[OUT,IN] and y[N,OUT] (or the gradients in those roles,
 * named by `roles`) against each other; all share x's dtype. */
static nnopt_status dense_sizes_check(const nnopt_host_api *host, const nnopt_op *op,
                                      const nnopt_tensor *x, const nnopt_tensor *w,
                                      const nnopt_tensor *y, const char *const roles[3],
                                      dense_sizes *sizes) {
    nnopt_status status = ref_check_float(host, op, x, roles[0]);
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, w, roles[1], x->dtype);
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, y, roles[2], x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 2 || w->ndim != 2) {
        ref_error(host, "%s: %s and %s must be 2-D", nnopt_op_kind_name(op->kind), roles[0],
                  roles[1]);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *sizes = (dense_sizes){x->shape[0], x->shape[1], w->shape[0]};
    const int64_t w_shape[2] = {sizes->out_features, sizes->in_features};
    const int64_t y_shape[2] = {sizes->batch, sizes->out_features};
    status = ref_check_shape(host, op, w, roles[1], 2, w_shape);
    if (status == NNOPT_OK) status = ref_check_shape(host, op, y, roles[2], 2, y_shape);
    return status;
}

nnopt_status ref_dense(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                       int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *w = in[1], *bias = n_in == 3 ? in[2] : NULL;
    nnopt_tensor *y = out[0];
    dense_sizes d;
    status = dense_sizes_check(host, op, x, w, y, (const char *const[3]){"x", "w", "y"}, &d);
    if (status == NNOPT_OK && bias != NULL) {
        status = ref_check_tensor(host, op, bias, "b", x->dtype);
        if (status == NNOPT_OK) status = ref_check_shape(host, op, bias, "b", 1, &d.out_features);
    }
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        dense_forward_f32(d.batch, d.in_features, d.out_features, x->data, w->data,
                          bias ? bias->data : NULL, y->data);
    else
        dense_forward_f64(d.batch, d.in_features, d.out_features, x->data, w->data,
                          bias ? bias->data : NULL, y->data);
    return NNOPT_OK;
}

nnopt_status ref_dense_bwd_data(const nnopt_host_api *host, const nnopt_op *op,
                                nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0], *w = in[1];
    nnopt_tensor *dx = out[0];
    dense_sizes d;
    status = dense_sizes_check(host, op, dx, w, dy, (const char *const[3]){"dx", "w", "dy"}, &d);
    if (status != NNOPT_OK) return status;
    if (dx->dtype == NNOPT_F32)
        dense_backward_data_f32(d.batch, d.in_features, d.out_features, dy->data, w->data,
                                dx->data);
    else
        dense_backward_data_f64(d.batch, d.in_features, d.out_features, dy->data, w->data,
                                dx->data);
    return NNOPT_OK;
}

nnopt_status ref_dense_bwd_weight(const nnopt_host_api *host, const nnopt_op *op,
                                  nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                  int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *dy = in[1];
    nnopt_tensor *dw = out[0];
    dense_sizes d;
    status = dense_sizes_check(host, op, x, dw, dy, (const char *const[3]){"x", "dw", "dy"}, &d);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        dense_backward_weight_f32(d.batch, d.in_features, d.out_features, x->data, dy->data,
                                  dw->data);
    else
        dense_backward_weight_f64(d.batch, d.in_features, d.out_features, x->data, dy->data,
                                  dw->data);
    return NNOPT_OK;
}

nnopt_status ref_bias_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                          int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0];
    nnopt_tensor *db = out[0];
    status = ref_check_float(host, op, dy, "dy");
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, db, "db", dy->dtype);
    if (status != NNOPT_OK) return status;
    if (dy->ndim < 2) {
        ref_error(host, "bias_bwd: dy must have at least 2 dimensions [N,K,...]");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    status = ref_check_shape(host, op, db, "db", 1, &dy->shape[1]);
    if (status != NNOPT_OK) return status;
    int64_t inner = 1; /* positions per (n, k): the product of the trailing axes */
    for (int i = 2; i < dy->ndim; i++) inner *= dy->shape[i];
    if (dy->dtype == NNOPT_F32)
        bias_backward_f32(dy->shape[0], dy->shape[1], inner, dy->data, db->data);
    else
        bias_backward_f64(dy->shape[0], dy->shape[1], inner, dy->data, db->data);
    return NNOPT_OK;
}
