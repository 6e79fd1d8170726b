/* conv2d_int8 on AVX-512 VNNI (see blis_quant.c). The convolution is
 * direct, with the activations quantised while they are packed (one pass
 * over the input, no im2col): each image becomes, per group of 4 input
 * channels, zero-point-padded planes whose pixels hold the 4 channels' u8
 * codes side by side - one vpdpbusd operand per 16 pixels (or, for few
 * channels at stride 1, 4 neighbouring columns of one channel).
 * As in the f32 direct kernels (blis_conv.c), stride > 1 splits the padded
 * image into stride_h * stride_w phase planes and output (p, q) is computed
 * at flat index p * pitch + q, so every tap is one contiguous 64-byte load;
 * the pitch - Q junk columns per row are computed and not stored. A tile is
 * 4 output channels x 6 vectors of 16 flat outputs, or 8 x 3 or 6 x 4 where
 * that pads less: 24 accumulators, weights broadcast from memory.
 *
 * The zero point: codes are xq = x / scale + zp, so sum (xq - zp) w =
 * sum xq w - zp sum w; padding holds zp and padded channels or taps have
 * zero weights, so the correction zp * sum(w) is per output channel.
 * Images are spread over threads, each with its own packed image. */
#include <omp.h>
#include <string.h>

#include "blis_quant.h"

#if BLIS_HAVE_VNNI

#define QK_MAX 8 /* output channels per tile: 4, 6 or 8 */
#define QV_MAX 6 /* 16-output vectors per tile: 6, 4 or 3 */

/* Everything a convolution tile needs, derived once per op. */
typedef struct qconv_plan {
    nnopt_qlinear_geometry g;
    long cg, kg;        /* channels per group: input, output */
    long kgp;           /* kg rounded up to tile_k */
    int tile_k, tile_v; /* 4 x 6, 8 x 3 or 6 x 4 */
    /* A packed pixel holds 4 u8 codes: of 4 channels (cg4 quads per group),
     * or, with column_quads (stride 1, few channels: LeNet's first layer,
     * depthwise), of 4 neighbouring columns of one channel (cg quads), so a
     * 5-wide filter row is 2 taps instead of 5. */
    int column_quads;
    long cg4, s4, quads, taps;       /* quads (planes) per group; taps per output channel */
    long phases, rows, pitch, plane; /* phase planes, in 4-byte pixels */
    long count, vectors;             /* flat outputs P * pitch, in 16-lane vectors */
    size_t image_bytes;              /* one packed image, with read-ahead slack */
    size_t row_offset;               /* where the column_quads row buffer starts */
    float inv_scale, zero_point;
    int32_t zp;
    int relu;
} qconv_plan;

static void qconv_plan_make(const nnopt_qlinear_geometry *g, const nnopt_qlinear_params *qp,
                            qconv_plan *pl) {
    memset(pl, 0, sizeof *pl);
    pl->g = *g;
    pl->cg = g->c / g->groups;
    pl->kg = g->k / g->groups;
    pl->cg4 = blis_quant_ceil_div(pl->cg, 4);
    pl->s4 = blis_quant_ceil_div(g->s, 4);
    pl->column_quads = g->stride_h == 1 && g->stride_w == 1 && pl->cg * pl->s4 < pl->cg4 * g->s;
    pl->quads = pl->column_quads ? pl->cg : pl->cg4;
    pl->taps = pl->column_quads ? pl->cg * g->r * pl->s4 : pl->cg4 * g->r * g->s;
    pl->phases = g->stride_h * g->stride_w;
    pl->rows = blis_quant_ceil_div(g->h + 2 * g->pad_h, g->stride_h);
    pl->pitch = blis_quant_ceil_div(g->w + 2 * g->pad_w, g->stride_w);
    pl->plane = pl->rows * pl->pitch;
    pl->count = g->p * pl->pitch;
    pl->vectors = blis_quant_ceil_div(pl->count, 16);
    /* The tile shape that computes the fewest padded outputs (ties: the first). */
    static const int shapes[3][2] = {{4, 6}, {8, 3}, {6, 4}};
    long least = -1;
    for (int i = 0; i < 3; i++) {
        const long work = blis_quant_ceil_div(pl->kg, shapes[i][0]) * shapes[i][0] *
                          blis_quant_ceil_div(pl->vectors, shapes[i][1]) * shapes[i][1];
        if (least >= 0 && work >= least) continue;
        least = work;
        pl->tile_k = shapes[i][0];
        pl->tile_v = shapes[i][1];
    }
    pl->kgp = blis_quant_ceil_div(pl->kg, pl->tile_k) * pl->tile_k;
    /* The last vector of a tap may read past the last plane by up to a
     * vector plus the largest tap offset. */
    const long slack = ((g->r - 1) / g->stride_h + 1) * pl->pitch + 4 * pl->s4 + 16 * QV_MAX + 64;
    pl->row_offset =
        blis_align64((size_t)(g->groups * pl->quads * pl->phases * pl->plane + slack) * 4);
    /* column_quads: one quantised row, padded, after the planes. */
    pl->image_bytes = pl->row_offset + blis_align64((size_t)pl->pitch + 32);
    pl->inv_scale = 1.0f / qp->x_scale;
    pl->zero_point = (float)qp->zero_point;
    pl->zp = qp->zero_point;
    pl->relu = qp->act == NNOPT_ACT_RELU;
}

