/* The cuda backend's graph replay (plugins/backends/cuda/cuda_graph.c) on
 * the host: the CUDA graph calls and the backend's op execution are test
 * doubles that log what the device would run, so the order and number of
 * executions can be checked without a GPU. Every sequence of calls must make
 * the device run exactly the ops sent, in the order sent, whether they run
 * directly, are held back, captured or replayed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda_internal.h"

/* ---- doubles: what the device runs is a log of op labels ---- */

enum { LOG_MAX = 4096, GRAPH_MAX_OPS = 256 };

struct CUgraph_st {
    int ops[GRAPH_MAX_OPS];
    int n;
};
struct CUgraphExec_st {
    int ops[GRAPH_MAX_OPS];
    int n;
};

static struct {
    int ran[LOG_MAX];            /* labels of the ops the device ran, in order */
    const void *ran_x[LOG_MAX];  /* and the data address of their first input */
    int64_t ran_x_dim1[LOG_MAX]; /* and its second dimension */
    int n_ran;
    int capturing;
    cudaGraph_t graph; /* being captured */
    int begin_captures, launches, flushes, live_execs;
    int fail_label;        /* an op with this label fails while captured (-1: none) */
    int fail_direct_label; /* ... fails when run directly (-1: none) */
} device;

static int op_label(const nnopt_op *op) {
    return (int)op->p.act.kind * 100 + (int)op->kind;
}

nnopt_status cuda_execute_op(cuda_backend *b, const nnopt_op *op, nnopt_tensor *const *in, int n_in,
                             nnopt_tensor *const *out, int n_out) {
    (void)out, (void)n_out;
    const int label = op_label(op);
    if (device.capturing) {
        assert_true(b->graphs.capturing);
        if (label == device.fail_label) return NNOPT_STATUS_UNSUPPORTED;
        assert_true(device.graph->n < GRAPH_MAX_OPS);
        device.graph->ops[device.graph->n++] = label;
        return NNOPT_OK;
    }
    assert_false(b->graphs.capturing);
    if (label == device.fail_direct_label) return NNOPT_STATUS_INVALID_ARGUMENT;
    assert_true(device.n_ran < LOG_MAX);
    assert_true(n_in >= 1);
    device.ran_x[device.n_ran] = in[0]->data;
    device.ran_x_dim1[device.n_ran] = in[0]->shape[1];
    device.ran[device.n_ran++] = label;
    return NNOPT_OK;
}

nnopt_status cuda_flush_updates(cuda_backend *b) {
    (void)b;
    device.flushes++;
    return NNOPT_OK;
}

nnopt_status cuda_check(const cuda_backend *b, cudaError_t status, const char *what) {
    (void)b, (void)what;
    return status == cudaSuccess ? NNOPT_OK : NNOPT_STATUS_DEVICE;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
    (void)stream, (void)mode;
    assert_false(device.capturing);
    device.capturing = 1;
    device.begin_captures++;
    device.graph = calloc(1, sizeof *device.graph);
    assert_non_null(device.graph);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
    (void)stream;
    assert_true(device.capturing);
    device.capturing = 0;
    *graph = device.graph;
    device.graph = NULL;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                 unsigned long long flags) {
    (void)flags;
    *exec = calloc(1, sizeof **exec);
    assert_non_null(*exec);
    memcpy((*exec)->ops, graph->ops, sizeof graph->ops);
    (*exec)->n = graph->n;
    device.live_execs++;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
    free(graph);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    free(exec);
    device.live_execs--;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
    (void)stream;
    assert_false(device.capturing);
    device.launches++;
    for (int i = 0; i < exec->n; i++) {
        assert_true(device.n_ran < LOG_MAX);
        device.ran[device.n_ran++] = exec->ops[i];
    }
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    return cudaSuccess;
}

/* ---- what a test sends ---- */

static nnopt_tensor tensors[4];
static char tensor_memory[4][64];

static int setup(void **state) {
    (void)state;
    memset(&device, 0, sizeof device);
    device.fail_label = -1;
    device.fail_direct_label = -1;
    for (int i = 0; i < 4; i++) {
        memset(&tensors[i], 0, sizeof tensors[i]);
        tensors[i].dtype = NNOPT_F32;
        tensors[i].ndim = 2;
        tensors[i].shape[0] = 2;
        tensors[i].shape[1] = 3;
        tensors[i].data = tensor_memory[i];
    }
    return 0;
}

static cuda_backend *new_backend(void) {
    cuda_backend *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->use_graphs = 1;
    return b;
}

static void free_backend(cuda_backend *b) {
    cuda_graph_free(b);
    assert_int_equal(device.live_execs, 0);
    free(b);
}

/* Op `label` (act kind * 100 + op kind) on tensors[0] -> tensors[1]. */
static nnopt_op make_op(int label) {
    nnopt_op op;
    memset(&op, 0, sizeof op);
    op.kind = (nnopt_op_kind)(label % 100);
    op.p.act.kind = (nnopt_act_kind)(label / 100);
    return op;
}

