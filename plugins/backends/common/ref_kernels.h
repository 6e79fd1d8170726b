/* Internal library shared by the CPU backends (never installed, never part of
 * the plugin SDK): the reference implementation of every op in ops.h on host
 * memory, plus host-memory tensor storage. The `cpu` backend is a thin
 * wrapper around it; faster CPU backends call it for the ops they do not
 * accelerate themselves. */
#ifndef NNOPT_REF_KERNELS_H
#define NNOPT_REF_KERNELS_H

#include "nnopt/nnopt.h"

/* Nonzero when nnopt_ref_run implements op kind `op` for tensors of `dtype`
 * (the dtype of the op's floating-point tensors). */
int nnopt_ref_supports(nnopt_op_kind op, nnopt_dtype dtype);

/* Runs op on tensors whose `data` is host memory. Unsupported combinations
 * return NNOPT_STATUS_UNSUPPORTED after host->set_error. */
nnopt_status nnopt_ref_run(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                           int n_in, nnopt_tensor *const *out, int n_out);

/* Host memory storage for tensors: 64-byte aligned, zero-initialised. */
nnopt_status nnopt_host_tensor_alloc(const nnopt_host_api *host, nnopt_tensor *t);
void nnopt_host_tensor_free(nnopt_tensor *t);
nnopt_status nnopt_host_tensor_write(nnopt_tensor *t, size_t offset, const void *src,
                                     size_t nbytes);
nnopt_status nnopt_host_tensor_read(const nnopt_tensor *t, size_t offset, void *dst, size_t nbytes);
nnopt_status nnopt_host_tensor_zero(nnopt_tensor *t);

#endif
