/* The checkpoint side of `lmscale train`: --resume, --init, --save,
 * --save-every, --keep-last, --stop-after. Kept out of train.c so that the
 * training loop only calls three functions; what each rank holds and writes
 * is the trainer's (src/train). Rules: docs/checkpoints.md. */
#define _GNU_SOURCE /* realpath */
#include "cli.h"
#include "lmscale/checkpoint.h"

#include <stdlib.h>
#include <string.h>

static lms_status check_flags(const train_opts *o, const lms_gpt_config *have, const char *src) {
    if (!o->model_flags_given) return LMS_OK;
    lms_gpt_config want;
    LMS_CHECK(cli_model_config(&o->model, &want));
    if (want.L != have->L || want.NH != have->NH || want.C != have->C || want.maxT != have->maxT ||
        want.V != have->V)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the model flags ask for L=%d H=%d C=%d maxT=%d V=%d but %s holds "
                          "L=%d H=%d C=%d maxT=%d V=%d: drop --model and the size flags (the model comes from "
                          "%s) or start a new run without it", want.L, want.NH, want.C, want.maxT, want.V, src,
                          have->L, have->NH, have->C, have->maxT, have->V, src);
    return LMS_OK;
}

/* The run's tokenizer: --vocab/--merges, the checkpoint's, --init's or the
 * data's; the data must agree with it (docs/checkpoints.md, "Tokenizer"). */
static lms_status run_tokenizer(const train_opts *o, cli_tok_id *run, lms_tokenizer *tok, const lms_logger *lg) {
    cli_tok_id d;
    int text = 0;
    if (o->data) {
        LMS_CHECK(cli_tokid_data(o->data, LMS_DATA_TRAIN, &d, &text));
        if (o->val_data) {
            cli_tok_id dv;
            int tv;
            LMS_CHECK(cli_tokid_data(o->val_data, LMS_DATA_VAL, &dv, &tv));
            LMS_CHECK(cli_tokid_agree(&dv, &d, "Give training and validation data made with one tokenizer."));
            if (d.kind == CLI_TOK_UNKNOWN || (dv.have_files && !d.have_files)) d = dv;
            text |= tv;
        }
    } else {
        cli_tokid_set(&d, CLI_TOK_UNKNOWN, "the data");
    }
    if (run->kind == CLI_TOK_UNKNOWN && !o->resume) { /* a new run without --vocab/--merges: the data's */
        if (d.kind == CLI_TOK_BPE && d.have_files) {
            *run = d;
            lms_log(lg, LMS_LOG_INFO, "tokenizer: %s + %s (beside the data; recorded in checkpoints)", d.vocab,
                    d.merges);
        } else if (d.kind == CLI_TOK_BYTES || (d.kind == CLI_TOK_UNKNOWN && (text || !o->data))) {
            cli_tokid_set(run, CLI_TOK_BYTES, "this run (byte tokens: no --vocab/--merges)");
        } else {
            cli_tokid_set(run, d.kind, d.src);
            if (!text)
                lms_log(lg, LMS_LOG_WARN, "%s names no tokenizer files: checkpoints will not record the tokenizer, "
                        "and eval/generate will need --vocab/--merges (give them here to record them)", run->src);
        }
    }
    LMS_CHECK(cli_tokid_agree(&d, run, "Use data tokenized with the run's tokenizer (lmscale data prepare "
                              "--vocab/--merges), or start a new run."));
    if (text && !(run->kind == CLI_TOK_BYTES || run->have_files))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--data has text files, but %s does not name its tokenizer files: "
                          "give --vocab/--merges to tokenize the text", run->src);
    return cli_tokid_load(run, tok);
}

lms_status train_ckpt_prepare(const train_opts *o, train_ckpt_ctx *c, lms_tokenizer *tok, const lms_logger *lg) {
    memset(c, 0, sizeof *c);
    c->last_saved_step = -1;
    if (o->resume && o->init)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--resume and --init cannot be combined: --resume continues a "
                          "run (its own weights), --init starts a new one from Hugging Face weights");
    if (o->save_every < 0 || o->keep_last < 0 || o->stop_after < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--save-every, --keep-last and --stop-after must not be negative");
    if ((o->save_every || o->keep_last) && !o->save_dir && !o->resume) /* a resume saves where it resumes from */
        return lms_errorf(LMS_ERR_INVALID_ARG, "--save-every and --keep-last need --save DIR");
    cli_tok_id given;
    cli_tokid_set(&given, CLI_TOK_UNKNOWN, "--vocab/--merges");
    if (o->vocab || o->merges) LMS_CHECK(cli_tokid_files(&given, o->vocab, o->merges, "--vocab/--merges"));
    c->tok_id = given;
    char src[4200];
    if (o->resume) {
        LMS_CHECK(lms_ckpt_resolve(o->resume, lg, &c->resume_path));
        lms_ckpt *ck = calloc(1, sizeof *ck);
        if (!ck) return lms_errorf(LMS_ERR_OOM, "out of memory");
        c->ck = ck;
        LMS_CHECK(lms_ckpt_open(ck, c->resume_path));
        LMS_CHECK(cli_tokid_ckpt(&ck->state, c->resume_path, &given, &c->tok_id));
        c->cfg = ck->state.cfg;
        c->have_cfg = 1;
        snprintf(src, sizeof src, "checkpoint '%s'", c->resume_path);
    } else if (o->init) {
        LMS_CHECK(lms_hf_read_config(o->init, &c->cfg));
        c->have_cfg = 1;
        snprintf(src, sizeof src, "--init '%s'", o->init);
        cli_tok_id hf;
        int found;
        LMS_CHECK(cli_tokid_dir(&hf, o->init, src, &found));
        if (found) {
            LMS_CHECK(cli_tokid_agree(&given, &hf, "Drop --vocab/--merges (--init brings its tokenizer)."));
            c->tok_id = hf;
        } else if (given.kind == CLI_TOK_UNKNOWN) {
            cli_tokid_hf_bytes(&c->tok_id, src, c->cfg.V, lg);
        }
    }
    LMS_CHECK(run_tokenizer(o, &c->tok_id, tok, lg));
    return c->have_cfg ? check_flags(o, &c->cfg, src) : LMS_OK;
}

