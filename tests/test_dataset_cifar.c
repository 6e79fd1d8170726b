/* Tests for the CIFAR-10 binary loader, image folders (JPEG and PNG, written
 * here with libjpeg and libpng), the decoded-image cache, augmentation and
 * per-channel normalisation. Every fixture lives in a fresh temporary folder. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "config.h"
#include "data_source.h"
#include "dataset.h"
#include "experiment.h"
#include "rng.h"

/* |a - b| <= tolerance (0: exactly equal); this cmocka has no double assert. */
#define assert_close(a, b, tolerance) assert_true(fabs((double)(a) - (double)(b)) <= (tolerance))

typedef struct fixture {
    char dir[64];
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/nnopt_test_cifar_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state) {
    fixture *fx = *state;
    nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* fx->dir/relative, with the folders above it created. */
static char *fixture_path(const fixture *fx, const char *relative) {
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, sizeof paths[0], "%s/%s", fx->dir, relative);
    for (char *p = path + strlen(fx->dir) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0777);
            *p = '/';
        }
    return path;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void expect_error(nnopt_status st, const nnopt_error *err, nnopt_status want,
                         const char *path, const char *fragment) {
    if (st != want || !strstr(err->message, path) || !strstr(err->message, fragment))
        print_error("status %s, message \"%s\"; wanted %s naming %s with \"%s\"\n",
                    nnopt_status_name(st), err->message, nnopt_status_name(want), path, fragment);
    assert_int_equal(st, want);
    assert_non_null(strstr(err->message, path));
    assert_non_null(strstr(err->message, fragment));
}

/* ---- CIFAR-10 binary ---- */

enum { CIFAR_PIXELS = 3072, CIFAR_RECORD = 3073 };

static uint8_t cifar_pixel(int record, int offset) {
    return (uint8_t)((record * 131 + offset * 7) % 256);
}

/* Writes `count` records numbered first.. (label = number % 10), plus `extra`
 * stray bytes at the end. */
static void write_cifar_batch(const char *path, int first, int count, size_t extra,
                              int bad_label_record) {
    size_t len = (size_t)count * CIFAR_RECORD + extra;
    uint8_t *data = calloc(1, len + 1);
    assert_non_null(data);
    for (int r = 0; r < count; r++) {
        uint8_t *rec = data + (size_t)r * CIFAR_RECORD;
        rec[0] = (uint8_t)(r == bad_label_record ? 10 : (first + r) % 10);
        for (int i = 0; i < CIFAR_PIXELS; i++) rec[1 + i] = cifar_pixel(first + r, i);
    }
    write_bytes(path, data, len);
    free(data);
}

/* data_batch_1..5 with 2 records each (numbers 0..9), test_batch with 3. */
static void write_cifar_dir(fixture *fx) {
    char name[64];
    for (int b = 1; b <= 5; b++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        write_cifar_batch(fixture_path(fx, name), 2 * (b - 1), 2, 0, -1);
    }
    write_cifar_batch(fixture_path(fx, "test_batch.bin"), 100, 3, 0, -1);
}

static void test_cifar_binary(void **state) {
    fixture *fx = *state;
    write_cifar_dir(fx);
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(nnopt_dataset_load_cifar10(fx->dir, 1, 0, &ds, &err), NNOPT_OK);
    assert_int_equal(ds.n, 10);
    assert_int_equal(ds.c, 3);
    assert_int_equal(ds.h, 32);
    assert_int_equal(ds.w, 32);
    assert_int_equal(ds.num_classes, 10);
    for (int r = 0; r < 10; r++) {
        assert_int_equal(ds.labels[r], r % 10);
        for (int i = 0; i < CIFAR_PIXELS; i += 97)
            assert_int_equal(ds.pixels[(size_t)r * CIFAR_PIXELS + i], cifar_pixel(r, i));
    }
    nnopt_dataset_free(&ds);

    assert_int_equal(nnopt_dataset_load_cifar10(fx->dir, 0, 0, &ds, &err), NNOPT_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.labels[2], 102 % 10);
    assert_int_equal(ds.pixels[2 * CIFAR_PIXELS + 5], cifar_pixel(102, 5));
    nnopt_dataset_free(&ds);

    /* A limit spanning files keeps the first records in file order. */
    assert_int_equal(nnopt_dataset_load_cifar10(fx->dir, 1, 5, &ds, &err), NNOPT_OK);
    assert_int_equal(ds.n, 5);
    assert_int_equal(ds.labels[4], 4);
    assert_int_equal(ds.pixels[4 * CIFAR_PIXELS + 11], cifar_pixel(4, 11));
    assert_int_equal(ds.num_classes, 10);
    nnopt_dataset_free(&ds);
}

