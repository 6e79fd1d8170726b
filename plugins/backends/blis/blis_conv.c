/* 2-D convolutions: direct AVX-512 kernels for small ungrouped filters
 * (blis_direct.inc, chosen by conv_use_direct), depthwise stencils
 * (blis_depthwise.c), and otherwise BLIS GEMMs over im2col patches, one
 * image per GEMM.
 *
 * Images are split across threads and each thread runs single-threaded BLIS
 * on its own images with its own patch buffer: the patches of one image stay
 * in that core's cache, and every output lands straight in NCHW. Forward runs
 * y^T[PQ, K] = col^T[PQ, CRS] W^T[CRS, K], so the long spatial dimension is
 * GEMM's M; with few output channels (LeNet's 6 and 16) the other orientation
 * leaves most of the micro-kernel idle. When there are fewer images than
 * threads, images run one after another with BLIS threading each GEMM.
 * docs/backend-blis.md has the measurements behind these choices. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blis_depthwise.h"
#include "blis_internal.h"
#include "ref_kernels.h"
#include "blis_pointwise.h"
#include "blis_math.h" /* BLIS_VECTOR_CLONES */

/* The output columns q whose input column q*sw - pw + s lies inside the image:
 * [*q_lo, *q_hi). */
static void conv_valid_columns(const conv_geometry *g, long s, long *q_lo, long *q_hi) {
    const long first = g->pad_w - s;           /* need q*sw >= first */
    const long last = g->w - 1 + g->pad_w - s; /* need q*sw <= last */
    long lo = first <= 0 ? 0 : (first + g->stride_w - 1) / g->stride_w;
    long hi = last < 0 ? 0 : last / g->stride_w + 1;
    if (lo > g->q) lo = g->q;
    if (hi > g->q) hi = g->q;
    if (hi < lo) hi = lo;
    *q_lo = lo;
    *q_hi = hi;
}

typedef struct conv_kernels {
    size_t elem_size;
    void (*im2col)(const conv_geometry *g, const void *x_image, void *col_out);
    void (*col2im_add)(const conv_geometry *g, const void *col_in, void *dx_image);
    void (*add_bias)(void *y_image, const void *bias_in, long k_count, long plane);
    void (*accumulate)(void *dst_out, const void *src_in, long count);
} conv_kernels;

/* Direct convolutions (AVX-512, x86-64 GCC/Clang only; elsewhere the GEMM
 * path runs). im2col copies every input value R*S times and BLIS 0.9's zen3
 * kernels are AVX2, so on small-channel shapes (ResNet-CIFAR's 16-64
 * channels, LeNet) the copy and col2im cost more than the multiply.
 *
 * Layout: the image is zero-padded and, for stride > 1, split into sh*sw
 * phase planes (phase (b, a) holds padded rows b, b+sh, ... and columns a,
 * a+sw, ...), each `rows` x `pitch`, flattened. Output (p, q) is then flat
 * index o = p*pitch + q, and tap (c, r, s) reads phase (r%sh, s%sw) of
 * channel c at o + (r/sh)*pitch + s/sw: every tap is one contiguous vector
 * load for any stride, at the cost of computing (and dropping) pitch - Q
 * junk columns per output row. */
#if defined(__x86_64__) && defined(__GNUC__)
#define BLIS_HAVE_DIRECT 1
#include <immintrin.h>
#define DIRECT_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#else
#define BLIS_HAVE_DIRECT 0
#endif
#define DIRECT_KBLOCK 8 /* output channels per register block */

typedef struct direct_shape {
    long cin, h, w, cout, r, s; /* as a forward convolution */
    long sh, sw, ph, pw, p, q;
    long rows, pitch, plane; /* one phase plane */
    long taps, tpad4;        /* cin*R*S, rounded up to 4 */
    long kblocks;            /* blocks of 8 output channels */
    long ktile, kpad;        /* filter gradient: channels per tile (4 or 6); cout padded to it */
    long count;              /* flat outputs computed: P*pitch rounded up to 2 vectors */
    long buf_values;         /* phase planes plus read-ahead slack */
    long buf_stride;         /* buf_values rounded up to 64 bytes */
    long group;              /* images per filter-gradient group */
    int channel_lanes;       /* output channels in the lanes: direct_forward_lanes, ..._5x5_lanes */
    int relu;                /* forward: max(0, y), image by image while it is in cache */
} direct_shape;

typedef enum direct_pass { DIRECT_FORWARD, DIRECT_DATA, DIRECT_FILTER } direct_pass;

/* Byte offsets into each thread's scratch (the first four used in thread
 * 0's only): tap offsets, packed weights, output lane masks and offsets;
 * then phase planes, flat dy and partial sums (filter gradient). */
typedef struct direct_layout {
    size_t offsets, packed, lane_masks, y_offsets, buf, out, part, total;
} direct_layout;

static void image_range(long images, int thread, int team, long *first, long *end) {
    *first = images * thread / team;
    *end = images * (thread + 1) / team;
}

/* The stride-1 data gradient by filter columns (direct_columns_run): per
 * input channel and filter column s, u[s] = sum over k and r of w[k][c][r][s]
 * times dy_k shifted down r rows (flat vectors, DIRECT_COL_ROWS columns x
 * DIRECT_COL_VECS vectors per register tile), then dx = sum over s of u[s]
 * shifted right s columns. Chosen when the direct data pass would mostly
 * multiply padding (conv_data_by_columns). */
#define DIRECT_COL_ROWS 5
#define DIRECT_COL_VECS 3
#define DIRECT_COL_MAX_S 32 /* filter width bound (taps <= 1024) */

