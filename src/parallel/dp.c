/* Data-parallel gradient sums, formed while backward runs (parallel.h,
 * lms_dp_sync), by one of two paths.
 *
 * MPI: each bucket is all-reduced out of place, from the gradients into a
 * persistent receive buffer of the same layout, allocated and touched once
 * at init; the optimizer reads the sums there (lms_dp_sync_reduced), so no
 * copy back is made. In-place MPI_Iallreduce made Open MPI stage every
 * bucket through temporary buffers that it allocates per call: fresh pages,
 * faulted in on every step (22 % of a dp 2 step at 124M; docs/performance.md).
 *
 * Shared memory (all ranks on one node): every rank's gradients are in its
 * block of one node-shared window, the sums in rank 0's; each rank
 * sums its chunks (chunk c, of a bucket's size, is rank c mod p's) over all
 * ranks' gradients as soon as every rank has reported the chunk final. Even
 * on one node, MPI moves every byte through its own buffers (copy in, sum,
 * copy out) where this reads each rank's gradients once and writes the sum
 * once. Ranks order their work through three counters each, in the first
 * cache lines of their gradient block:
 *   progress = seq·(n+1) + (n − ready_lo), monotone across steps: rank r has
 *              reported [lo, n) of step seq once progress ≥ seq·(n+1) + n − lo
 *   done     = seq once the rank has summed all its chunks of step seq
 *   updated  = seq once its AdamW of step seq is done (lms_dp_sync_step).
 * A rank returns from finish when every rank's done is seq, so the sums are
 * whole, and no rank reads a rank's gradients after that: the next step may
 * zero them. No rank can write the sums of step seq+1 before every rank has
 * started step seq+1's backward (the chunks wait on every rank's progress),
 * so no optimizer still reads step seq's.
 * `lmscale bench comm --ops dp_buckets,dp_shm` times both paths next to
 * plain MPI_Allreduce. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "lmscale/parallel.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#define DP_HEAD 4096               /* bytes before a rank's gradients in its block: its counters */
#define DP_SUB 4096                /* floats summed at once over all ranks (16 KiB, in L1/L2) */

typedef struct {
    _Atomic uint64_t progress;
    char pad0[64 - sizeof(uint64_t)];
    _Atomic uint64_t done;
    char pad1[64 - sizeof(uint64_t)];
    _Atomic uint64_t updated; /* seq once the rank's AdamW of step seq is done */
    char pad2[64 - sizeof(uint64_t)];
} dp_counters;

struct lms_dp_shm {
    lms_comm_shm *g;     /* every rank's counters + gradients; in rank 0's block also the sums, parameters, moments */
    float *params, *m, *v; /* n each, after the sums */
    double *chunk_ss;    /* each chunk's sum of squares of the sums (after the moments) */
    double *sub_ss;      /* this rank's scratch: a chunk's DP_SUB pieces' */
    size_t *lo, *hi;     /* this rank's chunks, ascending (its k-th is chunk rank + k·p) */
    int nown;
    int adopted;         /* the model and the optimizer use params, m, v */
    int p, rank;
    float **peer;        /* peer[q]: rank q's gradients */
    dp_counters **ctr;   /* ctr[q]: rank q's counters */
    uint64_t seq;        /* this step's number, from 1 */
    int next;            /* this rank's next chunk to sum (an index into lo/hi, descending), < 0: none left */
};

static size_t nchunks(const lms_dp_sync *s) { return (s->n + s->bucket_floats - 1) / s->bucket_floats; }

static uint64_t enc(const lms_dp_sync *s, uint64_t seq, size_t lo) { return seq * ((uint64_t)s->n + 1) + (s->n - lo); }

static void shm_free(lms_dp_sync *s) {
    lms_dp_shm *h = s->shm;
    if (!h) return;
    lms_comm_shm_free(s->comm, h->g);
    free(h->peer);
    free(h->ctr);
    free(h->lo);
    free(h->hi);
    free(h->sub_ss);
    free(h);
    s->shm = NULL;
}

/* The shared-memory path, when the ranks share a node; LMS_OK with s->shm
 * NULL when they do not. */
