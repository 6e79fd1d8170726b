/* Model plugins build the architectures the study describes: parameter
 * counts against independently computed values, shapes, and a finite-
 * difference gradient check of small ResNet and MobileNet training steps,
 * and batchnorm folding at inference. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "config.h"
#include "executor.h"
#include "graph.h"
#include "net_gradcheck.h"
#include "network.h"
#include "plugin_loader.h"

/* Builds model `name` with "key=value" settings for a c x h x w input. */
/* p's configuration with "key=value" settings (NULL-terminated) applied. */
static nnopt_config *plugin_config(const nnopt_plugin *p, const char *name,
                                   const char *const *settings) {
    nnopt_error err = {0};
    nnopt_config *cfg = nnopt_config_create(p->desc->params, (int)p->desc->n_params, name);
    for (int i = 0; settings && settings[i]; i++) {
        char key[64];
        const char *eq = strchr(settings[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - settings[i]), settings[i]);
        if (nnopt_config_set(cfg, key, eq + 1, "test", &err) != NNOPT_OK)
            fail_msg("%s", err.message);
    }
    if (nnopt_config_finish(cfg, "test", &err) != NNOPT_OK) fail_msg("%s", err.message);
    return cfg;
}

static nnopt_graph *build(const char *name, const char *const *settings, int c, int h, int w) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    if (nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, name, &p, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = plugin_config(p, name, settings);
    nnopt_graph *g = nnopt_graph_create(c, h, w, 10);
    nnopt_node logits = -1;
    const nnopt_model_vtable *vt = p->desc->vtable;
    if (vt->build(nnopt_host_api_get(), cfg, g, &logits) != NNOPT_OK ||
        nnopt_graph_finish(g, logits, &err) != NNOPT_OK)
        fail_msg("%s: %s %s", name, err.message, g->err.message);
    nnopt_config_free(cfg);
    return g;
}

static void expect_params(const char *name, const char *const *settings, int c, int h, int w,
                          int64_t expected) {
    nnopt_graph *g = build(name, settings, c, h, w);
    int64_t got = nnopt_graph_param_count(g);
    if (got != expected)
        fail_msg("%s: %lld parameters, expected %lld", name, (long long)got, (long long)expected);
    nnopt_graph_free(g);
}

/* Expected counts were computed independently with PyTorch models of the
 * same architectures (sum of p.numel() over parameters); they match the
 * study's ~0.86M (ResNet-56), ~0.56M (ResNet-38) and ~3.67M (ResNet-152). */
#define RESNET56_PARAMS 855770
#define RESNET38_PARAMS 564122
#define RESNET152_PARAMS 3667354
#define RESNET20A_PARAMS 269722
#define MOBILENET_PARAMS 3217226
static void test_parameter_counts(void **state) {
    (void)state;
    expect_params("lenet5", NULL, 1, 28, 28, 61706);
    expect_params("lenet5", (const char *[]){"channels=3,8", "dense=50", NULL}, 1, 28, 28, 11246);
    expect_params("resnet", NULL, 3, 32, 32, RESNET56_PARAMS);
    expect_params("resnet", (const char *[]){"blocks=6,6,6", NULL}, 3, 32, 32, RESNET38_PARAMS);
    expect_params("resnet", (const char *[]){"depth=152", NULL}, 3, 32, 32, RESNET152_PARAMS);
    expect_params("resnet", (const char *[]){"depth=20", "shortcut=identity", NULL}, 3, 32, 32,
                  RESNET20A_PARAMS);
    expect_params("mobilenet_v1", NULL, 3, 32, 32, MOBILENET_PARAMS);
    expect_params("mobilenet_v1", (const char *[]){"cifar=true", NULL}, 3, 32, 32,
                  MOBILENET_PARAMS);
}

