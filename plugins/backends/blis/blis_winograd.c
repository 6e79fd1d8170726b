/* Winograd convolutions for 3x3, stride 1, ungrouped layers (ResNet-CIFAR's
 * 16-64 channel 3x3 layers): F(m x m, 3 x 3) computes an m x m output tile
 * from an (m+2) x (m+2) input tile with (m+2)^2 multiplies per channel pair
 * instead of 9 m^2 (F(2,3): 2.25x fewer, F(4,3): 4x), which is the only way
 * past the direct kernels, already near the FMA peak.
 *
 * Layout: a group of WINO_LANES images is interleaved so that one vector lane
 * is one image (xt[c][row][col][lane], zero-padded): every transform is then
 * plain vector adds on whole vectors, whatever the image size (8x8 planes
 * have only 2x2 tiles of 4, too few to fill vectors across tiles), and the
 * per-position products M[xi][k][tile] = U[xi][k][c] V[xi][c][tile] run on
 * the direct kernels' register blocking with tiles x lanes as the long
 * dimension. Tiles go through in chunks small enough for V and M to stay in
 * L2. The data gradient is the forward convolution of dy with the filters
 * transposed and rotated (padding 2 - pad), so it runs the same code; the
 * filter gradient is the adjoint (wino_filter_groups in the .inc).
 * docs/backend-blis.md has the measurements behind the choices. */
#include <omp.h>
#include <string.h>

#include "blis_internal.h"

#define WINO_KBLOCK 8 /* output channels per register block */

/* One convolution as a forward pass (the data gradient's too). */
typedef struct wino_shape {
    long cin, h, w, cout, pad_h, pad_w, p, q;
    long m;                  /* output tile size: 2 or 4 */
    long tiles_h, tiles_w;   /* per image */
    long tiles;              /* tiles_h * tiles_w */
    long hp, wp;             /* padded input planes: tiles * m + 2 */
    long chunk;              /* tiles per transform chunk */
    long v_xi, m_xi;         /* values per position xi of a chunk's V and M */
    long kblocks;            /* output channel blocks of WINO_KBLOCK */
    blis_conv_output output; /* relu in the output tiles; add, add+relu in the scatter */
    const void *residual;    /* BLIS_OUT_ADD_RELU's r or BLIS_OUT_ADD_MASKED's relu
                              * output, shaped as the output */
} wino_shape;

/* Byte offsets into each thread's scratch: the transformed filters (thread
 * 0's only, read by all; in the filter gradient each thread's sums), then
 * per thread the interleaved input and output (or dy) groups, the chunk's V
 * and M (or A dy A^T) and, for the filter gradient in vector-sum form, its
 * per-lane sums. */
typedef struct wino_layout {
    size_t u, xt, yt, v, mm, vs, total; /* vs: 0 without per-lane sums */
} wino_layout;

#if defined(__x86_64__) && defined(__GNUC__)
#define BLIS_HAVE_WINOGRAD 1
#include <immintrin.h>

#include "blis_transpose512.h"
#define WINO_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* F(4x4, 3x3) on the points 0, +-1, +-2 and F(2x2, 3x3) on 0, +-1 (rows of
 * each matrix; the input and output transforms wino_bt_1d and wino_at_1d in
 * blis_winograd.inc apply B^T and A^T with shared subexpressions):
 *   F(4x4): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0;
 *                  0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *   F(2x2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *           A^T = [1 1 1 0; 0 1 -1 -1]
 * and G, the filter transform (applied in double): */
static const double wino_g4[6 * 3] = {
    1.0 / 4,  0,        0,       -1.0 / 6, -1.0 / 6,  -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
    1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6,  0,        0,       1,
};
static const double wino_g2[4 * 3] = {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1};

#define WINO_INLINE WINO_TARGET static inline __attribute__((always_inline))

/* rows[i][j] <- rows[j][i] for 16 rows of 16 floats (blis_transpose512.h). */
WINO_INLINE void wino_transpose_f32(__m512 *rows) {
    blis_transpose16x16_f32(rows);
}

/* The same for 8 rows of 8 doubles: pairs, then the 128-bit lanes. */
WINO_INLINE void wino_transpose_f64(__m512d *rows) {
    __m512d a[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        a[2 * i] = _mm512_unpacklo_pd(rows[2 * i], rows[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_pd(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) {
        const __m512d c_even = _mm512_shuffle_f64x2(a[j], a[2 + j], 0x88);
        const __m512d c_odd = _mm512_shuffle_f64x2(a[j], a[2 + j], 0xdd);
        const __m512d d_even = _mm512_shuffle_f64x2(a[4 + j], a[6 + j], 0x88);
        const __m512d d_odd = _mm512_shuffle_f64x2(a[4 + j], a[6 + j], 0xdd);
        rows[j] = _mm512_shuffle_f64x2(c_even, d_even, 0x88);
        rows[4 + j] = _mm512_shuffle_f64x2(c_even, d_even, 0xdd);
        rows[2 + j] = _mm512_shuffle_f64x2(c_odd, d_odd, 0x88);
        rows[6 + j] = _mm512_shuffle_f64x2(c_odd, d_odd, 0xdd);
    }
}

/* out lane i <- the sum of acc[i]'s lanes, i < 16: pairs, then quads within
 * 128-bit lanes, then two rounds of 128-bit lane shuffles (45 operations
 * against ~8 per _mm512_reduce_add_ps). */
WINO_INLINE void wino_reduce16_f32(const __m512 *acc, __m512 *out) {
    __m512 x[8], y[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* lane L of 128: [a0+a2, b0+b2, a1+a3, b1+b3] */
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(acc[2 * i], acc[2 * i + 1]),
                             _mm512_unpackhi_ps(acc[2 * i], acc[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 128-bit lane L: the lane's sums of acc[4i..4i+3] */
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xee));
    const __m512 z0 = _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x88),
                                    _mm512_shuffle_f32x4(y[0], y[1], 0xdd));
    const __m512 z1 = _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x88),
                                    _mm512_shuffle_f32x4(y[2], y[3], 0xdd));
    out[0] = _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x88), _mm512_shuffle_f32x4(z0, z1, 0xdd));
}

