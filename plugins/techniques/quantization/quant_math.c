#include "quant_math.h"

#include <math.h>

void quant_fold_batchnorm(float *w, float *bias, int64_t channels, int64_t per_channel,
                          const float *gamma, const float *beta, const float *mean,
                          const float *var, double eps) {
    for (int64_t k = 0; k < channels; k++) {
        const double a = gamma[k] / sqrt((double)var[k] + eps);
        for (int64_t i = 0; i < per_channel; i++)
            w[k * per_channel + i] = (float)(w[k * per_channel + i] * a);
        bias[k] = (float)(beta[k] + (bias[k] - mean[k]) * a);
    }
}

void quant_weights_int8(const float *w, int64_t channels, int64_t per_channel, int8_t *q,
                        float *scale) {
    for (int64_t k = 0; k < channels; k++) {
        const float *row = w + k * per_channel;
        float largest = 0;
        for (int64_t i = 0; i < per_channel; i++) largest = fmaxf(largest, fabsf(row[i]));
        scale[k] = largest > 0 ? largest / 127.0f : 1.0f;
        for (int64_t i = 0; i < per_channel; i++) {
            const float v = nearbyintf(row[i] / scale[k]);
            q[k * per_channel + i] = (int8_t)fminf(127.0f, fmaxf(-127.0f, v));
        }
    }
}

void quant_activation_params(double lo, double hi, float *scale, int32_t *zero_point) {
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    if (!(hi > lo)) {
        *scale = 1.0f;
        *zero_point = 0;
        return;
    }
    *scale = (float)((hi - lo) / 255.0);
    long zp = lround(-lo / *scale);
    *zero_point = (int32_t)(zp < 0 ? 0 : zp > 255 ? 255 : zp);
}
