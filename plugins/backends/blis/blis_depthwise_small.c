/* 3x3 depthwise convolutions on planes of 8x8 and smaller, f32 on AVX-512,
 * with 16 channels in the vector lanes.
 *
 * A block of 16 consecutive channels of one image is one contiguous run of
 * 16 * H*W values (NCHW). It is loaded as H*W vectors and transposed in
 * registers so that vector i holds pixel i of the 16 channels; every tap is
 * then one fused multiply-add of a pixel vector and a vector of the 16
 * channels' weights for that tap, and the result is transposed back and
 * stored as one run. The plane size and stride are compile-time constants
 * of each kernel, so the loops unroll completely and the taps that fall on
 * padding are dropped at compile time: no padded copies, no junk outputs,
 * no per-row loop costs, which is what the phase-plane stencils of
 * blis_depthwise.inc spend most of their time on at these sizes. The same
 * shape works for any stride and for all three passes (the data gradient
 * gathers over the outputs each input feeds; the filter gradient sums
 * dy * x per tap, per lane). A last block of fewer than 16 channels is
 * loaded with zeros past its end and stored masked. */
#include <omp.h>
#include <string.h>

#include "blis_depthwise_small.h"

#if defined(__x86_64__) && defined(__GNUC__)

/* Full unrolling of the per-pixel and per-tap loops; GCC ignores (and warns
 * about) such annotations in always-inline helpers when not optimizing. */
#ifdef __OPTIMIZE__
#define SMALL_PRAGMA(x) _Pragma(#x)
#define SMALL_UNROLL(n) SMALL_PRAGMA(GCC unroll n)
#else
#define SMALL_UNROLL(n)
#endif

#define SMALL_HAVE 1
#include <immintrin.h>

#include "blis_transpose512.h"
#define SMALL_TARGET __attribute__((target("avx512f,fma,prfchw")))
#define SMALL_INLINE static inline __attribute__((always_inline)) SMALL_TARGET
#else
#define SMALL_HAVE 0
#endif

enum {
    LANES = 16, /* channels per block: f32 lanes of a 512-bit vector */
    TAPS = 9,
    /* per block of channels: the 9 taps' weight vectors, then the bias */
    BLOCK_TABLE = (TAPS + 1) * LANES,
    /* per block: the filter gradient's double sums, a vector per tap */
    BLOCK_SUMS = TAPS * LANES,
};

static inline long small_blocks(const conv_geometry *g) {
    return (g->c + LANES - 1) / LANES;
}

/* Kernels per plane side 1, 2, 4, 8 and stride 1, 2. */
static inline int small_side_index(long side) {
    return side == 1 ? 0 : side == 2 ? 1 : side == 4 ? 2 : side == 8 ? 3 : -1;
}

int blis_depthwise_small_applies(const conv_geometry *g) {
#if SMALL_HAVE
    return g->h == g->w && small_side_index(g->h) >= 0;
#else
    (void)g;
    return 0;
#endif
}

/* Per thread: the weight table (forward, data) or the sums (filter). */
size_t blis_depthwise_small_scratch_bytes(const conv_geometry *g) {
    const size_t table = (size_t)(small_blocks(g) * BLOCK_TABLE) * sizeof(float);
    const size_t sums = (size_t)(small_blocks(g) * BLOCK_SUMS) * sizeof(double);
    return table > sums ? table : sums;
}

#if SMALL_HAVE

/* table[(block*10 + t)*16 + lane] = tap t's weight of channel block*16 +
 * lane (t < 9) or its bias (t = 9), zero past the channels. */
static void small_table(const conv_geometry *g, const float *w, const float *bias, float *table) {
    for (long c0 = 0; c0 < small_blocks(g) * LANES; c0 += LANES) {
        float *block = table + c0 / LANES * BLOCK_TABLE;
        for (long lane = 0; lane < LANES; lane++) {
            const long c = c0 + lane;
            for (long t = 0; t < TAPS; t++)
                block[t * LANES + lane] = c < g->c ? w[c * TAPS + t] : 0;
            block[TAPS * LANES + lane] = c < g->c && bias ? bias[c] : 0;
        }
    }
}

