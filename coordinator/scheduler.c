/* scheduler.c - request records and the continuous-batching scheduler. See scheduler.h. */
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DEFAULT_MAX_TOKENS 16

static uint64_t now_ms(const sched *s) { return s->env.now_us(s->env.user) / 1000; }

int sched_init(sched *s, const sched_opts *o, const sched_env *env) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->env = *env;
    s->n_stages = 1;
    s->slot_req = calloc((size_t)(o->n_slots > 0 ? o->n_slots : 1), sizeof *s->slot_req);
    return s->slot_req ? 0 : -1;
}

static void req_free(sched_request *r) {
    if (!r) return;
    free(r->prompt);
    free(r->gen);
    free(r->logprob);
    free(r->prompt_lp);
    tok_stream_free(r->ts);
    stop_matcher_free(r->stops);
    free(r);
}

static void batch_free(sched_batch *b) {
    if (!b) return;
    free(b->reqs);
    free(b);
}

void sched_free(sched *s) {
    while (s->inflight) {
        sched_batch *b = s->inflight;
        s->inflight = b->next;
        batch_free(b);
    }
    while (s->reqs) {
        sched_request *r = s->reqs;
        s->reqs = r->next;
        req_free(r);
    }
    free(s->slot_req);
    s->slot_req = NULL;
}

void sched_set_plan(sched *s, int n_stages, double pipeline_s) {
    s->n_stages = n_stages > 0 ? n_stages : 1;
    s->pipeline_s = pipeline_s;
}

void sched_set_feeding(sched *s, bool feeding) { s->feeding = feeding; }

/* Unlinks and frees a finished request whose frames have all come back, freeing
 * its slot on the coordinator and on every worker. */
