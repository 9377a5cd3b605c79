/* The GPT tensor table: every parameter described once (name, global shape,
 * tensor-parallel split, weight decay, initialisation, Hugging Face name,
 * pointer slot), and what derives from it: the flat layout, parameter
 * units, pointer binding, the FLOP parameter count and tensor-parallel
 * shards (model.h). */
#include "lmscale/model.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP(f) offsetof(lms_gpt_tensors, f)
#define BLK(f) offsetof(lms_gpt_block, f)

/* name, HF name, scope, shape, split, fused, decay, init, HF transpose, flops, slot.
 * Order is the flat-buffer order: the embeddings, one block (repeated L
 * times), the final LayerNorm. */
static const lms_gpt_tensor_spec SPECS[] = {
    {"wte", "wte.weight", LMS_SCOPE_EMBED, {LMS_DIM_VP, LMS_DIM_C}, LMS_SPLIT_VOCAB, 1, 1, LMS_INIT_NORMAL, 0, 1, TOP(wte)},
    {"wpe", "wpe.weight", LMS_SCOPE_EMBED, {LMS_DIM_MAXT, LMS_DIM_C}, LMS_SPLIT_NONE, 1, 1, LMS_INIT_NORMAL, 0, 0, TOP(wpe)},
    {"ln_1.weight", "ln_1.weight", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ONES, 0, 1, BLK(ln1w)},
    {"ln_1.bias", "ln_1.bias", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ZEROS, 0, 1, BLK(ln1b)},
    {"attn.c_attn.weight", "attn.c_attn.weight", LMS_SCOPE_BLOCK, {LMS_DIM_3C, LMS_DIM_C}, LMS_SPLIT_COLUMN, 3, 1,
     LMS_INIT_NORMAL, 1, 1, BLK(qkvw)},
    {"attn.c_attn.bias", "attn.c_attn.bias", LMS_SCOPE_BLOCK, {LMS_DIM_3C, LMS_DIM_1}, LMS_SPLIT_COLUMN, 3, 0,
     LMS_INIT_ZEROS, 0, 1, BLK(qkvb)},
    {"attn.c_proj.weight", "attn.c_proj.weight", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_C}, LMS_SPLIT_ROW, 1, 1,
     LMS_INIT_NORMAL_RESID, 1, 1, BLK(attprojw)},
    {"attn.c_proj.bias", "attn.c_proj.bias", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0,
     LMS_INIT_ZEROS, 0, 1, BLK(attprojb)},
    {"ln_2.weight", "ln_2.weight", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ONES, 0, 1, BLK(ln2w)},
    {"ln_2.bias", "ln_2.bias", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ZEROS, 0, 1, BLK(ln2b)},
    {"mlp.c_fc.weight", "mlp.c_fc.weight", LMS_SCOPE_BLOCK, {LMS_DIM_4C, LMS_DIM_C}, LMS_SPLIT_COLUMN, 1, 1,
     LMS_INIT_NORMAL, 1, 1, BLK(fcw)},
    {"mlp.c_fc.bias", "mlp.c_fc.bias", LMS_SCOPE_BLOCK, {LMS_DIM_4C, LMS_DIM_1}, LMS_SPLIT_COLUMN, 1, 0, LMS_INIT_ZEROS,
     0, 1, BLK(fcb)},
    {"mlp.c_proj.weight", "mlp.c_proj.weight", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_4C}, LMS_SPLIT_ROW, 1, 1,
     LMS_INIT_NORMAL_RESID, 1, 1, BLK(fcprojw)},
    {"mlp.c_proj.bias", "mlp.c_proj.bias", LMS_SCOPE_BLOCK, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0,
     LMS_INIT_ZEROS, 0, 1, BLK(fcprojb)},
    {"ln_f.weight", "ln_f.weight", LMS_SCOPE_FINAL, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ONES, 0, 1,
     TOP(lnfw)},
    {"ln_f.bias", "ln_f.bias", LMS_SCOPE_FINAL, {LMS_DIM_C, LMS_DIM_1}, LMS_SPLIT_NONE, 1, 0, LMS_INIT_ZEROS, 0, 1,
     TOP(lnfb)},
};
#define NSPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

const lms_gpt_tensor_spec *lms_gpt_tensor_specs(int *n) {
    *n = NSPECS;
    return SPECS;
}

int64_t lms_gpt_dim(const lms_gpt_config *c, lms_dim d) {
    switch (d) {
    case LMS_DIM_1: return 1;
    case LMS_DIM_C: return c->C;
    case LMS_DIM_3C: return 3 * (int64_t)c->C;
    case LMS_DIM_4C: return 4 * (int64_t)c->C;
    case LMS_DIM_VP: return c->Vp;
    case LMS_DIM_MAXT: return c->maxT;
    }
    return 0;
}

/* Dimension k of a tensor as this config holds it: split tensors have 1/tp
 * of their split dimension in a tensor-parallel part (cfg.tp > 1). */
