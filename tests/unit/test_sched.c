/* test_sched.c - the continuous-batching scheduler (coordinator/scheduler.h)
 * without sockets: fake callbacks record the micro-batches it sends, the
 * statuses and chunks it streams and the slots it drops; the test answers with
 * crafted StageResults on a clock it moves by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

#include "check.h"

#define MAXROWS 256
#define MAXREC 64

/* A micro-batch as it was sent (copied: the scheduler's arrays are reused). */
typedef struct sent_frame {
    uint64_t step_id;
    int n;
    int32_t slots[MAXROWS], pos[MAXROWS], toks[MAXROWS];
    int n_samples;
    uint32_t sample_index[MAXROWS];
    uint64_t sample_step[MAXROWS];
    int n_resets;
    int32_t resets[MAXROWS];
} sent_frame;

typedef struct sent_status {
    const net_conn *client;
    uint32_t call_id;
    int code;
    char msg[200];
} sent_status;

typedef struct sent_chunk {
    uint32_t call_id;
    int32_t token;
    bool done;
    char reason[16];
} sent_chunk;

static struct {
    sent_frame frames[MAXREC];
    int n_frames;
    sent_status statuses[MAXREC];
    int n_statuses;
    sent_chunk chunks[MAXREC * 4];
    int n_chunks;
    int32_t drops[MAXREC];
    int n_drops;
    uint64_t now_us;
} fake;

static char clients[8]; /* &clients[i] is client i: only compared, never dereferenced */
#define CLIENT(i) ((net_conn *)&clients[i])

static int fake_send_first(void *user, const Baton__StageFrame *f) {
    (void)user;
    if (fake.n_frames >= MAXREC) return -1;
    sent_frame *r = &fake.frames[fake.n_frames++];
    r->step_id = f->step_id;
    r->n = (int)f->token_count;
    CHECK(f->n_slots == f->token_count && f->n_positions == f->token_count && f->n_tokens == f->token_count,
          "frame %llu: %zu slots, %zu positions, %zu tokens for token_count %u", (unsigned long long)f->step_id,
          f->n_slots, f->n_positions, f->n_tokens, (unsigned)f->token_count);
    for (int i = 0; i < r->n && i < MAXROWS; i++) r->slots[i] = f->slots[i], r->pos[i] = f->positions[i], r->toks[i] = f->tokens[i];
    r->n_samples = (int)f->n_samples;
    for (int i = 0; i < r->n_samples; i++) r->sample_index[i] = f->samples[i]->index, r->sample_step[i] = f->samples[i]->step;
    r->n_resets = (int)f->n_reset_slots;
    for (int i = 0; i < r->n_resets; i++) r->resets[i] = f->reset_slots[i];
    return 0;
}

static void fake_drop_slot(void *user, int32_t slot) {
    (void)user;
    if (fake.n_drops < MAXREC) fake.drops[fake.n_drops++] = slot;
}

static void fake_send_status(void *user, void *client, uint32_t call_id, int code, const char *msg) {
    (void)user;
    if (fake.n_statuses >= MAXREC) return;
    sent_status *st = &fake.statuses[fake.n_statuses++];
    st->client = client;
    st->call_id = call_id;
    st->code = code;
    snprintf(st->msg, sizeof st->msg, "%s", msg);
}

static void fake_send_chunk(void *user, void *client, uint32_t call_id, const Baton__GenerateChunk *ch) {
    (void)user, (void)client;
    if (fake.n_chunks >= MAXREC * 4) return;
    sent_chunk *c = &fake.chunks[fake.n_chunks++];
    c->call_id = call_id;
    c->token = ch->n_tokens ? ch->tokens[0] : -1;
    c->done = ch->done;
    snprintf(c->reason, sizeof c->reason, "%s", ch->finish_reason ? ch->finish_reason : "");
}

static uint64_t fake_now_us(void *user) {
    (void)user;
    return fake.now_us;
}

/* A fresh scheduler (and fresh records) over a plan of n_stages. */
static void start(sched *s, int n_slots, int max_batch, int chunk, int max_inflight, int n_stages) {
    memset(&fake, 0, sizeof fake);
    fake.now_us = 1000000;
    sched_opts o = {.n_slots = n_slots, .n_ctx = 512, .max_batch = max_batch, .chunk = chunk,
                    .max_inflight = max_inflight, .step_timeout_ms = 1000, .n_vocab = 1000, .width = 8,
                    .eog = {999}, .n_eog = 1};
    sched_env env = {.send_first = fake_send_first, .drop_slot = fake_drop_slot, .send_status = fake_send_status,
                     .send_chunk = fake_send_chunk, .now_us = fake_now_us};
    CHECK(sched_init(s, &o, &env) == 0, "sched_init");
    sched_set_plan(s, n_stages, 0.001 * n_stages);
    sched_set_feeding(s, true);
}

