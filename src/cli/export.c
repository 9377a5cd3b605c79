/* `lmscale export --hf DIR`: a model file or training checkpoint as a
 * Hugging Face GPT-2 directory; and cli_load_model, the one place eval,
 * generate and export turn --load / --init / --resume into a model. */
#include "cli.h"
#include "lmscale/checkpoint.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The model's tokenizer: from its source, or --vocab/--merges (given) that
 * must not contradict it. file_kind: the model file's tokenizer field
 * (--load), or the vocabulary size (--init). */
static lms_status model_tokenizer(const char *load, const char *init, const lms_ckpt *ck, const char *ckpath,
                                  int file_kind, const cli_tok_id *given, cli_tok_id *id, const lms_logger *lg) {
    char src[4200];
    if (ck) return cli_tokid_ckpt(&ck->state, ckpath, given, id);
    if (init) {
        snprintf(src, sizeof src, "--init '%s'", init);
        int found;
        LMS_CHECK(cli_tokid_dir(id, init, src, &found));
        if (found) return cli_tokid_agree(given, id, "Drop --vocab/--merges (--init brings its tokenizer).");
        if (given->kind != CLI_TOK_UNKNOWN)
            *id = *given;
        else
            cli_tokid_hf_bytes(id, src, file_kind, lg);
        return LMS_OK;
    }
    snprintf(src, sizeof src, "model file '%s'", load);
    cli_tokid_set(id, file_kind == 0 ? CLI_TOK_BYTES : file_kind == 1 ? CLI_TOK_BPE : CLI_TOK_UNKNOWN, src);
    LMS_CHECK(cli_tokid_agree(given, id, "Drop --vocab/--merges, or give the files the model was trained with."));
    if (given->kind != CLI_TOK_UNKNOWN) *id = *given;
    if (id->kind == CLI_TOK_BPE && !id->have_files)
        return lms_errorf(LMS_ERR_INVALID_ARG, "%s was trained with a BPE tokenizer, and a model file holds weights "
                          "only: give its files with --vocab/--merges (or use the checkpoint, which carries them)",
                          src);
    return LMS_OK;
}

lms_status cli_load_model(const char *load, const char *init, const char *resume, const char *vocab,
                          const char *merges, int B, int T, lms_gpt *m, lms_tokenizer *tok, cli_tok_id *id,
                          const lms_logger *lg) {
    memset(m, 0, sizeof *m);
    int given_n = (load != NULL) + (init != NULL) + (resume != NULL);
    if (given_n != 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "give exactly one of --load FILE, --init DIR or --resume DIR "
                          "(%d given)", given_n);
    cli_tok_id given;
    cli_tokid_set(&given, CLI_TOK_UNKNOWN, "--vocab/--merges");
    if (vocab || merges) LMS_CHECK(cli_tokid_files(&given, vocab, merges, "--vocab/--merges"));
    lms_status st = LMS_OK;
    lms_gpt_config cfg;
    char *path = NULL;
    lms_ckpt ck;
    memset(&ck, 0, sizeof ck);
    if (load) {
        int kind = 0;
        LMS_CHECK(lms_model_load(load, m, B, T, 0, &kind));
        LMS_TRY(model_tokenizer(load, NULL, NULL, NULL, kind, &given, id, lg));
        LMS_TRY(cli_tokid_load(id, tok));
        return LMS_OK;
    }
    if (init) {
        LMS_CHECK(lms_hf_read_config(init, &cfg));
        LMS_CHECK(model_tokenizer(NULL, init, NULL, NULL, cfg.V, &given, id, lg));
    } else {
        LMS_CHECK(lms_ckpt_resolve(resume, lg, &path));
        LMS_TRY(lms_ckpt_open(&ck, path));
        cfg = ck.state.cfg;
        LMS_TRY(model_tokenizer(NULL, NULL, &ck, path, 0, &given, id, lg));
    }
    if (B <= 0) B = 1;
    if (T <= 0) T = cfg.maxT;
    if (T > cfg.maxT) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d is above the model's maximum %d (from '%s'): use "
                        "--seq-len %d or less", T, cfg.maxT, init ? init : path, cfg.maxT);
        goto fail;
    }
    LMS_TRY(cli_tokid_load(id, tok));
    LMS_TRY(lms_gpt_init(m, &cfg, B, T, 0));
    if (init)
        LMS_TRY(lms_hf_load_params(init, &cfg, m->params));
    else
        LMS_TRY(lms_ckpt_load_train(&ck, m, NULL));
    lms_ckpt_close(&ck);
    free(path);
    return LMS_OK;
