/* A decoded dataset saved as one binary file, so that image folders are
 * decoded once and later runs read back a few hundred MB in a fraction of a
 * second.
 *
 * Layout (little-endian; the byte-order field makes a file from a big-endian
 * machine a mismatch rather than garbage):
 *   0  char[8]  magic "NNOPTDS\0"
 *   8  u32      format version
 *  12  u32      byte-order mark 0x01020304
 *  16  i64      n
 *  24  i32      c, h, w, num_classes
 *  40  u64      source fingerprint (what the dataset was decoded from)
 *  48  u64      payload bytes
 *  56  u32      CRC-32 (zlib) of the payload
 *  60  u32      CRC-32 of bytes 0..59, so a damaged header is not trusted
 *  64  payload: n*c*h*w pixels, then n int32 labels
 * CRC-32 rather than FNV-1a for the payload: zlib's runs at several GB/s, a
 * byte-wise FNV-1a would take longer than reading the file. */
#include "dataset.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fsutil.h"

#define CACHE_MAGIC "NNOPTDS"
#define CACHE_VERSION 1u
#define CACHE_BYTE_ORDER 0x01020304u
#define CACHE_HEADER_BYTES 64
#define CACHE_HEADER_CRC_OFFSET 60
/* Dimensions beyond these are a damaged header, not a dataset. */
#define CACHE_MAX_SIDE 65536
#define CACHE_MAX_CHANNELS 4

typedef struct cache_header {
    int64_t n;
    int32_t c, h, w, num_classes;
    uint64_t fingerprint, payload_bytes;
    uint32_t payload_crc;
} cache_header;

/* zlib's crc32_z over any length. */
static uint32_t crc_update(uint32_t crc, const void *data, size_t len) {
    return (uint32_t)crc32_z(crc, data, len);
}

static void put_u32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static void put_u64(uint8_t *p, uint64_t v) {
    memcpy(p, &v, 8);
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void header_encode(const cache_header *h, uint8_t out[CACHE_HEADER_BYTES]) {
    memset(out, 0, CACHE_HEADER_BYTES);
    memcpy(out, CACHE_MAGIC, sizeof CACHE_MAGIC);
    put_u32(out + 8, CACHE_VERSION);
    put_u32(out + 12, CACHE_BYTE_ORDER);
    put_u64(out + 16, (uint64_t)h->n);
    put_u32(out + 24, (uint32_t)h->c);
    put_u32(out + 28, (uint32_t)h->h);
    put_u32(out + 32, (uint32_t)h->w);
    put_u32(out + 36, (uint32_t)h->num_classes);
    put_u64(out + 40, h->fingerprint);
    put_u64(out + 48, h->payload_bytes);
    put_u32(out + 56, h->payload_crc);
    put_u32(out + CACHE_HEADER_CRC_OFFSET, crc_update(0, out, CACHE_HEADER_CRC_OFFSET));
}

/* The payload size of a dataset's dimensions, 0 when they are implausible. */
static uint64_t payload_bytes_for(int64_t n, int32_t c, int32_t h, int32_t w) {
    if (n <= 0 || c <= 0 || c > CACHE_MAX_CHANNELS || h <= 0 || h > CACHE_MAX_SIDE || w <= 0 ||
        w > CACHE_MAX_SIDE)
        return 0;
    uint64_t sample = (uint64_t)c * (uint64_t)h * (uint64_t)w + sizeof(int32_t);
    if ((uint64_t)n > (UINT64_C(1) << 42) / sample) return 0;
    return (uint64_t)n * sample;
}

typedef struct cache_writer {
    const nnopt_dataset *ds;
    const uint8_t *header;
} cache_writer;

static void cache_write_body(FILE *f, void *user) {
    const cache_writer *cw = user;
    size_t pixel_bytes = (size_t)cw->ds->n * cw->ds->c * cw->ds->h * cw->ds->w;
    fwrite(cw->header, 1, CACHE_HEADER_BYTES, f);
    fwrite(cw->ds->pixels, 1, pixel_bytes, f);
    fwrite(cw->ds->labels, sizeof(int32_t), (size_t)cw->ds->n, f);
}

nnopt_status nnopt_dataset_cache_write(const char *path, const nnopt_dataset *ds,
                                       uint64_t source_fingerprint, nnopt_error *err) {
    uint64_t payload = payload_bytes_for(ds->n, ds->c, ds->h, ds->w);
    if (!payload)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "%s: cannot cache a dataset of %" PRId64 " x %d x %d x %d", path,
                               ds->n, ds->c, ds->h, ds->w);
    cache_header h = {ds->n, ds->c, ds->h, ds->w, ds->num_classes, source_fingerprint, payload, 0};
    size_t pixel_bytes = (size_t)ds->n * ds->c * ds->h * ds->w;
    h.payload_crc = crc_update(0, ds->pixels, pixel_bytes);
    h.payload_crc = crc_update(h.payload_crc, ds->labels, (size_t)ds->n * sizeof(int32_t));
    uint8_t header[CACHE_HEADER_BYTES];
    header_encode(&h, header);
    cache_writer cw = {ds, header};
    return nnopt_write_atomic(path, cache_write_body, &cw, err);
}

