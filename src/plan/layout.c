/* The one layout check shared by train, estimate and plan (plan.h). */
#include "lmscale/parallel.h"
#include "lmscale/plan.h"

#include <stdio.h>
#include <string.h>

static const char *PREC[] = {"fp32", "bf16", "fp16"};
static const char *RECOMP[] = {"none", "selective", "full"};

lms_status lms_precision_parse(const char *s, lms_precision *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, PREC[i]) == 0) {
            *out = (lms_precision)i;
            return LMS_OK;
        }
    return lms_errorf(LMS_ERR_INVALID_ARG, "--dtype '%s' is not known (choose fp32, bf16 or fp16)", s);
}

lms_status lms_recompute_parse(const char *s, lms_recompute *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, RECOMP[i]) == 0) {
            *out = (lms_recompute)i;
            return LMS_OK;
        }
    return lms_errorf(LMS_ERR_INVALID_ARG, "--recompute '%s' is not known (choose none, selective or full)", s);
}

const char *lms_precision_name(lms_precision p) { return (unsigned)p < 3 ? PREC[p] : "?"; }
const char *lms_recompute_name(lms_recompute r) { return (unsigned)r < 3 ? RECOMP[r] : "?"; }

/* The divisors of n up to cap, as "1, 2, 4" (for error messages). */
static void divisors(char *buf, size_t cap, int n, int limit) {
    size_t k = 0;
    buf[0] = 0;
    for (int d = 1; d <= n && d <= limit && k + 16 < cap; d++)
        if (n % d == 0) k += (size_t)snprintf(buf + k, cap - k, "%s%d", k ? ", " : "", d);
}

static lms_status check_degrees(lms_layout *lo, const lms_gpt_config *cfg) {
    char ds[256];
    if (lo->tp < 1 || lo->pp < 1 || lo->dp < 0 || lo->vpp < 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--dp %d --tp %d --pp %d: every degree must be at least 1",
                          lo->dp, lo->tp, lo->pp);
    if (lo->dp == 0) lo->dp = lo->world > 0 && lo->world % (lo->tp * lo->pp) == 0 ? lo->world / (lo->tp * lo->pp) : 1;
    if (lo->world == 0) lo->world = lo->dp * lo->tp * lo->pp;
    LMS_CHECK(lms_topology_check(lo->world, lo->dp, lo->tp, lo->pp));
    if (lo->vpp == 0) lo->vpp = 1;
    if (cfg->NH % lo->tp != 0) {
        divisors(ds, sizeof ds, cfg->NH, 1 << 20);
        return lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d does not divide the %d attention heads: each tensor-parallel "
                          "rank computes whole heads (choose --tp among %s)", lo->tp, cfg->NH, ds);
    }
    if (lo->pp > cfg->L)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--pp %d is more than the model's %d layers: every pipeline stage "
                          "needs at least one layer (lower --pp to at most %d)", lo->pp, cfg->L, cfg->L);
    if (!lo->pp_uneven && cfg->L % (lo->pp * lo->vpp) != 0) {
        divisors(ds, sizeof ds, cfg->L, 1 << 20);
        return lms_errorf(LMS_ERR_INVALID_ARG, "the %d layers do not split evenly into --pp %d x --virtual-stages %d "
                          "= %d chunks: choose pp x virtual stages among the divisors of %d (%s)", cfg->L, lo->pp,
                          lo->vpp, lo->pp * lo->vpp, cfg->L, ds);
    }
    if (lo->vpp > 1 && lo->pp == 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--virtual-stages %d needs pipeline parallelism (--pp 2 or more)",
                          lo->vpp);
    return LMS_OK;
}

static lms_status check_batch(lms_layout *lo) {
    const int dp = lo->dp, G = lo->global_batch;
    if (G < 1) return lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size %d must be at least 1", G);
    if (lo->micro_batch == 0) lo->micro_batch = G % dp == 0 ? G / dp : G;
    const int mb = lo->micro_batch;
    if (mb < 1) return lms_errorf(LMS_ERR_INVALID_ARG, "--micro-batch-size %d must be at least 1", mb);
    if (G % (dp * mb) != 0) {
        if (dp == 1)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size %d is not divisible by --micro-batch-size %d: "
                              "the global batch is micro-batch x accumulation steps (try --micro-batch-size %d)",
                              G, mb, G % 2 == 0 ? G / 2 : 1);
        return lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size %d is not divisible by dp %d x --micro-batch-size %d: "
                          "the global batch is dp x micro-batch x accumulation steps (try --batch-size %d)",
                          G, dp, mb, dp * mb * ((G + dp * mb - 1) / (dp * mb)));
    }
    lo->accum = G / dp / mb;
    if (lo->vpp > 1 && lo->accum % lo->pp != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the interleaved schedule (--virtual-stages %d) needs the %d "
                          "micro-batches per step to be a multiple of --pp %d (change --batch-size or "
                          "--micro-batch-size)", lo->vpp, lo->accum, lo->pp);
    return LMS_OK;
}

lms_status lms_layout_check(lms_layout *lo, const lms_gpt_config *cfg) {
    if (lo->seq_len == 0) lo->seq_len = cfg->maxT < 1024 ? cfg->maxT : 1024;
    if (lo->seq_len < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d must be at least 1", lo->seq_len);
    if (lo->seq_len > cfg->maxT)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d is above the model's maximum sequence length "
                          "%d: lower --seq-len or raise --max-seq-len", lo->seq_len, cfg->maxT);
    LMS_CHECK(check_degrees(lo, cfg));
    LMS_CHECK(check_batch(lo));
    if (lo->zero < 0 || lo->zero > 3)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d: the ZeRO stage must be 0 (off), 1, 2 or 3", lo->zero);
    if (lo->zero >= 2 && lo->pp > 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--zero %d with --pp %d: sharding gradients or parameters "
                          "conflicts with pipeline micro-batches (each would be reduce-scattered or gathered "
                          "per micro-batch); use --zero 1 or --pp 1", lo->zero, lo->pp);
    if ((unsigned)lo->prec > LMS_PREC_FP16 || (unsigned)lo->recompute > LMS_RECOMPUTE_FULL)
        return lms_errorf(LMS_ERR_INVALID_ARG, "unknown --dtype or --recompute value");
    if (lo->seq_parallel && lo->tp > 1 && lo->seq_len % lo->tp != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--sequence-parallel splits the %d positions over --tp %d: "
                          "choose a --seq-len divisible by %d", lo->seq_len, lo->tp, lo->tp);
    return LMS_OK;
}
