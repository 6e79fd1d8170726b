/* The blis backend against the reference ("cpu") backend: every op, in f32
 * and f64, on random shapes and values, through the shared harness in
 * tests/support/backend_compare.h (which states how outputs must agree). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backend_compare.h"
#include "test_backend.h"

enum { RANDOM_ROUNDS = 12 };

static test_backend blis_backend, ref_backend;

/* ---- convolutions ---- */

static void test_conv_lenet_shapes(void **state) {
    (void)state;
    const conv_case conv1 = {5, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}};
    const conv_case conv2 = {5, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}};
    check_conv_case(&conv1, "lenet conv1");
    check_conv_case(&conv2, "lenet conv2");
}

static void test_conv_special_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {1, 3, 9, 7, 4, 3, 3, {1, 1, 1, 1, 1}},      /* one image: BLIS threads the GEMMs */
        {3, 8, 5, 6, 12, 1, 1, {1, 1, 0, 0, 1}},     /* pointwise (BLIS: channel-major batch) */
        {2, 8, 16, 16, 12, 1, 1, {1, 1, 0, 0, 1}},   /* pointwise (BLIS: per image) */
        {5, 40, 2, 2, 24, 1, 1, {1, 1, 0, 0, 1}},    /* pointwise at 2x2 (MobileNet) */
        {4, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 16}}, /* depthwise, MobileNet's block 1 */
        {3, 5, 7, 6, 5, 3, 3, {2, 2, 1, 1, 5}},      /* depthwise, strided */
        {2, 4, 6, 7, 4, 3, 2, {1, 1, 2, 1, 4}},      /* depthwise, padding >= filter rows */
        {2, 3, 6, 7, 3, 5, 5, {1, 1, 2, 2, 3}},      /* depthwise 5x5 */
        {2, 6, 5, 5, 6, 3, 3, {1, 1, 1, 1, 6}},      /* depthwise */
        {3, 4, 8, 8, 6, 3, 3, {2, 2, 1, 1, 2}},      /* grouped, strided */
        {2, 4, 6, 6, 4, 1, 1, {2, 2, 0, 0, 2}},      /* grouped pointwise, strided */
        {2, 2, 4, 4, 3, 4, 4, {1, 1, 0, 0, 1}},      /* filter covers the image */
        {3, 2, 3, 5, 2, 3, 2, {3, 1, 2, 1, 1}},      /* padding wider than the stride */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "special");
}

/* Shapes the direct (im2col-free) kernels take on AVX-512 CPUs (the
 * backend's describe() says whether they are in use): ResNet-CIFAR's 3x3
 * layers at stride 1 and 2, LeNet's, and the edges of the flat layout: odd
 * widths, a last vector of one lane group, output channels not a multiple of
 * the 8-channel block, tap counts not a multiple of 4, padding on one side
 * only, N = 1 and N not a multiple of the threads. */