static void test_mobilenet_strides(void **state) {
    (void)state;
    /* The study's unadapted net shrinks 32x32 to 1x1; the cifar variant to 2x2. */
    int64_t shape[NNOPT_MAX_DIMS];
    const char *variants[2][2] = {{"cifar=false", NULL}, {"cifar=true", NULL}};
    int64_t expected[2] = {1, 2};
    for (int v = 0; v < 2; v++) {
        nnopt_graph *g = build("mobilenet_v1", variants[v], 3, 32, 32);
        int64_t last = -1;
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].kind == NNOPT_NODE_POOL2D) {
                nnopt_graph_shape(g, g->nodes[i].inputs[0], shape);
                last = shape[2];
            }
        assert_int_equal(last, expected[v]);
        nnopt_graph_free(g);
    }
}

/* The backend, or NULL with why in `why` when its plugin is not built or it
 * cannot run here (NNOPT_STATUS_DEVICE: no GPU); other failures fail. */
static nnopt_backend *try_open_backend(const char *name, const char *const *settings, char *why,
                                       size_t why_size) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    const nnopt_status loaded = nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, name, &p, &err);
    nnopt_plugin_search_free(&s);
    if (loaded != NNOPT_OK) {
        snprintf(why, why_size, "%s", err.message);
        return NULL;
    }
    nnopt_config *cfg = plugin_config(p, name, settings);
    nnopt_backend *b = NULL;
    const nnopt_status opened = nnopt_backend_open(p, cfg, &b, &err);
    nnopt_config_free(cfg);
    if (opened == NNOPT_STATUS_DEVICE) {
        snprintf(why, why_size, "%s", err.message);
        return NULL;
    }
    if (opened != NNOPT_OK) fail_msg("%s", err.message);
    return b;
}

static nnopt_backend *open_backend(const char *name) {
    char why[1100];
    nnopt_backend *b = try_open_backend(name, NULL, why, sizeof why);
    if (b == NULL) fail_msg("%s", why);
    return b;
}

/* Every parameter and statistic random (variances positive), so that a
 * folded batchnorm differs from an identity. */
static void randomize_state(nnopt_network *net, unsigned seed) {
    const nnopt_graph *g = net->graph;
    srand(seed);
    for (int i = 0; i < g->n_nodes; i++) {
        nnopt_tensor *t = net->param[i];
        if (!t) continue;
        int64_t n = nnopt_tensor_numel(t);
        int var = strstr(g->nodes[i].name, "running_var") != NULL;
        double *v = malloc((size_t)n * sizeof *v);
        float *f = malloc((size_t)n * sizeof *f);
        for (int64_t k = 0; k < n; k++) {
            double u = (double)rand() / RAND_MAX;
            v[k] = var ? 0.5 + u : u - 0.5;
            f[k] = (float)v[k];
        }
        nnopt_error err = {0};
        const void *bytes = t->dtype == NNOPT_F64 ? (const void *)v : (const void *)f;
        assert_int_equal(nnopt_backend_write(net->backend, t, bytes, nnopt_tensor_nbytes(t), &err),
                         NNOPT_OK);
        free(v);
        free(f);
    }
}

