/* test_mkmodel.c - baton-mkmodel writes the models it promises.
 *
 * Runs the binary ($BATON_BUILD/tools/baton-mkmodel) to make small models and
 * reads them back with gguf_open:
 *   - tiny in every --type: every metadata key (name, type, value), the built-in
 *     vocabulary (byte tokens, merges that build tokens of the vocabulary, special
 *     tokens and their types, padding), every tensor's name, type and shape;
 *   - the quantized weights are encodings of the same numbers as the f32 model
 *     (within each type's documented error), with the intended mean and std;
 *   - overrides, and widths that force the q8_0 / f16 fallback;
 *   - same seed -> identical bytes, other seed -> other bytes; a 3-layer model
 *     holds exactly the 2-layer model's tensors;
 *   - --json, --help, a tokenizer.json written here (zero head rows for its
 *     padding tokens), and clear errors.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <jansson.h>

#include "gguf.h"
#include "quant.h"

static int g_checks, g_failed;
static char g_bin[4096], g_dir[256];

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        g_checks++;                                                        \
        if (!(cond)) {                                                     \
            g_failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* ------------------------------------------------------------------ helpers */

/* A path inside the test's temporary folder (static buffer rotation of 8). */
static const char *tpath(const char *fmt, ...) {
    static char bufs[8][512];
    static int k;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    char *b = bufs[k++ & 7];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

/* Run baton-mkmodel with the NULL-terminated arguments, stdout and stderr to the
 * files out.txt and err.txt of the temporary folder. Returns the exit status
 * (-1 if it did not exit normally). */
static int run_mk(const char *first, ...) {
    const char *argv[64];
    int n = 0;
    argv[n++] = g_bin;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int o = open(tpath("out.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(tpath("err.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(127);
        dup2(o, 1);
        dup2(e, 2);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

/* The whole content of a file (NUL-terminated), or NULL. */
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Metadata string `key` equals `want`. */
static bool key_str_is(const gguf_file *f, const char *key, const char *want) {
    const char *s;
    size_t len;
    return gguf_get_string(f, key, &s, &len) == 0 && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* Metadata key `key` has type `type` and (for integers) value `want`. */
static void check_uint_key(const gguf_file *f, const char *key, gguf_value_type type, uint64_t want) {
    int64_t i = gguf_find_key(f, key);
    CHECK(i >= 0, "key %s missing", key);
    if (i < 0) return;
    CHECK(gguf_key_type(f, i) == type, "key %s has type %d, want %d", key, gguf_key_type(f, i), type);
    uint64_t v = ~0ull;
    CHECK(gguf_get_uint(f, key, &v) == 0 && v == want, "key %s = %llu, want %llu", key, (unsigned long long)v,
          (unsigned long long)want);
}

static void check_float_key(const gguf_file *f, const char *key, double want) {
    int64_t i = gguf_find_key(f, key);
    CHECK(i >= 0 && gguf_key_type(f, i) == GGUF_TYPE_FLOAT32, "key %s missing or not float32", key);
    double v = 0;
    CHECK(gguf_get_float(f, key, &v) == 0 && fabs(v - want) <= 1e-6 * fabs(want), "key %s = %g, want %g", key, v, want);
}

/* ------------------------------------------------------------------ expectations */

typedef struct scheme {
    const char *name;
    uint32_t base, strong, file_type;
} scheme;

/* The --type table as the brief specifies it (LLAMA_FTYPE numbers). */
static const scheme schemes[] = {
    {"f32", TENSOR_F32, TENSOR_F32, 0},     {"f16", TENSOR_F16, TENSOR_F16, 1},
    {"bf16", TENSOR_BF16, TENSOR_BF16, 32}, {"q8_0", TENSOR_Q8_0, TENSOR_Q8_0, 7},
    {"q4_0", TENSOR_Q4_0, TENSOR_Q4_0, 2},  {"q4_k", TENSOR_Q4_K, TENSOR_Q4_K, 14},
    {"q6_k", TENSOR_Q6_K, TENSOR_Q6_K, 18}, {"q4_k_m", TENSOR_Q4_K, TENSOR_Q6_K, 15},
};

static const scheme *scheme_get(const char *name) {
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (!strcmp(schemes[i].name, name)) return &schemes[i];
    return NULL;
}

typedef struct shape {
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
} shape;

static const shape tiny = {2, 256, 4, 2, 512, 512, 4096};

/* The type a matrix with rows of ne0 should get: the scheme's, else q8_0 when
 * ne0 is a multiple of 32, else f16. */
static uint32_t expect_matrix_type(uint32_t want, int64_t ne0) {
    uint32_t be = tensor_type_get(want)->block_elems;
    if (ne0 % be == 0) return want;
    return (be != 32 && ne0 % 32 == 0) ? TENSOR_Q8_0 : TENSOR_F16;
}

typedef struct tensor_spec {
    char name[64];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne0, ne1;
    double mean, std; /* intended statistics */
} tensor_spec;

/* All tensors a model of shape `s` and scheme `sc` must have. Returns the count. */
static int expected_tensors(const shape *s, const scheme *sc, tensor_spec *out) {
    int64_t E = s->n_embd, hd = E / s->n_head, Q = s->n_head * hd, KV = s->n_head_kv * hd, F = s->n_ff,
            V = s->n_vocab;
    int n = 0;
#define T(nm, strg, mat, a, b, mu, sd)                                                                       \
    do {                                                                                                       \
        tensor_spec *t = &out[n++];                                                                            \
        snprintf(t->name, sizeof t->name, "%s", nm);                                                           \
        t->ne0 = a;                                                                                            \
        t->ne1 = b;                                                                                            \
        t->n_dims = (mat) ? 2 : 1;                                                                             \
        t->type = (mat) ? expect_matrix_type((strg) ? sc->strong : sc->base, a) : TENSOR_F32;              \
        t->mean = mu;                                                                                          \
        t->std = sd;                                                                                           \
    } while (0)
    char nm[64];
    T("token_embd.weight", 0, 1, E, V, 0, 1.0);
    for (uint32_t l = 0; l < s->n_layer; l++) {
#define N(x) (snprintf(nm, sizeof nm, "blk.%u." x, l), nm)
        T(N("attn_norm.weight"), 0, 0, E, 1, 1, 0.1);
        T(N("attn_q.weight"), 0, 1, E, Q, 0, 1 / sqrt((double)E));
        T(N("attn_q.bias"), 0, 0, Q, 1, 0, 0.02);
        T(N("attn_k.weight"), 0, 1, E, KV, 0, 1 / sqrt((double)E));
        T(N("attn_k.bias"), 0, 0, KV, 1, 0, 0.02);
        T(N("attn_v.weight"), 1, 1, E, KV, 0, 1 / sqrt((double)E));
        T(N("attn_v.bias"), 0, 0, KV, 1, 0, 0.02);
        T(N("attn_output.weight"), 0, 1, Q, E, 0, 0.5 / sqrt((double)Q));
        T(N("ffn_norm.weight"), 0, 0, E, 1, 1, 0.1);
        T(N("ffn_gate.weight"), 0, 1, E, F, 0, 1 / sqrt((double)E));
        T(N("ffn_up.weight"), 0, 1, E, F, 0, 1 / sqrt((double)E));
        T(N("ffn_down.weight"), 1, 1, F, E, 0, 0.5 / sqrt((double)F));
#undef N
    }
    T("output_norm.weight", 0, 0, E, 1, 1, 0.1);
    T("output.weight", 1, 1, E, V, 0, 1 / sqrt((double)E));
#undef T
    return n;
}

/* A tensor's values as floats (malloc'ed), or NULL. */
static float *tensor_floats(const gguf_tensor *t) {
    float *x = malloc((size_t)t->n_elems * sizeof(float));
    if (!x) return NULL;
    if (quant_dequantize_row(t->type, t->data, x, t->n_elems) != 0) {
        free(x);
        return NULL;
    }
    return x;
}

/* ------------------------------------------------------------------ model checks */

/* The id of token `s` in the tokens array, or -1. */
static int64_t find_token(const gguf_array *tok, const char *s, size_t len) {
    for (uint64_t i = 0; i < tok->count; i++) {
        const char *t;
        size_t tl;
        if (gguf_array_string(tok, i, &t, &tl) == 0 && tl == len && memcmp(t, s, len) == 0) return (int64_t)i;
    }
    return -1;
}

/* The built-in vocabulary of a model with n_vocab tokens. */
static void check_builtin_vocab(const gguf_file *f, uint64_t n_vocab) {
    gguf_array tok, typ, mer;
    CHECK(gguf_get_array(f, "tokenizer.ggml.tokens", &tok) == 0 && tok.type == GGUF_TYPE_STRING &&
              tok.count == n_vocab, "tokenizer.ggml.tokens: %llu strings, want %llu", (unsigned long long)tok.count,
          (unsigned long long)n_vocab);
    CHECK(gguf_get_array(f, "tokenizer.ggml.token_type", &typ) == 0 && typ.type == GGUF_TYPE_INT32 &&
              typ.count == n_vocab, "tokenizer.ggml.token_type: want %llu int32", (unsigned long long)n_vocab);
    CHECK(gguf_get_array(f, "tokenizer.ggml.merges", &mer) == 0 && mer.type == GGUF_TYPE_STRING && mer.count >= 1,
          "tokenizer.ggml.merges missing or empty");
    if (tok.count != n_vocab || typ.count != n_vocab) return;

    /* 256 distinct byte tokens, "!" first (GPT-2 order), "Ġ" is the space byte */
    const char *s;
    size_t len;
    CHECK(gguf_array_string(&tok, 0, &s, &len) == 0 && len == 1 && s[0] == '!', "token 0 is not \"!\"");
    CHECK(find_token(&tok, "\xC4\xA0", 2) >= 0 && find_token(&tok, "\xC4\x80", 2) >= 0, "no Ġ / Ā byte tokens");
    int64_t byte_ok = 0;
    for (uint64_t i = 0; i < 256; i++) {
        int64_t ty = 0;
        gguf_array_string(&tok, i, &s, &len);
        gguf_array_int(&typ, i, &ty);
        byte_ok += ty == 1 && (len == 1 || len == 2) && find_token(&tok, s, len) == (int64_t)i;
    }
    CHECK(byte_ok == 256, "only %lld of the first 256 tokens are distinct normal byte tokens", (long long)byte_ok);

    /* every merge "a b": a, b and ab are tokens; "Ġ t" and "Ġt he"-like chains exist */
    uint64_t good = 0;
    for (uint64_t i = 0; i < mer.count; i++) {
        gguf_array_string(&mer, i, &s, &len);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1)) continue;
        char joined[128];
        size_t la = (size_t)(sp - s), lb = len - la - 1;
        if (la + lb >= sizeof joined) continue;
        memcpy(joined, s, la);
        memcpy(joined + la, sp + 1, lb);
        good += find_token(&tok, s, la) >= 0 && find_token(&tok, sp + 1, lb) >= 0 &&
                find_token(&tok, joined, la + lb) >= 0;
    }
    CHECK(good == mer.count, "%llu of %llu merges are not made of vocabulary tokens", (unsigned long long)(mer.count - good),
          (unsigned long long)mer.count);
    CHECK(mer.count >= (n_vocab >= 512 ? 200u : 1u), "only %llu merges", (unsigned long long)mer.count);
    CHECK(find_token(&tok, "\xC4\xA0the", 5) >= 0 || n_vocab < 512, "no token \"Ġthe\"");

    /* specials and their types; eos/bos/padding ids */
    static const struct { const char *s; int64_t type; } sp[] = {
        {"<|endoftext|>", 3}, {"<|im_start|>", 3}, {"<|im_end|>", 3}, {"<think>", 4}, {"</think>", 4}};
    int64_t ids[5];
    for (int k = 0; k < 5; k++) {
        ids[k] = find_token(&tok, sp[k].s, strlen(sp[k].s));
        int64_t ty = -1;
        if (ids[k] >= 0) gguf_array_int(&typ, (uint64_t)ids[k], &ty);
        CHECK(ids[k] >= 256 && ty == sp[k].type, "special %s: id %lld type %lld, want type %lld", sp[k].s,
              (long long)ids[k], (long long)ty, (long long)sp[k].type);
    }
    uint64_t eos = 0, bos = 0, pad = 0;
    gguf_get_uint(f, "tokenizer.ggml.eos_token_id", &eos);
    gguf_get_uint(f, "tokenizer.ggml.bos_token_id", &bos);
    gguf_get_uint(f, "tokenizer.ggml.padding_token_id", &pad);
    CHECK((int64_t)eos == ids[2], "eos %llu is not <|im_end|> (%lld)", (unsigned long long)eos, (long long)ids[2]);
    CHECK((int64_t)bos == ids[0] && (int64_t)pad == ids[0], "bos %llu / padding %llu are not <|endoftext|>",
          (unsigned long long)bos, (unsigned long long)pad);

    /* everything after the last special is "[PAD<id>]" of type 5 */
    int64_t last = ids[4];
    uint64_t pads = 0;
    for (uint64_t i = (uint64_t)last + 1; i < n_vocab; i++) {
        char want[32];
        int64_t ty = 0;
        snprintf(want, sizeof want, "[PAD%llu]", (unsigned long long)i);
        gguf_array_string(&tok, i, &s, &len);
        gguf_array_int(&typ, i, &ty);
        pads += len == strlen(want) && !memcmp(s, want, len) && ty == 5;
    }
    CHECK(pads == n_vocab - 1 - (uint64_t)last, "padding tokens wrong (%llu good of %llu)", (unsigned long long)pads,
          (unsigned long long)(n_vocab - 1 - (uint64_t)last));
    /* normal tokens between the bytes and the specials: type 1 */
    uint64_t normal = 0;
    for (int64_t i = 256; i < ids[0]; i++) {
        int64_t ty = 0;
        gguf_array_int(&typ, (uint64_t)i, &ty);
        normal += ty == 1;
    }
    CHECK(normal == (uint64_t)(ids[0] - 256), "merged tokens are not all type 1");
    CHECK(256 + mer.count == (uint64_t)ids[0], "%llu merges but %lld merged tokens", (unsigned long long)mer.count,
          (long long)(ids[0] - 256));
}

/* Open `path` and check every key and tensor of a model of shape s and --type
 * sc. Returns the open file (the caller closes it) or NULL. */
static gguf_file *check_model(const char *path, const shape *s, const scheme *sc, bool builtin_vocab) {
    char err[256];
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK(f != NULL, "gguf_open(%s): %s", path, err);
    if (!f) return NULL;
    CHECK(gguf_version(f) == 3, "%s: version %u", path, gguf_version(f));
    CHECK(gguf_alignment(f) == 32, "%s: alignment %llu", path, (unsigned long long)gguf_alignment(f));

    CHECK(key_str_is(f, "general.architecture", "qwen2"), "general.architecture");
    CHECK(key_str_is(f, "general.type", "model"), "general.type");
    const char *name;
    size_t len;
    CHECK(gguf_get_string(f, "general.name", &name, &len) == 0 && len > 0, "general.name");
    check_uint_key(f, "general.file_type", GGUF_TYPE_UINT32, sc->file_type);
    check_uint_key(f, "general.quantization_version", GGUF_TYPE_UINT32, 2);
    check_uint_key(f, "general.alignment", GGUF_TYPE_UINT32, 32);
    check_uint_key(f, "qwen2.block_count", GGUF_TYPE_UINT32, s->n_layer);
    check_uint_key(f, "qwen2.context_length", GGUF_TYPE_UINT32, s->n_ctx);
    check_uint_key(f, "qwen2.embedding_length", GGUF_TYPE_UINT32, s->n_embd);
    check_uint_key(f, "qwen2.feed_forward_length", GGUF_TYPE_UINT32, s->n_ff);
    check_uint_key(f, "qwen2.attention.head_count", GGUF_TYPE_UINT32, s->n_head);
    check_uint_key(f, "qwen2.attention.head_count_kv", GGUF_TYPE_UINT32, s->n_head_kv);
    check_float_key(f, "qwen2.rope.freq_base", 1e6);
    check_float_key(f, "qwen2.attention.layer_norm_rms_epsilon", 1e-5);
    CHECK(key_str_is(f, "tokenizer.ggml.model", "gpt2"), "tokenizer.ggml.model");
    CHECK(key_str_is(f, "tokenizer.ggml.pre", "qwen2"), "tokenizer.ggml.pre");
    int64_t ki = gguf_find_key(f, "tokenizer.ggml.eos_token_id");
    CHECK(ki >= 0 && gguf_key_type(f, ki) == GGUF_TYPE_UINT32, "eos_token_id missing or not uint32");
    ki = gguf_find_key(f, "tokenizer.ggml.bos_token_id");
    CHECK(ki >= 0 && gguf_key_type(f, ki) == GGUF_TYPE_UINT32, "bos_token_id missing or not uint32");
    ki = gguf_find_key(f, "tokenizer.ggml.padding_token_id");
    CHECK(ki >= 0 && gguf_key_type(f, ki) == GGUF_TYPE_UINT32, "padding_token_id missing or not uint32");
    bool add_bos = true;
    CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos) == 0 && !add_bos, "add_bos_token not false");
    const char *tmpl;
    CHECK(gguf_get_string(f, "tokenizer.chat_template", &tmpl, &len) == 0 && len > 100, "chat_template missing");
    if (gguf_get_string(f, "tokenizer.chat_template", &tmpl, &len) == 0) {
        char *t = strndup(tmpl, len);
        CHECK(t && strstr(t, "<|im_start|>") && strstr(t, "<|im_end|>") && strstr(t, "add_generation_prompt") &&
                  strstr(t, "<think>") && strstr(t, "for message in messages"),
              "chat_template is not ChatML");
        free(t);
    }
    if (builtin_vocab) check_builtin_vocab(f, s->n_vocab);

    static tensor_spec want[4 + 13 * 8];
    int n = expected_tensors(s, sc, want);
    CHECK(gguf_tensor_count(f) == n, "%s: %lld tensors, want %d", path, (long long)gguf_tensor_count(f), n);
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_find_tensor(f, want[i].name);
        CHECK(t != NULL, "%s: tensor %s missing", path, want[i].name);
        if (!t) continue;
        CHECK(t->type == want[i].type, "%s: %s type %u, want %u", path, want[i].name, t->type, want[i].type);
        CHECK(t->n_dims == want[i].n_dims && t->ne[0] == want[i].ne0 && (t->n_dims == 1 || t->ne[1] == want[i].ne1),
              "%s: %s shape %u:[%lld, %lld], want %u:[%lld, %lld]", path, want[i].name, t->n_dims,
              (long long)t->ne[0], (long long)t->ne[1], want[i].n_dims, (long long)want[i].ne0,
              (long long)want[i].ne1);
    }
    return f;
}

