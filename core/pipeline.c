#include "pipeline.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "clock.h"
#include "float_values.h"
#include "log.h"
#include "progress.h"
#include "softmax.h"

/* ---- host API entries for techniques ---------------------------------- */

const char *nnopt_run_name(const nnopt_run *run) {
    return run->spec->name;
}

nnopt_graph *nnopt_run_graph(nnopt_run *run) {
    return run->net ? run->net->graph : run->graph;
}

nnopt_run *nnopt_run_find(nnopt_run *self, const char *name) {
    nnopt_pipeline *p = self->pipeline;
    for (int i = 0; i < p->e->n_runs; i++)
        if (p->runs[i].finished && strcmp(p->runs[i].spec->name, name) == 0) return &p->runs[i];
    return NULL;
}

int64_t nnopt_run_train_size(const nnopt_run *run) {
    return run->pipeline->data->train.n;
}
nnopt_status nnopt_run_set_kernels(nnopt_run *run, const nnopt_program_options *options) {
    if (run->net) return NNOPT_STATUS_INVALID_ARGUMENT; /* before_train only */
    nnopt_kernels_set(&run->kernels, options);
    return NNOPT_OK;
}

int nnopt_run_kernel_stats(const nnopt_run *run, const char **mode, double *compile_seconds,
                           int *cache_hits, int *cache_misses) {
    const nnopt_kernels *k = run->net ? &run->net->kernels : &run->kernels;
    int compiled = k->compiled && !k->unavailable && k->cache_hits + k->cache_misses > 0;
    *mode = compiled ? "compiled" : "precompiled";
    *compile_seconds = k->compile_seconds;
    *cache_hits = k->cache_hits;
    *cache_misses = k->cache_misses;
    return k->cache_hits + k->cache_misses;
}

int64_t nnopt_batch_size(const nnopt_batch *b) {
    return b->size;
}
int nnopt_batch_classes(const nnopt_batch *b) {
    return b->classes;
}
const int64_t *nnopt_batch_indices(const nnopt_batch *b) {
    return b->indices;
}
void nnopt_batch_set_label_weight(nnopt_batch *b, double weight) {
    b->terms.label_weight = weight;
}

nnopt_status nnopt_batch_add_soft_targets(nnopt_batch *b, const double *probs, double temperature,
                                          double weight) {
    nnopt_loss_terms *t = &b->terms;
    if (t->n_soft == NNOPT_MAX_SOFT_TERMS || !(temperature > 0))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    /* Copied: the technique's buffer may change before the loss is computed. */
    size_t bytes = (size_t)(b->size * b->classes) * sizeof(double);
    double *copy = b->soft_storage[t->n_soft];
    if (!copy) copy = b->soft_storage[t->n_soft] = malloc(bytes);
    if (!copy) return NNOPT_STATUS_OUT_OF_MEMORY;
    memcpy(copy, probs, bytes);
    t->soft_probs[t->n_soft] = copy;
    t->temperature[t->n_soft] = temperature;
    t->weight[t->n_soft] = weight;
    t->n_soft++;
    return NNOPT_OK;
}

/* Converts n values between float dtypes (host memory), one value at a time
 * so that dst may be as small as n values of `to`. */
static void convert(const void *src, nnopt_dtype from, void *dst, nnopt_dtype to, int64_t n) {
    const size_t in_size = nnopt_dtype_size(from), out_size = nnopt_dtype_size(to);
    for (int64_t i = 0; i < n; i++) {
        double v;
        nnopt_values_to_double((const char *)src + (size_t)i * in_size, from, &v, 1);
        nnopt_values_from_double(&v, (char *)dst + (size_t)i * out_size, to, 1);
    }
}

