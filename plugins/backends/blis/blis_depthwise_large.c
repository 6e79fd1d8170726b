/* 3x3 depthwise convolutions with padding 1 on planes 16 or 32 values wide,
 * f32 on AVX-512: row kernels over the NCHW planes themselves.
 *
 * A plane row is one or two vectors. Stride 1: the left and right taps of
 * a row are its vectors shifted by one lane (valignd with a zero vector at
 * the plane's edges), so each input row is loaded once and shifted twice,
 * and a window of three rows gives an output row's nine taps; the rows
 * above the first and below the last are zero vectors. Stride 2: an input
 * row splits into its even and odd columns (two permutes), and output q
 * reads odd q-1, even q and odd q, the first again a shift. No padded or
 * phase copies, no junk outputs, one pass over x and y.
 *
 * The data gradient at stride 1 is the forward with the filter turned by
 * 180 degrees; at stride 2 each dx row pair gathers its even and odd
 * columns from one or two dy rows and interleaves them. The filter
 * gradient sums dy * the forward's tap vectors per lane, per plane in f32,
 * then per channel in double, channels split over the threads and each
 * channel walking its images in order, so the result does not depend on
 * the thread count. 16-wide planes at stride 2 give 8-wide outputs: half
 * vectors, the upper lanes zero and never stored. */
#include <omp.h>
#include <string.h>

#include "blis_depthwise_large.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define LARGE_HAVE 1
/* Full unrolling of the loops over taps, so the sums and weights stay in
 * registers (a rolled loop over the taps kept them in memory); GCC warns
 * about such annotations in always-inline helpers when not optimizing. */
#ifdef __OPTIMIZE__
#define LARGE_PRAGMA(x) _Pragma(#x)
#define LARGE_UNROLL(n) LARGE_PRAGMA(GCC unroll n)
#else
#define LARGE_UNROLL(n)
#endif
#include <immintrin.h>
#define LARGE_TARGET __attribute__((target("avx512f,fma,prfchw")))
#define LARGE_INLINE static inline __attribute__((always_inline)) LARGE_TARGET
#else
#define LARGE_HAVE 0
#endif

enum {
    LANES = 16, /* f32 lanes of a 512-bit vector */
    TAPS = 9,
    /* per channel: the filter gradient's double sums, 8 per tap */
    SUM_LANES = 8,
    CHANNEL_SUMS = TAPS * SUM_LANES,
};

int blis_depthwise_large_applies(const conv_geometry *g) {
#if LARGE_HAVE
    return g->w == 16 || g->w == 32;
#else
    (void)g;
    return 0;
#endif
}

/* Per thread: the filter gradient's sums of every channel (a thread sums at
 * most all of them). */
size_t blis_depthwise_large_scratch_bytes(const conv_geometry *g) {
    return (size_t)(g->c * CHANNEL_SUMS) * sizeof(double);
}

#if LARGE_HAVE

/* Prefetch distance: a 32x32 plane is one 4 KB page, and the hardware
 * prefetchers do not cross pages, so each plane would start with misses.
 * Each row loaded or stored fetches the lines a page further on. */
#define LARGE_AHEAD 4096

LARGE_INLINE void large_fetch(const float *p) {
    _mm_prefetch((const char *)p + LARGE_AHEAD, _MM_HINT_T0);
}

/* The same for a row about to be written (write misses stall the stores). */
LARGE_INLINE void large_fetch_w(const float *p) {
    _mm_prefetch((const char *)p + LARGE_AHEAD, _MM_HINT_ET0);
}

/* Lanes i of the result: lanes i + n of the 32 lanes lo:hi. */
#define LARGE_ALIGNR(hi, lo, n)                                                                    \
    _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(hi), _mm512_castps_si512(lo), n))

/* One input row's tap vectors, per output vector k < nv (stride 1: nv
 * vectors per row) or k = 0 (stride 2): the values under the filter's left,
 * middle and right columns. */
typedef struct large_row {
    __m512 left[2], mid[2], right[2];
} large_row;

LARGE_INLINE large_row large_zero_row(void) {
    large_row v;
    v.left[0] = v.mid[0] = v.right[0] = _mm512_setzero_ps();
    v.left[1] = v.mid[1] = v.right[1] = _mm512_setzero_ps();
    return v;
}

