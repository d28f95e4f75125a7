/* coord.c - node registry, planning and the client API server. See coord.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "coord.h"

#include "pool.h"
#include "log.h"

#define HEARTBEAT_MS 1000
#define SWITCH_WAIT_MS 10000  /* longest wait for the micro-batches in flight before a re-plan */
#define LOADING_GRACE_MS 60000 /* a worker loading its slice may be silent this long */

static coord_node *node_of(coord *c, const net_conn *conn) {
    for (coord_node *n = c->nodes; n; n = n->next)
        if (n->conn == conn) return n;
    return NULL;
}

/* Sends a frame to the first stage. 0 or -1. */
static int send_first(coord *c, uint32_t kind, const ProtobufCMessage *msg) {
    if (!c->planned || c->plan.n_stages == 0 || !c->stage_nodes[0]) return -1;
    return net_send(c->stage_nodes[0]->conn, kind, 0, msg, NULL, 0);
}

void coord_tell_leave(coord *c, coord_node *n) {
    Baton__Assignment a = BATON__ASSIGNMENT__INIT;
    a.node_id = n->id;
    a.plan_id = c->plan_id;
    a.release = a.leave = true;
    net_send(n->conn, BATON__FRAME_KIND__FRAME_ASSIGNMENT, 0, &a.base, NULL, 0);
}

/* --- the scheduler's view of the coordinator (sched_env) ---------------- */

static int env_send_first(void *user, const Baton__StageFrame *f) {
    return send_first(user, BATON__FRAME_KIND__FRAME_STAGE, &f->base);
}

static void env_drop_slot(void *user, int32_t slot) {
    Baton__DropSequence d = BATON__DROP_SEQUENCE__INIT;
    d.n_slots = 1;
    d.slots = &slot;
    send_first(user, BATON__FRAME_KIND__FRAME_DROP_SEQUENCE, &d.base);
}

int coord_send_status(coord *c, void *client, uint32_t call_id, int code, const char *msg) {
    if (client && client == c->api) return api_on_status(c, call_id, code, msg), 0;
    return client ? net_send_status(client, call_id, code, msg) : -1;
}

static void env_send_status(void *user, void *client, uint32_t call_id, int code, const char *msg) {
    coord_send_status(user, client, call_id, code, msg);
}

static void env_send_chunk(void *user, void *client, uint32_t call_id, const Baton__GenerateChunk *ch) {
    coord *c = user;
    if (client == c->api) api_on_chunk(c, call_id, ch);
    else net_send(client, BATON__FRAME_KIND__FRAME_GENERATE_CHUNK, call_id, &ch->base, NULL, 0);
}

static uint64_t env_now_us(void *user) {
    (void)user;
    return clock_us();
}

/* The scheduler may send micro-batches while a plan serves and no switch waits. */
static void update_feeding(coord *c) { sched_set_feeding(&c->sched, c->serving && !c->switching); }

/* --- planning ------------------------------------------------------------ */

static bool node_eligible(const coord_node *n) { return !n->drained && !n->removing && !n->unfit; }

int coord_plan_dry(coord *c, plan_result *out, coord_node **order, int *n_order, char *err, size_t errlen) {
    int nn = 0;
    static plan_node pn[PLAN_MAX_NODES];
    for (coord_node *n = c->nodes; n && nn < PLAN_MAX_NODES; n = n->next) {
        if (!node_eligible(n)) continue;
        order[nn] = n;
        /* its KV cache as it reported it (an older worker: f16) for every slot and position */
        uint64_t kvt = n->kv_bytes_per_token ? n->kv_bytes_per_token : model_kv_bytes_per_token(&c->hp, TENSOR_F16);
        pn[nn] = (plan_node){n->mem, n->speed, kvt * (uint64_t)c->o.n_ctx * (uint64_t)c->o.n_slots};
        nn++;
    }
    *n_order = nn;
    /* f16 KV for every slot and position, unless a node says otherwise (plan_node.kv_bytes_per_layer) */
    pool_model pm;
    if (pool_model_of_file(c->gf, &c->hp, c->o.n_ctx, c->o.n_slots, TENSOR_F16, &pm, err, errlen) != 0) return -1;
    int rc = plan_layers(&pm.pm, pn, nn, out, err, errlen);
    pool_model_free(&pm);
    if (rc != 0 && nn < c->n_nodes) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (%d worker(s) drained, being removed or unfit)", c->n_nodes - nn);
        for (coord_node *n = c->nodes; n; n = n->next)
            if (n->unfit && (l = strlen(err)) + 1 < errlen)
                snprintf(err + l, errlen - l, "; worker %u: %s", (unsigned)n->id, n->unfit_why);
    }
    return rc;
}

