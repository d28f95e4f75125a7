/* coord.h - the coordinator's state: nodes, the plan, requests, the scheduler.
 *
 * Everything runs on one libuv loop thread; nothing here computes a layer.
 *   coord.c  - node registry, planning and assignment, the client API server
 *   generate.c - the Generate call: checks, tokenising off the loop, admission
 *   scheduler.c - the request record and the continuous-batching scheduler (scheduler.h:
 *              no sockets; it reaches the coordinator through callbacks)
 *   admin.c  - admin calls (state, drain/undrain/remove/rebalance, metrics)
 *   metrics.c - the Prometheus text and its HTTP server (libh2o on the same loop)
 *   api.c    - the OpenAI-compatible HTTP API and the chat page (libh2o on the same loop);
 *              its calls go through coord_generate like the protocol's, with c->api as
 *              their client and their own call ids
 *   api_text.c - the API's text helpers (no HTTP): a byte buffer, the <think> splitter
 *
 * Membership: workers join at any time. A worker that joins while a plan is
 * serving stays idle until a re-plan (admin `rebalance`, or the next failure,
 * drain or remove); the first plan forms once --workers have joined, and a join
 * while nothing is planned plans at once. Every second the coordinator sends a
 * heartbeat and the worker answers with its status; a worker silent for
 * heartbeat_timeout_ms, or whose connection drops, is declared dead.
 * Re-planning after a failure is immediate (the micro-batches in flight are
 * lost); after a drain, remove or rebalance the coordinator stops feeding the
 * pipeline, waits for the micro-batches in flight to come back (a step
 * boundary) and only then switches. Either way the live requests are replayed
 * on the new plan from their records. Workers left out of a plan get an empty
 * assignment and free their slice.
 *
 * Data path: a Generate call becomes a sched_request (its prompt ids, sampling
 * parameters and the tokens generated so far: enough to replay it). The scheduler
 * gives it a KV slot, cuts its prompt into chunks and, step after step, packs
 * chunks and decode tokens of many requests into micro-batches (StageFrames) sent
 * to the first stage. Several micro-batches are in flight so every stage works.
 * The last stage sends back one sampled token per finished prompt or decode
 * token; the scheduler appends it, streams it to the client and decides whether
 * the request goes on.
 */
#ifndef BATON_COORD_H
#define BATON_COORD_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "baton.pb-c.h"
#include "gguf.h"
#include "model.h"
#include "net.h"
#include "plan.h"
#include "sampler.h"
#include "scheduler.h"
#include "status.h"
#include "tokenizer.h"

typedef struct coord_opts {
    const char *listen, *model_path, *cluster_id;
    int want_workers;     /* plan once this many have joined */
    int n_slots;          /* sequences in flight at once (KV slots per worker) */
    int n_ctx;            /* positions per slot */
    int max_batch;        /* tokens per micro-batch */
    int chunk;            /* prompt tokens per chunk */
    int max_inflight;     /* micro-batches in flight; 0: stages + 1 while prompts wait, else stages */
    uint64_t max_frame;
    int heartbeat_timeout_ms; /* silence after which a worker is dead; 0: 3000 */
    int step_timeout_ms;  /* least time a micro-batch may take to come back before the pipeline
                             counts as broken (more for bigger batches and slower plans); 0: 10000 */
    uint64_t max_prompt_bytes; /* largest prompt text (text or chat contents together); 0: 8 MiB */
    /* Admission limits (generate.c): a Generate call beyond one ends at once with
     * RESOURCE_EXHAUSTED. A request counts from receipt (tokenising) until its
     * status is sent; its prompt memory is its text while tokenising, then 4
     * bytes per prompt token. 0: the default. */
    uint32_t max_requests;         /* requests queued, tokenising or running at once; 0: 4096 */
    uint64_t max_prompt_memory;    /* bytes of those requests' prompts, all clients; 0: 512 MiB */
    uint64_t max_conn_prompt_memory; /* the same for one client connection; 0: 64 MiB */
    const char *metrics_listen; /* HOST:PORT of the Prometheus endpoint, NULL: none */
    const char *http_listen;    /* HOST:PORT of the OpenAI-compatible API and the chat page, NULL: none */
    /* access control (auth.h); NULL: that check is off */
    const char *secret_file;      /* cluster secret every worker must prove */
    const char *admin_token_file; /* token admin connections must prove */
    const char *api_keys_file;    /* keys clients must prove one of */
    /* connection bounds (net_config, net.h): 0 takes net's default (idle: off) */
    uint32_t handshake_ms;        /* a connection not authenticated by then is closed */
    uint32_t idle_ms;             /* a client or admin connection idle this long, no request under way, is closed */
    uint32_t max_conns;           /* accepted connections at once */
    model_rope_opts rope;         /* --rope-scaling, --rope-scale, --yarn-orig-ctx over the file's keys */
} coord_opts;

