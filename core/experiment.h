/* An experiment: an INI file validated against the core's section schemas
 * and the plugins' parameter schemas, with its plugins loaded and its runs
 * resolved (sweeps expanded, dependencies ordered). */
#ifndef NNOPT_CORE_EXPERIMENT_H
#define NNOPT_CORE_EXPERIMENT_H

#include "config.h"
#include "ini_file.h"
#include "plugin_loader.h"

#define NNOPT_MAX_SPECS 16
#define NNOPT_MAX_RUNS 32
#define NNOPT_MAX_RUN_TECHNIQUES 8
#define NNOPT_MAX_DEPS 8

/* A [backend NAME], [model NAME] or [technique NAME] section. */
typedef struct nnopt_plugin_spec {
    char name[64];    /* NAME; "default" for a plain [backend], "model" for [model] */
    char section[80]; /* the section as written, for messages */
    int line;
    const nnopt_plugin *plugin;
    nnopt_config *cfg;
    /* Backends: another backend to use when this one cannot run here. */
    const nnopt_plugin *fallback;
    nnopt_config *fallback_cfg;
    /* Backends: ops it cannot run deny the run, or run on the reference
     * backend `op_plugin` (nnopt_op_fallback, backend.h). */
    int op_fallback;
    const nnopt_plugin *op_plugin;
    nnopt_config *op_cfg;
    /* Techniques: active epochs (1-based, inclusive; 0 = unbounded). */
    int epoch_from, epoch_to;
} nnopt_plugin_spec;

typedef struct nnopt_run_spec {
    char name[96];
    char section[80];
    int line;
    int model, backend; /* indices into models[] and backends[] */
    int techniques[NNOPT_MAX_RUN_TECHNIQUES], n_techniques;
    nnopt_config *training;           /* [training] with the run's own overrides */
    int init_from;                    /* run index whose final weights start this one; -1: none */
    int deps[NNOPT_MAX_DEPS], n_deps; /* runs that must finish first */
    char load_checkpoint[512];        /* start from these weights (safetensors) */
    char save_checkpoint[512];        /* write the final weights here */
} nnopt_run_spec;

typedef struct nnopt_compare_spec {
    char name[64];
    int line;
    int runs[NNOPT_MAX_RUNS], n_runs;
    int baseline; /* index into runs[] of this comparison */
} nnopt_compare_spec;

typedef struct nnopt_experiment {
    nnopt_ini ini;
    char name[128];
    char output_dir[1024]; /* runs/<name> unless [experiment] output says otherwise */
    nnopt_config *experiment, *plugins, *data, *training;
    nnopt_plugin_search search;
    nnopt_plugin_spec backends[NNOPT_MAX_SPECS], models[NNOPT_MAX_SPECS],
        techniques[NNOPT_MAX_SPECS];
    int n_backends, n_models, n_techniques;
    nnopt_run_spec runs[NNOPT_MAX_RUNS];
    int n_runs;
    int order[NNOPT_MAX_RUNS]; /* run indices in an order that honours dependencies */
    nnopt_compare_spec compares[NNOPT_MAX_SPECS];
    int n_compares;
} nnopt_experiment;

/* Reads and validates path with the --set overrides applied. Every missing
 * plugin is reported (one per line of err's message) before failing. */
nnopt_status nnopt_experiment_load(const char *path, const char *const *overrides, int n_overrides,
                                   nnopt_experiment *out, nnopt_error *err);
void nnopt_experiment_free(nnopt_experiment *e);

/* Writes the resolved configuration (every key, defaults filled) as INI. */
void nnopt_experiment_write_config(const nnopt_experiment *e, FILE *f);

/* Schemas of the core's own sections, for docs and `nnopt check`. */
extern const nnopt_param_spec nnopt_experiment_schema[];
extern const int nnopt_experiment_schema_count;
extern const nnopt_param_spec nnopt_plugins_schema[];
extern const int nnopt_plugins_schema_count;
extern const nnopt_param_spec nnopt_data_schema[];
extern const int nnopt_data_schema_count;
extern const nnopt_param_spec nnopt_training_schema[];
extern const int nnopt_training_schema_count;

#endif
