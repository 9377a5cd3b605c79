/* Gradient synchronisation with full gradients on every rank: "none" (one
 * data-parallel rank) and "dp" (bucketed all-reduce overlapped with the last
 * micro-batch's backward), and the choice of strategy (train.h). ZeRO is in
 * sync_zero.c. */
#include "lmscale/train.h"
#include "train_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned lms_grad_sync_model_flags(int dp_size, int zero) {
    (void)dp_size;
    return (zero <= 1 ? LMS_GPT_GRADS : 0) | (zero == 3 ? LMS_GPT_NO_PARAMS : 0);
}

lms_status lms_sync_load_hf(const char *dir, const lms_gpt *m, float *dst) {
    /* a part (a pipeline stage's) takes its tensors by name, as a tp part does */
    return m->tp || m->part ? lms_tp_load_hf(dir, m, dst) : lms_hf_load_params(dir, &m->cfg, dst);
}

/* ---- none and dp ---- */

lms_status lms_grad_sync_full_restore(lms_grad_sync *s, const lms_train_source *src, lms_adamw *opt) {
    lms_gpt *m = s->m;
    if (m->tp) { /* this tp rank's part of whole tensors */
        if (src->ck) return lms_tp_load_train(src->ck, m, opt);
        if (src->hf_dir) return lms_tp_load_hf(src->hf_dir, m, m->params);
        return lms_gpt_init_params_tp(m, src->seed, m->params);
    }
    if (src->ck) return lms_ckpt_load_train(src->ck, m, opt);
    if (src->hf_dir) return lms_sync_load_hf(src->hf_dir, m, m->params);
    lms_gpt_init_params(m, src->seed);
    return LMS_OK;
}

static lms_status full_begin(lms_grad_sync *s) { return lms_gpt_zero_grad(s->m, s->be); }

static void none_ready(lms_grad_sync *s, int last, lms_grad_ready_fn *fn, void **ctx) {
    *fn = NULL;
    *ctx = NULL;
}

static lms_status none_finish(lms_grad_sync *s) { return LMS_OK; }

/* The gradients the update uses: dp's reduced ones (its receive buffer; only
 * dp has an impl), else the model's */
static const float *update_grads(const lms_grad_sync *s) {
    return s->impl ? lms_dp_sync_reduced(s->impl) : s->m->grads;
}

static lms_status full_norm(lms_grad_sync *s, double *norm) {
    double ss = 0;
    const lms_gpt *m = s->m;
    const float *g = update_grads(s);
    if (!m->tp) {
        LMS_CHECK(s->be->i->sumsq(s->be, g, m->num_params, &ss));
    } else { /* split tensors summed over the tp group, replicated ones counted once */
        for (int i = 0; i < m->num_tensors; i++) {
            double x = 0;
            LMS_CHECK(s->be->i->sumsq(s->be, g + m->tensors[i].offset, m->tensors[i].numel, &x));
            ss += lms_tp_norm_weight(m, &m->tensors[i]) * x;
        }
        LMS_CHECK(m->tp->comm->i->allreduce(m->tp->comm, &ss, &ss, 1, LMS_DT_F64, LMS_RED_SUM));
    }
    *norm = sqrt(ss);
    return LMS_OK;
}

static lms_status full_step(lms_grad_sync *s, lms_adamw *opt, float lr, float grad_scale) {
    lms_gpt *m = s->m;
    return lms_adamw_step(opt, s->be, m->params, update_grads(s), m->tensors, m->num_tensors, lr, grad_scale);
}

/* Every rank holds the same state: rank 0 writes it all. */
static lms_status full_save(lms_grad_sync *s, const char *root, const lms_ckpt_state *st, const lms_adamw *opt,
                            int keep_last, char **path) {
    *path = NULL;
    if (s->dp->rank != 0) return LMS_OK;
    if (s->m->tp) /* the tp group writes */
        return lms_sync_save_tensors(s->m, opt, 1, NULL, NULL, s->m->tp->comm, root, st, keep_last, path);
    return lms_ckpt_save_train(root, st, s->m, opt, keep_last, path);
}

