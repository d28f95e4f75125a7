/* stage.c - the compute thread of a worker. See stage.h. */
#include "stage.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "frame.h"
#include "sampler.h"

/* The tokens a slot has been fed, for the sampler's penalties (last stage only). */
typedef struct slot_history {
    int32_t *ids;
    int32_t n, cap;
} slot_history;

struct stage {
    model *m;
    kv_cache *kv;
    fwd_ctx *ctx;
    int32_t max_batch;
    uv_async_t *wake;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    stage_job *in_head, *in_tail;    /* submitted */
    stage_job *out_head, *out_tail;  /* finished */
    size_t pending;
    bool stop;
    /* compute-thread state */
    float *logits;                   /* [max_batch][n_vocab] on the head stage */
    sampler_scratch *scratch;
    slot_history *hist;              /* [n_slots] */
    int32_t *pos_filled;             /* [n_slots]: positions fed, 0 = free */
    uint32_t usage_slots;            /* under mu */
    uint64_t usage_positions;
    uint64_t busy_us;                /* under mu */
};

static void job_fail(stage_job *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof j->err, fmt, ap);
    va_end(ap);
    j->failed = 1;
    j->code = BATON__STATUS_CODE__STATUS_INTERNAL;
}

void stage_job_free(stage_job *job) {
    if (!job) return;
    if (job->frame) baton__stage_frame__free_unpacked(job->frame, NULL);
    free(job->wire);
    hop_payload_free(&job->out);
    free(job->hidden);
    free(job->drop_slots);
    free(job->res_slot);
    free(job->res_token);
    free(job->res_pos);
    free(job->res_logprob);
    free(job->res_code);
    free(job);
}

/* Forgets a slot: its history and positions (the KV cache needs no erasing, forward.h). */
static void slot_clear(stage *s, int32_t slot) {
    if (slot < 0 || slot >= s->kv->n_slots) return;
    s->hist[slot].n = 0;
    s->pos_filled[slot] = 0;
}

static int hist_push(slot_history *h, int32_t id) {
    if (h->n == h->cap) {
        int32_t cap = h->cap ? h->cap * 2 : 256;
        int32_t *p = realloc(h->ids, (size_t)cap * sizeof *p);
        if (!p) return -1;
        h->ids = p;
        h->cap = cap;
    }
    h->ids[h->n++] = id;
    return 0;
}

/* Sampler parameters from the wire, with proto3's zero defaults read as "off". */
static sampler_params params_from_wire(const Baton__SamplingParams *w) {
    sampler_params p = sampler_defaults();
    if (!w) return p;
    p.temperature = w->temperature;
    p.top_k = w->top_k;
    p.top_p = w->top_p == 0 ? 1.0f : w->top_p; /* only 0 means off: NaN or < 0 stay invalid */
    p.min_p = w->min_p;
    p.repetition_penalty = w->repetition_penalty == 0 ? 1.0f : w->repetition_penalty;
    p.presence_penalty = w->presence_penalty;
    p.frequency_penalty = w->frequency_penalty;
    p.penalty_last_n = w->penalty_last_n;
    p.seed = w->seed;
    return p;
}

/* Runs one stage frame: checks it, clears reset slots, runs the slice, samples on
 * the head stage. On success job->hidden holds the output (non-head stages) or
 * job->res_* the sampled tokens. */
static void run_forward(stage *s, stage_job *j);

/* A frame: decode its payload, run the layers, encode the output for the
 * successor. A payload that is not what its sender encoded fails the job with
 * DATA_LOSS and nothing runs. */
static void run_frame(stage *s, stage_job *j) {
    char err[256];
    {
        if (hop_decode(j->frame, j->wire, j->wire_len, &j->hidden, &j->hidden_len, err, sizeof err) < 0) {
            job_fail(j, "%s", err);
            j->code = BATON__STATUS_CODE__STATUS_DATA_LOSS;
            return;
        }
        free(j->wire);
        j->wire = NULL;
    }
    run_forward(s, j);
    if (j->failed || j->out_codec < 0) return;
    j->frame->width = s->m->hp.n_embd;
    if (hop_encode(j->frame, j->out_codec, j->hidden, j->hidden_len, &j->out, err, sizeof err) < 0)
        job_fail(j, "cannot encode the activations: %.200s", err);
}