/* Offsets (in values) into a thread's scratch: dy_pad, then u. */
typedef struct direct_columns {
    long pad_stride; /* one dy plane with R-1 zero rows above and below */
    long u_stride;   /* one u row: H*Q rounded up to whole tiles */
    long dy_pad, u, total;
} direct_columns;

static direct_columns direct_columns_make(const conv_geometry *g, long lanes) {
    direct_columns c;
    const long tile = DIRECT_COL_VECS * lanes;
    c.pad_stride = (g->p + 2 * (g->r - 1)) * g->q;
    c.u_stride = (g->h * g->q + tile - 1) / tile * tile;
    c.dy_pad = 0;
    /* the tiles read up to a tile past a plane's last output row */
    const long dy_values = g->k * c.pad_stride + tile;
    /* u's slack: the column sums' (masked) loads reach W + pw + a vector
     * past its last row */
    c.u = (dy_values + lanes - 1) / lanes * lanes;
    c.total = c.u + g->s * c.u_stride + g->w + g->pad_w + lanes;
    return c;
}

#define T float
#define BLIS_SUFFIX f32
#include "blis_conv.inc"
#if BLIS_HAVE_DIRECT
#define DIRECT_VEC __m512
#define DIRECT_LANES 16
#define DIRECT_ZERO _mm512_setzero_ps
#define DIRECT_LOAD _mm512_loadu_ps
#define DIRECT_STORE _mm512_storeu_ps
#define DIRECT_SET1 _mm512_set1_ps
#define DIRECT_FMA _mm512_fmadd_ps
#define DIRECT_REDUCE _mm512_reduce_add_ps
#define DIRECT_ADD _mm512_add_ps
#define DIRECT_MASK __mmask16
#define DIRECT_COMPRESS _mm512_maskz_compress_ps
#define DIRECT_MASK_STORE _mm512_mask_storeu_ps
#define DIRECT_MASKZ_LOAD _mm512_maskz_loadu_ps
#include "blis_direct.inc"
#undef DIRECT_ADD
#undef DIRECT_MASK
#undef DIRECT_COMPRESS
#undef DIRECT_MASK_STORE
#undef DIRECT_MASKZ_LOAD
#undef DIRECT_STORE_VALID
#undef DIRECT_VEC
#undef DIRECT_LANES
#undef DIRECT_ZERO
#undef DIRECT_LOAD
#undef DIRECT_STORE
#undef DIRECT_SET1
#undef DIRECT_FMA
#undef DIRECT_REDUCE
#endif
#undef T
#undef BLIS_SUFFIX
#define T double
#define BLIS_SUFFIX f64
#include "blis_conv.inc"
#if BLIS_HAVE_DIRECT
#define DIRECT_VEC __m512d
#define DIRECT_LANES 8
#define DIRECT_ZERO _mm512_setzero_pd
#define DIRECT_LOAD _mm512_loadu_pd
#define DIRECT_STORE _mm512_storeu_pd
#define DIRECT_SET1 _mm512_set1_pd
#define DIRECT_FMA _mm512_fmadd_pd
#define DIRECT_REDUCE _mm512_reduce_add_pd
#define DIRECT_ADD _mm512_add_pd
#define DIRECT_MASK __mmask8
#define DIRECT_COMPRESS _mm512_maskz_compress_pd
#define DIRECT_MASK_STORE _mm512_mask_storeu_pd
#define DIRECT_MASKZ_LOAD _mm512_maskz_loadu_pd
#include "blis_direct.inc"
#undef DIRECT_ADD
#undef DIRECT_MASK
#undef DIRECT_COMPRESS
#undef DIRECT_MASK_STORE
#undef DIRECT_MASKZ_LOAD
#undef DIRECT_STORE_VALID
#undef DIRECT_VEC
#undef DIRECT_LANES
#undef DIRECT_ZERO
#undef DIRECT_LOAD
#undef DIRECT_STORE
#undef DIRECT_SET1
#undef DIRECT_FMA
#undef DIRECT_REDUCE
#endif
#undef T
#undef BLIS_SUFFIX

static const conv_kernels *conv_kernels_for(nnopt_dtype dtype) {
    return dtype == NNOPT_F32 ? &conv_kernels_f32 : &conv_kernels_f64;
}

