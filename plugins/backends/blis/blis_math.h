/* Branch-free double-precision exp, tanh and sigmoid that the compiler can
 * vectorise (libm's are scalar calls), accurate to a few ulp; used by the
 * activation loops, which would otherwise be dominated by libm calls. */
#ifndef NNOPT_BLIS_MATH_H
#define NNOPT_BLIS_MATH_H

#include <stdint.h>

#include "nnopt/ops.h"
#include <string.h>

/* Loops worth compiling for several x86-64 levels, picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BLIS_VECTOR_CLONES                                                                         \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BLIS_VECTOR_CLONES
#endif

/* e^x: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial to r^13
 * (truncation below 1e-17), 2^n built in the exponent bits. The input is
 * clamped to keep 2^n normal: results saturate near 1e-308 and 1e308. */
static inline double blis_exp(double x) {
    x = x < -708.0 ? -708.0 : x;
    x = x > 709.0 ? 709.0 : x;
    /* Adding 1.5 * 2^52 rounds x / ln2 to an integer held in the low bits. */
    const double shifter = 0x1.8p52;
    const double t = x * 0x1.71547652b82fep0 + shifter;
    const double n = t - shifter;
    const double r = (x - n * 0x1.62e42fee00000p-1) - n * 0x1.a39ef35793c76p-33;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits + 1023u) << 52; /* n + bias into the exponent field */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double blis_sigmoid(double x) {
    return 1.0 / (1.0 + blis_exp(-x));
}

/* tanh: the Taylor series to x^19 near 0, where 1 - 2/(e^2x + 1) would lose
 * relative precision, and that formula elsewhere. */
static inline double blis_tanh(double x) {
    const double x2 = x * x;
    double p = -443861162.0 / 1856156927625.0;
    p = p * x2 + 6404582.0 / 10854718875.0;
    p = p * x2 - 929569.0 / 638512875.0;
    p = p * x2 + 21844.0 / 6081075.0;
    p = p * x2 - 1382.0 / 155925.0;
    p = p * x2 + 62.0 / 2835.0;
    p = p * x2 - 17.0 / 315.0;
    p = p * x2 + 2.0 / 15.0;
    p = p * x2 - 1.0 / 3.0;
    const double series = x + x * x2 * p;
    const double ax = x < 0 ? -x : x;
    const double big = 1.0 - 2.0 / (blis_exp(2.0 * ax) + 1.0);
    const double signed_big = x < 0 ? -big : big;
    return ax < 0.25 ? series : signed_big;
}

/* GELU, tanh form: 0.5 x (1 + tanh z) = x / (1 + e^-2z), z = c (x + 0.044715 x^3). */
#define BLIS_GELU_SCALE 0.7978845608028654 /* sqrt(2 / pi) */
#define BLIS_GELU_CUBIC 0.044715

static inline double blis_gelu_tanh(double x) {
    const double z = BLIS_GELU_SCALE * (x + BLIS_GELU_CUBIC * x * x * x);
    return x / (1.0 + blis_exp(-2.0 * z));
}

/* d/dx: with s = 1 / (1 + e^-2z) = (1 + tanh z) / 2, the derivative
 * 0.5 (1 + t) + 0.5 x (1 - t^2) z' is s + 2 x s (1 - s) z'. */
static inline double blis_gelu_tanh_grad(double x) {
    const double z = BLIS_GELU_SCALE * (x + BLIS_GELU_CUBIC * x * x * x);
    const double dz = BLIS_GELU_SCALE * (1.0 + 3.0 * BLIS_GELU_CUBIC * x * x);
    const double s = 1.0 / (1.0 + blis_exp(-2.0 * z));
    return s + 2.0 * x * s * (1.0 - s) * dz;
}

/* The smooth activations on a block of doubles, in place. Mixed float/double
 * loops around the branch-free math above do not vectorise (GCC reports
 * "control flow in loop": f32 ran 6x slower than f64), so the f32 paths widen
 * a block into doubles, call these, and narrow the result. */
#define BLIS_ACT_BLOCK 256

BLIS_VECTOR_CLONES
static inline void blis_act_block(int kind, double *restrict v, long n) {
    if (kind == NNOPT_ACT_TANH) {
#pragma omp simd
        for (long i = 0; i < n; i++) v[i] = blis_tanh(v[i]);
    } else if (kind == NNOPT_ACT_SIGMOID) {
#pragma omp simd
        for (long i = 0; i < n; i++) v[i] = blis_sigmoid(v[i]);
    } else {
#pragma omp simd
        for (long i = 0; i < n; i++) v[i] = blis_gelu_tanh(v[i]);
    }
}

/* v = act'(v) for the same kinds. */
BLIS_VECTOR_CLONES
static inline void blis_act_grad_block(int kind, double *restrict v, long n) {
    if (kind == NNOPT_ACT_TANH) {
#pragma omp simd
        for (long i = 0; i < n; i++) {
            const double t = blis_tanh(v[i]);
            v[i] = 1.0 - t * t;
        }
    } else if (kind == NNOPT_ACT_SIGMOID) {
#pragma omp simd
        for (long i = 0; i < n; i++) {
            const double s = blis_sigmoid(v[i]);
            v[i] = s * (1.0 - s);
        }
    } else {
#pragma omp simd
        for (long i = 0; i < n; i++) v[i] = blis_gelu_tanh_grad(v[i]);
    }
}

#endif
