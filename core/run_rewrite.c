/* Host API entries that change a trained run's network in place, for
 * techniques' after_train (post-training quantisation): calibration passes
 * over training batches, new or re-typed state tensors, replaced ops and ops
 * folded into their producers. Executors are made per evaluation, so the
 * next one sees the rewritten graph; the pipeline frees the training
 * executor before after_train. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pipeline.h"

static nnopt_status fail(const char *fmt, const char *a, const char *b) {
    const nnopt_host_api *host = nnopt_host_api_get();
    host->set_error(fmt, a, b);
    return NNOPT_STATUS_INVALID_ARGUMENT;
}

static int is_node(const nnopt_graph *g, nnopt_node n) {
    return n >= 0 && n < g->n_nodes;
}

static int is_op(const nnopt_graph_node *n) {
    return n->kind != NNOPT_NODE_INPUT && !nnopt_node_is_state(n->kind) &&
           n->kind != NNOPT_NODE_FLATTEN && n->kind != NNOPT_NODE_ALIAS;
}

/* Folds one batch's values of every non-state node into min/max. */
static nnopt_status observe(nnopt_exec *ex, float *host, double *min, double *max,
                            nnopt_error *err) {
    const nnopt_graph *g = ex->net->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_tensor *t = ex->value[i];
        if (nnopt_node_is_state(g->nodes[i].kind) || !t) continue;
        nnopt_status st =
            nnopt_backend_read(ex->net->backend, t, host, nnopt_tensor_nbytes(t), err);
        if (st != NNOPT_OK) return st;
        int64_t count = nnopt_tensor_numel(t);
        for (int64_t k = 0; k < count; k++) {
            double v = t->dtype == NNOPT_F64 ? ((const double *)(const void *)host)[k] : host[k];
            if (v < min[i]) min[i] = v;
            if (v > max[i]) max[i] = v;
        }
    }
    return NNOPT_OK;
}

nnopt_status nnopt_run_calibrate(nnopt_run *run, int64_t batches, double *min, double *max) {
    if (!run->net || batches < 1 || !min || !max) return NNOPT_STATUS_INVALID_ARGUMENT;
    const nnopt_data *data = run->pipeline->data;
    const nnopt_graph *g = run->net->graph;
    int64_t batch = nnopt_config_get_int(run->spec->training, "batch");
    if (batch > data->train.n) batch = data->train.n;
    if (batches * batch > data->train.n) batches = data->train.n / batch;
    for (int i = 0; i < g->n_nodes; i++) {
        min[i] = DBL_MAX;
        max[i] = -DBL_MAX;
    }
    nnopt_error err = {0};
    nnopt_exec *ex = NULL;
    nnopt_status st = nnopt_exec_create(run->net, batch, 0, &ex, &err);
    int64_t per_image = (int64_t)data->train.c * data->train.h * data->train.w, largest = 0;
    for (int i = 0; st == NNOPT_OK && i < g->n_nodes; i++)
        if (ex->value[i] && nnopt_tensor_numel(ex->value[i]) > largest)
            largest = nnopt_tensor_numel(ex->value[i]);
    size_t esize = nnopt_dtype_size(g->dtype);
    void *x = malloc((size_t)(batch * per_image) * esize);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    int64_t *order = malloc((size_t)batch * sizeof *order);
    float *host = malloc((size_t)(largest > 0 ? largest : 1) * esize);
    if (st == NNOPT_OK && (!x || !y || !order || !host))
        st = nnopt_error_set(&err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; st == NNOPT_OK && b < batches; b++) {
        for (int64_t i = 0; i < batch; i++) order[i] = b * batch + i;
        nnopt_dataset_batch(&data->train, order, batch, &data->norm, g->dtype, x, y);
        st = nnopt_exec_forward(ex, x, &err);
        if (st == NNOPT_OK) st = observe(ex, host, min, max, &err);
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (min[i] > max[i]) min[i] = max[i] = 0; /* never computed */
    if (st != NNOPT_OK) nnopt_host_api_get()->set_error("calibration: %s", err.message);
    free(x);
    free(y);
    free(order);
    free(host);
    nnopt_exec_free(ex);
    return st;
}

nnopt_status nnopt_run_read_state(nnopt_run *run, nnopt_node n, float *values) {
    nnopt_network *net = run->net;
    if (!net || !is_node(net->graph, n) || !net->param[n] || !values)
        return NNOPT_STATUS_INVALID_ARGUMENT;
    const nnopt_tensor *t = net->param[n];
    int64_t count = nnopt_tensor_numel(t);
    nnopt_error err = {0};
    if (t->dtype == NNOPT_F32)
        return nnopt_backend_read(net->backend, t, values, nnopt_tensor_nbytes(t), &err);
    if (t->dtype != NNOPT_F64) return NNOPT_STATUS_UNSUPPORTED;
    double *wide = malloc((size_t)count * sizeof *wide);
    if (!wide) return NNOPT_STATUS_OUT_OF_MEMORY;
    nnopt_status st = nnopt_backend_read(net->backend, t, wide, nnopt_tensor_nbytes(t), &err);
    for (int64_t i = 0; st == NNOPT_OK && i < count; i++) values[i] = (float)wide[i];
    free(wide);
    return st;
}

/* Grows the network's per-node tables to the graph's node count. */
static nnopt_status grow_tables(nnopt_network *net, int old_count) {
    int count = net->graph->n_nodes;
    nnopt_tensor ***tables[] = {&net->param, &net->grad, &net->state1, &net->state2};
    for (int t = 0; t < 4; t++) {
        nnopt_tensor **grown = realloc(*tables[t], (size_t)count * sizeof **tables[t]);
        if (!grown) return NNOPT_STATUS_OUT_OF_MEMORY;
        memset(grown + old_count, 0, (size_t)(count - old_count) * sizeof *grown);
        *tables[t] = grown;
    }
    return NNOPT_OK;
}

/* Frees node i's tensor, gradient and optimiser state. */
static void free_state(nnopt_network *net, int i) {
    nnopt_tensor **tables[] = {net->param, net->grad, net->state1, net->state2};
    for (int t = 0; t < 4; t++) {
        nnopt_backend_tensor_free(net->backend, tables[t][i]);
        tables[t][i] = NULL;
    }
}

nnopt_node nnopt_run_set_state(nnopt_run *run, nnopt_node n, const char *name, nnopt_dtype dtype,
                               int ndim, const int64_t *shape, const void *values) {
    nnopt_network *net = run->net;
    if (!net || !values || ndim < 1 || ndim > NNOPT_MAX_DIMS || !nnopt_dtype_size(dtype)) {
        nnopt_host_api_get()->set_error("run_set_state: bad arguments");
        return -1;
    }
    nnopt_graph *g = net->graph;
    if (n < 0) {
        int old_count = g->n_nodes;
        n = nnopt_graph_buffer(g, name ? name : "", ndim, shape, NNOPT_INIT_ZEROS);
        if (n < 0 || grow_tables(net, old_count) != NNOPT_OK) {
            fail("run_set_state: cannot add '%s': %s", name ? name : "",
                 g->err.status ? g->err.message : "out of memory");
            return -1;
        }
    } else if (!is_node(g, n) || !nnopt_node_is_state(g->nodes[n].kind)) {
        fail("run_set_state: node %s%s is not a parameter or buffer",
             is_node(g, n) ? g->nodes[n].name : "?", "");
        return -1;
    }
    free_state(net, n);
    nnopt_graph_node *node = &g->nodes[n];
    node->ndim = ndim;
    memset(node->shape, 0, sizeof node->shape);
    memcpy(node->shape, shape, (size_t)ndim * sizeof *shape);
    node->own_dtype = 1;
    node->dtype = dtype;
    node->dropped = 0;
    nnopt_error err = {0};
    nnopt_status st =
        nnopt_backend_tensor_new(net->backend, dtype, ndim, shape, &net->param[n], &err);
    if (st == NNOPT_OK)
        st = nnopt_backend_write(net->backend, net->param[n], values,
                                 nnopt_tensor_nbytes(net->param[n]), &err);
    if (st != NNOPT_OK) {
        nnopt_host_api_get()->set_error("run_set_state '%s': %s", node->name, err.message);
        return -1;
    }
    return n;
}

nnopt_status nnopt_run_drop_state(nnopt_run *run, nnopt_node n) {
    nnopt_network *net = run->net;
    if (!net || !is_node(net->graph, n) || !nnopt_node_is_state(net->graph->nodes[n].kind))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    nnopt_graph *g = net->graph;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == n && g->nodes[i].kind != NNOPT_NODE_ALIAS)
                return fail("run_drop_state: '%s' is still read by '%s'", g->nodes[n].name,
                            g->nodes[i].name);
    free_state(net, n);
    g->nodes[n].dropped = 1;
    return NNOPT_OK;
}

