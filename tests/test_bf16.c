/* bf16: the conversion's rounding, the reference backend's bf16 ops against
 * its f32 ops, the blis backend's bf16 kernels against the reference's, the
 * supports tables, and the precision technique end to end on generated data.
 *
 * Bounds, with u = 2^-8 (bf16 keeps 8 significant bits, so rounding to
 * nearest errs by at most u relative):
 * - bf16 vs f32 (same op, f32 inputs): each rounded operand is off by at
 *   most u relative, so a product x*w by 2u, a sum of terms by the same
 *   relative amount of the sum of their magnitudes S; the output rounding
 *   adds u |y|. S is the op run in f32 on the inputs' absolute values (for
 *   activations, whose slope is at most 1.13, 1.2 |x|). Batch norm rounds
 *   five operands: |bf16 - f32| <= 4u S + u |y| covers every op here.
 * - blis vs reference (same bf16 inputs): both sum exact products in f32,
 *   in different orders (K terms: K 2^-24 S), then round once; results that
 *   straddle a rounding boundary differ by one bf16 step, at most 2^-7 |y|:
 *   |blis - ref| <= 2^-7 |ref| + 2^-14 S. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data_source.h"
#include "experiment.h"
#include "idx_fixture.h"
#include "nnopt/bf16.h"
#include "pipeline.h"
#include "report.h"
#include "test_rng.h"
#include "test_backend.h"
#include "train.h"

enum { MAX_TENSORS = 5, RANDOM_ROUNDS = 40 };
static const double u = 1.0 / 256;

/* blis_backend is blis with its AVX-512 BF16 kernels where the CPU has them;
 * portable_backend is blis with bf16 = f32 (the f32 kernels on widened
 * copies, what CPUs without AVX-512 BF16 run). */
static test_backend blis_backend, portable_backend, ref_backend;
static int cpu_only; /* `test_bf16 cpu` */

/* ---- conversion ---------------------------------------------------------- */

static uint16_t bits_of_f32_to_bf16(uint32_t f32_bits) {
    float f;
    memcpy(&f, &f32_bits, sizeof f);
    return nnopt_bf16_from_f32(f);
}

static int bf16_is_nan(uint16_t h) {
    return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
}

