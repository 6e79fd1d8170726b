/* Private to the blis backend's int8 kernels (blis_quant*.c): the VNNI
 * target, the shared activation quantiser, and the two op families. */
#ifndef NNOPT_BLIS_QUANT_H
#define NNOPT_BLIS_QUANT_H

#include "blis_internal.h"
#include "quant_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BLIS_HAVE_VNNI 1
#include <immintrin.h>
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#else
#define BLIS_HAVE_VNNI 0
#endif

static inline long blis_quant_ceil_div(long a, long b) {
    return (a + b - 1) / b;
}

#if BLIS_HAVE_VNNI

/* The u8 codes of up to 16 floats (mask), one per int32 lane: the steps of
 * nnopt_quantize_u8, and cvtps rounds to nearest even as nearbyintf does. */
VNNI_TARGET static inline __m512i quantize16(const float *src, __mmask16 mask, __m512 inv,
                                             __m512 zp) {
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, src), inv);
    v = _mm512_add_ps(v, zp);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
    return _mm512_cvtps_epi32(v);
}

/* Quantises count floats into u8 codes at dst (blis_quant.c). */
void blis_quantize_row(const float *src, long count, __m512 inv, __m512 zp, uint8_t *dst);

/* The op families, after nnopt_qlinear_check filled g. */
nnopt_status blis_qconv_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                            nnopt_tensor *const *out, const nnopt_qlinear_geometry *g);
nnopt_status blis_qdense_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             nnopt_tensor *const *out, const nnopt_qlinear_geometry *g);

#endif /* BLIS_HAVE_VNNI */
#endif
