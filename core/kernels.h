/* Kernel mode of a network: precompiled (every op through the backend's
 * run) or compiled (executors record their forward pass as a program and the
 * backend compiles kernels specialised for it). Compiled programs are kept
 * here, one per distinct program (in practice per batch size and training
 * flag), so that the evaluation executors made every epoch reuse them
 * instead of compiling again. */
#ifndef NNOPT_CORE_KERNELS_H
#define NNOPT_CORE_KERNELS_H

#include "backend.h"

#define NNOPT_KERNELS_MAX_PROGRAMS 8

typedef struct nnopt_compiled_program {
    uint64_t fingerprint; /* of the program's steps and tensor table */
    void *compiled;       /* the backend's */
} nnopt_compiled_program;

typedef struct nnopt_kernels {
    int compiled; /* the requested mode */
    char compiler[256], flags[512], cache_dir[1024];
    int unavailable; /* the backend could not compile: precompiled from then on */
    char unavailable_reason[256];
    /* Totals for the report. */
    double compile_seconds;
    int cache_hits, cache_misses;
    nnopt_compiled_program programs[NNOPT_KERNELS_MAX_PROGRAMS];
    int n_programs;
} nnopt_kernels;

/* Copies options (NULL: precompiled). */
void nnopt_kernels_set(nnopt_kernels *k, const nnopt_program_options *options);
/* Whether executors should record and compile programs (compiled mode,
 * and no fallback yet). */
int nnopt_kernels_wanted(const nnopt_kernels *k);
/* The compiled program for prog (the same steps and tensor shapes), compiling
 * it on a miss; batch and training only label the log line.
 * NULL (and NNOPT_OK) when the backend has no program support or cannot
 * compile: a warning is logged
 * once and the network runs precompiled kernels. */
nnopt_status nnopt_kernels_get(nnopt_kernels *k, nnopt_backend *b, int64_t batch, int training,
                               const nnopt_program *prog, void **compiled, nnopt_error *err);
/* Frees every compiled program (before the backend is closed). */
void nnopt_kernels_release(nnopt_kernels *k, nnopt_backend *b);
/* "compiled", "precompiled", or "precompiled (no compiler: ...)". */
void nnopt_kernels_describe_mode(const nnopt_kernels *k, char *buf, size_t size);

#endif
