/* api_parse.c - the OpenAI-compatible API's request bodies (POST /v1/chat/completions,
 * /v1/completions) into GenerateRequests. See api_parse.h. No HTTP here: api.c
 * hands it the body h2o read, and tests/fuzz/fuzz_api_body.c any bytes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api_parse.h"
#include "coord.h"

#define MAX_STOPS 4   /* as OpenAI's API */

static int perr(api_parse_err *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int perr(api_parse_err *e, int status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    e->code = code;
    return -1;
}

/* The numeric parameters: [lo, hi], integer or not, and where they go. */
typedef enum num_slot {
    N_TEMPERATURE, N_TOP_P, N_TOP_K, N_MIN_P, N_PRESENCE, N_FREQUENCY, N_REPETITION, N_SEED, N_MAX_TOKENS,
    N_MAX_COMPLETION, N_N, N_COUNT
} num_slot;

static const struct {
    const char *name;
    double lo, hi;
    bool integer;
} num_params[N_COUNT] = {
    [N_TEMPERATURE] = {"temperature", 0, 2, false},
    [N_TOP_P] = {"top_p", 0, 1, false},
    [N_TOP_K] = {"top_k", 0, 1e9, true},
    [N_MIN_P] = {"min_p", 0, 1, false},
    [N_PRESENCE] = {"presence_penalty", -2, 2, false},
    [N_FREQUENCY] = {"frequency_penalty", -2, 2, false},
    [N_REPETITION] = {"repetition_penalty", 0, 10, false},
    [N_SEED] = {"seed", -9.2e18, 9.2e18, true},
    [N_MAX_TOKENS] = {"max_tokens", 1, 1e9, true},
    [N_MAX_COMPLETION] = {"max_completion_tokens", 1, 1e9, true},
    [N_N] = {"n", 1, 1e9, true},
};

typedef struct api_params {
    double v[N_COUNT];
    bool set[N_COUNT];
    json_int_t seed;
} api_params;

static int parse_numbers(json_t *body, api_params *p, api_parse_err *e) {
    for (int i = 0; i < N_COUNT; i++) {
        json_t *v = json_object_get(body, num_params[i].name);
        if (!v || json_is_null(v)) continue;
        const char *name = num_params[i].name;
        if (num_params[i].integer ? !json_is_integer(v) : !json_is_number(v))
            return perr(e, 400, name, "invalid_type", "%s: expected %s", name,
                        num_params[i].integer ? "an integer" : "a number");
        double x = json_number_value(v);
        if (!isfinite(x) || x < num_params[i].lo || x > num_params[i].hi)
            return perr(e, 400, name, "invalid_value", "%s: %g is outside [%g, %g]", name, x, num_params[i].lo,
                        num_params[i].hi);
        p->v[i] = x;
        p->set[i] = true;
        if (i == N_SEED) p->seed = json_integer_value(v);
    }
    if (p->set[N_N] && p->v[N_N] != 1) return perr(e, 400, "n", "unsupported_value", "n: only n=1 is supported");
    return 0;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts (malloc'd). */
static char *message_text(json_t *content, size_t i, api_parse_err *e) {
    if (!content || json_is_null(content)) return strdup("");
    if (json_is_string(content)) return strndup(json_string_value(content), json_string_length(content));
    if (!json_is_array(content)) {
        perr(e, 400, "messages", "invalid_type", "messages[%zu].content: expected a string or an array of text parts", i);
        return NULL;
    }
    api_buf b = {0};
    size_t j;
    json_t *part;
    json_array_foreach(content, j, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            perr(e, 400, "messages", "unsupported_value", "messages[%zu].content[%zu]: only text parts are supported",
                 i, j);
            api_buf_free(&b);
            return NULL;
        }
        api_buf_add(&b, json_string_value(text), json_string_length(text));
    }
    return b.p ? b.p : strdup("");
}

static const struct {
    const char *in, *role;
} roles[] = {{"system", "system"}, {"developer", "system"}, {"user", "user"}, {"assistant", "assistant"}};

static int parse_messages(json_t *msgs, Baton__GenerateRequest *g, api_parse_err *e) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return perr(e, 400, "messages", "invalid_type", "messages: expected a non-empty array of messages");
    size_t n = json_array_size(msgs);
    g->chat = calloc(n, sizeof *g->chat);
    if (!g->chat) return perr(e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i), *role = json_object_get(m, "role");
        const char *r = NULL;
        for (size_t k = 0; json_is_string(role) && k < sizeof roles / sizeof *roles; k++)
            if (!strcmp(json_string_value(role), roles[k].in)) r = roles[k].role;
        if (!json_is_object(m) || !r)
            return perr(e, 400, "messages", "invalid_value",
                        "messages[%zu]: expected an object with role system, user or assistant", i);
        Baton__ChatMessage *cm = malloc(sizeof *cm);
        if (!cm) return perr(e, 500, NULL, NULL, "out of memory");
        baton__chat_message__init(cm);
        g->chat[g->n_chat++] = cm;
        if (!(cm->role = strdup(r))) return perr(e, 500, NULL, NULL, "out of memory");
        if (!(cm->content = message_text(json_object_get(m, "content"), i, e))) return e->status ? -1 : perr(e, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

/* prompt: a string, an array of one string, or an array of token ids. */
static int parse_prompt(json_t *prompt, Baton__GenerateRequest *g, api_parse_err *e) {
    if (json_is_array(prompt) && json_array_size(prompt) == 1 && json_is_string(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt)) {
        if (!json_string_length(prompt)) return perr(e, 400, "prompt", "invalid_value", "prompt: empty");
        if (!(g->text = strndup(json_string_value(prompt), json_string_length(prompt))))
            return perr(e, 500, NULL, NULL, "out of memory");
        return 0;
    }
    if (!json_is_array(prompt) || json_array_size(prompt) == 0)
        return perr(e, 400, "prompt", "invalid_type", "prompt: expected a string or an array of token ids");
    size_t n = json_array_size(prompt);
    if (!(g->tokens = malloc(n * sizeof *g->tokens))) return perr(e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(prompt, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return perr(e, 400, "prompt", "invalid_type",
                        "prompt[%zu]: expected a token id (only one prompt per request is supported)", i);
        g->tokens[g->n_tokens++] = (int32_t)json_integer_value(v);
    }
    return 0;
}

static int parse_stop(json_t *stop, Baton__GenerateRequest *g, api_parse_err *e) {
    if (!stop || json_is_null(stop)) return 0;
    json_t *one = json_is_string(stop) ? stop : NULL;
    size_t n = one ? 1 : json_is_array(stop) ? json_array_size(stop) : 0;
    if (!one && !json_is_array(stop)) return perr(e, 400, "stop", "invalid_type", "stop: expected a string or an array of strings");
    if (n > MAX_STOPS) return perr(e, 400, "stop", "invalid_value", "stop: at most %d strings", MAX_STOPS);
    if (!n) return 0;
    if (!(g->stop = calloc(n, sizeof *g->stop))) return perr(e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = one ? one : json_array_get(stop, i);
        if (!json_is_string(s) || !json_string_length(s))
            return perr(e, 400, "stop", "invalid_type", "stop[%zu]: expected a non-empty string", i);
        if (!(g->stop[g->n_stop++] = strndup(json_string_value(s), json_string_length(s))))
            return perr(e, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

/* Type checks of the other known fields: name, jansson type test, what is expected. */
static const struct {
    const char *name;
    int (*is)(const json_t *);
    const char *expect;
} typed_fields[] = {
    {"model", NULL, "a string"},       {"stream", NULL, "a boolean"}, {"stream_options", NULL, "an object"},
    {"reasoning_format", NULL, "a string"}, {"ignore_eos", NULL, "a boolean"},
};

static int check_type(json_t *body, const char *name, api_parse_err *e) {
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    for (size_t i = 0; i < sizeof typed_fields / sizeof *typed_fields; i++) {
        if (strcmp(typed_fields[i].name, name) != 0) continue;
        const char *x = typed_fields[i].expect;
        bool ok = !strcmp(x, "a string") ? json_is_string(v) : !strcmp(x, "a boolean") ? json_is_boolean(v) : json_is_object(v);
        if (!ok) return perr(e, 400, name, "invalid_type", "%s: expected %s", name, x);
    }
    return 0;
}

/* The body's object into a new GenerateRequest and f. */
static Baton__GenerateRequest *parse_request(json_t *body, api_kind kind, const char *model_id, api_body_flags *f,
                                             api_parse_err *e) {
    if (!json_is_object(body)) {
        perr(e, 400, NULL, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    for (size_t i = 0; i < sizeof typed_fields / sizeof *typed_fields; i++)
        if (check_type(body, typed_fields[i].name, e) != 0) return NULL;
    json_t *model = json_object_get(body, "model");
    if (json_is_string(model) && strcmp(json_string_value(model), model_id) != 0) {
        perr(e, 404, "model", "model_not_found", "The model '%s' does not exist (this server has '%s')",
             json_string_value(model), model_id);
        return NULL;
    }
    api_params p = {0};
    if (parse_numbers(body, &p, e) != 0) return NULL;
    Baton__GenerateRequest *g = malloc(sizeof *g);
    Baton__SamplingParams *sp = malloc(sizeof *sp);
    if (!g || !sp) {
        free(g), free(sp);
        perr(e, 500, NULL, NULL, "out of memory");
        return NULL;
    }
    baton__generate_request__init(g);
    baton__sampling_params__init(sp);
    g->sampling = sp;
    sp->temperature = p.set[N_TEMPERATURE] ? (float)p.v[N_TEMPERATURE] : 1.0f; /* OpenAI's default */
    sp->top_p = p.set[N_TOP_P] ? (float)p.v[N_TOP_P] : 1.0f;
    sp->top_k = (int32_t)p.v[N_TOP_K];
    sp->min_p = (float)p.v[N_MIN_P];
    sp->presence_penalty = (float)p.v[N_PRESENCE];
    sp->frequency_penalty = (float)p.v[N_FREQUENCY];
    sp->repetition_penalty = (float)p.v[N_REPETITION];
    sp->seed = p.set[N_SEED] ? (uint64_t)p.seed : 0; /* none: the caller picks one (f->seed_set) */
    f->seed_set = p.set[N_SEED];
    g->max_tokens = p.set[N_MAX_COMPLETION] ? (uint32_t)p.v[N_MAX_COMPLETION]
                    : p.set[N_MAX_TOKENS]   ? (uint32_t)p.v[N_MAX_TOKENS]
                                            : 0; /* 0 here: up to the end of the context (set once tokenised) */
    g->ignore_eos = json_is_true(json_object_get(body, "ignore_eos"));
    int rc = kind == API_CHAT ? parse_messages(json_object_get(body, "messages"), g, e)
                              : parse_prompt(json_object_get(body, "prompt"), g, e);
    if (rc == 0) rc = parse_stop(json_object_get(body, "stop"), g, e);
    if (rc != 0) {
        baton__generate_request__free_unpacked(g, NULL);
        return NULL;
    }
    f->stream = json_is_true(json_object_get(body, "stream"));
    f->include_usage = json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    json_t *rf = json_object_get(body, "reasoning_format");
    const char *fmt = json_is_string(rf) ? json_string_value(rf) : "separate";
    if (strcmp(fmt, "separate") != 0 && strcmp(fmt, "inline") != 0 && strcmp(fmt, "none") != 0) {
        perr(e, 400, "reasoning_format", "invalid_value", "reasoning_format: expected separate or inline");
        baton__generate_request__free_unpacked(g, NULL);
        return NULL;
    }
    f->split_think = kind == API_CHAT && !strcmp(fmt, "separate");
    return g;
}


Baton__GenerateRequest *api_parse_body(const void *bytes, size_t len, api_kind kind, const char *model_id,
                                       api_body_flags *f, api_parse_err *e) {
    *f = (api_body_flags){0};
    *e = (api_parse_err){0};
    json_error_t jerr;
    json_t *body = json_loadb(bytes, len, 0, &jerr);
    if (!body) {
        perr(e, 400, NULL, "invalid_json", "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    Baton__GenerateRequest *g = parse_request(body, kind, model_id, f, e);
    json_decref(body);
    return g;
}
