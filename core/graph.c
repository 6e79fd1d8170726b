#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nnopt_graph *nnopt_graph_create(int c, int h, int w, int num_classes) {
    nnopt_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->in_c = c;
    g->in_h = h;
    g->in_w = w;
    g->num_classes = num_classes;
    g->input = g->output = -1;
    g->dtype = NNOPT_F32;
    return g;
}

void nnopt_graph_free(nnopt_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g);
}

static int valid(const nnopt_graph *g, nnopt_node n) {
    return n >= 0 && n < g->n_nodes;
}

static nnopt_node fail(nnopt_graph *g, const char *fmt, const char *what) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, what);
    nnopt_error_set(&g->err, NNOPT_STATUS_INVALID_ARGUMENT, "model graph, node %d: %s", g->n_nodes,
                    msg);
    return -1;
}

static nnopt_node push(nnopt_graph *g, nnopt_node_kind kind, const char *name) {
    if (g->err.status != NNOPT_OK) return -1;
    if (g->n_nodes == g->cap) {
        int cap = g->cap ? g->cap * 2 : 32;
        nnopt_graph_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            nnopt_error_set(&g->err, NNOPT_STATUS_OUT_OF_MEMORY, "model graph: out of memory");
            return -1;
        }
        g->nodes = nodes;
        g->cap = cap;
    }
    nnopt_graph_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s", name);
    return g->n_nodes++;
}

nnopt_node nnopt_graph_input(nnopt_graph *g, nnopt_dtype dtype) {
    if (g->input >= 0) return fail(g, "%s", "the input was already created");
    if (dtype != NNOPT_F32 && dtype != NNOPT_F64)
        return fail(g, "%s", "input dtype must be f32 or f64");
    g->dtype = dtype;
    nnopt_node id = push(g, NNOPT_NODE_INPUT, "input");
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->ndim = 4;
    n->shape[0] = 1;
    n->shape[1] = g->in_c;
    n->shape[2] = g->in_h;
    n->shape[3] = g->in_w;
    g->input = id;
    return id;
}

int nnopt_graph_num_classes(const nnopt_graph *g) {
    return g->num_classes;
}

static nnopt_node state_node(nnopt_graph *g, nnopt_node_kind kind, const char *name, int ndim,
                             const int64_t *shape, nnopt_init_kind init) {
    if (ndim < 1 || ndim > NNOPT_MAX_DIMS) return fail(g, "parameter '%s' has a bad rank", name);
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return fail(g, "parameter '%s' has a non-positive dimension", name);
    for (int i = 0; i < g->n_nodes; i++)
        if (nnopt_node_is_state(g->nodes[i].kind) && strcmp(g->nodes[i].name, name) == 0)
            return fail(g, "parameter name '%s' is used twice", name);
    nnopt_node id = push(g, kind, name);
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->ndim = ndim;
    memcpy(n->shape, shape, (size_t)ndim * sizeof *shape);
    n->init = init;
    return id;
}

nnopt_node nnopt_graph_param(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                             nnopt_init_kind init) {
    return state_node(g, NNOPT_NODE_PARAM, name, ndim, shape, init);
}

nnopt_node nnopt_graph_buffer(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                              nnopt_init_kind init) {
    return state_node(g, NNOPT_NODE_BUFFER, name, ndim, shape, init);
}

static const nnopt_graph_node *node(const nnopt_graph *g, nnopt_node id) {
    return &g->nodes[id];
}

/* Names ops "conv2d_3" etc. so per-layer reports can refer to them. */
static nnopt_node push_op(nnopt_graph *g, nnopt_node_kind kind, const char *prefix) {
    char name[64];
    snprintf(name, sizeof name, "%s_%d", prefix, g->n_nodes);
    return push(g, kind, name);
}

