/* Trace wrappers around the two vtables, installed only when profiling:
 * each wrapped call reads the clock, calls the wrapped function with the
 * same arguments, reads the clock again and records a span (while the trace
 * records). Results are those of the wrapped table, bit for bit.
 *
 * Backend: the wrapper is a copy of the wrapped table with the ops replaced
 * (an op added to lms_backend_i later passes through untraced); be->state
 * is left as it is, and the wrapper finds itself from be->i.
 * Communicator: a separate lms_comm whose impl is the wrapper; it owns the
 * wrapped one. */
#include "lmscale/obs.h"

#include <stdlib.h>
#include <string.h>

/* ---- backend ---- */

typedef struct {
    lms_backend_i table; /* first: be->i points here */
    const lms_backend_i *inner;
    lms_trace *t;
} bwrap;

#define BW(be) ((const bwrap *)(be)->i)
/* returns CALL (a status expression on the wrapped table, as `in`),
 * recording NAME with ARGS... */
#define TRACED(be, NAME, CALL, ...)                                                        \
    do {                                                                                   \
        const bwrap *w_ = BW(be);                                                          \
        lms_backend in = {w_->inner, (be)->state};                                         \
        if (!lms_trace_on(w_->t)) return CALL;                                             \
        int64_t t0_ = lms_trace_now(w_->t);                                                \
        lms_status st_ = CALL;                                                             \
        int64_t t1_ = lms_trace_now(w_->t);                                                \
        char a_[160];                                                                      \
        snprintf(a_, sizeof a_, __VA_ARGS__);                                              \
        lms_trace_event(w_->t, NAME, "op", t0_, t1_, a_);                                  \
        return st_;                                                                        \
    } while (0)

