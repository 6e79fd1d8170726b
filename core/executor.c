#include "clock.h"
#include "executor.h"
#include "exec_program.h"
#include "float_values.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void batch_shape(const nnopt_graph_node *n, int64_t batch, int64_t shape[NNOPT_MAX_DIMS]) {
    memcpy(shape, n->shape, sizeof n->shape);
    shape[0] = batch;
}

static int consumers(const nnopt_graph *g, int id) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) count += g->nodes[i].inputs[k] == id;
    return count + (id == g->output);
}

/* Per-node extras: batchnorm's saved statistics (and a dx sink when its
 * input needs no gradient), dropout's mask. */
static nnopt_status allocate_aux(nnopt_exec *ex, int i, const int64_t *shape, nnopt_error *err) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[i];
    nnopt_backend *b = ex->net->backend;
    nnopt_dtype dt = ex->net->graph->dtype;
    nnopt_tensor **aux = &ex->aux[i * NNOPT_EXEC_AUX];
    nnopt_status st = NNOPT_OK;
    if (n->kind == NNOPT_NODE_BATCHNORM && ex->training) {
        int64_t channels[1] = {n->shape[1]};
        st = nnopt_backend_tensor_new(b, dt, 1, channels, &aux[0], err);
        if (st == NNOPT_OK) st = nnopt_backend_tensor_new(b, dt, 1, channels, &aux[1], err);
        if (st == NNOPT_OK && !ex->needs_grad[n->inputs[0]])
            st = nnopt_backend_tensor_new(b, dt, n->ndim, shape, &aux[2], err);
    } else if (n->kind == NNOPT_NODE_DROPOUT && ex->training) {
        st = nnopt_backend_tensor_new(b, dt, n->ndim, shape, &aux[0], err);
    }
    return st;
}

/* The node whose op computes node s's value: s, or the conv a batchnorm s
 * is folded into. */
static int value_producer(const nnopt_exec *ex, int s) {
    const nnopt_graph *g = ex->net->graph;
    if (ex->folded_into && g->nodes[s].kind == NNOPT_NODE_BATCHNORM &&
        ex->folded_into[g->nodes[s].inputs[0]] == s)
        return g->nodes[s].inputs[0];
    return s;
}

/* The node whose op computes relu r's input. */
static int relu_producer(const nnopt_exec *ex, int r) {
    return value_producer(ex, ex->net->graph->nodes[r].inputs[0]);
}

/* Whether add node j runs inside the conv that computes its first input
 * (conv2d_add_relu). */
static int add_in_conv(const nnopt_exec *ex, int j) {
    return ex->residual_of &&
           ex->residual_of[value_producer(ex, ex->net->graph->nodes[j].inputs[0])] == j;
}

int nnopt_exec_is_view(const nnopt_exec *ex, int j) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[j];
    return n->kind == NNOPT_NODE_FLATTEN || n->kind == NNOPT_NODE_ALIAS ||
           (n->kind == NNOPT_NODE_DROPOUT && !ex->training) ||
           (ex->folded_into && n->kind == NNOPT_NODE_BATCHNORM &&
            ex->folded_into[n->inputs[0]] == j) ||
           (ex->bn_relu && n->kind == NNOPT_NODE_ACT && ex->bn_relu[n->inputs[0]] == j) ||
           (ex->relu_into && n->kind == NNOPT_NODE_ACT &&
            ex->relu_into[relu_producer(ex, j)] == j) ||
           (n->kind == NNOPT_NODE_ADD && add_in_conv(ex, j)) ||
           (ex->bn_add_into && n->kind == NNOPT_NODE_BATCHNORM && ex->bn_add_into[j] >= 0);
}

/* The batchnorm that add node i runs as batchnorm_add_relu, or -1. */
static int batchnorm_in_add(const nnopt_exec *ex, int i) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[i];
    if (!ex->bn_add_into || n->kind != NNOPT_NODE_ADD) return -1;
    for (int k = 0; k < 2; k++)
        if (ex->bn_add_into[n->inputs[k]] == i) return n->inputs[k];
    return -1;
}

/* Index of the last node that reads each node's value (views extend their
 * source's life); the output lives to the end. */
static int *last_readers(const nnopt_exec *ex) {
    const nnopt_graph *g = ex->net->graph;
    int *last = malloc((size_t)g->n_nodes * sizeof *last);
    if (!last) return NULL;
    for (int i = 0; i < g->n_nodes; i++) last[i] = i;
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (last[g->nodes[j].inputs[k]] < j) last[g->nodes[j].inputs[k]] = j;
    last[g->output] = INT_MAX;
    for (int j = g->n_nodes - 1; j >= 0; j--) {
        int x = g->nodes[j].inputs[0];
        if (nnopt_exec_is_view(ex, j) && last[x] < last[j]) last[x] = last[j];
    }
    return last;
}

/* Shared-memory plan of an inference executor: which block each value
 * lives in, and how large each block must be. */
typedef struct memory_plan {
    int *last;       /* per node: index of its last reader */
    int *block;      /* per node: its block, -1 when not pooled */
    int *busy_until; /* per block: last reader of its current value */
    int64_t *size;   /* per block: elements */
    int n_blocks;
} memory_plan;

/* Puts node i's value in a block no live value uses: the smallest that
 * fits, else the largest free one (grown), else a new one. Its tensor is a
 * view whose data is filled in once the blocks exist. */
static nnopt_status pooled_value(nnopt_exec *ex, int i, const int64_t *shape, memory_plan *plan,
                                 nnopt_error *err) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[i];
    int64_t need = 1;
    for (int d = 0; d < n->ndim; d++) need *= shape[d];
    int best = -1, largest = -1;
    for (int k = 0; k < plan->n_blocks; k++) {
        if (plan->busy_until[k] >= i) continue;
        if (plan->size[k] >= need && (best < 0 || plan->size[k] < plan->size[best])) best = k;
        if (largest < 0 || plan->size[k] > plan->size[largest]) largest = k;
    }
    if (best < 0) best = largest >= 0 ? largest : plan->n_blocks++;
    if (plan->size[best] < need) plan->size[best] = need;
    plan->busy_until[best] = plan->last[i];
    plan->block[i] = best;
    nnopt_tensor placeholder = {.dtype = ex->net->graph->dtype};
    ex->value[i] = nnopt_tensor_view(&placeholder, n->ndim, shape);
    return ex->value[i] ? NNOPT_OK
                        : nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
}

