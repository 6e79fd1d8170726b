/* Private to the cuda backend: the per-instance context, error reporting,
 * device scratch memory, argument checks, and the entry point of every op
 * family (cuda_conv.c, cuda_dense.c, cuda_cudnn_ops.c, cuda_fused.c,
 * cuda_backend.c). */
#ifndef NNOPT_CUDA_INTERNAL_H
#define NNOPT_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "cuda_kernels.h"
#include "nnopt/nnopt.h"

/* A convolution's cuDNN algorithm, chosen once per shape. */
typedef struct cuda_conv_plan {
    int valid;
    nnopt_op_kind kind;
    nnopt_dtype dtype;
    int64_t dims[11]; /* n c h w k r s stride_h stride_w pad_h pad_w */
    int64_t groups;
    int algorithm;          /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    int math_type;          /* cudnnMathType_t the algorithm was chosen with */
    size_t workspace_bytes; /* what the algorithm needs */
    int use_direct;         /* cuDNN had no usable algorithm: own kernels */
} cuda_conv_plan;

#define CUDA_CONV_PLAN_SLOTS 64

/* A pinned buffer for uploads and the event of its last copy. */
typedef struct cuda_upload_slot {
    void *host;
    size_t bytes;
    cudaEvent_t copied; /* created on first use */
    int pending;        /* a copy from `host` may still be running */
} cuda_upload_slot;

#define CUDA_UPLOAD_SLOTS 2

/* Op sequences replayed as CUDA graphs (cuda_graph.c). */
#define CUDA_GRAPH_MAX_OP_TENSORS 8 /* an op with more runs outside graphs */
#define CUDA_GRAPH_ENTRIES 16       /* sequences kept */

/* A tensor as an op used it (zeroed first, so records compare with memcmp). */
typedef struct cuda_recorded_tensor {
    nnopt_tensor *tensor;
    void *data;
    int32_t dtype, ndim;
    int64_t shape[NNOPT_MAX_DIMS];
} cuda_recorded_tensor;

typedef struct cuda_recorded_op {
    nnopt_op op;
    int32_t n_in, n_out;
    cuda_recorded_tensor in[CUDA_GRAPH_MAX_OP_TENSORS], out[CUDA_GRAPH_MAX_OP_TENSORS];
} cuda_recorded_op;

typedef struct cuda_graph_entry {
    cuda_recorded_op *ops;
    int n_ops, capacity;
    cudaGraphExec_t exec; /* NULL until captured */
    int failed;           /* capturing it failed: its ops run directly */
    uint64_t last_used;
} cuda_graph_entry;

typedef struct cuda_graph_state {
    int mode; /* idle, recording (ops run and are recorded), matching (ops held back) */
    cuda_recorded_op *rec; /* recording: this segment's ops so far */
    int n_rec, rec_capacity, rec_failed;
    int candidate, position; /* matching: the entry, and how many of its ops matched */
    cuda_graph_entry entries[CUDA_GRAPH_ENTRIES];
    int n_entries;
    uint64_t clock;
    int capturing;
    uint64_t captures, failed_captures, replays;
} cuda_graph_state;

typedef struct cuda_backend {
    const nnopt_host_api *host;
    int device;
    cudaStream_t stream; /* every copy and kernel of this instance, in order */
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    int stream_ordered_alloc; /* cudaMallocAsync available */

    /* Settings (the plugin's schema). */
    int own_kernels;    /* kernels = own: no cuDNN for pooling/act/batchnorm/softmax */
    int own_depthwise;  /* depthwise = own */
    int find_conv_algo; /* conv_algo = find: benchmark (cudnnFind*Ex) instead of heuristics */
    int deterministic;  /* only deterministic cuDNN algorithms */
    int allow_tf32;     /* tensor-core TF32 for f32 conv and dense */
    int sync_each_op;   /* wait after every op, so device faults name their op */
    int use_graphs;     /* graphs = auto: repeated op sequences as CUDA graphs */
    size_t workspace_limit;

    /* Device workspace for cuDNN convolutions, grown on demand. */
    void *workspace;
    size_t workspace_bytes;
    /* Pinned host staging for tensor_read, and a pinned int for flags. */
    void *staging;
    size_t staging_bytes;
    int *host_flag;
    /* tensor_write's pinned buffers, used in turn: a write returns once its
     * bytes are staged, so the next batch's upload overlaps the work queued. */
    cuda_upload_slot upload[CUDA_UPLOAD_SLOTS];
    int next_upload;

    /* Optimizer updates queued for one launch: sent before anything else
     * touches the stream (cuda_flush_updates). */
    cuda_update_batch pending_updates;
    cuda_graph_state graphs;

    cuda_conv_plan plans[CUDA_CONV_PLAN_SLOTS];
    int next_plan_slot;

    char description[384];
} cuda_backend;

