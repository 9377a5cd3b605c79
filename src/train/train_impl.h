/* Internal to src/train: the ZeRO strategy's constructor (sync_zero.c). */
#ifndef LMS_TRAIN_IMPL_H
#define LMS_TRAIN_IMPL_H

#include "lmscale/train.h"

/* s->m, s->be and s->dp are set; builds lms_zero at `stage` and fills s. */
lms_status lms_grad_sync_zero_init(lms_grad_sync *s, int stage);
/* Tensor parallelism (sync_tp.c): the checkpoint pieces of elements
 * [start, start+count) of local tensor v under group (data[0..count)),
 * appended to *pc (grown; *n, *cap); and the whole-parameter save of the
 * full-gradient strategies, written by this rank's tp group. */
lms_status lms_sync_tp_add(const lms_gpt *m, const lms_tensor_view *v, const char *group, size_t start,
                           size_t count, const float *data, lms_ckpt_piece **pc, int *n, int *cap);
lms_status lms_grad_sync_save_tp(lms_grad_sync *s, const char *root, const lms_ckpt_state *st,
                                 const lms_adamw *opt, int keep_last, char **path);

#endif
