/* The blis backend against the reference ("cpu") backend: every op, in f32
 * and f64, on random shapes and values. Both backends get the same inputs;
 * their outputs (and in-place updated inputs) must agree within a per-dtype
 * bound relative to the tensor's scale:
 *   |blis - ref| <= bound * (|ref| + max |ref| over the tensor) + 1e-14
 * (GEMM sums cancel, so single elements may be far smaller than their error;
 * the absolute 1e-14 covers results that are tiny differences of O(1) values,
 * e.g. GELU far left of 0, where the reference's 1 + tanh(z) cancels). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_backend.h"

enum { MAX_TENSORS = 6, RANDOM_ROUNDS = 12 };

static test_backend blis_backend, ref_backend;

static double error_bound(nnopt_dtype dtype) {
    return dtype == NNOPT_F32 ? 1e-4 : 1e-10;
}

/* ---- deterministic random numbers (xorshift64*) ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static int rng_int(int lo, int hi) {
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}
static double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- one op on both backends ---- */

typedef enum value_kind {
    VALUES_UNIFORM = 0, /* U(-range, range) */
    VALUES_POSITIVE,    /* U(0.01, range): Adam's second moment */
    VALUES_LABELS,      /* I32 class labels in [0, classes) */
    VALUES_PROBS,       /* rows summing to 1 (soft targets) */
} value_kind;

typedef struct tensor_spec {
    int ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    value_kind values;
    double range;       /* UNIFORM/POSITIVE; 0 means 1 */
    double offset;      /* UNIFORM: added to every value */
    int classes;        /* LABELS */
    int dtype_override; /* 1: use `dtype` below instead of the op's */
    nnopt_dtype dtype;
} tensor_spec;

static int64_t spec_numel(const tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
    return n;
}

static double *spec_values(const tensor_spec *s) {
    const int64_t n = spec_numel(s);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    assert_non_null(v);
    const double range = s->range > 0 ? s->range : 1.0;
    for (int64_t i = 0; i < n; i++) {
        switch (s->values) {
        case VALUES_UNIFORM:
            v[i] = s->offset + rng_uniform(-range, range);
            break;
        case VALUES_POSITIVE:
            v[i] = rng_uniform(0.01, range);
            break;
        case VALUES_LABELS:
            v[i] = (double)rng_int(0, s->classes - 1);
            break;
        case VALUES_PROBS:
            v[i] = rng_uniform(0.0, 1.0);
            break;
        }
    }
    if (s->values == VALUES_PROBS) {
        const int64_t cols = s->shape[s->ndim - 1], rows = n / cols;
        for (int64_t r = 0; r < rows; r++) {
            double sum = 0;
            for (int64_t c = 0; c < cols; c++) sum += v[r * cols + c];
            for (int64_t c = 0; c < cols; c++) v[r * cols + c] /= sum;
        }
    }
    return v;
}

static void compare_values(const char *what, int index, nnopt_dtype dtype, const double *got,
                           const double *want, int64_t n) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    const double bound = error_bound(dtype);
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]);
        if (!(err <= bound * (fabs(want[i]) + scale) + 1e-14)) {
            print_error("%s tensor %d element %lld: blis %.17g, ref %.17g (scale %g, %s)\n", what,
                        index, (long long)i, got[i], want[i], scale, nnopt_dtype_name(dtype));
            fail();
        }
    }
}

/* Runs op with fresh random inputs on both backends and compares every
 * output and every input (in-place ops update their inputs). */
