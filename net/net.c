/* net.c - connections carrying frames on a libuv loop: framing, hello, queue
 * accounting; the bytes go over TCP (here) or MPI (net_mpi.c) through the
 * net_io_ops seam of net_io.h. See net.h. */
#include "net.h"
#include "net_io.h"
#include "net_mpi.h"

#include "errmsg.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define NET_DEFAULT_HANDSHAKE_MS 10000u
#define NET_DEFAULT_MAX_CONNS 1024u
#define NET_FD_RESERVE 32u   /* descriptors kept out of max_conns: files, outgoing links, libuv's own */
#define NET_SWEEP_MAX_MS 250u /* how often a listener looks for idle connections, at most */

struct net_conn {
    uv_tcp_t tcp;             /* first: the handle's data points back here too; unused but closed for MPI */
    uv_connect_t connect_req;
    const net_io_ops *io;     /* the transport */
    void *io_state;           /* the transport's per-connection state */
    net_config cfg;
    char cluster_id[128], name[128], log_prefix[64];
    uint32_t accept_roles;
    net_handlers h;
    void *user;
    frame_reader reader;
    size_t queued;            /* bytes written but not yet confirmed */
    uint64_t bytes_sent, frames_sent;
    bool above_high;          /* queue went above the high-water mark */
    bool hello_sent, hello_got, opened;
    bool closing, close_after_flush, paused, reading;
    char close_why[256];
    uint32_t peer_role, peer_codecs;
    char peer_name[128];
    char peer_addr[64];
    /* access control (handle_pre_hello) */
    uint8_t nonce[AUTH_NONCE_BYTES], peer_nonce[AUTH_NONCE_BYTES];
    bool connector;           /* we sent the first hello: we prove first, then wait for AuthOk */
    /* deadlines and the connection limit */
    uv_timer_t deadline;      /* the handshake deadline; stopped once open */
    int handles_open;         /* tcp and deadline while closing: c is freed when both are closed */
    net_server *server;       /* the TCP listener whose list holds c; NULL for outgoing, MPI, or once it closed */
    net_conn *srv_prev, *srv_next; /* that list, oldest first */
    uint64_t active_ms;       /* loop time of the last complete frame received or sent */
};

struct net_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    bool has_tcp, has_mpi;    /* the transports it accepts on */
    net_config cfg;
    char cluster_id[128], name[128], log_prefix[64];
    uint32_t accept_roles;
    net_handlers h;
    void *user;
    /* the accepted TCP connections: limit, idle check (MPI ones are not counted:
     * their ranks are fixed by the job, and they hold no descriptor each) */
    uv_timer_t sweep;         /* the idle check, and the flush of the limit's log line */
    int handles_open;         /* tcp and sweep while closing */
    net_conn *conns, *conns_last; /* oldest first */
    uint32_t n_conns, max_conns;
    uint64_t note_ms;         /* when the limit's log line was last written */
    uint32_t n_evicted, n_refused, n_failed; /* since then */
    char last_failure[96];
};

/* Splits HOST:PORT and resolves HOST to an IPv4 address (blocking; done at startup only). */
int net_parse_addr(const char *host_port, struct sockaddr_in *out, char *err, size_t errlen) {
    const char *colon = host_port ? strrchr(host_port, ':') : NULL;
    if (!colon || colon == host_port || !colon[1]) {
        err_set(err, errlen, "address '%s' is not HOST:PORT", host_port ? host_port : "(null)");
        return -1;
    }
    char host[256];
    size_t hl = (size_t)(colon - host_port);
    if (hl >= sizeof host) {
        err_set(err, errlen, "host name in '%s' is too long", host_port);
        return -1;
    }
    memcpy(host, host_port, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        err_set(err, errlen, "bad port in '%s'", host_port);
        return -1;
    }
    if (uv_ip4_addr(host, (int)port, out) == 0) return 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
        err_set(err, errlen, "cannot resolve host '%s'", host);
        return -1;
    }
    memcpy(out, res->ai_addr, sizeof *out);
    out->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* Copies the config strings into storage the connection owns. */
static void copy_cfg(net_config *dst, char *cid, char *name, char *prefix, const net_config *src) {
    *dst = *src;
    snprintf(cid, 128, "%s", src->cluster_id ? src->cluster_id : "");
    snprintf(name, 128, "%s", src->name ? src->name : "");
    snprintf(prefix, 64, "%s", src->log_prefix ? src->log_prefix : "baton");
    dst->cluster_id = cid;
    dst->name = name;
    dst->log_prefix = prefix;
    if (!dst->max_frame) dst->max_frame = FRAME_DEFAULT_MAX;
    if (!dst->handshake_ms) dst->handshake_ms = NET_DEFAULT_HANDSHAKE_MS;
}

/* Copies src into dst[cap], truncating; always terminated. */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memmove(dst, src, n);
    dst[n] = 0;
}

/* One of the server's two handles (tcp, sweep) closed; frees it after both. */
static void on_server_part_closed(uv_handle_t *h) {
    net_server *s = h->data;
    if (--s->handles_open == 0) free(s);
}

