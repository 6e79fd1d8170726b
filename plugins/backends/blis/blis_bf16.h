/* Private to the blis backend: its bf16 kernels (storage in bf16, sums in
 * f32). The GEMM needs AVX-512 BF16; without it, blis_bf16.c runs bf16 ops
 * through the f32 kernels on widened copies. */
#ifndef NNOPT_BLIS_BF16_H
#define NNOPT_BLIS_BF16_H

#include <stdint.h>

#include "blis_internal.h"

/* Whether this CPU (and compiler) has the AVX-512 BF16 kernels (cpuid). */
int blis_bf16_hw_available(void);
int blis_cpu_has_avx512_bf16(void); /* blis_arch.c */

/* C[m, n] = bf16(A[m, k] B[k, n] + bias_row[i] + bias_col[j]) with f32 sums,
 * k walked in pairs (`pairs` = k/2 rounded up, odd k zero-padded in both).
 * A: row i's pair kk is the 32-bit word a[i*lda + kk] (two bf16, lower k
 * first). B: pair row kk is the word array at b + b_off[kk], word j holding
 * elements 2kk, 2kk+1 of column j; words up to n rounded up to 32 are read
 * and must be finite. Either bias may be NULL. C is row-major bf16 with row
 * stride ldc. AVX-512 BF16 only: callers check blis_bf16_hw_available(). */
void blis_bf16_gemm(long m, long n, long pairs, const uint32_t *a, long lda, const uint32_t *b,
                    const long *b_off, const float *bias_row, const float *bias_col, uint16_t *c,
                    long ldc);

/* Element-wise loops (blis_bf16_vector.c); hw: use the AVX-512 BF16
 * instructions, which round as nnopt_bf16_from_f32 does but flush subnormal
 * results to zero. */
void blis_bf16_narrow(int hw, const float *src, uint16_t *dst, long count);
void blis_bf16_widen(int hw, const uint16_t *src, float *dst, long count);
/* y = bf16(x * scale + shift), one f32 fused multiply-add. */
void blis_bf16_scale_shift(int hw, const uint16_t *x, uint16_t *y, long count, float scale,
                           float shift);
/* dst[i] = lo[i] | hi[i] << 16: two bf16 rows as the GEMM's pair words
 * (hi NULL: zeros). */
void blis_bf16_interleave(int hw, const uint16_t *lo, const uint16_t *hi, uint32_t *dst,
                          long count);
/* A short row copy (memcpy without the call overhead on rows of ~10-30). */
void blis_bf16_copy(int hw, const uint16_t *src, uint16_t *dst, long count);
/* y = bf16(a + b); y may be a or b. */
void blis_bf16_add(int hw, const uint16_t *a, const uint16_t *b, uint16_t *y, long count);

/* Runs a bf16 op: conv2d and dense on the bf16 GEMM, activations, add and
 * batch norm (inference) on their own loops, the rest through the f32
 * kernels on widened copies. */
nnopt_status blis_bf16_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out);

/* Element-wise bf16 kernels (blis_elementwise.c). */
nnopt_status blis_act_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out);
nnopt_status blis_pool2d_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                              int n_in, nnopt_tensor *const *out, int n_out); /* blis_pool.c */
nnopt_status blis_add_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out);

#endif
