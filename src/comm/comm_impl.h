/* Internal to the comm module: backend constructors, the collective
 * watchdog (watchdog.c) and fault injection (fault.c). */
#ifndef LMS_COMM_IMPL_H
#define LMS_COMM_IMPL_H

#include "lmscale/comm.h"

lms_status lms_comm_single_new(lms_comm **out);
lms_status lms_comm_mpi_world(int *argc, char ***argv, lms_comm **out);

/* ---- the collective watchdog (one per process) ----
 * A backend tracks each operation that can block in one pending-operation
 * slot: begin before the call, end after it. Calls come from one thread (MPI
 * is initialised FUNNELED), so the slot needs no lock: it is a seqlock of
 * relaxed atomics that the watchdog thread reads. The thread wakes every
 * timeout/10 (0.05 to 1 s); when the pending operation is older than the
 * timeout it writes one line to stderr and calls abort_job, which must end
 * every process of the job and not return (if it hangs, SIGALRM ends this
 * process 10 s later, and the launcher the job). */
typedef struct lms_watchdog lms_watchdog;
/* op: the name given to begin (so a backend can tell its finalize from
 * operations where aborting through the library is still allowed). */
typedef void (*lms_watchdog_abort_fn)(const char *op, int code);

lms_status lms_watchdog_new(int rank, int world, lms_watchdog_abort_fn abort_job, lms_watchdog **out);
/* seconds > 0: start the thread (or retime it); 0: stop it. */
lms_status lms_watchdog_set_timeout(lms_watchdog *w, double seconds);
/* Stops and joins the thread; NULL is a no-op. */
void lms_watchdog_free(lms_watchdog *w);
void lms_watchdog_mark_step(lms_watchdog *w, int step);
/* The hot path (a clock read and a few atomic stores). op and group must be
 * strings with static lifetime; seq numbers the operation on its
 * communicator; peer is the other rank of a send/recv, else -1. */
void lms_watchdog_begin(lms_watchdog *w, const char *op, const char *group, int group_size, uint64_t seq,
                        size_t bytes, int peer);
void lms_watchdog_end(lms_watchdog *w);

/* ---- fault injection (LMSCALE_FAULT, a testing aid) ---- */
typedef enum { LMS_FAULT_NONE = 0, LMS_FAULT_HANG, LMS_FAULT_EXIT, LMS_FAULT_KILL, LMS_FAULT_INF, LMS_FAULT_NAN } lms_fault_kind;
typedef struct {
    lms_fault_kind kind;
    int rank, step;
} lms_fault;
/* "KIND:rank=R:step=S" (KIND hang, exit or kill); NULL or "" is no fault.
 * Errors name the variable and the expected form. */
lms_status lms_fault_parse(const char *spec, lms_fault *f);
/* Fires the fault of LMSCALE_FAULT if it is for (rank, step). */
void lms_fault_point(int rank, int step);

#endif
