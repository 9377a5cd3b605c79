/* What `lmscale train` reports besides its step lines: the --metrics file
 * (one JSON object per step; write errors are errors; a resumed run first
 * drops the rows after the step it resumes from, so no step appears twice)
 * and the peak that MFU is measured against (measured once per machine and
 * cached, so that runs compare). Formats: docs/mfu.md, README. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <math.h>
#include "lmscale/backend.h"
#include "lmscale/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- the metrics file ---- */

/* The step of a complete row "{"step": N, ...}\n", or -1. */
static long row_step(const char *line, size_t n) {
    static const char key[] = "{\"step\": ";
    if (n < sizeof key || memcmp(line, key, sizeof key - 1) != 0 || line[n - 1] != '\n') return -1;
    char *end;
    long s = strtol(line + sizeof key - 1, &end, 10);
    return (end > line + sizeof key - 1 && s >= 0) ? s : -1;
}

/* Keeps the rows of steps <= keep (a fresh run: keep 0) of an existing
 * regular file, rewriting it atomically when anything goes. */
static lms_status trim_rows(const char *path, int keep, const lms_logger *lg) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) return LMS_OK;
    unsigned char *buf;
    size_t n;
    LMS_CHECK(lms_read_file(path, &buf, &n));
    char *text = (char *)buf, *out = malloc(n + 1);
    if (!out) {
        free(buf);
        return lms_errorf(LMS_ERR_OOM, "out of memory reading --metrics file '%s'", path);
    }
    size_t kept = 0, nkept = 0, ndropped = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (text + i)) + 1 : n - i;
        long s = row_step(text + i, len);
        if (s >= 1 && s <= keep) {
            memcpy(out + kept, text + i, len);
            kept += len;
            nkept++;
        } else {
            ndropped++; /* after the resumed step, another run's, or cut short by a kill */
        }
        i += len;
    }
    lms_status st = LMS_OK;
    if (ndropped) {
        lms_atomic_file af;
        st = lms_atomic_open(&af, path);
        if (st == LMS_OK) {
            st = lms_atomic_write(&af, out, kept);
            if (st == LMS_OK)
                st = lms_atomic_commit(&af); /* cleans up after itself on failure */
            else
                lms_atomic_abort(&af);
        }
        if (st == LMS_OK && keep)
            lms_log(lg, LMS_LOG_INFO, "metrics: %s keeps its %zu rows up to step %d and drops %zu after it "
                    "(steps this run repeats from the checkpoint)", path, nkept, keep, ndropped);
        else if (st == LMS_OK)
            lms_log(lg, LMS_LOG_INFO, "metrics: %s held %zu rows of an earlier run: a new run starts it "
                    "afresh", path, ndropped);
    }
    free(out);
    free(buf);
    return st == LMS_OK ? LMS_OK : lms_error_context(st, "--metrics file '%s'", path);
}

lms_status train_metrics_open(train_metrics *m, const char *path, int resumed_step, const lms_logger *lg) {
    memset(m, 0, sizeof *m);
    LMS_CHECK(trim_rows(path, resumed_step, lg));
    m->f = fopen(path, "a");
    if (!m->f)
        return lms_errorf(LMS_ERR_IO, "cannot open --metrics file '%s' for appending: %s (check that its "
                          "directory exists and is writable)", path, strerror(errno));
    snprintf(m->path, sizeof m->path, "%s", path);
    return LMS_OK;
}

static lms_status write_error(const train_metrics *m, int e) {
    return lms_errorf(LMS_ERR_IO, "cannot write --metrics file '%s': %s (disk full? free space or give "
                      "--metrics another path)", m->path, strerror(e ? e : EIO));
}

lms_status train_metrics_put(train_metrics *m, const train_row *r) {
    if (!m->f) return LMS_OK;
    errno = 0;
    char norm[32] = "null"; /* a skipped fp16 step's norm is inf/NaN: not a JSON number */
    if (isfinite(r->grad_norm)) snprintf(norm, sizeof norm, "%.17g", r->grad_norm);
    int bad = fprintf(m->f, "{\"step\": %d, \"loss\": %.17g, \"lr\": %.9g, \"grad_norm\": %s, "
                      "\"step_ms\": %.3f, \"tokens_per_s\": %.2f, \"mfu\": %.6f", r->step, r->loss, r->lr,
                      norm, r->step_ms, r->tokens_per_s, r->mfu) < 0;
    if (r->fp16)
        bad |= fprintf(m->f, ", \"loss_scale\": %.9g, \"skipped\": %d, \"skipped_steps\": %d", r->loss_scale,
                       r->skipped, r->skipped_total) < 0;
    if (r->have_val) bad |= fprintf(m->f, ", \"val_loss\": %.17g", r->val_loss) < 0;
    if (r->tokens) bad |= fprintf(m->f, ", \"tokens\": %llu", r->tokens) < 0;
    if (r->obs) lms_obs_write_json(r->obs, m->f); /* data_ms, forward_ms, ... (docs/observability.md) */
    if (r->extra) bad |= fputs(r->extra, m->f) < 0;
    bad |= fprintf(m->f, ", \"param_mb\": %.3f, \"grad_mb\": %.3f, \"optim_mb\": %.3f, \"peak_rss_mb\": %ld}\n",
                   r->state_mb[0], r->state_mb[1], r->state_mb[2], r->peak_rss_mb) < 0;
    if (bad || fflush(m->f) != 0 || ferror(m->f)) return write_error(m, errno);
    return LMS_OK;
}

