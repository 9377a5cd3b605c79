/* Progress reports on stderr: on a terminal a bar redrawn in place (at most
 * 10 times a second) with the rate and the ETA; elsewhere (a log file, a
 * pipe, a batch job) a plain line every `interval` seconds and a final
 * line, so logs stay readable. Callers report units done out of a total. */
#include "lmscale/obs.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lms_format_duration(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

/* 1234567 -> "1.23M" */
static void fmt_amount(char *buf, size_t cap, double v) {
    if (v >= 1e9) snprintf(buf, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6) snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, cap, "%.1fk", v / 1e3);
    else if (v >= 100 || v == (double)(long long)v) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, "%.*f", v >= 10 ? 1 : 2, v);
}

void lms_progress_begin(lms_progress *p, const char *label, double total, const char *unit, int enabled) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit ? unit : "";
    p->total = total;
    p->out = stderr;
    p->interval = 10;
    const char *env = lms_env("LMSCALE_PROGRESS");
    if (env) {
        char *end;
        double v = strtod(env, &end);
        if (end != env && !*end && v >= 0) p->interval = v;
        if (v == 0) enabled = 0;
    }
    p->enabled = enabled;
    p->tty = isatty(fileno(stderr));
    p->t0 = p->last = lms_now_s();
}

static void print(lms_progress *p, double now, int final) {
    double el = now - p->t0, rate = el > 0 ? p->done / el : 0;
    char done[32], total[32], r[32], eta[32], took[32];
    fmt_amount(done, sizeof done, p->done);
    fmt_amount(total, sizeof total, p->total);
    fmt_amount(r, sizeof r, rate);
    lms_format_duration(took, sizeof took, el);
    double frac = p->total > 0 ? p->done / p->total : 0;
    if (frac > 1) frac = 1;
    lms_format_duration(eta, sizeof eta, rate > 0 && p->total > 0 ? (p->total - p->done) / rate : -1);
    if (p->tty) {
        char bar[31];
        int k = (int)(frac * 30 + 0.5);
        for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '-';
        bar[30] = 0;
        if (p->total > 0)
            fprintf(p->out, "\r%s [%s] %3.0f%% %s/%s %s | %s %s/s | %s %s\033[K", p->label, bar, 100 * frac, done,
                    total, p->unit, r, p->unit, final ? "took" : "ETA", final ? took : eta);
        else
            fprintf(p->out, "\r%s %s %s | %s %s/s | %s\033[K", p->label, done, p->unit, r, p->unit, took);
        if (final) fputc('\n', p->out);
    } else if (final) {
        fprintf(p->out, "%s: done, %s %s in %s (%s %s/s)\n", p->label, done, p->unit, took, r, p->unit);
    } else if (p->total > 0) {
        fprintf(p->out, "%s: %.0f%% (%s/%s %s) | %s %s/s | ETA %s\n", p->label, 100 * frac, done, total, p->unit, r,
                p->unit, eta);
    } else {
        fprintf(p->out, "%s: %s %s | %s %s/s | %s\n", p->label, done, p->unit, r, p->unit, took);
    }
    fflush(p->out);
    p->printed = 1;
    p->last = now;
}

void lms_progress_update(lms_progress *p, double done) {
    if (!p->enabled) return;
    p->done = done;
    double now = lms_now_s();
    /* a terminal gets the bar once the task has lasted half a second (or
     * the interval, when shorter), then 10 redraws a second */
    double due = p->tty ? (p->printed ? 0.1 : (p->interval < 0.5 ? p->interval : 0.5)) : p->interval;
    if (now - p->last >= due) print(p, now, 0);
}

void lms_progress_end(lms_progress *p) {
    if (!p->enabled) return;
    if (p->printed) print(p, lms_now_s(), 1);
    p->enabled = 0;
}

void lms_progress_abort(lms_progress *p) {
    if (p->enabled && p->printed && p->tty) fputc('\n', p->out);
    p->enabled = 0;
}
