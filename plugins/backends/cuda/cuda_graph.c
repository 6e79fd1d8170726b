/* Repeated op sequences replayed as CUDA graphs (`graphs = auto`).
 *
 * A training or inference loop sends the same ops on the same tensors every
 * step; launching them one by one costs the host several microseconds each
 * (cuDNN's and cuBLAS's own work included), which for small layers on a large
 * GPU is longer than the kernels run. The ops between two points where the
 * host looks at or changes device memory (tensor_write/read/zero/alloc/free,
 * synchronize, a compiled program, and the ops that wait for the device) form
 * a segment. A segment's ops are recorded as they run; when the same sequence
 * (same kinds, parameters, tensors, data addresses and shapes) comes again,
 * its ops are only compared as they arrive, and at the segment's end it is
 * captured into a graph (cudaStreamBeginCapture) and launched; after that,
 * each repetition is one cudaGraphLaunch. An op that differs from the
 * recorded sequence makes the ops held back so far run at once, in order, and
 * recording go on from there. A matched op is identical to one that ran
 * before without error, so holding it back does not change what `run`
 * reports. A capture that fails (an op that allocates or waits) runs the ops
 * directly instead and is not tried again for that sequence. */
#include "cuda_internal.h"

#include <stdlib.h>
#include <string.h>

enum { GRAPH_IDLE = 0, GRAPH_RECORDING, GRAPH_MATCHING };

/* Everything about a tensor that an op's launch depends on. */
static void record_tensor(cuda_recorded_tensor *r, nnopt_tensor *t) {
    memset(r, 0, sizeof *r);
    r->tensor = t;
    if (t == NULL) return;
    r->data = t->data;
    r->dtype = (int32_t)t->dtype;
    r->ndim = t->ndim;
    for (int i = 0; i < t->ndim && i < NNOPT_MAX_DIMS; i++) r->shape[i] = t->shape[i];
}

static int fill_record(cuda_recorded_op *r, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                       nnopt_tensor *const *out, int n_out) {
    if (n_in < 0 || n_out < 0 || n_in > CUDA_GRAPH_MAX_OP_TENSORS ||
        n_out > CUDA_GRAPH_MAX_OP_TENSORS)
        return 0;
    memset(r, 0, sizeof *r);
    r->op = *op;
    r->n_in = n_in;
    r->n_out = n_out;
    for (int i = 0; i < n_in; i++) record_tensor(&r->in[i], in[i]);
    for (int i = 0; i < n_out; i++) record_tensor(&r->out[i], out[i]);
    return 1;
}

/* Records are zeroed before they are filled, padding included. */
static int same_record(const cuda_recorded_op *a, const cuda_recorded_op *b) {
    return memcmp(a, b, sizeof *a) == 0;
}

/* The op as it was sent: its tensors as recorded then, not the objects,
 * which may have changed or gone since (a view is freed without the backend
 * seeing it). One copy per object, so that ops see the same aliasing. */
static nnopt_status run_record(cuda_backend *b, const cuda_recorded_op *r) {
    enum { MAX_TENSORS = 2 * CUDA_GRAPH_MAX_OP_TENSORS };
    const cuda_recorded_tensor *recorded[MAX_TENSORS];
    nnopt_tensor copies[MAX_TENSORS], *args[MAX_TENSORS];
    const int n = r->n_in + r->n_out;
    for (int i = 0; i < n; i++) {
        const cuda_recorded_tensor *t = i < r->n_in ? &r->in[i] : &r->out[i - r->n_in];
        recorded[i] = t;
        args[i] = NULL;
        if (t->tensor == NULL) continue;
        for (int k = 0; k < i && args[i] == NULL; k++)
            if (recorded[k]->tensor == t->tensor) args[i] = args[k];
        if (args[i] != NULL) continue;
        memset(&copies[i], 0, sizeof copies[i]);
        copies[i].dtype = (nnopt_dtype)t->dtype;
        copies[i].ndim = t->ndim;
        memcpy(copies[i].shape, t->shape, sizeof copies[i].shape);
        copies[i].data = t->data;
        args[i] = &copies[i];
    }
    return cuda_execute_op(b, &r->op, args, r->n_in, args + r->n_in, r->n_out);
}

