/* `lmscale train`: validate everything, then the training loop: one
 * lms_trainer_step per step (src/train: micro-batches, gradient sync,
 * clipping, AdamW), periodic validation and checkpoints, one log line and
 * one JSON metrics object per step. */
#include "cli.h"
#include "lmscale/obs.h"
#include "lmscale/optim.h"
#include "lmscale/parallel.h"
#include "lmscale/plan.h"
#include "lmscale/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void train_opts_default(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->comm = "auto";
    o->bucket_mb = 25.0f;
    o->comm_timeout = -1;
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    o->model = mo;
    o->val_fraction = 0.1f;
    o->batch_size = 8;
    o->steps = 100;
    o->lr = 3e-4f;
    o->min_lr = 3e-5f;
    o->schedule = "cosine";
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->grad_clip = 1.0f;
    o->seed = 1337;
    o->eval_interval = 100;
    o->eval_batches = 20;
    o->log_interval = 1;
    o->data_order = "random";
    o->backend = "cpu";
    o->pp_schedule = "1f1b";
    o->recompute = "none";
    o->dtype = "fp32";
    o->initial_loss_scale = 65536.0f;
    o->min_loss_scale = 1.0f;
    o->loss_scale_window = 1000;
}

typedef struct {
    lms_gpt *m;
    lms_backend *be;
    lms_gpt_acts *a;
} gpt_eval;

static lms_status gpt_forward(void *ctx, const int32_t *x, const int32_t *y, int B, int T, float *loss) {
    gpt_eval *e = ctx;
    return lms_gpt_forward(e->m, e->be, e->a, x, y, B, T, loss);
}

lms_status eval_loss_ex(lms_gpt *m, lms_backend *be, lms_gpt_acts *a, const lms_loader *ld, int B,
                        long max_batches, double *loss, long *tokens, lms_progress *prog) {
    gpt_eval e = {m, be, a};
    return eval_loss_fn(gpt_forward, &e, ld, B, max_batches, loss, tokens, prog);
}

/* validation through the trainer: its compute path, and under pipeline parallelism its stages */
static lms_status trainer_forward(void *ctx, const int32_t *x, const int32_t *y, int B, int T, float *loss) {
    return lms_trainer_forward(ctx, x, y, B, T, loss);
}

lms_status eval_loss_fn(eval_forward_fn fwd, void *ctx, const lms_loader *ld, int B, long max_batches,
                        double *loss, long *tokens, lms_progress *prog) {
    const int T = ld->T;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T), *y = malloc(sizeof(int32_t) * (size_t)B * T);
    if (!x || !y) {
        free(x);
        free(y);
        return lms_errorf(LMS_ERR_OOM, "out of memory for evaluation batches");
    }
    size_t nw = lms_loader_num_windows(ld), w = 0;
    double sum = 0;
    long ntok = 0, nb = 0;
    while (w < nw && (max_batches <= 0 || nb < max_batches)) {
        int b = 0;
        for (; b < B && w < nw; b++, w++) lms_loader_window(ld, w, x + (size_t)b * T, y + (size_t)b * T);
        float l;
        lms_status st = fwd(ctx, x, y, b, T, &l);
        if (st != LMS_OK) {
            free(x);
            free(y);
            return st;
        }
        sum += (double)l * b * T;
        ntok += (long)b * T;
        nb++;
        if (prog) lms_progress_update(prog, (double)ntok);
    }
    free(x);
    free(y);
    *loss = ntok ? sum / ntok : NAN;
    *tokens = ntok;
    return LMS_OK;
}

typedef struct {
    lms_comm *world; /* owned */
    lms_topology topo;
    int local_batch; /* sequences per rank per step */
    lms_gpt_config cfg;
    int T, micro, accum;
    lms_schedule sched;
    lms_data_order order;
    lms_backend be;
    lms_recompute recompute;
    lms_dtype dtype;
    train_ckpt_ctx ck;
    /* pipeline parallelism */
    int pp, vpp;
    lms_pp_schedule pp_sched;
    int pp_layers[1024], *pp_given; /* pp_given: pp_layers when --pp-layers was given */
} train_plan;

