/* 2-D pooling, forward and backward, with (n, c) planes split across
 * threads; windows are clipped to the image once per row and column rather
 * than tested element by element. */
#include <omp.h>
#include <string.h>

#include "blis_bf16.h"
#include "blis_internal.h"
#include "blis_math.h" /* BLIS_VECTOR_CLONES */

typedef struct pool_geometry {
    nnopt_pool_kind kind;
    long planes, h, w, p, q;
    long kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} pool_geometry;

/* Output row p reads input rows ih0 + r for r in [*r_lo, *r_hi). */
static void pool_window_rows(const pool_geometry *g, long p, long *ih0, long *r_lo, long *r_hi) {
    *ih0 = p * g->stride_h - g->pad_h;
    *r_lo = *ih0 < 0 ? -*ih0 : 0;
    *r_hi = g->h - *ih0 < g->kernel_h ? g->h - *ih0 : g->kernel_h;
}

static void pool_window_cols(const pool_geometry *g, long q, long *iw0, long *s_lo, long *s_hi) {
    *iw0 = q * g->stride_w - g->pad_w;
    *s_lo = *iw0 < 0 ? -*iw0 : 0;
    *s_hi = g->w - *iw0 < g->kernel_w ? g->w - *iw0 : g->kernel_w;
}

static int pool_is_2x2(const pool_geometry *g) {
    return g->kernel_h == 2 && g->kernel_w == 2 && g->stride_h == 2 && g->stride_w == 2 &&
           g->pad_h == 0 && g->pad_w == 0;
}

#define T float
#define BLIS_SUFFIX f32
#include "blis_pool.inc"
#undef T
#undef BLIS_SUFFIX
#define T double
#define BLIS_SUFFIX f64
#include "blis_pool.inc"
#undef T
#undef BLIS_SUFFIX

static nnopt_status pool_geometry_make(blis_backend *be, const nnopt_op *op, const nnopt_tensor *x,
                                       const nnopt_tensor *y, pool_geometry *g) {
    const nnopt_pool2d_params *pp = &op->p.pool2d;
    if (x->ndim != 4 || y->ndim != 4 || pp->kernel_h < 1 || pp->kernel_w < 1 || pp->stride_h < 1 ||
        pp->stride_w < 1 || pp->pad_h < 0 || pp->pad_w < 0 ||
        (pp->kind != NNOPT_POOL_MAX && pp->kind != NNOPT_POOL_AVG)) {
        be->host->set_error("blis: %s: bad shapes or parameters", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (pool_geometry){
        .kind = pp->kind,
        .planes = x->shape[0] * x->shape[1],
        .h = x->shape[2],
        .w = x->shape[3],
        .p = y->shape[2],
        .q = y->shape[3],
        .kernel_h = pp->kernel_h,
        .kernel_w = pp->kernel_w,
        .stride_h = pp->stride_h,
        .stride_w = pp->stride_w,
        .pad_h = pp->pad_h,
        .pad_w = pp->pad_w,
    };
    if (y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] ||
        g->p != (g->h + 2 * g->pad_h - g->kernel_h) / g->stride_h + 1 ||
        g->q != (g->w + 2 * g->pad_w - g->kernel_w) / g->stride_w + 1 ||
        g->h + 2 * g->pad_h < g->kernel_h || g->w + 2 * g->pad_w < g->kernel_w) {
        be->host->set_error("blis: %s: inconsistent shapes", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* Planes per thread worth a thread's start-up. */
static int pool_team(const blis_backend *be, const pool_geometry *g) {
    const long work = g->planes * g->h * g->w;
    const long wanted = work / 16384;
    if (wanted < 1) return 1;
    return wanted < be->threads ? (int)wanted : be->threads;
}

nnopt_status blis_pool2d(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 1, 1, n_out, 1);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, out[0], "y", in[0]);
    pool_geometry g;
    if (st == NNOPT_OK) st = pool_geometry_make(be, op, in[0], out[0], &g);
    if (st != NNOPT_OK) return st;
    if (in[0]->dtype == NNOPT_F32)
        pool_forward_f32(&g, pool_team(be, &g), in[0]->data, out[0]->data);
    else
        pool_forward_f64(&g, pool_team(be, &g), in[0]->data, out[0]->data);
    return NNOPT_OK;
}

nnopt_status blis_pool2d_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 3, 3, n_out, 1);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[2], "dy", in[0]);
    if (st == NNOPT_OK) st = blis_check_float(be, op, out[0], "dx", in[0]);
    pool_geometry g;
    if (st == NNOPT_OK) st = pool_geometry_make(be, op, in[0], in[2], &g);
    if (st == NNOPT_OK && nnopt_tensor_numel(out[0]) != nnopt_tensor_numel(in[0])) {
        be->host->set_error("blis: pool2d_bwd: dx must have x's shape");
        st = NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (st != NNOPT_OK) return st;
    if (in[0]->dtype == NNOPT_F32)
        pool_backward_f32(&g, pool_team(be, &g), in[0]->data, in[2]->data, out[0]->data);
    else
        pool_backward_f64(&g, pool_team(be, &g), in[0]->data, in[2]->data, out[0]->data);
    return NNOPT_OK;
}

/* bf16: each plane widened into the thread's scratch, pooled by the f32
 * kernel, and the result rounded back (a max is exact; an average is one
 * f32 sum rounded once). */
nnopt_status blis_pool2d_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                              int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 1, 1, n_out, 1);
    pool_geometry g;
    if (st == NNOPT_OK) st = pool_geometry_make(be, op, in[0], out[0], &g);
    if (st != NNOPT_OK) return st;
    const int team = pool_team(be, &g);
    const size_t in_bytes = blis_align64((size_t)(g.h * g.w) * sizeof(float));
    st = blis_scratch_reserve(be, team, in_bytes + (size_t)(g.p * g.q) * sizeof(float));
    if (st != NNOPT_OK) return st;
    const uint16_t *x = in[0]->data;
    uint16_t *y = out[0]->data;
    const int hw = be->bf16_hw;
#pragma omp parallel num_threads(team)
    {
        float *wide_x = be->scratch[omp_get_thread_num()].data;
        float *wide_y = (float *)((char *)wide_x + in_bytes);
#pragma omp for schedule(static)
        for (long plane = 0; plane < g.planes; plane++) {
            blis_bf16_widen(hw, x + plane * g.h * g.w, wide_x, g.h * g.w);
            pool_plane_forward_f32(&g, wide_x, wide_y);
            blis_bf16_narrow(hw, wide_y, y + plane * g.p * g.q, g.p * g.q);
        }
    }
    return NNOPT_OK;
}
