/* Hand-computed numeric cases for every backend op, in f32 and f64.
 * Usage: test_ref_ops [BACKEND]  (default "cpu"); any backend must give the
 * same answers within rounding, so other backends reuse this test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "test_backend.h"

static const char *backend_name = "cpu";
static test_backend backend;

static const nnopt_dtype float_dtypes[] = {NNOPT_F32, NNOPT_F64};
#define N_FLOAT_DTYPES 2

static int open_backend(void **state) {
    (void)state;
    return test_backend_open(backend_name, NULL, &backend);
}

static int close_backend(void **state) {
    (void)state;
    test_backend_close(&backend);
    return 0;
}

static nnopt_tensor *tensor(nnopt_dtype dtype, int ndim, const int64_t *shape,
                            const double *values) {
    nnopt_tensor *t = test_tensor_new(&backend, dtype, ndim, shape, values);
    assert_non_null(t);
    return t;
}

/* Relative to max(1, |expected|): f32 results carry the rounding of their
 * f32 inputs (0.1f and the like), f64 ones only a few ulps. */
static double tolerance(nnopt_dtype dtype) {
    return dtype == NNOPT_F32 ? 1e-5 : 1e-12;
}

static void expect_values(const nnopt_tensor *t, const double *expected, const char *what) {
    const int64_t count = nnopt_tensor_numel(t);
    double *actual = malloc((size_t)count * sizeof *actual);
    assert_non_null(actual);
    test_tensor_read(&backend, t, actual);
    for (int64_t i = 0; i < count; i++) {
        const double allowed = tolerance(t->dtype) * fmax(1.0, fabs(expected[i]));
        if (!(fabs(actual[i] - expected[i]) <= allowed)) {
            const double got = actual[i];
            free(actual);
            fail_msg("%s [%s] element %lld: got %.17g, expected %.17g", what,
                     nnopt_dtype_name(t->dtype), (long long)i, got, expected[i]);
        }
    }
    free(actual);
}

static void run_ok(const nnopt_op *op, nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                   int n_out) {
    assert_int_equal(test_run(&backend, op, in, n_in, out, n_out), NNOPT_OK);
}

static void free_all(nnopt_tensor **tensors, int count) {
    for (int i = 0; i < count; i++) test_tensor_free(&backend, tensors[i]);
}

/* ---- conv2d ------------------------------------------------------------ */

static const double image_3x3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const double filter_2x2[4] = {1, 2, 3, 4};

/* Padded input (pad 1) is a 5x5 ring of zeros around 1..9; with stride 2 the
 * four windows see [0 0;0 1], [0 0;2 3], [0 4;0 7] and [5 6;8 9]. */
static void test_conv2d_stride_pad(void **state) {
    (void)state;
    nnopt_op op = {.kind = NNOPT_OP_CONV2D,
                   .p.conv2d = {.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1, .groups = 1}};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, image_3x3);
        nnopt_tensor *w = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, filter_2x2);
        nnopt_tensor *b = tensor(dt, 1, (int64_t[]){1}, (double[]){0.5});
        nnopt_tensor *y = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, NULL);
        op.kind = NNOPT_OP_CONV2D;
        run_ok(&op, (nnopt_tensor *[]){x, w, b}, 3, &y, 1);
        expect_values(y, (double[]){4.5, 18.5, 36.5, 77.5}, "conv2d with bias");
        run_ok(&op, (nnopt_tensor *[]){x, w}, 2, &y, 1);
        expect_values(y, (double[]){4, 18, 36, 77}, "conv2d without bias");

        /* Backward through the same geometry with dy = [1 2;3 4]: each input
         * belongs to exactly one window (stride == kernel). */
        nnopt_tensor *dy = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, (double[]){1, 2, 3, 4});
        nnopt_tensor *dx = tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, NULL);
        nnopt_tensor *dw = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, NULL);
        op.kind = NNOPT_OP_CONV2D_BWD_DATA;
        run_ok(&op, (nnopt_tensor *[]){dy, w}, 2, &dx, 1);
        expect_values(dx, (double[]){4, 6, 8, 6, 4, 8, 12, 12, 16}, "conv2d_bwd_data stride 2");
        op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
        run_ok(&op, (nnopt_tensor *[]){x, dy}, 2, &dw, 1);
        expect_values(dw, (double[]){20, 36, 36, 64}, "conv2d_bwd_filter stride 2");
        free_all((nnopt_tensor *[]){x, w, b, y, dy, dx, dw}, 7);
    }
}

/* Stride 1, no padding, dy all ones: dx counts how often each input meets
 * each tap, dw sums the 2x2 blocks of x. */
static void test_conv2d_backward_valid(void **state) {
    (void)state;
    nnopt_op op = {.kind = NNOPT_OP_CONV2D_BWD_DATA,
                   .p.conv2d = {.stride_h = 1, .stride_w = 1, .groups = 1}};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, image_3x3);
        nnopt_tensor *w = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, filter_2x2);
        nnopt_tensor *dy = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, (double[]){1, 1, 1, 1});
        nnopt_tensor *dx = tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, NULL);
        nnopt_tensor *dw = tensor(dt, 4, (int64_t[]){1, 1, 2, 2}, NULL);
        op.kind = NNOPT_OP_CONV2D_BWD_DATA;
        run_ok(&op, (nnopt_tensor *[]){dy, w}, 2, &dx, 1);
        expect_values(dx, (double[]){1, 3, 2, 4, 10, 6, 3, 7, 4}, "conv2d_bwd_data");
        if (backend.vt->supports(backend.ctx, NNOPT_OP_CONV2D_BWD_DATA_ADD, dt)) {
            op.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD; /* adds the same into what dx holds */
            run_ok(&op, (nnopt_tensor *[]){dy, w}, 2, &dx, 1);
            expect_values(dx, (double[]){2, 6, 4, 8, 20, 12, 6, 14, 8}, "conv2d_bwd_data_add");
            /* masked: added again where the relu output y > 0, 0 elsewhere (y = 0 too) */
            if (backend.vt->supports(backend.ctx, NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED, dt)) {
                nnopt_tensor *y =
                    tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, (double[]){1, 0, 2, 0.5, 0, 3, 0, 1, 0});
                op.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
                run_ok(&op, (nnopt_tensor *[]){dy, w, y}, 3, &dx, 1);
                expect_values(dx, (double[]){3, 0, 6, 12, 0, 18, 0, 21, 0},
                              "conv2d_bwd_data_add_masked");
                test_tensor_free(&backend, y);
            }
        } else {
            print_message("# %s has no conv2d_bwd_data_add\n", backend_name);
        }
        op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
        run_ok(&op, (nnopt_tensor *[]){x, dy}, 2, &dw, 1);
        expect_values(dw, (double[]){12, 16, 24, 28}, "conv2d_bwd_filter");
        free_all((nnopt_tensor *[]){x, w, dy, dx, dw}, 5);
    }
}

/* 1x1 convolutions over two channels: groups 1 mixes them, groups 2
 * (depthwise) scales each on its own. */
