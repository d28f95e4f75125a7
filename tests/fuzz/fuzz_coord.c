/* fuzz_coord.c - the coordinator's message handlers (coordinator/coord.c,
 * generate.c, admin.c, scheduler.c) fed through net_io_feed, the entry point of
 * a socket's bytes, on connections its own listener accepted (fuzz_common.h).
 * A coordinator serving the tiny fuzz model is made for each input.
 * Input: byte 0 picks who speaks: a client, an admin, a worker, or a worker and
 * then a client on two connections at once (bytes 1-2: where the worker's bytes
 * end); the rest are the frames that peer sends after its handshake. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "fuzz_common.h"
#include "log.h"

static uv_loop_t loop;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    uv_loop_init(&loop);
    log_set_program("fuzz-coord");
    if (getenv("BATON_FUZZ_DIGEST")) { /* gen_seeds.py: the digest a worker's Join must carry */
        char err[256], d[GGUF_DIGEST_LEN];
        gguf_file *f = gguf_open(fuzz_model_path(), err, sizeof err);
        if (!f) abort();
        gguf_digest(f, d);
        gguf_close(f);
        printf("%s\n", d);
        exit(0);
    }
    return 0;
}

static void closed_cb(uv_handle_t *h) { (void)h; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    static coord c;
    coord_opts o = {.listen = "127.0.0.1:0", .model_path = fuzz_model_path(), .cluster_id = "fuzz",
                    .want_workers = 1, .n_slots = 4, .n_ctx = 128, .max_batch = 32, .chunk = 16,
                    .heartbeat_timeout_ms = 100000, .max_prompt_bytes = 4096, .handshake_ms = 10000,
                    .max_conns = 16, .rope = MODEL_ROPE_OPTS_UNSET};
    char err[512];
    if (coord_init(&c, &o, &loop, err, sizeof err) != 0) abort();
    int who = data[0] % 4;
    size_t split = who == 3 ? ((size_t)data[1] | (size_t)data[2] << 8) % (size - 2) : size - 3;
    const uint8_t *a = data + 3, *b = a + split;
    size_t an = split, bn = size - 3 - split;
    static const uint32_t roles[] = {BATON__ROLE__ROLE_CLIENT, BATON__ROLE__ROLE_ADMIN, BATON__ROLE__ROLE_WORKER,
                                     BATON__ROLE__ROLE_WORKER};
    fuzz_conn *first = fuzz_conn_open(c.server, roles[who], "fuzz"), *second = NULL;
    fuzz_conn_feed(first, a, an);
    fuzz_loop_spin(&loop, 2);
    if (who == 3) {
        second = fuzz_conn_open(c.server, BATON__ROLE__ROLE_CLIENT, "fuzz");
        fuzz_conn_feed(second, b, bn);
        fuzz_loop_spin(&loop, 2);
    }
    fuzz_conn_close(second, &loop);
    fuzz_conn_close(first, &loop);
    while (c.jobs) uv_run(&loop, UV_RUN_ONCE); /* tokenising on the pool: wait for it to end */
    net_server_close(c.server);
    uv_close((uv_handle_t *)&c.tick, closed_cb);
    if (c.shutting_down) uv_close((uv_handle_t *)&c.shutdown_timer, closed_cb); /* an admin's shutdown ran */
    fuzz_loop_spin(&loop, 3);
    coord_free(&c);
    return 0;
}
