/* api.c - the OpenAI-compatible HTTP API and the chat page. See coord.h.
 *
 *   POST /v1/chat/completions, POST /v1/completions   (stream: server-sent events, then [DONE])
 *   GET  /v1/models, /v1/models/ID, /v1/baton/plan, /health, /metrics, / (the chat page)
 *
 * The server is libh2o (the libuv build) on the coordinator's loop, like
 * metrics.c. A request is checked and turned into a GenerateRequest, its prompt
 * is tokenised on the thread pool (coord_job), then coord_generate runs it with
 * token ids and c->api as the client: the scheduler's chunks and status come
 * back through api_on_chunk and api_on_status with the call's id. Their text is
 * already whole UTF-8 characters with stop strings cut (tok_stream and
 * stop_matcher in the scheduler); here it is only split into reasoning and
 * content (api_think) and framed as JSON.
 *
 * Lifetimes: an api_call (malloc'd) is linked from c->api until it is freed; its
 * h2o request has an api_link in the request's pool whose dispose callback
 * (the request ends: answered, or the client went away) unlinks the two. A call
 * whose request goes first is cancelled: coord_cancel ends it in the scheduler,
 * which frees its slot on every worker. Stream bytes are handed to h2o one
 * piece at a time (h2o_send, then wait for proceed); the bytes are copied into
 * the request's pool, which outlives the write.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>
#if BATON_METRICS_HTTP
#include <h2o.h>
#endif

#include "api_parse.h"
#include "auth.h"
#include "clock.h"
#include "coord.h"
#include "log.h"

#if BATON_METRICS_HTTP

#define BODY_SLACK (1u << 20) /* JSON around the prompt: a body may be this much over --max-prompt-bytes */
#define WATCH_MS 100          /* how often calls not answering yet look for their client */

extern const char api_chat_page[];  /* chat.html, embedded by the build (chat_page.c) */
extern const size_t api_chat_page_len;

typedef struct api_call api_call;

/* In the request's pool: the generator h2o calls, and the way back to the call. */
typedef struct api_link {
    h2o_generator_t gen;
    api_call *call;   /* NULL once the call is freed */
} api_link;

struct api_call {
    coord *c;
    uint32_t id;              /* the call id the scheduler knows it by */
    api_call *next;
    h2o_req_t *req;           /* NULL once the request is gone */
    api_link *link;
    api_kind kind;
    bool stream, include_usage, split_think;
    bool finished;            /* its status came: no chunk or status is taken any more */
    bool started;             /* the stream's headers went */
    bool sending;             /* a piece is with h2o, waiting for proceed */
    bool ended;               /* the last bytes are in out */
    char rid[48];
    long long created;
    int32_t n_prompt, n_gen;
    const char *finish;       /* "stop" or "length" */
    api_think think;
    api_buf content, reasoning; /* non-streaming: the whole answer */
    api_buf out;              /* stream bytes not yet handed to h2o */
};

struct coord_api {
    coord *c;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    uv_timer_t watch;         /* looks for clients gone before their answer started (watch_gone) */
    api_call *calls;
    uint32_t next_id;
    char model_id[128];       /* the model file's name without .gguf */
    size_t max_body;
};

typedef struct api_handler {
    h2o_handler_t super;
    coord *c;
} api_handler;

/* --- answers ------------------------------------------------------------------ */

/* HTTP status -> OpenAI error type. */
static const struct {
    int status;
    const char *type;
} error_types[] = {
    {400, "invalid_request_error"}, {401, "authentication_error"}, {404, "not_found_error"},
    {405, "invalid_request_error"}, {413, "invalid_request_error"}, {429, "rate_limit_error"},
    {503, "service_unavailable_error"}, {504, "timeout_error"},
};

static const char *error_type(int status) {
    for (size_t i = 0; i < sizeof error_types / sizeof *error_types; i++)
        if (error_types[i].status == status) return error_types[i].type;
    return "server_error";
}

