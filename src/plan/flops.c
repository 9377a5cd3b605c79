/* FLOP counts and MFU (docs/mfu.md). */
#include "lmscale/plan.h"

double lms_flops_per_token(const lms_gpt_config *cfg, int T) {
    return 6.0 * (double)lms_gpt_flop_params(cfg) + 12.0 * cfg->L * (double)cfg->C * T;
}

double lms_megatron_flops(double B, double s, double l, double h, double V) {
    return 96.0 * B * s * l * h * h * (1.0 + s / (6.0 * h) + V / (16.0 * l * h));
}

double lms_mfu(double flops_per_token, double tokens_per_s, double peak_tflops) {
    if (peak_tflops <= 0) return 0.0;
    return flops_per_token * tokens_per_s / (peak_tflops * 1e12);
}
