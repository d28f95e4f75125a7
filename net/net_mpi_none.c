/* net_mpi_none.c - net_mpi.c's stand-in in a build without MPI (-DBATON_MPI=OFF):
 * starting MPI fails with a message saying so, and "mpi" addresses are refused
 * with the same message. net/CMakeLists.txt compiles one of the two. */
#include <stdio.h>

#include "net_io.h"
#include "net_mpi.h"

#define NO_MPI "built without MPI (-DBATON_MPI=OFF)"

const char *net_mpi_missing(void) { return NO_MPI; }

int net_mpi_init(char *err, size_t errlen) {
    snprintf(err, errlen, "%s", NO_MPI);
    return -1;
}

bool net_mpi_active(void) { return false; }
int net_mpi_rank(void) { return -1; }
int net_mpi_size(void) { return 0; }
void net_mpi_finalize(void) {}

int net_mpi_connect(net_conn *c, uv_loop_t *loop, const char *addr, char *err, size_t errlen) {
    (void)c, (void)loop;
    snprintf(err, errlen, "cannot connect to '%s': %s", addr, NO_MPI);
    return -1;
}

int net_mpi_listen(net_server *s, const char *addr, char *err, size_t errlen) {
    (void)s;
    snprintf(err, errlen, "cannot listen on '%s': %s", addr, NO_MPI);
    return -1;
}

void net_mpi_unlisten(net_server *s) { (void)s; }
