/* sched.c - request record and continuous-batching scheduler. See coord.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"

#define DEFAULT_MAX_TOKENS 16

static void req_free(coord_request *r) {
    if (!r) return;
    free(r->prompt);
    free(r->gen);
    free(r->logprob);
    tok_stream_free(r->ts);
    stop_matcher_free(r->stops);
    free(r);
}

/* Unlinks and frees a finished request whose frames have all come back, freeing
 * its slot on the coordinator and on every worker. */
static void req_release(coord *c, coord_request *r) {
    if (r->slot >= 0) {
        coord_drop_slot(c, r->slot);
        c->slot_req[r->slot] = NULL;
        r->slot = -1;
    }
    for (coord_request **pp = &c->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    req_free(r);
}

/* Ends a request with a status (sent if the client is still there). */
static void req_finish(coord *c, coord_request *r, int code, const char *msg) {
    if (r->state == REQ_DONE) return;
    r->state = REQ_DONE;
    if (code >= 0 && code < STATUS_COUNT) c->stats.req_by_code[code]++;
    if (r->client) net_send_status(r->client, r->call_id, code, msg);
    if (r->inflight == 0) req_release(c, r);
}

int sched_count(const coord *c, coord_req_state st) {
    int n = 0;
    for (const coord_request *r = c->reqs; r; r = r->next) n += r->state == st;
    return n;
}

/* Checks what can be checked before tokenising: the sampling parameters (every
 * field the last stage reads, so one request can never fail a micro-batch it
 * shares), max_tokens against the context, and the prompt's size. 0, or the
 * status code with a message naming the field. */
static int check_request(const coord *c, const Baton__GenerateRequest *g, char *msg, size_t cap) {
    const Baton__SamplingParams *sp = g->sampling;
    if (sp) {
        struct {
            const char *name;
            float v, lo, hi;
        } f[] = {
            {"temperature", sp->temperature, 0, INFINITY},
            {"top_p", sp->top_p, 0, 1},
            {"min_p", sp->min_p, 0, 1},
            {"repetition_penalty", sp->repetition_penalty, 0, INFINITY},
            {"presence_penalty", sp->presence_penalty, -INFINITY, INFINITY},
            {"frequency_penalty", sp->frequency_penalty, -INFINITY, INFINITY},
        };
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            if (!isfinite(f[i].v) || f[i].v < f[i].lo || f[i].v > f[i].hi) {
                snprintf(msg, cap, "sampling.%s: %g is not a finite number in [%g, %g]", f[i].name, (double)f[i].v,
                         (double)f[i].lo, (double)f[i].hi);
                return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
            }
        if (sp->top_k < 0) {
            snprintf(msg, cap, "sampling.top_k: %d is negative (0 turns it off)", (int)sp->top_k);
            return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
        }
        if (sp->penalty_last_n < 0) {
            snprintf(msg, cap, "sampling.penalty_last_n: %d is negative (0: the whole history)",
                     (int)sp->penalty_last_n);
            return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
        }
    }
    if (g->max_tokens > (uint32_t)c->o.n_ctx) {
        snprintf(msg, cap, "max_tokens: %u exceeds the context of %d", (unsigned)g->max_tokens, c->o.n_ctx);
        return BATON__STATUS_CODE__STATUS_OUT_OF_RANGE;
    }
    if (g->n_tokens > (size_t)c->o.n_ctx) {
        snprintf(msg, cap, "tokens: %zu prompt tokens exceed the context of %d", g->n_tokens, c->o.n_ctx);
        return BATON__STATUS_CODE__STATUS_OUT_OF_RANGE;
    }
    uint64_t bytes = g->text ? strlen(g->text) : 0;
    for (size_t i = 0; i < g->n_chat; i++)
        bytes += (g->chat[i]->content ? strlen(g->chat[i]->content) : 0) + (g->chat[i]->role ? strlen(g->chat[i]->role) : 0);
    if (bytes > c->o.max_prompt_bytes) {
        snprintf(msg, cap, "%s: the prompt is %llu bytes, more than this coordinator takes (--max-prompt-bytes %llu)",
                 g->n_chat ? "chat" : "text", (unsigned long long)bytes, (unsigned long long)c->o.max_prompt_bytes);
        return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
    }
    return 0;
}

/* Queues a request whose prompt is ids[0..n) (taken). Ends the call with a
 * status here if the prompt does not fit. */
static void admit(coord *c, net_conn *client, uint32_t call_id, const Baton__GenerateRequest *g, int32_t *ids,
                  int64_t n) {
    char msg[256];
    if (n <= 0 || !ids) {
        free(ids);
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "empty prompt");
        return;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= c->hp.n_vocab) {
            snprintf(msg, sizeof msg, "token id %d is outside the vocabulary [0, %u)", (int)ids[i],
                     (unsigned)c->hp.n_vocab);
            free(ids);
            net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, msg);
            return;
        }
    uint32_t max_tokens = g->max_tokens ? g->max_tokens : DEFAULT_MAX_TOKENS;
    if (n + (int64_t)max_tokens > c->o.n_ctx) {
        snprintf(msg, sizeof msg, "prompt (%lld tokens) + max tokens (%u) exceed the context of %d",
                 (long long)n, (unsigned)max_tokens, c->o.n_ctx);
        free(ids);
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_OUT_OF_RANGE, msg);
        return;
    }
    coord_request *r = calloc(1, sizeof *r);
    if (!r) {
        free(ids);
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    r->id = ++c->next_req_id;
    r->client = client;
    r->call_id = call_id;
    r->prompt = ids;
    r->n_prompt = (int32_t)n;
    r->cap_gen = (int32_t)max_tokens;
    r->gen = malloc((size_t)max_tokens * sizeof *r->gen);
    r->logprob = malloc((size_t)max_tokens * sizeof *r->logprob);
    baton__sampling_params__init(&r->sampling);
    if (g->sampling) {
        r->sampling = *g->sampling;
        r->sampling.base.unknown_fields = NULL;
        r->sampling.base.n_unknown_fields = 0;
    }
    r->max_tokens = max_tokens;
    r->ignore_eos = g->ignore_eos;
    r->slot = -1;
    r->t_recv_ms = net_now_ms();
    r->deadline_ms = g->deadline_ms ? r->t_recv_ms + g->deadline_ms : 0;
    if (c->tok) {
        r->ts = tok_stream_new(c->tok);
        if (g->n_stop) r->stops = stop_matcher_new((const char *const *)g->stop, (int)g->n_stop);
    }
    if (!r->gen || !r->logprob) {
        req_free(r);
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    coord_request **pp = &c->reqs;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
    c->stats.tokens_prompt += (uint64_t)n;
    if (!c->serving && !c->switching && c->plan_error[0]) {
        /* no plan fits the workers there are: say so rather than wait forever */
        char m[600];
        snprintf(m, sizeof m, "no plan: %s", c->plan_error);
        req_finish(c, r, BATON__STATUS_CODE__STATUS_UNAVAILABLE, m);
        return;
    }
    if (!c->serving)
        fprintf(stderr, "baton-coord: request %u queued until the plan is ready\n", (unsigned)r->id);
    sched_pump(c);
}


/* Tokenising a text or chat prompt, on the thread pool. */
typedef struct encode_job {
    coord_job base;
    Baton__GenerateRequest *g; /* owned */
    int32_t *ids;
    int64_t n;
} encode_job;

static void encode_run(coord_job *cj) {
    encode_job *j = (encode_job *)cj;
    const tokenizer *tok = cj->c->tok;
    const Baton__GenerateRequest *g = j->g;
    chat_message *msgs = NULL;
    if (g->n_chat) {
        msgs = calloc(g->n_chat, sizeof *msgs);
        if (!msgs) return;
        for (size_t i = 0; i < g->n_chat; i++) msgs[i] = (chat_message){g->chat[i]->role, g->chat[i]->content};
    }
    for (int64_t cap = 256;;) {
        free(j->ids);
        j->ids = malloc((size_t)cap * sizeof *j->ids);
        if (!j->ids) break;
        j->n = msgs ? chat_encode(tok, msgs, (int)g->n_chat, true, TOK_SPECIAL_PLAIN, j->ids, cap)
                    : tok_encode(tok, g->text, strlen(g->text), TOK_SPECIAL_PLAIN, j->ids, cap);
        if (j->n <= cap) break;
        cap = j->n;
    }
    free(msgs);
}

static void encode_done(coord_job *cj) {
    encode_job *j = (encode_job *)cj;
    if (cj->client && !cj->cancelled) {
        if (j->n < 0 || !j->ids)
            net_send_status(cj->client, cj->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                            "the prompt cannot be encoded");
        else
            admit(cj->c, cj->client, cj->call_id, j->g, j->ids, j->n), j->ids = NULL;
    }
    free(j->ids);
    baton__generate_request__free_unpacked(j->g, NULL);
    free(j);
}

void sched_generate(coord *c, net_conn *client, uint32_t call_id, Baton__GenerateRequest *g) {
    char msg[300];
    int code = check_request(c, g, msg, sizeof msg);
    if (code) {
        net_send_status(client, call_id, code, msg);
        baton__generate_request__free_unpacked(g, NULL);
        return;
    }
    if (g->n_tokens) {
        int32_t *ids = malloc(g->n_tokens * sizeof *ids);
        if (ids) memcpy(ids, g->tokens, g->n_tokens * sizeof *ids);
        admit(c, client, call_id, g, ids, (int64_t)g->n_tokens);
        baton__generate_request__free_unpacked(g, NULL);
        return;
    }
    if (!(g->text && g->text[0]) && !g->n_chat) {
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "empty prompt");
        baton__generate_request__free_unpacked(g, NULL);
        return;
    }
    if (!c->tok) {
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION,
                        "the model file has no tokenizer: send token ids");
        baton__generate_request__free_unpacked(g, NULL);
        return;
    }
    encode_job *j = calloc(1, sizeof *j);
    if (!j) {
        net_send_status(client, call_id, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
        baton__generate_request__free_unpacked(g, NULL);
        return;
    }
    j->g = g;
    j->n = -1;
    j->base.client = client;
    j->base.call_id = call_id;
    j->base.run = encode_run;
    j->base.done = encode_done;
    coord_job_start(c, &j->base);
}

