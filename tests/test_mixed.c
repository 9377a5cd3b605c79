/* Mixed precision (docs/mixed-precision.md): the bf16 / fp16 compute path
 * (backend.h, lms_lowp) and fp16 loss scaling in the trainer.
 *
 * 1. Ops: every op the wrapper rounds, on inputs that are bf16 / fp16
 *    values, on the cpu backend against the ref backend running the same
 *    rounding: every output is a value of the storage type and the two
 *    differ by at most one unit in its last place (their fp32 arithmetic
 *    differs in order); against the fp32 op on the same inputs, by at most
 *    the storage rounding (half a unit, relative to the largest output).
 * 2. The model: loss and gradients of a forward + backward in bf16 and fp16
 *    against fp32 (same weights) within the tolerances stated below.
 * 3. The trainer, alone and under mpirun (2 ranks), ZeRO 0..3: an inf (and
 *    a NaN) injected into one rank's gradients (LMSCALE_FAULT) skips that
 *    step on every rank, halves the scale and leaves the fp32 master
 *    weights bit-identical; an overflow at the minimum scale stops with
 *    LMS_ERR_NUMERIC; the scale doubles after the window. */
#include "check.h"
#include "lmscale/train.h"

#include <math.h>
#include <string.h>

static const lms_dtype DTS[] = {LMS_DT_BF16, LMS_DT_F16};
/* one unit in the last place, relative: 2^-7 (bf16, 8 significant bits), 2^-10 (fp16, 11) */
static double ulp_rel(lms_dtype dt) { return dt == LMS_DT_BF16 ? 1.0 / 128 : 1.0 / 1024; }

static void fill(float *x, size_t n, const char *what, float amp, lms_dtype dt) {
    uint64_t key = lms_rng_key(5, what);
    for (size_t i = 0; i < n; i++) x[i] = amp * (2.0f * (float)(lms_rng_u64(key, i) >> 11) / 9007199254740992.0f - 1);
    lms_round_to(x, n, dt);
}

/* worst |a-b| in units of the dtype's last place at max(|a|,|b|) (subnormal floor), and whether all of a are
 * values of dt */
static double ulps(const float *a, const float *b, size_t n, lms_dtype dt, int *representable) {
    double worst = 0, floor = dt == LMS_DT_BF16 ? 1e-38 : 6e-8;
    *representable = 1;
    for (size_t i = 0; i < n; i++) {
        float r = a[i];
        lms_round_to(&r, 1, dt);
        if (r != a[i]) *representable = 0;
        double m = fmax(fabs(a[i]), fabs(b[i]));
        double u = fmax(m * ulp_rel(dt), floor);
        worst = fmax(worst, fabs((double)a[i] - b[i]) / u);
    }
    return worst;
}
static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}
static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

enum { B = 2, T = 16, C = 32, NH = 2, N = B * T, V = 50, VP = 64 };

/* Runs op k on backend be into out (zeroed first); returns the number of output floats. */
static size_t run_op(int k, lms_backend *be, float *out, const float *in0, const float *in1, const float *w,
                     const float *bias, const int32_t *tgt, float *scratch) {
    lms_status st = LMS_OK;
    size_t n = 0;
    memset(out, 0, sizeof(float) * N * 3 * C);
    switch (k) {
    case 0: n = (size_t)N * 3 * C; st = be->i->matmul_fwd(be, out, in0, w, bias, N, C, 3 * C); break;
    case 1: n = (size_t)N * C; st = be->i->matmul_bwd(be, out, scratch, NULL, in1, in0, w, N, C, 3 * C); break;
    case 2: n = (size_t)N * C; st = be->i->layernorm_fwd(be, out, scratch, scratch + N, in0, w, bias, N, C); break;
    case 3: /* backward from saved statistics (fp32) */
        n = (size_t)N * C;
        st = be->i->layernorm_fwd(be, scratch + 4 * N, scratch, scratch + N, in0, w, bias, N, C);
        if (st == LMS_OK)
            st = be->i->layernorm_bwd(be, out, scratch + 8 * N * C, scratch + 9 * N * C, in1, in0, w, scratch,
                                      scratch + N, N, C);
        break;
    case 4: n = (size_t)N * C; st = be->i->attention_fwd(be, out, scratch, in0, B, T, C, NH); break;
    case 5:
        n = (size_t)N * 3 * C;
        st = be->i->attention_fwd(be, scratch + 4 * N, scratch, in0, B, T, C, NH);
        if (st == LMS_OK) st = be->i->attention_bwd(be, out, in1, in0, scratch + 4 * N, scratch, B, T, C, NH);
        break;
    case 6: n = (size_t)N * 4 * C / 2; st = be->i->gelu_fwd(be, out, in0, n); break;
    case 7: n = (size_t)N * 4 * C / 2; st = be->i->gelu_bwd(be, out, in0, in1, n); break;
    case 8: n = (size_t)N * C; st = be->i->add(be, out, in0, in1, n); break;
    case 9: /* softmax cross-entropy backward over fp32 log-sum-exp */
        n = (size_t)N * VP;
        st = be->i->xent_fwd(be, scratch, scratch + N, in0, tgt, N, V, VP);
        if (st == LMS_OK) st = be->i->xent_bwd(be, out, in0, scratch + N, tgt, 1.0f / N, N, V, VP);
        break;
    }
    CHECK(st == LMS_OK, "op %d on %s: %s", k, be->i->name, lms_last_error());
    return n;
}
static const char *OPN[] = {"matmul_fwd", "matmul_bwd (dinp)", "layernorm_fwd", "layernorm_bwd (dinp)",
                            "attention_fwd", "attention_bwd", "gelu_fwd", "gelu_bwd", "add", "xent_bwd"};

