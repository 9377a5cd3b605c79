/* The ops, in two parts.
 *
 * 1. The reference backend's backward against central finite differences
 *    of its forward (every op with a gradient).
 * 2. A table of cases run on every registered backend (lms_backend_
 *    registered), each compared with the reference on the same inputs
 *    (ggml's test-backend-ops): inputs are made on the host, copied to
 *    buffers the backend allocates, the ops run there, and the outputs are
 *    copied back. Gradient outputs start non-zero, so accumulation (+=) is
 *    checked too. A new backend (CUDA, bf16, ...) is tested by
 *    registering it; an op it does not declare is reported, not run.
 *    The device functions (buffers, memset, copies, events) and the
 *    support checks are tested on every backend as well.
 * Shapes are chosen off the tile sizes (T not a multiple of 32/64, C not a
 * multiple of 64). */
#include "check.h"
#include "lmscale/backend.h"
#include "backend/cpu/vmath.h"

#include <string.h>

static lms_backend REF = {&lms_backend_ref_i, NULL};

/* The finite-difference checks' buffers, freed together at the end (the
 * sanitizer build checks for leaks). */
static void *bufs[256];
static int nbufs;
static float *tracked(size_t n) {
    float *p = lms_alloc(n * sizeof(float));
    CHECK(p && nbufs < (int)(sizeof bufs / sizeof bufs[0]), "test buffer");
    if (nbufs < (int)(sizeof bufs / sizeof bufs[0])) bufs[nbufs++] = p;
    return p;
}
static void free_bufs(void) {
    while (nbufs > 0) lms_free(bufs[--nbufs]);
}

static float *randn(size_t n, uint64_t seed, float scale) {
    float *p = tracked(n);
    uint64_t k = lms_rng_key(seed, "test");
    for (size_t i = 0; i < n; i++) p[i] = scale * lms_rng_normal(k, i);
    return p;
}
static float *zeros(size_t n) { return tracked(n); }

/* loss = sum(out * R) in double */
static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ================= 1. the reference against finite differences ================= */

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

typedef struct { float *out, *mean, *rstd, *inp, *w, *b; int N, C; } ln_ctx;
static void ln_f(void *c) {
    ln_ctx *k = c;
    REF.i->layernorm_fwd(&REF, k->out, k->mean, k->rstd, k->inp, k->w, k->b, k->N, k->C);
}
static void fd_layernorm(void) {
    int N = 13, C = 70;
    size_t NC = (size_t)N * C;
    ln_ctx k = {zeros(NC), zeros(N), zeros(N), randn(NC, 1, 1.5f), randn(C, 2, 1.0f), randn(C, 3, 1.0f), N, C};
    float *R = randn(NC, 4, 1.0f), *dx = zeros(NC), *dw = zeros(C), *db = zeros(C);
    ln_f(&k);
    CHECK(REF.i->layernorm_bwd(&REF, dx, dw, db, R, k.inp, k.w, k.mean, k.rstd, N, C) == LMS_OK, "layernorm_bwd");
    CHECK(fd_check(k.inp, NC, dx, ln_f, &k, k.out, NC, R, 40) < 2e-3, "layernorm dinp vs finite differences");
    CHECK(fd_check(k.w, C, dw, ln_f, &k, k.out, NC, R, 20) < 2e-3, "layernorm dw vs finite differences");
    CHECK(fd_check(k.b, C, db, ln_f, &k, k.out, NC, R, 20) < 2e-3, "layernorm db vs finite differences");
}

typedef struct { float *out, *inp, *w, *bias; int N, IC, OC; } mm_ctx;
static void mm_f(void *c) {
    mm_ctx *k = c;
    REF.i->matmul_fwd(&REF, k->out, k->inp, k->w, k->bias, k->N, k->IC, k->OC);
}
static void fd_matmul(void) {
    int N = 17, IC = 45, OC = 70;
    mm_ctx k = {zeros((size_t)N * OC), randn((size_t)N * IC, 10, 1.0f), randn((size_t)OC * IC, 11, 0.5f),
                randn(OC, 12, 1.0f), N, IC, OC};
    size_t NO = (size_t)N * OC;
    float *R = randn(NO, 13, 1.0f), *dx = zeros((size_t)N * IC), *dw = zeros((size_t)OC * IC), *db = zeros(OC);
    mm_f(&k);
    CHECK(REF.i->matmul_bwd(&REF, dx, dw, db, R, k.inp, k.w, N, IC, OC) == LMS_OK, "matmul_bwd");
    CHECK(fd_check(k.inp, (size_t)N * IC, dx, mm_f, &k, k.out, NO, R, 30) < 1e-3, "matmul dinp vs FD");
    CHECK(fd_check(k.w, (size_t)OC * IC, dw, mm_f, &k, k.out, NO, R, 30) < 1e-3, "matmul dw vs FD");
    CHECK(fd_check(k.bias, OC, db, mm_f, &k, k.out, NO, R, 20) < 1e-3, "matmul dbias vs FD");
}

typedef struct { float *out, *lse, *qkv; int B, T, C, NH; } at_ctx;
static void at_f(void *c) {
    at_ctx *k = c;
    REF.i->attention_fwd(&REF, k->out, k->lse, k->qkv, k->B, k->T, k->C, k->NH);
}
static void fd_attention(int B, int T, int C, int NH) {
    size_t n3 = (size_t)B * T * 3 * C, n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    at_ctx k = {zeros(n), zeros(nl), randn(n3, 20 + T, 1.0f), B, T, C, NH};
    float *R = randn(n, 21, 1.0f), *dq = zeros(n3);
    at_f(&k);
    CHECK(REF.i->attention_bwd(&REF, dq, R, k.qkv, k.out, k.lse, B, T, C, NH) == LMS_OK, "attention_bwd");
    CHECK(fd_check(k.qkv, n3, dq, at_f, &k, k.out, n, R, 60) < 2e-3, "attention dqkv vs FD (T=%d)", T);
}

