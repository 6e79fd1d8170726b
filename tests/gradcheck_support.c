/* Central finite-difference checks of the backward ops, in float64.
 *
 * For an op y = f(inputs) and a fixed random r, L = sum(y * r), so the
 * gradient of L with respect to y is r: feeding r as dy to the backend's
 * backward op must give dL/d(input), which is compared element by element
 * with (L(x + h) - L(x - h)) / 2h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gradcheck_support.h"
#include "test_backend.h"

/* The step balances truncation error (h^2 f''') against cancellation
 * (1e-16 |L| / h); both stay far below the tolerance for these sizes. */
#define STEP 1e-5
#define TOLERANCE 1e-6
/* Gradients smaller than this are compared absolutely: their relative error
 * is dominated by cancellation in L, not by the backend. */
#define MAGNITUDE_FLOOR 1e-2

static test_backend backend;
static const char *backend_name = "cpu";

static int open_backend(void **state) {
    (void)state;
    return test_backend_open(backend_name, NULL, &backend);
}

static int close_backend(void **state) {
    (void)state;
    test_backend_close(&backend);
    return 0;
}

/* ---- random numbers: a tiny LCG so every run sees the same inputs ------- */

static uint64_t rng_state;

static void seed_random(void) {
    rng_state = 0x2545F4914F6CDD1DULL;
}

static double uniform(double lo, double hi) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

/* ---- per-test bookkeeping: everything allocated is freed at the end ----- */

#define SCOPE_CAPACITY 24

typedef struct scope {
    nnopt_tensor *tensors[SCOPE_CAPACITY];
    double *buffers[SCOPE_CAPACITY];
    int n_tensors, n_buffers;
} scope;

static double *scope_buffer(scope *s, int64_t count) {
    assert_true(s->n_buffers < SCOPE_CAPACITY);
    double *buffer = calloc((size_t)(count > 0 ? count : 1), sizeof *buffer);
    assert_non_null(buffer);
    s->buffers[s->n_buffers++] = buffer;
    return buffer;
}

static double *scope_random(scope *s, int64_t count, double lo, double hi) {
    double *values = scope_buffer(s, count);
    for (int64_t i = 0; i < count; i++) values[i] = uniform(lo, hi);
    return values;
}

static nnopt_tensor *scope_tensor(scope *s, nnopt_dtype dtype, int ndim, const int64_t *shape,
                                  const double *values) {
    assert_true(s->n_tensors < SCOPE_CAPACITY);
    nnopt_tensor *t = test_tensor_new(&backend, dtype, ndim, shape, values);
    assert_non_null(t);
    s->tensors[s->n_tensors++] = t;
    return t;
}

static void scope_free(scope *s) {
    for (int i = 0; i < s->n_tensors; i++) test_tensor_free(&backend, s->tensors[i]);
    for (int i = 0; i < s->n_buffers; i++) free(s->buffers[i]);
    s->n_tensors = s->n_buffers = 0;
}

static void run_ok(const nnopt_op *op, nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                   int n_out) {
    assert_int_equal(test_run(&backend, op, in, n_in, out, n_out), NNOPT_OK);
}

/* Reads t into a new scope buffer. */
static double *read_all(scope *s, const nnopt_tensor *t) {
    double *values = scope_buffer(s, nnopt_tensor_numel(t));
    test_tensor_read(&backend, t, values);
    return values;
}

/* ---- the check itself ---------------------------------------------------- */

/* The forward op as a function of host values: input i is rewritten from
 * in_values[i] (NULL for inputs that are never perturbed, such as labels)
 * and L = sum(out[checked_output] * r). */
typedef struct forward_fn {
    nnopt_op op;
    int n_in, n_out;
    nnopt_tensor *in[5];
    double *in_values[5];
    nnopt_tensor *out[3];
    int checked_output;
    const double *r;
    double *scratch; /* holds out[checked_output] */
} forward_fn;

