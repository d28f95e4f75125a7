/* test_api_text.c - the HTTP API's <think> splitter (coordinator/api_text.c): a chat
 * answer cut into pieces at every possible place (and one byte at a time) gives the
 * same reasoning and content as when it comes whole; the end tag split across pieces
 * is found and never leaks into either part; a partial tag that turns out not to be
 * one is given back as reasoning; newlines right after the tag are dropped; text
 * without the tag is all reasoning (held bytes flushed at the end); content mode
 * passes everything through. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "coord.h"

typedef struct {
    const char *answer, *reasoning, *content;
} think_case;

static const think_case cases[] = {
    {"let me think</think>\n\nThe answer is 4.", "let me think", "The answer is 4."},
    {"</think>Yes", "", "Yes"},
    {"a < b and </thin k> is no tag</think>\r\nok", "a < b and </thin k> is no tag", "ok"},
    {"ends with a partial </thi", "ends with a partial </thi", ""},
    {"no tag at all, only reasoning", "no tag at all, only reasoning", ""},
    {"two </think>tags </think> here", "two ", "tags </think> here"},
    {"ünïcödé 🎉 </</think>\n中文", "ünïcödé 🎉 </", "中文"},
    {"</think>\n\n\n", "", ""},
};

/* Feeds answer in pieces cut at the given offsets (cuts[0..n), increasing). */
static void run(const char *answer, const size_t *cuts, int n, api_buf *r, api_buf *c) {
    api_think t;
    api_think_init(&t, true);
    size_t at = 0, len = strlen(answer);
    for (int i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : len;
        CHECK(api_think_feed(&t, answer + at, end - at, r, c) == 0, "feed");
        at = end;
    }
    CHECK(api_think_flush(&t, r) == 0, "flush");
}

static int same(const api_buf *b, const char *want) {
    return b->len == strlen(want) && (!b->len || memcmp(b->p, want, b->len) == 0);
}

int main(void) {
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const think_case *tc = &cases[k];
        size_t len = strlen(tc->answer);
        /* whole, then cut once at every place, then twice at every pair of places */
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = {a, b};
                api_buf r = {0}, c = {0};
                run(tc->answer, cuts, 2, &r, &c);
                CHECK(same(&r, tc->reasoning) && same(&c, tc->content),
                      "case %zu cut at %zu,%zu: reasoning '%s' content '%s', want '%s' / '%s'", k, a, b,
                      r.p ? r.p : "", c.p ? c.p : "", tc->reasoning, tc->content);
                api_buf_free(&r);
                api_buf_free(&c);
            }
        /* one byte at a time */
        size_t *cuts = malloc(len * sizeof *cuts);
        for (size_t i = 0; i < len; i++) cuts[i] = i;
        api_buf r = {0}, c = {0};
        run(tc->answer, cuts, (int)len, &r, &c);
        CHECK(same(&r, tc->reasoning) && same(&c, tc->content), "case %zu byte by byte: '%s' / '%s'", k,
              r.p ? r.p : "", c.p ? c.p : "");
        api_buf_free(&r);
        api_buf_free(&c);
        free(cuts);
    }
    /* content mode (reasoning kept inline or not opened): all text is content */
    api_think t;
    api_think_init(&t, false);
    api_buf r = {0}, c = {0};
    api_think_feed(&t, "<think>x</think>y", 17, &r, &c);
    api_think_flush(&t, &r);
    CHECK(r.len == 0 && same(&c, "<think>x</think>y"), "content mode: '%s' / '%s'", r.p ? r.p : "", c.p ? c.p : "");
    api_buf_free(&r);
    api_buf_free(&c);
    /* a long piece after held bytes (the joined path) */
    api_think_init(&t, true);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big + 500, "</think>", 8);
    api_think_feed(&t, "abc</th", 7, &r, &c);
    api_think_feed(&t, "ink>", 4, &r, &c);
    CHECK(same(&r, "abc") && c.len == 0, "tag split 7+4");
    api_buf_free(&r);
    api_think_init(&t, true);
    api_think_feed(&t, "q</", 3, &r, &c);
    api_think_feed(&t, big, strlen(big), &r, &c);
    CHECK(r.len == 1 + 2 + 500 && c.len == 999 - 508, "held bytes + long piece: %zu / %zu", r.len, c.len);
    api_buf_free(&r);
    api_buf_free(&c);
    printf("test_api_text: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