static void req_release(sched *s, sched_request *r) {
    if (r->slot >= 0) {
        s->env.drop_slot(s->env.user, r->slot);
        s->slot_req[r->slot] = NULL;
        r->slot = -1;
    }
    for (sched_request **pp = &s->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    req_free(r);
}

void sched_finish(sched *s, sched_request *r, int code, const char *msg) {
    if (r->state == REQ_DONE) return;
    r->state = REQ_DONE;
    if (code >= 0 && code < STATUS_COUNT) s->stats.req_by_code[code]++;
    if (r->client) s->env.send_status(s->env.user, r->client, r->call_id, code, msg);
    if (r->inflight == 0) req_release(s, r);
}

int sched_count(const sched *s, sched_req_state st) {
    int n = 0;
    for (const sched_request *r = s->reqs; r; r = r->next) n += r->state == st;
    return n;
}

bool sched_client_busy(const sched *s, const void *conn) {
    for (const sched_request *r = s->reqs; r; r = r->next)
        if (r->client == conn && r->state != REQ_DONE) return true;
    return false;
}

/* --- admission -------------------------------------------------------------- */

/* 0 if ids[0..n) is a prompt this scheduler can serve with max_tokens more;
 * else the status code with a message. */
static int check_prompt(const sched *s, const int32_t *ids, int64_t n, uint32_t max_tokens, char *msg, size_t cap) {
    if (n <= 0 || !ids) {
        snprintf(msg, cap, "empty prompt");
        return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= s->o.n_vocab) {
            snprintf(msg, cap, "token id %d is outside the vocabulary [0, %u)", (int)ids[i], (unsigned)s->o.n_vocab);
            return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
        }
    if (n + (int64_t)max_tokens > s->o.n_ctx) {
        snprintf(msg, cap, "prompt (%lld tokens) + max tokens (%u) exceed the context of %d", (long long)n,
                 (unsigned)max_tokens, s->o.n_ctx);
        return BATON__STATUS_CODE__STATUS_OUT_OF_RANGE;
    }
    return 0;
}

/* A new record for prompt ids[0..n) (taken), or NULL (out of memory; ids freed). */
static sched_request *req_new(sched *s, const sched_params *p, uint32_t max_tokens, int32_t *ids, int64_t n) {
    sched_request *r = calloc(1, sizeof *r);
    if (!r) {
        free(ids);
        return NULL;
    }
    r->id = ++s->next_req_id;
    r->prompt = ids;
    r->n_prompt = (int32_t)n;
    r->cap_gen = (int32_t)max_tokens;
    r->gen = malloc((size_t)max_tokens * sizeof *r->gen);
    r->logprob = malloc((size_t)max_tokens * sizeof *r->logprob);
    baton__sampling_params__init(&r->sampling);
    if (p->sampling) {
        r->sampling = *p->sampling;
        r->sampling.base.unknown_fields = NULL;
        r->sampling.base.n_unknown_fields = 0;
    }
    r->max_tokens = max_tokens;
    r->ignore_eos = p->ignore_eos;
    r->slot = -1;
    r->t_recv_ms = now_ms(s);
    r->deadline_ms = p->deadline_ms ? r->t_recv_ms + p->deadline_ms : 0;
    if (s->o.tok) {
        r->ts = tok_stream_new(s->o.tok);
        if (p->n_stop) r->stops = stop_matcher_new((const char *const *)p->stop, p->n_stop);
    }
    if (p->prompt_logprobs) r->prompt_lp = calloc((size_t)n, sizeof *r->prompt_lp);
    if (!r->gen || !r->logprob || (p->prompt_logprobs && !r->prompt_lp)) {
        req_free(r);
        return NULL;
    }
    return r;
}

sched_request *sched_admit(sched *s, void *client, uint32_t call_id, const sched_params *p, int32_t *ids,
                           int64_t n) {
    char msg[256];
    uint32_t max_tokens = p->max_tokens ? p->max_tokens : DEFAULT_MAX_TOKENS;
    int code = check_prompt(s, ids, n, max_tokens, msg, sizeof msg);
    if (code) {
        free(ids);
        s->env.send_status(s->env.user, client, call_id, code, msg);
        return NULL;
    }
    sched_request *r = req_new(s, p, max_tokens, ids, n);
    if (!r) {
        s->env.send_status(s->env.user, client, call_id, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    r->client = client;
    r->call_id = call_id;
    sched_request **pp = &s->reqs;
    while (*pp) pp = &(*pp)->next;
    *pp = r;
    s->stats.tokens_prompt += (uint64_t)n;
    return r;
}

/* --- ending, cancelling, replaying ------------------------------------------ */

void sched_cancel(sched *s, const void *client, uint32_t call_id, bool all) {
    for (sched_request *r = s->reqs, *nx; r; r = nx) {
        nx = r->next;
        if (r->client != client || (!all && r->call_id != call_id)) continue;
        if (all) r->client = NULL; /* gone: no status to send */
        sched_finish(s, r, BATON__STATUS_CODE__STATUS_CANCELLED, "cancelled by the client");
    }
    sched_pump(s);
}

/* Forgets every micro-batch in flight (their results will never come). */
static void forget_inflight(sched *s) {
    for (sched_batch *b = s->inflight, *nx; b; b = nx) {
        nx = b->next;
        for (int i = 0; i < b->n_reqs; i++) b->reqs[i]->inflight--;
        batch_free(b);
    }
    s->inflight = NULL;
    s->n_inflight = 0;
}

void sched_fail_all(sched *s, int code, const char *msg) {
    forget_inflight(s);
    for (sched_request *r = s->reqs, *nx; r; r = nx) {
        nx = r->next;
        r->awaiting = false;
        if (r->state == REQ_DONE) {
            if (r->inflight == 0) req_release(s, r);
        } else {
            sched_finish(s, r, code, msg);
        }
    }
}

void sched_requeue_all(sched *s) {
    forget_inflight(s);
    for (int32_t k = 0; k < s->o.n_slots; k++) s->slot_req[k] = NULL;
    int n = 0;
    for (sched_request *r = s->reqs, *nx; r; r = nx) {
        nx = r->next;
        r->slot = -1; /* the workers start over with empty caches */
        r->awaiting = false;
        r->fed = 0;
        if (r->state == REQ_DONE) {
            req_release(s, r);
        } else {
            r->state = REQ_QUEUED;
            n++;
        }
    }
    if (n) log_msg("%d request(s) will be replayed on the next plan", n);
}

void sched_tick(sched *s) {
    uint64_t now = now_ms(s);
    for (sched_request *r = s->reqs, *nx; r; r = nx) {
        nx = r->next;
        if (r->state != REQ_DONE && r->deadline_ms && now >= r->deadline_ms)
            sched_finish(s, r, BATON__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    }
    sched_pump(s);
}

const sched_batch *sched_overdue(const sched *s, uint64_t now) {
    for (const sched_batch *b = s->inflight; b; b = b->next)
        if (b->deadline_ms && now > b->deadline_ms) return b;
    return NULL;
}

void sched_extend_deadlines(sched *s, uint64_t ms) {
    for (sched_batch *b = s->inflight; b; b = b->next)
        if (b->deadline_ms) b->deadline_ms += ms;
}

/* --- tokens back ------------------------------------------------------------ */

/* The text of one new token, after the stop strings (*text points into the
 * stream or the matcher; *stopped: a stop string matched). */
static void token_text(sched_request *r, int32_t token, const char **text, size_t *len, bool *stopped) {
    const char *piece;
    size_t plen;
    *text = NULL;
    *len = 0;
    *stopped = false;
    if (tok_stream_feed(r->ts, token, &piece, &plen) != 0) return;
    if (r->stops) {
        const char *out;
        size_t olen;
        *stopped = stop_matcher_feed(r->stops, piece, plen, &out, &olen) == 1;
        piece = out;
        plen = olen;
    }
    *text = piece;
    *len = plen;
}

/* The text of the last chunk: text[0..len) followed by what the stream and the
 * stop matcher still hold back (malloc'd, NUL-terminated; NULL if out of memory). */
static char *final_text(sched_request *r, const char *text, size_t len, size_t *out_len) {
    const char *rest, *held = NULL;
    size_t rlen, hlen = 0;
    tok_stream_flush(r->ts, &rest, &rlen);
    if (r->stops) {
        const char *out = "";
        size_t olen = 0;
        if (rlen) stop_matcher_feed(r->stops, rest, rlen, &out, &olen);
        stop_matcher_flush(r->stops, &held, &hlen);
        rest = out;
        rlen = olen;
    }
    char *tail = malloc(len + rlen + hlen + 1);
    if (!tail) return NULL;
    if (len) memcpy(tail, text, len);
    if (rlen) memcpy(tail + len, rest, rlen);
    if (hlen) memcpy(tail + len + rlen, held, hlen);
    *out_len = len + rlen + hlen;
    tail[*out_len] = 0;
    return tail;
}

/* Sends one GenerateChunk of a token (with the totals when reason ends it). */
static void send_token_chunk(sched *s, const sched_request *r, int32_t token, float logprob, const char *text,
                             size_t text_len, const char *reason) {
    Baton__GenerateChunk ch = BATON__GENERATE_CHUNK__INIT;
    ch.n_tokens = 1;
    ch.tokens = &token;
    ch.n_logprobs = 1;
    ch.logprobs = &logprob;
    if (r->prompt_lp && r->n_gen == 1) { /* the first chunk: the prompt's scores (positions 1..n-1) */
        ch.n_prompt_logprobs = (size_t)r->n_prompt - 1;
        ch.prompt_logprobs = r->prompt_lp + 1;
    }
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
    s->env.send_chunk(s->env.user, r->client, r->call_id, &ch);
    free(tbuf);
}

/* Appends one new token and streams it to the client; returns 1 if the request
 * is now complete (length, end-of-generation token or stop string). */
static int emit_token(sched *s, sched_request *r, int32_t token, float logprob) {
    r->gen[r->n_gen] = token;
    r->logprob[r->n_gen] = logprob;
    r->n_gen++;
    s->stats.tokens_generated++;
    uint64_t now = now_ms(s);
    if (r->n_gen == 1) r->t_first_ms = now;
    r->t_last_ms = now;
    bool eog = false, stopped = false;
    if (!r->ignore_eos)
        for (int i = 0; i < s->o.n_eog; i++) eog |= token == s->o.eog[i];
    const char *text = NULL;
    size_t text_len = 0;
    if (r->ts && !eog) token_text(r, token, &text, &text_len, &stopped);
    const char *reason = eog ? "eos" : stopped ? "stop" : (uint32_t)r->n_gen >= r->max_tokens ? "length" : NULL;
    char *tail = NULL;
    if (reason && r->ts && !stopped) { /* flush held-back text at the end */
        size_t tlen;
        if ((tail = final_text(r, text, text_len, &tlen))) text = tail, text_len = tlen;
    }
    if (r->client) send_token_chunk(s, r, token, logprob, text, text_len, reason);
    r->prompt_lp_sent = true;
    free(tail);
    return reason != NULL;
}

/* The sampled tokens of a result: each goes to the request holding its slot. */
static void take_tokens(sched *s, const Baton__StageResult *res) {
    for (size_t i = 0; i < res->n_tokens; i++) {
        const Baton__SampledToken *t = res->tokens[i];
        if (t->slot < 0 || t->slot >= s->o.n_slots || !s->slot_req[t->slot]) continue;
        sched_request *r = s->slot_req[t->slot];
        if (t->scored_position > 0) { /* a prompt token's score, not a sample */
            if (r->state != REQ_ACTIVE) continue;
            if (t->code != BATON__STATUS_CODE__STATUS_OK) {
                char msg[300];
                snprintf(msg, sizeof msg, "last stage: %s", t->error ? t->error : "(no message)");
                sched_finish(s, r, (int)t->code, msg);
            } else if (r->prompt_lp && t->scored_position < r->n_prompt && t->token == r->prompt[t->scored_position]) {
                r->prompt_lp[t->scored_position] = t->logprob;
            }
            continue;
        }
        r->awaiting = false;
        if (r->state != REQ_ACTIVE) continue;
        if (t->code != BATON__STATUS_CODE__STATUS_OK) { /* this slot only: the others in the batch go on */
            char msg[300];
            snprintf(msg, sizeof msg, "last stage: %s", t->error ? t->error : "(no message)");
            sched_finish(s, r, (int)t->code, msg);
            continue;
        }
        if (emit_token(s, r, t->token, t->logprob)) sched_finish(s, r, BATON__STATUS_CODE__STATUS_OK, "");
    }
}

void sched_on_result(sched *s, const Baton__StageResult *res) {
    sched_batch *b = s->inflight, *prev = NULL;
    while (b && b->step_id != res->step_id) prev = b, b = b->next;
    if (!b) {
        log_msg("result for unknown step %llu ignored", (unsigned long long)res->step_id);
        return;
    }
    if (prev) prev->next = b->next;
    else s->inflight = b->next;
    s->n_inflight--;
    s->stats.steps++;
    s->stats.step_us_sum += s->env.now_us(s->env.user) - b->sent_us;
    /* The batch still counts in each request's inflight here, so finishing one
     * cannot free it under us; the release happens below. */
    if (res->code != BATON__STATUS_CODE__STATUS_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "pipeline error: %s", res->error ? res->error : "(no message)");
        log_msg("step %llu failed: %s", (unsigned long long)res->step_id, msg);
        for (int i = 0; i < b->n_reqs; i++) {
            b->reqs[i]->awaiting = false;
            sched_finish(s, b->reqs[i], (int)res->code, msg); /* the stage's status, e.g. DATA_LOSS */
        }
    }
    take_tokens(s, res);
    /* A request appears at most once per batch. */
    for (int i = 0; i < b->n_reqs; i++) {
        sched_request *r = b->reqs[i];
        r->inflight--;
        if (r->state == REQ_DONE && r->inflight == 0) req_release(s, r);
    }
    batch_free(b);
    sched_pump(s);
}

/* --- micro-batches out ------------------------------------------------------ */

/* The arrays of one micro-batch being built (max_batch entries each). */
typedef struct batch_buf {
    int32_t *slots, *pos, *toks, *resets;
    Baton__SampleSpec *specs;
    Baton__SampleSpec **spec_ptrs;
    sched_request **reqs;
    int n, n_specs, n_resets, n_reqs;
} batch_buf;

static int batch_buf_init(batch_buf *bb, int mb) {
    memset(bb, 0, sizeof *bb);
    bb->slots = malloc((size_t)mb * sizeof(int32_t));
    bb->pos = malloc((size_t)mb * sizeof(int32_t));
    bb->toks = malloc((size_t)mb * sizeof(int32_t));
    bb->resets = malloc((size_t)mb * sizeof(int32_t));
    bb->specs = malloc((size_t)mb * sizeof *bb->specs);
    bb->spec_ptrs = malloc((size_t)mb * sizeof *bb->spec_ptrs);
    bb->reqs = malloc((size_t)mb * sizeof *bb->reqs);
    return bb->slots && bb->pos && bb->toks && bb->resets && bb->specs && bb->spec_ptrs && bb->reqs ? 0 : -1;
}

static void batch_buf_free(batch_buf *bb) {
    free(bb->slots);
    free(bb->pos);
    free(bb->toks);
    free(bb->resets);
    free(bb->specs);
    free(bb->spec_ptrs);
    free(bb->reqs);
}

/* Adds the next `take` known tokens of r (a reset first if none was fed yet);
 * with its last known token, a sample spec for the logits of that row. */
static void batch_add(batch_buf *bb, sched_request *r, int32_t take) {
    if (r->fed == 0) bb->resets[bb->n_resets++] = r->slot;
    for (int32_t k = 0; k < take; k++) {
        int32_t p = r->fed + k;
        bb->slots[bb->n + k] = r->slot;
        bb->pos[bb->n + k] = p;
        bb->toks[bb->n + k] = p < r->n_prompt ? r->prompt[p] : r->gen[p - r->n_prompt];
    }
    if (r->prompt_lp && !r->prompt_lp_sent) /* rows 0..n_prompt-2 score the prompt token after them */
        for (int32_t k = 0; k < take && r->fed + k < r->n_prompt - 1; k++) {
            Baton__SampleSpec *sp = &bb->specs[bb->n_specs];
            baton__sample_spec__init(sp);
            sp->index = (uint32_t)(bb->n + k);
            sp->score = true;
            sp->target = r->prompt[r->fed + k + 1];
            bb->spec_ptrs[bb->n_specs++] = sp;
        }
    r->fed += take;
    if (r->fed == r->n_prompt + r->n_gen) {
        /* the last known token: its logits give the next one */
        Baton__SampleSpec *sp = &bb->specs[bb->n_specs];
        baton__sample_spec__init(sp);
        sp->index = (uint32_t)(bb->n + take - 1);
        sp->sampling = &r->sampling;
        sp->step = (uint64_t)r->n_gen;
        bb->spec_ptrs[bb->n_specs++] = sp;
        r->awaiting = true;
    }
    bb->n += take;
    r->inflight++;
    bb->reqs[bb->n_reqs++] = r;
}

/* Builds one micro-batch: decode tokens first (latency, at most max_decode of
 * them), then prompt chunks, up to max_batch tokens. Returns the number of
 * tokens, 0 if nothing is ready. */
static int build_batch(sched *s, int max_decode, batch_buf *bb, Baton__StageFrame *f) {
    bb->n = bb->n_specs = bb->n_resets = bb->n_reqs = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (sched_request *r = s->reqs; r && bb->n < s->o.max_batch; r = r->next) {
            if (r->state != REQ_ACTIVE || r->awaiting) continue;
            /* Tokens known but not yet fed: 1 while decoding; more for a prompt, or
             * for the prompt and generated tokens of a request replayed on a new plan. */
            int32_t avail = r->n_prompt + r->n_gen - r->fed;
            if (avail <= 0) continue;
            bool catch_up = avail > 1;
            if ((pass == 0) == catch_up || (pass == 0 && bb->n >= max_decode)) continue;
            int32_t take = avail;
            if (take > s->o.chunk) take = s->o.chunk;
            if (take > s->o.max_batch - bb->n) take = s->o.max_batch - bb->n;
            if (take <= 0) break;
            batch_add(bb, r, take);
        }
    }
    f->token_count = (uint32_t)bb->n;
    f->n_slots = f->n_positions = f->n_tokens = (size_t)bb->n;
    f->slots = bb->slots;
    f->positions = bb->pos;
    f->tokens = bb->toks;
    f->n_samples = (size_t)bb->n_specs;
    f->samples = bb->spec_ptrs;
    f->n_reset_slots = (size_t)bb->n_resets;
    f->reset_slots = bb->resets;
    f->width = s->o.width;
    return bb->n;
}

/* How long a micro-batch of n tokens may take to come back: the --step-timeout
 * floor plus 4x the plan's prediction for every token in flight (it may queue
 * behind them at each stage). */
static uint64_t step_deadline_ms(const sched *s, int n) {
    int tokens = n;
    for (const sched_batch *b = s->inflight; b; b = b->next) tokens += b->n_tokens;
    return (uint64_t)s->o.step_timeout_ms + (uint64_t)(4000.0 * s->pipeline_s * tokens);
}

/* Records a built micro-batch as in flight and sends it. -1: out of memory (not sent). */
static int batch_send(sched *s, const batch_buf *bb, Baton__StageFrame *f) {
    sched_batch *b = calloc(1, sizeof *b);
    if (b) b->reqs = malloc((size_t)bb->n_reqs * sizeof *b->reqs);
    if (!b || !b->reqs) {
        free(b);
        return -1;
    }
    memcpy(b->reqs, bb->reqs, (size_t)bb->n_reqs * sizeof *bb->reqs);
    b->n_reqs = bb->n_reqs;
    b->n_tokens = (int)f->token_count;
    b->step_id = f->step_id = ++s->next_step;
    b->sent_us = s->env.now_us(s->env.user);
    b->deadline_ms = b->sent_us / 1000 + step_deadline_ms(s, (int)f->token_count);
    sched_batch **pp = &s->inflight;
    while (*pp) pp = &(*pp)->next;
    *pp = b;
    s->n_inflight++;
    s->env.send_first(s->env.user, f);
    return 0;
}

/* Hands free slots to queued requests, oldest first. */
static void assign_slots(sched *s) {
    for (sched_request *r = s->reqs; r; r = r->next) {
        if (r->state != REQ_QUEUED) continue;
        int32_t k = 0;
        while (k < s->o.n_slots && s->slot_req[k]) k++;
        if (k == s->o.n_slots) break;
        s->slot_req[k] = r;
        r->slot = k;
        r->state = REQ_ACTIVE;
    }
}

/* True if a request with a slot has prompt tokens (or replayed ones) not yet sent. */
static bool catch_up_pending(const sched *s) {
    for (const sched_request *r = s->reqs; r; r = r->next)
        if (r->state == REQ_ACTIVE && !r->awaiting && r->n_prompt + r->n_gen - r->fed > 1) return true;
    return false;
}

void sched_pump(sched *s) {
    if (!s->feeding) return; /* no plan, or switching: let the micro-batches in flight come back */
    assign_slots(s);
    /* Default: stages + 1 micro-batches in flight while prompt chunks wait (a chunk
     * fills the stage a returning batch leaves idle), but only one per stage with
     * decode tokens alone. Streams that arrived at different times would
     * otherwise settle into stages + 1 smaller batches for good: each stage then
     * makes stages + 1 passes per round instead of stages, each reading all its
     * weights (1 + 4 + 3 tokens for 8 streams on 2 stages: 3 passes for 8 tokens
     * instead of 2). Capped at one per stage, a returning batch whose streams do
     * not fill their share waits for the next to come back and they merge. */
    int max_inflight = s->o.max_inflight > 0 ? s->o.max_inflight : s->n_stages + (catch_up_pending(s) ? 1 : 0);
    /* Spread the decoding streams evenly over one micro-batch per stage: every
     * stage then has work of the same size at once. One batch of all of them
     * would leave all but one stage idle; a big and a small one, the stages idle
     * while the small one passes. (Each stream stays in the batch it joined,
     * since its next token is known only when that batch comes back.) */
    int max_decode = (sched_count(s, REQ_ACTIVE) + s->n_stages - 1) / s->n_stages;
    batch_buf bb;
    if (batch_buf_init(&bb, s->o.max_batch) == 0)
        while (s->n_inflight < max_inflight) {
            Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
            if (build_batch(s, max_decode, &bb, &f) == 0 || batch_send(s, &bb, &f) != 0) break;
        }
    batch_buf_free(&bb);
}
