/* baton_client.h - talk to a Baton coordinator. The one header a client needs.
 *
 *     char err[256];
 *     baton_client *c = baton_connect("127.0.0.1:7000", NULL, err, sizeof err);
 *     if (!c) { fprintf(stderr, "%s\n", err); ... }
 *     int32_t prompt[] = {1, 2, 3};
 *     baton_gen_params p = baton_gen_defaults();
 *     p.tokens = prompt; p.n_tokens = 3; p.max_tokens = 32;
 *     baton_result r;
 *     int st = baton_generate(c, &p, on_chunk, ctx, &r);   // on_chunk may be NULL
 *     if (st != BATON_STATUS_OK) fprintf(stderr, "%s: %s\n", baton_status_name(st), r.message);
 *     ... r.tokens, r.n_tokens, r.text ...
 *     baton_result_free(&r);
 *     baton_close(c);
 *
 * Calls are blocking and run one at a time on a client. baton_generate streams:
 * the callback sees every chunk as it arrives and may return non-zero to cancel
 * the call (the coordinator then frees the sequence everywhere; the call ends
 * with BATON_STATUS_CANCELLED). Every call returns a status code with gRPC's
 * numbers; transport failures are BATON_STATUS_UNAVAILABLE.
 */
#ifndef BATON_CLIENT_H
#define BATON_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum baton_status {
    BATON_STATUS_OK = 0,
    BATON_STATUS_CANCELLED = 1,
    BATON_STATUS_UNKNOWN = 2,
    BATON_STATUS_INVALID_ARGUMENT = 3,
    BATON_STATUS_DEADLINE_EXCEEDED = 4,
    BATON_STATUS_NOT_FOUND = 5,
    BATON_STATUS_ALREADY_EXISTS = 6,
    BATON_STATUS_PERMISSION_DENIED = 7,
    BATON_STATUS_RESOURCE_EXHAUSTED = 8,
    BATON_STATUS_FAILED_PRECONDITION = 9,
    BATON_STATUS_ABORTED = 10,
    BATON_STATUS_OUT_OF_RANGE = 11,
    BATON_STATUS_UNIMPLEMENTED = 12,
    BATON_STATUS_INTERNAL = 13,
    BATON_STATUS_UNAVAILABLE = 14,
    BATON_STATUS_DATA_LOSS = 15,
    BATON_STATUS_UNAUTHENTICATED = 16,
};

/* "OK", "CANCELLED", ... */
const char *baton_status_name(int status);

typedef struct baton_client baton_client;

/* Connect and exchange hellos. cluster_id NULL means "baton". NULL with a message. */
baton_client *baton_connect(const char *host_port, const char *cluster_id, char *err, size_t errlen);
/* The same with role ADMIN: the connection may also make the baton_admin_* calls. */
baton_client *baton_connect_admin(const char *host_port, const char *cluster_id, char *err, size_t errlen);

typedef struct baton_connect_opts {
    const char *cluster_id;  /* NULL: "baton" */
    const char *api_key;     /* proved (never sent) when the coordinator requires keys; NULL: none */
    bool admin;              /* connect as an admin (role ADMIN) instead of a client */
    const char *admin_token; /* an admin's token, proved like an API key; NULL: none */
} baton_connect_opts;

/* baton_connect with options. NULL with a message and, in *status (may be NULL),
 * why: UNAUTHENTICATED or PERMISSION_DENIED when the coordinator refused our
 * credentials or cluster id, INVALID_ARGUMENT for a bad key, UNAVAILABLE when it
 * cannot be reached. */
baton_client *baton_connect_with(const char *host_port, const baton_connect_opts *o, int *status, char *err,
                                 size_t errlen);
/* The same over a connected stream socket fd (taken: closed on failure and by
 * baton_close); peer names it in messages. baton_connect_with resolves and
 * connects, then calls this; tests/fuzz hands it one end of a socketpair. */
baton_client *baton_connect_fd(int fd, const char *peer, const baton_connect_opts *o, int *status, char *err,
                               size_t errlen);
void baton_close(baton_client *c); /* accepts NULL */

typedef struct baton_chat_msg {
    const char *role, *content;
} baton_chat_msg;

typedef struct baton_gen_params {
    /* the prompt: one of */
    const int32_t *tokens;
    size_t n_tokens;
    const char *text;
    const baton_chat_msg *chat;
    size_t n_chat;
    /* sampling: temperature <= 0 is greedy */
    float temperature, top_p, min_p;
    int32_t top_k;
    float repetition_penalty, presence_penalty, frequency_penalty;
    int32_t penalty_last_n;
    uint64_t seed;
    uint32_t max_tokens;        /* 0: the server's default (16) */
    const char *const *stop;
    size_t n_stop;
    uint64_t deadline_ms;       /* 0: none */
    bool ignore_eos;
    bool prompt_logprobs;       /* also score the prompt: baton_result.prompt_logprobs */
} baton_gen_params;