typedef struct { float *out, *inp; size_t n; } ge_ctx;
static void ge_f(void *c) {
    ge_ctx *k = c;
    REF.i->gelu_fwd(&REF, k->out, k->inp, k->n);
}
static void fd_gelu(void) {
    size_t n = 1000;
    ge_ctx k = {zeros(n), randn(n, 30, 3.0f), n};
    float *R = randn(n, 31, 1.0f), *dx = zeros(n);
    ge_f(&k);
    CHECK(REF.i->gelu_bwd(&REF, dx, k.inp, R, n) == LMS_OK, "gelu_bwd");
    CHECK(fd_check(k.inp, n, dx, ge_f, &k, k.out, n, R, 60) < 2e-3, "gelu vs FD");
    float *a = randn(n, 32, 1.0f), *s1 = zeros(n);
    REF.i->add(&REF, s1, a, k.inp, n);
    CHECK(s1[5] == a[5] + k.inp[5], "add is a+b");
}

typedef struct { float *out, *wte, *wpe; int32_t *tok; int B, T, C; } en_ctx;
static void en_f(void *c) {
    en_ctx *k = c;
    REF.i->encoder_fwd(&REF, k->out, k->tok, k->wte, k->wpe, k->B, k->T, k->C);
}
static void fd_encoder(void) {
    int B = 3, T = 9, C = 70, V = 11;
    int32_t tok[27];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(lms_rng_u64(40, i) % V); /* repeats */
    size_t n = (size_t)B * T * C;
    en_ctx k = {zeros(n), randn((size_t)V * C, 41, 1.0f), randn((size_t)T * C, 42, 1.0f), tok, B, T, C};
    float *R = randn(n, 43, 1.0f), *dwte = zeros((size_t)V * C), *dwpe = zeros((size_t)T * C);
    en_f(&k);
    CHECK(REF.i->encoder_bwd(&REF, dwte, dwpe, R, tok, B, T, C) == LMS_OK, "encoder_bwd");
    CHECK(fd_check(k.wte, (size_t)V * C, dwte, en_f, &k, k.out, n, R, 40) < 1e-3, "encoder dwte vs FD");
    CHECK(fd_check(k.wpe, (size_t)T * C, dwpe, en_f, &k, k.out, n, R, 40) < 1e-3, "encoder dwpe vs FD");
}

typedef struct { float *loss, *lse, *logits; int32_t *tg; int N, V, Vp; } xe_ctx;
static void xe_f(void *c) {
    xe_ctx *k = c;
    REF.i->xent_fwd(&REF, k->loss, k->lse, k->logits, k->tg, k->N, k->V, k->Vp);
}
static void fd_xent(void) {
    int N = 9, V = 100, Vp = 128;
    int32_t tg[9];
    for (int i = 0; i < N; i++) tg[i] = (int32_t)(lms_rng_u64(50, i) % V);
    size_t n = (size_t)N * Vp;
    xe_ctx k = {zeros(N), zeros(N), randn(n, 51, 2.0f), tg, N, V, Vp};
    float *R = zeros(N), *d = zeros(n);
    for (int i = 0; i < N; i++) R[i] = 0.25f;
    xe_f(&k);
    CHECK(REF.i->xent_bwd(&REF, d, k.logits, k.lse, tg, 0.25f, N, V, Vp) == LMS_OK, "xent_bwd");
    CHECK(fd_check(k.logits, n, d, xe_f, &k, k.loss, N, R, 80) < 2e-3, "xent dlogits vs FD");
    double pad = 0;
    for (int i = 0; i < N; i++)
        for (int j = V; j < Vp; j++) pad += fabs(d[(size_t)i * Vp + j]);
    CHECK(pad == 0, "padded logits get zero gradient");
}

static void ref_adamw_formula(void) {
    /* one element by hand, in double (PyTorch's formula) */
    lms_adamw_args args = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f};
    float p = 0.5f, gg = 0.2f, m = 0.01f, v = 0.001f;
    double gs = gg * 0.5, md = 0.9 * m + 0.1 * gs, vd = 0.95 * v + 0.05 * gs * gs;
    double pd = p * (1 - 1e-2 * 0.1) - 1e-2 / (1 - pow(0.9, 3)) * md / (sqrt(vd) / sqrt(1 - pow(0.95, 3)) + 1e-8);
    REF.i->adamw(&REF, &p, &gg, &m, &v, 1, &args);
    CHECK(fabs(p - pd) < 1e-6, "adamw matches the formula: %g vs %g", p, pd);
}

/* A backend's AdamW is elementwise: an element's bits must not depend on
 * where it sits in the call (vector body, remainder, thread chunk), so a
 * long unaligned call equals one call per element. Catches a vector loop
 * that rounds (or fuses an FMA) differently from its scalar remainder. */
static void adamw_position_independent(const lms_backend_i *bi) {
    enum { N = 1003 };
    lms_backend be = {bi, NULL};
    lms_adamw_args args = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 7, 0.37f};
    static float p[2][N + 1], g[N + 1], m[2][N + 1], v[2][N + 1];
    uint64_t r = 12345;
    for (int i = 0; i <= N; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        float u = (float)(r >> 40) / 16777216.0f - 0.5f;
        p[0][i] = p[1][i] = u;
        g[i] = u * (i % 3 ? 1e-2f : 1e-7f);
        m[0][i] = m[1][i] = u * 1e-3f;
        v[0][i] = v[1][i] = i % 5 ? u * u * 1e-5f : 0.0f;
    }
    CHECK(bi->adamw(&be, p[0] + 1, g + 1, m[0] + 1, v[0] + 1, N, &args) == LMS_OK, "%s adamw runs", bi->name);
    for (int i = 1; i <= N; i++) bi->adamw(&be, p[1] + i, g + i, m[1] + i, v[1] + i, 1, &args);
    CHECK(!memcmp(p[0], p[1], sizeof p[0]) && !memcmp(m[0], m[1], sizeof m[0]) && !memcmp(v[0], v[1], sizeof v[0]),
          "%s adamw: one unaligned call of %d elements is bit-identical to one call per element", bi->name, N);
}

