/* Technique plugins: the distillation losses checked against finite
 * differences and against a direct computation, activation swap and
 * precision rewriting exactly the intended nodes, and a small pipeline
 * (teacher -> distilled student -> student alone) on a generated dataset. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data_source.h"
#include "executor.h"
#include "experiment.h"
#include "graph.h"
#include "idx_fixture.h"
#include "pipeline.h"
#include "report.h"
#include "train.h"

enum { BATCH = 3, CLASSES = 10, SIDE = 12, TRAIN_SIZE = 50 };

static const nnopt_plugin *load_plugin(nnopt_plugin_kind kind, const char *name) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    if (nnopt_plugin_load(&s, kind, name, &p, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_plugin_search_free(&s);
    return p;
}

/* A plugin's config from "key=value" pairs (NULL-terminated). */
static nnopt_config *plugin_config(const nnopt_plugin *p, const char *const *pairs) {
    nnopt_config *cfg = nnopt_config_create(p->desc->params, (int)p->desc->n_params, "test");
    nnopt_error err = {0};
    for (int i = 0; pairs && pairs[i]; i++) {
        char key[64];
        const char *eq = strchr(pairs[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - pairs[i]), pairs[i]);
        if (nnopt_config_set(cfg, key, eq + 1, "test", &err) != NNOPT_OK)
            fail_msg("%s", err.message);
    }
    if (nnopt_config_finish(cfg, "test", &err) != NNOPT_OK) fail_msg("%s", err.message);
    return cfg;
}

/* A small LeNet-5 (f64) on a 12x12 input, as a network on the cpu backend. */
static nnopt_network *small_lenet(const char *activation, uint64_t seed, nnopt_backend **bk) {
    const nnopt_plugin *model = load_plugin(NNOPT_PLUGIN_MODEL, "lenet5");
    const nnopt_plugin *backend = load_plugin(NNOPT_PLUGIN_BACKEND, "cpu");
    const char *pairs[] = {"channels=2,3", "dense=5", "dtype=f64", NULL, NULL};
    char act[64];
    snprintf(act, sizeof act, "activation=%s", activation);
    pairs[3] = act;
    nnopt_config *cfg = plugin_config(model, pairs);
    nnopt_error err = {0};
    nnopt_graph *g = nnopt_graph_create(1, SIDE, SIDE, CLASSES);
    nnopt_node logits = -1;
    const nnopt_model_vtable *vt = model->desc->vtable;
    assert_int_equal(vt->build(nnopt_host_api_get(), cfg, g, &logits), NNOPT_OK);
    assert_int_equal(nnopt_graph_finish(g, logits, &err), NNOPT_OK);
    nnopt_config *bcfg = plugin_config(backend, NULL);
    assert_int_equal(nnopt_backend_open(backend, bcfg, bk, &err), NNOPT_OK);
    nnopt_network *net = NULL;
    assert_int_equal(nnopt_network_create(g, *bk, seed, &net, &err), NNOPT_OK);
    nnopt_config_free(cfg);
    nnopt_config_free(bcfg);
    return net;
}

/* A pipeline of two runs without an experiment file: a finished teacher and
 * the student being trained, enough for the host API's run_* functions. */
typedef struct fake_pipeline {
    nnopt_experiment *e;
    nnopt_data data;
    nnopt_pipeline p;
    nnopt_run *teacher, *student;
} fake_pipeline;

static void fake_pipeline_init(fake_pipeline *f, nnopt_network *teacher, nnopt_network *student) {
    memset(f, 0, sizeof *f);
    f->e = calloc(1, sizeof *f->e);
    f->e->n_runs = 2;
    snprintf(f->e->runs[0].name, sizeof f->e->runs[0].name, "teacher");
    snprintf(f->e->runs[1].name, sizeof f->e->runs[1].name, "student");
    f->data.train.n = TRAIN_SIZE;
    f->p.e = f->e;
    f->p.data = &f->data;
    for (int i = 0; i < 2; i++) {
        f->p.runs[i].pipeline = &f->p;
        f->p.runs[i].index = i;
        f->p.runs[i].spec = &f->e->runs[i];
    }
    f->teacher = &f->p.runs[0];
    f->student = &f->p.runs[1];
    f->teacher->net = teacher;
    f->teacher->finished = 1;
    f->student->net = student;
}