static void test_cifar_truncated_batch(void **state) {
    fixture *fx = *state;
    write_cifar_dir(fx);
    const char *bad = fixture_path(fx, "data_batch_3.bin");
    write_cifar_batch(bad, 4, 2, 0, -1);
    assert_int_equal(truncate(bad, 2 * CIFAR_RECORD - 100), 0);
    nnopt_dataset ds;
    memset(&ds, 0x5a, sizeof ds);
    nnopt_error err = {0};
    nnopt_status st = nnopt_dataset_load_cifar10(fx->dir, 1, 0, &ds, &err);
    expect_error(st, &err, NNOPT_STATUS_FORMAT, bad, "truncated");
    assert_null(ds.pixels);
    assert_int_equal(ds.n, 0);
}

static void test_cifar_bad_label_and_missing_file(void **state) {
    fixture *fx = *state;
    write_cifar_dir(fx);
    const char *bad = fixture_path(fx, "test_batch.bin");
    write_cifar_batch(bad, 0, 3, 0, 1);
    nnopt_dataset ds;
    nnopt_error err = {0};
    expect_error(nnopt_dataset_load_cifar10(fx->dir, 0, 0, &ds, &err), &err, NNOPT_STATUS_FORMAT,
                 bad, "label 10");

    const char *missing = fixture_path(fx, "data_batch_4.bin");
    unlink(missing);
    nnopt_error_clear(&err);
    expect_error(nnopt_dataset_load_cifar10(fx->dir, 1, 0, &ds, &err), &err, NNOPT_STATUS_IO,
                 missing, "cannot open");
}

/* ---- Writing images ---- */

/* Interleaved (HWC) pixels of image `seed`; smooth so JPEG stays close. */
static uint8_t *pattern_image(int seed, int w, int h, int channels) {
    uint8_t *p = malloc((size_t)w * h * channels);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++)
                p[((size_t)y * w + x) * channels + c] =
                    (uint8_t)(40 + seed * 23 + x * 9 + y * 5 + c * 30);
    return p;
}

static void write_png(const char *path, const uint8_t *pixels, int w, int h, int channels) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed writing %s", path);
    png_init_io(png, f);
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, pixels + (size_t)y * w * channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    assert_int_equal(fclose(f), 0);
}

static void write_jpeg(const char *path, const uint8_t *pixels, int w, int h, int channels) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 100, TRUE);
    for (int c = 0; c < cinfo.num_components; c++) /* no chroma subsampling */
        cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * w * channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    assert_int_equal(fclose(f), 0);
}

/* Pixel (ch, y, x) of sample i of a CHW dataset. */
static uint8_t ds_pixel(const nnopt_dataset *ds, int64_t i, int ch, int y, int x) {
    return ds->pixels[((i * ds->c + ch) * ds->h + y) * ds->w + x];
}

enum { IMG_W = 6, IMG_H = 4 };

/* Classes created out of order (cat, ant, bee), files too, plus things to
 * ignore: a text file, a hidden image, a hidden folder. Returns the split. */
static const char *write_png_folder(fixture *fx) {
    static const char *files[] = {"train/cat/b.png", "train/cat/a.png", "train/ant/z.png",
                                  "train/bee/m.PNG", "train/ant/c.png"};
    for (int i = 0; i < 5; i++) {
        uint8_t *p = pattern_image(i, IMG_W, IMG_H, 3);
        write_png(fixture_path(fx, files[i]), p, IMG_W, IMG_H, 3);
        free(p);
    }
    write_bytes(fixture_path(fx, "train/ant/notes.txt"), "x", 1);
    write_bytes(fixture_path(fx, "train/ant/.hidden.png"), "x", 1);
    write_bytes(fixture_path(fx, "train/.git/x.png"), "x", 1);
    return fixture_path(fx, "train");
}

