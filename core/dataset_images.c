/* Image-folder datasets: SPLIT/<class>/<image>.{jpg,jpeg,png}, decoded with
 * libjpeg(-turbo) and libpng into an nnopt_dataset and cached (dataset_cache.c).
 *
 * Both libraries report errors by calling a handler that must not return; the
 * handlers here record the library's message and longjmp back, so that a
 * corrupt file becomes "PATH: corrupt JPEG: <why>" instead of the default
 * handlers' exit(). libjpeg's warnings (truncated data, corrupt segments) are
 * treated as errors too: a half-grey training image is a bug in the data that
 * should be fixed, not learnt from. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "fsutil.h"
#include "log.h"

/* Changing how pixels are produced (colour conversion, ...) must invalidate
 * existing caches, so this string is part of every source fingerprint. */
#define IMAGES_DECODER_VERSION "nnopt-images-1"
#define IMAGE_MAX_SIDE 65536
#define DECODE_MAX_THREADS 16

/* ---- FNV-1a 64, for fingerprints of names and file metadata ---- */

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static uint64_t fnv_bytes(uint64_t h, const void *data, size_t len) {
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

static uint64_t fnv_string(uint64_t h, const char *s) {
    return fnv_bytes(h, s, strlen(s) + 1);
}

static uint64_t fnv_i64(uint64_t h, int64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    return fnv_bytes(h, b, sizeof b);
}

/* ---- Decoding one file ---- */

typedef struct decoded_image {
    uint8_t *pixels; /* c planes of h x w */
    int32_t c, h, w;
} decoded_image;

/* Copies interleaved rows (HWC) of one image into planes (CHW). */
static void interleaved_row_to_planes(const uint8_t *row, int32_t y, const decoded_image *img) {
    size_t plane = (size_t)img->h * img->w;
    for (int32_t x = 0; x < img->w; x++)
        for (int32_t ch = 0; ch < img->c; ch++)
            img->pixels[ch * plane + (size_t)y * img->w + x] = row[(size_t)x * img->c + ch];
}

static nnopt_status check_side(const char *path, const char *kind, uint64_t w, uint64_t h,
                               nnopt_error *err) {
    if (w == 0 || h == 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: implausible %s size %" PRIu64 " x %" PRIu64, path, kind, w, h);
    return NNOPT_OK;
}

typedef struct jpeg_failure {
    struct jpeg_error_mgr mgr; /* first: libjpeg hands back &mgr as cinfo->err */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int warned;
} jpeg_failure;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    cinfo->err->format_message(cinfo, failure->message);
    longjmp(failure->jump, 1);
}

/* Level -1 is a warning about damaged data; higher levels are trace output. */
static void jpeg_note(j_common_ptr cinfo, int level) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    if (level < 0 && !failure->warned) {
        cinfo->err->format_message(cinfo, failure->message);
        failure->warned = 1;
    }
}

/* want_channels: 1 or 3, or 0 for the file's own (1 if grayscale, else 3). */
static nnopt_status decode_jpeg(const char *path, const uint8_t *data, size_t len,
                                int want_channels, decoded_image *img, nnopt_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    /* volatile: assigned after setjmp and freed after the longjmp. */
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    cinfo.err = jpeg_std_error(&failure.mgr);
    failure.mgr.error_exit = jpeg_fail;
    failure.mgr.emit_message = jpeg_note;
    failure.warned = 0;
    failure.message[0] = '\0';
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt JPEG: %s", path,
                               failure.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int channels = want_channels ? want_channels : cinfo.jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    nnopt_status st = check_side(path, "JPEG", cinfo.output_width, cinfo.output_height, err);
    if (st == NNOPT_OK && cinfo.output_components != channels)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: JPEG decodes to %d channels, expected %d", path,
                             cinfo.output_components, channels);
    if (st != NNOPT_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    img->c = channels;
    img->h = (int32_t)cinfo.output_height;
    img->w = (int32_t)cinfo.output_width;
    pixels = malloc((size_t)img->c * img->h * img->w);
    row = malloc((size_t)img->w * img->c);
    if (!pixels || !row) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory decoding", path);
    }
    img->pixels = pixels;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW rows[1] = {row};
        int32_t y = (int32_t)cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) break; /* suspended: cannot with mem src */
        interleaved_row_to_planes(row, y, img);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (failure.warned) {
        free(pixels);
        img->pixels = NULL;
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt JPEG: %s", path,
                               failure.message);
    }
    return NNOPT_OK;
}

