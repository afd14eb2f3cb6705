/* libfx_od: a library whose API passes structures holding pointers, as zlib's does, for
 * `memory: on-demand` (SPEC.md "Memory"): nothing in its map says what any pointer points to. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

struct od_node { struct od_node *next; long val; const char *name; };

/* Sums the list's values and the lengths of its names, doubling every value (written back). */
long od_walk(struct od_node *n) {
    long s = 0;
    for (; n; n = n->next) {
        s += n->val + (long)strlen(n->name);
        n->val *= 2;
    }
    return s;
}

/* A stream in the style of z_stream: the module keeps its state behind `state`, allocated
 * here, and copies avail_in bytes (xor 0x5a) to next_out. */
struct od_stream {
    const unsigned char *next_in; size_t avail_in;
    unsigned char *next_out; size_t avail_out;
    size_t total; void *state;
};
struct od_state { uint64_t sum; size_t calls; unsigned char *scratch; };

int od_init(struct od_stream *s) {
    struct od_state *st = calloc(1, sizeof *st);
    if (!st) return -1;
    st->scratch = malloc(1 << 20); /* mmap'd by malloc: module memory, not the program's */
    s->state = st;
    s->total = 0;
    return 0;
}

int od_step(struct od_stream *s) {
    struct od_state *st = s->state;
    size_t n = s->avail_in < s->avail_out ? s->avail_in : s->avail_out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s->next_in[i];
        st->scratch[i] = c;
        s->next_out[i] = c ^ 0x5a;
        st->sum = st->sum * 31 + c;
    }
    s->next_in += n; s->avail_in -= n;
    s->next_out += n; s->avail_out -= n;
    s->total += n;
    st->calls++;
    return s->avail_in ? 1 : 0;
}

long od_end(struct od_stream *s) {
    struct od_state *st = s->state;
    long r = (long)(st->sum ^ st->calls);
    free(st->scratch);
    free(st);
    s->state = NULL;
    return r;
}

/* Writes, then crashes: a crashed call writes nothing back. */
long od_write_then_crash(long *p) {
    *p = 42;
    volatile long *z = 0;
    return *z;
}

/* Calls a function of the program it was given, not declared `cb`: it runs here. */
long od_apply(long (*fn)(long), long x) { return fn(x) + 1; }

/* Returns module memory the program reads through (a string). */
const char *od_name(int i) {
    static char buf[64];
    static const char *names[] = {"zero", "one", "two"};
    strcpy(buf, names[i % 3]);
    return buf;
}

/* Starts a thread of the module's that reads *p a little later, when no call is running. */
static void *toucher(void *arg) {
    usleep(100000);
    return (void *)(intptr_t)*(volatile long *)arg;
}
int od_touch_later(long *p) {
    pthread_t t;
    if (pthread_create(&t, NULL, toucher, p)) return -1;
    return pthread_detach(t);
}

/* Reads one byte of each of s->npages pages at s->base (for the fetched-page benchmark). */
struct od_span { const char *base; long npages; };
long od_touch(const struct od_span *s) {
    long sum = 0;
    for (long i = 0; i < s->npages; i++) sum += s->base[i * 4096];
    return sum;
}

/* Reads a file into a program buffer it reaches through a structure and never touches itself:
 * the kernel writes it (a system call on program memory). */
struct od_req { const char *path; char *buf; long n; };
long od_read_into(const struct od_req *r) {
    int fd = open(r->path, O_RDONLY);
    if (fd < 0) return -1;
    long got = 0, k;
    while (got < r->n && (k = read(fd, r->buf + got, (size_t)(r->n - got))) > 0) got += k;
    close(fd);
    return got;
}

/* Per-thread slots on one page of module memory: writes v into slot i and returns a pointer
 * to it, which the calling thread reads (as a returned string): every thread's answer brings
 * that page back, each taken at a different moment. */
long *od_slot(int i, long v) {
    static long slots[64];
    slots[i & 63] = v;
    return &slots[i & 63];
}
