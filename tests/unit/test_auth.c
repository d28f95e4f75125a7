/* test_auth.c - credentials, MACs and the authenticated hello.
 *
 * Unit: a MAC verifies with its key and transcript only - a wrong key, a
 * tampered nonce (either side's), another cluster id or role, the other side's
 * or another purpose's MAC, a truncated MAC are all refused; comparisons go
 * through the constant-time auth_equal; credential files are checked (missing,
 * empty, short, readable by others, trailing newline ignored); key files skip
 * comments and name the line of a short key.
 * Live, over loopback with net.c: a worker holding the secret opens; a wrong or
 * missing secret is refused with UNAUTHENTICATED and a reason on both sides; a
 * node that holds a secret refuses a peer that has none; a connector detects an
 * acceptor that cannot prove the secret; clients need an API key and admins
 * the admin token when those are on (and no admin gets in where keys are on
 * but no token is set); a frame sent after the hello but before
 * the proof is refused and never reaches the server's handler.
 * Stage links (peer to peer) prove the plan's link key both ways, with or
 * without a cluster secret: a stale, missing or all-zero key is refused, and
 * the key is read at each handshake. A fake acceptor that echoes the
 * connector's own proofs back (cluster secret or link key) is refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "baton.pb-c.h"
#include "frame.h"
#include "net.h"

#include "check.h"

static auth_key key_of(const char *s) {
    auth_key k;
    char err[200];
    if (auth_key_from(s, strlen(s), &k, err, sizeof err) != 0) {
        printf("FAIL key '%s': %s\n", s, err);
        failures++;
    }
    return k;
}

/* --- unit ------------------------------------------------------------------ */

static void test_mac(void) {
    char err[200];
    auth_key k;
    CHECK(auth_key_from("short", 5, &k, err, sizeof err) == -1 && strstr(err, "at least"), "short key: '%s'", err);
    auth_key a = key_of("correct horse battery staple"), b = key_of("correct horse battery stapler");
    uint8_t nc[AUTH_NONCE_BYTES], na[AUTH_NONCE_BYTES];
    auth_nonce(nc);
    auth_nonce(na);
    CHECK(!auth_equal(nc, na, sizeof nc), "two nonces are equal");
    auth_transcript t = {"alpha", BATON__ROLE__ROLE_WORKER, BATON__ROLE__ROLE_COORDINATOR, nc, na};
    uint8_t mac[AUTH_MAC_BYTES], again[AUTH_MAC_BYTES];
    auth_mac(&a, AUTH_NODE, AUTH_CONNECTOR, &t, mac);
    auth_mac(&a, AUTH_NODE, AUTH_CONNECTOR, &t, again);
    CHECK(auth_equal(mac, again, sizeof mac), "the MAC is not deterministic");
    CHECK(auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t, mac, sizeof mac), "a good MAC is refused");
    CHECK(!auth_verify(&b, AUTH_NODE, AUTH_CONNECTOR, &t, mac, sizeof mac), "a MAC verifies under another key");
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_ACCEPTOR, &t, mac, sizeof mac), "the connector's MAC passes as the acceptor's");
    CHECK(!auth_verify(&a, AUTH_CLIENT, AUTH_CONNECTOR, &t, mac, sizeof mac), "a node MAC passes as a client's");
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t, mac, sizeof mac - 1), "a truncated MAC verifies");
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t, NULL, 0), "an empty MAC verifies");
    for (int side = 0; side < 2; side++) { /* flip one bit of either nonce */
        uint8_t *n = side ? na : nc;
        n[7] ^= 0x10;
        CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t, mac, sizeof mac), "tampered %s nonce verifies",
              side ? "acceptor" : "connector");
        n[7] ^= 0x10;
    }
    auth_transcript t2 = t;
    t2.cluster_id = "beta";
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t2, mac, sizeof mac), "another cluster id verifies");
    t2 = t;
    t2.role_connector = BATON__ROLE__ROLE_PEER;
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t2, mac, sizeof mac), "another role verifies");
    uint8_t bad[AUTH_MAC_BYTES];
    memcpy(bad, mac, sizeof bad);
    bad[AUTH_MAC_BYTES - 1] ^= 1;
    CHECK(!auth_verify(&a, AUTH_NODE, AUTH_CONNECTOR, &t, bad, sizeof bad), "a MAC with its last bit flipped verifies");
    /* the constant-time comparison itself */
    CHECK(auth_equal(mac, again, AUTH_MAC_BYTES) && !auth_equal(mac, bad, AUTH_MAC_BYTES), "auth_equal is wrong");
    bad[AUTH_MAC_BYTES - 1] ^= 1;
    bad[0] ^= 0x80;
    CHECK(!auth_equal(mac, bad, AUTH_MAC_BYTES), "auth_equal misses a difference in the first byte");

    auth_keyring ring = {(auth_key[]){b, a}, 2};
    uint8_t cm[AUTH_MAC_BYTES];
    auth_mac(&a, AUTH_CLIENT, AUTH_CONNECTOR, &t, cm);
    CHECK(auth_keyring_match(&ring, AUTH_CLIENT, AUTH_CONNECTOR, &t, cm, sizeof cm) == 1, "keyring: key 1 not found");
    CHECK(auth_keyring_match(&ring, AUTH_ADMIN, AUTH_CONNECTOR, &t, cm, sizeof cm) == -1, "keyring: wrong purpose");
}