static void test_conv_direct_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {3, 16, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}}, /* ResNet stage 1 */
        {2, 16, 32, 32, 32, 3, 3, {2, 2, 1, 1, 1}}, /* ResNet stage 2 entry, stride 2 */
        {2, 32, 16, 16, 32, 3, 3, {1, 1, 1, 1, 1}}, /* ResNet stage 2 */
        {2, 64, 8, 8, 64, 3, 3, {1, 1, 1, 1, 1}},   /* ResNet stage 3: one-vector tail */
        {1, 32, 16, 16, 64, 3, 3, {2, 2, 1, 1, 1}}, /* stride 2, one image */
        {3, 3, 32, 32, 16, 3, 3, {1, 1, 1, 1, 1}},  /* ResNet stem (C = 3) */
        {1, 1, 28, 28, 6, 5, 5, {1, 1, 2, 2, 1}},   /* LeNet conv1, one image */
        {3, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}},  /* LeNet conv2 */
        {3, 5, 11, 13, 9, 3, 3, {1, 1, 1, 1, 1}},   /* odd sizes, K = 9 (two blocks) */
        {2, 5, 11, 13, 7, 3, 3, {2, 2, 1, 1, 1}},   /* odd sizes, stride 2 */
        {2, 4, 9, 7, 3, 3, 2, {2, 1, 0, 1, 1}},     /* stride 2 x 1, uneven filter */
        {2, 3, 7, 10, 5, 2, 3, {1, 2, 1, 0, 1}},    /* stride 1 x 2, even filter rows */
        {1, 2, 5, 5, 1, 5, 5, {1, 1, 2, 2, 1}},     /* one output channel */
        {2, 7, 6, 6, 12, 3, 3, {2, 2, 0, 0, 1}},    /* stride 2, no padding */
        {2, 70, 6, 6, 5, 3, 3, {1, 1, 1, 1, 1}},    /* 630 taps */
        {2, 3, 9, 9, 18, 3, 3, {1, 1, 1, 1, 1}},    /* filter gradient: three 6-channel tiles */
        /* data gradient by filter columns (little forward padding) */
        {1, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}}, /* LeNet conv2, one image */
        {2, 3, 9, 11, 4, 5, 5, {1, 1, 0, 0, 1}},   /* odd sizes, C and K < 8 */
        {3, 6, 14, 14, 16, 5, 5, {1, 1, 1, 0, 1}}, /* padding on one axis */
        {2, 2, 12, 20, 3, 3, 7, {1, 1, 0, 1, 1}},  /* S = 7: two column tiles */
        /* filter gradient with the output channels in the lanes (5x5, K one
         * vector: 16 in f32, 8 in f64) */
        {2, 3, 12, 12, 8, 5, 5, {1, 1, 0, 0, 1}},
        {3, 4, 9, 9, 16, 5, 5, {1, 1, 1, 1, 1}},
        {2, 3, 9, 21, 16, 3, 5, {1, 1, 1, 0, 1}}, /* forward only: 3x5, Q = 17 (10 + 7) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "direct");
}

/* Depthwise convolutions (groups == C == K; blis_depthwise.inc): MobileNetV1
 * CIFAR's nine layers at a small batch (several threads), chunks of images
 * with a partial last one, stride 1, 2, 3 and mixed, padding 0, 1 and 2,
 * odd sizes, 1x1 planes and filters, and phases no tap reads. Then the
 * channel-lane kernels of small planes (blis_depthwise_small.c; f32 on
 * AVX-512): 8x8 to 1x1 planes at stride 1 and 2, full blocks of 16 channels
 * and partial last ones, one image and odd batches. Then the row kernels
 * of planes 16 and 32 wide (blis_depthwise_large.c): stride 1 and 2, odd
 * heights and one row, one image and odd batches. */
