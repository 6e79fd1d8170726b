/* Reference int8 kernels (conv2d_int8, dense_int8): exact integer
 * arithmetic, the oracle for the fast backends. The input is quantised once
 * into a u8 copy, then every output is one int32 dot product. */
#include <stdlib.h>

#include "quant_kernels.h"
#include "ref_internal.h"

static const char *op_name(const nnopt_op *op) {
    return nnopt_op_kind_name(op->kind);
}

nnopt_status nnopt_qlinear_check(const nnopt_host_api *host, const nnopt_op *op,
                                 nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                                 int n_out, nnopt_qlinear_geometry *g) {
    nnopt_status st = ref_check_counts(host, op, n_in, 4, 4, n_out, 1);
    if (st != NNOPT_OK) return st;
    const nnopt_tensor *x = in[0], *w = in[1], *scale = in[2], *bias = in[3], *y = out[0];
    st = ref_check_tensor(host, op, x, "x", NNOPT_F32);
    if (st == NNOPT_OK) st = ref_check_tensor(host, op, w, "w", NNOPT_I8);
    if (st == NNOPT_OK) st = ref_check_tensor(host, op, scale, "w_scale", NNOPT_F32);
    if (st == NNOPT_OK) st = ref_check_tensor(host, op, bias, "b", NNOPT_F32);
    if (st == NNOPT_OK) st = ref_check_tensor(host, op, y, "y", NNOPT_F32);
    if (st != NNOPT_OK) return st;
    const nnopt_qlinear_params *qp = &op->p.qlinear;
    if (!(qp->x_scale > 0) || qp->zero_point < 0 || qp->zero_point > 255 ||
        (qp->act != NNOPT_ACT_IDENTITY && qp->act != NNOPT_ACT_RELU)) {
        ref_error(host, "%s: x_scale must be > 0, zero_point in [0, 255], act identity or relu",
                  op_name(op));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int conv = op->kind == NNOPT_OP_CONV2D_INT8;
    if (x->ndim != (conv ? 4 : 2) || w->ndim != x->ndim) {
        ref_error(host, "%s: x and w must be %s", op_name(op), conv ? "4-D" : "2-D");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const nnopt_conv2d_params *cp = &qp->conv;
    *g = (nnopt_qlinear_geometry){x->shape[0], x->shape[1], 1, 1, w->shape[0], 1, 1,
                                  1,           1,           1, 1, 0,           0, 1};
    if (conv) {
        if (cp->stride_h < 1 || cp->stride_w < 1 || cp->pad_h < 0 || cp->pad_w < 0 ||
            cp->groups < 1) {
            ref_error(host, "%s: bad stride, padding or groups", op_name(op));
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
        g->h = x->shape[2];
        g->w = x->shape[3];
        g->r = w->shape[2];
        g->s = w->shape[3];
        g->stride_h = cp->stride_h;
        g->stride_w = cp->stride_w;
        g->pad_h = cp->pad_h;
        g->pad_w = cp->pad_w;
        g->groups = cp->groups;
        g->p = (g->h + 2 * g->pad_h - g->r) / g->stride_h + 1;
        g->q = (g->w + 2 * g->pad_w - g->s) / g->stride_w + 1;
    }
    if (g->c % g->groups || g->k % g->groups || w->shape[1] * g->groups != g->c || g->p < 1 ||
        g->q < 1) {
        ref_error(host, "%s: weights do not match the input's channels / groups or window",
                  op_name(op));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int64_t per_k[1] = {g->k};
    const int64_t y4[4] = {g->n, g->k, g->p, g->q}, y2[2] = {g->n, g->k};
    st = ref_check_shape(host, op, scale, "w_scale", 1, per_k);
    if (st == NNOPT_OK) st = ref_check_shape(host, op, bias, "b", 1, per_k);
    if (st == NNOPT_OK) st = ref_check_shape(host, op, y, "y", conv ? 4 : 2, conv ? y4 : y2);
    return st;
}

/* Works for both ops: dense is a 1x1 convolution of 1x1 images. */
nnopt_status ref_qlinear(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_qlinear_geometry g;
    nnopt_status st = nnopt_qlinear_check(host, op, in, n_in, out, n_out, &g);
    if (st != NNOPT_OK) return st;
    const nnopt_qlinear_params *qp = &op->p.qlinear;
    const float *x = in[0]->data, *w_scale = in[2]->data, *bias = in[3]->data;
    const int8_t *w = in[1]->data;
    float *y = out[0]->data;
    const int64_t input_count = g.n * g.c * g.h * g.w;
    int32_t *xq = malloc((size_t)(input_count > 0 ? input_count : 1) * sizeof *xq);
    if (!xq) {
        ref_error(host, "%s: out of memory", op_name(op));
        return NNOPT_STATUS_OUT_OF_MEMORY;
    }
    const float inv_scale = 1.0f / qp->x_scale, zero_point = (float)qp->zero_point;
    /* Centred codes: xq - zero_point, so padding (x = 0) contributes nothing. */
    for (int64_t i = 0; i < input_count; i++)
        xq[i] = (int32_t)nnopt_quantize_u8(x[i], inv_scale, zero_point) - qp->zero_point;
    const int64_t cg = g.c / g.groups, kg = g.k / g.groups;
    const int relu = qp->act == NNOPT_ACT_RELU;
    for (int64_t n = 0; n < g.n; n++)
        for (int64_t k = 0; k < g.k; k++) {
            const int64_t c0 = (k / kg) * cg;
            const float scale = qp->x_scale * w_scale[k];
            for (int64_t p = 0; p < g.p; p++)
                for (int64_t q = 0; q < g.q; q++) {
                    int32_t acc = 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t r = 0; r < g.r; r++) {
                            const int64_t ih = p * g.stride_h - g.pad_h + r;
                            if (ih < 0 || ih >= g.h) continue;
                            for (int64_t s = 0; s < g.s; s++) {
                                const int64_t iw = q * g.stride_w - g.pad_w + s;
                                if (iw < 0 || iw >= g.w) continue;
                                acc += xq[((n * g.c + c0 + c) * g.h + ih) * g.w + iw] *
                                       (int32_t)w[((k * cg + c) * g.r + r) * g.s + s];
                            }
                        }
                    y[((n * g.k + k) * g.p + p) * g.q + q] =
                        nnopt_dequantize(acc, scale, bias[k], relu);
                }
        }
    free(xq);
    return NNOPT_OK;
}