static void send_op(cuda_backend *b, int label, int log[], int *n_log) {
    nnopt_op op = make_op(label);
    nnopt_tensor *in[1] = {&tensors[0]}, *out[1] = {&tensors[1]};
    assert_int_equal(cuda_graph_run(b, &op, in, 1, out, 1), NNOPT_OK);
    log[(*n_log)++] = label;
}

/* Sends ops[0..n) then ends the segment; checks what the device ran. */
static void send_segment(cuda_backend *b, const int *ops, int n, int sent[], int *n_sent) {
    for (int i = 0; i < n; i++) send_op(b, ops[i], sent, n_sent);
    assert_int_equal(cuda_graph_segment_end(b), NNOPT_OK);
    assert_int_equal(device.n_ran, *n_sent);
    assert_memory_equal(device.ran, sent, (size_t)*n_sent * sizeof *sent);
}

#define ACT(kind) (NNOPT_OP_ACT + 100 * (kind))
static const int step_ops[] = {NNOPT_OP_CONV2D, ACT(NNOPT_ACT_RELU), NNOPT_OP_POOL2D,
                               NNOPT_OP_DENSE, ACT(NNOPT_ACT_TANH)};
enum { STEP_OPS = sizeof step_ops / sizeof step_ops[0] };

/* ---- tests ---- */

static void test_repeated_segment_is_captured_once_then_replayed(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    for (int step = 0; step < 5; step++) send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.begin_captures, 1);
    assert_int_equal(b->graphs.captures, 1);
    assert_int_equal(device.launches, 4); /* steps 2..5 */
    assert_int_equal(b->graphs.replays, 4);
    free_backend(b);
}

static void test_divergence_runs_held_back_ops_first(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent); /* captured */
    /* Differs at the fourth op: the first three were held back. */
    int changed[STEP_OPS];
    memcpy(changed, step_ops, sizeof changed);
    changed[3] = ACT(NNOPT_ACT_SIGMOID);
    send_segment(b, changed, STEP_OPS, sent, &n_sent);
    /* The new sequence replaced the old one, and repeats: captured, replayed. */
    send_segment(b, changed, STEP_OPS, sent, &n_sent);
    send_segment(b, changed, STEP_OPS, sent, &n_sent);
    assert_int_equal(b->graphs.captures, 2);
    assert_int_equal(device.launches, 3);
    /* The old sequence again: recorded anew. */
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(b->graphs.captures, 3);
    free_backend(b);
}

static void test_shorter_and_longer_segments(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    /* Ends after three of the five: those three run at the segment's end. */
    send_segment(b, step_ops, 3, sent, &n_sent);
    assert_int_equal(device.launches, 0);
    /* All five and one more: the five held back run when the sixth differs. */
    int longer[STEP_OPS + 1];
    memcpy(longer, step_ops, sizeof step_ops);
    longer[STEP_OPS] = NNOPT_OP_ADD;
    send_segment(b, longer, STEP_OPS + 1, sent, &n_sent);
    send_segment(b, longer, STEP_OPS + 1, sent, &n_sent);
    send_segment(b, longer, STEP_OPS + 1, sent, &n_sent);
    assert_int_equal(b->graphs.captures, 1);
    assert_int_equal(device.launches, 2);
    free_backend(b);
}

static void test_changed_tensor_address_or_shape_is_another_sequence(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.launches, 1);
    /* Same tensor objects, other memory: never the captured graph. */
    tensors[0].data = tensor_memory[2];
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.launches, 1);
    tensors[0].data = tensor_memory[0];
    tensors[1].shape[1] = 4;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.launches, 1);
    free_backend(b);
}

static void test_failed_capture_runs_ops_directly_and_is_not_retried(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    device.fail_label = NNOPT_OP_POOL2D;
    for (int step = 0; step < 4; step++) send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.begin_captures, 1);
    assert_int_equal(b->graphs.failed_captures, 1);
    assert_int_equal(device.launches, 0);
    free_backend(b);
}

