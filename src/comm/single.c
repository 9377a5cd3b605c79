/* The one-process communicator: every collective over one rank is a copy. */
#include "comm_impl.h"

#include <stdlib.h>
#include <string.h>

struct lms_comm_req {
    int unused;
};

static void copy(void *dst, const void *src, size_t count, lms_dtype t) {
    if (dst != src) memmove(dst, src, count * lms_dtype_size(t));
}

static lms_status s_allreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op) {
    copy(r, s, n, t);
    return LMS_OK;
}
static lms_status s_reduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                   lms_reduce_op op) {
    copy(r, s, n, t);
    return LMS_OK;
}
static lms_status s_allgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t) {
    copy(r, s, n, t);
    return LMS_OK;
}
static lms_status s_broadcast(lms_comm *c, void *b, size_t n, lms_dtype t, int root) {
    if (root != 0) return lms_errorf(LMS_ERR_INVALID_ARG, "broadcast from rank %d in a 1-process job", root);
    return LMS_OK;
}
static lms_status s_p2p(lms_comm *c, int peer) {
    return lms_errorf(LMS_ERR_UNSUPPORTED, "send/recv with rank %d in a 1-process job: point-to-point needs "
                      "at least 2 processes (launch with mpirun or srun)", peer);
}
static lms_status s_send(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag) {
    return s_p2p(c, peer);
}
static lms_status s_recv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag) {
    return s_p2p(c, peer);
}
static lms_status s_isend(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    return s_p2p(c, peer);
}
static lms_status s_irecv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    return s_p2p(c, peer);
}
static lms_status s_barrier(lms_comm *c) { return LMS_OK; }
static lms_status done_req(lms_comm_req **req) {
    *req = malloc(sizeof **req);
    return *req ? LMS_OK : lms_errorf(LMS_ERR_OOM, "out of memory for a request");
}
static lms_status s_iallreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op,
                               lms_comm_req **req) {
    copy(r, s, n, t);
    return done_req(req);
}
static lms_status s_ireduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                    lms_reduce_op op, lms_comm_req **req) {
    copy(r, s, n, t);
    return done_req(req);
}
static lms_status s_iallgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_comm_req **req) {
    copy(r, s, n, t);
    return done_req(req);
}
static lms_status s_wait(lms_comm *c, lms_comm_req *req) {
    free(req);
    return LMS_OK;
}
static lms_status s_split(lms_comm *c, int color, int key, lms_comm **out) { return lms_comm_single_new(out); }
static void s_free(lms_comm *c) { free(c); }
static void s_abort(lms_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    _Exit(code); /* like MPI_Abort: ends the job at once */
}

static const lms_comm_i single_i = {
    .name = "single", .allreduce = s_allreduce, .reduce_scatter = s_reduce_scatter,
    .allgather = s_allgather, .broadcast = s_broadcast, .send = s_send, .recv = s_recv,
    .barrier = s_barrier, .iallreduce = s_iallreduce, .ireduce_scatter = s_ireduce_scatter,
    .iallgather = s_iallgather, .wait = s_wait, .split = s_split, .free = s_free, .abort = s_abort,
    .isend = s_isend, .irecv = s_irecv,
};

lms_status lms_comm_single_new(lms_comm **out) {
    lms_comm *c = calloc(1, sizeof *c);
    if (!c) return lms_errorf(LMS_ERR_OOM, "out of memory for a communicator");
    c->i = &single_i;
    c->rank = 0;
    c->size = 1;
    *out = c;
    return LMS_OK;
}
