/* int8 quantisation: the blis VNNI kernels against the reference int8
 * kernels (exact: both compute the same int32 accumulators and the same f32
 * epilogue), the int8 ops against the f32 reference within the error the
 * quantisation steps allow, argument errors, and the quantization technique
 * end to end on a generated dataset. */
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
#include "pipeline.h"
#include "test_rng.h"
#include "test_backend.h"

static test_backend blis_backend, ref_backend;

static double *random_values(int64_t n, double lo, double hi, int integers) {
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = integers ? (double)rng_int((int)lo, (int)hi) : rng_uniform(lo, hi);
    return v;
}

static int64_t numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* One quantised layer: shapes, parameters and host values. */
typedef struct qcase {
    int conv;
    int64_t x_shape[4], w_shape[4], y_shape[4];
    int ndim;
    nnopt_op op;
    double *x, *w, *w_scale, *bias;
} qcase;

static void qcase_free(qcase *c) {
    free(c->x);
    free(c->w);
    free(c->w_scale);
    free(c->bias);
}

/* A random conv2d_int8 (groups 1, 2 or depthwise; stride 1-2; padding 0-2)
 * or dense_int8 with random codes, scales and zero point. */
static void qcase_random(qcase *c, int conv) {
    memset(c, 0, sizeof *c);
    c->conv = conv;
    const int n = rng_int(1, 4);
    nnopt_qlinear_params *qp = &c->op.p.qlinear;
    if (conv) {
        const int kind = rng_int(0, 2); /* 0: ordinary, 1: two groups, 2: depthwise */
        int groups = kind == 0 ? 1 : kind == 1 ? 2 : rng_int(1, 12);
        int cg = kind == 2 ? 1 : rng_int(1, 12), kg = kind == 2 ? 1 : rng_int(1, 11);
        const int r = rng_int(1, 5), s = rng_int(1, 5), stride = rng_int(1, 2);
        const int pad = rng_int(0, 2);
        const int h = rng_int(r, 40), w = rng_int(s, 40);
        c->op.kind = NNOPT_OP_CONV2D_INT8;
        qp->conv = (nnopt_conv2d_params){stride, stride, pad, pad, groups};
        const int64_t p = (h + 2 * pad - r) / stride + 1, q = (w + 2 * pad - s) / stride + 1;
        int64_t xs[4] = {n, groups * cg, h, w}, ws[4] = {groups * kg, cg, r, s},
                ys[4] = {n, groups * kg, p, q};
        memcpy(c->x_shape, xs, sizeof xs);
        memcpy(c->w_shape, ws, sizeof ws);
        memcpy(c->y_shape, ys, sizeof ys);
        c->ndim = 4;
    } else {
        const int in = rng_int(1, 300), out = rng_int(1, 70);
        c->op.kind = NNOPT_OP_DENSE_INT8;
        const int64_t xs[2] = {n * 5, in}, ws[2] = {out, in};
        memcpy(c->x_shape, xs, sizeof xs);
        memcpy(c->w_shape, ws, sizeof ws);
        c->y_shape[0] = xs[0];
        c->y_shape[1] = out;
        c->ndim = 2;
    }
    qp->x_scale = (float)rng_uniform(0.005, 0.05);
    qp->zero_point = rng_int(0, 3) == 0 ? 0 : rng_int(0, 255);
    qp->act = rng_int(0, 1) ? NNOPT_ACT_RELU : NNOPT_ACT_IDENTITY;
    /* Inputs past both ends of the code range exercise the clamping. */
    const double lo = -qp->zero_point * qp->x_scale, hi = (255 - qp->zero_point) * qp->x_scale;
    c->x = random_values(numel(c->ndim, c->x_shape), lo - 0.3, hi + 0.3, 0);
    c->w = random_values(numel(c->ndim, c->w_shape), -127, 127, 1);
    c->w_scale = random_values(c->w_shape[0], 1e-3, 2e-2, 0);
    c->bias = random_values(c->w_shape[0], -1, 1, 0);
}

