/* INI reading and schema validation: every error names file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "experiment.h"
#include "ini_file.h"

static char tmpdir[256];

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nnopt_test_config_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

static const nnopt_param_spec schema[] = {
    {"epochs", NNOPT_PARAM_INT, "10", "epochs", NULL, 0, 100},
    {"lr", NNOPT_PARAM_FLOAT, "0.1", "learning rate", NULL, 0, 0},
    {"optimizer", NNOPT_PARAM_ENUM, "sgd", "optimizer", "sgd|adam", 0, 0},
    {"widths", NNOPT_PARAM_INT_LIST, "6,16", "widths", NULL, 1, 4096},
    {"mean", NNOPT_PARAM_FLOAT_LIST, "0", "mean", NULL, 0, 0},
    {"flag", NNOPT_PARAM_BOOL, "false", "flag", NULL, 0, 0},
    {"path", NNOPT_PARAM_STRING, NULL, "required path", NULL, 0, 0},
};

static void test_schema_values(void **state) {
    (void)state;
    nnopt_config *cfg = nnopt_config_create(schema, 7, "[training]");
    nnopt_error err = {0};
    assert_int_equal(nnopt_config_set(cfg, "epochs", "5", "a.ini:2", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "widths", "3, 8", "a.ini:3", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "mean", "0.5,0.25,0.125", "a.ini:4", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_set(cfg, "flag", "yes", "a.ini:5", &err), NNOPT_OK);
    /* Required key missing. */
    assert_int_equal(nnopt_config_finish(cfg, "a.ini:1", &err), NNOPT_STATUS_CONFIG);
    assert_non_null(strstr(err.message, "a.ini:1"));
    assert_non_null(strstr(err.message, "'path'"));
    nnopt_error_clear(&err);
    assert_int_equal(nnopt_config_set(cfg, "path", "/x", "a.ini:6", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_finish(cfg, "a.ini:1", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_get_int(cfg, "epochs"), 5);
    assert_true(nnopt_config_get_float(cfg, "lr") == 0.1);
    assert_string_equal(nnopt_config_get(cfg, "optimizer"), "sgd");
    assert_true(nnopt_config_get_bool(cfg, "flag"));
    int64_t w[4];
    assert_int_equal(nnopt_config_get_int_list(cfg, "widths", w, 4), 2);
    assert_int_equal(w[0], 3);
    assert_int_equal(w[1], 8);
    double m[4];
    assert_int_equal(nnopt_config_get_float_list(cfg, "mean", m, 4), 3);
    assert_true(m[2] == 0.125);
    nnopt_config_free(cfg);
}

static void expect_bad(const char *key, const char *value, const char *fragment) {
    nnopt_config *cfg = nnopt_config_create(schema, 7, "[training]");
    nnopt_error err = {0};
    assert_int_equal(nnopt_config_set(cfg, key, value, "b.ini:7", &err), NNOPT_STATUS_CONFIG);
    assert_non_null(strstr(err.message, "b.ini:7"));
    if (!strstr(err.message, fragment)) fail_msg("'%s' lacks '%s'", err.message, fragment);
    nnopt_config_free(cfg);
}

static void test_schema_errors(void **state) {
    (void)state;
    expect_bad("epoch", "5", "unknown key 'epoch'");
    expect_bad("epoch", "5", "known: epochs, lr");
    expect_bad("epochs", "five", "expected an integer");
    expect_bad("epochs", "1000", "must be in [0, 100]");
    expect_bad("lr", "0.1x", "expected a number");
    expect_bad("lr", "nan", "expected a number");
    expect_bad("optimizer", "rmsprop", "expected one of sgd|adam");
    expect_bad("widths", "3,,8", "comma-separated integers");
    expect_bad("widths", "0,8", "in [1, 4096]");
    expect_bad("flag", "maybe", "true or false");
}

static void test_ini_reading(void **state) {
    (void)state;
    const char *path = write_file("ok.ini", "; comment\n[training]\n  epochs = 3\n"
                                            "\tlr = 0.5 ; inline comment\n\n[model student]\n"
                                            "plugin = lenet5\n");
    nnopt_ini ini;
    nnopt_error err = {0};
    assert_int_equal(nnopt_ini_read(path, &ini, &err), NNOPT_OK);
    assert_int_equal(ini.n_entries, 3);
    /* Indented lines are keys of their own, not continuations. */
    assert_string_equal(ini.entries[0].key, "epochs");
    assert_string_equal(ini.entries[0].value, "3");
    assert_int_equal(ini.entries[0].line, 3);
    assert_string_equal(ini.entries[1].value, "0.5");
    assert_string_equal(ini.entries[2].section, "model student");
    assert_int_equal(ini.n_sections, 2);
    assert_int_equal(ini.sections[1].line, 6);
    assert_int_equal(nnopt_ini_override(&ini, "model student.dense=50", &err), NNOPT_OK);
    assert_int_equal(nnopt_ini_override(&ini, "training.epochs=7", &err), NNOPT_OK);
    assert_int_equal(ini.n_entries, 4);
    assert_string_equal(ini.entries[3].section, "model student");
    assert_string_equal(ini.entries[3].key, "dense");
    assert_string_equal(ini.entries[0].value, "7");
    assert_int_equal(ini.entries[0].line, 0);
    assert_int_equal(nnopt_ini_override(&ini, "nodot=1", &err), NNOPT_STATUS_CONFIG);
    assert_non_null(strstr(err.message, "section.key=value"));
    nnopt_ini_free(&ini);
}

static void expect_ini_error(const char *name, const char *text, const char *fragment) {
    const char *path = write_file(name, text);
    nnopt_ini ini;
    nnopt_error err = {0};
    assert_int_not_equal(nnopt_ini_read(path, &ini, &err), NNOPT_OK);
    if (!strstr(err.message, fragment)) fail_msg("'%s' lacks '%s'", err.message, fragment);
    nnopt_ini_free(&ini);
}

static void test_ini_errors(void **state) {
    (void)state;
    char long_line[400], long_section[100];
    snprintf(long_line, sizeof long_line, "[data]\ndir = %0300d\n", 0);
    snprintf(long_section, sizeof long_section, "[model %060d]\nplugin = lenet5\n", 0);
    expect_ini_error("malformed.ini", "[training]\nepochs 10\n", "malformed.ini:2: malformed line 'epochs 10'");
    expect_ini_error("long.ini", long_line, "long.ini:2: line is too long");
    expect_ini_error("section.ini", long_section, "section.ini:1: section name is too long");
    expect_ini_error("dup.ini", "[training]\nlr = 1\nlr = 2\n", "dup.ini:3: duplicate key 'lr'");
    expect_ini_error("nosection.ini", "lr = 1\n", "nosection.ini:1: 'lr' appears before any [section]");
    expect_ini_error("bracket.ini", "[training\nlr = 1\n", "bracket.ini:1: section header without ']'");
    nnopt_ini ini;
    nnopt_error err = {0};
    assert_int_equal(nnopt_ini_read("/nonexistent/x.ini", &ini, &err), NNOPT_STATUS_IO);
    assert_non_null(strstr(err.message, "/nonexistent/x.ini: cannot open"));
    nnopt_ini_free(&ini);
}

static void expect_experiment_error(const char *name, const char *text, const char *fragment) {
    const char *path = write_file(name, text);
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_not_equal(nnopt_experiment_load(path, NULL, 0, &e, &err), NNOPT_OK);
    if (!strstr(err.message, fragment)) fail_msg("'%s' lacks '%s'", err.message, fragment);
    nnopt_experiment_free(&e);
}

static void test_experiment_errors(void **state) {
    (void)state;
    expect_experiment_error("unknown_section.ini", "[trainig]\nlr = 1\n",
                            "unknown_section.ini:1: unknown section [trainig]");
    expect_experiment_error("unknown_key.ini", "[model]\nplugin = lenet5\n[training]\nepochs = 1\nlearning_rate = 1\n",
                            "unknown_key.ini:5: unknown key 'learning_rate' in [training]");
    expect_experiment_error("bad_model_key.ini", "[model]\nplugin = lenet5\nchanels = 3,8\n",
                            "bad_model_key.ini:3: unknown key 'chanels' in [model] (model plugin 'lenet5')");
    expect_experiment_error("bad_value.ini", "[model]\nplugin = lenet5\nactivation = swish\n",
                            "bad_value.ini:3: bad value 'swish' for activation");
    expect_experiment_error("no_model.ini", "[training]\nepochs = 1\n", "no [model] section");
    expect_experiment_error("no_plugin.ini", "[model a]\nactivation = relu\n",
                            "no_plugin.ini:1: [model a] needs 'plugin = NAME'");
    /* Every missing plugin at once, each with its line. */
    const char *path = write_file("missing.ini", "[backend]\nplugin = nosuchbackend\n[model a]\n"
                                                 "plugin = nosuchmodel\n[model b]\nplugin = lenet5\n");
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_equal(nnopt_experiment_load(path, NULL, 0, &e, &err), NNOPT_STATUS_PLUGIN);
    assert_non_null(strstr(err.message, "missing.ini:2: backend plugin 'nosuchbackend' not found"));
    assert_non_null(strstr(err.message, "missing.ini:4: model plugin 'nosuchmodel' not found"));
    assert_non_null(strstr(err.message, "looked for nnopt_model_nosuchmodel.so in:"));
    nnopt_experiment_free(&e);
}

static void test_experiment_ok(void **state) {
    (void)state;
    const char *path = write_file("good.ini", "[experiment]\nname = demo\n[model teacher]\n"
                                              "plugin = lenet5\n[model student]\nplugin = lenet5\n"
                                              "channels = 3,8\n[training]\nepochs = 2\n");
    const char *overrides[] = {"training.epochs=4", "model student.dense=50"};
    nnopt_experiment e;
    nnopt_error err = {0};
    assert_int_equal(nnopt_experiment_load(path, overrides, 2, &e, &err), NNOPT_OK);
    assert_string_equal(e.name, "demo");
    assert_string_equal(e.output_dir, "runs/demo");
    assert_int_equal(e.n_models, 2);
    assert_string_equal(e.models[1].name, "student");
    assert_string_equal(e.backends[0].plugin->desc->name, "cpu");
    assert_int_equal(e.n_runs, 2); /* one implicit run per model */
    assert_string_equal(e.runs[1].name, "student");
    assert_int_equal(nnopt_config_get_int(e.runs[1].training, "epochs"), 4);
    assert_int_equal(nnopt_config_get_int(e.training, "epochs"), 4);
    assert_string_equal(nnopt_config_get(e.models[1].cfg, "dense"), "50");
    assert_string_equal(nnopt_config_get(e.models[0].cfg, "channels"), "6,16");
    nnopt_experiment_free(&e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_values),  cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_ini_reading),    cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_experiment_errors), cmocka_unit_test(test_experiment_ok),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
