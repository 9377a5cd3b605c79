/* Byte-level BPE in the GPT-2 / Hugging Face layout: loading vocab.json and
 * merges.txt, exact GPT-2 encoding (pre-tokenizer of pretok.c, then merges
 * by rank within each pre-token, as GPT-2's encoder.py does), decoding. */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode.h"
#include "lmscale/json.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lms_byte_map_init(lms_byte_map *m) {
    int k = 0, extra = 0;
    int printable[256] = {0};
    for (int b = '!'; b <= '~'; b++) printable[b] = 1;
    for (int b = 0xA1; b <= 0xAC; b++) printable[b] = 1;
    for (int b = 0xAE; b <= 0xFF; b++) printable[b] = 1;
    for (int b = 0; b < 256; b++)
        if (printable[b]) {
            m->byte_cp[b] = (uint32_t)b;
            m->order[k++] = (unsigned char)b;
        }
    for (int b = 0; b < 256; b++)
        if (!printable[b]) {
            m->byte_cp[b] = 256u + (uint32_t)extra++;
            m->order[k++] = (unsigned char)b;
        }
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

int32_t lms_bpe_find(const lms_bpe *b, const unsigned char *s, size_t n) {
    size_t mask = b->str_cap - 1;
    for (size_t h = lms_hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        int32_t id = b->str_slot[h];
        if (id < 0) return -1;
        if (b->len[id] == n && memcmp(b->bytes + b->off[id], s, n) == 0) return id;
    }
}

static void merge_put(lms_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->mcap - 1;
    for (size_t h = lms_hash_u64(key) & mask;; h = (h + 1) & mask) {
        if (b->mrank[h] < 0) {
            b->mkey[h] = key;
            b->mrank[h] = rank;
            b->mnew[h] = merged;
            return;
        }
        if (b->mkey[h] == key) return; /* a repeated merge keeps its first rank */
    }
}

/* rank of merging (l, r); INT_MAX if they do not merge */
static inline int32_t merge_get(const lms_bpe *b, int32_t l, int32_t r, int32_t *merged) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    size_t mask = b->mcap - 1;
    for (size_t h = lms_hash_u64(key) & mask;; h = (h + 1) & mask) {
        if (b->mrank[h] < 0) return INT32_MAX;
        if (b->mkey[h] == key) {
            *merged = b->mnew[h];
            return b->mrank[h];
        }
    }
}

static void bpe_free(lms_bpe *b) {
    if (!b) return;
    free(b->off);
    free(b->len);
    free(b->bytes);
    free(b->str_slot);
    free(b->mkey);
    free(b->mrank);
    free(b->mnew);
    free(b);
}

/* Decodes a vocab.json / merges.txt token (UTF-8 of GPT-2's byte map) into
 * bytes; returns -1 and the offending code point if a character is not one
 * of the 256 byte characters. */
static long unmap_token(const int16_t *cp_byte, const unsigned char *s, size_t n, unsigned char *out,
                        uint32_t *bad) {
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = lms_utf8_next(s + i, n - i, &cp);
        if (cp >= 512 || cp_byte[cp] < 0) {
            *bad = cp;
            return -1;
        }
        out[k++] = (unsigned char)cp_byte[cp];
        i += l;
    }
    return (long)k;
}

