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
#include <string.h>

#include "conv_layer_bench.h"

#define MODES 4

int main(int argc, char **argv) {
    conv_bench_options o = conv_bench_defaults(10);
    const char *only_mode = NULL;
    int pass_lo = 2, pass_hi = 3;
    for (int i = 1; i < argc; i++) {
        if (conv_bench_option(argc, argv, &i, &o)) continue;
        if (!strcmp(argv[i], "--pass") && i + 1 < argc) {
            const char *p = argv[++i];
            pass_lo = !strcmp(p, "forward") ? 0 : !strcmp(p, "data") ? 1 : 2;
            pass_hi = !strcmp(p, "all") ? 3 : pass_lo + 1;
            if (!strcmp(p, "all")) pass_lo = 0;
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            only_mode = argv[++i];
        } else {
            fprintf(stderr, "usage: winograd_layers [--threads N] [--batch N] [--reps R] [--f64] "
                            "[--pass forward|data|filter|all] [--layer I] [--mode M]\n");
            return 2;
        }
    }
    if (o.reps < 1 || o.batch < 1) return 2;
    static const char *const modes[MODES] = {"winograd=off", "winograd=f2", "winograd=f4",
                                             "winograd=auto"};
    test_backend be[MODES];
    for (int m = 0; m < MODES; m++) {
        const char *settings[] = {o.threads_setting, modes[m], NULL};
        if (test_backend_open("blis", settings, &be[m]) != 0) return 1;
    }
    static const long channels[3] = {16, 32, 64}, planes[3] = {32, 16, 8};
    static const char *const pass_names[3] = {"forward", "data", "filter"};
    const nnopt_conv2d_params same_3x3 = {1, 1, 1, 1, 1};
    printf("batch %ld, %s; fastest of %d alternated runs, ms (ratio to off)\n", o.batch,
           o.dtype == NNOPT_F32 ? "f32" : "f64", o.reps);
    printf("%-12s %-7s %8s %15s %15s %15s\n", "layer", "pass", "off", "f2", "f4", "auto");
    for (int li = 0; li < 3; li++) {
        if (o.only_layer >= 0 && li != o.only_layer) continue;
        /* C = K channels, h x h planes; stride 1 and pad 1 keep y the size of x */
        const long ch = channels[li], h = planes[li];
        const int64_t xs[4] = {o.batch, ch, h, h}, ws[4] = {ch, ch, 3, 3};
        conv_bench_tensors t[MODES];
        for (int m = 0; m < MODES; m++)
            if (conv_bench_tensors_make(&be[m], o.dtype, xs, ws, xs, &t[m]) != 0) return 1;
        for (int pass = pass_lo; pass < pass_hi; pass++) {
            nnopt_op op;
            nnopt_tensor *in[MODES][2], *out[MODES];
            double best[MODES];
            for (int m = 0; m < MODES; m++) {
                out[m] = conv_bench_pass(&t[m], pass, same_3x3, &op, in[m]);
                conv_bench_time_once(&be[m], &op, in[m], out[m]); /* warm-up: scratch, caches */
                best[m] = 1e30;
            }
            for (int r = 0; r < o.reps; r++)
                for (int m = 0; m < MODES; m++) {
                    if (only_mode && strcmp(modes[m] + strlen("winograd="), only_mode)) continue;
                    const double s = conv_bench_time_once(&be[m], &op, in[m], out[m]);
                    best[m] = s < best[m] ? s : best[m];
                }
            char name[32];
            snprintf(name, sizeof name, "%ld %ldx%ld", channels[li], planes[li], planes[li]);
            printf("%-12s %-7s %8.3f", name, pass_names[pass], best[0] * 1e3);
            for (int m = 1; m < MODES; m++)
                printf(" %7.3f (%4.2fx)", best[m] * 1e3, best[0] / best[m]);
            printf("\n");
        }
        for (int m = 0; m < MODES; m++) conv_bench_tensors_free(&be[m], &t[m]);
    }
    for (int m = 0; m < MODES; m++) test_backend_close(&be[m]);
    return 0;
}
