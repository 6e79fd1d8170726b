/* The cuda backend in bf16 (bf16 storage, f32 arithmetic: what the precision
 * technique's inference runs).
 *
 *   test_cuda_bf16 rounding
 *     No GPU needed. The conversions the device kernels use
 *     (plugins/backends/cuda/cuda_bf16_round.h), run on the host, give
 *     include/nnopt/bf16.h's bits: every bf16 value widened, every upper
 *     half of an f32 with the low halves around each rounding case, and
 *     doubles on, near and between ties.
 *   test_cuda_bf16 numerics [key=value]...
 *     Every op the reference runs in bf16, on the cuda backend (with these
 *     settings) and on the reference ("cpu") with the same bf16 inputs:
 *     conversions, add and dropout bit for bit; convolutions, dense layers,
 *     pooling, activations, batch norm and softmax_xent within the bounds of
 *     tests/support/bf16_compare.h; the supports table and the refusal of
 *     every other op; bf16 tensors' storage; and the precision technique
 *     end to end. Without a GPU every test prints "SKIP: no CUDA device
 *     (<reason>)" and the program exits with 77 (ctest's SKIP_RETURN_CODE).
 *     NNOPT_TEST_CUDA_AS=<backend> checks that backend instead: a test of
 *     this test where there is no GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "bf16_compare.h"
#include "config.h"
#include "cuda_bf16_round.h"
#include "data_source.h"
#include "experiment.h"
#include "idx_fixture.h"
#include "nnopt/bf16.h"
#include "pipeline.h"
#include "plugin_loader.h"
#include "test_backend.h"
#include "train.h"

enum { RANDOM_ROUNDS = 6, EXIT_SKIPPED = 77, MAX_SETTINGS = 16 };

static test_backend device, ref_backend;
static const char *device_name = "cuda";
static const char *settings[MAX_SETTINGS + 1];
static int gpu_available;
static char no_gpu_reason[1024];

#define SKIP_WITHOUT_GPU()                                                                         \
    do {                                                                                           \
        if (!gpu_available) {                                                                      \
            print_message("SKIP: no CUDA device (%s)\n", no_gpu_reason);                           \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- rounding: the device conversions on the host ---- */

static float f32_of_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void test_rounding_f32(void **state) {
    (void)state;
    /* Every rounding case sits in the low half: exact, just above and below
     * the tie, the tie itself, and the extremes. */
    static const uint32_t lows[] = {0x0000, 0x0001, 0x3fff, 0x4000, 0x7ffe, 0x7fff,
                                    0x8000, 0x8001, 0xbfff, 0xc000, 0xfffe, 0xffff};
    for (uint32_t high = 0; high < 0x10000; high++) {
        const float widened = cuda_bf16_to_f32((uint16_t)high);
        const float expected = nnopt_bf16_to_f32((uint16_t)high);
        if (memcmp(&widened, &expected, sizeof widened) != 0)
            fail_msg("widening 0x%04x differs", (unsigned)high);
        /* The casts to f32 and f64, as the reference's (through double). */
        const float cast = cuda_bf16_cast_to_f32((uint16_t)high);
        volatile double through = expected; /* converted at run time, as the reference does */
        const float host_cast = (float)through;
        const double cast64 = cuda_f32_to_f64(widened), host_cast64 = (double)expected;
        if (memcmp(&cast, &host_cast, sizeof cast) != 0 ||
            memcmp(&cast64, &host_cast64, sizeof cast64) != 0)
            fail_msg("cast of 0x%04x to f32 or f64 unlike the host's", (unsigned)high);
        for (size_t i = 0; i < sizeof lows / sizeof lows[0] + 8; i++) {
            const uint32_t low =
                i < sizeof lows / sizeof lows[0] ? lows[i] : (uint32_t)(rng_next() & 0xffff);
            const uint32_t bits = high << 16 | low;
            const float f = f32_of_bits(bits);
            const uint16_t got = cuda_bf16_from_f32(f), want = nnopt_bf16_from_f32(f);
            if (got != want)
                fail_msg("f32 0x%08x: device rounding 0x%04x, nnopt/bf16.h 0x%04x", (unsigned)bits,
                         (unsigned)got, (unsigned)want);
            /* Widening to f64 as the host does, NaN payloads included. */
            const double wide = cuda_f32_to_f64(f), host = (double)f;
            if (memcmp(&wide, &host, sizeof wide) != 0)
                fail_msg("f32 0x%08x: widened to f64 unlike the host", (unsigned)bits);
        }
    }
}

