/* Pipeline schedules and the split of the layers into stages (parallel.h):
 * pure functions of (schedule, p, stage, m, v), so every stage derives its
 * own order and the tests can check them without running a model. */
#include "lmscale/parallel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *NAMES[] = {"gpipe", "1f1b", "interleaved"};

lms_status lms_pp_schedule_parse(const char *s, lms_pp_schedule *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, NAMES[i]) == 0) {
            *out = (lms_pp_schedule)i;
            return LMS_OK;
        }
    return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-schedule '%s' is not known (choose gpipe, 1f1b or interleaved)", s);
}

const char *lms_pp_schedule_name(lms_pp_schedule s) { return (unsigned)s < 3 ? NAMES[s] : "?"; }

lms_status lms_pp_schedule_resolve(lms_pp_schedule asked, int v, lms_pp_schedule *out) {
    if (v > 1 && asked == LMS_PP_GPIPE)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--virtual-stages %d needs the interleaved schedule, not "
                          "--pp-schedule gpipe (use --pp-schedule interleaved)", v);
    if (v < 2 && asked == LMS_PP_INTERLEAVED)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-schedule interleaved needs --virtual-stages 2 or more");
    *out = v > 1 ? LMS_PP_INTERLEAVED : asked;
    return LMS_OK;
}

/* Interleaved: the k-th forward (or backward) of a stage is micro-batch
 * (k / (p·v))·p + k mod p of chunk (k mod (p·v)) / p, the chunks of a
 * backward in reverse (Megatron-LM's order). */
static lms_pp_op interleaved_op(int k, int p, int v, int backward) {
    lms_pp_op op = {backward, (k / (p * v)) * p + k % p, (k % (p * v)) / p};
    if (backward) op.chunk = v - 1 - op.chunk;
    return op;
}

lms_status lms_pp_schedule_ops(lms_pp_schedule sched, int p, int stage, int m, int v, lms_pp_op *ops) {
    LMS_ASSERT(p >= 1 && stage >= 0 && stage < p && m >= 1 && v >= 1);
    int n = 0;
    if (sched == LMS_PP_GPIPE || sched == LMS_PP_1F1B) {
        if (v != 1) return lms_errorf(LMS_ERR_INVALID_ARG, "--virtual-stages %d needs --pp-schedule interleaved", v);
        int warm = sched == LMS_PP_GPIPE ? m : p - stage - 1 < m ? p - stage - 1 : m;
        int f = 0, b = 0;
        for (; f < warm; f++) ops[n++] = (lms_pp_op){0, f, 0};
        while (f < m) {
            ops[n++] = (lms_pp_op){0, f++, 0};
            ops[n++] = (lms_pp_op){1, b++, 0};
        }
        while (b < m) ops[n++] = (lms_pp_op){1, b++, 0};
        return LMS_OK;
    }
    if (m % p != 0)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the interleaved schedule needs the %d micro-batches per step to be "
                          "a multiple of --pp %d (change --batch-size or --micro-batch-size)", m, p);
    const int total = m * v;
    int warm = m == p ? total : (p - stage - 1) * 2 + (v - 1) * p;
    if (warm > total) warm = total;
    int f = 0, b = 0;
    for (; f < warm; f++) ops[n++] = interleaved_op(f, p, v, 0);
    while (f < total) {
        ops[n++] = interleaved_op(f++, p, v, 0);
        ops[n++] = interleaved_op(b++, p, v, 1);
    }
    while (b < total) ops[n++] = interleaved_op(b++, p, v, 1);
    return LMS_OK;
}

lms_status lms_pp_split_layers(int L, int p, int v, const int *given, int n, int *first) {
    const int chunks = p * v;
    if (L < chunks)
        return lms_errorf(LMS_ERR_INVALID_ARG, "the model's %d layers are fewer than --pp %d x --virtual-stages %d "
                          "= %d pipeline chunks: every chunk needs at least one layer (lower --pp or "
                          "--virtual-stages, or raise --num-layers)", L, p, v, chunks);
    first[0] = 0;
    if (!given) {
        for (int j = 0; j < chunks; j++) first[j + 1] = first[j] + L / chunks + (j < L % chunks);
        return LMS_OK;
    }
    if (v != 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers sets one count per stage: it cannot be combined with "
                          "--virtual-stages %d (drop one of them)", v);
    if (n != p)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers gives %d layer counts for --pp %d stages: give "
                          "exactly %d, comma separated", n, p, p);
    for (int j = 0; j < p; j++) {
        if (given[j] < 1)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers: stage %d has %d layers; every stage needs at "
                              "least one", j, given[j]);
        first[j + 1] = first[j] + given[j];
    }
    if (first[p] != L)
        return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers sums to %d layers but the model has %d: make the "
                          "counts add up to %d", first[p], L, L);
    return LMS_OK;
}

int lms_pp_unit_owner(const int *first, int L, int p, int v, int unit) {
    if (unit == 0) return 0;
    if (unit == L + 1) return p - 1;
    for (int j = 0; j < p * v; j++)
        if (unit - 1 < first[j + 1]) return j % p;
    return p - 1;
}

lms_status lms_pp_layers_parse(const char *s, int *counts, int cap, int *n) {
    *n = 0;
    const char *q = s;
    while (*q) {
        char *end;
        errno = 0;
        long x = strtol(q, &end, 10);
        if (end == q || errno || x < -1000000 || x > 1000000 || (*end && *end != ','))
            return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers '%s': want layer counts per stage, comma separated "
                              "(e.g. 3,5)", s);
        if (*n == cap)
            return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers '%s': more than %d counts", s, cap);
        counts[(*n)++] = (int)x;
        q = *end ? end + 1 : end;
    }
    if (*n == 0) return lms_errorf(LMS_ERR_INVALID_ARG, "--pp-layers is empty: give layer counts per stage (e.g. 3,5)");
    return LMS_OK;
}