static char dir[64];

/* Writes text to dir/name with the given mode; returns the path (static). */
static const char *put_file(const char *name, const char *text, mode_t mode) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) printf("cannot write %s\n", path);
    if (fd >= 0) close(fd);
    chmod(path, mode);
    return path;
}

static void test_files(void) {
    char err[300];
    auth_key k, want = key_of("0123456789abcdef0123");
    CHECK(auth_key_load("/nonexistent/baton-secret", "cluster secret", &k, err, sizeof err) == -1 &&
              strstr(err, "No such file"), "missing: '%s'", err);
    CHECK(auth_key_load(put_file("empty", "\n", 0600), "cluster secret", &k, err, sizeof err) == -1 &&
              strstr(err, "empty"), "empty: '%s'", err);
    CHECK(auth_key_load(put_file("short", "tooshort\n", 0600), "cluster secret", &k, err, sizeof err) == -1 &&
              strstr(err, "at least 16"), "short: '%s'", err);
    CHECK(auth_key_load(put_file("ok", "0123456789abcdef0123\n", 0600), "cluster secret", &k, err, sizeof err) == 0 &&
              auth_equal(k.k, want.k, sizeof k.k), "a good secret (trailing newline ignored) loads differently");
    CHECK(auth_key_load(put_file("open", "0123456789abcdef0123", 0644), "cluster secret", &k, err, sizeof err) == 1 &&
              strstr(err, "chmod 600") && auth_equal(k.k, want.k, sizeof k.k), "readable by others: '%s'", err);
    printf("secret file readable by others -> %s\n", err);

    auth_keyring r;
    const char *keys = "# client keys\n\n  key-number-one-0001  \nkey-number-two-0002\n";
    CHECK(auth_keyring_load(put_file("keys", keys, 0600), &r, err, sizeof err) == 0 && r.n == 2, "keyring: %zu keys",
          r.n);
    auth_key two = key_of("key-number-two-0002");
    CHECK(r.n == 2 && auth_equal(r.keys[1].k, two.k, sizeof two.k), "keyring: second key differs");
    auth_keyring_free(&r);
    CHECK(auth_keyring_load(put_file("badkeys", "key-number-one-0001\nshort\n", 0600), &r, err, sizeof err) == -1 &&
              strstr(err, "line 2"), "short key: '%s'", err);
    CHECK(auth_keyring_load(put_file("nokeys", "# none\n", 0600), &r, err, sizeof err) == -1 && strstr(err, "no key"),
          "no keys: '%s'", err);
}

/* --- live ------------------------------------------------------------------ */

