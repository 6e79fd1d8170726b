/* The `cpu` backend: the reference C kernels on host memory, single-threaded.
 * It is the correctness baseline every other backend is compared against, so
 * it adds nothing of its own: every call goes straight to ref_kernels. */
#include "kc_program.h"
#include "ref_kernels.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct cpu_backend {
    const nnopt_host_api *host;
} cpu_backend;

static nnopt_status cpu_create(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx) {
    (void)cfg; /* no parameters */
    cpu_backend *backend = calloc(1, sizeof *backend);
    if (backend == NULL) {
        if (host != NULL && host->set_error != NULL) host->set_error("cpu backend: out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    backend->host = host;
    *ctx = backend;
    return NNOPT_OK;
}

static void cpu_destroy(void *ctx) {
    free(ctx);
}

static int cpu_supports(void *ctx, nnopt_op_kind op, nnopt_dtype dtype) {
    (void)ctx;
    return nnopt_ref_supports(op, dtype);
}

static nnopt_status cpu_tensor_alloc(void *ctx, nnopt_tensor *t) {
    return nnopt_host_tensor_alloc(((cpu_backend *)ctx)->host, t);
}

static void cpu_tensor_free(void *ctx, nnopt_tensor *t) {
    (void)ctx;
    nnopt_host_tensor_free(t);
}

/* The host-memory helpers have no host table, so the message is added here. */
static nnopt_status report_copy(cpu_backend *backend, nnopt_status status, const char *what,
                                size_t offset, size_t nbytes) {
    if (status != NNOPT_OK && backend->host != NULL && backend->host->set_error != NULL)
        backend->host->set_error("cpu backend: %s of %zu bytes at offset %zu is out of bounds "
                                 "or on an unallocated tensor",
                                 what, nbytes, offset);
    return status;
}

static nnopt_status cpu_tensor_write(void *ctx, nnopt_tensor *t, size_t offset, const void *src,
                                     size_t nbytes) {
    return report_copy(ctx, nnopt_host_tensor_write(t, offset, src, nbytes), "write", offset,
                       nbytes);
}

static nnopt_status cpu_tensor_read(void *ctx, const nnopt_tensor *t, size_t offset, void *dst,
                                    size_t nbytes) {
    return report_copy(ctx, nnopt_host_tensor_read(t, offset, dst, nbytes), "read", offset, nbytes);
}

static nnopt_status cpu_tensor_zero(void *ctx, nnopt_tensor *t) {
    return report_copy(ctx, nnopt_host_tensor_zero(t), "zero", 0, t ? nnopt_tensor_nbytes(t) : 0);
}

static nnopt_status cpu_run(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    return nnopt_ref_run(((cpu_backend *)ctx)->host, op, in, n_in, out, n_out);
}

static nnopt_status cpu_synchronize(void *ctx) {
    (void)ctx; /* every op has finished when run returns */
    return NNOPT_OK;
}

static void cpu_describe(void *ctx, char *buf, size_t size) {
    (void)ctx;
    if (buf != NULL && size > 0) snprintf(buf, size, "reference C kernels, 1 thread");
}

/* Compiled mode: single-threaded generated kernels, like the rest of this backend. */
static nnopt_status cpu_program_compile(void *ctx, const nnopt_program *prog,
                                        const nnopt_program_options *options, void **compiled,
                                        nnopt_program_info *info) {
    return nnopt_kc_compile(((cpu_backend *)ctx)->host, prog, options, 1, NULL, compiled, info);
}

static nnopt_status cpu_program_run(void *ctx, void *compiled, const nnopt_op *ops,
                                    nnopt_tensor *const *tensors) {
    return nnopt_kc_run(((cpu_backend *)ctx)->host, compiled, cpu_run, ctx, ops, tensors);
}

static void cpu_program_free(void *ctx, void *compiled) {
    (void)ctx;
    nnopt_kc_free(compiled);
}

static const nnopt_backend_vtable cpu_vtable = {
    .struct_size = sizeof(nnopt_backend_vtable),
    .create = cpu_create,
    .destroy = cpu_destroy,
    .supports = cpu_supports,
    .tensor_alloc = cpu_tensor_alloc,
    .tensor_free = cpu_tensor_free,
    .tensor_write = cpu_tensor_write,
    .tensor_read = cpu_tensor_read,
    .tensor_zero = cpu_tensor_zero,
    .run = cpu_run,
    .synchronize = cpu_synchronize,
    .describe = cpu_describe,
    .program_compile = cpu_program_compile,
    .program_run = cpu_program_run,
    .program_free = cpu_program_free,
};

static const nnopt_plugin_desc cpu_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_BACKEND,
    .name = "cpu",
    .version = "0.1.0",
    .description = "Reference C kernels (f32, f64; bf16 forward ops), single-threaded: the "
                   "correctness baseline",
    .params = NULL,
    .n_params = 0,
    .init = NULL,
    .vtable = &cpu_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &cpu_descriptor;
}
