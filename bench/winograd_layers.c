/* Winograd timings on ResNet-CIFAR's three 3x3 layer shapes (C = K = 16 at
 * 32x32, 32 at 16x16, 64 at 8x8; stride 1, pad 1): the blis backend with
 * winograd=off (the direct kernels) against winograd=f2, f4 and auto, four
 * instances in one process. Each repetition times every instance, one after
 * the other, so the machine's load hits all alike; prints the fastest run of
 * each and its ratio to the direct kernel.
 *
 *   winograd_layers [--threads N] [--batch N] [--reps R] [--f64]
 *                   [--pass forward|data|filter|all] [--layer I] [--mode M]
 *                   (default: the filter gradient of all three layers;
 *                   --layer 0-2 and --mode off|f2|f4|auto time only that
 *                   one, e.g. under perf) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_backend.h"

#define MODES 4

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

/* One backend's tensors for a layer (C = K channels, h x h planes). */
typedef struct layer_tensors {
    nnopt_tensor *x, *w, *y, *dy, *dx, *dw;
} layer_tensors;

static int tensors_make(test_backend *b, nnopt_dtype dtype, long batch, long ch, long h,
                        layer_tensors *t) {
    const int64_t xs[4] = {batch, ch, h, h}, ws[4] = {ch, ch, 3, 3};
    const int64_t most = batch * ch * h * h;
    double *values = malloc((size_t)most * sizeof *values);
    if (!values) return -1;
    for (int64_t i = 0; i < most; i++) values[i] = (double)((i * 7919) % 2001 - 1000) / 1000.0;
    t->x = test_tensor_new(b, dtype, 4, xs, values);
    t->w = test_tensor_new(b, dtype, 4, ws, values);
    t->y = test_tensor_new(b, dtype, 4, xs, NULL);
    t->dy = test_tensor_new(b, dtype, 4, xs, values);
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
    op->p.conv2d = (nnopt_conv2d_params){1, 1, 1, 1, 1};
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
    long batch = 128, only = -1;
    const char *only_mode = NULL;
    int reps = 10, pass_lo = 2, pass_hi = 3;
    nnopt_dtype dtype = NNOPT_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            snprintf(threads_setting, sizeof threads_setting, "threads=%s", argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--layer") && i + 1 < argc) {
            only = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            const char *p = argv[++i];
            pass_lo = !strcmp(p, "forward") ? 0 : !strcmp(p, "data") ? 1 : 2;
            pass_hi = !strcmp(p, "all") ? 3 : pass_lo + 1;
            if (!strcmp(p, "all")) pass_lo = 0;
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            only_mode = argv[++i];
        } else if (!strcmp(argv[i], "--f64")) {
            dtype = NNOPT_F64;
        } else {
            fprintf(stderr, "usage: winograd_layers [--threads N] [--batch N] [--reps R] [--f64] "
                            "[--pass forward|data|filter|all] [--layer I] [--mode M]\n");
            return 2;
        }
    }
    if (reps < 1 || batch < 1) return 2;
    static const char *const modes[MODES] = {"winograd=off", "winograd=f2", "winograd=f4",
                                             "winograd=auto"};
    test_backend be[MODES];
    for (int m = 0; m < MODES; m++) {
        const char *settings[] = {threads_setting, modes[m], NULL};
        if (test_backend_open("blis", settings, &be[m]) != 0) return 1;
    }
    static const long channels[3] = {16, 32, 64}, planes[3] = {32, 16, 8};
    static const char *const pass_names[3] = {"forward", "data", "filter"};
    printf("batch %ld, %s; fastest of %d alternated runs, ms (ratio to off)\n", batch,
           dtype == NNOPT_F32 ? "f32" : "f64", reps);
    printf("%-12s %-7s %8s %15s %15s %15s\n", "layer", "pass", "off", "f2", "f4", "auto");
    for (int li = 0; li < 3; li++) {
        if (only >= 0 && li != only) continue;
        layer_tensors t[MODES];
        for (int m = 0; m < MODES; m++)
            if (tensors_make(&be[m], dtype, batch, channels[li], planes[li], &t[m]) != 0) return 1;
        for (int pass = pass_lo; pass < pass_hi; pass++) {
            nnopt_op op;
            nnopt_tensor *in[MODES][2], *out[MODES];
            double best[MODES];
            for (int m = 0; m < MODES; m++) {
                out[m] = pass_setup(&t[m], pass, &op, in[m]);
                time_once(&be[m], &op, in[m], out[m]); /* warm-up: scratch, caches */
                best[m] = 1e30;
            }
            for (int r = 0; r < reps; r++)
                for (int m = 0; m < MODES; m++) {
                    if (only_mode && strcmp(modes[m] + strlen("winograd="), only_mode)) continue;
                    const double s = time_once(&be[m], &op, in[m], out[m]);
                    best[m] = s < best[m] ? s : best[m];
                }
            char name[32];
            snprintf(name, sizeof name, "%ld %ldx%ld", channels[li], planes[li], planes[li]);
            printf("%-12s %-7s %8.3f", name, pass_names[pass], best[0] * 1e3);
            for (int m = 1; m < MODES; m++)
                printf(" %7.3f (%4.2fx)", best[m] * 1e3, best[0] / best[m]);
            printf("\n");
        }
        for (int m = 0; m < MODES; m++) tensors_free(&be[m], &t[m]);
    }
    for (int m = 0; m < MODES; m++) test_backend_close(&be[m]);
    return 0;
}
