/* Dense layers: on AVX-512 CPUs our own GEMM (blis_dense.inc), row tiles
 * split across the threads; elsewhere one BLIS GEMM each, threaded by BLIS,
 * with the weight's transpose expressed through strides rather than copied.
 * BLIS 0.9's kernels here are AVX2 and its 2-thread split of LeNet's
 * 128 x 120 x 400 GEMMs gained little over one thread. */
#include <omp.h>

#include "blis_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BLIS_HAVE_DENSE_AVX512 1
#define DENSE_ROWS 6 /* rows of C per register tile */

#define BLIS_VEC512_DOUBLE 0
#include "blis_vec512.h"
#include "blis_dense.inc"
#undef BLIS_VEC512_DOUBLE
#define BLIS_VEC512_DOUBLE 1
#include "blis_vec512.h"
#include "blis_dense.inc"
#undef BLIS_VEC512_DOUBLE
#include "blis_vec512.h" /* undefines its macros */
#else
#define BLIS_HAVE_DENSE_AVX512 0
#endif

/* C[m, n] = A B (+ a bias row) with B and C row-major (blis_dense.inc); with `w`
 * ([n, k]) given, B is its transpose, written into `b` first. */
static void dense_gemm(const blis_backend *be, nnopt_dtype dtype, long m, long n, long k,
                       const void *a, long a_rs, long a_cs, const void *w, void *b, void *c,
                       const void *bias) {
#if BLIS_HAVE_DENSE_AVX512
    /* Under ~2M multiply-adds (LeNet's fc2 and fc3: a few microseconds) one
     * thread: waking a second costs about as much, and far more when the
     * machine is busy. */
    const int team = m * n * k < (1L << 21) ? 1 : be->threads;
    if (dtype == NNOPT_F32)
        dense_gemm_f32(team, m, n, k, a, a_rs, a_cs, w, b, n, c, n, bias);
    else
        dense_gemm_f64(team, m, n, k, a, a_rs, a_cs, w, b, n, c, n, bias);
#else
    (void)be, (void)dtype, (void)m, (void)n, (void)k, (void)a, (void)a_rs, (void)a_cs, (void)w,
        (void)b, (void)c, (void)bias;
#endif
}