/* The same for doubles: out[h] lane i <- the sum of acc[8h + i]'s lanes. */
WINO_INLINE void wino_reduce16_f64(const __m512d *acc, __m512d *out) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512d *in = acc + 8 * h;
        __m512d x[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) /* 128-bit lane L: the lane's sums of in[2i], in[2i+1] */
            x[i] = _mm512_add_pd(_mm512_unpacklo_pd(in[2 * i], in[2 * i + 1]),
                                 _mm512_unpackhi_pd(in[2 * i], in[2 * i + 1]));
        const __m512d z0 = _mm512_add_pd(_mm512_shuffle_f64x2(x[0], x[1], 0x88),
                                         _mm512_shuffle_f64x2(x[0], x[1], 0xdd));
        const __m512d z1 = _mm512_add_pd(_mm512_shuffle_f64x2(x[2], x[3], 0x88),
                                         _mm512_shuffle_f64x2(x[2], x[3], 0xdd));
        out[h] =
            _mm512_add_pd(_mm512_shuffle_f64x2(z0, z1, 0x88), _mm512_shuffle_f64x2(z0, z1, 0xdd));
    }
}

#define T float
#define BLIS_SUFFIX f32
#define WINO_VEC __m512
#define WINO_LANES 16
#define WINO_MASK __mmask16
#define WINO_ZERO _mm512_setzero_ps
#define WINO_LOAD _mm512_load_ps
#define WINO_STORE _mm512_store_ps
#define WINO_LOADU _mm512_loadu_ps
#define WINO_STOREU _mm512_storeu_ps
#define WINO_MASKZ_LOAD _mm512_maskz_loadu_ps
#define WINO_MASK_STORE _mm512_mask_storeu_ps
#define WINO_SET1 _mm512_set1_ps
#define WINO_FMA _mm512_fmadd_ps
#define WINO_FNMA _mm512_fnmadd_ps
#define WINO_ADD _mm512_add_ps
#define WINO_SUB _mm512_sub_ps
#define WINO_MAX _mm512_max_ps
#define WINO_MUL _mm512_mul_ps
#define WINO_REDUCE _mm512_reduce_add_ps
#define WINO_CMP_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define WINO_MASKZ_ADD _mm512_maskz_add_ps
#include "blis_winograd.inc"
#undef T
#undef BLIS_SUFFIX
#undef WINO_VEC
#undef WINO_LANES
#undef WINO_MASK
#undef WINO_ZERO
#undef WINO_LOAD
#undef WINO_STORE
#undef WINO_LOADU
#undef WINO_STOREU
#undef WINO_MASKZ_LOAD
#undef WINO_MASK_STORE
#undef WINO_SET1
#undef WINO_FMA
#undef WINO_FNMA
#undef WINO_ADD
#undef WINO_SUB
#undef WINO_MAX
#undef WINO_MUL
#undef WINO_REDUCE
#undef WINO_CMP_GT
#undef WINO_MASKZ_ADD
#define T double
#define BLIS_SUFFIX f64
#define WINO_VEC __m512d
#define WINO_LANES 8
#define WINO_MASK __mmask8
#define WINO_ZERO _mm512_setzero_pd
#define WINO_LOAD _mm512_load_pd
#define WINO_STORE _mm512_store_pd
#define WINO_LOADU _mm512_loadu_pd
#define WINO_STOREU _mm512_storeu_pd
#define WINO_MASKZ_LOAD _mm512_maskz_loadu_pd
#define WINO_MASK_STORE _mm512_mask_storeu_pd
#define WINO_SET1 _mm512_set1_pd
#define WINO_FMA _mm512_fmadd_pd
#define WINO_FNMA _mm512_fnmadd_pd
#define WINO_ADD _mm512_add_pd
#define WINO_SUB _mm512_sub_pd
#define WINO_MAX _mm512_max_pd
#define WINO_MUL _mm512_mul_pd
#define WINO_REDUCE _mm512_reduce_add_pd
#define WINO_CMP_GT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ)
#define WINO_MASKZ_ADD _mm512_maskz_add_pd
#include "blis_winograd.inc"
#undef T
#undef BLIS_SUFFIX
#undef WINO_VEC
#undef WINO_LANES
#undef WINO_MASK
#undef WINO_ZERO
#undef WINO_LOAD
#undef WINO_STORE
#undef WINO_LOADU
#undef WINO_STOREU
#undef WINO_MASKZ_LOAD
#undef WINO_MASK_STORE
#undef WINO_SET1
#undef WINO_FMA
#undef WINO_FNMA
#undef WINO_ADD
#undef WINO_SUB
#undef WINO_MAX
#undef WINO_MUL
#undef WINO_REDUCE
#undef WINO_CMP_GT
#undef WINO_MASKZ_ADD
#else
#define BLIS_HAVE_WINOGRAD 0
#endif