typedef struct coord_node {
    uint32_t id;
    net_conn *conn;
    char listen[128];
    uint64_t mem;
    double speed;
    uint32_t kv_type;               /* its KV-cache format (Join) */
    uint64_t kv_bytes_per_token;    /* K+V of one position of one layer in it (Join; 0: f16 assumed) */
    uint32_t cores;
    char isa[32];
    char device[96]; /* "cpu" or "vulkan:N (NAME)" (Join.device; "cpu" from an older worker) */
    int stage;              /* index in the plan, -1 if unused */
    bool ready;
    uint32_t slots_used;
    uint64_t kv_positions, peak_rss, weight_bytes, kv_bytes;
    uint64_t hop_bytes, hop_frames, busy_us; /* as its last WorkerStatus said */
    uint64_t steps;         /* stage frames computed, as its last WorkerStatus said */
    uint64_t last_seen_ms;  /* last frame from it */
    bool drained;           /* by an admin: left out of every plan until undrained */
    bool removing;          /* disconnect it once the plan without it is in place */
    bool dead;              /* in c->dead only: kept for `nodes` */
    bool unfit;             /* could not load its layers, or its stage links kept failing: left out of
                               plans until it rejoins or an admin undrains it */
    char unfit_why[200];
    int link_failures;      /* stage-link losses blamed on it since the pipeline last served a token */
    uint64_t queue_peak;
    struct coord_node *next;
} coord_node;

/* The coordinator's own counters (the scheduler's are sched_stats). */
typedef struct coord_stats {
    uint64_t replans, workers_dead;
    uint64_t rate_tokens[11];   /* sched_stats.tokens_generated at the last 11 whole seconds (ring) */
    uint64_t rate_ms[11];
    int rate_pos, rate_n;
    uint64_t start_ms;
    /* wall-clock ms (CLOCK_REALTIME) of the last re-plan and of the first token generated after it */
    uint64_t replan_wall_ms, recovered_wall_ms;
} coord_stats;

typedef struct coord_metrics_http coord_metrics_http;
typedef struct coord_api coord_api;

/* Work that must not run on the loop (tokenising a prompt, decoding token ids):
 * it runs on libuv's thread pool, then `done` runs on the loop. The job belongs
 * to a client call; if the client goes away or cancels the call meanwhile,
 * `client` becomes NULL or `cancelled` true and `done` only frees. Embed it as
 * the first member of a bigger struct. */
typedef struct coord_job {
    uv_work_t work;
    struct coord *c;
    void *client;            /* a net_conn, or the HTTP API (coord_send_status tells them apart) */
    uint32_t call_id;
    bool cancelled;
    uint64_t prompt_bytes;  /* a Generate prompt being tokenised: its text's bytes (admission limits); else 0 */
    void (*run)(struct coord_job *j);  /* pool thread: touches nothing but the job (and the const tokenizer) */
    void (*done)(struct coord_job *j); /* loop thread: answers if the client is there, then frees the job */
    struct coord_job *next;
} coord_job;