/* One of the connection's two handles (tcp, deadline) closed; after both, the
 * owner hears of it and c is freed. */
static void on_handle_closed(uv_handle_t *h) {
    net_conn *c = h->data;
    if (--c->handles_open > 0) return;
    if (c->h.on_close) c->h.on_close(c, c->close_why[0] ? c->close_why : "closed");
    frame_reader_free(&c->reader);
    free(c);
}

/* Takes c out of its listener's list of accepted connections. */
static void server_unlink(net_conn *c) {
    net_server *s = c->server;
    if (!s) return;
    if (c->srv_prev) c->srv_prev->srv_next = c->srv_next;
    else s->conns = c->srv_next;
    if (c->srv_next) c->srv_next->srv_prev = c->srv_prev;
    else s->conns_last = c->srv_prev;
    s->n_conns--;
    c->server = NULL;
    c->srv_prev = c->srv_next = NULL;
}

/* Closes the handle now (pending writes are cancelled). The descriptor goes at
 * once (uv_close), so c no longer counts against its listener's limit. */
static void close_now(net_conn *c, const char *why) {
    if (c->closing) return;
    c->closing = true;
    if (!c->close_why[0]) copy_str(c->close_why, sizeof c->close_why, why);
    server_unlink(c);
    if (c->io->close) c->io->close(c);
    c->handles_open = 2;
    uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* Stops reading from the transport, if it reads. */
static void read_stop(net_conn *c) {
    if (c->reading) c->io->read_stop(c);
    c->reading = false;
}

void net_close(net_conn *c, const char *why) {
    if (!c || c->closing) return;
    if (!c->close_why[0]) copy_str(c->close_why, sizeof c->close_why, why ? why : "closed");
    if (c->queued == 0) close_now(c, c->close_why);
    else {
        c->close_after_flush = true;
        read_stop(c);
    }
}

void net_io_write_done(net_write *w, int status) {
    net_conn *c = w->c;
    c->queued -= w->len;
    free(w);
    if (status == 0) c->active_ms = uv_now(c->tcp.loop); /* a whole frame went out */
    if (status < 0 && !c->closing) {
        char why[160];
        snprintf(why, sizeof why, "write failed: %s", uv_strerror(status));
        close_now(c, why);
        return;
    }
    if (c->closing) return;
    if (c->close_after_flush && c->queued == 0) {
        close_now(c, c->close_why);
        return;
    }
    if (c->above_high && c->queued < NET_LOW_WATER) {
        c->above_high = false;
        if (c->h.on_drain) c->h.on_drain(c);
    }
}

/* Encodes header + message + payload into one buffer and queues it. */
static int send_raw(net_conn *c, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg, const void *payload,
                    size_t payload_len) {
    if (c->closing || c->close_after_flush) return -1;
    size_t ml = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    if ((uint64_t)ml + payload_len > c->cfg.max_frame) {
        fprintf(stderr, "%s: refusing to send a frame of %zu bytes (kind %u): the maximum is %llu\n",
                c->cfg.log_prefix, ml + payload_len, (unsigned)kind, (unsigned long long)c->cfg.max_frame);
        return -1;
    }
    size_t total = FRAME_HEADER_BYTES + ml + payload_len;
    net_write *w = malloc(sizeof *w + total);
    if (!w) return -1;
    w->c = c;
    w->len = total;
    w->next = NULL;
    w->sent = false;
    frame_header fh = {.kind = (uint16_t)kind, .call_id = call_id, .msg_len = (uint32_t)ml,
                       .payload_len = (uint32_t)payload_len};
    frame_header_encode(&fh, w->bytes);
    if (msg) protobuf_c_message_pack(msg, w->bytes + FRAME_HEADER_BYTES);
    if (payload_len) memcpy(w->bytes + FRAME_HEADER_BYTES + ml, payload, payload_len);
    int rc = c->io->write(c, w);
    if (rc < 0) {
        free(w);
        return -1;
    }
    c->queued += total;
    c->bytes_sent += total;
    c->frames_sent++;
    if (c->queued > NET_HIGH_WATER) c->above_high = true;
    return 0;
}

int net_send(net_conn *c, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg, const void *payload,
             size_t payload_len) {
    if (!c || !c->opened) return -1;
    return send_raw(c, kind, call_id, msg, payload, payload_len);
}

int net_send_status(net_conn *c, uint32_t call_id, int code, const char *message) {
    Baton__CallStatus st = BATON__CALL_STATUS__INIT;
    st.code = (Baton__StatusCode)code;
    st.message = (char *)(message ? message : "");
    return net_send(c, BATON__FRAME_KIND__FRAME_CALL_STATUS, call_id, &st.base, NULL, 0);
}

static void send_hello(net_conn *c) {
    Baton__Hello h = BATON__HELLO__INIT;
    h.protocol_version = FRAME_PROTOCOL_VERSION;
    h.role = (Baton__Role)c->cfg.role;
    h.cluster_id = (char *)c->cfg.cluster_id;
    h.name = (char *)c->cfg.name;
    h.accepted = true;
    h.codecs = c->cfg.codecs | 1u;
    auth_nonce(c->nonce);
    h.nonce = (ProtobufCBinaryData){AUTH_NONCE_BYTES, c->nonce};
    c->connector = !c->hello_got;
    send_raw(c, BATON__FRAME_KIND__FRAME_HELLO, 0, &h.base, NULL, 0);
    c->hello_sent = true;
}

/* Refuses the peer: tells it why in a status, logs it, closes after the flush. */
static void refuse(net_conn *c, int code, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: refusing connection from %s: %s\n", c->cfg.log_prefix, c->peer_addr, msg);
    Baton__CallStatus st = BATON__CALL_STATUS__INIT;
    st.code = (Baton__StatusCode)code;
    st.message = msg;
    send_raw(c, BATON__FRAME_KIND__FRAME_CALL_STATUS, 0, &st.base, NULL, 0);
    net_close(c, msg);
}

static const char *role_name(uint32_t r) {
    static const char *names[] = {"none", "client", "worker", "coordinator", "peer", "admin"};
    return r < sizeof names / sizeof *names ? names[r] : "unknown";
}

/* Worker, peer and coordinator: the roles that hold the cluster secret. */
static bool node_role(uint32_t r) {
    return r == BATON__ROLE__ROLE_WORKER || r == BATON__ROLE__ROLE_PEER || r == BATON__ROLE__ROLE_COORDINATOR;
}

/* A link between two nodes: both sides prove the cluster secret (if they hold one). */
static bool node_link(const net_conn *c) { return node_role(c->cfg.role) && node_role(c->peer_role); }

/* A stage link (peer to peer) of a config with a link key: both sides prove the plan's key. */
static bool stage_link(const net_conn *c) {
    return c->cfg.link_key && c->cfg.role == BATON__ROLE__ROLE_PEER && c->peer_role == BATON__ROLE__ROLE_PEER;
}

/* The refusal of a stage-link peer that did not prove the plan's link key. */
#define LINK_KEY_REFUSAL "the peer did not prove this plan's link key (a stale plan, or not a member of the pipeline)"

/* What both ends of c know once the hellos have crossed. */
static auth_transcript conn_transcript(const net_conn *c) {
    auth_transcript t = {.cluster_id = c->cfg.cluster_id};
    t.role_connector = c->connector ? c->cfg.role : c->peer_role;
    t.role_acceptor = c->connector ? c->peer_role : c->cfg.role;
    t.nonce_connector = c->connector ? c->nonce : c->peer_nonce;
    t.nonce_acceptor = c->connector ? c->peer_nonce : c->nonce;
    return t;
}

/* The authentication is done: frames flow both ways from now on. */
static int open_conn(net_conn *c) {
    c->opened = true;
    uv_timer_stop(&c->deadline);
    c->reader.max_frame = c->cfg.max_frame;
    if (c->h.on_open) c->h.on_open(c);
    return c->closing || c->close_after_flush;
}

/* Checks the peer's hello; the acceptor answers with its own. 0, or 1 if refused. */
static int handle_hello(net_conn *c, const frame_header *fh, const uint8_t *msg) {
    Baton__Hello *h = baton__hello__unpack(NULL, fh->msg_len, msg);
    if (!h) {
        refuse(c, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed hello");
        return 1;
    }
    int stop = 1;
    if (h->protocol_version != FRAME_PROTOCOL_VERSION) {
        refuse(c, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, "protocol version %u, this side speaks %u",
               (unsigned)h->protocol_version, (unsigned)FRAME_PROTOCOL_VERSION);
    } else if (strcmp(h->cluster_id ? h->cluster_id : "", c->cfg.cluster_id) != 0) {
        refuse(c, BATON__STATUS_CODE__STATUS_PERMISSION_DENIED, "cluster id '%s' does not match this cluster's '%s'",
               h->cluster_id ? h->cluster_id : "", c->cfg.cluster_id);
    } else if ((uint32_t)h->role >= 32 || !(c->accept_roles & (1u << (uint32_t)h->role))) {
        refuse(c, BATON__STATUS_CODE__STATUS_PERMISSION_DENIED, "role '%s' is not accepted here",
               role_name((uint32_t)h->role));
    } else if (h->nonce.len != AUTH_NONCE_BYTES) {
        refuse(c, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "hello nonce of %zu bytes, expected %d",
               h->nonce.len, AUTH_NONCE_BYTES);
    } else {
        c->peer_role = (uint32_t)h->role;
        c->peer_codecs = h->codecs | 1u;
        snprintf(c->peer_name, sizeof c->peer_name, "%s", h->name ? h->name : "");
        memcpy(c->peer_nonce, h->nonce.data, AUTH_NONCE_BYTES);
        c->hello_got = true;
        stop = 0;
    }
    baton__hello__free_unpacked(h, NULL);
    if (stop) return 1;
    if (!c->hello_sent) {
        send_hello(c); /* acceptor: now wait for the AuthProof */
        return 0;
    }
    /* connector: prove what this link needs, then wait for the AuthOk */
    auth_transcript t = conn_transcript(c);
    uint8_t cluster_mac[AUTH_MAC_BYTES], key_mac[AUTH_MAC_BYTES], link_mac[AUTH_MAC_BYTES];
    Baton__AuthProof p = BATON__AUTH_PROOF__INIT;
    if (node_link(c) && c->cfg.secret) {
        auth_mac(c->cfg.secret, AUTH_NODE, AUTH_CONNECTOR, &t, cluster_mac);
        p.cluster_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, cluster_mac};
    }
    if (stage_link(c) && !auth_key_is_zero(c->cfg.link_key)) { /* the key as it is now: the plan may change */
        auth_mac(c->cfg.link_key, AUTH_LINK, AUTH_CONNECTOR, &t, link_mac);
        p.link_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, link_mac};
    }
    if (!node_link(c) && c->cfg.credential) {
        auth_mac(c->cfg.credential, c->cfg.role == BATON__ROLE__ROLE_ADMIN ? AUTH_ADMIN : AUTH_CLIENT, AUTH_CONNECTOR,
                 &t, key_mac);
        p.key_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, key_mac};
    }
    send_raw(c, BATON__FRAME_KIND__FRAME_AUTH_PROOF, 0, &p.base, NULL, 0);
    return 0;
}

