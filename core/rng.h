/* Seeded, platform-independent random numbers (splitmix64 + xoshiro256**):
 * the same seed gives the same stream on every machine and backend. */
#ifndef NNOPT_CORE_RNG_H
#define NNOPT_CORE_RNG_H

#include <stdint.h>

typedef struct nnopt_rng {
    uint64_t s[4];
} nnopt_rng;

void nnopt_rng_seed(nnopt_rng *r, uint64_t seed);
uint64_t nnopt_rng_next(nnopt_rng *r);
double nnopt_rng_uniform(nnopt_rng *r);             /* [0, 1) */
double nnopt_rng_normal(nnopt_rng *r);              /* N(0, 1) */
uint64_t nnopt_rng_below(nnopt_rng *r, uint64_t n); /* [0, n), unbiased */

#endif
