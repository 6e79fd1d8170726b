#include "backend_compare.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

const nnopt_dtype compare_dtypes[COMPARE_N_DTYPES] = {NNOPT_F32, NNOPT_F64};

static backend_comparison comparison;

void compare_backends(const backend_comparison *c) {
    comparison = *c;
}

/* ---- tensors described by shape and kind of values ---- */

tensor_spec spec4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return (tensor_spec){.ndim = 4, .shape = {a, b, c, d}};
}
tensor_spec spec2(int64_t a, int64_t b) {
    return (tensor_spec){.ndim = 2, .shape = {a, b}};
}
tensor_spec spec1(int64_t a) {
    return (tensor_spec){.ndim = 1, .shape = {a}};
}

int64_t spec_numel(const tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
    return n;
}

double *spec_values(const tensor_spec *s) {
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

/* ---- one op on both backends ---- */

static double term_scale;
static double worst_error[COMPARE_N_DTYPES]; /* f32, f64: see compare_worst_error */

double compare_worst_error(nnopt_dtype dtype, int reset) {
    double *worst = &worst_error[dtype == NNOPT_F32 ? 0 : 1];
    const double value = *worst;
    if (reset) *worst = 0;
    return value;
}

void compare_set_term_scale(double scale) {
    term_scale = scale;
}

void compare_values(const char *what, int index, nnopt_dtype dtype, const double *got,
                    const double *want, int64_t n) {
    double scale = term_scale;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    const double bound = dtype == NNOPT_F32 ? comparison.f32_bound : comparison.f64_bound;
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]);
        const double ratio = err / (fabs(want[i]) + scale + 1e-300);
        double *worst = &worst_error[dtype == NNOPT_F32 ? 0 : 1];
        if (ratio > *worst) *worst = ratio;
        if (!(err <= bound * (fabs(want[i]) + scale) + 1e-14)) {
            print_error("%s tensor %d element %lld: %s %.17g, ref %.17g (scale %g, %s)\n", what,
                        index, (long long)i, comparison.tested->name, got[i], want[i], scale,
                        nnopt_dtype_name(dtype));
            fail();
        }
    }
}

/* Whether the tested backend has an optional op (a fused one); says so when not. */
static int tested_has(nnopt_op_kind kind, nnopt_dtype dtype) {
    test_backend *tested = comparison.tested;
    if (tested->vt->supports(tested->ctx, kind, dtype)) return 1;
    print_message("# tested backend has no %s (%s): not compared\n", nnopt_op_kind_name(kind),
                  nnopt_dtype_name(dtype));
    return 0;
}

int compare_reference_has(nnopt_op_kind kind, nnopt_dtype dtype) {
    test_backend *ref = comparison.reference;
    if (ref->vt->supports(ref->ctx, kind, dtype)) return 1;
    print_message("# reference backend lacks %s (%s): not compared\n", nnopt_op_kind_name(kind),
                  nnopt_dtype_name(dtype));
    return 0;
}

/* Reads t (on b) back as doubles (caller frees). */
static double *read_values(test_backend *b, const nnopt_tensor *t) {
    const int64_t n = nnopt_tensor_numel(t);
    double *values = calloc((size_t)(n > 0 ? n : 1), sizeof *values);
    assert_non_null(values);
    test_tensor_read(b, t, values);
    return values;
}

/* Compares tensor `index` of the tested backend's `got` with the reference's `want`. */
static void compare_tensors(const char *what, int index, nnopt_dtype dtype, const nnopt_tensor *got,
                            const nnopt_tensor *want) {
    double *got_values = read_values(comparison.tested, got);
    double *want_values = read_values(comparison.reference, want);
    compare_values(what, index, dtype, got_values, want_values, nnopt_tensor_numel(want));
    free(got_values);
    free(want_values);
}

/* The tensors of one op on both backends. */
typedef struct op_tensors {
    nnopt_tensor *tested_in[COMPARE_MAX_TENSORS], *ref_in[COMPARE_MAX_TENSORS];
    nnopt_tensor *tested_out[COMPARE_MAX_TENSORS], *ref_out[COMPARE_MAX_TENSORS];
} op_tensors;

/* Outputs: the reference's start as zeros, the tested backend's as garbage,
 * so an op that forgets to write one fails. */
static void new_outputs(op_tensors *t, nnopt_dtype dtype, int n_out, const tensor_spec *out_specs) {
    for (int i = 0; i < n_out; i++) {
        const tensor_spec *s = &out_specs[i];
        const nnopt_dtype dt = s->dtype_override ? s->dtype : dtype;
        double *garbage = spec_values(s);
        t->tested_out[i] = test_tensor_new(comparison.tested, dt, s->ndim, s->shape, garbage);
        t->ref_out[i] = test_tensor_new(comparison.reference, dt, s->ndim, s->shape, NULL);
        assert_non_null(t->tested_out[i]);
        assert_non_null(t->ref_out[i]);
        free(garbage);
    }
}

