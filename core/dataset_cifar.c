/* Loading the CIFAR-10 binary format: files of 3073-byte records, each a label
 * byte followed by 32 x 32 red, green and blue planes (already CHW).
 *
 * The format has no header, so the file size is the only integrity check we
 * get: a size that is not a whole number of records (a cut-off download) or a
 * label of 10 or more (a different format, e.g. CIFAR-100) is reported with
 * the file's name rather than silently producing shifted images. */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR10_CLASSES 10
#define CIFAR10_SIDE 32
#define CIFAR10_PIXELS (3 * CIFAR10_SIDE * CIFAR10_SIDE)
#define CIFAR10_TRAIN_FILES 5

/* Number of whole records in `path`, or an error naming it. */
static nnopt_status cifar_record_count(const char *path, int64_t *records, nnopt_error *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: not a regular file", path);
    int64_t size = (int64_t)st.st_size;
    if (size == 0)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: empty CIFAR-10 batch file", path);
    if (size % NNOPT_CIFAR10_RECORD_BYTES != 0)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: truncated or not a CIFAR-10 batch: %" PRId64
                               " bytes is not a whole number of %d-byte records (%" PRId64
                               " records and %" PRId64 " bytes over)",
                               path, size, NNOPT_CIFAR10_RECORD_BYTES,
                               size / NNOPT_CIFAR10_RECORD_BYTES,
                               size % NNOPT_CIFAR10_RECORD_BYTES);
    *records = size / NNOPT_CIFAR10_RECORD_BYTES;
    return NNOPT_OK;
}

/* Reads `records` records of `path` into pixels/labels (room for them). */
static nnopt_status cifar_read_records(const char *path, int64_t records, uint8_t *pixels,
                                       int32_t *labels, nnopt_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    nnopt_status st = NNOPT_OK;
    uint8_t record[NNOPT_CIFAR10_RECORD_BYTES];
    for (int64_t r = 0; r < records; r++) {
        if (fread(record, 1, sizeof record, f) != sizeof record) {
            st = nnopt_error_set(err, NNOPT_STATUS_IO,
                                 ferror(f) ? "%s: read error in record %" PRId64
                                           : "%s: truncated while reading record %" PRId64,
                                 path, r);
            break;
        }
        if (record[0] >= CIFAR10_CLASSES) {
            st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                 "%s: record %" PRId64 " has label %d (CIFAR-10 labels are 0..9)",
                                 path, r, record[0]);
            break;
        }
        labels[r] = record[0];
        memcpy(pixels + r * CIFAR10_PIXELS, record + 1, CIFAR10_PIXELS);
    }
    fclose(f);
    return st;
}

nnopt_status nnopt_dataset_load_cifar10_files(const char *const *paths, int count, int64_t limit,
                                              nnopt_dataset *out, nnopt_error *err) {
    if (!out)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "nnopt_dataset_load_cifar10_files: out is NULL");
    memset(out, 0, sizeof *out);
    if (!paths || count <= 0)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "nnopt_dataset_load_cifar10_files: no files given");

    /* Every file's size is checked before anything is read, so a truncated
     * fifth batch fails at once instead of after reading the first four. */
    int64_t total = 0;
    for (int i = 0; i < count; i++) {
        int64_t records = 0;
        nnopt_status st = cifar_record_count(paths[i], &records, err);
        if (st != NNOPT_OK) return st;
        total += records;
    }
    int64_t keep = limit > 0 && limit < total ? limit : total;

    uint8_t *pixels = malloc((size_t)keep * CIFAR10_PIXELS);
    int32_t *labels = malloc((size_t)keep * sizeof *labels);
    if (!pixels || !labels) {
        free(pixels);
        free(labels);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                               "%s: out of memory for %" PRId64 " CIFAR-10 images", paths[0], keep);
    }
    int64_t have = 0;
    for (int i = 0; i < count && have < keep; i++) {
        int64_t records = 0;
        nnopt_status st = cifar_record_count(paths[i], &records, err);
        if (st == NNOPT_OK) {
            if (records > keep - have) records = keep - have;
            st = cifar_read_records(paths[i], records, pixels + have * CIFAR10_PIXELS,
                                    labels + have, err);
        }
        if (st != NNOPT_OK) {
            free(pixels);
            free(labels);
            return st;
        }
        have += records;
    }
    out->n = keep;
    out->c = 3;
    out->h = CIFAR10_SIDE;
    out->w = CIFAR10_SIDE;
    out->num_classes = CIFAR10_CLASSES; /* fixed by the format, whatever `limit` keeps */
    out->pixels = pixels;
    out->labels = labels;
    return NNOPT_OK;
}

nnopt_status nnopt_dataset_load_cifar10(const char *dir, int train, int64_t limit,
                                        nnopt_dataset *out, nnopt_error *err) {
    char names[CIFAR10_TRAIN_FILES][4200];
    const char *paths[CIFAR10_TRAIN_FILES];
    int count = train ? CIFAR10_TRAIN_FILES : 1;
    for (int i = 0; i < count; i++) {
        if (train)
            snprintf(names[i], sizeof names[i], "%.4096s/data_batch_%d.bin", dir, i + 1);
        else
            snprintf(names[i], sizeof names[i], "%.4096s/test_batch.bin", dir);
        paths[i] = names[i];
    }
    return nnopt_dataset_load_cifar10_files(paths, count, limit, out, err);
}
