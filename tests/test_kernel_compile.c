/* Compiled kernel mode: programs compiled for a graph's exact shapes must
 * compute what the reference backend computes op by op (forward at
 * inference, and a training step's gradients), on every op the generator
 * specialises; the on-disk cache must miss, hit and rebuild a corrupted
 * entry; a missing compiler must fall back to the precompiled kernels with
 * the same results. Each test uses its own temporary cache folder. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "executor.h"
#include "graph.h"
#include "network.h"
#include "pipeline.h"
#include "plugin_loader.h"

enum { BATCH = 19 }; /* several tiles, the last partial; not a multiple of any register block */

/* GRAPH_RESIDUAL_RELU: the residual block with relu after its add, as
 * ResNet has it (inference fuses it: conv2d_relu, conv2d_add_relu);
 * GRAPH_PROJECTION_RELU: the same with a 1x1 projection on the shortcut,
 * computed after the branch (the add and its relu: add_relu). */
typedef enum { GRAPH_LENET, GRAPH_RESIDUAL, GRAPH_RESIDUAL_RELU, GRAPH_PROJECTION_RELU } graph_kind;

static nnopt_node param(nnopt_graph *g, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                        int64_t d) {
    int64_t shape[4] = {a, b, c, d};
    return nnopt_graph_param(g, name, ndim, shape, NNOPT_INIT_GLOROT_UNIFORM);
}

/* conv (pad) + bias + gelu + avg pool, conv (no bias) + relu + max pool
 * (padded), flatten, dense + tanh, dense + sigmoid (unfused: a second
 * reader), dense. */
static nnopt_graph *lenet_graph(nnopt_dtype dt) {
    nnopt_graph *g = nnopt_graph_create(1, 12, 12, 10);
    nnopt_node x = nnopt_graph_input(g, dt);
    nnopt_conv2d_params same = {1, 1, 2, 2, 1}, valid = {1, 1, 0, 0, 1};
    nnopt_pool2d_params avg = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    nnopt_pool2d_params max = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    x = nnopt_graph_conv2d(g, x, param(g, "c1.w", 4, 6, 1, 5, 5), param(g, "c1.b", 1, 6, 0, 0, 0),
                           &same);
    x = nnopt_graph_pool2d(g, nnopt_graph_act(g, x, NNOPT_ACT_GELU_TANH), &avg);
    x = nnopt_graph_conv2d(g, x, param(g, "c2.w", 4, 17, 6, 3, 3), -1, &valid);
    x = nnopt_graph_pool2d(g, nnopt_graph_act(g, x, NNOPT_ACT_RELU), &max);
    x = nnopt_graph_flatten(g, x);
    int64_t shape[4];
    nnopt_graph_shape(g, x, shape);
    x = nnopt_graph_dense(g, x, param(g, "f1.w", 2, 23, shape[1], 0, 0),
                          param(g, "f1.b", 1, 23, 0, 0, 0));
    x = nnopt_graph_act(g, x, NNOPT_ACT_TANH);
    nnopt_node h = nnopt_graph_dense(g, x, param(g, "f2.w", 2, 9, 23, 0, 0), -1);
    nnopt_node s = nnopt_graph_act(g, h, NNOPT_ACT_SIGMOID);
    x = nnopt_graph_add(g, h, s);
    x = nnopt_graph_dense(g, x, param(g, "f3.w", 2, 10, 9, 0, 0), param(g, "f3.b", 1, 10, 0, 0, 0));
    nnopt_error err = {0};
    assert_int_equal(nnopt_graph_finish(g, x, &err), NNOPT_OK);
    return g;
}

/* A residual block as ResNet builds it (16 channels: whole f32 and f64
 * vectors, so its convolutions take the channel-vectorised kernels), batch
 * norm on the input (alone),
 * conv + bn + relu, conv + bias + bn, add, relu6, dropout, global average
 * pooling, dense. */