/* Outputs that start with the same random values on both backends (ops that
 * add into their output). */
static void same_outputs(op_tensors *t, nnopt_dtype dtype, int n_out,
                         const tensor_spec *out_specs) {
    for (int i = 0; i < n_out; i++) {
        const tensor_spec *s = &out_specs[i];
        double *start = spec_values(s);
        t->tested_out[i] = test_tensor_new(comparison.tested, dtype, s->ndim, s->shape, start);
        t->ref_out[i] = test_tensor_new(comparison.reference, dtype, s->ndim, s->shape, start);
        assert_non_null(t->tested_out[i]);
        assert_non_null(t->ref_out[i]);
        free(start);
    }
}

static void run_both(const nnopt_op *op, op_tensors *t, int n_in, int n_out) {
    assert_int_equal(test_run(comparison.reference, op, t->ref_in, n_in, t->ref_out, n_out),
                     NNOPT_OK);
    assert_int_equal(test_run(comparison.tested, op, t->tested_in, n_in, t->tested_out, n_out),
                     NNOPT_OK);
}

static void free_op_tensors(op_tensors *t, int n_in, int n_out) {
    for (int i = 0; i < n_in; i++) {
        test_tensor_free(comparison.tested, t->tested_in[i]);
        test_tensor_free(comparison.reference, t->ref_in[i]);
    }
    for (int i = 0; i < n_out; i++) {
        test_tensor_free(comparison.tested, t->tested_out[i]);
        test_tensor_free(comparison.reference, t->ref_out[i]);
    }
}

void check_op(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
              const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs) {
    if (comparison.skip_ops_reference_lacks && !compare_reference_has(op->kind, dtype)) return;
    assert_true(n_in <= COMPARE_MAX_TENSORS && n_out <= COMPARE_MAX_TENSORS);
    op_tensors t = {0};
    for (int i = 0; i < n_in; i++) {
        const tensor_spec *s = &in_specs[i];
        const nnopt_dtype dt =
            s->values == VALUES_LABELS ? NNOPT_I32 : (s->dtype_override ? s->dtype : dtype);
        double *values = spec_values(s);
        t.tested_in[i] = test_tensor_new(comparison.tested, dt, s->ndim, s->shape, values);
        t.ref_in[i] = test_tensor_new(comparison.reference, dt, s->ndim, s->shape, values);
        assert_non_null(t.tested_in[i]);
        assert_non_null(t.ref_in[i]);
        free(values);
    }
    new_outputs(&t, dtype, n_out, out_specs);
    run_both(op, &t, n_in, n_out);

    for (int pass = 0; pass < 2; pass++) {
        const int count = pass == 0 ? n_out : n_in;
        for (int i = 0; i < count; i++) {
            nnopt_tensor *got = pass == 0 ? t.tested_out[i] : t.tested_in[i];
            nnopt_tensor *want = pass == 0 ? t.ref_out[i] : t.ref_in[i];
            char label[160];
            snprintf(label, sizeof label, "%s (%s)", what, pass == 0 ? "output" : "input");
            /* I32 tensors (labels) have no bound of their own: the op dtype's. */
            compare_tensors(label, i, got->dtype == NNOPT_I32 ? dtype : got->dtype, got, want);
        }
    }
    free_op_tensors(&t, n_in, n_out);
}

void check_op_adding(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                     const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs) {
    assert_true(n_in <= COMPARE_MAX_TENSORS && n_out <= COMPARE_MAX_TENSORS);
    op_tensors t = {0};
    for (int i = 0; i < n_in; i++) {
        const tensor_spec *s = &in_specs[i];
        double *values = spec_values(s);
        t.tested_in[i] = test_tensor_new(comparison.tested, dtype, s->ndim, s->shape, values);
        t.ref_in[i] = test_tensor_new(comparison.reference, dtype, s->ndim, s->shape, values);
        assert_true(t.tested_in[i] && t.ref_in[i]);
        free(values);
    }
    same_outputs(&t, dtype, n_out, out_specs);
    run_both(op, &t, n_in, n_out);
    for (int i = 0; i < n_out; i++) compare_tensors(what, i, dtype, t.tested_out[i], t.ref_out[i]);
    free_op_tensors(&t, n_in, n_out);
}

