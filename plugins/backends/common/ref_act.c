/* Reference activations and their derivatives. The derivative is computed
 * from x (not from the forward output y), the most accurate choice. */
#include "ref_internal.h"

#include <math.h>

#define GELU_TANH_SCALE 0.7978845608028654 /* sqrt(2 / pi) */
#define GELU_TANH_CUBIC 0.044715
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

/* 1 / (1 + e^-x) without overflowing exp for large |x|. */
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

static double act_value(nnopt_act_kind kind, double x) {
    switch (kind) {
    case NNOPT_ACT_IDENTITY:
        return x;
    case NNOPT_ACT_RELU:
        return x < 0 ? 0.0 : x; /* NaN passes through */
    case NNOPT_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x)));
    case NNOPT_ACT_GELU_ERF:
        return 0.5 * x * (1.0 + erf(x * INV_SQRT_2));
    case NNOPT_ACT_TANH:
        return tanh(x);
    case NNOPT_ACT_SIGMOID:
        return sigmoid(x);
    case NNOPT_ACT_RELU6:
        return x < 0 ? 0.0 : (x > 6 ? 6.0 : x);
    case NNOPT_ACT_KIND_COUNT:
        break;
    }
    return 0.0; /* unreachable: the kind is checked before the loop */
}

/* d act / dx at x. At the kinks of relu and relu6 the derivative is taken
 * as 0, as PyTorch does. */
static double act_derivative(nnopt_act_kind kind, double x) {
    switch (kind) {
    case NNOPT_ACT_IDENTITY:
        return 1.0;
    case NNOPT_ACT_RELU:
        return x > 0 ? 1.0 : 0.0;
    case NNOPT_ACT_GELU_TANH: {
        const double t = tanh(GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x));
        const double du_dx = GELU_TANH_SCALE * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x);
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx;
    }
    case NNOPT_ACT_GELU_ERF:
        return 0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    case NNOPT_ACT_TANH: {
        const double t = tanh(x);
        return 1.0 - t * t;
    }
    case NNOPT_ACT_SIGMOID: {
        const double s = sigmoid(x);
        return s * (1.0 - s);
    }
    case NNOPT_ACT_RELU6:
        return x > 0 && x < 6 ? 1.0 : 0.0;
    case NNOPT_ACT_KIND_COUNT:
        break;
    }
    return 0.0;
}

#define T float
#define REF_SUFFIX f32
#include "ref_act.inc"
#undef T
#undef REF_SUFFIX

#define T double
#define REF_SUFFIX f64
#include "ref_act.inc"
#undef T
#undef REF_SUFFIX

static nnopt_status check_act_kind(const nnopt_host_api *host, const nnopt_op *op) {
    if ((unsigned)op->p.act.kind >= NNOPT_ACT_KIND_COUNT) {
        ref_error(host, "%s: unknown activation kind %d", nnopt_op_kind_name(op->kind),
                  (int)op->p.act.kind);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

nnopt_status ref_act(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                     int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 1, 1, n_out, 1);
    if (status == NNOPT_OK) status = check_act_kind(host, op);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    status = ref_check_float(host, op, x, "x");
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        act_forward_f32(op->p.act.kind, nnopt_tensor_numel(x), x->data, y->data);
    else
        act_forward_f64(op->p.act.kind, nnopt_tensor_numel(x), x->data, y->data);
    return NNOPT_OK;
}

nnopt_status ref_act_bwd(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                         int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 3, 3, n_out, 1);
    if (status == NNOPT_OK) status = check_act_kind(host, op);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0], *y = in[1], *dy = in[2];
    nnopt_tensor *dx = out[0];
    status = ref_check_float(host, op, x, "x");
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dy, "dy", x);
    if (status == NNOPT_OK) status = ref_check_like(host, op, dx, "dx", x);
    if (status != NNOPT_OK) return status;
    if (x->dtype == NNOPT_F32)
        act_backward_f32(op->p.act.kind, nnopt_tensor_numel(x), x->data, dy->data, dx->data);
    else
        act_backward_f64(op->p.act.kind, nnopt_tensor_numel(x), x->data, dy->data, dx->data);
    return NNOPT_OK;
}
