/* baton-worker - one stage of the pipeline.
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
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cliparse.h"
#include "codec.h"
#include "forward.h"
#include "frame.h"
#include "hop.h"
#include "net.h"
#include "net_mpi.h"
#include "stage.h"

#define MAX_PENDING_JOBS 8 /* stop reading from the source above this many queued jobs */
#define SUCC_TRIES 25      /* connection attempts to a new successor, 200 ms apart, before blaming it */
#define REJOIN_MAX_MS 5000 /* longest wait between attempts to reach a lost coordinator */

typedef struct worker_opts {
    const char *coordinator, *model_path, *listen, *cluster_id;
    const char *secret_file; /* cluster secret to prove to the coordinator and the other workers */
    int threads;
    uint64_t memory;
    double speed;
    uint32_t kv_type;
    uint64_t max_frame;
    bool mpi;               /* --mpi: coordinator mpi:0, listen on mpi:<rank> */
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
} worker;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "baton-worker: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void logf_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "baton-worker: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmHWM (peak resident set) of this process in bytes, 0 if unknown. */
static uint64_t peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtoull(line + 6, NULL, 10);
    fclose(f);
    return kb * 1024;
}

/* MemAvailable from /proc/meminfo in bytes, 0 if unknown. */
static uint64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "MemAvailable:", 13)) kb = strtoull(line + 13, NULL, 10);
    fclose(f);
    return kb * 1024;
}

/* Seconds one decode token takes through one layer: loads layer 0 alone and
 * times a few single-token passes. */
static double measure_speed(const char *path, char *err, size_t errlen) {
    model_slice sl = {0, 1, false, false};
    model *m = model_load(path, &sl, err, errlen);
    if (!m) return -1;
    kv_cache *kv = kv_cache_new(m, 1, 16, TENSOR_F16, err, errlen);
    fwd_ctx *ctx = fwd_ctx_new(m, 1);
    float *h = calloc(m->hp.n_embd, sizeof(float));
    double best = -1;
    if (kv && ctx && h) {
        for (int it = 0; it < 5; it++) {
            for (uint32_t i = 0; i < m->hp.n_embd; i++) h[i] = (float)((i * 7919u + (unsigned)it) % 97) / 97.0f - 0.5f;
            int32_t tok = 0, slot = 0, pos = it;
            uint8_t want = 0;
            fwd_batch b = {.n = 1, .tokens = &tok, .slot = &slot, .pos = &pos, .logits = &want};
            double t0 = now_s();
            if (forward_run(ctx, kv, &b, h, NULL, err, errlen) < 0) break;
            double dt = now_s() - t0;
            if (it > 0 && (best < 0 || dt < best)) best = dt; /* the first pass faults the pages in */
        }
    }
    free(h);
    fwd_ctx_free(ctx);
    kv_cache_free(kv);
    model_free(m);
    if (best <= 0) best = 1e-6;
    return best;
}

static void send_status(worker *w) {
    if (!w->coord) return;
    Baton__WorkerStatus ws = BATON__WORKER_STATUS__INIT;
    if (w->st) stage_usage(w->st, &ws.slots_used, &ws.kv_positions);
    ws.peak_rss = peak_rss_bytes();
    ws.hop_bytes = w->hop_bytes;
    ws.hop_frames = w->hop_frames;
    ws.busy_us = w->busy_us_before + (w->st ? stage_busy_us(w->st) : 0);
    ws.weight_bytes = w->m ? w->m->weight_bytes : 0;
    ws.kv_bytes = w->kv ? kv_cache_bytes(w->kv) : 0;
    ws.steps = w->steps;
    ws.queue_peak = w->queue_peak;
    net_send(w->coord, BATON__FRAME_KIND__FRAME_WORKER_STATUS, 0, &ws.base, NULL, 0);
}