/* Lanes [0, count) of a vector, count possibly outside [0, 16]. */
SMALL_INLINE __mmask16 small_mask(long count) {
    return count >= LANES ? (__mmask16)0xffff : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

/* v[k] = src[16k .. 16k + 15], k < vectors, zeros from src[values] on. */
SMALL_INLINE void small_load(const float *src, long values, int vectors, __m512 *v) {
    SMALL_UNROLL(64)
    for (int k = 0; k < vectors; k++)
        v[k] = _mm512_maskz_loadu_ps(small_mask(values - k * LANES), src + k * LANES);
}

/* The reverse: dst[0 .. values - 1] from v. */
SMALL_INLINE void small_store(float *dst, long values, int vectors, const __m512 *v) {
    SMALL_UNROLL(64)
    for (int k = 0; k < vectors; k++)
        _mm512_mask_storeu_ps(dst + k * LANES, small_mask(values - k * LANES), v[k]);
}

/* Step `step` of `steps` of prefetching the run of `vectors` vectors of
 * the block `ahead` blocks after `run`, spread over a block's compute loop,
 * for reading or (`write`) for writing. The hardware prefetchers do not
 * cross 4 KB pages (one block of 8x8 planes), and write misses stall the
 * stores: prefetching made the 8x8 stride-1 forward 2.2-2.6x faster at batch
 * 500. A burst at the start of a block was slower than spreading it. */
SMALL_INLINE void small_prefetch_step(const float *run, int vectors, int ahead, int write, int step,
                                      int steps) {
    const char *next = (const char *)(run + ahead * vectors * LANES);
    SMALL_UNROLL(64)
    for (int k = step * vectors / steps; k < (step + 1) * vectors / steps; k++) {
        if (write)
            _mm_prefetch(next + k * 64, _MM_HINT_ET0);
        else
            _mm_prefetch(next + k * 64, _MM_HINT_T0);
    }
}

/* Blocks to prefetch ahead, for blocks of `pixels` input and `outputs`
 * output pixels: about the same time ahead for every plane size, as a
 * block's time goes with its transposes, pixels + outputs vectors. 256 is
 * 2 blocks of 8x8 at stride 1 and 8 of 4x4; half and twice that were
 * 10-40% slower there, and 8 KB ahead on every stream (more blocks ahead on
 * the smaller one) 15-30% slower on the 8x8 stride-2 filter gradient. */
SMALL_INLINE int small_ahead(int pixels, int outputs) {
    return 256 / (pixels + outputs);
}

/* 2x2 planes: v[k] holds channels 4k .. 4k+3, 4 pixels each; px[i] pixel i
 * of the 16 channels. Pixels 0|1 and 2|3 of 8 channels per two-source
 * permute, then the channel halves joined. */
SMALL_INLINE void small_pixels4(const __m512 *v, __m512 *px) {
    const __m512i first =
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(2));
    const __m512 lo01 = _mm512_permutex2var_ps(v[0], first, v[1]);
    const __m512 lo23 = _mm512_permutex2var_ps(v[0], second, v[1]);
    const __m512 hi01 = _mm512_permutex2var_ps(v[2], first, v[3]);
    const __m512 hi23 = _mm512_permutex2var_ps(v[2], second, v[3]);
    px[0] = _mm512_shuffle_f32x4(lo01, hi01, 0x44);
    px[1] = _mm512_shuffle_f32x4(lo01, hi01, 0xee);
    px[2] = _mm512_shuffle_f32x4(lo23, hi23, 0x44);
    px[3] = _mm512_shuffle_f32x4(lo23, hi23, 0xee);
}