static lms_status shm_init(lms_dp_sync *s) {
    lms_comm *c = s->comm;
    const size_t bytes = s->n * sizeof(float);
    /* one window: every rank's block holds its counters and gradients; rank
     * 0's also the sums, the parameters and the moments. Blocks are whole
     * pages, so every block and its counters are aligned. */
    const size_t page = 4096, own = (DP_HEAD + bytes + page - 1) / page * page;
    lms_comm_shm *g = NULL;
    LMS_CHECK(lms_comm_shm_alloc(c, own + (c->rank == 0 ? 4 * bytes + nchunks(s) * sizeof(double) : 0), &g));
    if (!g) return LMS_OK; /* the same answer on every rank */
    lms_dp_shm *h = calloc(1, sizeof *h);
    if (h) {
        h->g = g;
        h->p = c->size;
        h->rank = c->rank;
        h->peer = calloc((size_t)c->size, sizeof *h->peer);
        h->ctr = calloc((size_t)c->size, sizeof *h->ctr);
        h->lo = calloc(nchunks(s) / (size_t)c->size + 1, sizeof *h->lo);
        h->hi = calloc(nchunks(s) / (size_t)c->size + 1, sizeof *h->hi);
        h->sub_ss = calloc(s->bucket_floats / DP_SUB + 1, sizeof *h->sub_ss);
    }
    if (!h || !h->peer || !h->ctr || !h->lo || !h->hi || !h->sub_ss) {
        if (h) free(h->peer), free(h->ctr), free(h->lo), free(h->hi), free(h->sub_ss), free(h);
        lms_comm_shm_free(c, g);
        return lms_errorf(LMS_ERR_OOM, "out of memory for the shared-memory gradient sum");
    }
    for (int q = 0; q < c->size; q++) {
        h->ctr[q] = g->seg[q];
        h->peer[q] = (float *)((char *)g->seg[q] + DP_HEAD);
    }
    s->shm = h;
    s->grads = h->peer[h->rank];
    s->recv = (float *)((char *)g->seg[0] + own);
    h->params = s->recv + s->n;
    h->m = h->params + s->n;
    h->v = h->m + s->n;
    h->chunk_ss = (double *)(h->v + s->n); /* 16n bytes after a whole page: aligned */
    /* each rank faults in its own block, and its chunks of the rest, once */
    memset(s->grads, 0, bytes);
    for (size_t k = (size_t)h->rank; k < nchunks(s); k += (size_t)h->p) {
        size_t lo = k * s->bucket_floats, hi = lo + s->bucket_floats < s->n ? lo + s->bucket_floats : s->n;
        h->lo[h->nown] = lo;
        h->hi[h->nown++] = hi;
        for (int b = 0; b < 4; b++) memset(s->recv + (size_t)b * s->n + lo, 0, (hi - lo) * sizeof(float));
    }
    atomic_store_explicit(&h->ctr[h->rank]->progress, 0, memory_order_relaxed);
    atomic_store_explicit(&h->ctr[h->rank]->done, 0, memory_order_relaxed);
    atomic_store_explicit(&h->ctr[h->rank]->updated, 0, memory_order_relaxed);
    lms_status st = c->i->barrier(c); /* (a barrier orders memory: MPI synchronises) */
    if (st != LMS_OK) shm_free(s);
    return st;
}

lms_status lms_dp_sync_init(lms_dp_sync *s, lms_comm *dp, float *grads, size_t n, size_t bucket_bytes, int shm) {
    memset(s, 0, sizeof *s);
    s->comm = dp;
    s->grads = grads;
    s->n = n;
    s->bucket_floats = bucket_bytes / sizeof(float);
    if (s->bucket_floats == 0) s->bucket_floats = 1;
    if (dp->size > 1 && shm) {
        lms_status st = shm_init(s);
        if (st != LMS_OK) return lms_error_context(st, "while setting up the shared-memory gradient sum");
        if (s->shm) return LMS_OK;
    }
    s->cap = 64;
    s->reqs = calloc((size_t)s->cap, sizeof *s->reqs);
    s->recv = dp->size > 1 ? lms_alloc(n * sizeof(float)) : NULL;
    if (!s->reqs || (dp->size > 1 && !s->recv)) {
        lms_dp_sync_free(s);
        return lms_errorf(LMS_ERR_OOM, "out of memory for gradient buckets (%.1f MB receive buffer)",
                          n * 4.0 / 1048576.0);
    }
    if (s->recv) memset(s->recv, 0, n * sizeof(float)); /* its pages faulted in once, here */
    return LMS_OK;
}

void lms_dp_sync_free(lms_dp_sync *s) {
    if (!s) return;
    if (s->shm) {
        shm_free(s);
    } else {
        free(s->reqs);
        lms_free(s->recv);
    }
    memset(s, 0, sizeof *s);
}

