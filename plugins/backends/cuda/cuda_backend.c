/* The `cuda` backend: tensors in device memory, ops on one CUDA stream per
 * instance. Convolutions, pooling, activations, batch norm and softmax go
 * through cuDNN, dense layers through cuBLAS, everything else through the
 * plugin's own kernels (cuda_kernels.cu). f32 and f64 throughout; bf16
 * (storage, f32 arithmetic) for the forward ops (cuda_bf16_op).
 *
 * This file: the plugin descriptor and settings, instance setup (which is
 * where a machine without a GPU or driver is reported), device memory and
 * host<->device copies through pinned staging, the element-wise ops, and the
 * op dispatch. */
#include "cuda_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAGING_CHUNK_BYTES ((size_t)16 << 20) /* a pinned staging buffer, at most */
#define MIN_ALLOCATION_BYTES 256

/* ---- errors ---- */

void cuda_error(const cuda_backend *b, const char *fmt, ...) {
    if (b == NULL || b->host == NULL || b->host->set_error == NULL) return;
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    b->host->set_error("%s", message);
}

nnopt_status cuda_check(const cuda_backend *b, cudaError_t status, const char *what) {
    if (status == cudaSuccess) return NNOPT_OK;
    cudaGetLastError(); /* clear a non-sticky error so later calls start clean */
    cuda_error(b, "%s: %s (%s)", what, cudaGetErrorString(status), cudaGetErrorName(status));
    return status == cudaErrorMemoryAllocation ? NNOPT_STATUS_OUT_OF_MEMORY : NNOPT_STATUS_DEVICE;
}

nnopt_status cudnn_check(const cuda_backend *b, cudnnStatus_t status, const char *what) {
    if (status == CUDNN_STATUS_SUCCESS) return NNOPT_OK;
    cuda_error(b, "%s: %s", what, cudnnGetErrorString(status));
#if CUDNN_MAJOR >= 9
    if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
        status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        return NNOPT_STATUS_OUT_OF_MEMORY;
#else
    if (status == CUDNN_STATUS_ALLOC_FAILED) return NNOPT_STATUS_OUT_OF_MEMORY;
#endif
    const int category = (int)CUDNN_STATUS_CATEGORY(status);
    if (category == CUDNN_STATUS_NOT_SUPPORTED) return NNOPT_STATUS_UNSUPPORTED;
    if (category == CUDNN_STATUS_BAD_PARAM) return NNOPT_STATUS_INVALID_ARGUMENT;
    return NNOPT_STATUS_DEVICE;
}

nnopt_status cublas_check(const cuda_backend *b, cublasStatus_t status, const char *what) {
    if (status == CUBLAS_STATUS_SUCCESS) return NNOPT_OK;
    cuda_error(b, "%s: %s", what, cublasGetStatusString(status));
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) return NNOPT_STATUS_UNSUPPORTED;
    if (status == CUBLAS_STATUS_ALLOC_FAILED) return NNOPT_STATUS_OUT_OF_MEMORY;
    if (status == CUBLAS_STATUS_INVALID_VALUE) return NNOPT_STATUS_INVALID_ARGUMENT;
    return NNOPT_STATUS_DEVICE;
}

/* ---- argument checks ---- */