static void test_png_folder_exact_and_sorted(void **state) {
    fixture *fx = *state;
    const char *split = write_png_folder(fx);
    nnopt_dataset ds;
    nnopt_error err = {0};
    nnopt_image_folder_info info;
    assert_int_equal(nnopt_dataset_load_image_folder(split, NULL, 0, &ds, &info, &err), NNOPT_OK);
    assert_int_equal(ds.n, 5);
    assert_int_equal(ds.c, 3);
    assert_int_equal(ds.h, IMG_H);
    assert_int_equal(ds.w, IMG_W);
    assert_int_equal(ds.num_classes, 3);
    assert_int_equal(info.from_cache, 0);
    /* Sorted: ant/c, ant/z, bee/m, cat/a, cat/b = pattern seeds 4, 2, 3, 1, 0. */
    static const int seeds[5] = {4, 2, 3, 1, 0}, labels[5] = {0, 0, 1, 2, 2};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ds.labels[i], labels[i]);
        uint8_t *want = pattern_image(seeds[i], IMG_W, IMG_H, 3);
        for (int y = 0; y < IMG_H; y++)
            for (int x = 0; x < IMG_W; x++)
                for (int c = 0; c < 3; c++)
                    assert_int_equal(ds_pixel(&ds, i, c, y, x), want[(y * IMG_W + x) * 3 + c]);
        free(want);
    }
    nnopt_dataset_free(&ds);
}

static void test_png_channel_conversion(void **state) {
    fixture *fx = *state;
    /* The first image (RGB) fixes 3 channels: gray is replicated, alpha dropped. */
    uint8_t *rgb = pattern_image(0, IMG_W, IMG_H, 3), *gray = pattern_image(1, IMG_W, IMG_H, 1);
    uint8_t *rgba = pattern_image(2, IMG_W, IMG_H, 4);
    write_png(fixture_path(fx, "s/k/0.png"), rgb, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "s/k/1.png"), gray, IMG_W, IMG_H, 1);
    write_png(fixture_path(fx, "s/k/2.png"), rgba, IMG_W, IMG_H, 4);
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(
        nnopt_dataset_load_image_folder(fixture_path(fx, "s"), NULL, 0, &ds, NULL, &err), NNOPT_OK);
    assert_int_equal(ds.c, 3);
    for (int y = 0; y < IMG_H; y++)
        for (int x = 0; x < IMG_W; x++)
            for (int c = 0; c < 3; c++) {
                assert_int_equal(ds_pixel(&ds, 1, c, y, x), gray[y * IMG_W + x]);
                assert_int_equal(ds_pixel(&ds, 2, c, y, x), rgba[(y * IMG_W + x) * 4 + c]);
            }
    nnopt_dataset_free(&ds);

    /* A grayscale first image makes a 1-channel dataset. */
    write_png(fixture_path(fx, "g/k/0.png"), gray, IMG_W, IMG_H, 1);
    assert_int_equal(
        nnopt_dataset_load_image_folder(fixture_path(fx, "g"), NULL, 0, &ds, NULL, &err), NNOPT_OK);
    assert_int_equal(ds.c, 1);
    assert_int_equal(ds_pixel(&ds, 0, 0, 3, 5), gray[3 * IMG_W + 5]);
    nnopt_dataset_free(&ds);
    free(rgb);
    free(gray);
    free(rgba);
}

static void test_jpeg_folder_close(void **state) {
    fixture *fx = *state;
    uint8_t *want[2];
    for (int i = 0; i < 2; i++) {
        want[i] = pattern_image(i, 16, 16, 3);
        char name[64];
        snprintf(name, sizeof name, "train/class%d/img.jpg", i);
        write_jpeg(fixture_path(fx, name), want[i], 16, 16, 3);
    }
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(
        nnopt_dataset_load_image_folder(fixture_path(fx, "train"), NULL, 0, &ds, NULL, &err),
        NNOPT_OK);
    assert_int_equal(ds.n, 2);
    assert_int_equal(ds.c, 3);
    int worst = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ds.labels[i], i);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int c = 0; c < 3; c++) {
                    int d = abs((int)ds_pixel(&ds, i, c, y, x) - want[i][(y * 16 + x) * 3 + c]);
                    if (d > worst) worst = d;
                }
        free(want[i]);
    }
    assert_in_range(worst, 0, 4); /* quality 100, no subsampling: rounding only */
    nnopt_dataset_free(&ds);
}

