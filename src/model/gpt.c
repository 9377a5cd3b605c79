/* The GPT-2 model as a whole: its parameters and gradients, caller-owned
 * activation sets, and the whole-model forward, backward and KV-cache
 * decoding as thin loops over the pieces of pieces.c (embed, block l,
 * head+loss). Activation shapes: model.h (lms_gpt_acts). */
#include "lmscale/model.h"

#include <stdlib.h>
#include <string.h>

/* Every op a pass uses must exist on the backend for fp32 tensors: an error
 * naming the op before any compute, not a crash in the middle. */
static lms_status check_ops(const lms_backend *be, const lms_op *ops, int n) {
    for (int k = 0; k < n; k++) LMS_CHECK(lms_backend_supports(be, ops[k], LMS_DT_F32));
    return LMS_OK;
}
static const lms_op forward_ops[] = {LMS_OP_ENCODER_FWD, LMS_OP_LAYERNORM_FWD, LMS_OP_MATMUL_FWD,
                                     LMS_OP_ATTENTION_FWD, LMS_OP_GELU_FWD, LMS_OP_ADD, LMS_OP_XENT_FWD,
                                     LMS_OP_SUM};
static const lms_op decode_ops[] = {LMS_OP_ENCODER_FWD, LMS_OP_LAYERNORM_FWD, LMS_OP_MATMUL_FWD,
                                    LMS_OP_ATTENTION_DECODE, LMS_OP_GELU_FWD, LMS_OP_ADD};
static const lms_op backward_ops[] = {LMS_OP_ENCODER_BWD, LMS_OP_LAYERNORM_BWD, LMS_OP_MATMUL_BWD,
                                      LMS_OP_ATTENTION_BWD, LMS_OP_GELU_BWD, LMS_OP_XENT_BWD};
#define NOPS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static size_t carve(float **dst, float *base, size_t *off, size_t n) {
    if (base) *dst = base + *off;
    *off += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return n;
}

/* Carves a's buffers from base (NULL: counts); returns the floats needed.
 * Layer by layer, each layer's saved activations contiguous. Under
 * recomputation (model.h, lms_recompute) what a layer does not keep lives
 * once, in layer 0's run, and every layer points there. */
static size_t layout_acts(lms_gpt_acts *a, float *base, const lms_gpt_config *c, int B, int T, int with_backward,
                          lms_recompute rc) {
    const size_t N = (size_t)B * T, C = (size_t)c->C;
    size_t off = 0;
    if (!with_backward) rc = LMS_RECOMPUTE_NONE;
    for (int l = 0; l <= c->L; l++) carve(&a->stream[l], base, &off, N * C);
    for (int l = 0; l < c->L; l++) {
        lms_gpt_layer_acts *y = &a->layer[l];
        if (l > 0 && rc != LMS_RECOMPUTE_NONE) *y = a->layer[0]; /* the shared parts */
        const int keep = l == 0 || rc == LMS_RECOMPUTE_NONE;      /* what selective drops */
        const int kept = l == 0 || rc != LMS_RECOMPUTE_FULL;      /* what selective keeps */
        if (kept) {
            carve(&y->ln1, base, &off, N * C);
            carve(&y->ln1_mean, base, &off, N);
            carve(&y->ln1_rstd, base, &off, N);
            carve(&y->qkv, base, &off, N * 3 * C);
        }
        if (keep) {
            carve(&y->atty, base, &off, N * C);
            carve(&y->att_lse, base, &off, N * (size_t)c->NH);
            carve(&y->attproj, base, &off, N * C);
        }
        if (kept) {
            carve(&y->resid2, base, &off, N * C);
            carve(&y->ln2, base, &off, N * C);
            carve(&y->ln2_mean, base, &off, N);
            carve(&y->ln2_rstd, base, &off, N);
            carve(&y->fch, base, &off, N * 4 * C);
        }
        if (keep) {
            carve(&y->fch_gelu, base, &off, N * 4 * C);
            carve(&y->fcproj, base, &off, N * C);
        }
    }
    lms_gpt_head_acts *h = &a->head;
    carve(&h->lnf, base, &off, N * C);
    carve(&h->lnf_mean, base, &off, N);
    carve(&h->lnf_rstd, base, &off, N);
    carve(&h->logits, base, &off, N * (size_t)c->Vp);
    carve(&h->losses, base, &off, N);
    carve(&h->xent_lse, base, &off, N);
    if (with_backward) {
        lms_gpt_grad_acts *g = &a->grad;
        carve(&g->dx, base, &off, N * C);
        carve(&g->dln, base, &off, N * C);
        carve(&g->dqkv, base, &off, N * 3 * C);
        carve(&g->datty, base, &off, N * C);
        carve(&g->dfch, base, &off, N * 4 * C);
        carve(&g->dfch_gelu, base, &off, N * 4 * C);
    }
    return off;
}

