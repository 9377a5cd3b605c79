/* lmscale train: one training step, and the gradient synchronisation it
 * runs behind one interface.
 *
 * A step (lms_trainer_step) is: zero the gradients; for each of `accum`
 * micro-batches, forward and backward (gradients accumulate); synchronise
 * the gradients over the data-parallel group; the global gradient norm;
 * clip; AdamW on what this rank owns. How gradients and optimizer state
 * are held and moved is a strategy (lms_grad_sync_i), implemented by
 *   none    one data-parallel rank: nothing to synchronise;
 *   dp      full gradients all-reduced in buckets overlapped with the last
 *           micro-batch's backward (parallel.h, lms_dp_sync);
 *   zero-N  ZeRO stages 1, 2, 3 (parallel.h, lms_zero).
 * The caller (the CLI) never asks which one runs.
 *
 * Process groups come from the topology (lms_groups_init): gradient
 * collectives and the mean loss use the DP group, the data offsets use the
 * DP rank, and MFU counts every rank of the world. */
#ifndef LMSCALE_TRAIN_H
#define LMSCALE_TRAIN_H

#include "lmscale/checkpoint.h"
#include "lmscale/data.h"
#include "lmscale/optim.h"
#include "lmscale/parallel.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where the starting parameters come from: a checkpoint (ck), Hugging Face
 * weights (hf_dir), else the seed. */
typedef struct {
    const lms_ckpt *ck;
    const char *hf_dir;
    uint64_t seed;
} lms_train_source;

typedef struct lms_grad_sync lms_grad_sync;

typedef struct lms_grad_sync_i {
    const char *name; /* "none", "dp", "zero-1", "zero-2", "zero-3" */
    /* The starting parameters (and AdamW state, from a checkpoint). */
    lms_status (*restore)(lms_grad_sync *s, const lms_train_source *src, lms_adamw *opt);
    /* Before the first micro-batch: zeroes the gradients held. */
    lms_status (*begin_step)(lms_grad_sync *s);
    /* The gradient-ready hook for one micro-batch's backward (last: the
     * step's last micro-batch); *fn NULL for none. */
    void (*grad_ready)(lms_grad_sync *s, int last, lms_grad_ready_fn *fn, void **ctx);
    /* After the last backward: every gradient this rank needs is summed
     * over the DP group. */
    lms_status (*finish)(lms_grad_sync *s);
    /* The global gradient norm (over every rank's part). */
    lms_status (*global_norm)(lms_grad_sync *s, double *norm);
    /* AdamW on this rank's part; then every rank holds the new parameters
     * it needs. */
    lms_status (*optimizer_step)(lms_grad_sync *s, lms_adamw *opt, float lr, float grad_scale);
    /* Writes this rank's pieces of a training checkpoint (every rank calls
     * it). *path: the checkpoint, malloc'ed, on every rank that took part;
     * NULL where this rank had nothing to write. */
    lms_status (*save)(lms_grad_sync *s, const char *root, const lms_ckpt_state *st, const lms_adamw *opt,
                       int keep_last, char **path);
    /* Makes m->params the whole model on this rank (for saving a model
     * file); a no-op where it already is. */
    lms_status (*gather_model)(lms_grad_sync *s);
    void (*free)(lms_grad_sync *s);
} lms_grad_sync_i;

struct lms_grad_sync {
    const lms_grad_sync_i *i;
    lms_gpt *m;        /* not owned */
    lms_backend *be;   /* not owned */
    lms_comm *dp;      /* the data-parallel group; not owned */
    lms_comm *world;   /* every rank (checkpoints under tensor parallelism); not owned */
    size_t optim_n;    /* floats of AdamW state on this rank */
    int forward_collective; /* 1: forward needs every DP rank (parameters are gathered) */
    lms_zero_mem mem;  /* bytes held on this rank, persistent and working */
    char how[96];      /* for the start-up line: "all-reduce buckets of 25.0 MB", ... */
    void *impl;        /* owned */
};