/* Weights as [group][kgp][taps][4] s8 (zero where padded), taps in the
 * order of qconv_tap_offsets, with each
 * output channel's weight sum (for the zero point) and output scale. */
static void qconv_pack_weights(const qconv_plan *pl, const int8_t *w, const float *w_scale,
                               float x_scale, int8_t *wp, int32_t *wsum, float *scale) {
    const nnopt_qlinear_geometry *g = &pl->g;
    const long taps = pl->taps * 4;
    memset(wp, 0, (size_t)(g->groups * pl->kgp * taps));
    for (long grp = 0; grp < g->groups; grp++)
        for (long kk = 0; kk < pl->kgp; kk++) {
            const long slot = grp * pl->kgp + kk;
            wsum[slot] = 0;
            scale[slot] = 0;
            if (kk >= pl->kg) continue;
            const long k = grp * pl->kg + kk;
            scale[slot] = x_scale * w_scale[k];
            int8_t *dst = wp + slot * taps;
            for (long c = 0; c < pl->cg; c++)
                for (long r = 0; r < g->r; r++)
                    for (long s = 0; s < g->s; s++) {
                        const int8_t v = w[((k * pl->cg + c) * g->r + r) * g->s + s];
                        const long at = pl->column_quads
                                            ? ((c * g->r + r) * pl->s4 + s / 4) * 4 + s % 4
                                            : (((c / 4) * g->r + r) * g->s + s) * 4 + c % 4;
                        dst[at] = v;
                        wsum[slot] += v;
                    }
        }
}

/* Where tap (c4, r, s) starts reading, in pixels from a group's first
 * plane: its phase plane, row and column offsets (the order of the packed
 * weights). */
static void qconv_tap_offsets(const qconv_plan *pl, int32_t *offset) {
    const nnopt_qlinear_geometry *g = &pl->g;
    if (pl->column_quads) {
        for (long c = 0; c < pl->cg; c++)
            for (long r = 0; r < g->r; r++)
                for (long j = 0; j < pl->s4; j++)
                    offset[(c * g->r + r) * pl->s4 + j] =
                        (int32_t)(c * pl->plane + r * pl->pitch + 4 * j);
        return;
    }
    for (long c4 = 0; c4 < pl->cg4; c4++)
        for (long r = 0; r < g->r; r++)
            for (long s = 0; s < g->s; s++) {
                const long phase = (r % g->stride_h) * g->stride_w + s % g->stride_w;
                offset[(c4 * g->r + r) * g->s + s] =
                    (int32_t)((c4 * pl->phases + phase) * pl->plane +
                              (r / g->stride_h) * pl->pitch + s / g->stride_w);
            }
}
/* Lane j of the result holds 4 channels' codes of pixel j. */
VNNI_TARGET static inline __m512i quantize_quad(const float *const src[4], long offset,
                                                __mmask16 mask, __m512 inv, __m512 zp) {
    __m512i packed = _mm512_setzero_si512();
    for (int i = 0; i < 4; i++) {
        /* A padded channel's weights are zero: any code will do. */
        const __m512i codes =
            src[i] ? quantize16(src[i] + offset, mask, inv, zp) : _mm512_setzero_si512();
        packed = _mm512_or_si512(packed, _mm512_slli_epi32(codes, 8 * i));
    }
    return packed;
}

