/* nnopt_bench: throughput of one model on one backend, through the core.
 *
 *   nnopt_bench [--backend blis] [--model lenet5] [--param key=value]...
 *               [--backend-param key=value]... [--threads N] [--batch 128]
 *               [--infer-batch 128,1000] [--seconds 2] [--warmup-seconds 0.5]
 *               [--warmup-steps 2] [--min-steps 2] [--repeats 3]
 *               [--profile-steps 20] [--channels 1] [--height 28]
 *               [--width 28] [--classes 10] [--lr 0.01] [--seed 1]
 *               [--kernels precompiled|compiled|both] [--kernel-cache DIR]
 *               [--compare-bf16 0|1] [--int8 8]
 *
 * Synthetic inputs (uniform [0,1), fixed seed) and labels. Measures
 *   - training: forward + softmax cross-entropy + backward + SGD step, images/s
 *     at --batch;
 *   - inference: forward + reading the logits, images/s at each --infer-batch;
 *   - a profiled training pass (every op synchronized) giving per-node forward
 *     and backward seconds and, for conv/dense nodes, achieved GFLOP/s from the
 *     node's multiply-adds; and a profiled forward at the largest inference batch;
 *   - with --int8 N: the model quantised to int8 by the quantization technique
 *     (calibrated on N synthetic batches) against f32, inference images/s at
 *     each --infer-batch in alternating windows, and the int8/f32 speed-up.
 * Each throughput is measured, after a warm-up of --warmup-seconds (at least
 * --warmup-steps steps), over --repeats windows of --seconds / --repeats each
 * (at least --min-steps steps each); "images_per_second" is the best window,
 * "images_per_second_mean" the whole run. CIFAR models: e.g. --model resnet
 * (ResNet-56) or --model mobilenet_v1 --param cifar=true, with --channels 3
 * --height 32 --width 32. --kernels compiled measures everything with kernels
 * compiled for the graph (the kernel_compile technique's mode); --kernels both
 * adds a "kernels" section: each workload in both modes, windows alternating
 * so that machine noise hits both alike, with the compiled/precompiled ratio
 * (also printed on stderr) and the compile time, which is not in any
 * throughput. With --compare-bf16 1 the model (which must be f32) is built twice, in f32 and moved
 * to bf16 (the same initial weights, rounded), and only inference is measured, the two alternating
 * window by window so that both see the same machine: "bf16_vs_f32" gives each batch's speed-up and
 * how far the bf16 logits are from the f32 ones on the same images. Prints JSON on stdout; progress
 * goes to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "nnopt/bf16.h"
#include "config.h"
#include "executor.h"
#include "graph.h"
#include "network.h"
#include "bench_int8.h"
#include "plugin_loader.h"

#define MAX_PARAMS 32
#define MAX_INFER_BATCHES 8
#define INPUT_POOL 4 /* distinct synthetic batches, used in turn */

typedef struct bench_options {
    const char *backend, *model;
    const char *model_params[MAX_PARAMS], *backend_params[MAX_PARAMS];
    int n_model_params, n_backend_params;
    int threads;
    int64_t train_batch;
    int64_t infer_batches[MAX_INFER_BATCHES];
    int n_infer_batches;
    double seconds, warmup_seconds;
    int repeats, profile_steps, warmup_steps, min_steps;
    int int8_calibration_batches; /* 0: no int8 measurement */
    int channels, height, width, classes;
    double lr;
    uint64_t seed;
    const char *kernels;      /* precompiled | compiled | both */
    const char *kernel_cache; /* NULL: the default cache folder */
    int compare_bf16;
} bench_options;

typedef struct throughput {
    double best_images_per_second, mean_images_per_second;
    int64_t steps;
    double seconds;
} throughput;

/* One workload's synthetic data: INPUT_POOL batches of images and labels. */
typedef struct synthetic_batches {
    void *images[INPUT_POOL];
    int32_t *labels[INPUT_POOL];
} synthetic_batches;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nnopt_bench [--backend NAME] [--model NAME] [--param key=value]...\n"
               "                   [--backend-param key=value]... [--threads N] [--batch N]\n"
               "                   [--infer-batch N[,N...]] [--seconds S] [--warmup-seconds S]\n"
               "                   [--warmup-steps N] [--min-steps N] [--repeats R]\n"
               "                   [--profile-steps N] [--channels C] [--height H]\n"
               "                   [--width W] [--classes K] [--lr LR] [--seed S]\n"
               "                   [--kernels precompiled|compiled|both] [--kernel-cache DIR]\n"
               "                   [--compare-bf16 0|1] [--int8 N]\n"
               "  e.g. --model resnet (ResNet-56), --model mobilenet_v1 --param cifar=true,\n"
               "  with --channels 3 --height 32 --width 32 for CIFAR-10 shapes\n");
}