/* Acceptor: checks the connector's AuthProof against what this side requires;
 * lets it in with an AuthOk (carrying our own proof on node links) or refuses it. */
static int handle_auth_proof(net_conn *c, const frame_header *fh, const uint8_t *msg) {
    Baton__AuthProof *p = baton__auth_proof__unpack(NULL, fh->msg_len, msg);
    if (!p) {
        refuse(c, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed auth proof");
        return 1;
    }
    auth_transcript t = conn_transcript(c);
    const char *who = role_name(c->peer_role);
    const int unauth = BATON__STATUS_CODE__STATUS_UNAUTHENTICATED;
    int stop = 1;
    if (node_link(c) && c->cfg.secret && !p->cluster_proof.len)
        refuse(c, unauth, "the %s presented no cluster-secret proof (start it with --secret)", who);
    else if (node_link(c) && c->cfg.secret &&
             !auth_verify(c->cfg.secret, AUTH_NODE, AUTH_CONNECTOR, &t, p->cluster_proof.data, p->cluster_proof.len))
        refuse(c, unauth, "the %s failed to prove the cluster secret (a different --secret?)", who);
    else if (node_link(c) && !c->cfg.secret && p->cluster_proof.len)
        refuse(c, unauth, "the %s holds a cluster secret but this %s has none (start it with --secret)", who,
               role_name(c->cfg.role));
    else if (stage_link(c) && auth_key_is_zero(c->cfg.link_key))
        refuse(c, unauth, "this worker has no plan yet (no link key): stage links are refused");
    else if (stage_link(c) &&
             !auth_verify(c->cfg.link_key, AUTH_LINK, AUTH_CONNECTOR, &t, p->link_proof.data, p->link_proof.len))
        refuse(c, unauth, LINK_KEY_REFUSAL);
    else if (c->peer_role == BATON__ROLE__ROLE_CLIENT && c->cfg.client_keys && !p->key_proof.len)
        refuse(c, unauth, "the client presented no API key (this cluster requires one: --api-key)");
    else if (c->peer_role == BATON__ROLE__ROLE_CLIENT && c->cfg.client_keys &&
             auth_keyring_match(c->cfg.client_keys, AUTH_CLIENT, AUTH_CONNECTOR, &t, p->key_proof.data,
                                p->key_proof.len) < 0)
        refuse(c, unauth, "the client's API key is not accepted");
    else if (c->peer_role == BATON__ROLE__ROLE_ADMIN && !c->cfg.admin_token && c->cfg.client_keys)
        /* an open admin door would bypass the API keys */
        refuse(c, BATON__STATUS_CODE__STATUS_PERMISSION_DENIED,
               "admin calls are off: this %s requires API keys but has no admin token", role_name(c->cfg.role));
    else if (c->peer_role == BATON__ROLE__ROLE_ADMIN && c->cfg.admin_token && !p->key_proof.len)
        refuse(c, unauth, "the admin presented no admin token (this cluster requires one)");
    else if (c->peer_role == BATON__ROLE__ROLE_ADMIN && c->cfg.admin_token &&
             !auth_verify(c->cfg.admin_token, AUTH_ADMIN, AUTH_CONNECTOR, &t, p->key_proof.data, p->key_proof.len))
        refuse(c, unauth, "the admin token does not match");
    else
        stop = 0;
    baton__auth_proof__free_unpacked(p, NULL);
    if (stop) return 1;
    uint8_t mac[AUTH_MAC_BYTES], link_mac[AUTH_MAC_BYTES];
    Baton__AuthOk ok = BATON__AUTH_OK__INIT;
    if (node_link(c) && c->cfg.secret) {
        auth_mac(c->cfg.secret, AUTH_NODE, AUTH_ACCEPTOR, &t, mac);
        ok.cluster_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, mac};
    }
    if (stage_link(c)) { /* the key is not zero: checked above */
        auth_mac(c->cfg.link_key, AUTH_LINK, AUTH_ACCEPTOR, &t, link_mac);
        ok.link_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, link_mac};
    }
    send_raw(c, BATON__FRAME_KIND__FRAME_AUTH_OK, 0, &ok.base, NULL, 0);
    return open_conn(c);
}

