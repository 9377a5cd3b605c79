/* The planner's time model and search (plan.h, docs/plan.md): compute at a
 * GEMM-size-dependent efficiency, memory-bound elementwise work, tensor-
 * and pipeline-parallel communication, the pipeline bubble, the part of
 * the data-parallel reduction backward does not hide, and the optimizer. */
#include "lmscale/plan.h"

#include <stdlib.h>
#include <string.h>

/* GEMM of m x k times k x n: its FLOPs and the time at the efficiency model */
static double gemm_s(const lms_cluster *cl, double rate, double m, double n, double k, double count) {
    double g = 1.0 / (1.0 / m + 1.0 / n + 1.0 / k);
    double eff = cl->gemm_eff * g / (g + cl->gemm_half);
    return count * 2.0 * m * n * k / (rate * eff);
}

/* ring collectives: bytes is the whole buffer */
static double allreduce_s(double bytes, int n, double bw, double lat) {
    return n <= 1 ? 0 : 2.0 * (n - 1) / n * bytes / bw + 2.0 * (n - 1) * lat;
}
static double gather_s(double bytes, int n, double bw, double lat) { /* reduce-scatter or all-gather */
    return n <= 1 ? 0 : (double)(n - 1) / n * bytes / bw + (n - 1) * lat;
}

typedef struct {
    double fwd, bwd, recomp; /* one micro-batch through this rank's layers (+ the LM head), seconds */
    double tp;               /* tensor-parallel communication of one micro-batch */
    int nops;                /* kernels per micro-batch, forward + backward */
} mb_time;

/* Forward of one layer for micro-batch b on one tensor-parallel rank: GEMMs and attention */
static double layer_fwd_gemm(const lms_gpt_config *cfg, const lms_layout *lo, const lms_cluster *cl, double rate,
                             int causal_half) {
    const double m = (double)lo->micro_batch * lo->seq_len, h = cfg->C, t = lo->tp, s = lo->seq_len;
    const double hs = h / cfg->NH, heads = (double)lo->micro_batch * cfg->NH / t;
    double x = gemm_s(cl, rate, m, 3 * h / t, h, 1) + gemm_s(cl, rate, m, h, h / t, 1) +
               gemm_s(cl, rate, m, 4 * h / t, h, 1) + gemm_s(cl, rate, m, h, 4 * h / t, 1);
    /* attention: QK^T and AV, per head s x s x hs (lmscale's kernel skips the masked half) */
    x += (causal_half ? 0.5 : 1.0) * gemm_s(cl, rate, s, s, hs, 2 * heads);
    return x;
}

static void micro_batch_time(const lms_gpt_config *cfg, const lms_layout *lo, const lms_cluster *cl, int threads,
                             const lms_estimate *e, mb_time *t) {
    const int lmscale = cl->impl == LMS_IMPL_LMSCALE;
    const double rate = cl->peak_flops * threads, layers = (double)cfg->L / lo->pp;
    const double m = (double)lo->micro_batch * lo->seq_len, h = cfg->C;
    const double ebytes = lo->prec == LMS_PREC_FP32 ? 4 : 2;
    double g = layer_fwd_gemm(cfg, lo, cl, rate, lmscale);
    /* elementwise: bytes the layer stores (Korthikanti's count, or lmscale's buffers) moved mem_factor times */
    double act_layer;
    if (lmscale) {
        act_layer = e->acts / (cfg->L + 1.0);
    } else {
        lms_layout none = *lo;
        none.recompute = LMS_RECOMPUTE_NONE;
        lms_estimate en;
        lms_estimate_opts mo = {.impl = LMS_IMPL_MEGATRON, .overhead_bytes = 0};
        lms_estimate_run(cfg, &none, &mo, &en);
        act_layer = en.acts_layer;
    }
    /* forward writes them once; backward reads them and writes gradients of the same size */
    double mem = cl->mem_factor / 3.0 * act_layer / cl->mem_bw;
    double f = layers * (g + mem), b = 2 * f;
    /* the LM head (on the last stage): logits GEMM and the cross-entropy */
    double head = gemm_s(cl, rate, m, (double)cfg->Vp / lo->tp, h, 1) + 3.0 * 4 * m * cfg->Vp / lo->tp / cl->mem_bw;
    f += head;
    b += 2 * head;
    t->fwd = f;
    t->bwd = b;
    t->recomp = 0;
    if (lo->recompute == LMS_RECOMPUTE_FULL) t->recomp = layers * (g + mem);
    if (lo->recompute == LMS_RECOMPUTE_SELECTIVE) { /* the attention core again */
        const double s = lo->seq_len, hs = h / cfg->NH, heads = (double)lo->micro_batch * cfg->NH / lo->tp;
        t->recomp = layers * (gemm_s(cl, rate, s, s, hs, 2 * heads) + 2.0 * ebytes * heads * s * s / cl->mem_bw);
    }
    /* tensor parallelism: 2 all-reduces of (b, s, h) forward, 2 backward, 2 more when recomputing */
    int nar = 4 + (lo->recompute == LMS_RECOMPUTE_FULL ? 2 : 0);
    t->tp = lo->tp > 1 ? layers * nar * allreduce_s(m * h * ebytes, lo->tp, cl->intra_bw, cl->intra_lat) : 0;
    t->nops = (int)(layers * 30 + 10);
}

