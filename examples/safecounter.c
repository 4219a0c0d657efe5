/*
 * safecounter.c - the article's Go program, line for line, in C.
 *
 *   Go                                     C
 *   c := SafeCounter{v: make(...)}         seedmap_new(&c)
 *   go c.Inc("somekey")  (x1000)           pthread_create(..., inc, c)
 *   time.Sleep(time.Second)                pthread_join each thread: we
 *                                          wait exactly as long as needed
 *                                          instead of sleeping and hoping
 *   fmt.Println(c.Value("somekey"))        printf(seedmap_value(c, ...))
 *
 * Prints 1000, every run.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "seedmap.h"

enum { THREADS = 1000 };

static void *inc(void *c)
{
    /* SafeCounter.Inc: lock, c.v[key]++, unlock. */
    if (seedmap_inc(c, "somekey") != 0)
        fprintf(stderr, "safecounter: out of memory\n");
    return NULL;
}

int main(void)
{
    static pthread_t threads[THREADS];
    seedmap *c;
    int i, err;

    if (seedmap_new(&c) != 0) {
        fprintf(stderr, "safecounter: out of memory\n");
        return 1;
    }
    for (i = 0; i < THREADS; i++) {
        err = pthread_create(&threads[i], NULL, inc, c);
        if (err != 0) {
            fprintf(stderr, "safecounter: pthread_create: %s\n",
                    strerror(err));
            return 1;
        }
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);

    printf("%lld\n", (long long)seedmap_value(c, "somekey"));
    seedmap_free(c);
    return 0;
}