nnopt_status cuda_check_counts(const cuda_backend *b, const nnopt_op *op, int n_in, int min_in,
                               int max_in, int n_out, int want_out) {
    const char *name = nnopt_op_kind_name(op->kind);
    if (n_in < min_in || n_in > max_in) {
        if (min_in == max_in)
            cuda_error(b, "%s: expected %d inputs, got %d", name, min_in, n_in);
        else
            cuda_error(b, "%s: expected %d to %d inputs, got %d", name, min_in, max_in, n_in);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (n_out != want_out) {
        cuda_error(b, "%s: expected %d outputs, got %d", name, want_out, n_out);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

int cuda_bf16_op(nnopt_op_kind op) {
    /* The forward ops, as the reference runs them in bf16: inference. */
    switch (op) {
    case NNOPT_OP_CONV2D:
    case NNOPT_OP_DENSE:
    case NNOPT_OP_POOL2D:
    case NNOPT_OP_ACT:
    case NNOPT_OP_ADD:
    case NNOPT_OP_CAST:
    case NNOPT_OP_BATCHNORM:
    case NNOPT_OP_DROPOUT:
    case NNOPT_OP_SOFTMAX_XENT:
        return 1;
    default:
        return 0;
    }
}

nnopt_status cuda_check_tensor(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                               const char *role, int dtype) {
    const char *name = nnopt_op_kind_name(op->kind);
    if (t == NULL || t->data == NULL) {
        cuda_error(b, "%s: %s tensor is %s", name, role, t == NULL ? "missing" : "not allocated");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (t->ndim < 0 || t->ndim > NNOPT_MAX_DIMS) {
        cuda_error(b, "%s: %s has %d dimensions", name, role, (int)t->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) {
            cuda_error(b, "%s: %s has a negative dimension", name, role);
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
    }
    if (dtype >= 0 && t->dtype != (nnopt_dtype)dtype) {
        cuda_error(b, "%s: %s is %s, expected %s", name, role, nnopt_dtype_name(t->dtype),
                   nnopt_dtype_name((nnopt_dtype)dtype));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int bf16_ok = t->dtype == NNOPT_BF16 && cuda_bf16_op(op->kind);
    if (dtype < 0 && t->dtype != NNOPT_F32 && t->dtype != NNOPT_F64 && !bf16_ok) {
        cuda_error(b, "%s: %s dtype %s is not supported by the cuda backend (f32, f64%s)", name,
                   role, nnopt_dtype_name(t->dtype),
                   t->dtype == NNOPT_BF16 ? "; bf16 runs forward ops only" : "");
        return NNOPT_STATUS_UNSUPPORTED;
    }
    return NNOPT_OK;
}

nnopt_status cuda_check_shape(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, int ndim, const int64_t *dims) {
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == dims[i];
    if (same) return NNOPT_OK;
    char expected[96] = "", actual[96] = "";
    size_t used = 0;
    for (int i = 0; i < ndim && used < sizeof expected; i++)
        used += (size_t)snprintf(expected + used, sizeof expected - used, "%s%lld", i ? "," : "",
                                 (long long)dims[i]);
    used = 0;
    for (int i = 0; i < t->ndim && used < sizeof actual; i++)
        used += (size_t)snprintf(actual + used, sizeof actual - used, "%s%lld", i ? "," : "",
                                 (long long)t->shape[i]);
    cuda_error(b, "%s: %s has shape [%s], expected [%s]", nnopt_op_kind_name(op->kind), role,
               actual, expected);
    return NNOPT_STATUS_INVALID_ARGUMENT;
}

nnopt_status cuda_check_like(const cuda_backend *b, const nnopt_op *op, const nnopt_tensor *t,
                             const char *role, const nnopt_tensor *like) {
    nnopt_status status = cuda_check_tensor(b, op, t, role, (int)like->dtype);
    if (status == NNOPT_OK) status = cuda_check_shape(b, op, t, role, like->ndim, like->shape);
    return status;
}

nnopt_status cuda_check_int_range(const cuda_backend *b, const nnopt_op *op, int64_t value,
                                  const char *what) {
    if (value >= 0 && value <= 0x7fffffff) return NNOPT_OK;
    cuda_error(b, "%s: %s (%lld) does not fit cuDNN/cuBLAS's int sizes",
               nnopt_op_kind_name(op->kind), what, (long long)value);
    return NNOPT_STATUS_UNSUPPORTED;
}

/* ---- cuDNN helpers ---- */

cudnnDataType_t cuda_cudnn_dtype(nnopt_dtype dtype) {
    return dtype == NNOPT_F64    ? CUDNN_DATA_DOUBLE
           : dtype == NNOPT_BF16 ? CUDNN_DATA_BFLOAT16
                                 : CUDNN_DATA_FLOAT;
}

/* bf16 takes float scaling factors: its cuDNN calls compute in f32. */
const void *cuda_one(nnopt_dtype dtype) {
    static const float one_f32 = 1.0f;
    static const double one_f64 = 1.0;
    return dtype == NNOPT_F64 ? (const void *)&one_f64 : (const void *)&one_f32;
}

const void *cuda_zero(nnopt_dtype dtype) {
    static const float zero_f32 = 0.0f;
    static const double zero_f64 = 0.0;
    return dtype == NNOPT_F64 ? (const void *)&zero_f64 : (const void *)&zero_f32;
}

nnopt_status cuda_tensor_descriptor(const cuda_backend *b, const nnopt_op *op,
                                    const nnopt_tensor *t, cudnnTensorDescriptor_t *out) {
    int64_t dims[4] = {1, 1, 1, nnopt_tensor_numel(t)};
    if (t->ndim == 4) {
        for (int i = 0; i < 4; i++) dims[i] = t->shape[i];
    } else if (t->ndim == 2) {
        dims[0] = t->shape[0], dims[1] = t->shape[1], dims[3] = 1;
    }
    for (int i = 0; i < 4; i++) {
        nnopt_status status = cuda_check_int_range(b, op, dims[i], "a tensor dimension");
        if (status != NNOPT_OK) return status;
    }
    nnopt_status status =
        cudnn_check(b, cudnnCreateTensorDescriptor(out), "cudnnCreateTensorDescriptor");
    if (status != NNOPT_OK) return status;
    status = cudnn_check(b,
                         cudnnSetTensor4dDescriptor(*out, CUDNN_TENSOR_NCHW,
                                                    cuda_cudnn_dtype(t->dtype), (int)dims[0],
                                                    (int)dims[1], (int)dims[2], (int)dims[3]),
                         "cudnnSetTensor4dDescriptor");
    if (status != NNOPT_OK) {
        cudnnDestroyTensorDescriptor(*out);
        *out = NULL;
    }
    return status;
}

/* ---- device memory ---- */

nnopt_status cuda_device_alloc(cuda_backend *b, size_t bytes, void **out) {
    *out = NULL;
    if (bytes < MIN_ALLOCATION_BYTES) bytes = MIN_ALLOCATION_BYTES;
    cudaError_t status =
        b->stream_ordered_alloc ? cudaMallocAsync(out, bytes, b->stream) : cudaMalloc(out, bytes);
    if (status != cudaSuccess) {
        cudaGetLastError();
        cuda_error(b, "out of device memory allocating %zu bytes (%s)", bytes,
                   cudaGetErrorString(status));
        *out = NULL;
        return status == cudaErrorMemoryAllocation ? NNOPT_STATUS_OUT_OF_MEMORY
                                                   : NNOPT_STATUS_DEVICE;
    }
    return NNOPT_OK;
}

void cuda_device_free(cuda_backend *b, void *ptr) {
    if (ptr == NULL) return;
    if (b->stream_ordered_alloc)
        cudaFreeAsync(ptr, b->stream);
    else
        cudaFree(ptr);
}

nnopt_status cuda_workspace_reserve(cuda_backend *b, size_t bytes) {
    if (bytes <= b->workspace_bytes) return NNOPT_OK;
    if (b->graphs.capturing) {
        /* A graph would keep the address of memory freed here: the capture
         * fails and the ops run directly, growing it then. */
        cuda_error(b, "convolution workspace growth inside a graph capture");
        return NNOPT_STATUS_UNSUPPORTED;
    }
    cuda_graph_invalidate(b);
    cuda_device_free(b, b->workspace);
    b->workspace = NULL;
    b->workspace_bytes = 0;
    nnopt_status status = cuda_device_alloc(b, bytes, &b->workspace);
    if (status == NNOPT_OK) b->workspace_bytes = bytes;
    return status;
}

/* Byte size of t, or 0 with *ok cleared for a bad shape or size overflow. */
static size_t tensor_bytes(const nnopt_tensor *t, int *ok) {
    *ok = 0;
    const size_t element_size = nnopt_dtype_size(t->dtype);
    if (element_size == 0 || t->ndim < 0 || t->ndim > NNOPT_MAX_DIMS) return 0;
    size_t bytes = element_size;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) return 0;
        const size_t dim = (size_t)t->shape[i];
        if (dim != 0 && bytes > SIZE_MAX / dim) return 0;
        bytes *= dim;
    }
    *ok = 1;
    return bytes;
}

/* Makes this instance's device current for the calling thread. */
static nnopt_status activate(cuda_backend *b) {
    return cuda_check(b, cudaSetDevice(b->device), "cudaSetDevice");
}

nnopt_status cuda_flush_updates(cuda_backend *b) {
    cuda_update_batch *batch = &b->pending_updates;
    if (batch->n == 0) return NNOPT_OK;
    const cudaError_t launch = cuda_update_run(b->stream, batch);
    const char *what = batch->kind == CUDA_UPDATE_SGD ? "sgd_update" : "adam_update";
    batch->n = 0;
    batch->largest = 0;
    return cuda_check(b, launch, what);
}

/* The start of every entry point that queues work or reads results: the
 * device current, and the ops held back for a graph and the optimizer
 * updates queued so far in the stream before what follows. */
static nnopt_status enter(cuda_backend *b) {
    nnopt_status status = activate(b);
    if (status != NNOPT_OK) return status;
    return b->use_graphs ? cuda_graph_segment_end(b) : cuda_flush_updates(b);
}

static nnopt_status cuda_tensor_alloc(void *ctx, nnopt_tensor *t) {
    cuda_backend *b = ctx;
    if (t == NULL || t->data != NULL) {
        cuda_error(b, "tensor_alloc: %s",
                   t == NULL ? "NULL tensor" : "tensor is already allocated");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    int ok;
    const size_t bytes = tensor_bytes(t, &ok);
    if (!ok) {
        cuda_error(b, "tensor_alloc: invalid %s tensor shape (ndim %d)", nnopt_dtype_name(t->dtype),
                   (int)t->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_status status = enter(b);
    void *data = NULL;
    if (status == NNOPT_OK) status = cuda_device_alloc(b, bytes, &data);
    /* Zeroed, as the CPU backends' tensors are. */
    if (status == NNOPT_OK && bytes > 0)
        status = cuda_check(b, cudaMemsetAsync(data, 0, bytes, b->stream), "cudaMemsetAsync");
    if (status != NNOPT_OK) {
        cuda_device_free(b, data);
        return status;
    }
    t->data = data;
    return NNOPT_OK;
}

static void cuda_tensor_free(void *ctx, nnopt_tensor *t) {
    cuda_backend *b = ctx;
    if (t == NULL || t->data == NULL) return;
    enter(b);
    cuda_device_free(b, t->data);
    t->data = NULL;
}

static nnopt_status check_copy_range(cuda_backend *b, const nnopt_tensor *t, size_t offset,
                                     size_t nbytes, const void *host_ptr, const char *what) {
    int ok = t != NULL && t->data != NULL && (host_ptr != NULL || nbytes == 0);
    const size_t bytes = ok ? tensor_bytes(t, &ok) : 0;
    if (!ok || offset > bytes || nbytes > bytes - offset) {
        cuda_error(b, "%s of %zu bytes at offset %zu is out of bounds or on an unallocated tensor",
                   what, nbytes, offset);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* *host holds min(wanted, STAGING_CHUNK_BYTES) bytes of pinned memory
 * (*bytes of them); what it held is freed when it grows. */
static nnopt_status reserve_pinned(cuda_backend *b, void **host, size_t *bytes, size_t wanted) {
    if (wanted > STAGING_CHUNK_BYTES) wanted = STAGING_CHUNK_BYTES;
    if (wanted <= *bytes) return NNOPT_OK;
    if (*host != NULL) cudaFreeHost(*host);
    *host = NULL;
    *bytes = 0;
    size_t size = 64 << 10;
    while (size < wanted) size *= 2;
    nnopt_status status = cuda_check(b, cudaMallocHost(host, size), "cudaMallocHost");
    if (status == NNOPT_OK) *bytes = size;
    return status;
}

/* slot holds min(wanted, STAGING_CHUNK_BYTES) bytes that no copy is still
 * reading. */
static nnopt_status upload_slot_ready(cuda_backend *b, cuda_upload_slot *slot, size_t wanted) {
    nnopt_status status = NNOPT_OK;
    if (slot->copied == NULL)
        status = cuda_check(b, cudaEventCreateWithFlags(&slot->copied, cudaEventDisableTiming),
                            "tensor_write: cudaEventCreate");
    if (status == NNOPT_OK && slot->pending)
        status = cuda_check(b, cudaEventSynchronize(slot->copied), "tensor_write");
    if (status != NNOPT_OK) return status;
    slot->pending = 0;
    return reserve_pinned(b, &slot->host, &slot->bytes, wanted);
}

static nnopt_status cuda_tensor_write(void *ctx, nnopt_tensor *t, size_t offset, const void *src,
                                      size_t nbytes) {
    cuda_backend *b = ctx;
    nnopt_status status = check_copy_range(b, t, offset, nbytes, src, "write");
    if (status == NNOPT_OK) status = enter(b);
    /* Staged chunk by chunk into the slots in turn; the copies are queued on
     * the stream (after everything that reads t) and not waited for. */
    for (size_t done = 0; status == NNOPT_OK && done < nbytes;) {
        cuda_upload_slot *slot = &b->upload[b->next_upload];
        b->next_upload = (b->next_upload + 1) % CUDA_UPLOAD_SLOTS;
        status = upload_slot_ready(b, slot, nbytes - done);
        if (status != NNOPT_OK) break;
        const size_t chunk = nbytes - done < slot->bytes ? nbytes - done : slot->bytes;
        memcpy(slot->host, (const unsigned char *)src + done, chunk);
        status = cuda_check(b,
                            cudaMemcpyAsync((unsigned char *)t->data + offset + done, slot->host,
                                            chunk, cudaMemcpyHostToDevice, b->stream),
                            "tensor_write: cudaMemcpyAsync");
        const int queued = status == NNOPT_OK;
        if (queued)
            status = cuda_check(b, cudaEventRecord(slot->copied, b->stream),
                                "tensor_write: cudaEventRecord");
        /* Without its event the slot is safe to reuse only once the copy ran. */
        if (queued && status != NNOPT_OK) cudaStreamSynchronize(b->stream);
        slot->pending = status == NNOPT_OK;
        done += chunk;
    }
    return status;
}

static nnopt_status cuda_tensor_read(void *ctx, const nnopt_tensor *t, size_t offset, void *dst,
                                     size_t nbytes) {
    cuda_backend *b = ctx;
    nnopt_status status = check_copy_range(b, t, offset, nbytes, dst, "read");
    if (status == NNOPT_OK) status = enter(b);
    if (status == NNOPT_OK) status = reserve_pinned(b, &b->staging, &b->staging_bytes, nbytes);
    for (size_t done = 0; status == NNOPT_OK && done < nbytes;) {
        const size_t chunk = nbytes - done < b->staging_bytes ? nbytes - done : b->staging_bytes;
        status =
            cuda_check(b,
                       cudaMemcpyAsync(b->staging, (const unsigned char *)t->data + offset + done,
                                       chunk, cudaMemcpyDeviceToHost, b->stream),
                       "tensor_read: cudaMemcpyAsync");
        if (status == NNOPT_OK)
            status = cuda_check(b, cudaStreamSynchronize(b->stream), "tensor_read");
        if (status == NNOPT_OK) memcpy((unsigned char *)dst + done, b->staging, chunk);
        done += chunk;
    }
    return status;
}

static nnopt_status cuda_tensor_zero(void *ctx, nnopt_tensor *t) {
    cuda_backend *b = ctx;
    int ok = t != NULL && t->data != NULL;
    const size_t bytes = ok ? tensor_bytes(t, &ok) : 0;
    if (!ok) {
        cuda_error(b, "zero: NULL, unallocated or malformed tensor");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_status status = enter(b);
    if (status == NNOPT_OK && bytes > 0)
        status = cuda_check(b, cudaMemsetAsync(t->data, 0, bytes, b->stream), "tensor_zero");
    return status;
}

/* ---- element-wise ops, optimizers, dropout, bias gradient ---- */

static nnopt_status launched(cuda_backend *b, const nnopt_op *op, cudaError_t status) {
    return cuda_check(b, status, nnopt_op_kind_name(op->kind));
}

static nnopt_status cuda_bias_bwd(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0];
    nnopt_tensor *db = out[0];
    status = cuda_check_tensor(b, op, dy, "dy", -1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, db, "db", (int)dy->dtype);
    if (status != NNOPT_OK) return status;
    if (dy->ndim < 2) {
        cuda_error(b, "bias_bwd: dy must have at least 2 dimensions [N,K,...]");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    status = cuda_check_shape(b, op, db, "db", 1, &dy->shape[1]);
    if (status != NNOPT_OK || dy->shape[1] == 0) return status;
    int64_t inner = 1;
    for (int i = 2; i < dy->ndim; i++) inner *= dy->shape[i];
    return launched(b, op,
                    cuda_bias_backward(b->stream, dy->dtype, dy->shape[0], dy->shape[1], inner,
                                       dy->data, db->data));
}

nnopt_status cuda_check_elementwise_pair(cuda_backend *b, const nnopt_op *op,
                                         nnopt_tensor *const *in, int n_in,
                                         nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, in[0], "a", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, in[1], "b", in[0]);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, out[0], "y", in[0]);
    return status;
}

static nnopt_status cuda_add_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_elementwise_pair(b, op, in, n_in, out, n_out);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *a = in[0], *b_in = in[1];
    const int64_t count = nnopt_tensor_numel(a);
    if (count == 0) return NNOPT_OK;
    return launched(b, op, cuda_add(b->stream, a->dtype, count, a->data, b_in->data, out[0]->data));
}

static nnopt_status cuda_cast_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, y, "y", -1);
    if (status == NNOPT_OK) status = cuda_check_shape(b, op, y, "y", x->ndim, x->shape);
    if (status != NNOPT_OK) return status;
    const int64_t count = nnopt_tensor_numel(x);
    if (count == 0 || (x->dtype == y->dtype && x->data == y->data)) return NNOPT_OK;
    if (x->dtype == y->dtype)
        return launched(b, op,
                        cudaMemcpyAsync(y->data, x->data, nnopt_tensor_nbytes(x),
                                        cudaMemcpyDeviceToDevice, b->stream));
    return launched(b, op, cuda_cast(b->stream, x->dtype, y->dtype, count, x->data, y->data));
}

/* Same kind, dtype and hyperparameters: one launch can run both. */
static int same_update(const cuda_update_batch *a, const cuda_update_batch *b) {
    if (a->kind != b->kind || a->dtype != b->dtype) return 0;
    if (a->kind == CUDA_UPDATE_SGD)
        return a->sgd.lr == b->sgd.lr && a->sgd.momentum == b->sgd.momentum &&
               a->sgd.weight_decay == b->sgd.weight_decay && a->sgd.nesterov == b->sgd.nesterov;
    return a->adam.lr == b->adam.lr && a->adam.beta1 == b->adam.beta1 &&
           a->adam.beta2 == b->adam.beta2 && a->adam.eps == b->adam.eps &&
           a->adam.weight_decay == b->adam.weight_decay && a->adam.step == b->adam.step;
}

static int ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
    if (a == NULL || b == NULL) return 0;
    const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + b_bytes && y < x + a_bytes;
}

/* Nonzero when entry e writes a tensor that f touches, or the other way
 * round (the values would race inside one launch). */
static int entries_conflict(const cuda_update_entry *e, const cuda_update_entry *f,
                            size_t value_size) {
    const size_t e_bytes = (size_t)e->count * value_size, f_bytes = (size_t)f->count * value_size;
    const void *written_e[3] = {e->param, e->state0, e->state1};
    const void *written_f[3] = {f->param, f->state0, f->state1};
    const void *all_e[4] = {e->param, e->grad, e->state0, e->state1};
    const void *all_f[4] = {f->param, f->grad, f->state0, f->state1};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            if (ranges_overlap(written_e[i], e_bytes, all_f[j], f_bytes) ||
                ranges_overlap(written_f[i], f_bytes, all_e[j], e_bytes))
                return 1;
    return 0;
}

/* Adds wanted's one entry to the queued updates, sending those first when
 * they cannot share its launch. */
static nnopt_status queue_update(cuda_backend *b, const cuda_update_batch *wanted) {
    const cuda_update_entry *entry = &wanted->entry[0];
    if (entry->count == 0) return NNOPT_OK;
    cuda_update_batch *batch = &b->pending_updates;
    int fits = batch->n < CUDA_UPDATE_BATCH_MAX && same_update(batch, wanted);
    const size_t value_size = nnopt_dtype_size((nnopt_dtype)wanted->dtype);
    for (int i = 0; fits && i < batch->n; i++)
        fits = !entries_conflict(&batch->entry[i], entry, value_size);
    if (!fits) {
        nnopt_status status = cuda_flush_updates(b);
        if (status != NNOPT_OK) return status;
    }
    if (batch->n == 0) {
        *batch = *wanted;
        batch->n = 0;
        batch->largest = 0;
    }
    batch->entry[batch->n++] = *entry;
    if (entry->count > batch->largest) batch->largest = entry->count;
    return NNOPT_OK;
}

static nnopt_status cuda_sgd_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_sgd_params *sp = &op->p.sgd;
    const int needs_velocity = sp->momentum != 0.0;
    nnopt_status status = cuda_check_counts(b, op, n_in, needs_velocity ? 3 : 2, 3, n_out, 0);
    if (status != NNOPT_OK) return status;
    (void)out;
    nnopt_tensor *param = in[0], *grad = in[1], *velocity = needs_velocity ? in[2] : NULL;
    status = cuda_check_tensor(b, op, param, "param", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, grad, "grad", param);
    if (status == NNOPT_OK && velocity != NULL)
        status = cuda_check_like(b, op, velocity, "velocity", param);
    if (status != NNOPT_OK) return status;
    cuda_update_batch wanted = {.kind = CUDA_UPDATE_SGD, .dtype = (int)param->dtype, .sgd = *sp};
    wanted.entry[0] = (cuda_update_entry){param->data, grad->data, velocity ? velocity->data : NULL,
                                          NULL, nnopt_tensor_numel(param)};
    return queue_update(b, &wanted);
}

static nnopt_status cuda_adam_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_adam_params *ap = &op->p.adam;
    nnopt_status status = cuda_check_counts(b, op, n_in, 4, 4, n_out, 0);
    if (status != NNOPT_OK) return status;
    (void)out;
    if (ap->step < 1 || !(ap->beta1 >= 0 && ap->beta1 < 1) || !(ap->beta2 >= 0 && ap->beta2 < 1)) {
        cuda_error(b, "adam_update: need step >= 1 and betas in [0, 1) (step %lld, betas %g %g)",
                   (long long)ap->step, ap->beta1, ap->beta2);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_tensor *param = in[0], *grad = in[1], *m = in[2], *v = in[3];
    status = cuda_check_tensor(b, op, param, "param", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, grad, "grad", param);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, m, "m", param);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, v, "v", param);
    if (status != NNOPT_OK) return status;
    /* The bias corrections, in double on the host exactly as the reference. */
    cuda_update_batch wanted = {.kind = CUDA_UPDATE_ADAM, .dtype = (int)param->dtype, .adam = *ap};
    wanted.step_size = ap->lr / (1.0 - pow(ap->beta1, (double)ap->step));
    wanted.sqrt_correction2 = sqrt(1.0 - pow(ap->beta2, (double)ap->step));
    wanted.entry[0] =
        (cuda_update_entry){param->data, grad->data, m->data, v->data, nnopt_tensor_numel(param)};
    return queue_update(b, &wanted);
}

static nnopt_status cuda_dropout_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_dropout_params *dp = &op->p.dropout;
    nnopt_status status = cuda_check_counts(b, op, n_in, 1, 1, n_out, 2);
    if (status != NNOPT_OK) return status;
    if (!(dp->p >= 0 && dp->p < 1)) {
        cuda_error(b, "dropout: p must be in [0, 1) (got %g)", dp->p);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0], *mask = out[1];
    status = cuda_check_tensor(b, op, x, "x", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, y, "y", x);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, mask, "mask", x);
    if (status != NNOPT_OK) return status;
    const int64_t count = nnopt_tensor_numel(x);
    if (count == 0) return NNOPT_OK;
    return launched(
        b, op, cuda_dropout_forward(b->stream, x->dtype, dp, count, x->data, y->data, mask->data));
}