typedef struct live {
    uv_loop_t *loop;
    int opened_server, frames_server, opened_client, closed_client;
    char client_why[300];
} live;

static void srv_open(net_conn *c) { ((live *)net_user(c))->opened_server++; }
static void srv_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    (void)m, (void)p;
    ((live *)net_user(c))->frames_server++;
    net_send_status(c, h->call_id, 0, "pong");
}
static void srv_close(net_conn *c, const char *why) { (void)c, (void)why; }
static void cli_open(net_conn *c) {
    ((live *)net_user(c))->opened_client++;
    net_close(c, "done");
}
static void cli_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    (void)c, (void)h, (void)m, (void)p;
}
static void cli_close(net_conn *c, const char *why) {
    live *L = net_user(c);
    L->closed_client++;
    snprintf(L->client_why, sizeof L->client_why, "%s", why);
    uv_stop(L->loop);
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until a client closes or ms pass. */
static void run_for(uv_loop_t *loop, int ms) {
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop, (uint64_t)ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Connects with cfg to addr, runs until that connection closes; true if it opened. */
static bool try_connect(live *L, const net_config *cfg, const char *addr, uint32_t accept) {
    static const net_handlers ch = {.on_open = cli_open, .on_frame = cli_frame, .on_close = cli_close};
    char err[256];
    int before = L->opened_client, closed = L->closed_client;
    L->client_why[0] = 0;
    if (!net_connect(L->loop, cfg, addr, accept, &ch, L, err, sizeof err)) return false;
    for (int i = 0; i < 50 && L->closed_client == closed; i++) run_for(L->loop, 100);
    return L->opened_client > before;
}

/* One case: connect, expect it to open or to be refused with `why` in the reason. */
static void expect(live *L, const char *name, const net_config *cfg, const char *addr, uint32_t accept,
                   const char *why) {
    int srv_before = L->opened_server;
    bool opened = try_connect(L, cfg, addr, accept);
    if (!why) {
        CHECK(opened && L->opened_server == srv_before + 1, "%s: not opened (%s)", name, L->client_why);
    } else {
        CHECK(!opened && L->opened_server == srv_before && strstr(L->client_why, why),
              "%s: opened %d, server opened %d, why '%s'", name, opened, L->opened_server - srv_before, L->client_why);
        printf("%s -> %s\n", name, L->client_why);
    }
}

/* Blocking raw socket to addr (the listen backlog accepts it without the loop). */
static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Appends a frame (header + packed msg) to buf at *len. */
static void raw_frame(uint8_t *buf, size_t *len, uint32_t kind, const ProtobufCMessage *m) {
    size_t ml = m ? protobuf_c_message_get_packed_size(m) : 0;
    frame_header h = {.kind = (uint16_t)kind, .msg_len = (uint32_t)ml};
    frame_header_encode(&h, buf + *len);
    if (m) protobuf_c_message_pack(m, buf + *len + FRAME_HEADER_BYTES);
    *len += FRAME_HEADER_BYTES + ml;
}

typedef struct raw_got {
    int n;
    uint32_t kinds[8];
    int status;
    char message[200];
    uint8_t nonce[AUTH_NONCE_BYTES];
    /* the connector's AuthProof, as received */
    uint8_t cluster_proof[AUTH_MAC_BYTES], link_proof[AUTH_MAC_BYTES];
    size_t cluster_len, link_len;
} raw_got;

/* Copies a proof of at most AUTH_MAC_BYTES into dst; its length, or 0. */
static size_t copy_proof(uint8_t dst[AUTH_MAC_BYTES], ProtobufCBinaryData b) {
    if (b.len > AUTH_MAC_BYTES) return 0;
    if (b.len) memcpy(dst, b.data, b.len);
    return b.len;
}

static int raw_collect(void *ctx, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    raw_got *g = ctx;
    (void)payload;
    if (g->n < 8) g->kinds[g->n] = h->kind;
    g->n++;
    if (h->kind == BATON__FRAME_KIND__FRAME_CALL_STATUS) {
        Baton__CallStatus *st = baton__call_status__unpack(NULL, h->msg_len, msg);
        if (st) {
            g->status = st->code;
            snprintf(g->message, sizeof g->message, "%s", st->message ? st->message : "");
            baton__call_status__free_unpacked(st, NULL);
        }
    } else if (h->kind == BATON__FRAME_KIND__FRAME_HELLO) {
        Baton__Hello *he = baton__hello__unpack(NULL, h->msg_len, msg);
        if (he && he->nonce.len == AUTH_NONCE_BYTES) memcpy(g->nonce, he->nonce.data, AUTH_NONCE_BYTES);
        if (he) baton__hello__free_unpacked(he, NULL);
    } else if (h->kind == BATON__FRAME_KIND__FRAME_AUTH_PROOF) {
        Baton__AuthProof *p = baton__auth_proof__unpack(NULL, h->msg_len, msg);
        if (p) {
            g->cluster_len = copy_proof(g->cluster_proof, p->cluster_proof);
            g->link_len = copy_proof(g->link_proof, p->link_proof);
            baton__auth_proof__free_unpacked(p, NULL);
        }
    }
    return 0;
}

/* Reads what the peer sent on fd (non-blocking) into g. */
static void raw_read(int fd, raw_got *g) {
    uint8_t buf[4096];
    frame_reader r;
    frame_reader_init(&r, 1 << 16);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) frame_reader_feed(&r, buf, (size_t)n, raw_collect, g);
    frame_reader_free(&r);
}

static Baton__Hello raw_hello(uint32_t role, uint8_t nonce[AUTH_NONCE_BYTES]) {
    Baton__Hello h = BATON__HELLO__INIT;
    h.protocol_version = FRAME_PROTOCOL_VERSION;
    h.role = (Baton__Role)role;
    h.cluster_id = "alpha";
    h.name = "raw";
    auth_nonce(nonce);
    h.nonce = (ProtobufCBinaryData){AUTH_NONCE_BYTES, nonce};
    return h;
}

/* A client sends its hello and a Health call at once, before any proof: the
 * call is refused and never reaches the server's handler. */
static void test_frame_before_auth(live *L, int port) {
    int fd = raw_connect(port);
    CHECK(fd >= 0, "raw connect");
    if (fd < 0) return;
    uint8_t nonce[AUTH_NONCE_BYTES], buf[512];
    size_t len = 0;
    Baton__Hello h = raw_hello(BATON__ROLE__ROLE_CLIENT, nonce);
    Baton__HealthRequest hr = BATON__HEALTH_REQUEST__INIT;
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_HELLO, &h.base);
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_HEALTH, &hr.base);
    CHECK(write(fd, buf, len) == (ssize_t)len, "raw write");
    int frames = L->frames_server, opened = L->opened_server;
    run_for(L->loop, 300);
    raw_got g = {0};
    raw_read(fd, &g);
    close(fd);
    CHECK(g.n == 2 && g.kinds[0] == BATON__FRAME_KIND__FRAME_HELLO && g.status == BATON__STATUS_CODE__STATUS_UNAUTHENTICATED &&
              strstr(g.message, "before authentication"),
          "frame before the proof: %d frames, status %d '%s'", g.n, g.status, g.message);
    CHECK(L->frames_server == frames && L->opened_server == opened, "a frame before the proof was served");
    printf("frame before the proof -> status %d: %s\n", g.status, g.message);
}