static int64_t spec_dim(const lms_gpt_config *c, const lms_gpt_tensor_spec *s, int k) {
    const int64_t n = lms_gpt_dim(c, s->dims[k]);
    const int split_dim = s->split == LMS_SPLIT_ROW ? 1 : 0;
    if (c->tp > 1 && s->split != LMS_SPLIT_NONE && k == split_dim) return n / c->tp;
    return n;
}

static size_t spec_numel(const lms_gpt_config *c, const lms_gpt_tensor_spec *s) {
    return (size_t)spec_dim(c, s, 0) * (size_t)spec_dim(c, s, 1);
}

/* floats of one unit of the given scope */
static size_t scope_floats(const lms_gpt_config *c, lms_scope scope) {
    size_t n = 0;
    for (int i = 0; i < NSPECS; i++)
        if (SPECS[i].scope == scope) n += spec_numel(c, &SPECS[i]);
    return n;
}

static lms_scope unit_scope(const lms_gpt_config *c, int unit) {
    return unit == 0 ? LMS_SCOPE_EMBED : unit <= c->L ? LMS_SCOPE_BLOCK : LMS_SCOPE_FINAL;
}

/* ---- the flat layout ---- */

static void place(const lms_gpt_config *c, const lms_gpt_tensor_spec *s, int layer, int unit, size_t off,
                  lms_tensor_view *t) {
    memset(t, 0, sizeof *t);
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "h.%d.%s", layer, s->name);
    else
        snprintf(t->name, sizeof t->name, "%s", s->name);
    t->spec = s;
    t->layer = layer;
    t->unit = unit;
    t->offset = off;
    t->ndim = s->dims[1] == LMS_DIM_1 ? 1 : 2;
    t->shape[0] = (int)spec_dim(c, s, 0);
    t->shape[1] = (int)spec_dim(c, s, 1);
    t->numel = spec_numel(c, s);
    t->decay = s->decay;
    /* a part's valid rows depend on its rank: lms_gpt_init_params_tp */
    t->valid_rows = s->dims[0] == LMS_DIM_VP && c->tp <= 1 ? c->V : t->shape[0];
    switch (s->init) {
    case LMS_INIT_NORMAL: t->init_std = 0.02f; break;
    case LMS_INIT_NORMAL_RESID: t->init_std = 0.02f / sqrtf(2.0f * (float)c->L); break;
    case LMS_INIT_ONES: t->init_value = 1.0f; break;
    case LMS_INIT_ZEROS: t->init_value = 0.0f; break;
    }
}

/* Places every tensor the part holds (hold NULL: all; views NULL: counts
 * only), packed in flat-buffer order; returns the count. */
static int build(const lms_gpt_config *c, const unsigned char *hold, lms_tensor_view *views, size_t *total) {
    int n = 0;
    size_t off = 0;
    for (int u = 0; u < lms_gpt_num_units(c); u++) {
        const lms_scope scope = unit_scope(c, u);
        const int h = hold ? hold[u] : LMS_GPT_HOLD_ALL;
        for (int i = 0; i < NSPECS; i++) {
            if (SPECS[i].scope != scope || h == LMS_GPT_HOLD_NONE) continue;
            if (h == LMS_GPT_HOLD_WTE && SPECS[i].slot != TOP(wte)) continue;
            if (views) place(c, &SPECS[i], scope == LMS_SCOPE_BLOCK ? u - 1 : -1, u, off, &views[n]);
            off += spec_numel(c, &SPECS[i]);
            n++;
        }
    }
    *total = off;
    return n;
}

lms_status lms_gpt_layout_part(const lms_gpt_config *cfg, const unsigned char *hold, lms_tensor_view **out,
                               int *count, size_t *num_params) {
    const int n = build(cfg, hold, NULL, num_params);
    lms_tensor_view *v = calloc((size_t)n + 1, sizeof *v);
    if (!v) return lms_errorf(LMS_ERR_OOM, "out of memory building the parameter layout");
    build(cfg, hold, v, num_params);
    *out = v;
    *count = n;
    return LMS_OK;
}

lms_status lms_gpt_layout(const lms_gpt_config *cfg, lms_tensor_view **out, int *count, size_t *num_params) {
    return lms_gpt_layout_part(cfg, NULL, out, count, num_params);
}

size_t lms_gpt_num_params(const lms_gpt_config *cfg) {
    size_t n;
    build(cfg, NULL, NULL, &n);
    return n;
}

const lms_tensor_view *lms_gpt_find_view(const lms_tensor_view *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) return &v[i];
    return NULL;
}

void lms_gpt_hf_name(const lms_tensor_view *v, char *buf, size_t n) {
    if (v->layer >= 0)
        snprintf(buf, n, "h.%d.%s", v->layer, v->spec->hf_name);
    else
        snprintf(buf, n, "%s", v->spec->hf_name);
}

/* ---- parameter units and binding ---- */

int lms_gpt_num_units(const lms_gpt_config *c) { return c->L + 2; }

