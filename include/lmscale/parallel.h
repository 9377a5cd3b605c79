/* lmscale parallel layout: the topology that maps each world rank to its
 * (data, tensor, pipeline) coordinates and the process group of each axis.
 * Pipeline schedules, tensor-parallel splits, ZeRO and gradient bucketing
 * build on it. */
#ifndef LMSCALE_PARALLEL_H
#define LMSCALE_PARALLEL_H

#include "lmscale/comm.h"
#include "lmscale/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- topology: world rank <-> (dp, tp, pp) coordinates ----
 * tp varies fastest, then dp, then pp (Megatron-LM's order), so a tensor-
 * parallel group is a block of consecutive ranks (one node) and pipeline
 * stages are farthest apart:  rank = tp_rank + tp·(dp_rank + dp·pp_rank). */
typedef struct {
    int world, rank;
    int dp, tp, pp;
    int dp_rank, tp_rank, pp_rank;
} lms_topology;

/* Errors when dp·tp·pp differs from world, naming the flags. */
lms_status lms_topology_init(lms_topology *t, int world, int rank, int dp, int tp, int pp);
int lms_topology_rank_of(const lms_topology *t, int dp_rank, int tp_rank, int pp_rank);

/* The three groups of this rank, made by splitting `world`. */
typedef struct {
    lms_comm *dp, *tp, *pp;
} lms_groups;
lms_status lms_groups_init(lms_groups *g, lms_comm *world, const lms_topology *t);
void lms_groups_free(lms_groups *g);

/* ---- data-parallel gradient synchronisation ----
 * Buckets of about bucket_bytes are all-reduced (non-blocking) as soon as
 * backward reports their gradients final (lms_grad_ready_fn), so
 * communication overlaps the rest of the backward pass. Ranges must arrive
 * in descending order (the model's layer-major layout guarantees it); a
 * bucket never splits a reported range. The sum is taken: scale the loss
 * gradient by 1/dp to get the mean. */
typedef struct {
    lms_comm *comm;    /* not owned */
    float *grads;      /* not owned */
    size_t n;          /* floats in grads */
    size_t bucket_floats;
    size_t ready_lo;    /* [ready_lo, n) is final */
    size_t launched_lo; /* [launched_lo, n) has its all-reduce started */
    int nreq, cap;
    lms_comm_req **reqs;
    lms_status err;     /* first error from a launch */
    int buckets_before_finish; /* launched while backward was still running (overlap) */
} lms_dp_sync;

lms_status lms_dp_sync_init(lms_dp_sync *s, lms_comm *dp, float *grads, size_t n, size_t bucket_bytes);
void lms_dp_sync_free(lms_dp_sync *s);
/* Before the backward pass whose gradients are to be synchronised. */
void lms_dp_sync_begin(lms_dp_sync *s);
/* The lms_grad_ready_fn to pass to lms_gpt_backward_ex with ctx = s. */
void lms_dp_sync_ready(void *s, size_t offset, size_t count);
/* Launches what is left and waits for every bucket. */
lms_status lms_dp_sync_finish(lms_dp_sync *s);

#ifdef __cplusplus
}
#endif
#endif