/* Stride 1: row src of nv vectors (16 * nv values). */
LARGE_INLINE large_row large_row_s1(const float *src, int nv) {
    const __m512 z = _mm512_setzero_ps();
    large_row v;
    large_fetch(src);
    if (nv == 2) large_fetch(src + LANES);
    v.mid[0] = _mm512_loadu_ps(src);
    v.left[0] = LARGE_ALIGNR(v.mid[0], z, 15);
    if (nv == 1) {
        v.right[0] = LARGE_ALIGNR(z, v.mid[0], 1);
        v.left[1] = v.mid[1] = v.right[1] = z;
    } else {
        v.mid[1] = _mm512_loadu_ps(src + LANES);
        v.left[1] = LARGE_ALIGNR(v.mid[1], v.mid[0], 15);
        v.right[0] = LARGE_ALIGNR(v.mid[1], v.mid[0], 1);
        v.right[1] = LARGE_ALIGNR(z, v.mid[1], 1);
    }
    return v;
}

/* Stride 2: row src of 16 * nv values; output q reads columns 2q - 1, 2q
 * and 2q + 1 (odd q - 1, even q, odd q). At nv = 1 the upper 8 lanes are
 * zero. */
LARGE_INLINE large_row large_row_s2(const float *src, int nv) {
    const __m512 z = _mm512_setzero_ps();
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    large_row v;
    large_fetch(src);
    if (nv == 2) large_fetch(src + LANES);
    if (nv == 1) {
        const __m512 a = _mm512_loadu_ps(src);
        v.mid[0] = _mm512_maskz_permutexvar_ps(0xff, even, a);
        v.right[0] = _mm512_maskz_permutexvar_ps(0xff, odd, a);
    } else {
        const __m512 a = _mm512_loadu_ps(src), b = _mm512_loadu_ps(src + LANES);
        v.mid[0] = _mm512_permutex2var_ps(a, even, b);
        v.right[0] = _mm512_permutex2var_ps(a, odd, b);
    }
    /* at nv = 1 lane 8 would get odd lane 7, column 15, which no output
     * reads: zero, as the filter gradient multiplies it by dy's zero */
    v.left[0] = _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(
        nv == 1 ? 0xff : 0xffff, _mm512_castps_si512(v.right[0]), _mm512_castps_si512(z), 15));
    v.left[1] = v.mid[1] = v.right[1] = z;
    return v;
}

/* acc + the three taps of filter row wr (wv[3 wr .. 3 wr + 2]) on row v. */
LARGE_INLINE __m512 large_taps(const __m512 *wv, int wr, const large_row *v, int k, __m512 acc) {
    acc = _mm512_fmadd_ps(wv[3 * wr], v->left[k], acc);
    acc = _mm512_fmadd_ps(wv[3 * wr + 1], v->mid[k], acc);
    return _mm512_fmadd_ps(wv[3 * wr + 2], v->right[k], acc);
}

/* Bias plus the nine taps on rows above, at and below, then the relu
 * (max with 0 first, as the relu op: NaN passes). Two chains of fused
 * multiply-adds. */
LARGE_INLINE __m512 large_output(const __m512 *wv, __m512 bias, int relu, const large_row *above,
                                 const large_row *at, const large_row *below, int k) {
    const __m512 head = large_taps(wv, 1, at, k, large_taps(wv, 0, above, k, bias));
    const __m512 tail = large_taps(wv, 2, below, k, _mm512_setzero_ps());
    const __m512 sum = _mm512_add_ps(head, tail);
    return relu ? _mm512_max_ps(_mm512_setzero_ps(), sum) : sum;
}

/* One plane, stride 1: y (h x 16 nv) from x (the same), taps wv. */
LARGE_INLINE void large_plane_s1(int nv, long h, const float *x, const __m512 *wv, __m512 bias,
                                 int relu, float *y) {
    const long width = nv * LANES;
    large_row above = large_zero_row(), at = large_row_s1(x, nv);
    for (long p = 0; p < h; p++) {
        const large_row below =
            p + 1 < h ? large_row_s1(x + (p + 1) * width, nv) : large_zero_row();
        /* written out rather than looped over k: a loop kept the rows in
         * memory (4x slower) */
        large_fetch_w(y + p * width);
        _mm512_storeu_ps(y + p * width, large_output(wv, bias, relu, &above, &at, &below, 0));
        if (nv == 2) {
            large_fetch_w(y + p * width + LANES);
            _mm512_storeu_ps(y + p * width + LANES,
                             large_output(wv, bias, relu, &above, &at, &below, 1));
        }
        above = at;
        at = below;
    }
}

