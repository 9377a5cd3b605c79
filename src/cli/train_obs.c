/* What `train` shows of a run besides its step lines (docs/observability.md):
 * per-phase timing (lms_obs, the caller's or our own), the --profile trace
 * (the backend and the world communicator wrapped while it is set up), the
 * --tensorboard-dir event file (rank 0), and the end-of-run summary table.
 * train.c calls these at a few points; everything else stays here. */
#include "cli.h"
#include "lmscale/obs.h"

#include <math.h>
#include <string.h>

lms_status train_obs_open(train_obs *to, const train_opts *o, lms_comm **world, lms_backend *be) {
    memset(to, 0, sizeof *to);
    to->obs = o->obs ? o->obs : &to->own;
    if (!o->obs) lms_obs_init(&to->own, o->steps > 1); /* the first step (start-up) out of the means */
    to->rank0 = (*world)->rank == 0;
    if (o->profile || o->trace) {
        if (!o->profile || !o->trace)
            return lms_errorf(LMS_ERR_INVALID_ARG, "%s: give both --profile STEP_A:STEP_B and --trace FILE.json",
                              o->profile ? "--profile without --trace" : "--trace without --profile");
        LMS_CHECK(lms_trace_parse_range(o->profile, &to->step_a, &to->step_b));
        if (to->rank0) { /* fail now, not after the profiled steps */
            lms_atomic_file af;
            LMS_CHECK(lms_atomic_open(&af, o->trace));
            lms_atomic_abort(&af);
        }
        LMS_CHECK(lms_trace_new(*world, to->step_a, to->step_b, &to->trace));
        LMS_CHECK(lms_trace_wrap_backend(be, to->trace));
        LMS_CHECK(lms_trace_wrap_comm(world, to->trace));
        to->obs->trace = to->trace;
    }
    return LMS_OK;
}

lms_status train_obs_start(train_obs *to, const train_opts *o, const lms_logger *lg) {
    if (o->tensorboard_dir && to->rank0) { /* only now: a run refused earlier leaves no file */
        LMS_CHECK(lms_tb_open(o->tensorboard_dir, &to->tb));
        lms_log(lg, LMS_LOG_INFO, "tensorboard: %s (flushed every step)", lms_tb_path(to->tb));
    }
    if (to->trace)
        lms_log(lg, LMS_LOG_INFO, "profile: steps %d-%d traced to %s", to->step_a, to->step_b, o->trace);
    return LMS_OK;
}

lms_status train_obs_step(train_obs *to, const train_opts *o, lms_comm *world, const train_obs_row *r) {
    if (to->tb) {
        const lms_obs *ob = to->obs;
        const char *tags[8 + LMS_PHASE_COUNT + 1];
        float v[8 + LMS_PHASE_COUNT + 1];
        static const char *PHASE_TAGS[LMS_PHASE_COUNT] = {"time/data_ms", "time/forward_ms", "time/backward_ms",
                                                          "time/grad_comm_ms", "time/optim_ms", "time/tp_comm_ms",
                                                          "time/bubble_ms"};
        int n = 0;
        tags[n] = "train/loss", v[n++] = (float)r->loss;
        tags[n] = "train/lr", v[n++] = r->lr;
        tags[n] = "train/grad_norm", v[n++] = (float)r->grad_norm;
        if (!isnan(r->val_loss)) tags[n] = "val/loss", v[n++] = (float)r->val_loss;
        tags[n] = "perf/tokens_per_s", v[n++] = (float)r->tokens_per_s;
        tags[n] = "perf/mfu", v[n++] = (float)r->mfu;
        tags[n] = "memory/peak_rss_mb", v[n++] = (float)r->peak_rss_mb;
        tags[n] = "time/step_ms", v[n++] = (float)(r->step_s * 1e3);
        for (int p = 0; p < LMS_PHASE_COUNT; p++)
            if (p < LMS_PHASE_TP_COMM || ob->cur.phase_s[p] > 0)
                tags[n] = PHASE_TAGS[p], v[n++] = (float)(ob->cur.phase_s[p] * 1e3);
        LMS_CHECK(lms_tb_scalars(to->tb, r->step, tags, v, n));
    }
    if (to->trace && !to->written && r->step == to->step_b) {
        to->written = 1;
        LMS_CHECK(lms_trace_write(to->trace, world, o->trace));
    }
    return LMS_OK;
}

void train_obs_ckpt_begin(train_obs *to) { to->t_ckpt = lms_now_s(); }

void train_obs_ckpt_end(train_obs *to, int saved) {
    if (!saved || !lms_trace_on(to->trace)) return;
    lms_trace_event(to->trace, "checkpoint_save", "checkpoint", lms_trace_at(to->trace, to->t_ckpt),
                    lms_trace_now(to->trace), NULL);
}

lms_status train_obs_close(train_obs *to, const train_opts *o, lms_comm *world, const lms_logger *lg,
                           double tokens_per_step, double flops_per_token, double peak_tflops) {
    lms_status st = LMS_OK;
    if (to->trace && !to->written) { /* the run ended before STEP_B */
        to->written = 1;
        st = lms_trace_write(to->trace, world, o->trace);
    }
    if (to->trace && to->rank0 && st == LMS_OK) {
        size_t dropped, n = lms_trace_count(to->trace, &dropped);
        lms_log(lg, LMS_LOG_INFO, "profile: wrote %s (%zu events on rank 0%s; open it in ui.perfetto.dev or "
                "chrome://tracing)", o->trace, n, dropped ? ", some dropped: profile fewer steps" : "");
    }
    if (to->rank0 && !o->obs && to->obs->counted) {
        FILE *f = lg->out ? lg->out : stdout;
        lms_obs_print_summary(to->obs, f, tokens_per_step, flops_per_token, peak_tflops, lms_peak_rss_mb());
        fflush(f);
    }
    return st;
}

void train_obs_free(train_obs *to, lms_backend *be) {
    lms_trace_unwrap_backend(be);
    if (to->obs) to->obs->trace = NULL;
    lms_trace_free(to->trace);
    lms_tb_close(to->tb);
    to->trace = NULL;
    to->tb = NULL;
}