static int parse_batches(const char *text, bench_options *o) {
    o->n_infer_batches = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long long value = atoll(tok);
        if (value < 1 || o->n_infer_batches == MAX_INFER_BATCHES) {
            free(copy);
            return -1;
        }
        o->infer_batches[o->n_infer_batches++] = value;
    }
    free(copy);
    return o->n_infer_batches > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, bench_options *o) {
    *o = (bench_options){.backend = "cpu",
                         .model = "lenet5",
                         .threads = 0,
                         .train_batch = 128,
                         .infer_batches = {128, 1000},
                         .n_infer_batches = 2,
                         .seconds = 2.0,
                         .warmup_seconds = 0.5,
                         .repeats = 3,
                         .profile_steps = 20,
                         .warmup_steps = 2,
                         .min_steps = 2,
                         .channels = 1,
                         .height = 28,
                         .width = 28,
                         .classes = 10,
                         .lr = 0.01,
                         .seed = 1,
                         .kernels = "precompiled"};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "nnopt_bench: %s needs a value\n", opt);
            return -1;
        }
        const char *value = argv[++i];
        if (strcmp(opt, "--backend") == 0) {
            o->backend = value;
        } else if (strcmp(opt, "--model") == 0) {
            o->model = value;
        } else if (strcmp(opt, "--param") == 0 || strcmp(opt, "--backend-param") == 0) {
            int is_model = strcmp(opt, "--param") == 0;
            int *count = is_model ? &o->n_model_params : &o->n_backend_params;
            if (*count == MAX_PARAMS || !strchr(value, '=')) {
                fprintf(stderr, "nnopt_bench: %s wants key=value (at most %d)\n", opt, MAX_PARAMS);
                return -1;
            }
            (is_model ? o->model_params : o->backend_params)[(*count)++] = value;
        } else if (strcmp(opt, "--threads") == 0) {
            o->threads = atoi(value);
        } else if (strcmp(opt, "--batch") == 0) {
            o->train_batch = atoll(value);
        } else if (strcmp(opt, "--infer-batch") == 0) {
            if (parse_batches(value, o) != 0) {
                fprintf(stderr, "nnopt_bench: --infer-batch wants up to %d positive sizes\n",
                        MAX_INFER_BATCHES);
                return -1;
            }
        } else if (strcmp(opt, "--seconds") == 0) {
            o->seconds = atof(value);
        } else if (strcmp(opt, "--warmup-seconds") == 0) {
            o->warmup_seconds = atof(value);
        } else if (strcmp(opt, "--repeats") == 0) {
            o->repeats = atoi(value);
        } else if (strcmp(opt, "--warmup-steps") == 0) {
            o->warmup_steps = atoi(value);
        } else if (strcmp(opt, "--min-steps") == 0) {
            o->min_steps = atoi(value);
        } else if (strcmp(opt, "--profile-steps") == 0) {
            o->profile_steps = atoi(value);
        } else if (strcmp(opt, "--channels") == 0) {
            o->channels = atoi(value);
        } else if (strcmp(opt, "--height") == 0) {
            o->height = atoi(value);
        } else if (strcmp(opt, "--width") == 0) {
            o->width = atoi(value);
        } else if (strcmp(opt, "--classes") == 0) {
            o->classes = atoi(value);
        } else if (strcmp(opt, "--lr") == 0) {
            o->lr = atof(value);
        } else if (strcmp(opt, "--seed") == 0) {
            o->seed = (uint64_t)atoll(value);
        } else if (strcmp(opt, "--kernels") == 0) {
            o->kernels = value;
        } else if (strcmp(opt, "--kernel-cache") == 0) {
            o->kernel_cache = value;
        } else if (strcmp(opt, "--compare-bf16") == 0) {
            o->compare_bf16 = atoi(value) != 0;
        } else if (strcmp(opt, "--int8") == 0) {
            o->int8_calibration_batches = atoi(value);
        } else {
            fprintf(stderr, "nnopt_bench: unknown option %s\n", opt);
            usage(stderr);
            return -1;
        }
    }
    if (o->train_batch < 1 || o->seconds <= 0 || o->repeats < 1 || o->profile_steps < 0 ||
        o->channels < 1 || o->height < 1 || o->width < 1 || o->classes < 2 ||
        o->warmup_seconds < 0 || o->warmup_steps < 0 || o->min_steps < 1 ||
        o->int8_calibration_batches < 0 ||
        (strcmp(o->kernels, "precompiled") != 0 && strcmp(o->kernels, "compiled") != 0 &&
         strcmp(o->kernels, "both") != 0)) {
        fprintf(stderr, "nnopt_bench: batch, seconds, repeats, shapes must be positive; "
                        "--kernels is precompiled, compiled or both\n");
        return -1;
    }
    return 0;
}

static int fail(const char *what, const nnopt_error *err) {
    fprintf(stderr, "nnopt_bench: %s: %s\n", what, err->message);
    return 1;
}

/* Applies "key=value" strings to cfg, then fills defaults. */
static nnopt_status configure(nnopt_config *cfg, const char *const *pairs, int n_pairs,
                              nnopt_error *err) {
    nnopt_status st = NNOPT_OK;
    for (int i = 0; st == NNOPT_OK && i < n_pairs; i++) {
        char key[128];
        const char *eq = strchr(pairs[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - pairs[i]), pairs[i]);
        st = nnopt_config_set(cfg, key, eq + 1, "command line", err);
    }
    return st == NNOPT_OK ? nnopt_config_finish(cfg, "command line", err) : st;
}

/* ---- synthetic data (splitmix64, so both dtypes see the same values) ---- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int synthetic_fill(synthetic_batches *d, const nnopt_graph *g, int64_t batch,
                          uint64_t seed) {
    int64_t per_image = (int64_t)g->in_c * g->in_h * g->in_w;
    size_t count = (size_t)(batch * per_image), elem = nnopt_dtype_size(g->dtype);
    uint64_t state = seed;
    for (int p = 0; p < INPUT_POOL; p++) {
        d->images[p] = malloc(count * elem);
        d->labels[p] = malloc((size_t)batch * sizeof(int32_t));
        if (!d->images[p] || !d->labels[p]) return -1;
        for (size_t i = 0; i < count; i++) {
            double u = (double)(splitmix64(&state) >> 11) * 0x1.0p-53;
            if (g->dtype == NNOPT_F64)
                ((double *)d->images[p])[i] = u;
            else if (g->dtype == NNOPT_BF16)
                ((uint16_t *)d->images[p])[i] = nnopt_bf16_from_f64(u);
            else
                ((float *)d->images[p])[i] = (float)u;
        }
        for (int64_t i = 0; i < batch; i++)
            d->labels[p][i] = (int32_t)(splitmix64(&state) % (uint64_t)g->num_classes);
    }
    return 0;
}

static void synthetic_free(synthetic_batches *d) {
    for (int p = 0; p < INPUT_POOL; p++) {
        free(d->images[p]);
        free(d->labels[p]);
    }
}

/* ---- the workloads ---- */

typedef struct workload {
    nnopt_exec *ex;
    const nnopt_optimizer *opt; /* NULL: inference */
    double lr;
    synthetic_batches data;
    double *logits; /* inference: where logits are read back */
    int64_t step;
} workload;

