/* The tokenizers: GPT-2 byte-level BPE against reference vectors, round
 * trips of arbitrary bytes (invalid UTF-8 included), the pre-tokenizer,
 * <|endoftext|> handling, malformed vocab/merges files, and BPE training.
 *
 * The vectors in tests/fixtures/gpt2_tokenizer_vectors.txt were produced by
 * tests/ref/gpt2_tokenizer_reference.py: OpenAI's GPT-2 encoder.py
 * algorithm in Python with the `regex` module, run on the GPT-2
 * vocab.json/merges.txt in $LMS_GPT2_DIR (default ../shared/data, beside the
 * repository). The GPT-2 parts are skipped (test_skip) when those files are
 * absent. */
#define _GNU_SOURCE
#include "check.h"
#include "lmscale/tokenizer.h"
#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_vocab[4096], g_merges[4096];
#define VECTORS "tests/fixtures/gpt2_tokenizer_vectors.txt"

static int contains(const char *s, const char *needle) { return s && strstr(s, needle) != NULL; }

/* decode all ids into one malloc'ed buffer */
static unsigned char *decode_all(const lms_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, k = 0;
    unsigned char *out = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        size_t l = lms_tokenizer_decode(t, ids[i], buf, sizeof buf);
        if (l > sizeof buf) l = sizeof buf;
        while (k + l > cap) out = realloc(out, cap *= 2);
        memcpy(out + k, buf, l);
        k += l;
    }
    *len = k;
    return out;
}

static int roundtrips(const lms_tokenizer *t, const unsigned char *s, size_t n) {
    int32_t *ids;
    size_t nids, len;
    if (lms_tokenizer_encode(t, s, n, &ids, &nids) != LMS_OK) return 0;
    unsigned char *back = decode_all(t, ids, nids, &len);
    int ok = len == n && memcmp(back, s, n) == 0;
    for (size_t i = 0; i < nids; i++) ok &= ids[i] >= 0 && ids[i] < t->vocab_size;
    free(back);
    free(ids);
    return ok;
}

