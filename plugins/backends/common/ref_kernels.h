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

/* ---- bf16 (ref_bf16.c) ---- */

/* Nonzero for the op kinds the reference runs in bf16 (the forward ops). */
int nnopt_ref_bf16_op(nnopt_op_kind op);

/* Nonzero when any tensor of the op is bf16. */
int nnopt_op_has_bf16(const nnopt_tensor *const *in, int n_in, const nnopt_tensor *const *out,
                      int n_out);

/* An f32 implementation of ops, with its own context (run's signature). */
typedef nnopt_status (*nnopt_f32_op_fn)(void *ctx, const nnopt_op *op, nnopt_tensor *const *in,
                                        int n_in, nnopt_tensor *const *out, int n_out);

/* Runs op through run_f32 with every bf16 tensor widened to an f32 copy and
 * the outputs rounded back to bf16 (nearest, ties to even): bf16 storage,
 * f32 arithmetic. Host memory only. */
nnopt_status nnopt_bf16_via_f32(const nnopt_host_api *host, nnopt_f32_op_fn run_f32, void *ctx,
                                const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                                nnopt_tensor *const *out, int n_out);

/* Host memory storage for tensors: 64-byte aligned, zero-initialised. */
nnopt_status nnopt_host_tensor_alloc(const nnopt_host_api *host, nnopt_tensor *t);
void nnopt_host_tensor_free(nnopt_tensor *t);
nnopt_status nnopt_host_tensor_write(nnopt_tensor *t, size_t offset, const void *src,
                                     size_t nbytes);
nnopt_status nnopt_host_tensor_read(const nnopt_tensor *t, size_t offset, void *dst, size_t nbytes);
nnopt_status nnopt_host_tensor_zero(nnopt_tensor *t);

#endif