static void test_conv2d_channels_and_groups(void **state) {
    (void)state;
    const double x_values[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 4, (int64_t[]){1, 2, 2, 2}, x_values);
        nnopt_tensor *y = tensor(dt, 4, (int64_t[]){1, 2, 2, 2}, NULL);
        nnopt_tensor *mix = tensor(dt, 4, (int64_t[]){2, 2, 1, 1}, (double[]){1, 0.5, -1, 2});
        nnopt_op op = {.kind = NNOPT_OP_CONV2D,
                       .p.conv2d = {.stride_h = 1, .stride_w = 1, .groups = 1}};
        run_ok(&op, (nnopt_tensor *[]){x, mix}, 2, &y, 1);
        expect_values(y, (double[]){6, 12, 18, 24, 19, 38, 57, 76}, "conv2d channel mix");

        nnopt_tensor *depthwise = tensor(dt, 4, (int64_t[]){2, 1, 1, 1}, (double[]){2, -1});
        op.p.conv2d.groups = 2;
        run_ok(&op, (nnopt_tensor *[]){x, depthwise}, 2, &y, 1);
        expect_values(y, (double[]){2, 4, 6, 8, -10, -20, -30, -40}, "conv2d depthwise");

        /* bias gradient of a [2,2,1,2] dy: sums over n and the spatial axes */
        nnopt_tensor *dy =
            tensor(dt, 4, (int64_t[]){2, 2, 1, 2}, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
        nnopt_tensor *db = tensor(dt, 1, (int64_t[]){2}, NULL);
        nnopt_op bias_op = {.kind = NNOPT_OP_BIAS_BWD};
        run_ok(&bias_op, &dy, 1, &db, 1);
        expect_values(db, (double[]){14, 22}, "bias_bwd 4-D");
        free_all((nnopt_tensor *[]){x, y, mix, depthwise, dy, db}, 6);
    }
}

/* ---- dense --------------------------------------------------------------- */

static void test_dense(void **state) {
    (void)state;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
        nnopt_tensor *w = tensor(dt, 2, (int64_t[]){2, 3}, (double[]){1, 0, -1, 2, 1, 0});
        nnopt_tensor *b = tensor(dt, 1, (int64_t[]){2}, (double[]){0.5, -1});
        nnopt_tensor *y = tensor(dt, 2, (int64_t[]){2, 2}, NULL);
        nnopt_op op = {.kind = NNOPT_OP_DENSE};
        run_ok(&op, (nnopt_tensor *[]){x, w, b}, 3, &y, 1);
        expect_values(y, (double[]){-1.5, 3, -1.5, 12}, "dense with bias");
        run_ok(&op, (nnopt_tensor *[]){x, w}, 2, &y, 1);
        expect_values(y, (double[]){-2, 4, -2, 13}, "dense without bias");

        nnopt_tensor *dy = tensor(dt, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
        nnopt_tensor *dx = tensor(dt, 2, (int64_t[]){2, 3}, NULL);
        nnopt_tensor *dw = tensor(dt, 2, (int64_t[]){2, 3}, NULL);
        nnopt_tensor *db = tensor(dt, 1, (int64_t[]){2}, NULL);
        op.kind = NNOPT_OP_DENSE_BWD_DATA;
        run_ok(&op, (nnopt_tensor *[]){dy, w}, 2, &dx, 1);
        expect_values(dx, (double[]){5, 2, -1, 11, 4, -3}, "dense_bwd_data");
        op.kind = NNOPT_OP_DENSE_BWD_WEIGHT;
        run_ok(&op, (nnopt_tensor *[]){x, dy}, 2, &dw, 1);
        expect_values(dw, (double[]){13, 17, 21, 18, 24, 30}, "dense_bwd_weight");
        op.kind = NNOPT_OP_BIAS_BWD;
        run_ok(&op, &dy, 1, &db, 1);
        expect_values(db, (double[]){4, 6}, "bias_bwd 2-D");
        free_all((nnopt_tensor *[]){x, w, b, y, dy, dx, dw, db}, 8);
    }
}

/* ---- pool2d -------------------------------------------------------------- */

static void run_pool(const nnopt_pool2d_params *params, nnopt_dtype dt, int64_t h, int64_t w,
                     const double *x_values, int64_t p, int64_t q, const double *expected_y,
                     const double *dy_values, const double *expected_dx, const char *what) {
    nnopt_tensor *x = tensor(dt, 4, (int64_t[]){1, 1, h, w}, x_values);
    nnopt_tensor *y = tensor(dt, 4, (int64_t[]){1, 1, p, q}, NULL);
    nnopt_tensor *dy = tensor(dt, 4, (int64_t[]){1, 1, p, q}, dy_values);
    nnopt_tensor *dx = tensor(dt, 4, (int64_t[]){1, 1, h, w}, NULL);
    nnopt_op op = {.kind = NNOPT_OP_POOL2D, .p.pool2d = *params};
    run_ok(&op, &x, 1, &y, 1);
    expect_values(y, expected_y, what);
    op.kind = NNOPT_OP_POOL2D_BWD;
    run_ok(&op, (nnopt_tensor *[]){x, y, dy}, 3, &dx, 1);
    expect_values(dx, expected_dx, what);
    free_all((nnopt_tensor *[]){x, y, dy, dx}, 4);
}

static void test_pool2d(void **state) {
    (void)state;
    double image_4x4[16];
    for (int i = 0; i < 16; i++) image_4x4[i] = i + 1;
    const nnopt_pool2d_params max_2x2 = {NNOPT_POOL_MAX, 2, 2, 2, 2, 0, 0};
    const nnopt_pool2d_params avg_2x2 = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    const nnopt_pool2d_params max_3x3_pad = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    const nnopt_pool2d_params avg_3x3_pad = {NNOPT_POOL_AVG, 3, 3, 2, 2, 1, 1};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        run_pool(&max_2x2, dt, 4, 4, image_4x4, 2, 2, (double[]){6, 8, 14, 16},
                 (double[]){1, 2, 3, 4}, (double[]){0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4},
                 "max pool 2x2");
        run_pool(&avg_2x2, dt, 4, 4, image_4x4, 2, 2, (double[]){3.5, 5.5, 11.5, 13.5},
                 (double[]){4, 8, 12, 16},
                 (double[]){1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}, "avg pool 2x2");
        /* Overlapping windows over zero padding: padding never wins a max
         * and counts as zero (but is still in the divisor) for avg. */
        run_pool(&max_3x3_pad, dt, 3, 3, image_3x3, 2, 2, (double[]){5, 6, 8, 9},
                 (double[]){1, 2, 3, 4}, (double[]){0, 0, 0, 0, 1, 2, 0, 3, 4},
                 "max pool 3x3 pad 1");
        run_pool(&avg_3x3_pad, dt, 3, 3, image_3x3, 2, 2,
                 (double[]){12.0 / 9, 16.0 / 9, 24.0 / 9, 28.0 / 9}, (double[]){9, 18, 27, 36},
                 (double[]){1, 3, 2, 4, 10, 6, 3, 7, 4}, "avg pool 3x3 pad 1");
        /* All equal: the first maximum takes the whole gradient. */
        run_pool(&max_2x2, dt, 2, 2, (double[]){1, 1, 1, 1}, 1, 1, (double[]){1}, (double[]){5},
                 (double[]){5, 0, 0, 0}, "max pool tie");
    }
}

/* ---- activations --------------------------------------------------------- */

#define N_POINTS 6
static const double act_x[N_POINTS] = {-2, -0.5, 0, 0.5, 3, 7};

typedef struct act_case {
    nnopt_act_kind kind;
    double y[N_POINTS];     /* act(x) */
    double slope[N_POINTS]; /* act'(x) */
} act_case;

/* Values from an independent double-precision evaluation of the formulas. */
static const act_case act_cases[] = {
    {NNOPT_ACT_IDENTITY, {-2, -0.5, 0, 0.5, 3, 7}, {1, 1, 1, 1, 1, 1}},
    {NNOPT_ACT_RELU, {0, 0, 0, 0.5, 3, 7}, {0, 0, 0, 1, 1, 1}},
    {NNOPT_ACT_RELU6, {0, 0, 0, 0.5, 3, 6}, {0, 0, 0, 1, 1, 0}},
    {NNOPT_ACT_GELU_TANH,
     {-0.04540230591222494, -0.15428599017485606, 0.0, 0.34571400982514394, 2.996362607918227,
      6.999999999999997},
     {-0.08609925662361825, 0.13263009646535764, 0.5, 0.8673699035346424, 1.0115841666309695,
      1.0000000000000278}},
    {NNOPT_ACT_GELU_ERF,
     {-0.04550026389635842, -0.15426876936299344, 0.0, 0.34573123063700656, 2.99595030590511,
      6.999999999991041},
     {-0.08523180107819692, 0.13250487534383712, 0.5, 0.8674951246561629, 1.011945647204184,
      1.0000000000626632}},
    {NNOPT_ACT_TANH,
     {-0.9640275800758169, -0.46211715726000974, 0.0, 0.46211715726000974, 0.9950547536867305,
      0.9999983369439447},
     {0.07065082485316443, 0.7864477329659274, 1.0, 0.7864477329659274, 0.009866037165440211,
      3.3261093448366807e-06}},
    {NNOPT_ACT_SIGMOID,
     {0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.9525741268224334,
      0.9990889488055994},
     {0.1049935854035065, 0.2350037122015945, 0.25, 0.2350037122015945, 0.045176659730912,
      0.000910221180121784}},
};

