/* Technique plugins: hooks at defined points of a run's pipeline.
 *
 * A run trains one model on one backend. For each of its techniques (in INI
 * order) the core calls, where the plugin provides them:
 *   create -> dependencies -> before_train (graph rewrites: activations,
 *   dtype) -> [ before_epoch -> batch_loss per batch -> after_epoch ] per
 *   epoch -> after_train -> report -> destroy.
 * A technique with `epochs = a-b` in its section is only active in those
 * epochs (1-based, inclusive); outside them its epoch and batch hooks are
 * skipped. The host API's run_* and batch_* functions give access to the
 * run, to finished runs (a teacher) and to the loss of the current batch. */
#ifndef NNOPT_TECHNIQUE_H
#define NNOPT_TECHNIQUE_H

#include "nnopt/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Receives one report column (e.g. "teacher_seconds", "4.21"). */
typedef void (*nnopt_report_column_fn)(void *sink, const char *name, const char *value);

typedef struct nnopt_technique_vtable {
    uint32_t struct_size;
    nnopt_status (*create)(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx);
    void (*destroy)(void *ctx);
    /* Optional hooks (NULL = not used). */
    /* Runs that must have finished before this one starts (a teacher):
     * writes up to max names, returns how many. */
    int (*dependencies)(void *ctx, const char **names, int max);
    nnopt_status (*before_train)(void *ctx, nnopt_run *run);
    nnopt_status (*before_epoch)(void *ctx, nnopt_run *run, int epoch);
    /* Adds or replaces loss terms of the batch about to be trained. */
    nnopt_status (*batch_loss)(void *ctx, nnopt_run *run, nnopt_batch *batch);
    nnopt_status (*after_epoch)(void *ctx, nnopt_run *run, int epoch);
    nnopt_status (*after_train)(void *ctx, nnopt_run *run);
    void (*report)(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink);
} nnopt_technique_vtable;

#ifdef __cplusplus
}
#endif
#endif