/* A fake acceptor answers a worker's hello and proof with an AuthOk whose proof
 * is made with the wrong secret: the worker must not open. */
static void test_fake_acceptor(live *L, const net_config *worker_cfg) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        CHECK(0, "fake acceptor: cannot listen");
        return;
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    static const net_handlers ch = {.on_open = cli_open, .on_frame = cli_frame, .on_close = cli_close};
    char err[256];
    int opened = L->opened_client, closed = L->closed_client;
    net_connect(L->loop, worker_cfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, L, err, sizeof err);
    run_for(L->loop, 200); /* connect, send the hello */
    int fd = accept(lfd, NULL, NULL);
    CHECK(fd >= 0, "fake acceptor: accept");
    if (fd < 0) return;
    raw_got g = {0};
    raw_read(fd, &g);
    uint8_t nonce[AUTH_NONCE_BYTES], buf[512], mac[AUTH_MAC_BYTES];
    size_t len = 0;
    Baton__Hello h = raw_hello(BATON__ROLE__ROLE_COORDINATOR, nonce);
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_HELLO, &h.base);
    CHECK(write(fd, buf, len) == (ssize_t)len, "fake acceptor: write hello");
    run_for(L->loop, 200); /* the worker sends its proof */
    auth_key wrong = key_of("not-the-cluster-secret-at-all");
    auth_transcript t = {"alpha", BATON__ROLE__ROLE_WORKER, BATON__ROLE__ROLE_COORDINATOR, g.nonce, nonce};
    auth_mac(&wrong, AUTH_NODE, AUTH_ACCEPTOR, &t, mac);
    Baton__AuthOk ok = BATON__AUTH_OK__INIT;
    ok.cluster_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, mac};
    len = 0;
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_AUTH_OK, &ok.base);
    CHECK(write(fd, buf, len) == (ssize_t)len, "fake acceptor: write auth ok");
    for (int i = 0; i < 20 && L->closed_client == closed; i++) run_for(L->loop, 100);
    CHECK(L->opened_client == opened && L->closed_client == closed + 1 && strstr(L->client_why, "failed to prove"),
          "fake acceptor: worker opened %d, why '%s'", L->opened_client - opened, L->client_why);
    printf("acceptor without the secret -> %s\n", L->client_why);
    close(fd);
    close(lfd);
}

