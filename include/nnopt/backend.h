/* Backend plugins: where tensors live and ops run. */
#ifndef NNOPT_BACKEND_H
#define NNOPT_BACKEND_H

#include "nnopt/host.h"
#include "nnopt/ops.h"
#include "nnopt/program.h"
#include "nnopt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nnopt_backend_vtable {
    uint32_t struct_size;

    /* One instance per pipeline run; cfg holds the plugin's schema values.
     * Fails with NNOPT_STATUS_DEVICE (and set_error) when unusable here. */
    nnopt_status (*create)(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx);
    void (*destroy)(void *ctx); /* NULL-safe */

    /* Nonzero when `run` accepts this op kind with tensors of this dtype. */
    int (*supports)(void *ctx, nnopt_op_kind op, nnopt_dtype dtype);

    /* Allocate t->data for t's dtype and shape (t->owns_data set by the core). */
    nnopt_status (*tensor_alloc)(void *ctx, nnopt_tensor *t);
    void (*tensor_free)(void *ctx, nnopt_tensor *t); /* NULL data: no-op */
    /* Copy host bytes in/out at a byte offset into the tensor. */
    nnopt_status (*tensor_write)(void *ctx, nnopt_tensor *t, size_t offset, const void *src,
                                 size_t nbytes);
    nnopt_status (*tensor_read)(void *ctx, const nnopt_tensor *t, size_t offset, void *dst,
                                size_t nbytes);
    nnopt_status (*tensor_zero)(void *ctx, nnopt_tensor *t);

    /* Run one op (see ops.h for the in/out convention of each kind). */
    nnopt_status (*run)(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out);
    /* Wait until every op issued so far has finished (for timing). */
    nnopt_status (*synchronize)(void *ctx);
    /* One line about what this instance runs on (CPU kernels, device name). */
    void (*describe)(void *ctx, char *buf, size_t size);

    /* ---- ABI 1.1, optional (NULL, or beyond a 1.0 plugin's struct_size:
     * the core runs every op through `run`). See program.h. ---- */
    /* Generates and compiles kernels specialised for prog (which is only
     * borrowed). NNOPT_STATUS_UNSUPPORTED (with set_error) when it cannot
     * (no compiler): the core then runs op by op. */
    nnopt_status (*program_compile)(void *ctx, const nnopt_program *prog,
                                    const nnopt_program_options *options, void **compiled,
                                    nnopt_program_info *info);
    /* Runs a compiled program: ops holds the current op of every step (only
     * DYNAMIC steps may differ from the recorded ones), tensors the tensor
     * table (NULL where UNUSED). Finishes like a sequence of `run` calls. */
    nnopt_status (*program_run)(void *ctx, void *compiled, const nnopt_op *ops,
                                nnopt_tensor *const *tensors);
    void (*program_free)(void *ctx, void *compiled); /* NULL-safe */
} nnopt_backend_vtable;

#ifdef __cplusplus
}
#endif
#endif
