/* The cuda backend.
 *
 *   test_cuda_backend load
 *     The plugin loads on any machine (it must not need libcuda to dlopen).
 *     Without a usable GPU, opening it fails cleanly: NNOPT_STATUS_DEVICE and
 *     one line "cuda backend: no CUDA device: <reason>". With one, it opens,
 *     describes its device and supports every op but the int8 ones in f32
 *     and f64 (the fused kinds included), and the forward ops in bf16
 *     (tests/test_cuda_bf16.c checks those).
 *   test_cuda_backend numerics [key=value]...
 *     Every op, in f32 and f64, on random shapes and values, against the
 *     reference ("cpu") backend; the settings go to the cuda backend (e.g.
 *     kernels=own). Both backends get the same inputs; outputs (and in-place
 *     updated inputs) must agree within a per-dtype bound relative to the
 *     tensor's scale (the shared harness, tests/support/backend_compare.h).
 *     Without a GPU every test prints "SKIP: no CUDA device (<reason>)" and is
 *     skipped, and the program exits with 77 (ctest's SKIP_RETURN_CODE). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "backend_compare.h"
#include "config.h"
#include "plugin_loader.h"
#include "test_backend.h"

enum { RANDOM_ROUNDS = 8, EXIT_SKIPPED = 77, MAX_SETTINGS = 16 };

static test_backend cuda_backend, ref_backend;
/* NNOPT_TEST_CUDA_AS=cpu runs the numerics against another backend: a check
 * of this test itself on machines without a GPU. */
static const char *device_backend_name = "cuda";
static const char *cuda_settings[MAX_SETTINGS + 1];
static int gpu_available;
static char no_gpu_reason[1024];

/* ---- opening the backend through the core, keeping status and message ---- */

/* Opens the cuda backend with `settings`; returns the status and, on
 * failure, the core's message (what the CLI prints). */
static nnopt_status probe_cuda(const char *const *settings, char *message, size_t size,
                               const nnopt_plugin **plugin_out) {
    message[0] = '\0';
    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    nnopt_error err = {0};
    const nnopt_plugin *plugin = NULL;
    nnopt_status status = nnopt_plugin_load(&search, NNOPT_PLUGIN_BACKEND, "cuda", &plugin, &err);
    nnopt_plugin_search_free(&search);
    if (plugin_out != NULL) *plugin_out = status == NNOPT_OK ? plugin : NULL;
    nnopt_config *cfg = NULL;
    if (status == NNOPT_OK) {
        cfg = nnopt_config_create(plugin->desc->params, (int)plugin->desc->n_params, "cuda");
        status = test_config_apply_settings(cfg, settings, &err);
    }
    nnopt_backend *backend = NULL;
    if (status == NNOPT_OK) status = nnopt_backend_open(plugin, cfg, &backend, &err);
    if (status != NNOPT_OK) snprintf(message, size, "%s", err.message);
    nnopt_backend_close(backend);
    nnopt_config_free(cfg);
    return status;
}

/* The clean no-GPU failure: DEVICE status and one line naming the reason. */
static int is_no_device_failure(nnopt_status status, const char *message) {
    return status == NNOPT_STATUS_DEVICE &&
           strncmp(message, "cuda backend: no CUDA device: ", 30) == 0 && strlen(message) > 30 &&
           strchr(message, '\n') == NULL;
}