static void test_conv_depthwise_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {4, 32, 32, 32, 32, 3, 3, {1, 1, 1, 1, 32}},     /* MobileNet 32x32 */
        {4, 64, 32, 32, 64, 3, 3, {2, 2, 1, 1, 64}},     /* 32x32 -> 16x16 */
        {4, 128, 16, 16, 128, 3, 3, {1, 1, 1, 1, 128}},  /* 16x16 */
        {4, 128, 16, 16, 128, 3, 3, {2, 2, 1, 1, 128}},  /* 16x16 -> 8x8 */
        {4, 256, 8, 8, 256, 3, 3, {1, 1, 1, 1, 256}},    /* 8x8 */
        {4, 256, 8, 8, 256, 3, 3, {2, 2, 1, 1, 256}},    /* 8x8 -> 4x4 */
        {4, 512, 4, 4, 512, 3, 3, {1, 1, 1, 1, 512}},    /* 4x4 */
        {4, 512, 4, 4, 512, 3, 3, {2, 2, 1, 1, 512}},    /* 4x4 -> 2x2 */
        {4, 1024, 2, 2, 1024, 3, 3, {1, 1, 1, 1, 1024}}, /* 2x2 */
        {23, 2, 32, 32, 2, 3, 3, {1, 1, 1, 1, 2}},       /* several chunks, partial last */
        {45, 2, 32, 32, 2, 3, 3, {2, 2, 1, 1, 2}},       /* the same, stride 2 */
        {37, 70, 4, 4, 70, 3, 3, {1, 1, 1, 1, 70}},      /* blocks of channels, partial last */
        {37, 70, 4, 4, 70, 3, 3, {2, 2, 1, 1, 70}},      /* the same, stride 2 */
        {3, 5, 7, 9, 5, 3, 3, {2, 2, 1, 1, 5}},          /* odd sizes, stride 2 */
        {3, 5, 7, 9, 5, 3, 3, {2, 2, 0, 0, 5}},          /* odd sizes, stride 2, no padding */
        {3, 5, 9, 7, 5, 3, 3, {1, 1, 0, 0, 5}},          /* odd sizes, stride 1, no padding */
        {5, 24, 1, 1, 24, 3, 3, {1, 1, 1, 1, 24}},       /* 1x1 plane */
        {5, 24, 1, 1, 24, 3, 3, {2, 2, 1, 1, 24}},       /* 1x1 plane, stride 2 */
        {5, 24, 2, 2, 24, 3, 3, {2, 2, 1, 1, 24}},       /* 2x2 -> 1x1 */
        {5, 24, 3, 3, 24, 3, 3, {2, 2, 0, 0, 24}},       /* 3x3 -> 1x1, no padding */
        {3, 6, 8, 7, 6, 3, 3, {2, 1, 1, 0, 6}},          /* stride 2 x 1 */
        {3, 6, 7, 8, 6, 3, 3, {1, 2, 0, 1, 6}},          /* stride 1 x 2 */
        {3, 4, 10, 11, 4, 3, 3, {3, 3, 1, 1, 4}},        /* stride 3 */
        {3, 4, 10, 11, 4, 2, 2, {3, 3, 0, 0, 4}},        /* stride above the filter */
        {3, 4, 5, 5, 4, 1, 1, {2, 2, 0, 0, 4}},          /* 1x1 filter, stride 2 */
        {3, 6, 11, 10, 6, 5, 5, {2, 2, 2, 2, 6}},        /* 5x5 stride 2: 25 taps */
        {2, 3, 6, 7, 3, 3, 3, {1, 1, 2, 2, 3}},          /* padding 2 */
        {1, 17, 8, 8, 17, 3, 3, {1, 1, 1, 1, 17}},       /* small planes: 8x8 */
        {3, 33, 8, 8, 33, 3, 3, {2, 2, 1, 1, 33}},       /* 8x8 -> 4x4 */
        {5, 17, 4, 4, 17, 3, 3, {1, 1, 1, 1, 17}},       /* 4x4 */
        {1, 33, 4, 4, 33, 3, 3, {2, 2, 1, 1, 33}},       /* 4x4 -> 2x2 */
        {3, 48, 4, 4, 48, 3, 3, {1, 1, 1, 1, 48}},       /* full blocks only */
        {7, 33, 2, 2, 33, 3, 3, {1, 1, 1, 1, 33}},       /* 2x2 */
        {1, 17, 2, 2, 17, 3, 3, {2, 2, 1, 1, 17}},       /* 2x2 -> 1x1 */
        {3, 15, 1, 1, 15, 3, 3, {1, 1, 1, 1, 15}},       /* 1x1, one partial block */
        {9, 33, 1, 1, 33, 3, 3, {2, 2, 1, 1, 33}},       /* 1x1, stride 2 */
        {3, 17, 8, 8, 17, 3, 3, {1, 1, 0, 0, 17}},       /* no padding: the phase planes */
        {3, 17, 8, 4, 17, 3, 3, {1, 1, 1, 1, 17}},       /* not square: the phase planes */
        {1, 5, 32, 32, 5, 3, 3, {1, 1, 1, 1, 5}},        /* row kernels: 32 wide, one image */
        {3, 19, 32, 32, 19, 3, 3, {2, 2, 1, 1, 19}},     /* 32 -> 16 wide, odd batch */
        {5, 21, 16, 16, 21, 3, 3, {1, 1, 1, 1, 21}},     /* 16 wide */
        {1, 13, 16, 16, 13, 3, 3, {2, 2, 1, 1, 13}},     /* 16 -> 8 wide */
        {3, 7, 7, 16, 7, 3, 3, {1, 1, 1, 1, 7}},         /* odd height, 16 wide */
        {3, 7, 7, 16, 7, 3, 3, {2, 2, 1, 1, 7}},         /* odd height, stride 2 */
        {2, 6, 1, 32, 6, 3, 3, {1, 1, 1, 1, 6}},         /* one row */
        {2, 6, 1, 32, 6, 3, 3, {2, 2, 1, 1, 6}},         /* one row, stride 2 */
        {3, 5, 9, 32, 5, 3, 3, {2, 2, 1, 1, 5}},         /* odd height, 32 wide, stride 2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "depthwise");
}

/* Pointwise convolutions (1x1, stride 1, no padding, one group; on AVX-512
 * CPUs blis_pointwise.inc): MobileNet's plane sizes, channel counts off the
 * register tiles (3, 17, 33, 40), planes whose vectors cross images (7x5,
 * 2x2, 1x1), one image and several, chunks of columns per thread (several;
 * fewer than the threads, split by row panels), and filter gradients over
 * several chunks per thread. */
