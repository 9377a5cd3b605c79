/* Every op: the reference backward against central finite differences of
 * the reference forward, and the fast backend against the reference
 * (forward outputs and every gradient). Shapes are chosen off the tile
 * sizes (T not a multiple of 32/64, C not a multiple of 64). */
#include "check.h"
#include "lmscale/backend.h"
#include "backend/cpu/vmath.h"

#include <string.h>

static lms_backend REF = {&lms_backend_ref_i, NULL}, FAST = {&lms_backend_cpu_i, NULL};

/* every buffer of the tests, freed at the end (the sanitizer build checks leaks) */
static void *g_bufs[4096];
static int g_nbufs;
static float *buf(size_t bytes) {
    float *p = lms_alloc(bytes);
    LMS_ASSERT(p && g_nbufs < (int)(sizeof g_bufs / sizeof g_bufs[0]));
    g_bufs[g_nbufs++] = p;
    return p;
}
static void free_bufs(void) {
    while (g_nbufs) lms_free(g_bufs[--g_nbufs]);
}

static float *randn(size_t n, uint64_t seed, float scale) {
    float *p = buf(n * sizeof(float));
    uint64_t k = lms_rng_key(seed, "test");
    for (size_t i = 0; i < n; i++) p[i] = scale * lms_rng_normal(k, i);
    return p;
}
static float *zeros(size_t n) { return buf(n * sizeof(float)); }
static float *copy(const float *x, size_t n) {
    float *p = zeros(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* loss = sum(out * R) in double */
static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Finite-difference check of d(sum(out*R))/d(x[i]) for a few indices. f
 * recomputes out from the current inputs. */
typedef void (*fwd_fn)(void *ctx);
static double fd_check(float *x, size_t n, const float *analytic, fwd_fn f, void *ctx, float *out,
                       size_t nout, const float *R, int samples) {
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < n; i++)
        if (fabs(analytic[i]) > scale) scale = fabs(analytic[i]);
    for (int s = 0; s < samples; s++) {
        size_t i = (size_t)(lms_rng_u64(77, (uint64_t)s) % n);
        float orig = x[i], h = 1e-2f * (fabsf(orig) > 1 ? fabsf(orig) : 1.0f);
        x[i] = orig + h;
        f(ctx);
        double lp = dot(out, R, nout);
        x[i] = orig - h;
        f(ctx);
        double lm = dot(out, R, nout);
        x[i] = orig;
        double num = (lp - lm) / (2.0 * h);
        double err = fabs(num - analytic[i]) / scale;
        if (err > worst) worst = err;
    }
    f(ctx);
    return worst;
}

/* ---- layernorm ---- */
typedef struct { float *out, *mean, *rstd, *inp, *w, *b; int N, C; } ln_ctx;
static void ln_f(void *c) {
    ln_ctx *k = c;
    REF.i->layernorm_fwd(&REF, k->out, k->mean, k->rstd, k->inp, k->w, k->b, k->N, k->C);
}
static void test_layernorm(void) {
    int N = 13, C = 70;
    size_t NC = (size_t)N * C;
    ln_ctx k = {zeros(NC), zeros(N), zeros(N), randn(NC, 1, 1.5f), randn(C, 2, 1.0f), randn(C, 3, 1.0f), N, C};
    float *R = randn(NC, 4, 1.0f), *dx = zeros(NC), *dw = zeros(C), *db = zeros(C);
    ln_f(&k);
    REF.i->layernorm_bwd(&REF, dx, dw, db, R, k.inp, k.w, k.mean, k.rstd, N, C);
    CHECK(fd_check(k.inp, NC, dx, ln_f, &k, k.out, NC, R, 40) < 2e-3, "layernorm dinp vs finite differences");
    CHECK(fd_check(k.w, C, dw, ln_f, &k, k.out, NC, R, 20) < 2e-3, "layernorm dw vs finite differences");
    CHECK(fd_check(k.b, C, db, ln_f, &k, k.out, NC, R, 20) < 2e-3, "layernorm db vs finite differences");
    /* fast vs ref, accumulating onto non-zero gradients */
    float *out2 = zeros(NC), *m2 = zeros(N), *r2 = zeros(N);
    float *dx0 = randn(NC, 5, 1.0f), *dx2 = copy(dx0, NC), *dw2 = copy(dx0, C), *db2 = copy(dx0 + C, C);
    float *dxr = copy(dx0, NC), *dwr = copy(dx0, C), *dbr = copy(dx0 + C, C);
    FAST.i->layernorm_fwd(&FAST, out2, m2, r2, k.inp, k.w, k.b, N, C);
    CHECK(rel_err(out2, k.out, NC, 1e-6) < 1e-5, "layernorm fwd fast vs ref: %g", rel_err(out2, k.out, NC, 1e-6));
    CHECK(rel_err(r2, k.rstd, N, 1e-6) < 1e-5, "layernorm rstd fast vs ref");
    FAST.i->layernorm_bwd(&FAST, dx2, dw2, db2, R, k.inp, k.w, m2, r2, N, C);
    REF.i->layernorm_bwd(&REF, dxr, dwr, dbr, R, k.inp, k.w, k.mean, k.rstd, N, C);
    CHECK(rel_err(dx2, dxr, NC, 1e-6) < 1e-5, "layernorm dinp fast vs ref: %g", rel_err(dx2, dxr, NC, 1e-6));
    CHECK(rel_err(dw2, dwr, C, 1e-6) < 1e-5, "layernorm dw fast vs ref");
    CHECK(rel_err(db2, dbr, C, 1e-6) < 1e-5, "layernorm db fast vs ref");
}

/* ---- matmul ---- */
typedef struct { float *out, *inp, *w, *bias; int N, IC, OC; } mm_ctx;
static void mm_f(void *c) {
    mm_ctx *k = c;
    REF.i->matmul_fwd(&REF, k->out, k->inp, k->w, k->bias, k->N, k->IC, k->OC);
}
static void test_matmul(void) {
    int N = 17, IC = 45, OC = 70;
    mm_ctx k = {zeros((size_t)N * OC), randn((size_t)N * IC, 10, 1.0f), randn((size_t)OC * IC, 11, 0.5f),
                randn(OC, 12, 1.0f), N, IC, OC};
    size_t NO = (size_t)N * OC;
    float *R = randn(NO, 13, 1.0f), *dx = zeros((size_t)N * IC), *dw = zeros((size_t)OC * IC), *db = zeros(OC);
    mm_f(&k);
    REF.i->matmul_bwd(&REF, dx, dw, db, R, k.inp, k.w, N, IC, OC);
    CHECK(fd_check(k.inp, (size_t)N * IC, dx, mm_f, &k, k.out, NO, R, 30) < 1e-3, "matmul dinp vs FD");
    CHECK(fd_check(k.w, (size_t)OC * IC, dw, mm_f, &k, k.out, NO, R, 30) < 1e-3, "matmul dw vs FD");
    CHECK(fd_check(k.bias, OC, db, mm_f, &k, k.out, NO, R, 20) < 1e-3, "matmul dbias vs FD");
    float *out2 = zeros(NO);
    FAST.i->matmul_fwd(&FAST, out2, k.inp, k.w, k.bias, N, IC, OC);
    CHECK(rel_err(out2, k.out, NO, 1e-6) < 1e-5, "matmul fwd fast vs ref");
    FAST.i->matmul_fwd(&FAST, out2, k.inp, k.w, NULL, N, IC, OC);
    REF.i->matmul_fwd(&REF, k.out, k.inp, k.w, NULL, N, IC, OC);
    CHECK(rel_err(out2, k.out, NO, 1e-6) < 1e-5, "matmul fwd (no bias) fast vs ref");
    float *init = randn((size_t)OC * IC, 14, 1.0f);
    float *dx2 = copy(init, (size_t)N * IC), *dw2 = copy(init, (size_t)OC * IC), *db2 = copy(init, OC);
    float *dxr = copy(init, (size_t)N * IC), *dwr = copy(init, (size_t)OC * IC), *dbr = copy(init, OC);
    FAST.i->matmul_bwd(&FAST, dx2, dw2, db2, R, k.inp, k.w, N, IC, OC);
    REF.i->matmul_bwd(&REF, dxr, dwr, dbr, R, k.inp, k.w, N, IC, OC);
    CHECK(rel_err(dx2, dxr, (size_t)N * IC, 1e-6) < 1e-5, "matmul dinp fast vs ref");
    CHECK(rel_err(dw2, dwr, (size_t)OC * IC, 1e-6) < 1e-5, "matmul dw fast vs ref");
    CHECK(rel_err(db2, dbr, OC, 1e-6) < 1e-5, "matmul dbias fast vs ref");
}

/* ---- attention ---- */
typedef struct { float *out, *lse, *qkv; int B, T, C, NH; } at_ctx;
static void at_f(void *c) {
    at_ctx *k = c;
    REF.i->attention_fwd(&REF, k->out, k->lse, k->qkv, k->B, k->T, k->C, k->NH);
}
static void test_attention_shape(int B, int T, int C, int NH, int fd) {
    size_t n3 = (size_t)B * T * 3 * C, n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    at_ctx k = {zeros(n), zeros(nl), randn(n3, 20 + T, 1.0f), B, T, C, NH};
    float *R = randn(n, 21, 1.0f), *dq = zeros(n3);
    at_f(&k);
    REF.i->attention_bwd(&REF, dq, R, k.qkv, k.out, k.lse, B, T, C, NH);
    if (fd) CHECK(fd_check(k.qkv, n3, dq, at_f, &k, k.out, n, R, 60) < 2e-3, "attention dqkv vs FD (T=%d)", T);
    float *out2 = zeros(n), *lse2 = zeros(nl), *dq0 = randn(n3, 22, 1.0f), *dq2 = copy(dq0, n3), *dqr = copy(dq0, n3);
    FAST.i->attention_fwd(&FAST, out2, lse2, k.qkv, B, T, C, NH);
    CHECK(rel_err(out2, k.out, n, 1e-6) < 1e-5, "attention fwd fast vs ref (T=%d): %g", T, rel_err(out2, k.out, n, 1e-6));
    CHECK(rel_err(lse2, k.lse, nl, 1e-6) < 1e-5, "attention lse fast vs ref (T=%d)", T);
    FAST.i->attention_bwd(&FAST, dq2, R, k.qkv, out2, lse2, B, T, C, NH);
    REF.i->attention_bwd(&REF, dqr, R, k.qkv, k.out, k.lse, B, T, C, NH);
    CHECK(rel_err(dq2, dqr, n3, 1e-6) < 1e-5, "attention dqkv fast vs ref (T=%d): %g", T, rel_err(dq2, dqr, n3, 1e-6));
}
static void test_attention(void) {
    test_attention_shape(2, 7, 12, 3, 1);
    test_attention_shape(2, 37, 24, 2, 1);
    test_attention_shape(1, 150, 32, 4, 0); /* several query and key tiles */
}

/* ---- gelu, add, accumulate ---- */
typedef struct { float *out, *inp; size_t n; } ge_ctx;
static void ge_f(void *c) {
    ge_ctx *k = c;
    REF.i->gelu_fwd(&REF, k->out, k->inp, k->n);
}
static void test_gelu(void) {
    size_t n = 1000;
    ge_ctx k = {zeros(n), randn(n, 30, 3.0f), n};
    float *R = randn(n, 31, 1.0f), *dx = zeros(n);
    ge_f(&k);
    REF.i->gelu_bwd(&REF, dx, k.inp, R, n);
    CHECK(fd_check(k.inp, n, dx, ge_f, &k, k.out, n, R, 60) < 2e-3, "gelu vs FD");
    float *o2 = zeros(n), *d2 = zeros(n);
    FAST.i->gelu_fwd(&FAST, o2, k.inp, n);
    FAST.i->gelu_bwd(&FAST, d2, k.inp, R, n);
    CHECK(rel_err(o2, k.out, n, 1e-6) < 1e-5, "gelu fwd fast vs ref: %g", rel_err(o2, k.out, n, 1e-6));
    CHECK(rel_err(d2, dx, n, 1e-6) < 1e-5, "gelu bwd fast vs ref: %g", rel_err(d2, dx, n, 1e-6));
    float *a = randn(n, 32, 1.0f), *s1 = zeros(n), *s2 = zeros(n);
    REF.i->add(&REF, s1, a, k.inp, n);
    FAST.i->add(&FAST, s2, a, k.inp, n);
    CHECK(rel_err(s2, s1, n, 1e-6) == 0, "add fast vs ref");
    CHECK(s1[5] == a[5] + k.inp[5], "add is a+b");
    REF.i->accumulate(&REF, s1, a, n);
    FAST.i->accumulate(&FAST, s2, a, n);
    CHECK(rel_err(s2, s1, n, 1e-6) == 0, "accumulate fast vs ref");
}

/* ---- encoder ---- */
typedef struct { float *out, *wte, *wpe; int32_t *tok; int B, T, C; } en_ctx;
static void en_f(void *c) {
    en_ctx *k = c;
    REF.i->encoder_fwd(&REF, k->out, k->tok, k->wte, k->wpe, k->B, k->T, k->C);
}
static void test_encoder(void) {
    int B = 3, T = 9, C = 70, V = 11;
    int32_t tok[27];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(lms_rng_u64(40, i) % V); /* repeats */
    size_t n = (size_t)B * T * C;
    en_ctx k = {zeros(n), randn((size_t)V * C, 41, 1.0f), randn((size_t)T * C, 42, 1.0f), tok, B, T, C};
    float *R = randn(n, 43, 1.0f), *dwte = zeros((size_t)V * C), *dwpe = zeros((size_t)T * C);
    en_f(&k);
    REF.i->encoder_bwd(&REF, dwte, dwpe, R, tok, B, T, C);
    CHECK(fd_check(k.wte, (size_t)V * C, dwte, en_f, &k, k.out, n, R, 40) < 1e-3, "encoder dwte vs FD");
    CHECK(fd_check(k.wpe, (size_t)T * C, dwpe, en_f, &k, k.out, n, R, 40) < 1e-3, "encoder dwpe vs FD");
    float *o2 = zeros(n), *dwte2 = zeros((size_t)V * C), *dwpe2 = zeros((size_t)T * C);
    FAST.i->encoder_fwd(&FAST, o2, tok, k.wte, k.wpe, B, T, C);
    FAST.i->encoder_bwd(&FAST, dwte2, dwpe2, R, tok, B, T, C);
    CHECK(rel_err(o2, k.out, n, 1e-6) == 0, "encoder fwd fast vs ref");
    CHECK(rel_err(dwte2, dwte, (size_t)V * C, 1e-6) < 1e-6, "encoder dwte fast vs ref");
    CHECK(rel_err(dwpe2, dwpe, (size_t)T * C, 1e-6) < 1e-6, "encoder dwpe fast vs ref");
}

/* ---- cross-entropy ---- */
typedef struct { float *loss, *lse, *logits; int32_t *tg; int N, V, Vp; } xe_ctx;
static void xe_f(void *c) {
    xe_ctx *k = c;
    REF.i->xent_fwd(&REF, k->loss, k->lse, k->logits, k->tg, k->N, k->V, k->Vp);
}
static void test_xent(void) {
    int N = 9, V = 100, Vp = 128;
    int32_t tg[9];
    for (int i = 0; i < N; i++) tg[i] = (int32_t)(lms_rng_u64(50, i) % V);
    size_t n = (size_t)N * Vp;
    xe_ctx k = {zeros(N), zeros(N), randn(n, 51, 2.0f), tg, N, V, Vp};
    float *R = zeros(N), *d = zeros(n);
    for (int i = 0; i < N; i++) R[i] = 0.25f;
    xe_f(&k);
    REF.i->xent_bwd(&REF, d, k.logits, k.lse, tg, 0.25f, N, V, Vp);
    CHECK(fd_check(k.logits, n, d, xe_f, &k, k.loss, N, R, 80) < 2e-3, "xent dlogits vs FD");
    double pad = 0;
    for (int i = 0; i < N; i++)
        for (int j = V; j < Vp; j++) pad += fabs(d[(size_t)i * Vp + j]);
    CHECK(pad == 0, "padded logits get zero gradient");
    float *l2 = zeros(N), *lse2 = zeros(N), *d2 = copy(k.logits, n);
    FAST.i->xent_fwd(&FAST, l2, lse2, k.logits, tg, N, V, Vp);
    CHECK(rel_err(l2, k.loss, N, 1e-6) < 1e-5, "xent loss fast vs ref");
    FAST.i->xent_bwd(&FAST, d2, d2, lse2, tg, 0.25f, N, V, Vp); /* in place */
    CHECK(rel_err(d2, d, n, 1e-6) < 1e-5, "xent dlogits fast (in place) vs ref: %g", rel_err(d2, d, n, 1e-6));
}

/* ---- sumsq, adamw ---- */
static void test_optim_ops(void) {
    size_t n = 200003;
    float *g = randn(n, 60, 1.0f);
    double a = 0, b = 0;
    REF.i->sumsq(&REF, g, n, &a);
    FAST.i->sumsq(&FAST, g, n, &b);
    CHECK(fabs(a - b) / a < 1e-12, "sumsq fast vs ref: %.17g vs %.17g", a, b);
    float *p1 = randn(n, 61, 1.0f), *p2 = copy(p1, n), *m1 = randn(n, 62, 0.1f), *m2 = copy(m1, n);
    float *v1 = zeros(n), *v2 = zeros(n);
    for (size_t i = 0; i < n; i++) v1[i] = v2[i] = m1[i] * m1[i];
    lms_adamw_args args = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f};
    REF.i->adamw(&REF, p1, g, m1, v1, n, &args);
    FAST.i->adamw(&FAST, p2, g, m2, v2, n, &args);
    CHECK(rel_err(p2, p1, n, 1e-6) < 1e-6, "adamw params fast vs ref: %g", rel_err(p2, p1, n, 1e-6));
    CHECK(rel_err(m2, m1, n, 1e-6) < 1e-6, "adamw m fast vs ref");
    CHECK(rel_err(v2, v1, n, 1e-6) < 1e-6, "adamw v fast vs ref");
    /* one element by hand, in double (PyTorch's formula) */
    float p = 0.5f, gg = 0.2f, m = 0.01f, v = 0.001f;
    double gs = gg * 0.5, md = 0.9 * m + 0.1 * gs, vd = 0.95 * v + 0.05 * gs * gs;
    double pd = p * (1 - 1e-2 * 0.1) - 1e-2 / (1 - pow(0.9, 3)) * md / (sqrt(vd) / sqrt(1 - pow(0.95, 3)) + 1e-8);
    REF.i->adamw(&REF, &p, &gg, &m, &v, 1, &args);
    CHECK(fabs(p - pd) < 1e-6, "adamw matches the formula: %g vs %g", p, pd);
}

/* lms_vexpf against libm over the range the kernels use, and NaN in, NaN
 * out (the NaN used to reach a float-to-int conversion: undefined
 * behaviour, caught by -fsanitize=float-cast-overflow in the sanitizer
 * build) */
static void test_vexpf(void) {
    double worst = 0;
    for (int i = 0; i <= 2000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000.0f;
        double e = exp((double)x), got = lms_vexpf(x);
        double rel = fabs(got - e) / e;
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 1e-6, "vexpf relative error %g", worst);
    volatile float nan = NAN, inf = INFINITY;
    CHECK(isnan(lms_vexpf(nan)) && isnan(lms_vexpf(-nan)), "vexpf(NaN) is not NaN");
    CHECK(lms_vexpf(-inf) >= 0 && lms_vexpf(-inf) < 1e-37f && lms_vexpf(inf) > 1e38f, "vexpf(+-inf)");
    CHECK(isnan(lms_vtanhf(nan)), "vtanhf(NaN) is not NaN");
}

int main(void) {
    test_vexpf();
    test_layernorm();
    test_matmul();
    test_attention();
    test_gelu();
    test_encoder();
    test_xent();
    test_optim_ops();
    free_bufs();
    return test_summary("test_ops");
}
