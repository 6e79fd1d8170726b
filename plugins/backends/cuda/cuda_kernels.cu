// The cuda backend's own kernels: everything cuDNN and cuBLAS do not cover
// (optimizer steps, losses, element-wise ops, dropout, bias gradients), the
// direct convolutions used for depthwise layers, and kernel versions of the
// cuDNN-backed ops (pooling, activations, batch norm) for `kernels = own`.
// Each kernel mirrors the reference loop in plugins/backends/common: values
// are computed in double and rounded once to the tensor's type; reductions
// accumulate in double (except the convolutions' window sums, which
// accumulate in T as the reference does). The ops that run in bf16 are
// instantiated for bf16 storage too (bf16_value below).
#include "cuda_kernels.h"

#include <cuda_bf16.h>
#include <math.h>

#include "cuda_bf16_round.h"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

int64_t blocks_for(int64_t count) {
    const int64_t blocks = (count + kThreads - 1) / kThreads;
    return blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks);
}

#define GRID_STRIDE_LOOP(i, count)                                                                 \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count);                  \
         i += (int64_t)blockDim.x * gridDim.x)

// Runs `body` with T bound to float or double according to `dtype`.
#define WITH_FLOAT_TYPE(dtype, body)                                                               \
    do {                                                                                           \
        if ((dtype) == NNOPT_F32) {                                                                \
            using T = float;                                                                       \
            body;                                                                                  \
        } else {                                                                                   \
            using T = double;                                                                      \
            body;                                                                                  \
        }                                                                                          \
    } while (0)

// bf16 storage (NNOPT_BF16). Loads widen exactly. A store rounds as the
// reference's bf16 path does, which runs its f32 kernel on widened copies and
// narrows the results: a value computed in double goes to f32, then to bf16,
// each to nearest even. No arithmetic happens in this type: kernels compute
// in double, or sum in Compute<T> (f32), as their f32 instance does.
struct bf16_value {
    __nv_bfloat16 bits;
    bf16_value() = default;
    __device__ explicit bf16_value(double v)
        : bits(__ushort_as_bfloat16(cuda_bf16_from_f32((float)v))) {}
    __device__ operator double() const { return (double)__bfloat162float(bits); }
    __device__ static bf16_value from_bits(uint16_t h) {
        bf16_value r;
        r.bits = __ushort_as_bfloat16(h);
        return r;
    }
    __device__ uint16_t to_bits() const { return __bfloat16_as_ushort(bits); }
};

// The type window sums accumulate in: T, and f32 for bf16 (the reference's
// f32 kernel is what its bf16 path runs).
template <typename T> struct Compute { using type = T; };
template <> struct Compute<bf16_value> { using type = float; };

// WITH_FLOAT_TYPE plus bf16_value for NNOPT_BF16: for the launchers of the
// ops that run in bf16 (cuda_kernels.h says which).
#define WITH_STORAGE_TYPE(dtype, body)                                                             \
    do {                                                                                           \
        if ((dtype) == NNOPT_BF16) {                                                               \
            using T = bf16_value;                                                                  \
            body;                                                                                  \
        } else {                                                                                   \
            WITH_FLOAT_TYPE(dtype, body);                                                          \
        }                                                                                          \
    } while (0)

// ---- block reductions (blockDim.x a multiple of 32, at most 1024) ----

enum class Reduce { kSum, kMax };

template <Reduce kOp> __device__ double combine(double a, double b) {
    return kOp == Reduce::kSum ? a + b : fmax(a, b);
}

// Every thread gets the block's total (or maximum) of v.
template <Reduce kOp> __device__ double block_reduce(double v) {
    __shared__ double partial[32];
    __shared__ double total;
    const double identity = kOp == Reduce::kSum ? 0.0 : -INFINITY;
    for (int offset = 16; offset > 0; offset >>= 1)
        v = combine<kOp>(v, __shfl_down_sync(0xffffffffu, v, offset));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); // an earlier call may still be reading `partial`
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)((blockDim.x + 31) / 32) ? partial[lane] : identity;
        for (int offset = 16; offset > 0; offset >>= 1)
            v = combine<kOp>(v, __shfl_down_sync(0xffffffffu, v, offset));
        if (lane == 0) total = v;
    }
    __syncthreads();
    return total;
}

// ---- convolutions ----

