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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_backend.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double time_once(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                        nnopt_tensor *out) {
    const double start = now_seconds();
    test_run(b, op, in, 2, &out, 1);
    return now_seconds() - start;
}

typedef struct layer {
    long c, k, h;
} layer;

/* One backend's tensors for a layer. */
typedef struct layer_tensors {
    nnopt_tensor *x, *w, *y, *dy, *dx, *dw;
} layer_tensors;

static int tensors_make(test_backend *b, nnopt_dtype dtype, long batch, const layer *l,
                        layer_tensors *t) {
    const int64_t xs[4] = {batch, l->c, l->h, l->h}, ws[4] = {l->k, l->c, 1, 1};
    const int64_t ys[4] = {batch, l->k, l->h, l->h};
    const int64_t most = batch * (l->c > l->k ? l->c : l->k) * l->h * l->h;
    double *values = malloc((size_t)(most > l->k * l->c ? most : l->k * l->c) * sizeof *values);
    if (!values) return -1;
    for (int64_t i = 0; i < most || i < l->k * l->c; i++)
        values[i] = (double)((i * 7919) % 2001 - 1000) / 1000.0;
    t->x = test_tensor_new(b, dtype, 4, xs, values);
    t->w = test_tensor_new(b, dtype, 4, ws, values);
    t->y = test_tensor_new(b, dtype, 4, ys, NULL);
    t->dy = test_tensor_new(b, dtype, 4, ys, values);
    t->dx = test_tensor_new(b, dtype, 4, xs, NULL);
    t->dw = test_tensor_new(b, dtype, 4, ws, NULL);
    free(values);
    return t->x && t->w && t->y && t->dy && t->dx && t->dw ? 0 : -1;
}

static void tensors_free(test_backend *b, layer_tensors *t) {
    test_tensor_free(b, t->x), test_tensor_free(b, t->w), test_tensor_free(b, t->y);
    test_tensor_free(b, t->dy), test_tensor_free(b, t->dx), test_tensor_free(b, t->dw);
}

/* The op, inputs and output of pass 0 (forward), 1 (data) or 2 (filter). */
static nnopt_tensor *pass_setup(const layer_tensors *t, int pass, nnopt_op *op,
                                nnopt_tensor *in[2]) {
    *op = (nnopt_op){.kind = NNOPT_OP_CONV2D};
    op->p.conv2d = (nnopt_conv2d_params){1, 1, 0, 0, 1};
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

int main(int argc, char **argv) {
    char threads_setting[32] = "threads=0";
    long batch = 128;
    int reps = 10;
    nnopt_dtype dtype = NNOPT_F32;
    long only = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            snprintf(threads_setting, sizeof threads_setting, "threads=%s", argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--layer") && i + 1 < argc) {
            only = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--f64")) {
            dtype = NNOPT_F64;
        } else {
            fprintf(stderr, "usage: pointwise_layers [--threads N] [--batch N] [--reps R] "
                            "[--f64] [--layer I]\n");
            return 2;
        }
    }
    if (reps < 1 || batch < 1) return 2;
    const char *new_settings[] = {threads_setting, "conv=auto", NULL};
    const char *old_settings[] = {threads_setting, "conv=gemm", NULL};
    test_backend fresh, blis;
    if (test_backend_open("blis", new_settings, &fresh) != 0) return 1;
    if (test_backend_open("blis", old_settings, &blis) != 0) return 1;

    const layer layers[] = {{32, 64, 32},   {64, 128, 16}, {128, 128, 16}, {128, 256, 8},
                            {256, 256, 8},  {256, 512, 4}, {512, 512, 4},  {512, 512, 4},
                            {512, 512, 4},  {512, 512, 4}, {512, 512, 4},  {512, 1024, 2},
                            {1024, 1024, 2}};
    const char *pass_names[3] = {"forward", "data", "filter"};
    double total[2][3] = {{0}};
    printf("batch %ld, %s; fastest of %d alternated runs\n", batch,
           dtype == NNOPT_F32 ? "f32" : "f64", reps);
    printf("%-18s %-7s %9s %9s %9s %9s %6s\n", "layer (C>K HxW)", "pass", "new ms", "blis ms",
           "new GF/s", "blis GF/s", "ratio");
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        if (only >= 0 && (long)li != only) continue;
        const layer *l = &layers[li];
        layer_tensors tn, to;
        if (tensors_make(&fresh, dtype, batch, l, &tn) != 0 ||
            tensors_make(&blis, dtype, batch, l, &to) != 0)
            return 1;
        const double flops = 2.0 * (double)(batch * l->h * l->h) * (double)(l->c * l->k);
        for (int pass = 0; pass < 3; pass++) {
            nnopt_op op;
            nnopt_tensor *in_new[2], *in_old[2];
            nnopt_tensor *out_new = pass_setup(&tn, pass, &op, in_new);
            nnopt_tensor *out_old = pass_setup(&to, pass, &op, in_old);
            time_once(&fresh, &op, in_new, out_new); /* warm-up: scratch, caches */
            time_once(&blis, &op, in_old, out_old);
            double best_new = 1e30, best_old = 1e30;
            for (int r = 0; r < reps; r++) {
                const double a = time_once(&fresh, &op, in_new, out_new);
                const double b = time_once(&blis, &op, in_old, out_old);
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
        tensors_free(&fresh, &tn);
        tensors_free(&blis, &to);
    }
    for (int pass = 0; pass < 3; pass++)
        printf("all layers %-7s new %.3f ms, blis %.3f ms (%.2fx)\n", pass_names[pass],
               total[0][pass] * 1e3, total[1][pass] * 1e3, total[1][pass] / total[0][pass]);
    test_backend_close(&fresh);
    test_backend_close(&blis);
    return 0;
}