typedef struct png_source {
    const uint8_t *data;
    size_t len, pos;
    char message[256];
} png_source;

static void png_fail(png_structp png, png_const_charp message) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->message, sizeof src->message, "%s", message);
    png_longjmp(png, 1);
}

/* Warnings (odd colour profiles and the like) do not affect the pixels. */
static void png_ignore_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep out, png_size_t len) {
    png_source *src = png_get_io_ptr(png);
    if (len > src->len - src->pos) png_error(png, "file truncated");
    memcpy(out, src->data + src->pos, len);
    src->pos += len;
}

static nnopt_status decode_png(const char *path, const uint8_t *data, size_t len, int want_channels,
                               decoded_image *img, nnopt_error *err) {
    png_source src = {data, len, 0, ""};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_ignore_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory decoding", path);
    }
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile interleaved = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(interleaved);
        free(rows);
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: corrupt PNG: %s", path, src.message);
    }
    png_set_read_fn(png, &src, png_read_memory);
    png_read_info(png, info);
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    int is_color = (color_type & PNG_COLOR_MASK_COLOR) != 0; /* palettes included */
    int channels = want_channels ? want_channels : is_color ? 3 : 1;
    /* Everything becomes 8-bit gray or RGB without alpha (alpha is dropped,
     * not blended: datasets with meaningful transparency are rare). */
    if (bit_depth == 16) png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (channels == 3 && !is_color) png_set_gray_to_rgb(png);
    if (channels == 1 && is_color) png_set_rgb_to_gray_fixed(png, 1, -1, -1);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    nnopt_status st = check_side(path, "PNG", width, height, err);
    if (st == NNOPT_OK && png_get_rowbytes(png, info) != (size_t)width * channels)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: PNG rows of %zu bytes, expected %zu (unsupported layout)", path,
                             (size_t)png_get_rowbytes(png, info), (size_t)width * channels);
    if (st == NNOPT_OK) {
        img->c = channels;
        img->h = (int32_t)height;
        img->w = (int32_t)width;
        pixels = malloc((size_t)channels * width * height);
        interleaved = malloc((size_t)channels * width * height);
        rows = malloc(height * sizeof *rows);
        if (!pixels || !interleaved || !rows)
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory decoding",
                                 path);
    }
    if (st != NNOPT_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(interleaved);
        free(rows);
        return st;
    }
    for (png_uint_32 y = 0; y < height; y++) rows[y] = interleaved + (size_t)y * width * channels;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* checks the chunks after the image data too */
    png_destroy_read_struct(&png, &info, NULL);
    img->pixels = pixels;
    for (int32_t y = 0; y < img->h; y++)
        interleaved_row_to_planes(interleaved + (size_t)y * img->w * img->c, y, img);
    free(interleaved);
    free(rows);
    return NNOPT_OK;
}

static nnopt_status read_whole_file(const char *path, uint8_t **data, size_t *len,
                                    nnopt_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    nnopt_status status = NNOPT_OK;
    if (fstat(fileno(f), &st) != 0) {
        status =
            nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else {
        size_t size = (size_t)st.st_size;
        *data = malloc(size ? size : 1);
        if (!*data)
            status = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                                     "%s: out of memory reading %zu bytes", path, size);
        else if ((*len = fread(*data, 1, size, f)) != size || ferror(f))
            status = nnopt_error_set(err, NNOPT_STATUS_IO, "%s: read error", path);
    }
    fclose(f);
    if (status != NNOPT_OK) {
        free(*data);
        *data = NULL;
    }
    return status;
}