lms_status lms_gpt_acts_init(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward) {
    return lms_gpt_acts_init_on(a, cfg, B, T, with_backward, LMS_RECOMPUTE_NONE, NULL);
}

lms_status lms_gpt_acts_init_rc(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward,
                                lms_recompute rc) {
    return lms_gpt_acts_init_on(a, cfg, B, T, with_backward, rc, NULL);
}

lms_status lms_gpt_acts_init_on(lms_gpt_acts *a, const lms_gpt_config *cfg, int B, int T, int with_backward,
                                lms_recompute rc, lms_backend *be) {
    lms_status st;
    memset(a, 0, sizeof *a);
    a->be = be;
    LMS_ASSERT(B >= 1 && T >= 1);
    a->cap_B = B;
    a->cap_T = T;
    a->L = cfg->L;
    a->stream = calloc((size_t)cfg->L + 1, sizeof *a->stream);
    a->layer = calloc((size_t)cfg->L, sizeof *a->layer);
    if (!a->stream || !a->layer) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for the activation tables");
        goto fail;
    }
    a->recompute = with_backward ? rc : LMS_RECOMPUTE_NONE;
    a->floats = layout_acts(a, NULL, cfg, B, T, with_backward, rc);
    LMS_TRY(lms_buffer_alloc(be, a->floats * sizeof(float), "activations", &a->buf));
    a->mem = a->buf.data;
    layout_acts(a, a->mem, cfg, B, T, with_backward, rc);
    return LMS_OK;
fail:
    lms_gpt_acts_free(a);
    return st;
}

void lms_gpt_acts_free(lms_gpt_acts *a) {
    if (!a) return;
    lms_buffer_free(a->be, &a->buf);
    free(a->stream);
    free(a->layer);
    memset(a, 0, sizeof *a);
}

size_t lms_gpt_act_floats(const lms_gpt_config *cfg, int B, int T) {
    return lms_gpt_act_floats_rc(cfg, B, T, LMS_RECOMPUTE_NONE);
}

size_t lms_gpt_act_floats_rc(const lms_gpt_config *cfg, int B, int T, lms_recompute rc) {
    lms_gpt_acts a;
    memset(&a, 0, sizeof a);
    a.stream = calloc((size_t)cfg->L + 1, sizeof *a.stream);
    a.layer = calloc((size_t)cfg->L, sizeof *a.layer);
    size_t n = a.stream && a.layer ? layout_acts(&a, NULL, cfg, B, T, 1, rc) : 0;
    free(a.stream);
    free(a.layer);
    return n;
}

lms_status lms_gpt_init(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, int with_grads) {
    return lms_gpt_init_ex(m, cfg, B, T, with_grads ? LMS_GPT_GRADS : 0);
}

lms_status lms_gpt_init_ex(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags) {
    return lms_gpt_init_on(m, cfg, B, T, flags, NULL);
}

lms_status lms_gpt_init_on(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags, lms_backend *be) {
    return lms_gpt_init_part(m, cfg, B, T, flags, be, NULL);
}

lms_status lms_gpt_init_part(lms_gpt *m, const lms_gpt_config *cfg, int B, int T, unsigned flags, lms_backend *be,
                             const unsigned char *hold) {
    lms_status st;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    m->part = hold != NULL;
    LMS_TRY(lms_gpt_layout_part(cfg, hold, &m->tensors, &m->num_tensors, &m->num_params));
    if (!(flags & LMS_GPT_NO_PARAMS)) {
        LMS_TRY(lms_buffer_alloc(be, m->num_params * sizeof(float), "parameters", &m->param_buf));
        m->params = m->param_buf.data;
    }
    if (flags & LMS_GPT_GRADS) {
        LMS_TRY(lms_buffer_alloc(be, m->num_params * sizeof(float), "gradients", &m->grad_buf));
        m->grads = m->grad_buf.data;
    }
    m->p.h = calloc((size_t)cfg->L, sizeof(lms_gpt_block));
    m->g.h = calloc((size_t)cfg->L, sizeof(lms_gpt_block));
    if (!m->p.h || !m->g.h) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory for layer tables");
        goto fail;
    }
    if (m->params) lms_gpt_bind_views(m, m->params, &m->p);
    if (m->grads) lms_gpt_bind_views(m, m->grads, &m->g);
    m->cap_B = B;
    m->cap_T = T;
    return LMS_OK;
