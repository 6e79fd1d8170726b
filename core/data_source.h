/* Resolving the [data] section to files and loading the datasets. */
#ifndef NNOPT_CORE_DATA_SOURCE_H
#define NNOPT_CORE_DATA_SOURCE_H

#include "config.h"
#include "dataset.h"

typedef struct nnopt_data {
    nnopt_dataset train, test;
    nnopt_normalize norm;
    char dir[4096];        /* where the files were found */
    nnopt_augment augment; /* applied to training batches ([data] augment_*) */
} nnopt_data;

nnopt_status nnopt_data_load(const nnopt_config *data_cfg, nnopt_data *out, nnopt_error *err);
void nnopt_data_free(nnopt_data *d);

/* A training batch: samples order[0..count) converted to dtype, with the
 * [data] section's training augmentation (if any) drawn from batch_seed. */
void nnopt_data_train_batch(const nnopt_data *d, const int64_t *order, int64_t count,
                            nnopt_dtype dtype, void *x, int32_t *y, uint64_t batch_seed);

#endif
