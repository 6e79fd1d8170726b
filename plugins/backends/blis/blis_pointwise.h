/* Pointwise convolutions (1x1, stride 1, no padding, one group) of the blis
 * backend on an AVX-512 GEMM that reads and writes NCHW tensors directly;
 * the kernels are in blis_pointwise.inc. Each pass treats the batch's
 * (image, pixel) pairs as one long column axis. Tensors are F32 or F64
 * (`dtype`), shaped as g describes; every entry point runs on be->threads
 * threads and reserves its own scratch. */
#ifndef NNOPT_BLIS_POINTWISE_H
#define NNOPT_BLIS_POINTWISE_H

#include "blis_internal.h"

/* Whether this CPU has the instructions the kernels need (AVX-512F). */
int blis_pointwise_cpu_supported(void);

/* Whether `be` runs convolution g on these kernels: a pointwise, ungrouped
 * geometry on an instance with them enabled. */
int blis_pointwise_available(const blis_backend *be, const conv_geometry *g);

/* y = W x + bias (bias may be NULL), then max(y, 0) when relu != 0. */
nnopt_status blis_pointwise_forward(blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                                    const void *x, const void *w, const void *bias, int relu,
                                    void *y);
/* dx = W^T dy. */
nnopt_status blis_pointwise_backward_data(blis_backend *be, const conv_geometry *g,
                                          nnopt_dtype dtype, const void *dy, const void *w,
                                          void *dx);
/* dw = sum over images of dy x^T, overwriting dw. Threads take runs of
 * columns and their partial sums are added in thread order: the result is
 * the same for a given thread count. */
nnopt_status blis_pointwise_backward_filter(blis_backend *be, const conv_geometry *g,
                                            nnopt_dtype dtype, const void *x, const void *dy,
                                            void *dw);

#endif
