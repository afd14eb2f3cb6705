/* libfx_evil.so: a module that attacks the program through fracture's shared queue.
 *
 * Pins: everything a helper sends back is untrusted. When isolated, these functions run in
 * the helper, find the queue (the memfd mapping named "fracture-*") and scribble over it,
 * so the program reads garbage where it expects an answer. The program must see a failed
 * call, never crash, and never write outside the out-buffers it declared.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Finds the first mapping whose name contains "memfd:fracture-". */
static int find_queue(unsigned char **start, size_t *len) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (strstr(line, "memfd:fracture-") && sscanf(line, "%lx-%lx", &a, &b) == 2) {
            *start = (unsigned char *)a;
            *len = b - a;
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static unsigned long rng = 88172645463325252UL;
static unsigned long next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Header plus channel headers: 4096 + 16 * 2048 bytes. */
#define HEADERS (4096 + 16 * 2048)

static void scribble_once(unsigned char *q, size_t len) {
    size_t n = len < HEADERS ? len : HEADERS;
    /* keep the region header's magic so the helper's own checks do not stop it early */
    for (size_t i = 64; i < n; i += 8) {
        uint64_t v = next_rand();
        memcpy(q + i, &v, 8);
    }
}

/* Full passes the scribbler has made over the headers. */
static unsigned long passes;

static void *scribbler(void *arg) {
    size_t len = 0;
    unsigned char *q = NULL;
    (void)arg;
    if (!find_queue(&q, &len))
        return NULL;
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 1;
    do {
        scribble_once(q, len);
        __atomic_fetch_add(&passes, 1, __ATOMIC_SEQ_CST);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
    return NULL;
}

/* Starts a thread that keeps writing random bytes over the queue's headers for a second,
 * then returns 42 (whatever the program receives instead). Returns -1 outside a helper.
 * It answers only well after the scribbler's first pass, so the program (which looks at its
 * channel at least every 50 ms) sees the garbage even when the machine is loaded and the
 * scribbler thread starts late. */
long evil_scribble(void) {
    size_t len;
    unsigned char *q;
    pthread_t t;
    if (!find_queue(&q, &len))
        return -1;
    pthread_create(&t, NULL, scribbler, NULL);
    pthread_detach(t);
    for (int i = 0; i < 2000 && !__atomic_load_n(&passes, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    usleep(300000);
    return 42;
}

/* Writes n bytes into buf although the map declares fewer: the program must copy back only
 * what it declared. Returns n. */
long evil_overwrite(char *buf, long n) {
    memset(buf, 'E', (size_t)n);
    return n;
}

/* Returns a "string" that is not NUL-terminated within a page's worth of bytes. */
const char *evil_long_string(void) {
    static char big[1 << 16];
    memset(big, 'L', sizeof big - 1);
    big[sizeof big - 1] = 0;
    return big;
}

long evil_add(long a, long b) { return a + b; }
