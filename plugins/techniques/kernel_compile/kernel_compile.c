/* Chooses a run's kernels: the backend's precompiled ones (op by op), or
 * kernels generated for the run's exact graph and compiled when the run
 * starts (see docs/kernel-compile.md). Reports the mode, the compile time
 * (kept out of the training and inference times) and cache hits/misses. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnopt/nnopt.h"

static const nnopt_param_spec kernel_compile_params[] = {
    {"mode", NNOPT_PARAM_ENUM, "compiled",
     "precompiled = the backend's own kernels, op by op; compiled = kernels generated and "
     "compiled for this run's graph and shapes",
     "precompiled|compiled", 0, 0},
    {"compiler", NNOPT_PARAM_STRING, "cc", "C compiler for the generated kernels (CPU backends)",
     NULL, 0, 0},
    {"flags", NNOPT_PARAM_STRING, "-O3 -march=native -shared -fPIC -fopenmp",
     "compiler flags; the result must be a shared object", NULL, 0, 0},
    {"cache_dir", NNOPT_PARAM_STRING, "",
     "compiled kernel cache; empty = $XDG_CACHE_HOME/nnopt/kernels, else ~/.cache/nnopt/kernels",
     NULL, 0, 0},
};

typedef struct kernel_compile {
    const nnopt_host_api *host;
    int compiled;
    nnopt_program_options options;
} kernel_compile;

static nnopt_status create(const nnopt_host_api *host, const nnopt_config *cfg, void **out) {
    if (host->struct_size < offsetof(nnopt_host_api, write_file_atomic) + sizeof(void *)) {
        host->set_error("kernel_compile: the core is older than ABI 1.1");
        return NNOPT_STATUS_ABI_MISMATCH;
    }
    kernel_compile *k = calloc(1, sizeof *k);
    if (!k) return NNOPT_STATUS_OUT_OF_MEMORY;
    k->host = host;
    k->compiled = strcmp(host->config_string(cfg, "mode"), "compiled") == 0;
    /* The config outlives the run, so its strings can be borrowed. */
    k->options = (nnopt_program_options){sizeof k->options, host->config_string(cfg, "compiler"),
                                         host->config_string(cfg, "flags"),
                                         host->config_string(cfg, "cache_dir")};
    *out = k;
    return NNOPT_OK;
}

static void destroy(void *ctx) {
    free(ctx);
}

static nnopt_status before_train(void *ctx, nnopt_run *run) {
    kernel_compile *k = ctx;
    return k->host->run_set_kernels(run, k->compiled ? &k->options : NULL);
}

static void report(void *ctx, nnopt_run *run, nnopt_report_column_fn column, void *sink) {
    kernel_compile *k = ctx;
    const char *mode;
    double seconds;
    int hits, misses;
    int programs = k->host->run_kernel_stats(run, &mode, &seconds, &hits, &misses);
    char value[64];
    column(sink, "kernels", k->compiled && !programs ? "precompiled (fallback)" : mode);
    snprintf(value, sizeof value, "%.3f", seconds);
    column(sink, "compile_seconds", value);
    if (programs)
        snprintf(value, sizeof value, "%s (%d hit, %d miss)",
                 misses ? (hits ? "mixed" : "miss") : "hit", hits, misses);
    else
        snprintf(value, sizeof value, "-");
    column(sink, "kernel_cache", value);
}

static const nnopt_technique_vtable kernel_compile_vtable = {
    .struct_size = sizeof(nnopt_technique_vtable),
    .create = create,
    .destroy = destroy,
    .before_train = before_train,
    .report = report,
};

static const nnopt_plugin_desc kernel_compile_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_TECHNIQUE,
    .name = "kernel_compile",
    .version = "1.0.0",
    .description = "precompiled backend kernels vs kernels generated and compiled for the run's "
                   "graph (cached on disk)",
    .params = kernel_compile_params,
    .n_params = sizeof kernel_compile_params / sizeof kernel_compile_params[0],
    .vtable = &kernel_compile_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &kernel_compile_descriptor;
}