void sched_cancel(coord *c, net_conn *client, uint32_t call_id, bool all) {
    coord_jobs_forget(c, client, call_id, all);
    for (coord_request *r = c->reqs, *nx; r; r = nx) {
        nx = r->next;
        if (r->client != client || (!all && r->call_id != call_id)) continue;
        if (all) r->client = NULL; /* gone: no status to send */
        req_finish(c, r, BATON__STATUS_CODE__STATUS_CANCELLED, "cancelled by the client");
    }
    sched_pump(c);
}

void sched_fail_all(coord *c, int code, const char *msg) {
    for (coord_batch *b = c->inflight, *nx; b; b = nx) {
        nx = b->next;
        for (int i = 0; i < b->n_reqs; i++) b->reqs[i]->inflight--;
        free(b->reqs);
        free(b);
    }
    c->inflight = NULL;
    c->n_inflight = 0;
    for (coord_request *r = c->reqs, *nx; r; r = nx) {
        nx = r->next;
        r->awaiting = false;
        if (r->state == REQ_DONE) {
            if (r->inflight == 0) req_release(c, r);
        } else {
            req_finish(c, r, code, msg);
        }
    }
}

void sched_requeue_all(coord *c) {
    for (coord_batch *b = c->inflight, *nx; b; b = nx) {
        nx = b->next;
        for (int i = 0; i < b->n_reqs; i++) b->reqs[i]->inflight--;
        free(b->reqs);
        free(b);
    }
    c->inflight = NULL;
    c->n_inflight = 0;
    for (int32_t s = 0; s < c->o.n_slots; s++) c->slot_req[s] = NULL;
    int n = 0;
    for (coord_request *r = c->reqs, *nx; r; r = nx) {
        nx = r->next;
        r->slot = -1; /* the workers start over with empty caches */
        r->awaiting = false;
        r->fed = 0;
        if (r->state == REQ_DONE) {
            req_release(c, r);
        } else {
            r->state = REQ_QUEUED;
            n++;
        }
    }
    if (n) fprintf(stderr, "baton-coord: %d request(s) will be replayed on the next plan\n", n);
}