static void fake_pipeline_free(fake_pipeline *f) {
    nnopt_exec_free(f->teacher->predict_exec[0]);
    nnopt_exec_free(f->teacher->predict_exec[1]);
    free(f->e);
}

typedef struct columns {
    char names[16][48], values[16][64];
    int n;
} columns;

static void collect_column(void *sink, const char *name, const char *value) {
    columns *c = sink;
    if (c->n == 16) return;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    snprintf(c->values[c->n], sizeof c->values[0], "%s", value);
    c->n++;
}

static const char *column(const columns *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name)) return c->values[i];
    return NULL;
}

static double loss_at(nnopt_exec *ex, const double *x, const int32_t *y,
                      const nnopt_loss_terms *t) {
    nnopt_error err = {0};
    double loss = 0;
    if (nnopt_exec_forward(ex, x, &err) != NNOPT_OK) fail_msg("%s", err.message);
    if (nnopt_exec_backward(ex, y, t, &loss, &err) != NNOPT_OK) fail_msg("%s", err.message);
    return loss;
}

/* Softmax of logits / temperature, row by row. */
static void softmax(const double *logits, double temperature, double *out) {
    for (int n = 0; n < BATCH; n++) {
        double max = -INFINITY, sum = 0;
        for (int k = 0; k < CLASSES; k++) max = fmax(max, logits[n * CLASSES + k] / temperature);
        for (int k = 0; k < CLASSES; k++)
            sum += out[n * CLASSES + k] = exp(logits[n * CLASSES + k] / temperature - max);
        for (int k = 0; k < CLASSES; k++) out[n * CLASSES + k] /= sum;
    }
}

