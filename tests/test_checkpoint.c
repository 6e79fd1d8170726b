/* Safetensors checkpoints (core/checkpoint.c): bit-exact round trips, f64 <->
 * f32 loads, hostile files rejected with the file named and the network left
 * untouched, and a writer killed with SIGKILL at random moments never leaving
 * a checkpoint that loads wrongly. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"
#include "config.h"
#include "idx_fixture.h"
#include "plugin_loader.h"

static char tmpdir[256];

typedef struct test_net {
    nnopt_backend *backend;
    nnopt_network *net;
} test_net;

/* Model `name` with "key=value" settings on the cpu backend, initialised from seed. */
static test_net make_net(const char *name, const char *const *settings, int c, int hw,
                         uint64_t seed) {
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    const nnopt_plugin *model = NULL, *backend = NULL;
    nnopt_error err = {0};
    if (nnopt_plugin_load(&s, NNOPT_PLUGIN_MODEL, name, &model, &err) != NNOPT_OK ||
        nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, "cpu", &backend, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = nnopt_config_create(model->desc->params, (int)model->desc->n_params, name);
    for (int i = 0; settings && settings[i]; i++) {
        char key[64];
        const char *eq = strchr(settings[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - settings[i]), settings[i]);
        if (nnopt_config_set(cfg, key, eq + 1, "test", &err) != NNOPT_OK)
            fail_msg("%s", err.message);
    }
    assert_int_equal(nnopt_config_finish(cfg, "test", &err), NNOPT_OK);
    nnopt_graph *g = nnopt_graph_create(c, hw, hw, 10);
    nnopt_node logits = -1;
    if (((const nnopt_model_vtable *)model->desc->vtable)
                ->build(nnopt_host_api_get(), cfg, g, &logits) != NNOPT_OK ||
        nnopt_graph_finish(g, logits, &err) != NNOPT_OK)
        fail_msg("%s: %s %s", name, err.message, g->err.message);
    nnopt_config_free(cfg);
    nnopt_config *bcfg =
        nnopt_config_create(backend->desc->params, (int)backend->desc->n_params, "cpu");
    assert_int_equal(nnopt_config_finish(bcfg, "test", &err), NNOPT_OK);
    test_net t = {0};
    assert_int_equal(nnopt_backend_open(backend, bcfg, &t.backend, &err), NNOPT_OK);
    nnopt_config_free(bcfg);
    if (nnopt_network_create(g, t.backend, seed, &t.net, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    return t;
}

static void free_net(test_net *t) {
    nnopt_network_free(t->net);
    nnopt_backend_close(t->backend);
}

/* A tiny LeNet-5 on 12x12 inputs: 8 tensors, 1140 bytes as f32. */
static test_net tiny_lenet(const char *dtype, uint64_t seed) {
    char dtype_setting[32];
    snprintf(dtype_setting, sizeof dtype_setting, "dtype=%s", dtype);
    return make_net("lenet5", (const char *[]){"channels=2,3", "dense=5", dtype_setting, NULL}, 1,
                    12, seed);
}

/* All parameters and buffers as their raw bytes, concatenated in graph order. */
static unsigned char *snapshot(const test_net *t, size_t *size) {
    const nnopt_graph *g = t->net->graph;
    size_t total = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (t->net->param[i]) total += nnopt_tensor_nbytes(t->net->param[i]);
    unsigned char *bytes = malloc(total + 1);
    size_t at = 0;
    nnopt_error err = {0};
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_tensor *p = t->net->param[i];
        if (!p) continue;
        assert_int_equal(
            nnopt_backend_read(t->backend, p, bytes + at, nnopt_tensor_nbytes(p), &err), NNOPT_OK);
        at += nnopt_tensor_nbytes(p);
    }
    *size = total;
    return bytes;
}

/* All parameters and buffers as doubles, in graph order. */
static double *values(const test_net *t, size_t *count) {
    size_t size;
    unsigned char *bytes = snapshot(t, &size);
    size_t elem = nnopt_dtype_size(t->net->graph->dtype), n = size / elem;
    double *v = malloc((n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        if (elem == 8) {
            memcpy(&v[i], bytes + i * 8, 8);
        } else {
            float f;
            memcpy(&f, bytes + i * 4, 4);
            v[i] = f;
        }
    }
    free(bytes);
    *count = n;
    return v;
}

/* Moves every parameter and buffer away from its value (x -> 2x + 1). */
static void perturb(test_net *t) {
    const nnopt_graph *g = t->net->graph;
    nnopt_error err = {0};
    for (int i = 0; i < g->n_nodes; i++) {
        nnopt_tensor *p = t->net->param[i];
        if (!p) continue;
        size_t nbytes = nnopt_tensor_nbytes(p), n = (size_t)nnopt_tensor_numel(p);
        unsigned char *b = malloc(nbytes);
        assert_int_equal(nnopt_backend_read(t->backend, p, b, nbytes, &err), NNOPT_OK);
        for (size_t k = 0; k < n; k++) {
            if (p->dtype == NNOPT_F64) {
                double v;
                memcpy(&v, b + k * 8, 8);
                v = 2 * v + 1;
                memcpy(b + k * 8, &v, 8);
            } else {
                float v;
                memcpy(&v, b + k * 4, 4);
                v = 2 * v + 1;
                memcpy(b + k * 4, &v, 4);
            }
        }
        assert_int_equal(nnopt_backend_write(t->backend, p, b, nbytes, &err), NNOPT_OK);
        free(b);
    }
}

static void path_in_tmp(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *size = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- Round trips ---- */

static void round_trip(test_net *t, const char *file) {
    char path[512];
    path_in_tmp(path, sizeof path, file);
    nnopt_error err = {0};
    size_t size_before, size_after;
    unsigned char *before = snapshot(t, &size_before);
    if (nnopt_checkpoint_save(t->net, path, "{\"model\":\"test\"}", &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    perturb(t);
    unsigned char *perturbed = snapshot(t, &size_after);
    assert_true(memcmp(before, perturbed, size_before) != 0);
    if (nnopt_checkpoint_load(t->net, path, &err) != NNOPT_OK) fail_msg("%s", err.message);
    unsigned char *after = snapshot(t, &size_after);
    assert_int_equal(size_before, size_after);
    assert_memory_equal(before, after, size_before);

    /* The layout the spec asks for: header length, space-padded JSON, data. */
    size_t file_size;
    unsigned char *file_bytes = read_file(path, &file_size);
    uint64_t header_len = 0;
    for (int b = 0; b < 8; b++) header_len |= (uint64_t)file_bytes[b] << (8 * b);
    assert_int_equal(header_len % 8, 0);
    assert_int_equal(file_size, 8 + header_len + size_before);
    assert_int_equal(file_bytes[8], '{');
    assert_memory_equal(file_bytes + 8 + header_len, before, size_before); /* little-endian host */
    assert_non_null(strstr((char *)file_bytes + 8, "\"__metadata__\":{\"format\":\"nnopt\""));
    assert_non_null(strstr((char *)file_bytes + 8, "\"model\":\"test\""));

    /* No temporary file is left behind. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_false(file_exists(tmp));
    free(file_bytes);
    free(before);
    free(perturbed);
    free(after);
}

static void test_round_trip_f32_and_f64(void **state) {
    (void)state;
    test_net tiny = tiny_lenet("f32", 3);
    round_trip(&tiny, "tiny_f32.safetensors");
    free_net(&tiny);
    test_net teacher = make_net("lenet5", NULL, 1, 28, 5); /* the study's teacher, f64 */
    round_trip(&teacher, "teacher_f64.safetensors");
    free_net(&teacher);
}

/* Batchnorm running statistics (buffers) travel with the parameters. */
static void test_round_trip_resnet_buffers(void **state) {
    (void)state;
    test_net resnet = make_net("resnet", (const char *[]){"depth=8", "width=4", NULL}, 3, 8, 11);
    int buffers = 0;
    for (int i = 0; i < resnet.net->graph->n_nodes; i++)
        buffers += resnet.net->graph->nodes[i].kind == NNOPT_NODE_BUFFER;
    assert_true(buffers > 0);
    round_trip(&resnet, "resnet.safetensors");
    char path[512];
    path_in_tmp(path, sizeof path, "resnet.safetensors");
    size_t size;
    char *text = (char *)read_file(path, &size);
    assert_non_null(strstr(text + 8, "running_mean\":{\"dtype\":\"F32\""));
    free(text);
    free_net(&resnet);
}

/* Saving the same network twice gives the same bytes. */
static void test_save_is_deterministic(void **state) {
    (void)state;
    test_net t = tiny_lenet("f64", 9);
    char a[512], b[512];
    path_in_tmp(a, sizeof a, "det_a.safetensors");
    path_in_tmp(b, sizeof b, "det_b.safetensors");
    nnopt_error err = {0};
    assert_int_equal(nnopt_checkpoint_save(t.net, a, NULL, &err), NNOPT_OK);
    assert_int_equal(nnopt_checkpoint_save(t.net, b, NULL, &err), NNOPT_OK);
    size_t size_a, size_b;
    unsigned char *bytes_a = read_file(a, &size_a), *bytes_b = read_file(b, &size_b);
    assert_int_equal(size_a, size_b);
    assert_memory_equal(bytes_a, bytes_b, size_a);
    free(bytes_a);
    free(bytes_b);
    free_net(&t);
}

/* An f64 teacher's checkpoint loads into an f32 model (values rounded) and back. */
static void test_dtype_conversion(void **state) {
    (void)state;
    char path64[512], path32[512];
    path_in_tmp(path64, sizeof path64, "conv_f64.safetensors");
    path_in_tmp(path32, sizeof path32, "conv_f32.safetensors");
    nnopt_error err = {0};
    test_net wide = tiny_lenet("f64", 21), narrow = tiny_lenet("f32", 22);
    assert_int_equal(nnopt_checkpoint_save(wide.net, path64, NULL, &err), NNOPT_OK);
    if (nnopt_checkpoint_load(narrow.net, path64, &err) != NNOPT_OK) fail_msg("%s", err.message);
    size_t n_wide, n_narrow;
    double *v_wide = values(&wide, &n_wide), *v_narrow = values(&narrow, &n_narrow);
    assert_int_equal(n_wide, n_narrow);
    for (size_t i = 0; i < n_wide; i++) assert_true(v_narrow[i] == (double)(float)v_wide[i]);

    /* f32 -> f64 is exact. */
    assert_int_equal(nnopt_checkpoint_save(narrow.net, path32, NULL, &err), NNOPT_OK);
    perturb(&wide);
    if (nnopt_checkpoint_load(wide.net, path32, &err) != NNOPT_OK) fail_msg("%s", err.message);
    free(v_wide);
    v_wide = values(&wide, &n_wide);
    for (size_t i = 0; i < n_wide; i++) assert_true(v_wide[i] == v_narrow[i]);
    free(v_wide);
    free(v_narrow);
    free_net(&wide);
    free_net(&narrow);
}

static void expect_save_error(test_net *t, const char *path, const char *metadata,
                              const char *fragment) {
    nnopt_error err = {0};
    assert_int_not_equal(nnopt_checkpoint_save(t->net, path, metadata, &err), NNOPT_OK);
    if (!strstr(err.message, path) || !strstr(err.message, fragment))
        fail_msg("save error \"%s\" should name %s and say \"%s\"", err.message, path, fragment);
}

static void test_save_errors(void **state) {
    (void)state;
    test_net t = tiny_lenet("f32", 1);
    char path[512];
    path_in_tmp(path, sizeof path, "meta.safetensors");
    expect_save_error(&t, path, "[1]", "JSON object");
    expect_save_error(&t, path, "{\"epochs\":3}", "not a string");
    expect_save_error(&t, path, "{\"format\":\"other\"}", "reserved");
    assert_false(file_exists(path));
    path_in_tmp(path, sizeof path, "no/such/folder/x.safetensors");
    expect_save_error(&t, path, NULL, "cannot write");
    free_net(&t);
}

/* ---- Hostile files ---- */

/* The tiny f32 network's checkpoint, split into header text and data. */
typedef struct checkpoint_parts {
    char *header; /* JSON with its padding, NUL-terminated */
    unsigned char *data;
    size_t data_size;
} checkpoint_parts;

static checkpoint_parts split_checkpoint(const char *path) {
    size_t size;
    unsigned char *bytes = read_file(path, &size);
    uint64_t header_len = 0;
    for (int b = 0; b < 8; b++) header_len |= (uint64_t)bytes[b] << (8 * b);
    checkpoint_parts parts;
    parts.header = malloc(header_len + 1);
    memcpy(parts.header, bytes + 8, header_len);
    parts.header[header_len] = '\0';
    parts.data_size = size - 8 - header_len;
    parts.data = malloc(parts.data_size + 64);
    memcpy(parts.data, bytes + 8 + header_len, parts.data_size);
    memset(parts.data + parts.data_size, 0, 64);
    free(bytes);
    return parts;
}

/* Writes header (unpadded) and data_size bytes of data as a checkpoint file. */
static void write_checkpoint(const char *path, const char *header, const unsigned char *data,
                             size_t data_size) {
    size_t header_len = strlen(header);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char length_le[8];
    for (int b = 0; b < 8; b++) length_le[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
    assert_int_equal(fwrite(length_le, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, header_len, f), header_len);
    if (data_size) assert_int_equal(fwrite(data, 1, data_size, f), data_size);
    assert_int_equal(fclose(f), 0);
}

/* header with the first occurrence of `find` replaced (it must occur). */
static char *replace_once(const char *header, const char *find, const char *replacement) {
    const char *at = strstr(header, find);
    if (!at) fail_msg("\"%s\" not in header %s", find, header);
    size_t prefix = (size_t)(at - header);
    char *out = malloc(strlen(header) + strlen(replacement) + 1);
    memcpy(out, header, prefix);
    strcpy(out + prefix, replacement);
    strcat(out, at + strlen(find));
    return out;
}

/* Loading path fails with an error naming it and saying fragment; the network is unchanged. */
static void expect_rejected(test_net *t, const char *path, const char *fragment) {
    size_t size_before, size_after;
    unsigned char *before = snapshot(t, &size_before);
    nnopt_error err = {0};
    nnopt_status st = nnopt_checkpoint_load(t->net, path, &err);
    if (st == NNOPT_OK) fail_msg("%s loaded but should be rejected (%s)", path, fragment);
    if (!strstr(err.message, path) || (fragment && !strstr(err.message, fragment)))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err.message, path,
                 fragment ? fragment : "");
    if (getenv("NNOPT_TEST_VERBOSE")) printf("rejected: %s\n", err.message);
    unsigned char *after = snapshot(t, &size_after);
    assert_memory_equal(before, after, size_before);
    free(before);
    free(after);
}

/* A mutated header (and optionally longer data) must be rejected. */
static void expect_mutation_rejected(test_net *t, const checkpoint_parts *good, const char *find,
                                     const char *replacement, size_t extra_data,
                                     const char *fragment) {
    char path[512];
    path_in_tmp(path, sizeof path, "hostile.safetensors");
    char *header = replace_once(good->header, find, replacement);
    write_checkpoint(path, header, good->data, good->data_size + extra_data);
    expect_rejected(t, path, fragment);
    free(header);
}

static void test_hostile_headers(void **state) {
    (void)state;
    test_net t = tiny_lenet("f32", 4);
    char good_path[512], path[512];
    path_in_tmp(good_path, sizeof good_path, "good.safetensors");
    path_in_tmp(path, sizeof path, "hostile.safetensors");
    nnopt_error err = {0};
    assert_int_equal(nnopt_checkpoint_save(t.net, good_path, NULL, &err), NNOPT_OK);
    perturb(&t); /* a rejected load must leave these values, not the file's */
    checkpoint_parts good = split_checkpoint(good_path);
    /* Tensors in graph order, f32: conv1.weight [0,200] conv1.bias [200,208]
     * conv2.weight [208,808] conv2.bias [808,820] fc1.weight [820,880]
     * fc1.bias [880,900] fc2.weight [900,1100] fc2.bias [1100,1140]. */
    assert_int_equal(good.data_size, 1140);
    assert_non_null(strstr(good.header, "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[10],"
                                        "\"data_offsets\":[1100,1140]}"));

    /* Sanity: the unmodified parts load. */
    write_checkpoint(path, good.header, good.data, good.data_size);
    assert_int_equal(nnopt_checkpoint_load(t.net, path, &err), NNOPT_OK);
    perturb(&t);

    /* Missing file, empty file, shorter than the length field. */
    char missing[512];
    path_in_tmp(missing, sizeof missing, "missing.safetensors");
    expect_rejected(&t, missing, "cannot open");
    write_bytes(path, "", 0);
    expect_rejected(&t, path, "shorter than the 8-byte");
    write_bytes(path, "\x10\0\0", 3);
    expect_rejected(&t, path, "shorter than the 8-byte");

    /* Every truncation of a valid file is rejected. */
    size_t full_size;
    unsigned char *full = read_file(good_path, &full_size);
    for (size_t cut = 0; cut < full_size; cut++) {
        write_bytes(path, full, cut);
        expect_rejected(&t, path, NULL);
    }
    /* Trailing bytes: the data section must be indexed exactly. */
    unsigned char *longer = calloc(full_size + 8, 1);
    memcpy(longer, full, full_size);
    write_bytes(path, longer, full_size + 4);
    expect_rejected(&t, path, "trailing bytes");
    free(longer);

    /* Header length beyond the file, and huge. */
    unsigned char *bad_length = malloc(full_size);
    memcpy(bad_length, full, full_size);
    uint64_t lengths[] = {full_size - 8 + 1, UINT64_MAX, (uint64_t)1 << 62};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        for (int b = 0; b < 8; b++) bad_length[b] = (unsigned char)(lengths[i] >> (8 * b));
        write_bytes(path, bad_length, full_size);
        expect_rejected(&t, path, "exceeds");
    }
    free(bad_length);
    /* A header claimed over 100 MB in a (sparse) file that long. */
    {
        uint64_t huge = NNOPT_CHECKPOINT_MAX_HEADER + 8;
        unsigned char length_le[8];
        for (int b = 0; b < 8; b++) length_le[b] = (unsigned char)(huge >> (8 * b));
        write_bytes(path, length_le, 8);
        assert_int_equal(truncate(path, (off_t)(huge + 64)), 0);
        expect_rejected(&t, path, "limit");
    }
    free(full);

    /* Not JSON, not an object, garbage after the object, nesting bombs. */
    write_checkpoint(path, "{\"a\":", good.data, good.data_size);
    expect_rejected(&t, path, "not valid JSON");
    write_checkpoint(path, "[1,2,3] ", good.data, good.data_size);
    expect_rejected(&t, path, "does not start with '{'");
    char *garbage = malloc(strlen(good.header) + 8);
    snprintf(garbage, strlen(good.header) + 8, "%sxyz", good.header);
    write_checkpoint(path, garbage, good.data, good.data_size);
    expect_rejected(&t, path, "unexpected bytes");
    free(garbage);
    char *nested = malloc(200010);
    nested[0] = '{';
    memcpy(nested + 1, "\"a\":", 4);
    memset(nested + 5, '[', 200000);
    nested[200005] = '\0';
    write_checkpoint(path, nested, good.data, good.data_size);
    expect_rejected(&t, path, "not valid JSON");
    free(nested);
    write_checkpoint(path, "{\"conv1.weight\":[]}", good.data, good.data_size);
    expect_rejected(&t, path, "not an object");

    /* Entries missing fields or with bad values. */
    expect_mutation_rejected(&t, &good, "\"dtype\":\"F32\",", "", 0, "lacks");
    expect_mutation_rejected(&t, &good, ",\"shape\":[2,1,5,5]", "", 0, "lacks");
    expect_mutation_rejected(&t, &good, ",\"data_offsets\":[0,200]", "", 0, "lacks");
    expect_mutation_rejected(&t, &good, "\"dtype\":\"F32\"", "\"dtype\":\"Q32\"", 0,
                             "unknown dtype");
    expect_mutation_rejected(&t, &good, "\"dtype\":\"F32\"", "\"dtype\":32", 0, "lacks");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[2,1,5,-5]", 0, "shape entry 3");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[2,1,5,5.5]", 0, "shape entry 3");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[2,1,5,1e300]", 0, "shape entry 3");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[2,1,5,\"5\"]", 0, "shape entry 3");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[1,2,3,4,5,6,7,8,9]", 0, "dimensions");
    /* Huge sizes: element counts and byte sizes that overflow 64 bits. */
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[4294967296,4294967296,4294967296]", 0,
                             "overflows");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[4294967296,1073741824]", 0,
                             "byte size overflows");
    expect_mutation_rejected(&t, &good, "[2,1,5,5]", "[4294967296,1024]", 0, "need");
    expect_mutation_rejected(&t, &good, "[0,200]", "[0,9007199254740992]", 0, "past the data");
    expect_mutation_rejected(&t, &good, "[0,200]", "[0,1e30]", 0, "data_offsets must be");
    expect_mutation_rejected(&t, &good, "[0,200]", "[200,0]", 0, "data_offsets must be");
    expect_mutation_rejected(&t, &good, "[0,200]", "[0,200,400]", 0, "data_offsets must be");
    expect_mutation_rejected(&t, &good, "[0,200]", "[0]", 0, "data_offsets must be");
    expect_mutation_rejected(&t, &good, "[0,200]", "[-8,192]", 0, "data_offsets must be");

    /* Offsets: overlap, gap, past the end, size mismatch. */
    expect_mutation_rejected(&t, &good, "[200,208]", "[196,204]", 0, "overlap");
    expect_mutation_rejected(&t, &good, "[1100,1140]", "[0,40]", 0, "overlap");
    expect_mutation_rejected(&t, &good, "[1100,1140]", "[1104,1144]", 4, "gap before 'fc2.bias'");
    expect_mutation_rejected(&t, &good, "[1100,1140]", "[1140,1180]", 0, "past the data section");
    expect_mutation_rejected(&t, &good, "[1100,1140]", "[1100,1136]", 0, "need 40");
    expect_mutation_rejected(&t, &good, "[1100,1140]", "[1100,1144]", 4, "need 40");

    /* Names: duplicate, missing, extra; shape and dtype against the network. */
    expect_mutation_rejected(&t, &good, "\"fc2.bias\":", "\"fc2.weight\":", 0, "appears twice");
    expect_mutation_rejected(&t, &good, "\"fc2.bias\":", "\"fc9.bias\":", 0,
                             "no tensor 'fc2.bias'");
    expect_mutation_rejected(&t, &good, "\"fc2.bias\":",
                             "\"extra.scale\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":["
                             "1140,1144]},\"fc2.bias\":",
                             4, "lacks ('extra.scale'");
    expect_mutation_rejected(
        &t, &good, "\"shape\":[2]", "\"shape\":[1,2]", 0,
        "'conv1.bias' has shape [1, 2] in the checkpoint, the network expects [2]");
    expect_mutation_rejected(&t, &good, "\"shape\":[2]", "\"shape\":[]", 0, "need");
    expect_mutation_rejected(&t, &good, "\"conv1.bias\":{\"dtype\":\"F32\"",
                             "\"conv1.bias\":{\"dtype\":\"I32\"", 0, "only F32 and F64");

    /* Metadata must be an object of strings, and appear once. */
    expect_mutation_rejected(&t, &good, "\"format\":\"nnopt\"", "\"format\":1", 0, "not a string");
    expect_mutation_rejected(&t, &good, "{\"__metadata__\":{", "{\"__metadata__\":[{", 0, NULL);
    expect_mutation_rejected(&t, &good, "\"fc2.bias\":", "\"__metadata__\":{},\"fc2.bias\":", 0,
                             "appears twice");

    /* A checkpoint of another architecture. */
    test_net other = make_net(
        "lenet5", (const char *[]){"channels=2,3", "dense=7", "dtype=f32", NULL}, 1, 12, 4);
    assert_int_equal(nnopt_checkpoint_save(other.net, path, NULL, &err), NNOPT_OK);
    expect_rejected(&t, path,
                    "'fc1.weight' has shape [7, 3] in the checkpoint, the network expects [5, 3]");
    free_net(&other);
    other = make_net("lenet5", (const char *[]){"channels=2,3", "dense=5,4", "dtype=f32", NULL}, 1,
                     12, 4);
    assert_int_equal(nnopt_checkpoint_save(other.net, path, NULL, &err), NNOPT_OK);
    expect_rejected(&t, path, NULL);
    free_net(&other);

    free(good.header);
    free(good.data);
    free_net(&t);
}

/* ---- kill -9 during a write ---- */

/* A checkpoint loads correctly if its values equal one of the versions written. */
static int loads_as_one_of(test_net *probe, const char *path, unsigned char *const *versions,
                           int n_versions, size_t size, char *why, size_t why_size) {
    nnopt_error err = {0};
    if (nnopt_checkpoint_load(probe->net, path, &err) != NNOPT_OK) {
        snprintf(why, why_size, "%s", err.message);
        return 0;
    }
    size_t got_size;
    unsigned char *got = snapshot(probe, &got_size);
    int found = 0;
    for (int v = 0; v < n_versions && !found; v++)
        found = got_size == size && memcmp(got, versions[v], size) == 0;
    free(got);
    if (!found) snprintf(why, why_size, "%s loaded values of no version written", path);
    return found;
}

static void test_kill_during_write(void **state) {
    (void)state;
    /* ~7 MB as f64, so a write takes long enough to be interrupted. */
    const char *const big[] = {"channels=32,64", "dense=512", NULL};
    test_net a = make_net("lenet5", big, 1, 28, 101), b = make_net("lenet5", big, 1, 28, 202);
    test_net probe = make_net("lenet5", big, 1, 28, 303);
    size_t size, size_b;
    unsigned char *versions[2] = {snapshot(&a, &size), snapshot(&b, &size_b)};
    assert_int_equal(size, size_b);
    assert_true(size > 6u * 1000 * 1000);
    char path[512], why[1100];
    path_in_tmp(path, sizeof path, "killed.safetensors");

    unsigned seed = 12345;
    int rounds = 0, mid_write = 0, absent = 0;
    for (; rounds < 400 && (rounds < 40 || mid_write < 5); rounds++) {
        /* Early rounds start without a file (it may not exist yet when killed). */
        int fresh = rounds < 8;
        if (fresh) unlink(path);
        nnopt_error err = {0};
        if (!fresh && !file_exists(path))
            assert_int_equal(nnopt_checkpoint_save(a.net, path, NULL, &err), NNOPT_OK);
        int existed_before = file_exists(path);
        fflush(NULL);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            /* Saves version A and B in turn until killed. */
            for (unsigned long k = 0;; k++) {
                nnopt_error child_err = {0};
                if (nnopt_checkpoint_save(k % 2 ? b.net : a.net, path, NULL, &child_err) !=
                    NNOPT_OK) {
                    fprintf(stderr, "child: %s\n", child_err.message);
                    _exit(3);
                }
            }
        }
        seed = seed * 1103515245u + 12345u;
        long delay_us = (long)(fresh ? (seed >> 8) % 3000 : (seed >> 8) % 60000);
        struct timespec delay = {delay_us / 1000000, delay_us % 1000000 * 1000};
        nanosleep(&delay, NULL);
        assert_int_equal(kill(child, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(child, &status, 0), child);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %d: the writer ended by itself (status %d) instead of being killed",
                     rounds, status);

        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)child);
        if (file_exists(tmp)) {
            mid_write++;
            unlink(tmp); /* what a restart's cleanup would do; PATH itself is never touched */
        }
        if (!file_exists(path)) {
            if (existed_before)
                fail_msg("round %d: a previously complete checkpoint vanished", rounds);
            absent++;
            continue;
        }
        if (!loads_as_one_of(&probe, path, versions, 2, size, why, sizeof why))
            fail_msg("round %d (killed after %ld us): %s", rounds, delay_us, why);
    }
    printf("kill -9: %d rounds, %d killed mid-write (temp file left), %d before the first "
           "checkpoint existed; every checkpoint present loaded as a complete version\n",
           rounds, mid_write, absent);
    assert_true(mid_write >= 1);

    free(versions[0]);
    free(versions[1]);
    free_net(&a);
    free_net(&b);
    free_net(&probe);
}

static int setup(void **state) {
    (void)state;
    return fixture_tmpdir(tmpdir, sizeof tmpdir, "checkpoint");
}

static int teardown(void **state) {
    (void)state;
    fixture_rmdir(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_f32_and_f64),
        cmocka_unit_test(test_round_trip_resnet_buffers),
        cmocka_unit_test(test_save_is_deterministic),
        cmocka_unit_test(test_dtype_conversion),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_kill_during_write),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
