/* Activations (forward and backward), add and bias gradients: vectorised
 * loops (blis_math.h replaces libm in the exp-based activations) split into
 * contiguous chunks across threads. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "blis_bf16.h"
#include "blis_internal.h"
#include "blis_math.h"

#define T float
#define BLIS_SUFFIX f32
#include "blis_elementwise.inc"
#undef T
#undef BLIS_SUFFIX
#define T double
#define BLIS_SUFFIX f64
#include "blis_elementwise.inc"
#undef T
#undef BLIS_SUFFIX

/* Enough threads that each gets at least min_chunk elements (thread start-up
 * costs more than a few thousand cheap elements). */
static int team_for(const blis_backend *be, long count, long min_chunk) {
    const long wanted = count / min_chunk;
    if (wanted < 1) return 1;
    return wanted < be->threads ? (int)wanted : be->threads;
}

/* [*first, *end) of thread t's share, in multiples of 16 elements so chunk
 * boundaries stay vector-aligned. */
static void chunk_range(long count, int t, int team, long *first, long *end) {
    const long blocks = (count + 15) / 16;
    *first = blocks * t / team * 16;
    *end = blocks * (t + 1) / team * 16;
    if (*first > count) *first = count;
    if (*end > count) *end = count;
}

static long act_min_chunk(nnopt_act_kind kind) {
    return kind == NNOPT_ACT_RELU || kind == NNOPT_ACT_RELU6 || kind == NNOPT_ACT_IDENTITY ? 32768
                                                                                           : 2048;
}

static nnopt_status check_act_kind(blis_backend *be, const nnopt_op *op) {
    if ((unsigned)op->p.act.kind >= NNOPT_ACT_KIND_COUNT) {
        be->host->set_error("blis: %s: unknown activation %d", nnopt_op_kind_name(op->kind),
                            (int)op->p.act.kind);
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

static nnopt_status check_same_numel(blis_backend *be, const nnopt_op *op, const nnopt_tensor *t,
                                     const char *role, const nnopt_tensor *like) {
    if (nnopt_tensor_numel(t) != nnopt_tensor_numel(like)) {
        be->host->set_error("blis: %s: %s has %lld values, expected %lld",
                            nnopt_op_kind_name(op->kind), role, (long long)nnopt_tensor_numel(t),
                            (long long)nnopt_tensor_numel(like));
        return NNOPT_STATUS_INVALID_ARGUMENT;
    }
    return NNOPT_OK;
}

nnopt_status blis_act(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 1, 1, n_out, 1);
    if (st == NNOPT_OK) st = check_act_kind(be, op);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, out[0], "y", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, out[0], "y", in[0]);
    if (st != NNOPT_OK) return st;
    const nnopt_act_kind kind = op->p.act.kind;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const int f32 = in[0]->dtype == NNOPT_F32;
    const void *x = in[0]->data;
    void *y = out[0]->data;
#pragma omp parallel num_threads(team_for(be, count, act_min_chunk(kind)))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        if (f32)
            act_forward_chunk_f32(kind, (const float *)x + first, (float *)y + first, end - first);
        else
            act_forward_chunk_f64(kind, (const double *)x + first, (double *)y + first,
                                  end - first);
    }
    return NNOPT_OK;
}

nnopt_status blis_act_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                          nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 3, 3, n_out, 1);
    if (st == NNOPT_OK) st = check_act_kind(be, op);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "x", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[2], "dy", in[0]);
    if (st == NNOPT_OK) st = blis_check_float(be, op, out[0], "dx", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, in[2], "dy", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, out[0], "dx", in[0]);
    if (st != NNOPT_OK) return st;
    /* The derivative is recomputed from x (in[1], y, is not needed). */
    const nnopt_act_kind kind = op->p.act.kind;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const int f32 = in[0]->dtype == NNOPT_F32;
    const void *x = in[0]->data, *dy = in[2]->data;
    void *dx = out[0]->data;
#pragma omp parallel num_threads(team_for(be, count, act_min_chunk(kind)))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        if (f32)
            act_backward_chunk_f32(kind, (const float *)x + first, (const float *)dy + first,
                                   (float *)dx + first, end - first);
        else
            act_backward_chunk_f64(kind, (const double *)x + first, (const double *)dy + first,
                                   (double *)dx + first, end - first);
    }
    return NNOPT_OK;
}

