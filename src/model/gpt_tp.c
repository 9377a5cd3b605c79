/* Tensor parallelism (Megatron-LM): one tp rank's part of the model and
 * the split pieces — embed, block l, head+loss — that model.h's pieces run
 * when m->tp is set (docs/parallelism.md, "Tensor parallelism").
 *
 * Shapes on a rank of tp: N = B·T rows; C channels; Cl = C/tp, NHl = NH/tp
 * local heads of hs = C/NH; Vl = Vp/tp vocabulary rows from lo = rank·Vl.
 * Without sequence parallelism every rank holds all N rows of the residual
 * stream; with it, rows [r0, r0 + Nl) of the flattened (B, T), Nl = N/tp,
 * r0 = rank·Nl (LayerNorm, the residual additions, the biases of the
 * row-parallel layers and the embedding are row-wise, so any split of the
 * rows gives the same numbers; attention sees whole sequences inside the
 * column-parallel region).
 *
 *   f: identity forward, all-reduce backward (all-gather forward and
 *      reduce-scatter backward under sequence parallelism)
 *   g: all-reduce forward, identity backward (reduce-scatter forward and
 *      all-gather backward)
 *
 * Gradients of replicated parameters: without sequence parallelism every
 * rank computes the same full value. With it, LayerNorm gradients come from
 * the rank's rows only and are all-reduced over the group (per use, before
 * the unit is released); the row-parallel biases and wpe take their
 * gradients from the gathered d(output), which is already the full sum. */
#include "lmscale/comm.h"
#include "lmscale/model.h"
#include "model_tp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ACQUIRE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->acquire(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)
#define RELEASE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->release(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)

/* ---- configs and initialisation ---- */

lms_status lms_gpt_config_local(const lms_gpt_config *cfg, int tp, lms_gpt_config *local) {
    *local = *cfg;
    local->tp = 0;
    if (tp < 1) return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d must be at least 1", tp);
    if (tp == 1) return LMS_OK;
    if (tp > cfg->NH)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d is more than the %d attention heads: each tensor-parallel "
                          "rank computes whole heads (lower --tp to a divisor of %d)", tp, cfg->NH, cfg->NH);
    if (cfg->NH % tp != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d does not divide the %d attention heads: each "
                          "tensor-parallel rank computes whole heads (choose a --tp that divides %d)", tp, cfg->NH,
                          cfg->NH);
    local->Vp = lms_pad_vocab_tp(cfg->V, tp);
    local->tp = tp;
    return LMS_OK;
}

lms_gpt_config lms_gpt_config_whole(const lms_gpt_config *local) {
    lms_gpt_config c = *local;
    c.tp = 0;
    return c;
}

/* the whole model's view of the same tensor (by name: m may hold a part) */
static lms_status whole_view(const lms_gpt *m, const lms_tensor_view *v, lms_tensor_view *out) {
    const lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
    lms_tensor_view *views = NULL;
    int n;
    size_t np;
    LMS_CHECK(lms_gpt_layout(&whole, &views, &n, &np));
    const lms_tensor_view *w = lms_gpt_find_view(views, n, v->name);
    LMS_ASSERT(w);
    *out = *w;
    free(views);
    return LMS_OK;
}

lms_status lms_gpt_local_shard(const lms_gpt *m, const lms_tensor_view *v, lms_tp_shard *s) {
    lms_tensor_view w;
    LMS_CHECK(whole_view(m, v, &w));
    const lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
    return lms_gpt_tp_shard(&whole, &w, m->cfg.tp > 1 ? m->cfg.tp : 1, m->tp ? m->tp->rank : 0, s);
}