static void logits_of(nnopt_exec *ex, const double *x, double *logits) {
    nnopt_error err = {0};
    const nnopt_graph *g = ex->net->graph;
    int64_t n = ex->batch * g->nodes[g->input].shape[1] * g->nodes[g->input].shape[2] *
                g->nodes[g->input].shape[3];
    float *xf = malloc((size_t)n * sizeof *xf);
    for (int64_t i = 0; i < n; i++) xf[i] = (float)x[i];
    const void *input = g->dtype == NNOPT_F64 ? (const void *)x : (const void *)xf;
    if (nnopt_exec_forward(ex, input, &err) != NNOPT_OK ||
        nnopt_exec_read_logits(ex, logits, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    free(xf);
}

/* An inference executor folds each conv -> batchnorm pair into the conv,
 * runs every relu inside the conv or add before it (conv2d_relu, add_relu),
 * every residual add (and its relu) inside the conv before it
 * (conv2d_add_relu) and shares activation memory; its logits match the
 * plain executor's. */
static void expect_folding_exact(const char *model, const char *const *settings, int h,
                                 const char *backend, double tolerance) {
    enum { BATCH = 3 };
    nnopt_graph *g = build(model, settings, 3, h, h);
    int batchnorms = 0, relus = 0, adds = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        batchnorms += g->nodes[i].kind == NNOPT_NODE_BATCHNORM;
        adds += g->nodes[i].kind == NNOPT_NODE_ADD;
        relus += g->nodes[i].kind == NNOPT_NODE_ACT && g->nodes[i].op.p.act.kind == NNOPT_ACT_RELU;
    }
    nnopt_backend *b = open_backend(backend);
    nnopt_network *net = NULL;
    nnopt_error err = {0};
    if (nnopt_network_create(g, b, 7, &net, &err) != NNOPT_OK) fail_msg("%s", err.message);
    randomize_state(net, 11);
    nnopt_exec *plain = NULL, *lean = NULL;
    assert_int_equal(nnopt_exec_create(net, BATCH, 0, &plain, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_create_inference(net, BATCH, &lean, &err), NNOPT_OK);
    int folded = 0;
    for (int i = 0; lean->folded_into && i < g->n_nodes; i++) folded += lean->folded_into[i] >= 0;
    if (folded == 0 || folded != batchnorms)
        fail_msg("%s: %d of %d batchnorms folded", model, folded, batchnorms);
    int fused = 0;
    for (int i = 0; lean->relu_into && i < g->n_nodes; i++) fused += lean->relu_into[i] >= 0;
    if (fused == 0 || fused != relus)
        fail_msg("%s on %s: %d of %d relus fused", model, backend, fused, relus);
    int in_convs = 0;
    for (int i = 0; lean->residual_of && i < g->n_nodes; i++) in_convs += lean->residual_of[i] >= 0;
    if (adds > 0 && in_convs == 0) /* identity shortcuts: the projections come after the branch */
        fail_msg("%s on %s: none of %d adds runs inside its conv", model, backend, adds);
    int64_t n = (int64_t)BATCH * 3 * h * h;
    double *x = malloc((size_t)n * sizeof *x), a[BATCH * 10], c[BATCH * 10];
    for (int64_t i = 0; i < n; i++) x[i] = sin(0.37 * (double)i);
    /* Twice: the second pass reuses blocks the first one left dirty. */
    for (int pass = 0; pass < 2; pass++) {
        logits_of(plain, x, a);
        logits_of(lean, x, c);
        double scale = 0, diff = 0;
        for (int i = 0; i < BATCH * 10; i++) {
            scale = fmax(scale, fabs(a[i]));
            diff = fmax(diff, fabs(a[i] - c[i]));
        }
        if (!(diff <= tolerance * scale))
            fail_msg("%s on %s: folded logits differ by %g (scale %g)", model, backend, diff,
                     scale);
    }
    free(x);
    nnopt_exec_free(plain);
    nnopt_exec_free(lean);
    nnopt_network_free(net);
    nnopt_backend_close(b);
}

static void test_batchnorm_folding(void **state) {
    (void)state;
    const char *resnet[] = {"blocks=1,1,1", "width=4", "dtype=f64", NULL};
    const char *mobilenet[] = {"width=0.25", "cifar=true", "dtype=f64", NULL};
    const char *resnet32[] = {"blocks=1,1,1", "width=4", NULL};
    expect_folding_exact("resnet", resnet, 8, "cpu", 1e-12);
    expect_folding_exact("mobilenet_v1", mobilenet, 32, "cpu", 1e-12);
    expect_folding_exact("resnet", resnet32, 8, "blis", 1e-4);
}

/* A training step of a small model against finite
 * differences (f64, 8x8 inputs): the residual adds, projection shortcuts, batchnorm in
 * training mode, depthwise and strided convs. */
static void expect_gradients(const char *model, const char *const *settings, const char *backend,
                             int bn_in_every_add) {
    enum { BATCH = 8, SIDE = 8 }; /* 8 values per channel where maps are 1x1 */
    nnopt_graph *g = build(model, settings, 3, SIDE, SIDE);
    nnopt_backend *b = open_backend(backend);
    nnopt_network *net = NULL;
    nnopt_error err = {0};
    if (nnopt_network_create(g, b, 7, &net, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_optimizer opt = {.kind = NNOPT_OPTIMIZER_SGD};
    assert_int_equal(nnopt_network_prepare_training(net, &opt, &err), NNOPT_OK);
    nnopt_exec *ex = NULL;
    assert_int_equal(nnopt_exec_create(net, BATCH, 1, &ex, &err), NNOPT_OK);
    if (bn_in_every_add) { /* each add runs its batchnorm (batchnorm_add_relu) */
        int adds = 0, fused = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            adds += g->nodes[i].kind == NNOPT_NODE_ADD;
            fused += ex->bn_add_into && ex->bn_add_into[i] >= 0;
        }
        assert_true(adds > 0);
        assert_int_equal(fused, adds);
        /* and relus after adds have their backward inside a conv's */
        int relus_in_convs = 0;
        for (int i = 0; ex->relu_bwd_in && i < g->n_nodes; i++)
            relus_in_convs += ex->relu_bwd_in[i] >= 0;
        assert_true(relus_in_convs > 0);
    }
    double x[BATCH * 3 * SIDE * SIDE];
    for (int i = 0; i < BATCH * 3 * SIDE * SIDE; i++) x[i] = sin(0.61 * i) + 0.3 * cos(1.7 * i);
    const int32_t y[BATCH] = {2, 9, 4, 0, 7, 7, 1, 5};
    char label[160];
    snprintf(label, sizeof label, "%s (%s%s%s) on %s", model, settings[0], settings[1] ? ", " : "",
             settings[1] ? settings[1] : "", backend);
    const int checked = net_gradcheck(ex, x, y, 2, label);
    assert_true(checked > 0);
    nnopt_exec_free(ex);
    nnopt_network_free(net);
    nnopt_backend_close(b);
}

static void test_model_gradients(void **state) {
    (void)state;
    const char *projection[] = {"blocks=1,1,1", "width=4", "activation=tanh", "dtype=f64", NULL};
    const char *identity[] = {"blocks=2,1",      "width=4",   "shortcut=identity",
                              "activation=tanh", "dtype=f64", NULL};
    const char *bottleneck[] = {"blocks=1,1",      "block=bottleneck", "width=4",
                                "activation=tanh", "dtype=f64",        NULL};
    /* relu: the add's output relu runs fused (add_relu) where the backend has
     * it, with the batchnorm before it (batchnorm_add_relu) */
    const char *identity_relu[] = {"blocks=2,1", "width=4", "shortcut=identity", "dtype=f64", NULL};
    /* projection shortcuts: strided first convs take the relus' backward */
    const char *projection_relu[] = {"blocks=1,1,1", "width=4", "dtype=f64", NULL};
    const char *mobilenet[] = {"width=0.125", "cifar=true", "dropout=0", "dtype=f64", NULL};
    expect_gradients("resnet", projection, "cpu", 0);
    expect_gradients("resnet", identity_relu, "cpu", 1);
    expect_gradients("resnet", identity, "cpu", 0);
    expect_gradients("resnet", bottleneck, "cpu", 0);
    expect_gradients("mobilenet_v1", mobilenet, "cpu", 0);
    /* blis's ops are compared with the reference op by op (test_blis_vs_ref);
     * here, once, the whole step through them. */
    expect_gradients("resnet", projection, "blis", 0);
    expect_gradients("resnet", identity_relu, "blis", 1);
    expect_gradients("resnet", projection_relu, "cpu", 1);
    expect_gradients("resnet", projection_relu, "blis", 1);
}

/* The parameters after `steps` SGD steps (momentum, weight decay) of a small
 * f64 relu ResNet on `backend` with `settings`; NULL when it cannot run here. */
static double *train_steps(const char *backend, const char *const *settings, int steps,
                           int64_t *count, char *why, size_t why_size) {
    enum { BATCH = 8, SIDE = 8 };
    const char *model[] = {"blocks=2,1", "width=4", "shortcut=identity", "dtype=f64", NULL};
    nnopt_backend *b = try_open_backend(backend, settings, why, why_size);
    if (b == NULL) return NULL;
    nnopt_graph *g = build("resnet", model, 3, SIDE, SIDE);
    nnopt_network *net = NULL;
    nnopt_error err = {0};
    if (nnopt_network_create(g, b, 7, &net, &err) != NNOPT_OK) fail_msg("%s", err.message);
    const nnopt_optimizer opt = {
        .kind = NNOPT_OPTIMIZER_SGD, .momentum = 0.9, .weight_decay = 5e-4};
    assert_int_equal(nnopt_network_prepare_training(net, &opt, &err), NNOPT_OK);
    nnopt_exec *ex = NULL;
    assert_int_equal(nnopt_exec_create(net, BATCH, 1, &ex, &err), NNOPT_OK);
    double x[BATCH * 3 * SIDE * SIDE];
    int32_t y[BATCH];
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < BATCH * 3 * SIDE * SIDE; i++) x[i] = sin(0.61 * i + step);
        for (int i = 0; i < BATCH; i++) y[i] = (i * 7 + step) % 10;
        double loss = 0;
        if (nnopt_exec_forward(ex, x, &err) != NNOPT_OK ||
            nnopt_exec_backward(ex, y, NULL, &loss, &err) != NNOPT_OK ||
            nnopt_network_step(net, &opt, 0.05, &err) != NNOPT_OK)
            fail_msg("step %d: %s", step, err.message);
    }
    *count = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (net->param[i]) *count += nnopt_tensor_numel(net->param[i]);
    double *values = malloc((size_t)*count * sizeof *values);
    assert_non_null(values);
    int64_t at = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!net->param[i]) continue;
        const int64_t n = nnopt_tensor_numel(net->param[i]);
        if (nnopt_backend_read(b, net->param[i], values + at, (size_t)n * sizeof *values, &err) !=
            NNOPT_OK)
            fail_msg("%s", err.message);
        at += n;
    }
    nnopt_exec_free(ex);
    nnopt_network_free(net);
    nnopt_backend_close(b);
    return values;
}