nnopt_status nnopt_run_predict(nnopt_run *other, const nnopt_batch *batch, double temperature,
                               int train_mode, double *probs) {
    if (!other || !other->finished || !other->net || !(temperature > 0))
        return NNOPT_STATUS_INVALID_ARGUMENT;
    nnopt_error err = {0};
    nnopt_network *net = other->net;
    const nnopt_graph *g = net->graph;
    train_mode = train_mode != 0;
    const nnopt_graph *mine = batch->run->net->graph;
    int64_t inputs = batch->size * g->in_c * g->in_h * g->in_w;
    int64_t outputs = batch->size * g->num_classes;
    nnopt_status st = NNOPT_OK;
    if (other->predict_batch != batch->size) {
        /* Executors and buffers are made once per batch size, not per batch. */
        nnopt_exec_free(other->predict_exec[0]);
        nnopt_exec_free(other->predict_exec[1]);
        other->predict_exec[0] = other->predict_exec[1] = NULL;
        free(other->predict_input);
        free(other->predict_logits);
        other->predict_input = malloc((size_t)inputs * nnopt_dtype_size(g->dtype));
        other->predict_logits = malloc((size_t)outputs * sizeof(double));
        other->predict_batch = batch->size;
        if (!other->predict_input || !other->predict_logits) {
            other->predict_batch = 0;
            return NNOPT_STATUS_OUT_OF_MEMORY;
        }
    }
    if (!other->predict_exec[train_mode])
        st = train_mode
                 ? nnopt_exec_create(net, batch->size, 1, &other->predict_exec[1], &err)
                 : nnopt_exec_create_inference(net, batch->size, &other->predict_exec[0], &err);
    nnopt_exec *ex = other->predict_exec[train_mode];
    const void *x = batch->x;
    if (st == NNOPT_OK && mine->dtype != g->dtype) {
        convert(batch->x, mine->dtype, other->predict_input, g->dtype, inputs);
        x = other->predict_input;
    }
    double *logits = other->predict_logits;
    if (st == NNOPT_OK) st = nnopt_exec_forward(ex, x, &err);
    if (st == NNOPT_OK) st = nnopt_exec_read_logits(ex, logits, &err);
    for (int64_t n = 0; st == NNOPT_OK && n < batch->size; n++)
        nnopt_softmax(logits + n * g->num_classes, g->num_classes, temperature,
                      probs + n * g->num_classes);
    if (st != NNOPT_OK && err.status != NNOPT_OK) {
        /* Techniques get a status; the details go to the log. */
        nnopt_log(NNOPT_LOG_ERROR, "run '%s': %s", other->spec->name, err.message);
    }
    return st;
}

/* ---- running one run ---------------------------------------------------- */

static const nnopt_technique_vtable *technique_vt(const nnopt_experiment *e, const nnopt_run *run,
                                                  int k) {
    return e->techniques[run->spec->techniques[k]].plugin->desc->vtable;
}

static int technique_active(const nnopt_experiment *e, const nnopt_run *run, int k, int epoch) {
    const nnopt_plugin_spec *t = &e->techniques[run->spec->techniques[k]];
    return t->epoch_from == 0 || (epoch + 1 >= t->epoch_from && epoch + 1 <= t->epoch_to);
}

static nnopt_status technique_failed(const nnopt_experiment *e, const nnopt_run *run, int k,
                                     const char *hook, nnopt_status st, nnopt_error *err) {
    const char *why = nnopt_plugin_error_take();
    return nnopt_error_set(err, st, "run '%s', [technique %s] %s: %s", run->spec->name,
                           e->techniques[run->spec->techniques[k]].name, hook,
                           why[0] ? why : nnopt_status_name(st));
}