void lms_gpt_unit_range(const lms_gpt_config *c, int unit, size_t *offset, size_t *count) {
    LMS_ASSERT(unit >= 0 && unit <= c->L + 1);
    const size_t emb = scope_floats(c, LMS_SCOPE_EMBED), blk = scope_floats(c, LMS_SCOPE_BLOCK);
    const lms_scope scope = unit_scope(c, unit);
    *offset = scope == LMS_SCOPE_EMBED ? 0 : emb + (size_t)(unit - 1) * blk;
    *count = scope_floats(c, scope);
}

/* the unit's pointers over base = the unit's first float */
static void bind_unit(const lms_gpt_config *c, int unit, float *base, lms_gpt_tensors *t) {
    const lms_scope scope = unit_scope(c, unit);
    char *holder = scope == LMS_SCOPE_BLOCK ? (char *)&t->h[unit - 1] : (char *)t;
    size_t off = 0;
    for (int i = 0; i < NSPECS; i++) {
        if (SPECS[i].scope != scope) continue;
        *(float **)(holder + SPECS[i].slot) = base + off;
        off += spec_numel(c, &SPECS[i]);
    }
}

void lms_gpt_bind_views(const lms_gpt *m, float *base, lms_gpt_tensors *t) {
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        char *holder = v->layer >= 0 ? (char *)&t->h[v->layer] : (char *)t;
        *(float **)(holder + v->spec->slot) = base + v->offset;
    }
}

int lms_gpt_unit_span(const lms_gpt *m, int unit, size_t *offset, size_t *count) {
    *offset = *count = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        if (v->unit != unit) continue;
        if (!*count) *offset = v->offset;
        *count += v->numel; /* a unit's tensors are contiguous */
    }
    return *count > 0;
}

void lms_gpt_bind_unit(lms_gpt *m, int unit, float *pbase, float *gbase) {
    if (pbase) bind_unit(&m->cfg, unit, pbase, &m->p);
    if (gbase) bind_unit(&m->cfg, unit, gbase, &m->g);
}

/* ---- FLOPs ---- */

size_t lms_gpt_flop_params(const lms_gpt_config *c) {
    size_t n = 0;
    for (int i = 0; i < NSPECS; i++) {
        const lms_gpt_tensor_spec *s = &SPECS[i];
        if (!s->flops) continue;
        /* padded vocabulary rows do no useful work */
        size_t rows = s->dims[0] == LMS_DIM_VP ? (size_t)c->V : (size_t)lms_gpt_dim(c, s->dims[0]);
        n += rows * (size_t)lms_gpt_dim(c, s->dims[1]) * (s->scope == LMS_SCOPE_BLOCK ? (size_t)c->L : 1);
    }
    return n;
}

/* ---- tensor-parallel shards ---- */

int lms_pad_vocab_tp(int V, int tp) {
    const int m = 64 * (tp > 0 ? tp : 1);
    return (V + m - 1) / m * m;
}

lms_status lms_gpt_tp_shard(const lms_gpt_config *c, const lms_tensor_view *v, int tp, int rank, lms_tp_shard *out) {
    const lms_gpt_tensor_spec *s = v->spec;
    memset(out, 0, sizeof *out);
    if (tp < 1 || rank < 0 || rank >= tp)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor-parallel rank %d of %d: need 0 <= rank < tp", rank, tp);
    out->ndim = v->ndim;
    out->shape[0] = v->shape[0];
    out->shape[1] = v->shape[1];
    if (s->split == LMS_SPLIT_NONE || tp == 1) {
        out->nchunks = 1;
        out->chunk[0].size[0] = v->shape[0];
        out->chunk[0].size[1] = v->shape[1];
        return LMS_OK;
    }
    if (c->NH % tp != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor parallelism %d does not divide the %d attention heads: "
                          "choose a tp degree that divides --num-heads", tp, c->NH);
    const int dim = s->split == LMS_SPLIT_ROW ? 1 : 0;
    const int parts = s->fused > 1 ? s->fused : 1;
    const int64_t n = v->shape[dim] / parts; /* one stacked matrix's extent along dim */
    if (v->shape[dim] % ((int64_t)parts * tp) != 0) {
        if (s->split == LMS_SPLIT_VOCAB)
            return lms_errorf(LMS_ERR_INVALID_ARG, "the padded vocabulary of %lld rows does not divide by tensor "
                              "parallelism %d: pad the vocabulary to %d (lms_pad_vocab_tp)",
                              (long long)v->shape[0], tp, lms_pad_vocab_tp(c->V, tp));
        return lms_errorf(LMS_ERR_INVALID_ARG, "tensor %s: dimension %d (%lld) does not divide by tensor "
                          "parallelism %d", v->name, dim, (long long)v->shape[dim], tp);
    }
    const int64_t part = n / tp;
    out->shape[dim] = part * parts;
    out->nchunks = parts;
    for (int k = 0; k < parts; k++) {
        lms_tp_chunk *ch = &out->chunk[k];
        ch->size[0] = v->shape[0];
        ch->size[1] = v->shape[1];
        ch->size[dim] = part;
        ch->global[dim] = (int64_t)k * n + (int64_t)rank * part;
        ch->local[dim] = (int64_t)k * part;
    }
    return LMS_OK;
}