static nnopt_graph *residual_graph(nnopt_dtype dt, nnopt_act_kind after_add, int projection) {
    nnopt_graph *g = nnopt_graph_create(3, 9, 9, 10);
    nnopt_node x = nnopt_graph_input(g, dt);
    nnopt_conv2d_params same = {1, 1, 1, 1, 1};
    x = nnopt_graph_batchnorm(g, "bn0", x, 1e-5, 0.1);
    nnopt_node skip = nnopt_graph_conv2d(g, x, param(g, "c0.w", 4, 16, 3, 1, 1), -1,
                                         &(nnopt_conv2d_params){1, 1, 0, 0, 1});
    nnopt_node y = nnopt_graph_conv2d(g, skip, param(g, "c1.w", 4, 16, 16, 3, 3), -1, &same);
    y = nnopt_graph_act(g, nnopt_graph_batchnorm(g, "bn1", y, 1e-5, 0.1), NNOPT_ACT_RELU);
    y = nnopt_graph_conv2d(g, y, param(g, "c2.w", 4, 16, 16, 3, 3),
                           param(g, "c2.b", 1, 16, 0, 0, 0), &same);
    y = nnopt_graph_batchnorm(g, "bn2", y, 1e-5, 0.1);
    if (projection)
        skip = nnopt_graph_conv2d(g, skip, param(g, "p.w", 4, 16, 16, 1, 1),
                                  param(g, "p.b", 1, 16, 0, 0, 0),
                                  &(nnopt_conv2d_params){1, 1, 0, 0, 1});
    y = nnopt_graph_act(g, nnopt_graph_add(g, y, skip), after_add);
    y = nnopt_graph_global_avg_pool(g, nnopt_graph_dropout(g, y, 0.25));
    y = nnopt_graph_dense(g, y, param(g, "fc.w", 2, 10, 16, 0, 0),
                          param(g, "fc.b", 1, 10, 0, 0, 0));
    nnopt_error err = {0};
    assert_int_equal(nnopt_graph_finish(g, y, &err), NNOPT_OK);
    return g;
}

static nnopt_backend *open_backend(const char *name) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *plugin = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, name, &plugin, &err), NNOPT_OK);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = nnopt_config_create(plugin->desc->params, (int)plugin->desc->n_params, "b");
    assert_int_equal(nnopt_config_finish(cfg, "t", &err), NNOPT_OK);
    nnopt_backend *b = NULL;
    assert_int_equal(nnopt_backend_open(plugin, cfg, &b, &err), NNOPT_OK);
    nnopt_config_free(cfg);
    return b;
}

/* Deterministic values in [lo, hi). */
static void fill(double *v, int64_t n, unsigned seed, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = lo + (hi - lo) * (double)(seed >> 8) / (double)(1u << 24);
    }
}

static void write_doubles(nnopt_network *net, nnopt_tensor *t, const double *v) {
    int64_t n = nnopt_tensor_numel(t);
    nnopt_error err = {0};
    if (t->dtype == NNOPT_F64) {
        assert_int_equal(nnopt_backend_write(net->backend, t, v, (size_t)n * 8, &err), NNOPT_OK);
        return;
    }
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    assert_int_equal(nnopt_backend_write(net->backend, t, f, (size_t)n * 4, &err), NNOPT_OK);
    free(f);
}

static void read_doubles(nnopt_network *net, const nnopt_tensor *t, double *v) {
    int64_t n = nnopt_tensor_numel(t);
    nnopt_error err = {0};
    if (t->dtype == NNOPT_F64) {
        assert_int_equal(nnopt_backend_read(net->backend, t, v, (size_t)n * 8, &err), NNOPT_OK);
        return;
    }
    float *f = malloc((size_t)n * sizeof *f);
    assert_int_equal(nnopt_backend_read(net->backend, t, f, (size_t)n * 4, &err), NNOPT_OK);
    for (int64_t i = 0; i < n; i++) v[i] = f[i];
    free(f);
}