static double objective(forward_fn *f) {
    run_ok(&f->op, f->in, f->n_in, f->out, f->n_out);
    const nnopt_tensor *y = f->out[f->checked_output];
    test_tensor_read(&backend, y, f->scratch);
    double sum = 0.0;
    for (int64_t i = 0; i < nnopt_tensor_numel(y); i++) sum += f->scratch[i] * f->r[i];
    return sum;
}

/* Compares `analytic` with the central difference of L for every element of
 * input `which`; fails with the worst element when any exceeds TOLERANCE. */
static void check_gradient(forward_fn *f, int which, const double *analytic, const char *what) {
    nnopt_tensor *t = f->in[which];
    double *values = f->in_values[which];
    double worst_error = 0.0, worst_analytic = 0.0, worst_numeric = 0.0;
    int64_t worst_index = -1;
    for (int64_t i = 0; i < nnopt_tensor_numel(t); i++) {
        const double saved = values[i];
        values[i] = saved + STEP;
        test_tensor_write(&backend, t, values);
        const double above = objective(f);
        values[i] = saved - STEP;
        test_tensor_write(&backend, t, values);
        const double below = objective(f);
        values[i] = saved;
        const double numeric = (above - below) / (2 * STEP);
        const double scale = fmax(MAGNITUDE_FLOOR, fmax(fabs(analytic[i]), fabs(numeric)));
        const double error = fabs(analytic[i] - numeric) / scale;
        if (!(error <= worst_error)) { /* also catches NaN */
            worst_error = error;
            worst_index = i;
            worst_analytic = analytic[i];
            worst_numeric = numeric;
        }
    }
    test_tensor_write(&backend, t, values);
    if (!(worst_error <= TOLERANCE))
        fail_msg("%s: element %lld: analytic %.12g vs numeric %.12g (relative error %.3g)", what,
                 (long long)worst_index, worst_analytic, worst_numeric, worst_error);
}

/* ---- conv2d -------------------------------------------------------------- */

typedef struct conv_case {
    int64_t n, c, h, w, k, r, s;
    nnopt_conv2d_params params;
    int with_bias;
} conv_case;

static void gradcheck_conv2d(void **state) {
    const conv_case *cc = *state;
    scope s = {0};
    seed_random();
    const nnopt_conv2d_params *cp = &cc->params;
    const int64_t p = (cc->h + 2 * cp->pad_h - cc->r) / cp->stride_h + 1;
    const int64_t q = (cc->w + 2 * cp->pad_w - cc->s) / cp->stride_w + 1;
    const int64_t x_shape[4] = {cc->n, cc->c, cc->h, cc->w};
    const int64_t w_shape[4] = {cc->k, cc->c / cp->groups, cc->r, cc->s};
    const int64_t y_shape[4] = {cc->n, cc->k, p, q};
    const int64_t y_count = cc->n * cc->k * p * q;

    forward_fn f = {.op = {.kind = NNOPT_OP_CONV2D, .p.conv2d = *cp},
                    .n_in = cc->with_bias ? 3 : 2,
                    .n_out = 1};
    f.in_values[0] = scope_random(&s, cc->n * cc->c * cc->h * cc->w, -1, 1);
    f.in_values[1] = scope_random(&s, w_shape[0] * w_shape[1] * cc->r * cc->s, -1, 1);
    f.in_values[2] = scope_random(&s, cc->k, -1, 1);
    f.in[0] = scope_tensor(&s, NNOPT_F64, 4, x_shape, f.in_values[0]);
    f.in[1] = scope_tensor(&s, NNOPT_F64, 4, w_shape, f.in_values[1]);
    f.in[2] = scope_tensor(&s, NNOPT_F64, 1, &cc->k, f.in_values[2]);
    f.out[0] = scope_tensor(&s, NNOPT_F64, 4, y_shape, NULL);
    f.r = scope_random(&s, y_count, -1, 1);
    f.scratch = scope_buffer(&s, y_count);

    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, 4, y_shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, 4, x_shape, NULL);
    nnopt_tensor *dw = scope_tensor(&s, NNOPT_F64, 4, w_shape, NULL);
    nnopt_tensor *db = scope_tensor(&s, NNOPT_F64, 1, &cc->k, NULL);
    nnopt_op op = f.op;
    op.kind = NNOPT_OP_CONV2D_BWD_DATA;
    run_ok(&op, (nnopt_tensor *[]){dy, f.in[1]}, 2, &dx, 1);
    op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
    run_ok(&op, (nnopt_tensor *[]){f.in[0], dy}, 2, &dw, 1);
    op.kind = NNOPT_OP_BIAS_BWD;
    run_ok(&op, &dy, 1, &db, 1);

    check_gradient(&f, 0, read_all(&s, dx), "conv2d dx");
    check_gradient(&f, 1, read_all(&s, dw), "conv2d dw");
    if (cc->with_bias) check_gradient(&f, 2, read_all(&s, db), "conv2d db");
    scope_free(&s);
}

