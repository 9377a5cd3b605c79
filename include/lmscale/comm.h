/* lmscale communicators: the collectives that data, tensor and pipeline
 * parallelism are built from, behind a vtable with a `single` (one process)
 * and an `mpi` backend; an NCCL backend fills the same table.
 *
 * Semantics follow MPI/NCCL: every rank of the communicator calls a
 * collective with the same count and type. Buffers may be the same pointer
 * (in place) where noted. Non-blocking variants return a request that must
 * be completed with lms_comm_wait before the buffers are touched. Errors
 * from the library come back as lms_status with the library's message.
 *
 * Faults (docs/parallelism.md, "Faults and timeouts"): the mpi backend
 * tracks every blocking call and every wait; a watchdog thread aborts the
 * whole job, naming the rank and the operation, when one has been pending
 * longer than the timeout (lms_comm_set_timeout). */
#ifndef LMSCALE_COMM_H
#define LMSCALE_COMM_H

#include "lmscale/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types are core's lms_dtype (LMS_DT_*). bf16/fp16 travel as
 * 16-bit words: gathers, broadcasts and point-to-point take them; the mpi
 * reductions refuse them (LMS_ERR_UNSUPPORTED: reduce in fp32). */
typedef enum { LMS_RED_SUM = 0, LMS_RED_MAX, LMS_RED_MIN } lms_reduce_op;

typedef struct lms_comm lms_comm;
typedef struct lms_comm_req lms_comm_req; /* a pending non-blocking operation */

/* Memory that every rank of a communicator on one node can read and write
 * (MPI-3 shared windows): seg[r] is rank r's block of bytes[r] bytes, mapped
 * in this process. Made and freed collectively (lms_comm_shm_alloc). */
typedef struct {
    void **seg;
    size_t *bytes;
    void *impl;
} lms_comm_shm;

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
    /* The collective watchdog of this process (shared by the world and its
     * splits): seconds > 0 starts or retimes it, 0 stops it. NULL where no
     * operation can hang (single). Called through lms_comm_set_timeout. */
    lms_status (*set_timeout)(lms_comm *c, double seconds);
    /* step `step` (1-based) starts: watchdog messages name it. May be NULL. */
    void (*mark_step)(lms_comm *c, int step);
    /* non-blocking point-to-point (pipeline stages), completed and freed by
     * wait; tag < 32768. The watchdog names the peer of a pending one. */
    lms_status (*isend)(lms_comm *c, const void *buf, size_t count, lms_dtype t, int peer, int tag,
                        lms_comm_req **req);
    lms_status (*irecv)(lms_comm *c, void *buf, size_t count, lms_dtype t, int peer, int tag,
                        lms_comm_req **req);
    /* Node-shared memory (lms_comm_shm_alloc); NULL where the backend has
     * none. *out NULL (and LMS_OK) when c's ranks are not all on one node. */
    lms_status (*shm_alloc)(lms_comm *c, size_t bytes, lms_comm_shm **out);
    void (*shm_free)(lms_comm *c, lms_comm_shm *shm);
    /* An operation of the caller's own that can block on other ranks (a
     * wait in shared memory): the watchdog tracks it from begin to end, and
     * its bytes count as a collective's (coll_bytes). May be NULL. */
    void (*track_begin)(lms_comm *c, const char *op, size_t bytes);
    void (*track_end)(lms_comm *c);
} lms_comm_i;

struct lms_comm {
    const lms_comm_i *i;
    int rank, size;
    void *impl;
    /* what the communicator is, for messages: "world", "dp group", ...;
     * a string with static lifetime (the watchdog thread reads it), or NULL */
    const char *label;
    /* What this rank handed to the communicator's operations since it was
     * made, counted by the backend as each operation starts (nothing on a
     * communicator of one rank, where nothing leaves the process):
     *   coll_bytes  collectives, by their size as nccl-tests counts it: the
     *               buffer of an all-reduce or broadcast, the whole input of
     *               a reduce-scatter (size·count) and the whole output of an
     *               all-gather (size·count); blocking or not
     *   sent_bytes  point-to-point sends (send, isend)
     * A ring moves 2(n-1)/n of an all-reduce's size per rank and (n-1)/n of
     * a reduce-scatter's or all-gather's. docs/parallelism.md,
     * "Communication counts". */
    uint64_t coll_bytes, sent_bytes;
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

/* ---- faults and timeouts (docs/parallelism.md) ---- */

#define LMS_COMM_TIMEOUT_DEFAULT 600.0 /* seconds, as PyTorch's NCCL default */
#define LMS_COMM_TIMEOUT_EXIT 75       /* the job's exit status after a timeout (EX_TEMPFAIL) */

/* Sets the watchdog of world's process: an operation (collective, send,
 * recv, or a wait on a non-blocking one) pending for more than `seconds`
 * prints one line naming the rank, the operation, its size, group and
 * sequence number, then aborts every process of the job (exit status
 * LMS_COMM_TIMEOUT_EXIT). seconds < 0: LMSCALE_COMM_TIMEOUT from the
 * environment, else LMS_COMM_TIMEOUT_DEFAULT; 0: no watchdog. A no-op on the
 * single backend, after validation. */
lms_status lms_comm_set_timeout(lms_comm *world, double seconds);

/* Marks the start of training step `step` (1-based): the watchdog names it,
 * and a fault injected with LMSCALE_FAULT for this rank and step fires here
 * (a testing aid: "hang:rank=R:step=S" sleeps forever, "exit:..." exits with
 * status 3 as a crash would, "kill:..." sends this process SIGKILL). */
void lms_comm_mark_step(lms_comm *world, int step);
/* LMSCALE_FAULT "inf:rank=R:step=S" / "nan:...": INFINITY or NAN when it is
 * for this world rank and 1-based step (the trainer puts it into that
 * rank's gradients, with --dtype bf16|fp16), else 0. */
float lms_comm_fault_grad(int rank, int step);

/* ---- shared memory on one node ----
 * Collective over c: every rank gives `bytes` (may differ between ranks,
 * may be 0) and gets every rank's block mapped (seg[r], bytes[r]). *out is
 * NULL, with LMS_OK, where there is no such memory: one rank, a backend
 * without it (single), ranks on more than one node, or too little room in
 * /dev/shm for the blocks (a tmpfs that fills up would end the job with
 * SIGBUS on first touch, so it is checked first). The decision is the same
 * on every rank. Free with lms_comm_shm_free (collective; NULL is a no-op). */
lms_status lms_comm_shm_alloc(lms_comm *c, size_t bytes, lms_comm_shm **out);
void lms_comm_shm_free(lms_comm *c, lms_comm_shm *shm);
/* The watchdog tracks what the caller waits on between begin and end. */
static inline void lms_comm_track_begin(lms_comm *c, const char *op, size_t bytes) {
    if (c->i->track_begin) c->i->track_begin(c, op, bytes);
}
static inline void lms_comm_track_end(lms_comm *c) {
    if (c->i->track_end) c->i->track_end(c);
}

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
