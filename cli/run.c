/* nnopt run / nnopt check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "data_source.h"
#include "experiment.h"
#include "pipeline.h"
#include "report.h"

static int fail(const nnopt_error *err) {
    fprintf(stderr, "nnopt: error: %s\n", err->message);
    return 1;
}

int nnopt_cmd_run(int argc, char **argv, int check_only) {
    const char *path = NULL;
    const char **overrides = calloc((size_t)argc + 1, sizeof *overrides);
    int n_overrides = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            overrides[n_overrides++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            overrides[n_overrides++] = argv[i] + 6;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "nnopt: unexpected argument '%s'\n", argv[i]);
            free(overrides);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "usage: nnopt %s FILE.ini [--set section.key=value]...\n",
                check_only ? "check" : "run");
        free(overrides);
        return 2;
    }
    nnopt_error err = {0};
    nnopt_experiment e;
    nnopt_data data = {0};
    nnopt_run_result *results = NULL;
    int rc = 0;
    nnopt_status st = nnopt_experiment_load(path, overrides, n_overrides, &e, &err);
    free(overrides);
    if (st == NNOPT_OK) st = nnopt_data_load(e.data, &data, &err);
    if (st == NNOPT_OK)
        fprintf(stderr, "nnopt: %s: %lld training and %lld test images of %dx%dx%d from %s\n",
                e.name, (long long)data.train.n, (long long)data.test.n, data.train.c, data.train.h,
                data.train.w, data.dir);
    /* Build every model first: a broken one fails before anything trains. */
    for (int i = 0; st == NNOPT_OK && i < e.n_models; i++) {
        nnopt_graph *g = NULL;
        st = nnopt_build_model(&e, i, data.train.c, data.train.h, data.train.w,
                               data.train.num_classes, &g, &err);
        if (st == NNOPT_OK && check_only)
            printf("model '%s' (%s): %lld parameters, %s\n", e.models[i].name,
                   e.models[i].plugin->desc->name, (long long)nnopt_graph_param_count(g),
                   nnopt_dtype_name(g->dtype));
        nnopt_graph_free(g);
    }
    if (st == NNOPT_OK && check_only) {
        printf("%s: OK (%d run%s:", path, e.n_runs, e.n_runs == 1 ? "" : "s");
        for (int k = 0; k < e.n_runs; k++) printf(" %s", e.runs[e.order[k]].name);
        printf("; output %s)\n", e.output_dir);
    } else if (st == NNOPT_OK) {
        results = calloc((size_t)e.n_runs, sizeof *results);
        st = results ? nnopt_pipeline_run(&e, &data, results, &err)
                     : nnopt_error_set(&err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        if (st == NNOPT_OK) st = nnopt_report_write(&e, data.dir, results, e.n_runs, &err);
        if (st == NNOPT_OK) {
            nnopt_report_table(results, e.n_runs, stdout);
            for (int c = 0; c < e.n_compares; c++) {
                printf("\n%s (baseline %s):\n", e.compares[c].name,
                       e.runs[e.compares[c].runs[e.compares[c].baseline]].name);
                nnopt_report_compare(&e, &e.compares[c], results, stdout);
            }
            printf("\nresults: %s/{report.md,results.json,results.csv,config.ini}\n", e.output_dir);
        }
    }
    if (st != NNOPT_OK) rc = fail(&err);
    for (int i = 0; results && i < e.n_runs; i++) nnopt_run_result_free(&results[i]);
    free(results);
    nnopt_data_free(&data);
    if (e.ini.path) nnopt_experiment_free(&e);
    return rc;
}