template <typename T>
__global__ void conv2d_forward_kernel(cuda_conv_geometry g, const T *x, const T *w, const T *bias,
                                      T *y) {
    using C = typename Compute<T>::type;
    const int64_t c_per_group = g.c / g.groups, k_per_group = g.k / g.groups;
    const int64_t count = g.n * g.k * g.p * g.q;
    GRID_STRIDE_LOOP(index, count) {
        const int64_t q = index % g.q, p = (index / g.q) % g.p, k = (index / (g.q * g.p)) % g.k,
                      n = index / (g.q * g.p * g.k);
        const int64_t first_channel = (k / k_per_group) * c_per_group;
        C sum = bias ? (C)bias[k] : (C)0;
        for (int64_t cg = 0; cg < c_per_group; cg++) {
            const T *x_plane = x + ((n * g.c + first_channel + cg) * g.h) * g.w;
            const T *w_plane = w + ((k * c_per_group + cg) * g.r) * g.s;
            for (int64_t r = 0; r < g.r; r++) {
                const int64_t ih = p * g.stride_h - g.pad_h + r;
                if (ih < 0 || ih >= g.h) continue;
                for (int64_t s = 0; s < g.s; s++) {
                    const int64_t iw = q * g.stride_w - g.pad_w + s;
                    if (iw < 0 || iw >= g.w) continue;
                    sum += (C)x_plane[ih * g.w + iw] * (C)w_plane[r * g.s + s];
                }
            }
        }
        y[index] = (T)sum;
    }
}

// Gathers, for each input element, the output gradients of every window that read it.
// With accumulate the sum starts from dx's own value (conv2d_bwd_data_add),
// as the reference's accumulating loop does.
template <typename T>
__global__ void conv2d_backward_data_kernel(cuda_conv_geometry g, const T *dy, const T *w, T *dx,
                                            int accumulate) {
    const int64_t c_per_group = g.c / g.groups, k_per_group = g.k / g.groups;
    const int64_t count = g.n * g.c * g.h * g.w;
    GRID_STRIDE_LOOP(index, count) {
        const int64_t iw = index % g.w, ih = (index / g.w) % g.h, c = (index / (g.w * g.h)) % g.c,
                      n = index / (g.w * g.h * g.c);
        const int64_t group = c / c_per_group, cg = c % c_per_group;
        T sum = accumulate ? dx[index] : (T)0;
        for (int64_t k = group * k_per_group; k < (group + 1) * k_per_group; k++) {
            const T *dy_plane = dy + ((n * g.k + k) * g.p) * g.q;
            const T *w_plane = w + ((k * c_per_group + cg) * g.r) * g.s;
            for (int64_t r = 0; r < g.r; r++) {
                const int64_t p_scaled = ih + g.pad_h - r;
                if (p_scaled < 0 || p_scaled % g.stride_h != 0) continue;
                const int64_t p = p_scaled / g.stride_h;
                if (p >= g.p) continue;
                for (int64_t s = 0; s < g.s; s++) {
                    const int64_t q_scaled = iw + g.pad_w - s;
                    if (q_scaled < 0 || q_scaled % g.stride_w != 0) continue;
                    const int64_t q = q_scaled / g.stride_w;
                    if (q >= g.q) continue;
                    sum += dy_plane[p * g.q + q] * w_plane[r * g.s + s];
                }
            }
        }
        dx[index] = sum;
    }
}

// One block per filter tap (k, cg, r, s), reducing over n, p, q.
template <typename T>
__global__ void conv2d_backward_filter_kernel(cuda_conv_geometry g, const T *x, const T *dy,
                                              T *dw) {
    const int64_t c_per_group = g.c / g.groups, k_per_group = g.k / g.groups;
    const int64_t taps = g.k * c_per_group * g.r * g.s, positions = g.n * g.p * g.q;
    for (int64_t tap = blockIdx.x; tap < taps; tap += gridDim.x) {
        const int64_t s = tap % g.s, r = (tap / g.s) % g.r, cg = (tap / (g.s * g.r)) % c_per_group,
                      k = tap / (g.s * g.r * c_per_group);
        const int64_t channel = (k / k_per_group) * c_per_group + cg;
        double sum = 0.0;
        for (int64_t i = threadIdx.x; i < positions; i += blockDim.x) {
            const int64_t q = i % g.q, p = (i / g.q) % g.p, n = i / (g.q * g.p);
            const int64_t ih = p * g.stride_h - g.pad_h + r, iw = q * g.stride_w - g.pad_w + s;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            sum += (double)dy[((n * g.k + k) * g.p + p) * g.q + q] *
                   (double)x[((n * g.c + channel) * g.h + ih) * g.w + iw];
        }
        sum = block_reduce<Reduce::kSum>(sum);
        if (threadIdx.x == 0) dw[tap] = (T)sum;
    }
}

// ---- dense bias, bias gradient ----

template <typename T>
__global__ void fill_rows_kernel(int64_t rows, int64_t cols, const T *bias, T *y) {
    GRID_STRIDE_LOOP(i, rows * cols) y[i] = bias[i % cols];
}

template <typename T>
__global__ void fill_channels_kernel(int64_t count, int64_t channels, int64_t inner, const T *bias,
                                     T *y) {
    GRID_STRIDE_LOOP(i, count) y[i] = bias[(i / inner) % channels];
}

template <typename T>
__global__ void bias_backward_kernel(int64_t batch, int64_t channels, int64_t inner, const T *dy,
                                     T *db) {
    for (int64_t k = blockIdx.x; k < channels; k += gridDim.x) {
        double sum = 0.0;
        for (int64_t i = threadIdx.x; i < batch * inner; i += blockDim.x) {
            const int64_t n = i / inner, j = i % inner;
            sum += (double)dy[(n * channels + k) * inner + j];
        }
        sum = block_reduce<Reduce::kSum>(sum);
        if (threadIdx.x == 0) db[k] = (T)sum;
    }
}

