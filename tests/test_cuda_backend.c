/* The cuda backend.
 *
 *   test_cuda_backend load
 *     The plugin loads on any machine (it must not need libcuda to dlopen).
 *     Without a usable GPU, opening it fails cleanly: NNOPT_STATUS_DEVICE and
 *     one line "cuda backend: no CUDA device: <reason>". With one, it opens,
 *     describes its device and supports every op in f32 and f64.
 *   test_cuda_backend numerics [key=value]...
 *     Every op, in f32 and f64, on random shapes and values, against the
 *     reference ("cpu") backend; the settings go to the cuda backend (e.g.
 *     kernels=own). Both backends get the same inputs; outputs (and in-place
 *     updated inputs) must agree within a per-dtype bound relative to the
 *     tensor's scale:
 *       |cuda - ref| <= bound * (|ref| + max |ref| over the tensor) + 1e-14
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
#include "config.h"
#include "plugin_loader.h"
#include "test_backend.h"

enum { MAX_TENSORS = 5, RANDOM_ROUNDS = 8, EXIT_SKIPPED = 77, MAX_SETTINGS = 16 };

static test_backend cuda_backend, ref_backend;
/* NNOPT_TEST_CUDA_AS=cpu runs the numerics against another backend: a check
 * of this test itself on machines without a GPU. */
static const char *device_backend_name = "cuda";
static const char *cuda_settings[MAX_SETTINGS + 1];
static int gpu_available;
static char no_gpu_reason[1024];

/* cuDNN may pick FFT or Winograd convolutions, whose f32 error is a few
 * times that of a direct sum. */
static int reference_has(nnopt_op_kind kind, nnopt_dtype dtype);

static double error_bound(nnopt_dtype dtype) {
    return dtype == NNOPT_F32 ? 2e-4 : 1e-10;
}

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
        for (int i = 0; settings != NULL && settings[i] != NULL && status == NNOPT_OK; i++) {
            char key[128];
            const char *eq = strchr(settings[i], '=');
            snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - settings[i]) : 0, settings[i]);
            status = nnopt_config_set(cfg, key, eq ? eq + 1 : "", "test", &err);
        }
        if (status == NNOPT_OK) status = nnopt_config_finish(cfg, "test", &err);
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
        assert_true(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_F32));
        assert_true(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_F64));
        assert_false(b.vt->supports(b.ctx, (nnopt_op_kind)op, NNOPT_BF16));
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

/* ---- deterministic random numbers (xorshift64*) ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static int rng_int(int lo, int hi) {
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}
static double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- one op on both backends ---- */

typedef enum value_kind {
    VALUES_UNIFORM = 0, /* U(-range, range) */
    VALUES_POSITIVE,    /* U(0.01, range): Adam's second moment */
    VALUES_LABELS,      /* I32 class labels in [0, classes) */
    VALUES_PROBS,       /* rows summing to 1 (soft targets) */
} value_kind;

typedef struct tensor_spec {
    int ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    value_kind values;
    double range;       /* UNIFORM/POSITIVE; 0 means 1 */
    int classes;        /* LABELS */
    int dtype_override; /* 1: use `dtype` below instead of the op's */
    nnopt_dtype dtype;
} tensor_spec;

static int64_t spec_numel(const tensor_spec *s) {
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
    return n;
}

static double *spec_values(const tensor_spec *s) {
    const int64_t n = spec_numel(s);
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    assert_non_null(v);
    const double range = s->range > 0 ? s->range : 1.0;
    for (int64_t i = 0; i < n; i++) {
        switch (s->values) {
        case VALUES_UNIFORM:
            v[i] = rng_uniform(-range, range);
            break;
        case VALUES_POSITIVE:
            v[i] = rng_uniform(0.01, range);
            break;
        case VALUES_LABELS:
            v[i] = (double)rng_int(0, s->classes - 1);
            break;
        case VALUES_PROBS:
            v[i] = rng_uniform(0.0, 1.0);
            break;
        }
    }
    if (s->values == VALUES_PROBS) {
        const int64_t cols = s->shape[s->ndim - 1], rows = n / cols;
        for (int64_t r = 0; r < rows; r++) {
            double sum = 0;
            for (int64_t c = 0; c < cols; c++) sum += v[r * cols + c];
            for (int64_t c = 0; c < cols; c++) v[r * cols + c] /= sum;
        }
    }
    return v;
}

