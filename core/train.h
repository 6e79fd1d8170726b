/* Training and evaluating one model of an experiment. */
#ifndef NNOPT_CORE_TRAIN_H
#define NNOPT_CORE_TRAIN_H

#include "data_source.h"
#include "experiment.h"
#include "network.h"

typedef struct nnopt_epoch_result {
    int epoch; /* 1-based */
    double lr;
    double train_loss;    /* mean over the epoch's batches */
    double train_seconds; /* this epoch's training phase */
    double test_loss;     /* hard-label cross-entropy over the test set */
    double test_accuracy; /* fraction correct */
    double eval_seconds;  /* this epoch's pass over the test set */
} nnopt_epoch_result;

#define NNOPT_MAX_REPORT_COLUMNS 16

typedef struct nnopt_run_result {
    char run[96], model[64], plugin[64], backend[64], backend_description[640], dtype[8];
    char note[256]; /* e.g. that the run fell back to another backend */
    char column_names[NNOPT_MAX_REPORT_COLUMNS][48], column_values[NNOPT_MAX_REPORT_COLUMNS][64];
    int n_columns;
    int64_t params, macs;
    int64_t train_images, test_images, batch;
    int n_epochs;
    nnopt_epoch_result *epochs;
    double train_seconds; /* sum over epochs of the training phase */
    double eval_seconds;  /* the last evaluation pass */
    double test_accuracy; /* after the last epoch */
} nnopt_run_result;

void nnopt_run_result_free(nnopt_run_result *r);

/* Builds the graph of model spec `index` (for checks, parameter counts). */
nnopt_status nnopt_build_model(const nnopt_experiment *e, int index, int c, int h, int w,
                               int num_classes, nnopt_graph **out, nnopt_error *err);

/* The learning rate of epoch (0-based) under the [training] schedule. */
double nnopt_schedule_lr(const nnopt_config *training, int epoch, int epochs);
/* The optimizer a [training] section describes. */
nnopt_optimizer nnopt_optimizer_from(const nnopt_config *training);

/* Accuracy and mean hard-label cross-entropy of network on ds, batch by batch. */
nnopt_status nnopt_evaluate(nnopt_network *net, const nnopt_dataset *ds,
                            const nnopt_normalize *norm, int64_t batch, double *accuracy,
                            double *loss, nnopt_error *err);

#endif