/* Connector: the acceptor let us in; on a node link it must prove the secret
 * too, and on a stage link the plan's link key. */
static int handle_auth_ok(net_conn *c, const frame_header *fh, const uint8_t *msg) {
    Baton__AuthOk *ok = baton__auth_ok__unpack(NULL, fh->msg_len, msg);
    if (!ok) {
        refuse(c, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed auth answer");
        return 1;
    }
    auth_transcript t = conn_transcript(c);
    bool bad = node_link(c) && c->cfg.secret &&
               !auth_verify(c->cfg.secret, AUTH_NODE, AUTH_ACCEPTOR, &t, ok->cluster_proof.data, ok->cluster_proof.len);
    bool missing = bad && !ok->cluster_proof.len;
    bool bad_link = stage_link(c) && (auth_key_is_zero(c->cfg.link_key) ||
                                      !auth_verify(c->cfg.link_key, AUTH_LINK, AUTH_ACCEPTOR, &t, ok->link_proof.data,
                                                   ok->link_proof.len));
    baton__auth_ok__free_unpacked(ok, NULL);
    if (bad) {
        refuse(c, BATON__STATUS_CODE__STATUS_UNAUTHENTICATED, "the %s %s the cluster secret", role_name(c->peer_role),
               missing ? "holds no cluster secret (start it with --secret); it cannot prove" : "failed to prove");
        return 1;
    }
    if (bad_link) {
        refuse(c, BATON__STATUS_CODE__STATUS_UNAUTHENTICATED, LINK_KEY_REFUSAL);
        return 1;
    }
    return open_conn(c);
}

/* Handles the frames that arrive before the connection is open: the peer's
 * hello, then the AuthProof (acceptor) or AuthOk (connector), or a status
 * refusing us. Anything else is refused: nothing is served before this is done. */
static int handle_pre_hello(net_conn *c, const frame_header *fh, const uint8_t *msg) {
    if (fh->kind == BATON__FRAME_KIND__FRAME_CALL_STATUS) {
        Baton__CallStatus *st = baton__call_status__unpack(NULL, fh->msg_len, msg);
        char why[300];
        snprintf(why, sizeof why, "refused by %s: %s", c->peer_addr, st && st->message ? st->message : "(no reason)");
        fprintf(stderr, "%s: %s\n", c->cfg.log_prefix, why);
        if (st) baton__call_status__free_unpacked(st, NULL);
        close_now(c, why);
        return 1;
    }
    uint32_t want = !c->hello_got ? BATON__FRAME_KIND__FRAME_HELLO
                    : c->connector ? BATON__FRAME_KIND__FRAME_AUTH_OK
                                   : BATON__FRAME_KIND__FRAME_AUTH_PROOF;
    if (fh->kind != want) {
        if (!c->hello_got)
            refuse(c, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, "expected a hello first, got frame kind %u",
                   (unsigned)fh->kind);
        else
            refuse(c, BATON__STATUS_CODE__STATUS_UNAUTHENTICATED, "frame kind %u before authentication completed",
                   (unsigned)fh->kind);
        return 1;
    }
    if (want == BATON__FRAME_KIND__FRAME_HELLO) return handle_hello(c, fh, msg);
    if (want == BATON__FRAME_KIND__FRAME_AUTH_PROOF) return handle_auth_proof(c, fh, msg);
    return handle_auth_ok(c, fh, msg);
}

/* The write-queue marks (NET_HIGH_WATER, NET_LOW_WATER), process-wide. */
static size_t high_water = 32u << 20, low_water = 8u << 20;

size_t net_high_water(void) { return high_water; }
size_t net_low_water(void) { return low_water; }

void net_set_water_marks(size_t high, size_t low) {
    high_water = high ? high : 1;
    low_water = low < high_water ? low : high_water / 4;
}

static int frame_dispatch(void *ctx, const frame_header *fh, const uint8_t *msg, const uint8_t *payload) {
    net_conn *c = ctx;
    if (c->closing || c->close_after_flush) return 1;
    c->active_ms = uv_now(c->tcp.loop); /* a whole frame: a partial one does not count */
    if (!c->opened) return handle_pre_hello(c, fh, msg);
    if (c->h.on_frame) c->h.on_frame(c, fh, msg, payload);
    return c->closing || c->close_after_flush || c->paused;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    static _Thread_local char slab[65536];
    *buf = uv_buf_init(slab, sizeof slab);
}

/* Feeds bytes to the frame reader; keeps what a paused connection did not take. */
void net_io_feed(net_conn *c, const uint8_t *bytes, size_t n) {
    if (c->closing) return;
    int rc = frame_reader_feed(&c->reader, bytes, n, frame_dispatch, c);
    if (rc == -1) {
        char why[300];
        snprintf(why, sizeof why, "protocol error from %s: %s", c->peer_addr, c->reader.error);
        fprintf(stderr, "%s: %s; closing that connection\n", c->cfg.log_prefix, why);
        close_now(c, why);
    } else if (rc == -2) {
        close_now(c, "out of memory reading a frame");
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    net_conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        char why[160];
        if (nread == UV_EOF) snprintf(why, sizeof why, "connection closed by %s", c->peer_addr);
        else snprintf(why, sizeof why, "read from %s failed: %s", c->peer_addr, uv_strerror((int)nread));
        close_now(c, why);
        return;
    }
    net_io_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* --- the TCP transport --------------------------------------------------- */

static void tcp_on_write(uv_write_t *req, int status) { net_io_write_done((net_write *)req, status); }
static void tcp_read_start(net_conn *c) { uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read); }
static void tcp_read_stop(net_conn *c) { uv_read_stop((uv_stream_t *)&c->tcp); }
static int tcp_write(net_conn *c, net_write *w) {
    uv_buf_t buf = uv_buf_init((char *)w->bytes, (unsigned)w->len);
    return uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, tcp_on_write);
}
static const net_io_ops tcp_ops = {.read_start = tcp_read_start, .read_stop = tcp_read_stop, .write = tcp_write};

