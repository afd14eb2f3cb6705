/* libfx.so: the spec-kind fixture. Every function pins one ABI or spec case: registers,
 * stack arguments, xmm arguments and returns, structs in rax:rdx, variadics (al), strings,
 * in/out/inout buffers with every SIZE form, handles, errno, and known bugs (crash, abort,
 * exit, hang, leak, overflow) for isolation to contain. */
#define _GNU_SOURCE
#include "fx.h"
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fx_add(int a, int b) { return a + b; }

/* Calls fx_add through libfx's own PLT (fx_add is interposable): a call between two modules
 * that share one object, for the profiler's object + symbol attribution. */
int fx_add3(int a, int b, int c) { return fx_add(fx_add(a, b), c); }

long fx_sum8(long a, long b, long c, long d, long e, long f, long g, long h) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}

double fx_mix(int a, double x, float y, long b) { return a + x * 2 + y * 3 + b * 4; }

double fx_sum10d(double a0, double a1, double a2, double a3, double a4, double a5, double a6,
                 double a7, double a8, double a9) {
    return a0 + 2 * a1 + 3 * a2 + 4 * a3 + 5 * a4 + 6 * a5 + 7 * a6 + 8 * a7 + 9 * a8 + 10 * a9;
}

struct fx_pair fx_pair_swap(struct fx_pair p) {
    struct fx_pair r = {p.b, p.a};
    return r;
}

struct fx_dpair fx_dpair_scale(struct fx_dpair p, double k) {
    struct fx_dpair r = {p.x * k, p.y * k};
    return r;
}

long fx_vsum(int n, ...) {
    va_list ap;
    long s = 0;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        s += va_arg(ap, long);
    va_end(ap);
    return s;
}

double fx_vavg(int n, ...) {
    va_list ap;
    double s = 0;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        s += va_arg(ap, double);
    va_end(ap);
    return n ? s / n : 0;
}

long fx_strlen(const char *s) { return s ? (long)strlen(s) : -1; }

const char *fx_greet(const char *name) {
    static __thread char buf[256];
    snprintf(buf, sizeof buf, "hello, %s", name ? name : "nobody");
    return buf;
}

long fx_fill(char *out, long n) {
    if (!out)
        return -1;
    for (long i = 0; i < n; i++)
        out[i] = (char)('a' + i % 26);
    return n;
}