static void send_ready(worker *w, bool ok, const char *error) {
    Baton__Ready r = BATON__READY__INIT;
    r.plan_id = w->asg ? w->asg->plan_id : 0;
    r.ok = ok;
    r.error = (char *)(error ? error : "");
    r.weight_bytes = w->m ? w->m->weight_bytes : 0;
    r.kv_bytes = w->kv ? kv_cache_bytes(w->kv) : 0;
    net_send(w->coord, BATON__FRAME_KIND__FRAME_READY, 0, &r.base, NULL, 0);
    w->ready_sent = ok;
    if (ok)
        logf_("ready: layers [%d,%d)%s%s, weights %.1f MiB, KV %.1f MiB, successor %s", (int)w->asg->layer_begin,
              (int)w->asg->layer_end, w->asg->embed ? " +embed" : "", w->asg->head ? " +head" : "",
              (double)r.weight_bytes / 1048576.0, (double)r.kv_bytes / 1048576.0,
              w->asg->successor[0] ? w->asg->successor : "(coordinator)");
}

/* Pauses the source of frames while the successor's queue or our job queue is full. */
static void update_backpressure(worker *w) {
    bool full = (w->succ && net_queued_bytes(w->succ) > NET_HIGH_WATER) ||
                (w->st && stage_pending(w->st) > MAX_PENDING_JOBS);
    net_conn *src = w->asg && w->asg->embed ? w->coord : w->pred;
    if (src) net_pause(src, full);
}

/* --- frames in ---------------------------------------------------------- */

static void submit_frame(worker *w, net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    if (!w->st) {
        logf_("stage frame before the slice is loaded; dropped");
        return;
    }
    Baton__StageFrame *f = baton__stage_frame__unpack(NULL, h->msg_len, msg);
    if (!f) {
        net_close(c, "malformed stage frame");
        return;
    }
    stage_job *j = calloc(1, sizeof *j);
    if (!j) {
        baton__stage_frame__free_unpacked(f, NULL);
        return;
    }
    j->kind = STAGE_JOB_FRAME;
    j->frame = f;
    /* the compute thread decodes it and encodes the output (hop.h): no codec work on the loop */
    j->wire = malloc((size_t)h->payload_len + 1);
    if (!j->wire) {
        stage_job_free(j);
        return;
    }
    memcpy(j->wire, payload, h->payload_len);
    j->wire_len = h->payload_len;
    snprintf(j->source, sizeof j->source, "%s", net_peer_addr(c));
    j->out_codec = w->asg && !w->asg->head ? hop_pick_codec(w->o.codec, w->succ ? net_peer_codecs(w->succ) : 1u) : -1;
    stage_submit(w->st, j);
    update_backpressure(w);
}

static void submit_drop(worker *w, const frame_header *h, const uint8_t *msg) {
    Baton__DropSequence *d = baton__drop_sequence__unpack(NULL, h->msg_len, msg);
    if (!d) return;
    if (!w->st) {
        baton__drop_sequence__free_unpacked(d, NULL);
        return;
    }
    stage_job *j = calloc(1, sizeof *j);
    if (j) j->drop_slots = malloc(d->n_slots * sizeof(int32_t) + 1);
    if (!j || !j->drop_slots) {
        stage_job_free(j);
        baton__drop_sequence__free_unpacked(d, NULL);
        return;
    }
    j->kind = STAGE_JOB_DROP;
    memcpy(j->drop_slots, d->slots, d->n_slots * sizeof(int32_t));
    j->n_drop = d->n_slots;
    baton__drop_sequence__free_unpacked(d, NULL);
    stage_submit(w->st, j);
}

/* --- frames out --------------------------------------------------------- */

/* A failed job ends its step at the coordinator with the job's status: every
 * request in it ends (DATA_LOSS for a payload that is not what its sender encoded). */
static void send_result_error(worker *w, const stage_job *j) {
    unsigned long long step = j->frame ? j->frame->step_id : 0;
    char msg[400];
    if (j->code == BATON__STATUS_CODE__STATUS_DATA_LOSS) {
        logf_("stage frame %llu from %s rejected: %s", step, j->source, j->err);
        snprintf(msg, sizeof msg, "activations from %s: %s", j->source, j->err);
    } else {
        logf_("stage frame %llu failed: %s", step, j->err);
        snprintf(msg, sizeof msg, "%s", j->err);
    }
    if (!w->coord) return;
    Baton__StageResult r = BATON__STAGE_RESULT__INIT;
    r.step_id = step;
    r.code = (Baton__StatusCode)j->code;
    r.error = msg;
    net_send(w->coord, BATON__FRAME_KIND__FRAME_STAGE_RESULT, 0, &r.base, NULL, 0);
}