static void compare_values(const char *what, int index, nnopt_dtype dtype, const double *got,
                           const double *want, int64_t n) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    const double bound = error_bound(dtype);
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]);
        if (!(err <= bound * (fabs(want[i]) + scale) + 1e-14)) {
            print_error("%s tensor %d element %lld: cuda %.17g, ref %.17g (scale %g, %s)\n", what,
                        index, (long long)i, got[i], want[i], scale, nnopt_dtype_name(dtype));
            fail();
        }
    }
}

/* Runs op with fresh random inputs on both backends and compares every
 * output and every input (in-place ops update their inputs). */
static void check_op(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                     const tensor_spec *in_specs, int n_out, const tensor_spec *out_specs) {
    if (!reference_has(op->kind, dtype)) return;
    nnopt_tensor *cuda_in[MAX_TENSORS] = {0}, *ref_in[MAX_TENSORS] = {0};
    nnopt_tensor *cuda_out[MAX_TENSORS] = {0}, *ref_out[MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++) {
        const tensor_spec *s = &in_specs[i];
        const nnopt_dtype dt =
            s->values == VALUES_LABELS ? NNOPT_I32 : (s->dtype_override ? s->dtype : dtype);
        double *values = spec_values(s);
        cuda_in[i] = test_tensor_new(&cuda_backend, dt, s->ndim, s->shape, values);
        ref_in[i] = test_tensor_new(&ref_backend, dt, s->ndim, s->shape, values);
        assert_non_null(cuda_in[i]);
        assert_non_null(ref_in[i]);
        free(values);
    }
    for (int i = 0; i < n_out; i++) {
        const tensor_spec *s = &out_specs[i];
        const nnopt_dtype dt = s->dtype_override ? s->dtype : dtype;
        /* Outputs start as garbage, so an op that forgets to write one fails. */
        double *garbage = spec_values(s);
        cuda_out[i] = test_tensor_new(&cuda_backend, dt, s->ndim, s->shape, garbage);
        ref_out[i] = test_tensor_new(&ref_backend, dt, s->ndim, s->shape, NULL);
        assert_non_null(cuda_out[i]);
        assert_non_null(ref_out[i]);
        free(garbage);
    }
    assert_int_equal(test_run(&ref_backend, op, ref_in, n_in, ref_out, n_out), NNOPT_OK);
    assert_int_equal(test_run(&cuda_backend, op, cuda_in, n_in, cuda_out, n_out), NNOPT_OK);

    for (int pass = 0; pass < 2; pass++) {
        const int count = pass == 0 ? n_out : n_in;
        for (int i = 0; i < count; i++) {
            nnopt_tensor *got_t = pass == 0 ? cuda_out[i] : cuda_in[i];
            nnopt_tensor *want_t = pass == 0 ? ref_out[i] : ref_in[i];
            const int64_t n = nnopt_tensor_numel(want_t);
            double *got = calloc((size_t)(n > 0 ? n : 1), sizeof *got);
            double *want = calloc((size_t)(n > 0 ? n : 1), sizeof *want);
            assert_non_null(got);
            assert_non_null(want);
            test_tensor_read(&cuda_backend, got_t, got);
            test_tensor_read(&ref_backend, want_t, want);
            char label[160];
            snprintf(label, sizeof label, "%s (%s)", what, pass == 0 ? "output" : "input");
            compare_values(label, i, got_t->dtype == NNOPT_I32 ? dtype : got_t->dtype, got, want,
                           n);
            free(got);
            free(want);
        }
    }
    for (int i = 0; i < n_in; i++) {
        test_tensor_free(&cuda_backend, cuda_in[i]);
        test_tensor_free(&ref_backend, ref_in[i]);
    }
    for (int i = 0; i < n_out; i++) {
        test_tensor_free(&cuda_backend, cuda_out[i]);
        test_tensor_free(&ref_backend, ref_out[i]);
    }
}

