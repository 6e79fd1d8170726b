/* Op-level fallback: an op the run's backend cannot run (a GPU backend
 * without some kernel, say) runs on the reference backend instead. Every
 * tensor the op touches is copied to a mirror on the reference backend and
 * the results are copied back, so the op behaves exactly as it would natively,
 * only slower. Mirrors are kept (keyed by tensor) so each is allocated once. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

struct nnopt_tensor_mirror {
    const nnopt_tensor *source;
    nnopt_tensor *copy; /* on b->op_backend */
};

void nnopt_backend_set_op_backend(nnopt_backend *b, nnopt_backend *reference) {
    b->op_backend = reference;
}

static void mirror_free(nnopt_backend *b, nnopt_tensor_mirror *m) {
    nnopt_backend_tensor_free(b->op_backend, m->copy);
    *m = b->mirrors[--b->n_mirrors];
}

void nnopt_op_fallback_forget(nnopt_backend *b, const nnopt_tensor *t) {
    for (int i = 0; i < b->n_mirrors; i++)
        if (b->mirrors[i].source == t) {
            mirror_free(b, &b->mirrors[i]);
            return;
        }
}

void nnopt_op_fallback_close(nnopt_backend *b) {
    while (b->n_mirrors) mirror_free(b, &b->mirrors[0]);
    free(b->mirrors);
    b->mirrors = NULL;
    b->cap_mirrors = 0;
    nnopt_backend_close(b->op_backend);
    b->op_backend = NULL;
}

static int same_layout(const nnopt_tensor *a, const nnopt_tensor *b) {
    return a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0;
}

/* t's mirror (allocated on first use) holding a copy of t's current bytes. */
static nnopt_status mirror_of(nnopt_backend *b, nnopt_tensor *t, void **staging,
                              size_t *staging_size, nnopt_tensor **out, nnopt_error *err) {
    nnopt_tensor_mirror *m = NULL;
    for (int i = 0; i < b->n_mirrors && !m; i++)
        if (b->mirrors[i].source == t) m = &b->mirrors[i];
    if (m && !same_layout(m->copy, t)) { /* t was reshaped in place: start over */
        mirror_free(b, m);
        m = NULL;
    }
    if (!m) {
        if (b->n_mirrors == b->cap_mirrors) {
            int cap = b->cap_mirrors ? 2 * b->cap_mirrors : 16;
            nnopt_tensor_mirror *grown = realloc(b->mirrors, (size_t)cap * sizeof *grown);
            if (!grown) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
            b->mirrors = grown;
            b->cap_mirrors = cap;
        }
        nnopt_tensor *copy;
        nnopt_status st =
            nnopt_backend_tensor_new(b->op_backend, t->dtype, t->ndim, t->shape, &copy, err);
        if (st != NNOPT_OK) return st;
        m = &b->mirrors[b->n_mirrors++];
        *m = (nnopt_tensor_mirror){.source = t, .copy = copy};
    }
    size_t nbytes = nnopt_tensor_nbytes(t);
    if (nbytes > *staging_size) {
        void *grown = realloc(*staging, nbytes);
        if (!grown) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        *staging = grown;
        *staging_size = nbytes;
    }
    nnopt_status st = nnopt_backend_read(b, t, *staging, nbytes, err);
    if (st == NNOPT_OK) st = nnopt_backend_write(b->op_backend, m->copy, *staging, nbytes, err);
    *out = m->copy;
    return st;
}

/* Inputs an op updates in place (ops.h): they are copied back too. */
static int updates_input(nnopt_op_kind kind, const nnopt_op *op, int k) {
    switch (kind) {
    case NNOPT_OP_SGD_UPDATE:
        return k == 0 || k == 2; /* param, velocity */
    case NNOPT_OP_ADAM_UPDATE:
        return k == 0 || k == 2 || k == 3; /* param, m, v */
    case NNOPT_OP_BATCHNORM:
        return op->p.bn.training && (k == 3 || k == 4); /* running stats */
    default:
        return 0;
    }
}

static nnopt_status copy_back(nnopt_backend *b, nnopt_tensor *dst, const nnopt_tensor *src,
                              void *staging, nnopt_error *err) {
    size_t nbytes = nnopt_tensor_nbytes(dst);
    nnopt_status st = nnopt_backend_read(b->op_backend, src, staging, nbytes, err);
    return st == NNOPT_OK ? nnopt_backend_write(b, dst, staging, nbytes, err) : st;
}

nnopt_status nnopt_op_fallback_run(nnopt_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out,
                                   nnopt_error *err) {
    enum { MAX_TENSORS = 8 };
    if (n_in > MAX_TENSORS || n_out > MAX_TENSORS)
        return nnopt_error_set(err, NNOPT_STATUS_INTERNAL, "op %s: too many tensors to fall back",
                               nnopt_op_kind_name(op->kind));
    nnopt_tensor *min[MAX_TENSORS] = {0}, *mout[MAX_TENSORS] = {0};
    void *staging = NULL;
    size_t staging_size = 0;
    nnopt_status st = NNOPT_OK;
    /* Outputs are copied over too: some ops accumulate into them. */
    for (int k = 0; st == NNOPT_OK && k < n_in; k++)
        if (in[k]) st = mirror_of(b, in[k], &staging, &staging_size, &min[k], err);
    for (int k = 0; st == NNOPT_OK && k < n_out; k++)
        if (out[k]) st = mirror_of(b, out[k], &staging, &staging_size, &mout[k], err);
    if (st == NNOPT_OK) st = nnopt_backend_run(b->op_backend, op, min, n_in, mout, n_out, err);
    for (int k = 0; st == NNOPT_OK && k < n_out; k++)
        if (out[k]) st = copy_back(b, out[k], mout[k], staging, err);
    for (int k = 0; st == NNOPT_OK && k < n_in; k++)
        if (in[k] && updates_input(op->kind, op, k)) st = copy_back(b, in[k], min[k], staging, err);
    free(staging);
    if (st == NNOPT_OK) b->fallback_calls[op->kind]++;
    return st;
}