nnopt_node nnopt_graph_conv2d(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node b,
                              const nnopt_conv2d_params *p) {
    if (g->err.status) return -1;
    if (!valid(g, x) || !valid(g, w) || (b >= 0 && !valid(g, b)))
        return fail(g, "%s", "conv2d: invalid input node");
    const nnopt_graph_node *xn = node(g, x), *wn = node(g, w);
    int groups = p->groups > 0 ? p->groups : 1;
    if (xn->ndim != 4 || wn->ndim != 4)
        return fail(g, "%s", "conv2d needs NCHW input and KCRS weights");
    int64_t C = xn->shape[1], K = wn->shape[0], R = wn->shape[2], S = wn->shape[3];
    if (C % groups || K % groups || wn->shape[1] != C / groups)
        return fail(g, "%s", "conv2d: weight channels do not match input channels / groups");
    if (b >= 0 && (node(g, b)->ndim != 1 || node(g, b)->shape[0] != K))
        return fail(g, "%s", "conv2d: bias must be [K]");
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 || p->pad_w < 0)
        return fail(g, "%s", "conv2d: bad stride or padding");
    int64_t P = (xn->shape[2] + 2 * p->pad_h - R) / p->stride_h + 1;
    int64_t Q = (xn->shape[3] + 2 * p->pad_w - S) / p->stride_w + 1;
    if (P < 1 || Q < 1) return fail(g, "%s", "conv2d: kernel larger than the padded input");
    nnopt_node id = push_op(g, NNOPT_NODE_CONV2D, "conv2d");
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = x;
    n->inputs[1] = w;
    n->n_inputs = 2;
    if (b >= 0) n->inputs[n->n_inputs++] = b;
    n->ndim = 4;
    n->shape[0] = 1;
    n->shape[1] = K;
    n->shape[2] = P;
    n->shape[3] = Q;
    n->op.kind = NNOPT_OP_CONV2D;
    n->op.p.conv2d = *p;
    n->op.p.conv2d.groups = groups;
    return id;
}

nnopt_node nnopt_graph_pool2d(nnopt_graph *g, nnopt_node x, const nnopt_pool2d_params *p) {
    if (g->err.status) return -1;
    if (!valid(g, x) || node(g, x)->ndim != 4) return fail(g, "%s", "pool2d needs an NCHW input");
    if (p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 ||
        p->pad_w < 0 || (p->kind != NNOPT_POOL_MAX && p->kind != NNOPT_POOL_AVG))
        return fail(g, "%s", "pool2d: bad kind, window, stride or padding");
    const nnopt_graph_node *xn = node(g, x);
    int64_t P = (xn->shape[2] + 2 * p->pad_h - p->kernel_h) / p->stride_h + 1;
    int64_t Q = (xn->shape[3] + 2 * p->pad_w - p->kernel_w) / p->stride_w + 1;
    if (P < 1 || Q < 1) return fail(g, "%s", "pool2d: window larger than the input");
    int64_t C = xn->shape[1];
    /* push may move the node array: xn is not used past this point. */
    nnopt_node id =
        push_op(g, NNOPT_NODE_POOL2D, p->kind == NNOPT_POOL_MAX ? "maxpool" : "avgpool");
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = x;
    n->n_inputs = 1;
    n->ndim = 4;
    n->shape[0] = 1;
    n->shape[1] = C;
    n->shape[2] = P;
    n->shape[3] = Q;
    n->op.kind = NNOPT_OP_POOL2D;
    n->op.p.pool2d = *p;
    return id;
}

nnopt_node nnopt_graph_dense(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node b) {
    if (g->err.status) return -1;
    if (!valid(g, x) || !valid(g, w) || (b >= 0 && !valid(g, b)))
        return fail(g, "%s", "dense: invalid input node");
    const nnopt_graph_node *xn = node(g, x), *wn = node(g, w);
    if (xn->ndim != 2) return fail(g, "%s", "dense needs a [N, features] input (flatten first)");
    if (wn->ndim != 2 || wn->shape[1] != xn->shape[1])
        return fail(g, "%s", "dense: weight must be [OUT, IN] with IN = input features");
    if (b >= 0 && (node(g, b)->ndim != 1 || node(g, b)->shape[0] != wn->shape[0]))
        return fail(g, "%s", "dense: bias must be [OUT]");
    int64_t out = wn->shape[0];
    nnopt_node id = push_op(g, NNOPT_NODE_DENSE, "dense"); /* may move the node array */
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = x;
    n->inputs[1] = w;
    n->n_inputs = 2;
    if (b >= 0) n->inputs[n->n_inputs++] = b;
    n->ndim = 2;
    n->shape[0] = 1;
    n->shape[1] = out;
    n->op.kind = NNOPT_OP_DENSE;
    return id;
}

nnopt_node nnopt_graph_act(nnopt_graph *g, nnopt_node x, nnopt_act_kind kind) {
    if (g->err.status) return -1;
    if (!valid(g, x)) return fail(g, "%s", "activation: invalid input node");
    if ((unsigned)kind >= NNOPT_ACT_KIND_COUNT) return fail(g, "%s", "unknown activation");
    nnopt_node id = push_op(g, NNOPT_NODE_ACT, nnopt_act_kind_name(kind));
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    const nnopt_graph_node *xn = node(g, x);
    n->inputs[0] = x;
    n->n_inputs = 1;
    n->ndim = xn->ndim;
    memcpy(n->shape, xn->shape, sizeof n->shape);
    n->op.kind = NNOPT_OP_ACT;
    n->op.p.act.kind = kind;
    return id;
}