static void test_conversion_rounds_to_nearest_even(void **state) {
    (void)state;
    /* Exact values keep their bits. */
    assert_int_equal(nnopt_bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(nnopt_bf16_from_f32(-2.5f), 0xc020);
    assert_int_equal(nnopt_bf16_from_f32(0.0f), 0x0000);
    assert_int_equal(nnopt_bf16_from_f32(-0.0f), 0x8000);
    assert_int_equal(bits_of_f32_to_bf16(0x00010000u), 0x0001); /* smallest subnormal */
    /* Ties go to the even neighbour, in both directions. */
    assert_int_equal(bits_of_f32_to_bf16(0x3f808000u), 0x3f80); /* 1 + 2^-8: down to even */
    assert_int_equal(bits_of_f32_to_bf16(0x3f818000u), 0x3f82); /* up to even */
    assert_int_equal(bits_of_f32_to_bf16(0xbf818000u), 0xbf82); /* sign does not matter */
    /* Off the tie: nearest. */
    assert_int_equal(bits_of_f32_to_bf16(0x3f808001u), 0x3f81);
    assert_int_equal(bits_of_f32_to_bf16(0x3f807fffu), 0x3f80);
    /* Carry into the exponent, and overflow to infinity. */
    assert_int_equal(bits_of_f32_to_bf16(0x3fffffffu), 0x4000);
    assert_int_equal(bits_of_f32_to_bf16(0x7f7fffffu), 0x7f80); /* FLT_MAX -> inf */
    assert_int_equal(bits_of_f32_to_bf16(0x7f7f0000u), 0x7f7f); /* largest bf16 stays */
    assert_int_equal(bits_of_f32_to_bf16(0xff800000u), 0xff80); /* -inf stays */
    /* NaN stays NaN, even when its payload is only in the dropped bits
     * (plain rounding would make 0x7f800001 an infinity), sign kept. */
    assert_true(bf16_is_nan(bits_of_f32_to_bf16(0x7f800001u)));
    assert_true(bf16_is_nan(bits_of_f32_to_bf16(0x7fffffffu))); /* would carry out */
    assert_true(bf16_is_nan(bits_of_f32_to_bf16(0xffc00000u)));
    assert_int_equal(bits_of_f32_to_bf16(0xff800001u) & 0x8000, 0x8000);
    assert_true(isnan(nnopt_bf16_to_f32(bits_of_f32_to_bf16(0x7f800001u))));
    /* Widening is exact. */
    for (uint32_t h = 0; h < 0x10000; h++)
        if (!bf16_is_nan((uint16_t)h))
            assert_int_equal(nnopt_bf16_from_f32(nnopt_bf16_to_f32((uint16_t)h)), h);
}

static void test_conversion_from_double_rounds_once(void **state) {
    (void)state;
    /* 1 + 2^-8 + 2^-40 is just above a bf16 tie, so it rounds up; via f32 it
     * would first become the tie itself and then round down to even. */
    const double above_tie = 1.0 + 0x1p-8 + 0x1p-40;
    assert_int_equal(nnopt_bf16_from_f32((float)above_tie), 0x3f80); /* the double rounding */
    assert_int_equal(nnopt_bf16_from_f64(above_tie), 0x3f81);
    assert_int_equal(nnopt_bf16_from_f64(-above_tie), 0xbf81);
    assert_int_equal(nnopt_bf16_from_f64(1.0 + 0x1p-8 - 0x1p-40), 0x3f80); /* just below */
    assert_int_equal(nnopt_bf16_from_f64(1.0 + 0x1p-8), 0x3f80);           /* the tie */
    assert_int_equal(nnopt_bf16_from_f64(1.0 + 3 * 0x1p-8), 0x3f82);       /* tie, up */
    assert_int_equal(nnopt_bf16_from_f64(1e300), 0x7f80);
    assert_true(bf16_is_nan(nnopt_bf16_from_f64(NAN)));
    assert_int_equal(nnopt_bf16_from_f64(0.1), nnopt_bf16_from_f32(0.1f)); /* no tie nearby */
}

/* The cast op from f64 rounds once too, on every backend (it used to go
 * through an f32 copy of the output and round twice). */
static void test_cast_from_double_rounds_once(void **state) {
    (void)state;
    const double values[4] = {1.0 + 0x1p-8 + 0x1p-40, -(1.0 + 0x1p-8 + 0x1p-40), 1.0 + 0x1p-8, 0.1};
    const int64_t shape[1] = {4};
    test_backend *backends[2] = {&ref_backend, &blis_backend};
    for (int k = 0; k < (cpu_only ? 1 : 2); k++) {
        nnopt_tensor *x = test_tensor_new(backends[k], NNOPT_F64, 1, shape, values);
        nnopt_tensor *y = test_tensor_new(backends[k], NNOPT_BF16, 1, shape, NULL);
        const nnopt_op cast = {.kind = NNOPT_OP_CAST};
        assert_int_equal(test_run(backends[k], &cast, &x, 1, &y, 1), NNOPT_OK);
        uint16_t bits[4];
        assert_int_equal(backends[k]->vt->tensor_read(backends[k]->ctx, y, 0, bits, sizeof bits),
                         NNOPT_OK);
        for (int i = 0; i < 4; i++)
            if (bits[i] != nnopt_bf16_from_f64(values[i]))
                fail_msg("%s: cast of %.17g gave 0x%04x, expected 0x%04x", backends[k]->name,
                         values[i], bits[i], nnopt_bf16_from_f64(values[i]));
        test_tensor_free(backends[k], x);
        test_tensor_free(backends[k], y);
    }
}

/* ---- random op cases ----------------------------------------------------- */

typedef struct op_case {
    const char *what;
    nnopt_op op;
    int n_in;
    int ndim[MAX_TENSORS];
    int64_t shape[MAX_TENSORS][NNOPT_MAX_DIMS];
    int positive[MAX_TENSORS]; /* values in (0.5, 2): batch norm variances */
    int out_ndim;
    int64_t out_shape[NNOPT_MAX_DIMS];
    double *values[MAX_TENSORS];
} op_case;

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static void fill_values(op_case *c) {
    for (int i = 0; i < c->n_in; i++) {
        const int64_t n = numel(c->ndim[i], c->shape[i]);
        c->values[i] = malloc((size_t)n * sizeof(double));
        assert_non_null(c->values[i]);
        for (int64_t j = 0; j < n; j++)
            c->values[i][j] = c->positive[i] ? rng_uniform(0.5, 2.0) : rng_uniform(-2.0, 2.0);
    }
}

static void free_values(op_case *c) {
    for (int i = 0; i < c->n_in; i++) free(c->values[i]);
}

/* A random convolution: plain, grouped or depthwise, any stride/padding. */
static op_case conv_case(void) {
    op_case c = {.what = "conv2d", .op.kind = NNOPT_OP_CONV2D};
    const int kind = rng_int(0, 3); /* 0, 1: plain; 2: grouped; 3: depthwise */
    int groups = kind == 2 ? rng_int(2, 3) : 1;
    int cg = rng_int(1, 9), kg = rng_int(1, 20);
    if (kind == 3) groups = rng_int(2, 8), cg = 1, kg = 1;
    const int n = rng_int(1, 3), h = rng_int(3, 13), w = rng_int(3, 13);
    const int pad = rng_int(0, 2), stride = rng_int(1, 2);
    const int r = rng_int(1, h + 2 * pad < 5 ? h + 2 * pad : 5);
    const int s = rng_int(1, w + 2 * pad < 5 ? w + 2 * pad : 5);
    c.op.p.conv2d = (nnopt_conv2d_params){stride, stride, pad, pad, groups};
    const int64_t C = (int64_t)groups * cg, K = (int64_t)groups * kg;
    c.n_in = rng_int(2, 3);
    c.ndim[0] = c.ndim[1] = 4;
    memcpy(c.shape[0], (int64_t[]){n, C, h, w}, sizeof c.shape[0]);
    memcpy(c.shape[1], (int64_t[]){K, cg, r, s}, sizeof c.shape[1]);
    c.ndim[2] = 1;
    c.shape[2][0] = K;
    c.out_ndim = 4;
    memcpy(c.out_shape,
           (int64_t[]){n, K, (h + 2 * pad - r) / stride + 1, (w + 2 * pad - s) / stride + 1},
           sizeof c.out_shape);
    return c;
}

static op_case dense_case(void) {
    op_case c = {.what = "dense", .op.kind = NNOPT_OP_DENSE};
    const int64_t n = rng_int(1, 20), in = rng_int(1, 70), out = rng_int(1, 50);
    c.n_in = rng_int(2, 3);
    c.ndim[0] = c.ndim[1] = 2;
    memcpy(c.shape[0], (int64_t[]){n, in}, 2 * sizeof(int64_t));
    memcpy(c.shape[1], (int64_t[]){out, in}, 2 * sizeof(int64_t));
    c.ndim[2] = 1;
    c.shape[2][0] = out;
    c.out_ndim = 2;
    memcpy(c.out_shape, (int64_t[]){n, out}, 2 * sizeof(int64_t));
    return c;
}

static void image_shape(int64_t shape[4]) {
    const int64_t s[4] = {rng_int(1, 4), rng_int(1, 6), rng_int(2, 12), rng_int(2, 12)};
    memcpy(shape, s, sizeof s);
}

/* Element-wise and per-channel ops on a random image batch. */
static op_case simple_case(nnopt_op_kind kind) {
    op_case c = {.what = nnopt_op_kind_name(kind), .op.kind = kind};
    c.ndim[0] = c.out_ndim = 4;
    image_shape(c.shape[0]);
    memcpy(c.out_shape, c.shape[0], sizeof c.out_shape);
    c.n_in = 1;
    if (kind == NNOPT_OP_ACT) {
        static const nnopt_act_kind acts[] = {NNOPT_ACT_RELU, NNOPT_ACT_TANH, NNOPT_ACT_GELU_TANH,
                                              NNOPT_ACT_SIGMOID, NNOPT_ACT_RELU6};
        c.op.p.act.kind = acts[rng_int(0, 4)];
    } else if (kind == NNOPT_OP_ADD) {
        c.n_in = 2;
        c.ndim[1] = 4;
        memcpy(c.shape[1], c.shape[0], sizeof c.shape[1]);
    } else if (kind == NNOPT_OP_POOL2D) {
        const int k = rng_int(1, 2);
        c.op.p.pool2d = (nnopt_pool2d_params){
            rng_int(0, 1) ? NNOPT_POOL_AVG : NNOPT_POOL_MAX, k, k, k, k, 0, 0};
        c.out_shape[2] = (c.shape[0][2] - k) / k + 1;
        c.out_shape[3] = (c.shape[0][3] - k) / k + 1;
    } else if (kind == NNOPT_OP_BATCHNORM) {
        c.n_in = 5;
        c.op.p.bn = (nnopt_bn_params){1e-5, 0.1, 0};
        for (int i = 1; i < 5; i++) c.ndim[i] = 1, c.shape[i][0] = c.shape[0][1];
        c.positive[4] = 1;
    }
    return c;
}

static op_case random_case(int round) {
    switch (round % 6) {
    case 0:
    case 1:
        return conv_case();
    case 2:
        return dense_case();
    case 3:
        return simple_case(NNOPT_OP_ACT);
    case 4:
        return simple_case(rng_int(0, 1) ? NNOPT_OP_ADD : NNOPT_OP_POOL2D);
    default:
        return simple_case(NNOPT_OP_BATCHNORM);
    }
}

/* Runs c on b with inputs in `dtype` (values transformed by `magnitudes`:
 * absolute values, means negated, for the scale S) and returns the output. */
static double *run_case(test_backend *b, const op_case *c, nnopt_dtype dtype, int magnitudes) {
    nnopt_tensor *in[MAX_TENSORS] = {0};
    for (int i = 0; i < c->n_in; i++) {
        const int64_t n = numel(c->ndim[i], c->shape[i]);
        double *v = malloc((size_t)n * sizeof *v);
        assert_non_null(v);
        /* Batch norm's mean is subtracted: its magnitude must add. */
        const int subtracted = c->op.kind == NNOPT_OP_BATCHNORM && i == 3;
        for (int64_t j = 0; j < n; j++)
            v[j] = magnitudes ? (subtracted ? -fabs(c->values[i][j]) : fabs(c->values[i][j]))
                              : c->values[i][j];
        in[i] = test_tensor_new(b, dtype, c->ndim[i], c->shape[i], v);
        assert_non_null(in[i]);
        free(v);
    }
    nnopt_tensor *out = test_tensor_new(b, dtype, c->out_ndim, c->out_shape, NULL);
    assert_non_null(out);
    assert_int_equal(test_run(b, &c->op, in, c->n_in, &out, 1), NNOPT_OK);
    const int64_t n = numel(c->out_ndim, c->out_shape);
    double *y = malloc((size_t)n * sizeof *y);
    assert_non_null(y);
    test_tensor_read(b, out, y);
    for (int i = 0; i < c->n_in; i++) test_tensor_free(b, in[i]);
    test_tensor_free(b, out);
    return y;
}

/* S per output element: the op on absolute values (f32), or 1.2 |x| for
 * activations (their slope is at most 1.13). */
static double *magnitude(const op_case *c) {
    if (c->op.kind != NNOPT_OP_ACT) {
        double *s = run_case(&ref_backend, c, NNOPT_F32, 1);
        const int64_t n = numel(c->out_ndim, c->out_shape);
        for (int64_t j = 0; j < n; j++) s[j] = fabs(s[j]);
        return s;
    }
    const int64_t n = numel(c->ndim[0], c->shape[0]);
    double *s = malloc((size_t)n * sizeof *s);
    assert_non_null(s);
    for (int64_t j = 0; j < n; j++) s[j] = 1.2 * fabs(c->values[0][j]);
    return s;
}

static void describe(const op_case *c, char *buf, size_t size) {
    int used = snprintf(buf, size, "%s", c->what);
    for (int i = 0; i < c->n_in && used < (int)size; i++) {
        used += snprintf(buf + used, size - (size_t)used, " [");
        for (int d = 0; d < c->ndim[i]; d++)
            used += snprintf(buf + used, size - (size_t)used, "%s%lld", d ? "," : "",
                             (long long)c->shape[i][d]);
        used += snprintf(buf + used, size - (size_t)used, "]");
    }
    if (c->op.kind == NNOPT_OP_CONV2D && used < (int)size)
        snprintf(buf + used, size - (size_t)used, " stride %d pad %d groups %d",
                 c->op.p.conv2d.stride_h, c->op.p.conv2d.pad_h, c->op.p.conv2d.groups);
}

static void test_reference_bf16_is_f32_within_rounding(void **state) {
    (void)state;
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        op_case c = random_case(round);
        fill_values(&c);
        double *f32 = run_case(&ref_backend, &c, NNOPT_F32, 0);
        double *bf16 = run_case(&ref_backend, &c, NNOPT_BF16, 0);
        double *s = magnitude(&c);
        const int64_t n = numel(c.out_ndim, c.out_shape);
        for (int64_t j = 0; j < n; j++) {
            const double bound = 4 * u * s[j] + u * fabs(f32[j]);
            if (!(fabs(bf16[j] - f32[j]) <= bound)) {
                char text[256];
                describe(&c, text, sizeof text);
                fail_msg("%s: element %lld: bf16 %.9g, f32 %.9g, bound %.3g", text, (long long)j,
                         bf16[j], f32[j], bound);
            }
        }
        free(f32);
        free(bf16);
        free(s);
        free_values(&c);
    }
}