lms_status lms_gpt_init_params_tp(const lms_gpt *m, uint64_t seed, float *dst) {
    const lms_gpt_config whole = lms_gpt_config_whole(&m->cfg);
    lms_tensor_view *views = NULL;
    int n;
    size_t np;
    LMS_CHECK(lms_gpt_layout(&whole, &views, &n, &np));
    lms_status st = LMS_OK;
    for (int i = 0; i < m->num_tensors && st == LMS_OK; i++) { /* m may hold a part: by name */
        const lms_tensor_view *w = lms_gpt_find_view(views, n, m->tensors[i].name);
        lms_tp_shard s;
        st = lms_gpt_tp_shard(&whole, w, m->cfg.tp > 1 ? m->cfg.tp : 1, m->tp ? m->tp->rank : 0, &s);
        if (st == LMS_OK) lms_gpt_init_tp_shard(w, &s, seed, dst + m->tensors[i].offset);
    }
    free(views);
    return st;
}

/* ---- collectives of the tp group ----
 * Every collective of the pieces goes through these, which time it into
 * tp->comm_s; the comm layer counts its bytes (comm.h, coll_bytes). */

static lms_status tp_timed(lms_gpt_tp *tp, double t0, lms_status st) {
    tp->comm_s += lms_now_s() - t0;
    return st;
}

static lms_status tp_allreduce_op(lms_gpt_tp *tp, const float *send, float *recv, size_t n, lms_reduce_op op) {
    const double t0 = lms_now_s();
    return tp_timed(tp, t0, tp->comm->i->allreduce(tp->comm, send, recv, n, LMS_DT_F32, op));
}

static lms_status tp_allreduce(lms_gpt_tp *tp, const float *send, float *recv, size_t n) {
    return tp_allreduce_op(tp, send, recv, n, LMS_RED_SUM);
}

/* g forward / f backward: the partial sums of all N rows become this rank's
 * rows of the sum (sequence parallel: reduce-scatter into dst) or all of it
 * (all-reduce; dst may be part) */
static lms_status tp_reduce_rows(lms_gpt_tp *tp, const float *part, float *dst, size_t N, size_t C) {
    if (!tp->seq_parallel) return tp_allreduce(tp, part, dst, N * C);
    const double t0 = lms_now_s();
    return tp_timed(tp, t0,
                    tp->comm->i->reduce_scatter(tp->comm, part, dst, N / tp->size * C, LMS_DT_F32, LMS_RED_SUM));
}

/* f forward / g backward under sequence parallelism: every rank's rows into
 * full (N,C), this rank's already in place at row r0; also the rows of
 * every rank's vocabulary for decoding (N = tp ranks of C = Vl) */
static lms_status tp_gather_rows(lms_gpt_tp *tp, float *full, size_t N, size_t C) {
    const size_t nl = N / tp->size * C;
    const double t0 = lms_now_s();
    return tp_timed(tp, t0, tp->comm->i->allgather(tp->comm, full + (size_t)tp->rank * nl, full, nl, LMS_DT_F32));
}

/* working memory of sequence parallelism: one (N,C) buffer and the
 * LayerNorm gradients of one use (grown on demand, freed with the tp) */
typedef struct {
    float *full;
    size_t cap;
} tp_work;

static lms_status work_get(lms_gpt_tp *tp, size_t floats, float **out) {
    tp_work *w = (tp_work *)tp->work;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return lms_errorf(LMS_ERR_OOM, "out of memory for tensor-parallel buffers");
        tp->work = w;
    }
    if (w->cap < floats) {
        lms_free(w->full);
        w->full = NULL;
        w->cap = 0;
        LMS_CHECK(lms_alloc_checked((void **)&w->full, floats * sizeof(float), "tensor-parallel buffers"));
        w->cap = floats;
    }
    *out = w->full;
    return LMS_OK;
}

void lms_gpt_tp_free_work(lms_gpt_tp *tp) {
    if (!tp || !tp->work) return;
    tp_work *w = (tp_work *)tp->work;
    lms_free(w->full);
    free(w);
    tp->work = NULL;
}

/* x (rows, C) += bias, row by row: a row-parallel layer's bias, once,
 * after the reduction */
static lms_status add_bias_rows(lms_backend *be, float *x, const float *bias, size_t rows, size_t C) {
    for (size_t i = 0; i < rows; i++) LMS_CHECK(be->i->accumulate(be, x + i * C, bias, C));
    return LMS_OK;
}

