/* Depthwise convolutions (groups == C == K) of the blis backend, for
 * blis_conv.c; the kernels are in blis_depthwise.inc, and for 3x3 filters
 * in f32 on planes of 8x8 and smaller in blis_depthwise_small.c, on planes
 * 16 or 32 wide in blis_depthwise_large.c. Each runs
 * on `team` threads with that many threads' scratch of
 * blis_depthwise_scratch_bytes; tensors are F32 or F64 (`dtype`), NCHW, as
 * described by g. */
#ifndef NNOPT_BLIS_DEPTHWISE_H
#define NNOPT_BLIS_DEPTHWISE_H

#include <stddef.h>

#include "blis_internal.h"

size_t blis_depthwise_scratch_bytes(const conv_geometry *g, size_t elem_size);

/* y = x (*) w + bias (bias may be NULL), then max(0, y) when relu. */
void blis_depthwise_forward(const conv_geometry *g, nnopt_dtype dtype, int team, const void *x,
                            const void *w, const void *bias, int relu, void *y,
                            blis_scratch *scratch);
/* dx from dy and w. */
void blis_depthwise_backward_data(const conv_geometry *g, nnopt_dtype dtype, int team,
                                  const void *dy, const void *w, void *dx, blis_scratch *scratch);
/* dw from x and dy; the same for any team size. */
void blis_depthwise_backward_filter(const conv_geometry *g, nnopt_dtype dtype, int team,
                                    const void *x, const void *dy, void *dw, blis_scratch *scratch);

#endif
