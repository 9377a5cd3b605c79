/* The pipeline engine: this stage's chunks of the model, its schedule
 * (lms_pp_schedule_ops), the activation pool, and one step's micro-batches
 * through the schedule with non-blocking sends and receives between the
 * stages (docs/parallelism.md, "Pipeline parallelism").
 *
 * Every receive of a step is posted before its first operation, into a
 * buffer of its own, and every send is waited only at the step's end, so
 * no rank ever blocks on anything but the data its next operation reads:
 * the schedules' orders are consistent, so the step cannot deadlock, and a
 * stage computes while its messages travel. */
#include "pipe_impl.h"
#include "lmscale/obs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* virtual stage of chunk c on this stage, and the last one */
static int vstage(const lms_pipe *p, int c) { return c * p->p + p->s; }
static int vlast(const lms_pipe *p) { return p->p * p->v - 1; }
static int tag_of(const lms_pipe *p, int mb, int chunk, int dir) { return 2 * (mb * p->v + chunk) + dir; }

int lms_pipe_unit_owner(const lms_pipe *p, int unit) {
    return lms_pp_unit_owner(p->first, p->t->m.cfg.L, p->p, p->v, unit);
}

int lms_pipe_owns(const lms_pipe *p, int unit) { return lms_pipe_unit_owner(p, unit) == p->s; }

lms_status lms_pipe_hold(const lms_trainer_opts *o, int L, int p, int s, unsigned char *hold) {
    const int v = o->vpp > 1 ? o->vpp : 1;
    int *first = calloc((size_t)p * v + 1, sizeof *first);
    if (!first) return lms_errorf(LMS_ERR_OOM, "out of memory for the pipeline's layer split");
    lms_status st = lms_pp_split_layers(L, p, v, o->pp_layers, o->pp_layers ? p : 0, first);
    for (int u = 0; st == LMS_OK && u <= L + 1; u++)
        hold[u] = lms_pp_unit_owner(first, L, p, v, u) == s ? LMS_GPT_HOLD_ALL : LMS_GPT_HOLD_NONE;
    if (st == LMS_OK && s == p - 1 && s != 0) hold[0] = LMS_GPT_HOLD_WTE; /* the LM head's copy of the tied wte */
    free(first);
    return st;
}

/* a blocking send (or receive) of n floats to (from) stage peer */
static lms_status p2p(lms_pipe *p, float *buf, size_t n, int peer, int tag, int is_send) {
    lms_comm_req *r = NULL;
    if (is_send)
        LMS_CHECK(p->pp->i->isend(p->pp, buf, n, LMS_DT_F32, peer, tag, &r));
    else
        LMS_CHECK(p->pp->i->irecv(p->pp, buf, n, LMS_DT_F32, peer, tag, &r));
    return lms_comm_wait(p->pp, r);
}

static lms_status alloc_floats(float **out, size_t n, const char *what) {
    return lms_alloc_checked((void **)out, n * sizeof(float), what);
}

/* the views this stage's optimizer updates: owned units, then the wte copy */
static lms_status own_views(lms_pipe *p) {
    const lms_gpt *m = &p->t->m;
    p->own = calloc((size_t)m->num_tensors + 1, sizeof *p->own);
    if (!p->own) return lms_errorf(LMS_ERR_OOM, "out of memory for the stage's tensors");
    for (int i = 0; i < m->num_tensors; i++)
        if (lms_pipe_owns(p, m->tensors[i].unit)) p->own[p->nown++] = m->tensors[i];
    p->nnorm = p->nown;
    p->wte = lms_gpt_find(m, "wte");
    if (!lms_pipe_owns(p, 0) && lms_pipe_owns(p, m->cfg.L + 1)) p->own[p->nown++] = *p->wte;
    return LMS_OK;
}

