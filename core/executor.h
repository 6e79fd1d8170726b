/* Runs a network's graph on its backend for one batch size: forward,
 * softmax cross-entropy, backward. Activation and gradient tensors are
 * allocated once here and reused for every batch. */
#ifndef NNOPT_CORE_EXECUTOR_H
#define NNOPT_CORE_EXECUTOR_H

#include "network.h"

#define NNOPT_EXEC_AUX 3
#define NNOPT_MAX_SOFT_TERMS 4

typedef struct nnopt_exec {
    nnopt_network *net;
    int64_t batch;
    int training;
    nnopt_tensor **value;   /* per node; parameters point at the network's */
    nnopt_tensor **grad;    /* per node (training); parameters point at the network's */
    nnopt_tensor **scratch; /* per node with several consumers: a gradient to add */
    nnopt_tensor **aux;     /* NNOPT_EXEC_AUX per node: batchnorm statistics, dropout masks */
    uint64_t step;          /* training forward passes so far (seeds dropout) */
    uint64_t seed;
    unsigned char *needs_grad, *grad_ready;
    nnopt_tensor *labels, *loss;
    nnopt_tensor *soft[NNOPT_MAX_SOFT_TERMS]; /* soft targets, allocated when first used */
    /* Inference executors from nnopt_exec_create_inference: node values are
     * views into these shared blocks, reused once a value's last reader ran. */
    nnopt_tensor **pool;
    int n_pool;
    /* Inference executors: per node, the batchnorm a conv is folded into (its
     * folded weight and bias in that batchnorm's aux[0..1]), else -1. NULL
     * when nothing is folded. */
    int32_t *folded_into;
    /* Training executors: per batchnorm node, the relu that runs fused into
     * it (batchnorm_relu; the batchnorm's value and gradient are views of the
     * relu's), else -1. NULL when nothing is fused. */
    int32_t *bn_relu;
    /* Per conv or add node, the relu that runs fused into its op
     * (conv2d_relu, add_relu; at inference the relu's value is a view of the
     * node's, in training, add_relu only, the add's value is a view of the
     * relu's and the relu's backward still runs), else -1. NULL when nothing
     * is fused. */
    int32_t *relu_into;
    /* Inference executors: per conv node, the add (its relu fused) that runs
     * inside it as conv2d_add_relu, the add's second input the residual and
     * the add a view, else -1. NULL when nothing is fused. */
    int32_t *residual_of;
    /* Training executors: per batchnorm node, the add (its relu fused) that
     * runs it as batchnorm_add_relu, the add's other input the residual; the
     * batchnorm is then a view that nothing reads, else -1. NULL when nothing
     * is fused. */
    int32_t *bn_add_into;
    /* Training executors: per relu node, the conv (its input the relu's
     * output, and the last of the relu's readers to run backward) whose data
     * gradient runs the relu's backward too (conv2d_bwd_data_add_masked; the
     * relu's input gradient is a view of its own), else -1. NULL when none. */
    int32_t *relu_bwd_in;
    /* Per-node seconds, filled when profile is set (each op is synchronized). */
    int profile;
    double *forward_seconds, *backward_seconds;
    /* Compiled mode (exec_program.c): the backend's compiled forward pass
     * (owned by the network's kernels), its tensor table and current ops,
     * and the node of every step. NULL program: op by op. */
    void *program;
    nnopt_tensor **program_tensors;
    nnopt_op *program_ops;
    int32_t *program_nodes;
    int program_steps;
} nnopt_exec;

nnopt_status nnopt_exec_create(nnopt_network *net, int64_t batch, int training, nnopt_exec **out,
                               nnopt_error *err);
/* An inference executor that keeps only what a forward pass still needs:
 * intermediate values share memory, so after a forward pass only the logits
 * are meaningful, and a batchnorm that follows a conv is folded into the
 * conv's weights and bias (computed here, from the weights as they are now:
 * create it once the weights are final). Uses a fraction of the memory and
 * of the passes; what evaluation and prediction want. */
nnopt_status nnopt_exec_create_inference(nnopt_network *net, int64_t batch, nnopt_exec **out,
                                         nnopt_error *err);
void nnopt_exec_free(nnopt_exec *ex);
/* Whether node j's value is its first input's (flatten, dropout at
 * inference, a batchnorm folded into its conv, a relu fused into its
 * batchnorm, conv or add): no op runs for it. */
int nnopt_exec_is_view(const nnopt_exec *ex, int j);

/* x: batch images in the graph's dtype, NCHW. */
nnopt_status nnopt_exec_forward(nnopt_exec *ex, const void *x, nnopt_error *err);
/* The loss of a training batch: weight * cross-entropy with the labels plus
 * soft-target terms (distillation). */
typedef struct nnopt_loss_terms {
    double label_weight;
    int n_soft;
    const double *soft_probs[NNOPT_MAX_SOFT_TERMS]; /* host, [batch, classes] */
    double temperature[NNOPT_MAX_SOFT_TERMS], weight[NNOPT_MAX_SOFT_TERMS];
} nnopt_loss_terms;

/* After forward: the loss (labels only when terms is NULL), then gradients
 * of every parameter. */
nnopt_status nnopt_exec_backward(nnopt_exec *ex, const int32_t *labels,
                                 const nnopt_loss_terms *terms, double *loss, nnopt_error *err);
/* Copies the logits ([batch, classes]) to dst as doubles, whatever the graph's dtype. */
nnopt_status nnopt_exec_read_logits(nnopt_exec *ex, double *dst, nnopt_error *err);

#endif
