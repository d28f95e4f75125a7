/* fuzz_common.c - the memory transport and helpers of the fuzz targets (fuzz_common.h). */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "net_io.h"

#ifndef FUZZ_MODEL_PATH
#define FUZZ_MODEL_PATH "fuzz-tiny.gguf"
#endif

const char *fuzz_model_path(void) {
    const char *p = getenv("BATON_FUZZ_MODEL");
    return p && *p ? p : FUZZ_MODEL_PATH;
}

/* A memory connection: its queued writes, and whether net closed it. The
 * state outlives the net_conn (freed by fuzz_conn_close once the loop freed c). */
struct fuzz_conn {
    net_conn *c;
    net_write *head, *tail;
    int closed;
};

static uint64_t written;

static void mem_read(net_conn *c) { (void)c; }
static int mem_write(net_conn *c, net_write *w) {
    fuzz_conn *m = net_io_state(c);
    w->next = NULL;
    if (m->tail) m->tail->next = w;
    else m->head = w;
    m->tail = w;
    written += w->len;
    return 0;
}
static void mem_close(net_conn *c) {
    fuzz_conn *m = net_io_state(c);
    m->closed = 1;
    while (m->head) { /* dropped, as a socket's pending writes are */
        net_write *w = m->head;
        m->head = w->next;
        free(w);
    }
    m->tail = NULL;
}
static const net_io_ops mem_ops = {.read_start = mem_read, .read_stop = mem_read, .write = mem_write, .close = mem_close};

uint64_t fuzz_bytes_written(void) { return written; }
net_conn *fuzz_conn_net(const fuzz_conn *m) { return m->closed ? NULL : m->c; }

/* Completes the queued writes (each may queue more, or close the connection). */
static void complete_writes(fuzz_conn *m) {
    while (!m->closed && m->head) {
        net_write *w = m->head;
        m->head = w->next;
        if (!m->head) m->tail = NULL;
        net_io_write_done(w, 0);
    }
}

size_t fuzz_put_frame(uint8_t *buf, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg,
                      const void *payload, size_t payload_len) {
    size_t ml = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    frame_header h = {.kind = (uint16_t)kind, .call_id = call_id, .msg_len = (uint32_t)ml,
                      .payload_len = (uint32_t)payload_len};
    frame_header_encode(&h, buf);
    if (msg) protobuf_c_message_pack(msg, buf + FRAME_HEADER_BYTES);
    if (payload_len) memcpy(buf + FRAME_HEADER_BYTES + ml, payload, payload_len);
    return FRAME_HEADER_BYTES + ml + payload_len;
}

fuzz_conn *fuzz_conn_open(net_server *s, uint32_t role, const char *cluster_id) {
    fuzz_conn *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->c = net_io_accept(s, &mem_ops, m, "fuzz:1");
    if (!m->c) abort();
    uint8_t nonce[AUTH_NONCE_BYTES] = {1, 2, 3};
    Baton__Hello h = BATON__HELLO__INIT;
    h.protocol_version = FRAME_PROTOCOL_VERSION;
    h.role = (Baton__Role)role;
    h.cluster_id = (char *)cluster_id;
    h.name = "fuzz";
    h.accepted = true;
    h.nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    Baton__AuthProof p = BATON__AUTH_PROOF__INIT;
    uint8_t buf[512];
    size_t n = fuzz_put_frame(buf, BATON__FRAME_KIND__FRAME_HELLO, 0, &h.base, NULL, 0);
    n += fuzz_put_frame(buf + n, BATON__FRAME_KIND__FRAME_AUTH_PROOF, 0, &p.base, NULL, 0);
    fuzz_conn_feed(m, buf, n);
    return m;
}

int fuzz_conn_feed(fuzz_conn *m, const uint8_t *data, size_t n) {
    if (m->closed || net_io_closing(m->c)) return 0;
    net_io_feed(m->c, data, n);
    complete_writes(m);
    return !m->closed && !net_io_closing(m->c);
}

void fuzz_loop_spin(uv_loop_t *loop, int rounds) {
    for (int i = 0; i < rounds; i++) uv_run(loop, UV_RUN_NOWAIT);
}

void fuzz_conn_close(fuzz_conn *m, uv_loop_t *loop) {
    if (!m) return;
    if (!m->closed) net_io_fail(m->c, "fuzz input done");
    fuzz_loop_spin(loop, 2); /* the two handles' close callbacks free the net_conn */
    free(m);
}