void check_op_with_values(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                          const tensor_spec *in_specs, double *const *values, int n_out,
                          const tensor_spec *out_specs) {
    assert_true(n_in <= COMPARE_MAX_TENSORS && n_out <= COMPARE_MAX_TENSORS);
    op_tensors t = {0};
    for (int i = 0; i < n_in; i++) {
        const tensor_spec *s = &in_specs[i];
        t.tested_in[i] = test_tensor_new(comparison.tested, dtype, s->ndim, s->shape, values[i]);
        t.ref_in[i] = test_tensor_new(comparison.reference, dtype, s->ndim, s->shape, values[i]);
        assert_true(t.tested_in[i] && t.ref_in[i]);
    }
    new_outputs(&t, dtype, n_out, out_specs);
    run_both(op, &t, n_in, n_out);
    for (int i = 0; i < n_out; i++) compare_tensors(what, i, dtype, t.tested_out[i], t.ref_out[i]);
    free_op_tensors(&t, n_in, n_out);
}

double *reference_forward(const nnopt_op *forward, nnopt_dtype dtype, int n_in,
                          const tensor_spec *in_specs, double *const *fwd_values, int n_out,
                          const tensor_spec *out_specs, int which) {
    assert_true(n_in <= COMPARE_MAX_TENSORS && n_out <= COMPARE_MAX_TENSORS);
    test_backend *ref = comparison.reference;
    nnopt_tensor *ins[COMPARE_MAX_TENSORS] = {0}, *outs[COMPARE_MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++)
        ins[i] = test_tensor_new(ref, dtype, in_specs[i].ndim, in_specs[i].shape, fwd_values[i]);
    for (int i = 0; i < n_out; i++)
        outs[i] = test_tensor_new(ref, dtype, out_specs[i].ndim, out_specs[i].shape, NULL);
    assert_int_equal(test_run(ref, forward, ins, n_in, outs, n_out), NNOPT_OK);
    double *values = read_values(ref, outs[which]);
    for (int i = 0; i < n_in; i++) test_tensor_free(ref, ins[i]);
    for (int i = 0; i < n_out; i++) test_tensor_free(ref, outs[i]);
    return values;
}

/* ---- op families, in both dtypes ---- */

/* A layer y = forward(x, w [, b]) in both dtypes: forward with and without
 * bias, then the gradients of x and of w (`op` carries the parameters). */
static void check_layer(const char *what, nnopt_op op, nnopt_op_kind bwd_data,
                        nnopt_op_kind bwd_weight, const tensor_spec *x, const tensor_spec *w,
                        const tensor_spec *b, const tensor_spec *y) {
    const nnopt_op_kind forward = op.kind;
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        op.kind = forward;
        const tensor_spec fwd_in[3] = {*x, *w, *b};
        check_op(what, &op, compare_dtypes[d], 3, fwd_in, 1, y);
        check_op(what, &op, compare_dtypes[d], 2, fwd_in, 1, y); /* without bias */
        op.kind = bwd_data;
        const tensor_spec data_in[2] = {*y, *w};
        check_op(what, &op, compare_dtypes[d], 2, data_in, 1, x);
        op.kind = bwd_weight;
        const tensor_spec weight_in[2] = {*x, *y};
        check_op(what, &op, compare_dtypes[d], 2, weight_in, 1, w);
    }
}

void check_conv_case(const conv_case *cc, const char *label) {
    const int64_t p = (cc->h + 2 * cc->p.pad_h - cc->r) / cc->p.stride_h + 1;
    const int64_t q = (cc->w + 2 * cc->p.pad_w - cc->s) / cc->p.stride_w + 1;
    const tensor_spec x = spec4(cc->n, cc->c, cc->h, cc->w);
    const tensor_spec w = spec4(cc->k, cc->c / cc->p.groups, cc->r, cc->s);
    const tensor_spec y = spec4(cc->n, cc->k, p, q), b = spec1(cc->k);
    char what[200];
    snprintf(what, sizeof what, "%s conv2d N%lld C%lld %lldx%lld K%lld %lldx%lld s%d,%d p%d,%d g%d",
             label, (long long)cc->n, (long long)cc->c, (long long)cc->h, (long long)cc->w,
             (long long)cc->k, (long long)cc->r, (long long)cc->s, cc->p.stride_h, cc->p.stride_w,
             cc->p.pad_h, cc->p.pad_w, cc->p.groups);
    nnopt_op op = {.kind = NNOPT_OP_CONV2D};
    op.p.conv2d = cc->p;
    check_layer(what, op, NNOPT_OP_CONV2D_BWD_DATA, NNOPT_OP_CONV2D_BWD_FILTER, &x, &w, &b, &y);
    /* The fused conv2d_relu on the same path (the reference's is conv2d, then relu). */
    op.kind = NNOPT_OP_CONV2D_RELU;
    const tensor_spec fwd_in[3] = {x, w, b}, data_in[2] = {y, w};
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
        if (tested_has(op.kind, compare_dtypes[d])) {
            check_op(what, &op, compare_dtypes[d], 3, fwd_in, 1, &y);
            check_op(what, &op, compare_dtypes[d], 2, fwd_in, 1, &y);
        }
    /* conv2d_add_relu: a residual shaped as y */
    op.kind = NNOPT_OP_CONV2D_ADD_RELU;
    const tensor_spec residual_in[4] = {x, w, b, y};
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
        if (tested_has(op.kind, compare_dtypes[d]))
            check_op(what, &op, compare_dtypes[d], 4, residual_in, 1, &y);
    /* conv2d_bwd_data_add: dx starts with the same values on both */
    op.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD;
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
        if (tested_has(op.kind, compare_dtypes[d])) {
            char label[240];
            snprintf(label, sizeof label, "%s, data gradient added in", what);
            check_op_adding(label, &op, compare_dtypes[d], 2, data_in, 1, &x);
        }
    /* conv2d_bwd_data_add_masked: added where a relu output shaped as x (random
     * values, about half of them > 0) is positive, 0 elsewhere */
    op.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
    const tensor_spec masked_in[3] = {y, w, x};
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
        if (tested_has(op.kind, compare_dtypes[d])) {
            char label[240];
            snprintf(label, sizeof label, "%s, data gradient added in, masked", what);
            check_op_adding(label, &op, compare_dtypes[d], 3, masked_in, 1, &x);
        }
}

