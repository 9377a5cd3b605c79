/* Learning a byte-level BPE vocabulary. The text is cut into GPT-2
 * pre-tokens (pretok.c) and each distinct pre-token is counted once; then
 * merges are learned on the distinct words weighted by their counts: the most
 * frequent adjacent pair (ties: the smaller ids) becomes a new token, and
 * only the words that contain it are rewritten, updating the pair counts
 * around each occurrence. A max-heap with lazy deletion finds the next
 * pair, so a merge costs the size of the words it touches, not the corpus.
 * Output: vocab.json + merges.txt in the GPT-2 / Hugging Face layout. */
#define _GNU_SOURCE /* memmem */
#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode.h"
#include "lmscale/json.h"
#include "lmscale/obs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- distinct words and their counts ---- */

typedef struct {
    unsigned char *bytes; /* arena of word bytes */
    size_t nbytes, cap_bytes;
    uint32_t *off, *len;
    int64_t *count;
    size_t n, cap;
    int32_t *slot; /* open addressing: word index or -1 */
    size_t slot_cap;
} word_table;

static int words_grow_slots(word_table *w) {
    size_t cap = w->slot_cap ? w->slot_cap * 2 : 1 << 16;
    int32_t *s = malloc(sizeof(int32_t) * cap);
    if (!s) return -1;
    memset(s, 0xff, sizeof(int32_t) * cap);
    for (size_t i = 0; i < w->n; i++) {
        size_t h = lms_hash_bytes(w->bytes + w->off[i], w->len[i]) & (cap - 1);
        while (s[h] >= 0) h = (h + 1) & (cap - 1);
        s[h] = (int32_t)i;
    }
    free(w->slot);
    w->slot = s;
    w->slot_cap = cap;
    return 0;
}

static int words_add(word_table *w, const unsigned char *s, size_t n) {
    if (2 * (w->n + 1) > w->slot_cap && words_grow_slots(w)) return -1;
    size_t mask = w->slot_cap - 1, h = lms_hash_bytes(s, n) & mask;
    for (; w->slot[h] >= 0; h = (h + 1) & mask) {
        int32_t i = w->slot[h];
        if (w->len[i] == n && memcmp(w->bytes + w->off[i], s, n) == 0) {
            w->count[i]++;
            return 0;
        }
    }
    if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 4096;
        uint32_t *o = realloc(w->off, c * sizeof *o), *l = realloc(w->len, c * sizeof *l);
        if (o) w->off = o;
        if (l) w->len = l;
        int64_t *k = realloc(w->count, c * sizeof *k);
        if (k) w->count = k;
        if (!o || !l || !k) return -1;
        w->cap = c;
    }
    if (w->nbytes + n > w->cap_bytes) {
        size_t c = w->cap_bytes ? w->cap_bytes * 2 : 1 << 20;
        while (c < w->nbytes + n) c *= 2;
        unsigned char *b = realloc(w->bytes, c);
        if (!b) return -1;
        w->bytes = b;
        w->cap_bytes = c;
    }
    if (w->nbytes + n > UINT32_MAX) return -1;
    memcpy(w->bytes + w->nbytes, s, n);
    w->off[w->n] = (uint32_t)w->nbytes;
    w->len[w->n] = (uint32_t)n;
    w->count[w->n] = 1;
    w->nbytes += n;
    w->slot[h] = (int32_t)w->n++;
    return 0;
}

static void words_free(word_table *w) {
    free(w->bytes);
    free(w->off);
    free(w->len);
    free(w->count);
    free(w->slot);
}

static int count_text(word_table *w, const unsigned char *s, size_t n, const char *special) {
    size_t slen = special ? strlen(special) : 0;
    size_t pos = 0;
    while (pos < n) {
        size_t end = n;
        if (slen) {
            const unsigned char *hit = memmem(s + pos, n - pos, special, slen);
            if (hit) end = (size_t)(hit - s);
        }
        while (pos < end) {
            size_t l = lms_pretok_next(s + pos, end - pos);
            if (words_add(w, s + pos, l)) return -1;
            pos += l;
        }
        if (end < n) pos += slen;
    }
    return 0;
}

/* ---- pairs ---- */