/* x: [N,C,H,W], w: [K,C/g,R,S], y: [N,K,P,Q] (dy for the backward ops). */
static nnopt_status conv_geometry_make(blis_backend *be, const nnopt_op *op, const nnopt_tensor *x,
                                       const nnopt_tensor *w, const nnopt_tensor *y,
                                       conv_geometry *g) {
    const nnopt_conv2d_params *cp = &op->p.conv2d;
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || cp->groups < 1 || cp->stride_h < 1 ||
        cp->stride_w < 1 || cp->pad_h < 0 || cp->pad_w < 0) {
        be->host->set_error("blis: %s: expects 4-D tensors and positive strides/groups",
                            nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (conv_geometry){
        .n = x->shape[0],
        .c = x->shape[1],
        .h = x->shape[2],
        .w = x->shape[3],
        .k = w->shape[0],
        .r = w->shape[2],
        .s = w->shape[3],
        .p = y->shape[2],
        .q = y->shape[3],
        .groups = cp->groups,
        .stride_h = cp->stride_h,
        .stride_w = cp->stride_w,
        .pad_h = cp->pad_h,
        .pad_w = cp->pad_w,
    };
    g->cg = g->c / g->groups;
    g->kg = g->k / g->groups;
    const int consistent = g->c % g->groups == 0 && g->k % g->groups == 0 && w->shape[1] == g->cg &&
                           y->shape[0] == g->n && y->shape[1] == g->k &&
                           g->h + 2 * g->pad_h >= g->r && g->w + 2 * g->pad_w >= g->s &&
                           g->p == (g->h + 2 * g->pad_h - g->r) / g->stride_h + 1 &&
                           g->q == (g->w + 2 * g->pad_w - g->s) / g->stride_w + 1;
    if (!consistent) {
        be->host->set_error("blis: %s: inconsistent shapes", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* 1x1, stride 1, no padding: the image itself is the patch matrix. */
static int conv_is_pointwise(const conv_geometry *g) {
    return g->r == 1 && g->s == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
           g->pad_w == 0;
}

/* One filter per channel (groups == C == K): a direct stencil, as im2col
 * would turn each plane into a degenerate 1-row GEMM. */
static int conv_is_depthwise(const conv_geometry *g) {
    return g->groups > 1 && g->groups == g->c && g->k == g->c;
}

/* Threads for the depthwise loops: one for small batches (a parallel
 * region costs more than a few thousand multiply-adds). */
static int depthwise_team(const blis_backend *be, const conv_geometry *g) {
    const long work = g->n * g->c * g->p * g->q * g->r * g->s;
    return work < 65536 ? 1 : be->threads;
}

/* Per-thread scratch of the depthwise paths (blis_depthwise.c): phase
 * planes and flat buffers, then the filter gradient's double accumulators. */
static nnopt_status depthwise_scratch(blis_backend *be, int team, const conv_geometry *g,
                                      nnopt_dtype dtype) {
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    return blis_scratch_reserve(be, team, blis_depthwise_scratch_bytes(g, es));
}

/* Pointwise convolutions on small planes (MobileNet's 8x8 .. 2x2 stages):
 * one GEMM per image would stream the whole filter through memory per image
 * (a rank-4 update of a 1024x1024 dW at 2x2), so the batch is gathered into
 * channel-major [C, N*PQ] matrices and each op is one GEMM, threaded by BLIS. */
static int conv_is_small_pointwise(const conv_geometry *g) {
    return conv_is_pointwise(g) && g->groups == 1 && g->p * g->q < 256 && g->n > 1;
}

/* dst[c][n*plane + i] = src[n][c][i] (to_channel_major) or the reverse. */
static void channel_major_copy(const char *src, char *dst, long images, long channels, long plane,
                               size_t es, int to_channel_major, int team) {
    const size_t run = (size_t)plane * es;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long c = 0; c < channels; c++) {
        for (long n = 0; n < images; n++) {
            const size_t nchw = (size_t)(n * channels + c) * run;
            const size_t cn = (size_t)(c * images + n) * run;
            if (to_channel_major)
                memcpy(dst + cn, src + nchw, run);
            else
                memcpy(dst + nchw, src + cn, run);
        }
    }
}

typedef enum pointwise_pass { POINTWISE_FORWARD, POINTWISE_DATA, POINTWISE_FILTER } pointwise_pass;

/* forward: y = W x; data: dx = W^T dy; filter: dW = dy x^T, all as [rows,
 * N*PQ] channel-major matrices in thread 0's scratch. `a` is x (forward,
 * filter) or dy (data); `b` is dy (filter) or unused. */
static nnopt_status pointwise_batched(blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                                      pointwise_pass pass, const void *a, const void *b,
                                      const void *w, const void *bias, int relu, void *out) {
    const conv_kernels *kern = conv_kernels_for(dtype);
    const size_t es = kern->elem_size;
    const long cols = g->n * g->p * g->q, plane = g->p * g->q;
    const size_t x_bytes = blis_align64((size_t)(g->c * cols) * es);
    const size_t y_bytes = blis_align64((size_t)(g->k * cols) * es);
    nnopt_status st = blis_scratch_reserve(be, 1, x_bytes + y_bytes);
    if (st != NNOPT_OK) return st;
    char *x_cm = be->scratch[0].data, *y_cm = x_cm + x_bytes;
    const int team = be->threads;
    switch (pass) {
    case POINTWISE_FORWARD: /* y_cm[K, cols] = W[K, C] x_cm[C, cols] */
        channel_major_copy(a, x_cm, g->n, g->c, plane, es, 1, team);
        blis_gemm(dtype, team, g->k, cols, g->c, (blis_matrix){w, g->c, 1},
                  (blis_matrix){x_cm, cols, 1}, 0.0, y_cm, cols, 1);
        channel_major_copy(y_cm, out, g->n, g->k, plane, es, 0, team);
        for (long n = 0; (bias || relu) && n < g->n; n++) {
            char *y_img = (char *)out + (size_t)(n * g->k * plane) * es;
            if (bias) kern->add_bias(y_img, bias, g->k, plane);
            if (relu) blis_relu_in_place(dtype, y_img, g->k * plane);
        }
        break;
    case POINTWISE_DATA: /* x_cm[C, cols] = W^T[C, K] y_cm[K, cols] */
        channel_major_copy(a, y_cm, g->n, g->k, plane, es, 1, team);
        blis_gemm(dtype, team, g->c, cols, g->k, (blis_matrix){w, 1, g->c},
                  (blis_matrix){y_cm, cols, 1}, 0.0, x_cm, cols, 1);
        channel_major_copy(x_cm, out, g->n, g->c, plane, es, 0, team);
        break;
    case POINTWISE_FILTER: /* dW[K, C] = y_cm[K, cols] x_cm^T[cols, C] */
        channel_major_copy(a, x_cm, g->n, g->c, plane, es, 1, team);
        channel_major_copy(b, y_cm, g->n, g->k, plane, es, 1, team);
        blis_gemm(dtype, team, g->k, g->c, cols, (blis_matrix){y_cm, cols, 1},
                  (blis_matrix){x_cm, 1, cols}, 0.0, out, g->c, 1);
        break;
    }
    return NNOPT_OK;
}

/* How a batch is spread: `team` threads each take a contiguous run of images
 * and give BLIS `gemm_threads` (images in parallel, or GEMMs in parallel). */
typedef struct conv_plan {
    int team, gemm_threads;
} conv_plan;

static conv_plan conv_plan_make(const blis_backend *be, long images) {
    if (images >= be->threads) return (conv_plan){be->threads, 1};
    return (conv_plan){1, be->threads};
}

int blis_direct_conv_available(void) {
#if BLIS_HAVE_DIRECT
    return blis_cpu_has_avx512f();
#else
    return 0;
#endif
}

static long ceil_div(long a, long b) {
    return (a + b - 1) / b;
}

/* The convolution a pass computes, as a forward convolution: the data
 * gradient (stride 1 only) is dy convolved with the flipped, transposed
 * filter, padded by R-1-pad. */
static void direct_shape_make(const conv_geometry *g, direct_pass pass, size_t es,
                              direct_shape *d) {
    if (pass == DIRECT_DATA)
        *d = (direct_shape){.cin = g->k,
                            .h = g->p,
                            .w = g->q,
                            .cout = g->c,
                            .r = g->r,
                            .s = g->s,
                            .sh = 1,
                            .sw = 1,
                            .ph = g->r - 1 - g->pad_h,
                            .pw = g->s - 1 - g->pad_w,
                            .p = g->h,
                            .q = g->w};
    else
        *d = (direct_shape){.cin = g->c,
                            .h = g->h,
                            .w = g->w,
                            .cout = g->k,
                            .r = g->r,
                            .s = g->s,
                            .sh = g->stride_h,
                            .sw = g->stride_w,
                            .ph = g->pad_h,
                            .pw = g->pad_w,
                            .p = g->p,
                            .q = g->q};
    d->rows = ceil_div(d->h + 2 * d->ph, d->sh);
    /* With column stride 1, adjacent rows share their padding: the right
     * padding reads of row i land on the left zeros of row i+1, so a pitch
     * of W + pw suffices (fewer junk columns: 8x8 planes 9 instead of 10). */
    d->pitch = d->sw == 1 ? d->w + d->pw : ceil_div(d->w + 2 * d->pw, d->sw);
    d->plane = d->rows * d->pitch;
    d->taps = d->cin * d->r * d->s;
    d->tpad4 = ceil_div(d->taps, 4) * 4;
    d->kblocks = ceil_div(d->cout, DIRECT_KBLOCK);
    /* 6-channel tiles where they pad fewer channels (LeNet's conv1: 6, not 8) */
    d->ktile = ceil_div(d->cout, 6) * 6 < ceil_div(d->cout, 4) * 4 ? 6 : 4;
    d->kpad = ceil_div(d->cout, d->ktile) * d->ktile;
    const long lanes = (long)(64 / es); /* one 512-bit vector */
    d->count = ceil_div(d->p * d->pitch, lanes) * lanes;
    /* Reads reach at most one count past the last plane's start
     * (direct_forward_lanes: up to 8 + pw past a plane's end; 16 more). */
    d->buf_values = d->cin * d->sh * d->sw * d->plane + d->count + 16;
    d->buf_stride = ceil_div(d->buf_values, lanes) * lanes;
    /* Filter gradient: as many images per group as fit in ~384 KB of L2 (up to 8). */
    const long image_bytes = (d->buf_stride + d->kpad * d->count) * (long)es;
    d->group = pass == DIRECT_FILTER ? 384 * 1024 / image_bytes : 1;
    d->group = d->group < 1 ? 1 : d->group > 8 ? 8 : d->group;
    /* Stride 1, filters 5 wide (forward) or 5x5 (filter gradient), one
     * vector of output channels and many junk columns (LeNet conv2: 4 of
     * 14): the channels go in the lanes instead. */
    d->channel_lanes = pass != DIRECT_DATA && d->cout == lanes && d->sh == 1 && d->sw == 1 &&
                       8 * (d->pitch - d->q) >= d->pitch && d->s == 5 &&
                       (pass == DIRECT_FORWARD || d->r == 5);
}

/* Where the direct kernels beat im2col + GEMM (measured on Zen 5, see
 * docs/backend-blis.md): ungrouped R x S > 1 filters, stride <= 2, padding
 * under the filter size, few enough taps (C*R*S <= 1024) that a block's
 * weights stay in L1 and few enough output channels that the input planes
 * are reused from L2. The data gradient needs stride 1. Everything else
 * (pointwise, grouped, depthwise, large layers) keeps its GEMM path. */
static int conv_use_direct(const blis_backend *be, const conv_geometry *g, direct_pass pass) {
    if (!be->direct_conv) return 0;
    if (g->groups != 1 || g->r * g->s < 2 || g->stride_h > 2 || g->stride_w > 2) return 0;
    if (g->pad_h >= g->r || g->pad_w >= g->s) return 0;
    if (pass == DIRECT_DATA && (g->stride_h != 1 || g->stride_w != 1)) return 0;
    const long in_channels = pass == DIRECT_DATA ? g->k : g->c;
    const long out_channels = pass == DIRECT_DATA ? g->c : g->k;
    if (in_channels * g->r * g->s > 1024 || out_channels > 256) return 0;
    return (g->h + 2 * g->pad_h) * (g->w + 2 * g->pad_w) * in_channels <= (1L << 20);
}

static direct_layout direct_layout_make(const direct_shape *d, direct_pass pass, size_t es) {
    direct_layout lay = {0};
    size_t at = 0;
    lay.offsets = at;
    at += blis_align64((size_t)d->tpad4 * sizeof(long));
    lay.packed = at;
    if (pass != DIRECT_FILTER)
        at += blis_align64((size_t)(d->kblocks * DIRECT_KBLOCK * d->taps) * es);
    lay.lane_masks = at;
    at += blis_align64((size_t)(d->count / (long)(64 / es)) * sizeof(unsigned));
    lay.y_offsets = at;
    at += blis_align64((size_t)(d->count / (long)(64 / es)) * sizeof(long));
    lay.buf = at;
    at += blis_align64((size_t)(d->group * d->buf_stride) * es);
    lay.out = at;
    if (pass == DIRECT_FORWARD && d->channel_lanes) /* direct_forward_lanes's tile */
        at += blis_align64((size_t)(10 * d->cout) * es);
    if (pass == DIRECT_FILTER) {
        long values = d->group * d->kpad * d->count;
        if (d->channel_lanes) values = (d->p * d->q + d->taps) * d->cout; /* dy^T, dW^T */
        at += blis_align64((size_t)values * es);
    }
    lay.part = at;
    if (pass == DIRECT_FILTER) at += blis_align64((size_t)(d->cout * d->taps) * es);
    lay.total = at;
    return lay;
}

/* Whether the data gradient runs by filter columns: when its FMAs (every
 * k, r, s and output row, no output-channel blocks) are at most 3/4 of the
 * direct pass's, which convolves dy padded by R-1-pad. With no forward
 * padding most of those planes are zeros: LeNet's conv2 computes 14x14
 * outputs per channel from 18x18 planes holding 10x10 values. */
static int conv_data_by_columns(const conv_geometry *g, size_t es) {
    if (g->s > DIRECT_COL_MAX_S) return 0;
    direct_shape d;
    direct_shape_make(g, DIRECT_DATA, es, &d);
    const long lanes = (long)(64 / es);
    const direct_columns cols = direct_columns_make(g, lanes);
    const long direct_fmas = d.kblocks * DIRECT_KBLOCK * (d.count / lanes) * d.taps;
    const long column_fmas = g->c * ceil_div(g->s, DIRECT_COL_ROWS) * DIRECT_COL_ROWS *
                             (cols.u_stride / lanes) * g->k * g->r;
    return 4 * column_fmas <= 3 * direct_fmas;
}

/* Runs one pass with the direct kernels; the filter pass then adds the
 * threads' partial sums in thread order (deterministic for a thread count). */
static nnopt_status conv_direct(blis_backend *be, const conv_geometry *g, direct_pass pass,
                                nnopt_dtype dtype, const void *a, const void *b, const void *w,
                                const void *bias, int relu, void *out) {
#if BLIS_HAVE_DIRECT
    const conv_kernels *kern = conv_kernels_for(dtype);
    const size_t es = kern->elem_size;
    if (pass == DIRECT_DATA && conv_data_by_columns(g, es)) {
        const int team = g->n < be->threads ? (int)g->n : be->threads;
        nnopt_status st = blis_scratch_reserve(
            be, team, (size_t)direct_columns_make(g, (long)(64 / es)).total * es);
        if (st != NNOPT_OK) return st;
        if (dtype == NNOPT_F32)
            direct_columns_run_f32(g, team, a, w, out, be->scratch);
        else
            direct_columns_run_f64(g, team, a, w, out, be->scratch);
        return NNOPT_OK;
    }
    direct_shape d;
    direct_shape_make(g, pass, es, &d);
    d.relu = relu;
    const direct_layout lay = direct_layout_make(&d, pass, es);
    const int team = g->n < be->threads ? (int)g->n : be->threads;
    nnopt_status st = blis_scratch_reserve(be, team, lay.total);
    if (st != NNOPT_OK) return st;
    const int team_used =
        dtype == NNOPT_F32
            ? direct_run_f32(&d, pass, team, g->n, a, b, w, bias, out, be->scratch, &lay)
            : direct_run_f64(&d, pass, team, g->n, a, b, w, bias, out, be->scratch, &lay);
    if (pass == DIRECT_FILTER) {
        const long dw_count = d.cout * d.taps;
        memcpy(out, (const char *)be->scratch[0].data + lay.part, (size_t)dw_count * es);
        for (int t = 1; t < team_used; t++)
            kern->accumulate(out, (const char *)be->scratch[t].data + lay.part, dw_count);
    }
    return NNOPT_OK;
#else
    (void)be, (void)g, (void)pass, (void)dtype, (void)a, (void)b, (void)w, (void)bias, (void)relu;
    (void)out;
    return NNOPT_STATUS_UNSUPPORTED;
#endif
}

nnopt_status blis_conv2d(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out) {
    const int residual = op->kind == NNOPT_OP_CONV2D_ADD_RELU;
    nnopt_status st = blis_check_counts(be, op, n_in, residual ? 4 : 2, residual ? 4 : 3, n_out, 1);
    const nnopt_tensor *x = in[0], *w = n_in > 1 ? in[1] : NULL, *b = n_in > 2 ? in[2] : NULL;
    nnopt_tensor *y = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, x, "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, w, "w", x);
    if (st == NNOPT_OK && b) st = blis_check_float(be, op, b, "b", x);
    if (st == NNOPT_OK) st = blis_check_float(be, op, y, "y", x);
    conv_geometry g;
    if (st == NNOPT_OK) st = conv_geometry_make(be, op, x, w, y, &g);
    if (st != NNOPT_OK) return st;
    if (st == NNOPT_OK && residual) st = blis_check_float(be, op, in[3], "r", y);
    if (st == NNOPT_OK && residual && nnopt_tensor_numel(in[3]) != nnopt_tensor_numel(y)) {
        be->host->set_error("blis: %s: r and y differ in size", nnopt_op_kind_name(op->kind));
        st = NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (st != NNOPT_OK) return st;
    /* conv2d_relu: every path applies the relu while its output is in cache */
    const int relu = op->kind == NNOPT_OP_CONV2D_RELU;
    const int wino_tile =
        conv_is_depthwise(&g) ? 0 : blis_winograd_tile(be, &g, x->dtype, BLIS_WINOGRAD_FORWARD);
    /* conv2d_add_relu: Winograd adds the residual in its scatter; other
     * paths write y, then y = max(0, y + r) in one more pass */
    if (residual && !wino_tile) {
        nnopt_op plain = *op;
        plain.kind = NNOPT_OP_CONV2D;
        st = blis_conv2d(be, &plain, in, 3, out, 1);
        const nnopt_op add = {.kind = NNOPT_OP_ADD_RELU};
        nnopt_tensor *sum_in[2] = {y, in[3]};
        return st == NNOPT_OK ? blis_add(be, &add, sum_in, 2, out, 1) : st;
    }

    if (conv_is_depthwise(&g)) {
        const int team = depthwise_team(be, &g);
        st = depthwise_scratch(be, team, &g, x->dtype);
        if (st != NNOPT_OK) return st;
        const void *bias = b ? b->data : NULL;
        blis_depthwise_forward(&g, x->dtype, team, x->data, w->data, bias, relu, y->data,
                               be->scratch);
        return NNOPT_OK;
    }

    if (wino_tile)
        return blis_winograd_conv(be, &g, 0, wino_tile, x->dtype, x->data, w->data,
                                  b ? b->data : NULL,
                                  residual ? BLIS_OUT_ADD_RELU
                                  : relu   ? BLIS_OUT_RELU
                                           : BLIS_OUT_STORE,
                                  residual ? in[3]->data : NULL, y->data);

    if (conv_use_direct(be, &g, DIRECT_FORWARD))
        return conv_direct(be, &g, DIRECT_FORWARD, x->dtype, x->data, NULL, w->data,
                           b ? b->data : NULL, relu, y->data);

    if (blis_pointwise_available(be, &g, x->dtype, BLIS_POINTWISE_FORWARD))
        return blis_pointwise_forward(be, &g, x->dtype, x->data, w->data, b ? b->data : NULL, relu,
                                      y->data);
    if (conv_is_small_pointwise(&g))
        return pointwise_batched(be, &g, x->dtype, POINTWISE_FORWARD, x->data, NULL, w->data,
                                 b ? b->data : NULL, relu, y->data);

    const conv_kernels *kern = conv_kernels_for(x->dtype);
    const size_t es = kern->elem_size;
    const long pq = g.p * g.q, crs = g.cg * g.r * g.s;
    const int pointwise = conv_is_pointwise(&g);
    const conv_plan plan = conv_plan_make(be, g.n);
    st = blis_scratch_reserve(be, plan.team, pointwise ? 0 : (size_t)(crs * pq) * es);
    if (st != NNOPT_OK) return st;

    const char *xd = x->data, *wd = w->data;
    char *yd = y->data;
#pragma omp parallel num_threads(plan.team)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        long first, end;
        image_range(g.n, t, team, &first, &end);
        void *col = be->scratch[t].data;
        for (long n = first; n < end; n++) {
            for (long grp = 0; grp < g.groups; grp++) {
                const char *x_img = xd + (size_t)((n * g.c + grp * g.cg) * g.h * g.w) * es;
                char *y_img = yd + (size_t)((n * g.k + grp * g.kg) * pq) * es;
                const void *patches = x_img;
                if (!pointwise) {
                    kern->im2col(&g, x_img, col);
                    patches = col;
                }
                /* y^T[pq, k] = col^T[pq, crs] W^T[crs, k], written into NCHW y */
                const blis_matrix a = {patches, 1, pq};
                const blis_matrix bm = {wd + (size_t)(grp * g.kg * crs) * es, 1, crs};
                blis_gemm(x->dtype, plan.gemm_threads, pq, g.kg, crs, a, bm, 0.0, y_img, 1, pq);
                if (b)
                    kern->add_bias(y_img, (const char *)b->data + (size_t)(grp * g.kg) * es, g.kg,
                                   pq);
                if (relu) blis_relu_in_place(x->dtype, y_img, g.kg * pq);
            }
        }
    }
    return NNOPT_OK;
}

/* Whether the data gradient's path for g can add into dx as it writes it
 * (Winograd's scatter, the pointwise kernel, the GEMM paths); the others
 * overwrite. */
static int bwd_data_adds_in_place(const blis_backend *be, const conv_geometry *g,
                                  nnopt_dtype dtype) {
    if (conv_is_depthwise(g)) return 0;
    if (blis_winograd_tile(be, g, dtype, BLIS_WINOGRAD_DATA)) return 1;
    if (conv_use_direct(be, g, DIRECT_DATA)) return 0;
    return blis_pointwise_available(be, g, dtype, BLIS_POINTWISE_DATA) ||
           !conv_is_small_pointwise(g);
}

/* conv2d_bwd_data_add(_masked) where the path overwrites: the gradient
 * into the backend's add buffer, then added to dx (where in[2] > 0). */
static nnopt_status bwd_data_add_via_buffer(blis_backend *be, const nnopt_op *op,
                                            nnopt_tensor *const *in, nnopt_tensor *dx) {
    const size_t bytes = blis_align64(nnopt_tensor_nbytes(dx));
    if (be->add_buffer_bytes < bytes) {
        free(be->add_buffer);
        be->add_buffer_bytes = 0;
        be->add_buffer = aligned_alloc(64, bytes);
        if (!be->add_buffer) {
            be->host->set_error("blis: conv2d_bwd_data_add: out of memory (%zu bytes)", bytes);
            return NNOPT_STATUS_OUT_OF_MEMORY;
        }
        be->add_buffer_bytes = bytes;
    }
    nnopt_tensor part = *dx;
    part.data = be->add_buffer;
    nnopt_op plain = *op;
    plain.kind = NNOPT_OP_CONV2D_BWD_DATA;
    nnopt_tensor *part_out[1] = {&part};
    nnopt_status st = blis_conv2d_bwd_data(be, &plain, in, 2, part_out, 1);
    if (st != NNOPT_OK) return st;
    if (op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED) {
        blis_add_where_positive(be, dx->dtype, dx->data, part.data, in[2]->data,
                                (long)nnopt_tensor_numel(dx));
        return NNOPT_OK;
    }
    const nnopt_op add = {.kind = NNOPT_OP_ADD};
    nnopt_tensor *sum_in[2] = {dx, &part};
    return blis_add(be, &add, sum_in, 2, &dx, 1);
}

nnopt_status blis_conv2d_bwd_data(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out) {
    const int masked = op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
    nnopt_status st = blis_check_counts(be, op, n_in, 2 + masked, 2 + masked, n_out, 1);
    const nnopt_tensor *dy = in[0], *w = n_in > 1 ? in[1] : NULL;
    nnopt_tensor *dx = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, dy, "dy", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, w, "w", dy);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dx, "dx", dy);
    if (st == NNOPT_OK && masked) st = blis_check_float(be, op, in[2], "y", dy);
    conv_geometry g;
    if (st == NNOPT_OK) st = conv_geometry_make(be, op, dx, w, dy, &g);
    if (st != NNOPT_OK) return st;
    if (masked && !blis_same_shape(in[2], dx))
        return nnopt_ref_run(be->host, op, in, n_in, out, n_out);
    const int add = masked || op->kind == NNOPT_OP_CONV2D_BWD_DATA_ADD;
    const int wino_tile = blis_winograd_tile(be, &g, dy->dtype, BLIS_WINOGRAD_DATA);
    if (wino_tile && add)
        return blis_winograd_conv(be, &g, 1, wino_tile, dy->dtype, dy->data, w->data, NULL,
                                  masked ? BLIS_OUT_ADD_MASKED : BLIS_OUT_ADD,
                                  masked ? in[2]->data : NULL, dx->data);
    if (masked || (add && !bwd_data_adds_in_place(be, &g, dy->dtype)))
        return bwd_data_add_via_buffer(be, op, in, dx);

    if (conv_is_depthwise(&g)) {
        const int team = depthwise_team(be, &g);
        st = depthwise_scratch(be, team, &g, dy->dtype);
        if (st != NNOPT_OK) return st;
        blis_depthwise_backward_data(&g, dy->dtype, team, dy->data, w->data, dx->data, be->scratch);
        return NNOPT_OK;
    }

    if (wino_tile)
        return blis_winograd_conv(be, &g, 1, wino_tile, dy->dtype, dy->data, w->data, NULL,
                                  BLIS_OUT_STORE, NULL, dx->data);

    if (conv_use_direct(be, &g, DIRECT_DATA))
        return conv_direct(be, &g, DIRECT_DATA, dy->dtype, dy->data, NULL, w->data, NULL, 0,
                           dx->data);

    if (blis_pointwise_available(be, &g, dy->dtype, BLIS_POINTWISE_DATA))
        return blis_pointwise_backward_data(be, &g, dy->dtype, dy->data, w->data, add, dx->data);
    if (conv_is_small_pointwise(&g))
        return pointwise_batched(be, &g, dy->dtype, POINTWISE_DATA, dy->data, NULL, w->data, NULL,
                                 0, dx->data);

    const conv_kernels *kern = conv_kernels_for(dy->dtype);
    const size_t es = kern->elem_size;
    const long pq = g.p * g.q, crs = g.cg * g.r * g.s, hw = g.h * g.w;
    const int pointwise = conv_is_pointwise(&g);
    const conv_plan plan = conv_plan_make(be, g.n);
    st = blis_scratch_reserve(be, plan.team, pointwise ? 0 : (size_t)(crs * pq) * es);
    if (st != NNOPT_OK) return st;

    const char *dyd = dy->data, *wd = w->data;
    char *dxd = dx->data;
#pragma omp parallel num_threads(plan.team)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        long first, end;
        image_range(g.n, t, team, &first, &end);
        void *dcol = be->scratch[t].data;
        for (long n = first; n < end; n++) {
            for (long grp = 0; grp < g.groups; grp++) {
                const char *dy_img = dyd + (size_t)((n * g.k + grp * g.kg) * pq) * es;
                char *dx_img = dxd + (size_t)((n * g.c + grp * g.cg) * hw) * es;
                /* dcol[crs, pq] = W^T[crs, k] dy[k, pq] */
                const blis_matrix a = {wd + (size_t)(grp * g.kg * crs) * es, 1, crs};
                const blis_matrix bm = {dy_img, pq, 1};
                if (pointwise) {
                    blis_gemm(dy->dtype, plan.gemm_threads, crs, pq, g.kg, a, bm, add ? 1.0 : 0.0,
                              dx_img, pq, 1);
                    continue;
                }
                blis_gemm(dy->dtype, plan.gemm_threads, crs, pq, g.kg, a, bm, 0.0, dcol, pq, 1);
                if (!add) memset(dx_img, 0, (size_t)(g.cg * hw) * es);
                kern->col2im_add(&g, dcol, dx_img);
            }
        }
    }
    return NNOPT_OK;
}

