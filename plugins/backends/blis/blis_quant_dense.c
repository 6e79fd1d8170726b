/* dense_int8 on AVX-512 VNNI (see blis_quant.c): y[N, OUT] = x[N, IN] W^T
 * with output features in the lanes. Input rows are quantised into u8,
 * weights packed 16 outputs x 4 inputs per 64-byte operand; row blocks are
 * spread over threads. */
#include <omp.h>
#include <string.h>

#include "blis_quant.h"

#if BLIS_HAVE_VNNI

#define QDENSE_ROWS 8 /* batch rows per tile */

typedef struct qdense_plan {
    long rows, in, out, inp, outp; /* inp: IN rounded up to 4; outp: OUT up to 16 */
    float inv_scale, zero_point;
    int32_t zp;
    int relu;
} qdense_plan;

/* Weights as [outp/16][inp/4][16][4]: one 64-byte operand per 4 inputs. */
static void qdense_pack_weights(const qdense_plan *pl, const int8_t *w, const float *w_scale,
                                float x_scale, int8_t *wp, int32_t *wsum, float *scale) {
    memset(wp, 0, (size_t)(pl->outp * pl->inp));
    const long whole = pl->in / 4 * 4; /* inputs copied 4 at a time */
    for (long o = 0; o < pl->outp; o++) {
        wsum[o] = 0;
        scale[o] = o < pl->out ? x_scale * w_scale[o] : 0;
        if (o >= pl->out) continue;
        const int8_t *row = w + o * pl->in;
        int8_t *dst = wp + (o / 16) * (pl->inp / 4) * 64 + (o % 16) * 4;
        for (long i = 0; i < whole; i += 4) memcpy(dst + i * 16, row + i, 4);
        for (long i = whole; i < pl->in; i++) dst[whole * 16 + i - whole] = row[i];
        for (long i = 0; i < pl->in; i++) wsum[o] += row[i];
    }
}

VNNI_TARGET static void qdense_pack_rows(const qdense_plan *pl, const float *x, long row0,
                                         long rows, uint8_t *xq) {
    const __m512 inv = _mm512_set1_ps(pl->inv_scale), zp = _mm512_set1_ps(pl->zero_point);
    for (long r = row0; r < row0 + rows; r++) {
        uint8_t *dst = xq + r * pl->inp;
        blis_quantize_row(x + r * pl->in, pl->in, inv, zp, dst);
        for (long i = pl->in; i < pl->inp; i++) dst[i] = (uint8_t)pl->zp;
    }
    /* The last tile's missing rows: computed, never stored. */
    memset(xq + (row0 + rows) * pl->inp, pl->zp, (size_t)((QDENSE_ROWS - rows) * pl->inp));
}

/* One tile: 8 batch rows (the packed rows are padded to a multiple of 8)
 * x 2 blocks of 16 outputs, 16 accumulators kept in registers. */
#define QDENSE_DOT(m)                                                                              \
    do {                                                                                           \
        int32_t a;                                                                                 \
        memcpy(&a, rows + (m)*pl->inp + t * 4, 4);                                                 \
        const __m512i av = _mm512_set1_epi32(a);                                                   \
        acc##m##0 = _mm512_dpbusd_epi32(acc##m##0, av, b0);                                        \
        acc##m##1 = _mm512_dpbusd_epi32(acc##m##1, av, b1);                                        \
    } while (0)
#define QDENSE_ACC(m) __m512i acc##m##0 = _mm512_setzero_si512(), acc##m##1 = acc##m##0
#define QDENSE_SAVE(m)                                                                             \
    do {                                                                                           \
        out[m][0] = acc##m##0;                                                                     \
        out[m][1] = acc##m##1;                                                                     \
    } while (0)

VNNI_TARGET static void qdense_tile(const qdense_plan *pl, const uint8_t *rows, const int8_t *w0,
                                    const int8_t *w1, __m512i out[QDENSE_ROWS][2]) {
    QDENSE_ACC(0);
    QDENSE_ACC(1);
    QDENSE_ACC(2);
    QDENSE_ACC(3);
    QDENSE_ACC(4);
    QDENSE_ACC(5);
    QDENSE_ACC(6);
    QDENSE_ACC(7);
    for (long t = 0; t < pl->inp / 4; t++) {
        const __m512i b0 = _mm512_loadu_si512(w0 + t * 64), b1 = _mm512_loadu_si512(w1 + t * 64);
        QDENSE_DOT(0);
        QDENSE_DOT(1);
        QDENSE_DOT(2);
        QDENSE_DOT(3);
        QDENSE_DOT(4);
        QDENSE_DOT(5);
        QDENSE_DOT(6);
        QDENSE_DOT(7);
    }
    QDENSE_SAVE(0);
    QDENSE_SAVE(1);
    QDENSE_SAVE(2);
    QDENSE_SAVE(3);
    QDENSE_SAVE(4);
    QDENSE_SAVE(5);
    QDENSE_SAVE(6);
    QDENSE_SAVE(7);
}

