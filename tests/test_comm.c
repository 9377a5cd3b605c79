/* Communicators and topology, at any world size: run alone (the single
 * backend) and under mpirun with 3 and 4 ranks (the mpi backend). Every
 * result is checked against a closed form of the ranks' inputs. */
#include "check.h"
#include "comm/comm_impl.h"
#include "lmscale/parallel.h"

#include <string.h>

static lms_comm *W;

static void test_collectives(void) {
    int P = W->size, r = W->rank;
    enum { N = 1000 };
    float s[N], out[N];
    for (int i = 0; i < N; i++) s[i] = (float)r + 0.5f * i;
    CHECK(lms_comm_allreduce(W, s, out, N, LMS_DT_F32, LMS_RED_SUM) == LMS_OK, "allreduce: %s", lms_last_error());
    int bad = 0;
    for (int i = 0; i < N; i++) bad += out[i] != (float)(P * (P - 1) / 2) + P * 0.5f * i;
    CHECK(!bad, "allreduce sum: %d wrong elements", bad);
    lms_comm_allreduce(W, s, s, N, LMS_DT_F32, LMS_RED_MAX); /* in place */
    CHECK(s[7] == (float)(P - 1) + 3.5f, "in-place allreduce max: %g", s[7]);
    double d = r, dm;
    W->i->allreduce(W, &d, &dm, 1, LMS_DT_F64, LMS_RED_MIN);
    CHECK(dm == 0.0, "f64 min");
    int64_t big = (int64_t)r << 40, bs;
    W->i->allreduce(W, &big, &bs, 1, LMS_DT_I64, LMS_RED_SUM);
    CHECK(bs == ((int64_t)P * (P - 1) / 2) << 40, "i64 sum");

    /* reduce_scatter: block b, element i of rank q is q*100 + b + i */
    enum { K = 37 };
    float *rs = malloc(sizeof(float) * K * P), rr[K];
    for (int b = 0; b < P; b++)
        for (int i = 0; i < K; i++) rs[b * K + i] = (float)(r * 100 + b + i);
    CHECK(W->i->reduce_scatter(W, rs, rr, K, LMS_DT_F32, LMS_RED_SUM) == LMS_OK, "reduce_scatter");
    bad = 0;
    for (int i = 0; i < K; i++) bad += rr[i] != (float)(100 * P * (P - 1) / 2 + P * (r + i));
    CHECK(!bad, "reduce_scatter: %d wrong", bad);

    /* allgather, out of place and in place */
    float ag_s[K], *ag = malloc(sizeof(float) * K * P);
    for (int i = 0; i < K; i++) ag_s[i] = (float)(r * 10 + i);
    CHECK(W->i->allgather(W, ag_s, ag, K, LMS_DT_F32) == LMS_OK, "allgather");
    bad = 0;
    for (int q = 0; q < P; q++)
        for (int i = 0; i < K; i++) bad += ag[q * K + i] != (float)(q * 10 + i);
    CHECK(!bad, "allgather: %d wrong", bad);
    memset(ag, 0, sizeof(float) * K * P);
    memcpy(ag + r * K, ag_s, sizeof ag_s);
    W->i->allgather(W, ag + r * K, ag, K, LMS_DT_F32);
    CHECK(ag[(P - 1) * K + 3] == (float)((P - 1) * 10 + 3), "in-place allgather");

    int32_t v[3] = {r, r, r};
    W->i->broadcast(W, v, 3, LMS_DT_I32, P - 1);
    CHECK(v[0] == P - 1 && v[2] == P - 1, "broadcast from the last rank");
    /* a library error returns (not aborts) and carries the library's own
     * message: every rank names a root that does not exist */
    lms_status st = W->i->broadcast(W, v, 3, LMS_DT_I32, P);
    CHECK(st != LMS_OK && strstr(lms_last_error(), "broadcast") && strlen(lms_last_error()) > 20 &&
              !strchr(lms_last_error(), '\n'),
          "broadcast from rank %d of %d refused with a one-line message: %s", P, P, lms_last_error());
    if (r == 0) printf("  broadcast from a missing root: %s\n", lms_last_error());

    /* non-blocking: three outstanding, completed in reverse order */
    float a1[N], a2[K], *a3 = malloc(sizeof(float) * K * P);
    for (int i = 0; i < N; i++) a1[i] = 1.0f;
    lms_comm_req *q1, *q2, *q3;
    CHECK(W->i->iallreduce(W, a1, a1, N, LMS_DT_F32, LMS_RED_SUM, &q1) == LMS_OK, "iallreduce");
    CHECK(W->i->ireduce_scatter(W, rs, a2, K, LMS_DT_F32, LMS_RED_SUM, &q2) == LMS_OK, "ireduce_scatter");
    CHECK(W->i->iallgather(W, ag_s, a3, K, LMS_DT_F32, &q3) == LMS_OK, "iallgather");
    CHECK(lms_comm_wait(W, q3) == LMS_OK && lms_comm_wait(W, q2) == LMS_OK && lms_comm_wait(W, q1) == LMS_OK,
          "wait");
    CHECK(a1[N - 1] == (float)P && a2[0] == rr[0] && a3[(P - 1) * K] == (float)((P - 1) * 10),
          "non-blocking results");

    /* point to point: a ring */
    if (P > 1) {
        int next = (r + 1) % P, prev = (r + P - 1) % P, got = -1, mine = r;
        if (r % 2 == 0) {
            W->i->send(W, &mine, 1, LMS_DT_I32, next, 7);
            W->i->recv(W, &got, 1, LMS_DT_I32, prev, 7);
        } else {
            W->i->recv(W, &got, 1, LMS_DT_I32, prev, 7);
            W->i->send(W, &mine, 1, LMS_DT_I32, next, 7);
        }
        CHECK(got == prev, "ring send/recv: got %d from %d", got, prev);
    } else {
        int x = 0;
        CHECK(W->i->send(W, &x, 1, LMS_DT_I32, 0, 0) == LMS_ERR_UNSUPPORTED, "send in a 1-process job refused");
    }
    CHECK(W->i->barrier(W) == LMS_OK, "barrier");
    free(rs);
    free(ag);
    free(a3);
}

