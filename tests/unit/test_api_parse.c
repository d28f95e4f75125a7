/* test_api_parse.c - the HTTP API's body parser (coordinator/api_parse.h, the
 * function POST /v1/chat/completions and /v1/completions call, and the fuzz
 * target fuzz_api_body): accepted bodies give the GenerateRequest and flags
 * they say; refused ones the HTTP status, param, code and message the API
 * answered before the parser was split out of api.c. */
#include <stdlib.h>
#include <string.h>

#include "api_parse.h"
#include "check.h"

typedef struct {
    api_kind kind;
    const char *body;
    int status;                     /* 0: accepted */
    const char *param, *code, *msg; /* msg: a prefix */
} parse_case;

static const parse_case cases[] = {
    {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL, NULL, NULL},
    {API_COMPLETION, "{\"prompt\":[1,2,3]}", 0, NULL, NULL, NULL},
    {API_CHAT, "{\"messages\":[", 400, NULL, "invalid_json", "malformed JSON: "},
    {API_CHAT, "[]", 400, NULL, "invalid_json", "the body must be a JSON object"},
    {API_COMPLETION, "{\"model\":\"other\",\"prompt\":\"x\"}", 404, "model", "model_not_found",
     "The model 'other' does not exist (this server has 'm1')"},
    {API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":3}", 400, "temperature", "invalid_value",
     "temperature: 3 is outside [0, 2]"},
    {API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens", "invalid_type",
     "max_tokens: expected an integer"},
    {API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", "invalid_value",
     "stop: at most 4 strings"},
    {API_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages", "invalid_value",
     "messages[0]: expected an object"},
    {API_COMPLETION, "{\"prompt\":\"\"}", 400, "prompt", "invalid_value", "prompt: empty"},
    {API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", 400, "stream",
     "invalid_type", "stream: expected a boolean"},
};

static int same(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

int main(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const parse_case *t = &cases[i];
        api_body_flags f;
        api_parse_err e;
        Baton__GenerateRequest *g = api_parse_body(t->body, strlen(t->body), t->kind, "m1", &f, &e);
        CHECK(!g == (t->status != 0), "case %zu: %s", i, g ? "accepted" : e.msg);
        if (g) baton__generate_request__free_unpacked(g, NULL);
        if (!t->status || g) continue;
        CHECK(e.status == t->status, "case %zu: status %d, want %d", i, e.status, t->status);
        CHECK(same(e.param, t->param) && same(e.code, t->code), "case %zu: param/code %s/%s", i,
              e.param ? e.param : "-", e.code ? e.code : "-");
        CHECK(!strncmp(e.msg, t->msg, strlen(t->msg)), "case %zu: message '%s'", i, e.msg);
    }
    /* everything a full chat body says */
    const char *full = "{\"model\":\"m1\",\"messages\":[{\"role\":\"developer\",\"content\":\"s\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"stop\":\"\\n\",\"seed\":7,"
                       "\"temperature\":0.5,\"top_k\":40,\"max_tokens\":9,\"max_completion_tokens\":5}";
    api_body_flags f;
    api_parse_err e;
    Baton__GenerateRequest *g = api_parse_body(full, strlen(full), API_CHAT, "m1", &f, &e);
    CHECK(g != NULL, "full chat body refused: %s", e.msg);
    if (g) {
        CHECK(g->n_chat == 2 && !strcmp(g->chat[0]->role, "system") && !strcmp(g->chat[1]->content, "ab"),
              "messages read wrong");
        CHECK(g->n_stop == 1 && !strcmp(g->stop[0], "\n"), "stop read wrong");
        CHECK(g->max_tokens == 5, "max_completion_tokens wins: %u", g->max_tokens);
        CHECK(g->sampling->seed == 7 && f.seed_set && g->sampling->top_k == 40 && g->sampling->temperature == 0.5f,
              "sampling read wrong");
        CHECK(f.stream && f.include_usage && f.split_think, "flags read wrong");
        baton__generate_request__free_unpacked(g, NULL);
    }
    g = api_parse_body("{\"prompt\":\"x\"}", 14, API_COMPLETION, "m1", &f, &e);
    CHECK(g && !f.seed_set && g->sampling->seed == 0 && !f.split_think && g->sampling->temperature == 1.0f,
          "defaults: no seed (the caller picks), temperature 1");
    if (g) baton__generate_request__free_unpacked(g, NULL);
    printf("test_api_parse: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
