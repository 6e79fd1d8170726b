/* SVG charts for reports: accuracy per epoch (the study's "training
 * process" figures) and accuracy against training and inference time. */
#ifndef NNOPT_CORE_REPORT_SVG_H
#define NNOPT_CORE_REPORT_SVG_H

#include <stdio.h>
#include "train.h"

/* Test accuracy per epoch, one line per run in `which` (indices into runs). */
void nnopt_svg_accuracy_curves(FILE *f, const char *title, const nnopt_run_result *runs,
                               const int *which, int n);

/* Two panels: accuracy against training time, and against inference time. */
void nnopt_svg_accuracy_vs_time(FILE *f, const char *title, const nnopt_run_result *runs, int n);

#endif
