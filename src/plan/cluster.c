/* Cluster presets for the planner (plan.h; numbers and sources in
 * docs/plan.md). */
#include "lmscale/plan.h"

#include <stdio.h>
#include <string.h>

#define GIB 1073741824.0

static const lms_cluster PRESETS[] = {
    /* 8 x A100-SXM4-80GB: 312 TFLOP/s bf16 dense, 2.0 TB/s HBM2e; NVLink 3 600 GB/s (300 GB/s each
     * way); 8 x 200 Gb/s HDR InfiniBand per node (25 GB/s per GPU). Efficiency constants: plan.md */
    {.name = "dgx-a100", .devices_per_node = 8, .nodes = 1, .mem_bytes = 80 * GIB, .peak_flops = 312e12,
     .mem_bw = 2.0e12, .intra_bw = 300e9, .intra_lat = 5e-6, .inter_bw = 25e9, .inter_lat = 10e-6,
     .gemm_eff = 0.68, .gemm_half = 32, .mem_factor = 3, .dp_overlap = 0, .op_overhead = 0,
     .impl = LMS_IMPL_MEGATRON, .prec = LMS_PREC_BF16},
    /* 8 x H100-SXM5-80GB: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3; NVLink 4 900 GB/s (450 each way);
     * 8 x 400 Gb/s NDR InfiniBand per node (50 GB/s per GPU). Constants unchecked. */
    {.name = "dgx-h100", .devices_per_node = 8, .nodes = 1, .mem_bytes = 80 * GIB, .peak_flops = 989e12,
     .mem_bw = 3.35e12, .intra_bw = 450e9, .intra_lat = 5e-6, .inter_bw = 50e9, .inter_lat = 10e-6,
     .gemm_eff = 0.75, .gemm_half = 48, .mem_factor = 3, .dp_overlap = 0, .op_overhead = 0,
     .impl = LMS_IMPL_MEGATRON, .prec = LMS_PREC_BF16},
    /* this machine: 2 cores (AMD EPYC, AVX2 + FMA), 24 GiB; one device = one core; processes talk
     * through shared memory (Open MPI). peak: the best sgemm per core measured; the rest fitted to
     * bench/plan_bench.sh on 2026-12-01 (plan.md) */
    {.name = "cpu", .devices_per_node = 2, .nodes = 1, .mem_bytes = 20 * GIB, .peak_flops = 87.5e9,
     .mem_bw = 8e9, .intra_bw = 1e9, .intra_lat = 20e-6, .inter_bw = 1e9, .inter_lat = 50e-6,
     .gemm_eff = 1.0, .gemm_half = 48, .mem_factor = 1, .dp_overlap = 0, .op_overhead = 5e-6,
     .impl = LMS_IMPL_LMSCALE, .prec = LMS_PREC_FP32},
};

const char *lms_cluster_preset_names(void) { return "dgx-a100, dgx-h100, cpu"; }

lms_status lms_cluster_preset(const char *name, lms_cluster *c) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (strcmp(name, PRESETS[i].name) == 0) {
            *c = PRESETS[i];
            return LMS_OK;
        }
    memset(c, 0, sizeof *c);
    return lms_errorf(LMS_ERR_INVALID_ARG, "--cluster '%s' is not a known preset (choose %s, or describe it "
                      "with --devices-per-node, --nodes, --device-memory, --peak-tflops, ...)", name,
                      lms_cluster_preset_names());
}
