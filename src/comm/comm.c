/* The world communicator, backend choice, and the
 * backend-independent half of faults and timeouts: the timeout's
 * resolution (flag, LMSCALE_COMM_TIMEOUT, default) and the step marker. */
#include "comm_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

/* Was this process started by a launcher that expects MPI (mpirun of Open
 * MPI or MPICH, srun)? */
static int launched_by_mpi(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (lms_env(vars[i])) return 1;
    const char *n = lms_env("SLURM_NTASKS");
    return n && atoi(n) > 1 && lms_env("SLURM_PROCID") != NULL;
}

lms_status lms_comm_world(const char *backend, int *argc, char ***argv, lms_comm **out) {
    *out = NULL;
    lms_fault f; /* refuse a malformed LMSCALE_FAULT before anything starts */
    LMS_CHECK(lms_fault_parse(lms_env("LMSCALE_FAULT"), &f));
    if (!backend || strcmp(backend, "auto") == 0)
        backend = lms_comm_have_mpi() && launched_by_mpi() ? "mpi" : "single";
    if (strcmp(backend, "single") == 0) {
        LMS_CHECK(lms_comm_single_new(out));
    } else if (strcmp(backend, "mpi") == 0) {
        if (!lms_comm_have_mpi())
            return lms_errorf(LMS_ERR_UNSUPPORTED, "--comm mpi: this lmscale was built without MPI "
                              "(install libopenmpi-dev or libmpich-dev and rebuild)");
        LMS_CHECK(lms_comm_mpi_world(argc, argv, out));
    } else {
        return lms_errorf(LMS_ERR_INVALID_ARG, "--comm '%s' is not known (choose auto, single or mpi)", backend);
    }
    (*out)->label = "world";
    return LMS_OK;
}

lms_status lms_comm_set_timeout(lms_comm *world, double seconds) {
    const char *from = "--comm-timeout";
    if (seconds < 0) {
        const char *env = lms_env("LMSCALE_COMM_TIMEOUT");
        seconds = LMS_COMM_TIMEOUT_DEFAULT;
        if (env) {
            char *end;
            seconds = strtod(env, &end);
            from = "LMSCALE_COMM_TIMEOUT";
            if (end == env || *end || !(seconds >= 0))
                return lms_errorf(LMS_ERR_INVALID_ARG, "LMSCALE_COMM_TIMEOUT='%s' is not a number of seconds "
                                  "(e.g. 600; 0 turns the collective watchdog off)", env);
        }
    }
    if (!isfinite(seconds) || seconds > 1e7)
        return lms_errorf(LMS_ERR_INVALID_ARG, "%s %g is not a usable number of seconds (0 turns the collective "
                          "watchdog off)", from, seconds);
    return world->i->set_timeout ? world->i->set_timeout(world, seconds) : LMS_OK;
}

void lms_comm_mark_step(lms_comm *world, int step) {
    if (world->i->mark_step) world->i->mark_step(world, step);
    lms_fault_point(world->rank, step);
}

void lms_comm_free(lms_comm *c) {
    if (c) c->i->free(c);
}

/* Room in /dev/shm (where Open MPI and MPICH put shared windows' backing
 * files) for `bytes` more, with 64 MiB to spare. */
static int shm_room(uint64_t bytes) {
    struct statvfs v;
    if (statvfs("/dev/shm", &v) != 0) return 0;
    return (uint64_t)v.f_bavail * v.f_frsize >= bytes + (64u << 20);
}

lms_status lms_comm_shm_alloc(lms_comm *c, size_t bytes, lms_comm_shm **out) {
    *out = NULL;
    if (c->size == 1 || !c->i->shm_alloc) return LMS_OK;
    double total = (double)bytes, ok;
    LMS_CHECK(c->i->allreduce(c, &total, &total, 1, LMS_DT_F64, LMS_RED_SUM));
    ok = shm_room((uint64_t)total);
    LMS_CHECK(c->i->allreduce(c, &ok, &ok, 1, LMS_DT_F64, LMS_RED_MIN)); /* all or none */
    if (ok == 0) return LMS_OK;
    return c->i->shm_alloc(c, bytes, out);
}

void lms_comm_shm_free(lms_comm *c, lms_comm_shm *shm) {
    if (shm) c->i->shm_free(c, shm);
}
