/* Private to the blis backend: the instance state every op sees, and the
 * entry points of each op family (one source file per family). Only
 * blis_arch.c and blis_gemm.c include blis.h, so the rest builds without it. */
#ifndef NNOPT_BLIS_INTERNAL_H
#define NNOPT_BLIS_INTERNAL_H

#include "nnopt/nnopt.h"

/* Typed kernels live in blis_<family>.inc files included twice, with
 * T = float / BLIS_SUFFIX = f32, then T = double / f64. */
#define BLIS_PASTE_(a, b) a##_##b
#define BLIS_PASTE(a, b) BLIS_PASTE_(a, b)
#define BLIS_FN(name) BLIS_PASTE(name, BLIS_SUFFIX)

/* One thread's scratch memory, kept across ops so the hot path never mallocs. */
typedef struct blis_scratch {
    void *data;
    size_t bytes;
} blis_scratch;

typedef struct blis_backend {
    const nnopt_host_api *host;
    int threads;           /* threads for our loops and for BLIS */
    char kernels[32];      /* BLIS sub-configuration in effect (bli_arch_string) */
    char arch_reason[96];  /* why those kernels (for describe) */
    blis_scratch *scratch; /* [threads] */
    int direct_conv;       /* direct (im2col-free) convolution kernels where they win */
    int bf16_hw;           /* AVX-512 BF16 kernels for bf16 ops (else f32 on widened copies) */
    int int8_vnni;         /* int8 ops on AVX-512 VNNI (else the reference kernels) */
    int winograd;          /* blis_winograd_mode: 3x3 stride-1 convolutions */
    int dense_avx512;      /* dense layers on our AVX-512 GEMM (else BLIS) */
    int pointwise_avx512;  /* ungrouped 1x1 convolutions on our AVX-512 GEMM (else BLIS) */
    void *add_buffer;      /* conv2d_bwd_data_add on paths that only overwrite */
    size_t add_buffer_bytes;
} blis_backend;

typedef enum blis_winograd_mode {
    BLIS_WINOGRAD_AUTO = 0, /* where measured faster than the direct kernels */
    BLIS_WINOGRAD_OFF,
    BLIS_WINOGRAD_F2, /* F(2x2, 3x3) wherever it applies */
    BLIS_WINOGRAD_F4, /* F(4x4, 3x3) wherever it applies */
} blis_winograd_mode;

/* ---- kernel selection (blis_arch.c) ---- */

/* Resolves `requested` ("auto" or a sub-configuration name), makes it BLIS's
 * kernel set if BLIS is not initialised yet, and checks what took effect.
 * Fills be->kernels and be->arch_reason. */
nnopt_status blis_arch_select(blis_backend *be, const char *requested);
/* Whether this CPU runs AVX-512F code (the backend's own kernels need it);
 * inline, for the unit tests that build kernel files without the backend. */