/* Moves a node from the registry to the short list of dead ones (for `nodes`). */
static void node_retire(coord *c, coord_node *n) {
    for (coord_node **pp = &c->nodes; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    c->n_nodes--;
    for (int s = 0; s < PLAN_MAX_NODES; s++)
        if (c->stage_nodes[s] == n) c->stage_nodes[s] = NULL;
    n->conn = NULL;
    n->dead = true;
    n->stage = -1;
    n->ready = false;
    n->next = c->dead;
    c->dead = n;
    int k = 0;
    for (coord_node *d = c->dead, *prev = NULL; d; prev = d, d = d->next)
        if (++k > 8) { /* keep the 8 newest */
            prev->next = NULL;
            while (d) {
                coord_node *nx = d->next;
                free(d);
                d = nx;
            }
            break;
        }
}

/* Plans over the eligible nodes (in join order) and sends every stage its
 * assignment; nodes left out get a release (they free their slice), and nodes
 * being removed are disconnected. */
static void make_plan(coord *c) {
    coord_node *order[PLAN_MAX_NODES];
    int nn = 0;
    for (coord_node *n = c->nodes; n; n = n->next) {
        n->stage = -1;
        n->ready = false;
    }
    memset(c->stage_nodes, 0, sizeof c->stage_nodes);
    char err[512];
    if (coord_plan_dry(c, &c->plan, order, &nn, err, sizeof err) != 0) {
        snprintf(c->plan_error, sizeof c->plan_error, "%s", err);
        log_msg("cannot plan: %s", err);
        c->planned = false;
        return;
    }
    c->plan_error[0] = 0;
    c->planned = true;
    c->plan_id++;
    auth_nonce(c->link_key); /* a fresh link key: no stage link of an earlier plan (or a stranger) proves it */
    c->stats.replans++;
    double pipeline_s = 0;
    for (int s = 0; s < c->plan.n_stages; s++) pipeline_s += c->plan.stages[s].seconds;
    sched_set_plan(&c->sched, c->plan.n_stages, pipeline_s);
    log_msg("plan %u over %d worker(s), slowest stage %.3g s:", (unsigned)c->plan_id, nn, c->plan.bottleneck);
    for (int s = 0; s < c->plan.n_stages; s++) {
        const plan_stage *ps = &c->plan.stages[s];
        coord_node *n = order[ps->node];
        n->stage = s;
        c->stage_nodes[s] = n;
        Baton__Assignment a = BATON__ASSIGNMENT__INIT;
        a.node_id = n->id;
        a.layer_begin = ps->layer_begin;
        a.layer_end = ps->layer_end;
        a.embed = ps->embed;
        a.head = ps->head;
        a.successor = s + 1 < c->plan.n_stages ? order[c->plan.stages[s + 1].node]->listen : "";
        a.n_slots = (uint32_t)c->o.n_slots;
        a.n_ctx = (uint32_t)c->o.n_ctx;
        a.max_batch = (uint32_t)c->o.max_batch;
        a.plan_id = c->plan_id;
        a.link_key = (ProtobufCBinaryData){sizeof c->link_key, c->link_key};
        a.rope_scaling = c->hp.rope_scaling;
        a.rope_scale = c->hp.rope_scale;
        a.yarn_orig_ctx = c->hp.rope_orig_ctx;
        log_msg("  stage %d: worker %u (%s) layers [%d,%d)%s%s, %.1f MiB", s, (unsigned)n->id, n->listen,
              (int)ps->layer_begin, (int)ps->layer_end, ps->embed ? " +embed" : "", ps->head ? " +head" : "",
              (double)ps->bytes / 1048576.0);
        net_send(n->conn, BATON__FRAME_KIND__FRAME_ASSIGNMENT, 0, &a.base, NULL, 0);
    }
    for (coord_node *n = c->nodes, *nx; n; n = nx) {
        nx = n->next;
        if (n->stage >= 0) continue;
        if (n->removing) {
            coord_tell_leave(c, n); /* it exits instead of rejoining */
            log_msg("worker %u removed", (unsigned)n->id);
            net_conn *conn = n->conn;
            node_retire(c, n);
            net_close(conn, "removed by an admin");
        } else {
            Baton__Assignment a = BATON__ASSIGNMENT__INIT;
            a.node_id = n->id;
            a.plan_id = c->plan_id;
            a.release = true;
            net_send(n->conn, BATON__FRAME_KIND__FRAME_ASSIGNMENT, 0, &a.base, NULL, 0);
            log_msg("  worker %u (%s): no layers (%s)", (unsigned)n->id, n->listen,
                  n->drained ? "drained" : n->unfit ? n->unfit_why : "idle");
        }
    }
}

/* Ends every request when no plan can serve them. */
static void fail_unplannable(coord *c) {
    char msg[600];
    snprintf(msg, sizeof msg, "no plan: %s", c->plan_error);
    sched_fail_all(&c->sched, BATON__STATUS_CODE__STATUS_UNAVAILABLE, msg);
}

/* Switches to a new plan now: forget the micro-batches in flight, plan over
 * the eligible nodes (--workers only gates the first plan) and replay the live
 * requests from their records; with no plan possible, end them with UNAVAILABLE. */
static void switch_plan(coord *c, const char *why) {
    log_msg("re-planning (%s)", why);
    c->stats.replan_wall_ms = clock_wall_ms();
    c->stats.recovered_wall_ms = 0;
    c->switching = false;
    c->serving = false;
    update_feeding(c);
    c->planned = false;
    memset(c->stage_nodes, 0, sizeof c->stage_nodes);
    sched_requeue_all(&c->sched);
    make_plan(c); /* with no worker left this records why nothing can be served */
    if (!c->planned) fail_unplannable(c);
}

/* Called when the pipeline loses a member. */
static void plan_broken(coord *c, const char *why) {
    log_msg("pipeline broken (%s)", why);
    switch_plan(c, why);
}

void coord_replan_graceful(coord *c, const char *why) {
    snprintf(c->switch_why, sizeof c->switch_why, "%s", why);
    if (!c->planned || sched_inflight(&c->sched) == 0) {
        switch_plan(c, why);
        return;
    }
    c->switching = true;
    update_feeding(c);
    c->switch_start_ms = clock_ms();
    log_msg("%s: waiting for %d micro-batch(es) in flight before re-planning", why, sched_inflight(&c->sched));
}

/* A worker is gone (connection dropped or silent): forget it, re-plan if it held layers. */
static void node_lost(coord *c, coord_node *n, const char *why) {
    bool in_plan = n->stage >= 0 && c->planned && !c->shutting_down;
    log_msg("worker %u left: %s", (unsigned)n->id, why);
    c->stats.workers_dead++;
    node_retire(c, n);
    if (in_plan) plan_broken(c, "a worker of the pipeline left");
}

const char *coord_node_state(const coord *c, const coord_node *n) {
    if (n->dead) return n->removing ? "removed" : "dead";
    if (n->removing) return "removing";
    if (n->unfit) return "unfit";
    if (n->drained) return n->stage >= 0 ? "draining" : "drained";
    if (n->stage < 0) return "idle";
    return n->ready && c->serving ? "serving" : "loading";
}

/* --- node messages ------------------------------------------------------ */

static void handle_join(coord *c, net_conn *conn, const frame_header *h, const uint8_t *msg) {
    Baton__Join *j = baton__join__unpack(NULL, h->msg_len, msg);
    if (!j) {
        net_close(conn, "malformed join");
        return;
    }
    if (strcmp(j->model_digest ? j->model_digest : "", c->model_digest) != 0) {
        /* another file: its layers would compute another function, with status OK */
        char why[400];
        snprintf(why, sizeof why, "model mismatch: the worker's file has digest '%s', the coordinator's %s has '%s'",
                 j->model_digest ? j->model_digest : "", c->o.model_path, c->model_digest);
        log_msg("refusing worker from %s: %s", net_peer_addr(conn), why);
        baton__join__free_unpacked(j, NULL);
        net_send_status(conn, 0, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, why);
        net_close(conn, why);
        return;
    }
    coord_node *n = calloc(1, sizeof *n);
    if (!n) {
        baton__join__free_unpacked(j, NULL);
        return;
    }
    n->id = ++c->next_node_id;
    n->conn = conn;
    snprintf(n->listen, sizeof n->listen, "%s", j->listen_address ? j->listen_address : "");
    n->mem = j->free_memory;
    n->speed = j->seconds_per_layer;
    n->kv_type = j->kv_type;
    n->kv_bytes_per_token = j->kv_bytes_per_token;
    n->cores = j->cores;
    snprintf(n->isa, sizeof n->isa, "%s", j->isa ? j->isa : "");
    snprintf(n->device, sizeof n->device, "%s", j->device && j->device[0] ? j->device : "cpu");
    n->stage = -1;
    n->last_seen_ms = clock_ms();
    baton__join__free_unpacked(j, NULL);
    coord_node **pp = &c->nodes;
    while (*pp) pp = &(*pp)->next;
    *pp = n;
    c->n_nodes++;
    log_msg("worker %u joined from %s: listens on %s, %.1f MiB, %u cores, %s, device %s, %.3g s/layer, KV %s %llu "
          "B/token/layer",
          (unsigned)n->id, net_peer_addr(conn), n->listen, (double)n->mem / 1048576.0, (unsigned)n->cores, n->isa, n->device,
          n->speed, tensor_type_get(n->kv_type) ? tensor_type_get(n->kv_type)->name : "?",
          (unsigned long long)n->kv_bytes_per_token);
    if (!c->planned && (c->n_nodes >= c->o.want_workers || c->plan_id > 0)) make_plan(c);
    else if (c->planned) log_msg("worker %u is idle until the next re-plan (batonctl rebalance)", (unsigned)n->id);
}

static void handle_ready(coord *c, coord_node *n, const frame_header *h, const uint8_t *msg) {
    Baton__Ready *r = baton__ready__unpack(NULL, h->msg_len, msg);
    if (!r) return;
    if (r->plan_id != c->plan_id || n->stage < 0) {
        baton__ready__free_unpacked(r, NULL);
        return;
    }
    if (!r->ok) {
        /* plan again without it: the others may hold the model */
        n->unfit = true;
        snprintf(n->unfit_why, sizeof n->unfit_why, "cannot take its layers: %s", r->error ? r->error : "");
        log_msg("worker %u %s", (unsigned)n->id, n->unfit_why);
        baton__ready__free_unpacked(r, NULL);
        switch_plan(c, "a worker cannot take its layers");
        return;
    }
    if (strcmp(r->rope ? r->rope : "", c->rope_desc) != 0) {
        /* it would compute another function (an older worker ignores the RoPE fields) */
        n->unfit = true;
        snprintf(n->unfit_why, sizeof n->unfit_why, "computes RoPE '%s', the plan needs '%s'", r->rope ? r->rope : "",
                 c->rope_desc);
        log_msg("worker %u %s", (unsigned)n->id, n->unfit_why);
        baton__ready__free_unpacked(r, NULL);
        switch_plan(c, "a worker computes another RoPE");
        return;
    }
    n->ready = true;
    n->weight_bytes = r->weight_bytes;
    n->kv_bytes = r->kv_bytes;
    baton__ready__free_unpacked(r, NULL);
    for (int s = 0; s < c->plan.n_stages; s++)
        if (!c->stage_nodes[s] || !c->stage_nodes[s]->ready) return;
    c->serving = true;
    update_feeding(c);
    log_msg("plan %u ready: serving", (unsigned)c->plan_id);
    sched_pump(&c->sched);
}

/* A worker lost a stage link of the current plan: nothing sent into the
 * pipeline can come back, so re-plan now and replay. A node that keeps being the
 * far end of lost links (unreachable from its neighbour) is left out after 3. */
static void handle_link_lost(coord *c, coord_node *n, const frame_header *h, const uint8_t *msg) {
    Baton__LinkLost *l = baton__link_lost__unpack(NULL, h->msg_len, msg);
    if (!l) return;
    bool current = c->planned && l->plan_id == c->plan_id && n->stage >= 0;
    char why[300];
    snprintf(why, sizeof why, "worker %u lost the link %s its %s: %s", (unsigned)n->id, l->successor ? "to" : "from",
             l->successor ? "successor" : "predecessor", l->error ? l->error : "");
    int far = n->stage + (l->successor ? 1 : -1);
    baton__link_lost__free_unpacked(l, NULL);
    if (!current) return; /* a link of an earlier plan: the switch closed it */
    if (far >= 0 && far < c->plan.n_stages && c->stage_nodes[far]) {
        coord_node *f = c->stage_nodes[far];
        if (++f->link_failures >= 3) {
            f->unfit = true;
            snprintf(f->unfit_why, sizeof f->unfit_why, "its stage link failed %d times in a row", f->link_failures);
            log_msg("worker %u left out of plans: %s", (unsigned)f->id, f->unfit_why);
        }
    }
    plan_broken(c, why);
}

static void handle_worker_frame(coord *c, coord_node *n, const frame_header *h, const uint8_t *msg) {
    switch (h->kind) {
    case BATON__FRAME_KIND__FRAME_JOIN: log_msg("worker %u joined twice; ignored", (unsigned)n->id); break;
    case BATON__FRAME_KIND__FRAME_READY: handle_ready(c, n, h, msg); break;
    case BATON__FRAME_KIND__FRAME_LINK_LOST: handle_link_lost(c, n, h, msg); break;
    case BATON__FRAME_KIND__FRAME_STAGE_RESULT: {
        Baton__StageResult *r = baton__stage_result__unpack(NULL, h->msg_len, msg);
        if (r) {
            if (r->code == BATON__STATUS_CODE__STATUS_OK)
                for (int s = 0; s < c->plan.n_stages; s++)
                    if (c->stage_nodes[s]) c->stage_nodes[s]->link_failures = 0;
            uint64_t generated = sched_stats_of(&c->sched)->tokens_generated;
            sched_on_result(&c->sched, r);
            if (sched_stats_of(&c->sched)->tokens_generated != generated && c->stats.replan_wall_ms &&
                !c->stats.recovered_wall_ms)
                c->stats.recovered_wall_ms = clock_wall_ms(); /* the first token after a re-plan */
            baton__stage_result__free_unpacked(r, NULL);
        }
        if (c->switching && sched_inflight(&c->sched) == 0) switch_plan(c, c->switch_why);
        break;
    }
    case BATON__FRAME_KIND__FRAME_WORKER_STATUS: {
        Baton__WorkerStatus *ws = baton__worker_status__unpack(NULL, h->msg_len, msg);
        if (ws) {
            n->slots_used = ws->slots_used;
            n->kv_positions = ws->kv_positions;
            n->peak_rss = ws->peak_rss;
            n->hop_bytes = ws->hop_bytes;
            n->hop_frames = ws->hop_frames;
            n->busy_us = ws->busy_us;
            n->weight_bytes = ws->weight_bytes;
            n->kv_bytes = ws->kv_bytes;
            n->steps = ws->steps;
            n->queue_peak = ws->queue_peak;
            baton__worker_status__free_unpacked(ws, NULL);
        }
        break;
    }
    default: log_msg("ignoring frame kind %u from worker %u", (unsigned)h->kind, (unsigned)n->id); break;
    }
}

/* --- client calls -------------------------------------------------------- */

static void node_status_fill(coord *c, const coord_node *n, Baton__NodeStatus *ns, uint64_t now) {
    baton__node_status__init(ns);
    ns->node_id = n->id;
    ns->address = (char *)n->listen;
    ns->stage = n->stage;
    if (n->stage >= 0) {
        const plan_stage *ps = &c->plan.stages[n->stage];
        ns->layer_begin = ps->layer_begin;
        ns->layer_end = ps->layer_end;
        ns->embed = ps->embed;
        ns->head = ps->head;
        ns->stage_seconds = ps->seconds;
    }
    ns->ready = n->ready;
    ns->slots_used = n->slots_used;
    ns->kv_positions = n->kv_positions;
    ns->peak_rss = n->peak_rss;
    ns->weight_bytes = n->weight_bytes;
    ns->kv_bytes = n->kv_bytes;
    ns->hop_bytes = n->hop_bytes;
    ns->hop_frames = n->hop_frames;
    ns->busy_us = n->busy_us;
    ns->state = (char *)coord_node_state(c, n);
    ns->memory = n->mem;
    ns->isa = (char *)n->isa;
    ns->device = (char *)n->device;
    ns->cores = n->cores;
    ns->seconds_per_layer = n->speed;
    ns->heartbeat_age_ms = now > n->last_seen_ms ? now - n->last_seen_ms : 0;
    ns->steps = n->steps;
    ns->queue_peak = n->queue_peak;
}

void coord_fill_health(coord *c, Baton__HealthReply *r, Baton__NodeStatus **ns, Baton__NodeStatus ***np) {
    r->serving = c->serving;
    r->n_workers = (uint32_t)c->n_nodes;
    const sched_stats *ss = sched_stats_of(&c->sched);
    r->active_requests = (uint32_t)sched_count(&c->sched, REQ_ACTIVE);
    r->queued_requests = (uint32_t)sched_count(&c->sched, REQ_QUEUED);
    r->plan_error = c->plan_error;
    r->plan_id = c->planned ? c->plan_id : 0;
    r->predicted_step_s = c->planned ? c->plan.bottleneck : 0;
    r->tokens_per_s = metrics_tokens_per_s(c);
    r->tokens_generated = ss->tokens_generated;
    r->tokens_prompt = ss->tokens_prompt;
    for (int k = 0; k < STATUS_COUNT; k++) {
        r->requests_total += ss->req_by_code[k];
        if (k != BATON__STATUS_CODE__STATUS_OK && k != BATON__STATUS_CODE__STATUS_CANCELLED)
            r->requests_failed += ss->req_by_code[k];
    }
    uint64_t now = clock_ms();
    r->uptime_s = (double)(now - c->stats.start_ms) / 1000.0;
    r->inflight_batches = (uint32_t)sched_inflight(&c->sched);
    r->step_seconds_avg = ss->steps ? (double)ss->step_us_sum / 1e6 / (double)ss->steps : 0;
    r->replans = c->stats.replans;
    int n_dead = 0;
    for (coord_node *d = c->dead; d; d = d->next) n_dead++;
    *ns = calloc((size_t)(c->n_nodes + n_dead) + 1, sizeof **ns);
    *np = calloc((size_t)(c->n_nodes + n_dead) + 1, sizeof **np);
    if (!*ns || !*np) return;
    int i = 0;
    for (coord_node *n = c->nodes; n; n = n->next, i++) {
        node_status_fill(c, n, &(*ns)[i], now);
        (*np)[i] = &(*ns)[i];
    }
    for (coord_node *n = c->dead; n; n = n->next, i++) {
        node_status_fill(c, n, &(*ns)[i], now);
        (*np)[i] = &(*ns)[i];
    }
    r->n_nodes = (size_t)i;
    r->nodes = *np;
}

/* Health for clients: the live nodes only; admins (FRAME_ADMIN_STATE) also see the dead ones. */
static void handle_health(coord *c, net_conn *conn, uint32_t call_id) {
    Baton__HealthReply r = BATON__HEALTH_REPLY__INIT;
    Baton__NodeStatus *ns = NULL, **np = NULL;
    coord_fill_health(c, &r, &ns, &np);
    if (r.n_nodes > (size_t)c->n_nodes) r.n_nodes = (size_t)c->n_nodes;
    net_send(conn, BATON__FRAME_KIND__FRAME_HEALTH_REPLY, call_id, &r.base, NULL, 0);
    net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_OK, "");
    free(ns);
    free(np);
}

