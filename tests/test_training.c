/* The whole training path: a LeNet-5 step checked against finite
 * differences, an end-to-end run that must learn, bit-for-bit repeatability
 * and a clear error when the loss diverges. */
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
#include "idx_fixture.h"
#include "net_gradcheck.h"
#include "pipeline.h"
#include "train.h"

static const char *backend_name(void) {
    const char *b = getenv("NNOPT_TEST_BACKEND");
    return b && b[0] ? b : "cpu";
}

/* A small LeNet-5 (f64) on a 12x12 input, as a network on the test backend. */
static nnopt_network *small_lenet(const char *activation, const char *pool, nnopt_backend **bk) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *model = NULL, *backend = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, "lenet5", &model, &err), NNOPT_OK);
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, backend_name(), &backend, &err),
                     NNOPT_OK);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg =
        nnopt_config_create(model->desc->params, (int)model->desc->n_params, "lenet5");
    assert_int_equal(nnopt_config_set(cfg, "channels", "2,3", "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "dense", "5", "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "activation", activation, "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "pool", pool, "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "dtype", "f64", "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_finish(cfg, "t", &err), NNOPT_OK);
    nnopt_graph *g = nnopt_graph_create(1, 12, 12, 10);
    nnopt_node logits = -1;
    const nnopt_model_vtable *vt = model->desc->vtable;
    assert_int_equal(vt->build(nnopt_host_api_get(), cfg, g, &logits), NNOPT_OK);
    assert_int_equal(nnopt_graph_finish(g, logits, &err), NNOPT_OK);
    nnopt_config *bcfg =
        nnopt_config_create(backend->desc->params, (int)backend->desc->n_params, "b");
    assert_int_equal(nnopt_config_finish(bcfg, "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_backend_open(backend, bcfg, bk, &err), NNOPT_OK);
    nnopt_network *net = NULL;
    assert_int_equal(nnopt_network_create(g, *bk, 7, &net, &err), NNOPT_OK);
    nnopt_config_free(cfg);
    nnopt_config_free(bcfg);
    return net;
}

static void gradcheck_lenet(const char *activation, const char *pool) {
    nnopt_backend *bk = NULL;
    nnopt_network *net = small_lenet(activation, pool, &bk);
    nnopt_optimizer opt = {.kind = NNOPT_OPTIMIZER_SGD};
    nnopt_error err = {0};
    assert_int_equal(nnopt_network_prepare_training(net, &opt, &err), NNOPT_OK);
    enum { BATCH = 3 };
    nnopt_exec *ex = NULL;
    assert_int_equal(nnopt_exec_create(net, BATCH, 1, &ex, &err), NNOPT_OK);
    double x[BATCH * 144];
    int32_t y[BATCH] = {1, 7, 3};
    unsigned s = 12345;
    for (int i = 0; i < BATCH * 144; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (double)(s >> 8) / (double)(1u << 24);
    }
    const nnopt_graph *g = net->graph;
    char label[64];
    snprintf(label, sizeof label, "lenet5 %s/%s", activation, pool);
    const int checked = net_gradcheck(ex, x, y, INT64_MAX, label);
    assert_int_equal(checked, nnopt_graph_param_count(g));

    /* One SGD step moves every parameter by exactly -lr * gradient. */
    net_loss_at(ex, x, y);
    int first = -1;
    for (int n = 0; n < g->n_nodes && first < 0; n++)
        if (net->param[n]) first = n;
    int64_t count = nnopt_tensor_numel(net->param[first]);
    double *before = malloc((size_t)count * 8), *grad = malloc((size_t)count * 8),
           *after = malloc((size_t)count * 8);
    nnopt_backend_read(bk, net->param[first], before, (size_t)count * 8, &err);
    nnopt_backend_read(bk, net->grad[first], grad, (size_t)count * 8, &err);
    assert_int_equal(nnopt_network_step(net, &opt, 0.5, &err), NNOPT_OK);
    nnopt_backend_read(bk, net->param[first], after, (size_t)count * 8, &err);
    for (int64_t i = 0; i < count; i++)
        assert_true(fabs(after[i] - (before[i] - 0.5 * grad[i])) < 1e-12);
    free(before);
    free(grad);
    free(after);
    nnopt_exec_free(ex);
    nnopt_network_free(net);
    nnopt_backend_close(bk);
}

static void test_lenet_gradients_gelu_avg(void **state) {
    (void)state;
    gradcheck_lenet("gelu", "avg");
}

static void test_lenet_gradients_tanh_max(void **state) {
    (void)state;
    gradcheck_lenet("tanh", "max");
}

static char fixture[256];

static int setup(void **state) {
    (void)state;
    if (fixture_tmpdir(fixture, sizeof fixture, "training") != 0) return -1;
    return idx_fixture_write(fixture, 1000, 300, 99);
}

static int teardown(void **state) {
    (void)state;
    fixture_rmdir(fixture);
    return 0;
}

/* Loads an experiment on the fixture with extra --set overrides. */
static void load(nnopt_experiment *e, nnopt_data *data, const char *extra, const char *extra2) {
    char ini[512], dirset[400], backend[80];
    snprintf(ini, sizeof ini, "%s/e2e.ini", fixture);
    FILE *f = fopen(ini, "w");
    fputs(
        "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
        "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
        "test_labels = t10k-labels-idx1-ubyte\n[model student]\nplugin = lenet5\n"
        "channels = 3,8\ndense = 50\nactivation = relu\ndtype = f32\n"
        "[training]\nepochs = 3\nbatch = 32\nlr = 0.05\nmomentum = 0.9\nseed = 3\nprogress = off\n",
        f);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", fixture);
    snprintf(backend, sizeof backend, "backend.plugin=%s", backend_name());
    const char *overrides[4] = {dirset, backend, extra, extra2};
    nnopt_error err = {0};
    if (nnopt_experiment_load(ini, overrides, extra2 ? 4 : extra ? 3 : 2, e, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    if (nnopt_data_load(e->data, data, &err) != NNOPT_OK) fail_msg("%s", err.message);
}

static void test_end_to_end_learns(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_data data;
    load(&e, &data, NULL, NULL);
    nnopt_run_result a, b;
    nnopt_error err = {0};
    if (nnopt_pipeline_run(&e, &data, &a, &err) != NNOPT_OK) fail_msg("%s", err.message);
    assert_int_equal(a.n_epochs, 3);
    assert_int_equal(a.params, 11246);
    /* Chance is 0.1. */
    if (a.test_accuracy < 0.9) fail_msg("accuracy %.3f after 3 epochs", a.test_accuracy);
    assert_true(a.epochs[2].train_loss < a.epochs[0].train_loss);
    assert_true(a.train_seconds > 0 && a.eval_seconds > 0);
    /* Same seed, same backend: the same numbers, bit for bit. */
    assert_int_equal(nnopt_pipeline_run(&e, &data, &b, &err), NNOPT_OK);
    for (int k = 0; k < 3; k++) {
        assert_memory_equal(&a.epochs[k].train_loss, &b.epochs[k].train_loss, sizeof(double));
        assert_memory_equal(&a.epochs[k].test_loss, &b.epochs[k].test_loss, sizeof(double));
        assert_memory_equal(&a.epochs[k].test_accuracy, &b.epochs[k].test_accuracy, sizeof(double));
    }
    nnopt_run_result_free(&a);
    nnopt_run_result_free(&b);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_divergence_is_an_error(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_data data;
    /* Inputs of 1e6 and a huge rate overflow float32 within a few batches. */
    load(&e, &data, "data.std=1e-6", "training.lr=1e6");
    nnopt_run_result r;
    nnopt_error err = {0};
    assert_int_equal(nnopt_pipeline_run(&e, &data, &r, &err), NNOPT_STATUS_NUMERIC);
    assert_non_null(strstr(err.message, "run 'student': training diverged: loss is"));
    assert_non_null(strstr(err.message, "at epoch 1, batch"));
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet_gradients_gelu_avg),
        cmocka_unit_test(test_lenet_gradients_tanh_max),
        cmocka_unit_test(test_end_to_end_learns),
        cmocka_unit_test(test_divergence_is_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
