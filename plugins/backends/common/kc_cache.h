/* Kernel compilation, part 2: compiling generated source with the system C
 * compiler into a shared object, cached on disk by a hash of the source, the
 * compiler, its version and the flags. */
#ifndef NNOPT_KC_CACHE_H
#define NNOPT_KC_CACHE_H

#include <stddef.h>

#include "nnopt/host.h"

typedef struct kc_build {
    const char *compiler, *flags, *cache_dir; /* cache_dir "" or NULL: the default */
} kc_build;

/* Loads the shared object for `source` from the cache, compiling it on a
 * miss; a cache entry whose checksum or embedded key does not match, or
 * that does not load, is rebuilt. *handle is a dlopen handle (never closed:
 * see kc_cache.c). NNOPT_STATUS_UNSUPPORTED (after set_error) when there is
 * no working compiler. */
nnopt_status nnopt_kc_load(const nnopt_host_api *host, const char *source, const kc_build *build,
                           void **handle, int *cache_hit, char *note, size_t note_size);

/* The cache key of a list of NUL-terminated parts: 32 hex digits (two
 * FNV-1a seeds over every part and its terminator). */
void nnopt_kc_cache_key(const char *const *parts, int n_parts, char key[33]);

/* Content-addressed entries for compilers other than the system one (NVRTC's
 * cubin): <dir>/<key><ext>, with a checksum beside it. nnopt_kc_blob_read
 * returns 1 with *data malloc'd on a hit, 0 on a miss, and -1 (why set, the
 * entry removed) when the entry is corrupted. dir "" or NULL: the default. */
int nnopt_kc_blob_read(const char *dir, const char *key, const char *ext, char **data, size_t *size,
                       char *why, size_t why_size);
nnopt_status nnopt_kc_blob_write(const nnopt_host_api *host, const char *dir, const char *key,
                                 const char *ext, const void *data, size_t size);

/* The default cache folder: $XDG_CACHE_HOME/nnopt/kernels, else
 * $HOME/.cache/nnopt/kernels. */
void nnopt_kc_default_cache_dir(char *buf, size_t size);

#endif