static void handle_model_info(coord *c, net_conn *conn, uint32_t call_id) {
    Baton__ModelInfoReply r = BATON__MODEL_INFO_REPLY__INIT;
    r.n_layer = c->hp.n_layer;
    r.n_embd = c->hp.n_embd;
    r.n_vocab = c->hp.n_vocab;
    r.n_ctx = (uint32_t)c->o.n_ctx;
    r.has_tokenizer = c->tok != NULL;
    r.model_path = (char *)c->o.model_path;
    net_send(conn, BATON__FRAME_KIND__FRAME_MODEL_INFO_REPLY, call_id, &r.base, NULL, 0);
    net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_OK, "");
}

/* --- work off the loop ----------------------------------------------------- */

static void job_run(uv_work_t *w) {
    coord_job *j = w->data;
    j->run(j);
}

static void job_after(uv_work_t *w, int status) {
    coord_job *j = w->data;
    coord *c = j->c;
    (void)status;
    for (coord_job **pp = &c->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    j->done(j);
}

void coord_job_start(coord *c, coord_job *j) {
    j->c = c;
    j->work.data = j;
    j->next = c->jobs;
    c->jobs = j;
    if (uv_queue_work(c->loop, &j->work, job_run, job_after) != 0) {
        c->jobs = j->next;
        j->cancelled = true;
        j->done(j);
    }
}

void coord_jobs_forget(coord *c, const void *client, uint32_t call_id, bool all) {
    for (coord_job *j = c->jobs; j; j = j->next)
        if (j->client == client && (all || j->call_id == call_id)) {
            if (all) {
                j->client = NULL;
            } else if (coord_send_status(c, j->client, call_id, BATON__STATUS_CODE__STATUS_CANCELLED,
                                         "cancelled by the client") == 0) {
                j->cancelled = true;
            }
        }
}

/* Tokenize calls: encoding a text or decoding ids, on the thread pool. */
typedef struct tokenize_job {
    coord_job base;
    Baton__TokenizeRequest *t; /* owned */
    int32_t *ids;
    int64_t n;
    char *text;
} tokenize_job;

static void tokenize_run(coord_job *cj) {
    tokenize_job *j = (tokenize_job *)cj;
    const tokenizer *tok = cj->c->tok;
    const Baton__TokenizeRequest *t = j->t;
    j->n = -1;
    if (t->text && t->text[0]) {
        char err[200];
        j->n = tok_encode_alloc(tok, t->text, strlen(t->text), t->parse_special ? TOK_SPECIAL_PARSE : TOK_SPECIAL_PLAIN,
                                &j->ids, err, sizeof err);
    } else {
        int64_t need = tok_decode(tok, t->tokens, (int64_t)t->n_tokens, NULL, 0);
        if (need >= 0 && (j->text = malloc((size_t)need + 1))) {
            tok_decode(tok, t->tokens, (int64_t)t->n_tokens, j->text, (size_t)need + 1);
            j->text[need] = 0;
        }
    }
}

static void tokenize_done(coord_job *cj) {
    tokenize_job *j = (tokenize_job *)cj;
    net_conn *conn = cj->client;
    if (conn && !cj->cancelled) {
        Baton__TokenizeReply r = BATON__TOKENIZE_REPLY__INIT;
        bool encoding = j->t->text && j->t->text[0];
        if (encoding && j->n < 0) {
            net_send_status(conn, cj->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "the text cannot be encoded");
        } else if (!encoding && !j->text) {
            net_send_status(conn, cj->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "invalid token id");
        } else {
            if (encoding) r.n_tokens = (size_t)j->n, r.tokens = j->ids;
            else r.text = j->text;
            net_send(conn, BATON__FRAME_KIND__FRAME_TOKENIZE_REPLY, cj->call_id, &r.base, NULL, 0);
            net_send_status(conn, cj->call_id, BATON__STATUS_CODE__STATUS_OK, "");
        }
    }
    free(j->ids);
    free(j->text);
    baton__tokenize_request__free_unpacked(j->t, NULL);
    free(j);
}

/* Takes t. */
static void handle_tokenize(coord *c, net_conn *conn, uint32_t call_id, Baton__TokenizeRequest *t) {
    char msg[200];
    int code = 0;
    if (!c->tok) {
        code = BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION;
        snprintf(msg, sizeof msg, "the model file has no tokenizer");
    } else if (t->text && strlen(t->text) > c->o.max_prompt_bytes) {
        code = BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
        snprintf(msg, sizeof msg, "text: %zu bytes, more than this coordinator takes (--max-prompt-bytes %llu)",
                 strlen(t->text), (unsigned long long)c->o.max_prompt_bytes);
    }
    tokenize_job *j = code ? NULL : calloc(1, sizeof *j);
    if (!code && !j) code = BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, snprintf(msg, sizeof msg, "out of memory");
    if (code) {
        net_send_status(conn, call_id, code, msg);
        baton__tokenize_request__free_unpacked(t, NULL);
        return;
    }
    j->t = t;
    j->base.client = conn;
    j->base.call_id = call_id;
    j->base.run = tokenize_run;
    j->base.done = tokenize_done;
    coord_job_start(c, &j->base);
}

static void handle_client_frame(coord *c, net_conn *conn, const frame_header *h, const uint8_t *msg) {
    switch (h->kind) {
    case BATON__FRAME_KIND__FRAME_GENERATE: {
        Baton__GenerateRequest *g = baton__generate_request__unpack(NULL, h->msg_len, msg);
        if (!g) {
            net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed request");
            return;
        }
        coord_generate(c, conn, h->call_id, g);
        break;
    }
    case BATON__FRAME_KIND__FRAME_CANCEL: coord_cancel(c, conn, h->call_id, false); break;
    case BATON__FRAME_KIND__FRAME_HEALTH: handle_health(c, conn, h->call_id); break;
    case BATON__FRAME_KIND__FRAME_MODEL_INFO: handle_model_info(c, conn, h->call_id); break;
    case BATON__FRAME_KIND__FRAME_TOKENIZE: {
        Baton__TokenizeRequest *t = baton__tokenize_request__unpack(NULL, h->msg_len, msg);
        if (!t) {
            net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed request");
            return;
        }
        handle_tokenize(c, conn, h->call_id, t);
        break;
    }
    default:
        net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_UNIMPLEMENTED, "unknown call kind");
        break;
    }
}

