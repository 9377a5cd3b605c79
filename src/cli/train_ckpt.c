/* The checkpoint side of `lmscale train`: --resume, --init, --save,
 * --save-every, --keep-last, --stop-after. Kept out of train.c so that the
 * training loop only calls four functions. Rules: docs/checkpoints.md. */
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

lms_status train_ckpt_restore(const train_opts *o, train_ckpt_ctx *c, lms_gpt *m, lms_adamw *opt, uint64_t seed) {
    if (c->ck) return lms_ckpt_load_train((lms_ckpt *)c->ck, m, opt);
    if (o->init) return lms_hf_load_params(o->init, &m->cfg, m->params);
    lms_gpt_init_params(m, seed);
    return LMS_OK;
}

/* dst[shard] = this rank's parts of `name` (a tensor of the layout) from
 * the checkpoint, read whole into buf. */
static lms_status read_parts(const lms_ckpt *ck, const lms_zero *z, const lms_tensor_view *v, const char *group,
                             float *buf, float *dst) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s%s", group, v->name);
    LMS_CHECK(lms_ckpt_read_tensor(ck, nm, buf, v->numel));
    for (int u = 0; u < z->nunits; u++) {
        size_t a, b;
        if (lms_zero_overlap(z, u, v, &a, &b))
            memcpy(dst + z->units[u].shard_off + (a - lms_zero_part_lo(z, u)), buf + (a - v->offset),
                   sizeof(float) * (b - a));
    }
    return LMS_OK;
}

lms_status train_ckpt_restore_zero(const train_opts *o, train_ckpt_ctx *c, lms_zero *z, lms_adamw *opt,
                                   uint64_t seed) {
    lms_gpt *m = z->m;
    if (!c->ck && !o->init) {
        if (z->stage == 3)
            lms_zero_init_params(z, seed);
        else
            lms_gpt_init_params(m, seed);
        return LMS_OK;
    }
    if (!c->ck && z->stage < 3) return lms_hf_load_params(o->init, &m->cfg, m->params);
    lms_status st = LMS_OK;
    float *buf = NULL;
    size_t cap = !c->ck ? m->num_params : 0; /* --init: the whole model, then its parts */
    for (int i = 0; i < m->num_tensors; i++)
        if (m->tensors[i].numel > cap) cap = m->tensors[i].numel;
    LMS_TRY(lms_alloc_checked((void **)&buf, sizeof(float) * cap, "checkpoint loading"));
    if (!c->ck) {
        LMS_TRY(lms_hf_load_params(o->init, &m->cfg, buf));
        lms_zero_shard_from_full(z, buf, z->master);
        goto fail; /* done */
    }
    const lms_ckpt *ck = c->ck;
    if (z->stage < 3) LMS_TRY(lms_ckpt_load_train(ck, m, NULL)); /* the whole model; checks shapes */
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        if (z->stage == 3) LMS_TRY(read_parts(ck, z, v, "model.", buf, z->master));
        LMS_TRY(read_parts(ck, z, v, "optim.exp_avg.", buf, opt->m));
        LMS_TRY(read_parts(ck, z, v, "optim.exp_avg_sq.", buf, opt->v));
    }
    opt->step = ck->state.adam_step;
fail:
    lms_free(buf);
    return st;
}

/* ZeRO: this rank's parts of the optimizer state (and of the parameters at
 * stage 3; rank 0 writes the whole parameters at stages 1 and 2). */
static lms_status save_zero(const train_opts *o, const lms_ckpt_state *st, const lms_zero *z, const lms_adamw *opt,
                            char **path) {
    const lms_gpt *m = z->m;
    int cap = (z->nviews + m->num_tensors) * 3, n = 0;
    lms_ckpt_piece *pc = calloc((size_t)cap, sizeof *pc);
    if (!pc) return lms_errorf(LMS_ERR_OOM, "out of memory");
    static const char *const groups[3] = {"model.", "optim.exp_avg.", "optim.exp_avg_sq."};
    for (int g = 0; g < 3; g++) {
        if (g == 0 && z->stage < 3) { /* the parameters are whole on every rank */
            for (int i = 0; z->rank == 0 && i < m->num_tensors; i++, n++) {
                const lms_tensor_view *v = &m->tensors[i];
                snprintf(pc[n].name, sizeof pc[n].name, "model.%s", v->name);
                pc[n].ndim = v->ndim;
                pc[n].shape[0] = v->shape[0];
                pc[n].shape[1] = v->shape[1];
                pc[n].count = v->numel;
                pc[n].data = m->params + v->offset;
            }
            continue;
        }
        const float *src = g == 0 ? z->master : g == 1 ? opt->m : opt->v;
        for (int u = 0; u < z->nunits; u++) {
            const size_t lo = lms_zero_part_lo(z, u);
            for (int i = 0; i < m->num_tensors; i++) {
                const lms_tensor_view *v = &m->tensors[i];
                size_t a, b;
                if (!lms_zero_overlap(z, u, v, &a, &b)) continue;
                LMS_ASSERT(n < cap);
                snprintf(pc[n].name, sizeof pc[n].name, "%s%s", groups[g], v->name);
                pc[n].ndim = v->ndim;
                pc[n].shape[0] = v->shape[0];
                pc[n].shape[1] = v->shape[1];
                pc[n].start = a - v->offset;
                pc[n].count = b - a;
                pc[n].data = src + z->units[u].shard_off + (a - lo);
                n++;
            }
        }
    }
    lms_status s = lms_ckpt_save_pieces(o->save_dir, st, z->comm, pc, n, o->keep_last, path);
    free(pc);
    return s;
}

lms_status train_ckpt_maybe_save(const train_opts *o, train_ckpt_ctx *c, int steps_done, int final,
                                 const lms_schedule *sched, int G, int T, uint64_t seed, lms_data_order order,
                                 const lms_tokenizer *tok, const lms_gpt *m, const lms_adamw *opt,
                                 const lms_zero *z, const lms_logger *lg) {
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
    st.run = c->run;
    (void)tok;
    LMS_CHECK(cli_tokid_record(&c->tok_id, &st));
    double t0 = lms_now_s();
    char *path = NULL;
    if (z)
        LMS_CHECK(save_zero(o, &st, z, opt, &path));
    else
        LMS_CHECK(lms_ckpt_save_train(o->save_dir, &st, m, opt, o->keep_last, &path));
    /* a copy of the tokenizer inside the checkpoint (resume and export read it first) */
    lms_status ts = path && (!z || z->rank == 0) ? cli_tokid_copy_to(&c->tok_id, path) : LMS_OK;
    if (ts != LMS_OK) {
        free(path);
        return lms_error_context(ts, "copying the tokenizer into the checkpoint");
    }
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