static void check_blis_against_reference(test_backend *blis, int rounds) {
    for (int round = 0; round < rounds; round++) {
        op_case c = random_case(round);
        fill_values(&c);
        double *fast = run_case(blis, &c, NNOPT_BF16, 0);
        double *ref = run_case(&ref_backend, &c, NNOPT_BF16, 0);
        double *s = magnitude(&c);
        const int64_t n = numel(c.out_ndim, c.out_shape);
        for (int64_t j = 0; j < n; j++) {
            const double bound = 0x1p-7 * fabs(ref[j]) + 0x1p-14 * s[j];
            if (!(fabs(fast[j] - ref[j]) <= bound)) {
                char text[256];
                describe(&c, text, sizeof text);
                fail_msg("%s: element %lld: blis %.9g, reference %.9g, bound %.3g", text,
                         (long long)j, fast[j], ref[j], bound);
            }
        }
        free(fast);
        free(ref);
        free(s);
        free_values(&c);
    }
}

static void test_blis_bf16_matches_reference(void **state) {
    (void)state;
    check_blis_against_reference(&blis_backend, 3 * RANDOM_ROUNDS);
}

static void test_blis_portable_bf16_matches_reference(void **state) {
    (void)state;
    check_blis_against_reference(&portable_backend, RANDOM_ROUNDS);
}

