/* Results of an experiment: results.json, results.csv, report.md and the
 * resolved config.ini in the experiment's output folder. All are written
 * only once every run has finished, each atomically. */
#ifndef NNOPT_CORE_REPORT_H
#define NNOPT_CORE_REPORT_H

#include "experiment.h"
#include "train.h"

nnopt_status nnopt_report_write(const nnopt_experiment *e, const char *data_dir,
                                const nnopt_run_result *runs, int n_runs, nnopt_error *err);

/* The report's table, in Markdown (also printed at the end of `nnopt run`). */
void nnopt_report_table(const nnopt_run_result *runs, int n_runs, FILE *f);
/* One [compare] section's table: times, accuracy and multipliers against its baseline. */
void nnopt_report_compare(const nnopt_experiment *e, const nnopt_compare_spec *c,
                          const nnopt_run_result *runs, FILE *f);

#endif