/* How a fake acceptor answers the connector's proof. */
typedef enum fake_mode {
    FAKE_REFLECT,   /* the connector's own proofs back in the AuthOk (an echoing acceptor) */
    FAKE_WRONG_LINK, /* a link proof made with another key */
    FAKE_NO_LINK,   /* no link proof at all */
} fake_mode;

/* A fake acceptor: a raw loopback server speaking frames by hand takes a
 * connection from cfg (accepting role `role` from it), answers its hello with a
 * hello of role `role`, reads its AuthProof and answers with an AuthOk made as
 * `mode` says. True if the connector opened (it never should); its reason in
 * L->client_why. */
static bool fake_acceptor(live *L, const net_config *cfg, uint32_t role, fake_mode mode) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        CHECK(0, "fake acceptor: cannot listen");
        if (lfd >= 0) close(lfd);
        return false;
    }
    char addr[64], err[256];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    static const net_handlers ch = {.on_open = cli_open, .on_frame = cli_frame, .on_close = cli_close};
    int opened = L->opened_client, closed = L->closed_client;
    L->client_why[0] = 0;
    CHECK(net_connect(L->loop, cfg, addr, 1u << role, &ch, L, err, sizeof err) != NULL, "fake acceptor: %s", err);
    run_for(L->loop, 200); /* connect, send the hello */
    int fd = accept(lfd, NULL, NULL);
    close(lfd);
    CHECK(fd >= 0, "fake acceptor: accept");
    if (fd < 0) return false;
    raw_got g = {0};
    raw_read(fd, &g);
    uint8_t nonce[AUTH_NONCE_BYTES], buf[512], mac[AUTH_MAC_BYTES];
    size_t len = 0;
    Baton__Hello h = raw_hello(role, nonce);
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_HELLO, &h.base);
    CHECK(write(fd, buf, len) == (ssize_t)len, "fake acceptor: write hello");
    run_for(L->loop, 200); /* the connector sends its proof */
    raw_read(fd, &g);
    Baton__AuthOk ok = BATON__AUTH_OK__INIT;
    if (mode == FAKE_REFLECT) {
        CHECK(g.cluster_len == AUTH_MAC_BYTES || g.link_len == AUTH_MAC_BYTES, "fake acceptor: no proof to reflect");
        ok.cluster_proof = (ProtobufCBinaryData){g.cluster_len, g.cluster_proof};
        ok.link_proof = (ProtobufCBinaryData){g.link_len, g.link_proof};
    } else if (mode == FAKE_WRONG_LINK) {
        auth_key wrong = key_of("not-the-link-key-of-this-plan");
        auth_transcript t = {"alpha", cfg->role, role, g.nonce, nonce};
        auth_mac(&wrong, AUTH_LINK, AUTH_ACCEPTOR, &t, mac);
        ok.link_proof = (ProtobufCBinaryData){AUTH_MAC_BYTES, mac};
    }
    len = 0;
    raw_frame(buf, &len, BATON__FRAME_KIND__FRAME_AUTH_OK, &ok.base);
    CHECK(write(fd, buf, len) == (ssize_t)len, "fake acceptor: write auth ok");
    for (int i = 0; i < 20 && L->closed_client == closed; i++) run_for(L->loop, 100);
    close(fd);
    return L->opened_client > opened;
}

