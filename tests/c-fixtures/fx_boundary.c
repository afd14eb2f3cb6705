/* fx_boundary: one scenario per run (argv[1]) at the boundary between the program and its
 * helpers, with hostile (libfx_forge) and honest (libfx) modules. Prints one line per step
 * and "intact" when the program's own heap canaries survived. The function indices passed
 * to the forging module are the positions of the functions in configs/boundary*.yaml. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

long forge_len_lie(long host_fill);
long forge_nargs0(long host_slen);
long forge_own(long self);
long forge_ping_a(long next, long self);
long forge_stop_sig(void);
long forge_state(long x);
long forge_pid(long pid);
long fx_need(char *buf, long *len);
long fx_sum8(long a, long b, long c, long d, long e, long f, long g, long h);
void *fx_leak(long n);
long fx_strlen(const char *s);
long forge_flood(long host_slen);
long forge_regions(void);
void *forge_handle(long i);
long forge_recurse(long n);
void *fx_counter_new(long start);
long fx_counter_get(const void *c);
void *forge_obj_new(long v);
long forge_obj_get(const void *o);
const char *forge_bad_str(char *out);
long host_fill(char *buf, long n);
long host_slen(const char *s);

#define NCANARY 64
static char *canary[NCANARY];

static void canaries(void) {
    for (int i = 0; i < NCANARY; i++) {
        canary[i] = malloc(24 + (i % 4) * 16);
        memset(canary[i], 'c', 24);
    }
}

/* Heap churn and the canaries: a program whose heap was overwritten dies or says so here. */
static void check(void) {
    int bad = 0;
    for (int r = 0; r < 200; r++) {
        void *p = malloc(16 + (r % 64) * 8);
        memset(p, 0, 16);
        free(p);
    }
    for (int i = 0; i < NCANARY; i++)
        for (int j = 0; j < 24; j++)
            bad |= canary[i][j] != 'c';
    printf("%s\n", bad ? "CORRUPTED" : "intact");
}

int main(int argc, char **argv) {
    const char *s = argc > 1 ? argv[1] : "";
    canaries();
    if (host_slen("loaded") != 6) /* the program's own module: linked and used here */
        return 3;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(s, "len")) {
        printf("len_lie: %ld\n", forge_len_lie(6));
    } else if (!strcmp(s, "nargs")) {
        printf("nargs0: %ld\n", forge_nargs0(7));
    } else if (!strcmp(s, "own")) {
        printf("own: %ld\n", forge_own(2));
    } else if (!strcmp(s, "ping")) {
        printf("ping: %s\n", forge_ping_a(1, 0) > 0 ? "ended" : "failed");
    } else if (!strcmp(s, "stopsig")) {
        printf("before\n");
        printf("stop_sig: %ld\n", forge_stop_sig());
    } else if (!strcmp(s, "pid")) {
        printf("state: %ld\n", forge_state(5));
        printf("pid: %ld\n", forge_pid((long)getpid()));
        printf("state_after: %ld\n", forge_state(1));
    } else if (!strcmp(s, "need")) {
        char buf[64];
        long len = sizeof buf;
        memset(buf, '.', sizeof buf);
        long r = fx_need(buf, &len);
        printf("need: %ld len=%ld %.8s\n", r, len, buf);
    } else if (!strcmp(s, "sum8")) {
        printf("sum8: %ld\n", fx_sum8(1, 2, 3, 4, 5, 6, 700, 8000));
    } else if (!strcmp(s, "leak")) {
        long total = 0;
        for (int i = 0; i < 10; i++)
            total += fx_leak(100) != NULL;
        printf("leak: %ld\n", total);
    } else if (!strcmp(s, "objs")) {
        void *a = forge_obj_new(10);
        void *b = forge_obj_new(20);
        printf("a=%ld b=%ld\n", forge_obj_get(a), forge_obj_get(b));
        printf("a_again=%ld\n", forge_obj_get(a));
    } else if (!strcmp(s, "badstr")) {
        char out[8];
        memset(out, '.', sizeof out);
        const char *r = forge_bad_str(out);
        printf("badstr: %s %.8s\n", r ? r : "NULL", out);
    } else if (!strcmp(s, "flood")) {
        printf("flood: %ld\n", forge_flood(6));
    } else if (!strcmp(s, "regions")) {
        printf("regions: %ld\n", forge_regions());
    } else if (!strcmp(s, "handles")) {
        long bad = 0;
        for (long i = 0; i < 70000; i++)
            bad += forge_handle(i) == NULL;
        printf("handles refused: %s\n", bad > 0 ? "some" : "none");
    } else if (!strcmp(s, "recurse")) {
        printf("recurse: %ld\n", forge_recurse(0));
    } else if (!strcmp(s, "fork")) {
        void *c = fx_counter_new(41);
        printf("parent: %ld\n", fx_counter_get(c));
        pid_t pid = fork();
        if (pid == 0) {
            printf("child: %ld\n", fx_counter_get(c));
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
    } else {
        fprintf(stderr, "usage: fx_boundary len|nargs|own|ping|stopsig|pid|need|sum8|leak\n");
        return 2;
    }
    check();
    return 0;
}
