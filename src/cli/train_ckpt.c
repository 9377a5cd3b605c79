/* The checkpoint side of `lmscale train`: --resume, --init, --save,
 * --save-every, --keep-last, --stop-after. Kept out of train.c so that the
 * training loop only calls four functions. Rules: docs/checkpoints.md. */
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

lms_status train_ckpt_prepare(const train_opts *o, train_ckpt_ctx *c, lms_tokenizer *tok, const lms_logger *lg) {
    memset(c, 0, sizeof *c);
    c->last_saved_step = -1;
    if (o->resume && o->init)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--resume and --init cannot be combined: --resume continues a "
                          "run (its own weights), --init starts a new one from Hugging Face weights");
    if (o->save_every < 0 || o->keep_last < 0 || o->stop_after < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--save-every, --keep-last and --stop-after must not be negative");
    if ((o->save_every || o->keep_last) && !o->save_dir)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--save-every and --keep-last need --save DIR");
    if (o->resume) {
        LMS_CHECK(lms_ckpt_resolve(o->resume, lg, &c->resume_path));
        lms_ckpt *ck = calloc(1, sizeof *ck);
        if (!ck) return lms_errorf(LMS_ERR_OOM, "out of memory");
        c->ck = ck;
        LMS_CHECK(lms_ckpt_open(ck, c->resume_path));
        if (strcmp(ck->state.tok_kind, "bytes") != 0)
            return lms_errorf(LMS_ERR_UNSUPPORTED, "checkpoint '%s' was trained with a %s tokenizer; this build "
                              "resumes byte-level runs only", c->resume_path, ck->state.tok_kind);
        c->cfg = ck->state.cfg;
        c->have_cfg = 1;
        char src[600];
        snprintf(src, sizeof src, "checkpoint '%s'", c->resume_path);
        return check_flags(o, &c->cfg, src);
    }
    if (o->init) {
        LMS_CHECK(lms_hf_read_config(o->init, &c->cfg));
        c->have_cfg = 1;
        int loaded;
        LMS_CHECK(lms_hf_load_tokenizer(o->init, tok, &loaded));
        char src[600];
        snprintf(src, sizeof src, "--init '%s'", o->init);
        return check_flags(o, &c->cfg, src);
    }
    return LMS_OK;
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

lms_status train_ckpt_restore(const train_opts *o, train_ckpt_ctx *c, lms_gpt *m, lms_adamw *opt, uint64_t seed) {
    if (c->ck) return lms_ckpt_load_train((lms_ckpt *)c->ck, m, opt);
    if (o->init) return lms_hf_load_params(o->init, &m->cfg, m->params);
    lms_gpt_init_params(m, seed);
    return LMS_OK;
}

lms_status train_ckpt_maybe_save(const train_opts *o, train_ckpt_ctx *c, int steps_done, int final,
                                 const lms_schedule *sched, int G, int T, uint64_t seed, lms_data_order order,
                                 const lms_tokenizer *tok, const lms_gpt *m, const lms_adamw *opt,
                                 const lms_logger *lg) {
    if (!o->save_dir || steps_done == c->last_saved_step) return LMS_OK;
    if (!final && !(o->save_every > 0 && steps_done % o->save_every == 0)) return LMS_OK;
    lms_ckpt_state st;
    lms_ckpt_state_init(&st, &m->cfg);
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
    snprintf(st.tok_kind, sizeof st.tok_kind, "%s", tok->kind == LMS_TOK_BPE ? "bpe" : "bytes");
    double t0 = lms_now_s();
    char *path = NULL;
    LMS_CHECK(lms_ckpt_save_train(o->save_dir, &st, m, opt, o->keep_last, &path));
    lms_log(lg, LMS_LOG_INFO, "saved checkpoint %s (%.2f s)", path ? path : o->save_dir, lms_now_s() - t0);
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