static void test_conv_pointwise_shapes(void **state) {
    (void)state;
    const conv_case cases[] = {
        {3, 17, 32, 32, 40, 1, 1, {1, 1, 0, 0, 1}}, /* 32x32: chunks, filter partial sums */
        {1, 40, 32, 32, 33, 1, 1, {1, 1, 0, 0, 1}}, /* one image */
        {2, 33, 16, 16, 17, 1, 1, {1, 1, 0, 0, 1}}, /* 16x16 */
        {1, 64, 16, 16, 48, 1, 1, {1, 1, 0, 0, 1}}, /* whole tiles */
        {4, 40, 8, 8, 33, 1, 1, {1, 1, 0, 0, 1}},   /* 8x8 */
        {9, 33, 4, 4, 40, 1, 1, {1, 1, 0, 0, 1}},   /* 4x4: a vector per image */
        {1, 17, 4, 4, 3, 1, 1, {1, 1, 0, 0, 1}},    /* one image, 3 output channels */
        {13, 40, 2, 2, 17, 1, 1, {1, 1, 0, 0, 1}},  /* 2x2: four images a vector */
        {1, 3, 2, 2, 33, 1, 1, {1, 1, 0, 0, 1}},    /* one 2x2 image, C = 3 */
        {37, 17, 1, 1, 33, 1, 1, {1, 1, 0, 0, 1}},  /* 1x1: an image a lane */
        {1, 40, 1, 1, 3, 1, 1, {1, 1, 0, 0, 1}},    /* a single column */
        {5, 33, 7, 5, 17, 1, 1, {1, 1, 0, 0, 1}},   /* 7x5: vectors across images */
        {3, 3, 5, 7, 40, 1, 1, {1, 1, 0, 0, 1}},    /* 5x7, C = 3 */
        {10, 520, 5, 5, 20, 1, 1, {1, 1, 0, 0, 1}}, /* three chunks over two threads */
        {6, 200, 3, 3, 300, 1, 1, {1, 1, 0, 0, 1}}, /* wide filter gradient tiles */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv_case(&cases[i], "pointwise");
    /* The BLIS path (CPUs without AVX-512F): per image, and batched
     * channel-major for planes under 256 values. The instance is opened
     * under its own key, so closing it leaves the shared one open. */
    const test_backend shared = blis_backend;
    test_backend gemm;
    const char *const settings[] = {"conv=gemm", NULL};
    assert_int_equal(test_backend_open("blis", settings, &gemm), 0);
    blis_backend = gemm;
    check_conv_case(&cases[0], "conv=gemm, pointwise");
    check_conv_case(&cases[5], "conv=gemm, pointwise");
    check_conv_case(&cases[11], "conv=gemm, pointwise");
    test_backend_close(&gemm);
    blis_backend = shared;
}

static void test_conv_random_shapes(void **state) {
    (void)state;
    check_conv_random_shapes(RANDOM_ROUNDS);
}

/* ---- dense layers ---- */

static void test_dense(void **state) {
    (void)state;
    check_dense_cases(RANDOM_ROUNDS);
    /* the AVX-512 GEMM's edges: row tiles of 6 with a remainder, column
     * panels of 4, 2 and 1 vectors with partial last vectors (f32 and f64) */
    check_dense_case(7, 33, 50);
    check_dense_case(13, 17, 20);
    check_dense_case(2, 5, 70);
    check_dense_case(6, 1, 1);
}

/* ---- bias gradients, pooling ---- */

static void test_bias_bwd(void **state) {
    (void)state;
    check_bias_bwd_random_shapes(RANDOM_ROUNDS);
    nnopt_op op = {.kind = NNOPT_OP_BIAS_BWD};
    const tensor_spec big = spec4(128, 6, 28, 28), db6 = spec1(6);
    check_op("bias_bwd lenet conv1", &op, NNOPT_F32, 1, &big, 1, &db6);
}

static void test_pool(void **state) {
    (void)state;
    check_pool_cases(RANDOM_ROUNDS);
    /* 2x2 average windows leaving a row and a column uncovered: the
     * backward pass zeroes dx only then */
    const nnopt_pool2d_params avg2x2 = {NNOPT_POOL_AVG, 2, 2, 2, 2, 0, 0};
    check_pool_case(2, 3, 9, 7, &avg2x2);
}

/* ---- activations, add ---- */

static void test_activations(void **state) {
    (void)state;
    /* Neither blis's act_bwd nor the reference's reads y. */
    check_activations(ACT_BWD_RANDOM_Y);
}

static void test_add(void **state) {
    (void)state;
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) check_add_case(compare_dtypes[d]);
}