/* --- connections ---------------------------------------------------------- */

static void on_open(net_conn *conn) { (void)conn; }

/* net_handlers.busy: a client with a request under way is not idle. */
static bool on_busy(net_conn *conn) {
    const coord *c = net_user(conn);
    return sched_client_busy(&c->sched, conn);
}

static void on_frame(net_conn *conn, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    coord *c = net_user(conn);
    (void)payload;
    if (net_peer_role(conn) == BATON__ROLE__ROLE_WORKER) {
        coord_node *n = node_of(c, conn);
        if (!n) {
            if (h->kind == BATON__FRAME_KIND__FRAME_JOIN) handle_join(c, conn, h, msg);
            return;
        }
        n->last_seen_ms = clock_ms();
        handle_worker_frame(c, n, h, msg);
    } else if (h->kind >= BATON__FRAME_KIND__FRAME_ADMIN_STATE && h->kind <= BATON__FRAME_KIND__FRAME_METRICS_REPLY) {
        if (net_peer_role(conn) == BATON__ROLE__ROLE_ADMIN) admin_handle_frame(c, conn, h, msg);
        else
            net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_PERMISSION_DENIED,
                            "admin calls need an admin connection (batonctl)");
    } else {
        handle_client_frame(c, conn, h, msg);
    }
}

