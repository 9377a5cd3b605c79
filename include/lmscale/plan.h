/* lmscale estimation and planning: FLOPs, memory and time of a training
 * layout, and a planner that picks the layout (docs/estimate.md,
 * docs/plan.md). Conventions of the FLOP counts: docs/mfu.md. */
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

/* ---- a training layout ---- */
typedef enum { LMS_PREC_FP32 = 0, LMS_PREC_BF16, LMS_PREC_FP16 } lms_precision;
/* lms_recompute: model.h */
lms_status lms_precision_parse(const char *s, lms_precision *out);
lms_status lms_recompute_parse(const char *s, lms_recompute *out);
const char *lms_precision_name(lms_precision p);
const char *lms_recompute_name(lms_recompute r);

typedef struct {
    int world;         /* processes of the job; 0: dp·tp·pp */
    int dp, tp, pp;    /* degrees; dp 0: world / (tp·pp) */
    int vpp;           /* virtual pipeline stages per rank (interleaved 1F1B); 0 or 1: none */
    int seq_len;       /* 0: the model's maximum, at most 1024 */
    int global_batch;  /* sequences per optimizer step */
    int micro_batch;   /* sequences per forward/backward; 0: the default */
    int zero;          /* ZeRO stage 0..3 */
    lms_precision prec;
    lms_recompute recompute;
    int seq_parallel;  /* Megatron sequence parallelism (tp > 1) */
    int pp_uneven;     /* the stages' layer counts are given (train --pp-layers): L need not divide by pp */
    int pp_gpipe;      /* the GPipe schedule (all forwards, then all backwards) instead of 1F1B */
    /* filled by lms_layout_check */
    int accum;         /* micro-batches per data-parallel rank per step */
} lms_layout;

/* The one check of a layout against a model, shared by `train`, `estimate`
 * and `plan`: world = dp·tp·pp, heads and vocabulary against tp, layers
 * against pp·vpp, the batch against dp·micro-batch, the sequence length
 * against the model, the ZeRO stage. Fills the defaults (dp, vpp,
 * seq_len, micro_batch) and accum. Errors name the flag and the fix. */
lms_status lms_layout_check(lms_layout *lo, const lms_gpt_config *cfg);

/* ---- estimate: memory, FLOPs, time of one layout ---- */
/* Whose memory layout to model: lmscale's own fp32 CPU kernels (exact
 * buffers, tp = pp = 1 only), or a Megatron-style GPU implementation
 * (Korthikanti et al. activations, mixed-precision state). */
typedef enum { LMS_IMPL_AUTO = 0, LMS_IMPL_LMSCALE, LMS_IMPL_MEGATRON } lms_impl;

typedef struct {
    lms_impl impl;          /* as asked; the estimate says which it used */
    double overhead_bytes;  /* fixed per-process memory (runtime, libraries); < 0: the default */
    double data_tokens;     /* lmscale: tokens of training data held in memory (int32 each) */
    double bucket_bytes;    /* lmscale: plain DP's all-reduce bucket (train --bucket-mb); 0: 25 MiB */
} lms_estimate_opts;

typedef struct {
    lms_impl impl;
    double params;          /* whole model (lmscale's count: padded vocabulary, wpe) */
    double params_rank;     /* held by the largest rank before ZeRO (its stage, its tp part) */
    /* per-rank bytes, on the rank that needs the most */
    double weights, weights_work;   /* persistent; gathered working buffers (ZeRO-3) */
    double grads, grads_work;       /* persistent; reduce-scatter buffers */
    double optim;                   /* AdamW moments (+ fp32 master weights in mixed precision) */
    double acts;                    /* activations of the micro-batches in flight */
    double acts_layer;              /* Korthikanti's per-layer bytes for one micro-batch, this variant */
    int inflight;                   /* micro-batches whose activations the first stage holds */
    double buffers;                 /* communication buffers, logits, token buffers */
    double overhead;                /* fixed per-process overhead */
    double total;
    /* FLOPs per iteration (global batch) */
    double flops_megatron;          /* 96·B·s·l·h²(1 + s/6h + V/16lh): with full recompute */
    double flops_megatron_norecompute; /* the same with 72 */
    double flops_hardware;          /* what this layout executes (recompute included) */
    double flops_model;             /* (6N + 12LCT)·tokens: model FLOPs */
    double flops_per_token;         /* 6N + 12LCT */
} lms_estimate;