static lms_status w_encoder_fwd(lms_backend *be, float *out, const int32_t *tok, const float *wte,
                                const float *wpe, int B, int T, int C) {
    TRACED(be, "encoder_fwd", in.i->encoder_fwd(&in, out, tok, wte, wpe, B, T, C),
           "\"B\": %d, \"T\": %d, \"C\": %d", B, T, C);
}
static lms_status w_encoder_bwd(lms_backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                                int B, int T, int C) {
    TRACED(be, "encoder_bwd", in.i->encoder_bwd(&in, dwte, dwpe, dout, tok, B, T, C),
           "\"B\": %d, \"T\": %d, \"C\": %d", B, T, C);
}
static lms_status w_layernorm_fwd(lms_backend *be, float *out, float *mean, float *rstd, const float *inp,
                                  const float *wt, const float *b, int N, int C) {
    TRACED(be, "layernorm_fwd", in.i->layernorm_fwd(&in, out, mean, rstd, inp, wt, b, N, C),
           "\"N\": %d, \"C\": %d", N, C);
}
static lms_status w_layernorm_bwd(lms_backend *be, float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *wt, const float *mean, const float *rstd, int N,
                                  int C) {
    TRACED(be, "layernorm_bwd", in.i->layernorm_bwd(&in, dinp, dw, db, dout, inp, wt, mean, rstd, N, C),
           "\"N\": %d, \"C\": %d", N, C);
}
static lms_status w_matmul_fwd(lms_backend *be, float *out, const float *inp, const float *wt, const float *bias,
                               int N, int IC, int OC) {
    TRACED(be, "matmul_fwd", in.i->matmul_fwd(&in, out, inp, wt, bias, N, IC, OC),
           "\"N\": %d, \"IC\": %d, \"OC\": %d, \"gflop\": %.4g", N, IC, OC, 2e-9 * N * IC * OC);
}
static lms_status w_matmul_bwd(lms_backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *wt, int N, int IC, int OC) {
    TRACED(be, "matmul_bwd", in.i->matmul_bwd(&in, dinp, dw, dbias, dout, inp, wt, N, IC, OC),
           "\"N\": %d, \"IC\": %d, \"OC\": %d, \"gflop\": %.4g", N, IC, OC, (dinp ? 4e-9 : 2e-9) * N * IC * OC);
}
static lms_status w_attention_fwd(lms_backend *be, float *out, float *lse, const float *qkv, int B, int T, int C,
                                  int NH) {
    TRACED(be, "attention_fwd", in.i->attention_fwd(&in, out, lse, qkv, B, T, C, NH),
           "\"B\": %d, \"T\": %d, \"C\": %d, \"NH\": %d", B, T, C, NH);
}
static lms_status w_attention_bwd(lms_backend *be, float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int B, int T, int C, int NH) {
    TRACED(be, "attention_bwd", in.i->attention_bwd(&in, dqkv, dout, qkv, out, lse, B, T, C, NH),
           "\"B\": %d, \"T\": %d, \"C\": %d, \"NH\": %d", B, T, C, NH);
}
static lms_status w_gelu_fwd(lms_backend *be, float *out, const float *inp, size_t n) {
    TRACED(be, "gelu_fwd", in.i->gelu_fwd(&in, out, inp, n), "\"n\": %zu", n);
}
static lms_status w_gelu_bwd(lms_backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    TRACED(be, "gelu_bwd", in.i->gelu_bwd(&in, dinp, inp, dout, n), "\"n\": %zu", n);
}
static lms_status w_add(lms_backend *be, float *out, const float *a, const float *b, size_t n) {
    TRACED(be, "add", in.i->add(&in, out, a, b, n), "\"n\": %zu", n);
}
static lms_status w_accumulate(lms_backend *be, float *dst, const float *src, size_t n) {
    TRACED(be, "accumulate", in.i->accumulate(&in, dst, src, n), "\"n\": %zu", n);
}
static lms_status w_scale(lms_backend *be, float *x, float sc, size_t n) {
    TRACED(be, "scale", in.i->scale(&in, x, sc, n), "\"n\": %zu", n);
}
static lms_status w_xent_fwd(lms_backend *be, float *losses, float *lse, const float *logits,
                             const int32_t *targets, int N, int V, int Vp) {
    TRACED(be, "xent_fwd", in.i->xent_fwd(&in, losses, lse, logits, targets, N, V, Vp),
           "\"N\": %d, \"V\": %d, \"Vp\": %d", N, V, Vp);
}
static lms_status w_xent_bwd(lms_backend *be, float *dlogits, const float *logits, const float *lse,
                             const int32_t *targets, float dloss, int N, int V, int Vp) {
    TRACED(be, "xent_bwd", in.i->xent_bwd(&in, dlogits, logits, lse, targets, dloss, N, V, Vp),
           "\"N\": %d, \"V\": %d, \"Vp\": %d", N, V, Vp);
}
static lms_status w_xent_fused(lms_backend *be, float *losses, float *lse, float *logits, const int32_t *targets,
                               float dloss, int N, int V, int Vp) {
    TRACED(be, "xent_fused", in.i->xent_fused(&in, losses, lse, logits, targets, dloss, N, V, Vp),
           "\"N\": %d, \"V\": %d, \"Vp\": %d", N, V, Vp);
}
static lms_status w_sum(lms_backend *be, const float *x, size_t n, double *out) {
    TRACED(be, "sum", in.i->sum(&in, x, n, out), "\"n\": %zu", n);
}
static lms_status w_sumsq(lms_backend *be, const float *x, size_t n, double *out) {
    TRACED(be, "sumsq", in.i->sumsq(&in, x, n, out), "\"n\": %zu", n);
}
static lms_status w_adamw(lms_backend *be, float *p, const float *g, float *m, float *v, size_t n,
                          const lms_adamw_args *a) {
    TRACED(be, "adamw", in.i->adamw(&in, p, g, m, v, n, a), "\"n\": %zu", n);
}
static lms_status w_copy(lms_backend *be, void *dst, const void *src, size_t bytes, lms_copy_kind kind) {
    TRACED(be, "copy", in.i->copy(&in, dst, src, bytes, kind), "\"bytes\": %zu, \"kind\": %d", bytes, (int)kind);
}
static lms_status w_synchronize(lms_backend *be) { TRACED(be, "synchronize", in.i->synchronize(&in), "\"sync\": 1"); }