static void test_activations(void **state) {
    (void)state;
    const double dy_values[N_POINTS] = {1, -2, 3, 0.5, 1, 2};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        const int64_t shape[2] = {2, 3};
        nnopt_tensor *x = tensor(dt, 2, shape, act_x);
        nnopt_tensor *y = tensor(dt, 2, shape, NULL);
        nnopt_tensor *dy = tensor(dt, 2, shape, dy_values);
        nnopt_tensor *dx = tensor(dt, 2, shape, NULL);
        for (size_t c = 0; c < sizeof act_cases / sizeof act_cases[0]; c++) {
            const act_case *ac = &act_cases[c];
            nnopt_op op = {.kind = NNOPT_OP_ACT, .p.act = {ac->kind}};
            run_ok(&op, &x, 1, &y, 1);
            expect_values(y, ac->y, nnopt_act_kind_name(ac->kind));
            double expected_dx[N_POINTS];
            for (int i = 0; i < N_POINTS; i++) expected_dx[i] = dy_values[i] * ac->slope[i];
            op.kind = NNOPT_OP_ACT_BWD;
            run_ok(&op, (nnopt_tensor *[]){x, y, dy}, 3, &dx, 1);
            expect_values(dx, expected_dx, nnopt_act_kind_name(ac->kind));
        }
        free_all((nnopt_tensor *[]){x, y, dy, dx}, 4);
    }
}

/* ---- softmax cross-entropy ----------------------------------------------- */

static void run_xent(nnopt_dtype dt, const double *logits_values, int soft,
                     const double *target_values, double temperature, double expected_loss,
                     const double *expected_dlogits, const char *what) {
    nnopt_tensor *logits = tensor(dt, 2, (int64_t[]){2, 3}, logits_values);
    nnopt_tensor *target = soft ? tensor(dt, 2, (int64_t[]){2, 3}, target_values)
                                : tensor(NNOPT_I32, 1, (int64_t[]){2}, target_values);
    nnopt_tensor *loss = tensor(dt, 1, (int64_t[]){1}, NULL);
    nnopt_tensor *dlogits = tensor(dt, 2, (int64_t[]){2, 3}, NULL);
    nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT, .p.xent = {soft, temperature}};
    run_ok(&op, (nnopt_tensor *[]){logits, target}, 2, (nnopt_tensor *[]){loss, dlogits}, 2);
    expect_values(loss, &expected_loss, what);
    expect_values(dlogits, expected_dlogits, what);
    free_all((nnopt_tensor *[]){logits, target, loss, dlogits}, 4);
}

static void test_softmax_xent(void **state) {
    (void)state;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        /* Row 0: log(1 + e^-1 + e^-2); row 1: log 3; dlogits = (p - onehot) / N. */
        run_xent(dt, (double[]){1, 2, 3, 1, 1, 1}, 0, (double[]){2, 0}, 1.0, 0.7531091265562453,
                 (double[]){0.04501528658519022, 0.12236423552739879, -0.16737952211258916,
                            -0.33333333333333337, 0.1666666666666666, 0.1666666666666666},
                 "xent labels");
        run_xent(dt, (double[]){1, 2, 3, -1, 0.5, 2}, 0, (double[]){1, 2}, 0.5, 1.0969386960114487,
                 (double[]){0.015876239976466772, -0.8826895721738016, 0.8668133321973353,
                            0.0023556330807966807, 0.04731415522182405, -0.04966978830262048},
                 "xent labels T=0.5");
        run_xent(dt, (double[]){1, 2, 3, -1, 0.5, 2}, 1, (double[]){0.2, 0.3, 0.5, 1, 0, 0}, 2.0,
                 1.5291227072485223,
                 (double[]){-0.003419069193538113, 0.0017989714296245962, 0.0016200977639135028,
                            -0.2170995882132714, 0.06965017229906825, 0.14744941591420313},
                 "xent soft targets T=2");
        /* Huge logits: subtracting the max keeps exp finite. */
        run_xent(dt, (double[]){1000, 0, -1000, 500, 500, 500}, 0, (double[]){0, 1}, 1.0,
                 (0.0 + log(3.0)) / 2, (double[]){0, 0, 0, 1.0 / 6, 1.0 / 6 - 0.5, 1.0 / 6},
                 "xent large logits");
    }
}

/* ---- optimizers ---------------------------------------------------------- */

static const double param0[3] = {1, -2, 0.5}, grad0[3] = {0.5, 0.25, -1},
                    velocity0[3] = {0.1, -0.1, 0};

static void test_sgd(void **state) {
    (void)state;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        const int64_t shape[1] = {3};
        nnopt_tensor *param = tensor(dt, 1, shape, param0);
        nnopt_tensor *grad = tensor(dt, 1, shape, grad0);
        nnopt_tensor *velocity = tensor(dt, 1, shape, velocity0);

        /* Plain SGD, no velocity tensor at all. */
        nnopt_op op = {.kind = NNOPT_OP_SGD_UPDATE, .p.sgd = {.lr = 0.1}};
        run_ok(&op, (nnopt_tensor *[]){param, grad}, 2, NULL, 0);
        expect_values(param, (double[]){0.95, -2.025, 0.6}, "sgd plain");

        /* g = grad + 0.01 param; v = 0.9 v + g; param -= 0.1 v */
        test_tensor_write(&backend, param, param0);
        op.p.sgd = (nnopt_sgd_params){.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01};
        run_ok(&op, (nnopt_tensor *[]){param, grad, velocity}, 3, NULL, 0);
        expect_values(param, (double[]){0.94, -2.014, 0.5995}, "sgd momentum param");
        expect_values(velocity, (double[]){0.6, 0.14, -0.995}, "sgd momentum velocity");

        /* Nesterov: param -= 0.1 (g + 0.9 v) */
        test_tensor_write(&backend, param, param0);
        test_tensor_write(&backend, velocity, velocity0);
        op.p.sgd.nesterov = 1;
        run_ok(&op, (nnopt_tensor *[]){param, grad, velocity}, 3, NULL, 0);
        expect_values(param, (double[]){0.895, -2.0356, 0.68905}, "sgd nesterov param");
        expect_values(velocity, (double[]){0.6, 0.14, -0.995}, "sgd nesterov velocity");
        free_all((nnopt_tensor *[]){param, grad, velocity}, 3);
    }
}

