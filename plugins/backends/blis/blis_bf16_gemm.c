/* bf16 GEMM on AVX-512 BF16 (BLIS 0.9 has none).
 *
 * vdpbf16ps multiplies pairs of bf16 values and adds both products into one
 * f32 lane: lane j of acc += a[0] b[0][j] + a[1] b[1][j]. So K is walked in
 * pairs: row kk of B is an array of 32-bit words (word j holds elements 2kk
 * and 2kk+1 of column j), found at b + b_off[kk], so a 512-bit load is 16
 * columns of one pair; A's pair (a[i][2kk], a[i][2kk+1]) is one broadcast
 * word. Row offsets rather than a fixed stride let a convolution read its
 * rows straight from the padded image (a row per filter tap and channel
 * pair) with no im2col copy. A tile is 8
 * rows x 32 columns: 16 f32 accumulators, two B loads and one broadcast per
 * pair and row, well inside the 32 vector registers. Sums stay in f32; the
 * bias is the accumulators' starting value, and the result is rounded to
 * bf16 (nearest even, vcvtne2ps2bf16) once, when stored. */
#include <string.h>

#include "blis_bf16.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define BF16_HAVE_KERNELS 1
#else
#define BF16_HAVE_KERNELS 0
#endif

#define TILE_ROWS 8
#define TILE_COLS 32

#if BF16_HAVE_KERNELS
/* Rows [0, rows) x columns [0, cols) of one tile (cols <= 32); `rows` is a
 * constant at every call site, so the accumulators live in registers. */
BF16_TARGET __attribute__((always_inline)) static inline void
tile(int rows, long cols, long pairs, const uint32_t *a, long lda, const uint32_t *b,
     const long *b_off, const float *bias_row, const float *bias_col, uint16_t *c, long ldc) {
    __m512 acc[TILE_ROWS][2];
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32   ? 0xffff
                         : cols <= 16 ? 0
                                      : (__mmask16)((1u << (cols - 16)) - 1);
    const __m512 col0 = bias_col ? _mm512_maskz_loadu_ps(m0, bias_col) : _mm512_setzero_ps();
    const __m512 col1 = bias_col ? _mm512_maskz_loadu_ps(m1, bias_col + 16) : _mm512_setzero_ps();
    /* Fully unrolled (rows is a constant), so that acc lives in registers. */
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        const __m512 start = bias_row ? _mm512_set1_ps(bias_row[i]) : _mm512_setzero_ps();
        acc[i][0] = _mm512_add_ps(start, col0);
        acc[i][1] = _mm512_add_ps(start, col1);
    }
    for (long kk = 0; kk < pairs; kk++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + b_off[kk]);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + b_off[kk] + 16);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i * lda + kk]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    const __mmask32 store = cols >= 32 ? 0xffffffffu : (__mmask32)((1ull << cols) - 1);
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        const __m512bh packed = _mm512_cvtne2ps_pbh(acc[i][1], acc[i][0]);
        _mm512_mask_storeu_epi16(c + i * ldc, store, (__m512i)packed);
    }
}

BF16_TARGET static void tile_rows(int rows, long cols, long pairs, const uint32_t *a, long lda,
                                  const uint32_t *b, const long *b_off, const float *bias_row,
                                  const float *bias_col, uint16_t *c, long ldc) {
    switch (rows) {
#define TILE_CASE(r)                                                                               \
    case r:                                                                                        \
        tile(r, cols, pairs, a, lda, b, b_off, bias_row, bias_col, c, ldc);                        \
        break;
        TILE_CASE(1)
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
        TILE_CASE(5)
        TILE_CASE(6)
        TILE_CASE(7)
        TILE_CASE(8)
#undef TILE_CASE
    default:
        break;
    }
}

BF16_TARGET void blis_bf16_gemm(long m, long n, long pairs, const uint32_t *a, long lda,
                                const uint32_t *b, const long *b_off, const float *bias_row,
                                const float *bias_col, uint16_t *c, long ldc) {
    /* Column strips outermost: one strip of B (pairs x 32 words) stays in L1
     * while every row block of A streams past it. */
    for (long j = 0; j < n; j += TILE_COLS) {
        const long cols = n - j < TILE_COLS ? n - j : TILE_COLS;
        for (long i = 0; i < m; i += TILE_ROWS) {
            const int rows = (int)(m - i < TILE_ROWS ? m - i : TILE_ROWS);
            tile_rows(rows, cols, pairs, a + i * lda, lda, b + j, b_off,
                      bias_row ? bias_row + i : NULL, bias_col ? bias_col + j : NULL,
                      c + i * ldc + j, ldc);
        }
    }
}

#else
void blis_bf16_gemm(long m, long n, long pairs, const uint32_t *a, long lda, const uint32_t *b,
                    const long *b_off, const float *bias_row, const float *bias_col, uint16_t *c,
                    long ldc) {
    (void)m, (void)n, (void)pairs, (void)a, (void)lda, (void)b, (void)b_off;
    (void)bias_row, (void)bias_col, (void)c, (void)ldc; /* callers check the CPU first */
}
#endif

int blis_bf16_hw_available(void) {
    return BF16_HAVE_KERNELS && blis_cpu_has_avx512_bf16();
}
