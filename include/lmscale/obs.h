/* lmscale observability: seeing a run (docs/observability.md).
 *
 *  - per-phase timing of every training step (lms_obs): data, forward,
 *    backward, exposed gradient communication, optimizer, tensor-parallel
 *    communication and the pipeline bubble;
 *  - a Chrome trace-event / Perfetto JSON trace (lms_trace) of chosen steps:
 *    every backend op and every collective, recorded by wrappers around the
 *    backend and communicator vtables that are installed only when profiling;
 *  - TensorBoard event files (lms_tb): TFRecord-framed `Event` protobufs with
 *    scalar summaries, written natively;
 *  - an SVG line-chart writer (lms_plot) with "nice" tick numbers;
 *  - progress bars with rate and ETA (lms_progress).
 *
 * Nothing here changes what is computed: the wrappers call the wrapped op
 * with the same arguments, and timing reads a clock. */
#ifndef LMSCALE_OBS_H
#define LMSCALE_OBS_H

#include "lmscale/backend.h"
#include "lmscale/comm.h"
#include "lmscale/core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- per-phase timing ---- */

typedef enum {
    LMS_PHASE_DATA = 0,  /* building micro-batches from the token stream */
    LMS_PHASE_FORWARD,   /* forward passes (ZeRO-3: with their parameter gathers) */
    LMS_PHASE_BACKWARD,  /* backward passes, with the communication they launch */
    LMS_PHASE_GRAD_COMM, /* exposed gradient communication: waiting, after backward,
                            for the reductions backward did not hide */
    LMS_PHASE_OPTIM,     /* gradient norm, clipping and the optimizer step */
    LMS_PHASE_TP_COMM,   /* tensor-parallel collectives of forward and backward (taken
                            out of those phases: lms_obs_phase_move) */
    LMS_PHASE_BUBBLE,    /* pipeline bubble (none yet: stays 0) */
    LMS_PHASE_COUNT
} lms_phase;

/* "data", "forward", "backward", "grad_comm", "optim", "tp_comm", "bubble" */
const char *lms_phase_name(lms_phase p);
/* one letter for the step line: d f b c o t p */
const char *lms_phase_letter(lms_phase p);

typedef struct lms_trace lms_trace;

typedef struct {
    double step_s;                   /* wall time of the whole step */
    double phase_s[LMS_PHASE_COUNT]; /* time inside each phase */
} lms_step_times;

#define LMS_OBS_MAX_PROBES 256

/* Timing of a run. Phases do not overlap; what a step spends outside every
 * phase (the loss all-reduce, bookkeeping) is step_s - sum(phase_s). */
typedef struct lms_obs {
    lms_step_times cur;    /* the step in progress, or the last one ended */
    lms_step_times sum;    /* over counted steps */
    int steps;             /* steps ended */
    int counted;           /* steps in `sum`: those after the first `skip` */
    int skip;              /* warm-up steps left out of `sum` */
    int step;              /* 1-based number of the current step */
    lms_trace *trace;      /* where spans also go when profiling; not owned, may be NULL */
    double t_step, t_phase[LMS_PHASE_COUNT];
    unsigned open;         /* phases begun and not yet ended (bit p) */
    /* facts of the run, set by train for its callers (bench train) */
    int rank, dp, threads;
    double num_params, peak_tflops; /* peak: the whole job's, measured at start-up (or given) */
    /* the sgemm peak measured again after each counted step (bench train:
     * the machine's speed drifts during a run), whole job's TFLOP/s */
    double probe_tflops[LMS_OBS_MAX_PROBES];
    int nprobes;
} lms_obs;

/* skip: leading steps not counted in the means (warm-up). */
void lms_obs_init(lms_obs *o, int skip);
/* step: 1-based. Also opens a "step N" span in the trace when it records. */
void lms_obs_step_begin(lms_obs *o, int step);
void lms_obs_phase_begin(lms_obs *o, lms_phase p);
/* A no-op for a phase not begun, so that a path that ended it early (to
 * time something else inside) may meet the common end. */