static const conv_case conv_plain = {2, 3, 5, 5, 4, 3, 3, {1, 1, 1, 1, 1}, 1};
static const conv_case conv_stride2 = {2, 3, 7, 6, 4, 3, 3, {2, 2, 1, 1, 1}, 1};
static const conv_case conv_rect_stride = {1, 2, 6, 7, 3, 2, 3, {2, 1, 0, 1, 1}, 0};
static const conv_case conv_groups2 = {2, 4, 5, 5, 6, 3, 3, {1, 1, 1, 1, 2}, 1};
static const conv_case conv_depthwise = {2, 3, 6, 6, 3, 3, 3, {2, 2, 1, 1, 3}, 1};
/* 5x5, no padding (LeNet's conv2): blis's data gradient by filter columns
 * and, in f64 (K = 8 lanes), its filter gradient with K in the lanes */
static const conv_case conv_5x5_valid = {2, 2, 8, 9, 8, 5, 5, {1, 1, 0, 0, 1}, 1};

/* ---- dense --------------------------------------------------------------- */

static void gradcheck_dense(void **state) {
    (void)state;
    scope s = {0};
    seed_random();
    const int64_t batch = 3, in_features = 5, out_features = 4;
    const int64_t x_shape[2] = {batch, in_features}, w_shape[2] = {out_features, in_features};
    const int64_t y_shape[2] = {batch, out_features};
    forward_fn f = {.op = {.kind = NNOPT_OP_DENSE}, .n_in = 3, .n_out = 1};
    f.in_values[0] = scope_random(&s, batch * in_features, -1, 1);
    f.in_values[1] = scope_random(&s, out_features * in_features, -1, 1);
    f.in_values[2] = scope_random(&s, out_features, -1, 1);
    f.in[0] = scope_tensor(&s, NNOPT_F64, 2, x_shape, f.in_values[0]);
    f.in[1] = scope_tensor(&s, NNOPT_F64, 2, w_shape, f.in_values[1]);
    f.in[2] = scope_tensor(&s, NNOPT_F64, 1, &out_features, f.in_values[2]);
    f.out[0] = scope_tensor(&s, NNOPT_F64, 2, y_shape, NULL);
    f.r = scope_random(&s, batch * out_features, -1, 1);
    f.scratch = scope_buffer(&s, batch * out_features);

    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, 2, y_shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, 2, x_shape, NULL);
    nnopt_tensor *dw = scope_tensor(&s, NNOPT_F64, 2, w_shape, NULL);
    nnopt_tensor *db = scope_tensor(&s, NNOPT_F64, 1, &out_features, NULL);
    run_ok(&(nnopt_op){.kind = NNOPT_OP_DENSE_BWD_DATA}, (nnopt_tensor *[]){dy, f.in[1]}, 2, &dx,
           1);
    run_ok(&(nnopt_op){.kind = NNOPT_OP_DENSE_BWD_WEIGHT}, (nnopt_tensor *[]){f.in[0], dy}, 2, &dw,
           1);
    run_ok(&(nnopt_op){.kind = NNOPT_OP_BIAS_BWD}, &dy, 1, &db, 1);

    check_gradient(&f, 0, read_all(&s, dx), "dense dx");
    check_gradient(&f, 1, read_all(&s, dw), "dense dw");
    check_gradient(&f, 2, read_all(&s, db), "dense db");
    scope_free(&s);
}