nnopt_node nnopt_graph_flatten(nnopt_graph *g, nnopt_node x) {
    if (g->err.status) return -1;
    if (!valid(g, x)) return fail(g, "%s", "flatten: invalid input node");
    const nnopt_graph_node *xn = node(g, x);
    int64_t features = 1;
    for (int i = 1; i < xn->ndim; i++) features *= xn->shape[i];
    nnopt_node id = push_op(g, NNOPT_NODE_FLATTEN, "flatten");
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = x;
    n->n_inputs = 1;
    n->ndim = 2;
    n->shape[0] = 1;
    n->shape[1] = features;
    return id;
}

nnopt_node nnopt_graph_add(nnopt_graph *g, nnopt_node a, nnopt_node b) {
    if (g->err.status) return -1;
    if (!valid(g, a) || !valid(g, b)) return fail(g, "%s", "add: invalid input node");
    const nnopt_graph_node *an = node(g, a), *bn = node(g, b);
    if (an->ndim != bn->ndim || memcmp(an->shape, bn->shape, sizeof an->shape) != 0)
        return fail(g, "%s", "add: inputs differ in shape");
    nnopt_graph_node shape_of_a = *an;
    nnopt_node id = push_op(g, NNOPT_NODE_ADD, "add"); /* may move the node array */
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = a;
    n->inputs[1] = b;
    n->n_inputs = 2;
    n->ndim = shape_of_a.ndim;
    memcpy(n->shape, shape_of_a.shape, sizeof n->shape);
    n->op.kind = NNOPT_OP_ADD;
    return id;
}

nnopt_node nnopt_graph_batchnorm(nnopt_graph *g, const char *name, nnopt_node x, double eps,
                                 double momentum) {
    if (g->err.status) return -1;
    if (!valid(g, x) || (node(g, x)->ndim != 4 && node(g, x)->ndim != 2))
        return fail(g, "%s", "batchnorm needs an [N,C,H,W] or [N,C] input");
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return fail(g, "%s", "batchnorm: eps must be > 0 and momentum in [0, 1]");
    int64_t channels[1] = {node(g, x)->shape[1]};
    char full[128];
    static const struct {
        const char *suffix;
        nnopt_node_kind kind;
        nnopt_init_kind init;
    } state[4] = {{"weight", NNOPT_NODE_PARAM, NNOPT_INIT_ONES},
                  {"bias", NNOPT_NODE_PARAM, NNOPT_INIT_ZEROS},
                  {"running_mean", NNOPT_NODE_BUFFER, NNOPT_INIT_ZEROS},
                  {"running_var", NNOPT_NODE_BUFFER, NNOPT_INIT_ONES}};
    nnopt_node inputs[5] = {x};
    for (int i = 0; i < 4; i++) {
        snprintf(full, sizeof full, "%s.%s", name, state[i].suffix);
        inputs[i + 1] = state_node(g, state[i].kind, full, 1, channels, state[i].init);
    }
    if (g->err.status) return -1;
    nnopt_node id = push(g, NNOPT_NODE_BATCHNORM, name);
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    memcpy(n->inputs, inputs, sizeof inputs);
    n->n_inputs = 5;
    n->ndim = node(g, x)->ndim;
    memcpy(n->shape, node(g, x)->shape, sizeof n->shape);
    n->op.kind = NNOPT_OP_BATCHNORM;
    n->op.p.bn.eps = eps;
    n->op.p.bn.momentum = momentum;
    return id;
}

nnopt_node nnopt_graph_dropout(nnopt_graph *g, nnopt_node x, double p) {
    if (g->err.status) return -1;
    if (!valid(g, x)) return fail(g, "%s", "dropout: invalid input node");
    if (!(p >= 0 && p < 1)) return fail(g, "%s", "dropout: p must be in [0, 1)");
    nnopt_node id = push_op(g, NNOPT_NODE_DROPOUT, "dropout");
    if (id < 0) return id;
    nnopt_graph_node *n = &g->nodes[id];
    n->inputs[0] = x;
    n->n_inputs = 1;
    n->ndim = node(g, x)->ndim;
    memcpy(n->shape, node(g, x)->shape, sizeof n->shape);
    n->op.kind = NNOPT_OP_DROPOUT;
    n->op.p.dropout.p = p;
    return id;
}

nnopt_node nnopt_graph_global_avg_pool(nnopt_graph *g, nnopt_node x) {
    if (g->err.status) return -1;
    if (!valid(g, x) || node(g, x)->ndim != 4)
        return fail(g, "%s", "global average pooling needs an NCHW input");
    const nnopt_graph_node *xn = node(g, x);
    nnopt_pool2d_params p = {
        NNOPT_POOL_AVG, (int32_t)xn->shape[2], (int32_t)xn->shape[3], 1, 1, 0, 0};
    return nnopt_graph_flatten(g, nnopt_graph_pool2d(g, x, &p));
}