/* Mean and standard deviation of n values. */
static void stats(const float *x, int64_t n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    *mean = s / (double)n;
    *std = sqrt(fmax(0, s2 / (double)n - *mean * *mean));
}

/* Every tensor of the f32 model has its intended mean and std; for a quantized
 * model q, every tensor decodes to the f32 model's values within the type's
 * error bound, block by block. */
static void check_values(const gguf_file *f32, const gguf_file *q, const char *qname, const shape *s) {
    static tensor_spec want[4 + 13 * 8];
    int n = expected_tensors(s, &schemes[0], want);
    for (int i = 0; i < n; i++) {
        const gguf_tensor *a = gguf_find_tensor(f32, want[i].name), *b = gguf_find_tensor(q, want[i].name);
        if (!a || !b || a->n_elems != b->n_elems) continue; /* reported by check_model */
        float *x = tensor_floats(a), *y = tensor_floats(b);
        CHECK(x && y, "%s: cannot decode %s", qname, want[i].name);
        if (x && y) {
            if (q == f32) {
                /* sampling error of a std estimate ~ std/sqrt(2n); allow 6 sigma + 1% */
                double m, sd, tol = want[i].std * (6.0 / sqrt(2.0 * (double)a->n_elems) + 0.01);
                stats(x, a->n_elems, &m, &sd);
                CHECK(fabs(sd - want[i].std) <= tol, "%s: std %g, want %g", want[i].name, sd, want[i].std);
                CHECK(fabs(m - want[i].mean) <= 6.0 * want[i].std / sqrt((double)a->n_elems),
                      "%s: mean %g, want %g", want[i].name, m, want[i].mean);
            } else {
                uint32_t be = tensor_type_get(b->type)->block_elems;
                double bound = quant_error_bound(b->type);
                int64_t bad = 0;
                for (int64_t k = 0; k < a->n_elems; k += be) {
                    float amax = 0, emax = 0;
                    for (uint32_t j = 0; j < be; j++) {
                        amax = fmaxf(amax, fabsf(x[k + j]));
                        emax = fmaxf(emax, fabsf(x[k + j] - y[k + j]));
                    }
                    bad += emax > bound * amax + 1e-7f;
                }
                CHECK(bad == 0, "%s: %s: %lld blocks beyond the %s error bound of the f32 values", qname,
                      want[i].name, (long long)bad, tensor_type_get(b->type)->name);
            }
        }
        free(x);
        free(y);
    }
}

