/* Test support: a training executor's parameter gradients against central
 * finite differences of its loss (f64 networks). */
#ifndef NNOPT_NET_GRADCHECK_H
#define NNOPT_NET_GRADCHECK_H

#include <stdint.h>

#include "executor.h"

/* The loss of one forward and backward pass on (x, y); leaves the analytic
 * gradients in the network's gradient tensors. */
double net_loss_at(nnopt_exec *ex, const double *x, const int32_t *y);

/* Compares d loss / d p with (loss(p + h) - loss(p - h)) / 2h for every
 * parameter tensor: all its entries, or `max_per_tensor` spread evenly over
 * it, with h = 1e-6, then 1e-7 and 1e-8 where a ReLU kink bends the
 * difference. Fails (cmocka) on the first entry off by more than 1e-5
 * relative at every step; returns how many entries were checked. `label`
 * names the case. */
int net_gradcheck(nnopt_exec *ex, const double *x, const int32_t *y, int64_t max_per_tensor,
                  const char *label);

#endif
