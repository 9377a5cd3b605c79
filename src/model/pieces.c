/* The GPT-2 model in three pieces — embed, block l, head+loss — each with
 * an explicit forward and backward, one backend op per line (model.h).
 * Shapes: N = B·T rows; C channels; NH heads of hs = C/NH; Vp padded vocab.
 * A piece reads its input rows `in` (N,C), writes its output rows, keeps
 * what its backward needs in its part of the caller's activation set, and
 * acquires/releases the parameter units it reads through m->hooks (ZeRO-3
 * gathers them; ZeRO-2/3 reduce-scatter their gradients on release). */
#include "lmscale/model.h"
#include "model_tp.h"

#include <math.h>

/* around each use of a parameter unit (ZeRO); no-ops without hooks */
#define ACQUIRE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->acquire(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)
#define RELEASE(u, mode)                                                            \
    do {                                                                            \
        if (m->hooks) LMS_CHECK(m->hooks->release(m->hooks->ctx, m, (u), (mode)));  \
    } while (0)

/* ---- embed: unit 0 ---- */

lms_status lms_gpt_embed_forward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T, int pos0,
                                 float *out) {
    if (m->tp) return lms_gpt_tp_embed_forward(m, be, tokens, B, T, pos0, out);
    const int C = m->cfg.C;
    LMS_ASSERT(pos0 >= 0 && pos0 + T <= m->cfg.maxT);
    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(be->i->encoder_fwd(be, out, tokens, m->p.wte, m->p.wpe + (size_t)pos0 * C, B, T, C));
    RELEASE(0, LMS_USE_FORWARD);
    return LMS_OK;
}

lms_status lms_gpt_embed_backward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T,
                                  const float *dx) {
    if (m->tp) return lms_gpt_tp_embed_backward(m, be, tokens, B, T, dx);
    ACQUIRE(0, LMS_USE_GRAD_ONLY);
    LMS_CHECK(be->i->encoder_bwd(be, m->g.wte, m->g.wpe, dx, tokens, B, T, m->cfg.C));
    RELEASE(0, LMS_USE_GRAD_ONLY);
    return LMS_OK;
}

/* ---- block l: unit l+1 ---- */

/* Decoding: the new token's k, v (in qkv, (1,3C) of the cache's C = kv->C
 * columns: the whole model's, or a tp rank's heads) go into the cache at
 * position t = kv->len; atty (1,C) = softmax(q·K[0..t]ᵀ/sqrt(hs))·V[0..t]
 * for each of the NH heads of those columns. */
lms_status lms_gpt_attend_cached(lms_backend *be, int l, int NH, const float *qkv, float *atty, lms_kv_cache *kv) {
    const int C = kv->C, t = kv->len;
    float *kc = kv->k + (size_t)l * kv->maxT * C, *vc = kv->v + (size_t)l * kv->maxT * C;
    LMS_CHECK(be->i->copy(be, kc + (size_t)t * C, qkv + C, sizeof(float) * C, LMS_COPY_D2D));
    LMS_CHECK(be->i->copy(be, vc + (size_t)t * C, qkv + 2 * C, sizeof(float) * C, LMS_COPY_D2D));
    return be->i->attention_decode(be, atty, qkv, kc, vc, t, C, NH, (size_t)C, kv->scores);
}

