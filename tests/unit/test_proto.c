/* test_proto.c - frames on a byte stream and the hello on a live connection.
 *
 * Checks: frames fed one byte at a time and in random splits come out whole and
 * in order; a bad magic or an oversized length is a connection error with a
 * clear message and never allocates the claimed size; truncated input delivers
 * nothing; a stop from the callback keeps the rest; CRC-32 matches zlib's check
 * value; over loopback, a matching hello opens the connection, a wrong cluster id
 * is refused with a message naming it, and an oversized frame closes only that
 * connection while the server keeps serving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baton.pb-c.h"
#include "frame.h"
#include "net.h"

#include "check.h"

typedef struct got {
    int n;
    uint32_t kinds[64], call[64];
    uint32_t msg_len[64], payload_len[64];
    uint8_t first_payload_byte[64];
    int stop_after;
} got;

static int collect(void *ctx, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    got *g = ctx;
    (void)msg;
    if (g->n < 64) {
        g->kinds[g->n] = h->kind;
        g->call[g->n] = h->call_id;
        g->msg_len[g->n] = h->msg_len;
        g->payload_len[g->n] = h->payload_len;
        g->first_payload_byte[g->n] = h->payload_len ? payload[0] : 0;
    }
    g->n++;
    return g->stop_after && g->n == g->stop_after;
}

/* Appends one frame of kind k with a msg of ml bytes and payload of pl bytes. */
static size_t put_frame(uint8_t *out, uint16_t k, uint32_t call, uint32_t ml, uint32_t pl) {
    frame_header h = {.kind = k, .call_id = call, .msg_len = ml, .payload_len = pl};
    frame_header_encode(&h, out);
    for (uint32_t i = 0; i < ml; i++) out[FRAME_HEADER_BYTES + i] = (uint8_t)(0x10 + i);
    for (uint32_t i = 0; i < pl; i++) out[FRAME_HEADER_BYTES + ml + i] = (uint8_t)(k + i);
    return FRAME_HEADER_BYTES + ml + pl;
}