static lms_status load_vocab(lms_bpe *b, const char *path, const int16_t *cp_byte) {
    unsigned char *text = NULL;
    size_t size;
    lms_json *root = NULL;
    lms_status st;
    LMS_TRY(lms_read_file(path, &text, &size));
    LMS_TRY(lms_json_parse((const char *)text, size, path, &root));
    if (root->type != LMS_JSON_OBJECT || root->count == 0) {
        st = lms_errorf(LMS_ERR_FORMAT, "%s: expected a JSON object mapping tokens to ids (a GPT-2 / "
                        "Hugging Face vocab.json); give the vocabulary file", path);
        goto fail;
    }
    if (root->count > (size_t)INT32_MAX / 2) {
        st = lms_errorf(LMS_ERR_FORMAT, "%s: %zu tokens is too many", path, root->count);
        goto fail;
    }
    b->n = (int)root->count;
    size_t total = 0;
    for (const lms_json *m = root->child; m; m = m->next) total += m->key_len;
    b->off = malloc(sizeof(uint32_t) * (size_t)b->n);
    b->len = calloc((size_t)b->n, sizeof(uint32_t));
    b->bytes = malloc(total + 1);
    b->str_cap = pow2_at_least(2 * (size_t)b->n);
    b->str_slot = malloc(sizeof(int32_t) * b->str_cap);
    char *seen = calloc((size_t)b->n, 1);
    if (!b->off || !b->len || !b->bytes || !b->str_slot || !seen) {
        free(seen);
        st = lms_errorf(LMS_ERR_OOM, "out of memory loading %s", path);
        goto fail;
    }
    memset(b->str_slot, 0xff, sizeof(int32_t) * b->str_cap);
    size_t at = 0, idx = 0;
    for (const lms_json *m = root->child; m; m = m->next, idx++) {
        double v = m->number;
        if (m->type != LMS_JSON_NUMBER || v != floor(v) || v < 0 || v >= b->n) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: token %zu \"%.*s\" has id %s%g: ids must be integers 0..%d "
                            "(each once); is this a vocab.json?", path, idx, (int)(m->key_len < 40 ? m->key_len : 40),
                            m->key, m->type == LMS_JSON_NUMBER ? "" : "(not a number) ",
                            m->type == LMS_JSON_NUMBER ? v : 0.0, b->n - 1);
            free(seen);
            goto fail;
        }
        int id = (int)v;
        if (seen[id]) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: id %d is given to two tokens (the second is \"%.*s\"): "
                            "every id must appear once", path, id, (int)(m->key_len < 40 ? m->key_len : 40), m->key);
            free(seen);
            goto fail;
        }
        seen[id] = 1;
        uint32_t bad = 0;
        long k = unmap_token(cp_byte, (const unsigned char *)m->key, m->key_len, b->bytes + at, &bad);
        if (k < 0) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: token \"%.*s\" (id %d) holds U+%04X, which is not one of "
                            "GPT-2's 256 byte characters: the file is not a byte-level BPE vocabulary", path,
                            (int)(m->key_len < 40 ? m->key_len : 40), m->key, id, bad);
            free(seen);
            goto fail;
        }
        if (lms_bpe_find(b, b->bytes + at, (size_t)k) >= 0) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: token \"%.*s\" (id %d) appears twice", path,
                            (int)(m->key_len < 40 ? m->key_len : 40), m->key, id);
            free(seen);
            goto fail;
        }
        b->off[id] = (uint32_t)at;
        b->len[id] = (uint32_t)k;
        at += (size_t)k;
        size_t mask = b->str_cap - 1, h = lms_hash_bytes(b->bytes + b->off[id], (size_t)k) & mask;
        while (b->str_slot[h] >= 0) h = (h + 1) & mask;
        b->str_slot[h] = id;
    }
    free(seen);
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        b->byte_id[c] = lms_bpe_find(b, &byte, 1);
        if (b->byte_id[c] < 0) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: byte 0x%02X has no token: a byte-level vocabulary needs all 256 "
                            "bytes", path, c);
            goto fail;
        }
    }
    st = LMS_OK;
fail:
    lms_json_free(root);
    free(text);
    return st;
}

