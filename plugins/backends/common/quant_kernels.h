/* Shared by the CPU backends' int8 kernels (conv2d_int8, dense_int8; see
 * ops.h for their arithmetic): argument checks and the scalar quantise /
 * dequantise steps, so the reference and the fast kernels round alike. */
#ifndef NNOPT_QUANT_KERNELS_H
#define NNOPT_QUANT_KERNELS_H

#include <math.h>

#include "nnopt/nnopt.h"

/* A quantised op's sizes; dense is a 1x1 convolution of 1x1 images
 * (h = w = r = s = p = q = 1, groups = 1). */
typedef struct nnopt_qlinear_geometry {
    int64_t n, c, h, w; /* input */
    int64_t k, r, s;    /* filters [K, C/groups, R, S] */
    int64_t p, q;       /* output plane */
    int64_t stride_h, stride_w, pad_h, pad_w, groups;
} nnopt_qlinear_geometry;

/* Checks counts (4 inputs, 1 output), dtypes, shapes and parameters of a
 * conv2d_int8 or dense_int8 op and fills g; explains failures with
 * host->set_error. */
nnopt_status nnopt_qlinear_check(const nnopt_host_api *host, const nnopt_op *op,
                                 nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                 int n_out, nnopt_qlinear_geometry *g);

/* x's u8 code: clamp first (the bounds are integers, so clamping before or
 * after rounding agree) then round to nearest even, all in f32. */
static inline uint8_t nnopt_quantize_u8(float x, float inv_scale, float zero_point) {
    float v = x * inv_scale;
    v = v + zero_point;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    return (uint8_t)nearbyintf(v);
}

/* The f32 output of an int32 accumulator: scale = x_scale * w_scale[k]. */
static inline float nnopt_dequantize(int32_t acc, float scale, float bias, int relu) {
    float y = (float)acc * scale;
    y = y + bias;
    return relu && y < 0.0f ? 0.0f : y;
}

#endif