/* column_quads packing: pixel j of a plane row is the 4 codes at columns
 * j .. j+3 of the padded row, i.e. 4 bytes read from there. */
VNNI_TARGET static void qconv_pack_column_quads(const qconv_plan *pl, const float *x,
                                                uint8_t *buf) {
    const nnopt_qlinear_geometry *g = &pl->g;
    uint8_t *row = buf + pl->row_offset;
    uint32_t *pixels = (uint32_t *)(void *)buf;
    const __m512 inv = _mm512_set1_ps(pl->inv_scale), zp = _mm512_set1_ps(pl->zero_point);
    memset(row, pl->zp, pl->image_bytes - pl->row_offset);
    for (long c = 0; c < g->c; c++) { /* a group's planes follow the previous group's */
        uint32_t *plane = pixels + c * pl->plane;
        for (long ih = 0; ih < g->h; ih++) {
            blis_quantize_row(x + (c * g->h + ih) * g->w, g->w, inv, zp, row + g->pad_w);
            uint32_t *dst = plane + (ih + g->pad_h) * pl->pitch;
            for (long j = 0; j < pl->pitch; j += 16) {
                __m512i quad = _mm512_setzero_si512();
                for (int i = 0; i < 4; i++) {
                    const __m128i bytes =
                        _mm_loadu_si128((const __m128i *)(const void *)(row + j + i));
                    quad = _mm512_or_si512(quad,
                                           _mm512_slli_epi32(_mm512_cvtepu8_epi32(bytes), 8 * i));
                }
                const long n = pl->pitch - j < 16 ? pl->pitch - j : 16;
                _mm512_mask_storeu_epi32(dst + j, (__mmask16)((1u << n) - 1), quad);
            }
        }
    }
}

/* Quantises image x ([C,H,W] f32) into the packed, padded phase planes. */
VNNI_TARGET static void qconv_pack_image(const qconv_plan *pl, const float *x, uint8_t *buf) {
    const nnopt_qlinear_geometry *g = &pl->g;
    memset(buf, pl->zp, pl->row_offset);
    if (pl->column_quads) {
        qconv_pack_column_quads(pl, x, buf);
        return;
    }
    const __m512 inv = _mm512_set1_ps(pl->inv_scale), zp = _mm512_set1_ps(pl->zero_point);
    uint32_t *pixels = (uint32_t *)(void *)buf;
    const long plane_in = g->h * g->w;
    for (long grp = 0; grp < g->groups; grp++)
        for (long c4 = 0; c4 < pl->cg4; c4++) {
            const float *src[4];
            for (int i = 0; i < 4; i++) {
                const long c = c4 * 4 + i;
                src[i] = c < pl->cg ? x + (grp * pl->cg + c) * plane_in : NULL;
            }
            uint32_t *planes = pixels + (grp * pl->cg4 + c4) * pl->phases * pl->plane;
            for (long ih = 0; ih < g->h; ih++) {
                const long ph = ih + g->pad_h;
                const long row = ph / g->stride_h, phase_row = ph % g->stride_h;
                for (long iw0 = 0; iw0 < g->w; iw0 += 16) {
                    const long n = g->w - iw0 < 16 ? g->w - iw0 : 16;
                    const __mmask16 mask = (__mmask16)((1u << n) - 1);
                    const __m512i quad = quantize_quad(src, ih * g->w + iw0, mask, inv, zp);
                    if (g->stride_w == 1) {
                        uint32_t *dst = planes + phase_row * g->stride_w * pl->plane +
                                        row * pl->pitch + iw0 + g->pad_w;
                        _mm512_mask_storeu_epi32(dst, mask, quad);
                        continue;
                    }
                    uint32_t lanes[16];
                    _mm512_storeu_si512(lanes, quad);
                    for (long j = 0; j < n; j++) {
                        const long pw = iw0 + j + g->pad_w;
                        const long phase = phase_row * g->stride_w + pw % g->stride_w;
                        planes[phase * pl->plane + row * pl->pitch + pw / g->stride_w] = lanes[j];
                    }
                }
            }
        }
}