/* ================= 2. every backend against the reference ================= */

enum { A_IN, A_POS, A_OUT, A_ACC, A_TOK }; /* input; input > 0; output (=); gradient (+=); int32 ids */
#define MAX_ARGS 10
typedef struct {
    const char *name;
    int kind;
    size_t n;
    float scale; /* inputs: N(0, scale); A_TOK: ids in [0, scale) */
    double tol;  /* outputs: bound on rel_err against the reference; 0 = bit-identical */
} op_arg;

typedef struct op_case {
    const char *name;
    lms_op ops[3]; /* the ops it runs (checked with lms_backend_supports) */
    int nops;
    int nargs;
    op_arg a[MAX_ARGS];
    int d[4];         /* dimensions, for run */
    double scalar_tol; /* < 0: no host scalar result */
    lms_status (*run)(lms_backend *be, void *const *p, const int *d, double *scalar);
} op_case;

#define F(k) ((float *)p[k])
#define I(k) ((const int32_t *)p[k])

static lms_status run_layernorm(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->layernorm_fwd(be, F(0), F(1), F(2), F(3), F(4), F(5), d[0], d[1]));
    return be->i->layernorm_bwd(be, F(7), F(8), F(9), F(6), F(3), F(4), F(1), F(2), d[0], d[1]);
}
static lms_status run_matmul(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->matmul_fwd(be, F(0), F(1), F(2), F(3), d[0], d[1], d[2]));
    return be->i->matmul_bwd(be, F(5), F(6), F(7), F(4), F(1), F(2), d[0], d[1], d[2]);
}
static lms_status run_matmul_nobias(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->matmul_fwd(be, F(0), F(1), F(2), NULL, d[0], d[1], d[2]));
    return be->i->matmul_bwd(be, NULL, F(4), NULL, F(3), F(1), F(2), d[0], d[1], d[2]);
}
static lms_status run_attention(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->attention_fwd(be, F(0), F(1), F(2), d[0], d[1], d[2], d[3]));
    return be->i->attention_bwd(be, F(4), F(3), F(2), F(0), F(1), d[0], d[1], d[2], d[3]);
}
static lms_status run_gelu(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->gelu_fwd(be, F(0), F(1), (size_t)d[0]));
    return be->i->gelu_bwd(be, F(3), F(1), F(2), (size_t)d[0]);
}
static lms_status run_add(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->add(be, F(0), F(1), F(2), (size_t)d[0]);
}
static lms_status run_accumulate(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->accumulate(be, F(0), F(1), (size_t)d[0]);
}
static lms_status run_scale(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->scale(be, F(0), 0.37f, (size_t)d[0]);
}
static lms_status run_encoder(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->encoder_fwd(be, F(0), I(1), F(2), F(3), d[0], d[1], d[2]));
    return be->i->encoder_bwd(be, F(5), F(6), F(4), I(1), d[0], d[1], d[2]);
}
static lms_status run_xent(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->xent_fwd(be, F(0), F(1), F(2), I(3), d[0], d[1], d[2]));
    return be->i->xent_bwd(be, F(4), F(2), F(1), I(3), 0.25f, d[0], d[1], d[2]);
}
static lms_status run_xent_in_place(lms_backend *be, void *const *p, const int *d, double *s) {
    LMS_CHECK(be->i->xent_fwd(be, F(0), F(1), F(2), I(3), d[0], d[1], d[2]));
    return be->i->xent_bwd(be, F(2), F(2), F(1), I(3), 0.25f, d[0], d[1], d[2]); /* dlogits over logits */
}
static lms_status run_xent_fused(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->xent_fused(be, F(0), F(1), F(2), I(3), 0.25f, d[0], d[1], d[2]); /* dlogits over logits */
}
static lms_status run_xent_bwd_outside(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->xent_bwd(be, F(3), F(0), F(1), I(2), 0.25f, d[0], d[1], d[2]);
}
static lms_status run_sum(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->sum(be, F(0), (size_t)d[0], s);
}
static lms_status run_sumsq(lms_backend *be, void *const *p, const int *d, double *s) {
    return be->i->sumsq(be, F(0), (size_t)d[0], s);
}
static lms_status run_adamw(lms_backend *be, void *const *p, const int *d, double *s) {
    lms_adamw_args args = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f};
    return be->i->adamw(be, F(0), F(1), F(2), F(3), (size_t)d[0], &args);
}

#define ARG(nm, k, n, sc, tl) {nm, k, (size_t)(n), sc, tl}
#define NOSCALAR -1.0

