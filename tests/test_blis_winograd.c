/* The blis backend's Winograd convolutions (winograd=f2 / f4 / auto) against
 * the reference ("cpu") backend: forward (with and without bias), data and
 * filter gradients, f32 and f64, on ResNet-CIFAR's shapes and on random 3x3
 * stride-1 shapes (odd sizes, padding 0-2, batches that leave a group of
 * images part-filled, channel counts off the 8-channel block).
 *
 * f32 bound: Winograd's transforms scale products by up to 8 (F(4x4,3x3)'s
 * A^T) and 1/24 (G) and sum them with cancellation, so its rounding error
 * grows with the tile: the worst |blis - ref| / (|ref| + max |ref|) over
 * these cases was 6.4e-6 for F(4x4), 1.2e-6 for F(2x2) and 1.1e-6 for the
 * direct kernels (f64: 9e-15, 2e-15, 2e-15; the test prints them). The bound
 * 5e-5 leaves 8x room for other shapes and seeds, while a wrong transform
 * coefficient gives errors of order 1e-3 and more: changing any one entry
 * of B^T, A^T, A or G by 0.1% made these checks fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "backend_compare.h"
#include "test_backend.h"

enum { RANDOM_ROUNDS = 16 };

static test_backend blis_backend, ref_backend;

/* Makes the compared backend a blis instance with `settings` (opened under
 * its own key, so closing it leaves the shared instance open); returns the
 * shared one for use_shared. */
static test_backend use_variant(const char *const *settings, test_backend *variant) {
    const test_backend shared = blis_backend;
    assert_int_equal(test_backend_open("blis", settings, variant), 0);
    blis_backend = *variant;
    return shared;
}

static void use_shared(test_backend shared, test_backend *variant) {
    test_backend_close(variant);
    blis_backend = shared;
}

static const conv_case resnet_cases[] = {
    {3, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}}, /* ResNet stage 1 */
    {2, 32, 16, 16, 32, 3, 3, {1, 1, 1, 1, 1}}, /* stage 2 */
    {17, 64, 8, 8, 64, 3, 3, {1, 1, 1, 1, 1}},  /* stage 3, a group of 16 and one of 1 */
    {2, 3, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}},  /* stem: 3 channels */
    {3, 5, 11, 13, 9, 3, 3, {1, 1, 1, 1, 1}},   /* odd sizes, K = 9 (two blocks) */
    {2, 7, 9, 10, 5, 3, 3, {1, 1, 0, 0, 1}},    /* no padding */
    {2, 4, 6, 5, 12, 3, 3, {1, 1, 2, 2, 1}},    /* padding 2: the data pass's is 0 */
    {2, 6, 7, 8, 3, 3, 3, {1, 1, 0, 2, 1}},     /* padding differs by axis */
    {1, 1, 1, 1, 1, 3, 3, {1, 1, 1, 1, 1}},     /* one value */
    {20, 2, 5, 3, 17, 3, 3, {1, 1, 1, 1, 1}},   /* 20 images, K = 17 */
    {2, 40, 4, 4, 70, 3, 3, {1, 1, 1, 1, 1}},   /* wide layers */
};

static void check_cases(const char *mode) {
    const char *const settings[] = {mode, "threads=2", NULL};
    test_backend variant;
    const test_backend shared = use_variant(settings, &variant);
    compare_worst_error(NNOPT_F32, 1);
    compare_worst_error(NNOPT_F64, 1);
    for (size_t i = 0; i < sizeof resnet_cases / sizeof resnet_cases[0]; i++)
        check_conv_case(&resnet_cases[i], mode);
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        conv_case cc = {.r = 3, .s = 3, .p = {1, 1, 0, 0, 1}};
        cc.n = rng_int(1, 20);
        cc.c = rng_int(1, 12);
        cc.k = rng_int(1, 20);
        cc.p.pad_h = rng_int(0, 2);
        cc.p.pad_w = rng_int(0, 2);
        cc.h = rng_int(3 - 2 * cc.p.pad_h > 1 ? 3 - 2 * cc.p.pad_h : 1, 13);
        cc.w = rng_int(3 - 2 * cc.p.pad_w > 1 ? 3 - 2 * cc.p.pad_w : 1, 13);
        check_conv_case(&cc, mode);
    }
    printf("# %s: worst |blis - ref| / (|ref| + max |ref|): f32 %.2e, f64 %.2e\n", mode,
           compare_worst_error(NNOPT_F32, 1), compare_worst_error(NNOPT_F64, 1));
    use_shared(shared, &variant);
}

static void test_f4(void **state) {
    (void)state;
    check_cases("winograd=f4");
}

static void test_f2(void **state) {
    (void)state;
    check_cases("winograd=f2");
}

