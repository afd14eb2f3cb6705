/* pingpong MODE N: round trip between two processes, the baselines of make bench.
 *   pipe   one byte back and forth over two pipes
 *   futex  a word in a MAP_SHARED page, futex wait/wake, no spinning
 *   spin   the same words, both sides busy-poll (the floor of a shared-memory round trip)
 *   fork   fork + _exit + waitpid (the floor of any restart)
 *   pin    one thread pinned to its CPU and given its affinity back (the cost a caller that
 *          sleeps for its answer pays to stay on its CPU, see shim/src/call/colocate.rs) */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

static void fwait(volatile uint32_t *w, uint32_t v) {
    while (__atomic_load_n(w, __ATOMIC_SEQ_CST) == v)
        syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void fwake(volatile uint32_t *w, uint32_t v) {
    __atomic_store_n(w, v, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    int pipe_mode = !strcmp(argv[1], "pipe");
    int spin_mode = !strcmp(argv[1], "spin");
    long n = atol(argv[2]);
    double *s = calloc((size_t)n, sizeof *s);
    if (!strcmp(argv[1], "pin")) {
        cpu_set_t all, one;
        if (sched_getaffinity(0, sizeof all, &all))
            return 1;
        for (long i = 0; i < n; i++) {
            double t = now_ns();
            CPU_ZERO(&one);
            CPU_SET(sched_getcpu(), &one);
            sched_setaffinity(0, sizeof one, &one);
            sched_setaffinity(0, sizeof all, &all);
            s[i] = now_ns() - t;
        }
        qsort(s, (size_t)n, sizeof *s, cmp);
        printf("{\"mode\":\"pin\",\"n\":%ld,\"median_ns\":%.1f,\"p99_ns\":%.1f}\n", n, s[n / 2], s[(n * 99) / 100]);
        return 0;
    }
    if (!strcmp(argv[1], "fork")) {
        for (long i = 0; i < n; i++) {
            double t = now_ns();
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            waitpid(c, NULL, 0);
            s[i] = now_ns() - t;
        }
        qsort(s, (size_t)n, sizeof *s, cmp);
        printf("{\"mode\":\"fork\",\"n\":%ld,\"median_ns\":%.1f,\"p99_ns\":%.1f}\n", n, s[n / 2], s[(n * 99) / 100]);
        return 0;
    }
    int a[2], b[2];
    volatile uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pipe(a) || pipe(b))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        for (long i = 0; i < n; i++) {
            if (pipe_mode) {
                if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                    _exit(1);
            } else if (spin_mode) {
                while (__atomic_load_n(&w[0], __ATOMIC_ACQUIRE) == (uint32_t)i)
                    __builtin_ia32_pause();
                __atomic_store_n(&w[1], (uint32_t)i + 1, __ATOMIC_RELEASE);
            } else {
                fwait(&w[0], (uint32_t)i);
                fwake(&w[1], (uint32_t)i + 1);
            }
        }
        _exit(0);
    }
    char c = 'x';
    for (long i = 0; i < n; i++) {
        double t = now_ns();
        if (pipe_mode) {
            if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
                return 1;
        } else if (spin_mode) {
            __atomic_store_n(&w[0], (uint32_t)i + 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&w[1], __ATOMIC_ACQUIRE) == (uint32_t)i)
                __builtin_ia32_pause();
        } else {
            fwake(&w[0], (uint32_t)i + 1);
            fwait(&w[1], (uint32_t)i);
        }
        s[i] = now_ns() - t;
    }
    waitpid(pid, NULL, 0);
    qsort(s, (size_t)n, sizeof *s, cmp);
    printf("{\"mode\":\"%s\",\"n\":%ld,\"median_ns\":%.1f,\"p99_ns\":%.1f}\n", argv[1], n, s[n / 2], s[(n * 99) / 100]);
    return 0;
}
