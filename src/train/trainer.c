/* The trainer: process groups, model, optimizer and gradient strategy, and
 * one training step (train.h). Every collective of the step goes to the
 * data-parallel group. */
#include "lmscale/train.h"
#include "lmscale/obs.h"
#include "train_impl.h"
#include "pipe_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- mixed precision: the compute copy of the parameters ---- */

/* The first parameter of unit u as the model's views point now. */
static float *unit_params(lms_gpt *m, int u) {
    for (int k = 0; k < m->num_tensors; k++) {
        const lms_tensor_view *v = &m->tensors[k];
        if (v->unit != u) continue;
        char *base = v->layer >= 0 ? (char *)&m->p.h[v->layer] : (char *)&m->p;
        return *(float **)(base + v->spec->slot);
    }
    return NULL;
}

/* ZeRO-3: each gathered unit rounded to the dtype where it was gathered */
static lms_status lp_acquire(void *ctx, lms_gpt *m, int u, int use) {
    lms_trainer *t = ctx;
    LMS_CHECK(t->inner_hooks->acquire(t->inner_hooks->ctx, m, u, use));
    if (use == LMS_USE_GRAD_ONLY) return LMS_OK;
    size_t off, n;
    lms_gpt_unit_range(&m->cfg, u, &off, &n);
    lms_round_to(unit_params(m, u), n, lms_lowp_dtype(t->lowp));
    return LMS_OK;
}
static lms_status lp_release(void *ctx, lms_gpt *m, int u, int use) {
    lms_trainer *t = ctx;
    return t->inner_hooks->release(t->inner_hooks->ctx, m, u, use);
}

static lms_status lowp_init(lms_trainer *t, const lms_trainer_opts *o, lms_backend *be, const lms_train_source *src) {
    t->cbe = *be;
    lms_loss_scaler_init(&t->scaler, 1.0f, 0, 1, 1.0f);
    if (o->dtype == LMS_DT_F32) return LMS_OK;
    if (o->dtype != LMS_DT_BF16 && o->dtype != LMS_DT_F16)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--dtype %s: choose fp32, bf16 or fp16", lms_dtype_name(o->dtype));
    LMS_CHECK(lms_lowp_init(&t->lowp, be, o->dtype, &t->cbe));
    if (t->m.params) {
        LMS_CHECK(lms_alloc_checked((void **)&t->lp, t->m.num_params * sizeof(float), "the low-precision parameters"));
    } else { /* ZeRO-3 */
        t->inner_hooks = t->m.hooks;
        t->lp_hooks = (lms_gpt_hooks){t, lp_acquire, lp_release};
        t->m.hooks = &t->lp_hooks;
    }
    if (o->dtype == LMS_DT_F16) {
        const int dynamic = !(o->loss_scale > 0);
        lms_loss_scaler_init(&t->scaler, dynamic ? (o->initial_loss_scale > 0 ? o->initial_loss_scale : 65536.0f)
                                                 : o->loss_scale,
                             dynamic, o->loss_scale_window > 0 ? o->loss_scale_window : 1000,
                             o->min_loss_scale > 0 ? o->min_loss_scale : 1.0f);
        const lms_ckpt *ck = src->ck;
        if (ck && strcmp(ck->state.dtype, "fp16") == 0 && ck->state.loss_scale > 0) { /* exact resume */
            if (dynamic) t->scaler.scale = ck->state.loss_scale;
            t->scaler.clean = ck->state.loss_scale_clean;
            t->scaler.skipped = ck->state.skipped_steps;
        }
    }
    return LMS_OK;
}

/* Before a step: the compute copy is the master rounded (not ZeRO-3). */
static void lowp_refresh(lms_trainer *t) {
    if (!t->lp) return;
    memcpy(t->lp, t->m.params, t->m.num_params * sizeof(float));
    lms_round_to(t->lp, t->m.num_params, lms_lowp_dtype(t->lowp));
    lms_gpt_bind_views(&t->m, t->lp, &t->m.p);
}

lms_backend *lms_trainer_compute_backend(lms_trainer *t) {
    lowp_refresh(t); /* the views may point at the master after a gather */
    return &t->cbe;
}

