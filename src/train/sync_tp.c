/* Checkpoint pieces of the whole-tensor strategies (lms_sync_save_tensors),
 * and under tensor parallelism: each rank's tensors become chunks
 * of the whole tensors (lms_tp_pieces), so a checkpoint saved at any tp
 * loads at any other layout (docs/checkpoints.md). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "lmscale/train.h"
#include "train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const lms_sync_ckpt_groups[3] = {"model.", "optim.exp_avg.", "optim.exp_avg_sq."};

/* doubles the piece array (256 at first) */
static lms_status grow_pieces(lms_ckpt_piece **pc, int *cap) {
    const int nc = *cap ? 2 * *cap : 256;
    lms_ckpt_piece *p = realloc(*pc, sizeof *p * (size_t)nc);
    if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory for the checkpoint pieces");
    *pc = p;
    *cap = nc;
    return LMS_OK;
}

lms_status lms_sync_tp_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                           size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap) {
    for (;;) {
        if (*cap - *n >= 16) {
            const int k = lms_tp_pieces(m, v, group, start, count, data, *pc + *n, *cap - *n);
            if (k >= 0) {
                *n += k;
                return LMS_OK;
            }
        }
        LMS_CHECK(grow_pieces(pc, cap));
    }
}

lms_status lms_sync_piece_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                              size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap) {
    if (m->tp) {
        if (v->spec->split == LMS_SPLIT_NONE && m->tp->rank != 0) return LMS_OK; /* replicated: tp rank 0's */
        return lms_sync_tp_add(m, v, group, start, count, data, pc, n, cap);
    }
    if (*n == *cap) LMS_CHECK(grow_pieces(pc, cap));
    lms_ckpt_piece *q = &(*pc)[(*n)++];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s%s", group, v->name);
    q->ndim = v->ndim;
    q->shape[0] = v->shape[0];
    q->shape[1] = v->shape[1];
    q->start = start;
    q->count = count;
    q->data = data;
    return LMS_OK;
}

lms_status lms_sync_save_tensors(const lms_gpt *m, const lms_adamw *opt, int writes, lms_sync_keep_fn *keep,
                                 const void *ctx, lms_comm *comm, const char *root, const lms_ckpt_state *st,
                                 int keep_last, char **path) {
    lms_ckpt_piece *pc = NULL;
    int n = 0, cap = 0;
    lms_status r = LMS_OK;
    *path = NULL;
    for (int g = 0; g < 3 && r == LMS_OK && writes; g++) {
        const float *src = g == 0 ? m->params : g == 1 ? opt->m : opt->v;
        for (int i = 0; i < m->num_tensors && r == LMS_OK; i++) {
            const lms_tensor_view *v = &m->tensors[i];
            if (keep && !keep(ctx, v)) continue;
            r = lms_sync_piece_add(m, v, lms_sync_ckpt_groups[g], 0, v->numel, src + v->offset, &pc, &n, &cap);
        }
    }
    if (r == LMS_OK) r = lms_ckpt_save_pieces(root, st, comm, pc, n, keep_last, path);
    free(pc);
    if (r == LMS_OK && !*path && !(*path = strdup(root))) r = lms_errorf(LMS_ERR_OOM, "out of memory");
    return r;
}
