/* GPT-2 forward and backward, one backend op per line.
 *
 * Activation shapes (N = B·T rows; per-layer tensors are stacked over L):
 *   encoded (N,C); ln1 (L,N,C); ln1_mean/rstd (L,N); qkv (L,N,3C);
 *   atty (L,N,C); att_lse (L,B,NH,T); attproj (L,N,C); resid2 (L,N,C);
 *   ln2 (L,N,C); ln2_mean/rstd (L,N); fch, fch_gelu (L,N,4C);
 *   fcproj (L,N,C); resid3 (L,N,C); lnf (N,C); lnf_mean/rstd (N);
 *   logits (N,Vp); losses, xent_lse (N).
 * Backward scratch (reused by every layer): dresid, dln, datty (N,C);
 *   dqkv (N,3C); dfch, dfch_gelu (N,4C). dlogits overwrite logits. */
#include "lmscale/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* around each use of a parameter unit (ZeRO); no-ops without hooks */
#define ACQUIRE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->acquire(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)
#define RELEASE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->release(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)
/* a range of gradients is final (data parallelism); no-op without a hook */
#define READY(off, n)                                 \
    do {                                              \
        if (ready) LMS_CHECK(ready(ctx, (off), (n))); \
    } while (0)

/* Every op a pass uses must exist on the backend for fp32 tensors: an error
 * naming the op before any compute, not a crash in the middle. */
static lms_status check_ops(const lms_backend *be, const lms_op *ops, int n) {
    for (int k = 0; k < n; k++) LMS_CHECK(lms_backend_supports(be, ops[k], LMS_DT_F32));
    return LMS_OK;
}
static const lms_op forward_ops[] = {LMS_OP_ENCODER_FWD, LMS_OP_LAYERNORM_FWD, LMS_OP_MATMUL_FWD,
                                     LMS_OP_ATTENTION_FWD, LMS_OP_GELU_FWD, LMS_OP_ADD, LMS_OP_XENT_FWD,
                                     LMS_OP_SUM};
static const lms_op backward_ops[] = {LMS_OP_ENCODER_BWD, LMS_OP_LAYERNORM_BWD, LMS_OP_MATMUL_BWD,
                                      LMS_OP_ATTENTION_BWD, LMS_OP_GELU_BWD, LMS_OP_XENT_BWD};
#define NOPS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static size_t carve(float **dst, float *base, size_t *off, size_t n) {
    if (base) *dst = base + *off;
    *off += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return n;
}

static size_t layout_acts(lms_gpt_acts *a, float *base, const lms_gpt_config *c, int B, int T) {
    size_t N = (size_t)B * T, C = (size_t)c->C, L = (size_t)c->L, off = 0;
    carve(&a->encoded, base, &off, N * C);
    carve(&a->ln1, base, &off, L * N * C);
    carve(&a->ln1_mean, base, &off, L * N);
    carve(&a->ln1_rstd, base, &off, L * N);
    carve(&a->qkv, base, &off, L * N * 3 * C);
    carve(&a->atty, base, &off, L * N * C);
    carve(&a->att_lse, base, &off, L * N * (size_t)c->NH);
    carve(&a->attproj, base, &off, L * N * C);
    carve(&a->resid2, base, &off, L * N * C);
    carve(&a->ln2, base, &off, L * N * C);
    carve(&a->ln2_mean, base, &off, L * N);
    carve(&a->ln2_rstd, base, &off, L * N);
    carve(&a->fch, base, &off, L * N * 4 * C);
    carve(&a->fch_gelu, base, &off, L * N * 4 * C);
    carve(&a->fcproj, base, &off, L * N * C);
    carve(&a->resid3, base, &off, L * N * C);
    carve(&a->lnf, base, &off, N * C);
    carve(&a->lnf_mean, base, &off, N);
    carve(&a->lnf_rstd, base, &off, N);
    carve(&a->logits, base, &off, N * (size_t)c->Vp);
    carve(&a->losses, base, &off, N);
    carve(&a->xent_lse, base, &off, N);
    carve(&a->dresid, base, &off, N * C);
    carve(&a->dln, base, &off, N * C);
    carve(&a->dqkv, base, &off, N * 3 * C);
    carve(&a->datty, base, &off, N * C);
    carve(&a->dfch, base, &off, N * 4 * C);
    carve(&a->dfch_gelu, base, &off, N * 4 * C);
    return off;
}