static int has_suffix(const char *name, const char *suffix) {
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcasecmp(name + n - s, suffix) == 0;
}

static int is_image_name(const char *name) {
    return has_suffix(name, ".jpg") || has_suffix(name, ".jpeg") || has_suffix(name, ".png");
}

/* Decodes by content (PNG signature, JPEG start-of-image marker), falling back
 * to the extension so a damaged file still gets its format's message. */
static nnopt_status decode_image_file(const char *path, int want_channels, decoded_image *img,
                                      nnopt_error *err) {
    memset(img, 0, sizeof *img);
    uint8_t *data = NULL;
    size_t len = 0;
    nnopt_status st = read_whole_file(path, &data, &len, err);
    if (st != NNOPT_OK) return st;
    static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int looks_png = len >= 8 && memcmp(data, png_signature, 8) == 0;
    int looks_jpeg = len >= 2 && data[0] == 0xff && data[1] == 0xd8;
    if (looks_png || (!looks_jpeg && has_suffix(path, ".png")))
        st = decode_png(path, data, len, want_channels, img, err);
    else
        st = decode_jpeg(path, data, len, want_channels, img, err);
    free(data);
    return st;
}

/* ---- Listing the folder ---- */

typedef struct dir_item {
    char *name;
    int64_t size, mtime_s, mtime_ns;
} dir_item;

static int dir_item_by_name(const void *a, const void *b) {
    return strcmp(((const dir_item *)a)->name, ((const dir_item *)b)->name);
}

static void free_dir_items(dir_item *items, int64_t count) {
    for (int64_t i = 0; i < count; i++) free(items[i].name);
    free(items);
}

/* The entries of `dir` not starting with '.', sorted by name: subfolders
 * (want_dirs) or regular image files, following symlinks. */
static nnopt_status list_dir(const char *dir, int want_dirs, dir_item **items, int64_t *count,
                             nnopt_error *err) {
    *items = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open folder: %s", dir,
                               strerror(errno));
    int64_t capacity = 0;
    nnopt_status st = NNOPT_OK;
    struct dirent *e;
    while (st == NNOPT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!want_dirs && !is_image_name(e->d_name)) continue;
        struct stat info;
        if (fstatat(dirfd(d), e->d_name, &info, 0) != 0) {
            st = nnopt_error_set(err, NNOPT_STATUS_IO, "%s/%s: cannot stat: %s", dir, e->d_name,
                                 strerror(errno));
            break;
        }
        if (want_dirs ? !S_ISDIR(info.st_mode) : !S_ISREG(info.st_mode)) continue;
        if (*count == capacity) {
            int64_t grown = capacity ? capacity * 2 : 256;
            dir_item *bigger = realloc(*items, (size_t)grown * sizeof *bigger);
            if (!bigger) {
                st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory listing",
                                     dir);
                break;
            }
            *items = bigger;
            capacity = grown;
        }
        dir_item *item = &(*items)[*count];
        item->name = strdup(e->d_name);
        if (!item->name) {
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory listing", dir);
            break;
        }
        item->size = (int64_t)info.st_size;
        item->mtime_s = (int64_t)info.st_mtim.tv_sec;
        item->mtime_ns = (int64_t)info.st_mtim.tv_nsec;
        ++*count;
    }
    closedir(d);
    if (st != NNOPT_OK) {
        free_dir_items(*items, *count);
        *items = NULL;
        *count = 0;
        return st;
    }
    if (*count > 1) qsort(*items, (size_t)*count, sizeof **items, dir_item_by_name);
    return NNOPT_OK;
}

typedef struct image_entry {
    char *path;
    int32_t label;
} image_entry;

typedef struct image_list {
    image_entry *entries;
    int64_t count;
    int32_t class_count;
    uint64_t fingerprint;  /* names, sizes and mtimes of everything listed */
    uint64_t classes_hash; /* class names only */
} image_list;

static void free_image_list(image_list *list) {
    for (int64_t i = 0; i < list->count; i++) free(list->entries[i].path);
    free(list->entries);
    memset(list, 0, sizeof *list);
}