#define SKIP_WITHOUT_GPU()                                                                         \
    do {                                                                                           \
        if (!gpu_available) {                                                                      \
            print_message("SKIP: no CUDA device (%s)\n", no_gpu_reason);                           \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- load mode ---- */

static void test_plugin_loads_and_fails_cleanly_without_gpu(void **state) {
    (void)state;
    char message[1024];
    const nnopt_plugin *plugin = NULL;
    const nnopt_status status = probe_cuda(NULL, message, sizeof message, &plugin);
    /* dlopen must work everywhere: only create() may find there is no GPU. */
    assert_non_null(plugin);
    assert_string_equal(plugin->desc->name, "cuda");
    assert_int_equal(plugin->desc->kind, NNOPT_PLUGIN_BACKEND);
    if (status == NNOPT_OK) {
        print_message("# a CUDA device is present: the no-GPU failure is not exercised here\n");
        return;
    }
    print_message("# %s\n", message);
    if (!is_no_device_failure(status, message))
        fail_msg("expected NNOPT_STATUS_DEVICE and 'cuda backend: no CUDA device: <reason>', got "
                 "status %d: '%s'",
                 (int)status, message);
}

static void test_missing_device_index_fails_cleanly(void **state) {
    (void)state;
    char message[1024];
    const char *const settings[] = {"device=1023", NULL};
    const nnopt_status status = probe_cuda(settings, message, sizeof message, NULL);
    print_message("# %s\n", message);
    assert_int_equal(status, NNOPT_STATUS_DEVICE);
    assert_non_null(strstr(message, "cuda backend: no CUDA device"));
    assert_null(strchr(message, '\n'));
}

static void test_open_describe_supports(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    test_backend b;
    assert_int_equal(test_backend_open("cuda", NULL, &b), 0);
    char description[384] = "";
    b.vt->describe(b.ctx, description, sizeof description);
    print_message("# cuda: %s\n", description);
    assert_true(strlen(description) > 0);
    for (int op = 0; op < NNOPT_OP_KIND_COUNT; op++) {
        /* The int8 ops (quantized inference) run on the CPU backends only
         * (the pipeline's op fallback sends them there); every other op,
         * the fused ones included, runs here in f32 and f64. */
        const int cpu_only = op == NNOPT_OP_CONV2D_INT8 || op == NNOPT_OP_DENSE_INT8;
        assert_int_equal(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_F32), !cpu_only);
        assert_int_equal(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_F64), !cpu_only);
        const int forward = op == NNOPT_OP_CONV2D || op == NNOPT_OP_DENSE ||
                            op == NNOPT_OP_POOL2D || op == NNOPT_OP_ACT || op == NNOPT_OP_ADD ||
                            op == NNOPT_OP_CAST || op == NNOPT_OP_BATCHNORM ||
                            op == NNOPT_OP_DROPOUT || op == NNOPT_OP_SOFTMAX_XENT;
        assert_int_equal(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_BF16), forward);
        assert_false(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_I8));
    }
    /* A tensor round trip, larger than one staging chunk, at an offset. */
    const int64_t shape[1] = {5000001};
    nnopt_tensor *t = test_tensor_new(&b, NNOPT_F32, 1, shape, NULL);
    assert_non_null(t);
    float *values = malloc((size_t)shape[0] * sizeof *values), *back = calloc((size_t)shape[0], 4);
    assert_true(values && back);
    for (int64_t i = 0; i < shape[0]; i++) values[i] = (float)i;
    assert_int_equal(b.vt->tensor_write(b.ctx, t, 0, values, (size_t)shape[0] * 4), NNOPT_OK);
    assert_int_equal(b.vt->tensor_read(b.ctx, t, 4, back, (size_t)(shape[0] - 1) * 4), NNOPT_OK);
    for (int64_t i = 0; i < shape[0] - 1; i++) assert_true(back[i] == values[i + 1]);
    assert_int_not_equal(b.vt->tensor_read(b.ctx, t, 8, back, (size_t)shape[0] * 4), NNOPT_OK);
    assert_int_equal(b.vt->tensor_zero(b.ctx, t), NNOPT_OK);
    assert_int_equal(b.vt->tensor_read(b.ctx, t, 0, back, 16), NNOPT_OK);
    assert_true(back[0] == 0 && back[3] == 0);
    assert_int_equal(b.vt->synchronize(b.ctx), NNOPT_OK);
    free(values), free(back);
    test_tensor_free(&b, t);
    test_backend_close(&b);
}

/* ---- convolutions ---- */

static void test_conv_lenet_shapes(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const conv_case conv1 = {32, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}};
    const conv_case conv2 = {32, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}};
    check_conv_case(&conv1, "lenet conv1");
    check_conv_case(&conv2, "lenet conv2");
}

static void test_conv_special_shapes(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const conv_case cases[] = {
        {1, 3, 9, 7, 4, 3, 3, {1, 1, 1, 1, 1}},      /* one image */
        {3, 8, 5, 6, 12, 1, 1, {1, 1, 0, 0, 1}},     /* pointwise */
        {2, 6, 5, 5, 6, 3, 3, {1, 1, 1, 1, 6}},      /* depthwise */
        {4, 32, 16, 16, 32, 3, 3, {2, 2, 1, 1, 32}}, /* depthwise, strided */
        {3, 4, 8, 8, 6, 3, 3, {2, 2, 1, 1, 2}},      /* grouped, strided */
        {2, 4, 6, 6, 4, 1, 1, {2, 2, 0, 0, 2}},      /* grouped pointwise, strided */
        {2, 2, 4, 4, 3, 4, 4, {1, 1, 0, 0, 1}},      /* filter covers the image */
        {3, 2, 3, 5, 2, 3, 2, {3, 1, 2, 1, 1}},      /* padding wider than the stride */
        {2, 3, 4, 5, 4, 1, 1, {1, 1, 1, 1, 1}},      /* padding as wide as the filter */
        {8, 64, 32, 32, 64, 3, 3, {1, 1, 1, 1, 1}},  /* big enough for Winograd/FFT */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "special");
}

