/* AdamW over the flat buffers, one backend call per tensor view so that
 * weight decay applies to 2-D weights only. */
#include "lmscale/optim.h"

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
    lms_free(o->m);
    lms_free(o->v);
    memset(o, 0, sizeof *o);
}

lms_status lms_adamw_step(lms_adamw *o, lms_backend *be, float *params, const float *grads,
                          const lms_tensor_view *views, int nviews, float lr, float grad_scale) {
    o->step++;
    lms_adamw_args a = {.lr = lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                        .step = o->step, .grad_scale = grad_scale};
    for (int i = 0; i < nviews; i++) {
        const lms_tensor_view *t = &views[i];
        a.weight_decay = t->decay ? o->weight_decay : 0.0f;
        LMS_CHECK(be->i->adamw(be, params + t->offset, grads + t->offset, o->m + t->offset, o->v + t->offset,
                               t->numel, &a));
    }
    return LMS_OK;
}