lms_status lms_plan_time(const lms_gpt_config *cfg, const lms_layout *lo, const lms_cluster *cl,
                         const lms_estimate_opts *o, lms_plan_row *r) {
    memset(r, 0, sizeof *r);
    r->lo = *lo;
    lms_estimate_opts eo = o ? *o : (lms_estimate_opts){.overhead_bytes = -1};
    eo.impl = cl->impl;
    LMS_CHECK(lms_estimate_run(cfg, lo, &eo, &r->est));
    const int n = cl->devices_per_node * cl->nodes;
    const int threads = cl->impl == LMS_IMPL_LMSCALE ? (n / lo->world > 0 ? n / lo->world : 1) : 1;
    mb_time t;
    micro_batch_time(cfg, lo, cl, threads, &r->est, &t);
    const double ops = t.nops * cl->op_overhead;
    const double per_mb = t.fwd + t.bwd + t.recomp + t.tp + ops;
    const int m = lo->accum, p = lo->pp, v = lo->vpp;
    /* pipeline: each boundary sends (b, s, h) forward and its gradient back; across nodes each tp rank
     * sends its 1/tp slice (Megatron's scatter/gather) */
    const double ebytes = lo->prec == LMS_PREC_FP32 ? 4 : 2;
    const double act = (double)lo->micro_batch * lo->seq_len * cfg->C * ebytes;
    const int pp_intra = lo->tp * lo->dp * lo->pp <= cl->devices_per_node;
    double p2p = 0;
    if (p > 1)
        p2p = pp_intra ? 2 * (act / cl->intra_bw + cl->intra_lat)
                       : 2 * (act / lo->tp / cl->inter_bw + cl->inter_lat + (lo->tp > 1 ? act / cl->intra_bw : 0));
    r->compute_s = m * (t.fwd + t.bwd + t.recomp + ops);
    r->tp_comm_s = m * t.tp;
    r->pp_comm_s = (m + (p - 1.0) / v) * p2p * v;
    r->bubble_s = (p - 1.0) / v * per_mb;
    /* data parallelism: gradients of this rank's parameters (grad dtype), reduced over dp */
    const int dp_intra = lo->tp * lo->dp <= cl->devices_per_node;
    const double bw = dp_intra ? cl->intra_bw : cl->inter_bw, lat = dp_intra ? cl->intra_lat : cl->inter_lat;
    const double gbytes = r->est.params_rank * (lo->prec == LMS_PREC_FP32 ? 4 : 2);
    const double wbytes = r->est.params_rank * ebytes;
    const int units = cfg->L / p + 2;
    double hidden = 0, exposed = 0;
    if (lo->dp > 1) {
        if (lo->zero == 0) {
            hidden = allreduce_s(gbytes, lo->dp, bw, lat);
        } else if (lo->zero == 1) {
            hidden = gather_s(gbytes, lo->dp, bw, lat * units);
            exposed = gather_s(wbytes, lo->dp, bw, lat * units); /* the new parameters, after the step */
        } else if (lo->zero == 2) {
            hidden = m * gather_s(gbytes, lo->dp, bw, lat * units); /* every micro-step */
            exposed = gather_s(wbytes, lo->dp, bw, lat * units);
        } else {
            hidden = m * gather_s(gbytes, lo->dp, bw, lat * units);
            exposed = m * 2 * gather_s(wbytes, lo->dp, bw, lat * units); /* gathers in forward and backward */
        }
        double window = cl->dp_overlap * t.bwd * (lo->zero >= 2 ? m : 1);
        exposed += hidden > window ? hidden - window : 0;
    }
    r->dp_comm_s = exposed;
    /* AdamW: read weights, grads, moments, write weights and moments */
    r->optim_s = 1.75 * (r->est.weights + r->est.grads + r->est.optim) / cl->mem_bw;
    r->step_s = r->compute_s + r->tp_comm_s + r->pp_comm_s + r->bubble_s + r->dp_comm_s + r->optim_s;
    const double tokens = (double)lo->global_batch * lo->seq_len;
    r->tokens_per_s = tokens / r->step_s;
    const double devs = cl->impl == LMS_IMPL_LMSCALE ? n : lo->world;
    r->tflops_hw = r->est.flops_hardware / r->step_s / devs / 1e12;
    r->tflops_megatron = r->est.flops_megatron / r->step_s / devs / 1e12;
    r->mfu = r->est.flops_model / r->step_s / devs / cl->peak_flops;
    return LMS_OK;
}