/* Runs the case on b; returns y (numel of y_shape doubles). */
static double *qcase_run(test_backend *b, const qcase *c) {
    const int64_t k[1] = {c->w_shape[0]};
    nnopt_tensor *x = test_tensor_new(b, NNOPT_F32, c->ndim, c->x_shape, c->x);
    nnopt_tensor *w = test_tensor_new(b, NNOPT_I8, c->ndim, c->w_shape, c->w);
    nnopt_tensor *s = test_tensor_new(b, NNOPT_F32, 1, k, c->w_scale);
    nnopt_tensor *bias = test_tensor_new(b, NNOPT_F32, 1, k, c->bias);
    nnopt_tensor *y = test_tensor_new(b, NNOPT_F32, c->ndim, c->y_shape, NULL);
    nnopt_tensor *in[4] = {x, w, s, bias};
    assert_int_equal(test_run(b, &c->op, in, 4, &y, 1), NNOPT_OK);
    double *out = malloc((size_t)numel(c->ndim, c->y_shape) * sizeof *out);
    assert_non_null(out);
    test_tensor_read(b, y, out);
    nnopt_tensor *all[5] = {x, w, s, bias, y};
    for (int i = 0; i < 5; i++) test_tensor_free(b, all[i]);
    return out;
}

static void describe(const qcase *c, char *buf, size_t size) {
    const nnopt_qlinear_params *qp = &c->op.p.qlinear;
    snprintf(buf, size,
             "%s x[%lld,%lld,%lld,%lld] w[%lld,%lld,%lld,%lld] stride %d pad %d groups %d zp %d %s",
             nnopt_op_kind_name(c->op.kind), (long long)c->x_shape[0], (long long)c->x_shape[1],
             (long long)c->x_shape[2], (long long)c->x_shape[3], (long long)c->w_shape[0],
             (long long)c->w_shape[1], (long long)c->w_shape[2], (long long)c->w_shape[3],
             qp->conv.stride_h, qp->conv.pad_h, qp->conv.groups, qp->zero_point,
             nnopt_act_kind_name(qp->act));
}

/* Exact agreement: the accumulators are exact integers and both backends
 * dequantise with the same f32 operations (multiply, then add). */
static void check_blis_matches_ref(int conv, int rounds) {
    for (int round = 0; round < rounds; round++) {
        qcase c;
        qcase_random(&c, conv);
        double *want = qcase_run(&ref_backend, &c), *got = qcase_run(&blis_backend, &c);
        const int64_t n = numel(c.ndim, c.y_shape);
        for (int64_t i = 0; i < n; i++)
            if (got[i] != want[i]) {
                char what[256];
                describe(&c, what, sizeof what);
                fail_msg("%s: element %lld: blis %.9g, reference %.9g", what, (long long)i, got[i],
                         want[i]);
            }
        free(want);
        free(got);
        qcase_free(&c);
    }
}

static void test_blis_conv_int8_matches_reference(void **state) {
    (void)state;
    check_blis_matches_ref(1, 60);
}

static void test_blis_dense_int8_matches_reference(void **state) {
    (void)state;
    check_blis_matches_ref(0, 30);
}

/* The int8 conv against the f32 conv of the values the codes stand for:
 * weights w = code * w_scale[k] exactly, inputs x with |x - x_q| <= x_scale / 2
 * (no clamping: the scale covers x's range). So each output differs from the
 * f32 result by at most sum over its window of |w| * x_scale / 2, which the
 * f32 reference computes as a convolution of ones with |w|; the f32 sums
 * themselves add a relative 1e-5. */