lms_status lms_trace_wrap_backend(lms_backend *be, lms_trace *t) {
    bwrap *w = calloc(1, sizeof *w);
    if (!w) return lms_errorf(LMS_ERR_OOM, "out of memory for the trace's backend wrapper");
    w->table = *be->i; /* name and any op not listed below pass through */
    w->inner = be->i;
    w->t = t;
#define SET(op)                                            \
    if (w->table.op) w->table.op = w_##op;
    SET(encoder_fwd) SET(encoder_bwd) SET(layernorm_fwd) SET(layernorm_bwd) SET(matmul_fwd) SET(matmul_bwd)
    SET(attention_fwd) SET(attention_bwd) SET(gelu_fwd) SET(gelu_bwd) SET(add) SET(accumulate) SET(scale)
    SET(xent_fwd) SET(xent_bwd) SET(xent_fused) SET(sum) SET(sumsq) SET(adamw) SET(copy) SET(synchronize)
#undef SET
    be->i = &w->table;
    return LMS_OK;
}

static int is_wrapped(const lms_backend *be) { return be && be->i && be->i->matmul_fwd == w_matmul_fwd; }

void lms_trace_unwrap_backend(lms_backend *be) {
    if (!is_wrapped(be)) return;
    bwrap *w = (bwrap *)be->i;
    be->i = w->inner;
    free(w);
}

/* ---- communicator ---- */

/* Every op of lms_comm_i must be wrapped below (a pass-through would call
 * the wrapped backend with the wrapper's impl): this fails to compile when
 * one is added. */
_Static_assert(sizeof(lms_comm_i) == 23 * sizeof(void *), "lms_comm_i changed: wrap the new op in src/obs/trace_wrap.c");

#define PENDING 64 /* non-blocking operations remembered for their waits */
typedef struct {
    lms_comm_i table;
    lms_comm *inner; /* owned */
    lms_trace *t;
    struct {
        lms_comm_req *req;
        const char *name;
        size_t bytes;
    } pend[PENDING];
    int npend;
    int64_t track_t0; /* a tracked wait of the caller's own (track_begin): when, what, how big */
    const char *track_op;
    size_t track_bytes;
} cwrap;

static void remember(cwrap *w, lms_comm_req **req, const char *name, size_t bytes) {
    if (!req || !*req) return;
    int k = w->npend < PENDING ? w->npend++ : 0; /* past the cap the oldest slot is reused */
    w->pend[k].req = *req;
    w->pend[k].name = name;
    w->pend[k].bytes = bytes;
}

#define CW(c) ((cwrap *)(c)->impl)

static lms_comm *inner_of(lms_comm *c) {
    cwrap *w = CW(c);
    if (c->label) w->inner->label = c->label; /* a label set on the wrapper reaches the watchdog */
    return w->inner;
}

/* the wrapped communicator's byte counts, seen through the wrapper */
static lms_status counted(lms_comm *c, const lms_comm *in, lms_status st) {
    c->coll_bytes = in->coll_bytes;
    c->sent_bytes = in->sent_bytes;
    return st;
}

/* run CALL (a status expression on `in`), recording NAME with bytes and the group */
#define CTRACED(c, NAME, BYTES, CALL)                                                                \
    do {                                                                                             \
        cwrap *w_ = CW(c);                                                                           \
        lms_comm *in = inner_of(c);                                                                  \
        if (!lms_trace_on(w_->t)) return counted(c, in, CALL);                                       \
        int64_t t0_ = lms_trace_now(w_->t);                                                          \
        lms_status st_ = counted(c, in, CALL);                                                       \
        int64_t t1_ = lms_trace_now(w_->t);                                                          \
        char a_[160];                                                                                \
        snprintf(a_, sizeof a_, "\"bytes\": %zu, \"group\": \"%s\", \"group_size\": %d, \"rank\": %d", \
                 (size_t)(BYTES), in->label ? in->label : "comm", in->size, in->rank);               \
        lms_trace_event(w_->t, NAME, "comm", t0_, t1_, a_);                                          \
        return st_;                                                                                  \
    } while (0)