/* Large enough for every tile shape of the GEMM: row tails (K % 8), column
 * tails, several column strips, odd channel counts, a 1x1 convolution and
 * ResNet's strided 3x3. */
static void test_blis_bf16_conv_tiles(void **state) {
    (void)state;
    static const int shapes[][8] = {
        /* n, c, hw, k, r, stride, pad, groups */
        {2, 16, 32, 16, 3, 1, 1, 1}, {3, 3, 17, 13, 3, 1, 1, 1},  {2, 1, 28, 6, 5, 1, 2, 1},
        {2, 6, 14, 16, 5, 1, 0, 1},  {2, 16, 16, 32, 3, 2, 1, 1}, {2, 32, 8, 64, 1, 1, 0, 1},
        {2, 12, 9, 10, 3, 1, 1, 2},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int *v = shapes[i];
        op_case c = {.what = "conv2d", .op.kind = NNOPT_OP_CONV2D, .n_in = 3};
        c.op.p.conv2d = (nnopt_conv2d_params){v[5], v[5], v[6], v[6], v[7]};
        c.ndim[0] = c.ndim[1] = 4;
        memcpy(c.shape[0], (int64_t[]){v[0], v[1], v[2], v[2]}, sizeof c.shape[0]);
        memcpy(c.shape[1], (int64_t[]){v[3], v[1] / v[7], v[4], v[4]}, sizeof c.shape[1]);
        c.ndim[2] = 1;
        c.shape[2][0] = v[3];
        const int64_t side = (v[2] + 2 * v[6] - v[4]) / v[5] + 1;
        c.out_ndim = 4;
        memcpy(c.out_shape, (int64_t[]){v[0], v[3], side, side}, sizeof c.out_shape);
        fill_values(&c);
        double *fast = run_case(&blis_backend, &c, NNOPT_BF16, 0);
        double *ref = run_case(&ref_backend, &c, NNOPT_BF16, 0);
        double *s = magnitude(&c);
        for (int64_t j = 0; j < numel(4, c.out_shape); j++)
            if (!(fabs(fast[j] - ref[j]) <= 0x1p-7 * fabs(ref[j]) + 0x1p-14 * s[j]))
                fail_msg("shape %zu element %lld: blis %.9g, reference %.9g", i, (long long)j,
                         fast[j], ref[j]);
        free(fast);
        free(ref);
        free(s);
        free_values(&c);
    }
}