/* lms_round_to (vectorised; F16C where the CPU has it) against the scalar conversions of core (checked
 * against PyTorch in test_tensor): every bit pattern class, bit for bit (NaN as NaN) */
static void test_round(void) {
    enum { M = 200000 };
    float *x = malloc(M * 4), *y = malloc(M * 4);
    uint64_t key = lms_rng_key(1, "round bits");
    for (int i = 0; i < M; i++) {
        uint32_t u = (uint32_t)lms_rng_u64(key, (uint64_t)i);
        if (i < 16) { /* edges: 65504, 65519, 65520, inf, smallest subnormals, NaN, -0 */
            const uint32_t e[16] = {0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x7F800000u, 0x33800000u, 0x33000000u,
                                    0x33000001u, 0x7FC00000u, 0x80000000u, 0x387FE000u, 0x38800000u, 0x3F808000u,
                                    0x3F818000u, 0x7F7FFFFFu, 0xFF800000u, 0x00000001u};
            u = e[i];
        }
        memcpy(&x[i], &u, 4);
    }
    for (int d = 0; d < 2; d++) {
        memcpy(y, x, M * 4);
        lms_round_to(y, M, DTS[d]);
        int bad = 0;
        for (int i = 0; i < M; i++) {
            float want = DTS[d] == LMS_DT_BF16 ? lms_bf16_to_fp32(lms_fp32_to_bf16(x[i]))
                                               : lms_fp16_to_fp32(lms_fp32_to_fp16(x[i]));
            if (isnan(want) ? !isnan(y[i]) : memcmp(&want, &y[i], 4) != 0) bad++;
        }
        CHECK(bad == 0, "[%s] lms_round_to differs from the scalar conversion in %d of %d values",
              lms_dtype_name(DTS[d]), bad, M);
        printf("[%s] lms_round_to vs the scalar conversion: %d of %d values differ\n", lms_dtype_name(DTS[d]), bad, M);
    }
    free(x);
    free(y);
}

