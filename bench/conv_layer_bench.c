#include "conv_layer_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

conv_bench_options conv_bench_defaults(int reps) {
    return (conv_bench_options){.threads_setting = "threads=0",
                                .batch = 128,
                                .only_layer = -1,
                                .reps = reps,
                                .dtype = NNOPT_F32};
}

int conv_bench_option(int argc, char **argv, int *i, conv_bench_options *o) {
    const char *arg = argv[*i];
    if (!strcmp(arg, "--f64")) {
        o->dtype = NNOPT_F64;
        return 1;
    }
    if (*i + 1 >= argc) return 0;
    const char *value = argv[*i + 1];
    if (!strcmp(arg, "--threads"))
        snprintf(o->threads_setting, sizeof o->threads_setting, "threads=%s", value);
    else if (!strcmp(arg, "--batch"))
        o->batch = atol(value);
    else if (!strcmp(arg, "--reps"))
        o->reps = atoi(value);
    else if (!strcmp(arg, "--layer"))
        o->only_layer = atol(value);
    else
        return 0;
    ++*i;
    return 1;
}

double conv_bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double conv_bench_time_once(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                            nnopt_tensor *out) {
    const double start = conv_bench_now();
    test_run(b, op, in, 2, &out, 1);
    return conv_bench_now() - start;
}

static int64_t numel4(const int64_t s[4]) {
    return s[0] * s[1] * s[2] * s[3];
}

int conv_bench_tensors_make(test_backend *b, nnopt_dtype dtype, const int64_t xs[4],
                            const int64_t ws[4], const int64_t ys[4], conv_bench_tensors *t) {
    /* One array long enough for the largest of the three fills them all. */
    int64_t most = numel4(xs);
    if (numel4(ws) > most) most = numel4(ws);
    if (numel4(ys) > most) most = numel4(ys);
    *t = (conv_bench_tensors){0};
    double *values = malloc((size_t)most * sizeof *values);
    if (!values) return -1;
    for (int64_t i = 0; i < most; i++) values[i] = (double)((i * 7919) % 2001 - 1000) / 1000.0;
    t->x = test_tensor_new(b, dtype, 4, xs, values);
    t->w = test_tensor_new(b, dtype, 4, ws, values);
    t->y = test_tensor_new(b, dtype, 4, ys, NULL);
    t->dy = test_tensor_new(b, dtype, 4, ys, values);
    t->dx = test_tensor_new(b, dtype, 4, xs, NULL);
    t->dw = test_tensor_new(b, dtype, 4, ws, NULL);
    free(values);
    if (t->x && t->w && t->y && t->dy && t->dx && t->dw) return 0;
    conv_bench_tensors_free(b, t);
    return -1;
}

void conv_bench_tensors_free(test_backend *b, conv_bench_tensors *t) {
    test_tensor_free(b, t->x), test_tensor_free(b, t->w), test_tensor_free(b, t->y);
    test_tensor_free(b, t->dy), test_tensor_free(b, t->dx), test_tensor_free(b, t->dw);
    *t = (conv_bench_tensors){0};
}

nnopt_tensor *conv_bench_pass(const conv_bench_tensors *t, int pass, nnopt_conv2d_params p,
                              nnopt_op *op, nnopt_tensor *in[2]) {
    *op = (nnopt_op){.kind = NNOPT_OP_CONV2D};
    op->p.conv2d = p;
    in[0] = t->x, in[1] = t->w;
    if (pass == 1) {
        op->kind = NNOPT_OP_CONV2D_BWD_DATA;
        in[0] = t->dy;
        return t->dx;
    }
    if (pass == 2) {
        op->kind = NNOPT_OP_CONV2D_BWD_FILTER;
        in[1] = t->dy;
        return t->dw;
    }
    return t->y;
}
