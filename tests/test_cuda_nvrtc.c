/* Compiled mode of the cuda backend (plugins/backends/cuda/cuda_nvrtc.h).
 *
 *   test_cuda_nvrtc compile
 *     Without a GPU: generates the CUDA C for a LeNet-like, a residual and
 *     a coverage program (f32 and f64), compiles it with NVRTC for sm_90 (a
 *     non-empty cubin), and checks the cache: a miss, then a hit with the
 *     same image, then a corrupted entry rebuilt; PTX for compute_90.
 *   test_cuda_nvrtc emulated
 *     Without a GPU: the same programs' plans run on the reference backend,
 *     their generated kernels compiled as C++ and run thread by thread on the
 *     CPU; the logits must match the steps run one by one, and NaNs must
 *     go through relu and max pooling as on the reference.
 *   test_cuda_nvrtc numerics
 *     With a GPU: the three programs compiled by the cuda backend and run, their
 *     logits against the reference ("cpu") backend running the steps one by
 *     one. Without one it prints "SKIP: no CUDA device (<reason>)" and exits
 *     with 77 (ctest's SKIP_RETURN_CODE). */
#define _GNU_SOURCE /* mkdtemp */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <dlfcn.h>

#include "cuda_nvrtc.h"
#include "plugin_loader.h"
#include "test_backend.h"

enum { EXIT_SKIPPED = 77, MAX_TENSORS = 32, MAX_STEPS = 16 };

/* ---- hand-built programs, as the core's recorder would give them ---- */

typedef struct test_program {
    nnopt_program_tensor tensors[MAX_TENSORS];
    nnopt_program_step steps[MAX_STEPS];
    nnopt_program prog;
    int n_tensors, n_steps, input, logits;
} test_program;

static int add_tensor(test_program *p, int external, int ndim, int64_t d0, int64_t d1, int64_t d2,
                      int64_t d3) {
    nnopt_program_tensor *t = &p->tensors[p->n_tensors];
    memset(t, 0, sizeof *t);
    t->dtype = NNOPT_F32;
    t->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    for (int d = 0; d < ndim; d++) t->shape[d] = dims[d];
    t->flags = external ? NNOPT_PROGRAM_TENSOR_EXTERNAL : 0;
    t->alias_of = -1;
    return p->n_tensors++;
}

static void add_step(test_program *p, nnopt_op op, int n_in, const int *in, int out) {
    nnopt_program_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof *s);
    s->op = op;
    s->n_in = n_in;
    memcpy(s->in, in, (size_t)n_in * sizeof *in);
    s->n_out = 1;
    s->out[0] = out;
}

static nnopt_op conv_op(int stride, int pad) {
    nnopt_op op = {.kind = NNOPT_OP_CONV2D};
    op.p.conv2d = (nnopt_conv2d_params){stride, stride, pad, pad, 1};
    return op;
}

static nnopt_op act_op(nnopt_act_kind kind) {
    nnopt_op op = {.kind = NNOPT_OP_ACT};
    op.p.act.kind = kind;
    return op;
}

static nnopt_op pool_op(nnopt_pool_kind kind) {
    nnopt_op op = {.kind = NNOPT_OP_POOL2D};
    op.p.pool2d = (nnopt_pool2d_params){kind, 2, 2, 2, 2, 0, 0};
    return op;
}

static void finish(test_program *p) {
    p->prog = (nnopt_program){sizeof p->prog, p->n_tensors, p->n_steps, p->tensors, p->steps};
}

