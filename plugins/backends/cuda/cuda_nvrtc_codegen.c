/* The planner and CUDA C generator of compiled mode (see cuda_nvrtc.h).
 * Every generated kernel runs one thread per output element with its sizes
 * as constants, so the compiler resolves every index division at compile
 * time; the element type is spelled out (float or double) per kernel. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_nvrtc.h"

typedef struct text_buffer {
    char *data;
    size_t length, capacity;
    int failed;
} text_buffer;

static void emit(text_buffer *t, const char *fmt, ...) NNOPT_FMT_PRINTF(2, 3);
static void emit(text_buffer *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->length, t->capacity - t->length, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->capacity - t->length) {
            t->length += (size_t)n;
            return;
        }
        size_t grown = (t->capacity + (size_t)n + 1) * 2;
        char *p = realloc(t->data, grown);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->data = p;
        t->capacity = grown;
    }
}

/* Shared by every kernel: activations by their nnopt_act_kind number, a
 * constant at every call site, so each kernel keeps only its own branch.
 * Comparisons are written as the reference's, so that a NaN goes through
 * relu as it does there. */
static const char prelude[] =
    "template <typename T> __device__ __forceinline__ T nv_act(const int kind, T v) {\n"
    "    switch (kind) {\n"
    "    case 1: return v < T(0) ? T(0) : v;\n"
    "    case 2: return T(0.5) * v * (T(1) + tanh(T(0.7978845608028654) *\n"
    "                                              (v + T(0.044715) * v * v * v)));\n"
    "    case 3: return T(0.5) * v * (T(1) + erf(v * T(0.7071067811865476)));\n"
    "    case 4: return tanh(v);\n"
    "    case 5: return T(1) / (T(1) + exp(-v));\n"
    "    case 6: return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);\n"
    "    default: return v;\n"
    "    }\n"
    "}\n"
    "/* In double, as the reference backend computes it. */\n"
    "__device__ __forceinline__ double nv_batchnorm(double x, double gamma, double beta,\n"
    "                                               double mean, double var, double eps) {\n"
    "    return (x - mean) * (gamma / sqrt(var + eps)) + beta;\n"
    "}\n"
    "#define NV_INDEX(total)                                                     \\\n"
    "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; \\\n"
    "    if (i >= (total)) return\n";

typedef struct planner {
    const nnopt_program *prog;
    int *readers; /* per tensor: steps reading it, plus views of it */
    text_buffer text;
    cuda_nv_action *actions;
    int n_actions, n_kernels, specialized;
} planner;

