/* Gradient synchronisation under ZeRO 1, 2 and 3 (parallel.h, lms_zero):
 * the strategy's step functions, and the mapping between this rank's
 * shard and the checkpoint's whole tensors (restore and save). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "lmscale/train.h"
#include "train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lms_zero *Z(lms_grad_sync *s) { return s->impl; }

/* dst[shard] (backend memory) = this rank's parts of `name` (a tensor of
 * the layout) from the checkpoint, read whole into buf (host memory). */
static lms_status read_parts(const lms_ckpt *ck, const lms_zero *z, const lms_tensor_view *v, const char *group,
                             float *buf, float *dst) {
    char nm[128];
    snprintf(nm, sizeof nm, "%s%s", group, v->name);
    if (z->m->tp)
        LMS_CHECK(lms_tp_read(ck, group, z->m, v, buf)); /* this tp rank's part */
    else
        LMS_CHECK(lms_ckpt_read_tensor(ck, nm, buf, v->numel));
    for (int u = 0; u < z->nunits; u++) {
        size_t a, b;
        if (lms_zero_overlap(z, u, v, &a, &b))
            LMS_CHECK(z->be->i->copy(z->be, dst + z->units[u].shard_off + (a - lms_zero_part_lo(z, u)),
                                     buf + (a - v->offset), sizeof(float) * (b - a), LMS_COPY_H2D));
    }
    return LMS_OK;
}

/* Parameters full (stages 1, 2) or sharded (3), AdamW moments sharded. */
static lms_status zero_restore(lms_grad_sync *s, const lms_train_source *src, lms_adamw *opt) {
    lms_zero *z = Z(s);
    lms_gpt *m = z->m;
    if (!src->ck && !src->hf_dir && !m->tp) {
        if (z->stage == 3)
            lms_zero_init_params(z, src->seed);
        else
            lms_gpt_init_params(m, src->seed);
        return LMS_OK;
    }
    if (!src->ck && z->stage < 3) /* tp: this rank's part */
        return src->hf_dir ? lms_sync_load_hf(src->hf_dir, m, m->params) : lms_gpt_init_params_tp(m, src->seed, m->params);
    lms_status st = LMS_OK;
    float *buf = NULL;
    size_t cap = !src->ck ? m->num_params : 0; /* --init: the whole model, then its parts */
    for (int i = 0; i < m->num_tensors; i++)
        if (m->tensors[i].numel > cap) cap = m->tensors[i].numel;
    LMS_TRY(lms_alloc_checked((void **)&buf, sizeof(float) * cap, "checkpoint loading"));
    if (!src->ck) {
        if (src->hf_dir)
            LMS_TRY(lms_sync_load_hf(src->hf_dir, m, buf));
        else
            LMS_TRY(lms_gpt_init_params_tp(m, src->seed, buf));
        LMS_TRY(lms_zero_shard_from_full(z, buf, z->master));
        goto fail; /* done */
    }
    const lms_ckpt *ck = src->ck;
    if (z->stage < 3) /* the whole model (or this tp rank's part); checks shapes */
        LMS_TRY(m->tp ? lms_tp_load_train(ck, m, NULL) : lms_ckpt_load_train(ck, m, NULL));
    for (int i = 0; i < m->num_tensors; i++) {
        const lms_tensor_view *v = &m->tensors[i];
        if (z->stage == 3) LMS_TRY(read_parts(ck, z, v, "model.", buf, z->master));
        LMS_TRY(read_parts(ck, z, v, "optim.exp_avg.", buf, opt->m));
        LMS_TRY(read_parts(ck, z, v, "optim.exp_avg_sq.", buf, opt->v));
    }
    opt->step = ck->state.adam_step;
fail:
    lms_free(buf);
    return st;
}

static lms_status zero_begin(lms_grad_sync *s) { return lms_zero_begin_step(Z(s)); }

/* Stage 1 reduce-scatters each unit as the last backward finishes it;
 * stages 2 and 3 work through the model's hooks on every micro-batch. */
static void zero_ready(lms_grad_sync *s, int last, lms_grad_ready_fn *fn, void **ctx) {
    *fn = NULL;
    *ctx = NULL;
    if (Z(s)->stage == 1 && last) {
        *fn = lms_zero_ready;
        *ctx = Z(s);
    }
}

static lms_status zero_finish(lms_grad_sync *s) { return lms_zero_finish_grads(Z(s)); }

static lms_status zero_norm(lms_grad_sync *s, double *norm) { return lms_zero_grad_norm(Z(s), s->be, norm); }

static lms_status zero_step(lms_grad_sync *s, lms_adamw *opt, float lr, float grad_scale) {
    return lms_zero_step(Z(s), opt, s->be, lr, grad_scale);
}

/* This rank's parts of the optimizer state (and of the parameters at
 * stage 3; dp rank 0 writes the whole parameters at stages 1 and 2). Under
 * tensor parallelism the same parts as chunks of the whole tensors (a
 * replicated tensor's by tp rank 0 only); every rank of the job writes. */