/* conv-relu-maxpool, conv-tanh-avgpool, flatten (a view), dense-relu, dense. */
static void build_lenet(test_program *p) {
    memset(p, 0, sizeof *p);
    int x = p->input = add_tensor(p, 1, 4, 2, 1, 28, 28);
    int w1 = add_tensor(p, 1, 4, 6, 1, 5, 5), b1 = add_tensor(p, 1, 1, 6, 0, 0, 0);
    int c1 = add_tensor(p, 0, 4, 2, 6, 24, 24), a1 = add_tensor(p, 0, 4, 2, 6, 24, 24);
    int p1 = add_tensor(p, 0, 4, 2, 6, 12, 12);
    int w2 = add_tensor(p, 1, 4, 16, 6, 5, 5), b2 = add_tensor(p, 1, 1, 16, 0, 0, 0);
    int c2 = add_tensor(p, 0, 4, 2, 16, 8, 8), a2 = add_tensor(p, 0, 4, 2, 16, 8, 8);
    int p2 = add_tensor(p, 0, 4, 2, 16, 4, 4);
    int flat = add_tensor(p, 0, 2, 2, 256, 0, 0);
    p->tensors[flat].alias_of = p2;
    int w3 = add_tensor(p, 1, 2, 32, 256, 0, 0), b3 = add_tensor(p, 1, 1, 32, 0, 0, 0);
    int d3 = add_tensor(p, 0, 2, 2, 32, 0, 0), a3 = add_tensor(p, 0, 2, 2, 32, 0, 0);
    int w4 = add_tensor(p, 1, 2, 10, 32, 0, 0), b4 = add_tensor(p, 1, 1, 10, 0, 0, 0);
    int logits = p->logits = add_tensor(p, 1, 2, 2, 10, 0, 0);
    add_step(p, conv_op(1, 0), 3, (int[]){x, w1, b1}, c1);
    add_step(p, act_op(NNOPT_ACT_RELU), 1, (int[]){c1}, a1);
    add_step(p, pool_op(NNOPT_POOL_MAX), 1, (int[]){a1}, p1);
    add_step(p, conv_op(1, 0), 3, (int[]){p1, w2, b2}, c2);
    add_step(p, act_op(NNOPT_ACT_TANH), 1, (int[]){c2}, a2);
    add_step(p, pool_op(NNOPT_POOL_AVG), 1, (int[]){a2}, p2);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_DENSE}, 3, (int[]){flat, w3, b3}, d3);
    add_step(p, act_op(NNOPT_ACT_GELU_TANH), 1, (int[]){d3}, a3);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_DENSE}, 3, (int[]){a3, w4, b4}, logits);
    finish(p);
}

/* conv-bn-relu, conv-bn, add the block's input, relu, avgpool, dense. */
static void build_residual(test_program *p) {
    memset(p, 0, sizeof *p);
    int x = p->input = add_tensor(p, 1, 4, 2, 8, 8, 8);
    int bn[2][4], w[2], c[2], n[2];
    for (int k = 0; k < 2; k++) {
        w[k] = add_tensor(p, 1, 4, 8, 8, 3, 3);
        for (int j = 0; j < 4; j++) bn[k][j] = add_tensor(p, 1, 1, 8, 0, 0, 0);
        c[k] = add_tensor(p, 0, 4, 2, 8, 8, 8);
        n[k] = add_tensor(p, 0, 4, 2, 8, 8, 8);
    }
    int r = add_tensor(p, 0, 4, 2, 8, 8, 8), sum = add_tensor(p, 0, 4, 2, 8, 8, 8);
    int out = add_tensor(p, 0, 4, 2, 8, 8, 8), pooled = add_tensor(p, 0, 4, 2, 8, 4, 4);
    int flat = add_tensor(p, 0, 2, 2, 128, 0, 0);
    p->tensors[flat].alias_of = pooled;
    int wd = add_tensor(p, 1, 2, 10, 128, 0, 0), bd = add_tensor(p, 1, 1, 10, 0, 0, 0);
    int logits = p->logits = add_tensor(p, 1, 2, 2, 10, 0, 0);
    nnopt_op bn_op = {.kind = NNOPT_OP_BATCHNORM};
    bn_op.p.bn = (nnopt_bn_params){1e-5, 0.1, 0};
    add_step(p, conv_op(1, 1), 2, (int[]){x, w[0]}, c[0]);
    add_step(p, bn_op, 5, (int[]){c[0], bn[0][0], bn[0][1], bn[0][2], bn[0][3]}, n[0]);
    add_step(p, act_op(NNOPT_ACT_RELU), 1, (int[]){n[0]}, r);
    add_step(p, conv_op(1, 1), 2, (int[]){r, w[1]}, c[1]);
    add_step(p, bn_op, 5, (int[]){c[1], bn[1][0], bn[1][1], bn[1][2], bn[1][3]}, n[1]);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_ADD}, 2, (int[]){n[1], x}, sum);
    add_step(p, act_op(NNOPT_ACT_RELU), 1, (int[]){sum}, out);
    add_step(p, pool_op(NNOPT_POOL_AVG), 1, (int[]){out}, pooled);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_DENSE}, 3, (int[]){flat, wd, bd}, logits);
    finish(p);
}

