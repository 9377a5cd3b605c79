/* Which tokenizer a model, a checkpoint or a data file belongs to, so that
 * the tokenizer travels with the model (docs/checkpoints.md, "Tokenizer"):
 * identities from --vocab/--merges, from a directory (Hugging Face layout,
 * a checkpoint, data prepare's output), from a checkpoint's record and from
 * data files; one agreement rule; copies of the files next to a model. */
#define _GNU_SOURCE /* realpath */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static lms_status file_crc(const char *path, uint32_t *crc) {
    unsigned char *buf;
    size_t n;
    LMS_CHECK(lms_read_file(path, &buf, &n));
    *crc = lms_crc32(0, buf, n);
    free(buf);
    return LMS_OK;
}

void cli_tokid_set(cli_tok_id *id, cli_tok_kind kind, const char *src) {
    memset(id, 0, sizeof *id);
    id->kind = kind;
    snprintf(id->src, sizeof id->src, "%s", src);
}

lms_status cli_tokid_files(cli_tok_id *id, const char *vocab, const char *merges, const char *src) {
    cli_tokid_set(id, CLI_TOK_BPE, src);
    if (!vocab || !merges)
        return lms_errorf(LMS_ERR_INVALID_ARG, "give both --vocab FILE and --merges FILE (GPT-2 vocab.json and "
                          "merges.txt), or neither for byte tokens");
    char *av = realpath(vocab, NULL), *am = realpath(merges, NULL);
    lms_status st = LMS_OK;
    if (!av || !am)
        st = lms_errorf(LMS_ERR_IO, "cannot open the tokenizer file '%s' of %s (check the path)", !av ? vocab : merges,
                        src);
    else if (strlen(av) >= sizeof id->vocab || strlen(am) >= sizeof id->merges)
        st = lms_errorf(LMS_ERR_INVALID_ARG, "tokenizer paths of %s are too long", src);
    if (st == LMS_OK) {
        snprintf(id->vocab, sizeof id->vocab, "%s", av);
        snprintf(id->merges, sizeof id->merges, "%s", am);
        st = file_crc(av, &id->vocab_crc);
        if (st == LMS_OK) st = file_crc(am, &id->merges_crc);
        id->have_files = st == LMS_OK;
    }
    free(av);
    free(am);
    return st;
}

lms_status cli_tokid_dir(cli_tok_id *id, const char *dir, const char *src, int *found) {
    char v[4096], mg[4096];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/merges.txt", dir);
    int hv = is_file(v), hm = is_file(mg);
    *found = hv && hm;
    if (hv != hm)
        return lms_errorf(LMS_ERR_FORMAT, "%s has %s but not %s: a GPT-2 tokenizer needs both (copy the missing "
                          "one there, or remove the other)", src, hv ? v : mg, hv ? "merges.txt" : "vocab.json");
    return *found ? cli_tokid_files(id, v, mg, src) : LMS_OK;
}

const char *cli_tokid_describe(const cli_tok_id *id, char *buf, size_t cap) {
    if (id->kind == CLI_TOK_BYTES)
        snprintf(buf, cap, "the byte tokenizer (257 ids)");
    else if (id->kind == CLI_TOK_BPE && id->have_files)
        snprintf(buf, cap, "the BPE tokenizer %s + %s (CRC-32 %08x/%08x)", id->vocab, id->merges, id->vocab_crc,
                 id->merges_crc);
    else if (id->kind == CLI_TOK_BPE)
        snprintf(buf, cap, "a GPT-2 BPE tokenizer (files not recorded)");
    else
        snprintf(buf, cap, "an unrecorded tokenizer");
    return buf;
}

int cli_tokid_same(const cli_tok_id *a, const cli_tok_id *b) {
    if (a->kind == CLI_TOK_UNKNOWN || b->kind == CLI_TOK_UNKNOWN) return 1;
    if (a->kind != b->kind) return 0;
    if (a->kind == CLI_TOK_BPE && a->have_files && b->have_files)
        return a->vocab_crc == b->vocab_crc && a->merges_crc == b->merges_crc;
    return 1;
}

lms_status cli_tokid_agree(const cli_tok_id *a, const cli_tok_id *b, const char *fix) {
    if (cli_tokid_same(a, b)) return LMS_OK;
    char da[8400], db[8400];
    return lms_errorf(LMS_ERR_INVALID_ARG, "%s uses %s, but %s uses %s: the ids would mean other text. %s", a->src,
                      cli_tokid_describe(a, da, sizeof da), b->src, cli_tokid_describe(b, db, sizeof db), fix);
}

