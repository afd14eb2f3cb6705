/* fx_restart LOG CYCLES [GAP_MS]: restart latency for make bench. Logs LOG state calls (counter
 * adds), then CYCLES times crashes the helper in a call (fx_crash_on("segv"), answered by
 * give_up after the restart) and times that call plus one call on the new helper; checks
 * the counter survived; GAP_MS pass between crashes (default 0). JSON line. */
#include "fx.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timing.h"

int main(int argc, char **argv) {
    long log = argc > 1 ? atol(argv[1]) : 0, cycles = argc > 2 ? atol(argv[2]) : 20;
    long gap_ms = argc > 3 ? atol(argv[3]) : 0;
    struct fx_counter *c = fx_counter_new(0);
    for (long i = 0; i < log; i++)
        fx_counter_add(c, 1);
    double *s = calloc((size_t)cycles, sizeof *s);
    long lost = 0;
    for (long i = 0; i < cycles; i++) {
        double t = now_ns();
        fx_crash_on("segv");
        double u = now_ns();
        (void)fx_add(1, 2); /* the first call answered by the new helper */
        s[i] = now_ns() - t;
        (void)u;
        if (fx_counter_get(c) != log)
            lost++;
        if (gap_ms) {
            /* crashes are rare events: let the CPUs go idle between them (not timed) */
            struct timespec pause = {0, gap_ms * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    qsort(s, (size_t)cycles, sizeof *s, cmp);
    printf("{\"log\":%ld,\"n\":%ld,\"median_ns\":%.0f,\"p99_ns\":%.0f,\"state_lost\":%ld}\n", log, cycles, s[cycles / 2],
           s[(cycles * 99) / 100], lost);
    return 0;
}
