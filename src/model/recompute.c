/* Activation recomputation (model.h, lms_recompute; docs/recompute.md):
 * what backward recomputes before each block when its activation set did
 * not keep everything. The ops and their inputs are exactly the forward's,
 * so the recomputed activations are bit-identical to the ones a NONE set
 * keeps, and so are the losses and gradients. */
#include "lmscale/model.h"

lms_status lms_gpt_block_recompute(lms_gpt *m, lms_backend *be, int l, const float *in, lms_gpt_layer_acts *la,
                                   float *out, int B, int T, lms_recompute rc) {
    const lms_gpt_config *c = &m->cfg;
    const size_t N = (size_t)B * T;
    const int tp = c->tp > 1 ? c->tp : 1; /* a tensor-parallel part: its heads, its MLP columns */
    switch (rc) {
    case LMS_RECOMPUTE_NONE:
        return LMS_OK;
    case LMS_RECOMPUTE_SELECTIVE: /* no parameters read: no hooks; no communication */
        LMS_CHECK(be->i->attention_fwd(be, la->atty, la->att_lse, la->qkv, B, T, c->C / tp, c->NH / tp));
        return be->i->gelu_fwd(be, la->fch_gelu, la->fch, N * 4 * (size_t)(c->C / tp));
    case LMS_RECOMPUTE_FULL: /* the block again (ZeRO-3 gathers its unit again; tp: its collectives again) */
        return lms_gpt_block_forward(m, be, l, in, la, out, B, T, NULL);
    }
    return lms_errorf(LMS_ERR_INTERNAL, "unknown recompute mode %d", (int)rc);
}