/* The teacher's own logits, from an inference executor of its network. */
static void teacher_logits(nnopt_network *teacher, const double *x, double *logits) {
    nnopt_exec *ex = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_exec_create(teacher, BATCH, 0, &ex, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_forward(ex, x, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_read_logits(ex, logits, &err), NNOPT_OK);
    nnopt_exec_free(ex);
}

/* Builds the distillation loss through the plugin (form given by pairs),
 * checks its value against the formula and its gradients against central
 * differences of the loss. */
static void check_distillation_loss(const char *const *pairs, double alpha, double temperature,
                                    int study) {
    nnopt_backend *tb = NULL, *sb = NULL;
    nnopt_network *teacher = small_lenet("gelu", 11, &tb);
    nnopt_network *student = small_lenet("relu", 7, &sb);
    nnopt_optimizer opt = {.kind = NNOPT_OPTIMIZER_SGD};
    nnopt_error err = {0};
    assert_int_equal(nnopt_network_prepare_training(student, &opt, &err), NNOPT_OK);
    nnopt_exec *ex = NULL;
    assert_int_equal(nnopt_exec_create(student, BATCH, 1, &ex, &err), NNOPT_OK);
    fake_pipeline f;
    fake_pipeline_init(&f, teacher, student);

    double x[BATCH * SIDE * SIDE];
    int32_t y[BATCH] = {1, 7, 3};
    int64_t indices[BATCH] = {4, 9, 31};
    unsigned s = 12345;
    for (int i = 0; i < BATCH * SIDE * SIDE; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = 2.0 * (double)(s >> 8) / (double)(1u << 24);
    }
    nnopt_batch batch = {
        .run = f.student, .indices = indices, .size = BATCH, .classes = CLASSES, .x = x};
    batch.terms.label_weight = 1;

    const nnopt_plugin *plugin = load_plugin(NNOPT_PLUGIN_TECHNIQUE, "distillation");
    const nnopt_technique_vtable *vt = plugin->desc->vtable;
    nnopt_config *cfg = plugin_config(plugin, pairs);
    void *ctx = NULL;
    assert_int_equal(vt->create(nnopt_host_api_get(), cfg, &ctx), NNOPT_OK);
    const char *deps[4];
    assert_int_equal(vt->dependencies(ctx, deps, 4), 1);
    assert_string_equal(deps[0], "teacher");
    assert_int_equal(vt->before_train(ctx, f.student), NNOPT_OK);
    assert_int_equal(vt->before_epoch(ctx, f.student, 1), NNOPT_OK);
    assert_int_equal(vt->batch_loss(ctx, f.student, &batch), NNOPT_OK);
    assert_int_equal(vt->after_epoch(ctx, f.student, 1), NNOPT_OK);

    /* The terms the plugin asked for. */
    const nnopt_loss_terms *t = &batch.terms;
    double tl[BATCH * CLASSES], target[BATCH * CLASSES];
    teacher_logits(teacher, x, tl);
    softmax(tl, temperature, target);
    assert_int_equal(t->n_soft, 1);
    assert_true(fabs(t->temperature[0] - (study ? 1.0 : temperature)) < 1e-15);
    assert_true(fabs(t->weight[0] - (study ? 1.0 : alpha * temperature * temperature)) < 1e-12);
    assert_true(fabs(t->label_weight - (study ? 0.0 : 1 - alpha)) < 1e-15);
    for (int i = 0; i < BATCH * CLASSES; i++)
        assert_true(fabs(t->soft_probs[0][i] - target[i]) < 1e-12);

    /* The loss value against the formula, from the student's logits. */
    double loss = loss_at(ex, x, y, t), sl[BATCH * CLASSES], q_t[BATCH * CLASSES],
           q_1[BATCH * CLASSES];
    assert_int_equal(nnopt_exec_read_logits(ex, sl, &err), NNOPT_OK);
    softmax(sl, temperature, q_t);
    softmax(sl, 1.0, q_1);
    double soft_ce = 0, hard_ce = 0;
    for (int n = 0; n < BATCH; n++) {
        for (int k = 0; k < CLASSES; k++)
            soft_ce -= target[n * CLASSES + k] * log(q_t[n * CLASSES + k]) / BATCH;
        hard_ce -= log(q_1[n * CLASSES + y[n]]) / BATCH;
    }
    double expected =
        study ? soft_ce : alpha * temperature * temperature * soft_ce + (1 - alpha) * hard_ce;
    if (fabs(loss - expected) > 1e-12 * fmax(1, fabs(expected)))
        fail_msg("loss %.15g, expected %.15g", loss, expected);

    /* Parameter gradients against central differences of that loss. */
    const nnopt_graph *g = student->graph;
    int checked = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        if (!student->param[n]) continue;
        loss_at(ex, x, y, t);
        int64_t count = nnopt_tensor_numel(student->param[n]);
        double *p = malloc((size_t)count * 8), *analytic = malloc((size_t)count * 8);
        assert_int_equal(
            nnopt_backend_read(sb, student->grad[n], analytic, (size_t)count * 8, &err), NNOPT_OK);
        assert_int_equal(nnopt_backend_read(sb, student->param[n], p, (size_t)count * 8, &err),
                         NNOPT_OK);
        for (int64_t i = 0; i < count; i++) {
            const double h = 1e-6, saved = p[i];
            p[i] = saved + h;
            nnopt_backend_write(sb, student->param[n], p, (size_t)count * 8, &err);
            double up = loss_at(ex, x, y, t);
            p[i] = saved - h;
            nnopt_backend_write(sb, student->param[n], p, (size_t)count * 8, &err);
            double down = loss_at(ex, x, y, t);
            p[i] = saved;
            nnopt_backend_write(sb, student->param[n], p, (size_t)count * 8, &err);
            double numeric = (up - down) / (2 * h);
            /* relu's kink can sit within h of a pre-activation; the loss's
             * rounding floors the numeric estimate at ~1e-9. */
            if (fabs(numeric - analytic[i]) > 1e-5 * (fabs(numeric) + fabs(analytic[i])) + 1e-8)
                fail_msg("d loss / d %s[%lld]: analytic %.10g, numeric %.10g", g->nodes[n].name,
                         (long long)i, analytic[i], numeric);
            checked++;
        }
        free(p);
        free(analytic);
    }
    assert_int_equal(checked, nnopt_graph_param_count(g));

    columns c = {0};
    vt->report(ctx, f.student, collect_column, &c);
    assert_string_equal(column(&c, "teacher"), "teacher");
    assert_non_null(column(&c, "teacher_seconds"));
    assert_non_null(strchr(column(&c, "teacher_share"), '%'));

    vt->destroy(ctx);
    nnopt_config_free(cfg);
    for (int k = 0; k < NNOPT_MAX_SOFT_TERMS; k++) free(batch.soft_storage[k]);
    fake_pipeline_free(&f);
    nnopt_exec_free(ex);
    nnopt_network_free(student);
    nnopt_network_free(teacher);
    nnopt_backend_close(sb);
    nnopt_backend_close(tb);
}