/* Calls hook `name` of every technique (active in `epoch` when >= 0). */
#define EACH_TECHNIQUE(e, run, epoch, hook, ...)                                                   \
    do {                                                                                           \
        for (int k_ = 0; st == NNOPT_OK && k_ < (run)->spec->n_techniques; k_++) {                 \
            const nnopt_technique_vtable *vt_ = technique_vt(e, run, k_);                          \
            if (!vt_->hook || ((epoch) >= 0 && !technique_active(e, run, k_, epoch))) continue;    \
            st = vt_->hook((run)->technique_ctx[k_], __VA_ARGS__);                                 \
            if (st != NNOPT_OK) st = technique_failed(e, run, k_, #hook, st, err);                 \
        }                                                                                          \
    } while (0)

static nnopt_status open_backend(const nnopt_experiment *e, nnopt_run *run, nnopt_run_result *out,
                                 nnopt_error *err) {
    const nnopt_plugin_spec *b = &e->backends[run->spec->backend];
    nnopt_error first = {0};
    nnopt_status st = nnopt_backend_open(b->plugin, b->cfg, &run->backend, &first);
    snprintf(out->backend, sizeof out->backend, "%s", b->plugin->desc->name);
    if (st == NNOPT_OK) return st;
    if (!b->fallback) {
        *err = first;
        return st;
    }
    /* The configured fallback runs instead; the report says so. */
    nnopt_log(NNOPT_LOG_WARN, "run '%s': %s; falling back to the %s backend", run->spec->name,
              first.message, b->fallback->desc->name);
    snprintf(out->note, sizeof out->note, "fell back from %s: %.200s", b->plugin->desc->name,
             first.message);
    snprintf(out->backend, sizeof out->backend, "%s", b->fallback->desc->name);
    return nnopt_backend_open(b->fallback, b->fallback_cfg, &run->backend, err);
}

/* Marks every op kind a run issues: the graph's forward ops and, when it
 * trains, their backward ops and the optimizer's update. */
static void ops_needed(const nnopt_graph *g, int training, nnopt_optimizer_kind optimizer,
                       unsigned char needed[NNOPT_OP_KIND_COUNT]) {
    memset(needed, 0, NNOPT_OP_KIND_COUNT);
    /* The loss, and gradient copies: only a training run issues them (an
     * evaluation computes its loss on the host). */
    needed[NNOPT_OP_SOFTMAX_XENT] = needed[NNOPT_OP_CAST] = (unsigned char)training;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_graph_node *n = &g->nodes[i];
        if (n->kind == NNOPT_NODE_INPUT || nnopt_node_is_state(n->kind) ||
            n->kind == NNOPT_NODE_FLATTEN || n->kind == NNOPT_NODE_ALIAS)
            continue;
        needed[n->op.kind] = 1;
        if (!training) continue;
        switch (n->op.kind) {
        case NNOPT_OP_CONV2D:
            needed[NNOPT_OP_CONV2D_BWD_DATA] = needed[NNOPT_OP_CONV2D_BWD_FILTER] = 1;
            needed[NNOPT_OP_BIAS_BWD] |= n->n_inputs == 3;
            break;
        case NNOPT_OP_DENSE:
            needed[NNOPT_OP_DENSE_BWD_DATA] = needed[NNOPT_OP_DENSE_BWD_WEIGHT] = 1;
            needed[NNOPT_OP_BIAS_BWD] |= n->n_inputs == 3;
            break;
        case NNOPT_OP_POOL2D:
            needed[NNOPT_OP_POOL2D_BWD] = 1;
            break;
        case NNOPT_OP_ACT:
            needed[NNOPT_OP_ACT_BWD] = 1;
            break;
        case NNOPT_OP_BATCHNORM:
            needed[NNOPT_OP_BATCHNORM_BWD] = 1;
            break;
        case NNOPT_OP_DROPOUT:
            needed[NNOPT_OP_DROPOUT_BWD] = 1;
            break;
        default:
            break;
        }
    }
    if (training) {
        needed[NNOPT_OP_ADD] = 1; /* gradients of nodes with several consumers are summed */
        needed[optimizer == NNOPT_OPTIMIZER_ADAM ? NNOPT_OP_ADAM_UPDATE : NNOPT_OP_SGD_UPDATE] = 1;
    }
}

/* Every op the run issues, in its dtype, must be supported by the backend,
 * unless [backend] op_fallback lets the reference backend run the rest. */