/* A network on `backend`; its parameters and running statistics get the
 * same non-trivial values on every backend (variances positive). */
static nnopt_network *make_network(graph_kind kind, nnopt_dtype dt, const char *backend,
                                   const nnopt_program_options *options) {
    nnopt_graph *g = kind == GRAPH_LENET ? lenet_graph(dt)
                     : kind == GRAPH_RESIDUAL
                         ? residual_graph(dt, NNOPT_ACT_RELU6, 0)
                         : residual_graph(dt, NNOPT_ACT_RELU, kind == GRAPH_PROJECTION_RELU);
    nnopt_network *net = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_network_create(g, open_backend(backend), 3, &net, &err), NNOPT_OK);
    nnopt_kernels_set(&net->kernels, options);
    for (int i = 0; i < g->n_nodes; i++) {
        if (!net->param[i]) continue;
        int64_t n = nnopt_tensor_numel(net->param[i]);
        double *v = malloc((size_t)n * sizeof *v);
        int var = strstr(g->nodes[i].name, "running_var") != NULL;
        fill(v, n, 101u + (unsigned)i, var ? 0.5 : -0.6, var ? 1.5 : 0.6);
        write_doubles(net, net->param[i], v);
        free(v);
    }
    nnopt_optimizer opt = {.kind = NNOPT_OPTIMIZER_SGD};
    assert_int_equal(nnopt_network_prepare_training(net, &opt, &err), NNOPT_OK);
    return net;
}

static void close_network(nnopt_network *net) {
    nnopt_backend *b = net->backend;
    nnopt_network_free(net);
    nnopt_backend_close(b);
}

/* The input batch in the graph's dtype. */
static void *input_batch(const nnopt_graph *g) {
    int64_t n = BATCH * (int64_t)g->in_c * g->in_h * g->in_w;
    double *v = malloc((size_t)n * sizeof *v);
    fill(v, n, 77u, -1, 1);
    if (g->dtype == NNOPT_F64) return v;
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    free(v);
    return f;
}

static double tolerance(nnopt_dtype dt) {
    return dt == NNOPT_F64 ? 1e-10 : 2e-4;
}

static void assert_close(const double *want, const double *got, int64_t n, double tol,
                         const char *what) {
    double scale = 1e-3;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(want[i] - got[i]) <= tol * scale)) {
            print_error("%s[%lld]: reference %.9g, compiled %.9g (tolerance %g)\n", what,
                        (long long)i, want[i], got[i], tol * scale);
            fail();
        }
}

/* Logits of one batch through an executor. */
static void forward_logits(nnopt_exec *ex, const void *x, double *logits) {
    nnopt_error err = {0};
    assert_int_equal(nnopt_exec_forward(ex, x, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_read_logits(ex, logits, &err), NNOPT_OK);
}

/* Logits of one inference batch. */
static void infer(nnopt_network *net, const void *x, double *logits) {
    nnopt_exec *ex = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_exec_create(net, BATCH, 0, &ex, &err), NNOPT_OK);
    forward_logits(ex, x, logits);
    nnopt_exec_free(ex);
}

