/* Drives libfx_od; its output is the same with the library on demand in a helper. Modes:
 * all (default): lists on the stack, heap, a big mmap'd block and a global, to depth 3; a
 * stream with state kept between calls; a function pointer of the program's. crash: a
 * crashing call writes nothing back. peek: module memory read after every call.
 * held: a page held over from one call, changed before the next. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include "timing.h"

struct od_node { struct od_node *next; long val; const char *name; };
struct od_stream {
    const unsigned char *next_in; size_t avail_in;
    unsigned char *next_out; size_t avail_out;
    size_t total; void *state;
};
long od_walk(struct od_node *n);
int od_init(struct od_stream *s);
int od_step(struct od_stream *s);
long od_end(struct od_stream *s);
long od_write_then_crash(long *p);
long od_apply(long (*fn)(long), long x);
const char *od_name(int i);
struct od_req { const char *path; char *buf; long n; };
long od_read_into(const struct od_req *r);
int od_touch_later(long *p);
struct od_span { const char *base; long npages; };
long od_touch(const struct od_span *s);
long *od_slot(int i, long v);

/* slots: threads reading their own slot of one module page through the pointer each call
 * returns. */
static long slot_calls = 2000;
static long slot_stale[16];
static void *slot_thread(void *arg) {
    long t = (long)arg;
    for (long k = 1; k <= slot_calls; k++) {
        long v = t * 1000000 + k;
        long *p = od_slot((int)t, v);
        if (*p != v)
            slot_stale[t]++;
    }
    return 0;
}

static struct od_node global_node = {0, 7, "global"};
static struct od_stream gstream; /* in .bss, as xz keeps its stream */
static unsigned char gin[200000], gout[200000];

static long triple(long x) { return 3 * x; }

