/* Chrome trace-event / Perfetto JSON traces (the Trace Event Format's JSON
 * object form: {"traceEvents": [...], "displayTimeUnit": "ms"}).
 *
 * Each rank records complete ("X") events on its main thread (tid 0) into a
 * growing buffer, timestamps in integer nanoseconds from one clock, so that
 * spans recorded inside others nest exactly. At the end each rank sorts its
 * events by start (ties: the longer first, the parent before its child),
 * formats them as JSON with pid = rank and sends the text to rank 0, which
 * writes one file atomically with process and thread names as metadata
 * ("M") events. Timestamps are written in microseconds with three decimals
 * (ns exact). */
#include "lmscale/json.h"
#include "lmscale/obs.h"

#include <stdlib.h>
#include <string.h>

#define TRACE_CAP (1u << 20)
#define ARGS_CAP 192

typedef struct {
    int64_t begin, end; /* ns */
    const char *name, *cat;
    char args[ARGS_CAP];
} trace_ev;

struct lms_trace {
    trace_ev *ev;
    size_t n, cap, dropped;
    int step_a, step_b, on, rank;
    double t0; /* lms_now_s at the start */
};

lms_status lms_trace_parse_range(const char *s, int *step_a, int *step_b) {
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end != s && *end == ':') {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
        if (end == q) a = -1;
    }
    if (end == s || *end || a < 1 || b < a || b > 1000000000L)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--profile '%s' is not a step range: give STEP_A:STEP_B with "
                          "1 <= STEP_A <= STEP_B (e.g. --profile 3:5), or one step N", s);
    *step_a = (int)a;
    *step_b = (int)b;
    return LMS_OK;
}

lms_status lms_trace_new(lms_comm *world, int step_a, int step_b, lms_trace **out) {
    *out = NULL;
    lms_trace *t = calloc(1, sizeof *t);
    if (!t) return lms_errorf(LMS_ERR_OOM, "out of memory for the trace");
    t->step_a = step_a;
    t->step_b = step_b;
    t->rank = world ? world->rank : 0;
    if (world && world->size > 1) {
        lms_status st = world->i->barrier(world);
        if (st != LMS_OK) {
            free(t);
            return st;
        }
    }
    t->t0 = lms_now_s();
    *out = t;
    return LMS_OK;
}

void lms_trace_free(lms_trace *t) {
    if (!t) return;
    free(t->ev);
    free(t);
}

void lms_trace_set_step(lms_trace *t, int step) {
    if (t) t->on = step >= t->step_a && step <= t->step_b;
}

int lms_trace_on(const lms_trace *t) { return t && t->on; }

int64_t lms_trace_at(const lms_trace *t, double s) { return (int64_t)((s - t->t0) * 1e9); }
int64_t lms_trace_now(const lms_trace *t) { return lms_trace_at(t, lms_now_s()); }

void lms_trace_event(lms_trace *t, const char *name, const char *cat, int64_t begin_ns, int64_t end_ns,
                     const char *args_json) {
    if (!t) return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        trace_ev *ev = cap <= TRACE_CAP ? realloc(t->ev, cap * sizeof *ev) : NULL;
        if (!ev) {
            t->dropped++;
            return;
        }
        t->ev = ev;
        t->cap = cap;
    }
    trace_ev *e = &t->ev[t->n++];
    e->begin = begin_ns;
    e->end = end_ns < begin_ns ? begin_ns : end_ns;
    e->name = name;
    e->cat = cat;
    e->args[0] = 0;
    if (args_json) snprintf(e->args, sizeof e->args, "%s", args_json);
}

size_t lms_trace_count(const lms_trace *t, size_t *dropped) {
    if (dropped) *dropped = t ? t->dropped : 0;
    return t ? t->n : 0;
}

static int by_start(const void *a, const void *b) {
    const trace_ev *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end > y->end ? -1 : 1; /* the enclosing one first */
    return 0;
}