static void test_adam(void **state) {
    (void)state;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        const int64_t shape[1] = {2};
        nnopt_tensor *param = tensor(dt, 1, shape, (double[]){1, -2});
        nnopt_tensor *grad = tensor(dt, 1, shape, (double[]){0.5, -0.25});
        nnopt_tensor *m = tensor(dt, 1, shape, NULL);
        nnopt_tensor *v = tensor(dt, 1, shape, NULL);
        nnopt_tensor *state_in[4] = {param, grad, m, v};

        /* First step from zero moments: the bias-corrected update is
         * lr * g / (|g| + eps), i.e. almost exactly lr * sign(g). */
        nnopt_op op = {.kind = NNOPT_OP_ADAM_UPDATE,
                       .p.adam = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .step = 1}};
        run_ok(&op, state_in, 4, NULL, 0);
        expect_values(param, (double[]){0.900000002, -1.9000000039999998}, "adam step 1 param");
        expect_values(m, (double[]){0.05, -0.025}, "adam step 1 m");
        expect_values(v, (double[]){0.00025, 6.25e-05}, "adam step 1 v");

        /* Step 3 from given moments, with L2 weight decay 0.1 in the gradient. */
        test_tensor_write(&backend, param, (double[]){1, -2});
        test_tensor_write(&backend, m, (double[]){0.1, 0});
        test_tensor_write(&backend, v, (double[]){0.01, 0.02});
        op.p.adam.weight_decay = 0.1;
        op.p.adam.step = 3;
        run_ok(&op, state_in, 4, NULL, 0);
        expect_values(param, (double[]){0.9702151625098552, -1.993601190445963}, "adam step 3");
        expect_values(m, (double[]){0.15, -0.045}, "adam step 3 m");
        expect_values(v, (double[]){0.01035, 0.0201825}, "adam step 3 v");
        free_all(state_in, 4);
    }
}

/* ---- add and cast -------------------------------------------------------- */

static void test_add(void **state) {
    (void)state;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        const int64_t shape[2] = {1, 3};
        nnopt_tensor *a = tensor(dt, 2, shape, (double[]){1, 2, 3});
        nnopt_tensor *b = tensor(dt, 2, shape, (double[]){0.5, -2, 10});
        nnopt_tensor *y = tensor(dt, 2, shape, NULL);
        nnopt_op op = {.kind = NNOPT_OP_ADD};
        run_ok(&op, (nnopt_tensor *[]){a, b}, 2, &y, 1);
        expect_values(y, (double[]){1.5, 0, 13}, "add");
        run_ok(&op, (nnopt_tensor *[]){a, b}, 2, &a, 1); /* in place: y is a */
        expect_values(a, (double[]){1.5, 0, 13}, "add in place");
        free_all((nnopt_tensor *[]){a, b, y}, 3);
    }
}

/* Values of t as expected, where a NaN expected means a NaN read. */
static void expect_values_nan(const nnopt_tensor *t, const double *expected, const char *what) {
    const int64_t count = nnopt_tensor_numel(t);
    double actual[16], finite[16];
    assert_true(count <= 16);
    test_tensor_read(&backend, t, actual);
    for (int64_t i = 0; i < count; i++) {
        if (isnan(expected[i]) && !isnan(actual[i]))
            fail_msg("%s [%s] element %lld: got %.17g, expected NaN", what,
                     nnopt_dtype_name(t->dtype), (long long)i, actual[i]);
        finite[i] = isnan(expected[i]) ? 0 : expected[i];
    }
    nnopt_tensor *masked = tensor(t->dtype, t->ndim, t->shape, NULL);
    for (int64_t i = 0; i < count; i++) actual[i] = isnan(expected[i]) ? 0 : actual[i];
    test_tensor_write(&backend, masked, actual);
    expect_values(masked, finite, what);
    test_tensor_free(&backend, masked);
}

/* batchnorm_add_relu = relu(batchnorm(x) + r). One channel of x = {1, 3, 5,
 * 7} (mean 4, variance 5), gamma 2 and beta 1 make batchnorm(x) =
 * 1 + 2 (x - 4) / sqrt(5 + eps) = {-1.683, 0.106, 1.894, 3.683} (eps 1e-5);
 * r pushes two of them across 0. */
static void check_batchnorm_add_relu(nnopt_dtype dt) {
    const int64_t x_shape[4] = {4, 1, 1, 1}, c_shape[1] = {1};
    nnopt_tensor *x = tensor(dt, 4, x_shape, (double[]){1, 3, 5, 7});
    nnopt_tensor *r = tensor(dt, 4, x_shape, (double[]){2, -1, -2, NAN});
    nnopt_tensor *gamma = tensor(dt, 1, c_shape, (double[]){2});
    nnopt_tensor *beta = tensor(dt, 1, c_shape, (double[]){1});
    nnopt_tensor *mean = tensor(dt, 1, c_shape, (double[]){0});
    nnopt_tensor *var = tensor(dt, 1, c_shape, (double[]){1});
    nnopt_tensor *y = tensor(dt, 4, x_shape, NULL);
    nnopt_tensor *save_mean = tensor(dt, 1, c_shape, NULL);
    nnopt_tensor *save_invstd = tensor(dt, 1, c_shape, NULL);
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM_ADD_RELU, .p.bn = {1e-5, 0.5, 1}};
    const double s = 2 / sqrt(5 + 1e-5);
    run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, mean, var, r}, 6,
           (nnopt_tensor *[]){y, save_mean, save_invstd}, 3);
    expect_values_nan(y, (double[]){1 - 3 * s + 2, 0, 0, NAN}, "batchnorm_add_relu (training)");
    expect_values(save_mean, (double[]){4}, "batchnorm_add_relu's saved mean");
    /* inference, with the running statistics just updated: mean 2, variance
     * 0.5 + 0.5 * 20 / 3 */
    op.p.bn.training = 0;
    const double si = 2 / sqrt(0.5 + 10.0 / 3 + 1e-5);
    run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, mean, var, r}, 6, &y, 1);
    expect_values_nan(y, (double[]){1 - si + 2, 1 + si - 1, 1 + 3 * si - 2, NAN},
                      "batchnorm_add_relu (inference)");
    free_all((nnopt_tensor *[]){x, r, gamma, beta, mean, var, y, save_mean, save_invstd}, 9);
}

/* The fused ops are the plain op, then relu (x < 0 ? 0 : x, so a NaN stays). */
static void test_fused_relu_ops(void **state) {
    (void)state;
    if (!backend.vt->supports(backend.ctx, NNOPT_OP_CONV2D_RELU, NNOPT_F32) ||
        !backend.vt->supports(backend.ctx, NNOPT_OP_ADD_RELU, NNOPT_F32)) {
        print_message("# %s has no conv2d_relu / add_relu (the core runs relu apart then)\n",
                      backend_name);
        skip();
    }
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        const int64_t x_shape[4] = {1, 1, 2, 2}, w_shape[4] = {2, 1, 1, 1}, b_shape[1] = {2};
        const int64_t y_shape[4] = {1, 2, 2, 2};
        nnopt_tensor *x = tensor(dt, 4, x_shape, (double[]){1, -2, 3, NAN});
        nnopt_tensor *w = tensor(dt, 4, w_shape, (double[]){1, -1});
        nnopt_tensor *b = tensor(dt, 1, b_shape, (double[]){0.5, -0.5});
        nnopt_tensor *y = tensor(dt, 4, y_shape, NULL);
        nnopt_op conv = {.kind = NNOPT_OP_CONV2D_RELU,
                         .p.conv2d = {.stride_h = 1, .stride_w = 1, .groups = 1}};
        run_ok(&conv, (nnopt_tensor *[]){x, w, b}, 3, &y, 1);
        expect_values_nan(y, (double[]){1.5, 0, 3.5, NAN, 0, 1.5, 0, NAN}, "conv2d_relu");
        run_ok(&conv, (nnopt_tensor *[]){x, w}, 2, &y, 1);
        expect_values_nan(y, (double[]){1, 0, 3, NAN, 0, 2, 0, NAN}, "conv2d_relu without bias");
        if (backend.vt->supports(backend.ctx, NNOPT_OP_CONV2D_ADD_RELU, dt)) {
            nnopt_tensor *r = tensor(dt, 4, y_shape, (double[]){-2, 1, 0, 0, 1, -2, 4, 0});
            conv.kind = NNOPT_OP_CONV2D_ADD_RELU; /* relu(conv + b + r) */
            run_ok(&conv, (nnopt_tensor *[]){x, w, b, r}, 4, &y, 1);
            expect_values_nan(y, (double[]){0, 0, 3.5, NAN, 0, 0, 0.5, NAN}, "conv2d_add_relu");
            conv.kind = NNOPT_OP_CONV2D_RELU;
            test_tensor_free(&backend, r);
        }

        const int64_t shape[2] = {1, 4};
        nnopt_tensor *a = tensor(dt, 2, shape, (double[]){1, 2, -3, NAN});
        nnopt_tensor *c = tensor(dt, 2, shape, (double[]){0.5, -2.5, 1, 1});
        nnopt_tensor *sum = tensor(dt, 2, shape, NULL);
        nnopt_op add = {.kind = NNOPT_OP_ADD_RELU};
        run_ok(&add, (nnopt_tensor *[]){a, c}, 2, &sum, 1);
        expect_values_nan(sum, (double[]){1.5, 0, 0, NAN}, "add_relu");
        run_ok(&add, (nnopt_tensor *[]){a, c}, 2, &a, 1); /* in place: y is a */
        expect_values_nan(a, (double[]){1.5, 0, 0, NAN}, "add_relu in place");
        free_all((nnopt_tensor *[]){x, w, b, y, a, c, sum}, 7);
        if (backend.vt->supports(backend.ctx, NNOPT_OP_BATCHNORM_ADD_RELU, dt))
            check_batchnorm_add_relu(dt);
    }
}

