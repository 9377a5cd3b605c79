/* The world communicator, backend choice and dtype sizes. */
#include "comm_impl.h"

#include <stdlib.h>
#include <string.h>

size_t lms_dtype_size(lms_dtype t) {
    switch (t) {
    case LMS_DT_F32: return 4;
    case LMS_DT_F64: return 8;
    case LMS_DT_I32: return 4;
    case LMS_DT_I64: return 8;
    case LMS_DT_U8: return 1;
    }
    return 0;
}

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
    if (!backend || strcmp(backend, "auto") == 0)
        backend = lms_comm_have_mpi() && launched_by_mpi() ? "mpi" : "single";
    if (strcmp(backend, "single") == 0) return lms_comm_single_new(out);
    if (strcmp(backend, "mpi") == 0) {
        if (!lms_comm_have_mpi())
            return lms_errorf(LMS_ERR_UNSUPPORTED, "--comm mpi: this lmscale was built without MPI "
                              "(install libopenmpi-dev or libmpich-dev and rebuild)");
        return lms_comm_mpi_world(argc, argv, out);
    }
    return lms_errorf(LMS_ERR_INVALID_ARG, "--comm '%s' is not known (choose auto, single or mpi)", backend);
}

void lms_comm_free(lms_comm *c) {
    if (c) c->i->free(c);
}

