/* An experiment: an INI file validated against the core's section schemas
 * and the plugins' parameter schemas, with its plugins loaded. */
#ifndef NNOPT_CORE_EXPERIMENT_H
#define NNOPT_CORE_EXPERIMENT_H

#include "config.h"
#include "ini_file.h"
#include "plugin_loader.h"

#define NNOPT_MAX_MODELS 16

typedef struct nnopt_model_spec {
    char name[64]; /* from [model NAME]; "model" for a plain [model] */
    char section[80];
    const nnopt_plugin *plugin;
    nnopt_config *cfg;
} nnopt_model_spec;

typedef struct nnopt_experiment {
    nnopt_ini ini;
    char name[128];
    char output_dir[1024]; /* runs/<name> unless [experiment] output says otherwise */
    nnopt_config *experiment, *plugins, *data, *training;
    nnopt_plugin_search search;
    const nnopt_plugin *backend;
    nnopt_config *backend_cfg;
    nnopt_model_spec models[NNOPT_MAX_MODELS];
    int n_models;
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