static void test_conv_random_shapes(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    check_conv_random_shapes(RANDOM_ROUNDS);
}

/* ---- dense layers, bias gradients, pooling, activations ---- */

static void test_dense(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    check_dense_cases(RANDOM_ROUNDS);
}

static void test_bias_bwd(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    check_bias_bwd_random_shapes(RANDOM_ROUNDS);
}

static void test_pool(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    check_pool_cases(RANDOM_ROUNDS);
    /* Average pooling over padding divides by the whole window (cuDNN's
     * COUNT_INCLUDE_PADDING, not EXCLUDE): the border outputs tell them apart. */
    const nnopt_pool2d_params avg_padded = {NNOPT_POOL_AVG, 3, 3, 2, 2, 1, 1};
    check_pool_case(2, 3, 7, 8, &avg_padded);
}

static void test_activations(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    /* cuDNN's act_bwd reads the forward's y. */
    check_activations(ACT_BWD_FORWARD_Y);
}

static void test_add_cast(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        check_add_case(compare_dtypes[d]);
        check_cast_case(compare_dtypes[d]);
    }
}

/* ---- losses, optimizers ---- */

static void test_softmax_xent(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        const nnopt_dtype dt = compare_dtypes[d];
        for (int round = 0; round < 4; round++) {
            const int64_t n = round == 3 ? 256 : rng_int(1, 20);
            const int64_t k = round == 3 ? 1000 : rng_int(2, 12);
            check_softmax_xent_case(dt, n, k);
            /* weighted, soft targets at T = 2, and added to what the outputs
             * already hold */
            nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT};
            op.p.xent.soft_targets = 1;
            op.p.xent.temperature = 2.0;
            op.p.xent.weight = 0.25;
            op.p.xent.accumulate = 1;
            tensor_spec logits = spec2(n, k);
            logits.range = 5;
            tensor_spec probs = logits;
            probs.values = VALUES_PROBS;
            const tensor_spec outs[2] = {spec1(1), logits};
            double *logit_values = spec_values(&logits), *prob_values = spec_values(&probs);
            double *const values[2] = {logit_values, prob_values};
            nnopt_tensor *cuda_in[2], *cuda_out[2], *ref_in[2], *ref_out[2];
            for (int i = 0; i < 2; i++) {
                cuda_in[i] = test_tensor_new(&cuda_backend, dt, 2, logits.shape, values[i]);
                ref_in[i] = test_tensor_new(&ref_backend, dt, 2, logits.shape, values[i]);
                cuda_out[i] = test_tensor_new(&cuda_backend, dt, outs[i].ndim, outs[i].shape,
                                              i == 0 ? (double[]){0.5} : logit_values);
                ref_out[i] = test_tensor_new(&ref_backend, dt, outs[i].ndim, outs[i].shape,
                                             i == 0 ? (double[]){0.5} : logit_values);
            }
            assert_int_equal(test_run(&ref_backend, &op, ref_in, 2, ref_out, 2), NNOPT_OK);
            assert_int_equal(test_run(&cuda_backend, &op, cuda_in, 2, cuda_out, 2), NNOPT_OK);
            for (int i = 0; i < 2; i++) {
                const int64_t count = i == 0 ? 1 : n * k;
                double *got = calloc((size_t)count, sizeof *got), *want = calloc((size_t)count, 8);
                assert_true(got && want);
                test_tensor_read(&cuda_backend, cuda_out[i], got);
                test_tensor_read(&ref_backend, ref_out[i], want);
                compare_values("softmax_xent weighted, accumulated", i, dt, got, want, count);
                free(got), free(want);
                test_tensor_free(&cuda_backend, cuda_in[i]);
                test_tensor_free(&cuda_backend, cuda_out[i]);
                test_tensor_free(&ref_backend, ref_in[i]);
                test_tensor_free(&ref_backend, ref_out[i]);
            }
            free(logit_values), free(prob_values);
        }
    }
    /* A label out of range is an error, not a device fault. */
    const int64_t shape[2] = {3, 4}, label_shape[1] = {3};
    nnopt_tensor *logits = test_tensor_new(&cuda_backend, NNOPT_F32, 2, shape, NULL);
    nnopt_tensor *labels =
        test_tensor_new(&cuda_backend, NNOPT_I32, 1, label_shape, (double[]){0, 7, 1});
    const int64_t one = 1;
    nnopt_tensor *loss = test_tensor_new(&cuda_backend, NNOPT_F32, 1, &one, NULL);
    nnopt_tensor *dlogits = test_tensor_new(&cuda_backend, NNOPT_F32, 2, shape, NULL);
    nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT};
    op.p.xent.temperature = 1.0;
    nnopt_tensor *ins[2] = {logits, labels}, *outs[2] = {loss, dlogits};
    assert_int_equal(cuda_backend.vt->run(cuda_backend.ctx, &op, ins, 2, outs, 2),
                     NNOPT_STATUS_INVALID_ARGUMENT);
    nnopt_tensor *all[] = {logits, labels, loss, dlogits};
    for (int i = 0; i < 4; i++) test_tensor_free(&cuda_backend, all[i]);
}

