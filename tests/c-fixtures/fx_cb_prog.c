/* fx_cb_prog MODE: calls libfx_cb with its own callbacks and prints what they saw.
 *   all    every case: map, each (strv both ways), hook set then fired, nesting, bare cb
 *   late   a hook fired by a thread of the library after the call returned, then more calls
 *   forge  the library calls pointers it was never given
 *   many   34 distinct hooks (the bound is 32 per callback type)
 *   bench N  median ns of a call that fires a hook (module -> program -> module) and of a plain
 *          scalar call, as JSON */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long fxcb_map(long *arr, long n, long (*f)(long, void *), void *ud);
int fxcb_each(const char **names, int n, int (*visit)(void *, int, const char *, const char **, int), void *ud);
void fxcb_set_hook(void (*h)(const char *, long));
long fxcb_fire(long v);
long fxcb_add1(long x);
long fxcb_twice(long x, long (*f)(long));
long fxcb_sum8(long (*f)(long, long, long, long, long, long, long, long));
double fxcb_scale(double (*f)(double, double), double a);
void fxcb_late(int ms);
long fxcb_forge(long steps);

static void nop_hook(const char *msg, long v) {
    (void)msg;
    (void)v;
}

#include "timing.h"

/* 34 distinct hooks, for the bound on distinct functions per callback type (32). */
#define HOOK(n) static void h##n(const char *m, long v) { (void)m; printf("h%d fired %ld\n", n, v); }
HOOK(0) HOOK(1) HOOK(2) HOOK(3) HOOK(4) HOOK(5) HOOK(6) HOOK(7) HOOK(8) HOOK(9) HOOK(10) HOOK(11)
HOOK(12) HOOK(13) HOOK(14) HOOK(15) HOOK(16) HOOK(17) HOOK(18) HOOK(19) HOOK(20) HOOK(21)
HOOK(22) HOOK(23) HOOK(24) HOOK(25) HOOK(26) HOOK(27) HOOK(28) HOOK(29) HOOK(30) HOOK(31)
HOOK(32) HOOK(33)
static void (*const hooks[34])(const char *, long) = {h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11,
    h12, h13, h14, h15, h16, h17, h18, h19, h20, h21, h22, h23, h24, h25, h26, h27, h28, h29, h30, h31,
    h32, h33};

static long calls; /* program state the callbacks change: must be the program's */

static long square_plus(long x, void *ud) {
    calls++;
    return x * x + *(long *)ud;
}

static int visit(void *ud, int i, const char *name, const char **all, int n) {
    calls++;
    printf("visit %s #%d: %s (of %d, first %s, last %s)\n", (const char *)ud, i, name ? name : "(null)", n,
           all[0] ? all[0] : "(null)", all[n - 1] ? all[n - 1] : "(null)");
    return (int)(name ? strlen(name) : 0);
}

static void hook(const char *msg, long v) {
    calls++;
    printf("hook: %s v=%ld (program calls so far %ld)\n", msg, v, calls);
    fflush(stdout);
}

static void other(const char *msg, long v) {
    printf("OTHER CALLED: %s %ld\n", msg, v);
}

static long add1_via_module(long x) {
    calls++;
    return fxcb_add1(x) * 10; /* the callback calls the module again */
}

static long sum8(long a, long b, long c, long d, long e, long f, long g, long h) {
    calls++;
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}

static double mul(double a, double b) {
    calls++;
    return a * b;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "all")) {
        long arr[5] = {1, 2, 3, 4, 5}, add = 100;
        long sum = fxcb_map(arr, 5, square_plus, &add);
        printf("map: sum %ld, arr %ld %ld %ld %ld %ld\n", sum, arr[0], arr[1], arr[2], arr[3], arr[4]);
        const char *names[] = {"alpha", NULL, "gamma", "delta"};
        printf("each: %d\n", fxcb_each(names, 4, visit, "list"));
        fxcb_set_hook(hook);
        for (long i = 1; i <= 3; i++)
            printf("fire %ld -> %ld\n", i, fxcb_fire(i));
        fxcb_set_hook(hook); /* the same function again: the same slot */
        printf("fire 4 -> %ld\n", fxcb_fire(4));
        printf("twice: %ld\n", fxcb_twice(3, add1_via_module));
        printf("sum8: %ld\n", fxcb_sum8(sum8));
        printf("scale: %.3f\n", fxcb_scale(mul, 4.0));
        fxcb_set_hook(NULL);
        printf("fire without hook -> %ld\n", fxcb_fire(9));
        printf("program callbacks ran: %ld\n", calls);
        return 0;
    }
    if (!strcmp(mode, "late")) {
        fxcb_set_hook(hook);
        printf("fire 1 -> %ld\n", fxcb_fire(1));
        fxcb_late(50);
        usleep(300 * 1000);
        printf("fire 2 -> %ld\n", fxcb_fire(2));
        printf("program callbacks ran: %ld\n", calls);
        return 0;
    }
    if (!strcmp(mode, "forge")) {
        fxcb_set_hook(other);
        fxcb_set_hook(hook);
        long steps[] = {1, 2, 31, 32, 64, -1};
        for (unsigned i = 0; i < sizeof steps / sizeof *steps; i++)
            printf("forge %ld -> %ld\n", steps[i], fxcb_forge(steps[i]));
        printf("program callbacks ran: %ld\n", calls);
        return 0;
    }
    if (!strcmp(mode, "many")) {
        /* Every hook set and fired in turn; then the first ones again (their slots stay). */
        for (int i = 0; i < 34; i++) {
            fxcb_set_hook(hooks[i]);
            printf("fire %d -> %ld\n", i, fxcb_fire(i));
        }
        fxcb_set_hook(hooks[0]);
        printf("fire again -> %ld\n", fxcb_fire(100));
        return 0;
    }
    if (!strcmp(mode, "bench")) {
        long n = argc > 2 ? atol(argv[2]) : 10000;
        double *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
        fxcb_set_hook(nop_hook);
        for (long i = 0; i < n; i++) {
            double t = now_ns();
            fxcb_fire(i);
            a[i] = now_ns() - t;
            t = now_ns();
            fxcb_add1(i);
            b[i] = now_ns() - t;
        }
        qsort(a, (size_t)n, sizeof *a, cmp);
        qsort(b, (size_t)n, sizeof *b, cmp);
        printf("{\"n\":%ld,\"callback_call_ns\":%.1f,\"scalar_call_ns\":%.1f}\n", n, a[n / 2], b[n / 2]);
        return 0;
    }
    return 2;
}