/* The lms_gpt_init_ex flags the strategy of (dp size, zero stage) needs. */
unsigned lms_grad_sync_model_flags(int dp_size, int zero);
/* Chooses and builds the strategy for model m (created with the flags
 * above) over the DP group dp: zero > 0 is ZeRO at that stage, else dp
 * when dp has more than one rank, else none. */
lms_status lms_grad_sync_init(lms_grad_sync *s, int zero, lms_comm *dp, lms_gpt *m, lms_backend *be,
                              size_t bucket_bytes);
void lms_grad_sync_free(lms_grad_sync *s);

/* ---- the trainer ---- */
typedef struct {
    int tp;             /* tensor-parallel degree (0 or 1: none) */
    int seq_parallel;   /* Megatron sequence parallelism (with tp > 1) */
    int zero;           /* ZeRO stage, 0 = off */
    float bucket_mb;    /* DP all-reduce bucket size */
    int global_batch;   /* sequences per step, over all DP ranks */
    int micro_batch;    /* sequences per forward/backward on one rank */
    int seq_len;
    lms_schedule sched; /* learning rate per step */
    float beta1, beta2, eps, weight_decay;
    float grad_clip;    /* global-norm clip, 0 = off */
    /* pipeline parallelism (src/train/pipe.c); pp 0 or 1 = off */
    int pp;             /* stages */
    int vpp;            /* model chunks per stage (interleaved), 0 or 1 = one */
    lms_pp_schedule pp_schedule;
    const int *pp_layers; /* NULL: an even split; else pp layer counts (--pp-layers) */
    lms_recompute recompute; /* what the activation set keeps (model.h) */
    /* mixed precision (docs/mixed-precision.md): LMS_DT_F32, or LMS_DT_BF16 /
     * LMS_DT_F16 storage of the compute copy of the parameters, activations
     * and activation gradients over fp32 master weights, AdamW moments and
     * gradient accumulation */
    lms_dtype dtype;
    float loss_scale;       /* fp16: > 0 a static scale; 0 dynamic */
    float initial_loss_scale, min_loss_scale; /* dynamic: 0 means 65536 and 1 */
    int loss_scale_window;  /* dynamic: clean steps before the scale doubles; 0 means 1000 */
} lms_trainer_opts;

/* What the pipeline measured in the last step (one entry per stage,
 * gathered over the pipeline group; every rank holds them). */
typedef struct {
    int stages, chunks, micro_batches;
    double *idle;     /* idle time / the schedule's time: waiting for a neighbour */
    double *bubble;   /* idle time / compute time: (p-1)/m in theory (GPipe, 1F1B) */
    int *peak_sets;   /* most micro-batches whose activations a stage held at once */
} lms_pp_stats;

typedef struct {
    lms_topology topo;  /* from the world and (dp, tp, pp) */
    lms_groups groups;  /* owned */
    lms_comm *dp;       /* the data-parallel group (groups.dp, or the world when it spans it); not owned */
    lms_gpt m;          /* owned; under tensor parallelism this rank's part (m.cfg.tp) */
    lms_gpt_config cfg; /* the whole model's config (checkpoints, FLOPs) */
    lms_gpt_tp tpx;     /* m.tp when tp > 1 */
    lms_gpt_acts acts;  /* owned: one micro-batch's activations (also for validation) */
    lms_adamw opt;      /* owned */
    lms_grad_sync sync; /* owned */
    lms_backend *be;    /* not owned */
    lms_trainer_opts o;
    int accum;          /* micro-batches per step on this rank */
    uint64_t first_sample; /* this DP rank's first window of a step */
    int32_t *x, *y;     /* owned, one micro-batch */
    struct lms_obs *obs; /* NULL, or phase timing (obs.h); not owned */
    /* mixed precision: forward and backward run on cbe (be itself in fp32,
     * else be wrapped by lowp); the model's parameter views point at lp, the
     * master rounded to the dtype at each step (ZeRO-3: each gathered unit
     * is rounded through lp_hooks instead) */
    lms_backend cbe;
    lms_lowp *lowp;            /* owned; NULL in fp32 */
    float *lp;                 /* owned; NULL in fp32 and ZeRO-3 */
    lms_gpt_hooks lp_hooks;
    const lms_gpt_hooks *inner_hooks;
    lms_loss_scaler scaler;    /* fp16 only (scale 1 otherwise) */
    struct lms_pipe *pipe; /* owned; NULL at pp = 1 */
} lms_trainer;