int nnopt_graph_shape(const nnopt_graph *g, nnopt_node n, int64_t shape[NNOPT_MAX_DIMS]) {
    if (!valid(g, n)) return -1;
    memcpy(shape, g->nodes[n].shape, sizeof g->nodes[n].shape);
    return g->nodes[n].ndim;
}

nnopt_status nnopt_graph_finish(nnopt_graph *g, nnopt_node logits, nnopt_error *err) {
    if (g->err.status != NNOPT_OK) return nnopt_error_set(err, g->err.status, "%s", g->err.message);
    if (g->input < 0)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "model graph: the model never created its input");
    if (!valid(g, logits))
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "model graph: the model returned no logits node");
    const nnopt_graph_node *n = node(g, logits);
    if (n->ndim != 2 || n->shape[1] != g->num_classes || nnopt_node_is_state(n->kind))
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "model graph: logits must be [N, %d]", g->num_classes);
    g->output = logits;
    return NNOPT_OK;
}

int64_t nnopt_graph_param_count(const nnopt_graph *g) {
    int64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind != NNOPT_NODE_PARAM) continue;
        int64_t n = 1;
        for (int d = 0; d < g->nodes[i].ndim; d++) n *= g->nodes[i].shape[d];
        total += n;
    }
    return total;
}

int64_t nnopt_graph_forward_macs(const nnopt_graph *g) {
    int64_t total = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        if (n->kind == NNOPT_NODE_CONV2D) {
            const nnopt_graph_node *w = &g->nodes[n->inputs[1]];
            total +=
                n->shape[1] * n->shape[2] * n->shape[3] * w->shape[1] * w->shape[2] * w->shape[3];
        } else if (n->kind == NNOPT_NODE_DENSE) {
            const nnopt_graph_node *w = &g->nodes[n->inputs[1]];
            total += w->shape[0] * w->shape[1];
        }
    }
    return total;
}

int nnopt_graph_node_count(const nnopt_graph *g) {
    return g->n_nodes;
}

int nnopt_graph_node_act(const nnopt_graph *g, nnopt_node n) {
    if (!valid(g, n) || g->nodes[n].kind != NNOPT_NODE_ACT) return -1;
    return (int)g->nodes[n].op.p.act.kind;
}

nnopt_status nnopt_graph_set_act(nnopt_graph *g, nnopt_node n, nnopt_act_kind kind) {
    if (!valid(g, n) || g->nodes[n].kind != NNOPT_NODE_ACT ||
        (unsigned)kind >= NNOPT_ACT_KIND_COUNT)
        return NNOPT_STATUS_INVALID_ARGUMENT;
    g->nodes[n].op.p.act.kind = kind;
    return NNOPT_OK;
}

nnopt_dtype nnopt_graph_dtype(const nnopt_graph *g) {
    return g->dtype;
}

nnopt_status nnopt_graph_set_dtype(nnopt_graph *g, nnopt_dtype dtype) {
    if (g->frozen || (dtype != NNOPT_F32 && dtype != NNOPT_F64 && dtype != NNOPT_BF16))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    g->dtype = dtype;
    return NNOPT_OK;
}

static nnopt_node_role node_role(const nnopt_graph_node *n) {
    switch (n->kind) {
    case NNOPT_NODE_INPUT:
        return NNOPT_ROLE_INPUT;
    case NNOPT_NODE_PARAM:
        return NNOPT_ROLE_PARAM;
    case NNOPT_NODE_BUFFER:
        return NNOPT_ROLE_BUFFER;
    case NNOPT_NODE_FLATTEN:
    case NNOPT_NODE_ALIAS:
        return NNOPT_ROLE_VIEW;
    default:
        return NNOPT_ROLE_OP;
    }
}

nnopt_status nnopt_graph_node_info(const nnopt_graph *g, nnopt_node id, nnopt_node_info *info) {
    if (!valid(g, id) || !info) return NNOPT_STATUS_INVALID_ARGUMENT;
    const nnopt_graph_node *n = &g->nodes[id];
    memset(info, 0, sizeof *info);
    info->role = node_role(n);
    info->name = n->name;
    if (info->role == NNOPT_ROLE_OP) info->op = n->op;
    memcpy(info->inputs, n->inputs, sizeof n->inputs);
    info->n_inputs = n->n_inputs;
    info->ndim = n->ndim;
    memcpy(info->shape, n->shape, sizeof n->shape);
    info->dtype = n->own_dtype ? n->dtype : g->dtype;
    info->has_tensor = nnopt_node_is_state(n->kind) && !n->dropped;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            info->consumers += g->nodes[i].inputs[k] == id;
    info->consumers += id == g->output;
    return NNOPT_OK;
}
