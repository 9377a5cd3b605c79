/* Bucketed, overlapped gradient all-reduce for data parallelism.
 *
 * Each bucket is reduced out of place, from the gradients into a persistent
 * receive buffer of the same layout, allocated and touched once at init;
 * the optimizer reads the reduced gradients there (lms_dp_sync_reduced), so
 * no copy back (a 4-bytes-per-parameter memcpy per step) is made.
 * In-place MPI_Iallreduce made Open MPI stage every bucket through temporary buffers that it allocates
 * per call: fresh pages, faulted in on every step (22 % of a dp 2 step at
 * 124M; docs/performance.md). `lmscale bench comm --ops dp_buckets` times
 * this path next to plain MPI_Allreduce. */
#include "lmscale/parallel.h"

#include <stdlib.h>
#include <string.h>

lms_status lms_dp_sync_init(lms_dp_sync *s, lms_comm *dp, float *grads, size_t n, size_t bucket_bytes) {
    memset(s, 0, sizeof *s);
    s->comm = dp;
    s->grads = grads;
    s->n = n;
    s->bucket_floats = bucket_bytes / sizeof(float);
    if (s->bucket_floats == 0) s->bucket_floats = 1;
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
    free(s->reqs);
    lms_free(s->recv);
    memset(s, 0, sizeof *s);
}

void lms_dp_sync_begin(lms_dp_sync *s) {
    s->ready_lo = s->launched_lo = s->n;
    s->nreq = 0;
    s->err = LMS_OK;
    s->buckets_before_finish = 0;
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
    if (s->launched_lo - s->ready_lo >= s->bucket_floats) {
        launch(s, s->ready_lo);
        s->buckets_before_finish++;
    }
    if (s->err != LMS_OK)
        return lms_error_context(s->err, "while all-reducing gradients over %d data-parallel ranks", s->comm->size);
    return LMS_OK;
}

const float *lms_dp_sync_reduced(const lms_dp_sync *s) { return s->recv ? s->recv : s->grads; }

lms_status lms_dp_sync_finish(lms_dp_sync *s) {
    LMS_ASSERT(s->ready_lo == 0); /* backward reported every gradient */
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
