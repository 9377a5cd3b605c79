/* World rank <-> (dp, tp, pp) coordinates, and the groups of each axis. */
#include "lmscale/parallel.h"

#include <string.h>

lms_status lms_topology_check(int world, int dp, int tp, int pp) {
    if (dp < 1 || tp < 1 || pp < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--dp %d --tp %d --pp %d: every degree must be at least 1",
                          dp, tp, pp);
    if ((long)dp * tp * pp != world)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the job has %d processes but --dp %d x --tp %d x --pp %d = "
                          "%ld: launch dp x tp x pp processes (e.g. mpirun -np %ld) or change the degrees",
                          world, dp, tp, pp, (long)dp * tp * pp, (long)dp * tp * pp);
    return LMS_OK;
}

lms_status lms_topology_init(lms_topology *t, int world, int rank, int dp, int tp, int pp) {
    memset(t, 0, sizeof *t);
    LMS_CHECK(lms_topology_check(world, dp, tp, pp));
    t->world = world;
    t->rank = rank;
    t->dp = dp;
    t->tp = tp;
    t->pp = pp;
    t->tp_rank = rank % tp;
    t->dp_rank = (rank / tp) % dp;
    t->pp_rank = rank / (tp * dp);
    return LMS_OK;
}

int lms_topology_rank_of(const lms_topology *t, int dp_rank, int tp_rank, int pp_rank) {
    return tp_rank + t->tp * (dp_rank + t->dp * pp_rank);
}

lms_status lms_groups_init(lms_groups *g, lms_comm *world, const lms_topology *t) {
    memset(g, 0, sizeof *g);
    lms_status st;
    /* color = the coordinates the group shares; key = the coordinate it spans */
    LMS_TRY(world->i->split(world, t->tp_rank + t->tp * t->pp_rank, t->dp_rank, &g->dp));
    LMS_TRY(world->i->split(world, t->dp_rank + t->dp * t->pp_rank, t->tp_rank, &g->tp));
    LMS_TRY(world->i->split(world, t->tp_rank + t->tp * t->dp_rank, t->pp_rank, &g->pp));
    g->dp->label = "dp group"; /* named in watchdog messages */
    g->tp->label = "tp group";
    g->pp->label = "pp group";
    return LMS_OK;
fail:
    lms_groups_free(g);
    return st;
}

void lms_groups_free(lms_groups *g) {
    if (!g) return;
    lms_comm_free(g->dp);
    lms_comm_free(g->tp);
    lms_comm_free(g->pp);
    memset(g, 0, sizeof *g);
}