/* Allocates the planned blocks and points every pooled value (and the
 * views of them, in node order) at its block. */
static nnopt_status allocate_blocks(nnopt_exec *ex, const memory_plan *plan, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    ex->pool = calloc((size_t)(plan->n_blocks ? plan->n_blocks : 1), sizeof *ex->pool);
    if (!ex->pool) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < plan->n_blocks; k++, ex->n_pool++) {
        nnopt_status st = nnopt_backend_tensor_new(ex->net->backend, g->dtype, 1, &plan->size[k],
                                                   &ex->pool[k], err);
        if (st != NNOPT_OK) return st;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        if (plan->block[i] >= 0)
            ex->value[i]->data = ex->pool[plan->block[i]]->data;
        else if (nnopt_exec_is_view(ex, i))
            ex->value[i]->data = ex->value[n->inputs[0]]->data;
    }
    return NNOPT_OK;
}

/* Node i's value (and gradient, when training); views for flatten and for
 * dropout at inference. With a plan, values go into shared blocks. */
static nnopt_status allocate_node(nnopt_exec *ex, int i, memory_plan *plan, nnopt_error *err) {
    nnopt_network *net = ex->net;
    const nnopt_graph *g = net->graph;
    const nnopt_graph_node *n = &g->nodes[i];
    int64_t shape[NNOPT_MAX_DIMS];
    if (nnopt_node_is_state(n->kind)) {
        ex->value[i] = net->param[i];
        ex->grad[i] = net->grad[i];
        ex->needs_grad[i] = ex->training && n->kind == NNOPT_NODE_PARAM;
        return NNOPT_OK;
    }
    batch_shape(n, ex->batch, shape);
    for (int k = 0; k < n->n_inputs; k++) ex->needs_grad[i] |= ex->needs_grad[n->inputs[k]];
    if (!ex->training) ex->needs_grad[i] = 0;
    nnopt_status st = allocate_aux(ex, i, shape, err);
    if (st != NNOPT_OK) return st;
    if (n->kind == NNOPT_NODE_ALIAS && ex->training)
        return nnopt_error_set(err, NNOPT_STATUS_UNSUPPORTED,
                               "model graph: node '%s' was folded after training and cannot "
                               "be trained",
                               n->name);
    if (n->kind != NNOPT_NODE_FLATTEN && nnopt_exec_is_view(ex, i)) {
        /* Identity at inference, or folded into the conv before: a view of the input. */
        ex->value[i] = nnopt_tensor_view(ex->value[n->inputs[0]], n->ndim, shape);
        return ex->value[i] ? NNOPT_OK
                            : nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (n->kind == NNOPT_NODE_FLATTEN) {
        int x = n->inputs[0];
        if (ex->needs_grad[i] && consumers(g, x) > 1)
            return nnopt_error_set(err, NNOPT_STATUS_UNSUPPORTED,
                                   "model graph: a flattened node may have no other consumer");
        ex->value[i] = nnopt_tensor_view(ex->value[x], n->ndim, shape);
        if (ex->needs_grad[i]) ex->grad[i] = nnopt_tensor_view(ex->grad[x], n->ndim, shape);
        if (!ex->value[i] || (ex->needs_grad[i] && !ex->grad[i]))
            return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        return NNOPT_OK;
    }
    if (plan) return pooled_value(ex, i, shape, plan, err);
    st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, shape, &ex->value[i], err);
    if (st == NNOPT_OK && ex->needs_grad[i])
        st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, shape, &ex->grad[i], err);
    /* A node read by several ops receives several gradients; all but the
     * first land in scratch and are added. */
    if (st == NNOPT_OK && ex->needs_grad[i] && consumers(g, i) > 1)
        st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, shape, &ex->scratch[i], err);
    return st;
}

/* Activations and gradients for every non-parameter node. A flatten is a
 * view of its input's value and gradient. */
static nnopt_status allocate(nnopt_exec *ex, int share_memory, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    size_t n = (size_t)g->n_nodes;
    memory_plan plan = {0}, *use_plan = NULL;
    nnopt_status st = NNOPT_OK;
    if (share_memory) {
        plan.last = last_readers(ex);
        plan.block = malloc(n * sizeof *plan.block);
        plan.busy_until = calloc(n, sizeof *plan.busy_until);
        plan.size = calloc(n, sizeof *plan.size);
        if (!plan.last || !plan.block || !plan.busy_until || !plan.size)
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; st == NNOPT_OK && i < n; i++) plan.block[i] = -1;
        use_plan = &plan;
    }
    for (int i = 0; st == NNOPT_OK && i < g->n_nodes; i++) st = allocate_node(ex, i, use_plan, err);
    if (st == NNOPT_OK && use_plan) st = allocate_blocks(ex, use_plan, err);
    free(plan.last);
    free(plan.block);
    free(plan.busy_until);
    free(plan.size);
    return st;
}

/* Sets (*map)[node] = value in a per-node map of the executor (a fusion
 * plan), allocating it, every entry -1, on first use. */
static nnopt_status node_map_set(const nnopt_exec *ex, int32_t **map, int node, int value,
                                 nnopt_error *err) {
    const int nodes = ex->net->graph->n_nodes;
    if (!*map) {
        *map = malloc((size_t)nodes * sizeof **map);
        if (!*map) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        for (int k = 0; k < nodes; k++) (*map)[k] = -1;
    }
    (*map)[node] = value;
    return NNOPT_OK;
}

/* Replaces *t (owned) by a view of `of`. */
static nnopt_status become_view(nnopt_exec *ex, nnopt_tensor **t, const nnopt_tensor *of,
                                nnopt_error *err) {
    nnopt_tensor *view = nnopt_tensor_view(of, (*t)->ndim, (*t)->shape);
    if (!view) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_backend_tensor_free(ex->net->backend, *t);
    *t = view;
    return NNOPT_OK;
}

/* Whether an add's input `a`, that other nodes read too (a residual
 * shortcut), may take the add's gradient (node i's) as its own: the add
 * runs backward first of a's readers, and every node whose gradient shares
 * the add's memory has run backward before another reader adds into it. */
