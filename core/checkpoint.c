/* Safetensors checkpoints (docs/checkpoints.md): an 8-byte little-endian
 * header length, a JSON header padded with spaces to a multiple of 8 bytes,
 * then the tensors' raw little-endian bytes, back to back. Loading treats
 * the file as hostile until every offset, size and shape has been checked. */
#include "checkpoint.h"

#include "float_values.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#ifndef NNOPT_VERSION
#define NNOPT_VERSION "unknown"
#endif

#define METADATA_KEY "__metadata__"
/* The most dimensions a tensor in a file may have (safetensors sets no limit;
 * nnopt's own tensors have at most NNOPT_MAX_DIMS). */
#define MAX_FILE_DIMS 8
/* JSON numbers are doubles: integers above 2^53 are not exact. */
#define MAX_JSON_INTEGER 9007199254740992.0

typedef struct dtype_info {
    const char *name;
    size_t size;
} dtype_info;

/* The safetensors dtypes of whole-byte size. Only F32 and F64 load into a
 * network; the others are known so that a valid file is reported as "wrong
 * dtype" rather than "corrupt". */
static const dtype_info known_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},
};

static const dtype_info *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof known_dtypes / sizeof known_dtypes[0]; i++)
        if (strcmp(known_dtypes[i].name, name) == 0) return &known_dtypes[i];
    return NULL;
}

/* The safetensors name of a network dtype, or NULL if checkpoints cannot hold it. */
static const char *safetensors_dtype(nnopt_dtype dtype) {
    switch (dtype) {
    case NNOPT_F32:
        return "F32";
    case NNOPT_F64:
        return "F64";
    default:
        return NULL;
    }
}

static int network_dtype_of(const dtype_info *d, nnopt_dtype *out) {
    if (strcmp(d->name, "F32") == 0)
        *out = NNOPT_F32;
    else if (strcmp(d->name, "F64") == 0)
        *out = NNOPT_F64;
    else
        return 0;
    return 1;
}

/* The file format is little-endian whatever the host is. */
static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static void swap_elements(unsigned char *bytes, size_t count, size_t elem_size) {
    for (size_t i = 0; i < count; i++) {
        unsigned char *e = bytes + i * elem_size;
        for (size_t a = 0, b = elem_size - 1; a < b; a++, b--) {
            unsigned char t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
    }
}

static void format_shape(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* ---- Saving ---- */

/* Adds item to a JSON object or array, remembering any allocation failure
 * (cJSON reports them only through NULL items and false returns). */
static void add_to(cJSON *parent, const char *key, cJSON *item, int *ok) {
    int added = item && (key ? cJSON_AddItemToObject(parent, key, item)
                             : cJSON_AddItemToArray(parent, item));
    if (!added) {
        cJSON_Delete(item);
        *ok = 0;
    }
}

static cJSON *json_integers(const int64_t *values, int n, int *ok) {
    cJSON *array = cJSON_CreateArray();
    if (!array) *ok = 0;
    for (int i = 0; array && i < n; i++)
        add_to(array, NULL, cJSON_CreateNumber((double)values[i]), ok);
    return array;
}

/* "__metadata__": format and version, then the caller's string pairs. */
static nnopt_status build_metadata(const char *path, const char *user_json, cJSON **out,
                                   nnopt_error *err) {
    int ok = 1;
    cJSON *meta = cJSON_CreateObject();
    if (!meta) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    add_to(meta, "format", cJSON_CreateString("nnopt"), &ok);
    add_to(meta, "nnopt_version", cJSON_CreateString(NNOPT_VERSION), &ok);
    cJSON *user = user_json ? cJSON_Parse(user_json) : NULL;
    nnopt_status st = NNOPT_OK;
    if (user_json && !cJSON_IsObject(user))
        st =
            nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                            "%s: checkpoint metadata must be a JSON object of strings, got: %.200s",
                            path, user_json);
    for (const cJSON *item = user ? user->child : NULL; st == NNOPT_OK && item; item = item->next) {
        if (!cJSON_IsString(item)) {
            st = nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                                 "%s: checkpoint metadata value of \"%s\" is not a string "
                                 "(safetensors metadata holds strings only)",
                                 path, item->string);
        } else if (strcmp(item->string, "format") == 0) {
            st = nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                                 "%s: checkpoint metadata key \"format\" is reserved", path);
        } else {
            cJSON *copy = cJSON_CreateString(item->valuestring);
            if (cJSON_GetObjectItemCaseSensitive(meta, item->string)) {
                if (!copy || !cJSON_ReplaceItemInObjectCaseSensitive(meta, item->string, copy)) {
                    cJSON_Delete(copy);
                    ok = 0;
                }
            } else {
                add_to(meta, item->string, copy, &ok);
            }
        }
    }
    cJSON_Delete(user);
    if (st == NNOPT_OK && !ok)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    if (st != NNOPT_OK) {
        cJSON_Delete(meta);
        return st;
    }
    *out = meta;
    return NNOPT_OK;
}

