#include "data_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* How a [data] dataset is stored. */
typedef enum data_format { FORMAT_IDX, FORMAT_CIFAR10, FORMAT_IMAGE_FOLDER } data_format;

static data_format format_of(const char *dataset) {
    if (strcmp(dataset, "cifar10") == 0) return FORMAT_CIFAR10;
    if (strcmp(dataset, "cifar10-jpeg") == 0 || strcmp(dataset, "images") == 0)
        return FORMAT_IMAGE_FOLDER;
    return FORMAT_IDX;
}

/* Whether a candidate folder holds the dataset. IDX folders are taken as they
 * are (missing files are reported by name later); for the others, a folder of
 * that name may hold something else (../shared/data/cifar10 has only the JPEG
 * archive), so the search looks inside. */
static int holds_dataset(const nnopt_config *cfg, data_format format, const char *dir) {
    char probe[4200];
    switch (format) {
    case FORMAT_CIFAR10:
        snprintf(probe, sizeof probe, "%.2048s/data_batch_1.bin", dir);
        if (is_file(probe)) return 1;
        snprintf(probe, sizeof probe, "%.2048s/test_batch.bin", dir);
        return is_file(probe);
    case FORMAT_IMAGE_FOLDER:
        snprintf(probe, sizeof probe, "%.2048s/%.1024s", dir, nnopt_config_get(cfg, "train_split"));
        return is_dir(probe);
    case FORMAT_IDX:
        break;
    }
    return is_dir(dir);
}

/* Candidates for the dataset folder when [data] dir is not given. */
static nnopt_status resolve_dir(const nnopt_config *cfg, char *dir, size_t size, nnopt_error *err) {
    const char *given = nnopt_config_get(cfg, "dir");
    const char *dataset = nnopt_config_get(cfg, "dataset");
    data_format format = format_of(dataset);
    if (given[0]) {
        if (!is_dir(given))
            return nnopt_error_set(err, NNOPT_STATUS_IO, "[data] dir '%s': no such folder", given);
        snprintf(dir, size, "%s", given);
        return NNOPT_OK;
    }
    if (strcmp(dataset, "images") == 0)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "[data] dataset = images needs [data] dir (a folder with "
                               "<split>/<class>/*.jpg or *.png)");
    char candidates[8][1024];
    int n = 0;
    const char *env = getenv("NNOPT_DATA");
    if (env && env[0])
        snprintf(candidates[n++], sizeof candidates[0], "%.900s/%.100s", env, dataset);
    if (format != FORMAT_IMAGE_FOLDER)
        snprintf(candidates[n++], sizeof candidates[0], "../shared/data/%s", dataset);
    snprintf(candidates[n++], sizeof candidates[0], "data/%s", dataset);
    if (strcmp(dataset, "fashion-mnist") == 0)
        snprintf(candidates[n++], sizeof candidates[0], "/usr/share/datasets/fashion-mnist");
    if (format == FORMAT_CIFAR10) {
        /* Where the official cifar-10-binary.tar.gz unpacks to. */
        if (env && env[0])
            snprintf(candidates[n++], sizeof candidates[0], "%.900s/cifar-10-batches-bin", env);
        snprintf(candidates[n++], sizeof candidates[0], "data/cifar-10-batches-bin");
        snprintf(candidates[n++], sizeof candidates[0], "data/cifar10/cifar-10-batches-bin");
    }
    char looked[8600] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (holds_dataset(cfg, format, candidates[i])) {
            snprintf(dir, size, "%.1023s", candidates[i]);
            return NNOPT_OK;
        }
        used += (size_t)snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "",
                                 candidates[i]);
    }
    /* The fetch script's option for this dataset, when it has one. */
    const char *fetch = strcmp(dataset, "cifar10-jpeg") == 0    ? " --cifar10"
                        : strcmp(dataset, "fashion-mnist") == 0 ? " --fashion"
                                                                : "";
    return nnopt_error_set(err, NNOPT_STATUS_IO,
                           "dataset '%s' not found (looked in: %s); run scripts/fetch_data.sh%s or "
                           "set [data] dir or NNOPT_DATA",
                           dataset, looked, fetch);
}

/* dir/name, or dir/name without ".gz" when only the uncompressed file exists. */
static void data_file(const char *dir, const char *name, char *path, size_t size) {
    snprintf(path, size, "%s/%s", dir, name);
    size_t len = strlen(path);
    if (!is_file(path) && len > 3 && strcmp(path + len - 3, ".gz") == 0) {
        path[len - 3] = '\0';
        if (!is_file(path)) path[len - 3] = '.'; /* neither: report the name as written */
    }
}

static nnopt_status load_idx(const nnopt_config *cfg, nnopt_data *out, nnopt_error *err) {
    char images[2048], labels[2048];
    data_file(out->dir, nnopt_config_get(cfg, "train_images"), images, sizeof images);
    data_file(out->dir, nnopt_config_get(cfg, "train_labels"), labels, sizeof labels);
    nnopt_status st = nnopt_dataset_load_idx(
        images, labels, nnopt_config_get_int(cfg, "limit_train"), &out->train, err);
    if (st != NNOPT_OK) return st;
    data_file(out->dir, nnopt_config_get(cfg, "test_images"), images, sizeof images);
    data_file(out->dir, nnopt_config_get(cfg, "test_labels"), labels, sizeof labels);
    return nnopt_dataset_load_idx(images, labels, nnopt_config_get_int(cfg, "limit_test"),
                                  &out->test, err);
}