/* One plane, stride 2: y ((h + 1) / 2 x 8 nv) from x (h x 16 nv). */
LARGE_INLINE void large_plane_s2(int nv, long h, const float *x, const __m512 *wv, __m512 bias,
                                 int relu, float *y) {
    const long width = nv * LANES, out_width = nv * LANES / 2;
    const __mmask16 store = nv == 1 ? 0xff : 0xffff;
    large_row above = large_zero_row();
    for (long p = 0; 2 * p < h; p++) {
        const large_row at = large_row_s2(x + 2 * p * width, nv);
        const large_row below =
            2 * p + 1 < h ? large_row_s2(x + (2 * p + 1) * width, nv) : large_zero_row();
        large_fetch_w(y + p * out_width);
        _mm512_mask_storeu_ps(y + p * out_width, store,
                              large_output(wv, bias, relu, &above, &at, &below, 0));
        above = below;
    }
}

/* The nine taps as vectors, in filter order or turned by 180 degrees. */
LARGE_INLINE void large_weights(const float *w, int turned, __m512 *wv) {
    LARGE_UNROLL(9)
    for (int t = 0; t < TAPS; t++) wv[t] = _mm512_set1_ps(w[turned ? TAPS - 1 - t : t]);
}

/* Plane i of x (image i / C, channel i % C) into y. `turned`: the data
 * gradient at stride 1 (no bias, no relu). A function of its own, as the
 * OpenMP region's body does not get the AVX-512 target. */
static LARGE_TARGET void large_plane(const conv_geometry *g, long i, const float *x, const float *w,
                                     const float *bias, int relu, int turned, float *y) {
    const long c = i % g->c;
    const int nv = (int)(g->w / LANES);
    __m512 wv[TAPS];
    large_weights(w + c * TAPS, turned, wv);
    const __m512 b = _mm512_set1_ps(bias ? bias[c] : 0.0f);
    const float *src = x + i * g->h * g->w;
    float *dst = y + i * g->p * g->q;
    /* constant nv and stride per call, so each form compiles apart */
    if (g->stride_h == 1 && nv == 2)
        large_plane_s1(2, g->h, src, wv, b, relu, dst);
    else if (g->stride_h == 1)
        large_plane_s1(1, g->h, src, wv, b, relu, dst);
    else if (nv == 2)
        large_plane_s2(2, g->h, src, wv, b, relu, dst);
    else
        large_plane_s2(1, g->h, src, wv, b, relu, dst);
}

/* The n*c planes in memory order, a contiguous range per thread. */
static void large_planes(const conv_geometry *g, int team, const float *x, const float *w,
                         const float *bias, int relu, int turned, float *y) {
    const long planes = g->n * g->c;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long i = 0; i < planes; i++) large_plane(g, i, x, w, bias, relu, turned, y);
}

void blis_depthwise_large_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y) {
    large_planes(g, team, x, w, bias, relu, 0, y);
}

/* dy row m at stride 2 (8 nv values): d = dy(m, q), next = dy(m, q + 1),
 * zero past the row. */
LARGE_INLINE void large_dy_row(const float *src, int nv, __m512 *d, __m512 *next) {
    large_fetch(src);
    *d = nv == 1 ? _mm512_maskz_loadu_ps(0xff, src) : _mm512_loadu_ps(src);
    *next = LARGE_ALIGNR(_mm512_setzero_ps(), *d, 1);
}

/* dx row (16 nv values) from its even and odd columns. */
LARGE_INLINE void large_interleave(int nv, __m512 even, __m512 odd, float *dst) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    large_fetch_w(dst);
    if (nv == 2) large_fetch_w(dst + LANES);
    _mm512_storeu_ps(dst, _mm512_permutex2var_ps(even, lo, odd));
    if (nv == 2) _mm512_storeu_ps(dst + LANES, _mm512_permutex2var_ps(even, hi, odd));
}