size_t lms_gpt_act_floats(const lms_gpt_config *cfg, int B, int T) {
    lms_gpt_acts a;
    return layout_acts(&a, NULL, cfg, B, T);
}

lms_status lms_gpt_init(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, int with_grads) {
    return lms_gpt_init_ex(m, cfg, B, T, with_grads ? LMS_GPT_GRADS : 0);
}

lms_status lms_gpt_init_ex(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags) {
    lms_status st;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    LMS_TRY(lms_gpt_layout(cfg, &m->tensors, &m->num_tensors, &m->num_params));
    if (!(flags & LMS_GPT_NO_PARAMS))
        LMS_TRY(lms_alloc_checked((void **)&m->params, m->num_params * sizeof(float), "parameters"));
    if (flags & LMS_GPT_GRADS)
        LMS_TRY(lms_alloc_checked((void **)&m->grads, m->num_params * sizeof(float), "gradients"));
    m->p.h = calloc((size_t)cfg->L, sizeof(lms_gpt_block));
    m->g.h = calloc((size_t)cfg->L, sizeof(lms_gpt_block));
    if (!m->p.h || !m->g.h) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for layer tables");
        goto fail;
    }
    if (m->params) lms_gpt_bind(cfg, m->params, &m->p);
    if (m->grads) lms_gpt_bind(cfg, m->grads, &m->g);
    m->cap_B = B;
    m->cap_T = T;
    m->act_floats = layout_acts(&m->a, NULL, cfg, B, T);
    LMS_TRY(lms_alloc_checked((void **)&m->act_mem, m->act_floats * sizeof(float), "activations"));
    layout_acts(&m->a, m->act_mem, cfg, B, T);
    m->tokens = malloc(sizeof(int32_t) * (size_t)B * T);
    m->targets = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!m->tokens || !m->targets) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for token buffers");
        goto fail;
    }
    return LMS_OK;
fail:
    lms_gpt_free(m);
    return st;
}

void lms_gpt_free(lms_gpt *m) {
    if (!m) return;
    free(m->tensors);
    lms_free(m->params);
    lms_free(m->grads);
    lms_free(m->act_mem);
    free(m->p.h);
    free(m->g.h);
    free(m->tokens);
    free(m->targets);
    memset(m, 0, sizeof *m);
}

lms_status lms_gpt_zero_grad(lms_gpt *m, lms_backend *be) {
    if (!m->grads) return LMS_OK;
    return be->i->memset(be, m->grads, 0, m->num_params * sizeof(float));
}

