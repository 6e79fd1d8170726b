/* bf16 ops of the blis backend: storage in bf16, arithmetic in f32.
 *
 * Convolutions and dense layers run on the AVX-512 BF16 GEMM
 * (blis_bf16_gemm.c). A convolution is Y[K, outputs] = W[K, taps x channels]
 * times the image, with the reduction ordered tap-major and channels taken
 * in pairs, because vdpbf16ps consumes pairs along the reduction: the image
 * is first copied once into zero-padded planes whose 32-bit words hold two
 * neighbouring channels. For stride 1, output o = p*pitch + q then reads tap
 * (r, s) of channel pair cp at word o + r*pitch + s of plane cp: every GEMM
 * row is a contiguous run of that buffer and no im2col copy is made (the
 * pitch - Q junk columns per row are computed and dropped). A single input
 * channel (a grayscale first layer) has no partner, so there the words pair
 * neighbouring columns instead, (x[row][col], x[row][col+1]), and the
 * reduction runs over rows and pairs of filter columns: half the work of
 * padding each tap with a zero channel. Strided convolutions gather plane
 * words into packed rows first. Images are split
 * across threads, each with its own buffers, as in the f32 GEMM path.
 *
 * Depthwise convolutions, pooling and the rest, and every op on CPUs
 * without AVX-512 BF16, run the backend's f32 kernels on widened copies
 * (nnopt_bf16_via_f32), which is also what the reference does. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "blis_bf16.h"
#include "nnopt/bf16.h"
#include "ref_kernels.h"

/* The f32/f64 dispatch of blis_backend.c. */
nnopt_status blis_run_float(void *ctx, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out);

static nnopt_status via_f32(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    return nnopt_bf16_via_f32(be->host, blis_run_float, be, op, in, n_in, out, n_out);
}

/* Every tensor present, allocated and bf16. */
static int all_bf16(nnopt_tensor *const *t, int n) {
    for (int i = 0; i < n; i++)
        if (!t[i] || !t[i]->data || t[i]->dtype != NNOPT_BF16) return 0;
    return 1;
}

static long round_up(long v, long to) {
    return (v + to - 1) / to * to;
}

/* ---- convolution ---- */

/* The layout of one image (one group) as the GEMM reads it. */
typedef struct bf16_conv_layout {
    int column_pairs;         /* one channel, stride 1: words pair columns, not channels */
    long taps, cpairs, pairs; /* R*S (R*ceil(S/2) for column pairs), ceil(Cg/2), taps*cpairs */
    long rows, pitch;         /* padded plane: H + 2 ph rows of W + 2 pw words */
    long plane_stride;        /* words per channel-pair plane, with read slack */
    long outputs, ldc;        /* GEMM columns: P*pitch (stride 1) or P*Q; C row stride */
    int implicit;             /* stride 1: GEMM rows read the planes directly */
} bf16_conv_layout;

static bf16_conv_layout conv_layout(const conv_geometry *g) {
    bf16_conv_layout l;
    l.implicit = g->stride_h == 1 && g->stride_w == 1;
    l.column_pairs = l.implicit && g->cg == 1;
    l.taps = l.column_pairs ? g->r * ((g->s + 1) / 2) : g->r * g->s;
    l.cpairs = (g->cg + 1) / 2;
    l.pairs = l.taps * l.cpairs;
    l.rows = g->h + 2 * g->pad_h;
    l.pitch = g->w + 2 * g->pad_w;
    l.outputs = l.implicit ? g->p * l.pitch : g->p * g->q;
    l.ldc = round_up(l.outputs, 32);
    /* The GEMM reads whole 32-column tiles: up to ldc - 1 past a row's start,
     * which lies at most (R-1)*pitch + S-1 into the plane. */
    l.plane_stride = round_up(l.rows * l.pitch + l.ldc + 32, 16);
    return l;
}

/* Weights as the GEMM's A: row k, pair (tap t, channel pair cp) holds
 * w[k][2cp][t], w[k][2cp+1][t] (0 past the group's channels); with column
 * pairs, pair (r, sp) holds w[k][0][r][2sp], w[k][0][r][2sp+1]. */