static void check_f64(double d) {
    const uint16_t got = cuda_bf16_from_f64(d), want = nnopt_bf16_from_f64(d);
    if (got != want)
        fail_msg("f64 %.17g: device rounding 0x%04x, nnopt/bf16.h 0x%04x", d, (unsigned)got,
                 (unsigned)want);
}

static void test_rounding_f64(void **state) {
    (void)state;
    static const double specials[] = {0.0,   -0.0,  INFINITY, -INFINITY, NAN,
                                      -NAN,  1e300, -1e300,   3.4e38,    3.3961e38,
                                      1e-38, 1e-40, 1e-45,    1e-46,     1e-300};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) check_f64(specials[i]);
    /* Around each tie between neighbouring bf16 values: the tie, and offsets
     * from it that f32 cannot hold (where rounding through f32 goes wrong). */
    for (uint32_t h = 0; h < 0x7f80; h++) {
        const double lo = nnopt_bf16_to_f32((uint16_t)h), hi = nnopt_bf16_to_f32((uint16_t)(h + 1));
        const double tie = (lo + hi) / 2, step = hi - lo;
        const double offsets[] = {0, 0x1p-20, -0x1p-20, 0x1p-30, -0x1p-30, 0x1p-45, -0x1p-45};
        for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
            check_f64(tie + offsets[k] * step);
            check_f64(-(tie + offsets[k] * step));
        }
        check_f64(lo + rng_uniform(0, 1) * step);
    }
    /* Random doubles across the whole range. */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = rng_next();
        double d;
        memcpy(&d, &bits, sizeof d);
        check_f64(d);
    }
}

/* ---- opening the backend ---- */

/* Opens cuda with the settings through the core; the failure message if not. */
static nnopt_status probe_cuda(char *message, size_t size) {
    message[0] = '\0';
    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    nnopt_error err = {0};
    const nnopt_plugin *plugin = NULL;
    nnopt_status status = nnopt_plugin_load(&search, NNOPT_PLUGIN_BACKEND, "cuda", &plugin, &err);
    nnopt_plugin_search_free(&search);
    nnopt_config *cfg = NULL;
    if (status == NNOPT_OK) {
        cfg = nnopt_config_create(plugin->desc->params, (int)plugin->desc->n_params, "cuda");
        status = test_config_apply_settings(cfg, settings, &err);
    }
    nnopt_backend *backend = NULL;
    if (status == NNOPT_OK) status = nnopt_backend_open(plugin, cfg, &backend, &err);
    if (status != NNOPT_OK) snprintf(message, size, "%s", err.message);
    nnopt_backend_close(backend);
    nnopt_config_free(cfg);
    return status;
}

/* ---- storage, supports, refusals ---- */

static void test_tensor_storage(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    /* Every bit pattern, NaN payloads included, survives a round trip:
     * storage moves bytes. Two bytes per element, more than one staging
     * chunk (16 MiB), read back at an element's offset. */
    const int64_t count = (16 << 20) / 2 + 3;
    uint16_t *bits = malloc((size_t)count * 2), *back = calloc((size_t)count, 2);
    assert_true(bits && back);
    for (int64_t i = 0; i < count; i++) bits[i] = (uint16_t)(i * 40503u);
    nnopt_tensor *t = test_tensor_new(&device, NNOPT_BF16, 1, &count, NULL);
    assert_non_null(t);
    assert_int_equal(nnopt_tensor_nbytes(t), (size_t)count * 2);
    assert_int_equal(device.vt->tensor_write(device.ctx, t, 0, bits, (size_t)count * 2), NNOPT_OK);
    assert_int_equal(device.vt->tensor_read(device.ctx, t, 2, back, (size_t)(count - 1) * 2),
                     NNOPT_OK);
    for (int64_t i = 0; i < count - 1; i++)
        if (back[i] != bits[i + 1]) fail_msg("element %lld came back changed", (long long)i + 1);
    assert_int_not_equal(device.vt->tensor_read(device.ctx, t, 4, back, (size_t)count * 2),
                         NNOPT_OK);
    assert_int_equal(device.vt->tensor_zero(device.ctx, t), NNOPT_OK);
    assert_int_equal(device.vt->tensor_read(device.ctx, t, 0, back, 8), NNOPT_OK);
    assert_true(back[0] == 0 && back[3] == 0);
    free(bits), free(back);
    test_tensor_free(&device, t);
}

