/* libfx_forge.so: a hostile module that speaks fracture's queue protocol itself.
 *
 * Pins: everything a helper sends back is untrusted. Isolated, these functions run in a
 * helper, find their own queue (the memfd mapping "fracture-<process>") and, instead of an
 * honest nested call through the shim, write a nested call of their own choosing into the
 * channel of the call they serve (channel 0: the program has one calling thread), then wait
 * for the program's answer. The layout below mirrors shim/transport/src/region.rs (asserted
 * there; its VERSION says when it changed).
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE 4096
#define CHANNEL_HDR 2048
#define CHANNELS 16
#define DATA_SIZE (16UL << 20)

/* RegionHeader */
#define RH_STATE 24
#define RH_PID 32
#define RH_FAULT_SIG 48
/* Channel (version 6: the lead line first, the sleep words on the next, the slot on the
 * third) */
#define CH_TO_HELPER_SEQ 0
#define CH_TO_PROG_SEQ 4
#define CH_CONSUMED 8
#define CH_LEAD 12
#define CH_TO_PROG_EV 72
#define CH_PROG_SLEEPING 76
#define CH_MSG 128
#define LEAD_NONE 0
/* Msg */
#define M_KIND 0
#define M_FUNC 4
#define M_NSTACK 12
#define M_NARGS 16
#define M_DATA_BASE 24
#define M_DATA_END 32
#define M_GP 40
#define M_RET_RAX 96
#define M_ARG_OFF 560
#define M_ARG_LEN 816

#define MSG_CALL 1
#define MSG_RETURN 2
#define MSG_FAIL 3
#define NULL_OFF UINT64_MAX

static unsigned char *region;

/* Finds this helper's own region: "memfd:fracture-<name>" where the helper is "frac-<name>". */
static unsigned char *find_region(void) {
    char comm[64] = {0}, want[96];
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f)
        return NULL;
    if (!fgets(comm, sizeof comm, f)) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    if (strncmp(comm, "frac-", 5) != 0)
        return NULL;
    snprintf(want, sizeof want, "memfd:fracture-%s ", comm + 5);
    f = fopen("/proc/self/maps", "r");
    if (!f)
        return NULL;
    char line[512];
    unsigned char *found = NULL;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char *name = strstr(line, "memfd:fracture-");
        if (!name || sscanf(line, "%lx-%lx", &a, &b) != 2)
            continue;
        /* the name ends the line, followed by " (deleted)" */
        if (strncmp(name, want, strlen(want)) == 0 || (strncmp(name, want, strlen(want) - 1) == 0 &&
                                                         name[strlen(want) - 1] == '\n')) {
            found = (unsigned char *)a;
            break;
        }
    }
    fclose(f);
    return found;
}

static unsigned char *chan(int c) { return region + HEADER_SIZE + c * CHANNEL_HDR; }
static unsigned char *msg(int c) { return chan(c) + CH_MSG; }
static uint32_t *u32at(unsigned char *p, size_t off) { return (uint32_t *)(p + off); }
static uint64_t *u64at(unsigned char *p, size_t off) { return (uint64_t *)(p + off); }

