/* Reference element-wise ops: add (and add_relu) and dtype conversion. Both
 * are exact in double, so one generic loop serves every dtype pair. */
#include "ref_internal.h"

static double load_element(const nnopt_tensor *t, int64_t i) {
    return t->dtype == NNOPT_F32 ? (double)((const float *)t->data)[i]
                                 : ((const double *)t->data)[i];
}

/* Rounds to nearest for f32 (a sum of two floats computed in double and
 * rounded once is the correctly rounded float sum). */
static void store_element(nnopt_tensor *t, int64_t i, double value) {
    if (t->dtype == NNOPT_F32)
        ((float *)t->data)[i] = (float)value;
    else
        ((double *)t->data)[i] = value;
}

nnopt_status ref_add(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                     int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 2, 2, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *a = in[0], *b = in[1];
    nnopt_tensor *y = out[0];
    status = ref_check_float(host, op, a, "a");
    if (status == NNOPT_OK) status = ref_check_like(host, op, b, "b", a);
    if (status == NNOPT_OK) status = ref_check_like(host, op, y, "y", a);
    if (status != NNOPT_OK) return status;
    /* Element i is read before it is written, so y may alias a or b. */
    const int64_t count = nnopt_tensor_numel(a);
    for (int64_t i = 0; i < count; i++)
        store_element(y, i, load_element(a, i) + load_element(b, i));
    if (op->kind == NNOPT_OP_ADD_RELU) ref_relu_in_place(y);
    return NNOPT_OK;
}

void ref_add_in_place(nnopt_tensor *y, const nnopt_tensor *r) {
    const int64_t count = nnopt_tensor_numel(y);
    for (int64_t i = 0; i < count; i++)
        store_element(y, i, load_element(y, i) + load_element(r, i));
}

void ref_keep_where_positive(nnopt_tensor *t, const nnopt_tensor *y) {
    const int64_t count = nnopt_tensor_numel(t);
    for (int64_t i = 0; i < count; i++)
        if (!(load_element(y, i) > 0)) store_element(t, i, 0.0);
}

/* The relu of ref_act (x < 0 ? 0 : x: NaN and -0 pass through). */
void ref_relu_in_place(nnopt_tensor *t) {
    const int64_t count = nnopt_tensor_numel(t);
    for (int64_t i = 0; i < count; i++) {
        const double v = load_element(t, i);
        if (v < 0) store_element(t, i, 0.0);
    }
}

nnopt_status ref_cast(const nnopt_host_api *host, const nnopt_op *op, nnopt_tensor *const *in,
                      int n_in, nnopt_tensor *const *out, int n_out) {
    nnopt_status status = ref_check_counts(host, op, n_in, 1, 1, n_out, 1);
    if (status != NNOPT_OK) return status;
    const nnopt_tensor *x = in[0];
    nnopt_tensor *y = out[0];
    status = ref_check_float(host, op, x, "x");
    if (status == NNOPT_OK) status = ref_check_float(host, op, y, "y");
    if (status == NNOPT_OK) status = ref_check_shape(host, op, y, "y", x->ndim, x->shape);
    if (status != NNOPT_OK) return status;
    const int64_t count = nnopt_tensor_numel(x);
    for (int64_t i = 0; i < count; i++) store_element(y, i, load_element(x, i));
    return NNOPT_OK;
}