/* rows of this rank (all without sequence parallelism) */
static void my_rows(const lms_gpt *m, int N, int *nl, int *r0) {
    const lms_gpt_tp *tp = m->tp;
    *nl = tp->seq_parallel ? N / tp->size : N;
    *r0 = tp->seq_parallel ? tp->rank * *nl : 0;
}

/* LayerNorm gradients of one use: straight into dw, db, or (sequence
 * parallel: from this rank's rows only) into scratch that is all-reduced
 * and added after */
typedef struct {
    float *dst[2];
    size_t C;
    int pending;
} ln_grads;

static lms_status ln_grads_begin(lms_gpt *m, lms_backend *be, ln_grads *g, float *dw, float *db, size_t C,
                                 float **w_out, float **b_out, float *heap) {
    g->dst[0] = dw;
    g->dst[1] = db;
    g->C = C;
    g->pending = m->tp->seq_parallel;
    if (!g->pending) {
        *w_out = dw;
        *b_out = db;
        return LMS_OK;
    }
    float *s = heap;
    LMS_CHECK(be->i->memset(be, s, 0, 2 * C * sizeof(float)));
    *w_out = s;
    *b_out = s + C;
    return LMS_OK;
}

static lms_status ln_grads_end(lms_gpt *m, lms_backend *be, ln_grads *g, float *heap) {
    if (!g->pending) return LMS_OK;
    LMS_CHECK(tp_allreduce(m->tp, heap, heap, 2 * g->C));
    LMS_CHECK(be->i->accumulate(be, g->dst[0], heap, g->C));
    return be->i->accumulate(be, g->dst[1], heap + g->C, g->C);
}

/* ---- embed: unit 0 ---- */

/* d/d(output) of all N rows: dx itself, or (sequence parallel) gathered */
static lms_status full_grad(lms_gpt *m, lms_backend *be, const float *dx, int N, const float **out) {
    const size_t C = (size_t)m->cfg.C;
    if (!m->tp->seq_parallel) {
        *out = dx;
        return LMS_OK;
    }
    float *w = NULL;
    const size_t nl = (size_t)N / m->tp->size;
    LMS_CHECK(work_get(m->tp, (size_t)N * C, &w));
    LMS_CHECK(be->i->copy(be, w + (size_t)m->tp->rank * nl * C, dx, nl * C * sizeof(float), LMS_COPY_D2D));
    LMS_CHECK(tp_gather_rows(m->tp, w, (size_t)N, C));
    *out = w;
    return LMS_OK;
}


/* dst (N,C) = this rank's wte rows of tokens, 0 for tokens outside them */
static lms_status masked_lookup(lms_gpt *m, lms_backend *be, const int32_t *tokens, size_t N, float *dst) {
    const size_t C = (size_t)m->cfg.C, Vl = (size_t)m->cfg.Vp / (size_t)m->tp->size;
    const int64_t lo = (int64_t)m->tp->rank * (int64_t)Vl;
    for (size_t i = 0; i < N; i++) {
        const int64_t t = (int64_t)tokens[i] - lo;
        if (t >= 0 && t < (int64_t)Vl)
            LMS_CHECK(be->i->copy(be, dst + i * C, m->p.wte + (size_t)t * C, C * sizeof(float), LMS_COPY_D2D));
        else
            LMS_CHECK(be->i->memset(be, dst + i * C, 0, C * sizeof(float)));
    }
    return LMS_OK;
}

lms_status lms_gpt_tp_embed_forward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T, int pos0,
                                    float *out) {
    const size_t C = (size_t)m->cfg.C, N = (size_t)B * T;
    int nl, r0;
    my_rows(m, (int)N, &nl, &r0);
    LMS_ASSERT(pos0 >= 0 && pos0 + T <= m->cfg.maxT);
    float *part = out;
    if (m->tp->seq_parallel) LMS_CHECK(work_get(m->tp, N * C, &part));
    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(masked_lookup(m, be, tokens, N, part));
    LMS_CHECK(tp_reduce_rows(m->tp, part, out, N, C)); /* g: the rank that holds a token's row contributes it */
    for (int i = 0; i < nl; i++)
        LMS_CHECK(be->i->accumulate(be, out + (size_t)i * C, m->p.wpe + (size_t)(pos0 + (r0 + i) % T) * C, C));
    RELEASE(0, LMS_USE_FORWARD);
    return LMS_OK;
}

