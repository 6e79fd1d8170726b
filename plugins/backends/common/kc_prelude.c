/* The fixed head of every generated kernel file: vector types and the
 * branch-free activation functions the generated loops call. `real`, `vr`
 * and VL are defined before it by the generator (f32 or f64). */
#include "kc_codegen.h"

const char nnopt_kc_prelude[] =
    "#include <math.h>\n"
    "#include <stddef.h>\n"
    "#include <stdint.h>\n"
    "#ifdef _OPENMP\n#include <omp.h>\n#define KC_TID omp_get_thread_num()\n"
    "#else\n#define KC_TID 0\n#endif\n"
    "typedef int (*kc_fallback_fn)(void *ctx, int step);\n"
    "static inline vr ld(const real *p) { vr v; __builtin_memcpy(&v, p, sizeof v); return v; }\n"
    "static inline void st(real *p, vr v) { __builtin_memcpy(p, &v, sizeof v); }\n"
    "static inline vr ldn(const real *p, int n) { vr v = {0}; __builtin_memcpy(&v, p, (size_t)n * "
    "sizeof(real)); return v; }\n"
    "static inline vr bc(real s) { return (vr){0} + s; }\n"
    "static inline vr sel(vi m, vr a, vr b) { return (vr)((m & (vi)a) | (~m & (vi)b)); }\n"
    "static inline vr vmax(vr a, vr b) { return sel(a > b, a, b); }\n"
    "static inline vr vmin(vr a, vr b) { return sel(a < b, a, b); }\n"
    "static inline real hsum(vr v) { real s = 0; for (int i = 0; i < VL; i++) s += v[i]; return s; "
    "}\n"
    /* e^x: x = n ln2 + r, e^r by a Taylor polynomial, 2^n in the exponent
     * bits; clamped so 2^n stays normal. */
    "static inline vr vexp(vr x) {\n"
    "  x = vmax(vmin(x, bc(EXP_HI)), bc(EXP_LO));\n"
    "  vr t = x * (real)1.4426950408889634 + bc(EXP_SHIFT);\n"
    "  vr n = t - EXP_SHIFT;\n"
    "  vr r = (x - n * (real)0.693145751953125) - n * (real)1.4286068203094173e-06;\n"
    "  vr p = bc(EXP_C0);\n"
    "  EXP_POLY\n"
    "  vi bits = ((vi)t + EXP_BIAS) << EXP_MANT;\n"
    "  return p * (vr)bits;\n"
    "}\n"
    "static inline vr act_identity(vr x) { return x; }\n"
    "static inline vr act_relu(vr x) { return vmax(x, bc(0)); }\n"
    "static inline vr act_relu6(vr x) { return vmin(vmax(x, bc(0)), bc(6)); }\n"
    "static inline vr act_sigmoid(vr x) { return 1 / (1 + vexp(-x)); }\n"
    /* tanh = 1 - 2/(e^2x + 1), odd-symmetric; near 0 its Taylor series
     * keeps the relative precision that formula loses. */
    "static inline vr act_tanh(vr x) {\n"
    "  vr ax = vmax(x, -x), x2 = x * x;\n"
    "  vr big = 1 - 2 / (vexp(2 * ax) + 1);\n"
    "  big = sel(x < 0, -big, big);\n"
    "  vr small = x + x * x2 * ((real)-1 / 3 + x2 * ((real)2 / 15 + x2 * ((real)-17 / 315 + x2 * "
    "((real)62 / 2835))));\n"
    "  return sel(ax < (real)0.0625, small, big);\n"
    "}\n"
    /* GELU (tanh form) = x / (1 + e^-2z), z = sqrt(2/pi) (x + 0.044715 x^3). */
    "static inline vr act_gelu(vr x) {\n"
    "  vr z = (real)0.7978845608028654 * (x + (real)0.044715 * x * x * x);\n"
    "  return x / (1 + vexp(-2 * z));\n"
    "}\n"
    /* GELU (erf form) with libm's erf, one lane at a time. */
    "static inline vr act_gelu_erf(vr x) {\n"
    "  vr y;\n"
    "  for (int i = 0; i < VL; i++) y[i] = (real)0.5 * x[i] * (1 + ERF(x[i] * "
    "(real)0.7071067811865476));\n"
    "  return y;\n"
    "}\n";