static tensor_spec spec4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return (tensor_spec){.ndim = 4, .shape = {a, b, c, d}};
}
static tensor_spec spec2(int64_t a, int64_t b) {
    return (tensor_spec){.ndim = 2, .shape = {a, b}};
}
static tensor_spec spec1(int64_t a) {
    return (tensor_spec){.ndim = 1, .shape = {a}};
}

static const nnopt_dtype dtypes[] = {NNOPT_F32, NNOPT_F64};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

/* The reference implements the op (ops it lacks are reported, not failed). */
static int reference_has(nnopt_op_kind kind, nnopt_dtype dtype) {
    if (ref_backend.vt->supports(ref_backend.ctx, kind, dtype)) return 1;
    print_message("# reference backend lacks %s (%s): not compared\n", nnopt_op_kind_name(kind),
                  nnopt_dtype_name(dtype));
    return 0;
}

/* ---- convolutions ---- */

typedef struct conv_case {
    int64_t n, c, h, w, k, r, s;
    nnopt_conv2d_params p;
} conv_case;

static void check_conv_case(const conv_case *cc, const char *label) {
    const int64_t p = (cc->h + 2 * cc->p.pad_h - cc->r) / cc->p.stride_h + 1;
    const int64_t q = (cc->w + 2 * cc->p.pad_w - cc->s) / cc->p.stride_w + 1;
    const tensor_spec x = spec4(cc->n, cc->c, cc->h, cc->w);
    const tensor_spec w = spec4(cc->k, cc->c / cc->p.groups, cc->r, cc->s);
    const tensor_spec y = spec4(cc->n, cc->k, p, q), b = spec1(cc->k);
    char what[200];
    for (size_t d = 0; d < N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_CONV2D};
        op.p.conv2d = cc->p;
        snprintf(what, sizeof what,
                 "%s conv2d N%lld C%lld %lldx%lld K%lld %lldx%lld s%d,%d p%d,%d g%d", label,
                 (long long)cc->n, (long long)cc->c, (long long)cc->h, (long long)cc->w,
                 (long long)cc->k, (long long)cc->r, (long long)cc->s, cc->p.stride_h,
                 cc->p.stride_w, cc->p.pad_h, cc->p.pad_w, cc->p.groups);
        const tensor_spec fwd_in[3] = {x, w, b};
        check_op(what, &op, dtypes[d], 3, fwd_in, 1, &y);
        check_op(what, &op, dtypes[d], 2, fwd_in, 1, &y); /* without bias */
        op.kind = NNOPT_OP_CONV2D_BWD_DATA;
        const tensor_spec data_in[2] = {y, w};
        check_op(what, &op, dtypes[d], 2, data_in, 1, &x);
        op.kind = NNOPT_OP_CONV2D_BWD_FILTER;
        const tensor_spec filter_in[2] = {x, y};
        check_op(what, &op, dtypes[d], 2, filter_in, 1, &w);
    }
}

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
        {8, 64, 32, 32, 64, 3, 3, {1, 1, 1, 1, 1}},  /* big enough for Winograd/FFT */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "special");
}

static void test_conv_random_shapes(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        conv_case cc;
        cc.p.groups = rng_int(1, 3);
        cc.n = rng_int(1, 5);
        cc.c = cc.p.groups * rng_int(1, 4);
        cc.k = cc.p.groups * rng_int(1, 5);
        cc.h = rng_int(1, 12);
        cc.w = rng_int(1, 12);
        cc.p.pad_h = rng_int(0, 2);
        cc.p.pad_w = rng_int(0, 2);
        cc.r = rng_int(1, (int)(cc.h + 2 * cc.p.pad_h < 5 ? cc.h + 2 * cc.p.pad_h : 5));
        cc.s = rng_int(1, (int)(cc.w + 2 * cc.p.pad_w < 5 ? cc.w + 2 * cc.p.pad_w : 5));
        if (cc.p.pad_h >= cc.r) cc.p.pad_h = (int32_t)cc.r - 1;
        if (cc.p.pad_w >= cc.s) cc.p.pad_w = (int32_t)cc.s - 1;
        cc.p.stride_h = rng_int(1, 3);
        cc.p.stride_w = rng_int(1, 3);
        check_conv_case(&cc, "random");
    }
}