// ---- pooling ----

// The first largest in-bounds input of window (p, q) in scan order; -1 if none.
template <typename T>
__device__ int64_t pool_window_argmax(const cuda_pool_geometry &g, const T *plane, int64_t p,
                                      int64_t q) {
    int64_t best = -1;
    for (int64_t r = 0; r < g.kernel_h; r++) {
        const int64_t ih = p * g.stride_h - g.pad_h + r;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t s = 0; s < g.kernel_w; s++) {
            const int64_t iw = q * g.stride_w - g.pad_w + s;
            if (iw < 0 || iw >= g.w) continue;
            const int64_t index = ih * g.w + iw;
            if (best < 0 || plane[index] > plane[best]) best = index;
        }
    }
    return best;
}

template <typename T>
__global__ void pool2d_forward_kernel(cuda_pool_geometry g, const T *x, T *y) {
    using C = typename Compute<T>::type;
    const C window_size = (C)(g.kernel_h * g.kernel_w);
    GRID_STRIDE_LOOP(index, g.planes * g.p * g.q) {
        const int64_t q = index % g.q, p = (index / g.q) % g.p, plane = index / (g.q * g.p);
        const T *x_plane = x + plane * g.h * g.w;
        if (g.kind == NNOPT_POOL_MAX) {
            const int64_t best = pool_window_argmax(g, x_plane, p, q);
            y[index] = best < 0 ? (T)0 : x_plane[best];
            continue;
        }
        C sum = (C)0;
        for (int64_t r = 0; r < g.kernel_h; r++) {
            const int64_t ih = p * g.stride_h - g.pad_h + r;
            if (ih < 0 || ih >= g.h) continue;
            for (int64_t s = 0; s < g.kernel_w; s++) {
                const int64_t iw = q * g.stride_w - g.pad_w + s;
                if (iw < 0 || iw >= g.w) continue;
                sum += (C)x_plane[ih * g.w + iw];
            }
        }
        y[index] = (T)(sum / window_size);
    }
}

// For each input element, the gradients of the windows that chose it (max)
// or contain it (avg), added in the reference's (p, q) order.
template <typename T>
__global__ void pool2d_backward_kernel(cuda_pool_geometry g, const T *x, const T *dy, T *dx) {
    const T window_size = (T)(g.kernel_h * g.kernel_w);
    GRID_STRIDE_LOOP(index, g.planes * g.h * g.w) {
        const int64_t iw = index % g.w, ih = (index / g.w) % g.h, plane = index / (g.w * g.h);
        const T *x_plane = x + plane * g.h * g.w;
        const T *dy_plane = dy + plane * g.p * g.q;
        // Windows p with p*stride - pad <= ih <= p*stride - pad + kernel - 1.
        const int64_t top = ih + g.pad_h - g.kernel_h + 1, left = iw + g.pad_w - g.kernel_w + 1;
        const int64_t p_first = top <= 0 ? 0 : (top + g.stride_h - 1) / g.stride_h;
        const int64_t q_first = left <= 0 ? 0 : (left + g.stride_w - 1) / g.stride_w;
        const int64_t p_last = min((ih + g.pad_h) / g.stride_h, g.p - 1);
        const int64_t q_last = min((iw + g.pad_w) / g.stride_w, g.q - 1);
        T sum = (T)0;
        for (int64_t p = p_first; p <= p_last; p++) {
            for (int64_t q = q_first; q <= q_last; q++) {
                const T grad = dy_plane[p * g.q + q];
                if (g.kind == NNOPT_POOL_MAX) {
                    if (pool_window_argmax(g, x_plane, p, q) == ih * g.w + iw) sum += grad;
                } else {
                    sum += grad / window_size;
                }
            }
        }
        dx[index] = sum;
    }
}

// ---- activations ----

constexpr double kGeluTanhScale = 0.7978845608028654; // sqrt(2 / pi)
constexpr double kGeluTanhCubic = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

__device__ double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

__device__ double act_value(nnopt_act_kind kind, double x) {
    switch (kind) {
    case NNOPT_ACT_IDENTITY:
        return x;
    case NNOPT_ACT_RELU:
        return x < 0 ? 0.0 : x;
    case NNOPT_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(kGeluTanhScale * (x + kGeluTanhCubic * x * x * x)));
    case NNOPT_ACT_GELU_ERF:
        return 0.5 * x * (1.0 + erf(x * kInvSqrt2));
    case NNOPT_ACT_TANH:
        return tanh(x);
    case NNOPT_ACT_SIGMOID:
        return sigmoid(x);
    case NNOPT_ACT_RELU6:
        return x < 0 ? 0.0 : (x > 6 ? 6.0 : x);
    default:
        return 0.0;
    }
}

