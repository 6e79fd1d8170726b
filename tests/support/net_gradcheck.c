#include "net_gradcheck.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backend.h"
#include "network.h"

double net_loss_at(nnopt_exec *ex, const double *x, const int32_t *y) {
    nnopt_error err = {0};
    double loss = 0;
    if (nnopt_exec_forward(ex, x, &err) != NNOPT_OK ||
        nnopt_exec_backward(ex, y, NULL, &loss, &err) != NNOPT_OK)
        fail_msg("%s", err.message);
    return loss;
}

static void read_all(nnopt_backend *b, const nnopt_tensor *t, double *dst) {
    nnopt_error err = {0};
    if (nnopt_backend_read(b, t, dst, nnopt_tensor_nbytes(t), &err) != NNOPT_OK)
        fail_msg("%s", err.message);
}

static void write_all(nnopt_backend *b, nnopt_tensor *t, const double *src) {
    nnopt_error err = {0};
    if (nnopt_backend_write(b, t, src, nnopt_tensor_nbytes(t), &err) != NNOPT_OK)
        fail_msg("%s", err.message);
}

/* (loss(p + h e_i) - loss(p - h e_i)) / 2h for parameter tensor n, whose
 * values are p (restored afterwards). */
static double central_difference(nnopt_exec *ex, const double *x, const int32_t *y, int n,
                                 double *p, int64_t i, double h) {
    nnopt_network *net = ex->net;
    const double saved = p[i];
    p[i] = saved + h;
    write_all(net->backend, net->param[n], p);
    const double up = net_loss_at(ex, x, y);
    p[i] = saved - h;
    write_all(net->backend, net->param[n], p);
    const double down = net_loss_at(ex, x, y);
    p[i] = saved;
    write_all(net->backend, net->param[n], p);
    return (up - down) / (2 * h);
}

int net_gradcheck(nnopt_exec *ex, const double *x, const int32_t *y, int64_t max_per_tensor,
                  const char *label) {
    nnopt_network *net = ex->net;
    nnopt_backend *b = net->backend;
    const nnopt_graph *g = net->graph;
    int checked = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        if (!net->param[n] || !net->grad[n]) continue; /* buffers: running statistics */
        assert_int_equal(net->param[n]->dtype, NNOPT_F64);
        net_loss_at(ex, x, y); /* gradients at the unperturbed point */
        const int64_t count = nnopt_tensor_numel(net->param[n]);
        const int64_t picks = count < max_per_tensor ? count : max_per_tensor;
        double *p = malloc((size_t)count * sizeof *p),
               *analytic = malloc((size_t)count * sizeof *p);
        assert_non_null(p);
        assert_non_null(analytic);
        read_all(b, net->grad[n], analytic);
        read_all(b, net->param[n], p);
        for (int64_t k = 0; k < picks; k++) {
            const int64_t i = picks == count ? k : k * count / picks;
            /* A ReLU kink within h of the point bends the central difference;
             * a smaller step sees past it, while a wrong gradient stays wrong
             * at every step. */
            double numeric = 0;
            int agrees = 0;
            const double steps[] = {1e-6, 1e-7, 1e-8};
            for (int s = 0; !agrees && s < 3; s++) {
                const double h = steps[s];
                numeric = central_difference(ex, x, y, n, p, i, h);
                /* Rounding leaves the loss noisy at ~1e-14 (batchnorm's
                 * 1/sigma amplifies it on near-constant channels: measured on
                 * MobileNet), so the difference is only good to ~1e-8 at
                 * h = 1e-6, and 10x less per 10x smaller step. */
                agrees = fabs(numeric - analytic[i]) <=
                         1e-5 * (fabs(numeric) + fabs(analytic[i])) + 5e-8 * (1e-6 / h);
            }
            if (!agrees)
                fail_msg("%s: d loss / d %s[%lld]: analytic %.10g, numeric %.10g", label,
                         g->nodes[n].name, (long long)i, analytic[i], numeric);
            checked++;
        }
        free(p);
        free(analytic);
    }
    return checked;
}