/* The reverse of small_pixels4. */
SMALL_INLINE void small_unpixels4(const __m512 *px, __m512 *v) {
    const __m512i first =
        _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(4));
    const __m512 lo01 = _mm512_shuffle_f32x4(px[0], px[1], 0x44);
    const __m512 hi01 = _mm512_shuffle_f32x4(px[0], px[1], 0xee);
    const __m512 lo23 = _mm512_shuffle_f32x4(px[2], px[3], 0x44);
    const __m512 hi23 = _mm512_shuffle_f32x4(px[2], px[3], 0xee);
    v[0] = _mm512_permutex2var_ps(lo01, first, lo23);
    v[1] = _mm512_permutex2var_ps(lo01, second, lo23);
    v[2] = _mm512_permutex2var_ps(hi01, first, hi23);
    v[3] = _mm512_permutex2var_ps(hi01, second, hi23);
}

/* px[i] = pixel i of the block's channels, from the `pixels` vectors v of
 * its run (pixels 1, 4 or a multiple of 16). */
SMALL_INLINE void small_to_pixels(int pixels, const __m512 *v, __m512 *px) {
    if (pixels == 1) {
        px[0] = v[0];
    } else if (pixels == 4) {
        small_pixels4(v, px);
    } else {
        const int groups = pixels / LANES;
        SMALL_UNROLL(16)
        for (int g = 0; g < groups; g++) {
            __m512 r[LANES];
            SMALL_UNROLL(16)
            for (int c = 0; c < LANES; c++) r[c] = v[c * groups + g];
            blis_transpose16x16_f32(r);
            SMALL_UNROLL(16)
            for (int i = 0; i < LANES; i++) px[g * LANES + i] = r[i];
        }
    }
}

/* The reverse of small_to_pixels. */
SMALL_INLINE void small_from_pixels(int pixels, const __m512 *px, __m512 *v) {
    if (pixels == 1) {
        v[0] = px[0];
    } else if (pixels == 4) {
        small_unpixels4(px, v);
    } else {
        const int groups = pixels / LANES;
        SMALL_UNROLL(16)
        for (int g = 0; g < groups; g++) {
            __m512 r[LANES];
            SMALL_UNROLL(16)
            for (int i = 0; i < LANES; i++) r[i] = px[g * LANES + i];
            blis_transpose16x16_f32(r);
            SMALL_UNROLL(16)
            for (int c = 0; c < LANES; c++) v[c * groups + g] = r[c];
        }
    }
}

/* The side of the output plane: (side + 2 - 3) / stride + 1. */
#define SMALL_OUT_SIDE(side, stride) (((side)-1) / (stride) + 1)
/* Pixel vectors of the largest plane, 8x8. */
#define SMALL_MAX_PIXELS 64

/* Whether input row (or column) `in` is read by output `out` through filter
 * row `r`: in = out*stride + r - 1 with 0 <= in < side. */
SMALL_INLINE int small_reads(int out, int r, int stride, int side) {
    const int in = out * stride + r - 1;
    return in >= 0 && in < side;
}

/* Pixel vectors are stored in groups of up to 16 as they are computed
 * (planes of 64 pixels: 4 groups), which keeps fewer of them live: the 8x8
 * stride-1 forward in cache was 15-30% slower transposing all at the end. */
SMALL_INLINE int small_group(int pixels) {
    return pixels < LANES ? pixels : LANES;
}

/* Stores pixel vectors px[0 .. group) as pixels [g*group, (g+1)*group) of
 * the block's planes of `pixels` pixels (a run of channels * pixels values
 * from dst); px is overwritten. */
SMALL_INLINE void small_store_group(float *dst, long channels, int pixels, int g, __m512 *px) {
    if (pixels <= LANES) {
        __m512 v[LANES];
        small_from_pixels(pixels, px, v);
        small_store(dst, channels * pixels, pixels, v);
        return;
    }
    blis_transpose16x16_f32(px);
    SMALL_UNROLL(16)
    for (int c = 0; c < LANES; c++)
        _mm512_mask_storeu_ps(dst + c * pixels + g * LANES, small_mask(c < channels ? LANES : 0),
                              px[c]);
}