static inline int blis_cpu_has_avx512f(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* ---- GEMM (blis_gemm.c) ----
 * C[m,n] = A[m,k] B[k,n] + beta C, each matrix given by element strides
 * (rs: next row, cs: next column), so transposed operands and column-major
 * results need no copies. Elements are of `dtype` (F32 or F64). */
typedef struct blis_matrix {
    const void *data;
    long rs, cs;
} blis_matrix;

void blis_gemm(nnopt_dtype dtype, int threads, long m, long n, long k, blis_matrix a, blis_matrix b,
               double beta, void *c, long rs_c, long cs_c);

/* ---- scratch (blis_backend.c) ----
 * Makes each of the first `count` threads' scratch at least `bytes` (64-byte
 * aligned). Call before a parallel region, never inside one. */
nnopt_status blis_scratch_reserve(blis_backend *be, int count, size_t bytes);

/* Rounds a byte count up to a multiple of 64, for carving scratch into parts. */
static inline size_t blis_align64(size_t bytes) {
    return (bytes + 63) & ~(size_t)63;
}

/* ---- convolutions (blis_conv.c) ----
 * Whether this CPU runs the direct convolution kernels (AVX-512F). */
int blis_direct_conv_available(void);

typedef struct conv_geometry {
    long n, c, h, w;     /* input */
    long k, r, s;        /* filters */
    long p, q;           /* output plane */
    long groups, cg, kg; /* channels per group: input, output */
    long stride_h, stride_w, pad_h, pad_w;
} conv_geometry;

/* x: [N,C,H,W], w: [K,C/g,R,S], y: [N,K,P,Q]: fills g, or set_error. */
/* Whether step s of a program is a forward convolution this instance runs as
 * Winograd: compiled mode leaves those to blis_conv2d. */
int blis_program_step_is_winograd(blis_backend *be, const nnopt_program *prog, int s);
nnopt_status blis_conv_geometry(blis_backend *be, const nnopt_op *op, const nnopt_tensor *x,
                                const nnopt_tensor *w, const nnopt_tensor *y, conv_geometry *g);
/* The output columns [*q_lo, *q_hi) whose filter column s reads inside the image. */
void blis_conv_valid_columns(const conv_geometry *g, long s, long *q_lo, long *q_hi);
/* ---- Winograd convolutions (blis_winograd.c) ----
 * The output tile size (2 or 4) Winograd runs one pass of g with, or 0 where
 * it does not apply or, under `auto`, is not the faster choice. */
typedef enum blis_winograd_pass {
    BLIS_WINOGRAD_FORWARD,
    BLIS_WINOGRAD_DATA,
    BLIS_WINOGRAD_FILTER,
} blis_winograd_pass;
int blis_winograd_tile(const blis_backend *be, const conv_geometry *g, nnopt_dtype dtype,
                       blis_winograd_pass pass);
/* How a convolution pass writes its result: as is, max(0, result)
 * (conv2d_relu), added to what the output holds (conv2d_bwd_data_add),
 * max(0, result + residual) (conv2d_add_relu) or added where the residual
 * (then a relu's output) is > 0 and 0 elsewhere (conv2d_bwd_data_add_masked). */
typedef enum blis_conv_output {
    BLIS_OUT_STORE = 0,
    BLIS_OUT_RELU,
    BLIS_OUT_ADD,
    BLIS_OUT_ADD_RELU,
    BLIS_OUT_ADD_MASKED
} blis_conv_output;
/* Forward: in = x, out = y (bias may be NULL; residual: BLIS_OUT_ADD_RELU's
 * or BLIS_OUT_ADD_MASKED's, shaped as y); data pass: in = dy, out = dx. */
nnopt_status blis_winograd_conv(blis_backend *be, const conv_geometry *g, int data_pass, int tile,
                                nnopt_dtype dtype, const void *in, const void *w, const void *bias,
                                blis_conv_output output, const void *residual, void *out);
/* The filter gradient dw of g from x and dy. */
nnopt_status blis_winograd_filter(blis_backend *be, const conv_geometry *g, int tile,
                                  nnopt_dtype dtype, const void *x, const void *dy, void *dw);

/* ---- int8 inference (blis_quant.c) ----
 * Whether this CPU runs the int8 kernels (AVX-512F/BW and VNNI). */
int blis_int8_available(void);

/* ---- argument checks (blis_backend.c) ---- */
nnopt_status blis_check_counts(blis_backend *be, const nnopt_op *op, int n_in, int min_in,
                               int max_in, int n_out, int want_out);
/* Present, allocated, F32 or F64, and (when like != NULL) like's dtype. */
/* a is allocated and has b's dtype and shape. */
int blis_same_shape(const nnopt_tensor *a, const nnopt_tensor *b);
nnopt_status blis_check_float(blis_backend *be, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, const nnopt_tensor *like);

/* ---- op families: same signature as the vtable's run, minus ctx ---- */
typedef nnopt_status (*blis_op_fn)(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out);

nnopt_status blis_conv2d(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out);
nnopt_status blis_conv2d_bwd_data(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_conv2d_bwd_filter(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_dense(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                        nnopt_tensor *const *out, int n_out);
nnopt_status blis_dense_bwd_data(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                 int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_dense_bwd_weight(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_bias_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out);
nnopt_status blis_pool2d(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out);
nnopt_status blis_pool2d_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_act(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out);
nnopt_status blis_act_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out);
/* values[i] = max(0, values[i]) as the relu activation (blis_elementwise.c);
 * one thread: the conv paths call it on outputs still in cache. */
void blis_relu_in_place(nnopt_dtype dtype, void *values, long count);
nnopt_status blis_add(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out);
/* dx[i] = y[i] > 0 ? dx[i] + part[i] : 0 over count values, threaded
 * (conv2d_bwd_data_add_masked on paths that only overwrite). */
void blis_add_where_positive(blis_backend *be, nnopt_dtype dtype, void *dx, const void *part,
                             const void *y, long count);
nnopt_status blis_sgd_update(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_batchnorm(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out);
nnopt_status blis_batchnorm_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out);
nnopt_status blis_qlinear(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out); /* conv2d_int8, dense_int8 */

#endif