static void test_ops(void) {
    const size_t big = (size_t)N * 3 * C * 12 + (size_t)N * VP * 2;
    float *in0 = calloc(big, 4), *in1 = calloc(big, 4), *w = calloc(big, 4), *bias = calloc(4 * C, 4);
    float *o_cpu = calloc(big, 4), *o_ref = calloc(big, 4), *o_32 = calloc(big, 4), *scr = calloc(big, 4);
    int32_t tgt[N];
    for (int i = 0; i < N; i++) tgt[i] = (i * 7) % V;
    lms_backend ref, cpu;
    lms_backend_init(&ref, "ref");
    lms_backend_init(&cpu, "cpu");
    for (int d = 0; d < 2; d++) {
        lms_dtype dt = DTS[d];
        lms_backend lref, lcpu;
        lms_lowp *wr, *wc;
        CHECK(lms_lowp_init(&wr, &ref, dt, &lref) == LMS_OK && lms_lowp_init(&wc, &cpu, dt, &lcpu) == LMS_OK, "lowp");
        for (int k = 0; k < 10; k++) {
            fill(in0, (size_t)N * VP, "in0", k == 9 ? 4.0f : 1.0f, dt);
            fill(in1, (size_t)N * 3 * C, "in1", 1.0f, dt);
            fill(w, (size_t)3 * C * C, "w", 0.2f, dt);
            fill(bias, 3 * C, "bias", 0.1f, dt);
            size_t n = run_op(k, &lcpu, o_cpu, in0, in1, w, bias, tgt, scr);
            run_op(k, &lref, o_ref, in0, in1, w, bias, tgt, scr);
            run_op(k, &ref, o_32, in0, in1, w, bias, tgt, scr);
            int rep_c, rep_r;
            double u = ulps(o_cpu, o_ref, n, dt, &rep_c);
            ulps(o_ref, o_cpu, n, dt, &rep_r);
            double vs32 = max_diff(o_ref, o_32, n) / fmax(max_abs(o_32, n), 1e-30);
            CHECK(rep_c && rep_r, "[%s] %s: outputs are not all %s values", lms_dtype_name(dt), OPN[k],
                  lms_dtype_name(dt));
            CHECK(u <= 1.0, "[%s] %s: cpu vs ref (same rounding) differ by %.2f units in the last place", lms_dtype_name(dt),
                  OPN[k], u);
            CHECK(vs32 <= 0.5 * ulp_rel(dt), "[%s] %s: vs fp32 %.3g relative to the largest output (> %.3g)",
                  lms_dtype_name(dt), OPN[k], vs32, 0.5 * ulp_rel(dt));
            printf("[%s] %-21s cpu vs ref (same rounding): %.2f ulp; ref vs fp32: %.2e of max (bound %.2e)\n",
                   lms_dtype_name(dt), OPN[k], u, vs32, 0.5 * ulp_rel(dt));
        }
        lms_lowp_free(wr);
        lms_lowp_free(wc);
    }
    free(in0); free(in1); free(w); free(bias); free(o_cpu); free(o_ref); free(o_32); free(scr);
}

/* ---- 2. the model against fp32 ---- */

static void model_pass(lms_backend *be, const lms_gpt_config *cfg, lms_dtype dt, float *loss, float *grads) {
    lms_gpt m;
    lms_gpt_acts a;
    lms_gpt_init(&m, cfg, 4, 32, 1);
    lms_gpt_acts_init(&a, cfg, 4, 32, 1);
    lms_gpt_init_params(&m, 9);
    if (dt != LMS_DT_F32) lms_round_to(m.params, m.num_params, dt); /* the compute copy */
    int32_t x[128], y[128];
    uint64_t key = lms_rng_key(3, "model tokens");
    for (int i = 0; i < 128; i++) x[i] = (int32_t)(lms_rng_u64(key, i) % cfg->V), y[i] = (x[i] + 1) % cfg->V;
    lms_backend lb = *be;
    lms_lowp *w = NULL;
    if (dt != LMS_DT_F32) lms_lowp_init(&w, be, dt, &lb);
    CHECK(lms_gpt_forward(&m, &lb, &a, x, y, 4, 32, loss) == LMS_OK, "forward");
    CHECK(lms_gpt_backward(&m, &lb, &a, x, y, 1.0f / 128, NULL, NULL) == LMS_OK, "backward");
    memcpy(grads, m.grads, m.num_params * sizeof(float));
    lms_lowp_free(w);
    lms_gpt_acts_free(&a);
    lms_gpt_free(&m);
}

static void test_model(void) {
    lms_gpt_config cfg = {2, 2, 64, 32, 100, 0, 0};
    lms_gpt_config_validate(&cfg);
    lms_backend be;
    lms_backend_init(&be, "cpu");
    size_t np;
    lms_tensor_view *views;
    int nv;
    lms_gpt_layout(&cfg, &views, &nv, &np);
    free(views);
    float *g32 = malloc(np * 4), *g = malloc(np * 4), l32, l;
    model_pass(&be, &cfg, LMS_DT_F32, &l32, g32);
    for (int d = 0; d < 2; d++) {
        model_pass(&be, &cfg, DTS[d], &l, g);
        double dn = 0, nn = 0, dot = 0, gg = 0;
        for (size_t i = 0; i < np; i++) {
            dn += ((double)g[i] - g32[i]) * ((double)g[i] - g32[i]);
            nn += (double)g32[i] * g32[i];
            dot += (double)g[i] * g32[i];
            gg += (double)g[i] * g[i];
        }
        const double rel = sqrt(dn / nn), cosv = dot / sqrt(nn * gg), lrel = fabs(l - l32) / l32;
        /* stated tolerances: loss within 1 % (bf16) / 0.1 % (fp16), gradients within 10 % / 1 % in norm */
        const double tl = DTS[d] == LMS_DT_BF16 ? 1e-2 : 1e-3, tg = DTS[d] == LMS_DT_BF16 ? 0.1 : 0.01;
        CHECK(lrel < tl && rel < tg, "[%s] model vs fp32: loss %.3g relative (< %g), gradients %.3g (< %g)",
              lms_dtype_name(DTS[d]), lrel, tl, rel, tg);
        printf("[%s] model vs fp32: loss %.6f vs %.6f (%.2e relative, bound %g), gradients %.2e relative in norm "
               "(bound %g), cosine %.6f\n", lms_dtype_name(DTS[d]), l, l32, lrel, tl, rel, tg, cosv);
    }
    free(g32);
    free(g);
}

