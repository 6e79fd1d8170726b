#include "test_backend.h"

#include "nnopt/bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "plugin_loader.h"

/* The nnopt_backend behind each opened test_backend (at most a few at once). */
typedef struct opened {
    test_backend *key;
    nnopt_backend *backend;
    nnopt_config *cfg;
} opened;
static opened open_list[8];

nnopt_status test_config_apply_settings(nnopt_config *cfg, const char *const *settings,
                                        nnopt_error *err) {
    nnopt_status st = NNOPT_OK;
    for (int i = 0; settings && settings[i] && st == NNOPT_OK; i++) {
        char key[128];
        const char *eq = strchr(settings[i], '=');
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - settings[i]) : 0, settings[i]);
        st = nnopt_config_set(cfg, key, eq ? eq + 1 : "", "test", err);
    }
    if (st == NNOPT_OK) st = nnopt_config_finish(cfg, "test", err);
    return st;
}

int test_backend_open(const char *name, const char *const *settings, test_backend *out) {
    memset(out, 0, sizeof *out);
    nnopt_plugin_search s;
    nnopt_plugin_search_init(&s, NULL);
    nnopt_error err = {0};
    const nnopt_plugin *p = NULL;
    nnopt_status st = nnopt_plugin_load(&s, NNOPT_PLUGIN_BACKEND, name, &p, &err);
    nnopt_plugin_search_free(&s);
    nnopt_config *cfg = NULL;
    if (st == NNOPT_OK) {
        cfg = nnopt_config_create(p->desc->params, (int)p->desc->n_params, name);
        st = test_config_apply_settings(cfg, settings, &err);
    }
    nnopt_backend *b = NULL;
    if (st == NNOPT_OK) st = nnopt_backend_open(p, cfg, &b, &err);
    int slot = 0;
    while (st == NNOPT_OK && slot < 8 && open_list[slot].key) slot++;
    if (st != NNOPT_OK || slot == 8) {
        fprintf(stderr, "test_backend_open(%s): %s\n", name, err.message);
        nnopt_backend_close(b);
        nnopt_config_free(cfg);
        return -1;
    }
    open_list[slot] = (opened){out, b, cfg};
    out->vt = b->vt;
    out->ctx = b->ctx;
    out->host = nnopt_host_api_get();
    out->name = p->desc->name;
    return 0;
}

/* Closes the instance tb holds now: a test may open a second instance into
 * the same variable and put the first back after closing the second. */
void test_backend_close(test_backend *tb) {
    for (int i = 0; i < 8; i++) {
        if (open_list[i].key != tb || open_list[i].backend->ctx != tb->ctx) continue;
        nnopt_backend_close(open_list[i].backend);
        nnopt_config_free(open_list[i].cfg);
        open_list[i] = (opened){0};
    }
    memset(tb, 0, sizeof *tb);
}

nnopt_tensor *test_tensor_new(test_backend *b, nnopt_dtype dtype, int ndim, const int64_t *shape,
                              const double *values) {
    nnopt_tensor *t = calloc(1, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->owns_data = 1;
    if (b->vt->tensor_alloc(b->ctx, t) != NNOPT_OK || b->vt->tensor_zero(b->ctx, t) != NNOPT_OK) {
        fprintf(stderr, "test_tensor_new: allocation failed on %s\n", b->name);
        free(t);
        return NULL;
    }
    if (values) test_tensor_write(b, t, values);
    return t;
}

void test_tensor_write(test_backend *b, nnopt_tensor *t, const double *values) {
    int64_t n = nnopt_tensor_numel(t);
    size_t es = nnopt_dtype_size(t->dtype);
    unsigned char *buf = malloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case NNOPT_F32:
            ((float *)buf)[i] = (float)values[i];
            break;
        case NNOPT_F64:
            ((double *)buf)[i] = values[i];
            break;
        case NNOPT_I32:
            ((int32_t *)buf)[i] = (int32_t)values[i];
            break;
        case NNOPT_BF16:
            ((uint16_t *)buf)[i] = nnopt_bf16_from_f64(values[i]);
            break;
        case NNOPT_I8:
            ((int8_t *)buf)[i] = (int8_t)values[i];
            break;
        default:
            break;
        }
    }
    b->vt->tensor_write(b->ctx, t, 0, buf, (size_t)n * es);
    free(buf);
}

void test_tensor_read(test_backend *b, const nnopt_tensor *t, double *values) {
    int64_t n = nnopt_tensor_numel(t);
    size_t es = nnopt_dtype_size(t->dtype);
    unsigned char *buf = malloc((size_t)n * es);
    b->vt->tensor_read(b->ctx, t, 0, buf, (size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case NNOPT_F32:
            values[i] = ((float *)buf)[i];
            break;
        case NNOPT_F64:
            values[i] = ((double *)buf)[i];
            break;
        case NNOPT_I32:
            values[i] = ((int32_t *)buf)[i];
            break;
        case NNOPT_BF16:
            values[i] = nnopt_bf16_to_f32(((uint16_t *)buf)[i]);
            break;
        case NNOPT_I8:
            values[i] = ((int8_t *)buf)[i];
            break;
        default:
            values[i] = 0;
            break;
        }
    }
    free(buf);
}

void test_tensor_free(test_backend *b, nnopt_tensor *t) {
    if (!t) return;
    b->vt->tensor_free(b->ctx, t);
    free(t);
}

nnopt_status test_run(test_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out) {
    nnopt_status st = b->vt->run(b->ctx, op, in, n_in, out, n_out);
    if (st != NNOPT_OK)
        fprintf(stderr, "%s: op %s failed: %s\n", b->name, nnopt_op_kind_name(op->kind),
                nnopt_plugin_error_take());
    return st;
}
