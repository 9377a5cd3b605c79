/* SVG line charts: panels stacked vertically over a shared x axis, each
 * with a frame, grid lines at "nice" tick values (1, 2 or 5 x 10^k;
 * Heckbert, "Nice numbers for graph labels", Graphics Gems, 1990), tick
 * labels, a y label, and a legend of its series. Plain SVG 1.1 that any
 * renderer draws (no scripts, no CSS beyond presentation attributes). */
#include "lmscale/obs.h"

#include <math.h>
#include <string.h>

static double nice_num(double x, int round_it) {
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_it) nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

int lms_nice_ticks(double lo, double hi, int max_ticks, int log_scale, double *ticks, int cap) {
    int n = 0;
    if (!(hi > lo)) {
        if (cap > 0) ticks[n++] = lo;
        return n;
    }
    if (log_scale) {
        if (!(lo > 0)) return 0;
        int e0 = (int)floor(log10(lo) + 1e-9), e1 = (int)ceil(log10(hi) - 1e-9);
        int span = e1 - e0;
        static const double MANT_FEW[] = {1, 2, 5}, MANT_ONE[] = {1, 1.5, 2, 3, 5, 7};
        const double *m = span <= 1 ? MANT_ONE : MANT_FEW;
        int nm = span <= 1 ? 6 : span < 3 ? 3 : 1;
        int stride = span >= 3 && span + 1 > max_ticks ? (span + max_ticks - 1) / max_ticks : 1;
        for (int e = e0; e <= e1 && n < cap; e += 1)
            for (int k = 0; k < nm && n < cap; k++) {
                if (nm == 1 && (e - e0) % stride) continue;
                double v = m[k] * pow(10, e);
                if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks[n++] = v;
            }
        if (n < 4) { /* a narrow range: linear nice ticks, when they are more */
            double lin[64];
            int nl = lms_nice_ticks(lo, hi, max_ticks, 0, lin, cap < 64 ? cap : 64);
            if (nl > n) {
                memcpy(ticks, lin, sizeof(double) * (size_t)nl);
                n = nl;
            }
        }
        return n;
    }
    if (max_ticks < 2) max_ticks = 2;
    double range = nice_num(hi - lo, 0), d = nice_num(range / (max_ticks - 1), 1);
    double start = ceil(lo / d - 1e-9) * d;
    for (double v = start; v <= hi + d * 1e-9 && n < cap; v += d) ticks[n++] = fabs(v) < d * 1e-9 ? 0 : v;
    return n;
}

void lms_tick_label(double v, char *buf, size_t cap) {
    double a = fabs(v);
    if (a == 0) snprintf(buf, cap, "0");
    else if (a >= 1e9) snprintf(buf, cap, "%gG", v / 1e9);
    else if (a >= 1e6) snprintf(buf, cap, "%gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, cap, "%gk", v / 1e3);
    else if (a >= 1e-3) snprintf(buf, cap, "%.4g", v);
    else { /* 3e-04 -> 3e-4 */
        char t[32];
        snprintf(t, sizeof t, "%.0e", v);
        char *e = strchr(t, 'e');
        if (e && (e[1] == '-' || e[1] == '+') && e[2] == '0') memmove(e + 2, e + 3, strlen(e + 3) + 1);
        snprintf(buf, cap, "%s", t);
    }
}

static const char *PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                                "#e377c2"};
#define NPAL ((int)(sizeof PALETTE / sizeof PALETTE[0]))

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

enum { W = 960, PH = 300, ML = 78, MR = 24, MT = 34, MB = 26, TITLE_H = 34, XLAB_H = 46 };

typedef struct {
    double lo, hi;
    int log;
} axis;

static double map(const axis *a, double v, double p0, double p1) {
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    return p0 + t * (p1 - p0);
}

/* the data range of the x (which 0) or y (which 1) values, ignoring NaN (and <= 0 on a log axis) */
static int range(const lms_plot_panel *ps, int np, int which, int log_y, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int k = 0; k < np; k++)
        for (int s = 0; s < ps[k].nseries; s++) {
            const lms_plot_series *se = &ps[k].series[s];
            for (size_t i = 0; i < se->n; i++) {
                double v = which ? se->y[i] : se->x[i], other = which ? se->x[i] : se->y[i];
                if (!isfinite(v) || !isfinite(other) || (which && log_y && v <= 0)) continue;
                if (v < *lo) *lo = v;
                if (v > *hi) *hi = v;
            }
        }
    return *lo <= *hi;
}

static void pad_axis(axis *a) {
    if (a->log) {
        if (a->hi <= a->lo) a->lo /= 2, a->hi *= 2;
        double span = log10(a->hi / a->lo) * 0.04;
        a->lo /= pow(10, span);
        a->hi *= pow(10, span);
    } else {
        if (a->hi <= a->lo) a->lo -= fabs(a->lo) * 0.1 + 1, a->hi += fabs(a->hi) * 0.1 + 1;
        double span = (a->hi - a->lo) * 0.04;
        a->lo -= span;
        a->hi += span;
    }
}

