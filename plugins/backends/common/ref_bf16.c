/* bf16 in the reference kernels, and for any CPU backend that has no bf16
 * kernel of its own for an op: every bf16 tensor of the op is widened to an
 * f32 copy (exact), the f32 kernel runs, and the outputs are rounded back to
 * bf16 (nearest, ties to even). Storage is bf16, arithmetic f32: the oracle
 * the fast bf16 kernels are tested against. */
#include <stdlib.h>

#include "nnopt/bf16.h"
#include "ref_internal.h"

int nnopt_ref_bf16_op(nnopt_op_kind op) {
    /* The forward ops: what inference needs. Backward and optimizer ops are
     * left out on purpose: rounding every update to bf16 loses the small
     * ones, which is not a training a user should get by accident. */
    switch (op) {
    case NNOPT_OP_CONV2D:
    case NNOPT_OP_DENSE:
    case NNOPT_OP_POOL2D:
    case NNOPT_OP_ACT:
    case NNOPT_OP_ADD:
    case NNOPT_OP_CAST:
    case NNOPT_OP_BATCHNORM:
    case NNOPT_OP_DROPOUT:
    case NNOPT_OP_SOFTMAX_XENT:
        return 1;
    default:
        return 0;
    }
}

int nnopt_op_has_bf16(const nnopt_tensor *const *in, int n_in, const nnopt_tensor *const *out,
                      int n_out) {
    for (int i = 0; i < n_in; i++)
        if (in && in[i] && in[i]->dtype == NNOPT_BF16) return 1;
    for (int i = 0; i < n_out; i++)
        if (out && out[i] && out[i]->dtype == NNOPT_BF16) return 1;
    return 0;
}

/* A tensor worth widening: bf16, allocated, with a sane shape (anything else
 * goes to the kernel untouched, whose checks then explain what is wrong). */
static int widenable(const nnopt_tensor *t) {
    if (!t || t->dtype != NNOPT_BF16 || !t->data || t->ndim < 0 || t->ndim > NNOPT_MAX_DIMS)
        return 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return 0;
    return 1;
}

/* *wide = t as f32 (a copy of its values when copy_values). */
static nnopt_status widen(const nnopt_tensor *t, nnopt_tensor *wide, int copy_values) {
    *wide = *t;
    wide->dtype = NNOPT_F32;
    wide->owns_data = 1;
    const int64_t count = nnopt_tensor_numel(t);
    float *data = malloc((size_t)(count > 0 ? count : 1) * sizeof *data);
    if (!data) return NNOPT_STATUS_OUT_OF_MEMORY;
    const uint16_t *src = t->data;
    if (copy_values)
        for (int64_t i = 0; i < count; i++) data[i] = nnopt_bf16_to_f32(src[i]);
    wide->data = data;
    return NNOPT_OK;
}

static void narrow(const nnopt_tensor *wide, nnopt_tensor *t) {
    const float *src = wide->data;
    uint16_t *dst = t->data;
    const int64_t count = nnopt_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) dst[i] = nnopt_bf16_from_f32(src[i]);
}

#define BF16_MAX_TENSORS 8

/* f64 -> bf16 straight (nnopt_bf16_from_f64): through an f32 copy the value
 * would be rounded twice, and could land on the other side of a tie. */
static nnopt_status cast_f64_to_bf16(const nnopt_host_api *host, const nnopt_op *op,
                                     const nnopt_tensor *x, nnopt_tensor *y) {
    nnopt_status st = ref_check_tensor(host, op, x, "x", NNOPT_F64);
    if (st == NNOPT_OK) st = ref_check_tensor(host, op, y, "y", NNOPT_BF16);
    if (st == NNOPT_OK) st = ref_check_shape(host, op, y, "y", x->ndim, x->shape);
    if (st != NNOPT_OK) return st;
    const double *src = x->data;
    uint16_t *dst = y->data;
    const int64_t count = nnopt_tensor_numel(x);
    for (int64_t i = 0; i < count; i++) dst[i] = nnopt_bf16_from_f64(src[i]);
    return NNOPT_OK;
}

nnopt_status nnopt_bf16_via_f32(const nnopt_host_api *host, nnopt_f32_op_fn run_f32, void *ctx,
                                const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                                nnopt_tensor *const *out, int n_out) {
    if (n_in < 0 || n_out < 0 || n_in > BF16_MAX_TENSORS || n_out > BF16_MAX_TENSORS ||
        (n_in && !in) || (n_out && !out)) {
        ref_error(host, "%s: bad tensor counts for bf16", nnopt_op_kind_name(op->kind));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (op->kind == NNOPT_OP_CAST && n_in == 1 && n_out == 1 && in[0] && out[0] &&
        in[0]->dtype == NNOPT_F64 && out[0]->dtype == NNOPT_BF16)
        return cast_f64_to_bf16(host, op, in[0], out[0]);
    nnopt_tensor wide_in[BF16_MAX_TENSORS], wide_out[BF16_MAX_TENSORS];
    nnopt_tensor *in_f32[BF16_MAX_TENSORS] = {0}, *out_f32[BF16_MAX_TENSORS] = {0};
    int in_wide[BF16_MAX_TENSORS] = {0}, out_wide[BF16_MAX_TENSORS] = {0};
    nnopt_status st = NNOPT_OK;
    for (int i = 0; i < n_in; i++) {
        in_f32[i] = in[i];
        if (st != NNOPT_OK || !widenable(in[i])) continue;
        st = widen(in[i], &wide_in[i], 1);
        in_wide[i] = st == NNOPT_OK;
        if (in_wide[i]) in_f32[i] = &wide_in[i];
    }
    for (int i = 0; i < n_out; i++) {
        out_f32[i] = out[i];
        if (st != NNOPT_OK || !widenable(out[i])) continue;
        /* Outputs start from their current values: softmax_xent may accumulate. */
        st = widen(out[i], &wide_out[i], 1);
        out_wide[i] = st == NNOPT_OK;
        if (out_wide[i]) out_f32[i] = &wide_out[i];
    }
    if (st != NNOPT_OK)
        ref_error(host, "%s: out of memory for bf16 -> f32 copies", nnopt_op_kind_name(op->kind));
    else
        st = run_f32(ctx, op, in_f32, n_in, out_f32, n_out);
    if (st == NNOPT_OK) {
        for (int i = 0; i < n_out; i++)
            if (out_wide[i]) narrow(&wide_out[i], out[i]);
        /* Batch norm in training mode updates its running statistics in place. */
        if (op->kind == NNOPT_OP_BATCHNORM && op->p.bn.training)
            for (int i = 3; i < n_in && i < 5; i++)
                if (in_wide[i]) narrow(&wide_in[i], in[i]);
    }
    for (int i = 0; i < n_in; i++)
        if (in_wide[i]) free(wide_in[i].data);
    for (int i = 0; i < n_out; i++)
        if (out_wide[i]) free(wide_out[i].data);
    return st;
}
