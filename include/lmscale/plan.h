/* lmscale estimation: FLOPs, MFU. Conventions in docs/mfu.md. */
#ifndef LMSCALE_PLAN_H
#define LMSCALE_PLAN_H

#include "lmscale/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Model FLOPs per trained token (forward + backward): 6·N + 12·L·C·T with N
 * from lms_gpt_flop_params (PaLM / nanoGPT convention). */
double lms_flops_per_token(const lms_gpt_config *cfg, int T);
/* Megatron-LM's count for one iteration of B sequences of length s:
 * 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)). */
double lms_megatron_flops(double B, double s, double l, double h, double V);
/* Model FLOPs utilisation in [0,1]: achieved model FLOP/s over peak. */
double lms_mfu(double flops_per_token, double tokens_per_s, double peak_tflops);

#ifdef __cplusplus
}
#endif
#endif