static long wino_ceil_div(long a, long b) {
    return (a + b - 1) / b;
}

/* The tile size for a layer under `auto` (measured on Zen 5, see
 * docs/backend-blis.md): 0 = keep the direct kernels. */
static long wino_auto_tile(const blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                           blis_winograd_pass pass) {
    const long lanes = dtype == NNOPT_F32 ? 16 : 8;
    const long groups = wino_ceil_div(g->n, lanes);
    /* Lanes of a part-filled group are wasted work, and fewer groups than
     * threads leave cores idle: keep the direct kernels for small batches. */
    if (groups < be->threads || g->n * 4 < groups * lanes * 3) return 0;
    /* Under 16 input channels the per-position products are too short to pay
     * for the transforms (ResNet's 3-channel stem: 1.25-1.4x slower, 8
     * channels: even). */
    const long cin = pass == BLIS_WINOGRAD_DATA ? g->k : g->c;
    if (cin < 16) return 0;
    /* Filter gradient: F(4x4) on planes of 64 outputs or more (against the
     * direct kernel 1.2-1.3x at 16 x 32x32, 1.7x at 32 x 16x16, 2.1-2.2x at
     * 64 x 8x8; F(2x2) 1.1x, 1.25x, 1.95x), F(2x2) on smaller ones (not
     * measured: fewer multiplies but 36 positions for few tiles). */
    if (pass == BLIS_WINOGRAD_FILTER) return g->k < 16 ? 0 : g->p * g->q >= 64 ? 4 : 2;
    /* Forward and data gradient: F(4x4) on planes of 4 tiles or more
     * (ResNet's 32x32, 16x16 and 8x8: 1.4x F(2x2) at 64 channels on 8x8 once
     * the filter transform ran vectorised; before, that transform took a
     * third of the F(4x4) time there and F(2x2) won), F(2x2) below. */
    return g->p * g->q >= 64 ? 4 : 2;
}

int blis_winograd_tile(const blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                       blis_winograd_pass pass) {
    /* direct_conv: AVX-512F present and not conv=gemm */
    if (!BLIS_HAVE_WINOGRAD || be->winograd == BLIS_WINOGRAD_OFF || !be->direct_conv) return 0;
    if (g->groups != 1 || g->r != 3 || g->s != 3 || g->stride_h != 1 || g->stride_w != 1) return 0;
    /* The data gradient runs with padding 2 - pad. */
    if (g->pad_h > 2 || g->pad_w > 2 || g->p < 1 || g->q < 1) return 0;
    if (be->winograd == BLIS_WINOGRAD_F2) return 2;
    if (be->winograd == BLIS_WINOGRAD_F4) return 4;
    return (int)wino_auto_tile(be, g, dtype, pass);
}

