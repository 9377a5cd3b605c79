/* The MPI communicator (Open MPI, MPICH). Every MPI call goes through
 * MPI_TRY (or done), which turns an error into an lms_status carrying MPI's
 * own message and the operation's name. Errors return (MPI_ERRORS_RETURN)
 * instead of aborting, so the caller can say what failed. Every call that
 * can block is tracked by the process's collective watchdog (watchdog.c):
 * track before, done after. */
#include "comm_impl.h"

#ifndef LMS_HAVE_MPI

int lms_comm_have_mpi(void) { return 0; }
lms_status lms_comm_mpi_world(int *argc, char ***argv, lms_comm **out) {
    return lms_errorf(LMS_ERR_UNSUPPORTED, "this lmscale was built without MPI");
}

#else

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

typedef struct {
    MPI_Comm comm;
    int is_world;
    lms_watchdog *wd; /* the process's; owned by the world communicator */
    uint64_t nops;    /* tracked operations on this communicator: the watchdog's #N */
} mpi_impl;

struct lms_comm_req {
    MPI_Request r;
    const char *what;
    uint64_t seq;
    size_t bytes;
    int peer; /* of a send/recv, else -1 */
};

static const char OP_FINALIZE[] = "finalize";

/* MPI's message for rc on one line. Open MPI gives one line ("MPI_ERR_ROOT:
 * invalid root"); MPICH gives an error stack, one line per frame ("Invalid
 * root, error stack:\ninternal_Bcast(107): MPI_Bcast(...) failed\n...:
 * Invalid root (value given was 3)"), joined here with "; ". */
static lms_status mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    char flat[2 * MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS || len < 0) len = 0;
    if (len > MPI_MAX_ERROR_STRING) len = MPI_MAX_ERROR_STRING;
    msg[len] = '\0';
    size_t n = 0;
    for (int k = 0; k < len && n + 2 < sizeof flat; k++) {
        if (msg[k] != '\n') {
            flat[n++] = msg[k];
        } else if (k + 1 < len) { /* "stack:\n" -> "stack: ", else "; " */
            if (n > 0 && flat[n - 1] != ':') flat[n++] = ';';
            flat[n++] = ' ';
        }
    }
    flat[n] = '\0';
    return lms_errorf(LMS_ERR_IO, "MPI %s failed: %s", what, n ? flat : "(no message from the MPI library)");
}
#define MPI_TRY(call, what)                          \
    do {                                             \
        int mpi_rc_ = (call);                        \
        if (mpi_rc_ != MPI_SUCCESS) return mpi_fail(mpi_rc_, what); \
    } while (0)

static MPI_Comm C(lms_comm *c) { return ((mpi_impl *)c->impl)->comm; }

/* How an operation counts in c's coll_bytes / sent_bytes (comm.h). */
enum { NOT_COUNTED = 0, COLLECTIVE, SENT };

/* The watchdog's view: op is pending on c from now until done(); and the
 * communicator's byte counts. */
static uint64_t track_counted(lms_comm *c, const char *op, size_t bytes, int peer, int kind) {
    mpi_impl *m = c->impl;
    if (c->size > 1 && kind == COLLECTIVE) c->coll_bytes += bytes;
    if (c->size > 1 && kind == SENT) c->sent_bytes += bytes;
    uint64_t seq = ++m->nops;
    lms_watchdog_begin(m->wd, op, c->label, c->size, seq, bytes, peer);
    return seq;
}
static uint64_t track(lms_comm *c, const char *op, size_t bytes, int peer) {
    return track_counted(c, op, bytes, peer, NOT_COUNTED);
}
static uint64_t track_coll(lms_comm *c, const char *op, size_t bytes) {
    return track_counted(c, op, bytes, -1, COLLECTIVE);
}
static lms_status done(lms_comm *c, int rc, const char *what) {
    lms_watchdog_end(((mpi_impl *)c->impl)->wd);
    return rc == MPI_SUCCESS ? LMS_OK : mpi_fail(rc, what);
}