static void test_supports_and_refusals(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    /* The reference's bf16 op set, no more and no less. */
    for (int op = 0; op < NNOPT_OP_KIND_COUNT; op++) {
        const int want = ref_backend.vt->supports(ref_backend.ctx, (nnopt_op_kind)op, NNOPT_BF16);
        const int got = device.vt->supports(device.ctx, (nnopt_op_kind)op, NNOPT_BF16);
        if (!!got != !!want)
            fail_msg("%s: supports(%s, bf16) is %d, the reference's %d", device.name,
                     nnopt_op_kind_name((nnopt_op_kind)op), got, want);
    }
    /* Any other op on bf16 tensors fails with a message naming it and bf16. */
    const int64_t n = 4;
    nnopt_tensor *t[5];
    for (int i = 0; i < 5; i++) t[i] = test_tensor_new(&device, NNOPT_BF16, 1, &n, NULL);
    const struct {
        nnopt_op_kind kind;
        int n_in, n_out;
    } refused[] = {{NNOPT_OP_ACT_BWD, 3, 1},          {NNOPT_OP_CONV2D_BWD_DATA, 2, 1},
                   {NNOPT_OP_DENSE_BWD_WEIGHT, 2, 1}, {NNOPT_OP_POOL2D_BWD, 3, 1},
                   {NNOPT_OP_BATCHNORM_BWD, 5, 3},    {NNOPT_OP_SGD_UPDATE, 2, 0},
                   {NNOPT_OP_BIAS_BWD, 1, 1}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const nnopt_op op = {.kind = refused[i].kind};
        const nnopt_status status =
            device.vt->run(device.ctx, &op, t, refused[i].n_in, t, refused[i].n_out);
        const char *message = nnopt_plugin_error_take();
        print_message("# %s: %s\n", nnopt_op_kind_name(op.kind), message);
        assert_int_equal(status, NNOPT_STATUS_UNSUPPORTED);
        assert_non_null(strstr(message, nnopt_op_kind_name(op.kind)));
        assert_non_null(strstr(message, "bf16"));
    }
    for (int i = 0; i < 5; i++) test_tensor_free(&device, t[i]);
}

/* ---- bit-exact ops: conversions, add, dropout ---- */

/* x (given as raw bytes of x_dtype) cast to y_dtype on both backends; the
 * raw results must be identical, and for bf16 results equal `expect`. */
static void check_cast_bits(nnopt_dtype x_dtype, const void *x, int64_t count, nnopt_dtype y_dtype,
                            const uint16_t *expect) {
    test_backend *both[2] = {&device, &ref_backend};
    const size_t y_bytes = (size_t)count * nnopt_dtype_size(y_dtype);
    unsigned char *result[2];
    for (int k = 0; k < 2; k++) {
        nnopt_tensor *tx = test_tensor_new(both[k], x_dtype, 1, &count, NULL);
        nnopt_tensor *ty = test_tensor_new(both[k], y_dtype, 1, &count, NULL);
        assert_true(tx && ty);
        assert_int_equal(both[k]->vt->tensor_write(both[k]->ctx, tx, 0, x,
                                                   (size_t)count * nnopt_dtype_size(x_dtype)),
                         NNOPT_OK);
        const nnopt_op cast = {.kind = NNOPT_OP_CAST};
        assert_int_equal(test_run(both[k], &cast, &tx, 1, &ty, 1), NNOPT_OK);
        result[k] = malloc(y_bytes);
        assert_non_null(result[k]);
        assert_int_equal(both[k]->vt->tensor_read(both[k]->ctx, ty, 0, result[k], y_bytes),
                         NNOPT_OK);
        test_tensor_free(both[k], tx);
        test_tensor_free(both[k], ty);
    }
    const size_t width = nnopt_dtype_size(y_dtype);
    for (int64_t i = 0; i < count; i++) {
        if (memcmp(result[0] + i * width, result[1] + i * width, width) != 0)
            fail_msg("cast %s -> %s element %lld: %s and the reference differ",
                     nnopt_dtype_name(x_dtype), nnopt_dtype_name(y_dtype), (long long)i,
                     device.name);
        if (expect && ((uint16_t *)result[0])[i] != expect[i])
            fail_msg("cast %s -> bf16 element %lld: 0x%04x, expected 0x%04x",
                     nnopt_dtype_name(x_dtype), (long long)i, ((uint16_t *)result[0])[i],
                     expect[i]);
    }
    free(result[0]), free(result[1]);
}