nnopt_status blis_add(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                      nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 2, n_out, 1);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "a", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[1], "b", in[0]);
    if (st == NNOPT_OK) st = blis_check_float(be, op, out[0], "y", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, in[1], "b", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, out[0], "y", in[0]);
    if (st != NNOPT_OK) return st;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const int f32 = in[0]->dtype == NNOPT_F32, relu = op->kind == NNOPT_OP_ADD_RELU;
    const void *a = in[0]->data, *b = in[1]->data;
    void *y = out[0]->data;
#pragma omp parallel num_threads(team_for(be, count, 32768))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        const float *af = (const float *)a + first, *bf = (const float *)b + first;
        const double *ad = (const double *)a + first, *bd = (const double *)b + first;
        float *yf = (float *)y + first;
        double *yd = (double *)y + first;
        if (f32 && relu)
            add_relu_chunk_f32(af, bf, yf, end - first);
        else if (f32)
            add_chunk_f32(af, bf, yf, end - first);
        else if (relu)
            add_relu_chunk_f64(ad, bd, yd, end - first);
        else
            add_chunk_f64(ad, bd, yd, end - first);
    }
    return NNOPT_OK;
}

void blis_add_where_positive(blis_backend *be, nnopt_dtype dtype, void *dx, const void *part,
                             const void *y, long count) {
#pragma omp parallel num_threads(team_for(be, count, 32768))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        if (dtype == NNOPT_F32)
            add_where_positive_chunk_f32((float *)dx + first, (const float *)part + first,
                                         (const float *)y + first, end - first);
        else
            add_where_positive_chunk_f64((double *)dx + first, (const double *)part + first,
                                         (const double *)y + first, end - first);
    }
}

void blis_relu_in_place(nnopt_dtype dtype, void *values, long count) {
    if (dtype == NNOPT_F32)
        relu_in_place_f32(values, count);
    else
        relu_in_place_f64(values, count);
}

/* In-place SGD (momentum, weight decay, Nesterov as the reference), chunks
 * across threads for large parameters. */
nnopt_status blis_sgd_update(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in,
                             int n_in, nnopt_tensor *const *out, int n_out) {
    const nnopt_sgd_params *sp = &op->p.sgd;
    const int needs_velocity = sp->momentum != 0.0;
    nnopt_status st = blis_check_counts(be, op, n_in, needs_velocity ? 3 : 2, 3, n_out, 0);
    (void)out;
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[0], "param", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, in[1], "grad", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, in[1], "grad", in[0]);
    if (st == NNOPT_OK && needs_velocity) st = blis_check_float(be, op, in[2], "velocity", in[0]);
    if (st == NNOPT_OK && needs_velocity) st = check_same_numel(be, op, in[2], "velocity", in[0]);
    if (st != NNOPT_OK) return st;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const int f32 = in[0]->dtype == NNOPT_F32;
    void *param = in[0]->data, *velocity = needs_velocity ? in[2]->data : NULL;
    const void *grad = in[1]->data;
#pragma omp parallel num_threads(team_for(be, count, 32768))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        if (f32)
            sgd_chunk_f32(sp, end - first, (float *)param + first, (const float *)grad + first,
                          velocity ? (float *)velocity + first : NULL);
        else
            sgd_chunk_f64(sp, end - first, (double *)param + first, (const double *)grad + first,
                          velocity ? (double *)velocity + first : NULL);
    }
    return NNOPT_OK;
}

/* Dense layers' bias gradient (dy is [N, K]): one pass over the rows in
 * double accumulators, which live in thread 0's scratch. */
static nnopt_status bias_bwd_rows(blis_backend *be, const nnopt_tensor *dy, nnopt_tensor *db,
                                  long images, long channels) {
    nnopt_status st = blis_scratch_reserve(be, 1, (size_t)channels * sizeof(double));
    if (st != NNOPT_OK) return st;
    double *acc = be->scratch[0].data;
    memset(acc, 0, (size_t)channels * sizeof *acc);
    if (dy->dtype == NNOPT_F32) {
        row_sums_f32(dy->data, 0, images, channels, acc);
        for (long k = 0; k < channels; k++) ((float *)db->data)[k] = (float)acc[k];
    } else {
        row_sums_f64(dy->data, 0, images, channels, acc);
        memcpy(db->data, acc, (size_t)channels * sizeof *acc);
    }
    return NNOPT_OK;
}

/* db[k] = sum of dy[n, k, ...] over n and the trailing dims; channels are
 * split across threads, each summed in double. */