static nnopt_status cuda_dropout_bwd_op(cuda_backend *b, const nnopt_op *op,
                                        nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                        int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0], *mask = in[1];
    nnopt_tensor *dx = out[0];
    status = cuda_check_tensor(b, op, dy, "dy", -1);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, mask, "mask", dy);
    if (status == NNOPT_OK) status = cuda_check_like(b, op, dx, "dx", dy);
    if (status != NNOPT_OK) return status;
    const int64_t count = nnopt_tensor_numel(dy);
    if (count == 0) return NNOPT_OK;
    return launched(
        b, op, cuda_dropout_backward(b->stream, dy->dtype, count, dy->data, mask->data, dx->data));
}

/* ---- dispatch ---- */

static const cuda_op_fn cuda_ops[NNOPT_OP_KIND_COUNT] = {
    [NNOPT_OP_CONV2D] = cuda_conv2d,
    [NNOPT_OP_CONV2D_BWD_DATA] = cuda_conv2d_bwd_data,
    [NNOPT_OP_CONV2D_BWD_FILTER] = cuda_conv2d_bwd_filter,
    [NNOPT_OP_DENSE] = cuda_dense,
    [NNOPT_OP_DENSE_BWD_DATA] = cuda_dense_bwd_data,
    [NNOPT_OP_DENSE_BWD_WEIGHT] = cuda_dense_bwd_weight,
    [NNOPT_OP_BIAS_BWD] = cuda_bias_bwd,
    [NNOPT_OP_POOL2D] = cuda_pool2d,
    [NNOPT_OP_POOL2D_BWD] = cuda_pool2d_bwd,
    [NNOPT_OP_ACT] = cuda_act,
    [NNOPT_OP_ACT_BWD] = cuda_act_bwd,
    [NNOPT_OP_ADD] = cuda_add_op,
    [NNOPT_OP_SOFTMAX_XENT] = cuda_softmax_xent_op,
    [NNOPT_OP_SGD_UPDATE] = cuda_sgd_op,
    [NNOPT_OP_ADAM_UPDATE] = cuda_adam_op,
    [NNOPT_OP_CAST] = cuda_cast_op,
    [NNOPT_OP_BATCHNORM] = cuda_batchnorm,
    [NNOPT_OP_BATCHNORM_BWD] = cuda_batchnorm_bwd,
    [NNOPT_OP_DROPOUT] = cuda_dropout_op,
    [NNOPT_OP_DROPOUT_BWD] = cuda_dropout_bwd_op,
    /* The fused kinds (cuda_fused.c), f32 and f64 (cuda_bf16_op lists none of them). */
    [NNOPT_OP_BATCHNORM_RELU] = cuda_fused_batchnorm_relu,
    [NNOPT_OP_BATCHNORM_RELU_BWD] = cuda_fused_batchnorm_relu_bwd,
    [NNOPT_OP_CONV2D_RELU] = cuda_fused_conv2d_relu,
    [NNOPT_OP_ADD_RELU] = cuda_fused_add_relu,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD] = cuda_fused_conv2d_bwd_data_add,
    [NNOPT_OP_CONV2D_ADD_RELU] = cuda_fused_conv2d_relu,
    [NNOPT_OP_BATCHNORM_ADD_RELU] = cuda_fused_batchnorm_relu,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED] = cuda_fused_conv2d_bwd_data_add,
};