static void conv_pack_weights(const conv_geometry *g, const bf16_conv_layout *l, const uint16_t *w,
                              uint32_t *a) {
    if (l->column_pairs) {
        const long spairs = (g->s + 1) / 2;
        for (long k = 0; k < g->k; k++)
            for (long r = 0; r < g->r; r++)
                for (long sp = 0; sp < spairs; sp++) {
                    const uint16_t *row = w + (k * g->r + r) * g->s;
                    const uint32_t hi = 2 * sp + 1 < g->s ? row[2 * sp + 1] : 0;
                    a[k * l->pairs + r * spairs + sp] = row[2 * sp] | hi << 16;
                }
        return;
    }
    for (long k = 0; k < g->k; k++)
        for (long t = 0; t < l->taps; t++)
            for (long cp = 0; cp < l->cpairs; cp++) {
                const long c0 = 2 * cp, c1 = 2 * cp + 1;
                const uint32_t lo = w[(k * g->cg + c0) * l->taps + t];
                const uint32_t hi = c1 < g->cg ? w[(k * g->cg + c1) * l->taps + t] : 0;
                a[k * l->pairs + t * l->cpairs + cp] = lo | hi << 16;
            }
}

/* planes[cp][row][col] = (x[2cp][row - ph][col - pw], x[2cp+1][...]), zero
 * outside the image and past the last channel. */
static void conv_fill_planes(int hw, const conv_geometry *g, const bf16_conv_layout *l,
                             const uint16_t *x, uint32_t *planes) {
    memset(planes, 0, (size_t)(l->cpairs * l->plane_stride) * sizeof *planes);
    if (l->column_pairs) { /* word (row, col) = padded x at col and col + 1 */
        for (long i = 0; i < g->h; i++) {
            uint32_t *dst = planes + (i + g->pad_h) * l->pitch + g->pad_w;
            const uint16_t *src = x + i * g->w;
            if (g->pad_w > 0) dst[-1] = (uint32_t)src[0] << 16; /* left padding, then x[0] */
            blis_bf16_interleave(hw, src, src + 1, dst, g->w - 1);
            dst[g->w - 1] = src[g->w - 1];
        }
        return;
    }
    const long image_plane = g->h * g->w;
    for (long cp = 0; cp < l->cpairs; cp++) {
        const uint16_t *x0 = x + 2 * cp * image_plane;
        const uint16_t *x1 = 2 * cp + 1 < g->cg ? x0 + image_plane : NULL;
        for (long i = 0; i < g->h; i++) {
            uint32_t *dst = planes + cp * l->plane_stride + (i + g->pad_h) * l->pitch + g->pad_w;
            blis_bf16_interleave(hw, x0 + i * g->w, x1 ? x1 + i * g->w : NULL, dst, g->w);
        }
    }
}

/* Strided convolutions: packed[kk][o] = the plane word tap/pair kk reads for
 * output o = p*Q + q (ldc words per row). */
static void conv_gather(const conv_geometry *g, const bf16_conv_layout *l, const uint32_t *planes,
                        uint32_t *packed) {
    for (long t = 0; t < l->taps; t++) {
        const long r = t / g->s, s = t % g->s;
        for (long cp = 0; cp < l->cpairs; cp++) {
            uint32_t *row = packed + (t * l->cpairs + cp) * l->ldc;
            const uint32_t *plane = planes + cp * l->plane_stride;
            for (long p = 0; p < g->p; p++) {
                const uint32_t *src = plane + (p * g->stride_h + r) * l->pitch + s;
                for (long q = 0; q < g->q; q++) row[p * g->q + q] = src[q * g->stride_w];
            }
            memset(row + l->outputs, 0, (size_t)(l->ldc - l->outputs) * sizeof *row);
        }
    }
}

typedef struct bf16_conv_scratch {
    size_t planes, packed, out, offsets, total;
} bf16_conv_scratch;