static void test_reader(void) {
    uint8_t stream[4096];
    size_t len = 0;
    len += put_frame(stream + len, 1, 7, 5, 0);
    len += put_frame(stream + len, 40, 8, 0, 300);
    len += put_frame(stream + len, 2, 9, 0, 0);
    len += put_frame(stream + len, 41, 10, 33, 17);

    /* one byte at a time */
    frame_reader r;
    frame_reader_init(&r, 1 << 20);
    got g = {0};
    for (size_t i = 0; i < len; i++) CHECK(frame_reader_feed(&r, stream + i, 1, collect, &g) >= 0, "byte feed failed");
    CHECK(g.n == 4, "byte by byte: %d frames, expected 4", g.n);
    CHECK(g.kinds[0] == 1 && g.call[0] == 7 && g.msg_len[0] == 5, "frame 0 header wrong");
    CHECK(g.kinds[1] == 40 && g.payload_len[1] == 300 && g.first_payload_byte[1] == 40, "frame 1 payload wrong");
    CHECK(g.kinds[2] == 2 && g.msg_len[2] == 0 && g.payload_len[2] == 0, "empty frame wrong");
    CHECK(g.kinds[3] == 41 && g.msg_len[3] == 33 && g.payload_len[3] == 17 && g.first_payload_byte[3] == 41,
          "frame 3 wrong");
    frame_reader_free(&r);

    /* random splits, many times */
    srand(1234);
    for (int trial = 0; trial < 200; trial++) {
        frame_reader_init(&r, 1 << 20);
        got g2 = {0};
        for (size_t off = 0; off < len;) {
            size_t take = 1 + (size_t)rand() % 97;
            if (take > len - off) take = len - off;
            frame_reader_feed(&r, stream + off, take, collect, &g2);
            off += take;
        }
        CHECK(g2.n == 4 && g2.payload_len[1] == 300 && g2.call[3] == 10, "random split trial %d: %d frames", trial, g2.n);
        frame_reader_free(&r);
    }

    /* a stop from the callback keeps the rest for the next feed */
    frame_reader_init(&r, 1 << 20);
    got g3 = {.stop_after = 1};
    int d = frame_reader_feed(&r, stream, len, collect, &g3);
    CHECK(d == 1 && g3.n == 1, "stop: delivered %d", d);
    g3.stop_after = 0;
    d = frame_reader_feed(&r, NULL, 0, collect, &g3);
    CHECK(d == 3 && g3.n == 4 && g3.kinds[3] == 41, "after stop: delivered %d, total %d", d, g3.n);
    frame_reader_free(&r);

    /* truncated: everything but the last byte delivers the first three only */
    frame_reader_init(&r, 1 << 20);
    got g4 = {0};
    d = frame_reader_feed(&r, stream, len - 1, collect, &g4);
    CHECK(d == 3 && g4.n == 3, "truncated: delivered %d, expected 3", d);
    frame_reader_free(&r);

    /* garbage: bad magic is an error with a message, and stays an error */
    frame_reader_init(&r, 1 << 20);
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (uint8_t)(i * 37 + 5);
    got g5 = {0};
    d = frame_reader_feed(&r, junk, sizeof junk, collect, &g5);
    CHECK(d == -1 && g5.n == 0 && strstr(r.error, "magic"), "garbage: rc %d, error '%s'", d, r.error);
    printf("garbage -> %s\n", r.error);
    CHECK(frame_reader_feed(&r, stream, len, collect, &g5) == -1, "reader recovered after garbage");
    frame_reader_free(&r);

    /* oversized: the claimed length is refused from the header alone */
    frame_reader_init(&r, 1000);
    uint8_t big[FRAME_HEADER_BYTES];
    frame_header bh = {.kind = 40, .msg_len = 10, .payload_len = 0xfffffff0u};
    frame_header_encode(&bh, big);
    got g6 = {0};
    d = frame_reader_feed(&r, big, sizeof big, collect, &g6);
    CHECK(d == -1 && strstr(r.error, "exceeds the maximum"), "oversized: rc %d, error '%s'", d, r.error);
    CHECK(r.cap <= 4096, "oversized: reader allocated %zu bytes", r.cap);
    printf("oversized -> %s\n", r.error);
    frame_reader_free(&r);

    /* a frame exactly at the maximum passes */
    frame_reader_init(&r, 300);
    got g7 = {0};
    uint8_t at[FRAME_HEADER_BYTES + 300];
    size_t al = put_frame(at, 40, 1, 0, 300);
    CHECK(frame_reader_feed(&r, at, al, collect, &g7) == 1, "frame at the maximum refused: %s", r.error);
    frame_reader_free(&r);

    CHECK(frame_crc32(0, "123456789", 9) == 0xCBF43926u, "crc32 check value %08x", frame_crc32(0, "123456789", 9));
    CHECK(frame_crc32(frame_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u, "crc32 does not chain");
}

/* --- live connections --------------------------------------------------- */

typedef struct live {
    int opened_server, opened_client, closed_client, frames_server;
    char client_why[300];
    uv_loop_t *loop;
    int pending_clients;
} live;

static void srv_open(net_conn *c) { ((live *)net_user(c))->opened_server++; }
static void srv_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    live *L = net_user(c);
    (void)m, (void)p;
    L->frames_server++;
    /* echo a status so the client sees the server still works */
    net_send_status(c, h->call_id, 0, "pong");
}
static void srv_close(net_conn *c, const char *why) { (void)c, (void)why; }

