/*
 * hash.h - the 64-bit key hash used by tally_map.
 *
 * Keys are short byte strings (route names, user ids), so the hash is built
 * for them: at most two 64x64->128-bit multiplies for keys up to 16 bytes,
 * reading the key with (possibly overlapping) unaligned 8- and 4-byte loads
 * instead of a byte loop. Longer keys take one multiply per 16 bytes. The
 * "fold" (xor of the two halves of a 128-bit product) mixes every input bit
 * into every output bit; the result is good enough for open addressing with
 * a power-of-two table, and is not meant to resist chosen-key attacks.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TALLY_HASH_K0 0x9e3779b97f4a7c15ull
#define TALLY_HASH_K1 0xd6e8feb86659fd93ull
#define TALLY_HASH_K2 0xa0761d6478bd642full
#define TALLY_HASH_K3 0xe7037ed1a0b428dbull

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

static inline uint64_t tally__hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = TALLY_HASH_K0 ^ (uint64_t)len * TALLY_HASH_K1;
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
            h = tally__fold(tally__read64(p) ^ TALLY_HASH_K2,
                            tally__read64(p + 8) ^ h);
            p += 16;
            n -= 16;
        }
        /* The last 16 bytes of the key, overlapping what came before. */
        a = tally__read64(p + n - 16);
        b = tally__read64(p + n - 8);
    }
    return tally__fold(TALLY_HASH_K3 ^ (uint64_t)len,
                       tally__fold(a ^ TALLY_HASH_K2, b ^ h));
}

#endif /* TALLY_HASH_H */
