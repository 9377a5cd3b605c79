/* Counter-based random numbers. A value is a pure function of
 * (seed, name, index): splitmix64 finalisers over a key and a counter.
 * This is what makes initialisation layout independent (DESIGN principle 3):
 * element i of tensor "h.3.attn.c_attn.weight" gets the same value whichever
 * rank or thread computes it. */
#include "lmscale/core.h"

#include <math.h>

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t lms_hash_str(const char *s) {
    uint64_t h = 0xCBF29CE484222325ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ULL;
    }
    return h;
}

uint64_t lms_rng_key(uint64_t seed, const char *name) {
    return mix64(mix64(seed + 0x9E3779B97F4A7C15ULL) ^ lms_hash_str(name));
}

uint64_t lms_rng_u64(uint64_t key, uint64_t index) {
    return mix64(key ^ mix64(index * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL));
}

float lms_rng_uniform(uint64_t key, uint64_t index) {
    return (float)(lms_rng_u64(key, index) >> 40) * (1.0f / 16777216.0f);
}

float lms_rng_normal(uint64_t key, uint64_t index) {
    uint64_t r = lms_rng_u64(key, index);
    /* u1 in (0,1], u2 in [0,1) */
    double u1 = ((double)(r >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(r & 0xFFFFFFFFu) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
