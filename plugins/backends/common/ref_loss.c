/* Reference softmax cross-entropy (mean over the batch) with integer labels
 * or soft targets, and a softmax temperature. */
#include "ref_internal.h"

#include <math.h>

#define T float
#define REF_SUFFIX f32
#include "ref_loss.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_loss.inc"
#undef T
#undef REF_SUFFIX

nnopt_status ref_softmax_xent(const nnopt_host_api *host, const nnopt_op *op,
                              nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                              int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 2);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *logits = in[0], *target = in[1];
    nnopt_tensor *loss = out[0], *dlogits = out[1];
    const nnopt_xent_params *xp = &op->p.xent;
    const double weight = xp->weight == 0 ? 1.0 : xp->weight;
    status = ref_check_float(host, op, logits, "logits");
    if (status != NNOPT_OK) return status;
    if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1) {
        ref_error(host, "softmax_xent: logits must be [N,K] with N, K >= 1");
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (!(xp->temperature > 0) || !isfinite(xp->temperature)) {
        ref_error(host, "softmax_xent: temperature must be a positive number (got %g)",
                  xp->temperature);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    const int64_t batch = logits->shape[0], classes = logits->shape[1];
    const int64_t one = 1;
    if (xp->soft_targets) {
        status = ref_check_like(host, op, target, "target", logits);
    } else {
        status = ref_check_tensor(host, op, target, "labels", NNOPT_I32);
        if (status == NNOPT_OK) status = ref_check_shape(host, op, target, "labels", 1, &batch);
    }
    if (status == NNOPT_OK) status = ref_check_tensor(host, op, loss, "loss", logits->dtype);
    if (status == NNOPT_OK) status = ref_check_shape(host, op, loss, "loss", 1, &one);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dlogits, "dlogits", logits);
    if (status != NNOPT_OK) return status;

    const int32_t *labels = xp->soft_targets ? NULL : target->data;
    for (int64_t n = 0; labels != NULL && n < batch; n++) {
        if (labels[n] < 0 || labels[n] >= classes) {
            ref_error(host, "softmax_xent: label %d of sample %lld is outside [0, %lld)",
                      (int)labels[n], (long long)n, (long long)classes);
            return NNOPT_STATUS_INVALID_ARGUMENT;
        }
    }
    const void *soft_targets = xp->soft_targets ? target->data : NULL;
    if (logits->dtype == NNOPT_F32)
        softmax_xent_f32(batch, classes, xp->temperature, weight, xp->accumulate, logits->data,
                         labels, soft_targets, loss->data, dlogits->data);
    else
        softmax_xent_f64(batch, classes, xp->temperature, weight, xp->accumulate, logits->data,
                         labels, soft_targets, loss->data, dlogits->data);
    return NNOPT_OK;
}
