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

static lms_status file_crc(const char *path, uint32_t *crc) {
    unsigned char *buf;
    size_t n;
    LMS_CHECK(lms_read_file(path, &buf, &n));
    *crc = lms_crc32(0, buf, n);
    free(buf);
    return LMS_OK;
}

/* Records the BPE files behind tok: absolute paths and CRCs. */
static lms_status record_tokenizer_files(train_ckpt_ctx *c, const char *v, const char *mg, const char *dir) {
    char *av = realpath(v, NULL), *am = realpath(mg, NULL);
    lms_status st = LMS_OK;
    if (!av || !am || strlen(av) >= sizeof c->tok_vocab || strlen(am) >= sizeof c->tok_merges)
        st = lms_errorf(LMS_ERR_IO, "cannot record the tokenizer files of '%s' (paths missing or longer than "
                        "255 bytes)", dir);
    if (st == LMS_OK) {
        snprintf(c->tok_vocab, sizeof c->tok_vocab, "%s", av);
        snprintf(c->tok_merges, sizeof c->tok_merges, "%s", am);
        st = file_crc(av, &c->tok_vocab_crc);
        if (st == LMS_OK) st = file_crc(am, &c->tok_merges_crc);
    }
    free(av);
    free(am);
    return st;
}

static lms_status record_tokenizer(train_ckpt_ctx *c, const char *dir) {
    char v[4096], mg[4096];
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/merges.txt", dir);
    return record_tokenizer_files(c, v, mg, dir);
}

/* Loads the BPE tokenizer a checkpoint names, refusing files that changed. */
static lms_status resume_tokenizer(train_ckpt_ctx *c, const lms_ckpt_state *s, lms_tokenizer *tok) {
    uint32_t vc, mc;
    lms_status st = file_crc(s->tok_vocab, &vc);
    if (st == LMS_OK) st = file_crc(s->tok_merges, &mc);
    if (st != LMS_OK)
        return lms_error_context(st, "checkpoint '%s' was trained with the tokenizer %s + %s, which cannot be "
                                 "read now (restore those files to resume)", c->resume_path, s->tok_vocab,
                                 s->tok_merges);
    if (vc != s->tok_vocab_crc || mc != s->tok_merges_crc)
        return lms_errorf(LMS_ERR_FORMAT, "the tokenizer files %s / %s changed since checkpoint '%s' was written "
                          "(CRC-32 %08x/%08x, recorded %08x/%08x): resuming would re-tokenize the data "
                          "differently; restore the original files", s->tok_vocab, s->tok_merges, c->resume_path,
                          vc, mc, s->tok_vocab_crc, s->tok_merges_crc);
    LMS_CHECK(lms_tokenizer_load_bpe(tok, s->tok_vocab, s->tok_merges));
    snprintf(c->tok_vocab, sizeof c->tok_vocab, "%s", s->tok_vocab);
    snprintf(c->tok_merges, sizeof c->tok_merges, "%s", s->tok_merges);
    c->tok_vocab_crc = vc;
    c->tok_merges_crc = mc;
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
    if ((o->save_every || o->keep_last) && !o->save_dir && !o->resume) /* a resume saves where it resumes from */
        return lms_errorf(LMS_ERR_INVALID_ARG, "--save-every and --keep-last need --save DIR");
    if ((o->vocab || o->merges) && (o->resume || o->init))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--vocab/--merges cannot be combined with --%s, which brings its "
                          "own tokenizer", o->resume ? "resume" : "init");
    if (o->vocab || o->merges) {
        LMS_CHECK(cli_load_tokenizer(o->vocab, o->merges, tok));
        LMS_CHECK(record_tokenizer_files(c, o->vocab, o->merges, "--vocab/--merges"));
    }
    if (o->resume) {
        LMS_CHECK(lms_ckpt_resolve(o->resume, lg, &c->resume_path));
        lms_ckpt *ck = calloc(1, sizeof *ck);
        if (!ck) return lms_errorf(LMS_ERR_OOM, "out of memory");
        c->ck = ck;
        LMS_CHECK(lms_ckpt_open(ck, c->resume_path));
        if (strcmp(ck->state.tok_kind, "bpe") == 0)
            LMS_CHECK(resume_tokenizer(c, &ck->state, tok));
        else if (strcmp(ck->state.tok_kind, "bytes") != 0)
            return lms_errorf(LMS_ERR_UNSUPPORTED, "checkpoint '%s' names a '%s' tokenizer, which this build does "
                              "not know (bytes or bpe)", c->resume_path, ck->state.tok_kind);
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
        if (loaded) LMS_CHECK(record_tokenizer(c, o->init));
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
    snprintf(st.tok_kind, sizeof st.tok_kind, "%s", tok->kind == LMS_TOK_BPE ? "bpe" : "bytes");
    if (tok->kind == LMS_TOK_BPE) {
        snprintf(st.tok_vocab, sizeof st.tok_vocab, "%s", c->tok_vocab);
        snprintf(st.tok_merges, sizeof st.tok_merges, "%s", c->tok_merges);
        st.tok_vocab_crc = c->tok_vocab_crc;
        st.tok_merges_crc = c->tok_merges_crc;
    }
    double t0 = lms_now_s();
    char *path = NULL;
    if (z)
        LMS_CHECK(save_zero(o, &st, z, opt, &path));
    else
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