/* One image's block of `channels` channels: y = relu?(x (*) w + bias). */
SMALL_INLINE void small_forward_block(const float *x, float *y, long channels, const float *table,
                                      int relu, const int side, const int stride) {
    const int out_side = SMALL_OUT_SIDE(side, stride), pixels = side * side;
    const int outputs = out_side * out_side, group = small_group(outputs);
    __m512 v[SMALL_MAX_PIXELS], px[SMALL_MAX_PIXELS];
    small_load(x, channels * pixels, pixels, v);
    small_to_pixels(pixels, v, px);
    SMALL_UNROLL(4)
    for (int g = 0; g < outputs / group; g++) {
        __m512 out[LANES];
        SMALL_UNROLL(16)
        for (int k = 0; k < group; k++) {
            const int o = g * group + k, p = o / out_side, q = o % out_side;
            small_prefetch_step(x, pixels, small_ahead(pixels, outputs), 0, o, outputs);
            small_prefetch_step(y, outputs, small_ahead(pixels, outputs), 1, o, outputs);
            __m512 acc = _mm512_loadu_ps(table + TAPS * LANES);
            SMALL_UNROLL(9)
            for (int t = 0; t < TAPS; t++)
                if (small_reads(p, t / 3, stride, side) && small_reads(q, t % 3, stride, side)) {
                    const int i = p * stride + t / 3 - 1, j = q * stride + t % 3 - 1;
                    acc =
                        _mm512_fmadd_ps(px[i * side + j], _mm512_loadu_ps(table + t * LANES), acc);
                }
            /* max(0, acc) with 0 first: NaN passes, as in the relu op */
            out[k] = relu ? _mm512_max_ps(_mm512_setzero_ps(), acc) : acc;
        }
        small_store_group(y, channels, outputs, g, out);
    }
}

/* dx of one image's block: input (i, j) gathers w(r, s) dy(p, q) over the
 * outputs (p, q) that read it, i = p*stride + r - 1, j = q*stride + s - 1. */
SMALL_INLINE void small_data_block(const float *dy, float *dx, long channels, const float *table,
                                   const int side, const int stride) {
    const int out_side = SMALL_OUT_SIDE(side, stride), pixels = side * side;
    const int outputs = out_side * out_side, group = small_group(pixels);
    __m512 v[SMALL_MAX_PIXELS], grad[SMALL_MAX_PIXELS];
    small_load(dy, channels * outputs, outputs, v);
    small_to_pixels(outputs, v, grad);
    SMALL_UNROLL(4)
    for (int g = 0; g < pixels / group; g++) {
        __m512 in[LANES];
        SMALL_UNROLL(16)
        for (int k = 0; k < group; k++) {
            const int m = g * group + k, i = m / side, j = m % side;
            small_prefetch_step(dy, outputs, small_ahead(pixels, outputs), 0, m, pixels);
            small_prefetch_step(dx, pixels, small_ahead(pixels, outputs), 1, m, pixels);
            __m512 acc = _mm512_setzero_ps();
            SMALL_UNROLL(9)
            for (int t = 0; t < TAPS; t++) {
                const int row = i + 1 - t / 3, col = j + 1 - t % 3;
                if (row < 0 || col < 0 || row % stride || col % stride) continue;
                if (row / stride >= out_side || col / stride >= out_side) continue;
                const __m512 d = grad[row / stride * out_side + col / stride];
                acc = _mm512_fmadd_ps(d, _mm512_loadu_ps(table + t * LANES), acc);
            }
            in[k] = acc;
        }
        small_store_group(dx, channels, pixels, g, in);
    }
}

/* sums[t*16 + lane] += the image's sum of dy(p, q) x(i, j) for tap t of
 * channel lane, the image's part taken in f32 and added in double. */
