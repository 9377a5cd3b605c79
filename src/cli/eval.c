/* `lmscale eval`: mean loss over consecutive windows of a text file. */
#include "cli.h"
#include "lmscale/obs.h"
#include "lmscale/checkpoint.h"

#include <math.h>
#include <string.h>

int cmd_eval(int argc, char **argv) {
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    const char *load = NULL, *init = NULL, *resume = NULL, *data = NULL, *backend = "cpu";
    const char *vocab = NULL, *merges = NULL;
    int seq_len = 0, batch = 8, max_batches = 0, threads = 0;
    uint64_t seed = 1337;
    const cli_opt opts[] = {
        {"load", CLI_STR, &load, "FILE", "model file from 'train --save-model' (else a fresh model from the flags below)"},
        {"init", CLI_STR, &init, "DIR", "Hugging Face GPT-2 directory (config.json + model.safetensors)"},
        {"resume", CLI_STR, &resume, "DIR", "training checkpoint, or the newest valid one in DIR"},
        CLI_MODEL_FLAGS(mo),
        {"data", CLI_STR, &data, "FILES", "data to evaluate on (required): text, or token shards (lmscale, llm.c, Megatron); a comma list, a glob, or a directory (its val.bin or *val* shards)"},
        {"vocab", CLI_STR, &vocab, "FILE", "GPT-2 vocab.json (with --merges): the tokenizer, when the model does not bring one; else it must be the model's"},
        {"merges", CLI_STR, &merges, "FILE", "GPT-2 merges.txt (with --vocab)"},
        {"seq-len", CLI_INT, &seq_len, "T", "window length (default: the model's maximum; without --load, at most 1024)"},
        {"batch-size", CLI_INT, &batch, "B", "windows per forward pass"},
        {"max-batches", CLI_INT, &max_batches, "N", "stop after N batches (0 = the whole file)"},
        {"seed", CLI_U64, &seed, "S", "initialisation seed when no --load"},
        {"backend", CLI_STR, &backend, "NAME", "cpu or ref"},
        {"threads", CLI_INT, &threads, "N", "worker threads (0 = all cores)"},
    };
    cli_spec spec = {"eval", "lmscale eval: loss and perplexity over consecutive non-overlapping windows.",
                     "lmscale eval --load FILE --data FILE [flags]", opts, (int)(sizeof opts / sizeof opts[0]),
                     "prints a final line: loss=<float> ppl=<float> tokens=<int>"};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("eval", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_gpt m = {0};
    lms_gpt_acts acts = {0};
    lms_tokens toks = {0};
    lms_backend be = {0};
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    lms_ctx ctx;
    lms_ctx_init(&ctx, seed, threads);
    LMS_TRY(lms_backend_init(&be, backend));
    if (!data) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--data FILE is required: the text to evaluate on");
        goto fail;
    }
    if (batch < 1 || max_batches < 0 || seq_len < 0 || threads < 0) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size must be >= 1, --max-batches, --seq-len and "
                        "--threads >= 0");
        goto fail;
    }
    cli_tok_id id;
    if (load || init || resume) { /* the model and the tokenizer it records */
        LMS_TRY(cli_load_model(load, init, resume, vocab, merges, batch, seq_len, &m, &tok, &id, &ctx.log));
        LMS_TRY(cli_check_data_tokenizer(data, &id));
        LMS_TRY(lms_tokens_open_role(data, &tok, LMS_DATA_VAL, &toks));
    } else {
        int text;
        if (vocab || merges) {
            LMS_TRY(cli_tokid_files(&id, vocab, merges, "--vocab/--merges"));
        } else { /* a new model: the data's tokenizer, else bytes */
            LMS_TRY(cli_tokid_data(data, LMS_DATA_VAL, &id, &text));
            if (id.kind == CLI_TOK_UNKNOWN) cli_tokid_set(&id, CLI_TOK_BYTES, "byte tokens (no --vocab/--merges)");
        }
        LMS_TRY(cli_tokid_load(&id, &tok));
        LMS_TRY(cli_check_data_tokenizer(data, &id));
        LMS_TRY(lms_tokens_open_role(data, &tok, LMS_DATA_VAL, &toks)); /* data errors before any big allocation */
        lms_gpt_config cfg;
        LMS_TRY(cli_model_config(&mo, &cfg));
        int T = seq_len ? seq_len : (cfg.maxT < 1024 ? cfg.maxT : 1024);
        if (T > cfg.maxT) {
            st = lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d is above the model's maximum %d", T, cfg.maxT);
            goto fail;
        }
        LMS_TRY(lms_gpt_init(&m, &cfg, batch, T, 0));
        lms_gpt_init_params(&m, seed);
    }
    LMS_TRY(lms_tokens_check_vocab(&toks, m.cfg.V, data));
    lms_loader ld;
    LMS_TRY(lms_loader_init(&ld, toks.tokens, toks.n, m.cap_T, LMS_ORDER_SEQUENTIAL, seed, data));
    LMS_TRY(lms_gpt_acts_init_on(&acts, &m.cfg, batch, m.cap_T, 0, LMS_RECOMPUTE_NONE, &be));
    double loss;
    long ntok;
    size_t nw = lms_loader_num_windows(&ld);
    if (max_batches > 0 && (size_t)max_batches * (size_t)batch < nw) nw = (size_t)max_batches * (size_t)batch;
    lms_progress prog;
    lms_progress_begin(&prog, "eval", (double)nw * ld.T, "tokens", 1);
    st = eval_loss_ex(&m, &be, &acts, &ld, batch, max_batches, &loss, &ntok, &prog);
    if (st != LMS_OK) lms_progress_abort(&prog);
    LMS_TRY(st);
    lms_progress_end(&prog);
    printf("loss=%.6f ppl=%.4f tokens=%ld\n", loss, exp(loss), ntok);
fail:
    lms_gpt_acts_free(&acts);
    lms_gpt_free(&m);
    lms_tokens_free(&toks);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("eval", st);
}