nnopt_status nnopt_checkpoint_save(nnopt_network *net, const char *path, const char *metadata_json,
                                   nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    size_t data_size = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_tensor *t = net->param[i];
        if (!t) continue;
        if (!safetensors_dtype(t->dtype))
            return nnopt_error_set(err, NNOPT_STATUS_UNSUPPORTED,
                                   "%s: tensor '%s' has dtype %s; checkpoints hold f32 and f64",
                                   path, g->nodes[i].name, nnopt_dtype_name(t->dtype));
        if (strcmp(g->nodes[i].name, METADATA_KEY) == 0)
            return nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                                   "%s: a tensor named '%s' cannot be stored in safetensors", path,
                                   METADATA_KEY);
        data_size += nnopt_tensor_nbytes(t);
    }

    cJSON *meta = NULL;
    nnopt_status st = build_metadata(path, metadata_json, &meta, err);
    if (st != NNOPT_OK) return st;
    cJSON *root = cJSON_CreateObject();
    unsigned char *data = malloc(data_size ? data_size : 1);
    int ok = root != NULL;
    if (root)
        add_to(root, METADATA_KEY, meta, &ok);
    else
        cJSON_Delete(meta);
    if (!data || !ok) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");

    /* Tensors in graph order, back to back: one network has one dtype, so
     * every tensor starts aligned to its element size. */
    size_t offset = 0;
    for (int i = 0; st == NNOPT_OK && i < g->n_nodes; i++) {
        const nnopt_tensor *t = net->param[i];
        if (!t) continue;
        const char *name = g->nodes[i].name;
        if (cJSON_GetObjectItemCaseSensitive(root, name)) {
            st = nnopt_error_set(err, NNOPT_STATUS_INVALID_ARGUMENT,
                                 "%s: two tensors of the network are named '%s'", path, name);
            break;
        }
        size_t nbytes = nnopt_tensor_nbytes(t);
        int64_t offsets[2] = {(int64_t)offset, (int64_t)(offset + nbytes)};
        cJSON *entry = cJSON_CreateObject();
        if (!entry)
            ok = 0;
        else {
            add_to(entry, "dtype", cJSON_CreateString(safetensors_dtype(t->dtype)), &ok);
            add_to(entry, "shape", json_integers(t->shape, t->ndim, &ok), &ok);
            add_to(entry, "data_offsets", json_integers(offsets, 2, &ok), &ok);
        }
        add_to(root, name, entry, &ok);
        if (!ok) {
            st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
            break;
        }
        st = nnopt_backend_read(net->backend, t, data + offset, nbytes, err);
        if (st != NNOPT_OK) break;
        if (!host_is_little_endian())
            swap_elements(data + offset, (size_t)nnopt_tensor_numel(t), nnopt_dtype_size(t->dtype));
        offset += nbytes;
    }

    char *json = NULL, *header = NULL;
    size_t header_len = 0;
    if (st == NNOPT_OK) {
        json = cJSON_PrintUnformatted(root);
        if (json) {
            /* Spaces up to a multiple of 8, so the data starts 8-byte aligned. */
            size_t json_len = strlen(json);
            header_len = (json_len + 7) / 8 * 8;
            header = malloc(header_len);
            if (header) {
                memcpy(header, json, json_len);
                memset(header + json_len, ' ', header_len - json_len);
            }
        }
        if (!header) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (st == NNOPT_OK) {
        unsigned char length_le[8];
        for (int b = 0; b < 8; b++) length_le[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
        const void *parts[3] = {length_le, header, data};
        size_t sizes[3] = {8, header_len, data_size};
        st = nnopt_write_atomic_parts(path, parts, sizes, 3, err);
    }
    free(header);
    cJSON_free(json);
    cJSON_Delete(root);
    free(data);
    return st;
}

/* ---- Loading ---- */

typedef struct file_entry {
    const char *name; /* owned by the parsed header */
    const dtype_info *dtype;
    int ndim;
    int64_t shape[MAX_FILE_DIMS];
    uint64_t begin, end;
    int matched; /* a network tensor takes it */
} file_entry;

/* A non-negative integer that a double represents exactly. */
static int json_index(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= MAX_JSON_INTEGER && v == floor(v))) return 0;
    *out = (uint64_t)v;
    return 1;
}

