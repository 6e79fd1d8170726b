/* Files written so that a crash or error never leaves a half-written one. */
#ifndef NNOPT_CORE_FSUTIL_H
#define NNOPT_CORE_FSUTIL_H

#include <stdio.h>
#include "error.h"

/* mkdir -p. */
nnopt_status nnopt_mkdirs(const char *path, nnopt_error *err);

/* Writes path through write(f, user) into path.tmp.<pid>, fsyncs, then
 * renames over path: readers see the old file or the whole new one. */
nnopt_status nnopt_write_atomic(const char *path, void (*write)(FILE *f, void *user), void *user,
                                nnopt_error *err);

#endif
