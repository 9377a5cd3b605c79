/* Internal to src/train: the ZeRO strategy's constructor (sync_zero.c). */
#ifndef LMS_TRAIN_IMPL_H
#define LMS_TRAIN_IMPL_H

#include "lmscale/obs.h"
#include "lmscale/train.h"

/* phase timing (obs.h) when the caller set t->obs */
#define PH_BEGIN(ph)                                 \
    do {                                             \
        if (t->obs) lms_obs_phase_begin(t->obs, ph); \
    } while (0)
#define PH_END(ph)                                 \
    do {                                           \
        if (t->obs) lms_obs_phase_end(t->obs, ph); \
    } while (0)

/* s->m, s->be and s->dp are set; builds lms_zero at `stage` and fills s. */
lms_status lms_grad_sync_zero_init(lms_grad_sync *s, int stage);
/* The same over the units r[0..nr) only (lms_zero_init_units). */
lms_status lms_grad_sync_zero_init_units(lms_grad_sync *s, int stage, const lms_zero_range *r, int nr);
/* Tensor parallelism (sync_tp.c): the checkpoint pieces of elements
 * [start, start+count) of local tensor v under group (data[0..count)),
 * appended to *pc (grown; *n, *cap); and the whole-parameter save of the
 * full-gradient strategies, written by this rank's tp group. */
lms_status lms_sync_tp_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                           size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap);
/* The same for any model: under tensor parallelism as lms_sync_tp_add
 * (a replicated tensor by tp rank 0 only), else one run of the tensor. */
lms_status lms_sync_piece_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                              size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap);
/* The name prefixes of a checkpoint's parameters and AdamW moments. */
extern const char *const lms_sync_ckpt_groups[3];
/* Whether a tensor of the model goes into the checkpoint (ctx: the caller's). */
typedef int lms_sync_keep_fn(const void *ctx, const lms_tensor_view *v);
/* m's tensors (those keep accepts; NULL: all) and their AdamW moments, whole,
 * as pieces of one checkpoint written collectively over comm (under tensor
 * parallelism each rank's parts as chunks of the whole tensors, a
 * replicated tensor by tp rank 0 only). A rank with writes = 0 adds no
 * pieces but takes part. *path: the checkpoint, on every rank. */
lms_status lms_sync_save_tensors(const lms_gpt *m, const lms_adamw *opt, int writes, lms_sync_keep_fn *keep,
                                 const void *ctx, lms_comm *comm, const char *root, const lms_ckpt_state *st,
                                 int keep_last, char **path);

/* Hugging Face weights into dst, laid out as m's buffers: the whole model,
 * or (tensor parallelism, a pipeline stage's part) m's tensors by name. */
lms_status lms_sync_load_hf(const char *dir, const lms_gpt *m, float *dst);

/* The starting parameters and AdamW state of a strategy holding the whole
 * model on every rank: the checkpoint, Hugging Face weights, or the seed. */
lms_status lms_grad_sync_full_restore(lms_grad_sync *s, const lms_train_source *src, lms_adamw *opt);

/* ---- the pipeline engine (pipe.c, pipe_sync.c) ---- */
/* After t->topo, t->groups, t->dp, t->accum, t->m: builds t->pipe and its
 * gradient strategy "pp" in t->sync. */
lms_status lms_pipe_init(lms_trainer *t, lms_comm *world);
void lms_pipe_free(struct lms_pipe *p);
/* Every micro-batch of step `step` through this stage's schedule; *loss =
 * the sum of the micro-batch losses, on every stage. */
lms_status lms_pipe_run(lms_trainer *t, const lms_loader *ld, int step, float dloss, double *loss);
/* lms_trainer_forward under pipeline parallelism: one forward of (B, T)
 * through the stages (each its chunks, activations passed by blocking
 * send/receive), the last stage's loss to every stage. */
lms_status lms_pipe_forward(lms_trainer *t, const int32_t *x, const int32_t *y, int B, int T, float *loss);

#endif