static nnopt_status parse_entry(const char *path, const cJSON *item, uint64_t data_size,
                                file_entry *e, nnopt_error *err) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: header entry '%s' is not an object",
                               path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s' lacks a string \"dtype\", an array \"shape\" or "
                               "an array \"data_offsets\"",
                               path, name);
    e->dtype = find_dtype(dtype->valuestring);
    if (!e->dtype)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s' has unknown dtype \"%.40s\"", path, name,
                               dtype->valuestring);

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > MAX_FILE_DIMS)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s' has %d dimensions (at most %d supported)", path,
                               name, ndim, MAX_FILE_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
        uint64_t extent;
        if (!json_index(dim, &extent))
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: tensor '%s': shape entry %d is not a non-negative integer",
                                   path, name, d);
        if (extent != 0 && numel > UINT64_MAX / extent)
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: tensor '%s': the shape's element count overflows", path,
                                   name);
        numel *= extent;
        e->shape[d] = (int64_t)extent;
    }
    if (numel > UINT64_MAX / e->dtype->size)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s': the shape's byte size overflows", path, name);
    uint64_t nbytes = numel * e->dtype->size;

    if (cJSON_GetArraySize(offsets) != 2 || !json_index(offsets->child, &e->begin) ||
        !json_index(offsets->child->next, &e->end) || e->begin > e->end)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s': data_offsets must be [begin, end] with "
                               "0 <= begin <= end",
                               path, name);
    if (e->end > data_size)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                               "] reach past the data section (%" PRIu64 " bytes; truncated file?)",
                               path, name, e->begin, e->end, data_size);
    if (e->end - e->begin != nbytes) {
        char shape_text[160];
        format_shape(shape_text, sizeof shape_text, e->shape, e->ndim);
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: tensor '%s': data_offsets span %" PRIu64
                               " bytes but dtype %s and shape %s need %" PRIu64,
                               path, name, e->end - e->begin, e->dtype->name, shape_text, nbytes);
    }
    return NNOPT_OK;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp(((const file_entry *)a)->name, ((const file_entry *)b)->name);
}

static int compare_by_offsets(const void *a, const void *b) {
    const file_entry *x = *(const file_entry *const *)a, *y = *(const file_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static nnopt_status check_metadata(const char *path, const cJSON *meta, nnopt_error *err) {
    if (!cJSON_IsObject(meta))
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: \"%s\" is not an object", path,
                               METADATA_KEY);
    for (const cJSON *item = meta->child; item; item = item->next)
        if (!cJSON_IsString(item))
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: \"%s\" value of \"%s\" is not a string", path, METADATA_KEY,
                                   item->string);
    return NNOPT_OK;
}

/* Safetensors requires the data section to be indexed exactly: sorted by
 * offset, each tensor starts where the previous one ended, and the last ends
 * at the end of the file. This rejects overlaps, holes and trailing bytes. */
static nnopt_status check_layout(const char *path, file_entry *entries, size_t n,
                                 uint64_t data_size, nnopt_error *err) {
    file_entry **by_offset = malloc((n ? n : 1) * sizeof *by_offset);
    if (!by_offset) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) by_offset[i] = &entries[i];
    qsort(by_offset, n, sizeof *by_offset, compare_by_offsets);
    nnopt_status st = NNOPT_OK;
    uint64_t expected = 0;
    for (size_t i = 0; i < n && st == NNOPT_OK; i++) {
        const file_entry *e = by_offset[i];
        if (e->begin < expected)
            st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                 "%s: tensors '%s' and '%s' overlap (bytes %" PRIu64 " to %" PRIu64
                                 " of the data section)",
                                 path, by_offset[i - 1]->name, e->name, e->begin, expected);
        else if (e->begin > expected)
            st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                 "%s: bytes %" PRIu64 " to %" PRIu64
                                 " of the data section belong to no tensor (a gap before '%s')",
                                 path, expected, e->begin, e->name);
        expected = e->end;
    }
    if (st == NNOPT_OK && expected != data_size)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: the data section has %" PRIu64
                             " bytes but the tensors index %" PRIu64 " (trailing bytes)",
                             path, data_size, expected);
    free(by_offset);
    return st;
}