static nnopt_status scan_split(const char *split_dir, image_list *list, nnopt_error *err) {
    memset(list, 0, sizeof *list);
    dir_item *classes = NULL;
    int64_t class_count = 0;
    nnopt_status st = list_dir(split_dir, 1, &classes, &class_count, err);
    if (st != NNOPT_OK) return st;
    if (class_count == 0) {
        free(classes);
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: no class folders (expected %s/<class>/*.jpg or *.png)",
                               split_dir, split_dir);
    }
    if (class_count > INT32_MAX) class_count = INT32_MAX;
    uint64_t fingerprint = fnv_string(FNV_OFFSET, IMAGES_DECODER_VERSION);
    uint64_t classes_hash = FNV_OFFSET;
    int64_t capacity = 0;
    for (int64_t k = 0; k < class_count && st == NNOPT_OK; k++) {
        size_t dir_len = strlen(split_dir) + strlen(classes[k].name) + 2;
        char *class_dir = malloc(dir_len);
        if (!class_dir) {
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory", split_dir);
            break;
        }
        snprintf(class_dir, dir_len, "%s/%s", split_dir, classes[k].name);
        dir_item *files = NULL;
        int64_t file_count = 0;
        st = list_dir(class_dir, 0, &files, &file_count, err);
        classes_hash = fnv_string(classes_hash, classes[k].name);
        fingerprint = fnv_string(fingerprint, classes[k].name);
        fingerprint = fnv_i64(fingerprint, file_count);
        for (int64_t i = 0; i < file_count && st == NNOPT_OK; i++) {
            fingerprint = fnv_string(fingerprint, files[i].name);
            fingerprint = fnv_i64(fingerprint, files[i].size);
            fingerprint = fnv_i64(fingerprint, files[i].mtime_s);
            fingerprint = fnv_i64(fingerprint, files[i].mtime_ns);
            if (list->count == capacity) {
                int64_t grown = capacity ? capacity * 2 : 1024;
                image_entry *bigger = realloc(list->entries, (size_t)grown * sizeof *bigger);
                if (!bigger) {
                    st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory",
                                         split_dir);
                    break;
                }
                list->entries = bigger;
                capacity = grown;
            }
            size_t path_len = dir_len + strlen(files[i].name) + 1;
            char *path = malloc(path_len);
            if (!path) {
                st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory",
                                     split_dir);
                break;
            }
            snprintf(path, path_len, "%s/%s", class_dir, files[i].name);
            list->entries[list->count].path = path;
            list->entries[list->count].label = (int32_t)k;
            list->count++;
        }
        free_dir_items(files, file_count);
        free(class_dir);
    }
    free_dir_items(classes, class_count);
    if (st == NNOPT_OK && list->count == 0)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: no images (expected %s/<class>/*.jpg or *.png)", split_dir,
                             split_dir);
    if (st != NNOPT_OK) {
        free_image_list(list);
        return st;
    }
    list->class_count = (int32_t)class_count;
    list->fingerprint = fingerprint;
    list->classes_hash = classes_hash;
    return NNOPT_OK;
}

/* ---- Decoding the whole list, in parallel ---- */

typedef struct decode_job {
    const image_list *list;
    int32_t c, h, w;
    uint8_t *pixels;
    atomic_int_fast64_t next;
    /* The failing file with the lowest index is reported, whatever the thread
     * timing, so the message does not depend on the machine. */
    pthread_mutex_t lock;
    atomic_int_fast64_t first_error_index;
    nnopt_error first_error;
} decode_job;

/* Decodes entry i into its slot; errors go to `err`. */
static nnopt_status decode_entry(decode_job *job, int64_t i, nnopt_error *err) {
    const char *path = job->list->entries[i].path;
    decoded_image img;
    nnopt_status st = decode_image_file(path, job->c, &img, err);
    if (st != NNOPT_OK) return st;
    if (img.h != job->h || img.w != job->w) {
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: image is %d x %d pixels but %s is %d x %d (all images of a "
                             "dataset must have one size)",
                             path, img.w, img.h, job->list->entries[0].path, job->w, job->h);
    } else {
        size_t sample = (size_t)job->c * job->h * job->w;
        memcpy(job->pixels + (size_t)i * sample, img.pixels, sample);
    }
    free(img.pixels);
    return st;
}

static void *decode_worker(void *arg) {
    decode_job *job = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->list->count || i > atomic_load(&job->first_error_index)) break;
        nnopt_error err = {0};
        if (decode_entry(job, i, &err) == NNOPT_OK) continue;
        pthread_mutex_lock(&job->lock);
        if (i < atomic_load(&job->first_error_index)) {
            atomic_store(&job->first_error_index, i);
            job->first_error = err;
        }
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

static int decode_thread_count(int64_t images) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t threads = cpus > 0 ? cpus : 1;
    if (threads > DECODE_MAX_THREADS) threads = DECODE_MAX_THREADS;
    if (threads > images / 256 + 1) threads = images / 256 + 1; /* not worth it for few */
    return (int)threads;
}

static nnopt_status decode_list(const image_list *list, nnopt_dataset *out, nnopt_error *err) {
    /* The first image fixes size and channels for all the others. */
    decoded_image first;
    nnopt_status st = decode_image_file(list->entries[0].path, 0, &first, err);
    if (st != NNOPT_OK) return st;
    size_t sample = (size_t)first.c * first.h * first.w;
    decode_job job = {.list = list, .c = first.c, .h = first.h, .w = first.w};
    job.pixels = malloc((size_t)list->count * sample);
    int32_t *labels = malloc((size_t)list->count * sizeof *labels);
    if (!job.pixels || !labels) {
        free(first.pixels);
        free(job.pixels);
        free(labels);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY,
                               "%s: out of memory for %" PRId64 " images of %d x %d x %d",
                               list->entries[0].path, list->count, first.c, first.h, first.w);
    }
    memcpy(job.pixels, first.pixels, sample);
    free(first.pixels);
    atomic_init(&job.next, 1);
    atomic_init(&job.first_error_index, INT64_MAX);
    pthread_mutex_init(&job.lock, NULL);

    pthread_t threads[DECODE_MAX_THREADS];
    int wanted = decode_thread_count(list->count), started = 0;
    for (int t = 1; t < wanted; t++) /* this thread is worker 0 */
        if (pthread_create(&threads[started], NULL, decode_worker, &job) == 0) started++;
    decode_worker(&job);
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    pthread_mutex_destroy(&job.lock);

    if (atomic_load(&job.first_error_index) != INT64_MAX) {
        free(job.pixels);
        free(labels);
        return nnopt_error_set(err, job.first_error.status, "%s", job.first_error.message);
    }
    for (int64_t i = 0; i < list->count; i++) labels[i] = list->entries[i].label;
    out->n = list->count;
    out->c = first.c;
    out->h = first.h;
    out->w = first.w;
    out->num_classes = list->class_count;
    out->pixels = job.pixels;
    out->labels = labels;
    return NNOPT_OK;
}

/* ---- Limit, cache location, and the public entry point ---- */

/* Keeps `limit` samples of a class-sorted dataset, round-robin over classes. */
static nnopt_status keep_round_robin(nnopt_dataset *ds, int64_t limit, const char *split_dir,
                                     nnopt_error *err) {
    if (limit <= 0 || limit >= ds->n) return NNOPT_OK;
    int64_t *starts = calloc((size_t)ds->num_classes + 1, sizeof *starts);
    size_t sample = (size_t)ds->c * ds->h * ds->w;
    uint8_t *pixels = malloc((size_t)limit * sample);
    int32_t *labels = malloc((size_t)limit * sizeof *labels);
    if (!starts || !pixels || !labels) {
        free(starts);
        free(pixels);
        free(labels);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "%s: out of memory", split_dir);
    }
    for (int64_t i = 0; i < ds->n; i++) starts[ds->labels[i] + 1]++;
    for (int32_t k = 0; k < ds->num_classes; k++) starts[k + 1] += starts[k];
    int64_t kept = 0;
    for (int64_t round = 0; kept < limit; round++)
        for (int32_t k = 0; k < ds->num_classes && kept < limit; k++) {
            int64_t i = starts[k] + round;
            if (i >= starts[k + 1]) continue;
            memcpy(pixels + (size_t)kept * sample, ds->pixels + (size_t)i * sample, sample);
            labels[kept++] = ds->labels[i];
        }
    free(starts);
    free(ds->pixels);
    free(ds->labels);
    ds->pixels = pixels;
    ds->labels = labels;
    ds->n = limit;
    return NNOPT_OK;
}