lms_status lms_trainer_init(lms_trainer *t, const lms_trainer_opts *o, const lms_gpt_config *cfg, lms_comm *world,
                            int dp, lms_backend *be, const lms_train_source *src) {
    lms_status st;
    memset(t, 0, sizeof *t);
    t->o = *o;
    t->be = be;
    const int tp = o->tp > 1 ? o->tp : 1, pp = o->pp > 1 ? o->pp : 1;
    LMS_CHECK(lms_topology_init(&t->topo, world->size, world->rank, dp, tp, pp));
    lms_gpt_config lcfg; /* this rank's part of the model (the whole at tp 1) */
    LMS_CHECK(lms_gpt_config_local(cfg, tp, &lcfg));
    t->cfg = *cfg;
    LMS_TRY(lms_groups_init(&t->groups, world, &t->topo));
    /* The DP group spans the world at tp = pp = 1: then the world itself
     * carries its collectives (one communicator fewer; watchdog messages
     * name the world). */
    t->dp = t->topo.dp == t->topo.world ? world : t->groups.dp;
    if (o->global_batch % t->topo.dp || (o->global_batch / t->topo.dp) % o->micro_batch) {
        st = lms_errorf(LMS_ERR_INTERNAL, "batch %d does not split into %d ranks of micro-batches of %d",
                        o->global_batch, t->topo.dp, o->micro_batch);
        goto fail;
    }
    const int local = o->global_batch / t->topo.dp;
    t->accum = local / o->micro_batch;
    t->first_sample = (uint64_t)t->topo.dp_rank * (uint64_t)local;
    /* a pipeline stage holds only its units' tensors (and the last its copy of wte) */
    unsigned char *hold = NULL;
    if (pp > 1) {
        LMS_TRY(lms_alloc_checked((void **)&hold, (size_t)cfg->L + 2, "the pipeline stage's layout"));
        st = lms_pipe_hold(o, cfg->L, pp, t->topo.pp_rank, hold);
        if (st == LMS_OK)
            st = lms_gpt_init_part(&t->m, &lcfg, o->micro_batch, o->seq_len,
                                   lms_grad_sync_model_flags(t->topo.dp, o->zero), be, hold);
        lms_free(hold);
        if (st != LMS_OK) goto fail;
    } else {
        LMS_TRY(lms_gpt_init_on(&t->m, &lcfg, o->micro_batch, o->seq_len,
                                lms_grad_sync_model_flags(t->topo.dp, o->zero), be));
    }
    if (tp > 1) {
        if (o->seq_parallel && (o->micro_batch * o->seq_len) % tp) {
            st = lms_errorf(LMS_ERR_INVALID_ARG, "--sequence-parallel splits the %d positions over --tp %d: choose "
                            "a --seq-len divisible by %d", o->seq_len, tp, tp);
            goto fail;
        }
        t->tpx = (lms_gpt_tp){.comm = t->groups.tp, .size = tp, .rank = t->topo.tp_rank,
                              .seq_parallel = o->seq_parallel};
        t->m.tp = &t->tpx;
    }
    /* a pipeline stage's activations are its pool's (pipe.c), validation's too */
    if (pp == 1) LMS_TRY(lms_gpt_acts_init_on(&t->acts, &lcfg, o->micro_batch, o->seq_len, 1, o->recompute, be));
    if (pp > 1 && o->zero > 1) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d with --pp %d is not supported: use --zero 1 (the "
                        "distributed optimizer) with pipeline parallelism", o->zero, pp);
        goto fail;
    }
    if (pp > 1)
        LMS_TRY(lms_pipe_init(t, world)); /* the pipeline and its gradient strategy "pp" */
    else
        LMS_TRY(lms_grad_sync_init(&t->sync, o->zero, t->dp, &t->m, be, (size_t)(o->bucket_mb * 1048576.0f)));
    t->sync.world = world;
    LMS_TRY(lms_adamw_init(&t->opt, t->sync.optim_n, o->beta1, o->beta2, o->eps, o->weight_decay));
    LMS_TRY(t->sync.i->restore(&t->sync, src, &t->opt));
    LMS_TRY(lowp_init(t, o, be, src));
    const size_t n = (size_t)o->micro_batch * o->seq_len;
    t->x = malloc(sizeof(int32_t) * n);
    t->y = malloc(sizeof(int32_t) * n);
    if (!t->x || !t->y) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for batches");
        goto fail;
    }
    return LMS_OK;
fail:
    lms_trainer_free(t);
    return st;
}

void lms_trainer_free(lms_trainer *t) {
    if (!t) return;
    free(t->x);
    free(t->y);
    if (t->inner_hooks && t->m.hooks == &t->lp_hooks) t->m.hooks = t->inner_hooks;
    lms_grad_sync_free(&t->sync);
    lms_pipe_free(t->pipe);
    lms_free(t->lp);
    lms_lowp_free(t->lowp);
    lms_adamw_free(&t->opt);
    lms_gpt_acts_free(&t->acts);
    lms_gpt_free(&t->m);
    lms_gpt_tp_free_work(&t->tpx);
    lms_groups_free(&t->groups);
    memset(t, 0, sizeof *t);
}