/* ------------------------------------------------------------------ tests */

static void test_types(void) {
    const char *f32path = tpath("tiny_f32.gguf");
    CHECK(run_mk("--preset", "tiny", "--type", "f32", "--seed", "5", "-o", f32path, NULL) == 0, "tiny f32 failed");
    gguf_file *ref = check_model(f32path, &tiny, scheme_get("f32"), true);
    if (ref) check_values(ref, ref, "f32", &tiny);
    for (size_t i = 1; i < sizeof schemes / sizeof schemes[0]; i++) {
        const char *p = tpath("tiny_%s.gguf", schemes[i].name);
        int rc = run_mk("--preset", "tiny", "--type", schemes[i].name, "--seed", "5", "-o", p, NULL);
        CHECK(rc == 0, "tiny --type %s exited %d", schemes[i].name, rc);
        gguf_file *f = check_model(p, &tiny, &schemes[i], true);
        if (f && ref) check_values(ref, f, schemes[i].name, &tiny);
        gguf_close(f);
        printf("  tiny --type %-6s: keys, vocabulary, tensors, values ok\n", schemes[i].name);
    }
    gguf_close(ref);
}

static void test_overrides_and_fallback(void) {
    /* overrides */
    shape s = {3, 128, 2, 1, 256, 300, 1024};
    const char *p = tpath("over.gguf");
    CHECK(run_mk("--preset", "tiny", "--embd", "128", "--heads", "2", "--kv-heads", "1", "--ff", "256", "--vocab",
                 "300", "--ctx", "1024", "--layers", "3", "--type", "q8_0", "-o", p, NULL) == 0,
          "overrides failed");
    gguf_close(check_model(p, &s, scheme_get("q8_0"), true));

    /* rows of 96: not a multiple of 256 -> q8_0 for every K-quant matrix */
    shape s2 = {1, 96, 3, 1, 160, 512, 4096};
    p = tpath("fb1.gguf");
    CHECK(run_mk("--preset", "tiny", "--embd", "96", "--heads", "3", "--kv-heads", "1", "--ff", "160", "--layers", "1",
                 "--type", "q4_k_m", "-o", p, NULL) == 0,
          "fallback model failed");
    gguf_file *f = check_model(p, &s2, scheme_get("q4_k_m"), true);
    const gguf_tensor *t = f ? gguf_find_tensor(f, "blk.0.ffn_down.weight") : NULL;
    CHECK(t && t->type == TENSOR_Q8_0, "ffn_down with rows of 160 is not q8_0");
    gguf_close(f);
    char *err = slurp(tpath("err.txt"), NULL);
    CHECK(err && strstr(err, "not a multiple of 256") && strstr(err, "q8_0"), "no fallback message on stderr: %s",
          err ? err : "");
    free(err);

    /* rows of 80: not a multiple of 32 -> f16; ffn_down rows of 64 stay q4_0 */
    shape s3 = {1, 80, 2, 1, 64, 512, 4096};
    p = tpath("fb2.gguf");
    CHECK(run_mk("--preset", "tiny", "--embd", "80", "--heads", "2", "--kv-heads", "1", "--ff", "64", "--layers", "1",
                 "--type", "q4_0", "-o", p, NULL) == 0,
          "f16 fallback model failed");
    f = check_model(p, &s3, scheme_get("q4_0"), true);
    t = f ? gguf_find_tensor(f, "blk.0.attn_q.weight") : NULL;
    CHECK(t && t->type == TENSOR_F16, "attn_q with rows of 80 is not f16");
    t = f ? gguf_find_tensor(f, "blk.0.ffn_down.weight") : NULL;
    CHECK(t && t->type == TENSOR_Q4_0, "ffn_down with rows of 64 is not q4_0");
    gguf_close(f);
    printf("  overrides and q8_0 / f16 fallbacks ok\n");
}

