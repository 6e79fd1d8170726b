/* A network instance: a built graph on one backend, with its parameter
 * tensors, their gradients and the optimizer's state. */
#ifndef NNOPT_CORE_NETWORK_H
#define NNOPT_CORE_NETWORK_H

#include "backend.h"
#include "graph.h"
#include "kernels.h"

typedef enum nnopt_optimizer_kind {
    NNOPT_OPTIMIZER_SGD = 0,
    NNOPT_OPTIMIZER_ADAM
} nnopt_optimizer_kind;

typedef struct nnopt_optimizer {
    nnopt_optimizer_kind kind;
    double momentum, weight_decay; /* SGD (weight_decay for Adam too) */
    int nesterov;
    double beta1, beta2, eps; /* Adam */
} nnopt_optimizer;

typedef struct nnopt_network {
    nnopt_graph *graph;
    nnopt_backend *backend;
    /* Indexed by node id. param: parameters and buffers (NULL for other
     * nodes); grad, state1, state2: parameters only. */
    nnopt_tensor **param, **grad, **state1, **state2;
    int64_t step;
    uint64_t seed;         /* the run's seed (initialisation, dropout masks) */
    nnopt_kernels kernels; /* precompiled unless a technique asked otherwise */
} nnopt_network;

/* Takes ownership of graph. Parameters are initialised on the host from
 * seed (the same values on every backend), then uploaded. */
nnopt_status nnopt_network_create(nnopt_graph *graph, nnopt_backend *backend, uint64_t seed,
                                  nnopt_network **out, nnopt_error *err);
void nnopt_network_free(nnopt_network *net);

/* Allocates gradients and optimizer state. */
nnopt_status nnopt_network_prepare_training(nnopt_network *net, const nnopt_optimizer *opt,
                                            nnopt_error *err);
/* One optimizer update of every parameter from its gradient. */
nnopt_status nnopt_network_step(nnopt_network *net, const nnopt_optimizer *opt, double lr,
                                nnopt_error *err);
/* Moves a trained network to another float dtype for inference: parameters
 * and buffers are converted (rounded to nearest even), gradients and
 * optimizer state dropped. Executors made before must not run again. */
nnopt_status nnopt_network_set_dtype(nnopt_network *net, nnopt_dtype dtype, nnopt_error *err);

#endif