__device__ double act_derivative(nnopt_act_kind kind, double x) {
    switch (kind) {
    case NNOPT_ACT_IDENTITY:
        return 1.0;
    case NNOPT_ACT_RELU:
        return x > 0 ? 1.0 : 0.0;
    case NNOPT_ACT_GELU_TANH: {
        const double t = tanh(kGeluTanhScale * (x + kGeluTanhCubic * x * x * x));
        const double du_dx = kGeluTanhScale * (1.0 + 3.0 * kGeluTanhCubic * x * x);
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx;
    }
    case NNOPT_ACT_GELU_ERF:
        return 0.5 * (1.0 + erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * exp(-0.5 * x * x);
    case NNOPT_ACT_TANH: {
        const double t = tanh(x);
        return 1.0 - t * t;
    }
    case NNOPT_ACT_SIGMOID: {
        const double s = sigmoid(x);
        return s * (1.0 - s);
    }
    case NNOPT_ACT_RELU6:
        return x > 0 && x < 6 ? 1.0 : 0.0;
    default:
        return 0.0;
    }
}

template <typename T>
__global__ void act_forward_kernel(nnopt_act_kind kind, int64_t count, const T *x, T *y) {
    GRID_STRIDE_LOOP(i, count) y[i] = (T)act_value(kind, (double)x[i]);
}

template <typename T>
__global__ void act_backward_kernel(nnopt_act_kind kind, int64_t count, const T *x, const T *dy,
                                    T *dx) {
    GRID_STRIDE_LOOP(i, count) dx[i] = (T)((double)dy[i] * act_derivative(kind, (double)x[i]));
}

// ---- element-wise ----

template <typename T> __global__ void add_kernel(int64_t count, const T *a, const T *b, T *y) {
    GRID_STRIDE_LOOP(i, count) y[i] = (T)((double)a[i] + (double)b[i]);
}

template <typename T> __global__ void scale_kernel(int64_t count, double scale, const T *x, T *y) {
    GRID_STRIDE_LOOP(i, count) y[i] = (T)((double)x[i] * scale);
}

// The fused ops' relu epilogue: y = relu(x + bias[channel] + r), each sum
// rounded to T as the reference rounds it (a conv's output with its bias, then
// the residual added in double and rounded once). bias and r may be NULL; y
// may alias x. The relu is the reference's (ref_relu_in_place, ref_act):
// v < 0 ? 0 : v, so NaN and -0 pass through unchanged.
template <typename T>
__global__ void bias_add_relu_kernel(int64_t count, int64_t channels, int64_t inner, const T *x,
                                     const T *bias, const T *r, T *y) {
    GRID_STRIDE_LOOP(i, count) {
        T v = x[i];
        if (bias) v = (T)((double)v + (double)bias[(i / inner) % channels]);
        if (r) v = (T)((double)v + (double)r[i]);
        y[i] = v < (T)0 ? (T)0 : v;
    }
}

// out = mask > 0 ? x : +0 (NaN and -0 masks give +0): the reference's
// ref_keep_where_positive, a relu's gradient masked by its output. out may
// alias x and mask.
template <typename T>
__global__ void keep_where_positive_kernel(int64_t count, const T *mask, const T *x, T *out) {
    GRID_STRIDE_LOOP(i, count) out[i] = mask[i] > (T)0 ? x[i] : (T)0;
}

template <typename To, typename From> __device__ To convert(From v) {
    return (To)v;
}
// Casts to and from bf16 give the reference's bits, NaNs included (see
// cuda_bf16_round.h); f64 -> bf16 rounds once, as nnopt_bf16_from_f64.
template <> __device__ bf16_value convert<bf16_value, float>(float v) {
    return bf16_value::from_bits(cuda_bf16_from_f32(v));
}
template <> __device__ bf16_value convert<bf16_value, double>(double v) {
    return bf16_value::from_bits(cuda_bf16_from_f64(v));
}
template <> __device__ float convert<float, bf16_value>(bf16_value v) {
    return cuda_bf16_cast_to_f32(v.to_bits());
}
template <> __device__ double convert<double, bf16_value>(bf16_value v) {
    return cuda_f32_to_f64(cuda_bf16_to_f32(v.to_bits()));
}

template <typename From, typename To>
__global__ void cast_kernel(int64_t count, const From *x, To *y) {
    GRID_STRIDE_LOOP(i, count) y[i] = convert<To>(x[i]);
}

template <typename From>
void launch_cast(cudaStream_t stream, nnopt_dtype y_dtype, int64_t count, const void *x, void *y) {
    WITH_STORAGE_TYPE(y_dtype, (cast_kernel<From, T><<<blocks_for(count), kThreads, 0, stream>>>(
                                   count, (const From *)x, (T *)y)));
}

// ---- optimizers ----

template <typename T>
__device__ void sgd_step(const nnopt_sgd_params &sp, int64_t i, T *param, const T *grad,
                         T *velocity) {
    const double g = (double)grad[i] + sp.weight_decay * (double)param[i];
    double step = g;
    if (sp.momentum != 0.0) {
        const double v = sp.momentum * (double)velocity[i] + g;
        velocity[i] = (T)v;
        step = sp.nesterov ? g + sp.momentum * v : v;
    }
    param[i] = (T)((double)param[i] - sp.lr * step);
}

template <typename T>
__device__ void adam_step(const nnopt_adam_params &ap, double step_size, double sqrt_correction2,
                          int64_t i, T *param, const T *grad, T *m, T *v) {
    const double g = (double)grad[i] + ap.weight_decay * (double)param[i];
    const double m_new = ap.beta1 * (double)m[i] + (1.0 - ap.beta1) * g;
    const double v_new = ap.beta2 * (double)v[i] + (1.0 - ap.beta2) * g * g;
    m[i] = (T)m_new;
    v[i] = (T)v_new;
    const double denom = sqrt(v_new) / sqrt_correction2 + ap.eps;
    param[i] = (T)((double)param[i] - step_size * m_new / denom);
}

// blockIdx.y picks the entry; its blocks stride over the entry's values.
template <typename T> __global__ void update_batch_kernel(const cuda_update_batch batch) {
    const cuda_update_entry &e = batch.entry[blockIdx.y];
    T *param = (T *)e.param;
    const T *grad = (const T *)e.grad;
    if (batch.kind == CUDA_UPDATE_SGD) {
        GRID_STRIDE_LOOP(i, e.count) sgd_step<T>(batch.sgd, i, param, grad, (T *)e.state0);
    } else {
        GRID_STRIDE_LOOP(i, e.count)
        adam_step<T>(batch.adam, batch.step_size, batch.sqrt_correction2, i, param, grad,
                     (T *)e.state0, (T *)e.state1);
    }
}

// ---- dropout: the counter-based mask of ops.h ----

__device__ uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void dropout_forward_kernel(nnopt_dropout_params dp, int64_t count, const T *x, T *y,
                                       T *mask) {
    const double keep_scale = 1.0 / (1.0 - dp.p);
    GRID_STRIDE_LOOP(i, count) {
        const double u =
            (double)(splitmix64(dp.seed + (uint64_t)i) >> 11) * (1.0 / 9007199254740992.0);
        const double scale = u >= dp.p ? keep_scale : 0.0;
        const double value = (double)x[i]; // read first: y may alias x
        mask[i] = (T)scale;
        y[i] = (T)(value * scale);
    }
}

template <typename T>
__global__ void dropout_backward_kernel(int64_t count, const T *dy, const T *mask, T *dx) {
    GRID_STRIDE_LOOP(i, count) dx[i] = (T)((double)dy[i] * (double)mask[i]);
}

// ---- batch normalization: one block per channel ----

template <typename T>
__global__ void batchnorm_train_kernel(int64_t batch, int64_t channels, int64_t spatial,
                                       nnopt_bn_params bp, const T *x, const T *gamma,
                                       const T *beta, T *running_mean, T *running_var, T *y,
                                       T *save_mean, T *save_invstd) {
    const int64_t values = batch * spatial;
    const double count = (double)values;
    const double unbias = count > 1 ? count / (count - 1) : 1.0;
    for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
        double sum = 0.0;
        for (int64_t i = threadIdx.x; i < values; i += blockDim.x)
            sum += (double)x[((i / spatial) * channels + c) * spatial + i % spatial];
        const double mean = block_reduce<Reduce::kSum>(sum) / count;
        double squares = 0.0;
        for (int64_t i = threadIdx.x; i < values; i += blockDim.x) {
            const double centered =
                (double)x[((i / spatial) * channels + c) * spatial + i % spatial] - mean;
            squares += centered * centered;
        }
        const double variance = block_reduce<Reduce::kSum>(squares) / count;
        const double invstd = 1.0 / sqrt(variance + bp.eps);
        const double scale = (double)gamma[c] * invstd, shift = (double)beta[c];
        for (int64_t i = threadIdx.x; i < values; i += blockDim.x) {
            const int64_t offset = ((i / spatial) * channels + c) * spatial + i % spatial;
            y[offset] = (T)(((double)x[offset] - mean) * scale + shift);
        }
        if (threadIdx.x == 0) {
            save_mean[c] = (T)mean;
            save_invstd[c] = (T)invstd;
            running_mean[c] =
                (T)((1.0 - bp.momentum) * (double)running_mean[c] + bp.momentum * mean);
            running_var[c] =
                (T)((1.0 - bp.momentum) * (double)running_var[c] + bp.momentum * variance * unbias);
        }
    }
}