void check_conv_random_shapes(int rounds) {
    for (int round = 0; round < rounds; round++) {
        /* One statement per draw: the draws' order fixes the shapes. */
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

void check_dense_case(int64_t n, int64_t in, int64_t out) {
    const tensor_spec x = spec2(n, in), w = spec2(out, in), b = spec1(out), y = spec2(n, out);
    char what[120];
    snprintf(what, sizeof what, "dense N%lld IN%lld OUT%lld", (long long)n, (long long)in,
             (long long)out);
    const nnopt_op op = {.kind = NNOPT_OP_DENSE};
    check_layer(what, op, NNOPT_OP_DENSE_BWD_DATA, NNOPT_OP_DENSE_BWD_WEIGHT, &x, &w, &b, &y);
}

void check_dense_cases(int random_rounds) {
    check_dense_case(128, 400, 120); /* LeNet-5's layers */
    check_dense_case(128, 84, 10);
    check_dense_case(1, 7, 3);
    for (int round = 0; round < random_rounds; round++)
        check_dense_case(rng_int(1, 40), rng_int(1, 70), rng_int(1, 50));
}

void check_bias_bwd_random_shapes(int rounds) {
    nnopt_op op = {.kind = NNOPT_OP_BIAS_BWD};
    for (int round = 0; round < rounds; round++) {
        const int64_t n = rng_int(1, 9), k = rng_int(1, 17);
        const tensor_spec dy4 = spec4(n, k, rng_int(1, 20), rng_int(1, 20)), dy2 = spec2(n, k);
        const tensor_spec db = spec1(k);
        for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
            check_op("bias_bwd 4-D", &op, compare_dtypes[d], 1, &dy4, 1, &db);
            check_op("bias_bwd 2-D", &op, compare_dtypes[d], 1, &dy2, 1, &db);
        }
    }
}

void check_pool_case(int64_t n, int64_t c, int64_t h, int64_t w, const nnopt_pool2d_params *pp) {
    const int64_t p = (h + 2 * pp->pad_h - pp->kernel_h) / pp->stride_h + 1;
    const int64_t q = (w + 2 * pp->pad_w - pp->kernel_w) / pp->stride_w + 1;
    const tensor_spec x = spec4(n, c, h, w), y = spec4(n, c, p, q);
    char what[160];
    snprintf(what, sizeof what, "pool2d %s %lldx%lld k%dx%d s%d,%d p%d,%d",
             pp->kind == NNOPT_POOL_MAX ? "max" : "avg", (long long)h, (long long)w, pp->kernel_h,
             pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_POOL2D};
        op.p.pool2d = *pp;
        check_op(what, &op, compare_dtypes[d], 1, &x, 1, &y);
        double *xv = spec_values(&x), *dyv = spec_values(&y);
        double *yv = reference_forward(&op, compare_dtypes[d], 1, &x, &xv, 1, &y, 0);
        op.kind = NNOPT_OP_POOL2D_BWD;
        const tensor_spec bwd_in[3] = {x, y, y};
        double *const values[3] = {xv, yv, dyv};
        check_op_with_values(what, &op, compare_dtypes[d], 3, bwd_in, values, 1, &x);
        free(xv), free(yv), free(dyv);
    }
}