static void test_study_loss_gradients(void **state) {
    (void)state;
    const char *pairs[] = {"teacher=teacher", NULL};
    check_distillation_loss(pairs, 0, 1, 1);
}

static void test_hinton_loss_gradients(void **state) {
    (void)state;
    const char *pairs[] = {"teacher=teacher", "form=hinton", "temperature=3", "alpha=0.7", NULL};
    check_distillation_loss(pairs, 0.7, 3, 0);
}

/* cache = true: the second batch of the same samples reuses the first
 * prediction; a missing teacher and the study form with T != 1 are errors. */
static void test_distillation_cache_and_errors(void **state) {
    (void)state;
    nnopt_backend *tb = NULL, *sb = NULL;
    nnopt_network *teacher = small_lenet("gelu", 11, &tb);
    nnopt_network *student = small_lenet("relu", 7, &sb);
    fake_pipeline f;
    fake_pipeline_init(&f, teacher, student);
    const nnopt_plugin *plugin = load_plugin(NNOPT_PLUGIN_TECHNIQUE, "distillation");
    const nnopt_technique_vtable *vt = plugin->desc->vtable;
    const char *pairs[] = {"teacher=teacher", "form=hinton", "temperature=2", "cache=true", NULL};
    nnopt_config *cfg = plugin_config(plugin, pairs);
    void *ctx = NULL;
    assert_int_equal(vt->create(nnopt_host_api_get(), cfg, &ctx), NNOPT_OK);

    /* Not finished yet: before_train refuses. */
    f.teacher->finished = 0;
    nnopt_plugin_error_take();
    assert_int_not_equal(vt->before_train(ctx, f.student), NNOPT_OK);
    assert_non_null(strstr(nnopt_plugin_error_take(), "teacher run 'teacher' has not finished"));
    f.teacher->finished = 1;
    assert_int_equal(vt->before_train(ctx, f.student), NNOPT_OK);

    double x[BATCH * SIDE * SIDE], first[BATCH * CLASSES];
    for (int i = 0; i < BATCH * SIDE * SIDE; i++) x[i] = (double)(i % 17) / 17.0;
    int64_t indices[BATCH] = {0, 5, 49};
    nnopt_batch batch = {
        .run = f.student, .indices = indices, .size = BATCH, .classes = CLASSES, .x = x};
    assert_int_equal(vt->batch_loss(ctx, f.student, &batch), NNOPT_OK);
    memcpy(first, batch.terms.soft_probs[0], sizeof first);
    /* Other images under the same indices: a cache hit returns the first probabilities. */
    for (int i = 0; i < BATCH * SIDE * SIDE; i++) x[i] = 1.0 - x[i];
    batch.terms.n_soft = 0;
    assert_int_equal(vt->batch_loss(ctx, f.student, &batch), NNOPT_OK);
    assert_memory_equal(first, batch.terms.soft_probs[0], sizeof first);
    columns c = {0};
    vt->report(ctx, f.student, collect_column, &c);
    assert_string_equal(column(&c, "teacher_cached"), "3 of 50");
    vt->destroy(ctx);
    nnopt_config_free(cfg);

    const char *study_t4[] = {"teacher=teacher", "temperature=4", NULL};
    cfg = plugin_config(plugin, study_t4);
    nnopt_plugin_error_take();
    assert_int_not_equal(vt->create(nnopt_host_api_get(), cfg, &ctx), NNOPT_OK);
    assert_non_null(strstr(nnopt_plugin_error_take(), "form = study uses temperature 1"));
    nnopt_config_free(cfg);

    for (int k = 0; k < NNOPT_MAX_SOFT_TERMS; k++) free(batch.soft_storage[k]);
    fake_pipeline_free(&f);
    nnopt_network_free(student);
    nnopt_network_free(teacher);
    nnopt_backend_close(sb);
    nnopt_backend_close(tb);
}