nnopt_status blis_conv2d_bwd_filter(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 2, n_out, 1);
    const nnopt_tensor *x = in[0], *dy = n_in > 1 ? in[1] : NULL;
    nnopt_tensor *dw = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, x, "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dy, "dy", x);
    if (st == NNOPT_OK) st = blis_check_float(be, op, dw, "dw", x);
    conv_geometry g;
    if (st == NNOPT_OK) st = conv_geometry_make(be, op, x, dw, dy, &g);
    if (st != NNOPT_OK) return st;

    if (conv_is_depthwise(&g)) {
        const int team = depthwise_team(be, &g);
        st = depthwise_scratch(be, team, &g, x->dtype);
        if (st != NNOPT_OK) return st;
        blis_depthwise_backward_filter(&g, x->dtype, team, x->data, dy->data, dw->data,
                                       be->scratch);
        return NNOPT_OK;
    }

    const int wino_tile = blis_winograd_tile(be, &g, x->dtype, BLIS_WINOGRAD_FILTER);
    if (wino_tile)
        return blis_winograd_filter(be, &g, wino_tile, x->dtype, x->data, dy->data, dw->data);

    if (conv_use_direct(be, &g, DIRECT_FILTER))
        return conv_direct(be, &g, DIRECT_FILTER, x->dtype, x->data, dy->data, NULL, NULL, 0,
                           dw->data);

    if (blis_pointwise_available(be, &g, x->dtype, BLIS_POINTWISE_FILTER))
        return blis_pointwise_backward_filter(be, &g, x->dtype, x->data, dy->data, dw->data);
    if (conv_is_small_pointwise(&g))
        return pointwise_batched(be, &g, x->dtype, POINTWISE_FILTER, x->data, dy->data, NULL, NULL,
                                 0, dw->data);

    const conv_kernels *kern = conv_kernels_for(x->dtype);
    const size_t es = kern->elem_size;
    const long pq = g.p * g.q, crs = g.cg * g.r * g.s, dw_count = g.k * crs;
    const int pointwise = conv_is_pointwise(&g);
    const conv_plan plan = conv_plan_make(be, g.n);
    /* Each thread sums its images into a private dW (after its patch
     * buffer); the partial sums are then added in thread order, so results
     * do not depend on timing. */
    const size_t col_bytes = pointwise ? 0 : blis_align64((size_t)(crs * pq) * es);
    st = blis_scratch_reserve(be, plan.team, col_bytes + (size_t)dw_count * es);
    if (st != NNOPT_OK) return st;

    const char *xd = x->data, *dyd = dy->data;
    int team_used = 1;
