/*
 * atomic_counter.c - the article's program done "another way", the way
 * it was about to show: one atomic counter instead of a mutex and a map.
 * 1000 threads each add 1 to a tally_counter; it prints 1000, every run.
 *
 * tally_counter is a plain struct: no allocation, no lock, and
 * tally_counter_inc is one atomic instruction.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tally.h"

enum { THREADS = 1000 };

static tally_counter somekey = TALLY_COUNTER_INIT(0);

static void *inc(void *arg)
{
    (void)arg;
    tally_counter_inc(&somekey);
    return NULL;
}

int main(void)
{
    static pthread_t threads[THREADS];
    int i, err;

    for (i = 0; i < THREADS; i++) {
        err = pthread_create(&threads[i], NULL, inc, NULL);
        if (err != 0) {
            fprintf(stderr, "atomic_counter: pthread_create: %s\n",
                    strerror(err));
            return 1;
        }
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);

    printf("%lld\n", (long long)tally_counter_load(&somekey));
    return 0;
}