const char *lms_dp_sync_path(const lms_dp_sync *s) { return s->shm ? "shared memory" : "MPI"; }

/* ---- the shared-memory path ---- */

static void publish(lms_dp_sync *s) {
    lms_dp_shm *h = s->shm;
    atomic_store_explicit(&h->ctr[h->rank]->progress, enc(s, h->seq, s->ready_lo), memory_order_release);
}

/* Has every rank reported [lo, n) of this step? */
static int all_reported(const lms_dp_sync *s, size_t lo) {
    const lms_dp_shm *h = s->shm;
    uint64_t want = enc(s, h->seq, lo);
    for (int q = 0; q < h->p; q++)
        if (atomic_load_explicit(&h->ctr[q]->progress, memory_order_acquire) < want) return 0;
    return 1;
}

/* sums[lo, hi) = the ranks' gradients added in rank order, and chunk k's
 * sum of squares of them (in double, DP_SUB pieces added in order, so it
 * does not depend on the thread count) */
static void sum_chunk(const lms_dp_sync *s, long k, size_t lo, size_t hi) {
    const lms_dp_shm *h = s->shm;
    float *out = s->recv;
    float *const *g = h->peer;
    double *sub = h->sub_ss;
    const int p = h->p;
    const long npieces = (long)((hi - lo + DP_SUB - 1) / DP_SUB);
#pragma omp parallel for schedule(static)
    for (long j = 0; j < npieces; j++) {
        const size_t a = lo + (size_t)j * DP_SUB, b = a + DP_SUB < hi ? a + DP_SUB : hi;
        const float *g0 = g[0], *g1 = g[1];
#pragma omp simd
        for (size_t i = a; i < b; i++) out[i] = g0[i] + g1[i];
        for (int q = 2; q < p; q++) {
            const float *gq = g[q];
#pragma omp simd
            for (size_t i = a; i < b; i++) out[i] += gq[i];
        }
        double ss = 0; /* the piece is in L1 */
#pragma omp simd reduction(+ : ss)
        for (size_t i = a; i < b; i++) ss += (double)out[i] * out[i];
        sub[j] = ss;
    }
    double ss = 0;
    for (long j = 0; j < npieces; j++) ss += sub[j];
    h->chunk_ss[k] = ss;
}

/* the k-th wait for another rank: yield, then sleep (the other rank, still
 * computing, may need this core: more ranks than cores is allowed) */
static void backoff(unsigned k) {
    if (k < 64) {
        sched_yield();
    } else {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
    }
}

/* Sums this rank's chunks that every rank has reported, from the top;
 * wait: also those not reported yet, waiting for them. */
static void sum_reported(lms_dp_sync *s, int wait) {
    lms_dp_shm *h = s->shm;
    for (; h->next >= 0; h->next--) {
        const size_t lo = h->lo[h->next], hi = h->hi[h->next];
        for (unsigned k = 0; !all_reported(s, lo); k++) {
            if (!wait) return;
            backoff(k);
        }
        sum_chunk(s, h->rank + (long)h->next * h->p, lo, hi);
        if (!wait) s->buckets_before_finish++;
    }
}

/* until every rank's counter (done or updated) is this step's */
static void wait_all(const lms_dp_sync *s, size_t which) {
    const lms_dp_shm *h = s->shm;
    for (int q = 0; q < h->p; q++) {
        _Atomic uint64_t *c = (_Atomic uint64_t *)((char *)h->ctr[q] + which);
        for (unsigned k = 0; atomic_load_explicit(c, memory_order_acquire) < h->seq; k++) backoff(k);
    }
}

/* ---- both paths ---- */

void lms_dp_sync_begin(lms_dp_sync *s) {
    s->ready_lo = s->launched_lo = s->n;
    s->nreq = 0;
    s->err = LMS_OK;
    s->buckets_before_finish = 0;
    lms_dp_shm *h = s->shm;
    if (!h) return;
    h->seq++;
    h->next = h->nown - 1; /* from the top: backward reports high offsets first */
    publish(s);
}

