#include "report.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "report_svg.h"

typedef struct report_ctx {
    const nnopt_experiment *e;
    const char *data_dir;
    const nnopt_run_result *runs;
    int n_runs;
} report_ctx;

/* A speed-up, or null (JSON has no infinity) when the run did not take that
 * phase at all: an evaluated-only run (epochs = 0) has no training time. */
static void json_speedup(FILE *f, double base_seconds, double run_seconds) {
    if (run_seconds > 0)
        fprintf(f, "%.6f", base_seconds / run_seconds);
    else
        fputs("null", f);
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_json(FILE *f, void *user) {
    const report_ctx *r = user;
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"experiment\": ");
    json_string(f, r->e->name);
    fprintf(f, ",\n  \"config\": ");
    json_string(f, r->e->ini.path);
    fprintf(f, ",\n  \"data\": ");
    json_string(f, r->data_dir);
    fprintf(
        f,
        ",\n  \"finished\": \"%s\",\n  \"environment\": {\"nnopt\": \"%s\", \"abi\": \"%d.%d\", "
        "\"compiler\": ",
        date, NNOPT_VERSION, NNOPT_ABI_MAJOR, NNOPT_ABI_MINOR);
    json_string(f, __VERSION__);
    fprintf(f, "},\n  \"runs\": [");
    for (int i = 0; i < r->n_runs; i++) {
        const nnopt_run_result *run = &r->runs[i];
        fprintf(f, "%s\n    {\"run\": ", i ? "," : "");
        json_string(f, run->run);
        fprintf(f, ", \"model\": ");
        json_string(f, run->model);
        fprintf(f, ", \"note\": ");
        json_string(f, run->note);
        fprintf(f, ", \"columns\": {");
        for (int c = 0; c < run->n_columns; c++) {
            fprintf(f, "%s", c ? ", " : "");
            json_string(f, run->column_names[c]);
            fprintf(f, ": ");
            json_string(f, run->column_values[c]);
        }
        fprintf(f, "}");
        fprintf(f, ", \"plugin\": ");
        json_string(f, run->plugin);
        fprintf(f, ", \"backend\": ");
        json_string(f, run->backend);
        fprintf(f, ", \"backend_description\": ");
        json_string(f, run->backend_description);
        fprintf(f,
                ", \"dtype\": \"%s\", \"parameters\": %lld, \"macs_per_image\": %lld, "
                "\"train_images\": %lld, \"test_images\": %lld, \"batch\": %lld,\n     "
                "\"train_seconds\": %.6f, \"eval_seconds\": %.6f, \"test_accuracy\": %.6f,\n     "
                "\"epochs\": [",
                run->dtype, (long long)run->params, (long long)run->macs,
                (long long)run->train_images, (long long)run->test_images, (long long)run->batch,
                run->train_seconds, run->eval_seconds, run->test_accuracy);
        for (int k = 0; k < run->n_epochs; k++) {
            const nnopt_epoch_result *ep = &run->epochs[k];
            fprintf(f,
                    "%s\n       {\"epoch\": %d, \"lr\": %g, \"train_loss\": %.6f, "
                    "\"train_seconds\": %.6f, \"test_loss\": %.6f, \"test_accuracy\": %.6f, "
                    "\"eval_seconds\": %.6f}",
                    k ? "," : "", ep->epoch, ep->lr, ep->train_loss, ep->train_seconds,
                    ep->test_loss, ep->test_accuracy, ep->eval_seconds);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ],\n  \"comparisons\": [");
    for (int c = 0; c < r->e->n_compares; c++) {
        const nnopt_compare_spec *cmp = &r->e->compares[c];
        const nnopt_run_result *base = &r->runs[cmp->runs[cmp->baseline]];
        fprintf(f, "%s\n    {\"name\": ", c ? "," : "");
        json_string(f, cmp->name);
        fprintf(f, ", \"baseline\": ");
        json_string(f, base->run);
        fprintf(f, ", \"rows\": [");
        for (int k = 0; k < cmp->n_runs; k++) {
            const nnopt_run_result *run = &r->runs[cmp->runs[k]];
            fprintf(f, "%s{\"run\": ", k ? ", " : "");
            json_string(f, run->run);
            fprintf(f, ", \"training_speedup\": ");
            json_speedup(f, base->train_seconds, run->train_seconds);
            fprintf(f, ", \"inference_speedup\": ");
            json_speedup(f, base->eval_seconds, run->eval_seconds);
            fprintf(f, ", \"accuracy_delta\": %.6f}", run->test_accuracy - base->test_accuracy);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
}

static void write_csv(FILE *f, void *user) {
    const report_ctx *r = user;
    fprintf(f, "run,model,plugin,backend,dtype,parameters,epoch,lr,train_loss,train_seconds,"
               "test_loss,test_accuracy,eval_seconds\n");
    for (int i = 0; i < r->n_runs; i++) {
        const nnopt_run_result *run = &r->runs[i];
        for (int k = 0; k < run->n_epochs; k++) {
            const nnopt_epoch_result *ep = &run->epochs[k];
            fprintf(f, "%s,%s,%s,%s,%s,%lld,%d,%g,%.6f,%.6f,%.6f,%.6f,%.6f\n", run->run, run->model,
                    run->plugin, run->backend, run->dtype, (long long)run->params, ep->epoch,
                    ep->lr, ep->train_loss, ep->train_seconds, ep->test_loss, ep->test_accuracy,
                    ep->eval_seconds);
        }
    }
}

void nnopt_report_table(const nnopt_run_result *runs, int n_runs, FILE *f) {
    /* Technique columns: the union of every run's, in first-seen order. */
    char names[NNOPT_MAX_REPORT_COLUMNS][48];
    int n_names = 0;
    for (int i = 0; i < n_runs; i++)
        for (int c = 0; c < runs[i].n_columns; c++) {
            int seen = 0;
            for (int k = 0; k < n_names; k++) seen |= !strcmp(names[k], runs[i].column_names[c]);
            if (!seen && n_names < NNOPT_MAX_REPORT_COLUMNS)
                snprintf(names[n_names++], sizeof names[0], "%s", runs[i].column_names[c]);
        }
    fprintf(f, "| run | model | backend | dtype | parameters | epochs | training time (s) | "
               "inference time (s) | test accuracy |");
    for (int k = 0; k < n_names; k++) fprintf(f, " %s |", names[k]);
    fprintf(f, "\n|---|---|---|---|---:|---:|---:|---:|---:|");
    for (int k = 0; k < n_names; k++) fprintf(f, "---:|");
    fputc('\n', f);
    for (int i = 0; i < n_runs; i++) {
        const nnopt_run_result *r = &runs[i];
        fprintf(f, "| %s | %s (%s) | %s%s | %s | %lld | %d | %.3f | %.4f | %.4f |", r->run,
                r->model, r->plugin, r->backend, r->note[0] ? " *" : "", r->dtype,
                (long long)r->params, r->n_epochs, r->train_seconds, r->eval_seconds,
                r->test_accuracy);
        for (int k = 0; k < n_names; k++) {
            const char *v = "";
            for (int c = 0; c < r->n_columns; c++)
                if (!strcmp(r->column_names[c], names[k])) v = r->column_values[c];
            fprintf(f, " %s |", v);
        }
        fputc('\n', f);
    }
    for (int i = 0; i < n_runs; i++)
        if (runs[i].note[0]) fprintf(f, "\n\\* %s: %s\n", runs[i].run, runs[i].note);
}

void nnopt_report_compare(const nnopt_experiment *e, const nnopt_compare_spec *c,
                          const nnopt_run_result *runs, FILE *f) {
    const nnopt_run_result *base = &runs[c->runs[c->baseline]];
    fprintf(f, "| run | backend | dtype | training time (s) | inference time (s) | test accuracy | "
               "training speed-up | inference speed-up | accuracy change |\n");
    fprintf(f, "|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < c->n_runs; k++) {
        const nnopt_run_result *r = &runs[c->runs[k]];
        char training[32] = "n/a"; /* an evaluated-only run did not train */
        if (r->train_seconds > 0)
            snprintf(training, sizeof training, "%.2fx", base->train_seconds / r->train_seconds);
        fprintf(f, "| %s%s | %s | %s | %.3f | %.4f | %.4f | %s | %.2fx | %+.4f |\n", r->run,
                k == c->baseline ? " (baseline)" : "", r->backend, r->dtype, r->train_seconds,
                r->eval_seconds, r->test_accuracy, training, base->eval_seconds / r->eval_seconds,
                r->test_accuracy - base->test_accuracy);
    }
    (void)e;
}

static void write_markdown(FILE *f, void *user) {
    const report_ctx *r = user;
    fprintf(f, "# %s\n\n", r->e->name);
    const char *description = nnopt_config_get(r->e->experiment, "description");
    if (description[0]) fprintf(f, "%s\n\n", description);
    fprintf(f, "Charts: `accuracy_*.svg` (accuracy per epoch), `accuracy_vs_time.svg`.\n\n");
    fprintf(f,
            "Config: `%s`; data: `%s`. Training time is the wall clock of the training "
            "phase over all epochs; inference time is one pass over the %lld test images.\n\n",
            r->e->ini.path, r->data_dir, r->n_runs ? (long long)r->runs[0].test_images : 0LL);
    nnopt_report_table(r->runs, r->n_runs, f);
    for (int c = 0; c < r->e->n_compares; c++) {
        const nnopt_compare_spec *cmp = &r->e->compares[c];
        fprintf(f,
                "\n## Comparison: %s\n\nSpeed-ups are the baseline's time divided by the run's "
                "(above 1: faster than %s).\n\n",
                cmp->name, r->runs[cmp->runs[cmp->baseline]].run);
        nnopt_report_compare(r->e, cmp, r->runs, f);
    }
    for (int i = 0; i < r->n_runs; i++) {
        const nnopt_run_result *run = &r->runs[i];
        fprintf(f, "\n## %s: accuracy per epoch\n\nBackend: %s (%s).\n\n", run->run, run->backend,
                run->backend_description);
        fprintf(f,
                "| epoch | lr | train loss | test loss | test accuracy | train (s) | eval (s) |\n");
        fprintf(f, "|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int k = 0; k < run->n_epochs; k++) {
            const nnopt_epoch_result *ep = &run->epochs[k];
            fprintf(f, "| %d | %g | %.4f | %.4f | %.4f | %.3f | %.4f |\n", ep->epoch, ep->lr,
                    ep->train_loss, ep->test_loss, ep->test_accuracy, ep->train_seconds,
                    ep->eval_seconds);
        }
    }
}

typedef struct chart {
    const report_ctx *r;
    const char *title;
    const int *which;
    int n;
} chart;

static void write_curves(FILE *f, void *user) {
    const chart *c = user;
    nnopt_svg_accuracy_curves(f, c->title, c->r->runs, c->which, c->n);
}

static void write_vs_time(FILE *f, void *user) {
    const chart *c = user;
    nnopt_svg_accuracy_vs_time(f, c->title, c->r->runs, c->r->n_runs);
}

/* Charts: accuracy per epoch for each comparison (or all runs), and accuracy
 * against time for every run. Names are reduced to [A-Za-z0-9_-]. */
static nnopt_status write_charts(const report_ctx *r, nnopt_error *err) {
    const nnopt_experiment *e = r->e;
    char path[4200], title[256];
    int all[NNOPT_MAX_RUNS];
    for (int i = 0; i < r->n_runs; i++) all[i] = i;
    nnopt_status st = NNOPT_OK;
    int charts = e->n_compares > 0 ? e->n_compares : 1;
    for (int c = 0; st == NNOPT_OK && c < charts; c++) {
        const nnopt_compare_spec *cmp = e->n_compares > 0 ? &e->compares[c] : NULL;
        char name[64];
        snprintf(name, sizeof name, "%s", cmp ? cmp->name : "runs");
        for (char *p = name; *p; p++)
            if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
                  ((*p | 32) >= 'a' && (*p | 32) <= 'z')))
                *p = '_';
        snprintf(path, sizeof path, "%s/accuracy_%s.svg", e->output_dir, name);
        snprintf(title, sizeof title, "%s: test accuracy per epoch", cmp ? cmp->name : e->name);
        chart ch = {r, title, cmp ? cmp->runs : all, cmp ? cmp->n_runs : r->n_runs};
        st = nnopt_write_atomic(path, write_curves, &ch, err);
    }
    if (st != NNOPT_OK) return st;
    snprintf(path, sizeof path, "%s/accuracy_vs_time.svg", e->output_dir);
    snprintf(title, sizeof title, "%s: accuracy against training and inference time", e->name);
    chart ch = {r, title, all, r->n_runs};
    return nnopt_write_atomic(path, write_vs_time, &ch, err);
}

static void write_config(FILE *f, void *user) {
    const report_ctx *r = user;
    nnopt_experiment_write_config(r->e, f);
}

nnopt_status nnopt_report_write(const nnopt_experiment *e, const char *data_dir,
                                const nnopt_run_result *runs, int n_runs, nnopt_error *err) {
    report_ctx ctx = {e, data_dir, runs, n_runs};
    nnopt_status st = nnopt_mkdirs(e->output_dir, err);
    static const struct {
        const char *name;
        void (*write)(FILE *, void *);
    } files[] = {{"config.ini", write_config},
                 {"results.json", write_json},
                 {"results.csv", write_csv},
                 {"report.md", write_markdown}};
    for (size_t i = 0; st == NNOPT_OK && i < sizeof files / sizeof *files; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", e->output_dir, files[i].name);
        st = nnopt_write_atomic(path, files[i].write, &ctx, err);
    }
    return st == NNOPT_OK ? write_charts(&ctx, err) : st;
}
