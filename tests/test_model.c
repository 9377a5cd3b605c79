/* The whole model against PyTorch: tests/fixtures/gpt2_tiny.bin is written
 * by tests/ref/gpt2_reference.py (a from-scratch GPT-2 in PyTorch, computed
 * in float64 from float32 weights). For both backends: logits, loss, every
 * parameter's gradient (per tensor), then 5 AdamW steps with global-norm
 * clipping — their losses, gradient norms and final parameters. fp32
 * tolerance: relative 1e-4. Also checks layout-independent initialisation
 * and bitwise determinism of the training step. */
#include "check.h"
#include "lmscale/optim.h"

#include <string.h>

typedef struct {
    int V, Vp, maxT, L, NH, C, B, T, nsteps;
    float lr, beta1, beta2, eps, wd, clip;
    int nparams;
    float *params, *logits, loss, *grads, *losses, *norms, *final;
    int32_t *tokens, *targets;
} fixture;

static int read_fixture(const char *path, fixture *f) {
    unsigned char *buf;
    size_t size;
    if (lms_read_file(path, &buf, &size) != LMS_OK || size < 8 || memcmp(buf, "LMSFIX01", 8) != 0) {
        fprintf(stderr, "cannot read fixture %s: %s\n", path, lms_last_error());
        return 0;
    }
    size_t off = 8;
#define RD(dst, n)                                 \
    do {                                           \
        memcpy((dst), buf + off, (n));             \
        off += (n);                                \
    } while (0)
    int32_t hdr[9];
    float hp[6];
    RD(hdr, sizeof hdr);
    RD(hp, sizeof hp);
    f->V = hdr[0], f->Vp = hdr[1], f->maxT = hdr[2], f->L = hdr[3], f->NH = hdr[4], f->C = hdr[5];
    f->B = hdr[6], f->T = hdr[7], f->nsteps = hdr[8];
    f->lr = hp[0], f->beta1 = hp[1], f->beta2 = hp[2], f->eps = hp[3], f->wd = hp[4], f->clip = hp[5];
    RD(&f->nparams, 4);
    size_t P = (size_t)f->nparams * 4, BT = (size_t)f->B * f->T;
    f->params = malloc(P), f->grads = malloc(P), f->final = malloc(P);
    f->tokens = malloc(BT * 4), f->targets = malloc(BT * 4);
    f->logits = malloc(BT * f->Vp * 4);
    f->losses = malloc(f->nsteps * 4), f->norms = malloc(f->nsteps * 4);
    RD(f->params, P);
    RD(f->tokens, BT * 4);
    RD(f->targets, BT * 4);
    RD(f->logits, BT * f->Vp * 4);
    RD(&f->loss, 4);
    RD(f->grads, P);
    RD(f->losses, f->nsteps * 4);
    RD(f->norms, f->nsteps * 4);
    RD(f->final, P);
#undef RD
    free(buf);
    if (off != size) {
        fprintf(stderr, "fixture %s: %zu bytes, expected %zu\n", path, size, off);
        return 0;
    }
    return 1;
}

