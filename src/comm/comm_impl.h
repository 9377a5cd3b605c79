/* Internal to the comm module: backend constructors. */
#ifndef LMS_COMM_IMPL_H
#define LMS_COMM_IMPL_H

#include "lmscale/comm.h"

lms_status lms_comm_single_new(lms_comm **out);
lms_status lms_comm_mpi_world(int *argc, char ***argv, lms_comm **out);

#endif