static void test_int8_conv_within_quantisation_error_of_f32(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        qcase c;
        qcase_random(&c, 1);
        nnopt_qlinear_params *qp = &c.op.p.qlinear;
        qp->act = NNOPT_ACT_IDENTITY;
        const int64_t nx = numel(4, c.x_shape), nw = numel(4, c.w_shape), ny = numel(4, c.y_shape);
        const double lo = -qp->zero_point * qp->x_scale, hi = (255 - qp->zero_point) * qp->x_scale;
        for (int64_t i = 0; i < nx; i++) c.x[i] = rng_uniform(lo, hi);
        double *int8 = qcase_run(&ref_backend, &c);

        double *w_real = malloc((size_t)nw * sizeof *w_real),
               *w_abs = malloc((size_t)nw * sizeof *w_abs);
        double *ones = malloc((size_t)nx * sizeof *ones);
        const int64_t per_k = nw / c.w_shape[0];
        for (int64_t i = 0; i < nw; i++) {
            w_real[i] = c.w[i] * (double)(float)c.w_scale[i / per_k];
            w_abs[i] = fabs(w_real[i]);
        }
        for (int64_t i = 0; i < nx; i++) ones[i] = 1;
        const int64_t k[1] = {c.w_shape[0]};
        nnopt_op f32 = {.kind = NNOPT_OP_CONV2D};
        f32.p.conv2d = qp->conv;
        nnopt_tensor *x = test_tensor_new(&ref_backend, NNOPT_F32, 4, c.x_shape, c.x);
        nnopt_tensor *w = test_tensor_new(&ref_backend, NNOPT_F32, 4, c.w_shape, w_real);
        nnopt_tensor *b = test_tensor_new(&ref_backend, NNOPT_F32, 1, k, c.bias);
        nnopt_tensor *y = test_tensor_new(&ref_backend, NNOPT_F32, 4, c.y_shape, NULL);
        double *want = malloc((size_t)ny * sizeof *want),
               *bound = malloc((size_t)ny * sizeof *bound);
        assert_int_equal(test_run(&ref_backend, &f32, (nnopt_tensor *[]){x, w, b}, 3, &y, 1),
                         NNOPT_OK);
        test_tensor_read(&ref_backend, y, want);
        test_tensor_write(&ref_backend, x, ones);
        test_tensor_write(&ref_backend, w, w_abs);
        assert_int_equal(test_run(&ref_backend, &f32, (nnopt_tensor *[]){x, w}, 2, &y, 1),
                         NNOPT_OK);
        test_tensor_read(&ref_backend, y, bound);
        for (int64_t i = 0; i < ny; i++) {
            /* f32 rounding: relative to the sum of |x w|, at most bound * max |x|. */
            const double rounding =
                1e-5 * (bound[i] * fmax(fabs(lo), fabs(hi)) + fabs(want[i]) + 1);
            const double allowed = bound[i] * qp->x_scale / 2 + rounding;
            if (!(fabs(int8[i] - want[i]) <= allowed)) {
                char what[256];
                describe(&c, what, sizeof what);
                fail_msg("%s: element %lld: int8 %.9g, f32 %.9g, allowed error %.3g", what,
                         (long long)i, int8[i], want[i], allowed);
            }
        }
        nnopt_tensor *all[4] = {x, w, b, y};
        for (int i = 0; i < 4; i++) test_tensor_free(&ref_backend, all[i]);
        free(w_real);
        free(w_abs);
        free(ones);
        free(want);
        free(bound);
        free(int8);
        qcase_free(&c);
    }
}