lms_status lms_pipe_init(lms_trainer *t, lms_comm *world) {
    lms_status st;
    const lms_trainer_opts *o = &t->o;
    lms_pipe *p = calloc(1, sizeof *p);
    if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory for the pipeline");
    t->pipe = p;
    p->t = t;
    p->pp = t->groups.pp;
    p->p = t->topo.pp;
    p->s = t->topo.pp_rank;
    p->v = o->vpp > 1 ? o->vpp : 1;
    p->m = t->accum;
    p->world_rank = world->rank;
    LMS_TRY(lms_pp_schedule_resolve(o->pp_schedule, p->v, &p->sched));
    if (2 * p->m * p->v >= 32768) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "%d micro-batches x %d chunks per step is too many for the pipeline's "
                        "message tags (at most 16383): raise --micro-batch-size", p->m, p->v);
        goto fail;
    }
    const lms_gpt_config *cfg = &t->m.cfg;
    const int nv = p->p * p->v, nmc = p->m * p->v;
    p->first = calloc((size_t)nv + 1, sizeof *p->first);
    p->ops = calloc((size_t)2 * nmc, sizeof *p->ops);
    p->fin = calloc((size_t)nmc, sizeof *p->fin);
    p->fout = calloc((size_t)nmc, sizeof *p->fout);
    p->gbuf = calloc((size_t)nmc, sizeof *p->gbuf);
    p->slot = calloc((size_t)nmc, sizeof *p->slot);
    p->rreq = calloc((size_t)2 * nmc, sizeof *p->rreq);
    p->sreq = calloc((size_t)2 * nmc, sizeof *p->sreq);
    p->pool = calloc((size_t)nmc, sizeof *p->pool);
    p->freel = calloc((size_t)nmc, sizeof *p->freel);
    p->bdone = calloc((size_t)p->v, sizeof *p->bdone);
    p->gather = calloc((size_t)2 * p->p, sizeof *p->gather);
    p->stats.idle = calloc((size_t)p->p, sizeof(double));
    p->stats.bubble = calloc((size_t)p->p, sizeof(double));
    p->stats.peak_sets = calloc((size_t)p->p, sizeof(int));
    p->capdreq = cfg->L + 3;
    p->dreq = calloc((size_t)p->capdreq, sizeof *p->dreq);
    if (!p->first || !p->ops || !p->fin || !p->fout || !p->gbuf || !p->slot || !p->rreq || !p->sreq || !p->pool ||
        !p->freel || !p->bdone || !p->gather || !p->stats.idle || !p->stats.bubble || !p->stats.peak_sets ||
        !p->dreq) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for the pipeline's tables");
        goto fail;
    }
    p->stats.stages = p->p;
    p->stats.chunks = p->v;
    p->stats.micro_batches = p->m;
    LMS_TRY(lms_pp_split_layers(cfg->L, p->p, p->v, o->pp_layers, o->pp_layers ? p->p : 0, p->first));
    LMS_TRY(lms_pp_schedule_ops(p->sched, p->p, p->s, p->m, p->v, p->ops));
    int maxl = 1;
    for (int j = 0; j < nv; j++)
        if (p->first[j + 1] - p->first[j] > maxl) maxl = p->first[j + 1] - p->first[j];
    p->sub = *cfg;
    p->sub.L = maxl;
    /* the residual stream's rows a rank holds: all of them, or under sequence
     * parallelism its 1/tp (the same rows as its peer of the same tp rank) */
    p->NC = (size_t)o->micro_batch * o->seq_len * cfg->C / (t->m.tp && t->m.tp->seq_parallel ? t->m.tp->size : 1);
    for (int mb = 0; mb < p->m; mb++)
        for (int c = 0; c < p->v; c++) {
            const int i = mb * p->v + c, j = vstage(p, c);
            if (j > 0) LMS_TRY(alloc_floats(&p->fin[i], p->NC, "pipeline receive buffers"));
            if (j < vlast(p)) LMS_TRY(alloc_floats(&p->fout[i], p->NC, "pipeline send buffers"));
            LMS_TRY(alloc_floats(&p->gbuf[i], p->NC, "pipeline gradient buffers"));
        }
    const size_t n = (size_t)p->m * o->micro_batch * o->seq_len;
    p->x = malloc(sizeof(int32_t) * n);
    p->y = malloc(sizeof(int32_t) * n);
    if (!p->x || !p->y) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for the pipeline's micro-batches");
        goto fail;
    }
    LMS_TRY(own_views(p));
    /* the embedding group: the first and the last stage of this (dp, tp) */
    const int ends = p->s == 0 || p->s == p->p - 1;
    lms_comm *e = NULL;
    LMS_TRY(world->i->split(world, ends ? t->topo.tp_rank + t->topo.tp * t->topo.dp_rank : world->size + world->rank,
                            p->s, &e));
    if (ends) {
        p->emb = e;
        p->emb->label = "embedding group";
    } else {
        lms_comm_free(e);
    }
    LMS_TRY(lms_pipe_sync_init(p));
    return LMS_OK;
fail:
    lms_pipe_free(p);
    t->pipe = NULL;
    return st;
}

