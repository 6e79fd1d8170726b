#include "kc_program.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kc_cache.h"
#include "kc_codegen.h"

typedef int (*kc_fallback_fn)(void *ctx, int step);
typedef int (*kc_program_fn)(void *const *data, kc_fallback_fn fallback, void *ctx, char *shared,
                             char *scratch);

typedef struct kc_program {
    int n_tensors, n_steps;
    nnopt_program_step *steps; /* tensor indices of the fallback calls */
    kc_program_fn fn;
    void **data;            /* the bound tensors' data, per call */
    char *shared, *scratch; /* folded weights; per-thread tile scratch */
} kc_program;

/* What a fallback call needs: the call's ops and tensors. */
typedef struct kc_call {
    const kc_program *prog;
    kc_run_fn run;
    void *backend;
    const nnopt_op *ops;
    nnopt_tensor *const *tensors;
    nnopt_status status;
} kc_call;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void nnopt_kc_free(void *compiled) {
    kc_program *p = compiled;
    if (!p) return;
    free(p->steps);
    free(p->data);
    free(p->shared);
    free(p->scratch);
    free(p);
}

/* Sizes exported by the generated object, or 0 when missing. */
static size_t exported_size(void *handle, const char *name) {
    const size_t *v = dlsym(handle, name);
    return v ? *v : 0;
}

nnopt_status nnopt_kc_compile(const nnopt_host_api *host, const nnopt_program *prog,
                              const nnopt_program_options *options, int threads,
                              const unsigned char *leave, void **compiled,
                              nnopt_program_info *info) {
    double start = now_seconds();
    *compiled = NULL;
    kc_source src;
    if (nnopt_kc_generate(prog, threads, leave, &src) != 0) {
        host->set_error("out of memory generating kernels");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    kc_build build = {options && options->compiler ? options->compiler : NNOPT_KC_DEFAULT_COMPILER,
                      options && options->flags ? options->flags : NNOPT_KC_DEFAULT_FLAGS,
                      options ? options->cache_dir : NULL};
    void *handle = NULL;
    int hit = 0;
    nnopt_status st =
        nnopt_kc_load(host, src.text, &build, &handle, &hit, info->note, sizeof info->note);
    info->specialized_steps = src.specialized_steps;
    info->total_steps = prog->n_steps;
    nnopt_kc_source_free(&src);
    if (st != NNOPT_OK) return st;
    kc_program *p = calloc(1, sizeof *p);
    void *fn = dlsym(handle, "nnopt_kc_program");
    const int *object_threads = dlsym(handle, "nnopt_kc_threads");
    if (!p || !fn || !object_threads) {
        free(p);
        host->set_error("%s", p ? "the compiled kernels lack their entry point" : "out of memory");
        return p ? NNOPT_STATUS_INTERNAL : NNOPT_STATUS_OUT_OF_MEMORY;
    }
    memcpy(&p->fn, &fn, sizeof fn); /* object -> function pointer without a cast warning */
    p->n_tensors = prog->n_tensors;
    p->n_steps = prog->n_steps;
    p->steps = malloc((size_t)prog->n_steps * sizeof *p->steps + 1);
    p->data = calloc((size_t)prog->n_tensors + 1, sizeof *p->data);
    size_t shared = exported_size(handle, "nnopt_kc_shared_bytes");
    size_t scratch = exported_size(handle, "nnopt_kc_scratch_bytes");
    /* Zeroed once: lanes past a row's end read stale but finite scratch. */
    p->shared = aligned_alloc(64, shared + 64);
    p->scratch = aligned_alloc(64, scratch * (size_t)(*object_threads) + 64);
    if (!p->steps || !p->data || !p->shared || !p->scratch) {
        nnopt_kc_free(p);
        host->set_error("out of memory for %zu bytes of kernel scratch", scratch);
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    memset(p->scratch, 0, scratch * (size_t)(*object_threads) + 64);
    memset(p->shared, 0, shared + 64); /* packed weights start as those of all-zero ones */
    memcpy(p->steps, prog->steps, (size_t)prog->n_steps * sizeof *p->steps);
    info->cache_hit = hit;
    info->compile_seconds = now_seconds() - start;
    *compiled = p;
    return NNOPT_OK;
}

static int run_fallback(void *ctx, int step) {
    kc_call *c = ctx;
    const nnopt_program_step *s = &c->prog->steps[step];
    nnopt_tensor *in[NNOPT_PROGRAM_MAX_ARGS], *out[NNOPT_PROGRAM_MAX_ARGS];
    for (int k = 0; k < s->n_in; k++) in[k] = c->tensors[s->in[k]];
    for (int k = 0; k < s->n_out; k++) out[k] = c->tensors[s->out[k]];
    c->status = c->run(c->backend, &c->ops[step], in, s->n_in, out, s->n_out);
    return c->status != NNOPT_OK;
}

nnopt_status nnopt_kc_run(const nnopt_host_api *host, void *compiled, kc_run_fn run, void *backend,
                          const nnopt_op *ops, nnopt_tensor *const *tensors) {
    kc_program *p = compiled;
    if (!p || !ops || !tensors) {
        host->set_error("program_run without a compiled program, ops or tensors");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    for (int i = 0; i < p->n_tensors; i++) p->data[i] = tensors[i] ? tensors[i]->data : NULL;
    kc_call call = {p, run, backend, ops, tensors, NNOPT_OK};
    if (p->fn(p->data, run_fallback, &call, p->shared, p->scratch) != 0 && call.status == NNOPT_OK)
        call.status = NNOPT_STATUS_INTERNAL;
    return call.status;
}
