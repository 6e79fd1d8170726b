/* The network graph: nodes in topological (creation) order, shapes inferred
 * as they are added. Built by model plugins through the host API. Shapes of
 * activations carry the batch dimension as 1; executors substitute theirs. */
#ifndef NNOPT_CORE_GRAPH_H
#define NNOPT_CORE_GRAPH_H

#include "error.h"
#include "nnopt/host.h"
#include "nnopt/ops.h"

typedef enum nnopt_node_kind {
    NNOPT_NODE_INPUT = 0,
    NNOPT_NODE_PARAM,
    NNOPT_NODE_CONV2D, /* inputs: x, w[, b] */
    NNOPT_NODE_POOL2D,
    NNOPT_NODE_DENSE, /* inputs: x, w[, b] */
    NNOPT_NODE_ACT,
    NNOPT_NODE_FLATTEN, /* a view of its input */
    NNOPT_NODE_ADD,
    NNOPT_NODE_BUFFER,    /* state that is not trained (batchnorm running statistics) */
    NNOPT_NODE_BATCHNORM, /* inputs: x, gamma, beta, running_mean, running_var */
    NNOPT_NODE_DROPOUT,
    NNOPT_NODE_ALIAS /* a view of its input: an op folded into its producer (after training) */
} nnopt_node_kind;

#define NNOPT_NODE_MAX_INPUTS 5

typedef struct nnopt_graph_node {
    nnopt_node_kind kind;
    char name[64];
    int32_t inputs[NNOPT_NODE_MAX_INPUTS];
    int n_inputs;
    int ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    nnopt_op op;          /* forward op and its parameters (op nodes) */
    nnopt_init_kind init; /* params */
    /* State rewritten after training (core/run_rewrite.c): its own dtype
     * (int8 weights) instead of the graph's, or no tensor at all. */
    int own_dtype, dropped;
    nnopt_dtype dtype;
} nnopt_graph_node;

struct nnopt_graph {
    nnopt_dtype dtype;
    int32_t in_c, in_h, in_w, num_classes;
    nnopt_graph_node *nodes;
    int n_nodes, cap;
    nnopt_node input, output;
    int frozen; /* set once a network holds tensors for it: no more dtype changes */
    nnopt_error err;
};

/* An empty graph for inputs of c x h x w and num_classes outputs. */
nnopt_graph *nnopt_graph_create(int c, int h, int w, int num_classes);
void nnopt_graph_free(nnopt_graph *g);

/* Builder functions (also exposed through the host API). */
nnopt_node nnopt_graph_input(nnopt_graph *g, nnopt_dtype dtype);
int nnopt_graph_num_classes(const nnopt_graph *g);
nnopt_node nnopt_graph_param(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                             nnopt_init_kind init);
nnopt_node nnopt_graph_buffer(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                              nnopt_init_kind init);
nnopt_node nnopt_graph_conv2d(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node b,
                              const nnopt_conv2d_params *p);
nnopt_node nnopt_graph_pool2d(nnopt_graph *g, nnopt_node x, const nnopt_pool2d_params *p);
nnopt_node nnopt_graph_dense(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node b);
nnopt_node nnopt_graph_act(nnopt_graph *g, nnopt_node x, nnopt_act_kind kind);
nnopt_node nnopt_graph_flatten(nnopt_graph *g, nnopt_node x);
nnopt_node nnopt_graph_add(nnopt_graph *g, nnopt_node a, nnopt_node b);
nnopt_node nnopt_graph_batchnorm(nnopt_graph *g, const char *name, nnopt_node x, double eps,
                                 double momentum);
nnopt_node nnopt_graph_dropout(nnopt_graph *g, nnopt_node x, double p);
nnopt_node nnopt_graph_global_avg_pool(nnopt_graph *g, nnopt_node x);

/* Parameters and buffers both live in the network, not in executors. */
static inline int nnopt_node_is_state(nnopt_node_kind kind) {
    return kind == NNOPT_NODE_PARAM || kind == NNOPT_NODE_BUFFER;
}
int nnopt_graph_shape(const nnopt_graph *g, nnopt_node n, int64_t shape[NNOPT_MAX_DIMS]);

/* Inspection and rewriting (techniques). */
int nnopt_graph_node_count(const nnopt_graph *g);
int nnopt_graph_node_act(const nnopt_graph *g, nnopt_node n);
nnopt_status nnopt_graph_set_act(nnopt_graph *g, nnopt_node n, nnopt_act_kind kind);
nnopt_dtype nnopt_graph_dtype(const nnopt_graph *g);
nnopt_status nnopt_graph_set_dtype(nnopt_graph *g, nnopt_dtype dtype);
nnopt_status nnopt_graph_node_info(const nnopt_graph *g, nnopt_node n, nnopt_node_info *info);

/* Checks the built graph has an input and a [1, num_classes] output. */
nnopt_status nnopt_graph_finish(nnopt_graph *g, nnopt_node logits, nnopt_error *err);

int64_t nnopt_graph_param_count(const nnopt_graph *g);
/* Multiply-adds of one forward pass for one image. */
int64_t nnopt_graph_forward_macs(const nnopt_graph *g);

#endif
