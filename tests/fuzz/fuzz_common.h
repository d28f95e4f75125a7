/* fuzz_common.h - what the libFuzzer targets of tests/fuzz share.
 *
 * A memory transport for net_conn (net_io.h): the daemons' handlers are fed the
 * fuzzer's bytes through net_io_feed, the very function a socket's read callback
 * calls, on a connection accepted by the daemon's own listener. What the daemon
 * writes is counted and dropped. The handshake (hello, proof) is played first
 * so that the input reaches the frame handlers of the role chosen.
 *
 *     fuzz_conn *m = fuzz_conn_open(server, BATON__ROLE__ROLE_CLIENT, "fuzz");
 *     fuzz_conn_feed(m, data, size);     // frames as a peer would send them
 *     fuzz_conn_close(m, loop);          // closes it and runs the loop until it is freed
 */
#ifndef BATON_FUZZ_COMMON_H
#define BATON_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net.h"

/* The tiny model the daemon targets load: $BATON_FUZZ_MODEL, else the one the
 * fuzz build made (build/fuzz/fuzz-tiny.gguf, FUZZ_MODEL_PATH). */
const char *fuzz_model_path(void);

typedef struct fuzz_conn fuzz_conn;
/* Accepts a memory connection on s and plays its handshake as a peer of role
 * `role` with cluster id `cluster_id` (no credentials). */
fuzz_conn *fuzz_conn_open(net_server *s, uint32_t role, const char *cluster_id);
/* Feeds bytes as if they had arrived on the socket, then completes the writes
 * the daemon queued meanwhile. Returns 1 while the connection is still open. */
int fuzz_conn_feed(fuzz_conn *m, const uint8_t *data, size_t n);
/* The connection, NULL once net closed it. */
net_conn *fuzz_conn_net(const fuzz_conn *m);
/* Closes the connection (if still open), runs the loop until it is freed, frees m. */
void fuzz_conn_close(fuzz_conn *m, uv_loop_t *loop);
/* Runs the loop without blocking a few times (timers due, closes, pool jobs done). */
void fuzz_loop_spin(uv_loop_t *loop, int rounds);
/* Bytes the daemon wrote on memory connections so far. */
uint64_t fuzz_bytes_written(void);

/* Appends one frame (header + message + payload) to buf (must have room). */
size_t fuzz_put_frame(uint8_t *buf, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg,
                      const void *payload, size_t payload_len);

#endif
