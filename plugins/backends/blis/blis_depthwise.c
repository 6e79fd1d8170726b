/* Depthwise convolutions (groups == C == K): the typed kernels of
 * blis_depthwise.inc, for f32 and f64, behind the entry points of
 * blis_depthwise.h, except where the small-plane kernels of
 * blis_depthwise_small.c or the row kernels of blis_depthwise_large.c
 * apply. Built with -ffp-contract=fast (see
 * CMakeLists.txt): ISO C mode otherwise keeps every multiply and add
 * separate, which halved the stencils' speed. */
#include <omp.h>
#include <string.h>

#include "blis_depthwise.h"
#include "blis_depthwise_large.h"
#include "blis_depthwise_small.h"
#include "blis_math.h" /* BLIS_VECTOR_CLONES */

#define T float
#define BLIS_SUFFIX f32
#include "blis_depthwise.inc"
#undef T
#undef BLIS_SUFFIX
#define T double
#define BLIS_SUFFIX f64
#include "blis_depthwise.inc"
#undef T
#undef BLIS_SUFFIX

size_t blis_depthwise_scratch_bytes(const conv_geometry *g, size_t elem_size) {
    if (blis_depthwise_small_applies(g, elem_size == sizeof(float) ? NNOPT_F32 : NNOPT_F64))
        return blis_depthwise_small_scratch_bytes(g);
    if (blis_depthwise_large_applies(g, elem_size == sizeof(float) ? NNOPT_F32 : NNOPT_F64))
        return blis_depthwise_large_scratch_bytes(g);
    return depthwise_scratch_bytes(g, elem_size);
}

void blis_depthwise_forward(const conv_geometry *g, nnopt_dtype dtype, int team, const void *x,
                            const void *w, const void *bias, int relu, void *y,
                            blis_scratch *scratch) {
    if (blis_depthwise_small_applies(g, dtype))
        blis_depthwise_small_forward(g, team, x, w, bias, relu, y, scratch);
    else if (blis_depthwise_large_applies(g, dtype))
        blis_depthwise_large_forward(g, team, x, w, bias, relu, y);
    else if (dtype == NNOPT_F32)
        depthwise_forward_f32(g, team, x, w, bias, relu, y, scratch);
    else
        depthwise_forward_f64(g, team, x, w, bias, relu, y, scratch);
}

void blis_depthwise_backward_data(const conv_geometry *g, nnopt_dtype dtype, int team,
                                  const void *dy, const void *w, void *dx, blis_scratch *scratch) {
    if (blis_depthwise_small_applies(g, dtype))
        blis_depthwise_small_backward_data(g, team, dy, w, dx, scratch);
    else if (blis_depthwise_large_applies(g, dtype))
        blis_depthwise_large_backward_data(g, team, dy, w, dx);
    else if (dtype == NNOPT_F32)
        depthwise_backward_data_f32(g, team, dy, w, dx, scratch);
    else
        depthwise_backward_data_f64(g, team, dy, w, dx, scratch);
}

void blis_depthwise_backward_filter(const conv_geometry *g, nnopt_dtype dtype, int team,
                                    const void *x, const void *dy, void *dw,
                                    blis_scratch *scratch) {
    if (blis_depthwise_small_applies(g, dtype))
        blis_depthwise_small_backward_filter(g, team, x, dy, dw, scratch);
    else if (blis_depthwise_large_applies(g, dtype))
        blis_depthwise_large_backward_filter(g, team, x, dy, dw, scratch);
    else if (dtype == NNOPT_F32)
        depthwise_backward_filter_f32(g, team, x, dy, dw, scratch);
    else
        depthwise_backward_filter_f64(g, team, x, dy, dw, scratch);
}