void lms_pipe_free(lms_pipe *p) {
    if (!p) return;
    const int nmc = p->m * p->v;
    for (int i = 0; i < nmc; i++) {
        if (p->fin) lms_free(p->fin[i]);
        if (p->fout) lms_free(p->fout[i]);
        if (p->gbuf) lms_free(p->gbuf[i]);
    }
    for (int k = 0; k < p->npool; k++) lms_gpt_acts_free(&p->pool[k]);
    free(p->fin);
    free(p->fout);
    free(p->gbuf);
    free(p->slot);
    free(p->rreq);
    free(p->sreq);
    free(p->pool);
    free(p->freel);
    free(p->bdone);
    free(p->gather);
    free(p->stats.idle);
    free(p->stats.bubble);
    free(p->stats.peak_sets);
    free(p->dreq);
    free(p->first);
    free(p->ops);
    free(p->x);
    free(p->y);
    free(p->own);
    lms_comm_free(p->emb);
    free(p);
}

/* ---- the activation pool ---- */

static lms_status set_acquire(lms_pipe *p, int *k) {
    if (p->nfree == 0) {
        LMS_CHECK(lms_gpt_acts_init_on(&p->pool[p->npool], &p->sub, p->t->o.micro_batch, p->t->o.seq_len, 1,
                                       p->t->o.recompute, p->t->be));
        p->freel[p->nfree++] = p->npool++;
    }
    *k = p->freel[--p->nfree];
    if (++p->inflight > p->peak) p->peak = p->inflight;
    return LMS_OK;
}

static void set_release(lms_pipe *p, int k) {
    p->freel[p->nfree++] = k;
    p->inflight--;
}

/* ---- one step ---- */

static lms_status post_receives(lms_pipe *p) {
    const int last = vlast(p);
    for (int k = 0; k < 2 * p->m * p->v; k++) {
        const lms_pp_op *op = &p->ops[k];
        const int i = op->mb * p->v + op->chunk, j = vstage(p, op->chunk);
        if (!op->backward && j > 0)
            LMS_CHECK(p->pp->i->irecv(p->pp, p->fin[i], p->NC, LMS_DT_F32, (j - 1) % p->p,
                                      tag_of(p, op->mb, op->chunk, 0), &p->rreq[2 * i]));
        if (op->backward && j < last)
            LMS_CHECK(p->pp->i->irecv(p->pp, p->gbuf[i], p->NC, LMS_DT_F32, (j + 1) % p->p,
                                      tag_of(p, op->mb, op->chunk, 1), &p->rreq[2 * i + 1]));
    }
    return LMS_OK;
}

static lms_status wait_recv(lms_pipe *p, int i, int dir) {
    lms_trainer *t = p->t;
    PH_BEGIN(LMS_PHASE_BUBBLE);
    lms_comm_req *r = p->rreq[2 * i + dir];
    p->rreq[2 * i + dir] = NULL;
    lms_status st = lms_comm_wait(p->pp, r);
    PH_END(LMS_PHASE_BUBBLE);
    return st;
}

static lms_status send(lms_pipe *p, const float *buf, int to_vstage, int mb, int dir) {
    return p->pp->i->isend(p->pp, buf, p->NC, LMS_DT_F32, to_vstage % p->p, tag_of(p, mb, to_vstage / p->p, dir),
                           &p->sreq[p->nsreq++]);
}

static lms_status op_forward(lms_pipe *p, int mb, int c, double *loss) {
    lms_trainer *t = p->t;
    lms_gpt *m = &t->m;
    lms_backend *be = &t->cbe; /* the compute backend: mixed precision rounds what its ops write */
    const int i = mb * p->v + c, j = vstage(p, c), l0 = p->first[j], nl = p->first[j + 1] - l0;
    const int B = t->o.micro_batch, T = t->o.seq_len;
    const size_t off = (size_t)mb * B * T;
    if (j > 0) LMS_CHECK(wait_recv(p, i, 0));
    const double t0 = lms_now_s();
    PH_BEGIN(LMS_PHASE_FORWARD);
    LMS_CHECK(set_acquire(p, &p->slot[i]));
    lms_gpt_acts *a = &p->pool[p->slot[i]];
    if (j == 0) LMS_CHECK(lms_gpt_embed_forward(m, be, p->x + off, B, T, 0, a->stream[0]));
    const float *in = j == 0 ? a->stream[0] : p->fin[i];
    for (int k = 0; k < nl; k++) {
        float *out = k == nl - 1 && j < vlast(p) ? p->fout[i] : a->stream[k + 1];
        LMS_CHECK(lms_gpt_block_forward(m, be, l0 + k, k == 0 ? in : a->stream[k], &a->layer[k], out, B, T, NULL));
    }
    if (j == vlast(p)) {
        float l;
        LMS_CHECK(lms_gpt_head_forward(m, be, a->stream[nl], &a->head, p->y + off, B, T, &l));
        *loss += l;
    }
    PH_END(LMS_PHASE_FORWARD);
    p->t_compute += lms_now_s() - t0;
    if (j < vlast(p)) LMS_CHECK(send(p, p->fout[i], j + 1, mb, 0));
    return LMS_OK;
}

