/* Tensor parallelism against the one-process model: every rank of a tp
 * group of the whole world (run under mpirun with 2 and 4 ranks) builds its
 * part of the model, runs forward and backward on the whole batch, and its
 * loss must equal the one-process loss and each of its gradient tensors the
 * matching slice of the one-process gradients (relative 1e-5), with and
 * without sequence parallelism and with two accumulated micro-batches. Also
 * the part's parameters equal the slices of the one-process initialisation
 * bit for bit, the tp collectives' bytes match the analytic count, and the
 * per-rank parameter count is the blocks' / tp plus the replicated parts. */
#include "check.h"
#include "lmscale/parallel.h"

#include <stdlib.h>
#include <string.h>

enum { B = 4, T = 16 };

static void make_batch(int32_t *x, int32_t *y, int V) {
    uint64_t k = lms_rng_key(7, "test_tp.tokens");
    for (int i = 0; i < B * T; i++) {
        x[i] = (int32_t)(lms_rng_u64(k, 2 * (uint64_t)i) % (uint64_t)V);
        y[i] = (int32_t)(lms_rng_u64(k, 2 * (uint64_t)i + 1) % (uint64_t)V);
    }
}

/* max over tensors of the relative error of the part's gradient against
 * the slice of the whole gradient */
static double grad_err(const lms_gpt *m, const lms_gpt *ref, float *slice, const char **worst) {
    double e = 0;
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i], *w = &ref->tensors[i];
        lms_tp_extract(m, v, ref->grads + w->offset, w->shape[0], slice);
        double ei = rel_err(m->grads + v->offset, slice, v->numel, 1e-6);
        if (ei > e) {
            e = ei;
            *worst = v->name;
        }
    }
    return e;
}