lms_status cli_tokid_load(const cli_tok_id *id, lms_tokenizer *tok) {
    lms_tokenizer_free(tok);
    lms_tokenizer_init_bytes(tok);
    if (id->kind != CLI_TOK_BPE || !id->have_files) return LMS_OK;
    lms_status st = lms_tokenizer_load_bpe(tok, id->vocab, id->merges);
    return st == LMS_OK ? st : lms_error_context(st, "%s has %s and %s, but they do not load as a BPE tokenizer "
                                                   "(fix or remove them)", id->src, id->vocab, id->merges);
}

/* One file copied to dir/name atomically, unless it is that file already. */
static lms_status copy_file(const char *from, const char *dir, const char *name) {
    char to[4200];
    snprintf(to, sizeof to, "%s/%s", dir, name);
    char *a = realpath(from, NULL), *b = realpath(to, NULL);
    int same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    if (same) return LMS_OK;
    unsigned char *buf;
    size_t n;
    LMS_CHECK(lms_read_file(from, &buf, &n));
    lms_atomic_file af;
    lms_status st = lms_atomic_open(&af, to);
    if (st == LMS_OK) {
        st = lms_atomic_write(&af, buf, n);
        if (st == LMS_OK)
            st = lms_atomic_commit(&af);
        else
            lms_atomic_abort(&af);
    }
    free(buf);
    return st;
}

lms_status cli_tokid_copy_to(const cli_tok_id *id, const char *dir) {
    if (id->kind != CLI_TOK_BPE || !id->have_files) return LMS_OK;
    uint32_t vc, mc;
    LMS_CHECK(file_crc(id->vocab, &vc));
    LMS_CHECK(file_crc(id->merges, &mc));
    if (vc != id->vocab_crc || mc != id->merges_crc)
        return lms_errorf(LMS_ERR_FORMAT, "the tokenizer files %s / %s changed while in use (CRC-32 %08x/%08x, "
                          "were %08x/%08x): restore them", id->vocab, id->merges, vc, mc, id->vocab_crc,
                          id->merges_crc);
    LMS_CHECK(copy_file(id->vocab, dir, "vocab.json"));
    return copy_file(id->merges, dir, "merges.txt");
}

lms_status cli_tokid_ckpt(const lms_ckpt_state *s, const char *ckdir, const cli_tok_id *given, cli_tok_id *out) {
    char src[4200];
    snprintf(src, sizeof src, "checkpoint '%s'", ckdir);
    if (strcmp(s->tok_kind, "bytes") == 0) {
        cli_tokid_set(out, CLI_TOK_BYTES, src);
    } else if (strcmp(s->tok_kind, "unknown") == 0) {
        cli_tokid_set(out, CLI_TOK_UNKNOWN, src); /* trained on token data that named no tokenizer files */
    } else if (strcmp(s->tok_kind, "bpe") == 0) {
        cli_tokid_set(out, CLI_TOK_BPE, src);
        out->have_files = 1;
        out->vocab_crc = s->tok_vocab_crc;
        out->merges_crc = s->tok_merges_crc;
        snprintf(out->vocab, sizeof out->vocab, "%s", s->tok_vocab);
        snprintf(out->merges, sizeof out->merges, "%s", s->tok_merges);
    } else {
        return lms_errorf(LMS_ERR_UNSUPPORTED, "%s names a '%s' tokenizer, which this build does not know (bytes, "
                          "bpe or unknown)", src, s->tok_kind);
    }
    if (given && given->kind != CLI_TOK_UNKNOWN) { /* --vocab/--merges: must be the same tokenizer */
        LMS_CHECK(cli_tokid_agree(given, out, "Drop --vocab/--merges (the checkpoint brings its tokenizer) or give "
                                  "the files it was trained with."));
        if (out->kind != CLI_TOK_BYTES) {
            char keep[4200];
            snprintf(keep, sizeof keep, "%s", out->src);
            *out = *given;
            snprintf(out->src, sizeof out->src, "%s", keep);
        }
        return LMS_OK;
    }
    if (out->kind != CLI_TOK_BPE || !out->have_files) return LMS_OK;
    /* the copy saved inside the checkpoint, else the files it names */
    cli_tok_id in;
    int found;
    if (cli_tokid_dir(&in, ckdir, src, &found) == LMS_OK && found && in.vocab_crc == out->vocab_crc &&
        in.merges_crc == out->merges_crc) {
        *out = in;
        return LMS_OK;
    }
    uint32_t vc = 0, mc = 0;
    lms_status st = file_crc(out->vocab, &vc);
    if (st == LMS_OK) st = file_crc(out->merges, &mc);
    if (st != LMS_OK)
        return lms_errorf(LMS_ERR_IO, "%s was trained with the tokenizer %s + %s (CRC-32 %08x/%08x), which is "
                          "neither in the checkpoint nor readable there: give the same files with --vocab/--merges",
                          src, out->vocab, out->merges, out->vocab_crc, out->merges_crc);
    if (vc != out->vocab_crc || mc != out->merges_crc)
        return lms_errorf(LMS_ERR_FORMAT, "the tokenizer files %s / %s changed since %s was written (CRC-32 "
                          "%08x/%08x, recorded %08x/%08x): the data would be tokenized differently; restore the "
                          "original files or give them with --vocab/--merges", out->vocab, out->merges, src, vc, mc,
                          out->vocab_crc, out->merges_crc);
    return LMS_OK;
}

