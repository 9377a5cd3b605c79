/* `lmscale tokenizer encode|decode|train`: GPT-2 byte-level BPE from the
 * command line (docs/tokenizer.md). */
#include "cli.h"
#include "lmscale/tokenizer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file, or stdin when path is NULL or "-". */
static lms_status read_input(const char *path, unsigned char **data, size_t *size) {
    if (path && strcmp(path, "-") != 0) return lms_read_file(path, data, size);
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return lms_errorf(LMS_ERR_OOM, "out of memory reading stdin");
    for (;;) {
        if (n == cap) {
            unsigned char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return lms_errorf(LMS_ERR_OOM, "out of memory reading stdin");
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return lms_errorf(LMS_ERR_IO, "cannot read stdin: %s", strerror(errno));
    }
    *data = buf;
    *size = n;
    return LMS_OK;
}

lms_status cli_load_tokenizer(const char *vocab, const char *merges, lms_tokenizer *tok) {
    lms_tokenizer_init_bytes(tok);
    if (!vocab && !merges) return LMS_OK;
    if (!vocab || !merges)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--vocab and --merges go together: give both files of the BPE "
                          "tokenizer (vocab.json and merges.txt), or neither for bytes");
    return lms_tokenizer_load_bpe(tok, vocab, merges);
}

