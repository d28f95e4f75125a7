/* api_parse.h - a request body of the OpenAI-compatible API (api.c) read into a
 * GenerateRequest: the parsing part of POST /v1/chat/completions and
 * /v1/completions, apart from h2o so that tests and the fuzz target
 * (tests/fuzz/fuzz_api_body.c) can call it on any bytes.
 *
 *     api_body_flags f; api_parse_err e;
 *     Baton__GenerateRequest *g = api_parse_body(body, len, API_CHAT, "qwq-32b", &f, &e);
 *     if (!g) send_error(req, e.status, e.msg, e.param, e.code);   // the HTTP error to answer
 */
#ifndef BATON_API_PARSE_H
#define BATON_API_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "baton.pb-c.h"

typedef enum api_kind { API_CHAT, API_COMPLETION } api_kind;

/* Why a body was refused: the HTTP status, OpenAI's message, param and code (NULL or static strings). */
typedef struct api_parse_err {
    int status;
    char msg[300];
    const char *param, *code;
} api_parse_err;

/* What the body says beyond the GenerateRequest. */
typedef struct api_body_flags {
    bool stream, include_usage; /* "stream", "stream_options": {"include_usage"} */
    bool split_think;           /* a chat answer's reasoning goes apart (reasoning_format "separate") */
    bool seed_set;              /* "seed" given; else sampling->seed is 0 and the caller picks one */
} api_body_flags;

/* Parses len bytes of JSON as a body of kind `kind`; "model", when given, must
 * be model_id. A new GenerateRequest (free with
 * baton__generate_request__free_unpacked; max_tokens 0 when not given) and *f,
 * or NULL with *e set: 400 for malformed JSON, wrong types and values out of
 * range, 404 for another model, 500 when out of memory. */
Baton__GenerateRequest *api_parse_body(const void *body, size_t len, api_kind kind, const char *model_id,
                                       api_body_flags *f, api_parse_err *e);

#endif
