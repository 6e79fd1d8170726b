/* Shuffling and batch preparation for in-memory datasets. */
#include "dataset.h"

#include "nnopt/bf16.h"
#include "rng.h"

void nnopt_dataset_shuffle(int64_t *order, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    /* Fisher-Yates from the top; nnopt_rng_below is unbiased, so every
     * permutation is equally likely and the result is the same everywhere. */
    nnopt_rng rng;
    nnopt_rng_seed(&rng, seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)nnopt_rng_below(&rng, (uint64_t)i + 1);
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

#define MAX_NORM_CHANNELS 4 /* entries in nnopt_normalize.mean/std */

void nnopt_dataset_batch(const nnopt_dataset *ds, const int64_t *order, int64_t count,
                         const nnopt_normalize *norm, nnopt_dtype dtype, void *x, int32_t *y) {
    /* A pixel has only 256 values, so each channel's normalisation is a table
     * computed once in double with exactly the documented formula; the inner
     * loop is then a lookup, and f32 and f64 batches agree to rounding. */
    static const nnopt_normalize plain = {1.0 / 255.0, {0, 0, 0, 0}, {1, 1, 1, 1}};
    if (!norm) norm = &plain;
    double table[MAX_NORM_CHANNELS][256];
    int32_t table_channels = ds->c < MAX_NORM_CHANNELS ? ds->c : MAX_NORM_CHANNELS;
    for (int32_t ch = 0; ch < table_channels; ch++)
        for (int p = 0; p < 256; p++)
            table[ch][p] = ((double)p * norm->scale - norm->mean[ch]) / norm->std[ch];

    int64_t plane = (int64_t)ds->h * ds->w;
    int64_t sample = plane * ds->c;
    for (int64_t k = 0; k < count; k++) {
        const uint8_t *src = ds->pixels + order[k] * sample;
        for (int32_t ch = 0; ch < ds->c; ch++) {
            /* Channels past the fourth (none in practice) reuse the last entry. */
            const double *lut = table[ch < MAX_NORM_CHANNELS ? ch : MAX_NORM_CHANNELS - 1];
            const uint8_t *in = src + ch * plane;
            int64_t base = k * sample + ch * plane;
            if (dtype == NNOPT_F64) {
                double *dst = (double *)x + base;
                for (int64_t i = 0; i < plane; i++) dst[i] = lut[in[i]];
            } else if (dtype == NNOPT_BF16) {
                uint16_t *dst = (uint16_t *)x + base;
                for (int64_t i = 0; i < plane; i++) dst[i] = nnopt_bf16_from_f64(lut[in[i]]);
            } else {
                float *dst = (float *)x + base;
                for (int64_t i = 0; i < plane; i++) dst[i] = (float)lut[in[i]];
            }
        }
        if (y) y[k] = ds->labels[order[k]];
    }
}
