/* Checkpoints under tensor parallelism: each rank's tensors become chunks
 * of the whole tensors (lms_tp_pieces), so a checkpoint saved at any tp
 * loads at any other layout (docs/checkpoints.md). */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "lmscale/train.h"
#include "train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        const int nc = *cap ? 2 * *cap : 256;
        lms_ckpt_piece *p = realloc(*pc, sizeof *p * (size_t)nc);
        if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory for the checkpoint pieces");
        *pc = p;
        *cap = nc;
    }
}

lms_status lms_sync_piece_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                              size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap) {
    if (m->tp) {
        if (v->spec->split == LMS_SPLIT_NONE && m->tp->rank != 0) return LMS_OK; /* replicated: tp rank 0's */
        return lms_sync_tp_add(m, v, group, start, count, data, pc, n, cap);
    }
    if (*n == *cap) {
        const int nc = *cap ? 2 * *cap : 256;
        lms_ckpt_piece *p = realloc(*pc, sizeof *p * (size_t)nc);
        if (!p) return lms_errorf(LMS_ERR_OOM, "out of memory for the checkpoint pieces");
        *pc = p;
        *cap = nc;
    }
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

lms_status lms_grad_sync_save_tp(lms_grad_sync *s, const char *root, const lms_ckpt_state *st,
                                 const lms_adamw *opt, int keep_last, char **path) {
    const lms_gpt *m = s->m;
    lms_ckpt_piece *pc = NULL;
    int n = 0, cap = 0;
    lms_status r = LMS_OK;
    static const char *const groups[3] = {"model.", "optim.exp_avg.", "optim.exp_avg_sq."};
    for (int g = 0; g < 3 && r == LMS_OK; g++) {
        const float *src = g == 0 ? m->params : g == 1 ? opt->m : opt->v;
        for (int i = 0; i < m->num_tensors && r == LMS_OK; i++)
            r = lms_sync_piece_add(m, &m->tensors[i], groups[g], 0, m->tensors[i].numel, src + m->tensors[i].offset,
                                   &pc, &n, &cap);
    }
    if (r == LMS_OK) r = lms_ckpt_save_pieces(root, st, m->tp->comm, pc, n, keep_last, path);
    free(pc);
    if (r == LMS_OK && !*path && !(*path = strdup(root))) r = lms_errorf(LMS_ERR_OOM, "out of memory");
    return r;
}