static void check_backend(const fixture *f, const char *name) {
    lms_backend be;
    CHECK(lms_backend_init(&be, name) == LMS_OK, "backend %s", name);
    lms_gpt_config cfg = {f->L, f->NH, f->C, f->maxT, f->V, 0, 0};
    CHECK(lms_gpt_config_validate(&cfg) == LMS_OK && cfg.Vp == f->Vp, "config");
    lms_gpt m;
    CHECK(lms_gpt_init(&m, &cfg, f->B, f->T, 1) == LMS_OK, "init");
    CHECK(m.num_params == (size_t)f->nparams, "parameter count %zu vs PyTorch %d", m.num_params, f->nparams);
    memcpy(m.params, f->params, m.num_params * 4);
    lms_gpt_acts a;
    CHECK(lms_gpt_acts_init(&a, &cfg, f->B, f->T, 1) == LMS_OK, "activations");

    float loss = 0;
    CHECK(lms_gpt_forward(&m, &be, &a, f->tokens, f->targets, f->B, f->T, &loss) == LMS_OK, "forward");
    size_t nl = (size_t)f->B * f->T * f->Vp;
    double e = rel_err(a.head.logits, f->logits, nl, 1e-6);
    CHECK(e < 1e-4, "[%s] logits rel err %g", name, e);
    CHECK(fabs(loss - f->loss) / f->loss < 1e-4, "[%s] loss %.7f vs PyTorch %.7f", name, loss, f->loss);
    lms_gpt_zero_grad(&m, &be);
    CHECK(lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, 1.0f / (f->B * f->T), NULL, NULL) == LMS_OK, "backward");
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m.num_tensors; i++) {
        const lms_tensor_view *t = &m.tensors[i];
        double ei = rel_err(m.grads + t->offset, f->grads + t->offset, t->numel, 1e-6);
        if (ei > worst) {
            worst = ei;
            worst_name = t->name;
        }
    }
    CHECK(worst < 1e-4, "[%s] gradient of %s rel err %g", name, worst_name, worst);
    double gmax = 0, kb = 0;
    for (size_t i = 0; i < m.num_params; i++) gmax = fmax(gmax, fabs(m.grads[i]));
    for (int l = 0; l < f->L; l++) {
        float *b = m.g.h[l].qkvb + f->C;
        for (int c = 0; c < f->C; c++) kb = fmax(kb, fabs(b[c]));
    }
    CHECK(kb < 1e-5 * gmax, "[%s] key-bias gradient %g is at rounding level (max gradient %g)", name, kb, gmax);
    printf("[%s] loss %.7f (PyTorch %.7f), logits rel err %.2e, worst gradient rel err %.2e (%s)\n", name,
           loss, f->loss, e, worst, worst_name);

    /* 5 AdamW steps with clipping, from the same start */
    memcpy(m.params, f->params, m.num_params * 4);
    lms_adamw opt;
    CHECK(lms_adamw_init(&opt, m.num_params, f->beta1, f->beta2, f->eps, f->wd) == LMS_OK, "adamw init");
    for (int s = 0; s < f->nsteps; s++) {
        lms_gpt_zero_grad(&m, &be);
        float l = 0;
        CHECK(lms_gpt_forward(&m, &be, &a, f->tokens, f->targets, f->B, f->T, &l) == LMS_OK, "forward");
        CHECK(lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, 1.0f / (f->B * f->T), NULL, NULL) == LMS_OK, "backward");
        double norm = 0;
        be.i->sumsq(&be, m.grads, m.num_params, &norm);
        norm = sqrt(norm);
        CHECK(fabs(l - f->losses[s]) / f->losses[s] < 1e-4, "[%s] step %d loss %.7f vs %.7f", name, s + 1, l,
              f->losses[s]);
        CHECK(fabs(norm - f->norms[s]) / f->norms[s] < 1e-4, "[%s] step %d grad norm %.7f vs %.7f", name,
              s + 1, norm, f->norms[s]);
        lms_adamw_step(&opt, &be, m.params, m.grads, m.tensors, m.num_tensors, f->lr,
                       lms_clip_scale(norm, f->clip));
        if (s == f->nsteps - 1) printf("[%s] step %d loss %.7f (PyTorch %.7f)\n", name, s + 1, l, f->losses[s]);
    }
    /* The key bias (rows [C,2C) of c_attn.bias) has an exactly zero true
     * gradient: adding q·b_k to every score of a softmax row changes
     * nothing. PyTorch in float64 gets ~1e-18, float32 gets rounding noise
     * ~1e-9, and Adam (eps 1e-8) turns any such noise into updates of order
     * 0.1·lr. So those elements are compared by their gradient (at noise
     * level) and excluded from the final-parameter comparison. */
    float *ours = malloc(m.num_params * 4), *ref = malloc(m.num_params * 4);
    memcpy(ours, m.params, m.num_params * 4);
    memcpy(ref, f->final, m.num_params * 4);
    for (int l = 0; l < f->L; l++) {
        char nm[64];
        snprintf(nm, sizeof nm, "h.%d.attn.c_attn.bias", l);
        const lms_tensor_view *t = lms_gpt_find(&m, nm);
        for (int c = f->C; c < 2 * f->C; c++) {
            CHECK(fabsf(f->grads[t->offset + c]) < 1e-12f, "PyTorch's k-bias gradient is zero");
            ours[t->offset + c] = ref[t->offset + c] = 0;
        }
    }
    double ep = rel_err(ours, ref, m.num_params, 1e-6);
    CHECK(ep < 1e-4, "[%s] parameters after %d AdamW steps rel err %g", name, f->nsteps, ep);
    printf("[%s] parameters after %d AdamW steps: rel err %.2e (key biases excluded)\n", name, f->nsteps, ep);
    free(ours);
    free(ref);
    lms_adamw_free(&opt);
    lms_gpt_acts_free(&a);
    lms_gpt_free(&m);
}

/* Same seed, same values; values depend on (name, index) only. */
/* The model's memory comes from its backend's buffers, and each table entry
 * is an lms_tensor over them (name, shape, offset) */