static void check_op(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                     const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs) {
    nnopt_tensor *blis_in[MAX_TENSORS] = {0}, *ref_in[MAX_TENSORS] = {0};
    nnopt_tensor *blis_out[MAX_TENSORS] = {0}, *ref_out[MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++) {
        const tensor_spec *s = &in_specs[i];
        const nnopt_dtype dt =
            s->values == VALUES_LABELS ? NNOPT_I32 : (s->dtype_override ? s->dtype : dtype);
        double *values = spec_values(s);
        blis_in[i] = test_tensor_new(&blis_backend, dt, s->ndim, s->shape, values);
        ref_in[i] = test_tensor_new(&ref_backend, dt, s->ndim, s->shape, values);
        assert_non_null(blis_in[i]);
        assert_non_null(ref_in[i]);
        free(values);
    }
    for (int i = 0; i < n_out; i++) {
        const tensor_spec *s = &out_specs[i];
        const nnopt_dtype dt = s->dtype_override ? s->dtype : dtype;
        /* Outputs start as garbage, so an op that forgets to write one fails. */
        double *garbage = spec_values(s);
        blis_out[i] = test_tensor_new(&blis_backend, dt, s->ndim, s->shape, garbage);
        ref_out[i] = test_tensor_new(&ref_backend, dt, s->ndim, s->shape, NULL);
        assert_non_null(blis_out[i]);
        assert_non_null(ref_out[i]);
        free(garbage);
    }
    assert_int_equal(test_run(&ref_backend, op, ref_in, n_in, ref_out, n_out), NNOPT_OK);
    assert_int_equal(test_run(&blis_backend, op, blis_in, n_in, blis_out, n_out), NNOPT_OK);

    for (int pass = 0; pass < 2; pass++) {
        const int count = pass == 0 ? n_out : n_in;
        for (int i = 0; i < count; i++) {
            nnopt_tensor *got_t = pass == 0 ? blis_out[i] : blis_in[i];
            nnopt_tensor *want_t = pass == 0 ? ref_out[i] : ref_in[i];
            const int64_t n = nnopt_tensor_numel(want_t);
            double *got = calloc((size_t)(n > 0 ? n : 1), sizeof *got);
            double *want = calloc((size_t)(n > 0 ? n : 1), sizeof *want);
            assert_non_null(got);
            assert_non_null(want);
            test_tensor_read(&blis_backend, got_t, got);
            test_tensor_read(&ref_backend, want_t, want);
            char label[160];
            snprintf(label, sizeof label, "%s (%s)", what, pass == 0 ? "output" : "input");
            compare_values(label, i, got_t->dtype == NNOPT_I32 ? dtype : got_t->dtype, got, want,
                           n);
            free(got);
            free(want);
        }
    }
    for (int i = 0; i < n_in; i++) {
        test_tensor_free(&blis_backend, blis_in[i]);
        test_tensor_free(&ref_backend, ref_in[i]);
    }
    for (int i = 0; i < n_out; i++) {
        test_tensor_free(&blis_backend, blis_out[i]);
        test_tensor_free(&ref_backend, ref_out[i]);
    }
}

static tensor_spec spec4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return (tensor_spec){.ndim = 4, .shape = {a, b, c, d}};
}
static tensor_spec spec2(int64_t a, int64_t b) {
    return (tensor_spec){.ndim = 2, .shape = {a, b}};
}
static tensor_spec spec1(int64_t a) {
    return (tensor_spec){.ndim = 1, .shape = {a}};
}

static const nnopt_dtype dtypes[] = {NNOPT_F32, NNOPT_F64};

/* ---- convolutions ---- */

typedef struct conv_case {
    int64_t n, c, h, w, k, r, s;
    nnopt_conv2d_params p;
} conv_case;