/* The direct kernels on the same cases, for the error comparison. */
static void test_off(void **state) {
    (void)state;
    check_cases("winograd=off");
}

/* auto on batches it takes Winograd for (ResNet shapes at 32 images) and
 * with one thread (one group is enough). */
static void test_auto(void **state) {
    (void)state;
    const conv_case cases[] = {
        {32, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}},
        {32, 64, 8, 8, 64, 3, 3, {1, 1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv_case(&cases[i], "auto");
    const char *const settings[] = {"threads=1", NULL};
    test_backend variant;
    const test_backend shared = use_variant(settings, &variant);
    const conv_case one_group = {16, 32, 16, 16, 32, 3, 3, {1, 1, 1, 1, 1}};
    check_conv_case(&one_group, "auto, threads=1");
    use_shared(shared, &variant);
}

/* Three threads (more than the cores here): three image groups, the filter
 * transform and the filter gradient's final sums split three ways, and a
 * team smaller than the thread count (two groups). */
static void test_three_threads(void **state) {
    (void)state;
    const char *const settings[] = {"winograd=f4", "threads=3", NULL};
    test_backend variant;
    const test_backend shared = use_variant(settings, &variant);
    const conv_case cases[] = {
        {40, 12, 9, 10, 20, 3, 3, {1, 1, 1, 1, 1}},
        {20, 5, 8, 8, 3, 3, 3, {1, 1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "f4, threads=3");
    use_shared(shared, &variant);
}

/* The filter gradient's two forms on f2 and f4, one and two threads: per-lane
 * sums carried across chunks of tiles and image groups (16 and 5 -> 7
 * channels: several chunks, several groups per thread, the last group
 * part-filled, channel blocks off the 4 x 4 blocking and under the 16
 * lanes) and whole planes reduced per group (40 channels). */
static void test_filter_forms(void **state) {
    (void)state;
    static const char *const modes[][2] = {{"winograd=f2", "threads=2"},
                                           {"winograd=f4", "threads=2"},
                                           {"winograd=f2", "threads=1"},
                                           {"winograd=f4", "threads=1"}};
    const conv_case cases[] = {
        {50, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}}, /* 4 groups, 2 images in the last */
        {37, 5, 27, 21, 7, 3, 3, {1, 1, 1, 1, 1}},   /* 3 groups, odd sizes */
        {35, 40, 8, 8, 36, 3, 3, {1, 1, 1, 1, 1}},   /* whole planes */
    };
    compare_worst_error(NNOPT_F32, 1);
    compare_worst_error(NNOPT_F64, 1);
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        const char *const settings[] = {modes[m][0], modes[m][1], NULL};
        test_backend variant;
        const test_backend shared = use_variant(settings, &variant);
        char label[64];
        snprintf(label, sizeof label, "%s, %s", modes[m][0], modes[m][1]);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const conv_case *cc = &cases[i];
            const tensor_spec x = spec4(cc->n, cc->c, cc->h, cc->w);
            const tensor_spec dy = spec4(cc->n, cc->k, cc->h, cc->w);
            const tensor_spec dw = spec4(cc->k, cc->c, 3, 3);
            const tensor_spec in[2] = {x, dy};
            nnopt_op op = {.kind = NNOPT_OP_CONV2D_BWD_FILTER};
            op.p.conv2d = cc->p;
            char what[160];
            snprintf(what, sizeof what, "%s filter N%lld C%lld %lldx%lld K%lld", label,
                     (long long)cc->n, (long long)cc->c, (long long)cc->h, (long long)cc->w,
                     (long long)cc->k);
            for (size_t d = 0; d < COMPARE_N_DTYPES; d++)
                check_op(what, &op, compare_dtypes[d], 2, in, 1, &dw);
        }
        use_shared(shared, &variant);
    }
    printf("# filter forms: worst |blis - ref| / (|ref| + max |ref|): f32 %.2e, f64 %.2e\n",
           compare_worst_error(NNOPT_F32, 1), compare_worst_error(NNOPT_F64, 1));
}

static int open_backends(void **state) {
    (void)state;
    if (test_backend_open("blis", NULL, &blis_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    const backend_comparison comparison = {
        .tested = &blis_backend, .reference = &ref_backend, .f32_bound = 5e-5, .f64_bound = 1e-10};
    compare_backends(&comparison);
    return 0;
}

static int close_backends(void **state) {
    (void)state;
    test_backend_close(&blis_backend);
    test_backend_close(&ref_backend);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f4),
        cmocka_unit_test(test_f2),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_three_threads),
        cmocka_unit_test(test_filter_forms),
    };
    return cmocka_run_group_tests(tests, open_backends, close_backends);
}
