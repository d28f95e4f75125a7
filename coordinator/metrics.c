/* metrics.c - the coordinator's Prometheus text and its HTTP endpoint. See coord.h.
 *
 * metrics_render writes the text exposition format (version 0.0.4) from the
 * coordinator's state; the admin call FRAME_METRICS and GET /metrics serve the
 * same text. The HTTP server is libh2o (Debian's libh2o-dev, the build on
 * libuv) on the coordinator's own loop, so it reads the state without locks.
 * Built with -DBATON_METRICS_HTTP=OFF there is no server: metrics_http_start
 * refuses --metrics-listen with a message; metrics_render stays (batonctl
 * metrics uses it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if BATON_METRICS_HTTP
#include <h2o.h>
#endif

#include "clock.h"
#include "coord.h"
#include "log.h"

#define RATE_WINDOW 11 /* samples of the token counter, one per second: 10 s of rate */

#if BATON_METRICS_HTTP
struct coord_metrics_http {
    coord *c;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
};

typedef struct metrics_handler {
    h2o_handler_t super;
    coord *c;
} metrics_handler;
#endif

void metrics_sample(coord *c, uint64_t now_ms) {
    coord_stats *s = &c->stats;
    int last = (s->rate_pos + RATE_WINDOW - 1) % RATE_WINDOW;
    if (s->rate_n && now_ms - s->rate_ms[last] < 1000) return;
    s->rate_ms[s->rate_pos] = now_ms;
    s->rate_tokens[s->rate_pos] = sched_stats_of(&c->sched)->tokens_generated;
    s->rate_pos = (s->rate_pos + 1) % RATE_WINDOW;
    if (s->rate_n < RATE_WINDOW) s->rate_n++;
}

