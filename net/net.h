/* net.h - Baton connections over TCP or MPI on a libuv loop.
 *
 * A net_conn is one connection carrying frames (proto/frame.h): TCP for a
 * "HOST:PORT" address, MPI for "mpi:RANK" (after net_mpi_init, net_mpi.h);
 * everything below works the same over both. Every connection opens with a
 * hello both ways (protocol version, role, cluster id, a fresh nonce), then the
 * connecting side sends its proofs (AuthProof) and the accepting side answers
 * AuthOk: the credentials in net_config (auth.h) decide what must be proved. The
 * side that finds a mismatch or a bad proof sends a status naming it
 * (UNAUTHENTICATED for credentials) and closes, and the other side logs that
 * message. Only after AuthOk does on_open run; only then are other frames
 * delivered to on_frame, and any other frame before it closes the connection.
 * Frames before that point may be at most NET_HANDSHAKE_MAX_FRAME, and it must
 * be reached within net_config.handshake_ms. A listener bounds how many
 * connections it holds (max_conns) and may close idle clients (idle_ms).
 *
 *     net_config cfg = { .cluster_id = "default", .role = BATON__ROLE__ROLE_WORKER };
 *     net_handlers h = { .on_open = ..., .on_frame = ..., .on_close = ... };
 *     net_conn *c = net_connect(loop, &cfg, "127.0.0.1:7000", NET_ROLE_BIT(COORDINATOR), &h, me, err, n);
 *     net_send(c, BATON__FRAME_KIND__FRAME_JOIN, 0, &join.base, NULL, 0);
 *
 * Writes are queued without limit; net_queued_bytes says how much is waiting, and
 * on_drain runs when the queue falls below the low-water mark after having been
 * above the high-water mark, so a relay can stop reading (net_pause) while its
 * outgoing queue is full: a slow receiver then slows its sender instead of
 * growing the sender's memory. The marks are process-wide (net_set_water_marks).
 * All functions run on the loop thread only.
 */
#ifndef BATON_NET_H
#define BATON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "baton.pb-c.h"
#include "clock.h"
#include "frame.h"

#define NET_ROLE_BIT(r) (1u << BATON__ROLE__ROLE_##r)
#define NET_HIGH_WATER net_high_water() /* bytes; default 32 MiB */
#define NET_LOW_WATER net_low_water()   /* bytes; default 8 MiB */
#define NET_HANDSHAKE_MAX_FRAME (64u << 10) /* largest frame before authentication */

typedef struct net_config {
    const char *cluster_id; /* must match on both ends */
    uint32_t role;          /* our Baton__Role on this connection */
    const char *name;       /* for the peer's logs */
    uint64_t max_frame;     /* 0: FRAME_DEFAULT_MAX */
    const char *log_prefix; /* e.g. "baton-worker" */
    uint32_t codecs;        /* bit (1 << Baton__Codec) per stage codec we decode; 0: f32 only */
    /* Access control (auth.h). NULL switches a check off; the keys must outlive
     * every connection made with this config. */
    const auth_key *secret;          /* cluster secret: node links (worker, peer, coordinator) prove it both ways */
    const auth_keyring *client_keys; /* accepting: clients must prove one of these API keys */
    const auth_key *admin_token;     /* accepting: admins must prove this token */
    const auth_key *credential;      /* connecting as a client or admin: the API key or admin token we prove */
    /* Stage links (role PEER on both ends): both sides prove this key (AUTH_LINK),
     * even without a cluster secret, in addition to it otherwise. Read through the
     * pointer at each handshake, so the owner may change the key (a new plan);
     * all zero: no plan yet, every peer is refused. NULL: no link check. */
    const auth_key *link_key;
    /* Deadlines and limits (0: the default). A connection is counted from the
     * moment it is accepted or net_connect starts; only complete frames count as
     * activity, so a peer trickling bytes gains nothing. */
    uint32_t handshake_ms; /* a connection not authenticated after this is closed (both ways); 0: 10000 */
    uint32_t idle_ms;      /* accepted CLIENT/ADMIN connections with no complete frame received or sent for
                            * this long, and not busy (net_handlers.busy), are closed; 0: off */
    uint32_t max_conns;    /* accepted TCP connections at once, per listener; 0: 1024; never more than
                            * RLIMIT_NOFILE less 32. At the limit a new connection evicts the oldest one
                            * not authenticated yet; if every one is, the new one is refused with
                            * RESOURCE_EXHAUSTED "too many connections (N)" (logged at most once a second) */
} net_config;