/* A graph with mixed activations: dense, gelu, dense, relu, dense, gelu_erf,
 * gelu, dense. Returns the activation nodes in order. */
static nnopt_graph *mixed_graph(nnopt_node acts[4]) {
    nnopt_graph *g = nnopt_graph_create(1, 4, 4, 3);
    nnopt_node x = nnopt_graph_flatten(g, nnopt_graph_input(g, NNOPT_F64));
    static const nnopt_act_kind kinds[4] = {NNOPT_ACT_GELU_TANH, NNOPT_ACT_RELU, NNOPT_ACT_GELU_ERF,
                                            NNOPT_ACT_GELU_TANH};
    int64_t in = 16;
    for (int i = 0, layer = 0; i < 4; i++) {
        if (i != 3) { /* two activations in a row at the end */
            char name[32];
            int64_t w[2] = {8, in}, b[1] = {8};
            snprintf(name, sizeof name, "fc%d.weight", ++layer);
            nnopt_node wn = nnopt_graph_param(g, name, 2, w, NNOPT_INIT_GLOROT_UNIFORM);
            snprintf(name, sizeof name, "fc%d.bias", layer);
            nnopt_node bn = nnopt_graph_param(g, name, 1, b, NNOPT_INIT_ZEROS);
            x = nnopt_graph_dense(g, x, wn, bn);
            in = 8;
        }
        x = acts[i] = nnopt_graph_act(g, x, kinds[i]);
    }
    int64_t w[2] = {3, 8};
    x = nnopt_graph_dense(g, x, nnopt_graph_param(g, "out.weight", 2, w, NNOPT_INIT_GLOROT_UNIFORM),
                          -1);
    nnopt_error err = {0};
    if (nnopt_graph_finish(g, x, &err) != NNOPT_OK) fail_msg("%s", err.message);
    return g;
}

/* Runs one technique's before_train on a graph held by a lone run. */
static nnopt_status rewrite(const char *plugin_name, const char *const *pairs, nnopt_graph *g,
                            columns *report) {
    const nnopt_plugin *plugin = load_plugin(NNOPT_PLUGIN_TECHNIQUE, plugin_name);
    const nnopt_technique_vtable *vt = plugin->desc->vtable;
    nnopt_config *cfg = plugin_config(plugin, pairs);
    nnopt_run_spec spec = {.name = "lone"};
    nnopt_run run = {.spec = &spec, .graph = g};
    void *ctx = NULL;
    assert_int_equal(vt->create(nnopt_host_api_get(), cfg, &ctx), NNOPT_OK);
    assert_null(vt->dependencies);
    nnopt_plugin_error_take();
    nnopt_status st = vt->before_train(ctx, &run);
    if (st == NNOPT_OK && report) vt->report(ctx, &run, collect_column, report);
    vt->destroy(ctx);
    nnopt_config_free(cfg);
    return st;
}

static void test_activation_swap_rewrites_only_matching_nodes(void **state) {
    (void)state;
    nnopt_node acts[4];
    nnopt_graph *g = mixed_graph(acts);
    nnopt_graph_node before[64];
    int n = g->n_nodes;
    assert_true(n <= 64);
    memcpy(before, g->nodes, (size_t)n * sizeof *before);
    const char *gelu_to_relu[] = {"from=gelu", "to=relu", NULL};
    columns c = {0};
    assert_int_equal(rewrite("activation_swap", gelu_to_relu, g, &c), NNOPT_OK);
    assert_string_equal(column(&c, "activation_swap"), "gelu -> relu, 2 nodes");
    static const nnopt_act_kind after[4] = {NNOPT_ACT_RELU, NNOPT_ACT_RELU, NNOPT_ACT_GELU_ERF,
                                            NNOPT_ACT_RELU};
    for (int i = 0; i < 4; i++) assert_int_equal(nnopt_graph_node_act(g, acts[i]), after[i]);
    /* Every other node, and the rest of each activation node, is untouched. */
    for (int i = 0; i < n; i++) {
        nnopt_graph_node expected = before[i];
        if (i == acts[0] || i == acts[3]) expected.op.p.act.kind = NNOPT_ACT_RELU;
        assert_memory_equal(&expected, &g->nodes[i], sizeof expected);
    }
    assert_int_equal(g->n_nodes, n);

    /* Nothing left to swap: a clear error. */
    assert_int_not_equal(rewrite("activation_swap", gelu_to_relu, g, NULL), NNOPT_OK);
    assert_non_null(
        strstr(nnopt_plugin_error_take(), "run 'lone' has no gelu activation to replace"));
    const char *erf_to_tanh[] = {"from=gelu_erf", "to=tanh", NULL};
    assert_int_equal(rewrite("activation_swap", erf_to_tanh, g, NULL), NNOPT_OK);
    assert_int_equal(nnopt_graph_node_act(g, acts[2]), NNOPT_ACT_TANH);
    assert_int_equal(nnopt_graph_node_act(g, acts[1]), NNOPT_ACT_RELU);
    nnopt_graph_free(g);
}

