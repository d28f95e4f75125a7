/* fuzz_gguf.c - the GGUF reader (model/gguf.c) on any bytes: open from memory,
 * then read every key, array element and tensor the way the loaders do, the
 * hyper-parameters (model.c) and the tokenizer (tokenizer.c) when present. */
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"
#include "tokenizer.h"

static void read_array(const gguf_array *a, int depth) {
    uint64_t n = a->count < 64 ? a->count : 64;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        int64_t iv;
        double dv;
        gguf_array sub;
        if (gguf_array_string(a, i, &s, &len) == 0 && len) (void)(volatile char)s[len - 1]; /* touch the last byte */
        (void)gguf_array_int(a, i, &iv);
        (void)gguf_array_float(a, i, &dv);
        if (depth < 3 && gguf_array_at(a, i, &sub) == 0) read_array(&sub, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    gguf_file *f = gguf_open_memory(data, size, err, sizeof err);
    if (!f) {
        if (!err[0]) abort(); /* a refusal always says why */
        return 0;
    }
    (void)gguf_version(f);
    (void)gguf_alignment(f);
    (void)gguf_data_offset(f);
    char digest[GGUF_DIGEST_LEN];
    gguf_digest(f, digest);
    for (int64_t i = 0; i < gguf_key_count(f); i++) {
        const char *k = gguf_key_name(f, i);
        if (!k || gguf_find_key(f, k) < 0) abort(); /* every key is found by its name */
        (void)gguf_type_name(gguf_key_type(f, i));
        uint64_t u;
        int64_t v;
        double d;
        bool b;
        const char *s;
        size_t len;
        gguf_array a;
        (void)gguf_get_uint(f, k, &u);
        (void)gguf_get_int(f, k, &v);
        (void)gguf_get_float(f, k, &d);
        (void)gguf_get_bool(f, k, &b);
        if (gguf_get_string(f, k, &s, &len) == 0 && len) (void)(volatile char)s[len - 1];
        if (gguf_get_array(f, k, &a) == 0) read_array(&a, 0);
    }
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!t || gguf_find_tensor(f, t->name) == NULL) abort();
    }
    model_hparams hp;
    (void)model_read_hparams(f, &hp, err, sizeof err);
    tokenizer *tok = tok_load_gguf(f, err, sizeof err);
    if (tok) {
        int32_t *ids = NULL;
        int64_t n = tok_encode_alloc(tok, "Hello, world! 123", 17, TOK_SPECIAL_PARSE, &ids, err, sizeof err);
        if (n > 0) {
            char out[256];
            (void)tok_decode(tok, ids, n, out, sizeof out);
        }
        free(ids);
        tok_free(tok);
    }
    gguf_close(f);
    return 0;
}