static void on_close(net_conn *conn, const char *why) {
    coord *c = net_user(conn);
    coord_node *n = node_of(c, conn);
    if (!n) {
        coord_cancel(c, conn, 0, true);
        return;
    }
    node_lost(c, n, why);
}

/* Declares dead every worker silent for longer than the heartbeat timeout. */
uint64_t coord_silence_ms(uint64_t now_ms, uint64_t last_seen_ms) {
    /* a stall extension (on_tick) may put last_seen_ms ahead of now: not silent */
    return now_ms > last_seen_ms ? now_ms - last_seen_ms : 0;
}

uint64_t coord_seen_after_stall(uint64_t last_seen_ms, uint64_t stall_ms, uint64_t now_ms) {
    return last_seen_ms + stall_ms < now_ms ? last_seen_ms + stall_ms : now_ms;
}

static void check_silence(coord *c, uint64_t now) {
    uint64_t limit = (uint64_t)c->o.heartbeat_timeout_ms;
    for (coord_node *n = c->nodes, *nx; n; n = nx) {
        nx = n->next;
        uint64_t allowed = n->stage >= 0 && !n->ready && limit < LOADING_GRACE_MS ? LOADING_GRACE_MS : limit;
        uint64_t silent = coord_silence_ms(now, n->last_seen_ms);
        if (silent <= allowed) continue;
        char why[96];
        snprintf(why, sizeof why, "silent for %llu ms (heartbeat timeout %llu ms)", (unsigned long long)silent,
                 (unsigned long long)limit);
        net_conn *conn = n->conn;
        node_lost(c, n, why); /* may re-plan and change the list: one per tick */
        net_close(conn, why); /* its on_close finds no node any more */
        return;
    }
}