static void test_cast_bits(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    /* Doubles: specials, ties and values just off them (1 + 2^-8 + 2^-40
     * rounds up once, but down through f32), then random values. */
    enum { N = 4096 };
    static const double specials[] = {0.0,
                                      -0.0,
                                      INFINITY,
                                      -INFINITY,
                                      NAN,
                                      1e300,
                                      -3.5e38,
                                      1e-40,
                                      -1e-45,
                                      1.0 + 0x1p-8,
                                      1.0 + 3 * 0x1p-8,
                                      1.0 + 0x1p-8 + 0x1p-40,
                                      -(1.0 + 0x1p-8 + 0x1p-40),
                                      1.0 + 0x1p-8 - 0x1p-40,
                                      0.1};
    const size_t n_specials = sizeof specials / sizeof specials[0];
    double *f64 = malloc(N * sizeof *f64);
    float *f32 = malloc(N * sizeof *f32);
    uint16_t *expect = malloc(N * sizeof *expect), *all = malloc(65536 * sizeof *all);
    assert_true(f64 && f32 && expect && all);
    for (int i = 0; i < N; i++) {
        f64[i] =
            (size_t)i < n_specials ? specials[i] : rng_uniform(-4, 4) * pow(2, rng_int(-30, 30));
        expect[i] = nnopt_bf16_from_f64(f64[i]);
    }
    check_cast_bits(NNOPT_F64, f64, N, NNOPT_BF16, expect);
    /* Floats: every f32 rounding case of the low half. */
    for (int i = 0; i < N; i++) {
        const uint32_t bits = (uint32_t)rng_next() & 0xffff0000u;
        const uint32_t low = i % 4 == 0 ? 0x8000u : i % 4 == 1 ? 0x7fffu : (uint32_t)i * 7919u;
        const uint32_t word = bits | (low & 0xffffu);
        memcpy(&f32[i], &word, sizeof word);
        expect[i] = nnopt_bf16_from_f32(f32[i]);
    }
    check_cast_bits(NNOPT_F32, f32, N, NNOPT_BF16, expect);
    /* Every bf16 value, widened (exact; NaNs quieted) and copied. A copy of a
     * signaling NaN is left out: the device copies bytes, the reference's
     * copy goes through double and quiets it, and neither is wrong. */
    for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
    check_cast_bits(NNOPT_BF16, all, 65536, NNOPT_F32, NULL);
    check_cast_bits(NNOPT_BF16, all, 65536, NNOPT_F64, NULL);
    int64_t copies = 0;
    for (uint32_t h = 0; h < 65536; h++)
        if ((h & 0x7f80u) != 0x7f80u || (h & 0x7fu) == 0 || (h & 0x40u) != 0)
            all[copies++] = (uint16_t)h;
    check_cast_bits(NNOPT_BF16, all, copies, NNOPT_BF16, all);
    free(f64), free(f32), free(expect), free(all);
}

/* One f32 sum rounded once: the same bits as the reference, ties included;
 * also with y aliasing a. */
static void test_add_bits(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    enum { N = 100003 };
    double *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    double *y[2] = {malloc(N * sizeof(double)), malloc(N * sizeof(double))};
    assert_true(a && b && y[0] && y[1]);
    for (int i = 0; i < N; i++) {
        a[i] = i < 2 ? 1.0 : nnopt_bf16_to_f32(nnopt_bf16_from_f64(rng_uniform(-3, 3)));
        b[i] = i < 2 ? (2 * i + 1) * 0x1p-8 /* two exact ties */
                     : nnopt_bf16_to_f32(
                           nnopt_bf16_from_f64(rng_uniform(-3, 3) * pow(2, rng_int(-12, 0))));
    }
    const int64_t shape[1] = {N};
    test_backend *both[2] = {&device, &ref_backend};
    const nnopt_op add = {.kind = NNOPT_OP_ADD};
    for (int k = 0; k < 2; k++) {
        nnopt_tensor *in[2] = {test_tensor_new(both[k], NNOPT_BF16, 1, shape, a),
                               test_tensor_new(both[k], NNOPT_BF16, 1, shape, b)};
        nnopt_tensor *out = test_tensor_new(both[k], NNOPT_BF16, 1, shape, NULL);
        assert_int_equal(test_run(both[k], &add, in, 2, &out, 1), NNOPT_OK);
        test_tensor_read(both[k], out, y[k]);
        if (k == 0) { /* in place: y is a */
            assert_int_equal(test_run(both[k], &add, in, 2, &in[0], 1), NNOPT_OK);
            double *aliased = malloc(N * sizeof *aliased);
            assert_non_null(aliased);
            test_tensor_read(both[k], in[0], aliased);
            assert_memory_equal(aliased, y[0], N * sizeof *aliased);
            free(aliased);
        }
        for (int i = 0; i < 2; i++) test_tensor_free(both[k], in[i]);
        test_tensor_free(both[k], out);
    }
    assert_true(y[0][0] == 1.0);      /* 1 + 2^-8: the tie goes down to even */
    assert_true(y[0][1] == 1.015625); /* 1 + 3 2^-8: up to even */
    for (int i = 0; i < N; i++)
        if (y[0][i] != y[1][i])
            fail_msg("element %d: %s %.9g, reference %.9g", i, device.name, y[0][i], y[1][i]);
    free(a), free(b), free(y[0]), free(y[1]);
}

