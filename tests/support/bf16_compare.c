#include "bf16_compare.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nnopt/bf16.h"

const bf16_bound bf16_one_step = {0, 0.0, 0.0};

static test_backend *tested_backend, *reference_backend;
static double worst;

void bf16_compare_backends(test_backend *tested, test_backend *reference) {
    tested_backend = tested;
    reference_backend = reference;
}

double bf16_compare_worst(void) {
    const double value = worst;
    worst = 0;
    return value;
}

static double to_bf16(double v) {
    return nnopt_bf16_to_f32(nnopt_bf16_from_f64(v));
}

double *bf16_spec_values(const tensor_spec *s) {
    double *v = spec_values(s);
    if (s->values != VALUES_LABELS)
        for (int64_t i = 0; i < spec_numel(s); i++) v[i] = to_bf16(v[i]);
    return v;
}

static nnopt_dtype spec_dtype(const tensor_spec *s) {
    if (s->values == VALUES_LABELS) return NNOPT_I32;
    return s->dtype_override ? s->dtype : NNOPT_BF16;
}

static double *read_all(test_backend *b, const nnopt_tensor *t) {
    const int64_t n = nnopt_tensor_numel(t);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    assert_non_null(v);
    test_tensor_read(b, t, v);
    return v;
}

/* S: output 0 of op run by the reference in f64 on the inputs' magnitudes. */
static double *magnitudes(const nnopt_op *op, int n_in, const tensor_spec *in,
                          double *const *values, const tensor_spec *out) {
    nnopt_tensor *ins[BF16_COMPARE_MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++) {
        const int64_t n = spec_numel(&in[i]);
        double *abs_values = malloc((size_t)(n > 0 ? n : 1) * sizeof *abs_values);
        assert_non_null(abs_values);
        for (int64_t j = 0; j < n; j++) abs_values[j] = fabs(values[i][j]);
        ins[i] = test_tensor_new(reference_backend, NNOPT_F64, in[i].ndim, in[i].shape, abs_values);
        assert_non_null(ins[i]);
        free(abs_values);
    }
    nnopt_tensor *y = test_tensor_new(reference_backend, NNOPT_F64, out->ndim, out->shape, NULL);
    assert_non_null(y);
    assert_int_equal(test_run(reference_backend, op, ins, n_in, &y, 1), NNOPT_OK);
    double *s = read_all(reference_backend, y);
    for (int i = 0; i < n_in; i++) test_tensor_free(reference_backend, ins[i]);
    test_tensor_free(reference_backend, y);
    return s;
}

static void compare(const char *what, const char *kind, int index, const double *got,
                    const double *want, int64_t n, const double *sums, const bf16_bound *bound) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]);
        if (bound->exact) {
            if (got[i] != want[i]) {
                print_error("%s %s %d element %lld: %s %.9g, reference %.9g (exact expected)\n",
                            what, kind, index, (long long)i, tested_backend->name, got[i], want[i]);
                fail();
            }
            continue;
        }
        const double d = sums ? bound->sum_error * sums[i] : 0.0;
        const double limit = 0x1p-7 * (fabs(want[i]) + d) + d + bound->floor * scale;
        if (limit > 0 && err / limit > worst) worst = err / limit;
        if (!(err <= limit)) {
            print_error("%s %s %d element %lld: %s %.9g, reference %.9g, bound %.3g (S %g, "
                        "scale %g)\n",
                        what, kind, index, (long long)i, tested_backend->name, got[i], want[i],
                        limit, sums ? sums[i] : 0.0, scale);
            fail();
        }
    }
}

