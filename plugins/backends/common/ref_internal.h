/* Private to the reference kernels: argument checks shared by every op family,
 * the entry point of each op, and the macros that let a typed kernel be
 * written once and compiled for float and double. */
#ifndef NNOPT_REF_INTERNAL_H
#define NNOPT_REF_INTERNAL_H

#include "ref_kernels.h"

/* Typed kernels live in a ref_<family>.inc file that ref_<family>.c includes
 * twice: with T = float and REF_SUFFIX = f32, then T = double and f64.
 * REF_FN(name) gives each instance its own name (name_f32, name_f64). */
#define REF_PASTE_(a, b) a##_##b
#define REF_PASTE(a, b) REF_PASTE_(a, b)
#define REF_FN(name) REF_PASTE(name, REF_SUFFIX)

/* Every op entry point has the signature of nnopt_ref_run. */
typedef nnopt_status (*ref_op_fn)(const nnopt_host_api *host, const nnopt_op *op,
                                  nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                  int n_out);

/* host->set_error, tolerating a NULL host (then the message is dropped). */
void ref_error(const nnopt_host_api *host, const char *fmt, ...) NNOPT_FMT_PRINTF(2, 3);

/* n_in within [min_in, max_in] and n_out == want_out. */
nnopt_status ref_check_counts(const nnopt_host_api *host, const nnopt_op *op, int n_in, int min_in,
                              int max_in, int n_out, int want_out);
/* t is present, allocated, has a sane shape and dtype `dtype`. */
nnopt_status ref_check_tensor(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, nnopt_dtype dtype);
/* t is present, allocated, has a sane shape and dtype F32 or F64. */
nnopt_status ref_check_float(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role);
/* t passes ref_check_tensor with like's dtype and has exactly like's shape. */
nnopt_status ref_check_like(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                            const char *role, const nnopt_tensor *like);
/* t has ndim dimensions equal to dims[0..ndim-1]. */
nnopt_status ref_check_shape(const nnopt_host_api *host, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role, int ndim, const int64_t *dims);

/* One entry point per op kind (grouped by family in ref_<family>.c). */
nnopt_status ref_conv2d(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                        int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_conv2d_bwd_data(const nnopt_host_api *host, const nnopt_op *op,
                                 nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                 int n_out);
nnopt_status ref_conv2d_bwd_filter(const nnopt_host_api *host, const nnopt_op *op,
                                   nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                   int n_out);
nnopt_status ref_dense(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                       int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_dense_bwd_data(const nnopt_host_api *host, const nnopt_op *op,
                                nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                int n_out);
nnopt_status ref_dense_bwd_weight(const nnopt_host_api *host, const nnopt_op *op,
                                  nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                  int n_out);
nnopt_status ref_bias_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                          int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_pool2d(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                        int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_pool2d_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                            int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_act(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                     int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_act_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_add(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                     int n_in, nnopt_tensor *const *out, int n_out);
/* y += r element by element, rounded once (conv2d_add_relu). */
void ref_add_in_place(nnopt_tensor *y, const nnopt_tensor *r);
/* y = max(0, y) element by element (conv2d_relu, add_relu). */
void ref_relu_in_place(nnopt_tensor *t);
/* t = y > 0 ? t : 0, elementwise (y has t's shape): a relu's gradient
 * through its output y. */
void ref_keep_where_positive(nnopt_tensor *t, const nnopt_tensor *y);
nnopt_status ref_cast(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                      int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_softmax_xent(const nnopt_host_api *host, const nnopt_op *op,
                              nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                              int n_out);
nnopt_status ref_sgd_update(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                            int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_adam_update(const nnopt_host_api *host, const nnopt_op *op,
                             nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                             int n_out);
nnopt_status ref_batchnorm(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                           int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_batchnorm_bwd(const nnopt_host_api *host, const nnopt_op *op,
                               nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                               int n_out);
nnopt_status ref_dropout(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status ref_dropout_bwd(const nnopt_host_api *host, const nnopt_op *op,
                             nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                             int n_out);
/* conv2d_int8 and dense_int8 (ref_quant.c). */
nnopt_status ref_qlinear(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out);

#endif