nnopt_status nnopt_run_set_op(nnopt_run *run, nnopt_node n, const nnopt_op *op,
                              const nnopt_node *inputs, int n_inputs) {
    nnopt_network *net = run->net;
    if (!net || !op || !inputs || n_inputs < 1 || n_inputs > NNOPT_NODE_MAX_INPUTS)
        return NNOPT_STATUS_INVALID_ARGUMENT;
    nnopt_graph *g = net->graph;
    if (!is_node(g, n) || !is_op(&g->nodes[n]))
        return fail("run_set_op: node %s%s is not an op", is_node(g, n) ? g->nodes[n].name : "?",
                    "");
    for (int k = 0; k < n_inputs; k++) {
        /* Ops run in node order: an op input must come first; state may be new. */
        nnopt_node in = inputs[k];
        if (!is_node(g, in) || (!nnopt_node_is_state(g->nodes[in].kind) && in >= n) ||
            (nnopt_node_is_state(g->nodes[in].kind) && !net->param[in]))
            return fail("run_set_op '%s': input %s is not a computed node or a live tensor",
                        g->nodes[n].name, is_node(g, in) ? g->nodes[in].name : "?");
    }
    nnopt_graph_node *node = &g->nodes[n];
    node->op = *op;
    memcpy(node->inputs, inputs, (size_t)n_inputs * sizeof *inputs);
    node->n_inputs = n_inputs;
    return NNOPT_OK;
}

nnopt_status nnopt_run_fold_node(nnopt_run *run, nnopt_node n) {
    nnopt_network *net = run->net;
    if (!net) return NNOPT_STATUS_INVALID_ARGUMENT;
    nnopt_graph *g = net->graph;
    if (!is_node(g, n) || !is_op(&g->nodes[n]))
        return fail("run_fold_node: node %s%s is not an op", is_node(g, n) ? g->nodes[n].name : "?",
                    "");
    nnopt_graph_node *node = &g->nodes[n];
    const nnopt_graph_node *x = &g->nodes[node->inputs[0]];
    if (x->ndim != node->ndim || memcmp(x->shape, node->shape, sizeof x->shape) != 0)
        return fail("run_fold_node: '%s' differs in shape from its input '%s'", node->name,
                    x->name);
    node->kind = NNOPT_NODE_ALIAS;
    node->n_inputs = 1;
    return NNOPT_OK;
}
