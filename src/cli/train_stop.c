/* Stopping a training run early, on request: SIGINT, SIGTERM or SIGUSR1
 * (the first one), or --exit-duration-mins. The loop finishes the step it is
 * in, every rank agrees to stop after the same step (one all-reduce MAX of a
 * "stop requested" word per step), the run saves a checkpoint when --save is
 * set and exits with TRAIN_EXIT_STOPPED (docs/checkpoints.md). A second
 * signal exits at once with 128 + the signal number.
 *
 * A signal handler can reach nothing but globals: g_stop_signal (written by
 * the handler, read by train_stop_poll) and the handlers it replaced are the
 * mutable globals of lmscale (STYLE 6 has this one exception). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop_signal; /* the first signal, 0 when none */

static void on_signal(int sig) {
    if (g_stop_signal) { /* the second one: leave now, nothing more to save */
        static const char msg[] = "\nlmscale train: second signal: exiting at once (no checkpoint of this step)\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    g_stop_signal = sig;
}

#define NSIG_STOP 3
static const int k_signals[NSIG_STOP] = {SIGINT, SIGTERM, SIGUSR1};
static struct sigaction g_old[NSIG_STOP]; /* restored by train_stop_restore */

void train_stop_install(train_stop *s, float exit_duration_mins, double t_start) {
    memset(s, 0, sizeof *s);
    s->t_start = t_start;
    s->limit_s = exit_duration_mins > 0 ? 60.0 * exit_duration_mins : 0;
    g_stop_signal = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* file writes and MPI's system calls resume */
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < NSIG_STOP; i++) sigaction(k_signals[i], &sa, &g_old[i]);
    s->installed = 1;
}

void train_stop_restore(train_stop *s) {
    if (!s->installed) return;
    for (int i = 0; i < NSIG_STOP; i++) sigaction(k_signals[i], &g_old[i], NULL);
    s->installed = 0;
    g_stop_signal = 0;
}

lms_status train_stop_poll(train_stop *s, lms_comm *world) {
    /* 0: go on; 1: the time limit; 1000 + signal: a signal (MAX prefers it) */
    int64_t want = g_stop_signal ? 1000 + g_stop_signal : 0, all = 0;
    if (!want && s->limit_s > 0 && lms_now_s() - s->t_start >= s->limit_s) want = 1;
    if (world && world->size > 1)
        LMS_CHECK(world->i->allreduce(world, &want, &all, 1, LMS_DT_I64, LMS_RED_MAX));
    else
        all = want;
    s->reason = (int)all;
    return LMS_OK;
}

const char *train_stop_reason(const train_stop *s, char *buf, size_t cap) {
    if (s->reason == 1)
        snprintf(buf, cap, "--exit-duration-mins %g reached", s->limit_s / 60.0);
    else if (s->reason > 1000)
        snprintf(buf, cap, "%s", s->reason - 1000 == SIGINT    ? "SIGINT"
                                 : s->reason - 1000 == SIGTERM ? "SIGTERM"
                                 : s->reason - 1000 == SIGUSR1 ? "SIGUSR1"
                                                               : "a signal");
    else
        snprintf(buf, cap, "nothing");
    return buf;
}
