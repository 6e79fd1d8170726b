/* Compiled kernels are never dlclose'd: a kernel object linked with OpenMP
 * may hold the last reference to the OpenMP runtime, whose worker threads
 * outlive the call (the reason plugins are never unloaded either). Each load
 * goes through a fresh hard link so that a rebuilt entry is mapped anew
 * instead of glibc handing back the object already loaded under that name. */
#define _GNU_SOURCE
#include "kc_cache.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KC_MAX_ARGS 64
#define KC_KEY_SYMBOL "nnopt_kc_key"

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

void nnopt_kc_default_cache_dir(char *buf, size_t size) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(buf, size, "%s/nnopt/kernels", xdg);
    else
        snprintf(buf, size, "%s/.cache/nnopt/kernels", home && home[0] ? home : "/tmp");
}

void nnopt_kc_cache_key(const char *const *parts, int n_parts, char key[33]) {
    uint64_t h1 = 0xcbf29ce484222325ULL, h2 = 0x84222325cbf29ce4ULL;
    for (int i = 0; i < n_parts; i++) {
        h1 = fnv1a(h1, parts[i], strlen(parts[i]) + 1);
        h2 = fnv1a(h2, parts[i], strlen(parts[i]) + 1);
    }
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
}

static void cache_folder(const char *cache_dir, char *dir, size_t size) {
    if (cache_dir && cache_dir[0])
        snprintf(dir, size, "%s", cache_dir);
    else
        nnopt_kc_default_cache_dir(dir, size);
}

/* Runs argv, capturing up to size-1 bytes of stdout and stderr. Returns the
 * exit status, 127 when the program could not be started, -1 on error. */
static int run_capture(char *const *argv, char *out, size_t size) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    char chunk[4096];
    ssize_t got;
    while ((got = read(fds[0], chunk, sizeof chunk)) > 0 || (got < 0 && errno == EINTR)) {
        if (got <= 0) continue;
        size_t keep = size - 1 - used < (size_t)got ? size - 1 - used : (size_t)got;
        memcpy(out + used, chunk, keep);
        used += keep;
    }
    out[used] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Splits flags on spaces into argv after the compiler. */
static int split_args(char *words, char **argv, int at, int max) {
    for (char *tok = strtok(words, " \t"); tok && at < max; tok = strtok(NULL, " \t"))
        argv[at++] = tok;
    return at;
}

static int read_file(const char *path, char **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return -1;
    }
    *size = (size_t)sb.st_size;
    *data = malloc(*size + 1);
    int ok = *data && fread(*data, 1, *size, f) == *size;
    fclose(f);
    if (!ok) {
        free(*data);
        *data = NULL;
        return -1;
    }
    (*data)[*size] = '\0';
    return 0;
}

static int file_checksum(const char *path, char hex[17]) {
    char *data;
    size_t size;
    if (read_file(path, &data, &size) != 0) return -1;
    snprintf(hex, 17, "%016llx", (unsigned long long)fnv1a(0xcbf29ce484222325ULL, data, size));
    free(data);
    return 0;
}

/* dlopen through a fresh hard link (see the top of this file); checks the
 * embedded key. Returns the handle or NULL with why set. */
static void *open_entry(const char *so, const char *key, char *why, size_t why_size) {
    static unsigned counter;
    char link_path[4200];
    snprintf(link_path, sizeof link_path, "%s.load.%ld.%u", so, (long)getpid(), counter++);
    if (link(so, link_path) != 0) {
        snprintf(why, why_size, "cannot link %s: %s", so, strerror(errno));
        return NULL;
    }
    void *h = dlopen(link_path, RTLD_NOW | RTLD_LOCAL);
    unlink(link_path);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, why_size, "dlopen failed: %s", e ? e : "?");
        return NULL;
    }
    const char *embedded = dlsym(h, KC_KEY_SYMBOL);
    if (!embedded || strcmp(embedded, key) != 0) {
        snprintf(why, why_size, "its embedded key does not match");
        return NULL; /* left mapped: see the top of this file */
    }
    return h;
}

/* A cache entry that is present, matches its checksum and loads. */
static void *try_cache(const char *so, const char *sum, const char *key, char *why,
                       size_t why_size) {
    char *want;
    size_t len;
    char have[17];
    if (access(so, F_OK) != 0) return NULL;
    if (read_file(sum, &want, &len) != 0) {
        snprintf(why, why_size, "no checksum file");
        return NULL;
    }
    int match = file_checksum(so, have) == 0 && len >= 16 && strncmp(want, have, 16) == 0;
    free(want);
    if (!match) {
        snprintf(why, why_size, "checksum mismatch");
        return NULL;
    }
    return open_entry(so, key, why, why_size);
}

