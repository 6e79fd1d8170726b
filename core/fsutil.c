#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

nnopt_status nnopt_mkdirs(const char *path, nnopt_error *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot create folder: %s", buf,
                                       strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    return NNOPT_OK;
}

static int write_all(int fd, const void *buf, size_t size) {
    const unsigned char *p = buf;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* The folder holding path, so that the rename itself can be made durable. */
static int fsync_parent_folder(const char *path) {
    size_t len = strlen(path);
    char *folder = malloc(len + 2);
    if (!folder) return -1;
    memcpy(folder, path, len + 1);
    char *slash = strrchr(folder, '/');
    if (!slash)
        strcpy(folder, ".");
    else if (slash == folder)
        folder[1] = '\0';
    else
        *slash = '\0';
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(folder);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some file systems cannot sync folders; the rename is as durable as they allow. */
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP)) rc = 0;
    int saved_errno = errno;
    close(fd);
    errno = saved_errno;
    return rc;
}

/* Writes the parts to path.tmp.<pid>, fsyncs, renames over path and fsyncs
 * the folder: readers (and a restart after a crash) see the old file or the
 * whole new one, never a mix. */
nnopt_status nnopt_write_atomic_parts(const char *path, const void *const *parts,
                                      const size_t *sizes, int n_parts, nnopt_error *err) {
    size_t tmp_size = strlen(path) + 32;
    char *tmp = malloc(tmp_size);
    if (!tmp) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        nnopt_status st =
            nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    int failed = 0;
    for (int i = 0; !failed && i < n_parts; i++) failed = write_all(fd, parts[i], sizes[i]) != 0;
    if (!failed) failed = fsync(fd) != 0;
    int saved_errno = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        saved_errno = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        saved_errno = errno;
    }
    if (failed) {
        unlink(tmp);
        free(tmp);
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot write: %s", path,
                               strerror(saved_errno));
    }
    free(tmp);
    if (fsync_parent_folder(path) != 0)
        return nnopt_error_set(err, NNOPT_STATUS_IO,
                               "%s: written, but its folder could not be synced: %s", path,
                               strerror(errno));
    return NNOPT_OK;
}

nnopt_status nnopt_write_atomic(const char *path, void (*write)(FILE *f, void *user), void *user,
                                nnopt_error *err) {
    /* Composed in memory first (reports are small), then written like any other file. */
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    write(f, user);
    int failed = ferror(f) != 0;
    failed |= fclose(f) != 0;
    nnopt_status st =
        failed ? nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot compose the file", path)
               : nnopt_write_atomic_parts(path, (const void *const[]){text}, &size, 1, err);
    free(text);
    return st;
}
