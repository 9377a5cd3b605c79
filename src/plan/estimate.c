/* Memory and FLOPs of one training layout (plan.h; every formula is derived
 * in docs/estimate.md). Two memory models: lmscale's own fp32 buffers
 * (exact, as src/parallel/zero.c and src/model/gpt.c allocate them) and a
 * Megatron-style mixed-precision GPU implementation (Korthikanti et al.). */
#include "lmscale/parallel.h"
#include "lmscale/plan.h"

#include <stdlib.h>
#include <string.h>

/* Measured fixed overhead of one lmscale process (binary, libc, OpenMP and
 * OpenBLAS buffers; plus Open MPI's when the job has more than one
 * process): docs/estimate.md, "Calibration". */
#define LMS_OVERHEAD_SINGLE (7.0 * 1048576.0)
#define LMS_OVERHEAD_MPI (17.0 * 1048576.0)
/* CUDA context, NCCL and cuBLAS workspaces of a GPU process */
#define GPU_OVERHEAD (2.0 * 1073741824.0)

double lms_train_days(double tokens, double params, double n, double flops_per_s, int full_recompute) {
    if (!(n > 0) || !(flops_per_s > 0)) return 0;
    return (full_recompute ? 8.0 : 6.0) * tokens * params / (n * flops_per_s) / 86400.0;
}

/* ---- lmscale's own buffers (any tp, pp, dtype and recompute) ----
 * cfg is one tensor-parallel rank's part of the model (lms_gpt_config_local):
 * its flat buffers, units and activations are the rank's. */

/* How ZeRO over dp ranks cuts the units it shards (src/parallel/zero.c),
 * one unit of n floats added at a time: parts of ceil(n/dp), the shard their
 * sum, the largest padded unit, and whether dp leaves some unit uneven. */
typedef struct {
    size_t n, shard, max_padded;
    int uneven;
} zero_cut;
static void cut_add(zero_cut *c, size_t n, int dp) {
    const size_t part = (n + (size_t)dp - 1) / (size_t)dp;
    c->n += n;
    c->shard += part;
    if (part * (size_t)dp > c->max_padded) c->max_padded = part * (size_t)dp;
    if (n % (size_t)dp) c->uneven = 1;
}

static void lmscale_state(const lms_gpt_config *cfg, const lms_layout *lo, lms_estimate *e) {
    const int dp = lo->dp, nu = lms_gpt_num_units(cfg);
    const double f = 4.0;
    zero_cut c = {0, 0, 0, 0};
    for (int u = 0; u < nu; u++) {
        size_t off, n;
        lms_gpt_unit_range(cfg, u, &off, &n);
        cut_add(&c, n, dp);
    }
    const size_t N = c.n, shard = c.shard, max_padded = c.max_padded;
    const int uneven = c.uneven;
    e->params_rank = (double)N;
    if (lo->zero == 0) {
        e->weights = e->grads = f * N;
        e->optim = 2 * f * N;
        /* plain DP: the all-reduce's receive buffer, the gradients' size (src/parallel/dp.c) */
        e->grads_work = dp > 1 ? f * N : 0;
        return;
    }
    const int z = lo->zero, nwork = z >= 2 ? 2 : uneven;
    e->weights = f * (z == 3 ? shard : N);
    e->grads = f * (z == 1 ? N : shard);
    e->optim = 2 * f * shard;
    e->weights_work = z == 3 ? f * max_padded : 0;
    e->grads_work = f * nwork * max_padded + (z >= 2 ? 2 * f * (max_padded / (size_t)dp) : 0);
}

/* The most micro-batches whose activations stage s holds at once under the
 * schedule: the engine's own operation order (lms_pp_schedule_ops), forward
 * takes an activation set, backward returns it. */
