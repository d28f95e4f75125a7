/* fuzz_tok_encode.c - the tokenizer (model/tokenizer.c) on any text: encode
 * (plain and with special tokens), normalize, decode, the streaming decoder and
 * the chat template. The tokenizer is the fuzz model's (fuzz_model_path), or a
 * tokenizer.json named by $BATON_FUZZ_TOKENIZER (e.g. Qwen's, for long runs).
 * Input: byte 0 picks the mode, the rest is the text. Checks: every id is in the
 * vocabulary, and decoding valid UTF-8 text encoded plainly gives it back after
 * normalisation. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "gguf.h"
#include "tokenizer.h"

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[256];
    const char *json = getenv("BATON_FUZZ_TOKENIZER");
    if (json && *json) {
        tok = tok_load_json(json, err, sizeof err);
    } else {
        gguf_file *f = gguf_open(fuzz_model_path(), err, sizeof err);
        if (f) tok = tok_load_gguf(f, err, sizeof err);
        /* the tokenizer copies what it needs; the file may go */
        gguf_close(f);
    }
    if (!tok) {
        fprintf(stderr, "fuzz_tok_encode: no tokenizer: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[256];
    int32_t *ids = NULL;
    tok_special_mode mode = (ctl & 1) ? TOK_SPECIAL_PARSE : TOK_SPECIAL_PLAIN;
    int64_t n = tok_encode_alloc(tok, text, len, mode, &ids, err, sizeof err);
    int32_t vocab = tok_vocab_size(tok);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
    if (n >= 0) {
        size_t cap = len * 4 + 64;
        char *dec = malloc(cap), *norm = malloc(cap);
        int64_t dl = tok_decode(tok, ids, n, dec, cap);
        int64_t nl = tok_normalize(tok, text, len, norm, cap);
        /* plain mode: decode(encode(x)) == normalize(x) */
        if (mode == TOK_SPECIAL_PLAIN && dl >= 0 && nl >= 0 && (size_t)dl < cap && (size_t)nl < cap &&
            (dl != nl || memcmp(dec, norm, (size_t)dl) != 0)) {
            fprintf(stderr, "round trip differs: %lld vs %lld bytes\n", (long long)dl, (long long)nl);
            abort();
        }
        tok_stream *s = tok_stream_new(tok);
        size_t streamed = 0;
        for (int64_t i = 0; s && i < n; i++) {
            const char *o;
            size_t ol;
            if (tok_stream_feed(s, ids[i], &o, &ol) >= 0) streamed += ol;
        }
        if (s) {
            const char *o;
            size_t ol;
            tok_stream_flush(s, &o, &ol);
            streamed += ol;
            tok_stream_free(s);
        }
        (void)streamed;
        free(dec);
        free(norm);
    }
    free(ids);
    if (ctl & 2) { /* the text as a chat message */
        char *content = malloc(len + 1);
        memcpy(content, text, len);
        content[len] = 0;
        chat_message m[2] = {{.role = "system", .content = "be brief"}, {.role = (ctl & 4) ? "user" : "assistant",
                                                                      .content = content}};
        int32_t *cids = NULL;
        int64_t cn = chat_encode_alloc(tok, m, 2, true, TOK_SPECIAL_PLAIN, &cids, err, sizeof err);
        for (int64_t i = 0; i < cn; i++)
            if (cids[i] < 0 || cids[i] >= vocab) abort();
        free(cids);
        free(content);
    }
    return 0;
}