static nnopt_status load_image_folders(const nnopt_config *cfg, nnopt_data *out, nnopt_error *err) {
    const char *cache = nnopt_config_get(cfg, "cache");
    char cache_dir[4200];
    const char *cache_arg = cache_dir;
    if (strcmp(cache, "off") == 0 || strcmp(cache, "none") == 0)
        cache_arg = NULL;
    else if (cache[0])
        snprintf(cache_dir, sizeof cache_dir, "%s", cache);
    else
        nnopt_dataset_default_cache_dir(out->dir, cache_dir, sizeof cache_dir);
    if (cache_arg && !cache_dir[0]) {
        nnopt_log(NNOPT_LOG_WARN, "%s: no writable cache folder; images are decoded every run",
                  out->dir);
        cache_arg = NULL;
    }
    char train_dir[4400], test_dir[4400];
    snprintf(train_dir, sizeof train_dir, "%s/%s", out->dir, nnopt_config_get(cfg, "train_split"));
    snprintf(test_dir, sizeof test_dir, "%s/%s", out->dir, nnopt_config_get(cfg, "test_split"));
    nnopt_image_folder_info train_info, test_info;
    nnopt_status st = nnopt_dataset_load_image_folder(train_dir, cache_arg,
                                                      nnopt_config_get_int(cfg, "limit_train"),
                                                      &out->train, &train_info, err);
    if (st != NNOPT_OK) return st;
    st = nnopt_dataset_load_image_folder(
        test_dir, cache_arg, nnopt_config_get_int(cfg, "limit_test"), &out->test, &test_info, err);
    if (st == NNOPT_OK && train_info.classes_hash != test_info.classes_hash)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: class folders differ from those of %s (labels would not match)",
                             test_dir, train_dir);
    return st;
}

nnopt_status nnopt_data_load(const nnopt_config *cfg, nnopt_data *out, nnopt_error *err) {
    memset(out, 0, sizeof *out);
    nnopt_status st = resolve_dir(cfg, out->dir, sizeof out->dir, err);
    if (st != NNOPT_OK) return st;
    switch (format_of(nnopt_config_get(cfg, "dataset"))) {
    case FORMAT_IDX:
        st = load_idx(cfg, out, err);
        break;
    case FORMAT_CIFAR10:
        st = nnopt_dataset_load_cifar10(out->dir, 1, nnopt_config_get_int(cfg, "limit_train"),
                                        &out->train, err);
        if (st == NNOPT_OK)
            st = nnopt_dataset_load_cifar10(out->dir, 0, nnopt_config_get_int(cfg, "limit_test"),
                                            &out->test, err);
        break;
    case FORMAT_IMAGE_FOLDER:
        st = load_image_folders(cfg, out, err);
        break;
    }
    if (st != NNOPT_OK) {
        nnopt_data_free(out);
        return st;
    }
    const nnopt_dataset *tr = &out->train, *te = &out->test;
    if (tr->c != te->c || tr->h != te->h || tr->w != te->w)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: training images are %dx%dx%d but test images are %dx%dx%d",
                             out->dir, tr->c, tr->h, tr->w, te->c, te->h, te->w);
    if (st == NNOPT_OK && te->num_classes > tr->num_classes)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: test labels go up to %d but training labels only to %d", out->dir,
                             te->num_classes - 1, tr->num_classes - 1);
    out->norm.scale = nnopt_config_get_float(cfg, "scale");
    double mean[4], std[4];
    int n_mean = nnopt_config_get_float_list(cfg, "mean", mean, 4);
    int n_std = nnopt_config_get_float_list(cfg, "std", std, 4);
    if (st == NNOPT_OK && ((n_mean != 1 && n_mean != tr->c) || (n_std != 1 && n_std != tr->c)))
        st = nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                             "[data] mean and std need 1 or %d values (one per channel)", tr->c);
    for (int c = 0; c < 4; c++) {
        out->norm.mean[c] = mean[n_mean == 1 ? 0 : (c < n_mean ? c : 0)];
        out->norm.std[c] = std[n_std == 1 ? 0 : (c < n_std ? c : 0)];
    }
    out->augment.crop_padding = (int32_t)nnopt_config_get_int(cfg, "augment_crop");
    out->augment.flip = nnopt_config_get_bool(cfg, "augment_flip");
    if (st != NNOPT_OK) nnopt_data_free(out);
    return st;
}

void nnopt_data_free(nnopt_data *d) {
    nnopt_dataset_free(&d->train);
    nnopt_dataset_free(&d->test);
}

void nnopt_data_train_batch(const nnopt_data *d, const int64_t *order, int64_t count,
                            nnopt_dtype dtype, void *x, int32_t *y, uint64_t batch_seed) {
    nnopt_dataset_batch_augmented(&d->train, order, count, &d->norm, &d->augment, batch_seed, dtype,
                                  x, y);
}
