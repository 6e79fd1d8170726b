/* Tests for IDX loading (raw and gzip, and every malformed-file path), shuffling
 * and batch conversion. IDX files are generated in a fresh temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"

/* A small dataset: 5 images of 3 x 4 pixels, labels with maximum 5. */
enum { SAMPLE_COUNT = 5, ROWS = 3, COLS = 4, IMAGE_BYTES = ROWS * COLS };
static const uint8_t sample_labels[SAMPLE_COUNT] = {3, 1, 4, 1, 5};

static uint8_t sample_pixel(int image, int offset) {
    return (uint8_t)((image * IMAGE_BYTES + offset) * 37 % 256);
}

typedef struct fixture {
    char dir[64];
    char paths[16][128];
    int path_count;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/nnopt_test_dataset_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    for (int i = 0; i < fx->path_count; i++) unlink(fx->paths[i]);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* A path for `name` inside the fixture's folder, removed at teardown. */
static const char *fixture_path(fixture *fx, const char *name) {
    assert_true(fx->path_count < 16);
    char dir[sizeof fx->dir]; /* a copy: gcc -O2 flags snprintf within one object */
    memcpy(dir, fx->dir, sizeof dir);
    char *path = fx->paths[fx->path_count++];
    snprintf(path, sizeof fx->paths[0], "%s/%s", dir, name);
    return path;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The bytes of an IDX file: magic, dims, then `payload_len` bytes of payload. */
typedef struct idx_bytes {
    uint8_t *data;
    size_t len;
} idx_bytes;

static idx_bytes idx_build(uint32_t magic, int ndims, const uint32_t *dims, const uint8_t *payload,
                           size_t payload_len) {
    idx_bytes b;
    b.len = 4 + 4 * (size_t)ndims + payload_len;
    b.data = malloc(b.len);
    assert_non_null(b.data);
    put_be32(b.data, magic);
    for (int i = 0; i < ndims; i++) put_be32(b.data + 4 + 4 * i, dims[i]);
    if (payload_len) memcpy(b.data + 4 + 4 * ndims, payload, payload_len);
    return b;
}

static void write_raw(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_gzip(const char *path, const uint8_t *data, size_t len) {
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (len) assert_int_equal(gzwrite(gz, data, (unsigned)len), (int)len);
    assert_int_equal(gzclose(gz), Z_OK);
}

static idx_bytes read_whole(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    idx_bytes b = {malloc(1 << 16), 0};
    assert_non_null(b.data);
    b.len = fread(b.data, 1, 1 << 16, f);
    fclose(f);
    return b;
}

/* Writes b to `name`, raw or gzip, frees b and returns the file's path. */
static const char *write_idx_file(fixture *fx, const char *name, int gzip, idx_bytes b) {
    const char *path = fixture_path(fx, name);
    if (gzip)
        write_gzip(path, b.data, b.len);
    else
        write_raw(path, b.data, b.len);
    free(b.data);
    return path;
}

static void sample_payloads(uint8_t *pixels) {
    for (int i = 0; i < SAMPLE_COUNT; i++)
        for (int j = 0; j < IMAGE_BYTES; j++) pixels[i * IMAGE_BYTES + j] = sample_pixel(i, j);
}

/* Writes the sample images (header claiming `claimed` images, `pixel_bytes` of
 * pixel data, `extra` trailing bytes) to `name`, raw or gzip. */
static const char *write_images(fixture *fx, const char *name, int gzip, uint32_t claimed,
                                size_t pixel_bytes, size_t extra) {
    uint8_t pixels[SAMPLE_COUNT * IMAGE_BYTES + 64] = {0};
    sample_payloads(pixels);
    for (size_t i = 0; i < extra; i++) pixels[SAMPLE_COUNT * IMAGE_BYTES + i] = 0xab;
    uint32_t dims[3] = {claimed, ROWS, COLS};
    return write_idx_file(fx, name, gzip,
                          idx_build(0x00000803, 3, dims, pixels, pixel_bytes + extra));
}

static const char *write_labels(fixture *fx, const char *name, int gzip, uint32_t claimed,
                                size_t label_bytes, size_t extra) {
    uint8_t labels[SAMPLE_COUNT + 64] = {0};
    memcpy(labels, sample_labels, SAMPLE_COUNT);
    uint32_t dims[1] = {claimed};
    return write_idx_file(fx, name, gzip,
                          idx_build(0x00000801, 1, dims, labels, label_bytes + extra));
}

static const char *good_images(fixture *fx, int gzip) {
    return write_images(fx, gzip ? "images.gz" : "images", gzip, SAMPLE_COUNT,
                        SAMPLE_COUNT * IMAGE_BYTES, 0);
}

static const char *good_labels(fixture *fx, int gzip) {
    return write_labels(fx, gzip ? "labels.gz" : "labels", gzip, SAMPLE_COUNT, SAMPLE_COUNT, 0);
}

static int is_zeroed(const nnopt_dataset *ds) {
    nnopt_dataset zero;
    memset(&zero, 0, sizeof zero);
    return memcmp(ds, &zero, sizeof zero) == 0;
}

/* Loads and expects failure with status `want` and a message containing both
 * `path` and `fragment`; the output must be left zeroed. */
static void expect_load_error(const char *images, const char *labels, nnopt_status want,
                              const char *path, const char *fragment) {
    nnopt_dataset ds;
    memset(&ds, 0x5a, sizeof ds); /* garbage in: the loader must zero it */
    nnopt_error err = {0};
    nnopt_status st = nnopt_dataset_load_idx(images, labels, 0, &ds, &err);
    if (st != want || !strstr(err.message, path) || !strstr(err.message, fragment))
        print_error("status %s, message \"%s\"; wanted %s with \"%s\"\n", nnopt_status_name(st),
                    err.message, nnopt_status_name(want), fragment);
    assert_int_equal(st, want);
    assert_int_equal(err.status, want);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, fragment));
    assert_true(is_zeroed(&ds));
}

static void check_sample_dataset(const nnopt_dataset *ds, int64_t n) {
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->c, 1);
    assert_int_equal(ds->h, ROWS);
    assert_int_equal(ds->w, COLS);
    assert_int_equal(ds->num_classes, 6);
    for (int i = 0; i < n; i++) {
        assert_int_equal(ds->labels[i], sample_labels[i]);
        for (int j = 0; j < IMAGE_BYTES; j++)
            assert_int_equal(ds->pixels[i * IMAGE_BYTES + j], sample_pixel(i, j));
    }
}