/* The oldest micro-batch in flight missed its deadline: a stage lost it (a link
 * that died without a word, a stage that stopped computing). Re-plan and replay. */
static void check_steps(coord *c, uint64_t now) {
    const sched_batch *b = sched_overdue(&c->sched, now);
    if (!b) return;
    char why[160];
    snprintf(why, sizeof why, "micro-batch %llu not back after %llu ms (step timeout)", (unsigned long long)b->step_id,
             (unsigned long long)(now - b->sent_us / 1000));
    plan_broken(c, why);
}

static void on_tick(uv_timer_t *t) {
    coord *c = t->data;
    uint64_t now = clock_ms();
    /* A late tick means the loop was busy and read nothing meanwhile: that time
     * is not the workers' silence, nor the pipeline's delay. */
    uint64_t stall = c->last_tick_ms && now - c->last_tick_ms > 200 ? now - c->last_tick_ms - 50 : 0;
    c->last_tick_ms = now;
    if (stall) {
        log_msg("event loop stalled for %llu ms; heartbeat and step deadlines extended", (unsigned long long)stall);
        /* never past now: a worker heard from during the stall would otherwise be "seen" in
         * the future, and the unsigned silence of the next tick wrap to ~2^64 ms (declared dead) */
        for (coord_node *n = c->nodes; n; n = n->next)
            n->last_seen_ms = coord_seen_after_stall(n->last_seen_ms, stall, now);
        sched_extend_deadlines(&c->sched, stall);
    }
    if (now - c->last_beat_ms >= HEARTBEAT_MS) {
        c->last_beat_ms = now;
        Baton__Heartbeat hb = BATON__HEARTBEAT__INIT;
        hb.time_ms = now;
        hb.want_status = true;
        for (coord_node *n = c->nodes; n; n = n->next)
            net_send(n->conn, BATON__FRAME_KIND__FRAME_HEARTBEAT, 0, &hb.base, NULL, 0);
    }
    check_silence(c, now);
    check_steps(c, now);
    if (c->switching && now - c->switch_start_ms > SWITCH_WAIT_MS) {
        log_msg("%d micro-batch(es) still in flight after %d ms: re-planning anyway", sched_inflight(&c->sched),
                SWITCH_WAIT_MS);
        switch_plan(c, c->switch_why);
    }
    metrics_sample(c, now);
    sched_tick(&c->sched);
}