static nnopt_status workload_step(workload *w, nnopt_error *err) {
    int p = (int)(w->step++ % INPUT_POOL);
    nnopt_status st = nnopt_exec_forward(w->ex, w->data.images[p], err);
    if (st != NNOPT_OK) return st;
    if (!w->opt) return nnopt_exec_read_logits(w->ex, w->logits, err);
    double loss = 0;
    st = nnopt_exec_backward(w->ex, w->data.labels[p], NULL, &loss, err);
    if (st == NNOPT_OK) st = nnopt_network_step(w->ex->net, w->opt, w->lr, err);
    if (st == NNOPT_OK && !isfinite(loss))
        st = nnopt_error_set(err, NNOPT_STATUS_NUMERIC, "loss became %g", loss);
    return st;
}

/* Runs steps until `seconds` have passed (at least min_steps); returns steps. */
static nnopt_status run_for(workload *w, double seconds, int64_t min_steps, int64_t *steps,
                            double *elapsed, nnopt_error *err) {
    double start = now_seconds(), t = start;
    int64_t done = 0;
    nnopt_status st = NNOPT_OK;
    while (st == NNOPT_OK && (done < min_steps || t - start < seconds)) {
        st = workload_step(w, err);
        done++;
        t = now_seconds();
    }
    /* An asynchronous backend (cuda) may still be running the last optimizer
     * step: the window ends when the work does. */
    if (st == NNOPT_OK) {
        st = nnopt_backend_sync(w->ex->net->backend, err);
        t = now_seconds();
    }
    *steps = done;
    *elapsed = t - start;
    return st;
}

static nnopt_status measure(workload *w, const bench_options *o, throughput *out,
                            nnopt_error *err) {
    int64_t steps = 0;
    double elapsed = 0;
    nnopt_status st = run_for(w, o->warmup_seconds, o->warmup_steps, &steps, &elapsed, err);
    *out = (throughput){0};
    for (int r = 0; st == NNOPT_OK && r < o->repeats; r++) {
        st = run_for(w, o->seconds / o->repeats, o->min_steps, &steps, &elapsed, err);
        double rate = (double)(steps * w->ex->batch) / elapsed;
        if (rate > out->best_images_per_second) out->best_images_per_second = rate;
        out->steps += steps;
        out->seconds += elapsed;
    }
    if (out->seconds > 0)
        out->mean_images_per_second = (double)(out->steps * w->ex->batch) / out->seconds;
    return st;
}

static nnopt_status workload_open(workload *w, nnopt_network *net, int64_t batch,
                                  const nnopt_optimizer *opt, double lr, uint64_t seed,
                                  nnopt_error *err) {
    memset(w, 0, sizeof *w);
    w->opt = opt;
    w->lr = lr;
    nnopt_status st = opt ? nnopt_exec_create(net, batch, 1, &w->ex, err)
                          : nnopt_exec_create_inference(net, batch, &w->ex, err);
    if (st != NNOPT_OK) return st;
    const nnopt_graph *g = net->graph;
    w->logits = malloc((size_t)(batch * g->num_classes) * sizeof *w->logits);
    if (!w->logits || synthetic_fill(&w->data, g, batch, seed) != 0)
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    return NNOPT_OK;
}

static void workload_close(workload *w) {
    nnopt_exec_free(w->ex);
    synthetic_free(&w->data);
    free(w->logits);
}

/* ---- JSON output ---- */

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_number(double v) {
    if (isfinite(v))
        printf("%.6g", v);
    else
        printf("null");
}

static void print_throughput(const char *key, const throughput *t, int64_t batch) {
    printf("    ");
    json_string(key);
    printf(": {\"batch\": %lld, \"images_per_second\": ", (long long)batch);
    json_number(t->best_images_per_second);
    printf(", \"images_per_second_mean\": ");
    json_number(t->mean_images_per_second);
    printf(", \"steps\": %lld, \"seconds\": ", (long long)t->steps);
    json_number(t->seconds);
    printf("}");
}

/* ---- bf16 against f32 ---- */

typedef struct bf16_comparison {
    int64_t batch;
    throughput rate[2];                   /* [0] f32, [1] bf16 */
    double window_low, window_high;       /* bf16/f32 speed-up, over paired windows */
    double max_logit_diff, max_abs_logit; /* on one batch of the same images */
    int64_t argmax_agree;
} bf16_comparison;

/* Inference of the f32 and bf16 networks at one batch: warm-up, then
 * --repeats pairs of windows, f32 then bf16, so both see the same machine. */
static nnopt_status compare_one_batch(const bench_options *o, nnopt_network *nets[2], int64_t batch,
                                      uint64_t seed, bf16_comparison *out, nnopt_error *err) {
    workload w[2];
    *out = (bf16_comparison){.batch = batch, .window_low = INFINITY, .window_high = 0};
    nnopt_status st = NNOPT_OK;
    int opened = 0;
    for (; st == NNOPT_OK && opened < 2; opened++)
        st = workload_open(&w[opened], nets[opened], batch, NULL, 0, seed, err);
    int64_t steps = 0;
    double elapsed = 0;
    for (int k = 0; st == NNOPT_OK && k < 2; k++)
        st = run_for(&w[k], o->warmup_seconds, o->warmup_steps, &steps, &elapsed, err);
    for (int r = 0; st == NNOPT_OK && r < o->repeats; r++) {
        double rate[2] = {0, 0};
        for (int k = 0; st == NNOPT_OK && k < 2; k++) {
            st = run_for(&w[k], o->seconds / o->repeats, o->min_steps, &steps, &elapsed, err);
            rate[k] = (double)(steps * batch) / elapsed;
            throughput *t = &out->rate[k];
            if (rate[k] > t->best_images_per_second) t->best_images_per_second = rate[k];
            t->steps += steps;
            t->seconds += elapsed;
        }
        if (st == NNOPT_OK) {
            out->window_low = fmin(out->window_low, rate[1] / rate[0]);
            out->window_high = fmax(out->window_high, rate[1] / rate[0]);
        }
    }
    for (int k = 0; st == NNOPT_OK && k < 2; k++) {
        throughput *t = &out->rate[k];
        t->mean_images_per_second = (double)(t->steps * batch) / t->seconds;
        /* The same images (bf16: rounded) through both networks. */
        st = nnopt_exec_forward(w[k].ex, w[k].data.images[0], err);
        if (st == NNOPT_OK) st = nnopt_exec_read_logits(w[k].ex, w[k].logits, err);
    }
    if (st == NNOPT_OK) {
        const int classes = nets[0]->graph->num_classes;
        for (int64_t n = 0; n < batch; n++) {
            const double *a = w[0].logits + n * classes, *b = w[1].logits + n * classes;
            int best_a = 0, best_b = 0;
            for (int c = 0; c < classes; c++) {
                out->max_logit_diff = fmax(out->max_logit_diff, fabs(a[c] - b[c]));
                out->max_abs_logit = fmax(out->max_abs_logit, fabs(a[c]));
                if (a[c] > a[best_a]) best_a = c;
                if (b[c] > b[best_b]) best_b = c;
            }
            out->argmax_agree += best_a == best_b;
        }
    }
    for (int k = 0; k < opened; k++) workload_close(&w[k]);
    return st;
}

