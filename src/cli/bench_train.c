/* `lmscale bench train`: a training benchmark built in. It runs the real
 * training loop (train_run) on synthetic tokens (uniform ids from a fixed
 * seed: speed does not depend on the text), leaves the warm-up steps out,
 * and reports tokens/s, TFLOP/s and MFU against the sgemm peak it measures
 * (at start-up, and again after every timed step: MFU is against the
 * median of those probes, the machine's speed while the steps ran),
 * the mean time per phase (lms_obs) and peak memory; --json prints one
 * object for scripts (bench/). Under mpirun it runs data-parallel and rank 0
 * reports the job's numbers. train's own log lines go to stderr. */
#include "cli.h"
#include "lmscale/obs.h"
#include "lmscale/plan.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_json(const train_opts *o, const lms_gpt_config *cfg, double nparams, const lms_obs *obs,
                       double peak, double fpt, int dp, int threads) {
    double plo, phi;
    lms_obs_probe_median(obs, &plo, &phi);
    double step = lms_obs_mean_s(obs, -1), tps = step > 0 ? (double)o->batch_size * o->seq_len / step : 0;
    double tflops = tps * fpt / 1e12, other = step;
    printf("{\"bench\": \"train\", \"model\": \"%s\", \"L\": %d, \"H\": %d, \"C\": %d, \"V\": %d, \"params\": %.0f, "
           "\"batch_size\": %d, \"micro_batch_size\": %d, \"seq_len\": %d, \"steps\": %d, \"warmup\": %d, "
           "\"timed_steps\": %d, \"dp\": %d, \"threads\": %d, \"backend\": \"%s\", \"zero\": %d, "
           "\"recompute\": \"%s\", \"dtype\": \"%s\", ",
           o->model.preset, cfg->L, cfg->NH, cfg->C, cfg->V, nparams, o->batch_size,
           o->micro_batch_size ? o->micro_batch_size : o->batch_size / dp, o->seq_len, o->steps, obs->skip,
           obs->counted, dp, threads, o->backend, o->zero, o->recompute, o->dtype);
    printf("\"tokens_per_s\": %.2f, \"step_ms\": %.4f, \"tflops\": %.6f, \"peak_tflops\": %.6f, \"mfu\": %.6f, "
           "\"peak_tflops_startup\": %.6f, \"peak_probes\": %d, \"peak_probe_min\": %.6f, "
           "\"peak_probe_max\": %.6f, \"flops_per_token\": %.0f, \"peak_rss_mb\": %.1f, \"phases_ms\": {",
           tps, step * 1e3, tflops, peak, peak > 0 ? tflops / peak : 0, obs->peak_tflops, obs->nprobes, plo, phi,
           fpt, lms_peak_rss_mb());
    for (int p = 0; p < LMS_PHASE_COUNT; p++) {
        double s = lms_obs_mean_s(obs, p);
        other -= s;
        printf("\"%s\": %.4f, ", lms_phase_name((lms_phase)p), s * 1e3);
    }
    printf("\"other\": %.4f}}\n", (other > 0 ? other : 0) * 1e3);
}

