/* fuzz_tokenizer_json.c - loading a Hugging Face tokenizer.json (model/tokenizer.c,
 * tok_load_json) from any bytes; a tokenizer that loads must then encode and
 * decode a fixed text with special tokens without fault. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) snprintf(path, sizeof path, "/tmp/baton-fuzz-tok-%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    char err[256] = "";
    tokenizer *t = tok_load_json(path, err, sizeof err);
    if (!t) {
        if (!err[0]) abort(); /* a refusal always says why */
        return 0;
    }
    static const char text[] = "<|im_start|>user\nHi there, 12345 caf\xc3\xa9 \xf0\x9f\x98\x80!<|im_end|>\xff";
    int32_t *ids = NULL;
    int64_t n = tok_encode_alloc(t, text, sizeof text - 1, TOK_SPECIAL_PARSE, &ids, err, sizeof err);
    if (n > 0) {
        for (int64_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok_vocab_size(t)) abort(); /* ids are inside the vocabulary */
        char out[512];
        (void)tok_decode(t, ids, n, out, sizeof out);
    }
    free(ids);
    (void)tok_eos(t);
    tok_free(t);
    return 0;
}