double metrics_tokens_per_s(const coord *c) {
    const coord_stats *s = &c->stats;
    if (s->rate_n < 2) return 0;
    int newest = (s->rate_pos + RATE_WINDOW - 1) % RATE_WINDOW;
    int oldest = (s->rate_pos + RATE_WINDOW - s->rate_n) % RATE_WINDOW;
    uint64_t dt = s->rate_ms[newest] - s->rate_ms[oldest];
    return dt ? (double)(s->rate_tokens[newest] - s->rate_tokens[oldest]) * 1000.0 / (double)dt : 0;
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per live node: name{node="ID",stage="S"} value. */
static void per_node(FILE *f, coord *c, const char *name, const char *type, const char *help,
                     double (*value)(const coord_node *n, uint64_t now), uint64_t now) {
    head(f, name, type, help);
    for (coord_node *n = c->nodes; n; n = n->next)
        fprintf(f, "%s{node=\"%u\",address=\"%s\",stage=\"%d\"} %.9g\n", name, (unsigned)n->id, n->listen, n->stage,
                value(n, now));
}

static double v_busy(const coord_node *n, uint64_t now) { (void)now; return (double)n->busy_us / 1e6; }
static double v_steps(const coord_node *n, uint64_t now) { (void)now; return (double)n->steps; }
static double v_hop_bytes(const coord_node *n, uint64_t now) { (void)now; return (double)n->hop_bytes; }
static double v_hop_frames(const coord_node *n, uint64_t now) { (void)now; return (double)n->hop_frames; }
static double v_weights(const coord_node *n, uint64_t now) { (void)now; return (double)n->weight_bytes; }
static double v_kv(const coord_node *n, uint64_t now) { (void)now; return (double)n->kv_bytes; }
static double v_age(const coord_node *n, uint64_t now) {
    return now > n->last_seen_ms ? (double)(now - n->last_seen_ms) / 1000.0 : 0;
}

char *metrics_render(coord *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    const coord_stats *s = &c->stats;
    const sched_stats *ss = sched_stats_of(&c->sched);
    uint64_t now = clock_ms();
    head(f, "baton_requests_total", "counter", "Requests ended, by status code.");
    for (int k = 0; k < STATUS_COUNT; k++)
        if (ss->req_by_code[k] || k == 0)
            fprintf(f, "baton_requests_total{status=\"%s\"} %llu\n", status_name(k),
                    (unsigned long long)ss->req_by_code[k]);
    head(f, "baton_requests_active", "gauge", "Requests prefilling or decoding.");
    fprintf(f, "baton_requests_active %d\n", sched_count(&c->sched, REQ_ACTIVE));
    head(f, "baton_requests_queued", "gauge", "Requests waiting for a slot or a plan.");
    fprintf(f, "baton_requests_queued %d\n", sched_count(&c->sched, REQ_QUEUED));
    head(f, "baton_inflight_batches", "gauge", "Micro-batches in the pipeline.");
    fprintf(f, "baton_inflight_batches %d\n", sched_inflight(&c->sched));
    head(f, "baton_tokens_prompt_total", "counter", "Prompt tokens of accepted requests.");
    fprintf(f, "baton_tokens_prompt_total %llu\n", (unsigned long long)ss->tokens_prompt);
    head(f, "baton_tokens_generated_total", "counter", "Tokens generated and streamed to clients.");
    fprintf(f, "baton_tokens_generated_total %llu\n", (unsigned long long)ss->tokens_generated);
    head(f, "baton_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.");
    fprintf(f, "baton_tokens_per_second %.6g\n", metrics_tokens_per_s(c));
    head(f, "baton_step_seconds", "summary", "Round trip of a micro-batch through the pipeline.");
    fprintf(f, "baton_step_seconds_sum %.9g\nbaton_step_seconds_count %llu\n", (double)ss->step_us_sum / 1e6,
            (unsigned long long)ss->steps);
    head(f, "baton_plan_id", "gauge", "Current plan (0: none).");
    fprintf(f, "baton_plan_id %u\n", c->planned ? (unsigned)c->plan_id : 0u);
    head(f, "baton_plan_predicted_step_seconds", "gauge", "The plan's slowest stage per step.");
    fprintf(f, "baton_plan_predicted_step_seconds %.9g\n", c->planned ? c->plan.bottleneck : 0.0);
    head(f, "baton_serving", "gauge", "1 when a plan is in place and every stage is ready.");
    fprintf(f, "baton_serving %d\n", c->serving ? 1 : 0);
    head(f, "baton_replans_total", "counter", "Plans made.");
    fprintf(f, "baton_replans_total %llu\n", (unsigned long long)s->replans);
    head(f, "baton_last_replan_timestamp_seconds", "gauge", "Wall-clock time of the last re-plan (0: none).");
    fprintf(f, "baton_last_replan_timestamp_seconds %.3f\n", (double)s->replan_wall_ms / 1000.0);
    head(f, "baton_last_recovery_timestamp_seconds", "gauge",
         "Wall-clock time of the first token generated after the last re-plan (0: none yet).");
    fprintf(f, "baton_last_recovery_timestamp_seconds %.3f\n", (double)s->recovered_wall_ms / 1000.0);
    head(f, "baton_workers_lost_total", "counter", "Workers that left, died or went silent.");
    fprintf(f, "baton_workers_lost_total %llu\n", (unsigned long long)s->workers_dead);
    head(f, "baton_nodes", "gauge", "Workers by state.");
    static const char *states[] = {"serving", "loading", "idle", "draining", "drained", "removing"};
    for (size_t k = 0; k < sizeof states / sizeof *states; k++) {
        int n_state = 0;
        for (coord_node *n = c->nodes; n; n = n->next) n_state += !strcmp(coord_node_state(c, n), states[k]);
        fprintf(f, "baton_nodes{state=\"%s\"} %d\n", states[k], n_state);
    }
    per_node(f, c, "baton_stage_busy_seconds_total", "counter",
             "Time a worker's compute thread spent in forward passes.", v_busy, now);
    per_node(f, c, "baton_stage_steps_total", "counter", "Stage frames a worker computed.", v_steps, now);
    per_node(f, c, "baton_hop_bytes_total", "counter", "Bytes of stage frames a worker sent to its successor.",
             v_hop_bytes, now);
    per_node(f, c, "baton_hop_frames_total", "counter", "Stage frames a worker sent to its successor.", v_hop_frames,
             now);
    per_node(f, c, "baton_node_weight_bytes", "gauge", "Weight bytes of the slice a worker holds.", v_weights, now);
    per_node(f, c, "baton_node_kv_bytes", "gauge", "KV-cache bytes a worker holds.", v_kv, now);
    per_node(f, c, "baton_node_heartbeat_age_seconds", "gauge", "Time since the last frame from a worker.", v_age, now);
    head(f, "baton_uptime_seconds", "gauge", "Time since the coordinator started.");
    fprintf(f, "baton_uptime_seconds %.3f\n", (double)(now - s->start_ms) / 1000.0);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* --- HTTP ----------------------------------------------------------------- */

#if BATON_METRICS_HTTP

const char *metrics_http_missing(void) { return NULL; }

static int on_metrics_req(h2o_handler_t *self, h2o_req_t *req) {
    metrics_handler *mh = (metrics_handler *)self;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) return -1; /* h2o answers 404 */
    char *text = metrics_render(mh->c);
    if (!text) {
        h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
        return 0;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, text, strlen(text)); /* copies the body into the request's pool */
    free(text);
    return 0;
}

void coord_http_accept(uv_stream_t *listener, void *accept_ctx) {
    uv_tcp_t *conn = malloc(sizeof *conn);
    if (!conn) return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(accept_ctx, sock);
}

static void on_http_accept(uv_stream_t *listener, int status) {
    coord_metrics_http *mh = listener->data;
    if (status == 0) coord_http_accept(listener, &mh->accept_ctx);
}

int metrics_http_start(coord *c, const char *host_port, char *err, size_t errlen) {
    struct sockaddr_in sa;
    if (net_parse_addr(host_port, &sa, err, errlen) != 0) return -1;
    coord_metrics_http *mh = calloc(1, sizeof *mh);
    if (!mh) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    mh->c = c;
    h2o_config_init(&mh->config);
    h2o_hostconf_t *host = h2o_config_register_host(&mh->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/metrics", 0);
    metrics_handler *handler = (metrics_handler *)h2o_create_handler(path, sizeof *handler);
    handler->super.on_req = on_metrics_req;
    handler->c = c;
    h2o_context_init(&mh->ctx, c->loop, &mh->config);
    mh->accept_ctx.ctx = &mh->ctx;
    mh->accept_ctx.hosts = mh->config.hosts;
    uv_tcp_init(c->loop, &mh->listener);
    mh->listener.data = mh;
    c->http = mh;
    int rc = uv_tcp_bind(&mh->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&mh->listener, 64, on_http_accept);
    if (rc != 0) {
        snprintf(err, errlen, "metrics: cannot listen on %s: %s", host_port, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_in bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&mh->listener, (struct sockaddr *)&bound, &blen);
    const char *colon = strrchr(host_port, ':');
    log_msg("metrics on http://%.*s:%d/metrics", (int)(colon - host_port), host_port, (int)ntohs(bound.sin_port));
    return 0;
}

void metrics_http_stop(coord *c) {
    coord_metrics_http *mh = c->http;
    if (!mh) return;
    c->http = NULL;
    /* The loop has stopped: close the listener and let the loop finish the
     * handles h2o and we opened, then free h2o's state. */
    uv_close((uv_handle_t *)&mh->listener, NULL);
    uv_run(c->loop, UV_RUN_NOWAIT);
    h2o_context_dispose(&mh->ctx);
    h2o_config_dispose(&mh->config);
    uv_run(c->loop, UV_RUN_NOWAIT);
    free(mh);
}

#else /* !BATON_METRICS_HTTP */

#define NO_HTTP "built without the metrics HTTP server (-DBATON_METRICS_HTTP=OFF); batonctl metrics still works"

const char *metrics_http_missing(void) { return NO_HTTP; }

int metrics_http_start(coord *c, const char *host_port, char *err, size_t errlen) {
    (void)c;
    snprintf(err, errlen, "--metrics-listen %s: %s", host_port, NO_HTTP);
    return -1;
}

void metrics_http_stop(coord *c) { (void)c; }

#endif
