/* The host API: the one table of core functions a plugin may call. Plugins
 * link nothing of the core; they get this table in init() and in every
 * create/build call. Append-only: new entries go at the end, so a plugin
 * built against an older minor keeps working; a plugin that uses an entry
 * added after ABI 1.0 checks first that struct_size covers it. */
#ifndef NNOPT_HOST_H
#define NNOPT_HOST_H

#include <stdarg.h>
#include "nnopt/ops.h"
#include "nnopt/params.h"
#include "nnopt/program.h"
#include "nnopt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nnopt_log_level {
    NNOPT_LOG_ERROR = 0,
    NNOPT_LOG_WARN,
    NNOPT_LOG_INFO,
    NNOPT_LOG_DEBUG
} nnopt_log_level;

/* Graph under construction (opaque) and node handles within it (< 0: invalid). */
typedef struct nnopt_graph nnopt_graph;
typedef int32_t nnopt_node;

/* A run of a pipeline, and the training batch being processed (opaque; for
 * techniques). */
typedef struct nnopt_run nnopt_run;
typedef struct nnopt_batch nnopt_batch;

typedef enum nnopt_init_kind {
    NNOPT_INIT_ZEROS = 0,
    NNOPT_INIT_ONES,
    NNOPT_INIT_GLOROT_UNIFORM, /* U(+-sqrt(6 / (fan_in + fan_out))) */
    NNOPT_INIT_KAIMING_NORMAL, /* N(0, sqrt(2 / fan_in)) */
    NNOPT_INIT_LECUN_UNIFORM,  /* U(+-1 / sqrt(fan_in)), PyTorch's default */
    NNOPT_INIT_IDENTITY        /* [K,C,...]: 1 where k == c at the first tap, else 0 */
} nnopt_init_kind;

#define NNOPT_FMT_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* What a node is, as techniques see it (ABI 1.1). */
typedef enum nnopt_node_role {
    NNOPT_ROLE_INPUT = 0,
    NNOPT_ROLE_PARAM,  /* trained state */
    NNOPT_ROLE_BUFFER, /* state that is not trained (batch-norm statistics) */
    NNOPT_ROLE_OP,     /* computes info.op from its inputs */
    NNOPT_ROLE_VIEW    /* shares its first input's values (flatten, a folded op) */
} nnopt_node_role;

#define NNOPT_NODE_INFO_MAX_INPUTS 5

typedef struct nnopt_node_info {
    nnopt_node_role role;
    const char *name; /* valid while the graph is unchanged */
    nnopt_op op;      /* ROLE_OP: the forward op and its parameters */
    int32_t inputs[NNOPT_NODE_INFO_MAX_INPUTS];
    int n_inputs;
    int ndim;
    int64_t shape[NNOPT_MAX_DIMS]; /* the batch dimension as 1 for activations */
    nnopt_dtype dtype;             /* state: its tensor's (once it has one); else the graph's */
    int consumers;                 /* nodes reading it, plus one when it is the output */
    int has_tensor;                /* state: whether the network holds its values */
} nnopt_node_info;