static nnopt_status check_support(const nnopt_experiment *e, nnopt_run *run, int training,
                                  nnopt_optimizer_kind optimizer, nnopt_error *err) {
    const nnopt_graph *g = run->net->graph;
    nnopt_backend *b = run->backend;
    const nnopt_plugin_spec *spec = &e->backends[run->spec->backend];
    unsigned char needed[NNOPT_OP_KIND_COUNT];
    ops_needed(g, training, optimizer, needed);
    char missing[512] = "";
    size_t used = 0;
    for (int k = 0; k < NNOPT_OP_KIND_COUNT && used < sizeof missing; k++)
        if (needed[k] && !b->vt->supports(b->ctx, (nnopt_op_kind)k, g->dtype))
            used += (size_t)snprintf(missing + used, sizeof missing - used, " %s",
                                     nnopt_op_kind_name((nnopt_op_kind)k));
    if (!used) return NNOPT_OK;
    /* A backend that is itself the reference (a device fallback to cpu) has nowhere to go. */
    int can_fall_back = spec->op_fallback != NNOPT_OP_FALLBACK_DENY && spec->op_plugin &&
                        b->plugin != spec->op_plugin;
    if (!can_fall_back)
        return nnopt_error_set(err, NNOPT_STATUS_UNSUPPORTED,
                               "run '%s': the %s backend cannot run these ops in %s:%s%s",
                               run->spec->name, b->plugin->desc->name, nnopt_dtype_name(g->dtype),
                               missing,
                               spec->op_fallback == NNOPT_OP_FALLBACK_DENY
                                   ? " (op_fallback = warn or allow in its [backend] section runs "
                                     "them on the cpu backend)"
                                   : "");
    if (spec->op_fallback == NNOPT_OP_FALLBACK_WARN)
        nnopt_log(NNOPT_LOG_WARN,
                  "run '%s': the %s backend cannot run these ops in %s:%s; they run "
                  "on the cpu backend (op_fallback = warn)",
                  run->spec->name, b->plugin->desc->name, nnopt_dtype_name(g->dtype), missing);
    if (b->op_backend) return NNOPT_OK; /* checked again after a dtype change */
    nnopt_backend *reference;
    nnopt_status st = nnopt_backend_open(spec->op_plugin, spec->op_cfg, &reference, err);
    if (st == NNOPT_OK) nnopt_backend_set_op_backend(b, reference);
    return st;
}

/* Starts from another run's final weights: same names and shapes required. */
static nnopt_status copy_weights(const nnopt_run *from, nnopt_run *to, nnopt_error *err) {
    const nnopt_graph *gs = from->net->graph, *gd = to->net->graph;
    for (int i = 0; i < gd->n_nodes; i++) {
        if (!to->net->param[i]) continue;
        int j = -1;
        for (int k = 0; k < gs->n_nodes && j < 0; k++)
            if (from->net->param[k] && strcmp(gs->nodes[k].name, gd->nodes[i].name) == 0) j = k;
        const nnopt_tensor *src = j >= 0 ? from->net->param[j] : NULL;
        nnopt_tensor *dst = to->net->param[i];
        if (src && src->dtype != NNOPT_F32 && src->dtype != NNOPT_F64)
            return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                                   "run '%s': init_from '%s': parameter '%s' is %s (a quantised "
                                   "run cannot start another)",
                                   to->spec->name, from->spec->name, gd->nodes[i].name,
                                   nnopt_dtype_name(src->dtype));
        if (!src || nnopt_tensor_numel(src) != nnopt_tensor_numel(dst))
            return nnopt_error_set(
                err, NNOPT_STATUS_CONFIG,
                "run '%s': init_from '%s': it has no parameter '%s' of %lld values", to->spec->name,
                from->spec->name, gd->nodes[i].name, (long long)nnopt_tensor_numel(dst));
        int64_t n = nnopt_tensor_numel(dst);
        void *a = malloc((size_t)n * 8), *b = malloc((size_t)n * 8);
        nnopt_status st = a && b ? NNOPT_OK : NNOPT_STATUS_OUT_OF_MEMORY;
        if (st == NNOPT_OK)
            st = nnopt_backend_read(from->backend, src, a, nnopt_tensor_nbytes(src), err);
        if (st == NNOPT_OK) {
            convert(a, src->dtype, b, dst->dtype, n);
            st = nnopt_backend_write(to->backend, dst, b, nnopt_tensor_nbytes(dst), err);
        }
        free(a);
        free(b);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

/* Explains a host API failure to the calling technique (host->set_error's channel). */
static void plugin_error(const char *fmt, ...) NNOPT_FMT_PRINTF(1, 2);
static void plugin_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnopt_plugin_error_setv(fmt, ap);
    va_end(ap);
}