static void test_cast(void **state) {
    (void)state;
    const double values[3] = {1.0 / 3.0, -2.5, 1e10};
    const int64_t shape[1] = {3};
    nnopt_tensor *wide = tensor(NNOPT_F64, 1, shape, values);
    nnopt_tensor *narrow = tensor(NNOPT_F32, 1, shape, NULL);
    nnopt_tensor *wide_again = tensor(NNOPT_F64, 1, shape, NULL);
    nnopt_op op = {.kind = NNOPT_OP_CAST};
    run_ok(&op, &wide, 1, &narrow, 1);
    run_ok(&op, &narrow, 1, &wide_again, 1);
    double rounded[3], back[3];
    test_tensor_read(&backend, narrow, rounded);
    test_tensor_read(&backend, wide_again, back);
    for (int i = 0; i < 3; i++) {
        assert_true(rounded[i] == (double)(float)values[i]); /* round to nearest */
        assert_true(back[i] == rounded[i]);                  /* widening is exact */
    }
    run_ok(&op, &wide, 1, &wide_again, 1); /* same dtype: a copy */
    test_tensor_read(&backend, wide_again, back);
    for (int i = 0; i < 3; i++) assert_true(back[i] == values[i]);
    free_all((nnopt_tensor *[]){wide, narrow, wide_again}, 3);
}

/* ---- batch normalization ------------------------------------------------- */

/* x is [2,2,1,2]. Channel 0 holds 1, 2, 3, 6: mean 3, biased variance 14/4 =
 * 3.5 (unbiased 14/3); channel 1 holds 14, 6, 11, 9: mean 10, variance
 * 34/4 = 8.5 (unbiased 34/3). With eps 0.5, invstd is 1/2 and 1/3. */
static const double bn_x[8] = {1, 2, 14, 6, 3, 6, 11, 9};
static const double bn_gamma[2] = {2, -3}, bn_beta[2] = {0.5, 1};

static void test_batchnorm_training(void **state) {
    (void)state;
    const int64_t x_shape[4] = {2, 2, 1, 2}, c_shape[1] = {2};
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM,
                   .p.bn = {.eps = 0.5, .momentum = 0.1, .training = 1}};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 4, x_shape, bn_x);
        nnopt_tensor *gamma = tensor(dt, 1, c_shape, bn_gamma);
        nnopt_tensor *beta = tensor(dt, 1, c_shape, bn_beta);
        nnopt_tensor *running_mean = tensor(dt, 1, c_shape, (double[]){0, 1});
        nnopt_tensor *running_var = tensor(dt, 1, c_shape, (double[]){1, 2});
        nnopt_tensor *y = tensor(dt, 4, x_shape, NULL);
        nnopt_tensor *save_mean = tensor(dt, 1, c_shape, NULL);
        nnopt_tensor *save_invstd = tensor(dt, 1, c_shape, NULL);
        run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, running_mean, running_var}, 5,
               (nnopt_tensor *[]){y, save_mean, save_invstd}, 3);
        /* y = gamma xhat + beta; xhat is (-1, -0.5, 0, 1.5) and (4, -4, 1, -1) / 3. */
        expect_values(y, (double[]){-1.5, -0.5, -3, 5, 0.5, 3.5, 0, 2}, "batchnorm y");
        expect_values(save_mean, (double[]){3, 10}, "batchnorm save_mean");
        expect_values(save_invstd, (double[]){0.5, 1.0 / 3}, "batchnorm save_invstd");
        /* r = 0.9 r + 0.1 batch, with the unbiased variance. */
        expect_values(running_mean, (double[]){0.3, 1.9}, "batchnorm running_mean");
        expect_values(running_var, (double[]){0.9 + 1.4 / 3, 1.8 + 3.4 / 3},
                      "batchnorm running_var");

        /* Backward with one nonzero dy per channel: dbeta = sum dy,
         * dgamma = sum dy xhat, dx = gamma invstd / 4 (4 dy - dbeta - xhat dgamma). */
        nnopt_tensor *dy = tensor(dt, 4, x_shape, (double[]){1, 0, 0, 0, 0, 0, 0, 1});
        nnopt_tensor *dx = tensor(dt, 4, x_shape, NULL);
        nnopt_tensor *dgamma = tensor(dt, 1, c_shape, NULL);
        nnopt_tensor *dbeta = tensor(dt, 1, c_shape, NULL);
        nnopt_op bwd = {.kind = NNOPT_OP_BATCHNORM_BWD};
        run_ok(&bwd, (nnopt_tensor *[]){x, gamma, dy, save_mean, save_invstd}, 5,
               (nnopt_tensor *[]){dx, dgamma, dbeta}, 3);
        expect_values(
            dx, (double[]){0.5, -0.375, 5.0 / 36, 13.0 / 36, -0.25, 0.125, 8.0 / 36, -26.0 / 36},
            "batchnorm_bwd dx");
        expect_values(dgamma, (double[]){-1, -1.0 / 3}, "batchnorm_bwd dgamma");
        expect_values(dbeta, (double[]){1, 1}, "batchnorm_bwd dbeta");
        free_all((nnopt_tensor *[]){x, gamma, beta, running_mean, running_var, y, save_mean,
                                    save_invstd, dy, dx, dgamma, dbeta},
                 12);
    }
}

/* batchnorm_relu is relu(batchnorm): the hand-computed y above with its
 * negatives (and its exact 0) at 0, the same statistics; its gradient is
 * batchnorm_bwd of dy where that output is positive. */