lms_status lms_gpt_tp_embed_backward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T,
                                     const float *dx) {
    const size_t C = (size_t)m->cfg.C, N = (size_t)B * T, Vl = (size_t)m->cfg.Vp / (size_t)m->tp->size;
    const int64_t lo = (int64_t)m->tp->rank * (int64_t)Vl;
    const float *full;
    LMS_CHECK(full_grad(m, be, dx, (int)N, &full)); /* g backward under sequence parallelism */
    ACQUIRE(0, LMS_USE_GRAD_ONLY);
    for (size_t i = 0; i < N; i++) {
        const int64_t t = (int64_t)tokens[i] - lo;
        if (t >= 0 && t < (int64_t)Vl) LMS_CHECK(be->i->accumulate(be, m->g.wte + (size_t)t * C, full + i * C, C));
    }
    for (int b = 0; b < B; b++) /* wpe from every row: the full gradient on every rank */
        LMS_CHECK(be->i->accumulate(be, m->g.wpe, full + (size_t)b * T * C, (size_t)T * C));
    RELEASE(0, LMS_USE_GRAD_ONLY);
    return LMS_OK;
}

/* ---- block l: unit l+1 ---- */

lms_status lms_gpt_tp_block_forward(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *a,
                                    float *out, int B, int T, struct lms_kv_cache *kv) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    lms_gpt_tp *tp = m->tp;
    const int C = c->C, Cl = C / tp->size, NHl = c->NH / tp->size, N = B * T;
    int nl, r0;
    my_rows(m, N, &nl, &r0);
    const size_t NLC = (size_t)nl * C;
    if (kv && tp->seq_parallel)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "KV-cache decoding with sequence parallelism: decode without it");
    LMS_ASSERT(!kv || (B == 1 && T == 1 && kv->len < c->maxT && kv->C == Cl));
    ACQUIRE(l + 1, LMS_USE_FORWARD);
    const lms_gpt_block *w = &m->p.h[l];
    /* attention: LN on this rank's rows, f, column-parallel QKV, local heads, row-parallel projection, g */
    float *ln1 = a->ln1 + (size_t)r0 * C;
    LMS_CHECK(op->layernorm_fwd(be, ln1, a->ln1_mean + r0, a->ln1_rstd + r0, in, w->ln1w, w->ln1b, nl, C));
    if (tp->seq_parallel) LMS_CHECK(tp_gather_rows(tp, a->ln1, (size_t)N, (size_t)C));
    LMS_CHECK(op->matmul_fwd(be, a->qkv, a->ln1, w->qkvw, w->qkvb, N, C, 3 * Cl));
    if (kv) /* decoding: the rank's heads against its part of the cache */
        LMS_CHECK(lms_gpt_attend_cached(be, l, NHl, a->qkv, a->atty, kv));
    else
        LMS_CHECK(op->attention_fwd(be, a->atty, a->att_lse, a->qkv, B, T, Cl, NHl));
    LMS_CHECK(op->matmul_fwd(be, a->attproj, a->atty, w->attprojw, NULL, N, Cl, C));
    LMS_CHECK(tp_reduce_rows(tp, a->attproj, a->resid2, (size_t)N, (size_t)C));
    LMS_CHECK(add_bias_rows(be, a->resid2, w->attprojb, (size_t)nl, (size_t)C));
    LMS_CHECK(op->add(be, a->resid2, in, a->resid2, NLC));
    /* MLP: the same with fc column-parallel and the projection row-parallel */
    float *ln2 = a->ln2 + (size_t)r0 * C;
    LMS_CHECK(op->layernorm_fwd(be, ln2, a->ln2_mean + r0, a->ln2_rstd + r0, a->resid2, w->ln2w, w->ln2b, nl, C));
    if (tp->seq_parallel) LMS_CHECK(tp_gather_rows(tp, a->ln2, (size_t)N, (size_t)C));
    LMS_CHECK(op->matmul_fwd(be, a->fch, a->ln2, w->fcw, w->fcb, N, C, 4 * Cl));
    LMS_CHECK(op->gelu_fwd(be, a->fch_gelu, a->fch, (size_t)N * 4 * Cl));
    LMS_CHECK(op->matmul_fwd(be, a->fcproj, a->fch_gelu, w->fcprojw, NULL, N, 4 * Cl, C));
    LMS_CHECK(tp_reduce_rows(tp, a->fcproj, out, (size_t)N, (size_t)C));
    LMS_CHECK(add_bias_rows(be, out, w->fcprojb, (size_t)nl, (size_t)C));
    LMS_CHECK(op->add(be, out, a->resid2, out, NLC));
    RELEASE(l + 1, LMS_USE_FORWARD);
    return LMS_OK;
}