void check_pool_cases(int random_rounds) {
    const nnopt_pool2d_params lenet = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    check_pool_case(4, 6, 28, 28, &lenet);
    const nnopt_pool2d_params max3 = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    check_pool_case(3, 5, 9, 8, &max3);
    for (int round = 0; round < random_rounds; round++) {
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

void check_activations(act_bwd_y y) {
    for (int kind = 0; kind < NNOPT_ACT_KIND_COUNT; kind++) {
        for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
            const int64_t sizes[] = {1, 37, 100003};
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                tensor_spec x = spec2(1, sizes[si]);
                x.range = si == 1 ? 0.3 : 8.0;
                char what[80];
                snprintf(what, sizeof what, "act %s x%lld", nnopt_act_kind_name(kind),
                         (long long)sizes[si]);
                nnopt_op op = {.kind = NNOPT_OP_ACT};
                op.p.act.kind = (nnopt_act_kind)kind;
                check_op(what, &op, compare_dtypes[d], 1, &x, 1, &x);
                /* act_bwd's inputs: x, y, dy */
                nnopt_op bwd = op;
                bwd.kind = NNOPT_OP_ACT_BWD;
                const tensor_spec bwd_in[3] = {x, x, x};
                if (y == ACT_BWD_RANDOM_Y) {
                    check_op(what, &bwd, compare_dtypes[d], 3, bwd_in, 1, &x);
                } else {
                    double *xv = spec_values(&x), *dyv = spec_values(&x);
                    double *yv = reference_forward(&op, compare_dtypes[d], 1, &x, &xv, 1, &x, 0);
                    double *const values[3] = {xv, yv, dyv};
                    check_op_with_values(what, &bwd, compare_dtypes[d], 3, bwd_in, values, 1, &x);
                    free(xv), free(yv), free(dyv);
                }
            }
        }
    }
}

void check_add_case(nnopt_dtype dtype) {
    nnopt_op op = {.kind = NNOPT_OP_ADD};
    const int64_t sizes[] = {1, 1000, 200001};
    const int add_relu = tested_has(NNOPT_OP_ADD_RELU, dtype);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const tensor_spec t = spec2(1, sizes[si]);
        const tensor_spec ins[2] = {t, t};
        op.kind = NNOPT_OP_ADD;
        check_op("add", &op, dtype, 2, ins, 1, &t);
        op.kind = NNOPT_OP_ADD_RELU;
        if (add_relu) check_op("add_relu", &op, dtype, 2, ins, 1, &t);
    }
    /* y aliasing a */
    test_backend *tested = comparison.tested;
    const int64_t shape[2] = {3, 1001};
    double *a = calloc(3003, sizeof *a), *b = calloc(3003, sizeof *b),
           *got = calloc(3003, sizeof *got);
    assert_true(a && b && got);
    for (int i = 0; i < 3003; i++) a[i] = rng_uniform(-1, 1), b[i] = rng_uniform(-1, 1);
    for (int relu = 0; relu <= add_relu; relu++) {
        op.kind = relu ? NNOPT_OP_ADD_RELU : NNOPT_OP_ADD;
        nnopt_tensor *ta = test_tensor_new(tested, dtype, 2, shape, a);
        nnopt_tensor *tb = test_tensor_new(tested, dtype, 2, shape, b);
        nnopt_tensor *ins[2] = {ta, tb}, *outs[1] = {ta};
        assert_int_equal(test_run(tested, &op, ins, 2, outs, 1), NNOPT_OK);
        test_tensor_read(tested, ta, got);
        for (int i = 0; i < 3003; i++) {
            const double want = relu && a[i] + b[i] < 0 ? 0 : a[i] + b[i];
            assert_true(fabs(got[i] - want) <= 1e-6 * (1 + fabs(want)));
        }
        test_tensor_free(tested, ta);
        test_tensor_free(tested, tb);
    }
    free(a), free(b), free(got);
}

/* Where want is NaN or a zero, got must be too, with the same sign; both
 * are then set to 0 so compare_values checks the rest within the bound. */
static void compare_special_values(const char *what, int index, nnopt_dtype dtype, double *got,
                                   double *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const int nan = isnan(want[i]) != 0, zero = want[i] == 0;
        if (nan || zero || isnan(got[i])) {
            const int same = nan ? isnan(got[i]) != 0
                                 : zero && got[i] == 0 && !signbit(got[i]) == !signbit(want[i]);
            if (!same) {
                print_error("%s tensor %d element %lld: %s %g, ref %g (%s)\n", what, index,
                            (long long)i, comparison.tested->name, got[i], want[i],
                            nnopt_dtype_name(dtype));
                fail();
            }
            got[i] = want[i] = 0;
        }
    }
    compare_values(what, index, dtype, got, want, n);
}

/* Runs op on both backends with the given inputs and starting outputs, and
 * compares the outputs with compare_special_values. */