typedef struct coord {
    coord_opts o;
    uv_loop_t *loop;
    net_config cfg;
    net_server *server;
    uv_timer_t tick;
    /* model */
    gguf_file *gf;
    model_hparams hp;
    tokenizer *tok;          /* NULL if the file has none */
    int32_t eog[8];
    int n_eog;
    /* nodes and plan */
    coord_node *nodes;
    coord_node *dead;        /* the last few dead or removed workers, newest first (display only) */
    uint32_t next_node_id;
    int n_nodes;
    plan_result plan;
    coord_node *stage_nodes[PLAN_MAX_NODES];
    uint32_t plan_id;
    bool planned, serving;
    bool shutting_down;      /* an admin's shutdown: workers leaving is no fault, nothing re-plans */
    uv_timer_t shutdown_timer; /* stops the loop 200 ms after the shutdown's answer (initialised with it) */
    bool switching;          /* a re-plan waits for the micro-batches in flight */
    char switch_why[128];
    uint64_t switch_start_ms;
    char plan_error[512];
    uint8_t link_key[32];    /* of the current plan: its stage links prove it (Assignment.link_key) */
    char model_digest[GGUF_DIGEST_LEN]; /* gguf_digest of our file: a joining worker's must be equal */
    char rope_desc[96];                 /* model_rope_describe of hp: every worker's Ready must say the same */
    sched sched;             /* requests and micro-batches (scheduler.h) */
    uint64_t last_beat_ms;
    uint64_t last_tick_ms;   /* a late tick means the loop could not read: that time is not silence */
    coord_job *jobs;         /* running on the thread pool */
    coord_stats stats;
    coord_metrics_http *http;
    coord_api *api;          /* the HTTP API (api.c), NULL: none; also the client of its calls */
    /* access control: what cfg points at */
    auth_key secret, admin_token;
    auth_keyring api_keys;
} coord;

/* coord.c */
int coord_init(coord *c, const coord_opts *o, uv_loop_t *loop, char *err, size_t errlen);
void coord_free(coord *c);
/* Tells worker n to free everything and exit (an Assignment with leave set):
 * removed, or the cluster shuts down. Without it a worker that loses its
 * coordinator tries to rejoin. */
void coord_tell_leave(coord *c, coord_node *n);

/* The plan our nodes would get now (drained nodes left out); order[] receives
 * the nodes in plan order (index = plan_node index). 0, or -1 with a message. */
int coord_plan_dry(coord *c, plan_result *out, coord_node **order, int *n_order, char *err, size_t errlen);
/* Re-plan without losing work: stop feeding the pipeline, wait for the
 * micro-batches in flight, then plan over the eligible nodes and replay. */
void coord_replan_graceful(coord *c, const char *why);
/* The state of a node as one word (serving, loading, idle, draining, drained, removing, dead). */
const char *coord_node_state(const coord *c, const coord_node *n);
/* Fills a HealthReply; the node arrays are allocated into ns and np (the caller frees both). */
void coord_fill_health(coord *c, Baton__HealthReply *r, Baton__NodeStatus **ns, Baton__NodeStatus ***np);

/* Ends a client's call with a status: client is a net_conn, or the HTTP API
 * (c->api), whose calls are told apart by call_id. 0, or -1 if it cannot be sent. */
int coord_send_status(coord *c, void *client, uint32_t call_id, int code, const char *msg); /* 0 or -1 */

/* Starts j on the thread pool (j->run, then j->done on the loop). */
void coord_job_start(coord *c, coord_job *j);
/* The client of these jobs is gone (all) or cancelled call_id: their done only frees. */
void coord_jobs_forget(coord *c, const void *client, uint32_t call_id, bool all);

/* admin.c */
/* Serves an admin frame (role ADMIN). */
void admin_handle_frame(coord *c, net_conn *conn, const frame_header *h, const uint8_t *msg);