/* ---- pool2d -------------------------------------------------------------- */

typedef struct pool_case {
    int64_t n, c, h, w;
    nnopt_pool2d_params params;
} pool_case;

static void gradcheck_pool2d(void **state) {
    const pool_case *pc = *state;
    scope s = {0};
    seed_random();
    const nnopt_pool2d_params *pp = &pc->params;
    const int64_t p = (pc->h + 2 * pp->pad_h - pp->kernel_h) / pp->stride_h + 1;
    const int64_t q = (pc->w + 2 * pp->pad_w - pp->kernel_w) / pp->stride_w + 1;
    const int64_t x_shape[4] = {pc->n, pc->c, pc->h, pc->w};
    const int64_t y_shape[4] = {pc->n, pc->c, p, q};
    const int64_t y_count = pc->n * pc->c * p * q;
    forward_fn f = {.op = {.kind = NNOPT_OP_POOL2D, .p.pool2d = *pp}, .n_in = 1, .n_out = 1};
    /* Distinct random values: a max-pool window never holds a near-tie that
     * a step of h could flip. */
    f.in_values[0] = scope_random(&s, pc->n * pc->c * pc->h * pc->w, -1, 1);
    f.in[0] = scope_tensor(&s, NNOPT_F64, 4, x_shape, f.in_values[0]);
    f.out[0] = scope_tensor(&s, NNOPT_F64, 4, y_shape, NULL);
    f.r = scope_random(&s, y_count, -1, 1);
    f.scratch = scope_buffer(&s, y_count);

    run_ok(&f.op, f.in, 1, f.out, 1); /* y at the unperturbed x, for the backward op */
    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, 4, y_shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, 4, x_shape, NULL);
    nnopt_op op = f.op;
    op.kind = NNOPT_OP_POOL2D_BWD;
    run_ok(&op, (nnopt_tensor *[]){f.in[0], f.out[0], dy}, 3, &dx, 1);
    check_gradient(&f, 0, read_all(&s, dx),
                   pp->kind == NNOPT_POOL_MAX ? "max pool dx" : "avg pool dx");
    scope_free(&s);
}

static const pool_case pool_max_2x2 = {2, 2, 4, 4, {NNOPT_POOL_MAX, 2, 2, 2, 2, 0, 0}};
static const pool_case pool_max_3x3_pad = {2, 2, 5, 5, {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1}};
static const pool_case pool_max_rect = {1, 3, 5, 7, {NNOPT_POOL_MAX, 2, 3, 1, 2, 1, 1}};
static const pool_case pool_avg_2x2 = {2, 2, 4, 4, {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0}};
static const pool_case pool_avg_3x3_pad = {2, 2, 5, 5, {NNOPT_POOL_AVG, 3, 3, 2, 2, 1, 1}};
static const pool_case pool_avg_overlap = {1, 3, 5, 6, {NNOPT_POOL_AVG, 3, 2, 1, 1, 1, 1}};

/* ---- activations --------------------------------------------------------- */

static const nnopt_act_kind act_kinds[NNOPT_ACT_KIND_COUNT] = {
    NNOPT_ACT_IDENTITY, NNOPT_ACT_RELU,    NNOPT_ACT_GELU_TANH, NNOPT_ACT_GELU_ERF,
    NNOPT_ACT_TANH,     NNOPT_ACT_SIGMOID, NNOPT_ACT_RELU6};