#pragma omp parallel num_threads(plan.team)
    {
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
        if (t == 0) team_used = team;
        long first, end;
        image_range(g.n, t, team, &first, &end);
        char *col = be->scratch[t].data;
        char *dw_part = col + col_bytes;
        memset(dw_part, 0, (size_t)dw_count * es);
        for (long n = first; n < end; n++) {
            for (long grp = 0; grp < g.groups; grp++) {
                const char *x_img = xd + (size_t)((n * g.c + grp * g.cg) * g.h * g.w) * es;
                const char *dy_img = dyd + (size_t)((n * g.k + grp * g.kg) * pq) * es;
                const void *patches = x_img;
                if (!pointwise) {
                    kern->im2col(&g, x_img, col);
                    patches = col;
                }
                /* dW[k, crs] += dy[k, pq] col^T[pq, crs] */
                const blis_matrix a = {dy_img, pq, 1};
                const blis_matrix bm = {patches, 1, pq};
                blis_gemm(x->dtype, plan.gemm_threads, g.kg, crs, pq, a, bm, 1.0,
                          dw_part + (size_t)(grp * g.kg * crs) * es, crs, 1);
            }
        }
    }
    memcpy(dw->data, (const char *)be->scratch[0].data + col_bytes, (size_t)dw_count * es);
    for (int t = 1; t < team_used; t++)
        kern->accumulate(dw->data, (const char *)be->scratch[t].data + col_bytes, dw_count);
    return NNOPT_OK;
}