static void check_backend_buffers(void) {
    lms_gpt_config c = {2, 2, 64, 32, 257, 0, 0};
    lms_gpt_config_validate(&c);
    for (int k = 0; lms_backend_registered(k); k++) {
        lms_backend be = {lms_backend_registered(k), NULL};
        lms_gpt m;
        lms_gpt_acts a;
        CHECK(lms_gpt_init_on(&m, &c, 1, 8, LMS_GPT_GRADS, &be) == LMS_OK, "%s: init_on", be.i->name);
        CHECK(lms_gpt_acts_init_on(&a, &c, 1, 8, 1, LMS_RECOMPUTE_NONE, &be) == LMS_OK, "%s: acts_init_on", be.i->name);
        CHECK(m.be == &be && m.param_buf.data == (void *)m.params && m.param_buf.size == m.num_params * 4 &&
                  m.grad_buf.data == (void *)m.grads && a.buf.data == (void *)a.mem && a.buf.size == a.floats * 4,
              "%s: parameters, gradients and activations are the backend's buffers", be.i->name);
        int bad = 0;
        for (int i = 0; i < m.num_tensors; i++) {
            lms_tensor t, g;
            const lms_tensor_view *v = &m.tensors[i];
            if (lms_gpt_tensor(&m, i, 0, &t) != LMS_OK || lms_gpt_tensor(&m, i, 1, &g) != LMS_OK || strcmp(t.name, v->name) ||
                lms_tensor_f32(&t) != m.params + v->offset || lms_tensor_f32(&g) != m.grads + v->offset ||
                lms_tensor_numel(&t) != v->numel || t.ndim != v->ndim || t.shape[0] != v->shape[0] || lms_tensor_is_shard(&t))
                bad++;
        }
        CHECK(bad == 0, "%s: every table entry as an lms_tensor over the buffers (%d wrong)", be.i->name, bad);
        lms_tensor t;
        CHECK(lms_gpt_tensor(&m, m.num_tensors, 0, &t) == LMS_ERR_INVALID_ARG, "tensor index out of range refused");
        lms_gpt_acts_free(&a);
        lms_gpt_free(&m);
        CHECK(lms_gpt_init_on(&m, &c, 1, 8, 0, &be) == LMS_OK && lms_gpt_tensor(&m, 0, 1, &t) == LMS_ERR_INVALID_ARG,
              "%s: a gradient tensor of a model without gradients is refused", be.i->name);
        lms_gpt_free(&m);
    }
}

static void check_init(void) {
    lms_gpt_config a = {2, 2, 64, 32, 257, 0, 0}, b = {3, 2, 64, 32, 257, 0, 0};
    lms_gpt_config_validate(&a);
    lms_gpt_config_validate(&b);
    lms_gpt ma, mb;
    lms_gpt_init(&ma, &a, 1, 8, 0);
    lms_gpt_init(&mb, &b, 1, 8, 0);
    lms_gpt_init_params(&ma, 7);
    lms_gpt_init_params(&mb, 7);
    const lms_tensor_view *ta = lms_gpt_find(&ma, "h.1.attn.c_attn.weight"),
                          *tb = lms_gpt_find(&mb, "h.1.attn.c_attn.weight");
    CHECK(ta && tb && memcmp(ma.params + ta->offset, mb.params + tb->offset, ta->numel * 4) == 0,
          "a tensor's init depends only on its name, not on the model around it");
    /* statistics: std 0.02 for weights, 0.02/sqrt(2L) for residual projections */
    const lms_tensor_view *w = lms_gpt_find(&ma, "wte"), *pr = lms_gpt_find(&ma, "h.0.mlp.c_proj.weight");
    double s = 0, s2 = 0;
    size_t nvalid = (size_t)a.V * a.C;
    for (size_t i = 0; i < nvalid; i++) {
        s += ma.params[w->offset + i];
        s2 += (double)ma.params[w->offset + i] * ma.params[w->offset + i];
    }
    double sd = sqrt(s2 / nvalid - (s / nvalid) * (s / nvalid));
    CHECK(fabs(sd - 0.02) < 0.001 && fabs(s / nvalid) < 0.001, "wte std %g mean %g", sd, s / nvalid);
    int padded_zero = 1;
    for (size_t i = nvalid; i < w->numel; i++) padded_zero &= ma.params[w->offset + i] == 0.0f;
    CHECK(padded_zero, "padded wte rows are zero");
    s2 = 0;
    for (size_t i = 0; i < pr->numel; i++) s2 += (double)ma.params[pr->offset + i] * ma.params[pr->offset + i];
    CHECK(fabs(sqrt(s2 / pr->numel) - 0.01) < 0.001, "c_proj std %g (want 0.02/sqrt(4))", sqrt(s2 / pr->numel));
    CHECK(ma.params[lms_gpt_find(&ma, "ln_f.weight")->offset] == 1.0f, "LayerNorm weight init 1");
    /* ZeRO-3 initialises only its shard: any range equals that slice of the whole */
    const size_t ranges[4][2] = {{0, 1}, {100, 20000}, {ta->offset - 3, ta->numel + 7}, {ma.num_params - 130, 130}};
    float *part = malloc(sizeof(float) * ma.num_params);
    for (int r = 0; r < 4; r++) {
        memset(part, 0xff, sizeof(float) * ma.num_params);
        lms_gpt_init_params_range(ma.tensors, ma.num_tensors, 7, ranges[r][0], ranges[r][1], part);
        CHECK(memcmp(part, ma.params + ranges[r][0], ranges[r][1] * 4) == 0, "init of range [%zu, +%zu) = slice",
              ranges[r][0], ranges[r][1]);
    }
    free(part);
    /* units tile the flat buffer in order, and bind the same pointers as lms_gpt_bind_views (init) */
    lms_gpt mc;
    lms_gpt_init_ex(&mc, &a, 1, 8, LMS_GPT_NO_PARAMS);
    size_t next = 0;
    for (int u = 0; u < lms_gpt_num_units(&a); u++) {
        size_t off, n;
        lms_gpt_unit_range(&a, u, &off, &n);
        CHECK(off == next && n > 0, "unit %d starts at %zu (want %zu)", u, off, next);
        next = off + n;
        lms_gpt_bind_unit(&mc, u, ma.params + off, NULL);
    }
    CHECK(next == ma.num_params, "units cover the %zu parameters (%zu)", ma.num_params, next);
    CHECK(mc.p.wpe == ma.p.wpe && mc.p.h[1].fcprojb == ma.p.h[1].fcprojb && mc.p.lnfb == ma.p.lnfb &&
          mc.p.h[0].qkvw == ma.p.h[0].qkvw, "lms_gpt_bind_unit points where lms_gpt_bind_views does");
    lms_gpt_free(&mc);
    lms_gpt_init_params(&mb, 8);
    CHECK(memcmp(ma.params + ta->offset, mb.params + tb->offset, ta->numel * 4) != 0, "seed changes init");
    CHECK(lms_gpt_flop_params(&a) + (size_t)a.maxT * a.C + (size_t)(a.Vp - a.V) * a.C == ma.num_params,
          "flop params = all but wpe and padding");
    lms_gpt_free(&ma);
    lms_gpt_free(&mb);
}

