/* Files written so that a crash or error never leaves a half-written one. */
#ifndef NNOPT_CORE_FSUTIL_H
#define NNOPT_CORE_FSUTIL_H

#include <stdio.h>
#include "error.h"

/* mkdir -p. */
nnopt_status nnopt_mkdirs(const char *path, nnopt_error *err);

/* Writes the parts to path.tmp.<pid>, fsyncs, renames over path and fsyncs
 * the folder: readers (and a restart after a crash) see the old file or the
 * whole new one, never a mix. */
nnopt_status nnopt_write_atomic_parts(const char *path, const void *const *parts,
                                      const size_t *sizes, int n_parts, nnopt_error *err);

/* The same for a file composed by write(f, user). */
nnopt_status nnopt_write_atomic(const char *path, void (*write)(FILE *f, void *user), void *user,
                                nnopt_error *err);

#endif
