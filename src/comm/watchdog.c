/* The collective watchdog: a thread that aborts the job when a tracked
 * communication operation has been pending longer than the timeout, so that
 * a rank that died or hung does not leave the others waiting forever
 * (docs/parallelism.md, "Faults and timeouts"). Backend independent: the
 * backend tracks its calls and says how to abort the job. */
#include "comm_impl.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct lms_watchdog {
    int rank, world;
    lms_watchdog_abort_fn abort_job;
    /* the pending-operation slot: one writer (the thread that communicates),
     * one reader (the watchdog); a seqlock, ver odd while being written */
    _Atomic uint64_t ver;
    _Atomic int active, group_size, peer, step;
    _Atomic(const char *) op;
    _Atomic(const char *) group;
    _Atomic uint64_t seq;
    _Atomic size_t bytes;
    _Atomic double t0;
    /* the thread; stop and timeout under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    double timeout;
};

typedef struct {
    int active, group_size, peer, step;
    const char *op, *group;
    uint64_t seq;
    size_t bytes;
    double t0;
} slot;

#define RLX memory_order_relaxed

lms_status lms_watchdog_new(int rank, int world, lms_watchdog_abort_fn abort_job, lms_watchdog **out) {
    lms_watchdog *w = calloc(1, sizeof *w);
    if (!w) return lms_errorf(LMS_ERR_OOM, "out of memory for the collective watchdog");
    w->rank = rank;
    w->world = world;
    w->abort_job = abort_job;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return LMS_OK;
}

void lms_watchdog_begin(lms_watchdog *w, const char *op, const char *group, int group_size, uint64_t seq,
                        size_t bytes, int peer) {
    if (!w) return;
    uint64_t v = atomic_load_explicit(&w->ver, RLX);
    atomic_store_explicit(&w->ver, v + 1, RLX);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&w->op, op, RLX);
    atomic_store_explicit(&w->group, group, RLX);
    atomic_store_explicit(&w->group_size, group_size, RLX);
    atomic_store_explicit(&w->seq, seq, RLX);
    atomic_store_explicit(&w->bytes, bytes, RLX);
    atomic_store_explicit(&w->peer, peer, RLX);
    atomic_store_explicit(&w->t0, lms_now_s(), RLX);
    atomic_store_explicit(&w->active, 1, RLX);
    atomic_store_explicit(&w->ver, v + 2, memory_order_release);
}

void lms_watchdog_end(lms_watchdog *w) {
    if (!w) return;
    uint64_t v = atomic_load_explicit(&w->ver, RLX);
    atomic_store_explicit(&w->ver, v + 1, RLX);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&w->active, 0, RLX);
    atomic_store_explicit(&w->ver, v + 2, memory_order_release);
}

void lms_watchdog_mark_step(lms_watchdog *w, int step) {
    if (w) atomic_store_explicit(&w->step, step, RLX);
}

/* A consistent copy of the slot; 0 if the writer kept changing it. */
static int snapshot(lms_watchdog *w, slot *s) {
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t v1 = atomic_load_explicit(&w->ver, memory_order_acquire);
        if (v1 & 1) continue;
        s->active = atomic_load_explicit(&w->active, RLX);
        s->op = atomic_load_explicit(&w->op, RLX);
        s->group = atomic_load_explicit(&w->group, RLX);
        s->group_size = atomic_load_explicit(&w->group_size, RLX);
        s->seq = atomic_load_explicit(&w->seq, RLX);
        s->bytes = atomic_load_explicit(&w->bytes, RLX);
        s->peer = atomic_load_explicit(&w->peer, RLX);
        s->t0 = atomic_load_explicit(&w->t0, RLX);
        s->step = atomic_load_explicit(&w->step, RLX);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&w->ver, RLX) == v1) return 1;
    }
    return 0;
}

static void fmt_bytes(char *buf, size_t cap, size_t b) {
    if (b >= 1048576) snprintf(buf, cap, "%.1f MB, ", b / 1048576.0);
    else if (b >= 1024) snprintf(buf, cap, "%.1f KB, ", b / 1024.0);
    else if (b > 0) snprintf(buf, cap, "%zu B, ", b);
    else buf[0] = 0;
}

/* Says what is pending, then ends the job. Does not return. */
static void fire(lms_watchdog *w, const slot *s, double waited) {
    char size[32], peer[40] = "", step[32] = "", msg[768];
    fmt_bytes(size, sizeof size, s->bytes);
    if (s->peer >= 0)
        snprintf(peer, sizeof peer, " %s rank %d", strstr(s->op, "send") ? "to" : "from", s->peer);
    if (s->step > 0) snprintf(step, sizeof step, " in step %d", s->step);
    int n = snprintf(msg, sizeof msg, "lmscale: error: [rank %d of %d] %s #%llu%s (%s%s of %d rank%s)%s has not "
                     "completed after %.1f s: another rank has died or hung; aborting the job (raise "
                     "--comm-timeout or LMSCALE_COMM_TIMEOUT if a rank can legitimately take this long)\n",
                     w->rank, w->world, s->op, (unsigned long long)s->seq, peer, size,
                     s->group ? s->group : "communicator", s->group_size, s->group_size == 1 ? "" : "s", step,
                     waited);
    if (n > (int)sizeof msg - 1) n = (int)sizeof msg - 1;
    fflush(stdout);
    ssize_t wr = write(STDERR_FILENO, msg, (size_t)n); /* one write: one unbroken line */
    (void)wr;
    alarm(10); /* if aborting through the library hangs, SIGALRM ends this process */
    w->abort_job(s->op, LMS_COMM_TIMEOUT_EXIT);
    _exit(LMS_COMM_TIMEOUT_EXIT);
}

static void *watch(void *arg) {
    lms_watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        double period = w->timeout / 10;
        period = period < 0.05 ? 0.05 : period > 1.0 ? 1.0 : period;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(period * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->stop) break;
        double timeout = w->timeout;
        pthread_mutex_unlock(&w->mu);
        slot s;
        if (snapshot(w, &s) && s.active) {
            double waited = lms_now_s() - s.t0;
            if (waited > timeout) fire(w, &s, waited);
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void stop_thread(lms_watchdog *w) {
    if (!w->running) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    w->running = 0;
    w->stop = 0;
}

lms_status lms_watchdog_set_timeout(lms_watchdog *w, double seconds) {
    if (seconds <= 0) {
        stop_thread(w);
        w->timeout = 0;
        return LMS_OK;
    }
    pthread_mutex_lock(&w->mu);
    w->timeout = seconds;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->running) return LMS_OK;
    /* signals go to the other threads: the watchdog only sleeps and checks */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return lms_errorf(LMS_ERR_INTERNAL, "cannot start the collective watchdog thread: %s (run with "
                          "--comm-timeout 0 to go without it)", strerror(rc));
    w->running = 1;
    return LMS_OK;
}

void lms_watchdog_free(lms_watchdog *w) {
    if (!w) return;
    stop_thread(w);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
