/* The trainer: process groups, model, optimizer and gradient strategy, and
 * one training step (train.h). Every collective of the step goes to the
 * data-parallel group. */
#include "lmscale/train.h"
#include "lmscale/obs.h"
#include "train_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    if (tp > 1 && (pp > 1 || o->recompute)) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d with %s is not supported yet: use --tp 1, or drop %s", tp,
                        pp > 1 ? "--pp" : "--recompute", pp > 1 ? "--pp" : "--recompute");
        goto fail;
    }
    LMS_TRY(lms_gpt_init_on(&t->m, &lcfg, o->micro_batch, o->seq_len, lms_grad_sync_model_flags(t->topo.dp, o->zero),
                            be));
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
    LMS_TRY(lms_gpt_acts_init_on(&t->acts, &lcfg, o->micro_batch, o->seq_len, 1, o->recompute, be));
    if (pp > 1 && o->zero) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d with --pp %d is not supported yet: use --zero 0 with "
                        "pipeline parallelism", o->zero, pp);
        goto fail;
    }
    if (pp > 1)
        LMS_TRY(lms_pipe_init(t, world)); /* the pipeline and its gradient strategy "pp" */
    else
        LMS_TRY(lms_grad_sync_init(&t->sync, o->zero, t->dp, &t->m, be, (size_t)(o->bucket_mb * 1048576.0f)));
    t->sync.world = world;
    LMS_TRY(lms_adamw_init(&t->opt, t->sync.optim_n, o->beta1, o->beta2, o->eps, o->weight_decay));
    LMS_TRY(t->sync.i->restore(&t->sync, src, &t->opt));
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
    lms_grad_sync_free(&t->sync);
    lms_pipe_free(t->pipe);
    lms_adamw_free(&t->opt);
    lms_gpt_acts_free(&t->acts);
    lms_gpt_free(&t->m);
    lms_gpt_tp_free_work(&t->tpx);
    lms_groups_free(&t->groups);
    memset(t, 0, sizeof *t);
}

lms_status lms_trainer_step(lms_trainer *t, const lms_loader *ld, int step, lms_step_result *r) {
    lms_grad_sync *s = &t->sync;
    const lms_trainer_opts *o = &t->o;
    const int T = o->seq_len, M = o->micro_batch, G = o->global_batch;
    const float dloss = 1.0f / ((float)G * T); /* of the global mean; summed over the DP group */
    LMS_CHECK(s->i->begin_step(s));
    double loss = 0;
    if (t->pipe) LMS_CHECK(lms_pipe_run(t, ld, step, &loss)); /* every micro-batch, through the stages */
    for (int k = 0; !t->pipe && k < t->accum; k++) {
        PH_BEGIN(LMS_PHASE_DATA);
        for (int b = 0; b < M; b++)
            lms_loader_window(ld, (uint64_t)step * G + t->first_sample + (uint64_t)k * M + b, t->x + (size_t)b * T,
                              t->y + (size_t)b * T);
        PH_END(LMS_PHASE_DATA);
        float micro_loss;
        PH_BEGIN(LMS_PHASE_FORWARD);
        LMS_CHECK(lms_gpt_forward(&t->m, t->be, &t->acts, t->x, t->y, M, T, &micro_loss));
        PH_END(LMS_PHASE_FORWARD);
        loss += micro_loss;
        lms_grad_ready_fn ready;
        void *ctx;
        s->i->grad_ready(s, k == t->accum - 1, &ready, &ctx);
        PH_BEGIN(LMS_PHASE_BACKWARD);
        lms_status st = lms_gpt_backward(&t->m, t->be, &t->acts, t->x, t->y, dloss, ready, ctx);
        PH_END(LMS_PHASE_BACKWARD);
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
    return t->sync.forward_collective || t->topo.tp > 1; /* tp: every forward uses the tp group */
}

lms_status lms_trainer_save(lms_trainer *t, const char *root, const lms_ckpt_state *st, int keep_last, char **path) {
    return t->sync.i->save(&t->sync, root, st, &t->opt, keep_last, path);
}

lms_status lms_trainer_gather_model(lms_trainer *t) {
    LMS_CHECK(t->sync.i->gather_model(&t->sync));
    if (!t->m.tp) return LMS_OK;
    lms_gpt whole; /* the tp group's parts put together, on every rank of it */
    LMS_CHECK(lms_tp_gather_whole(&t->m, &whole));
    lms_gpt_free(&t->m);
    t->m = whole;
    return LMS_OK;
}
