/* Pipeline schedules (src/parallel/pipeline.c), checked by simulating every
 * stage: an operation runs only when its input exists (the forward of
 * virtual stage j after that of j-1, the backward of j after that of j+1
 * and after its own forward); every stage must finish (no deadlock), run
 * each (micro-batch, chunk) forward and backward exactly once, and hold at
 * most the micro-batches the schedule promises (1F1B: p - s; GPipe: m).
 * The simulation steps in lockstep rounds where every stage whose next
 * operation is ready runs it: with equal op times the rounds are the
 * schedule's time, and its bubble is compared with (p-1)/m and
 * (p-1)/(v·m). Also the layer split and its errors. */
#include "check.h"
#include "lmscale/parallel.h"

#include <stdlib.h>

#define MAXOPS 4096

typedef struct {
    int p, m, v;
    int rounds;          /* lockstep rounds to finish (each op one round) */
    int peak[64];        /* most micro-batch chunks in flight per stage */
    int ok;
} sim_result;

static sim_result simulate(lms_pp_schedule sch, int p, int m, int v) {
    sim_result r = {p, m, v, 0, {0}, 1};
    const int nv = p * v, n = 2 * m * v;
    lms_pp_op *ops = calloc((size_t)p * n, sizeof *ops);
    int *next = calloc((size_t)p, sizeof(int)), *inflight = calloc((size_t)p, sizeof(int));
    /* done[dir][mb][j]: round at which it finished (+1), 0 not yet */
    int *done = calloc((size_t)2 * m * nv, sizeof(int));
    for (int s = 0; s < p; s++)
        if (lms_pp_schedule_ops(sch, p, s, m, v, ops + (size_t)s * n) != LMS_OK) r.ok = 0;
    int left = p * n;
    for (int round = 1; r.ok && left > 0; round++) {
        int ran = 0;
        int *fire = calloc((size_t)p, sizeof(int));
        for (int s = 0; s < p; s++) {
            if (next[s] == n) continue;
            const lms_pp_op *op = &ops[(size_t)s * n + next[s]];
            const int j = op->chunk * p + s;
            int ready;
            if (!op->backward)
                ready = j == 0 || (done[(0 * m + op->mb) * nv + j - 1] && done[(0 * m + op->mb) * nv + j - 1] < round);
            else
                ready = done[(0 * m + op->mb) * nv + j] &&
                        (j == nv - 1 || (done[(1 * m + op->mb) * nv + j + 1] && done[(1 * m + op->mb) * nv + j + 1] < round));
            fire[s] = ready;
        }
        for (int s = 0; s < p; s++) {
            if (!fire[s]) continue;
            const lms_pp_op *op = &ops[(size_t)s * n + next[s]];
            const int j = op->chunk * p + s;
            int *d = &done[(op->backward * m + op->mb) * nv + j];
            if (*d) r.ok = 0; /* run twice */
            *d = round;
            inflight[s] += op->backward ? -1 : 1;
            if (inflight[s] > r.peak[s]) r.peak[s] = inflight[s];
            next[s]++;
            left--;
            ran = 1;
        }
        free(fire);
        r.rounds = round;
        if (!ran) r.ok = 0; /* deadlock */
    }
    for (int k = 0; k < 2 * m * nv; k++)
        if (!done[k]) r.ok = 0;
    free(ops);
    free(next);
    free(inflight);
    free(done);
    return r;
}