/* Rows row0 .. row0 + rows - 1 of y, outputs of blocks ob and ob + 1 (when
 * there is one). */
VNNI_TARGET static void qdense_block(const qdense_plan *pl, const uint8_t *xq, const int8_t *wp,
                                     const int32_t *wsum, const float *scale, const float *bias,
                                     long row0, long rows, long ob, float *y) {
    const long block_bytes = (pl->inp / 4) * 64;
    const int pair = ob + 1 < pl->outp / 16;
    __m512i acc[QDENSE_ROWS][2];
    qdense_tile(pl, xq + row0 * pl->inp, wp + ob * block_bytes,
                wp + (pair ? ob + 1 : ob) * block_bytes, acc);
    for (int j = 0; j <= pair; j++) {
        const long o0 = (ob + j) * 16, n = pl->out - o0 < 16 ? pl->out - o0 : 16;
        const __mmask16 mask = (__mmask16)((1u << n) - 1);
        const __m512i correction =
            _mm512_mullo_epi32(_mm512_set1_epi32(pl->zp), _mm512_loadu_si512(wsum + o0));
        const __m512 sc = _mm512_loadu_ps(scale + o0), bv = _mm512_maskz_loadu_ps(mask, bias + o0);
        for (int m = 0; m < QDENSE_ROWS && m < rows; m++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[m][j], correction));
            v = _mm512_add_ps(_mm512_mul_ps(v, sc), bv); /* not fused: as the reference */
            if (pl->relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(y + (row0 + m) * pl->out + o0, mask, v);
        }
    }
}

nnopt_status blis_qdense_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             nnopt_tensor *const *out, const nnopt_qlinear_geometry *g) {
    const nnopt_qlinear_params *qp = &op->p.qlinear;
    qdense_plan pl = {g->n,
                      g->c,
                      g->k,
                      blis_quant_ceil_div(g->c, 4) * 4,
                      blis_quant_ceil_div(g->k, 16) * 16,
                      1.0f / qp->x_scale,
                      (float)qp->zero_point,
                      qp->zero_point,
                      qp->act == NNOPT_ACT_RELU};
    /* Rows padded to whole tiles (zero-point codes: finite, never stored). */
    const size_t x_bytes =
        blis_align64((size_t)(blis_quant_ceil_div(pl.rows, QDENSE_ROWS) * QDENSE_ROWS * pl.inp));
    const size_t w_bytes = blis_align64((size_t)(pl.outp * pl.inp));
    const size_t sums_bytes = blis_align64((size_t)pl.outp * 4);
    nnopt_status st = blis_scratch_reserve(be, 1, x_bytes + w_bytes + 2 * sums_bytes);
    if (st != NNOPT_OK) return st;
    uint8_t *xq = be->scratch[0].data;
    int8_t *wp = (int8_t *)(xq + x_bytes);
    int32_t *wsum = (int32_t *)(void *)(wp + w_bytes);
    float *scale = (float *)(void *)((char *)wsum + sums_bytes);
    qdense_pack_weights(&pl, in[1]->data, in[2]->data, qp->x_scale, wp, wsum, scale);
    const long row_blocks = blis_quant_ceil_div(pl.rows, QDENSE_ROWS), out_blocks = pl.outp / 16;
    const float *x = in[0]->data, *bias = in[3]->data;
    float *y = out[0]->data;
    const int team = row_blocks < be->threads ? (int)row_blocks : be->threads;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long rb = 0; rb < row_blocks; rb++) {
        const long row0 = rb * QDENSE_ROWS;
        const long rows = pl.rows - row0 < QDENSE_ROWS ? pl.rows - row0 : QDENSE_ROWS;
        qdense_pack_rows(&pl, x, row0, rows, xq);
        for (long ob = 0; ob < out_blocks; ob += 2)
            qdense_block(&pl, xq, wp, wsum, scale, bias, row0, rows, ob, y);
    }
    return NNOPT_OK;
}

#endif /* BLIS_HAVE_VNNI */
