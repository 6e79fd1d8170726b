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

#include "conv_layer_bench.h"

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
        const double start = conv_bench_now();
        test_run(b, op, in, n_in, &out, 1);
        t[i] = conv_bench_now() - start;
    }
    qsort(t, (size_t)reps, sizeof *t, compare_doubles);
    *best = t[0];
    *median = t[reps / 2];
    free(t);
}

int main(int argc, char **argv) {
    const char *backend = "blis";
    conv_bench_options o = conv_bench_defaults(20);
    int only_pass = -1, relu = 0;
    const char *pass_names[3] = {"forward", "data", "filter"};
    for (int i = 1; i < argc; i++) {
        if (conv_bench_option(argc, argv, &i, &o)) continue;
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int pass = 0; pass < 3; pass++)
                if (!strcmp(name, pass_names[pass])) only_pass = pass;
            if (only_pass < 0) return 2;
        } else if (!strcmp(argv[i], "--relu")) {
            relu = 1;
        } else {
            fprintf(stderr, "usage: depthwise_layers [--backend NAME] [--threads N] [--batch N] "
                            "[--reps R] [--f64] [--layer I] [--pass P] [--relu]\n");
            return 2;
        }
    }
    if (o.reps < 1 || o.batch < 1) return 2;
    const char *settings[] = {o.threads_setting, NULL};
    test_backend b;
    if (test_backend_open(backend, settings, &b) != 0) return 1;

    const layer layers[] = {{32, 32, 1}, {64, 32, 2}, {128, 16, 1}, {128, 16, 2}, {256, 8, 1},
                            {256, 8, 2}, {512, 4, 1}, {512, 4, 2},  {1024, 2, 1}};
    double total_best[3] = {0, 0, 0};
    printf("%-22s %-7s %9s %9s %8s %6s\n", "layer (C HxW /stride)", "pass", "best ms", "median ms",
           "GFLOP/s", "GB/s");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        if (o.only_layer >= 0 && (long)li != o.only_layer) continue;
        const layer *l = &layers[li];
        const long p = (l->h + 2 - 3) / l->stride + 1;
        const int64_t xs[4] = {o.batch, l->c, l->h, l->h}, ws[4] = {l->c, 1, 3, 3};
        const int64_t ys[4] = {o.batch, l->c, p, p};
        const int64_t x_count = o.batch * l->c * l->h * l->h, y_count = o.batch * l->c * p * p;
        conv_bench_tensors t;
        if (conv_bench_tensors_make(&b, o.dtype, xs, ws, ys, &t) != 0) return 1;
        const nnopt_conv2d_params depthwise = {(int32_t)l->stride, (int32_t)l->stride, 1, 1,
                                               (int32_t)l->c};
        const double flops = 2.0 * 9 * (double)y_count;
        /* every pass reads or writes one x-sized and one y-sized tensor */
        const double bytes =
            (double)(x_count + y_count) * (o.dtype == NNOPT_F32 ? sizeof(float) : sizeof(double));
        for (int pass = 0; pass < 3; pass++) {
            if (only_pass >= 0 && pass != only_pass) continue;
            nnopt_op op;
            nnopt_tensor *in[2];
            nnopt_tensor *out = conv_bench_pass(&t, pass, depthwise, &op, in);
            if (pass == 0 && relu) op.kind = NNOPT_OP_CONV2D_RELU;
            double best, median;
            time_op(&b, &op, in, 2, out, o.reps, &best, &median);
            total_best[pass] += best;
            char name[32];
            snprintf(name, sizeof name, "%ld %ldx%ld /%ld", l->c, l->h, l->h, l->stride);
            printf("%-22s %-7s %9.3f %9.3f %8.1f %6.1f\n", name, pass_names[pass], best * 1e3,
                   median * 1e3, flops / best * 1e-9, bytes / best * 1e-9);
        }
        conv_bench_tensors_free(&b, &t);
    }
    printf("total best ms: forward %.3f, data %.3f, filter %.3f\n", total_best[0] * 1e3,
           total_best[1] * 1e3, total_best[2] * 1e3);
    test_backend_close(&b);
    return 0;
}