/* Queues a request of client 0 with prompt first, first+1, ... (n ids). */
static sched_request *admit(sched *s, uint32_t call_id, int32_t first, int n, uint32_t max_tokens) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = first + i;
    sched_params p = {.max_tokens = max_tokens};
    sched_request *r = sched_admit(s, CLIENT(0), call_id, &p, ids, n);
    CHECK(r != NULL, "admit call %u", (unsigned)call_id);
    return r;
}

/* The token the fake last stage samples for a row: 500 + its position. */
static int32_t sampled(const sent_frame *f, uint32_t row) { return 500 + f->pos[row]; }

/* Answers frame k as the last stage would: one token per sample spec, from the
 * slot of its row; bad_slot (if >= 0) gets a per-slot error instead. */
static void answer(sched *s, int k, int32_t bad_slot) {
    const sent_frame *f = &fake.frames[k];
    Baton__StageResult res = BATON__STAGE_RESULT__INIT;
    Baton__SampledToken toks[MAXROWS], *ptrs[MAXROWS];
    for (int i = 0; i < f->n_samples; i++) {
        baton__sampled_token__init(&toks[i]);
        uint32_t row = f->sample_index[i];
        toks[i].slot = f->slots[row];
        toks[i].token = sampled(f, row);
        toks[i].logprob = -1.0f;
        if (toks[i].slot == bad_slot) {
            toks[i].code = BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT;
            toks[i].error = "bad sampling";
        }
        ptrs[i] = &toks[i];
    }
    res.step_id = f->step_id;
    res.n_tokens = (size_t)f->n_samples;
    res.tokens = ptrs;
    sched_on_result(s, &res);
}

/* Rows of frame f that belong to slot. */
static int rows_of(const sent_frame *f, int32_t slot) {
    int n = 0;
    for (int i = 0; i < f->n; i++) n += f->slots[i] == slot;
    return n;
}

/* Every slot's rows in f form one run of consecutive positions (a request at
 * most once per batch), and every sample spec points at the last row of its
 * slot's run. */
static void check_frame_shape(const char *name, const sent_frame *f) {
    for (int i = 0; i < f->n; i++) {
        int j = i;
        while (j + 1 < f->n && f->slots[j + 1] == f->slots[i]) {
            CHECK(f->pos[j + 1] == f->pos[j] + 1, "%s: slot %d rows %d,%d: positions %d,%d", name, f->slots[i], j,
                  j + 1, f->pos[j], f->pos[j + 1]);
            j++;
        }
        for (int k = j + 1; k < f->n; k++)
            CHECK(f->slots[k] != f->slots[i], "%s: slot %d appears twice (rows %d and %d)", name, f->slots[i], i, k);
        i = j;
    }
    for (int k = 0; k < f->n_samples; k++) {
        uint32_t row = f->sample_index[k];
        CHECK(row < (uint32_t)f->n, "%s: sample row %u of %d", name, (unsigned)row, f->n);
        if (row >= (uint32_t)f->n) continue;
        CHECK(row + 1 == (uint32_t)f->n || f->slots[row + 1] != f->slots[row],
              "%s: sample row %u is not the last row of slot %d", name, (unsigned)row, f->slots[row]);
    }
}

static const sent_status *status_of(uint32_t call_id) {
    for (int i = 0; i < fake.n_statuses; i++)
        if (fake.statuses[i].call_id == call_id) return &fake.statuses[i];
    return NULL;
}