void lms_obs_phase_end(lms_obs *o, lms_phase p);
/* Moves s seconds of the current step from phase `from` to phase `to`
 * (time measured inside `from` that belongs to `to`: tensor-parallel
 * collectives inside forward and backward), so phases stay disjoint. */
void lms_obs_phase_move(lms_obs *o, lms_phase from, lms_phase to, double s);
/* Ends the step: o->cur holds its times, counted steps are added to sum. */
void lms_obs_step_end(lms_obs *o);
/* Records a peak measured after a counted step (ignored past LMS_OBS_MAX_PROBES). */
void lms_obs_add_probe(lms_obs *o, double tflops);
/* The median of the recorded probes (0 when there are none); lo and hi
 * (may be NULL) get the smallest and largest. */
double lms_obs_probe_median(const lms_obs *o, double *lo, double *hi);
/* Mean seconds per counted step (of the phase, or of the step for p < 0). */
double lms_obs_mean_s(const lms_obs *o, int p);
/* " | d 0.1 f 40.2 b 80.3 c 1.2 o 5.0 ms": the current step's phases, in
 * milliseconds (phases that do not exist in this run, tp and bubble while
 * they are 0 in every step, are left out). */
void lms_obs_format_compact(const lms_obs *o, char *buf, size_t cap);
/* Writes the phases of the current step as JSON members
 * `"data_ms": 0.123, ...` (no braces, a leading ", "). */
void lms_obs_write_json(const lms_obs *o, FILE *f);
/* The end-of-run table: mean ms and share of the step per phase, then
 * tokens/s, TFLOP/s, MFU and peak memory. tokens_per_step and
 * flops_per_token give throughput; peak_tflops (whole job) gives MFU. */
void lms_obs_print_summary(const lms_obs *o, FILE *f, double tokens_per_step, double flops_per_token,
                           double peak_tflops, double peak_rss_mb);

/* Peak resident memory of this process in MiB (getrusage). */
double lms_peak_rss_mb(void);

/* ---- traces (Chrome trace-event format, read by Perfetto and chrome://tracing) ---- */

/* A trace of steps step_a..step_b (1-based, inclusive) of this rank. world
 * (may be NULL for one process) is barriered so that the ranks' clocks start
 * together. Collective: every rank of world calls it. */
lms_status lms_trace_new(lms_comm *world, int step_a, int step_b, lms_trace **out);
void lms_trace_free(lms_trace *t);
/* Parses "A:B" (1 <= A <= B) as given to --profile. */
lms_status lms_trace_parse_range(const char *s, int *step_a, int *step_b);
/* Step `step` starts: recording is on while step_a <= step <= step_b. */
void lms_trace_set_step(lms_trace *t, int step);
/* 1 while recording (t may be NULL). */
int lms_trace_on(const lms_trace *t);
/* Nanoseconds since the trace started, now or at time s (lms_now_s): one
 * clock for every span, so that spans nest exactly. */
int64_t lms_trace_now(const lms_trace *t);
int64_t lms_trace_at(const lms_trace *t, double s);
/* One complete ("X") event on the main thread from begin_ns to end_ns. name
 * and cat must live as long as the trace (string literals); args_json is a
 * JSON object body ("\"bytes\": 4096") or NULL, copied (up to 191 bytes). */
void lms_trace_event(lms_trace *t, const char *name, const char *cat, int64_t begin_ns, int64_t end_ns,
                     const char *args_json);
/* Writes the trace of every rank into path (rank 0 writes it, atomically;
 * the others send their events to rank 0). Collective over world (NULL for
 * one process); recording stops first. */
lms_status lms_trace_write(lms_trace *t, lms_comm *world, const char *path);
/* Events recorded and events dropped (past the buffer's cap of 2^20). */
size_t lms_trace_count(const lms_trace *t, size_t *dropped);

/* Wraps *be in place: every op records a span, then runs the wrapped op
 * with the same arguments. The table's name stays the wrapped one's. */
