/* Batch normalization (training and inference forward, training backward):
 * the reference's arithmetic, with channels split across threads and loops
 * the compiler vectorises (the reference is one thread of scalar loops and
 * took a quarter of a ResNet training step). Calls whose arguments are not
 * plainly valid go to the reference kernels, which report what is wrong. */
#include <math.h>
#include <omp.h>

#include "blis_internal.h"
#include "blis_math.h" /* BLIS_VECTOR_CLONES */
#include "ref_kernels.h"

typedef struct blis_bn_shape {
    long batch, channels, spatial; /* spatial: H * W, or 1 for [N, C] */
} blis_bn_shape;

#define T float
#define BLIS_SUFFIX f32
#include "blis_norm.inc"
#undef T
#undef BLIS_SUFFIX
#define T double
#define BLIS_SUFFIX f64
#include "blis_norm.inc"
#undef T
#undef BLIS_SUFFIX

static int per_channel(const nnopt_tensor *t, const nnopt_tensor *x) {
    return t && t->data && t->dtype == x->dtype && t->ndim == 1 && t->shape[0] == x->shape[1];
}

/* x is f32/f64, [N,C,H,W] or [N,C] with at least one value per channel. */
static int bn_shape_of(const nnopt_tensor *x, blis_bn_shape *s) {
    if (!x || !x->data || (x->dtype != NNOPT_F32 && x->dtype != NNOPT_F64) ||
        (x->ndim != 2 && x->ndim != 4))
        return 0;
    for (int d = 0; d < x->ndim; d++)
        if (x->shape[d] < 0) return 0;
    *s = (blis_bn_shape){x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] * x->shape[3] : 1};
    return s->batch * s->spatial > 0;
}

/* Threads for a channel loop: none idle, and one for small tensors (a
 * parallel region costs more than a few thousand values). */
static int bn_team(const blis_backend *be, const blis_bn_shape *s) {
    const long values = s->batch * s->channels * s->spatial;
    if (values < 32768 || s->channels < 2) return 1;
    return s->channels < be->threads ? (int)s->channels : be->threads;
}

nnopt_status blis_batchnorm(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                            nnopt_tensor *const *out, int n_out) {
    const nnopt_bn_params *bp = &op->p.bn;
    const int training = bp->training != 0;
    const int residual = op->kind == NNOPT_OP_BATCHNORM_ADD_RELU;
    const int relu = residual || op->kind == NNOPT_OP_BATCHNORM_RELU;
    blis_bn_shape s;
    int valid = n_in == 5 + residual && n_out == (training ? 3 : 1) && bn_shape_of(in[0], &s) &&
                bp->eps >= 0 && isfinite(bp->eps) &&
                (!training || (bp->momentum >= 0 && bp->momentum <= 1));
    for (int i = 1; valid && i < 5; i++) valid = per_channel(in[i], in[0]);
    valid = valid && blis_same_shape(out[0], in[0]);
    /* r is read as y is written, and x's channel twice: neither may be y */
    valid = valid && (!residual || (blis_same_shape(in[5], in[0]) && out[0]->data != in[0]->data &&
                                    out[0]->data != in[5]->data));
    for (int i = 1; valid && i < n_out; i++) valid = per_channel(out[i], in[0]);
    if (!valid) return nnopt_ref_run(be->host, op, in, n_in, out, n_out);

    const int team = bn_team(be, &s);
    void *save_mean = training ? out[1]->data : NULL, *save_invstd = training ? out[2]->data : NULL;
    const void *r = residual ? in[5]->data : NULL;
    if (in[0]->dtype == NNOPT_F32)
        bn_forward_f32(&s, bp, relu, team, in[0]->data, in[1]->data, in[2]->data, in[3]->data,
                       in[4]->data, r, out[0]->data, save_mean, save_invstd);
    else
        bn_forward_f64(&s, bp, relu, team, in[0]->data, in[1]->data, in[2]->data, in[3]->data,
                       in[4]->data, r, out[0]->data, save_mean, save_invstd);
    return NNOPT_OK;
}

nnopt_status blis_batchnorm_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                                int n_in, nnopt_tensor *const *out, int n_out) {
    blis_bn_shape s;
    /* in: x, gamma, dy, save_mean, save_invstd (, y behind a fused relu);
     * out: dx, dgamma, dbeta */
    const int relu = op->kind == NNOPT_OP_BATCHNORM_RELU_BWD;
    const int valid = n_in == 5 + relu && (!relu || blis_same_shape(in[5], in[0])) && n_out == 3 &&
                      bn_shape_of(in[0], &s) && per_channel(in[1], in[0]) &&
                      blis_same_shape(in[2], in[0]) && per_channel(in[3], in[0]) &&
                      per_channel(in[4], in[0]) && blis_same_shape(out[0], in[0]) &&
                      per_channel(out[1], in[0]) && per_channel(out[2], in[0]);
    if (!valid) return nnopt_ref_run(be->host, op, in, n_in, out, n_out);

    const int team = bn_team(be, &s);
    const void *relu_y = relu ? in[5]->data : NULL;
    if (in[0]->dtype == NNOPT_F32)
        bn_backward_f32(&s, team, in[0]->data, in[1]->data, in[2]->data, relu_y, in[3]->data,
                        in[4]->data, out[0]->data, out[1]->data, out[2]->data);
    else
        bn_backward_f64(&s, team, in[0]->data, in[1]->data, in[2]->data, relu_y, in[3]->data,
                        in[4]->data, out[0]->data, out[1]->data, out[2]->data);
    return NNOPT_OK;
}