/* One training step's loss and every parameter gradient, concatenated. */
static int64_t train_step(nnopt_network *net, const void *x, double *loss, double *grads) {
    nnopt_exec *ex = NULL;
    nnopt_error err = {0};
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH; i++) labels[i] = (i * 7 + 3) % 10;
    assert_int_equal(nnopt_exec_create(net, BATCH, 1, &ex, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_forward(ex, x, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_backward(ex, labels, NULL, loss, &err), NNOPT_OK);
    int64_t used = 0;
    for (int i = 0; i < net->graph->n_nodes; i++) {
        if (!net->grad[i]) continue;
        if (grads) read_doubles(net, net->grad[i], grads + used);
        used += nnopt_tensor_numel(net->grad[i]);
    }
    nnopt_exec_free(ex);
    return used;
}

typedef struct fixture {
    char cache_dir[256];
    nnopt_program_options options;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->cache_dir, sizeof f->cache_dir, "%s/nnopt_kc_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(f->cache_dir)) return -1;
    f->options = (nnopt_program_options){sizeof f->options, NULL, NULL, f->cache_dir};
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->cache_dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Compiled vs the cpu backend's op-by-op reference, inference and training. */
static void check_against_reference(fixture *f, graph_kind kind, nnopt_dtype dt,
                                    const char *backend) {
    nnopt_network *ref = make_network(kind, dt, "cpu", NULL);
    nnopt_network *net = make_network(kind, dt, backend, &f->options);
    void *x = input_batch(net->graph);
    double want[BATCH * 10], got[BATCH * 10];
    infer(ref, x, want);
    infer(net, x, got);
    assert_false(net->kernels.unavailable);
    assert_true(net->kernels.cache_misses + net->kernels.cache_hits >= 1);
    assert_close(want, got, BATCH * 10, tolerance(dt), "logits");

    int64_t n = train_step(ref, x, &(double){0}, NULL);
    double *gw = malloc((size_t)n * sizeof *gw), *gg = malloc((size_t)n * sizeof *gg);
    double loss_want = 0, loss_got = 0;
    train_step(ref, x, &loss_want, gw);
    train_step(net, x, &loss_got, gg);
    assert_true(net->kernels.n_programs >= 2); /* inference and training programs */
    assert_close(&loss_want, &loss_got, 1, tolerance(dt), "loss");
    assert_close(gw, gg, n, tolerance(dt) * 10, "gradients");
    free(gw);
    free(gg);
    free(x);
    close_network(ref);
    close_network(net);
}

static void lenet_f32_cpu(void **state) {
    check_against_reference(*state, GRAPH_LENET, NNOPT_F32, "cpu");
}
static void lenet_f64_cpu(void **state) {
    check_against_reference(*state, GRAPH_LENET, NNOPT_F64, "cpu");
}
static void residual_f32_cpu(void **state) {
    check_against_reference(*state, GRAPH_RESIDUAL, NNOPT_F32, "cpu");
}
static void residual_f64_cpu(void **state) {
    check_against_reference(*state, GRAPH_RESIDUAL, NNOPT_F64, "cpu");
}
static void lenet_f32_blis(void **state) {
    check_against_reference(*state, GRAPH_LENET, NNOPT_F32, "blis");
}
static void residual_f32_blis(void **state) {
    check_against_reference(*state, GRAPH_RESIDUAL, NNOPT_F32, "blis");
}
/* relu after the add: training fuses batchnorm_add_relu and the relu's
 * backward into the conv's, inference conv2d_add_relu */
static void residual_relu_f32_blis(void **state) {
    check_against_reference(*state, GRAPH_RESIDUAL_RELU, NNOPT_F32, "blis");
    check_against_reference(*state, GRAPH_PROJECTION_RELU, NNOPT_F32, "blis");
}

/* An inference executor (batchnorm folded, relus fused: conv2d_relu,
 * conv2d_add_relu, add_relu) compiled against the cpu backend's uncompiled
 * one: the generator runs the fused kinds it has kernels for, the backend
 * the rest. */
static void check_fused_inference(fixture *f, graph_kind kind, const char *backend) {
    nnopt_network *ref = make_network(kind, NNOPT_F32, "cpu", NULL);
    nnopt_network *net = make_network(kind, NNOPT_F32, backend, &f->options);
    void *x = input_batch(net->graph);
    double want[BATCH * 10], got[BATCH * 10];
    nnopt_exec *ex_ref = NULL, *ex = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_exec_create_inference(ref, BATCH, &ex_ref, &err), NNOPT_OK);
    assert_int_equal(nnopt_exec_create_inference(net, BATCH, &ex, &err), NNOPT_OK);
    assert_non_null(ex->program);
    int fused_relus = 0;
    for (int i = 0; ex->relu_into && i < net->graph->n_nodes; i++)
        fused_relus += ex->relu_into[i] >= 0;
    assert_true(fused_relus >= 1);
    if (kind != GRAPH_LENET) { /* the block's last conv runs its add and relu, or add_relu */
        int in_convs = 0;
        for (int i = 0; ex->residual_of && i < net->graph->n_nodes; i++)
            in_convs += ex->residual_of[i] >= 0;
        assert_int_equal(in_convs, kind == GRAPH_RESIDUAL_RELU);
    }
    forward_logits(ex_ref, x, want);
    forward_logits(ex, x, got);
    assert_close(want, got, BATCH * 10, tolerance(NNOPT_F32), "logits");
    nnopt_exec_free(ex_ref);
    nnopt_exec_free(ex);
    free(x);
    close_network(ref);
    close_network(net);
}

static void fused_inference(void **state) {
    const char *backends[2] = {"cpu", "blis"};
    for (int b = 0; b < 2; b++) {
        check_fused_inference(*state, GRAPH_LENET, backends[b]);
        check_fused_inference(*state, GRAPH_RESIDUAL_RELU, backends[b]);
        check_fused_inference(*state, GRAPH_PROJECTION_RELU, backends[b]);
    }
}

/* New parameter values between two calls of one compiled program (training
 * between evaluations) must be used: packed and folded weights are redone. */
static void weights_changed_between_calls(void **state) {
    fixture *f = *state;
    for (int kind = GRAPH_LENET; kind <= GRAPH_RESIDUAL; kind++) {
        nnopt_network *ref = make_network((graph_kind)kind, NNOPT_F32, "cpu", NULL);
        nnopt_network *net = make_network((graph_kind)kind, NNOPT_F32, "blis", &f->options);
        void *x = input_batch(net->graph);
        double want[BATCH * 10], got[BATCH * 10];
        nnopt_exec *ex = NULL;
        nnopt_error err = {0};
        assert_int_equal(nnopt_exec_create(net, BATCH, 0, &ex, &err), NNOPT_OK);
        assert_non_null(ex->program);
        for (int round = 0; round < 2; round++) {
            if (round == 1) /* every parameter and statistic gets new values */
                for (int i = 0; i < net->graph->n_nodes; i++) {
                    if (!net->param[i]) continue;
                    int64_t n = nnopt_tensor_numel(net->param[i]);
                    double *v = malloc((size_t)n * sizeof *v);
                    int var = strstr(net->graph->nodes[i].name, "running_var") != NULL;
                    fill(v, n, 900u + (unsigned)i, var ? 0.2 : -1, var ? 2 : 1);
                    write_doubles(ref, ref->param[i], v);
                    write_doubles(net, net->param[i], v);
                    free(v);
                }
            infer(ref, x, want);
            forward_logits(ex, x, got);
            assert_close(want, got, BATCH * 10, tolerance(NNOPT_F32), "logits");
        }
        nnopt_exec_free(ex);
        free(x);
        close_network(ref);
        close_network(net);
    }
}

/* The single cached object of a fresh cache folder (path without ".so"). */
static void cached_entry(const fixture *f, char *path, size_t size) {
    DIR *d = opendir(f->cache_dir);
    assert_non_null(d);
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0) {
            snprintf(path, size, "%s/%.*s", f->cache_dir, (int)(len - 3), e->d_name);
            found++;
        }
    }
    closedir(d);
    assert_int_equal(found, 1);
}