/* Baton status code -> HTTP status and OpenAI error code. */
static const struct {
    int code, status;
    const char *err;
} status_map[] = {
    {BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, 400, "invalid_value"},
    {BATON__STATUS_CODE__STATUS_OUT_OF_RANGE, 400, "context_length_exceeded"},
    {BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION, 400, "failed_precondition"},
    {BATON__STATUS_CODE__STATUS_NOT_FOUND, 404, "not_found"},
    {BATON__STATUS_CODE__STATUS_UNAUTHENTICATED, 401, "invalid_api_key"},
    {BATON__STATUS_CODE__STATUS_PERMISSION_DENIED, 401, "permission_denied"},
    {BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, 429, "cluster_full"},
    {BATON__STATUS_CODE__STATUS_UNAVAILABLE, 503, "no_plan"},
    {BATON__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, 504, "deadline_exceeded"},
    {BATON__STATUS_CODE__STATUS_CANCELLED, 499, "cancelled"},
};

static json_t *error_object(int status, const char *msg, const char *param, const char *code) {
    return json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", msg, "type", error_type(status), "param",
                     param, "code", code);
}

static void send_json(h2o_req_t *req, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    req->res.status = text ? status : 500;
    req->res.reason = status < 400 ? "OK" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (text) h2o_send_inline(req, text, strlen(text));
    else h2o_send_inline(req, H2O_STRLIT("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}"));
    free(text);
}

static void send_error(h2o_req_t *req, int status, const char *msg, const char *param, const char *code) {
    send_json(req, status, error_object(status, msg, param, code));
}

/* --- calls --------------------------------------------------------------------- */

static api_call *call_find(coord_api *a, uint32_t id) {
    for (api_call *k = a->calls; k; k = k->next)
        if (k->id == id) return k;
    return NULL;
}

static void call_free(api_call *k) {
    coord_api *a = k->c->api;
    for (api_call **pp = &a->calls; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    if (k->link) k->link->call = NULL;
    api_buf_free(&k->content);
    api_buf_free(&k->reasoning);
    api_buf_free(&k->out);
    free(k);
}

/* Frees the call and returns its request (NULL if gone), to be answered after:
 * whatever h2o does while answering no longer reaches the call. */
static h2o_req_t *call_release(api_call *k) {
    h2o_req_t *req = k->req;
    call_free(k);
    return req;
}

/* The request's pool is going: the request is answered, or its client went away. */
static void on_link_dispose(void *p) {
    api_link *l = p;
    api_call *k = l->call;
    if (!k) return;
    k->req = NULL;
    k->link = NULL;
    if (!k->finished) {
        coord *c = k->c;
        uint32_t id = k->id;
        k->finished = true;
        call_free(k);
        coord_cancel(c, c->api, id, false); /* its status (cancelled) finds no call */
        return;
    }
    call_free(k);
}

/* Hands what is in k->out to h2o if h2o is not busy with an earlier piece;
 * the last piece frees the call. */
static void stream_flush(api_call *k) {
    if (!k->req || k->sending || (!k->out.len && !k->ended)) return;
    h2o_iovec_t b = {NULL, 0};
    if (k->out.len) {
        b.base = h2o_mem_alloc_pool(&k->req->pool, k->out.len);
        memcpy(b.base, k->out.p, k->out.len);
        b.len = k->out.len;
        k->out.len = 0;
    }
    k->sending = true;
    if (k->ended) {
        h2o_req_t *req = call_release(k);
        h2o_send(req, &b, b.len ? 1 : 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_send(k->req, &b, b.len ? 1 : 0, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req) {
    (void)req;
    api_call *k = ((api_link *)g)->call;
    if (!k) return;
    k->sending = false;
    stream_flush(k);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req) {
    (void)g, (void)req; /* the pool's dispose (on_link_dispose) follows and cancels */
}

static void stream_event(api_call *k, json_t *j);
static json_t *chunk_object(const api_call *k, json_t *choice);

static void stream_start(api_call *k) {
    if (k->started || !k->req) return;
    k->started = true;
    h2o_req_t *req = k->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    k->link->gen.proceed = on_proceed;
    k->link->gen.stop = on_stop;
    h2o_start_response(req, &k->link->gen);
    if (k->kind == API_CHAT) /* OpenAI's first chunk names the role */
        stream_event(k, chunk_object(k, json_pack("{s:i, s:{s:s, s:s}, s:n}", "index", 0, "delta", "role", "assistant",
                                                  "content", "", "finish_reason")));
}

/* Appends one event "data: JSON\n\n" (j is taken). */
static void stream_event(api_call *k, json_t *j) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return;
    api_buf_add(&k->out, "data: ", 6);
    api_buf_add(&k->out, text, strlen(text));
    api_buf_add(&k->out, "\n\n", 2);
    free(text);
}

static json_t *usage_of(const api_call *k) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", (json_int_t)k->n_prompt, "completion_tokens",
                     (json_int_t)k->n_gen, "total_tokens", (json_int_t)(k->n_prompt + k->n_gen));
}

/* A stream chunk object with one choice (choice is taken), or with none and the usage. */
static json_t *chunk_object(const api_call *k, json_t *choice) {
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[]}", "id", k->rid, "object",
                          k->kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)k->created, "model", k->c->api->model_id, "choices");
    if (!j) {
        json_decref(choice);
        return NULL;
    }
    if (choice) json_array_append_new(json_object_get(j, "choices"), choice);
    else json_object_set_new(j, "usage", usage_of(k));
    return j;
}