static void test_corrupt_images_name_the_file(void **state) {
    fixture *fx = *state;
    uint8_t *p = pattern_image(0, 16, 16, 3);
    write_jpeg(fixture_path(fx, "a/k/0.jpg"), p, 16, 16, 3);
    /* A JPEG cut in half: libjpeg only warns; the loader must refuse it. */
    const char *cut = fixture_path(fx, "a/k/1.jpg");
    write_jpeg(cut, p, 16, 16, 3);
    struct stat st;
    assert_int_equal(stat(cut, &st), 0);
    assert_int_equal(truncate(cut, st.st_size / 2), 0);
    nnopt_dataset ds;
    memset(&ds, 0x5a, sizeof ds);
    nnopt_error err = {0};
    expect_error(nnopt_dataset_load_image_folder(fixture_path(fx, "a"), NULL, 0, &ds, NULL, &err),
                 &err, NNOPT_STATUS_FORMAT, cut, "corrupt JPEG");
    assert_null(ds.pixels);

    /* Garbage with a .jpg name: libjpeg's own error, not an exit. */
    write_bytes(cut, "definitely not a jpeg", 21);
    nnopt_error_clear(&err);
    expect_error(nnopt_dataset_load_image_folder(fixture_path(fx, "a"), NULL, 0, &ds, NULL, &err),
                 &err, NNOPT_STATUS_FORMAT, cut, "corrupt JPEG: Not a JPEG file");

    /* A truncated PNG. */
    write_png(fixture_path(fx, "b/k/0.png"), p, 16, 16, 3);
    const char *bad_png = fixture_path(fx, "b/k/1.png");
    write_png(bad_png, p, 16, 16, 3);
    assert_int_equal(stat(bad_png, &st), 0);
    assert_int_equal(truncate(bad_png, st.st_size - 20), 0);
    nnopt_error_clear(&err);
    expect_error(nnopt_dataset_load_image_folder(fixture_path(fx, "b"), NULL, 0, &ds, NULL, &err),
                 &err, NNOPT_STATUS_FORMAT, bad_png, "corrupt PNG");

    /* A different size. */
    uint8_t *small = pattern_image(0, 8, 16, 3);
    write_png(bad_png, small, 8, 16, 3);
    nnopt_error_clear(&err);
    expect_error(nnopt_dataset_load_image_folder(fixture_path(fx, "b"), NULL, 0, &ds, NULL, &err),
                 &err, NNOPT_STATUS_FORMAT, bad_png, "8 x 16 pixels");

    /* No classes at all. */
    mkdir(fixture_path(fx, "empty"), 0777);
    nnopt_error_clear(&err);
    expect_error(
        nnopt_dataset_load_image_folder(fixture_path(fx, "empty"), NULL, 0, &ds, NULL, &err), &err,
        NNOPT_STATUS_FORMAT, "empty", "no class folders");
    free(small);
    free(p);
}

/* Enough images for several decoding threads: the result, and which broken
 * file is reported, must not depend on thread timing. */
static void test_many_images_in_parallel(void **state) {
    fixture *fx = *state;
    enum { COUNT = 1200 };
    char name[64];
    for (int i = 0; i < COUNT; i++) {
        uint8_t *p = pattern_image(i, 4, 3, 3);
        snprintf(name, sizeof name, "s/c%d/%04d.png", i % 3, i);
        write_png(fixture_path(fx, name), p, 4, 3, 3);
        free(p);
    }
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(
        nnopt_dataset_load_image_folder(fixture_path(fx, "s"), NULL, 0, &ds, NULL, &err), NNOPT_OK);
    assert_int_equal(ds.n, COUNT);
    for (int k = 0; k < COUNT; k++) {
        int i = (k % (COUNT / 3)) * 3 + k / (COUNT / 3); /* class-major order */
        assert_int_equal(ds.labels[k], i % 3);
        assert_int_equal(ds_pixel(&ds, k, 2, 2, 3), (uint8_t)(40 + i * 23 + 27 + 10 + 60));
    }
    nnopt_dataset_free(&ds);
    /* Two broken files: the first in load order is the one reported. */
    write_bytes(fixture_path(fx, "s/c2/0998.png"), "broken", 6);
    write_bytes(fixture_path(fx, "s/c1/0997.png"), "broken", 6);
    for (int attempt = 0; attempt < 3; attempt++) {
        nnopt_error_clear(&err);
        expect_error(
            nnopt_dataset_load_image_folder(fixture_path(fx, "s"), NULL, 0, &ds, NULL, &err), &err,
            NNOPT_STATUS_FORMAT, "c1/0997.png", "corrupt PNG");
    }
}