static void test_int8_argument_errors(void **state) {
    (void)state;
    /* Activations stay f32: no backend claims the int8 ops in f64. */
    assert_true(blis_backend.vt->supports(blis_backend.ctx, NNOPT_OP_CONV2D_INT8, NNOPT_F32));
    assert_false(blis_backend.vt->supports(blis_backend.ctx, NNOPT_OP_CONV2D_INT8, NNOPT_F64));
    assert_false(ref_backend.vt->supports(ref_backend.ctx, NNOPT_OP_DENSE_INT8, NNOPT_F64));
    qcase c;
    qcase_random(&c, 0);
    const int64_t k[1] = {c.w_shape[0]};
    test_backend *backends[2] = {&ref_backend, &blis_backend};
    for (int i = 0; i < 2; i++) {
        test_backend *b = backends[i];
        nnopt_tensor *x = test_tensor_new(b, NNOPT_F32, 2, c.x_shape, c.x);
        nnopt_tensor *w8 = test_tensor_new(b, NNOPT_I8, 2, c.w_shape, c.w);
        nnopt_tensor *w32 = test_tensor_new(b, NNOPT_F32, 2, c.w_shape, c.w);
        nnopt_tensor *s = test_tensor_new(b, NNOPT_F32, 1, k, c.w_scale);
        nnopt_tensor *bias = test_tensor_new(b, NNOPT_F32, 1, k, c.bias);
        nnopt_tensor *y = test_tensor_new(b, NNOPT_F32, 2, c.y_shape, NULL);
        nnopt_op op = c.op;
        /* f32 weights where int8 ones belong */
        assert_int_equal(b->vt->run(b->ctx, &op, (nnopt_tensor *[]){x, w32, s, bias}, 4, &y, 1),
                         NNOPT_STATUS_INVALID_ARGUMENT);
        /* no bias */
        assert_int_equal(b->vt->run(b->ctx, &op, (nnopt_tensor *[]){x, w8, s}, 3, &y, 1),
                         NNOPT_STATUS_INVALID_ARGUMENT);
        op.p.qlinear.zero_point = 256;
        assert_int_equal(b->vt->run(b->ctx, &op, (nnopt_tensor *[]){x, w8, s, bias}, 4, &y, 1),
                         NNOPT_STATUS_INVALID_ARGUMENT);
        op = c.op;
        op.p.qlinear.act = NNOPT_ACT_GELU_TANH; /* only ReLU is fused */
        assert_int_equal(b->vt->run(b->ctx, &op, (nnopt_tensor *[]){x, w8, s, bias}, 4, &y, 1),
                         NNOPT_STATUS_INVALID_ARGUMENT);
        op = c.op;
        op.p.qlinear.x_scale = 0;
        assert_int_equal(b->vt->run(b->ctx, &op, (nnopt_tensor *[]){x, w8, s, bias}, 4, &y, 1),
                         NNOPT_STATUS_INVALID_ARGUMENT);
        nnopt_tensor *all[6] = {x, w8, w32, s, bias, y};
        for (int t = 0; t < 6; t++) test_tensor_free(b, all[t]);
    }
    qcase_free(&c);
}

/* ---- the technique in a pipeline on generated data ---- */

static char fixture[256];

static const char *const pipeline_ini =
    "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n"
    "[backend]\nplugin = %s\n"
    "[model lenet]\nplugin = lenet5\nchannels = 3,8\ndense = 50\nactivation = relu\npool = "
    "max\ndtype = f32\n"
    "[model resnet]\nplugin = resnet\ndepth = 8\nwidth = 4\n"
    "[model lenet64]\nplugin = lenet5\nchannels = 3,8\ndense = 50\ndtype = f64\n"
    "[technique quant]\nplugin = quantization\ncalibration_batches = 4\n"
    "[training]\nepochs = 3\nbatch = 32\nlr = 0.05\nmomentum = 0.9\nseed = 3\nprogress = off\n"
    "[run lenet_f32]\nmodel = lenet\n"
    "[run lenet_int8]\nmodel = lenet\ninit_from = lenet_f32\ntechniques = quant\nepochs = 0\n"
    "[run resnet_f32]\nmodel = resnet\nepochs = 5\n"
    "[run resnet_int8]\nmodel = resnet\ninit_from = resnet_f32\ntechniques = quant\nepochs = 0\n"
    "%s";

static nnopt_status run_pipeline(const char *backend, const char *extra, nnopt_experiment *e,
                                 nnopt_data *data, nnopt_run_result *r, nnopt_error *err) {
    char ini[512], dirset[400];
    snprintf(ini, sizeof ini, "%s/quantization.ini", fixture);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, pipeline_ini, backend, extra);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", fixture);
    const char *overrides[1] = {dirset};
    nnopt_status st = nnopt_experiment_load(ini, overrides, 1, e, err);
    if (st == NNOPT_OK) st = nnopt_data_load(e->data, data, err);
    if (st == NNOPT_OK) st = nnopt_pipeline_run(e, data, r, err);
    return st;
}

static const nnopt_run_result *result(const nnopt_experiment *e, const nnopt_run_result *r,
                                      const char *name) {
    for (int i = 0; i < e->n_runs; i++)
        if (!strcmp(r[i].run, name)) return &r[i];
    fail_msg("no run %s", name);
    return NULL;
}

static long long column(const nnopt_run_result *r, const char *name) {
    for (int i = 0; i < r->n_columns; i++)
        if (!strcmp(r->column_names[i], name)) return atoll(r->column_values[i]);
    fail_msg("run %s has no column %s", r->run, name);
    return -1;
}

/* LeNet (channels 3,8, dense 50, 10 classes, 1x28x28 input: conv1 pads to
 * 28x28, conv2 gives 10x10, so fc1 reads 8x5x5): every layer's
 * weights as int8 plus f32 bias and scale per output channel. */
