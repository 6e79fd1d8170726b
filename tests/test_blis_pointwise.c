/* The blis backend's pointwise kernels (plugins/backends/blis/
 * blis_pointwise.c, built into this test) called directly, for what no op
 * reaches yet: the forward pass's relu epilogue, against the reference
 * backend's conv2d followed by its relu. Shapes cover the store paths (whole
 * vectors into one image; vectors across images at 7x5, 2x2 and 1x1
 * planes), channel counts off the register tiles, with and without bias,
 * f32 and f64, on 1, 2 and 3 threads. On CPUs without AVX-512F the kernels
 * report NNOPT_STATUS_UNSUPPORTED and the test is skipped. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blis_pointwise.h"
#include "test_backend.h"
#include "test_rng.h"

static test_backend ref_backend;

/* The backend's scratch (blis_backend.c, not built into this test). */
nnopt_status blis_scratch_reserve(blis_backend *be, int count, size_t bytes) {
    bytes = blis_align64(bytes > 0 ? bytes : 64);
    for (int t = 0; t < count && t < be->threads; t++) {
        blis_scratch *s = &be->scratch[t];
        if (s->bytes >= bytes) continue;
        free(s->data);
        s->data = aligned_alloc(64, bytes);
        s->bytes = s->data ? bytes : 0;
        if (!s->data) return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    return NNOPT_OK;
}

typedef struct pointwise_case {
    long n, c, h, w, k;
} pointwise_case;

/* values[i] as dtype, in a new host array. */
static void *host_array(nnopt_dtype dtype, const double *values, long count) {
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    char *out = malloc((size_t)count * es + 64);
    assert_non_null(out);
    for (long i = 0; i < count; i++) {
        if (dtype == NNOPT_F32)
            ((float *)out)[i] = (float)values[i];
        else
            ((double *)out)[i] = values[i];
    }
    return out;
}

static double host_value(nnopt_dtype dtype, const void *array, long i) {
    return dtype == NNOPT_F32 ? (double)((const float *)array)[i] : ((const double *)array)[i];
}

static double *random_values(long count) {
    double *v = malloc((size_t)count * sizeof *v);
    assert_non_null(v);
    for (long i = 0; i < count; i++) v[i] = rng_uniform(-1, 1);
    return v;
}

/* y = relu(W x + b) from the kernels and from the reference's conv2d + act. */
static void check_relu_case(blis_backend *be, const pointwise_case *pc, nnopt_dtype dtype,
                            int with_bias) {
    const long plane = pc->h * pc->w;
    const long x_count = pc->n * pc->c * plane, y_count = pc->n * pc->k * plane;
    double *x = random_values(x_count), *w = random_values(pc->k * pc->c);
    double *b = random_values(pc->k);

    const int64_t xs[4] = {pc->n, pc->c, pc->h, pc->w}, ws[4] = {pc->k, pc->c, 1, 1};
    const int64_t ys[4] = {pc->n, pc->k, pc->h, pc->w}, bs[1] = {pc->k};
    nnopt_tensor *tx = test_tensor_new(&ref_backend, dtype, 4, xs, x);
    nnopt_tensor *tw = test_tensor_new(&ref_backend, dtype, 4, ws, w);
    nnopt_tensor *tb = test_tensor_new(&ref_backend, dtype, 1, bs, b);
    nnopt_tensor *ty = test_tensor_new(&ref_backend, dtype, 4, ys, NULL);
    nnopt_tensor *tr = test_tensor_new(&ref_backend, dtype, 4, ys, NULL);
    nnopt_op conv = {.kind = NNOPT_OP_CONV2D};
    conv.p.conv2d = (nnopt_conv2d_params){1, 1, 0, 0, 1};
    nnopt_tensor *conv_in[3] = {tx, tw, tb};
    assert_int_equal(test_run(&ref_backend, &conv, conv_in, with_bias ? 3 : 2, &ty, 1), NNOPT_OK);
    nnopt_op relu = {.kind = NNOPT_OP_ACT};
    relu.p.act.kind = NNOPT_ACT_RELU;
    assert_int_equal(test_run(&ref_backend, &relu, &ty, 1, &tr, 1), NNOPT_OK);
    double *want = malloc((size_t)y_count * sizeof *want);
    assert_non_null(want);
    test_tensor_read(&ref_backend, tr, want);

    void *hx = host_array(dtype, x, x_count), *hw = host_array(dtype, w, pc->k * pc->c);
    void *hb = host_array(dtype, b, pc->k);
    double *garbage = random_values(y_count);
    void *hy = host_array(dtype, garbage, y_count);
    const conv_geometry g = {.n = pc->n,
                             .c = pc->c,
                             .h = pc->h,
                             .w = pc->w,
                             .k = pc->k,
                             .r = 1,
                             .s = 1,
                             .p = pc->h,
                             .q = pc->w,
                             .groups = 1,
                             .cg = pc->c,
                             .kg = pc->k,
                             .stride_h = 1,
                             .stride_w = 1};
    /* the kernels take any column count; the backend routes fewer than two
     * vectors of them to BLIS */
    const long lanes = dtype == NNOPT_F32 ? 16 : 8;
    assert_int_equal(blis_pointwise_available(be, &g, dtype, BLIS_POINTWISE_FORWARD),
                     pc->n * plane >= 2 * lanes);
    assert_int_equal(blis_pointwise_forward(be, &g, dtype, hx, hw, with_bias ? hb : NULL, 1, hy),
                     NNOPT_OK);

    double scale = 0;
    long zeros = 0;
    for (long i = 0; i < y_count; i++) scale = fmax(scale, fabs(want[i]));
    const double bound = dtype == NNOPT_F32 ? 1e-5 : 1e-12;
    for (long i = 0; i < y_count; i++) {
        const double got = host_value(dtype, hy, i);
        if (fabs(got - want[i]) > bound * (fabs(want[i]) + scale) + 1e-14) {
            fail_msg("relu N%ld C%ld %ldx%ld K%ld %s%s threads %d: y[%ld] = %g, want %g", pc->n,
                     pc->c, pc->h, pc->w, pc->k, dtype == NNOPT_F32 ? "f32" : "f64",
                     with_bias ? " bias" : "", be->threads, i, got, want[i]);
        }
        zeros += got == 0;
    }
    /* the epilogue clamped something, and not everything */
    if (y_count >= 64) assert_true(zeros > 0 && zeros < y_count);

    free(hx), free(hw), free(hb), free(hy), free(garbage), free(want);
    free(x), free(w), free(b);
    test_tensor_free(&ref_backend, tx), test_tensor_free(&ref_backend, tw);
    test_tensor_free(&ref_backend, tb), test_tensor_free(&ref_backend, ty);
    test_tensor_free(&ref_backend, tr);
}

static void test_forward_relu(void **state) {
    (void)state;
    if (!blis_pointwise_cpu_supported()) skip();
    const pointwise_case cases[] = {
        {3, 17, 32, 32, 40}, /* whole vectors, two chunks per thread */
        {4, 40, 8, 8, 33},   /* 8x8 */
        {9, 33, 4, 4, 17},   /* a vector per image */
        {13, 40, 2, 2, 17},  /* four images a vector */
        {37, 17, 1, 1, 3},   /* an image a lane */
        {5, 33, 7, 5, 17},   /* vectors across images */
        {10, 520, 5, 5, 20}, /* chunks split by row panels */
        {1, 3, 1, 1, 1},     /* one value */
        {2, 1, 3, 3, 5},     /* one input channel */
    };
    for (int threads = 1; threads <= 3; threads++) {
        blis_scratch scratch[3] = {{0}};
        blis_backend be = {.threads = threads, .scratch = scratch, .pointwise_avx512 = 1};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                check_relu_case(&be, &cases[i], NNOPT_F32, with_bias);
                check_relu_case(&be, &cases[i], NNOPT_F64, with_bias);
            }
        }
        for (int t = 0; t < threads; t++) free(scratch[t].data);
    }
}

static int open_reference(void **state) {
    (void)state;
    return test_backend_open("cpu", NULL, &ref_backend) == 0 ? 0 : -1;
}

static int close_reference(void **state) {
    (void)state;
    test_backend_close(&ref_backend);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_forward_relu)};
    return cmocka_run_group_tests(tests, open_reference, close_reference);
}
