/* `lmscale plan`: the fastest layouts of a model on a cluster (docs/plan.md). */
#include "cli.h"
#include "lmscale/plan.h"

#include <stdlib.h>
#include <string.h>

static const double GiB = 1073741824.0;

typedef struct {
    cli_model_opts model;
    int seq_len, batch_size, top, json, no_sp;
    const char *cluster, *dtype, *recompute;
    int dpn, nodes, dp, tp, pp, vpp, micro, zero, max_micro;
    float mem_gb, peak_tflops, mem_bw, intra_bw, intra_lat, inter_bw, inter_lat, dp_overlap, gemm_eff, gemm_half, mem_factor, op_us;
} plan_opts;

static void layout_str(char *buf, size_t cap, const lms_layout *lo) {
    snprintf(buf, cap, "--dp %d --tp %d --pp %d%s%.0d --micro-batch-size %d --zero %d --recompute %s%s", lo->dp,
             lo->tp, lo->pp, lo->vpp > 1 ? " --virtual-stages " : "", lo->vpp > 1 ? lo->vpp : 0, lo->micro_batch,
             lo->zero, lms_recompute_name(lo->recompute), lo->seq_parallel && lo->tp > 1 ? " --sequence-parallel" : "");
}

static void print_row_json(const lms_plan_row *r, int last) {
    const lms_layout *lo = &r->lo;
    printf("  {\"dp\": %d, \"tp\": %d, \"pp\": %d, \"virtual_stages\": %d, \"micro_batch\": %d, \"accum\": %d, "
           "\"zero\": %d, \"recompute\": \"%s\", \"sequence_parallel\": %d, \"world\": %d, \"memory_bytes\": %.0f, "
           "\"step_s\": %.6g, \"compute_s\": %.6g, \"bubble_s\": %.6g, \"tp_comm_s\": %.6g, \"pp_comm_s\": %.6g, "
           "\"dp_comm_s\": %.6g, \"optim_s\": %.6g, \"tokens_per_s\": %.6g, \"tflops_per_device\": %.6g, "
           "\"megatron_tflops_per_device\": %.6g, \"mfu\": %.6g}%s\n", lo->dp, lo->tp, lo->pp, lo->vpp,
           lo->micro_batch, lo->accum, lo->zero, lms_recompute_name(lo->recompute), lo->seq_parallel && lo->tp > 1,
           lo->world, r->est.total, r->step_s, r->compute_s, r->bubble_s, r->tp_comm_s, r->pp_comm_s, r->dp_comm_s,
           r->optim_s, r->tokens_per_s, r->tflops_hw, r->tflops_megatron, r->mfu, last ? "" : ",");
}

static lms_status cluster_from(const plan_opts *o, lms_cluster *cl) {
    LMS_CHECK(lms_cluster_preset(o->cluster, cl));
    if (o->dpn) cl->devices_per_node = o->dpn;
    if (o->nodes) cl->nodes = o->nodes;
    if (o->mem_gb > 0) cl->mem_bytes = o->mem_gb * GiB;
    if (o->peak_tflops > 0) cl->peak_flops = o->peak_tflops * 1e12;
    if (o->mem_bw > 0) cl->mem_bw = o->mem_bw * 1e9;
    if (o->intra_bw > 0) cl->intra_bw = o->intra_bw * 1e9;
    if (o->intra_lat > 0) cl->intra_lat = o->intra_lat * 1e-6;
    if (o->inter_bw > 0) cl->inter_bw = o->inter_bw * 1e9;
    if (o->inter_lat > 0) cl->inter_lat = o->inter_lat * 1e-6;
    if (o->dp_overlap >= 0) cl->dp_overlap = o->dp_overlap;
    if (o->gemm_eff > 0) cl->gemm_eff = o->gemm_eff;
    if (o->gemm_half > 0) cl->gemm_half = o->gemm_half;
    if (o->mem_factor > 0) cl->mem_factor = o->mem_factor;
    if (o->op_us >= 0) cl->op_overhead = o->op_us * 1e-6;
    if (o->dtype) LMS_CHECK(lms_precision_parse(o->dtype, &cl->prec));
    if (cl->devices_per_node < 1 || cl->nodes < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--devices-per-node %d --nodes %d: both must be at least 1",
                          cl->devices_per_node, cl->nodes);
    if (cl->impl == LMS_IMPL_LMSCALE && cl->prec != LMS_PREC_FP32)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--cluster cpu plans lmscale's own runs, which are fp32 today "
                          "(drop --dtype %s)", lms_precision_name(cl->prec));
    return LMS_OK;
}

