/* Training augmentation (random crop with zero padding, horizontal flip) and
 * per-channel statistics for normalisation.
 *
 * Augmentation works on the converted batch in place: a crop is a shift of
 * each channel plane with padding filled in, and a flip reverses rows, so no
 * per-sample scratch buffer is needed (the batch function cannot fail). The
 * padding value is what a 0 pixel converts to, so the result is identical to
 * padding the 8-bit image with zeros before normalising. */
#include "dataset.h"

#include <math.h>
#include <string.h>

#include "rng.h"

void nnopt_augment_next(const nnopt_augment *aug, nnopt_rng *rng, nnopt_augment_draw *draw) {
    memset(draw, 0, sizeof *draw);
    if (aug->crop_padding > 0) {
        uint64_t span = 2 * (uint64_t)aug->crop_padding + 1;
        draw->shift_y = (int32_t)nnopt_rng_below(rng, span) - aug->crop_padding;
        draw->shift_x = (int32_t)nnopt_rng_below(rng, span) - aug->crop_padding;
    }
    if (aug->flip) draw->flip = nnopt_rng_below(rng, 2) == 1;
}

/* Shifts one h x w plane in place so that out(y, x) = in(y + dy, x + dx), pad
 * outside, then mirrors it if asked. Each output reads an input at linear
 * offset dy*w + dx from itself, so walking forward when that offset is >= 0
 * (backward otherwise) only ever reads elements not yet overwritten. */
#define DEFINE_AUGMENT_PLANE(name, type)                                                           \
    static void name(type *plane, int32_t h, int32_t w, const nnopt_augment_draw *d, type pad) {   \
        int32_t dy = d->shift_y, dx = d->shift_x;                                                  \
        if (dy || dx) {                                                                            \
            int forward = (int64_t)dy * w + dx >= 0;                                               \
            for (int32_t step_y = 0; step_y < h; step_y++) {                                       \
                int32_t y = forward ? step_y : h - 1 - step_y;                                     \
                int32_t sy = y + dy;                                                               \
                type *out = plane + (int64_t)y * w;                                                \
                if (sy < 0 || sy >= h) {                                                           \
                    for (int32_t x = 0; x < w; x++) out[x] = pad;                                  \
                    continue;                                                                      \
                }                                                                                  \
                const type *in = plane + (int64_t)sy * w;                                          \
                for (int32_t step_x = 0; step_x < w; step_x++) {                                   \
                    int32_t x = forward ? step_x : w - 1 - step_x;                                 \
                    int32_t sx = x + dx;                                                           \
                    out[x] = sx >= 0 && sx < w ? in[sx] : pad;                                     \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (d->flip)                                                                               \
            for (int32_t y = 0; y < h; y++) {                                                      \
                type *row = plane + (int64_t)y * w;                                                \
                for (int32_t a = 0, b = w - 1; a < b; a++, b--) {                                  \
                    type t = row[a];                                                               \
                    row[a] = row[b];                                                               \
                    row[b] = t;                                                                    \
                }                                                                                  \
            }                                                                                      \
    }

DEFINE_AUGMENT_PLANE(augment_plane_f32, float)
DEFINE_AUGMENT_PLANE(augment_plane_f64, double)

void nnopt_dataset_batch_augmented(const nnopt_dataset *ds, const int64_t *order, int64_t count,
                                   const nnopt_normalize *norm, const nnopt_augment *aug,
                                   uint64_t seed, nnopt_dtype dtype, void *x, int32_t *y) {
    nnopt_dataset_batch(ds, order, count, norm, dtype, x, y);
    if (!aug || (aug->crop_padding <= 0 && !aug->flip)) return;

    /* The converted value of a 0 pixel, per channel, by the same expression
     * nnopt_dataset_batch uses (so padding matches it bit for bit). */
    static const nnopt_normalize plain = {1.0 / 255.0, {0, 0, 0, 0}, {1, 1, 1, 1}};
    if (!norm) norm = &plain;
    double pad[4];
    for (int ch = 0; ch < 4; ch++)
        pad[ch] = ((double)0 * norm->scale - norm->mean[ch]) / norm->std[ch];

    int64_t plane = (int64_t)ds->h * ds->w, sample = plane * ds->c;
    nnopt_rng rng;
    nnopt_rng_seed(&rng, seed);
    for (int64_t k = 0; k < count; k++) {
        nnopt_augment_draw draw;
        nnopt_augment_next(aug, &rng, &draw);
        if (!draw.shift_y && !draw.shift_x && !draw.flip) continue;
        for (int32_t ch = 0; ch < ds->c; ch++) {
            double channel_pad = pad[ch < 4 ? ch : 3];
            int64_t base = k * sample + ch * plane;
            if (dtype == NNOPT_F64)
                augment_plane_f64((double *)x + base, ds->h, ds->w, &draw, channel_pad);
            else
                augment_plane_f32((float *)x + base, ds->h, ds->w, &draw, (float)channel_pad);
        }
    }
}

void nnopt_dataset_channel_stats(const nnopt_dataset *ds, double scale, double mean[4],
                                 double std[4]) {
    /* Counting each pixel value first keeps the sums exact for any dataset size. */
    int64_t plane = (int64_t)ds->h * ds->w;
    for (int32_t ch = 0; ch < ds->c && ch < 4; ch++) {
        uint64_t histogram[256] = {0};
        for (int64_t i = 0; i < ds->n; i++) {
            const uint8_t *p = ds->pixels + (i * ds->c + ch) * plane;
            for (int64_t j = 0; j < plane; j++) histogram[p[j]]++;
        }
        double count = (double)ds->n * (double)plane, sum = 0, sum_sq = 0;
        for (int v = 0; v < 256; v++) {
            sum += (double)histogram[v] * v;
            sum_sq += (double)histogram[v] * v * v;
        }
        double m = count > 0 ? sum / count : 0;
        double var = count > 0 ? sum_sq / count - m * m : 0;
        mean[ch] = m * scale;
        std[ch] = sqrt(var > 0 ? var : 0) * scale;
    }
}
