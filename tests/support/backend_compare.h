/* Test support: a backend under test against a reference backend, op by op.
 * Both backends get the same random inputs; their outputs (and in-place
 * updated inputs) must agree within a per-dtype bound relative to the
 * tensor's scale:
 *   |tested - ref| <= bound * (|ref| + max |ref| over the tensor) + 1e-14
 * (GEMM sums cancel, so single elements may be far smaller than their error;
 * the absolute 1e-14 covers results that are tiny differences of O(1) values,
 * e.g. GELU far left of 0, where the reference's 1 + tanh(z) cancels).
 *
 * The checks fail through cmocka, so they run inside cmocka tests. Random
 * numbers come from one deterministic stream: a suite that runs its checks in
 * the same order sees the same shapes and values on every run. */
#ifndef NNOPT_BACKEND_COMPARE_H
#define NNOPT_BACKEND_COMPARE_H

#include "test_rng.h"
#include <stdint.h>

#include "test_backend.h"

enum { COMPARE_MAX_TENSORS = 6, COMPARE_N_DTYPES = 2 };

/* The float dtypes every op is compared in: f32, f64. */
extern const nnopt_dtype compare_dtypes[COMPARE_N_DTYPES];

/* What the checks compare: set by compare_backends before the first check. */
typedef struct backend_comparison {
    test_backend *tested;
    test_backend *reference;
    double f32_bound, f64_bound; /* `bound` above, per dtype */
    /* 1: check_op reports an op the reference lacks and does not compare it;
     * 0: such an op fails the check. */
    int skip_ops_reference_lacks;
} backend_comparison;

/* Copies `comparison`; the backends it points to must stay open (their
 * contents may change, e.g. to reopen the tested backend with other settings). */
void compare_backends(const backend_comparison *comparison);

/* ---- tensors described by shape and kind of values ---- */

typedef enum value_kind {
    VALUES_UNIFORM = 0, /* U(-range, range) */
    VALUES_POSITIVE,    /* U(0.01, range): Adam's second moment */
    VALUES_LABELS,      /* I32 class labels in [0, classes) */
    VALUES_PROBS,       /* rows summing to 1 (soft targets) */
} value_kind;

typedef struct tensor_spec {
    int ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    value_kind values;
    double range;       /* UNIFORM/POSITIVE; 0 means 1 */
    double offset;      /* UNIFORM: added to every value */
    int classes;        /* LABELS */
    int dtype_override; /* 1: use `dtype` below instead of the op's */
    nnopt_dtype dtype;
} tensor_spec;

tensor_spec spec4(int64_t a, int64_t b, int64_t c, int64_t d);
tensor_spec spec2(int64_t a, int64_t b);
tensor_spec spec1(int64_t a);
int64_t spec_numel(const tensor_spec *s);
/* Fresh random values for s (caller frees). */
double *spec_values(const tensor_spec *s);

/* ---- one op on both backends ---- */

/* The magnitude of the terms the next checks' results are sums of (0: none
 * given): results that cancel to about 0 are compared against it, the
 * tensor's scale being max(max |ref|, term_scale). */
void compare_set_term_scale(double term_scale);

/* Fails unless got (tested) and want (reference) agree within the bound. */
void compare_values(const char *what, int index, nnopt_dtype dtype, const double *got,
                    const double *want, int64_t n);

/* The largest |tested - ref| / (|ref| + scale) compare_values has seen in
 * dtype (the quantity the bound limits) since the last reset; reset: start
 * over after reading. */
double compare_worst_error(nnopt_dtype dtype, int reset);

/* The reference implements the op; if not, says so (and returns 0). */
int compare_reference_has(nnopt_op_kind kind, nnopt_dtype dtype);

/* Runs op with fresh random inputs on both backends and compares every
 * output and every input (in-place ops update their inputs). */
void check_op(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
              const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs);

/* As check_op for an op that adds into its outputs: they start with the same
 * random values on both backends. */