void train_comm_json(const lms_step_result *r, int pipeline, char *buf, size_t cap) {
    int n = snprintf(buf, cap, ", \"tp_coll_bytes\": %llu, \"dp_coll_bytes\": %llu", (unsigned long long)r->tp_bytes,
                     (unsigned long long)r->dp_bytes);
    if (pipeline && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, ", \"pp_coll_bytes\": %llu, \"pp_sent_bytes\": %llu, \"emb_coll_bytes\": %llu",
                 (unsigned long long)r->pp_bytes, (unsigned long long)r->pp_sent_bytes,
                 (unsigned long long)r->emb_bytes);
}

lms_status train_metrics_close(train_metrics *m) {
    if (!m->f) return LMS_OK;
    errno = 0;
    int bad = ferror(m->f) || fclose(m->f) != 0;
    m->f = NULL;
    return bad ? write_error(m, errno) : LMS_OK;
}

/* ---- the MFU peak ---- */

static void cpu_model(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) break;
        for (v++; *v == ' ' || *v == '\t'; v++) {}
        snprintf(buf, cap, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    fclose(f);
}

/* The cached peak for key in path, or 0. */
static double read_cache(const char *path, const char *key) {
    unsigned char *buf;
    size_t n;
    struct stat sb;
    if (stat(path, &sb) != 0 || lms_read_file(path, &buf, &n) != LMS_OK) {
        lms_clear_error();
        return 0;
    }
    lms_json *j = NULL;
    double peak = 0;
    if (lms_json_parse((const char *)buf, n, path, &j) == LMS_OK) {
        const lms_json *k = lms_json_get(j, "key"), *p = lms_json_get(j, "peak_tflops");
        if (k && k->type == LMS_JSON_STRING && !strcmp(k->str, key) && p && p->type == LMS_JSON_NUMBER &&
            p->number > 0 && p->number < 1e9)
            peak = p->number;
    }
    lms_clear_error();
    lms_json_free(j);
    free(buf);
    return peak;
}

static lms_status write_cache(const char *dir, const char *path, const char *key, double peak) {
    LMS_CHECK(lms_mkdirs(dir));
    char text[1536];
    time_t now = time(NULL);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(text, sizeof text, "{\"peak_tflops\": %.9g, \"measured\": \"%s\", \"key\": \"%s\"}\n",
                       peak, when, key);
    if (len < 0 || len >= (int)sizeof text) return lms_errorf(LMS_ERR_INTERNAL, "peak cache line too long");
    lms_atomic_file af;
    LMS_CHECK(lms_atomic_open(&af, path));
    lms_status st = lms_atomic_write(&af, text, (size_t)len);
    if (st == LMS_OK) return lms_atomic_commit(&af);
    lms_atomic_abort(&af);
    return st;
}

lms_status train_peak(float flag_tflops, lms_backend *be, int threads, const lms_logger *lg, double *peak,
                      char *src, size_t cap) {
    if (flag_tflops > 0) {
        *peak = flag_tflops;
        snprintf(src, cap, "--peak-tflops");
        return LMS_OK;
    }
    /* what the sgemm speed depends on: the CPU, the threads, the BLAS
     * kernels and the backend; JSON-safe characters only */
    char cpu[256], key[512], dir[4096], path[4200];
    cpu_model(cpu, sizeof cpu);
    for (char *c = cpu; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '_';
    snprintf(key, sizeof key, "%s | %d threads | BLAS %s | backend %s", cpu, threads, lms_blas_corename(),
             be->i->name);
    const char *xdg = lms_env("XDG_CACHE_HOME"), *home = lms_env("HOME");
    if (xdg)
        snprintf(dir, sizeof dir, "%s/lmscale", xdg);
    else if (home)
        snprintf(dir, sizeof dir, "%s/.cache/lmscale", home);
    else
        dir[0] = 0;
    snprintf(path, sizeof path, "%s/peak-%016llx.json", dir, (unsigned long long)lms_hash_str(key));
    if (dir[0] && (*peak = read_cache(path, key)) > 0) {
        snprintf(src, cap, "cached in %s", path);
        return LMS_OK;
    }
    *peak = lms_backend_measure_peak_tflops(be);
    if (!dir[0]) {
        snprintf(src, cap, "measured now; no $XDG_CACHE_HOME or $HOME to cache it in");
        return LMS_OK;
    }
    if (write_cache(dir, path, key, *peak) != LMS_OK) {
        lms_log(lg, LMS_LOG_WARN, "cannot cache the measured peak: %s (MFU of later runs is measured "
                "again)", lms_last_error());
        lms_clear_error();
        snprintf(src, cap, "measured now, not cached");
        return LMS_OK;
    }
    snprintf(src, cap, "measured now, cached in %s", path);
    return LMS_OK;
}
