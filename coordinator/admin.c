/* admin.c - admin calls on connections with role ADMIN. See coord.h.
 *
 *   FRAME_ADMIN_STATE   -> HealthReply with every node (the dead ones too), plan and counters
 *   FRAME_ADMIN_NODE_OP -> AdminNodeOpReply: drain, undrain, remove, rebalance
 *   FRAME_METRICS       -> MetricsReply: the same Prometheus text as GET /metrics
 *
 * Operations that change the plan are checked with a dry run first: one that
 * would leave no plan is refused with FAILED_PRECONDITION and the planner's
 * message, so no request fails because of an admin call. The reply comes as soon
 * as the switch is under way; `batonctl nodes` shows it finish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"

static coord_node *node_by_id(coord *c, uint32_t id) {
    for (coord_node *n = c->nodes; n; n = n->next)
        if (n->id == id) return n;
    return NULL;
}

static void reply_op(coord *c, net_conn *conn, uint32_t call_id, const char *message) {
    Baton__AdminNodeOpReply r = BATON__ADMIN_NODE_OP_REPLY__INIT;
    r.message = (char *)message;
    r.plan_id = c->planned ? c->plan_id : 0;
    net_send(conn, BATON__FRAME_KIND__FRAME_ADMIN_NODE_OP_REPLY, call_id, &r.base, NULL, 0);
    net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_OK, "");
    log_msg("admin: %s", message);
}

/* 0 if a plan fits the eligible nodes now; else the reason in err. */
static int dry_run(coord *c, char *err, size_t errlen) {
    static plan_result pr;
    coord_node *order[PLAN_MAX_NODES];
    int nn;
    return coord_plan_dry(c, &pr, order, &nn, err, errlen);
}

/* Drain (and, with remove, disconnect) node n: refused if the others cannot hold the model. */
static void op_drain(coord *c, net_conn *conn, uint32_t call_id, coord_node *n, bool remove) {
    char msg[700], err[560];
    bool was_drained = n->drained, was_removing = n->removing;
    n->drained = true;
    n->removing = remove;
    if (n->stage >= 0 && dry_run(c, err, sizeof err) != 0) {
        n->drained = was_drained;
        n->removing = was_removing;
        snprintf(msg, sizeof msg, "worker %u cannot be %s: without it %s", (unsigned)n->id,
                 remove ? "removed" : "drained", err);
        net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, msg);
        return;
    }
    if (n->stage < 0) {
        snprintf(msg, sizeof msg, "worker %u %s (it held no layers)", (unsigned)n->id, remove ? "removed" : "drained");
        if (remove) {
            /* it holds nothing: a re-plan is not needed, disconnecting it is enough */
            n->removing = true;
            coord_tell_leave(c, n); /* exit rather than rejoin */
            net_close(n->conn, "removed by an admin");
        }
        reply_op(c, conn, call_id, msg);
        return;
    }
    snprintf(msg, sizeof msg, "worker %u %s: its layers move to the other workers at the next step boundary",
             (unsigned)n->id, remove ? "being removed" : "draining");
    char why[64];
    snprintf(why, sizeof why, "worker %u %s", (unsigned)n->id, remove ? "removed" : "drained");
    reply_op(c, conn, call_id, msg);
    coord_replan_graceful(c, why);
}

static void on_shutdown_timer(uv_timer_t *t) { uv_stop(t->loop); }

/* An admin's stop: every request ends with an explicit status, the answer goes
 * out, then (after 200 ms for the writes to flush) the loop stops, main frees
 * the coordinator and exits 0; every worker is told to leave and exits too. */
static void op_shutdown(coord *c, net_conn *conn, uint32_t call_id) {
    if (c->shutting_down) { /* a second one (from any admin) while the first flushes: the timer runs once */
        reply_op(c, conn, call_id, "already shutting down");
        return;
    }
    log_msg("shutdown requested by an admin (%s)", net_peer_addr(conn));
    sched_fail_all(&c->sched, BATON__STATUS_CODE__STATUS_UNAVAILABLE, "the cluster was shut down by an admin");
    /* the workers follow (a coordinator that merely restarts keeps them: they rejoin) */
    c->shutting_down = true;
    for (coord_node *n = c->nodes; n; n = n->next) coord_tell_leave(c, n);
    reply_op(c, conn, call_id, "shutting down");
    uv_timer_init(c->loop, &c->shutdown_timer);
    uv_timer_start(&c->shutdown_timer, on_shutdown_timer, 200, 0);
}

