/* Dense layers through cuBLAS GEMMs (bf16, forward only: cublasGemmEx with
 * bf16 matrices and f32 compute). Tensors are row-major; cuBLAS is
 * column-major, so a row-major [R, C] matrix is read as its transpose:
 *   y[N,OUT]  = x W^T + b  ->  y^T  = W x^T        (gemm T,N: OUT x N x IN)
 *   dx[N,IN]  = dy W       ->  dx^T = W^T dy^T     (gemm N,N: IN x N x OUT)
 *   dW[OUT,IN] = dy^T x    ->  dW^T = x^T dy       (gemm N,T: IN x OUT x N) */
#include "cuda_internal.h"

typedef struct dense_sizes {
    int64_t batch, in_features, out_features;
} dense_sizes;

static nnopt_status dense_sizes_check(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                      const nnopt_tensor *w, const nnopt_tensor *y,
                                      const char *const roles[3], dense_sizes *sizes) {
    nnopt_status status = cuda_check_tensor(b, op, x, roles[0], -1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, w, roles[1], (int)x->dtype);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, y, roles[2], (int)x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 2 || w->ndim != 2) {
        cuda_error(b, "%s: %s and %s must be 2-D", nnopt_op_kind_name(op->kind), roles[0],
                   roles[1]);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *sizes = (dense_sizes){x->shape[0], x->shape[1], w->shape[0]};
    const int64_t w_shape[2] = {sizes->out_features, sizes->in_features};
    const int64_t y_shape[2] = {sizes->batch, sizes->out_features};
    status = cuda_check_shape(b, op, w, roles[1], 2, w_shape);
    if (status == NNOPT_OK) status = cuda_check_shape(b, op, y, roles[2], 2, y_shape);
    if (status == NNOPT_OK) status = cuda_check_int_range(b, op, sizes->batch, "the batch");
    if (status == NNOPT_OK) status = cuda_check_int_range(b, op, sizes->in_features, "IN");
    if (status == NNOPT_OK) status = cuda_check_int_range(b, op, sizes->out_features, "OUT");
    return status;
}

/* bf16 A, B and C, f32 arithmetic: the products of bf16 values are exact in
 * f32, cuBLAS sums them in f32 (beta C included) and rounds C once. Tensor
 * cores are allowed for this call: the handle's pedantic math, there to keep
 * f32 GEMMs off TF32, would hold bf16 to the slow kernels for no accuracy. */
static nnopt_status gemm_bf16(cuda_backend *b, const nnopt_op *op, cublasOperation_t op_a,
                              cublasOperation_t op_b, int64_t m, int64_t n, int64_t k,
                              const void *a, int64_t lda, const void *b_matrix, int64_t ldb,
                              int accumulate, void *c, int64_t ldc) {
    cublasMath_t mode;
    nnopt_status status = cublas_check(b, cublasGetMathMode(b->cublas, &mode), "cublasGetMathMode");
    if (status == NNOPT_OK)
        status =
            cublas_check(b, cublasSetMathMode(b->cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    if (status != NNOPT_OK) return status;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    status =
        cublas_check(b,
                     cublasGemmEx(b->cublas, op_a, op_b, (int)m, (int)n, (int)k, &one, a,
                                  CUDA_R_16BF, (int)lda, b_matrix, CUDA_R_16BF, (int)ldb, &beta, c,
                                  CUDA_R_16BF, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     nnopt_op_kind_name(op->kind));
    const nnopt_status restored =
        cublas_check(b, cublasSetMathMode(b->cublas, mode), "cublasSetMathMode");
    return status != NNOPT_OK ? status : restored;
}

/* C (m x n, column-major, leading dimension ldc) = op(A) op(B) + beta C. */
static nnopt_status gemm(cuda_backend *b, const nnopt_op *op, nnopt_dtype dtype,
                         cublasOperation_t op_a, cublasOperation_t op_b, int64_t m, int64_t n,
                         int64_t k, const void *a, int64_t lda, const void *b_matrix, int64_t ldb,
                         int accumulate, void *c, int64_t ldc) {
    if (m == 0 || n == 0) return NNOPT_OK;
    if (k == 0) { /* an empty sum: C = beta C */
        if (accumulate) return NNOPT_OK;
        const size_t bytes = (size_t)m * (size_t)n * nnopt_dtype_size(dtype);
        return cuda_check(b, cudaMemsetAsync(c, 0, bytes, b->stream), "cudaMemsetAsync");
    }
    cublasStatus_t status;
    if (dtype == NNOPT_BF16)
        return gemm_bf16(b, op, op_a, op_b, m, n, k, a, lda, b_matrix, ldb, accumulate, c, ldc);
    if (dtype == NNOPT_F32) {
        const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        status = cublasSgemm(b->cublas, op_a, op_b, (int)m, (int)n, (int)k, &one, a, (int)lda,
                             b_matrix, (int)ldb, &beta, c, (int)ldc);
    } else {
        const double one = 1.0, beta = accumulate ? 1.0 : 0.0;
        status = cublasDgemm(b->cublas, op_a, op_b, (int)m, (int)n, (int)k, &one, a, (int)lda,
                             b_matrix, (int)ldb, &beta, c, (int)ldc);
    }
    return cublas_check(b, status, nnopt_op_kind_name(op->kind));
}

nnopt_status cuda_dense(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *w = in[1], *bias = n_in == 3 ? in[2] : NULL;
    nnopt_tensor *y = out[0];
    dense_sizes d;
    status = dense_sizes_check(b, op, x, w, y, (const char *const[3]){"x", "w", "y"}, &d);
    if (status == NNOPT_OK && bias != NULL) {
        status = cuda_check_tensor(b, op, bias, "b", (int)x->dtype);
        if (status == NNOPT_OK) status = cuda_check_shape(b, op, bias, "b", 1, &d.out_features);
    }
    if (status != NNOPT_OK) return status;
    if (bias != NULL && d.batch * d.out_features > 0)
        status = cuda_check(
            b, cuda_fill_rows(b->stream, x->dtype, d.batch, d.out_features, bias->data, y->data),
            "dense bias");
    if (status != NNOPT_OK) return status;
    return gemm(b, op, x->dtype, CUBLAS_OP_T, CUBLAS_OP_N, d.out_features, d.batch, d.in_features,
                w->data, d.in_features, x->data, d.in_features, bias != NULL, y->data,
                d.out_features);
}

nnopt_status cuda_dense_bwd_data(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0], *w = in[1];
    nnopt_tensor *dx = out[0];
    dense_sizes d;
    status = dense_sizes_check(b, op, dx, w, dy, (const char *const[3]){"dx", "w", "dy"}, &d);
    if (status != NNOPT_OK) return status;
    return gemm(b, op, dx->dtype, CUBLAS_OP_N, CUBLAS_OP_N, d.in_features, d.batch, d.out_features,
                w->data, d.in_features, dy->data, d.out_features, 0, dx->data, d.in_features);
}

nnopt_status cuda_dense_bwd_weight(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *dy = in[1];
    nnopt_tensor *dw = out[0];
    dense_sizes d;
    status = dense_sizes_check(b, op, x, dw, dy, (const char *const[3]){"x", "dw", "dy"}, &d);
    if (status != NNOPT_OK) return status;
    return gemm(b, op, x->dtype, CUBLAS_OP_N, CUBLAS_OP_T, d.in_features, d.out_features, d.batch,
                x->data, d.in_features, dy->data, d.out_features, 0, dw->data, d.in_features);
}
