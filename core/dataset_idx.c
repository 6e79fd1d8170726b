/* Loading MNIST-style IDX files (optionally gzip-compressed) into an nnopt_dataset.
 *
 * Every way a file can be wrong gets its own message naming the file, since the
 * usual failures are a half-finished download, a swapped images/labels pair or
 * mismatched train/test files, and the user needs to know which file to fix. */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u /* u8 data, 3 dimensions */
#define IDX_LABELS_MAGIC 0x00000801u /* u8 data, 1 dimension */

/* Headers claiming more than this are corrupt rather than big datasets; the
 * bound keeps every size computation far from overflow. */
#define IDX_MAX_DIM 0x7fffffffu
#define IDX_MAX_TOTAL_BYTES (UINT64_C(1) << 40)

/* Buffers start at most this big and grow as data actually arrives, so a
 * corrupt header claiming terabytes fails as "truncated", not as a huge malloc. */
#define IDX_INITIAL_CAPACITY ((size_t)16 << 20)
#define IDX_READ_CHUNK ((size_t)1 << 20)

typedef struct idx_file {
    gzFile gz;
    const char *path;
    nnopt_error *err;
} idx_file;

static nnopt_status idx_open(idx_file *f, const char *path, nnopt_error *err) {
    f->path = path;
    f->err = err;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        int saved = errno;
        return nnopt_error_set(err, saved ? NNOPT_STATUS_IO : NNOPT_STATUS_OUT_OF_MEMORY,
                               "%s: cannot open: %s", path,
                               saved ? strerror(saved) : "out of memory");
    }
    return NNOPT_OK;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Turns zlib's error state after a failed or short read into a message; returns
 * NNOPT_OK when the stream simply ended (including a gzip stream cut short,
 * which the caller reports as truncation with byte counts). */
static nnopt_status idx_check_stream(idx_file *f) {
    int zerr = Z_OK;
    const char *msg = gzerror(f->gz, &zerr);
    if (zerr == Z_OK || zerr == Z_BUF_ERROR) return NNOPT_OK;
    if (zerr == Z_ERRNO)
        return nnopt_error_set(f->err, NNOPT_STATUS_IO, "%s: read error: %s", f->path,
                               strerror(errno));
    if (zerr == Z_MEM_ERROR)
        return nnopt_error_set(f->err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory in zlib",
                               f->path);
    return nnopt_error_set(f->err, NNOPT_STATUS_FORMAT, "%s: corrupt gzip data: %s", f->path,
                           msg ? msg : "unknown zlib error");
}

/* Reads up to len bytes, stopping early only at end of file; *got says how many
 * arrived. Errors (I/O, corrupt gzip) are reported and returned. */
static nnopt_status idx_read(idx_file *f, void *buf, size_t len, size_t *got) {
    uint8_t *dst = buf;
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > (size_t)1 << 30) want = (size_t)1 << 30; /* gzread takes an unsigned */
        int n = gzread(f->gz, dst + *got, (unsigned)want);
        if (n < 0) {
            nnopt_status st = idx_check_stream(f);
            return st != NNOPT_OK
                       ? st
                       : nnopt_error_set(f->err, NNOPT_STATUS_IO, "%s: read error", f->path);
        }
        if (n == 0) break;
        *got += (size_t)n;
    }
    return *got < len ? idx_check_stream(f) : NNOPT_OK;
}

/* Reads the first keep_len of total_len bytes into a fresh buffer (*keep, NULL
 * when keep_len is 0) and reads past the rest, so that a file is checked for
 * truncation and trailing bytes (and its gzip checksum verified) even when
 * only part of it is wanted. `what` names the payload in messages. */
static nnopt_status idx_read_payload(idx_file *f, uint64_t total_len, size_t keep_len,
                                     uint8_t **keep, const char *what) {
    *keep = NULL;
    uint8_t *buf = NULL;
    size_t capacity = 0, have = 0;
    nnopt_status st = NNOPT_OK;

    while (have < keep_len) {
        if (have == capacity) {
            size_t grown = capacity ? capacity * 2 : IDX_INITIAL_CAPACITY;
            if (grown > keep_len) grown = keep_len;
            uint8_t *bigger = realloc(buf, grown);
            if (!bigger) {
                st = nnopt_error_set(f->err, NNOPT_STATUS_OUT_OF_MEMORY,
                                     "%s: out of memory reading %zu bytes of %s", f->path, keep_len,
                                     what);
                goto fail;
            }
            buf = bigger;
            capacity = grown;
        }
        size_t got = 0;
        st = idx_read(f, buf + have, capacity - have, &got);
        if (st != NNOPT_OK) goto fail;
        have += got;
        if (have < capacity) break; /* end of file */
    }

    /* The part after what we keep (and one chunk more, to catch trailing bytes). */
    uint64_t seen = have;
    if (have == keep_len) {
        uint8_t scratch[64 * 1024];
        for (;;) {
            size_t got = 0;
            st = idx_read(f, scratch, sizeof scratch, &got);
            if (st != NNOPT_OK) goto fail;
            seen += got;
            if (got < sizeof scratch) break;
        }
    }

    if (seen < total_len) {
        st = nnopt_error_set(f->err, NNOPT_STATUS_IO,
                             "%s: truncated: expected %" PRIu64 " bytes of %s, found %" PRIu64,
                             f->path, total_len, what, seen);
        goto fail;
    }
    if (seen > total_len) {
        st = nnopt_error_set(f->err, NNOPT_STATUS_FORMAT,
                             "%s: %" PRIu64 " unexpected bytes after the %" PRIu64
                             " bytes of %s the header announces",
                             f->path, seen - total_len, total_len, what);
        goto fail;
    }
    *keep = buf;
    return NNOPT_OK;

fail:
    free(buf);
    return st;
}

