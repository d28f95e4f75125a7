/* test_net.c - the transports under net.h, TCP and MPI, through the same code:
 * one listener on "127.0.0.1:0,mpi"; at the same time a client connects over
 * TCP and two over MPI (two logical connections between the same ranks) and each
 * sends 40 frames of about 1 MiB (more than NET_HIGH_WATER) while the
 * server keeps reading paused, so the client's queue must stay above the
 * low-water mark until the server resumes; the server checks every byte and
 * order, pauses again in the middle of a burst, and echoes each frame; the
 * client sees on_drain, its queue at 0 once all echoes are back, and both ends
 * see the close. MPI runs as a singleton (this process is rank 0 and connects
 * to mpi:0, itself), so no mpirun is needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (failures) {
        fprintf(stderr, "test_net: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_net: all passed\n");
    return 0;
}
