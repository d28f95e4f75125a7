/* fuzz_worker.c - the worker's message handlers (worker/worker.c, stage.c,
 * hop.c) fed through net_io_feed, the entry point of a socket's bytes
 * (fuzz_common.h): the frames of its coordinator (assignments, stage frames,
 * drops, heartbeats, statuses) and of a predecessor's stage link. One worker
 * with the tiny fuzz model serves the whole run; each input gets fresh
 * connections, and closing them frees whatever slice an assignment loaded.
 * Input: byte 0 picks the speakers: the coordinator; the coordinator and then
 * a predecessor (bytes 1-2: where the coordinator's bytes end); a predecessor.
 * Run it in a network namespace of its own (run_slices.sh, tools/fuzz.sh):
 * an assignment names a successor, and the worker connects to it. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "log.h"
#include "worker.h"

static uv_loop_t loop;
static worker w;
static net_server *as_coord, *as_pred; /* listeners handing our connections to the worker's handlers */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    uv_loop_init(&loop);
    log_set_program("fuzz-worker");
    worker_opts o = {.coordinator = "127.0.0.1:1", .model_path = fuzz_model_path(), .listen = "127.0.0.1:0",
                     .cluster_id = "fuzz", .threads = 1, .speed = 1e-3, .max_frame = 1u << 20,
                     .memory = 64u << 20}; /* an assignment's KV cache is committed: at most this much */
    char err[512];
    if (worker_init(&w, &o, &loop, err, sizeof err) != 0) {
        fprintf(stdout, "fuzz_worker: %s\n", err);
        abort();
    }
    net_config cc = w.cfg_worker, pc = w.cfg_peer;
    pc.link_key = NULL; /* our predecessor proves nothing: its frames are what is fuzzed */
    as_coord = net_listen(&loop, &cc, "127.0.0.1:0", NET_ROLE_BIT(COORDINATOR), worker_coord_handlers(), &w, err,
                          sizeof err);
    as_pred = net_listen(&loop, &pc, "127.0.0.1:0", NET_ROLE_BIT(PEER), worker_pred_handlers(), &w, err, sizeof err);
    if (!as_coord || !as_pred) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    int who = data[0] % 3;
    size_t split = who == 1 ? ((size_t)data[1] | (size_t)data[2] << 8) % (size - 2) : who == 0 ? size - 3 : 0;
    const uint8_t *a = data + 3, *b = a + split;
    size_t an = split, bn = size - 3 - split;
    fuzz_conn *coord = NULL, *pred = NULL;
    if (who != 2) {
        coord = fuzz_conn_open(as_coord, BATON__ROLE__ROLE_COORDINATOR, "fuzz");
        w.coord = fuzz_conn_net(coord);
        fuzz_conn_feed(coord, a, an);
        fuzz_loop_spin(&loop, 2);
    }
    if (who != 0) {
        pred = fuzz_conn_open(as_pred, BATON__ROLE__ROLE_PEER, "fuzz");
        fuzz_conn_feed(pred, b, bn);
        fuzz_loop_spin(&loop, 2);
    }
    fuzz_conn_close(pred, &loop);
    fuzz_conn_close(coord, &loop);
    /* the worker would now rejoin (or exit if refused): the next input is its new coordinator */
    uv_timer_stop(&w.retry);
    w.exiting = w.refused = false;
    w.coord = NULL;
    fuzz_loop_spin(&loop, 2);
    return 0;
}