/* What the other two leave out: standalone activations (sigmoid, relu6,
 * gelu_erf) and batch norm, padded max and average pooling, an add with no
 * activation after it, and a dense layer without bias whose epilogue is its
 * activation alone. External intermediates keep those steps apart. */
static void build_coverage(test_program *p) {
    memset(p, 0, sizeof *p);
    int x = p->input = add_tensor(p, 1, 4, 2, 3, 7, 7);
    int y1 = add_tensor(p, 1, 4, 2, 3, 7, 7), y2 = add_tensor(p, 1, 4, 2, 3, 7, 7);
    int bn[4];
    for (int j = 0; j < 4; j++) bn[j] = add_tensor(p, 1, 1, 3, 0, 0, 0);
    int y3 = add_tensor(p, 1, 4, 2, 3, 4, 4), y4 = add_tensor(p, 1, 4, 2, 3, 4, 4);
    int y5 = add_tensor(p, 1, 4, 2, 3, 4, 4), y6 = add_tensor(p, 1, 4, 2, 3, 4, 4);
    int y7 = add_tensor(p, 0, 4, 2, 3, 3, 3), flat = add_tensor(p, 0, 2, 2, 27, 0, 0);
    p->tensors[flat].alias_of = y7;
    int w = add_tensor(p, 1, 2, 10, 27, 0, 0), d = add_tensor(p, 0, 2, 2, 10, 0, 0);
    int logits = p->logits = add_tensor(p, 1, 2, 2, 10, 0, 0);
    nnopt_op bn_op = {.kind = NNOPT_OP_BATCHNORM};
    bn_op.p.bn = (nnopt_bn_params){1e-3, 0.1, 0};
    nnopt_op max_pool = {.kind = NNOPT_OP_POOL2D}, avg_pool = {.kind = NNOPT_OP_POOL2D};
    max_pool.p.pool2d = (nnopt_pool2d_params){NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    avg_pool.p.pool2d = (nnopt_pool2d_params){NNOPT_POOL_AVG, 2, 2, 2, 2, 1, 1};
    add_step(p, act_op(NNOPT_ACT_SIGMOID), 1, (int[]){x}, y1);
    add_step(p, bn_op, 5, (int[]){y1, bn[0], bn[1], bn[2], bn[3]}, y2);
    add_step(p, max_pool, 1, (int[]){y2}, y3);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_ADD}, 2, (int[]){y3, y3}, y4);
    add_step(p, act_op(NNOPT_ACT_RELU6), 1, (int[]){y4}, y5);
    add_step(p, act_op(NNOPT_ACT_GELU_ERF), 1, (int[]){y5}, y6);
    add_step(p, avg_pool, 1, (int[]){y6}, y7);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_DENSE}, 2, (int[]){flat, w}, d);
    add_step(p, act_op(NNOPT_ACT_SIGMOID), 1, (int[]){d}, logits);
    finish(p);
}

/* ---- generation and NVRTC, no GPU ---- */

static char cache_dir[256];

static void remove_cache(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", cache_dir);
}

