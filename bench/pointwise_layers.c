/* Pointwise (1x1) convolution timings on MobileNetV1 (CIFAR variant)'s 13
 * pointwise layer shapes: forward, data gradient and filter gradient on the
 * blis backend's AVX-512 kernels (conv=auto) against its BLIS GEMM path
 * (conv=gemm), two instances in one process. Each repetition times both,
 * one after the other, so the machine's load hits both alike; prints the
 * fastest run of each and its GFLOP/s.
 *
 *   pointwise_layers [--threads N] [--batch N] [--reps R] [--f64] [--layer I]
 *                    (--layer: only layer I, 0-12, e.g. under perf) */
#include <stdio.h>
#include <string.h>

#include "conv_layer_bench.h"

typedef struct layer {
    long c, k, h;
} layer;

int main(int argc, char **argv) {
    conv_bench_options o = conv_bench_defaults(10);
    for (int i = 1; i < argc; i++) {
        if (!conv_bench_option(argc, argv, &i, &o)) {
            fprintf(stderr, "usage: pointwise_layers [--threads N] [--batch N] [--reps R] "
                            "[--f64] [--layer I]\n");
            return 2;
        }
    }
    if (o.reps < 1 || o.batch < 1) return 2;
    const char *new_settings[] = {o.threads_setting, "conv=auto", NULL};
    const char *old_settings[] = {o.threads_setting, "conv=gemm", NULL};
    test_backend fresh, blis;
    if (test_backend_open("blis", new_settings, &fresh) != 0) return 1;
    if (test_backend_open("blis", old_settings, &blis) != 0) return 1;

    const layer layers[] = {{32, 64, 32},   {64, 128, 16}, {128, 128, 16}, {128, 256, 8},
                            {256, 256, 8},  {256, 512, 4}, {512, 512, 4},  {512, 512, 4},
                            {512, 512, 4},  {512, 512, 4}, {512, 512, 4},  {512, 1024, 2},
                            {1024, 1024, 2}};
    const nnopt_conv2d_params pointwise = {1, 1, 0, 0, 1};
    const char *pass_names[3] = {"forward", "data", "filter"};
    double total[2][3] = {{0}};
    printf("batch %ld, %s; fastest of %d alternated runs\n", o.batch,
           o.dtype == NNOPT_F32 ? "f32" : "f64", o.reps);
    printf("%-18s %-7s %9s %9s %9s %9s %6s\n", "layer (C>K HxW)", "pass", "new ms", "blis ms",
           "new GF/s", "blis GF/s", "ratio");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        if (o.only_layer >= 0 && (long)li != o.only_layer) continue;
        const layer *l = &layers[li];
        const int64_t xs[4] = {o.batch, l->c, l->h, l->h}, ws[4] = {l->k, l->c, 1, 1};
        const int64_t ys[4] = {o.batch, l->k, l->h, l->h};
        conv_bench_tensors tn, to;
        if (conv_bench_tensors_make(&fresh, o.dtype, xs, ws, ys, &tn) != 0 ||
            conv_bench_tensors_make(&blis, o.dtype, xs, ws, ys, &to) != 0)
            return 1;
        const double flops = 2.0 * (double)(o.batch * l->h * l->h) * (double)(l->c * l->k);
        for (int pass = 0; pass < 3; pass++) {
            nnopt_op op;
            nnopt_tensor *in_new[2], *in_old[2];
            nnopt_tensor *out_new = conv_bench_pass(&tn, pass, pointwise, &op, in_new);
            nnopt_tensor *out_old = conv_bench_pass(&to, pass, pointwise, &op, in_old);
            conv_bench_time_once(&fresh, &op, in_new, out_new); /* warm-up: scratch, caches */
            conv_bench_time_once(&blis, &op, in_old, out_old);
            double best_new = 1e30, best_old = 1e30;
            for (int r = 0; r < o.reps; r++) {
                const double a = conv_bench_time_once(&fresh, &op, in_new, out_new);
                const double b = conv_bench_time_once(&blis, &op, in_old, out_old);
                best_new = a < best_new ? a : best_new;
                best_old = b < best_old ? b : best_old;
            }
            total[0][pass] += best_new;
            total[1][pass] += best_old;
            char name[32];
            snprintf(name, sizeof name, "%ld>%ld %ldx%ld", l->c, l->k, l->h, l->h);
            printf("%-18s %-7s %9.3f %9.3f %9.1f %9.1f %6.2f\n", name, pass_names[pass],
                   best_new * 1e3, best_old * 1e3, flops / best_new * 1e-9, flops / best_old * 1e-9,
                   best_old / best_new);
        }
        conv_bench_tensors_free(&fresh, &tn);
        conv_bench_tensors_free(&blis, &to);
    }
    for (int pass = 0; pass < 3; pass++)
        printf("all layers %-7s new %.3f ms, blis %.3f ms (%.2fx)\n", pass_names[pass],
               total[0][pass] * 1e3, total[1][pass] * 1e3, total[1][pass] / total[0][pass]);
    test_backend_close(&fresh);
    test_backend_close(&blis);
    return 0;
}