static void handle_node_op(coord *c, net_conn *conn, uint32_t call_id, const Baton__AdminNodeOp *op) {
    char msg[700], err[560];
    coord_node *n = NULL;
    if (op->op == BATON__ADMIN_OP__ADMIN_OP_SHUTDOWN) {
        op_shutdown(c, conn, call_id);
        return;
    }
    if (op->op != BATON__ADMIN_OP__ADMIN_OP_REBALANCE) {
        n = node_by_id(c, op->node_id);
        if (!n) {
            snprintf(msg, sizeof msg, "no live worker with id %u (see batonctl nodes)", (unsigned)op->node_id);
            net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_NOT_FOUND, msg);
            return;
        }
    }
    switch (op->op) {
    case BATON__ADMIN_OP__ADMIN_OP_DRAIN: op_drain(c, conn, call_id, n, false); break;
    case BATON__ADMIN_OP__ADMIN_OP_REMOVE: op_drain(c, conn, call_id, n, true); break;
    case BATON__ADMIN_OP__ADMIN_OP_UNDRAIN:
        if (n->removing) {
            net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION,
                            "the worker is being removed");
            return;
        }
        n->drained = false;
        n->unfit = false; /* an admin vouches for it: try it again */
        n->link_failures = 0;
        snprintf(msg, sizeof msg, "worker %u is eligible again; `batonctl rebalance` gives it layers", (unsigned)n->id);
        reply_op(c, conn, call_id, msg);
        if (!c->planned && !c->switching) coord_replan_graceful(c, "a worker was undrained and nothing is planned");
        break;
    case BATON__ADMIN_OP__ADMIN_OP_REBALANCE:
        if (dry_run(c, err, sizeof err) != 0) {
            snprintf(msg, sizeof msg, "no plan fits: %s", err);
            net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, msg);
            return;
        }
        snprintf(msg, sizeof msg, "re-planning over %d worker(s) at the next step boundary", c->n_nodes);
        reply_op(c, conn, call_id, msg);
        coord_replan_graceful(c, "rebalance");
        break;
    default: net_send_status(conn, call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "unknown admin operation");
    }
}

void admin_handle_frame(coord *c, net_conn *conn, const frame_header *h, const uint8_t *msg) {
    switch (h->kind) {
    case BATON__FRAME_KIND__FRAME_ADMIN_STATE: {
        Baton__HealthReply r = BATON__HEALTH_REPLY__INIT;
        Baton__NodeStatus *ns = NULL, **np = NULL;
        coord_fill_health(c, &r, &ns, &np);
        net_send(conn, BATON__FRAME_KIND__FRAME_ADMIN_STATE_REPLY, h->call_id, &r.base, NULL, 0);
        net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_OK, "");
        free(ns);
        free(np);
        break;
    }
    case BATON__FRAME_KIND__FRAME_ADMIN_NODE_OP: {
        Baton__AdminNodeOp *op = baton__admin_node_op__unpack(NULL, h->msg_len, msg);
        if (!op) {
            net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "malformed admin call");
            return;
        }
        handle_node_op(c, conn, h->call_id, op);
        baton__admin_node_op__free_unpacked(op, NULL);
        break;
    }
    case BATON__FRAME_KIND__FRAME_METRICS: {
        Baton__MetricsReply r = BATON__METRICS_REPLY__INIT;
        r.text = metrics_render(c);
        if (!r.text) {
            net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        net_send(conn, BATON__FRAME_KIND__FRAME_METRICS_REPLY, h->call_id, &r.base, NULL, 0);
        net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_OK, "");
        free(r.text);
        break;
    }
    default:
        net_send_status(conn, h->call_id, BATON__STATUS_CODE__STATUS_UNIMPLEMENTED, "unknown admin call");
        break;
    }
}