void bf16_check_op(const char *what, const nnopt_op *op, int n_in, const tensor_spec *in,
                   double *const *in_values, int n_out, const tensor_spec *out,
                   double *const *out_values, const bf16_bound *bound) {
    assert_true(n_in <= BF16_COMPARE_MAX_TENSORS && n_out <= BF16_COMPARE_MAX_TENSORS);
    assert_true(bound->sum_error == 0 || n_out == 1);
    test_backend *both[2] = {tested_backend, reference_backend};
    nnopt_tensor *ins[2][BF16_COMPARE_MAX_TENSORS] = {{0}},
                 *outs[2][BF16_COMPARE_MAX_TENSORS] = {{0}};
    double *values[BF16_COMPARE_MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++) {
        values[i] = bf16_spec_values(&in[i]);
        if (in_values && in_values[i])
            memcpy(values[i], in_values[i], (size_t)spec_numel(&in[i]) * sizeof(double));
        for (int k = 0; k < 2; k++) {
            ins[k][i] =
                test_tensor_new(both[k], spec_dtype(&in[i]), in[i].ndim, in[i].shape, values[i]);
            assert_non_null(ins[k][i]);
        }
    }
    for (int i = 0; i < n_out; i++) {
        double *garbage = out_values && out_values[i] ? NULL : spec_values(&out[i]);
        for (int k = 0; k < 2; k++) {
            const double *start = out_values && out_values[i] ? out_values[i]
                                  : k == 0                    ? garbage
                                                              : NULL;
            outs[k][i] =
                test_tensor_new(both[k], spec_dtype(&out[i]), out[i].ndim, out[i].shape, start);
            assert_non_null(outs[k][i]);
        }
        free(garbage);
    }
    assert_int_equal(test_run(reference_backend, op, ins[1], n_in, outs[1], n_out), NNOPT_OK);
    assert_int_equal(test_run(tested_backend, op, ins[0], n_in, outs[0], n_out), NNOPT_OK);
    double *sums = bound->sum_error > 0 ? magnitudes(op, n_in, in, values, &out[0]) : NULL;
    for (int pass = 0; pass < 2; pass++) {
        const int count = pass == 0 ? n_out : n_in;
        for (int i = 0; i < count; i++) {
            const nnopt_tensor *got_t = pass == 0 ? outs[0][i] : ins[0][i];
            const nnopt_tensor *want_t = pass == 0 ? outs[1][i] : ins[1][i];
            double *got = read_all(tested_backend, got_t),
                   *want = read_all(reference_backend, want_t);
            compare(what, pass == 0 ? "output" : "input", i, got, want, nnopt_tensor_numel(want_t),
                    pass == 0 ? sums : NULL, bound);
            free(got), free(want);
        }
    }
    free(sums);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < n_in; i++) test_tensor_free(both[k], ins[k][i]);
        for (int i = 0; i < n_out; i++) test_tensor_free(both[k], outs[k][i]);
    }
    for (int i = 0; i < n_in; i++) free(values[i]);
}

/* ---- op families ---- */

void bf16_check_conv(const conv_case *cc, const char *label) {
    const int64_t p = (cc->h + 2 * cc->p.pad_h - cc->r) / cc->p.stride_h + 1;
    const int64_t q = (cc->w + 2 * cc->p.pad_w - cc->s) / cc->p.stride_w + 1;
    const tensor_spec in[3] = {spec4(cc->n, cc->c, cc->h, cc->w),
                               spec4(cc->k, cc->c / cc->p.groups, cc->r, cc->s), spec1(cc->k)};
    const tensor_spec y = spec4(cc->n, cc->k, p, q);
    char what[200];
    snprintf(what, sizeof what,
             "bf16 %s conv2d N%lld C%lld %lldx%lld K%lld %lldx%lld s%d,%d p%d,%d g%d", label,
             (long long)cc->n, (long long)cc->c, (long long)cc->h, (long long)cc->w,
             (long long)cc->k, (long long)cc->r, (long long)cc->s, cc->p.stride_h, cc->p.stride_w,
             cc->p.pad_h, cc->p.pad_w, cc->p.groups);
    nnopt_op op = {.kind = NNOPT_OP_CONV2D};
    op.p.conv2d = cc->p;
    const double terms = (double)(cc->c / cc->p.groups * cc->r * cc->s + 2);
    const bf16_bound bound = {0, terms * 0x1p-22, 0x1p-10};
    bf16_check_op(what, &op, 3, in, NULL, 1, &y, NULL, &bound);
    bf16_check_op(what, &op, 2, in, NULL, 1, &y, NULL, &bound); /* without bias */
}

void bf16_check_dense(int64_t n, int64_t in_features, int64_t out_features) {
    const tensor_spec in[3] = {spec2(n, in_features), spec2(out_features, in_features),
                               spec1(out_features)};
    const tensor_spec y = spec2(n, out_features);
    char what[120];
    snprintf(what, sizeof what, "bf16 dense N%lld IN%lld OUT%lld", (long long)n,
             (long long)in_features, (long long)out_features);
    const nnopt_op op = {.kind = NNOPT_OP_DENSE};
    const bf16_bound bound = {0, (double)(in_features + 2) * 0x1p-22, 0.0};
    bf16_check_op(what, &op, 3, in, NULL, 1, &y, NULL, &bound);
    bf16_check_op(what, &op, 2, in, NULL, 1, &y, NULL, &bound);
}