static int datasets_equal(const nnopt_dataset *a, const nnopt_dataset *b) {
    size_t bytes = (size_t)a->n * a->c * a->h * a->w;
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
           a->num_classes == b->num_classes && memcmp(a->pixels, b->pixels, bytes) == 0 &&
           memcmp(a->labels, b->labels, (size_t)a->n * sizeof *a->labels) == 0;
}

static void flip_byte(const char *path, long offset) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    assert_int_equal(fclose(f), 0);
}

static void test_cache_hit_corruption_and_staleness(void **state) {
    fixture *fx = *state;
    const char *split = write_png_folder(fx);
    char cache_dir[256];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache/nested", fx->dir);
    nnopt_dataset fresh, cached;
    nnopt_error err = {0};
    nnopt_image_folder_info info;

    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &fresh, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 0);
    assert_int_equal(info.cache_rebuilt, 0);
    assert_non_null(strstr(info.cache_path, cache_dir));
    struct stat st;
    assert_int_equal(stat(info.cache_path, &st), 0);

    /* Second load: from the cache, identical. */
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 1);
    assert_true(datasets_equal(&fresh, &cached));
    nnopt_dataset_free(&cached);

    /* A damaged payload byte: detected by the checksum, rebuilt, still right. */
    flip_byte(info.cache_path, 64 + 17);
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 0);
    assert_int_equal(info.cache_rebuilt, 1);
    assert_true(datasets_equal(&fresh, &cached));
    nnopt_dataset_free(&cached);
    nnopt_error cache_err = {0};
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 1);
    nnopt_dataset_free(&cached);

    /* A damaged header and a truncated file are caught too. */
    flip_byte(info.cache_path, 20);
    assert_int_not_equal(nnopt_dataset_cache_read(info.cache_path, 0, &cached, &cache_err),
                         NNOPT_OK);
    assert_non_null(strstr(cache_err.message, "corrupt cache"));
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.cache_rebuilt, 1);
    nnopt_dataset_free(&cached);
    assert_int_equal(stat(info.cache_path, &st), 0);
    assert_int_equal(truncate(info.cache_path, st.st_size - 1), 0);
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.cache_rebuilt, 1);
    assert_true(datasets_equal(&fresh, &cached));
    nnopt_dataset_free(&cached);

    /* A new image makes the cache stale. */
    uint8_t *p = pattern_image(9, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "train/bee/n.png"), p, IMG_W, IMG_H, 3);
    free(p);
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 0, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 0);
    assert_int_equal(info.cache_rebuilt, 1);
    assert_int_equal(cached.n, 6);
    assert_int_equal(cached.labels[3], 1);
    nnopt_dataset_free(&cached);

    /* Limit: round-robin over classes (ant, bee, cat, ant, ...), also from the cache. */
    assert_int_equal(nnopt_dataset_load_image_folder(split, cache_dir, 4, &cached, &info, &err),
                     NNOPT_OK);
    assert_int_equal(info.from_cache, 1);
    assert_int_equal(cached.n, 4);
    static const int round_robin[4] = {0, 1, 2, 0};
    for (int i = 0; i < 4; i++) assert_int_equal(cached.labels[i], round_robin[i]);
    nnopt_dataset_free(&cached);
    nnopt_dataset_free(&fresh);
}

static void test_cache_file_round_trip(void **state) {
    fixture *fx = *state;
    uint8_t pixels[2 * 2 * 3 * 3];
    int32_t labels[2] = {1, 0};
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 11);
    nnopt_dataset ds = {2, 2, 3, 3, 2, pixels, labels}, back;
    const char *path = fixture_path(fx, "x.nnds");
    nnopt_error err = {0};
    assert_int_equal(nnopt_dataset_cache_write(path, &ds, 42, &err), NNOPT_OK);
    assert_int_equal(nnopt_dataset_cache_read(path, 42, &back, &err), NNOPT_OK);
    assert_true(datasets_equal(&ds, &back));
    nnopt_dataset_free(&back);
    expect_error(nnopt_dataset_cache_read(path, 43, &back, &err), &err, NNOPT_STATUS_FORMAT, path,
                 "stale cache");
    assert_null(back.pixels);
    write_bytes(path, "NNOPTDS", 8);
    nnopt_error_clear(&err);
    expect_error(nnopt_dataset_cache_read(path, 42, &back, &err), &err, NNOPT_STATUS_FORMAT, path,
                 "corrupt cache");
}