/* Parses and validates the header; entries come back sorted by name. */
static nnopt_status parse_header(const char *path, const char *header, size_t header_len,
                                 uint64_t data_size, cJSON **root_out, file_entry **entries_out,
                                 size_t *n_out, nnopt_error *err) {
    if (header_len < 2 || header[0] != '{')
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: not a safetensors file (the header does not start with '{')",
                               path);
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, header_len, &parse_end, 0);
    if (!root) {
        size_t at = parse_end && parse_end >= header ? (size_t)(parse_end - header) : 0;
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: the header is not valid JSON (near byte %zu of %zu)", path, at,
                               header_len);
    }
    /* Only padding may follow the JSON object. */
    for (const char *p = parse_end; p < header + header_len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: unexpected bytes after the header's JSON (at byte %zu)",
                                   path, (size_t)(p - header));
        }
    }
    nnopt_status st = NNOPT_OK;
    if (!cJSON_IsObject(root))
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: the header is not a JSON object", path);
    size_t n = 0;
    int n_metadata = 0;
    for (const cJSON *item = root->child; item; item = item->next)
        n += strcmp(item->string ? item->string : "", METADATA_KEY) != 0;
    file_entry *entries = st == NNOPT_OK ? calloc(n ? n : 1, sizeof *entries) : NULL;
    if (st == NNOPT_OK && !entries)
        st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    size_t k = 0;
    for (const cJSON *item = root->child; st == NNOPT_OK && item; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) == 0) {
            n_metadata++;
            st = check_metadata(path, item, err);
        } else {
            st = parse_entry(path, item, data_size, &entries[k++], err);
        }
    }
    if (st == NNOPT_OK && n_metadata > 1)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT, "%s: \"%s\" appears twice in the header",
                             path, METADATA_KEY);
    if (st == NNOPT_OK) {
        qsort(entries, n, sizeof *entries, compare_by_name);
        for (size_t i = 1; i < n && st == NNOPT_OK; i++)
            if (strcmp(entries[i - 1].name, entries[i].name) == 0)
                st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                     "%s: tensor '%s' appears twice in the header", path,
                                     entries[i].name);
    }
    if (st == NNOPT_OK) st = check_layout(path, entries, n, data_size, err);
    if (st != NNOPT_OK) {
        free(entries);
        cJSON_Delete(root);
        return st;
    }
    *root_out = root;
    *entries_out = entries;
    *n_out = n;
    return NNOPT_OK;
}

/* Checks every network tensor has an entry of the same shape and a loadable
 * dtype, and that no entry is left over. */
static nnopt_status match_network(const char *path, const nnopt_network *net, file_entry *entries,
                                  size_t n, file_entry **match, nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    for (int i = 0; i < g->n_nodes; i++) {
        const nnopt_tensor *t = net->param[i];
        if (!t) continue;
        file_entry key = {.name = g->nodes[i].name};
        file_entry *e = bsearch(&key, entries, n, sizeof *entries, compare_by_name);
        if (!e)
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: the checkpoint has no tensor '%s' (a different model?)",
                                   path, key.name);
        int same_shape = e->ndim == t->ndim;
        for (int d = 0; same_shape && d < t->ndim; d++) same_shape = e->shape[d] == t->shape[d];
        if (!same_shape) {
            char found[160], expected[160];
            format_shape(found, sizeof found, e->shape, e->ndim);
            format_shape(expected, sizeof expected, t->shape, t->ndim);
            return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                                   "%s: tensor '%s' has shape %s in the checkpoint, the network "
                                   "expects %s",
                                   path, key.name, found, expected);
        }
        nnopt_dtype file_dtype;
        if (!network_dtype_of(e->dtype, &file_dtype))
            return nnopt_error_set(err, NNOPT_STATUS_UNSUPPORTED,
                                   "%s: tensor '%s' has dtype %s; only F32 and F64 load", path,
                                   key.name, e->dtype->name);
        e->matched = 1;
        match[i] = e;
    }
    size_t n_extra = 0;
    char names[400] = "";
    for (size_t i = 0; i < n; i++) {
        if (entries[i].matched) continue;
        size_t used = strlen(names);
        if (n_extra < 5 && used < sizeof names)
            snprintf(names + used, sizeof names - used, "%s'%s'", n_extra ? ", " : "",
                     entries[i].name);
        n_extra++;
    }
    if (n_extra)
        return nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                               "%s: the checkpoint has %zu tensor(s) the network lacks (%s%s; a "
                               "different model?)",
                               path, n_extra, names, n_extra > 5 ? ", ..." : "");
    return NNOPT_OK;
}