/* One f32 sum rounded once: the blis add (hardware rounding where the CPU
 * has it) must give exactly the reference's bits, ties to even included. */
static void test_blis_bf16_add_rounds_like_reference(void **state) {
    (void)state;
    enum { N = 1000 };
    double a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = 1.0;
        b[i] = i < 2 ? (2 * i + 1) * 0x1p-8 : rng_uniform(-3, 3); /* two exact ties first */
    }
    const int64_t shape[1] = {N};
    test_backend *backends[2] = {&blis_backend, &ref_backend};
    double y[2][N];
    for (int k = 0; k < 2; k++) {
        nnopt_tensor *in[2] = {test_tensor_new(backends[k], NNOPT_BF16, 1, shape, a),
                               test_tensor_new(backends[k], NNOPT_BF16, 1, shape, b)};
        nnopt_tensor *out = test_tensor_new(backends[k], NNOPT_BF16, 1, shape, NULL);
        nnopt_op add = {.kind = NNOPT_OP_ADD};
        assert_int_equal(test_run(backends[k], &add, in, 2, &out, 1), NNOPT_OK);
        test_tensor_read(backends[k], out, y[k]);
        for (int i = 0; i < 2; i++) test_tensor_free(backends[k], in[i]);
        test_tensor_free(backends[k], out);
    }
    assert_true(y[0][0] == 1.0);      /* 1 + 2^-8: the tie goes down to even */
    assert_true(y[0][1] == 1.015625); /* 1 + 3 2^-8: up to even */
    for (int i = 0; i < N; i++)
        if (y[0][i] != y[1][i])
            fail_msg("element %d: blis %.9g, reference %.9g", i, y[0][i], y[1][i]);
}

