/* A backend plugin instance, with the checks and error wrapping the core
 * needs around each call. */
#ifndef NNOPT_CORE_BACKEND_H
#define NNOPT_CORE_BACKEND_H

#include "error.h"
#include "plugin_loader.h"

/* What happens to an op the backend cannot run ([backend] op_fallback). */
typedef enum nnopt_op_fallback {
    NNOPT_OP_FALLBACK_DENY = 0, /* a configuration error before the run starts */
    NNOPT_OP_FALLBACK_WARN,     /* runs on the reference backend, with a warning */
    NNOPT_OP_FALLBACK_ALLOW     /* runs on the reference backend silently */
} nnopt_op_fallback;

typedef struct nnopt_tensor_mirror nnopt_tensor_mirror;

typedef struct nnopt_backend {
    const nnopt_plugin *plugin;
    const nnopt_backend_vtable *vt;
    void *ctx;
    char description[640]; /* the plugin's describe: a line, sometimes long */
    /* Ops this backend does not support run on `op_backend` (owned), their
     * tensors copied over and back; see op_fallback.c. */
    struct nnopt_backend *op_backend;
    nnopt_tensor_mirror *mirrors;
    int n_mirrors, cap_mirrors;
    int64_t fallback_calls[NNOPT_OP_KIND_COUNT];
} nnopt_backend;

nnopt_status nnopt_backend_open(const nnopt_plugin *plugin, const nnopt_config *cfg,
                                nnopt_backend **out, nnopt_error *err);
void nnopt_backend_close(nnopt_backend *b);

/* A new tensor of dtype/shape allocated (zeroed) on the backend. */
nnopt_status nnopt_backend_tensor_new(nnopt_backend *b, nnopt_dtype dtype, int ndim,
                                      const int64_t *shape, nnopt_tensor **out, nnopt_error *err);
/* A view sharing src's memory with another shape of the same size. */
nnopt_tensor *nnopt_tensor_view(const nnopt_tensor *src, int ndim, const int64_t *shape);
void nnopt_backend_tensor_free(nnopt_backend *b, nnopt_tensor *t); /* NULL-safe */

nnopt_status nnopt_backend_write(nnopt_backend *b, nnopt_tensor *t, const void *src, size_t nbytes,
                                 nnopt_error *err);
nnopt_status nnopt_backend_read(nnopt_backend *b, const nnopt_tensor *t, void *dst, size_t nbytes,
                                nnopt_error *err);
nnopt_status nnopt_backend_run(nnopt_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                               int n_in, nnopt_tensor *const *out, int n_out, nnopt_error *err);
nnopt_status nnopt_backend_sync(nnopt_backend *b, nnopt_error *err);

/* Lets b run the ops it does not support on `reference` (which b then owns). */
void nnopt_backend_set_op_backend(nnopt_backend *b, nnopt_backend *reference);
/* Runs op on b->op_backend: inputs and outputs are copied there, outputs and
 * inputs the op updates in place are copied back. */
nnopt_status nnopt_op_fallback_run(nnopt_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out, nnopt_error *err);
/* Drops t's copy on the op backend (t is being freed). */
void nnopt_op_fallback_forget(nnopt_backend *b, const nnopt_tensor *t);
/* Frees every copy and the op backend. */
void nnopt_op_fallback_close(nnopt_backend *b);

#endif
