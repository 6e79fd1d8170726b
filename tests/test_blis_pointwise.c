/* The blis backend's pointwise kernels (plugins/backends/blis/
 * blis_pointwise.c, built into this test) called directly, for what no op
 * of this tree reaches: the forward pass's relu epilogue, against the
 * reference backend's conv2d followed by its relu, and the data pass adding
 * into dx (as conv2d_bwd_data_add does), against the reference's
 * conv2d_bwd_data plus dx. Shapes cover the store paths (whole vectors into
 * one image; vectors across images at 7x5, 2x2 and 1x1 planes; outputs of
 * 16 MB, stored past the caches), channel counts off the register tiles,
 * with and without bias, f32 and f64, on 1, 2 and 3 threads. On CPUs
 * without AVX-512F the test is skipped. */
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

static conv_geometry geometry_of(const pointwise_case *pc) {
    return (conv_geometry){.n = pc->n,
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
}

/* got (a host array of dtype) against want, within the bound of
 * backend_compare.h relative to want's scale; returns the count of zeros
 * in got. */
static long compare(const char *what, const pointwise_case *pc, nnopt_dtype dtype, int threads,
                    const void *got, const double *want, long count) {
    double scale = 0;
    for (long i = 0; i < count; i++) scale = fmax(scale, fabs(want[i]));
    const double bound = dtype == NNOPT_F32 ? 1e-5 : 1e-12;
    long zeros = 0;
    for (long i = 0; i < count; i++) {
        const double value = host_value(dtype, got, i);
        if (fabs(value - want[i]) > bound * (fabs(want[i]) + scale) + 1e-14)
            fail_msg("%s N%ld C%ld %ldx%ld K%ld %s threads %d: [%ld] = %g, want %g", what, pc->n,
                     pc->c, pc->h, pc->w, pc->k, dtype == NNOPT_F32 ? "f32" : "f64", threads, i,
                     value, want[i]);
        zeros += value == 0;
    }
    return zeros;
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
    const conv_geometry g = geometry_of(pc);
    /* the kernels take any column count; the backend routes fewer than two
     * vectors of them to BLIS */
    const long lanes = dtype == NNOPT_F32 ? 16 : 8;
    assert_int_equal(blis_pointwise_available(be, &g, dtype, BLIS_POINTWISE_FORWARD),
                     pc->n * plane >= 2 * lanes);
    assert_int_equal(blis_pointwise_forward(be, &g, dtype, hx, hw, with_bias ? hb : NULL, 1, hy),
                     NNOPT_OK);
    const long zeros =
        compare(with_bias ? "relu, bias" : "relu", pc, dtype, be->threads, hy, want, y_count);
    /* the epilogue clamped something, and not everything */
    if (y_count >= 64) assert_true(zeros > 0 && zeros < y_count);

    free(hx), free(hw), free(hb), free(hy), free(garbage), free(want);
    free(x), free(w), free(b);
    test_tensor_free(&ref_backend, tx), test_tensor_free(&ref_backend, tw);
    test_tensor_free(&ref_backend, tb), test_tensor_free(&ref_backend, ty);
    test_tensor_free(&ref_backend, tr);
}

/* dx += W^T dy from the kernels; from the reference, its conv2d_bwd_data
 * plus dx. */
static void check_data_add_case(blis_backend *be, const pointwise_case *pc, nnopt_dtype dtype) {
    const long plane = pc->h * pc->w;
    const long dx_count = pc->n * pc->c * plane, dy_count = pc->n * pc->k * plane;
    double *dy = random_values(dy_count), *w = random_values(pc->k * pc->c);
    double *dx = random_values(dx_count);

    const int64_t xs[4] = {pc->n, pc->c, pc->h, pc->w}, ws[4] = {pc->k, pc->c, 1, 1};
    const int64_t ys[4] = {pc->n, pc->k, pc->h, pc->w};
    nnopt_tensor *tdy = test_tensor_new(&ref_backend, dtype, 4, ys, dy);
    nnopt_tensor *tw = test_tensor_new(&ref_backend, dtype, 4, ws, w);
    nnopt_tensor *tdx = test_tensor_new(&ref_backend, dtype, 4, xs, NULL);
    nnopt_op data = {.kind = NNOPT_OP_CONV2D_BWD_DATA};
    data.p.conv2d = (nnopt_conv2d_params){1, 1, 0, 0, 1};
    nnopt_tensor *data_in[2] = {tdy, tw};
    assert_int_equal(test_run(&ref_backend, &data, data_in, 2, &tdx, 1), NNOPT_OK);
    double *want = malloc((size_t)dx_count * sizeof *want);
    assert_non_null(want);
    test_tensor_read(&ref_backend, tdx, want);
    /* the reference's product, rounded to dtype, plus dx */
    void *product = host_array(dtype, want, dx_count);
    void *hdx = host_array(dtype, dx, dx_count);
    for (long i = 0; i < dx_count; i++)
        want[i] = host_value(dtype, product, i) + host_value(dtype, hdx, i);

    void *hdy = host_array(dtype, dy, dy_count), *hw = host_array(dtype, w, pc->k * pc->c);
    const conv_geometry g = geometry_of(pc);
    assert_int_equal(blis_pointwise_backward_data(be, &g, dtype, hdy, hw, 1, hdx), NNOPT_OK);
    compare("data, add", pc, dtype, be->threads, hdx, want, dx_count);

    free(product), free(hdx), free(hdy), free(hw), free(want);
    free(dy), free(w), free(dx);
    test_tensor_free(&ref_backend, tdy), test_tensor_free(&ref_backend, tw);
    test_tensor_free(&ref_backend, tdx);
}

static const pointwise_case cases[] = {
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

/* Runs check(be, case, dtype) over the cases, f32 and f64, on 1-3 threads. */
static void for_each_case(void (*check)(blis_backend *, const pointwise_case *, nnopt_dtype)) {
    for (int threads = 1; threads <= 3; threads++) {
        blis_scratch scratch[3] = {{0}};
        blis_backend be = {.threads = threads, .scratch = scratch, .pointwise_avx512 = 1};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            check(&be, &cases[i], NNOPT_F32);
            check(&be, &cases[i], NNOPT_F64);
        }
        for (int t = 0; t < threads; t++) free(scratch[t].data);
    }
}

static void check_relu_both(blis_backend *be, const pointwise_case *pc, nnopt_dtype dtype) {
    check_relu_case(be, pc, dtype, 0);
    check_relu_case(be, pc, dtype, 1);
}

static void test_forward_relu(void **state) {
    (void)state;
    if (!blis_pointwise_cpu_supported()) skip();
    for_each_case(check_relu_both);
}

static void test_backward_data_add(void **state) {
    (void)state;
    if (!blis_pointwise_cpu_supported()) skip();
    for_each_case(check_data_add_case);
}

/* Outputs of 16 MB and more are stored past the caches (2 threads; the
 * f32 output is 16 MB, the f64 one 32 MB). */
static void test_streamed_outputs(void **state) {
    (void)state;
    if (!blis_pointwise_cpu_supported()) skip();
    blis_scratch scratch[2] = {{0}};
    blis_backend be = {.threads = 2, .scratch = scratch, .pointwise_avx512 = 1};
    const pointwise_case forward = {4, 8, 32, 32, 1024}, data = {4, 1024, 32, 32, 8};
    for (int d = 0; d < 2; d++) {
        const nnopt_dtype dtype = d ? NNOPT_F64 : NNOPT_F32;
        check_relu_case(&be, &forward, dtype, 1);
        check_data_add_case(&be, &data, dtype);
    }
    free(scratch[0].data), free(scratch[1].data);
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_relu),
        cmocka_unit_test(test_backward_data_add),
        cmocka_unit_test(test_streamed_outputs),
    };
    return cmocka_run_group_tests(tests, open_reference, close_reference);
}
