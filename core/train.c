#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "executor.h"
#include "log.h"
#include "progress.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

nnopt_status nnopt_build_model(const nnopt_experiment *e, int index, int c, int h, int w,
                               int num_classes, nnopt_graph **out, nnopt_error *err) {
    const nnopt_model_spec *m = &e->models[index];
    nnopt_graph *g = nnopt_graph_create(c, h, w, num_classes);
    if (!g) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    const nnopt_model_vtable *vt = m->plugin->desc->vtable;
    nnopt_node logits = -1;
    nnopt_plugin_error_take();
    nnopt_status st = vt->build(nnopt_host_api_get(), m->cfg, g, &logits);
    if (st != NNOPT_OK) {
        const char *why = nnopt_plugin_error_take();
        nnopt_error_set(err, st, "[%s] model '%s': %s", m->section, m->plugin->desc->name,
                        why[0] ? why : g->err.status ? g->err.message : nnopt_status_name(st));
    } else {
        nnopt_error graph_err = {0};
        st = nnopt_graph_finish(g, logits, &graph_err);
        if (st != NNOPT_OK)
            nnopt_error_set(err, st, "[%s] model '%s': %s", m->section, m->plugin->desc->name,
                            graph_err.message);
    }
    if (st != NNOPT_OK) {
        nnopt_graph_free(g);
        return st;
    }
    *out = g;
    return NNOPT_OK;
}

static double schedule_lr(const nnopt_config *t, int epoch /* 0-based */, int epochs) {
    double lr = nnopt_config_get_float(t, "lr");
    const char *kind = nnopt_config_get(t, "lr_schedule");
    if (strcmp(kind, "step") == 0)
        return lr * pow(nnopt_config_get_float(t, "lr_gamma"),
                        (double)(epoch / nnopt_config_get_int(t, "lr_step")));
    if (strcmp(kind, "cosine") == 0)
        return 0.5 * lr * (1 + cos(3.141592653589793 * epoch / (epochs > 0 ? epochs : 1)));
    return lr;
}

static nnopt_optimizer optimizer_from(const nnopt_config *t) {
    nnopt_optimizer o = {0};
    o.kind = strcmp(nnopt_config_get(t, "optimizer"), "adam") == 0 ? NNOPT_OPTIMIZER_ADAM
                                                                   : NNOPT_OPTIMIZER_SGD;
    o.momentum = nnopt_config_get_float(t, "momentum");
    o.nesterov = nnopt_config_get_bool(t, "nesterov");
    o.weight_decay = nnopt_config_get_float(t, "weight_decay");
    o.beta1 = nnopt_config_get_float(t, "beta1");
    o.beta2 = nnopt_config_get_float(t, "beta2");
    o.eps = nnopt_config_get_float(t, "eps");
    return o;
}

nnopt_status nnopt_evaluate(nnopt_network *net, const nnopt_dataset *ds, const nnopt_normalize *norm,
                            int64_t batch, double *accuracy, double *loss, nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    if (batch > ds->n) batch = ds->n;
    nnopt_exec *ex = NULL;
    nnopt_status st = nnopt_exec_create(net, batch, 0, &ex, err);
    if (st != NNOPT_OK) return st;
    size_t esize = nnopt_dtype_size(g->dtype);
    int64_t per_image = (int64_t)ds->c * ds->h * ds->w, classes = g->num_classes;
    void *x = calloc((size_t)(batch * per_image), esize);
    void *logits = malloc((size_t)(batch * classes) * esize);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    int64_t *order = malloc((size_t)batch * sizeof *order);
    if (!x || !logits || !y || !order) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    int64_t correct = 0;
    double loss_sum = 0;
    for (int64_t start = 0; st == NNOPT_OK && start < ds->n; start += batch) {
        /* The last batch may be partial: the rest of the tensor keeps stale
         * rows, computed but not counted (rows are independent at inference). */
        int64_t count = ds->n - start < batch ? ds->n - start : batch;
        for (int64_t i = 0; i < count; i++) order[i] = start + i;
        nnopt_dataset_batch(ds, order, count, norm, g->dtype, x, y);
        st = nnopt_exec_forward(ex, x, err);
        if (st == NNOPT_OK) st = nnopt_exec_read_logits(ex, logits, err);
        for (int64_t i = 0; st == NNOPT_OK && i < count; i++) {
            double row[1024], max = -INFINITY, sum = 0;
            int best = 0;
            for (int64_t k = 0; k < classes && k < 1024; k++) {
                row[k] = g->dtype == NNOPT_F64 ? ((double *)logits)[i * classes + k]
                                               : ((float *)logits)[i * classes + k];
                if (row[k] > max) max = row[k], best = (int)k;
            }
            for (int64_t k = 0; k < classes && k < 1024; k++) sum += exp(row[k] - max);
            loss_sum += log(sum) + max - row[y[i]];
            correct += best == y[i];
        }
    }
    if (st == NNOPT_OK) {
        *accuracy = (double)correct / (double)ds->n;
        *loss = loss_sum / (double)ds->n;
    }
    free(x);
    free(logits);
    free(y);
    free(order);
    nnopt_exec_free(ex);
    return st;
}

