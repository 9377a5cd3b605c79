/* ZeRO stages 1, 2 and 3 over the data-parallel group (parallel.h).
 *
 * The shard of rank r is part r of every parameter unit, concatenated in
 * unit order. A unit of n floats has parts of ceil(n/dp); the last parts
 * may hang over the unit's end (or lie wholly outside it): those floats are
 * padding, zero in every buffer, and never reach AdamW. */
#include "lmscale/optim.h"
#include "lmscale/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* The views AdamW walks: each tensor clipped to this rank's part of its
 * unit. Pass views = NULL to count. */
static int build_views(lms_zero *z, lms_zero_view *views) {
    const lms_gpt *m = z->m;
    int nv = 0;
    for (int u = 0; u < z->nunits; u++) {
        const lms_zero_unit *un = &z->units[u];
        const size_t lo = lms_zero_part_lo(z, u);
        for (int i = 0; i < m->num_tensors; i++) {
            const lms_tensor_view *t = &m->tensors[i];
            size_t a, b;
            if (!lms_zero_overlap(z, u, t, &a, &b)) continue;
            if (views) {
                lms_zero_view *v = &views[nv];
                v->soff = un->shard_off + (a - lo);
                v->n = b - a;
                v->decay = t->decay;
                v->norm_w = un->copy ? 0.0 : lms_tp_norm_weight(m, t);
                v->p = z->stage == 3 ? z->master + v->soff : m->params + a;
            }
            nv++;
        }
    }
    return nv;
}

static lms_status flush_slot(lms_zero *z, int k);

/* ---- hooks (stages 2 and 3) ---- */

static lms_status z_acquire(void *ctx, lms_gpt *m, int u, int use) {
    lms_zero *z = ctx;
    lms_backend *be = z->be;
    const lms_zero_unit *un = &z->units[u];
    if (z->stage == 3 && use != LMS_USE_GRAD_ONLY) {
        lms_status st = z->comm->i->allgather(z->comm, z->master + un->shard_off, z->pwork, un->part, LMS_DT_F32);
        if (st != LMS_OK)
            return lms_error_context(st, "while all-gathering parameter unit %d (ZeRO-3) over %d ranks", u, z->dp);
        lms_gpt_bind_unit(m, u, z->pwork, NULL);
    }
    if (use == LMS_USE_FORWARD) return LMS_OK;
    int k = z->gcur;
    LMS_CHECK(flush_slot(z, k)); /* the reduce-scatter that last used this buffer */
    LMS_CHECK(be->i->memset(be, z->gwork[k], 0, sizeof(float) * un->part * (size_t)z->dp));
    lms_gpt_bind_unit(m, u, NULL, z->gwork[k]);
    z->gunit[k] = u;
    return LMS_OK;
}

static lms_status z_release(void *ctx, lms_gpt *m, int u, int use) {
    (void)m;
    lms_zero *z = ctx;
    if (use == LMS_USE_FORWARD) return LMS_OK;
    int k = z->gcur;
    LMS_ASSERT(z->gunit[k] == u);
    lms_status st = z->comm->i->ireduce_scatter(z->comm, z->gwork[k], z->grecv[k], z->units[u].part, LMS_DT_F32,
                                                LMS_RED_SUM, &z->greq[k]);
    if (st != LMS_OK)
        return lms_error_context(st, "while reduce-scattering gradients (ZeRO-%d) over %d ranks", z->stage, z->dp);
    z->gcur = k ^ 1; /* the next unit's gradients go to the other buffer meanwhile */
    return LMS_OK;
}

/* Waits for slot k's reduce-scatter and adds the received part to the shard. */
static lms_status flush_slot(lms_zero *z, int k) {
    if (!z->greq[k]) return LMS_OK;
    lms_status st = lms_comm_wait(z->comm, z->greq[k]);
    z->greq[k] = NULL;
    if (st != LMS_OK)
        return lms_error_context(st, "while reduce-scattering gradients (ZeRO-%d) over %d ranks", z->stage, z->dp);
    const lms_zero_unit *un = &z->units[z->gunit[k]];
    return z->be->i->accumulate(z->be, z->grad + un->shard_off, z->grecv[k], un->part);
}

/* ---- set-up ---- */

/* one of z's buffers on its backend; *p its data */
static lms_status zbuf(lms_zero *z, size_t bytes, const char *what, lms_buffer *b, float **p) {
    LMS_CHECK(lms_buffer_alloc(z->be, bytes, what, b));
    *p = b->data;
    return LMS_OK;
}

