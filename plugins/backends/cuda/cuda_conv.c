/* conv2d forward, backward data and backward filter through cuDNN's
 * convolution API, with the algorithm chosen once per shape (heuristics or
 * benchmarking) and a workspace kept in the instance. Depthwise layers
 * (groups == C == K) go to the plugin's direct kernels by default, as do
 * shapes for which cuDNN offers no algorithm. bf16 (forward only) is cuDNN's
 * bf16 configuration: bf16 tensors and filters, f32 compute. */
#include "cuda_internal.h"

#include <string.h>

enum { MAX_CANDIDATES = 16 };

/* An algorithm cuDNN offers for one call, whatever the pass. */
typedef struct conv_candidate {
    int algorithm;
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} conv_candidate;

/* The tensors of one convolution pass in the forward's roles (x, w, y); the
 * output is y (forward), x (backward data) or w (backward filter). */
typedef struct conv_call {
    nnopt_op_kind kind;
    nnopt_dtype dtype;
    cuda_conv_geometry g;
    const nnopt_tensor *x, *w, *y, *bias;
    int accumulate; /* backward data: the result is added to dx (conv2d_bwd_data_add) */
    int defer_bias; /* forward: where cuDNN runs, the bias is left to the caller's epilogue */
    int bias_added; /* set by run_conv: the bias is in y */
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t conv_desc;
} conv_call;

/* Checks x, w, y (roles names them: gradients stand in for them in the
 * backward passes) against each other and the op's parameters. */