/* metrics.c */
/* The Prometheus text of the coordinator's counters and gauges (malloc'd). */
char *metrics_render(coord *c);
/* Serves GET /metrics on host_port on the coordinator's loop. 0, or -1 with a message. */
int metrics_http_start(coord *c, const char *host_port, char *err, size_t errlen);
/* (libh2o builds) Accept one connection on an HTTP listener (/metrics or the API) and hand it to
 * h2o with accept_ctx (an h2o_accept_ctx_t *); TCP_NODELAY, so small streamed events go at once. */
void coord_http_accept(uv_stream_t *listener, void *accept_ctx);
void metrics_http_stop(coord *c);
/* NULL when built with the HTTP server; otherwise why --metrics-listen cannot work. */
const char *metrics_http_missing(void);
/* Once per tick: records the generated-token counter for tokens/s. */
void metrics_sample(coord *c, uint64_t now_ms);
double metrics_tokens_per_s(const coord *c);

/* api.c */
/* Serves the OpenAI-compatible API and the chat page on host_port on the
 * coordinator's loop. 0, or -1 with a message. */
int api_http_start(coord *c, const char *host_port, char *err, size_t errlen);
void api_http_stop(coord *c);
/* A chunk, or the status that ends it, of the API's call call_id (ignored when
 * that call is gone). */
void api_on_chunk(coord *c, uint32_t call_id, const Baton__GenerateChunk *ch);
void api_on_status(coord *c, uint32_t call_id, int code, const char *msg);

/* api_text.c */
typedef struct api_buf {
    char *p;        /* NUL-terminated when not NULL */
    size_t len, cap;
} api_buf;
/* Appends s[0..n). 0, or -1 (out of memory). */
int api_buf_add(api_buf *b, const char *s, size_t n);
void api_buf_free(api_buf *b);

/* Splits a streamed chat answer into reasoning and content: the text before
 * the first </think> is reasoning, the text after it (less the newlines right
 * after the tag) is content. A tail that may be the start of the tag is held
 * back until the next piece says whether it is. */
enum { API_THINK_REASONING, API_THINK_AFTER_TAG, API_THINK_CONTENT };
typedef struct api_think {
    int state;
    char held[8];
    size_t n_held;
} api_think;
/* in_reasoning: the prompt opened the reasoning (the chat template ends in <think>). */
void api_think_init(api_think *t, bool in_reasoning);
/* Appends the parts of s[0..n) to reasoning and content. 0, or -1 (out of memory). */
int api_think_feed(api_think *t, const char *s, size_t n, api_buf *reasoning, api_buf *content);
/* The answer ended: what was held back is reasoning. 0 or -1. */
int api_think_flush(api_think *t, api_buf *reasoning);

/* generate.c */
/* Validates and queues a Generate call (g is taken and freed); on error the call
 * ends with a status. A text or chat prompt is tokenised on the thread pool first. */
void coord_generate(coord *c, void *client, uint32_t call_id, Baton__GenerateRequest *g);
/* The client cancelled call_id (or, with call_id 0 and all=true, went away):
 * its tokenising jobs and its requests end. */
void coord_cancel(coord *c, void *client, uint32_t call_id, bool all);

/* Heartbeat bookkeeping (on_tick, check_silence), apart so that a unit test
 * (tests/unit/test_silence.c) can check it. coord_silence_ms: ms since a node
 * was last heard from; 0 when last_seen_ms is ahead of now (a stall extension
 * may put it there), never the unsigned wrap (~2^64 ms: declared dead).
 * coord_seen_after_stall: last_seen_ms moved forward by an event-loop stall of
 * stall_ms (that time was not the node's silence), never past now. */
uint64_t coord_silence_ms(uint64_t now_ms, uint64_t last_seen_ms);
uint64_t coord_seen_after_stall(uint64_t last_seen_ms, uint64_t stall_ms, uint64_t now_ms);

#endif
