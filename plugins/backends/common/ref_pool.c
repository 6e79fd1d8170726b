/* Reference 2-D max and average pooling, forward and backward. */
#include "ref_internal.h"

typedef struct pool_geometry {
    nnopt_pool_kind kind;
    int64_t planes; /* N * C: every (n, c) image is pooled on its own */
    int64_t h, w, p, q;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} pool_geometry;

#define T float
#define REF_SUFFIX f32
#include "ref_pool.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_pool.inc"
#undef T
#undef REF_SUFFIX

/* Checks the parameters and y's shape [N,C,P,Q] against x [N,C,H,W]. */
static nnopt_status pool_geometry_check(const nnopt_host_api *host, const nnopt_op *op,
                                        const nnopt_tensor *x, const nnopt_tensor *y,
                                        const char *y_role, pool_geometry *g) {
    const char *name = nnopt_op_kind_name(op->kind);
    const nnopt_pool2d_params *pp = &op->p.pool2d;
    nnopt_status status = ref_check_float(host, op, x, "x");
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, y, y_role, x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 4) {
        ref_error(host, "%s: x must be 4-D (NCHW)", name);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (pp->kind != NNOPT_POOL_MAX && pp->kind != NNOPT_POOL_AVG) {
        ref_error(host, "%s: unknown pooling kind %d", name, (int)pp->kind);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    /* Padding beyond half the window (PyTorch's limit) could leave a window
     * with no input at all. */
    if (pp->kernel_h < 1 || pp->kernel_w < 1 || pp->stride_h < 1 || pp->stride_w < 1 ||
        pp->pad_h < 0 || pp->pad_w < 0 || pp->pad_h > pp->kernel_h / 2 ||
        pp->pad_w > pp->kernel_w / 2) {
        ref_error(host, "%s: bad parameters (kernel %dx%d, stride %dx%d, pad %dx%d)", name,
                  pp->kernel_h, pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (pool_geometry){.kind = pp->kind,
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
        ref_error(host, "%s: %dx%d window does not fit the padded %lldx%lld input", name,
                  pp->kernel_h, pp->kernel_w, (long long)padded_h, (long long)padded_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    g->p = (padded_h - g->kernel_h) / g->stride_h + 1;
    g->q = (padded_w - g->kernel_w) / g->stride_w + 1;
    const int64_t y_shape[4] = {x->shape[0], x->shape[1], g->p, g->q};
    return ref_check_shape(host, op, y, y_role, 4, y_shape);
}

nnopt_status ref_pool2d(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                        int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    pool_geometry g;
    status = pool_geometry_check(host, op, x, y, "y", &g);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        pool2d_forward_f32(&g, x->data, y->data);
    else
        pool2d_forward_f64(&g, x->data, y->data);
    return NNOPT_OK;
}

nnopt_status ref_pool2d_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                            int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 3, 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    /* y (in[1]) is part of the op's interface for backends that keep it;
     * the reference recomputes what it needs from x. */
    const nnopt_tensor *x = in[0], *y = in[1], *dy = in[2];
    nnopt_tensor *dx = out[0];
    pool_geometry g;
    status = pool_geometry_check(host, op, x, dy, "dy", &g);
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", dy);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dx, "dx", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        pool2d_backward_f32(&g, x->data, dy->data, dx->data);
    else
        pool2d_backward_f64(&g, x->data, dy->data, dx->data);
    return NNOPT_OK;
}