static void test_reproducible(void) {
    const char *a = tpath("seed7a.gguf"), *b = tpath("seed7b.gguf"), *c = tpath("seed8.gguf");
    CHECK(run_mk("--preset", "tiny", "--type", "q4_k_m", "--seed", "7", "-o", a, NULL) == 0, "seed 7 failed");
    CHECK(run_mk("--preset", "tiny", "--type", "q4_k_m", "--seed", "7", "--threads", "1", "-o", b, NULL) == 0,
          "seed 7 (1 thread) failed");
    CHECK(run_mk("--preset", "tiny", "--type", "q4_k_m", "--seed", "8", "-o", c, NULL) == 0, "seed 8 failed");
    size_t la = 0, lb = 0, lc = 0;
    char *da = slurp(a, &la), *db = slurp(b, &lb), *dc = slurp(c, &lc);
    CHECK(da && db && la == lb && memcmp(da, db, la) == 0, "same seed, different bytes");
    CHECK(da && dc && la == lc && memcmp(da, dc, la) != 0, "another seed, same bytes");
    free(da);
    free(db);
    free(dc);

    /* a 3-layer model holds the 2-layer model's tensors byte for byte */
    const char *l3 = tpath("l3.gguf");
    CHECK(run_mk("--preset", "tiny", "--type", "q4_k_m", "--seed", "7", "--layers", "3", "-o", l3, NULL) == 0,
          "3 layers failed");
    char err[256];
    gguf_file *f2 = gguf_open(a, err, sizeof err), *f3 = gguf_open(l3, err, sizeof err);
    CHECK(f2 && f3, "cannot open the slice models");
    int64_t same = 0;
    for (int64_t i = 0; f2 && f3 && i < gguf_tensor_count(f2); i++) {
        const gguf_tensor *x = gguf_tensor_at(f2, i), *y = gguf_find_tensor(f3, x->name);
        same += y && x->bytes == y->bytes && memcmp(x->data, y->data, x->bytes) == 0;
    }
    CHECK(f2 && same == gguf_tensor_count(f2), "the 3-layer model differs in %lld shared tensors",
          f2 ? (long long)(gguf_tensor_count(f2) - same) : -1LL);
    gguf_close(f2);
    gguf_close(f3);
    printf("  same seed identical (1 or 2 threads), other seed different, slices consistent\n");
}