/* The same mask for the same seed (ops.h), and x * mask rounded as the reference. */
static void test_dropout_bits(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const double ps[] = {0.0, 0.25, 0.5, 0.9};
    const tensor_spec x = spec4(3, 5, 17, 19);
    const tensor_spec outs[2] = {x, x};
    const bf16_bound exact = {1, 0.0, 0.0};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        nnopt_op op = {.kind = NNOPT_OP_DROPOUT};
        op.p.dropout = (nnopt_dropout_params){ps[i], 0xfedcba9876543210ull + i};
        bf16_check_op("bf16 dropout", &op, 1, &x, NULL, 2, outs, NULL, &exact);
    }
}

/* ---- ops within bounds (tests/support/bf16_compare.h) ---- */

static void report_worst(const char *what) {
    print_message("# %s: worst error %.3f of its bound\n", what, bf16_compare_worst());
}

static void test_conv(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const conv_case cases[] = {
        {32, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}},   /* LeNet-5 conv1 */
        {32, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}},  /* LeNet-5 conv2 */
        {1, 3, 9, 7, 4, 3, 3, {1, 1, 1, 1, 1}},      /* one image */
        {3, 8, 5, 6, 12, 1, 1, {1, 1, 0, 0, 1}},     /* pointwise */
        {2, 6, 5, 5, 6, 3, 3, {1, 1, 1, 1, 6}},      /* depthwise */
        {4, 32, 16, 16, 32, 3, 3, {2, 2, 1, 1, 32}}, /* depthwise, strided */
        {3, 4, 8, 8, 6, 3, 3, {2, 2, 1, 1, 2}},      /* grouped, strided */
        {2, 4, 6, 6, 4, 1, 1, {2, 2, 0, 0, 2}},      /* grouped pointwise, strided */
        {2, 2, 4, 4, 3, 4, 4, {1, 1, 0, 0, 1}},      /* filter covers the image */
        {3, 2, 3, 5, 2, 3, 2, {3, 1, 2, 1, 1}},      /* padding wider than the stride */
        {8, 64, 32, 32, 64, 3, 3, {1, 1, 1, 1, 1}},  /* ResNet's 3x3, big enough for Winograd */
        {4, 16, 32, 32, 32, 3, 3, {2, 2, 1, 1, 1}},  /* ResNet's strided 3x3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) bf16_check_conv(&cases[i], "fixed");
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
        if (cc.p.pad_h >= cc.r) cc.p.pad_h = (int32_t)cc.r - 1;
        if (cc.p.pad_w >= cc.s) cc.p.pad_w = (int32_t)cc.s - 1;
        cc.p.stride_h = rng_int(1, 3);
        cc.p.stride_w = rng_int(1, 3);
        bf16_check_conv(&cc, "random");
    }
    report_worst("conv2d");
}

static void test_dense(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    bf16_check_dense(128, 400, 120); /* LeNet-5's layers */
    bf16_check_dense(128, 84, 10);
    bf16_check_dense(1, 7, 3);
    bf16_check_dense(3, 1, 5);
    for (int round = 0; round < RANDOM_ROUNDS; round++)
        bf16_check_dense(rng_int(1, 40), rng_int(1, 70), rng_int(1, 50));
    report_worst("dense");
}