/* Streams a piece of the answer (and, when finish is set, the end of the choice). */
static void stream_piece(api_call *k, const char *reasoning, size_t rlen, const char *content, size_t clen,
                         const char *finish) {
    if (!rlen && !clen && !finish) return;
    json_t *choice;
    if (k->kind == API_CHAT) {
        json_t *delta = json_object();
        if (rlen) json_object_set_new(delta, "reasoning_content", json_stringn(reasoning, rlen));
        if (clen || (!rlen && !finish)) json_object_set_new(delta, "content", json_stringn(content, clen));
        choice = json_pack("{s:i, s:o, s:s?}", "index", 0, "delta", delta, "finish_reason", finish);
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:s?}", "index", 0, "text", content ? content : "", clen, "logprobs",
                           "finish_reason", finish);
    }
    if (choice) stream_event(k, chunk_object(k, choice));
}

/* The answer of a non-streaming call. */
static json_t *whole_answer(const api_call *k) {
    json_t *choice;
    if (k->kind == API_CHAT) {
        json_t *msg = json_pack("{s:s, s:s%}", "role", "assistant", "content", k->content.p ? k->content.p : "",
                                k->content.len);
        if (k->split_think && msg)
            json_object_set_new(msg, "reasoning_content", json_stringn(k->reasoning.p ? k->reasoning.p : "",
                                                                        k->reasoning.len));
        choice = json_pack("{s:i, s:o, s:s, s:n}", "index", 0, "message", msg, "finish_reason", k->finish, "logprobs");
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", k->content.p ? k->content.p : "",
                           k->content.len, "logprobs", "finish_reason", k->finish);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", k->rid, "object",
                     k->kind == API_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)k->created,
                     "model", k->c->api->model_id, "choices", choice, "usage", usage_of(k));
}

/* Scheduler's finish reason -> OpenAI's. */
static const char *finish_of(const char *why) { return why && !strcmp(why, "length") ? "length" : "stop"; }

void api_on_chunk(coord *c, uint32_t call_id, const Baton__GenerateChunk *ch) {
    api_call *k = c->api ? call_find(c->api, call_id) : NULL;
    if (!k || k->finished) return;
    k->n_gen += (int32_t)ch->n_tokens;
    const char *text = ch->text ? ch->text : "";
    size_t len = strlen(text);
    api_buf r = {0}, t = {0};
    api_buf *rb = k->stream ? &r : &k->reasoning, *cb = k->stream ? &t : &k->content;
    if (k->split_think) {
        api_think_feed(&k->think, text, len, rb, cb);
        if (ch->done) api_think_flush(&k->think, rb);
    } else {
        api_buf_add(cb, text, len);
    }
    if (ch->done) {
        k->finish = finish_of(ch->finish_reason);
        if (ch->n_prompt) k->n_prompt = (int32_t)ch->n_prompt;
    }
    if (k->stream) {
        stream_start(k);
        stream_piece(k, r.p, r.len, t.p, t.len, NULL);
        stream_flush(k);
    }
    api_buf_free(&r);
    api_buf_free(&t);
}

/* Ends a call with an error: its status if nothing was sent yet, else an error event. */
static void call_fail(api_call *k, int status, const char *msg, const char *code) {
    if (!k->req) {
        call_free(k);
        return;
    }
    if (!k->started) {
        send_error(call_release(k), status, msg, NULL, code);
        return;
    }
    stream_event(k, error_object(status, msg, NULL, code));
    api_buf_add(&k->out, "data: [DONE]\n\n", 14);
    k->ended = true;
    stream_flush(k);
}