static int make_cases(op_case *c) {
    int n = 0;
    { /* LayerNorm forward then backward (on its own mean and rstd) */
        int N = 13, C = 70;
        size_t NC = (size_t)N * C;
        c[n++] = (op_case){"layernorm", {LMS_OP_LAYERNORM_FWD, LMS_OP_LAYERNORM_BWD}, 2, 10,
                           {ARG("out", A_OUT, NC, 0, 1e-5), ARG("mean", A_OUT, N, 0, 1e-5),
                            ARG("rstd", A_OUT, N, 0, 1e-5), ARG("inp", A_IN, NC, 1.5f, 0), ARG("w", A_IN, C, 1, 0),
                            ARG("b", A_IN, C, 1, 0), ARG("dout", A_IN, NC, 1, 0), ARG("dinp", A_ACC, NC, 1, 1e-5),
                            ARG("dw", A_ACC, C, 1, 1e-5), ARG("db", A_ACC, C, 1, 1e-5)},
                           {N, C}, NOSCALAR, run_layernorm};
    }
    { /* matmul with bias, forward then backward */
        int N = 17, IC = 45, OC = 70;
        c[n++] = (op_case){"matmul", {LMS_OP_MATMUL_FWD, LMS_OP_MATMUL_BWD}, 2, 8,
                           {ARG("out", A_OUT, N * OC, 0, 1e-5), ARG("inp", A_IN, N * IC, 1, 0),
                            ARG("w", A_IN, OC * IC, 0.5f, 0), ARG("bias", A_IN, OC, 1, 0),
                            ARG("dout", A_IN, N * OC, 1, 0), ARG("dinp", A_ACC, N * IC, 1, 1e-5),
                            ARG("dw", A_ACC, OC * IC, 1, 1e-5), ARG("dbias", A_ACC, OC, 1, 1e-5)},
                           {N, IC, OC}, NOSCALAR, run_matmul};
        c[n++] = (op_case){"matmul without bias (dinp, dbias not wanted)", {LMS_OP_MATMUL_FWD, LMS_OP_MATMUL_BWD}, 2, 5,
                           {ARG("out", A_OUT, N * OC, 0, 1e-5), ARG("inp", A_IN, N * IC, 1, 0),
                            ARG("w", A_IN, OC * IC, 0.5f, 0), ARG("dout", A_IN, N * OC, 1, 0),
                            ARG("dw", A_ACC, OC * IC, 1, 1e-5)},
                           {N, IC, OC}, NOSCALAR, run_matmul_nobias};
    }
    /* attention: one tile, several query and key tiles (the cpu backend's
     * are 64 wide), head sizes padded to 16 (4, 12, 8, 20) and not (64) */
    static const int shapes[5][4] = {{2, 7, 12, 3}, {2, 37, 24, 2}, {1, 150, 32, 4}, {2, 70, 60, 3}, {1, 130, 128, 2}};
    static const char *const names[5] = {"attention T=7", "attention T=37", "attention T=150", "attention T=70 hs=20",
                                         "attention T=130 hs=64"};
    for (int s = 0; s < 5; s++) {
        const int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], NH = shapes[s][3];
        size_t n3 = (size_t)B * T * 3 * C, nn = (size_t)B * T * C, nl = (size_t)B * NH * T;
        c[n++] = (op_case){names[s], {LMS_OP_ATTENTION_FWD, LMS_OP_ATTENTION_BWD}, 2, 5,
                           {ARG("out", A_OUT, nn, 0, 1e-5), ARG("lse", A_OUT, nl, 0, 1e-5),
                            ARG("qkv", A_IN, n3, 1, 0), ARG("dout", A_IN, nn, 1, 0),
                            ARG("dqkv", A_ACC, n3, 1, 1e-5)},
                           {B, T, C, NH}, NOSCALAR, run_attention};
    }
    {
        int N = 1000;
        c[n++] = (op_case){"gelu", {LMS_OP_GELU_FWD, LMS_OP_GELU_BWD}, 2, 4,
                           {ARG("out", A_OUT, N, 0, 1e-5), ARG("inp", A_IN, N, 3, 0), ARG("dout", A_IN, N, 1, 0),
                            ARG("dinp", A_ACC, N, 1, 1e-5)},
                           {N}, NOSCALAR, run_gelu};
        c[n++] = (op_case){"add", {LMS_OP_ADD}, 1, 3,
                           {ARG("out", A_OUT, N, 0, 0), ARG("a", A_IN, N, 1, 0), ARG("b", A_IN, N, 1, 0)},
                           {N}, NOSCALAR, run_add};
        c[n++] = (op_case){"accumulate", {LMS_OP_ACCUMULATE}, 1, 2,
                           {ARG("dst", A_ACC, N, 1, 0), ARG("src", A_IN, N, 1, 0)}, {N}, NOSCALAR, run_accumulate};
        c[n++] = (op_case){"scale", {LMS_OP_SCALE}, 1, 1, {ARG("x", A_ACC, N, 1, 0)}, {N}, NOSCALAR, run_scale};
        c[n++] = (op_case){"sum", {LMS_OP_SUM}, 1, 1, {ARG("x", A_IN, N, 1, 0)}, {N}, 1e-12, run_sum};
    }
    { /* the encoder with repeated tokens */
        int B = 3, T = 9, C = 70, V = 11;
        size_t nn = (size_t)B * T * C;
        c[n++] = (op_case){"encoder", {LMS_OP_ENCODER_FWD, LMS_OP_ENCODER_BWD}, 2, 7,
                           {ARG("out", A_OUT, nn, 0, 0), ARG("tok", A_TOK, B * T, (float)V, 0),
                            ARG("wte", A_IN, V * C, 1, 0), ARG("wpe", A_IN, T * C, 1, 0), ARG("dout", A_IN, nn, 1, 0),
                            ARG("dwte", A_ACC, V * C, 1, 1e-6), ARG("dwpe", A_ACC, T * C, 1, 1e-6)},
                           {B, T, C}, NOSCALAR, run_encoder};
    }
    { /* cross-entropy over a padded vocabulary */
        int N = 9, V = 100, Vp = 128;
        c[n++] = (op_case){"xent", {LMS_OP_XENT_FWD, LMS_OP_XENT_BWD}, 2, 5,
                           {ARG("losses", A_OUT, N, 0, 1e-5), ARG("lse", A_OUT, N, 0, 1e-5),
                            ARG("logits", A_IN, N * Vp, 2, 0), ARG("targets", A_TOK, N, (float)V, 0),
                            ARG("dlogits", A_OUT, N * Vp, 0, 1e-5)},
                           {N, V, Vp}, NOSCALAR, run_xent};
        c[n++] = (op_case){"xent, dlogits over the logits", {LMS_OP_XENT_FWD, LMS_OP_XENT_BWD}, 2, 4,
                           {ARG("losses", A_OUT, N, 0, 1e-5), ARG("lse", A_OUT, N, 0, 1e-5),
                            ARG("logits", A_ACC, N * Vp, 2, 1e-5), ARG("targets", A_TOK, N, (float)V, 0)},
                           {N, V, Vp}, NOSCALAR, run_xent_in_place};
        c[n++] = (op_case){"xent_fused (dlogits over the logits)", {LMS_OP_XENT_FUSED}, 1, 4,
                           {ARG("losses", A_OUT, N, 0, 1e-5), ARG("lse", A_OUT, N, 0, 1e-5),
                            ARG("logits", A_ACC, N * Vp, 2, 1e-5), ARG("targets", A_TOK, N, (float)V, 0)},
                           {N, V, Vp}, NOSCALAR, run_xent_fused};
        /* a vocabulary-parallel rank's columns: about half the targets are outside [0, V) */
        c[n++] = (op_case){"xent_bwd, targets outside the columns", {LMS_OP_XENT_BWD}, 1, 4,
                           {ARG("logits", A_IN, N * Vp, 2, 0), ARG("lse", A_IN, N, 1, 0),
                            ARG("targets", A_TOK, N, (float)(2 * V), 0), ARG("dlogits", A_OUT, N * Vp, 0, 1e-5)},
                           {N, V, Vp}, NOSCALAR, run_xent_bwd_outside};
    }
    { /* the optimizer ops over more than one block of the parallel sum */
        int N = 200003;
        c[n++] = (op_case){"sumsq", {LMS_OP_SUMSQ}, 1, 1, {ARG("x", A_IN, N, 1, 0)}, {N}, 1e-12, run_sumsq};
        c[n++] = (op_case){"adamw", {LMS_OP_ADAMW}, 1, 4,
                           {ARG("p", A_ACC, N, 1, 1e-6), ARG("g", A_IN, N, 1, 0), ARG("m", A_ACC, N, 0.1f, 1e-6),
                            ARG("v", A_POS, N, 0.1f, 1e-6)},
                           {N}, NOSCALAR, run_adamw};
    }
    return n;
}