/* ---- 3. loss scaling in the trainer ---- */

enum { TT = 16, G = 8, NTOK = 4000 };
static int32_t g_tok[NTOK];

static lms_status trainer_new(lms_trainer *t, lms_comm *w, int zero, lms_dtype dt, float init, float min) {
    lms_gpt_config cfg = {2, 2, 32, TT, 100, 0, 0};
    lms_gpt_config_validate(&cfg);
    lms_trainer_opts o = {.zero = zero, .bucket_mb = 0.01f, .global_batch = G, .micro_batch = G / w->size / 2,
                          .seq_len = TT, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                          .grad_clip = 1.0f, .dtype = dt, .initial_loss_scale = init, .min_loss_scale = min,
                          .loss_scale_window = 2};
    o.sched = (lms_schedule){LMS_SCHED_CONSTANT, 1e-3f, 1e-3f, 0, 10};
    lms_train_source src = {.seed = 7};
    static lms_backend be;
    lms_backend_init(&be, "cpu");
    return lms_trainer_init(t, &o, &cfg, w, w->size, &be, &src);
}

/* the fp32 master, whole, on every rank */
static float *master(lms_trainer *t) {
    float *p = NULL;
    CHECK(lms_trainer_gather_model(t) == LMS_OK, "gather");
    p = malloc(t->m.num_params * 4);
    memcpy(p, t->m.params, t->m.num_params * 4);
    return p;
}

static void test_overflow_skip(lms_comm *w, int zero, const char *kind) {
    lms_loader ld;
    lms_loader_init(&ld, g_tok, NTOK, TT, LMS_ORDER_RANDOM, 3, "tokens");
    char fault[64];
    const int bad_rank = w->size - 1;
    snprintf(fault, sizeof fault, "%s:rank=%d:step=3", kind, bad_rank);
    /* run 0: 2 steps; run 1: 3 clean steps; run 2: 3 steps, the fault in step 3 (then 1 more step) */
    float *p[3] = {NULL, NULL, NULL};
    float scale[3][4] = {{0}};
    int skipped[3][4] = {{0}}, n[3] = {2, 3, 4};
    size_t np = 0;
    for (int run = 0; run < 3; run++) {
        lms_trainer t;
        if (trainer_new(&t, w, zero, LMS_DT_F16, 1024.0f, 1.0f) != LMS_OK) {
            CHECK(0, "trainer: %s", lms_last_error());
            return;
        }
        for (int s = 0; s < n[run]; s++) {
            if (run == 2 && s == 2) setenv("LMSCALE_FAULT", fault, 1);
            lms_step_result r;
            lms_status st = lms_trainer_step(&t, &ld, s, &r);
            unsetenv("LMSCALE_FAULT");
            CHECK(st == LMS_OK, "step %d: %s", s, lms_last_error());
            scale[run][s] = r.loss_scale;
            skipped[run][s] = r.skipped;
            if (run == 2 && s == 2) break; /* the master right after the skipped step */
        }
        p[run] = master(&t);
        np = t.m.num_params;
        lms_trainer_free(&t);
    }
    const int same = memcmp(p[0], p[2], np * 4) == 0, moved = memcmp(p[0], p[1], np * 4) != 0;
    /* scales: 1024, 1024, x2 after 2 clean steps = 2048 at step 3 */
    CHECK(skipped[2][2] == 1 && skipped[1][2] == 0, "[%d ranks, zero %d, %s on rank %d] step 3 skipped %d (clean "
          "run %d)", w->size, zero, kind, bad_rank, skipped[2][2], skipped[1][2]);
    CHECK(scale[2][2] == 2048 && scale[1][0] == 1024 && scale[1][1] == 1024, "[zero %d] scales %g %g %g", zero,
          scale[1][0], scale[1][1], scale[2][2]);
    CHECK(same, "[%d ranks, zero %d, %s] the master weights changed in the skipped step", w->size, zero, kind);
    CHECK(moved, "[zero %d] a clean step 3 did not change the weights (the comparison would prove nothing)", zero);
    if (w->rank == 0)
        printf("[%d ranks, zero %d] %s in rank %d's gradients at step 3 (scale %g): skipped on this rank %s, "
               "master weights bit-identical to after step 2 %s\n", w->size, zero, kind, bad_rank, scale[2][2],
               skipped[2][2] ? "yes" : "NO", same ? "yes" : "NO");
    for (int k = 0; k < 3; k++) free(p[k]);
}