static lms_status op_backward(lms_pipe *p, int mb, int c, float dloss) {
    lms_trainer *t = p->t;
    lms_gpt *m = &t->m;
    lms_backend *be = &t->cbe;
    const int i = mb * p->v + c, j = vstage(p, c), l0 = p->first[j], nl = p->first[j + 1] - l0;
    const int B = t->o.micro_batch, T = t->o.seq_len, L = m->cfg.L;
    const size_t off = (size_t)mb * B * T;
    const int final = ++p->bdone[c] == p->m; /* the step's last backward through this chunk */
    if (j < vlast(p)) LMS_CHECK(wait_recv(p, i, 1));
    const double t0 = lms_now_s();
    PH_BEGIN(LMS_PHASE_BACKWARD);
    lms_gpt_acts *a = &p->pool[p->slot[i]];
    float *dx = p->gbuf[i];
    if (j == vlast(p)) {
        LMS_CHECK(lms_gpt_head_backward(m, be, a->stream[nl], &a->head, p->y + off, dloss, dx, &a->grad, B, T));
        if (final) LMS_CHECK(lms_pipe_unit_final(p, L + 1));
    }
    const float *in = j == 0 ? a->stream[0] : p->fin[i];
    for (int k = nl - 1; k >= 0; k--) {
        /* FULL recomputes block k's output into stream[k+1]: block k+1's input (its backward is
         * done), or, for the chunk's last block, a stream the forward left unused (it wrote fout) */
        LMS_CHECK(lms_gpt_block_recompute(m, be, l0 + k, k == 0 ? in : a->stream[k], &a->layer[k], a->stream[k + 1],
                                          B, T, a->recompute));
        LMS_CHECK(lms_gpt_block_backward(m, be, l0 + k, k == 0 ? in : a->stream[k], &a->layer[k], dx, &a->grad,
                                         B, T));
        if (final) LMS_CHECK(lms_pipe_unit_final(p, l0 + k + 1));
    }
    if (j == 0) {
        LMS_CHECK(lms_gpt_embed_backward(m, be, p->x + off, B, T, dx));
        if (final) LMS_CHECK(lms_pipe_unit_final(p, 0));
    }
    set_release(p, p->slot[i]);
    PH_END(LMS_PHASE_BACKWARD);
    p->t_compute += lms_now_s() - t0;
    if (j > 0) LMS_CHECK(send(p, dx, j - 1, mb, 1));
    return LMS_OK;
}

/* the stage's idle fraction, bubble and peak, gathered over the stages */
static lms_status gather_stats(lms_pipe *p) {
    const double idle = p->t_total > p->t_compute ? p->t_total - p->t_compute : 0;
    double mine[2] = {p->t_total > 0 ? idle / p->t_total : 0, p->t_compute > 0 ? idle / p->t_compute : 0};
    LMS_CHECK(p->pp->i->allgather(p->pp, mine, p->gather, 2, LMS_DT_F64));
    int32_t peak = p->peak, *peaks = (int32_t *)p->stats.peak_sets;
    LMS_CHECK(p->pp->i->allgather(p->pp, &peak, peaks, 1, LMS_DT_I32));
    for (int s = 0; s < p->p; s++) {
        p->stats.idle[s] = p->gather[2 * s];
        p->stats.bubble[s] = p->gather[2 * s + 1];
    }
    return LMS_OK;
}