/* Host values of argument k of case ci: the same for every backend. */
static void *make_input(const op_arg *a, int ci, int k) {
    uint64_t key = lms_rng_key(1000 + (uint64_t)ci * 16 + (uint64_t)k, a->name);
    if (a->kind == A_TOK) {
        int32_t *t = lms_alloc(a->n * sizeof(int32_t));
        for (size_t i = 0; i < a->n; i++) t[i] = (int32_t)(lms_rng_u64(key, i) % (uint64_t)a->scale);
        return t;
    }
    float *x = lms_alloc(a->n * sizeof(float));
    for (size_t i = 0; i < a->n; i++) {
        float r = lms_rng_normal(key, i);
        x[i] = a->kind == A_POS ? a->scale * r * r : a->kind == A_OUT ? 7.0f : (a->scale ? a->scale : 1) * r;
    }
    return x; /* outputs start at 7: an element a backend forgets to write shows */
}

static size_t arg_bytes(const op_arg *a) { return a->n * (a->kind == A_TOK ? sizeof(int32_t) : sizeof(float)); }

/* Runs case ci on be through its own buffers; *out[k] gets every argument
 * back on the host. */
static lms_status run_on(lms_backend *be, const op_case *c, int ci, void **out, double *scalar) {
    lms_buffer buf[MAX_ARGS] = {{0}};
    void *dev[MAX_ARGS] = {0};
    lms_status st = LMS_OK;
    for (int k = 0; k < c->nargs; k++) {
        out[k] = make_input(&c->a[k], ci, k);
        LMS_TRY(be->i->buffer_alloc(be, arg_bytes(&c->a[k]), c->a[k].name, &buf[k]));
        LMS_TRY(be->i->copy(be, buf[k].data, out[k], arg_bytes(&c->a[k]), LMS_COPY_H2D));
        dev[k] = buf[k].data;
    }
    LMS_TRY(c->run(be, dev, c->d, scalar));
    for (int k = 0; k < c->nargs; k++) LMS_TRY(be->i->copy(be, out[k], buf[k].data, arg_bytes(&c->a[k]), LMS_COPY_D2H));
    LMS_TRY(be->i->synchronize(be));
fail:
    for (int k = 0; k < c->nargs; k++) be->i->buffer_free(be, &buf[k]);
    return st;
}