/* ---- batch normalization (check_batchnorm_case: the shared harness) ---- */

static void test_batchnorm(void **state) {
    (void)state;
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {8, 16, 16, 16}}); /* threaded */
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {3, 5, 4, 3}});
    /* 35 values a plane: the blis reductions' four interleaved sums and a tail of 3 */
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {3, 4, 5, 7}});
    /* 2x2 planes, 300 channels: blis's small-plane columns, in two groups */
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {5, 300, 2, 2}});
    check_batchnorm_case(&(tensor_spec){.ndim = 4, .shape = {1, 3, 1, 1}}); /* one value */
    check_batchnorm_case(&(tensor_spec){.ndim = 2, .shape = {64, 600}});
    check_batchnorm_case(&(tensor_spec){.ndim = 2, .shape = {5, 7}});
    /* |mean| >> std: the one-pass variance must not cancel */
    check_batchnorm_case(
        &(tensor_spec){.ndim = 4, .shape = {4, 3, 8, 8}, .range = 0.01, .offset = 50});
    for (int round = 0; round < RANDOM_ROUNDS; round++) {
        const tensor_spec x = spec4(rng_int(1, 9), rng_int(1, 20), rng_int(1, 12), rng_int(1, 12));
        check_batchnorm_case(&x);
    }
}

/* ---- the loss, optimizers and cast (SGD is blis's own, the rest the
 * shared reference kernels) ---- */

static void test_loss_optimisers_cast(void **state) {
    (void)state;
    for (size_t d = 0; d < COMPARE_N_DTYPES; d++) {
        const nnopt_dtype dt = compare_dtypes[d];
        const int64_t n = rng_int(1, 20), k = rng_int(2, 12);
        check_softmax_xent_case(dt, n, k);
        check_optimizer_case(dt, 7, 13);
        check_optimizer_case(dt, 120, 401); /* SGD split across threads, odd tail */
        check_optimizer_sequence(dt);
        check_cast_case(dt);
    }
}

/* ---- setup ---- */

static int open_backends(void **state) {
    (void)state;
    if (test_backend_open("blis", NULL, &blis_backend) != 0) return -1;
    if (test_backend_open("cpu", NULL, &ref_backend) != 0) return -1;
    const backend_comparison comparison = {
        .tested = &blis_backend, .reference = &ref_backend, .f32_bound = 1e-4, .f64_bound = 1e-10};
    compare_backends(&comparison);
    char description[256];
    blis_backend.vt->describe(blis_backend.ctx, description, sizeof description);
    printf("# blis: %s\n", description);
    return 0;
}

static int close_backends(void **state) {
    (void)state;
    test_backend_close(&blis_backend);
    test_backend_close(&ref_backend);
    return 0;
}

/* An instance with more threads than images and than cores: the image
 * split, the per-thread scratch and the filter-gradient reduction. */