/* One plane's data gradient at stride 2: dx (h x 16 nv) from dy. dx row
 * 2m takes filter row 1 on dy row m; row 2m + 1 filter row 0 on dy row
 * m + 1 and row 2 on dy row m. Even column 2q takes filter column 1 on dy
 * column q; odd column 2q + 1 column 0 on q + 1 and column 2 on q. */
LARGE_INLINE void large_data_s2(int nv, long h, long p_rows, const float *dy, const float *w,
                                float *dx) {
    const long width = nv * LANES, dy_width = nv * LANES / 2;
    __m512 wv[TAPS];
    large_weights(w, 0, wv);
    __m512 d, dn;
    large_dy_row(dy, nv, &d, &dn);
    for (long m = 0; 2 * m < h; m++) {
        const __m512 even = _mm512_mul_ps(wv[4], d);
        const __m512 odd = _mm512_fmadd_ps(wv[3], dn, _mm512_mul_ps(wv[5], d));
        large_interleave(nv, even, odd, dx + 2 * m * width);
        if (2 * m + 1 == h) break;
        __m512 e = _mm512_setzero_ps(), en = e;
        if (m + 1 < p_rows) large_dy_row(dy + (m + 1) * dy_width, nv, &e, &en);
        const __m512 even1 = _mm512_fmadd_ps(wv[1], e, _mm512_mul_ps(wv[7], d));
        const __m512 odd1 = _mm512_fmadd_ps(
            wv[0], en,
            _mm512_fmadd_ps(wv[2], e, _mm512_fmadd_ps(wv[6], dn, _mm512_mul_ps(wv[8], d))));
        large_interleave(nv, even1, odd1, dx + (2 * m + 1) * width);
        d = e;
        dn = en;
    }
}

/* Plane i's data gradient at stride 2. */
static LARGE_TARGET void large_data_plane(const conv_geometry *g, long i, const float *dy,
                                          const float *w, float *dx) {
    const float *wc = w + i % g->c * TAPS, *src = dy + i * g->p * g->q;
    if (g->w == 2 * LANES)
        large_data_s2(2, g->h, g->p, src, wc, dx + i * g->h * g->w);
    else
        large_data_s2(1, g->h, g->p, src, wc, dx + i * g->h * g->w);
}

void blis_depthwise_large_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx) {
    if (g->stride_h == 1) {
        large_planes(g, team, dy, w, NULL, 0, 1, dx);
        return;
    }
    const long planes = g->n * g->c;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long i = 0; i < planes; i++) large_data_plane(g, i, dy, w, dx);
}

/* acc[0 .. 2] += dy vector * the three taps of one row. */
LARGE_INLINE void large_dot_row(__m512 gy, const large_row *v, int k, __m512 *acc) {
    acc[0] = _mm512_fmadd_ps(gy, v->left[k], acc[0]);
    acc[1] = _mm512_fmadd_ps(gy, v->mid[k], acc[1]);
    acc[2] = _mm512_fmadd_ps(gy, v->right[k], acc[2]);
}

/* acc[t] += dy vector * the forward's tap t vector. Written out rather
 * than looped over the rows: a loop kept the sums in memory (2x slower). */
LARGE_INLINE void large_dots(const __m512 gy, const large_row *above, const large_row *at,
                             const large_row *below, int k, __m512 *acc) {
    large_dot_row(gy, above, k, acc);
    large_dot_row(gy, at, k, acc + 3);
    large_dot_row(gy, below, k, acc + 6);
}