static lms_status full_gather(lms_grad_sync *s) { return LMS_OK; }

static void none_free(lms_grad_sync *s) {}

/* none and dp differ only in the hook, the finish, the step and what they free */
#define FULL_I(nm, ready, fin, stp, fr)                                                                          \
    {.name = nm, .restore = lms_grad_sync_full_restore, .begin_step = full_begin, .grad_ready = ready, .finish = fin,    \
     .global_norm = full_norm, .optimizer_step = stp, .save = full_save, .gather_model = full_gather, \
     .free = fr}
static const lms_grad_sync_i none_i = FULL_I("none", none_ready, none_finish, full_step, none_free);

/* dp: only the step's last micro-batch communicates */
static void dp_ready(lms_grad_sync *s, int last, lms_grad_ready_fn *fn, void **ctx) {
    lms_dp_sync *d = s->impl;
    *fn = NULL;
    *ctx = NULL;
    if (!last) return;
    lms_dp_sync_begin(d);
    *fn = lms_dp_sync_ready;
    *ctx = d;
}

static lms_status dp_finish(lms_grad_sync *s) { return lms_dp_sync_finish(s->impl); }

static lms_status dp_step(lms_grad_sync *s, lms_adamw *opt, float lr, float grad_scale) {
    return lms_dp_sync_step(s->impl, s->m, opt, s->be, lr, grad_scale);
}

static void dp_free(lms_grad_sync *s) {
    lms_dp_sync_free(s->impl);
    free(s->impl);
}

static const lms_grad_sync_i dp_i = FULL_I("dp", dp_ready, dp_finish, dp_step, dp_free);

/* ---- the choice ---- */

lms_status lms_grad_sync_init(lms_grad_sync *s, int zero, lms_comm *dp, lms_gpt *m, lms_backend *be,
                              size_t bucket_bytes) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->be = be;
    s->dp = dp;
    if (zero) return lms_grad_sync_zero_init(s, zero);
    const size_t f = sizeof(float), N = m->num_params;
    s->optim_n = N;
    s->mem.param = N * f;
    s->mem.grad = N * f;
    s->mem.optim = 2 * N * f;
    if (dp->size == 1) {
        s->i = &none_i;
        snprintf(s->how, sizeof s->how, "one rank");
        return LMS_OK;
    }
    lms_dp_sync *d = calloc(1, sizeof *d);
    if (!d) return lms_errorf(LMS_ERR_OOM, "out of memory for gradient buckets");
    /* the shared-memory sum on one node unless LMSCALE_DP_SHM=0 (host backends) */
    const char *env = lms_env("LMSCALE_DP_SHM");
    const int shm = be->i->host_memory && !(env && strcmp(env, "0") == 0);
    lms_status st = lms_dp_sync_init(d, dp, m->grads, N, bucket_bytes, shm);
    if (st == LMS_OK && lms_dp_sync_grads(d) != m->grads) st = lms_gpt_use_grads(m, lms_dp_sync_grads(d));
    if (st != LMS_OK) {
        lms_dp_sync_free(d);
        free(d);
        return st;
    }
    s->impl = d;
    s->i = &dp_i;
    s->mem.grad_work = N * f; /* the sums: the all-reduce's receive buffer, or the shared one (rank 0's block) */
    if (d->shm)
        snprintf(s->how, sizeof s->how, "shared-memory sum, one copy of parameters + AdamW state per node, "
                 "%.1f MB chunks", (double)bucket_bytes / 1048576.0);
    else
        snprintf(s->how, sizeof s->how, "all-reduce buckets of %.1f MB", (double)bucket_bytes / 1048576.0);
    return LMS_OK;
}

void lms_grad_sync_free(lms_grad_sync *s) {
    if (!s || !s->i) return;
    s->i->free(s);
    memset(s, 0, sizeof *s);
}
