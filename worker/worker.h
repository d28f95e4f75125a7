/* worker.h - one stage of the pipeline: the worker's state and its event handlers.
 *
 *     worker w;
 *     if (worker_init(&w, &opts, uv_default_loop(), err, sizeof err) != 0) log_die("%s", err);
 *     int status = worker_run(&w);   // joins, serves; returns when told to leave, refused or signalled
 *     worker_free(&w);
 *
 * Joins the coordinator, reports its capacity, receives an assignment (a layer
 * range, embed/head flags, its successor), loads only that slice and then turns
 * incoming stage frames into outgoing ones: from the coordinator (first stage)
 * or its predecessor, to its successor, or - on the last stage - sampled tokens
 * back to the coordinator. The libuv loop only moves bytes; forward passes run
 * on the stage's compute thread (stage.h).
 *
 * Faults: a lost stage link of the current plan is reported to the coordinator
 * at once (LinkLost), which re-plans; stage links prove the plan's link key
 * (net.h), and a live predecessor is never displaced by another connection for
 * the same plan. A worker whose coordinator goes away frees its slice and
 * rejoins with back-off (up to 5 s between tries); it exits on SIGINT/SIGTERM,
 * when the coordinator tells it to leave (removed, shutdown), or when it is
 * refused (another model file: the digests differ).
 *
 * Test only: BATON_TEST_LOAD_FAIL set in the environment makes every assignment
 * fail to load, as a worker short of memory would.
 */
#ifndef BATON_WORKER_WORKER_H
#define BATON_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "gguf.h"
#include "gpu.h"
#include "net.h"
#include "stage.h"

typedef struct worker_opts {
    const char *coordinator, *model_path, *listen, *cluster_id;
    const char *secret_file; /* cluster secret to prove to the coordinator and the other workers */
    const char *device;      /* --device: "cpu" (NULL too), "vulkan" or "vulkan:N" (gpu.h) */
    int threads;
    uint64_t memory;
    double speed;
    uint32_t kv_type;
    uint64_t max_frame;
    bool mpi;               /* --mpi: coordinator mpi:0, listen on mpi:<rank> */
    bool measure;           /* --measure: print the [node] section for a pool file and exit */
    int codec;              /* what we send our successor, if it decodes it (hop.h) */
    uint32_t handshake_ms, idle_ms, max_conns; /* net_config's (net.h); 0: its defaults */
} worker_opts;

typedef struct worker {
    worker_opts o;
    uv_loop_t *loop;
    net_config cfg_worker, cfg_peer;
    net_server *server;
    char listen_addr[128];
    net_conn *coord;        /* to the coordinator */
    net_conn *succ;         /* to the successor, when not last */
    net_conn *pred;         /* from the predecessor, when not first */
    uint32_t pred_plan;     /* the plan under which pred was accepted */
    int succ_tries;         /* attempts at the successor of this assignment */
    uv_timer_t succ_retry;
    uint32_t rejoin_ms;     /* current back-off to the coordinator; 0: connected */
    char digest[GGUF_DIGEST_LEN]; /* of our model file, sent in Join */
    uint64_t kv_bytes_per_token;  /* K+V of one position of one layer in o.kv_type, sent in Join */
    model *m;
    kv_cache *kv;
    stage *st;
    uv_async_t wake;
    uv_timer_t retry;
    uv_timer_t beat;        /* our own status every second: alive even while reading is paused */
    int connect_tries;
    Baton__Assignment *asg; /* current assignment (owned) */
    bool ready_sent, exiting;
    bool joined;            /* the coordinator let us in once (a refusal before that exits with 1) */
    bool refused;           /* the coordinator refused us (another model): exit 1, do not retry */
    double measured_speed;
    uint64_t hop_bytes, hop_frames; /* stage frames sent to successors, all plans */
    uint64_t steps;                 /* stage frames computed, all plans */
    uint64_t busy_us_before;        /* compute time of the slices of earlier plans */
    uint64_t queue_peak;            /* most bytes ever queued for a successor */
    auth_key secret;                /* what cfg_worker.secret points at, when set */
    auth_key link_key;              /* the current plan's stage-link key (cfg_peer.link_key); zero: no plan */
    uv_signal_t sig_int, sig_term;
    gpu_dev *gpu;                   /* --device vulkan: the slices run there; NULL: the CPU */
} worker;

/* Loads the cluster secret, starts the kernels, digests the model file,
 * measures (or takes o->speed as) the seconds per layer, listens for a
 * predecessor on o->listen and sets up the timers and signal handlers on loop.
 * 0, or -1 with a message. */
/* Seconds of the fastest of 4 passes of n_tokens tokens (one per KV slot) through
 * layer 0 of the model file at path, with the kernels' threads (kern_init first);
 * *layer_bytes, *layer_params, *n_embd (if not NULL): that layer's weight bytes and
 * matrix elements, the model's hidden size. The worker reports n_tokens = 1 as its speed; --measure adds a batch.
 * -1 with a message on error. */
double worker_measure_layer(const char *path, int n_tokens, uint64_t *layer_bytes, uint64_t *layer_params,
                            uint32_t *n_embd, char *err, size_t errlen);

int worker_init(worker *w, const worker_opts *o, uv_loop_t *loop, char *err, size_t errlen);
/* Joins the coordinator and serves until told to leave, refused, or stopped by
 * SIGINT/SIGTERM. Returns the exit status: 0, or 1 if the coordinator refused
 * this worker or it never joined. */
int worker_run(worker *w);
/* The handlers of the connection to the coordinator and of a predecessor's
 * stage link, with the worker as the connection's user pointer: tests/fuzz feeds
 * them bytes on connections of its own (a memory transport). */
const net_handlers *worker_coord_handlers(void);
const net_handlers *worker_pred_handlers(void);
/* Frees the slice and the assignment, stops the kernels. */
void worker_free(worker *w);

#endif
