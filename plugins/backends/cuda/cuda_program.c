/* Compiled mode of the cuda backend (program_compile / program_run /
 * program_free, ABI 1.1): the NVRTC image of cuda_nvrtc.h loaded with the
 * runtime API's library calls (cudaLibraryLoadData, CUDA 12+), so that the
 * plugin still links only cudart and loads on machines without a driver. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"
#include "cuda_nvrtc.h"

typedef struct cuda_program {
    cuda_nv_plan plan; /* its source freed once compiled */
    nnopt_program_step *steps;
    cudaLibrary_t library;
    cudaKernel_t *kernels; /* by cuda_nv_action.kernel */
} cuda_program;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cuda_program_free(cuda_backend *b, void *compiled) {
    cuda_program *p = compiled;
    if (!p) return;
    (void)b;
    if (p->library) cudaLibraryUnload(p->library);
    cuda_nv_plan_free(&p->plan);
    free(p->steps);
    free(p->kernels);
    free(p);
}

nnopt_status cuda_program_compile(cuda_backend *b, const nnopt_program *prog,
                                  const nnopt_program_options *options, void **compiled,
                                  nnopt_program_info *info) {
    double start = now_seconds();
    *compiled = NULL;
    cuda_program *p = calloc(1, sizeof *p);
    if (!p || cuda_nv_generate(prog, &p->plan) != 0) {
        free(p);
        cuda_error(b, "out of memory generating kernels");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    info->specialized_steps = p->plan.specialized_steps;
    info->total_steps = prog->n_steps;
    p->steps = malloc((size_t)prog->n_steps * sizeof *p->steps + 1);
    p->kernels = calloc((size_t)p->plan.n_kernels + 1, sizeof *p->kernels);
    if (!p->steps || !p->kernels) {
        cuda_program_free(b, p);
        cuda_error(b, "out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    memcpy(p->steps, prog->steps, (size_t)prog->n_steps * sizeof *p->steps);
    /* The device's own architecture where NVRTC knows it: a cubin, no JIT. */
    int major = 0, minor = 0;
    nnopt_status st =
        cuda_check(b, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, b->device),
                   "cudaDeviceGetAttribute");
    if (st == NNOPT_OK)
        st = cuda_check(
            b, cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, b->device),
            "cudaDeviceGetAttribute");
    char arch[32];
    cuda_nv_arch_for(major, minor, arch, sizeof arch);
    cuda_nv_image image = {0};
    if (st == NNOPT_OK && p->plan.n_kernels > 0)
        st = cuda_nv_compile(b->host, p->plan.source, arch, options ? options->cache_dir : NULL,
                             &image);
    if (st == NNOPT_OK && p->plan.n_kernels > 0)
        st = cuda_check(b,
                        cudaLibraryLoadData(&p->library, image.data, NULL, NULL, 0, NULL, NULL, 0),
                        "cudaLibraryLoadData");
    for (int k = 0; st == NNOPT_OK && k < p->plan.n_kernels; k++) {
        char name[32];
        snprintf(name, sizeof name, "nnopt_nv_%d", k);
        st = cuda_check(b, cudaLibraryGetKernel(&p->kernels[k], p->library, name),
                        "cudaLibraryGetKernel");
    }
    cuda_nv_image_free(&image);
    /* An image the driver rejects (a PTX newer than it reads, say) leaves the
     * network precompiled with a warning (the core's reaction to
     * UNSUPPORTED) instead of stopping the run. */
    if (st == NNOPT_STATUS_DEVICE) st = NNOPT_STATUS_UNSUPPORTED;
    if (st != NNOPT_OK) {
        cuda_program_free(b, p);
        return st;
    }
    free(p->plan.source);
    p->plan.source = NULL;
    info->cache_hit = image.cache_hit;
    snprintf(info->note, sizeof info->note, "%s",
             p->plan.n_kernels > 0 ? image.note
                                   : "nothing to generate: every step on cuDNN/cuBLAS");
    info->compile_seconds = now_seconds() - start;
    *compiled = p;
    return NNOPT_OK;
}

static nnopt_status run_fallback(cuda_backend *b, const cuda_program *p, const cuda_nv_action *a,
                                 cuda_run_fn run, const nnopt_op *ops,
                                 nnopt_tensor *const *tensors) {
    const nnopt_program_step *s = &p->steps[a->step];
    nnopt_tensor *in[NNOPT_PROGRAM_MAX_ARGS], *out[NNOPT_PROGRAM_MAX_ARGS];
    for (int k = 0; k < a->n_in; k++) in[k] = tensors[s->in[k]];
    for (int k = 0; k < s->n_out; k++) out[k] = tensors[s->out[k]];
    if (a->out0 >= 0) out[0] = tensors[a->out0];
    return run(b, &ops[a->step], in, a->n_in, out, s->n_out);
}

static dim3 dim3_of(unsigned x) {
    dim3 d = {x, 1, 1};
    return d;
}

static nnopt_status launch(cuda_backend *b, const cuda_program *p, const cuda_nv_action *a,
                           nnopt_tensor *const *tensors) {
    void *pointers[CUDA_NV_MAX_ARGS], *args[CUDA_NV_MAX_ARGS];
    for (int k = 0; k < a->n_args; k++) {
        const nnopt_tensor *t = tensors[a->args[k]];
        if (!t || !t->data) {
            cuda_error(b, "program_run: step %d's tensor %d is not bound", a->step, a->args[k]);
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
        pointers[k] = t->data;
        args[k] = &pointers[k];
    }
    int64_t blocks = (a->threads + CUDA_NV_BLOCK - 1) / CUDA_NV_BLOCK;
    if (blocks == 0) return NNOPT_OK; /* an empty tensor: a grid of 0 blocks is an error */
    /* A library kernel handle is accepted where a __global__ function is. */
    return cuda_check(b,
                      cudaLaunchKernel((const void *)p->kernels[a->kernel],
                                       dim3_of((unsigned)blocks), dim3_of(CUDA_NV_BLOCK), args, 0,
                                       b->stream),
                      "launching a compiled kernel");
}

nnopt_status cuda_program_run(cuda_backend *b, void *compiled, cuda_run_fn run, const nnopt_op *ops,
                              nnopt_tensor *const *tensors) {
    cuda_program *p = compiled;
    if (!p || !ops || !tensors) {
        cuda_error(b, "program_run without a compiled program, ops or tensors");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_status st = NNOPT_OK;
    for (int i = 0; st == NNOPT_OK && i < p->plan.n_actions; i++) {
        const cuda_nv_action *a = &p->plan.actions[i];
        st = a->kind == CUDA_NV_FALLBACK ? run_fallback(b, p, a, run, ops, tensors)
                                         : launch(b, p, a, tensors);
    }
    return st;
}