lms_status lms_zero_init(lms_zero *z, int stage, lms_comm *dp, lms_gpt *m, lms_backend *be) {
    return lms_zero_init_units(z, stage, dp, m, be, NULL, 0);
}

int lms_zero_holds(const lms_zero *z, const lms_tensor_view *v) {
    for (int u = 0; u < z->nunits; u++)
        if (!z->units[u].copy && v->offset >= z->units[u].off && v->offset < z->units[u].off + z->units[u].n) return 1;
    return 0;
}

lms_status lms_zero_init_units(lms_zero *z, int stage, lms_comm *dp, lms_gpt *m, lms_backend *be,
                               const lms_zero_range *r, int nr) {
    lms_status st = LMS_OK;
    memset(z, 0, sizeof *z);
    if (stage < 1 || stage > 3)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d: the ZeRO stage must be 0 (off), 1, 2 or 3", stage);
    if (r && stage != 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d over part of the model: only stage 1 shards a "
                          "pipeline stage's units (use --zero 1)", stage);
    z->stage = stage;
    z->comm = dp;
    z->m = m;
    z->be = be;
    z->dp = dp->size;
    z->rank = dp->rank;
    z->gunit[0] = z->gunit[1] = -1;
    z->nunits = r ? nr : lms_gpt_num_units(&m->cfg);
    z->units = calloc((size_t)z->nunits + 1, sizeof *z->units);
    z->ureq = calloc((size_t)z->nunits + 1, sizeof *z->ureq);
    if (!z->units || !z->ureq) return lms_errorf(LMS_ERR_OOM, "out of memory for the ZeRO layout");
    for (int u = 0; u < z->nunits; u++) {
        lms_zero_unit *un = &z->units[u];
        if (r) {
            un->off = r[u].off;
            un->n = r[u].n;
            un->copy = r[u].copy;
            z->ncopy += un->copy;
        } else {
            lms_gpt_unit_range(&m->cfg, u, &un->off, &un->n);
        }
        un->part = (un->n + (size_t)z->dp - 1) / (size_t)z->dp;
        size_t start = (size_t)z->rank * un->part;
        un->mine = start < un->n ? min_sz(un->part, un->n - start) : 0;
        un->shard_off = z->shard_n;
        z->shard_n += un->part;
        if (un->part * (size_t)z->dp > z->max_padded) z->max_padded = un->part * (size_t)z->dp;
    }
    /* buffers are zeroed: padding floats start (and stay) 0 */
    LMS_TRY(zbuf(z, sizeof(float) * z->shard_n, "the gradient shard", &z->b_grad, &z->grad));
    if (stage == 3) {
        LMS_TRY(zbuf(z, sizeof(float) * z->shard_n, "the parameter shard", &z->b_master, &z->master));
        LMS_TRY(zbuf(z, sizeof(float) * z->max_padded, "gathered parameters", &z->b_pwork, &z->pwork));
    }
    /* stage 1 stages a unit whose length dp does not divide; 2 and 3 always */
    int nwork = stage >= 2 ? 2 : 0;
    for (int u = 0; stage == 1 && u < z->nunits; u++)
        if (z->units[u].n % (size_t)z->dp) nwork = 1;
    for (int k = 0; k < nwork; k++) {
        LMS_TRY(zbuf(z, sizeof(float) * z->max_padded, "gradient buckets", &z->b_gwork[k], &z->gwork[k]));
        if (stage >= 2)
            LMS_TRY(zbuf(z, sizeof(float) * (z->max_padded / z->dp), "gradient buckets", &z->b_grecv[k],
                         &z->grecv[k]));
    }
    z->nviews = build_views(z, NULL);
    z->views = calloc((size_t)z->nviews + 1, sizeof *z->views);
    if (!z->views) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for the ZeRO layout");
        goto fail;
    }
    build_views(z, z->views);
    const size_t f = sizeof(float), N = m->num_params;
    z->mem.param = stage == 3 ? z->shard_n * f : N * f;
    z->mem.grad = stage == 1 ? N * f : z->shard_n * f;
    z->mem.optim = 2 * z->shard_n * f;
    z->mem.param_work = stage == 3 ? z->max_padded * f : 0;
    z->mem.grad_work = (size_t)nwork * z->max_padded * f + (stage >= 2 ? 2 * (z->max_padded / z->dp) * f : 0);
    if (stage >= 2) {
        z->hooks.ctx = z;
        z->hooks.acquire = z_acquire;
        z->hooks.release = z_release;
        m->hooks = &z->hooks;
    }
    return LMS_OK;
