#include "float_values.h"

#include "nnopt/bf16.h"

void nnopt_values_to_double(const void *src, nnopt_dtype dtype, double *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = dtype == NNOPT_F64    ? ((const double *)src)[i]
                 : dtype == NNOPT_BF16 ? (double)nnopt_bf16_to_f32(((const uint16_t *)src)[i])
                                       : (double)((const float *)src)[i];
}

void nnopt_values_from_double(const double *src, void *dst, nnopt_dtype dtype, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (dtype == NNOPT_F64)
            ((double *)dst)[i] = src[i];
        else if (dtype == NNOPT_BF16)
            ((uint16_t *)dst)[i] = nnopt_bf16_from_f64(src[i]);
        else
            ((float *)dst)[i] = (float)src[i];
    }
}
