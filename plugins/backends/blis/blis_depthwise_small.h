/* 3x3 depthwise convolutions (groups == C == K) on small planes, f32 on
 * AVX-512: channels in the vector lanes (blis_depthwise_small.c). They take
 * MobileNet's 8x8 to 1x1 stages, where the phase-plane stencils of
 * blis_depthwise.inc spend more on copies and loop setup than on the
 * arithmetic. Same contracts as the entry points of blis_depthwise.h. */
#ifndef NNOPT_BLIS_DEPTHWISE_SMALL_H
#define NNOPT_BLIS_DEPTHWISE_SMALL_H

#include <stddef.h>

#include "blis_internal.h"

/* Whether these kernels (built here) take g's planes (square, of 1, 2, 4 or
 * 8), given an f32 3x3 filter, padding 1, stride 1 or 2 (the same both
 * ways) and AVX-512F: blis_depthwise.c checks those. */
int blis_depthwise_small_applies(const conv_geometry *g);
size_t blis_depthwise_small_scratch_bytes(const conv_geometry *g);

void blis_depthwise_small_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y, blis_scratch *scratch);
void blis_depthwise_small_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx, blis_scratch *scratch);
void blis_depthwise_small_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch);

#endif