static void check_generates_and_compiles(test_program *p, int want_specialized) {
    cuda_nv_plan plan;
    assert_int_equal(cuda_nv_generate(&p->prog, &plan), 0);
    assert_true(plan.n_kernels > 0);
    assert_int_equal(plan.specialized_steps, want_specialized);
    assert_non_null(strstr(plan.source, "nnopt_nv_0"));
    /* Every GEMM stays on cuDNN/cuBLAS; fused ones write past their intermediate. */
    for (int i = 0; i < plan.n_actions; i++) {
        const cuda_nv_action *a = &plan.actions[i];
        nnopt_op_kind kind = p->steps[a->step].op.kind;
        if (kind == NNOPT_OP_CONV2D || kind == NNOPT_OP_DENSE)
            assert_true(a->kind == CUDA_NV_FALLBACK || plan.actions[i - 1].step == a->step);
    }
    const nnopt_host_api *host = nnopt_host_api_get();
    cuda_nv_image first, second, third;
    nnopt_status st = cuda_nv_compile(host, plan.source, "sm_90", cache_dir, &first);
    if (st != NNOPT_OK) fprintf(stderr, "%s\n", plan.source);
    assert_int_equal(st, NNOPT_OK);
    assert_true(first.size > 0);
    assert_true(first.is_cubin);
    assert_false(first.cache_hit);
    assert_int_equal(cuda_nv_compile(host, plan.source, "sm_90", cache_dir, &second), NNOPT_OK);
    assert_true(second.cache_hit);
    assert_int_equal(second.size, first.size);
    assert_memory_equal(second.data, first.data, first.size);
    /* A damaged entry is noticed and rebuilt, never loaded. */
    char path[600];
    snprintf(path, sizeof path, "%s/%.32s.cubin", cache_dir, second.note);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fputc(0x5a, f);
    fclose(f);
    assert_int_equal(cuda_nv_compile(host, plan.source, "sm_90", cache_dir, &third), NNOPT_OK);
    assert_false(third.cache_hit);
    assert_int_equal(third.size, first.size);
    cuda_nv_image_free(&first);
    cuda_nv_image_free(&second);
    cuda_nv_image_free(&third);
    cuda_nv_plan_free(&plan);
}

static void test_lenet_compiles(void **state) {
    (void)state;
    test_program p;
    build_lenet(&p);
    /* Bias + act after 2 convs and 1 dense (2 each), 2 pools; the last dense
     * (no activation after it) stays whole on cuBLAS. */
    check_generates_and_compiles(&p, 8);
    for (int i = 0; i < p.n_tensors; i++) p.tensors[i].dtype = NNOPT_F64;
    check_generates_and_compiles(&p, 8);
}

static void test_residual_compiles(void **state) {
    (void)state;
    test_program p;
    build_residual(&p);
    /* bn+relu, bn, add+relu, avg pool. */
    check_generates_and_compiles(&p, 6);
    for (int i = 0; i < p.n_tensors; i++) p.tensors[i].dtype = NNOPT_F64;
    check_generates_and_compiles(&p, 6);
}

static void test_coverage_compiles(void **state) {
    (void)state;
    test_program p;
    build_coverage(&p);
    check_generates_and_compiles(&p, 8);
}

static void test_unknown_arch_fails_cleanly(void **state) {
    (void)state;
    cuda_nv_image image;
    nnopt_status st = cuda_nv_compile(nnopt_host_api_get(), "extern \"C\" __global__ void k() {}\n",
                                      "sm_1", cache_dir, &image);
    assert_int_equal(st, NNOPT_STATUS_UNSUPPORTED);
    assert_null(image.data);
}

static void test_arch_choice_and_ptx(void **state) {
    (void)state;
    char arch[32];
    cuda_nv_arch_for(9, 0, arch, sizeof arch);
    assert_string_equal(arch, "sm_90");
    /* A device newer than this NVRTC: PTX for the newest it knows. */
    cuda_nv_arch_for(99, 9, arch, sizeof arch);
    assert_int_equal(strncmp(arch, "compute_", 8), 0);
    cuda_nv_image image;
    assert_int_equal(cuda_nv_compile(nnopt_host_api_get(),
                                     "extern \"C\" __global__ void k(float *y) { *y = 1; }\n",
                                     "compute_90", cache_dir, &image),
                     NNOPT_OK);
    assert_false(image.is_cubin);
    assert_true(image.size > 1);
    assert_non_null(strstr(image.data, ".entry k"));
    cuda_nv_image_free(&image);
}