static void check_conv_case(const conv_case *cc, const char *label) {
    const int64_t p = (cc->h + 2 * cc->p.pad_h - cc->r) / cc->p.stride_h + 1;
    const int64_t q = (cc->w + 2 * cc->p.pad_w - cc->s) / cc->p.stride_w + 1;
    const tensor_spec x = spec4(cc->n, cc->c, cc->h, cc->w);
    const tensor_spec w = spec4(cc->k, cc->c / cc->p.groups, cc->r, cc->s);
    const tensor_spec y = spec4(cc->n, cc->k, p, q), b = spec1(cc->k);
    char what[200];
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        nnopt_op op = {.kind = NNOPT_OP_CONV2D};
        op.p.conv2d = cc->p;
        snprintf(what, sizeof what,
                 "%s conv2d N%lld C%lld %lldx%lld K%lld %lldx%lld s%d,%d p%d,%d g%d", label,
                 (long long)cc->n, (long long)cc->c, (long long)cc->h, (long long)cc->w,
                 (long long)cc->k, (long long)cc->r, (long long)cc->s, cc->p.stride_h,
                 cc->p.stride_w, cc->p.pad_h, cc->p.pad_w, cc->p.groups);
        const tensor_spec fwd_in[3] = {x, w, b};
        check_op(what, &op, dtypes[d], 3, fwd_in, 1, &y);
        check_op(what, &op, dtypes[d], 2, fwd_in, 1, &y); /* without bias */
        op.kind = NNOPT_OP_CONV2D_BWD_DATA;
        const tensor_spec data_in[2] = {y, w};
        check_op(what, &op, dtypes[d], 2, data_in, 1, &x);
        op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
        const tensor_spec filter_in[2] = {x, y};
        check_op(what, &op, dtypes[d], 2, filter_in, 1, &w);
    }
}

static void test_conv_lenet_shapes(void **state) {
    (void)state;
    const conv_case conv1 = {5, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}};
    const conv_case conv2 = {5, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}};
    check_conv_case(&conv1, "lenet conv1");
    check_conv_case(&conv2, "lenet conv2");
}

static void test_conv_special_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {1, 3, 9, 7, 4, 3, 3, {1, 1, 1, 1, 1}},      /* one image: BLIS threads the GEMMs */
        {3, 8, 5, 6, 12, 1, 1, {1, 1, 0, 0, 1}},     /* pointwise: channel-major batch */
        {2, 8, 16, 16, 12, 1, 1, {1, 1, 0, 0, 1}},   /* pointwise: per image, no im2col */
        {5, 40, 2, 2, 24, 1, 1, {1, 1, 0, 0, 1}},    /* pointwise at 2x2 (MobileNet) */
        {4, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 16}}, /* depthwise, MobileNet's block 1 */
        {3, 5, 7, 6, 5, 3, 3, {2, 2, 1, 1, 5}},      /* depthwise, strided */
        {2, 4, 6, 7, 4, 3, 2, {1, 1, 2, 1, 4}},      /* depthwise, padding >= filter rows */
        {2, 3, 6, 7, 3, 5, 5, {1, 1, 2, 2, 3}},      /* depthwise 5x5 */
        {2, 6, 5, 5, 6, 3, 3, {1, 1, 1, 1, 6}},      /* depthwise */
        {3, 4, 8, 8, 6, 3, 3, {2, 2, 1, 1, 2}},      /* grouped, strided */
        {2, 4, 6, 6, 4, 1, 1, {2, 2, 0, 0, 2}},      /* grouped pointwise, strided */
        {2, 2, 4, 4, 3, 4, 4, {1, 1, 0, 0, 1}},      /* filter covers the image */
        {3, 2, 3, 5, 2, 3, 2, {3, 1, 2, 1, 1}},      /* padding wider than the stride */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "special");
}

/* Shapes the direct (im2col-free) kernels take on AVX-512 CPUs (the
 * backend's describe() says whether they are in use): ResNet-CIFAR's 3x3
 * layers at stride 1 and 2, LeNet's, and the edges of the flat layout: odd
 * widths, a last vector of one lane group, output channels not a multiple of
 * the 8-channel block, tap counts not a multiple of 4, padding on one side
 * only, N = 1 and N not a multiple of the threads. */