static void test_load_raw(void **state) {
    fixture *fx = *state;
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(nnopt_dataset_load_idx(good_images(fx, 0), good_labels(fx, 0), 0, &ds, &err),
                     NNOPT_OK);
    assert_int_equal(err.status, NNOPT_OK);
    check_sample_dataset(&ds, SAMPLE_COUNT);
    nnopt_dataset_free(&ds);
    assert_true(is_zeroed(&ds));
    nnopt_dataset_free(&ds); /* idempotent */
    nnopt_dataset_free(NULL);
}

static void test_load_limit(void **state) {
    fixture *fx = *state;
    const char *images = good_images(fx, 0), *labels = good_labels(fx, 0);
    nnopt_dataset ds;
    nnopt_error err = {0};
    /* num_classes still comes from the whole label file (label 5 is sample 4). */
    assert_int_equal(nnopt_dataset_load_idx(images, labels, 2, &ds, &err), NNOPT_OK);
    check_sample_dataset(&ds, 2);
    nnopt_dataset_free(&ds);

    assert_int_equal(nnopt_dataset_load_idx(images, labels, 100, &ds, &err), NNOPT_OK);
    check_sample_dataset(&ds, SAMPLE_COUNT);
    nnopt_dataset_free(&ds);
}

static void test_limit_still_checks_whole_file(void **state) {
    fixture *fx = *state;
    const char *images =
        write_images(fx, "short", 0, SAMPLE_COUNT, SAMPLE_COUNT * IMAGE_BYTES - 1, 0);
    nnopt_dataset ds;
    nnopt_error err = {0};
    assert_int_equal(nnopt_dataset_load_idx(images, good_labels(fx, 0), 1, &ds, &err),
                     NNOPT_STATUS_IO);
    assert_non_null(strstr(err.message, "truncated"));
    assert_true(is_zeroed(&ds));
}