static void test_precision_moves_the_graph(void **state) {
    (void)state;
    nnopt_node acts[4];
    nnopt_graph *g = mixed_graph(acts);
    const char *to_f32[] = {"dtype=f32", NULL};
    columns c = {0};
    assert_int_equal(rewrite("precision", to_f32, g, &c), NNOPT_OK);
    assert_int_equal(nnopt_graph_dtype(g), NNOPT_F32);
    assert_string_equal(column(&c, "precision"), "f64 -> f32");
    nnopt_graph_free(g);
}

/* ---- a small pipeline on generated data ---------------------------------- */

static char fixture[256];

static int setup(void **state) {
    (void)state;
    if (fixture_tmpdir(fixture, sizeof fixture, "techniques") != 0) return -1;
    return idx_fixture_write(fixture, 600, 200, 5);
}

static int teardown(void **state) {
    (void)state;
    fixture_rmdir(fixture);
    return 0;
}

static const char *const pipeline_ini =
    "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n"
    "[model teacher]\nplugin = lenet5\nactivation = gelu\ndtype = f64\n"
    "[model student]\nplugin = lenet5\nchannels = 3,8\ndense = 50\nactivation = relu\ndtype = f32\n"
    "[technique distill]\nplugin = distillation\nteacher = %s\n"
    "[technique hinton]\nplugin = distillation\nteacher = teacher\nform = hinton\n"
    "temperature = 4\ncache = true\n"
    "[technique to_relu]\nplugin = activation_swap\nfrom = gelu\nto = relu\n"
    "[technique to_f32]\nplugin = precision\ndtype = f32\n"
    "[training]\nepochs = 2\nbatch = 32\nlr = 0.05\nmomentum = 0.9\nseed = 3\nprogress = off\n"
    "[run teacher]\nmodel = teacher\n"
    "[run student_distilled]\nmodel = student\ntechniques = distill\n"
    "[run student_alone]\nmodel = student\n"
    "[run student_hinton]\nmodel = student\ntechniques = hinton\n"
    "[run teacher_relu]\nmodel = teacher\ninit_from = teacher\ntechniques = to_relu\nepochs = 0\n"
    "[run teacher_f32]\nmodel = teacher\ntechniques = to_f32\nepochs = 1\n"
    "[compare distillation]\nruns = teacher, student_distilled, student_alone\nbaseline = "
    "teacher\n";

static nnopt_status load(const char *teacher, nnopt_experiment *e, nnopt_error *err) {
    char ini[512], dirset[400];
    snprintf(ini, sizeof ini, "%s/techniques.ini", fixture);
    FILE *f = fopen(ini, "w");
    fprintf(f, pipeline_ini, teacher);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", fixture);
    const char *overrides[2] = {dirset, "backend.plugin=cpu"};
    return nnopt_experiment_load(ini, overrides, 2, e, err);
}

static const nnopt_run_result *result(const nnopt_experiment *e, const nnopt_run_result *r,
                                      const char *name) {
    for (int i = 0; i < e->n_runs; i++)
        if (!strcmp(r[i].run, name)) return &r[i];
    fail_msg("no run %s", name);
    return NULL;
}

