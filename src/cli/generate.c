/* `lmscale generate`: sample text with a KV cache (or, for checking,
 * without one), streaming tokens as they are produced; with --tp N under
 * mpirun the model is split over N ranks as in training (each holds its
 * heads and its vocabulary rows), every rank gets the same logits and draws
 * the same tokens, and rank 0 prints them. */
#include "cli.h"
#include "lmscale/checkpoint.h"
#include "lmscale/comm.h"
#include "lmscale/parallel.h"

#include <stdlib.h>
#include <string.h>

/* *m (the whole model, host memory) becomes this rank's part of it at tp
 * ranks over world (the tp group): the slices of its tensors, as training
 * holds them (lms_gpt_config_local; errors name --tp). */
static lms_status split_model(lms_gpt *m, int tp, lms_comm *world, lms_gpt_tp *tpx) {
    lms_gpt_config lc;
    LMS_CHECK(lms_gpt_config_local(&m->cfg, tp, &lc));
    lms_gpt part;
    LMS_CHECK(lms_gpt_init(&part, &lc, 1, lc.maxT, 0));
    *tpx = (lms_gpt_tp){.comm = world, .size = tp, .rank = world->rank};
    part.tp = tpx;
    lms_status st = LMS_OK;
    for (int i = 0; i < part.num_tensors && st == LMS_OK; i++) {
        const lms_tensor_view *w = &m->tensors[i];
        st = lms_tp_extract(&part, &part.tensors[i], m->params + w->offset, w->shape[0],
                            part.params + part.tensors[i].offset);
    }
    if (st != LMS_OK) {
        lms_gpt_free(&part);
        return st;
    }
    lms_gpt_free(m);
    *m = part;
    return LMS_OK;
}

int cmd_generate(int argc, char **argv) {
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    const char *load = NULL, *init = NULL, *resume = NULL, *prompt = "", *backend = "cpu";
    const char *vocab = NULL, *merges = NULL;
    int max_new = 200, top_k = 0, no_kv = 0, threads = 0, tp = 1;
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
        {"tp", CLI_INT, &tp, "N", "tensor-parallel ranks: split the model over the N processes of the job (mpirun -np N), as train --tp does"},
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
    lms_comm *world = NULL; /* with --tp: the job, which is the tp group */
    lms_gpt_tp tpx = {0};
    lms_ctx ctx;
    lms_ctx_init(&ctx, seed, threads);
    LMS_TRY(lms_backend_init(&be, backend));
    if (max_new < 0 || top_k < 0 || !(temperature >= 0) || !(top_p > 0 && top_p <= 1)) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--max-new-tokens and --top-k must be >= 0, --temperature >= 0, "
                        "--top-p in (0, 1]");
        goto fail;
    }
    if (tp < 1) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d must be at least 1", tp);
        goto fail;
    }
    if (tp > 1) {
        LMS_TRY(lms_comm_world("auto", &argc, &argv, &world));
        LMS_TRY(lms_comm_set_timeout(world, -1));
        ctx.log.rank = world->rank;
        if (world->size != tp) {
            st = lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d splits the model over the job's processes, and the job "
                            "has %d: launch it with mpirun -np %d (or srun -n %d)", tp, world->size, tp, tp);
            goto fail;
        }
    }
    const int rank0 = !world || world->rank == 0;
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
        if (rank0) fprintf(stderr, "note: no --load given: sampling from an untrained model\n");
    }
    if (tp > 1) LMS_TRY(split_model(&m, tp, world, &tpx)); /* m becomes this rank's part */
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
    if (rank0) fwrite(prompt, 1, strlen(prompt), stdout);
    while (produced < max_new && len < maxT) {
        if (no_kv) {
            LMS_TRY(lms_gpt_forward(&m, &be, &acts, seq, NULL, 1, len, NULL));
            LMS_TRY(lms_gpt_logits_row(&m, &be, &acts.head, len - 1, logits));
        }
        int next = lms_sample(logits, m.cfg.V, &sm, lms_rng_uniform(key, (uint64_t)produced), scratch);
        produced++;
        if (next == tok.eot) break;
        seq[len++] = next;
        char buf[256];
        size_t nb = lms_tokenizer_decode(&tok, next, buf, sizeof buf);
        if (rank0) {
            fwrite(buf, 1, nb < sizeof buf ? nb : sizeof buf, stdout);
            fflush(stdout);
        }
        if (!no_kv && len < maxT) LMS_TRY(lms_gpt_decode_step(&m, &be, &kv, next, logits));
    }
    double dt = lms_now_s() - t0;
    if (rank0) {
        printf("\n");
        fflush(stdout);
        char how[64] = "";
        if (tp > 1) snprintf(how, sizeof how, ", tensor parallel over %d ranks", tp);
        fprintf(stderr, "generated %d tokens in %.3f s (%.1f tokens/s, %s%s)%s\n", produced, dt,
                dt > 0 ? produced / dt : 0.0, no_kv ? "no KV cache" : "KV cache", how,
                len >= maxT ? "; stopped at the model's maximum sequence length" : "");
    }
fail:
    if (st != LMS_OK && world && world->size > 1 && st != LMS_ERR_INVALID_ARG) {
        /* an error on one rank would leave the others waiting in a collective */
        fprintf(stderr, "lmscale generate: error: [rank %d] %s (aborting all %d ranks)\n", world->rank,
                lms_last_error(), world->size);
        world->i->abort(world, 1);
    }
    free(ids);
    free(seq);
    free(logits);
    free(scratch);
    lms_kv_cache_free(&kv);
    lms_gpt_acts_free(&acts);
    lms_gpt_free(&m);
    lms_gpt_tp_free_work(&tpx);
    lms_comm_free(world);
    lms_tokenizer_free(&tok);
    return st == LMS_OK ? 0 : cli_fail("generate", st);
}