/* One plane's filter gradient, per lane: acc[t] = sum of dy * tap t. */
LARGE_INLINE void large_filter_plane(int nv, int stride, long h, long p_rows, const float *x,
                                     const float *dy, __m512 *acc) {
    const long width = nv * LANES, dy_width = stride == 1 ? width : width / 2;
    LARGE_UNROLL(9)
    for (int t = 0; t < TAPS; t++) acc[t] = _mm512_setzero_ps();
    if (stride == 1) {
        large_row above = large_zero_row(), at = large_row_s1(x, nv);
        for (long p = 0; p < h; p++) {
            const large_row below =
                p + 1 < h ? large_row_s1(x + (p + 1) * width, nv) : large_zero_row();
            large_fetch(dy + p * dy_width);
            if (nv == 2) large_fetch(dy + p * dy_width + LANES);
            large_dots(_mm512_loadu_ps(dy + p * dy_width), &above, &at, &below, 0, acc);
            if (nv == 2)
                large_dots(_mm512_loadu_ps(dy + p * dy_width + LANES), &above, &at, &below, 1, acc);
            above = at;
            at = below;
        }
    } else {
        large_row above = large_zero_row();
        for (long p = 0; p < p_rows; p++) {
            const large_row at = large_row_s2(x + 2 * p * width, nv);
            const large_row below =
                2 * p + 1 < h ? large_row_s2(x + (2 * p + 1) * width, nv) : large_zero_row();
            large_fetch(dy + p * dy_width);
            const __m512 gy = nv == 1 ? _mm512_maskz_loadu_ps(0xff, dy + p * dy_width)
                                      : _mm512_loadu_ps(dy + p * dy_width);
            large_dots(gy, &above, &at, &below, 0, acc);
            above = below;
        }
    }
}

/* sums[t*8 .. t*8 + 7] += the lanes of acc[t] folded in half, in double:
 * one conversion per tap, not two (the per-plane additions were a third of
 * a 16x16 plane's filter gradient). */
LARGE_INLINE void large_add_sums(const __m512 *acc, double *sums) {
    LARGE_UNROLL(9)
    for (int t = 0; t < TAPS; t++) {
        const __m256 lo = _mm512_castps512_ps256(acc[t]);
        const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1));
        double *s = sums + t * SUM_LANES;
        _mm512_storeu_pd(s,
                         _mm512_add_pd(_mm512_loadu_pd(s), _mm512_cvtps_pd(_mm256_add_ps(lo, hi))));
    }
}

static LARGE_TARGET void large_filter_channel(const conv_geometry *g, const float *x,
                                              const float *dy, double *sums) {
    const int nv = (int)(g->w / LANES);
    __m512 acc[TAPS];
    if (g->stride_h == 1 && nv == 2)
        large_filter_plane(2, 1, g->h, g->p, x, dy, acc);
    else if (g->stride_h == 1)
        large_filter_plane(1, 1, g->h, g->p, x, dy, acc);
    else if (nv == 2)
        large_filter_plane(2, 2, g->h, g->p, x, dy, acc);
    else
        large_filter_plane(1, 2, g->h, g->p, x, dy, acc);
    large_add_sums(acc, sums);
}

void blis_depthwise_large_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch) {
    const long in_plane = g->h * g->w, out_plane = g->p * g->q;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), threads = omp_get_num_threads();
        const long c_first = g->c * t / threads, c_end = g->c * (t + 1) / threads;
        double *sums = scratch[t].data;
        memset(sums, 0, (size_t)((c_end - c_first) * CHANNEL_SUMS) * sizeof(double));
        /* memory order: each image's run of this thread's channels */
        for (long n = 0; n < g->n; n++)
            for (long c = c_first; c < c_end; c++)
                large_filter_channel(g, x + (n * g->c + c) * in_plane,
                                     dy + (n * g->c + c) * out_plane,
                                     sums + (c - c_first) * CHANNEL_SUMS);
        for (long c = c_first; c < c_end; c++) {
            for (int tap = 0; tap < TAPS; tap++) {
                const double *s = sums + (c - c_first) * CHANNEL_SUMS + tap * SUM_LANES;
                double total = 0;
                for (int l = 0; l < SUM_LANES; l++) total += s[l];
                dw[c * TAPS + tap] = (float)total;
            }
        }
    }
}

#else

void blis_depthwise_large_forward(const conv_geometry *g, int team, const float *x, const float *w,
                                  const float *bias, int relu, float *y) {
    (void)g, (void)team, (void)x, (void)w, (void)bias, (void)relu, (void)y;
}
void blis_depthwise_large_backward_data(const conv_geometry *g, int team, const float *dy,
                                        const float *w, float *dx) {
    (void)g, (void)team, (void)dy, (void)w, (void)dx;
}
void blis_depthwise_large_backward_filter(const conv_geometry *g, int team, const float *x,
                                          const float *dy, float *dw, blis_scratch *scratch) {
    (void)g, (void)team, (void)x, (void)dy, (void)dw, (void)scratch;
}

#endif