static lms_status load_merges(lms_bpe *b, const char *path, const int16_t *cp_byte) {
    unsigned char *text = NULL, *tmp = NULL;
    size_t size;
    lms_status st;
    LMS_TRY(lms_read_file(path, &text, &size));
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
    b->mcap = pow2_at_least(2 * lines);
    b->mkey = malloc(sizeof(uint64_t) * b->mcap);
    b->mrank = malloc(sizeof(int32_t) * b->mcap);
    b->mnew = malloc(sizeof(int32_t) * b->mcap);
    tmp = malloc(size + 1);
    if (!b->mkey || !b->mrank || !b->mnew || !tmp) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory loading %s", path);
        goto fail;
    }
    memset(b->mrank, 0xff, sizeof(int32_t) * b->mcap);
    size_t pos = 0, lineno = 0;
    int rank = 0;
    while (pos < size) {
        size_t end = pos;
        while (end < size && text[end] != '\n') end++;
        lineno++;
        size_t n = end - pos;
        const unsigned char *s = text + pos;
        pos = end + 1;
        if (n && s[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (lineno == 1 && s[0] == '#') continue; /* "#version: 0.2" */
        const unsigned char *sp = memchr(s, ' ', n);
        if (!sp || sp == s || sp == s + n - 1 || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1))) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s:%zu: expected two tokens separated by one space, got \"%.*s\": "
                            "give a GPT-2 / Hugging Face merges.txt", path, lineno, (int)(n < 60 ? n : 60), s);
            goto fail;
        }
        int32_t ids[2];
        size_t merged_len = 0;
        const unsigned char *part[2] = {s, sp + 1};
        size_t plen[2] = {(size_t)(sp - s), (size_t)(s + n - sp - 1)};
        for (int k = 0; k < 2; k++) {
            uint32_t bad = 0;
            long l = unmap_token(cp_byte, part[k], plen[k], tmp + merged_len, &bad);
            if (l < 0) {
                st = lms_errorf(LMS_ERR_FORMAT, "%s:%zu: token \"%.*s\" holds U+%04X, not one of GPT-2's 256 byte "
                                "characters", path, lineno, (int)plen[k], part[k], bad);
                goto fail;
            }
            ids[k] = lms_bpe_find(b, tmp + merged_len, (size_t)l);
            if (ids[k] < 0) {
                st = lms_errorf(LMS_ERR_FORMAT, "%s:%zu: token \"%.*s\" is not in the vocabulary: are the vocab "
                                "and merges files from the same tokenizer?", path, lineno, (int)plen[k], part[k]);
                goto fail;
            }
            merged_len += (size_t)l;
        }
        int32_t merged = lms_bpe_find(b, tmp, merged_len);
        if (merged < 0) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s:%zu: the merge \"%.*s\" makes a token that is not in the "
                            "vocabulary: are the vocab and merges files from the same tokenizer?", path, lineno,
                            (int)(n < 60 ? n : 60), s);
            goto fail;
        }
        merge_put(b, ids[0], ids[1], rank++, merged);
    }
    b->nmerges = rank;
    st = LMS_OK;
fail:
    free(tmp);
    free(text);
    return st;
}

lms_status lms_tokenizer_load_bpe(lms_tokenizer *t, const char *vocab_json, const char *merges_txt) {
    lms_tokenizer_init_bytes(t);
    lms_byte_map bm;
    lms_byte_map_init(&bm);
    int16_t cp_byte[512];
    for (int i = 0; i < 512; i++) cp_byte[i] = -1;
    for (int c = 0; c < 256; c++) cp_byte[bm.byte_cp[c]] = (int16_t)c;
    lms_bpe *b = calloc(1, sizeof *b);
    if (!b) return lms_errorf(LMS_ERR_OOM, "out of memory loading %s", vocab_json);
    lms_status st;
    LMS_TRY(load_vocab(b, vocab_json, cp_byte));
    LMS_TRY(load_merges(b, merges_txt, cp_byte));
    t->kind = LMS_TOK_BPE;
    t->vocab_size = b->n;
    t->eot = lms_bpe_find(b, (const unsigned char *)LMS_EOT_STR, LMS_EOT_LEN);
    t->impl = b;
    return LMS_OK;
fail:
    bpe_free(b);
    return st;
}

void lms_tokenizer_free(lms_tokenizer *t) {
    if (!t) return;
    if (t->kind == LMS_TOK_BPE) bpe_free(t->impl);
    t->impl = NULL;
}

/* ---- encoding ---- */

