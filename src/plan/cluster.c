/* Cluster presets for the planner (plan.h; numbers and sources in
 * docs/plan.md). */
#include "lmscale/plan.h"

#include <stdio.h>
#include <string.h>

static const double GiB = 1073741824.0;

const char *lms_cluster_preset_names(void) { return "dgx-a100, dgx-h100, cpu"; }

lms_status lms_cluster_preset(const char *name, lms_cluster *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->nodes = 1;
    if (strcmp(name, "dgx-a100") == 0) {
        /* 8 x A100-SXM4-80GB: 312 TFLOP/s bf16 dense, 2.0 TB/s HBM2e; NVLink 3 600 GB/s
         * (300 GB/s each way); 8 x 200 Gb/s HDR InfiniBand per node (25 GB/s per GPU) */
        c->devices_per_node = 8;
        c->mem_bytes = 80 * GiB;
        c->peak_flops = 312e12;
        c->mem_bw = 2.0e12;
        c->intra_bw = 300e9;
        c->intra_lat = 5e-6;
        c->inter_bw = 25e9;
        c->inter_lat = 10e-6;
        c->gemm_eff = 0.68;
        c->gemm_half = 32;
        c->mem_factor = 3;
        c->dp_overlap = 0;
        c->op_overhead = 0;
        c->impl = LMS_IMPL_MEGATRON;
        c->prec = LMS_PREC_BF16;
    } else if (strcmp(name, "dgx-h100") == 0) {
        /* 8 x H100-SXM5-80GB: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3; NVLink 4 900 GB/s
         * (450 each way); 8 x 400 Gb/s NDR InfiniBand per node (50 GB/s per GPU) */
        c->devices_per_node = 8;
        c->mem_bytes = 80 * GiB;
        c->peak_flops = 989e12;
        c->mem_bw = 3.35e12;
        c->intra_bw = 450e9;
        c->intra_lat = 5e-6;
        c->inter_bw = 50e9;
        c->inter_lat = 10e-6;
        c->gemm_eff = 0.75;
        c->gemm_half = 48;
        c->mem_factor = 3;
        c->dp_overlap = 0;
        c->op_overhead = 0;
        c->impl = LMS_IMPL_MEGATRON;
        c->prec = LMS_PREC_BF16;
    } else if (strcmp(name, "cpu") == 0) {
        /* this machine: 2 cores (AMD EPYC, AVX2 + FMA), 24 GiB shared; one device = one core;
         * processes talk through shared memory (Open MPI). Calibrated by bench/plan_bench.sh. */
        c->devices_per_node = 2;
        c->mem_bytes = 20 * GiB;
        c->peak_flops = 30e9;
        c->mem_bw = 8e9;
        c->intra_bw = 2e9;
        c->intra_lat = 20e-6;
        c->inter_bw = 1e9;
        c->inter_lat = 50e-6;
        c->gemm_eff = 1.0;
        c->gemm_half = 24;
        c->mem_factor = 3;
        c->dp_overlap = 0.5;
        c->op_overhead = 20e-6;
        c->impl = LMS_IMPL_LMSCALE;
        c->prec = LMS_PREC_FP32;
    } else {
        return lms_errorf(LMS_ERR_INVALID_ARG, "--cluster '%s' is not a known preset (choose %s, or describe "
                          "it with --devices-per-node, --nodes, --device-memory, --peak-tflops, ...)", name,
                          lms_cluster_preset_names());
    }
    return LMS_OK;
}