static void post_to_prog(int c) {
    /* every message forged here is in the slot (a call of registers only may have left its
     * lead) */
    __atomic_store_n(u32at(chan(c), CH_LEAD), LEAD_NONE, __ATOMIC_RELAXED);
    __atomic_fetch_add(u32at(chan(c), CH_TO_PROG_SEQ), 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(u32at(chan(c), CH_TO_PROG_EV), 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(u32at(chan(c), CH_PROG_SLEEPING), __ATOMIC_SEQ_CST))
        syscall(SYS_futex, u32at(chan(c), CH_TO_PROG_EV), FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

/* Spin only, never sleep, while waiting for the program. */
static int fast;

/* Waits (at most 20 s) for the program's next message on channel c; returns its kind. */
static uint32_t wait_from_prog(int c, uint32_t seen) {
    for (long i = 0; fast || i < 2000000; i++) {
        uint32_t s = __atomic_load_n(u32at(chan(c), CH_TO_HELPER_SEQ), __ATOMIC_SEQ_CST);
        if (s != seen) {
            /* taken in, as the shim's own nested waiter does: the serving thread must not
             * take the program's answer for a new call once we return */
            __atomic_store_n(u32at(chan(c), CH_CONSUMED), s, __ATOMIC_SEQ_CST);
            return *u32at(msg(c), M_KIND);
        }
        if (!fast && i > 1000)
            usleep(10);
    }
    return 0;
}

/* A forged nested call of mapped function `func` with registers gp[0..1] and one buffer
 * table entry (arg 0) at `off`/`len`; `nargs` entries in use; data in [base, end). */
static uint32_t forge(int c, uint32_t func, uint64_t a0, uint64_t a1, uint32_t nargs, uint64_t base,
                      uint64_t end, uint64_t off, uint64_t len) {
    unsigned char *m = msg(c);
    uint32_t seen = __atomic_load_n(u32at(chan(c), CH_TO_HELPER_SEQ), __ATOMIC_SEQ_CST);
    memset(m, 0, 1088);
    *u32at(m, M_KIND) = MSG_CALL;
    *u32at(m, M_FUNC) = func;
    *u32at(m, M_NSTACK) = 0;
    *u32at(m, M_NARGS) = nargs;
    *u64at(m, M_DATA_BASE) = base;
    *u64at(m, M_DATA_END) = end;
    *u64at(m, M_GP) = a0;
    *u64at(m, M_GP + 8) = a1;
    for (int i = 0; i < 32; i++) {
        *u64at(m, M_ARG_OFF + 8 * i) = NULL_OFF;
        *u64at(m, M_ARG_LEN + 8 * i) = 0;
    }
    if (nargs > 0) {
        *u64at(m, M_ARG_OFF) = off;
        *u64at(m, M_ARG_LEN) = len;
    }
    post_to_prog(c);
    return wait_from_prog(c, seen);
}

static int setup(void) {
    if (!region)
        region = find_region();
    return region != NULL;
}

/* A nested call of host_fill(buf, n) ("out:arg1") whose buffer entry says 1 byte while the
 * size register says 4096. Returns the kind of the program's answer (3: refused). */
long forge_len_lie(long host_fill) {
    if (!setup())
        return -1;
    uint64_t base = 1 << 20;
    return forge(0, (uint32_t)host_fill, 0, 4096, 2, base, base + 8192, base, 1);
}

/* A nested call of host_slen(s) ("str") that says no table entry is in use (nargs 0) with
 * the data window at 0: the string must reach host_slen as NULL. Returns its answer. */
long forge_nargs0(long host_slen) {
    if (!setup())
        return -1;
    uint32_t k = forge(0, (uint32_t)host_slen, 0, 0, 0, 0, 64, 0, 0);
    if (k != MSG_RETURN)
        return -100 - (long)k;
    return (long)*u64at(msg(0), M_RET_RAX);
}

/* Asks the program to call this helper's own function `self` (the call being served). */
long forge_own(long self) {
    if (!setup())
        return -1;
    return forge(0, (uint32_t)self, self, 0, 0, 1 << 20, 1 << 20, 0, 0);
}

/* Two of these, in two helpers, ask the program to call each other's forever: on every
 * call the program forwards to them they ask again, so the program nests one level deeper
 * each time while the helpers only loop. Returns the forged calls made. */
static long ping(long next, long self) {
    long hops = 0;
    if (!setup())
        return -1;
    for (;;) {
        uint32_t k = forge(0, (uint32_t)next, self, next, 0, 1 << 20, 1 << 20, 0, 0);
        hops++;
        if (k != MSG_CALL)
            return hops;
    }
}
long forge_ping_a(long next, long self) { return ping(next, self); }
long forge_ping_b(long next, long self) { return ping(next, self); }

/* Writes SIGSTOP into the region's fault signal, as if its fault handler had, then exits 3. */
long forge_stop_sig(void) {
    if (!setup())
        return -1;
    __atomic_store_n((int32_t *)(region + RH_FAULT_SIG), SIGSTOP, __ATOMIC_SEQ_CST);
    _exit(3);
}

/* A state call (logged: a checkpoint follows it). */
static long state;
long forge_state(long x) { return state += x; }

/* Leaves a process behind that keeps announcing `pid` (the program's) as the helper resumed
 * from a checkpoint, then crashes. */
long forge_pid(long pid) {
    if (!setup())
        return -1;
    if (fork() == 0) {
        struct timespec end, now;
        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += 4;
        do {
            __atomic_store_n((int32_t *)(region + RH_PID), (int32_t)pid, __ATOMIC_SEQ_CST);
            __atomic_store_n((uint32_t *)(region + RH_STATE), 1, __ATOMIC_SEQ_CST);
            sched_yield();
            clock_gettime(CLOCK_MONOTONIC, &now);
        } while (now.tv_sec < end.tv_sec);
        _exit(0);
    }
    usleep(20000);
    raise(SIGSEGV);
    return 0;
}

/* Keeps sending nested calls of host_slen, each as soon as the program answered the last
 * (spinning, never sleeping: within the program's spin budget), and never answers the call
 * it serves: the program's wait never reaches its sleeping path, and must still give up
 * after timeout_ms. */
long forge_flood(long host_slen) {
    if (!setup())
        return -1;
    fast = 1;
    for (;;)
        forge(0, (uint32_t)host_slen, 0, 0, 0, 1 << 20, (1 << 20) + 64, 0, 0);
}

/* Queue regions this helper has mapped (its own only, or it could write the others'). */
long forge_regions(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    long n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "memfd:fracture-"))
            n++;
    fclose(f);
    return n;
}

/* A new "handle" on every call: the program's handle table must not grow without bound. */
void *forge_handle(long i) { return (void *)(uintptr_t)(0x10000 + 16 * (uintptr_t)i); }

/* Overflows the serving thread's stack (bounded only by a limit nobody reaches). */
long forge_recurse(long n) {
    volatile char pad[1024];
    pad[0] = (char)n;
    if (n > (1L << 40))
        return n;
    return forge_recurse(n + 1) + pad[0];
}

/* Objects behind handles. In a replica other than the first (its helper is named
 * "frac-<process>#<n>"), every new object after the first is answered with the first
 * object's address again: one replica naming another handle's value. */
static long objs[64];
static int nobj;
static int second_replica(void) {
    char comm[64] = {0};
    FILE *f = fopen("/proc/self/comm", "r");
    if (!f)
        return 0;
    if (!fgets(comm, sizeof comm, f))
        comm[0] = 0;
    fclose(f);
    return strchr(comm, '#') != NULL;
}
void *forge_obj_new(long v) {
    if (nobj > 0 && second_replica())
        return &objs[0];
    if (nobj >= 64)
        return NULL;
    objs[nobj] = v;
    return &objs[nobj++];
}
long forge_obj_get(const long *o) { return o ? *o : -1; }

/* Fills its out-buffer (in the data area), then answers by hand with a returned string whose
 * offset is past the data area, and never returns: the program must take the call for
 * failed and write nothing into the caller's out-buffer. */
const char *forge_bad_str(char *out) {
    if (!setup())
        return NULL;
    memset(out, 'E', 8);
    unsigned char *m = msg(0);
    *u32at(m, M_KIND) = MSG_RETURN;
    *u64at(m, 144) = DATA_SIZE + 16; /* ret_off */
    *u64at(m, 152) = 4;              /* ret_len */
    *u64at(m, 160) = NULL_OFF;       /* mirror_off */
    post_to_prog(0);
    for (;;)
        pause();
}