static int tok_encode(int argc, char **argv) {
    const char *vocab = NULL, *merges = NULL, *input = NULL;
    int allow_special = 0;
    const cli_opt opts[] = {
        {"vocab", CLI_STR, &vocab, "FILE", "vocab.json (GPT-2 / Hugging Face layout); without it: bytes"},
        {"merges", CLI_STR, &merges, "FILE", "merges.txt"},
        {"input", CLI_STR, &input, "FILE", "text to encode (default: stdin)"},
        {"allow-special", CLI_BOOL, &allow_special, NULL,
         "encode the literal text <|endoftext|> as the special token (default: as text, like GPT-2)"},
    };
    cli_spec spec = {"tokenizer encode", "lmscale tokenizer encode: text -> token ids (space-separated).",
                     "lmscale tokenizer encode --vocab FILE --merges FILE [--input FILE]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    unsigned char *text = NULL;
    int32_t *ids = NULL;
    size_t n, nids;
    lms_status st;
    LMS_TRY(cli_parse(&spec, argc, argv, &help));
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    LMS_TRY(cli_load_tokenizer(vocab, merges, &tok));
    LMS_TRY(read_input(input, &text, &n));
    LMS_TRY(lms_tokenizer_encode_opts(&tok, text, n, allow_special, &ids, &nids));
    for (size_t i = 0; i < nids; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    if (fflush(stdout) != 0) st = lms_errorf(LMS_ERR_IO, "cannot write stdout: %s", strerror(errno));
fail:
    free(ids);
    free(text);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("tokenizer encode", st);
}

static int tok_decode(int argc, char **argv) {
    const char *vocab = NULL, *merges = NULL, *input = NULL;
    const cli_opt opts[] = {
        {"vocab", CLI_STR, &vocab, "FILE", "vocab.json; without it: bytes"},
        {"merges", CLI_STR, &merges, "FILE", "merges.txt"},
        {"input", CLI_STR, &input, "FILE", "ids separated by white space (default: stdin)"},
    };
    cli_spec spec = {"tokenizer decode", "lmscale tokenizer decode: token ids -> bytes on stdout.",
                     "lmscale tokenizer decode --vocab FILE --merges FILE [--input FILE]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    unsigned char *text = NULL;
    char *buf = NULL;
    size_t n;
    lms_status st;
    LMS_TRY(cli_parse(&spec, argc, argv, &help));
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    LMS_TRY(cli_load_tokenizer(vocab, merges, &tok));
    LMS_TRY(read_input(input, &text, &n));
    size_t cap = 1 << 16;
    buf = malloc(cap);
    if (!buf) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    const char *what = input ? input : "stdin";
    size_t pos = 0, k = 0;
    while (pos < n) {
        while (pos < n && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\t' || text[pos] == '\r')) pos++;
        if (pos == n) break;
        long id = 0;
        size_t start = pos;
        while (pos < n && text[pos] >= '0' && text[pos] <= '9' && id <= tok.vocab_size) id = id * 10 + (text[pos++] - '0');
        while (pos < n && text[pos] >= '0' && text[pos] <= '9') pos++;
        if (pos == start || (pos < n && text[pos] != ' ' && text[pos] != '\n' && text[pos] != '\t' && text[pos] != '\r')) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: expected token ids (non-negative integers separated by white "
                            "space) at byte %zu, got '%.*s'", what, start, (int)(n - start < 20 ? n - start : 20),
                            text + start);
            goto fail;
        }
        if (id >= tok.vocab_size) {
            st = lms_errorf(LMS_ERR_FORMAT, "%s: token id %.*s at byte %zu is not in the vocabulary of %d: decode "
                            "with the tokenizer that encoded it", what, (int)(pos - start), text + start, start,
                            tok.vocab_size);
            goto fail;
        }
        size_t l = lms_tokenizer_decode(&tok, (int32_t)id, buf, cap);
        if (l > cap) { /* a token longer than 64 KiB: decode again into a bigger buffer */
            char *b = realloc(buf, l);
            if (!b) {
                st = lms_errorf(LMS_ERR_OOM, "out of memory");
                goto fail;
            }
            buf = b;
            cap = l;
            lms_tokenizer_decode(&tok, (int32_t)id, buf, cap);
        }
        fwrite(buf, 1, l, stdout);
        k++;
    }
    st = fflush(stdout) != 0 ? lms_errorf(LMS_ERR_IO, "cannot write stdout: %s", strerror(errno)) : LMS_OK;
fail:
    free(buf);
    free(text);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("tokenizer decode", st);
}

static int tok_train(int argc, char **argv) {
    const char *input = NULL, *out_dir = NULL, *special = NULL;
    int vocab_size = 0, quiet = 0;
    const char **inputs = NULL;
    int ninputs = 0;
    const cli_opt opts[] = {
        {"input", CLI_STR, &input, "FILE...", "text files to learn from (several: FILE FILE ..., or a comma list)"},
        {"vocab-size", CLI_INT, &vocab_size, "N", "tokens in the vocabulary: 256 bytes + merges (+ the special token)"},
        {"output", CLI_STR, &out_dir, "DIR", "directory for vocab.json and merges.txt (created if missing)"},
        {"special", CLI_STR, &special, "TOKEN", "a special token added last, e.g. <|endoftext|> (not learned from text)"},
        {"quiet", CLI_BOOL, &quiet, NULL, "no progress lines on stderr"},
    };
    cli_spec spec = {"tokenizer train", "lmscale tokenizer train: learn a byte-level BPE vocabulary (GPT-2 pre-tokenization).",
                     "lmscale tokenizer train --input FILE... --vocab-size N --output DIR [--special <|endoftext|>]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    char **rest = NULL;
    int nrest = 0;
    lms_status st;
    LMS_TRY(cli_take_list(argc, argv, "input", &inputs, &ninputs, &rest, &nrest));
    LMS_TRY(cli_parse(&spec, nrest, rest, &help));
    if (help) {
        cli_print_help(&spec, stdout);
        goto fail;
    }
    if (!ninputs || !out_dir || !vocab_size) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--input FILE..., --vocab-size N and --output DIR are required");
        goto fail;
    }
    lms_bpe_train_opts o = {vocab_size, special, !quiet};
    int final_size = 0;
    LMS_TRY(lms_bpe_train(inputs, ninputs, &o, out_dir, &final_size));
    printf("vocab_size=%d output=%s\n", final_size, out_dir);
    if (final_size < vocab_size)
        fprintf(stderr, "lmscale tokenizer train: warning: the text had no more pairs to merge: %d tokens, not %d\n",
                final_size, vocab_size);
fail:
    cli_list_free(inputs, rest);
    return st == LMS_OK ? 0 : cli_fail("tokenizer train", st);
}

int cmd_tokenizer(int argc, char **argv) {
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "encode") == 0) return tok_encode(argc - 1, argv + 1);
    if (strcmp(sub, "decode") == 0) return tok_decode(argc - 1, argv + 1);
    if (strcmp(sub, "train") == 0) return tok_train(argc - 1, argv + 1);
    FILE *out = strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ? stdout : stderr;
    fprintf(out, "usage: lmscale tokenizer <encode|decode|train> [flags]   (see lmscale tokenizer <sub> --help)\n"
                 "  encode   text -> token ids\n  decode   token ids -> text\n"
                 "  train    learn a BPE vocabulary (vocab.json + merges.txt)\n");
    if (out == stdout) return 0;
    if (*sub) fprintf(stderr, "lmscale tokenizer: error: unknown subcommand '%s'\n", sub);
    return 2;
}