/* ---- communication counts (comm.h) ---- */

typedef struct {
    uint64_t tp, dp, pp, pp_sent, emb;
    double tp_s;
} comm_counts;

static uint64_t coll_of(const lms_comm *c) { return c ? c->coll_bytes : 0; }

static void counts_now(const lms_trainer *t, comm_counts *c) {
    c->tp = coll_of(t->groups.tp);
    c->dp = coll_of(t->dp);
    c->pp = coll_of(t->groups.pp);
    c->pp_sent = t->groups.pp ? t->groups.pp->sent_bytes : 0;
    c->emb = t->pipe ? coll_of(t->pipe->emb) : 0;
    c->tp_s = t->tpx.comm_s;
}

/* r's counts: what the step added since c0 */
static void counts_since(const lms_trainer *t, const comm_counts *c0, lms_step_result *r) {
    comm_counts c;
    counts_now(t, &c);
    r->tp_bytes = c.tp - c0->tp;
    r->dp_bytes = c.dp - c0->dp;
    r->pp_bytes = c.pp - c0->pp;
    r->pp_sent_bytes = c.pp_sent - c0->pp_sent;
    r->emb_bytes = c.emb - c0->emb;
    r->tp_comm_s = c.tp_s - c0->tp_s;
}

static lms_status step_run(lms_trainer *t, const lms_loader *ld, int step, lms_step_result *r);

lms_status lms_trainer_step(lms_trainer *t, const lms_loader *ld, int step, lms_step_result *r) {
    comm_counts c0;
    counts_now(t, &c0);
    lms_status st = step_run(t, ld, step, r);
    counts_since(t, &c0, r);
    return st;
}

static lms_status step_run(lms_trainer *t, const lms_loader *ld, int step, lms_step_result *r) {
    lms_grad_sync *s = &t->sync;
    const lms_trainer_opts *o = &t->o;
    const int T = o->seq_len, M = o->micro_batch, G = o->global_batch;
    const int fp16 = t->o.dtype == LMS_DT_F16;
    const float scale = t->scaler.scale;
    /* of the global mean, summed over the DP group; fp16: times the loss scale */
    const float dloss = fp16 ? scale / ((float)G * T) : 1.0f / ((float)G * T);
    const float fault = t->lowp ? lms_comm_fault_grad(t->topo.rank, step + 1) : 0.0f;
    r->loss_scale = fp16 ? scale : 1.0f;
    r->skipped = 0;
    lowp_refresh(t);
    LMS_CHECK(s->i->begin_step(s));
    double loss = 0;
    if (t->pipe) { /* every micro-batch, through the stages; a fault reaches the last stage's loss gradient */
        if (fault != 0) lms_lowp_poison(t->lowp, fault);
        LMS_CHECK(lms_pipe_run(t, ld, step, dloss, &loss));
    }
    for (int k = 0; !t->pipe && k < t->accum; k++) {
        PH_BEGIN(LMS_PHASE_DATA);
        for (int b = 0; b < M; b++)
            lms_loader_window(ld, (uint64_t)step * G + t->first_sample + (uint64_t)k * M + b, t->x + (size_t)b * T,
                              t->y + (size_t)b * T);
        PH_END(LMS_PHASE_DATA);
        float micro_loss;
        double tp_s = t->tpx.comm_s; /* the tp collectives' time moves to its own phase */
        /* before the forward: the fused cross-entropy writes the loss gradient there */
        if (fault != 0 && k == t->accum - 1) lms_lowp_poison(t->lowp, fault);
        PH_BEGIN(LMS_PHASE_FORWARD);
        LMS_CHECK(lms_gpt_forward_train(&t->m, &t->cbe, &t->acts, t->x, t->y, M, T, dloss, &micro_loss));
        PH_END(LMS_PHASE_FORWARD);
        if (t->obs) lms_obs_phase_move(t->obs, LMS_PHASE_FORWARD, LMS_PHASE_TP_COMM, t->tpx.comm_s - tp_s);
        loss += micro_loss;
        lms_grad_ready_fn ready;
        void *ctx;
        s->i->grad_ready(s, k == t->accum - 1, &ready, &ctx);
        tp_s = t->tpx.comm_s;
        PH_BEGIN(LMS_PHASE_BACKWARD);
        lms_status st = lms_gpt_backward(&t->m, &t->cbe, &t->acts, t->x, t->y, dloss, ready, ctx);
        PH_END(LMS_PHASE_BACKWARD);
        if (t->obs) lms_obs_phase_move(t->obs, LMS_PHASE_BACKWARD, LMS_PHASE_TP_COMM, t->tpx.comm_s - tp_s);
        if (st != LMS_OK) {
            if (ready) s->i->finish(s); /* waits for what was launched */
            return st;
        }
    }
    const int comm = strcmp(s->i->name, "none") != 0;
    if (comm) PH_BEGIN(LMS_PHASE_GRAD_COMM); /* what backward did not hide */
    LMS_CHECK(s->i->finish(s));
    if (comm) PH_END(LMS_PHASE_GRAD_COMM);
    loss /= t->accum;
    if (t->dp->size > 1) {
        double sum = 0;
        LMS_CHECK(t->dp->i->allreduce(t->dp, &loss, &sum, 1, LMS_DT_F64, LMS_RED_SUM));
        loss = sum / t->dp->size;
    }
    double norm;
    PH_BEGIN(LMS_PHASE_OPTIM);
    LMS_CHECK(s->i->global_norm(s, &norm));
    r->loss = loss;
    r->grad_norm = norm;
    r->lr = lms_schedule_lr(&o->sched, step);
    if (fp16 && isfinite(loss)) { /* loss scaling: an overflow on any rank makes the global norm inf/NaN everywhere */
        lms_status sst;
        if (lms_loss_scaler_update(&t->scaler, isfinite(norm), &sst)) {
            r->skipped = 1;
            PH_END(LMS_PHASE_OPTIM);
            return sst; /* skipped: the parameters, AdamW's moments and step count are untouched */
        }
        r->grad_norm = norm / scale;
        LMS_CHECK(s->i->optimizer_step(s, &t->opt, r->lr, lms_clip_scale(r->grad_norm, o->grad_clip) / scale));
        PH_END(LMS_PHASE_OPTIM);
        return LMS_OK;
    }
    if (!isfinite(loss) || !isfinite(norm))
        return lms_errorf(LMS_ERR_NUMERIC, "the %s became %s at step %d: lower --lr (now %g) or set --grad-clip (now %g)",
                          isfinite(loss) ? "gradient norm" : "loss",
                          isnan(isfinite(loss) ? norm : loss) ? "NaN" : "infinite", step + 1, o->sched.lr,
                          o->grad_clip);
    LMS_CHECK(s->i->optimizer_step(s, &t->opt, r->lr, lms_clip_scale(norm, o->grad_clip)));
    PH_END(LMS_PHASE_OPTIM);
    return LMS_OK;
}