static const char *result_column(const nnopt_run_result *r, const char *name) {
    for (int i = 0; i < r->n_columns; i++)
        if (!strcmp(r->column_names[i], name)) return r->column_values[i];
    return NULL;
}

static void test_distillation_pipeline(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_data data;
    nnopt_error err = {0};
    if (load("teacher", &e, &err) != NNOPT_OK) fail_msg("%s", err.message);
    if (nnopt_data_load(e.data, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
    /* The teacher runs first: the technique's dependency orders the runs. */
    assert_string_equal(e.runs[e.order[0]].name, "teacher");
    nnopt_run_result r[NNOPT_MAX_RUNS];
    if (nnopt_pipeline_run(&e, &data, r, &err) != NNOPT_OK) fail_msg("%s", err.message);

    const nnopt_run_result *teacher = result(&e, r, "teacher");
    const nnopt_run_result *distilled = result(&e, r, "student_distilled");
    const nnopt_run_result *alone = result(&e, r, "student_alone");
    const nnopt_run_result *hinton = result(&e, r, "student_hinton");
    const nnopt_run_result *swapped = result(&e, r, "teacher_relu");
    const nnopt_run_result *f32 = result(&e, r, "teacher_f32");
    /* Chance is 0.1; the fixture is easy. */
    if (teacher->test_accuracy < 0.8 || distilled->test_accuracy < 0.8 ||
        alone->test_accuracy < 0.8)
        fail_msg("accuracies %.3f %.3f %.3f", teacher->test_accuracy, distilled->test_accuracy,
                 alone->test_accuracy);
    assert_string_equal(teacher->dtype, "f64");
    assert_string_equal(distilled->dtype, "f32");
    assert_string_equal(result_column(distilled, "teacher"), "teacher");
    assert_non_null(strchr(result_column(distilled, "teacher_share"), '%'));
    assert_true(atof(result_column(distilled, "teacher_seconds")) > 0);
    assert_null(result_column(distilled, "teacher_cached"));
    assert_null(result_column(alone, "teacher_share"));
    /* 600 images, batches of 32: 18 full batches, 576 images seen per epoch;
     * reshuffling shows the second epoch some of the rest. */
    long long cached = 0, total = 0;
    assert_int_equal(
        sscanf(result_column(hinton, "teacher_cached"), "%lld of %lld", &cached, &total), 2);
    assert_true(cached >= 576 && cached <= 600 && total == 600);
    assert_true(hinton->test_accuracy > 0.5);
    assert_string_equal(result_column(swapped, "activation_swap"), "gelu -> relu, 4 nodes");
    assert_int_equal(swapped->n_epochs, 0);
    assert_true(swapped->test_accuracy > 0.1);
    assert_string_equal(result_column(f32, "precision"), "f64 -> f32");
    assert_string_equal(f32->dtype, "f32");

    assert_int_equal(e.n_compares, 1);
    assert_int_equal(e.compares[0].n_runs, 3);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    nnopt_report_compare(&e, &e.compares[0], r, f);
    nnopt_report_table(r, e.n_runs, f);
    fclose(f);
    assert_non_null(strstr(text, "| teacher (baseline) |"));
    assert_non_null(strstr(text, "| student_distilled |"));
    assert_non_null(strstr(text, "| student_alone |"));
    assert_non_null(strstr(text, " teacher_share |"));
    free(text);

    for (int i = 0; i < e.n_runs; i++) nnopt_run_result_free(&r[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_unknown_teacher_is_a_config_error(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_equal(load("nobody", &e, &err), NNOPT_STATUS_CONFIG);
    /* Names the file and line of the [technique distill] section. */
    assert_non_null(strstr(err.message, "techniques.ini:17:"));
    assert_non_null(strstr(err.message, "'nobody', which is not a run"));
    nnopt_experiment_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_study_loss_gradients),
        cmocka_unit_test(test_hinton_loss_gradients),
        cmocka_unit_test(test_distillation_cache_and_errors),
        cmocka_unit_test(test_activation_swap_rewrites_only_matching_nodes),
        cmocka_unit_test(test_precision_moves_the_graph),
        cmocka_unit_test(test_distillation_pipeline),
        cmocka_unit_test(test_unknown_teacher_is_a_config_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