/* Where a GPU is: whole training steps through the cuda backend's fused ops
 * against finite differences, and the same steps with repeated op sequences
 * replayed as CUDA graphs (graphs = auto) and launched op by op (off). */
static void test_model_training_on_cuda(void **state) {
    (void)state;
    char why[1100];
    const char *graphs_off[] = {"graphs=off", NULL};
    int64_t count = 0, count_off = 0;
    double *auto_values = train_steps("cuda", NULL, 6, &count, why, sizeof why);
    if (auto_values == NULL) {
        print_message("SKIP: cuda backend unavailable: %s\n", why);
        skip();
    }
    double *off_values = train_steps("cuda", graphs_off, 6, &count_off, why, sizeof why);
    assert_non_null(off_values);
    assert_int_equal(count, count_off);
    /* Same kernels on the same values (deterministic algorithms): equal up to
     * what a reduction's order could change. */
    for (int64_t i = 0; i < count; i++)
        if (fabs(auto_values[i] - off_values[i]) > 1e-12 * (1 + fabs(off_values[i])))
            fail_msg("parameter value %lld: %.17g with graphs, %.17g without", (long long)i,
                     auto_values[i], off_values[i]);
    free(auto_values);
    free(off_values);
    const char *identity_relu[] = {"blocks=2,1", "width=4", "shortcut=identity", "dtype=f64", NULL};
    const char *projection_relu[] = {"blocks=1,1,1", "width=4", "dtype=f64", NULL};
    expect_gradients("resnet", identity_relu, "cuda", 1);
    expect_gradients("resnet", projection_relu, "cuda", 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameter_counts),       cmocka_unit_test(test_mobilenet_strides),
        cmocka_unit_test(test_batchnorm_folding),      cmocka_unit_test(test_model_gradients),
        cmocka_unit_test(test_model_training_on_cuda),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