static void run_forward(stage *s, stage_job *j) {
    const Baton__StageFrame *f = j->frame;
    const model_hparams *hp = &s->m->hp;
    const int32_t n = (int32_t)f->token_count;
    const size_t E = hp->n_embd;
    if (n <= 0 || n > s->max_batch) return job_fail(j, "frame of %d tokens (at most %d)", n, (int)s->max_batch);
    if (f->n_slots != (size_t)n || f->n_positions != (size_t)n || f->n_tokens != (size_t)n)
        return job_fail(j, "frame arrays disagree with its token count %d", n);
    for (size_t i = 0; i < f->n_reset_slots; i++) slot_clear(s, f->reset_slots[i]);
    for (int32_t i = 0; i < n; i++) {
        if (f->slots[i] < 0 || f->slots[i] >= s->kv->n_slots)
            return job_fail(j, "slot %d out of range [0, %d)", (int)f->slots[i], (int)s->kv->n_slots);
        if (f->positions[i] < 0 || f->positions[i] >= s->kv->n_ctx)
            return job_fail(j, "position %d out of the context %d", (int)f->positions[i], (int)s->kv->n_ctx);
    }
    if (!s->m->slice.embed) {
        if (f->width != E || j->hidden_len != (size_t)n * E * sizeof(float))
            return job_fail(j, "activation payload of %zu bytes, width %u: expected %d x %zu floats", j->hidden_len,
                            (unsigned)f->width, n, E);
    } else {
        free(j->hidden);
        j->hidden = malloc((size_t)n * E * sizeof(float));
        if (!j->hidden) return job_fail(j, "out of memory");
        j->hidden_len = (size_t)n * E * sizeof(float);
    }
    uint8_t *want = calloc((size_t)n, 1);
    if (!want) return job_fail(j, "out of memory");
    for (size_t i = 0; i < f->n_samples; i++) {
        if (f->samples[i]->index >= (uint32_t)n) {
            free(want);
            return job_fail(j, "sample index %u outside the batch", (unsigned)f->samples[i]->index);
        }
        want[f->samples[i]->index] = 1;
    }
    fwd_batch b = {.n = n, .tokens = f->tokens, .slot = f->slots, .pos = f->positions, .logits = want};
    int nw = forward_run(s->ctx, s->kv, &b, j->hidden, s->m->slice.head ? s->logits : NULL, j->err, sizeof j->err);
    if (nw < 0) {
        free(want);
        j->failed = 1;
        return;
    }
    for (int32_t i = 0; i < n; i++)
        if (s->pos_filled[f->slots[i]] < f->positions[i] + 1) s->pos_filled[f->slots[i]] = f->positions[i] + 1;
    if (!s->m->slice.head) {
        free(want);
        return;
    }
    /* Head: the history of a slot is every token it was fed, this batch included. */
    for (int32_t i = 0; i < n; i++)
        if (hist_push(&s->hist[f->slots[i]], f->tokens[i]) != 0) {
            free(want);
            return job_fail(j, "out of memory");
        }
    /* Logit rows come in batch order of the flagged tokens. */
    int32_t *row_of = malloc((size_t)n * sizeof *row_of);
    j->res_slot = malloc(f->n_samples * sizeof(int32_t) + 1);
    j->res_token = malloc(f->n_samples * sizeof(int32_t) + 1);
    j->res_logprob = malloc(f->n_samples * sizeof(float) + 1);
    j->res_pos = calloc(f->n_samples + 1, sizeof(int32_t));
    j->res_code = calloc(f->n_samples + 1, sizeof(int32_t));
    if (!row_of || !j->res_slot || !j->res_token || !j->res_logprob || !j->res_pos || !j->res_code) {
        free(want);
        free(row_of);
        return job_fail(j, "out of memory");
    }
    for (int32_t i = 0, r = 0; i < n; i++) row_of[i] = want[i] ? r++ : -1;
    free(want);
    const int32_t V = (int32_t)hp->n_vocab;
    for (size_t i = 0; i < f->n_samples; i++) {
        const Baton__SampleSpec *sp = f->samples[i];
        int32_t slot = f->slots[sp->index];
        const float *row = s->logits + (size_t)row_of[sp->index] * V;
        if (sp->score) { /* the prompt token that follows this row: its log-probability, no sampling */
            float lp = 0;
            if (sampler_token_logprob(row, V, sp->target, &lp) != 0) {
                j->res_code[i] = BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
                lp = 0;
            }
            j->res_slot[i] = slot;
            j->res_token[i] = sp->target;
            j->res_logprob[i] = lp;
            j->res_pos[i] = f->positions[sp->index] + 1;
            continue;
        }
        sampler_params p = params_from_wire(sp->sampling);
        const slot_history *h = &s->hist[slot];
        float lp = 0;
        int32_t tok = sampler_sample(&p, row, V, h->ids, h->n, sp->step, s->scratch, &lp);
        if (tok < 0) { /* ends this slot's request only: the others in the batch are fine */
            j->res_code[i] = BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
            tok = -1;
            lp = 0;
        }
        j->res_slot[i] = slot;
        j->res_token[i] = tok;
        j->res_logprob[i] = lp;
    }
    j->n_res = f->n_samples;
    free(row_of);
}

