/* Reference conv2d: forward (with optional bias), backward data, backward
 * filter, for any stride, zero padding and group count (depthwise included). */
#include "ref_internal.h"

/* Every size the kernels need, checked for consistency once. */
typedef struct conv_geometry {
    int64_t n, c, h, w; /* input x */
    int64_t k, r, s;    /* filters: w[K, C/groups, R, S] */
    int64_t p, q;       /* output y */
    int64_t stride_h, stride_w, pad_h, pad_w, groups;
} conv_geometry;

#define T float
#define REF_SUFFIX f32
#include "ref_conv.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_conv.inc"
#undef T
#undef REF_SUFFIX

/* Checks the tensors in the roles of x, w and y (gradients stand in for them
 * in the backward ops; `roles` names them for messages) against each other and
 * the op's parameters, and fills g. All three must share x's dtype. */
static nnopt_status conv_geometry_check(const nnopt_host_api *host, const nnopt_op *op,
                                        const nnopt_tensor *x, const nnopt_tensor *w,
                                        const nnopt_tensor *y, const char *const roles[3],
                                        conv_geometry *g) {
    const char *name = nnopt_op_kind_name(op->kind);
    const nnopt_conv2d_params *cp = &op->p.conv2d;
    nnopt_status status = ref_check_float(host, op, x, roles[0]);
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, w, roles[1], x->dtype);
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, y, roles[2], x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 4 || w->ndim != 4) {
        ref_error(host, "%s: %s and %s must be 4-D (NCHW, KCRS)", name, roles[0], roles[1]);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (cp->stride_h < 1 || cp->stride_w < 1 || cp->pad_h < 0 || cp->pad_w < 0 || cp->groups < 1) {
        ref_error(host, "%s: bad parameters (stride %dx%d, pad %dx%d, groups %d)", name,
                  cp->stride_h, cp->stride_w, cp->pad_h, cp->pad_w, cp->groups);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (conv_geometry){.n = x->shape[0],
                         .c = x->shape[1],
                         .h = x->shape[2],
                         .w = x->shape[3],
                         .k = w->shape[0],
                         .r = w->shape[2],
                         .s = w->shape[3],
                         .stride_h = cp->stride_h,
                         .stride_w = cp->stride_w,
                         .pad_h = cp->pad_h,
                         .pad_w = cp->pad_w,
                         .groups = cp->groups};
    if (g->c % g->groups != 0 || g->k % g->groups != 0 || w->shape[1] * g->groups != g->c) {
        ref_error(host,
                  "%s: %lld input channels, %lld filters of %lld channels and %d groups "
                  "do not fit together",
                  name, (long long)g->c, (long long)g->k, (long long)w->shape[1], cp->groups);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int64_t padded_h = g->h + 2 * g->pad_h, padded_w = g->w + 2 * g->pad_w;
    if (g->r < 1 || g->s < 1 || padded_h < g->r || padded_w < g->s) {
        ref_error(host, "%s: %lldx%lld filter does not fit the padded %lldx%lld input", name,
                  (long long)g->r, (long long)g->s, (long long)padded_h, (long long)padded_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    g->p = (padded_h - g->r) / g->stride_h + 1;
    g->q = (padded_w - g->s) / g->stride_w + 1;
    const int64_t y_shape[4] = {g->n, g->k, g->p, g->q};
    return ref_check_shape(host, op, y, roles[2], 4, y_shape);
}

nnopt_status ref_conv2d(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                        int n_in, nnopt_tensor *const *out, int n_out) {
    const int residual = op->kind == NNOPT_OP_CONV2D_ADD_RELU;
    nnopt_status status =
        ref_check_counts(host, op, n_in, residual ? 4 : 2, residual ? 4 : 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *w = in[1], *bias = n_in >= 3 ? in[2] : NULL;
    nnopt_tensor *y = out[0];
    conv_geometry g;
    status = conv_geometry_check(host, op, x, w, y, (const char *const[3]){"x", "w", "y"}, &g);
    if (status == NNOPT_OK && bias != NULL) {
        status = ref_check_tensor(host, op, bias, "b", x->dtype);
        if (status == NNOPT_OK) status = ref_check_shape(host, op, bias, "b", 1, &g.k);
    }
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        conv2d_forward_f32(&g, x->data, w->data, bias ? bias->data : NULL, y->data);
    else
        conv2d_forward_f64(&g, x->data, w->data, bias ? bias->data : NULL, y->data);
    if (residual) {
        status = ref_check_like(host, op, in[3], "r", y);
        if (status != NNOPT_OK) return status;
        ref_add_in_place(y, in[3]);
    }
    if (op->kind == NNOPT_OP_CONV2D_RELU || residual) ref_relu_in_place(y);
    return NNOPT_OK;
}

nnopt_status ref_conv2d_bwd_data(const nnopt_host_api *host, const nnopt_op *op,
                                 nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                 int n_out) {
    const int masked = op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
    nnopt_status status = ref_check_counts(host, op, n_in, 2 + masked, 2 + masked, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0], *w = in[1];
    nnopt_tensor *dx = out[0];
    conv_geometry g;
    status = conv_geometry_check(host, op, dx, w, dy, (const char *const[3]){"dx", "w", "dy"}, &g);
    if (status == NNOPT_OK && masked) status = ref_check_like(host, op, in[2], "y", dx);
    if (status != NNOPT_OK) return status;
    const int accumulate = masked || op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD;
    if (dx->dtype == NNOPT_F32)
        conv2d_backward_data_f32(&g, dy->data, w->data, dx->data, accumulate);
    else
        conv2d_backward_data_f64(&g, dy->data, w->data, dx->data, accumulate);
    if (masked) ref_keep_where_positive(dx, in[2]);
    return NNOPT_OK;
}

nnopt_status ref_conv2d_bwd_filter(const nnopt_host_api *host, const nnopt_op *op,
                                   nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                   int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *dy = in[1];
    nnopt_tensor *dw = out[0];
    conv_geometry g;
    status = conv_geometry_check(host, op, x, dw, dy, (const char *const[3]){"x", "dw", "dy"}, &g);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        conv2d_backward_filter_f32(&g, x->data, dy->data, dw->data);
    else
        conv2d_backward_filter_f64(&g, x->data, dy->data, dw->data);
    return NNOPT_OK;
}