static void test_json_help(void) {
    const char *p = tpath("j.gguf");
    CHECK(run_mk("--preset", "tiny", "--type", "q6_k", "--json", "-o", p, NULL) == 0, "--json run failed");
    char *out = slurp(tpath("out.txt"), NULL);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j != NULL, "--json output is not JSON: %s", out ? out : "");
    struct stat st;
    stat(p, &st);
    char err[256];
    gguf_file *f = gguf_open(p, err, sizeof err);
    int64_t params = 0;
    for (int64_t i = 0; f && i < gguf_tensor_count(f); i++) params += gguf_tensor_at(f, i)->n_elems;
    gguf_close(f);
    CHECK(j && json_is_string(json_object_get(j, "path")) && !strcmp(json_string_value(json_object_get(j, "path")), p),
          "json path");
    CHECK(j && json_integer_value(json_object_get(j, "bytes")) == (json_int_t)st.st_size, "json bytes != file size");
    CHECK(j && json_integer_value(json_object_get(j, "params")) == params, "json params != sum of tensor elements");
    CHECK(j && json_integer_value(json_object_get(j, "n_layer")) == 2, "json n_layer");
    CHECK(j && json_is_string(json_object_get(j, "type")) &&
              !strcmp(json_string_value(json_object_get(j, "type")), "q6_k"),
          "json type");
    json_decref(j);
    free(out);

    CHECK(run_mk("--help", NULL) == 0, "--help failed");
    out = slurp(tpath("out.txt"), NULL);
    CHECK(out && strstr(out, "--preset") && strstr(out, "q4_k_m") && strstr(out, "--tokenizer"), "--help text");
    free(out);
    printf("  --json and --help ok\n");
}