/* the scale halves after a skip and doubles after the window (2) of clean steps */
static void test_scale_moves(lms_comm *w) {
    lms_loader ld;
    lms_loader_init(&ld, g_tok, NTOK, TT, LMS_ORDER_RANDOM, 3, "tokens");
    lms_trainer t;
    if (trainer_new(&t, w, 0, LMS_DT_F16, 1024.0f, 1.0f) != LMS_OK) return;
    const float want[6] = {1024, 1024, 2048, 1024, 1024, 2048};
    float got[6];
    int ok = 1;
    for (int s = 0; s < 6; s++) {
        if (s == 2) setenv("LMSCALE_FAULT", "inf:rank=0:step=3", 1);
        lms_step_result r;
        CHECK(lms_trainer_step(&t, &ld, s, &r) == LMS_OK, "step");
        unsetenv("LMSCALE_FAULT");
        got[s] = r.loss_scale;
        ok &= got[s] == want[s] && r.skipped == (s == 2);
    }
    CHECK(ok && t.scaler.skipped == 1, "scales %g %g %g %g %g %g, want 1024 1024 2048 (skip) 1024 1024 2048", got[0],
          got[1], got[2], got[3], got[4], got[5]);
    lms_trainer_free(&t);
}

static void test_persistent(lms_comm *w) {
    lms_loader ld;
    lms_loader_init(&ld, g_tok, NTOK, TT, LMS_ORDER_RANDOM, 3, "tokens");
    lms_trainer t;
    if (trainer_new(&t, w, 0, LMS_DT_F16, 1.0f, 1.0f) != LMS_OK) return; /* at the minimum from the start */
    setenv("LMSCALE_FAULT", "nan:rank=0:step=1", 1);
    lms_step_result r;
    lms_status st = lms_trainer_step(&t, &ld, 0, &r);
    unsetenv("LMSCALE_FAULT");
    CHECK(st == LMS_ERR_NUMERIC && strstr(lms_last_error(), "minimum loss scale"),
          "an overflow at the minimum scale stops: status %d, '%s'", (int)st, lms_last_error());
    if (w->rank == 0) printf("overflow at the minimum scale: %s\n", lms_last_error());
    lms_trainer_free(&t);
    /* bf16 uses no scaling: a NaN is the usual error, before the parameters change */
    if (trainer_new(&t, w, 0, LMS_DT_BF16, 0, 0) != LMS_OK) return;
    setenv("LMSCALE_FAULT", "inf:rank=0:step=1", 1);
    st = lms_trainer_step(&t, &ld, 0, &r);
    unsetenv("LMSCALE_FAULT");
    CHECK(st == LMS_ERR_NUMERIC && r.loss_scale == 1.0f, "bf16 inf: status %d scale %g", (int)st, r.loss_scale);
    lms_trainer_free(&t);
}

int main(int argc, char **argv) {
    lms_comm *w;
    if (lms_comm_world("auto", &argc, &argv, &w) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        return 1;
    }
    uint64_t key = lms_rng_key(5, "test_mixed.tokens");
    for (int i = 0; i < NTOK; i++) g_tok[i] = (int32_t)(lms_rng_u64(key, (uint64_t)i) % 100);
    if (w->size == 1) {
        test_round();
        test_ops();
        test_model();
    }
    for (int zero = 0; zero <= 3; zero++) {
        test_overflow_skip(w, zero, "inf");
        if (zero == 0 || zero == 3) test_overflow_skip(w, zero, "nan");
    }
    test_scale_moves(w);
    test_persistent(w);
    int f = g_failures, total = 0;
    w->i->allreduce(w, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    g_failures = total;
    char name[64];
    snprintf(name, sizeof name, "test_mixed (%d ranks)", w->size);
    int rc = test_summary(name);
    lms_comm_free(w);
    return rc;
}