#if BLIS_HAVE_WINOGRAD
/* Sets the chunk and its V and M strides: an odd number of vectors per
 * position, so that the a^2 stores (loads) of one tile's transform go to
 * distinct L1 sets. At multiples of 4 KB they shared one: the filter
 * gradient with 4 or 8 tiles of 16 channels ran 1.5x slower, and an odd
 * stride made the forward 5-10% faster on 16x16 and 8x8 planes. */
static void wino_shape_chunk(wino_shape *s, long chunk, long lanes) {
    s->chunk = chunk;
    s->v_xi = (s->cin * chunk | 1) * lanes;
    s->m_xi = (s->cout * chunk | 1) * lanes;
}

static void wino_shape_make(const conv_geometry *g, int data_pass, long m, size_t es,
                            wino_shape *s) {
    *s = (wino_shape){0};
    if (data_pass) {
        s->cin = g->k, s->h = g->p, s->w = g->q, s->cout = g->c;
        s->pad_h = 2 - g->pad_h, s->pad_w = 2 - g->pad_w, s->p = g->h, s->q = g->w;
    } else {
        s->cin = g->c, s->h = g->h, s->w = g->w, s->cout = g->k;
        s->pad_h = g->pad_h, s->pad_w = g->pad_w, s->p = g->p, s->q = g->q;
    }
    s->m = m;
    s->tiles_h = wino_ceil_div(s->p, m);
    s->tiles_w = wino_ceil_div(s->q, m);
    s->tiles = s->tiles_h * s->tiles_w;
    s->hp = s->tiles_h * m + 2;
    s->wp = s->tiles_w * m + 2;
    s->kblocks = wino_ceil_div(s->cout, WINO_KBLOCK);
    /* V and M of a chunk within ~256 KB of L2, at least one 3-vector block */
    const long lanes = (long)(64 / es), a = m + 2;
    const long per_tile = a * a * (s->cin + s->cout) * lanes * (long)es;
    long chunk = 256 * 1024 / per_tile;
    chunk = chunk < 3 ? 3 : chunk / 3 * 3;
    wino_shape_chunk(s, chunk < s->tiles ? chunk : s->tiles, lanes);
}

/* The filter gradient's 4 x 4 channel blocks per position (see
 * wino_filter_gemm). */
static long wino_filter_blocks(const wino_shape *s) {
    return wino_ceil_div(s->cout, 4) * wino_ceil_div(s->cin, 4);
}

/* vector_sums: the filter gradient's per-lane sums (vs) after the rest. */
static wino_layout wino_layout_make(const wino_shape *s, size_t es, int filter, int vector_sums) {
    const long lanes = (long)(64 / es), a = s->m + 2;
    wino_layout lay = {0};
    size_t at = 0;
    lay.u = at; /* filter gradient: this thread's sums[xi][block][16] */
    at += blis_align64(
        (size_t)(a * a *
                 (filter ? wino_filter_blocks(s) * 16 : s->kblocks * WINO_KBLOCK * s->cin)) *
        es);
    lay.xt = at;
    at += blis_align64((size_t)(s->cin * s->hp * s->wp * lanes) * es);
    lay.yt = at;
    at += blis_align64((size_t)(s->cout * s->tiles_h * s->m * s->tiles_w * s->m * lanes) * es);
    lay.v = at;
    at += blis_align64((size_t)(a * a * s->v_xi) * es);
    lay.mm = at;
    at += blis_align64((size_t)(a * a * s->m_xi) * es);
    if (vector_sums) {
        lay.vs = at;
        at += blis_align64((size_t)(a * a * wino_filter_blocks(s) * 16 * lanes) * es);
    }
    lay.total = at;
    return lay;
}

/* Whether the filter gradient keeps per-lane sums across chunks and groups
 * (chunks of tiles within L2, lanes reduced once) rather than reducing the
 * lanes per group over whole planes. */
static int wino_filter_vector_sums(const wino_shape *s) {
    /* Up to ~600 KB of sums (16 channels: 256 KB for F(2x2), 576 KB for
     * F(4x4)): the chunks then keep 1 MB of L2 busy. Larger ones (32
     * channels: 1-2.3 MB) ran slower than whole planes reduced per group
     * (32 x 16x16 F(4x4): 2.2 against 1.8 ms at one thread). */
    const long a = s->m + 2;
    return a * a * wino_filter_blocks(s) * 16 * 64 <= 640 * 1024;
}

/* Tiles per chunk for the vector-sum filter gradient: V and A dy A^T of a
 * chunk within ~512 KB (16 x 32x32: 7 F(4x4) tiles; 3-32 tiles measured
 * within the noise of each other once the positions were skewed, 256 KB
 * 5-10% slower than 512 KB). */