typedef struct trainer {
    const nnopt_experiment *e;
    const nnopt_data *data;
    const char *model_name;
    uint64_t seed;
    nnopt_network *net;
    nnopt_exec *ex;
    nnopt_optimizer opt;
    int64_t batch, per_image;
    int64_t *order;
    void *x;
    int32_t *y;
    nnopt_progress progress;
} trainer;

static nnopt_status train_epoch(trainer *t, int epoch, int epochs, double lr, double *mean_loss,
                                nnopt_error *err) {
    const nnopt_dataset *ds = &t->data->train;
    const nnopt_config *tc = t->e->training;
    if (nnopt_config_get_bool(tc, "shuffle"))
        nnopt_dataset_shuffle(t->order, ds->n,
                              (uint64_t)nnopt_config_get_int(tc, "seed") * 7919u + (uint64_t)epoch);
    else
        for (int64_t i = 0; i < ds->n; i++) t->order[i] = i;
    int64_t batches = ds->n / t->batch; /* the last partial batch is dropped */
    double loss_sum = 0;
    nnopt_progress_begin(&t->progress, epoch + 1, epochs, batches);
    for (int64_t b = 0; b < batches; b++) {
        nnopt_data_train_batch(t->data, t->order + b * t->batch, t->batch, t->net->graph->dtype,
                               t->x, t->y, t->seed * 1000003u + (uint64_t)epoch * 100003u + (uint64_t)b);
        double loss = 0;
        nnopt_status st = nnopt_exec_forward(t->ex, t->x, err);
        if (st == NNOPT_OK) st = nnopt_exec_backward(t->ex, t->y, &loss, err);
        if (st == NNOPT_OK && !isfinite(loss))
            st = nnopt_error_set(err, NNOPT_STATUS_NUMERIC,
                                 "model '%s': training diverged: loss is %g at epoch %d, batch "
                                 "%lld (lr %g); lower [training] lr",
                                 t->model_name, loss, epoch + 1, (long long)b + 1, lr);
        if (st == NNOPT_OK) st = nnopt_network_step(t->net, &t->opt, lr, err);
        if (st != NNOPT_OK) {
            nnopt_progress_abort(&t->progress);
            return st;
        }
        loss_sum += loss;
        nnopt_progress_update(&t->progress, b + 1, loss_sum / (double)(b + 1));
    }
    *mean_loss = batches ? loss_sum / (double)batches : 0;
    return NNOPT_OK;
}