/* Growing output array of ids. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec;

static int idvec_reserve(idvec *a, size_t extra) {
    if (a->n + extra <= a->cap) return 0;
    size_t c = a->cap ? a->cap : 1024;
    while (c < a->n + extra) c *= 2;
    int32_t *v = realloc(a->v, c * sizeof *v);
    if (!v) return -1;
    a->v = v;
    a->cap = c;
    return 0;
}

/* A cache of pre-token -> ids, local to one encode call (so encoding is
 * thread-safe); emptied when full. */
typedef struct {
    uint64_t *hash;
    uint32_t *key_off, *key_len, *ids_off, *ids_len; /* key_len == UINT32_MAX: empty */
    size_t cap, used;
    unsigned char *keys;
    size_t keys_n, keys_cap;
    int32_t *ids;
    size_t ids_n, ids_cap;
} word_cache;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_WORD 256

static int cache_init(word_cache *c) {
    memset(c, 0, sizeof *c);
    c->cap = CACHE_SLOTS;
    c->hash = malloc(sizeof(uint64_t) * c->cap);
    c->key_off = malloc(sizeof(uint32_t) * c->cap);
    c->key_len = malloc(sizeof(uint32_t) * c->cap);
    c->ids_off = malloc(sizeof(uint32_t) * c->cap);
    c->ids_len = malloc(sizeof(uint32_t) * c->cap);
    c->keys_cap = (size_t)c->cap * 8;
    c->keys = malloc(c->keys_cap);
    c->ids_cap = (size_t)c->cap * 4;
    c->ids = malloc(sizeof(int32_t) * c->ids_cap);
    if (!c->hash || !c->key_off || !c->key_len || !c->ids_off || !c->ids_len || !c->keys || !c->ids) return -1;
    memset(c->key_len, 0xff, sizeof(uint32_t) * c->cap);
    return 0;
}

static void cache_free(word_cache *c) {
    free(c->hash);
    free(c->key_off);
    free(c->key_len);
    free(c->ids_off);
    free(c->ids_len);
    free(c->keys);
    free(c->ids);
}

/* slot of s in the cache: found (key_len != UINT32_MAX) or the empty slot to fill */
static size_t cache_slot(const word_cache *c, const unsigned char *s, size_t n, uint64_t h) {
    size_t mask = c->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (c->key_len[i] == UINT32_MAX) return i;
        if (c->hash[i] == h && c->key_len[i] == n && memcmp(c->keys + c->key_off[i], s, n) == 0) return i;
    }
}

/* Merges the bytes of one pre-token by rank, as GPT-2's bpe(): repeatedly
 * the lowest-ranked adjacent pair, all its occurrences left to right.
 * sym/rank are scratch of n entries; returns the number of ids in sym. */
static size_t bpe_word(const lms_bpe *b, const unsigned char *s, size_t n, int32_t *sym, int32_t *rank,
                       int32_t *merged) {
    for (size_t i = 0; i < n; i++) sym[i] = b->byte_id[s[i]];
    size_t m = n;
    for (size_t i = 0; i + 1 < m; i++) rank[i] = merge_get(b, sym[i], sym[i + 1], &merged[i]);
    while (m > 1) {
        int32_t best = INT32_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) {
                best = rank[i];
                at = i;
            }
        if (best == INT32_MAX) break;
        int32_t L = sym[at], R = sym[at + 1], NEW = merged[at];
        size_t w = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == L && sym[i + 1] == R) {
                sym[w++] = NEW;
                i += 2;
            } else {
                sym[w++] = sym[i++];
            }
        }
        m = w;
        /* ranks change only next to a merged symbol; recomputing them all
         * keeps this simple and pre-tokens are short (and cached) */
        for (size_t i = 0; i + 1 < m; i++) rank[i] = merge_get(b, sym[i], sym[i + 1], &merged[i]);
    }
    return m;
}

/* The same merges for long pre-tokens in O(n log n): symbols in a linked
 * list, candidate pairs in a min-heap by (rank, position). Taking the
 * lowest rank and, within a rank, the leftmost position first is GPT-2's
 * "all occurrences of the best pair, left to right". Stale heap entries are
 * recognised by recomputing the pair's rank (ranks are unique per pair).
 * Returns the number of ids written to out (capacity n), -1 when out of
 * memory. */