/* An acceptor that echoes the connector's own proofs back must not pass for
 * one that holds the key: each side's MAC is bound to its side. */
static void test_reflecting_acceptor(live *L, const auth_key *secret) {
    net_config w = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_WORKER, .log_prefix = "test-worker",
                    .secret = secret};
    bool opened = fake_acceptor(L, &w, BATON__ROLE__ROLE_COORDINATOR, FAKE_REFLECT);
    CHECK(!opened && strstr(L->client_why, "failed to prove the cluster secret"),
          "reflecting acceptor (worker): opened %d, why '%s'", opened, L->client_why);
    printf("acceptor reflecting the worker's cluster proof -> %s\n", L->client_why);
    auth_key link = key_of("the-link-key-of-plan-7-000");
    net_config p = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_PEER, .log_prefix = "test-peer",
                    .secret = secret, .link_key = &link};
    opened = fake_acceptor(L, &p, BATON__ROLE__ROLE_PEER, FAKE_REFLECT);
    CHECK(!opened && strstr(L->client_why, "failed to prove the cluster secret"),
          "reflecting acceptor (peer): opened %d, why '%s'", opened, L->client_why);
    p.secret = NULL; /* the link proof alone */
    opened = fake_acceptor(L, &p, BATON__ROLE__ROLE_PEER, FAKE_REFLECT);
    CHECK(!opened && strstr(L->client_why, "did not prove this plan's link key"),
          "reflecting acceptor (peer, link key only): opened %d, why '%s'", opened, L->client_why);
    printf("acceptor reflecting the peer's link proof -> %s\n", L->client_why);
}

/* Stage links: both workers prove the plan's link key, with or without a
 * cluster secret; a wrong, missing or not-yet-set key is refused either way. */
