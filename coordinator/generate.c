/* generate.c - the Generate call: checked, tokenised off the loop when it is a
 * text or a chat, then admitted to the scheduler (scheduler.h). See coord.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"

/* Checks every sampling field the last stage reads, so that one request can
 * never fail a micro-batch it shares. 0, or the status code with a message. */
static int check_sampling(const Baton__SamplingParams *sp, char *msg, size_t cap) {
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
    return 0;
}

/* The bytes of g's prompt text (text, or the chat's roles and contents). */
static uint64_t prompt_text_bytes(const Baton__GenerateRequest *g) {
    uint64_t bytes = g->text ? strlen(g->text) : 0;
    for (size_t i = 0; i < g->n_chat; i++)
        bytes += (g->chat[i]->content ? strlen(g->chat[i]->content) : 0) + (g->chat[i]->role ? strlen(g->chat[i]->role) : 0);
    return bytes;
}

/* Checks what can be checked before tokenising: the sampling parameters,
 * max_tokens against the context, and the prompt's size. 0, or the status code
 * with a message naming the field. */
static int check_request(const coord *c, const Baton__GenerateRequest *g, char *msg, size_t cap) {
    int code = g->sampling ? check_sampling(g->sampling, msg, cap) : 0;
    if (code) return code;
    if (g->max_tokens > (uint32_t)c->o.n_ctx) {
        snprintf(msg, cap, "max_tokens: %u exceeds the context of %d", (unsigned)g->max_tokens, c->o.n_ctx);
        return BATON__STATUS_CODE__STATUS_OUT_OF_RANGE;
    }
    if (g->n_tokens > (size_t)c->o.n_ctx) {
        snprintf(msg, cap, "tokens: %zu prompt tokens exceed the context of %d", g->n_tokens, c->o.n_ctx);
        return BATON__STATUS_CODE__STATUS_OUT_OF_RANGE;
    }
    uint64_t bytes = prompt_text_bytes(g);
    if (bytes > c->o.max_prompt_bytes) {
        snprintf(msg, cap, "%s: the prompt is %llu bytes, more than this coordinator takes (--max-prompt-bytes %llu)",
                 g->n_chat ? "chat" : "text", (unsigned long long)bytes, (unsigned long long)c->o.max_prompt_bytes);
        return BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
    }
    return 0;
}

/* The admission limits (coord_opts.max_requests, max_prompt_memory,
 * max_conn_prompt_memory) against what is held now: the requests of the
 * scheduler not yet ended and the prompts being tokenised. 0, or
 * RESOURCE_EXHAUSTED with a message saying which limit. */
static int check_limits(const coord *c, const net_conn *client, uint64_t want_bytes, char *msg, size_t cap) {
    uint64_t n = 0, all = 0, mine = 0;
    for (const sched_request *r = c->sched.reqs; r; r = r->next) {
        if (r->state == REQ_DONE) continue;
        uint64_t b = (uint64_t)r->n_prompt * sizeof(int32_t);
        n++, all += b;
        if (r->client == client) mine += b;
    }
    for (const coord_job *j = c->jobs; j; j = j->next) {
        if (!j->prompt_bytes || j->cancelled || !j->client) continue;
        n++, all += j->prompt_bytes;
        if (j->client == client) mine += j->prompt_bytes;
    }
    const int full = BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED;
    if (n >= c->o.max_requests) {
        snprintf(msg, cap, "too many requests: %llu queued or running, the limit is %u (--max-requests)",
                 (unsigned long long)n, (unsigned)c->o.max_requests);
        return full;
    }
    if (all + want_bytes > c->o.max_prompt_memory) {
        snprintf(msg, cap, "prompt memory full: %llu bytes held by queued and running prompts + %llu > %llu "
                 "(--max-prompt-memory)", (unsigned long long)all, (unsigned long long)want_bytes,
                 (unsigned long long)c->o.max_prompt_memory);
        return full;
    }
    if (mine + want_bytes > c->o.max_conn_prompt_memory) {
        snprintf(msg, cap, "this connection's prompt memory is full: %llu bytes held + %llu > %llu "
                 "(--max-conn-prompt-memory)", (unsigned long long)mine, (unsigned long long)want_bytes,
                 (unsigned long long)c->o.max_conn_prompt_memory);
        return full;
    }
    return 0;
}