static void test_default_cache_dir(void **state) {
    fixture *fx = *state;
    char out[512], want[512];
    nnopt_dataset_default_cache_dir(fx->dir, out, sizeof out);
    snprintf(want, sizeof want, "%s/.nnopt-cache", fx->dir);
    assert_string_equal(out, want);
    /* A dataset folder that cannot take a subfolder (here a file, which fails
     * even for root) falls back to $XDG_CACHE_HOME/nnopt. */
    const char *file = fixture_path(fx, "plain-file");
    write_bytes(file, "x", 1);
    char xdg[256];
    snprintf(xdg, sizeof xdg, "%s/xdg", fx->dir);
    const char *saved = getenv("XDG_CACHE_HOME");
    char *saved_copy = saved ? strdup(saved) : NULL;
    setenv("XDG_CACHE_HOME", xdg, 1);
    nnopt_dataset_default_cache_dir(file, out, sizeof out);
    if (saved_copy)
        setenv("XDG_CACHE_HOME", saved_copy, 1);
    else
        unsetenv("XDG_CACHE_HOME");
    free(saved_copy);
    snprintf(want, sizeof want, "%s/nnopt", xdg);
    assert_string_equal(out, want);
}

/* ---- Augmentation and normalisation ---- */

enum { AUG_C = 2, AUG_H = 5, AUG_W = 7 };

static void make_aug_dataset(nnopt_dataset *ds, int n) {
    ds->n = n;
    ds->c = AUG_C;
    ds->h = AUG_H;
    ds->w = AUG_W;
    ds->num_classes = 3;
    ds->pixels = malloc((size_t)n * AUG_C * AUG_H * AUG_W);
    ds->labels = malloc((size_t)n * sizeof *ds->labels);
    assert_non_null(ds->pixels);
    assert_non_null(ds->labels);
    for (int i = 0; i < n * AUG_C * AUG_H * AUG_W; i++) ds->pixels[i] = (uint8_t)(1 + i % 250);
    for (int i = 0; i < n; i++) ds->labels[i] = i % 3;
}