static void cli_open(net_conn *c) {
    live *L = net_user(c);
    L->opened_client++;
}
static void cli_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    (void)h, (void)m, (void)p;
    net_close(c, "done");
}
static void cli_close(net_conn *c, const char *why) {
    live *L = net_user(c);
    L->closed_client++;
    snprintf(L->client_why, sizeof L->client_why, "%s", why);
    if (--L->pending_clients == 0) uv_stop(L->loop);
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

static void run_for(uv_loop_t *loop, int ms) {
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_loop, (uint64_t)ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void test_live(void) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    live L = {.loop = &loop};
    net_config scfg = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_COORDINATOR, .max_frame = 4096,
                       .log_prefix = "test-server"};
    net_handlers sh = {.on_open = srv_open, .on_frame = srv_frame, .on_close = srv_close};
    char err[256];
    net_server *s = net_listen(&loop, &scfg, "127.0.0.1:0", NET_ROLE_BIT(CLIENT), &sh, &L, err, sizeof err);
    CHECK(s != NULL, "listen: %s", err);
    if (!s) return;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", net_server_port(s));
    net_handlers ch = {.on_open = cli_open, .on_frame = cli_frame, .on_close = cli_close};

    /* 1. matching hello: both sides open; a call gets its answer */
    net_config ccfg = {.cluster_id = "alpha", .role = BATON__ROLE__ROLE_CLIENT, .log_prefix = "test-client"};
    L.pending_clients = 1;
    net_conn *c = net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &L, err, sizeof err);
    CHECK(c != NULL, "connect: %s", err);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, stop_loop, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* let the hellos pass */
    CHECK(L.opened_client == 1 && L.opened_server == 1, "hello: client opened %d, server opened %d", L.opened_client,
          L.opened_server);
    Baton__HealthRequest hr = BATON__HEALTH_REQUEST__INIT;
    if (L.opened_client) net_send(c, BATON__FRAME_KIND__FRAME_HEALTH, 5, &hr.base, NULL, 0);
    uv_timer_start(&t, stop_loop, 2000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(L.frames_server == 1 && L.closed_client == 1, "call: server frames %d, client closed %d", L.frames_server,
          L.closed_client);

    /* 2. wrong cluster id: refused, with the reason reaching the client */
    net_config bad = ccfg;
    bad.cluster_id = "beta";
    L.pending_clients = 1;
    c = net_connect(&loop, &bad, addr, NET_ROLE_BIT(COORDINATOR), &ch, &L, err, sizeof err);
    uv_timer_start(&t, stop_loop, 2000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(L.opened_client == 1 && L.closed_client == 2 && strstr(L.client_why, "cluster id"),
          "wrong cluster: opened %d, closed %d, why '%s'", L.opened_client, L.closed_client, L.client_why);
    printf("wrong cluster id -> %s\n", L.client_why);

    /* 3. wrong role: a worker is not accepted on a client-only server */
    net_config role = ccfg;
    role.role = BATON__ROLE__ROLE_WORKER;
    L.pending_clients = 1;
    c = net_connect(&loop, &role, addr, NET_ROLE_BIT(COORDINATOR), &ch, &L, err, sizeof err);
    uv_timer_start(&t, stop_loop, 2000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(L.closed_client == 3 && strstr(L.client_why, "role"), "wrong role: why '%s'", L.client_why);

    /* 4. oversized frame: that connection is closed, the server still serves */
    L.pending_clients = 1;
    net_config big = ccfg;
    big.max_frame = 1 << 20; /* the client may send it; the server's limit is 4096 */
    c = net_connect(&loop, &big, addr, NET_ROLE_BIT(COORDINATOR), &ch, &L, err, sizeof err);
    uv_timer_start(&t, stop_loop, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    static uint8_t blob[10000];
    int frames_before = L.frames_server;
    CHECK(net_send(c, BATON__FRAME_KIND__FRAME_HEALTH, 6, NULL, blob, sizeof blob) == 0, "send big");
    uv_timer_start(&t, stop_loop, 2000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(L.frames_server == frames_before && L.closed_client == 4, "oversized: server frames %d, client closed %d",
          L.frames_server, L.closed_client);
    printf("oversized frame -> client saw: %s\n", L.client_why);
    L.pending_clients = 1;
    c = net_connect(&loop, &ccfg, addr, NET_ROLE_BIT(COORDINATOR), &ch, &L, err, sizeof err);
    uv_timer_start(&t, stop_loop, 100, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    net_send(c, BATON__FRAME_KIND__FRAME_HEALTH, 7, &hr.base, NULL, 0);
    uv_timer_start(&t, stop_loop, 2000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(L.frames_server == frames_before + 1, "server stopped serving after an oversized frame");

    uv_close((uv_handle_t *)&t, NULL);
    net_server_close(s);
    run_for(&loop, 10);
    uv_loop_close(&loop);
}

int main(void) {
    test_reader();
    test_live();
    printf(failures ? "test_proto: %d FAILURES\n" : "test_proto: all passed\n", failures);
    return failures ? 1 : 0;
}