static lms_status w_allreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op) {
    CTRACED(c, "allreduce", n * lms_dtype_size(t), in->i->allreduce(in, s, r, n, t, op));
}
static lms_status w_reduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op) {
    CTRACED(c, "reduce_scatter", n * lms_dtype_size(t) * (size_t)c->size, in->i->reduce_scatter(in, s, r, n, t, op));
}
static lms_status w_allgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t) {
    CTRACED(c, "allgather", n * lms_dtype_size(t) * (size_t)c->size, in->i->allgather(in, s, r, n, t));
}
static lms_status w_broadcast(lms_comm *c, void *buf, size_t n, lms_dtype t, int root) {
    CTRACED(c, "broadcast", n * lms_dtype_size(t), in->i->broadcast(in, buf, n, t, root));
}
static lms_status w_send(lms_comm *c, const void *buf, size_t n, lms_dtype t, int peer, int tag) {
    CTRACED(c, "send", n * lms_dtype_size(t), in->i->send(in, buf, n, t, peer, tag));
}
static lms_status w_recv(lms_comm *c, void *buf, size_t n, lms_dtype t, int peer, int tag) {
    CTRACED(c, "recv", n * lms_dtype_size(t), in->i->recv(in, buf, n, t, peer, tag));
}
static lms_status w_barrier(lms_comm *c) { CTRACED(c, "barrier", 0, in->i->barrier(in)); }
static lms_status issued(cwrap *w, lms_status st, lms_comm_req **req, const char *name, size_t bytes) {
    if (st == LMS_OK && lms_trace_on(w->t)) remember(w, req, name, bytes);
    return st;
}
static lms_status issue_iallreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op,
                                   lms_comm_req **req) {
    CTRACED(c, "iallreduce (issue)", n * lms_dtype_size(t), in->i->iallreduce(in, s, r, n, t, op, req));
}
static lms_status w_iallreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op,
                               lms_comm_req **req) {
    return issued(CW(c), issue_iallreduce(c, s, r, n, t, op, req), req, "wait (iallreduce)", n * lms_dtype_size(t));
}
static lms_status issue_ireduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                        lms_reduce_op op, lms_comm_req **req) {
    CTRACED(c, "ireduce_scatter (issue)", n * lms_dtype_size(t) * (size_t)c->size,
            in->i->ireduce_scatter(in, s, r, n, t, op, req));
}
static lms_status w_ireduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op,
                                    lms_comm_req **req) {
    return issued(CW(c), issue_ireduce_scatter(c, s, r, n, t, op, req), req, "wait (ireduce_scatter)",
                  n * lms_dtype_size(t) * (size_t)c->size);
}
static lms_status issue_iallgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_comm_req **req) {
    CTRACED(c, "iallgather (issue)", n * lms_dtype_size(t) * (size_t)c->size, in->i->iallgather(in, s, r, n, t, req));
}
static lms_status w_iallgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_comm_req **req) {
    return issued(CW(c), issue_iallgather(c, s, r, n, t, req), req, "wait (iallgather)",
                  n * lms_dtype_size(t) * (size_t)c->size);
}
static lms_status issue_isend(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    CTRACED(c, "isend (issue)", n * lms_dtype_size(t), in->i->isend(in, b, n, t, peer, tag, req));
}
static lms_status w_isend(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    return issued(CW(c), issue_isend(c, b, n, t, peer, tag, req), req, "wait (isend)", n * lms_dtype_size(t));
}
static lms_status issue_irecv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    CTRACED(c, "irecv (issue)", n * lms_dtype_size(t), in->i->irecv(in, b, n, t, peer, tag, req));
}
static lms_status w_irecv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    return issued(CW(c), issue_irecv(c, b, n, t, peer, tag, req), req, "wait (irecv)", n * lms_dtype_size(t));
}
static lms_status w_wait(lms_comm *c, lms_comm_req *req) {
    cwrap *w = CW(c);
    const char *name = "wait";
    size_t bytes = 0;
    for (int k = 0; k < w->npend; k++) /* what it completes, when it was issued while recording */
        if (w->pend[k].req == req) {
            name = w->pend[k].name;
            bytes = w->pend[k].bytes;
            w->pend[k] = w->pend[--w->npend];
            break;
        }
    CTRACED(c, name, bytes, in->i->wait(in, req));
}

