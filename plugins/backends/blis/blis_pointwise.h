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

typedef enum blis_pointwise_pass {
    BLIS_POINTWISE_FORWARD,
    BLIS_POINTWISE_DATA,
    BLIS_POINTWISE_FILTER,
} blis_pointwise_pass;

/* Whether `be` runs this pass of convolution g on these kernels: a
 * pointwise, ungrouped geometry on an instance with them enabled, and for
 * the forward and data passes at least two vectors of columns (N*P*Q): a
 * tile computes PW_VECS vectors of columns whatever the count, and with
 * fewer (one image of 4x4 or up to four of 2x2) BLIS's GEMMs were up to 2x
 * faster. */
int blis_pointwise_available(const blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                             blis_pointwise_pass pass);

/* y = W x + bias (bias may be NULL), then max(y, 0) when relu != 0. */
nnopt_status blis_pointwise_forward(blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                                    const void *x, const void *w, const void *bias, int relu,
                                    void *y);
/* dx = W^T dy, or dx += W^T dy when add != 0 (conv2d_bwd_data_add). */
nnopt_status blis_pointwise_backward_data(blis_backend *be, const conv_geometry *g,
                                          nnopt_dtype dtype, const void *dy, const void *w, int add,
                                          void *dx);
/* dw = sum over images of dy x^T, overwriting dw. Threads take runs of
 * columns and their partial sums are added in thread order: the result is
 * the same for a given thread count. */
nnopt_status blis_pointwise_backward_filter(blis_backend *be, const conv_geometry *g,
                                            nnopt_dtype dtype, const void *x, const void *dy,
                                            void *dw);

#endif