/* Sends a job's hidden states, encoded by the compute thread in the link's codec (hop.h). */
static void send_hidden(worker *w, stage_job *j) {
    uint64_t before = net_bytes_sent(w->succ);
    if (net_send(w->succ, BATON__FRAME_KIND__FRAME_STAGE, 0, &j->frame->base, j->out.data, j->out.len) == 0) {
        w->hop_bytes += net_bytes_sent(w->succ) - before;
        w->hop_frames++;
        if (net_queued_bytes(w->succ) > w->queue_peak) w->queue_peak = net_queued_bytes(w->succ);
    }
}

/* Hands finished jobs to the network: hidden states to the successor, tokens to
 * the coordinator, drops down the pipeline. */
static void on_wake(uv_async_t *a) {
    worker *w = a->data;
    stage_job *j;
    while (w->st && (j = stage_take_done(w->st))) {
        if (j->kind == STAGE_JOB_FRAME && !j->failed) w->steps++;
        if (j->kind == STAGE_JOB_DROP) {
            if (w->succ) {
                Baton__DropSequence d = BATON__DROP_SEQUENCE__INIT;
                d.n_slots = j->n_drop;
                d.slots = j->drop_slots;
                net_send(w->succ, BATON__FRAME_KIND__FRAME_DROP_SEQUENCE, 0, &d.base, NULL, 0);
            }
            send_status(w);
        } else if (j->failed) {
            send_result_error(w, j);
        } else if (w->asg->head) {
            Baton__StageResult r = BATON__STAGE_RESULT__INIT;
            r.step_id = j->frame->step_id;
            Baton__SampledToken *toks = calloc(j->n_res + 1, sizeof *toks);
            Baton__SampledToken **ptrs = calloc(j->n_res + 1, sizeof *ptrs);
            if (toks && ptrs) {
                for (size_t i = 0; i < j->n_res; i++) {
                    baton__sampled_token__init(&toks[i]);
                    toks[i].slot = j->res_slot[i];
                    toks[i].token = j->res_token[i];
                    toks[i].logprob = j->res_logprob[i];
                    if (j->res_code[i]) {
                        toks[i].code = (Baton__StatusCode)j->res_code[i];
                        toks[i].error = "invalid sampling parameters (rejected by the sampler)";
                    }
                    ptrs[i] = &toks[i];
                }
                r.n_tokens = j->n_res;
                r.tokens = ptrs;
                net_send(w->coord, BATON__FRAME_KIND__FRAME_STAGE_RESULT, 0, &r.base, NULL, 0);
            }
            free(toks);
            free(ptrs);
        } else if (w->succ) {
            send_hidden(w, j);
        }
        stage_job_free(j);
    }
    update_backpressure(w);
}

/* Tells the coordinator that a stage link of the current plan broke, so that it
 * re-plans at once instead of waiting for the micro-batches that cannot come back. */
static void send_link_lost(worker *w, bool successor, const char *why) {
    if (!w->coord || !w->asg || w->asg->release) return;
    logf_("%s link of plan %u lost (%s): telling the coordinator", successor ? "successor" : "predecessor",
          (unsigned)w->asg->plan_id, why);
    Baton__LinkLost l = BATON__LINK_LOST__INIT;
    l.plan_id = w->asg->plan_id;
    l.successor = successor;
    l.error = (char *)why;
    net_send(w->coord, BATON__FRAME_KIND__FRAME_LINK_LOST, 0, &l.base, NULL, 0);
}

/* --- assignment --------------------------------------------------------- */

static void on_succ_retry(uv_timer_t *t);