static void check_special_values(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                                 const tensor_spec *in_specs, double *const *in_values, int n_out,
                                 const tensor_spec *out_specs, double *const *out_values) {
    if (!tested_has(op->kind, dtype) || !compare_reference_has(op->kind, dtype)) return;
    op_tensors t = {0};
    for (int i = 0; i < n_in + n_out; i++) {
        const tensor_spec *s = i < n_in ? &in_specs[i] : &out_specs[i - n_in];
        const double *values = i < n_in ? in_values[i] : out_values[i - n_in];
        nnopt_tensor **tested = i < n_in ? &t.tested_in[i] : &t.tested_out[i - n_in];
        nnopt_tensor **ref = i < n_in ? &t.ref_in[i] : &t.ref_out[i - n_in];
        *tested = test_tensor_new(comparison.tested, dtype, s->ndim, s->shape, values);
        *ref = test_tensor_new(comparison.reference, dtype, s->ndim, s->shape, values);
        assert_true(*tested && *ref);
    }
    run_both(op, &t, n_in, n_out);
    for (int i = 0; i < n_out; i++) {
        double *got = read_values(comparison.tested, t.tested_out[i]);
        double *want = read_values(comparison.reference, t.ref_out[i]);
        compare_special_values(what, i, dtype, got, want, nnopt_tensor_numel(t.ref_out[i]));
        free(got);
        free(want);
    }
    free_op_tensors(&t, n_in, n_out);
}

void check_relu_special_values(nnopt_dtype dtype) {
    /* add_relu: relu(v) = v < 0 ? 0 : v, so NaN and -0 (-0 + -0) pass. */
    const tensor_spec row = spec2(1, 8);
    double a[8] = {NAN, -0.0, 0.0, -1.5, 2.25, -0.0, 1.0, -2.0};
    double b[8] = {1.0, -0.0, -0.0, 0.5, -3.0, 0.0, NAN, 2.0};
    double y[8] = {0};
    nnopt_op op = {.kind = NNOPT_OP_ADD_RELU};
    const tensor_spec pair[2] = {row, row};
    check_special_values("add_relu, NaN and -0", &op, dtype, 2, pair, (double *const[]){a, b}, 1,
                         &row, (double *const[]){y});

    /* Inference batch norm of x[2, 4] (the identity but for eps): batchnorm_relu
     * gives +0 for NaN and -0 (v > 0 ? v : 0); batchnorm_add_relu's relu lets
     * NaN through. */
    const tensor_spec x = spec2(2, 4), channel = spec1(4);
    double xv[8] = {NAN, -0.0, 0.0, -1.0, 2.0, 0.5, -0.25, NAN};
    double gamma[4] = {1, 1, 1, 1}, beta[4] = {0, 0, 0, 0}, mean[4] = {0, 0, 0, 0},
           var[4] = {1, 1, 1, 1};
    /* r avoids sums whose zero sign would depend on how the batch norm rounds */
    double r[8] = {1.0, 0.0, 1.0, 0.5, -3.0, -0.5, 1.0, 1.0};
    const tensor_spec bn_in[6] = {x, channel, channel, channel, channel, x};
    op = (nnopt_op){.kind = NNOPT_OP_BATCHNORM_RELU};
    op.p.bn = (nnopt_bn_params){1e-5, 0.1, 0};
    double *const bn_values[6] = {xv, gamma, beta, mean, var, r};
    check_special_values("batchnorm_relu (inference), NaN and -0", &op, dtype, 5, bn_in, bn_values,
                         1, &x, (double *const[]){y});
    op.kind = NNOPT_OP_BATCHNORM_ADD_RELU;
    check_special_values("batchnorm_add_relu (inference), NaN", &op, dtype, 6, bn_in, bn_values, 1,
                         &x, (double *const[]){y});

    /* conv2d_bwd_data_add_masked through a 1x1 convolution: dx = y > 0 ?
     * dx + dy : +0, so NaN and -0 in y give +0. */
    const tensor_spec image = spec4(1, 1, 2, 4), filter = spec4(1, 1, 1, 1);
    double dy[8] = {0.5, -1.0, 2.0, 0.25, -0.5, 1.5, 3.0, -2.0}, w[1] = {1.0};
    double relu_y[8] = {NAN, -0.0, 0.0, 1.0, -1.0, 2.0, NAN, 0.5};
    double dx[8] = {1, 2, 3, 4, 5, 6, 7, -8};
    op = (nnopt_op){.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED};
    op.p.conv2d = (nnopt_conv2d_params){1, 1, 0, 0, 1};
    const tensor_spec masked_in[3] = {image, filter, image};
    check_special_values("conv2d_bwd_data_add_masked, NaN and -0 in y", &op, dtype, 3, masked_in,
                         (double *const[]){dy, w, relu_y}, 1, &image, (double *const[]){dx});
}

