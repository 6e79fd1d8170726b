/* bf16 element-wise loops: conversion to and from f32, and the cheap ops
 * fused so that each value is loaded and stored once as bf16 (widening,
 * computing and narrowing in separate passes over f32 blocks cost more than
 * the f32 op itself). The AVX-512 BF16 versions round with vcvtneps2bf16:
 * nearest even like nnopt_bf16_from_f32, except that subnormal results
 * become zero; the portable versions use nnopt_bf16_from_f32 itself. */
#include <string.h>

#include "blis_bf16.h"
#include "nnopt/bf16.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VEC_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define VEC_HAVE 1

/* Lanes [0, count) of a 16-lane block (count may exceed 16). */
VEC_TARGET static inline __mmask16 lanes(long count) {
    return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
}

VEC_TARGET static inline __m512 load16(const uint16_t *src, __mmask16 m) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

VEC_TARGET static inline void store16(uint16_t *dst, __m512 v, __mmask16 m) {
    _mm256_mask_storeu_epi16(dst, m, (__m256i)_mm512_cvtneps_pbh(v));
}

VEC_TARGET static void narrow_hw(const float *src, uint16_t *dst, long count) {
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        store16(dst + i, _mm512_maskz_loadu_ps(m, src + i), m);
    }
}

VEC_TARGET static void widen_hw(const uint16_t *src, float *dst, long count) {
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        _mm512_mask_storeu_ps(dst + i, m, load16(src + i, m));
    }
}

VEC_TARGET static void scale_shift_hw(const uint16_t *x, uint16_t *y, long count, float scale,
                                      float shift) {
    const __m512 s = _mm512_set1_ps(scale), t = _mm512_set1_ps(shift);
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        store16(y + i, _mm512_fmadd_ps(load16(x + i, m), s, t), m);
    }
}

VEC_TARGET static void interleave_hw(const uint16_t *lo, const uint16_t *hi, uint32_t *dst,
                                     long count) {
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        const __m512i a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, lo + i));
        const __m512i b = hi ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, hi + i))
                             : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(dst + i, m, _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
    }
}

VEC_TARGET static void copy_hw(const uint16_t *src, uint16_t *dst, long count) {
    for (long i = 0; i < count; i += 32) {
        const __mmask32 m = count - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (count - i)) - 1);
        _mm512_mask_storeu_epi16(dst + i, m, _mm512_maskz_loadu_epi16(m, src + i));
    }
}

VEC_TARGET static void add_hw(const uint16_t *a, const uint16_t *b, uint16_t *y, long count) {
    for (long i = 0; i < count; i += 16) {
        const __mmask16 m = lanes(count - i);
        store16(y + i, _mm512_add_ps(load16(a + i, m), load16(b + i, m)), m);
    }
}
#else
#define VEC_HAVE 0
#endif

void blis_bf16_narrow(int hw, const float *src, uint16_t *dst, long count) {
#if VEC_HAVE
    if (hw) {
        narrow_hw(src, dst, count);
        return;
    }
#endif
    for (long i = 0; i < count; i++) dst[i] = nnopt_bf16_from_f32(src[i]);
}

void blis_bf16_widen(int hw, const uint16_t *src, float *dst, long count) {
#if VEC_HAVE
    if (hw) {
        widen_hw(src, dst, count);
        return;
    }
#endif
    for (long i = 0; i < count; i++) dst[i] = nnopt_bf16_to_f32(src[i]);
}

void blis_bf16_scale_shift(int hw, const uint16_t *x, uint16_t *y, long count, float scale,
                           float shift) {
#if VEC_HAVE
    if (hw) {
        scale_shift_hw(x, y, count, scale, shift);
        return;
    }
#endif
    for (long i = 0; i < count; i++)
        y[i] = nnopt_bf16_from_f32(nnopt_bf16_to_f32(x[i]) * scale + shift);
}

void blis_bf16_add(int hw, const uint16_t *a, const uint16_t *b, uint16_t *y, long count) {
#if VEC_HAVE
    if (hw) {
        add_hw(a, b, y, count);
        return;
    }
#endif
    for (long i = 0; i < count; i++)
        y[i] = nnopt_bf16_from_f32(nnopt_bf16_to_f32(a[i]) + nnopt_bf16_to_f32(b[i]));
}

void blis_bf16_interleave(int hw, const uint16_t *lo, const uint16_t *hi, uint32_t *dst,
                          long count) {
#if VEC_HAVE
    if (hw) {
        interleave_hw(lo, hi, dst, count);
        return;
    }
#endif
    for (long i = 0; i < count; i++) dst[i] = (uint32_t)lo[i] | (hi ? (uint32_t)hi[i] << 16 : 0);
}

void blis_bf16_copy(int hw, const uint16_t *src, uint16_t *dst, long count) {
#if VEC_HAVE
    if (hw) {
        copy_hw(src, dst, count);
        return;
    }
#endif
    memcpy(dst, src, (size_t)count * sizeof *dst);
}