static void test_errors(void) {
    static const char *const cases[][12] = {
        {"--preset", "tiny", NULL},                                      /* no -o */
        {"--preset", "nope", "-o", "X", NULL},
        {"--preset", "tiny", "--type", "q7_k", "-o", "X", NULL},
        {"--preset", "tiny", "--heads", "3", "-o", "X", NULL},           /* 256 % 3 */
        {"--preset", "tiny", "--kv-heads", "3", "-o", "X", NULL},        /* 4 % 3 */
        {"--preset", "tiny", "--layers", "0", "-o", "X", NULL},
        {"--preset", "tiny", "--layers", "2x", "-o", "X", NULL},
        {"--preset", "tiny", "--vocab", "100", "-o", "X", NULL},         /* too small for the built-in vocab */
        {"--preset", "tiny", "--tokenizer", "/nonexistent.json", "-o", "X", NULL},
        {"--preset", "tiny", "--bogus", "1", "-o", "X", NULL},
        {"--preset", "tiny", "-o", "/nonexistent-dir/x.gguf", NULL},
    };
    const char *x = tpath("err.gguf");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *a[12] = {0};
        for (int k = 0; k < 11 && cases[i][k]; k++) a[k] = !strcmp(cases[i][k], "X") ? x : cases[i][k];
        int rc = run_mk(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], NULL);
        char *err = slurp(tpath("err.txt"), NULL);
        CHECK(rc != 0 && rc != -1, "case %zu (%s %s %s ...) exited %d", i, a[2] ? a[2] : "", a[3] ? a[3] : "",
              a[4] ? a[4] : "", rc);
        CHECK(err && !strncmp(err, "baton-mkmodel: ", 15) && strchr(err, '\n') == err + strlen(err) - 1,
              "case %zu: want one line \"baton-mkmodel: ...\", got \"%s\"", i, err ? err : "");
        free(err);
        CHECK(!exists(x) && !exists(tpath("err.gguf.part")), "case %zu left a file behind", i);
    }
    printf("  %zu bad command lines rejected with one clear line\n", sizeof cases / sizeof cases[0]);
}