static void on_succ_open(net_conn *c) {
    worker *w = net_user(c);
    logf_("sending activations to %s as %s", net_peer_addr(c),
          codec_name(hop_pick_codec(w->o.codec, net_peer_codecs(c))));
    if (!w->ready_sent) send_ready(w, true, NULL);
}
static void on_succ_drain(net_conn *c) { update_backpressure(net_user(c)); }
static void on_succ_close(net_conn *c, const char *why) {
    worker *w = net_user(c);
    /* The close of a successor from an earlier assignment (dead, or replaced by
     * a new plan) says nothing about the current one: ignore it. */
    if (w->succ != c || w->exiting) return;
    w->succ = NULL;
    logf_("successor connection lost: %s", why);
    if (!w->ready_sent && w->succ_tries < SUCC_TRIES) { /* it may not have its assignment (and link key) yet */
        uv_timer_start(&w->succ_retry, on_succ_retry, 200, 0);
        return;
    }
    send_link_lost(w, true, why);
}
static void on_succ_frame(net_conn *c, const frame_header *h, const uint8_t *m, const uint8_t *p) {
    (void)c, (void)h, (void)m, (void)p;
}

static void connect_successor(worker *w) {
    static const net_handlers sh = {.on_open = on_succ_open, .on_frame = on_succ_frame, .on_drain = on_succ_drain,
                                    .on_close = on_succ_close};
    char err[256];
    w->succ_tries++;
    w->succ = net_connect(w->loop, &w->cfg_peer, w->asg->successor, NET_ROLE_BIT(PEER), &sh, w, err, sizeof err);
    if (!w->succ) send_link_lost(w, true, err);
}

static void on_succ_retry(uv_timer_t *t) {
    worker *w = t->data;
    if (w->asg && !w->asg->release && !w->succ && !w->ready_sent && w->asg->successor[0]) connect_successor(w);
}

static void unload(worker *w) {
    if (w->st) w->busy_us_before += stage_busy_us(w->st);
    stage_free(w->st); /* finishes queued jobs first */
    w->st = NULL;
    kv_cache_free(w->kv);
    w->kv = NULL;
    model_free(w->m);
    w->m = NULL;
}

static void handle_assignment(worker *w, const frame_header *h, const uint8_t *msg) {
    Baton__Assignment *a = baton__assignment__unpack(NULL, h->msg_len, msg);
    if (!a) {
        net_close(w->coord, "malformed assignment");
        return;
    }
    if (w->succ) net_close(w->succ, "new assignment");
    w->succ = NULL;
    uv_timer_stop(&w->succ_retry);
    unload(w);
    if (w->asg) baton__assignment__free_unpacked(w->asg, NULL);
    w->asg = a;
    w->ready_sent = false;
    /* before the slice loads (this plan's predecessor may connect any moment) and
     * on a release too (no stale peer of the old plan gets in) */
    if (a->link_key.len == AUTH_KEY_BYTES) memcpy(w->link_key.k, a->link_key.data, AUTH_KEY_BYTES);
    else memset(&w->link_key, 0, sizeof w->link_key);
    if (a->leave) { /* removed by an admin, or the coordinator shuts down */
        logf_("the coordinator asks this worker to leave (plan %u): exiting", (unsigned)a->plan_id);
        w->exiting = true;
        uv_stop(w->loop);
        return;
    }
    if (a->release) { /* left out of the new plan (drained, idle) */
        logf_("plan %u gives this worker no layers: slice freed", (unsigned)a->plan_id);
        send_status(w);
        return;
    }
    char err[512];
    model_slice sl = {a->layer_begin, a->layer_end, a->embed, a->head};
    double t0 = now_s();
    if (getenv("BATON_TEST_LOAD_FAIL")) { /* test only: a worker that cannot take its layers */
        snprintf(err, sizeof err, "load failure injected by BATON_TEST_LOAD_FAIL");
        w->m = NULL;
    } else {
        w->m = model_load(w->o.model_path, &sl, err, sizeof err);
    }
    if (w->m) w->kv = kv_cache_new(w->m, (int32_t)a->n_slots, (int32_t)a->n_ctx, w->o.kv_type, err, sizeof err);
    if (w->kv) w->st = stage_new(w->m, w->kv, (int32_t)a->max_batch, &w->wake, err, sizeof err);
    if (!w->st) {
        logf_("cannot take layers [%d,%d): %s", (int)a->layer_begin, (int)a->layer_end, err);
        unload(w);
        send_ready(w, false, err);
        return;
    }
    logf_("loaded layers [%d,%d) in %.2f s", (int)a->layer_begin, (int)a->layer_end, now_s() - t0);
    w->succ_tries = 0;
    if (a->successor && a->successor[0]) connect_successor(w);
    else send_ready(w, true, NULL);
}

