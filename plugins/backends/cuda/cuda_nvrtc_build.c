/* NVRTC compilation of generated kernels, through the kernel cache of
 * plugins/backends/common/kc_cache.c (the same folder and integrity checks
 * as the CPU backends' shared objects). A real architecture (sm_XX) gives a
 * cubin, loaded without any JIT; a virtual one (compute_XX) gives PTX. */
#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_nvrtc.h"
#include "kc_cache.h"

void cuda_nv_image_free(cuda_nv_image *image) {
    if (!image) return;
    free(image->data);
    image->data = NULL;
    image->size = 0;
}

/* Compiles on a cache miss; the image comes back in *image. */
static nnopt_status nvrtc_build(const nnopt_host_api *host, const char *source,
                                const char *const *options, int n_options, cuda_nv_image *image) {
    nvrtcProgram program;
    nvrtcResult rc = nvrtcCreateProgram(&program, source, "nnopt_compiled.cu", 0, NULL, NULL);
    if (rc != NVRTC_SUCCESS) {
        host->set_error("nvrtcCreateProgram: %s", nvrtcGetErrorString(rc));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    rc = nvrtcCompileProgram(program, n_options, options);
    if (rc != NVRTC_SUCCESS) {
        size_t log_size = 0;
        char log[1024] = "";
        if (nvrtcGetProgramLogSize(program, &log_size) == NVRTC_SUCCESS && log_size > 1) {
            char *full = malloc(log_size);
            if (full && nvrtcGetProgramLog(program, full) == NVRTC_SUCCESS)
                snprintf(log, sizeof log, "%s", full);
            free(full);
        }
        for (char *c = log; *c; c++)
            if (*c == '\n') *c = ' '; /* one error line */
        host->set_error("NVRTC compilation (%s) failed: %s: %.600s", options[0],
                        nvrtcGetErrorString(rc), log);
        nvrtcDestroyProgram(&program);
        return NNOPT_STATUS_UNSUPPORTED;
    }
    size_t size = 0;
    image->is_cubin = nvrtcGetCUBINSize(program, &size) == NVRTC_SUCCESS && size > 0;
    if (!image->is_cubin && (nvrtcGetPTXSize(program, &size) != NVRTC_SUCCESS || size == 0)) {
        host->set_error("NVRTC produced neither a cubin nor PTX");
        nvrtcDestroyProgram(&program);
        return NNOPT_STATUS_INTERNAL;
    }
    image->data = malloc(size);
    if (!image->data) {
        nvrtcDestroyProgram(&program);
        host->set_error("out of memory for a %zu-byte kernel image", size);
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    rc = image->is_cubin ? nvrtcGetCUBIN(program, image->data) : nvrtcGetPTX(program, image->data);
    nvrtcDestroyProgram(&program);
    if (rc != NVRTC_SUCCESS) {
        cuda_nv_image_free(image);
        host->set_error("reading NVRTC's output: %s", nvrtcGetErrorString(rc));
        return NNOPT_STATUS_INTERNAL;
    }
    image->size = size;
    return NNOPT_OK;
}

nnopt_status cuda_nv_compile(const nnopt_host_api *host, const char *source, const char *arch,
                             const char *cache_dir, cuda_nv_image *image) {
    memset(image, 0, sizeof *image);
    int major = 0, minor = 0;
    if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) {
        host->set_error("NVRTC does not report its version");
        return NNOPT_STATUS_UNSUPPORTED;
    }
    char arch_option[64], version[32];
    snprintf(arch_option, sizeof arch_option, "--gpu-architecture=%s", arch);
    snprintf(version, sizeof version, "nvrtc %d.%d", major, minor);
    /* Exact IEEE division and square root, and no fused multiply-add
     * contraction, keep the results close to the reference backend's. */
    const char *options[] = {arch_option, "--std=c++17", "--fmad=false", "--prec-div=true",
                             "--prec-sqrt=true"};
    const int n_options = (int)(sizeof options / sizeof options[0]);
    char joined[512] = "";
    for (int i = 0; i < n_options; i++) {
        strncat(joined, options[i], sizeof joined - strlen(joined) - 2);
        strncat(joined, " ", sizeof joined - strlen(joined) - 1);
    }
    const char *parts[3] = {source, version, joined};
    char key[33];
    nnopt_kc_cache_key(parts, 3, key);
    /* The entry's kind is in its name: a cubin is binary, PTX is text. */
    const char *ext = strncmp(arch, "sm_", 3) == 0 ? ".cubin" : ".ptx";
    char why[512];
    int got = nnopt_kc_blob_read(cache_dir, key, ext, &image->data, &image->size, why, sizeof why);
    if (got == 1) {
        image->is_cubin = ext[1] == 'c';
        image->cache_hit = 1;
        snprintf(image->note, sizeof image->note, "%s%s (%s)", key, ext, arch);
        return NNOPT_OK;
    }
    if (got < 0) {
        host->log(NNOPT_LOG_WARN, "kernel cache entry %s: rebuilding it", why);
        snprintf(image->note, sizeof image->note, "rebuilt corrupted entry %s%s", key, ext);
    }
    /* The source beside its image, for whoever inspects the cache (as the
     * CPU backends keep their .c). */
    char dir[4096], source_path[4200];
    if (cache_dir && cache_dir[0])
        snprintf(dir, sizeof dir, "%s", cache_dir);
    else
        nnopt_kc_default_cache_dir(dir, sizeof dir);
    snprintf(source_path, sizeof source_path, "%s/%s.cu", dir, key);
    if (host->write_file_atomic(source_path, source, strlen(source)) != NNOPT_OK)
        host->log(NNOPT_LOG_WARN, "cannot write %s", source_path);
    nnopt_status st = nvrtc_build(host, source, options, n_options, image);
    if (st != NNOPT_OK) return st;
    /* The cache is an optimisation: a folder that cannot be written costs
     * the next run a compilation, not this one its kernels. */
    if (nnopt_kc_blob_write(host, cache_dir, key, image->is_cubin ? ".cubin" : ".ptx", image->data,
                            image->size) != NNOPT_OK)
        host->log(NNOPT_LOG_WARN, "cannot write kernel cache entry %s%s", key, ext);
    if (!image->note[0]) snprintf(image->note, sizeof image->note, "%s%s (%s)", key, ext, arch);
    return NNOPT_OK;
}

void cuda_nv_arch_for(int major, int minor, char *arch, size_t size) {
    int want = major * 10 + minor, newest = 0, n = 0, supported = 0;
    if (nvrtcGetNumSupportedArchs(&n) == NVRTC_SUCCESS && n > 0) {
        int *archs = malloc((size_t)n * sizeof *archs);
        if (archs && nvrtcGetSupportedArchs(archs) == NVRTC_SUCCESS)
            for (int i = 0; i < n; i++) {
                supported |= archs[i] == want;
                newest = archs[i] > newest ? archs[i] : newest;
            }
        free(archs);
    }
    if (supported || newest == 0 || want < newest)
        snprintf(arch, size, "sm_%d",
                 want); /* an unsupported older one fails with NVRTC's reason */
    else
        snprintf(arch, size, "compute_%d", newest);
}