/* ---- with a GPU: logits against the reference backend ---- */

static test_backend gpu, ref;

/* Binds every tensor of p on b (views share their base's memory), random
 * values for the external ones, batch-norm variances positive. */
static void bind(test_backend *b, test_program *p, nnopt_tensor **t, unsigned seed) {
    for (int i = 0; i < p->n_tensors; i++) {
        const nnopt_program_tensor *d = &p->tensors[i];
        if (d->alias_of >= 0) {
            t[i] = calloc(1, sizeof *t[i]);
            *t[i] = *t[d->alias_of];
            t[i]->ndim = d->ndim;
            memcpy(t[i]->shape, d->shape, sizeof d->shape);
            t[i]->owns_data = 0;
            continue;
        }
        int64_t n = 1;
        for (int k = 0; k < d->ndim; k++) n *= d->shape[k];
        double *v = malloc((size_t)n * sizeof *v);
        srand(seed + (unsigned)i);
        for (int64_t k = 0; k < n; k++) v[k] = (double)rand() / RAND_MAX - 0.5;
        if (d->ndim == 1)
            for (int64_t k = 0; k < n; k++) v[k] = fabs(v[k]) + 0.5;
        t[i] = test_tensor_new(b, d->dtype, d->ndim, d->shape, v);
        free(v);
    }
}

static void unbind(test_backend *b, test_program *p, nnopt_tensor **t) {
    for (int i = 0; i < p->n_tensors; i++) {
        if (p->tensors[i].alias_of >= 0)
            free(t[i]);
        else
            test_tensor_free(b, t[i]);
    }
}

static void check_against_reference(test_program *p) {
    nnopt_tensor *gt[MAX_TENSORS], *rt[MAX_TENSORS];
    bind(&gpu, p, gt, 7);
    bind(&ref, p, rt, 7);
    for (int s = 0; s < p->n_steps; s++) {
        nnopt_tensor *in[NNOPT_PROGRAM_MAX_ARGS];
        for (int k = 0; k < p->steps[s].n_in; k++) in[k] = rt[p->steps[s].in[k]];
        assert_int_equal(
            test_run(&ref, &p->steps[s].op, in, p->steps[s].n_in, &rt[p->steps[s].out[0]], 1),
            NNOPT_OK);
    }
    void *compiled = NULL;
    nnopt_program_info info = {0};
    nnopt_program_options options = {sizeof options, NULL, NULL, cache_dir};
    assert_int_equal(gpu.vt->program_compile(gpu.ctx, &p->prog, &options, &compiled, &info),
                     NNOPT_OK);
    nnopt_op ops[MAX_STEPS];
    for (int s = 0; s < p->n_steps; s++) ops[s] = p->steps[s].op;
    assert_int_equal(gpu.vt->program_run(gpu.ctx, compiled, ops, gt), NNOPT_OK);
    assert_int_equal(gpu.vt->synchronize(gpu.ctx), NNOPT_OK);
    double got[20], want[20];
    test_tensor_read(&gpu, gt[p->logits], got);
    test_tensor_read(&ref, rt[p->logits], want);
    for (int k = 0; k < 20; k++) {
        if (fabs(got[k] - want[k]) > 1e-4 * (1 + fabs(want[k])))
            fail_msg("logit %d: compiled %.9g, reference %.9g", k, got[k], want[k]);
    }
    gpu.vt->program_free(gpu.ctx, compiled);
    unbind(&gpu, p, gt);
    unbind(&ref, p, rt);
}

static void test_lenet_matches_reference(void **state) {
    (void)state;
    test_program p;
    build_lenet(&p);
    check_against_reference(&p);
}

static void test_residual_matches_reference(void **state) {
    (void)state;
    test_program p;
    build_residual(&p);
    check_against_reference(&p);
}

/* ---- without a GPU: the plan and its kernels emulated on the CPU ----
 * The generated source, compiled as C++ with the CUDA keywords defined away,
 * runs every kernel thread by thread on the reference backend's host memory,
 * and the plan's other actions run on that backend: the plan's order, the
 * fallbacks' dropped biases and redirected outputs, and every kernel's
 * indexing and arithmetic are checked against the steps run one by one. */

