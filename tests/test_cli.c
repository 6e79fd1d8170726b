/* The nnopt command as a user meets it: bad input gives one clear error line
 * and a non-zero exit, and never leaves half-written results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "idx_fixture.h"

static char dir[256];
static char out_text[65536], err_text[65536];

static void slurp(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Runs `nnopt ARGS` in the fixture folder; returns its exit status. */
static int nnopt(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >stdout.txt 2>stderr.txt", dir, NNOPT_CLI, args);
    int status = system(cmd);
    char path[512];
    snprintf(path, sizeof path, "%s/stdout.txt", dir);
    slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    slurp(path, err_text, sizeof err_text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int exists(const char *name) {
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static int count_lines_with(const char *text, const char *needle) {
    int count = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) count++;
    return count;
}

static const char *good_ini =
    "[data]\ndataset = idx\ndir = .\ntrain_images = train-images-idx3-ubyte\n"
    "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
    "test_labels = t10k-labels-idx1-ubyte\n[model tiny]\nplugin = lenet5\nchannels = 2,4\n"
    "dense = 16\nactivation = relu\ndtype = f32\n[training]\nepochs = 1\nbatch = 50\nlr = 0.05\n";

static int setup(void **state) {
    (void)state;
    if (fixture_tmpdir(dir, sizeof dir, "cli") != 0) return -1;
    return idx_fixture_write(dir, 300, 100, 5);
}

static int teardown(void **state) {
    (void)state;
    fixture_rmdir(dir);
    return 0;
}

static void expect_error(const char *args, const char *fragment) {
    int rc = nnopt(args);
    if (rc == 0) fail_msg("nnopt %s succeeded; stderr: %s", args, err_text);
    if (!strstr(err_text, fragment)) fail_msg("stderr of 'nnopt %s' lacks '%s':\n%s", args, fragment, err_text);
    assert_int_equal(count_lines_with(err_text, "error:"), 1);
}

static void test_run_writes_results(void **state) {
    (void)state;
    write_text("good.ini", good_ini);
    assert_int_equal(nnopt("check good.ini"), 0);
    assert_non_null(strstr(out_text, "model 'tiny' (lenet5):"));
    assert_false(exists("runs/good"));
    assert_int_equal(nnopt("run good.ini"), 0);
    assert_non_null(strstr(out_text, "| tiny (lenet5) | cpu | f32 |"));
    const char *files[] = {"runs/good/report.md", "runs/good/results.json", "runs/good/results.csv",
                           "runs/good/config.ini"};
    for (int i = 0; i < 4; i++)
        if (!exists(files[i])) fail_msg("%s missing", files[i]);
    char text[8192], path[512];
    snprintf(path, sizeof path, "%s/runs/good/results.json", dir);
    slurp(path, text, sizeof text);
    assert_non_null(strstr(text, "\"model\": \"tiny\""));
    assert_non_null(strstr(text, "\"parameters\": "));
    assert_non_null(strstr(text, "\"test_accuracy\": "));
    snprintf(path, sizeof path, "%s/runs/good/config.ini", dir);
    slurp(path, text, sizeof text);
    /* The resolved config has defaults filled and runs again as it is. */
    assert_non_null(strstr(text, "optimizer = sgd"));
    assert_int_equal(nnopt("check runs/good/config.ini"), 0);
}

static void test_bad_inputs(void **state) {
    (void)state;
    write_text("malformed.ini", "[training]\nepochs 3\n");
    expect_error("run malformed.ini", "malformed.ini:2: malformed line");
    write_text("unknown.ini", "[model]\nplugin = lenet5\n[training]\nepochs = 1\nbatchsize = 3\n");
    expect_error("run unknown.ini", "unknown.ini:5: unknown key 'batchsize' in [training]");
    write_text("missing.ini", "[model]\nplugin = lenet6\n");
    expect_error("run missing.ini", "missing.ini:2: model plugin 'lenet6' not found");
    expect_error("run nosuchfile.ini", "nosuchfile.ini: cannot open");
    expect_error("run good.ini --set training.epochs=many", "--set: bad value 'many' for epochs");
}

static void test_truncated_dataset(void **state) {
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/cut' && cd '%s' && cp t10k-* train-labels-idx1-ubyte cut/ && "
             "head -c 100000 train-images-idx3-ubyte > cut/train-images-idx3-ubyte", dir, dir);
    assert_int_equal(system(cmd), 0);
    expect_error("run good.ini --set data.dir=cut --set experiment.name=cut",
                 "cut/train-images-idx3-ubyte: truncated");
    assert_false(exists("runs/cut"));
}

static void test_failed_run_keeps_earlier_results(void **state) {
    (void)state;
    write_text("good.ini", good_ini);
    assert_int_equal(nnopt("run good.ini --set experiment.name=keep"), 0);
    char before[8192], after[8192], path[512];
    snprintf(path, sizeof path, "%s/runs/keep/results.json", dir);
    slurp(path, before, sizeof before);
    expect_error("run good.ini --set experiment.name=keep --set data.std=1e-6 --set training.lr=1e6 --set \"model tiny.activation=identity\"",
                 "training diverged");
    slurp(path, after, sizeof after);
    assert_string_equal(before, after);
    snprintf(path, sizeof path, "ls '%s/runs/keep' | grep -c tmp", dir);
    assert_int_not_equal(system(path), 0); /* grep finds no temporary file */
}

static void test_plugins_listing(void **state) {
    (void)state;
    assert_int_equal(nnopt("plugins"), 0);
    assert_non_null(strstr(out_text, "backend   cpu"));
    assert_non_null(strstr(out_text, "model     lenet5"));
    assert_non_null(strstr(out_text, "channels"));
    assert_int_equal(nnopt("plugins lenet5"), 0);
    assert_non_null(strstr(out_text, "file: "));
    assert_non_null(strstr(out_text, "activation"));
    assert_int_equal(nnopt("plugins cpu"), 0);
    assert_non_null(strstr(out_text, "on this machine:"));
    assert_int_equal(nnopt("plugins nosuch"), 1);
    assert_non_null(strstr(err_text, "no plugin named 'nosuch'"));
}

static void test_example_plugin_runs(void **state) {
    (void)state;
    /* The README's plugin, found through NNOPT_PLUGIN_PATH, trains like any model. */
    char args[1024];
    snprintf(args, sizeof args, "plugins mlp --path '%s'", NNOPT_EXAMPLE_PLUGIN_DIR);
    assert_int_equal(nnopt(args), 0);
    assert_non_null(strstr(out_text, "hidden"));
    write_text("mlp.ini", "[data]\ndataset = idx\ndir = .\ntrain_images = train-images-idx3-ubyte\n"
                          "train_labels = train-labels-idx1-ubyte\ntest_images = t10k-images-idx3-ubyte\n"
                          "test_labels = t10k-labels-idx1-ubyte\n[model mlp]\nplugin = mlp\nhidden = 32\n"
                          "[training]\nepochs = 3\nbatch = 20\nlr = 0.02\n");
    snprintf(args, sizeof args, "NNOPT_PLUGIN_PATH='%s' '%s' run mlp.ini", NNOPT_EXAMPLE_PLUGIN_DIR, NNOPT_CLI);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && %s > stdout.txt 2> stderr.txt", dir, args);
    assert_int_equal(system(cmd), 0);
    assert_true(exists("runs/mlp/report.md"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_writes_results),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_truncated_dataset),
        cmocka_unit_test(test_failed_run_keeps_earlier_results),
        cmocka_unit_test(test_plugins_listing),
        cmocka_unit_test(test_example_plugin_runs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