static nnopt_status conv_geometry_check(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                        const nnopt_tensor *w, const nnopt_tensor *y,
                                        const char *const roles[3], cuda_conv_geometry *g) {
    const char *name = nnopt_op_kind_name(op->kind);
    const nnopt_conv2d_params *cp = &op->p.conv2d;
    nnopt_status status = cuda_check_tensor(b, op, x, roles[0], -1);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, w, roles[1], (int)x->dtype);
    if (status == NNOPT_OK) status = cuda_check_tensor(b, op, y, roles[2], (int)x->dtype);
    if (status != NNOPT_OK) return status;
    if (x->ndim != 4 || w->ndim != 4) {
        cuda_error(b, "%s: %s and %s must be 4-D (NCHW, KCRS)", name, roles[0], roles[1]);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (cp->stride_h < 1 || cp->stride_w < 1 || cp->pad_h < 0 || cp->pad_w < 0 || cp->groups < 1) {
        cuda_error(b, "%s: bad parameters (stride %dx%d, pad %dx%d, groups %d)", name, cp->stride_h,
                   cp->stride_w, cp->pad_h, cp->pad_w, cp->groups);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    *g = (cuda_conv_geometry){.n = x->shape[0],
                              .c = x->shape[1],
                              .h = x->shape[2],
                              .w = x->shape[3],
                              .k = w->shape[0],
                              .r = w->shape[2],
                              .s = w->shape[3],
                              .stride_h = cp->stride_h,
                              .stride_w = cp->stride_w,
                              .pad_h = cp->pad_h,
                              .pad_w = cp->pad_w,
                              .groups = cp->groups};
    if (g->c % g->groups != 0 || g->k % g->groups != 0 || w->shape[1] * g->groups != g->c) {
        cuda_error(b,
                   "%s: %lld input channels, %lld filters of %lld channels and %d groups do not "
                   "fit together",
                   name, (long long)g->c, (long long)g->k, (long long)w->shape[1], cp->groups);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int64_t padded_h = g->h + 2 * g->pad_h, padded_w = g->w + 2 * g->pad_w;
    if (g->r < 1 || g->s < 1 || padded_h < g->r || padded_w < g->s) {
        cuda_error(b, "%s: %lldx%lld filter does not fit the padded %lldx%lld input", name,
                   (long long)g->r, (long long)g->s, (long long)padded_h, (long long)padded_w);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    g->p = (padded_h - g->r) / g->stride_h + 1;
    g->q = (padded_w - g->s) / g->stride_w + 1;
    const int64_t y_shape[4] = {g->n, g->k, g->p, g->q};
    return cuda_check_shape(b, op, y, roles[2], 4, y_shape);
}

static void conv_call_release(conv_call *call) {
    if (call->x_desc) cudnnDestroyTensorDescriptor(call->x_desc);
    if (call->y_desc) cudnnDestroyTensorDescriptor(call->y_desc);
    if (call->w_desc) cudnnDestroyFilterDescriptor(call->w_desc);
    if (call->conv_desc) cudnnDestroyConvolutionDescriptor(call->conv_desc);
}

static nnopt_status conv_call_describe(cuda_backend *b, const nnopt_op *op, conv_call *call) {
    const cuda_conv_geometry *g = &call->g;
    const int64_t sizes[] = {g->n, g->c, g->h, g->w, g->k, g->r, g->s, g->p, g->q};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        nnopt_status status = cuda_check_int_range(b, op, sizes[i], "a convolution size");
        if (status != NNOPT_OK) return status;
    }
    const cudnnDataType_t type = cuda_cudnn_dtype(call->dtype);
    /* bf16 storage, f32 arithmetic: bf16 products are exact in f32. */
    const cudnnDataType_t compute = call->dtype == NNOPT_BF16 ? CUDNN_DATA_FLOAT : type;
    nnopt_status status = cuda_tensor_descriptor(b, op, call->x, &call->x_desc);
    if (status == NNOPT_OK) status = cuda_tensor_descriptor(b, op, call->y, &call->y_desc);
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnCreateFilterDescriptor(&call->w_desc),
                             "cudnnCreateFilterDescriptor");
    if (status == NNOPT_OK)
        status =
            cudnn_check(b,
                        cudnnSetFilter4dDescriptor(call->w_desc, type, CUDNN_TENSOR_NCHW, (int)g->k,
                                                   (int)(g->c / g->groups), (int)g->r, (int)g->s),
                        "cudnnSetFilter4dDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnCreateConvolutionDescriptor(&call->conv_desc),
                             "cudnnCreateConvolutionDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(b,
                             cudnnSetConvolution2dDescriptor(
                                 call->conv_desc, (int)g->pad_h, (int)g->pad_w, (int)g->stride_h,
                                 (int)g->stride_w, 1, 1, CUDNN_CROSS_CORRELATION, compute),
                             "cudnnSetConvolution2dDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(b, cudnnSetConvolutionGroupCount(call->conv_desc, (int)g->groups),
                             "cudnnSetConvolutionGroupCount");
    /* FMA math keeps f32 in f32 (no TF32 tensor cores) unless tf32 = true.
     * bf16 may use tensor cores: they sum its exact products in f32. */
    const int fma_math = !b->allow_tf32 && call->dtype != NNOPT_BF16;
    if (status == NNOPT_OK)
        status = cudnn_check(b,
                             cudnnSetConvolutionMathType(
                                 call->conv_desc, fma_math ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH),
                             "cudnnSetConvolutionMathType");
    return status;
}

/* ---- algorithm choice, per pass ---- */

#define COPY_CANDIDATES(perf, returned, out)                                                       \
    do {                                                                                           \
        for (int i_ = 0; i_ < (returned) && i_ < MAX_CANDIDATES; i_++)                             \
            (out)[i_] =                                                                            \
                (conv_candidate){(int)(perf)[i_].algo, (perf)[i_].status, (perf)[i_].memory,       \
                                 (perf)[i_].determinism, (perf)[i_].mathType};                     \
    } while (0)

/* cuDNN's ranked algorithms for the call (benchmarked with `find`). */
static nnopt_status list_candidates(cuda_backend *b, const conv_call *call, void *output,
                                    conv_candidate *out, int *count) {
    int returned = 0;
    cudnnStatus_t status;
    const void *x = call->x->data, *w = call->w->data, *y = call->y->data;
    if (b->find_conv_algo && cuda_workspace_reserve(b, b->workspace_limit) != NNOPT_OK)
        cuda_workspace_reserve(b, 0); /* benchmark what fits without one */
    void *ws = b->workspace;
    const size_t ws_bytes = b->workspace_bytes;
    switch (call->kind) {
    case NNOPT_OP_CONV2D: {
        cudnnConvolutionFwdAlgoPerf_t perf[MAX_CANDIDATES];
        status = b->find_conv_algo
                     ? cudnnFindConvolutionForwardAlgorithmEx(
                           b->cudnn, call->x_desc, x, call->w_desc, w, call->conv_desc,
                           call->y_desc, output, MAX_CANDIDATES, &returned, perf, ws, ws_bytes)
                     : cudnnGetConvolutionForwardAlgorithm_v7(b->cudnn, call->x_desc, call->w_desc,
                                                              call->conv_desc, call->y_desc,
                                                              MAX_CANDIDATES, &returned, perf);
        COPY_CANDIDATES(perf, returned, out);
        break;
    }
    case NNOPT_OP_CONV2D_BWD_DATA: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_CANDIDATES];
        status = b->find_conv_algo
                     ? cudnnFindConvolutionBackwardDataAlgorithmEx(
                           b->cudnn, call->w_desc, w, call->y_desc, y, call->conv_desc,
                           call->x_desc, output, MAX_CANDIDATES, &returned, perf, ws, ws_bytes)
                     : cudnnGetConvolutionBackwardDataAlgorithm_v7(
                           b->cudnn, call->w_desc, call->y_desc, call->conv_desc, call->x_desc,
                           MAX_CANDIDATES, &returned, perf);
        COPY_CANDIDATES(perf, returned, out);
        break;
    }
    default: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_CANDIDATES];
        status = b->find_conv_algo
                     ? cudnnFindConvolutionBackwardFilterAlgorithmEx(
                           b->cudnn, call->x_desc, x, call->y_desc, y, call->conv_desc,
                           call->w_desc, output, MAX_CANDIDATES, &returned, perf, ws, ws_bytes)
                     : cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                           b->cudnn, call->x_desc, call->y_desc, call->conv_desc, call->w_desc,
                           MAX_CANDIDATES, &returned, perf);
        COPY_CANDIDATES(perf, returned, out);
        break;
    }
    }
    *count = returned < MAX_CANDIDATES ? returned : MAX_CANDIDATES;
    return cudnn_check(b, status,
                       b->find_conv_algo ? "cudnnFindConvolution*AlgorithmEx"
                                         : "cudnnGetConvolution*Algorithm_v7");
}