/* ---- dense layers, bias gradients ---- */

static void check_dense_case(int64_t n, int64_t in, int64_t out) {
    const tensor_spec x = spec2(n, in), w = spec2(out, in), b = spec1(out), y = spec2(n, out);
    char what[120];
    snprintf(what, sizeof what, "dense N%lld IN%lld OUT%lld", (long long)n, (long long)in,
             (long long)out);
    for (size_t d = 0; d < N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_DENSE};
        const tensor_spec fwd_in[3] = {x, w, b};
        check_op(what, &op, dtypes[d], 3, fwd_in, 1, &y);
        check_op(what, &op, dtypes[d], 2, fwd_in, 1, &y);
        op.kind = NNOPT_OP_DENSE_BWD_DATA;
        const tensor_spec data_in[2] = {y, w};
        check_op(what, &op, dtypes[d], 2, data_in, 1, &x);
        op.kind = NNOPT_OP_DENSE_BWD_WEIGHT;
        const tensor_spec weight_in[2] = {x, y};
        check_op(what, &op, dtypes[d], 2, weight_in, 1, &w);
    }
}

static void test_dense(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    check_dense_case(128, 400, 120);
    check_dense_case(128, 84, 10);
    check_dense_case(1, 7, 3);
    for (int round = 0; round < RANDOM_ROUNDS; round++)
        check_dense_case(rng_int(1, 40), rng_int(1, 70), rng_int(1, 50));
}

static void test_bias_bwd(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    nnopt_op op = {.kind = NNOPT_OP_BIAS_BWD};
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        const int64_t n = rng_int(1, 9), k = rng_int(1, 17);
        const tensor_spec dy4 = spec4(n, k, rng_int(1, 20), rng_int(1, 20)), dy2 = spec2(n, k);
        const tensor_spec db = spec1(k);
        for (size_t d = 0; d < N_DTYPES; d++) {
            check_op("bias_bwd 4-D", &op, dtypes[d], 1, &dy4, 1, &db);
            check_op("bias_bwd 2-D", &op, dtypes[d], 1, &dy2, 1, &db);
        }
    }
}

/* ---- ops whose backward takes forward results: computed by the reference ---- */

/* Runs `forward` on the reference with inputs `fwd_values` and returns output
 * `which`'s values (caller frees). */
static double *reference_forward(const nnopt_op *forward, nnopt_dtype dtype, int n_in,
                                 const tensor_spec *in_specs, double *const *fwd_values, int n_out,
                                 const tensor_spec *out_specs, int which) {
    nnopt_tensor *ins[MAX_TENSORS] = {0}, *outs[MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++)
        ins[i] = test_tensor_new(&ref_backend, dtype, in_specs[i].ndim, in_specs[i].shape,
                                 fwd_values[i]);
    for (int i = 0; i < n_out; i++)
        outs[i] = test_tensor_new(&ref_backend, dtype, out_specs[i].ndim, out_specs[i].shape, NULL);
    assert_int_equal(test_run(&ref_backend, forward, ins, n_in, outs, n_out), NNOPT_OK);
    const int64_t n = spec_numel(&out_specs[which]);
    double *values = calloc((size_t)(n > 0 ? n : 1), sizeof *values);
    assert_non_null(values);
    test_tensor_read(&ref_backend, outs[which], values);
    for (int i = 0; i < n_in; i++) test_tensor_free(&ref_backend, ins[i]);
    for (int i = 0; i < n_out; i++) test_tensor_free(&ref_backend, outs[i]);
    return values;
}