lms_status lms_gpt_tp_block_backward(lms_gpt *m, lms_backend *be, int l, const float *in,
                                     const lms_gpt_layer_acts *a, float *dx, lms_gpt_grad_acts *g, int B, int T) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    lms_gpt_tp *tp = m->tp;
    const int C = c->C, Cl = C / tp->size, NHl = c->NH / tp->size, N = B * T;
    const size_t NC = (size_t)N * C;
    int nl, r0;
    my_rows(m, N, &nl, &r0);
    /* under sequence parallelism the reduced d(LN output) of this rank's
     * rows goes to datty (free at those points), the LN gradients to dqkv's
     * tail (4C floats; dqkv has 3C·N and uses 3Cl·N) */
    float *dln_red = tp->seq_parallel ? g->datty : g->dln;
    float *lns = g->dqkv + (size_t)N * 3 * Cl;
    ACQUIRE(l + 1, LMS_USE_BACKWARD);
    const lms_gpt_block *w = &m->p.h[l], *dw = &m->g.h[l];
    ln_grads lg;
    float *gw, *gb;
    /* MLP */
    const float *dxf;
    LMS_CHECK(full_grad(m, be, dx, N, &dxf));
    LMS_CHECK(op->memset(be, g->dfch_gelu, 0, (size_t)N * 4 * Cl * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dfch_gelu, dw->fcprojw, dw->fcprojb, dxf, a->fch_gelu, w->fcprojw, N, 4 * Cl, C));
    LMS_CHECK(op->memset(be, g->dfch, 0, (size_t)N * 4 * Cl * sizeof(float)));
    LMS_CHECK(op->gelu_bwd(be, g->dfch, a->fch, g->dfch_gelu, (size_t)N * 4 * Cl));
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dln, dw->fcw, dw->fcb, g->dfch, a->ln2, w->fcw, N, C, 4 * Cl));
    LMS_CHECK(tp_reduce_rows(tp, g->dln, dln_red, (size_t)N, (size_t)C)); /* f backward */
    LMS_CHECK(ln_grads_begin(m, be, &lg, dw->ln2w, dw->ln2b, (size_t)C, &gw, &gb, lns));
    LMS_CHECK(op->layernorm_bwd(be, dx, gw, gb, dln_red, a->resid2, w->ln2w, a->ln2_mean + r0, a->ln2_rstd + r0,
                                nl, C));
    LMS_CHECK(ln_grads_end(m, be, &lg, lns));
    /* attention */
    LMS_CHECK(full_grad(m, be, dx, N, &dxf));
    LMS_CHECK(op->memset(be, g->datty, 0, (size_t)N * Cl * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->datty, dw->attprojw, dw->attprojb, dxf, a->atty, w->attprojw, N, Cl, C));
    LMS_CHECK(op->memset(be, g->dqkv, 0, (size_t)N * 3 * Cl * sizeof(float)));
    LMS_CHECK(op->attention_bwd(be, g->dqkv, g->datty, a->qkv, a->atty, a->att_lse, B, T, Cl, NHl));
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dln, dw->qkvw, dw->qkvb, g->dqkv, a->ln1, w->qkvw, N, C, 3 * Cl));
    LMS_CHECK(tp_reduce_rows(tp, g->dln, dln_red, (size_t)N, (size_t)C));
    LMS_CHECK(ln_grads_begin(m, be, &lg, dw->ln1w, dw->ln1b, (size_t)C, &gw, &gb, lns));
    LMS_CHECK(op->layernorm_bwd(be, dx, gw, gb, dln_red, in, w->ln1w, a->ln1_mean + r0, a->ln1_rstd + r0, nl, C));
    LMS_CHECK(ln_grads_end(m, be, &lg, lns));
    RELEASE(l + 1, LMS_USE_BACKWARD);
    return LMS_OK;
}