/* The tensor table's layout is GPT-2's (docs/model.md), written out here
 * independently: names, shapes, order, decay, and units. */
static void check_table_layout(void) {
    lms_gpt_config c = {2, 4, 64, 32, 257, 0, 0};
    lms_gpt_config_validate(&c);
    lms_tensor_view *v;
    int n;
    size_t total;
    CHECK(lms_gpt_layout(&c, &v, &n, &total) == LMS_OK, "layout");
    const struct {
        const char *name;
        int rows, cols, decay;
    } blk[12] = {{"ln_1.weight", 64, 1, 0},        {"ln_1.bias", 64, 1, 0},        {"attn.c_attn.weight", 192, 64, 1},
                 {"attn.c_attn.bias", 192, 1, 0},  {"attn.c_proj.weight", 64, 64, 1}, {"attn.c_proj.bias", 64, 1, 0},
                 {"ln_2.weight", 64, 1, 0},        {"ln_2.bias", 64, 1, 0},        {"mlp.c_fc.weight", 256, 64, 1},
                 {"mlp.c_fc.bias", 256, 1, 0},     {"mlp.c_proj.weight", 64, 256, 1}, {"mlp.c_proj.bias", 64, 1, 0}};
    char want[64];
    CHECK(n == 2 + 2 * 12 + 2, "%d tensors", n);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        int rows, cols, decay, unit;
        if (i < 2) {
            snprintf(want, sizeof want, "%s", i ? "wpe" : "wte");
            rows = i ? 32 : 320, cols = 64, decay = 1, unit = 0;
        } else if (i < 26) {
            snprintf(want, sizeof want, "h.%d.%s", (i - 2) / 12, blk[(i - 2) % 12].name);
            rows = blk[(i - 2) % 12].rows, cols = blk[(i - 2) % 12].cols, decay = blk[(i - 2) % 12].decay;
            unit = 1 + (i - 2) / 12;
        } else {
            snprintf(want, sizeof want, "%s", i == 26 ? "ln_f.weight" : "ln_f.bias");
            rows = 64, cols = 1, decay = 0, unit = 3;
        }
        CHECK(!strcmp(v[i].name, want) && v[i].shape[0] == rows && v[i].shape[1] == cols && v[i].decay == decay &&
                  v[i].offset == off && v[i].unit == unit && v[i].ndim == (cols > 1 ? 2 : 1),
              "tensor %d is %s (%d, %d) at %zu unit %d, want %s (%d, %d) at %zu unit %d", i, v[i].name, v[i].shape[0],
              v[i].shape[1], v[i].offset, v[i].unit, want, rows, cols, off, unit);
        size_t uoff, un;
        lms_gpt_unit_range(&c, v[i].unit, &uoff, &un);
        CHECK(v[i].offset >= uoff && v[i].offset + v[i].numel <= uoff + un, "%s inside its unit", v[i].name);
        off += (size_t)rows * cols;
    }
    CHECK(total == off, "%zu floats", total);
    char hf[64];
    lms_gpt_hf_name(&v[0], hf, sizeof hf);
    CHECK(!strcmp(hf, "wte.weight"), "HF name of wte: %s", hf);
    lms_gpt_hf_name(&v[2 + 12 + 8], hf, sizeof hf);
    CHECK(!strcmp(hf, "h.1.mlp.c_fc.weight") && v[2 + 12 + 8].spec->hf_transpose, "HF name %s (Conv1D)", hf);
    free(v);
}