/* Runs op on both backends with the given input values (no random inputs)
 * and compares the outputs. */
static void check_op_with_values(const char *what, const nnopt_op *op, nnopt_dtype dtype, int n_in,
                                 const tensor_spec *in_specs, double *const *values, int n_out,
                                 const tensor_spec *out_specs) {
    nnopt_tensor *cuda_in[MAX_TENSORS] = {0}, *ref_in[MAX_TENSORS] = {0};
    nnopt_tensor *cuda_out[MAX_TENSORS] = {0}, *ref_out[MAX_TENSORS] = {0};
    for (int i = 0; i < n_in; i++) {
        cuda_in[i] =
            test_tensor_new(&cuda_backend, dtype, in_specs[i].ndim, in_specs[i].shape, values[i]);
        ref_in[i] =
            test_tensor_new(&ref_backend, dtype, in_specs[i].ndim, in_specs[i].shape, values[i]);
        assert_true(cuda_in[i] && ref_in[i]);
    }
    for (int i = 0; i < n_out; i++) {
        double *garbage = spec_values(&out_specs[i]);
        cuda_out[i] =
            test_tensor_new(&cuda_backend, dtype, out_specs[i].ndim, out_specs[i].shape, garbage);
        ref_out[i] =
            test_tensor_new(&ref_backend, dtype, out_specs[i].ndim, out_specs[i].shape, NULL);
        assert_true(cuda_out[i] && ref_out[i]);
        free(garbage);
    }
    assert_int_equal(test_run(&ref_backend, op, ref_in, n_in, ref_out, n_out), NNOPT_OK);
    assert_int_equal(test_run(&cuda_backend, op, cuda_in, n_in, cuda_out, n_out), NNOPT_OK);
    for (int i = 0; i < n_out; i++) {
        const int64_t n = spec_numel(&out_specs[i]);
        double *got = calloc((size_t)(n > 0 ? n : 1), sizeof *got);
        double *want = calloc((size_t)(n > 0 ? n : 1), sizeof *want);
        assert_true(got && want);
        test_tensor_read(&cuda_backend, cuda_out[i], got);
        test_tensor_read(&ref_backend, ref_out[i], want);
        compare_values(what, i, dtype, got, want, n);
        free(got), free(want);
    }
    for (int i = 0; i < n_in; i++) {
        test_tensor_free(&cuda_backend, cuda_in[i]);
        test_tensor_free(&ref_backend, ref_in[i]);
    }
    for (int i = 0; i < n_out; i++) {
        test_tensor_free(&cuda_backend, cuda_out[i]);
        test_tensor_free(&ref_backend, ref_out[i]);
    }
}

static void check_pool_case(int64_t n, int64_t c, int64_t h, int64_t w,
                            const nnopt_pool2d_params *pp) {
    const int64_t p = (h + 2 * pp->pad_h - pp->kernel_h) / pp->stride_h + 1;
    const int64_t q = (w + 2 * pp->pad_w - pp->kernel_w) / pp->stride_w + 1;
    const tensor_spec x = spec4(n, c, h, w), y = spec4(n, c, p, q);
    char what[160];
    snprintf(what, sizeof what, "pool2d %s %lldx%lld k%dx%d s%d,%d p%d,%d",
             pp->kind == NNOPT_POOL_MAX ? "max" : "avg", (long long)h, (long long)w, pp->kernel_h,
             pp->kernel_w, pp->stride_h, pp->stride_w, pp->pad_h, pp->pad_w);
    for (size_t d = 0; d < N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_POOL2D};
        op.p.pool2d = *pp;
        check_op(what, &op, dtypes[d], 1, &x, 1, &y);
        double *xv = spec_values(&x), *dyv = spec_values(&y);
        double *yv = reference_forward(&op, dtypes[d], 1, &x, &xv, 1, &y, 0);
        op.kind = NNOPT_OP_POOL2D_BWD;
        const tensor_spec bwd_in[3] = {x, y, y};
        double *const values[3] = {xv, yv, dyv};
        check_op_with_values(what, &op, dtypes[d], 3, bwd_in, values, 1, &x);
        free(xv), free(yv), free(dyv);
    }
}

