/* Basic types shared by the core and every plugin: status codes, dtypes, tensors. */
#ifndef NNOPT_TYPES_H
#define NNOPT_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nnopt_status {
    NNOPT_OK = 0,
    NNOPT_STATUS_INVALID_ARGUMENT, /* bad shape, dtype, parameter value */
    NNOPT_STATUS_UNSUPPORTED,      /* op/dtype combination the backend cannot run */
    NNOPT_STATUS_OUT_OF_MEMORY,
    NNOPT_STATUS_IO,     /* file missing, truncated, unreadable */
    NNOPT_STATUS_FORMAT, /* file present but malformed */
    NNOPT_STATUS_CONFIG, /* INI error */
    NNOPT_STATUS_PLUGIN, /* plugin not found, not a plugin, wrong kind */
    NNOPT_STATUS_ABI_MISMATCH,
    NNOPT_STATUS_INIT_FAILED,
    NNOPT_STATUS_NUMERIC, /* NaN/Inf loss */
    NNOPT_STATUS_DEVICE,  /* no device, driver error */
    NNOPT_STATUS_INTERNAL
} nnopt_status;

typedef enum nnopt_dtype {
    NNOPT_F32 = 0,
    NNOPT_F64 = 1,
    NNOPT_I32 = 2, /* integer class labels */
    NNOPT_BF16 = 3,
    NNOPT_I8 = 4,
    NNOPT_DTYPE_COUNT
} nnopt_dtype;

#define NNOPT_MAX_DIMS 4

/* A dense, row-major (NCHW for images) tensor living in a backend's memory.
 * `data` belongs to the backend that allocated it: only that backend may
 * dereference it; the core moves bytes in and out through the backend's
 * tensor_write/tensor_read. Two tensors may share `data` (a view such as
 * flatten); only the one with `owns_data` set is freed. */
typedef struct nnopt_tensor {
    nnopt_dtype dtype;
    int32_t ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    void *data;          /* backend memory; NULL until allocated */
    void *backend_state; /* free for the backend's own bookkeeping */
    int32_t owns_data;
} nnopt_tensor;

static inline size_t nnopt_dtype_size(nnopt_dtype dt) {
    static const size_t sizes[NNOPT_DTYPE_COUNT] = {4, 8, 4, 2, 1};
    return (unsigned)dt < NNOPT_DTYPE_COUNT ? sizes[dt] : 0;
}

static inline const char *nnopt_dtype_name(nnopt_dtype dt) {
    static const char *const names[NNOPT_DTYPE_COUNT] = {"f32", "f64", "i32", "bf16", "i8"};
    return (unsigned)dt < NNOPT_DTYPE_COUNT ? names[dt] : "?";
}

static inline int64_t nnopt_tensor_numel(const nnopt_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline size_t nnopt_tensor_nbytes(const nnopt_tensor *t) {
    return (size_t)nnopt_tensor_numel(t) * nnopt_dtype_size(t->dtype);
}

#ifdef __cplusplus
}
#endif
#endif