int lms_trainer_forward_is_collective(const lms_trainer *t) {
    /* tp: every forward uses the tp group; pp: every stage its own layers */
    return t->sync.forward_collective || t->topo.tp > 1 || t->pipe;
}

lms_status lms_trainer_forward(lms_trainer *t, const int32_t *x, const int32_t *y, int B, int T, float *loss) {
    lms_backend *be = lms_trainer_compute_backend(t);
    if (t->pipe) return lms_pipe_forward(t, x, y, B, T, loss);
    return lms_gpt_forward(&t->m, be, &t->acts, x, y, B, T, loss);
}

lms_status lms_trainer_save(lms_trainer *t, const char *root, const lms_ckpt_state *st, int keep_last, char **path) {
    return t->sync.i->save(&t->sync, root, st, &t->opt, keep_last, path);
}

/* t->m becomes *whole (training is over: the compute copy goes too) */
static void swap_model(lms_trainer *t, lms_gpt *whole) {
    lms_gpt_free(&t->m);
    t->m = *whole;
    lms_free(t->lp);
    t->lp = NULL;
}

lms_status lms_trainer_gather_model(lms_trainer *t) {
    if (t->inner_hooks && t->m.hooks == &t->lp_hooks) t->m.hooks = t->inner_hooks; /* ZeRO-3 gathers the master */
    LMS_CHECK(t->sync.i->gather_model(&t->sync));
    if (t->lp) lms_gpt_bind_views(&t->m, t->m.params, &t->m.p); /* the views on the master again */
    lms_gpt whole;
    if (t->pipe) { /* the stages' parts, on stage 0 of dp rank 0 only (the others keep their parts) */
        int got;
        LMS_CHECK(lms_pipe_gather(t->pipe, &whole, &got));
        if (!got) return LMS_OK;
        whole.tp = t->m.tp;
        swap_model(t, &whole);
    }
    if (!t->m.tp) return LMS_OK;
    /* the tp group's parts put together, on every rank of it */
    LMS_CHECK(lms_tp_gather_whole(&t->m, &whole));
    swap_model(t, &whole);
    return LMS_OK;
}
