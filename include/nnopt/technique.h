/* Technique plugins: hooks at defined points of a run's pipeline. */
#ifndef NNOPT_TECHNIQUE_H
#define NNOPT_TECHNIQUE_H

#include "nnopt/host.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nnopt_technique_vtable {
    uint32_t struct_size;
    nnopt_status (*create)(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx);
    void (*destroy)(void *ctx);
    /* Optional hooks (NULL = not used), called in INI order. */
    nnopt_status (*before_train)(void *ctx, nnopt_graph *g);
    nnopt_status (*before_epoch)(void *ctx, int epoch);
    nnopt_status (*after_epoch)(void *ctx, int epoch);
    nnopt_status (*after_train)(void *ctx, nnopt_graph *g);
} nnopt_technique_vtable;

#ifdef __cplusplus
}
#endif
#endif