nnopt_status nnopt_train_model(const nnopt_experiment *e, int index, const nnopt_data *data,
                               nnopt_run_result *out, nnopt_error *err) {
    memset(out, 0, sizeof *out);
    const nnopt_model_spec *m = &e->models[index];
    const nnopt_config *tc = e->training;
    const nnopt_dataset *train = &data->train;
    trainer t = {.e = e, .data = data, .model_name = m->name, .opt = optimizer_from(tc)};
    t.batch = nnopt_config_get_int(tc, "batch");
    if (t.batch > train->n)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "[training] batch %lld is larger than the %lld training images",
                               (long long)t.batch, (long long)train->n);
    nnopt_graph *g = NULL;
    nnopt_status st = nnopt_build_model(e, index, train->c, train->h, train->w,
                                        train->num_classes, &g, err);
    if (st != NNOPT_OK) return st;
    nnopt_backend *backend = NULL;
    st = nnopt_backend_open(e->backend, e->backend_cfg, &backend, err);
    if (st != NNOPT_OK) {
        nnopt_graph_free(g);
        return st;
    }
    uint64_t seed = (uint64_t)nnopt_config_get_int(tc, "seed");
    t.seed = seed;
    st = nnopt_network_create(g, backend, seed, &t.net, err);
    if (st == NNOPT_OK) st = nnopt_network_prepare_training(t.net, &t.opt, err);
    if (st == NNOPT_OK) st = nnopt_exec_create(t.net, t.batch, 1, &t.ex, err);

    snprintf(out->model, sizeof out->model, "%s", m->name);
    snprintf(out->plugin, sizeof out->plugin, "%s", m->plugin->desc->name);
    snprintf(out->backend, sizeof out->backend, "%s", e->backend->desc->name);
    snprintf(out->backend_description, sizeof out->backend_description, "%s", backend->description);
    if (st == NNOPT_OK) {
        snprintf(out->dtype, sizeof out->dtype, "%s", nnopt_dtype_name(t.net->graph->dtype));
        out->params = nnopt_graph_param_count(t.net->graph);
        out->macs = nnopt_graph_forward_macs(t.net->graph);
        nnopt_log(NNOPT_LOG_INFO, "model '%s' (%s, %s): %lld parameters, %.2f M multiply-adds per image; backend %s: %s",
                  m->name, m->plugin->desc->name, out->dtype, (long long)out->params,
                  (double)out->macs / 1e6, out->backend, backend->description);
    }
    out->train_images = train->n;
    out->test_images = data->test.n;
    out->batch = t.batch;
    int epochs = (int)nnopt_config_get_int(tc, "epochs");
    int64_t eval_batch = nnopt_config_get_int(tc, "eval_batch");
    t.per_image = (int64_t)train->c * train->h * train->w;
    out->epochs = calloc((size_t)(epochs ? epochs : 1), sizeof *out->epochs);
    t.order = malloc((size_t)train->n * sizeof *t.order);
    if (st == NNOPT_OK) {
        t.x = malloc((size_t)(t.batch * t.per_image) * nnopt_dtype_size(t.net->graph->dtype));
        t.y = malloc((size_t)t.batch * sizeof *t.y);
    }
    if (st == NNOPT_OK && (!out->epochs || !t.order || !t.x || !t.y))
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    const char *progress = nnopt_config_get(tc, "progress");
    nnopt_progress_init(&t.progress, m->name,
                        strcmp(progress, "on") == 0 ? 1 : strcmp(progress, "off") == 0 ? 0 : -1);

    for (int ep = 0; st == NNOPT_OK && ep < epochs; ep++) {
        nnopt_epoch_result *r = &out->epochs[ep];
        r->epoch = ep + 1;
        r->lr = schedule_lr(tc, ep, epochs);
        double start = now_seconds();
        st = train_epoch(&t, ep, epochs, r->lr, &r->train_loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(backend, err);
        r->train_seconds = now_seconds() - start;
        if (st != NNOPT_OK) break;
        start = now_seconds();
        st = nnopt_evaluate(t.net, &data->test, &data->norm, eval_batch, &r->test_accuracy,
                            &r->test_loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(backend, err);
        r->eval_seconds = now_seconds() - start;
        if (st != NNOPT_OK) break;
        out->n_epochs = ep + 1;
        out->train_seconds += r->train_seconds;
        out->eval_seconds = r->eval_seconds;
        out->test_accuracy = r->test_accuracy;
        nnopt_progress_end(&t.progress, r->train_loss, r->test_accuracy, r->train_seconds,
                           r->eval_seconds);
    }
    free(t.order);
    free(t.x);
    free(t.y);
    nnopt_exec_free(t.ex);
    nnopt_network_free(t.net);
    nnopt_backend_close(backend);
    if (st != NNOPT_OK) nnopt_run_result_free(out);
    return st;
}

void nnopt_run_result_free(nnopt_run_result *r) {
    free(r->epochs);
    r->epochs = NULL;
    r->n_epochs = 0;
}
