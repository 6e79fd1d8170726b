/* A backend plugin instance, with the checks and error wrapping the core
 * needs around each call. */
#ifndef NNOPT_CORE_BACKEND_H
#define NNOPT_CORE_BACKEND_H

#include "error.h"
#include "plugin_loader.h"

typedef struct nnopt_backend {
    const nnopt_plugin *plugin;
    const nnopt_backend_vtable *vt;
    void *ctx;
    char description[256];
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

#endif
