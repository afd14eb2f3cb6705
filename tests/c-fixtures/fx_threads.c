/* fx_threads [THREADS] [CALLS]: many threads call the isolated library at once; every result
 * is checked. Pins: concurrent calls are neither lost, duplicated nor crossed. */
#include "fx.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long calls;
static long errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
    long t = (long)arg, bad = 0;
    char name[32], want[64], buf[256];
    struct fx_counter *c = fx_counter_new(t * 1000);
    for (int i = 0; i < (int)sizeof buf; i++)
        buf[i] = (char)(i + t);
    unsigned sum = fx_checksum(buf, sizeof buf); /* reference from the same path */
    for (long i = 0; i < calls; i++) {
        if (fx_add((int)i, (int)t) != (int)(i + t))
            bad++;
        snprintf(name, sizeof name, "t%ld-%ld", t, i % 97);
        snprintf(want, sizeof want, "hello, %s", name);
        if (strcmp(fx_greet(name), want) != 0)
            bad++;
        if (fx_checksum(buf, sizeof buf) != sum)
            bad++;
        if (fx_counter_add(c, 1) != t * 1000 + i + 1)
            bad++;
    }
    fx_counter_free(c);
    pthread_mutex_lock(&mu);
    errors += bad;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    calls = argc > 2 ? atol(argv[2]) : 2000;
    pthread_t th[256];
    if (threads > 256)
        threads = 256;
    for (long t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    printf("threads: %d calls: %ld errors: %ld\n", threads, threads * calls, errors);
    return errors ? 1 : 0;
}
