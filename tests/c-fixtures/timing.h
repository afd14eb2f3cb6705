/* Timing helpers shared by the fixtures that measure (fx_bench, fx_restart, fx_cb_prog,
 * pingpong): a monotonic clock in ns and a comparator for qsort over doubles (medians). */
#ifndef FX_TIMING_H
#define FX_TIMING_H
#include <time.h>

static inline double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static inline int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
#endif
