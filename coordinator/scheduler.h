/* scheduler.h - the request records and the continuous-batching scheduler.
 *
 * (Not sched.h: that name is the C library's, and this folder is on the include path.)
 *
 * The scheduler knows requests, KV slots and micro-batches; it does not know
 * sockets, plans or nodes. It reaches the rest of the coordinator only through
 * a sched_env (callbacks) and plain values (sched_opts, sched_set_plan,
 * sched_set_feeding), so a test can drive it with fake callbacks:
 *
 *     sched s;
 *     sched_init(&s, &opts, &env);            // env: send_first, drop_slot, send_status, send_chunk, now_us
 *     sched_set_plan(&s, n_stages, seconds);  // after every plan
 *     sched_set_feeding(&s, true);            // the plan is ready and not switching
 *     sched_request *r = sched_admit(&s, &params, ids, n, ...);  // queued; sched_pump sends batches
 *     sched_on_result(&s, result);            // a StageResult from the last stage
 *     sched_free(&s);
 *
 * Data path: a request gets a KV slot, its prompt is cut into chunks and, step
 * after step, chunks and decode tokens of many requests are packed into
 * micro-batches (StageFrames) sent to the first stage; up to max_inflight
 * (default stages + 1 while prompt chunks wait, stages with decode tokens only)
 * are in flight, so every stage works at once. Decode
 * tokens go first (latency) and are spread evenly over one micro-batch per
 * stage. A request appears at most once per micro-batch. The last stage sends
 * back one sampled token per request whose last known token was in the batch;
 * the scheduler appends it, streams it to the client and decides whether the
 * request goes on. The record (prompt, sampling, tokens so far) is enough to
 * replay a request on a new plan: sched_requeue_all.
 */
#ifndef BATON_COORD_SCHEDULER_H
#define BATON_COORD_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "baton.pb-c.h"
#include "net.h"
#include "sampler.h"
#include "status.h"
#include "tokenizer.h"

typedef enum sched_req_state {
    REQ_QUEUED = 0,   /* waiting for a slot */
    REQ_ACTIVE = 1,   /* prefilling or decoding */
    REQ_DONE = 2,     /* status sent; waits for its frames to drain before the slot is freed */
} sched_req_state;

typedef struct sched_request {
    uint32_t id;
    void *client;           /* the caller (a net_conn, or the HTTP API: api.c); NULL once it is gone;
                               only compared and passed to the env's callbacks */
    uint32_t call_id;
    sched_req_state state;
    /* the record: enough to replay the request on a new plan */
    int32_t *prompt;
    int32_t n_prompt;
    int32_t *gen;           /* generated tokens */
    float *logprob;
    int32_t n_gen, cap_gen;
    Baton__SamplingParams sampling;
    uint32_t max_tokens;
    bool ignore_eos;
    float *prompt_lp;       /* with prompt_logprobs: [n_prompt], [i] the log-probability of prompt[i]
                               (i >= 1), filled as the prompt's rows come back; else NULL */
    bool prompt_lp_sent;    /* they went out with the first chunk (a replay does not score again) */
    /* progress */
    int32_t slot;           /* -1 while queued */
    int32_t fed;            /* tokens sent into the pipeline (prompt, then generated) */
    int32_t inflight;       /* micro-batches holding tokens of this request */
    bool awaiting;          /* a sampled token is on its way */
    uint64_t t_recv_ms, t_first_ms, t_last_ms, deadline_ms;
    tok_stream *ts;
    stop_matcher *stops;
    struct sched_request *next;
} sched_request;

typedef struct sched_batch {
    uint64_t step_id;
    uint64_t sent_us;       /* when it left for the first stage */
    uint64_t deadline_ms;   /* not back by then: the pipeline is broken (sched_overdue) */
    sched_request **reqs;   /* requests with tokens in this batch */
    int n_reqs;
    int n_tokens;
    struct sched_batch *next;
} sched_batch;

typedef struct sched_stats {
    uint64_t req_by_code[STATUS_COUNT];   /* ended requests by status code */
    uint64_t tokens_prompt, tokens_generated;
    uint64_t steps, step_us_sum; /* micro-batches back, their round-trip time */
} sched_stats;

/* What the scheduler needs from the coordinator. Every callback gets `user`. */
typedef struct sched_env {
    void *user;
    /* Sends a micro-batch to the first stage. 0, or -1 (no pipeline: it will time out). */
    int (*send_first)(void *user, const Baton__StageFrame *f);
    /* Frees a slot on every worker (a DropSequence down the pipeline). */
    void (*drop_slot)(void *user, int32_t slot);
    /* Ends a client's call with a status. */
    void (*send_status)(void *user, void *client, uint32_t call_id, int code, const char *msg);
    /* Streams a chunk of a Generate call. */
    void (*send_chunk)(void *user, void *client, uint32_t call_id, const Baton__GenerateChunk *ch);
    /* Microseconds on a monotonic clock. */
    uint64_t (*now_us)(void *user);
} sched_env;

