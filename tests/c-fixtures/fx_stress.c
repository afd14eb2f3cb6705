/* fx_stress [THREADS] [CALLS] [CRASH_EVERY]: threads add to their own counter handles while
 * one thread crashes the helper every CRASH_EVERY calls. With restore: replay or checkpoint,
 * every counter must end exactly at its start + CALLS: no call lost, none applied twice. */
#include "fx.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long calls, crash_every;
static long errors, crashes_seen;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    long t = (long)arg, bad = 0, crashed = 0;
    struct fx_counter *c = fx_counter_new(t * 100000);
    for (long i = 0; i < calls; i++) {
        long v = fx_counter_add(c, 1);
        if (v != t * 100000 + i + 1) {
            bad++;
            fprintf(stderr, "thread %ld call %ld: got %ld\n", t, i, v);
        }
        if (t == 0 && crash_every && i % crash_every == crash_every - 1) {
            if (fx_crash_on("segv") < 0)
                crashed++;
        }
    }
    if (fx_counter_get(c) != t * 100000 + calls)
        bad++;
    pthread_mutex_lock(&mu);
    errors += bad;
    crashes_seen += crashed;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    calls = argc > 2 ? atol(argv[2]) : 500;
    crash_every = argc > 3 ? atol(argv[3]) : 50;
    pthread_t th[64];
    if (threads > 64)
        threads = 64;
    for (long t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    printf("threads: %d calls: %ld crashes: %ld errors: %ld\n", threads, threads * calls, crashes_seen, errors);
    return errors ? 1 : 0;
}
