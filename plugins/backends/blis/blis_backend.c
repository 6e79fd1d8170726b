/* The blis backend plugin: descriptor, parameters, instance lifetime and op
 * dispatch. Dense layers and large or grouped convolutions go through BLIS
 * GEMM, small convolutions through direct AVX-512 kernels; pooling,
 * activations, add and bias gradients have their own multithreaded loops;
 * the remaining cheap ops (softmax cross-entropy, optimiser updates, casts)
 * run on the shared reference kernels, as tensors live in host memory. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blis_bf16.h"
#include "blis_internal.h"
#include "blis_pointwise.h"
#include "kc_program.h"
#include "ref_kernels.h"

static const nnopt_param_spec blis_params[] = {
    {"threads", NNOPT_PARAM_INT, "0",
     "threads for BLIS and the backend's own loops; 0 = every core this process may use", NULL, 0,
     4096},
    {"arch", NNOPT_PARAM_ENUM, "auto",
     "BLIS kernel set: auto picks from cpuid (zen3 on AMD Zen 3 and later, skx on Intel "
     "AVX-512, haswell on AVX2); the others force one",
     "auto|skx|zen3|zen2|zen|haswell|sandybridge|penryn|generic", 0, 0},
    {"conv", NNOPT_PARAM_ENUM, "auto",
     "convolution kernels: auto = direct AVX-512 kernels for the small ungrouped shapes where "
     "they beat im2col + GEMM, and an AVX-512 GEMM on NCHW tensors for ungrouped 1x1 stride-1 "
     "unpadded ones (CPUs with AVX-512F), BLIS GEMM elsewhere; gemm = always im2col + BLIS GEMM",
     "auto|gemm", 0, 0},
    {"bf16", NNOPT_PARAM_ENUM, "auto",
     "bf16 ops: auto = AVX-512 BF16 kernels where cpuid reports the instructions, else the f32 "
     "kernels on widened copies; f32 = always the latter (portable)",
     "auto|f32", 0, 0},
    {"winograd", NNOPT_PARAM_ENUM, "auto",
     "Winograd for 3x3 stride-1 ungrouped convolutions (AVX-512F): auto = where it "
     "measured faster than the direct kernels (batches filling groups of 16 f32 / 8 f64 "
     "images on every thread, 16+ input channels; forward and data gradient F(4x4,3x3) on "
     "outputs of 256+ values per plane, F(2x2,3x3) on smaller ones; filter gradient "
     "F(2x2,3x3) on planes of up to 256); off = never; f2 / f4 = that tile wherever it "
     "applies",
     "auto|off|f2|f4", 0, 0},
};

/* ---- argument checks shared by the op files ---- */

