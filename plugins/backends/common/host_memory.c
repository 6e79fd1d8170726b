/* Host-memory tensor storage for the CPU backends: 64-byte aligned (one cache
 * line, the widest SIMD load) and zero-initialised, with bounds-checked
 * copies in and out. */
#include "ref_internal.h"

#include <stdlib.h>
#include <string.h>

#define HOST_ALIGNMENT 64

/* Byte size of t's data, or 0 with *ok cleared when the shape is invalid or
 * the size does not fit in size_t. */
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

nnopt_status nnopt_host_tensor_alloc(const nnopt_host_api *host, nnopt_tensor *t) {
    if (t == NULL) {
        ref_error(host, "tensor_alloc: NULL tensor");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (t->data != NULL) {
        ref_error(host, "tensor_alloc: tensor is already allocated");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    int ok;
    const size_t bytes = tensor_bytes(t, &ok);
    if (!ok) {
        ref_error(host, "tensor_alloc: invalid %s tensor shape (ndim %d)",
                  nnopt_dtype_name(t->dtype), (int)t->ndim);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    /* aligned_alloc wants a multiple of the alignment; an empty tensor still
     * gets a block so that "allocated" always means data != NULL. */
    if (bytes > SIZE_MAX - HOST_ALIGNMENT) {
        ref_error(host, "tensor_alloc: %zu bytes is too large", bytes);
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    size_t rounded = (bytes + HOST_ALIGNMENT - 1) / HOST_ALIGNMENT * HOST_ALIGNMENT;
    if (rounded == 0) rounded = HOST_ALIGNMENT;
    void *data = aligned_alloc(HOST_ALIGNMENT, rounded);
    if (data == NULL) {
        ref_error(host, "tensor_alloc: out of memory allocating %zu bytes", rounded);
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    memset(data, 0, rounded);
    t->data = data;
    return NNOPT_OK;
}

void nnopt_host_tensor_free(nnopt_tensor *t) {
    if (t == NULL) return;
    free(t->data);
    t->data = NULL;
}

/* [offset, offset + nbytes) lies within t's data. */
static int range_fits(const nnopt_tensor *t, size_t offset, size_t nbytes) {
    int ok;
    const size_t bytes = tensor_bytes(t, &ok);
    return ok && offset <= bytes && nbytes <= bytes - offset;
}

nnopt_status nnopt_host_tensor_write(nnopt_tensor *t, size_t offset, const void *src,
                                     size_t nbytes) {
    if (t == NULL || t->data == NULL || (src == NULL && nbytes > 0) ||
        !range_fits(t, offset, nbytes))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    if (nbytes > 0) memcpy((unsigned char *)t->data + offset, src, nbytes);
    return NNOPT_OK;
}

nnopt_status nnopt_host_tensor_read(const nnopt_tensor *t, size_t offset, void *dst,
                                    size_t nbytes) {
    if (t == NULL || t->data == NULL || (dst == NULL && nbytes > 0) ||
        !range_fits(t, offset, nbytes))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    if (nbytes > 0) memcpy(dst, (const unsigned char *)t->data + offset, nbytes);
    return NNOPT_OK;
}

nnopt_status nnopt_host_tensor_zero(nnopt_tensor *t) {
    int ok;
    if (t == NULL || t->data == NULL) return NNOPT_STATUS_INVALID_ARGUMENT;
    const size_t bytes = tensor_bytes(t, &ok);
    if (!ok) return NNOPT_STATUS_INVALID_ARGUMENT;
    memset(t->data, 0, bytes);
    return NNOPT_OK;
}
