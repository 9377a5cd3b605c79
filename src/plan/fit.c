/* Does a layout fit, by how much not, and what single change would make it
 * fit (plan.h). */
#include "lmscale/plan.h"

#include <stdio.h>
#include <string.h>

static const double GiB = 1073741824.0;

typedef struct {
    lms_fit *f;
    size_t len;
    int found;
} advice;

/* Appends "FLAG (needs X GiB)" when the changed layout is valid and fits. */
static void try_layout(advice *a, const lms_gpt_config *cfg, lms_layout lo, const lms_estimate_opts *o,
                       const char *flag) {
    lms_estimate e;
    if (lms_layout_check(&lo, cfg) != LMS_OK || lms_estimate_run(cfg, &lo, o, &e) != LMS_OK) {
        return;
    }
    if (e.total > a->f->budget || a->len + 96 > sizeof a->f->advice) return;
    a->len += (size_t)snprintf(a->f->advice + a->len, sizeof a->f->advice - a->len, "%s%s (needs %.2f GiB)",
                               a->found ? ", " : "", flag, e.total / GiB);
    a->found++;
}

lms_status lms_fit_check(const lms_gpt_config *cfg, const lms_layout *lo, const lms_estimate_opts *o,
                         double budget, lms_fit *fit) {
    lms_estimate e;
    memset(fit, 0, sizeof *fit);
    LMS_CHECK(lms_estimate_run(cfg, lo, o, &e));
    fit->need = e.total;
    fit->budget = budget;
    fit->fits = e.total <= budget;
    fit->over = fit->fits ? 0 : e.total - budget;
    if (fit->fits) {
        snprintf(fit->advice, sizeof fit->advice, "fits: needs %.2f GiB of the device's %.2f GiB (%.2f GiB free)",
                 e.total / GiB, budget / GiB, (budget - e.total) / GiB);
        return LMS_OK;
    }
    advice a = {fit, 0, 0};
    a.len = (size_t)snprintf(fit->advice, sizeof fit->advice, "the layout needs %.2f GiB per device but the "
                             "device has %.2f GiB: over by %.2f GiB; ", e.total / GiB, budget / GiB,
                             fit->over / GiB);
    size_t head = a.len;
    a.len += (size_t)snprintf(fit->advice + a.len, sizeof fit->advice - a.len, "it would fit with ");
    size_t lead = a.len;
    lms_estimate_opts same = o ? *o : (lms_estimate_opts){.overhead_bytes = -1};
    same.impl = e.impl; /* advice within the same memory model */
    char flag[64];
    lms_layout c;
    for (int z = lo->zero + 1; z <= 3; z++) {
        c = *lo;
        c.zero = z;
        snprintf(flag, sizeof flag, "--zero %d", z);
        try_layout(&a, cfg, c, &same, flag);
    }
    for (int r = lo->recompute + 1; r <= LMS_RECOMPUTE_FULL && e.impl == LMS_IMPL_MEGATRON; r++) {
        c = *lo;
        c.recompute = (lms_recompute)r;
        snprintf(flag, sizeof flag, "--recompute %s", lms_recompute_name(c.recompute));
        try_layout(&a, cfg, c, &same, flag);
    }
    if (lo->tp > 1 && !lo->seq_parallel) {
        c = *lo;
        c.seq_parallel = 1;
        try_layout(&a, cfg, c, &same, "--sequence-parallel");
    }
    for (int mb = lo->micro_batch / 2; mb >= 1; mb /= 2) {
        int before = a.found;
        c = *lo;
        c.micro_batch = mb;
        snprintf(flag, sizeof flag, "--micro-batch-size %d", mb);
        try_layout(&a, cfg, c, &same, flag);
        if (a.found > before) break; /* the largest micro-batch that fits */
    }
    if (lo->dp % 2 == 0 && e.impl == LMS_IMPL_MEGATRON) { /* the same devices, more model parallelism */
        c = *lo;
        c.dp /= 2;
        c.tp *= 2;
        snprintf(flag, sizeof flag, "--tp %d --dp %d", c.tp, c.dp);
        try_layout(&a, cfg, c, &same, flag);
        c = *lo;
        c.dp /= 2;
        c.pp *= 2;
        snprintf(flag, sizeof flag, "--pp %d --dp %d", c.pp, c.dp);
        try_layout(&a, cfg, c, &same, flag);
    }
    if (!a.found) {
        snprintf(fit->advice + head, sizeof fit->advice - head, "no single change of ZeRO stage, recompute, "
                 "micro-batch or tp/pp makes it fit: use more devices (--tp/--pp with a larger --world), "
                 "devices with more memory, or a smaller model");
    } else if (a.len == lead) {
        fit->advice[head] = 0;
    }
    return LMS_OK;
}