static int peak_sets(lms_pp_schedule sched, int p, int s, int m, int v) {
    lms_pp_op *ops = malloc(sizeof *ops * (size_t)(2 * m * v));
    int in = 0, peak = 0;
    if (ops && lms_pp_schedule_ops(sched, p, s, m, v, ops) == LMS_OK)
        for (int k = 0; k < 2 * m * v; k++) {
            in += ops[k].backward ? -1 : 1;
            if (in > peak) peak = in;
        }
    free(ops);
    return peak;
}

/* ZeRO-1 over the units stage s of p updates (src/train/pipe_sync.c): those
 * lms_pp_unit_owner gives it and, on a last stage without the embedding,
 * its copy of wte. first[] is lms_pp_split_layers'. */
static zero_cut stage_cut(const lms_gpt_config *cfg, const int *first, int p, int v, int s, int dp) {
    zero_cut c = {0, 0, 0, 0};
    for (int u = 0; u <= cfg->L + 1; u++)
        if (lms_pp_unit_owner(first, cfg->L, p, v, u) == s) {
            size_t off, n;
            lms_gpt_unit_range(cfg, u, &off, &n);
            cut_add(&c, n, dp);
        }
    if (s == p - 1 && s != 0) { /* the last stage's copy of wte */
        lms_tensor_view *views;
        int nt;
        size_t np;
        if (lms_gpt_layout(cfg, &views, &nt, &np) == LMS_OK) {
            for (int i = 0; i < nt; i++)
                if (strcmp(views[i].name, "wte") == 0) cut_add(&c, views[i].numel, dp);
            free(views);
        }
    }
    return c;
}

/* Pipeline parallelism (src/train/pipe.c, pipe_sync.c), on the stage that
 * needs the most: each stage holds the flat buffers of its own units (and a
 * last stage its copy of wte: stage_cut's n floats) for parameters,
 * gradients, AdamW moments (under ZeRO-1 its units' shards) and, in mixed
 * precision, the compute copy; the pool's activation sets (each the layout
 * of a chunk of the most layers, allocated as the schedule first needs them;
 * validation runs through them too, so the trainer keeps no whole-model
 * activation buffer), a receive, send and gradient buffer of b·s·h floats
 * per (micro-batch, chunk) that crosses a stage boundary, and the step's
 * tokens. */
static void pipeline_memory(const lms_gpt_config *cfg, const lms_layout *lo, lms_estimate *e) {
    const int p = lo->pp, v = lo->vpp > 1 ? lo->vpp : 1, m = lo->accum, nv = p * v, d = lo->dp;
    lms_pp_schedule sched;
    int *first = calloc((size_t)nv + 1, sizeof *first);
    if (!first || lms_pp_schedule_resolve(lo->pp_gpipe ? LMS_PP_GPIPE : LMS_PP_1F1B, v, &sched) != LMS_OK ||
        lms_pp_split_layers(cfg->L, p, v, NULL, 0, first) != LMS_OK) {
        free(first);
        return;
    }
    int maxl = 1;
    for (int j = 0; j < nv; j++)
        if (first[j + 1] - first[j] > maxl) maxl = first[j + 1] - first[j];
    lms_gpt_config sub = *cfg;
    sub.L = maxl;
    const double set = 4.0 * (double)lms_gpt_act_floats_rc(&sub, lo->micro_batch, lo->seq_len, lo->recompute);
    const double NC = (double)lo->micro_batch * lo->seq_len * cfg->C;
    const double sp = lo->seq_parallel && lo->tp > 1 ? lo->tp : 1; /* sequence parallel: 1/tp of each crosses */
    const int lowp = lo->prec != LMS_PREC_FP32;
    /* lmscale_memory's buffers less its whole-model compute copy (mixed precision) */
    const double base_buf = e->buffers - (lowp ? 4.0 * e->params_rank : 0) + 2 * 4.0 * m * lo->micro_batch * lo->seq_len;
    double best = -1;
    for (int s = 0; s < p; s++) {
        int nbuf = 0;
        for (int c = 0; c < v; c++) {
            const int j = c * p + s;
            nbuf += (j > 0) + (j < nv - 1) + 1;
        }
        const int sets = peak_sets(sched, p, s, m, v);
        const zero_cut z = stage_cut(cfg, first, p, v, s, d);
        const double state = 4.0 * z.n; /* parameters, and gradients, of the stage's tensors */
        double optim = 2 * state, gwork = 0, staging = 0;
        if (lo->zero == 1) { /* ZeRO-1 over the stage's units */
            optim = 2 * 4.0 * z.shard;
            gwork = z.uneven ? 4.0 * z.max_padded : 0;
            staging = d > 1 ? 2.0 * (d - 1) / d * state : 0; /* Open MPI's, as at pp 1 */
        }
        const double acts = sets * set;
        const double buf = base_buf + (lowp ? state : 0) + (double)m * nbuf * 4.0 * NC / sp + staging;
        const double tot = 2 * state + optim + gwork + acts + buf;
        if (tot > best) {
            best = tot;
            e->params_rank = (double)z.n;
            e->weights = e->grads = state;
            e->inflight = sets;
            e->acts_layer = set;
            e->acts = acts;
            e->buffers = buf;
            e->optim = optim;
            e->grads_work = gwork; /* ZeRO 0: each unit's data-parallel all-reduce is in place */
        }
    }
    free(first);
}