static int backend_vs_ref(const lms_backend_i *bi) {
    lms_backend be = {bi, NULL};
    op_case cases[32];
    const int nc = make_cases(cases);
    int ran = 0;
    for (int ci = 0; ci < nc; ci++) {
        const op_case *c = &cases[ci];
        int ok = 1;
        for (int o = 0; o < c->nops && ok; o++) ok = lms_backend_supports(&be, c->ops[o], LMS_DT_F32) == LMS_OK;
        if (!ok) {
            printf("  %-5s %-46s not supported: %s\n", bi->name, c->name, lms_last_error());
            CHECK(bi != &lms_backend_ref_i, "the reference must run every case (%s)", c->name);
            continue;
        }
        void *want[MAX_ARGS] = {0}, *got[MAX_ARGS] = {0};
        double ws = 0, gs = 0, worst = 0;
        CHECK(run_on(&REF, c, ci, want, &ws) == LMS_OK, "[ref] %s: %s", c->name, lms_last_error());
        lms_status st = run_on(&be, c, ci, got, &gs);
        CHECK(st == LMS_OK, "[%s] %s: %s", bi->name, c->name, lms_last_error());
        for (int k = 0; st == LMS_OK && k < c->nargs; k++) {
            const op_arg *a = &c->a[k];
            if (a->kind != A_OUT && a->kind != A_ACC && a->kind != A_POS) continue;
            if (a->kind == A_POS && a->tol == 0) continue;
            double e = rel_err(got[k], want[k], a->n, 1e-6);
            if (e > worst) worst = e;
            if (a->tol == 0)
                CHECK(memcmp(got[k], want[k], arg_bytes(a)) == 0, "[%s] %s: %s differs from ref (must be identical)",
                      bi->name, c->name, a->name);
            else
                CHECK(e < a->tol, "[%s] %s: %s rel err %g vs ref (bound %g)", bi->name, c->name, a->name, e, a->tol);
        }
        if (st == LMS_OK && c->scalar_tol >= 0) {
            double e = fabs(gs - ws) / fabs(ws);
            if (e > worst) worst = e;
            CHECK(e < c->scalar_tol, "[%s] %s: %.17g vs ref %.17g", bi->name, c->name, gs, ws);
        }
        printf("  %-5s %-46s worst rel err vs ref %.2e\n", bi->name, c->name, worst);
        for (int k = 0; k < c->nargs; k++) {
            lms_free(want[k]);
            lms_free(got[k]);
        }
        ran++;
    }
    return ran;
}

/* The device functions: buffers, memset, the three copies, events. */
static void device_functions(const lms_backend_i *bi) {
    lms_backend be = {bi, NULL};
    lms_buffer a = {0}, b = {0};
    const size_t n = 1000;
    unsigned char host[1000], back[1000];
    CHECK(bi->buffer_alloc(&be, n, "test buffer a", &a) == LMS_OK && a.data && a.size == n, "[%s] alloc", bi->name);
    CHECK(bi->buffer_alloc(&be, n, "test buffer b", &b) == LMS_OK && b.data, "[%s] alloc", bi->name);
    if (!a.data || !b.data) return;
    CHECK(bi->memset(&be, a.data, 0x5A, n) == LMS_OK, "[%s] memset", bi->name);
    CHECK(bi->copy(&be, back, a.data, n, LMS_COPY_D2H) == LMS_OK, "[%s] D2H", bi->name);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += back[i] != 0x5A;
    CHECK(bad == 0, "[%s] memset then D2H: %d bytes wrong", bi->name, bad);
    for (size_t i = 0; i < n; i++) host[i] = (unsigned char)(i * 7 + 3);
    CHECK(bi->copy(&be, a.data, host, n, LMS_COPY_H2D) == LMS_OK, "[%s] H2D", bi->name);
    CHECK(bi->copy(&be, b.data, a.data, n, LMS_COPY_D2D) == LMS_OK, "[%s] D2D", bi->name);
    lms_event *ev = NULL;
    CHECK(bi->event_new(&be, &ev) == LMS_OK && ev, "[%s] event", bi->name);
    CHECK(bi->event_record(&be, ev) == LMS_OK && bi->event_sync(&be, ev) == LMS_OK, "[%s] record, sync", bi->name);
    bi->event_free(&be, ev);
    memset(back, 0, n);
    CHECK(bi->copy(&be, back, b.data, n, LMS_COPY_D2H) == LMS_OK && bi->synchronize(&be) == LMS_OK, "[%s] sync",
          bi->name);
    CHECK(memcmp(back, host, n) == 0, "[%s] H2D, D2D, D2H round trip", bi->name);
    bi->buffer_free(&be, &a);
    bi->buffer_free(&be, &b);
    CHECK(a.data == NULL, "[%s] free clears", bi->name);
    bi->buffer_free(&be, &a); /* twice: a no-op */
    CHECK(bi->buffer_alloc(&be, (size_t)1 << 62, "an impossible buffer", &a) == LMS_ERR_OOM &&
              strstr(lms_last_error(), "an impossible buffer"),
          "[%s] a failed allocation is LMS_ERR_OOM naming the buffer: %s", bi->name, lms_last_error());
}

/* Unsupported dtypes and missing ops are clear errors. */
static void support_checks(void) {
    for (int k = 0; lms_backend_registered(k); k++) {
        lms_backend be = {lms_backend_registered(k), NULL};
        for (int op = 0; op < LMS_OP_COUNT; op++)
            CHECK(lms_backend_supports(&be, (lms_op)op, LMS_DT_F32) == LMS_OK, "[%s] %s on fp32: %s", be.i->name,
                  lms_op_name((lms_op)op), lms_last_error());
    }
    lms_backend cpu = {&lms_backend_cpu_i, NULL};
    CHECK(lms_backend_supports(&cpu, LMS_OP_MATMUL_FWD, LMS_DT_BF16) == LMS_ERR_UNSUPPORTED &&
              strstr(lms_last_error(), "matmul_fwd") && strstr(lms_last_error(), "bf16") &&
              strstr(lms_last_error(), "takes fp32"),
          "bf16 matmul is refused with a message: %s", lms_last_error());
    lms_backend_i partial = lms_backend_cpu_i; /* a backend still missing an op */
    partial.name = "partial";
    partial.attention_bwd = NULL;
    lms_backend pb = {&partial, NULL};
    CHECK(lms_backend_supports(&pb, LMS_OP_ATTENTION_BWD, LMS_DT_F32) == LMS_ERR_UNSUPPORTED &&
              strstr(lms_last_error(), "attention_bwd") && strstr(lms_last_error(), "partial"),
          "a missing op is refused with a message: %s", lms_last_error());
    CHECK(lms_backend_supports(&pb, LMS_OP_ATTENTION_FWD, LMS_DT_F32) == LMS_OK, "its other ops still work");
    CHECK(!strcmp(lms_op_name(LMS_OP_ADAMW), "adamw") && !strcmp(lms_op_name(LMS_OP_COUNT), "?"), "op names");
}