static void test_gzip_equals_raw(void **state) {
    fixture *fx = *state;
    nnopt_dataset raw, gz;
    nnopt_error err = {0};
    assert_int_equal(nnopt_dataset_load_idx(good_images(fx, 0), good_labels(fx, 0), 0, &raw, &err),
                     NNOPT_OK);
    assert_int_equal(nnopt_dataset_load_idx(good_images(fx, 1), good_labels(fx, 1), 0, &gz, &err),
                     NNOPT_OK);
    check_sample_dataset(&gz, SAMPLE_COUNT);
    assert_memory_equal(raw.pixels, gz.pixels, SAMPLE_COUNT * IMAGE_BYTES);
    assert_memory_equal(raw.labels, gz.labels, SAMPLE_COUNT * sizeof(int32_t));
    nnopt_dataset_free(&raw);
    nnopt_dataset_free(&gz);
}

static void test_truncated_images(void **state) {
    fixture *fx = *state;
    const char *labels = good_labels(fx, 0);
    for (int gzip = 0; gzip <= 1; gzip++) {
        const char *images = write_images(fx, gzip ? "short.gz" : "short", gzip, SAMPLE_COUNT,
                                          SAMPLE_COUNT * IMAGE_BYTES - 7, 0);
        expect_load_error(images, labels, NNOPT_STATUS_IO, images,
                          "truncated: expected 60 bytes of pixels, found 53");
    }
}

static void test_truncated_gzip_stream(void **state) {
    fixture *fx = *state;
    /* A download cut short: the gzip stream itself ends in the middle. */
    idx_bytes whole = read_whole(good_images(fx, 1));
    const char *cut = fixture_path(fx, "cut.gz");
    write_raw(cut, whole.data, whole.len - 20);
    free(whole.data);
    expect_load_error(cut, good_labels(fx, 0), NNOPT_STATUS_IO, cut, "truncated");
}

static void test_corrupt_gzip(void **state) {
    fixture *fx = *state;
    /* Flipping a bit of the CRC-32 in the gzip trailer makes zlib's check fail
     * deterministically, after all the data has decompressed. */
    idx_bytes whole = read_whole(good_images(fx, 1));
    whole.data[whole.len - 8] ^= 0x01;
    const char *corrupt = fixture_path(fx, "corrupt.gz");
    write_raw(corrupt, whole.data, whole.len);
    free(whole.data);
    expect_load_error(corrupt, good_labels(fx, 0), NNOPT_STATUS_FORMAT, corrupt,
                      "corrupt gzip data");
}

static void test_truncated_labels(void **state) {
    fixture *fx = *state;
    const char *images = good_images(fx, 0);
    for (int gzip = 0; gzip <= 1; gzip++) {
        const char *labels = write_labels(fx, gzip ? "short_labels.gz" : "short_labels", gzip,
                                          SAMPLE_COUNT, SAMPLE_COUNT - 1, 0);
        expect_load_error(images, labels, NNOPT_STATUS_IO, labels,
                          "truncated: expected 5 bytes of labels, found 4");
    }
}

static void test_truncated_header(void **state) {
    fixture *fx = *state;
    const char *empty = fixture_path(fx, "empty");
    write_raw(empty, (const uint8_t *)"", 0);
    expect_load_error(empty, good_labels(fx, 0), NNOPT_STATUS_IO, empty,
                      "truncated: expected 16 bytes of header, found 0");
    const uint8_t partial[6] = {0, 0, 8, 1, 0, 0};
    const char *short_header = fixture_path(fx, "short_header");
    write_raw(short_header, partial, sizeof partial);
    expect_load_error(good_images(fx, 0), short_header, NNOPT_STATUS_IO, short_header,
                      "expected 8 bytes of header, found 6");
}

static void test_wrong_magic(void **state) {
    fixture *fx = *state;
    const char *images = good_images(fx, 0), *labels = good_labels(fx, 0);
    /* The classic mistake: images and labels swapped. */
    expect_load_error(labels, images, NNOPT_STATUS_FORMAT, labels,
                      "not an IDX image file (magic 0x00000801, expected 0x00000803)");
    expect_load_error(images, images, NNOPT_STATUS_FORMAT, images,
                      "not an IDX label file (magic 0x00000803, expected 0x00000801)");
    /* A file that is neither, e.g. a text error page saved by a downloader. */
    const char *html = fixture_path(fx, "page.html");
    const char *text = "<html>Not Found</html>";
    write_raw(html, (const uint8_t *)text, strlen(text));
    expect_load_error(html, labels, NNOPT_STATUS_FORMAT, html, "not an IDX image file");
}