/* Where the lanes of one flat vector go: a vector may span several output
 * rows, and lanes on junk columns (q >= Q) or past the last row are not
 * stored. Worked out once per tile, shared by its output channels. */
typedef struct flat_segments {
    int count;
    __mmask16 mask[17];
    long offset[17]; /* y_k + offset, masked, stores the vector */
} flat_segments;

static void flat_segments_make(const qconv_plan *pl, long o0, flat_segments *seg) {
    seg->count = 0;
    long lane = 0, o = o0, p = o0 / pl->pitch, q = o0 % pl->pitch;
    while (lane < 16 && o < pl->count) {
        long len = pl->pitch - q;
        if (len > 16 - lane) len = 16 - lane;
        const long valid = q < pl->g.q ? (pl->g.q - q < len ? pl->g.q - q : len) : 0;
        if (valid > 0) {
            seg->mask[seg->count] = (__mmask16)(((1u << valid) - 1) << lane);
            seg->offset[seg->count++] = p * pl->g.q + q - lane;
        }
        lane += len;
        o += len;
        q += len;
        if (q == pl->pitch) {
            q = 0;
            p++;
        }
    }
}

/* Tiles: 24 accumulators spelled out so they stay in registers: 4 output
 * channels x 6 flat vectors, 8 x 3 or 6 x 4 (qconv_plan_make picks the one
 * computing the fewest padded outputs). Vectors past the last output read slack
 * and are not stored. */
#define QDOT(kb, v) acc##kb##v = _mm512_dpbusd_epi32(acc##kb##v, a##v, wv)
#define QDOT_ROW6(kb)                                                                              \
    do {                                                                                           \
        const __m512i wv = _mm512_set1_epi32(wq[(kb)*taps + tap]);                                 \
        QDOT(kb, 0);                                                                               \
        QDOT(kb, 1);                                                                               \
        QDOT(kb, 2);                                                                               \
        QDOT(kb, 3);                                                                               \
        QDOT(kb, 4);                                                                               \
        QDOT(kb, 5);                                                                               \
    } while (0)
#define QDOT_ROW3(kb)                                                                              \
    do {                                                                                           \
        const __m512i wv = _mm512_set1_epi32(wq[(kb)*taps + tap]);                                 \
        QDOT(kb, 0);                                                                               \
        QDOT(kb, 1);                                                                               \
        QDOT(kb, 2);                                                                               \
    } while (0)
#define QACC_ROW6(kb)                                                                              \
    __m512i acc##kb##0 = _mm512_setzero_si512(), acc##kb##1 = acc##kb##0, acc##kb##2 = acc##kb##0, \
            acc##kb##3 = acc##kb##0, acc##kb##4 = acc##kb##0, acc##kb##5 = acc##kb##0
#define QDOT_ROW4(kb)                                                                              \
    do {                                                                                           \
        const __m512i wv = _mm512_set1_epi32(wq[(kb)*taps + tap]);                                 \
        QDOT(kb, 0);                                                                               \
        QDOT(kb, 1);                                                                               \
        QDOT(kb, 2);                                                                               \
        QDOT(kb, 3);                                                                               \
    } while (0)
#define QACC_ROW4(kb)                                                                              \
    __m512i acc##kb##0 = _mm512_setzero_si512(), acc##kb##1 = acc##kb##0, acc##kb##2 = acc##kb##0, \
            acc##kb##3 = acc##kb##0
#define QSAVE_ROW4(kb)                                                                             \
    do {                                                                                           \
        QSAVE_ROW3(kb);                                                                            \
        out[kb][3] = acc##kb##3;                                                                   \
    } while (0)
#define QACC_ROW3(kb)                                                                              \
    __m512i acc##kb##0 = _mm512_setzero_si512(), acc##kb##1 = acc##kb##0, acc##kb##2 = acc##kb##0
#define QSAVE_ROW3(kb)                                                                             \
    do {                                                                                           \
        out[kb][0] = acc##kb##0;                                                                   \
        out[kb][1] = acc##kb##1;                                                                   \
        out[kb][2] = acc##kb##2;                                                                   \
    } while (0)
#define QSAVE_ROW6(kb)                                                                             \
    do {                                                                                           \
        QSAVE_ROW3(kb);                                                                            \
        out[kb][3] = acc##kb##3;                                                                   \
        out[kb][4] = acc##kb##4;                                                                   \
        out[kb][5] = acc##kb##5;                                                                   \
    } while (0)

