/* bfloat16 (NNOPT_BF16) storage: the top 16 bits of an IEEE f32 (sign, 8
 * exponent bits, 7 mantissa bits). Tensors of this dtype hold uint16_t
 * values; arithmetic widens them to f32, which is exact, and rounds results
 * back to nearest, ties to even. These helpers are the one definition of
 * that rounding for the core and every plugin. */
#ifndef NNOPT_BF16_H
#define NNOPT_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exact: every bf16 value is an f32 value. */
static inline float nnopt_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round to nearest, ties to even. A NaN stays a NaN (quieted, sign kept):
 * plain rounding could carry a NaN's low payload bits into an infinity. */
static inline uint16_t nnopt_bf16_from_f32(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* Round to nearest even straight from double. Going through f32 first would
 * round twice (a value just above a bf16 tie can become the tie in f32), so
 * the f32 step rounds to odd instead: truncate, then set the last bit when
 * anything was dropped. f32 keeps 16 more bits than bf16, which makes the
 * second rounding exact. */
static inline uint16_t nnopt_bf16_from_f64(double d) {
    if (d != d) return nnopt_bf16_from_f32((float)d);
    float f = (float)d;
    if ((double)f == d || f - f != 0) return nnopt_bf16_from_f32(f); /* exact, or overflowed */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    double magnitude = d < 0 ? -d : d, rounded = f < 0 ? -(double)f : (double)f;
    if (rounded > magnitude) bits -= 1; /* step back toward zero: truncation */
    bits |= 1u;                         /* sticky: the value was inexact */
    memcpy(&f, &bits, sizeof f);
    return nnopt_bf16_from_f32(f);
}

#ifdef __cplusplus
}
#endif
#endif