static void test_pretok(void) {
    /* pre-tokens of a string, '|' separated */
    struct {
        const char *in, *want;
    } cases[] = {
        {"Hello world", "Hello| world"},
        {"I'm he's 'll", "I|'m| he|'s| '|ll"},
        {"a   b", "a|  | b"},
        {"a \n b", "a| \n| b"},
        {"x  ", "x|  "},
        {"\nHi", "\n|Hi"},
        {" 123abc!!", " 123|abc|!!"},
        {" !'s", " !'|s"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char got[128] = {0};
        const unsigned char *s = (const unsigned char *)cases[c].in;
        size_t n = strlen(cases[c].in), pos = 0, k = 0;
        while (pos < n) {
            size_t l = lms_pretok_next(s + pos, n - pos);
            if (k) got[k++] = '|';
            memcpy(got + k, s + pos, l);
            k += l;
            pos += l;
        }
        CHECK(strcmp(got, cases[c].want) == 0, "pretok(\"%s\") = \"%s\", want \"%s\"", cases[c].in, got,
              cases[c].want);
    }
    CHECK(lms_uc_classify(0x4E2D) == LMS_UC_LETTER, "U+4E2D is a letter");
    CHECK(lms_uc_classify(0x0661) == LMS_UC_NUMBER, "U+0661 is a number");
    CHECK(lms_uc_classify(0x3000) == LMS_UC_SPACE, "U+3000 is a space");
    CHECK(lms_uc_classify(0x1F600) == LMS_UC_OTHER, "U+1F600 is other");
}

static void test_bytes(void) {
    lms_tokenizer t;
    lms_tokenizer_init_bytes(&t);
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    CHECK(roundtrips(&t, all, 256), "bytes tokenizer round trip");
    int32_t *ids;
    size_t n;
    CHECK(lms_tokenizer_encode_opts(&t, (const unsigned char *)"a<|endoftext|>b", 15, 1, &ids, &n) == LMS_OK,
          "encode: %s", lms_last_error());
    CHECK(n == 3 && ids[1] == 256, "bytes + allow_special: %zu ids", n);
    free(ids);
    lms_tokenizer_free(&t);
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_gpt2(void) {
    const char *dir = getenv("LMS_GPT2_DIR");
    if (!dir || !*dir) dir = "../shared/data";
    snprintf(g_vocab, sizeof g_vocab, "%s/gpt2-vocab.json", dir);
    snprintf(g_merges, sizeof g_merges, "%s/gpt2-merges.txt", dir);
    if (access(g_vocab, R_OK) || access(g_merges, R_OK)) {
        char how[9000];
        char cwd[2048] = "";
        if (dir[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(how, sizeof how,
                 "save GPT-2's vocab.json and merges.txt (Hugging Face gpt2) as gpt2-vocab.json and gpt2-merges.txt "
                 "in %s%s%s, or set LMS_GPT2_DIR",
                 cwd, cwd[0] ? "/" : "", dir);
        test_skip("GPT-2 vectors", how);
        return;
    }
    lms_tokenizer t;
    CHECK(lms_tokenizer_load_bpe(&t, g_vocab, g_merges) == LMS_OK, "load: %s", lms_last_error());
    CHECK(t.kind == LMS_TOK_BPE && t.vocab_size == 50257 && t.eot == 50256, "kind %d V %d eot %d", t.kind,
          t.vocab_size, t.eot);
    FILE *f = fopen(VECTORS, "r");
    CHECK(f != NULL, "cannot open %s", VECTORS);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int ncase = 0;
    unsigned char *bytes = malloc(1 << 16);
    int32_t *want = malloc(sizeof(int32_t) << 16);
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        CHECK(tab != NULL, "bad vector line");
        if (!tab) break;
        size_t nb = (size_t)(tab - line) / 2, nw = 0;
        for (size_t i = 0; i < nb; i++) bytes[i] = (unsigned char)(hexval(line[2 * i]) * 16 + hexval(line[2 * i + 1]));
        for (char *p = tab + 1, *e; (want[nw] = (int32_t)strtol(p, &e, 10)), e != p; p = e) nw++;
        int32_t *ids;
        size_t n;
        CHECK(lms_tokenizer_encode(&t, bytes, nb, &ids, &n) == LMS_OK, "encode: %s", lms_last_error());
        int same = n == nw && memcmp(ids, want, n * sizeof(int32_t)) == 0;
        CHECK(same, "vector %d (%.40s...): %zu ids, reference %zu", ncase, line, n, nw);
        if (!same)
            for (size_t i = 0; i < n && i < nw; i++)
                if (ids[i] != want[i]) {
                    fprintf(stderr, "  first difference at id %zu: %d vs reference %d\n", i, ids[i], want[i]);
                    break;
                }
        CHECK(roundtrips(&t, bytes, nb), "vector %d does not round-trip", ncase);
        free(ids);
        ncase++;
    }
    CHECK(ncase >= 200, "only %d vectors", ncase);
    free(line);
    free(want);
    fclose(f);

    /* random bytes (mostly invalid UTF-8) and random UTF-8-ish text round-trip */
    uint64_t key = lms_rng_key(7, "tok");
    for (int r = 0; r < 200; r++) {
        size_t n = lms_rng_u64(key, (uint64_t)r * 1000) % 300;
        for (size_t i = 0; i < n; i++) {
            uint64_t x = lms_rng_u64(key, (uint64_t)r * 1000 + 1 + i);
            bytes[i] = r % 2 ? (unsigned char)x : (unsigned char)" aZ'\n\t\xc3\xa9\xe4\xb8\xad" "1."[x % 14];
        }
        CHECK(roundtrips(&t, bytes, n), "random case %d (%zu bytes) does not round-trip", r, n);
    }
    free(bytes);

    /* <|endoftext|>: text by default, the special id when allowed */
    const unsigned char *s = (const unsigned char *)"a<|endoftext|>b";
    int32_t *ids;
    size_t n;
    CHECK(lms_tokenizer_encode(&t, s, 15, &ids, &n) == LMS_OK, "encode");
    int has = 0;
    for (size_t i = 0; i < n; i++) has |= ids[i] == t.eot;
    CHECK(!has && n > 3, "default encode must treat <|endoftext|> as text (%zu ids)", n);
    free(ids);
    CHECK(lms_tokenizer_encode_opts(&t, s, 15, 1, &ids, &n) == LMS_OK, "encode");
    CHECK(n == 3 && ids[1] == 50256 && ids[0] == 64 && ids[2] == 65, "allow_special: %zu ids", n);
    free(ids);
    lms_tokenizer_free(&t);
}

/* ---- malformed files ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* a minimal valid vocab: the 256 byte characters, then "ab" (256) */
static void write_small_vocab(const char *path, const char *extra) {
    lms_byte_map bm;
    lms_byte_map_init(&bm);
    FILE *f = fopen(path, "w");
    fputs("{", f);
    for (int i = 0; i < 256; i++) {
        uint32_t cp = bm.byte_cp[bm.order[i]];
        char u[4];
        int l = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), 2);
        fputc('"', f);
        for (int k = 0; k < l; k++) {
            if (u[k] == '"' || u[k] == '\\') fputc('\\', f);
            fputc(u[k], f);
        }
        fprintf(f, "\": %d, ", i);
    }
    fprintf(f, "\"ab\": 256%s}", extra);
    fclose(f);
}

static void expect_load_error(const char *vocab, const char *merges, const char *what, const char *name,
                              const char *detail) {
    lms_tokenizer t;
    lms_status st = lms_tokenizer_load_bpe(&t, vocab, merges);
    CHECK(st == LMS_ERR_FORMAT && contains(lms_last_error(), name) && contains(lms_last_error(), detail),
          "%s: status %d, message '%s' (want '%s' and '%s')", what, st, lms_last_error(), name, detail);
    lms_tokenizer_free(&t);
}

static void test_malformed(void) {
    char dir[] = "/tmp/lms_tok_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char v[256], m[256], bad[256];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    write_small_vocab(v, "");
    write_file(m, "#version: 0.2\na b\n");
    lms_tokenizer t;
    CHECK(lms_tokenizer_load_bpe(&t, v, m) == LMS_OK, "small vocab: %s", lms_last_error());
    int32_t *ids;
    size_t n;
    CHECK(lms_tokenizer_encode(&t, (const unsigned char *)"abcab", 5, &ids, &n) == LMS_OK, "encode");
    /* "abcab" is one pre-token: a b c a b -> ab c ab; 'c' is byte id 'c' - '!' in GPT-2's order */
    CHECK(n == 3 && ids[0] == 256 && ids[1] == 'c' - '!' && ids[2] == 256, "small vocab encode: %zu ids", n);
    free(ids);
    CHECK(t.eot == -1, "no <|endoftext|> in the small vocab: eot %d", t.eot);
    lms_tokenizer_free(&t);

    write_file(bad, "{\"a\": 0,\n \"b\": }");
    expect_load_error(bad, m, "bad JSON", "bad.json", "line 2");
    write_small_vocab(bad, ", \"cd\": 1.5");
    expect_load_error(bad, m, "non-integer id", "bad.json", "1.5");
    write_small_vocab(bad, ", \"cd\": \"x\"");
    expect_load_error(bad, m, "string id", "bad.json", "not a number");
    write_small_vocab(bad, ", \"cd\": 3");
    expect_load_error(bad, m, "duplicate id", "bad.json", "id 3");
    write_file(bad, "{\"a\": 0}");
    expect_load_error(bad, m, "missing bytes", "bad.json", "byte 0x00");
    char bm[256];
    snprintf(bm, sizeof bm, "%s/bad.txt", dir);
    write_file(bm, "#version: 0.2\na b\nab\n");
    expect_load_error(v, bm, "merges line without a space", "bad.txt:3", "two tokens");
    write_file(bm, "#version: 0.2\na b\n\nb c d\n");
    expect_load_error(v, bm, "merges line with 3 tokens", "bad.txt:4", "two tokens");
    write_file(bm, "#version: 0.2\nab zz\n");
    expect_load_error(v, bm, "merges naming an unknown token", "bad.txt:2", "\"zz\" is not in the vocabulary");
    write_file(bm, "#version: 0.2\na c\n");
    expect_load_error(v, bm, "merge result not in vocab", "bad.txt:2", "not in the vocabulary");
    lms_status st = lms_tokenizer_load_bpe(&t, "/nonexistent/vocab.json", m);
    CHECK(st == LMS_ERR_IO && contains(lms_last_error(), "/nonexistent/vocab.json"), "missing file: %s",
          lms_last_error());
    unlink(v);
    unlink(m);
    unlink(bad);
    unlink(bm);
    rmdir(dir);
}

int main(void) {
    test_pretok();
    test_bytes();
    test_gpt2();
    test_malformed();
    return test_summary("test_tokenizer");
}
