/* Internal: pieces shared by the fast CPU backend's files. */
#ifndef LMS_FAST_IMPL_H
#define LMS_FAST_IMPL_H

#include "lmscale/backend.h"

void lms_fast_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B,
                            int T, int C, int NH);
void lms_fast_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int C, int NH);

#endif
