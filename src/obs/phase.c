/* Per-phase timing of training steps: a clock read at each phase boundary
 * (a few per micro-batch, ~20 ns each), sums over the counted steps, the
 * compact step-line form, JSON members and the end-of-run table. When a
 * trace records, steps and phases also become its outermost spans. */
#include "lmscale/obs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *NAMES[LMS_PHASE_COUNT] = {"data", "forward", "backward", "grad_comm",
                                             "optim", "tp_comm", "bubble"};
static const char *LETTERS[LMS_PHASE_COUNT] = {"d", "f", "b", "c", "o", "t", "p"};

const char *lms_phase_name(lms_phase p) { return p >= 0 && p < LMS_PHASE_COUNT ? NAMES[p] : "?"; }
const char *lms_phase_letter(lms_phase p) { return p >= 0 && p < LMS_PHASE_COUNT ? LETTERS[p] : "?"; }

void lms_obs_init(lms_obs *o, int skip) {
    memset(o, 0, sizeof *o);
    o->skip = skip < 0 ? 0 : skip;
}

void lms_obs_add_probe(lms_obs *o, double tflops) {
    if (o->nprobes < LMS_OBS_MAX_PROBES) o->probe_tflops[o->nprobes++] = tflops;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double lms_obs_probe_median(const lms_obs *o, double *lo, double *hi) {
    double s[LMS_OBS_MAX_PROBES];
    int n = o->nprobes;
    if (lo) *lo = 0;
    if (hi) *hi = 0;
    if (n <= 0) return 0;
    memcpy(s, o->probe_tflops, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof s[0], cmp_double);
    if (lo) *lo = s[0];
    if (hi) *hi = s[n - 1];
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

void lms_obs_step_begin(lms_obs *o, int step) {
    memset(&o->cur, 0, sizeof o->cur);
    o->step = step;
    lms_trace_set_step(o->trace, step);
    o->t_step = lms_now_s();
}

void lms_obs_phase_begin(lms_obs *o, lms_phase p) {
    o->open |= 1u << p;
    o->t_phase[p] = lms_now_s();
}

void lms_obs_phase_end(lms_obs *o, lms_phase p) {
    if (!(o->open & (1u << p))) return; /* not begun (or ended already) */
    o->open &= ~(1u << p);
    double now = lms_now_s();
    o->cur.phase_s[p] += now - o->t_phase[p];
    if (lms_trace_on(o->trace)) {
        lms_trace_event(o->trace, NAMES[p], "phase", lms_trace_at(o->trace, o->t_phase[p]),
                        lms_trace_at(o->trace, now), NULL);
    }
}

void lms_obs_phase_move(lms_obs *o, lms_phase from, lms_phase to, double s) {
    if (!(s > 0)) return;
    if (s > o->cur.phase_s[from]) s = o->cur.phase_s[from];
    o->cur.phase_s[from] -= s;
    o->cur.phase_s[to] += s;
}

void lms_obs_step_end(lms_obs *o) {
    double now = lms_now_s();
    o->cur.step_s = now - o->t_step;
    if (lms_trace_on(o->trace)) {
        char args[32];
        snprintf(args, sizeof args, "\"step\": %d", o->step);
        lms_trace_event(o->trace, "step", "step", lms_trace_at(o->trace, o->t_step), lms_trace_at(o->trace, now),
                        args);
    }
    o->steps++;
    if (o->steps > o->skip) {
        o->counted++;
        o->sum.step_s += o->cur.step_s;
        for (int p = 0; p < LMS_PHASE_COUNT; p++) o->sum.phase_s[p] += o->cur.phase_s[p];
    }
}

double lms_obs_mean_s(const lms_obs *o, int p) {
    if (!o->counted) return 0;
    return (p < 0 ? o->sum.step_s : o->sum.phase_s[p]) / o->counted;
}

/* tp_comm and bubble show only once they have happened */
static int shown(const lms_obs *o, int p) {
    return p < LMS_PHASE_TP_COMM || o->sum.phase_s[p] > 0 || o->cur.phase_s[p] > 0;
}

void lms_obs_format_compact(const lms_obs *o, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, " |");
    for (int p = 0; p < LMS_PHASE_COUNT && n < cap; p++)
        if (shown(o, p))
            n += (size_t)snprintf(buf + n, cap - n, " %s %.1f", LETTERS[p], o->cur.phase_s[p] * 1e3);
    if (n < cap) snprintf(buf + n, cap - n, " ms");
}

void lms_obs_write_json(const lms_obs *o, FILE *f) {
    for (int p = 0; p < LMS_PHASE_COUNT; p++) fprintf(f, ", \"%s_ms\": %.4f", NAMES[p], o->cur.phase_s[p] * 1e3);
}

void lms_obs_print_summary(const lms_obs *o, FILE *f, double tokens_per_step, double flops_per_token,
                           double peak_tflops, double peak_rss_mb) {
    if (!o->counted) return;
    double step = lms_obs_mean_s(o, -1), other = step;
    fprintf(f, "time per step (mean of %d step%s%s):\n", o->counted, o->counted == 1 ? "" : "s",
            o->skip && o->steps > o->skip ? ", after the warm-up" : "");
    fprintf(f, "  %-10s %10s %7s\n", "phase", "ms", "share");
    for (int p = 0; p < LMS_PHASE_COUNT; p++) {
        if (!shown(o, p)) continue;
        double s = lms_obs_mean_s(o, p);
        other -= s;
        fprintf(f, "  %-10s %10.2f %6.1f%%\n", NAMES[p], s * 1e3, step > 0 ? 100 * s / step : 0);
    }
    if (other < 0) other = 0;
    fprintf(f, "  %-10s %10.2f %6.1f%%\n", "other", other * 1e3, step > 0 ? 100 * other / step : 0);
    fprintf(f, "  %-10s %10.2f %6.1f%%\n", "step", step * 1e3, 100.0);
    double tps = step > 0 ? tokens_per_step / step : 0, tflops = tps * flops_per_token / 1e12;
    fprintf(f, "throughput: %.0f tokens/s | %.4f TFLOP/s | MFU %.1f%% of %.4f TFLOP/s | peak memory %.1f MiB\n",
            tps, tflops, peak_tflops > 0 ? 100 * tflops / peak_tflops : 0, peak_tflops, peak_rss_mb);
}

double lms_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}