/* Long prompts go in chunks; a decode token goes before the prompt chunks. */
static void test_chunks_and_decode_first(void) {
    sched s;
    start(&s, 4, 70, 64, 1, 1);
    sched_request *b = admit(&s, 1, 10, 200, 4); /* 200 tokens: 64 + 64 + 64 + 8 */
    sched_request *a = admit(&s, 2, 300, 2, 4);
    sched_pump(&s);
    CHECK(fake.n_frames == 1, "max_inflight 1: %d frames", fake.n_frames);
    const sent_frame *f = &fake.frames[0];
    check_frame_shape("first", f);
    CHECK(f->n == 66 && rows_of(f, b->slot) == 64 && rows_of(f, a->slot) == 2,
          "first batch: %d rows, %d of the long prompt (want 64), %d of the short (want 2)", f->n,
          rows_of(f, b->slot), rows_of(f, a->slot));
    CHECK(f->n_resets == 2, "first batch: %d reset slots, want 2", f->n_resets);
    CHECK(f->n_samples == 1 && f->slots[f->sample_index[0]] == a->slot && f->sample_step[0] == 0,
          "first batch: only the finished prompt is sampled (%d specs)", f->n_samples);
    for (int i = 0; i < 64; i++)
        CHECK(f->pos[i] == i && f->toks[i] == 10 + i, "first chunk row %d: pos %d tok %d", i, f->pos[i], f->toks[i]);
    CHECK(a->awaiting && a->inflight == 1 && !b->awaiting && b->inflight == 1,
          "after sending: short awaiting %d inflight %d, long awaiting %d inflight %d", a->awaiting, a->inflight,
          b->awaiting, b->inflight);
    answer(&s, 0, -1);
    /* the result pumps at once: both are in the next batch, and only in it */
    CHECK(a->n_gen == 1 && a->gen[0] == 501 && a->awaiting && a->inflight == 1 && b->inflight == 1,
          "after the result: short has %d tokens (first %d, want 501), awaiting %d, inflight %d/%d (want 1/1)",
          a->n_gen, a->n_gen ? a->gen[0] : -1, a->awaiting, a->inflight, b->inflight);
    CHECK(fake.n_frames == 2, "the result made room for one more batch: %d frames", fake.n_frames);
    f = &fake.frames[1];
    check_frame_shape("second", f);
    CHECK(f->n >= 1 && f->slots[0] == a->slot && f->pos[0] == 2 && f->toks[0] == 501,
          "second batch row 0: slot %d pos %d tok %d; want the decode token (slot %d pos 2 tok 501)", f->slots[0],
          f->pos[0], f->toks[0], a->slot);
    CHECK(rows_of(f, b->slot) == 64 && f->pos[1] == 64 && f->toks[1] == 74,
          "second batch: %d rows of the long prompt from pos %d", rows_of(f, b->slot), f->pos[1]);
    CHECK(f->n_resets == 0, "second batch: %d resets, want 0", f->n_resets);
    CHECK(f->n_samples == 1 && f->sample_index[0] == 0 && f->sample_step[0] == 1,
          "second batch: sample spec row %u step %llu, want row 0 step 1", f->n_samples ? f->sample_index[0] : 99,
          f->n_samples ? (unsigned long long)f->sample_step[0] : 99ull);
    answer(&s, 1, -1);
    answer(&s, 2, -1);
    f = &fake.frames[3];
    check_frame_shape("fourth", f);
    CHECK(rows_of(f, b->slot) == 8 && f->n_samples == 2, "last chunk: %d rows of the long prompt (want 8), %d specs",
          rows_of(f, b->slot), f->n_samples);
    sched_free(&s);
}

/* The decode tokens are spread over one batch per stage; no more than
 * max_inflight (default stages + 1) batches are in flight. */
static void test_inflight_limits(void) {
    sched s;
    start(&s, 8, 4, 4, 0, 2);
    for (int i = 0; i < 6; i++) admit(&s, 10 + (uint32_t)i, 100 * i, 4, 8);
    sched_pump(&s);
    CHECK(fake.n_frames == 3 && sched_inflight(&s) == 3, "2 stages: %d frames, %d in flight; want 3", fake.n_frames,
          sched_inflight(&s));
    sched_pump(&s);
    CHECK(fake.n_frames == 3, "a second pump sends nothing while full: %d frames", fake.n_frames);
    /* the third batch may queue behind the 8 tokens ahead of it: its deadline counts all 12 */
    const sched_batch *third = s.inflight && s.inflight->next ? s.inflight->next->next : NULL;
    uint64_t want = 1000 + 1000 + (uint64_t)(4000.0 * 0.002 * 12);
    CHECK(third && third->deadline_ms == want, "third batch deadline %llu, want %llu",
          third ? (unsigned long long)third->deadline_ms : 0ull, (unsigned long long)want);
    answer(&s, 0, -1);
    CHECK(sched_inflight(&s) == 3 && fake.n_frames == 4, "one back, one more out: %d in flight, %d frames",
          sched_inflight(&s), fake.n_frames);
    sched_free(&s);

    start(&s, 8, 4, 4, 2, 2);
    for (int i = 0; i < 6; i++) admit(&s, 10 + (uint32_t)i, 100 * i, 4, 8);
    sched_pump(&s);
    CHECK(fake.n_frames == 2, "--inflight 2: %d frames", fake.n_frames);
    sched_free(&s);

    /* 4 decoding streams over 2 stages: at most 2 decode tokens per batch. */
    start(&s, 8, 16, 16, 1, 2);
    for (int i = 0; i < 4; i++) admit(&s, 20 + (uint32_t)i, 10 * i, 1, 8);
    sched_pump(&s);
    CHECK(fake.frames[0].n == 2, "one-token prompts count as decode: first batch %d tokens, want 2",
          fake.frames[0].n);
    sched_free(&s);
}