static MPI_Datatype T(lms_dtype t) {
    switch (t) {
    case LMS_DT_F32: return MPI_FLOAT;
    case LMS_DT_F64: return MPI_DOUBLE;
    case LMS_DT_I32: return MPI_INT32_T;
    case LMS_DT_I64: return MPI_INT64_T;
    case LMS_DT_U8: return MPI_UINT8_T;
    case LMS_DT_BF16:
    case LMS_DT_F16: return MPI_UINT16_T; /* moved as 16-bit words, never reduced */
    case LMS_DT_COUNT: break;
    }
    return MPI_DATATYPE_NULL;
}
static MPI_Op O(lms_reduce_op op) { return op == LMS_RED_MAX ? MPI_MAX : op == LMS_RED_MIN ? MPI_MIN : MPI_SUM; }

static lms_status count_ok(size_t n, const char *what) {
    if (n > (size_t)INT_MAX)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "MPI %s of %zu elements: more than 2^31-1 per call is not "
                          "supported (split the buffer)", what, n);
    return LMS_OK;
}

/* Sums of 16-bit floats would need a custom MPI op: refused, not wrong. */
static lms_status red_ok(lms_dtype t, const char *what) {
    if (t == LMS_DT_BF16 || t == LMS_DT_F16)
        return lms_errorf(LMS_ERR_UNSUPPORTED, "MPI %s of %s: reductions take fp32/fp64/int only (reduce in fp32)",
                          what, lms_dtype_name(t));
    return LMS_OK;
}

static lms_status m_allreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op) {
    LMS_CHECK(red_ok(t, "allreduce"));
    LMS_CHECK(count_ok(n, "allreduce"));
    track_coll(c, "allreduce", n * lms_dtype_size(t));
    return done(c, MPI_Allreduce(s == r ? MPI_IN_PLACE : s, r, (int)n, T(t), O(op), C(c)), "allreduce");
}
static lms_status m_reduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                   lms_reduce_op op) {
    LMS_CHECK(red_ok(t, "reduce_scatter"));
    LMS_CHECK(count_ok(n * (size_t)c->size, "reduce_scatter"));
    track_coll(c, "reduce_scatter", n * (size_t)c->size * lms_dtype_size(t));
    return done(c, MPI_Reduce_scatter_block(s, r, (int)n, T(t), O(op), C(c)), "reduce_scatter");
}
static lms_status m_allgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t) {
    LMS_CHECK(count_ok(n * (size_t)c->size, "allgather"));
    const char *in_place = (const char *)r + (size_t)c->rank * n * lms_dtype_size(t);
    track_coll(c, "allgather", n * (size_t)c->size * lms_dtype_size(t));
    return done(c, MPI_Allgather(s == in_place ? MPI_IN_PLACE : s, (int)n, T(t), r, (int)n, T(t), C(c)),
                "allgather");
}
static lms_status m_broadcast(lms_comm *c, void *b, size_t n, lms_dtype t, int root) {
    LMS_CHECK(count_ok(n, "broadcast"));
    track_coll(c, "broadcast", n * lms_dtype_size(t));
    return done(c, MPI_Bcast(b, (int)n, T(t), root, C(c)), "broadcast");
}
static lms_status m_send(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag) {
    LMS_CHECK(count_ok(n, "send"));
    track_counted(c, "send", n * lms_dtype_size(t), peer, SENT);
    return done(c, MPI_Send(b, (int)n, T(t), peer, tag, C(c)), "send");
}
static lms_status m_recv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag) {
    LMS_CHECK(count_ok(n, "recv"));
    track(c, "recv", n * lms_dtype_size(t), peer);
    return done(c, MPI_Recv(b, (int)n, T(t), peer, tag, C(c), MPI_STATUS_IGNORE), "recv");
}
static lms_status m_barrier(lms_comm *c) {
    track(c, "barrier", 0, -1);
    return done(c, MPI_Barrier(C(c)), "barrier");
}
/* A request for op `what` of `bytes`, tracked from its start (starting
 * does not normally block; its wait does, under the same #N). */
