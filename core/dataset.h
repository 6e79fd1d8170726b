/* In-memory image classification datasets and batch preparation. */
#ifndef NNOPT_CORE_DATASET_H
#define NNOPT_CORE_DATASET_H

#include <stdint.h>
#include "error.h"
#include "nnopt/types.h"

/* n images of c x h x w 8-bit pixels, stored NCHW, with labels in [0, num_classes). */
typedef struct nnopt_dataset {
    int64_t n;
    int32_t c, h, w;
    int32_t num_classes;
    uint8_t *pixels;
    int32_t *labels;
} nnopt_dataset;

/* How 8-bit pixels become network inputs: x = (p * scale - mean[c]) / std[c]. */
typedef struct nnopt_normalize {
    double scale; /* usually 1/255 */
    double mean[4], std[4];
} nnopt_normalize;

/* Reads an IDX image file (magic 0x00000803, u8, dims n x rows x cols) and an
 * IDX label file (magic 0x00000801) that may be gzip-compressed (detected by
 * content, not name). Validates magic numbers, dimensions, that counts match,
 * file lengths (truncated or trailing bytes), and label range. limit > 0 keeps
 * only the first `limit` samples. Errors name the file. */
nnopt_status nnopt_dataset_load_idx(const char *images_path, const char *labels_path,
                                    int64_t limit, nnopt_dataset *out, nnopt_error *err);
void nnopt_dataset_free(nnopt_dataset *ds);

/* Fills `order` with 0..n-1 shuffled by a seeded, platform-independent RNG. */
void nnopt_dataset_shuffle(int64_t *order, int64_t n, uint64_t seed);

/* Converts samples order[0..count) to dtype (F32 or F64) into x (count*c*h*w
 * values) and their labels into y. */
void nnopt_dataset_batch(const nnopt_dataset *ds, const int64_t *order, int64_t count,
                         const nnopt_normalize *norm, nnopt_dtype dtype, void *x, int32_t *y);

#endif