void net_io_set(net_conn *c, const net_io_ops *io, void *state) {
    c->io = io;
    c->io_state = state;
}
void *net_io_state(const net_conn *c) { return c->io_state; }
bool net_io_closing(const net_conn *c) { return c->closing; }
bool net_io_flushing(const net_conn *c) { return c->close_after_flush; }
void net_io_fail(net_conn *c, const char *why) { close_now(c, why); }
uv_loop_t *net_server_loop(const net_server *s) { return s->loop; }

/* Delivers frames a pause left in the reader's buffer. */
static void drain_buffered(net_conn *c) {
    while (!c->paused && !c->closing && c->reader.len >= FRAME_HEADER_BYTES) {
        int rc = frame_reader_feed(&c->reader, NULL, 0, frame_dispatch, c);
        if (rc <= 0) break;
    }
}

void net_pause(net_conn *c, bool paused) {
    if (!c || c->closing || c->paused == paused) return;
    c->paused = paused;
    if (paused) {
        read_stop(c);
    } else {
        drain_buffered(c);
        if (!c->paused && !c->closing && !c->close_after_flush && !c->reading) {
            c->io->read_start(c);
            c->reading = true;
        }
    }
}

/* The handshake deadline passed and c is not open: close it. */
static void on_deadline(uv_timer_t *t) {
    net_conn *c = t->data;
    if (c->opened || c->closing) return;
    char why[200];
    snprintf(why, sizeof why, "the connection %s %s did not authenticate within %u ms",
             c->connect_req.data ? "to" : "from", c->peer_addr, (unsigned)c->cfg.handshake_ms);
    fprintf(stderr, "%s: %s; closing it\n", c->cfg.log_prefix, why);
    close_now(c, why);
}