typedef struct {
    int32_t rank, pos;
} rank_pos;

static void rp_push(rank_pos *h, size_t *hn, rank_pos x) {
    size_t i = (*hn)++;
    while (i > 0) {
        rank_pos p = h[(i - 1) / 2];
        if (p.rank < x.rank || (p.rank == x.rank && p.pos < x.pos)) break;
        h[i] = p;
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static rank_pos rp_pop(rank_pos *h, size_t *hn) {
    rank_pos top = h[0], last = h[--*hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *hn) break;
        if (c + 1 < *hn && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos)))
            c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos < h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    if (*hn) h[i] = last;
    return top;
}

static long bpe_long_word(const lms_bpe *b, const unsigned char *s, size_t n, int32_t *out) {
    int32_t *sym = malloc(sizeof(int32_t) * n * 3);
    rank_pos *heap = malloc(sizeof(rank_pos) * (2 * n + 2));
    if (!sym || !heap) {
        free(sym);
        free(heap);
        return -1;
    }
    int32_t *prev = sym + n, *next = sym + 2 * n, merged;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = b->byte_id[s[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = merge_get(b, sym[i], sym[i + 1], &merged);
        if (r != INT32_MAX) rp_push(heap, &hn, (rank_pos){r, (int32_t)i});
    }
    while (hn) {
        rank_pos top = rp_pop(heap, &hn);
        int32_t i = top.pos, j = next[i];
        if (sym[i] < 0 || j < 0 || merge_get(b, sym[i], sym[j], &merged) != top.rank) continue;
        sym[i] = merged;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        int32_t r;
        if (prev[i] >= 0 && (r = merge_get(b, sym[prev[i]], sym[i], &merged)) != INT32_MAX)
            rp_push(heap, &hn, (rank_pos){r, prev[i]});
        if (next[i] >= 0 && (r = merge_get(b, sym[i], sym[next[i]], &merged)) != INT32_MAX)
            rp_push(heap, &hn, (rank_pos){r, i});
    }
    long m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) out[m++] = sym[i];
    free(sym);
    free(heap);
    return m;
}

static lms_status encode_bpe(const lms_bpe *b, const unsigned char *text, size_t n, idvec *out,
                             word_cache *cache, int32_t **scratch, size_t *scratch_n) {
    size_t pos = 0;
    while (pos < n) {
        size_t len = lms_pretok_next(text + pos, n - pos);
        const unsigned char *w = text + pos;
        pos += len;
        if (len == 1) {
            if (idvec_reserve(out, 1)) goto oom;
            out->v[out->n++] = b->byte_id[w[0]];
            continue;
        }
        uint64_t h = 0;
        size_t slot = 0;
        if (len <= CACHE_MAX_WORD) {
            h = lms_hash_bytes(w, len);
            slot = cache_slot(cache, w, len, h);
            if (cache->key_len[slot] != UINT32_MAX) {
                uint32_t k = cache->ids_len[slot];
                if (idvec_reserve(out, k)) goto oom;
                memcpy(out->v + out->n, cache->ids + cache->ids_off[slot], k * sizeof(int32_t));
                out->n += k;
                continue;
            }
        }
        if (*scratch_n < len) {
            int32_t *s2 = realloc(*scratch, 3 * len * sizeof(int32_t));
            if (!s2) goto oom;
            *scratch = s2;
            *scratch_n = len;
        }
        int32_t *sym = *scratch;
        size_t m;
        if (len <= CACHE_MAX_WORD) {
            m = bpe_word(b, w, len, sym, sym + len, sym + 2 * len);
        } else {
            long lm = bpe_long_word(b, w, len, sym);
            if (lm < 0) goto oom;
            m = (size_t)lm;
        }
        if (idvec_reserve(out, m)) goto oom;
        memcpy(out->v + out->n, sym, m * sizeof(int32_t));
        out->n += m;
        if (len <= CACHE_MAX_WORD) {
            if (cache->used * 2 >= cache->cap || cache->keys_n + len > cache->keys_cap ||
                cache->ids_n + m > cache->ids_cap) {
                memset(cache->key_len, 0xff, sizeof(uint32_t) * cache->cap);
                cache->used = cache->keys_n = cache->ids_n = 0;
                slot = cache_slot(cache, w, len, h);
            }
            cache->hash[slot] = h;
            cache->key_off[slot] = (uint32_t)cache->keys_n;
            cache->key_len[slot] = (uint32_t)len;
            memcpy(cache->keys + cache->keys_n, w, len);
            cache->keys_n += len;
            cache->ids_off[slot] = (uint32_t)cache->ids_n;
            cache->ids_len[slot] = (uint32_t)m;
            memcpy(cache->ids + cache->ids_n, sym, m * sizeof(int32_t));
            cache->ids_n += m;
            cache->used++;
        }
    }
    return LMS_OK;
oom:
    return lms_errorf(LMS_ERR_OOM, "out of memory encoding %zu bytes", n);
}