static int shortcut_may_share(const nnopt_exec *ex, int a, int i) {
    const nnopt_graph *g = ex->net->graph;
    int last_sharer = i; /* lowest index: the last to run backward */
    for (int s = 0; s < i; s++)
        if (s != a && ex->grad[s] && ex->grad[s]->data == ex->grad[i]->data) {
            last_sharer = s;
            break;
        }
    for (int c = 0; c < g->n_nodes; c++)
        for (int m = 0; c != i && m < g->nodes[c].n_inputs; m++)
            if (g->nodes[c].inputs[m] == a && c >= last_sharer) return 0;
    return a != g->output;
}

/* The conv whose data gradient can run relu r's backward too
 * (conv2d_bwd_data_add_masked), or -1: r follows an add read by nothing
 * else (a residual block's output), and the first of r's several readers is
 * a conv reading it as its input, so that conv's data gradient is the last
 * one r receives and is added to the others'. */
static int relu_backward_conv(const nnopt_exec *ex, int r) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_graph_node *n = &g->nodes[r];
    const nnopt_backend *b = ex->net->backend;
    if (n->kind != NNOPT_NODE_ACT || n->op.p.act.kind != NNOPT_ACT_RELU || !ex->needs_grad[r] ||
        r == g->output || consumers(g, r) < 2)
        return -1;
    const int p = n->inputs[0];
    if (g->nodes[p].kind != NNOPT_NODE_ADD || consumers(g, p) != 1 || !ex->needs_grad[p] ||
        !ex->grad[p] || !ex->grad[p]->owns_data)
        return -1;
    for (int c = r + 1; c < g->n_nodes; c++) { /* readers come after r */
        const nnopt_graph_node *m = &g->nodes[c];
        int reads = 0;
        for (int k = 0; k < m->n_inputs; k++) reads += m->inputs[k] == r;
        if (!reads) continue;
        const int conv = m->kind == NNOPT_NODE_CONV2D && m->op.kind == NNOPT_OP_CONV2D &&
                         m->inputs[0] == r && reads == 1;
        return conv && b->vt->supports(b->ctx, NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED, g->dtype) ? c
                                                                                              : -1;
    }
    return -1;
}

/* The gradient of an add's input is the add's own gradient, by view, so the
 * add's backward copies nothing for it: where nothing else reads the input,
 * and for a residual shortcut where shortcut_may_share allows (its other
 * readers' gradients are then added into the add's). Consumers before
 * producers, so a chain of adds views the last one's tensor; an add's
 * single-reader input first, so that the shortcut sees it sharing. Safe
 * because an add's gradient is complete, and never written again in the
 * pass, once the add's backward runs. In the same pass (views of views must
 * be made consumers first), a relu after an add whose backward a conv runs
 * (relu_backward_conv) gives the add its own gradient, by view: the
 * residual chain's gradients then share one tensor, updated in place. */
static nnopt_status alias_add_gradients(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const nnopt_graph_node *n = &g->nodes[i];
        const int conv = relu_backward_conv(ex, i);
        if (conv >= 0) {
            nnopt_status st = become_view(ex, &ex->grad[n->inputs[0]], ex->grad[i], err);
            if (st == NNOPT_OK) st = node_map_set(ex, &ex->relu_bwd_in, i, conv, err);
            if (st != NNOPT_OK) return st;
            continue;
        }
        if (n->kind != NNOPT_NODE_ADD || !ex->needs_grad[i] || !ex->grad[i]) continue;
        if (n->inputs[0] == n->inputs[1]) continue;
        for (int shortcut = 0; shortcut < 2; shortcut++)
            for (int k = 0; k < 2; k++) {
                const int a = n->inputs[k];
                const nnopt_node_kind kind = g->nodes[a].kind;
                const nnopt_tensor *own = ex->grad[a];
                if (!ex->needs_grad[a] || nnopt_node_is_state(kind) || kind == NNOPT_NODE_INPUT ||
                    kind == NNOPT_NODE_FLATTEN || !own || !own->owns_data ||
                    nnopt_tensor_numel(own) != nnopt_tensor_numel(ex->grad[i]))
                    continue;
                const int readers = consumers(g, a);
                if (shortcut ? readers < 2 || !shortcut_may_share(ex, a, i) : readers != 1)
                    continue;
                nnopt_status st = become_view(ex, &ex->grad[a], ex->grad[i], err);
                if (st != NNOPT_OK) return st;
            }
    }
    return NNOPT_OK;
}

/* Training: a batchnorm whose only reader is a relu runs as one
 * batchnorm_relu op writing the relu's value, and its gradient op reads the
 * relu's gradient and output, where the backend has both fused ops: a pass
 * over the activations less each way. The batchnorm's value and gradient
 * become views of the relu's (after alias_add_gradients, which may have made
 * the relu's gradient a view itself). */
static nnopt_status fuse_batchnorm_relu(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_backend *b = ex->net->backend;
    if (!b->vt->supports(b->ctx, NNOPT_OP_BATCHNORM_RELU, g->dtype) ||
        !b->vt->supports(b->ctx, NNOPT_OP_BATCHNORM_RELU_BWD, g->dtype))
        return NNOPT_OK;
    nnopt_status st = NNOPT_OK;
    for (int r = 0; st == NNOPT_OK && r < g->n_nodes; r++) {
        const nnopt_graph_node *n = &g->nodes[r];
        if (n->kind != NNOPT_NODE_ACT || n->op.p.act.kind != NNOPT_ACT_RELU) continue;
        const int j = n->inputs[0];
        if (g->nodes[j].kind != NNOPT_NODE_BATCHNORM || consumers(g, j) != 1 ||
            !ex->value[j]->owns_data || ex->needs_grad[j] != ex->needs_grad[r] ||
            (ex->needs_grad[j] && !ex->grad[j]->owns_data))
            continue;
        st = become_view(ex, &ex->value[j], ex->value[r], err);
        if (st == NNOPT_OK && ex->needs_grad[j])
            st = become_view(ex, &ex->grad[j], ex->grad[r], err);
        if (st == NNOPT_OK) st = node_map_set(ex, &ex->bn_relu, j, r, err);
    }
    return st;
}

/* The fused op that runs node p (a conv or an add) with a relu on its
 * output, or the node's own op kind when there is none. */
static nnopt_op_kind with_relu(const nnopt_graph_node *p) {
    if (p->kind == NNOPT_NODE_CONV2D && p->op.kind == NNOPT_OP_CONV2D) return NNOPT_OP_CONV2D_RELU;
    if (p->kind == NNOPT_NODE_ADD && p->op.kind == NNOPT_OP_ADD) return NNOPT_OP_ADD_RELU;
    return p->op.kind;
}

