/* A backend that lacks some ops (like a GPU backend without every kernel):
 * the reference kernels, except that it refuses pooling (forward and
 * backward) and the SGD update, which updates its inputs in place. Runs on
 * it exercise the core's op-level fallback. */
#include <stdlib.h>

#include "ref_kernels.h"

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx) {
    (void)cfg;
    *ctx = (void *)host;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    (void)ctx;
}

static int refused(nnopt_op_kind op) {
    return op == NNOPT_OP_POOL2D || op == NNOPT_OP_POOL2D_BWD || op == NNOPT_OP_SGD_UPDATE;
}

static int supports(void *ctx, nnopt_op_kind op, nnopt_dtype dtype) {
    (void)ctx;
    return !refused(op) && nnopt_ref_supports(op, dtype);
}

static nnopt_status tensor_alloc(void *ctx, nnopt_tensor *t) {
    return nnopt_host_tensor_alloc(ctx, t);
}

static void tensor_free(void *ctx, nnopt_tensor *t) {
    (void)ctx;
    nnopt_host_tensor_free(t);
}

static nnopt_status tensor_write(void *ctx, nnopt_tensor *t, size_t offset, const void *src,
                                 size_t nbytes) {
    (void)ctx;
    return nnopt_host_tensor_write(t, offset, src, nbytes);
}

static nnopt_status tensor_read(void *ctx, const nnopt_tensor *t, size_t offset, void *dst,
                                size_t nbytes) {
    (void)ctx;
    return nnopt_host_tensor_read(t, offset, dst, nbytes);
}

static nnopt_status tensor_zero(void *ctx, nnopt_tensor *t) {
    (void)ctx;
    return nnopt_host_tensor_zero(t);
}

static nnopt_status run(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out) {
    const nnopt_host_api *host = ctx;
    if (refused(op->kind)) {
        host->set_error("partial backend: no %s kernel", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    return nnopt_ref_run(host, op, in, n_in, out, n_out);
}

static const nnopt_backend_vtable vtable = {
    .struct_size = sizeof(nnopt_backend_vtable),
    .create = create,
    .destroy = destroy,
    .supports = supports,
    .tensor_alloc = tensor_alloc,
    .tensor_free = tensor_free,
    .tensor_write = tensor_write,
    .tensor_read = tensor_read,
    .tensor_zero = tensor_zero,
    .run = run,
};

static const nnopt_plugin_desc descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_BACKEND,
    .name = "partial",
    .version = "0.0.1",
    .description = "reference kernels without pooling and SGD (op fallback tests)",
    .vtable = &vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &descriptor;
}
