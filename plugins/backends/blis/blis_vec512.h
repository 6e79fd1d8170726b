/* The element type and AVX-512 vector operations of the typed kernel files
 * (blis_dense.inc, blis_pointwise.inc), in one place. No include guard: it
 * is included once per type, with BLIS_VEC512_DOUBLE defined as 0 (float)
 * or 1 (double), and once more with BLIS_VEC512_DOUBLE undefined, which
 * only removes the macros again. It sets T and BLIS_SUFFIX (see
 * blis_internal.h) and V512_*: the vector type, its lanes and mask type,
 * and the operations, each an intrinsic of that type. Functions using them
 * are compiled with BLIS_AVX512_TARGET and run only where cpuid reports
 * AVX-512F. x86-64 GCC/Clang only. */
#include <immintrin.h>

#ifndef BLIS_AVX512_TARGET
#define BLIS_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#endif

#undef T
#undef BLIS_SUFFIX
#undef V512_T
#undef V512_LANES
#undef V512_MASK
#undef V512_ZERO
#undef V512_SET1
#undef V512_LOAD
#undef V512_STORE
#undef V512_STREAM
#undef V512_FMA
#undef V512_ADD
#undef V512_MAX
#undef V512_MASKZ_LOAD
#undef V512_MASK_STORE
#undef V512_COMPRESS
#undef V512_MASK_EXPAND

#if defined(BLIS_VEC512_DOUBLE) && BLIS_VEC512_DOUBLE
#define T double
#define BLIS_SUFFIX f64
#define V512_T __m512d
#define V512_LANES 8
#define V512_MASK __mmask8
#define V512_ZERO _mm512_setzero_pd
#define V512_SET1 _mm512_set1_pd
#define V512_LOAD _mm512_loadu_pd
#define V512_STORE _mm512_storeu_pd
#define V512_STREAM _mm512_stream_pd /* 64-byte aligned, past the caches */
#define V512_FMA _mm512_fmadd_pd
#define V512_ADD _mm512_add_pd
#define V512_MAX _mm512_max_pd
#define V512_MASKZ_LOAD _mm512_maskz_loadu_pd
#define V512_MASK_STORE _mm512_mask_storeu_pd
#define V512_COMPRESS _mm512_maskz_compress_pd
#define V512_MASK_EXPAND _mm512_mask_expand_pd
#elif defined(BLIS_VEC512_DOUBLE)
#define T float
#define BLIS_SUFFIX f32
#define V512_T __m512
#define V512_LANES 16
#define V512_MASK __mmask16
#define V512_ZERO _mm512_setzero_ps
#define V512_SET1 _mm512_set1_ps
#define V512_LOAD _mm512_loadu_ps
#define V512_STORE _mm512_storeu_ps
#define V512_STREAM _mm512_stream_ps /* 64-byte aligned, past the caches */
#define V512_FMA _mm512_fmadd_ps
#define V512_ADD _mm512_add_ps
#define V512_MAX _mm512_max_ps
#define V512_MASKZ_LOAD _mm512_maskz_loadu_ps
#define V512_MASK_STORE _mm512_mask_storeu_ps
#define V512_COMPRESS _mm512_maskz_compress_ps
#define V512_MASK_EXPAND _mm512_mask_expand_ps
#endif
