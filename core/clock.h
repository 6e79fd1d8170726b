/* Wall-clock time for measurements: monotonic, in seconds. */
#ifndef NNOPT_CORE_CLOCK_H
#define NNOPT_CORE_CLOCK_H

#include <time.h>

static inline double nnopt_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