baton_gen_params baton_gen_defaults(void);

typedef struct baton_chunk {
    const int32_t *tokens;
    size_t n_tokens;
    const float *logprobs;
    const char *text;           /* "" without a tokenizer */
    size_t text_len;
} baton_chunk;

/* Return non-zero to cancel the call. */
typedef int (*baton_chunk_cb)(void *ctx, const baton_chunk *chunk);

typedef struct baton_result {
    int status;
    char message[256];
    int32_t *tokens;            /* all generated tokens (malloc'd) */
    size_t n_tokens;
    char *text;                 /* all text (malloc'd, NUL-terminated) */
    size_t text_len;
    uint32_t n_prompt;
    double prefill_s, decode_s; /* server-side: receipt to first token, first to last */
    char finish_reason[16];
    float *prompt_logprobs;     /* with prompt_logprobs: [n_prompt - 1], [i] the log-probability of
                                   prompt token i + 1 given tokens 0..i (malloc'd; else NULL) */
    size_t n_prompt_logprobs;
} baton_result;

int baton_generate(baton_client *c, const baton_gen_params *p, baton_chunk_cb cb, void *ctx, baton_result *out);
void baton_result_free(baton_result *r);

/* Tokenize text (ids malloc'd into *ids) or, with text NULL, decode ids into a
 * malloc'd *text. Status code; msg gets the reason on error. */
int baton_tokenize(baton_client *c, const char *text, bool parse_special, int32_t **ids, size_t *n_ids, char *msg,
                   size_t msglen);
int baton_detokenize(baton_client *c, const int32_t *ids, size_t n_ids, char **text, char *msg, size_t msglen);

typedef struct baton_node_info {
    uint32_t id;
    char address[64];
    int32_t layer_begin, layer_end;
    bool embed, head, ready;
    uint32_t slots_used;
    uint64_t kv_positions, peak_rss, weight_bytes, kv_bytes;
    uint64_t hop_bytes, hop_frames, busy_us; /* stage frames sent to its successor; compute time */
    char state[16];             /* serving, loading, idle, draining, drained, removing, removed, dead */
    uint64_t memory;            /* bytes it offered */
    char isa[32];
    char device[96]; /* "cpu" or "vulkan:N (NAME)" */
    uint32_t cores;
    double seconds_per_layer;   /* measured when it joined */
    uint64_t heartbeat_age_ms;
    int32_t stage;              /* -1: no layers */
    double stage_seconds;       /* predicted time of its stage per step */
    uint64_t steps;             /* stage frames computed */
    uint64_t queue_peak;                     /* most bytes ever queued for its successor */
} baton_node_info;

typedef struct baton_health_info {
    bool serving;
    uint32_t n_workers, active_requests, queued_requests;
    baton_node_info *nodes;     /* malloc'd, n_nodes of them */
    size_t n_nodes;
    char plan_error[256];
    uint32_t plan_id, inflight_batches;
    double predicted_step_s, tokens_per_s, uptime_s, step_seconds_avg;
    uint64_t tokens_generated, tokens_prompt, requests_total, requests_failed, replans;
} baton_health_info;

int baton_health(baton_client *c, baton_health_info *out, char *msg, size_t msglen);
void baton_health_free(baton_health_info *h);

/* --- admin calls (a connection from baton_connect_admin) ---------------- */

/* Like baton_health, with every node (also the dead and removed ones). */
int baton_admin_state(baton_client *c, baton_health_info *out, char *msg, size_t msglen);

enum baton_admin_op {
    BATON_ADMIN_DRAIN = 1,     /* move its layers to the others at a step boundary; it then holds none */
    BATON_ADMIN_UNDRAIN = 2,   /* eligible again (the next re-plan gives it layers) */
    BATON_ADMIN_REMOVE = 3,    /* drain, then disconnect it */
    BATON_ADMIN_REBALANCE = 4, /* re-plan over every eligible worker */
    BATON_ADMIN_SHUTDOWN = 5,  /* stop the coordinator and, through it, every worker (node_id unused) */
};

/* Drain, undrain or remove node_id, or rebalance or shut down (node_id unused). Status
 * code; msg gets the coordinator's one-line answer, or the error. */
int baton_admin_node_op(baton_client *c, int op, uint32_t node_id, char *msg, size_t msglen);

/* The coordinator's metrics in Prometheus text format (*text malloc'd). */
int baton_metrics(baton_client *c, char **text, char *msg, size_t msglen);

typedef struct baton_model_info {
    uint32_t n_layer, n_embd, n_vocab, n_ctx;
    bool has_tokenizer;
} baton_model_info;

int baton_model(baton_client *c, baton_model_info *out, char *msg, size_t msglen);

#endif
