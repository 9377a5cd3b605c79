/* The pipeline's gradient strategy "pp" (lms_grad_sync_i): each stage's
 * model holds only its units' tensors (lms_gpt_init_part: its flat
 * parameter and gradient buffers are theirs alone), and the last stage
 * also a copy of the tied wte, for the LM head.
 *   finish   the data-parallel all-reduce of each unit's gradient, started
 *            when the step's last backward through it ends (pipe.c), is
 *            completed; then the two copies of wte's gradient are summed
 *            over the embedding group (Megatron's), so both stay equal;
 *   norm     the sum of squares of every stage's own tensors (the wte copy
 *            once; under tensor parallelism a replicated tensor's 1/tp on
 *            each tp rank, summed over the tp group), all-reduced over the
 *            pipeline group;
 *   step     AdamW on the stage's tensors (and the wte copy);
 *   --zero 1 the same with ZeRO-1 over the stage's units (zero_init): each
 *            unit's gradient is reduce-scattered instead of all-reduced,
 *            AdamW runs on the rank's part, the parts are all-gathered;
 *   gather   (--save-model) every stage sends its units to stage 0 of
 *            data-parallel rank 0, which alone assembles the whole model
 *            (lms_pipe_gather); validation instead runs through the stages
 *            (lms_pipe_forward);
 *   save     every stage of data-parallel rank 0 writes its own tensors
 *            and their AdamW moments (not the wte copy) as pieces of one
 *            checkpoint (under tensor parallelism each rank its parts as
 *            chunks of the whole tensors), in global names: it loads at
 *            any layout. */
#include "pipe_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lms_status lms_pipe_unit_final(lms_pipe *p, int unit) {
    lms_trainer *t = p->t;
    size_t off, n;
    lms_gpt_unit_span(&t->m, unit, &off, &n);
    if (p->zs.i) /* ZeRO-1: the unit's reduce-scatter; the embedding's waits for the embedding group (finish) */
        return unit == 0 ? LMS_OK : lms_zero_ready(p->zs.impl, off, n);
    if (t->dp->size == 1) return LMS_OK;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) { /* the head's wte copy, on a last stage without the embedding */
            if (unit != t->m.cfg.L + 1 || lms_pipe_owns(p, 0)) break;
            off = p->wte->offset;
            n = p->wte->numel;
        }
        LMS_ASSERT(p->ndreq < p->capdreq);
        lms_status st = t->dp->i->iallreduce(t->dp, t->m.grads + off, t->m.grads + off, n, LMS_DT_F32, LMS_RED_SUM,
                                              &p->dreq[p->ndreq]);
        if (st != LMS_OK) return st;
        p->ndreq++;
    }
    return LMS_OK;
}

static lms_status pp_restore(lms_grad_sync *s, const lms_train_source *src, lms_adamw *opt) {
    lms_pipe *p = s->impl;
    return p->zs.i ? p->zs.i->restore(&p->zs, src, opt) : lms_grad_sync_full_restore(s, src, opt);
}

static lms_status pp_begin(lms_grad_sync *s) { return lms_gpt_zero_grad(s->m, s->be); }

static void pp_ready(lms_grad_sync *s, int last, lms_grad_ready_fn *fn, void **ctx) {
    *fn = NULL;
    *ctx = NULL;
}

