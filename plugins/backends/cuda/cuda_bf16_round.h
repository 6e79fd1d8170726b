/* bf16 conversions for the cuda backend's kernels, callable from device and
 * host code alike: include/nnopt/bf16.h's steps, restated because device code
 * cannot call that header's host functions. A bf16 result on the GPU must
 * have exactly the reference's bits, so these must not drift from it:
 * tests/test_cuda_bf16.c (mode `rounding`, no GPU needed) compares them on
 * the host, input for input. NaNs are converted between f32 and f64 with
 * integer steps, as the host's instructions convert them (quieted, payload
 * kept): a GPU's conversion instructions may return a canonical NaN instead.
 * Plain C as well as CUDA C++. */
#ifndef NNOPT_CUDA_BF16_ROUND_H
#define NNOPT_CUDA_BF16_ROUND_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define CUDA_BF16_FN static __host__ __device__ inline
#else
#define CUDA_BF16_FN static inline
#endif

/* Exact. */
CUDA_BF16_FN float cuda_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The cast bf16 -> f32: exact, except that a NaN is quieted, as a host
 * conversion (the reference's cast goes through double) quiets it. */
CUDA_BF16_FN float cuda_bf16_cast_to_f32(uint16_t h) {
    return cuda_bf16_to_f32((h & 0x7fffu) > 0x7f80u ? (uint16_t)(h | 0x0040u) : h);
}

/* Nearest, ties to even; a NaN stays a NaN (quieted, sign kept). */
CUDA_BF16_FN uint16_t cuda_bf16_from_f32(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* Exact; a NaN is quieted and keeps its payload. */
CUDA_BF16_FN double cuda_f32_to_f64(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) <= 0x7f800000u) return (double)f;
    const uint64_t wide = (uint64_t)(bits & 0x80000000u) << 32 | 0x7ff0000000000000ull |
                          (uint64_t)((bits & 0x007fffffu) | 0x00400000u) << 29;
    double d;
    memcpy(&d, &wide, sizeof d);
    return d;
}

/* Nearest even straight from double, rounding once: the f32 step rounds to
 * odd (truncate, set the last bit when inexact), which the final rounding
 * cannot turn into a false tie. */
CUDA_BF16_FN uint16_t cuda_bf16_from_f64(double d) {
    if (d != d) { /* quieted, the payload's top bits kept */
        uint64_t wide;
        memcpy(&wide, &d, sizeof wide);
        const uint32_t bits = (uint32_t)(wide >> 32 & 0x80000000u) | 0x7fc00000u |
                              (uint32_t)(wide >> 29 & 0x007fffffu);
        float f;
        memcpy(&f, &bits, sizeof f);
        return cuda_bf16_from_f32(f);
    }
    float f = (float)d;
    if ((double)f == d || f - f != 0) return cuda_bf16_from_f32(f); /* exact, or overflowed */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const double magnitude = d < 0 ? -d : d, rounded = f < 0 ? -(double)f : (double)f;
    if (rounded > magnitude) bits -= 1; /* step back toward zero: truncation */
    bits |= 1u;                         /* sticky: the value was inexact */
    memcpy(&f, &bits, sizeof f);
    return cuda_bf16_from_f32(f);
}

#undef CUDA_BF16_FN
#endif