typedef struct emu_dim {
    unsigned x, y, z;
} emu_dim;

static const char emu_prefix[] =
    "#include <cmath>\n"
    "using std::erf; using std::exp; using std::sqrt; using std::tanh;\n"
    "struct emu_dim { unsigned x, y, z; };\n"
    "extern \"C\" { emu_dim blockIdx, blockDim, threadIdx; }\n"
    "#define __global__\n#define __device__\n"
    "#define __forceinline__ inline\n";

typedef void (*emu_call_fn)(void **args);

/* Builds the emulation library for plan; NULL (with the reason printed) when
 * there is no C++ compiler. */
static void *build_emulation(const test_program *p, const cuda_nv_plan *plan, const char *dir) {
    char src[512], lib[512], cmd[1200];
    snprintf(src, sizeof src, "%s/emulated.cpp", dir);
    snprintf(lib, sizeof lib, "%s/emulated.so", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs(emu_prefix, f);
    fputs(plan->source, f);
    for (int i = 0; i < plan->n_actions; i++) {
        const cuda_nv_action *a = &plan->actions[i];
        if (a->kind != CUDA_NV_KERNEL) continue;
        const char *T = p->tensors[a->args[0]].dtype == NNOPT_F64 ? "double" : "float";
        fprintf(f, "extern \"C\" void emu_call_%d(void **a) { nnopt_nv_%d(", a->kernel, a->kernel);
        for (int k = 0; k < a->n_args; k++) fprintf(f, "%s(%s *)a[%d]", k ? ", " : "", T, k);
        fprintf(f, "); }\n");
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "c++ -std=c++17 -O1 -shared -fPIC -o '%s' '%s' 2>&1", lib, src);
    if (system(cmd) != 0) {
        printf("cannot compile the emulation with c++\n");
        return NULL;
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) printf("dlopen %s: %s\n", lib, dlerror());
    return h;
}

static void run_emulated_kernel(void *lib, const cuda_nv_action *a, nnopt_tensor **t) {
    char name[64];
    snprintf(name, sizeof name, "emu_call_%d", a->kernel);
    void *sym = dlsym(lib, name);
    emu_dim *block_idx = dlsym(lib, "blockIdx"), *block_dim = dlsym(lib, "blockDim");
    emu_dim *thread_idx = dlsym(lib, "threadIdx");
    assert_non_null(sym);
    assert_non_null(block_idx);
    emu_call_fn call;
    memcpy(&call, &sym, sizeof sym); /* object -> function pointer without a cast warning */
    void *args[CUDA_NV_MAX_ARGS];
    for (int k = 0; k < a->n_args; k++) args[k] = t[a->args[k]]->data;
    *block_dim = (emu_dim){CUDA_NV_BLOCK, 1, 1};
    int64_t blocks = (a->threads + CUDA_NV_BLOCK - 1) / CUDA_NV_BLOCK;
    for (int64_t b = 0; b < blocks; b++)
        for (unsigned x = 0; x < CUDA_NV_BLOCK; x++) {
            *block_idx = (emu_dim){(unsigned)b, 0, 0};
            *thread_idx = (emu_dim){x, 0, 0};
            call(args);
        }
}

/* The plan's actions in order: kernels emulated, the rest on the reference. */
static void run_plan_emulated(const test_program *p, const cuda_nv_plan *plan, void *lib,
                              nnopt_tensor **et) {
    for (int i = 0; i < plan->n_actions; i++) {
        const cuda_nv_action *a = &plan->actions[i];
        if (a->kind == CUDA_NV_KERNEL) {
            run_emulated_kernel(lib, a, et);
            continue;
        }
        const nnopt_program_step *st = &p->steps[a->step];
        nnopt_tensor *in[NNOPT_PROGRAM_MAX_ARGS], *out = et[a->out0 >= 0 ? a->out0 : st->out[0]];
        for (int k = 0; k < a->n_in; k++) in[k] = et[st->in[k]];
        assert_int_equal(test_run(&ref, &st->op, in, a->n_in, &out, 1), NNOPT_OK);
    }
}

/* A program generated, built for the CPU and bound twice: et for the
 * emulated kernels, rt for the reference backend's ops. */
typedef struct emulation {
    char dir[40];
    cuda_nv_plan plan;
    void *lib;
    nnopt_tensor *et[MAX_TENSORS], *rt[MAX_TENSORS];
} emulation;

/* Skips the test when no C++ compiler can build the emulation. */
static void emulation_start(test_program *p, emulation *e) {
    snprintf(e->dir, sizeof e->dir, "/tmp/nnopt_test_cuda_emuXXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(cuda_nv_generate(&p->prog, &e->plan), 0);
    e->lib = build_emulation(p, &e->plan, e->dir);
    if (!e->lib) {
        cuda_nv_plan_free(&e->plan);
        skip();
    }
    bind(&ref, p, e->et, 11);
    bind(&ref, p, e->rt, 11);
}

/* Every step on the reference (rt), the plan on the emulated kernels (et). */
static void emulation_run(test_program *p, emulation *e) {
    for (int s = 0; s < p->n_steps; s++) {
        nnopt_tensor *in[NNOPT_PROGRAM_MAX_ARGS];
        for (int k = 0; k < p->steps[s].n_in; k++) in[k] = e->rt[p->steps[s].in[k]];
        assert_int_equal(
            test_run(&ref, &p->steps[s].op, in, p->steps[s].n_in, &e->rt[p->steps[s].out[0]], 1),
            NNOPT_OK);
    }
    run_plan_emulated(p, &e->plan, e->lib, e->et);
}

static void emulation_end(test_program *p, emulation *e) {
    unbind(&ref, p, e->et);
    unbind(&ref, p, e->rt);
    cuda_nv_plan_free(&e->plan);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", e->dir);
}

static void check_emulated(test_program *p, double tolerance) {
    emulation e;
    emulation_start(p, &e);
    emulation_run(p, &e);
    double got[20], want[20];
    test_tensor_read(&ref, e.et[p->logits], got);
    test_tensor_read(&ref, e.rt[p->logits], want);
    for (int k = 0; k < 20; k++)
        if (fabs(got[k] - want[k]) > tolerance * (1 + fabs(want[k])))
            fail_msg("logit %d: emulated %.17g, reference %.17g", k, got[k], want[k]);
    emulation_end(p, &e);
}

static void to_f64(test_program *p) {
    for (int i = 0; i < p->n_tensors; i++) p->tensors[i].dtype = NNOPT_F64;
}

static void test_lenet_emulated(void **state) {
    (void)state;
    test_program p;
    build_lenet(&p);
    check_emulated(&p, 1e-5);
    to_f64(&p);
    check_emulated(&p, 1e-12);
}

static void test_residual_emulated(void **state) {
    (void)state;
    test_program p;
    build_residual(&p);
    check_emulated(&p, 1e-5);
    to_f64(&p);
    check_emulated(&p, 1e-12);
}

static void test_coverage_emulated(void **state) {
    (void)state;
    test_program p;
    build_coverage(&p);
    check_emulated(&p, 1e-5);
    to_f64(&p);
    check_emulated(&p, 1e-12);
}

static void test_coverage_matches_reference(void **state) {
    (void)state;
    test_program p;
    build_coverage(&p);
    check_against_reference(&p);
}

/* relu, max pooling and add + relu of an input with NaNs: standalone
 * kernels whose outputs are all external. */
static void build_nan(test_program *p) {
    memset(p, 0, sizeof *p);
    int x = p->input = add_tensor(p, 1, 4, 2, 1, 4, 4);
    int r = add_tensor(p, 1, 4, 2, 1, 4, 4), m = add_tensor(p, 1, 4, 2, 1, 2, 2);
    int sum = add_tensor(p, 0, 4, 2, 1, 4, 4), u = p->logits = add_tensor(p, 1, 4, 2, 1, 4, 4);
    add_step(p, act_op(NNOPT_ACT_RELU), 1, (int[]){x}, r);
    add_step(p, pool_op(NNOPT_POOL_MAX), 1, (int[]){x}, m);
    add_step(p, (nnopt_op){.kind = NNOPT_OP_ADD}, 2, (int[]){x, x}, sum);
    add_step(p, act_op(NNOPT_ACT_RELU), 1, (int[]){sum}, u);
    finish(p);
}

/* A NaN goes through the generated relu, and wins a max pooling window only
 * as its first input, as on the reference. */
static void check_nan_emulated(test_program *p) {
    emulation e;
    emulation_start(p, &e);
    assert_int_equal(e.plan.specialized_steps, 4);
    /* Image 0's first window holds a NaN last in scan order, its fourth one
     * first; image 1's second window holds one third. */
    double x[32];
    for (int i = 0; i < 32; i++) x[i] = i % 3 == 0 ? -1.0 - i : 0.25 * i;
    x[5] = x[10] = x[16 + 6] = NAN;
    test_tensor_write(&ref, e.et[p->input], x);
    test_tensor_write(&ref, e.rt[p->input], x);
    emulation_run(p, &e);
    for (int s = 0; s < p->n_steps; s++) {
        const int t = p->steps[s].out[0];
        if (!(p->tensors[t].flags & NNOPT_PROGRAM_TENSOR_EXTERNAL)) continue;
        double got[32], want[32];
        int64_t n = 1;
        for (int d = 0; d < p->tensors[t].ndim; d++) n *= p->tensors[t].shape[d];
        test_tensor_read(&ref, e.et[t], got);
        test_tensor_read(&ref, e.rt[t], want);
        for (int64_t k = 0; k < n; k++)
            if (isnan(got[k]) != isnan(want[k]) || (!isnan(want[k]) && got[k] != want[k]))
                fail_msg("step %d (%s) element %lld: emulated %.17g, reference %.17g", s,
                         nnopt_op_kind_name(p->steps[s].op.kind), (long long)k, got[k], want[k]);
    }
    emulation_end(p, &e);
}

static void test_nan_emulated(void **state) {
    (void)state;
    test_program p;
    build_nan(&p);
    check_nan_emulated(&p);
    to_f64(&p);
    check_nan_emulated(&p);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "compile";
    snprintf(cache_dir, sizeof cache_dir, "/tmp/nnopt_test_cuda_nvrtc.%ld", (long)getpid());
    int failed;
    if (strcmp(mode, "compile") == 0) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lenet_compiles),
            cmocka_unit_test(test_residual_compiles),
            cmocka_unit_test(test_coverage_compiles),
            cmocka_unit_test(test_unknown_arch_fails_cleanly),
            cmocka_unit_test(test_arch_choice_and_ptx),
        };
        failed = cmocka_run_group_tests(tests, NULL, NULL);
    } else if (strcmp(mode, "emulated") == 0) {
        if (test_backend_open("cpu", NULL, &ref) != 0) return 1;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lenet_emulated),
            cmocka_unit_test(test_residual_emulated),
            cmocka_unit_test(test_coverage_emulated),
            cmocka_unit_test(test_nan_emulated),
        };
        failed = cmocka_run_group_tests(tests, NULL, NULL);
        test_backend_close(&ref);
    } else if (strcmp(mode, "numerics") == 0) {
        if (test_backend_open("cuda", NULL, &gpu) != 0) {
            printf("SKIP: no CUDA device (the cuda backend does not open here)\n");
            return EXIT_SKIPPED;
        }
        if (test_backend_open("cpu", NULL, &ref) != 0) return 1;
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lenet_matches_reference),
            cmocka_unit_test(test_residual_matches_reference),
            cmocka_unit_test(test_coverage_matches_reference),
        };
        failed = cmocka_run_group_tests(tests, NULL, NULL);
        test_backend_close(&gpu);
        test_backend_close(&ref);
    } else {
        fprintf(stderr, "usage: test_cuda_nvrtc compile|emulated|numerics\n");
        return 2;
    }
    if (!getenv("NNOPT_TEST_KEEP_CACHE")) remove_cache();
    return failed ? 1 : 0;
}
