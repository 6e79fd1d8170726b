/* Compiled mode on the GPU: CUDA C source specialised for one program (see
 * nnopt/program.h), compiled at run time with NVRTC and cached on disk.
 *
 * Convolutions and dense layers stay on cuDNN and cuBLAS (the backend's own
 * run, without their bias); what follows them while the value never leaves
 * the program (bias, inference batch norm, activation) becomes one generated
 * epilogue kernel that works in place on their output. Standalone pooling,
 * activations, additions (with a following activation fused in) and
 * inference batch norms become generated kernels with every shape a
 * constant. Every other step, and every DYNAMIC one, runs through the
 * backend's run.
 *
 * Generation and compilation need neither a GPU nor a backend instance, so
 * they are tested on machines without one (tests/test_cuda_nvrtc.c); only
 * cuda_program.c (loading and launching) needs a device. */
#ifndef NNOPT_CUDA_NVRTC_H
#define NNOPT_CUDA_NVRTC_H

#include <stddef.h>
#include <stdint.h>

#include "nnopt/host.h"
#include "nnopt/program.h"

enum { CUDA_NV_FALLBACK = 0, CUDA_NV_KERNEL = 1 };
enum { CUDA_NV_MAX_ARGS = 8, CUDA_NV_BLOCK = 256 };

/* One thing program_run does, in order. */
typedef struct cuda_nv_action {
    int kind; /* CUDA_NV_FALLBACK or CUDA_NV_KERNEL */
    int step; /* the program step (the first of a fused chain) */
    /* FALLBACK: the step's inputs passed (a bias the epilogue adds is
     * dropped), and the tensor written instead of out[0] (the fused chain's
     * last output, so that the intermediate is never materialised). */
    int n_in, out0;
    /* KERNEL: its name is "nnopt_nv_<kernel>"; its arguments are these
     * tensors' data pointers, in order; one thread per element of `threads`. */
    int kernel, n_args, args[CUDA_NV_MAX_ARGS];
    int64_t threads;
} cuda_nv_action;

typedef struct cuda_nv_plan {
    char *source; /* malloc'd CUDA C */
    size_t length;
    cuda_nv_action *actions;
    int n_actions, n_kernels;
    int specialized_steps; /* steps whose work is in generated kernels */
} cuda_nv_plan;

/* Plans prog and generates its source. Returns 0, or -1 when out of memory;
 * never fails otherwise (what it cannot generate falls back). */
int cuda_nv_generate(const nnopt_program *prog, cuda_nv_plan *plan);
void cuda_nv_plan_free(cuda_nv_plan *plan);

/* A compiled image for cudaLibraryLoadData. */
typedef struct cuda_nv_image {
    char *data; /* malloc'd; a cubin, or NUL-terminated PTX */
    size_t size;
    int is_cubin, cache_hit;
    char note[256]; /* the cache entry, or why it was rebuilt */
} cuda_nv_image;

/* Compiles source with NVRTC for `arch` (e.g. "sm_90"), through the cache in
 * cache_dir ("" or NULL: the default kernel cache), keyed by the source,
 * NVRTC's version and the options. NNOPT_STATUS_UNSUPPORTED (after
 * set_error, with NVRTC's log) when compilation fails. */
nnopt_status cuda_nv_compile(const nnopt_host_api *host, const char *source, const char *arch,
                             const char *cache_dir, cuda_nv_image *image);
void cuda_nv_image_free(cuda_nv_image *image);

/* The architecture to compile for a device of compute capability
 * major.minor: "sm_XY" when this NVRTC supports it (a cubin, no JIT), else
 * PTX for the newest one it supports ("compute_XY"), which the driver
 * compiles for a newer device when loading it. */
void cuda_nv_arch_for(int major, int minor, char *arch, size_t size);

#endif