/* For the bf16 convolutions (blis_bf16.c). */
nnopt_status blis_conv_geometry(blis_backend *be, const nnopt_op *op, const nnopt_tensor *x,
                                const nnopt_tensor *w, const nnopt_tensor *y, conv_geometry *g) {
    return conv_geometry_make(be, op, x, w, y, g);
}

int blis_program_step_is_winograd(blis_backend *be, const nnopt_program *prog, int s) {
    const nnopt_program_step *st = &prog->steps[s];
    if ((st->op.kind != NNOPT_OP_CONV2D && st->op.kind != NNOPT_OP_CONV2D_RELU &&
         st->op.kind != NNOPT_OP_CONV2D_ADD_RELU) ||
        st->n_in < 2 || st->n_out < 1)
        return 0;
    const int32_t roles[3] = {st->in[0], st->in[1], st->out[0]}; /* x, w, y */
    nnopt_tensor t[3];
    memset(t, 0, sizeof t);
    for (int k = 0; k < 3; k++) {
        const nnopt_program_tensor *pt = &prog->tensors[roles[k]];
        if (pt->ndim != 4) return 0;
        t[k].dtype = pt->dtype;
        t[k].ndim = pt->ndim;
        memcpy(t[k].shape, pt->shape, sizeof t[k].shape);
    }
    conv_geometry g;
    return conv_geometry_make(be, &st->op, &t[0], &t[1], &t[2], &g) == NNOPT_OK &&
           blis_winograd_tile(be, &g, t[0].dtype, BLIS_WINOGRAD_FORWARD) > 0;
}

void blis_conv_valid_columns(const conv_geometry *g, long s, long *q_lo, long *q_hi) {
    conv_valid_columns(g, s, q_lo, q_hi);
}
