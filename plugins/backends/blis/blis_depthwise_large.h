/* 3x3 depthwise convolutions (groups == C == K) on planes 16 or 32 values
 * wide, f32 on AVX-512: row kernels straight over the NCHW planes
 * (blis_depthwise_large.c). They take MobileNet-CIFAR's 32x32 and 16x16
 * stages, where the phase-plane stencils of blis_depthwise.inc spend most of
 * their time copying planes in and out. Same contracts as the entry points
 * of blis_depthwise.h. */
#ifndef NNOPT_BLIS_DEPTHWISE_LARGE_H
#define NNOPT_BLIS_DEPTHWISE_LARGE_H

#include <stddef.h>

#include "blis_internal.h"

/* Whether these kernels (built here) take g's planes (16 or 32 wide, any
 * height), given an f32 3x3 filter, padding 1, stride 1 or 2 (the same both
 * ways) and AVX-512F: blis_depthwise.c checks those. */
int blis_depthwise_large_applies(const conv_geometry *g);
size_t blis_depthwise_large_scratch_bytes(const conv_geometry *g);

void blis_depthwise_large_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y);
void blis_depthwise_large_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx);
void blis_depthwise_large_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch);

#endif
