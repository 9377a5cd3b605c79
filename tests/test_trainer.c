/* The trainer (src/train): lms_trainer_step against the same step written
 * out by hand (forward, backward, norm, clip, AdamW over the model) --
 * bit-identical, with and without accumulation; every ZeRO stage against
 * the "none" strategy in one process; and a failing op inside backward
 * coming back as the step's status. Run alone and under mpirun (2 ranks:
 * dp and ZeRO against the hand-written step over the global batch). */
#include "check.h"
#include "lmscale/train.h"

#include <string.h>

enum { T = 16, G = 8, NTOK = 4000 };
static int32_t g_tok[NTOK];

static lms_trainer_opts opts(int zero, int micro) {
    lms_trainer_opts o = {.zero = zero, .bucket_mb = 0.01f, .global_batch = G, .micro_batch = micro, .seq_len = T,
                          .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 0.5f};
    o.sched = (lms_schedule){LMS_SCHED_COSINE, 2e-3f, 2e-4f, 2, 6};
    return o;
}

static const lms_gpt_config CFG = {2, 2, 32, T, 100, 0, 0};

/* The step by hand, in one process over the whole global batch in
 * micro-batches of `micro`: returns losses and norms of `steps` steps. */
static void by_hand(lms_backend *be, const lms_loader *ld, int micro, int steps, double *loss, double *norm,
                    float *final_params) {
    lms_gpt_config cfg = CFG;
    lms_gpt_config_validate(&cfg);
    lms_gpt m;
    lms_gpt_acts acts;
    lms_adamw opt;
    lms_trainer_opts o = opts(0, micro);
    CHECK(lms_gpt_init(&m, &cfg, micro, T, 1) == LMS_OK, "init");
    CHECK(lms_gpt_acts_init(&acts, &cfg, micro, T, 1) == LMS_OK, "activations");
    lms_gpt_init_params(&m, 7);
    lms_adamw_init(&opt, m.num_params, o.beta1, o.beta2, o.eps, o.weight_decay);
    int32_t x[G * T], y[G * T];
    for (int s = 0; s < steps; s++) {
        lms_gpt_zero_grad(&m, be);
        double l = 0;
        for (int k = 0; k < G / micro; k++) {
            for (int b = 0; b < micro; b++)
                lms_loader_window(ld, (uint64_t)s * G + (uint64_t)k * micro + b, x + b * T, y + b * T);
            float ml;
            lms_gpt_forward(&m, be, &acts, x, y, micro, T, &ml);
            l += ml;
            lms_gpt_backward(&m, be, &acts, x, y, 1.0f / (G * T), NULL, NULL);
        }
        double ss;
        be->i->sumsq(be, m.grads, m.num_params, &ss);
        loss[s] = l / (G / micro);
        norm[s] = sqrt(ss);
        lms_adamw_step(&opt, be, m.params, m.grads, m.tensors, m.num_tensors, lms_schedule_lr(&o.sched, s),
                       lms_clip_scale(norm[s], o.grad_clip));
    }
    if (final_params) memcpy(final_params, m.params, m.num_params * sizeof(float));
    lms_adamw_free(&opt);
    lms_gpt_acts_free(&acts);
    lms_gpt_free(&m);
}

static void trained(lms_comm *w, lms_backend *be, const lms_loader *ld, int zero, int micro, int steps,
                    double *loss, double *norm, float *final_params) {
    lms_gpt_config cfg = CFG;
    lms_gpt_config_validate(&cfg);
    lms_trainer t;
    lms_trainer_opts o = opts(zero, micro);
    lms_train_source src = {.seed = 7};
    lms_status st = lms_trainer_init(&t, &o, &cfg, w, w->size, be, &src);
    CHECK(st == LMS_OK, "trainer init (zero %d): %s", zero, lms_last_error());
    if (st != LMS_OK) return;
    for (int s = 0; s < steps; s++) {
        lms_step_result r;
        CHECK(lms_trainer_step(&t, ld, s, &r) == LMS_OK, "step %d: %s", s, lms_last_error());
        loss[s] = r.loss;
        norm[s] = r.grad_norm;
    }
    if (final_params) {
        CHECK(lms_trainer_gather_model(&t) == LMS_OK, "gather");
        memcpy(final_params, t.m.params, t.m.num_params * sizeof(float));
    }
    lms_trainer_free(&t);
}