lms_status cli_tokid_record(const cli_tok_id *id, lms_ckpt_state *s) {
    if (id->kind == CLI_TOK_BPE && id->have_files) {
        if (strlen(id->vocab) >= sizeof s->tok_vocab || strlen(id->merges) >= sizeof s->tok_merges)
            return lms_errorf(LMS_ERR_INVALID_ARG, "the tokenizer paths %s / %s are longer than a checkpoint "
                              "records (%zu bytes): move the files to a shorter path", id->vocab, id->merges,
                              sizeof s->tok_vocab - 1);
        snprintf(s->tok_kind, sizeof s->tok_kind, "bpe");
        snprintf(s->tok_vocab, sizeof s->tok_vocab, "%.255s", id->vocab);
        snprintf(s->tok_merges, sizeof s->tok_merges, "%.255s", id->merges);
        s->tok_vocab_crc = id->vocab_crc;
        s->tok_merges_crc = id->merges_crc;
    } else {
        snprintf(s->tok_kind, sizeof s->tok_kind, "%s", id->kind == CLI_TOK_BPE ? "unknown" : "bytes");
    }
    return LMS_OK;
}

/* The directory part of path ("." when none). */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *sl = strrchr(path, '/');
    if (!sl)
        snprintf(dir, cap, ".");
    else
        snprintf(dir, cap, "%.*s", (int)(sl == path ? 1 : sl - path), path);
}

lms_status cli_tokid_data(const char *paths, lms_data_role role, cli_tok_id *id, int *has_text) {
    char **files;
    int n;
    cli_tokid_set(id, CLI_TOK_UNKNOWN, "the data");
    *has_text = 0;
    LMS_CHECK(lms_data_files(paths, role, &files, &n));
    lms_status st = LMS_OK;
    for (int i = 0; st == LMS_OK && i < n; i++) {
        lms_data_format fmt;
        int stok;
        st = lms_data_probe(files[i], &fmt, &stok);
        if (st != LMS_OK) break;
        if (fmt == LMS_DATA_TEXT) {
            *has_text = 1;
            continue;
        }
        char src[4200], dir[4096];
        snprintf(src, sizeof src, "data '%s'", files[i]);
        dir_of(files[i], dir, sizeof dir);
        cli_tok_id f;
        cli_tokid_set(&f, CLI_TOK_UNKNOWN, src);
        int found = 0;
        if (fmt == LMS_DATA_LMSTOK && stok == LMS_SHARD_TOK_BYTES) {
            f.kind = CLI_TOK_BYTES;
        } else if (!(fmt == LMS_DATA_LMSTOK && stok != LMS_SHARD_TOK_BPE && stok != LMS_SHARD_TOK_UNRECORDED)) {
            st = cli_tokid_dir(&f, dir, src, &found); /* vocab.json + merges.txt beside the shard */
            if (st != LMS_OK) break;
            if (!found && (fmt == LMS_DATA_LLMC || stok == LMS_SHARD_TOK_BPE))
                cli_tokid_set(&f, CLI_TOK_BPE, src); /* llm.c version 1 shards hold GPT-2 ids */
        }
        st = cli_tokid_agree(&f, id, "Give data made with one tokenizer.");
        if (st == LMS_OK && (id->kind == CLI_TOK_UNKNOWN || (f.have_files && !id->have_files))) *id = f;
    }
    lms_data_files_free(files, n);
    return st;
}

lms_status cli_tokid_require(const cli_tok_id *id, const char *why) {
    if (id->kind != CLI_TOK_UNKNOWN || id->text_as_bytes) return LMS_OK;
    return lms_errorf(LMS_ERR_INVALID_ARG, "%s names no tokenizer files (it was trained on token data without "
                      "--vocab/--merges): give them with --vocab/--merges %s", id->src, why);
}

void cli_tokid_hf_bytes(cli_tok_id *id, const char *src, int V, const lms_logger *lg) {
    cli_tokid_set(id, V == 257 ? CLI_TOK_BYTES : CLI_TOK_UNKNOWN, src);
    id->text_as_bytes = 1;
    if (V != 257)
        lms_log(lg, LMS_LOG_WARN, "%s has no vocab.json/merges.txt: text is read as byte tokens, although the "
                "model has %d ids (give --vocab/--merges if it was trained with a BPE tokenizer)", src, V);
}
