/*
 * keys.c - the key streams of the map workloads, and their replay.
 *
 * Every language's benchmark makes exactly the same keys and the same
 * per-thread sequences (bench/README.md, "Workloads"): the same strings,
 * the same xorshift64* seeded with thread_index + 1, the same Zipf index
 * file. The replay recomputes, after a run, how many adds each key got,
 * so that the timed loops need no bookkeeping of their own.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Decimal digits of v into buf, no NUL; returns the count. */
static size_t put_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

struct bench_key *bench_keys_make(size_t n)
{
    struct bench_key *keys = calloc(n ? n : 1, sizeof(*keys));
    /* "k" + at most 20 digits + NUL */
    char *text = malloc((n ? n : 1) * 22);
    if (keys == NULL || text == NULL) {
        free(keys);
        free(text);
        return NULL;
    }
    char *p = text;
    for (size_t i = 0; i < n; i++) {
        p[0] = 'k';
        size_t len = 1 + put_u64(p + 1, i);
        p[len] = '\0';
        keys[i].s = p;
        keys[i].len = len;
        p += len + 1;
    }
    if (n == 0)
        keys[0].s = text;
    return keys;
}

void bench_keys_free(struct bench_key *keys)
{
    if (keys == NULL)
        return;
    free((void *)keys[0].s);
    free(keys);
}

size_t bench_insert_key(char *buf, unsigned thread, uint64_t n)
{
    size_t len = 0;
    buf[len++] = 't';
    len += put_u64(buf + len, thread);
    buf[len++] = ':';
    len += put_u64(buf + len, n);
    buf[len] = '\0';
    return len;
}

size_t bench_memory_key(char *buf, size_t i)
{
    /* "key:%08zu" without snprintf's cost: 12 bytes for i < 10^8. */
    memcpy(buf, "key:", 4);
    char digits[20];
    size_t n = put_u64(digits, i);
    size_t pad = n < 8 ? 8 - n : 0;
    memset(buf + 4, '0', pad);
    memcpy(buf + 4 + pad, digits, n);
    buf[4 + pad + n] = '\0';
    return 4 + pad + n;
}

uint32_t *bench_zipf_make(size_t nkeys, size_t *len)
{
    const double s = 0.99;
    const size_t n = nkeys * 4;
    double *cdf = malloc(nkeys * sizeof(*cdf));
    uint32_t *seq = malloc(n * sizeof(*seq));
    if (cdf == NULL || seq == NULL) {
        free(cdf);
        free(seq);
        return NULL;
    }
    double total = 0;
    for (size_t r = 0; r < nkeys; r++) {
        total += 1.0 / pow((double)(r + 1), s);
        cdf[r] = total;
    }
    uint64_t rng = 42;
    for (size_t i = 0; i < n; i++) {
        /* u in [0, total): 53 random bits scaled */
        double u = (double)(bench_rng_next(&rng) >> 11) * 0x1.0p-53 * total;
        size_t lo = 0, hi = nkeys - 1; /* first r with cdf[r] > u */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        /* an odd multiplier is a bijection mod 2^k: spreads the hot
         * ranks over the key space */
        seq[i] = (uint32_t)((lo * UINT64_C(0x9E3779B1)) & (nkeys - 1));
    }
    free(cdf);
    *len = n;
    return seq;
}

void bench_replay(const struct bench_run *run, unsigned i, uint64_t ops,
                  uint64_t *expected)
{
    const struct bench_cfg *cfg = run->cfg;
    switch (cfg->workload) {
    case W_UNIFORM:
    case W_ITERATE: {
        uint64_t rng = (uint64_t)i + 1;
        for (uint64_t n = 0; n < ops; n++) {
            uint64_t x = bench_rng_next(&rng);
            expected[BENCH_UNIFORM_INDEX(x, run->key_mask)]++;
        }
        break;
    }
    case W_MIXED: {
        uint64_t rng = (uint64_t)i + 1;
        for (uint64_t n = 0; n < ops; n++) {
            uint64_t x = bench_rng_next(&rng);
            if (!BENCH_MIXED_IS_GET(x))
                expected[BENCH_UNIFORM_INDEX(x, run->key_mask)]++;
        }
        break;
    }
    case W_ZIPF: {
        size_t len = run->zipf_mask + 1;
        uint64_t laps = ops / len, rest = ops % len;
        size_t pos = bench_zipf_start(i, run->zipf_mask);
        if (laps != 0)
            for (size_t j = 0; j < len; j++)
                expected[run->zipf[j]] += laps;
        for (uint64_t n = 0; n < rest; n++) {
            expected[run->zipf[pos]]++;
            pos = (pos + 1) & run->zipf_mask;
        }
        break;
    }
    default:
        break;
    }
}