typedef struct {
    int32_t *v;
    uint32_t n, cap;
} i32vec;

static int vec_push(i32vec *a, int32_t x) {
    if (a->n == a->cap) {
        uint32_t c = a->cap ? a->cap * 2 : 4;
        int32_t *v = realloc(a->v, c * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = c;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct {
    int64_t count;
    int32_t pair; /* index into the pair arrays */
} heap_item;

typedef struct {
    /* pair map: key (left << 32 | right) -> index */
    uint64_t *key_of; /* by index */
    int64_t *count;   /* by index */
    i32vec *words;    /* by index: words that contain (or contained) the pair */
    size_t n, cap;
    int32_t *slot;
    size_t slot_cap;
    heap_item *heap;
    size_t hn, hcap;
} pair_table;

static int pairs_index(pair_table *p, int32_t l, int32_t r, int32_t *out) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    if (2 * (p->n + 1) > p->slot_cap) {
        size_t cap = p->slot_cap ? p->slot_cap * 2 : 1 << 16;
        int32_t *s = malloc(sizeof(int32_t) * cap);
        if (!s) return -1;
        memset(s, 0xff, sizeof(int32_t) * cap);
        for (size_t i = 0; i < p->n; i++) {
            size_t h = lms_hash_u64(p->key_of[i]) & (cap - 1);
            while (s[h] >= 0) h = (h + 1) & (cap - 1);
            s[h] = (int32_t)i;
        }
        free(p->slot);
        p->slot = s;
        p->slot_cap = cap;
    }
    size_t mask = p->slot_cap - 1, h = lms_hash_u64(key) & mask;
    for (; p->slot[h] >= 0; h = (h + 1) & mask)
        if (p->key_of[p->slot[h]] == key) {
            *out = p->slot[h];
            return 0;
        }
    if (p->n == p->cap) {
        size_t c = p->cap ? p->cap * 2 : 1 << 14;
        uint64_t *k = realloc(p->key_of, c * sizeof *k);
        if (k) p->key_of = k;
        int64_t *n = realloc(p->count, c * sizeof *n);
        if (n) p->count = n;
        i32vec *w = realloc(p->words, c * sizeof *w);
        if (w) p->words = w;
        if (!k || !n || !w) return -1;
        p->cap = c;
    }
    p->key_of[p->n] = key;
    p->count[p->n] = 0;
    memset(&p->words[p->n], 0, sizeof(i32vec));
    p->slot[h] = (int32_t)p->n;
    *out = (int32_t)p->n++;
    return 0;
}

/* a before b in the heap: more frequent, then smaller key */
static int heap_before(const pair_table *p, heap_item a, heap_item b) {
    if (a.count != b.count) return a.count > b.count;
    return p->key_of[a.pair] < p->key_of[b.pair];
}

static int heap_push(pair_table *p, int32_t pair) {
    if (p->hn == p->hcap) {
        size_t c = p->hcap ? p->hcap * 2 : 1 << 14;
        heap_item *h = realloc(p->heap, c * sizeof *h);
        if (!h) return -1;
        p->heap = h;
        p->hcap = c;
    }
    heap_item it = {p->count[pair], pair};
    size_t i = p->hn++;
    while (i > 0 && heap_before(p, it, p->heap[(i - 1) / 2])) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = it;
    return 0;
}

static heap_item heap_pop(pair_table *p) {
    heap_item top = p->heap[0], last = p->heap[--p->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= p->hn) break;
        if (c + 1 < p->hn && heap_before(p, p->heap[c + 1], p->heap[c])) c++;
        if (!heap_before(p, p->heap[c], last)) break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (p->hn) p->heap[i] = last;
    return top;
}

static void pairs_free(pair_table *p) {
    for (size_t i = 0; i < p->n; i++) free(p->words[i].v);
    free(p->key_of);
    free(p->count);
    free(p->words);
    free(p->slot);
    free(p->heap);
}

/* ---- training ---- */

typedef struct {
    word_table words;
    int32_t **sym; /* per word: its current symbols */
    uint32_t *nsym;
    pair_table pairs;
    int32_t *stamp; /* per word / per pair: last merge that touched it */
    int32_t *pstamp;
    size_t pstamp_cap;
    int32_t *touched;
    size_t ntouched, touched_cap;
    /* learned tokens: bytes of each id, and the merges */
    unsigned char **tok;
    uint32_t *tok_len;
    int32_t (*merges)[2];
    int nmerges;
} trainer;

/* count += d for pair (l, r) seen in word w; remembers pairs that grew */
static int pair_add(trainer *t, int32_t l, int32_t r, int64_t d, int32_t w, int32_t merge_no) {
    int32_t idx;
    if (pairs_index(&t->pairs, l, r, &idx)) return -1;
    t->pairs.count[idx] += d;
    if (d > 0) {
        if (vec_push(&t->pairs.words[idx], w)) return -1;
        if ((size_t)idx >= t->pstamp_cap) {
            size_t c = t->pstamp_cap ? t->pstamp_cap : 1 << 14;
            while (c <= (size_t)idx) c *= 2;
            int32_t *s = realloc(t->pstamp, c * sizeof *s);
            if (!s) return -1;
            for (size_t i = t->pstamp_cap; i < c; i++) s[i] = -1;
            t->pstamp = s;
            t->pstamp_cap = c;
        }
        if (t->pstamp[idx] != merge_no) {
            t->pstamp[idx] = merge_no;
            if (t->ntouched == t->touched_cap) {
                size_t c = t->touched_cap ? t->touched_cap * 2 : 1024;
                int32_t *v = realloc(t->touched, c * sizeof *v);
                if (!v) return -1;
                t->touched = v;
                t->touched_cap = c;
            }
            t->touched[t->ntouched++] = idx;
        }
    }
    return 0;
}

static void trainer_free(trainer *t, int ntok) {
    if (t->sym)
        for (size_t i = 0; i < t->words.n; i++) free(t->sym[i]);
    free(t->sym);
    free(t->nsym);
    words_free(&t->words);
    pairs_free(&t->pairs);
    free(t->stamp);
    free(t->pstamp);
    free(t->touched);
    if (t->tok)
        for (int i = 0; i < ntok; i++) free(t->tok[i]);
    free(t->tok);
    free(t->tok_len);
    free(t->merges);
}

/* merge pair index pi into the new token id nid */
static int apply_merge(trainer *t, int32_t pi, int32_t nid, int32_t merge_no) {
    int32_t A = (int32_t)(t->pairs.key_of[pi] >> 32), B = (int32_t)(uint32_t)t->pairs.key_of[pi];
    i32vec ws = t->pairs.words[pi];
    memset(&t->pairs.words[pi], 0, sizeof(i32vec)); /* the pair is gone from every word */
    t->ntouched = 0;
    for (uint32_t k = 0; k < ws.n; k++) {
        int32_t w = ws.v[k];
        if (t->stamp[w] == merge_no) continue;
        t->stamp[w] = merge_no;
        int32_t *s = t->sym[w];
        uint32_t n = t->nsym[w], out = 0, r = 0;
        int64_t c = t->words.count[w];
        while (r < n) {
            if (r + 1 < n && s[r] == A && s[r + 1] == B) {
                if (out > 0 && (pair_add(t, s[out - 1], A, -c, w, merge_no) ||
                                pair_add(t, s[out - 1], nid, c, w, merge_no)))
                    goto oom;
                if (r + 2 < n && (pair_add(t, B, s[r + 2], -c, w, merge_no) ||
                                  pair_add(t, nid, s[r + 2], c, w, merge_no)))
                    goto oom;
                s[out++] = nid;
                r += 2;
            } else {
                s[out++] = s[r++];
            }
        }
        t->nsym[w] = out;
    }
    free(ws.v);
    t->pairs.count[pi] = 0;
    for (size_t i = 0; i < t->ntouched; i++)
        if (heap_push(&t->pairs, t->touched[i])) return -1;
    return 0;
oom:
    free(ws.v);
    return -1;
}

static lms_status write_outputs(const trainer *t, int ntok, const char *special, const char *out_dir) {
    lms_byte_map bm;
    lms_byte_map_init(&bm);
    size_t plen = strlen(out_dir) + 32;
    char *vpath = malloc(plen), *mpath = malloc(plen);
    lms_atomic_file vf = {0}, mf = {0};
    lms_status st = LMS_OK;
    char *enc = NULL;
    if (!vpath || !mpath) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    snprintf(vpath, plen, "%s/vocab.json", out_dir);
    snprintf(mpath, plen, "%s/merges.txt", out_dir);
    size_t maxlen = 16;
    for (int i = 0; i < ntok; i++)
        if (t->tok_len[i] > maxlen) maxlen = t->tok_len[i];
    enc = malloc(2 * maxlen + 1);
    if (!enc) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    LMS_TRY(lms_atomic_open(&vf, vpath));
    fputs("{", vf.f);
    for (int i = 0; i < ntok; i++) {
        size_t k = 0;
        for (uint32_t j = 0; j < t->tok_len[i]; j++) {
            uint32_t cp = bm.byte_cp[t->tok[i][j]];
            if (cp < 0x80) {
                enc[k++] = (char)cp;
            } else {
                enc[k++] = (char)(0xC0 | cp >> 6);
                enc[k++] = (char)(0x80 | (cp & 63));
            }
        }
        fputs(i ? ",\n" : "\n", vf.f);
        lms_json_write_string(vf.f, enc, k);
        fprintf(vf.f, ": %d", i);
    }
    if (special) {
        fputs(",\n", vf.f);
        lms_json_write_string(vf.f, special, strlen(special));
        fprintf(vf.f, ": %d", ntok);
    }
    fputs("\n}\n", vf.f);
    if (ferror(vf.f)) {
        st = lms_errorf(LMS_ERR_IO, "cannot write %s (disk full?)", vpath);
        goto fail;
    }
    LMS_TRY(lms_atomic_open(&mf, mpath));
    fputs("#version: 0.2\n", mf.f);
    for (int m = 0; m < t->nmerges; m++) {
        for (int side = 0; side < 2; side++) {
            int32_t id = t->merges[m][side];
            for (uint32_t j = 0; j < t->tok_len[id]; j++) {
                uint32_t cp = bm.byte_cp[t->tok[id][j]];
                if (cp < 0x80)
                    fputc((int)cp, mf.f);
                else {
                    fputc(0xC0 | (int)(cp >> 6), mf.f);
                    fputc(0x80 | (int)(cp & 63), mf.f);
                }
            }
            fputc(side ? '\n' : ' ', mf.f);
        }
    }
    if (ferror(mf.f)) {
        st = lms_errorf(LMS_ERR_IO, "cannot write %s (disk full?)", mpath);
        goto fail;
    }
    LMS_TRY(lms_atomic_commit(&vf));
    LMS_TRY(lms_atomic_commit(&mf));
fail:
    if (st != LMS_OK) {
        if (vf.f) lms_atomic_abort(&vf);
        if (mf.f) lms_atomic_abort(&mf);
    }
    free(enc);
    free(vpath);
    free(mpath);
    return st;
}

lms_status lms_bpe_train(const char *const *inputs, int ninputs, const lms_bpe_train_opts *o,
                         const char *out_dir, int *final_size) {
    trainer t;
    memset(&t, 0, sizeof t);
    lms_status st = LMS_OK;
    int nspecial = o->special ? 1 : 0, ntok = 0;
    int target = o->vocab_size - nspecial; /* tokens before the special one */
    if (ninputs < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "no input files: give --input FILE (one or more)");
    if (o->vocab_size < 256 + nspecial || o->vocab_size > (1 << 30))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--vocab-size %d is out of range: it must be at least 256 "
                          "(the bytes)%s", o->vocab_size, nspecial ? " + 1 (the special token)" : "");
    if (o->special && !*o->special)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--special is empty: give the special token, e.g. <|endoftext|>");
    LMS_CHECK(lms_mkdirs(out_dir));
    double t0 = lms_now_s(), read_mb = 0;
    lms_progress prog;
    lms_progress_begin(&prog, "tokenizer train (pre-tokenizing)", ninputs, "files", o->verbose);
    for (int f = 0; f < ninputs; f++) {
        unsigned char *buf;
        size_t size;
        LMS_TRY(lms_read_file(inputs[f], &buf, &size));
        int bad = count_text(&t.words, buf, size, o->special);
        free(buf);
        if (bad) goto oom;
        read_mb += (double)size / 1e6;
        lms_progress_update(&prog, f + 1);
    }
    lms_progress_end(&prog);
    size_t nw = t.words.n;
    if (o->verbose)
        fprintf(stderr, "bpe train: %zu distinct pre-tokens in %.1f MB (%.2f s)\n", nw, read_mb, lms_now_s() - t0);
    /* tokens 0..255: the bytes in GPT-2's order */
    lms_byte_map bm;
    lms_byte_map_init(&bm);
    int32_t byte_id[256];
    t.tok = calloc((size_t)target, sizeof *t.tok);
    t.tok_len = calloc((size_t)target, sizeof *t.tok_len);
    t.merges = malloc(sizeof *t.merges * (size_t)(target - 256 + 1));
    t.sym = calloc(nw ? nw : 1, sizeof *t.sym);
    t.nsym = calloc(nw ? nw : 1, sizeof *t.nsym);
    t.stamp = malloc(sizeof(int32_t) * (nw ? nw : 1));
    if (!t.tok || !t.tok_len || !t.merges || !t.sym || !t.nsym || !t.stamp) goto oom;
    for (int i = 0; i < 256; i++) {
        unsigned char b = bm.order[i];
        byte_id[b] = i;
        t.tok[i] = malloc(1);
        if (!t.tok[i]) goto oom;
        t.tok[i][0] = b;
        t.tok_len[i] = 1;
        ntok++;
    }
    for (size_t w = 0; w < nw; w++) {
        uint32_t n = t.words.len[w];
        const unsigned char *s = t.words.bytes + t.words.off[w];
        t.stamp[w] = -1;
        t.sym[w] = malloc(sizeof(int32_t) * (n ? n : 1));
        if (!t.sym[w]) goto oom;
        t.nsym[w] = n;
        for (uint32_t i = 0; i < n; i++) t.sym[w][i] = byte_id[s[i]];
        for (uint32_t i = 0; i + 1 < n; i++)
            if (pair_add(&t, t.sym[w][i], t.sym[w][i + 1], t.words.count[w], (int32_t)w, -2)) goto oom;
    }
    for (size_t i = 0; i < t.pairs.n; i++)
        if (heap_push(&t.pairs, (int32_t)i)) goto oom;
    lms_progress_begin(&prog, "tokenizer train (merges)", target - ntok, "merges", o->verbose);
    while (ntok < target && t.pairs.hn > 0) {
        heap_item top = heap_pop(&t.pairs);
        int64_t now = t.pairs.count[top.pair];
        if (now != top.count) { /* stale entry: re-queue with the current count */
            if (now > 0 && heap_push(&t.pairs, top.pair)) goto oom;
            continue;
        }
        if (now <= 0) continue;
        int32_t A = (int32_t)(t.pairs.key_of[top.pair] >> 32), B = (int32_t)(uint32_t)t.pairs.key_of[top.pair];
        uint32_t la = t.tok_len[A], lb = t.tok_len[B];
        t.tok[ntok] = malloc(la + lb);
        if (!t.tok[ntok]) goto oom;
        memcpy(t.tok[ntok], t.tok[A], la);
        memcpy(t.tok[ntok] + la, t.tok[B], lb);
        t.tok_len[ntok] = la + lb;
        t.merges[t.nmerges][0] = A;
        t.merges[t.nmerges][1] = B;
        if (apply_merge(&t, top.pair, ntok, t.nmerges)) goto oom;
        t.nmerges++;
        ntok++;
        lms_progress_update(&prog, t.nmerges); /* a clock read; prints at most every interval */
    }
    lms_progress_end(&prog);
    LMS_TRY(write_outputs(&t, ntok, o->special, out_dir));
    if (o->verbose)
        fprintf(stderr, "bpe train: vocabulary of %d tokens in %.2f s\n", ntok + nspecial, lms_now_s() - t0);
    if (final_size) *final_size = ntok + nspecial;
    trainer_free(&t, ntok);
    return LMS_OK;
oom:
    st = lms_errorf(LMS_ERR_OOM, "out of memory learning the BPE vocabulary");
fail:
    lms_progress_abort(&prog);
    trainer_free(&t, ntok);
    return st;
}