nnopt_status nnopt_kc_load(const nnopt_host_api *host, const char *source, const kc_build *build,
                           void **handle, int *cache_hit, char *note, size_t note_size) {
    *handle = NULL;
    *cache_hit = 0;
    note[0] = '\0';
    char out[8192];
    char *version_argv[] = {(char *)build->compiler, "--version", NULL};
    int rc = run_capture(version_argv, out, sizeof out);
    if (rc != 0) {
        host->set_error("compiler '%s' %s", build->compiler,
                        rc == 127 ? "not found" : "does not run (--version failed)");
        return NNOPT_STATUS_UNSUPPORTED;
    }
    /* Key: source, compiler, its version banner and flags. */
    const char *parts[4] = {source, build->compiler, out, build->flags};
    char key[40], dir[4096], so[4200], sum[4200], src[4200];
    nnopt_kc_cache_key(parts, 4, key);
    cache_folder(build->cache_dir, dir, sizeof dir);
    snprintf(so, sizeof so, "%s/%s.so", dir, key);
    snprintf(sum, sizeof sum, "%s/%s.sum", dir, key);
    snprintf(src, sizeof src, "%s/%s.c", dir, key);

    char why[512] = "";
    *handle = try_cache(so, sum, key, why, sizeof why);
    if (*handle) {
        *cache_hit = 1;
        snprintf(note, note_size, "%s", so);
        return NNOPT_OK;
    }
    if (why[0]) {
        host->log(NNOPT_LOG_WARN, "kernel cache entry %s is corrupted (%s): rebuilding it", so,
                  why);
        snprintf(note, note_size, "rebuilt corrupted entry (%s)", why);
        unlink(sum);
        unlink(so);
    }
    /* The source as compiled, with its key embedded for the load check. */
    size_t src_len = strlen(source);
    char key_line[96];
    int key_len =
        snprintf(key_line, sizeof key_line, "const char %s[] = \"%s\";\n", KC_KEY_SYMBOL, key);
    char *text = malloc(src_len + (size_t)key_len + 1);
    if (!text) {
        host->set_error("out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    memcpy(text, source, src_len);
    memcpy(text + src_len, key_line, (size_t)key_len + 1);
    nnopt_status st = host->write_file_atomic(src, text, src_len + (size_t)key_len);
    free(text);
    if (st != NNOPT_OK) return st;

    char tmp[4300], flags[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so, (long)getpid());
    snprintf(flags, sizeof flags, "%s", build->flags);
    char *argv[KC_MAX_ARGS + 6];
    int n = 0;
    argv[n++] = (char *)build->compiler;
    n = split_args(flags, argv, n, KC_MAX_ARGS);
    argv[n++] = "-o";
    argv[n++] = tmp;
    argv[n++] = src;
    argv[n] = NULL;
    rc = run_capture(argv, out, sizeof out);
    if (rc != 0) {
        unlink(tmp);
        for (char *c = out; *c; c++)
            if (*c == '\n') *c = ' '; /* one warning line */
        host->set_error("compiling %s with '%s %s' failed (status %d): %.300s", src,
                        build->compiler, build->flags, rc, out);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    /* The object appears under its final name whole, or not at all. */
    if (rename(tmp, so) != 0) {
        host->set_error("cannot rename %s to %s: %s", tmp, so, strerror(errno));
        unlink(tmp);
        return NNOPT_STATUS_IO;
    }
    char checksum[17];
    if (file_checksum(so, checksum) != 0) {
        host->set_error("cannot read back %s", so);
        return NNOPT_STATUS_IO;
    }
    st = host->write_file_atomic(sum, checksum, 16);
    if (st != NNOPT_OK) return st;
    *handle = open_entry(so, key, why, sizeof why);
    if (!*handle) {
        host->set_error("the freshly compiled %s does not load: %s", so, why);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    if (!note[0]) snprintf(note, note_size, "%s", so);
    return NNOPT_OK;
}

int nnopt_kc_blob_read(const char *cache_dir, const char *key, const char *ext, char **data,
                       size_t *size, char *why, size_t why_size) {
    char dir[4096], path[4300], sum[4300];
    *data = NULL;
    *size = 0;
    why[0] = '\0';
    cache_folder(cache_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s%s", dir, key, ext);
    snprintf(sum, sizeof sum, "%s/%s%s.sum", dir, key, ext);
    if (access(path, F_OK) != 0) return 0;
    char *want = NULL, have[17];
    size_t len = 0;
    int match = read_file(sum, &want, &len) == 0 && file_checksum(path, have) == 0 && len >= 16 &&
                strncmp(want, have, 16) == 0;
    free(want);
    if (match && read_file(path, data, size) == 0 && *size > 0) return 1;
    free(*data);
    *data = NULL;
    snprintf(why, why_size, "%s: checksum mismatch or unreadable", path);
    unlink(sum);
    unlink(path);
    return -1;
}

nnopt_status nnopt_kc_blob_write(const nnopt_host_api *host, const char *cache_dir, const char *key,
                                 const char *ext, const void *data, size_t size) {
    char dir[4096], path[4300], sum[4300], checksum[17];
    cache_folder(cache_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s%s", dir, key, ext);
    snprintf(sum, sizeof sum, "%s/%s%s.sum", dir, key, ext);
    /* The entry first, its checksum last: a reader never trusts a half-written pair. */
    nnopt_status st = host->write_file_atomic(path, data, size);
    if (st != NNOPT_OK) return st;
    snprintf(checksum, sizeof checksum, "%016llx",
             (unsigned long long)fnv1a(0xcbf29ce484222325ULL, data, size));
    return host->write_file_atomic(sum, checksum, 16);
}