void api_on_status(coord *c, uint32_t call_id, int code, const char *msg) {
    api_call *k = c->api ? call_find(c->api, call_id) : NULL;
    if (!k || k->finished) return;
    k->finished = true;
    if (code != BATON__STATUS_CODE__STATUS_OK) {
        int status = 500;
        const char *err = "internal";
        for (size_t i = 0; i < sizeof status_map / sizeof *status_map; i++)
            if (status_map[i].code == code) status = status_map[i].status, err = status_map[i].err;
        call_fail(k, status, msg && *msg ? msg : "the request failed", err);
        return;
    }
    if (!k->finish) k->finish = "stop";
    if (!k->req) {
        call_free(k);
        return;
    }
    if (!k->stream) {
        json_t *answer = whole_answer(k);
        send_json(call_release(k), 200, answer);
        return;
    }
    stream_start(k);
    stream_piece(k, NULL, 0, NULL, 0, k->finish);
    if (k->include_usage) stream_event(k, chunk_object(k, NULL));
    api_buf_add(&k->out, "data: [DONE]\n\n", 14);
    k->ended = true;
    stream_flush(k);
}

/* True when the client of req has closed its connection. h2o reads nothing more
 * from an HTTP/1 connection while its request is being answered, so a client
 * that goes away before any byte of the answer is sent would not be noticed:
 * peek at the socket (0 bytes: the peer closed it). */
static bool client_gone(h2o_req_t *req) {
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    int fd = sock ? h2o_socket_get_fd(sock) : -1;
    if (fd < 0) return false;
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Every WATCH_MS: calls whose answer has not started and whose client is gone
 * are cancelled (their slots freed); the error sent makes h2o close the connection. */
static void watch_gone(uv_timer_t *t) {
    coord_api *a = t->data;
    for (api_call *k = a->calls, *nx; k; k = nx) {
        nx = k->next;
        if (k->finished || k->started || !k->req || !client_gone(k->req)) continue;
        coord *c = k->c;
        uint32_t id = k->id;
        k->finished = true;
        call_fail(k, 499, "the client closed the connection", "cancelled");
        coord_cancel(c, c->api, id, false);
        return; /* the list may have changed: the rest next time */
    }
}

/* --- parsing a request ----------------------------------------------------------- */

/* --- running a call ---------------------------------------------------------------- */

/* Tokenising a text or chat prompt on the thread pool. base.client stays NULL:
 * the call is looked up by id when the job is done (it may be gone by then). */
typedef struct api_job {
    coord_job base;
    uint32_t call_id;
    Baton__GenerateRequest *g; /* owned */
    int32_t *ids;
    int64_t n;
} api_job;

/* Hands g (taken) with its token ids to coord_generate; a call without
 * max_tokens may fill the context. The call may be freed when this returns. */
static void call_admit(coord *c, api_call *k, Baton__GenerateRequest *g) {
    k->n_prompt = (int32_t)g->n_tokens;
    if (!g->max_tokens) g->max_tokens = (int64_t)g->n_tokens < c->o.n_ctx ? (uint32_t)(c->o.n_ctx - (int)g->n_tokens) : 1;
    coord_generate(c, c->api, k->id, g);
}

static void job_run(coord_job *cj) {
    api_job *j = (api_job *)cj;
    const tokenizer *tok = cj->c->tok;
    const Baton__GenerateRequest *g = j->g;
    char err[200];
    if (g->n_chat) {
        chat_message *msgs = calloc(g->n_chat, sizeof *msgs);
        if (!msgs) return;
        for (size_t i = 0; i < g->n_chat; i++) msgs[i] = (chat_message){g->chat[i]->role, g->chat[i]->content};
        j->n = chat_encode_alloc(tok, msgs, (int)g->n_chat, true, TOK_SPECIAL_PLAIN, &j->ids, err, sizeof err);
        free(msgs);
    } else {
        j->n = tok_encode_alloc(tok, g->text, strlen(g->text), TOK_SPECIAL_PLAIN, &j->ids, err, sizeof err);
    }
}

static void job_done(coord_job *cj) {
    api_job *j = (api_job *)cj;
    coord *c = cj->c;
    api_call *k = c->api ? call_find(c->api, j->call_id) : NULL;
    if (k && !k->finished) {
        if (j->n < 0 || !j->ids) {
            k->finished = true;
            call_fail(k, 400, "the prompt cannot be encoded", "invalid_value");
        } else {
            free(j->g->tokens);
            j->g->tokens = j->ids, j->g->n_tokens = (size_t)j->n, j->ids = NULL;
            call_admit(c, k, j->g);
            j->g = NULL;
        }
    }
    free(j->ids);
    if (j->g) baton__generate_request__free_unpacked(j->g, NULL);
    free(j);
}

/* POST /v1/chat/completions and /v1/completions: body already read and checked for size. */
static void serve_generate(coord *c, h2o_req_t *req, api_kind kind) {
    coord_api *a = c->api;
    api_body_flags f;
    api_parse_err e;
    Baton__GenerateRequest *g = api_parse_body(req->entity.base, req->entity.len, kind, a->model_id, &f, &e);
    if (!g) {
        send_error(req, e.status, e.msg, e.param, e.code);
        return;
    }
    api_call *k = calloc(1, sizeof *k);
    if (!k) {
        baton__generate_request__free_unpacked(g, NULL);
        send_error(req, 500, "out of memory", NULL, NULL);
        return;
    }
    k->c = c;
    k->kind = kind;
    if (!++a->next_id) a->next_id = 1;
    k->id = a->next_id;
    k->stream = f.stream, k->include_usage = f.include_usage, k->split_think = f.split_think;
    /* no seed: one of its own (a counter mixed with the clock; sampling needs no secrecy) */
    if (!f.seed_set) g->sampling->seed = clock_us() * 0x9E3779B97F4A7C15ull + k->id;
    if (!g->n_tokens && !c->tok) {
        free(k);
        baton__generate_request__free_unpacked(g, NULL);
        send_error(req, 400, "the model file has no tokenizer: send the prompt as token ids", "prompt", "no_tokenizer");
        return;
    }
    k->created = (long long)time(NULL);
    snprintf(k->rid, sizeof k->rid, "%s-%llx%08x", kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)c->stats.start_ms, (unsigned)k->id);
    api_think_init(&k->think, true); /* the chat template ends the prompt with <think> */
    k->req = req;
    k->link = h2o_mem_alloc_shared(&req->pool, sizeof *k->link, on_link_dispose);
    memset(k->link, 0, sizeof *k->link);
    k->link->call = k;
    k->next = a->calls;
    a->calls = k;
    if (g->n_tokens) {
        call_admit(c, k, g);
        return;
    }
    api_job *j = calloc(1, sizeof *j);
    if (!j) {
        baton__generate_request__free_unpacked(g, NULL);
        k->finished = true;
        call_fail(k, 500, "out of memory", NULL);
        return;
    }
    j->call_id = k->id;
    j->g = g;
    j->n = -1;
    j->base.run = job_run;
    j->base.done = job_done;
    coord_job_start(c, &j->base);
}

