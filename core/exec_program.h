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

#endif
