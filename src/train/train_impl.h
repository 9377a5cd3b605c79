/* Internal to src/train: the ZeRO strategy's constructor (sync_zero.c). */
#ifndef LMS_TRAIN_IMPL_H
#define LMS_TRAIN_IMPL_H

#include "lmscale/train.h"

/* s->m, s->be and s->dp are set; builds lms_zero at `stage` and fills s. */
lms_status lms_grad_sync_zero_init(lms_grad_sync *s, int stage);

#endif