static void test_conv_direct_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {3, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}}, /* ResNet stage 1 */
        {2, 16, 32, 32, 32, 3, 3, {2, 2, 1, 1, 1}}, /* ResNet stage 2 entry, stride 2 */
        {2, 32, 16, 16, 32, 3, 3, {1, 1, 1, 1, 1}}, /* ResNet stage 2 */
        {2, 64, 8, 8, 64, 3, 3, {1, 1, 1, 1, 1}},   /* ResNet stage 3: one-vector tail */
        {1, 32, 16, 16, 64, 3, 3, {2, 2, 1, 1, 1}}, /* stride 2, one image */
        {3, 3, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}},  /* ResNet stem (C = 3) */
        {1, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}},   /* LeNet conv1, one image */
        {3, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}},  /* LeNet conv2 */
        {3, 5, 11, 13, 9, 3, 3, {1, 1, 1, 1, 1}},   /* odd sizes, K = 9 (two blocks) */
        {2, 5, 11, 13, 7, 3, 3, {2, 2, 1, 1, 1}},   /* odd sizes, stride 2 */
        {2, 4, 9, 7, 3, 3, 2, {2, 1, 0, 1, 1}},     /* stride 2 x 1, uneven filter */
        {2, 3, 7, 10, 5, 2, 3, {1, 2, 1, 0, 1}},    /* stride 1 x 2, even filter rows */
        {1, 2, 5, 5, 1, 5, 5, {1, 1, 2, 2, 1}},     /* one output channel */
        {2, 7, 6, 6, 12, 3, 3, {2, 2, 0, 0, 1}},    /* stride 2, no padding */
        {2, 70, 6, 6, 5, 3, 3, {1, 1, 1, 1, 1}},    /* 630 taps */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "direct");
}

static void test_conv_random_shapes(void **state) {
    (void)state;
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        conv_case cc;
        cc.p.groups = rng_int(1, 3);
        cc.n = rng_int(1, 5);
        cc.c = cc.p.groups * rng_int(1, 4);
        cc.k = cc.p.groups * rng_int(1, 5);
        cc.h = rng_int(1, 12);
        cc.w = rng_int(1, 12);
        cc.p.pad_h = rng_int(0, 2);
        cc.p.pad_w = rng_int(0, 2);
        cc.r = rng_int(1, (int)(cc.h + 2 * cc.p.pad_h < 5 ? cc.h + 2 * cc.p.pad_h : 5));
        cc.s = rng_int(1, (int)(cc.w + 2 * cc.p.pad_w < 5 ? cc.w + 2 * cc.p.pad_w : 5));
        /* padding narrower than the filter, so no output sees only padding */
        if (cc.p.pad_h >= cc.r) cc.p.pad_h = (int32_t)cc.r - 1;
        if (cc.p.pad_w >= cc.s) cc.p.pad_w = (int32_t)cc.s - 1;
        cc.p.stride_h = rng_int(1, 3);
        cc.p.stride_w = rng_int(1, 3);
        check_conv_case(&cc, "random");
    }
}

/* ---- dense layers ---- */

static void check_dense_case(int64_t n, int64_t in, int64_t out) {
    const tensor_spec x = spec2(n, in), w = spec2(out, in), b = spec1(out), y = spec2(n, out);
    char what[120];
    snprintf(what, sizeof what, "dense N%lld IN%lld OUT%lld", (long long)n, (long long)in,
             (long long)out);
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        nnopt_op op = {.kind = NNOPT_OP_DENSE};
        const tensor_spec fwd_in[3] = {x, w, b};
        check_op(what, &op, dtypes[d], 3, fwd_in, 1, &y);
        check_op(what, &op, dtypes[d], 2, fwd_in, 1, &y);
        op.kind = NNOPT_OP_DENSE_BWD_DATA;
        const tensor_spec data_in[2] = {y, w};
        check_op(what, &op, dtypes[d], 2, data_in, 1, &x);
        op.kind = NNOPT_OP_DENSE_BWD_WEIGHT;
        const tensor_spec weight_in[2] = {x, y};
        check_op(what, &op, dtypes[d], 2, weight_in, 1, &w);
    }
}

