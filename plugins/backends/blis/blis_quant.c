/* int8 inference (conv2d_int8, dense_int8) on AVX-512 VNNI: vpdpbusd
 * multiplies u8 activations by s8 weights four at a time into int32 lanes,
 * exactly (no saturation), so the kernels (blis_quant_conv.c,
 * blis_quant_dense.c) give the reference kernels' accumulators bit for bit.
 * Without VNNI the reference kernels run. */
#include <string.h>

#include "blis_quant.h"
#include "ref_kernels.h"

int blis_int8_available(void) {
#if BLIS_HAVE_VNNI
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

#if BLIS_HAVE_VNNI
VNNI_TARGET void blis_quantize_row(const float *src, long count, __m512 inv, __m512 zp,
                                   uint8_t *dst) {
    for (long i = 0; i < count; i += 16) {
        const long n = count - i < 16 ? count - i : 16;
        const __mmask16 mask = (__mmask16)((1u << n) - 1);
        _mm512_mask_cvtepi32_storeu_epi8(dst + i, mask, quantize16(src + i, mask, inv, zp));
    }
}
#endif

nnopt_status blis_qlinear(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out) {
#if BLIS_HAVE_VNNI
    if (be->int8_vnni) {
        nnopt_qlinear_geometry g;
        nnopt_status st = nnopt_qlinear_check(be->host, op, in, n_in, out, n_out, &g);
        if (st != NNOPT_OK) return st;
        return op->kind == NNOPT_OP_CONV2D_INT8 ? blis_qconv_run(be, op, in, out, &g)
                                                : blis_qdense_run(be, op, in, out, &g);
    }
#endif
    return nnopt_ref_run(be->host, op, in, n_in, out, n_out);
}