/* ---- head + loss: units L+1 (ln_f) and 0 (wte) ---- */

/* Vocabulary-parallel softmax cross-entropy over this rank's Vl columns
 * (global lo + j; those >= V are padding, outside the loss): the row max and
 * the sum of exp, each all-reduced, and the target's logit from the rank
 * that holds it. losses, lse (N) on every rank. Host memory (CPU
 * backends). */
static lms_status vp_xent_fwd(lms_gpt *m, const float *logits, const int32_t *targets, int N, float *losses,
                              float *lse) {
    const int Vl = m->cfg.Vp / m->tp->size, lo = m->tp->rank * Vl;
    int valid = m->cfg.V - lo;
    valid = valid < 0 ? 0 : valid > Vl ? Vl : valid;
    float *buf = malloc(sizeof(float) * 3 * (size_t)N);
    if (!buf) return lms_errorf(LMS_ERR_OOM, "out of memory for the cross-entropy");
    float *mx = buf, *se = buf + N, *tl = buf + 2 * N; /* se and tl travel together */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * Vl;
        float v = -INFINITY;
        for (int j = 0; j < valid; j++) v = x[j] > v ? x[j] : v;
        mx[i] = v;
    }
    lms_status st = tp_allreduce_op(m->tp, mx, mx, (size_t)N, LMS_RED_MAX);
    if (st == LMS_OK) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++) {
            const float *x = logits + (size_t)i * Vl;
            double s = 0;
            for (int j = 0; j < valid; j++) s += expf(x[j] - mx[i]);
            se[i] = (float)s;
            const int t = targets[i] - lo;
            tl[i] = t >= 0 && t < valid ? x[t] : 0.0f;
        }
        st = tp_allreduce(m->tp, se, se, 2 * (size_t)N);
    }
    if (st == LMS_OK)
        for (int i = 0; i < N; i++) {
            lse[i] = mx[i] + logf(se[i]);
            losses[i] = lse[i] - tl[i];
        }
    free(buf);
    return st;
}

/* dlogits (N,Vl) = (softmax - onehot)·dloss on valid columns, 0 on padding,
 * in place: the backend's xent_bwd on this rank's columns, the targets in
 * their index (one outside them adds no one-hot). Through the op, so that a
 * compute backend (mixed precision) rounds the result as it does at tp 1. */
static lms_status vp_xent_bwd(const lms_gpt *m, lms_backend *be, float *logits, const float *lse,
                              const int32_t *targets, int N, float dloss) {
    const int Vl = m->cfg.Vp / m->tp->size, lo = m->tp->rank * Vl;
    int valid = m->cfg.V - lo;
    valid = valid < 0 ? 0 : valid > Vl ? Vl : valid;
    int32_t *local = malloc(sizeof(int32_t) * (size_t)N);
    if (!local) return lms_errorf(LMS_ERR_OOM, "out of memory for the cross-entropy");
    for (int i = 0; i < N; i++) local[i] = targets[i] - lo < 0 ? -1 : targets[i] - lo;
    lms_status st = be->i->xent_bwd(be, logits, logits, lse, local, dloss, N, valid, Vl);
    free(local);
    return st;
}