nnopt_status nnopt_run_set_dtype(nnopt_run *run, nnopt_dtype dtype) {
    if (!run->net || run->finished || !run->in_after_train) {
        plugin_error("run_set_dtype: only in after_train, on the run's own network");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_error err = {0};
    nnopt_status st = nnopt_network_set_dtype(run->net, dtype, &err);
    /* The backend must run the converted model's forward ops. */
    if (st == NNOPT_OK) st = check_support(run->pipeline->e, run, 0, NNOPT_OPTIMIZER_SGD, &err);
    if (st != NNOPT_OK) plugin_error("%s", err.message);
    return st;
}

static void add_column(void *sink, const char *name, const char *value) {
    nnopt_run_result *r = sink;
    if (r->n_columns == NNOPT_MAX_REPORT_COLUMNS) return;
    snprintf(r->column_names[r->n_columns], sizeof r->column_names[0], "%s", name);
    snprintf(r->column_values[r->n_columns], sizeof r->column_values[0], "%s", value);
    r->n_columns++;
}

/* "pool2d x 120, pool2d_bwd x 100": the ops that ran on the reference backend. */
static void report_op_fallbacks(const nnopt_backend *b, nnopt_run_result *out) {
    char list[512] = "";
    size_t used = 0;
    for (int k = 0; k < NNOPT_OP_KIND_COUNT && used < sizeof list; k++)
        if (b->fallback_calls[k])
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s x %lld",
                                     used ? ", " : "", nnopt_op_kind_name((nnopt_op_kind)k),
                                     (long long)b->fallback_calls[k]);
    if (used) add_column(out, "ops_on_cpu", list);
}

typedef struct epoch_loop {
    nnopt_run *run;
    nnopt_exec *ex;
    nnopt_optimizer opt;
    int64_t batch_size;
    int64_t *order;
    void *x;
    int32_t *y;
    uint64_t seed;
    nnopt_batch batch;
    nnopt_progress progress;
} epoch_loop;

static nnopt_status train_epoch(epoch_loop *L, int epoch, int epochs, double lr, double *mean_loss,
                                nnopt_error *err) {
    nnopt_run *run = L->run;
    const nnopt_experiment *e = run->pipeline->e;
    const nnopt_data *data = run->pipeline->data;
    const nnopt_config *tc = run->spec->training;
    int64_t n = data->train.n;
    if (nnopt_config_get_bool(tc, "shuffle"))
        nnopt_dataset_shuffle(L->order, n, L->seed * 7919u + (uint64_t)epoch);
    else
        for (int64_t i = 0; i < n; i++) L->order[i] = i;
    int64_t batches = n / L->batch_size; /* the last partial batch is dropped */
    double loss_sum = 0;
    nnopt_dtype dtype = run->net->graph->dtype;
    nnopt_progress_begin(&L->progress, epoch + 1, epochs, batches);
    nnopt_status st = NNOPT_OK;
    for (int64_t b = 0; st == NNOPT_OK && b < batches; b++) {
        const int64_t *indices = L->order + b * L->batch_size;
        nnopt_data_train_batch(data, indices, L->batch_size, dtype, L->x, L->y,
                               L->seed * 1000003u + (uint64_t)epoch * 100003u + (uint64_t)b);
        L->batch.indices = indices;
        L->batch.terms.label_weight = 1;
        L->batch.terms.n_soft = 0;
        EACH_TECHNIQUE(e, run, epoch, batch_loss, run, &L->batch);
        double loss = 0;
        if (st == NNOPT_OK) st = nnopt_exec_forward(L->ex, L->x, err);
        if (st == NNOPT_OK) st = nnopt_exec_backward(L->ex, L->y, &L->batch.terms, &loss, err);
        if (st == NNOPT_OK && !isfinite(loss))
            st = nnopt_error_set(err, NNOPT_STATUS_NUMERIC,
                                 "run '%s': training diverged: loss is %g at epoch %d, batch %lld "
                                 "(lr %g); lower the learning rate",
                                 run->spec->name, loss, epoch + 1, (long long)b + 1, lr);
        if (st == NNOPT_OK) st = nnopt_network_step(run->net, &L->opt, lr, err);
        loss_sum += loss;
        if (st == NNOPT_OK) nnopt_progress_update(&L->progress, b + 1, loss_sum / (double)(b + 1));
    }
    if (st != NNOPT_OK) nnopt_progress_abort(&L->progress);
    *mean_loss = batches ? loss_sum / (double)batches : 0;
    return st;
}