static void test_optimizers(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        check_optimizer_case(compare_dtypes[d], 71, 130);
        check_optimizer_sequence(compare_dtypes[d]); /* several tensors a launch */
    }
}

/* ---- batch norm, dropout ---- */

static void test_batchnorm(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    /* check_batchnorm_case (the shared harness): batchnorm, batchnorm_bwd and
     * the fused batchnorm_relu, batchnorm_add_relu and batchnorm_relu_bwd. */
    const tensor_spec lenet = spec4(32, 6, 28, 28), dense = spec2(64, 120);
    check_batchnorm_case(&lenet);
    check_batchnorm_case(&dense);
    for (int round = 0; round < 8; round++) {
        /* One statement per draw: the draws' order fixes the shapes. */
        tensor_spec x = spec4(0, 0, 0, 0);
        x.shape[0] = rng_int(1, 6);
        x.shape[1] = rng_int(1, 9);
        x.shape[2] = rng_int(1, 9);
        x.shape[3] = rng_int(1, 9);
        if (x.shape[0] * x.shape[2] * x.shape[3] < 2) x.shape[0] = 2;
        x.range = 3;
        check_batchnorm_case(&x);
    }
    const tensor_spec single = spec2(1, 5); /* one value per channel */
    check_batchnorm_case(&single);
}

static void test_dropout(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_DROPOUT};
        if (!compare_reference_has(op.kind, compare_dtypes[d])) continue;
        const double ps[] = {0.0, 0.25, 0.5, 0.9};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            op.p.dropout = (nnopt_dropout_params){ps[i], 0xfedcba9876543210ull + i};
            const tensor_spec x = spec4(3, 5, 17, 19);
            const tensor_spec outs[2] = {x, x};
            check_op("dropout", &op, compare_dtypes[d], 1, &x, 2, outs);
        }
        nnopt_op bwd = {.kind = NNOPT_OP_DROPOUT_BWD};
        if (!compare_reference_has(bwd.kind, compare_dtypes[d])) continue;
        const tensor_spec t = spec2(33, 1001);
        const tensor_spec ins[2] = {t, t};
        check_op("dropout_bwd", &bwd, compare_dtypes[d], 2, ins, 1, &t);
    }
}

/* ---- fused kinds: what the comparisons above do not reach ---- */

/* The relus' and masks' NaN and signed-zero handling (the bounds cannot see
 * it), per fused kind as the reference has it. */
static void test_fused_special_values(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) check_relu_special_values(compare_dtypes[d]);
}

/* The fused data gradients on shapes no other test uses (H above the random
 * shapes' 12), before any unfused op of the shape: the plan is made for
 * them, and with conv_algo = find its benchmark writes into scratch, not into
 * the dx they add to. Last in the suite: its random draws shift no other
 * test's. */