static void run(lms_comm *w, int sp, int accum) {
    const int tp = w->size;
    lms_backend be;
    lms_backend_init(&be, "cpu");
    lms_gpt_config cfg = {.L = 2, .NH = 4, .C = 32, .maxT = T, .V = 100};
    lms_gpt_config_validate(&cfg);
    int32_t x[B * T], y[B * T];
    make_batch(x, y, cfg.V);
    const int micro = B / accum;

    /* the one-process reference: the whole model, the whole batch */
    lms_gpt ref;
    lms_gpt_acts ra, a;
    lms_gpt_init(&ref, &cfg, B, T, 1);
    lms_gpt_init_params(&ref, 5);
    lms_gpt_acts_init(&ra, &cfg, B, T, 1);
    lms_gpt_zero_grad(&ref, &be);
    float ref_loss = 0;
    CHECK(lms_gpt_forward(&ref, &be, &ra, x, y, B, T, &ref_loss) == LMS_OK, "forward");
    lms_gpt_backward(&ref, &be, &ra, x, y, 1.0f / (B * T), NULL, NULL);

    /* this rank's part */
    lms_gpt_config lc;
    CHECK(lms_gpt_config_local(&cfg, tp, &lc) == LMS_OK, "local config: %s", lms_last_error());
    lms_gpt m;
    lms_gpt_init(&m, &lc, micro, T, 1);
    lms_gpt_tp tpx = {.comm = w, .size = tp, .rank = w->rank, .seq_parallel = sp};
    m.tp = &tpx;
    CHECK(lms_gpt_init_params_tp(&m, 5, m.params) == LMS_OK, "init: %s", lms_last_error());
    lms_gpt_acts_init(&a, &lc, micro, T, 1);
    lms_gpt_zero_grad(&m, &be);
    float *slice = malloc(sizeof(float) * ref.num_params);
    /* the initial part is the slice of the one-process initialisation, bit for bit */
    int same = 1;
    for (int i = 0; i < m.num_tensors; i++) {
        const lms_tensor_view *v = &m.tensors[i];
        lms_tp_extract(&m, v, ref.params + ref.tensors[i].offset, ref.tensors[i].shape[0], slice);
        same &= memcmp(slice, m.params + v->offset, sizeof(float) * v->numel) == 0;
    }
    CHECK(same, "[tp=%d] the part's initial parameters are the slices of the one-process model", tp);
    double loss = 0;
    const uint64_t bytes0 = w->coll_bytes; /* the comm layer's count (comm.h) */
    for (int k = 0; k < accum; k++) {
        float l = 0;
        const int off = k * micro * T;
        CHECK(lms_gpt_forward(&m, &be, &a, x + off, y + off, micro, T, &l) == LMS_OK, "forward: %s",
              lms_last_error());
        CHECK(lms_gpt_backward(&m, &be, &a, x + off, y + off, 1.0f / (B * T), NULL, NULL) == LMS_OK,
              "backward: %s", lms_last_error());
        loss += l / accum;
    }
    CHECK(fabs(loss - ref_loss) < 1e-5 * ref_loss, "[tp=%d sp=%d accum=%d] loss %.7f vs one process %.7f", tp, sp,
          accum, loss, ref_loss);
    const char *worst = "";
    const double e = grad_err(&m, &ref, slice, &worst);
    CHECK(e < 1e-5, "[tp=%d sp=%d accum=%d] gradients vs the one-process slices: rel err %g (%s)", tp, sp, accum, e,
          worst);

    /* bytes of the tp collectives per micro-batch of N = micro·T rows: 2
     * all-reduces (or all-gather + reduce-scatter) of N·C forward and 2
     * backward per layer, the embedding's and the head's, the
     * cross-entropy's 3·N, and under sequence parallelism the final
     * LayerNorm's all-gather, the gathers of d(output) (2 per layer and the
     * embedding's) and the LayerNorm gradients (2·C per use) */
    const double N = (double)micro * T, C = cfg.C, L = cfg.L;
    double want = 4 * L * N * C + 2 * N * C + 3 * N;
    if (sp) want += 2 * (2 * L + 1) * N * C + (2 * L + 1) * 2 * C;
    want *= 4.0 * accum;
    const uint64_t bytes = w->coll_bytes - bytes0;
    CHECK(fabs((double)bytes - want) < 0.5, "[tp=%d sp=%d] tp collectives moved %llu bytes, analytic %.0f", tp, sp,
          (unsigned long long)bytes, want);

    /* per-rank parameters: the split tensors' 1/tp plus the replicated */
    const double Vp = lc.Vp, maxT = cfg.maxT;
    const double split = L * (3 * C * C + 3 * C + C * C + 4 * C * C + 4 * C + 4 * C * C) + Vp * C;
    const double repl = L * (4 * C + 2 * C) + maxT * C + 2 * C;
    CHECK(m.num_params == (size_t)(split / tp + repl), "[tp=%d] %zu parameters on a rank, want %.0f", tp,
          m.num_params, split / tp + repl);
    if (w->rank == 0)
        printf("[tp=%d sp=%d accum=%d] loss %.7f (one process %.7f), gradient rel err %.2e, %llu tp bytes, "
               "%zu of %zu parameters per rank\n", tp, sp, accum, loss, ref_loss, e, (unsigned long long)bytes,
               m.num_params, ref.num_params);
    free(slice);
    lms_gpt_tp_free_work(&tpx);
    lms_gpt_acts_free(&a);
    lms_gpt_acts_free(&ra);
    lms_gpt_free(&m);
    lms_gpt_free(&ref);
}

int main(int argc, char **argv) {
    lms_comm *w;
    if (lms_comm_world("auto", &argc, &argv, &w) != LMS_OK) {
        fprintf(stderr, "%s\n", lms_last_error());
        return 1;
    }
    if (w->size < 2 || 4 % w->size != 0) {
        int rc = 0;
        if (w->rank == 0) {
            test_skip("test_tp at this world size", "run it under mpirun -np 2 or 4 (ctest tp_mpi2, tp_mpi4)");
            rc = test_summary("test_tp");
        }
        lms_comm_free(w);
        return rc;
    }
    run(w, 0, 1);
    run(w, 1, 1);
    run(w, 0, 2);
    run(w, 1, 2);
    int f = g_failures, total = 0;
    w->i->allreduce(w, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    g_failures = total;
    char name[48];
    snprintf(name, sizeof name, "test_tp (%d ranks)", w->size);
    int rc = w->rank == 0 ? test_summary(name) : (total ? 1 : 0);
    lms_comm_free(w);
    return rc;
}