static void test_topology(void) {
    lms_topology t;
    /* a pure function: every factorisation of 24 is a bijection */
    int degs[][3] = {{24, 1, 1}, {2, 3, 4}, {4, 2, 3}, {1, 24, 1}, {3, 1, 8}};
    for (size_t k = 0; k < sizeof degs / sizeof degs[0]; k++) {
        int seen[24] = {0}, ok = 1;
        for (int rank = 0; rank < 24; rank++) {
            lms_topology_init(&t, 24, rank, degs[k][0], degs[k][1], degs[k][2]);
            int back = lms_topology_rank_of(&t, t.dp_rank, t.tp_rank, t.pp_rank);
            ok &= back == rank && t.dp_rank < t.dp && t.tp_rank < t.tp && t.pp_rank < t.pp;
            seen[back]++;
            if (rank == 1 && t.tp > 1) ok &= t.tp_rank == 1; /* tp fastest */
        }
        for (int i = 0; i < 24; i++) ok &= seen[i] == 1;
        CHECK(ok, "topology dp=%d tp=%d pp=%d is a bijection with tp fastest", degs[k][0], degs[k][1], degs[k][2]);
    }
    CHECK(lms_topology_init(&t, 4, 0, 3, 1, 1) == LMS_ERR_INVALID_ARG && strstr(lms_last_error(), "--dp 3"),
          "world != dp*tp*pp refused naming the flags: %s", lms_last_error());

    /* groups on the real world: dp = world, and dp x tp when even */
    int P = W->size;
    int layouts[2][3] = {{P, 1, 1}, {P % 2 == 0 ? P / 2 : P, P % 2 == 0 ? 2 : 1, 1}};
    for (int k = 0; k < 2; k++) {
        lms_groups g;
        CHECK(lms_topology_init(&t, P, W->rank, layouts[k][0], layouts[k][1], layouts[k][2]) == LMS_OK, "init");
        CHECK(lms_groups_init(&g, W, &t) == LMS_OK, "groups: %s", lms_last_error());
        CHECK(g.dp->size == t.dp && g.tp->size == t.tp && g.pp->size == t.pp, "group sizes");
        CHECK(strcmp(g.dp->label, "dp group") == 0 && strcmp(g.tp->label, "tp group") == 0,
              "groups are labelled for watchdog messages");
        CHECK(g.dp->rank == t.dp_rank && g.tp->rank == t.tp_rank, "group ranks are the coordinates");
        /* members of my dp group share my tp and pp coordinates */
        int *members = malloc(sizeof(int) * g.dp->size), me = W->rank, ok = 1;
        g.dp->i->allgather(g.dp, &me, members, 1, LMS_DT_I32);
        for (int i = 0; i < g.dp->size; i++) {
            lms_topology o;
            lms_topology_init(&o, P, members[i], t.dp, t.tp, t.pp);
            ok &= o.tp_rank == t.tp_rank && o.pp_rank == t.pp_rank && o.dp_rank == i;
        }
        CHECK(ok, "dp group members differ only in the dp coordinate");
        free(members);
        lms_groups_free(&g);
    }
}

/* LMSCALE_FAULT's grammar; the faults themselves: tests/test_faults.sh */
static void test_fault_spec(void) {
    lms_fault f;
    CHECK(lms_fault_parse(NULL, &f) == LMS_OK && f.kind == LMS_FAULT_NONE, "no fault");
    CHECK(lms_fault_parse("hang:rank=1:step=5", &f) == LMS_OK && f.kind == LMS_FAULT_HANG && f.rank == 1 &&
          f.step == 5, "hang spec");
    CHECK(lms_fault_parse("kill:step=2:rank=0", &f) == LMS_OK && f.kind == LMS_FAULT_KILL && f.rank == 0 &&
          f.step == 2, "keys in any order");
    const char *bad[] = {"hang", "exit:rank=1", "boom:rank=1:step=2", "hang:rank=x:step=1", "hang:rank=1:step=0",
                         "hang:rank=1:step=2:when=now", "hang:rank=-1:step=2", "hang:rank=1:step=2:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(lms_fault_parse(bad[i], &f) == LMS_ERR_INVALID_ARG && strstr(lms_last_error(), "LMSCALE_FAULT='"),
              "'%s' refused naming the variable: %s", bad[i], lms_last_error());
}

int main(int argc, char **argv) {
    CHECK(lms_comm_world("auto", &argc, &argv, &W) == LMS_OK, "world: %s", lms_last_error());
    if (!W) return 1;
    /* every operation below runs tracked, under a watchdog that must not fire */
    CHECK(lms_comm_set_timeout(W, 120) == LMS_OK, "watchdog: %s", lms_last_error());
    CHECK(strcmp(W->label, "world") == 0, "the world is labelled");
    test_fault_spec();
    test_collectives();
    test_topology();
    /* every rank's failures count */
    int f = g_failures, total = 0;
    W->i->allreduce(W, &f, &total, 1, LMS_DT_I32, LMS_RED_SUM);
    char name[64];
    snprintf(name, sizeof name, "test_comm (%s, %d ranks)", W->i->name, W->size);
    g_failures = total;
    int rc = W->rank == 0 ? test_summary(name) : (total ? 1 : 0);
    lms_comm_free(W);
    return rc;
}