/* ---- search ---- */

typedef struct {
    lms_plan_row *v;
    int n, cap, tried;
} rows_t;

static int push(rows_t *r, const lms_plan_row *x) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 256;
        lms_plan_row *nv = realloc(r->v, sizeof *nv * (size_t)cap);
        if (!nv) return 0;
        r->v = nv;
        r->cap = cap;
    }
    r->v[r->n++] = *x;
    return 1;
}

static int cmp_rows(const void *a, const void *b) {
    const lms_plan_row *x = a, *y = b;
    if (x->step_s != y->step_s) return x->step_s < y->step_s ? -1 : 1;
    return x->est.total < y->est.total ? -1 : x->est.total > y->est.total;
}

static int allowed(int want, int v) { return want <= 0 || want == v; }

lms_status lms_plan_search(const lms_gpt_config *cfg, int seq_len, int global_batch, const lms_cluster *cl,
                           const lms_plan_space *sp, const lms_estimate_opts *o, lms_plan_row **out, int *nfit,
                           int *ntried, lms_plan_row *smallest) {
    rows_t r = {0};
    if (smallest) memset(smallest, 0, sizeof *smallest);
    const int n = cl->devices_per_node * cl->nodes, lmscale = cl->impl == LMS_IMPL_LMSCALE;
    const int maxmb = sp->max_micro_batch > 0 ? sp->max_micro_batch : 64;
    lms_estimate_opts eo = o ? *o : (lms_estimate_opts){.overhead_bytes = -1};
    eo.impl = cl->impl;
    /* lmscale runs tp = pp = 1, fp32, no recompute; its processes share the cores as threads */
    for (int tp = 1; tp <= (lmscale ? 1 : cl->devices_per_node); tp++) {
        if (cl->devices_per_node % tp || cfg->NH % tp || !allowed(sp->tp, tp)) continue;
        for (int pp = 1; pp <= (lmscale ? 1 : cfg->L); pp++) {
            if (cfg->L % pp || !allowed(sp->pp, pp) || n % (tp * pp)) continue;
            for (int world = lmscale ? 1 : n; world <= n; world++) {
                if (n % world || (!lmscale && world != n)) continue;
                const int dp = world / (tp * pp);
                if (dp < 1 || world % (tp * pp) || global_batch % dp || !allowed(sp->dp, dp)) continue;
                for (int mb = 1; mb <= global_batch / dp && mb <= maxmb; mb++) {
                    if ((global_batch / dp) % mb || !allowed(sp->micro_batch, mb)) continue;
                    for (int v = 1; v <= (pp > 1 ? 8 : 1); v++) {
                        if ((cfg->L / pp) % v || !allowed(sp->vpp, v)) continue;
                        for (int z = 0; z <= 3; z++) {
                            if ((sp->zero >= 0 && sp->zero != z) || (z > 0 && dp == 1)) continue;
                            for (int rc = 0; rc <= (lmscale ? 0 : 2); rc++) {
                                if (sp->recompute >= 0 && sp->recompute != rc) continue;
                                for (int sq = 0; sq <= (tp > 1 ? 1 : 0); sq++) {
                                    if (sp->seq_parallel >= 0 && tp > 1 && sp->seq_parallel != sq) continue;
                                    lms_layout lo = {.world = world, .dp = dp, .tp = tp, .pp = pp, .vpp = v,
                                                     .seq_len = seq_len, .global_batch = global_batch,
                                                     .micro_batch = mb, .zero = z, .prec = cl->prec,
                                                     .recompute = (lms_recompute)rc, .seq_parallel = sq};
                                    if (lms_layout_check(&lo, cfg) != LMS_OK) continue;
                                    r.tried++;
                                    lms_plan_row row;
                                    if (lms_plan_time(cfg, &lo, cl, &eo, &row) != LMS_OK) continue;
                                    if (smallest && (smallest->step_s == 0 || row.est.total < smallest->est.total))
                                        *smallest = row;
                                    if (row.est.total > cl->mem_bytes) continue;
                                    if (!push(&r, &row)) {
                                        free(r.v);
                                        return lms_errorf(LMS_ERR_OOM, "out of memory for the planner's layouts");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if (r.n) qsort(r.v, (size_t)r.n, sizeof *r.v, cmp_rows);
    *out = r.v;
    *nfit = r.n;
    *ntried = r.tried;
    return LMS_OK;
}