static void test_dense(void **state) {
    (void)state;
    check_dense_case(128, 400, 120); /* LeNet-5's layers */
    check_dense_case(128, 84, 10);
    check_dense_case(1, 7, 3);
    for (int round = 0; round < RANDOM_ROUNDS; round++)
        check_dense_case(rng_int(1, 40), rng_int(1, 70), rng_int(1, 50));
}

/* ---- bias gradients, pooling ---- */

static void test_bias_bwd(void **state) {
    (void)state;
    nnopt_op op = {.kind = NNOPT_OP_BIAS_BWD};
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        const int64_t n = rng_int(1, 9), k = rng_int(1, 17);
        const tensor_spec dy4 = spec4(n, k, rng_int(1, 20), rng_int(1, 20)), dy2 = spec2(n, k);
        const tensor_spec db = spec1(k);
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
            check_op("bias_bwd 4-D", &op, dtypes[d], 1, &dy4, 1, &db);
            check_op("bias_bwd 2-D", &op, dtypes[d], 1, &dy2, 1, &db);
        }
    }
    const tensor_spec big = spec4(128, 6, 28, 28), db6 = spec1(6);
    check_op("bias_bwd lenet conv1", &op, NNOPT_F32, 1, &big, 1, &db6);
}

static void check_pool_case(int64_t n, int64_t c, int64_t h, int64_t w,
                            const nnopt_pool2d_params *pp) {
    const int64_t p = (h + 2 * pp->pad_h - pp->kernel_h) / pp->stride_h + 1;
    const int64_t q = (w + 2 * pp->pad_w - pp->kernel_w) / pp->stride_w + 1;
    const tensor_spec x = spec4(n, c, h, w), y = spec4(n, c, p, q);
    char what[160];
    snprintf(what, sizeof what, "pool2d %s %lldx%lld k%dx%d s%d,%d p%d,%d",
             pp->kind == NNOPT_POOL_MAX ? "max" : "avg", (long long)h, (long long)w, pp->kernel_h,
             pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        nnopt_op op = {.kind = NNOPT_OP_POOL2D};
        op.p.pool2d = *pp;
        check_op(what, &op, dtypes[d], 1, &x, 1, &y);
        /* The backward op gets the forward's y, computed here by the reference. */
        nnopt_tensor *ref_x, *ref_y, *blis_x, *blis_y, *blis_dy, *ref_dy, *blis_dx, *ref_dx;
        double *xv = spec_values(&x), *dyv = spec_values(&y);
        ref_x = test_tensor_new(&ref_backend, dtypes[d], 4, x.shape, xv);
        blis_x = test_tensor_new(&blis_backend, dtypes[d], 4, x.shape, xv);
        ref_y = test_tensor_new(&ref_backend, dtypes[d], 4, y.shape, NULL);
        ref_dy = test_tensor_new(&ref_backend, dtypes[d], 4, y.shape, dyv);
        blis_dy = test_tensor_new(&blis_backend, dtypes[d], 4, y.shape, dyv);
        ref_dx = test_tensor_new(&ref_backend, dtypes[d], 4, x.shape, NULL);
        blis_dx = test_tensor_new(&blis_backend, dtypes[d], 4, x.shape, xv);
        nnopt_tensor *fwd_in[1] = {ref_x}, *fwd_out[1] = {ref_y};
        assert_int_equal(test_run(&ref_backend, &op, fwd_in, 1, fwd_out, 1), NNOPT_OK);
        const int64_t ny = nnopt_tensor_numel(ref_y), nx = nnopt_tensor_numel(ref_x);
        double *yv = calloc((size_t)ny, sizeof *yv), *got = calloc((size_t)nx, sizeof *got),
               *want = calloc((size_t)nx, sizeof *want);
        assert_true(yv && got && want);
        test_tensor_read(&ref_backend, ref_y, yv);
        blis_y = test_tensor_new(&blis_backend, dtypes[d], 4, y.shape, yv);
        op.kind = NNOPT_OP_POOL2D_BWD;
        nnopt_tensor *ref_bwd_in[3] = {ref_x, ref_y, ref_dy}, *ref_bwd_out[1] = {ref_dx};
        nnopt_tensor *blis_bwd_in[3] = {blis_x, blis_y, blis_dy}, *blis_bwd_out[1] = {blis_dx};
        assert_int_equal(test_run(&ref_backend, &op, ref_bwd_in, 3, ref_bwd_out, 1), NNOPT_OK);
        assert_int_equal(test_run(&blis_backend, &op, blis_bwd_in, 3, blis_bwd_out, 1), NNOPT_OK);
        test_tensor_read(&ref_backend, ref_dx, want);
        test_tensor_read(&blis_backend, blis_dx, got);
        compare_values(what, 0, dtypes[d], got, want, nx);
        free(xv), free(dyv), free(yv), free(got), free(want);
        nnopt_tensor *ref_all[] = {ref_x, ref_y, ref_dy, ref_dx};
        nnopt_tensor *blis_all[] = {blis_x, blis_y, blis_dy, blis_dx};
        for (int i = 0; i < 4; i++) {
            test_tensor_free(&ref_backend, ref_all[i]);
            test_tensor_free(&blis_backend, blis_all[i]);
        }
    }
}