template <typename T>
__global__ void batchnorm_infer_kernel(int64_t batch, int64_t channels, int64_t spatial, double eps,
                                       const T *x, const T *gamma, const T *beta,
                                       const T *running_mean, const T *running_var, T *y) {
    GRID_STRIDE_LOOP(i, batch * channels * spatial) {
        const int64_t c = (i / spatial) % channels;
        const double scale = (double)gamma[c] / sqrt((double)running_var[c] + eps);
        y[i] = (T)(((double)x[i] - (double)running_mean[c]) * scale + (double)beta[c]);
    }
}

template <typename T>
__global__ void batchnorm_backward_kernel(int64_t batch, int64_t channels, int64_t spatial,
                                          const T *x, const T *gamma, const T *dy,
                                          const T *save_mean, const T *save_invstd, T *dx,
                                          T *dgamma, T *dbeta) {
    const int64_t values = batch * spatial;
    const double count = (double)values;
    for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
        const double mean = (double)save_mean[c], invstd = (double)save_invstd[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t i = threadIdx.x; i < values; i += blockDim.x) {
            const int64_t offset = ((i / spatial) * channels + c) * spatial + i % spatial;
            const double xhat = ((double)x[offset] - mean) * invstd;
            sum_dy += (double)dy[offset];
            sum_dy_xhat += (double)dy[offset] * xhat;
        }
        sum_dy = block_reduce<Reduce::kSum>(sum_dy);
        sum_dy_xhat = block_reduce<Reduce::kSum>(sum_dy_xhat);
        const double scale = (double)gamma[c] * invstd / count;
        for (int64_t i = threadIdx.x; i < values; i += blockDim.x) {
            const int64_t offset = ((i / spatial) * channels + c) * spatial + i % spatial;
            const double xhat = ((double)x[offset] - mean) * invstd;
            dx[offset] = (T)(scale * (count * (double)dy[offset] - sum_dy - xhat * sum_dy_xhat));
        }
        if (threadIdx.x == 0) {
            dbeta[c] = (T)sum_dy;
            dgamma[c] = (T)sum_dy_xhat;
        }
    }
}