/* Which global rows/columns of a tensor tp rank r must hold, stated from
 * Megatron-LM's layers: ColumnParallelLinear splits output features (QKV
 * per head within each of q, k, v), RowParallelLinear input features (its
 * bias replicated), VocabParallelEmbedding the padded vocabulary. */
static int expect_held(const lms_gpt_config *c, const char *name, int64_t row, int64_t col, int tp, int r) {
    const int hs = c->C / c->NH, h0 = r * c->NH / tp, h1 = (r + 1) * c->NH / tp;
    const char *s = strncmp(name, "h.", 2) ? name : strchr(name + 2, '.') + 1;
    if (!strcmp(s, "attn.c_attn.weight") || !strcmp(s, "attn.c_attn.bias")) {
        int64_t head = (row % c->C) / hs;
        return head >= h0 && head < h1;
    }
    if (!strcmp(s, "attn.c_proj.weight")) return col / hs >= h0 && col / hs < h1;
    if (!strcmp(s, "mlp.c_fc.weight") || !strcmp(s, "mlp.c_fc.bias"))
        return row >= (int64_t)r * 4 * c->C / tp && row < (int64_t)(r + 1) * 4 * c->C / tp;
    if (!strcmp(s, "mlp.c_proj.weight"))
        return col >= (int64_t)r * 4 * c->C / tp && col < (int64_t)(r + 1) * 4 * c->C / tp;
    if (!strcmp(s, "wte")) return row >= (int64_t)r * c->Vp / tp && row < (int64_t)(r + 1) * c->Vp / tp;
    return 1; /* replicated */
}

/* Tensor-parallel shards at tp 1, 2, 4: each rank's chunks hold exactly the
 * elements Megatron's split gives it, tile its local tensor, and its
 * initialisation equals that part of the one-process initialisation. */
static void check_tp_shards(void) {
    for (int tp = 1; tp <= 4; tp *= 2) {
        lms_gpt_config c = {2, 4, 64, 32, 257, 0, 0};
        lms_gpt_config_validate(&c);
        CHECK(lms_gpt_config_tp(&c, tp) == LMS_OK, "config for tp %d", tp);
        CHECK(c.Vp % (64 * tp) == 0 && c.Vp >= c.V && c.Vp - c.V < 64 * tp, "tp %d: Vp %d", tp, c.Vp);
        lms_gpt m;
        CHECK(lms_gpt_init(&m, &c, 1, 4, 0) == LMS_OK, "model");
        lms_gpt_init_params(&m, 3);
        int bad_hold = 0, bad_tile = 0, bad_init = 0, bad_shape = 0;
        for (int i = 0; i < m.num_tensors; i++) {
            const lms_tensor_view *v = &m.tensors[i];
            const int64_t R = v->shape[0], K = v->shape[1];
            int *held = calloc((size_t)(R * K), sizeof *held);
            for (int r = 0; r < tp; r++) {
                lms_tp_shard s;
                CHECK(lms_gpt_tp_shard(&c, v, tp, r, &s) == LMS_OK, "%s tp %d rank %d: %s", v->name, tp, r,
                      lms_last_error());
                const int64_t lr = s.shape[0], lk = s.shape[1];
                int *lhit = calloc((size_t)(lr * lk), sizeof *lhit);
                float *loc = malloc(sizeof(float) * (size_t)(lr * lk));
                lms_gpt_init_tp_shard(v, &s, 3, loc);
                int64_t count = 0;
                for (int k = 0; k < s.nchunks; k++) {
                    const lms_tp_chunk *ch = &s.chunk[k];
                    for (int64_t a = 0; a < ch->size[0]; a++)
                        for (int64_t b = 0; b < ch->size[1]; b++) {
                            const int64_t g0 = ch->global[0] + a, g1 = ch->global[1] + b;
                            const int64_t l0 = ch->local[0] + a, l1 = ch->local[1] + b;
                            if (g0 >= R || g1 >= K || l0 >= lr || l1 >= lk) {
                                bad_tile++;
                                continue;
                            }
                            held[g0 * K + g1]++;
                            lhit[l0 * lk + l1]++;
                            bad_hold += !expect_held(&c, v->name, g0, g1, tp, r);
                            bad_init += loc[l0 * lk + l1] != m.params[v->offset + g0 * K + g1];
                            count++;
                        }
                }
                for (int64_t j = 0; j < lr * lk; j++) bad_tile += lhit[j] != 1;
                /* it holds every element it should: as many as expect_held counts */
                int64_t want = 0;
                for (int64_t a = 0; a < R; a++)
                    for (int64_t b = 0; b < K; b++) want += expect_held(&c, v->name, a, b, tp, r);
                bad_shape += count != want || lr * lk != want;
                free(lhit);
                free(loc);
            }
            int replicated = 1;
            for (int64_t a = 0; a < R; a++)
                for (int64_t b = 0; b < K; b++) replicated &= expect_held(&c, v->name, a, b, tp, (tp - 1) / 2);
            for (int64_t j = 0; j < R * K; j++) bad_tile += held[j] != (replicated ? tp : 1);
            free(held);
        }
        CHECK(!bad_hold, "tp %d: %d elements held by the wrong rank", tp, bad_hold);
        CHECK(!bad_tile, "tp %d: %d elements not tiled exactly once", tp, bad_tile);
        CHECK(!bad_shape, "tp %d: %d shards with the wrong size", tp, bad_shape);
        CHECK(!bad_init, "tp %d: %d shard elements initialised differently from the whole", tp, bad_init);
        if (tp == 2) {
            lms_tp_shard s;
            lms_gpt_tp_shard(&c, lms_gpt_find(&m, "h.0.attn.c_attn.weight"), 2, 1, &s);
            CHECK(s.shape[0] == 96 && s.shape[1] == 64 && s.nchunks == 3 && s.chunk[1].global[0] == 64 + 32 &&
                      s.chunk[1].local[0] == 32,
                  "QKV rank 1 of 2: (%lld, %lld) in %d chunks, k at row %lld", (long long)s.shape[0],
                  (long long)s.shape[1], s.nchunks, (long long)s.chunk[1].global[0]);
        }
        lms_gpt_free(&m);
    }
    /* what does not divide is a clear error */
    lms_gpt_config c = {1, 6, 48, 16, 257, 0, 0};
    lms_gpt_config_validate(&c);
    lms_gpt m;
    lms_gpt_init(&m, &c, 1, 4, 0);
    lms_tp_shard s;
    CHECK(lms_gpt_tp_shard(&c, lms_gpt_find(&m, "wte"), 3, 0, &s) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "pad the vocabulary to 384"),
          "Vp 320 at tp 3: %s", lms_last_error());
    CHECK(lms_gpt_tp_shard(&c, lms_gpt_find(&m, "h.0.mlp.c_fc.weight"), 4, 0, &s) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "attention heads"),
          "6 heads at tp 4: %s", lms_last_error());
    CHECK(lms_gpt_config_tp(&c, 4) == LMS_ERR_INVALID_ARG, "config for tp 4 with 6 heads");
    lms_gpt_free(&m);
}