void check_cast_case(nnopt_dtype dtype) {
    nnopt_op cast = {.kind = NNOPT_OP_CAST};
    const tensor_spec param = spec2(7, 13);
    for (int same = 0; same < 2; same++) {
        tensor_spec other = param;
        other.dtype_override = 1;
        other.dtype = same ? dtype : (dtype == NNOPT_F32 ? NNOPT_F64 : NNOPT_F32);
        check_op(same ? "cast (copy)" : "cast", &cast, dtype, 1, &param, 1, &other);
    }
}

void check_batchnorm_case(const tensor_spec *x) {
    const int64_t channels = x->shape[1];
    const tensor_spec channel = spec1(channels);
    tensor_spec positive = channel;
    positive.values = VALUES_POSITIVE;
    positive.range = 2;
    char what[160];
    snprintf(what, sizeof what, "batchnorm %dD N%lld C%lld spatial %lld offset %g", x->ndim,
             (long long)x->shape[0], (long long)channels,
             (long long)(x->ndim == 4 ? x->shape[2] * x->shape[3] : 1), x->offset);
    const tensor_spec fwd_in[5] = {*x, channel, channel, channel, positive};
    const tensor_spec residual_in[6] = {*x, channel, channel, channel, positive, *x};
    const tensor_spec train_out[3] = {*x, channel, positive};
    const tensor_spec bwd_in[6] = {*x, channel, *x, channel, channel, *x};
    const tensor_spec bwd_out[3] = {*x, channel, channel};
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        const nnopt_dtype dt = compare_dtypes[d];
        if (!compare_reference_has(NNOPT_OP_BATCHNORM, dt)) continue;
        nnopt_op op = {.kind = NNOPT_OP_BATCHNORM};
        op.p.bn = (nnopt_bn_params){1e-5, 0.1, 1};
        check_op(what, &op, dt, 5, fwd_in, 3, train_out);
        op.p.bn.training = 0;
        check_op(what, &op, dt, 5, fwd_in, 1, train_out);
        /* The fused relu, and a residual added before it (batchnorm_add_relu). */
        const nnopt_op_kind fused[2] = {NNOPT_OP_BATCHNORM_RELU, NNOPT_OP_BATCHNORM_ADD_RELU};
        for (int f = 0; f < 2; f++) {
            op.kind = fused[f];
            if (!tested_has(op.kind, dt)) continue;
            for (int training = 1; training >= 0; training--) {
                op.p.bn.training = training;
                check_op(what, &op, dt, f == 0 ? 5 : 6, f == 0 ? fwd_in : residual_in,
                         training ? 3 : 1, train_out);
            }
        }

        /* The gradients, given the statistics of a real forward pass. */
        op.kind = NNOPT_OP_BATCHNORM;
        op.p.bn.training = 1;
        double *fwd_values[5];
        for (int i = 0; i < 5; i++) fwd_values[i] = spec_values(&fwd_in[i]);
        double *mean = reference_forward(&op, dt, 5, fwd_in, fwd_values, 3, train_out, 1);
        double *invstd = reference_forward(&op, dt, 5, fwd_in, fwd_values, 3, train_out, 2);
        double *dy = spec_values(x), *relu_y = spec_values(x);
        /* y as a relu leaves it: about half exactly 0, where dy is dropped. */
        for (int64_t i = 0; i < spec_numel(x); i++) relu_y[i] = fmax(0, relu_y[i]);
        /* dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) cancels
         * to 0 where a channel has one value: compare it against its terms. */
        double terms = 0, dy_max = 0;
        for (int64_t c = 0; c < channels; c++)
            terms = fmax(terms, fabs(fwd_values[1][c] * invstd[c]));
        for (int64_t i = 0; i < spec_numel(x); i++) dy_max = fmax(dy_max, fabs(dy[i]));
        compare_set_term_scale(terms * dy_max);
        nnopt_op bwd = {.kind = NNOPT_OP_BATCHNORM_BWD};
        bwd.p.bn = op.p.bn;
        double *const bwd_values[6] = {fwd_values[0], fwd_values[1], dy, mean, invstd, relu_y};
        if (compare_reference_has(bwd.kind, dt))
            check_op_with_values(what, &bwd, dt, 5, bwd_in, bwd_values, 3, bwd_out);
        bwd.kind = NNOPT_OP_BATCHNORM_RELU_BWD;
        if (tested_has(bwd.kind, dt) && compare_reference_has(bwd.kind, dt))
            check_op_with_values(what, &bwd, dt, 6, bwd_in, bwd_values, 3, bwd_out);
        compare_set_term_scale(0);
        for (int i = 0; i < 5; i++) free(fwd_values[i]);
        free(mean), free(invstd), free(dy), free(relu_y);
    }
}