/* cache_dir/<split name>-<hash of the split's absolute path>.nnds: one file
 * per split, and distinct datasets sharing ~/.cache/nnopt do not collide. */
static void cache_file_path(const char *split_dir, const char *cache_dir, char *out, size_t size) {
    char *absolute = realpath(split_dir, NULL);
    const char *where = absolute ? absolute : split_dir;
    const char *base = strrchr(where, '/');
    base = base && base[1] ? base + 1 : where;
    snprintf(out, size, "%s/%.200s-%016" PRIx64 ".nnds", cache_dir, base,
             fnv_string(FNV_OFFSET, where));
    free(absolute);
}

nnopt_status nnopt_dataset_load_image_folder(const char *split_dir, const char *cache_dir,
                                             int64_t limit, nnopt_dataset *out,
                                             nnopt_image_folder_info *info, nnopt_error *err) {
    nnopt_image_folder_info ignored;
    if (!info) info = &ignored;
    memset(info, 0, sizeof *info);
    if (!out || !split_dir)
        return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                               "nnopt_dataset_load_image_folder: split_dir and out are required");
    memset(out, 0, sizeof *out);
    image_list list;
    nnopt_status st = scan_split(split_dir, &list, err);
    if (st != NNOPT_OK) return st;
    info->classes_hash = list.classes_hash;

    if (cache_dir && cache_dir[0]) {
        cache_file_path(split_dir, cache_dir, info->cache_path, sizeof info->cache_path);
        struct stat cache_stat;
        if (stat(info->cache_path, &cache_stat) == 0) {
            nnopt_error cache_err = {0};
            nnopt_status cache_st =
                nnopt_dataset_cache_read(info->cache_path, list.fingerprint, out, &cache_err);
            if (cache_st == NNOPT_OK && out->num_classes != list.class_count)
                cache_st = nnopt_error_set(&cache_err, NNOPT_STATUS_FORMAT,
                                           "%s: stale cache: %d classes, the folder has %d",
                                           info->cache_path, out->num_classes, list.class_count);
            if (cache_st == NNOPT_OK) {
                info->from_cache = 1;
            } else {
                nnopt_dataset_free(out);
                nnopt_log(NNOPT_LOG_WARN, "%s; decoding the images again", cache_err.message);
                info->cache_rebuilt = 1;
            }
        }
    }
    if (!info->from_cache) {
        nnopt_log(NNOPT_LOG_INFO, "decoding %" PRId64 " images in %s%s%s", list.count, split_dir,
                  info->cache_path[0] ? "; caching them in " : "", info->cache_path);
        st = decode_list(&list, out, err);
        if (st == NNOPT_OK && info->cache_path[0]) {
            nnopt_error cache_err = {0};
            if (nnopt_mkdirs(cache_dir, &cache_err) != NNOPT_OK ||
                nnopt_dataset_cache_write(info->cache_path, out, list.fingerprint, &cache_err) !=
                    NNOPT_OK)
                nnopt_log(NNOPT_LOG_WARN, "%s (the dataset is not cached)", cache_err.message);
        }
    }
    free_image_list(&list);
    if (st == NNOPT_OK) st = keep_round_robin(out, limit, split_dir, err);
    if (st != NNOPT_OK) nnopt_dataset_free(out);
    return st;
}
