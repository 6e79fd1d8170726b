/* The arithmetic of post-training quantisation, apart from the graph
 * walking: batch-norm folding, per-channel symmetric int8 weights, and an
 * activation range's u8 scale and zero point. */
#ifndef NNOPT_QUANT_MATH_H
#define NNOPT_QUANT_MATH_H

#include <stdint.h>

/* Folds inference batch norm y = gamma (z - mean) / sqrt(var + eps) + beta
 * into the layer z = w x + b before it: w [k][per_channel] and bias [k]
 * (bias may start as zeros) are rewritten in place. */
void quant_fold_batchnorm(float *w, float *bias, int64_t channels, int64_t per_channel,
                          const float *gamma, const float *beta, const float *mean,
                          const float *var, double eps);

/* Symmetric per-output-channel int8: scale[k] = max |w[k][.]| / 127 (1 for
 * an all-zero channel), q = round(w / scale) in [-127, 127]. */
void quant_weights_int8(const float *w, int64_t channels, int64_t per_channel, int8_t *q,
                        float *scale);

/* The u8 step and zero point covering [lo, hi] (widened to include 0, so
 * that 0, the padding value, is exact). */
void quant_activation_params(double lo, double hi, float *scale, int32_t *zero_point);

#endif
