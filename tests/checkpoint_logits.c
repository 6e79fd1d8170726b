/* The nnopt side of tools/torch_check_checkpoint.py: builds LeNet-5 (the
 * study's teacher: 28x28 inputs, 10 classes) on the cpu backend, saves its
 * checkpoint and writes an input batch and nnopt's logits for it.
 *
 *   checkpoint_logits OUT_DIR [f64|f32] [activation] [avg|max]
 *
 * writes OUT_DIR/lenet5.safetensors, input.bin (f64, [batch, 1, 28, 28]),
 * logits.bin (f64, [batch, 10]) and case.json (the settings and shapes),
 * all little-endian. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "executor.h"
#include "plugin_loader.h"

enum { BATCH = 8, CHANNELS = 1, SIDE = 28, CLASSES = 10 };

static int fail(const char *what, const nnopt_error *err) {
    fprintf(stderr, "checkpoint_logits: %s: %s\n", what, err->message);
    return 1;
}

static int write_doubles(const char *dir, const char *name, const double *v, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(v, sizeof *v, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "checkpoint_logits: cannot write %s\n", path);
    return ok;
}

/* Biases start at zero: give every parameter a distinct nonzero offset so a
 * bias loaded into the wrong place shows in the logits. */
static nnopt_status shift_parameters(nnopt_network *net, nnopt_error *err) {
    for (int i = 0; i < net->graph->n_nodes; i++) {
        nnopt_tensor *t = net->param[i];
        if (!t) continue;
        size_t n = (size_t)nnopt_tensor_numel(t), elem = nnopt_dtype_size(t->dtype);
        unsigned char *bytes = malloc(n * elem);
        if (!bytes) return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
        nnopt_status st = nnopt_backend_read(net->backend, t, bytes, n * elem, err);
        for (size_t k = 0; st == NNOPT_OK && k < n; k++) {
            double shift = 0.05 * sin(1.0 + (double)i * 7.0 + (double)k * 0.37);
            if (elem == 8) {
                double v;
                memcpy(&v, bytes + k * 8, 8);
                v += shift;
                memcpy(bytes + k * 8, &v, 8);
            } else {
                float v;
                memcpy(&v, bytes + k * 4, 4);
                v += (float)shift;
                memcpy(bytes + k * 4, &v, 4);
            }
        }
        if (st == NNOPT_OK) st = nnopt_backend_write(net->backend, t, bytes, n * elem, err);
        free(bytes);
        if (st != NNOPT_OK) return st;
    }
    return NNOPT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: %s OUT_DIR [f64|f32] [activation] [avg|max]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *dtype = argc > 2 ? argv[2] : "f64";
    const char *activation = argc > 3 ? argv[3] : "gelu", *pool = argc > 4 ? argv[4] : "avg";
    nnopt_error err = {0};

    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    const nnopt_plugin *model = NULL, *backend_plugin = NULL;
    if (nnopt_plugin_load(&search, NNOPT_PLUGIN_MODEL, "lenet5", &model, &err) != NNOPT_OK ||
        nnopt_plugin_load(&search, NNOPT_PLUGIN_BACKEND, "cpu", &backend_plugin, &err) != NNOPT_OK)
        return fail("loading plugins", &err);
    nnopt_plugin_search_free(&search);

    nnopt_config *cfg =
        nnopt_config_create(model->desc->params, (int)model->desc->n_params, "lenet5");
    if (nnopt_config_set(cfg, "dtype", dtype, "argv", &err) != NNOPT_OK ||
        nnopt_config_set(cfg, "activation", activation, "argv", &err) != NNOPT_OK ||
        nnopt_config_set(cfg, "pool", pool, "argv", &err) != NNOPT_OK ||
        nnopt_config_finish(cfg, "argv", &err) != NNOPT_OK)
        return fail("model settings", &err);
    nnopt_graph *g = nnopt_graph_create(CHANNELS, SIDE, SIDE, CLASSES);
    nnopt_node logits_node = -1;
    if (((const nnopt_model_vtable *)model->desc->vtable)
                ->build(nnopt_host_api_get(), cfg, g, &logits_node) != NNOPT_OK ||
        nnopt_graph_finish(g, logits_node, &err) != NNOPT_OK) {
        fprintf(stderr, "checkpoint_logits: building lenet5: %s %s %s\n", err.message,
                g->err.message, nnopt_plugin_error_take());
        return 1;
    }
    nnopt_config_free(cfg);
    nnopt_config *bcfg = nnopt_config_create(backend_plugin->desc->params,
                                             (int)backend_plugin->desc->n_params, "cpu");
    nnopt_backend *backend = NULL;
    nnopt_network *net = NULL;
    if (nnopt_config_finish(bcfg, "argv", &err) != NNOPT_OK ||
        nnopt_backend_open(backend_plugin, bcfg, &backend, &err) != NNOPT_OK)
        return fail("opening the cpu backend", &err);
    nnopt_config_free(bcfg);
    if (nnopt_network_create(g, backend, 42, &net, &err) != NNOPT_OK ||
        shift_parameters(net, &err) != NNOPT_OK)
        return fail("creating the network", &err);

    char path[4200];
    snprintf(path, sizeof path, "%s/lenet5.safetensors", dir);
    if (nnopt_checkpoint_save(net, path, "{\"model\":\"lenet5\"}", &err) != NNOPT_OK)
        return fail("saving", &err);

    /* Inputs in [0, 1) from a fixed LCG, as f64 on disk and in the graph's dtype for the run. */
    enum { PIXELS = BATCH * CHANNELS * SIDE * SIDE };
    static double input[PIXELS], logits[BATCH * CLASSES];
    static float input_f32[PIXELS];
    unsigned state = 2024;
    for (int i = 0; i < PIXELS; i++) {
        state = state * 1664525u + 1013904223u;
        input[i] = (double)(state >> 8) / (double)(1u << 24);
        input_f32[i] = (float)input[i];
    }
    int f64 = strcmp(dtype, "f64") == 0;
    nnopt_exec *ex = NULL;
    if (nnopt_exec_create(net, BATCH, 0, &ex, &err) != NNOPT_OK ||
        nnopt_exec_forward(ex, f64 ? (const void *)input : (const void *)input_f32, &err) !=
            NNOPT_OK ||
        nnopt_exec_read_logits(ex, logits, &err) != NNOPT_OK)
        return fail("forward pass", &err);
    nnopt_exec_free(ex);
    nnopt_network_free(net);
    nnopt_backend_close(backend);

    if (!write_doubles(dir, "input.bin", input, PIXELS) ||
        !write_doubles(dir, "logits.bin", logits, BATCH * CLASSES))
        return 1;
    snprintf(path, sizeof path, "%s/case.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "checkpoint_logits: cannot write %s\n", path);
        return 1;
    }
    fprintf(f,
            "{\"checkpoint\": \"lenet5.safetensors\", \"dtype\": \"%s\", \"activation\": \"%s\", "
            "\"pool\": \"%s\", \"input_shape\": [%d, %d, %d, %d], \"classes\": %d}\n",
            dtype, activation, pool, BATCH, CHANNELS, SIDE, SIDE, CLASSES);
    return fclose(f) == 0 ? 0 : 1;
}
