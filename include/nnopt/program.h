/* Programs: a fixed sequence of ops with exact shapes, handed to a backend
 * once so that it can generate and compile kernels specialised for it (ABI
 * 1.1). The core records an executor's forward pass as a program; a backend
 * that implements program_compile returns a compiled program which the core
 * then replays with program_run instead of calling run op by op.
 *
 * Tensors are referred to by index into the program's tensor table, which
 * describes dtype and shape only; the actual tensors are bound at every
 * program_run, in the same order. Steps whose parameters change from call to
 * call (a dropout seed) are marked DYNAMIC: a backend must run them with the
 * op it receives in program_run, never with the recorded one. A backend may
 * specialise any subset of the other steps and run the rest through its
 * ordinary run, so correctness never depends on code-generation coverage. */
#ifndef NNOPT_PROGRAM_H
#define NNOPT_PROGRAM_H

#include "nnopt/ops.h"
#include "nnopt/types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NNOPT_PROGRAM_MAX_ARGS 6

enum {
    /* Read or written outside the program (the input, parameters, logits,
     * values kept for backward): must hold its value after program_run. A
     * tensor without it is an intermediate the backend may never write. */
    NNOPT_PROGRAM_TENSOR_EXTERNAL = 1,
    /* Never read by the program's steps and absent from the binding table
     * (an unused slot): ndim is 0. */
    NNOPT_PROGRAM_TENSOR_UNUSED = 2
};

typedef struct nnopt_program_tensor {
    nnopt_dtype dtype;
    int32_t ndim;
    int64_t shape[NNOPT_MAX_DIMS];
    int32_t flags;    /* NNOPT_PROGRAM_TENSOR_* */
    int32_t alias_of; /* index of the tensor whose memory this one views, or -1 */
} nnopt_program_tensor;

enum { NNOPT_PROGRAM_STEP_DYNAMIC = 1 };

typedef struct nnopt_program_step {
    nnopt_op op; /* as recorded; DYNAMIC steps get the current one at run time */
    int32_t n_in, n_out;
    int32_t in[NNOPT_PROGRAM_MAX_ARGS], out[NNOPT_PROGRAM_MAX_ARGS]; /* tensor indices */
    int32_t flags;                                                   /* NNOPT_PROGRAM_STEP_* */
} nnopt_program_step;

typedef struct nnopt_program {
    uint32_t struct_size;
    int32_t n_tensors, n_steps;
    const nnopt_program_tensor *tensors;
    const nnopt_program_step *steps;
} nnopt_program;

/* How to build specialised kernels: the technique's settings. NULL strings
 * take the backend's defaults. */
typedef struct nnopt_program_options {
    uint32_t struct_size;
    const char *compiler;  /* e.g. "cc", "/usr/bin/clang" */
    const char *flags;     /* e.g. "-O3 -march=native -shared -fPIC -fopenmp" */
    const char *cache_dir; /* "" or NULL: $XDG_CACHE_HOME/nnopt/kernels, else ~/.cache/... */
} nnopt_program_options;

/* What program_compile did, for the report. */
typedef struct nnopt_program_info {
    double compile_seconds; /* code generation, compiler and loading */
    int32_t cache_hit;      /* 1: the compiled kernels came from the cache */
    int32_t specialized_steps, total_steps;
    char note[256]; /* e.g. the cache entry's path, or why an entry was rebuilt */
} nnopt_program_info;

#ifdef __cplusplus
}
#endif
#endif
