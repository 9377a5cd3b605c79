/* `lmscale estimate`: parameters, FLOPs, memory per device and time to
 * train for one layout (docs/estimate.md). */
#include "cli.h"
#include "lmscale/json.h"
#include "lmscale/parallel.h"
#include "lmscale/plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double GiB = 1073741824.0, MiB = 1048576.0;

void cli_layout_opts_default(cli_layout_opts *o) {
    memset(o, 0, sizeof *o);
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    o->model = mo;
    o->batch_size = 8;
    o->tp = o->pp = 1;
    o->dtype = "fp32";
    o->recompute = "none";
}

lms_status cli_layout_resolve(const cli_layout_opts *o, lms_gpt_config *cfg, lms_layout *lo) {
    LMS_CHECK(cli_model_config(&o->model, cfg));
    memset(lo, 0, sizeof *lo);
    lo->world = o->world;
    lo->dp = o->dp;
    lo->tp = o->tp;
    lo->pp = o->pp;
    lo->vpp = o->vpp;
    lo->seq_len = o->seq_len;
    lo->global_batch = o->batch_size;
    lo->micro_batch = o->micro_batch_size;
    lo->zero = o->zero;
    lo->seq_parallel = o->seq_parallel;
    LMS_CHECK(lms_precision_parse(o->dtype, &lo->prec));
    LMS_CHECK(lms_recompute_parse(o->recompute, &lo->recompute));
    if (o->pp_schedule) { /* the pipeline's schedule, checked as train checks it */
        lms_pp_schedule asked, sched;
        LMS_CHECK(lms_pp_schedule_parse(o->pp_schedule, &asked));
        LMS_CHECK(lms_pp_schedule_resolve(asked, o->vpp > 1 ? o->vpp : 1, &sched));
        lo->pp_gpipe = sched == LMS_PP_GPIPE;
    }
    return lms_layout_check(lo, cfg);
}

lms_status cli_impl_parse(const char *s, lms_impl *out) {
    if (strcmp(s, "auto") == 0) *out = LMS_IMPL_AUTO;
    else if (strcmp(s, "lmscale") == 0) *out = LMS_IMPL_LMSCALE;
    else if (strcmp(s, "megatron") == 0) *out = LMS_IMPL_MEGATRON;
    else
        return lms_errorf(LMS_ERR_INVALID_ARG, "--impl '%s' is not known (choose auto, lmscale or megatron)", s);
    return LMS_OK;
}

typedef struct {
    cli_layout_opts l;
    const char *impl;
    float overhead_mb, data_tokens, device_mem_gb, bucket_mb;
    int devices;
    float peak_tflops, achieved_tflops, tokens, params;
    int json;
} est_opts;

static void print_json(const lms_gpt_config *c, const lms_layout *lo, const lms_estimate *e, const est_opts *o,
                       double days, double iter_s, const lms_fit *fit) {
    printf("{\"model\": {\"layers\": %d, \"heads\": %d, \"hidden\": %d, \"max_seq_len\": %d, \"vocab\": %d, "
           "\"vocab_padded\": %d},\n", c->L, c->NH, c->C, c->maxT, c->V, c->Vp);
    printf(" \"layout\": {\"world\": %d, \"dp\": %d, \"tp\": %d, \"pp\": %d, \"virtual_stages\": %d, \"seq_len\": %d, "
           "\"micro_batch\": %d, \"global_batch\": %d, \"accum\": %d, \"zero\": %d, \"dtype\": \"%s\", "
           "\"recompute\": \"%s\", \"sequence_parallel\": %d},\n", lo->world, lo->dp, lo->tp, lo->pp, lo->vpp,
           lo->seq_len, lo->micro_batch, lo->global_batch, lo->accum, lo->zero, lms_precision_name(lo->prec),
           lms_recompute_name(lo->recompute), lo->seq_parallel && lo->tp > 1);
    printf(" \"impl\": \"%s\", \"params\": %.0f, \"params_rank\": %.0f,\n",
           e->impl == LMS_IMPL_LMSCALE ? "lmscale" : "megatron", e->params, e->params_rank);
    printf(" \"memory_bytes\": {\"weights\": %.0f, \"weights_work\": %.0f, \"grads\": %.0f, \"grads_work\": %.0f, "
           "\"optim\": %.0f, \"activations\": %.0f, \"activations_layer\": %.0f, \"inflight\": %d, \"buffers\": %.0f, "
           "\"overhead\": %.0f, \"total\": %.0f},\n", e->weights, e->weights_work, e->grads, e->grads_work, e->optim,
           e->acts, e->acts_layer, e->inflight, e->buffers, e->overhead, e->total);
    /* the three figures lmscale train --metrics reports, MB = 2^20 bytes */
    printf(" \"lmscale_metrics\": {\"param_mb\": %.3f, \"grad_mb\": %.3f, \"optim_mb\": %.3f, \"peak_rss_mb\": %.1f},\n",
           (e->weights + e->weights_work) / MiB, (e->grads + e->grads_work) / MiB, e->optim / MiB, e->total / MiB);
    printf(" \"flops\": {\"megatron_recompute\": %.6e, \"megatron_no_recompute\": %.6e, \"executed\": %.6e, "
           "\"model\": %.6e, \"model_per_token\": %.6e}", e->flops_megatron, e->flops_megatron_norecompute,
           e->flops_hardware, e->flops_model, e->flops_per_token);
    if (iter_s > 0) printf(",\n \"iteration_s\": %.6g", iter_s);
    if (iter_s > 0 && o->peak_tflops > 0)
        printf(", \"mfu\": %.6g", o->achieved_tflops / o->peak_tflops * e->flops_model / e->flops_hardware);
    if (days > 0) printf(",\n \"train_days\": %.6g", days);
    if (fit) {
        printf(",\n \"device_memory_bytes\": %.0f, \"fits\": %s, \"over_bytes\": %.0f, \"fit_advice\": ",
               o->device_mem_gb * GiB, fit->fits ? "true" : "false", fit->over);
        lms_json_write_string(stdout, fit->advice, strlen(fit->advice));
    }
    printf("}\n");
}