int cmd_bench_train(int argc, char **argv) {
    train_opts o;
    train_opts_default(&o);
    o.model.preset = "gpt2-124m";
    o.batch_size = 4;
    o.seq_len = 64;
    o.steps = 6;
    int warmup = 1, json = 0;
    const cli_opt opts[] = {
        CLI_MODEL_FLAGS(o.model),
        {"batch-size", CLI_INT, &o.batch_size, "B", "global batch, in sequences"},
        {"micro-batch-size", CLI_INT, &o.micro_batch_size, "M", "sequences per forward/backward (default B/dp)"},
        {"seq-len", CLI_INT, &o.seq_len, "T", "sequence length"},
        {"steps", CLI_INT, &o.steps, "N", "steps in all, warm-up included"},
        {"warmup", CLI_INT, &warmup, "N", "first steps left out of the means"},
        {"threads", CLI_INT, &o.threads, "N", "worker threads per process (0 = all cores)"},
        {"backend", CLI_STR, &o.backend, "NAME", "cpu or ref"},
        {"zero", CLI_INT, &o.zero, "STAGE", "ZeRO stage under mpirun (0 = plain data parallelism)"},
        {"recompute", CLI_STR, &o.recompute, "MODE", "activation recomputation: none, selective or full"},
        {"dtype", CLI_STR, &o.dtype, "T", "compute dtype: fp32, bf16 or fp16 (mixed precision)"},
        {"comm", CLI_STR, &o.comm, "NAME", "auto, single or mpi"},
        {"peak-tflops", CLI_FLOAT, &o.peak_tflops, "X", "peak for MFU per process (default: the sgemm peak "
         "measured after each timed step, median)"},
        {"seed", CLI_U64, &o.seed, "S", "seed of the model and of the synthetic tokens"},
        {"json", CLI_BOOL, &json, NULL, "print one JSON object instead of the table"},
    };
    cli_spec spec = {"bench train", "lmscale bench train: training throughput (tokens/s, TFLOP/s, MFU, time per "
                     "phase, peak memory) on synthetic tokens.", "lmscale bench train [--model NAME] [flags]", opts,
                     (int)(sizeof opts / sizeof opts[0]), NULL};
    int help;
    lms_status st = cli_parse(&spec, argc, argv, &help);
    if (st != LMS_OK) return cli_fail("bench train", st);
    if (help) {
        cli_print_help(&spec, stdout);
        return 0;
    }
    lms_gpt_config cfg;
    if ((st = cli_model_config(&o.model, &cfg)) != LMS_OK) return cli_fail("bench train", st);
    if (warmup < 0 || warmup >= o.steps) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--warmup %d must be at least 0 and below --steps %d (some steps must be "
                   "timed)", warmup, o.steps);
        return cli_fail("bench train", LMS_ERR_INVALID_ARG);
    }
    if (o.seq_len < 1 || o.seq_len > cfg.maxT) {
        lms_errorf(LMS_ERR_INVALID_ARG, "--seq-len %d must be between 1 and the model's %d", o.seq_len, cfg.maxT);
        return cli_fail("bench train", LMS_ERR_INVALID_ARG);
    }
    /* synthetic tokens: enough distinct windows for every step */
    lms_tokens toks = {0};
    toks.n = (size_t)o.seq_len * 64 + 1;
    toks.tokens = malloc(sizeof(int32_t) * toks.n);
    if (!toks.tokens) {
        lms_errorf(LMS_ERR_OOM, "out of memory for the synthetic tokens");
        return cli_fail("bench train", LMS_ERR_OOM);
    }
    uint64_t key = lms_rng_key(o.seed, "bench-train-tokens");
    for (size_t i = 0; i < toks.n; i++) toks.tokens[i] = (int32_t)(lms_rng_u64(key, i) % (uint64_t)cfg.V);
    toks.max_id = cfg.V - 1;
    o.quiet = 1;
    o.eval_interval = 0;
    o.val_fraction = 0;
    o.model_flags_given = 1;
    lms_obs obs;
    lms_obs_init(&obs, warmup);
    o.obs = &obs;
    o.peak_probe = o.peak_tflops <= 0; /* a given peak is used as given */
    if (!json && cli_launch_rank() == 0)
        fprintf(stderr, "bench train: %s, batch %d x seq %d, %d steps (%d warm-up)...\n", o.model.preset,
                o.batch_size, o.seq_len, o.steps, warmup);
    /* train's own lines (model, optimizer, done) go to stderr: stdout is the report */
    fflush(stdout);
    int saved_out = dup(1);
    if (saved_out >= 0) dup2(2, 1);
    st = train_run(&o, &toks, NULL, NULL, NULL, NULL);
    fflush(stdout);
    if (saved_out >= 0) {
        dup2(saved_out, 1);
        close(saved_out);
    }
    free(toks.tokens);
    if (st != LMS_OK) return cli_fail("bench train", st);
    if (obs.rank != 0) return 0;
    /* MFU against the machine's speed while the steps ran, when measured */
    double fpt = lms_flops_per_token(&cfg, o.seq_len),
           peak = obs.nprobes ? lms_obs_probe_median(&obs, NULL, NULL) : obs.peak_tflops;
    if (json) {
        print_json(&o, &cfg, obs.num_params, &obs, peak, fpt, obs.dp, obs.threads);
    } else {
        printf("lmscale bench train: %s (L=%d H=%d C=%d V=%d, %.2fM parameters), batch %d x seq %d, dp %d, "
               "%d threads, backend %s\n", o.model.preset, cfg.L, cfg.NH, cfg.C, cfg.V, obs.num_params / 1e6,
               o.batch_size, o.seq_len, obs.dp, obs.threads, o.backend);
        lms_obs_print_summary(&obs, stdout, (double)o.batch_size * o.seq_len, fpt, peak, lms_peak_rss_mb());
    }
    return 0;
}
