/* Loss scaling for fp16 training (optim.h, lms_loss_scaler): the seeds'
 * dynamic algorithm (Micikevicius et al. 2018, Megatron-LM / Apex's
 * DynamicGradScaler without hysteresis) and a static scale. */
#include "lmscale/optim.h"

#include <string.h>

void lms_loss_scaler_init(lms_loss_scaler *s, float scale, int dynamic, int window, float min_scale) {
    memset(s, 0, sizeof *s);
    s->scale = scale;
    s->dynamic = dynamic;
    s->window = window > 0 ? window : 1;
    s->min_scale = min_scale;
}

int lms_loss_scaler_update(lms_loss_scaler *s, int finite, lms_status *st) {
    *st = LMS_OK;
    if (finite) {
        s->in_a_row = 0;
        if (s->dynamic && ++s->clean >= s->window) {
            s->scale *= 2.0f;
            s->clean = 0;
        }
        return 0;
    }
    s->skipped++;
    s->in_a_row++;
    s->clean = 0;
    if (s->dynamic) {
        if (s->scale <= s->min_scale) {
            *st = lms_errorf(LMS_ERR_NUMERIC, "the gradients are still inf/NaN at the minimum loss scale %g (%d "
                             "steps skipped in a row): the model diverged; lower --lr, or resume from an earlier "
                             "checkpoint", s->min_scale, s->in_a_row);
            return 1;
        }
        s->scale = s->scale * 0.5f < s->min_scale ? s->min_scale : s->scale * 0.5f;
    } else if (s->in_a_row >= LMS_LOSS_SCALE_MAX_SKIPS) {
        *st = lms_errorf(LMS_ERR_NUMERIC, "the gradients overflowed in %d steps in a row at the static loss scale %g: "
                         "lower --loss-scale, or drop it for dynamic scaling", s->in_a_row, s->scale);
    }
    return 1;
}