static void test_pool(void **state) {
    (void)state;
    const nnopt_pool2d_params lenet = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    check_pool_case(4, 6, 28, 28, &lenet);
    const nnopt_pool2d_params max3 = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    check_pool_case(3, 5, 9, 8, &max3);
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        nnopt_pool2d_params pp = {rng_int(0, 1) ? NNOPT_POOL_MAX : NNOPT_POOL_AVG,
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  0,
                                  0};
        pp.pad_h = rng_int(0, pp.kernel_h / 2);
        pp.pad_w = rng_int(0, pp.kernel_w / 2);
        check_pool_case(rng_int(1, 4), rng_int(1, 5), rng_int(pp.kernel_h, 13),
                        rng_int(pp.kernel_w, 13), &pp);
    }
}

/* ---- activations, add ---- */

static void test_activations(void **state) {
    (void)state;
    for (int kind = 0; kind < NNOPT_ACT_KIND_COUNT; kind++) {
        for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
            /* Sizes below and above the threading threshold; values cover
             * relu6's upper kink and tanh's small-argument series. */
            const int64_t sizes[] = {1, 37, 100003};
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                tensor_spec x = spec2(1, sizes[si]);
                x.range = si == 1 ? 0.3 : 8.0;
                char what[80];
                snprintf(what, sizeof what, "act %s x%lld", nnopt_act_kind_name(kind),
                         (long long)sizes[si]);
                nnopt_op op = {.kind = NNOPT_OP_ACT};
                op.p.act.kind = (nnopt_act_kind)kind;
                check_op(what, &op, dtypes[d], 1, &x, 1, &x);
                /* act_bwd: in x, y, dy; y is not used by either backend's
                 * formula, so random values stand in for it. */
                op.kind = NNOPT_OP_ACT_BWD;
                const tensor_spec bwd_in[3] = {x, x, x};
                check_op(what, &op, dtypes[d], 3, bwd_in, 1, &x);
            }
        }
    }
}

