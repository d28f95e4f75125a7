/* net_mpi_env.c - the rank and size an MPI launcher gives this process (see
 * net_mpi.h), read from the environment: no MPI call, so it is built with and
 * without MPI (baton-mpi uses it either way). */
#include <stdlib.h>

#include "net_mpi.h"

static int env_int(const char *const *names) {
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v) return atoi(v);
    }
    return -1;
}

int net_mpi_env_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    return env_int(names);
}

int net_mpi_env_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", NULL};
    return env_int(names);
}
