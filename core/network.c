#include "network.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "float_values.h"
#include "rng.h"

static void fans(const nnopt_graph_node *n, double *fan_in, double *fan_out) {
    double receptive = 1;
    for (int d = 2; d < n->ndim; d++) receptive *= (double)n->shape[d];
    if (n->ndim >= 2) {
        *fan_in = (double)n->shape[1] * receptive;
        *fan_out = (double)n->shape[0] * receptive;
    } else {
        *fan_in = *fan_out = (double)n->shape[0];
    }
}

static void init_values(const nnopt_graph_node *n, uint64_t seed, double *v, int64_t count) {
    nnopt_rng rng;
    nnopt_rng_seed(&rng, seed);
    double fan_in, fan_out;
    fans(n, &fan_in, &fan_out);
    for (int64_t i = 0; i < count; i++) {
        switch (n->init) {
        case NNOPT_INIT_ZEROS:
            v[i] = 0;
            break;
        case NNOPT_INIT_ONES:
            v[i] = 1;
            break;
        case NNOPT_INIT_GLOROT_UNIFORM: {
            double limit = sqrt(6.0 / (fan_in + fan_out));
            v[i] = (2 * nnopt_rng_uniform(&rng) - 1) * limit;
            break;
        }
        case NNOPT_INIT_KAIMING_NORMAL:
            v[i] = nnopt_rng_normal(&rng) * sqrt(2.0 / fan_in);
            break;
        case NNOPT_INIT_LECUN_UNIFORM:
            v[i] = (2 * nnopt_rng_uniform(&rng) - 1) / sqrt(fan_in);
            break;
        case NNOPT_INIT_IDENTITY: {
            /* Element i is [k, c, taps...]: 1 on the diagonal's first tap. */
            int64_t taps = 1, channels = n->ndim >= 2 ? n->shape[1] : 1;
            for (int d = 2; d < n->ndim; d++) taps *= n->shape[d];
            int64_t k = i / (channels * taps), c = (i / taps) % channels, tap = i % taps;
            v[i] = k == c && tap == 0;
            break;
        }
        }
    }
}

static nnopt_status upload_doubles(nnopt_backend *b, nnopt_tensor *t, const double *v,
                                   int64_t count, nnopt_error *err) {
    if (t->dtype == NNOPT_F64) return nnopt_backend_write(b, t, v, (size_t)count * 8, err);
    void *converted = malloc(nnopt_tensor_nbytes(t));
    if (!converted) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_values_from_double(v, converted, t->dtype, count);
    nnopt_status st = nnopt_backend_write(b, t, converted, nnopt_tensor_nbytes(t), err);
    free(converted);
    return st;
}

static nnopt_tensor **node_table(const nnopt_graph *g) {
    return calloc((size_t)g->n_nodes, sizeof(nnopt_tensor *));
}

nnopt_status nnopt_network_create(nnopt_graph *graph, nnopt_backend *backend, uint64_t seed,
                                  nnopt_network **out, nnopt_error *err) {
    nnopt_network *net = calloc(1, sizeof *net);
    if (!net) {
        nnopt_graph_free(graph);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    net->graph = graph;
    net->backend = backend;
    net->seed = seed;
    graph->frozen = 1;
    net->param = node_table(graph);
    net->grad = node_table(graph);
    net->state1 = node_table(graph);
    net->state2 = node_table(graph);
    nnopt_status st = NNOPT_OK;
    if (!net->param || !net->grad || !net->state1 || !net->state2)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; st == NNOPT_OK && i < graph->n_nodes; i++) {
        const nnopt_graph_node *n = &graph->nodes[i];
        if (!nnopt_node_is_state(n->kind)) continue;
        st =
            nnopt_backend_tensor_new(backend, graph->dtype, n->ndim, n->shape, &net->param[i], err);
        if (st != NNOPT_OK) break;
        int64_t count = nnopt_tensor_numel(net->param[i]);
        double *v = malloc((size_t)count * sizeof *v);
        if (!v) {
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
            break;
        }
        /* Each parameter gets its own stream, so adding one does not shift the others. */
        init_values(n, seed * 1000003ULL + (uint64_t)i, v, count);
        st = upload_doubles(backend, net->param[i], v, count, err);
        free(v);
    }
    if (st != NNOPT_OK) {
        nnopt_network_free(net);
        return st;
    }
    *out = net;
    return NNOPT_OK;
}

void nnopt_network_free(nnopt_network *net) {
    if (!net) return;
    nnopt_kernels_release(&net->kernels, net->backend);
    nnopt_tensor **tables[] = {net->param, net->grad, net->state1, net->state2};
    for (int t = 0; t < 4; t++) {
        for (int i = 0; tables[t] && i < net->graph->n_nodes; i++)
            nnopt_backend_tensor_free(net->backend, tables[t][i]);
        free(tables[t]);
    }
    nnopt_graph_free(net->graph);
    free(net);
}