static lms_status zero_save(lms_grad_sync *s, const char *root, const lms_ckpt_state *st, const lms_adamw *opt,
                            int keep_last, char **path) {
    const lms_zero *z = Z(s);
    const lms_gpt *m = z->m;
    *path = NULL;
    lms_ckpt_piece *pc = NULL;
    int n = 0, cap = 0;
    lms_status r = LMS_OK;
    for (int g = 0; g < 3 && r == LMS_OK; g++) {
        if (g == 0 && z->stage < 3) { /* whole (tp-local) parameters on every dp rank: dp rank 0 writes */
            for (int i = 0; z->rank == 0 && i < m->num_tensors && r == LMS_OK; i++) {
                const lms_tensor_view *v = &m->tensors[i];
                if (!lms_zero_holds(z, v)) continue; /* the wte copy of a last pipeline stage */
                r = lms_sync_piece_add(m, v, lms_sync_ckpt_groups[g], 0, v->numel, m->params + v->offset, &pc, &n, &cap);
            }
            continue;
        }
        const float *src = g == 0 ? z->master : g == 1 ? opt->m : opt->v;
        for (int u = 0; u < z->nunits && r == LMS_OK; u++) {
            if (z->units[u].copy) continue; /* its original is written */
            const size_t lo = lms_zero_part_lo(z, u);
            for (int i = 0; i < m->num_tensors && r == LMS_OK; i++) {
                const lms_tensor_view *v = &m->tensors[i];
                size_t a, b;
                if (!lms_zero_overlap(z, u, v, &a, &b)) continue;
                r = lms_sync_piece_add(m, v, lms_sync_ckpt_groups[g], a - v->offset, b - a, src + z->units[u].shard_off + (a - lo),
                                       &pc, &n, &cap);
            }
        }
    }
    /* the world: under pipeline parallelism each stage's dp group holds its own units */
    if (r == LMS_OK) r = lms_ckpt_save_pieces(root, st, s->world ? s->world : z->comm, pc, n, keep_last, path);
    free(pc);
    if (r == LMS_OK && !*path && !(*path = strdup(root))) r = lms_errorf(LMS_ERR_OOM, "out of memory");
    return r; /* every rank took part: each gets a path */
}

/* The whole model on every rank (gathered at stage 3), hooks removed. */
static lms_status zero_gather(lms_grad_sync *s) {
    lms_zero *z = Z(s);
    lms_gpt *m = z->m;
    if (z->stage < 3) {
        m->hooks = NULL; /* stage 2: the full parameters are here; forward needs no hooks */
        return LMS_OK;
    }
    if (!m->hooks) return LMS_OK; /* gathered already */
    /* the model's own parameter buffer, on its backend (lms_gpt_free frees it) */
    LMS_CHECK(lms_buffer_alloc(m->be, sizeof(float) * m->num_params, "the gathered model", &m->param_buf));
    lms_status st = lms_zero_gather_full(z, m->param_buf.data);
    if (st != LMS_OK) {
        lms_buffer_free(m->be, &m->param_buf);
        return st;
    }
    m->params = m->param_buf.data;
    m->hooks = NULL;
    lms_gpt_bind_views(m, m->params, &m->p);
    return LMS_OK;
}

static void zero_free(lms_grad_sync *s) {
    lms_zero_free(Z(s));
    free(s->impl);
}

#define ZERO_I(nm)                                                                                          \
    {.name = nm, .restore = zero_restore, .begin_step = zero_begin, .grad_ready = zero_ready,             \
     .finish = zero_finish, .global_norm = zero_norm, .optimizer_step = zero_step, .save = zero_save,      \
     .gather_model = zero_gather, .free = zero_free}
static const lms_grad_sync_i zero_i[3] = {ZERO_I("zero-1"), ZERO_I("zero-2"), ZERO_I("zero-3")};

lms_status lms_grad_sync_zero_init(lms_grad_sync *s, int stage) { return lms_grad_sync_zero_init_units(s, stage, NULL, 0); }

lms_status lms_grad_sync_zero_init_units(lms_grad_sync *s, int stage, const lms_zero_range *r, int nr) {
    if (stage < 1 || stage > 3)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d: the ZeRO stage must be 0 (off), 1, 2 or 3", stage);
    lms_zero *z = calloc(1, sizeof *z);
    if (!z) return lms_errorf(LMS_ERR_OOM, "out of memory for the ZeRO layout");
    lms_status st = lms_zero_init_units(z, stage, s->dp, s->m, s->be, r, nr);
    if (st != LMS_OK) {
        free(z);
        return st;
    }
    s->impl = z;
    s->i = &zero_i[stage - 1];
    s->optim_n = z->shard_n;
    s->mem = z->mem;
    s->forward_collective = stage == 3;
    snprintf(s->how, sizeof s->how, "ZeRO-%d, gathers/reduce-scatters per unit", stage);
    return LMS_OK;
}