fail:
    lms_ckpt_close(&ck);
    free(path);
    lms_gpt_free(m);
    return st;
}

lms_status cli_check_data_tokenizer(const char *data, const cli_tok_id *model) {
    cli_tok_id d;
    int text;
    LMS_CHECK(cli_tokid_data(data, LMS_DATA_VAL, &d, &text));
    LMS_CHECK(cli_tokid_agree(&d, model, "Evaluate on data tokenized with the model's tokenizer (lmscale data "
                              "prepare --vocab/--merges), or on text."));
    if (text && !(model->kind == CLI_TOK_BYTES || model->have_files || model->text_as_bytes))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--data has text, but %s does not name its tokenizer files: give "
                          "them with --vocab/--merges", model->src);
    return LMS_OK;
}

int cmd_export(int argc, char **argv) {
    const char *hf = NULL, *load = NULL, *resume = NULL, *vocab = NULL, *merges = NULL, *dtype = "fp32";
    const cli_opt opts[] = {
        {"hf", CLI_STR, &hf, "DIR", "write config.json + model.safetensors (GPT2LMHeadModel), and the BPE tokenizer's vocab.json + merges.txt, into DIR (required)"},
        {"load", CLI_STR, &load, "FILE", "model file from 'train --save-model'"},
        {"resume", CLI_STR, &resume, "DIR", "training checkpoint, or the newest valid one in DIR"},
        {"vocab", CLI_STR, &vocab, "FILE", "the model's GPT-2 vocab.json (needed for a BPE model file; a checkpoint brings its own)"},
        {"merges", CLI_STR, &merges, "FILE", "the model's GPT-2 merges.txt (with --vocab)"},
        {"dtype", CLI_STR, &dtype, "T", "the weights' dtype in model.safetensors: fp32, bf16 or fp16 (rounded to nearest even from the fp32 master)"},
    };
    cli_spec spec = {"export", "lmscale export: write a model as a Hugging Face GPT-2 directory.",
                     "lmscale export --hf DIR (--load FILE | --resume CKPT)", opts,
                     (int)(sizeof opts / sizeof opts[0]),
                     "the directory loads with transformers' GPT2LMHeadModel.from_pretrained(DIR), and with\n"
                     "'lmscale train|eval|generate --init DIR'"};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("export", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_ctx ctx;
    lms_ctx_init(&ctx, 0, 0);
    lms_gpt m = {0};
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    cli_tok_id id;
    if (!hf) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--hf DIR is required: the directory to write");
        goto fail;
    }
    if (!load && !resume) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "give the model to export: --load FILE or --resume CKPT");
        goto fail;
    }
    lms_dtype edt = !strcmp(dtype, "bf16") ? LMS_DT_BF16 : !strcmp(dtype, "fp16") ? LMS_DT_F16 : LMS_DT_F32;
    if (strcmp(dtype, "fp32") && edt == LMS_DT_F32) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--dtype '%s' is not known (choose fp32, bf16 or fp16)", dtype);
        goto fail;
    }
    LMS_TRY(cli_load_model(load, NULL, resume, vocab, merges, 1, 1, &m, &tok, &id, &ctx.log));
    LMS_TRY(cli_tokid_require(&id, "so that the export carries the tokenizer"));
    LMS_TRY(lms_hf_export_dtype(hf, &m.cfg, m.params, edt));
    if (id.kind == CLI_TOK_BPE) {
        LMS_TRY(cli_tokid_copy_to(&id, hf));
    } else { /* bytes: a tokenizer left from an earlier export would be taken for this model's */
        char p[4200];
        snprintf(p, sizeof p, "%s/vocab.json", hf);
        unlink(p);
        snprintf(p, sizeof p, "%s/merges.txt", hf);
        unlink(p);
    }
    printf("exported L=%d H=%d C=%d maxT=%d V=%d (%zu parameters, %s) to %s, with %s\n", m.cfg.L, m.cfg.NH, m.cfg.C,
           m.cfg.maxT, m.cfg.V, m.num_params, dtype, hf,
           id.kind == CLI_TOK_BPE ? "the tokenizer (vocab.json, merges.txt)" : "byte tokens (no tokenizer files)");
fail:
    lms_gpt_free(&m);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("export", st);
}