void sched_tick(coord *c) {
    uint64_t now = net_now_ms();
    for (coord_request *r = c->reqs, *nx; r; r = nx) {
        nx = r->next;
        if (r->state != REQ_DONE && r->deadline_ms && now >= r->deadline_ms)
            req_finish(c, r, BATON__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    }
    sched_pump(c);
}

/* Streams one new token to the client; returns 1 if the request is now complete
 * (length, end-of-generation token or stop string). */
static int emit_token(coord *c, coord_request *r, int32_t token, float logprob) {
    r->gen[r->n_gen] = token;
    r->logprob[r->n_gen] = logprob;
    r->n_gen++;
    c->stats.tokens_generated++;
    if (c->stats.replan_wall_ms && !c->stats.recovered_wall_ms) c->stats.recovered_wall_ms = metrics_wall_ms();
    uint64_t now = net_now_ms();
    if (r->n_gen == 1) r->t_first_ms = now;
    r->t_last_ms = now;
    const char *reason = NULL;
    bool eog = false;
    if (!r->ignore_eos)
        for (int i = 0; i < c->n_eog; i++) eog |= token == c->eog[i];
    char *text = NULL;
    size_t text_len = 0;
    bool stopped = false;
    if (r->ts && !eog) {
        const char *piece;
        size_t plen;
        if (tok_stream_feed(r->ts, token, &piece, &plen) == 0) {
            if (r->stops) {
                const char *out;
                size_t olen;
                stopped = stop_matcher_feed(r->stops, piece, plen, &out, &olen) == 1;
                piece = out;
                plen = olen;
            }
            text = (char *)piece;
            text_len = plen;
        }
    }
    if (eog) reason = "eos";
    else if (stopped) reason = "stop";
    else if ((uint32_t)r->n_gen >= r->max_tokens) reason = "length";
    /* flush held-back text at the end */
    char *tail = NULL;
    if (reason && r->ts && !stopped) {
        const char *rest;
        size_t rlen;
        tok_stream_flush(r->ts, &rest, &rlen);
        const char *held = NULL;
        size_t hlen = 0;
        if (r->stops) {
            const char *out;
            size_t olen;
            if (rlen) stop_matcher_feed(r->stops, rest, rlen, &out, &olen);
            else olen = 0, out = "";
            stop_matcher_flush(r->stops, &held, &hlen);
            rest = out;
            rlen = olen;
        }
        tail = malloc(text_len + rlen + hlen + 1);
        if (tail) {
            memcpy(tail, text, text_len);
            memcpy(tail + text_len, rest, rlen);
            if (hlen) memcpy(tail + text_len + rlen, held, hlen);
            text_len += rlen + hlen;
            tail[text_len] = 0;
            text = tail;
        }
    }
    if (r->client) {
        Baton__GenerateChunk ch = BATON__GENERATE_CHUNK__INIT;
        ch.n_tokens = 1;
        ch.tokens = &token;
        ch.n_logprobs = 1;
        ch.logprobs = &logprob;
        char *tbuf = malloc(text_len + 1);
        if (tbuf) {
            if (text_len) memcpy(tbuf, text, text_len);
            tbuf[text_len] = 0;
            ch.text = tbuf;
        }
        if (reason) {
            ch.done = true;
            ch.n_prompt = (uint32_t)r->n_prompt;
            ch.prefill_s = (double)(r->t_first_ms - r->t_recv_ms) / 1000.0;
            ch.decode_s = (double)(r->t_last_ms - r->t_first_ms) / 1000.0;
            ch.finish_reason = (char *)reason;
        }
        net_send(r->client, BATON__FRAME_KIND__FRAME_GENERATE_CHUNK, r->call_id, &ch.base, NULL, 0);
        free(tbuf);
    }
    free(tail);
    return reason != NULL;
}

void sched_on_result(coord *c, const Baton__StageResult *res) {
    coord_batch *b = c->inflight, *prev = NULL;
    while (b && b->step_id != res->step_id) prev = b, b = b->next;
    if (!b) {
        fprintf(stderr, "baton-coord: result for unknown step %llu ignored\n", (unsigned long long)res->step_id);
        return;
    }
    if (prev) prev->next = b->next;
    else c->inflight = b->next;
    c->n_inflight--;
    c->stats.steps++;
    c->stats.step_us_sum += uv_hrtime() / 1000 - b->sent_us;
    /* The batch still counts in each request's inflight here, so finishing one
     * cannot free it under us; the release happens below. */
    if (res->code != BATON__STATUS_CODE__STATUS_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "pipeline error: %s", res->error ? res->error : "(no message)");
        fprintf(stderr, "baton-coord: step %llu failed: %s\n", (unsigned long long)res->step_id, msg);
        for (int i = 0; i < b->n_reqs; i++) {
            b->reqs[i]->awaiting = false;
            req_finish(c, b->reqs[i], (int)res->code, msg); /* the stage's status, e.g. DATA_LOSS */
        }
    }
    for (size_t i = 0; i < res->n_tokens; i++) {
        const Baton__SampledToken *t = res->tokens[i];
        if (t->slot < 0 || t->slot >= c->o.n_slots || !c->slot_req[t->slot]) continue;
        coord_request *r = c->slot_req[t->slot];
        r->awaiting = false;
        if (r->state != REQ_ACTIVE) continue;
        if (t->code != BATON__STATUS_CODE__STATUS_OK) { /* this slot only: the others in the batch go on */
            char msg[300];
            snprintf(msg, sizeof msg, "last stage: %s", t->error ? t->error : "(no message)");
            req_finish(c, r, (int)t->code, msg);
            continue;
        }
        if (emit_token(c, r, t->token, t->logprob)) req_finish(c, r, BATON__STATUS_CODE__STATUS_OK, "");
    }
    /* A request appears at most once per batch. */
    for (int i = 0; i < b->n_reqs; i++) {
        coord_request *r = b->reqs[i];
        r->inflight--;
        if (r->state == REQ_DONE && r->inflight == 0) req_release(c, r);
    }
    free(b->reqs);
    free(b);
    sched_pump(c);
}