static void lmscale_memory(const lms_gpt_config *whole, const lms_layout *lo, const lms_estimate_opts *o,
                           lms_estimate *e) {
    lms_gpt_config local, *cfg = &local;
    if (lms_gpt_config_local(whole, lo->tp, &local) != LMS_OK) local = *whole; /* lms_layout_check said why */
    lmscale_state(cfg, lo, e);
    size_t N = 0, off, n;
    for (int u = 0; u < lms_gpt_num_units(whole); u++) lms_gpt_unit_range(whole, u, &off, &n), N += n;
    e->params = (double)N;
    const double BT = (double)lo->micro_batch * lo->seq_len;
    e->acts = 4.0 * (double)lms_gpt_act_floats_rc(cfg, lo->micro_batch, lo->seq_len, lo->recompute);
    e->inflight = 1;
    /* the model's copies of tokens and targets, and train's x and y (int32) */
    e->buffers = 4 * 4.0 * BT + 4.0 * (o ? o->data_tokens : 0);
    /* bf16/fp16: the master rounded for compute, an fp32 copy of the rank's parameters holding 16-bit
     * values (src/train/trainer.c; not in train's param_mb, which is the master); ZeRO-3 rounds each
     * gathered unit in place instead */
    if (lo->prec != LMS_PREC_FP32 && lo->zero != 3) e->buffers += 4.0 * e->params_rank;
    /* Open MPI's non-blocking collectives stage their data (measured,
     * docs/estimate.md): ZeRO-1, whose reduce-scatters of every unit are in
     * flight together, about 2(dp-1)/dp of the gradient buffer. Plain DP
     * reduces out of place into its own receive buffer (grads_work) and
     * ZeRO-2/3 keep two units in flight: their staging is within the working
     * buffers counted above. */
    if (lo->dp > 1 && lo->zero == 1 && lo->pp == 1) {
        e->buffers += 2.0 * (lo->dp - 1) / lo->dp * e->grads;
    }
    e->overhead = o && o->overhead_bytes >= 0 ? o->overhead_bytes
                                              : (lo->world > 1 ? LMS_OVERHEAD_MPI : LMS_OVERHEAD_SINGLE);
    if (lo->pp > 1) pipeline_memory(cfg, lo, e);
}

/* ---- a Megatron-style implementation ---- */

/* Parameters of one transformer layer held by one tensor-parallel rank:
 * the QKV, attention-projection and MLP weights and the QKV and fc biases
 * are split; LayerNorms and the two output biases are replicated. */