static void print_comparison(const bf16_comparison *c) {
    printf("    \"infer_b%lld\": {\"speedup\": ", (long long)c->batch);
    json_number(c->rate[1].best_images_per_second / c->rate[0].best_images_per_second);
    printf(", \"speedup_mean\": ");
    json_number(c->rate[1].mean_images_per_second / c->rate[0].mean_images_per_second);
    printf(", \"speedup_window_low\": ");
    json_number(c->window_low);
    printf(", \"speedup_window_high\": ");
    json_number(c->window_high);
    printf(", \"max_abs_logit_diff\": ");
    json_number(c->max_logit_diff);
    printf(", \"max_abs_logit_f32\": ");
    json_number(c->max_abs_logit);
    printf(", \"argmax_agreement\": ");
    json_number((double)c->argmax_agree / (double)c->batch);
    printf("}");
}

/* What a node computes, for the profile: the activation's name for
 * activations, else the forward op's. */
static const char *node_kind_name(const nnopt_graph_node *n) {
    if (n->kind == NNOPT_NODE_ACT) return nnopt_act_kind_name(n->op.p.act.kind);
    return nnopt_op_kind_name(n->op.kind);
}

/* Multiply-adds of one conv/dense node's forward for one image (0 otherwise). */
static int64_t node_macs(const nnopt_graph *g, const nnopt_graph_node *n) {
    const nnopt_graph_node *w = n->n_inputs > 1 ? &g->nodes[n->inputs[1]] : NULL;
    if (n->kind == NNOPT_NODE_CONV2D)
        return n->shape[1] * n->shape[2] * n->shape[3] * w->shape[1] * w->shape[2] * w->shape[3];
    if (n->kind == NNOPT_NODE_DENSE) return w->shape[0] * w->shape[1];
    return 0;
}

/* The single GEMM (row-major C[m,n] = A[m,k] B[k,n]) with the same arithmetic as
 * a conv/dense node's forward, backward-data and backward-weight at `batch`. */
typedef struct gemm_dims {
    int64_t m, n, k;
} gemm_dims;

static void node_gemms(const nnopt_graph *g, const nnopt_graph_node *n, int64_t batch,
                       gemm_dims *fwd, gemm_dims *bwd_data, gemm_dims *bwd_weight) {
    const nnopt_graph_node *w = &g->nodes[n->inputs[1]];
    if (n->kind == NNOPT_NODE_CONV2D) {
        int64_t out_channels = n->shape[1], pixels = n->shape[2] * n->shape[3] * batch;
        int64_t patch = w->shape[1] * w->shape[2] * w->shape[3];
        *fwd = (gemm_dims){out_channels, pixels, patch};        /* y = W * im2col */
        *bwd_data = (gemm_dims){patch, pixels, out_channels};   /* dcol = W^T * dy */
        *bwd_weight = (gemm_dims){out_channels, patch, pixels}; /* dW = dy * col^T */
    } else {
        int64_t out = w->shape[0], in = w->shape[1];
        *fwd = (gemm_dims){batch, out, in};        /* y = x W^T */
        *bwd_data = (gemm_dims){batch, in, out};   /* dx = dy W */
        *bwd_weight = (gemm_dims){out, in, batch}; /* dW = dy^T x */
    }
}

static void print_gemm(const char *key, gemm_dims d) {
    printf("\"%s\": [%lld, %lld, %lld]", key, (long long)d.m, (long long)d.n, (long long)d.k);
}

/* Per-node profile of `steps` steps of w (training: forward + backward; the
 * SGD step is timed apart), as a JSON object. */
