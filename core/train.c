#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "executor.h"
#include "log.h"
#include "softmax.h"

nnopt_status nnopt_build_model(const nnopt_experiment *e, int index, int c, int h, int w,
                               int num_classes, nnopt_graph **out, nnopt_error *err) {
    const nnopt_plugin_spec *m = &e->models[index];
    nnopt_graph *g = nnopt_graph_create(c, h, w, num_classes);
    if (!g) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    const nnopt_model_vtable *vt = m->plugin->desc->vtable;
    nnopt_node logits = -1;
    nnopt_plugin_error_take();
    nnopt_status st = vt->build(nnopt_host_api_get(), m->cfg, g, &logits);
    if (st != NNOPT_OK) {
        const char *why = nnopt_plugin_error_take();
        nnopt_error_set(err, st, "[%s] model '%s': %s", m->section, m->plugin->desc->name,
                        why[0]          ? why
                        : g->err.status ? g->err.message
                                        : nnopt_status_name(st));
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

double nnopt_schedule_lr(const nnopt_config *t, int epoch /* 0-based */, int epochs) {
    double lr = nnopt_config_get_float(t, "lr");
    const char *kind = nnopt_config_get(t, "lr_schedule");
    if (strcmp(kind, "step") == 0)
        return lr * pow(nnopt_config_get_float(t, "lr_gamma"),
                        (double)(epoch / nnopt_config_get_int(t, "lr_step")));
    if (strcmp(kind, "cosine") == 0)
        return 0.5 * lr * (1 + cos(3.141592653589793 * epoch / (epochs > 0 ? epochs : 1)));
    return lr;
}

nnopt_optimizer nnopt_optimizer_from(const nnopt_config *t) {
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

nnopt_status nnopt_evaluate(nnopt_network *net, const nnopt_dataset *ds,
                            const nnopt_normalize *norm, int64_t batch, double *accuracy,
                            double *loss, nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    if (batch > ds->n) batch = ds->n;
    nnopt_exec *ex = NULL;
    nnopt_status st = nnopt_exec_create_inference(net, batch, &ex, err);
    if (st != NNOPT_OK) return st;
    size_t esize = nnopt_dtype_size(g->dtype);
    int64_t per_image = (int64_t)ds->c * ds->h * ds->w, classes = g->num_classes;
    void *x = calloc((size_t)(batch * per_image), esize);
    double *logits = malloc((size_t)(batch * classes) * sizeof *logits);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    int64_t *order = malloc((size_t)batch * sizeof *order);
    if (!x || !logits || !y || !order)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
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
            const double *row = logits + i * classes;
            loss_sum += nnopt_logsumexp(row, classes) - row[y[i]];
            correct += nnopt_argmax(row, classes) == y[i];
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

void nnopt_run_result_free(nnopt_run_result *r) {
    free(r->epochs);
    r->epochs = NULL;
    r->n_epochs = 0;
}