fail:
    lms_gpt_free(m);
    return st;
}

void lms_gpt_free(lms_gpt *m) {
    if (!m) return;
    free(m->tensors);
    lms_buffer_free(m->be, &m->param_buf);
    lms_buffer_free(m->be, &m->grad_buf);
    free(m->p.h);
    free(m->g.h);
    memset(m, 0, sizeof *m);
}

/* *slot (held in buf) becomes ext, and the views t point into it */
static lms_status use_buffer(lms_gpt *m, float **slot, lms_buffer *buf, lms_gpt_tensors *t, float *ext,
                             const char *what) {
    if (!*slot || (m->be && !m->be->i->host_memory))
        return lms_errorf(LMS_ERR_INTERNAL, "the model holds no %s in host memory to replace", what);
    lms_buffer_free(m->be, buf);
    *slot = ext;
    lms_gpt_bind_views(m, ext, t);
    return LMS_OK;
}

lms_status lms_gpt_use_grads(lms_gpt *m, float *grads) {
    return use_buffer(m, &m->grads, &m->grad_buf, &m->g, grads, "gradients");
}

lms_status lms_gpt_use_params(lms_gpt *m, float *params) {
    return use_buffer(m, &m->params, &m->param_buf, &m->p, params, "parameters");
}

lms_status lms_gpt_zero_grad(lms_gpt *m, lms_backend *be) {
    if (!m->grads) return LMS_OK;
    return be->i->memset(be, m->grads, 0, m->num_params * sizeof(float));
}

/* ---- the whole model ---- */

lms_status lms_gpt_forward(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                           const int32_t *targets, int B, int T, float *loss) {
    return lms_gpt_forward_train(m, be, a, tokens, targets, B, T, 0.0f, loss);
}

lms_status lms_gpt_forward_train(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                                 const int32_t *targets, int B, int T, float dloss, float *loss) {
    const lms_gpt_config *c = &m->cfg;
    LMS_ASSERT(B >= 1 && B <= a->cap_B && T >= 1 && T <= a->cap_T && T <= c->maxT && a->L == c->L);
    if (loss) *loss = 0.0f;
    LMS_CHECK(check_ops(be, forward_ops, NOPS(forward_ops)));
    a->B = B;
    a->T = T;
    a->has_loss = 0;
    LMS_CHECK(lms_gpt_embed_forward(m, be, tokens, B, T, 0, a->stream[0]));
    for (int l = 0; l < c->L; l++)
        LMS_CHECK(lms_gpt_block_forward(m, be, l, a->stream[l], &a->layer[l], a->stream[l + 1], B, T, NULL));
    LMS_CHECK(lms_gpt_head_forward_train(m, be, a->stream[c->L], &a->head, targets, B, T, dloss, loss));
    a->has_loss = targets != NULL;
    return LMS_OK;
}

/* the unit's gradient range is final */
static lms_status unit_ready(const lms_gpt *m, int unit, lms_grad_ready_fn ready, void *ctx) {
    if (!ready) return LMS_OK;
    size_t off, n;
    lms_gpt_unit_range(&m->cfg, unit, &off, &n);
    return ready(ctx, off, n);
}

lms_status lms_gpt_backward(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const int32_t *tokens,
                            const int32_t *targets, float dloss, lms_grad_ready_fn ready, void *ctx) {
    const lms_gpt_config *c = &m->cfg;
    LMS_ASSERT((m->grads || m->hooks) && a->has_loss && a->grad.dx);
    const int B = a->B, T = a->T;
    lms_gpt_grad_acts *g = &a->grad;
    LMS_CHECK(check_ops(be, backward_ops, NOPS(backward_ops)));
    LMS_CHECK(lms_gpt_head_backward(m, be, a->stream[c->L], &a->head, targets, dloss, g->dx, g, B, T));
    LMS_CHECK(unit_ready(m, c->L + 1, ready, ctx));
    for (int l = c->L - 1; l >= 0; l--) {
        /* FULL recomputes block l's output into stream[l+1]: block l+1's
         * input, whose backward is done; the values are the same */
        LMS_CHECK(lms_gpt_block_recompute(m, be, l, a->stream[l], &a->layer[l], a->stream[l + 1], B, T,
                                          a->recompute));
        LMS_CHECK(lms_gpt_block_backward(m, be, l, a->stream[l], &a->layer[l], g->dx, g, B, T));
        LMS_CHECK(unit_ready(m, l + 1, ready, ctx));
    }
    LMS_CHECK(lms_gpt_embed_backward(m, be, tokens, B, T, g->dx));
    return unit_ready(m, 0, ready, ctx);
}