/* The pieces: (1) two micro-batches in flight in their own activation sets
 * (forward A, forward B, backward A, backward B) give the bits of running
 * them one after the other in one set; (2) a two-stage split with the
 * residual stream copied between stages (as pipeline send/recv would) gives
 * the whole model's loss and gradients bit for bit; (3) KV-cache decoding,
 * one token at a time through the same block code, gives the logits of the
 * whole-sequence forward at every position. */
static void check_pieces(const fixture *f) {
    lms_backend be;
    lms_backend_init(&be, "cpu");
    lms_gpt_config cfg = {f->L, f->NH, f->C, f->maxT, f->V, 0, 0};
    lms_gpt_config_validate(&cfg);
    const int B = f->B, T = f->T, N = B * T, C = cfg.C, half = B / 2 > 0 ? B / 2 : 1;
    lms_gpt m;
    lms_gpt_acts a, b;
    CHECK(lms_gpt_init(&m, &cfg, B, T, 1) == LMS_OK, "init");
    CHECK(lms_gpt_acts_init(&a, &cfg, B, T, 1) == LMS_OK && lms_gpt_acts_init(&b, &cfg, B, T, 1) == LMS_OK, "acts");
    memcpy(m.params, f->params, m.num_params * 4);
    const size_t P = m.num_params;
    float *ref = malloc(P * 4), la0, lb0, la1, lb1;
    /* (1) micro-batches A = the first half of the batch, B = the rest, one at a time */
    const int32_t *xa = f->tokens, *ya = f->targets, *xb = f->tokens + half * T, *yb = f->targets + half * T;
    const int nb = B - half > 0 ? B - half : 1;
    lms_gpt_zero_grad(&m, &be);
    lms_gpt_forward(&m, &be, &a, xa, ya, half, T, &la0);
    lms_gpt_backward(&m, &be, &a, xa, ya, 0.5f, NULL, NULL);
    lms_gpt_forward(&m, &be, &a, xb, yb, nb, T, &lb0);
    lms_gpt_backward(&m, &be, &a, xb, yb, 0.5f, NULL, NULL);
    memcpy(ref, m.grads, P * 4);
    lms_gpt_zero_grad(&m, &be);
    lms_gpt_forward(&m, &be, &a, xa, ya, half, T, &la1);
    lms_gpt_forward(&m, &be, &b, xb, yb, nb, T, &lb1);
    lms_gpt_backward(&m, &be, &a, xa, ya, 0.5f, NULL, NULL);
    lms_gpt_backward(&m, &be, &b, xb, yb, 0.5f, NULL, NULL);
    CHECK(la0 == la1 && lb0 == lb1 && memcmp(ref, m.grads, P * 4) == 0,
          "two micro-batches in flight give the sequential bits (losses %g %g vs %g %g)", la0, lb0, la1, lb1);

    /* (2) two stages: embed + block 0 | blocks 1.. + head, over separate sets */
    float loss_ref, loss_st;
    lms_gpt_zero_grad(&m, &be);
    lms_gpt_forward(&m, &be, &a, f->tokens, f->targets, B, T, &loss_ref);
    lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, 1.0f / N, NULL, NULL);
    memcpy(ref, m.grads, P * 4);
    lms_gpt_zero_grad(&m, &be);
    float *wire = malloc(sizeof(float) * (size_t)N * C); /* what a send/recv would carry */
    int ok = lms_gpt_embed_forward(&m, &be, f->tokens, B, T, 0, a.stream[0]) == LMS_OK;
    ok &= lms_gpt_block_forward(&m, &be, 0, a.stream[0], lms_gpt_acts_layer(&a, 0), a.stream[1], B, T, NULL) == LMS_OK;
    memcpy(wire, a.stream[1], sizeof(float) * (size_t)N * C);
    memset(b.stream[1], 0xff, sizeof(float) * (size_t)N * C);
    memcpy(b.stream[1], wire, sizeof(float) * (size_t)N * C);
    for (int l = 1; l < cfg.L; l++)
        ok &= lms_gpt_block_forward(&m, &be, l, b.stream[l], lms_gpt_acts_layer(&b, l), b.stream[l + 1], B, T, NULL) ==
              LMS_OK;
    ok &= lms_gpt_head_forward(&m, &be, b.stream[cfg.L], &b.head, f->targets, B, T, &loss_st) == LMS_OK;
    ok &= lms_gpt_head_backward(&m, &be, b.stream[cfg.L], &b.head, f->targets, 1.0f / N, b.grad.dx, &b.grad, B, T) ==
          LMS_OK;
    for (int l = cfg.L - 1; l >= 1; l--)
        ok &= lms_gpt_block_backward(&m, &be, l, b.stream[l], lms_gpt_acts_layer(&b, l), b.grad.dx, &b.grad, B, T) ==
              LMS_OK;
    memcpy(wire, b.grad.dx, sizeof(float) * (size_t)N * C);
    memcpy(a.grad.dx, wire, sizeof(float) * (size_t)N * C);
    ok &= lms_gpt_block_backward(&m, &be, 0, a.stream[0], lms_gpt_acts_layer(&a, 0), a.grad.dx, &a.grad, B, T) == LMS_OK;
    ok &= lms_gpt_embed_backward(&m, &be, f->tokens, B, T, a.grad.dx) == LMS_OK;
    CHECK(ok && loss_st == loss_ref && memcmp(ref, m.grads, P * 4) == 0,
          "two stages over copied activations give the whole model's bits (loss %.9g vs %.9g)", loss_st, loss_ref);
    free(wire);

    /* (3) decoding the first sequence token by token */
    lms_kv_cache kv;
    CHECK(lms_kv_cache_init(&kv, &cfg) == LMS_OK, "kv cache");
    lms_gpt_forward(&m, &be, &a, f->tokens, NULL, 1, T, NULL);
    float *logits = malloc(sizeof(float) * cfg.Vp);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        CHECK(lms_gpt_decode_step(&m, &be, &kv, f->tokens[t], logits) == LMS_OK, "decode step %d", t);
        worst = fmax(worst, rel_err(logits, a.head.logits + (size_t)t * cfg.Vp, (size_t)cfg.V, 1e-6));
    }
    CHECK(worst < 1e-5, "KV-cache decoding vs the whole-sequence forward: logits rel err %g", worst);
    printf("[pieces] in flight and two stages bitwise; decoding vs forward logits rel err %.2e\n", worst);
    free(logits);
    lms_kv_cache_free(&kv);
    free(ref);
    lms_gpt_acts_free(&a);
    lms_gpt_acts_free(&b);
    lms_gpt_free(&m);
}