lms_status lms_trace_wrap_backend(lms_backend *be, lms_trace *t);
/* Restores the wrapped backend; a no-op when be is not wrapped. */
void lms_trace_unwrap_backend(lms_backend *be);
/* Wraps *c: every collective (and wait on a non-blocking one) records a span
 * with its bytes, group and size. The wrapper owns the wrapped
 * communicator (lms_comm_free frees both); split() returns wrapped
 * communicators too. */
lms_status lms_trace_wrap_comm(lms_comm **c, lms_trace *t);

/* ---- TensorBoard event files ---- */

typedef struct lms_tb lms_tb;
/* Creates dir (and parents) and dir/events.out.tfevents.<seconds>.<host>,
 * whose first record is the `file_version: "brain.Event:2"` event. */
lms_status lms_tb_open(const char *dir, lms_tb **out);
/* One Event at `step` with a Summary of n scalar values (simple_value),
 * written and flushed (a live TensorBoard sees it). */
lms_status lms_tb_scalars(lms_tb *tb, int64_t step, const char *const *tags, const float *values, int n);
/* The file's path. */
const char *lms_tb_path(const lms_tb *tb);
void lms_tb_close(lms_tb *tb);
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses;
 * crc is the running value (0 to start). */
uint32_t lms_crc32c(uint32_t crc, const void *data, size_t n);

/* ---- SVG line charts ---- */

typedef struct {
    const char *label;   /* legend text */
    const double *x, *y; /* n points; NaN y values are gaps */
    size_t n;
    int color;           /* index into the palette */
    int dashed;          /* dashed line with dots at the points */
} lms_plot_series;

typedef struct {
    const char *title, *ylabel;
    int log_y;
    const lms_plot_series *series;
    int nseries;
    int no_legend; /* 1: no legend box (one unambiguous series) */
} lms_plot_panel;

/* "Nice" ticks covering [lo, hi] (Heckbert): steps of 1, 2 or 5 x 10^k, at
 * most max_ticks of them; returns the count written to ticks (cap >=
 * max_ticks + 2). Log scale: the powers of ten; 1, 2, 5 x 10^k over less
 * than three decades; 1, 1.5, 2, 3, 5, 7 x 10^k over one or two. */
int lms_nice_ticks(double lo, double hi, int max_ticks, int log_scale, double *ticks, int cap);
/* Formats a tick value compactly: 0.001, 2.5, 1000, 20k, 1.5M, 1e-05. */
void lms_tick_label(double v, char *buf, size_t cap);
/* Writes panels stacked vertically, sharing the x label, as one SVG. */
lms_status lms_plot_svg(FILE *f, const char *title, const char *xlabel, const lms_plot_panel *panels,
                        int npanels);

/* ---- progress ---- */

typedef struct {
    const char *label; /* "data prepare" */
    const char *unit;  /* "MB", "tokens", ... */
    double total;      /* in units; <= 0: unknown */
    double done;
    double t0, last;   /* start and last print (lms_now_s) */
    int tty;           /* redraw a bar with \r; else periodic plain lines */
    int enabled, printed;
    double interval;   /* seconds between plain lines */
    FILE *out;         /* stderr */
} lms_progress;

/* Starts a progress report on stderr: a bar redrawn in place when stderr is
 * a terminal (once the task has lasted 0.5 s), else a plain line every 10 s
 * (LMSCALE_PROGRESS=S sets the interval; 0 turns progress off); tasks that
 * end sooner print nothing. enabled 0 (other ranks, --quiet) makes every
 * call a no-op. */
void lms_progress_begin(lms_progress *p, const char *label, double total, const char *unit, int enabled);
/* done: units finished so far. Cheap when nothing is due to print. */
void lms_progress_update(lms_progress *p, double done);
/* Final line (when anything was printed). */
void lms_progress_end(lms_progress *p);
/* Ends a report without the final line (on an error): a bar drawn on a
 * terminal gets its newline, so that the error message starts a line. */
void lms_progress_abort(lms_progress *p);
/* "42s", "3m07s", "2h05m" ("?" for a negative or absurd value). */
void lms_format_duration(char *buf, size_t cap, double seconds);

#ifdef __cplusplus
}
#endif
#endif