/* --- coordinator connection ------------------------------------------- */

static void connect_coordinator(worker *w);
static void on_retry(uv_timer_t *t) { connect_coordinator(t->data); }

static void on_coord_open(net_conn *c) {
    worker *w = net_user(c);
    w->joined = true;
    w->rejoin_ms = 0;
    Baton__Join j = BATON__JOIN__INIT;
    j.listen_address = w->listen_addr;
    j.free_memory = w->o.memory ? w->o.memory : mem_available();
    j.cores = (uint32_t)kern_threads();
    j.isa = (char *)kern_level_name(kern_get_level());
    j.seconds_per_layer = w->measured_speed;
    j.model_digest = w->digest;
    net_send(c, BATON__FRAME_KIND__FRAME_JOIN, 0, &j.base, NULL, 0);
    logf_("joined %s (listening on %s, %.1f MiB usable, %.3g s/layer)", w->o.coordinator, w->listen_addr,
          (double)j.free_memory / 1048576.0, w->measured_speed);
}

static void on_coord_frame(net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    worker *w = net_user(c);
    switch (h->kind) {
    case BATON__FRAME_KIND__FRAME_ASSIGNMENT: handle_assignment(w, h, msg); break;
    case BATON__FRAME_KIND__FRAME_STAGE: submit_frame(w, c, h, msg, payload); break;
    case BATON__FRAME_KIND__FRAME_DROP_SEQUENCE: submit_drop(w, h, msg); break;
    case BATON__FRAME_KIND__FRAME_HEARTBEAT: send_status(w); break;
    case BATON__FRAME_KIND__FRAME_CALL_STATUS: { /* the coordinator refuses this worker (another model file) */
        Baton__CallStatus *st = baton__call_status__unpack(NULL, h->msg_len, msg);
        if (st && st->code != BATON__STATUS_CODE__STATUS_OK) {
            logf_("refused by the coordinator: %s (our model: %s)", st->message ? st->message : "", w->o.model_path);
            w->refused = true;
        }
        if (st) baton__call_status__free_unpacked(st, NULL);
        break;
    }
    default: logf_("ignoring frame kind %u from the coordinator", (unsigned)h->kind); break;
    }
}

/* A status every second on our own: while backpressure pauses reading from the
 * coordinator we cannot answer its heartbeats, but we are not dead. */
static void on_beat(uv_timer_t *t) {
    worker *w = t->data;
    if (w->coord && w->joined) send_status(w);
}

/* Frees the slice and every stage link: the coordinator that planned them is gone. */
static void leave_plan(worker *w) {
    uv_timer_stop(&w->succ_retry);
    if (w->succ) net_close(w->succ, "the coordinator is gone");
    w->succ = NULL;
    if (w->pred) net_close(w->pred, "the coordinator is gone");
    w->pred = NULL;
    unload(w);
    if (w->asg) baton__assignment__free_unpacked(w->asg, NULL);
    w->asg = NULL;
    w->ready_sent = false;
}

/* The coordinator connection closed. A refusal (another model, a bad secret)
 * ends the worker with 1; under MPI the job ends with its coordinator; otherwise
 * the worker frees its slice and tries again with back-off, so that it outlives
 * a coordinator restart and comes back after being declared dead (as a new node). */