void check_op_adding(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                     const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs);

/* Runs op on both backends with the given input values (no random inputs)
 * and compares the outputs. */
void check_op_with_values(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                          const tensor_spec *in_specs, double *const *values, int n_out,
                          const tensor_spec *out_specs);

/* Runs `forward` on the reference with inputs `fwd_values` and returns output
 * `which`'s values (caller frees): backward ops get real forward results. */
double *reference_forward(const nnopt_op *forward, nnopt_dtype dtype, int n_in,
                          const tensor_spec *in_specs, double *const *fwd_values, int n_out,
                          const tensor_spec *out_specs, int which);

/* ---- op families, in both dtypes ---- */

typedef struct conv_case {
    int64_t n, c, h, w, k, r, s;
    nnopt_conv2d_params p;
} conv_case;

/* conv2d forward (with and without bias), backward data and filter. */
void check_conv_case(const conv_case *cc, const char *label);
void check_conv_random_shapes(int rounds);

/* dense forward (with and without bias), backward data and weight. */
void check_dense_case(int64_t n, int64_t in, int64_t out);
/* LeNet-5's layers, one sample, then `random_rounds` random shapes. */
void check_dense_cases(int random_rounds);

/* bias_bwd of random 4-D and 2-D gradients. */
void check_bias_bwd_random_shapes(int rounds);

/* pool2d forward and backward (given the forward's real y). */
void check_pool_case(int64_t n, int64_t c, int64_t h, int64_t w, const nnopt_pool2d_params *pp);
/* LeNet's average pool, a padded 3x3 max pool, then `random_rounds` random ones. */
void check_pool_cases(int random_rounds);

/* What act_bwd gets as the forward's y. */
typedef enum act_bwd_y {
    /* random values, for backends whose formula, like the reference's,
     * does not read y */
    ACT_BWD_RANDOM_Y,
    /* the forward's real y, for backends whose backward reads it (cuDNN) */
    ACT_BWD_FORWARD_Y,
} act_bwd_y;
/* Every activation, forward and backward, below and above the threading
 * threshold; values cover relu6's upper kink and tanh's small-argument series. */
void check_activations(act_bwd_y y);

/* add at several sizes, and with y aliasing a (on the tested backend alone);
 * add_relu the same where the tested backend has it. */
void check_add_case(nnopt_dtype dtype);
/* NaN and signed zeros through the relus and masks, which the bounds cannot
 * see: add_relu, batchnorm_relu and batchnorm_add_relu (inference) and
 * conv2d_bwd_data_add_masked on chosen values, where the tested backend has
 * them. NaNs and zeros, with their sign, must be the reference's. */
void check_relu_special_values(nnopt_dtype dtype);
/* cast to the other float dtype, and to the same (a copy). */
void check_cast_case(nnopt_dtype dtype);

/* Batch normalization of x (4-D or 2-D; its range and offset give the
 * values), in both dtypes: batchnorm in training and inference mode, and
 * batchnorm_bwd with the statistics of a real forward pass (cuDNN may rely on
 * them); where the tested backend has them, the fused batchnorm_relu and
 * batchnorm_add_relu (both modes) and batchnorm_relu_bwd (y as a relu leaves
 * it: about half exactly 0). */
void check_batchnorm_case(const tensor_spec *x);

/* softmax_xent with n rows of k logits: hard labels, soft targets at T = 2. */
void check_softmax_xent_case(nnopt_dtype dtype, int64_t n, int64_t k);

/* sgd (plain, momentum, nesterov) and adam on a rows x cols parameter. */
void check_optimizer_case(nnopt_dtype dtype, int64_t rows, int64_t cols);
/* Updates of several parameter tensors in a row, as a training step issues
 * them (sizes 1 to 70,001; SGD, one tensor twice in a row, a change of
 * learning rate, then Adam at two steps): a backend that batches updates
 * must keep their order and values. */
void check_optimizer_sequence(nnopt_dtype dtype);

#endif
