/* lmscale parallel layout: the topology that maps each world rank to its
 * (data, tensor, pipeline) coordinates and the process group of each axis.
 * Pipeline schedules, tensor-parallel splits, ZeRO and gradient bucketing
 * build on it. */
#ifndef LMSCALE_PARALLEL_H
#define LMSCALE_PARALLEL_H

#include "lmscale/comm.h"

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

#ifdef __cplusplus
}
#endif
#endif