static bf16_conv_scratch conv_scratch_layout(const conv_geometry *g, const bf16_conv_layout *l) {
    bf16_conv_scratch s = {0};
    size_t at = 0;
    s.planes = at;
    at += blis_align64((size_t)(l->cpairs * l->plane_stride) * sizeof(uint32_t));
    s.packed = at;
    if (!l->implicit) at += blis_align64((size_t)(l->pairs * l->ldc) * sizeof(uint32_t));
    s.out = at;
    if (l->implicit) at += blis_align64((size_t)(g->kg * l->ldc) * sizeof(uint16_t));
    s.offsets = at;
    at += blis_align64((size_t)l->pairs * sizeof(long));
    s.total = at;
    return s;
}

static nnopt_status conv_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                              int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 3, n_out, 1);
    if (st != NNOPT_OK || !all_bf16(in, n_in) || !all_bf16(out, 1))
        return via_f32(be, op, in, n_in, out, n_out);
    conv_geometry g;
    st = blis_conv_geometry(be, op, in[0], in[1], out[0], &g);
    if (st != NNOPT_OK) return st;
    const int depthwise = g.groups > 1 && g.groups == g.c && g.k == g.c;
    if (!be->bf16_hw || depthwise || (n_in == 3 && nnopt_tensor_numel(in[2]) != g.k))
        return via_f32(be, op, in, n_in, out, n_out);

    const bf16_conv_layout l = conv_layout(&g);
    const bf16_conv_scratch per_thread = conv_scratch_layout(&g, &l);
    /* Shared, in front of thread 0's part: packed weights and the f32 bias. */
    const size_t weights_bytes = blis_align64((size_t)(g.k * l.pairs) * sizeof(uint32_t));
    const size_t shared = weights_bytes + blis_align64((size_t)g.k * sizeof(float));
    const int team = g.n < be->threads ? (int)(g.n > 0 ? g.n : 1) : be->threads;
    st = blis_scratch_reserve(be, team, shared + per_thread.total);
    if (st != NNOPT_OK) return st;
    uint32_t *a = be->scratch[0].data;
    float *bias = n_in == 3 ? (float *)((char *)be->scratch[0].data + weights_bytes) : NULL;
    conv_pack_weights(&g, &l, in[1]->data, a);
    if (bias) blis_bf16_widen(be->bf16_hw, in[2]->data, bias, g.k);

    const uint16_t *x = in[0]->data;
    uint16_t *y = out[0]->data;
    const long pq = g.p * g.q;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num();
        const int members = omp_get_num_threads();
        char *mine = (char *)be->scratch[t].data + shared;
        uint32_t *planes = (uint32_t *)(mine + per_thread.planes);
        uint32_t *packed = (uint32_t *)(mine + per_thread.packed);
        uint16_t *wide_out = (uint16_t *)(mine + per_thread.out);
        long *offsets = (long *)(mine + per_thread.offsets);
        for (long kk = 0; kk < l.pairs; kk++) {
            const long tap = kk / l.cpairs, cp = kk % l.cpairs, spairs = (g.s + 1) / 2;
            if (l.column_pairs) /* pair (r, sp) reads columns 2sp and 2sp + 1 */
                offsets[kk] = tap / spairs * l.pitch + 2 * (tap % spairs);
            else
                offsets[kk] = l.implicit ? cp * l.plane_stride + (tap / g.s) * l.pitch + tap % g.s
                                         : kk * l.ldc;
        }
        const long first = g.n * t / members, end = g.n * (t + 1) / members;
        for (long n = first; n < end; n++) {
            for (long grp = 0; grp < g.groups; grp++) {
                const uint16_t *x_img = x + (n * g.c + grp * g.cg) * g.h * g.w;
                uint16_t *y_img = y + (n * g.k + grp * g.kg) * pq;
                const uint32_t *a_grp = a + grp * g.kg * l.pairs;
                const float *bias_grp = bias ? bias + grp * g.kg : NULL;
                conv_fill_planes(be->bf16_hw, &g, &l, x_img, planes);
                if (!l.implicit) {
                    conv_gather(&g, &l, planes, packed);
                    blis_bf16_gemm(g.kg, pq, l.pairs, a_grp, l.pairs, packed, offsets, bias_grp,
                                   NULL, y_img, pq);
                    continue;
                }
                blis_bf16_gemm(g.kg, l.outputs, l.pairs, a_grp, l.pairs, planes, offsets, bias_grp,
                               NULL, wide_out, l.ldc);
                /* Drop the junk columns: row p of the plane is output row p. */
                for (long k = 0; k < g.kg; k++)
                    for (long p = 0; p < g.p; p++)
                        blis_bf16_copy(be->bf16_hw, wide_out + k * l.ldc + p * l.pitch,
                                       y_img + (k * g.p + p) * g.q, g.q);
            }
        }
    }
    return NNOPT_OK;
}