static int64_t numel(const nnopt_program_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static const char *type_name(nnopt_dtype dtype) {
    return dtype == NNOPT_F64 ? "double" : "float";
}

static int float_dtype(nnopt_dtype dtype) {
    return dtype == NNOPT_F32 || dtype == NNOPT_F64;
}

static int same_shape(const nnopt_program_tensor *a, const nnopt_program_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* Channels (axis 1) and the elements per channel of an [N,C,...] tensor. */
static void channel_split(const nnopt_program_tensor *t, int64_t *channels, int64_t *inner) {
    *channels = t->ndim >= 2 ? t->shape[1] : 1;
    *inner = 1;
    for (int d = 2; d < t->ndim; d++) *inner *= t->shape[d];
}

/* A value only this program reads, exactly once and not through a view:
 * the step reading it may be fused into the step writing it. */
static int private_value(const planner *p, int tensor) {
    const nnopt_program_tensor *t = &p->prog->tensors[tensor];
    return !(t->flags & NNOPT_PROGRAM_TENSOR_EXTERNAL) && t->alias_of < 0 &&
           p->readers[tensor] == 1;
}

/* Step s (static, one output) reads `tensor` as its first input and writes a
 * tensor of the same shape and dtype. */
static int elementwise_successor(const planner *p, int s, int tensor) {
    if (s >= p->prog->n_steps) return 0;
    const nnopt_program_step *st = &p->prog->steps[s];
    if ((st->flags & NNOPT_PROGRAM_STEP_DYNAMIC) || st->n_out != 1 || st->in[0] != tensor) return 0;
    return same_shape(&p->prog->tensors[tensor], &p->prog->tensors[st->out[0]]);
}

static int is_inference_bn(const nnopt_program_step *st) {
    return st->op.kind == NNOPT_OP_BATCHNORM && !st->op.p.bn.training && st->n_in == 5 &&
           st->n_out == 1;
}

static cuda_nv_action *add_action(planner *p, int kind, int step) {
    cuda_nv_action *a = &p->actions[p->n_actions++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->step = step;
    a->out0 = -1;
    return a;
}

static void add_fallback(planner *p, int step) {
    cuda_nv_action *a = add_action(p, CUDA_NV_FALLBACK, step);
    a->n_in = p->prog->steps[step].n_in;
}

static cuda_nv_action *add_kernel(planner *p, int step, int64_t threads) {
    cuda_nv_action *a = add_action(p, CUDA_NV_KERNEL, step);
    a->kernel = p->n_kernels++;
    a->threads = threads;
    return a;
}

/* Convolution or dense followed by bias / inference batch norm / activation
 * on its private output: the GEMM on cuDNN or cuBLAS writes straight into
 * the chain's last output, and one epilogue kernel finishes it in place.
 * Returns the number of steps consumed, 0 when there is nothing to fuse. */
static int plan_epilogue(planner *p, int s) {
    const nnopt_program *prog = p->prog;
    const nnopt_program_step *gemm = &prog->steps[s];
    int y = gemm->out[0];
    const nnopt_program_tensor *ty = &prog->tensors[y];
    if (!float_dtype(ty->dtype) || ty->ndim < 2 || gemm->n_out != 1) return 0;
    int bn = -1, act = -1, last = y, next = s + 1;
    if (private_value(p, last) && elementwise_successor(p, next, last) &&
        is_inference_bn(&prog->steps[next])) {
        bn = next;
        last = prog->steps[next++].out[0];
    }
    if (private_value(p, last) && elementwise_successor(p, next, last) &&
        prog->steps[next].op.kind == NNOPT_OP_ACT && prog->steps[next].n_in == 1) {
        act = next;
        last = prog->steps[next++].out[0];
    }
    if (bn < 0 && act < 0) return 0;
    int has_bias = gemm->n_in == 3;
    cuda_nv_action *f = add_action(p, CUDA_NV_FALLBACK, s);
    f->n_in = has_bias ? 2 : gemm->n_in;
    f->out0 = last;
    int64_t channels, inner, total = numel(ty);
    channel_split(ty, &channels, &inner);
    cuda_nv_action *k = add_kernel(p, s, total);
    const char *T = type_name(ty->dtype);
    k->args[k->n_args++] = last;
    emit(&p->text, "\n// steps %d-%d: %s epilogue in place:%s%s%s%s\n", s, next - 1,
         nnopt_op_kind_name(gemm->op.kind), has_bias ? " bias" : "", bn >= 0 ? " batchnorm" : "",
         act >= 0 ? " " : "", act >= 0 ? nnopt_act_kind_name(prog->steps[act].op.p.act.kind) : "");
    emit(&p->text, "extern \"C\" __global__ void nnopt_nv_%d(%s *y", k->kernel, T);
    if (has_bias) {
        k->args[k->n_args++] = gemm->in[2];
        emit(&p->text, ", const %s *bias", T);
    }
    if (bn >= 0) {
        for (int a = 1; a < 5; a++) k->args[k->n_args++] = prog->steps[bn].in[a];
        emit(&p->text, ", const %s *gamma, const %s *beta, const %s *mean, const %s *var", T, T, T,
             T);
    }
    emit(&p->text, ") {\n    NV_INDEX(%lldLL);\n", (long long)total);
    emit(&p->text, "    const long long c = (i / %lldLL) %% %lldLL;\n    %s v = y[i];\n",
         (long long)inner, (long long)channels, T);
    if (has_bias) emit(&p->text, "    v += bias[c];\n");
    if (bn >= 0)
        emit(&p->text, "    v = (%s)nv_batchnorm(v, gamma[c], beta[c], mean[c], var[c], %.17g);\n",
             T, prog->steps[bn].op.p.bn.eps);
    if (act >= 0)
        emit(&p->text, "    v = nv_act<%s>(%d, v);\n", T, (int)prog->steps[act].op.p.act.kind);
    emit(&p->text, "    y[i] = v;\n}\n");
    p->specialized += (has_bias ? 1 : 0) + (bn >= 0) + (act >= 0);
    return next - s;
}

/* Addition, and the activation after it when its sum is private. */
static int plan_add(planner *p, int s) {
    const nnopt_program *prog = p->prog;
    const nnopt_program_step *st = &prog->steps[s];
    const nnopt_program_tensor *ty = &prog->tensors[st->out[0]];
    if (st->n_in != 2 || st->n_out != 1 || !float_dtype(ty->dtype)) return 0;
    int last = st->out[0], act = -1;
    if (private_value(p, last) && elementwise_successor(p, s + 1, last) &&
        prog->steps[s + 1].op.kind == NNOPT_OP_ACT && prog->steps[s + 1].n_in == 1) {
        act = s + 1;
        last = prog->steps[act].out[0];
    }
    int64_t total = numel(ty);
    cuda_nv_action *k = add_kernel(p, s, total);
    k->args[0] = st->in[0];
    k->args[1] = st->in[1];
    k->args[2] = last;
    k->n_args = 3;
    const char *T = type_name(ty->dtype);
    emit(&p->text, "\n// step %d: add%s\n", s, act >= 0 ? " + activation" : "");
    /* No __restrict__: the sum may overwrite an input (y is a). */
    emit(&p->text,
         "extern \"C\" __global__ void nnopt_nv_%d(const %s *a, const %s *b, %s *y) {\n"
         "    NV_INDEX(%lldLL);\n    y[i] = nv_act<%s>(%d, a[i] + b[i]);\n}\n",
         k->kernel, T, T, T, (long long)total, T,
         act >= 0 ? (int)prog->steps[act].op.p.act.kind : NNOPT_ACT_IDENTITY);
    p->specialized += act >= 0 ? 2 : 1;
    return act >= 0 ? 2 : 1;
}

static int plan_act(planner *p, int s) {
    const nnopt_program_step *st = &p->prog->steps[s];
    const nnopt_program_tensor *ty = &p->prog->tensors[st->out[0]];
    if (st->n_in != 1 || st->n_out != 1 || !float_dtype(ty->dtype)) return 0;
    int64_t total = numel(ty);
    cuda_nv_action *k = add_kernel(p, s, total);
    k->args[0] = st->in[0];
    k->args[1] = st->out[0];
    k->n_args = 2;
    const char *T = type_name(ty->dtype);
    emit(&p->text,
         "\n// step %d: %s\nextern \"C\" __global__ void nnopt_nv_%d(const %s *x, %s *y) {\n"
         "    NV_INDEX(%lldLL);\n    y[i] = nv_act<%s>(%d, x[i]);\n}\n",
         s, nnopt_act_kind_name(st->op.p.act.kind), k->kernel, T, T, (long long)total, T,
         (int)st->op.p.act.kind);
    p->specialized++;
    return 1;
}

static int plan_batchnorm(planner *p, int s) {
    const nnopt_program_step *st = &p->prog->steps[s];
    if (!is_inference_bn(st)) return 0;
    const nnopt_program_tensor *ty = &p->prog->tensors[st->out[0]];
    if (!float_dtype(ty->dtype) || ty->ndim < 2) return 0;
    int64_t channels, inner, total = numel(ty);
    channel_split(ty, &channels, &inner);
    cuda_nv_action *k = add_kernel(p, s, total);
    for (int a = 0; a < 5; a++) k->args[a] = st->in[a];
    k->args[5] = st->out[0];
    k->n_args = 6;
    const char *T = type_name(ty->dtype);
    emit(&p->text,
         "\n// step %d: batchnorm (inference)\nextern \"C\" __global__ void nnopt_nv_%d(const %s "
         "*x, const %s *gamma, const %s *beta, const %s *mean, const %s *var, %s *y) {\n"
         "    NV_INDEX(%lldLL);\n    const long long c = (i / %lldLL) %% %lldLL;\n"
         "    y[i] = (%s)nv_batchnorm(x[i], gamma[c], beta[c], mean[c], var[c], %.17g);\n}\n",
         s, k->kernel, T, T, T, T, T, T, (long long)total, (long long)inner, (long long)channels, T,
         st->op.p.bn.eps);
    p->specialized++;
    return 1;
}

/* Max pooling skips padding and keeps the first largest input, compared as
 * the reference compares (a NaN wins only as a window's first input);
 * average pooling divides by the full window. */
static int plan_pool(planner *p, int s) {
    const nnopt_program_step *st = &p->prog->steps[s];
    const nnopt_program_tensor *tx = &p->prog->tensors[st->in[0]];
    const nnopt_program_tensor *ty = &p->prog->tensors[st->out[0]];
    if (st->n_in != 1 || st->n_out != 1 || !float_dtype(ty->dtype) || tx->ndim != 4 ||
        ty->ndim != 4)
        return 0;
    const nnopt_pool2d_params *pp = &st->op.p.pool2d;
    int64_t total = numel(ty);
    cuda_nv_action *k = add_kernel(p, s, total);
    k->args[0] = st->in[0];
    k->args[1] = st->out[0];
    k->n_args = 2;
    const char *T = type_name(ty->dtype);
    int is_max = pp->kind == NNOPT_POOL_MAX;
    emit(&p->text,
         "\n// step %d: %s pool %dx%d\nextern \"C\" __global__ void nnopt_nv_%d(const %s *x, %s "
         "*y) {\n    NV_INDEX(%lldLL);\n"
         "    const int q = (int)(i %% %lldLL), pos = (int)((i / %lldLL) %% %lldLL);\n"
         "    const %s *plane = x + (i / %lldLL) * %lldLL;\n"
         "    %s acc = 0;\n%s"
         "    for (int r = 0; r < %d; r++) {\n"
         "        const int h = pos * %d - %d + r;\n"
         "        if (h < 0 || h >= %lld) continue;\n"
         "        for (int t = 0; t < %d; t++) {\n"
         "            const int w = q * %d - %d + t;\n"
         "            if (w < 0 || w >= %lld) continue;\n"
         "            const %s v = plane[h * %lldLL + w];\n",
         s, is_max ? "max" : "avg", pp->kernel_h, pp->kernel_w, k->kernel, T, T, (long long)total,
         (long long)ty->shape[3], (long long)ty->shape[3], (long long)ty->shape[2], T,
         (long long)(ty->shape[2] * ty->shape[3]), (long long)(tx->shape[2] * tx->shape[3]), T,
         is_max ? "    bool any = false;\n" : "", pp->kernel_h, pp->stride_h, pp->pad_h,
         (long long)tx->shape[2], pp->kernel_w, pp->stride_w, pp->pad_w, (long long)tx->shape[3], T,
         (long long)tx->shape[3]);
    if (is_max)
        emit(&p->text, "            acc = !any || v > acc ? v : acc;\n            any = true;\n");
    else
        emit(&p->text, "            acc += v;\n");
    emit(&p->text, "        }\n    }\n");
    if (is_max)
        emit(&p->text, "    y[i] = acc;\n}\n");
    else
        emit(&p->text, "    y[i] = acc / (%s)%d;\n}\n", T, pp->kernel_h * pp->kernel_w);
    p->specialized++;
    return 1;
}

int cuda_nv_generate(const nnopt_program *prog, cuda_nv_plan *plan) {
    memset(plan, 0, sizeof *plan);
    planner p = {0};
    p.prog = prog;
    p.readers = calloc((size_t)prog->n_tensors + 1, sizeof *p.readers);
    /* Every step gives at most two actions (a GEMM and its epilogue). */
    p.actions = calloc((size_t)prog->n_steps * 2 + 1, sizeof *p.actions);
    if (!p.readers || !p.actions) {
        free(p.readers);
        free(p.actions);
        return -1;
    }
    for (int s = 0; s < prog->n_steps; s++)
        for (int k = 0; k < prog->steps[s].n_in; k++) p.readers[prog->steps[s].in[k]]++;
    for (int t = 0; t < prog->n_tensors; t++)
        if (prog->tensors[t].alias_of >= 0) p.readers[prog->tensors[t].alias_of] += 2;
    emit(&p.text, "// nnopt compiled mode: kernels for one program (%d steps)\n%s", prog->n_steps,
         prelude);
    for (int s = 0; s < prog->n_steps;) {
        const nnopt_program_step *st = &prog->steps[s];
        int used = 0;
        if (!(st->flags & NNOPT_PROGRAM_STEP_DYNAMIC)) {
            switch (st->op.kind) {
            case NNOPT_OP_CONV2D:
            case NNOPT_OP_DENSE:
                used = plan_epilogue(&p, s);
                break;
            case NNOPT_OP_ADD:
                used = plan_add(&p, s);
                break;
            case NNOPT_OP_ACT:
                used = plan_act(&p, s);
                break;
            case NNOPT_OP_BATCHNORM:
                used = plan_batchnorm(&p, s);
                break;
            case NNOPT_OP_POOL2D:
                used = plan_pool(&p, s);
                break;
            default:
                break;
            }
        }
        if (!used) {
            add_fallback(&p, s);
            used = 1;
        }
        s += used;
    }
    free(p.readers);
    if (p.text.failed) {
        free(p.text.data);
        free(p.actions);
        return -1;
    }
    plan->source = p.text.data;
    plan->length = p.text.length;
    plan->actions = p.actions;
    plan->n_actions = p.n_actions;
    plan->n_kernels = p.n_kernels;
    plan->specialized_steps = p.specialized;
    return 0;
}

void cuda_nv_plan_free(cuda_nv_plan *plan) {
    if (!plan) return;
    free(plan->source);
    free(plan->actions);
    memset(plan, 0, sizeof *plan);
}
