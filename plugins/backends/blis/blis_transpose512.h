/* The 16 x 16 f32 transpose in AVX-512 registers that the Winograd scatter
 * and the small-plane depthwise kernels share: rows[i] lane j <- rows[j]
 * lane i, by unpacks of pairs and quads within 128-bit lanes, then two
 * rounds of 128-bit lane shuffles (64 shuffles). x86-64 GCC/Clang only;
 * inlined into callers compiled for AVX-512F. */
#ifndef NNOPT_BLIS_TRANSPOSE512_H
#define NNOPT_BLIS_TRANSPOSE512_H

#include <immintrin.h>

static inline __attribute__((always_inline, target("avx512f"))) void
blis_transpose16x16_f32(__m512 *rows) {
    __m512 a[16], b[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
        const __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* b[4g + j], 128-bit lane L: column 4L + j of rows 4g..4g+3 */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512 c_even = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
        const __m512 c_odd = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
        const __m512 d_even = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
        const __m512 d_odd = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
        rows[j] = _mm512_shuffle_f32x4(c_even, d_even, 0x88);
        rows[8 + j] = _mm512_shuffle_f32x4(c_even, d_even, 0xdd);
        rows[4 + j] = _mm512_shuffle_f32x4(c_odd, d_odd, 0x88);
        rows[12 + j] = _mm512_shuffle_f32x4(c_odd, d_odd, 0xdd);
    }
}

#endif
