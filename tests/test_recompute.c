/* Activation recomputation (model.h, lms_recompute; docs/recompute.md).
 *
 * 1. On every registered backend, a forward + backward (two accumulated
 *    micro-batches) with recompute selective and full gives bit for bit
 *    the losses and gradients of none.
 * 2. Through the trainer (src/train) for ZeRO 0..3 -- alone and under
 *    mpirun (2 ranks) -- the per-step losses, gradient norms and final
 *    parameters of selective and full are bit-identical to none's (full
 *    recompute runs ZeRO-3's parameter gathers once more per block).
 * 3. Peak activation memory, measured (the peak RSS of a child process
 *    across the first forward + backward, over the RSS before the
 *    activations exist) at two depths: the memory per layer under full
 *    recompute over that under none must stay below a bound derived from
 *    Korthikanti et al.'s per-layer formula (below). */
#include "check.h"
#include "lmscale/plan.h"
#include "lmscale/train.h"

#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define LMS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LMS_TEST_ASAN 1
#endif
#endif

static const lms_recompute MODES[] = {LMS_RECOMPUTE_NONE, LMS_RECOMPUTE_SELECTIVE, LMS_RECOMPUTE_FULL};

static void fill_tokens(int32_t *x, size_t n, int V, const char *what) {
    uint64_t key = lms_rng_key(11, what);
    for (size_t i = 0; i < n; i++) x[i] = (int32_t)(lms_rng_u64(key, i) % (uint64_t)V);
}

/* ---- 1. the model: every backend, bit for bit ---- */

static void one_pass(lms_backend *be, const lms_gpt_config *cfg, lms_recompute rc, int B, int T, float *loss,
                     float *grads) {
    lms_gpt m;
    lms_gpt_acts a;
    CHECK(lms_gpt_init(&m, cfg, B, T, 1) == LMS_OK, "init");
    CHECK(lms_gpt_acts_init_rc(&a, cfg, B, T, 1, rc) == LMS_OK, "acts (%s)", lms_recompute_name(rc));
    lms_gpt_init_params(&m, 21);
    int32_t *x = malloc(sizeof(int32_t) * B * T * 2), *y = x + B * T;
    for (int k = 0; k < 2; k++) { /* two micro-batches: the second recomputes over the first's leftovers */
        char what[32];
        snprintf(what, sizeof what, "x%d", k);
        fill_tokens(x, (size_t)B * T, cfg->V, what);
        snprintf(what, sizeof what, "y%d", k);
        fill_tokens(y, (size_t)B * T, cfg->V, what);
        CHECK(lms_gpt_forward(&m, be, &a, x, y, B, T, &loss[k]) == LMS_OK, "forward: %s", lms_last_error());
        CHECK(lms_gpt_backward(&m, be, &a, x, y, 1.0f / (2 * B * T), NULL, NULL) == LMS_OK, "backward: %s",
              lms_last_error());
    }
    memcpy(grads, m.grads, m.num_params * sizeof(float));
    free(x);
    lms_gpt_acts_free(&a);
    lms_gpt_free(&m);
}

static void test_model_bitwise(void) {
    lms_gpt_config cfg = {3, 2, 32, 16, 100, 0, 0};
    lms_gpt_config_validate(&cfg);
    size_t np;
    lms_tensor_view *views;
    int nv;
    lms_gpt_layout(&cfg, &views, &nv, &np);
    free(views);
    float *g0 = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float));
    for (int bi = 0; lms_backend_registered(bi); bi++) {
        lms_backend be = {lms_backend_registered(bi), NULL};
        float l0[2], l[2];
        one_pass(&be, &cfg, LMS_RECOMPUTE_NONE, 2, 16, l0, g0);
        for (int k = 1; k < 3; k++) {
            one_pass(&be, &cfg, MODES[k], 2, 16, l, g);
            CHECK(memcmp(l, l0, sizeof l) == 0 && memcmp(g, g0, np * sizeof(float)) == 0,
                  "[%s] recompute %s: losses %.9g %.9g vs %.9g %.9g, gradients %s", be.i->name,
                  lms_recompute_name(MODES[k]), l[0], l[1], l0[0], l0[1],
                  memcmp(g, g0, np * sizeof(float)) ? "differ" : "equal");
            printf("[%s] recompute %-9s: losses and %zu gradients bit-identical to none: %s\n", be.i->name,
                   lms_recompute_name(MODES[k]), np,
                   memcmp(l, l0, sizeof l) == 0 && memcmp(g, g0, np * sizeof(float)) == 0 ? "yes" : "NO");
        }
    }
    free(g0);
    free(g);
}