static void test_fused_first_use(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const conv_case cases[2] = {{3, 6, 13, 9, 5, 3, 3, {1, 1, 1, 1, 1}},
                                {2, 4, 14, 7, 6, 3, 1, {2, 1, 1, 0, 2}}};
    for (int i = 0; i < 2; i++) {
        const conv_case *cc = &cases[i];
        const int64_t p = (cc->h + 2 * cc->p.pad_h - cc->r) / cc->p.stride_h + 1;
        const int64_t q = (cc->w + 2 * cc->p.pad_w - cc->s) / cc->p.stride_w + 1;
        const tensor_spec x = spec4(cc->n, cc->c, cc->h, cc->w);
        const tensor_spec w = spec4(cc->k, cc->c / cc->p.groups, cc->r, cc->s);
        const tensor_spec y = spec4(cc->n, cc->k, p, q);
        const tensor_spec in[3] = {y, w, x};
        nnopt_op op = {.kind = i == 0 ? NNOPT_OP_CONV2D_BWD_DATA_ADD
                                      : NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED};
        op.p.conv2d = cc->p;
        for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
            check_op_adding(nnopt_op_kind_name(op.kind), &op, compare_dtypes[d], 2 + i, in, 1, &x);
    }
}

/* ---- setup ---- */

static int open_backends(void **state) {
    (void)state;
    if (!gpu_available) return 0;
    if (test_backend_open(device_backend_name, cuda_settings, &cuda_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    /* cuDNN's heuristics pick FFT or Winograd convolutions for some shapes,
     * whose f32 error is many times that of a direct sum: on an H200,
     * LeNet-5's conv1 (1 -> 6 channels, 5x5) came out 2.7e-4 of the output's
     * scale away from the reference. Indexing or layout bugs are O(1) off. */
    const backend_comparison comparison = {.tested = &cuda_backend,
                                           .reference = &ref_backend,
                                           .f32_bound = 1e-3,
                                           .f64_bound = 1e-10,
                                           .skip_ops_reference_lacks = 1};
    compare_backends(&comparison);
    char description[384];
    cuda_backend.vt->describe(cuda_backend.ctx, description, sizeof description);
    printf("# cuda: %s\n", description);
    return 0;
}

static int close_backends(void **state) {
    (void)state;
    if (cuda_backend.vt != NULL) test_backend_close(&cuda_backend);
    if (ref_backend.vt != NULL) test_backend_close(&ref_backend);
    return 0;
}

static int run_numerics(void);

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "load";
    for (int i = 2; i < argc && i - 2 < MAX_SETTINGS; i++) cuda_settings[i - 2] = argv[i];
    const char *stand_in = getenv("NNOPT_TEST_CUDA_AS");
    if (stand_in != NULL && stand_in[0] != '\0' && strcmp(mode, "numerics") == 0) {
        device_backend_name = stand_in;
        gpu_available = 1;
        printf("# NNOPT_TEST_CUDA_AS: checking backend '%s' instead of cuda\n", stand_in);
        return run_numerics();
    }
    const nnopt_status status =
        probe_cuda(cuda_settings, no_gpu_reason, sizeof no_gpu_reason, NULL);
    gpu_available = status == NNOPT_OK;
    if (!gpu_available && !is_no_device_failure(status, no_gpu_reason)) {
        /* Not the clean no-GPU failure: a broken build or bad settings. */
        fprintf(stderr, "test_cuda_backend: opening the cuda backend failed: %s\n", no_gpu_reason);
        return 1;
    }
    if (strcmp(mode, "load") == 0) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_plugin_loads_and_fails_cleanly_without_gpu),
            cmocka_unit_test(test_missing_device_index_fails_cleanly),
            cmocka_unit_test(test_open_describe_supports),
        };
        return cmocka_run_group_tests_name("cuda backend: load", tests, NULL, NULL);
    }
    if (strcmp(mode, "numerics") != 0) {
        fprintf(stderr, "usage: test_cuda_backend [load | numerics [key=value]...]\n");
        return 2;
    }
    const char *prefix = "cuda backend: no CUDA device: ";
    if (!gpu_available && strncmp(no_gpu_reason, prefix, strlen(prefix)) == 0)
        memmove(no_gpu_reason, no_gpu_reason + strlen(prefix),
                strlen(no_gpu_reason + strlen(prefix)) + 1);
    return run_numerics();
}

static int run_numerics(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_lenet_shapes),
        cmocka_unit_test(test_conv_special_shapes),
        cmocka_unit_test(test_conv_random_shapes),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_bias_bwd),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_add_cast),
        cmocka_unit_test(test_softmax_xent),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_fused_special_values),
        cmocka_unit_test(test_fused_first_use),
    };
    const int failed = cmocka_run_group_tests_name("cuda backend vs reference", tests,
                                                   open_backends, close_backends);
    if (failed == 0 && !gpu_available) {
        printf("SKIP: no CUDA device (%s): numerics not checked\n", no_gpu_reason);
        return EXIT_SKIPPED;
    }
    return failed;
}