// ---- softmax cross-entropy: one block per row, then one block for the mean ----

template <typename T> __device__ double xent_target(const cuda_xent_args &a, int64_t n, int64_t k) {
    if (a.soft_targets) return (double)((const T *)a.soft_targets)[n * a.classes + k];
    return k == a.labels[n] ? 1.0 : 0.0;
}

template <typename T> __global__ void softmax_xent_rows_kernel(cuda_xent_args a) {
    const double grad_scale = a.weight / ((double)a.batch * a.temperature);
    const T *logits = (const T *)a.logits, *log_probs = (const T *)a.log_probs;
    T *dlogits = (T *)a.dlogits;
    for (int64_t n = blockIdx.x; n < a.batch; n += gridDim.x) {
        if (a.labels && (a.labels[n] < 0 || a.labels[n] >= a.classes)) {
            if (threadIdx.x == 0) *a.bad_label = (int)(n + 1);
            continue;
        }
        // log p_k = z_k - shift with z = logits / T: shift = max z + log sum e^(z - max z),
        // or 0 when log p is given.
        double shift = 0.0;
        if (log_probs == nullptr) {
            double max_z = -INFINITY;
            for (int64_t k = threadIdx.x; k < a.classes; k += blockDim.x)
                max_z = fmax(max_z, (double)logits[n * a.classes + k] / a.temperature);
            max_z = block_reduce<Reduce::kMax>(max_z);
            double sum_exp = 0.0;
            for (int64_t k = threadIdx.x; k < a.classes; k += blockDim.x)
                sum_exp += exp((double)logits[n * a.classes + k] / a.temperature - max_z);
            shift = max_z + log(block_reduce<Reduce::kSum>(sum_exp));
        }
        double loss = 0.0, target_sum = 0.0;
        for (int64_t k = threadIdx.x; k < a.classes; k += blockDim.x) {
            const double log_p = log_probs
                                     ? (double)log_probs[n * a.classes + k]
                                     : (double)logits[n * a.classes + k] / a.temperature - shift;
            const double target = xent_target<T>(a, n, k);
            if (target != 0.0) loss -= target * log_p; // 0 * -inf would be NaN
            target_sum += target;
        }
        loss = block_reduce<Reduce::kSum>(loss);
        target_sum = block_reduce<Reduce::kSum>(target_sum);
        for (int64_t k = threadIdx.x; k < a.classes; k += blockDim.x) {
            const double log_p = log_probs
                                     ? (double)log_probs[n * a.classes + k]
                                     : (double)logits[n * a.classes + k] / a.temperature - shift;
            const double target = xent_target<T>(a, n, k);
            const double grad = (target_sum * exp(log_p) - target) * grad_scale;
            const int64_t index = n * a.classes + k;
            dlogits[index] = a.accumulate ? (T)((double)dlogits[index] + grad) : (T)grad;
        }
        if (threadIdx.x == 0) a.row_loss[n] = loss;
    }
}

template <typename T>
__global__ void mean_loss_kernel(int64_t batch, double weight, int accumulate,
                                 const double *row_loss, T *loss) {
    double sum = 0.0;
    for (int64_t n = threadIdx.x; n < batch; n += blockDim.x) sum += row_loss[n];
    sum = block_reduce<Reduce::kSum>(sum);
    if (threadIdx.x == 0) {
        const double mean_loss = weight * sum / (double)batch;
        loss[0] = accumulate ? (T)((double)loss[0] + mean_loss) : (T)mean_loss;
    }
}

} // namespace

