/* AdamW over the flat buffers, one backend call per tensor view so that
 * weight decay applies to 2-D weights only. */
#include "lmscale/optim.h"

#include <stdint.h>
#include <string.h>

lms_status lms_adamw_init(lms_adamw *o, size_t n, float beta1, float beta2, float eps,
                          float weight_decay) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->n = n;
    lms_status st;
    LMS_TRY(lms_alloc_checked((void **)&o->m, n * sizeof(float), "AdamW first moments"));
    LMS_TRY(lms_alloc_checked((void **)&o->v, n * sizeof(float), "AdamW second moments"));
    return LMS_OK;
fail:
    lms_adamw_free(o);
    return st;
}

void lms_adamw_free(lms_adamw *o) {
    if (!o) return;
    if (!o->borrowed) {
        lms_free(o->m);
        lms_free(o->v);
    }
    memset(o, 0, sizeof *o);
}

void lms_adamw_use_state(lms_adamw *o, float *m, float *v) {
    if (!o->borrowed) {
        lms_free(o->m);
        lms_free(o->v);
    }
    o->m = m;
    o->v = v;
    o->borrowed = 1;
}

/* views clipped to [lo, hi) */
static lms_status update(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                         const lms_tensor_view *views, int nviews, lms_adamw_args *a, size_t lo, size_t hi) {
    for (int i = 0; i < nviews; i++) {
        const lms_tensor_view *t = &views[i];
        size_t a0 = t->offset > lo ? t->offset : lo, a1 = t->offset + t->numel < hi ? t->offset + t->numel : hi;
        if (a0 >= a1) continue;
        a->weight_decay = t->decay ? o->weight_decay : 0.0f;
        LMS_CHECK(be->i->adamw(be, params + a0, grads + a0, o->m + a0, o->v + a0, a1 - a0, a));
    }
    return LMS_OK;
}

static lms_adamw_args args_of(const lms_adamw *o, float lr, float grad_scale) {
    lms_adamw_args a = {.lr = lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                        .step = o->step, .grad_scale = grad_scale};
    return a;
}

lms_status lms_adamw_step(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                          const lms_tensor_view *views, int nviews, float lr, float grad_scale) {
    o->step++;
    lms_adamw_args a = args_of(o, lr, grad_scale);
    return update(o, be, params, grads, views, nviews, &a, 0, SIZE_MAX);
}

lms_status lms_adamw_step_ranges(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                                 const lms_tensor_view *views, int nviews, float lr, float grad_scale,
                                 const size_t *lo, const size_t *hi, int nranges) {
    o->step++;
    lms_adamw_args a = args_of(o, lr, grad_scale);
    for (int k = 0; k < nranges; k++) LMS_CHECK(update(o, be, params, grads, views, nviews, &a, lo[k], hi[k]));
    return LMS_OK;
}