lms_status lms_gpt_forward(lms_gpt *m, lms_backend *be, const int32_t *tokens, const int32_t *targets,
                           int B, int T, float *loss) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    LMS_ASSERT(B >= 1 && B <= m->cap_B && T >= 1 && T <= m->cap_T && T <= c->maxT);
    const int C = c->C, N = B * T;
    const size_t NC = (size_t)N * C;
    lms_gpt_acts *a = &m->a;
    if (loss) *loss = 0.0f;
    LMS_CHECK(check_ops(be, forward_ops, NOPS(forward_ops)));
    m->B = B;
    m->T = T;
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    m->have_targets = targets != NULL;
    if (targets) memcpy(m->targets, targets, sizeof(int32_t) * (size_t)N);

    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(op->encoder_fwd(be, a->encoded, tokens, m->p.wte, m->p.wpe, B, T, C));
    RELEASE(0, LMS_USE_FORWARD);
    const float *x = a->encoded; /* the residual stream entering each block */
    for (int l = 0; l < c->L; l++) {
        ACQUIRE(l + 1, LMS_USE_FORWARD);
        const lms_gpt_block *w = &m->p.h[l];
        float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * NC * 3, *atty = a->atty + l * NC;
        float *lse = a->att_lse + (size_t)l * N * c->NH, *attproj = a->attproj + l * NC;
        float *resid2 = a->resid2 + l * NC, *ln2 = a->ln2 + l * NC, *fch = a->fch + l * NC * 4;
        float *fch_gelu = a->fch_gelu + l * NC * 4, *fcproj = a->fcproj + l * NC;
        float *resid3 = a->resid3 + l * NC;
        LMS_CHECK(op->layernorm_fwd(be, ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, x,
                          w->ln1w, w->ln1b, N, C));
        LMS_CHECK(op->matmul_fwd(be, qkv, ln1, w->qkvw, w->qkvb, N, C, 3 * C));
        LMS_CHECK(op->attention_fwd(be, atty, lse, qkv, B, T, C, c->NH));
        LMS_CHECK(op->matmul_fwd(be, attproj, atty, w->attprojw, w->attprojb, N, C, C));
        LMS_CHECK(op->add(be, resid2, x, attproj, NC));
        LMS_CHECK(op->layernorm_fwd(be, ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, resid2,
                          w->ln2w, w->ln2b, N, C));
        LMS_CHECK(op->matmul_fwd(be, fch, ln2, w->fcw, w->fcb, N, C, 4 * C));
        LMS_CHECK(op->gelu_fwd(be, fch_gelu, fch, NC * 4));
        LMS_CHECK(op->matmul_fwd(be, fcproj, fch_gelu, w->fcprojw, w->fcprojb, N, 4 * C, C));
        LMS_CHECK(op->add(be, resid3, resid2, fcproj, NC));
        RELEASE(l + 1, LMS_USE_FORWARD);
        x = resid3;
    }
    ACQUIRE(c->L + 1, LMS_USE_FORWARD);
    LMS_CHECK(op->layernorm_fwd(be, a->lnf, a->lnf_mean, a->lnf_rstd, x, m->p.lnfw, m->p.lnfb, N, C));
    RELEASE(c->L + 1, LMS_USE_FORWARD);
    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(op->matmul_fwd(be, a->logits, a->lnf, m->p.wte, NULL, N, C, c->Vp));
    RELEASE(0, LMS_USE_FORWARD);
    if (!targets) return LMS_OK;
    LMS_CHECK(op->xent_fwd(be, a->losses, a->xent_lse, a->logits, targets, N, c->V, c->Vp));
    double sum = 0;
    LMS_CHECK(op->sum(be, a->losses, (size_t)N, &sum));
    if (loss) *loss = (float)(sum / N);
    return LMS_OK;
}

lms_status lms_gpt_backward(lms_gpt *m, lms_backend *be, float dloss) {
    return lms_gpt_backward_ex(m, be, dloss, NULL, NULL);
}