SMALL_INLINE void small_filter_block(const float *x, const float *dy, long channels, double *sums,
                                     const int side, const int stride) {
    const int out_side = SMALL_OUT_SIDE(side, stride), pixels = side * side;
    const int outputs = out_side * out_side;
    __m512 v[SMALL_MAX_PIXELS], px[SMALL_MAX_PIXELS], grad[SMALL_MAX_PIXELS], part[TAPS];
    small_load(x, channels * pixels, pixels, v);
    small_to_pixels(pixels, v, px);
    small_load(dy, channels * outputs, outputs, v);
    small_to_pixels(outputs, v, grad);
    SMALL_UNROLL(9)
    for (int t = 0; t < TAPS; t++) part[t] = _mm512_setzero_ps();
    SMALL_UNROLL(64)
    for (int o = 0; o < outputs; o++) {
        const int p = o / out_side, q = o % out_side;
        small_prefetch_step(x, pixels, small_ahead(pixels, outputs), 0, o, outputs);
        small_prefetch_step(dy, outputs, small_ahead(pixels, outputs), 0, o, outputs);
        SMALL_UNROLL(9)
        for (int t = 0; t < TAPS; t++)
            if (small_reads(p, t / 3, stride, side) && small_reads(q, t % 3, stride, side)) {
                const int i = p * stride + t / 3 - 1, j = q * stride + t % 3 - 1;
                part[t] = _mm512_fmadd_ps(grad[o], px[i * side + j], part[t]);
            }
    }
    SMALL_UNROLL(9)
    for (int t = 0; t < TAPS; t++) {
        const __m256 lo = _mm512_castps512_ps256(part[t]);
        const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(part[t]), 1));
        double *sum = sums + t * LANES;
        _mm512_storeu_pd(sum, _mm512_add_pd(_mm512_loadu_pd(sum), _mm512_cvtps_pd(lo)));
        _mm512_storeu_pd(sum + 8, _mm512_add_pd(_mm512_loadu_pd(sum + 8), _mm512_cvtps_pd(hi)));
    }
}

typedef void (*small_forward_fn)(const float *x, float *y, long channels, const float *table,
                                 int relu);
typedef void (*small_data_fn)(const float *dy, float *dx, long channels, const float *table);
typedef void (*small_filter_fn)(const float *x, const float *dy, long channels, double *sums);

/* Each kernel twice: full blocks with constant masks, and a last partial
 * block. */
#define SMALL_KERNELS(side, stride)                                                                \
    SMALL_TARGET static void small_forward_##side##_##stride(                                      \
        const float *x, float *y, long channels, const float *table, int relu) {                   \
        if (channels == LANES)                                                                     \
            small_forward_block(x, y, LANES, table, relu, side, stride);                           \
        else                                                                                       \
            small_forward_block(x, y, channels, table, relu, side, stride);                        \
    }                                                                                              \
    SMALL_TARGET static void small_data_##side##_##stride(const float *dy, float *dx,              \
                                                          long channels, const float *table) {     \
        if (channels == LANES)                                                                     \
            small_data_block(dy, dx, LANES, table, side, stride);                                  \
        else                                                                                       \
            small_data_block(dy, dx, channels, table, side, stride);                               \
    }                                                                                              \
    SMALL_TARGET static void small_filter_##side##_##stride(const float *x, const float *dy,       \
                                                            long channels, double *sums) {         \
        if (channels == LANES)                                                                     \
            small_filter_block(x, dy, LANES, sums, side, stride);                                  \
        else                                                                                       \
            small_filter_block(x, dy, channels, sums, side, stride);                               \
    }

SMALL_KERNELS(1, 1)
SMALL_KERNELS(1, 2)
SMALL_KERNELS(2, 1)
SMALL_KERNELS(2, 2)
SMALL_KERNELS(4, 1)
SMALL_KERNELS(4, 2)
SMALL_KERNELS(8, 1)
SMALL_KERNELS(8, 2)

/* [side index][stride - 1] */
static const small_forward_fn small_forward_fns[4][2] = {
    {small_forward_1_1, small_forward_1_2},
    {small_forward_2_1, small_forward_2_2},
    {small_forward_4_1, small_forward_4_2},
    {small_forward_8_1, small_forward_8_2},
};
static const small_data_fn small_data_fns[4][2] = {
    {small_data_1_1, small_data_1_2},
    {small_data_2_1, small_data_2_2},
    {small_data_4_1, small_data_4_2},
    {small_data_8_1, small_data_8_2},
};
static const small_filter_fn small_filter_fns[4][2] = {
    {small_filter_1_1, small_filter_1_2},
    {small_filter_2_1, small_filter_2_2},
    {small_filter_4_1, small_filter_4_2},
    {small_filter_8_1, small_filter_8_2},
};