int cmd_plan(int argc, char **argv) {
    plan_opts o;
    memset(&o, 0, sizeof o);
    cli_model_opts mo = CLI_MODEL_OPTS_DEFAULT;
    o.model = mo;
    o.batch_size = 8;
    o.top = 5;
    o.cluster = "dgx-a100";
    o.recompute = "any";
    o.zero = -1;
    o.dp_overlap = -1;
    o.op_us = -1;
    const cli_opt opts[] = {
        CLI_MODEL_FLAGS(o.model),
        {"seq-len", CLI_INT, &o.seq_len, "T", "sequence length (default: the model's, at most 1024)"},
        {"batch-size", CLI_INT, &o.batch_size, "B", "global batch, in sequences"},
        {"cluster", CLI_STR, &o.cluster, "NAME", "preset: dgx-a100, dgx-h100, cpu (this machine); the flags below override it"},
        {"devices-per-node", CLI_INT, &o.dpn, "N", "devices (GPUs; cpu: cores) per node"},
        {"nodes", CLI_INT, &o.nodes, "N", "nodes"},
        {"device-memory", CLI_FLOAT, &o.mem_gb, "GB", "memory per device, GiB"},
        {"peak-tflops", CLI_FLOAT, &o.peak_tflops, "X", "dense peak per device at the training dtype"},
        {"mem-bw", CLI_FLOAT, &o.mem_bw, "GB/s", "device memory bandwidth"},
        {"intra-bw", CLI_FLOAT, &o.intra_bw, "GB/s", "within a node, per device and direction"},
        {"intra-latency", CLI_FLOAT, &o.intra_lat, "US", "within a node, microseconds"},
        {"inter-bw", CLI_FLOAT, &o.inter_bw, "GB/s", "between nodes, per device and direction"},
        {"inter-latency", CLI_FLOAT, &o.inter_lat, "US", "between nodes, microseconds"},
        {"dp-overlap", CLI_FLOAT, &o.dp_overlap, "F", "fraction of the last backward that hides the data-parallel reduction"},
        {"gemm-eff", CLI_FLOAT, &o.gemm_eff, "F", "efficiency model: fraction of peak a large GEMM reaches"},
        {"gemm-half", CLI_FLOAT, &o.gemm_half, "G", "efficiency model: GEMM size 1/(1/m+1/n+1/k) at half of --gemm-eff"},
        {"mem-factor", CLI_FLOAT, &o.mem_factor, "F", "efficiency model: memory traffic of forward + backward per stored activation byte"},
        {"op-overhead", CLI_FLOAT, &o.op_us, "US", "efficiency model: microseconds per kernel / parallel region"},
        {"dtype", CLI_STR, &o.dtype, "T", "fp32, bf16 or fp16 (default: the preset's)"},
        {"dp", CLI_INT, &o.dp, "N", "only this data-parallel degree (0 = any; cpu: the processes)"},
        {"tp", CLI_INT, &o.tp, "N", "only this tensor-parallel degree (0 = any)"},
        {"pp", CLI_INT, &o.pp, "N", "only this many pipeline stages (0 = any)"},
        {"virtual-stages", CLI_INT, &o.vpp, "V", "only this interleaving (0 = any)"},
        {"micro-batch-size", CLI_INT, &o.micro, "M", "only this micro-batch (0 = any)"},
        {"max-micro-batch", CLI_INT, &o.max_micro, "M", "largest micro-batch tried (default 64)"},
        {"zero", CLI_INT, &o.zero, "STAGE", "only this ZeRO stage (-1 = any)"},
        {"recompute", CLI_STR, &o.recompute, "MODE", "only this recompute mode: none, selective, full (any)"},
        {"no-sequence-parallel", CLI_BOOL, &o.no_sp, NULL, "do not consider Megatron sequence parallelism"},
        {"top", CLI_INT, &o.top, "K", "layouts shown"},
        {"json", CLI_BOOL, &o.json, NULL, "one JSON object instead of the table"},
    };
    char epilog[512];
    snprintf(epilog, sizeof epilog, "model presets: %s\ncluster presets: %s\nthe model and its calibration: "
             "docs/plan.md", lms_gpt_preset_names(), lms_cluster_preset_names());
    cli_spec spec = {"plan", "lmscale plan: rank the (dp, tp, pp, micro-batch, ZeRO, recompute) layouts of a model "
                     "on a cluster by predicted throughput.",
                     "lmscale plan [--model NAME | --num-layers L ...] --batch-size B [--cluster NAME] [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), epilog};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("plan", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_gpt_config cfg;
    lms_cluster cl;
    lms_plan_space sp = {.dp = o.dp, .tp = o.tp, .pp = o.pp, .vpp = o.vpp, .micro_batch = o.micro, .zero = o.zero,
                         .recompute = -1, .seq_parallel = o.no_sp ? 0 : -1, .max_micro_batch = o.max_micro};
    if ((st = cli_model_config(&o.model, &cfg)) != LMS_OK || (st = cluster_from(&o, &cl)) != LMS_OK)
        return cli_fail("plan", st);
    if (strcmp(o.recompute, "any") != 0) {
        lms_recompute rc;
        if ((st = lms_recompute_parse(o.recompute, &rc)) != LMS_OK) return cli_fail("plan", st);
        sp.recompute = rc;
    }
    /* the fixed parts of the layout go through the one layout check first, so that an impossible
     * request is explained as train and estimate explain it */
    const int n = cl.devices_per_node * cl.nodes;
    lms_layout probe = {.dp = 1, .tp = o.tp ? o.tp : 1, .pp = o.pp ? o.pp : 1, .vpp = o.vpp, .seq_len = o.seq_len,
                        .micro_batch = o.micro ? o.micro : 1, .prec = cl.prec};
    probe.global_batch = probe.micro_batch * probe.pp; /* the batch is checked against each dp below */
    if (probe.tp > cl.devices_per_node)
        return cli_fail("plan", lms_errorf(LMS_ERR_INVALID_ARG, "--tp %d is more than the %d devices of a node: "
                                           "tensor parallelism stays inside a node", probe.tp, cl.devices_per_node));
    if (o.batch_size < 1)
        return cli_fail("plan", lms_errorf(LMS_ERR_INVALID_ARG, "--batch-size %d must be at least 1", o.batch_size));
    if ((st = lms_layout_check(&probe, &cfg)) != LMS_OK) return cli_fail("plan", st);
    const int T = probe.seq_len;
    lms_plan_row *rows = NULL, smallest;
    int nfit = 0, ntried = 0;
    lms_estimate_opts eo = {.overhead_bytes = -1};
    if ((st = lms_plan_search(&cfg, T, o.batch_size, &cl, &sp, &eo, &rows, &nfit, &ntried, &smallest)) != LMS_OK)
        return cli_fail("plan", st);
    if (ntried == 0) {
        free(rows);
        return cli_fail("plan", lms_errorf(LMS_ERR_INVALID_ARG, "no layout of %d devices divides --batch-size %d "
                                           "with these constraints: make the batch a multiple of the data-parallel "
                                           "degree (e.g. %d)", n, o.batch_size, n));
    }
    if (nfit == 0) {
        char ls[256];
        layout_str(ls, sizeof ls, &smallest.lo);
        free(rows);
        return cli_fail("plan", lms_errorf(LMS_ERR_INVALID_ARG, "none of the %d layouts fits in %.1f GiB per device: "
                                           "the smallest (%s) needs %.1f GiB, %.1f GiB over; use more devices "
                                           "(--nodes), devices with more memory, a smaller --batch-size or "
                                           "--seq-len, or a smaller model", ntried, cl.mem_bytes / GiB, ls,
                                           smallest.est.total / GiB, (smallest.est.total - cl.mem_bytes) / GiB));
    }
    int k = o.top < nfit ? (o.top > 0 ? o.top : 1) : nfit;
    if (o.json) {
        printf("{\"cluster\": {\"name\": \"%s\", \"devices_per_node\": %d, \"nodes\": %d, \"device_memory_bytes\": %.0f, "
               "\"peak_tflops\": %.6g}, \"seq_len\": %d, \"global_batch\": %d, \"layouts_valid\": %d, "
               "\"layouts_fit\": %d,\n \"top\": [\n", cl.name, cl.devices_per_node, cl.nodes, cl.mem_bytes,
               cl.peak_flops / 1e12, T, o.batch_size, ntried, nfit);
        for (int i = 0; i < k; i++) print_row_json(&rows[i], i == k - 1);
        printf(" ]}\n");
    } else {
        printf("plan: L=%d H=%d C=%d V=%d (%.4g B parameters) | batch %d x seq %d | %s: %d node%s x %d devices, "
               "%.0f GiB, %.4g TFLOP/s %s | %d layouts valid, %d fit\n", cfg.L, cfg.NH, cfg.C, cfg.V,
               rows[0].est.params / 1e9, o.batch_size, T, cl.name, cl.nodes, cl.nodes > 1 ? "s" : "",
               cl.devices_per_node, cl.mem_bytes / GiB, cl.peak_flops / 1e12, lms_precision_name(cl.prec), ntried,
               nfit);
        printf("%3s %4s %3s %2s %5s %4s %4s %-9s %2s %9s %9s %11s %8s %6s | %7s %7s %7s %7s %7s\n", "#", "dp", "tp",
               "pp", "v", "mb", "zero", "recompute", "sp", "mem GiB", "step s", "tokens/s", "TFLOP/s", "MFU",
               "bubble", "tp", "pp", "dp", "optim");
        for (int i = 0; i < k; i++) {
            const lms_plan_row *r = &rows[i];
            const lms_layout *lo = &r->lo;
            printf("%3d %4d %3d %2d %5d %4d %4d %-9s %2s %9.2f %9.4g %11.5g %8.4g %5.1f%% | %6.1f%% %6.1f%% %6.1f%% "
                   "%6.1f%% %6.1f%%\n", i + 1, lo->dp, lo->tp, lo->pp, lo->vpp, lo->micro_batch, lo->zero,
                   lms_recompute_name(lo->recompute), lo->seq_parallel && lo->tp > 1 ? "on" : "-",
                   r->est.total / GiB, r->step_s, r->tokens_per_s, r->tflops_hw, 100 * r->mfu,
                   100 * r->bubble_s / r->step_s, 100 * r->tp_comm_s / r->step_s, 100 * r->pp_comm_s / r->step_s,
                   100 * r->dp_comm_s / r->step_s, 100 * r->optim_s / r->step_s);
        }
        printf("TFLOP/s: executed FLOPs (recompute included) per device; MFU: model FLOPs (6N + 12LCT) over peak;\n"
               "the last columns: share of the step in the pipeline bubble, tp / pp / exposed dp communication, optimizer\n");
    }
    free(rows);
    return 0;
}