static lms_status wrap_comm(lms_comm *inner, lms_trace *t, lms_comm **out);

/* shared memory: the inner communicator's; the waits in it traced as ops */
static lms_status w_shm_alloc(lms_comm *c, size_t bytes, lms_comm_shm **out) {
    lms_comm *in = inner_of(c);
    return counted(c, in, in->i->shm_alloc(in, bytes, out));
}
static void w_shm_free(lms_comm *c, lms_comm_shm *shm) {
    lms_comm *in = inner_of(c);
    in->i->shm_free(in, shm);
}
static void w_track_begin(lms_comm *c, const char *op, size_t bytes) {
    cwrap *w = CW(c);
    lms_comm *in = inner_of(c);
    w->track_t0 = lms_trace_on(w->t) ? lms_trace_now(w->t) : -1;
    w->track_op = op;
    w->track_bytes = bytes;
    if (in->i->track_begin) in->i->track_begin(in, op, bytes);
    counted(c, in, LMS_OK);
}
static void w_track_end(lms_comm *c) {
    cwrap *w = CW(c);
    lms_comm *in = inner_of(c);
    if (in->i->track_end) in->i->track_end(in);
    if (w->track_t0 < 0 || !lms_trace_on(w->t)) return;
    char a[160];
    snprintf(a, sizeof a, "\"bytes\": %zu, \"group\": \"%s\", \"group_size\": %d, \"rank\": %d", w->track_bytes,
             in->label ? in->label : "comm", in->size, in->rank);
    lms_trace_event(w->t, w->track_op, "comm", w->track_t0, lms_trace_now(w->t), a);
}

static lms_status w_split(lms_comm *c, int color, int key, lms_comm **out) {
    lms_comm *in = inner_of(c), *sub = NULL;
    LMS_CHECK(in->i->split(in, color, key, &sub));
    lms_status st = wrap_comm(sub, CW(c)->t, out);
    if (st != LMS_OK) sub->i->free(sub);
    return st;
}
static void w_free(lms_comm *c) {
    cwrap *w = CW(c);
    w->inner->i->free(w->inner);
    free(w);
    free(c);
}
static void w_abort(lms_comm *c, int code) {
    lms_comm *in = inner_of(c);
    in->i->abort(in, code);
}
static lms_status w_set_timeout(lms_comm *c, double seconds) {
    lms_comm *in = inner_of(c);
    return in->i->set_timeout(in, seconds);
}
static void w_mark_step(lms_comm *c, int step) {
    lms_comm *in = inner_of(c);
    in->i->mark_step(in, step);
}

static lms_status wrap_comm(lms_comm *inner, lms_trace *t, lms_comm **out) {
    cwrap *w = calloc(1, sizeof *w);
    lms_comm *c = calloc(1, sizeof *c);
    if (!w || !c) {
        free(w);
        free(c);
        return lms_errorf(LMS_ERR_OOM, "out of memory for the trace's communicator wrapper");
    }
    const lms_comm_i *ii = inner->i;
    lms_comm_i tb = {ii->name,     w_allreduce,   w_reduce_scatter,
                     w_allgather,  w_broadcast,   w_send,
                     w_recv,       w_barrier,     w_iallreduce,
                     w_ireduce_scatter, w_iallgather, w_wait,
                     w_split,      w_free,        w_abort,
                     ii->set_timeout ? w_set_timeout : NULL, ii->mark_step ? w_mark_step : NULL,
                     ii->isend ? w_isend : NULL, ii->irecv ? w_irecv : NULL,
                     ii->shm_alloc ? w_shm_alloc : NULL, ii->shm_alloc ? w_shm_free : NULL,
                     w_track_begin, w_track_end};
    w->table = tb;
    w->inner = inner;
    w->t = t;
    c->i = &w->table;
    c->rank = inner->rank;
    c->size = inner->size;
    c->impl = w;
    c->label = inner->label;
    *out = c;
    return LMS_OK;
}

lms_status lms_trace_wrap_comm(lms_comm **c, lms_trace *t) {
    lms_comm *w = NULL;
    LMS_CHECK(wrap_comm(*c, t, &w));
    *c = w;
    return LMS_OK;
}