lms_status lms_pipe_run(lms_trainer *t, const lms_loader *ld, int step, float dloss, double *loss) {
    lms_pipe *p = t->pipe;
    const int T = t->o.seq_len, M = t->o.micro_batch, G = t->o.global_batch;
    p->nsreq = 0;
    p->inflight = p->peak = 0;
    p->t_compute = 0;
    memset(p->bdone, 0, sizeof(int) * (size_t)p->v);
    if (p->s == 0 || p->s == p->p - 1) { /* the tokens (first stage) and targets (last) */
        PH_BEGIN(LMS_PHASE_DATA);
        for (int k = 0; k < p->m; k++)
            for (int b = 0; b < M; b++) {
                const size_t o = ((size_t)k * M + b) * T;
                lms_loader_window(ld, (uint64_t)step * G + t->first_sample + (uint64_t)k * M + b, p->x + o, p->y + o);
            }
        PH_END(LMS_PHASE_DATA);
    }
    /* the schedule's span: from here (the stages left the previous step's collectives
     * together) to the loss reaching every stage, so the wait after a stage's last backward
     * counts; a stage's idle time is the span less its compute */
    const double t0 = lms_now_s();
    LMS_CHECK(post_receives(p));
    double sum = 0;
    for (int k = 0; k < 2 * p->m * p->v; k++) {
        const lms_pp_op *op = &p->ops[k];
        if (op->backward)
            LMS_CHECK(op_backward(p, op->mb, op->chunk, dloss));
        else
            LMS_CHECK(op_forward(p, op->mb, op->chunk, &sum));
    }
    for (int k = 0; k < p->nsreq; k++) LMS_CHECK(lms_comm_wait(p->pp, p->sreq[k]));
    p->nsreq = 0;
    /* the last stage's loss, to every stage */
    LMS_CHECK(p->pp->i->allreduce(p->pp, &sum, loss, 1, LMS_DT_F64, LMS_RED_SUM));
    p->t_total = lms_now_s() - t0;
    return gather_stats(p);
}

lms_status lms_pipe_forward(lms_trainer *t, const int32_t *x, const int32_t *y, int B, int T, float *loss) {
    lms_pipe *p = t->pipe;
    lms_gpt *m = &t->m;
    lms_backend *be = &t->cbe;
    const int last = vlast(p);
    /* the rows of the residual stream a rank holds (as p->NC, for B sequences) */
    const size_t nc = (size_t)B * T * m->cfg.C / (m->tp && m->tp->seq_parallel ? m->tp->size : 1);
    int k;
    LMS_CHECK(set_acquire(p, &k));
    lms_gpt_acts *a = &p->pool[k];
    lms_status st = LMS_OK;
    double mine = 0, sum = 0;
    for (int j = p->s; j <= last && st == LMS_OK; j += p->p) { /* this stage's chunks, in order */
        const int l0 = p->first[j], nl = p->first[j + 1] - l0;
        st = j == 0 ? lms_gpt_embed_forward(m, be, x, B, T, 0, a->stream[0])
                    : p2p(p, a->stream[0], nc, (j - 1) % p->p, j, 0);
        for (int q = 0; q < nl && st == LMS_OK; q++)
            st = lms_gpt_block_forward(m, be, l0 + q, a->stream[q], &a->layer[q], a->stream[q + 1], B, T, NULL);
        if (st != LMS_OK) break;
        if (j < last) {
            st = p2p(p, a->stream[nl], nc, (j + 1) % p->p, j + 1, 1);
        } else {
            float l;
            st = lms_gpt_head_forward(m, be, a->stream[nl], &a->head, y, B, T, &l);
            mine = l;
        }
    }
    set_release(p, k);
    LMS_CHECK(st);
    LMS_CHECK(p->pp->i->allreduce(p->pp, &mine, &sum, 1, LMS_DT_F64, LMS_RED_SUM)); /* the last stage's */
    *loss = (float)sum;
    return LMS_OK;
}

const lms_pp_stats *lms_trainer_pp_stats(const lms_trainer *t) { return t->pipe ? &t->pipe->stats : NULL; }

static size_t put_array(char *buf, size_t cap, size_t k, const char *name, const double *d, const int *n, int cnt) {
    k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, ", \"%s\": [", name);
    for (int s = 0; s < cnt; s++) {
        if (d)
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%.6f", s ? ", " : "", d[s]);
        else
            k += (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "%s%d", s ? ", " : "", n[s]);
    }
    return k + (size_t)snprintf(buf + k, k < cap ? cap - k : 0, "]");
}

void lms_trainer_pp_json(const lms_trainer *t, char *buf, size_t cap) {
    if (cap) buf[0] = 0;
    if (!t->pipe) return;
    const lms_pp_stats *s = &t->pipe->stats;
    size_t k = put_array(buf, cap, 0, "pp_idle", s->idle, NULL, s->stages);
    k = put_array(buf, cap, k, "pp_bubble", s->bubble, NULL, s->stages);
    put_array(buf, cap, k, "pp_peak_sets", NULL, s->peak_sets, s->stages);
}