static void test_add(void **state) {
    (void)state;
    nnopt_op op = {.kind = NNOPT_OP_ADD};
    const int64_t sizes[] = {1, 1000, 200001};
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const tensor_spec t = spec2(1, sizes[si]);
            const tensor_spec ins[2] = {t, t};
            check_op("add", &op, dtypes[d], 2, ins, 1, &t);
        }
        /* y aliasing a */
        const int64_t shape[2] = {3, 1001};
        double *a = calloc(3003, sizeof *a), *b = calloc(3003, sizeof *b),
               *got = calloc(3003, sizeof *got);
        assert_true(a && b && got);
        for (int i = 0; i < 3003; i++) a[i] = rng_uniform(-1, 1), b[i] = rng_uniform(-1, 1);
        nnopt_tensor *ta = test_tensor_new(&blis_backend, dtypes[d], 2, shape, a);
        nnopt_tensor *tb = test_tensor_new(&blis_backend, dtypes[d], 2, shape, b);
        nnopt_tensor *ins[2] = {ta, tb}, *outs[1] = {ta};
        assert_int_equal(test_run(&blis_backend, &op, ins, 2, outs, 1), NNOPT_OK);
        test_tensor_read(&blis_backend, ta, got);
        for (int i = 0; i < 3003; i++)
            assert_true(fabs(got[i] - (a[i] + b[i])) <= 1e-6 * (1 + fabs(a[i] + b[i])));
        test_tensor_free(&blis_backend, ta);
        test_tensor_free(&blis_backend, tb);
        free(a), free(b), free(got);
    }
}

/* ---- batch normalization ---- */

static void check_batchnorm_case(const tensor_spec *x) {
    const tensor_spec channel = spec1(x->shape[1]);
    tensor_spec positive = channel;
    positive.values = VALUES_POSITIVE;
    positive.range = 2;
    char what[160];
    snprintf(what, sizeof what, "batchnorm %dD N%lld C%lld spatial %lld offset %g", x->ndim,
             (long long)x->shape[0], (long long)x->shape[1],
             (long long)(x->ndim == 4 ? x->shape[2] * x->shape[3] : 1), x->offset);
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        nnopt_op op = {.kind = NNOPT_OP_BATCHNORM};
        op.p.bn = (nnopt_bn_params){1e-5, 0.1, 1};
        const tensor_spec fwd_in[5] = {*x, channel, channel, channel, positive};
        const tensor_spec train_out[3] = {*x, channel, positive};
        check_op(what, &op, dtypes[d], 5, fwd_in, 3, train_out);
        op.p.bn.training = 0;
        check_op(what, &op, dtypes[d], 5, fwd_in, 1, train_out);
        op.kind = NNOPT_OP_BATCHNORM_BWD;
        op.p.bn.training = 1;
        const tensor_spec bwd_in[5] = {*x, channel, *x, channel, positive};
        const tensor_spec bwd_out[3] = {*x, channel, channel};
        check_op(what, &op, dtypes[d], 5, bwd_in, 3, bwd_out);
    }
}

static void test_batchnorm(void **state) {
    (void)state;
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {8, 16, 16, 16}}); /* threaded */
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {3, 5, 4, 3}});
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {1, 3, 1, 1}}); /* one value */
    check_batchnorm_case(&(tensor_spec){.ndim = 2, .shape = {64, 600}});
    check_batchnorm_case(&(tensor_spec){.ndim = 2, .shape = {5, 7}});
    /* |mean| >> std: the one-pass variance must not cancel */
    check_batchnorm_case(
        &(tensor_spec){.ndim = 4, .shape = {4, 3, 8, 8}, .range = 0.01, .offset = 50});
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        const tensor_spec x = spec4(rng_int(1, 9), rng_int(1, 20), rng_int(1, 12), rng_int(1, 12));
        check_batchnorm_case(&x);
    }
}

/* ---- the ops blis hands to the shared reference kernels ---- */

