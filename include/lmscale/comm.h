/* lmscale communicators: the collectives that data, tensor and pipeline
 * parallelism are built from, behind a vtable with a `single` (one process)
 * and an `mpi` backend; an NCCL backend fills the same table.
 *
 * Semantics follow MPI/NCCL: every rank of the communicator calls a
 * collective with the same count and type. Buffers may be the same pointer
 * (in place) where noted. Non-blocking variants return a request that must
 * be completed with lms_comm_wait before the buffers are touched. Errors
 * from the library come back as lms_status with the library's message. */
#ifndef LMSCALE_COMM_H
#define LMSCALE_COMM_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LMS_DT_F32 = 0, LMS_DT_F64, LMS_DT_I32, LMS_DT_I64, LMS_DT_U8 } lms_dtype;
typedef enum { LMS_RED_SUM = 0, LMS_RED_MAX, LMS_RED_MIN } lms_reduce_op;
size_t lms_dtype_size(lms_dtype t);

typedef struct lms_comm lms_comm;
typedef struct lms_comm_req lms_comm_req; /* a pending non-blocking operation */

typedef struct lms_comm_i {
    const char *name;
    /* recv = op over ranks of send; send == recv allowed (in place) */
    lms_status (*allreduce)(lms_comm *c, const void *send, void *recv, size_t count, lms_dtype t,
                            lms_reduce_op op);
    /* send holds size·count elements; rank r receives the reduction of block r */
    lms_status (*reduce_scatter)(lms_comm *c, const void *send, void *recv, size_t count, lms_dtype t,
                                 lms_reduce_op op);
    /* recv (size·count) = the ranks' send blocks (count each) in rank order;
     * send may alias recv + rank·count */
    lms_status (*allgather)(lms_comm *c, const void *send, void *recv, size_t count, lms_dtype t);
    lms_status (*broadcast)(lms_comm *c, void *buf, size_t count, lms_dtype t, int root);
    lms_status (*send)(lms_comm *c, const void *buf, size_t count, lms_dtype t, int peer, int tag);
    lms_status (*recv)(lms_comm *c, void *buf, size_t count, lms_dtype t, int peer, int tag);
    lms_status (*barrier)(lms_comm *c);
    /* non-blocking variants; *req is completed and freed by wait */
    lms_status (*iallreduce)(lms_comm *c, const void *send, void *recv, size_t count, lms_dtype t,
                             lms_reduce_op op, lms_comm_req **req);
    lms_status (*ireduce_scatter)(lms_comm *c, const void *send, void *recv, size_t count,
                                  lms_dtype t, lms_reduce_op op, lms_comm_req **req);
    lms_status (*iallgather)(lms_comm *c, const void *send, void *recv, size_t count, lms_dtype t,
                             lms_comm_req **req);
    lms_status (*wait)(lms_comm *c, lms_comm_req *req);
    /* ranks with the same color form a new communicator, ordered by key */
    lms_status (*split)(lms_comm *c, int color, int key, lms_comm **out);
    void (*free)(lms_comm *c);
    /* abort every process of the job (used by watchdogs); does not return */
    void (*abort)(lms_comm *c, int code);
} lms_comm_i;

struct lms_comm {
    const lms_comm_i *i;
    int rank, size;
    void *impl;
};

/* The world communicator. backend: "single", "mpi", or "auto" (mpi when this
 * build has MPI and the process was started by a launcher — mpirun, srun —
 * else single). MPI is initialised here (thread level FUNNELED); it fails,
 * leaving MPI finalised again, when the library gives a lower thread level or
 * when MPI's world is 1 process but the launcher started several (a launcher
 * of another MPI: Open MPI's mpirun running an MPICH build, or the reverse). */
lms_status lms_comm_world(const char *backend, int *argc, char ***argv, lms_comm **out);
/* Frees c; for the world communicator also finalises MPI. NULL is a no-op. */
void lms_comm_free(lms_comm *c);
/* 1 when this build has the MPI backend. */
int lms_comm_have_mpi(void);

/* Convenience wrappers through the vtable. */
static inline lms_status lms_comm_allreduce(lms_comm *c, const void *s, void *r, size_t n, lms_dtype t,
                                            lms_reduce_op op) {
    return c->i->allreduce(c, s, r, n, t, op);
}
static inline lms_status lms_comm_wait(lms_comm *c, lms_comm_req *req) { return c->i->wait(c, req); }

#ifdef __cplusplus
}
#endif
#endif