nnopt_status blis_bias_bwd(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 1, 1, n_out, 1);
    const nnopt_tensor *dy = in[0];
    nnopt_tensor *db = out[0];
    if (st == NNOPT_OK) st = blis_check_float(be, op, dy, "dy", NULL);
    if (st == NNOPT_OK) st = blis_check_float(be, op, db, "db", dy);
    if (st == NNOPT_OK && (dy->ndim < 2 || nnopt_tensor_numel(db) != dy->shape[1])) {
        be->host->set_error("blis: bias_bwd: db must have dy.shape[1] values");
        st = NNOPT_STATUS_INVALID_ARGUMENT;
    }
    if (st != NNOPT_OK) return st;
    const long images = dy->shape[0], channels = dy->shape[1];
    long plane = 1;
    for (int d = 2; d < dy->ndim; d++) plane *= dy->shape[d];
    const int f32 = dy->dtype == NNOPT_F32;
    if (plane == 1) return bias_bwd_rows(be, dy, db, images, channels);
    const long total = images * channels * plane;
    const int team = channels < 2 ? 1 : team_for(be, total, 32768);
#pragma omp parallel for num_threads(team) schedule(static)
    for (long k = 0; k < channels; k++) {
        if (f32)
            ((float *)db->data)[k] = (float)channel_sum_f32((const float *)dy->data + k * plane,
                                                            images, plane, channels * plane);
        else
            ((double *)db->data)[k] = channel_sum_f64((const double *)dy->data + k * plane, images,
                                                      plane, channels * plane);
    }
    return NNOPT_OK;
}

/* ---- bf16: the f32 loops above on blocks widened in the stack ---- */

#define BF16_BLOCK 512 /* values per block: two f32 blocks stay in L1 */

/* ReLU needs no arithmetic: x < 0 ? 0 : x on the bits (NaN and -0 pass, as
 * in the f32 loop), so it is one pass over bf16 values. */
BLIS_VECTOR_CLONES
static void relu_bf16(const uint16_t *restrict x, uint16_t *restrict y, long count) {
#pragma omp simd
    for (long i = 0; i < count; i++) {
        const uint16_t magnitude = x[i] & 0x7fff;
        const int negative = (x[i] & 0x8000) && magnitude != 0 && magnitude <= 0x7f80;
        y[i] = negative ? 0 : x[i];
    }
}

nnopt_status blis_act_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 1, 1, n_out, 1);
    if (st == NNOPT_OK) st = check_act_kind(be, op);
    if (st == NNOPT_OK) st = check_same_numel(be, op, out[0], "y", in[0]);
    if (st != NNOPT_OK) return st;
    const nnopt_act_kind kind = op->p.act.kind;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const uint16_t *x = in[0]->data;
    uint16_t *y = out[0]->data;
    const int hw = be->bf16_hw;
#pragma omp parallel num_threads(team_for(be, count, act_min_chunk(kind)))
    {
        float wide_x[BF16_BLOCK], wide_y[BF16_BLOCK];
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        if (kind == NNOPT_ACT_RELU) {
            relu_bf16(x + first, y + first, end - first);
            first = end;
        }
        for (long i = first; i < end; i += BF16_BLOCK) {
            const long len = end - i < BF16_BLOCK ? end - i : BF16_BLOCK;
            blis_bf16_widen(hw, x + i, wide_x, len);
            act_forward_chunk_f32(kind, wide_x, wide_y, len);
            blis_bf16_narrow(hw, wide_y, y + i, len);
        }
    }
    return NNOPT_OK;
}

nnopt_status blis_add_bf16(blis_backend *be, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                           nnopt_tensor *const *out, int n_out) {
    nnopt_status st = blis_check_counts(be, op, n_in, 2, 2, n_out, 1);
    if (st == NNOPT_OK) st = check_same_numel(be, op, in[1], "b", in[0]);
    if (st == NNOPT_OK) st = check_same_numel(be, op, out[0], "y", in[0]);
    if (st != NNOPT_OK) return st;
    const long count = (long)nnopt_tensor_numel(in[0]);
    const uint16_t *a = in[0]->data, *b = in[1]->data;
    uint16_t *y = out[0]->data;
    const int hw = be->bf16_hw;
#pragma omp parallel num_threads(team_for(be, count, 32768))
    {
        long first, end;
        chunk_range(count, omp_get_thread_num(), omp_get_num_threads(), &first, &end);
        blis_bf16_add(hw, a + first, b + first, y + first, end - first);
    }
    return NNOPT_OK;
}
