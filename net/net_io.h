/* net_io.h - the byte transport under a net_conn (internal to net/net*.c).
 *
 * net.c does framing, the hello, queue accounting and pause; a transport only
 * moves bytes. Each connection has one net_io_ops table: TCP (net.c, a libuv
 * stream) or MPI (net_mpi.c). A transport reports back through the net_io_*
 * functions below, on the loop thread only:
 *
 *     c = net_io_accept(server, &my_ops, my_state, "mpi:3"); // an incoming connection
 *     net_io_connected(c);            // an outgoing connection is up: reading starts, hello goes out
 *     net_io_feed(c, bytes, n);       // bytes arrived (only while reading is on)
 *     net_io_write_done(w, 0);        // a write the transport took has been delivered
 *     net_io_fail(c, "peer closed");  // the connection is gone
 */
#ifndef BATON_NET_IO_H
#define BATON_NET_IO_H

#include "net.h"

/* One queued write: the frame bytes, with 16 bytes of room before them for a
 * transport header (MPI sends io_head and bytes as one message). */
typedef struct net_write {
    uv_write_t req;          /* TCP */
    net_conn *c;             /* NULL once the connection is gone (MPI: waits for its send to finish) */
    size_t len;              /* bytes[] length */
    struct net_write *next;  /* MPI: the connection's queue of unacknowledged writes */
    bool sent;               /* MPI: the send completed locally */
    uint8_t io_head[16];
    uint8_t bytes[];
} net_write;

typedef struct net_io_ops {
    void (*read_start)(net_conn *c);
    void (*read_stop)(net_conn *c);
    /* Takes w (w->c, w->len, w->bytes set); net_io_write_done(w, status) follows. 0 or -1. */
    int (*write)(net_conn *c, net_write *w);
    /* The connection closes now: release transport state; pending writes are dropped. */
    void (*close)(net_conn *c);
} net_io_ops;

/* Sets the transport of a connection net_connect just made. */
void net_io_set(net_conn *c, const net_io_ops *io, void *state);
void *net_io_state(const net_conn *c);
/* A new incoming connection on s, with its transport; reading starts. NULL if out of memory. */
net_conn *net_io_accept(net_server *s, const net_io_ops *io, void *state, const char *peer_addr);
void net_io_connected(net_conn *c);
void net_io_feed(net_conn *c, const uint8_t *bytes, size_t n);
/* Completes w: frees it and updates the queue (on_drain, close after flush). */
void net_io_write_done(net_write *w, int status);
void net_io_fail(net_conn *c, const char *why);
bool net_io_closing(const net_conn *c);
/* net_close waits for the queued writes: incoming bytes are no longer wanted. */
bool net_io_flushing(const net_conn *c);
uv_loop_t *net_server_loop(const net_server *s);

/* net_mpi.c: "mpi:RANK" addresses. */
int net_mpi_connect(net_conn *c, uv_loop_t *loop, const char *addr, char *err, size_t errlen);
/* Accept MPI connections on s ("mpi" or "mpi:OWN_RANK"). 0 or -1 with a message. */
int net_mpi_listen(net_server *s, const char *addr, char *err, size_t errlen);
void net_mpi_unlisten(net_server *s);

#endif
