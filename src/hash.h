/*
 * hash.h - the seeded 64-bit key hash of tally_map and tally_store.
 *
 * Keys are short byte strings (route names, user ids, client addresses),
 * often chosen by whoever sends the network traffic being counted. So the
 * hash is keyed: every map (and every store file) draws its own 256-bit
 * secret from the OS (tally__seed_init), and the secret enters every
 * multiply, so that keys which collide under one secret tell nothing about
 * another. Two runs of the same program lay out the same keys differently.
 *
 * HOW IT WORKS
 *
 * The mixing step is the "folded multiply": fold(a, b) is the xor of the
 * two halves of the 128-bit product a * b, which spreads every input bit
 * over the whole output. Keys of up to 16 bytes are read with (possibly
 * overlapping) unaligned 8- and 4-byte loads, so a short key costs two
 * folds; longer keys take one fold per 16 bytes, chained. Each word is
 * xored with a secret word before it is multiplied: a product of zero (the
 * way to make a folded multiply forget its other input) needs a key word
 * equal to a secret word, which an attacker does not know.
 *
 * LIMITATIONS
 *
 * This is not a cryptographic MAC. It is built to make offline collision
 * search useless (the construction modern hash tables use with a random
 * seed, as Go's maps and Rust's default hashers do). An attacker who can
 * time many lookups of chosen keys against one long-lived map can in
 * principle learn something about its layout; the map bounds the damage
 * anyway (map.c: probe lengths are capped, and a shard whose probes grow
 * long is rebuilt with a fresh secret).
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A hash secret: four words, from the OS. */
struct tally__seed {
    uint64_t k[4];
};

/* Fills *s with fresh secret bytes: getrandom(), else /dev/urandom, else
 * (neither available, e.g. in a sandbox) a mix of clocks, addresses and a
 * process-wide counter, which still differs between maps and runs. Never
 * fails. */
void tally__seed_init(struct tally__seed *s);

#if defined(TALLY_TEST_HOOKS)
/* Tests only: while set (not NULL), tally__seed_init hands out copies of
 * *s instead of fresh secrets, so that a test can build keys that collide
 * under a known secret. Process-wide; set it between operations. */
void tally__seed_force(const struct tally__seed *s);
#endif

static inline uint64_t tally__fold(uint64_t a, uint64_t b)
{
    __extension__ typedef unsigned __int128 u128;
    u128 r = (u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t tally__read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t tally__read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Odd constants with well-spread bits, so that a secret of all zeros (it
 * cannot happen, but the code must not depend on that) still mixes. */
#define TALLY_HASH_C0 0x9e3779b97f4a7c15ull
#define TALLY_HASH_C1 0xd6e8feb86659fd93ull

static inline uint64_t tally__hash(const struct tally__seed *s,
                                   const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = s->k[0] ^ (uint64_t)len * TALLY_HASH_C0;
    uint64_t a, b;
    if (len <= 16) {
        if (len >= 8) {
            a = tally__read64(p);
            b = tally__read64(p + len - 8);
        } else if (len >= 4) {
            a = tally__read32(p);
            b = tally__read32(p + len - 4);
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) |
                p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t n = len;
        while (n > 16) {
            h = tally__fold(tally__read64(p) ^ s->k[1],
                            tally__read64(p + 8) ^ s->k[2] ^ h);
            p += 16;
            n -= 16;
        }
        /* The last 16 bytes of the key, overlapping what came before. */
        a = tally__read64(p + n - 16);
        b = tally__read64(p + n - 8);
    }
    return tally__fold(s->k[3] ^ TALLY_HASH_C1 ^ (uint64_t)len,
                       tally__fold(a ^ s->k[1], b ^ s->k[2] ^ h));
}

#endif /* TALLY_HASH_H */