/* ---- dense ---- */

/* y[N, OUT] = x[N, IN] W^T + b: A = x (rows of IN/2 pairs), B row kk = the
 * pair (W[j][2kk], W[j][2kk+1]) of every output j, packed once. */
static nnopt_status dense_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                               int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 3, n_out, 1);
    if (st != NNOPT_OK || !be->bf16_hw || !all_bf16(in, n_in) || !all_bf16(out, 1) ||
        in[1]->ndim != 2 || in[0]->ndim < 1)
        return via_f32(be, op, in, n_in, out, n_out);
    const long n = in[0]->shape[0], outs = in[1]->shape[0], ins = in[1]->shape[1];
    if (n * ins != nnopt_tensor_numel(in[0]) || nnopt_tensor_numel(out[0]) != n * outs ||
        (n_in == 3 && nnopt_tensor_numel(in[2]) != outs))
        return via_f32(be, op, in, n_in, out, n_out); /* the reference explains */
    const long pairs = (ins + 1) / 2, ldb = round_up(outs, 32);
    const int odd = ins % 2 != 0;
    const size_t b_bytes = blis_align64((size_t)(pairs * ldb) * sizeof(uint32_t));
    const size_t off_bytes = blis_align64((size_t)pairs * sizeof(long));
    const size_t bias_bytes = blis_align64((size_t)outs * sizeof(float));
    const size_t a_bytes = odd ? blis_align64((size_t)(n * pairs) * sizeof(uint32_t)) : 0;
    st = blis_scratch_reserve(be, 1, b_bytes + off_bytes + bias_bytes + a_bytes);
    if (st != NNOPT_OK) return st;
    char *base = be->scratch[0].data;
    uint32_t *b = (uint32_t *)base;
    long *offsets = (long *)(base + b_bytes);
    float *bias = n_in == 3 ? (float *)(base + b_bytes + off_bytes) : NULL;
    const uint16_t *w = in[1]->data, *x = in[0]->data;
    memset(b, 0, b_bytes);
    for (long kk = 0; kk < pairs; kk++) {
        offsets[kk] = kk * ldb;
        for (long j = 0; j < outs; j++) {
            const uint32_t hi = 2 * kk + 1 < ins ? w[j * ins + 2 * kk + 1] : 0;
            b[kk * ldb + j] = w[j * ins + 2 * kk] | hi << 16;
        }
    }
    if (bias) blis_bf16_widen(be->bf16_hw, in[2]->data, bias, outs);
    const uint32_t *a = (const uint32_t *)x;
    if (odd) { /* rows of an odd length are not whole pairs: pad each with a zero */
        uint32_t *padded = (uint32_t *)(base + b_bytes + off_bytes + bias_bytes);
        for (long i = 0; i < n; i++)
            for (long kk = 0; kk < pairs; kk++) {
                const uint32_t hi = 2 * kk + 1 < ins ? x[i * ins + 2 * kk + 1] : 0;
                padded[i * pairs + kk] = x[i * ins + 2 * kk] | hi << 16;
            }
        a = padded;
    }
    uint16_t *y = out[0]->data;
    /* Rows in blocks of 8 (the tile height) spread over the threads. */
    const long blocks = (n + 7) / 8;
    const int team = blocks < be->threads ? (int)(blocks > 0 ? blocks : 1) : be->threads;
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), members = omp_get_num_threads();
        const long first = blocks * t / members * 8, end_block = blocks * (t + 1) / members * 8;
        const long end = end_block < n ? end_block : n;
        if (end > first)
            blis_bf16_gemm(end - first, outs, pairs, a + first * pairs, pairs, b, offsets, NULL,
                           bias, y + first * outs, outs);
    }
    return NNOPT_OK;
}