static void compile_inference(fixture *f, int *hits, int *misses, double *logits) {
    nnopt_network *net = make_network(GRAPH_LENET, NNOPT_F32, "cpu", &f->options);
    void *x = input_batch(net->graph);
    infer(net, x, logits);
    *hits = net->kernels.cache_hits;
    *misses = net->kernels.cache_misses;
    assert_false(net->kernels.unavailable);
    free(x);
    close_network(net);
}

static void cache_miss_then_hit(void **state) {
    fixture *f = *state;
    int hits, misses;
    double first[BATCH * 10], second[BATCH * 10];
    compile_inference(f, &hits, &misses, first);
    assert_int_equal(misses, 1);
    assert_int_equal(hits, 0);
    compile_inference(f, &hits, &misses, second);
    assert_int_equal(misses, 0);
    assert_int_equal(hits, 1);
    assert_memory_equal(first, second, sizeof first);
}

/* Replaces path by a copy with one byte flipped (or, when truncate is set,
 * by its first half): a new file, as a crash or a bad disk would leave. */
static void damage(const char *path, int truncate) {
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *data = malloc((size_t)size);
    assert_int_equal(fread(data, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    if (!truncate) data[size / 2] ^= 0x5a;
    assert_int_equal(unlink(path), 0);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(data, 1, (size_t)(truncate ? size / 2 : size), out),
                     (size_t)(truncate ? size / 2 : size));
    fclose(out);
    free(data);
}

static void corrupted_entry_rebuilt(int truncate, fixture *f) {
    int hits, misses;
    double want[BATCH * 10], got[BATCH * 10];
    compile_inference(f, &hits, &misses, want);
    char entry[400], so[420];
    cached_entry(f, entry, sizeof entry);
    snprintf(so, sizeof so, "%s.so", entry);
    damage(so, truncate);
    compile_inference(f, &hits, &misses, got);
    assert_int_equal(misses, 1); /* detected and rebuilt, not loaded */
    assert_int_equal(hits, 0);
    assert_memory_equal(want, got, sizeof want);
    compile_inference(f, &hits, &misses, got); /* the rebuilt entry is good */
    assert_int_equal(hits, 1);
    assert_memory_equal(want, got, sizeof want);
}

static void corrupted_entry_flipped_byte(void **state) {
    corrupted_entry_rebuilt(0, *state);
}
static void corrupted_entry_truncated(void **state) {
    corrupted_entry_rebuilt(1, *state);
}

static void missing_compiler_falls_back(void **state) {
    fixture *f = *state;
    f->options.compiler = "/nonexistent/cc";
    nnopt_network *ref = make_network(GRAPH_LENET, NNOPT_F32, "blis", NULL);
    nnopt_network *net = make_network(GRAPH_LENET, NNOPT_F32, "blis", &f->options);
    void *x = input_batch(net->graph);
    double want[BATCH * 10], got[BATCH * 10];
    infer(ref, x, want);
    infer(net, x, got);
    assert_true(net->kernels.unavailable);
    assert_non_null(strstr(net->kernels.unavailable_reason, "/nonexistent/cc"));
    assert_non_null(strstr(net->kernels.unavailable_reason, "not found"));
    assert_int_equal(net->kernels.n_programs, 0);
    char mode[300];
    nnopt_kernels_describe_mode(&net->kernels, mode, sizeof mode);
    assert_non_null(strstr(mode, "precompiled"));
    assert_memory_equal(want, got, sizeof want); /* the same kernels ran */
    free(x);
    close_network(ref);
    close_network(net);
}

/* A backend built against ABI 1.0 ends its table at describe: compiled mode
 * must run it precompiled (and never read the entries it lacks). */
static void abi_1_0_backend_runs_precompiled(void **state) {
    fixture *f = *state;
    nnopt_network *ref = make_network(GRAPH_LENET, NNOPT_F32, "cpu", NULL);
    nnopt_network *net = make_network(GRAPH_LENET, NNOPT_F32, "cpu", &f->options);
    /* Entries past struct_size stay set: only the size may keep the core off them. */
    nnopt_backend_vtable old = *net->backend->vt;
    old.struct_size = (uint32_t)(offsetof(nnopt_backend_vtable, describe) + sizeof old.describe);
    const nnopt_backend_vtable *saved = net->backend->vt;
    net->backend->vt = &old;
    void *x = input_batch(net->graph);
    double want[BATCH * 10], got[BATCH * 10];
    infer(ref, x, want);
    infer(net, x, got);
    assert_true(net->kernels.unavailable);
    assert_int_equal(net->kernels.n_programs, 0);
    assert_memory_equal(want, got, sizeof want);
    net->backend->vt = saved;
    free(x);
    close_network(ref);
    close_network(net);
}

typedef struct columns {
    char names[8][64], values[8][128];
    int n;
} columns;

static void collect_column(void *sink, const char *name, const char *value) {
    columns *c = sink;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    snprintf(c->values[c->n], sizeof c->values[0], "%s", value);
    c->n++;
}

static const char *column(const columns *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0) return c->values[i];
    fail_msg("no report column %s", name);
    return NULL;
}