static nnopt_status run_records(cuda_backend *b, const cuda_recorded_op *ops, int n) {
    nnopt_status status = NNOPT_OK;
    for (int i = 0; status == NNOPT_OK && i < n; i++) status = run_record(b, &ops[i]);
    return status;
}

static int reserve_records(cuda_recorded_op **ops, int *capacity, int wanted) {
    if (wanted <= *capacity) return 1;
    int grown = *capacity > 0 ? *capacity * 2 : 256;
    while (grown < wanted) grown *= 2;
    cuda_recorded_op *more = realloc(*ops, (size_t)grown * sizeof *more);
    if (more == NULL) return 0;
    *ops = more;
    *capacity = grown;
    return 1;
}

static void drop_exec(cuda_graph_entry *e) {
    if (e->exec != NULL) cudaGraphExecDestroy(e->exec);
    e->exec = NULL;
}

/* The entry whose sequence starts with r (one at most: store_recording
 * replaces an entry that starts the same way). */
static int entry_starting_with(const cuda_graph_state *g, const cuda_recorded_op *r) {
    for (int i = 0; i < g->n_entries; i++)
        if (g->entries[i].n_ops > 0 && same_record(&g->entries[i].ops[0], r)) return i;
    return -1;
}

/* The recorded segment becomes an entry: in place of the one that starts
 * the same way, else a free slot, else the least recently used. */
static void store_recording(cuda_graph_state *g) {
    if (g->n_rec <= 0 || g->rec_failed) return;
    int slot = entry_starting_with(g, &g->rec[0]);
    if (slot < 0 && g->n_entries < CUDA_GRAPH_ENTRIES) slot = g->n_entries++;
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < g->n_entries; i++)
            if (g->entries[i].last_used < g->entries[slot].last_used) slot = i;
    }
    cuda_graph_entry *e = &g->entries[slot];
    /* The same sequence again after its capture failed: not tried again. */
    const int failed_before = e->failed && e->n_ops == g->n_rec &&
                              memcmp(e->ops, g->rec, (size_t)g->n_rec * sizeof *g->rec) == 0;
    drop_exec(e);
    /* Swap buffers: the entry keeps the recording, recording reuses the old one. */
    cuda_recorded_op *old_ops = e->ops;
    const int old_capacity = e->capacity;
    e->ops = g->rec;
    e->capacity = g->rec_capacity;
    e->n_ops = g->n_rec;
    e->failed = failed_before;
    e->last_used = ++g->clock;
    g->rec = old_ops;
    g->rec_capacity = old_capacity;
    g->n_rec = 0;
}

/* Captures e's ops (held back, all matched in this segment) into a graph;
 * e->exec stays NULL and e->failed is set when that is not possible. */