static lms_status pp_finish(lms_grad_sync *s) {
    lms_pipe *p = s->impl;
    lms_status st = LMS_OK;
    for (int k = 0; k < p->ndreq; k++) {
        lms_status w = lms_comm_wait(p->t->dp, p->dreq[k]);
        if (st == LMS_OK) st = w;
    }
    p->ndreq = 0;
    LMS_CHECK(st);
    if (p->emb && p->emb->size > 1) {
        float *g = s->m->grads + p->wte->offset;
        LMS_CHECK(p->emb->i->allreduce(p->emb, g, g, p->wte->numel, LMS_DT_F32, LMS_RED_SUM));
    }
    if (!p->zs.i) return LMS_OK;
    /* ZeRO-1: the units holding wte, now summed over the embedding group, go last */
    if (lms_pipe_owns(p, 0)) {
        size_t off, n;
        lms_gpt_unit_span(s->m, 0, &off, &n);
        LMS_CHECK(lms_zero_ready(p->zs.impl, off, n));
    } else if (lms_pipe_owns(p, s->m->cfg.L + 1)) {
        LMS_CHECK(lms_zero_ready(p->zs.impl, p->wte->offset, p->wte->numel));
    }
    return p->zs.i->finish(&p->zs);
}

static lms_status pp_norm(lms_grad_sync *s, double *norm) {
    lms_pipe *p = s->impl;
    if (p->zs.i) return p->zs.i->global_norm(&p->zs, norm); /* over tp, dp and (norm_also) pp */
    double ss = 0, all = 0;
    for (int i = 0; i < p->nnorm; i++) {
        double x = 0;
        LMS_CHECK(s->be->i->sumsq(s->be, s->m->grads + p->own[i].offset, p->own[i].numel, &x));
        ss += lms_tp_norm_weight(s->m, &p->own[i]) * x; /* replicated over tp: 1/tp on each */
    }
    if (s->m->tp) LMS_CHECK(s->m->tp->comm->i->allreduce(s->m->tp->comm, &ss, &ss, 1, LMS_DT_F64, LMS_RED_SUM));
    LMS_CHECK(p->pp->i->allreduce(p->pp, &ss, &all, 1, LMS_DT_F64, LMS_RED_SUM));
    *norm = sqrt(all);
    return LMS_OK;
}

static lms_status pp_step(lms_grad_sync *s, lms_adamw *opt, float lr, float grad_scale) {
    lms_pipe *p = s->impl;
    if (p->zs.i) return p->zs.i->optimizer_step(&p->zs, opt, lr, grad_scale);
    return lms_adamw_step(opt, s->be, s->m->params, s->m->grads, p->own, p->nown, lr, grad_scale);
}

lms_status lms_pipe_gather(lms_pipe *p, lms_gpt *whole, int *got) {
    const lms_gpt *m = &p->t->m;
    const lms_gpt_config *c = &m->cfg;
    const int root = p->s == 0;
    *got = 0;
    if (p->t->topo.dp_rank != 0) return LMS_OK;
    if (root) LMS_CHECK(lms_gpt_init(whole, c, m->cap_B, m->cap_T, 0));
    lms_status st = LMS_OK;
    for (int u = 0; u < lms_gpt_num_units(c) && st == LMS_OK; u++) {
        const int owner = lms_pipe_unit_owner(p, u);
        size_t off = 0, n = 0, woff, wn;
        lms_gpt_unit_range(c, u, &woff, &wn);
        if (owner == p->s) lms_gpt_unit_span(m, u, &off, &n);
        if (owner == p->s && root)
            memcpy(whole->params + woff, m->params + off, sizeof(float) * n);
        else if (owner == p->s || root) { /* in unit order on both sides: no wait can deadlock */
            lms_comm_req *r = NULL;
            st = root ? p->pp->i->irecv(p->pp, whole->params + woff, wn, LMS_DT_F32, owner, u, &r)
                      : p->pp->i->isend(p->pp, m->params + off, n, LMS_DT_F32, 0, u, &r);
            if (st == LMS_OK) st = lms_comm_wait(p->pp, r);
        }
    }
    if (st != LMS_OK) {
        if (root) lms_gpt_free(whole);
        return st;
    }
    *got = root;
    return LMS_OK;
}

static lms_status pp_gather(lms_grad_sync *s) { return LMS_OK; /* lms_pipe_gather, from the trainer */ }

/* a tensor of this stage's own units (not the last stage's wte copy) */
static int stage_keeps(const void *ctx, const lms_tensor_view *v) { return lms_pipe_owns(ctx, v->unit); }