/* lms_vexpf against libm over the range the kernels use, and NaN in, NaN
 * out (the NaN used to reach a float-to-int conversion: undefined
 * behaviour, caught by -fsanitize=float-cast-overflow in the sanitizer
 * build) */
/* Decoding attention on backend i: row t of a causal attention over
 * (1, T) computed by attention_fwd (the reference the training path runs)
 * equals attention_decode of that row's query against the cache of rows
 * 0..t, for every t, with the rows of K and V at a stride wider than C as
 * in the KV cache. */
static void decode_vs_full(const lms_backend_i *bi) {
    lms_backend be = {bi, NULL};
    const int T = 19, C = 24, NH = 3, ld = 40;
    float *qkv = randn((size_t)T * 3 * C, 91, 1.0f), *out = zeros((size_t)T * C), *lse = zeros((size_t)NH * T);
    float *kc = zeros((size_t)T * ld), *vc = zeros((size_t)T * ld), *o = zeros(C), *sc = zeros(T);
    CHECK(bi->attention_fwd(&be, out, lse, qkv, 1, T, C, NH) == LMS_OK, "%s: attention_fwd", bi->name);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        memcpy(kc + (size_t)t * ld, qkv + (size_t)t * 3 * C + C, sizeof(float) * C);
        memcpy(vc + (size_t)t * ld, qkv + (size_t)t * 3 * C + 2 * C, sizeof(float) * C);
        CHECK(bi->attention_decode(&be, o, qkv + (size_t)t * 3 * C, kc, vc, t, C, NH, (size_t)ld, sc) == LMS_OK,
              "%s: attention_decode at t=%d", bi->name, t);
        double e = rel_err(o, out + (size_t)t * C, C, 1e-6);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "%s: attention_decode vs attention_fwd's rows: rel err %.3g", bi->name, worst);
}

/* Backend i's xent_fused gives the bits of its xent_fwd then xent_bwd
 * (dlogits over the logits): losses, lse and every dlogit, at GPT-2's
 * vocabulary (V = 50257 of Vp = 50304: the vector loops' remainders and the
 * zero padding) and a small one, with the trainer's dloss and an fp16 loss
 * scale's. Training relies on this: golden runs stay bit-identical. */
static void xent_fused_vs_pair(const lms_backend_i *bi) {
    static const int shapes[2][3] = {{7, 50257, 50304}, {5, 100, 128}};
    static const float dl[2] = {1.0f / 1024.0f, 32768.0f / 3072.0f};
    lms_backend be = {bi, NULL};
    for (int s = 0; s < 2; s++) {
        const int N = shapes[s][0], V = shapes[s][1], Vp = shapes[s][2];
        const size_t n = (size_t)N * Vp;
        int32_t tg[7];
        for (int i = 0; i < N; i++) tg[i] = (int32_t)(lms_rng_u64(60 + s, i) % (uint64_t)V);
        tg[0] = V - 1; /* the last real column */
        float *x = randn(n, 61 + s, 3.0f), *ref = tracked(n), *got = tracked(n);
        float *l0 = zeros(N), *e0 = zeros(N), *l1 = zeros(N), *e1 = zeros(N);
        for (int i = 0; i < N; i++)
            for (int j = V; j < Vp; j++) x[(size_t)i * Vp + j] = 5.0f; /* padding the ops must not read */
        memcpy(ref, x, n * sizeof(float));
        memcpy(got, x, n * sizeof(float));
        int ok = bi->xent_fwd(&be, l0, e0, ref, tg, N, V, Vp) == LMS_OK &&
                 bi->xent_bwd(&be, ref, ref, e0, tg, dl[s], N, V, Vp) == LMS_OK;
        ok &= bi->xent_fused(&be, l1, e1, got, tg, dl[s], N, V, Vp) == LMS_OK;
        CHECK(ok, "[%s] xent ops run: %s", bi->name, lms_last_error());
        size_t bad = 0;
        for (size_t k = 0; k < n; k++) bad += memcmp(&ref[k], &got[k], sizeof(float)) != 0;
        CHECK(bad == 0 && !memcmp(l0, l1, N * sizeof(float)) && !memcmp(e0, e1, N * sizeof(float)),
              "[%s] xent_fused (N=%d V=%d Vp=%d) is bit-identical to xent_fwd + xent_bwd: %zu dlogits differ, "
              "losses %s, lse %s",
              bi->name, N, V, Vp, bad, memcmp(l0, l1, N * sizeof(float)) ? "differ" : "equal",
              memcmp(e0, e1, N * sizeof(float)) ? "differ" : "equal");
        double pad = 0;
        for (int i = 0; i < N; i++)
            for (int j = V; j < Vp; j++) pad += fabs(got[(size_t)i * Vp + j]);
        CHECK(pad == 0, "[%s] xent_fused zeroes the padded columns", bi->name);
    }
}

/* With AVX2, the cpu backend's cross-entropy sums a row's exponentials in
 * a fixed order (cpu.c: the order of GCC's vectorisation of the loops it
 * replaced, which golden runs were recorded with): element j into lane
 * j mod 8 below V & ~7, the rest into lane 0 one by one, then the lanes in
 * order. Written out here in scalar code (whose float results no compiler
 * may reorder), it must give the backend's bits: losses, lse and dlogits,
 * for vocabularies below, at and off the vector width. */
