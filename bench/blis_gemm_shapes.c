/* Bare BLIS sgemm throughput on given M,N,K and on the GEMM shapes the blis
 * backend issues for LeNet-5 at batch 128 (see docs/backend-blis.md).
 *
 *   blis_gemm_shapes [--arch NAME] [--threads N] [--reps R] [M N K]...
 *
 * NAME is a BLIS sub-configuration (skx, zen3, haswell, generic, ...); it is
 * exported as BLIS_ARCH_TYPE before the first BLIS call. "Per-image" shapes
 * run one single-threaded GEMM per image with images split across threads
 * (what the backend does for convolutions); "whole" shapes are one GEMM with
 * BLIS's own threading (dense layers, and batched im2col for comparison).
 *
 * Build: gcc -std=c11 -O2 -fopenmp -D_POSIX_C_SOURCE=200809L
 *        -isystem /usr/include/x86_64-linux-gnu/blis-openmp bench/blis_gemm_shapes.c -lblis -lm */
#include <blis.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

/* C[m,n] row-major = A[m,k] (row-major, or transposed storage) * B[k,n]. */
typedef struct gemm_shape {
    const char *label;
    long m, n, k;
    int trans_a, trans_b; /* operand stored transposed (as [k,m] / [n,k]) */
    int col_major_c;      /* C written column-major (rs=1, cs=m) */
    long batch;           /* > 1: one GEMM per image, images split across threads */
} gemm_shape;

static double run_shape(const gemm_shape *s, int threads, int reps) {
    long batch = s->batch > 1 ? s->batch : 1;
    size_t a_n = (size_t)(s->m * s->k), b_n = (size_t)(s->k * s->n), c_n = (size_t)(s->m * s->n);
    float *a = random_floats(a_n * (size_t)batch), *b = random_floats(b_n * (size_t)batch);
    float *c = random_floats(c_n * (size_t)batch);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0.0;
    }
    inc_t rs_a = s->trans_a ? 1 : s->k, cs_a = s->trans_a ? s->m : 1;
    inc_t rs_b = s->trans_b ? 1 : s->n, cs_b = s->trans_b ? s->k : 1;
    inc_t rs_c = s->col_major_c ? 1 : s->n, cs_c = s->col_major_c ? s->m : 1;
    float one = 1.0f, zero = 0.0f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        if (s->batch > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
            for (long img = 0; img < batch; img++) {
                rntm_t rntm = BLIS_RNTM_INITIALIZER;
                bli_rntm_set_num_threads(1, &rntm);
                bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, s->m, s->n, s->k, &one, a, rs_a,
                             cs_a, b + (size_t)img * b_n, rs_b, cs_b, &zero, c + (size_t)img * c_n,
                             rs_c, cs_c, NULL, &rntm);
            }
        } else {
            rntm_t rntm = BLIS_RNTM_INITIALIZER;
            bli_rntm_set_num_threads(threads, &rntm);
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, s->m, s->n, s->k, &one, a, rs_a,
                         cs_a, b, rs_b, cs_b, &zero, c, rs_c, cs_c, NULL, &rntm);
        }
        double dt = now_seconds() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * (double)s->m * (double)s->n * (double)s->k * (double)batch / best * 1e-9;
}

static int arch_id_from_name(const char *name) {
    for (int id = 0; id < BLIS_NUM_ARCHS; id++)
        if (strcmp(bli_arch_string((arch_t)id), name) == 0) return id;
    return -1;
}

int main(int argc, char **argv) {
    int threads = omp_get_num_procs(), reps = 20;
    int argi = 1;
    while (argi + 1 < argc && strncmp(argv[argi], "--", 2) == 0) {
        if (strcmp(argv[argi], "--arch") == 0) {
            int id = arch_id_from_name(argv[argi + 1]);
            if (id < 0) {
                fprintf(stderr, "unknown BLIS arch '%s'\n", argv[argi + 1]);
                return 2;
            }
            char value[16];
            snprintf(value, sizeof value, "%d", id);
            setenv("BLIS_ARCH_TYPE", value, 1); /* read once, at BLIS's first call */
        } else if (strcmp(argv[argi], "--threads") == 0) {
            threads = atoi(argv[argi + 1]);
        } else if (strcmp(argv[argi], "--reps") == 0) {
            reps = atoi(argv[argi + 1]);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[argi]);
            return 2;
        }
        argi += 2;
    }
    if (threads < 1) threads = omp_get_num_procs();
    bli_init(); /* before bli_arch_query_id: BLIS validates BLIS_ARCH_TYPE against its gks */
    if (reps < 1) reps = 1;
    printf("BLIS %s, kernels %s, %d threads, best of %d\n", bli_info_get_version_str(),
           bli_arch_string(bli_arch_query_id()), threads, reps);

    if (argi < argc) {
        for (; argi + 2 < argc; argi += 3) {
            gemm_shape s = {
                "custom", atol(argv[argi]), atol(argv[argi + 1]), atol(argv[argi + 2]), 0, 0, 0, 0};
            printf("%6ld %6ld %6ld  %8.1f GFLOP/s\n", s.m, s.n, s.k, run_shape(&s, threads, reps));
        }
        return 0;
    }

    const long batch = 128;
    const gemm_shape shapes[] = {
        /* conv1 5x5 1->6 pad 2 on 28x28: P*Q = 784, C*R*S = 25 */
        {"conv1 fwd  y=W*col (per image)", 6, 784, 25, 0, 0, 0, batch},
        {"conv1 fwd  y^T=col^T*W^T (per image)", 784, 6, 25, 1, 1, 1, batch},
        {"conv1 fwd  batched im2col", 6, 784 * batch, 25, 0, 0, 0, 1},
        {"conv1 bwdF dW=dy*col^T (per image)", 6, 25, 784, 0, 1, 0, batch},
        /* conv2 5x5 6->16 valid on 14x14: P*Q = 100, C*R*S = 150 */
        {"conv2 fwd  y=W*col (per image)", 16, 100, 150, 0, 0, 0, batch},
        {"conv2 fwd  y^T=col^T*W^T (per image)", 100, 16, 150, 1, 1, 1, batch},
        {"conv2 fwd  batched im2col", 16, 100 * batch, 150, 0, 0, 0, 1},
        {"conv2 bwdD dcol=W^T*dy (per image)", 150, 100, 16, 1, 0, 0, batch},
        {"conv2 bwdF dW=dy*col^T (per image)", 16, 150, 100, 0, 1, 0, batch},
        /* dense layers: y = x W^T */
        {"dense1 fwd 128x120x400", batch, 120, 400, 0, 1, 0, 1},
        {"dense1 bwdD 128x400x120", batch, 400, 120, 0, 0, 0, 1},
        {"dense1 bwdW 120x400x128", 120, 400, batch, 1, 0, 0, 1},
        {"dense2 fwd 128x84x120", batch, 84, 120, 0, 1, 0, 1},
        {"dense3 fwd 128x10x84", batch, 10, 84, 0, 1, 0, 1},
        {"square 1024^3", 1024, 1024, 1024, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const gemm_shape *s = &shapes[i];
        printf("%-40s m=%-6ld n=%-6ld k=%-4ld x%-4ld %8.1f GFLOP/s\n", s->label, s->m, s->n, s->k,
               s->batch > 1 ? s->batch : 1L, run_shape(s, threads, reps));
    }
    return 0;
}