/* --- the other endpoints ------------------------------------------------------------ */

static json_t *model_object(coord *c) {
    return json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:b}", "id", c->api->model_id, "object", "model", "created",
                     (json_int_t)(time(NULL) - (long long)((clock_ms() - c->stats.start_ms) / 1000)), "owned_by",
                     "baton", "context_length", c->o.n_ctx, "n_layer", (int)c->hp.n_layer, "tokenizer", c->tok != NULL);
}

static void serve_models(coord *c, h2o_req_t *req) {
    send_json(req, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model_object(c)));
}

static void serve_model(coord *c, h2o_req_t *req) {
    const char *id = req->path_normalized.base + strlen("/v1/models/");
    size_t len = req->path_normalized.len - strlen("/v1/models/");
    if (len != strlen(c->api->model_id) || memcmp(id, c->api->model_id, len) != 0) {
        char m[300];
        snprintf(m, sizeof m, "The model '%.*s' does not exist", (int)(len > 200 ? 200 : len), id);
        send_error(req, 404, m, "model", "model_not_found");
        return;
    }
    send_json(req, 200, model_object(c));
}

/* The cluster and its plan as JSON (the chat page shows it). */
static json_t *plan_object(coord *c) {
    Baton__HealthReply r = BATON__HEALTH_REPLY__INIT;
    Baton__NodeStatus *ns = NULL, **np = NULL;
    coord_fill_health(c, &r, &ns, &np);
    json_t *stages = json_array();
    for (size_t i = 0; i < r.n_nodes && i < (size_t)c->n_nodes; i++) {
        const Baton__NodeStatus *n = r.nodes[i];
        json_array_append_new(stages, json_pack("{s:i, s:i, s:s, s:s, s:[i,i], s:b, s:b, s:i, s:f}", "stage",
                                                (int)n->stage, "node", (int)n->node_id, "address", n->address,
                                                "state", n->state, "layers", (int)n->layer_begin, (int)n->layer_end,
                                                "embed", n->embed, "head", n->head, "slots_used", (int)n->slots_used,
                                                "stage_seconds", n->stage_seconds));
    }
    json_t *j = json_pack("{s:s, s:b, s:i, s:i, s:s, s:i, s:i, s:f, s:I, s:o, s:s}", "status",
                          r.serving ? "ok" : "no plan", "serving", r.serving, "plan_id", (int)r.plan_id, "workers",
                          (int)r.n_workers, "plan_error", r.plan_error ? r.plan_error : "", "active_requests",
                          (int)r.active_requests, "queued_requests", (int)r.queued_requests, "tokens_per_s",
                          r.tokens_per_s, "tokens_generated", (json_int_t)r.tokens_generated, "stages", stages,
                          "model", c->api->model_id);
    free(ns);
    free(np);
    return j;
}