static void on_coord_close(net_conn *c, const char *why) {
    worker *w = net_user(c);
    if (w->coord == c) w->coord = NULL;
    if (w->exiting) return;
    bool refused = w->refused || (strstr(why, "refused by") && !strstr(why, "too many connections"));
    bool never_joined = !w->joined && w->connect_tries >= 50;
    if (refused || w->o.mpi || never_joined) {
        logf_("coordinator connection %s (%s); exiting", refused ? "refused" : "lost", why);
        if (refused) w->joined = false; /* exit code 1 */
        w->exiting = true;
        uv_stop(w->loop);
        return;
    }
    if (w->joined && !w->rejoin_ms) logf_("coordinator connection lost (%s): freeing the slice, rejoining", why);
    leave_plan(w);
    w->rejoin_ms = !w->joined ? 200 : !w->rejoin_ms ? 250 : w->rejoin_ms * 2 > REJOIN_MAX_MS ? REJOIN_MAX_MS : w->rejoin_ms * 2;
    uv_timer_start(&w->retry, on_retry, w->rejoin_ms, 0);
}

static void connect_coordinator(worker *w) {
    static const net_handlers ch = {.on_open = on_coord_open, .on_frame = on_coord_frame, .on_close = on_coord_close};
    char err[256];
    w->connect_tries++;
    w->coord = net_connect(w->loop, &w->cfg_worker, w->o.coordinator, NET_ROLE_BIT(COORDINATOR), &ch, w, err,
                           sizeof err);
    if (!w->coord) die("%s", err);
}

/* --- predecessor connections ------------------------------------------ */

/* A stage link from a predecessor (it proved this plan's link key, net.h). A
 * live predecessor of the current plan is never displaced: a second connection
 * for the same plan is closed; one from a newer plan replaces an older one. */
static void on_pred_open(net_conn *c) {
    worker *w = net_user(c);
    uint32_t plan = w->asg ? w->asg->plan_id : 0;
    if (w->pred && w->pred != c && w->pred_plan == plan) {
        logf_("second predecessor connection for plan %u from %s refused (%s is live)", (unsigned)plan,
              net_peer_addr(c), net_peer_addr(w->pred));
        net_close(c, "this stage already has a live predecessor for the plan");
        return;
    }
    if (w->pred && w->pred != c) net_close(w->pred, "replaced by a new predecessor");
    w->pred = c;
    w->pred_plan = plan;
}
static void on_pred_frame(net_conn *c, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    worker *w = net_user(c);
    if (h->kind == BATON__FRAME_KIND__FRAME_STAGE) submit_frame(w, c, h, msg, payload);
    else if (h->kind == BATON__FRAME_KIND__FRAME_DROP_SEQUENCE) submit_drop(w, h, msg);
    else logf_("ignoring frame kind %u from the predecessor", (unsigned)h->kind);
}
static void on_pred_close(net_conn *c, const char *why) {
    worker *w = net_user(c);
    if (w->pred != c) return;
    w->pred = NULL;
    if (!w->exiting && w->asg && w->pred_plan == w->asg->plan_id && w->ready_sent) send_link_lost(w, false, why);
}

static void on_signal(uv_signal_t *s, int signum) {
    worker *w = s->data;
    logf_("signal %d, shutting down", signum);
    w->exiting = true;
    uv_stop(s->loop);
}

/* --- startup ------------------------------------------------------------- */

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton-worker --coordinator HOST:PORT --model FILE [options]\n"
            "  --listen HOST:PORT   where the predecessor stage connects (default 127.0.0.1:0, any port)\n"
            "  --threads N          kernel threads (default: one per core)\n"
            "  --memory BYTES       memory this worker offers (default: MemAvailable); suffixes K, M, G\n"
            "  --speed S            seconds per layer to report instead of measuring\n"
            "  --kv f16|f32         KV-cache type (default f16)\n"
            "  --cluster-id ID      must match the coordinator's (default \"baton\")\n"
            "  --max-frame BYTES    largest frame accepted (default 256M)\n"
            "  --secret FILE        cluster secret, as given to the coordinator (default: $BATON_SECRET_FILE)\n"
            "  --queue-limit BYTES  stop taking frames while this much waits for the successor (default 32M)\n"
            "  --handshake-timeout MS  close a connection not authenticated after MS (default 10000)\n"
            "  --idle-timeout MS    close an accepted client or admin connection idle for MS; 0: never\n"
            "                       (default 0; the stage port accepts peers only)\n"
            "  --max-conns N        connections the stage port accepts at once (default 1024, at most the\n"
            "                       descriptor limit less 32); at the limit the oldest unauthenticated one goes\n"
            "  --mpi                run under mpirun: the coordinator is rank 0 (mpi:0), stage frames\n"
            "                       arrive on mpi:<this rank>; --coordinator and --listen are then not needed\n");
    if (net_mpi_missing()) fprintf(out, "                       (not in this build: %s)\n", net_mpi_missing());
    fprintf(out,
            "  --codec NAME         activations to the successor: f32+lz4 (default, lossless), f32, f16, bf16,\n"
            "                       q8, f16+lz4, bf16+lz4, q8+lz4 (if the successor does not decode it: f32+lz4)\n");
}