static lms_status encode_span(const lms_tokenizer *t, const unsigned char *text, size_t n, idvec *out,
                              word_cache *cache, int32_t **scratch, size_t *scratch_n) {
    if (t->kind == LMS_TOK_BPE) return encode_bpe(t->impl, text, n, out, cache, scratch, scratch_n);
    if (idvec_reserve(out, n)) return lms_errorf(LMS_ERR_OOM, "out of memory encoding %zu bytes", n);
    for (size_t i = 0; i < n; i++) out->v[out->n++] = text[i];
    return LMS_OK;
}

lms_status lms_tokenizer_encode_opts(const lms_tokenizer *t, const unsigned char *text, size_t n,
                                     int allow_special, int32_t **ids, size_t *nids) {
    idvec out = {0};
    word_cache cache;
    int32_t *scratch = NULL;
    size_t scratch_n = 0;
    lms_status st = LMS_OK;
    memset(&cache, 0, sizeof cache);
    if (t->kind == LMS_TOK_BPE && cache_init(&cache)) goto oom;
    if (idvec_reserve(&out, t->kind == LMS_TOK_BPE ? n / 3 + 16 : n + 1)) goto oom;
    size_t pos = 0;
    while (pos < n) {
        size_t end = n;
        if (allow_special && t->eot >= 0) {
            const unsigned char *hit = memmem(text + pos, n - pos, LMS_EOT_STR, LMS_EOT_LEN);
            if (hit) end = (size_t)(hit - text);
        }
        LMS_TRY(encode_span(t, text + pos, end - pos, &out, &cache, &scratch, &scratch_n));
        pos = end;
        if (end < n) {
            if (idvec_reserve(&out, 1)) goto oom;
            out.v[out.n++] = t->eot;
            pos += LMS_EOT_LEN;
        }
    }
    cache_free(&cache);
    free(scratch);
    *ids = out.v ? out.v : malloc(sizeof(int32_t));
    *nids = out.n;
    return LMS_OK;
oom:
    st = lms_errorf(LMS_ERR_OOM, "out of memory encoding %zu bytes", n);
fail:
    cache_free(&cache);
    free(scratch);
    free(out.v);
    return st;
}

lms_status lms_tokenizer_encode(const lms_tokenizer *t, const unsigned char *text, size_t n, int32_t **ids,
                                size_t *nids) {
    return lms_tokenizer_encode_opts(t, text, n, 0, ids, nids);
}

size_t lms_tokenizer_decode(const lms_tokenizer *t, int32_t id, char *buf, size_t cap) {
    const char *s;
    size_t n;
    if (t->kind == LMS_TOK_BPE && id >= 0 && id < t->vocab_size) {
        const lms_bpe *b = t->impl;
        s = (const char *)b->bytes + b->off[id];
        n = b->len[id];
    } else if (t->kind == LMS_TOK_BYTES && id >= 0 && id < 256) {
        if (cap >= 1) buf[0] = (char)id;
        return 1;
    } else {
        s = id == t->eot ? LMS_EOT_STR : "<|unk|>";
        n = strlen(s);
    }
    memcpy(buf, s, n < cap ? n : cap);
    return n;
}