static void test_odd_thread_count(void **state) {
    (void)state;
    test_backend shared = blis_backend;
    const char *const settings[] = {"threads=3", NULL};
    assert_int_equal(test_backend_open("blis", settings, &blis_backend), 0);
    const conv_case cc = {4, 3, 10, 9, 5, 3, 3, {1, 1, 1, 0, 1}};
    check_conv_case(&cc, "threads=3");
    const conv_case two_images = {2, 3, 10, 9, 5, 3, 3, {1, 1, 1, 0, 1}};
    check_conv_case(&two_images, "threads=3, 2 images");
    /* direct kernels: 5 images over 3 threads, stride 1 and 2 */
    const conv_case resnet = {5, 16, 16, 16, 16, 3, 3, {1, 1, 1, 1, 1}};
    check_conv_case(&resnet, "threads=3, direct");
    const conv_case strided = {7, 8, 9, 9, 16, 3, 3, {2, 2, 1, 1, 1}};
    check_conv_case(&strided, "threads=3, direct strided");
    const conv_case lenet_conv2 = {2, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}};
    check_conv_case(&lenet_conv2, "threads=3, 2 images, data by filter columns");
    const conv_case lenet_odd = {5, 6, 14, 14, 16, 5, 5, {1, 1, 0, 0, 1}};
    check_conv_case(&lenet_odd, "threads=3, 5 images, data by filter columns");
    /* depthwise: channel blocks over 3 threads (one of them without a
     * block of the filter gradient), one image at a time and stacked */
    const conv_case depthwise[] = {
        {8, 70, 4, 4, 70, 3, 3, {1, 1, 1, 1, 70}},
        {8, 64, 8, 8, 64, 3, 3, {2, 2, 1, 1, 64}},
        {4, 16, 16, 16, 16, 3, 3, {1, 1, 1, 1, 16}},
        {5, 33, 4, 4, 33, 3, 3, {1, 1, 1, 1, 33}}, /* small planes: a block per thread */
        {7, 17, 8, 8, 17, 3, 3, {2, 2, 1, 1, 17}}, /* two blocks over three threads */
        {3, 40, 2, 2, 40, 3, 3, {1, 1, 1, 1, 40}},
        {5, 17, 32, 32, 17, 3, 3, {1, 1, 1, 1, 17}}, /* row kernels: planes over threads */
        {3, 35, 32, 32, 35, 3, 3, {2, 2, 1, 1, 35}},
        {7, 9, 16, 16, 9, 3, 3, {1, 1, 1, 1, 9}},
        {5, 37, 16, 16, 37, 3, 3, {2, 2, 1, 1, 37}},
    };
    for (size_t i = 0; i < sizeof depthwise / sizeof depthwise[0]; i++)
        check_conv_case(&depthwise[i], "threads=3, depthwise");
    /* pointwise: column chunks and filter partial sums over 3 threads */
    const conv_case pointwise[] = {
        {5, 17, 16, 16, 33, 1, 1, {1, 1, 0, 0, 1}},
        {7, 40, 7, 5, 17, 1, 1, {1, 1, 0, 0, 1}},
        {10, 520, 5, 5, 20, 1, 1, {1, 1, 0, 0, 1}},
    };
    for (size_t i = 0; i < sizeof pointwise / sizeof pointwise[0]; i++)
        check_conv_case(&pointwise[i], "threads=3, pointwise");
    check_dense_case(5, 9, 4);
    check_dense_case(130, 400, 41); /* over 2M multiply-adds: 22 row tiles over 3 threads */
    test_backend_close(&blis_backend);
    blis_backend = shared;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_lenet_shapes),
        cmocka_unit_test(test_conv_special_shapes),
        cmocka_unit_test(test_conv_direct_shapes),
        cmocka_unit_test(test_conv_depthwise_shapes),
        cmocka_unit_test(test_conv_pointwise_shapes),
        cmocka_unit_test(test_conv_random_shapes),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_bias_bwd),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_loss_optimisers_cast),
        cmocka_unit_test(test_odd_thread_count),
    };
    return cmocka_run_group_tests(tests, open_backends, close_backends);
}