/* A whole decimal integer in [lo, hi], or exit with a message naming the option. */
static uint32_t parse_u32(const char *s, const char *what, uint32_t lo, uint32_t hi) {
    long long v;
    char err[200];
    if (cli_int(s, lo, hi, &v, err, sizeof err) != 0) die("%s: %s", what, err);
    return (uint32_t)v;
}

/* The value of a size option (suffixes K, M, G) in [lo, hi]; dies otherwise. */
static uint64_t parse_bytes(const char *s, const char *what, uint64_t lo, uint64_t hi) {
    uint64_t v;
    char err[200];
    if (cli_bytes(s, lo, hi, &v, err, sizeof err) != 0) die("%s: %s", what, err);
    return v;
}

int main(int argc, char **argv) {
    worker w;
    memset(&w, 0, sizeof w);
    w.o = (worker_opts){.listen = "127.0.0.1:0", .cluster_id = "baton", .kv_type = TENSOR_F16, .speed = -1,
                       .codec = CODEC_DEFAULT};
    static const struct option longs[] = {
        {"coordinator", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
        {"listen", required_argument, 0, 'l'},      {"threads", required_argument, 0, 't'},
        {"memory", required_argument, 0, 'M'},      {"speed", required_argument, 0, 's'},
        {"kv", required_argument, 0, 'k'},          {"cluster-id", required_argument, 0, 'C'},
        {"max-frame", required_argument, 0, 'F'},   {"secret", required_argument, 0, 'S'},
        {"queue-limit", required_argument, 0, 'Q'}, {"help", no_argument, 0, 'h'},
        {"mpi", no_argument, 0, 'P'},               {"codec", required_argument, 0, 'X'},
        {"handshake-timeout", required_argument, 0, 'T'}, {"idle-timeout", required_argument, 0, 'I'},
        {"max-conns", required_argument, 0, 'N'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'c': w.o.coordinator = optarg; break;
        case 'm': w.o.model_path = optarg; break;
        case 'l': w.o.listen = optarg; break;
        case 't': {
            long long t;
            char perr[200];
            if (cli_int(optarg, 1, 4096, &t, perr, sizeof perr) != 0) die("--threads: %s", perr);
            w.o.threads = (int)t;
            break;
        }
        case 'M': w.o.memory = parse_bytes(optarg, "--memory", 1, UINT64_MAX); break;
        case 's': {
            char perr[200];
            if (cli_float(optarg, 1e-9, 1e6, &w.o.speed, perr, sizeof perr) != 0) die("--speed: %s", perr);
            break;
        }
        case 'k':
            if (!strcmp(optarg, "f16")) w.o.kv_type = TENSOR_F16;
            else if (!strcmp(optarg, "f32")) w.o.kv_type = TENSOR_F32;
            else die("--kv must be f16 or f32");
            break;
        case 'C': w.o.cluster_id = optarg; break;
        case 'F': w.o.max_frame = parse_bytes(optarg, "--max-frame", 1024, 0x7fffffff); break;
        case 'S': w.o.secret_file = optarg; break;
        case 'Q': {
            uint64_t q = parse_bytes(optarg, "--queue-limit", 4096, SIZE_MAX);
            net_set_water_marks((size_t)q, (size_t)(q / 4));
            break;
        }
        case 'P': w.o.mpi = true; break;
        case 'T': w.o.handshake_ms = parse_u32(optarg, "--handshake-timeout", 1, 3600000); break;
        case 'I': w.o.idle_ms = parse_u32(optarg, "--idle-timeout", 0, 0x7fffffff); break;
        case 'N': w.o.max_conns = parse_u32(optarg, "--max-conns", 1, 1u << 24); break;
        case 'X': if ((w.o.codec = codec_from_name(optarg)) < 0) die("--codec: unknown codec '%s'", optarg); break;
        case 'h': usage(stdout); return 0;
        default: die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) die("unexpected argument '%s'", argv[optind]);
    char err[512];
    char mpi_listen[32];
    if (w.o.mpi) {
        if (net_mpi_init(err, sizeof err) != 0) die("%s", err);
        snprintf(mpi_listen, sizeof mpi_listen, "mpi:%d", net_mpi_rank());
        w.o.coordinator = "mpi:0";
        w.o.listen = mpi_listen;
    }
    if (!w.o.coordinator || !w.o.model_path) die("--coordinator and --model are required (see --help)");
    if (!w.o.secret_file) w.o.secret_file = getenv("BATON_SECRET_FILE");
    if (w.o.secret_file && !*w.o.secret_file) w.o.secret_file = NULL;
    if (w.o.secret_file) {
        int rc = auth_key_load(w.o.secret_file, "cluster secret", &w.secret, err, sizeof err);
        if (rc < 0) die("%s", err);
        if (rc > 0) logf_("%s", err);
    }
    if (kern_init(w.o.threads) != 0) die("cannot start the kernels");

    gguf_file *gf = gguf_open(w.o.model_path, err, sizeof err);
    if (!gf) die("%s", err);
    gguf_digest(gf, w.digest);
    gguf_close(gf);
    if (w.o.speed > 0) w.measured_speed = w.o.speed;
    else if ((w.measured_speed = measure_speed(w.o.model_path, err, sizeof err)) < 0) die("%s", err);

    w.loop = uv_default_loop();
    w.cfg_worker = (net_config){.cluster_id = w.o.cluster_id, .role = BATON__ROLE__ROLE_WORKER, .name = "worker",
                                .max_frame = w.o.max_frame, .log_prefix = "baton-worker",
                                .secret = w.o.secret_file ? &w.secret : NULL,
                                .codecs = codec_supported_mask(), .handshake_ms = w.o.handshake_ms,
                                .idle_ms = w.o.idle_ms, .max_conns = w.o.max_conns};
    w.cfg_peer = w.cfg_worker;
    w.cfg_peer.role = BATON__ROLE__ROLE_PEER;
    w.cfg_peer.link_key = &w.link_key; /* the listener and the successor link: only this plan's members */
    static const net_handlers ph = {.on_open = on_pred_open, .on_frame = on_pred_frame, .on_close = on_pred_close};
    w.server = net_listen(w.loop, &w.cfg_peer, w.o.listen, NET_ROLE_BIT(PEER), &ph, &w, err, sizeof err);
    if (!w.server) die("%s", err);
    const char *colon = strrchr(w.o.listen, ':');
    snprintf(w.listen_addr, sizeof w.listen_addr, "%.*s:%d", (int)(colon - w.o.listen), w.o.listen,
             net_server_port(w.server));
    uv_async_init(w.loop, &w.wake, on_wake);
    w.wake.data = &w;
    uv_timer_init(w.loop, &w.retry);
    w.retry.data = &w;
    uv_timer_init(w.loop, &w.succ_retry);
    w.succ_retry.data = &w;
    uv_timer_init(w.loop, &w.beat);
    w.beat.data = &w;
    uv_timer_start(&w.beat, on_beat, 1000, 1000);
    static uv_signal_t sig_int, sig_term;
    uv_signal_init(w.loop, &sig_int);
    uv_signal_init(w.loop, &sig_term);
    sig_int.data = sig_term.data = &w;
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    connect_coordinator(&w);
    uv_run(w.loop, UV_RUN_DEFAULT);

    w.exiting = true;
    unload(&w);
    if (w.asg) baton__assignment__free_unpacked(w.asg, NULL);
    kern_shutdown();
    net_mpi_finalize();
    return w.joined ? 0 : 1;
}