static void test_batchnorm_relu(void **state) {
    (void)state;
    if (!backend.vt->supports(backend.ctx, NNOPT_OP_BATCHNORM_RELU, NNOPT_F32)) {
        print_message("# %s has no batchnorm_relu (the core runs batchnorm and relu then)\n",
                      backend_name);
        skip();
    }
    const int64_t x_shape[4] = {2, 2, 1, 2}, c_shape[1] = {2};
    const double dy_values[8] = {1, -2, 3, 4, -5, 6, 7, 8};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_op op = {.kind = NNOPT_OP_BATCHNORM_RELU,
                       .p.bn = {.eps = 0.5, .momentum = 0.1, .training = 1}};
        nnopt_tensor *x = tensor(dt, 4, x_shape, bn_x);
        nnopt_tensor *gamma = tensor(dt, 1, c_shape, bn_gamma);
        nnopt_tensor *beta = tensor(dt, 1, c_shape, bn_beta);
        nnopt_tensor *running_mean = tensor(dt, 1, c_shape, (double[]){0, 1});
        nnopt_tensor *running_var = tensor(dt, 1, c_shape, (double[]){1, 2});
        nnopt_tensor *y = tensor(dt, 4, x_shape, NULL);
        nnopt_tensor *save_mean = tensor(dt, 1, c_shape, NULL);
        nnopt_tensor *save_invstd = tensor(dt, 1, c_shape, NULL);
        run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, running_mean, running_var}, 5,
               (nnopt_tensor *[]){y, save_mean, save_invstd}, 3);
        expect_values(y, (double[]){0, 0, 0, 5, 0.5, 3.5, 0, 2}, "batchnorm_relu y");
        expect_values(save_mean, (double[]){3, 10}, "batchnorm_relu save_mean");
        expect_values(save_invstd, (double[]){0.5, 1.0 / 3}, "batchnorm_relu save_invstd");
        expect_values(running_mean, (double[]){0.3, 1.9}, "batchnorm_relu running_mean");

        /* Inference: the running statistics, then relu. */
        op.p.bn.training = 0;
        nnopt_tensor *mean1 = tensor(dt, 1, c_shape, (double[]){3, 10});
        nnopt_tensor *var1 = tensor(dt, 1, c_shape, (double[]){3.5, 8.5});
        run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, mean1, var1}, 5, &y, 1);
        expect_values(y, (double[]){0, 0, 0, 5, 0.5, 3.5, 0, 2}, "batchnorm_relu inference y");

        /* Gradient: batchnorm_bwd of dy masked by the output (0, 0, 0, 1, 1, 1, 0, 1). */
        nnopt_tensor *dy = tensor(dt, 4, x_shape, dy_values);
        double masked_values[8];
        for (int i = 0; i < 8; i++)
            masked_values[i] = (i == 3 || i == 4 || i == 5 || i == 7) ? dy_values[i] : 0;
        nnopt_tensor *masked = tensor(dt, 4, x_shape, masked_values);
        nnopt_tensor *fused[3] = {tensor(dt, 4, x_shape, NULL), tensor(dt, 1, c_shape, NULL),
                                  tensor(dt, 1, c_shape, NULL)};
        nnopt_tensor *plain[3] = {tensor(dt, 4, x_shape, NULL), tensor(dt, 1, c_shape, NULL),
                                  tensor(dt, 1, c_shape, NULL)};
        run_ok(&(nnopt_op){.kind = NNOPT_OP_BATCHNORM_RELU_BWD},
               (nnopt_tensor *[]){x, gamma, dy, save_mean, save_invstd, y}, 6, fused, 3);
        run_ok(&(nnopt_op){.kind = NNOPT_OP_BATCHNORM_BWD},
               (nnopt_tensor *[]){x, gamma, masked, save_mean, save_invstd}, 5, plain, 3);
        for (int k = 0; k < 3; k++) {
            double want[8];
            test_tensor_read(&backend, plain[k], want);
            expect_values(fused[k], want, "batchnorm_relu_bwd");
        }
        /* The mask changes the result: dbeta is the sum of the kept dy. */
        expect_values(fused[2], (double[]){-5 + 6, 4 + 8}, "batchnorm_relu_bwd dbeta");
        free_all((nnopt_tensor *[]){x, gamma, beta, running_mean, running_var, y, save_mean,
                                    save_invstd, mean1, var1, dy, masked, fused[0], fused[1],
                                    fused[2], plain[0], plain[1], plain[2]},
                 18);
    }
}

/* 2-D x with one sample: each channel's variance is 0, and the running
 * variance takes the biased 0 rather than dividing by count - 1 = 0. */
static void test_batchnorm_single_value(void **state) {
    (void)state;
    const int64_t x_shape[2] = {1, 2}, c_shape[1] = {2};
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM,
                   .p.bn = {.eps = 1e-5, .momentum = 0.25, .training = 1}};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 2, x_shape, (double[]){7, -3});
        nnopt_tensor *gamma = tensor(dt, 1, c_shape, bn_gamma);
        nnopt_tensor *beta = tensor(dt, 1, c_shape, bn_beta);
        nnopt_tensor *running_mean = tensor(dt, 1, c_shape, (double[]){1, 1});
        nnopt_tensor *running_var = tensor(dt, 1, c_shape, (double[]){4, 8});
        nnopt_tensor *y = tensor(dt, 2, x_shape, NULL);
        nnopt_tensor *save_mean = tensor(dt, 1, c_shape, NULL);
        nnopt_tensor *save_invstd = tensor(dt, 1, c_shape, NULL);
        run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, running_mean, running_var}, 5,
               (nnopt_tensor *[]){y, save_mean, save_invstd}, 3);
        expect_values(y, bn_beta, "batchnorm count 1 y");
        expect_values(save_invstd, (double[]){1 / sqrt(1e-5), 1 / sqrt(1e-5)},
                      "batchnorm count 1 save_invstd");
        expect_values(running_mean, (double[]){2.5, 0}, "batchnorm count 1 running_mean");
        expect_values(running_var, (double[]){3, 6}, "batchnorm count 1 running_var");
        free_all((nnopt_tensor *[]){x, gamma, beta, running_mean, running_var, y, save_mean,
                                    save_invstd},
                 8);
    }
}

/* Inference: running mean (1, -2), running variance (3, 8) and eps 1 give
 * invstd 1/2 and 1/3, so channel 0 maps x to x - 0.5 and channel 1 to -x - 1.
 * The running statistics are left alone. */
static void test_batchnorm_inference(void **state) {
    (void)state;
    const int64_t x_shape[4] = {2, 2, 1, 2}, c_shape[1] = {2};
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM, .p.bn = {.eps = 1, .momentum = 0.1, .training = 0}};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *x = tensor(dt, 4, x_shape, bn_x);
        nnopt_tensor *gamma = tensor(dt, 1, c_shape, bn_gamma);
        nnopt_tensor *beta = tensor(dt, 1, c_shape, bn_beta);
        nnopt_tensor *running_mean = tensor(dt, 1, c_shape, (double[]){1, -2});
        nnopt_tensor *running_var = tensor(dt, 1, c_shape, (double[]){3, 8});
        nnopt_tensor *y = tensor(dt, 4, x_shape, NULL);
        run_ok(&op, (nnopt_tensor *[]){x, gamma, beta, running_mean, running_var}, 5, &y, 1);
        expect_values(y, (double[]){0.5, 1.5, -15, -7, 2.5, 5.5, -12, -10}, "batchnorm inference");
        expect_values(running_mean, (double[]){1, -2}, "batchnorm inference running_mean");
        expect_values(running_var, (double[]){3, 8}, "batchnorm inference running_var");
        free_all((nnopt_tensor *[]){x, gamma, beta, running_mean, running_var, y}, 6);
    }
}

/* ---- dropout ------------------------------------------------------------- */

/* An independent transcription of the mask formula in ops.h. */
static uint64_t splitmix64_for_test(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int expected_keep(uint64_t seed, int64_t index, double p) {
    const uint64_t bits = splitmix64_for_test(seed + (uint64_t)index) >> 11;
    return ldexp((double)bits, -53) >= p;
}

/* The survivors' scale as stored in a tensor of dtype dt (1/(1-p) rounded). */
static double keep_value(nnopt_dtype dt, double p) {
    const double scale = 1.0 / (1.0 - p);
    return dt == NNOPT_F32 ? (double)(float)scale : scale;
}

/* Runs dropout on `count` values x_i = i + 1 and returns the mask, checking
 * y = x * mask on the way. */
static double *run_dropout(nnopt_dtype dt, int64_t count, double p, uint64_t seed) {
    double *values = malloc((size_t)count * sizeof *values);
    double *mask_values = malloc((size_t)count * sizeof *mask_values);
    assert_non_null(values);
    assert_non_null(mask_values);
    for (int64_t i = 0; i < count; i++) values[i] = (double)(i % 1000) + 1;
    nnopt_tensor *x = tensor(dt, 1, &count, values);
    nnopt_tensor *y = tensor(dt, 1, &count, NULL);
    nnopt_tensor *mask = tensor(dt, 1, &count, NULL);
    nnopt_op op = {.kind = NNOPT_OP_DROPOUT, .p.dropout = {.p = p, .seed = seed}};
    run_ok(&op, &x, 1, (nnopt_tensor *[]){y, mask}, 2);
    test_tensor_read(&backend, mask, mask_values);
    for (int64_t i = 0; i < count; i++) values[i] *= mask_values[i];
    expect_values(y, values, "dropout y = x * mask");
    free(values);
    free_all((nnopt_tensor *[]){x, y, mask}, 3);
    return mask_values;
}

static void test_dropout_mask_statistics(void **state) {
    (void)state;
    const int64_t count = 100000;
    const double p = 0.3;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        double *mask = run_dropout(dt, count, p, 42);
        const double kept_value = keep_value(dt, p);
        int64_t kept = 0;
        for (int64_t i = 0; i < count; i++) {
            if (mask[i] != 0.0 && mask[i] != kept_value)
                fail_msg("dropout [%s] mask[%lld] = %.17g, expected 0 or %.17g",
                         nnopt_dtype_name(dt), (long long)i, mask[i], kept_value);
            kept += mask[i] != 0.0;
        }
        /* The kept fraction's standard deviation is sqrt(0.21 / 1e5) ~ 0.0015. */
        const double fraction = (double)kept / (double)count;
        if (fabs(fraction - (1 - p)) > 0.01)
            fail_msg("dropout [%s] kept %.4f of the elements, expected about %.2f",
                     nnopt_dtype_name(dt), fraction, 1 - p);
        free(mask);
    }
}