static int is_update(const nnopt_op *op) {
    return op->kind == NNOPT_OP_SGD_UPDATE || op->kind == NNOPT_OP_ADAM_UPDATE;
}

nnopt_status cuda_execute_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out) {
    if ((unsigned)op->kind >= NNOPT_OP_KIND_COUNT || cuda_ops[op->kind] == NULL) {
        cuda_error(b, "run: unknown op kind %d", (int)op->kind);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    /* Updates queue (queue_update); any other op may read what they write, so
     * those queued go first (recorded and captured segments included). */
    if (!is_update(op)) {
        nnopt_status status = cuda_flush_updates(b);
        if (status != NNOPT_OK) return status;
    }
    return cuda_ops[op->kind](b, op, in, n_in, out, n_out);
}

/* Ops that wait for the device (labels are validated there) or differ every
 * step (dropout's seed) run outside graphs. */
static int graph_capturable(const nnopt_op *op) {
    if (op->kind == NNOPT_OP_SOFTMAX_XENT) return op->p.xent.soft_targets != 0;
    return op->kind != NNOPT_OP_DROPOUT;
}

static int cuda_supports(void *ctx, nnopt_op_kind op, nnopt_dtype dtype) {
    (void)ctx;
    if ((unsigned)op >= NNOPT_OP_KIND_COUNT || cuda_ops[op] == NULL) return 0;
    if (dtype == NNOPT_BF16) return cuda_bf16_op(op);
    return dtype == NNOPT_F32 || dtype == NNOPT_F64;
}

static nnopt_status cuda_run(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out) {
    cuda_backend *b = ctx;
    if (op == NULL || (n_in > 0 && in == NULL) || (n_out > 0 && out == NULL)) {
        cuda_error(b, "run: NULL op or tensor array");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if ((unsigned)op->kind >= NNOPT_OP_KIND_COUNT || cuda_ops[op->kind] == NULL) {
        cuda_error(b, "run: unknown op kind %d", (int)op->kind);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    nnopt_status status;
    if (b->use_graphs && graph_capturable(op)) {
        status = activate(b);
        if (status == NNOPT_OK) status = cuda_graph_run(b, op, in, n_in, out, n_out);
    } else {
        /* Optimizer updates queue (queue_update); anything else goes after them. */
        status = is_update(op) ? activate(b) : enter(b);
        if (status == NNOPT_OK) status = cuda_execute_op(b, op, in, n_in, out, n_out);
    }
    if (status == NNOPT_OK && b->sync_each_op) status = cuda_flush_updates(b);
    if (status == NNOPT_OK && b->sync_each_op)
        status = cuda_check(b, cudaStreamSynchronize(b->stream), nnopt_op_kind_name(op->kind));
    return status;
}

/* The steps of a compiled program that are not generated: run at once, as
 * its own kernels are launched between them (held back for a graph, or an
 * update left queued, they would run after kernels that read their results). */
static nnopt_status cuda_run_step(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                                  nnopt_tensor *const *out, int n_out) {
    cuda_backend *b = ctx;
    nnopt_status status = cuda_execute_op(b, op, in, n_in, out, n_out);
    if (status == NNOPT_OK) status = cuda_flush_updates(b);
    if (status == NNOPT_OK && b->sync_each_op)
        status = cuda_check(b, cudaStreamSynchronize(b->stream), nnopt_op_kind_name(op->kind));
    return status;
}

static nnopt_status cuda_synchronize(void *ctx) {
    cuda_backend *b = ctx;
    nnopt_status status = enter(b);
    if (status == NNOPT_OK)
        status = cuda_check(b, cudaStreamSynchronize(b->stream), "cudaStreamSynchronize");
    return status;
}

static void cuda_describe(void *ctx, char *buf, size_t size) {
    const cuda_backend *b = ctx;
    if (buf == NULL || size == 0) return;
    const cuda_graph_state *g = &b->graphs;
    if (b->use_graphs && g->captures + g->failed_captures > 0)
        snprintf(buf, size, "%s; graphs so far: %llu captured, %llu replays, %llu failed captures",
                 b->description, (unsigned long long)g->captures, (unsigned long long)g->replays,
                 (unsigned long long)g->failed_captures);
    else
        snprintf(buf, size, "%s", b->description);
}

/* ---- instances ---- */

static void cuda_destroy(void *ctx) {
    cuda_backend *b = ctx;
    if (b == NULL) return;
    if (b->stream != NULL) {
        enter(b);
        cudaStreamSynchronize(b->stream);
        cuda_graph_free(b);
        cuda_device_free(b, b->workspace);
        cudaStreamSynchronize(b->stream);
    }
    if (b->staging != NULL) cudaFreeHost(b->staging);
    if (b->host_flag != NULL) cudaFreeHost(b->host_flag);
    for (int i = 0; i < CUDA_UPLOAD_SLOTS; i++) {
        if (b->upload[i].host != NULL) cudaFreeHost(b->upload[i].host);
        if (b->upload[i].copied != NULL) cudaEventDestroy(b->upload[i].copied);
    }
    if (b->cublas != NULL) cublasDestroy(b->cublas);
    if (b->cudnn != NULL) cudnnDestroy(b->cudnn);
    if (b->stream != NULL) cudaStreamDestroy(b->stream);
    free(b);
}

static void read_settings(cuda_backend *b, const nnopt_config *cfg) {
    const nnopt_host_api *host = b->host;
    /* The schema's defaults when there is no configuration to read. */
    b->own_depthwise = 1;
    b->deterministic = 1;
    b->use_graphs = 1;
    b->workspace_limit = (size_t)1024 << 20;
    if (cfg == NULL || host == NULL || host->config_int == NULL) return;
    b->device = (int)host->config_int(cfg, "device");
    const char *kernels = host->config_string(cfg, "kernels");
    b->own_kernels = kernels != NULL && strcmp(kernels, "own") == 0;
    const char *depthwise = host->config_string(cfg, "depthwise");
    b->own_depthwise = depthwise == NULL || strcmp(depthwise, "own") == 0;
    const char *conv_algo = host->config_string(cfg, "conv_algo");
    b->find_conv_algo = conv_algo != NULL && strcmp(conv_algo, "find") == 0;
    b->deterministic = host->config_bool(cfg, "deterministic");
    b->allow_tf32 = host->config_bool(cfg, "tf32");
    b->sync_each_op = host->config_bool(cfg, "sync_each_op");
    const char *graphs = host->config_string(cfg, "graphs");
    /* Waiting after every op leaves nothing to replay. */
    b->use_graphs = (graphs == NULL || strcmp(graphs, "auto") == 0) && !b->sync_each_op;
    b->workspace_limit = (size_t)host->config_int(cfg, "workspace_mb") << 20;
}

static void describe_instance(cuda_backend *b) {
    struct cudaDeviceProp prop;
    int runtime = 0, driver = 0, cublas = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    cublasGetVersion(b->cublas, &cublas);
    const size_t cudnn = cudnnGetVersion();
    if (cudaGetDeviceProperties(&prop, b->device) != cudaSuccess) {
        cudaGetLastError();
        snprintf(prop.name, sizeof prop.name, "device %d", b->device);
        prop.major = prop.minor = 0;
        prop.totalGlobalMem = 0;
    }
    snprintf(b->description, sizeof b->description,
             "%.100s (sm_%d%d, %.0f GiB), CUDA runtime %d.%d, driver %d.%d, cuDNN %zu.%zu.%zu, "
             "cuBLAS %d, kernels=%s, depthwise=%s, graphs=%s%s",
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30),
             runtime / 1000, runtime % 1000 / 10, driver / 1000, driver % 1000 / 10, cudnn / 10000,
             cudnn / 100 % 100, cudnn % 100, cublas, b->own_kernels ? "own" : "cudnn",
             b->own_depthwise ? "own" : "cudnn", b->use_graphs ? "auto" : "off",
             b->allow_tf32 ? ", tf32" : "");
}

static nnopt_status cuda_create(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx) {
    *ctx = NULL;
    cuda_backend *b = calloc(1, sizeof *b);
    if (b == NULL) {
        if (host != NULL && host->set_error != NULL) host->set_error("out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    b->host = host;
    read_settings(b, cfg);

    /* The first runtime call loads the driver: no driver or no GPU shows here. */
    int device_count = 0;
    const cudaError_t count_status = cudaGetDeviceCount(&device_count);
    if (count_status != cudaSuccess || device_count == 0) {
        cudaGetLastError();
        cuda_error(b, "no CUDA device: %s",
                   count_status != cudaSuccess ? cudaGetErrorString(count_status)
                                               : "the driver reports 0 devices");
        free(b);
        return NNOPT_STATUS_DEVICE;
    }
    if (b->device >= device_count) {
        cuda_error(b, "no CUDA device %d: this machine has %d (device = 0..%d)", b->device,
                   device_count, device_count - 1);
        free(b);
        return NNOPT_STATUS_DEVICE;
    }

    nnopt_status status = activate(b);
    if (status == NNOPT_OK)
        status = cuda_check(b, cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking),
                            "cudaStreamCreate");
    int pools = 0;
    if (status == NNOPT_OK &&
        cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, b->device) == cudaSuccess &&
        pools) {
        /* Keep freed blocks in the pool instead of returning them at every sync. */
        cudaMemPool_t pool;
        uint64_t keep_everything = UINT64_MAX;
        if (cudaDeviceGetDefaultMemPool(&pool, b->device) == cudaSuccess)
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_everything);
        b->stream_ordered_alloc = 1;
    }
    cudaGetLastError();
    if (status == NNOPT_OK) status = cudnn_check(b, cudnnCreate(&b->cudnn), "cudnnCreate");
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnSetStream(b->cudnn, b->stream), "cudnnSetStream");
    if (status == NNOPT_OK) status = cublas_check(b, cublasCreate(&b->cublas), "cublasCreate");
    if (status == NNOPT_OK)
        status = cublas_check(b, cublasSetStream(b->cublas, b->stream), "cublasSetStream");
    if (status == NNOPT_OK)
        status =
            cublas_check(b,
                         cublasSetMathMode(b->cublas, b->allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                    : CUBLAS_PEDANTIC_MATH),
                         "cublasSetMathMode");
    if (status == NNOPT_OK)
        status = cuda_check(b, cudaMallocHost((void **)&b->host_flag, sizeof *b->host_flag),
                            "cudaMallocHost");
    if (status != NNOPT_OK) {
        cuda_destroy(b);
        return status;
    }
    describe_instance(b);
    *ctx = b;
    return NNOPT_OK;
}