lms_status lms_gpt_tp_head_forward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                   const int32_t *targets, int B, int T, float *loss) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int N = B * T, C = c->C, Vl = c->Vp / m->tp->size;
    int nl, r0;
    my_rows(m, N, &nl, &r0);
    if (loss) *loss = 0.0f;
    ACQUIRE(c->L + 1, LMS_USE_FORWARD);
    LMS_CHECK(op->layernorm_fwd(be, h->lnf + (size_t)r0 * C, h->lnf_mean + r0, h->lnf_rstd + r0, in, m->p.lnfw,
                                m->p.lnfb, nl, C));
    RELEASE(c->L + 1, LMS_USE_FORWARD);
    if (m->tp->seq_parallel) LMS_CHECK(tp_gather_rows(m->tp, h->lnf, (size_t)N, (size_t)C));
    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(op->matmul_fwd(be, h->logits, h->lnf, m->p.wte, NULL, N, C, Vl)); /* this rank's vocabulary */
    RELEASE(0, LMS_USE_FORWARD);
    if (!targets) return LMS_OK;
    LMS_CHECK(vp_xent_fwd(m, h->logits, targets, N, h->losses, h->xent_lse));
    double sum = 0;
    LMS_CHECK(op->sum(be, h->losses, (size_t)N, &sum));
    if (loss) *loss = (float)(sum / N);
    return LMS_OK;
}

lms_status lms_gpt_tp_head_backward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                    const int32_t *targets, float dloss, float *dx, lms_gpt_grad_acts *g, int B,
                                    int T) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int C = c->C, N = B * T, Vl = c->Vp / m->tp->size;
    const size_t NC = (size_t)N * C;
    int nl, r0;
    my_rows(m, N, &nl, &r0);
    float *dln_red = m->tp->seq_parallel ? g->datty : g->dln;
    float *lns = g->dqkv;
    LMS_CHECK(vp_xent_bwd(m, be, h->logits, h->xent_lse, targets, N, dloss));
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    ACQUIRE(0, LMS_USE_BACKWARD);
    LMS_CHECK(op->matmul_bwd(be, g->dln, m->g.wte, NULL, h->logits, h->lnf, m->p.wte, N, C, Vl));
    RELEASE(0, LMS_USE_BACKWARD);
    LMS_CHECK(tp_reduce_rows(m->tp, g->dln, dln_red, (size_t)N, (size_t)C)); /* f backward */
    LMS_CHECK(op->memset(be, dx, 0, (size_t)nl * C * sizeof(float)));
    ACQUIRE(c->L + 1, LMS_USE_BACKWARD);
    ln_grads lg;
    float *gw, *gb;
    LMS_CHECK(ln_grads_begin(m, be, &lg, m->g.lnfw, m->g.lnfb, (size_t)C, &gw, &gb, lns));
    LMS_CHECK(op->layernorm_bwd(be, dx, gw, gb, dln_red, in, m->p.lnfw, h->lnf_mean + r0, h->lnf_rstd + r0, nl, C));
    LMS_CHECK(ln_grads_end(m, be, &lg, lns));
    RELEASE(c->L + 1, LMS_USE_BACKWARD);
    return LMS_OK;
}

/* ---- decoding: one position's logits over the whole vocabulary ---- */

lms_status lms_gpt_logits_row(lms_gpt *m, lms_backend *be, const lms_gpt_head_acts *h, int row, float *out) {
    const size_t Vp = (size_t)m->cfg.Vp, Vl = m->tp ? Vp / (size_t)m->tp->size : Vp;
    const size_t mine = m->tp ? (size_t)m->tp->rank * Vl : 0;
    LMS_CHECK(be->i->copy(be, out + mine, h->logits + (size_t)row * Vl, sizeof(float) * Vl, LMS_COPY_D2H));
    if (!m->tp) return LMS_OK;
    /* every rank's Vp/tp columns, in rank order: the vocabulary's order; an
     * all-gather moves bytes, so every rank holds the same logits */
    return tp_gather_rows(m->tp, out, (size_t)m->tp->size, Vl);
}