/* Loads one credential file into key and points *slot at it; warnings are logged. 0 or -1. */
static int load_key(const char *path, const char *what, auth_key *key, const auth_key **slot, char *err,
                    size_t errlen) {
    if (!path) return 0;
    char msg[512];
    int rc = auth_key_load(path, what, key, msg, sizeof msg);
    if (rc < 0) {
        snprintf(err, errlen, "%s", msg);
        return -1;
    }
    if (rc > 0) log_msg("%s", msg);
    *slot = key;
    return 0;
}

/* Reads the credentials of --secret, --admin-token-file and --api-keys into
 * c->cfg and says in the log what is protected. 0, or -1 with a message. */
static int load_access(coord *c, char *err, size_t errlen) {
    const coord_opts *o = &c->o;
    if (load_key(o->secret_file, "cluster secret", &c->secret, &c->cfg.secret, err, errlen) != 0 ||
        load_key(o->admin_token_file, "admin token", &c->admin_token, &c->cfg.admin_token, err, errlen) != 0)
        return -1;
    if (o->api_keys_file) {
        char msg[512];
        int rc = auth_keyring_load(o->api_keys_file, &c->api_keys, msg, sizeof msg);
        if (rc < 0) {
            snprintf(err, errlen, "%s", msg);
            return -1;
        }
        if (rc > 0) log_msg("%s", msg);
        c->cfg.client_keys = &c->api_keys;
    }
    log_msg("access control: workers %s; admin calls %s; client calls %s",
          c->cfg.secret ? "must prove the cluster secret" : "are not checked (no --secret)",
          c->cfg.admin_token   ? "need the admin token"
          : c->cfg.client_keys ? "are refused (API keys but no --admin-token-file)"
                               : "are open (no --admin-token-file)",
          c->cfg.client_keys ? "need an API key" : "are open (no --api-keys)");
    return 0;
}