void bf16_check_pool(int64_t n, int64_t c, int64_t h, int64_t w, const nnopt_pool2d_params *pp) {
    const int64_t p = (h + 2 * pp->pad_h - pp->kernel_h) / pp->stride_h + 1;
    const int64_t q = (w + 2 * pp->pad_w - pp->kernel_w) / pp->stride_w + 1;
    const tensor_spec x = spec4(n, c, h, w), y = spec4(n, c, p, q);
    char what[160];
    snprintf(what, sizeof what, "bf16 pool2d %s %lldx%lld k%dx%d s%d,%d p%d,%d",
             pp->kind == NNOPT_POOL_MAX ? "max" : "avg", (long long)h, (long long)w, pp->kernel_h,
             pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
    nnopt_op op = {.kind = NNOPT_OP_POOL2D};
    op.p.pool2d = *pp;
    const bf16_bound exact = {1, 0.0, 0.0};
    bf16_check_op(what, &op, 1, &x, NULL, 1, &y, NULL,
                  pp->kind == NNOPT_POOL_MAX ? &exact : &bf16_one_step);
}

void bf16_check_act(nnopt_act_kind kind, int64_t count, double range) {
    tensor_spec x = spec2(1, count);
    x.range = range;
    char what[80];
    snprintf(what, sizeof what, "bf16 act %s x%lld", nnopt_act_kind_name(kind), (long long)count);
    nnopt_op op = {.kind = NNOPT_OP_ACT};
    op.p.act.kind = kind;
    const int exact =
        kind == NNOPT_ACT_IDENTITY || kind == NNOPT_ACT_RELU || kind == NNOPT_ACT_RELU6;
    const bf16_bound bound = {exact, 0.0, 0x1p-30};
    bf16_check_op(what, &op, 1, &x, NULL, 1, &x, NULL, &bound);
}

void bf16_check_batchnorm(const tensor_spec *x) {
    const tensor_spec per_channel = spec1(x->shape[1]);
    tensor_spec positive = per_channel;
    positive.values = VALUES_POSITIVE;
    const tensor_spec in[5] = {*x, per_channel, per_channel, per_channel, positive};
    const tensor_spec train_out[3] = {*x, per_channel, positive};
    const bf16_bound bound = {0, 0.0, 0x1p-30};
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM};
    op.p.bn = (nnopt_bn_params){1e-5, 0.1, 0};
    bf16_check_op("bf16 batchnorm inference", &op, 5, in, NULL, 1, train_out, NULL, &bound);
    op.p.bn.training = 1;
    bf16_check_op("bf16 batchnorm training", &op, 5, in, NULL, 3, train_out, NULL, &bound);
}

void bf16_check_softmax_xent(int64_t n, int64_t k) {
    const bf16_bound bound = {0, 0.0, 0x1p-30};
    tensor_spec logits = spec2(n, k);
    logits.range = 5;
    tensor_spec labels = spec1(n);
    labels.values = VALUES_LABELS;
    labels.classes = (int)k;
    tensor_spec probs = logits;
    probs.values = VALUES_PROBS;
    const tensor_spec outs[2] = {spec1(1), logits};
    nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT};
    op.p.xent.temperature = 1.0;
    bf16_check_op("bf16 softmax_xent labels", &op, 2, (tensor_spec[]){logits, labels}, NULL, 2,
                  outs, NULL, &bound);
    op.p.xent.soft_targets = 1;
    op.p.xent.temperature = 2.0;
    bf16_check_op("bf16 softmax_xent soft T=2", &op, 2, (tensor_spec[]){logits, probs}, NULL, 2,
                  outs, NULL, &bound);
    /* Weighted, added to what the outputs hold (distillation's soft term). */
    op.p.xent.weight = 0.25;
    op.p.xent.accumulate = 1;
    double *start[2] = {bf16_spec_values(&outs[0]), bf16_spec_values(&outs[1])};
    bf16_check_op("bf16 softmax_xent weighted, accumulated", &op, 2, (tensor_spec[]){logits, probs},
                  NULL, 2, outs, start, &bound);
    free(start[0]), free(start[1]);
}