static lms_status pp_save(lms_grad_sync *s, const char *root, const lms_ckpt_state *st, const lms_adamw *opt,
                          int keep_last, char **path) {
    lms_pipe *p = s->impl;
    *path = NULL;
    if (p->zs.i) { /* every rank writes its stage's parts */
        p->zs.world = s->world;
        return p->zs.i->save(&p->zs, root, st, opt, keep_last, path);
    }
    /* data-parallel rank 0 of each stage: its units (the wte copy's original is stage 0's) */
    return lms_sync_save_tensors(s->m, opt, p->t->topo.dp_rank == 0, stage_keeps, p, s->world, root, st, keep_last,
                                 path);
}

static void pp_free(lms_grad_sync *s) { lms_grad_sync_free(&((lms_pipe *)s->impl)->zs); }

static const lms_grad_sync_i pp_i = {.name = "pp", .restore = pp_restore, .begin_step = pp_begin,
                                     .grad_ready = pp_ready, .finish = pp_finish, .global_norm = pp_norm,
                                     .optimizer_step = pp_step, .save = pp_save, .gather_model = pp_gather,
                                     .free = pp_free};

/* ZeRO-1 over the units this stage updates (Megatron's distributed
 * optimizer): the AdamW state of the stage's parameters, sharded over its
 * data-parallel group; the last stage's wte copy is a unit of its own,
 * updated as stage 0's wte but outside the norm and the checkpoint. */
static lms_status zero_init(lms_pipe *p) {
    lms_grad_sync *s = &p->t->sync;
    const lms_gpt_config *c = &s->m->cfg;
    const int nu = lms_gpt_num_units(c);
    lms_zero_range *r = calloc((size_t)nu + 1, sizeof *r);
    if (!r) return lms_errorf(LMS_ERR_OOM, "out of memory for the ZeRO layout");
    int nr = 0;
    if (!lms_pipe_owns(p, 0) && lms_pipe_owns(p, c->L + 1)) /* the wte copy (first in the stage's layout) */
        r[nr++] = (lms_zero_range){p->wte->offset, p->wte->numel, 1};
    for (int u = 0; u < nu; u++)
        if (lms_pipe_owns(p, u)) {
            lms_gpt_unit_span(s->m, u, &r[nr].off, &r[nr].n);
            nr++;
        }
    p->zs = (lms_grad_sync){.m = s->m, .be = s->be, .dp = s->dp};
    lms_status st = lms_grad_sync_zero_init_units(&p->zs, p->t->o.zero, r, nr);
    free(r);
    LMS_CHECK(st);
    ((lms_zero *)p->zs.impl)->norm_also = p->pp;
    s->optim_n = p->zs.optim_n;
    s->mem = p->zs.mem;
    return LMS_OK;
}

lms_status lms_pipe_sync_init(lms_pipe *p) {
    lms_grad_sync *s = &p->t->sync;
    memset(s, 0, sizeof *s);
    s->i = &pp_i;
    s->m = &p->t->m;
    s->be = p->t->be;
    s->dp = p->t->dp;
    s->impl = p; /* owned by the trainer (t->pipe) */
    const size_t f = sizeof(float), N = s->m->num_params;
    s->optim_n = N;
    s->mem.param = N * f; /* the stage's own tensors (lms_gpt_init_part) */
    s->mem.grad = N * f;
    s->mem.optim = 2 * N * f;
    if (p->t->o.zero) LMS_CHECK(zero_init(p));
    snprintf(s->how, sizeof s->how, "%d stages, %s, %d micro-batches%s", p->p, lms_pp_schedule_name(p->sched), p->m,
             p->zs.i ? ", ZeRO-1 over the stage's units" : p->t->dp->size > 1 ? ", data-parallel all-reduce per unit" : "");
    return LMS_OK;
}