static void test_pool(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const nnopt_pool2d_params lenet = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    bf16_check_pool(4, 6, 28, 28, &lenet);
    const nnopt_pool2d_params max3 = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    bf16_check_pool(3, 5, 9, 8, &max3);
    const nnopt_pool2d_params global = {NNOPT_POOL_AVG, 8, 8, 1, 1, 0, 0}; /* ResNet's head */
    bf16_check_pool(4, 64, 8, 8, &global);
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
        bf16_check_pool(rng_int(1, 4), rng_int(1, 5), rng_int(pp.kernel_h, 13),
                        rng_int(pp.kernel_w, 13), &pp);
    }
    report_worst("pool2d");
}

static void test_activations(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int kind = 0; kind < NNOPT_ACT_KIND_COUNT; kind++) {
        bf16_check_act((nnopt_act_kind)kind, 1, 8.0);
        bf16_check_act((nnopt_act_kind)kind, 37, 0.3); /* tanh's small-argument series */
        bf16_check_act((nnopt_act_kind)kind, 100003, 8.0);
    }
    report_worst("act");
}

static void test_batchnorm(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const tensor_spec lenet = spec4(32, 6, 28, 28), dense = spec2(64, 120);
    bf16_check_batchnorm(&lenet);
    bf16_check_batchnorm(&dense);
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        tensor_spec x = spec4(rng_int(1, 6), rng_int(1, 9), rng_int(1, 9), rng_int(1, 9));
        if (x.shape[0] * x.shape[2] * x.shape[3] < 2) x.shape[0] = 2;
        x.range = 3;
        bf16_check_batchnorm(&x);
    }
    report_worst("batchnorm");
}

static void test_softmax_xent(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    bf16_check_softmax_xent(128, 10); /* LeNet-5's logits */
    bf16_check_softmax_xent(256, 1000);
    for (int round = 0; round < RANDOM_ROUNDS; round++)
        bf16_check_softmax_xent(rng_int(1, 20), rng_int(2, 12));
    report_worst("softmax_xent");
}

/* ---- the precision technique end to end ---- */

static char fixture[256];

static const char *const pipeline_ini =
    "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n"
    "[backend]\nplugin = %s\n"
    "[model net]\nplugin = lenet5\nchannels = 4,8\ndense = 32\nactivation = relu\ndtype = f32\n"
    "[technique to_bf16]\nplugin = precision\ndtype = bf16\n"
    "[technique after_training]\nplugin = precision\ndtype = bf16\nstage = inference\n"
    "[training]\nepochs = 2\nbatch = 32\nlr = 0.05\nmomentum = 0.9\nseed = 3\nprogress = off\n"
    "[run f32]\nmodel = net\n"
    "[run bf16]\nmodel = net\ninit_from = f32\ntechniques = to_bf16\nepochs = 0\n"
    "[run f32_then_bf16]\nmodel = net\ntechniques = after_training\n";

static const nnopt_run_result *find_result(const nnopt_experiment *e, const nnopt_run_result *r,
                                           const char *name) {
    for (int i = 0; i < e->n_runs; i++)
        if (!strcmp(r[i].run, name)) return &r[i];
    fail_msg("no run %s", name);
    return NULL;
}

/* Trained in f32 on the device, evaluated in bf16 on it: every op of the
 * evaluation runs there in bf16 (no device fallback, no ops on the CPU), and
 * the accuracy is f32's within 2 of the 200 test images (the logits move by
 * about 2^-8 relative; only near-ties flip). */