/* Converts one entry's little-endian bytes to the tensor's dtype and uploads it. */
static nnopt_status upload_entry(nnopt_network *net, nnopt_tensor *t, const file_entry *e,
                                 const unsigned char *data, nnopt_error *err) {
    size_t count = (size_t)nnopt_tensor_numel(t), file_size = e->dtype->size;
    size_t host_size = nnopt_dtype_size(t->dtype);
    unsigned char *raw = malloc(count * file_size + 1);
    unsigned char *converted = host_size == file_size ? raw : malloc(count * host_size + 1);
    if (!raw || !converted) {
        free(raw);
        if (converted != raw) free(converted);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(raw, data + e->begin, count * file_size);
    if (!host_is_little_endian()) swap_elements(raw, count, file_size);
    for (size_t i = 0; file_size != host_size && i < count; i++) {
        double value;
        if (file_size == 8) {
            memcpy(&value, raw + i * 8, 8);
        } else {
            float narrow;
            memcpy(&narrow, raw + i * 4, 4);
            value = narrow;
        }
        /* Any network dtype: f32, f64, or bf16 (rounded to nearest even). */
        nnopt_values_from_double(&value, converted + i * host_size, t->dtype, 1);
    }
    nnopt_status st = nnopt_backend_write(net->backend, t, converted, count * host_size, err);
    if (converted != raw) free(converted);
    free(raw);
    return st;
}

static nnopt_status read_exactly(FILE *f, void *buf, size_t size, const char *path,
                                 nnopt_error *err) {
    if (size && fread(buf, 1, size, f) != size)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot read checkpoint: %s", path,
                               ferror(f) ? strerror(errno) : "the file shrank while being read");
    return NNOPT_OK;
}

nnopt_status nnopt_checkpoint_load(nnopt_network *net, const char *path, nnopt_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot open checkpoint: %s", path,
                               strerror(errno));
    struct stat info;
    nnopt_status st = NNOPT_OK;
    if (fstat(fileno(f), &info) != 0)
        st = nnopt_error_set(err, NNOPT_STATUS_IO, "%s: cannot read checkpoint: %s", path,
                             strerror(errno));
    else if (!S_ISREG(info.st_mode))
        st = nnopt_error_set(err, NNOPT_STATUS_IO, "%s: not a regular file", path);
    uint64_t file_size = st == NNOPT_OK ? (uint64_t)info.st_size : 0;
    if (st == NNOPT_OK && file_size < 8)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: not a checkpoint: %" PRIu64
                             " bytes, shorter than the 8-byte header length",
                             path, file_size);
    unsigned char length_le[8];
    if (st == NNOPT_OK) st = read_exactly(f, length_le, 8, path, err);
    uint64_t header_len = 0;
    for (int b = 0; st == NNOPT_OK && b < 8; b++) header_len |= (uint64_t)length_le[b] << (8 * b);
    if (st == NNOPT_OK && header_len > file_size - 8)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: header length %" PRIu64 " exceeds the %" PRIu64
                             " bytes that follow it (truncated or not a safetensors file)",
                             path, header_len, file_size - 8);
    else if (st == NNOPT_OK && header_len > NNOPT_CHECKPOINT_MAX_HEADER)
        st = nnopt_error_set(err, NNOPT_STATUS_FORMAT,
                             "%s: header length %" PRIu64 " exceeds the %u-byte limit", path,
                             header_len, NNOPT_CHECKPOINT_MAX_HEADER);

    char *header = NULL;
    unsigned char *data = NULL;
    cJSON *root = NULL;
    file_entry *entries = NULL, **match = NULL;
    size_t n_entries = 0;
    uint64_t data_size = file_size - 8 - header_len;
    if (st == NNOPT_OK) {
        header = malloc((size_t)header_len + 1);
        if (!header) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (st == NNOPT_OK) st = read_exactly(f, header, (size_t)header_len, path, err);
    if (st == NNOPT_OK) {
        header[header_len] = '\0';
        st = parse_header(path, header, (size_t)header_len, data_size, &root, &entries, &n_entries,
                          err);
    }
    if (st == NNOPT_OK) {
        match = calloc((size_t)net->graph->n_nodes + 1, sizeof *match);
        if (!match) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (st == NNOPT_OK) st = match_network(path, net, entries, n_entries, match, err);
    /* The whole data section is read before any tensor changes, so a failed
     * read leaves the network as it was. Its size is the file's, not the
     * header's claim. */
    if (st == NNOPT_OK) {
        data = malloc((size_t)data_size + 1);
        if (!data) st = nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    if (st == NNOPT_OK) st = read_exactly(f, data, (size_t)data_size, path, err);
    for (int i = 0; st == NNOPT_OK && i < net->graph->n_nodes; i++)
        if (net->param[i]) st = upload_entry(net, net->param[i], match[i], data, err);
    free(data);
    free(match);
    free(entries);
    cJSON_Delete(root);
    free(header);
    fclose(f);
    return st;
}