static long long lenet_bytes(int int8) {
    const long long weights[4] = {3 * 1 * 25, 8 * 3 * 25, 50 * 8 * 5 * 5, 10 * 50};
    const long long outputs[4] = {3, 8, 50, 10};
    long long total = 0;
    for (int i = 0; i < 4; i++)
        total += int8 ? weights[i] + outputs[i] * 8 : (weights[i] + outputs[i]) * 4;
    return total;
}

static void check_quantised_pipeline(const char *backend) {
    nnopt_experiment e;
    nnopt_data data;
    nnopt_error err = {0};
    nnopt_run_result r[NNOPT_MAX_RUNS];
    if (run_pipeline(backend, "", &e, &data, r, &err) != NNOPT_OK) fail_msg("%s", err.message);
    const char *pairs[2][2] = {{"lenet_f32", "lenet_int8"}, {"resnet_f32", "resnet_int8"}};
    for (int m = 0; m < 2; m++) {
        const nnopt_run_result *f32 = result(&e, r, pairs[m][0]),
                               *int8 = result(&e, r, pairs[m][1]);
        /* Learnt (chance is 0.1), and int8 within 3 points (6 of the 200 test images). */
        if (f32->test_accuracy < 0.4 || fabs(int8->test_accuracy - f32->test_accuracy) > 0.03)
            fail_msg("%s: f32 accuracy %.3f, int8 %.3f", backend, f32->test_accuracy,
                     int8->test_accuracy);
        assert_int_equal(int8->n_epochs, 0);
        assert_int_equal(column(int8, "calibration_batches"), 4);
        assert_true(column(int8, "model_bytes_int8") * 3 < column(int8, "model_bytes_f32"));
    }
    const nnopt_run_result *lenet = result(&e, r, "lenet_int8"),
                           *resnet = result(&e, r, "resnet_int8");
    /* Stored as int8 for real: the bytes are those of int8 weights. */
    assert_int_equal(column(lenet, "int8_layers"), 4);
    assert_int_equal(column(lenet, "model_bytes_f32"), lenet_bytes(0));
    assert_int_equal(column(lenet, "model_bytes_int8"), lenet_bytes(1));
    /* ResNet-8: stem, 3 blocks of 2 convs, 2 projection shortcuts, fc. */
    assert_int_equal(column(resnet, "int8_layers"), 1 + 6 + 2 + 1);
    for (int i = 0; i < e.n_runs; i++) nnopt_run_result_free(&r[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_quantization_pipeline_reference(void **state) {
    (void)state;
    check_quantised_pipeline("cpu");
}

static void test_quantization_pipeline_blis(void **state) {
    (void)state;
    check_quantised_pipeline("blis");
}

static void test_quantization_needs_f32(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_data data;
    nnopt_error err = {0};
    nnopt_run_result r[NNOPT_MAX_RUNS];
    const char *extra = "[run f64]\nmodel = lenet64\nepochs = 1\ntechniques = quant\n";
    assert_int_equal(run_pipeline("cpu", extra, &e, &data, r, &err), NNOPT_STATUS_UNSUPPORTED);
    assert_non_null(strstr(err.message, "run 'f64'"));
    assert_non_null(strstr(err.message, "starts from f32"));
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static int setup(void **state) {
    (void)state;
    if (test_backend_open("blis", NULL, &blis_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    if (fixture_tmpdir(fixture, sizeof fixture, "quantization") != 0) return -1;
    return idx_fixture_write(fixture, 600, 200, 7);
}

static int teardown(void **state) {
    (void)state;
    test_backend_close(&blis_backend);
    test_backend_close(&ref_backend);
    fixture_rmdir(fixture);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blis_conv_int8_matches_reference),
        cmocka_unit_test(test_blis_dense_int8_matches_reference),
        cmocka_unit_test(test_int8_conv_within_quantisation_error_of_f32),
        cmocka_unit_test(test_int8_argument_errors),
        cmocka_unit_test(test_quantization_pipeline_reference),
        cmocka_unit_test(test_quantization_pipeline_blis),
        cmocka_unit_test(test_quantization_needs_f32),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