/* A growing text buffer. */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} tbuf;

static void tb_add(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void tb_add(tbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1 << 16;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void us(tbuf *b, int64_t ns) {
    if (ns < 0) {
        tb_add(b, "-");
        ns = -ns;
    }
    tb_add(b, "%lld.%03lld", (long long)(ns / 1000), (long long)(ns % 1000));
}

/* This rank's events as JSON array elements, each line starting with ",\n"
 * except that the caller strips the first. */
static void format_rank(lms_trace *t, tbuf *b) {
    qsort(t->ev, t->n, sizeof *t->ev, by_start);
    tb_add(b, ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"name\": \"process_name\", \"args\": {\"name\": "
           "\"rank %d\"}}", t->rank, t->rank);
    tb_add(b, ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"name\": \"process_sort_index\", \"args\": "
           "{\"sort_index\": %d}}", t->rank, t->rank);
    tb_add(b, ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": 0, \"name\": \"thread_name\", \"args\": {\"name\": "
           "\"main\"}}", t->rank);
    for (size_t i = 0; i < t->n; i++) {
        const trace_ev *e = &t->ev[i];
        tb_add(b, ",\n{\"ph\": \"X\", \"pid\": %d, \"tid\": 0, \"name\": \"%s\", \"cat\": \"%s\", \"ts\": ",
               t->rank, e->name, e->cat);
        us(b, e->begin);
        tb_add(b, ", \"dur\": ");
        us(b, e->end - e->begin);
        if (e->args[0]) tb_add(b, ", \"args\": {%s}", e->args);
        tb_add(b, "}");
    }
}

lms_status lms_trace_write(lms_trace *t, lms_comm *world, const char *path) {
    t->on = 0;
    int rank = world ? world->rank : 0, size = world ? world->size : 1;
    tbuf b = {0};
    format_rank(t, &b);
    lms_status st = LMS_OK;
    int64_t len = b.oom ? -1 : (int64_t)b.n;
    if (rank != 0) {
        LMS_TRY(world->i->send(world, &len, 1, LMS_DT_I64, 0, 7101));
        if (len > 0) LMS_TRY(world->i->send(world, b.s, (size_t)len, LMS_DT_U8, 0, 7102));
        if (len < 0) st = lms_errorf(LMS_ERR_OOM, "out of memory formatting the trace");
        goto fail;
    }
    for (int r = 1; r < size; r++) { /* every rank's events after rank 0's */
        int64_t n = 0;
        LMS_TRY(world->i->recv(world, &n, 1, LMS_DT_I64, r, 7101));
        if (n <= 0) {
            if (n < 0) b.oom = 1;
            continue;
        }
        char *s = malloc((size_t)n + 1);
        if (!s) {
            st = lms_errorf(LMS_ERR_OOM, "out of memory gathering the trace of rank %d", r);
            goto fail;
        }
        st = world->i->recv(world, s, (size_t)n, LMS_DT_U8, r, 7102);
        s[n] = 0;
        if (st == LMS_OK) tb_add(&b, "%s", s);
        free(s);
        if (st != LMS_OK) goto fail;
    }
    if (b.oom) {
        st = lms_errorf(LMS_ERR_OOM, "out of memory formatting the trace");
        goto fail;
    }
    lms_atomic_file af;
    LMS_TRY(lms_atomic_open(&af, path));
    const char *head = "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"producer\": \"lmscale\"},\n"
                       "\"traceEvents\": [\n";
    st = lms_atomic_write(&af, head, strlen(head));
    if (st == LMS_OK && b.n > 2) st = lms_atomic_write(&af, b.s + 2, b.n - 2); /* without the first ",\n" */
    if (st == LMS_OK) st = lms_atomic_write(&af, "\n]}\n", 4);
    if (st != LMS_OK) {
        lms_atomic_abort(&af);
        goto fail;
    }
    LMS_TRY(lms_atomic_commit(&af));
fail:
    free(b.s);
    return st;
}