VNNI_TARGET static void qconv_tile_4x6(const qconv_plan *pl, const int32_t *planes,
                                       const int32_t *wq, const int32_t *tap_offset, long o0,
                                       __m512i out[QK_MAX][QV_MAX]) {
    const long taps = pl->taps;
    QACC_ROW6(0);
    QACC_ROW6(1);
    QACC_ROW6(2);
    QACC_ROW6(3);
    for (long tap = 0; tap < taps; tap++) {
        const int32_t *a = planes + tap_offset[tap] + o0;
        const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + 16),
                      a2 = _mm512_loadu_si512(a + 32), a3 = _mm512_loadu_si512(a + 48),
                      a4 = _mm512_loadu_si512(a + 64), a5 = _mm512_loadu_si512(a + 80);
        QDOT_ROW6(0);
        QDOT_ROW6(1);
        QDOT_ROW6(2);
        QDOT_ROW6(3);
    }
    QSAVE_ROW6(0);
    QSAVE_ROW6(1);
    QSAVE_ROW6(2);
    QSAVE_ROW6(3);
}

VNNI_TARGET static void qconv_tile_8x3(const qconv_plan *pl, const int32_t *planes,
                                       const int32_t *wq, const int32_t *tap_offset, long o0,
                                       __m512i out[QK_MAX][QV_MAX]) {
    const long taps = pl->taps;
    QACC_ROW3(0);
    QACC_ROW3(1);
    QACC_ROW3(2);
    QACC_ROW3(3);
    QACC_ROW3(4);
    QACC_ROW3(5);
    QACC_ROW3(6);
    QACC_ROW3(7);
    for (long tap = 0; tap < taps; tap++) {
        const int32_t *a = planes + tap_offset[tap] + o0;
        const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + 16),
                      a2 = _mm512_loadu_si512(a + 32);
        QDOT_ROW3(0);
        QDOT_ROW3(1);
        QDOT_ROW3(2);
        QDOT_ROW3(3);
        QDOT_ROW3(4);
        QDOT_ROW3(5);
        QDOT_ROW3(6);
        QDOT_ROW3(7);
    }
    QSAVE_ROW3(0);
    QSAVE_ROW3(1);
    QSAVE_ROW3(2);
    QSAVE_ROW3(3);
    QSAVE_ROW3(4);
    QSAVE_ROW3(5);
    QSAVE_ROW3(6);
    QSAVE_ROW3(7);
}

VNNI_TARGET static void qconv_tile_6x4(const qconv_plan *pl, const int32_t *planes,
                                       const int32_t *wq, const int32_t *tap_offset, long o0,
                                       __m512i out[QK_MAX][QV_MAX]) {
    const long taps = pl->taps;
    QACC_ROW4(0);
    QACC_ROW4(1);
    QACC_ROW4(2);
    QACC_ROW4(3);
    QACC_ROW4(4);
    QACC_ROW4(5);
    for (long tap = 0; tap < taps; tap++) {
        const int32_t *a = planes + tap_offset[tap] + o0;
        const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + 16),
                      a2 = _mm512_loadu_si512(a + 32), a3 = _mm512_loadu_si512(a + 48);
        QDOT_ROW4(0);
        QDOT_ROW4(1);
        QDOT_ROW4(2);
        QDOT_ROW4(3);
        QDOT_ROW4(4);
        QDOT_ROW4(5);
    }
    QSAVE_ROW4(0);
    QSAVE_ROW4(1);
    QSAVE_ROW4(2);
    QSAVE_ROW4(3);
    QSAVE_ROW4(4);
    QSAVE_ROW4(5);
}

