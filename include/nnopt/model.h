/* Model plugins: build a graph through the host API. */
#ifndef NNOPT_MODEL_H
#define NNOPT_MODEL_H

#include "nnopt/host.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nnopt_model_vtable {
    uint32_t struct_size;
    /* Build the network: create the input with graph_input (choosing the
     * dtype), add parameters and ops, and return the logits node
     * ([N, graph_num_classes]) in *logits. */
    nnopt_status (*build)(const nnopt_host_api *host, const nnopt_config *cfg, nnopt_graph *g,
                          nnopt_node *logits);
} nnopt_model_vtable;

#ifdef __cplusplus
}
#endif
#endif
