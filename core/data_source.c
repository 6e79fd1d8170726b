#include "data_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Candidates for the dataset folder when [data] dir is not given. */
static nnopt_status resolve_dir(const nnopt_config *cfg, char *dir, size_t size, nnopt_error *err) {
    const char *given = nnopt_config_get(cfg, "dir");
    const char *dataset = nnopt_config_get(cfg, "dataset");
    if (given[0]) {
        if (!is_dir(given))
            return nnopt_error_set(err, NNOPT_STATUS_IO, "[data] dir '%s': no such folder", given);
        snprintf(dir, size, "%s", given);
        return NNOPT_OK;
    }
    char candidates[4][1024];
    int n = 0;
    const char *env = getenv("NNOPT_DATA");
    if (env && env[0]) snprintf(candidates[n++], sizeof candidates[0], "%.900s/%.100s", env, dataset);
    snprintf(candidates[n++], sizeof candidates[0], "../shared/data/%s", dataset);
    snprintf(candidates[n++], sizeof candidates[0], "data/%s", dataset);
    if (strcmp(dataset, "fashion-mnist") == 0)
        snprintf(candidates[n++], sizeof candidates[0], "/usr/share/datasets/fashion-mnist");
    char looked[4200] = "";
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (is_dir(candidates[i])) {
            snprintf(dir, size, "%s", candidates[i]);
            return NNOPT_OK;
        }
        used += (size_t)snprintf(looked + used, sizeof looked - used, "%s%s", i ? ", " : "",
                                 candidates[i]);
    }
    return nnopt_error_set(err, NNOPT_STATUS_IO,
                           "dataset '%s' not found (looked in: %s); run scripts/fetch_data.sh or "
                           "set [data] dir or NNOPT_DATA",
                           dataset, looked);
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

nnopt_status nnopt_data_load(const nnopt_config *cfg, nnopt_data *out, nnopt_error *err) {
    memset(out, 0, sizeof *out);
    nnopt_status st = resolve_dir(cfg, out->dir, sizeof out->dir, err);
    if (st != NNOPT_OK) return st;
    char images[2048], labels[2048];
    data_file(out->dir, nnopt_config_get(cfg, "train_images"), images, sizeof images);
    data_file(out->dir, nnopt_config_get(cfg, "train_labels"), labels, sizeof labels);
    st = nnopt_dataset_load_idx(images, labels, nnopt_config_get_int(cfg, "limit_train"),
                                &out->train, err);
    if (st != NNOPT_OK) return st;
    data_file(out->dir, nnopt_config_get(cfg, "test_images"), images, sizeof images);
    data_file(out->dir, nnopt_config_get(cfg, "test_labels"), labels, sizeof labels);
    st = nnopt_dataset_load_idx(images, labels, nnopt_config_get_int(cfg, "limit_test"), &out->test,
                                err);
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
    if (st != NNOPT_OK) nnopt_data_free(out);
    return st;
}

void nnopt_data_free(nnopt_data *d) {
    nnopt_dataset_free(&d->train);
    nnopt_dataset_free(&d->test);
}

void nnopt_data_train_batch(const nnopt_data *d, const int64_t *order, int64_t count,
                            nnopt_dtype dtype, void *x, int32_t *y, uint64_t batch_seed) {
    (void)batch_seed; /* no augmentation for IDX data */
    nnopt_dataset_batch(&d->train, order, count, &d->norm, dtype, x, y);
}
