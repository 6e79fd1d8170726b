/* The cuda backend's own kernels (cuda_kernels.cu), callable from C. Every
 * launcher queues its kernel(s) on `stream` and returns the launch status
 * (cudaGetLastError), never waiting for the device. Pointers are device
 * memory; `dtype` selects float (NNOPT_F32) or double (NNOPT_F64) for the
 * floating-point arrays. Numerics follow the reference kernels in
 * plugins/backends/common: element-wise results are computed in double and
 * rounded once, reductions accumulate in double.
 *
 * The launchers marked [bf16] also take NNOPT_BF16 (bf16 storage): values
 * are widened exactly, computed as in the f32 instance (window sums in f32)
 * and stored as the reference's bf16 path stores them, rounded to f32 and
 * then to bf16, to nearest even (cuda_bf16_round.h). */
#ifndef NNOPT_CUDA_KERNELS_H
#define NNOPT_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "nnopt/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes of a convolution, as the reference names them. */
typedef struct cuda_conv_geometry {
    int64_t n, c, h, w; /* input x */
    int64_t k, r, s;    /* filters w[K, C/groups, R, S] */
    int64_t p, q;       /* output y */
    int64_t stride_h, stride_w, pad_h, pad_w, groups;
} cuda_conv_geometry;

/* Sizes of a pooling: every (n, c) plane is pooled on its own. */
typedef struct cuda_pool_geometry {
    nnopt_pool_kind kind;
    int64_t planes, h, w, p, q;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} cuda_pool_geometry;

/* Direct convolutions (any groups; used for depthwise and as the fallback
 * when cuDNN has no algorithm). bias may be NULL. Forward: [bf16]. */
cudaError_t cuda_conv2d_forward_direct(cudaStream_t stream, nnopt_dtype dtype,
                                       const cuda_conv_geometry *g, const void *x, const void *w,
                                       const void *bias, void *y);
/* Backward data: dx = ..., or dx += ... with accumulate (conv2d_bwd_data_add). */
cudaError_t cuda_conv2d_backward_data_direct(cudaStream_t stream, nnopt_dtype dtype,
                                             const cuda_conv_geometry *g, const void *dy,
                                             const void *w, void *dx, int accumulate);
cudaError_t cuda_conv2d_backward_filter_direct(cudaStream_t stream, nnopt_dtype dtype,
                                               const cuda_conv_geometry *g, const void *x,
                                               const void *dy, void *dw);

/* y[r, c] = bias[c] for a row-major [rows, cols] y. [bf16] */
cudaError_t cuda_fill_rows(cudaStream_t stream, nnopt_dtype dtype, int64_t rows, int64_t cols,
                           const void *bias, void *y);
/* y[n, k, j] = bias[k] for y[batch, channels, inner]. [bf16] */
cudaError_t cuda_fill_channels(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *bias, void *y);
/* db[k] = sum over n and j of dy[(n * channels + k) * inner + j]. */
cudaError_t cuda_bias_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *dy, void *db);

/* Forward: [bf16]. */
cudaError_t cuda_pool2d_forward(cudaStream_t stream, nnopt_dtype dtype, const cuda_pool_geometry *g,
                                const void *x, void *y);
cudaError_t cuda_pool2d_backward(cudaStream_t stream, nnopt_dtype dtype,
                                 const cuda_pool_geometry *g, const void *x, const void *dy,
                                 void *dx);

/* Forward: [bf16]. */
cudaError_t cuda_act_forward(cudaStream_t stream, nnopt_dtype dtype, nnopt_act_kind kind,
                             int64_t count, const void *x, void *y);
cudaError_t cuda_act_backward(cudaStream_t stream, nnopt_dtype dtype, nnopt_act_kind kind,
                              int64_t count, const void *x, const void *dy, void *dx);

/* y = a + b (y may alias a or b) [bf16]; y = scale * x. */
cudaError_t cuda_add(cudaStream_t stream, nnopt_dtype dtype, int64_t count, const void *a,
                     const void *b, void *y);
cudaError_t cuda_scale(cudaStream_t stream, nnopt_dtype dtype, int64_t count, double scale,
                       const void *x, void *y);
/* The fused ops' relu epilogue, for x[batch, channels, inner]:
 * y = relu(x + bias[channel] + r), rounded to the dtype after each addition
 * (bias and r may be NULL; y may alias x). The relu is the reference's
 * v < 0 ? 0 : v: NaN and -0 pass through. add_relu is batch = channels = 1,
 * no bias. */