nnopt_status nnopt_network_prepare_training(nnopt_network *net, const nnopt_optimizer *opt,
                                            nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    int need1 = opt->kind == NNOPT_OPTIMIZER_ADAM || opt->momentum != 0;
    int need2 = opt->kind == NNOPT_OPTIMIZER_ADAM;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!net->param[i] || g->nodes[i].kind != NNOPT_NODE_PARAM) continue;
        const nnopt_graph_node *n = &g->nodes[i];
        nnopt_status st = NNOPT_OK;
        if (!net->grad[i])
            st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, n->shape, &net->grad[i],
                                          err);
        if (st == NNOPT_OK && need1 && !net->state1[i])
            st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, n->shape,
                                          &net->state1[i], err);
        if (st == NNOPT_OK && need2 && !net->state2[i])
            st = nnopt_backend_tensor_new(net->backend, g->dtype, n->ndim, n->shape,
                                          &net->state2[i], err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

nnopt_status nnopt_network_step(nnopt_network *net, const nnopt_optimizer *opt, double lr,
                                nnopt_error *err) {
    net->step++;
    nnopt_op op;
    memset(&op, 0, sizeof op);
    if (opt->kind == NNOPT_OPTIMIZER_SGD) {
        op.kind = NNOPT_OP_SGD_UPDATE;
        op.p.sgd = (nnopt_sgd_params){lr, opt->momentum, opt->weight_decay, opt->nesterov};
    } else {
        op.kind = NNOPT_OP_ADAM_UPDATE;
        op.p.adam =
            (nnopt_adam_params){lr, opt->beta1, opt->beta2, opt->eps, opt->weight_decay, net->step};
    }
    for (int i = 0; i < net->graph->n_nodes; i++) {
        if (!net->grad[i]) continue; /* buffers are not trained */
        nnopt_tensor *in[4] = {net->param[i], net->grad[i], net->state1[i], net->state2[i]};
        int n_in = opt->kind == NNOPT_OPTIMIZER_ADAM ? 4 : (net->state1[i] ? 3 : 2);
        nnopt_status st = nnopt_backend_run(net->backend, &op, in, n_in, NULL, 0, err);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

/* One state tensor in the new dtype, with its values converted. */
static nnopt_status convert_tensor(nnopt_network *net, nnopt_tensor **t, nnopt_dtype dtype,
                                   nnopt_error *err) {
    const int64_t count = nnopt_tensor_numel(*t);
    double *values = malloc((size_t)count * sizeof *values);
    void *raw = malloc(nnopt_tensor_nbytes(*t));
    nnopt_tensor *fresh = NULL;
    nnopt_status st = values && raw
                          ? NNOPT_OK
                          : nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    if (st == NNOPT_OK)
        st = nnopt_backend_read(net->backend, *t, raw, nnopt_tensor_nbytes(*t), err);
    if (st == NNOPT_OK) {
        nnopt_values_to_double(raw, (*t)->dtype, values, count);
        st = nnopt_backend_tensor_new(net->backend, dtype, (*t)->ndim, (*t)->shape, &fresh, err);
    }
    if (st == NNOPT_OK) st = upload_doubles(net->backend, fresh, values, count, err);
    if (st == NNOPT_OK) {
        nnopt_backend_tensor_free(net->backend, *t);
        *t = fresh;
        fresh = NULL;
    }
    nnopt_backend_tensor_free(net->backend, fresh);
    free(values);
    free(raw);
    return st;
}

nnopt_status nnopt_network_set_dtype(nnopt_network *net, nnopt_dtype dtype, nnopt_error *err) {
    nnopt_graph *g = net->graph;
    if (dtype != NNOPT_F32 && dtype != NNOPT_F64 && dtype != NNOPT_BF16)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT, "cannot move a network to %s",
                               nnopt_dtype_name(dtype));
    for (int i = 0; i < g->n_nodes; i++) {
        nnopt_tensor **state[3] = {&net->grad[i], &net->state1[i], &net->state2[i]};
        for (int k = 0; k < 3; k++) {
            nnopt_backend_tensor_free(net->backend, *state[k]);
            *state[k] = NULL;
        }
        if (!net->param[i] || net->param[i]->dtype == dtype) continue;
        nnopt_status st = convert_tensor(net, &net->param[i], dtype, err);
        if (st != NNOPT_OK) return st;
    }
    g->dtype = dtype;
    return NNOPT_OK;
}