static void test_augment_crop_and_flip(void **state) {
    (void)state;
    enum { N = 64, PAD = 2 };
    nnopt_dataset ds;
    make_aug_dataset(&ds, N);
    int64_t order[N];
    for (int i = 0; i < N; i++) order[i] = N - 1 - i;
    /* scale 1, mean 0.5, std 2: x = (p - 0.5) / 2, padding = -0.25. */
    nnopt_normalize norm = {1.0, {0.5, 0.5, 0.5, 0.5}, {2, 2, 2, 2}};
    nnopt_augment aug = {PAD, 1};
    size_t values = (size_t)N * AUG_C * AUG_H * AUG_W;
    double *x = malloc(values * sizeof *x), *again = malloc(values * sizeof *again);
    float *x32 = malloc(values * sizeof *x32);
    int32_t y[N];
    nnopt_dataset_batch_augmented(&ds, order, N, &norm, &aug, 1234, NNOPT_F64, x, y);

    /* Replay the documented draws and check every value independently. */
    nnopt_rng rng;
    nnopt_rng_seed(&rng, 1234);
    int seen_shift[2 * PAD + 1] = {0}, seen_flip[2] = {0};
    for (int k = 0; k < N; k++) {
        nnopt_augment_draw d;
        nnopt_augment_next(&aug, &rng, &d);
        assert_in_range(d.shift_y + PAD, 0, 2 * PAD);
        assert_in_range(d.shift_x + PAD, 0, 2 * PAD);
        seen_shift[d.shift_x + PAD]++;
        seen_flip[d.flip]++;
        assert_int_equal(y[k], ds.labels[order[k]]);
        for (int c = 0; c < AUG_C; c++)
            for (int r = 0; r < AUG_H; r++)
                for (int col = 0; col < AUG_W; col++) {
                    int crop_col = d.flip ? AUG_W - 1 - col : col; /* flip after the crop */
                    int sy = r + d.shift_y, sx = crop_col + d.shift_x;
                    double want = -0.25;
                    if (sy >= 0 && sy < AUG_H && sx >= 0 && sx < AUG_W)
                        want = (ds_pixel(&ds, order[k], c, sy, sx) - 0.5) / 2;
                    double got = x[(((size_t)k * AUG_C + c) * AUG_H + r) * AUG_W + col];
                    assert_close(got, want, 0);
                }
    }
    for (int s = 0; s <= 2 * PAD; s++) assert_true(seen_shift[s] > 0);
    assert_true(seen_flip[0] > 0 && seen_flip[1] > 0);

    /* Same seed, same batch (and f32 agrees); another seed, another batch. */
    nnopt_dataset_batch_augmented(&ds, order, N, &norm, &aug, 1234, NNOPT_F64, again, y);
    assert_memory_equal(x, again, values * sizeof *x);
    nnopt_dataset_batch_augmented(&ds, order, N, &norm, &aug, 1234, NNOPT_F32, x32, y);
    for (size_t i = 0; i < values; i++) assert_true(x32[i] == (float)x[i]);
    nnopt_dataset_batch_augmented(&ds, order, N, &norm, &aug, 1235, NNOPT_F64, again, y);
    assert_memory_not_equal(x, again, values * sizeof *x);

    /* A known seed with a known draw: a shift of (+1, -2) then a mirror. */
    nnopt_augment_draw want = {1, -2, 1}, d = {0, 0, 0};
    uint64_t seed = 0;
    for (; seed < 100000; seed++) {
        nnopt_rng_seed(&rng, seed);
        nnopt_augment_next(&aug, &rng, &d);
        if (memcmp(&d, &want, sizeof d) == 0) break;
    }
    assert_memory_equal(&d, &want, sizeof d);
    int64_t first = 0;
    nnopt_dataset_batch_augmented(&ds, &first, 1, &norm, &aug, seed, NNOPT_F64, x, y);
    /* Row 0 of the output is row 1 of the input, mirrored: output column c
     * holds crop column 6 - c, i.e. input column 4 - c; columns 5 and 6 of the
     * output come from input columns -1 and -2: padding. */
    for (int col = 0; col < AUG_W; col++) {
        int sx = 4 - col;
        double expect = sx >= 0 ? (ds_pixel(&ds, 0, 0, 1, sx) - 0.5) / 2 : -0.25;
        assert_close(x[col], expect, 0);
    }
    /* The last output row reads input row 5: all padding. */
    for (int col = 0; col < AUG_W; col++) assert_close(x[4 * AUG_W + col], -0.25, 0);

    /* No augmentation: exactly nnopt_dataset_batch. */
    nnopt_augment none = {0, 0};
    nnopt_dataset_batch_augmented(&ds, order, N, &norm, &none, 1234, NNOPT_F64, x, y);
    nnopt_dataset_batch(&ds, order, N, &norm, NNOPT_F64, again, y);
    assert_memory_equal(x, again, values * sizeof *x);
    free(x);
    free(again);
    free(x32);
    nnopt_dataset_free(&ds);
}

static void test_per_channel_normalisation(void **state) {
    (void)state;
    uint8_t pixels[2 * 3 * 2 * 2] = {0,   255, 10,  20,  30,  40,  50,  60,  70,  80,  90,  100,
                                     110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220};
    int32_t labels[2] = {0, 1};
    nnopt_dataset ds = {2, 3, 2, 2, 2, pixels, labels};
    nnopt_normalize norm = {1.0 / 255.0, {0.1, 0.2, 0.3, 0}, {0.5, 0.25, 2.0, 1}};
    double x[24];
    float x32[24];
    int32_t y[2];
    int64_t order[2] = {1, 0};
    nnopt_dataset_batch(&ds, order, 2, &norm, NNOPT_F64, x, y);
    nnopt_dataset_batch(&ds, order, 2, &norm, NNOPT_F32, x32, y);
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 4; i++) {
                double p = pixels[(order[k] * 3 + c) * 4 + i];
                double want = (p / 255.0 - norm.mean[c]) / norm.std[c];
                assert_close(x[(k * 3 + c) * 4 + i], want, 1e-12);
                assert_close(x32[(k * 3 + c) * 4 + i], (float)want, 1e-6);
            }
    assert_int_equal(y[0], 1);

    double mean[4], std[4];
    nnopt_dataset_channel_stats(&ds, 1.0, mean, std);
    for (int c = 0; c < 3; c++) {
        double sum = 0, sum_sq = 0;
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 4; i++) {
                double p = pixels[(k * 3 + c) * 4 + i];
                sum += p;
                sum_sq += p * p;
            }
        double m = sum / 8;
        assert_close(mean[c], m, 1e-9);
        assert_close(std[c], sqrt(sum_sq / 8 - m * m), 1e-9);
    }
}

