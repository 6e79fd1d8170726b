/* Test support: a backend under test against the reference in bf16, op by
 * op. Both backends get the same inputs, rounded to bf16 once on the host;
 * every output (and every input, for ops that update them in place) must
 * agree element by element within
 *
 *   |tested - ref| <= 2^-7 (|ref| + D) + D + floor * max |ref| over the tensor
 *
 * bf16 keeps 8 significant bits, so a step between neighbouring bf16 values
 * is at most 2^-7 of their size: two f32 results that differ by D round to
 * bf16 values at most D plus one step apart. D = sum_error * S, where S is
 * the sum of the magnitudes of the terms the element sums (the op on the
 * inputs' absolute values, computed in f64 by the reference): the error
 * bound of an f32 sum of those terms in any order, for both backends
 * together. `floor` covers results that are differences of much larger
 * terms, where a last-bit difference in double before the roundings is
 * large relative to the result. `exact` demands the same values.
 *
 * The checks fail through cmocka, so they run inside cmocka tests; random
 * values come from the shared stream (test_rng.h). */
#ifndef NNOPT_BF16_COMPARE_H
#define NNOPT_BF16_COMPARE_H

#include "backend_compare.h"

enum { BF16_COMPARE_MAX_TENSORS = 6 };

typedef struct bf16_bound {
    int exact;
    double sum_error; /* D = sum_error * S; 0: no S (one step and floor only) */
    double floor;     /* relative to the tensor's largest |ref| */
} bf16_bound;

/* One bf16 step and nothing else: one rounding of results that agree in f32
 * up to the last bits of a double computation. */
extern const bf16_bound bf16_one_step;

/* The backends the checks compare; they must stay open. */
void bf16_compare_backends(test_backend *tested, test_backend *reference);

/* Fresh random values for s, rounded to bf16 (caller frees). */
double *bf16_spec_values(const tensor_spec *s);

/* Runs op in bf16 on both backends. Inputs: in_values[i], or fresh random
 * values when in_values or its entry is NULL (labels stay I32, and a spec's
 * dtype_override holds). Outputs start as out_values[i] on both backends, or
 * when NULL as garbage on the tested one and zeros on the reference, so that
 * an output left unwritten fails. A nonzero bound.sum_error needs one output. */
void bf16_check_op(const char *what, const nnopt_op *op, int n_in, const tensor_spec *in,
                   double *const *in_values, int n_out, const tensor_spec *out,
                   double *const *out_values, const bf16_bound *bound);

/* The largest |tested - ref| / (its bound) seen since the last call (0 when
 * every element was exact), then reset: how close the checks came. */
double bf16_compare_worst(void);

/* ---- op families ---- */

/* conv2d with and without bias: D = 2^-22 (C/groups R S + 2) S, plus a floor
 * of 2^-10 for cuDNN's FFT and Winograd algorithms, whose transforms err
 * relative to the whole tensor (about 2^-12 of it in f32, measured on an
 * H200). */
void bf16_check_conv(const conv_case *cc, const char *label);
/* dense with and without bias: D = 2^-22 (IN + 2) S. */
void bf16_check_dense(int64_t n, int64_t in, int64_t out);
/* pool2d: max exact (a choice), average within one step. */
void bf16_check_pool(int64_t n, int64_t c, int64_t h, int64_t w, const nnopt_pool2d_params *pp);
/* act of `count` values in [-range, range]: identity, relu, relu6 exact;
 * the others within one step and a floor of 2^-30 (gelu's cancellation). */
void bf16_check_act(nnopt_act_kind kind, int64_t count, double range);
/* batchnorm of x, inference and training (y, the saved statistics and the
 * running ones): one step and a floor of 2^-30. */
void bf16_check_batchnorm(const tensor_spec *x);
/* softmax_xent with n rows of k logits: labels, soft targets at T = 2, and
 * weighted soft targets added to what the outputs hold: one step and a floor
 * of 2^-30 (dlogits = p - target cancels). */
void bf16_check_softmax_xent(int64_t n, int64_t k);

#endif
