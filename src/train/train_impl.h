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
lms_status lms_pipe_run(lms_trainer *t, const lms_loader *ld, int step, double *loss);

#endif