static void test_schedules(void) {
    const int ps[] = {2, 3, 4, 8}, ms[] = {1, 2, 4, 8, 16};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 5; b++) {
            const int p = ps[a], m = ms[b];
            sim_result g = simulate(LMS_PP_GPIPE, p, m, 1), f = simulate(LMS_PP_1F1B, p, m, 1);
            CHECK(g.ok, "gpipe p=%d m=%d: deadlock or an op missing/repeated", p, m);
            CHECK(f.ok, "1f1b p=%d m=%d: deadlock or an op missing/repeated", p, m);
            for (int s = 0; s < p; s++) {
                CHECK(g.peak[s] == m, "gpipe p=%d m=%d stage %d: peak %d, want m", p, m, s, g.peak[s]);
                const int want = p - s < m ? p - s : m;
                CHECK(f.peak[s] == want, "1f1b p=%d m=%d stage %d: peak %d, want min(p-s, m) = %d", p, m, s, f.peak[s],
                      want);
            }
            /* equal op times: 2(m + p - 1) rounds, a bubble of (p-1)/m (F and B both) */
            CHECK(g.rounds == 2 * (m + p - 1), "gpipe p=%d m=%d: %d rounds, want %d", p, m, g.rounds, 2 * (m + p - 1));
            CHECK(f.rounds == 2 * (m + p - 1), "1f1b p=%d m=%d: %d rounds, want %d", p, m, f.rounds, 2 * (m + p - 1));
        }
    /* interleaved: m a multiple of p */
    const int vs[] = {2, 3, 4};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            const int p = ps[a], v = vs[b];
            for (int k = 1; k <= 3; k++) {
                const int m = k * p;
                sim_result r = simulate(LMS_PP_INTERLEAVED, p, m, v);
                CHECK(r.ok, "interleaved p=%d v=%d m=%d: deadlock or an op missing/repeated", p, v, m);
                /* idle rounds per stage over busy ones: (p-1)/(v·m) in the paper's model, where a chunk's op
                 * takes 1/v of a stage's; each round here is one chunk op */
                const double bubble = (double)(r.rounds - 2 * m * v) / (2 * m * v), want = (p - 1.0) / (v * m);
                CHECK(bubble <= want * 1.0001 + 1e-9, "interleaved p=%d v=%d m=%d: bubble %.4f above (p-1)/(v m) = %.4f",
                      p, v, m, bubble, want);
                CHECK(r.peak[0] <= m * v, "interleaved p=%d v=%d m=%d: peak %d", p, v, m, r.peak[0]);
            }
        }
    lms_pp_op ops[64];
    CHECK(lms_pp_schedule_ops(LMS_PP_INTERLEAVED, 4, 0, 6, 2, ops) == LMS_ERR_INVALID_ARG,
          "interleaved with m not a multiple of p must be refused");
    CHECK(strstr(lms_last_error(), "multiple of --pp 4") != NULL, "%s", lms_last_error());
}

static void test_split(void) {
    int first[17];
    CHECK(lms_pp_split_layers(8, 4, 1, NULL, 0, first) == LMS_OK && first[1] == 2 && first[4] == 8, "even split");
    CHECK(lms_pp_split_layers(7, 2, 1, NULL, 0, first) == LMS_OK && first[1] == 4 && first[2] == 7, "7 over 2");
    CHECK(lms_pp_split_layers(8, 2, 2, NULL, 0, first) == LMS_OK && first[1] == 2 && first[3] == 6, "2 x 2 chunks");
    int given[] = {3, 5};
    CHECK(lms_pp_split_layers(8, 2, 1, given, 2, first) == LMS_OK && first[1] == 3 && first[2] == 8, "3,5");
    CHECK(lms_pp_split_layers(3, 4, 1, NULL, 0, first) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "fewer than --pp 4"),
          "%s", lms_last_error());
    int bad[] = {3, 4};
    CHECK(lms_pp_split_layers(8, 2, 1, bad, 2, first) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "--pp-layers sums to 7"),
          "%s", lms_last_error());
    int zero[] = {0, 8};
    CHECK(lms_pp_split_layers(8, 2, 1, zero, 2, first) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "at least one"),
          "%s", lms_last_error());
    CHECK(lms_pp_split_layers(8, 2, 1, given, 1, first) == LMS_ERR_INVALID_ARG &&
              strstr(lms_last_error(), "gives 1 layer counts"),
          "%s", lms_last_error());
    int n, c[4];
    CHECK(lms_pp_layers_parse("3,5", c, 4, &n) == LMS_OK && n == 2 && c[0] == 3 && c[1] == 5, "parse");
    CHECK(lms_pp_layers_parse("3,x", c, 4, &n) == LMS_ERR_INVALID_ARG, "parse junk");
    lms_pp_schedule s;
    CHECK(lms_pp_schedule_parse("zigzag", &s) == LMS_ERR_INVALID_ARG && strstr(lms_last_error(), "gpipe, 1f1b"),
          "%s", lms_last_error());
    CHECK(lms_pp_schedule_resolve(LMS_PP_GPIPE, 2, &s) == LMS_ERR_INVALID_ARG, "gpipe with virtual stages");
    CHECK(lms_pp_schedule_resolve(LMS_PP_1F1B, 2, &s) == LMS_OK && s == LMS_PP_INTERLEAVED, "1f1b + V = interleaved");
}

int main(void) {
    test_schedules();
    test_split();
    return test_summary("pipeline");
}