/* The layout must have passed lms_layout_check. */
lms_status lms_estimate_run(const lms_gpt_config *cfg, const lms_layout *lo, const lms_estimate_opts *o,
                            lms_estimate *e);
/* Days to train `tokens` tokens of a P-parameter model on n devices that
 * each sustain x FLOP/s: (8 with full recompute, else 6)·T·P/(n·x) / 86400. */
double lms_train_days(double tokens, double params, double n, double flops_per_s, int full_recompute);

/* Does the layout fit in `budget` bytes per device? When not, by how
 * much, and which single changes (ZeRO stage, recompute, sequence
 * parallelism, a smaller micro-batch, more tp or pp for the same devices)
 * would make it fit; advice is a sentence for the user. */
typedef struct {
    int fits;
    double need, budget, over;
    char advice[1024];
} lms_fit;
lms_status lms_fit_check(const lms_gpt_config *cfg, const lms_layout *lo, const lms_estimate_opts *o,
                         double budget, lms_fit *fit);

/* ---- the planner (docs/plan.md) ---- */
typedef struct {
    char name[32];
    int devices_per_node, nodes;
    double mem_bytes;        /* per device */
    double peak_flops;       /* per device, dense, at the training dtype (FLOP/s) */
    double mem_bw;           /* device memory bandwidth, bytes/s */
    double intra_bw, intra_lat; /* within a node, per device and direction: bytes/s, s */
    double inter_bw, inter_lat; /* between nodes, per device */
    /* efficiency model: a GEMM of size g = 1/(1/m + 1/n + 1/k) reaches
     * gemm_eff·g/(g + gemm_half) of peak; elementwise work moves
     * mem_factor x the activation bytes it stores through memory */
    double gemm_eff, gemm_half, mem_factor;
    double dp_overlap;       /* fraction of the last backward the DP reduction hides behind */
    double op_overhead;      /* seconds per kernel launch / parallel region */
    lms_impl impl;           /* lmscale (CPU processes) or megatron (GPUs) */
    lms_precision prec;      /* the dtype peak_flops is for */
} lms_cluster;

/* Presets: dgx-a100, dgx-h100, cpu (this kind of machine: one node, one
 * device per core, lmscale's CPU kernels). nodes and devices_per_node of a
 * preset may be changed after. */
lms_status lms_cluster_preset(const char *name, lms_cluster *c);
const char *lms_cluster_preset_names(void);

/* Predicted step time of one layout, and its parts. */
typedef struct {
    lms_layout lo;
    lms_estimate est;
    double step_s;           /* the whole optimizer step */
    double compute_s;        /* forward + backward (+ recompute) of every micro-batch, no bubble */
    double bubble_s;         /* pipeline fill and drain */
    double tp_comm_s, pp_comm_s, dp_comm_s; /* dp: the part backward does not hide */
    double optim_s;
    double tokens_per_s;
    double tflops_hw;        /* executed FLOP/s per device (recompute counted), /1e12 */
    double tflops_megatron;  /* Megatron's 96·B·s·l·h²(...) per device per second, /1e12 */
    double mfu;              /* model FLOPs (6N + 12LCT) per device over peak */
} lms_plan_row;

lms_status lms_plan_time(const lms_gpt_config *cfg, const lms_layout *lo, const lms_cluster *cl,
                         const lms_estimate_opts *o, lms_plan_row *r);

/* What the enumeration may vary: 0 / -1 fields are free. */
typedef struct {
    int dp, tp, pp, vpp, micro_batch, zero; /* 0 (zero: -1): any */
    int recompute;                      /* -1: any, else lms_recompute */
    int seq_parallel;                   /* -1: any, 0 off, 1 on */
    int max_micro_batch;                /* 0: 64 */
} lms_plan_space;

/* Enumerates the layouts of devices_per_node·nodes devices (GPUs: one
 * process each; cpu: processes x threads = cores) for a global batch,
 * keeps those that fit, sorts them by step time (fastest first). *rows
 * malloc'ed (caller frees); *nfit of them fit, *ntried were valid layouts;
 * *smallest (may be NULL) is the valid layout that needs the least memory. */
lms_status lms_plan_search(const lms_gpt_config *cfg, int seq_len, int global_batch, const lms_cluster *cl,
                           const lms_plan_space *sp, const lms_estimate_opts *o, lms_plan_row **rows,
                           int *nfit, int *ntried, lms_plan_row *smallest);

#ifdef __cplusplus
}
#endif
#endif
