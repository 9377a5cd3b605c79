/* `lmscale generate`: sample text with a KV cache (or, for checking,
 * without one), streaming tokens as they are produced. */
#include "cli.h"
#include "lmscale/checkpoint.h"

#include <stdlib.h>
#include <string.h>

int cmd_generate(int argc, char **argv) {
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    const char *load = NULL, *init = NULL, *resume = NULL, *prompt = "", *backend = "cpu";
    const char *vocab = NULL, *merges = NULL;
    int max_new = 200, top_k = 0, no_kv = 0, threads = 0;
    float temperature = 1.0f, top_p = 1.0f;
    uint64_t seed = 1337;
    const cli_opt opts[] = {
        {"load", CLI_STR, &load, "FILE", "model file from 'train --save-model' (else an untrained model)"},
        {"init", CLI_STR, &init, "DIR", "Hugging Face GPT-2 directory (config.json + model.safetensors)"},
        {"resume", CLI_STR, &resume, "DIR", "training checkpoint, or the newest valid one in DIR"},
        CLI_MODEL_FLAGS(mo),
        {"vocab", CLI_STR, &vocab, "FILE", "GPT-2 vocab.json (with --merges): the tokenizer, when the model does not bring one; else it must be the model's"},
        {"merges", CLI_STR, &merges, "FILE", "GPT-2 merges.txt (with --vocab)"},
        {"prompt", CLI_STR, &prompt, "TEXT", "text to continue (empty: start from <|endoftext|>)"},
        {"max-new-tokens", CLI_INT, &max_new, "N", "tokens to generate at most"},
        {"temperature", CLI_FLOAT, &temperature, "T", "softmax temperature (0 = greedy)"},
        {"top-k", CLI_INT, &top_k, "K", "sample from the K most likely tokens (0 = off)"},
        {"top-p", CLI_FLOAT, &top_p, "P", "nucleus sampling: smallest set with probability >= P (1 = off)"},
        {"seed", CLI_U64, &seed, "S", "sampling seed"},
        {"no-kv-cache", CLI_BOOL, &no_kv, NULL, "recompute the whole sequence each step (for checking)"},
        {"backend", CLI_STR, &backend, "NAME", "cpu or ref"},
        {"threads", CLI_INT, &threads, "N", "worker threads (0 = all cores)"},
    };
    cli_spec spec = {"generate", "lmscale generate: sample a continuation of a prompt.",
                     "lmscale generate --load FILE --prompt TEXT [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("generate", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_gpt m = {0};
    lms_kv_cache kv = {0};
    lms_gpt_acts acts = {0}; /* the whole-sequence forward of --no-kv-cache */
    lms_backend be = {0};
    int32_t *ids = NULL, *seq = NULL;
    float *logits = NULL;
    void *scratch = NULL;
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    lms_ctx ctx;
    lms_ctx_init(&ctx, seed, threads);
    LMS_TRY(lms_backend_init(&be, backend));
    if (max_new < 0 || top_k < 0 || !(temperature >= 0) || !(top_p > 0 && top_p <= 1)) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--max-new-tokens and --top-k must be >= 0, --temperature >= 0, "
                        "--top-p in (0, 1]");
        goto fail;
    }
    if (load || init || resume) {
        cli_tok_id id;
        LMS_TRY(cli_load_model(load, init, resume, vocab, merges, 1, 0, &m, &tok, &id, &ctx.log));
        LMS_TRY(cli_tokid_require(&id, "to encode the prompt and decode the output"));
    } else {
        LMS_TRY(cli_load_tokenizer(vocab, merges, &tok));
        lms_gpt_config cfg;
        LMS_TRY(cli_model_config(&mo, &cfg));
        LMS_TRY(lms_gpt_init(&m, &cfg, 1, cfg.maxT, 0));
        lms_gpt_init_params(&m, seed);
        fprintf(stderr, "note: no --load given: sampling from an untrained model\n");
    }
    if (m.cfg.V < tok.vocab_size) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "the model's vocabulary (%d) is smaller than the %s tokenizer's (%d)",
                        m.cfg.V, tok.kind == LMS_TOK_BPE ? "BPE" : "byte", tok.vocab_size);
        goto fail;
    }
    size_t nprompt;
    LMS_TRY(lms_tokenizer_encode(&tok, (const unsigned char *)prompt, strlen(prompt), &ids, &nprompt));
    if (nprompt == 0) {
        ids[0] = tok.eot;
        nprompt = 1;
    }
    const int maxT = m.cfg.maxT;
    if (nprompt > (size_t)maxT) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "the prompt is %zu tokens, above the model's maximum sequence "
                        "length %d: shorten it", nprompt, maxT);
        goto fail;
    }
    seq = malloc(sizeof(int32_t) * (size_t)maxT);
    logits = malloc(sizeof(float) * (size_t)m.cfg.Vp);
    scratch = malloc(2 * sizeof(float) * (size_t)m.cfg.Vp);
    if (!seq || !logits || !scratch) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for generation buffers");
        goto fail;
    }
    memcpy(seq, ids, sizeof(int32_t) * nprompt);
    int len = (int)nprompt;
    if (!no_kv)
        LMS_TRY(lms_kv_cache_init_on(&kv, &m.cfg, &be));
    else
        LMS_TRY(lms_gpt_acts_init_on(&acts, &m.cfg, 1, maxT, 0, LMS_RECOMPUTE_NONE, &be));
    lms_sampler sm = {temperature, top_k, top_p};
    uint64_t key = lms_rng_key(seed, "generate");
    double t0 = lms_now_s();
    int produced = 0;
    if (!no_kv)
        for (int i = 0; i < len; i++) LMS_TRY(lms_gpt_decode_step(&m, &be, &kv, seq[i], logits));
    fwrite(prompt, 1, strlen(prompt), stdout);
    while (produced < max_new && len < maxT) {
        if (no_kv) {
            LMS_TRY(lms_gpt_forward(&m, &be, &acts, seq, NULL, 1, len, NULL));
            memcpy(logits, acts.head.logits + (size_t)(len - 1) * m.cfg.Vp, sizeof(float) * m.cfg.Vp);
        }
        int next = lms_sample(logits, m.cfg.V, &sm, lms_rng_uniform(key, (uint64_t)produced), scratch);
        produced++;
        if (next == tok.eot) break;
        seq[len++] = next;
        char buf[256];
        size_t nb = lms_tokenizer_decode(&tok, next, buf, sizeof buf);
        fwrite(buf, 1, nb < sizeof buf ? nb : sizeof buf, stdout);
        fflush(stdout);
        if (!no_kv && len < maxT) LMS_TRY(lms_gpt_decode_step(&m, &be, &kv, next, logits));
    }
    double dt = lms_now_s() - t0;
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "generated %d tokens in %.3f s (%.1f tokens/s, %s)%s\n", produced, dt,
            dt > 0 ? produced / dt : 0.0, no_kv ? "no KV cache" : "KV cache",
            len >= maxT ? "; stopped at the model's maximum sequence length" : "");
fail:
    free(ids);
    free(seq);
    free(logits);
    free(scratch);
    lms_kv_cache_free(&kv);
    lms_gpt_acts_free(&acts);
    lms_gpt_free(&m);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("generate", st);
}
