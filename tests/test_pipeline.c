/* Multi-run pipelines: runs, sweeps, dependencies, comparisons, fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "experiment.h"
#include "idx_fixture.h"
#include "pipeline.h"
#include "report.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    if (fixture_tmpdir(dir, sizeof dir, "pipeline") != 0) return -1;
    return idx_fixture_write(dir, 200, 100, 11);
}

static int teardown(void **state) {
    (void)state;
    fixture_rmdir(dir);
    return 0;
}

static const char *data_and_models =
    "[plugins]\npath = " NNOPT_BROKEN_PLUGIN_DIR "\n"
    "[data]\ndataset = idx\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n"
    "[model big]\nplugin = lenet5\nchannels = 4,8\ndense = 16\nactivation = relu\ndtype = f32\n"
    "[model small]\nplugin = lenet5\nchannels = 2,4\ndense = 8\nactivation = relu\ndtype = f32\n"
    "[training]\nepochs = 1\nbatch = 50\nlr = 0.05\nprogress = off\n";

/* Writes data_and_models + extra as NAME in the fixture folder and loads it. */
static nnopt_status load(const char *name, const char *extra, nnopt_experiment *e,
                         nnopt_error *err) {
    char path[512], dirset[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(data_and_models, f);
    fputs(extra, f);
    fclose(f);
    snprintf(dirset, sizeof dirset, "data.dir=%s", dir);
    const char *overrides[] = {dirset};
    return nnopt_experiment_load(path, overrides, 1, e, err);
}

static void expect_config_error(const char *extra, const char *fragment) {
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_not_equal(load("bad.ini", extra, &e, &err), NNOPT_OK);
    if (!strstr(err.message, fragment)) fail_msg("'%s' lacks '%s'", err.message, fragment);
    nnopt_experiment_free(&e);
}

static void test_run_errors(void **state) {
    (void)state;
    expect_config_error("[run a]\nmodel = huge\n",
                        "bad.ini:27: [run a] names model 'huge', but there is no [model huge]");
    expect_config_error("[run a]\nmodel = big\nafter = b\n[run b]\nmodel = small\nafter = a\n",
                        "runs depend on each other in a cycle: a -> b -> a");
    expect_config_error("[run a]\nmodel = big\nafter = nobody\n",
                        "bad.ini:28: run 'a' runs after 'nobody', which is not a run");
    expect_config_error("[run a]\nmodel = big\ntechniques = magic\n",
                        "run 'a' uses technique 'magic', but there is no [technique magic]");
    expect_config_error("[run a]\nmodel = big\nlearning = 3\n",
                        "bad.ini:28: unknown key 'learning' in [run a]");
    expect_config_error("[run a]\nmodel = big\nepochs = -1\n", "bad value '-1' for epochs");
    expect_config_error("[run a]\nmodel = big\n[compare c]\nruns = a, z\n",
                        "[compare c] names run 'z', which is not a run");
    expect_config_error("[run a]\nmodel = big\n[compare c]\nruns = a\nbaseline = q\n",
                        "baseline 'q' is not one of the compared runs");
    expect_config_error("[run a]\nmodel = big\nbackend = quantum\n",
                        "bad.ini:28: backend plugin 'quantum' not found");
}

static void test_sweep_and_order(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_error err = {0};
    /* 'second' is written first but starts from 'first': dependencies go first. */
    nnopt_status st = load("sweep.ini",
                           "[run second]\nmodel = big\ninit_from = first\nepochs = 2\n"
                           "[run first]\nmodel = big\n"
                           "[run both]\nmodel = big, small\nbackend = cpu\nlr = 0.01\n",
                           &e, &err);
    if (st != NNOPT_OK) fail_msg("%s", err.message);
    assert_int_equal(e.n_runs, 4);
    assert_string_equal(e.runs[2].name, "both@big");
    assert_string_equal(e.runs[3].name, "both@small");
    assert_string_equal(e.runs[e.order[0]].name, "first");
    assert_string_equal(e.runs[e.order[1]].name, "second");
    assert_int_equal(e.runs[0].init_from, 1);
    assert_int_equal(nnopt_config_get_int(e.runs[0].training, "epochs"), 2);
    assert_true(nnopt_config_get_float(e.runs[3].training, "lr") == 0.01);
    assert_true(nnopt_config_get_float(e.runs[1].training, "lr") == 0.05);
    nnopt_experiment_free(&e);
}

static void test_runs_compare_and_fallback(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_error err = {0};
    nnopt_status st = load("full.ini",
                           "[backend gpu]\nplugin = nodevice\nfallback = cpu\n"
                           "[run big]\nmodel = big\n"
                           "[run small]\nmodel = small\nbackend = gpu\n"
                           "[run tuned]\nmodel = big\ninit_from = big\nepochs = 0\n"
                           "[compare sizes]\nruns = big, small, tuned\nbaseline = big\n",
                           &e, &err);
    if (st != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_data data;
    assert_int_equal(nnopt_data_load(e.data, &data, &err), NNOPT_OK);
    nnopt_run_result results[3];
    st = nnopt_pipeline_run(&e, &data, results, &err);
    if (st != NNOPT_OK) fail_msg("%s", err.message);
    /* The gpu run fell back to the CPU, and says so. */
    assert_string_equal(results[1].backend, "cpu");
    if (!strstr(results[1].note, "fell back from nodevice: nodevice backend: no device"))
        fail_msg("note: %s", results[1].note);
    assert_string_equal(results[0].note, "");
    /* 0 epochs from 'big': evaluated once, with exactly big's accuracy. */
    assert_int_equal(results[2].n_epochs, 0);
    assert_true(results[2].test_accuracy == results[0].test_accuracy);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    nnopt_report_compare(&e, &e.compares[0], results, f);
    fclose(f);
    assert_non_null(strstr(text, "| big (baseline) | cpu | f32 |"));
    assert_non_null(strstr(text, "| 1.00x | 1.00x | +0.0000 |"));
    assert_non_null(strstr(text, "| small | cpu | f32 |"));
    free(text);
    for (int i = 0; i < 3; i++) nnopt_run_result_free(&results[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_checkpoint_save_then_load(void **state) {
    (void)state;
    char extra[1024];
    snprintf(extra, sizeof extra,
             "[run trained]\nmodel = big\nsave_checkpoint = %s/big.safetensors\n"
             "[run restored]\nmodel = big\nafter = trained\nload_checkpoint = %s/big.safetensors\n"
             "epochs = 0\nbackend = blis\n",
             dir, dir);
    nnopt_experiment e;
    nnopt_error err = {0};
    if (load("ckpt.ini", extra, &e, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_data data;
    assert_int_equal(nnopt_data_load(e.data, &data, &err), NNOPT_OK);
    nnopt_run_result results[2];
    if (nnopt_pipeline_run(&e, &data, results, &err) != NNOPT_OK) fail_msg("%s", err.message);
    /* The same weights on another backend classify the test set the same way. */
    assert_true(results[1].test_accuracy == results[0].test_accuracy);
    for (int i = 0; i < 2; i++) nnopt_run_result_free(&results[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_backend_without_fallback_fails(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_equal(load("nodev.ini", "[backend]\nplugin = nodevice\n", &e, &err), NNOPT_OK);
    nnopt_data data;
    assert_int_equal(nnopt_data_load(e.data, &data, &err), NNOPT_OK);
    nnopt_run_result results[2];
    assert_int_equal(nnopt_pipeline_run(&e, &data, results, &err), NNOPT_STATUS_DEVICE);
    assert_string_equal(err.message,
                        "nodevice backend: no device: this test backend never has one");
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

static void test_op_fallback_denied_by_default(void **state) {
    (void)state;
    expect_config_error("[backend part]\nplugin = partial\nop_fallback = maybe\n",
                        "bad.ini:28: bad value 'maybe' for op_fallback in [backend part]");
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_equal(load("deny.ini", "[backend]\nplugin = partial\n", &e, &err), NNOPT_OK);
    nnopt_data data;
    assert_int_equal(nnopt_data_load(e.data, &data, &err), NNOPT_OK);
    nnopt_run_result results[2];
    nnopt_status st = nnopt_pipeline_run(&e, &data, results, &err);
    if (st != NNOPT_STATUS_UNSUPPORTED) fail_msg("status %d: %s", st, err.message);
    assert_string_equal(err.message,
                        "run 'big': the partial backend cannot run these ops in f32: pool2d "
                        "pool2d_bwd sgd_update (op_fallback = warn or allow in its [backend] "
                        "section runs them on the cpu backend)");
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

/* The ops a backend lacks run on the reference backend: training matches a
 * reference run exactly (SGD's in-place velocity included) and the report
 * names every op that fell back. */
static void test_op_fallback_matches_reference(void **state) {
    (void)state;
    nnopt_experiment e;
    nnopt_error err = {0};
    nnopt_status st = load("allow.ini",
                           "[backend part]\nplugin = partial\nop_fallback = allow\n"
                           "[run ref]\nmodel = big\nmomentum = 0.9\nepochs = 2\n"
                           "[run part]\nmodel = big\nmomentum = 0.9\nepochs = 2\nbackend = part\n",
                           &e, &err);
    if (st != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_data data;
    assert_int_equal(nnopt_data_load(e.data, &data, &err), NNOPT_OK);
    nnopt_run_result results[2];
    if (nnopt_pipeline_run(&e, &data, results, &err) != NNOPT_OK) fail_msg("%s", err.message);
    assert_string_equal(results[1].backend, "partial");
    for (int ep = 0; ep < 2; ep++) {
        assert_true(results[1].epochs[ep].train_loss == results[0].epochs[ep].train_loss);
        assert_true(results[1].epochs[ep].test_accuracy == results[0].epochs[ep].test_accuracy);
    }
    assert_int_equal(results[0].n_columns, 0);
    assert_int_equal(results[1].n_columns, 1);
    assert_string_equal(results[1].column_names[0], "ops_on_cpu");
    /* 2 epochs x 4 batches of 50: 2 pools forward and backward per batch, 1
     * update per parameter (8) per batch; evaluation: 2 pools per test batch. */
    const char *ops = results[1].column_values[0];
    if (!strstr(ops, "pool2d x ") || !strstr(ops, "pool2d_bwd x 16") ||
        !strstr(ops, "sgd_update x 64"))
        fail_msg("ops_on_cpu: %s", ops);
    for (int i = 0; i < 2; i++) nnopt_run_result_free(&results[i]);
    nnopt_data_free(&data);
    nnopt_experiment_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_sweep_and_order),
        cmocka_unit_test(test_runs_compare_and_fallback),
        cmocka_unit_test(test_checkpoint_save_then_load),
        cmocka_unit_test(test_backend_without_fallback_fails),
        cmocka_unit_test(test_op_fallback_denied_by_default),
        cmocka_unit_test(test_op_fallback_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
