/* Internal to src/model: the tensor-parallel pieces (gpt_tp.c) that the
 * pieces of pieces.c hand over to when m->tp is set; same contracts as
 * theirs (model.h). */
#ifndef LMS_MODEL_TP_H
#define LMS_MODEL_TP_H

#include "lmscale/model.h"

lms_status lms_gpt_tp_embed_forward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T, int pos0,
                                    float *out);
lms_status lms_gpt_tp_embed_backward(lms_gpt *m, lms_backend *be, const int32_t *tokens, int B, int T,
                                     const float *dx);
lms_status lms_gpt_tp_block_forward(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *a,
                                    float *out, int B, int T, struct lms_kv_cache *kv);
lms_status lms_gpt_tp_block_backward(lms_gpt *m, lms_backend *be, int l, const float *in,
                                     const lms_gpt_layer_acts *a, float *dx, lms_gpt_grad_acts *g, int B, int T);
lms_status lms_gpt_tp_head_forward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                   const int32_t *targets, int B, int T, float *loss);
lms_status lms_gpt_tp_head_backward(lms_gpt *m, lms_backend *be, const float *in, lms_gpt_head_acts *h,
                                    const int32_t *targets, float dloss, float *dx, lms_gpt_grad_acts *g, int B,
                                    int T);

/* pieces.c: a decoding step's attention against the cache (kv->C columns,
 * NH heads of them); the whole model's or a tp rank's */
lms_status lms_gpt_attend_cached(lms_backend *be, int l, int NH, const float *qkv, float *atty,
                                 struct lms_kv_cache *kv);

#endif