static void panel(FILE *f, const lms_plot_panel *p, const axis *xa, int top, const char *xlabel, int bottom) {
    double x0 = ML, x1 = W - MR, y0 = top + MT, y1 = top + PH - MB;
    axis ya = {0, 1, p->log_y};
    if (!range(p, 1, 1, p->log_y, &ya.lo, &ya.hi)) ya.lo = p->log_y ? 1 : 0, ya.hi = p->log_y ? 10 : 1;
    pad_axis(&ya);
    fprintf(f, "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" stroke=\"#444444\"/>\n",
            x0, y0, x1 - x0, y1 - y0);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">", x0, top + MT - 10.0);
    esc(f, p->title);
    fputs("</text>\n", f);
    double t[64];
    char lab[32];
    int nt = lms_nice_ticks(ya.lo, ya.hi, 6, ya.log, t, 64);
    for (int i = 0; i < nt; i++) {
        double y = map(&ya, t[i], y1, y0);
        lms_tick_label(t[i], lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", x0, y, x1, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%s</text>\n", x0 - 6, y + 4, lab);
    }
    nt = lms_nice_ticks(xa->lo, xa->hi, 8, 0, t, 64);
    for (int i = 0; i < nt; i++) {
        double x = map(xa, t[i], x0, x1);
        lms_tick_label(t[i], lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", x, y0, x, y1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n", x, y1 + 16, lab);
    }
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" font-size=\"13\" text-anchor=\"middle\">",
            18.0, (y0 + y1) / 2);
    esc(f, p->ylabel);
    fprintf(f, "%s</text>\n", p->log_y ? " (log)" : "");
    if (bottom) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">", (x0 + x1) / 2, y1 + 38);
        esc(f, xlabel);
        fputs("</text>\n", f);
    }
    /* the series, clipped to the frame */
    fprintf(f, "<clipPath id=\"c%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n", top,
            x0, y0, x1 - x0, y1 - y0);
    fprintf(f, "<g clip-path=\"url(#c%d)\" fill=\"none\" stroke-width=\"1.8\">\n", top);
    for (int s = 0; s < p->nseries; s++) {
        const lms_plot_series *se = &p->series[s];
        const char *col = PALETTE[se->color % NPAL];
        int open = 0;
        for (size_t i = 0; i < se->n; i++) {
            double xv = se->x[i], yv = se->y[i];
            int ok = isfinite(xv) && isfinite(yv) && !(ya.log && yv <= 0);
            if (!ok) {
                if (open) fputs("\"/>\n", f);
                open = 0;
                continue;
            }
            double px = map(xa, xv, x0, x1), py = map(&ya, yv, y1, y0);
            if (!open)
                fprintf(f, "<polyline stroke=\"%s\"%s points=\"", col, se->dashed ? " stroke-dasharray=\"6,4\"" : "");
            fprintf(f, "%s%.1f,%.1f", open ? " " : "", px, py);
            open = 1;
        }
        if (open) fputs("\"/>\n", f);
        if (se->dashed)
            for (size_t i = 0; i < se->n; i++)
                if (isfinite(se->x[i]) && isfinite(se->y[i]) && !(ya.log && se->y[i] <= 0))
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\" stroke=\"none\"/>\n",
                            map(xa, se->x[i], x0, x1), map(&ya, se->y[i], y1, y0), col);
    }
    fputs("</g>\n", f);
    /* legend, top right inside the frame */
    if (p->nseries > 0 && !p->no_legend) {
        double lw = 0;
        for (int s = 0; s < p->nseries; s++) {
            double w = 7.0 * (double)strlen(p->series[s].label ? p->series[s].label : "");
            if (w > lw) lw = w;
        }
        double bx = x1 - lw - 52, by = y0 + 8;
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ffffff\" fill-opacity=\"0.85\" "
                "stroke=\"#bbbbbb\"/>\n", bx, by, lw + 44, 18.0 * p->nseries + 6);
        for (int s = 0; s < p->nseries; s++) {
            const lms_plot_series *se = &p->series[s];
            double ly = by + 15 + 18.0 * s;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
                    bx + 6, ly - 4, bx + 30, ly - 4, PALETTE[se->color % NPAL],
                    se->dashed ? " stroke-dasharray=\"6,4\"" : "");
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", bx + 36, ly);
            esc(f, se->label);
            fputs("</text>\n", f);
        }
    }
    fputs("</g>\n", f);
}

lms_status lms_plot_svg(FILE *f, const char *title, const char *xlabel, const lms_plot_panel *panels,
                        int npanels) {
    axis xa = {0, 1, 0};
    if (!range(panels, npanels, 0, 0, &xa.lo, &xa.hi))
        return lms_errorf(LMS_ERR_INVALID_ARG, "nothing to plot: no finite points in any series");
    pad_axis(&xa);
    int h = TITLE_H + PH * npanels + XLAB_H;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n", W, h, W, h);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"17\" text-anchor=\"middle\">", W / 2);
    esc(f, title);
    fputs("</text>\n", f);
    for (int k = 0; k < npanels; k++) panel(f, &panels[k], &xa, TITLE_H + PH * k, xlabel, k == npanels - 1);
    fputs("</svg>\n", f);
    return ferror(f) ? lms_errorf(LMS_ERR_IO, "cannot write the SVG (disk full?)") : LMS_OK;
}