typedef struct nnopt_host_api {
    uint32_t struct_size;
    uint32_t abi_major, abi_minor;

    /* Logging; messages go to stderr with the plugin's name. */
    void (*log)(nnopt_log_level level, const char *fmt, ...) NNOPT_FMT_PRINTF(2, 3);
    /* Explain the failure a plugin is about to return: the core prints this
     * message next to the status (one per thread, last one wins). */
    void (*set_error)(const char *fmt, ...) NNOPT_FMT_PRINTF(1, 2);

    /* Resolved parameters (declared in the plugin's schema, so they exist). */
    int64_t (*config_int)(const nnopt_config *cfg, const char *name);
    double (*config_float)(const nnopt_config *cfg, const char *name);
    int (*config_bool)(const nnopt_config *cfg, const char *name);
    const char *(*config_string)(const nnopt_config *cfg, const char *name);
    /* Writes up to max values, returns how many the list holds. */
    int (*config_int_list)(const nnopt_config *cfg, const char *name, int64_t *out, int max);

    /* Name <-> kind of activations ("relu", "gelu", "gelu_erf", "tanh",
     * "sigmoid", "relu6", "identity"); -1 for an unknown name. */
    int (*act_from_name)(const char *name);

    /* Graph building (models). Shapes are inferred; errors are kept in the
     * graph and reported by the core, and every later call returns -1. */
    nnopt_node (*graph_input)(nnopt_graph *g, nnopt_dtype dtype);
    int (*graph_num_classes)(const nnopt_graph *g);
    nnopt_node (*graph_param)(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                              nnopt_init_kind init);
    nnopt_node (*graph_conv2d)(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node bias,
                               const nnopt_conv2d_params *p); /* bias < 0: none */
    nnopt_node (*graph_pool2d)(nnopt_graph *g, nnopt_node x, const nnopt_pool2d_params *p);
    nnopt_node (*graph_dense)(nnopt_graph *g, nnopt_node x, nnopt_node w, nnopt_node bias);
    nnopt_node (*graph_act)(nnopt_graph *g, nnopt_node x, nnopt_act_kind kind);
    nnopt_node (*graph_flatten)(nnopt_graph *g, nnopt_node x);
    nnopt_node (*graph_add)(nnopt_graph *g, nnopt_node a, nnopt_node b);
    /* Shape of a node (batch dimension included, as 1); returns ndim or -1. */
    int (*graph_shape)(const nnopt_graph *g, nnopt_node n, int64_t shape[NNOPT_MAX_DIMS]);
    /* Batch normalization of x over every axis but 1, with learnable
     * NAME.weight (ones) and NAME.bias (zeros) and running statistics
     * NAME.running_mean / NAME.running_var. momentum in PyTorch's
     * convention (0.1 = running stats keep 90%). */
    nnopt_node (*graph_batchnorm)(nnopt_graph *g, const char *name, nnopt_node x, double eps,
                                  double momentum);
    /* Inverted dropout with drop probability p while training; identity at inference. */
    nnopt_node (*graph_dropout)(nnopt_graph *g, nnopt_node x, double p);
    /* Average over H and W: [N,C,H,W] -> [N,C]. */
    nnopt_node (*graph_global_avg_pool)(nnopt_graph *g, nnopt_node x);
    /* Like graph_param, but never trained (fixed weights, statistics). */
    nnopt_node (*graph_buffer)(nnopt_graph *g, const char *name, int ndim, const int64_t *shape,
                               nnopt_init_kind init);

    /* Graph inspection and rewriting (techniques, before training). */
    int (*graph_node_count)(const nnopt_graph *g);
    /* The activation kind of node n, or -1 when n is not an activation. */
    int (*graph_node_act)(const nnopt_graph *g, nnopt_node n);
    nnopt_status (*graph_set_act)(nnopt_graph *g, nnopt_node n, nnopt_act_kind kind);
    nnopt_dtype (*graph_dtype)(const nnopt_graph *g);
    nnopt_status (*graph_set_dtype)(nnopt_graph *g, nnopt_dtype dtype);

    /* Runs (techniques). */
    const char *(*run_name)(const nnopt_run *run);
    /* The run's graph (rewritable in before_train only). */
    nnopt_graph *(*run_graph)(nnopt_run *run);
    /* A finished run of the same pipeline, by name; NULL if none. */
    nnopt_run *(*run_find)(nnopt_run *self, const char *name);
    /* Softmax probabilities at `temperature` of finished run `other` on the
     * images of `batch`: [batch_size, classes] doubles. The other run uses
     * its own backend and dtype; its batch norm uses running statistics
     * unless train_mode is set. */
    nnopt_status (*run_predict)(nnopt_run *other, const nnopt_batch *batch, double temperature,
                                int train_mode, double *probs);
    /* Number of training images (sample indices are below it). */
    int64_t (*run_train_size)(const nnopt_run *run);

    /* The batch (techniques' batch_loss). */
    int64_t (*batch_size)(const nnopt_batch *b);
    int (*batch_classes)(const nnopt_batch *b);
    /* Training-set index of each sample, for per-sample caches. */
    const int64_t *(*batch_indices)(const nnopt_batch *b);
    /* Weight of the cross-entropy with the labels (1 unless changed; 0 removes it). */
    void (*batch_set_label_weight)(nnopt_batch *b, double weight);
    /* Adds weight * cross-entropy(probs, softmax(logits / temperature)) to the loss. */
    nnopt_status (*batch_add_soft_targets)(nnopt_batch *b, const double *probs, double temperature,
                                           double weight);

    /* ---- ABI 1.1 (check struct_size before use) ---- */
    /* Kernel mode of a run (techniques, before_train): NULL options =
     * precompiled (op by op, the default); otherwise the run's executors
     * record their forward pass as a program and ask the backend to compile
     * it with these options (copied). */
    nnopt_status (*run_set_kernels)(nnopt_run *run, const nnopt_program_options *options);
    /* Totals over the run's compiled programs so far; 0 and *mode "precompiled"
     * when none was compiled (including a fallback). Returns the number of
     * programs compiled or loaded. */
    int (*run_kernel_stats)(const nnopt_run *run, const char **mode, double *compile_seconds,
                            int *cache_hits, int *cache_misses);
    /* Writes size bytes to path through a temp file, fsync and rename
     * (readers never see a partial file); creates missing folders. */
    nnopt_status (*write_file_atomic)(const char *path, const void *data, size_t size);
    /* In after_train only: moves the run's trained network to another float
     * dtype (values rounded to nearest even); the run is then evaluated in
     * it. Fails, with a reason, when the backend lacks a forward op in it. */
    nnopt_status (*run_set_dtype)(nnopt_run *run, nnopt_dtype dtype);
    /* Inspecting a graph and rewriting a trained network (techniques'
     * after_train: post-training quantisation). */
    nnopt_status (*graph_node_info)(const nnopt_graph *g, nnopt_node n, nnopt_node_info *info);
    /* Runs the run's network in inference mode (batch norm on running
     * statistics) on its first `batches` training batches (in order, no
     * augmentation) and writes, for every node, the smallest and largest
     * value it produced (graph_node_count entries each; 0 for state). */
    nnopt_status (*run_calibrate)(nnopt_run *run, int64_t batches, double *min, double *max);
    /* A state node's values as floats (numel of its shape). */
    nnopt_status (*run_read_state)(nnopt_run *run, nnopt_node n, float *values);
    /* Gives state node n new values of another dtype and shape (its
     * gradient and optimiser state are dropped: no training follows), or,
     * with n < 0, adds a buffer `name` holding them. Returns the node or -1. */
    nnopt_node (*run_set_state)(nnopt_run *run, nnopt_node n, const char *name, nnopt_dtype dtype,
                                int ndim, const int64_t *shape, const void *values);
    /* Frees a state node's tensor once no op reads it (the model shrinks). */
    nnopt_status (*run_drop_state)(nnopt_run *run, nnopt_node n);
    /* Replaces op node n's op and inputs; its output shape stays. */
    nnopt_status (*run_set_op)(nnopt_run *run, nnopt_node n, const nnopt_op *op,
                               const nnopt_node *inputs, int n_inputs);
    /* Op node n becomes a view of its first input, whose shape it has: an
     * op folded into the one producing its input. */
    nnopt_status (*run_fold_node)(nnopt_run *run, nnopt_node n);
} nnopt_host_api;

#ifdef __cplusplus
}
#endif
#endif