static uint32_t read_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads the magic number and ndims big-endian dimensions into dims. */
static nnopt_status idx_read_header(idx_file *f, uint32_t expected_magic, const char *kind,
                                    int ndims, uint32_t *dims) {
    uint8_t header[16];
    size_t header_len = 4 + 4 * (size_t)ndims, got = 0;
    nnopt_status st = idx_read(f, header, header_len, &got);
    if (st != NNOPT_OK) return st;
    if (got >= 4 && read_be32(header) != expected_magic)
        return nnopt_error_set(f->err, NNOPT_STATUS_FORMAT,
                               "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", f->path,
                               kind, read_be32(header), expected_magic);
    if (got < header_len)
        return nnopt_error_set(f->err, NNOPT_STATUS_IO,
                               "%s: truncated: expected %zu bytes of header, found %zu", f->path,
                               header_len, got);
    for (int i = 0; i < ndims; i++) {
        dims[i] = read_be32(header + 4 + 4 * i);
        if (dims[i] == 0 || dims[i] > IDX_MAX_DIM) {
            char shape[64];
            if (ndims == 3)
                snprintf(shape, sizeof shape, "%" PRIu32 " x %" PRIu32 " x %" PRIu32,
                         read_be32(header + 4), read_be32(header + 8), read_be32(header + 12));
            else
                snprintf(shape, sizeof shape, "%" PRIu32, read_be32(header + 4));
            return nnopt_error_set(f->err, NNOPT_STATUS_FORMAT,
                                   "%s: implausible IDX %s dimensions %s", f->path, kind, shape);
        }
    }
    return NNOPT_OK;
}

nnopt_status nnopt_dataset_load_idx(const char *images_path, const char *labels_path, int64_t limit,
                                    nnopt_dataset *out, nnopt_error *err) {
    if (!out)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "nnopt_dataset_load_idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "nnopt_dataset_load_idx: images_path and labels_path are required");

    idx_file images = {0}, labels = {0};
    uint8_t *pixels = NULL, *label_bytes = NULL;
    int32_t *label_values = NULL;
    uint32_t image_dims[3], label_count;
    nnopt_status st;

    /* Both headers first, so a mismatched pair fails before the big read. */
    if ((st = idx_open(&images, images_path, err)) != NNOPT_OK) goto done;
    if ((st = idx_read_header(&images, IDX_IMAGES_MAGIC, "image", 3, image_dims)) != NNOPT_OK)
        goto done;
    uint64_t count = image_dims[0], rows = image_dims[1], cols = image_dims[2];
    uint64_t image_bytes = rows * cols; /* both < 2^31: no overflow */
    if (image_bytes > IDX_MAX_TOTAL_BYTES / count) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: implausible IDX image dimensions %" PRIu64 " x %" PRIu64
                             " x %" PRIu64 " (over 2^40 bytes)",
                             images_path, count, rows, cols);
        goto done;
    }

    if ((st = idx_open(&labels, labels_path, err)) != NNOPT_OK) goto done;
    if ((st = idx_read_header(&labels, IDX_LABELS_MAGIC, "label", 1, &label_count)) != NNOPT_OK)
        goto done;
    if (label_count != count) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: %" PRIu64 " images but %s has %" PRIu32 " labels", images_path,
                             count, labels_path, label_count);
        goto done;
    }

    uint64_t keep = limit > 0 && (uint64_t)limit < count ? (uint64_t)limit : count;
    if (keep * image_bytes > SIZE_MAX) {
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                             "%s: %" PRIu64 " images do not fit in this address space", images_path,
                             keep);
        goto done;
    }
    if ((st = idx_read_payload(&images, count * image_bytes, (size_t)(keep * image_bytes), &pixels,
                               "pixels")) != NNOPT_OK)
        goto done;
    if ((st = idx_read_payload(&labels, count, (size_t)count, &label_bytes, "labels")) != NNOPT_OK)
        goto done;

    label_values = malloc((size_t)keep * sizeof *label_values);
    if (!label_values) {
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                             "%s: out of memory for %" PRIu64 " labels", labels_path, keep);
        goto done;
    }
    /* num_classes comes from the whole file, so a small `limit` that happens to
     * miss the highest class does not shrink the model's output layer. */
    int32_t max_label = 0;
    for (uint64_t i = 0; i < count; i++)
        if (label_bytes[i] > max_label) max_label = label_bytes[i];
    for (uint64_t i = 0; i < keep; i++) label_values[i] = label_bytes[i];

    out->n = (int64_t)keep;
    out->c = 1;
    out->h = (int32_t)rows;
    out->w = (int32_t)cols;
    out->num_classes = max_label + 1;
    out->pixels = pixels;
    out->labels = label_values;
    pixels = NULL;
    label_values = NULL;
    st = NNOPT_OK;

done:
    idx_close(&images);
    idx_close(&labels);
    free(pixels);
    free(label_bytes);
    free(label_values);
    return st;
}

void nnopt_dataset_free(nnopt_dataset *ds) {
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}