lms_status lms_gpt_backward_ex(lms_gpt *m, lms_backend *be, float dloss, lms_grad_ready_fn ready, void *ctx) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    LMS_ASSERT((m->grads || m->hooks) && m->have_targets);
    const int B = m->B, T = m->T, C = c->C, N = B * T;
    const size_t NC = (size_t)N * C;
    lms_gpt_acts *a = &m->a;
    const lms_gpt_tensors *p = &m->p, *g = &m->g;
    LMS_CHECK(check_ops(be, backward_ops, NOPS(backward_ops)));

    /* LM head and final LayerNorm; dlogits overwrite the logits */
    LMS_CHECK(op->xent_bwd(be, a->logits, a->logits, a->xent_lse, m->targets, dloss, N, c->V, c->Vp));
    LMS_CHECK(op->memset(be, a->dln, 0, NC * sizeof(float)));
    ACQUIRE(0, LMS_USE_BACKWARD);
    LMS_CHECK(op->matmul_bwd(be, a->dln, g->wte, NULL, a->logits, a->lnf, p->wte, N, C, c->Vp));
    RELEASE(0, LMS_USE_BACKWARD);
    const float *x_last = c->L > 0 ? a->resid3 + (size_t)(c->L - 1) * NC : a->encoded;
    LMS_CHECK(op->memset(be, a->dresid, 0, NC * sizeof(float)));
    ACQUIRE(c->L + 1, LMS_USE_BACKWARD);
    LMS_CHECK(op->layernorm_bwd(be, a->dresid, g->lnfw, g->lnfb, a->dln, x_last, p->lnfw, a->lnf_mean,
                      a->lnf_rstd, N, C));
    RELEASE(c->L + 1, LMS_USE_BACKWARD);
    READY((size_t)(g->lnfw - m->grads), 2 * (size_t)C);

    /* dresid holds d(loss)/d(residual stream) and is updated in place: the
     * residual branch is the identity, LayerNorm backward accumulates. */
    for (int l = c->L - 1; l >= 0; l--) {
        ACQUIRE(l + 1, LMS_USE_BACKWARD);
        const lms_gpt_block *w = &p->h[l], *dw = &g->h[l];
        const float *x = l > 0 ? a->resid3 + (size_t)(l - 1) * NC : a->encoded;
        const float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * NC * 3, *atty = a->atty + l * NC;
        const float *lse = a->att_lse + (size_t)l * N * c->NH, *resid2 = a->resid2 + l * NC;
        const float *ln2 = a->ln2 + l * NC, *fch = a->fch + l * NC * 4;
        const float *fch_gelu = a->fch_gelu + l * NC * 4;

        LMS_CHECK(op->memset(be, a->dfch_gelu, 0, NC * 4 * sizeof(float)));
        LMS_CHECK(op->matmul_bwd(be, a->dfch_gelu, dw->fcprojw, dw->fcprojb, a->dresid, fch_gelu, w->fcprojw,
                       N, 4 * C, C));
        LMS_CHECK(op->memset(be, a->dfch, 0, NC * 4 * sizeof(float)));
        LMS_CHECK(op->gelu_bwd(be, a->dfch, fch, a->dfch_gelu, NC * 4));
        LMS_CHECK(op->memset(be, a->dln, 0, NC * sizeof(float)));
        LMS_CHECK(op->matmul_bwd(be, a->dln, dw->fcw, dw->fcb, a->dfch, ln2, w->fcw, N, C, 4 * C));
        LMS_CHECK(op->layernorm_bwd(be, a->dresid, dw->ln2w, dw->ln2b, a->dln, resid2, w->ln2w,
                          a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, N, C));

        LMS_CHECK(op->memset(be, a->datty, 0, NC * sizeof(float)));
        LMS_CHECK(op->matmul_bwd(be, a->datty, dw->attprojw, dw->attprojb, a->dresid, atty, w->attprojw, N,
                       C, C));
        LMS_CHECK(op->memset(be, a->dqkv, 0, NC * 3 * sizeof(float)));
        LMS_CHECK(op->attention_bwd(be, a->dqkv, a->datty, qkv, atty, lse, B, T, C, c->NH));
        LMS_CHECK(op->memset(be, a->dln, 0, NC * sizeof(float)));
        LMS_CHECK(op->matmul_bwd(be, a->dln, dw->qkvw, dw->qkvb, a->dqkv, ln1, w->qkvw, N, C, 3 * C));
        LMS_CHECK(op->layernorm_bwd(be, a->dresid, dw->ln1w, dw->ln1b, a->dln, x, w->ln1w,
                          a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, N, C));
        RELEASE(l + 1, LMS_USE_BACKWARD);
        READY((size_t)(dw->ln1w - m->grads), (size_t)(dw->fcprojb + C - dw->ln1w));
    }
    ACQUIRE(0, LMS_USE_GRAD_ONLY);
    LMS_CHECK(op->encoder_bwd(be, g->wte, g->wpe, a->dresid, m->tokens, B, T, C));
    RELEASE(0, LMS_USE_GRAD_ONLY);
    READY(0, (size_t)(g->h[0].ln1w - m->grads));
    return LMS_OK;
}

/* ---- KV-cache decoding ---- */

lms_status lms_kv_cache_init(lms_kv_cache *kv, const lms_gpt_config *cfg) {
    lms_status st;
    memset(kv, 0, sizeof *kv);
    kv->L = cfg->L;
    kv->maxT = cfg->maxT;
    kv->C = cfg->C;
    size_t n = (size_t)cfg->L * cfg->maxT * cfg->C;
    LMS_TRY(lms_alloc_checked((void **)&kv->k, n * sizeof(float), "the KV cache"));
    LMS_TRY(lms_alloc_checked((void **)&kv->v, n * sizeof(float), "the KV cache"));
    /* x, ln, qkv(3C), att(C), proj(C), fch(4C), gelu(4C), scores(maxT), stats */
    LMS_TRY(lms_alloc_checked((void **)&kv->scratch,
                              sizeof(float) * ((size_t)16 * cfg->C + cfg->maxT + 8), "decode scratch"));
    return LMS_OK;
fail:
    lms_kv_cache_free(kv);
    return st;
}

