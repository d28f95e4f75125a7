/* test_net.c - the transports under net.h, TCP and MPI, through the same code:
 * one listener on "127.0.0.1:0,mpi"; at the same time a client connects over
 * TCP and two over MPI (two logical connections between the same ranks) and each
 * sends 40 frames of about 1 MiB (more than NET_HIGH_WATER) while the
 * server keeps reading paused, so the client's queue must stay above the
 * low-water mark until the server resumes; the server checks every byte and
 * order, pauses again in the middle of a burst, and echoes each frame; the
 * client sees on_drain, its queue at 0 once all echoes are back, and both ends
 * see the close. MPI runs as a singleton (this process is rank 0 and connects
 * to mpi:0, itself), so no mpirun is needed.
 *
 * Then the bounds of a listener, over loopback TCP with raw sockets where a
 * peer misbehaves: a silent connection and one trickling a hello byte by byte
 * are closed at the handshake deadline; an authenticated client trickling a
 * frame, or silent, is closed after idle_ms, but not while busy() says it has
 * work; at max_conns a new client evicts the oldest unauthenticated connection
 * and gets in, and when every connection is authenticated it is refused with
 * "too many connections". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "net_mpi.h"

#define N_FRAMES 40
#define FRAME_BASE (1u << 20)

/* Sanitizer builds: OpenMPI keeps allocations until exit (some in components it
 * has unloaded by then, so the slow unwinder is needed to see libmpi under them).
 * The same list as tests/lsan-mpi.supp; Baton's own code is not suppressed. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:libhwloc.so\n"
           "leak:libevent\nleak:mca_\n";
}

#include "check.h"

typedef struct test_case {
    const char *name, *addr;
    net_conn *cli, *srv;
    uv_timer_t resume;
    int got, echoes, closed;
    bool drained, paused_mid;
    size_t queued_after_send, queued_at_resume, queued_at_end;
    char srv_peer[64];
} test_case;

/* All cases run at once on one loop: TCP, and two MPI connections between the
 * same two ends (rank 0 and itself), multiplexed over one communicator. */
static test_case cases[] = {{.name = "tcp"}, {.name = "mpi", .addr = "mpi:0"}, {.name = "mpi2", .addr = "mpi:0"}};
#define N_CASES (int)(sizeof cases / sizeof cases[0])
static int ends_closed;

static size_t frame_len(int i) { return FRAME_BASE + (size_t)i * 4099u; }
static uint8_t frame_byte(int i, size_t j) { return (uint8_t)(i * 31 + j * 7); }

static void on_resume(uv_timer_t *t) {
    test_case *tc = t->data;
    if (!tc->queued_after_send && !tc->paused_mid) { /* the client has not sent its burst yet (a slow machine): */
        uv_timer_start(&tc->resume, on_resume, 50, 0); /* keep the server paused until it has */
        return;
    }
    if (!tc->queued_at_resume) tc->queued_at_resume = net_queued_bytes(tc->cli);
    net_pause(tc->srv, false);
}

/* server */
static void srv_open(net_conn *c) {
    test_case *tc = NULL;
    for (int i = 0; i < N_CASES; i++)
        if (!strcmp(net_peer_name(c), cases[i].name)) tc = &cases[i];
    CHECK(tc != NULL, "unknown client '%s'", net_peer_name(c));
    if (!tc) return;
    net_set_user(c, tc);
    tc->srv = c;
    snprintf(tc->srv_peer, sizeof tc->srv_peer, "%s", net_peer_addr(c));
    net_pause(c, true); /* the client's frames pile up */
    uv_timer_start(&tc->resume, on_resume, 150, 0);
}