nnopt_status blis_check_counts(blis_backend *be, const nnopt_op *op, int n_in, int min_in,
                               int max_in, int n_out, int want_out) {
    if (n_in < min_in || n_in > max_in || n_out != want_out) {
        be->host->set_error("blis: %s takes %d..%d inputs and %d outputs, got %d and %d",
                            nnopt_op_kind_name(op->kind), min_in, max_in, want_out, n_in, n_out);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

int blis_same_shape(const nnopt_tensor *a, const nnopt_tensor *b) {
    if (!a || !b || !a->data || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

nnopt_status blis_check_float(blis_backend *be, const nnopt_op *op, const nnopt_tensor *t,
                              const char *role, const nnopt_tensor *like) {
    if (!t || !t->data) {
        be->host->set_error("blis: %s: %s is missing or unallocated", nnopt_op_kind_name(op->kind),
                            role);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (t->dtype != NNOPT_F32 && t->dtype != NNOPT_F64) {
        be->host->set_error("blis: %s: %s is %s, not f32/f64", nnopt_op_kind_name(op->kind), role,
                            nnopt_dtype_name(t->dtype));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    if (like && t->dtype != like->dtype) {
        be->host->set_error("blis: %s: %s is %s but the op runs in %s",
                            nnopt_op_kind_name(op->kind), role, nnopt_dtype_name(t->dtype),
                            nnopt_dtype_name(like->dtype));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

/* ---- scratch ---- */

nnopt_status blis_scratch_reserve(blis_backend *be, int count, size_t bytes) {
    bytes = blis_align64(bytes > 0 ? bytes : 64);
    for (int t = 0; t < count && t < be->threads; t++) {
        blis_scratch *s = &be->scratch[t];
        if (s->bytes >= bytes) continue;
        free(s->data);
        s->data = aligned_alloc(64, bytes);
        s->bytes = s->data ? bytes : 0;
        if (!s->data) {
            be->host->set_error("blis: out of memory for %zu bytes of scratch", bytes);
            return NNOPT_STATUS_OUT_OF_MEMORY;
        }
    }
    return NNOPT_OK;
}

/* ---- vtable ---- */

static void blis_destroy(void *ctx) {
    blis_backend *be = ctx;
    if (!be) return;
    if (be->scratch)
        for (int t = 0; t < be->threads; t++) free(be->scratch[t].data);
    free(be->scratch);
    free(be->add_buffer);
    free(be);
}

static nnopt_status blis_create(const nnopt_host_api *host, const nnopt_config *cfg, void **ctx) {
    *ctx = NULL;
    blis_backend *be = calloc(1, sizeof *be);
    if (!be) {
        host->set_error("blis: out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    be->host = host;
    const int64_t threads = cfg ? host->config_int(cfg, "threads") : 0;
    const int cores = omp_get_num_procs(); /* honours the process's CPU affinity */
    be->threads = threads > 0 ? (int)threads : (cores > 0 ? cores : 1);
    be->scratch = calloc((size_t)be->threads, sizeof *be->scratch);
    if (!be->scratch) {
        blis_destroy(be);
        host->set_error("blis: out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    const char *conv = cfg ? host->config_string(cfg, "conv") : NULL;
    be->direct_conv = (!conv || strcmp(conv, "gemm") != 0) && blis_direct_conv_available();
    const char *bf16 = cfg ? host->config_string(cfg, "bf16") : NULL;
    be->bf16_hw = (!bf16 || strcmp(bf16, "f32") != 0) && blis_bf16_hw_available();
    be->int8_vnni = blis_int8_available();
    const char *winograd = cfg ? host->config_string(cfg, "winograd") : NULL;
    be->winograd = !winograd || strcmp(winograd, "auto") == 0 ? BLIS_WINOGRAD_AUTO
                   : strcmp(winograd, "off") == 0             ? BLIS_WINOGRAD_OFF
                   : strcmp(winograd, "f2") == 0              ? BLIS_WINOGRAD_F2
                                                              : BLIS_WINOGRAD_F4;
    be->dense_avx512 = blis_direct_conv_available(); /* AVX-512F */
    be->pointwise_avx512 = be->direct_conv && blis_pointwise_cpu_supported();
    const nnopt_status status = blis_arch_select(be, cfg ? host->config_string(cfg, "arch") : NULL);
    if (status != NNOPT_OK) {
        blis_destroy(be);
        return status;
    }
    *ctx = be;
    return NNOPT_OK;
}

/* Ops with a BLIS or multithreaded implementation here (F32/F64 only). */
static const blis_op_fn blis_ops[NNOPT_OP_KIND_COUNT] = {
    [NNOPT_OP_CONV2D] = blis_conv2d,
    [NNOPT_OP_CONV2D_BWD_DATA] = blis_conv2d_bwd_data,
    [NNOPT_OP_CONV2D_BWD_FILTER] = blis_conv2d_bwd_filter,
    [NNOPT_OP_DENSE] = blis_dense,
    [NNOPT_OP_DENSE_BWD_DATA] = blis_dense_bwd_data,
    [NNOPT_OP_DENSE_BWD_WEIGHT] = blis_dense_bwd_weight,
    [NNOPT_OP_BIAS_BWD] = blis_bias_bwd,
    [NNOPT_OP_POOL2D] = blis_pool2d,
    [NNOPT_OP_POOL2D_BWD] = blis_pool2d_bwd,
    [NNOPT_OP_ACT] = blis_act,
    [NNOPT_OP_ACT_BWD] = blis_act_bwd,
    [NNOPT_OP_ADD] = blis_add,
    [NNOPT_OP_SGD_UPDATE] = blis_sgd_update,
    [NNOPT_OP_BATCHNORM] = blis_batchnorm,
    [NNOPT_OP_BATCHNORM_BWD] = blis_batchnorm_bwd,
    [NNOPT_OP_BATCHNORM_RELU] = blis_batchnorm,
    [NNOPT_OP_CONV2D_RELU] = blis_conv2d,
    [NNOPT_OP_ADD_RELU] = blis_add,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD] = blis_conv2d_bwd_data,
    [NNOPT_OP_CONV2D_ADD_RELU] = blis_conv2d,
    [NNOPT_OP_BATCHNORM_ADD_RELU] = blis_batchnorm,
    [NNOPT_OP_CONV2D_BWD_DATA_ADD_MASKED] = blis_conv2d_bwd_data,
    [NNOPT_OP_BATCHNORM_RELU_BWD] = blis_batchnorm_bwd,
    [NNOPT_OP_CONV2D_INT8] = blis_qlinear,
    [NNOPT_OP_DENSE_INT8] = blis_qlinear,
};

/* bf16: the forward ops (blis_bf16.c), as the reference. */
static int blis_supports(void *ctx, nnopt_op_kind op, nnopt_dtype dtype) {
    (void)ctx;
    if ((unsigned)op >= NNOPT_OP_KIND_COUNT) return 0;
    if (op == NNOPT_OP_CONV2D_INT8 || op == NNOPT_OP_DENSE_INT8) return dtype == NNOPT_F32;
    if (blis_ops[op] && (dtype == NNOPT_F32 || dtype == NNOPT_F64)) return 1;
    return nnopt_ref_supports(op, dtype);
}

/* f32/f64 ops: our kernels where we have them, else the reference's. Also
 * what bf16 ops without a kernel of their own run on widened copies. */
nnopt_status blis_run_float(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out);
nnopt_status blis_run_float(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    blis_backend *be = ctx;
    /* The op's dtype is that of its first input (every op has one). */
    const int own = blis_ops[op->kind] && n_in > 0 && in && in[0] &&
                    (in[0]->dtype == NNOPT_F32 || in[0]->dtype == NNOPT_F64);
    if (own) return blis_ops[op->kind](be, op, in, n_in, out, n_out);
    return nnopt_ref_run(be->host, op, in, n_in, out, n_out);
}

static nnopt_status blis_run(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out) {
    blis_backend *be = ctx;
    if (!op || (unsigned)op->kind >= NNOPT_OP_KIND_COUNT) {
        be->host->set_error("blis: unknown op kind");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (nnopt_op_has_bf16((const nnopt_tensor *const *)in, n_in, (const nnopt_tensor *const *)out,
                          n_out))
        return blis_bf16_run(be, op, in, n_in, out, n_out);
    return blis_run_float(ctx, op, in, n_in, out, n_out);
}

static nnopt_status blis_tensor_alloc(void *ctx, nnopt_tensor *t) {
    return nnopt_host_tensor_alloc(((blis_backend *)ctx)->host, t);
}
static void blis_tensor_free(void *ctx, nnopt_tensor *t) {
    (void)ctx;
    nnopt_host_tensor_free(t);
}
static nnopt_status blis_tensor_write(void *ctx, nnopt_tensor *t, size_t offset, const void *src,
                                      size_t nbytes) {
    (void)ctx;
    return nnopt_host_tensor_write(t, offset, src, nbytes);
}
static nnopt_status blis_tensor_read(void *ctx, const nnopt_tensor *t, size_t offset, void *dst,
                                     size_t nbytes) {
    (void)ctx;
    return nnopt_host_tensor_read(t, offset, dst, nbytes);
}
static nnopt_status blis_tensor_zero(void *ctx, nnopt_tensor *t) {
    (void)ctx;
    return nnopt_host_tensor_zero(t);
}

/* Every op runs to completion before run() returns. */
static nnopt_status blis_synchronize(void *ctx) {
    (void)ctx;
    return NNOPT_OK;
}

static void blis_describe(void *ctx, char *buf, size_t size) {
    const blis_backend *be = ctx;
    snprintf(buf, size,
             "BLIS %s kernels (%s), %d thread%s; convolutions: %s; dense: %s; bf16: %s; int8: %s",
             be->kernels, be->arch_reason, be->threads, be->threads == 1 ? "" : "s",
             be->direct_conv ? "direct AVX-512 for ungrouped RxS>1, stride<=2, C*R*S<=1024 "
                               "(data gradient: stride 1), im2col+GEMM otherwise"
                             : "im2col+GEMM",
             be->dense_avx512 ? "AVX-512 GEMM" : "BLIS GEMM",
             be->bf16_hw ? "AVX-512 BF16 GEMM" : "f32 kernels on widened copies",
             be->int8_vnni ? "AVX-512 VNNI" : "reference kernels (no VNNI)");
    static const char *const winograd[] = {"auto", "off", "f2", "f4"};
    const size_t used = strlen(buf);
    if (used + 1 < size)
        snprintf(buf + used, size - used, "; winograd: %s; pointwise: %s",
                 be->direct_conv ? winograd[be->winograd] : "off",
                 be->pointwise_avx512 ? "AVX-512 GEMM" : "BLIS GEMM");
}

/* Compiled mode: generated kernels parallel over the batch on this
 * instance's threads; the steps they leave run through blis_run, and so do
 * the convolutions this instance runs as Winograd (the generator's are
 * direct: ResNet-56 inference ran 0.68x-0.87x compiled against precompiled). */
static nnopt_status blis_program_compile(void *ctx, const nnopt_program *prog,
                                         const nnopt_program_options *options, void **compiled,
                                         nnopt_program_info *info) {
    blis_backend *be = ctx;
    unsigned char *leave = calloc((size_t)prog->n_steps + 1, 1);
    if (!leave) {
        be->host->set_error("out of memory");
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    for (int s = 0; s < prog->n_steps; s++)
        leave[s] = (unsigned char)blis_program_step_is_winograd(be, prog, s);
    nnopt_status st = nnopt_kc_compile(be->host, prog, options, be->threads, leave, compiled, info);
    free(leave);
    return st;
}

static nnopt_status blis_program_run(void *ctx, void *compiled, const nnopt_op *ops,
                                     nnopt_tensor *const *tensors) {
    return nnopt_kc_run(((blis_backend *)ctx)->host, compiled, blis_run, ctx, ops, tensors);
}

static void blis_program_free(void *ctx, void *compiled) {
    (void)ctx;
    nnopt_kc_free(compiled);
}

static const nnopt_backend_vtable blis_vtable = {
    .struct_size = sizeof(nnopt_backend_vtable),
    .create = blis_create,
    .destroy = blis_destroy,
    .supports = blis_supports,
    .tensor_alloc = blis_tensor_alloc,
    .tensor_free = blis_tensor_free,
    .tensor_write = blis_tensor_write,
    .tensor_read = blis_tensor_read,
    .tensor_zero = blis_tensor_zero,
    .run = blis_run,
    .synchronize = blis_synchronize,
    .describe = blis_describe,
    .program_compile = blis_program_compile,
    .program_run = blis_program_run,
    .program_free = blis_program_free,
};

static const nnopt_plugin_desc blis_descriptor = {
    .abi_major = NNOPT_ABI_MAJOR,
    .abi_minor = NNOPT_ABI_MINOR,
    .struct_size = sizeof(nnopt_plugin_desc),
    .kind = NNOPT_PLUGIN_BACKEND,
    .name = "blis",
    .version = "0.1.0",
    .description =
        "CPU backend on BLIS GEMM and direct AVX-512 convolutions, multithreaded, "
        "f32/f64; bf16 forward ops on an AVX-512 BF16 GEMM; int8 inference on AVX-512 VNNI",
    .params = blis_params,
    .n_params = sizeof blis_params / sizeof blis_params[0],
    .init = NULL,
    .vtable = &blis_vtable,
};

NNOPT_PLUGIN_EXPORT const nnopt_plugin_desc *nnopt_plugin_descriptor(void) {
    return &blis_descriptor;
}