fail:
    lms_zero_free(z);
    return st;
}

void lms_zero_free(lms_zero *z) {
    if (!z) return;
    if (z->m && z->m->hooks == &z->hooks) z->m->hooks = NULL;
    for (int k = 0; k < 2; k++) {
        if (z->greq[k]) lms_comm_wait(z->comm, z->greq[k]);
        lms_buffer_free(z->be, &z->b_gwork[k]);
        lms_buffer_free(z->be, &z->b_grecv[k]);
    }
    lms_buffer_free(z->be, &z->b_pwork);
    lms_buffer_free(z->be, &z->b_master);
    lms_buffer_free(z->be, &z->b_grad);
    for (int u = 0; z->ureq && u < z->nunits; u++)
        if (z->ureq[u]) lms_comm_wait(z->comm, z->ureq[u]);
    free(z->ureq);
    free(z->units);
    free(z->views);
    memset(z, 0, sizeof *z);
}

void lms_zero_init_params(lms_zero *z, uint64_t seed) {
    for (int u = 0; u < z->nunits; u++) {
        const lms_zero_unit *un = &z->units[u];
        lms_gpt_init_params_range(z->m->tensors, z->m->num_tensors, seed, lms_zero_part_lo(z, u), un->mine,
                                  z->master + un->shard_off);
    }
}

lms_status lms_zero_shard_from_full(lms_zero *z, const float *full, float *shard_dst) {
    for (int u = 0; u < z->nunits; u++) {
        const lms_zero_unit *un = &z->units[u];
        LMS_CHECK(z->be->i->copy(z->be, shard_dst + un->shard_off, full + lms_zero_part_lo(z, u),
                                 sizeof(float) * un->mine, LMS_COPY_H2D));
    }
    return LMS_OK;
}

/* ---- the step ---- */

lms_status lms_zero_begin_step(lms_zero *z) {
    z->gcur = 0;
    if (z->stage == 1) return lms_gpt_zero_grad(z->m, z->be);
    return z->be->i->memset(z->be, z->grad, 0, sizeof(float) * z->shard_n);
}

/* Stage 1: the ranges backward reports are whole units (lms_gpt_backward). */
lms_status lms_zero_ready(void *ctx, size_t offset, size_t count) {
    lms_zero *z = ctx;
    lms_backend *be = z->be;
    for (int u = z->nunits - 1; u >= 0; u--) {
        const lms_zero_unit *un = &z->units[u];
        if (un->off < offset || un->off + un->n > offset + count) continue;
        float *send = z->m->grads + un->off;
        lms_status st;
        if (un->n % (size_t)z->dp) { /* pad to dp equal parts in the staging buffer */
            if (z->greq[0]) {
                st = lms_comm_wait(z->comm, z->greq[0]);
                z->greq[0] = NULL;
                if (st != LMS_OK) goto fail;
            }
            LMS_CHECK(be->i->copy(be, z->gwork[0], send, sizeof(float) * un->n, LMS_COPY_D2D));
            LMS_CHECK(be->i->memset(be, z->gwork[0] + un->n, 0, sizeof(float) * (un->part * (size_t)z->dp - un->n)));
            send = z->gwork[0];
            st = z->comm->i->ireduce_scatter(z->comm, send, z->grad + un->shard_off, un->part, LMS_DT_F32,
                                             LMS_RED_SUM, &z->greq[0]);
        } else { /* straight from the gradient buffer; completed in lms_zero_finish_grads */
            st = z->comm->i->ireduce_scatter(z->comm, send, z->grad + un->shard_off, un->part, LMS_DT_F32,
                                             LMS_RED_SUM, &z->ureq[u]);
        }
        if (st != LMS_OK) goto fail;
        continue;
    fail:
        return lms_error_context(st, "while reduce-scattering gradients (ZeRO-%d) over %d ranks", z->stage, z->dp);
    }
    return LMS_OK;
}