/* Training's fused cross-entropy (lms_gpt_forward_train): the loss, the
 * dlogits the forward leaves over the logits and every gradient are the
 * bits of lms_gpt_forward then lms_gpt_backward, on both backends and under
 * bf16 / fp16 storage (with a loss scale's dloss); a backward with another
 * dloss than the forward's is refused. */
static void check_fused_xent(const fixture *f) {
    static const char *const names[4] = {"ref", "cpu", "cpu+bf16", "cpu+fp16"};
    lms_gpt_config cfg = {f->L, f->NH, f->C, f->maxT, f->V, 0, 0};
    lms_gpt_config_validate(&cfg);
    const int B = f->B, T = f->T;
    const size_t nl = (size_t)B * T * cfg.Vp;
    for (int k = 0; k < 4; k++) {
        lms_backend inner, be;
        lms_lowp *lp = NULL;
        lms_backend_init(&inner, k == 0 ? "ref" : "cpu");
        be = inner;
        if (k >= 2) CHECK(lms_lowp_init(&lp, &inner, k == 2 ? LMS_DT_BF16 : LMS_DT_F16, &be) == LMS_OK, "lowp");
        const float dloss = (k == 3 ? 1024.0f : 1.0f) / (float)(B * T);
        lms_gpt m;
        lms_gpt_acts a;
        CHECK(lms_gpt_init(&m, &cfg, B, T, 1) == LMS_OK && lms_gpt_acts_init(&a, &cfg, B, T, 1) == LMS_OK, "init");
        memcpy(m.params, f->params, m.num_params * 4);
        float *grads = malloc(m.num_params * 4), *dlogits = malloc(nl * 4), l0 = 0, l1 = 0;
        lms_gpt_zero_grad(&m, &be);
        CHECK(lms_gpt_forward(&m, &be, &a, f->tokens, f->targets, B, T, &l0) == LMS_OK && a.head.dlogits_dloss == 0,
              "[%s] forward", names[k]);
        CHECK(lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, dloss, NULL, NULL) == LMS_OK, "backward");
        memcpy(grads, m.grads, m.num_params * 4);
        memcpy(dlogits, a.head.logits, nl * 4); /* the backward left them there */
        lms_gpt_zero_grad(&m, &be);
        CHECK(lms_gpt_forward_train(&m, &be, &a, f->tokens, f->targets, B, T, dloss, &l1) == LMS_OK &&
                  a.head.dlogits_dloss == dloss,
              "[%s] forward_train fuses the cross-entropy", names[k]);
        CHECK(l1 == l0 && memcmp(dlogits, a.head.logits, nl * 4) == 0,
              "[%s] fused: loss %.9g vs %.9g, dlogits after the forward %s those of the backward", names[k], l1, l0,
              memcmp(dlogits, a.head.logits, nl * 4) ? "differ from" : "equal");
        CHECK(lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, dloss, NULL, NULL) == LMS_OK, "backward");
        CHECK(memcmp(grads, m.grads, m.num_params * 4) == 0, "[%s] fused: the gradients are bit-identical", names[k]);
        CHECK(lms_gpt_forward_train(&m, &be, &a, f->tokens, f->targets, B, T, dloss, &l1) == LMS_OK, "forward");
        CHECK(lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, 2 * dloss, NULL, NULL) == LMS_ERR_INTERNAL &&
                  strstr(lms_last_error(), "dloss"),
              "[%s] a backward with another dloss is refused: %s", names[k], lms_last_error());
        printf("[%s] fused cross-entropy: loss, dlogits and gradients bit-identical\n", names[k]);
        free(grads);
        free(dlogits);
        lms_gpt_acts_free(&a);
        lms_gpt_free(&m);
        lms_lowp_free(lp);
    }
}