/* Both backends run exactly the forward ops in bf16, and say so. */
static void test_supports_tables(void **state) {
    (void)state;
    static const nnopt_op_kind forward[] = {
        NNOPT_OP_CONV2D, NNOPT_OP_DENSE,     NNOPT_OP_POOL2D,  NNOPT_OP_ACT,         NNOPT_OP_ADD,
        NNOPT_OP_CAST,   NNOPT_OP_BATCHNORM, NNOPT_OP_DROPOUT, NNOPT_OP_SOFTMAX_XENT};
    test_backend *backends[2] = {&blis_backend, &ref_backend};
    for (int k = 0; k < 2; k++) {
        for (int op = 0; op < NNOPT_OP_KIND_COUNT; op++) {
            int expected = 0;
            for (size_t i = 0; i < sizeof forward / sizeof forward[0]; i++)
                expected |= forward[i] == (nnopt_op_kind)op;
            const test_backend *b = backends[k];
            if (!!b->vt->supports(b->ctx, (nnopt_op_kind)op, NNOPT_BF16) != expected)
                fail_msg("%s: supports(%s, bf16) should be %d", b->name,
                         nnopt_op_kind_name((nnopt_op_kind)op), expected);
        }
        /* A backward op on bf16 tensors is refused with a reason. */
        const int64_t shape[1] = {4};
        nnopt_tensor *t[3];
        for (int i = 0; i < 3; i++) t[i] = test_tensor_new(backends[k], NNOPT_BF16, 1, shape, NULL);
        nnopt_op op = {.kind = NNOPT_OP_ACT_BWD};
        assert_int_equal(backends[k]->vt->run(backends[k]->ctx, &op, t, 3, t, 1),
                         NNOPT_STATUS_UNSUPPORTED);
        assert_non_null(strstr(nnopt_plugin_error_take(), "bf16"));
        for (int i = 0; i < 3; i++) test_tensor_free(backends[k], t[i]);
    }
}

/* ---- the precision technique end to end ---------------------------------- */

static char fixture[256];

static const char *const pipeline_ini =
    "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n"
    "[backend]\nplugin = %s\n"
    "[model net]\nplugin = lenet5\nchannels = 4,8\ndense = 32\nactivation = relu\ndtype = f32\n"
    "[technique to_bf16]\nplugin = precision\ndtype = bf16\n"
    "[training]\nepochs = 2\nbatch = 32\nlr = 0.05\nmomentum = 0.9\nseed = 3\nprogress = off\n"
    "[run f32]\nmodel = net\n"
    "[run bf16]\nmodel = net\ninit_from = f32\ntechniques = to_bf16\nepochs = 0\n"
    "%s";

