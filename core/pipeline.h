/* Running an experiment's runs in dependency order, with their techniques.
 * struct nnopt_run and struct nnopt_batch are what techniques see (through
 * the host API) as opaque handles. */
#ifndef NNOPT_CORE_PIPELINE_H
#define NNOPT_CORE_PIPELINE_H

#include "data_source.h"
#include "executor.h"
#include "experiment.h"
#include "train.h"

typedef struct nnopt_pipeline nnopt_pipeline;

struct nnopt_run {
    nnopt_pipeline *pipeline;
    int index; /* into the experiment's runs[] */
    const nnopt_run_spec *spec;
    nnopt_graph *graph; /* until the network owns it */
    nnopt_network *net; /* kept after the run for the runs that depend on it */
    nnopt_backend *backend;
    int finished, graph_frozen;
    int in_after_train; /* run_set_dtype is allowed then only */
    void *technique_ctx[NNOPT_MAX_RUN_TECHNIQUES];
    nnopt_exec *predict_exec[2]; /* forward-only executors for run_predict: eval, train mode */
    int64_t predict_batch;
    void *predict_input;    /* the batch converted to this run's dtype (if it differs) */
    double *predict_logits; /* both sized for predict_batch */
    nnopt_kernels kernels;  /* a technique's request, handed to the network when it is made */
};

struct nnopt_batch {
    nnopt_run *run;
    const int64_t *indices;
    int64_t size;
    int classes;
    const void *x; /* the batch's images in the run's dtype */
    nnopt_loss_terms terms;
    double *soft_storage[NNOPT_MAX_SOFT_TERMS];
};

struct nnopt_pipeline {
    const nnopt_experiment *e;
    const nnopt_data *data;
    nnopt_run runs[NNOPT_MAX_RUNS];
};

/* Runs every run of e in dependency order; results[i] is run i's. On
 * failure, results hold nothing (they are freed). */
nnopt_status nnopt_pipeline_run(const nnopt_experiment *e, const nnopt_data *data,
                                nnopt_run_result *results, nnopt_error *err);

/* Host API entries for techniques. */
const char *nnopt_run_name(const nnopt_run *run);
nnopt_graph *nnopt_run_graph(nnopt_run *run);
nnopt_run *nnopt_run_find(nnopt_run *self, const char *name);
nnopt_status nnopt_run_predict(nnopt_run *other, const nnopt_batch *batch, double temperature,
                               int train_mode, double *probs);
int64_t nnopt_run_train_size(const nnopt_run *run);
nnopt_status nnopt_run_set_kernels(nnopt_run *run, const nnopt_program_options *options);
int nnopt_run_kernel_stats(const nnopt_run *run, const char **mode, double *compile_seconds,
                           int *cache_hits, int *cache_misses);
nnopt_status nnopt_run_set_dtype(nnopt_run *run, nnopt_dtype dtype);
int64_t nnopt_batch_size(const nnopt_batch *b);
int nnopt_batch_classes(const nnopt_batch *b);
const int64_t *nnopt_batch_indices(const nnopt_batch *b);
void nnopt_batch_set_label_weight(nnopt_batch *b, double weight);
nnopt_status nnopt_batch_add_soft_targets(nnopt_batch *b, const double *probs, double temperature,
                                          double weight);
/* Calibrating and rewriting a trained run's network (core/run_rewrite.c). */
nnopt_status nnopt_run_calibrate(nnopt_run *run, int64_t batches, double *min, double *max);
nnopt_status nnopt_run_read_state(nnopt_run *run, nnopt_node n, float *values);
nnopt_node nnopt_run_set_state(nnopt_run *run, nnopt_node n, const char *name, nnopt_dtype dtype,
                               int ndim, const int64_t *shape, const void *values);
nnopt_status nnopt_run_drop_state(nnopt_run *run, nnopt_node n);
nnopt_status nnopt_run_set_op(nnopt_run *run, nnopt_node n, const nnopt_op *op,
                              const nnopt_node *inputs, int n_inputs);
nnopt_status nnopt_run_fold_node(nnopt_run *run, nnopt_node n);

#endif