/* Queues a request whose prompt is ids[0..n) (taken). Ends the call with a
 * status here if the prompt does not fit, or if no plan fits the workers. */
static void admit(coord *c, void *client, uint32_t call_id, const Baton__GenerateRequest *g, int32_t *ids,
                  int64_t n) {
    sched_params p = {.sampling = g->sampling, .max_tokens = g->max_tokens, .ignore_eos = g->ignore_eos,
                      .deadline_ms = g->deadline_ms, .stop = g->stop, .n_stop = (int)g->n_stop,
                      .prompt_logprobs = g->prompt_logprobs};
    sched_request *r = sched_admit(&c->sched, client, call_id, &p, ids, n);
    if (!r) return;
    if (!c->serving && !c->switching && c->plan_error[0]) {
        /* no plan fits the workers there are: say so rather than wait forever */
        char m[600];
        snprintf(m, sizeof m, "no plan: %s", c->plan_error);
        sched_finish(&c->sched, r, BATON__STATUS_CODE__STATUS_UNAVAILABLE, m);
        return;
    }
    if (!c->serving) log_msg("request %u queued until the plan is ready", (unsigned)r->id);
    sched_pump(&c->sched);
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
    char err[200];
    j->n = msgs ? chat_encode_alloc(tok, msgs, (int)g->n_chat, true, TOK_SPECIAL_PLAIN, &j->ids, err, sizeof err)
                : tok_encode_alloc(tok, g->text, strlen(g->text), TOK_SPECIAL_PLAIN, &j->ids, err, sizeof err);
    free(msgs);
}

static void encode_done(coord_job *cj) {
    encode_job *j = (encode_job *)cj;
    if (cj->client && !cj->cancelled) {
        if (j->n < 0 || !j->ids)
            coord_send_status(cj->c, cj->client, cj->call_id, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                              "the prompt cannot be encoded");
        else
            admit(cj->c, cj->client, cj->call_id, j->g, j->ids, j->n), j->ids = NULL;
    }
    free(j->ids);
    baton__generate_request__free_unpacked(j->g, NULL);
    free(j);
}

/* Ends a Generate call before it is queued (g is freed). */
static void refuse(coord *c, void *client, uint32_t call_id, Baton__GenerateRequest *g, int code, const char *msg) {
    coord_send_status(c, client, call_id, code, msg);
    baton__generate_request__free_unpacked(g, NULL);
}

void coord_generate(coord *c, void *client, uint32_t call_id, Baton__GenerateRequest *g) {
    char msg[300];
    int code = check_request(c, g, msg, sizeof msg);
    uint64_t want = g->n_tokens ? (uint64_t)g->n_tokens * sizeof(int32_t) : prompt_text_bytes(g);
    if (!code) code = check_limits(c, client, want, msg, sizeof msg);
    if (code) {
        refuse(c, client, call_id, g, code, msg);
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
        refuse(c, client, call_id, g, BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT, "empty prompt");
        return;
    }
    if (!c->tok) {
        refuse(c, client, call_id, g, BATON__STATUS_CODE__STATUS_FAILED_PRECONDITION,
               "the model file has no tokenizer: send token ids");
        return;
    }
    encode_job *j = calloc(1, sizeof *j);
    if (!j) {
        refuse(c, client, call_id, g, BATON__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->g = g;
    j->n = -1;
    j->base.prompt_bytes = want ? want : 1;
    j->base.client = client;
    j->base.call_id = call_id;
    j->base.run = encode_run;
    j->base.done = encode_done;
    coord_job_start(c, &j->base);
}

void coord_cancel(coord *c, void *client, uint32_t call_id, bool all) {
    coord_jobs_forget(c, client, call_id, all);
    sched_cancel(&c->sched, client, call_id, all);
}