static long wino_filter_chunk(const wino_shape *s) {
    const long a = s->m + 2;
    const long per_tile = a * a * (s->cin + s->cout) * 64;
    const long chunk = 512 * 1024 / per_tile;
    return chunk < 1 ? 1 : chunk < s->tiles ? chunk : s->tiles;
}
#endif

nnopt_status blis_winograd_conv(blis_backend *be, const conv_geometry *g, int data_pass, int tile,
                                nnopt_dtype dtype, const void *in, const void *w, const void *bias,
                                blis_conv_output output, const void *residual, void *out) {
#if BLIS_HAVE_WINOGRAD
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    const long lanes = (long)(64 / es);
    wino_shape s;
    wino_shape_make(g, data_pass, tile, es, &s);
    s.output = output;
    s.residual = residual;
    const wino_layout lay = wino_layout_make(&s, es, 0, 0);
    const long groups = wino_ceil_div(g->n, lanes);
    const int team = groups < be->threads ? (int)groups : be->threads;
    nnopt_status st = blis_scratch_reserve(be, team, lay.total);
    if (st != NNOPT_OK) return st;
    void *u = (char *)be->scratch[0].data + lay.u;
    blis_scratch *scratch = be->scratch;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        /* the filter transform (in double, ~160 multiply-adds per channel
         * pair: 4096 pairs at 64 channels) is split over the team too */
        const long b_first = s.kblocks * t / used, b_end = s.kblocks * (t + 1) / used;
        if (dtype == NNOPT_F32)
            wino_filter_transform_f32(&s, w, data_pass, b_first, b_end, u);
        else
            wino_filter_transform_f64(&s, w, data_pass, b_first, b_end, u);
#pragma omp barrier
        const long first = groups * t / used, end = groups * (t + 1) / used;
        if (dtype == NNOPT_F32)
            wino_run_groups_f32(&s, g->n, first, end, in, u, bias, out, scratch[t].data, &lay);
        else
            wino_run_groups_f64(&s, g->n, first, end, in, u, bias, out, scratch[t].data, &lay);
    }
    return NNOPT_OK;
#else
    (void)be, (void)g, (void)data_pass, (void)tile, (void)dtype, (void)in, (void)w, (void)bias;
    (void)output, (void)residual, (void)out;
    return NNOPT_STATUS_UNSUPPORTED;
#endif
}

nnopt_status blis_winograd_filter(blis_backend *be, const conv_geometry *g, int tile,
                                  nnopt_dtype dtype, const void *x, const void *dy, void *dw) {
#if BLIS_HAVE_WINOGRAD
    const size_t es = dtype == NNOPT_F32 ? sizeof(float) : sizeof(double);
    const long lanes = (long)(64 / es);
    wino_shape s;
    wino_shape_make(g, 0, tile, es, &s);
    /* per-lane sums across chunks of tiles, or whole planes per group with
     * the lanes reduced per group (see wino_filter_groups) */
    const int vector_sums = wino_filter_vector_sums(&s);
    wino_shape_chunk(&s, vector_sums ? wino_filter_chunk(&s) : s.tiles, lanes);
    const wino_layout lay = wino_layout_make(&s, es, 1, vector_sums);
    const long groups = wino_ceil_div(g->n, lanes);
    const int team = groups < be->threads ? (int)groups : be->threads;
    nnopt_status st = blis_scratch_reserve(be, team, lay.total);
    if (st != NNOPT_OK) return st;
    blis_scratch *scratch = be->scratch;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), used = omp_get_num_threads();
        const long first = groups * t / used, end = groups * (t + 1) / used;
        if (dtype == NNOPT_F32)
            wino_filter_groups_f32(&s, g->n, first, end, x, dy, scratch[t].data, &lay);
        else
            wino_filter_groups_f64(&s, g->n, first, end, x, dy, scratch[t].data, &lay);
#pragma omp barrier
        const long k_lo = s.cout * t / used, k_hi = s.cout * (t + 1) / used;
        if (dtype == NNOPT_F32)
            wino_filter_finish_f32(&s, scratch, used, &lay, k_lo, k_hi, dw);
        else
            wino_filter_finish_f64(&s, scratch, used, &lay, k_lo, k_hi, dw);
    }
    return NNOPT_OK;
#else
    (void)be, (void)g, (void)tile, (void)dtype, (void)x, (void)dy, (void)dw;
    return NNOPT_STATUS_UNSUPPORTED;
#endif
}