/* Two identical training steps from the same state give identical bits. */
static void check_determinism(const fixture *f) {
    lms_backend be;
    lms_backend_init(&be, "cpu");
    lms_gpt_config cfg = {f->L, f->NH, f->C, f->maxT, f->V, 0, 0};
    lms_gpt_config_validate(&cfg);
    float *res[2];
    for (int r = 0; r < 2; r++) {
        lms_gpt m;
        lms_adamw opt;
        lms_gpt_acts a;
        lms_gpt_init(&m, &cfg, f->B, f->T, 1);
        lms_gpt_acts_init(&a, &cfg, f->B, f->T, 1);
        lms_gpt_init_params(&m, 3);
        lms_adamw_init(&opt, m.num_params, 0.9f, 0.95f, 1e-8f, 0.1f);
        for (int s = 0; s < 3; s++) {
            lms_gpt_zero_grad(&m, &be);
            lms_gpt_forward(&m, &be, &a, f->tokens, f->targets, f->B, f->T, NULL);
            lms_gpt_backward(&m, &be, &a, f->tokens, f->targets, 1.0f / (f->B * f->T), NULL, NULL);
            lms_adamw_step(&opt, &be, m.params, m.grads, m.tensors, m.num_tensors, 1e-3f, 1.0f);
        }
        res[r] = malloc(m.num_params * 4);
        memcpy(res[r], m.params, m.num_params * 4);
        lms_adamw_free(&opt);
        lms_gpt_acts_free(&a);
        lms_gpt_free(&m);
    }
    size_t P = (size_t)f->nparams;
    CHECK(memcmp(res[0], res[1], P * 4) == 0, "two identical runs are bitwise equal");
    free(res[0]);
    free(res[1]);
}

int main(void) {
    fixture f;
    if (!read_fixture("tests/fixtures/gpt2_tiny.bin", &f)) return 1;
    check_backend(&f, "ref");
    check_backend(&f, "cpu");
    check_init();
    check_backend_buffers();
    check_table_layout();
    check_tp_shards();
    check_determinism(&f);
    check_pieces(&f);
    check_fused_xent(&f);
    /* the fixture's buffers (so that the sanitizer build's leak check passes) */
    free(f.params), free(f.grads), free(f.final), free(f.tokens), free(f.targets), free(f.logits);
    free(f.losses), free(f.norms);
    return test_summary("test_model");
}