/* A backend whose attention backward fails. */
static lms_status failing_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                        const float *out, const float *lse, int B, int Tn, int C, int NH) {
    return lms_errorf(LMS_ERR_INTERNAL, "injected attention_bwd failure");
}

int main(int argc, char **argv) {
    lms_comm *w;
    if (lms_comm_world("auto", &argc, &argv, &w) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        return 1;
    }
    uint64_t key = lms_rng_key(5, "test_trainer.tokens");
    for (int i = 0; i < NTOK; i++) g_tok[i] = (int32_t)(lms_rng_u64(key, (uint64_t)i) % 100);
    lms_loader ld;
    CHECK(lms_loader_init(&ld, g_tok, NTOK, T, LMS_ORDER_RANDOM, 3, "test tokens") == LMS_OK, "loader");
    lms_backend be;
    lms_backend_init(&be, "cpu");
    lms_gpt_config cfg = CFG;
    lms_gpt_config_validate(&cfg);
    lms_gpt probe;
    lms_gpt_init(&probe, &cfg, 1, T, 0);
    const size_t np = probe.num_params;
    lms_gpt_free(&probe);
    enum { S = 4 };
    double hl[S], hn[S], tl[S], tn[S];
    float *hp = malloc(np * sizeof(float)), *tp = malloc(np * sizeof(float));
    const int P = w->size;
    for (int micro = G / P; micro >= G / P / 2 && micro >= 1; micro /= 2) { /* without and with accumulation */
        by_hand(&be, &ld, micro, S, hl, hn, hp);
        for (int zero = 0; zero <= 3; zero++) {
            trained(w, &be, &ld, zero, micro, S, tl, tn, tp);
            double wl = 0, wn = 0, wp = rel_err(tp, hp, np, 1e-6);
            for (int s = 0; s < S; s++) {
                wl = fmax(wl, fabs(tl[s] - hl[s]) / hl[s]);
                wn = fmax(wn, fabs(tn[s] - hn[s]) / hn[s]);
            }
            if (P == 1 && zero == 0) /* the same sums in the same order: bit for bit */
                CHECK(wl == 0 && wn == 0 && wp == 0, "[1 rank, micro %d] trainer vs by hand: loss %g norm %g params %g",
                      micro, wl, wn, wp);
            else /* other sums of the same numbers (dp all-reduce, shard-wise norms) */
                CHECK(wl < 1e-5 && wn < 1e-4 && wp < 1e-4, "[%d ranks, zero %d, micro %d] vs by hand: loss %g norm %g "
                      "params %g", P, zero, micro, wl, wn, wp);
            if (w->rank == 0)
                printf("[%d ranks, zero %d, micro %d] %d steps vs by hand: loss %.2e, norm %.2e, params %.2e\n", P,
                       zero, micro, S, wl, wn, wp);
        }
    }
    free(hp);
    free(tp);

    /* an op failing inside backward is the step's status, at once */
    lms_backend_i broken = lms_backend_cpu_i;
    broken.attention_bwd = failing_attention_bwd;
    lms_backend bb = {&broken, NULL};
    lms_trainer t;
    lms_trainer_opts o = opts(P > 1 ? 2 : 0, G / P);
    lms_train_source src = {.seed = 7};
    CHECK(lms_trainer_init(&t, &o, &cfg, w, P, &bb, &src) == LMS_OK, "init");
    lms_step_result r;
    lms_status st = lms_trainer_step(&t, &ld, 0, &r);
    CHECK(st == LMS_ERR_INTERNAL && strstr(lms_last_error(), "injected attention_bwd failure"),
          "a failing op is the step's error: %d %s", (int)st, lms_last_error());
    lms_trainer_free(&t);
    /* a missing op is refused before any compute */
    broken.attention_bwd = NULL;
    CHECK(lms_trainer_init(&t, &o, &cfg, w, P, &bb, &src) == LMS_OK, "init");
    st = lms_trainer_step(&t, &ld, 0, &r);
    CHECK(st == LMS_ERR_UNSUPPORTED && strstr(lms_last_error(), "attention_bwd"), "a missing op: %s",
          lms_last_error());
    lms_trainer_free(&t);

    int f = g_failures, total = 0;
    w->i->allreduce(w, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    g_failures = total;
    char name[64];
    snprintf(name, sizeof name, "test_trainer (%d ranks)", P);
    int rc = test_summary(name);
    lms_comm_free(w);
    return rc;
}