static void test_implausible_dims(void **state) {
    fixture *fx = *state;
    const char *labels = good_labels(fx, 0);
    uint32_t zero_rows[3] = {SAMPLE_COUNT, 0, COLS};
    idx_bytes b = idx_build(0x00000803, 3, zero_rows, NULL, 0);
    const char *path = fixture_path(fx, "zero_rows");
    write_raw(path, b.data, b.len);
    free(b.data);
    expect_load_error(path, labels, NNOPT_STATUS_FORMAT, path,
                      "implausible IDX image dimensions 5 x 0 x 4");

    uint32_t huge_dim[3] = {0x80000000u, 28, 28};
    b = idx_build(0x00000803, 3, huge_dim, NULL, 0);
    path = fixture_path(fx, "huge_dim");
    write_raw(path, b.data, b.len);
    free(b.data);
    expect_load_error(path, labels, NNOPT_STATUS_FORMAT, path, "implausible");

    uint32_t huge_product[3] = {0x7fffffffu, 0x7fffffffu, 0x7fffffffu};
    b = idx_build(0x00000803, 3, huge_product, NULL, 0);
    path = fixture_path(fx, "huge_product");
    write_raw(path, b.data, b.len);
    free(b.data);
    expect_load_error(path, labels, NNOPT_STATUS_FORMAT, path, "implausible");

    uint32_t zero_labels[1] = {0};
    b = idx_build(0x00000801, 1, zero_labels, NULL, 0);
    path = fixture_path(fx, "zero_labels");
    write_raw(path, b.data, b.len);
    free(b.data);
    expect_load_error(good_images(fx, 0), path, NNOPT_STATUS_FORMAT, path, "implausible");
}

static void test_big_claim_in_small_file(void **state) {
    fixture *fx = *state;
    /* A plausible but false header (a million 100x100 images, 10 GB) over a few
     * bytes of data: reported as truncation without allocating 10 GB first. */
    uint32_t dims[3] = {1000000, 100, 100};
    uint8_t few[32] = {0};
    idx_bytes b = idx_build(0x00000803, 3, dims, few, sizeof few);
    const char *images = fixture_path(fx, "big_claim");
    write_raw(images, b.data, b.len);
    free(b.data);
    uint8_t labels[1000] = {0};
    uint32_t label_dims[1] = {1000000};
    b = idx_build(0x00000801, 1, label_dims, labels, sizeof labels);
    const char *label_path = fixture_path(fx, "big_claim_labels");
    write_raw(label_path, b.data, b.len);
    free(b.data);
    expect_load_error(images, label_path, NNOPT_STATUS_IO, images,
                      "expected 10000000000 bytes of pixels, found 32");
}

static void test_count_mismatch(void **state) {
    fixture *fx = *state;
    const char *images = good_images(fx, 0);
    const char *labels = write_labels(fx, "fewer_labels", 0, SAMPLE_COUNT - 1, SAMPLE_COUNT - 1, 0);
    char expected[256];
    snprintf(expected, sizeof expected, "%s: 5 images but %s has 4 labels", images, labels);
    expect_load_error(images, labels, NNOPT_STATUS_FORMAT, images, expected);
}

static void test_trailing_garbage(void **state) {
    fixture *fx = *state;
    const char *labels = good_labels(fx, 0);
    for (int gzip = 0; gzip <= 1; gzip++) {
        const char *images = write_images(fx, gzip ? "long.gz" : "long", gzip, SAMPLE_COUNT,
                                          SAMPLE_COUNT * IMAGE_BYTES, 3);
        expect_load_error(images, labels, NNOPT_STATUS_FORMAT, images,
                          "3 unexpected bytes after the 60 bytes of pixels");
    }
    const char *long_labels = write_labels(fx, "long_labels", 0, SAMPLE_COUNT, SAMPLE_COUNT, 1);
    expect_load_error(good_images(fx, 0), long_labels, NNOPT_STATUS_FORMAT, long_labels,
                      "1 unexpected bytes after the 5 bytes of labels");
}

