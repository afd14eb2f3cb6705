/* fx_flat_prog: calls of registers only, many of them (so that a caller's wait spins and the
 * flat path takes them), then each outcome other than a plain return: an errno, answers
 * slower than any spin, nested calls back into the program, and a helper that crashes on
 * one input. Prints one line per part; run plain, it prints the same but for the crash line
 * (plain, the crash ends the program: argument "nocrash" leaves that part out). */
#include "fx.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
long nest_outer(long x);
long host_count(void);

int main(int argc, char **argv) {
    int crash = !(argc > 1 && !strcmp(argv[1], "nocrash"));
    long sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += fx_add(i, 1);
    printf("add: %ld\n", sum);
    errno = 0;
    int r = fx_set_errno(ERANGE);
    printf("errno: %d %s\n", r, errno == ERANGE ? "ERANGE" : "other");
    /* Interleaved with short calls, so the wait keeps spinning before each slow one. */
    long slow = 0;
    for (int i = 0; i < 20; i++) {
        for (int k = 0; k < 200; k++)
            slow += fx_add(k, 0);
        slow += fx_sleep_us(300 + i);
    }
    printf("slow: %ld\n", slow);
    long nested = 0;
    for (int i = 0; i < 2000; i++)
        nested += nest_outer(i) + fx_add(i, 0);
    printf("nested: %ld %ld\n", nested, host_count());
    sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += fx_add(i, 2);
    printf("again: %ld\n", sum);
    if (crash) {
        long got = 0, failed = 0;
        for (long i = 0; i < 20000; i++) {
            long v = fx_segv_at(i, 15000);
            if (v < 0)
                failed++;
            else
                got += v;
        }
        printf("crash: %ld %ld after: %d\n", got, failed, fx_add(40, 2));
    }
    return 0;
}