/* Dequantises a tile's accumulators into the output image. */
VNNI_TARGET static void qconv_tile_store(const qconv_plan *pl, __m512i acc[QK_MAX][QV_MAX],
                                         const int32_t *wsum, const float *scale, const float *bias,
                                         long grp, long k0, long o0, float *y_image) {
    const long plane_out = pl->g.p * pl->g.q;
    flat_segments seg[QV_MAX];
    for (int v = 0; v < pl->tile_v; v++) flat_segments_make(pl, o0 + 16 * v, &seg[v]);
    for (int kb = 0; kb < pl->tile_k; kb++) {
        const long kk = k0 + kb;
        if (kk >= pl->kg) break;
        const long slot = grp * pl->kgp + kk, k = grp * pl->kg + kk;
        const __m512i correction = _mm512_set1_epi32(pl->zp * wsum[slot]);
        const __m512 sc = _mm512_set1_ps(scale[slot]), b = _mm512_set1_ps(bias[k]);
        float *y_k = y_image + k * plane_out;
        for (int v = 0; v < pl->tile_v && seg[v].count; v++) {
            __m512 y = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[kb][v], correction));
            y = _mm512_add_ps(_mm512_mul_ps(y, sc), b); /* not fused: as the reference */
            if (pl->relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
            for (int i = 0; i < seg[v].count; i++)
                _mm512_mask_storeu_ps(y_k + seg[v].offset[i], seg[v].mask[i], y);
        }
    }
}

VNNI_TARGET static void qconv_image(const qconv_plan *pl, const uint8_t *image, const int8_t *wp,
                                    const int32_t *wsum, const float *scale, const float *bias,
                                    const int32_t *tap_offset, float *y_image) {
    const long taps = pl->taps;
    __m512i acc[QK_MAX][QV_MAX];
    for (long grp = 0; grp < pl->g.groups; grp++) {
        const int32_t *planes =
            (const int32_t *)(const void *)image + grp * pl->quads * pl->phases * pl->plane;
        for (long o0 = 0; o0 < pl->count; o0 += 16 * pl->tile_v)
            for (long k0 = 0; k0 < pl->kgp; k0 += pl->tile_k) {
                const int32_t *wq = (const int32_t *)(const void *)wp + (grp * pl->kgp + k0) * taps;
                if (pl->tile_k == 4)
                    qconv_tile_4x6(pl, planes, wq, tap_offset, o0, acc);
                else if (pl->tile_k == 6)
                    qconv_tile_6x4(pl, planes, wq, tap_offset, o0, acc);
                else
                    qconv_tile_8x3(pl, planes, wq, tap_offset, o0, acc);
                qconv_tile_store(pl, acc, wsum, scale, bias, grp, k0, o0, y_image);
            }
    }
}

nnopt_status blis_qconv_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                            nnopt_tensor *const *out, const nnopt_qlinear_geometry *g) {
    qconv_plan pl;
    qconv_plan_make(g, &op->p.qlinear, &pl);
    const int team = g->n < be->threads ? (int)g->n : be->threads;
    const long taps = pl.taps;
    const size_t slots = (size_t)(g->groups * pl.kgp);
    const size_t w_bytes = blis_align64(slots * (size_t)taps * 4),
                 sums_bytes = blis_align64(slots * 4);
    const size_t offsets_bytes = blis_align64((size_t)taps * sizeof(int32_t));
    nnopt_status st = blis_scratch_reserve(be, team, pl.image_bytes);
    /* Thread 0's scratch also holds the packed weights, sums, scales and tap offsets. */
    if (st == NNOPT_OK)
        st = blis_scratch_reserve(be, 1, pl.image_bytes + w_bytes + 2 * sums_bytes + offsets_bytes);
    if (st != NNOPT_OK) return st;
    int8_t *wp = (int8_t *)be->scratch[0].data + pl.image_bytes;
    int32_t *wsum = (int32_t *)(void *)(wp + w_bytes);
    float *scale = (float *)(void *)((char *)wsum + sums_bytes);
    int32_t *tap_offset = (int32_t *)(void *)((char *)scale + sums_bytes);
    qconv_pack_weights(&pl, in[1]->data, in[2]->data, op->p.qlinear.x_scale, wp, wsum, scale);
    qconv_tap_offsets(&pl, tap_offset);
    const float *x = in[0]->data, *bias = in[3]->data;
    float *y = out[0]->data;
    const long x_image = g->c * g->h * g->w, y_image = g->k * g->p * g->q;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long n = 0; n < g->n; n++) {
        uint8_t *image = be->scratch[omp_get_thread_num()].data;
        qconv_pack_image(&pl, x + n * x_image, image);
        qconv_image(&pl, image, wp, wsum, scale, bias, tap_offset, y + n * y_image);
    }
    return NNOPT_OK;
}

#endif /* BLIS_HAVE_VNNI */