/* x: [N, IN] (any trailing dims flattened), w: [OUT, IN]. */
static nnopt_status dense_dims(blis_backend *be, const nnopt_op *op, const nnopt_tensor *x,
                               const nnopt_tensor *w, long *n, long *in_features,
                               long *out_features) {
    if (x->ndim < 1 || w->ndim != 2) {
        be->host->set_error("blis: %s: weights must be [OUT, IN]", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *n = x->shape[0];
    *out_features = w->shape[0];
    *in_features = w->shape[1];
    if (*n * *in_features != nnopt_tensor_numel(x)) {
        be->host->set_error("blis: %s: input has %lld values per row, weights expect %ld",
                            nnopt_op_kind_name(op->kind),
                            (long long)(*n ? nnopt_tensor_numel(x) / *n : 0), *in_features);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

static nnopt_status check_numel(blis_backend *be, const nnopt_op *op, const nnopt_tensor *t,
                                const char *role, long want) {
    if (nnopt_tensor_numel(t) != want) {
        be->host->set_error("blis: %s: %s has %lld values, expected %ld",
                            nnopt_op_kind_name(op->kind), role, (long long)nnopt_tensor_numel(t),
                            want);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* y[n, o] = b[o], row by row: the GEMM then accumulates onto it (beta = 1). */
static void broadcast_bias(nnopt_dtype dtype, void *y, const void *b, long rows, long cols) {
    if (dtype == NNOPT_F32) {
        float *yf = y;
        const float *bf = b;
        for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++) yf[i * cols + j] = bf[j];
    } else {
        double *yd = y;
        const double *bd = b;
        for (long i = 0; i < rows; i++)
            for (long j = 0; j < cols; j++) yd[i * cols + j] = bd[j];
    }
}

nnopt_status blis_dense(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 3, n_out, 1);
    const nnopt_tensor *x = in[0], *w = n_in > 1 ? in[1] : NULL, *b = n_in > 2 ? in[2] : NULL;
    nnopt_tensor *y = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, x, "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, w, "w", x);
    if (st == NNOPT_OK && b) st = blis_check_float(be, op, b, "b", x);
    if (st == NNOPT_OK) st = blis_check_float(be, op, y, "y", x);
    long n = 0, in_f = 0, out_f = 0;
    if (st == NNOPT_OK) st = dense_dims(be, op, x, w, &n, &in_f, &out_f);
    if (st == NNOPT_OK) st = check_numel(be, op, y, "y", n * out_f);
    if (st == NNOPT_OK && b) st = check_numel(be, op, b, "b", out_f);
    if (st != NNOPT_OK) return st;
    if (be->dense_avx512) {
        /* y[n, o] = x[n, i] W^T[i, o] + b[o], with W^T copied row-major */
        const size_t es = x->dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
        st = blis_scratch_reserve(be, 1, (size_t)(in_f * out_f) * es);
        if (st != NNOPT_OK) return st;
        dense_gemm(be, x->dtype, n, out_f, in_f, x->data, in_f, 1, w->data, be->scratch[0].data,
                   y->data, b ? b->data : NULL);
        return NNOPT_OK;
    }
    if (b) broadcast_bias(x->dtype, y->data, b->data, n, out_f);
    /* y[n, o] = x[n, i] W^T[i, o] */
    const blis_matrix a = {x->data, in_f, 1}, bm = {w->data, 1, in_f};
    blis_gemm(x->dtype, be->threads, n, out_f, in_f, a, bm, b ? 1.0 : 0.0, y->data, out_f, 1);
    return NNOPT_OK;
}

nnopt_status blis_dense_bwd_data(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 2, n_out, 1);
    const nnopt_tensor *dy = in[0], *w = n_in > 1 ? in[1] : NULL;
    nnopt_tensor *dx = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, dy, "dy", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, w, "w", dy);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dx, "dx", dy);
    long n = 0, in_f = 0, out_f = 0;
    if (st == NNOPT_OK) st = dense_dims(be, op, dx, w, &n, &in_f, &out_f);
    if (st == NNOPT_OK) st = check_numel(be, op, dy, "dy", n * out_f);
    if (st != NNOPT_OK) return st;
    if (be->dense_avx512) {
        dense_gemm(be, dy->dtype, n, in_f, out_f, dy->data, out_f, 1, NULL, (void *)w->data,
                   dx->data, NULL);
        return NNOPT_OK;
    }
    /* dx[n, i] = dy[n, o] W[o, i] */
    const blis_matrix a = {dy->data, out_f, 1}, bm = {w->data, in_f, 1};
    blis_gemm(dy->dtype, be->threads, n, in_f, out_f, a, bm, 0.0, dx->data, in_f, 1);
    return NNOPT_OK;
}

nnopt_status blis_dense_bwd_weight(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 2, n_out, 1);
    const nnopt_tensor *x = in[0], *dy = n_in > 1 ? in[1] : NULL;
    nnopt_tensor *dw = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, x, "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dy, "dy", x);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dw, "dw", x);
    long n = 0, in_f = 0, out_f = 0;
    if (st == NNOPT_OK) st = dense_dims(be, op, x, dw, &n, &in_f, &out_f);
    if (st == NNOPT_OK) st = check_numel(be, op, dy, "dy", n * out_f);
    if (st != NNOPT_OK) return st;
    if (be->dense_avx512) {
        dense_gemm(be, x->dtype, out_f, in_f, n, dy->data, 1, out_f, NULL, (void *)x->data,
                   dw->data, NULL);
        return NNOPT_OK;
    }
    /* dW[o, i] = dy^T[o, n] x[n, i] */
    const blis_matrix a = {dy->data, 1, out_f}, bm = {x->data, in_f, 1};
    blis_gemm(x->dtype, be->threads, out_f, in_f, n, a, bm, 0.0, dw->data, in_f, 1);
    return NNOPT_OK;
}
