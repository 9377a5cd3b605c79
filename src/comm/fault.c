/* Fault injection for tests (LMSCALE_FAULT): make one rank hang, exit or be
 * killed before a given training step, to check that the others do not wait
 * forever and that the last checkpoint stays loadable (tests/test_faults.sh,
 * docs/parallelism.md). Read through lms_env, parsed at every step marker:
 * a getenv when unset. */
#include "comm_impl.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FORM "KIND:rank=R:step=S, KIND one of hang, exit, kill, inf, nan"

static int parse_int(const char *s, size_t n, int *out) {
    char buf[24], *end;
    if (n == 0 || n >= sizeof buf) return 0;
    memcpy(buf, s, n);
    buf[n] = 0;
    long v = strtol(buf, &end, 10);
    if (*end || v < 0 || v > 1000000000L) return 0;
    *out = (int)v;
    return 1;
}

lms_status lms_fault_parse(const char *spec, lms_fault *f) {
    memset(f, 0, sizeof *f);
    f->rank = f->step = -1;
    if (!spec || !*spec) return LMS_OK;
    const char *p = spec, *colon = strchr(p, ':');
    size_t klen = colon ? (size_t)(colon - p) : strlen(p);
    if (klen == 4 && strncmp(p, "hang", 4) == 0) f->kind = LMS_FAULT_HANG;
    else if (klen == 4 && strncmp(p, "exit", 4) == 0) f->kind = LMS_FAULT_EXIT;
    else if (klen == 4 && strncmp(p, "kill", 4) == 0) f->kind = LMS_FAULT_KILL;
    else if (klen == 3 && strncmp(p, "inf", 3) == 0) f->kind = LMS_FAULT_INF;
    else if (klen == 3 && strncmp(p, "nan", 3) == 0) f->kind = LMS_FAULT_NAN;
    else
        return lms_errorf(LMS_ERR_INVALID_ARG, "LMSCALE_FAULT='%s': unknown fault '%.*s' (expected " FORM
                          "; a testing aid, see docs/parallelism.md)", spec, (int)klen, p);
    while (colon) {
        p = colon + 1;
        colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        int *dst = NULL;
        if (eq && eq - p == 4 && strncmp(p, "rank", 4) == 0) dst = &f->rank;
        else if (eq && eq - p == 4 && strncmp(p, "step", 4) == 0) dst = &f->step;
        if (!dst || !parse_int(eq + 1, len - (size_t)(eq + 1 - p), dst))
            return lms_errorf(LMS_ERR_INVALID_ARG, "LMSCALE_FAULT='%s': '%.*s' is not rank=R or step=S with a "
                              "number (expected " FORM ")", spec, (int)len, p);
    }
    if (f->rank < 0 || f->step < 1)
        return lms_errorf(LMS_ERR_INVALID_ARG, "LMSCALE_FAULT='%s': give both rank=R and step=S (S >= 1), as in "
                          "'%s:rank=1:step=5'", spec, f->kind == LMS_FAULT_HANG ? "hang"
                                                          : f->kind == LMS_FAULT_EXIT ? "exit"
                                                          : f->kind == LMS_FAULT_KILL ? "kill"
                                                          : f->kind == LMS_FAULT_INF ? "inf" : "nan");
    return LMS_OK;
}

void lms_fault_point(int rank, int step) {
    const char *spec = lms_env("LMSCALE_FAULT");
    if (!spec) return;
    lms_fault f;
    if (lms_fault_parse(spec, &f) != LMS_OK || f.kind == LMS_FAULT_NONE || f.kind >= LMS_FAULT_INF ||
        f.rank != rank || f.step != step)
        return; /* a malformed spec was refused when the world communicator was made; inf/nan: the trainer's */
    const char *what = f.kind == LMS_FAULT_HANG ? "hangs (sleeps forever)"
                       : f.kind == LMS_FAULT_EXIT ? "exits with status 3"
                                                  : "kills itself (SIGKILL)";
    fflush(stdout);
    fprintf(stderr, "lmscale: fault injection (LMSCALE_FAULT=%s): rank %d %s before step %d\n", spec, rank, what,
            step);
    fflush(stderr);
    switch (f.kind) {
    case LMS_FAULT_HANG:
        for (;;) pause();
    case LMS_FAULT_EXIT: _exit(3); /* as a crash: no MPI_Finalize, no cleanup */
    case LMS_FAULT_KILL: raise(SIGKILL); break;
    default: break;
    }
}

float lms_comm_fault_grad(int rank, int step) {
    const char *spec = lms_env("LMSCALE_FAULT");
    lms_fault f;
    if (!spec || lms_fault_parse(spec, &f) != LMS_OK || f.rank != rank || f.step != step) return 0.0f;
    if (f.kind != LMS_FAULT_INF && f.kind != LMS_FAULT_NAN) return 0.0f;
    fprintf(stderr, "lmscale: fault injection (LMSCALE_FAULT=%s): rank %d puts %s into its gradients in step %d\n",
            spec, rank, f.kind == LMS_FAULT_INF ? "inf" : "NaN", step);
    return f.kind == LMS_FAULT_INF ? INFINITY : NAN;
}