void check_softmax_xent_case(nnopt_dtype dtype, int64_t n, int64_t k) {
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
    check_op("softmax_xent labels", &op, dtype, 2, hard_in, 2, outs);
    tensor_spec probs = logits;
    probs.values = VALUES_PROBS;
    const tensor_spec soft_in[2] = {logits, probs};
    op.p.xent.soft_targets = 1;
    op.p.xent.temperature = 2.0;
    check_op("softmax_xent soft T=2", &op, dtype, 2, soft_in, 2, outs);
}

void check_optimizer_case(nnopt_dtype dtype, int64_t rows, int64_t cols) {
    const tensor_spec param = spec2(rows, cols);
    tensor_spec v = param;
    v.values = VALUES_POSITIVE;
    nnopt_op sgd = {.kind = NNOPT_OP_SGD_UPDATE};
    sgd.p.sgd = (nnopt_sgd_params){0.1, 0.0, 0.0, 0};
    const tensor_spec sgd_in[3] = {param, param, param};
    check_op("sgd", &sgd, dtype, 2, sgd_in, 0, NULL);
    sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 0};
    check_op("sgd momentum", &sgd, dtype, 3, sgd_in, 0, NULL);
    sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 1};
    check_op("sgd nesterov", &sgd, dtype, 3, sgd_in, 0, NULL);
    nnopt_op adam = {.kind = NNOPT_OP_ADAM_UPDATE};
    adam.p.adam = (nnopt_adam_params){1e-3, 0.9, 0.999, 1e-8, 1e-2, 3};
    const tensor_spec adam_in[4] = {param, param, param, v};
    check_op("adam", &adam, dtype, 4, adam_in, 0, NULL);
}

void check_optimizer_sequence(nnopt_dtype dtype) {
    enum { N_PARAMS = 6, PER_PARAM = 4 }; /* param, grad, velocity or m, v */
    static const int64_t sizes[N_PARAMS] = {1, 7, 300, 70001, 16, 3};
    nnopt_tensor *tested[N_PARAMS][PER_PARAM], *ref[N_PARAMS][PER_PARAM];
    for (int i = 0; i < N_PARAMS; i++)
        for (int j = 0; j < PER_PARAM; j++) {
            tensor_spec s = spec1(sizes[i]);
            if (j == 3) s.values = VALUES_POSITIVE;
            double *values = spec_values(&s);
            tested[i][j] = test_tensor_new(comparison.tested, dtype, 1, s.shape, values);
            ref[i][j] = test_tensor_new(comparison.reference, dtype, 1, s.shape, values);
            assert_true(tested[i][j] && ref[i][j]);
            free(values);
        }
    nnopt_op sgd = {.kind = NNOPT_OP_SGD_UPDATE}, adam = {.kind = NNOPT_OP_ADAM_UPDATE};
    sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 0};
    /* {op, first param, last param}: every param, one param twice in a row,
     * other hyperparameters between equal ones, then Adam at two steps. */
    const struct {
        const nnopt_op *op;
        int first, last;
        double lr;
        int64_t step;
    } sequence[] = {
        {&sgd, 0, N_PARAMS - 1, 0.05, 0},
        {&sgd, 2, 2, 0.05, 0},
        {&sgd, 2, 3, 0.05, 0},
        {&sgd, 4, 4, 0.01, 0},
        {&sgd, 5, 5, 0.05, 0},
        {&adam, 0, N_PARAMS - 1, 1e-3, 1},
        {&adam, 0, N_PARAMS - 1, 1e-3, 2},
        {&adam, 1, 1, 1e-3, 3},
    };
    for (size_t k = 0; k < sizeof sequence / sizeof sequence[0]; k++) {
        nnopt_op op = *sequence[k].op;
        if (op.kind == NNOPT_OP_SGD_UPDATE)
            op.p.sgd.lr = sequence[k].lr;
        else
            op.p.adam =
                (nnopt_adam_params){sequence[k].lr, 0.9, 0.999, 1e-8, 1e-2, sequence[k].step};
        const int n_in = op.kind == NNOPT_OP_SGD_UPDATE ? 3 : 4;
        for (int i = sequence[k].first; i <= sequence[k].last; i++) {
            assert_int_equal(test_run(comparison.reference, &op, ref[i], n_in, NULL, 0), NNOPT_OK);
            assert_int_equal(test_run(comparison.tested, &op, tested[i], n_in, NULL, 0), NNOPT_OK);
        }
    }
    for (int i = 0; i < N_PARAMS; i++)
        for (int j = 0; j < PER_PARAM; j++) {
            compare_tensors("optimizer sequence", i * PER_PARAM + j, dtype, tested[i][j],
                            ref[i][j]);
            test_tensor_free(comparison.tested, tested[i][j]);
            test_tensor_free(comparison.reference, ref[i][j]);
        }
}