nnopt_status nnopt_dataset_cache_read(const char *path, uint64_t source_fingerprint,
                                      nnopt_dataset *out, nnopt_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    nnopt_status st = NNOPT_OK;
    uint8_t *pixels = NULL;
    int32_t *labels = NULL;
    uint8_t raw[CACHE_HEADER_BYTES];
    if (fread(raw, 1, sizeof raw, f) != sizeof raw) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt cache: shorter than its header",
                             path);
        goto done;
    }
    if (memcmp(raw, CACHE_MAGIC, sizeof CACHE_MAGIC) != 0 ||
        get_u32(raw + CACHE_HEADER_CRC_OFFSET) != crc_update(0, raw, CACHE_HEADER_CRC_OFFSET)) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt cache: bad header", path);
        goto done;
    }
    if (get_u32(raw + 8) != CACHE_VERSION || get_u32(raw + 12) != CACHE_BYTE_ORDER) {
        st =
            nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                            "%s: cache from another nnopt version or machine (version %" PRIu32 ")",
                            path, get_u32(raw + 8));
        goto done;
    }
    cache_header h = {(int64_t)get_u64(raw + 16), (int32_t)get_u32(raw + 24),
                      (int32_t)get_u32(raw + 28), (int32_t)get_u32(raw + 32),
                      (int32_t)get_u32(raw + 36), get_u64(raw + 40),
                      get_u64(raw + 48),          get_u32(raw + 56)};
    if (h.fingerprint != source_fingerprint) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: stale cache: the image files changed since it was written", path);
        goto done;
    }
    uint64_t payload = payload_bytes_for(h.n, h.c, h.h, h.w);
    if (!payload || payload != h.payload_bytes || h.num_classes <= 0) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: corrupt cache: implausible dimensions %" PRId64 " x %d x %d x %d",
                             path, h.n, h.c, h.h, h.w);
        goto done;
    }
    struct stat info;
    if (fstat(fileno(f), &info) != 0 ||
        (uint64_t)info.st_size != CACHE_HEADER_BYTES + h.payload_bytes) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: corrupt cache: %" PRId64 " bytes, expected %" PRIu64, path,
                             (int64_t)info.st_size, CACHE_HEADER_BYTES + h.payload_bytes);
        goto done;
    }
    size_t pixel_bytes = (size_t)h.n * h.c * h.h * h.w;
    pixels = malloc(pixel_bytes);
    labels = malloc((size_t)h.n * sizeof *labels);
    if (!pixels || !labels) {
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                             "%s: out of memory for %" PRId64 " cached images", path, h.n);
        goto done;
    }
    if (fread(pixels, 1, pixel_bytes, f) != pixel_bytes ||
        fread(labels, sizeof *labels, (size_t)h.n, f) != (size_t)h.n) {
        st = nnopt_error_set(err, NNOPT_STATUS_IO, "%s: read error", path);
        goto done;
    }
    uint32_t crc = crc_update(0, pixels, pixel_bytes);
    crc = crc_update(crc, labels, (size_t)h.n * sizeof *labels);
    if (crc != h.payload_crc) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: corrupt cache: checksum mismatch (0x%08" PRIx32
                             ", header says 0x%08" PRIx32 ")",
                             path, crc, h.payload_crc);
        goto done;
    }
    for (int64_t i = 0; i < h.n; i++)
        if (labels[i] < 0 || labels[i] >= h.num_classes) {
            st = nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt cache: label out of range",
                                 path);
            goto done;
        }
    out->n = h.n;
    out->c = h.c;
    out->h = h.h;
    out->w = h.w;
    out->num_classes = h.num_classes;
    out->pixels = pixels;
    out->labels = labels;
    pixels = NULL;
    labels = NULL;

done:
    fclose(f);
    free(pixels);
    free(labels);
    return st;
}

/* Whether `dir` exists (or can be created) and accepts new files. */
static int usable_cache_dir(const char *dir) {
    nnopt_error ignored = {0};
    return nnopt_mkdirs(dir, &ignored) == NNOPT_OK && access(dir, W_OK | X_OK) == 0;
}

void nnopt_dataset_default_cache_dir(const char *dataset_dir, char *out, size_t size) {
    snprintf(out, size, "%s/.nnopt-cache", dataset_dir);
    if (usable_cache_dir(out)) return;
    /* Read-only data (e.g. a shared copy) falls back to the per-user cache. */
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(out, size, "%s/nnopt", xdg);
    else if (home && home[0])
        snprintf(out, size, "%s/.cache/nnopt", home);
    else
        out[0] = '\0';
    if (out[0] && !usable_cache_dir(out)) out[0] = '\0';
}