static lms_status new_req_counted(lms_comm *c, lms_comm_req **req, const char *what, size_t bytes, int peer,
                                  int kind) {
    *req = malloc(sizeof **req);
    if (!*req) return lms_errorf(LMS_ERR_OOM, "out of memory for an MPI request");
    (*req)->what = what;
    (*req)->bytes = bytes;
    (*req)->peer = peer;
    (*req)->seq = track_counted(c, what, bytes, peer, kind);
    return LMS_OK;
}
static lms_status new_req(lms_comm *c, lms_comm_req **req, const char *what, size_t bytes) {
    return new_req_counted(c, req, what, bytes, -1, COLLECTIVE);
}
/* After the start call: untrack, and free the request if it failed. */
static lms_status started(lms_comm *c, int rc, lms_comm_req **req) {
    lms_status st = done(c, rc, (*req)->what);
    if (st != LMS_OK) {
        free(*req);
        *req = NULL;
    }
    return st;
}
static lms_status m_iallreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_reduce_op op,
                               lms_comm_req **req) {
    LMS_CHECK(red_ok(t, "iallreduce"));
    LMS_CHECK(count_ok(n, "iallreduce"));
    LMS_CHECK(new_req(c, req, "iallreduce", n * lms_dtype_size(t)));
    return started(c, MPI_Iallreduce(s == r ? MPI_IN_PLACE : s, r, (int)n, T(t), O(op), C(c), &(*req)->r), req);
}
static lms_status m_ireduce_scatter(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                    lms_reduce_op op, lms_comm_req **req) {
    LMS_CHECK(red_ok(t, "ireduce_scatter"));
    LMS_CHECK(count_ok(n * (size_t)c->size, "ireduce_scatter"));
    LMS_CHECK(new_req(c, req, "ireduce_scatter", n * (size_t)c->size * lms_dtype_size(t)));
    return started(c, MPI_Ireduce_scatter_block(s, r, (int)n, T(t), O(op), C(c), &(*req)->r), req);
}
static lms_status m_iallgather(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t, lms_comm_req **req) {
    LMS_CHECK(count_ok(n * (size_t)c->size, "iallgather"));
    LMS_CHECK(new_req(c, req, "iallgather", n * (size_t)c->size * lms_dtype_size(t)));
    const char *in_place = (const char *)r + (size_t)c->rank * n * lms_dtype_size(t);
    return started(c, MPI_Iallgather(s == in_place ? MPI_IN_PLACE : s, (int)n, T(t), r, (int)n, T(t), C(c),
                                     &(*req)->r), req);
}
static lms_status m_isend(lms_comm *c, const void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    LMS_CHECK(count_ok(n, "isend"));
    LMS_CHECK(new_req_counted(c, req, "isend", n * lms_dtype_size(t), peer, SENT));
    return started(c, MPI_Isend(b, (int)n, T(t), peer, tag, C(c), &(*req)->r), req);
}
static lms_status m_irecv(lms_comm *c, void *b, size_t n, lms_dtype t, int peer, int tag, lms_comm_req **req) {
    LMS_CHECK(count_ok(n, "irecv"));
    LMS_CHECK(new_req_counted(c, req, "irecv", n * lms_dtype_size(t), peer, NOT_COUNTED));
    return started(c, MPI_Irecv(b, (int)n, T(t), peer, tag, C(c), &(*req)->r), req);
}
static lms_status m_wait(lms_comm *c, lms_comm_req *req) {
    lms_watchdog_begin(((mpi_impl *)c->impl)->wd, req->what, c->label, c->size, req->seq, req->bytes, req->peer);
    int rc = MPI_Wait(&req->r, MPI_STATUS_IGNORE);
    const char *what = req->what;
    free(req);
    return done(c, rc, what);
}

static lms_status wrap(MPI_Comm mc, int is_world, lms_watchdog *wd, lms_comm **out);

/* ---- shared memory on one node: an MPI-3 shared window over the ranks of
 * c, when MPI_Comm_split_type(SHARED) finds them all on this node, kept in
 * one passive-target epoch (lock_all) for its life so ranks may load and
 * store it directly (with C11 atomics for what orders them). */
typedef struct {
    MPI_Comm node;
    MPI_Win win;
} mpi_shm;

static void shm_release(mpi_shm *w, lms_comm_shm *s) {
    if (w && w->win != MPI_WIN_NULL) {
        MPI_Win_unlock_all(w->win);
        MPI_Win_free(&w->win);
    }
    if (w && w->node != MPI_COMM_NULL) MPI_Comm_free(&w->node);
    free(w);
    if (s) {
        free(s->seg);
        free(s->bytes);
        free(s);
    }
}

