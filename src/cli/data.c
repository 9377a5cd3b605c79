/* `lmscale data prepare`: text or JSON Lines -> lmscale token shards
 * (train.bin, val.bin; docs/formats.md). Streams its input: text files are
 * tokenized in ~1 MB pieces cut where the GPT-2 pre-tokenizer would cut
 * anyway (text_file), JSONL one line at a time. Pieces (and the document
 * separators) are queued; a full queue is encoded in parallel over cores
 * (OpenMP) and appended in order, so the output does not depend on the
 * thread count. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "lmscale/json.h"
#include "lmscale/obs.h"
#include "lmscale/tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIECE (1u << 20)

/* A queued piece of text (or, with n == 0 and eot set, a document
 * separator) bound for split s. */
typedef struct {
    int s, eot;
    unsigned char *text;
    size_t n;
    int32_t *ids;
    size_t nids;
    lms_status st;
} piece;

#define QUEUE_BYTES (16u << 20) /* encode in parallel once this much text is queued */

typedef struct {
    piece *q;
    int nq, cap;
    size_t queued;
    const lms_tokenizer *tok;
    lms_shard_writer w[2]; /* train, val */
    int open[2];
    float val_fraction;
    int count_only;    /* first pass of a token split: count ids, write nothing */
    uint64_t counted;  /* ids counted by that pass */
    uint64_t split_at; /* token split: ids from here on go to val.bin (UINT64_MAX: split by document) */
    uint64_t key, doc, docs[2], bytes;
    lms_progress prog; /* over the input bytes, in MB */
} prep;

/* Split of document d: val when its hash falls under the fraction. */
static int split_of(const prep *p) {
    return p->split_at == UINT64_MAX && p->val_fraction > 0 && lms_rng_uniform(p->key, p->doc) < p->val_fraction;
}

/* Appends ids to split s; under a token split, the ids from split_at on go
 * to val.bin; in a counting pass, nothing is written. */
static lms_status append(prep *p, int s, const int32_t *ids, size_t n) {
    if (p->count_only) {
        p->counted += n;
        return LMS_OK;
    }
    if (s == 0 && p->split_at != UINT64_MAX && p->w[0].n + n > p->split_at) {
        size_t k = p->w[0].n >= p->split_at ? 0 : (size_t)(p->split_at - p->w[0].n);
        if (k) LMS_CHECK(lms_shard_writer_append(&p->w[0], ids, k));
        return lms_shard_writer_append(&p->w[1], ids + k, n - k);
    }
    return lms_shard_writer_append(&p->w[s], ids, n);
}

/* Encodes the queue in parallel, then appends every piece in order. */
static lms_status flush(prep *p) {
    const int nq = p->nq;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < nq; i++) {
        piece *q = &p->q[i];
        q->st = q->eot ? LMS_OK : lms_tokenizer_encode(p->tok, q->text, q->n, &q->ids, &q->nids);
    }
    lms_status st = LMS_OK;
    for (int i = 0; i < nq; i++) {
        piece *q = &p->q[i];
        if (st == LMS_OK) st = q->st;
        if (st == LMS_OK) {
            int32_t eot = p->tok->eot;
            st = q->eot ? append(p, q->s, &eot, 1) : append(p, q->s, q->ids, q->nids);
        }
        p->bytes += q->n;
        free(q->text);
        free(q->ids);
    }
    p->nq = 0;
    p->queued = 0;
    lms_progress_update(&p->prog, (double)p->bytes / 1e6);
    return st;
}

static lms_status enqueue(prep *p, int s, int eot, const unsigned char *text, size_t n) {
    if (p->nq == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        piece *q = realloc(p->q, sizeof *q * (size_t)cap);
        if (!q) return lms_errorf(LMS_ERR_OOM, "out of memory queueing text");
        p->q = q;
        p->cap = cap;
    }
    piece *q = &p->q[p->nq];
    memset(q, 0, sizeof *q);
    q->s = s;
    q->eot = eot;
    if (n) {
        q->text = malloc(n);
        if (!q->text) return lms_errorf(LMS_ERR_OOM, "out of memory queueing text");
        memcpy(q->text, text, n);
        q->n = n;
    }
    p->nq++;
    p->queued += n;
    return p->queued >= QUEUE_BYTES ? flush(p) : LMS_OK;
}