/* The technique through its hooks, as the pipeline calls them: before_train
 * sets the run's mode; the report shows mode, compile time and cache. */
static void technique_sets_mode_and_reports(void **state) {
    fixture *f = *state;
    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    const nnopt_plugin *plugin = NULL;
    nnopt_error err = {0};
    assert_int_equal(
        nnopt_plugin_load(&search, NNOPT_PLUGIN_TECHNIQUE, "kernel_compile", &plugin, &err),
        NNOPT_OK);
    nnopt_plugin_search_free(&search);
    const nnopt_technique_vtable *vt = plugin->desc->vtable;
    const char *modes[2] = {"precompiled", "compiled"};
    for (int m = 0; m < 2; m++) {
        nnopt_config *cfg =
            nnopt_config_create(plugin->desc->params, (int)plugin->desc->n_params, "k");
        assert_int_equal(nnopt_config_set(cfg, "mode", modes[m], "t", &err), NNOPT_OK);
        assert_int_equal(nnopt_config_set(cfg, "cache_dir", f->cache_dir, "t", &err), NNOPT_OK);
        assert_int_equal(nnopt_config_finish(cfg, "t", &err), NNOPT_OK);
        void *ctx = NULL;
        assert_int_equal(vt->create(nnopt_host_api_get(), cfg, &ctx), NNOPT_OK);
        nnopt_run run;
        memset(&run, 0, sizeof run);
        assert_int_equal(vt->before_train(ctx, &run), NNOPT_OK);
        assert_int_equal(run.kernels.compiled, m);
        nnopt_network *net = make_network(GRAPH_LENET, NNOPT_F32, "cpu", NULL);
        net->kernels = run.kernels; /* as the pipeline hands it over */
        assert_string_equal(net->kernels.cache_dir, m ? f->cache_dir : "");
        void *x = input_batch(net->graph);
        double logits[BATCH * 10];
        infer(net, x, logits);
        run.net = net;
        columns c = {0};
        vt->report(ctx, &run, collect_column, &c);
        assert_string_equal(column(&c, "kernels"), modes[m]);
        if (m) {
            assert_true(atof(column(&c, "compile_seconds")) > 0);
            assert_string_equal(column(&c, "kernel_cache"), "miss (0 hit, 1 miss)");
        } else {
            assert_string_equal(column(&c, "compile_seconds"), "0.000");
            assert_string_equal(column(&c, "kernel_cache"), "-");
        }
        free(x);
        close_network(net);
        vt->destroy(ctx);
        nnopt_config_free(cfg);
    }
}