void lms_kv_cache_free(lms_kv_cache *kv) {
    if (!kv) return;
    lms_free(kv->k);
    lms_free(kv->v);
    lms_free(kv->scratch);
    memset(kv, 0, sizeof *kv);
}

lms_status lms_gpt_decode_step(lms_gpt *m, lms_backend *be, lms_kv_cache *kv, int32_t token,
                               float *logits) {
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int C = c->C, hs = C / c->NH, t = kv->len;
    LMS_ASSERT(t < c->maxT);
    float *x = kv->scratch, *ln = x + C, *qkv = ln + C, *att = qkv + 3 * C, *proj = att + C;
    float *fch = proj + C, *gel = fch + 4 * C, *sc = gel + 4 * C, *stats = sc + c->maxT;
    LMS_CHECK(op->encoder_fwd(be, x, &token, m->p.wte, m->p.wpe + (size_t)t * C, 1, 1, C));
    for (int l = 0; l < c->L; l++) {
        const lms_gpt_block *w = &m->p.h[l];
        float *kc = kv->k + (size_t)l * c->maxT * C, *vc = kv->v + (size_t)l * c->maxT * C;
        LMS_CHECK(op->layernorm_fwd(be, ln, stats, stats + 1, x, w->ln1w, w->ln1b, 1, C));
        LMS_CHECK(op->matmul_fwd(be, qkv, ln, w->qkvw, w->qkvb, 1, C, 3 * C));
        LMS_CHECK(op->copy(be, kc + (size_t)t * C, qkv + C, sizeof(float) * C, LMS_COPY_D2D));
        LMS_CHECK(op->copy(be, vc + (size_t)t * C, qkv + 2 * C, sizeof(float) * C, LMS_COPY_D2D));
        const float scale = 1.0f / sqrtf((float)hs);
        for (int h = 0; h < c->NH; h++) {
            const float *q = qkv + h * hs;
            float mx = -INFINITY, sum = 0;
            for (int u = 0; u <= t; u++) {
                const float *k = kc + (size_t)u * C + h * hs;
                float s = 0;
                for (int d = 0; d < hs; d++) s += q[d] * k[d];
                sc[u] = s * scale;
                if (sc[u] > mx) mx = sc[u];
            }
            for (int u = 0; u <= t; u++) {
                sc[u] = expf(sc[u] - mx);
                sum += sc[u];
            }
            float *o = att + h * hs;
            for (int d = 0; d < hs; d++) o[d] = 0;
            for (int u = 0; u <= t; u++) {
                const float p = sc[u] / sum, *v = vc + (size_t)u * C + h * hs;
                for (int d = 0; d < hs; d++) o[d] += p * v[d];
            }
        }
        LMS_CHECK(op->matmul_fwd(be, proj, att, w->attprojw, w->attprojb, 1, C, C));
        LMS_CHECK(op->add(be, x, x, proj, (size_t)C));
        LMS_CHECK(op->layernorm_fwd(be, ln, stats, stats + 1, x, w->ln2w, w->ln2b, 1, C));
        LMS_CHECK(op->matmul_fwd(be, fch, ln, w->fcw, w->fcb, 1, C, 4 * C));
        LMS_CHECK(op->gelu_fwd(be, gel, fch, (size_t)4 * C));
        LMS_CHECK(op->matmul_fwd(be, proj, gel, w->fcprojw, w->fcprojb, 1, 4 * C, C));
        LMS_CHECK(op->add(be, x, x, proj, (size_t)C));
    }
    LMS_CHECK(op->layernorm_fwd(be, ln, stats, stats + 1, x, m->p.lnfw, m->p.lnfb, 1, C));
    LMS_CHECK(op->matmul_fwd(be, logits, ln, m->p.wte, NULL, 1, C, c->Vp));
    kv->len = t + 1;
    return LMS_OK;
}