static nnopt_status print_profile(const char *key, workload *w, int steps, nnopt_error *err) {
    nnopt_exec *ex = w->ex;
    const nnopt_graph *g = ex->net->graph;
    size_t n = (size_t)g->n_nodes;
    ex->profile = 1;
    nnopt_status st = workload_step(w, err); /* once unprofiled-in-the-sum */
    memset(ex->forward_seconds, 0, n * sizeof(double));
    memset(ex->backward_seconds, 0, n * sizeof(double));
    double optimizer_seconds = 0, total_start = now_seconds();
    for (int s = 0; st == NNOPT_OK && s < steps; s++) {
        int p = (int)(w->step++ % INPUT_POOL);
        st = nnopt_exec_forward(ex, w->data.images[p], err);
        if (st == NNOPT_OK && w->opt)
            st = nnopt_exec_backward(ex, w->data.labels[p], NULL, NULL, err);
        if (st == NNOPT_OK && w->opt) {
            double t0 = now_seconds();
            st = nnopt_network_step(ex->net, w->opt, w->lr, err);
            if (st == NNOPT_OK) st = nnopt_backend_sync(ex->net->backend, err);
            optimizer_seconds += now_seconds() - t0;
        }
    }
    double wall = (now_seconds() - total_start) / (steps > 0 ? steps : 1);
    ex->profile = 0;
    if (st != NNOPT_OK) return st;
    double per = steps > 0 ? 1.0 / steps : 0, ops_total = optimizer_seconds * per;
    for (size_t i = 0; i < n; i++)
        ops_total += (ex->forward_seconds[i] + ex->backward_seconds[i]) * per;

    printf("    ");
    json_string(key);
    printf(": {\"batch\": %lld, \"training\": %s, \"steps\": %d, \"seconds_per_step\": ",
           (long long)ex->batch, w->opt ? "true" : "false", steps);
    json_number(wall);
    printf(", \"op_seconds_per_step\": ");
    json_number(ops_total);
    printf(",\n      \"nodes\": [");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        const nnopt_graph_node *node = &g->nodes[i];
        double fwd = ex->forward_seconds[i] * per, bwd = ex->backward_seconds[i] * per;
        /* Inputs, parameters, views (flatten) and other state run no op. */
        if (node->kind == NNOPT_NODE_INPUT || node->kind == NNOPT_NODE_PARAM ||
            node->kind == NNOPT_NODE_FLATTEN || (fwd == 0 && bwd == 0))
            continue;
        printf("%s\n        {\"name\": ", first ? "" : ",");
        first = 0;
        json_string(node->name);
        printf(", \"kind\": \"%s\", \"forward_seconds\": ", node_kind_name(node));
        json_number(fwd);
        printf(", \"backward_seconds\": ");
        json_number(bwd);
        printf(", \"share\": ");
        json_number(ops_total > 0 ? (fwd + bwd) / ops_total : 0);
        int64_t macs = node_macs(g, node);
        if (macs > 0) {
            /* The layer's name: its weight's, less ".weight" (lenet5: conv1, fc1). */
            const char *weight = g->nodes[node->inputs[1]].name, *dot = strrchr(weight, '.');
            printf(", \"layer\": ");
            char layer[64];
            snprintf(layer, sizeof layer, "%.*s", (int)(dot ? dot - weight : (long)strlen(weight)),
                     weight);
            json_string(layer);
            double flops = 2.0 * (double)macs * (double)ex->batch;
            /* Backward runs the weight gradient, plus the data gradient when
             * the input needs one (not for the first layer); bias_bwd's time
             * is in backward_seconds too. */
            int bwd_gemms = 1 + (ex->needs_grad[node->inputs[0]] ? 1 : 0);
            printf(", \"macs_per_image\": %lld, \"forward_gflops\": ", (long long)macs);
            json_number(fwd > 0 ? flops / fwd * 1e-9 : NAN);
            if (w->opt) {
                printf(", \"backward_gemms\": %d, \"backward_gflops\": ", bwd_gemms);
                json_number(bwd > 0 ? bwd_gemms * flops / bwd * 1e-9 : NAN);
            }
            gemm_dims fwd_gemm, data_gemm, weight_gemm;
            node_gemms(g, node, ex->batch, &fwd_gemm, &data_gemm, &weight_gemm);
            printf(", \"gemm_mnk\": {");
            print_gemm("forward", fwd_gemm);
            if (w->opt) {
                if (bwd_gemms == 2) {
                    printf(", ");
                    print_gemm("backward_data", data_gemm);
                }
                printf(", ");
                print_gemm("backward_weight", weight_gemm);
            }
            printf("}");
        }
        printf("}");
    }
    printf("]");
    if (w->opt) {
        printf(",\n      \"optimizer_seconds\": ");
        json_number(optimizer_seconds * per);
        printf(", \"optimizer_share\": ");
        json_number(ops_total > 0 ? optimizer_seconds * per / ops_total : 0);
    }
    printf("}");
    return NNOPT_OK;
}

/* ---- precompiled vs compiled kernels ---- */

/* Both workloads measured in alternating windows after their warm-ups. */
static nnopt_status measure_alternating(workload *w, const bench_options *o, throughput *out,
                                        nnopt_error *err) {
    int64_t steps = 0;
    double elapsed = 0;
    nnopt_status st = NNOPT_OK;
    for (int m = 0; m < 2; m++) {
        out[m] = (throughput){0};
        if (st == NNOPT_OK)
            st = run_for(&w[m], o->warmup_seconds, o->warmup_steps, &steps, &elapsed, err);
    }
    for (int r = 0; st == NNOPT_OK && r < o->repeats; r++)
        for (int m = 0; st == NNOPT_OK && m < 2; m++) {
            st = run_for(&w[m], o->seconds / o->repeats, o->min_steps, &steps, &elapsed, err);
            double rate = (double)(steps * w[m].ex->batch) / elapsed;
            if (rate > out[m].best_images_per_second) out[m].best_images_per_second = rate;
            out[m].steps += steps;
            out[m].seconds += elapsed;
        }
    for (int m = 0; m < 2; m++)
        if (out[m].seconds > 0)
            out[m].mean_images_per_second =
                (double)(out[m].steps * w[m].ex->batch) / out[m].seconds;
    return st;
}

