/* Finite-difference gradient checks of every differentiable backend op, for
 * any backend: test_gradcheck runs them for the backend named on its command
 * line, and another backend's test may link gradcheck_support.c and call
 * gradcheck_all itself. */
#ifndef NNOPT_GRADCHECK_SUPPORT_H
#define NNOPT_GRADCHECK_SUPPORT_H

/* Runs the CMocka group of float64 gradient checks on backend `backend_name`
 * (conv2d data/filter/bias over stride, padding, groups and depthwise; dense;
 * max and avg pooling; every activation; softmax cross-entropy with labels
 * and soft targets at several temperatures; training-mode batchnorm dx,
 * dgamma and dbeta on 4-D and 2-D inputs; dropout). Each compares the backend's
 * analytic gradient of L = sum(y * r), r random, with central differences.
 * Returns the number of failed tests (0: all passed). */
int gradcheck_all(const char *backend_name);

#endif