/* ---- compiled mode (cuda_program.c) ---- */

static nnopt_status cuda_backend_program_compile(void *ctx, const nnopt_program *prog,
                                                 const nnopt_program_options *options,
                                                 void **compiled, nnopt_program_info *info) {
    nnopt_status status = enter(ctx);
    return status == NNOPT_OK ? cuda_program_compile(ctx, prog, options, compiled, info) : status;
}

static nnopt_status cuda_backend_program_run(void *ctx, void *compiled, const nnopt_op *ops,
                                             nnopt_tensor *const *tensors) {
    cuda_backend *b = ctx;
    nnopt_status status = enter(b);
    if (status == NNOPT_OK) status = cuda_program_run(b, compiled, cuda_run_step, ops, tensors);
    if (status == NNOPT_OK && b->sync_each_op)
        status = cuda_check(b, cudaStreamSynchronize(b->stream), "compiled program");
    return status;
}

static void cuda_backend_program_free(void *ctx, void *compiled) {
    cuda_backend *b = ctx;
    /* Its kernels may still be queued: the library goes once they ran. */
    if (compiled != NULL && enter(b) == NNOPT_OK) cudaStreamSynchronize(b->stream);
    cuda_program_free(b, compiled);
}

/* ---- descriptor ---- */

static const nnopt_param_spec cuda_params[] = {
    {"device", NNOPT_PARAM_INT, "0", "CUDA device index", NULL, 0, 1023},
    {"kernels", NNOPT_PARAM_ENUM, "cudnn",
     "pooling, activations, batch norm and softmax: cudnn, or own (the plugin's CUDA kernels, "
     "closest to the reference's rounding and max-pool tie-breaking)",
     "cudnn|own", 0, 0},
    {"depthwise", NNOPT_PARAM_ENUM, "own",
     "depthwise convolutions (groups == C == K): own direct kernels, or cudnn", "own|cudnn", 0, 0},
    {"conv_algo", NNOPT_PARAM_ENUM, "heuristic",
     "cuDNN convolution algorithm choice per shape: heuristic (cudnnGet*_v7), or find "
     "(benchmark every algorithm once, cudnnFind*Ex)",
     "heuristic|find", 0, 0},
    {"deterministic", NNOPT_PARAM_BOOL, "true",
     "only cuDNN algorithms that give bit-identical results run to run", NULL, 0, 0},
    {"tf32", NNOPT_PARAM_BOOL, "false",
     "allow TF32 tensor cores for f32 convolutions and dense layers (faster, ~1e-3 relative "
     "error)",
     NULL, 0, 0},
    {"workspace_mb", NNOPT_PARAM_INT, "1024", "largest cuDNN convolution workspace, MiB", NULL, 0,
     1 << 20},
    {"graphs", NNOPT_PARAM_ENUM, "auto",
     "auto: an op sequence that repeats (a training or inference step) is captured once into a "
     "CUDA graph and then launched as one; off: every op is launched on its own",
     "auto|off", 0, 0},
    {"sync_each_op", NNOPT_PARAM_BOOL, "false",
     "wait for every op to finish (slow; pins a device fault on the op that caused it)", NULL, 0,
     0},
};

static const nnopt_backend_vtable cuda_vtable = {
    .struct_size = sizeof(nnopt_backend_vtable),
    .create = cuda_create,
    .destroy = cuda_destroy,
    .supports = cuda_supports,
    .tensor_alloc = cuda_tensor_alloc,
    .tensor_free = cuda_tensor_free,
    .tensor_write = cuda_tensor_write,
    .tensor_read = cuda_tensor_read,
    .tensor_zero = cuda_tensor_zero,
    .run = cuda_run,
    .synchronize = cuda_synchronize,
    .describe = cuda_describe,
    .program_compile = cuda_backend_program_compile,
    .program_run = cuda_backend_program_run,
    .program_free = cuda_backend_program_free,
};

static const nnopt_plugin_desc cuda_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_BACKEND,
    .name = "cuda",
    .version = "0.1.0",
    .description = "NVIDIA GPUs (f32, f64; bf16 forward ops): cuDNN convolutions, pooling, "
                   "activations, batch norm and softmax; cuBLAS dense layers; own CUDA kernels "
                   "for the rest",
    .params = cuda_params,
    .n_params = sizeof cuda_params / sizeof cuda_params[0],
    .init = NULL,
    .vtable = &cuda_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &cuda_descriptor;
}