static lms_status emit(prep *p, int s, const unsigned char *text, size_t n) { return enqueue(p, s, 0, text, n); }

static lms_status begin_doc(prep *p, int *s) {
    *s = split_of(p);
    p->doc++;
    p->docs[*s]++;
    return enqueue(p, *s, 1, NULL, 0);
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* One text file, one document, in pieces. BPE pieces are cut just before a
 * ' ' that an ASCII letter follows: GPT-2's pre-tokenizer always starts a
 * pre-token there (" ?\p{L}+" takes the space; a whitespace run before it
 * stops short of it by "\s+(?!\S)"), so the ids equal encoding the whole
 * file at once. The byte tokenizer may cut anywhere. */
static lms_status text_file(prep *p, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return lms_errorf(LMS_ERR_IO, "cannot open input '%s' (check the path)", path);
    size_t cap = 2 * PIECE, len = 0, scanned = 0; /* bytes before `scanned` hold no cut */
    unsigned char *buf = malloc(cap);
    lms_status st = buf ? LMS_OK : lms_errorf(LMS_ERR_OOM, "out of memory");
    int s = 0;
    if (st == LMS_OK) st = begin_doc(p, &s);
    int eof = 0;
    while (st == LMS_OK && (!eof || len)) {
        if (!eof) {
            if (cap - len < PIECE) {
                unsigned char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    st = lms_errorf(LMS_ERR_OOM, "out of memory reading '%s'", path);
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            size_t got = fread(buf + len, 1, PIECE, f);
            if (got < PIECE) {
                if (ferror(f)) {
                    st = lms_errorf(LMS_ERR_IO, "cannot read input '%s'", path);
                    break;
                }
                eof = 1;
            }
            len += got;
        }
        size_t cut = len;
        if (!eof && p->tok->kind != LMS_TOK_BYTES) {
            cut = 0;
            for (size_t i = len - 1; i > scanned; i--) {
                unsigned char c = buf[i];
                if (buf[i - 1] == ' ' && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
                    cut = i - 1;
                    break;
                }
            }
            if (cut == 0) { /* no safe cut yet: read more */
                scanned = len - 1;
                continue;
            }
        }
        scanned = 0;
        st = emit(p, s, buf, cut);
        memmove(buf, buf + cut, len - cut);
        len -= cut;
    }
    free(buf);
    fclose(f);
    return st == LMS_OK ? LMS_OK : lms_error_context(st, "while preparing '%s'", path);
}

/* JSON Lines: each non-empty line is an object; its `field` string is a
 * document. */
static lms_status jsonl_file(prep *p, const char *path, const char *field) {
    FILE *f = fopen(path, "rb");
    if (!f) return lms_errorf(LMS_ERR_IO, "cannot open input '%s' (check the path)", path);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    long lineno = 0;
    lms_status st = LMS_OK;
    while (st == LMS_OK && (n = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        size_t k = (size_t)n;
        while (k && is_space((unsigned char)line[k - 1])) k--;
        if (k == 0) continue;
        char what[512];
        snprintf(what, sizeof what, "%s line %ld", path, lineno);
        lms_json *j = NULL;
        st = lms_json_parse(line, k, what, &j);
        if (st != LMS_OK) break;
        const lms_json *v = j->type == LMS_JSON_OBJECT ? lms_json_get(j, field) : NULL;
        if (!v || v->type != LMS_JSON_STRING) {
            st = lms_errorf(LMS_ERR_FORMAT, "'%s' line %ld has no string field \"%s\" (choose the field with "
                            "--jsonl-field)", path, lineno, field);
        } else {
            int s;
            st = begin_doc(p, &s);
            if (st == LMS_OK) st = emit(p, s, (const unsigned char *)v->str, v->str_len);
        }
        lms_json_free(j);
    }
    free(line);
    fclose(f);
    return st;
}

static int cmd_prepare(int argc, char **argv) {
    const char **inputs = NULL;
    char **rest = NULL;
    int ninputs = 0, nrest = 0;
    const char *field = NULL, *vocab = NULL, *merges = NULL, *outdir = NULL, *input = NULL;
    float val_fraction = 0;
    uint64_t seed = 1337;
    const cli_opt opts[] = {
        {"input", CLI_STR, &input, "FILE...", "input files (repeatable; comma lists); each file is a document"},
        {"jsonl-field", CLI_STR, &field, "NAME", "inputs are JSON Lines; each line's NAME string is a document"},
        {"vocab", CLI_STR, &vocab, "FILE", "GPT-2 vocab.json (with --merges; default: the byte tokenizer)"},
        {"merges", CLI_STR, &merges, "FILE", "GPT-2 merges.txt"},
        {"output-dir", CLI_STR, &outdir, "DIR", "where train.bin (and val.bin) are written (created if missing)"},
        {"val-fraction", CLI_FLOAT, &val_fraction, "F", "fraction for val.bin (0 = none): of the documents, chosen by seed; of the tokens (the last ones) when the input is one text file"},
        {"seed", CLI_U64, &seed, "S", "seed of the train/val document split"},
    };
    cli_spec spec = {"data prepare", "lmscale data prepare: tokenize text or JSON Lines into lmscale token shards.",
                     "lmscale data prepare --input FILE... --output-dir DIR [--jsonl-field text] [--vocab F --merges F] "
                     "[--val-fraction F]", opts, (int)(sizeof opts / sizeof opts[0]),
                     "Every document starts with <|endoftext|>. Ids are uint16 when the vocabulary fits, else uint32.\n"
                     "The shards' header records the tokenizer; a BPE tokenizer's vocab.json and merges.txt are copied\n"
                     "into DIR, where train, eval and resume find them."};
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    prep p;
    memset(&p, 0, sizeof p);
    int help = 0;
    lms_status st = cli_take_list(argc, argv, "input", &inputs, &ninputs, &rest, &nrest);
    if (st != LMS_OK) return cli_fail("data prepare", st);
    LMS_TRY(cli_parse(&spec, nrest, rest, &help));
    if (help) {
        cli_print_help(&spec, stdout);
        goto fail;
    }
    if (ninputs == 0 || !outdir) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--input FILE... and --output-dir DIR are required");
        goto fail;
    }
    if (!(val_fraction >= 0 && val_fraction < 1)) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--val-fraction must be in [0, 1), got %g", val_fraction);
        goto fail;
    }
    LMS_TRY(cli_load_tokenizer(vocab, merges, &tok));
    if (tok.eot < 0) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "the tokenizer has no <|endoftext|> token to separate documents");
        goto fail;
    }
    p.tok = &tok;
    p.val_fraction = val_fraction;
    p.split_at = UINT64_MAX;
    /* One text file is one document: split its tokens instead, the last
     * fraction to val.bin (as nanoGPT's and llm.c's Shakespeare scripts do).
     * A first pass counts them. */
    const int by_tokens = val_fraction > 0 && ninputs == 1 && !field;
    p.key = lms_rng_key(seed, "data-prepare-split");
    double total_mb = 0;
    for (int i = 0; i < ninputs; i++) {
        struct stat sb;
        if (stat(inputs[i], &sb) == 0) total_mb += (double)sb.st_size / 1e6;
    }
    int width = tok.vocab_size <= 65536 ? 2 : 4;
    char path[2][4096];
    /* every input must be readable before anything is created */
    for (int i = 0; i < ninputs; i++) {
        FILE *f = fopen(inputs[i], "rb");
        if (!f) {
            st = lms_errorf(LMS_ERR_IO, "cannot open input '%s': %s (check the path)", inputs[i], strerror(errno));
            goto fail;
        }
        fclose(f);
    }
    LMS_TRY(lms_mkdirs(outdir));
    for (int s = 0; s < 1 + (val_fraction > 0); s++) {
        snprintf(path[s], sizeof path[s], "%s/%s", outdir, s ? "val.bin" : "train.bin");
        LMS_TRY(lms_shard_writer_open(&p.w[s], path[s], width));
        p.w[s].tokenizer = tok.kind == LMS_TOK_BPE ? LMS_SHARD_TOK_BPE : LMS_SHARD_TOK_BYTES;
        p.open[s] = 1;
    }
    if (tok.kind == LMS_TOK_BPE) { /* the tokenizer travels with the shards: vocab.json + merges.txt beside them */
        cli_tok_id id;
        LMS_TRY(cli_tokid_files(&id, vocab, merges, "--vocab/--merges"));
        LMS_TRY(cli_tokid_copy_to(&id, outdir));
    }
    if (by_tokens) {
        p.count_only = 1;
        lms_progress_begin(&p.prog, "data prepare (counting tokens)", total_mb, "MB", 1);
        LMS_TRY(text_file(&p, inputs[0]));
        LMS_TRY(flush(&p));
        lms_progress_end(&p.prog);
        uint64_t nval = (uint64_t)((double)val_fraction * (double)p.counted + 0.5);
        if (nval == 0 || nval >= p.counted) {
            st = lms_errorf(LMS_ERR_INVALID_ARG, "--val-fraction %g of the %llu tokens of '%s' leaves %s empty: "
                            "change --val-fraction or give more text", val_fraction,
                            (unsigned long long)p.counted, inputs[0], nval == 0 ? "val.bin" : "train.bin");
            goto fail;
        }
        p.split_at = p.counted - nval;
        p.count_only = 0;
        p.doc = p.docs[0] = p.docs[1] = p.bytes = 0;
    }
    lms_progress_begin(&p.prog, "data prepare", total_mb, "MB", 1);
    for (int i = 0; i < ninputs; i++)
        LMS_TRY(field ? jsonl_file(&p, inputs[i], field) : text_file(&p, inputs[i]));
    LMS_TRY(flush(&p));
    lms_progress_end(&p.prog);
    if (by_tokens) {
        for (int s = 0; s < 2; s++) {
            p.open[s] = 0;
            LMS_TRY(lms_shard_writer_commit(&p.w[s]));
            printf("%s: %llu tokens (uint%d), the %s %.4g%% of '%s'\n", path[s], (unsigned long long)p.w[s].n,
                   width * 8, s ? "last" : "first", 100.0 * (double)p.w[s].n / (double)p.counted, inputs[0]);
        }
        goto fail; /* done */
    }
    if (p.docs[0] == 0 || (p.open[1] && p.docs[1] == 0)) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "%llu documents went to train.bin and %llu to val.bin: each split "
                        "needs at least one (give more documents or change --val-fraction / --seed)",
                        (unsigned long long)p.docs[0], (unsigned long long)p.docs[1]);
        goto fail;
    }
    for (int s = 0; s < 2; s++)
        if (p.open[s]) {
            p.open[s] = 0;
            LMS_TRY(lms_shard_writer_commit(&p.w[s]));
            printf("%s: %llu documents, %llu tokens (uint%d)\n", path[s], (unsigned long long)p.docs[s],
                   (unsigned long long)p.w[s].n, width * 8);
        }
fail:
    for (int i = 0; i < p.nq; i++) free(p.q[i].text);
    free(p.q);
    for (int s = 0; s < 2; s++)
        if (p.open[s]) lms_shard_writer_abort(&p.w[s]);
    lms_tokenizer_free(&tok);
    cli_list_free(inputs, rest);
    return st == LMS_OK ? 0 : cli_fail("data prepare", st);
}

int cmd_data(int argc, char **argv) {
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "prepare") == 0) return cmd_prepare(argc - 1, argv + 1);
    FILE *out = strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ? stdout : stderr;
    fprintf(out, "usage: lmscale data prepare [flags]   (see lmscale data prepare --help)\n");
    if (*sub && out == stderr) fprintf(stderr, "lmscale data: error: unknown subcommand '%s'\n", sub);
    return out == stdout ? 0 : 2;
}