static double layer_params(double C, int tp) { return (12 * C * C + 7 * C) / tp + 6 * C; }

static void megatron_state(const lms_gpt_config *cfg, const lms_layout *lo, lms_estimate *e) {
    const double C = cfg->C, Lr = (double)cfg->L / lo->pp;
    const double emb = (double)cfg->Vp * C / lo->tp; /* vocabulary-parallel */
    /* first stage: embeddings (+ positions); last: ln_f and, when pp > 1, its copy of the tied LM head */
    double first = emb + (double)cfg->maxT * C + Lr * layer_params(C, lo->tp);
    double last = Lr * layer_params(C, lo->tp) + 2 * C + (lo->pp > 1 ? emb : 0);
    if (lo->pp == 1) first += 2 * C, last = first;
    double P = first > last ? first : last;
    e->params = (double)cfg->Vp * C + (double)cfg->maxT * C + cfg->L * (12 * C * C + 13 * C) + 2 * C;
    e->params_rank = P;
    const int z = lo->zero, dp = lo->dp;
    double wb = 4, gb = 4, ob = 8; /* fp32: weights, grads, AdamW m + v */
    if (lo->prec != LMS_PREC_FP32) wb = 2, gb = 2, ob = 12; /* + fp32 master weights (ZeRO's 2 + 2 + 12) */
    e->weights = wb * P / (z >= 3 ? dp : 1);
    e->grads = gb * P / (z >= 2 ? dp : 1);
    e->optim = ob * P / (z >= 1 ? dp : 1);
    const double unit = layer_params(C, lo->tp); /* ZeRO-3 gathers / ZeRO-2 reduces a layer at a time */
    e->weights_work = z == 3 ? 2 * wb * unit : 0;            /* this layer and the prefetched next */
    e->grads_work = z >= 2 ? 2 * gb * unit : 0;
}

/* Korthikanti et al. (2022), bytes per layer per micro-batch: sbh(34 + 5as/h)
 * with 16-bit activations and 1-byte dropout masks; the tp, sequence-
 * parallel and recompute variants. fp32 doubles everything but the masks. */
static double layer_act_bytes(const lms_gpt_config *cfg, const lms_layout *lo, lms_recompute rc) {
    const double s = lo->seq_len, b = lo->micro_batch, h = cfg->C, a = cfg->NH, t = lo->tp;
    const double k = lo->prec == LMS_PREC_FP32 ? 2.0 : 1.0; /* bytes per element / 2 */
    const double sp = lo->seq_parallel && lo->tp > 1 ? t : 1.0;
    const double repl = 8 * k + 2, shard = 24 * k, core = 4 * k + 1; /* the 10, 24 and 5 of the paper */
    if (rc == LMS_RECOMPUTE_FULL) return s * b * h * 2 * k / sp; /* the layer's input only */
    double v = s * b * h * (repl / sp + shard / t);
    if (rc == LMS_RECOMPUTE_NONE) v += core * a * s * s * b / t;
    return v;
}