/* One workload (batch; training when opt is set) in both kernel modes. */
static nnopt_status compare_workload(nnopt_network *net, const bench_options *o, const char *key,
                                     int64_t batch, const nnopt_optimizer *opt, int first,
                                     nnopt_error *err) {
    workload w[2];
    nnopt_status st = NNOPT_OK;
    for (int m = 0; m < 2 && st == NNOPT_OK; m++) {
        net->kernels.compiled = m; /* executors compile (or load) their program when made */
        st = workload_open(&w[m], net, batch, opt, o->lr, o->seed + 7, err);
    }
    net->kernels.compiled = 1;
    throughput t[2];
    if (st == NNOPT_OK) {
        fprintf(stderr, "nnopt_bench: kernels: %s, batch %lld, precompiled vs compiled\n", key,
                (long long)batch);
        st = measure_alternating(w, o, t, err);
    }
    if (st == NNOPT_OK) {
        double ratio = t[1].best_images_per_second / t[0].best_images_per_second;
        double mean_ratio = t[1].mean_images_per_second / t[0].mean_images_per_second;
        printf("%s    \"%s\": {\"batch\": %lld, \"precompiled_images_per_second\": ",
               first ? "" : ",\n", key, (long long)batch);
        json_number(t[0].best_images_per_second);
        printf(", \"compiled_images_per_second\": ");
        json_number(t[1].best_images_per_second);
        printf(", \"ratio\": ");
        json_number(ratio);
        printf(", \"mean_ratio\": ");
        json_number(mean_ratio);
        printf("}");
        fprintf(stderr,
                "nnopt_bench: kernels: %s: precompiled %.0f img/s, compiled %.0f img/s, "
                "compiled/precompiled %.2fx (mean %.2fx)\n",
                key, t[0].best_images_per_second, t[1].best_images_per_second, ratio, mean_ratio);
    }
    for (int m = 0; m < 2; m++) workload_close(&w[m]);
    return st;
}

static nnopt_status compare_kernels(nnopt_network *net, const bench_options *o,
                                    const nnopt_optimizer *opt, nnopt_error *err) {
    printf(",\n  \"kernels\": {\n");
    nnopt_status st = compare_workload(net, o, "train", o->train_batch, opt, 1, err);
    for (int b = 0; st == NNOPT_OK && b < o->n_infer_batches; b++) {
        char key[64];
        snprintf(key, sizeof key, "infer_b%lld", (long long)o->infer_batches[b]);
        st = compare_workload(net, o, key, o->infer_batches[b], NULL, 0, err);
    }
    if (st != NNOPT_OK) return st;
    char mode[300];
    nnopt_kernels_describe_mode(&net->kernels, mode, sizeof mode);
    printf(",\n    \"mode\": ");
    json_string(mode);
    printf(",\n    \"compile_seconds\": ");
    json_number(net->kernels.compile_seconds);
    printf(",\n    \"cache_hits\": %d,\n    \"cache_misses\": %d\n  }", net->kernels.cache_hits,
           net->kernels.cache_misses);
    fprintf(stderr, "nnopt_bench: kernels: %s, compile %.3f s (%d cache hits, %d misses)\n", mode,
            net->kernels.compile_seconds, net->kernels.cache_hits, net->kernels.cache_misses);
    return NNOPT_OK;
}

static nnopt_status build_graph(const bench_options *o, const nnopt_plugin *model,
                                const nnopt_config *cfg, nnopt_graph **out, nnopt_error *err) {
    nnopt_graph *graph = nnopt_graph_create(o->channels, o->height, o->width, o->classes);
    if (!graph) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    nnopt_node logits = -1;
    const nnopt_model_vtable *model_vt = model->desc->vtable;
    nnopt_status st = model_vt->build(nnopt_host_api_get(), cfg, graph, &logits);
    if (st != NNOPT_OK)
        nnopt_error_set(err, st, "%s", graph->err.message[0] ? graph->err.message : "build failed");
    if (st == NNOPT_OK) st = nnopt_graph_finish(graph, logits, err);
    if (st != NNOPT_OK) {
        nnopt_graph_free(graph);
        return st;
    }
    *out = graph;
    return NNOPT_OK;
}

/* The model again, in bf16 (the same seed: the same weights, rounded), and
 * f32 against bf16 inference at every --infer-batch. */
static nnopt_status run_bf16_comparison(const bench_options *o, const nnopt_plugin *model,
                                        const nnopt_config *cfg, nnopt_network *f32,
                                        nnopt_error *err) {
    if (f32->graph->dtype != NNOPT_F32)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "--compare-bf16 needs an f32 model (--param dtype=f32)");
    nnopt_graph *graph = NULL;
    nnopt_network *bf16 = NULL;
    nnopt_status st = build_graph(o, model, cfg, &graph, err);
    if (st == NNOPT_OK && nnopt_graph_set_dtype(graph, NNOPT_BF16) != NNOPT_OK)
        st = nnopt_error_set(err, NNOPT_STATUS_INTERNAL, "cannot move the graph to bf16");
    if (st == NNOPT_OK) {
        st = nnopt_network_create(graph, f32->backend, o->seed, &bf16, err);
        graph = NULL; /* the network's now, even on failure */
    }
    nnopt_graph_free(graph);
    bf16_comparison c[MAX_INFER_BATCHES];
    nnopt_network *nets[2] = {f32, bf16};
    for (int b = 0; st == NNOPT_OK && b < o->n_infer_batches; b++) {
        fprintf(stderr, "nnopt_bench: f32 and bf16 inference, batch %lld\n",
                (long long)o->infer_batches[b]);
        st = compare_one_batch(o, nets, o->infer_batches[b], o->seed + 2 + (uint64_t)b, &c[b], err);
    }
    for (int b = 0; st == NNOPT_OK && b < o->n_infer_batches; b++) {
        char key[64];
        for (int k = 0; k < 2; k++) {
            snprintf(key, sizeof key, "%s_infer_b%lld", k ? "bf16" : "f32", (long long)c[b].batch);
            printf("%s", b + k ? ",\n" : "");
            print_throughput(key, &c[b].rate[k], c[b].batch);
        }
    }
    if (st == NNOPT_OK) {
        printf("\n  },\n  \"bf16_vs_f32\": {\n");
        for (int b = 0; b < o->n_infer_batches; b++) {
            printf("%s", b ? ",\n" : "");
            print_comparison(&c[b]);
        }
        printf("\n  },\n  \"profile\": {\n");
    }
    /* Per-node times of both at the first batch size. */
    for (int k = 0; st == NNOPT_OK && o->profile_steps > 0 && k < 2; k++) {
        workload w;
        char key[64];
        snprintf(key, sizeof key, "%s_infer_b%lld", k ? "bf16" : "f32",
                 (long long)o->infer_batches[0]);
        st = workload_open(&w, nets[k], o->infer_batches[0], NULL, 0, o->seed + 99, err);
        printf("%s", k ? ",\n" : "");
        if (st == NNOPT_OK) st = print_profile(key, &w, o->profile_steps, err);
        workload_close(&w);
    }
    if (st == NNOPT_OK) printf("\n  }\n}\n");
    nnopt_network_free(bf16);
    return st;
}