typedef struct sched_opts {
    int n_slots;          /* KV slots per worker */
    int n_ctx;            /* positions per slot */
    int max_batch;        /* tokens per micro-batch */
    int chunk;            /* prompt tokens per chunk */
    int max_inflight;     /* micro-batches in flight; 0: stages + 1 while prompts wait, else stages */
    int step_timeout_ms;  /* floor of a micro-batch's deadline */
    uint32_t n_vocab;     /* token ids must be below it */
    uint32_t width;       /* hidden size (StageFrame.width) */
    int32_t eog[8];       /* end-of-generation ids */
    int n_eog;
    const tokenizer *tok; /* NULL: no text in the chunks, no stop strings */
} sched_opts;

typedef struct sched {
    sched_opts o;
    sched_env env;
    sched_request *reqs;     /* all live requests, in arrival order */
    uint32_t next_req_id;
    sched_request **slot_req;/* [n_slots] */
    sched_batch *inflight;   /* oldest first */
    int n_inflight;
    uint64_t next_step;
    int n_stages;            /* of the current plan (sched_set_plan) */
    double pipeline_s;       /* the plan's predicted seconds per token through every stage */
    bool feeding;            /* micro-batches may be sent (sched_set_feeding) */
    sched_stats stats;
} sched;

/* The sampling and length of a new request (what a GenerateRequest says). */
typedef struct sched_params {
    const Baton__SamplingParams *sampling; /* NULL: defaults */
    uint32_t max_tokens;                   /* 0: 16 */
    bool ignore_eos;
    uint64_t deadline_ms;                  /* from now; 0: none */
    char *const *stop;                     /* stop strings (need a tokenizer) */
    int n_stop;
    bool prompt_logprobs;                  /* score the prompt too (GenerateChunk.prompt_logprobs) */
} sched_params;

/* 0, or -1 (out of memory). */
int sched_init(sched *s, const sched_opts *o, const sched_env *env);
/* Frees every request and micro-batch (nothing is sent). */
void sched_free(sched *s);

/* The plan's stage count and its predicted seconds per token through all stages
 * (the sum of its stage seconds): they size max_inflight, the decode spread and
 * the step deadlines. */
void sched_set_plan(sched *s, int n_stages, double pipeline_s);
/* Whether micro-batches may be sent now (a plan serves and no switch waits). */
void sched_set_feeding(sched *s, bool feeding);

/* Queues a request whose prompt is ids[0..n) (taken, also on error). Returns it,
 * or NULL after ending the call with a status (empty prompt, an id outside the
 * vocabulary, prompt + max_tokens beyond the context, out of memory). Does not
 * pump: the caller decides when micro-batches go. */
sched_request *sched_admit(sched *s, void *client, uint32_t call_id, const sched_params *p, int32_t *ids,
                           int64_t n);
/* Ends a request with a status (sent if the client is still there); it is freed
 * once its micro-batches are back. */
void sched_finish(sched *s, sched_request *r, int code, const char *msg);
/* The client cancelled call_id (or, with all, went away: nothing is sent to it). */
void sched_cancel(sched *s, const void *client, uint32_t call_id, bool all);
/* A StageResult: ends the batch it answers, appends and streams its tokens. */
void sched_on_result(sched *s, const Baton__StageResult *r);
/* The pipeline broke: forget every micro-batch in flight and queue every live
 * request again from its record (prompt + tokens generated so far), so that the
 * next plan replays it and the client sees a pause, not an error. */
void sched_requeue_all(sched *s);
/* Ends every request with `code` (no plan can serve them). */
void sched_fail_all(sched *s, int code, const char *msg);
/* Ends the requests past their deadline, then pumps. */
void sched_tick(sched *s);
/* Gives free slots to queued requests and sends micro-batches while there is room. */
void sched_pump(sched *s);

/* The oldest micro-batch in flight past its deadline at now_ms, or NULL. */
const sched_batch *sched_overdue(const sched *s, uint64_t now_ms);
/* The loop stalled for ms: the micro-batches in flight get that much longer. */
void sched_extend_deadlines(sched *s, uint64_t ms);

int sched_count(const sched *s, sched_req_state st);
static inline int sched_inflight(const sched *s) { return s->n_inflight; }
static inline const sched_stats *sched_stats_of(const sched *s) { return &s->stats; }
/* True while a request of client conn is queued or running (its idle timeout waits). */
bool sched_client_busy(const sched *s, const void *conn);

#endif
