/* What the per-layer convolution benchmarks (pointwise_layers,
 * depthwise_layers, winograd_layers) share: their common options, one
 * layer's tensors on a backend, the op of each pass and a wall-clock timer. */
#ifndef NNOPT_CONV_LAYER_BENCH_H
#define NNOPT_CONV_LAYER_BENCH_H

#include "test_backend.h"

/* The options every one of them takes. */
typedef struct conv_bench_options {
    char threads_setting[32]; /* "threads=N", for the backend's settings */
    long batch, only_layer;   /* only_layer: -1 for all */
    int reps;
    nnopt_dtype dtype;
} conv_bench_options;

/* threads=0 (blis: every core), batch 128, every layer, f32, and `reps`
 * runs (each benchmark's own default). */
conv_bench_options conv_bench_defaults(int reps);

/* Reads argv[*i] (and its value, moving *i past it) when it is --threads N,
 * --batch N, --reps R, --layer I or --f64; returns 0 when it is none. */
int conv_bench_option(int argc, char **argv, int *i, conv_bench_options *o);

/* Monotonic seconds. */
double conv_bench_now(void);

/* Seconds of one run of op on in[0], in[1] into out. */
double conv_bench_time_once(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                            nnopt_tensor *out);

/* One backend's tensors for a layer: input x, filter w, output y, and the
 * gradients dy (y's shape), dx and dw. */
typedef struct conv_bench_tensors {
    nnopt_tensor *x, *w, *y, *dy, *dx, *dw;
} conv_bench_tensors;

/* Allocates t on b from the shapes of x, w and y. x, w and dy hold the same
 * deterministic values on every backend, so instances compare on equal work;
 * y, dx and dw start zeroed. Returns 0, or -1 with nothing left allocated. */
int conv_bench_tensors_make(test_backend *b, nnopt_dtype dtype, const int64_t xs[4],
                            const int64_t ws[4], const int64_t ys[4], conv_bench_tensors *t);
void conv_bench_tensors_free(test_backend *b, conv_bench_tensors *t);

/* Sets op (a conv2d with p) and in[] for pass 0 (forward), 1 (data gradient)
 * or 2 (filter gradient) on t; returns the pass's output. */
nnopt_tensor *conv_bench_pass(const conv_bench_tensors *t, int pass, nnopt_conv2d_params p,
                              nnopt_op *op, nnopt_tensor *in[2]);

#endif