static void gradcheck_act(void **state) {
    const nnopt_act_kind kind = *(const nnopt_act_kind *)*state;
    scope s = {0};
    seed_random();
    const int64_t shape[2] = {3, 7}, count = 21;
    forward_fn f = {.op = {.kind = NNOPT_OP_ACT, .p.act = {kind}}, .n_in = 1, .n_out = 1};
    /* Cover both kinks of relu6 (0 and 6), but keep every point at least
     * 0.01 away from them so that x +- h stays on one side. */
    f.in_values[0] = scope_random(&s, count, -3, 8);
    for (int64_t i = 0; i < count; i++) {
        double *x = &f.in_values[0][i];
        if (fabs(*x) < 0.01) *x += 0.02;
        if (fabs(*x - 6) < 0.01) *x += 0.02;
    }
    f.in[0] = scope_tensor(&s, NNOPT_F64, 2, shape, f.in_values[0]);
    f.out[0] = scope_tensor(&s, NNOPT_F64, 2, shape, NULL);
    f.r = scope_random(&s, count, -1, 1);
    f.scratch = scope_buffer(&s, count);

    run_ok(&f.op, f.in, 1, f.out, 1);
    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, 2, shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, 2, shape, NULL);
    nnopt_op op = f.op;
    op.kind = NNOPT_OP_ACT_BWD;
    run_ok(&op, (nnopt_tensor *[]){f.in[0], f.out[0], dy}, 3, &dx, 1);
    char what[64];
    snprintf(what, sizeof what, "%s dx", nnopt_act_kind_name(kind));
    check_gradient(&f, 0, read_all(&s, dx), what);
    scope_free(&s);
}

/* ---- softmax cross-entropy ----------------------------------------------- */

typedef struct xent_case {
    int soft_targets;
    int normalized; /* soft targets summing to 1 per row (or not: S p - t) */
    double temperature;
} xent_case;

static void gradcheck_softmax_xent(void **state) {
    const xent_case *xc = *state;
    scope s = {0};
    seed_random();
    const int64_t batch = 4, classes = 5;
    const int64_t logits_shape[2] = {batch, classes}, one = 1;
    forward_fn f = {
        .op = {.kind = NNOPT_OP_SOFTMAX_XENT, .p.xent = {xc->soft_targets, xc->temperature}},
        .n_in = 2,
        .n_out = 2,
        .checked_output = 0};
    f.in_values[0] = scope_random(&s, batch * classes, -3, 3);
    f.in[0] = scope_tensor(&s, NNOPT_F64, 2, logits_shape, f.in_values[0]);
    if (xc->soft_targets) {
        double *targets = scope_random(&s, batch * classes, 0, 1);
        for (int64_t n = 0; xc->normalized && n < batch; n++) {
            double row_sum = 0;
            for (int64_t k = 0; k < classes; k++) row_sum += targets[n * classes + k];
            for (int64_t k = 0; k < classes; k++) targets[n * classes + k] /= row_sum;
        }
        f.in[1] = scope_tensor(&s, NNOPT_F64, 2, logits_shape, targets);
    } else {
        double *labels = scope_buffer(&s, batch);
        for (int64_t n = 0; n < batch; n++) labels[n] = (double)(int)uniform(0, (double)classes);
        f.in[1] = scope_tensor(&s, NNOPT_I32, 1, &batch, labels);
    }
    f.out[0] = scope_tensor(&s, NNOPT_F64, 1, &one, NULL);
    f.out[1] = scope_tensor(&s, NNOPT_F64, 2, logits_shape, NULL);
    f.r = scope_random(&s, 1, 0.5, 2);
    f.scratch = scope_buffer(&s, 1);

    /* dL/dlogits = r * dloss/dlogits, the op's own second output. */
    run_ok(&f.op, f.in, 2, f.out, 2);
    double *analytic = read_all(&s, f.out[1]);
    for (int64_t i = 0; i < batch * classes; i++) analytic[i] *= f.r[0];
    check_gradient(&f, 0, analytic, "softmax_xent dlogits");
    scope_free(&s);
}

static const xent_case xent_labels = {0, 1, 1.0};
static const xent_case xent_labels_hot = {0, 1, 0.5};
static const xent_case xent_soft = {1, 1, 1.0};
static const xent_case xent_soft_warm = {1, 1, 2.5};
static const xent_case xent_soft_unnormalized = {1, 0, 1.5};

