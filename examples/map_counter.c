/*
 * map_counter.c - the article's SafeCounter with tally_map: the same
 * Inc(key) / Value(key) interface, no mutex. 1000 threads each increment
 * "somekey" once; it prints 1000, every run.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tally.h"

enum { THREADS = 1000 };

static void *inc(void *arg)
{
    tally_map *c = arg;
    int err = tally_map_inc(c, "somekey"); /* c.Inc("somekey") */
    if (err != 0)
        fprintf(stderr, "map_counter: tally_map_inc: %s\n",
                tally_strerror(err));
    return NULL;
}

int main(void)
{
    static pthread_t threads[THREADS];
    tally_map *c;
    int i, err;

    err = tally_map_new(&c);
    if (err != 0) {
        fprintf(stderr, "map_counter: tally_map_new: %s\n",
                tally_strerror(err));
        return 1;
    }
    for (i = 0; i < THREADS; i++) {
        err = pthread_create(&threads[i], NULL, inc, c);
        if (err != 0) {
            fprintf(stderr, "map_counter: pthread_create: %s\n",
                    strerror(err));
            return 1;
        }
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);

    printf("%lld\n", (long long)tally_map_value(c, "somekey")); /* c.Value */
    tally_map_free(c);
    return 0;
}
