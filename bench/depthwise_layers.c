/* Depthwise convolution timings on MobileNetV1 (CIFAR variant)'s nine layer
 * shapes: forward, data gradient and filter gradient, each run `reps` times
 * on one backend; prints the fastest and the median run per pass, and the
 * throughput of the x- and y-sized tensors each pass moves. The fastest run
 * is the figure to compare on a shared machine, where the other runs absorb
 * the interference. NNOPT_PLUGIN_PATH picks another build's
 * plugin (e.g. an older one, for before/after ratios).
 *
 *   depthwise_layers [--backend NAME] [--threads N] [--batch N] [--reps R] [--f64]
 *                    [--layer I]    (only layer I, 0-8, e.g. under perf)
 *                    [--pass P]     (only pass P: forward, data or filter)
 *                    [--relu]       (the forward as conv2d_relu, as inference runs it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_backend.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct layer {
    long c, h, stride;
} layer;

/* Fastest and median seconds of `reps` runs of op. */
static void time_op(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                    nnopt_tensor *out, int reps, double *best, double *median) {
    double *t = malloc((size_t)reps * sizeof *t);
    test_run(b, op, in, n_in, &out, 1); /* warm-up: scratch, caches */
    for (int i = 0; i < reps; i++) {
        const double start = now_seconds();
        test_run(b, op, in, n_in, &out, 1);
        t[i] = now_seconds() - start;
    }
    qsort(t, (size_t)reps, sizeof *t, compare_doubles);
    *best = t[0];
    *median = t[reps / 2];
    free(t);
}

int main(int argc, char **argv) {
    const char *backend = "blis";
    char threads_setting[32] = "threads=0";
    long batch = 128;
    int reps = 20;
    nnopt_dtype dtype = NNOPT_F32;
    long only = -1;
    int only_pass = -1, relu = 0;
    const char *pass_names[3] = {"forward", "data", "filter"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            snprintf(threads_setting, sizeof threads_setting, "threads=%s", argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--layer") && i + 1 < argc) {
            only = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int pass = 0; pass < 3; pass++)
                if (!strcmp(name, pass_names[pass])) only_pass = pass;
            if (only_pass < 0) return 2;
        } else if (!strcmp(argv[i], "--relu")) {
            relu = 1;
        } else if (!strcmp(argv[i], "--f64")) {
            dtype = NNOPT_F64;
        } else {
            fprintf(stderr, "usage: depthwise_layers [--backend NAME] [--threads N] [--batch N] "
                            "[--reps R] [--f64] [--layer I] [--pass P] [--relu]\n");
            return 2;
        }
    }
    if (reps < 1 || batch < 1) return 2;
    const char *settings[] = {threads_setting, NULL};
    test_backend b;
    if (test_backend_open(backend, settings, &b) != 0) return 1;

    const layer layers[] = {{32, 32, 1}, {64, 32, 2}, {128, 16, 1}, {128, 16, 2}, {256, 8, 1},
                            {256, 8, 2}, {512, 4, 1}, {512, 4, 2},  {1024, 2, 1}};
    double total_best[3] = {0, 0, 0};
    printf("%-22s %-7s %9s %9s %8s %6s\n", "layer (C HxW /stride)", "pass", "best ms", "median ms",
           "GFLOP/s", "GB/s");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        if (only >= 0 && (long)li != only) continue;
        const layer *l = &layers[li];
        const long p = (l->h + 2 - 3) / l->stride + 1;
        const int64_t xs[4] = {batch, l->c, l->h, l->h}, ws[4] = {l->c, 1, 3, 3};
        const int64_t ys[4] = {batch, l->c, p, p};
        const int64_t x_count = batch * l->c * l->h * l->h, y_count = batch * l->c * p * p;
        double *values = malloc((size_t)(x_count > y_count ? x_count : y_count) * sizeof *values);
        for (int64_t i = 0; i < (x_count > y_count ? x_count : y_count); i++)
            values[i] = (double)((i * 7919) % 2001 - 1000) / 1000.0;
        nnopt_tensor *x = test_tensor_new(&b, dtype, 4, xs, values);
        nnopt_tensor *w = test_tensor_new(&b, dtype, 4, ws, values);
        nnopt_tensor *y = test_tensor_new(&b, dtype, 4, ys, values);
        nnopt_tensor *dy = test_tensor_new(&b, dtype, 4, ys, values);
        nnopt_tensor *dx = test_tensor_new(&b, dtype, 4, xs, NULL);
        nnopt_tensor *dw = test_tensor_new(&b, dtype, 4, ws, NULL);
        free(values);
        if (!x || !w || !y || !dy || !dx || !dw) return 1;
        nnopt_op op = {.kind = NNOPT_OP_CONV2D};
        op.p.conv2d =
            (nnopt_conv2d_params){(int32_t)l->stride, (int32_t)l->stride, 1, 1, (int32_t)l->c};
        const double flops = 2.0 * 9 * (double)y_count;
        /* every pass reads or writes one x-sized and one y-sized tensor */
        const double bytes =
            (double)(x_count + y_count) * (dtype == NNOPT_F32 ? sizeof(float) : sizeof(double));
        for (int pass = 0; pass < 3; pass++) {
            if (only_pass >= 0 && pass != only_pass) continue;
            nnopt_tensor *in[2] = {x, w};
            nnopt_tensor *out = y;
            op.kind = relu ? NNOPT_OP_CONV2D_RELU : NNOPT_OP_CONV2D;
            if (pass == 1) {
                op.kind = NNOPT_OP_CONV2D_BWD_DATA;
                in[0] = dy;
                out = dx;
            } else if (pass == 2) {
                op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
                in[1] = dy;
                out = dw;
            }
            double best, median;
            time_op(&b, &op, in, 2, out, reps, &best, &median);
            total_best[pass] += best;
            char name[32];
            snprintf(name, sizeof name, "%ld %ldx%ld /%ld", l->c, l->h, l->h, l->stride);
            printf("%-22s %-7s %9.3f %9.3f %8.1f %6.1f\n", name, pass_names[pass], best * 1e3,
                   median * 1e3, flops / best * 1e-9, bytes / best * 1e-9);
        }
        test_tensor_free(&b, x), test_tensor_free(&b, w), test_tensor_free(&b, y);
        test_tensor_free(&b, dy), test_tensor_free(&b, dx), test_tensor_free(&b, dw);
    }
    printf("total best ms: forward %.3f, data %.3f, filter %.3f\n", total_best[0] * 1e3,
           total_best[1] * 1e3, total_best[2] * 1e3);
    test_backend_close(&b);
    return 0;
}