/* The result of one step: mean loss over the global batch, the global
 * gradient norm before clipping, the learning rate used. */
typedef struct {
    double loss, grad_norm;
    float lr;
    float loss_scale; /* the scale this step used (1 without fp16) */
    int skipped;      /* 1: inf/NaN gradients (fp16), the parameters did not change */
    /* What this rank handed to each group's operations during the step
     * (comm.h: coll_bytes, the collectives' nccl-tests size; sent_bytes, the
     * point-to-point sends); 0 for a group of one rank. docs/parallelism.md,
     * "Communication counts". */
    uint64_t tp_bytes, dp_bytes; /* collectives of the tp and the DP group */
    uint64_t pp_bytes, pp_sent_bytes, emb_bytes; /* pipeline group: collectives, sends; embedding group */
    double tp_comm_s; /* seconds in the tp collectives of forward and backward */
} lms_step_result;

/* Builds the topology (dp, tp, pp over world), the process groups, the
 * model for cfg, the gradient strategy and AdamW, and restores the starting
 * state from src. o->tp > 1 splits the model over the tp group (lms_gpt_tp);
 * pp > 1 (o->pp) runs the pipeline engine (docs/parallelism.md), whose
 * gradient strategy is "pp" (with tp > 1 each stage's pieces are split over
 * its tp group). */
lms_status lms_trainer_init(lms_trainer *t, const lms_trainer_opts *o, const lms_gpt_config *cfg, lms_comm *world,
                            int dp, lms_backend *be, const lms_train_source *src);
void lms_trainer_free(lms_trainer *t);
/* One optimizer step at 0-based `step` over the windows of ld that step
 * owns (step·global_batch + this rank's offset, ...). A non-finite loss or
 * norm is LMS_ERR_NUMERIC, before the parameters change. */
lms_status lms_trainer_step(lms_trainer *t, const lms_loader *ld, int step, lms_step_result *r);
/* 1 when this rank must take part in a forward pass outside the step
 * (validation): the strategy gathers parameters collectively. */
int lms_trainer_forward_is_collective(const lms_trainer *t);
/* Writes a training checkpoint (every rank calls it). */
lms_status lms_trainer_save(lms_trainer *t, const char *root, const lms_ckpt_state *st, int keep_last, char **path);
/* The backend forward passes outside the step (validation) run on: the
 * trainer's compute path (the dtype's rounding). */
lms_backend *lms_trainer_compute_backend(lms_trainer *t);
/* Leaves t->m holding the whole model with no hooks (for lms_model_save
 * and callers that keep the model); collective under ZeRO-3. Every rank
 * calls it; under pipeline parallelism only world rank 0 and the ranks of
 * its tp group then hold the whole model (the others keep their stage's
 * part), assembled there without a whole-model buffer anywhere else. */
lms_status lms_trainer_gather_model(lms_trainer *t);
/* A forward of tokens x (B, T) with targets y outside the step (validation)
 * on the compute path: *loss, their mean cross-entropy. Pipeline
 * parallelism: through the stages, each running its own layers; every rank
 * of the pipeline calls it and gets the last stage's loss. */
lms_status lms_trainer_forward(lms_trainer *t, const int32_t *x, const int32_t *y, int B, int T, float *loss);
/* The pipeline's measurements of the last step; NULL at pp = 1. */
const lms_pp_stats *lms_trainer_pp_stats(const lms_trainer *t);
/* Writes `, "pp_idle": [...], "pp_bubble": [...], "pp_peak_sets": [...]`
 * (JSON members for the metrics line) into buf; "" at pp = 1. */
void lms_trainer_pp_json(const lms_trainer *t, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