static void srv_frame(net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    (void)msg;
    test_case *tc = net_user(c);
    int i = tc->got++;
    CHECK(h->kind == BATON__FRAME_KIND__FRAME_STAGE && h->call_id == (uint32_t)i, "%s: frame %d: kind %u call %u",
          tc->name, i, (unsigned)h->kind, (unsigned)h->call_id);
    CHECK(h->payload_len == frame_len(i), "%s: frame %d: %u bytes", tc->name, i, (unsigned)h->payload_len);
    size_t bad = 0;
    for (size_t j = 0; j < h->payload_len && j < frame_len(i); j += 61)
        if (payload[j] != frame_byte(i, j)) bad++;
    CHECK(bad == 0, "%s: frame %d: %zu wrong bytes", tc->name, i, bad);
    uint8_t echo[8] = {(uint8_t)i};
    net_send(c, BATON__FRAME_KIND__FRAME_STAGE, (uint32_t)i, NULL, echo, sizeof echo);
    if (i == N_FRAMES / 2 && !tc->paused_mid) { /* pause in the middle of a burst */
        tc->paused_mid = true;
        net_pause(c, true);
        uv_timer_start(&tc->resume, on_resume, 20, 0);
    }
}

static void on_closed(net_conn *c, const char *why) {
    test_case *tc = net_user(c);
    (void)why;
    if (tc) tc->closed++;
    if (++ends_closed == 2 * N_CASES) uv_stop(uv_default_loop());
}

/* client */
static void cli_open(net_conn *c) {
    test_case *tc = net_user(c);
    uint8_t *buf = malloc(frame_len(N_FRAMES));
    for (int i = 0; i < N_FRAMES; i++) {
        for (size_t j = 0; j < frame_len(i); j++) buf[j] = frame_byte(i, j);
        CHECK(net_send(c, BATON__FRAME_KIND__FRAME_STAGE, (uint32_t)i, NULL, buf, frame_len(i)) == 0, "%s: send %d",
              tc->name, i);
    }
    free(buf);
    tc->queued_after_send = net_queued_bytes(c);
}

static void cli_frame(net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    (void)msg;
    test_case *tc = net_user(c);
    CHECK(h->call_id == (uint32_t)tc->echoes && h->payload_len == 8 && payload[0] == (uint8_t)tc->echoes,
          "%s: echo %d out of order", tc->name, tc->echoes);
    if (++tc->echoes == N_FRAMES) {
        tc->queued_at_end = net_queued_bytes(c);
        net_close(c, "done");
    }
}

static void cli_drain(net_conn *c) { ((test_case *)net_user(c))->drained = true; }

static void on_guard(uv_timer_t *t) {
    CHECK(0, "timed out");
    uv_stop(t->loop);
}