/* ---- batch normalization ------------------------------------------------- */

typedef struct bn_case {
    int ndim;         /* 4: x is [N,C,H,W]; 2: x is [N,C] */
    int64_t shape[4]; /* the first ndim entries are used */
} bn_case;

/* Training mode, where y depends on x through the batch mean and variance
 * too: the check covers the full gradient, not just gamma * invstd * dy. The
 * running statistics change at every evaluation but never affect y. */
static void gradcheck_batchnorm(void **state) {
    const bn_case *bc = *state;
    scope s = {0};
    seed_random();
    const int64_t channels = bc->shape[1];
    int64_t count = 1;
    for (int i = 0; i < bc->ndim; i++) count *= bc->shape[i];
    forward_fn f = {
        .op = {.kind = NNOPT_OP_BATCHNORM, .p.bn = {.eps = 1e-3, .momentum = 0.1, .training = 1}},
        .n_in = 5,
        .n_out = 3};
    f.in_values[0] = scope_random(&s, count, -2, 2);
    f.in_values[1] = scope_random(&s, channels, 0.5, 1.5);
    f.in_values[2] = scope_random(&s, channels, -1, 1);
    f.in[0] = scope_tensor(&s, NNOPT_F64, bc->ndim, bc->shape, f.in_values[0]);
    f.in[1] = scope_tensor(&s, NNOPT_F64, 1, &channels, f.in_values[1]);
    f.in[2] = scope_tensor(&s, NNOPT_F64, 1, &channels, f.in_values[2]);
    f.in[3] = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    f.in[4] = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    f.out[0] = scope_tensor(&s, NNOPT_F64, bc->ndim, bc->shape, NULL);
    f.out[1] = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    f.out[2] = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    f.r = scope_random(&s, count, -1, 1);
    f.scratch = scope_buffer(&s, count);

    run_ok(&f.op, f.in, 5, f.out, 3); /* save_mean and save_invstd at the unperturbed x */
    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, bc->ndim, bc->shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, bc->ndim, bc->shape, NULL);
    nnopt_tensor *dgamma = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    nnopt_tensor *dbeta = scope_tensor(&s, NNOPT_F64, 1, &channels, NULL);
    run_ok(&(nnopt_op){.kind = NNOPT_OP_BATCHNORM_BWD},
           (nnopt_tensor *[]){f.in[0], f.in[1], dy, f.out[1], f.out[2]}, 5,
           (nnopt_tensor *[]){dx, dgamma, dbeta}, 3);
    check_gradient(&f, 0, read_all(&s, dx), "batchnorm dx");
    check_gradient(&f, 1, read_all(&s, dgamma), "batchnorm dgamma");
    check_gradient(&f, 2, read_all(&s, dbeta), "batchnorm dbeta");
    scope_free(&s);
}

static const bn_case bn_4d = {4, {3, 2, 2, 3}};
static const bn_case bn_2d = {2, {5, 4}};

/* ---- dropout ------------------------------------------------------------- */

/* With the seed fixed the mask is fixed, so y = x * mask is linear in x. */
static void gradcheck_dropout(void **state) {
    (void)state;
    scope s = {0};
    seed_random();
    const int64_t shape[2] = {4, 6}, count = 24;
    forward_fn f = {.op = {.kind = NNOPT_OP_DROPOUT, .p.dropout = {.p = 0.4, .seed = 99}},
                    .n_in = 1,
                    .n_out = 2};
    f.in_values[0] = scope_random(&s, count, -1, 1);
    f.in[0] = scope_tensor(&s, NNOPT_F64, 2, shape, f.in_values[0]);
    f.out[0] = scope_tensor(&s, NNOPT_F64, 2, shape, NULL);
    f.out[1] = scope_tensor(&s, NNOPT_F64, 2, shape, NULL);
    f.r = scope_random(&s, count, -1, 1);
    f.scratch = scope_buffer(&s, count);

    run_ok(&f.op, f.in, 1, f.out, 2);
    nnopt_tensor *dy = scope_tensor(&s, NNOPT_F64, 2, shape, f.r);
    nnopt_tensor *dx = scope_tensor(&s, NNOPT_F64, 2, shape, NULL);
    run_ok(&(nnopt_op){.kind = NNOPT_OP_DROPOUT_BWD}, (nnopt_tensor *[]){dy, f.out[1]}, 2, &dx, 1);
    check_gradient(&f, 0, read_all(&s, dx), "dropout dx");
    scope_free(&s);
}