static cudnnStatus_t workspace_size(const cuda_backend *b, const conv_call *call, int algorithm,
                                    size_t *bytes) {
    switch (call->kind) {
    case NNOPT_OP_CONV2D:
        return cudnnGetConvolutionForwardWorkspaceSize(b->cudnn, call->x_desc, call->w_desc,
                                                       call->conv_desc, call->y_desc,
                                                       (cudnnConvolutionFwdAlgo_t)algorithm, bytes);
    case NNOPT_OP_CONV2D_BWD_DATA:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(
            b->cudnn, call->w_desc, call->y_desc, call->conv_desc, call->x_desc,
            (cudnnConvolutionBwdDataAlgo_t)algorithm, bytes);
    default:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(
            b->cudnn, call->x_desc, call->y_desc, call->conv_desc, call->w_desc,
            (cudnnConvolutionBwdFilterAlgo_t)algorithm, bytes);
    }
}

static int plan_matches(const cuda_conv_plan *plan, const conv_call *call, const int64_t *dims) {
    return plan->valid && plan->kind == call->kind && plan->dtype == call->dtype &&
           plan->groups == call->g.groups && memcmp(plan->dims, dims, sizeof plan->dims) == 0;
}

/* The cached plan for this shape, or a new one (ranked by cuDNN, then the
 * first that succeeds, fits the workspace limit and is deterministic when
 * asked). No usable algorithm: the plan says use_direct. Benchmarking
 * (conv_algo = find) writes into `output` (output_bytes), or into scratch
 * when the call adds to what output holds. */