/* Answers the oldest micro-batch in flight; its frame index, or -1 if none. */
static int answer_oldest(sched *s) {
    if (!s->inflight) return -1;
    for (int k = fake.n_frames - 1; k >= 0; k--)
        if (fake.frames[k].step_id == s->inflight->step_id) {
            answer(s, k, -1);
            return k;
        }
    return -1;
}

/* 8 streams arriving at three moments over 2 stages (the benchmark's case): once
 * every prompt is in, the decode tokens settle into 2 micro-batches of 4 - one
 * per stage - not stages + 1 = 3 smaller ones that cost every stage a third pass
 * per round; while prompts wait, a third batch may be in flight. */
static void test_decode_groups(void) {
    sched s;
    start(&s, 16, 16, 16, 0, 2);
    admit(&s, 30, 10, 4, 40);
    sched_pump(&s);
    for (int i = 1; i < 5; i++) admit(&s, 30 + (uint32_t)i, 10 * i + 100, 4, 40);
    sched_pump(&s);
    for (int i = 5; i < 8; i++) admit(&s, 30 + (uint32_t)i, 10 * i + 100, 4, 40);
    sched_pump(&s);
    CHECK(sched_inflight(&s) == 3, "prompts waiting: %d in flight, want 3 (stages + 1)", sched_inflight(&s));
    int peak = 0, k = -1;
    for (int round = 0; round < 30 && fake.n_frames < MAXREC - 2; round++) {
        k = answer_oldest(&s);
        if (k >= 20 && sched_inflight(&s) > peak) peak = sched_inflight(&s);
    }
    CHECK(k >= 20, "ran %d frames", fake.n_frames);
    int bad = 0;
    for (int f = fake.n_frames - 6; f < fake.n_frames; f++) bad += fake.frames[f].n != 4;
    CHECK(bad == 0 && peak == 2, "decode only: the last 6 batches hold %d %d %d %d %d %d tokens (want 4 each), "
          "%d in flight (want 2)", fake.frames[fake.n_frames - 6].n, fake.frames[fake.n_frames - 5].n,
          fake.frames[fake.n_frames - 4].n, fake.frames[fake.n_frames - 3].n, fake.frames[fake.n_frames - 2].n,
          fake.frames[fake.n_frames - 1].n, peak);
    sched_free(&s);
}

/* requeue_all: the replay re-sends prompt + generated tokens from position 0
 * into a reset slot, and samples the next token at the right step. */
static void test_replay(void) {
    sched s;
    start(&s, 2, 32, 32, 1, 1);
    sched_request *r = admit(&s, 1, 40, 5, 8);
    sched_pump(&s);
    for (int k = 0; k < 3; k++) answer(&s, k, -1); /* 3 tokens generated, the 4th on its way */
    CHECK(r->n_gen == 3 && r->awaiting && r->fed == 8, "before: %d generated, awaiting %d, fed %d", r->n_gen,
          r->awaiting, r->fed);
    int frames = fake.n_frames;
    sched_set_feeding(&s, false);
    sched_requeue_all(&s);
    CHECK(sched_inflight(&s) == 0 && r->fed == 0 && r->slot == -1 && !r->awaiting && r->inflight == 0 &&
              r->state == REQ_QUEUED,
          "after requeue: inflight %d, fed %d, slot %d, awaiting %d, inflight %d, state %d", sched_inflight(&s),
          r->fed, r->slot, r->awaiting, r->inflight, r->state);
    sched_pump(&s);
    CHECK(fake.n_frames == frames, "not feeding: nothing sent");
    sched_set_feeding(&s, true);
    sched_pump(&s);
    CHECK(fake.n_frames == frames + 1, "the replay is one batch: %d frames", fake.n_frames - frames);
    const sent_frame *f = &fake.frames[frames];
    check_frame_shape("replay", f);
    CHECK(f->n == 8 && f->n_resets == 1 && f->resets[0] == r->slot, "replay: %d rows (want 8), %d resets of slot %d",
          f->n, f->n_resets, f->n_resets ? f->resets[0] : -1);
    for (int i = 0; i < f->n && i < 8; i++) {
        int32_t want = i < 5 ? 40 + i : r->gen[i - 5];
        CHECK(f->pos[i] == i && f->toks[i] == want && f->slots[i] == r->slot, "replay row %d: pos %d tok %d, want %d",
              i, f->pos[i], f->toks[i], want);
    }
    CHECK(f->n_samples == 1 && f->sample_index[0] == 7 && f->sample_step[0] == 3,
          "replay: sample row %u step %llu, want 7 and 3", f->n_samples ? f->sample_index[0] : 99,
          f->n_samples ? (unsigned long long)f->sample_step[0] : 99ull);
    answer(&s, frames, -1);
    CHECK(r->n_gen == 4 && r->gen[3] == 507, "after the replay: token %d, want 507", r->n_gen > 3 ? r->gen[3] : -1);
    sched_free(&s);
}