static void row(const char *name, double bytes, const char *note) {
    printf("  %-18s %12.1f MiB  %8.3f GiB   %s\n", name, bytes / MiB, bytes / GiB, note ? note : "");
}

static void print_table(const lms_gpt_config *c, const lms_layout *lo, const lms_estimate *e, const est_opts *o,
                        double days, double iter_s, double P) {
    char buf[160];
    printf("model: L=%d H=%d C=%d maxT=%d V=%d (padded %d) | %.4g M parameters (%.4g B)\n", c->L, c->NH, c->C,
           c->maxT, c->V, c->Vp, e->params / 1e6, e->params / 1e9);
    printf("layout: %d processes = dp %d x tp %d x pp %d%s | seq %d | micro-batch %d x %d per rank x dp %d = "
           "batch %d | ZeRO %d | %s | recompute %s%s\n", lo->world, lo->dp, lo->tp, lo->pp,
           lo->vpp > 1 ? " (interleaved)" : "", lo->seq_len, lo->micro_batch, lo->accum, lo->dp, lo->global_batch,
           lo->zero, lms_precision_name(lo->prec), lms_recompute_name(lo->recompute),
           lo->seq_parallel && lo->tp > 1 ? " | sequence parallel" : "");
    printf("memory per device (%s; %.4g M parameters on the largest rank):\n",
           e->impl == LMS_IMPL_LMSCALE ? "lmscale's own buffers" : "Megatron-style, Korthikanti et al. activations",
           e->params_rank / 1e6);
    row("weights", e->weights, NULL);
    if (e->weights_work > 0) row("  gathered (work)", e->weights_work, "ZeRO-3 working buffer");
    row("gradients", e->grads, NULL);
    if (e->grads_work > 0) row("  reduce (work)", e->grads_work, "reduce-scatter buffers");
    row("optimizer state", e->optim,
        lo->prec == LMS_PREC_FP32 || e->impl == LMS_IMPL_LMSCALE ? "AdamW m, v" : "fp32 master + AdamW m, v");
    if (e->impl == LMS_IMPL_MEGATRON)
        snprintf(buf, sizeof buf, "%.1f MiB/layer x %d/%d layers x %d micro-batches in flight", e->acts_layer / MiB,
                 c->L, lo->pp, e->inflight);
    else
        snprintf(buf, sizeof buf, "lmscale's layout for micro-batch %d x seq %d", lo->micro_batch, lo->seq_len);
    row("activations", e->acts, buf);
    row("buffers", e->buffers, e->impl != LMS_IMPL_LMSCALE ? "pipeline send/receive"
                               : lo->prec == LMS_PREC_FP32 ? "token buffers and data"
                                                           : "token buffers, data, the 16-bit compute copy");
    row("overhead", e->overhead, e->impl == LMS_IMPL_LMSCALE ? "runtime, measured" : "CUDA context, NCCL");
    row("total", e->total, NULL);
    printf("FLOPs per iteration (batch %d x seq %d):\n", lo->global_batch, lo->seq_len);
    printf("  Megatron 96·B·s·l·h²(1 + s/6h + V/16lh), full recompute  %.4e\n", e->flops_megatron);
    printf("  Megatron 72·B·s·l·h²(1 + s/6h + V/16lh), no recompute    %.4e\n", e->flops_megatron_norecompute);
    printf("  executed by this layout (recompute %s)%*s%.4e\n", lms_recompute_name(lo->recompute),
           (int)(22 - strlen(lms_recompute_name(lo->recompute))), "",
           e->flops_hardware);
    printf("  model FLOPs (6N + 12LCT = %.4e per token)            %.4e\n", e->flops_per_token, e->flops_model);
    if (iter_s > 0) {
        printf("time: %.4g s per iteration at %.4g TFLOP/s on each of %d devices", iter_s, o->achieved_tflops,
               o->devices > 0 ? o->devices : lo->world);
        if (o->peak_tflops > 0) /* model FLOPs utilisation: the executed FLOPs include recomputation */
            printf(" (%.1f %% of the %.4g TFLOP/s peak; MFU %.1f %%)", 100 * o->achieved_tflops / o->peak_tflops,
                   o->peak_tflops, 100 * o->achieved_tflops / o->peak_tflops * e->flops_model / e->flops_hardware);
        printf("\n");
    }
    if (days > 0)
        printf("time to train %.4g B tokens: %.1f days = %d·T·P/(n·X) with P = %.4g B, n = %d, X = %.4g TFLOP/s\n",
               o->tokens / 1e9, days, lo->recompute == LMS_RECOMPUTE_FULL ? 8 : 6, P / 1e9,
               o->devices > 0 ? o->devices : lo->world, o->achieved_tflops);
}

