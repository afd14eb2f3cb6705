/* libfx_cb: a library that calls back into its caller, for every case of SPEC.md "Callbacks":
 * callbacks during the call (map, each), a hook stored by one call and fired by later ones,
 * callbacks that call the library again, bare `cb` with stack and float arguments, a thread
 * of the library's own calling the hook late, and a forger that calls pointers it was not
 * given (stub neighbours of the one it got). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef long (*map_fn)(long, void *);
typedef int (*visit_fn)(void *, int, const char *, const char **, int);
typedef void (*hook_fn)(const char *, long);

long fxcb_map(long *arr, long n, map_fn f, void *ud) {
    long sum = 0;
    for (long i = 0; i < n; i++) {
        arr[i] = f(arr[i], ud);
        sum += arr[i];
    }
    return sum;
}

int fxcb_each(const char **names, int n, visit_fn visit, void *ud) {
    int total = 0;
    for (int i = 0; i < n; i++)
        total += visit(ud, i, names[i], names, n);
    return total;
}

static hook_fn hook;
static long fired;

void fxcb_set_hook(hook_fn h) { hook = h; }

long fxcb_fire(long v) {
    char msg[64];
    fired++;
#ifdef FX_V2
    /* The "second version" (target/fixtures/v2/libfx_cb.so): the hook hears another message,
     * the answer stays the same; only the callbacks tell the versions apart. */
    snprintf(msg, sizeof msg, "fired no. %ld", fired);
#else
    snprintf(msg, sizeof msg, "fired #%ld", fired);
#endif
    if (hook)
        hook(msg, v);
    return v * 2;
}

long fxcb_add1(long x) { return x + 1; }

long fxcb_twice(long x, long (*f)(long)) { return f(f(x)); }

long fxcb_sum8(long (*f)(long, long, long, long, long, long, long, long)) {
    return f(1, 2, 3, 4, 5, 6, 7, 8);
}

double fxcb_scale(double (*f)(double, double), double a) { return f(a, 2.5); }

static void *late(void *arg) {
    usleep((useconds_t)(intptr_t)arg * 1000);
    if (hook)
        hook("late", -1);
    return NULL;
}

void fxcb_late(int ms) {
    pthread_t t;
    pthread_create(&t, NULL, late, (void *)(intptr_t)ms);
    pthread_detach(t);
}

/* Calls the pointer `steps` stubs away from the hook it was given. */
long fxcb_forge(long steps) {
    if (!hook)
        return -2;
    hook_fn h = (hook_fn)((char *)hook + steps * 16);
    h("forged", 7);
    return 0;
}
