/* net_mpi.h - the MPI transport of net.h: "mpi:RANK" addresses.
 *
 * Call net_mpi_init once before any "mpi" address is used and net_mpi_finalize
 * once the loop has stopped; in between, net_connect(loop, cfg, "mpi:0", ...) and
 * net_listen(loop, cfg, "mpi", ...) work like their TCP forms:
 *
 *     if (net_mpi_init(err, sizeof err) != 0) die("%s", err);
 *     net_server *s = net_listen(loop, &cfg, "127.0.0.1:7000,mpi", roles, &h, me, err, sizeof err);
 *     uv_run(loop, UV_RUN_DEFAULT);
 *     net_mpi_finalize(); // peers see every open MPI connection close
 *
 * One progress thread owns MPI (MPI_THREAD_FUNNELED: it calls MPI_Init_thread
 * and every other MPI function). The loop thread hands it outgoing messages
 * through a queue; it posts them with MPI_Isend, polls MPI_Improbe/MPI_Mrecv and
 * MPI_Testsome, and hands received bytes and send completions back through a
 * uv_async_t. Logical connections are multiplexed over one duplicated
 * communicator: each MPI message carries a 16-byte header (type, side,
 * connection id). A write counts in net_queued_bytes until the receiving loop
 * has taken its bytes (an ACK message), so a paused receiver holds the sender
 * back as a TCP window would.
 */
#ifndef BATON_NET_MPI_H
#define BATON_NET_MPI_H

#include <stdbool.h>
#include <stddef.h>

/* Starts MPI (on the progress thread). 0, or -1 with a message. */
int net_mpi_init(char *err, size_t errlen);
bool net_mpi_active(void);
int net_mpi_rank(void); /* -1 before net_mpi_init */
int net_mpi_size(void);
/* Sends a close for every open MPI connection, flushes the sends (at most a few
 * seconds), calls MPI_Finalize and stops the progress thread. Loop thread, after
 * uv_run returned. */
void net_mpi_finalize(void);
/* The rank and size the launcher gives this process (OMPI_COMM_WORLD_*, PMI_*,
 * SLURM_*), without starting MPI; -1 if none is set. */
int net_mpi_env_rank(void);
int net_mpi_env_size(void);
/* NULL in a build with MPI; otherwise why MPI cannot start ("built without MPI
 * (-DBATON_MPI=OFF)", net_mpi_none.c), for --help and messages. */
const char *net_mpi_missing(void);

#endif