static lms_status m_shm_alloc(lms_comm *c, size_t bytes, lms_comm_shm **out) {
    *out = NULL;
    mpi_shm *w = calloc(1, sizeof *w);
    lms_comm_shm *s = calloc(1, sizeof *s);
    if (w) w->node = MPI_COMM_NULL, w->win = MPI_WIN_NULL;
    if (s) s->seg = calloc((size_t)c->size, sizeof *s->seg), s->bytes = calloc((size_t)c->size, sizeof *s->bytes);
    if (!w || !s || !s->seg || !s->bytes) {
        shm_release(w, s);
        return lms_errorf(LMS_ERR_OOM, "out of memory for a shared-memory window");
    }
    track(c, "comm_split_type", 0, -1);
    lms_status st = done(c, MPI_Comm_split_type(C(c), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &w->node),
                         "comm_split_type");
    int nsize = 0, nrank = -1, same = 0;
    if (st == LMS_OK) {
        MPI_Comm_size(w->node, &nsize);
        MPI_Comm_rank(w->node, &nrank);
        same = nsize == c->size && nrank == c->rank; /* key 0 keeps c's order */
        int all = 0;
        track(c, "allreduce", sizeof all, -1);
        st = done(c, MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, C(c)), "allreduce");
        same = all;
    }
    if (st != LMS_OK || !same) { /* more than one node: no shared memory */
        shm_release(w, s);
        return st;
    }
    void *base = NULL;
    track(c, "win_allocate_shared", bytes, -1);
    st = done(c, MPI_Win_allocate_shared((MPI_Aint)bytes, 1, MPI_INFO_NULL, w->node, &base, &w->win),
              "win_allocate_shared");
    int rc = MPI_SUCCESS;
    if (st == LMS_OK && (rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, w->win)) != MPI_SUCCESS) {
        st = mpi_fail(rc, "win_lock_all");
        MPI_Win_free(&w->win); /* not locked: shm_release would unlock it */
    }
    for (int r = 0; st == LMS_OK && r < c->size; r++) {
        MPI_Aint sz = 0;
        int du = 0;
        if ((rc = MPI_Win_shared_query(w->win, r, &sz, &du, &s->seg[r])) != MPI_SUCCESS)
            st = mpi_fail(rc, "win_shared_query");
        s->bytes[r] = (size_t)sz;
    }
    if (st != LMS_OK) {
        shm_release(w, s);
        return st;
    }
    s->impl = w;
    *out = s;
    return LMS_OK;
}
static void m_shm_free(lms_comm *c, lms_comm_shm *s) {
    track(c, "win_free", 0, -1);
    shm_release(s->impl, s);
    lms_watchdog_end(((mpi_impl *)c->impl)->wd);
}
static void m_track_begin(lms_comm *c, const char *op, size_t bytes) { track_coll(c, op, bytes); }
static void m_track_end(lms_comm *c) { lms_watchdog_end(((mpi_impl *)c->impl)->wd); }

static lms_status m_split(lms_comm *c, int color, int key, lms_comm **out) {
    MPI_Comm nc;
    track(c, "comm_split", 0, -1);
    LMS_CHECK(done(c, MPI_Comm_split(C(c), color, key, &nc), "comm_split"));
    return wrap(nc, 0, ((mpi_impl *)c->impl)->wd, out);
}
static void m_free(lms_comm *c) {
    mpi_impl *m = c->impl;
    if (m->is_world) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) { /* Open MPI's finalize waits for every rank: a hung one would hold it */
            track(c, OP_FINALIZE, 0, -1);
            MPI_Finalize();
            lms_watchdog_end(m->wd);
        }
        lms_watchdog_free(m->wd);
    } else {
        MPI_Comm_free(&m->comm);
    }
    free(m);
    free(c);
}
static void m_abort(lms_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(C(c), code);
    _Exit(code);
}

/* The watchdog's way out: MPI_Abort (from the watchdog thread; Open MPI
 * allows it at thread level FUNNELED in practice), except once MPI_Finalize
 * has begun, when exiting non-zero makes the launcher end the job. */
static void abort_job(const char *op, int code) {
    if (op != OP_FINALIZE) MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}
static lms_status m_set_timeout(lms_comm *c, double seconds) {
    return lms_watchdog_set_timeout(((mpi_impl *)c->impl)->wd, seconds);
}
static void m_mark_step(lms_comm *c, int step) { lms_watchdog_mark_step(((mpi_impl *)c->impl)->wd, step); }