/* A per-slot error ends its request only; a batch error ends all of its. */
static void test_errors(void) {
    sched s;
    start(&s, 4, 32, 32, 1, 1);
    sched_request *a = admit(&s, 1, 10, 3, 8);
    sched_request *b = admit(&s, 2, 20, 3, 8);
    sched_pump(&s);
    int32_t a_slot = a->slot;
    answer(&s, 0, a_slot);
    const sent_status *st = status_of(1);
    CHECK(st && st->code == BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT && strstr(st->msg, "bad sampling"),
          "the bad slot's request ended: %s", st ? st->msg : "(no status)");
    CHECK(!status_of(2) && b->n_gen == 1 && b->state == REQ_ACTIVE, "the other one goes on: %d tokens", b->n_gen);
    CHECK(fake.n_drops == 1 && fake.drops[0] == a_slot, "the ended request's slot %d dropped (%d drops)", a_slot,
          fake.n_drops);
    CHECK(sched_count(&s, REQ_ACTIVE) == 1 && s.slot_req[a_slot] == NULL, "one active request left, slot %d free",
          a_slot);
    /* the whole step fails: every request in it ends with the stage's status */
    Baton__StageResult res = BATON__STAGE_RESULT__INIT;
    res.step_id = fake.frames[1].step_id;
    res.code = BATON__STATUS_CODE__STATUS_DATA_LOSS;
    res.error = "checksum";
    sched_on_result(&s, &res);
    st = status_of(2);
    CHECK(st && st->code == BATON__STATUS_CODE__STATUS_DATA_LOSS, "step error ends the request: %d",
          st ? st->code : -1);
    CHECK(sched_count(&s, REQ_ACTIVE) == 0 && sched_inflight(&s) == 0 && s.reqs == NULL,
          "nothing left: %d active, %d in flight", sched_count(&s, REQ_ACTIVE), sched_inflight(&s));
    sched_free(&s);
}

/* Length and end-of-generation end a request with status OK and a done chunk. */
static void test_finish(void) {
    sched s;
    start(&s, 2, 32, 32, 1, 1);
    admit(&s, 1, 10, 3, 2);
    sched_pump(&s);
    answer(&s, 0, -1);
    answer(&s, 1, -1);
    const sent_status *st = status_of(1);
    CHECK(fake.n_chunks == 2 && !fake.chunks[0].done && fake.chunks[1].done && !strcmp(fake.chunks[1].reason, "length"),
          "max_tokens 2: %d chunks, last done %d reason '%s'", fake.n_chunks, fake.n_chunks ? fake.chunks[1].done : 0,
          fake.n_chunks > 1 ? fake.chunks[1].reason : "");
    CHECK(st && st->code == BATON__STATUS_CODE__STATUS_OK && fake.n_drops == 1 && s.reqs == NULL,
          "ended OK and released");
    CHECK(s.stats.tokens_generated == 2 && s.stats.tokens_prompt == 3 && s.stats.req_by_code[0] == 1,
          "stats: %llu generated, %llu prompt", (unsigned long long)s.stats.tokens_generated,
          (unsigned long long)s.stats.tokens_prompt);
    sched_free(&s);

    start(&s, 2, 32, 32, 1, 1);
    admit(&s, 1, 997, 2, 8); /* prompt 997, 998: the fake samples 500 + 1 */
    s.o.eog[0] = 501;
    sched_pump(&s);
    answer(&s, 0, -1);
    CHECK(fake.n_chunks == 1 && !strcmp(fake.chunks[0].reason, "eos"), "eog token: reason '%s'",
          fake.n_chunks ? fake.chunks[0].reason : "");
    sched_free(&s);
}