unsigned fx_checksum(const void *buf, long n) {
    const unsigned char *p = buf;
    unsigned h = 2166136261u;
    if (!p)
        return 0;
#ifdef FX_V2
    /* The "second version" (target/fixtures/v2/libfx.so) for N-version replication: a
     * regression that drops the last byte of buffers longer than 16 bytes. */
    if (n > 16)
        n--;
#endif
    for (long i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

void fx_upcase(char *buf, long n) {
    for (long i = 0; i < n; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

int fx_get_blob(void *buf, const long *len) {
    unsigned char *p = buf;
    for (long i = 0; i < *len; i++)
        p[i] = (unsigned char)((i * 7 + 3) & 0xff);
    return (int)*len;
}

void fx_iota_u32(unsigned *out, long count) {
    for (long i = 0; i < count; i++)
        out[i] = (unsigned)(i * 3);
}

int fx_fill_fixed(char *out16) {
    memset(out16, 'X', 8);
    return 8;
}

int fx_is_null(const void *p) { return p == NULL; }

struct fx_counter {
    long value;
    long calls;
};

struct fx_counter *fx_counter_new(long start) {
    struct fx_counter *c = malloc(sizeof *c);
    c->value = start;
    c->calls = 0;
    return c;
}

long fx_counter_add(struct fx_counter *c, long d) {
    c->calls++;
    return c->value += d;
}

long fx_counter_get(const struct fx_counter *c) { return c->value; }

void fx_counter_free(struct fx_counter *c) { free(c); }

long fx_pid(void) { return (long)getpid(); }

/* Whether FX_AT_LOAD was in the environment when the library was loaded: a forked helper
 * inherits the program's answer, an exec-mode helper has its `vars` from the start. */
static long env_at_load;
__attribute__((constructor)) static void fx_note_env(void) { env_at_load = getenv("FX_AT_LOAD") != NULL; }
long fx_env_at_load(void) { return env_at_load; }

int fx_set_errno(int e) {
    errno = e;
    return -1;
}

/* Registers-only calls for the flat path's other outcomes: an answer that takes longer than
 * any spin, and a crash on one chosen input (a null write). */
long fx_sleep_us(long us) {
    usleep((useconds_t)us);
    return us;
}

long fx_segv_at(long i, long at) {
    if (i == at) {
        volatile long *p = NULL;
        *p = i;
    }
    return 2 * i;
}

/* Recursion without end (the flag is never cleared; it only keeps the compiler from proving
 * the recursion infinite): overflows the calling thread's stack. */
static volatile int fx_deeper = 1;
static long fx_recurse(long n) {
    volatile char frame[256];
    frame[0] = (char)n;
    if (!fx_deeper)
        return n;
    return fx_recurse(n + 1) + frame[0];
}

long fx_crash_on(const char *s) {
    if (!strcmp(s, "stack")) {
        return fx_recurse(0);
    } else if (!strcmp(s, "segv")) {
        volatile int *p = NULL;
        *p = 1;
    } else if (!strcmp(s, "abort")) {
        abort();
    } else if (!strcmp(s, "exit")) {
        _exit(3);
    } else if (!strcmp(s, "hang")) {
        for (;;)
            pause();
    } else if (!strcmp(s, "fpe")) {
        raise(SIGFPE);
    }
    return (long)strlen(s);
}

long fx_crash_if_env(const char *s) {
    if (!strcmp(s, "envbug") && !getenv("FX_SAFE")) {
        volatile int *p = NULL;
        *p = 2;
    }
    if (!strcmp(s, "envhang") && !getenv("FX_SAFE"))
        for (;;)
            pause();
    return (long)strlen(s);
}

void *fx_leak(long n) {
    /* never freed; not a tail call, so tools attribute the block to fx_leak */
    char *p = malloc((size_t)n);
    if (p)
        p[0] = 1;
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

int fx_overflow(long n) {
    char *p = malloc((size_t)n);
    __asm__ volatile("" : "+r"(p) : : "memory");
    memset(p, 'o', (size_t)n + 8); /* 8 bytes past the block */
    __asm__ volatile("" : "+r"(p) : : "memory");
    free(p);
    return 0;
}

long fx_smash(long n) {
    /* A heap overflow of 64 bytes into the next chunk's header: free() aborts, unless the
     * allocator pads each block (an Rx environment with malloc.pad >= 64). */
    char *a = malloc((size_t)n);
    char *b = malloc((size_t)n);
    /* barriers: the compiler would otherwise drop the unused block and the dead stores */
    __asm__ volatile("" : "+r"(a), "+r"(b) : : "memory");
    memset(a, 0, (size_t)n + 64);
    __asm__ volatile("" : "+r"(a), "+r"(b) : : "memory");
    free(b);
    free(a);
    return n;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
long fx_use_after_free(long n) {
    /* Reads a block after freeing it and allocating again: the answer depends on whether
     * the allocator reused the block at once (an Rx environment with delay_free does not). */
    char *a = malloc((size_t)n);
    volatile char *stale = a; /* the bug: a pointer kept past free */
    memset(a, 'o', (size_t)n);
    __asm__ volatile("" : "+r"(a) : : "memory");
    free(a);
    char *b = malloc((size_t)n);
    __asm__ volatile("" : "+r"(b) : : "memory");
    memset(b, 'X', (size_t)n);
    __asm__ volatile("" : "+r"(b) : : "memory");
    long r = stale[n / 2] == 'o' ? 1 : 0;
    free(b);
    return r;
}
#pragma GCC diagnostic pop

long fx_uninit(long n) {
    /* Reads a fresh block before writing it: the value depends on the allocator (what the
     * block held before, or an Rx environment's perturb/zero_fill). */
    char *a = malloc((size_t)n);
    __asm__ volatile("" : "+r"(a) : : "memory");
    memset(a, 7, (size_t)n);
    __asm__ volatile("" : "+r"(a) : : "memory");
    free(a);
    unsigned char *b = malloc((size_t)n);
    __asm__ volatile("" : "+r"(b) : : "memory");
    long r = b[n / 2];
    free(b);
    return r;
}

/* snprintf-style: fills at most *len bytes of buf and reports through *len the length it
 * would need (16 MiB), as honest C APIs do. */
long fx_need(char *buf, long *len) {
    long n = *len < 8 ? *len : 8;
    memcpy(buf, "needmore", (size_t)n);
    *len = 16L << 20;
    return n;
}