static void test_link_key(live *L, const auth_key *secret) {
    auth_key plan = key_of("the-link-key-of-plan-1-000"), stale = key_of("the-link-key-of-plan-0-000");
    auth_key srv_key = plan;
    net_config scfg = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_PEER, .log_prefix = "test-stage",
                       .link_key = &srv_key};
    static const net_handlers sh = {.on_open = srv_open, .on_frame = srv_frame, .on_close = srv_close};
    char err[256], addr[64];
    net_server *s = net_listen(L->loop, &scfg, "127.0.0.1:0", NET_ROLE_BIT(PEER), &sh, L, err, sizeof err);
    auth_key srv2_key = plan; /* a second acceptor, holding the secret too */
    net_config sec = scfg;
    sec.secret = secret;
    sec.link_key = &srv2_key;
    net_server *s2 = net_listen(L->loop, &sec, "127.0.0.1:0", NET_ROLE_BIT(PEER), &sh, L, err, sizeof err);
    CHECK(s && s2, "listen: %s", err);
    if (!s || !s2) return;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(s));
    const uint32_t peer = NET_ROLE_BIT(PEER);
    const char *refused = "did not prove this plan's link key";

    net_config p = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_PEER, .log_prefix = "test-peer"};
    p.link_key = &plan;
    expect(L, "peer with the plan's link key, no secret", &p, addr, peer, NULL);
    p.link_key = &stale;
    expect(L, "peer with a stale link key", &p, addr, peer, refused);
    p.link_key = NULL;
    expect(L, "peer without a link proof", &p, addr, peer, refused);
    srv_key = stale; /* a new plan on the acceptor: read through the pointer */
    p.link_key = &plan;
    expect(L, "peer of the old plan after the acceptor moved on", &p, addr, peer, refused);
    p.link_key = &stale;
    expect(L, "peer of the acceptor's new plan", &p, addr, peer, NULL);
    memset(&srv_key, 0, sizeof srv_key); /* no plan yet */
    expect(L, "any peer while the acceptor has no plan", &p, addr, peer, "no plan yet");
    auth_key zero = srv_key;
    p.link_key = &zero;
    expect(L, "a peer with a zero key while the acceptor has no plan", &p, addr, peer, "no plan yet");

    char addr2[64];
    snprintf(addr2, sizeof addr2, "127.0.0.1:%d", net_server_port(s2));
    net_config ps = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_PEER, .log_prefix = "test-peer",
                     .secret = secret, .link_key = &plan};
    expect(L, "peer with the secret and the link key", &ps, addr2, peer, NULL);
    ps.link_key = &stale;
    expect(L, "peer with the secret and a stale link key", &ps, addr2, peer, refused);

    /* the other direction: the connector checks the acceptor's proof */
    scfg.link_key = NULL; /* an acceptor that checks no link key and proves none */
    net_server *s3 = net_listen(L->loop, &scfg, "127.0.0.1:0", NET_ROLE_BIT(PEER), &sh, L, err, sizeof err);
    CHECK(s3 != NULL, "listen: %s", err);
    char addr3[64];
    snprintf(addr3, sizeof addr3, "127.0.0.1:%d", s3 ? net_server_port(s3) : 0);
    p.link_key = &plan;
    int srv_before = L->opened_server;
    bool opened = try_connect(L, &p, addr3, peer);
    CHECK(!opened && strstr(L->client_why, refused), "acceptor without a link key: opened %d, why '%s'", opened,
          L->client_why);
    printf("acceptor proving no link key -> %s (it had let the peer in: %d)\n", L->client_why,
           L->opened_server - srv_before);
    opened = fake_acceptor(L, &p, BATON__ROLE__ROLE_PEER, FAKE_WRONG_LINK);
    CHECK(!opened && strstr(L->client_why, refused), "acceptor with a wrong link key: opened %d, why '%s'", opened,
          L->client_why);
    printf("acceptor proving another link key -> %s\n", L->client_why);
    opened = fake_acceptor(L, &p, BATON__ROLE__ROLE_PEER, FAKE_NO_LINK);
    CHECK(!opened && strstr(L->client_why, refused), "acceptor with no link proof: opened %d, why '%s'", opened,
          L->client_why);
    p.link_key = &zero;
    opened = fake_acceptor(L, &p, BATON__ROLE__ROLE_PEER, FAKE_NO_LINK);
    CHECK(!opened && strstr(L->client_why, refused), "connector without a plan: opened %d, why '%s'", opened,
          L->client_why);

    net_server_close(s);
    net_server_close(s2);
    net_server_close(s3);
}

