/* Knowledge distillation from an earlier run of the pipeline (the teacher).
 *
 * form = study: what the study did. The teacher's softmax at temperature 1 is
 * computed for every training batch and the student's loss is the
 * cross-entropy against it, with no hard-label term and no T^2 factor.
 * form = hinton: alpha * T^2 * cross-entropy(teacher at T, student at T)
 * + (1 - alpha) * cross-entropy with the labels. Cross-entropy and KL differ
 * by the teacher's entropy, a constant, so the gradients are Hinton's; the
 * reported loss includes that constant.
 *
 * The teacher keeps its own backend and dtype (run_predict converts the
 * images). With cache = true its probabilities are kept per training sample
 * and computed only the first time a sample is seen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec distillation_params[] = {
    {"teacher", NNOPT_PARAM_STRING, NULL, "the run whose predictions the student learns from", NULL,
     0, 0},
    {"form", NNOPT_PARAM_ENUM, "study",
     "study: cross-entropy with the teacher's softmax at T=1, no label term; hinton: alpha*T^2*KL "
     "at T + (1-alpha)*cross-entropy with the labels",
     "study|hinton", 0, 0},
    {"temperature", NNOPT_PARAM_FLOAT, "1", "softmax temperature (hinton; the study form uses 1)",
     NULL, 1e-3, 1e3},
    {"alpha", NNOPT_PARAM_FLOAT, "0.9", "weight of the teacher term (hinton only)", NULL, 0, 1},
    {"cache", NNOPT_PARAM_BOOL, "false",
     "false: teacher predictions for every batch, as the study did; true: once per training "
     "image, reused in later epochs (the first prediction of an augmented image is kept)",
     NULL, 0, 0},
    {"teacher_mode", NNOPT_PARAM_ENUM, "train",
     "batch norm of the teacher: train = batch statistics, as the study's teacher ran; eval = "
     "running statistics",
     "eval|train", 0, 0},
};

typedef struct distillation {
    const nnopt_host_api *host;
    char teacher_name[128];
    int hinton, cache, train_mode;
    double temperature, alpha;
    nnopt_run *teacher; /* resolved in before_train */
    double *probs;      /* one batch of teacher probabilities */
    int64_t probs_count;
    /* cache = true: probabilities per training sample, and which are filled. */
    double *cached;
    unsigned char *have;
    int64_t train_size, cached_samples;
    int classes;
    /* Wall clock of the teacher's predictions and of the training phase. */
    double teacher_seconds, train_seconds, epoch_start;
} distillation;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    const char *teacher = host->config_string(cfg, "teacher");
    if (!teacher[0]) {
        host->set_error("distillation: 'teacher' must name a run");
        return NNOPT_STATUS_CONFIG;
    }
    distillation *d = calloc(1, sizeof *d);
    if (!d) return NNOPT_STATUS_OUT_OF_MEMORY;
    d->host = host;
    snprintf(d->teacher_name, sizeof d->teacher_name, "%s", teacher);
    d->hinton = strcmp(host->config_string(cfg, "form"), "hinton") == 0;
    d->cache = host->config_bool(cfg, "cache");
    d->train_mode = strcmp(host->config_string(cfg, "teacher_mode"), "train") == 0;
    d->temperature = host->config_float(cfg, "temperature");
    d->alpha = host->config_float(cfg, "alpha");
    if (!d->hinton && d->temperature != 1) {
        /* The study form has no temperature; a silent T would be a different loss. */
        host->set_error("distillation: form = study uses temperature 1 (got %g); use form = hinton "
                        "for a softened teacher",
                        d->temperature);
        free(d);
        return NNOPT_STATUS_CONFIG;
    }
    *out = d;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    distillation *d = ctx;
    if (!d) return;
    free(d->probs);
    free(d->cached);
    free(d->have);
    free(d);
}

static int dependencies(void *ctx, const char **names, int max) {
    distillation *d = ctx;
    if (max < 1) return 0;
    names[0] = d->teacher_name;
    return 1;
}

static nnopt_status before_train(void *ctx, nnopt_run *run) {
    distillation *d = ctx;
    const nnopt_host_api *h = d->host;
    d->teacher = h->run_find(run, d->teacher_name);
    if (!d->teacher) {
        h->set_error("teacher run '%s' has not finished before run '%s' (is it a run of this "
                     "experiment?)",
                     d->teacher_name, h->run_name(run));
        return NNOPT_STATUS_CONFIG;
    }
    d->train_size = h->run_train_size(run);
    d->teacher_seconds = d->train_seconds = 0;
    return NNOPT_OK;
}

static nnopt_status before_epoch(void *ctx, nnopt_run *run, int epoch) {
    distillation *d = ctx;
    (void)run;
    (void)epoch;
    d->epoch_start = now_seconds();
    return NNOPT_OK;
}

static nnopt_status after_epoch(void *ctx, nnopt_run *run, int epoch) {
    distillation *d = ctx;
    (void)run;
    (void)epoch;
    d->train_seconds += now_seconds() - d->epoch_start;
    return NNOPT_OK;
}