/* Training: an add whose only reader is a relu runs as add_relu writing the
 * relu's value (the add's value becomes a view of it), where the backend
 * has it. The relu's backward still runs, its mask read from its output
 * (x > 0 exactly where relu(x) > 0). */
static nnopt_status fuse_add_relu(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_backend *b = ex->net->backend;
    if (!b->vt->supports(b->ctx, NNOPT_OP_ADD_RELU, g->dtype)) return NNOPT_OK;
    nnopt_status st = NNOPT_OK;
    for (int r = 0; st == NNOPT_OK && r < g->n_nodes; r++) {
        const nnopt_graph_node *n = &g->nodes[r];
        if (n->kind != NNOPT_NODE_ACT || n->op.p.act.kind != NNOPT_ACT_RELU) continue;
        const int i = n->inputs[0];
        if (with_relu(&g->nodes[i]) != NNOPT_OP_ADD_RELU || consumers(g, i) != 1 ||
            !ex->value[i]->owns_data)
            continue;
        st = become_view(ex, &ex->value[i], ex->value[r], err);
        if (st == NNOPT_OK) st = node_map_set(ex, &ex->relu_into, i, r, err);
    }
    return st;
}

/* Training: a batchnorm whose only reader is an add run as add_relu (a
 * residual block's last batchnorm) runs inside that add, as one
 * batchnorm_add_relu op writing the relu's value, where the backend has it:
 * the batchnorm's output is never written nor read back (its backward reads
 * x and the saved statistics, the add's and relu's backward no values but
 * the relu's). The batchnorm becomes a view, of the relu's value. After
 * fuse_add_relu and fuse_batchnorm_relu. */
static nnopt_status fuse_batchnorm_add_relu(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_backend *b = ex->net->backend;
    if (!ex->relu_into || !b->vt->supports(b->ctx, NNOPT_OP_BATCHNORM_ADD_RELU, g->dtype))
        return NNOPT_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        if (n->kind != NNOPT_NODE_ADD || ex->relu_into[i] < 0 || n->inputs[0] == n->inputs[1])
            continue;
        for (int k = 0; k < 2; k++) {
            const int j = n->inputs[k];
            if (g->nodes[j].kind != NNOPT_NODE_BATCHNORM || consumers(g, j) != 1 ||
                (ex->bn_relu && ex->bn_relu[j] >= 0) || !ex->value[j]->owns_data)
                continue;
            nnopt_status st = become_view(ex, &ex->value[j], ex->value[i], err);
            if (st == NNOPT_OK) st = node_map_set(ex, &ex->bn_add_into, j, i, err);
            if (st != NNOPT_OK) return st;
            break;
        }
    }
    return NNOPT_OK;
}

/* Which convs fold into the batchnorm that reads them: the conv's only
 * reader is that batchnorm, in a dtype the host can compute in. */
static nnopt_status plan_folding(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    if (g->dtype != NNOPT_F32 && g->dtype != NNOPT_F64) return NNOPT_OK;
    ex->folded_into = malloc((size_t)g->n_nodes * sizeof *ex->folded_into);
    if (!ex->folded_into) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) ex->folded_into[i] = -1;
    for (int j = 0; j < g->n_nodes; j++) {
        const nnopt_graph_node *n = &g->nodes[j];
        int c = n->inputs[0];
        if (n->kind == NNOPT_NODE_BATCHNORM && g->nodes[c].kind == NNOPT_NODE_CONV2D &&
            g->nodes[c].op.kind == NNOPT_OP_CONV2D && consumers(g, c) == 1)
            ex->folded_into[c] = j;
    }
    return NNOPT_OK;
}

/* Inference: a relu that is the only reader of a conv (with or without a
 * batchnorm folded in) or of an add runs inside that op, where the backend
 * has the fused kind: a pass over the activations less per relu. After
 * plan_folding, before the memory plan (the relu becomes a view). */