static void test_pool(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    const nnopt_pool2d_params lenet = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    check_pool_case(4, 6, 28, 28, &lenet);
    const nnopt_pool2d_params max3 = {NNOPT_POOL_MAX, 3, 3, 2, 2, 1, 1};
    check_pool_case(3, 5, 9, 8, &max3);
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        nnopt_pool2d_params pp = {rng_int(0, 1) ? NNOPT_POOL_MAX : NNOPT_POOL_AVG,
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  rng_int(1, 3),
                                  0,
                                  0};
        pp.pad_h = rng_int(0, pp.kernel_h / 2);
        pp.pad_w = rng_int(0, pp.kernel_w / 2);
        check_pool_case(rng_int(1, 4), rng_int(1, 5), rng_int(pp.kernel_h, 13),
                        rng_int(pp.kernel_w, 13), &pp);
    }
}

static void test_activations(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int kind = 0; kind < NNOPT_ACT_KIND_COUNT; kind++) {
        for (size_t d = 0; d < N_DTYPES; d++) {
            const int64_t sizes[] = {1, 37, 100003};
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                tensor_spec x = spec2(1, sizes[si]);
                x.range = si == 1 ? 0.3 : 8.0;
                char what[80];
                snprintf(what, sizeof what, "act %s x%lld", nnopt_act_kind_name(kind),
                         (long long)sizes[si]);
                nnopt_op op = {.kind = NNOPT_OP_ACT};
                op.p.act.kind = (nnopt_act_kind)kind;
                check_op(what, &op, dtypes[d], 1, &x, 1, &x);
                /* act_bwd gets the forward's real y: cuDNN's backward reads it. */
                double *xv = spec_values(&x), *dyv = spec_values(&x);
                double *yv = reference_forward(&op, dtypes[d], 1, &x, &xv, 1, &x, 0);
                op.kind = NNOPT_OP_ACT_BWD;
                const tensor_spec bwd_in[3] = {x, x, x};
                double *const values[3] = {xv, yv, dyv};
                check_op_with_values(what, &op, dtypes[d], 3, bwd_in, values, 1, &x);
                free(xv), free(yv), free(dyv);
            }
        }
    }
}

static void test_add_cast(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    nnopt_op op = {.kind = NNOPT_OP_ADD};
    const int64_t sizes[] = {1, 1000, 200001};
    for (size_t d = 0; d < N_DTYPES; d++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const tensor_spec t = spec2(1, sizes[si]);
            const tensor_spec ins[2] = {t, t};
            check_op("add", &op, dtypes[d], 2, ins, 1, &t);
        }
        /* y aliasing a */
        const int64_t shape[2] = {3, 1001};
        double *a = calloc(3003, sizeof *a), *b = calloc(3003, sizeof *b),
               *got = calloc(3003, sizeof *got);
        assert_true(a && b && got);
        for (int i = 0; i < 3003; i++) a[i] = rng_uniform(-1, 1), b[i] = rng_uniform(-1, 1);
        nnopt_tensor *ta = test_tensor_new(&cuda_backend, dtypes[d], 2, shape, a);
        nnopt_tensor *tb = test_tensor_new(&cuda_backend, dtypes[d], 2, shape, b);
        nnopt_tensor *ins[2] = {ta, tb}, *outs[1] = {ta};
        assert_int_equal(test_run(&cuda_backend, &op, ins, 2, outs, 1), NNOPT_OK);
        test_tensor_read(&cuda_backend, ta, got);
        for (int i = 0; i < 3003; i++)
            assert_true(fabs(got[i] - (a[i] + b[i])) <= 1e-6 * (1 + fabs(a[i] + b[i])));
        test_tensor_free(&cuda_backend, ta);
        test_tensor_free(&cuda_backend, tb);
        free(a), free(b), free(got);

        nnopt_op cast = {.kind = NNOPT_OP_CAST};
        const tensor_spec param = spec2(7, 13);
        for (int same = 0; same < 2; same++) {
            tensor_spec other = param;
            other.dtype_override = 1;
            other.dtype = same ? dtypes[d] : (dtypes[d] == NNOPT_F32 ? NNOPT_F64 : NNOPT_F32);
            check_op(same ? "cast (copy)" : "cast", &cast, dtypes[d], 1, &param, 1, &other);
        }
    }
}

