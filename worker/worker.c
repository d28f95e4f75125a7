/* worker.c - one stage of the pipeline: joining, assignments, stage links and
 * the frames between the network and the compute thread. See worker.h. */
#include "worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "forward.h"
#include "frame.h"
#include "hop.h"
#include "log.h"
#include "proc.h"

#define MAX_PENDING_JOBS 8 /* stop reading from the source above this many queued jobs */
#define SUCC_TRIES 25      /* connection attempts to a new successor, 200 ms apart, before blaming it */
#define REJOIN_MAX_MS 5000 /* longest wait between attempts to reach a lost coordinator */

double worker_measure_layer(const char *path, int n_tokens, uint64_t *layer_bytes, uint64_t *layer_params,
                            uint32_t *n_embd, char *err, size_t errlen) {
    model_slice sl = {0, 1, false, false};
    model *m = model_load(path, &sl, err, errlen);
    if (!m) return -1;
    if (layer_bytes) *layer_bytes = m->weight_bytes;
    if (layer_params) *layer_params = model_layer_params(&m->hp);
    if (n_embd) *n_embd = m->hp.n_embd;
    kv_cache *kv = kv_cache_new(m, n_tokens, 16, TENSOR_F16, err, errlen);
    fwd_ctx *ctx = fwd_ctx_new(m, n_tokens);
    float *h = calloc((size_t)m->hp.n_embd * (size_t)n_tokens, sizeof(float));
    int32_t *tok = calloc((size_t)n_tokens, sizeof *tok), *slot = calloc((size_t)n_tokens, sizeof *slot),
            *pos = calloc((size_t)n_tokens, sizeof *pos);
    uint8_t *want = calloc((size_t)n_tokens, 1);
    double best = -1;
    if (kv && ctx && h && tok && slot && pos && want) {
        for (int it = 0; it < 5; it++) {
            for (size_t i = 0; i < (size_t)m->hp.n_embd * (size_t)n_tokens; i++)
                h[i] = (float)((i * 7919u + (unsigned)it) % 97) / 97.0f - 0.5f;
            for (int t = 0; t < n_tokens; t++) slot[t] = t, pos[t] = it;
            fwd_batch b = {.n = n_tokens, .tokens = tok, .slot = slot, .pos = pos, .logits = want};
            double t0 = clock_s();
            if (forward_run(ctx, kv, &b, h, NULL, err, errlen) < 0) break;
            double dt = clock_s() - t0;
            if (it > 0 && (best < 0 || dt < best)) best = dt; /* the first pass faults the pages in */
        }
    }
    free(h);
    free(tok);
    free(slot);
    free(pos);
    free(want);
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
    ws.peak_rss = proc_peak_rss();
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
    char rope[96] = "";
    if (w->m) model_rope_describe(&w->m->hp, rope, sizeof rope);
    r.rope = rope;
    net_send(w->coord, BATON__FRAME_KIND__FRAME_READY, 0, &r.base, NULL, 0);
    w->ready_sent = ok;
    if (ok)
        log_msg("ready: layers [%d,%d)%s%s, weights %.1f MiB, KV %.1f MiB, successor %s", (int)w->asg->layer_begin,
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
        log_msg("stage frame before the slice is loaded; dropped");
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
    if (d->n_slots) memcpy(j->drop_slots, d->slots, d->n_slots * sizeof(int32_t)); /* slots is NULL when empty */
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
        log_msg("stage frame %llu from %s rejected: %s", step, j->source, j->err);
        snprintf(msg, sizeof msg, "activations from %s: %s", j->source, j->err);
    } else {
        log_msg("stage frame %llu failed: %s", step, j->err);
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
                    toks[i].scored_position = j->res_pos[i];
                    if (j->res_code[i]) {
                        toks[i].code = (Baton__StatusCode)j->res_code[i];
                        toks[i].error = j->res_pos[i] ? "cannot score the prompt token (target outside the vocabulary "
                                                        "or logits not finite)"
                                                      : "invalid sampling parameters (rejected by the sampler)";
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
    log_msg("%s link of plan %u lost (%s): telling the coordinator", successor ? "successor" : "predecessor",
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
    log_msg("sending activations to %s as %s", net_peer_addr(c),
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
    log_msg("successor connection lost: %s", why);
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
        log_msg("the coordinator asks this worker to leave (plan %u): exiting", (unsigned)a->plan_id);
        w->exiting = true;
        uv_stop(w->loop);
        return;
    }
    if (a->release) { /* left out of the new plan (drained, idle) */
        log_msg("plan %u gives this worker no layers: slice freed", (unsigned)a->plan_id);
        send_status(w);
        return;
    }
    char err[512];
    model_slice sl = {a->layer_begin, a->layer_end, a->embed, a->head};
    double t0 = clock_s();
    if (getenv("BATON_TEST_LOAD_FAIL")) { /* test only: a worker that cannot take its layers */
        snprintf(err, sizeof err, "load failure injected by BATON_TEST_LOAD_FAIL");
        w->m = NULL;
    } else {
        w->m = model_load(w->o.model_path, &sl, err, sizeof err);
    }
    /* the plan's RoPE (the coordinator's file keys or flags), whatever our file says */
    if (w->m && model_set_rope_scaling(&w->m->hp, a->rope_scaling, a->rope_scale, a->yarn_orig_ctx, err, sizeof err)) {
        model_free(w->m);
        w->m = NULL;
    }
    /* the KV cache the plan asks for must fit what this worker offered (a corrupt or
     * hostile assignment must not make it map terabytes) */
    int kv_layers = w->m ? w->m->slice.layer_end - w->m->slice.layer_begin : 1; /* as kv_cache_new counts them */
    double kv_need = (double)w->kv_bytes_per_token * (double)(kv_layers > 0 ? kv_layers : 1) * (double)a->n_slots *
                     (double)a->n_ctx;
    uint64_t offered = w->o.memory ? w->o.memory : proc_mem_available();
    if (w->m && kv_need > (double)offered) {
        snprintf(err, sizeof err, "a KV cache of %u slots x %u positions (%.0f MiB) is more than this worker's %.0f MiB",
                 (unsigned)a->n_slots, (unsigned)a->n_ctx, kv_need / 1048576.0, (double)offered / 1048576.0);
        model_free(w->m);
        w->m = NULL;
    }
    if (w->m) w->kv = kv_cache_new(w->m, (int32_t)a->n_slots, (int32_t)a->n_ctx, w->o.kv_type, err, sizeof err);
    /* on the CPU the cache is committed now: its memory counts from the assignment
     * and a cache the machine cannot hold is refused here (Ready error), not found
     * out mid-request. On a GPU the device holds it (forward_prepare) */
    if (w->kv && !w->gpu && kv_cache_commit(w->kv, err, sizeof err) != 0) {
        kv_cache_free(w->kv);
        w->kv = NULL;
    }
    if (w->kv) w->st = stage_new(w->m, w->kv, (int32_t)a->max_batch, &w->wake, err, sizeof err);
    if (!w->st) {
        log_msg("cannot take layers [%d,%d): %s", (int)a->layer_begin, (int)a->layer_end, err);
        unload(w);
        send_ready(w, false, err);
        return;
    }
    log_msg("loaded layers [%d,%d) in %.2f s", (int)a->layer_begin, (int)a->layer_end, clock_s() - t0);
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
    /* on a GPU the slice's weights and KV cache live in device memory: that is what it offers */
    j.free_memory = w->o.memory ? w->o.memory : w->gpu ? gpu_memory(w->gpu) : proc_mem_available();
    j.cores = (uint32_t)kern_threads();
    j.isa = (char *)kern_level_name(kern_get_level());
    j.seconds_per_layer = w->measured_speed;
    j.model_digest = w->digest;
    j.kv_type = w->o.kv_type;
    j.kv_bytes_per_token = w->kv_bytes_per_token;
    char device[96] = "cpu";
    if (w->gpu) snprintf(device, sizeof device, "%s", gpu_name(w->gpu)); /* "vulkan:N (NAME)" */
    j.device = device;
    net_send(c, BATON__FRAME_KIND__FRAME_JOIN, 0, &j.base, NULL, 0);
    log_msg("joined %s (listening on %s, %.1f MiB usable, %.3g s/layer)", w->o.coordinator, w->listen_addr,
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
            log_msg("refused by the coordinator: %s (our model: %s)", st->message ? st->message : "", w->o.model_path);
            w->refused = true;
        }
        if (st) baton__call_status__free_unpacked(st, NULL);
        break;
    }
    default: log_msg("ignoring frame kind %u from the coordinator", (unsigned)h->kind); break;
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
        log_msg("coordinator connection %s (%s); exiting", refused ? "refused" : "lost", why);
        if (refused) w->joined = false; /* exit code 1 */
        w->exiting = true;
        uv_stop(w->loop);
        return;
    }
    if (w->joined && !w->rejoin_ms) log_msg("coordinator connection lost (%s): freeing the slice, rejoining", why);
    leave_plan(w);
    w->rejoin_ms = !w->joined ? 200 : !w->rejoin_ms ? 250 : w->rejoin_ms * 2 > REJOIN_MAX_MS ? REJOIN_MAX_MS : w->rejoin_ms * 2;
    uv_timer_start(&w->retry, on_retry, w->rejoin_ms, 0);
}

static const net_handlers coord_handlers = {.on_open = on_coord_open, .on_frame = on_coord_frame,
                                           .on_close = on_coord_close};
const net_handlers *worker_coord_handlers(void) { return &coord_handlers; }

static void connect_coordinator(worker *w) {
    char err[256];
    w->connect_tries++;
    w->coord = net_connect(w->loop, &w->cfg_worker, w->o.coordinator, NET_ROLE_BIT(COORDINATOR), &coord_handlers, w, err,
                           sizeof err);
    if (!w->coord) log_die("%s", err); /* a bad address: no retry can help */
}

/* --- predecessor connections ------------------------------------------ */

/* A stage link from a predecessor (it proved this plan's link key, net.h). A
 * live predecessor of the current plan is never displaced: a second connection
 * for the same plan is closed; one from a newer plan replaces an older one. */
static void on_pred_open(net_conn *c) {
    worker *w = net_user(c);
    uint32_t plan = w->asg ? w->asg->plan_id : 0;
    if (w->pred && w->pred != c && w->pred_plan == plan) {
        log_msg("second predecessor connection for plan %u from %s refused (%s is live)", (unsigned)plan,
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
    else log_msg("ignoring frame kind %u from the predecessor", (unsigned)h->kind);
}
static void on_pred_close(net_conn *c, const char *why) {
    worker *w = net_user(c);
    if (w->pred != c) return;
    w->pred = NULL;
    if (!w->exiting && w->asg && w->pred_plan == w->asg->plan_id && w->ready_sent) send_link_lost(w, false, why);
}

static const net_handlers pred_handlers = {.on_open = on_pred_open, .on_frame = on_pred_frame,
                                          .on_close = on_pred_close};
const net_handlers *worker_pred_handlers(void) { return &pred_handlers; }

/* SIGINT, SIGTERM: leave the loop; worker_run returns. */
static void on_signal(uv_signal_t *s, int signum) {
    worker *w = s->data;
    log_msg("signal %d, shutting down", signum);
    w->exiting = true;
    uv_stop(s->loop);
}

/* --- startup ------------------------------------------------------------- */

/* The cluster secret (o.secret_file) into w->secret. 0, or -1 with a message. */
static int load_secret(worker *w, char *err, size_t errlen) {
    if (!w->o.secret_file) return 0;
    int rc = auth_key_load(w->o.secret_file, "cluster secret", &w->secret, err, errlen);
    if (rc < 0) return -1;
    if (rc > 0) log_msg("%s", err);
    return 0;
}

/* The digest of our model file (sent in Join) and the seconds per layer. 0, or -1 with a message. */
static int probe_model(worker *w, char *err, size_t errlen) {
    gguf_file *gf = gguf_open(w->o.model_path, err, errlen);
    if (!gf) return -1;
    gguf_digest(gf, w->digest);
    model_hparams hp;
    int rc = model_read_hparams(gf, &hp, err, errlen);
    gguf_close(gf);
    if (rc) return -1;
    w->kv_bytes_per_token = model_kv_bytes_per_token(&hp, w->o.kv_type);
    if (w->o.speed > 0) w->measured_speed = w->o.speed;
    else if ((w->measured_speed = worker_measure_layer(w->o.model_path, 1, NULL, NULL, NULL, err, errlen)) < 0) return -1;
    return 0;
}

/* The net configs (to the coordinator; to and from peers) and the listener for a predecessor. 0 or -1. */
static int listen_peers(worker *w, char *err, size_t errlen) {
    w->cfg_worker = (net_config){.cluster_id = w->o.cluster_id, .role = BATON__ROLE__ROLE_WORKER, .name = "worker",
                                 .max_frame = w->o.max_frame, .log_prefix = "baton-worker",
                                 .secret = w->o.secret_file ? &w->secret : NULL,
                                 .codecs = codec_supported_mask(), .handshake_ms = w->o.handshake_ms,
                                 .idle_ms = w->o.idle_ms, .max_conns = w->o.max_conns};
    w->cfg_peer = w->cfg_worker;
    w->cfg_peer.role = BATON__ROLE__ROLE_PEER;
    w->cfg_peer.link_key = &w->link_key; /* the listener and the successor link: only this plan's members */
    w->server = net_listen(w->loop, &w->cfg_peer, w->o.listen, NET_ROLE_BIT(PEER), &pred_handlers, w, err, errlen);
    if (!w->server) return -1;
    const char *colon = strrchr(w->o.listen, ':');
    snprintf(w->listen_addr, sizeof w->listen_addr, "%.*s:%d", (int)(colon - w->o.listen), w->o.listen,
             net_server_port(w->server));
    return 0;
}

/* The wake-up from the compute thread, the timers and the signal handlers. */
static void start_handles(worker *w) {
    uv_async_init(w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(w->loop, &w->retry);
    w->retry.data = w;
    uv_timer_init(w->loop, &w->succ_retry);
    w->succ_retry.data = w;
    uv_timer_init(w->loop, &w->beat);
    w->beat.data = w;
    uv_timer_start(&w->beat, on_beat, 1000, 1000);
    uv_signal_init(w->loop, &w->sig_int);
    uv_signal_init(w->loop, &w->sig_term);
    w->sig_int.data = w->sig_term.data = w;
    uv_signal_start(&w->sig_int, on_signal, SIGINT);
    uv_signal_start(&w->sig_term, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
}

int worker_init(worker *w, const worker_opts *o, uv_loop_t *loop, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->o = *o;
    w->loop = loop;
    if (load_secret(w, err, errlen) != 0) return -1;
    if (kern_init(w->o.threads) != 0) {
        snprintf(err, errlen, "cannot start the kernels");
        return -1;
    }
    int index, kind = gpu_parse_device(w->o.device, &index);
    if (kind != GPU_DEVICE_CPU && kind != GPU_DEVICE_VULKAN) {
        snprintf(err, errlen, "--device %s: expected cpu, vulkan or vulkan:N", w->o.device);
        return -1;
    }
    if (kind == GPU_DEVICE_VULKAN) {
        char e[256];
        if (!(w->gpu = gpu_open(index, e, sizeof e))) {
            snprintf(err, errlen, "--device %s: %s", w->o.device, e);
            return -1;
        }
        forward_set_device(w->gpu); /* every slice (and the speed probe) runs there */
        log_msg("device %s: %.1f GiB of device memory%s", gpu_name(w->gpu), (double)gpu_memory(w->gpu) / (1 << 30),
                gpu_soft_fma(w->gpu) ? ", fma emulated" : "");
    }
    if (probe_model(w, err, errlen) != 0 || listen_peers(w, err, errlen) != 0) return -1;
    start_handles(w);
    return 0;
}

int worker_run(worker *w) {
    connect_coordinator(w);
    uv_run(w->loop, UV_RUN_DEFAULT);
    w->exiting = true;
    return w->joined ? 0 : 1;
}

void worker_free(worker *w) {
    w->exiting = true;
    unload(w);
    if (w->asg) baton__assignment__free_unpacked(w->asg, NULL);
    w->asg = NULL;
    if (w->gpu) {
        forward_set_device(NULL);
        gpu_close(w->gpu);
        w->gpu = NULL;
    }
    kern_shutdown();
}