/* ---- KV-cache decoding ---- */

lms_status lms_kv_cache_init(lms_kv_cache *kv, const lms_gpt_config *cfg) {
    return lms_kv_cache_init_on(kv, cfg, NULL);
}

lms_status lms_kv_cache_init_on(lms_kv_cache *kv, const lms_gpt_config *cfg, lms_backend *be) {
    lms_status st;
    memset(kv, 0, sizeof *kv);
    kv->be = be;
    kv->L = cfg->L;
    kv->maxT = cfg->maxT;
    kv->C = cfg->tp > 1 ? cfg->C / cfg->tp : cfg->C; /* a tp rank caches its heads only */
    size_t n = (size_t)cfg->L * cfg->maxT * kv->C;
    /* k | v | scores, each run 64-byte aligned */
    const size_t kvn = (n + 15) & ~(size_t)15;
    LMS_TRY(lms_buffer_alloc(be, sizeof(float) * (2 * kvn + (size_t)cfg->maxT), "the KV cache", &kv->buf));
    kv->k = kv->buf.data;
    kv->v = kv->k + kvn;
    kv->scores = kv->v + kvn;
    LMS_TRY(lms_gpt_acts_init_on(&kv->acts, cfg, 1, 1, 0, LMS_RECOMPUTE_NONE, be));
    return LMS_OK;
fail:
    lms_kv_cache_free(kv);
    return st;
}

void lms_kv_cache_free(lms_kv_cache *kv) {
    if (!kv) return;
    lms_buffer_free(kv->be, &kv->buf);
    lms_gpt_acts_free(&kv->acts);
    memset(kv, 0, sizeof *kv);
}

lms_status lms_gpt_decode_step(lms_gpt *m, lms_backend *be, lms_kv_cache *kv, int32_t token, float *logits) {
    const lms_gpt_config *c = &m->cfg;
    lms_gpt_acts *a = &kv->acts;
    const int t = kv->len;
    LMS_ASSERT(t < c->maxT);
    LMS_CHECK(check_ops(be, decode_ops, NOPS(decode_ops)));
    LMS_CHECK(lms_gpt_embed_forward(m, be, &token, 1, 1, t, a->stream[0]));
    for (int l = 0; l < c->L; l++)
        LMS_CHECK(lms_gpt_block_forward(m, be, l, a->stream[l], &a->layer[l], a->stream[l + 1], 1, 1, kv));
    LMS_CHECK(lms_gpt_head_forward(m, be, a->stream[c->L], &a->head, NULL, 1, 1, NULL));
    LMS_CHECK(lms_gpt_logits_row(m, be, &a->head, 0, logits)); /* tp: gathered from every rank */
    kv->len = t + 1;
    return LMS_OK;
}

lms_status lms_gpt_tensor(lms_gpt *m, int i, int grad, lms_tensor *out) {
    lms_buffer *buf = grad ? &m->grad_buf : &m->param_buf;
    if (i < 0 || i >= m->num_tensors)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %d: the model has tensors 0..%d", i, m->num_tensors - 1);
    if (!buf->data)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor '%s': the model holds no %s buffer", m->tensors[i].name,
                          grad ? "gradient" : "parameter");
    const lms_tensor_view *v = &m->tensors[i];
    int64_t shape[2] = {v->shape[0], v->ndim > 1 ? v->shape[1] : 1};
    LMS_CHECK(lms_tensor_init(out, v->name, LMS_DT_F32, v->ndim, shape));
    return lms_tensor_bind(out, buf, v->offset * sizeof(float));
}

lms_status lms_gpt_to_host(lms_gpt *m) {
    if (!m->be) return LMS_OK;
    if (!m->be->i->host_memory)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "backend '%s': moving a model to host memory is not supported yet",
                          m->be->i->name);
    /* host-memory backends allocate as lms_buffer_alloc(NULL, ...) does */
    m->be = NULL;
    return LMS_OK;
}