cudaError_t cuda_bias_add_relu(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *x, const void *bias,
                               const void *r, void *y);
/* out = mask > 0 ? x : 0 (a NaN or -0 mask gives +0; out may alias x and
 * mask): the gradient through a relu whose output is mask, and with
 * mask = x = out batchnorm_relu's relu (NaN -> 0, as the reference's). */
cudaError_t cuda_keep_where_positive(cudaStream_t stream, nnopt_dtype dtype, int64_t count,
                                     const void *mask, const void *x, void *out);
/* y = x converted from x_dtype to y_dtype (round to nearest; f64 -> bf16
 * rounds once, as nnopt_bf16_from_f64). [bf16] */
cudaError_t cuda_cast(cudaStream_t stream, nnopt_dtype x_dtype, nnopt_dtype y_dtype, int64_t count,
                      const void *x, void *y);

/* Optimizer steps, several parameter tensors in one launch (one block row
 * per tensor): what a training step's updates cost is then a few launches,
 * not one per tensor. Every entry has the batch's dtype and hyperparameters;
 * no entry's param or state may be another entry's tensor. */
#define CUDA_UPDATE_BATCH_MAX 64
typedef enum cuda_update_kind { CUDA_UPDATE_SGD, CUDA_UPDATE_ADAM } cuda_update_kind;
typedef struct cuda_update_entry {
    void *param;
    const void *grad;
    void *state0; /* sgd: velocity (NULL when momentum == 0); adam: m */
    void *state1; /* adam: v */
    int64_t count;
} cuda_update_entry;
typedef struct cuda_update_batch {
    int kind;  /* cuda_update_kind */
    int dtype; /* nnopt_dtype: F32 or F64 */
    int n;
    nnopt_sgd_params sgd;
    nnopt_adam_params adam;
    double step_size;        /* adam: lr / (1 - beta1^t) */
    double sqrt_correction2; /* adam: sqrt(1 - beta2^t) */
    int64_t largest;         /* the largest entry's count */
    cuda_update_entry entry[CUDA_UPDATE_BATCH_MAX];
} cuda_update_batch;
/* Runs every entry's update (batch->n >= 1). */
cudaError_t cuda_update_run(cudaStream_t stream, const cuda_update_batch *batch);

/* Forward: [bf16]. */
cudaError_t cuda_dropout_forward(cudaStream_t stream, nnopt_dtype dtype,
                                 const nnopt_dropout_params *dp, int64_t count, const void *x,
                                 void *y, void *mask);
cudaError_t cuda_dropout_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t count,
                                  const void *dy, const void *mask, void *dx);

/* Batch normalization over axis 1 of x[batch, channels, spatial]. Train and
 * infer: [bf16]. */
cudaError_t cuda_batchnorm_train(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                 int64_t channels, int64_t spatial, const nnopt_bn_params *bp,
                                 const void *x, const void *gamma, const void *beta,
                                 void *running_mean, void *running_var, void *y, void *save_mean,
                                 void *save_invstd);
cudaError_t cuda_batchnorm_infer(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                 int64_t channels, int64_t spatial, double eps, const void *x,
                                 const void *gamma, const void *beta, const void *running_mean,
                                 const void *running_var, void *y);
cudaError_t cuda_batchnorm_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                    int64_t channels, int64_t spatial, const void *x,
                                    const void *gamma, const void *dy, const void *save_mean,
                                    const void *save_invstd, void *dx, void *dgamma, void *dbeta);

/* Softmax cross-entropy, mean over the batch [bf16]. Either from logits
 * (softmax computed here, in double) or from log_probs = log softmax(logits / T)
 * already computed (by cuDNN); pass the other pointer NULL. labels (I32) or
 * soft_targets (dtype) gives the target. row_loss is scratch of `batch`
 * doubles; *bad_label (device int) is set to 1 + the first sample whose label
 * is out of range, and left alone otherwise. */
typedef struct cuda_xent_args {
    int64_t batch, classes;
    double temperature;
    double weight;  /* both results are multiplied by it */
    int accumulate; /* add into loss and dlogits instead of overwriting them */
    const void *logits, *log_probs;
    const int32_t *labels;
    const void *soft_targets;
    void *loss, *dlogits;
    double *row_loss;
    int *bad_label;
} cuda_xent_args;
cudaError_t cuda_softmax_xent(cudaStream_t stream, nnopt_dtype dtype, const cuda_xent_args *a);

#ifdef __cplusplus
}
#endif
#endif
