/* A run's identity and settings across resumes (docs/checkpoints.md,
 * "Resume rules" and "Run folders"):
 *   - --resume takes the run's hyperparameters, schedule, total steps, data
 *     split and save settings from the checkpoint; a flag given on the command
 *     line that differs is applied with a one-line notice (lr, steps, save
 *     cadence, ...) or refused (what changes the data split or the model);
 *   - every checkpoint records the run id, new for each fresh run and kept on
 *     resume, and --save DIR holding another run's checkpoints is refused
 *     unless --overwrite. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "lmscale/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int given(const train_opts *o, const char *flag) { return o->cli && cli_given(o->cli, o->given, flag); }

/* keep = 1: the command line's value stays (a notice says so); 0: the
 * checkpoint's is taken. refuse: why this one may not change (NULL: it may). */
static lms_status decide(const train_opts *o, const char *flag, int differ, const char *now, const char *was,
                         const char *refuse, const char *ckp, const lms_logger *lg, int *keep) {
    *keep = 0;
    if (!differ || !given(o, flag)) return LMS_OK;
    if (refuse)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--%s %s differs from the run's %s (checkpoint '%s'): %s; drop --%s "
                          "to continue the run, or start a new one without --resume", flag, now, was, ckp, refuse,
                          flag);
    lms_log(lg, LMS_LOG_INFO, "resume: --%s %s replaces the run's %s", flag, now, was);
    *keep = 1;
    return LMS_OK;
}

/* A number: float values compare exactly (a float widens to double exactly). */
static lms_status take_num(const train_opts *o, const char *flag, double now, double ck, int is_int, const char *refuse,
                           const char *ckp, const lms_logger *lg, int *keep) {
    char a[32], b[32];
    snprintf(a, sizeof a, is_int ? "%.0f" : "%g", now);
    snprintf(b, sizeof b, is_int ? "%.0f" : "%g", ck);
    return decide(o, flag, now != ck, a, b, refuse, ckp, lg, keep);
}

static lms_status take_int(const train_opts *o, const char *flag, int *dst, int ck, const char *refuse,
                           const char *ckp, const lms_logger *lg) {
    int keep;
    LMS_CHECK(take_num(o, flag, *dst, ck, 1, refuse, ckp, lg, &keep));
    if (!keep) *dst = ck;
    return LMS_OK;
}

static lms_status take_float(const train_opts *o, const char *flag, float *dst, float ck, const char *refuse,
                             const char *ckp, const lms_logger *lg) {
    int keep;
    LMS_CHECK(take_num(o, flag, *dst, ck, 0, refuse, ckp, lg, &keep));
    if (!keep) *dst = ck;
    return LMS_OK;
}

static lms_status take_str(const train_opts *o, const char *flag, const char **dst, const char *ck,
                           const char *refuse, const char *ckp, const lms_logger *lg) {
    int keep;
    LMS_CHECK(decide(o, flag, strcmp(*dst, ck) != 0, *dst, ck, refuse, ckp, lg, &keep));
    if (!keep) *dst = ck; /* ck lives as long as the checkpoint */
    return LMS_OK;
}

/* The run folder a checkpoint was saved in: the parent of a directory named
 * step-NNNNNNNN; 0 (none) for a checkpoint copied or renamed elsewhere. */
static int run_folder(const char *ckpt, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", ckpt);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    char *sl = strrchr(buf, '/');
    const char *base = sl ? sl + 1 : buf;
    if (strlen(base) != 13 || strncmp(base, "step-", 5) != 0 || strspn(base + 5, "0123456789") != 8) return 0;
    if (!sl)
        snprintf(buf, cap, ".");
    else if (sl == buf)
        buf[1] = 0;
    else
        *sl = 0;
    return 1;
}

static const char k_split[] = "it decides which tokens are held out for validation";

