/* fx_bench MODE N: timings for make bench, one JSON line.
 *   scalar      N calls of fx_add, timed in batches of 100 (per-call ns samples)
 *   in4k, in1m  fx_checksum on a 4 KiB / 1 MiB buffer, each call timed
 *   memcpy4k, memcpy1m  memcpy of the same sizes, timed the same way
 *   callheavy   N calls of fx_add in a tight loop, one total time */
#include "fx.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "timing.h"

static void report(const char *mode, long n, double *s, long k, double total) {
    qsort(s, (size_t)k, sizeof *s, cmp);
    printf("{\"mode\":\"%s\",\"n\":%ld,\"median_ns\":%.1f,\"p99_ns\":%.1f,\"total_ns\":%.0f}\n", mode, n,
           k ? s[k / 2] : 0, k ? s[(k * 99) / 100] : 0, total);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    long n = atol(argv[2]);
    double *s = calloc((size_t)n + 1, sizeof *s);
    long k = 0;
    volatile int sink = 0;
    double t0 = now_ns();
    if (!strcmp(mode, "scalar")) {
        for (long i = 0; i + 100 <= n; i += 100) {
            double a = now_ns();
            for (int j = 0; j < 100; j++)
                sink += fx_add((int)i, j);
            s[k++] = (now_ns() - a) / 100;
        }
    } else if (!strncmp(mode, "in", 2) || !strncmp(mode, "memcpy", 6)) {
        size_t size = strstr(mode, "1m") ? 1 << 20 : 4096;
        char *src = malloc(size), *dst = malloc(size);
        memset(src, 7, size);
        int copy = !strncmp(mode, "memcpy", 6);
        for (long i = 0; i < n; i++) {
            double a = now_ns();
            if (copy) {
                memcpy(dst, src, size);
                __asm__ volatile("" : : "r"(dst) : "memory");
            } else {
                sink += (int)fx_checksum(src, (long)size);
            }
            s[k++] = now_ns() - a;
        }
    } else if (!strcmp(mode, "callheavy")) {
        for (long i = 0; i < n; i++)
            sink += fx_add((int)i, 1);
    } else {
        return 2;
    }
    report(mode, n, s, k, now_ns() - t0);
    return 0;
}
