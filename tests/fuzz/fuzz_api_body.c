/* fuzz_api_body.c - the OpenAI-compatible API's request bodies: any bytes as
 * the body of POST /v1/chat/completions and of POST /v1/completions, through
 * api_parse_body (coordinator/api_parse.h), the function the HTTP handler
 * (api.c serve_generate) calls on the body h2o read. Checks what the handler
 * relies on: a request it accepts has a prompt of its kind, at most 4 stop
 * strings, sampling parameters within their ranges, and packs as a protobuf
 * message; a refusal is an HTTP status (400, 404 or 500) with a message. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_parse.h"

#define FUZZ_MODEL_ID "fuzz-tiny"

static void check(const uint8_t *data, size_t size, api_kind kind) {
    api_body_flags f;
    api_parse_err e;
    Baton__GenerateRequest *g = api_parse_body(data, size, kind, FUZZ_MODEL_ID, &f, &e);
    if (!g) {
        if ((e.status != 400 && e.status != 404 && e.status != 500) || !e.msg[0] || !memchr(e.msg, 0, sizeof e.msg))
            abort();
        return;
    }
    bool text = g->text && g->text[0]; /* an unset string field is protobuf-c's "" */
    if (kind == API_CHAT ? !g->n_chat || text || g->n_tokens : g->n_chat || !(g->n_tokens || text)) abort();
    for (size_t i = 0; i < g->n_chat; i++)
        if (!g->chat[i]->role || !g->chat[i]->content) abort();
    if (g->n_stop > 4) abort();
    for (size_t i = 0; i < g->n_stop; i++)
        if (!g->stop[i] || !g->stop[i][0]) abort();
    const Baton__SamplingParams *sp = g->sampling;
    if (!sp || !(sp->temperature >= 0 && sp->temperature <= 2) || !(sp->top_p >= 0 && sp->top_p <= 1) ||
        sp->top_k < 0 || !(sp->min_p >= 0 && sp->min_p <= 1) || !(sp->repetition_penalty >= 0 && sp->repetition_penalty <= 10))
        abort();
    if (!f.seed_set && sp->seed) abort();
    if (f.split_think && kind != API_CHAT) abort();
    size_t n = baton__generate_request__get_packed_size(g);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || baton__generate_request__pack(g, buf) != n) abort();
    Baton__GenerateRequest *back = baton__generate_request__unpack(NULL, n, buf);
    if (!back || back->n_chat != g->n_chat || back->n_tokens != g->n_tokens || back->n_stop != g->n_stop) abort();
    baton__generate_request__free_unpacked(back, NULL);
    free(buf);
    baton__generate_request__free_unpacked(g, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check(data, size, API_CHAT);
    check(data, size, API_COMPLETION);
    return 0;
}