/* Every check that can fail on user input, before any compute. */
static lms_status validate(const train_opts *o, train_plan *p) {
    if (p->ck.have_cfg)
        p->cfg = p->ck.cfg; /* from --resume or --init */
    else
        LMS_CHECK(cli_model_config(&o->model, &p->cfg));
    /* the layout checks shared with estimate and plan (lms_layout_check, plan.h) */
    if (o->pp < 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--pp %d must be at least 1", o->pp);
    if (o->vpp < 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--virtual-stages %d must be at least 1", o->vpp);
    p->pp = o->pp > 1 ? o->pp : 1;
    p->vpp = o->vpp > 1 ? o->vpp : 1;
    lms_layout lo = {.world = p->world ? p->world->size : 1, .dp = p->topo.dp > 0 ? p->topo.dp : 1,
                     .tp = o->tp > 1 ? o->tp : 1, .pp = p->pp, .vpp = p->vpp, .seq_len = o->seq_len,
                     .global_batch = o->batch_size, .micro_batch = o->micro_batch_size, .zero = o->zero,
                     .pp_uneven = o->pp_layers != NULL, .seq_parallel = o->sequence_parallel};
    if (o->tp > p->cfg.NH)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d is more than the %d attention heads: each tensor-parallel "
                          "rank computes whole heads (lower --tp to a divisor of %d)", o->tp, p->cfg.NH, p->cfg.NH);
    if (o->sequence_parallel && o->tp <= 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--sequence-parallel splits the sequence over the tensor-parallel "
                          "group: give --tp 2 or more, or drop --sequence-parallel");
    LMS_CHECK(lms_layout_check(&lo, &p->cfg));
    /* the pipeline's own checks, before any compute (src/parallel/pipeline.c) */
    lms_pp_schedule asked;
    LMS_CHECK(lms_pp_schedule_parse(o->pp_schedule, &asked));
    LMS_CHECK(lms_pp_schedule_resolve(asked, p->vpp, &p->pp_sched));
    if (o->pp_layers) {
        int n;
        LMS_CHECK(lms_pp_layers_parse(o->pp_layers, p->pp_layers, 1024, &n));
        if (p->pp == 1)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers needs pipeline parallelism: give --pp %d too", n);
        int first[1025];
        LMS_CHECK(lms_pp_split_layers(p->cfg.L, p->pp, p->vpp, p->pp_layers, n, first));
        p->pp_given = p->pp_layers;
    }
    p->T = lo.seq_len;
    p->micro = lo.micro_batch;
    p->local_batch = o->batch_size / lo.dp;
    p->accum = lo.accum;
    if (!(o->bucket_mb > 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--bucket-mb %g must be positive", o->bucket_mb);
    if (o->steps < 1) return lms_errorf(LMS_ERR_INVALID_ARG, "--steps %d must be at least 1", o->steps);
    if (!(o->lr > 0) || !isfinite(o->lr))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--lr %g must be a positive number", o->lr);
    if (o->min_lr < 0 || o->min_lr > o->lr)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--min-lr %g must be between 0 and --lr %g", o->min_lr, o->lr);
    if (o->warmup < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--warmup-steps %d must not be negative", o->warmup);
    LMS_CHECK(lms_schedule_parse(o->schedule, &p->sched.kind));
    p->sched.lr = o->lr;
    p->sched.min_lr = o->min_lr;
    p->sched.warmup = o->warmup;
    p->sched.total = o->steps;
    if (!(o->beta1 >= 0 && o->beta1 < 1))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--beta1 %g must be in [0, 1)", o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--beta2 %g must be in [0, 1)", o->beta2);
    if (!(o->eps > 0)) return lms_errorf(LMS_ERR_INVALID_ARG, "--eps %g must be positive", o->eps);
    if (!(o->weight_decay >= 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--weight-decay %g must not be negative", o->weight_decay);
    if (!(o->grad_clip >= 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--grad-clip %g must not be negative (0 turns it off)",
                          o->grad_clip);
    if (o->eval_interval < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--eval-interval %d must not be negative (0 turns it off)",
                          o->eval_interval);
    if (o->eval_batches < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--eval-batches %d must be at least 1", o->eval_batches);
    if (o->log_interval < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--log-interval %d must be at least 1", o->log_interval);
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5f))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--val-fraction %g must be in [0, 0.5]", o->val_fraction);
    if (!(o->exit_duration_mins >= 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--exit-duration-mins %g must not be negative (0 = no limit)",
                          o->exit_duration_mins);
    if (!(o->peak_tflops >= 0))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--peak-tflops %g must not be negative", o->peak_tflops);
    if (o->threads < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--threads %d must not be negative (0 = all cores)", o->threads);
    LMS_CHECK(lms_data_order_parse(o->data_order, &p->order));
    LMS_CHECK(lms_recompute_parse(o->recompute, &p->recompute));
    lms_precision prec;
    LMS_CHECK(lms_precision_parse(o->dtype, &prec));
    p->dtype = prec == LMS_PREC_BF16 ? LMS_DT_BF16 : prec == LMS_PREC_FP16 ? LMS_DT_F16 : LMS_DT_F32;
    if (!(o->loss_scale >= 0) || !isfinite(o->loss_scale))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--loss-scale %g must be positive (a static scale) or 0 (dynamic)",
                          o->loss_scale);
    if (!(o->initial_loss_scale >= 1) || !(o->min_loss_scale > 0) || o->min_loss_scale > o->initial_loss_scale ||
        !isfinite(o->initial_loss_scale))
        return lms_errorf(LMS_ERR_INVALID_ARG, "--initial-loss-scale %g must be at least 1 and at least "
                          "--min-loss-scale %g (> 0)", o->initial_loss_scale, o->min_loss_scale);
    if (o->loss_scale_window < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--loss-scale-window %d must be at least 1", o->loss_scale_window);
    LMS_CHECK(lms_backend_init(&p->be, o->backend));
    return LMS_OK;
}

/* Fails early if path cannot be created, so that a long run does not end
 * unable to save. Leaves nothing behind. */
static lms_status check_writable(const char *path) {
    lms_atomic_file af;
    LMS_CHECK(lms_atomic_open(&af, path));
    lms_atomic_abort(&af);
    return LMS_OK;
}

/* The world communicator and the (dp, 1, pp) topology; rank 0 logs. */
static lms_status dp_setup(const train_opts *o, train_plan *p, lms_ctx *ctx) {
    LMS_CHECK(lms_comm_world(o->comm, NULL, NULL, &p->world));
    LMS_CHECK(lms_comm_set_timeout(p->world, o->comm_timeout));
    ctx->rank = p->world->rank;
    ctx->world = p->world->size;
    ctx->log.rank = ctx->rank;
    if (o->dp < 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--dp %d must be at least 1", o->dp);
    if (o->tp < 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d must be at least 1", o->tp);
    if (o->pp < 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--pp %d must be at least 1", o->pp);
    const int tp = o->tp > 1 ? o->tp : 1, pp = o->pp > 1 ? o->pp : 1, world = p->world->size;
    if (!o->dp && tp > 1 && world % (tp * pp) != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the job has %d processes, not a multiple of --tp %d x --pp %d (world "
                          "= dp x tp x pp): launch a multiple of %d processes (e.g. mpirun -np %d) or change --tp/--pp",
                          world, tp, pp, tp * pp, (world / (tp * pp) + 1) * tp * pp);
    const int dp = o->dp ? o->dp : world / (tp * pp) > 0 ? world / (tp * pp) : 1;
    return lms_topology_init(&p->topo, world, p->world->rank, dp, tp, pp);
}

/* Every rank must run the same configuration on the same data: compare a
 * hash of the options and of the tokens across ranks. */
static lms_status check_agreement(const train_opts *o, const train_plan *p, const lms_tokens *data) {
    if (p->world->size == 1) return LMS_OK;
    char buf[4096];
    snprintf(buf, sizeof buf, "%d %d %d %d %d|%d %d %d %d|%.9g %.9g %d %d|%.9g %.9g %.9g %.9g %.9g|%llu %d %d|%s|%d %.9g %d|%d %d %d %s|%zu %08x",
             p->cfg.L, p->cfg.NH, p->cfg.C, p->cfg.maxT, p->cfg.V, o->batch_size, p->micro, p->T, o->steps, o->lr,
             o->min_lr, o->warmup, (int)p->sched.kind, o->beta1, o->beta2, o->eps, o->weight_decay, o->grad_clip,
             (unsigned long long)o->seed, (int)p->order, o->eval_interval, p->be.i->name,
             p->topo.dp * 1000 + p->topo.tp * 10 + o->sequence_parallel, o->bucket_mb, o->zero + 4 * (int)p->dtype,
             p->pp, p->vpp, (int)p->pp_sched, o->pp_layers ? o->pp_layers : "-", data->n, lms_crc32(0, data->tokens, data->n * sizeof(int32_t)));
    int64_t h = (int64_t)(lms_hash_str(buf) >> 1), lo = 0, hi = 0;
    LMS_CHECK(p->world->i->allreduce(p->world, &h, &lo, 1, LMS_DT_I64, LMS_RED_MIN));
    LMS_CHECK(p->world->i->allreduce(p->world, &h, &hi, 1, LMS_DT_I64, LMS_RED_MAX));
    if (lo != hi)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the %d ranks disagree on the configuration or the training data: "
                          "give every rank the same flags and the same --data file", p->world->size);
    return LMS_OK;
}

lms_status train_run(const train_opts *o, const lms_tokens *train_tok, const lms_tokens *val_tok,
                     lms_gpt *keep, float *final_val_loss, int *stopped_early) {
    lms_status st = LMS_OK;
    train_plan p;
    memset(&p, 0, sizeof p);
    lms_tokens loaded = {0}, loaded_val = {0};
    lms_trainer tr;
    memset(&tr, 0, sizeof tr);
    train_metrics metrics = {0};
    train_stop stop = {0};
    const double t_begin = lms_now_s(); /* --exit-duration-mins counts from here */
    lms_tokenizer tok;
    lms_tokenizer_init_bytes(&tok);
    lms_ctx ctx;
    train_opts resumed;
    int start_step = 0;

    lms_ctx_init(&ctx, o->seed, o->threads);
    int have_tob = 0;
    LMS_TRY(dp_setup(o, &p, &ctx));
    ctx.log.all_ranks = o->log_all_ranks && p.world->size > 1;
    const int rank0 = p.world->rank == 0;
    LMS_TRY(train_ckpt_prepare(o, &p.ck, &tok, &ctx.log));
    char save_root[4096];
    if (p.ck.ck) { /* the run's settings from its checkpoint (docs/checkpoints.md) */
        LMS_TRY(train_resume_opts(o, &p.ck, &resumed, save_root, sizeof save_root, &ctx.log));
        o = &resumed;
    }
    LMS_TRY(validate(o, &p));
    if (p.ck.ck) LMS_TRY(train_ckpt_start(o, &p.ck, o->batch_size, p.T, &resumed.seed, &p.order, &start_step));
    train_obs tob; /* timing, --profile, --tensorboard-dir (train_obs.c) */
    have_tob = 1; /* train_obs_free undoes whatever train_obs_open did */
    LMS_TRY(train_obs_open(&tob, o, &p.world, &p.be));
    lms_obs *ob = tob.obs;
    /* data */
    if (!train_tok) {
        if (!o->data) {
            st = lms_errorf(LMS_ERR_INVALID_ARG, "--data FILE is required: a text file to train on");
            goto fail;
        }
        LMS_TRY(lms_tokens_open(o->data, &tok, &loaded));
        train_tok = &loaded;
        if (o->val_data) {
            LMS_TRY(lms_tokens_open_role(o->val_data, &tok, LMS_DATA_VAL, &loaded_val));
            val_tok = &loaded_val;
        }
    }
    const char *train_name = o->data ? o->data : "the training data";
    LMS_TRY(lms_tokens_check_vocab(train_tok, p.cfg.V, train_name));
    if (val_tok) LMS_TRY(lms_tokens_check_vocab(val_tok, p.cfg.V, o->val_data ? o->val_data : "validation data"));
    size_t n_train = train_tok->n;
    const int32_t *val_ptr = NULL;
    size_t n_val = 0;
    if (val_tok) {
        val_ptr = val_tok->tokens;
        n_val = val_tok->n;
    } else if (o->val_fraction > 0) { /* held out even without validation: --eval-interval never changes the split */
        n_val = (size_t)((double)train_tok->n * o->val_fraction);
        if (n_val < (size_t)p.T + 1) n_val = 0; /* too little data to hold out */
        n_train -= n_val;
        val_ptr = train_tok->tokens + n_train;
    }
    lms_loader ld, vld;
    LMS_TRY(lms_loader_init(&ld, train_tok->tokens, n_train, p.T, p.order, o->seed, train_name));
    int have_val = n_val > 0 && o->eval_interval > 0;
    if (have_val)
        LMS_TRY(lms_loader_init(&vld, val_ptr, n_val, p.T, LMS_ORDER_SEQUENTIAL, o->seed, "the validation data"));
    LMS_TRY(check_agreement(o, &p, train_tok));
    LMS_TRY(train_run_record(&p.ck, o, p.world, n_train, n_val));
    LMS_TRY(train_check_run_folder(o, p.ck.run.id, p.ck.ck != NULL, p.world->rank, &ctx.log));
    if (o->save_model && rank0) LMS_TRY(check_writable(o->save_model));
    if (o->metrics && (rank0 || o->log_all_ranks)) {
        char mpath[4096];
        if (rank0)
            snprintf(mpath, sizeof mpath, "%s", o->metrics);
        else
            snprintf(mpath, sizeof mpath, "%s.rank%d", o->metrics, p.world->rank);
        LMS_TRY(train_metrics_open(&metrics, mpath, start_step, &ctx.log));
    }

    /* model, optimizer and gradient synchronisation (src/train) */
    lms_trainer_opts to = {.tp = p.topo.tp, .seq_parallel = o->sequence_parallel, .zero = o->zero, .bucket_mb = o->bucket_mb, .global_batch = o->batch_size,
                           .micro_batch = p.micro, .seq_len = p.T, .sched = p.sched, .beta1 = o->beta1,
                           .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->weight_decay,
                           .grad_clip = o->grad_clip, .recompute = p.recompute, .pp = p.pp, .vpp = p.vpp,
                           .pp_schedule = p.pp_sched, .pp_layers = p.pp_given, .dtype = p.dtype,
                           .loss_scale = o->loss_scale, .initial_loss_scale = o->initial_loss_scale,
                           .min_loss_scale = o->min_loss_scale, .loss_scale_window = o->loss_scale_window};
    lms_train_source src = {.ck = p.ck.ck, .hf_dir = p.ck.ck ? NULL : o->init, .seed = o->seed};
    LMS_TRY(lms_trainer_init(&tr, &to, &p.cfg, p.world, p.topo.dp, &p.be, &src));
    lms_gpt *m = &tr.m;
    char advice[512];
    if (lms_blas_advice(advice, sizeof advice)) lms_log(&ctx.log, LMS_LOG_WARN, "%s", advice);
    double peak;
    char peak_src[4400];
    LMS_TRY(train_peak(o->peak_tflops, &p.be, ctx.threads, &ctx.log, &peak, peak_src, sizeof peak_src));
    double fpt = lms_flops_per_token(&p.cfg, p.T);
    const lms_logger *lg = &ctx.log;
    lms_log(lg, LMS_LOG_INFO, "model: L=%d H=%d C=%d maxT=%d V=%d (padded %d) | %.2fM parameters | "
            "%.3f GFLOP/token", p.cfg.L, p.cfg.NH, p.cfg.C, p.cfg.maxT, p.cfg.V, p.cfg.Vp,
            (double)lms_gpt_num_params(&p.cfg) / 1e6, fpt / 1e9);
    lms_log(lg, LMS_LOG_INFO, "train: %zu tokens%s%zu held out | batch %d x seq %d = %d tokens/step "
            "(dp %d x micro-batch %d x %d accumulation) | %d steps", n_train, val_tok ? " | validation " : " | ",
            n_val, o->batch_size, p.T, o->batch_size * p.T, p.topo.dp, p.micro, p.accum, o->steps);
    /* bytes held per rank for params, grads, AdamW m+v (persistent + working buffers) */
    const double MB = 1048576.0;
    const lms_zero_mem *mem = &tr.sync.mem;
    double state_mb[3] = {(double)(mem->param + mem->param_work) / MB, (double)(mem->grad + mem->grad_work) / MB,
                          (double)mem->optim / MB};
    if (p.dtype != LMS_DT_F32) {
        if (p.dtype == LMS_DT_BF16)
            lms_log(lg, LMS_LOG_INFO, "bf16: %s: the portable path (fp32 arithmetic on bf16-rounded weights and "
                    "activations; correct, not faster than fp32)", lms_cpu_has_avx512bf16()
                    ? "this CPU has AVX512-BF16 but lmscale has no bf16 kernels yet" : "this CPU has no AVX512-BF16");
        if (p.dtype == LMS_DT_F16 && o->loss_scale > 0)
            lms_log(lg, LMS_LOG_INFO, "mixed precision: fp16 compute, fp32 master weights | static loss scale %g",
                    o->loss_scale);
        else if (p.dtype == LMS_DT_F16)
            lms_log(lg, LMS_LOG_INFO, "mixed precision: fp16 compute, fp32 master weights | dynamic loss scale from "
                    "%g (x2 after %d clean steps, /2 and skip on overflow, at least %g)", tr.scaler.scale,
                    o->loss_scale_window, o->min_loss_scale);
        else
            lms_log(lg, LMS_LOG_INFO, "mixed precision: bf16 compute, fp32 master weights | no loss scaling");
    }
    if (!tr.pipe) /* a pipeline stage's are its pool's sets, as the schedule needs them (pp_peak_sets) */
        lms_log(lg, LMS_LOG_INFO, "activations: %.1f MB for a micro-batch of %d x %d (recompute %s)",
                (double)tr.acts.floats * 4.0 / MB, p.micro, p.T, lms_recompute_name(p.recompute));
    if (tr.pipe)
        lms_log(lg, LMS_LOG_INFO, "pipeline parallel: pp %d x dp %d x tp %d (%s): %s | per rank: params %.1f MB, grads "
                "%.1f MB, optimizer %.1f MB", p.pp, p.topo.dp, p.topo.tp, p.world->i->name, tr.sync.how, state_mb[0],
                state_mb[1], state_mb[2]);
    else if (strcmp(tr.sync.i->name, "none") != 0)
        lms_log(lg, LMS_LOG_INFO, "data parallel: %d ranks (%s), %s | per rank: params %.1f MB, grads %.1f MB, "
                "optimizer %.1f MB (plain DP: %.1f MB in all)", tr.dp->size, p.world->i->name, tr.sync.how,
                state_mb[0], state_mb[1], state_mb[2], m->num_params * 16.0 / MB);
    if (tr.topo.tp > 1)
        lms_log(lg, LMS_LOG_INFO, "tensor parallel: %d ranks per group%s, vocabulary padded to %d (%d rows per "
                "rank) | this rank: %.2fM parameters, params %.1f MB, grads %.1f MB, optimizer %.1f MB",
                tr.topo.tp, o->sequence_parallel ? ", sequence parallel" : "", m->cfg.Vp, m->cfg.Vp / tr.topo.tp,
                (double)m->num_params / 1e6, state_mb[0], state_mb[1], state_mb[2]);
    lms_log(lg, LMS_LOG_INFO, "optim: AdamW lr %g -> %g (%s, warm-up %d) betas (%g, %g) eps %g wd %g "
            "clip %g | backend %s (BLAS %s), %d threads | peak %.1f GFLOP/s (%s)", o->lr, o->min_lr,
            lms_schedule_name(p.sched.kind), o->warmup, o->beta1, o->beta2, o->eps, o->weight_decay,
            o->grad_clip, p.be.i->name, lms_blas_corename(), ctx.threads, peak * 1e3, peak_src);

    const int G = o->batch_size;
    double t_start = lms_now_s(), t_steps = 0, last_val = NAN;
    int timed = 0;
    double comm_sum[3] = {0, 0, 0}; /* bytes over the timed steps: tp, dp, pp (comm.h) */
    if (start_step) lms_log(lg, LMS_LOG_INFO, "resumed from %s at step %d", p.ck.resume_path, start_step);
    /* the step this process stops after: --steps, or --stop-after when sooner */
    const int end_step = o->stop_after > 0 && o->stop_after < o->steps ? o->stop_after : o->steps;
    train_stop_install(&stop, o->exit_duration_mins, t_begin);
    int step = start_step;
    ob->rank = p.world->rank, ob->dp = p.topo.dp, ob->threads = ctx.threads;
    ob->num_params = (double)m->num_params, ob->peak_tflops = peak * tr.topo.world;
    tr.obs = ob; /* the step's phases */
    LMS_TRY(train_obs_start(&tob, o, lg));
    for (; step < o->steps; step++) {
        double t0 = lms_now_s();
        lms_obs_step_begin(ob, step + 1);
        lms_comm_mark_step(p.world, step + 1); /* watchdog messages; LMSCALE_FAULT fires here */
        lms_step_result r;
        LMS_TRY(lms_trainer_step(&tr, &ld, step, &r));
        const double loss = r.loss, norm = r.grad_norm;
        if (step > 0 || o->steps == 1) { /* the summary's means count the steps the timing counts */
            comm_sum[0] += (double)r.tp_bytes;
            comm_sum[1] += (double)r.dp_bytes;
            comm_sum[2] += (double)(r.pp_bytes + r.pp_sent_bytes + r.emb_bytes);
        }
        const float lr = r.lr;
        lms_obs_step_end(ob);
        double dt = lms_now_s() - t0;
        if (step > 0 || o->steps == 1) {
            t_steps += dt;
            timed++;
        }
        double tps = (double)G * p.T / dt, mfu = lms_mfu(fpt, tps, peak * tr.topo.world);
        /* outside the step's timing: the peak now, for an MFU against the machine's speed during the run */
        if (o->peak_probe && ob->counted > 0)
            lms_obs_add_probe(ob, lms_backend_measure_peak_tflops(&p.be) * tr.topo.world);
        /* a forward that gathers parameters (ZeRO-3) needs every rank */
        const int eval_due = have_val && ((step + 1) % o->eval_interval == 0 || step + 1 == o->steps);
        /* pipeline stages hold their own layers: the forward runs through them, on every rank */
        int do_eval = (rank0 || lms_trainer_forward_is_collective(&tr)) && eval_due;
        double vloss = NAN;
        if (do_eval) {
            long ntok;
            LMS_TRY(eval_loss_fn(trainer_forward, &tr, &vld, p.micro, o->eval_batches, &vloss, &ntok, NULL));
            last_val = vloss;
        }
        if (!o->quiet && ((step + 1) % o->log_interval == 0 || step == 0 || step + 1 == o->steps)) {
            char eta[32], phases[128];
            lms_format_duration(eta, sizeof eta, (timed ? t_steps / timed : dt) * (end_step - step - 1));
            lms_obs_format_compact(ob, phases, sizeof phases);
            char scaling[80] = "";
            if (p.dtype == LMS_DT_F16)
                snprintf(scaling, sizeof scaling, " | scale %g | skipped %d%s", r.loss_scale, tr.scaler.skipped,
                         r.skipped ? " (this step: inf/NaN gradients)" : "");
            lms_log(lg, LMS_LOG_INFO, "step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %7.1f ms | %6.0f tok/s "
                    "| MFU %5.1f%% | ETA %s%s%s", step + 1, o->steps, loss, lr, norm, dt * 1e3, tps,
                    mfu * 100, eta, scaling, phases);
            if (do_eval)
                lms_log(lg, LMS_LOG_INFO, "step %5d/%d | val_loss %.4f | val_ppl %.2f", step + 1, o->steps,
                        vloss, exp(vloss));
        }
        long rss_mb = (long)lms_peak_rss_mb(); /* read once: the metrics and TensorBoard agree */
        if (metrics.f) {
            char ppj[4096];
            lms_trainer_pp_json(&tr, ppj, sizeof ppj);
            train_comm_json(&r, tr.pipe != NULL, ppj + strlen(ppj), sizeof ppj - strlen(ppj));
            train_row row = {step + 1, loss, lr, norm, dt * 1e3, tps, mfu, do_eval, vloss, state_mb,
                             rss_mb, (unsigned long long)(step + 1) * (unsigned long long)G * p.T, ob, ppj,
                             p.dtype == LMS_DT_F16, r.loss_scale, r.skipped, tr.scaler.skipped};
            LMS_TRY(train_metrics_put(&metrics, &row));
        }
        /* every rank: the trainer knows which of them write (src/train) */
        {
            int saved_before = p.ck.last_saved_step;
            train_obs_ckpt_begin(&tob);
            LMS_TRY(train_ckpt_maybe_save(o, &p.ck, step + 1, step + 1 == o->stop_after, &p.sched, G, p.T, o->seed,
                                          p.order, &tok, &tr, lg));
            train_obs_ckpt_end(&tob, p.ck.last_saved_step != saved_before);
        }
        /* TensorBoard scalars; after STEP_B (and its checkpoint) the trace */
        train_obs_row row = {step + 1, loss, lr, norm, vloss, tps, mfu, (double)rss_mb, dt};
        LMS_TRY(train_obs_step(&tob, o, p.world, &row));
        /* a signal or the time limit: every rank stops after the same step */
        if (step + 1 < end_step) LMS_TRY(train_stop_poll(&stop, p.world));
        if (step + 1 == end_step || stop.reason) {
            step++;
            break;
        }
    }
    train_stop_restore(&stop); /* from here on a signal ends the process as usual */
    LMS_TRY(train_ckpt_maybe_save(o, &p.ck, step, 1, &p.sched, G, p.T, o->seed, p.order, &tok, &tr, lg));
    if (stop.reason) {
        char why[64];
        train_stop_reason(&stop, why, sizeof why);
        if (o->save_dir)
            lms_log(lg, LMS_LOG_INFO, "stopped after step %d of %d (%s): checkpoint %s/step-%08d; continue "
                    "with --resume %s (exit %d)", step, o->steps, why, o->save_dir, step, o->save_dir,
                    TRAIN_EXIT_STOPPED);
        else
            lms_log(lg, LMS_LOG_INFO, "stopped after step %d of %d (%s): no --save, so no checkpoint (exit %d)",
                    step, o->steps, why, TRAIN_EXIT_STOPPED);
        if (stopped_early) *stopped_early = 1;
    }
    double total = lms_now_s() - t_start;
    double mean_tps = timed ? (double)G * p.T * timed / t_steps : 0;
    int ran = step - start_step; /* this process's steps (resume and --stop-after count) */
    lms_log(lg, LMS_LOG_INFO, "done: %d steps (now at %d of %d), %ld tokens in %.1f s | %.0f tok/s | MFU %.1f%% "
            "(mean after the first step, of a %.1f GFLOP/s peak per rank: %s)", ran, step, o->steps,
            (long)ran * G * p.T, total, mean_tps, 100 * lms_mfu(fpt, mean_tps, peak * tr.topo.world), peak * 1e3,
            peak_src);
    if (timed && p.world->size > 1) {
        char pp_mb[48] = ""; /* only a pipeline sends between stages */
        if (tr.pipe) snprintf(pp_mb, sizeof pp_mb, ", pp %.3f MB", comm_sum[2] / timed / MB);
        lms_log(lg, LMS_LOG_INFO, "communication per step (rank %d, collectives' sizes and sends, mean after the "
                "first step): tp %.3f MB, dp %.3f MB%s", p.world->rank, comm_sum[0] / timed / MB,
                comm_sum[1] / timed / MB, pp_mb);
    }
    LMS_TRY(train_obs_close(&tob, o, p.world, lg, (double)G * p.T, fpt, peak * tr.topo.world));
    if (o->save_model || keep) LMS_TRY(lms_trainer_gather_model(&tr)); /* the whole model, on every rank */
    if (o->save_model && rank0) {
        LMS_TRY(lms_model_save(o->save_model, m, p.ck.tok_id.kind == CLI_TOK_BPE ? 1 : p.ck.tok_id.kind == CLI_TOK_BYTES ? 0 : 2));
        lms_log(lg, LMS_LOG_INFO, "saved model to %s", o->save_model);
    }
    LMS_TRY(train_metrics_close(&metrics));
    if (final_val_loss) *final_val_loss = (float)last_val;
    if (keep) {
        /* the model outlives this function's backend: its memory becomes the caller's */
        LMS_TRY(lms_gpt_to_host(&tr.m));
        *keep = tr.m;
        memset(&tr.m, 0, sizeof tr.m);
    }
fail:
    if (st != LMS_OK && p.world && p.world->size > 1 && st != LMS_ERR_INVALID_ARG) {
        /* an error on one rank would leave the others waiting in a collective */
        fprintf(stderr, "lmscale train: error: [rank %d] %s (aborting all %d ranks)\n", p.world->rank,
                lms_last_error(), p.world->size);
        p.world->i->abort(p.world, 1);
    }
    train_stop_restore(&stop);
    if (metrics.f) fclose(metrics.f);
    lms_trainer_free(&tr); /* before the world its groups were split from, and the traced backend */
    if (have_tob) train_obs_free(&tob, &p.be);
    lms_comm_free(p.world);
    lms_tokens_free(&loaded);
    lms_tokens_free(&loaded_val);
    lms_backend_free(&p.be);
    train_ckpt_free(&p.ck);
    lms_tokenizer_free(&tok);
    return st;
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    train_opts_default(&o);
    const cli_opt opts[] = {
        CLI_MODEL_FLAGS(o.model),
        {"data", CLI_STR, &o.data, "FILES", "training data (required): text, or token shards (lmscale, llm.c, Megatron); a comma list is concatenated"},
        {"val-data", CLI_STR, &o.val_data, "FILES", "validation data, as --data (default: hold out the end of --data)"},
        {"vocab", CLI_STR, &o.vocab, "FILE", "GPT-2 vocab.json: tokenize text data with BPE (with --merges)"},
        {"merges", CLI_STR, &o.merges, "FILE", "GPT-2 merges.txt (with --vocab)"},
        {"val-fraction", CLI_FLOAT, &o.val_fraction, "F", "fraction of --data held out (its end) when no --val-data, whether or not validation runs"},
        {"batch-size", CLI_INT, &o.batch_size, "B", "global batch, in sequences"},
        {"micro-batch-size", CLI_INT, &o.micro_batch_size, "M", "sequences per forward/backward; B/M accumulation steps (default B)"},
        {"seq-len", CLI_INT, &o.seq_len, "T", "sequence length (default: the model's, at most 1024)"},
        {"steps", CLI_INT, &o.steps, "N", "optimizer steps"},
        {"lr", CLI_FLOAT, &o.lr, "LR", "peak learning rate"},
        {"min-lr", CLI_FLOAT, &o.min_lr, "LR", "learning rate at the end of decay"},
        {"warmup-steps", CLI_INT, &o.warmup, "N", "linear warm-up steps"},
        {"lr-schedule", CLI_STR, &o.schedule, "KIND", "constant, cosine or linear (decay after warm-up)"},
        {"beta1", CLI_FLOAT, &o.beta1, "B1", "AdamW beta1"},
        {"beta2", CLI_FLOAT, &o.beta2, "B2", "AdamW beta2"},
        {"eps", CLI_FLOAT, &o.eps, "EPS", "AdamW epsilon"},
        {"weight-decay", CLI_FLOAT, &o.weight_decay, "WD", "decoupled weight decay on 2-D weights"},
        {"grad-clip", CLI_FLOAT, &o.grad_clip, "NORM", "clip the global gradient norm (0 = off)"},
        {"seed", CLI_U64, &o.seed, "S", "seed for initialisation and data order"},
        {"eval-interval", CLI_INT, &o.eval_interval, "N", "validation loss every N steps and at the end (0 = off)"},
        {"eval-batches", CLI_INT, &o.eval_batches, "N", "micro-batches per validation"},
        {"log-interval", CLI_INT, &o.log_interval, "N", "print a step line every N steps"},
        {"data-order", CLI_STR, &o.data_order, "ORDER", "random windows by seed, or sequential from the start"},
        {"metrics", CLI_STR, &o.metrics, "FILE", "append one JSON object per step"},
        {"save-model", CLI_STR, &o.save_model, "FILE", "write the trained weights (for eval and generate)"},
        {"save", CLI_STR, &o.save_dir, "DIR", "write training checkpoints DIR/step-NNNNNNNN (at the end, and every --save-every); DIR belongs to one run"},
        {"save-every", CLI_INT, &o.save_every, "N", "checkpoint every N steps (0 = only at the end)"},
        {"keep-last", CLI_INT, &o.keep_last, "K", "keep only the newest K checkpoints (0 = all)"},
        {"resume", CLI_STR, &o.resume, "DIR", "continue a run from a checkpoint, or the newest valid one in DIR: its flags and --save folder come from it"},
        {"init", CLI_STR, &o.init, "DIR", "start from Hugging Face GPT-2 weights (config.json + model.safetensors)"},
        {"stop-after", CLI_INT, &o.stop_after, "N", "stop after step N (the schedule still spans --steps; resume later)"},
        {"backend", CLI_STR, &o.backend, "NAME", "cpu (fast) or ref (reference kernels)"},
        {"peak-tflops", CLI_FLOAT, &o.peak_tflops, "X", "peak for MFU (default: measured sgemm at start-up)"},
        {"threads", CLI_INT, &o.threads, "N", "worker threads per process (0 = all cores)"},
        {"dp", CLI_INT, &o.dp, "N", "data-parallel ranks (0 = all processes of the job; launch with mpirun/srun)"},
        {"comm", CLI_STR, &o.comm, "NAME", "communicator: auto (MPI when launched by mpirun/srun), single, mpi"},
        {"bucket-mb", CLI_FLOAT, &o.bucket_mb, "MB", "gradient all-reduce bucket size"},
        {"tp", CLI_INT, &o.tp, "N", "tensor-parallel ranks: each block and the vocabulary split over N consecutive ranks (world = dp x tp x pp)"},
        {"sequence-parallel", CLI_BOOL, &o.sequence_parallel, NULL, "with --tp: shard LayerNorm, residual and embedding rows over the tp group"},
        {"zero", CLI_INT, &o.zero, "STAGE", "ZeRO: 1 shards optimizer state, 2 also gradients, 3 also parameters (0 = off)"},
        {"pp", CLI_INT, &o.pp, "N", "pipeline stages (the job is dp x tp x pp processes)"},
        {"pp-layers", CLI_STR, &o.pp_layers, "A,B,..", "layers per pipeline stage (default: an even split)"},
        {"pp-schedule", CLI_STR, &o.pp_schedule, "KIND", "gpipe, 1f1b, or interleaved (with --virtual-stages)"},
        {"virtual-stages", CLI_INT, &o.vpp, "V", "model chunks per pipeline stage: interleaved 1F1B"},
        {"dtype", CLI_STR, &o.dtype, "T", "compute dtype: fp32, bf16 or fp16 (mixed precision over fp32 master weights and AdamW state)"},
        {"loss-scale", CLI_FLOAT, &o.loss_scale, "S", "fp16: a static loss scale (0 = dynamic)"},
        {"initial-loss-scale", CLI_FLOAT, &o.initial_loss_scale, "S", "fp16: the dynamic loss scale's start"},
        {"min-loss-scale", CLI_FLOAT, &o.min_loss_scale, "S", "fp16: the dynamic loss scale's minimum (overflow there stops training)"},
        {"loss-scale-window", CLI_INT, &o.loss_scale_window, "N", "fp16: double the dynamic loss scale after N steps without overflow"},
        {"recompute", CLI_STR, &o.recompute, "MODE", "activation recomputation: none, selective (attention and GELU outputs) or full (keep each block's input only); the same losses, less memory"},
        {"log-all-ranks", CLI_BOOL, &o.log_all_ranks, NULL, "every rank prints (prefixed [rank R]) and writes --metrics FILE.rank<R> (default: rank 0 only)"},
        {"comm-timeout", CLI_FLOAT, &o.comm_timeout, "S", "abort the job when a collective waits S seconds (0 = off; -1 = $LMSCALE_COMM_TIMEOUT, else 600)"},
        {"overwrite", CLI_BOOL, &o.overwrite, NULL, "let --save delete the checkpoints of another run in its folder"},
        {"exit-duration-mins", CLI_FLOAT, &o.exit_duration_mins, "MIN", "save (with --save) and stop after MIN minutes, exit 85 (0 = no limit)"},
        {"quiet", CLI_BOOL, &o.quiet, NULL, "no per-step lines"},
        {"tensorboard-dir", CLI_STR, &o.tensorboard_dir, "DIR", "write TensorBoard event files of every step's scalars to DIR (rank 0)"},
        {"profile", CLI_STR, &o.profile, "A:B", "trace steps A..B (every op and collective; with --trace)"},
        {"trace", CLI_STR, &o.trace, "FILE.json", "the --profile trace: Chrome trace-event JSON for ui.perfetto.dev"},
    };
    unsigned char given[sizeof opts / sizeof opts[0]] = {0};
    cli_spec spec = {"train", "lmscale train: train a GPT model on text (bytes or GPT-2 BPE) or token shards.",
                     "lmscale train --data FILE [--model NAME] [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]),
                     "default model: nano\n"
                     "exit status: 0 done (--steps or --stop-after); 85 stopped early by SIGINT/SIGTERM/SIGUSR1 or\n"
                     "--exit-duration-mins, after saving (resume to continue; a second signal exits at once);\n"
                     "75 the collective watchdog aborted the job; 2 bad flags or input; 1 other errors"};
    o.cli = &spec;
    o.given = given;
    int help;
    train_opts defaults = o;
    lms_status st = cli_parse_given(&spec, argc, argv, &help, given);
    if (st != LMS_OK) return cli_fail("train", st);
    o.model_flags_given = o.model.preset != defaults.model.preset || o.model.L != -1 || o.model.NH != -1 ||
                          o.model.C != -1 || o.model.maxT != -1 || o.model.V != -1;
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    int stopped = 0;
    st = train_run(&o, NULL, NULL, NULL, NULL, &stopped);
    if (st != LMS_OK) return cli_fail("train", st);
    return stopped ? TRAIN_EXIT_STOPPED : 0;
}