static const lms_comm_i mpi_i = {
    .name = "mpi", .allreduce = m_allreduce, .reduce_scatter = m_reduce_scatter, .allgather = m_allgather,
    .broadcast = m_broadcast, .send = m_send, .recv = m_recv, .barrier = m_barrier,
    .iallreduce = m_iallreduce, .ireduce_scatter = m_ireduce_scatter, .iallgather = m_iallgather,
    .wait = m_wait, .split = m_split, .free = m_free, .abort = m_abort, .set_timeout = m_set_timeout,
    .mark_step = m_mark_step, .isend = m_isend, .irecv = m_irecv, .shm_alloc = m_shm_alloc,
    .shm_free = m_shm_free, .track_begin = m_track_begin, .track_end = m_track_end,
};

static lms_status wrap(MPI_Comm mc, int is_world, lms_watchdog *wd, lms_comm **out) {
    lms_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return lms_errorf(LMS_ERR_OOM, "out of memory for a communicator");
    }
    m->comm = mc;
    m->is_world = is_world;
    m->wd = wd;
    c->i = &mpi_i;
    c->impl = m;
    MPI_Comm_rank(mc, &c->rank);
    MPI_Comm_size(mc, &c->size);
    *out = c;
    return LMS_OK;
}

int lms_comm_have_mpi(void) { return 1; }

/* A launcher of another MPI (Open MPI's mpirun starting an MPICH build, or
 * MPICH's mpiexec an Open MPI build) makes every process an MPI world of
 * one: N copies of a one-process run. The launcher's own variables still
 * say how many processes it started; compare. */
static lms_status check_launcher(int size) {
    const char *var = "OMPI_COMM_WORLD_SIZE", *v = lms_env(var);
    if (!v) v = lms_env(var = "PMI_SIZE");
    int launched = v ? atoi(v) : 0;
    if (size != 1 || launched <= 1) return LMS_OK;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING + 1] = "";
    int len = 0;
    if (MPI_Get_library_version(lib, &len) != MPI_SUCCESS) len = 0;
    lib[len < 0 ? 0 : len > MPI_MAX_LIBRARY_VERSION_STRING ? MPI_MAX_LIBRARY_VERSION_STRING : len] = '\0';
    lib[strcspn(lib, ",\n")] = '\0'; /* "Open MPI v4.1.4", "MPICH Version:\t4.0.2" */
    for (char *c = lib; *c; c++)
        if (*c == '\t') *c = ' ';
    return lms_errorf(LMS_ERR_INVALID_ARG, "the launcher started %d processes (%s=%d) but MPI sees each as a "
                      "world of 1: the launcher belongs to another MPI than the one this lmscale was built "
                      "with (%s); launch with that MPI's mpiexec (mpirun.openmpi for Open MPI, mpiexec.mpich "
                      "for MPICH) or rebuild against the launcher's MPI",
                      launched, var, launched, lib[0] ? lib : "unknown");
}

lms_status lms_comm_mpi_world(int *argc, char ***argv, lms_comm **out) {
    int inited = 0, provided = MPI_THREAD_FUNNELED, size = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_TRY(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
    lms_status st = LMS_OK;
    /* the main thread calls MPI while OpenMP threads exist: SINGLE is not enough */
    if (provided < MPI_THREAD_FUNNELED)
        st = lms_errorf(LMS_ERR_UNSUPPORTED, "this MPI provides thread level %d, below MPI_THREAD_FUNNELED "
                        "(%d) that lmscale needs: use an MPI built with thread support", provided,
                        MPI_THREAD_FUNNELED);
    int rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (st == LMS_OK && rc != MPI_SUCCESS) st = mpi_fail(rc, "comm_set_errhandler");
    int rank = 0;
    rc = MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (st == LMS_OK && rc != MPI_SUCCESS) st = mpi_fail(rc, "comm_rank");
    rc = MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (st == LMS_OK && rc != MPI_SUCCESS) st = mpi_fail(rc, "comm_size");
    if (st == LMS_OK) st = check_launcher(size);
    lms_watchdog *wd = NULL;
    if (st == LMS_OK) st = lms_watchdog_new(rank, size, abort_job, &wd);
    if (st == LMS_OK) {
        st = wrap(MPI_COMM_WORLD, 1, wd, out);
        if (st != LMS_OK) lms_watchdog_free(wd);
    }
    if (st != LMS_OK && !inited) MPI_Finalize(); /* nothing is left initialised on failure */
    return st;
}

#endif