lms_status train_resume_opts(const train_opts *o, const train_ckpt_ctx *c, train_opts *out, char *save_buf,
                             size_t save_cap, const lms_logger *lg) {
    *out = *o;
    const lms_ckpt_state *s = &((const lms_ckpt *)c->ck)->state;
    const char *ckp = c->resume_path;
    if (given(o, "batch-size") && given(o, "seq-len") ? (o->batch_size != s->global_batch || o->seq_len != s->seq_len)
        : given(o, "batch-size") ? o->batch_size != s->global_batch
        : given(o, "seq-len") && o->seq_len != s->seq_len)
        return lms_errorf(LMS_ERR_INVALID_ARG, "checkpoint '%s' was trained with --batch-size %d --seq-len %d, this "
                          "run asks for --batch-size %d --seq-len %d: resume with the same values or drop the flags "
                          "(the data position is counted in windows of that size)", ckp, s->global_batch,
                          s->seq_len, given(o, "batch-size") ? o->batch_size : s->global_batch,
                          given(o, "seq-len") ? o->seq_len : s->seq_len);
    out->batch_size = s->global_batch;
    out->seq_len = s->seq_len;
    char a[32], b[32];
    snprintf(a, sizeof a, "%llu", (unsigned long long)o->seed);
    snprintf(b, sizeof b, "%llu", (unsigned long long)s->seed);
    int keep;
    LMS_CHECK(decide(o, "seed", o->seed != s->seed, a, b, "the seed fixes the initialisation and the data order",
                     ckp, lg, &keep));
    out->seed = s->seed;
    LMS_CHECK(take_str(o, "data-order", &out->data_order, s->data_order, "it decides which windows come next", ckp,
                       lg));
    /* the schedule and the optimizer: a new value applies from here on */
    LMS_CHECK(take_int(o, "steps", &out->steps, s->sched.total, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "lr", &out->lr, s->sched.lr, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "min-lr", &out->min_lr, s->sched.min_lr, NULL, ckp, lg));
    LMS_CHECK(take_int(o, "warmup-steps", &out->warmup, s->sched.warmup, NULL, ckp, lg));
    LMS_CHECK(take_str(o, "lr-schedule", &out->schedule, lms_schedule_name(s->sched.kind), NULL, ckp, lg));
    LMS_CHECK(take_float(o, "beta1", &out->beta1, s->beta1, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "beta2", &out->beta2, s->beta2, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "eps", &out->eps, s->eps, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "weight-decay", &out->weight_decay, s->weight_decay, NULL, ckp, lg));
    LMS_CHECK(take_float(o, "grad-clip", &out->grad_clip, s->grad_clip, NULL, ckp, lg));
    LMS_CHECK(take_str(o, "dtype", &out->dtype, s->dtype, NULL, ckp, lg)); /* the master is fp32: any dtype resumes */
    if (s->loss_scale_window > 0) { /* fp16's loss scaler settings: a new value applies from here on */
        LMS_CHECK(take_float(o, "loss-scale", &out->loss_scale, s->static_loss_scale, NULL, ckp, lg));
        LMS_CHECK(take_float(o, "min-loss-scale", &out->min_loss_scale, s->min_loss_scale, NULL, ckp, lg));
        LMS_CHECK(take_int(o, "loss-scale-window", &out->loss_scale_window, s->loss_scale_window, NULL, ckp, lg));
    }
    const lms_ckpt_run *r = &s->run;
    if (!r->present && !o->val_data && out->eval_interval == 0 && out->val_fraction > 0) {
        /* before run records, nothing was held out without validation: keep that split */
        out->val_fraction = 0;
        lms_log(lg, LMS_LOG_INFO, "resume: checkpoint '%s' is from before run records and --eval-interval is 0: "
                "nothing held out (--val-fraction 0), as when it was written", ckp);
    }
    if (r->present) { /* checkpoints from before run records keep the command line's */
        LMS_CHECK(take_float(o, "val-fraction", &out->val_fraction, r->val_fraction, k_split, ckp, lg));
        LMS_CHECK(take_int(o, "eval-interval", &out->eval_interval, r->eval_interval, NULL, ckp, lg));
        LMS_CHECK(take_int(o, "eval-batches", &out->eval_batches, r->eval_batches, NULL, ckp, lg));
        LMS_CHECK(take_int(o, "save-every", &out->save_every, r->save_every, NULL, ckp, lg));
        LMS_CHECK(take_int(o, "keep-last", &out->keep_last, r->keep_last, NULL, ckp, lg));
    }
    int in_folder = run_folder(ckp, save_buf, save_cap);
    if (!o->save_dir && in_folder)
        out->save_dir = save_buf;
    else if (in_folder && strcmp(o->save_dir, save_buf) != 0)
        lms_log(lg, LMS_LOG_INFO, "resume: --save %s: this run saves there (its checkpoints so far are in %s)",
                o->save_dir, save_buf);
    if (o->stop_after > 0 && o->stop_after <= s->step)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--stop-after %d is not after step %d, where checkpoint '%s' "
                          "resumes (--stop-after counts the whole run): give a later step or drop it",
                          o->stop_after, s->step, ckp);
    char val[96] = "validation as the command line says"; /* before run records */
    if (r->present && !out->eval_interval)
        snprintf(val, sizeof val, "validation off (--eval-interval 0)");
    else if (r->present && r->val_data)
        snprintf(val, sizeof val, "validation: --val-data, every %d steps", out->eval_interval);
    else if (r->present)
        snprintf(val, sizeof val, "validation: %g%% of --data held out, every %d steps", 100 * out->val_fraction,
                 out->eval_interval);
    char saving[4200] = "no --save: saving nothing (the checkpoint is not in a run folder)";
    int n = out->save_dir ? snprintf(saving, sizeof saving, "saving into %s ", out->save_dir) : 0;
    if (n > 0 && (size_t)n < sizeof saving) {
        if (out->save_every)
            snprintf(saving + n, sizeof saving - n, "every %d steps, keeping %s%d", out->save_every,
                     out->keep_last ? "the newest " : "all (--keep-last ", out->keep_last);
        else
            snprintf(saving + n, sizeof saving - n, "at the end");
        if (out->save_every && !out->keep_last) strncat(saving, ")", sizeof saving - strlen(saving) - 1);
    }
    lms_log(lg, LMS_LOG_INFO, "resume: run %s at step %d of %d | lr %g -> %g (%s, warm-up %d) | batch %d x seq %d "
            "| seed %llu, %s order | %s | %s", r->present ? r->id : "(recorded before run ids)", s->step, out->steps,
            out->lr, out->min_lr, out->schedule, out->warmup, out->batch_size, out->seq_len,
            (unsigned long long)out->seed, out->data_order, val, saving);
    return LMS_OK;
}

