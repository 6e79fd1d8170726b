/* Resolving the [data] section to files and loading the datasets. */
#ifndef NNOPT_CORE_DATA_SOURCE_H
#define NNOPT_CORE_DATA_SOURCE_H

#include "config.h"
#include "dataset.h"

typedef struct nnopt_data {
    nnopt_dataset train, test;
    nnopt_normalize norm;
    char dir[4096]; /* where the files were found */
} nnopt_data;

nnopt_status nnopt_data_load(const nnopt_config *data_cfg, nnopt_data *out, nnopt_error *err);
void nnopt_data_free(nnopt_data *d);

#endif