static nnopt_status plan_relu_fusion(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_backend *b = ex->net->backend;
    for (int r = 0; r < g->n_nodes; r++) {
        const nnopt_graph_node *n = &g->nodes[r];
        if (n->kind != NNOPT_NODE_ACT || n->op.p.act.kind != NNOPT_ACT_RELU) continue;
        const int p = relu_producer(ex, r);
        const nnopt_op_kind fused = with_relu(&g->nodes[p]);
        if (fused == g->nodes[p].op.kind || consumers(g, n->inputs[0]) != 1 ||
            consumers(g, p) != 1 || !b->vt->supports(b->ctx, fused, g->dtype))
            continue;
        nnopt_status st = node_map_set(ex, &ex->relu_into, p, r, err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

/* Inference: the conv (batchnorm folded in, with a bias) that computes the
 * first input of an add whose relu is fused, and whose value nothing else
 * reads, runs the add and the relu too (conv2d_add_relu, the add's second
 * input as the residual; the add becomes a view): the add's pass over the
 * activations goes. Only where the residual is computed before the conv (a
 * projection shortcut computed after the branch is not). After
 * plan_relu_fusion. */
static nnopt_status plan_residual_fusion(nnopt_exec *ex, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_backend *b = ex->net->backend;
    if (!ex->relu_into || !b->vt->supports(b->ctx, NNOPT_OP_CONV2D_ADD_RELU, g->dtype))
        return NNOPT_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        if (n->kind != NNOPT_NODE_ADD || ex->relu_into[i] < 0 || n->inputs[0] == n->inputs[1])
            continue;
        const int c = value_producer(ex, n->inputs[0]);
        const nnopt_graph_node *conv = &g->nodes[c];
        const int biased = conv->n_inputs == 3 || (ex->folded_into && ex->folded_into[c] >= 0);
        if (with_relu(conv) != NNOPT_OP_CONV2D_RELU || !biased || ex->relu_into[c] >= 0 ||
            consumers(g, n->inputs[0]) != 1 || consumers(g, c) != 1 ||
            value_producer(ex, n->inputs[1]) > c)
            continue;
        nnopt_status st = node_map_set(ex, &ex->residual_of, c, i, err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

static nnopt_status read_doubles(nnopt_backend *b, const nnopt_tensor *t, double *dst,
                                 nnopt_error *err) {
    int64_t n = nnopt_tensor_numel(t);
    nnopt_status st = nnopt_backend_read(b, t, dst, nnopt_tensor_nbytes(t), err);
    if (st == NNOPT_OK && t->dtype == NNOPT_F32) /* widen in place, from the end */
        for (int64_t i = n - 1; i >= 0; i--) dst[i] = ((const float *)dst)[i];
    return st;
}

static nnopt_status write_doubles(nnopt_backend *b, nnopt_tensor *t, double *src,
                                  nnopt_error *err) {
    int64_t n = nnopt_tensor_numel(t);
    if (t->dtype == NNOPT_F32) /* narrow in place, from the start */
        for (int64_t i = 0; i < n; i++) ((float *)src)[i] = (float)src[i];
    return nnopt_backend_write(b, t, src, nnopt_tensor_nbytes(t), err);
}

/* Folded conv weight and bias of batchnorm node j (reading conv c):
 * s = gamma / sqrt(var + eps), w' = w s, b' = beta + (b - mean) s. */
static nnopt_status fold_batchnorm(nnopt_exec *ex, int c, int j, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_graph_node *conv = &g->nodes[c], *bn = &g->nodes[j];
    nnopt_backend *b = ex->net->backend;
    const nnopt_tensor *w = ex->value[conv->inputs[1]];
    int64_t k_out = w->shape[0], per_k = nnopt_tensor_numel(w) / k_out;
    nnopt_tensor **aux = &ex->aux[j * NNOPT_EXEC_AUX];
    nnopt_status st = nnopt_backend_tensor_new(b, g->dtype, w->ndim, w->shape, &aux[0], err);
    if (st == NNOPT_OK) st = nnopt_backend_tensor_new(b, g->dtype, 1, &k_out, &aux[1], err);
    double *wd = malloc((size_t)(k_out * per_k) * sizeof *wd);
    double *stats = calloc((size_t)(5 * k_out), sizeof *stats); /* bias, gamma, beta, mean, var */
    if (st == NNOPT_OK && (!wd || !stats))
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    if (st == NNOPT_OK) st = read_doubles(b, w, wd, err);
    if (st == NNOPT_OK && conv->n_inputs == 3)
        st = read_doubles(b, ex->value[conv->inputs[2]], stats, err);
    for (int k = 1; st == NNOPT_OK && k < 5; k++)
        st = read_doubles(b, ex->value[bn->inputs[k]], stats + k * k_out, err);
    for (int64_t k = 0; st == NNOPT_OK && k < k_out; k++) {
        double scale = stats[k_out + k] / sqrt(stats[4 * k_out + k] + bn->op.p.bn.eps);
        for (int64_t i = 0; i < per_k; i++) wd[k * per_k + i] *= scale;
        stats[k] = stats[2 * k_out + k] + (stats[k] - stats[3 * k_out + k]) * scale;
    }
    if (st == NNOPT_OK) st = write_doubles(b, aux[0], wd, err);
    if (st == NNOPT_OK) st = write_doubles(b, aux[1], stats, err);
    free(wd);
    free(stats);
    return st;
}

static nnopt_status fold_batchnorms(nnopt_exec *ex, nnopt_error *err) {
    nnopt_status st = NNOPT_OK;
    for (int c = 0; ex->folded_into && st == NNOPT_OK && c < ex->net->graph->n_nodes; c++)
        if (ex->folded_into[c] >= 0) st = fold_batchnorm(ex, c, ex->folded_into[c], err);
    return st;
}

static nnopt_status create(nnopt_network *net, int64_t batch, int training, int share_memory,
                           nnopt_exec **out, nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    nnopt_exec *ex = calloc(1, sizeof *ex);
    if (!ex) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    ex->net = net;
    ex->batch = batch;
    ex->training = training;
    size_t n = (size_t)g->n_nodes;
    ex->value = calloc(n, sizeof *ex->value);
    ex->grad = calloc(n, sizeof *ex->grad);
    ex->scratch = calloc(n, sizeof *ex->scratch);
    ex->aux = calloc(n * NNOPT_EXEC_AUX, sizeof *ex->aux);
    ex->seed = net->seed;
    ex->needs_grad = calloc(n, 1);
    ex->grad_ready = calloc(n, 1);
    ex->forward_seconds = calloc(n, sizeof(double));
    ex->backward_seconds = calloc(n, sizeof(double));
    nnopt_status st = NNOPT_OK;
    if (!ex->value || !ex->grad || !ex->scratch || !ex->aux || !ex->needs_grad || !ex->grad_ready ||
        !ex->forward_seconds || !ex->backward_seconds)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    if (st == NNOPT_OK && share_memory) st = plan_folding(ex, err);
    /* Compiled programs get the fused kinds too: the kernel generator runs
     * conv2d_relu and add_relu as its own ops with the relu last, and leaves
     * what it has no kernel for (conv2d_add_relu) to the backend's. */
    if (st == NNOPT_OK && share_memory) st = plan_relu_fusion(ex, err);
    if (st == NNOPT_OK && share_memory) st = plan_residual_fusion(ex, err);
    /* Compiled programs may run a tile's steps image by image, so their
     * values must not share memory. */
    if (st == NNOPT_OK)
        st = allocate(ex, share_memory && !nnopt_kernels_wanted(&net->kernels), err);
    if (st == NNOPT_OK && training) st = alias_add_gradients(ex, err);
    if (st == NNOPT_OK && training) st = fuse_batchnorm_relu(ex, err);
    if (st == NNOPT_OK && training) st = fuse_add_relu(ex, err);
    if (st == NNOPT_OK && training) st = fuse_batchnorm_add_relu(ex, err);
    if (st == NNOPT_OK && share_memory) st = fold_batchnorms(ex, err);
    if (st == NNOPT_OK) st = nnopt_exec_program_prepare(ex, err);
    if (st == NNOPT_OK && training) {
        int64_t label_shape[1] = {batch}, loss_shape[1] = {1};
        st = nnopt_backend_tensor_new(net->backend, NNOPT_I32, 1, label_shape, &ex->labels, err);
        if (st == NNOPT_OK)
            st = nnopt_backend_tensor_new(net->backend, g->dtype, 1, loss_shape, &ex->loss, err);
    }
    if (st != NNOPT_OK) {
        nnopt_exec_free(ex);
        return st;
    }
    *out = ex;
    return NNOPT_OK;
}

nnopt_status nnopt_exec_create(nnopt_network *net, int64_t batch, int training, nnopt_exec **out,
                               nnopt_error *err) {
    return create(net, batch, training, 0, out, err);
}

nnopt_status nnopt_exec_create_inference(nnopt_network *net, int64_t batch, nnopt_exec **out,
                                         nnopt_error *err) {
    return create(net, batch, 0, 1, out, err);
}

void nnopt_exec_free(nnopt_exec *ex) {
    if (!ex) return;
    nnopt_backend *b = ex->net->backend;
    const nnopt_graph *g = ex->net->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        for (int k = 0; ex->aux && k < NNOPT_EXEC_AUX; k++)
            nnopt_backend_tensor_free(b, ex->aux[i * NNOPT_EXEC_AUX + k]);
        if (nnopt_node_is_state(g->nodes[i].kind)) continue; /* the network's */
        if (ex->value) nnopt_backend_tensor_free(b, ex->value[i]);
        if (ex->grad) nnopt_backend_tensor_free(b, ex->grad[i]);
        if (ex->scratch) nnopt_backend_tensor_free(b, ex->scratch[i]);
    }
    free(ex->aux);
    for (int k = 0; k < ex->n_pool; k++) nnopt_backend_tensor_free(b, ex->pool[k]);
    free(ex->pool);
    free(ex->folded_into);
    free(ex->bn_relu);
    free(ex->relu_into);
    free(ex->residual_of);
    free(ex->bn_add_into);
    free(ex->relu_bwd_in);
    nnopt_exec_program_free(ex);
    nnopt_backend_tensor_free(b, ex->labels);
    for (int k = 0; k < NNOPT_MAX_SOFT_TERMS; k++) nnopt_backend_tensor_free(b, ex->soft[k]);
    nnopt_backend_tensor_free(b, ex->loss);
    free(ex->value);
    free(ex->grad);
    free(ex->scratch);
    free(ex->needs_grad);
    free(ex->grad_ready);
    free(ex->forward_seconds);
    free(ex->backward_seconds);
    free(ex);
}

/* Runs op, timing it into *seconds when profiling. */
static nnopt_status run_op(nnopt_exec *ex, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out, double *seconds, nnopt_error *err) {
    nnopt_backend *b = ex->net->backend;
    if (!ex->profile) return nnopt_backend_run(b, op, in, n_in, out, n_out, err);
    double start = nnopt_now_seconds();
    nnopt_status st = nnopt_backend_run(b, op, in, n_in, out, n_out, err);
    if (st == NNOPT_OK) st = nnopt_backend_sync(b, err);
    *seconds += nnopt_now_seconds() - start;
    return st;
}

int nnopt_exec_forward_op(const nnopt_exec *ex, int i, nnopt_op *op) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[i];
    if (n->kind == NNOPT_NODE_INPUT || nnopt_node_is_state(n->kind) || nnopt_exec_is_view(ex, i))
        return 0;
    const int bn = batchnorm_in_add(ex, i);
    if (bn >= 0) {
        *op = ex->net->graph->nodes[bn].op;
        op->kind = NNOPT_OP_BATCHNORM_ADD_RELU;
        op->p.bn.training = ex->training;
        return ex->training ? 3 : 1;
    }
    *op = n->op;
    if (ex->relu_into && ex->relu_into[i] >= 0) op->kind = with_relu(n);
    if (ex->residual_of && ex->residual_of[i] >= 0) op->kind = NNOPT_OP_CONV2D_ADD_RELU;
    if (n->kind == NNOPT_NODE_BATCHNORM) {
        op->p.bn.training = ex->training;
        if (ex->bn_relu && ex->bn_relu[i] >= 0) op->kind = NNOPT_OP_BATCHNORM_RELU;
        return ex->training ? 3 : 1;
    }
    if (n->kind == NNOPT_NODE_DROPOUT) {
        /* A fresh mask every step and node, the same on every backend. */
        op->p.dropout.seed = ex->seed * 0x9e3779b97f4a7c15ULL + ex->step * 1000003ULL + (uint64_t)i;
        return 2;
    }
    return 1;
}

int nnopt_exec_forward_args(const nnopt_exec *ex, int i, nnopt_exec_arg *in, nnopt_exec_arg *out) {
    const nnopt_graph *g = ex->net->graph;
    const nnopt_graph_node *n = &g->nodes[i];
    int n_in = n->n_inputs, owner = i; /* owner: the node whose aux tensors are written */
    for (int k = 0; k < n_in; k++) in[k] = (nnopt_exec_arg){n->inputs[k], -1};
    if (ex->folded_into && ex->folded_into[i] >= 0) { /* batchnorm folded in */
        in[1] = (nnopt_exec_arg){ex->folded_into[i], 0};
        in[2] = (nnopt_exec_arg){ex->folded_into[i], 1};
        n_in = 3;
    }
    if (ex->residual_of && ex->residual_of[i] >= 0) /* its add's other input */
        in[n_in++] = (nnopt_exec_arg){g->nodes[ex->residual_of[i]].inputs[1], -1};
    const int bn = batchnorm_in_add(ex, i);
    if (bn >= 0) { /* the batchnorm's inputs, then the add's other input */
        const nnopt_graph_node *m = &g->nodes[bn];
        for (int k = 0; k < m->n_inputs; k++) in[k] = (nnopt_exec_arg){m->inputs[k], -1};
        in[m->n_inputs] = (nnopt_exec_arg){n->inputs[n->inputs[0] == bn], -1};
        n_in = m->n_inputs + 1;
        owner = bn;
    }
    out[0] = (nnopt_exec_arg){i, -1};
    for (int k = 1; k < 3; k++) out[k] = (nnopt_exec_arg){owner, (int8_t)(k - 1)};
    return n_in;
}

static nnopt_tensor *arg_tensor(const nnopt_exec *ex, nnopt_exec_arg a) {
    return a.aux < 0 ? ex->value[a.node] : ex->aux[a.node * NNOPT_EXEC_AUX + a.aux];
}

nnopt_status nnopt_exec_forward(nnopt_exec *ex, const void *x, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    nnopt_tensor *input = ex->value[g->input];
    nnopt_status st =
        nnopt_backend_write(ex->net->backend, input, x, nnopt_tensor_nbytes(input), err);
    if (ex->training) ex->step++;
    if (st == NNOPT_OK && ex->program && !ex->profile) return nnopt_exec_program_forward(ex, err);
    for (int i = 0; st == NNOPT_OK && i < g->n_nodes; i++) {
        nnopt_op op;
        int n_out = nnopt_exec_forward_op(ex, i, &op);
        if (!n_out) continue;
        nnopt_exec_arg in_args[NNOPT_EXEC_MAX_ARGS], out_args[3];
        const int n_in = nnopt_exec_forward_args(ex, i, in_args, out_args);
        nnopt_tensor *in[NNOPT_EXEC_MAX_ARGS], *out[3];
        for (int k = 0; k < n_in; k++) in[k] = arg_tensor(ex, in_args[k]);
        for (int k = 0; k < n_out; k++) out[k] = arg_tensor(ex, out_args[k]);
        st = run_op(ex, &op, in, n_in, out, n_out, &ex->forward_seconds[i], err);
    }
    return st;
}

/* Where the gradient for node `target` should be written: its gradient
 * tensor the first time in this pass, scratch (to be added) after that. */
static nnopt_tensor *grad_slot(nnopt_exec *ex, int target) {
    return ex->grad_ready[target] ? ex->scratch[target] : ex->grad[target];
}

static nnopt_status grad_written(nnopt_exec *ex, int target, double *seconds, nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    if (!ex->grad_ready[target]) {
        ex->grad_ready[target] = 1;
        /* A flatten's gradient is a view of its input's: that one is ready too. */
        if (g->nodes[target].kind == NNOPT_NODE_FLATTEN)
            ex->grad_ready[g->nodes[target].inputs[0]] = 1;
        return NNOPT_OK;
    }
    nnopt_op add = {.kind = NNOPT_OP_ADD};
    nnopt_tensor *in[2] = {ex->grad[target], ex->scratch[target]};
    return run_op(ex, &add, in, 2, &ex->grad[target], 1, seconds, err);
}

/* Runs `op` producing the gradient of input `target` of the current node. */
static nnopt_status emit_grad(nnopt_exec *ex, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                              int target, double *seconds, nnopt_error *err) {
    if (!ex->needs_grad[target]) return NNOPT_OK;
    const nnopt_backend *b = ex->net->backend;
    if (ex->grad_ready[target] && op->kind == NNOPT_OP_CONV2D_BWD_DATA &&
        b->vt->supports(b->ctx, NNOPT_OP_CONV2D_BWD_DATA_ADD, ex->net->graph->dtype)) {
        /* a later gradient of a node several convs read: added as it is written */
        nnopt_op add_into = *op;
        add_into.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD;
        return run_op(ex, &add_into, in, n_in, &ex->grad[target], 1, seconds, err);
    }
    nnopt_tensor *out = grad_slot(ex, target);
    nnopt_status st = run_op(ex, op, in, n_in, &out, 1, seconds, err);
    return st == NNOPT_OK ? grad_written(ex, target, seconds, err) : st;
}

static nnopt_status backward_node(nnopt_exec *ex, int i, nnopt_error *err) {
    const nnopt_graph_node *n = &ex->net->graph->nodes[i];
    nnopt_tensor *dy = ex->grad[i], *y = ex->value[i];
    double *t = &ex->backward_seconds[i];
    const int32_t *inp = n->inputs;
    nnopt_status st = NNOPT_OK;
    nnopt_op op = n->op;
    switch (n->kind) {
    case NNOPT_NODE_CONV2D:
    case NNOPT_NODE_DENSE: {
        int conv = n->kind == NNOPT_NODE_CONV2D;
        nnopt_tensor *x = ex->value[inp[0]], *w = ex->value[inp[1]];
        op.kind = conv ? NNOPT_OP_CONV2D_BWD_DATA : NNOPT_OP_DENSE_BWD_DATA;
        if (conv && ex->relu_bwd_in && ex->relu_bwd_in[inp[0]] == i) {
            /* the last gradient of a relu's output, and the relu's backward */
            if (!ex->grad_ready[inp[0]])
                return nnopt_error_set(err, NNOPT_STATUS_INTERNAL,
                                       "executor: node '%s' runs its input's relu backward "
                                       "before the input's other gradients arrived",
                                       n->name);
            op.kind = NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED;
            st = run_op(ex, &op, (nnopt_tensor *[]){dy, w, x}, 3, &ex->grad[inp[0]], 1, t, err);
        } else {
            st = emit_grad(ex, &op, (nnopt_tensor *[]){dy, w}, 2, inp[0], t, err);
        }
        op.kind = conv ? NNOPT_OP_CONV2D_BWD_FILTER : NNOPT_OP_DENSE_BWD_WEIGHT;
        if (st == NNOPT_OK) st = emit_grad(ex, &op, (nnopt_tensor *[]){x, dy}, 2, inp[1], t, err);
        op.kind = NNOPT_OP_BIAS_BWD;
        if (st == NNOPT_OK && n->n_inputs == 3)
            st = emit_grad(ex, &op, (nnopt_tensor *[]){dy}, 1, inp[2], t, err);
        return st;
    }
    case NNOPT_NODE_POOL2D:
    case NNOPT_NODE_ACT:
        if (ex->bn_relu && ex->bn_relu[inp[0]] == i) return NNOPT_OK; /* in batchnorm_relu_bwd */
        if (ex->relu_bwd_in && ex->relu_bwd_in[i] >= 0) { /* done by a conv's data gradient */
            ex->grad_ready[inp[0]] = 1;
            return NNOPT_OK;
        }
        op.kind = n->kind == NNOPT_NODE_POOL2D ? NNOPT_OP_POOL2D_BWD : NNOPT_OP_ACT_BWD;
        return emit_grad(ex, &op, (nnopt_tensor *[]){ex->value[inp[0]], y, dy}, 3, inp[0], t, err);
    case NNOPT_NODE_BATCHNORM: {
        nnopt_tensor **aux = &ex->aux[i * NNOPT_EXEC_AUX];
        op.kind = NNOPT_OP_BATCHNORM_BWD;
        /* Fused: dy is the relu's gradient, and y (the relu's output) masks it. */
        const int fused = ex->bn_relu && ex->bn_relu[i] >= 0;
        if (fused) op.kind = NNOPT_OP_BATCHNORM_RELU_BWD;
        nnopt_tensor *in[6] = {ex->value[inp[0]], ex->value[inp[1]], dy, aux[0], aux[1], y};
        nnopt_tensor *out[3] = {ex->needs_grad[inp[0]] ? grad_slot(ex, inp[0]) : aux[2],
                                grad_slot(ex, inp[1]), grad_slot(ex, inp[2])};
        st = run_op(ex, &op, in, 5 + fused, out, 3, t, err);
        for (int k = 0; st == NNOPT_OK && k < 3; k++)
            if (ex->needs_grad[inp[k]]) st = grad_written(ex, inp[k], t, err);
        return st;
    }
    case NNOPT_NODE_DROPOUT:
        op.kind = NNOPT_OP_DROPOUT_BWD;
        return emit_grad(ex, &op, (nnopt_tensor *[]){dy, ex->aux[i * NNOPT_EXEC_AUX]}, 2, inp[0], t,
                         err);
    case NNOPT_NODE_ADD:
        /* d(a + b) passes dy through to both: a copy, or nothing where the
         * input's gradient is a view of dy (alias_add_gradients). */
        op.kind = NNOPT_OP_CAST;
        for (int k = 0; st == NNOPT_OK && k < 2; k++) {
            if (ex->needs_grad[inp[k]] && ex->grad[inp[k]]->data == dy->data)
                ex->grad_ready[inp[k]] = 1;
            else
                st = emit_grad(ex, &op, (nnopt_tensor *[]){dy}, 1, inp[k], t, err);
        }
        return st;
    case NNOPT_NODE_ALIAS:   /* inference only (refused when allocating) */
    case NNOPT_NODE_FLATTEN: /* its gradient is its input's, by view */
    case NNOPT_NODE_INPUT:
    case NNOPT_NODE_PARAM:
    case NNOPT_NODE_BUFFER:
        return NNOPT_OK;
    }
    return NNOPT_OK;
}

/* Upload host probabilities (doubles) into a soft-target tensor in the graph's dtype. */
static nnopt_status upload_probs(nnopt_exec *ex, int k, const double *probs, nnopt_error *err) {
    nnopt_network *net = ex->net;
    const nnopt_graph *g = net->graph;
    int64_t shape[2] = {ex->batch, g->num_classes}, count = shape[0] * shape[1];
    nnopt_status st = NNOPT_OK;
    if (!ex->soft[k])
        st = nnopt_backend_tensor_new(net->backend, g->dtype, 2, shape, &ex->soft[k], err);
    if (st != NNOPT_OK) return st;
    if (g->dtype == NNOPT_F64)
        return nnopt_backend_write(net->backend, ex->soft[k], probs, (size_t)count * 8, err);
    void *converted = malloc(nnopt_tensor_nbytes(ex->soft[k]));
    if (!converted) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_values_from_double(probs, converted, g->dtype, count);
    st = nnopt_backend_write(net->backend, ex->soft[k], converted, nnopt_tensor_nbytes(ex->soft[k]),
                             err);
    free(converted);
    return st;
}

/* Every loss term adds into the loss and the logits' gradient. */
static nnopt_status loss_and_gradient(nnopt_exec *ex, const nnopt_loss_terms *terms,
                                      nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    nnopt_loss_terms labels_only = {.label_weight = 1};
    if (!terms) terms = &labels_only;
    nnopt_op xent;
    memset(&xent, 0, sizeof xent);
    xent.kind = NNOPT_OP_SOFTMAX_XENT;
    nnopt_tensor *out[2] = {ex->loss, ex->grad[g->output]};
    double *seconds = &ex->backward_seconds[g->output];
    int written = 0;
    nnopt_status st = NNOPT_OK;
    if (terms->label_weight != 0) {
        xent.p.xent = (nnopt_xent_params){0, 1.0, terms->label_weight, 0};
        st = run_op(ex, &xent, (nnopt_tensor *[]){ex->value[g->output], ex->labels}, 2, out, 2,
                    seconds, err);
        written = 1;
    }
    for (int k = 0; st == NNOPT_OK && k < terms->n_soft; k++) {
        st = upload_probs(ex, k, terms->soft_probs[k], err);
        xent.p.xent = (nnopt_xent_params){1, terms->temperature[k], terms->weight[k], written};
        if (st == NNOPT_OK)
            st = run_op(ex, &xent, (nnopt_tensor *[]){ex->value[g->output], ex->soft[k]}, 2, out, 2,
                        seconds, err);
        written = 1;
    }
    if (st == NNOPT_OK && !written)
        st = nnopt_error_set(
            err, NNOPT_STATUS_INVALID_ARGUMENT,
            "the batch has no loss: the label term has weight 0 and no technique added one");
    return st;
}

nnopt_status nnopt_exec_backward(nnopt_exec *ex, const int32_t *labels,
                                 const nnopt_loss_terms *terms, double *loss, nnopt_error *err) {
    nnopt_network *net = ex->net;
    const nnopt_graph *g = net->graph;
    if (!ex->training)
        return nnopt_error_set(err, NNOPT_STATUS_INTERNAL, "backward on an inference executor");
    nnopt_status st = nnopt_backend_write(net->backend, ex->labels, labels,
                                          (size_t)ex->batch * sizeof *labels, err);
    if (st != NNOPT_OK) return st;
    memset(ex->grad_ready, 0, (size_t)g->n_nodes);
    st = loss_and_gradient(ex, terms, err);
    if (st != NNOPT_OK) return st;
    ex->grad_ready[g->output] = 1;
    for (int i = g->n_nodes - 1; st == NNOPT_OK && i >= 0; i--)
        if (ex->needs_grad[i] && !nnopt_node_is_state(g->nodes[i].kind))
            st = backward_node(ex, i, err);
    if (st != NNOPT_OK || !loss) return st;
    double raw; /* room for one value of any float dtype */
    st = nnopt_backend_read(net->backend, ex->loss, &raw, nnopt_dtype_size(g->dtype), err);
    if (st == NNOPT_OK) nnopt_values_to_double(&raw, g->dtype, loss, 1);
    return st;
}

nnopt_status nnopt_exec_read_logits(nnopt_exec *ex, double *dst, nnopt_error *err) {
    nnopt_tensor *logits = ex->value[ex->net->graph->output];
    nnopt_status st =
        nnopt_backend_read(ex->net->backend, logits, dst, nnopt_tensor_nbytes(logits), err);
    if (st != NNOPT_OK || logits->dtype == NNOPT_F64) return st;
    /* Widen in place from the back: value i sits in the first bytes of double i. */
    const size_t size = nnopt_dtype_size(logits->dtype);
    for (int64_t i = nnopt_tensor_numel(logits) - 1; i >= 0; i--) {
        double v;
        nnopt_values_to_double((const char *)dst + (size_t)i * size, logits->dtype, &v, 1);
        dst[i] = v;
    }
    return NNOPT_OK;
}