/* The backend's mask is exactly the ops.h formula, including a seed whose
 * seed + i wraps around 2^64; the same seed gives the same mask and another
 * seed a different one; p = 0 keeps everything with scale 1. */
static void test_dropout_mask_formula(void **state) {
    (void)state;
    const int64_t count = 2000;
    const uint64_t seeds[3] = {0, 12345, UINT64_MAX - 999};
    const double p = 0.5;
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        for (int k = 0; k < 3; k++) {
            double *mask = run_dropout(dt, count, p, seeds[k]);
            for (int64_t i = 0; i < count; i++) {
                const double expected = expected_keep(seeds[k], i, p) ? keep_value(dt, p) : 0.0;
                if (mask[i] != expected)
                    fail_msg("dropout [%s] seed %llu element %lld: mask %g, expected %g",
                             nnopt_dtype_name(dt), (unsigned long long)seeds[k], (long long)i,
                             mask[i], expected);
            }
            double *again = run_dropout(dt, count, p, seeds[k]);
            for (int64_t i = 0; i < count; i++) assert_true(again[i] == mask[i]);
            double *other = run_dropout(dt, count, p, seeds[k] + 1);
            int64_t differences = 0;
            for (int64_t i = 0; i < count; i++) differences += other[i] != mask[i];
            assert_true(differences > count / 4); /* shifted by one index, not identical */
            free(mask);
            free(again);
            free(other);
        }
        double *keep_all = run_dropout(dt, count, 0.0, 7);
        for (int64_t i = 0; i < count; i++) assert_true(keep_all[i] == 1.0);
        free(keep_all);
    }
}

static void test_dropout_backward(void **state) {
    (void)state;
    const int64_t shape[2] = {2, 3};
    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        const nnopt_dtype dt = float_dtypes[d];
        nnopt_tensor *dy = tensor(dt, 2, shape, (double[]){1, -2, 3, 0.5, 4, -1});
        nnopt_tensor *mask = tensor(dt, 2, shape, (double[]){0, 2, 2, 0, 0, 2});
        nnopt_tensor *dx = tensor(dt, 2, shape, NULL);
        nnopt_op op = {.kind = NNOPT_OP_DROPOUT_BWD};
        run_ok(&op, (nnopt_tensor *[]){dy, mask}, 2, &dx, 1);
        expect_values(dx, (double[]){0, -4, 6, 0, 0, -2}, "dropout_bwd");
        free_all((nnopt_tensor *[]){dy, mask, dx}, 3);
    }
}

static void test_norm_dropout_reject_bad_arguments(void **state) {
    (void)state;
    const int64_t x_shape[4] = {2, 2, 1, 2}, c_shape[1] = {2}, three[1] = {3};
    nnopt_tensor *x = tensor(NNOPT_F32, 4, x_shape, bn_x);
    nnopt_tensor *x3d = tensor(NNOPT_F32, 3, (int64_t[]){2, 2, 2}, NULL);
    nnopt_tensor *gamma = tensor(NNOPT_F32, 1, c_shape, bn_gamma);
    nnopt_tensor *gamma3 = tensor(NNOPT_F32, 1, three, NULL);
    nnopt_tensor *gamma64 = tensor(NNOPT_F64, 1, c_shape, bn_gamma);
    nnopt_tensor *beta = tensor(NNOPT_F32, 1, c_shape, bn_beta);
    nnopt_tensor *stats[2] = {tensor(NNOPT_F32, 1, c_shape, NULL),
                              tensor(NNOPT_F32, 1, c_shape, (double[]){1, 1})};
    nnopt_tensor *y = tensor(NNOPT_F32, 4, x_shape, NULL);
    nnopt_tensor *saved[2] = {tensor(NNOPT_F32, 1, c_shape, NULL),
                              tensor(NNOPT_F32, 1, c_shape, NULL)};
    nnopt_op bn = {.kind = NNOPT_OP_BATCHNORM,
                   .p.bn = {.eps = 1e-5, .momentum = 0.1, .training = 1}};
    nnopt_tensor *bn_out[3] = {y, saved[0], saved[1]};
    const nnopt_status invalid = NNOPT_STATUS_INVALID_ARGUMENT;

    run_ok(&bn, (nnopt_tensor *[]){x, gamma, beta, stats[0], stats[1]}, 5, bn_out, 3);
    assert_int_equal(
        test_run(&backend, &bn, (nnopt_tensor *[]){x, gamma, beta, stats[0]}, 4, bn_out, 3),
        invalid); /* no running_var */
    assert_int_equal(test_run(&backend, &bn, (nnopt_tensor *[]){x, gamma, beta, stats[0], stats[1]},
                              5, bn_out, 1),
                     invalid); /* training needs save_mean and save_invstd */
    assert_int_equal(test_run(&backend, &bn,
                              (nnopt_tensor *[]){x, gamma3, beta, stats[0], stats[1]}, 5, bn_out,
                              3),
                     invalid); /* gamma is [3] for 2 channels */
    assert_int_equal(test_run(&backend, &bn,
                              (nnopt_tensor *[]){x, gamma64, beta, stats[0], stats[1]}, 5, bn_out,
                              3),
                     invalid); /* f64 gamma with f32 x */
    assert_int_equal(test_run(&backend, &bn,
                              (nnopt_tensor *[]){x3d, gamma, beta, stats[0], stats[1]}, 5, bn_out,
                              3),
                     invalid); /* 3-D x */
    bn.p.bn.momentum = 1.5;
    assert_int_equal(test_run(&backend, &bn, (nnopt_tensor *[]){x, gamma, beta, stats[0], stats[1]},
                              5, bn_out, 3),
                     invalid);
    bn.p.bn = (nnopt_bn_params){.eps = -1, .momentum = 0.1, .training = 0};
    assert_int_equal(
        test_run(&backend, &bn, (nnopt_tensor *[]){x, gamma, beta, stats[0], stats[1]}, 5, &y, 1),
        invalid);
    nnopt_op bn_bwd = {.kind = NNOPT_OP_BATCHNORM_BWD};
    assert_int_equal(test_run(&backend, &bn_bwd, (nnopt_tensor *[]){x, gamma, y, saved[0], gamma3},
                              5, bn_out, 3),
                     invalid); /* save_invstd is [3] */

    nnopt_tensor *mask = tensor(NNOPT_F32, 4, x_shape, NULL);
    nnopt_op dropout = {.kind = NNOPT_OP_DROPOUT, .p.dropout = {.p = 1.0, .seed = 1}};
    assert_int_equal(test_run(&backend, &dropout, &x, 1, (nnopt_tensor *[]){y, mask}, 2), invalid);
    dropout.p.dropout.p = -0.1;
    assert_int_equal(test_run(&backend, &dropout, &x, 1, (nnopt_tensor *[]){y, mask}, 2), invalid);
    dropout.p.dropout.p = 0.5;
    assert_int_equal(test_run(&backend, &dropout, &x, 1, &y, 1), invalid); /* no mask */
    assert_int_equal(test_run(&backend, &dropout, &x, 1, (nnopt_tensor *[]){x3d, mask}, 2),
                     invalid); /* y shape differs */
    nnopt_op dropout_bwd = {.kind = NNOPT_OP_DROPOUT_BWD};
    assert_int_equal(test_run(&backend, &dropout_bwd, (nnopt_tensor *[]){y, x3d}, 2, &mask, 1),
                     invalid); /* mask shape differs */

    for (int d = 0; d < N_FLOAT_DTYPES; d++) {
        assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_BATCHNORM, float_dtypes[d]));
        assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_BATCHNORM_BWD, float_dtypes[d]));
        assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_DROPOUT, float_dtypes[d]));
        assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_DROPOUT_BWD, float_dtypes[d]));
    }
    free_all((nnopt_tensor *[]){x, x3d, gamma, gamma3, gamma64, beta, stats[0], stats[1], y,
                                saved[0], saved[1], mask},
             12);
}

