/* Compiled mode of an executor: its forward pass recorded as a program (the
 * op sequence with exact shapes, see nnopt/program.h), compiled once by the
 * backend and replayed in place of the op-by-op loop. */
#ifndef NNOPT_CORE_EXEC_PROGRAM_H
#define NNOPT_CORE_EXEC_PROGRAM_H

#include "executor.h"

/* Records ex's forward pass and gets it compiled (or a cached compiled
 * copy) when the network's kernel mode is compiled. Leaves ex->program NULL
 * when the backend cannot compile: the executor then runs op by op. */
nnopt_status nnopt_exec_program_prepare(nnopt_exec *ex, nnopt_error *err);
/* Runs the compiled forward pass (ex->program must be set). */
nnopt_status nnopt_exec_program_forward(nnopt_exec *ex, nnopt_error *err);
void nnopt_exec_program_free(nnopt_exec *ex);

/* The forward op of node i as the executor runs it now (batch-norm mode,
 * a dropout seed fresh for every step); returns the number of outputs, or 0
 * when node i runs no op (input, parameters, views). */
int nnopt_exec_forward_op(const nnopt_exec *ex, int i, nnopt_op *op);

/* A tensor of an executor: node's value (aux < 0) or its aux tensor aux. */
typedef struct nnopt_exec_arg {
    int32_t node;
    int8_t aux;
} nnopt_exec_arg;
/* a node's inputs, plus a folded batchnorm's or a fused residual */
#define NNOPT_EXEC_MAX_ARGS (NNOPT_NODE_MAX_INPUTS + 1)

/* The tensors node i's forward op reads (returned: how many) and writes
 * (out[0..2]: its value, then the aux tensors, as many as
 * nnopt_exec_forward_op says), folding and fusion included. */
int nnopt_exec_forward_args(const nnopt_exec *ex, int i, nnopt_exec_arg *in, nnopt_exec_arg *out);

#endif