static void test_segment_with_a_failed_op_is_not_kept(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    device.fail_direct_label = NNOPT_OP_DENSE;
    nnopt_op op = make_op(NNOPT_OP_CONV2D);
    nnopt_tensor *in[1] = {&tensors[0]}, *out[1] = {&tensors[1]};
    assert_int_equal(cuda_graph_run(b, &op, in, 1, out, 1), NNOPT_OK);
    op = make_op(NNOPT_OP_DENSE);
    assert_int_equal(cuda_graph_run(b, &op, in, 1, out, 1), NNOPT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(cuda_graph_segment_end(b), NNOPT_OK);
    /* The same ops again, now succeeding: run directly as they come (the
     * failed sequence was not kept to be matched). */
    device.fail_direct_label = -1;
    const int ran_before = device.n_ran;
    op = make_op(NNOPT_OP_CONV2D);
    assert_int_equal(cuda_graph_run(b, &op, in, 1, out, 1), NNOPT_OK);
    assert_int_equal(device.n_ran, ran_before + 1);
    assert_int_equal(cuda_graph_segment_end(b), NNOPT_OK);
    free_backend(b);
}

static void test_invalidate_recaptures(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    cuda_graph_invalidate(b);
    assert_int_equal(device.live_execs, 0);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(b->graphs.captures, 2);
    assert_int_equal(device.launches, 3);
    free_backend(b);
}

static void test_many_sequences_evict_the_least_recent(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    /* More distinct sequences (by their first op) than entries, each twice. */
    for (int round = 0; round < 2; round++)
        for (int s = 0; s < CUDA_GRAPH_ENTRIES + 4; s++) {
            const int ops[2] = {NNOPT_OP_CONV2D + 100 * (s + 1), NNOPT_OP_ADD};
            send_segment(b, ops, 2, sent, &n_sent);
        }
    assert_true(b->graphs.n_entries <= CUDA_GRAPH_ENTRIES);
    /* Alternating two sequences keeps both. */
    const int first[2] = {NNOPT_OP_CONV2D, NNOPT_OP_ADD},
              second[2] = {NNOPT_OP_DENSE, NNOPT_OP_ADD};
    for (int k = 0; k < 6; k++) send_segment(b, k % 2 ? second : first, 2, sent, &n_sent);
    assert_true(device.launches >= 4);
    free_backend(b);
}

static void test_updates_are_sent_at_every_segment_end(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    for (int step = 0; step < 3; step++) send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    /* Recorded: flushed after the ops; captured: flushed inside the capture;
     * replayed: inside the graph. */
    assert_int_equal(device.flushes, 2);
    free_backend(b);
}

static void test_held_back_ops_run_as_sent(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent); /* captured */
    /* Three ops held back; then the input tensor object changes (or is
     * freed and its memory reused) before they run. */
    for (int i = 0; i < 3; i++) send_op(b, step_ops[i], sent, &n_sent);
    const int first = device.n_ran;
    tensors[0].data = tensor_memory[3];
    tensors[0].shape[1] = 5;
    send_op(b, NNOPT_OP_ADD, sent, &n_sent); /* differs: the three run now */
    assert_int_equal(cuda_graph_segment_end(b), NNOPT_OK);
    assert_int_equal(device.n_ran, n_sent);
    assert_memory_equal(device.ran, sent, (size_t)n_sent * sizeof *sent);
    for (int i = first; i < first + 3; i++) {
        assert_ptr_equal(device.ran_x[i], tensor_memory[0]);
        assert_int_equal(device.ran_x_dim1[i], 3);
    }
    /* The op sent after the change runs with it. */
    assert_ptr_equal(device.ran_x[first + 3], tensor_memory[3]);
    assert_int_equal(device.ran_x_dim1[first + 3], 5);
    free_backend(b);
}

static void test_held_back_op_failing_at_divergence_is_not_kept(void **state) {
    (void)state;
    cuda_backend *b = new_backend();
    int sent[LOG_MAX], n_sent = 0;
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent); /* captured */
    assert_int_equal(device.launches, 1);
    /* Three held back; the third fails when the divergence runs them. */
    for (int i = 0; i < 3; i++) send_op(b, step_ops[i], sent, &n_sent);
    device.fail_direct_label = step_ops[2];
    nnopt_op op = make_op(NNOPT_OP_ADD);
    nnopt_tensor *in[1] = {&tensors[0]}, *out[1] = {&tensors[1]};
    assert_int_equal(cuda_graph_run(b, &op, in, 1, out, 1), NNOPT_STATUS_INVALID_ARGUMENT);
    assert_int_equal(cuda_graph_segment_end(b), NNOPT_OK);
    device.fail_direct_label = -1;
    n_sent = device.n_ran;
    memcpy(sent, device.ran, (size_t)n_sent * sizeof *sent);
    /* The ops up to the failure did not replace the captured sequence. */
    send_segment(b, step_ops, STEP_OPS, sent, &n_sent);
    assert_int_equal(device.launches, 2);
    free_backend(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_repeated_segment_is_captured_once_then_replayed, setup),
        cmocka_unit_test_setup(test_divergence_runs_held_back_ops_first, setup),
        cmocka_unit_test_setup(test_shorter_and_longer_segments, setup),
        cmocka_unit_test_setup(test_changed_tensor_address_or_shape_is_another_sequence, setup),
        cmocka_unit_test_setup(test_failed_capture_runs_ops_directly_and_is_not_retried, setup),
        cmocka_unit_test_setup(test_segment_with_a_failed_op_is_not_kept, setup),
        cmocka_unit_test_setup(test_invalidate_recaptures, setup),
        cmocka_unit_test_setup(test_many_sequences_evict_the_least_recent, setup),
        cmocka_unit_test_setup(test_updates_are_sent_at_every_segment_end, setup),
        cmocka_unit_test_setup(test_held_back_ops_run_as_sent, setup),
        cmocka_unit_test_setup(test_held_back_op_failing_at_divergence_is_not_kept, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