static void test_live(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    live L = {.loop = &loop};
    auth_key secret = key_of("the-cluster-secret-0001"), other = key_of("another-cluster-secret-02");
    auth_key token = key_of("the-admin-token-000001"), api = key_of("an-api-key-000000001");
    auth_keyring ring = {&api, 1};
    net_config scfg = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_COORDINATOR, .log_prefix = "test-coord",
                       .secret = &secret, .client_keys = &ring, .admin_token = &token};
    static const net_handlers sh = {.on_open = srv_open, .on_frame = srv_frame, .on_close = srv_close};
    uint32_t roles = NET_ROLE_BIT(WORKER) | NET_ROLE_BIT(CLIENT) | NET_ROLE_BIT(ADMIN);
    char err[256], addr[64], open_addr[64];
    net_server *s = net_listen(&loop, &scfg, "127.0.0.1:0", roles, &sh, &L, err, sizeof err);
    net_config ocfg = scfg; /* a coordinator with no credentials at all */
    ocfg.secret = NULL, ocfg.client_keys = NULL, ocfg.admin_token = NULL;
    net_server *open_s = net_listen(&loop, &ocfg, "127.0.0.1:0", roles, &sh, &L, err, sizeof err);
    net_config kcfg = ocfg; /* API keys but no admin token */
    kcfg.client_keys = &ring;
    net_server *keys_s = net_listen(&loop, &kcfg, "127.0.0.1:0", roles, &sh, &L, err, sizeof err);
    CHECK(s && open_s && keys_s, "listen: %s", err);
    if (!s || !open_s || !keys_s) return;
    char keys_addr[64];
    snprintf(keys_addr, sizeof keys_addr, "127.0.0.1:%d", net_server_port(keys_s));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(s));
    snprintf(open_addr, sizeof open_addr, "127.0.0.1:%d", net_server_port(open_s));
    const uint32_t coord = NET_ROLE_BIT(COORDINATOR);

    net_config w = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_WORKER, .log_prefix = "test-worker",
                    .secret = &secret};
    expect(&L, "worker with the secret", &w, addr, coord, NULL);
    w.secret = &other;
    expect(&L, "worker with a wrong secret", &w, addr, coord, "failed to prove the cluster secret");
    w.secret = NULL;
    expect(&L, "worker without a secret", &w, addr, coord, "no cluster-secret proof");
    expect(&L, "no secret on either side", &w, open_addr, coord, NULL);
    w.secret = &secret;
    expect(&L, "worker with a secret, coordinator without", &w, open_addr, coord, "has none");
    test_fake_acceptor(&L, &w);

    net_config cl = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_CLIENT, .log_prefix = "test-client"};
    expect(&L, "client without an API key", &cl, addr, coord, "no API key");
    cl.credential = &token;
    expect(&L, "client with a wrong API key", &cl, addr, coord, "not accepted");
    cl.credential = &api;
    expect(&L, "client with its API key", &cl, addr, coord, NULL);
    expect(&L, "client with a key, keys off", &cl, open_addr, coord, NULL);
    cl.credential = NULL;
    expect(&L, "client without a key, keys off", &cl, open_addr, coord, NULL);

    net_config ad = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_ADMIN, .log_prefix = "test-admin"};
    expect(&L, "admin without a token", &ad, addr, coord, "no admin token");
    ad.credential = &api;
    expect(&L, "admin with a wrong token", &ad, addr, coord, "admin token does not match");
    ad.credential = &token;
    expect(&L, "admin with the token", &ad, addr, coord, NULL);
    expect(&L, "admin where keys are on and no token is set", &ad, keys_addr, coord, "admin calls are off");
    ad.credential = NULL;
    expect(&L, "admin without a token, no credentials anywhere", &ad, open_addr, coord, NULL);

    test_frame_before_auth(&L, net_server_port(s));
    test_link_key(&L, &secret);
    test_reflecting_acceptor(&L, &secret);

    net_server_close(s);
    net_server_close(open_s);
    net_server_close(keys_s);
    run_for(&loop, 10);
    uv_loop_close(&loop);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/baton-test-auth.XXXXXX");
    if (!mkdtemp(dir)) {
        printf("cannot make a temporary folder: %s\n", strerror(errno));
        return 1;
    }
    test_mac();
    test_files();
    test_live();
    static const char *names[] = {"empty", "short", "ok", "open", "keys", "badkeys", "nokeys"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    printf(failures ? "test_auth: %d FAILURES\n" : "test_auth: all passed\n", failures);
    return failures ? 1 : 0;
}