static long small_block_channels(const conv_geometry *g, long c0) {
    return g->c - c0 < LANES ? g->c - c0 : LANES;
}

/* Forward and data gradient: the items (image, block of 16 channels) in
 * memory order, a contiguous range per thread; each thread keeps its own
 * weight table (a few KB, cheaper to build than to share). */
void blis_depthwise_small_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y, blis_scratch *scratch) {
    const small_forward_fn kernel = small_forward_fns[small_side_index(g->h)][g->stride_h - 1];
    const long blocks = small_blocks(g), hw = g->h * g->w, pq = g->p * g->q;
#pragma omp parallel num_threads(team)
    {
        float *table = scratch[omp_get_thread_num()].data;
        small_table(g, w, bias, table);
#pragma omp for schedule(static)
        for (long item = 0; item < g->n * blocks; item++) {
            const long n = item / blocks, c0 = item % blocks * LANES;
            kernel(x + (n * g->c + c0) * hw, y + (n * g->c + c0) * pq, small_block_channels(g, c0),
                   table + c0 / LANES * BLOCK_TABLE, relu);
        }
    }
}

void blis_depthwise_small_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx, blis_scratch *scratch) {
    const small_data_fn kernel = small_data_fns[small_side_index(g->h)][g->stride_h - 1];
    const long blocks = small_blocks(g), hw = g->h * g->w, pq = g->p * g->q;
#pragma omp parallel num_threads(team)
    {
        float *table = scratch[omp_get_thread_num()].data;
        small_table(g, w, NULL, table);
#pragma omp for schedule(static)
        for (long item = 0; item < g->n * blocks; item++) {
            const long n = item / blocks, c0 = item % blocks * LANES;
            kernel(dy + (n * g->c + c0) * pq, dx + (n * g->c + c0) * hw,
                   small_block_channels(g, c0), table + c0 / LANES * BLOCK_TABLE);
        }
    }
}

/* Each thread owns a contiguous range of channel blocks and walks the batch
 * in order, so every channel sums its images in the same order for any
 * thread count. */
void blis_depthwise_small_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch) {
    const small_filter_fn kernel = small_filter_fns[small_side_index(g->h)][g->stride_h - 1];
    const long blocks = small_blocks(g), hw = g->h * g->w, pq = g->p * g->q;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), threads = omp_get_num_threads();
        const long first = blocks * t / threads, end = blocks * (t + 1) / threads;
        double *sums = scratch[t].data;
        memset(sums, 0, (size_t)((end - first) * BLOCK_SUMS) * sizeof(double));
        for (long n = 0; n < g->n; n++)
            for (long b = first; b < end; b++) {
                const long c0 = b * LANES;
                kernel(x + (n * g->c + c0) * hw, dy + (n * g->c + c0) * pq,
                       small_block_channels(g, c0), sums + (b - first) * BLOCK_SUMS);
            }
        for (long b = first; b < end; b++) {
            const double *block = sums + (b - first) * BLOCK_SUMS;
            for (long lane = 0; lane < small_block_channels(g, b * LANES); lane++)
                for (long tap = 0; tap < TAPS; tap++)
                    dw[(b * LANES + lane) * TAPS + tap] = (float)block[tap * LANES + lane];
        }
    }
}

#else

void blis_depthwise_small_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y, blis_scratch *scratch) {
    (void)g, (void)team, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
}
void blis_depthwise_small_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx, blis_scratch *scratch) {
    (void)g, (void)team, (void)dy, (void)w, (void)dx, (void)scratch;
}
void blis_depthwise_small_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch) {
    (void)g, (void)team, (void)x, (void)dy, (void)dw, (void)scratch;
}

#endif