/* int8 against f32 inference at every --infer-batch: a second network with
 * the same initial weights, quantised, and the two timed in alternating
 * windows (best window each), so a machine whose load changes during the
 * run slows both alike. */
static nnopt_status print_int8(const bench_options *o, const nnopt_plugin *model,
                               const nnopt_config *model_cfg, nnopt_network *f32_net,
                               nnopt_backend *backend, nnopt_error *err) {
    nnopt_graph *graph = NULL;
    nnopt_network *net = NULL;
    int64_t bytes[2] = {0, 0};
    nnopt_status st = build_graph(o, model, model_cfg, &graph, err);
    if (st == NNOPT_OK) st = nnopt_network_create(graph, backend, o->seed, &net, err);
    fprintf(stderr, "nnopt_bench: quantising to int8 (%d calibration batches)\n",
            o->int8_calibration_batches);
    if (st == NNOPT_OK)
        st = bench_quantize(net, backend, o->infer_batches[0], o->int8_calibration_batches,
                            o->seed + 7, bytes, err);
    if (st != NNOPT_OK) {
        nnopt_network_free(net);
        return st;
    }
    printf(",\n  \"int8\": {\n    \"calibration_batches\": %d,\n    \"model_bytes_f32\": "
           "%lld,\n    \"model_bytes_int8\": %lld",
           o->int8_calibration_batches, (long long)bytes[0], (long long)bytes[1]);
    bench_options window = *o;
    window.repeats = 1;
    window.seconds = o->seconds / o->repeats;
    for (int b = 0; st == NNOPT_OK && b < o->n_infer_batches; b++) {
        int64_t batch = o->infer_batches[b];
        workload runs[2];
        throughput best[2], t;
        memset(best, 0, sizeof best);
        nnopt_network *nets[2] = {f32_net, net};
        for (int k = 0; st == NNOPT_OK && k < 2; k++)
            st = workload_open(&runs[k], nets[k], batch, NULL, 0, o->seed + 2 + (uint64_t)b, err);
        fprintf(stderr, "nnopt_bench: f32 and int8 inference, batch %lld\n", (long long)batch);
        for (int r = 0; st == NNOPT_OK && r < o->repeats; r++)
            for (int k = 0; st == NNOPT_OK && k < 2; k++) {
                st = measure(&runs[k], &window, &t, err);
                if (t.best_images_per_second > best[k].best_images_per_second)
                    best[k].best_images_per_second = t.best_images_per_second;
                best[k].steps += t.steps;
                best[k].seconds += t.seconds;
            }
        if (st == NNOPT_OK && o->profile_steps > 0 && b == o->n_infer_batches - 1) {
            printf(",\n  \"profile\": {\n");
            st = print_profile("int8", &runs[1], o->profile_steps, err);
            printf("\n  }");
        }
        for (int k = 0; k < 2; k++) workload_close(&runs[k]);
        if (st != NNOPT_OK) break;
        for (int k = 0; k < 2; k++)
            best[k].mean_images_per_second =
                best[k].seconds > 0 ? (double)(best[k].steps * batch) / best[k].seconds : 0;
        char key[64];
        snprintf(key, sizeof key, "f32_infer_b%lld", (long long)batch);
        printf(",\n");
        print_throughput(key, &best[0], batch);
        snprintf(key, sizeof key, "int8_infer_b%lld", (long long)batch);
        printf(",\n");
        print_throughput(key, &best[1], batch);
        printf(",\n    \"speedup_b%lld\": ", (long long)batch);
        json_number(best[0].best_images_per_second > 0
                        ? best[1].best_images_per_second / best[0].best_images_per_second
                        : 0);
    }
    printf("\n  }");
    nnopt_network_free(net);
    return st;
}