lms_status train_ckpt_start(const train_opts *o, train_ckpt_ctx *c, int G, int T, uint64_t *seed,
                            lms_data_order *order, int *start_step) {
    *start_step = 0;
    if (!c->ck) return LMS_OK;
    const lms_ckpt_state *s = &((lms_ckpt *)c->ck)->state;
    if (s->global_batch != G || s->seq_len != T)
        return lms_errorf(LMS_ERR_INVALID_ARG, "checkpoint '%s' was trained with --batch-size %d --seq-len %d, "
                          "this run asks for --batch-size %d --seq-len %d: resume with the same values (the "
                          "data position is counted in those windows)", c->resume_path, s->global_batch,
                          s->seq_len, G, T);
    if (s->step >= o->steps)
        return lms_errorf(LMS_ERR_INVALID_ARG, "checkpoint '%s' is already at step %d and --steps is %d: raise "
                          "--steps (it counts the whole run, not the steps after resuming)", c->resume_path,
                          s->step, o->steps);
    *seed = s->seed;
    LMS_CHECK(lms_data_order_parse(s->data_order, order));
    *start_step = s->step;
    return LMS_OK;
}

lms_status train_ckpt_maybe_save(const train_opts *o, train_ckpt_ctx *c, int steps_done, int final,
                                 const lms_schedule *sched, int G, int T, uint64_t seed, lms_data_order order,
                                 const lms_tokenizer *tok, lms_trainer *tr, const lms_logger *lg) {
    if (!o->save_dir || steps_done == c->last_saved_step) return LMS_OK;
    if (!final && !(o->save_every > 0 && steps_done % o->save_every == 0)) return LMS_OK;
    lms_ckpt_state st;
    const lms_adamw *opt = &tr->opt;
    lms_ckpt_state_init(&st, &tr->cfg); /* the whole model's, whatever the tp */
    st.step = steps_done;
    st.seed = seed;
    st.data_window = (uint64_t)steps_done * (uint64_t)G;
    st.global_batch = G;
    st.seq_len = T;
    snprintf(st.data_order, sizeof st.data_order, "%s", order == LMS_ORDER_SEQUENTIAL ? "sequential" : "random");
    st.sched = *sched;
    st.beta1 = opt->beta1;
    st.beta2 = opt->beta2;
    st.eps = opt->eps;
    st.weight_decay = opt->weight_decay;
    st.grad_clip = o->grad_clip;
    st.adam_step = opt->step;
    snprintf(st.dtype, sizeof st.dtype, "%s", o->dtype ? o->dtype : "fp32");
    if (tr->o.dtype == LMS_DT_F16) { /* the loss scaler, for an exact resume */
        st.loss_scale = tr->scaler.scale;
        st.loss_scale_clean = tr->scaler.clean;
        st.skipped_steps = tr->scaler.skipped;
        st.static_loss_scale = o->loss_scale;
        st.min_loss_scale = tr->scaler.min_scale;
        st.loss_scale_window = tr->scaler.window;
    }
    st.run = c->run;
    (void)tok;
    LMS_CHECK(cli_tokid_record(&c->tok_id, &st));
    double t0 = lms_now_s();
    char *path = NULL;
    LMS_CHECK(lms_trainer_save(tr, o->save_dir, &st, o->keep_last, &path));
    /* a copy of the tokenizer inside the checkpoint (resume and export read it first); DP rank 0 writes it */
    lms_status ts = path && tr->topo.rank == 0 ? cli_tokid_copy_to(&c->tok_id, path) : LMS_OK;
    if (ts != LMS_OK) {
        free(path);
        return lms_error_context(ts, "copying the tokenizer into the checkpoint");
    }
    if (path) lms_log(lg, LMS_LOG_INFO, "saved checkpoint %s (%.2f s)", path, lms_now_s() - t0);
    free(path);
    c->last_saved_step = steps_done;
    return LMS_OK;
}

void train_ckpt_free(train_ckpt_ctx *c) {
    if (c->ck) lms_ckpt_close((lms_ckpt *)c->ck);
    free(c->ck);
    free(c->resume_path);
    memset(c, 0, sizeof *c);
}
