/* The plugin descriptor: the one symbol a plugin exports. */
#ifndef NNOPT_PLUGIN_H
#define NNOPT_PLUGIN_H

#include "nnopt/backend.h"
#include "nnopt/host.h"
#include "nnopt/model.h"
#include "nnopt/params.h"
#include "nnopt/program.h"
#include "nnopt/technique.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Load rule: a plugin's abi_major must equal the core's and its abi_minor
 * must not be newer than the core's. Minor bumps only append.
 * 1.1: int8 ops (conv2d_int8, dense_int8), graph_node_info and the run_*
 * entries for calibration and rewriting a trained network. */
#define NNOPT_ABI_MAJOR 1
/* 1.1: backend program_* entries; host API kernel-mode, run_set_dtype and
 * graph-inspection/rewriting entries; int8 ops.
 * 1.2: fused ops batchnorm_relu(_bwd), conv2d_relu, add_relu,
 * conv2d_bwd_data_add, conv2d_add_relu.
 * 1.3: fused ops batchnorm_add_relu, conv2d_bwd_data_add_masked. */
#define NNOPT_ABI_MINOR 3

typedef enum nnopt_plugin_kind {
    NNOPT_PLUGIN_BACKEND = 1,
    NNOPT_PLUGIN_MODEL = 2,
    NNOPT_PLUGIN_TECHNIQUE = 3
} nnopt_plugin_kind;

typedef struct nnopt_plugin_desc {
    uint32_t abi_major, abi_minor;
    uint32_t struct_size; /* sizeof(nnopt_plugin_desc) the plugin was built with */
    nnopt_plugin_kind kind;
    const char *name; /* must match the file name: nnopt_<kind>_<name>.so */
    const char *version;
    const char *description;
    const nnopt_param_spec *params;
    uint32_t n_params;
    /* Optional process-wide setup, called once after loading (not again). */
    nnopt_status (*init)(const nnopt_host_api *host);
    /* The kind's table: nnopt_backend_vtable, nnopt_model_vtable or
     * nnopt_technique_vtable, each starting with its own struct_size. */
    const void *vtable;
} nnopt_plugin_desc;

#define NNOPT_PLUGIN_SYMBOL "nnopt_plugin_descriptor"

#if defined(__GNUC__)
#define NNOPT_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define NNOPT_PLUGIN_EXPORT
#endif

/* Every plugin defines exactly this function, e.g.
 *   NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void)
 *   { return &my_descriptor; } */
typedef const nnopt_plugin_desc *(*nnopt_plugin_desc_fn)(void);
NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void);

static inline const char *nnopt_plugin_kind_name(nnopt_plugin_kind kind) {
    switch (kind) {
    case NNOPT_PLUGIN_BACKEND:
        return "backend";
    case NNOPT_PLUGIN_MODEL:
        return "model";
    case NNOPT_PLUGIN_TECHNIQUE:
        return "technique";
    }
    return "?";
}

#ifdef __cplusplus
}
#endif
#endif