static void launch(lms_dp_sync *s, size_t lo) {
    if (s->err != LMS_OK || lo >= s->launched_lo) return;
    if (s->nreq == s->cap) {
        lms_comm_req **r = realloc(s->reqs, sizeof *r * (size_t)s->cap * 2);
        if (!r) {
            s->err = lms_errorf(LMS_ERR_OOM, "out of memory for gradient buckets");
            return;
        }
        s->reqs = r;
        s->cap *= 2;
    }
    size_t n = s->launched_lo - lo;
    float *send = s->grads + lo, *recv = s->recv ? s->recv + lo : send;
    s->err = s->comm->i->iallreduce(s->comm, send, recv, n, LMS_DT_F32, LMS_RED_SUM, &s->reqs[s->nreq]);
    if (s->err == LMS_OK) s->nreq++;
    s->launched_lo = lo;
}

lms_status lms_dp_sync_ready(void *ctx, size_t offset, size_t count) {
    lms_dp_sync *s = ctx;
    LMS_ASSERT(offset + count == s->ready_lo); /* descending, contiguous */
    s->ready_lo = offset;
    if (s->shm) {
        publish(s);
        sum_reported(s, 0);
        return LMS_OK;
    }
    if (s->launched_lo - s->ready_lo >= s->bucket_floats) {
        launch(s, s->ready_lo);
        s->buckets_before_finish++;
    }
    if (s->err != LMS_OK)
        return lms_error_context(s->err, "while all-reducing gradients over %d data-parallel ranks", s->comm->size);
    return LMS_OK;
}

const float *lms_dp_sync_reduced(const lms_dp_sync *s) { return s->recv ? s->recv : s->grads; }

int lms_dp_sync_sumsq(const lms_dp_sync *s, double *out) {
    if (!s->shm) return 0;
    double ss = 0; /* every rank adds the chunks' in chunk order: the same on all */
    for (size_t k = 0; k < nchunks(s); k++) ss += s->shm->chunk_ss[k];
    *out = ss;
    return 1;
}

lms_status lms_dp_sync_finish(lms_dp_sync *s) {
    LMS_ASSERT(s->ready_lo == 0); /* backward reported every gradient */
    if (s->shm) { /* tracked by the watchdog: it waits on every other rank */
        lms_dp_shm *h = s->shm;
        lms_comm_track_begin(s->comm, "allreduce", s->n * sizeof(float)); /* as the watchdog and traces name it */
        sum_reported(s, 1);
        atomic_store_explicit(&h->ctr[h->rank]->done, h->seq, memory_order_release);
        wait_all(s, offsetof(dp_counters, done));
        lms_comm_track_end(s->comm);
        return LMS_OK;
    }
    launch(s, 0);
    lms_status st = s->err;
    for (int i = 0; i < s->nreq; i++) {
        lms_status w = lms_comm_wait(s->comm, s->reqs[i]);
        if (st == LMS_OK) st = w;
    }
    s->nreq = 0;
    if (st != LMS_OK) return lms_error_context(st, "while all-reducing gradients over %d data-parallel ranks",
                                               s->comm->size);
    return LMS_OK;
}

lms_status lms_dp_sync_step(lms_dp_sync *s, lms_gpt *m, lms_adamw *opt, lms_backend *be, float lr, float grad_scale) {
    lms_dp_shm *h = s->shm;
    if (!h) return lms_adamw_step(opt, be, m->params, lms_dp_sync_reduced(s), m->tensors, m->num_tensors, lr, grad_scale);
    if (!h->adopted) { /* every rank holds the same values: each brings its chunks */
        LMS_ASSERT(opt->n == s->n && (size_t)m->num_params == s->n);
        for (int k = 0; k < h->nown; k++) {
            const size_t lo = h->lo[k], b = (h->hi[k] - lo) * sizeof(float);
            memcpy(h->params + lo, m->params + lo, b);
            memcpy(h->m + lo, opt->m + lo, b);
            memcpy(h->v + lo, opt->v + lo, b);
        }
        LMS_CHECK(lms_gpt_use_params(m, h->params)); /* the other chunks are read only after the wait below */
        lms_adamw_use_state(opt, h->m, h->v);
        h->adopted = 1;
    }
    LMS_CHECK(lms_adamw_step_ranges(opt, be, m->params, s->recv, m->tensors, m->num_tensors, lr, grad_scale, h->lo,
                                    h->hi, h->nown));
    atomic_store_explicit(&h->ctr[h->rank]->updated, h->seq, memory_order_release);
    lms_comm_track_begin(s->comm, "barrier", 0); /* the next forward reads every rank's chunks */
    wait_all(s, offsetof(dp_counters, updated));
    lms_comm_track_end(s->comm);
    return LMS_OK;
}
