/* `lmscale plot RUN.jsonl [RUN2.jsonl ...] -o FILE.svg`: loss curves (and
 * optionally learning rate, gradient norm and throughput) of one or more
 * runs' --metrics files, overlaid, written as an SVG (src/obs/plot.c). */
#include "cli.h"
#include "lmscale/json.h"
#include "lmscale/obs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { F_LOSS, F_VAL, F_LR, F_NORM, F_TPS, NF };
static const char *FIELDS[NF] = {"loss", "val_loss", "lr", "grad_norm", "tokens_per_s"};

typedef struct {
    char label[128];
    double *x, *y[NF];
    size_t n, cap;
} run;

static void run_free(run *r) {
    free(r->x);
    for (int k = 0; k < NF; k++) free(r->y[k]);
}

static lms_status push(run *r) {
    if (r->n < r->cap) return LMS_OK;
    size_t cap = r->cap ? r->cap * 2 : 256;
    double *x = realloc(r->x, cap * sizeof *x);
    if (!x) return lms_errorf(LMS_ERR_OOM, "out of memory reading metrics");
    r->x = x;
    for (int k = 0; k < NF; k++) {
        double *y = realloc(r->y[k], cap * sizeof *y);
        if (!y) return lms_errorf(LMS_ERR_OOM, "out of memory reading metrics");
        r->y[k] = y;
    }
    r->cap = cap;
    return LMS_OK;
}

static double num(const lms_json *o, const char *key) {
    const lms_json *v = lms_json_get(o, key);
    return v && v->type == LMS_JSON_NUMBER ? v->number : NAN;
}

/* One --metrics file: one JSON object per line (lines without "step" are
 * skipped: other records a run may append). x is the step, or the tokens
 * seen: "tokens" when present, else step x tokens per step (tokens_per_s x
 * step_ms of the first line that has both). */
static lms_status read_run(const char *path, int by_tokens, run *r) {
    unsigned char *data = NULL;
    size_t size = 0;
    LMS_CHECK(lms_read_file(path, &data, &size));
    lms_status st = LMS_OK;
    double per_step = NAN;
    size_t line = 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && data[j] != '\n') j++;
        line++;
        size_t a = i;
        i = j + 1;
        while (a < j && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r')) a++;
        if (a == j) continue;
        char what[4200];
        snprintf(what, sizeof what, "%s line %zu", path, line);
        lms_json *o = NULL;
        LMS_TRY(lms_json_parse((const char *)data + a, j - a, what, &o));
        double step = num(o, "step");
        if (o->type != LMS_JSON_OBJECT || !isfinite(step)) {
            lms_json_free(o);
            continue;
        }
        if (!isfinite(per_step)) {
            double tps = num(o, "tokens_per_s"), ms = num(o, "step_ms");
            if (isfinite(tps) && isfinite(ms)) per_step = round(tps * ms / 1e3);
        }
        st = push(r);
        if (st == LMS_OK) {
            double tok = num(o, "tokens");
            r->x[r->n] = !by_tokens ? step : isfinite(tok) ? tok : step * per_step;
            for (int k = 0; k < NF; k++) r->y[k][r->n] = num(o, FIELDS[k]);
            r->n++;
        }
        lms_json_free(o);
        if (st != LMS_OK) goto fail;
    }
    if (r->n == 0)
        st = lms_errorf(LMS_ERR_FORMAT, "'%s' has no metrics lines (JSON objects with \"step\"): give the file "
                        "written by 'lmscale train --metrics FILE'", path);
fail:
    free(data);
    return st;
}

/* The points of field k of run r that are present, as a series. */
static lms_plot_series series(run *r, int k, int color, int dashed, const char *what, char *label, size_t cap) {
    snprintf(label, cap, "%s%s%s", r->label, what ? ": " : "", what ? what : "");
    lms_plot_series s = {label, r->x, r->y[k], r->n, color, dashed};
    if (dashed) { /* compact the sparse points (validation) so that the line joins them */
        size_t m = 0;
        for (size_t i = 0; i < r->n; i++)
            if (isfinite(r->y[k][i])) {
                r->x[r->n + m] = r->x[i]; /* scratch past n (cap >= 2n is ensured by the caller) */
                r->y[k][r->n + m] = r->y[k][i];
                m++;
            }
        s.x = r->x + r->n;
        s.y = r->y[k] + r->n;
        s.n = m;
    }
    return s;
}