static void megatron_memory(const lms_gpt_config *cfg, const lms_layout *lo, const lms_estimate_opts *o,
                            lms_estimate *e) {
    megatron_state(cfg, lo, e);
    const double s = lo->seq_len, b = lo->micro_batch, h = cfg->C, t = lo->tp;
    const double k = lo->prec == LMS_PREC_FP32 ? 2.0 : 1.0;
    const double sp = lo->seq_parallel && lo->tp > 1 ? t : 1.0;
    const double Lr = (double)cfg->L / lo->pp;
    /* 1F1B: the first stage holds the activations of min(pp, accum)
     * micro-batches (GPipe: accum); interleaving adds (pp-1)/(pp·v) of them */
    int inflight = lo->pp_gpipe || lo->accum < lo->pp ? lo->accum : lo->pp; /* GPipe: every micro-batch */
    double scale = inflight;
    if (lo->vpp > 1) scale *= 1.0 + (lo->pp - 1.0) / ((double)lo->pp * lo->vpp);
    e->inflight = inflight;
    e->acts_layer = layer_act_bytes(cfg, lo, lo->recompute);
    double first = Lr * e->acts_layer * scale + s * b * h / sp * scale; /* + embedding dropout mask */
    /* last stage: final LayerNorm and LM-head inputs, fp32 logits over the vocabulary part */
    double last = Lr * e->acts_layer + 2 * 2 * k * s * b * h / sp + 4.0 * s * b * cfg->Vp / t;
    if (lo->pp == 1) first += last - Lr * e->acts_layer, last = first;
    e->acts = first > last ? first : last;
    if (lo->recompute == LMS_RECOMPUTE_FULL) /* one layer's activations while it is recomputed */
        e->acts += layer_act_bytes(cfg, lo, LMS_RECOMPUTE_NONE);
    /* pipeline send/receive buffers (forward and backward) */
    e->buffers = lo->pp > 1 ? 4 * 2 * k * s * b * h : 0;
    e->overhead = o && o->overhead_bytes >= 0 ? o->overhead_bytes : GPU_OVERHEAD;
}

static void flops(const lms_gpt_config *cfg, const lms_layout *lo, lms_estimate *e) {
    const double G = lo->global_batch, s = lo->seq_len, l = cfg->L, h = cfg->C;
    e->flops_megatron = lms_megatron_flops(G, s, l, h, cfg->V);
    e->flops_megatron_norecompute = e->flops_megatron * 72.0 / 96.0;
    /* executed: 3 passes of every layer, plus the recomputed forward (full) or attention core
     * (selective); the LM head (6·B·s·h·V) is never recomputed, which the literal 72 count,
     * 3/4 of 96, would scale too */
    const double layers3 = 72.0 * G * s * l * h * h * (1.0 + s / (6.0 * h)), head = 6.0 * G * s * h * cfg->V;
    e->flops_hardware = lo->recompute == LMS_RECOMPUTE_FULL ? e->flops_megatron : layers3 + head;
    if (lo->recompute == LMS_RECOMPUTE_SELECTIVE) e->flops_hardware += 4.0 * G * s * s * h * l; /* QK^T, AV */
    e->flops_per_token = lms_flops_per_token(cfg, lo->seq_len);
    e->flops_model = e->flops_per_token * G * s;
}

lms_status lms_estimate_run(const lms_gpt_config *cfg, const lms_layout *lo, const lms_estimate_opts *o,
                            lms_estimate *e) {
    memset(e, 0, sizeof *e);
    /* lmscale's own model covers every layout lmscale runs (ZeRO 2/3 with pp it does not); auto picks it for its fp32 layouts
     * without tp or pp (a tp, pp or 16-bit layout is most often a GPU plan, which the
     * Megatron-style model describes) */
    const int runnable = lo->pp == 1 || lo->zero <= 1;
    lms_impl impl = o ? o->impl : LMS_IMPL_AUTO;
    if (impl == LMS_IMPL_AUTO)
        impl = lo->pp == 1 && lo->tp == 1 && lo->prec == LMS_PREC_FP32 ? LMS_IMPL_LMSCALE : LMS_IMPL_MEGATRON;
    if (impl == LMS_IMPL_LMSCALE && !runnable)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--impl lmscale: lmscale does not run --zero %d with --pp %d (use "
                          "--zero 1, or --impl megatron)", lo->zero, lo->pp);
    e->impl = impl;
    if (impl == LMS_IMPL_LMSCALE)
        lmscale_memory(cfg, lo, o, e);
    else
        megatron_memory(cfg, lo, o, e);
    e->total = e->weights + e->weights_work + e->grads + e->grads_work + e->optim + e->acts + e->buffers +
               e->overhead;
    flops(cfg, lo, e);
    return LMS_OK;
}