/* The scheduler over our options and model, talking to us through a sched_env. 0 or -1. */
static int start_sched(coord *c) {
    sched_opts so = {.n_slots = c->o.n_slots, .n_ctx = c->o.n_ctx, .max_batch = c->o.max_batch, .chunk = c->o.chunk,
                     .max_inflight = c->o.max_inflight, .step_timeout_ms = c->o.step_timeout_ms,
                     .n_vocab = c->hp.n_vocab, .width = c->hp.n_embd, .n_eog = c->n_eog, .tok = c->tok};
    memcpy(so.eog, c->eog, sizeof so.eog);
    sched_env env = {.user = c, .send_first = env_send_first, .drop_slot = env_drop_slot,
                     .send_status = env_send_status, .send_chunk = env_send_chunk, .now_us = env_now_us};
    return sched_init(&c->sched, &so, &env);
}

int coord_init(coord *c, const coord_opts *o, uv_loop_t *loop, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->o = *o;
    if (c->o.heartbeat_timeout_ms <= 0) c->o.heartbeat_timeout_ms = 3000;
    if (c->o.step_timeout_ms <= 0) c->o.step_timeout_ms = 10000;
    if (!c->o.max_prompt_bytes) c->o.max_prompt_bytes = 8u << 20;
    if (!c->o.max_requests) c->o.max_requests = 4096;
    if (!c->o.max_prompt_memory) c->o.max_prompt_memory = 512ull << 20;
    if (!c->o.max_conn_prompt_memory) c->o.max_conn_prompt_memory = 64ull << 20;
    c->stats.start_ms = clock_ms();
    c->loop = loop;
    c->gf = gguf_open(o->model_path, err, errlen);
    if (!c->gf) return -1;
    if (model_read_hparams(c->gf, &c->hp, err, errlen) != 0) return -1;
    if (model_apply_rope_opts(&c->hp, &o->rope, err, errlen) != 0) return -1;
    model_rope_describe(&c->hp, c->rope_desc, sizeof c->rope_desc);
    gguf_digest(c->gf, c->model_digest);
    if (c->o.n_ctx <= 0) c->o.n_ctx = c->hp.n_ctx_train < 4096 ? (int)c->hp.n_ctx_train : 4096;
    if (gguf_find_key(c->gf, "tokenizer.ggml.tokens") >= 0) {
        char terr[256];
        c->tok = tok_load_gguf(c->gf, terr, sizeof terr);
        if (!c->tok) log_msg("the model's tokenizer cannot be loaded (%s): token ids only", terr);
        else c->n_eog = tok_eog_ids(c->tok, c->eog, 8);
    }
    if (start_sched(c) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->cfg = (net_config){.cluster_id = o->cluster_id, .role = BATON__ROLE__ROLE_COORDINATOR, .name = "coordinator",
                          .max_frame = o->max_frame, .log_prefix = "baton-coord", .handshake_ms = o->handshake_ms,
                          .idle_ms = o->idle_ms, .max_conns = o->max_conns};
    if (load_access(c, err, errlen) != 0) return -1;
    static const net_handlers h = {.on_open = on_open, .on_frame = on_frame, .on_close = on_close, .busy = on_busy};
    c->server = net_listen(loop, &c->cfg, o->listen, NET_ROLE_BIT(CLIENT) | NET_ROLE_BIT(WORKER) | NET_ROLE_BIT(ADMIN),
                           &h, c, err, errlen);
    if (!c->server) return -1;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, 50, 50);
    const char *colon = strrchr(o->listen, ':');
    log_msg("listening on %.*s:%d (model %s: %u layers, embedding %u, vocabulary %u%s), waiting for %d worker(s)",
          (int)(colon - o->listen), o->listen, net_server_port(c->server), o->model_path, (unsigned)c->hp.n_layer,
          (unsigned)c->hp.n_embd, (unsigned)c->hp.n_vocab,
          c->tok ? ", tokenizer" : "", o->want_workers);
    if (o->metrics_listen && metrics_http_start(c, o->metrics_listen, err, errlen) != 0) return -1;
    if (o->http_listen && api_http_start(c, o->http_listen, err, errlen) != 0) return -1;
    return 0;
}

void coord_free(coord *c) {
    api_http_stop(c);
    metrics_http_stop(c);
    while (c->dead) {
        coord_node *n = c->dead;
        c->dead = n->next;
        free(n);
    }
    auth_keyring_free(&c->api_keys);
    sched_free(&c->sched);
    tok_free(c->tok);
    gguf_close(c->gf);
    while (c->nodes) {
        coord_node *n = c->nodes;
        c->nodes = n->next;
        free(n);
    }
}