lms_status lms_gpt_block_forward(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *a,
                                 float *out, int B, int T, lms_kv_cache *kv) {
    if (m->tp) return lms_gpt_tp_block_forward(m, be, l, in, a, out, B, T, kv);
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int C = c->C, N = B * T;
    const size_t NC = (size_t)N * C;
    LMS_ASSERT(l >= 0 && l < c->L && (!kv || (B == 1 && T == 1 && kv->len < c->maxT)));
    ACQUIRE(l + 1, LMS_USE_FORWARD);
    const lms_gpt_block *w = &m->p.h[l];
    LMS_CHECK(op->layernorm_fwd(be, a->ln1, a->ln1_mean, a->ln1_rstd, in, w->ln1w, w->ln1b, N, C));
    LMS_CHECK(op->matmul_fwd(be, a->qkv, a->ln1, w->qkvw, w->qkvb, N, C, 3 * C));
    if (kv)
        LMS_CHECK(lms_gpt_attend_cached(be, l, c->NH, a->qkv, a->atty, kv));
    else
        LMS_CHECK(op->attention_fwd(be, a->atty, a->att_lse, a->qkv, B, T, C, c->NH));
    LMS_CHECK(op->matmul_fwd(be, a->attproj, a->atty, w->attprojw, w->attprojb, N, C, C));
    LMS_CHECK(op->add(be, a->resid2, in, a->attproj, NC));
    LMS_CHECK(op->layernorm_fwd(be, a->ln2, a->ln2_mean, a->ln2_rstd, a->resid2, w->ln2w, w->ln2b, N, C));
    LMS_CHECK(op->matmul_fwd(be, a->fch, a->ln2, w->fcw, w->fcb, N, C, 4 * C));
    LMS_CHECK(op->gelu_fwd(be, a->fch_gelu, a->fch, NC * 4));
    LMS_CHECK(op->matmul_fwd(be, a->fcproj, a->fch_gelu, w->fcprojw, w->fcprojb, N, 4 * C, C));
    LMS_CHECK(op->add(be, out, a->resid2, a->fcproj, NC));
    RELEASE(l + 1, LMS_USE_FORWARD);
    return LMS_OK;
}

lms_status lms_gpt_block_backward(lms_gpt *m, lms_backend *be, int l, const float *in,
                                  const lms_gpt_layer_acts *a, float *dx, lms_gpt_grad_acts *g, int B, int T) {
    if (m->tp) return lms_gpt_tp_block_backward(m, be, l, in, a, dx, g, B, T);
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int C = c->C, N = B * T;
    const size_t NC = (size_t)N * C;
    ACQUIRE(l + 1, LMS_USE_BACKWARD);
    const lms_gpt_block *w = &m->p.h[l], *dw = &m->g.h[l];
    /* MLP: dx is d/d(out) = d/d(resid2 + fcproj) */
    LMS_CHECK(op->memset(be, g->dfch_gelu, 0, NC * 4 * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dfch_gelu, dw->fcprojw, dw->fcprojb, dx, a->fch_gelu, w->fcprojw, N, 4 * C, C));
    LMS_CHECK(op->memset(be, g->dfch, 0, NC * 4 * sizeof(float)));
    LMS_CHECK(op->gelu_bwd(be, g->dfch, a->fch, g->dfch_gelu, NC * 4));
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dln, dw->fcw, dw->fcb, g->dfch, a->ln2, w->fcw, N, C, 4 * C));
    LMS_CHECK(op->layernorm_bwd(be, dx, dw->ln2w, dw->ln2b, g->dln, a->resid2, w->ln2w, a->ln2_mean, a->ln2_rstd,
                                N, C));
    /* attention: dx is now d/d(resid2) = d/d(in + attproj) */
    LMS_CHECK(op->memset(be, g->datty, 0, NC * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->datty, dw->attprojw, dw->attprojb, dx, a->atty, w->attprojw, N, C, C));
    LMS_CHECK(op->memset(be, g->dqkv, 0, NC * 3 * sizeof(float)));
    LMS_CHECK(op->attention_bwd(be, g->dqkv, g->datty, a->qkv, a->atty, a->att_lse, B, T, C, c->NH));
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    LMS_CHECK(op->matmul_bwd(be, g->dln, dw->qkvw, dw->qkvb, g->dqkv, a->ln1, w->qkvw, N, C, 3 * C));
    LMS_CHECK(op->layernorm_bwd(be, dx, dw->ln1w, dw->ln1b, g->dln, in, w->ln1w, a->ln1_mean, a->ln1_rstd, N, C));
    RELEASE(l + 1, LMS_USE_BACKWARD);
    return LMS_OK;
}

/* ---- head + loss: units L+1 (ln_f) and 0 (the tied wte) ---- */

