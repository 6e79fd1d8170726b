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

nnopt_status nnopt_write_atomic(const char *path, void (*write)(FILE *f, void *user), void *user,
                                nnopt_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot write: %s", tmp, strerror(errno));
    write(f, user);
    int failed = ferror(f) != 0;
    failed |= fflush(f) != 0;
    failed |= fsync(fileno(f)) != 0;
    int saved_errno = errno;
    failed |= fclose(f) != 0;
    if (failed || rename(tmp, path) != 0) {
        if (!failed) saved_errno = errno;
        unlink(tmp);
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot write: %s", path,
                               strerror(saved_errno));
    }
    return NNOPT_OK;
}