static nnopt_status load(const char *backend, const char *extra, nnopt_experiment *e,
                         nnopt_error *err) {
    char ini[512], dirset[400], outset[400];
    snprintf(ini, sizeof ini, "%s/bf16.ini", fixture);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, pipeline_ini, backend, extra);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", fixture);
    snprintf(outset, sizeof outset, "experiment.output=%s/runs", fixture);
    const char *overrides[2] = {dirset, outset};
    return nnopt_experiment_load(ini, overrides, 2, e, err);
}

static const char *result_column(const nnopt_run_result *r, const char *name) {
    for (int i = 0; i < r->n_columns; i++)
        if (!strcmp(r->column_names[i], name)) return r->column_values[i];
    return NULL;
}

static const nnopt_run_result *find_result(const nnopt_experiment *e, const nnopt_run_result *r,
                                           const char *name) {
    for (int i = 0; i < e->n_runs; i++)
        if (!strcmp(r[i].run, name)) return &r[i];
    fail_msg("no run %s", name);
    return NULL;
}

/* Trains in f32 and evaluates the trained weights in bf16, both ways: a
 * separate run starting from the f32 run's weights, and one run converted
 * after its training (stage = inference). On the reference and on blis,
 * accuracy within 2 of the 200 test images of f32's (the logits move by
 * about u relative; only near-ties can flip). */
