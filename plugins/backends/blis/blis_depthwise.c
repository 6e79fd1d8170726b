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

/* Which kernels take g: the AVX-512 ones want f32 3x3 filters, padding 1
 * and the same stride 1 or 2 both ways; the small-plane ones square planes
 * up to 8x8, the row kernels planes 16 or 32 wide; the stencils of
 * blis_depthwise.inc take everything. */
typedef enum depthwise_path { PATH_STENCILS, PATH_SMALL, PATH_ROWS } depthwise_path;

static depthwise_path path_for(const conv_geometry *g, nnopt_dtype dtype) {
    if (dtype != NNOPT_F32 || g->r != 3 || g->s != 3 || g->pad_h != 1 || g->pad_w != 1 ||
        g->stride_h != g->stride_w || g->stride_h < 1 || g->stride_h > 2 || !blis_cpu_has_avx512f())
        return PATH_STENCILS;
    if (blis_depthwise_small_applies(g)) return PATH_SMALL;
    if (blis_depthwise_large_applies(g)) return PATH_ROWS;
    return PATH_STENCILS;
}

size_t blis_depthwise_scratch_bytes(const conv_geometry *g, size_t elem_size) {
    switch (path_for(g, elem_size == sizeof(float) ? NNOPT_F32 : NNOPT_F64)) {
    case PATH_SMALL:
        return blis_depthwise_small_scratch_bytes(g);
    case PATH_ROWS:
        return blis_depthwise_large_scratch_bytes(g);
    default:
        return depthwise_scratch_bytes(g, elem_size);
    }
}

void blis_depthwise_forward(const conv_geometry *g, nnopt_dtype dtype, int team, const void *x,
                            const void *w, const void *bias, int relu, void *y,
                            blis_scratch *scratch) {
    const depthwise_path path = path_for(g, dtype);
    if (path == PATH_SMALL)
        blis_depthwise_small_forward(g, team, x, w, bias, relu, y, scratch);
    else if (path == PATH_ROWS)
        blis_depthwise_large_forward(g, team, x, w, bias, relu, y);
    else if (dtype == NNOPT_F32)
        depthwise_forward_f32(g, team, x, w, bias, relu, y, scratch);
    else
        depthwise_forward_f64(g, team, x, w, bias, relu, y, scratch);
}

void blis_depthwise_backward_data(const conv_geometry *g, nnopt_dtype dtype, int team,
                                  const void *dy, const void *w, void *dx, blis_scratch *scratch) {
    const depthwise_path path = path_for(g, dtype);
    if (path == PATH_SMALL)
        blis_depthwise_small_backward_data(g, team, dy, w, dx, scratch);
    else if (path == PATH_ROWS)
        blis_depthwise_large_backward_data(g, team, dy, w, dx);
    else if (dtype == NNOPT_F32)
        depthwise_backward_data_f32(g, team, dy, w, dx, scratch);
    else
        depthwise_backward_data_f64(g, team, dy, w, dx, scratch);
}

void blis_depthwise_backward_filter(const conv_geometry *g, nnopt_dtype dtype, int team,
                                    const void *x, const void *dy, void *dw,
                                    blis_scratch *scratch) {
    const depthwise_path path = path_for(g, dtype);
    if (path == PATH_SMALL)
        blis_depthwise_small_backward_filter(g, team, x, dy, dw, scratch);
    else if (path == PATH_ROWS)
        blis_depthwise_large_backward_filter(g, team, x, dy, dw, scratch);
    else if (dtype == NNOPT_F32)
        depthwise_backward_filter_f32(g, team, x, dy, dw, scratch);
    else
        depthwise_backward_filter_f64(g, team, x, dy, dw, scratch);
}
