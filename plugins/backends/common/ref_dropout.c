/* Reference inverted dropout and its gradient. The mask is a pure function of
 * (seed, flat index), as ops.h specifies, so every backend and every thread
 * split draws the same mask without sharing generator state. */
#include "ref_internal.h"

/* splitmix64's output function (Steele, Lea and Flood, 2014), as ops.h gives it. */
static uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* u(seed, i) in [0, 1) from the top 53 bits; element i survives iff u >= p
 * (so p = 0 keeps everything). seed + i wraps modulo 2^64 by design. */
static int dropout_keeps(const nnopt_dropout_params *dp, int64_t index) {
    const double u = (double)(splitmix64(dp->seed + (uint64_t)index) >> 11) * 0x1.0p-53;
    return u >= dp->p;
}

#define T float
#define REF_SUFFIX f32
#include "ref_dropout.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_dropout.inc"
#undef T
#undef REF_SUFFIX

nnopt_status ref_dropout(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_dropout_params *dp = &op->p.dropout;
    nnopt_status status = ref_check_counts(host, op, n_in, 1, 1, n_out, 2);
    if (status != NNOPT_OK) return status;
    if (!(dp->p >= 0 && dp->p < 1)) { /* p = 1 would scale the survivors by 1/0 */
        ref_error(host, "dropout: p must be in [0, 1) (got %g)", dp->p);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0], *mask = out[1];
    status = ref_check_float(host, op, x, "x");
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, mask, "mask", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        dropout_forward_f32(dp, nnopt_tensor_numel(x), x->data, y->data, mask->data);
    else
        dropout_forward_f64(dp, nnopt_tensor_numel(x), x->data, y->data, mask->data);
    return NNOPT_OK;
}

nnopt_status ref_dropout_bwd(const nnopt_host_api *host, const nnopt_op *op,
                             nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                             int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *dy = in[0], *mask = in[1];
    nnopt_tensor *dx = out[0];
    status = ref_check_float(host, op, dy, "dy");
    if (status == NNOPT_OK) status = ref_check_like(host, op, mask, "mask", dy);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dx, "dx", dy);
    if (status != NNOPT_OK) return status;
    if (dy->dtype == NNOPT_F32)
        dropout_backward_f32(nnopt_tensor_numel(dy), dy->data, mask->data, dx->data);
    else
        dropout_backward_f64(nnopt_tensor_numel(dy), dy->data, mask->data, dx->data);
    return NNOPT_OK;
}