static nnopt_status conv_plan_for(cuda_backend *b, const conv_call *call, void *output,
                                  size_t output_bytes, cuda_conv_plan **out) {
    const cuda_conv_geometry *g = &call->g;
    const int64_t dims[11] = {g->n, g->c,        g->h,        g->w,     g->k,    g->r,
                              g->s, g->stride_h, g->stride_w, g->pad_h, g->pad_w};
    for (int i = 0; i < CUDA_CONV_PLAN_SLOTS; i++) {
        if (plan_matches(&b->plans[i], call, dims)) {
            *out = &b->plans[i];
            return NNOPT_OK;
        }
    }
    if (b->find_conv_algo && b->graphs.capturing) {
        /* Benchmarking runs and waits for the device (and may grow the
         * workspace): not inside a capture. The capture fails, and the ops
         * run directly, making the plan then. */
        cuda_error(b, "%s: algorithm benchmark inside a graph capture",
                   nnopt_op_kind_name(call->kind));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    cuda_conv_plan *plan = &b->plans[b->next_plan_slot];
    b->next_plan_slot = (b->next_plan_slot + 1) % CUDA_CONV_PLAN_SLOTS;
    *plan = (cuda_conv_plan){
        .valid = 1, .kind = call->kind, .dtype = call->dtype, .groups = g->groups, .use_direct = 1};
    memcpy(plan->dims, dims, sizeof plan->dims);
    *out = plan;

    conv_candidate candidates[MAX_CANDIDATES];
    int count = 0;
    void *scratch = NULL;
    nnopt_status status = NNOPT_OK;
    if (b->find_conv_algo && call->accumulate) {
        status = cuda_device_alloc(b, output_bytes, &scratch);
        output = scratch;
    }
    if (status == NNOPT_OK) status = list_candidates(b, call, output, candidates, &count);
    cuda_device_free(b, scratch);
    if (status == NNOPT_STATUS_UNSUPPORTED) return NNOPT_OK; /* direct kernels */
    if (status != NNOPT_OK) {
        plan->valid = 0;
        return status;
    }
    for (int i = 0; i < count; i++) {
        const conv_candidate *c = &candidates[i];
        size_t bytes = 0;
        if (c->status != CUDNN_STATUS_SUCCESS) continue;
        if (b->deterministic && c->determinism != CUDNN_DETERMINISTIC) continue;
        /* f32 without tf32 runs with FMA math only (DEFAULT math may use TF32 on
         * sm_80+): tensor-op algorithms are skipped, and an algorithm listed
         * under DEFAULT math that has no FMA kernel answers NOT_SUPPORTED at
         * run time, which sends the shape to the direct kernels. */
        const int fma_only = !b->allow_tf32 && call->dtype == NNOPT_F32;
        if (fma_only && c->math != CUDNN_FMA_MATH && c->math != CUDNN_DEFAULT_MATH) continue;
        /* Down-conversion to f16 is not TF32's precision, let alone f32's. */
        if (call->dtype != NNOPT_BF16 && c->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
        const cudnnMathType_t math = fma_only ? CUDNN_FMA_MATH : c->math;
        if (cudnnSetConvolutionMathType(call->conv_desc, math) != CUDNN_STATUS_SUCCESS ||
            workspace_size(b, call, c->algorithm, &bytes) != CUDNN_STATUS_SUCCESS)
            continue;
        if (bytes > b->workspace_limit) continue;
        plan->algorithm = c->algorithm;
        plan->math_type = (int)math;
        plan->workspace_bytes = bytes;
        plan->use_direct = 0;
        break;
    }
    return NNOPT_OK;
}

/* output = the pass's result, plus output's own values when accumulate. */
static cudnnStatus_t execute_cudnn(cuda_backend *b, const conv_call *call,
                                   const cuda_conv_plan *plan, void *output, int accumulate) {
    const void *one = cuda_one(call->dtype);
    const void *beta = accumulate ? cuda_one(call->dtype) : cuda_zero(call->dtype);
    void *ws = plan->workspace_bytes ? b->workspace : NULL;
    switch (call->kind) {
    case NNOPT_OP_CONV2D:
        return cudnnConvolutionForward(b->cudnn, one, call->x_desc, call->x->data, call->w_desc,
                                       call->w->data, call->conv_desc,
                                       (cudnnConvolutionFwdAlgo_t)plan->algorithm, ws,
                                       plan->workspace_bytes, beta, call->y_desc, output);
    case NNOPT_OP_CONV2D_BWD_DATA:
        return cudnnConvolutionBackwardData(b->cudnn, one, call->w_desc, call->w->data,
                                            call->y_desc, call->y->data, call->conv_desc,
                                            (cudnnConvolutionBwdDataAlgo_t)plan->algorithm, ws,
                                            plan->workspace_bytes, beta, call->x_desc, output);
    default:
        return cudnnConvolutionBackwardFilter(b->cudnn, one, call->x_desc, call->x->data,
                                              call->y_desc, call->y->data, call->conv_desc,
                                              (cudnnConvolutionBwdFilterAlgo_t)plan->algorithm, ws,
                                              plan->workspace_bytes, beta, call->w_desc, output);
    }
}

static nnopt_status run_direct(cuda_backend *b, conv_call *call, void *output) {
    const void *bias = call->bias ? call->bias->data : NULL;
    call->bias_added = bias != NULL;
    cudaError_t status;
    switch (call->kind) {
    case NNOPT_OP_CONV2D:
        status = cuda_conv2d_forward_direct(b->stream, call->dtype, &call->g, call->x->data,
                                            call->w->data, bias, output);
        break;
    case NNOPT_OP_CONV2D_BWD_DATA:
        status = cuda_conv2d_backward_data_direct(b->stream, call->dtype, &call->g, call->y->data,
                                                  call->w->data, output, call->accumulate);
        break;
    default:
        status = cuda_conv2d_backward_filter_direct(b->stream, call->dtype, &call->g, call->x->data,
                                                    call->y->data, output);
        break;
    }
    return cuda_check(b, status, nnopt_op_kind_name(call->kind));
}

static nnopt_status add_bias(cuda_backend *b, const nnopt_op *op, const conv_call *call) {
    cudnnTensorDescriptor_t bias_desc = NULL;
    nnopt_status status =
        cudnn_check(b, cudnnCreateTensorDescriptor(&bias_desc), "cudnnCreateTensorDescriptor");
    if (status == NNOPT_OK)
        status = cudnn_check(b,
                             cudnnSetTensor4dDescriptor(bias_desc, CUDNN_TENSOR_NCHW,
                                                        cuda_cudnn_dtype(call->dtype), 1,
                                                        (int)call->g.k, 1, 1),
                             "cudnnSetTensor4dDescriptor");
    if (status == NNOPT_OK) {
        const void *one = cuda_one(call->dtype);
        status = cudnn_check(b,
                             cudnnAddTensor(b->cudnn, one, bias_desc, call->bias->data, one,
                                            call->y_desc, call->y->data),
                             "conv2d bias: cudnnAddTensor");
    }
    (void)op;
    if (bias_desc) cudnnDestroyTensorDescriptor(bias_desc);
    return status;
}

static nnopt_status run_conv(cuda_backend *b, const nnopt_op *op, conv_call *call, void *output,
                             size_t output_bytes) {
    const cuda_conv_geometry *g = &call->g;
    /* An empty batch or output: nothing for cuDNN to do (and it refuses zero sizes). */
    if (g->n == 0 || g->k == 0 || g->c == 0 || g->p * g->q == 0) {
        if (call->kind == NNOPT_OP_CONV2D && call->bias != NULL && output_bytes > 0) {
            cuda_error(b, "conv2d: inputs without channels and a bias are not supported");
            return NNOPT_STATUS_UNSUPPORTED;
        }
        if (output_bytes == 0 || call->accumulate) return NNOPT_OK; /* nothing to add */
        return cuda_check(b, cudaMemsetAsync(output, 0, output_bytes, b->stream),
                          "cudaMemsetAsync");
    }
    if (b->own_depthwise && g->groups == g->c && g->groups == g->k)
        return run_direct(b, call, output);

    nnopt_status status = conv_call_describe(b, op, call);
    cuda_conv_plan *plan = NULL;
    if (status == NNOPT_OK) status = conv_plan_for(b, call, output, output_bytes, &plan);
    if (status == NNOPT_OK && !plan->use_direct)
        status = cuda_workspace_reserve(b, plan->workspace_bytes);
    if (status == NNOPT_OK && !plan->use_direct)
        status = cudnn_check(
            b, cudnnSetConvolutionMathType(call->conv_desc, (cudnnMathType_t)plan->math_type),
            "cudnnSetConvolutionMathType");
    /* A bf16 output is rounded once, with the bias in the f32 sum: y starts
     * as the bias and the convolution adds onto it (beta = 1). Only now:
     * benchmarking the algorithms (conv_algo = find) writes into y. */
    const int bias_first =
        call->kind == NNOPT_OP_CONV2D && call->bias != NULL && call->dtype == NNOPT_BF16;
    if (status == NNOPT_OK && !plan->use_direct && bias_first)
        status = cuda_check(b,
                            cuda_fill_channels(b->stream, call->dtype, g->n, g->k, g->p * g->q,
                                               call->bias->data, output),
                            "conv2d bias");
    if (status == NNOPT_OK && !plan->use_direct) {
        /* beta = 1: cuDNN adds its result to what output holds. */
        const cudnnStatus_t run_status =
            execute_cudnn(b, call, plan, output, bias_first || call->accumulate);
        if ((int)CUDNN_STATUS_CATEGORY(run_status) == CUDNN_STATUS_NOT_SUPPORTED) {
            plan->use_direct = 1; /* from now on for this shape */
        } else {
            status = cudnn_check(b, run_status, nnopt_op_kind_name(call->kind));
            call->bias_added = bias_first;
            if (status == NNOPT_OK && call->kind == NNOPT_OP_CONV2D && call->bias != NULL &&
                !bias_first && !call->defer_bias) {
                status = add_bias(b, op, call);
                call->bias_added = 1;
            }
        }
    }
    if (status == NNOPT_OK && plan->use_direct) status = run_direct(b, call, output);
    conv_call_release(call);
    return status;
}

/* The forward convolution; with defer_bias, the bias is left to the caller
 * where cuDNN would add it in a pass of its own (*bias_added says). */
static nnopt_status conv_forward(cuda_backend *b, const nnopt_op *op, const nnopt_tensor *x,
                                 const nnopt_tensor *w, const nnopt_tensor *bias, nnopt_tensor *y,
                                 int defer_bias, int *bias_added) {
    conv_call call = {
        .kind = NNOPT_OP_CONV2D, .x = x, .w = w, .y = y, .bias = bias, .defer_bias = defer_bias};
    nnopt_status status = conv_geometry_check(b, op, call.x, call.w, call.y,
                                              (const char *const[3]){"x", "w", "y"}, &call.g);
    if (status == NNOPT_OK && call.bias != NULL) {
        status = cuda_check_tensor(b, op, call.bias, "b", (int)call.x->dtype);
        if (status == NNOPT_OK) status = cuda_check_shape(b, op, call.bias, "b", 1, &call.g.k);
    }
    if (status != NNOPT_OK) return status;
    call.dtype = call.x->dtype;
    status = run_conv(b, op, &call, y->data, nnopt_tensor_nbytes(y));
    *bias_added = call.bias_added;
    return status;
}

nnopt_status cuda_conv2d(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                         nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 3, n_out, 1);
    if (status != NNOPT_OK) return status;
    int bias_added;
    return conv_forward(b, op, in[0], in[1], n_in == 3 ? in[2] : NULL, out[0], 0, &bias_added);
}

nnopt_status cuda_conv2d_bwd_data(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                  int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    conv_call call = {.kind = op->kind, .x = out[0], .w = in[1], .y = in[0]};
    status = conv_geometry_check(b, op, call.x, call.w, call.y,
                                 (const char *const[3]){"dx", "w", "dy"}, &call.g);
    if (status != NNOPT_OK) return status;
    call.dtype = call.x->dtype;
    return run_conv(b, op, &call, out[0]->data, nnopt_tensor_nbytes(out[0]));
}

nnopt_status cuda_conv2d_forward_deferred_bias(cuda_backend *b, const nnopt_op *op,
                                               const nnopt_tensor *x, const nnopt_tensor *w,
                                               const nnopt_tensor *bias, nnopt_tensor *y,
                                               int *bias_added) {
    *bias_added = 0;
    return conv_forward(b, op, x, w, bias, y, 1, bias_added);
}

nnopt_status cuda_conv2d_bwd_data_accumulate(cuda_backend *b, const nnopt_op *op,
                                             const nnopt_tensor *dy, const nnopt_tensor *w,
                                             nnopt_tensor *dx) {
    conv_call call = {.kind = NNOPT_OP_CONV2D_BWD_DATA, .x = dx, .w = w, .y = dy, .accumulate = 1};
    nnopt_status status = conv_geometry_check(b, op, call.x, call.w, call.y,
                                              (const char *const[3]){"dx", "w", "dy"}, &call.g);
    if (status != NNOPT_OK) return status;
    call.dtype = call.x->dtype;
    return run_conv(b, op, &call, dx->data, nnopt_tensor_nbytes(dx));
}

nnopt_status cuda_conv2d_bwd_filter(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in,
                                    int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = cuda_check_counts(b, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    conv_call call = {.kind = op->kind, .x = in[0], .w = out[0], .y = in[1]};
    status = conv_geometry_check(b, op, call.x, call.w, call.y,
                                 (const char *const[3]){"x", "dw", "dy"}, &call.g);
    if (status != NNOPT_OK) return status;
    call.dtype = call.x->dtype;
    return run_conv(b, op, &call, out[0]->data, nnopt_tensor_nbytes(out[0]));
}