/* In compiled mode, the evaluation pass's kernels are built now, so that
 * neither compile time nor cache loading is counted in the timed evaluations. */
static nnopt_status compile_evaluation(nnopt_run *run, nnopt_error *err) {
    if (!nnopt_kernels_wanted(&run->net->kernels)) return NNOPT_OK;
    int64_t batch = nnopt_config_get_int(run->spec->training, "eval_batch");
    int64_t test_images = run->pipeline->data->test.n;
    nnopt_exec *ex = NULL;
    nnopt_status st =
        nnopt_exec_create_inference(run->net, batch < test_images ? batch : test_images, &ex, err);
    nnopt_exec_free(ex);
    return st;
}

static nnopt_status run_one(nnopt_pipeline *p, nnopt_run *run, nnopt_run_result *out,
                            nnopt_error *err) {
    const nnopt_experiment *e = p->e;
    const nnopt_data *data = p->data;
    const nnopt_run_spec *spec = run->spec;
    const nnopt_config *tc = spec->training;
    const nnopt_plugin_spec *model = &e->models[spec->model];
    memset(out, 0, sizeof *out);
    snprintf(out->run, sizeof out->run, "%s", spec->name);
    snprintf(out->model, sizeof out->model, "%s", model->name);
    snprintf(out->plugin, sizeof out->plugin, "%s", model->plugin->desc->name);
    epoch_loop L = {.run = run, .opt = nnopt_optimizer_from(tc)};
    L.batch_size = nnopt_config_get_int(tc, "batch");
    L.seed = (uint64_t)nnopt_config_get_int(tc, "seed");
    if (L.batch_size > data->train.n)
        return nnopt_error_set(err, NNOPT_STATUS_CONFIG,
                               "run '%s': batch %lld is larger than the %lld training images",
                               spec->name, (long long)L.batch_size, (long long)data->train.n);
    nnopt_status st = nnopt_build_model(e, spec->model, data->train.c, data->train.h, data->train.w,
                                        data->train.num_classes, &run->graph, err);
    for (int k = 0; st == NNOPT_OK && k < spec->n_techniques; k++) {
        const nnopt_technique_vtable *vt = technique_vt(e, run, k);
        nnopt_plugin_error_take();
        st = vt->create(nnopt_host_api_get(), e->techniques[spec->techniques[k]].cfg,
                        &run->technique_ctx[k]);
        if (st != NNOPT_OK) st = technique_failed(e, run, k, "create", st, err);
    }
    EACH_TECHNIQUE(e, run, -1, before_train, run);
    if (st == NNOPT_OK) st = open_backend(e, run, out, err);
    if (st == NNOPT_OK) {
        nnopt_graph *g = run->graph;
        run->graph = NULL; /* the network owns it now */
        st = nnopt_network_create(g, run->backend, L.seed, &run->net, err);
        if (st == NNOPT_OK) run->net->kernels = run->kernels;
    }
    int epochs = (int)nnopt_config_get_int(tc, "epochs");
    if (st == NNOPT_OK) st = check_support(e, run, epochs > 0, L.opt.kind, err);
    if (st == NNOPT_OK && spec->init_from >= 0)
        st = copy_weights(&p->runs[spec->init_from], run, err);
    if (st == NNOPT_OK && spec->load_checkpoint[0])
        st = nnopt_checkpoint_load(run->net, spec->load_checkpoint, err);
    if (st == NNOPT_OK) st = nnopt_network_prepare_training(run->net, &L.opt, err);
    if (st == NNOPT_OK) st = nnopt_exec_create(run->net, L.batch_size, 1, &L.ex, err);
    if (st == NNOPT_OK) st = compile_evaluation(run, err);
    if (st != NNOPT_OK) return st;

    const nnopt_graph *g = run->net->graph;
    snprintf(out->backend_description, sizeof out->backend_description, "%s",
             run->backend->description);
    snprintf(out->dtype, sizeof out->dtype, "%s", nnopt_dtype_name(g->dtype));
    out->params = nnopt_graph_param_count(g);
    out->macs = nnopt_graph_forward_macs(g);
    out->train_images = data->train.n;
    out->test_images = data->test.n;
    out->batch = L.batch_size;
    nnopt_log(NNOPT_LOG_INFO,
              "run '%s': model %s (%s, %s), %lld parameters, %.2f M multiply-adds per image; "
              "backend %s: %s",
              spec->name, model->name, model->plugin->desc->name, out->dtype,
              (long long)out->params, (double)out->macs / 1e6, out->backend,
              run->backend->description);

    int64_t eval_batch = nnopt_config_get_int(tc, "eval_batch");
    int64_t per_image = (int64_t)data->train.c * data->train.h * data->train.w;
    out->epochs = calloc((size_t)(epochs ? epochs : 1), sizeof *out->epochs);
    L.order = malloc((size_t)data->train.n * sizeof *L.order);
    L.x = malloc((size_t)(L.batch_size * per_image) * nnopt_dtype_size(g->dtype));
    L.y = malloc((size_t)L.batch_size * sizeof *L.y);
    L.batch = (nnopt_batch){.run = run, .size = L.batch_size, .classes = g->num_classes, .x = L.x};
    if (!out->epochs || !L.order || !L.x || !L.y)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    const char *progress = nnopt_config_get(tc, "progress");
    nnopt_progress_init(&L.progress, spec->name,
                        strcmp(progress, "on") == 0    ? 1
                        : strcmp(progress, "off") == 0 ? 0
                                                       : -1);
    for (int ep = 0; st == NNOPT_OK && ep < epochs; ep++) {
        nnopt_epoch_result *r = &out->epochs[ep];
        r->epoch = ep + 1;
        r->lr = nnopt_schedule_lr(tc, ep, epochs);
        EACH_TECHNIQUE(e, run, ep, before_epoch, run, ep + 1);
        double start = nnopt_now_seconds();
        if (st == NNOPT_OK) st = train_epoch(&L, ep, epochs, r->lr, &r->train_loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(run->backend, err);
        r->train_seconds = nnopt_now_seconds() - start;
        EACH_TECHNIQUE(e, run, ep, after_epoch, run, ep + 1);
        if (st != NNOPT_OK) break;
        start = nnopt_now_seconds();
        st = nnopt_evaluate(run->net, &data->test, &data->norm, eval_batch, &r->test_accuracy,
                            &r->test_loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(run->backend, err);
        r->eval_seconds = nnopt_now_seconds() - start;
        if (st != NNOPT_OK) break;
        out->n_epochs = ep + 1;
        out->train_seconds += r->train_seconds;
        out->eval_seconds = r->eval_seconds;
        out->test_accuracy = r->test_accuracy;
        nnopt_progress_end(&L.progress, r->train_loss, r->test_accuracy, r->train_seconds,
                           r->eval_seconds);
    }
    if (st == NNOPT_OK && epochs == 0) {
        /* No training (a converted or swapped model, say): evaluate once. */
        double start = nnopt_now_seconds();
        st = nnopt_evaluate(run->net, &data->test, &data->norm, eval_batch, &out->test_accuracy,
                            &out->epochs[0].test_loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(run->backend, err);
        out->eval_seconds = nnopt_now_seconds() - start;
    }
    int transforms = 0;
    for (int k = 0; k < spec->n_techniques; k++)
        transforms |= technique_vt(e, run, k)->after_train != NULL;
    /* after_train may rewrite the graph (new nodes): the training executor goes first. */
    nnopt_exec_free(L.ex);
    L.ex = NULL;
    run->in_after_train = 1;
    EACH_TECHNIQUE(e, run, -1, after_train, run);
    run->in_after_train = 0;
    if (st == NNOPT_OK && transforms) st = check_support(e, run, 0, L.opt.kind, err);
    if (st == NNOPT_OK && transforms) {
        /* after_train may have changed the model (quantised it, say): the
         * reported accuracy and inference time are those of the final model. */
        double start = nnopt_now_seconds(), loss = 0;
        st = nnopt_evaluate(run->net, &data->test, &data->norm, eval_batch, &out->test_accuracy,
                            &loss, err);
        if (st == NNOPT_OK) st = nnopt_backend_sync(run->backend, err);
        out->eval_seconds = nnopt_now_seconds() - start;
        /* A technique may have moved the model to another dtype (bf16, say). */
        snprintf(out->dtype, sizeof out->dtype, "%s", nnopt_dtype_name(run->net->graph->dtype));
    }
    for (int k = 0; st == NNOPT_OK && k < spec->n_techniques; k++) {
        const nnopt_technique_vtable *vt = technique_vt(e, run, k);
        if (vt->report) vt->report(run->technique_ctx[k], run, add_column, out);
    }
    if (st == NNOPT_OK) report_op_fallbacks(run->backend, out);
    if (st == NNOPT_OK && spec->save_checkpoint[0]) {
        char metadata[256];
        snprintf(metadata, sizeof metadata, "{\"model\":\"%s\",\"run\":\"%s\"}",
                 model->plugin->desc->name, spec->name);
        st = nnopt_checkpoint_save(run->net, spec->save_checkpoint, metadata, err);
    }
    free(L.order);
    free(L.x);
    free(L.y);
    for (int k = 0; k < NNOPT_MAX_SOFT_TERMS; k++) free(L.batch.soft_storage[k]);
    nnopt_exec_free(L.ex);
    if (st == NNOPT_OK) run->finished = 1;
    return st;
}

static void release_run(const nnopt_experiment *e, nnopt_run *run) {
    for (int k = 0; k < run->spec->n_techniques; k++) {
        const nnopt_technique_vtable *vt = technique_vt(e, run, k);
        if (run->technique_ctx[k] && vt->destroy) vt->destroy(run->technique_ctx[k]);
        run->technique_ctx[k] = NULL;
    }
    nnopt_exec_free(run->predict_exec[0]);
    nnopt_exec_free(run->predict_exec[1]);
    run->predict_exec[0] = run->predict_exec[1] = NULL;
    free(run->predict_input);
    free(run->predict_logits);
    run->predict_input = NULL;
    run->predict_logits = NULL;
    run->predict_batch = 0;
    nnopt_network_free(run->net);
    nnopt_graph_free(run->graph);
    nnopt_backend_close(run->backend);
    run->net = NULL;
    run->graph = NULL;
    run->backend = NULL;
}

/* Whether a later run still needs this one (as teacher, start or dependency). */
static int still_needed(const nnopt_experiment *e, int run, int position) {
    for (int k = position + 1; k < e->n_runs; k++) {
        const nnopt_run_spec *later = &e->runs[e->order[k]];
        for (int d = 0; d < later->n_deps; d++)
            if (later->deps[d] == run) return 1;
    }
    return 0;
}

nnopt_status nnopt_pipeline_run(const nnopt_experiment *e, const nnopt_data *data,
                                nnopt_run_result *results, nnopt_error *err) {
    nnopt_pipeline *p = calloc(1, sizeof *p);
    if (!p) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    p->e = e;
    p->data = data;
    for (int i = 0; i < e->n_runs; i++) {
        p->runs[i].pipeline = p;
        p->runs[i].index = i;
        p->runs[i].spec = &e->runs[i];
    }
    memset(results, 0, (size_t)e->n_runs * sizeof *results);
    nnopt_status st = NNOPT_OK;
    for (int k = 0; st == NNOPT_OK && k < e->n_runs; k++) {
        int i = e->order[k];
        st = run_one(p, &p->runs[i], &results[i], err);
        /* Free what no later run needs: networks can be large. */
        for (int j = 0; st == NNOPT_OK && j <= k; j++)
            if (p->runs[e->order[j]].net && !still_needed(e, e->order[j], k))
                release_run(e, &p->runs[e->order[j]]);
    }
    for (int i = 0; i < e->n_runs; i++) release_run(e, &p->runs[i]);
    if (st != NNOPT_OK)
        for (int i = 0; i < e->n_runs; i++) nnopt_run_result_free(&results[i]);
    free(p);
    return st;
}