static void *stage_main(void *arg) {
    stage *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->in_head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (!s->in_head) break;
        stage_job *j = s->in_head;
        s->in_head = j->next;
        if (!s->in_head) s->in_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        double t_job = clock_s();
        if (j->kind == STAGE_JOB_DROP) {
            for (size_t i = 0; i < j->n_drop; i++) slot_clear(s, j->drop_slots[i]);
        } else {
            run_frame(s, j);
        }
        uint32_t used = 0;
        uint64_t positions = 0;
        for (int32_t i = 0; i < s->kv->n_slots; i++) {
            used += s->pos_filled[i] > 0;
            positions += (uint64_t)s->pos_filled[i];
        }

        pthread_mutex_lock(&s->mu);
        s->busy_us += (uint64_t)((clock_s() - t_job) * 1e6);
        s->usage_slots = used;
        s->usage_positions = positions;
        j->next = NULL;
        if (s->out_tail) s->out_tail->next = j;
        else s->out_head = j;
        s->out_tail = j;
        uv_async_send(s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

stage *stage_new(model *m, kv_cache *kv, int32_t max_batch, uv_async_t *wake, char *err, size_t errlen) {
    stage *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->kv = kv;
    s->max_batch = max_batch;
    s->wake = wake;
    if (!(s->ctx = fwd_ctx_new_err(m, max_batch, err, errlen)) || forward_prepare(s->ctx, kv, err, errlen)) {
        stage_free(s); /* err says why: on a GPU, what does not fit its memory */
        return NULL;
    }
    s->hist = calloc((size_t)kv->n_slots, sizeof *s->hist);
    s->pos_filled = calloc((size_t)kv->n_slots, sizeof *s->pos_filled);
    if (!s->ctx || !s->hist || !s->pos_filled) goto oom;
    if (m->slice.head) {
        s->logits = malloc((size_t)max_batch * m->hp.n_vocab * sizeof(float));
        s->scratch = sampler_scratch_new((int32_t)m->hp.n_vocab);
        if (!s->logits || !s->scratch) goto oom;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, stage_main, s) != 0) {
        snprintf(err, errlen, "cannot start the compute thread");
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        s->thread = 0;
        stage_free(s);
        return NULL;
    }
    return s;
oom:
    snprintf(err, errlen, "out of memory setting up the stage");
    stage_free(s);
    return NULL;
}

void stage_free(stage *s) {
    if (!s) return;
    if (s->thread) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
    }
    for (stage_job *j = s->out_head, *nx; j; j = nx) {
        nx = j->next;
        stage_job_free(j);
    }
    if (s->hist)
        for (int32_t i = 0; i < s->kv->n_slots; i++) free(s->hist[i].ids);
    free(s->hist);
    free(s->pos_filled);
    free(s->logits);
    sampler_scratch_free(s->scratch);
    fwd_ctx_free(s->ctx);
    free(s);
}

void stage_submit(stage *s, stage_job *job) {
    job->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->in_tail) s->in_tail->next = job;
    else s->in_head = job;
    s->in_tail = job;
    s->pending++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

stage_job *stage_take_done(stage *s) {
    pthread_mutex_lock(&s->mu);
    stage_job *j = s->out_head;
    if (j) {
        s->out_head = j->next;
        if (!s->out_head) s->out_tail = NULL;
        s->pending--;
        j->next = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return j;
}

size_t stage_pending(stage *s) {
    pthread_mutex_lock(&s->mu);
    size_t n = s->pending;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t stage_busy_us(stage *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t us = s->busy_us;
    pthread_mutex_unlock(&s->mu);
    return us;
}

void stage_usage(stage *s, uint32_t *slots_used, uint64_t *positions) {
    pthread_mutex_lock(&s->mu);
    *slots_used = s->usage_slots;
    *positions = s->usage_positions;
    pthread_mutex_unlock(&s->mu);
}