static void serve_plan(coord *c, h2o_req_t *req) { send_json(req, 200, plan_object(c)); }

static void serve_health(coord *c, h2o_req_t *req) { send_json(req, c->serving ? 200 : 503, plan_object(c)); }

static void serve_metrics(coord *c, h2o_req_t *req) {
    char *text = metrics_render(c);
    if (!text) {
        send_error(req, 500, "out of memory", NULL, NULL);
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    h2o_send_inline(req, text, strlen(text));
    free(text);
}

static void serve_page(coord *c, h2o_req_t *req) {
    (void)c;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/html; charset=utf-8"));
    h2o_send_inline(req, api_chat_page, api_chat_page_len);
}

static void serve_chat(coord *c, h2o_req_t *req) { serve_generate(c, req, API_CHAT); }
static void serve_completion(coord *c, h2o_req_t *req) { serve_generate(c, req, API_COMPLETION); }

/* The routes: method, path (a prefix when it ends in '/'), whether an API key is needed. */
static const struct {
    const char *method, *path;
    bool key, body;
    void (*serve)(coord *c, h2o_req_t *req);
} routes[] = {
    {"GET", "/", false, false, serve_page},
    {"GET", "/index.html", false, false, serve_page},
    {"GET", "/health", false, false, serve_health},
    {"GET", "/metrics", false, false, serve_metrics},
    {"GET", "/v1/models", true, false, serve_models},
    {"GET", "/v1/models/", true, false, serve_model},
    {"GET", "/v1/baton/plan", true, false, serve_plan},
    {"POST", "/v1/chat/completions", true, true, serve_chat},
    {"POST", "/v1/completions", true, true, serve_completion},
};

static bool path_matches(h2o_iovec_t path, const char *route) {
    size_t n = strlen(route);
    if (n > 1 && route[n - 1] == '/') return path.len > n && !memcmp(path.base, route, n);
    return path.len == n && !memcmp(path.base, route, n);
}

/* Authorization: Bearer KEY against --api-keys. True when no keys are set. */
static bool key_ok(coord *c, h2o_req_t *req) {
    if (!c->cfg.client_keys) return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0) return false;
    const char *key = v.base + 7;
    size_t len = v.len - 7;
    while (len && *key == ' ') key++, len--;
    auth_key k;
    char err[200];
    if (len > AUTH_MAX_SECRET || auth_key_from(key, len, &k, err, sizeof err) != 0) return false;
    bool ok = false;
    for (size_t j = 0; j < c->cfg.client_keys->n; j++) ok |= auth_equal(&k, &c->cfg.client_keys->keys[j], sizeof k);
    return ok;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    coord *c = ((api_handler *)self)->c;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (!path_matches(req->path_normalized, routes[i].path)) continue;
        path_known = true;
        if (!h2o_memis(req->method.base, req->method.len, routes[i].method, strlen(routes[i].method))) continue;
        if (routes[i].key && !key_ok(c, req)) {
            send_error(req, 401,
                       "Incorrect or missing API key: send it as 'Authorization: Bearer KEY' (one of --api-keys)",
                       NULL, "invalid_api_key");
        } else if (routes[i].body && req->entity.len > c->api->max_body) {
            char m[200];
            snprintf(m, sizeof m, "the body is %zu bytes, more than this server takes (%zu: --max-prompt-bytes + 1 MiB)",
                     req->entity.len, c->api->max_body);
            send_error(req, 413, m, NULL, "request_too_large");
        } else {
            routes[i].serve(c, req);
        }
        return 0;
    }
    char m[300];
    snprintf(m, sizeof m, "%s %.*s: %s", path_known ? "method not allowed for" : "unknown path",
             (int)(req->path_normalized.len > 200 ? 200 : req->path_normalized.len), req->path_normalized.base,
             path_known ? "see the README's HTTP API section" : "no such endpoint");
    send_error(req, path_known ? 405 : 404, m, NULL, path_known ? "method_not_allowed" : "unknown_url");
    return 0;
}