static net_conn *conn_new(uv_loop_t *loop, const net_config *cfg, uint32_t accept_roles, const net_handlers *h,
                          void *user) {
    net_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    copy_cfg(&c->cfg, c->cluster_id, c->name, c->log_prefix, cfg);
    c->accept_roles = accept_roles;
    c->h = *h;
    c->user = user;
    frame_reader_init(&c->reader, c->cfg.max_frame);
    c->reader.max_frame = NET_HANDSHAKE_MAX_FRAME; /* until open_conn */
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->io = &tcp_ops;
    uv_timer_init(loop, &c->deadline);
    c->deadline.data = c;
    uv_timer_start(&c->deadline, on_deadline, c->cfg.handshake_ms, 0);
    c->active_ms = uv_now(loop);
    return c;
}

static void fill_peer_addr(net_conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET) {
        char ip[64];
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        char pa[128];
        snprintf(pa, sizeof pa, "%s:%d", ip, ntohs(a->sin_port));
        copy_str(c->peer_addr, sizeof c->peer_addr, pa);
    }
}

static void start_session(net_conn *c) {
    if (c->io == &tcp_ops) {
        uv_tcp_nodelay(&c->tcp, 1);
        fill_peer_addr(c);
    }
    c->io->read_start(c);
    c->reading = true;
}

static void on_connected(uv_connect_t *req, int status) {
    net_conn *c = req->data;
    if (c->closing) return;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect to %s: %s", c->peer_addr, uv_strerror(status));
        close_now(c, why);
        return;
    }
    start_session(c);
    send_hello(c);
}

