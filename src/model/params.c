/* The flat parameter layout (docs/model.md), its named views, and the
 * layout-independent GPT-2 initialisation. */
#include "lmscale/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_TENSORS 12

typedef struct {
    lms_tensor_view *v;
    int n;
    size_t off;
} layout_builder;

static void add(layout_builder *b, const char *name, int rows, int cols, int decay, float std,
                float value) {
    if (b->v) {
        lms_tensor_view *t = &b->v[b->n];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->offset = b->off;
        t->ndim = cols > 0 ? 2 : 1;
        t->shape[0] = rows;
        t->shape[1] = cols > 0 ? cols : 1;
        t->numel = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
        t->decay = decay;
        t->init_std = std;
        t->init_value = value;
        t->valid_rows = rows;
    }
    b->off += (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    b->n++;
}

static void build(const lms_gpt_config *c, layout_builder *b) {
    const float std = 0.02f, proj_std = 0.02f / sqrtf(2.0f * (float)c->L);
    char nm[48];
    add(b, "wte", c->Vp, c->C, 1, std, 0);
    if (b->v) b->v[b->n - 1].valid_rows = c->V;
    add(b, "wpe", c->maxT, c->C, 1, std, 0);
    for (int l = 0; l < c->L; l++) {
#define NM(s) (snprintf(nm, sizeof nm, "h.%d.%s", l, s), nm)
        add(b, NM("ln_1.weight"), c->C, 0, 0, 0, 1.0f);
        add(b, NM("ln_1.bias"), c->C, 0, 0, 0, 0.0f);
        add(b, NM("attn.c_attn.weight"), 3 * c->C, c->C, 1, std, 0);
        add(b, NM("attn.c_attn.bias"), 3 * c->C, 0, 0, 0, 0.0f);
        add(b, NM("attn.c_proj.weight"), c->C, c->C, 1, proj_std, 0);
        add(b, NM("attn.c_proj.bias"), c->C, 0, 0, 0, 0.0f);
        add(b, NM("ln_2.weight"), c->C, 0, 0, 0, 1.0f);
        add(b, NM("ln_2.bias"), c->C, 0, 0, 0, 0.0f);
        add(b, NM("mlp.c_fc.weight"), 4 * c->C, c->C, 1, std, 0);
        add(b, NM("mlp.c_fc.bias"), 4 * c->C, 0, 0, 0, 0.0f);
        add(b, NM("mlp.c_proj.weight"), c->C, 4 * c->C, 1, proj_std, 0);
        add(b, NM("mlp.c_proj.bias"), c->C, 0, 0, 0, 0.0f);
#undef NM
    }
    add(b, "ln_f.weight", c->C, 0, 0, 0, 1.0f);
    add(b, "ln_f.bias", c->C, 0, 0, 0, 0.0f);
}

lms_status lms_gpt_layout(const lms_gpt_config *cfg, lms_tensor_view **out, int *count,
                          size_t *num_params) {
    layout_builder b = {0};
    build(cfg, &b); /* count */
    b.v = calloc((size_t)b.n, sizeof *b.v);
    if (!b.v) return lms_errorf(LMS_ERR_OOM, "out of memory building the parameter layout");
    b.n = 0;
    b.off = 0;
    build(cfg, &b);
    *out = b.v;
    *count = b.n;
    *num_params = b.off;
    return LMS_OK;
}

static size_t block_floats(size_t C) { return 12 * C * C + 13 * C; }

int lms_gpt_num_units(const lms_gpt_config *c) { return c->L + 2; }

void lms_gpt_unit_range(const lms_gpt_config *c, int unit, size_t *offset, size_t *count) {
    const size_t C = (size_t)c->C, emb = ((size_t)c->Vp + (size_t)c->maxT) * C;
    LMS_ASSERT(unit >= 0 && unit <= c->L + 1);
    if (unit == 0) {
        *offset = 0;
        *count = emb;
    } else if (unit <= c->L) {
        *offset = emb + (size_t)(unit - 1) * block_floats(C);
        *count = block_floats(C);
    } else {
        *offset = emb + (size_t)c->L * block_floats(C);
        *count = 2 * C;
    }
}

/* unit pointers over base = the unit's first float */
static void bind_unit(const lms_gpt_config *c, int unit, float *base, lms_gpt_tensors *t) {
    const size_t C = (size_t)c->C;
    if (unit == 0) {
        t->wte = base;
        t->wpe = base + (size_t)c->Vp * C;
    } else if (unit <= c->L) {
        lms_gpt_block *h = &t->h[unit - 1];
        float **slots[BLOCK_TENSORS] = {&h->ln1w, &h->ln1b, &h->qkvw, &h->qkvb, &h->attprojw, &h->attprojb,
                                        &h->ln2w, &h->ln2b, &h->fcw, &h->fcb, &h->fcprojw, &h->fcprojb};
        const size_t sizes[BLOCK_TENSORS] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
        size_t off = 0;
        for (int k = 0; k < BLOCK_TENSORS; k++) {
            *slots[k] = base + off;
            off += sizes[k];
        }
    } else {
        t->lnfw = base;
        t->lnfb = base + C;
    }
}

void lms_gpt_bind(const lms_gpt_config *c, float *base, lms_gpt_tensors *t) {
    for (int u = 0; u < lms_gpt_num_units(c); u++) {
        size_t off, n;
        lms_gpt_unit_range(c, u, &off, &n);
        bind_unit(c, u, base + off, t);
    }
}

void lms_gpt_bind_unit(lms_gpt *m, int unit, float *pbase, float *gbase) {
    if (pbase) bind_unit(&m->cfg, unit, pbase, &m->p);
    if (gbase) bind_unit(&m->cfg, unit, gbase, &m->g);
}

const lms_tensor_view *lms_gpt_find(const lms_gpt *m, const char *name) {
    for (int i = 0; i < m->num_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void lms_gpt_init_params_range(const lms_tensor_view *views, int nviews, uint64_t seed, size_t lo, size_t n,
                               float *dst) {
    const size_t hi = lo + n;
    for (int i = 0; i < nviews; i++) {
        const lms_tensor_view *t = &views[i];
        size_t a = t->offset > lo ? t->offset : lo, b = t->offset + t->numel < hi ? t->offset + t->numel : hi;
        if (a >= b) continue;
        float *p = dst + (a - lo);
        uint64_t key = lms_rng_key(seed, t->name);
        size_t valid = (size_t)t->valid_rows * (size_t)t->shape[1];
        long j0 = (long)(a - t->offset), cnt = (long)(b - a);
#pragma omp parallel for schedule(static)
        for (long k = 0; k < cnt; k++) {
            size_t j = (size_t)(j0 + k);
            if (j >= valid)
                p[k] = 0.0f;
            else if (t->init_std > 0)
                p[k] = t->init_std * lms_rng_normal(key, (uint64_t)j);
            else
                p[k] = t->init_value;
        }
    }
}

void lms_gpt_init_params(lms_gpt *m, uint64_t seed) {
    lms_gpt_init_params_range(m->tensors, m->num_tensors, seed, 0, m->num_params, m->params);
}

size_t lms_gpt_flop_params(const lms_gpt_config *c) {
    size_t C = (size_t)c->C;
    size_t per_block = 2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C;
    return (size_t)c->V * C + (size_t)c->L * per_block + 2 * C;
}