/* A blis instance with `winograd` set. */
static nnopt_backend *open_blis_winograd(const char *winograd) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *plugin = NULL;
    nnopt_error err = {0};
    assert_int_equal(nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, "blis", &plugin, &err), NNOPT_OK);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = nnopt_config_create(plugin->desc->params, (int)plugin->desc->n_params, "b");
    assert_int_equal(nnopt_config_set(cfg, "winograd", winograd, "t", &err), NNOPT_OK);
    assert_int_equal(nnopt_config_finish(cfg, "t", &err), NNOPT_OK);
    nnopt_backend *b = NULL;
    assert_int_equal(nnopt_backend_open(plugin, cfg, &b, &err), NNOPT_OK);
    nnopt_config_free(cfg);
    return b;
}

/* Compiled mode leaves the convolutions blis runs as Winograd to blis (the
 * generated ones are direct, and slower): of conv -> relu, both steps are
 * generated with winograd = off, the relu alone with winograd = f4. */
static void winograd_convs_left_to_blis(void **state) {
    fixture *f = *state;
    const nnopt_program_tensor tensors[4] = {
        {NNOPT_F32, 4, {32, 16, 16, 16}, NNOPT_PROGRAM_TENSOR_EXTERNAL, -1}, /* x */
        {NNOPT_F32, 4, {16, 16, 3, 3}, NNOPT_PROGRAM_TENSOR_EXTERNAL, -1},   /* w */
        {NNOPT_F32, 4, {32, 16, 16, 16}, 0, -1},                             /* conv */
        {NNOPT_F32, 4, {32, 16, 16, 16}, NNOPT_PROGRAM_TENSOR_EXTERNAL, -1}, /* relu */
    };
    nnopt_program_step steps[2] = {
        {.op = {.kind = NNOPT_OP_CONV2D}, .n_in = 2, .n_out = 1, .in = {0, 1}, .out = {2}},
        {.op = {.kind = NNOPT_OP_ACT}, .n_in = 1, .n_out = 1, .in = {2}, .out = {3}}};
    steps[0].op.p.conv2d = (nnopt_conv2d_params){1, 1, 1, 1, 1};
    steps[1].op.p.act.kind = NNOPT_ACT_RELU;
    const nnopt_program prog = {sizeof prog, 4, 2, tensors, steps};
    const char *settings[2] = {"off", "f4"};
    for (int k = 0; k < 2; k++) {
        nnopt_backend *b = open_blis_winograd(settings[k]);
        char description[512];
        b->vt->describe(b->ctx, description, sizeof description);
        if (k == 1 && !strstr(description, "winograd: f4")) {
            print_message("# blis runs no Winograd here (%s)\n", description);
            nnopt_backend_close(b);
            skip();
        }
        void *compiled = NULL;
        nnopt_program_info info = {0};
        assert_int_equal(b->vt->program_compile(b->ctx, &prog, &f->options, &compiled, &info),
                         NNOPT_OK);
        assert_int_equal(info.total_steps, 2);
        assert_int_equal(info.specialized_steps, k == 0 ? 2 : 1);
        b->vt->program_free(b->ctx, compiled);
        nnopt_backend_close(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lenet_f32_cpu, setup, teardown),
        cmocka_unit_test_setup_teardown(lenet_f64_cpu, setup, teardown),
        cmocka_unit_test_setup_teardown(residual_f32_cpu, setup, teardown),
        cmocka_unit_test_setup_teardown(residual_f64_cpu, setup, teardown),
        cmocka_unit_test_setup_teardown(lenet_f32_blis, setup, teardown),
        cmocka_unit_test_setup_teardown(residual_f32_blis, setup, teardown),
        cmocka_unit_test_setup_teardown(residual_relu_f32_blis, setup, teardown),
        cmocka_unit_test_setup_teardown(winograd_convs_left_to_blis, setup, teardown),
        cmocka_unit_test_setup_teardown(fused_inference, setup, teardown),
        cmocka_unit_test_setup_teardown(weights_changed_between_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupted_entry_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupted_entry_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_compiler_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(abi_1_0_backend_runs_precompiled, setup, teardown),
        cmocka_unit_test_setup_teardown(technique_sets_mode_and_reports, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