int main(int argc, char **argv) {
    bench_options o;
    if (parse_options(argc, argv, &o) != 0) return 2;
    nnopt_error err = {0};
    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    const nnopt_plugin *model = NULL, *backend_plugin = NULL;
    nnopt_status st = nnopt_plugin_load(&search, NNOPT_PLUGIN_MODEL, o.model, &model, &err);
    if (st != NNOPT_OK) return fail("model plugin", &err);
    st = nnopt_plugin_load(&search, NNOPT_PLUGIN_BACKEND, o.backend, &backend_plugin, &err);
    if (st != NNOPT_OK) return fail("backend plugin", &err);
    nnopt_plugin_search_free(&search);

    /* Model graph. */
    nnopt_config *model_cfg =
        nnopt_config_create(model->desc->params, (int)model->desc->n_params, o.model);
    if (!model_cfg) return 1;
    st = configure(model_cfg, o.model_params, o.n_model_params, &err);
    if (st != NNOPT_OK) return fail("model parameters", &err);
    nnopt_graph *graph = NULL;
    st = build_graph(&o, model, model_cfg, &graph, &err);
    if (st != NNOPT_OK) return fail("building the model", &err);

    /* Backend, with --threads passed to its `threads` parameter when it has one. */
    nnopt_config *backend_cfg = nnopt_config_create(backend_plugin->desc->params,
                                                    (int)backend_plugin->desc->n_params, o.backend);
    if (!backend_cfg) return 1;
    char threads_value[32];
    int threads_applied = 0;
    if (o.threads > 0 && nnopt_config_has(backend_cfg, "threads")) {
        snprintf(threads_value, sizeof threads_value, "%d", o.threads);
        st = nnopt_config_set(backend_cfg, "threads", threads_value, "--threads", &err);
        if (st != NNOPT_OK) return fail("backend threads", &err);
        threads_applied = 1;
    }
    st = configure(backend_cfg, o.backend_params, o.n_backend_params, &err);
    if (st != NNOPT_OK) return fail("backend parameters", &err);
    nnopt_backend *backend = NULL;
    st = nnopt_backend_open(backend_plugin, backend_cfg, &backend, &err);
    if (st != NNOPT_OK) return fail("opening the backend", &err);

    nnopt_network *net = NULL;
    int64_t params = nnopt_graph_param_count(graph), macs = nnopt_graph_forward_macs(graph);
    nnopt_dtype dtype = graph->dtype;
    st = nnopt_network_create(graph, backend, o.seed, &net, &err);
    if (st != NNOPT_OK) return fail("creating the network", &err);
    nnopt_optimizer sgd = {.kind = NNOPT_OPTIMIZER_SGD};
    st = nnopt_network_prepare_training(net, &sgd, &err);
    if (st != NNOPT_OK) return fail("preparing training", &err);
    nnopt_program_options kernel_options = {sizeof kernel_options, NULL, NULL, o.kernel_cache};
    int compare = strcmp(o.kernels, "both") == 0;
    if (strcmp(o.kernels, "precompiled") != 0) nnopt_kernels_set(&net->kernels, &kernel_options);
    /* The main measurements stay precompiled when comparing. */
    if (compare) net->kernels.compiled = 0;

    printf("{\n  \"tool\": \"nnopt_bench\",\n  \"model\": ");
    json_string(o.model);
    printf(",\n  \"model_params\": {");
    for (int i = 0; i < o.n_model_params; i++) {
        char key[128];
        const char *eq = strchr(o.model_params[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - o.model_params[i]), o.model_params[i]);
        printf("%s", i ? ", " : "");
        json_string(key);
        printf(": ");
        json_string(eq + 1);
    }
    printf("},\n  \"dtype\": \"%s\",\n  \"backend\": ", nnopt_dtype_name(dtype));
    json_string(o.backend);
    printf(",\n  \"backend_description\": ");
    /* Described again now: what the runs did shows too (cuda: graphs captured). */
    char described[sizeof backend->description];
    snprintf(described, sizeof described, "%s", backend->description);
    if (backend->vt->describe) backend->vt->describe(backend->ctx, described, sizeof described);
    json_string(described);
    printf(",\n  \"threads\": %d,\n  \"threads_applied\": %s,\n", o.threads,
           threads_applied ? "true" : "false");
    printf("  \"input\": [%d, %d, %d],\n  \"classes\": %d,\n", o.channels, o.height, o.width,
           o.classes);
    printf("  \"parameters\": %lld,\n  \"forward_macs_per_image\": %lld,\n", (long long)params,
           (long long)macs);
    printf("  \"kernel_mode\": \"%s\",\n  \"seconds\": ", o.kernels);
    json_number(o.seconds);
    printf(",\n  \"repeats\": %d,\n  \"warmup_steps\": %d,\n  \"min_steps\": %d,\n"
           "  \"results\": {\n",
           o.repeats, o.warmup_steps, o.min_steps);
    fflush(stdout);

    if (o.compare_bf16) {
        st = run_bf16_comparison(&o, model, model_cfg, net, &err);
        if (st != NNOPT_OK) return fail("bf16 comparison", &err);
        nnopt_network_free(net);
        nnopt_backend_close(backend);
        nnopt_config_free(model_cfg);
        nnopt_config_free(backend_cfg);
        return 0;
    }

    /* Training. */
    workload train;
    st = workload_open(&train, net, o.train_batch, &sgd, o.lr, o.seed + 1, &err);
    throughput t = {0};
    if (st == NNOPT_OK) {
        fprintf(stderr, "nnopt_bench: %s %s on %s: training, batch %lld\n", o.model,
                nnopt_dtype_name(dtype), o.backend, (long long)o.train_batch);
        st = measure(&train, &o, &t, &err);
    }
    if (st != NNOPT_OK) return fail("training", &err);
    print_throughput("train", &t, o.train_batch);

    /* Inference at each batch size; profile the largest. */
    int64_t largest = o.infer_batches[0];
    for (int b = 0; b < o.n_infer_batches; b++) {
        int64_t batch = o.infer_batches[b];
        if (batch > largest) largest = batch;
        workload infer;
        st = workload_open(&infer, net, batch, NULL, 0, o.seed + 2 + (uint64_t)b, &err);
        if (st == NNOPT_OK) {
            fprintf(stderr, "nnopt_bench: inference, batch %lld\n", (long long)batch);
            st = measure(&infer, &o, &t, &err);
        }
        if (st != NNOPT_OK) return fail("inference", &err);
        char key[64];
        snprintf(key, sizeof key, "infer_b%lld", (long long)batch);
        printf(",\n");
        print_throughput(key, &t, batch);
        workload_close(&infer);
    }
    printf("\n  },\n  \"profile\": {\n");
    if (o.profile_steps > 0) {
        fprintf(stderr, "nnopt_bench: profiling %d training steps\n", o.profile_steps);
        st = print_profile("train", &train, o.profile_steps, &err);
        workload infer;
        if (st == NNOPT_OK) st = workload_open(&infer, net, largest, NULL, 0, o.seed + 99, &err);
        if (st == NNOPT_OK) {
            char key[64];
            snprintf(key, sizeof key, "infer_b%lld", (long long)largest);
            printf(",\n");
            st = print_profile(key, &infer, o.profile_steps, &err);
            workload_close(&infer);
        }
        if (st != NNOPT_OK) return fail("profiling", &err);
    }
    printf("\n  }");
    if (compare) {
        st = compare_kernels(net, &o, &sgd, &err);
        if (st != NNOPT_OK) return fail("kernel comparison", &err);
    }
    workload_close(&train);
    if (o.int8_calibration_batches > 0) {
        st = print_int8(&o, model, model_cfg, net, backend, &err);
        if (st != NNOPT_OK) return fail("int8", &err);
    }
    printf("\n}\n");
    nnopt_network_free(net);
    nnopt_backend_close(backend);
    nnopt_config_free(model_cfg);
    nnopt_config_free(backend_cfg);
    return 0;
}
