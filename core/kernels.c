#include "kernels.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "plugin_loader.h"

void nnopt_kernels_set(nnopt_kernels *k, const nnopt_program_options *options) {
    memset(k, 0, sizeof *k);
    if (!options) return;
    k->compiled = 1;
    snprintf(k->compiler, sizeof k->compiler, "%s", options->compiler ? options->compiler : "");
    snprintf(k->flags, sizeof k->flags, "%s", options->flags ? options->flags : "");
    snprintf(k->cache_dir, sizeof k->cache_dir, "%s", options->cache_dir ? options->cache_dir : "");
}

static int backend_has_programs(const nnopt_backend *b) {
    /* Backends built against ABI 1.0 end their table at describe. */
    return b->vt->struct_size >= NNOPT_END_OF(nnopt_backend_vtable, program_free) &&
           b->vt->program_compile && b->vt->program_run;
}

int nnopt_kernels_wanted(const nnopt_kernels *k) {
    return k && k->compiled && !k->unavailable;
}

/* From now on the network runs the backend's own kernels; says so once. */
static void fall_back(nnopt_kernels *k, const nnopt_backend *b, const char *why) {
    k->unavailable = 1;
    snprintf(k->unavailable_reason, sizeof k->unavailable_reason, "%s", why);
    nnopt_log(NNOPT_LOG_WARN,
              "%s backend: compiled kernels unavailable (%s); running its precompiled kernels",
              b->plugin->desc->name, why);
}

/* FNV-1a over the program's steps and tensor table: two programs with the
 * same fingerprint compile to the same kernels. Both arrays are zeroed
 * before they are filled, so padding bytes hash the same. */
static uint64_t fingerprint(const nnopt_program *prog) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *parts[2] = {(const void *)prog->steps, (const void *)prog->tensors};
    size_t sizes[2] = {(size_t)prog->n_steps * sizeof *prog->steps,
                       (size_t)prog->n_tensors * sizeof *prog->tensors};
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < sizes[p]; i++) h = (h ^ parts[p][i]) * 0x100000001b3ULL;
    return h;
}

nnopt_status nnopt_kernels_get(nnopt_kernels *k, nnopt_backend *b, int64_t batch, int training,
                               const nnopt_program *prog, void **compiled, nnopt_error *err) {
    *compiled = NULL;
    uint64_t print = fingerprint(prog);
    for (int i = 0; i < k->n_programs; i++)
        if (k->programs[i].fingerprint == print) {
            *compiled = k->programs[i].compiled;
            return NNOPT_OK;
        }
    if (k->n_programs == NNOPT_KERNELS_MAX_PROGRAMS) return NNOPT_OK; /* op by op beyond that */
    if (!backend_has_programs(b)) {
        fall_back(k, b, "the backend does not implement program_compile");
        return NNOPT_OK;
    }
    nnopt_program_options options = {sizeof options, k->compiler[0] ? k->compiler : NULL,
                                     k->flags[0] ? k->flags : NULL, k->cache_dir};
    nnopt_program_info info;
    memset(&info, 0, sizeof info);
    nnopt_plugin_error_take();
    nnopt_status st = b->vt->program_compile(b->ctx, prog, &options, compiled, &info);
    if (st == NNOPT_STATUS_UNSUPPORTED) {
        /* No compiler (say): the run goes on with the backend's own kernels. */
        const char *why = nnopt_plugin_error_take();
        fall_back(k, b, why[0] ? why : "the backend cannot compile this program");
        *compiled = NULL;
        return NNOPT_OK;
    }
    if (st != NNOPT_OK) {
        const char *why = nnopt_plugin_error_take();
        return nnopt_error_set(err, st, "%s backend: cannot compile kernels: %s",
                               b->plugin->desc->name, why[0] ? why : nnopt_status_name(st));
    }
    k->compile_seconds += info.compile_seconds;
    if (info.cache_hit)
        k->cache_hits++;
    else
        k->cache_misses++;
    nnopt_log(NNOPT_LOG_INFO,
              "%s backend: kernels for batch %lld (%s): %d of %d steps specialised, %s in "
              "%.3f s%s%s",
              b->plugin->desc->name, (long long)batch, training ? "training" : "inference",
              info.specialized_steps, info.total_steps, info.cache_hit ? "cache hit" : "compiled",
              info.compile_seconds, info.note[0] ? "; " : "", info.note);
    k->programs[k->n_programs++] = (nnopt_compiled_program){print, *compiled};
    return NNOPT_OK;
}

void nnopt_kernels_release(nnopt_kernels *k, nnopt_backend *b) {
    if (!k) return;
    for (int i = 0; i < k->n_programs; i++)
        if (b->vt->program_free) b->vt->program_free(b->ctx, k->programs[i].compiled);
    k->n_programs = 0;
}

void nnopt_kernels_describe_mode(const nnopt_kernels *k, char *buf, size_t size) {
    if (!k || !k->compiled)
        snprintf(buf, size, "precompiled");
    else if (k->unavailable)
        snprintf(buf, size, "precompiled (fallback: %.200s)", k->unavailable_reason);
    else
        snprintf(buf, size, "compiled");
}
