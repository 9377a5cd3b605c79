/* Internals of the byte-level BPE tokenizer shared by bpe.c (load, encode,
 * decode) and bpe_train.c (learning merges, saving vocab.json/merges.txt). */
#ifndef LMS_TOKENIZER_BPE_IMPL_H
#define LMS_TOKENIZER_BPE_IMPL_H

#include "lmscale/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define LMS_EOT_STR "<|endoftext|>"
#define LMS_EOT_LEN 13

/* GPT-2's bytes_to_unicode(): byte b is written in vocab.json/merges.txt as
 * the code point byte_cp[b]; order[i] is the byte GPT-2 lists i-th (the 188
 * printable bytes first, then the rest mapped to U+0100..). */
typedef struct {
    uint32_t byte_cp[256];
    unsigned char order[256];
} lms_byte_map;
void lms_byte_map_init(lms_byte_map *m);

/* 64-bit FNV-1a */
static inline uint64_t lms_hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}
static inline uint64_t lms_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

typedef struct {
    int n;                /* vocabulary size */
    uint32_t *off, *len;  /* token id -> its bytes in `bytes` */
    unsigned char *bytes;
    int32_t *str_slot;    /* open addressing over token bytes: id or -1 */
    size_t str_cap;       /* power of two */
    int32_t byte_id[256]; /* id of each single byte */
    /* merges: (left id << 32 | right id) -> rank and merged id */
    uint64_t *mkey;
    int32_t *mrank, *mnew;
    size_t mcap; /* power of two; empty slot: mrank == -1 */
    int nmerges;
} lms_bpe;

/* id of the token with these bytes, -1 if none */
int32_t lms_bpe_find(const lms_bpe *b, const unsigned char *s, size_t n);

#endif