static sigjmp_buf back;
static void on_segv(int sig) { siglongjmp(back, sig); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    if (!strcmp(mode, "crash")) {
        long v = 5;
        long r = od_write_then_crash(&v);
        printf("crash: r=%ld v=%ld\n", r, v);
        return 0;
    }
    if (!strcmp(mode, "restart")) {
        /* restart: module memory read before and after a call that crashes the helper (the
         * new helper counts its answers from 0 again). */
        for (int i = 0; i < 40; i++)
            if (strcmp(od_name(i), i % 3 == 0 ? "zero" : i % 3 == 1 ? "one" : "two"))
                printf("wrong name before\n");
        long v = 5;
        long r = od_write_then_crash(&v);
        printf("restart: r=%ld v=%ld", r, v);
        for (int i = 0; i < 3; i++)
            printf(" %s", od_name(i + 1));
        printf("\n");
        return 0;
    }
    if (!strcmp(mode, "slots")) {
        /* slots [THREADS [CALLS]]: each thread reads the slot the call just wrote. */
        long nt = argc > 2 ? atol(argv[2]) : 8, stale = 0;
        if (argc > 3)
            slot_calls = atol(argv[3]);
        if (nt > 16)
            nt = 16;
        pthread_t th[16];
        for (long t = 0; t < nt; t++)
            pthread_create(&th[t], 0, slot_thread, (void *)t);
        for (long t = 0; t < nt; t++) {
            pthread_join(th[t], 0);
            stale += slot_stale[t];
        }
        printf("slots: %ld threads x %ld calls, %ld stale reads\n", nt, slot_calls, stale);
        return 0;
    }
    if (!strcmp(mode, "held")) {
        /* held: a page sent with one call and changed by the program before the next, which
         * reaches it only through a pointer (not sent ahead then): the module must read the
         * page as it is now, not as the last call had it. */
        char *pg = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct od_node *n0 = (struct od_node *)pg, *n1 = (struct od_node *)(pg + 4096);
        *n0 = (struct od_node){0, 5, "first"};
        long a = od_walk(n0);
        n0->val = 100;
        *n1 = (struct od_node){n0, 1, "second"};
        long b = od_walk(n1);
        n0->val = 7;
        long c = od_walk(n1);
        printf("held: %ld %ld %ld, values now %ld %ld\n", a, b, c, n0->val, n1->val);
        return 0;
    }
    if (!strcmp(mode, "peek")) {
        /* peek [CALLS]: after every call, reads fields of the stream's state, module memory
         * (as `file` reads its magic_t after every magic_file): each read must see the call
         * just made (the page the program faulted in last time is stale by then). */
        long calls = argc > 2 ? atol(argv[2]) : 100, bad = 0;
        struct od_stream s = {0};
        unsigned char in[1] = {1}, out[1];
        if (od_init(&s))
            return 1;
        for (long i = 0; i < calls; i++) {
            s.next_in = in; s.avail_in = 1; s.next_out = out; s.avail_out = 1;
            in[0] = (unsigned char)i;
            od_step(&s);
            const size_t *st = s.state; /* struct od_state: sum, calls, scratch */
            if (st[1] != (size_t)(i + 1))
                bad++;
        }
        printf("peek: %ld calls, %ld stale reads, sum %lu\n", calls, bad,
               (unsigned long)((const uint64_t *)s.state)[0]);
        od_end(&s);
        return 0;
    }
    if (!strcmp(mode, "bench")) {
        /* bench [CALLS]: the cost of a page the module fetches (fresh pages each call, so
         * nothing learned is sent ahead), next to a call touching none and to a page fault of
         * fresh memory in this process. JSON on one line. */
        long calls = argc > 2 ? atol(argv[2]) : 200, per = 16;
        size_t len = (size_t)calls * per * 4096;
        char *buf = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t i = 0; i < len; i += 4096) buf[i] = (char)i;
        struct od_span sp = {buf, 0};
        double t_none[64], t_pages[64];
        long n = calls < 64 ? calls : 64;
        /* warm-up: the caller's wait policy learns how long these calls take */
        for (int i = 0; i < 2000; i++) od_touch(&sp);
        for (long i = 0; i < n; i++) {
            uint64_t t0 = now_ns();
            od_touch(&sp);
            t_none[i] = (double)(now_ns() - t0);
        }
        for (long i = 0; i < n; i++) {
            struct od_span s2 = {buf + (size_t)i * per * 4096 + 4096 * 3, per - 4};
            uint64_t t0 = now_ns();
            od_touch(&s2);
            t_pages[i] = (double)(now_ns() - t0) / (double)(per - 4);
        }
        char *fresh = mmap(0, 4096 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint64_t t0 = now_ns();
        for (long i = 0; i < 4096; i++) fresh[i * 4096] = 1;
        double fault = (double)(now_ns() - t0) / 4096.0;
        qsort(t_none, (size_t)n, sizeof(double), cmp);
        qsort(t_pages, (size_t)n, sizeof(double), cmp);
        printf("{\"call_ns\": %.0f, \"page_ns\": %.0f, \"fault_ns\": %.0f}\n", t_none[n / 2],
               t_pages[n / 2], fault);
        return 0;
    }
    if (!strcmp(mode, "read") && argc > 2) {
        /* The module reads a file into a fresh buffer of ours (never touched by it before
         * the read system call) whose address is in a structure. */
        static struct od_req req;
        req.path = argv[2];
        req.n = 300000;
        req.buf = malloc((size_t)req.n);
        long got = od_read_into(&req);
        unsigned long h = 0;
        for (long i = 0; i < (got > 0 ? got : 0); i++) h = h * 131 + (unsigned char)req.buf[i];
        printf("read: %ld bytes, hash %lx\n", got, h);
        return 0;
    }
    if (!strcmp(mode, "handler")) {
        /* The program's own SIGSEGV handler, installed after start: module memory is still
         * read through faults, and the program's own faults still reach its handler. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_segv;
        sigaction(SIGSEGV, &sa, NULL);
        printf("name: %s\n", od_name(2));
        if (sigsetjmp(back, 1) == 0) {
            long *volatile bad = (long *)(uintptr_t)(argc > 99 ? 0 : 16);
            printf("read %ld\n", *bad);
        } else {
            printf("caught the program's own fault\n");
        }
        printf("name again: %s\n", od_name(1));
        return 0;
    }
    if (!strcmp(mode, "toucher")) {
        /* The module's own thread reads program memory outside any call. */
        static long x = 9;
        printf("touch: %d\n", od_touch_later(&x));
        fflush(stdout);
        usleep(400000);
        struct od_node n = {0, 1, "after"};
        printf("walk after: %ld\n", od_walk(&n));
        return 0;
    }
    /* stack -> heap -> mmap'd block -> global */
    char *big = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct od_node *far = (struct od_node *)(big + 512 * 1024);
    char *fname = big + 900 * 1024;
    strcpy(fname, "far away");
    *far = (struct od_node){&global_node, 100, fname};
    struct od_node *heap = malloc(sizeof *heap);
    char *hname = strdup("on the heap");
    *heap = (struct od_node){far, 20, hname};
    struct od_node stack = {heap, 3, "stack"};
    if (getenv("FX_OD_DEBUG"))
        fprintf(stderr, "stack %p heap %p far %p global %p\n", (void *)&stack, (void *)heap,
                (void *)far, (void *)&global_node);
    long s1 = od_walk(&stack);
    long s2 = od_walk(&stack);
    printf("walk: %ld %ld; values now %ld %ld %ld %ld\n", s1, s2, stack.val, heap->val, far->val,
           global_node.val);

    /* a stream whose state lives in the module between calls */
    for (size_t i = 0; i < sizeof gin; i++) gin[i] = (unsigned char)(i * 7 + i / 251);
    if (od_init(&gstream)) return 1;
    gstream.next_in = gin;
    gstream.avail_in = sizeof gin;
    int steps = 0;
    while (gstream.avail_in) {
        gstream.next_out = gout + gstream.total;
        gstream.avail_out = 30000;
        od_step(&gstream);
        steps++;
    }
    unsigned long h = 0;
    for (size_t i = 0; i < sizeof gout; i++) h = h * 131 + gout[i];
    printf("stream: %d steps, total %zu, out hash %lx, state %s\n", steps, gstream.total, h,
           gstream.state ? "set" : "null");
    printf("stream end: %ld, state %s\n", od_end(&gstream), gstream.state ? "set" : "null");

    printf("apply: %ld\n", od_apply(triple, 14));
    printf("name: %s %s\n", od_name(1), od_name(2));
    return 0;
}