/* ---- Through the [data] section ---- */

static nnopt_config *data_config(const char *const *pairs, int count) {
    nnopt_config *cfg = nnopt_config_create(nnopt_data_schema, nnopt_data_schema_count, "[data]");
    assert_non_null(cfg);
    nnopt_error err = {0};
    for (int i = 0; i < count; i += 2)
        if (nnopt_config_set(cfg, pairs[i], pairs[i + 1], "test", &err) != NNOPT_OK)
            fail_msg("%s", err.message);
    assert_int_equal(nnopt_config_finish(cfg, "test", &err), NNOPT_OK);
    return cfg;
}

static void test_data_section(void **state) {
    fixture *fx = *state;
    write_cifar_dir(fx);
    const char *cifar[] = {"dataset",     "cifar10",      "dir", fx->dir,        "mean",
                           "0.4,0.5,0.6", "augment_crop", "4",   "augment_flip", "true"};
    nnopt_config *cfg = data_config(cifar, 10);
    nnopt_data data;
    nnopt_error err = {0};
    if (nnopt_data_load(cfg, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
    assert_int_equal(data.train.n, 10);
    assert_int_equal(data.test.n, 3);
    assert_int_equal(data.augment.crop_padding, 4);
    assert_int_equal(data.augment.flip, 1);
    assert_close(data.norm.mean[2], 0.6, 0);
    int64_t order[4] = {3, 1, 4, 1};
    size_t values = 4 * (size_t)CIFAR_PIXELS;
    float *a = malloc(values * sizeof *a), *b = malloc(values * sizeof *b);
    int32_t y[4];
    nnopt_data_train_batch(&data, order, 4, NNOPT_F32, a, y, 77);
    nnopt_data_train_batch(&data, order, 4, NNOPT_F32, b, y, 77);
    assert_memory_equal(a, b, values * sizeof *a);
    nnopt_data_train_batch(&data, order, 4, NNOPT_F32, b, y, 78);
    assert_memory_not_equal(a, b, values * sizeof *a);
    assert_int_equal(y[2], 4);
    free(a);
    free(b);
    nnopt_data_free(&data);
    nnopt_config_free(cfg);

    /* An image folder with an explicit cache folder, then the same again. */
    write_png_folder(fx);
    uint8_t *p = pattern_image(7, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "val/ant/0.png"), p, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "val/bee/0.png"), p, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "val/cat/0.png"), p, IMG_W, IMG_H, 3);
    free(p);
    char cache[128];
    snprintf(cache, sizeof cache, "%s/mycache", fx->dir);
    const char *images[] = {"dataset",    "images", "dir",   fx->dir,
                            "test_split", "val",    "cache", cache};
    cfg = data_config(images, 8);
    for (int run = 0; run < 2; run++) {
        if (nnopt_data_load(cfg, &data, &err) != NNOPT_OK) fail_msg("%s", err.message);
        assert_int_equal(data.train.n, 5);
        assert_int_equal(data.test.n, 3);
        assert_int_equal(data.train.num_classes, 3);
        assert_int_equal(data.test.labels[2], 2);
        nnopt_data_free(&data);
    }
    struct stat st;
    assert_int_equal(stat(cache, &st), 0);
    nnopt_config_free(cfg);

    /* Test classes that differ from the training classes are refused. */
    mkdir(fixture_path(fx, "val/dog"), 0777);
    p = pattern_image(7, IMG_W, IMG_H, 3);
    write_png(fixture_path(fx, "val/dog/0.png"), p, IMG_W, IMG_H, 3);
    free(p);
    const char *uncached[] = {"dataset",    "images", "dir",   fx->dir,
                              "test_split", "val",    "cache", "off"};
    cfg = data_config(uncached, 8);
    nnopt_error_clear(&err);
    expect_error(nnopt_data_load(cfg, &data, &err), &err, NNOPT_STATUS_FORMAT, "val",
                 "class folders differ");
    nnopt_config_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cifar_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_truncated_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cifar_bad_label_and_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_folder_exact_and_sorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_png_channel_conversion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jpeg_folder_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_images_name_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_images_in_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_hit_corruption_and_staleness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_file_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_cache_dir, setup, teardown),
        cmocka_unit_test(test_augment_crop_and_flip),
        cmocka_unit_test(test_per_channel_normalisation),
        cmocka_unit_test_setup_teardown(test_data_section, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