typedef struct net_conn net_conn;
typedef struct net_server net_server;

typedef struct net_handlers {
    void (*on_open)(net_conn *c);  /* hellos exchanged */
    /* A complete frame; msg/payload valid during the call only. */
    void (*on_frame)(net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload);
    void (*on_drain)(net_conn *c); /* write queue back under the low-water mark */
    /* The connection is gone (why: one line); c is freed after this returns. */
    void (*on_close)(net_conn *c, const char *why);
    /* Optional: true while c has work under way (an answer still coming), so the
     * idle timeout leaves it open. NULL: never busy. */
    bool (*busy)(net_conn *c);
} net_handlers;

/* Parse "HOST:PORT" (IPv4 or a name resolving to IPv4). 0, or -1 with a message. */
int net_parse_addr(const char *host_port, struct sockaddr_in *out, char *err, size_t errlen);

/* Start connecting; callbacks report the outcome (on_close if it fails). NULL on
 * an immediate error (bad address) with a message. accept_roles: bit mask of the
 * roles the peer may have. */
net_conn *net_connect(uv_loop_t *loop, const net_config *cfg, const char *host_port, uint32_t accept_roles,
                      const net_handlers *h, void *user, char *err, size_t errlen);

/* True for an MPI address: "mpi" or "mpi:RANK". */
bool net_is_mpi_addr(const char *addr);

/* Listen on HOST:PORT (port 0: any; net_server_port tells which), on "mpi"
 * (MPI connections from any rank), or on both: "HOST:PORT,mpi". Each accepted
 * connection gets the handlers with user pointer `user` (change it per connection
 * with net_set_user in on_open). NULL with a message on error. */
net_server *net_listen(uv_loop_t *loop, const net_config *cfg, const char *host_port, uint32_t accept_roles,
                       const net_handlers *h, void *user, char *err, size_t errlen);
int net_server_port(const net_server *s); /* the TCP port; MPI only: this rank */
/* Stops accepting; open connections stay (without the idle check, and no longer
 * counted; those not authenticated still meet their handshake deadline). */
void net_server_close(net_server *s);

/* Queue one frame: msg (may be NULL for an empty message) then payload bytes.
 * 0, or -1 if the connection is closing or out of memory. */
int net_send(net_conn *c, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg, const void *payload,
             size_t payload_len);
/* Send a CallStatus for call_id. */
int net_send_status(net_conn *c, uint32_t call_id, int code, const char *message);

size_t net_queued_bytes(const net_conn *c);
/* Bytes (headers included) and frames queued for sending on c since it opened. */
uint64_t net_bytes_sent(const net_conn *c);
uint64_t net_frames_sent(const net_conn *c);
void net_pause(net_conn *c, bool paused); /* stop/resume reading */
/* Close after the queued writes are flushed; on_close follows with `why`. */
void net_close(net_conn *c, const char *why);

void *net_user(const net_conn *c);
void net_set_user(net_conn *c, void *user);
uint32_t net_peer_role(const net_conn *c);
const char *net_peer_name(const net_conn *c); /* the name from its hello */
const char *net_peer_addr(const net_conn *c); /* "ip:port" */
/* The codecs the peer said in its hello it can decode (bit 1 << Baton__Codec);
 * f32 is always among them. */
uint32_t net_peer_codecs(const net_conn *c);

/* The write-queue marks of every connection of this process. Set them before
 * connecting; low must be below high (otherwise low becomes high / 4). */
size_t net_high_water(void);
size_t net_low_water(void);
void net_set_water_marks(size_t high, size_t low);

/* Deprecated: clock_ms() (clock.h) is the clock. This alias stays only for the
 * call sites in coordinator/ (sched.c, metrics.c, coord.c) until they move. */
static inline uint64_t net_now_ms(void) { return clock_ms(); }

#endif