/* Builds one micro-batch: decode tokens first (latency, at most max_decode of
 * them), then prompt chunks, up to max_batch tokens. Returns the number of
 * tokens, 0 if nothing is ready. */
static int build_batch(coord *c, int max_decode, Baton__StageFrame *f, int32_t *slots, int32_t *pos, int32_t *toks,
                       Baton__SampleSpec *specs, Baton__SampleSpec **spec_ptrs, int32_t *resets, coord_request **reqs,
                       int *n_reqs) {
    int n = 0, ns = 0, nr = 0;
    *n_reqs = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (coord_request *r = c->reqs; r && n < c->o.max_batch; r = r->next) {
            if (r->state != REQ_ACTIVE || r->awaiting) continue;
            /* Tokens known but not yet fed: 1 while decoding; more for a prompt, or
             * for the prompt and generated tokens of a request replayed on a new plan. */
            int32_t avail = r->n_prompt + r->n_gen - r->fed;
            if (avail <= 0) continue;
            bool catch_up = avail > 1;
            if ((pass == 0) == catch_up || (pass == 0 && n >= max_decode)) continue;
            int32_t take = avail;
            if (take > c->o.chunk) take = c->o.chunk;
            if (take > c->o.max_batch - n) take = c->o.max_batch - n;
            if (take <= 0) break;
            if (r->fed == 0) resets[nr++] = r->slot;
            for (int32_t k = 0; k < take; k++) {
                int32_t p = r->fed + k;
                slots[n + k] = r->slot;
                pos[n + k] = p;
                toks[n + k] = p < r->n_prompt ? r->prompt[p] : r->gen[p - r->n_prompt];
            }
            r->fed += take;
            if (r->fed == r->n_prompt + r->n_gen) {
                /* the last known token: its logits give the next one */
                baton__sample_spec__init(&specs[ns]);
                specs[ns].index = (uint32_t)(n + take - 1);
                specs[ns].sampling = &r->sampling;
                specs[ns].step = (uint64_t)r->n_gen;
                spec_ptrs[ns] = &specs[ns];
                ns++;
                r->awaiting = true;
            }
            n += take;
            r->inflight++;
            reqs[(*n_reqs)++] = r;
        }
    }
    f->token_count = (uint32_t)n;
    f->n_slots = f->n_positions = f->n_tokens = (size_t)n;
    f->slots = slots;
    f->positions = pos;
    f->tokens = toks;
    f->n_samples = (size_t)ns;
    f->samples = spec_ptrs;
    f->n_reset_slots = (size_t)nr;
    f->reset_slots = resets;
    f->width = c->hp.n_embd;
    return n;
}

