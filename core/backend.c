#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefixes a failed plugin call's message with the backend's name. */
static nnopt_status plugin_failed(nnopt_backend *b, nnopt_status st, const char *what,
                                  nnopt_error *err) {
    const char *why = nnopt_plugin_error_take();
    return nnopt_error_set(err, st, "%s backend: %s: %s", b->plugin->desc->name, what,
                           why[0] ? why : nnopt_status_name(st));
}

nnopt_status nnopt_backend_open(const nnopt_plugin *plugin, const nnopt_config *cfg,
                                nnopt_backend **out, nnopt_error *err) {
    nnopt_backend *b = calloc(1, sizeof *b);
    if (!b) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    b->plugin = plugin;
    b->vt = plugin->desc->vtable;
    nnopt_plugin_error_take();
    nnopt_status st = b->vt->create(nnopt_host_api_get(), cfg, &b->ctx);
    if (st != NNOPT_OK) {
        const char *why = nnopt_plugin_error_take();
        nnopt_error_set(err, st, "%s backend: %s", plugin->desc->name,
                        why[0] ? why : nnopt_status_name(st));
        free(b);
        return st;
    }
    if (b->vt->describe) b->vt->describe(b->ctx, b->description, sizeof b->description);
    *out = b;
    return NNOPT_OK;
}

void nnopt_backend_close(nnopt_backend *b) {
    if (!b) return;
    nnopt_op_fallback_close(b);
    if (b->vt->destroy) b->vt->destroy(b->ctx);
    free(b);
}

nnopt_status nnopt_backend_tensor_new(nnopt_backend *b, nnopt_dtype dtype, int ndim,
                                      const int64_t *shape, nnopt_tensor **out, nnopt_error *err) {
    nnopt_tensor *t = calloc(1, sizeof *t);
    if (!t) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->owns_data = 1;
    nnopt_status st = b->vt->tensor_alloc(b->ctx, t);
    if (st == NNOPT_OK) st = b->vt->tensor_zero(b->ctx, t);
    if (st != NNOPT_OK) {
        free(t);
        return plugin_failed(b, st, "cannot allocate a tensor", err);
    }
    *out = t;
    return NNOPT_OK;
}

nnopt_tensor *nnopt_tensor_view(const nnopt_tensor *src, int ndim, const int64_t *shape) {
    nnopt_tensor *t = malloc(sizeof *t);
    if (!t) return NULL;
    *t = *src;
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->owns_data = 0;
    return t;
}

void nnopt_backend_tensor_free(nnopt_backend *b, nnopt_tensor *t) {
    if (!t) return;
    if (b->op_backend) nnopt_op_fallback_forget(b, t);
    if (t->owns_data) b->vt->tensor_free(b->ctx, t);
    free(t);
}

nnopt_status nnopt_backend_write(nnopt_backend *b, nnopt_tensor *t, const void *src, size_t nbytes,
                                 nnopt_error *err) {
    nnopt_status st = b->vt->tensor_write(b->ctx, t, 0, src, nbytes);
    return st == NNOPT_OK ? st : plugin_failed(b, st, "cannot write a tensor", err);
}

nnopt_status nnopt_backend_read(nnopt_backend *b, const nnopt_tensor *t, void *dst, size_t nbytes,
                                nnopt_error *err) {
    nnopt_status st = b->vt->tensor_read(b->ctx, t, 0, dst, nbytes);
    return st == NNOPT_OK ? st : plugin_failed(b, st, "cannot read a tensor", err);
}

nnopt_status nnopt_backend_run(nnopt_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                               int n_in, nnopt_tensor *const *out, int n_out, nnopt_error *err) {
    if (b->op_backend && !b->vt->supports(b->ctx, op->kind, in[0]->dtype))
        return nnopt_op_fallback_run(b, op, in, n_in, out, n_out, err);
    nnopt_status st = b->vt->run(b->ctx, op, in, n_in, out, n_out);
    if (st == NNOPT_OK) return st;
    char what[96];
    snprintf(what, sizeof what, "op %s (%s)", nnopt_op_kind_name(op->kind),
             nnopt_dtype_name(in[0]->dtype));
    return plugin_failed(b, st, what, err);
}

nnopt_status nnopt_backend_sync(nnopt_backend *b, nnopt_error *err) {
    if (!b->vt->synchronize) return NNOPT_OK;
    nnopt_status st = b->vt->synchronize(b->ctx);
    return st == NNOPT_OK ? st : plugin_failed(b, st, "synchronize failed", err);
}