/* Connects every case, runs the loop until all ends closed, checks each. */
static void run_cases(uv_loop_t *loop) {
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 120000, 0);
    static const net_handlers ch = {.on_open = cli_open, .on_frame = cli_frame, .on_drain = cli_drain,
                                    .on_close = on_closed};
    for (int k = 0; k < N_CASES; k++) {
        test_case *tc = &cases[k];
        uv_timer_init(loop, &tc->resume);
        tc->resume.data = tc;
        net_config cfg = {.cluster_id = "t", .role = BATON__ROLE__ROLE_PEER, .name = tc->name,
                          .log_prefix = "test_net"};
        char err[256];
        tc->cli = net_connect(loop, &cfg, tc->addr, NET_ROLE_BIT(PEER), &ch, tc, err, sizeof err);
        CHECK(tc->cli != NULL, "%s: connect %s: %s", tc->name, tc->addr, err);
        if (!tc->cli) ends_closed += 2;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (int k = 0; k < N_CASES; k++) {
        test_case *tc = &cases[k];
        const char *name = tc->name;
        CHECK(tc->got == N_FRAMES && tc->echoes == N_FRAMES, "%s: %d frames, %d echoes", name, tc->got, tc->echoes);
        CHECK(tc->queued_after_send > NET_HIGH_WATER, "%s: %zu bytes queued after sending", name,
              tc->queued_after_send);
        CHECK(tc->queued_at_resume > NET_LOW_WATER, "%s: only %zu bytes queued while the server was paused", name,
              tc->queued_at_resume);
        CHECK(tc->drained, "%s: no on_drain", name);
        CHECK(tc->queued_at_end == 0, "%s: %zu bytes still queued at the end", name, tc->queued_at_end);
        CHECK(tc->closed == 2, "%s: %d ends closed", name, tc->closed);
        printf("%-4s ok: %d frames of ~1 MiB, queue %.1f MiB after sending, %.1f MiB held by the paused reader, "
               "server saw peer %s\n",
               name, tc->got, tc->queued_after_send / 1048576.0, tc->queued_at_resume / 1048576.0, tc->srv_peer);
        uv_close((uv_handle_t *)&tc->resume, NULL);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* --- bounds: handshake deadline, idle timeout, connection limit ------------- */

typedef struct tconn {
    int opened, closed;
    char why[300];
} tconn;

static int srv_opened, srv_closed;
static char srv_why[300];
static bool srv_busy;

static void b_srv_open(net_conn *c) { (void)c, srv_opened++; }
static void b_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    (void)c, (void)h, (void)m, (void)p;
}
static void b_srv_close(net_conn *c, const char *why) {
    (void)c;
    srv_closed++;
    snprintf(srv_why, sizeof srv_why, "%s", why);
}
static bool b_busy(net_conn *c) { return (void)c, srv_busy; }
static void b_cli_open(net_conn *c) { ((tconn *)net_user(c))->opened++; }
static void b_cli_close(net_conn *c, const char *why) {
    tconn *t = net_user(c);
    t->closed++;
    snprintf(t->why, sizeof t->why, "%s", why);
}

static void b_stop(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop for ms milliseconds. */
static void run_ms(uv_loop_t *loop, int ms) {
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, b_stop, (uint64_t)ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* A raw loopback socket to port (the backlog takes it without the loop), non-blocking. */
static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    if (fd >= 0) fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* True if the other end closed fd (whatever it sent first is read and dropped). */
static bool raw_closed(int fd) {
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* A client's hello then its (empty) proof: what an open server takes as authenticated. */
static size_t raw_client_auth(uint8_t *buf) {
    uint8_t nonce[AUTH_NONCE_BYTES];
    auth_nonce(nonce);
    Baton__Hello h = BATON__HELLO__INIT;
    h.protocol_version = FRAME_PROTOCOL_VERSION;
    h.role = BATON__ROLE__ROLE_CLIENT;
    h.cluster_id = "t";
    h.name = "raw";
    h.nonce = (ProtobufCBinaryData){AUTH_NONCE_BYTES, nonce};
    size_t len = 0;
    frame_header fh = {.kind = BATON__FRAME_KIND__FRAME_HELLO, .msg_len = (uint32_t)baton__hello__get_packed_size(&h)};
    frame_header_encode(&fh, buf);
    len = FRAME_HEADER_BYTES + baton__hello__pack(&h, buf + FRAME_HEADER_BYTES);
    frame_header ph = {.kind = BATON__FRAME_KIND__FRAME_AUTH_PROOF};
    frame_header_encode(&ph, buf + len);
    return len + FRAME_HEADER_BYTES;
}

/* Writes one byte of a buffer to a raw socket per tick. */
typedef struct trickle {
    uv_timer_t t;
    int fd;
    const uint8_t *bytes;
    size_t len, at;
} trickle;

static void on_trickle(uv_timer_t *t) {
    trickle *tr = t->data;
    if (tr->at < tr->len && send(tr->fd, tr->bytes + tr->at, 1, MSG_NOSIGNAL) == 1) tr->at++;
}

static void trickle_start(uv_loop_t *loop, trickle *tr, int fd, const uint8_t *bytes, size_t len) {
    *tr = (trickle){.fd = fd, .bytes = bytes, .len = len};
    uv_timer_init(loop, &tr->t);
    tr->t.data = tr;
    uv_timer_start(&tr->t, on_trickle, 20, 20);
}

static void test_bounds(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256], addr[64];
    net_config scfg = {.cluster_id = "t", .role = BATON__ROLE__ROLE_COORDINATOR, .name = "server",
                       .log_prefix = "test_net-bounds", .handshake_ms = 300, .idle_ms = 300};
    static const net_handlers sh = {.on_open = b_srv_open, .on_frame = b_frame, .on_close = b_srv_close,
                                    .busy = b_busy};
    const uint32_t roles = NET_ROLE_BIT(CLIENT);
    net_server *s = net_listen(&loop, &scfg, "127.0.0.1:0", roles, &sh, NULL, err, sizeof err);
    CHECK(s != NULL, "bounds: listen: %s", err);
    if (!s) return;
    int port = net_server_port(s);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);

    /* a silent connection, and one trickling its hello a byte every 20 ms */
    uint8_t hello[512];
    size_t hello_len = raw_client_auth(hello);
    int silent = raw_connect(port), slow = raw_connect(port);
    trickle tr;
    trickle_start(&loop, &tr, slow, hello, hello_len);
    run_ms(&loop, 150);
    CHECK(!raw_closed(silent) && !raw_closed(slow), "bounds: closed before the handshake deadline");
    run_ms(&loop, 350);
    CHECK(raw_closed(silent), "bounds: a silent connection outlived the handshake deadline");
    CHECK(raw_closed(slow) && tr.at > 5 && tr.at < hello_len,
          "bounds: a trickling hello (%zu of %zu bytes sent) outlived the handshake deadline", tr.at, hello_len);
    CHECK(srv_opened == 0 && strstr(srv_why, "did not authenticate within 300 ms"), "bounds: server why '%s'",
          srv_why);
    printf("handshake deadline: silent and trickling (%zu of %zu hello bytes) connections closed: %s\n", tr.at,
           hello_len, srv_why);
    uv_close((uv_handle_t *)&tr.t, NULL);
    close(silent);
    close(slow);

    /* authenticated, then a frame header trickled: idle, because no frame completes */
    int raw = raw_connect(port);
    CHECK(raw >= 0 && send(raw, hello, hello_len, 0) == (ssize_t)hello_len, "bounds: raw client auth");
    run_ms(&loop, 50);
    CHECK(srv_opened == 1, "bounds: the raw client did not open");
    /* a Health header announcing a 100-byte message that never comes */
    static const uint8_t header[FRAME_HEADER_BYTES] = {0x42, 0x54, 0x4e, 0x31, 16, [12] = 100};
    trickle tr2;
    trickle_start(&loop, &tr2, raw, header, sizeof header);
    run_ms(&loop, 200);
    CHECK(!raw_closed(raw), "bounds: the trickling client closed before idle_ms");
    run_ms(&loop, 400);
    CHECK(raw_closed(raw) && strstr(srv_why, "idle for 300 ms"), "bounds: a trickling client is not idle: '%s'",
          srv_why);
    printf("idle: a client trickling a frame header (%zu bytes) closed: %s\n", tr2.at, srv_why);
    uv_close((uv_handle_t *)&tr2.t, NULL);
    close(raw);

    /* an idle client: kept while busy, closed once not */
    static const net_handlers ch = {.on_open = b_cli_open, .on_frame = b_frame, .on_close = b_cli_close};
    net_config ccfg = {.cluster_id = "t", .role = BATON__ROLE__ROLE_CLIENT, .name = "client",
                       .log_prefix = "test_net-client"};
    tconn idle = {0};
    srv_busy = true;
    net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &idle, err, sizeof err);
    run_ms(&loop, 800);
    CHECK(idle.opened == 1 && idle.closed == 0, "bounds: a busy client was closed: '%s'", idle.why);
    srv_busy = false;
    run_ms(&loop, 500);
    CHECK(idle.closed == 1 && strstr(srv_why, "idle"), "bounds: an idle client not closed ('%s', '%s')", idle.why,
          srv_why);
    printf("idle: kept 800 ms while busy, then closed: %s\n", srv_why);
    net_server_close(s);

    /* the limit: 3 connections; silent ones are evicted oldest first */
    scfg.idle_ms = 0;
    scfg.handshake_ms = 10000;
    scfg.max_conns = 3;
    s = net_listen(&loop, &scfg, "127.0.0.1:0", roles, &sh, NULL, err, sizeof err);
    CHECK(s != NULL, "bounds: listen: %s", err);
    if (!s) return;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(s));
    int held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = raw_connect(net_server_port(s));
        run_ms(&loop, 30); /* accepted in this order */
    }
    tconn a = {0}, b = {0}, c3 = {0};
    net_conn *ca = net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &a, err, sizeof err);
    run_ms(&loop, 150);
    CHECK(a.opened == 1 && a.closed == 0, "bounds: a client at the limit did not get in: '%s'", a.why);
    CHECK(raw_closed(held[0]) && !raw_closed(held[1]) && !raw_closed(held[2]),
          "bounds: not the oldest unauthenticated connection was evicted");
    net_conn *cb = net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &b, err, sizeof err);
    run_ms(&loop, 150);
    CHECK(b.opened == 1 && raw_closed(held[1]) && !raw_closed(held[2]), "bounds: second client: '%s'", b.why);
    /* two clients and a silent one: a third client evicts the silent one; a fourth is refused */
    net_conn *cc = net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &c3, err, sizeof err);
    run_ms(&loop, 150);
    CHECK(c3.opened == 1 && raw_closed(held[2]), "bounds: third client: '%s'", c3.why);
    tconn d = {0};
    net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &d, err, sizeof err);
    run_ms(&loop, 150);
    CHECK(d.opened == 0 && d.closed == 1 && strstr(d.why, "too many connections (3)"),
          "bounds: a client over the limit of authenticated ones: opened %d, '%s'", d.opened, d.why);
    CHECK(a.closed + b.closed + c3.closed == 0, "bounds: an authenticated client was closed");
    printf("limit 3: three silent connections evicted oldest first by three clients; a fourth -> %s\n", d.why);
    for (int i = 0; i < 3; i++) close(held[i]);
    net_close(ca, "done");
    net_close(cb, "done");
    net_close(cc, "done");
    net_server_close(s);
    run_ms(&loop, 100);
    CHECK(uv_loop_close(&loop) == 0, "bounds: handles left open on the loop");
}

