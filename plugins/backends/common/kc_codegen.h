/* Kernel compilation, part 1: C source specialised for one program (see
 * nnopt/program.h). Per-image ops (convolution, dense, pooling, activation,
 * add, inference batch norm) become straight-line code with every shape and
 * stride a constant, fused where an intermediate never leaves the program
 * (convolution + bias + batch norm + activation, dense + bias + activation),
 * and run image tile by image tile, in parallel over the batch, with
 * intermediates in per-thread scratch instead of full tensors. Every other
 * step calls back into the backend's ordinary run.
 *
 * The generated file exports:
 *   int nnopt_kc_program(void *const *data, kc_fallback_fn fallback, void *ctx,
 *                        char *shared, char *scratch);   nonzero = a fallback failed
 *   const size_t nnopt_kc_scratch_bytes (per thread), nnopt_kc_shared_bytes;
 *   const int nnopt_kc_threads;
 *   const char nnopt_kc_key[] (filled in by the cache: the entry's own key). */
#ifndef NNOPT_KC_CODEGEN_H
#define NNOPT_KC_CODEGEN_H

#include <stddef.h>

#include "nnopt/program.h"

typedef struct kc_source {
    char *text; /* malloc'd, NUL-terminated */
    size_t length;
    int specialized_steps;
} kc_source;

/* Generates the source for prog, parallel over `threads` threads. Returns 0,
 * or -1 when out of memory. Steps the generator does not handle become
 * fallback calls, so this never fails for a valid program; so do the steps
 * `leave` marks (nonzero per step; NULL: none), which the backend's own
 * kernels run faster. */
int nnopt_kc_generate(const nnopt_program *prog, int threads, const unsigned char *leave,
                      kc_source *out);
void nnopt_kc_source_free(kc_source *s);

extern const char nnopt_kc_prelude[];

#endif
