/* Softmax helpers on the host, for evaluation and teachers' predictions. */
#ifndef NNOPT_CORE_SOFTMAX_H
#define NNOPT_CORE_SOFTMAX_H

#include <math.h>
#include <stdint.h>

/* log(sum_k exp(x_k)), stable. */
static inline double nnopt_logsumexp(const double *x, int64_t k) {
    double max = -INFINITY, sum = 0;
    for (int64_t i = 0; i < k; i++)
        if (x[i] > max) max = x[i];
    for (int64_t i = 0; i < k; i++) sum += exp(x[i] - max);
    return max + log(sum);
}

/* probs = softmax(logits / temperature). */
static inline void nnopt_softmax(const double *logits, int64_t k, double temperature,
                                 double *probs) {
    double max = -INFINITY, sum = 0;
    for (int64_t i = 0; i < k; i++)
        if (logits[i] / temperature > max) max = logits[i] / temperature;
    for (int64_t i = 0; i < k; i++) sum += (probs[i] = exp(logits[i] / temperature - max));
    for (int64_t i = 0; i < k; i++) probs[i] /= sum;
}

static inline int64_t nnopt_argmax(const double *x, int64_t k) {
    int64_t best = 0;
    for (int64_t i = 1; i < k; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

#endif