int main(void) {
    /* a singleton MPI process on this machine, also as root */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    char err[256];
    if (net_mpi_init(err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    net_config scfg = {.cluster_id = "t", .role = BATON__ROLE__ROLE_PEER, .name = "server", .log_prefix = "test_net"};
    static const net_handlers sh = {.on_open = srv_open, .on_frame = srv_frame, .on_close = on_closed};
    net_server *s = net_listen(loop, &scfg, "127.0.0.1:0,mpi", NET_ROLE_BIT(PEER), &sh, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "FAIL: listen: %s\n", err);
        return 1;
    }
    char tcp_addr[64];
    snprintf(tcp_addr, sizeof tcp_addr, "127.0.0.1:%d", net_server_port(s));
    cases[0].addr = tcp_addr;
    run_cases(loop);
    CHECK(!strcmp(cases[1].srv_peer, "mpi:0"), "MPI peer address '%s'", cases[1].srv_peer);
    /* bad MPI addresses fail at once with a message */
    net_config cfg = scfg;
    static const net_handlers none = {0};
    CHECK(!net_connect(loop, &cfg, "mpi:7", NET_ROLE_BIT(PEER), &none, NULL, err, sizeof err) &&
              strstr(err, "not an MPI rank"),
          "mpi:7 in a job of 1: '%s'", err);
    CHECK(!net_listen(loop, &cfg, "mpi", NET_ROLE_BIT(PEER), &none, NULL, err, sizeof err) &&
              strstr(err, "already listens"),
          "second MPI listener: '%s'", err);
    net_server_close(s);
    uv_run(loop, UV_RUN_NOWAIT);
    net_mpi_finalize();
    uv_run(loop, UV_RUN_NOWAIT);
    uv_loop_close(loop);
    test_bounds();
    if (failures) {
        fprintf(stderr, "test_net: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_net: all passed\n");
    return 0;
}
