/* Test support: deterministic random numbers (xorshift64*), one stream
 * shared by a test program, so a failing case is reproduced by rerunning. */
#ifndef NNOPT_TEST_RNG_H
#define NNOPT_TEST_RNG_H

#include <stdint.h>

uint64_t rng_next(void);
int rng_int(int lo, int hi);              /* uniform in [lo, hi] */
double rng_uniform(double lo, double hi); /* uniform in [lo, hi) */

#endif