int cmd_estimate(int argc, char **argv) {
    est_opts o;
    memset(&o, 0, sizeof o);
    cli_layout_opts_default(&o.l);
    o.impl = "auto";
    o.overhead_mb = -1;
    const cli_opt opts[] = {
        CLI_MODEL_FLAGS(o.l.model),
        CLI_LAYOUT_FLAGS(o.l),
        {"impl", CLI_STR, &o.impl, "NAME", "memory model: lmscale (its own buffers, pp 1), megatron (GPU-style), or auto (lmscale for fp32 without tp or pp)"},
        {"overhead-mb", CLI_FLOAT, &o.overhead_mb, "MB", "fixed memory per process (default: measured for lmscale, 2 GiB for a GPU)"},
        {"data-tokens", CLI_FLOAT, &o.data_tokens, "N", "lmscale: training tokens held in memory (4 bytes each)"},
        {"bucket-mb", CLI_FLOAT, &o.bucket_mb, "MB", "lmscale: plain DP's all-reduce bucket (as train --bucket-mb; default 25)"},
        {"device-memory", CLI_FLOAT, &o.device_mem_gb, "GB", "memory per device in GiB: say whether the layout fits and what would make it"},
        {"devices", CLI_INT, &o.devices, "N", "devices for the time estimate (default: the layout's processes)"},
        {"peak-tflops", CLI_FLOAT, &o.peak_tflops, "X", "peak TFLOP/s per device (for utilisation)"},
        {"achieved-tflops", CLI_FLOAT, &o.achieved_tflops, "X", "sustained TFLOP/s per device (for time)"},
        {"tokens", CLI_FLOAT, &o.tokens, "T", "tokens to train, e.g. 300e9"},
        {"params", CLI_FLOAT, &o.params, "P", "parameter count for the time to train (default: the model's)"},
        {"json", CLI_BOOL, &o.json, NULL, "one JSON object instead of the table"},
    };
    char epilog[512];
    snprintf(epilog, sizeof epilog, "model presets: %s\nformulas: docs/estimate.md", lms_gpt_preset_names());
    cli_spec spec = {"estimate", "lmscale estimate: parameters, FLOPs, memory per device and time to train of one layout.",
                     "lmscale estimate [--model NAME | --num-layers L ...] [--dp N --tp N --pp N ...] [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), epilog};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("estimate", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_gpt_config cfg;
    lms_layout lo;
    lms_estimate e;
    lms_estimate_opts eo = {.overhead_bytes = o.overhead_mb >= 0 ? o.overhead_mb * MiB : -1,
                            .data_tokens = o.data_tokens, .bucket_bytes = o.bucket_mb * MiB};
    if ((st = cli_layout_resolve(&o.l, &cfg, &lo)) != LMS_OK || (st = cli_impl_parse(o.impl, &eo.impl)) != LMS_OK ||
        (st = lms_estimate_run(&cfg, &lo, &eo, &e)) != LMS_OK)
        return cli_fail("estimate", st);
    if (o.devices < 0 || o.achieved_tflops < 0 || o.tokens < 0 || o.params < 0 || o.device_mem_gb < 0)
        return cli_fail("estimate", lms_errorf(LMS_ERR_INVALID_ARG, "--devices, --achieved-tflops, --tokens, "
                                               "--params and --device-memory must not be negative"));
    const double n = o.devices > 0 ? o.devices : lo.world, X = o.achieved_tflops * 1e12;
    const double P = o.params > 0 ? o.params : e.params;
    double days = o.tokens > 0 && X > 0 ? lms_train_days(o.tokens, P, n, X, lo.recompute == LMS_RECOMPUTE_FULL) : 0;
    double iter_s = X > 0 ? e.flops_hardware / (n * X) : 0;
    lms_fit fit, *fp = NULL;
    if (o.device_mem_gb > 0) {
        fp = &fit;
        lms_fit_check(&cfg, &lo, &eo, o.device_mem_gb * GiB, &fit);
    }
    if (o.json)
        print_json(&cfg, &lo, &e, &o, days, iter_s, fp);
    else
        print_table(&cfg, &lo, &e, &o, days, iter_s, P);
    if (fp && !fit.fits) {
        fprintf(stderr, "lmscale estimate: error: %s\n", fit.advice);
        return 1;
    }
    return 0;
}