lms_status lms_zero_finish_grads(lms_zero *z) {
    if (z->stage == 1) {
        for (int u = 0; u < z->nunits; u++)
            if (z->ureq[u]) {
                lms_status w = lms_comm_wait(z->comm, z->ureq[u]);
                z->ureq[u] = NULL;
                if (z->err == LMS_OK) z->err = w;
            }
        if (z->greq[0]) {
            lms_status w = lms_comm_wait(z->comm, z->greq[0]);
            z->greq[0] = NULL;
            if (z->err == LMS_OK) z->err = w;
        }
        lms_status st = z->err;
        z->err = LMS_OK;
        if (st != LMS_OK)
            return lms_error_context(st, "while reduce-scattering gradients (ZeRO-%d) over %d ranks", z->stage,
                                     z->dp);
        return LMS_OK;
    }
    lms_status a = flush_slot(z, z->gcur ^ 1), b = flush_slot(z, z->gcur);
    return a != LMS_OK ? a : b;
}

lms_status lms_zero_grad_norm(lms_zero *z, lms_backend *be, double *norm) {
    double s = 0, tot = 0;
    if (!z->m->tp && !z->ncopy) {
        LMS_CHECK(be->i->sumsq(be, z->grad, z->shard_n, &s));
    } else { /* replicated tensors count once over the tp group, copies not at all */
        for (int i = 0; i < z->nviews; i++) {
            double x = 0;
            LMS_CHECK(be->i->sumsq(be, z->grad + z->views[i].soff, z->views[i].n, &x));
            s += z->views[i].norm_w * x;
        }
        if (z->m->tp)
            LMS_CHECK(z->m->tp->comm->i->allreduce(z->m->tp->comm, &s, &s, 1, LMS_DT_F64, LMS_RED_SUM));
    }
    LMS_CHECK(z->comm->i->allreduce(z->comm, &s, &tot, 1, LMS_DT_F64, LMS_RED_SUM));
    if (z->norm_also) LMS_CHECK(z->norm_also->i->allreduce(z->norm_also, &tot, &tot, 1, LMS_DT_F64, LMS_RED_SUM));
    *norm = sqrt(tot);
    return LMS_OK;
}

lms_status lms_zero_step(lms_zero *z, lms_adamw *opt, lms_backend *be, float lr, float grad_scale) {
    LMS_ASSERT(opt->n >= z->shard_n);
    opt->step++;
    lms_adamw_args a = {.lr = lr, .beta1 = opt->beta1, .beta2 = opt->beta2, .eps = opt->eps,
                        .step = opt->step, .grad_scale = grad_scale};
    for (int i = 0; i < z->nviews; i++) {
        const lms_zero_view *v = &z->views[i];
        a.weight_decay = v->decay ? opt->weight_decay : 0.0f;
        LMS_CHECK(be->i->adamw(be, v->p, z->grad + v->soff, opt->m + v->soff, opt->v + v->soff, v->n, &a));
    }
    if (z->stage == 3) return LMS_OK;
    /* every rank gets the updated parameters: in place where dp divides the
     * unit, else through the staging buffer */
    for (int u = 0; u < z->nunits; u++) {
        const lms_zero_unit *un = &z->units[u];
        float *full = z->m->params + un->off;
        lms_status st;
        if (un->n % (size_t)z->dp == 0) {
            st = z->comm->i->allgather(z->comm, full + (size_t)z->rank * un->part, full, un->part, LMS_DT_F32);
        } else {
            float *buf = z->gwork[0];
            st = be->i->copy(be, buf + (size_t)z->rank * un->part, full + (size_t)z->rank * un->part,
                             sizeof(float) * un->mine, LMS_COPY_D2D);
            if (st == LMS_OK)
                st = z->comm->i->allgather(z->comm, buf + (size_t)z->rank * un->part, buf, un->part, LMS_DT_F32);
            if (st == LMS_OK) st = be->i->copy(be, full, buf, sizeof(float) * un->n, LMS_COPY_D2D);
        }
        if (st != LMS_OK)
            return lms_error_context(st, "while all-gathering parameters (ZeRO-%d) over %d ranks", z->stage, z->dp);
    }
    return LMS_OK;
}

lms_status lms_zero_gather_full(lms_zero *z, float *dst) {
    lms_backend *be = z->be;
    if (z->stage < 3) return be->i->copy(be, dst, z->m->params, sizeof(float) * z->m->num_params, LMS_COPY_D2H);
    for (int u = 0; u < z->nunits; u++) {
        const lms_zero_unit *un = &z->units[u];
        LMS_CHECK(z->comm->i->allgather(z->comm, z->master + un->shard_off, z->pwork, un->part, LMS_DT_F32));
        LMS_CHECK(be->i->copy(be, dst + un->off, z->pwork, sizeof(float) * un->n, LMS_COPY_D2H));
    }
    return LMS_OK;
}