/* ---- 2. the trainer, ZeRO 0..3, alone and under mpirun ---- */

enum { TT = 16, G = 8, NTOK = 4000, S = 3 };

static void train(lms_comm *w, lms_backend *be, const lms_loader *ld, int zero, lms_recompute rc, double *loss,
                  double *norm, float **params, size_t *np) {
    lms_gpt_config cfg = {3, 2, 32, TT, 100, 0, 0};
    lms_gpt_config_validate(&cfg);
    lms_trainer_opts o = {.zero = zero, .bucket_mb = 0.01f, .global_batch = G, .micro_batch = G / w->size / 2,
                          .seq_len = TT, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                          .grad_clip = 0.5f, .recompute = rc};
    o.sched = (lms_schedule){LMS_SCHED_COSINE, 2e-3f, 2e-4f, 1, S};
    lms_train_source src = {.seed = 7};
    lms_trainer t;
    lms_status st = lms_trainer_init(&t, &o, &cfg, w, w->size, be, &src);
    CHECK(st == LMS_OK, "trainer init: %s", lms_last_error());
    if (st != LMS_OK) return;
    for (int s = 0; s < S; s++) {
        lms_step_result r;
        CHECK(lms_trainer_step(&t, ld, s, &r) == LMS_OK, "step %d: %s", s, lms_last_error());
        loss[s] = r.loss;
        norm[s] = r.grad_norm;
    }
    CHECK(lms_trainer_gather_model(&t) == LMS_OK, "gather");
    *np = t.m.num_params;
    *params = malloc(*np * sizeof(float));
    memcpy(*params, t.m.params, *np * sizeof(float));
    lms_trainer_free(&t);
}

static void test_trainer_bitwise(lms_comm *w) {
    static int32_t tok[NTOK];
    fill_tokens(tok, NTOK, 100, "trainer tokens");
    lms_loader ld;
    CHECK(lms_loader_init(&ld, tok, NTOK, TT, LMS_ORDER_RANDOM, 3, "test tokens") == LMS_OK, "loader");
    lms_backend be;
    lms_backend_init(&be, "cpu");
    for (int zero = 0; zero <= 3; zero++) {
        double l0[S], n0[S], l[S], n[S];
        float *p0 = NULL, *p = NULL;
        size_t np = 0;
        train(w, &be, &ld, zero, LMS_RECOMPUTE_NONE, l0, n0, &p0, &np);
        for (int k = 1; k < 3; k++) {
            train(w, &be, &ld, zero, MODES[k], l, n, &p, &np);
            int same = p && p0 && memcmp(l, l0, sizeof l) == 0 && memcmp(n, n0, sizeof n) == 0 &&
                       memcmp(p, p0, np * sizeof(float)) == 0;
            CHECK(same, "[%d ranks, zero %d] recompute %s differs from none: loss %.9g vs %.9g, norm %.9g vs %.9g",
                  w->size, zero, lms_recompute_name(MODES[k]), l[S - 1], l0[S - 1], n[S - 1], n0[S - 1]);
            if (w->rank == 0)
                printf("[%d ranks, zero %d] recompute %-9s: %d steps' losses, norms and final parameters "
                       "bit-identical to none: %s\n", w->size, zero, lms_recompute_name(MODES[k]), S,
                       same ? "yes" : "NO");
            free(p);
            p = NULL;
        }
        free(p0);
    }
    lms_backend_free(&be);
}

/* ---- 3. peak activation memory per layer, measured ---- */

/* In a child process: the peak RSS growth (bytes) from before the
 * activation set exists to after one forward + backward. */
