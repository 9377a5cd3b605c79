/* lmscale optimizers: AdamW over the flat parameter buffer (weight decay on
 * the views marked decay, i.e. 2-D weights), learning-rate schedules and
 * global-norm gradient clipping. */
#ifndef LMSCALE_OPTIM_H
#define LMSCALE_OPTIM_H

#include "lmscale/backend.h"
#include "lmscale/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LMS_SCHED_CONSTANT = 0, LMS_SCHED_COSINE, LMS_SCHED_LINEAR } lms_schedule_kind;

typedef struct {
    lms_schedule_kind kind;
    float lr, min_lr;
    int warmup; /* steps of linear warm-up */
    int total;  /* total steps; decay runs from warmup to total */
} lms_schedule;

/* "constant", "cosine" or "linear"; errors name the choices. */
lms_status lms_schedule_parse(const char *name, lms_schedule_kind *kind);
const char *lms_schedule_name(lms_schedule_kind kind);
/* Learning rate at 0-based step: lr·(step+1)/warmup during warm-up, then
 * constant lr, or cosine / linear decay from lr to min_lr at step total-1. */
float lms_schedule_lr(const lms_schedule *s, int step);

typedef struct {
    float beta1, beta2, eps, weight_decay;
    size_t n;
    float *m, *v; /* owned (unless borrowed), n each */
    int step;     /* number of updates done */
    int borrowed; /* m and v belong to someone else (lms_adamw_use_state) */
} lms_adamw;

lms_status lms_adamw_init(lms_adamw *o, size_t n, float beta1, float beta2, float eps,
                          float weight_decay);
void lms_adamw_free(lms_adamw *o);
/* One update over every view of the layout; gradients are multiplied by
 * grad_scale first (clipping). */
lms_status lms_adamw_step(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                          const lms_tensor_view *views, int nviews, float lr, float grad_scale);

/* The same update on the elements in [lo[k], hi[k]) of the flat buffers
 * only (k < nranges; the views clipped to them): a rank's share when the
 * buffers are shared between ranks. Element by element the arithmetic is
 * lms_adamw_step's, so the bits are too. */
lms_status lms_adamw_step_ranges(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                                 const lms_tensor_view *views, int nviews, float lr, float grad_scale,
                                 const size_t *lo, const size_t *hi, int nranges);
/* Makes m and v (n floats each, owned by the caller and outliving o's use)
 * o's moments, in place of its own (freed here). */
void lms_adamw_use_state(lms_adamw *o, float *m, float *v);

/* PyTorch's clip_grad_norm_ factor: max_norm/(norm+1e-6) when that is below
 * 1, else 1; max_norm <= 0 disables clipping. */
float lms_clip_scale(double norm, float max_norm);

/* ---- loss scaling (fp16; docs/mixed-precision.md) ----
 * Dynamic: the loss is multiplied by `scale` (initially 2^16) before
 * backward; a step whose gradients hold an inf or NaN on any rank is
 * skipped and the scale halved (not below min_scale); after `window`
 * clean steps in a row the scale doubles. Static (dynamic = 0): the scale
 * never changes, overflowing steps are still skipped. */
typedef struct {
    int dynamic;
    float scale, min_scale;
    int window;      /* clean steps before the scale doubles */
    int clean;       /* clean steps since the scale last changed (or the last skip) */
    int skipped;     /* steps skipped in all */
    int in_a_row;    /* steps skipped in a row */
} lms_loss_scaler;

/* Persistent overflow: a static scale gives up after this many skipped
 * steps in a row; a dynamic one when it overflows at min_scale. */
#define LMS_LOSS_SCALE_MAX_SKIPS 10

void lms_loss_scaler_init(lms_loss_scaler *s, float scale, int dynamic, int window, float min_scale);
/* After a step's gradients are checked (finite: no inf or NaN on any
 * rank): returns 1 when the step must be skipped, and moves the scale.
 * LMS_ERR_NUMERIC in *st (and 1) when the overflow persists (see above). */
int lms_loss_scaler_update(lms_loss_scaler *s, int finite, lms_status *st);

#ifdef __cplusplus
}
#endif
#endif