/* ---- batch norm at inference ---- */

/* y = x * scale[c] + shift[c], scale = gamma / sqrt(running_var + eps),
 * shift = beta - running_mean * scale; channels across threads. */
static nnopt_status batchnorm_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                   int n_in, nnopt_tensor *const *out, int n_out) {
    if (op->p.bn.training || n_in != 5 || n_out != 1 || !all_bf16(in, 5) || !all_bf16(out, 1) ||
        (in[0]->ndim != 2 && in[0]->ndim != 4))
        return via_f32(be, op, in, n_in, out, n_out);
    const long batch = in[0]->shape[0], channels = in[0]->shape[1];
    const long spatial = in[0]->ndim == 4 ? in[0]->shape[2] * in[0]->shape[3] : 1;
    int valid = nnopt_tensor_numel(out[0]) == nnopt_tensor_numel(in[0]);
    for (int i = 1; i < 5; i++) valid = valid && nnopt_tensor_numel(in[i]) == channels;
    if (!valid) return via_f32(be, op, in, n_in, out, n_out);
    const long values = batch * channels * spatial;
    const int team = values < 32768 || channels < 2 ? 1
                     : channels < be->threads       ? (int)channels
                                                    : be->threads;
    const uint16_t *x = in[0]->data, *gamma = in[1]->data, *beta = in[2]->data;
    const uint16_t *mean = in[3]->data, *var = in[4]->data;
    uint16_t *y = out[0]->data;
    const double eps = op->p.bn.eps;
    const int hw = be->bf16_hw;
#pragma omp parallel for num_threads(team) schedule(static)
    for (long c = 0; c < channels; c++) {
        const float scale =
            (float)(nnopt_bf16_to_f32(gamma[c]) / sqrt(nnopt_bf16_to_f32(var[c]) + eps));
        const float shift = nnopt_bf16_to_f32(beta[c]) - nnopt_bf16_to_f32(mean[c]) * scale;
        for (long i = 0; i < batch; i++) {
            const long at = (i * channels + c) * spatial;
            blis_bf16_scale_shift(hw, x + at, y + at, spatial, scale, shift);
        }
    }
    return NNOPT_OK;
}

nnopt_status blis_bf16_run(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out) {
    if (!nnopt_ref_bf16_op(op->kind)) {
        be->host->set_error("blis: %s has no bf16 version (bf16 runs forward ops only)",
                            nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_UNSUPPORTED;
    }
    /* Mixed dtypes (a cast, a loss with integer labels) take the general path. */
    if (n_in < 1 || n_out < 1 || !all_bf16(in, n_in) || !all_bf16(out, n_out))
        return via_f32(be, op, in, n_in, out, n_out);
    switch (op->kind) {
    case NNOPT_OP_CONV2D:
        return conv_bf16(be, op, in, n_in, out, n_out);
    case NNOPT_OP_DENSE:
        return dense_bf16(be, op, in, n_in, out, n_out);
    case NNOPT_OP_BATCHNORM:
        return batchnorm_bf16(be, op, in, n_in, out, n_out);
    case NNOPT_OP_ACT:
        return blis_act_bf16(be, op, in, n_in, out, n_out);
    case NNOPT_OP_ADD:
        return blis_add_bf16(be, op, in, n_in, out, n_out);
    case NNOPT_OP_POOL2D:
        return blis_pool2d_bf16(be, op, in, n_in, out, n_out);
    default:
        return via_f32(be, op, in, n_in, out, n_out);
    }
}