lms_status lms_gpt_head_forward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                const int32_t *targets, int B, int T, float *loss) {
    return lms_gpt_head_forward_train(m, be, in, h, targets, B, T, 0.0f, loss);
}

/* the backend has the fused cross-entropy for fp32 */
static int has_xent_fused(const lms_backend_i *op) {
    return op->xent_fused && (op->op_dtypes[LMS_OP_XENT_FUSED] & LMS_DTM(LMS_DT_F32));
}

lms_status lms_gpt_head_forward_train(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                      const int32_t *targets, int B, int T, float dloss, float *loss) {
    h->dlogits_dloss = 0.0f;
    if (m->tp) return lms_gpt_tp_head_forward(m, be, in, h, targets, B, T, loss);
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int N = B * T;
    if (loss) *loss = 0.0f;
    ACQUIRE(c->L + 1, LMS_USE_FORWARD);
    LMS_CHECK(op->layernorm_fwd(be, h->lnf, h->lnf_mean, h->lnf_rstd, in, m->p.lnfw, m->p.lnfb, N, c->C));
    RELEASE(c->L + 1, LMS_USE_FORWARD);
    ACQUIRE(0, LMS_USE_FORWARD);
    LMS_CHECK(op->matmul_fwd(be, h->logits, h->lnf, m->p.wte, NULL, N, c->C, c->Vp));
    RELEASE(0, LMS_USE_FORWARD);
    if (!targets) return LMS_OK;
    if (dloss != 0.0f && has_xent_fused(op)) {
        LMS_CHECK(op->xent_fused(be, h->losses, h->xent_lse, h->logits, targets, dloss, N, c->V, c->Vp));
        h->dlogits_dloss = dloss;
    } else {
        LMS_CHECK(op->xent_fwd(be, h->losses, h->xent_lse, h->logits, targets, N, c->V, c->Vp));
    }
    double sum = 0;
    LMS_CHECK(op->sum(be, h->losses, (size_t)N, &sum));
    if (loss) *loss = (float)(sum / N);
    return LMS_OK;
}

lms_status lms_gpt_head_backward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                 const int32_t *targets, float dloss, float *dx, lms_gpt_grad_acts *g, int B,
                                 int T) {
    if (m->tp) return lms_gpt_tp_head_backward(m, be, in, h, targets, dloss, dx, g, B, T);
    const lms_gpt_config *c = &m->cfg;
    const lms_backend_i *op = be->i;
    const int C = c->C, N = B * T;
    const size_t NC = (size_t)N * C;
    if (h->dlogits_dloss == 0.0f)
        LMS_CHECK(op->xent_bwd(be, h->logits, h->logits, h->xent_lse, targets, dloss, N, c->V, c->Vp));
    else if (h->dlogits_dloss != dloss)
        return lms_errorf(LMS_ERR_INTERNAL, "the head's forward wrote the loss gradient for dloss %g; its backward "
                          "was called with %g (pass lms_gpt_backward the dloss of lms_gpt_forward_train)",
                          (double)h->dlogits_dloss, (double)dloss);
    h->dlogits_dloss = 0.0f; /* the logits hold dlogits either way now */
    LMS_CHECK(op->memset(be, g->dln, 0, NC * sizeof(float)));
    ACQUIRE(0, LMS_USE_BACKWARD);
    LMS_CHECK(op->matmul_bwd(be, g->dln, m->g.wte, NULL, h->logits, h->lnf, m->p.wte, N, C, c->Vp));
    RELEASE(0, LMS_USE_BACKWARD);
    LMS_CHECK(op->memset(be, dx, 0, NC * sizeof(float)));
    ACQUIRE(c->L + 1, LMS_USE_BACKWARD);
    LMS_CHECK(op->layernorm_bwd(be, dx, m->g.lnfw, m->g.lnfb, g->dln, in, m->p.lnfw, h->lnf_mean, h->lnf_rstd, N, C));
    RELEASE(c->L + 1, LMS_USE_BACKWARD);
    return LMS_OK;
}