/* A new random run id, the same on every rank of world (collective). */
static lms_status new_run_id(lms_comm *world, char *id, size_t cap) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) /* no /dev/urandom: the time and the process */
        v = lms_hash_str("run") ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 32 ^
            (uint64_t)(lms_now_s() * 1e9);
    if (f) fclose(f);
    int64_t mine = (int64_t)(v >> 1), all = mine; /* every rank takes the largest */
    if (world && world->size > 1) LMS_CHECK(world->i->allreduce(world, &mine, &all, 1, LMS_DT_I64, LMS_RED_MAX));
    snprintf(id, cap, "%016llx", (unsigned long long)all);
    return LMS_OK;
}

lms_status train_run_record(train_ckpt_ctx *c, const train_opts *o, lms_comm *world, uint64_t n_train,
                            uint64_t n_val) {
    const lms_ckpt_run *r = c->ck ? &((const lms_ckpt *)c->ck)->state.run : NULL;
    const char *ckp = c->resume_path;
    if (r && r->present && (r->train_tokens != n_train || r->val_tokens != n_val))
        return lms_errorf(LMS_ERR_INVALID_ARG, "the data differ from the run's: checkpoint '%s' trained on %llu tokens "
                      "with %llu for validation (%s), this run has %llu and %llu (%s): resume with the same --data, "
                      "--val-data and --val-fraction; to train on other data, start a new run from these weights "
                      "(lmscale export --hf DIR --resume %s, then train --init DIR)", ckp,
                      (unsigned long long)r->train_tokens, (unsigned long long)r->val_tokens,
                      r->val_data ? "--val-data" : "held out of --data", (unsigned long long)n_train,
                      (unsigned long long)n_val, o->val_data ? "--val-data" : "held out of --data", ckp);
    lms_ckpt_run *run = &c->run;
    memset(run, 0, sizeof *run);
    if (r && r->present)
        snprintf(run->id, sizeof run->id, "%s", r->id); /* the same run, continued */
    else
        LMS_CHECK(new_run_id(world, run->id, sizeof run->id));
    run->present = 1;
    run->val_fraction = o->val_fraction;
    run->val_data = o->val_data != NULL;
    run->train_tokens = n_train;
    run->val_tokens = n_val;
    run->eval_interval = o->eval_interval;
    run->eval_batches = o->eval_batches;
    run->save_every = o->save_every;
    run->keep_last = o->keep_last;
    return LMS_OK;
}

lms_status train_check_run_folder(const train_opts *o, const char *id, int resumed, int rank,
                                  const lms_logger *lg) {
    if (!o->save_dir || (o->overwrite && rank != 0)) return LMS_OK; /* --overwrite: rank 0 checks and removes */
    lms_ckpt_entry *e;
    int n;
    LMS_CHECK(lms_ckpt_list_runs(o->save_dir, &e, &n));
    int other = 0, first = -1;
    for (int i = 0; i < n; i++) {
        /* a resumed run also owns checkpoints from before run ids (an empty id) */
        int ours = e[i].readable && (!strcmp(e[i].run_id, id) || (resumed && !e[i].run_id[0]));
        if (ours) continue;
        e[i].step = -1 - e[i].step; /* marked: another run's */
        if (first < 0) first = i;
        other++;
    }
    lms_status st = LMS_OK;
    if (other && !o->overwrite) {
        char who[80];
        const lms_ckpt_entry *f = &e[first];
        if (!f->readable)
            snprintf(who, sizeof who, "an index that cannot be read");
        else if (!f->run_id[0])
            snprintf(who, sizeof who, "written before run ids");
        else
            snprintf(who, sizeof who, "run %s", f->run_id);
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--save %s holds %d checkpoint%s of another run (newest: step-%08d, %s; "
                        "this run is %s): continue that run with --resume %s, give this one a new --save folder, "
                        "or add --overwrite to delete them", o->save_dir, other, other == 1 ? "" : "s",
                        -1 - f->step, who, id, o->save_dir);
    }
    for (int i = 0; st == LMS_OK && o->overwrite && i < n; i++)
        if (e[i].step < 0) st = lms_ckpt_remove_step(o->save_dir, -1 - e[i].step);
    if (st == LMS_OK && other && o->overwrite)
        lms_log(lg, LMS_LOG_INFO, "--overwrite: removed %d checkpoint%s of another run from %s", other,
                other == 1 ? "" : "s", o->save_dir);
    free(e);
    return st;
}