static void test_precision_technique(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    char ini[512], dirset[400], outset[400];
    snprintf(ini, sizeof ini, "%s/cuda_bf16.ini", fixture);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, pipeline_ini, device_name);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", fixture);
    snprintf(outset, sizeof outset, "experiment.output=%s/runs", fixture);
    const char *overrides[2] = {dirset, outset};
    nnopt_experiment e;
    nnopt_data data;
    nnopt_error err = {0};
    if (nnopt_experiment_load(ini, overrides, 2, &e, &err) != NNOPT_OK) fail_msg("%s", err.message);
    if (nnopt_data_load(e.data, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_run_result r[NNOPT_MAX_RUNS];
    if (nnopt_pipeline_run(&e, &data, r, &err) != NNOPT_OK) fail_msg("%s", err.message);
    const nnopt_run_result *f32 = find_result(&e, r, "f32");
    const char *bf16_runs[2] = {"bf16", "f32_then_bf16"};
    for (int i = 0; i < 2; i++) {
        const nnopt_run_result *run = find_result(&e, r, bf16_runs[i]);
        print_message("# %s on %s: accuracy %.3f (f32 %.3f)%s%s\n", run->run, run->backend,
                      run->test_accuracy, f32->test_accuracy, run->note[0] ? "; " : "", run->note);
        assert_string_equal(run->dtype, "bf16");
        assert_string_equal(run->backend, device_name);
        assert_string_equal(run->note, "");
        for (int c = 0; c < run->n_columns; c++)
            if (!strcmp(run->column_names[c], "ops_on_cpu"))
                fail_msg("%s: ops on the CPU: %s", run->run, run->column_values[c]);
        if (f32->test_accuracy < 0.8 || fabs(run->test_accuracy - f32->test_accuracy) > 2.0 / 200)
            fail_msg("%s: f32 accuracy %.3f, bf16 %.3f", run->run, f32->test_accuracy,
                     run->test_accuracy);
    }
    for (int i = 0; i < e.n_runs; i++) nnopt_run_result_free(&r[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

/* ---- setup ---- */

static int open_backends(void **state) {
    (void)state;
    if (!gpu_available) return 0;
    if (test_backend_open(device_name, settings, &device) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    bf16_compare_backends(&device, &ref_backend);
    if (fixture_tmpdir(fixture, sizeof fixture, "cuda_bf16") != 0) return -1;
    if (idx_fixture_write(fixture, 600, 200, 5) != 0) return -1;
    char description[384];
    device.vt->describe(device.ctx, description, sizeof description);
    printf("# %s: %s\n", device_name, description);
    return 0;
}

static int close_backends(void **state) {
    (void)state;
    if (device.vt != NULL) test_backend_close(&device);
    if (ref_backend.vt != NULL) test_backend_close(&ref_backend);
    if (fixture[0]) fixture_rmdir(fixture);
    return 0;
}

static int run_numerics(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_storage), cmocka_unit_test(test_supports_and_refusals),
        cmocka_unit_test(test_cast_bits),      cmocka_unit_test(test_add_bits),
        cmocka_unit_test(test_dropout_bits),   cmocka_unit_test(test_conv),
        cmocka_unit_test(test_dense),          cmocka_unit_test(test_pool),
        cmocka_unit_test(test_activations),    cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_softmax_xent),   cmocka_unit_test(test_precision_technique),
    };
    const int failed = cmocka_run_group_tests_name("cuda backend in bf16 vs reference", tests,
                                                   open_backends, close_backends);
    if (failed == 0 && !gpu_available) {
        printf("SKIP: no CUDA device (%s): bf16 numerics not checked\n", no_gpu_reason);
        return EXIT_SKIPPED;
    }
    return failed;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "numerics";
    if (strcmp(mode, "rounding") == 0) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_rounding_f32),
            cmocka_unit_test(test_rounding_f64),
        };
        return cmocka_run_group_tests_name("cuda bf16 rounding on the host", tests, NULL, NULL);
    }
    if (strcmp(mode, "numerics") != 0) {
        fprintf(stderr, "usage: test_cuda_bf16 [rounding | numerics [key=value]...]\n");
        return 2;
    }
    for (int i = 2; i < argc && i - 2 < MAX_SETTINGS; i++) settings[i - 2] = argv[i];
    const char *stand_in = getenv("NNOPT_TEST_CUDA_AS");
    if (stand_in != NULL && stand_in[0] != '\0') {
        device_name = stand_in;
        gpu_available = 1;
        printf("# NNOPT_TEST_CUDA_AS: checking backend '%s' instead of cuda\n", stand_in);
        return run_numerics();
    }
    const nnopt_status status = probe_cuda(no_gpu_reason, sizeof no_gpu_reason);
    gpu_available = status == NNOPT_OK;
    const char *prefix = "cuda backend: no CUDA device: ";
    if (!gpu_available) {
        if (status != NNOPT_STATUS_DEVICE || strncmp(no_gpu_reason, prefix, strlen(prefix)) != 0) {
            /* Not the clean no-GPU failure: a broken build or bad settings. */
            fprintf(stderr, "test_cuda_bf16: opening the cuda backend failed: %s\n", no_gpu_reason);
            return 1;
        }
        memmove(no_gpu_reason, no_gpu_reason + strlen(prefix),
                strlen(no_gpu_reason + strlen(prefix)) + 1);
    }
    return run_numerics();
}