void net_io_connected(net_conn *c) { on_connected(&c->connect_req, 0); }

net_conn *net_connect(uv_loop_t *loop, const net_config *cfg, const char *host_port, uint32_t accept_roles,
                      const net_handlers *h, void *user, char *err, size_t errlen) {
    bool mpi = net_is_mpi_addr(host_port);
    struct sockaddr_in addr;
    if (!mpi && net_parse_addr(host_port, &addr, err, errlen) != 0) return NULL;
    net_conn *c = conn_new(loop, cfg, accept_roles, h, user);
    if (!c) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(c->peer_addr, sizeof c->peer_addr, "%s", host_port);
    c->connect_req.data = c;
    if (mpi) {
        if (net_mpi_connect(c, loop, host_port, err, errlen) == 0) return c;
        c->h.on_close = NULL;
        close_now(c, err);
        return NULL;
    }
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&addr, on_connected);
    if (rc < 0) {
        err_set(err, errlen, "cannot connect to %s: %s", host_port, uv_strerror(rc));
        c->h.on_close = NULL;
        close_now(c, err);
        return NULL;
    }
    return c;
}

/* Writes the listener's one line about its connection limit: what was evicted,
 * refused or failed since the last line; at most once a second (force: now,
 * if there is anything to say). */
static void server_report(net_server *s, bool force) {
    if (!s->n_evicted && !s->n_refused && !s->n_failed) return;
    uint64_t now = uv_now(s->loop);
    if (!force && s->note_ms && now - s->note_ms < 1000) return;
    fprintf(stderr,
            "%s: connection limit %u: evicted %u unauthenticated connection(s) (the oldest first), refused %u "
            "(too many connections), %u accept error(s)%s%s\n",
            s->cfg.log_prefix, (unsigned)s->max_conns, (unsigned)s->n_evicted, (unsigned)s->n_refused,
            (unsigned)s->n_failed, s->n_failed ? ", the last: " : "", s->n_failed ? s->last_failure : "");
    s->note_ms = now;
    s->n_evicted = s->n_refused = s->n_failed = 0;
}

/* Closes the oldest accepted connection that is not authenticated yet. True if there was one. */
static bool server_evict(net_server *s) {
    net_conn *v = s->conns;
    while (v && (v->opened || v->close_after_flush)) v = v->srv_next;
    if (!v) return false;
    char why[160];
    snprintf(why, sizeof why, "evicted: %u connections (the limit) and this one was the oldest not authenticated",
             (unsigned)s->max_conns);
    close_now(v, why);
    s->n_evicted++;
    return true;
}

/* Every sweep interval: closes accepted client and admin connections idle for
 * idle_ms (and not busy), and writes a pending limit line. */
static void on_sweep(uv_timer_t *t) {
    net_server *s = t->data;
    server_report(s, false);
    if (!s->cfg.idle_ms) return;
    uint64_t now = uv_now(s->loop);
    for (net_conn *c = s->conns, *next; c; c = next) {
        next = c->srv_next; /* close_now unlinks c */
        bool user = c->peer_role == BATON__ROLE__ROLE_CLIENT || c->peer_role == BATON__ROLE__ROLE_ADMIN;
        if (!c->opened || c->closing || !user || now - c->active_ms < s->cfg.idle_ms) continue;
        if (c->h.busy && c->h.busy(c)) continue;
        char why[160];
        snprintf(why, sizeof why, "idle for %u ms: closed", (unsigned)s->cfg.idle_ms);
        fprintf(stderr, "%s: the %s connection from %s is %s\n", s->cfg.log_prefix, role_name(c->peer_role),
                c->peer_addr, why);
        close_now(c, why);
    }
}

static void on_connection(uv_stream_t *server, int status) {
    net_server *s = server->data;
    if (status < 0) {
        /* libuv has already spent its reserve descriptor on this (it accepts and
         * closes what waits when out of descriptors), so this does not spin;
         * evicting frees a descriptor for the next one */
        s->n_failed++;
        snprintf(s->last_failure, sizeof s->last_failure, "%s", uv_strerror(status));
        if (status == UV_EMFILE || status == UV_ENFILE) server_evict(s);
        server_report(s, false);
        return;
    }
    net_conn *c = conn_new(server->loop, &s->cfg, s->accept_roles, &s->h, s->user);
    if (!c) return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->h.on_close = NULL;
        close_now(c, "accept failed");
        return;
    }
    bool full = s->n_conns >= s->max_conns && !server_evict(s);
    c->server = s;
    c->srv_prev = s->conns_last;
    if (s->conns_last) s->conns_last->srv_next = c;
    else s->conns = c;
    s->conns_last = c;
    s->n_conns++;
    start_session(c);
    if (full) { /* every connection is authenticated: this one gets a status, not a hello */
        char msg[80];
        snprintf(msg, sizeof msg, "too many connections (%u)", (unsigned)s->max_conns);
        Baton__CallStatus st = BATON__CALL_STATUS__INIT;
        st.code = BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED;
        st.message = msg;
        send_raw(c, BATON__FRAME_KIND__FRAME_CALL_STATUS, 0, &st.base, NULL, 0);
        net_close(c, msg);
        s->n_refused++;
    }
    server_report(s, false);
}