/* --- the server -------------------------------------------------------------------- */

static void on_accept(uv_stream_t *listener, int status) {
    coord_api *a = listener->data;
    if (status == 0) coord_http_accept(listener, &a->accept_ctx);
}

/* The model's name for the API: the file name without its folder and .gguf. */
static void model_id_of(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
    snprintf(out, cap, "%.*s", (int)n, base);
}

int api_http_start(coord *c, const char *host_port, char *err, size_t errlen) {
    struct sockaddr_in sa;
    if (net_parse_addr(host_port, &sa, err, errlen) != 0) return -1;
    coord_api *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->c = c;
    model_id_of(c->o.model_path, a->model_id, sizeof a->model_id);
    a->max_body = (size_t)c->o.max_prompt_bytes + BODY_SLACK;
    h2o_config_init(&a->config);
    a->config.max_request_entity_size = 2 * a->max_body; /* beyond: h2o's own 413; up to it: ours, as JSON */
    h2o_hostconf_t *host = h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    api_handler *handler = (api_handler *)h2o_create_handler(path, sizeof *handler);
    handler->super.on_req = on_req;
    handler->c = c;
    h2o_context_init(&a->ctx, c->loop, &a->config);
    a->accept_ctx.ctx = &a->ctx;
    a->accept_ctx.hosts = a->config.hosts;
    uv_tcp_init(c->loop, &a->listener);
    a->listener.data = a;
    uv_timer_init(c->loop, &a->watch);
    a->watch.data = a;
    uv_timer_start(&a->watch, watch_gone, WATCH_MS, WATCH_MS);
    c->api = a;
    int rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, 128, on_accept);
    if (rc != 0) {
        snprintf(err, errlen, "--http-listen: cannot listen on %s: %s", host_port, uv_strerror(rc));
        return -1;
    }
    struct sockaddr_in bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&a->listener, (struct sockaddr *)&bound, &blen);
    const char *colon = strrchr(host_port, ':');
    log_msg("HTTP API on http://%.*s:%d/v1 (model '%s'), chat page at /", (int)(colon - host_port), host_port,
            (int)ntohs(bound.sin_port), a->model_id);
    return 0;
}

void api_http_stop(coord *c) {
    coord_api *a = c->api;
    if (!a) return;
    /* The loop has stopped: close the listener, let the loop finish h2o's handles, free its state. */
    uv_close((uv_handle_t *)&a->listener, NULL);
    uv_close((uv_handle_t *)&a->watch, NULL);
    uv_run(c->loop, UV_RUN_NOWAIT);
    h2o_context_dispose(&a->ctx);
    h2o_config_dispose(&a->config);
    uv_run(c->loop, UV_RUN_NOWAIT);
    while (a->calls) call_free(a->calls);
    c->api = NULL;
    free(a);
}

#else /* !BATON_METRICS_HTTP */

#define NO_HTTP "built without the HTTP server (-DBATON_METRICS_HTTP=OFF)"

int api_http_start(coord *c, const char *host_port, char *err, size_t errlen) {
    (void)c;
    snprintf(err, errlen, "--http-listen %s: %s", host_port, NO_HTTP);
    return -1;
}

void api_http_stop(coord *c) { (void)c; }

void api_on_chunk(coord *c, uint32_t call_id, const Baton__GenerateChunk *ch) { (void)c, (void)call_id, (void)ch; }

void api_on_status(coord *c, uint32_t call_id, int code, const char *msg) {
    (void)c, (void)call_id, (void)code, (void)msg;
}

#endif
