#include "exec_program.h"

#include <stdlib.h>
#include <string.h>

/* Tensor table: node i's value at i, its aux tensors after every node. */
static int aux_index(const nnopt_exec *ex, int node, int k) {
    return ex->net->graph->n_nodes + node * NNOPT_EXEC_AUX + k;
}

_Static_assert(NNOPT_EXEC_MAX_ARGS <= NNOPT_PROGRAM_MAX_ARGS, "a step holds every op argument");

static int arg_index(const nnopt_exec *ex, nnopt_exec_arg a) {
    return a.aux < 0 ? a.node : aux_index(ex, a.node, a.aux);
}

static void describe_tensor(const nnopt_tensor *t, nnopt_program_tensor *d) {
    memset(d, 0, sizeof *d);
    d->alias_of = -1;
    if (!t) {
        d->flags = NNOPT_PROGRAM_TENSOR_UNUSED;
        return;
    }
    d->dtype = t->dtype;
    d->ndim = t->ndim;
    memcpy(d->shape, t->shape, sizeof d->shape);
}

/* Which tensors outside code reads or writes: in inference only the input,
 * the network's state and the logits, so every other value may stay inside
 * fused kernels; in training, backward reads them all. */
static int external(const nnopt_exec *ex, int node) {
    const nnopt_graph *g = ex->net->graph;
    return ex->training || node == g->input || node == g->output ||
           nnopt_node_is_state(g->nodes[node].kind);
}

static nnopt_status record(nnopt_exec *ex, nnopt_program *prog, nnopt_program_tensor *tensors,
                           nnopt_program_step *steps) {
    const nnopt_graph *g = ex->net->graph;
    int n_tensors = g->n_nodes * (1 + NNOPT_EXEC_AUX);
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        describe_tensor(ex->value[i], &tensors[i]);
        ex->program_tensors[i] = ex->value[i];
        if (external(ex, i)) tensors[i].flags |= NNOPT_PROGRAM_TENSOR_EXTERNAL;
        if (nnopt_exec_is_view(ex, i)) tensors[i].alias_of = n->inputs[0];
        for (int k = 0; k < NNOPT_EXEC_AUX; k++) {
            nnopt_tensor *t = ex->aux[i * NNOPT_EXEC_AUX + k];
            describe_tensor(t, &tensors[aux_index(ex, i, k)]);
            ex->program_tensors[aux_index(ex, i, k)] = t;
            if (t) tensors[aux_index(ex, i, k)].flags |= NNOPT_PROGRAM_TENSOR_EXTERNAL;
        }
    }
    int n_steps = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        nnopt_program_step *s = &steps[n_steps];
        memset(s, 0, sizeof *s);
        int n_out = nnopt_exec_forward_op(ex, i, &s->op);
        if (!n_out) continue;
        nnopt_exec_arg in[NNOPT_EXEC_MAX_ARGS], out[3];
        s->n_in = nnopt_exec_forward_args(ex, i, in, out);
        for (int k = 0; k < s->n_in; k++) s->in[k] = arg_index(ex, in[k]);
        s->n_out = n_out;
        for (int k = 0; k < n_out; k++) s->out[k] = arg_index(ex, out[k]);
        if (n->kind == NNOPT_NODE_DROPOUT) {
            /* Given at every call; recorded as 0 so that equal programs compare equal. */
            s->flags |= NNOPT_PROGRAM_STEP_DYNAMIC;
            s->op.p.dropout.seed = 0;
        }
        ex->program_nodes[n_steps++] = i;
    }
    *prog = (nnopt_program){sizeof *prog, n_tensors, n_steps, tensors, steps};
    ex->program_steps = n_steps;
    return NNOPT_OK;
}

nnopt_status nnopt_exec_program_prepare(nnopt_exec *ex, nnopt_error *err) {
    nnopt_network *net = ex->net;
    if (!nnopt_kernels_wanted(&net->kernels)) return NNOPT_OK;
    size_t n_nodes = (size_t)net->graph->n_nodes, n_tensors = n_nodes * (1 + NNOPT_EXEC_AUX);
    nnopt_program_tensor *tensors = calloc(n_tensors, sizeof *tensors);
    nnopt_program_step *steps = calloc(n_nodes, sizeof *steps);
    ex->program_tensors = calloc(n_tensors, sizeof *ex->program_tensors);
    ex->program_ops = calloc(n_nodes, sizeof *ex->program_ops);
    ex->program_nodes = calloc(n_nodes, sizeof *ex->program_nodes);
    nnopt_status st = NNOPT_OK;
    if (!tensors || !steps || !ex->program_tensors || !ex->program_ops || !ex->program_nodes)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_program prog;
    if (st == NNOPT_OK) st = record(ex, &prog, tensors, steps);
    if (st == NNOPT_OK)
        st = nnopt_kernels_get(&net->kernels, net->backend, ex->batch, ex->training, &prog,
                               &ex->program, err);
    for (int s = 0; st == NNOPT_OK && s < ex->program_steps; s++) ex->program_ops[s] = steps[s].op;
    free(tensors);
    free(steps);
    if (st != NNOPT_OK || !ex->program) nnopt_exec_program_free(ex);
    return st;
}

nnopt_status nnopt_exec_program_forward(nnopt_exec *ex, nnopt_error *err) {
    nnopt_backend *b = ex->net->backend;
    for (int s = 0; s < ex->program_steps; s++)
        if (ex->net->graph->nodes[ex->program_nodes[s]].kind == NNOPT_NODE_DROPOUT)
            nnopt_exec_forward_op(ex, ex->program_nodes[s], &ex->program_ops[s]);
    nnopt_plugin_error_take();
    nnopt_status st = b->vt->program_run(b->ctx, ex->program, ex->program_ops, ex->program_tensors);
    if (st == NNOPT_OK) return st;
    const char *why = nnopt_plugin_error_take();
    return nnopt_error_set(err, st, "%s backend: compiled forward pass: %s", b->plugin->desc->name,
                           why[0] ? why : nnopt_status_name(st));
}

void nnopt_exec_program_free(nnopt_exec *ex) {
    /* The compiled program itself is the network's (shared by executors of
     * the same shape). */
    ex->program = NULL;
    free(ex->program_tensors);
    free(ex->program_ops);
    free(ex->program_nodes);
    ex->program_tensors = NULL;
    ex->program_ops = NULL;
    ex->program_nodes = NULL;
    ex->program_steps = 0;
}