static nnopt_status predict(distillation *d, const nnopt_batch *b, double *probs) {
    const nnopt_host_api *h = d->host;
    nnopt_status st = h->run_predict(d->teacher, b, d->temperature, d->train_mode, probs);
    if (st != NNOPT_OK)
        h->set_error("predicting with teacher run '%s' failed (status %d)", d->teacher_name,
                     (int)st);
    return st;
}

/* Teacher probabilities of the batch from the per-sample cache; samples not
 * seen before are predicted (the whole batch at once) and stored. */
static nnopt_status cached_probs(distillation *d, const nnopt_batch *b, int64_t n, int classes) {
    const nnopt_host_api *h = d->host;
    if (!d->cached) {
        d->cached = malloc((size_t)(d->train_size * classes) * sizeof *d->cached);
        d->have = calloc((size_t)d->train_size, 1);
        d->classes = classes;
        if (!d->cached || !d->have) {
            h->set_error("distillation: no memory for the teacher cache (%lld samples)",
                         (long long)d->train_size);
            return NNOPT_STATUS_OUT_OF_MEMORY;
        }
    }
    const int64_t *index = h->batch_indices(b);
    int missing = 0;
    for (int64_t i = 0; i < n && !missing; i++) {
        if (index[i] < 0 || index[i] >= d->train_size) {
            h->set_error("distillation: sample index %lld outside the training set",
                         (long long)index[i]);
            return NNOPT_STATUS_INTERNAL;
        }
        missing = !d->have[index[i]];
    }
    if (missing) {
        nnopt_status st = predict(d, b, d->probs);
        if (st != NNOPT_OK) return st;
    }
    size_t row = (size_t)classes * sizeof(double);
    for (int64_t i = 0; i < n; i++) {
        double *slot = d->cached + index[i] * classes;
        if (d->have[index[i]]) {
            memcpy(d->probs + i * classes, slot, row);
        } else {
            memcpy(slot, d->probs + i * classes, row);
            d->have[index[i]] = 1;
            d->cached_samples++;
        }
    }
    return NNOPT_OK;
}

static nnopt_status batch_loss(void *ctx, nnopt_run *run, nnopt_batch *b) {
    distillation *d = ctx;
    const nnopt_host_api *h = d->host;
    (void)run;
    int64_t n = h->batch_size(b);
    int classes = h->batch_classes(b);
    if (n * classes > d->probs_count) {
        free(d->probs);
        d->probs = malloc((size_t)(n * classes) * sizeof *d->probs);
        d->probs_count = d->probs ? n * classes : 0;
        if (!d->probs) {
            h->set_error("distillation: out of memory");
            return NNOPT_STATUS_OUT_OF_MEMORY;
        }
    }
    double start = now_seconds();
    nnopt_status st = d->cache ? cached_probs(d, b, n, classes) : predict(d, b, d->probs);
    d->teacher_seconds += now_seconds() - start;
    if (st != NNOPT_OK) return st;
    if (!d->hinton) {
        h->batch_set_label_weight(b, 0);
        st = h->batch_add_soft_targets(b, d->probs, 1.0, 1.0);
    } else {
        double soft_weight = d->alpha * d->temperature * d->temperature;
        h->batch_set_label_weight(b, 1 - d->alpha);
        /* A soft term of weight 0 is simply left out (the loss op reads 0 as 1). */
        if (soft_weight > 0)
            st = h->batch_add_soft_targets(b, d->probs, d->temperature, soft_weight);
    }
    if (st != NNOPT_OK) h->set_error("distillation: the batch's loss cannot take another term");
    return st;
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    distillation *d = ctx;
    (void)run;
    char value[64];
    column(sink, "teacher", d->teacher_name);
    if (d->hinton)
        snprintf(value, sizeof value, "hinton T=%g alpha=%g", d->temperature, d->alpha);
    else
        snprintf(value, sizeof value, "study (T=1, no labels)");
    column(sink, "distillation", value);
    snprintf(value, sizeof value, "%.3f", d->teacher_seconds);
    column(sink, "teacher_seconds", value);
    if (d->train_seconds > 0)
        snprintf(value, sizeof value, "%.1f%%", 100 * d->teacher_seconds / d->train_seconds);
    else
        snprintf(value, sizeof value, "-");
    column(sink, "teacher_share", value);
    if (d->cache) {
        snprintf(value, sizeof value, "%lld of %lld", (long long)d->cached_samples,
                 (long long)d->train_size);
        column(sink, "teacher_cached", value);
    }
}

static const nnopt_technique_vtable distillation_vtable = {
    .struct_size = sizeof(nnopt_technique_vtable),
    .create = create,
    .destroy = destroy,
    .dependencies = dependencies,
    .before_train = before_train,
    .before_epoch = before_epoch,
    .batch_loss = batch_loss,
    .after_epoch = after_epoch,
    .report = report,
};

static const nnopt_plugin_desc distillation_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "distillation",
    .version = "1.0.0",
    .description = "knowledge distillation from an earlier run (the study's loss or Hinton's)",
    .params = distillation_params,
    .n_params = sizeof distillation_params / sizeof distillation_params[0],
    .vtable = &distillation_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &distillation_descriptor;
}
