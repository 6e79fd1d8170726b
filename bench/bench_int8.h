/* nnopt_bench --int8: quantises the benchmark's network in place with the
 * quantization technique, as a pipeline's after_train would, so int8 and f32
 * inference are timed in the same process on the same weights. */
#ifndef NNOPT_BENCH_INT8_H
#define NNOPT_BENCH_INT8_H

#include "network.h"

/* Calibrates on `calibration_batches` batches of `batch` synthetic images
 * (uniform pixels, seeded) and rewrites net's conv2d/dense ops as int8.
 * Writes the model's bytes before and after. No executor of net may be open. */
nnopt_status bench_quantize(nnopt_network *net, nnopt_backend *backend, int64_t batch,
                            int calibration_batches, uint64_t seed, int64_t bytes[2],
                            nnopt_error *err);

#endif