#ifdef LMS_HAVE_VEXPF8
static void lanes_fwd(const float *x, int target, int V, float *lse, float *loss) {
    const int V8 = V & ~7;
    float lane[8], mx = -INFINITY, sum = 0;
    for (int k = 0; k < 8; k++) lane[k] = -INFINITY;
    for (int j = 0; j < V; j++) {
        float *a = &lane[j < V8 ? j % 8 : 0];
        *a = x[j] > *a ? x[j] : *a;
    }
    for (int k = 0; k < 8; k++) mx = lane[k] > mx ? lane[k] : mx;
    for (int k = 0; k < 8; k++) lane[k] = 0;
    for (int j = 0; j < V; j++) lane[j < V8 ? j % 8 : 0] += lms_vexpf(x[j] - mx);
    for (int k = 0; k < 8; k++) sum += lane[k];
    *lse = mx + logf(sum);
    *loss = *lse - x[target];
}
static void lanes_bwd(float *d, const float *x, float lse, int target, float dloss, int V, int Vp) {
    for (int j = 0; j < Vp; j++) d[j] = j < V ? lms_vexpf(x[j] - lse) * dloss : 0.0f;
    d[target] -= dloss;
}
#endif
static void xent_cpu_order(void) {
#ifdef LMS_HAVE_VEXPF8
    static const int shapes[6][2] = {{50257, 50304}, {5, 16}, {8, 16}, {13, 16}, {100, 128}, {1031, 1040}};
    lms_backend be = {&lms_backend_cpu_i, NULL};
    const int N = 6;
    const float dloss = 1.0f / 3072.0f;
    for (int s = 0; s < 6; s++) {
        const int V = shapes[s][0], Vp = shapes[s][1];
        const size_t n = (size_t)N * Vp;
        int32_t tg[6];
        for (int i = 0; i < N; i++) tg[i] = (int32_t)(lms_rng_u64(70 + s, i) % (uint64_t)V);
        float *x = randn(n, 71 + s, 4.0f), *want = tracked(n), *got = tracked(n), *fused = tracked(n);
        float *lw = zeros(N), *ew = zeros(N), *lg = zeros(N), *eg = zeros(N), *lf = zeros(N), *ef = zeros(N);
        x[(size_t)(N - 1) * Vp + V - 1] = 30.0f; /* the last row's maximum in the remainder */
        for (int i = 0; i < N; i++) {
            lanes_fwd(x + (size_t)i * Vp, tg[i], V, &ew[i], &lw[i]);
            lanes_bwd(want + (size_t)i * Vp, x + (size_t)i * Vp, ew[i], tg[i], dloss, V, Vp);
        }
        memcpy(fused, x, n * sizeof(float));
        int ok = be.i->xent_fwd(&be, lg, eg, x, tg, N, V, Vp) == LMS_OK &&
                 be.i->xent_bwd(&be, got, x, eg, tg, dloss, N, V, Vp) == LMS_OK &&
                 be.i->xent_fused(&be, lf, ef, fused, tg, dloss, N, V, Vp) == LMS_OK;
        CHECK(ok, "cpu xent ops run");
        CHECK(!memcmp(lw, lg, N * 4) && !memcmp(ew, eg, N * 4) && !memcmp(want, got, n * 4),
              "cpu xent_fwd/xent_bwd (V=%d) sum in the documented order: losses %s, lse %s, dlogits %s", V,
              memcmp(lw, lg, N * 4) ? "differ" : "equal", memcmp(ew, eg, N * 4) ? "differ" : "equal",
              memcmp(want, got, n * 4) ? "differ" : "equal");
        CHECK(!memcmp(lw, lf, N * 4) && !memcmp(ew, ef, N * 4) && !memcmp(want, fused, n * 4),
              "cpu xent_fused (V=%d) sums in the documented order", V);
    }
#endif
}

/* lms_vexpf8 has lms_vexpf's bits in every lane: inputs spread over all
 * 2^32 patterns (NaN, infinities, subnormals, both signs) and dense over
 * the softmax range [-90, 1]. */
static void test_vexpf8(void) {
#ifdef LMS_HAVE_VEXPF8
    enum { M = 1 << 16 };
    static float x[M], want[M], got[M];
    size_t bad = 0, total = 0;
    for (int pass = 0; pass < 40; pass++) {
        for (int i = 0; i < M; i++) {
            uint32_t u = (uint32_t)((uint64_t)(pass * M + i) * 1637u); /* 1637 is odd: 40·2^16 distinct patterns */
            memcpy(&x[i], &u, 4);
            if (pass % 2) x[i] = -90.0f + 91.0f * (float)i / (float)M + 1e-3f * (float)pass;
        }
        for (int i = 0; i < M; i++) want[i] = lms_vexpf(x[i]);
        for (int i = 0; i < M; i += 8) _mm256_storeu_ps(got + i, lms_vexpf8(_mm256_loadu_ps(x + i)));
        for (int i = 0; i < M; i++) bad += memcmp(&want[i], &got[i], 4) != 0;
        total += M;
    }
    CHECK(bad == 0, "lms_vexpf8 differs from lms_vexpf in %zu of %zu inputs", bad, total);
#else
    printf("  lms_vexpf8: not built (no AVX2/FMA)\n");
#endif
}

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
    test_vexpf8();
    xent_cpu_order();
    fd_layernorm();
    fd_matmul();
    fd_attention(2, 7, 12, 3);
    fd_attention(2, 37, 24, 2);
    fd_gelu();
    fd_encoder();
    fd_xent();
    ref_adamw_formula();
    support_checks();
    int nb = 0;
    for (int k = 0; lms_backend_registered(k); k++, nb++) {
        device_functions(lms_backend_registered(k));
        decode_vs_full(lms_backend_registered(k));
        adamw_position_independent(lms_backend_registered(k));
        xent_fused_vs_pair(lms_backend_registered(k));
        int ran = backend_vs_ref(lms_backend_registered(k));
        printf("backend %s: %d cases against ref\n", lms_backend_registered(k)->name, ran);
    }
    CHECK(nb >= 2 && lms_backend_registered(0) == &lms_backend_ref_i, "ref and cpu are registered, ref first");
    free_bufs();
    return test_summary("test_ops");
}