static void test_precision_technique_evaluates_in_bf16(void **state) {
    (void)state;
    const char *backends[2] = {"cpu", "blis"};
    /* Also: the f32 weights saved to a checkpoint and loaded into a bf16 model. */
    char extra[1024];
    snprintf(extra, sizeof extra,
             "[technique after_training]\nplugin = precision\ndtype = bf16\nstage = inference\n"
             "[run f32_then_bf16]\nmodel = net\ntechniques = after_training\n"
             "[run f32_saved]\nmodel = net\nsave_checkpoint = %s/f32.safetensors\n"
             "[run bf16_from_checkpoint]\nmodel = net\ntechniques = to_bf16\nepochs = 0\n"
             "after = f32_saved\nload_checkpoint = %s/f32.safetensors\n"
             "[compare bf16_vs_f32]\nruns = f32, bf16\nbaseline = f32\n",
             fixture, fixture);
    for (int k = 0; k < (cpu_only ? 1 : 2); k++) {
        nnopt_experiment e;
        nnopt_data data;
        nnopt_error err = {0};
        if (load(backends[k], extra, &e, &err) != NNOPT_OK) fail_msg("%s", err.message);
        if (nnopt_data_load(e.data, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
        nnopt_run_result r[NNOPT_MAX_RUNS];
        if (nnopt_pipeline_run(&e, &data, r, &err) != NNOPT_OK) fail_msg("%s", err.message);
        const nnopt_run_result *f32 = find_result(&e, r, "f32");
        const nnopt_run_result *bf16 = find_result(&e, r, "bf16");
        const nnopt_run_result *then = find_result(&e, r, "f32_then_bf16");
        assert_string_equal(f32->dtype, "f32");
        assert_string_equal(bf16->dtype, "bf16");
        assert_string_equal(result_column(bf16, "precision"), "f32 -> bf16");
        assert_int_equal(bf16->n_epochs, 0);
        if (f32->test_accuracy < 0.8 || fabs(bf16->test_accuracy - f32->test_accuracy) > 2.0 / 200)
            fail_msg("%s: f32 accuracy %.3f, bf16 %.3f", backends[k], f32->test_accuracy,
                     bf16->test_accuracy);
        /* Trained exactly as the f32 run (same seed and backend), then converted. */
        assert_string_equal(then->dtype, "bf16");
        assert_string_equal(result_column(then, "precision"), "f32 -> bf16");
        assert_int_equal(then->n_epochs, 2);
        assert_true(then->epochs[1].test_accuracy == f32->test_accuracy);
        if (fabs(then->test_accuracy - f32->test_accuracy) > 2.0 / 200)
            fail_msg("%s: converted after training: %.3f, f32 %.3f", backends[k],
                     then->test_accuracy, f32->test_accuracy);
        /* The same weights rounded the same way: the same predictions. */
        const nnopt_run_result *loaded = find_result(&e, r, "bf16_from_checkpoint");
        assert_string_equal(loaded->dtype, "bf16");
        assert_true(loaded->test_accuracy == bf16->test_accuracy);
        assert_true(loaded->epochs[0].test_loss == bf16->epochs[0].test_loss);
        /* The comparison in results.json: the bf16 run did not train, so its
         * training speed-up is null (JSON has no infinity). */
        if (nnopt_report_write(&e, fixture, r, e.n_runs, &err) != NNOPT_OK)
            fail_msg("%s", err.message);
        char path[1100], json[1 << 15];
        snprintf(path, sizeof path, "%s/results.json", e.output_dir);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        json[fread(json, 1, sizeof json - 1, f)] = 0;
        fclose(f);
        assert_non_null(strstr(json, "{\"run\": \"bf16\", \"training_speedup\": null, "));
        assert_null(strstr(json, ": inf"));
        assert_null(strstr(json, ": -inf"));
        assert_null(strstr(json, ": nan"));
        for (int i = 0; i < e.n_runs; i++) nnopt_run_result_free(&r[i]);
        nnopt_data_free(&data);
        nnopt_experiment_free(&e);
    }
}

/* Training in bf16 is not offered: the run stops before it starts, naming
 * the ops the backend lacks. */
static void test_bf16_training_is_refused(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_data data;
    nnopt_error err = {0};
    if (load("blis", "[run bf16_trained]\nmodel = net\ntechniques = to_bf16\n", &e, &err) !=
        NNOPT_OK)
        fail_msg("%s", err.message);
    if (nnopt_data_load(e.data, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_run_result r[NNOPT_MAX_RUNS];
    assert_int_equal(nnopt_pipeline_run(&e, &data, r, &err), NNOPT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(err.message, "run 'bf16_trained'"));
    assert_non_null(strstr(err.message, "cannot run these ops in bf16"));
    assert_non_null(strstr(err.message, "conv2d_bwd_data"));
    assert_non_null(strstr(err.message, "sgd_update"));
    assert_null(strstr(err.message, " conv2d ")); /* forward ops are there */
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static int setup_fixture(void **state) {
    (void)state;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    if (fixture_tmpdir(fixture, sizeof fixture, "bf16") != 0) return -1;
    return idx_fixture_write(fixture, 600, 200, 5);
}

static int setup(void **state) {
    const char *fast[] = {"threads=2", NULL}, *portable[] = {"threads=2", "bf16=f32", NULL};
    if (test_backend_open("blis", fast, &blis_backend) != 0) return -1;
    if (test_backend_open("blis", portable, &portable_backend) != 0) return -1;
    return setup_fixture(state);
}

static int teardown(void **state) {
    (void)state;
    test_backend_close(&blis_backend);
    test_backend_close(&portable_backend);
    test_backend_close(&ref_backend);
    fixture_rmdir(fixture);
    return 0;
}

/* `test_bf16 cpu`: only what runs on the reference backend (no AVX-512 code,
 * so that it runs under valgrind, which cannot execute AVX-512). */
int main(int argc, char **argv) {
    cpu_only = argc > 1 && strcmp(argv[1], "cpu") == 0;
    if (cpu_only) {
        const struct CMUnitTest cpu_tests[] = {
            cmocka_unit_test(test_conversion_rounds_to_nearest_even),
            cmocka_unit_test(test_conversion_from_double_rounds_once),
            cmocka_unit_test(test_cast_from_double_rounds_once),
            cmocka_unit_test(test_reference_bf16_is_f32_within_rounding),
            cmocka_unit_test(test_precision_technique_evaluates_in_bf16),
        };
        return cmocka_run_group_tests(cpu_tests, setup_fixture, teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversion_rounds_to_nearest_even),
        cmocka_unit_test(test_conversion_from_double_rounds_once),
        cmocka_unit_test(test_cast_from_double_rounds_once),
        cmocka_unit_test(test_reference_bf16_is_f32_within_rounding),
        cmocka_unit_test(test_blis_bf16_matches_reference),
        cmocka_unit_test(test_blis_portable_bf16_matches_reference),
        cmocka_unit_test(test_blis_bf16_conv_tiles),
        cmocka_unit_test(test_blis_bf16_add_rounds_like_reference),
        cmocka_unit_test(test_supports_tables),
        cmocka_unit_test(test_precision_technique_evaluates_in_bf16),
        cmocka_unit_test(test_bf16_training_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
