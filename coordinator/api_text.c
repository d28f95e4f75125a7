/* api_text.c - text helpers of the HTTP API (api.c) that need no HTTP server:
 * a growable byte buffer and the splitter of a chat answer into its reasoning
 * (QwQ's <think> part) and its content. See coord.h. */
#include <stdlib.h>
#include <string.h>

#include "coord.h"

#define THINK_END "</think>"
#define THINK_END_LEN 8

int api_buf_add(api_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

void api_buf_free(api_buf *b) {
    free(b->p);
    *b = (api_buf){0};
}

void api_think_init(api_think *t, bool in_reasoning) {
    *t = (api_think){.state = in_reasoning ? API_THINK_REASONING : API_THINK_CONTENT};
}

/* Content text after the end tag: newlines right after it are dropped (the chat
 * template drops them when the answer goes back into a chat). */
static int add_content(api_think *t, const char *s, size_t n, api_buf *content) {
    if (t->state == API_THINK_AFTER_TAG) {
        while (n && (*s == '\n' || *s == '\r')) s++, n--;
        if (!n) return 0;
        t->state = API_THINK_CONTENT;
    }
    return api_buf_add(content, s, n);
}

int api_think_feed(api_think *t, const char *s, size_t n, api_buf *reasoning, api_buf *content) {
    if (t->state != API_THINK_REASONING) return add_content(t, s, n, content);
    /* the held-back bytes (a prefix of the tag) come first */
    char tmp[THINK_END_LEN + 256];
    api_buf joined = {0};
    const char *p = s;
    size_t len = n;
    if (t->n_held) {
        if (t->n_held + n <= sizeof tmp) {
            memcpy(tmp, t->held, t->n_held);
            memcpy(tmp + t->n_held, s, n);
            p = tmp;
        } else {
            if (api_buf_add(&joined, t->held, t->n_held) != 0 || api_buf_add(&joined, s, n) != 0) {
                api_buf_free(&joined);
                return -1;
            }
            p = joined.p;
        }
        len = t->n_held + n;
        t->n_held = 0;
    }
    int rc = 0;
    const char *end = memmem(p, len, THINK_END, THINK_END_LEN);
    if (end) {
        rc = api_buf_add(reasoning, p, (size_t)(end - p));
        t->state = API_THINK_AFTER_TAG;
        const char *rest = end + THINK_END_LEN;
        if (rc == 0) rc = add_content(t, rest, (size_t)(p + len - rest), content);
    } else {
        /* keep back the longest suffix that could begin the tag */
        size_t keep = len < THINK_END_LEN - 1 ? len : THINK_END_LEN - 1;
        while (keep && memcmp(p + len - keep, THINK_END, keep) != 0) keep--;
        rc = api_buf_add(reasoning, p, len - keep);
        memcpy(t->held, p + len - keep, keep);
        t->n_held = keep;
    }
    api_buf_free(&joined);
    return rc;
}

int api_think_flush(api_think *t, api_buf *reasoning) {
    int rc = t->n_held ? api_buf_add(reasoning, t->held, t->n_held) : 0;
    t->n_held = 0;
    return rc;
}