static int has(const run *r, int k) {
    for (size_t i = 0; i < r->n; i++)
        if (isfinite(r->y[k][i])) return 1;
    return 0;
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *xaxis = "step", *title = "lmscale training", *labels = NULL;
    int log_y = 0, want_lr = 0, want_norm = 0, want_tps = 0;
    const cli_opt opts[] = {
        {"output", CLI_STR, &out, "FILE.svg", "the SVG to write (also -o)"},
        {"x", CLI_STR, &xaxis, "AXIS", "step or tokens"},
        {"log-y", CLI_BOOL, &log_y, NULL, "logarithmic loss axis"},
        {"lr", CLI_BOOL, &want_lr, NULL, "add a learning-rate panel"},
        {"grad-norm", CLI_BOOL, &want_norm, NULL, "add a gradient-norm panel"},
        {"throughput", CLI_BOOL, &want_tps, NULL, "add a tokens/s panel"},
        {"title", CLI_STR, &title, "TEXT", "the chart's title"},
        {"labels", CLI_STR, &labels, "A,B", "legend names of the runs (default: the file names)"},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    cli_spec spec = {"plot", "lmscale plot: loss (and lr, grad norm, throughput) curves of --metrics files as SVG.",
                     "lmscale plot RUN.jsonl [RUN2.jsonl ...] -o FILE.svg [flags]", opts, nopts, NULL};
    /* files are the arguments that are neither flags nor a flag's value */
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    const char **files = malloc(sizeof(char *) * (size_t)(argc + 1));
    run *runs = NULL;
    lms_plot_series *ser = NULL;
    char(*lab)[160] = NULL;
    lms_atomic_file af = {0};
    int nrest = 0, nfiles = 0, rc = 1;
    lms_status st = LMS_OK;
    if (!rest || !files) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory parsing flags");
        goto fail;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0) a = "--output";
        if (a[0] != '-') {
            files[nfiles++] = a;
            continue;
        }
        rest[nrest++] = (char *)a;
        int takes = 0;
        for (int k = 0; k < nopts; k++)
            if (strncmp(a, "--", 2) == 0 && strcmp(a + 2, opts[k].name) == 0) takes = opts[k].kind != CLI_BOOL;
        if (takes && i + 1 < argc) rest[nrest++] = argv[++i];
    }
    int help;
    st = cli_parse(&spec, nrest, rest, &help);
    if (st != LMS_OK) goto fail;
    if (help) {
        cli_print_help(&spec, stdout);
        rc = 0;
        goto fail;
    }
    int by_tokens = strcmp(xaxis, "tokens") == 0;
    if (!by_tokens && strcmp(xaxis, "step") != 0) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "--x '%s': choose step or tokens", xaxis);
        goto fail;
    }
    if (nfiles == 0 || !out) {
        st = lms_errorf(LMS_ERR_INVALID_ARG, "%s: usage: lmscale plot RUN.jsonl [RUN2.jsonl ...] -o FILE.svg",
                        nfiles ? "-o FILE.svg is required" : "give at least one --metrics file");
        goto fail;
    }
    runs = calloc((size_t)nfiles, sizeof *runs);
    ser = calloc((size_t)nfiles * 2, sizeof *ser);
    lab = calloc((size_t)nfiles * 2 * 4, sizeof *lab);
    if (!runs || !ser || !lab) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory");
        goto fail;
    }
    const char *lp = labels;
    for (int f = 0; f < nfiles; f++) {
        run *r = &runs[f];
        const char *base = strrchr(files[f], '/');
        base = base ? base + 1 : files[f];
        snprintf(r->label, sizeof r->label, "%s", base);
        char *dot = strstr(r->label, ".jsonl");
        if (dot && dot != r->label) *dot = 0;
        if (lp && *lp) { /* the next name of --labels */
            const char *c = strchr(lp, ',');
            size_t len = c ? (size_t)(c - lp) : strlen(lp);
            snprintf(r->label, sizeof r->label, "%.*s", (int)len, lp);
            lp = c ? c + 1 : NULL;
        }
        LMS_TRY(read_run(files[f], by_tokens, r));
        while (r->cap < 2 * r->n) { /* scratch room for series() */
            size_t n = r->n;
            r->n = r->cap;
            LMS_TRY(push(r));
            r->n = n;
        }
    }
    /* panels: loss (train solid, validation dashed, one colour per run), then the optional ones */
    lms_plot_panel panels[4];
    int np = 0, ns = 0;
    lms_plot_series *loss = ser;
    for (int f = 0; f < nfiles; f++) {
        loss[ns] = series(&runs[f], F_LOSS, f, 0, nfiles > 1 || has(&runs[f], F_VAL) ? "train" : NULL, lab[ns], 160);
        ns++;
        if (has(&runs[f], F_VAL)) {
            loss[ns] = series(&runs[f], F_VAL, f, 1, "validation", lab[ns], 160);
            ns++;
        }
    }
    panels[np++] = (lms_plot_panel){"loss", "loss", log_y, loss, ns, 0};
    int want[3] = {want_lr, want_norm, want_tps}, field[3] = {F_LR, F_NORM, F_TPS};
    const char *titles[3] = {"learning rate", "gradient norm (before clipping)", "throughput"};
    const char *ylabels[3] = {"lr", "grad norm", "tokens/s"};
    lms_plot_series *extra[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        if (!want[k]) continue;
        extra[k] = calloc((size_t)nfiles, sizeof **extra);
        if (!extra[k]) {
            st = lms_errorf(LMS_ERR_OOM, "out of memory");
            break;
        }
        for (int f = 0; f < nfiles; f++)
            extra[k][f] = series(&runs[f], field[k], f, 0, NULL, lab[nfiles * 2 + f], 160);
        panels[np++] = (lms_plot_panel){titles[k], ylabels[k], 0, extra[k], nfiles, nfiles == 1};
    }
    if (st == LMS_OK) st = lms_atomic_open(&af, out);
    if (st == LMS_OK) {
        st = lms_plot_svg(af.f, title, by_tokens ? "tokens" : "step", panels, np);
        st = st == LMS_OK ? lms_atomic_commit(&af) : (lms_atomic_abort(&af), st);
    }
    for (int k = 0; k < 3; k++) free(extra[k]);
    if (st == LMS_OK) {
        printf("wrote %s (%d run%s, %d panel%s)\n", out, nfiles, nfiles == 1 ? "" : "s", np, np == 1 ? "" : "s");
        rc = 0;
    }
fail:
    if (runs)
        for (int f = 0; f < nfiles; f++) run_free(&runs[f]);
    free(runs);
    free(ser);
    free(lab);
    free(rest);
    free(files);
    if (st != LMS_OK) return cli_fail("plot", st);
    return rc;
}