/* ---- losses, optimizers ---- */

static void test_softmax_xent(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < N_DTYPES; d++) {
        const nnopt_dtype dt = dtypes[d];
        for (int round = 0; round < 4; round++) {
            const int64_t n = round == 3 ? 256 : rng_int(1, 20);
            const int64_t k = round == 3 ? 1000 : rng_int(2, 12);
            nnopt_op op = {.kind = NNOPT_OP_SOFTMAX_XENT};
            op.p.xent.temperature = 1.0;
            tensor_spec logits = spec2(n, k);
            logits.range = 5;
            tensor_spec labels = spec1(n);
            labels.values = VALUES_LABELS;
            labels.classes = (int)k;
            const tensor_spec loss = spec1(1);
            const tensor_spec outs[2] = {loss, logits};
            const tensor_spec hard_in[2] = {logits, labels};
            check_op("softmax_xent labels", &op, dt, 2, hard_in, 2, outs);
            tensor_spec probs = logits;
            probs.values = VALUES_PROBS;
            const tensor_spec soft_in[2] = {logits, probs};
            op.p.xent.soft_targets = 1;
            op.p.xent.temperature = 2.0;
            check_op("softmax_xent soft T=2", &op, dt, 2, soft_in, 2, outs);
            /* weighted, and added to what the outputs already hold */
            op.p.xent.weight = 0.25;
            op.p.xent.accumulate = 1;
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
    for (size_t d = 0; d < N_DTYPES; d++) {
        const nnopt_dtype dt = dtypes[d];
        const tensor_spec param = spec2(71, 130);
        tensor_spec v = param;
        v.values = VALUES_POSITIVE;
        nnopt_op sgd = {.kind = NNOPT_OP_SGD_UPDATE};
        sgd.p.sgd = (nnopt_sgd_params){0.1, 0.0, 0.0, 0};
        const tensor_spec sgd_in[3] = {param, param, param};
        check_op("sgd", &sgd, dt, 2, sgd_in, 0, NULL);
        sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 0};
        check_op("sgd momentum", &sgd, dt, 3, sgd_in, 0, NULL);
        sgd.p.sgd = (nnopt_sgd_params){0.05, 0.9, 1e-4, 1};
        check_op("sgd nesterov", &sgd, dt, 3, sgd_in, 0, NULL);
        nnopt_op adam = {.kind = NNOPT_OP_ADAM_UPDATE};
        adam.p.adam = (nnopt_adam_params){1e-3, 0.9, 0.999, 1e-8, 1e-2, 3};
        const tensor_spec adam_in[4] = {param, param, param, v};
        check_op("adam", &adam, dt, 4, adam_in, 0, NULL);
    }
}

/* ---- batch norm, dropout ---- */

