/* Plugin loading: every failure says which file and what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plugin_loader.h"

static nnopt_plugin_search broken;

static int setup(void **state) {
    (void)state;
    nnopt_plugin_search_init(&broken, NNOPT_BROKEN_PLUGIN_DIR);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    nnopt_plugin_search_free(&broken);
    return 0;
}

static void expect_failure(nnopt_plugin_kind kind, const char *name, nnopt_status status,
                           const char *fragment) {
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load(&broken, kind, name, &p, &err), status);
    if (!strstr(err.message, fragment)) fail_msg("'%s' lacks '%s'", err.message, fragment);
    /* Every message names the file (or, when missing, where it looked). */
    assert_non_null(strstr(err.message, NNOPT_BROKEN_PLUGIN_DIR));
}

static void test_missing_symbol(void **state) {
    (void)state;
    expect_failure(NNOPT_PLUGIN_BACKEND, "nosymbol", NNOPT_STATUS_PLUGIN,
                   "nnopt_backend_nosymbol.so: not an nnopt plugin (no 'nnopt_plugin_descriptor' symbol)");
}

static void test_abi_major_mismatch(void **state) {
    (void)state;
    char expected[128];
    snprintf(expected, sizeof expected, "ABI mismatch: plugin built for nnopt ABI %d.%d, this core supports %d.0 to %d.%d",
             NNOPT_ABI_MAJOR + 1, NNOPT_ABI_MINOR, NNOPT_ABI_MAJOR, NNOPT_ABI_MAJOR, NNOPT_ABI_MINOR);
    expect_failure(NNOPT_PLUGIN_BACKEND, "abimajor", NNOPT_STATUS_ABI_MISMATCH, expected);
}

static void test_abi_newer_minor(void **state) {
    (void)state;
    char expected[128];
    snprintf(expected, sizeof expected, "plugin built for nnopt ABI %d.%d", NNOPT_ABI_MAJOR,
             NNOPT_ABI_MINOR + 1);
    expect_failure(NNOPT_PLUGIN_BACKEND, "abiminor", NNOPT_STATUS_ABI_MISMATCH, expected);
}

static void test_wrong_kind(void **state) {
    (void)state;
    expect_failure(NNOPT_PLUGIN_BACKEND, "wrongkind", NNOPT_STATUS_PLUGIN,
                   "wrong kind: 'wrongkind' is a model plugin, a backend was expected");
}

static void test_init_failure(void **state) {
    (void)state;
    expect_failure(NNOPT_PLUGIN_MODEL, "initfails", NNOPT_STATUS_INIT_FAILED,
                   "nnopt_model_initfails.so: init failed: cannot open /dev/imaginary");
}

static void test_small_vtable(void **state) {
    (void)state;
    expect_failure(NNOPT_PLUGIN_BACKEND, "smallvtable", NNOPT_STATUS_ABI_MISMATCH,
                   "backend function table is 8 bytes");
}

static void test_not_found_lists_folders(void **state) {
    (void)state;
    expect_failure(NNOPT_PLUGIN_MODEL, "resnet9000", NNOPT_STATUS_PLUGIN,
                   "model plugin 'resnet9000' not found (looked for nnopt_model_resnet9000.so in: ");
}

static void test_not_a_shared_object(void **state) {
    (void)state;
    char path[] = "/tmp/nnopt_backend_textXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("not an ELF file\n", f);
    fclose(f);
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load_file(path, &p, &err), NNOPT_STATUS_PLUGIN);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "cannot load"));
    remove(path);
}

static void test_real_plugins_load(void **state) {
    (void)state;
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *cpu = NULL, *lenet = NULL, *again = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, "cpu", &cpu, &err), NNOPT_OK);
    assert_string_equal(cpu->desc->name, "cpu");
    /* Plugins' OpenMP threads spin only briefly before they sleep, unless
     * the user chose a policy (ctest's environment sets neither variable). */
    if (getenv("OMP_WAIT_POLICY"))
        print_message("OMP_WAIT_POLICY=%s was set by the user and kept\n", getenv("OMP_WAIT_POLICY"));
    else
        assert_non_null(getenv("GOMP_SPINCOUNT"));
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, "lenet5", &lenet, &err), NNOPT_OK);
    assert_true(lenet->desc->n_params >= 5);
    /* Loading twice hands back the same plugin. */
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, "lenet5", &again, &err), NNOPT_OK);
    assert_ptr_equal(lenet, again);
    /* A model name asked for as a backend is not found as one. */
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, "lenet5", &again, &err),
                     NNOPT_STATUS_PLUGIN);
    nnopt_plugin_search_free(&s);
}

static void count_plugin(const nnopt_plugin *p, void *user) {
    /* The search also reaches the build's real plugins; count the broken folder's. */
    if (strncmp(p->path, NNOPT_BROKEN_PLUGIN_DIR, strlen(NNOPT_BROKEN_PLUGIN_DIR)) == 0)
        ++*(int *)user;
}

static void count_error(const nnopt_error *e, void *user) {
    (void)e;
    ++((int *)user)[1];
}

static void test_scan_reports_broken_files(void **state) {
    (void)state;
    int counts[2] = {0, 0};
    int found = nnopt_plugin_scan(&broken, count_plugin, count_error, counts);
    /* Five broken files are errors; the others load (their faults show later). */
    assert_true(found >= 1);
    assert_int_equal(counts[0], 3); /* wrongkind, nodevice and partial load as files */
    assert_int_equal(counts[1], 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_symbol),      cmocka_unit_test(test_abi_major_mismatch),
        cmocka_unit_test(test_abi_newer_minor),     cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_init_failure),        cmocka_unit_test(test_small_vtable),
        cmocka_unit_test(test_not_found_lists_folders), cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_real_plugins_load),   cmocka_unit_test(test_scan_reports_broken_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
