/* A one-run pipeline around the benchmark's network, enough for the
 * quantization technique's after_train (calibration reads training batches
 * and the run's batch size through it). */
#include "bench_int8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "plugin_loader.h"

static const nnopt_param_spec batch_spec[] = {
    {"batch", NNOPT_PARAM_INT, "128", "calibration batch", NULL, 1, 1 << 20},
};

typedef struct bytes_sink {
    int64_t before, after;
} bytes_sink;

static void bytes_column(void *sink, const char *name, const char *value) {
    bytes_sink *b = sink;
    if (strcmp(name, "model_bytes_f32") == 0) b->before = atoll(value);
    if (strcmp(name, "model_bytes_int8") == 0) b->after = atoll(value);
}

static nnopt_config *config_with(const nnopt_param_spec *specs, int n, const char *key,
                                 const char *value, nnopt_error *err) {
    nnopt_config *cfg = nnopt_config_create(specs, n, "nnopt_bench --int8");
    if (!cfg) return NULL;
    if (nnopt_config_set(cfg, key, value, "nnopt_bench", err) != NNOPT_OK ||
        nnopt_config_finish(cfg, "nnopt_bench", err) != NNOPT_OK) {
        nnopt_config_free(cfg);
        return NULL;
    }
    return cfg;
}

nnopt_status bench_quantize(nnopt_network *net, nnopt_backend *backend, int64_t batch,
                            int calibration_batches, uint64_t seed, int64_t bytes[2],
                            nnopt_error *err) {
    const nnopt_graph *g = net->graph;
    static nnopt_pipeline pipeline; /* large (runs[]): not on the stack */
    nnopt_data data;
    memset(&data, 0, sizeof data);
    nnopt_dataset *train = &data.train;
    *train = (nnopt_dataset){.n = batch * calibration_batches,
                             .c = g->in_c,
                             .h = g->in_h,
                             .w = g->in_w,
                             .num_classes = g->num_classes};
    const size_t pixels = (size_t)(train->n * train->c * train->h * train->w);
    train->pixels = malloc(pixels);
    train->labels = calloc((size_t)train->n, sizeof *train->labels);
    data.norm.scale = 1.0 / 255;
    for (int c = 0; c < 4; c++) data.norm.std[c] = 1;
    if (!train->pixels || !train->labels) {
        nnopt_dataset_free(train);
        return nnopt_error_set(err, NNOPT_STATUS_OUT_OF_MEMORY, "out of memory");
    }
    uint64_t state = seed;
    for (size_t i = 0; i < pixels; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        train->pixels[i] = (uint8_t)(state >> 56);
    }

    nnopt_plugin_search search;
    nnopt_plugin_search_init(&search, NULL);
    const nnopt_plugin *plugin = NULL;
    nnopt_status st =
        nnopt_plugin_load(&search, NNOPT_PLUGIN_TECHNIQUE, "quantization", &plugin, err);
    nnopt_plugin_search_free(&search);
    char value[32];
    snprintf(value, sizeof value, "%lld", (long long)batch);
    nnopt_run_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "bench");
    spec.training = config_with(batch_spec, 1, "batch", value, err);
    snprintf(value, sizeof value, "%d", calibration_batches);
    nnopt_config *cfg = st == NNOPT_OK
                            ? config_with(plugin->desc->params, (int)plugin->desc->n_params,
                                          "calibration_batches", value, err)
                            : NULL;
    if (st == NNOPT_OK && (!spec.training || !cfg))
        st = nnopt_error_set(err, NNOPT_STATUS_CONFIG, "nnopt_bench --int8: bad settings");
    pipeline.data = &data;
    nnopt_run run = {.pipeline = &pipeline, .spec = &spec, .net = net, .backend = backend};
    const nnopt_technique_vtable *vt = st == NNOPT_OK ? plugin->desc->vtable : NULL;
    void *ctx = NULL;
    if (st == NNOPT_OK) st = vt->create(nnopt_host_api_get(), cfg, &ctx);
    if (st == NNOPT_OK) st = vt->after_train(ctx, &run);
    if (st != NNOPT_OK && err->status == NNOPT_OK) {
        const char *why = nnopt_plugin_error_take();
        nnopt_error_set(err, st, "quantization: %s", why[0] ? why : nnopt_status_name(st));
    }
    bytes_sink sink = {0, 0};
    if (st == NNOPT_OK) vt->report(ctx, &run, bytes_column, &sink);
    bytes[0] = sink.before;
    bytes[1] = sink.after;
    if (ctx) vt->destroy(ctx);
    nnopt_config_free(cfg);
    nnopt_config_free(spec.training);
    nnopt_dataset_free(train);
    return st;
}
