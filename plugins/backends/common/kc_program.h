/* Kernel compilation, part 3: the compiled program a CPU backend hands the
 * core (program_compile / program_run / program_free of ABI 1.1). Shared by
 * the cpu and blis backends; steps the generated code does not specialise
 * call back into the backend's own `run`. */
#ifndef NNOPT_KC_PROGRAM_H
#define NNOPT_KC_PROGRAM_H

#include "nnopt/nnopt.h"

/* The backend's ordinary op entry point. */
typedef nnopt_status (*kc_run_fn)(void *backend, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out);

/* Defaults for options the technique leaves unset. */
#define NNOPT_KC_DEFAULT_COMPILER "cc"
#define NNOPT_KC_DEFAULT_FLAGS "-O3 -march=native -shared -fPIC -fopenmp"

/* leave: per step, nonzero where the backend's own `run` should run it
 * (nnopt_kc_generate); NULL: generate every step the generator can. */
nnopt_status nnopt_kc_compile(const nnopt_host_api *host, const nnopt_program *prog,
                              const nnopt_program_options *options, int threads,
                              const unsigned char *leave, void **compiled,
                              nnopt_program_info *info);
nnopt_status nnopt_kc_run(const nnopt_host_api *host, void *compiled, kc_run_fn run, void *backend,
                          const nnopt_op *ops, nnopt_tensor *const *tensors);
void nnopt_kc_free(void *compiled);

#endif