static void capture(cuda_backend *b, cuda_graph_entry *e) {
    cuda_graph_state *g = &b->graphs;
    if (cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        e->failed = 1;
        return;
    }
    g->capturing = 1;
    nnopt_status status = run_records(b, e->ops, e->n_ops);
    if (status == NNOPT_OK) status = cuda_flush_updates(b);
    g->capturing = 0;
    /* Updates an op queued during a failed capture were never sent: the
     * direct run that follows queues them again. */
    b->pending_updates.n = 0;
    cudaGraph_t graph = NULL;
    cudaError_t error = cudaStreamEndCapture(b->stream, &graph);
    /* Auto-free: memory a library allocated inside the capture and did not
     * free there would otherwise make the next launch fail. */
    if (status == NNOPT_OK && error == cudaSuccess && graph != NULL)
        error = cudaGraphInstantiate(&e->exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
    if (graph != NULL) cudaGraphDestroy(graph);
    if (status != NNOPT_OK || error != cudaSuccess || e->exec == NULL) {
        cudaGetLastError(); /* capture errors do not stick; clear the last one */
        drop_exec(e);
        e->failed = 1;
        g->failed_captures++;
        return;
    }
    g->captures++;
}

nnopt_status cuda_graph_segment_end(cuda_backend *b) {
    cuda_graph_state *g = &b->graphs;
    const int mode = g->mode;
    g->mode = GRAPH_IDLE;
    if (mode == GRAPH_MATCHING) {
        cuda_graph_entry *e = &g->entries[g->candidate];
        e->last_used = ++g->clock;
        if (g->position < e->n_ops) {
            /* The segment ended inside the sequence: its ops run now. */
            nnopt_status status = run_records(b, e->ops, g->position);
            return status == NNOPT_OK ? cuda_flush_updates(b) : status;
        }
        if (e->exec == NULL && !e->failed) capture(b, e);
        if (e->exec != NULL) {
            g->replays++;
            return cuda_check(b, cudaGraphLaunch(e->exec, b->stream), "cudaGraphLaunch");
        }
        nnopt_status status = run_records(b, e->ops, e->n_ops);
        return status == NNOPT_OK ? cuda_flush_updates(b) : status;
    }
    nnopt_status status = cuda_flush_updates(b);
    if (mode == GRAPH_RECORDING) store_recording(g);
    g->n_rec = 0;
    return status;
}

/* op differs from the sequence being matched: the ops held back run now and
 * become the start of a recording. */
static nnopt_status diverge(cuda_backend *b) {
    cuda_graph_state *g = &b->graphs;
    const cuda_graph_entry *e = &g->entries[g->candidate];
    g->mode = GRAPH_RECORDING;
    g->rec_failed = 0;
    g->n_rec = 0;
    if (!reserve_records(&g->rec, &g->rec_capacity, g->position))
        g->rec_failed = 1;
    else {
        memcpy(g->rec, e->ops, (size_t)g->position * sizeof *g->rec);
        g->n_rec = g->position;
    }
    nnopt_status status = run_records(b, e->ops, g->position);
    /* Not kept to be matched: a matched op must be one that ran without error. */
    if (status != NNOPT_OK) g->rec_failed = 1;
    return status;
}

nnopt_status cuda_graph_run(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    cuda_graph_state *g = &b->graphs;
    cuda_recorded_op r;
    if (!fill_record(&r, op, in, n_in, out, n_out)) {
        nnopt_status status = cuda_graph_segment_end(b);
        return status == NNOPT_OK ? cuda_execute_op(b, op, in, n_in, out, n_out) : status;
    }
    if (g->mode == GRAPH_MATCHING) {
        const cuda_graph_entry *e = &g->entries[g->candidate];
        if (g->position < e->n_ops && same_record(&e->ops[g->position], &r)) {
            g->position++;
            return NNOPT_OK;
        }
        nnopt_status status = diverge(b);
        if (status != NNOPT_OK) return status;
    } else if (g->mode == GRAPH_IDLE) {
        const int k = entry_starting_with(g, &r);
        if (k >= 0 && !g->entries[k].failed) {
            g->mode = GRAPH_MATCHING;
            g->candidate = k;
            g->position = 1;
            return NNOPT_OK;
        }
        g->mode = GRAPH_RECORDING;
        g->rec_failed = 0;
        g->n_rec = 0;
    }
    if (!g->rec_failed && reserve_records(&g->rec, &g->rec_capacity, g->n_rec + 1))
        g->rec[g->n_rec++] = r;
    else
        g->rec_failed = 1;
    nnopt_status status = cuda_execute_op(b, op, in, n_in, out, n_out);
    if (status != NNOPT_OK) g->rec_failed = 1;
    return status;
}

void cuda_graph_invalidate(cuda_backend *b) {
    cuda_graph_state *g = &b->graphs;
    for (int i = 0; i < g->n_entries; i++) drop_exec(&g->entries[i]);
}

void cuda_graph_free(cuda_backend *b) {
    cuda_graph_state *g = &b->graphs;
    for (int i = 0; i < g->n_entries; i++) {
        drop_exec(&g->entries[i]);
        free(g->entries[i].ops);
    }
    free(g->rec);
    memset(g, 0, sizeof *g);
}