static void test_loss_optimisers_cast(void **state) {
    (void)state;
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        const nnopt_dtype dt = dtypes[d];
        const int64_t n = rng_int(1, 20), k = rng_int(2, 12);
        nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT};
        op.p.xent.temperature = 1.0;
        tensor_spec logits = spec2(n, k);
        logits.range = 5;
        tensor_spec labels = spec1(n);
        labels.values = VALUES_LABELS;
        labels.classes = (int)k;
        const tensor_spec loss = spec1(1);
        const tensor_spec outs[2] = {loss, logits};
        const tensor_spec hard_in[2] = {logits, labels};
        check_op("softmax_xent labels", &op, dt, 2, hard_in, 2, outs);
        tensor_spec probs = logits;
        probs.values = VALUES_PROBS;
        const tensor_spec soft_in[2] = {logits, probs};
        op.p.xent.soft_targets = 1;
        op.p.xent.temperature = 2.0;
        check_op("softmax_xent soft", &op, dt, 2, soft_in, 2, outs);

        const tensor_spec param = spec2(7, 13);
        tensor_spec v = param;
        v.values = VALUES_POSITIVE;
        nnopt_op sgd = {.kind = NNOPT_OP_SGD_UPDATE};
        sgd.p.sgd = (nnopt_sgd_params){0.1, 0.0, 0.0, 0};
        const tensor_spec sgd_in[3] = {param, param, param};
        check_op("sgd", &sgd, dt, 2, sgd_in, 0, NULL);
        sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 1};
        check_op("sgd nesterov", &sgd, dt, 3, sgd_in, 0, NULL);
        nnopt_op adam = {.kind = NNOPT_OP_ADAM_UPDATE};
        adam.p.adam = (nnopt_adam_params){1e-3, 0.9, 0.999, 1e-8, 1e-2, 3};
        const tensor_spec adam_in[4] = {param, param, param, v};
        check_op("adam", &adam, dt, 4, adam_in, 0, NULL);

        nnopt_op cast = {.kind = NNOPT_OP_CAST};
        tensor_spec other = param;
        other.dtype_override = 1;
        other.dtype = dt == NNOPT_F32 ? NNOPT_F64 : NNOPT_F32;
        check_op("cast", &cast, dt, 1, &param, 1, &other);
    }
}

/* ---- setup ---- */

static int open_backends(void **state) {
    (void)state;
    if (test_backend_open("blis", NULL, &blis_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    char description[256];
    blis_backend.vt->describe(blis_backend.ctx, description, sizeof description);
    printf("# blis: %s\n", description);
    return 0;
}

static int close_backends(void **state) {
    (void)state;
    test_backend_close(&blis_backend);
    test_backend_close(&ref_backend);
    return 0;
}

/* An instance with more threads than images and than cores: the image
 * split, the per-thread scratch and the filter-gradient reduction. */
static void test_odd_thread_count(void **state) {
    (void)state;
    test_backend shared = blis_backend;
    const char *const settings[] = {"threads=3", NULL};
    assert_int_equal(test_backend_open("blis", settings, &blis_backend), 0);
    const conv_case cc = {4, 3, 10, 9, 5, 3, 3, {1, 1, 1, 0, 1}};
    check_conv_case(&cc, "threads=3");
    const conv_case two_images = {2, 3, 10, 9, 5, 3, 3, {1, 1, 1, 0, 1}};
    check_conv_case(&two_images, "threads=3, 2 images");
    /* direct kernels: 5 images over 3 threads, stride 1 and 2 */
    const conv_case resnet = {5, 16, 16, 16, 16, 3, 3, {1, 1, 1, 1, 1}};
    check_conv_case(&resnet, "threads=3, direct");
    const conv_case strided = {7, 8, 9, 9, 16, 3, 3, {2, 2, 1, 1, 1}};
    check_conv_case(&strided, "threads=3, direct strided");
    check_dense_case(5, 9, 4);
    test_backend_close(&blis_backend);
    blis_backend = shared;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_lenet_shapes),
        cmocka_unit_test(test_conv_special_shapes),
        cmocka_unit_test(test_conv_direct_shapes),
        cmocka_unit_test(test_conv_random_shapes),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_bias_bwd),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_loss_optimisers_cast),
        cmocka_unit_test(test_odd_thread_count),
    };
    return cmocka_run_group_tests(tests, open_backends, close_backends);
}
