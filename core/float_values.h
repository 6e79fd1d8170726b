/* Host arrays of floating-point values in a network dtype (f32, f64, bf16)
 * to and from double: how the core moves initial weights, logits, losses and
 * converted weights without caring which float type a network uses. */
#ifndef NNOPT_CORE_FLOAT_VALUES_H
#define NNOPT_CORE_FLOAT_VALUES_H

#include "nnopt/types.h"

/* dst[i] = src[i] (exact for every float dtype). */
void nnopt_values_to_double(const void *src, nnopt_dtype dtype, double *dst, int64_t n);
/* dst[i] = src[i] rounded to nearest even in `dtype`. */
void nnopt_values_from_double(const double *src, void *dst, nnopt_dtype dtype, int64_t n);

#endif