static double measure_child(const lms_gpt_config *cfg, lms_recompute rc, int B, int T) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double d = -1;
        lms_backend be;
        lms_gpt m;
        lms_gpt_acts a;
        struct rusage r0, r1;
        int32_t *x = malloc(sizeof(int32_t) * B * T * 2), *y = x + B * T;
        fill_tokens(x, (size_t)2 * B * T, cfg->V, "mem tokens");
        if (lms_backend_init(&be, "ref") == LMS_OK && lms_gpt_init(&m, cfg, B, T, 1) == LMS_OK) {
            lms_gpt_init_params(&m, 3);
            getrusage(RUSAGE_SELF, &r0);
            float loss;
            if (lms_gpt_acts_init_rc(&a, cfg, B, T, 1, rc) == LMS_OK &&
                lms_gpt_forward(&m, &be, &a, x, y, B, T, &loss) == LMS_OK &&
                lms_gpt_backward(&m, &be, &a, x, y, 1.0f / (B * T), NULL, NULL) == LMS_OK) {
                getrusage(RUSAGE_SELF, &r1);
                d = 1024.0 * (double)(r1.ru_maxrss - r0.ru_maxrss);
            }
        }
        ssize_t wr = write(fd[1], &d, sizeof d);
        _exit(wr == (ssize_t)sizeof d ? 0 : 1);
    }
    close(fd[1]);
    double d = -1;
    if (pid < 0 || read(fd[0], &d, sizeof d) != (ssize_t)sizeof d) d = -1;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return d;
}

static void test_memory(void) {
#ifdef LMS_TEST_ASAN
    printf("memory: left out under AddressSanitizer (its shadow memory is in the RSS)\n");
    return;
#endif
    /* Korthikanti et al. (2022), per layer with 16-bit activations:
     * s·b·h·(34 + 5·a·s/h) bytes without recompute, 2·s·b·h (the layer's
     * input) with full recompute. The 5·a·s/h term is the a·s×s attention
     * matrices, which lmscale's attention never stores (online softmax),
     * so the variant without it applies: full/none = 2/34 per layer.
     * Activations here are fp32 and there is no dropout, which scales both
     * sides alike. The bound allows 25 % over it for page rounding and the
     * LayerNorm statistics (4 + a floats per row beside 17·h). */
    const double bound = 1.25 * 2.0 / 34.0;
    const int B = 4, T = 64, L0 = 4, L1 = 12;
    double per_layer[3];
    for (int k = 0; k < 3; k++) {
        double mem[2];
        for (int j = 0; j < 2; j++) {
            lms_gpt_config cfg = {j ? L1 : L0, 4, 64, T, 257, 0, 0};
            lms_gpt_config_validate(&cfg);
            mem[j] = measure_child(&cfg, MODES[k], B, T);
            CHECK(mem[j] > 0, "memory measurement (recompute %s, L=%d) failed", lms_recompute_name(MODES[k]),
                  cfg.L);
            printf("memory: L=%2d recompute %-9s peak activations %7.2f MiB measured (%7.2f MiB allocated)\n",
                   cfg.L, lms_recompute_name(MODES[k]), mem[j] / 1048576.0,
                   4.0 * (double)lms_gpt_act_floats_rc(&cfg, B, T, MODES[k]) / 1048576.0);
        }
        per_layer[k] = (mem[1] - mem[0]) / (L1 - L0);
        const double sbh = (double)B * T * 64;
        printf("memory: recompute %-9s %8.1f KiB per layer measured = %5.2f·s·b·h bytes (fp32; formula, 16-bit: "
               "%s)\n", lms_recompute_name(MODES[k]), per_layer[k] / 1024, per_layer[k] / sbh,
               k == 2 ? "2·s·b·h" : k == 1 ? "34·s·b·h" : "34·s·b·h + 5·a·s²·b");
    }
    const double ratio = per_layer[2] / per_layer[0];
    CHECK(per_layer[0] > 0 && ratio < bound, "full/none per layer %.4f is not below %.4f (1.25 × 2/34)", ratio,
          bound);
    CHECK(per_layer[1] < per_layer[0] && per_layer[1] > per_layer[2],
          "selective (%.0f B/layer) is not between full (%.0f) and none (%.0f)", per_layer[1], per_layer[2],
          per_layer[0]);
    printf("memory: full/none per layer %.4f (bound %.4f = 1.25 × 2/34), selective/none %.4f\n", ratio, bound,
           per_layer[1] / per_layer[0]);
}

int main(int argc, char **argv) {
    lms_comm *w;
    if (lms_comm_world("auto", &argc, &argv, &w) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        return 1;
    }
    if (w->size == 1) test_memory(); /* first: the children fork before any thread exists */
    if (w->size == 1) test_model_bitwise();
    test_trainer_bitwise(w);
    int f = g_failures, total = 0;
    w->i->allreduce(w, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    g_failures = total;
    char name[64];
    snprintf(name, sizeof name, "test_recompute (%d ranks)", w->size);
    int rc = test_summary(name);
    lms_comm_free(w);
    return rc;
}