// ---- launchers ----

extern "C" {

cudaError_t cuda_conv2d_forward_direct(cudaStream_t stream, nnopt_dtype dtype,
                                       const cuda_conv_geometry *g, const void *x, const void *w,
                                       const void *bias, void *y) {
    const int64_t count = g->n * g->k * g->p * g->q;
    WITH_STORAGE_TYPE(dtype, (conv2d_forward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 *g, (const T *)x, (const T *)w, (const T *)bias, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_conv2d_backward_data_direct(cudaStream_t stream, nnopt_dtype dtype,
                                             const cuda_conv_geometry *g, const void *dy,
                                             const void *w, void *dx, int accumulate) {
    const int64_t count = g->n * g->c * g->h * g->w;
    WITH_FLOAT_TYPE(dtype,
                    (conv2d_backward_data_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                        *g, (const T *)dy, (const T *)w, (T *)dx, accumulate != 0)));
    return cudaGetLastError();
}

cudaError_t cuda_conv2d_backward_filter_direct(cudaStream_t stream, nnopt_dtype dtype,
                                               const cuda_conv_geometry *g, const void *x,
                                               const void *dy, void *dw) {
    const int64_t taps = g->k * (g->c / g->groups) * g->r * g->s;
    const int64_t blocks = taps < 1 ? 1 : (taps > kMaxBlocks ? kMaxBlocks : taps);
    WITH_FLOAT_TYPE(dtype, (conv2d_backward_filter_kernel<T><<<blocks, kThreads, 0, stream>>>(
                               *g, (const T *)x, (const T *)dy, (T *)dw)));
    return cudaGetLastError();
}

cudaError_t cuda_fill_rows(cudaStream_t stream, nnopt_dtype dtype, int64_t rows, int64_t cols,
                           const void *bias, void *y) {
    WITH_STORAGE_TYPE(dtype, (fill_rows_kernel<T><<<blocks_for(rows * cols), kThreads, 0, stream>>>(
                                 rows, cols, (const T *)bias, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_fill_channels(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *bias, void *y) {
    const int64_t count = batch * channels * inner;
    WITH_STORAGE_TYPE(dtype, (fill_channels_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 count, channels, inner, (const T *)bias, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_bias_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *dy, void *db) {
    const int64_t blocks = channels < 1 ? 1 : (channels > kMaxBlocks ? kMaxBlocks : channels);
    WITH_FLOAT_TYPE(dtype, (bias_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
                               batch, channels, inner, (const T *)dy, (T *)db)));
    return cudaGetLastError();
}

cudaError_t cuda_pool2d_forward(cudaStream_t stream, nnopt_dtype dtype, const cuda_pool_geometry *g,
                                const void *x, void *y) {
    const int64_t count = g->planes * g->p * g->q;
    WITH_STORAGE_TYPE(dtype, (pool2d_forward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 *g, (const T *)x, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_pool2d_backward(cudaStream_t stream, nnopt_dtype dtype,
                                 const cuda_pool_geometry *g, const void *x, const void *dy,
                                 void *dx) {
    const int64_t count = g->planes * g->h * g->w;
    WITH_FLOAT_TYPE(dtype, (pool2d_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                               *g, (const T *)x, (const T *)dy, (T *)dx)));
    return cudaGetLastError();
}

cudaError_t cuda_act_forward(cudaStream_t stream, nnopt_dtype dtype, nnopt_act_kind kind,
                             int64_t count, const void *x, void *y) {
    WITH_STORAGE_TYPE(dtype, (act_forward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 kind, count, (const T *)x, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_act_backward(cudaStream_t stream, nnopt_dtype dtype, nnopt_act_kind kind,
                              int64_t count, const void *x, const void *dy, void *dx) {
    WITH_FLOAT_TYPE(dtype, (act_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                               kind, count, (const T *)x, (const T *)dy, (T *)dx)));
    return cudaGetLastError();
}

cudaError_t cuda_add(cudaStream_t stream, nnopt_dtype dtype, int64_t count, const void *a,
                     const void *b, void *y) {
    WITH_STORAGE_TYPE(dtype, (add_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 count, (const T *)a, (const T *)b, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_scale(cudaStream_t stream, nnopt_dtype dtype, int64_t count, double scale,
                       const void *x, void *y) {
    WITH_FLOAT_TYPE(dtype, (scale_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                               count, scale, (const T *)x, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_bias_add_relu(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                               int64_t channels, int64_t inner, const void *x, const void *bias,
                               const void *r, void *y) {
    const int64_t count = batch * channels * inner;
    WITH_FLOAT_TYPE(
        dtype, (bias_add_relu_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                   count, channels, inner, (const T *)x, (const T *)bias, (const T *)r, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_keep_where_positive(cudaStream_t stream, nnopt_dtype dtype, int64_t count,
                                     const void *mask, const void *x, void *out) {
    WITH_FLOAT_TYPE(dtype,
                    (keep_where_positive_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                        count, (const T *)mask, (const T *)x, (T *)out)));
    return cudaGetLastError();
}

cudaError_t cuda_cast(cudaStream_t stream, nnopt_dtype x_dtype, nnopt_dtype y_dtype, int64_t count,
                      const void *x, void *y) {
    WITH_STORAGE_TYPE(x_dtype, (launch_cast<T>(stream, y_dtype, count, x, y)));
    return cudaGetLastError();
}

// Passed by value: within the 4 KiB of kernel parameters every CUDA version takes.
static_assert(sizeof(cuda_update_batch) <= 4096, "cuda_update_batch exceeds 4 KiB");

cudaError_t cuda_update_run(cudaStream_t stream, const cuda_update_batch *batch) {
    // Enough blocks for the largest entry, up to a few hundred: the smaller
    // entries' extra blocks return at once.
    const int64_t wanted = blocks_for(batch->largest);
    const dim3 grid((unsigned)(wanted < 256 ? wanted : 256), (unsigned)batch->n);
    WITH_FLOAT_TYPE(batch->dtype, (update_batch_kernel<T><<<grid, kThreads, 0, stream>>>(*batch)));
    return cudaGetLastError();
}

cudaError_t cuda_dropout_forward(cudaStream_t stream, nnopt_dtype dtype,
                                 const nnopt_dropout_params *dp, int64_t count, const void *x,
                                 void *y, void *mask) {
    WITH_STORAGE_TYPE(dtype, (dropout_forward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                                 *dp, count, (const T *)x, (T *)y, (T *)mask)));
    return cudaGetLastError();
}

cudaError_t cuda_dropout_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t count,
                                  const void *dy, const void *mask, void *dx) {
    WITH_FLOAT_TYPE(dtype, (dropout_backward_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                               count, (const T *)dy, (const T *)mask, (T *)dx)));
    return cudaGetLastError();
}

cudaError_t cuda_batchnorm_train(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                 int64_t channels, int64_t spatial, const nnopt_bn_params *bp,
                                 const void *x, const void *gamma, const void *beta,
                                 void *running_mean, void *running_var, void *y, void *save_mean,
                                 void *save_invstd) {
    const int64_t blocks = channels < 1 ? 1 : (channels > kMaxBlocks ? kMaxBlocks : channels);
    WITH_STORAGE_TYPE(
        dtype, (batchnorm_train_kernel<T><<<blocks, kThreads, 0, stream>>>(
                   batch, channels, spatial, *bp, (const T *)x, (const T *)gamma, (const T *)beta,
                   (T *)running_mean, (T *)running_var, (T *)y, (T *)save_mean, (T *)save_invstd)));
    return cudaGetLastError();
}

cudaError_t cuda_batchnorm_infer(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                 int64_t channels, int64_t spatial, double eps, const void *x,
                                 const void *gamma, const void *beta, const void *running_mean,
                                 const void *running_var, void *y) {
    const int64_t count = batch * channels * spatial;
    WITH_STORAGE_TYPE(
        dtype, (batchnorm_infer_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(
                   batch, channels, spatial, eps, (const T *)x, (const T *)gamma, (const T *)beta,
                   (const T *)running_mean, (const T *)running_var, (T *)y)));
    return cudaGetLastError();
}

cudaError_t cuda_batchnorm_backward(cudaStream_t stream, nnopt_dtype dtype, int64_t batch,
                                    int64_t channels, int64_t spatial, const void *x,
                                    const void *gamma, const void *dy, const void *save_mean,
                                    const void *save_invstd, void *dx, void *dgamma, void *dbeta) {
    const int64_t blocks = channels < 1 ? 1 : (channels > kMaxBlocks ? kMaxBlocks : channels);
    WITH_FLOAT_TYPE(dtype, (batchnorm_backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
                               batch, channels, spatial, (const T *)x, (const T *)gamma,
                               (const T *)dy, (const T *)save_mean, (const T *)save_invstd, (T *)dx,
                               (T *)dgamma, (T *)dbeta)));
    return cudaGetLastError();
}

cudaError_t cuda_softmax_xent(cudaStream_t stream, nnopt_dtype dtype, const cuda_xent_args *a) {
    const int64_t blocks = a->batch < 1 ? 1 : (a->batch > kMaxBlocks ? kMaxBlocks : a->batch);
    const int row_threads = a->classes <= 64 ? 32 : (a->classes <= 1024 ? 128 : kThreads);
    WITH_STORAGE_TYPE(dtype, (softmax_xent_rows_kernel<T><<<blocks, row_threads, 0, stream>>>(*a)));
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess) return status;
    WITH_STORAGE_TYPE(dtype, (mean_loss_kernel<T><<<1, kThreads, 0, stream>>>(
                                 a->batch, a->weight, a->accumulate, a->row_loss, (T *)a->loss)));
    return cudaGetLastError();
}

} // extern "C"