static void check_batchnorm_case(const tensor_spec *x, nnopt_dtype dt) {
    const int64_t channels = x->shape[1];
    const tensor_spec per_channel = spec1(channels);
    tensor_spec positive = per_channel;
    positive.values = VALUES_POSITIVE;
    nnopt_op op = {.kind = NNOPT_OP_BATCHNORM};
    op.p.bn = (nnopt_bn_params){1e-5, 0.1, 1};
    if (!reference_has(op.kind, dt)) return;
    const tensor_spec in[5] = {*x, per_channel, per_channel, per_channel, positive};
    const tensor_spec train_out[3] = {*x, per_channel, positive};
    check_op("batchnorm training", &op, dt, 5, in, 3, train_out);
    op.p.bn.training = 0;
    check_op("batchnorm inference", &op, dt, 5, in, 1, train_out);

    /* Backward with the statistics of a real forward (cuDNN may rely on them). */
    op.p.bn.training = 1;
    double *fwd_values[5];
    for (int i = 0; i < 5; i++) fwd_values[i] = spec_values(&in[i]);
    double *mean = reference_forward(&op, dt, 5, in, fwd_values, 3, train_out, 1);
    double *invstd = reference_forward(&op, dt, 5, in, fwd_values, 3, train_out, 2);
    double *dy = spec_values(x);
    nnopt_op bwd = {.kind = NNOPT_OP_BATCHNORM_BWD};
    bwd.p.bn = op.p.bn;
    const tensor_spec bwd_in[5] = {*x, per_channel, *x, per_channel, per_channel};
    double *const bwd_values[5] = {fwd_values[0], fwd_values[1], dy, mean, invstd};
    const tensor_spec bwd_out[3] = {*x, per_channel, per_channel};
    if (reference_has(bwd.kind, dt))
        check_op_with_values("batchnorm_bwd", &bwd, dt, 5, bwd_in, bwd_values, 3, bwd_out);
    for (int i = 0; i < 5; i++) free(fwd_values[i]);
    free(mean), free(invstd), free(dy);
}

static void test_batchnorm(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < N_DTYPES; d++) {
        const tensor_spec lenet = spec4(32, 6, 28, 28), dense = spec2(64, 120);
        check_batchnorm_case(&lenet, dtypes[d]);
        check_batchnorm_case(&dense, dtypes[d]);
        for (int round = 0; round < 4; round++) {
            tensor_spec x = spec4(rng_int(1, 6), rng_int(1, 9), rng_int(1, 9), rng_int(1, 9));
            if (x.shape[0] * x.shape[2] * x.shape[3] < 2) x.shape[0] = 2;
            x.range = 3;
            check_batchnorm_case(&x, dtypes[d]);
        }
        const tensor_spec single = spec2(1, 5); /* one value per channel */
        check_batchnorm_case(&single, dtypes[d]);
    }
}

static void test_dropout(void **state) {
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t d = 0; d < N_DTYPES; d++) {
        nnopt_op op = {.kind = NNOPT_OP_DROPOUT};
        if (!reference_has(op.kind, dtypes[d])) continue;
        const double ps[] = {0.0, 0.25, 0.5, 0.9};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            op.p.dropout = (nnopt_dropout_params){ps[i], 0xfedcba9876543210ull + i};
            const tensor_spec x = spec4(3, 5, 17, 19);
            const tensor_spec outs[2] = {x, x};
            check_op("dropout", &op, dtypes[d], 1, &x, 2, outs);
        }
        nnopt_op bwd = {.kind = NNOPT_OP_DROPOUT_BWD};
        if (!reference_has(bwd.kind, dtypes[d])) continue;
        const tensor_spec t = spec2(33, 1001);
        const tensor_spec ins[2] = {t, t};
        check_op("dropout_bwd", &bwd, dtypes[d], 2, ins, 1, &t);
    }
}

/* ---- setup ---- */

static int open_backends(void **state) {
    (void)state;
    if (!gpu_available) return 0;
    if (test_backend_open(device_backend_name, cuda_settings, &cuda_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
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
        cmocka_unit_test(test_conv_lenet_shapes),  cmocka_unit_test(test_conv_special_shapes),
        cmocka_unit_test(test_conv_random_shapes), cmocka_unit_test(test_dense),
        cmocka_unit_test(test_bias_bwd),           cmocka_unit_test(test_pool),
        cmocka_unit_test(test_activations),        cmocka_unit_test(test_add_cast),
        cmocka_unit_test(test_softmax_xent),       cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_batchnorm),          cmocka_unit_test(test_dropout),
    };
    const int failed = cmocka_run_group_tests_name("cuda backend vs reference", tests,
                                                   open_backends, close_backends);
    if (failed == 0 && !gpu_available) {
        printf("SKIP: no CUDA device (%s): numerics not checked\n", no_gpu_reason);
        return EXIT_SKIPPED;
    }
    return failed;
}
