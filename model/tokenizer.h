/* tokenizer.h - byte-level BPE as Qwen2 models use it, and the ChatML template.
 *
 *     tokenizer *tok = tok_load_gguf(file, err, sizeof err);   // or tok_load_json("tokenizer.json", ...)
 *     int32_t ids[256];
 *     int64_t n = tok_encode(tok, text, strlen(text), TOK_SPECIAL_PLAIN, ids, 256);
 *
 * The pre-tokenizer is the split pattern from the tokenizer (tokenizer.json's
 * Split regex, or Qwen2's when loaded from GGUF), run with PCRE2 (JIT). Special
 * and added tokens (<|im_start|>, <|im_end|>, <|endoftext|>, <think>, ...) are
 * matched in text only with TOK_SPECIAL_PARSE; TOK_SPECIAL_PLAIN treats them as
 * ordinary characters (the default for untrusted user content). Text is put in
 * Unicode NFC first when the tokenizer says so (Qwen's does), as Hugging Face does.
 *
 * Callers that do not know how many ids a text makes use the allocating entry
 * points (tok_encode_alloc, chat_encode_alloc) rather than guessing a capacity.
 */
#ifndef BATON_TOKENIZER_H
#define BATON_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tokenizer tokenizer;

typedef enum tok_special_mode {
    TOK_SPECIAL_PLAIN = 0, /* special-token strings are plain text */
    TOK_SPECIAL_PARSE = 1, /* special-token strings become their ids (trusted text) */
} tok_special_mode;

/* Load from a GGUF's tokenizer.ggml.* keys (model "gpt2"; pre "qwen2" gives Qwen2's
 * split pattern and NFC, "gpt2"/"default" GPT-2's; tokens, token_type, merges,
 * eos_token_id). The tokenizer copies what it needs: f may be closed afterwards.
 * NULL with a one-line message in err. */
tokenizer *tok_load_gguf(const gguf_file *f, char *err, size_t errlen);
/* Load a Hugging Face tokenizer.json: model.vocab, model.merges ("a b" or [a, b]),
 * added_tokens, normalizer (none or NFC), pre_tokenizer Split regex (Isolated).
 * NULL with a one-line message in err. */
tokenizer *tok_load_json(const char *path, char *err, size_t errlen);
void tok_free(tokenizer *t); /* accepts NULL */

int32_t tok_vocab_size(const tokenizer *t);
int32_t tok_eos(const tokenizer *t);                 /* <|im_end|> for Qwen chat models */
/* Ids that end generation (<|im_end|>, <|endoftext|>); returns how many, up to max. */
int tok_eog_ids(const tokenizer *t, int32_t *ids, int max);
/* Id of the token whose bytes are exactly `piece` (raw text, e.g. " hello" or
 * "<|im_end|>", not the GPT-2 "Ġhello" spelling), or -1. */
int32_t tok_find(const tokenizer *t, const char *piece);
/* True for control tokens (<|im_start|>, <|im_end|>, <|endoftext|>, ...). */
bool tok_is_special(const tokenizer *t, int32_t id);
/* The reason for the last failure of a tok_* or chat_* call in this thread. */
const char *tok_last_error(void);

/* Encode len bytes of text. Writes up to max ids; returns the total number of ids
 * the text needs (so a return > max means "call again with more room"), or -1 with
 * the reason in tok_last_error if the input cannot be encoded. Invalid UTF-8 is
 * encoded byte by byte (each invalid byte becomes its byte token). */
int64_t tok_encode(const tokenizer *t, const char *text, size_t len, tok_special_mode mode,
                   int32_t *ids, int64_t max);

/* tok_encode into a malloc'd array sized to fit (*out; free() it). Returns the
 * number of ids, or -1 with a one-line message in err (*out NULL). */
int64_t tok_encode_alloc(const tokenizer *t, const char *text, size_t len, tok_special_mode mode, int32_t **out,
                         char *err, size_t errlen);

/* The text tok_encode actually tokenizes: the tokenizer's normalizer (NFC for
 * Qwen) applied to the valid UTF-8 runs of text, invalid bytes kept. Writes up to
 * cap bytes (NUL-terminated when there is room); returns the length needed, or -1.
 * decode(encode(x)) == normalize(x) for every x. */
int64_t tok_normalize(const tokenizer *t, const char *text, size_t len, char *out, size_t cap);

/* The bytes of one token (special tokens give their text). NULL for an invalid id. */
const char *tok_piece(const tokenizer *t, int32_t id, size_t *len);

/* Decode ids into buf (may contain invalid UTF-8 if the ids are such); returns the
 * byte length needed (a return > cap means truncated), -1 for an invalid id.
 * buf is NUL-terminated when the text fits with room to spare. */
int64_t tok_decode(const tokenizer *t, const int32_t *ids, int64_t n, char *buf, size_t cap);

/* Streaming detokenizer: returns text only in whole UTF-8 characters, holding an
 * incomplete sequence back until the token that completes it arrives. A sequence
 * that can never complete is emitted as U+FFFD (one per maximal invalid subpart,
 * as in the WHATWG decoder; an incomplete tail at tok_stream_flush is one U+FFFD). */
typedef struct tok_stream tok_stream;
tok_stream *tok_stream_new(const tokenizer *t);
void tok_stream_free(tok_stream *s);
/* Feed one token; *out receives the text that is now complete (valid until the next
 * call). Returns 0, or -1 for an invalid id. */
int tok_stream_feed(tok_stream *s, int32_t id, const char **out, size_t *out_len);
void tok_stream_flush(tok_stream *s, const char **out, size_t *out_len);

/* ChatML, as QwQ-32B uses it. */
typedef struct chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} chat_message;

/* Render messages as ChatML text:
 *   <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n<think>\n
 * (the last part when add_generation_prompt: QwQ-32B's template opens the thinking).
 * Assistant turns keep only the text after their last </think> (leading newlines
 * dropped), as QwQ's template does; "tool" messages become <tool_response> blocks
 * in a user turn. Returns a malloc'd string, or NULL (unknown role, NULL field). */
char *chat_render(const chat_message *msgs, int n, bool add_generation_prompt);

/* Encode a chat: template parts are trusted (special tokens parsed), message
 * contents follow `content_mode` (TOK_SPECIAL_PLAIN by default for users). Returns
 * the number of ids as tok_encode does. */
int64_t chat_encode(const tokenizer *t, const chat_message *msgs, int n, bool add_generation_prompt,
                    tok_special_mode content_mode, int32_t *ids, int64_t max);
/* chat_encode into a malloc'd array sized to fit, as tok_encode_alloc. */
int64_t chat_encode_alloc(const tokenizer *t, const chat_message *msgs, int n, bool add_generation_prompt,
                          tok_special_mode content_mode, int32_t **out, char *err, size_t errlen);

#endif