net_conn *net_io_accept(net_server *s, const net_io_ops *io, void *state, const char *peer_addr) {
    net_conn *c = conn_new(s->loop, &s->cfg, s->accept_roles, &s->h, s->user);
    if (!c) return NULL;
    net_io_set(c, io, state);
    copy_str(c->peer_addr, sizeof c->peer_addr, peer_addr);
    start_session(c);
    return c;
}

bool net_is_mpi_addr(const char *addr) {
    return addr && !strncmp(addr, "mpi", 3) && (addr[3] == 0 || addr[3] == ':');
}

/* max_conns, or its default, and never more than the descriptors this process
 * may open less a reserve. */
static uint32_t conn_limit(uint32_t want) {
    uint64_t lim = want ? want : NET_DEFAULT_MAX_CONNS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        uint64_t room = rl.rlim_cur > 2 * NET_FD_RESERVE ? rl.rlim_cur - NET_FD_RESERVE : rl.rlim_cur / 2;
        if (room < lim) lim = room ? room : 1;
    }
    return (uint32_t)lim;
}

/* Starts the TCP listener of s on host_port. 0, or -1 with a message. */
static int listen_tcp(net_server *s, const char *host_port, char *err, size_t errlen) {
    struct sockaddr_in addr;
    if (net_parse_addr(host_port, &addr, err, errlen) != 0) return -1;
    if (s->has_tcp) {
        err_set(err, errlen, "cannot listen on %s: one TCP address per listener", host_port);
        return -1;
    }
    uv_tcp_init(s->loop, &s->tcp);
    s->tcp.data = s;
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    s->has_tcp = true;
    int rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->tcp, 128, on_connection);
    if (rc == 0) {
        uint64_t every = s->cfg.idle_ms ? s->cfg.idle_ms / 4 : NET_SWEEP_MAX_MS;
        every = every < 10 ? 10 : every > NET_SWEEP_MAX_MS ? NET_SWEEP_MAX_MS : every;
        uv_timer_start(&s->sweep, on_sweep, every, every);
    }
    if (rc < 0) {
        err_set(err, errlen, "cannot listen on %s: %s", host_port, uv_strerror(rc));
        return -1;
    }
    return 0;
}

net_server *net_listen(uv_loop_t *loop, const net_config *cfg, const char *host_port, uint32_t accept_roles,
                       const net_handlers *h, void *user, char *err, size_t errlen) {
    net_server *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    copy_cfg(&s->cfg, s->cluster_id, s->name, s->log_prefix, cfg);
    s->loop = loop;
    s->accept_roles = accept_roles;
    s->h = *h;
    s->user = user;
    s->max_conns = conn_limit(cfg->max_conns);
    const char *p = host_port ? host_port : "";
    int rc = 0;
    do { /* comma-separated addresses */
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char one[256];
        snprintf(one, sizeof one, "%.*s", (int)(n < sizeof one ? n : sizeof one - 1), p);
        if (!net_is_mpi_addr(one)) rc = listen_tcp(s, one, err, errlen);
        else if ((rc = net_mpi_listen(s, one, err, errlen)) == 0) s->has_mpi = true;
        p = comma ? comma + 1 : NULL;
    } while (rc == 0 && p);
    if (rc != 0) {
        net_server_close(s);
        return NULL;
    }
    return s;
}

int net_server_port(const net_server *s) {
    if (!s->has_tcp) return s->has_mpi ? net_mpi_rank() : -1;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
    return ntohs(((const struct sockaddr_in *)&ss)->sin_port);
}

void net_server_close(net_server *s) {
    if (!s) return;
    if (s->has_mpi) net_mpi_unlisten(s);
    while (s->conns) server_unlink(s->conns); /* they stay open, with their handshake deadline */
    if (s->has_tcp) {
        server_report(s, true);
        s->handles_open = 2;
        uv_close((uv_handle_t *)&s->sweep, on_server_part_closed);
        uv_close((uv_handle_t *)&s->tcp, on_server_part_closed);
    } else {
        free(s);
    }
}

size_t net_queued_bytes(const net_conn *c) { return c ? c->queued : 0; }
uint64_t net_bytes_sent(const net_conn *c) { return c ? c->bytes_sent : 0; }
uint64_t net_frames_sent(const net_conn *c) { return c ? c->frames_sent : 0; }
void *net_user(const net_conn *c) { return c->user; }
void net_set_user(net_conn *c, void *user) { c->user = user; }
uint32_t net_peer_role(const net_conn *c) { return c->peer_role; }
const char *net_peer_name(const net_conn *c) { return c->peer_name; }
const char *net_peer_addr(const net_conn *c) { return c->peer_addr; }
uint32_t net_peer_codecs(const net_conn *c) { return c->peer_codecs; }