/* host->set_error (messages start with what failed, not "cuda backend"). */
void cuda_error(const cuda_backend *b, const char *fmt, ...) NNOPT_FMT_PRINTF(2, 3);
/* Report a failed CUDA/cuDNN/cuBLAS call (`what` names it) and map it to a
 * status; NNOPT_OK when the call succeeded. */
nnopt_status cuda_check(const cuda_backend *b, cudaError_t status, const char *what);
nnopt_status cudnn_check(const cuda_backend *b, cudnnStatus_t status, const char *what);
/* cuDNN 9 returns detailed codes within a category (NOT_SUPPORTED_SHAPE, 3002,
 * is a NOT_SUPPORTED, 3000): compare CUDNN_STATUS_CATEGORY(status) with the
 * category's code. cuDNN 8 has one code per category. */
#ifndef CUDNN_STATUS_CATEGORY
#define CUDNN_STATUS_CATEGORY(status) (status)
#endif
nnopt_status cublas_check(const cuda_backend *b, cublasStatus_t status, const char *what);

/* Stream-ordered device scratch (cudaMallocAsync, or cudaMalloc where the
 * device has no memory pools). Freed memory may still be in use by queued
 * work: both calls are ordered on b->stream. */
nnopt_status cuda_device_alloc(cuda_backend *b, size_t bytes, void **out);
void cuda_device_free(cuda_backend *b, void *ptr);
/* b->workspace holds at least `bytes`. */
nnopt_status cuda_workspace_reserve(cuda_backend *b, size_t bytes);

/* Argument checks (the core checks shapes; these keep a bad direct call from
 * becoming a device fault). */
nnopt_status cuda_check_counts(const cuda_backend *b, const nnopt_op *op, int n_in, int min_in,
                               int max_in, int n_out, int want_out);
/* Nonzero for the op kinds that run in bf16 (the forward ops). */
int cuda_bf16_op(nnopt_op_kind op);
/* Present, allocated, F32 or F64, or BF16 for an op that runs in bf16 (or
 * exactly `dtype` when dtype >= 0). */
nnopt_status cuda_check_tensor(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                               const char *role, int dtype);
/* Present, allocated, with like's dtype and shape. */
nnopt_status cuda_check_like(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role, const nnopt_tensor *like);
nnopt_status cuda_check_shape(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, int ndim, const int64_t *dims);
/* Two inputs a, b and one output y, all of a's dtype and shape (add, add_relu). */
nnopt_status cuda_check_elementwise_pair(cuda_backend *b, const nnopt_op *op,
                                         nnopt_tensor *const *in, int n_in,
                                         nnopt_tensor *const *out, int n_out);
/* cuDNN and cuBLAS take int sizes. */
nnopt_status cuda_check_int_range(const cuda_backend *b, const nnopt_op *op, int64_t value,
                                  const char *what);

cudnnDataType_t cuda_cudnn_dtype(nnopt_dtype dtype);
/* A packed NCHW descriptor; 2-D [N,C] is [N,C,1,1], anything else [1,1,1,numel]. */
nnopt_status cuda_tensor_descriptor(const cuda_backend *b, const nnopt_op *op,
                                    const nnopt_tensor *t, cudnnTensorDescriptor_t *out);
/* alpha = 1 and beta = 0 in the type cuDNN wants for dtype. */
const void *cuda_one(nnopt_dtype dtype);
const void *cuda_zero(nnopt_dtype dtype);