/* ---- argument checking --------------------------------------------------- */

static void test_rejects_bad_arguments(void **state) {
    (void)state;
    const int64_t shape[2] = {2, 3};
    nnopt_tensor *x = tensor(NNOPT_F32, 2, shape, NULL);
    nnopt_tensor *y = tensor(NNOPT_F32, 2, shape, NULL);
    nnopt_tensor *y64 = tensor(NNOPT_F64, 2, shape, NULL);
    nnopt_tensor *bf16 = tensor(NNOPT_BF16, 2, shape, NULL);
    nnopt_op act = {.kind = NNOPT_OP_ACT, .p.act = {NNOPT_ACT_RELU}};

    assert_int_equal(test_run(&backend, &act, (nnopt_tensor *[]){x, x}, 2, &y, 1),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* too many inputs */
    assert_int_equal(test_run(&backend, &act, &x, 1, &y64, 1),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* dtype mismatch */
    /* bf16 runs forward ops only (tests/test_bf16.c): a gradient is refused. */
    nnopt_op act_bwd = {.kind = NNOPT_OP_ACT_BWD, .p.act = {NNOPT_ACT_RELU}};
    assert_int_equal(
        test_run(&backend, &act_bwd, (nnopt_tensor *[]){bf16, bf16, bf16}, 3, &bf16, 1),
        NNOPT_STATUS_UNSUPPORTED);
    act.p.act.kind = NNOPT_ACT_KIND_COUNT;
    assert_int_equal(test_run(&backend, &act, &x, 1, &y, 1), NNOPT_STATUS_INVALID_ARGUMENT);

    nnopt_tensor *labels = tensor(NNOPT_I32, 1, (int64_t[]){2}, (double[]){0, 3});
    nnopt_tensor *loss = tensor(NNOPT_F32, 1, (int64_t[]){1}, NULL);
    nnopt_op xent = {.kind = NNOPT_OP_SOFTMAX_XENT, .p.xent = {0, 1.0}};
    nnopt_tensor *xent_out[2] = {loss, y};
    assert_int_equal(test_run(&backend, &xent, (nnopt_tensor *[]){x, labels}, 2, xent_out, 2),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* label 3 of 3 classes */
    test_tensor_write(&backend, labels, (double[]){0, 2});
    xent.p.xent.temperature = 0;
    assert_int_equal(test_run(&backend, &xent, (nnopt_tensor *[]){x, labels}, 2, xent_out, 2),
                     NNOPT_STATUS_INVALID_ARGUMENT);

    nnopt_op sgd = {.kind = NNOPT_OP_SGD_UPDATE, .p.sgd = {.lr = 0.1, .momentum = 0.9}};
    assert_int_equal(test_run(&backend, &sgd, (nnopt_tensor *[]){x, y}, 2, NULL, 0),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* momentum needs a velocity */

    nnopt_op conv = {.kind = NNOPT_OP_CONV2D,
                     .p.conv2d = {.stride_h = 0, .stride_w = 1, .groups = 1}};
    nnopt_tensor *image = tensor(NNOPT_F32, 4, (int64_t[]){1, 1, 3, 3}, NULL);
    nnopt_tensor *filter = tensor(NNOPT_F32, 4, (int64_t[]){1, 1, 2, 2}, NULL);
    nnopt_tensor *out = tensor(NNOPT_F32, 4, (int64_t[]){1, 1, 2, 2}, NULL);
    assert_int_equal(test_run(&backend, &conv, (nnopt_tensor *[]){image, filter}, 2, &out, 1),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* stride 0 */
    conv.p.conv2d.stride_h = 2;
    assert_int_equal(test_run(&backend, &conv, (nnopt_tensor *[]){image, filter}, 2, &out, 1),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* y should be [1,1,1,2] */

    assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_CONV2D, NNOPT_F32));
    assert_true(backend.vt->supports(backend.ctx, NNOPT_OP_SOFTMAX_XENT, NNOPT_F64));
    free_all((nnopt_tensor *[]){x, y, y64, bf16, labels, loss, image, filter, out}, 9);
}

/* ---- tensor storage ------------------------------------------------------ */

static void test_tensor_storage(void **state) {
    (void)state;
    const int64_t shape[1] = {5};
    nnopt_tensor *t = tensor(NNOPT_F32, 1, shape, (double[]){1, 2, 3, 4, 5});
    assert_int_equal((uintptr_t)t->data % 64, 0); /* cache-line aligned */
    const nnopt_backend_vtable *vt = backend.vt;
    float four[4] = {0};
    /* In bounds at an offset; one byte past the end is refused. */
    assert_int_equal(vt->tensor_read(backend.ctx, t, 4, four, 16), NNOPT_OK);
    assert_true(four[0] == 2 && four[3] == 5);
    assert_int_equal(vt->tensor_read(backend.ctx, t, 5, four, 16), NNOPT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(vt->tensor_write(backend.ctx, t, 8, four, 16), NNOPT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(vt->tensor_write(backend.ctx, t, SIZE_MAX, four, 2),
                     NNOPT_STATUS_INVALID_ARGUMENT); /* offset + size wraps around */
    assert_int_equal(vt->tensor_zero(backend.ctx, t), NNOPT_OK);
    double values[5];
    test_tensor_read(&backend, t, values);
    for (int i = 0; i < 5; i++) assert_true(values[i] == 0);
    test_tensor_free(&backend, t);

    /* An empty tensor is still allocated (data != NULL). */
    nnopt_tensor *empty = tensor(NNOPT_F64, 2, (int64_t[]){0, 3}, NULL);
    assert_non_null(empty->data);
    test_tensor_free(&backend, empty);
}

int main(int argc, char **argv) {
    if (argc > 1) backend_name = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_stride_pad),
        cmocka_unit_test(test_conv2d_backward_valid),
        cmocka_unit_test(test_conv2d_channels_and_groups),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_pool2d),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_fused_relu_ops),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_batchnorm_training),
        cmocka_unit_test(test_batchnorm_single_value),
        cmocka_unit_test(test_batchnorm_relu),
        cmocka_unit_test(test_batchnorm_inference),
        cmocka_unit_test(test_dropout_mask_statistics),
        cmocka_unit_test(test_dropout_mask_formula),
        cmocka_unit_test(test_dropout_backward),
        cmocka_unit_test(test_norm_dropout_reject_bad_arguments),
        cmocka_unit_test(test_rejects_bad_arguments),
        cmocka_unit_test(test_tensor_storage),
    };
    return cmocka_run_group_tests_name(backend_name, tests, open_backend, close_backend);
}