static void test_tokenizer_json(void) {
    const char *tj = tpath("tokenizer.json");
    FILE *f = fopen(tj, "w");
    CHECK(f != NULL, "cannot write %s", tj);
    if (!f) return;
    fputs("{\"version\":\"1.0\",\"added_tokens\":["
          "{\"id\":6,\"content\":\"<|endoftext|>\",\"special\":true},"
          "{\"id\":7,\"content\":\"<|im_start|>\",\"special\":true},"
          "{\"id\":8,\"content\":\"<|im_end|>\",\"special\":true},"
          "{\"id\":9,\"content\":\"<think>\",\"special\":false}],"
          "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4,\"\\u0120\":5},"
          "\"merges\":[\"a b\",[\"ab\",\"c\"]]}}",
          f);
    fclose(f);
    const char *p = tpath("tj.gguf");
    CHECK(run_mk("--preset", "tiny", "--tokenizer", tj, "--vocab", "16", "--type", "f16", "-o", p, NULL) == 0,
          "--tokenizer run failed");
    char err[256];
    gguf_file *g = gguf_open(p, err, sizeof err);
    CHECK(g != NULL, "open %s: %s", p, err);
    if (g) {
        static const char *const want[] = {"a", "b", "c", "ab", "abc", "\xC4\xA0", "<|endoftext|>", "<|im_start|>",
                                           "<|im_end|>", "<think>"};
        static const int64_t types[] = {1, 1, 1, 1, 1, 1, 3, 3, 3, 4};
        gguf_array tok, typ, mer;
        CHECK(gguf_get_array(g, "tokenizer.ggml.tokens", &tok) == 0 && tok.count == 16, "16 tokens");
        CHECK(gguf_get_array(g, "tokenizer.ggml.token_type", &typ) == 0 && typ.count == 16, "16 token types");
        for (uint64_t i = 0; i < 16 && tok.count == 16 && typ.count == 16; i++) {
            const char *s;
            size_t len;
            int64_t ty;
            char pad[16];
            snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
            const char *w = i < 10 ? want[i] : pad;
            gguf_array_string(&tok, i, &s, &len);
            gguf_array_int(&typ, i, &ty);
            CHECK(len == strlen(w) && !memcmp(s, w, len) && ty == (i < 10 ? types[i] : 5),
                  "token %llu: \"%.*s\" type %lld, want \"%s\"", (unsigned long long)i, (int)len, s, (long long)ty, w);
        }
        const char *m0, *m1;
        size_t l0, l1;
        CHECK(gguf_get_array(g, "tokenizer.ggml.merges", &mer) == 0 && mer.count == 2 &&
                  gguf_array_string(&mer, 0, &m0, &l0) == 0 && l0 == 3 && !memcmp(m0, "a b", 3) &&
                  gguf_array_string(&mer, 1, &m1, &l1) == 0 && l1 == 4 && !memcmp(m1, "ab c", 4),
              "merges are not [\"a b\", \"ab c\"]");
        uint64_t eos = 0, bos = 0, pad = 0;
        gguf_get_uint(g, "tokenizer.ggml.eos_token_id", &eos);
        gguf_get_uint(g, "tokenizer.ggml.bos_token_id", &bos);
        gguf_get_uint(g, "tokenizer.ggml.padding_token_id", &pad);
        CHECK(eos == 8 && bos == 6 && pad == 6, "eos %llu bos %llu pad %llu, want 8 6 6", (unsigned long long)eos,
              (unsigned long long)bos, (unsigned long long)pad);
        const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
        CHECK(t && t->ne[1] == 16, "token_embd has not 16 rows");
        /* the head's rows of the padding tokens 10..15 are zero, the others not */
        t = gguf_find_tensor(g, "output.weight");
        float *w = t && t->ne[1] == 16 ? tensor_floats(t) : NULL;
        CHECK(w != NULL, "cannot decode output.weight");
        for (int64_t r = 0; w && r < 16; r++) {
            double ss = 0;
            for (int64_t k = 0; k < t->ne[0]; k++) ss += (double)w[r * t->ne[0] + k] * w[r * t->ne[0] + k];
            CHECK(r < 10 ? ss > 0 : ss == 0, "output.weight row %lld: sum of squares %g", (long long)r, ss);
        }
        free(w);
        gguf_close(g);
    }
    CHECK(run_mk("--preset", "tiny", "--tokenizer", tj, "--vocab", "8", "-o", p, NULL) != 0,
          "a tokenizer larger than --vocab was accepted");
    printf("  tokenizer.json: tokens, types, merges, special ids, padding ok\n");
}

int main(void) {
    const char *build = getenv("BATON_BUILD");
    if (!build) {
        fprintf(stderr, "test_mkmodel: BATON_BUILD is not set\n");
        return 1;
    }
    snprintf(g_bin, sizeof g_bin, "%s/tools/baton-mkmodel", build);
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_mkmodel: %s is not built\n", g_bin);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/test_mkmodel.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("test_mkmodel: %s, files in %s\n", g_bin, g_dir);
    test_types();
    test_overrides_and_fallback();
    test_reproducible();
    test_json_help();
    test_errors();
    test_tokenizer_json();
    if (g_failed == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "test_mkmodel: could not remove %s\n", g_dir);
    }
    printf("test_mkmodel: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}