static void test_missing_file(void **state) {
    fixture *fx = *state;
    const char *missing = fixture_path(fx, "no-such-file.gz");
    expect_load_error(missing, good_labels(fx, 0), NNOPT_STATUS_IO, missing,
                      "cannot open: No such file or directory");
    expect_load_error(good_images(fx, 0), missing, NNOPT_STATUS_IO, missing, "cannot open");
    /* A folder opens but cannot be read. */
    expect_load_error(fx->dir, good_labels(fx, 0), NNOPT_STATUS_IO, fx->dir, "read error");
}

static void test_shuffle(void **state) {
    (void)state;
    enum { N = 1000 };
    int64_t a[N], b[N], c[N];
    nnopt_dataset_shuffle(a, N, 42);
    nnopt_dataset_shuffle(b, N, 42);
    nnopt_dataset_shuffle(c, N, 43);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);

    char seen[N] = {0};
    int fixed_points = 0;
    for (int i = 0; i < N; i++) {
        assert_in_range(a[i], 0, N - 1);
        assert_int_equal(seen[a[i]], 0);
        seen[a[i]] = 1;
        fixed_points += a[i] == i;
    }
    /* A random permutation has about one fixed point; the identity has N. */
    assert_true(fixed_points < 10);

    int64_t one = -1;
    nnopt_dataset_shuffle(&one, 1, 7);
    assert_int_equal(one, 0);
    nnopt_dataset_shuffle(NULL, 0, 7);
}

static void test_shuffle_uniform(void **state) {
    (void)state;
    /* All 6 orders of 3 items appear about equally often (an off-by-one in
     * Fisher-Yates would make some impossible or twice as likely). */
    int counts[6] = {0};
    for (uint64_t seed = 0; seed < 6000; seed++) {
        int64_t p[3];
        nnopt_dataset_shuffle(p, 3, seed);
        counts[p[0] * 2 + (p[1] > p[2])]++;
    }
    for (int i = 0; i < 6; i++) assert_in_range(counts[i], 850, 1150);
}

static void test_batch(void **state) {
    (void)state;
    /* Two 3-channel 1x2 images, so each channel's mean/std is exercised. */
    uint8_t pixels[2 * 3 * 2] = {0, 255, 10, 20, 30, 40, 1, 2, 3, 4, 5, 128};
    int32_t labels[2] = {7, 2};
    nnopt_dataset ds = {.n = 2, .c = 3, .h = 1, .w = 2, .num_classes = 8};
    ds.pixels = pixels;
    ds.labels = labels;
    nnopt_normalize norm = {.scale = 1.0 / 255.0, .mean = {0.5, 0.25, 0.1}, .std = {0.5, 2.0, 0.3}};
    int64_t order[3] = {1, 0, 1}; /* repeats are allowed */

    double x64[3 * 6];
    float x32[3 * 6];
    int32_t y64[3], y32[3];
    nnopt_dataset_batch(&ds, order, 3, &norm, NNOPT_F64, x64, y64);
    nnopt_dataset_batch(&ds, order, 3, &norm, NNOPT_F32, x32, y32);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(y64[k], labels[order[k]]);
        assert_int_equal(y32[k], labels[order[k]]);
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < 2; i++) {
                uint8_t p = pixels[order[k] * 6 + ch * 2 + i];
                double want = (p * norm.scale - norm.mean[ch]) / norm.std[ch];
                int at = k * 6 + ch * 2 + i;
                assert_true(x64[at] == want);
                assert_true(x32[at] == (float)want);
            }
    }
    /* Spot checks against hand-computed values. */
    assert_true(fabs(x64[6 + 1] - 1.0) < 1e-15); /* sample 0, ch 0: (1 - 0.5)/0.5 */
    assert_true(fabs(x64[6 + 0] + 1.0) < 1e-15); /* (0 - 0.5)/0.5 */
    assert_true(fabs(x32[0] - (float)((1 / 255.0 - 0.5) / 0.5)) < 1e-7);

    /* Labels are optional. */
    nnopt_dataset_batch(&ds, order, 1, &norm, NNOPT_F64, x64, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_still_checks_whole_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_equals_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_gzip_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_implausible_dims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_claim_in_small_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_shuffle_uniform),
        cmocka_unit_test(test_batch),
    };
    return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
