/* Reference optimizer updates (SGD with momentum/Nesterov, Adam), applied in
 * place to the parameter and its state tensors. */
#include "ref_internal.h"

#include <math.h>

#define T float
#define REF_SUFFIX f32
#include "ref_optim.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_optim.inc"
#undef T
#undef REF_SUFFIX

nnopt_status ref_sgd_update(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                            int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_sgd_params *sp = &op->p.sgd;
    const int needs_velocity = sp->momentum != 0.0;
    nnopt_status status = ref_check_counts(host, op, n_in, needs_velocity ? 3 : 2, 3, n_out, 0);
    if (status != NNOPT_OK) return status;
    (void)out;
    nnopt_tensor *param = in[0], *grad = in[1], *velocity = needs_velocity ? in[2] : NULL;
    status = ref_check_float(host, op, param, "param");
    if (status == NNOPT_OK) status = ref_check_like(host, op, grad, "grad", param);
    if (status == NNOPT_OK && velocity != NULL)
        status = ref_check_like(host, op, velocity, "velocity", param);
    if (status != NNOPT_OK) return status;
    if (param->dtype == NNOPT_F32)
        sgd_update_f32(sp, nnopt_tensor_numel(param), param->data, grad->data,
                       velocity ? velocity->data : NULL);
    else
        sgd_update_f64(sp, nnopt_tensor_numel(param), param->data, grad->data,
                       velocity ? velocity->data : NULL);
    return NNOPT_OK;
}

nnopt_status ref_adam_update(const nnopt_host_api *host, const nnopt_op *op,
                             nnopt_tensor *const *in, int n_in, nnopt_tensor *const *out,
                             int n_out) {
    const nnopt_adam_params *ap = &op->p.adam;
    nnopt_status status = ref_check_counts(host, op, n_in, 4, 4, n_out, 0);
    if (status != NNOPT_OK) return status;
    (void)out;
    if (ap->step < 1 || !(ap->beta1 >= 0 && ap->beta1 < 1) || !(ap->beta2 >= 0 && ap->beta2 < 1)) {
        ref_error(host, "adam_update: need step >= 1 and betas in [0, 1) (step %lld, betas %g %g)",
                  (long long)ap->step, ap->beta1, ap->beta2);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    nnopt_tensor *param = in[0], *grad = in[1], *m = in[2], *v = in[3];
    status = ref_check_float(host, op, param, "param");
    if (status == NNOPT_OK) status = ref_check_like(host, op, grad, "grad", param);
    if (status == NNOPT_OK) status = ref_check_like(host, op, m, "m", param);
    if (status == NNOPT_OK) status = ref_check_like(host, op, v, "v", param);
    if (status != NNOPT_OK) return status;
    if (param->dtype == NNOPT_F32)
        adam_update_f32(ap, nnopt_tensor_numel(param), param->data, grad->data, m->data, v->data);
    else
        adam_update_f64(ap, nnopt_tensor_numel(param), param->data, grad->data, m->data, v->data);
    return NNOPT_OK;
}
