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
nnopt_status nnopt_dataset_load_idx(const char *images_path, const char *labels_path, int64_t limit,
                                    nnopt_dataset *out, nnopt_error *err);
void nnopt_dataset_free(nnopt_dataset *ds);

/* Fills `order` with 0..n-1 shuffled by a seeded, platform-independent RNG. */
void nnopt_dataset_shuffle(int64_t *order, int64_t n, uint64_t seed);

/* Converts samples order[0..count) to dtype (F32 or F64) into x (count*c*h*w
 * values) and their labels into y. */
void nnopt_dataset_batch(const nnopt_dataset *ds, const int64_t *order, int64_t count,
                         const nnopt_normalize *norm, nnopt_dtype dtype, void *x, int32_t *y);

/* ---- CIFAR-10 binary format (core/dataset_cifar.c) ---- */

#define NNOPT_CIFAR10_RECORD_BYTES 3073 /* 1 label byte + 3 x 32 x 32 pixels (CHW) */

/* Concatenates the records of `count` CIFAR-10 binary batch files. Each file's
 * size must be a whole number of records and every label below 10; errors name
 * the file. limit > 0 keeps only the first `limit` records. */
nnopt_status nnopt_dataset_load_cifar10_files(const char *const *paths, int count, int64_t limit,
                                              nnopt_dataset *out, nnopt_error *err);
/* dir/data_batch_1.bin .. data_batch_5.bin (train != 0) or dir/test_batch.bin. */
nnopt_status nnopt_dataset_load_cifar10(const char *dir, int train, int64_t limit,
                                        nnopt_dataset *out, nnopt_error *err);

/* ---- Image folders (core/dataset_images.c, cache in core/dataset_cache.c) ---- */

/* What an image-folder load did, for messages and tests. */
typedef struct nnopt_image_folder_info {
    int from_cache;        /* 1 when the pixels came from a valid cache file */
    int cache_rebuilt;     /* 1 when a stale or corrupt cache file was replaced */
    char cache_path[4096]; /* the cache file read or written ("" when caching is off) */
    uint64_t classes_hash; /* FNV-1a of the sorted class names: train and test must agree */
} nnopt_image_folder_info;

/* Loads split_dir/<class>/<file>.{jpg,jpeg,png} (case-insensitive extensions;
 * names starting with '.' skipped). Classes are the subfolders sorted by name
 * (label = index); files are sorted by name. JPEG is decoded with libjpeg, PNG
 * with libpng; a corrupt file fails with "PATH: corrupt JPEG: ..." (or PNG).
 * The first image fixes the size and channel count (1 for grayscale, else 3:
 * alpha is dropped); later grayscale/colour images are converted to it, and a
 * different size is an error naming the file.
 *
 * cache_dir: NULL = no cache; otherwise the folder holding the cache file
 * (see nnopt_dataset_default_cache_dir). A valid cache whose source fingerprint
 * (file names, sizes, mtimes) matches is read instead of decoding; a missing,
 * stale or corrupt one is (re)built with a warning, and failing to write it is
 * only a warning. limit > 0 keeps `limit` images taken round-robin over the
 * classes (class 0's first, class 1's first, ..., class 0's second, ...), so a
 * small limit still covers every class. info may be NULL. */
nnopt_status nnopt_dataset_load_image_folder(const char *split_dir, const char *cache_dir,
                                             int64_t limit, nnopt_dataset *out,
                                             nnopt_image_folder_info *info, nnopt_error *err);

/* The default cache folder for a dataset folder: dataset_dir/.nnopt-cache when
 * it can be created and written, else $XDG_CACHE_HOME/nnopt or ~/.cache/nnopt.
 * Writes "" when none is usable. */
void nnopt_dataset_default_cache_dir(const char *dataset_dir, char *out, size_t size);

/* Cache files: a header (magic, version, n/c/h/w/num_classes, fingerprint of
 * the source, FNV-1a-64 checksum of the payload) then the pixels and the labels
 * (little-endian int32). Written to a temporary file, fsynced, then renamed. */
nnopt_status nnopt_dataset_cache_write(const char *path, const nnopt_dataset *ds,
                                       uint64_t source_fingerprint, nnopt_error *err);
/* Reads a cache file; fails (naming the file and saying why: missing, other
 * source, corrupt) unless it is intact and made from source_fingerprint. */
nnopt_status nnopt_dataset_cache_read(const char *path, uint64_t source_fingerprint,
                                      nnopt_dataset *out, nnopt_error *err);

/* ---- Augmentation and normalisation statistics (core/augment.c) ---- */

struct nnopt_rng;

/* Training augmentation, as in the usual CIFAR recipe: a random crop of the
 * original size from the image zero-padded by crop_padding pixels on each side,
 * then a horizontal flip with probability 1/2. */
typedef struct nnopt_augment {
    int32_t crop_padding; /* 0 = no crop */
    int flip;             /* nonzero = random horizontal flip */
} nnopt_augment;

/* One sample's random choices: output pixel (y, x) of the crop comes from input
 * (y + shift_y, x + shift_x) (zero outside the image); then flipped if flip. */
typedef struct nnopt_augment_draw {
    int32_t shift_y, shift_x;
    int flip;
} nnopt_augment_draw;

/* Draws one sample's choices in a fixed order: crop row offset, crop column
 * offset (each uniform in [-padding, padding], only when cropping), then the
 * flip (only when flipping). */
void nnopt_augment_next(const nnopt_augment *aug, struct nnopt_rng *rng, nnopt_augment_draw *draw);

/* Like nnopt_dataset_batch, then each converted sample is cropped and flipped
 * in place with choices drawn, sample by sample, from one nnopt_rng seeded with
 * `seed`. Working on converted values needs no scratch memory; the padding is
 * the value a 0 pixel converts to, i.e. exactly zero-padding the 8-bit image
 * before normalisation (as torchvision's RandomCrop(padding) does). */
void nnopt_dataset_batch_augmented(const nnopt_dataset *ds, const int64_t *order, int64_t count,
                                   const nnopt_normalize *norm, const nnopt_augment *aug,
                                   uint64_t seed, nnopt_dtype dtype, void *x, int32_t *y);

/* Per-channel mean and standard deviation of p * scale over the whole dataset
 * (for [data] mean/std); writes min(c, 4) entries of each. */
void nnopt_dataset_channel_stats(const nnopt_dataset *ds, double scale, double mean[4],
                                 double std[4]);

#endif