/* Request deadlines, step deadlines and their extension after a stall. */
static void test_deadlines(void) {
    sched s;
    start(&s, 2, 32, 32, 1, 1); /* pipeline 0.001 s per token */
    int32_t *ids = malloc(10 * sizeof *ids);
    for (int i = 0; i < 10; i++) ids[i] = i;
    sched_params p = {.max_tokens = 4, .deadline_ms = 100};
    sched_request *r = sched_admit(&s, CLIENT(1), 7, &p, ids, 10);
    sched_pump(&s);
    const sched_batch *b = s.inflight;
    CHECK(b && b->deadline_ms == 1000 + 1000 + 40, "step deadline %llu, want 2040 (now + 1000 + 4 x 10 x 1 ms)",
          b ? (unsigned long long)b->deadline_ms : 0ull);
    CHECK(sched_overdue(&s, 2040) == NULL && sched_overdue(&s, 2041) == b, "overdue only after the deadline");
    sched_extend_deadlines(&s, 500);
    CHECK(sched_overdue(&s, 2041) == NULL && sched_overdue(&s, 2541) == b, "a stall of 500 ms extends it");
    fake.now_us += 99 * 1000;
    sched_tick(&s);
    CHECK(!status_of(7), "not yet at 99 ms");
    fake.now_us += 1000;
    sched_tick(&s);
    const sent_status *st = status_of(7);
    CHECK(st && st->code == BATON__STATUS_CODE__STATUS_DEADLINE_EXCEEDED && st->client == CLIENT(1),
          "deadline exceeded at 100 ms: %d", st ? st->code : -1);
    CHECK(r->state == REQ_DONE && s.reqs == r && fake.n_drops == 0,
          "ended but kept until its batch is back (state %d)", r->state);
    answer(&s, 0, -1);
    CHECK(s.reqs == NULL && fake.n_drops == 1 && fake.n_chunks == 0, "released once back, no token streamed");
    sched_free(&s);
}

/* Admission checks, cancel, and fail_all. */
static void test_admission_and_cancel(void) {
    sched s;
    start(&s, 1, 32, 32, 1, 1);
    sched_params p = {.max_tokens = 4};
    int32_t *bad = malloc(2 * sizeof *bad);
    bad[0] = 1, bad[1] = 1000;
    CHECK(sched_admit(&s, CLIENT(0), 1, &p, bad, 2) == NULL && status_of(1) &&
              status_of(1)->code == BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT,
          "an id outside the vocabulary is refused");
    p.max_tokens = 510;
    int32_t *ids = malloc(3 * sizeof *ids);
    ids[0] = ids[1] = ids[2] = 1;
    CHECK(sched_admit(&s, CLIENT(0), 2, &p, ids, 3) == NULL && status_of(2) &&
              status_of(2)->code == BATON__STATUS_CODE__STATUS_OUT_OF_RANGE,
          "prompt + max_tokens beyond the context is refused");
    sched_request *a = admit(&s, 3, 1, 3, 4);
    sched_request *b = admit(&s, 4, 1, 3, 4);
    sched_pump(&s);
    CHECK(a->state == REQ_ACTIVE && b->state == REQ_QUEUED && b->slot == -1, "one slot: the second waits");
    CHECK(sched_client_busy(&s, CLIENT(0)) && !sched_client_busy(&s, CLIENT(1)), "client busy");
    sched_cancel(&s, CLIENT(0), 4, false);
    CHECK(status_of(4) && status_of(4)->code == BATON__STATUS_CODE__STATUS_CANCELLED && a->state == REQ_ACTIVE,
          "cancel ends only that call");
    sched_fail_all(&s, BATON__STATUS_CODE__STATUS_UNAVAILABLE, "no plan");
    CHECK(status_of(3) && status_of(3)->code == BATON__STATUS_CODE__STATUS_UNAVAILABLE && s.reqs == NULL &&
              sched_inflight(&s) == 0,
          "fail_all ends and frees everything");
    sched_free(&s);
}

int main(void) {
    test_chunks_and_decode_first();
    test_inflight_limits();
    test_decode_groups();
    test_replay();
    test_errors();
    test_finish();
    test_deadlines();
    test_admission_and_cancel();
    printf("test_sched: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