/* How long a micro-batch of n tokens may take to come back: the --step-timeout
 * floor plus 4x the plan's prediction for every token in flight (it may queue
 * behind them at each stage). */
static uint64_t step_deadline_ms(const coord *c, int n) {
    double pipeline_s = 0;
    for (int s = 0; s < c->plan.n_stages; s++) pipeline_s += c->plan.stages[s].seconds;
    int tokens = n;
    for (const coord_batch *b = c->inflight; b; b = b->next) tokens += b->n_tokens;
    return (uint64_t)c->o.step_timeout_ms + (uint64_t)(4000.0 * pipeline_s * tokens);
}

void sched_pump(coord *c) {
    if (!c->serving || c->switching) return; /* switching: let the micro-batches in flight come back */
    /* hand free slots to queued requests, oldest first */
    for (coord_request *r = c->reqs; r; r = r->next) {
        if (r->state != REQ_QUEUED) continue;
        int32_t s = 0;
        while (s < c->o.n_slots && c->slot_req[s]) s++;
        if (s == c->o.n_slots) break;
        c->slot_req[s] = r;
        r->slot = s;
        r->state = REQ_ACTIVE;
    }
    int max_inflight = c->o.max_inflight > 0 ? c->o.max_inflight : c->plan.n_stages + 1;
    const int mb = c->o.max_batch;
    /* Spread the decoding streams evenly over one micro-batch per stage: every
     * stage then has work of the same size at once. One batch of all of them
     * would leave all but one stage idle; a big and a small one, the stages idle
     * while the small one passes. (Each stream stays in the batch it joined,
     * since its next token is known only when that batch comes back.) */
    int n_active = sched_count(c, REQ_ACTIVE), n_stages = c->plan.n_stages > 0 ? c->plan.n_stages : 1;
    int max_decode = (n_active + n_stages - 1) / n_stages;
    int32_t *slots = malloc((size_t)mb * sizeof(int32_t)), *pos = malloc((size_t)mb * sizeof(int32_t));
    int32_t *toks = malloc((size_t)mb * sizeof(int32_t)), *resets = malloc((size_t)mb * sizeof(int32_t));
    Baton__SampleSpec *specs = malloc((size_t)mb * sizeof *specs);
    Baton__SampleSpec **spec_ptrs = malloc((size_t)mb * sizeof *spec_ptrs);
    coord_request **reqs = malloc((size_t)mb * sizeof *reqs);
    while (slots && pos && toks && resets && specs && spec_ptrs && reqs && c->n_inflight < max_inflight) {
        Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
        int n_reqs = 0;
        if (build_batch(c, max_decode, &f, slots, pos, toks, specs, spec_ptrs, resets, reqs, &n_reqs) == 0) break;
        coord_batch *b = calloc(1, sizeof *b);
        if (b) b->reqs = malloc((size_t)n_reqs * sizeof *b->reqs);
        if (!b || !b->reqs) {
            free(b);
            break;
        }
        memcpy(b->reqs, reqs, (size_t)n_reqs * sizeof *reqs);
        b->n_reqs = n_reqs;
        b->n_tokens = (int)f.token_count;
        b->step_id = f.step_id = ++c->next_step;
        b->sent_us = uv_hrtime() / 1000;
        b->deadline_ms = net_now_ms() + step_deadline_ms(c, (int)f.token_count);
        coord_batch **pp = &c->inflight;
        while (*pp) pp = &(*pp)->next;
        *pp = b;
        c->n_inflight++;
        coord_send_first(c, BATON__FRAME_KIND__FRAME_STAGE, &f.base);
    }
    free(slots);
    free(pos);
    free(toks);
    free(resets);
    free(specs);
    free(spec_ptrs);
    free(reqs);
}

bool sched_client_busy(const coord *c, const net_conn *conn) {
    for (const coord_request *r = c->reqs; r; r = r->next)
        if (r->client == conn && r->state != REQ_DONE) return true;
    return false;
}
