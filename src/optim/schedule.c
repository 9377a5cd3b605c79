/* Learning-rate schedules and gradient clipping. */
#include "lmscale/optim.h"

#include <math.h>
#include <string.h>

lms_status lms_schedule_parse(const char *name, lms_schedule_kind *kind) {
    if (strcmp(name, "constant") == 0) *kind = LMS_SCHED_CONSTANT;
    else if (strcmp(name, "cosine") == 0) *kind = LMS_SCHED_COSINE;
    else if (strcmp(name, "linear") == 0) *kind = LMS_SCHED_LINEAR;
    else
        return lms_errorf(LMS_ERR_INVALID_ARG, "--lr-schedule '%s' is not known (choose constant, "
                          "cosine or linear)", name);
    return LMS_OK;
}

const char *lms_schedule_name(lms_schedule_kind kind) {
    return kind == LMS_SCHED_COSINE ? "cosine" : kind == LMS_SCHED_LINEAR ? "linear" : "constant";
}

float lms_schedule_lr(const lms_schedule *s, int step) {
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    if (s->kind == LMS_SCHED_CONSTANT) return s->lr;
    int span = s->total - 1 - s->warmup;
    double r = span > 0 ? (double)(step - s->warmup) / span : 1.0;
    if (r < 0) r = 0;
    if (r > 1) r = 1;
    double coef = s->kind == LMS_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * r)) : 1.0 - r;
    return (float)(s->min_lr + coef * (s->lr - s->min_lr));
}

float lms_clip_scale(double norm, float max_norm) {
    if (max_norm <= 0.0f) return 1.0f;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}