/* Runs op now (no graph): the backend's op table. */
nnopt_status cuda_execute_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out);
/* Launches the queued optimizer updates (cuda_update_batch). */
nnopt_status cuda_flush_updates(cuda_backend *b);

/* Graphs (cuda_graph.c). cuda_graph_run takes an op that may be held back
 * and replayed; cuda_graph_segment_end runs or launches what is held back and
 * the queued updates, at every point where the host reads, writes, allocates
 * or waits; cuda_graph_invalidate drops every captured graph (device memory
 * they use moved); cuda_graph_free at the instance's end. */
nnopt_status cuda_graph_run(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out);
nnopt_status cuda_graph_segment_end(cuda_backend *b);
void cuda_graph_invalidate(cuda_backend *b);
void cuda_graph_free(cuda_backend *b);

typedef nnopt_status (*cuda_op_fn)(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out);

nnopt_status cuda_conv2d(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out);
nnopt_status cuda_conv2d_bwd_data(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_conv2d_bwd_filter(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out);
/* The passes of the fused ops (cuda_fused.c), with conv2d's and
 * conv2d_bwd_data's checks, plans and kernel choice. Forward: y = conv(x, w),
 * plus the bias (may be NULL) where the direct kernels run (*bias_added = 1);
 * where cuDNN runs, the bias is left to the caller's epilogue
 * (*bias_added = 0), which saves cuDNN's separate bias pass. Backward data:
 * dx += conv2d_bwd_data(dy, w) (cuDNN with beta = 1, or the direct kernel
 * accumulating). */
nnopt_status cuda_conv2d_forward_deferred_bias(cuda_backend *b, const nnopt_op *op,
                                               const nnopt_tensor *x, const nnopt_tensor *w,
                                               const nnopt_tensor *bias, nnopt_tensor *y,
                                               int *bias_added);
nnopt_status cuda_conv2d_bwd_data_accumulate(cuda_backend *b, const nnopt_op *op,
                                             const nnopt_tensor *dy, const nnopt_tensor *w,
                                             nnopt_tensor *dx);

nnopt_status cuda_dense(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out);
nnopt_status cuda_dense_bwd_data(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_dense_bwd_weight(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out);

nnopt_status cuda_pool2d(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out);
nnopt_status cuda_pool2d_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out);
nnopt_status cuda_act(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out);
nnopt_status cuda_act_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out);
nnopt_status cuda_batchnorm(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out);
nnopt_status cuda_batchnorm_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_softmax_xent_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out);

/* The fused ops (cuda_fused.c; f32 and f64): conv2d_relu and conv2d_add_relu;
 * conv2d_bwd_data_add and conv2d_bwd_data_add_masked; add_relu;
 * batchnorm_relu and batchnorm_add_relu; batchnorm_relu_bwd. */
nnopt_status cuda_fused_conv2d_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_fused_conv2d_bwd_data_add(cuda_backend *b, const nnopt_op *op,
                                            nnopt_tensor *const *in, int n_in,
                                            nnopt_tensor *const *out, int n_out);
nnopt_status cuda_fused_add_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_fused_batchnorm_relu(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                       int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_fused_batchnorm_relu_bwd(cuda_backend *b, const nnopt_op *op,
                                           nnopt_tensor *const *in, int n_in,
                                           nnopt_tensor *const *out, int n_out);

/* Compiled mode (cuda_program.c; generation and NVRTC in cuda_nvrtc.h).
 * run runs the steps not generated, each at once (never held back for a
 * graph): the program's own kernels follow them on the stream. */
typedef nnopt_status (*cuda_run_fn)(void *backend, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status cuda_program_compile(cuda_backend *b, const nnopt_program *prog,
                                  const nnopt_program_options *options, void **compiled,
                                  nnopt_program_info *info);
nnopt_status cuda_program_run(cuda_backend *b, void *compiled, cuda_run_fn run, const nnopt_op *ops,
                              nnopt_tensor *const *tensors);
void cuda_program_free(cuda_backend *b, void *compiled);

#endif