/* ---- the group ----------------------------------------------------------- */

#define CASE(name, fn, data)                                                                       \
    { name, fn, NULL, NULL, (void *)(data) }

int gradcheck_all(const char *name) {
    backend_name = name;
    const struct CMUnitTest tests[] = {
        CASE("conv2d stride 1 pad 1 bias", gradcheck_conv2d, &conv_plain),
        CASE("conv2d stride 2 pad 1", gradcheck_conv2d, &conv_stride2),
        CASE("conv2d 2x3 filter stride 2x1 pad 0x1 no bias", gradcheck_conv2d, &conv_rect_stride),
        CASE("conv2d groups 2", gradcheck_conv2d, &conv_groups2),
        CASE("conv2d depthwise stride 2", gradcheck_conv2d, &conv_depthwise),
        CASE("conv2d 5x5 no padding", gradcheck_conv2d, &conv_5x5_valid),
        CASE("dense", gradcheck_dense, NULL),
        CASE("max pool 2x2 stride 2", gradcheck_pool2d, &pool_max_2x2),
        CASE("max pool 3x3 stride 2 pad 1", gradcheck_pool2d, &pool_max_3x3_pad),
        CASE("max pool 2x3 stride 1x2 pad 1", gradcheck_pool2d, &pool_max_rect),
        CASE("avg pool 2x2 stride 2", gradcheck_pool2d, &pool_avg_2x2),
        CASE("avg pool 3x3 stride 2 pad 1", gradcheck_pool2d, &pool_avg_3x3_pad),
        CASE("avg pool 3x2 stride 1 pad 1", gradcheck_pool2d, &pool_avg_overlap),
        CASE("act identity", gradcheck_act, &act_kinds[NNOPT_ACT_IDENTITY]),
        CASE("act relu", gradcheck_act, &act_kinds[NNOPT_ACT_RELU]),
        CASE("act gelu", gradcheck_act, &act_kinds[NNOPT_ACT_GELU_TANH]),
        CASE("act gelu_erf", gradcheck_act, &act_kinds[NNOPT_ACT_GELU_ERF]),
        CASE("act tanh", gradcheck_act, &act_kinds[NNOPT_ACT_TANH]),
        CASE("act sigmoid", gradcheck_act, &act_kinds[NNOPT_ACT_SIGMOID]),
        CASE("act relu6", gradcheck_act, &act_kinds[NNOPT_ACT_RELU6]),
        CASE("softmax_xent labels", gradcheck_softmax_xent, &xent_labels),
        CASE("softmax_xent labels T=0.5", gradcheck_softmax_xent, &xent_labels_hot),
        CASE("softmax_xent soft targets", gradcheck_softmax_xent, &xent_soft),
        CASE("softmax_xent soft targets T=2.5", gradcheck_softmax_xent, &xent_soft_warm),
        CASE("softmax_xent unnormalized targets T=1.5", gradcheck_softmax_xent,
             &xent_soft_unnormalized),
        CASE("batchnorm training [3,2,2,3]", gradcheck_batchnorm, &bn_4d),
        CASE("batchnorm training [5,4]", gradcheck_batchnorm, &bn_2d),
        CASE("dropout p=0.4", gradcheck_dropout, NULL),
    };
    char group_name[128];
    snprintf(group_name, sizeof group_name, "gradcheck %s", name);
    return cmocka_run_group_tests_name(group_name, tests, open_backend, close_backend);
}
