/* baton-mkmodel - writes a synthetic Qwen2-architecture model as a GGUF v3 file.
 *
 *     baton-mkmodel --preset tiny --type q8_0 -o tiny.gguf
 *     baton-mkmodel --preset qwq-32b --layers 4 --type q4_k_m -o /tmp/qwq4.gguf
 *
 * The file has the tensor names, shapes, types and metadata of a real llama.cpp
 * qwen2 GGUF (QwQ-32B for the qwq-32b preset), so everything that loads a
 * synthetic model loads the real one unchanged. Weights are seeded Gaussian noise,
 * scaled so activations keep a realistic size through the layers.
 *
 * Every weight is a pure function of (seed, tensor name, element index): a
 * counter-based generator (splitmix64 finaliser + Box-Muller), so any tensor or row
 * can be produced on its own, the file is reproducible bit for bit, and a model of
 * 4 layers holds exactly the first 4 layers of the 64-layer model of the same seed.
 * The output head's rows for padding tokens are zero, so greedy decoding never
 * picks a token that does not exist.
 * Tensors are generated and quantized in chunks of rows by two threads and
 * streamed to disk, so memory stays at a few MiB whatever the model size.
 *
 * With --weights FILE the weights are not random but trained ones, from a weights
 * file (tools/train-demo/train.py writes one; format below, at mk_weights_load):
 * the shapes come from its header, every tensor of the model must be in it, and
 * each matrix is quantized to --type here, by the same code as the random ones.
 *
 *     baton-mkmodel --weights tools/train-demo/demo.btw --tokenizer tokenizer.json -o demo.gguf
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "cliparse.h"
#include "clock.h"
#include "gguf.h"
#include "log.h"
#include "quant.h"
#include "qwen2.h"

#define MK_MAX_THREADS 16
#define MK_CHUNK_BYTES (8u << 20) /* output bytes generated between two writes */

/* ---------------------------------------------------------------- errors */

/* Log the message (log.h) and give -1, for `return mk_fail(...)`. */
#define mk_fail(...) (log_msg(__VA_ARGS__), -1)

/* malloc that reports failure as a message; NULL if out of memory. */
static void *mk_alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) log_msg("out of memory (%zu bytes)", n);
    return p;
}

/* strdup that reports failure as a message. */
static char *mk_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = mk_alloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---------------------------------------------------------------- presets */

typedef struct mk_hparams {
    const char *preset;
    const char *name;       /* general.name */
    const char *basename;   /* general.basename */
    uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base, rms_eps;
    const char *rope_scaling; /* NULL: no qwen2.rope.scaling.* keys */
    double rope_scale;        /* YaRN factor */
    uint32_t yarn_orig_ctx;   /* 0: key not written */
} mk_hparams;

/* qwq-32b: Qwen/QwQ-32B config.json (hidden 5120, intermediate 27648, 64 layers,
 * 40/8 heads, vocab 152064, max_position_embeddings 40960, rope_theta 1e6,
 * rms_norm_eps 1e-5). */
static const mk_hparams mk_presets[] = {
    {"tiny", "Baton Tiny (synthetic)", "baton-tiny", 2, 256, 4, 2, 512, 512, 4096, 1e6f, 1e-5f, NULL, 0, 0},
    {"qwq-32b", "QwQ 32B (synthetic)", "QwQ", 64, 5120, 40, 8, 27648, 152064, 40960, 1e6f, 1e-5f, NULL, 0, 0},
};

/* ---------------------------------------------------------------- type schemes */

/* One --type: the type of ordinary matrices, of the "strong" ones (attn_v,
 * ffn_down, output) and llama.cpp's LLAMA_FTYPE number for general.file_type. */
typedef struct mk_scheme {
    const char *name;
    uint32_t base, strong, file_type;
} mk_scheme;

/* llama.cpp's k-quant mixes (llama_tensor_get_type, non-MoE, non-Falcon): which
 * layer matrices get more bits than the base type; output is Q6_K in all.
 * MK_MIX_NONE: the strong flag picks (q4_k_m); MK_MIX_BASE: every layer matrix
 * the base type (q3_k_s, q5_k_s). */
enum { MK_MIX_NONE, MK_MIX_BASE, MK_MIX_Q2_K, MK_MIX_Q3_K_M, MK_MIX_Q3_K_L, MK_MIX_Q4_K_S, MK_MIX_Q5_K_M };

static const mk_scheme mk_schemes[] = {
    {"f32", TENSOR_F32, TENSOR_F32, 0},      {"f16", TENSOR_F16, TENSOR_F16, 1},
    {"bf16", TENSOR_BF16, TENSOR_BF16, 32},  {"q8_0", TENSOR_Q8_0, TENSOR_Q8_0, 7},
    {"q4_0", TENSOR_Q4_0, TENSOR_Q4_0, 2},   {"q4_k", TENSOR_Q4_K, TENSOR_Q4_K, 14},
    {"q6_k", TENSOR_Q6_K, TENSOR_Q6_K, 18},  {"q4_k_m", TENSOR_Q4_K, TENSOR_Q6_K, 15},
    /* issue 22: one type throughout (llama.cpp's MOSTLY_* numbers) */
    {"q4_1", TENSOR_Q4_1, TENSOR_Q4_1, 3},   {"q5_0", TENSOR_Q5_0, TENSOR_Q5_0, 8},
    {"q5_1", TENSOR_Q5_1, TENSOR_Q5_1, 9},   {"iq4_nl", TENSOR_IQ4_NL, TENSOR_IQ4_NL, 25},
    {"iq4_xs", TENSOR_IQ4_XS, TENSOR_IQ4_XS, 30},
    /* every matrix one type (file types of the nearest llama.cpp mix) */
    {"q2_k", TENSOR_Q2_K, TENSOR_Q2_K, 10},  {"q3_k", TENSOR_Q3_K, TENSOR_Q3_K, 11},
    {"q5_k", TENSOR_Q5_K, TENSOR_Q5_K, 16},
    /* llama.cpp's mixes: base type, output Q6_K, mk_mix_type for the layer matrices */
    {"q2_k_mix", TENSOR_Q2_K, TENSOR_Q6_K, 10},
    {"q3_k_s", TENSOR_Q3_K, TENSOR_Q6_K, 11},
    {"q3_k_m", TENSOR_Q3_K, TENSOR_Q6_K, 12},
    {"q3_k_l", TENSOR_Q3_K, TENSOR_Q6_K, 13},
    {"q4_k_s", TENSOR_Q4_K, TENSOR_Q6_K, 14},
    {"q5_k_s", TENSOR_Q5_K, TENSOR_Q6_K, 16},
    {"q5_k_m", TENSOR_Q5_K, TENSOR_Q6_K, 17},
};

/* The mix rule of each llama.cpp mix scheme, by name (the others: MK_MIX_NONE). */
static const struct { const char *name; int mix; } mk_mixes[] = {
    {"q2_k_mix", MK_MIX_Q2_K},   {"q3_k_s", MK_MIX_BASE},     {"q3_k_m", MK_MIX_Q3_K_M}, {"q3_k_l", MK_MIX_Q3_K_L},
    {"q4_k_s", MK_MIX_Q4_K_S}, {"q5_k_s", MK_MIX_BASE}, {"q5_k_m", MK_MIX_Q5_K_M},
};

static int mk_scheme_mix(const mk_scheme *sc) {
    for (size_t i = 0; i < sizeof mk_mixes / sizeof mk_mixes[0]; i++)
        if (!strcmp(mk_mixes[i].name, sc->name)) return mk_mixes[i].mix;
    return MK_MIX_NONE;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every
 * third in between. */
static int mk_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The type of layer matrix `suffix` in layer i of n under a mix (llama.cpp's
 * rules; attn_v's index is the layer index, one attn_v per layer): attn_v,
 * attn_output and ffn_down get more bits, everything else the base type. */
static uint32_t mk_mix_type(const mk_scheme *sc, const char *suffix, int i, int n, int n_gqa) {
    const int v = !strcmp(suffix, "attn_v.weight"), o = !strcmp(suffix, "attn_output.weight"),
              down = !strcmp(suffix, "ffn_down.weight");
    switch (mk_scheme_mix(sc)) {
    case MK_MIX_Q2_K:
        if (v) return n_gqa >= 4 ? TENSOR_Q4_K : TENSOR_Q3_K;
        if (o || down) return TENSOR_Q3_K;
        break;
    case MK_MIX_Q3_K_M:
        if (v) return i < 2 ? TENSOR_Q5_K : TENSOR_Q4_K;
        if (down) return i < n / 16 ? TENSOR_Q5_K : TENSOR_Q4_K;
        if (o) return TENSOR_Q4_K;
        break;
    case MK_MIX_Q3_K_L:
        if (v || o || down) return TENSOR_Q5_K;
        break;
    case MK_MIX_Q4_K_S:
        if (v && i < 4) return TENSOR_Q5_K;
        if (down && i < n / 8) return TENSOR_Q5_K;
        break;
    case MK_MIX_Q5_K_M:
        if ((v || down) && mk_more_bits(i, n)) return TENSOR_Q6_K;
        break;
    default: break;
    }
    return sc->base;
}

/* The scheme named `name` (case-insensitive), or NULL. */
static const mk_scheme *mk_scheme_find(const char *name) {
    for (size_t i = 0; i < sizeof mk_schemes / sizeof mk_schemes[0]; i++)
        if (strcasecmp(mk_schemes[i].name, name) == 0) return &mk_schemes[i];
    return NULL;
}

/* ---------------------------------------------------------------- random numbers */

/* splitmix64's finaliser: a bijective 64-bit mixer. */
static inline uint64_t mk_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The stream key of a tensor: its name hashed (FNV-1a) and mixed with the seed. */
static uint64_t mk_tensor_key(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mk_mix64(mk_mix64(seed + 0x9E3779B97F4A7C15ull) ^ h);
}

/* Two independent N(0,1) values for pair number `pair` of the stream `key`
 * (Box-Muller on one 64-bit draw: 24 bits for the radius, 24 for the angle). */
static inline void mk_gauss_pair(uint64_t key, uint64_t pair, float *z0, float *z1) {
    uint64_t h = mk_mix64(key + pair * 0x9E3779B97F4A7C15ull);
    float u1 = (float)((h >> 40) + 1) * (1.0f / 16777216.0f); /* (0, 1] */
    float u2 = (float)(h & 0xFFFFFF) * (1.0f / 16777216.0f);  /* [0, 1) */
    float r = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincosf(6.28318530717958647692f * u2, &s, &c);
    *z0 = r * c;
    *z1 = r * s;
}

/* dst[i] = mean + std * N(0,1) for elements first .. first+n-1 of stream `key`;
 * element e is component e&1 of pair e>>1, whatever the row boundaries. */
static void mk_gauss_fill(uint64_t key, uint64_t first, float *dst, int64_t n, float mean, float std) {
    int64_t i = 0;
    uint64_t e = first;
    float z0, z1;
    if (n > 0 && (e & 1)) {
        mk_gauss_pair(key, e >> 1, &z0, &z1);
        dst[i++] = mean + std * z1;
        e++;
    }
    for (; i + 1 < n; i += 2, e += 2) {
        mk_gauss_pair(key, e >> 1, &z0, &z1);
        dst[i] = mean + std * z0;
        dst[i + 1] = mean + std * z1;
    }
    if (i < n) {
        mk_gauss_pair(key, e >> 1, &z0, &z1);
        dst[i] = mean + std * z0;
    }
}

/* ---------------------------------------------------------------- vocabulary */

typedef struct mk_vocab {
    char **tokens;   /* [n] */
    int32_t *types;  /* [n] llama.cpp token types: 1 normal, 3 control, 4 user-defined, 5 unused */
    int64_t n;
    char **merges;   /* [n_merges] "a b" */
    int64_t n_merges;
    int32_t eos, bos, pad;
} mk_vocab;

enum { MK_TOK_NORMAL = 1, MK_TOK_CONTROL = 3, MK_TOK_USER = 4, MK_TOK_UNUSED = 5 };

/* Free a vocabulary's strings and arrays (not the struct). */
static void mk_vocab_free(mk_vocab *v) {
    if (v->tokens)
        for (int64_t i = 0; i < v->n; i++) free(v->tokens[i]);
    for (int64_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

/* The id of token `s`, or -1. Linear: called a handful of times. */
static int32_t mk_vocab_find(const mk_vocab *v, const char *s) {
    for (int64_t i = 0; i < v->n; i++)
        if (v->tokens[i] && strcmp(v->tokens[i], s) == 0) return (int32_t)i;
    return -1;
}

/* Append the UTF-8 encoding of code point cp (< 0x800) to out; returns bytes written. */
static int mk_utf8(unsigned cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* GPT-2's byte-to-unicode map: the printable bytes map to themselves, the others
 * to U+0100 upwards in byte order. order[k] is the byte of token id k (printable
 * bytes first, as in GPT-2 and Qwen vocabularies); cp[b] the code point of byte b. */
static void mk_byte_map(unsigned cp[256], uint8_t order[256]) {
    int k = 0, extra = 0;
    bool printable[256];
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    for (int b = 0; b < 256; b++)
        if (printable[b]) { cp[b] = (unsigned)b; order[k++] = (uint8_t)b; }
    for (int b = 0; b < 256; b++)
        if (!printable[b]) { cp[b] = 256u + (unsigned)extra++; order[k++] = (uint8_t)b; }
}

/* Common English pieces, most useful first: the built-in merges build each of them
 * left to right (" the" -> "Ġt", "Ġth", "Ġthe"). */
static const char *const mk_words[] = {
    " the", " and", " of", " to", " a", " in", " is", " that", " it", "ing", " for", " I",
    " you", " be", " on", "ed", " with", " as", " was", " this", " are", " not", "er", " we",
    " have", " but", " what", " can", " they", " so", " if", " do", " or", " at", " by",
    " from", " an", " all", " will", " one", " there", " which", "\n\n", " The", " Let",
    " me", " think", " about", " answer", " question", " step", " first", " then", " would",
    " could", " should", " number", " how", " more", " time", " make", " like", " has",
    " had", " been", " were", " he", " she", " his", " her", " my", " your", " our", " out",
    " up", " no", " yes", "Okay", " wait", " maybe", " because", " also", " some", " other",
    " than", " into", " only", " new", " just", " know", " get", " see", " way", " two",
    " three", " use", " work", " each", " these", " when", " where", " who", " why", " very",
    " much", " many", " most", " over", " such", " even", " well", " hello", " world",
    " Hello", " user", " assistant", " system", " model", "tion", " need", " right",
    " good", " here", " same", " look", " problem", " solve", " check", " sure", " let",
    " So", " But", " And", " It", " We", " This", " In", " If", " number", " value",
};

static const char *const mk_specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};
static const int32_t mk_special_types[] = {MK_TOK_CONTROL, MK_TOK_CONTROL, MK_TOK_CONTROL, MK_TOK_USER, MK_TOK_USER};

/* Fill tokens [n_used, n_vocab) with "[PAD<id>]" of type unused. 0 or -1. */
static int mk_vocab_pad(mk_vocab *v, int64_t n_vocab) {
    for (int64_t i = 0; i < n_vocab; i++) {
        if (v->tokens[i]) continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%" PRId64 "]", i);
        if (!(v->tokens[i] = mk_strdup(buf))) return -1;
        v->types[i] = MK_TOK_UNUSED;
    }
    return 0;
}

/* Allocate n_vocab empty token slots and room for max_merges merges. 0 or -1. */
static int mk_vocab_init(mk_vocab *v, int64_t n_vocab, int64_t max_merges) {
    memset(v, 0, sizeof *v);
    v->tokens = calloc((size_t)n_vocab, sizeof *v->tokens);
    v->types = calloc((size_t)n_vocab, sizeof *v->types);
    v->merges = calloc((size_t)(max_merges ? max_merges : 1), sizeof *v->merges);
    if (!v->tokens || !v->types || !v->merges) return mk_fail("out of memory for a %" PRId64 "-token vocabulary", n_vocab);
    v->n = n_vocab;
    return 0;
}

/* The built-in byte-level vocabulary: 256 byte tokens, merges of common English
 * pieces (as many as fit), the five Qwen specials, then padding up to n_vocab.
 * 0, or -1 with a message. */
static int mk_vocab_builtin(mk_vocab *v, int64_t n_vocab) {
    const int64_t n_special = (int64_t)(sizeof mk_specials / sizeof mk_specials[0]);
    if (n_vocab < 256 + n_special)
        return mk_fail("--vocab %" PRId64 " is too small for the built-in vocabulary (at least %" PRId64 ")",
                       n_vocab, 256 + n_special);
    int64_t max_merges = n_vocab - 256 - n_special;
    if (max_merges > 1000) max_merges = 1000;
    if (mk_vocab_init(v, n_vocab, max_merges) != 0) return -1;

    unsigned cp[256];
    uint8_t order[256];
    mk_byte_map(cp, order);
    int64_t n = 0;
    for (int k = 0; k < 256; k++) {
        char buf[4] = {0};
        mk_utf8(cp[order[k]], buf);
        if (!(v->tokens[n] = mk_strdup(buf))) return -1;
        v->types[n++] = MK_TOK_NORMAL;
    }
    for (size_t w = 0; w < sizeof mk_words / sizeof mk_words[0] && v->n_merges < max_merges; w++) {
        /* the word in byte-level form, and the byte offset of each character */
        char enc[64];
        int ends[32], len = 0, nch = 0;
        for (const unsigned char *p = (const unsigned char *)mk_words[w]; *p && nch < 31; p++) {
            len += mk_utf8(cp[*p], enc + len);
            ends[nch++] = len;
        }
        for (int c = 1; c < nch && v->n_merges < max_merges; c++) {
            char prefix[64], left[64], merge[130];
            memcpy(prefix, enc, (size_t)ends[c]);
            prefix[ends[c]] = 0;
            if (mk_vocab_find(v, prefix) >= 0) continue;
            memcpy(left, enc, (size_t)ends[c - 1]);
            left[ends[c - 1]] = 0;
            snprintf(merge, sizeof merge, "%s %.*s", left, ends[c] - ends[c - 1], enc + ends[c - 1]);
            if (!(v->merges[v->n_merges] = mk_strdup(merge)) || !(v->tokens[n] = mk_strdup(prefix))) return -1;
            v->n_merges++;
            v->types[n++] = MK_TOK_NORMAL;
        }
    }
    for (int64_t s = 0; s < n_special; s++) {
        if (!(v->tokens[n] = mk_strdup(mk_specials[s]))) return -1;
        v->types[n++] = mk_special_types[s];
    }
    return mk_vocab_pad(v, n_vocab);
}

/* Largest token id a tokenizer.json may use (well above Qwen's 151665). */
#define MK_MAX_TOKENS (1 << 22)

/* Read a Hugging Face tokenizer.json: model.vocab (token -> id), model.merges ("a b"
 * or ["a", "b"]), added_tokens ({id, content, special}). *n_vocab is the vocabulary
 * size wanted; when the file needs more and !vocab_fixed it grows to the token
 * count rounded up to 128. 0, or -1 with a message. */
static int mk_vocab_from_json(mk_vocab *v, const char *path, int64_t *n_vocab, bool vocab_fixed) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return mk_fail("%s:%d: %s", path, jerr.line, jerr.text);
    int rc = -1;
    json_t *model = json_object_get(root, "model");
    json_t *vocab = model ? json_object_get(model, "vocab") : NULL;
    json_t *merges = model ? json_object_get(model, "merges") : NULL;
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) { log_msg("%s: no model.vocab object", path); goto done; }
    if (merges && !json_is_array(merges)) { log_msg("%s: model.merges is not an array", path); goto done; }
    if (added && !json_is_array(added)) { log_msg("%s: added_tokens is not an array", path); goto done; }

    /* the number of ids used */
    int64_t n_tok = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= MK_MAX_TOKENS) {
            log_msg("%s: model.vocab[\"%s\"]: bad id", path, key);
            goto done;
        }
        if (id + 1 > n_tok) n_tok = id + 1;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MK_MAX_TOKENS ||
            !json_is_string(json_object_get(val, "content"))) {
            log_msg("%s: added_tokens[%zu]: needs an id and a content", path, i);
            goto done;
        }
        if (json_integer_value(id) + 1 > n_tok) n_tok = json_integer_value(id) + 1;
    }
    if (n_tok > *n_vocab) {
        if (vocab_fixed) {
            log_msg("%s has %" PRId64 " tokens, more than --vocab %" PRId64, path, n_tok, *n_vocab);
            goto done;
        }
        *n_vocab = (n_tok + 127) / 128 * 128;
        log_msg("%s has %" PRId64 " tokens: vocabulary size raised to %" PRId64, path,
                n_tok, *n_vocab);
    }
    int64_t n_merges = merges ? (int64_t)json_array_size(merges) : 0;
    if (mk_vocab_init(v, *n_vocab, n_merges) != 0) goto done;

    json_object_foreach(vocab, key, val) {
        int64_t id = json_integer_value(val);
        if (v->tokens[id]) { log_msg("%s: id %" PRId64 " used twice", path, id); goto done; }
        if (!(v->tokens[id] = mk_strdup(key))) goto done;
        v->types[id] = MK_TOK_NORMAL;
    }
    json_array_foreach(added, i, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        if (v->tokens[id] && strcmp(v->tokens[id], content) != 0) {
            log_msg("%s: added token %" PRId64 " \"%s\" clashes with \"%s\"", path, id, content, v->tokens[id]);
            goto done;
        }
        if (!v->tokens[id] && !(v->tokens[id] = mk_strdup(content))) goto done;
        v->types[id] = json_is_true(json_object_get(val, "special")) ? MK_TOK_CONTROL : MK_TOK_USER;
    }
    json_array_foreach(merges, i, val) {
        char *m = NULL;
        if (json_is_string(val)) {
            m = mk_strdup(json_string_value(val));
        } else if (json_is_array(val) && json_array_size(val) == 2 && json_is_string(json_array_get(val, 0)) &&
                   json_is_string(json_array_get(val, 1))) {
            const char *a = json_string_value(json_array_get(val, 0)), *b = json_string_value(json_array_get(val, 1));
            size_t la = strlen(a), lb = strlen(b);
            if ((m = mk_alloc(la + lb + 2))) {
                memcpy(m, a, la);
                m[la] = ' ';
                memcpy(m + la + 1, b, lb + 1);
            }
        } else {
            log_msg("%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            goto done;
        }
        if (!m) goto done;
        v->merges[v->n_merges++] = m;
    }
    if (mk_vocab_pad(v, *n_vocab) != 0) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* Set eos (<|im_end|>, else <|endoftext|>) and bos = padding = <|endoftext|> (else eos). */
static int mk_vocab_special_ids(mk_vocab *v) {
    int32_t eot = mk_vocab_find(v, "<|endoftext|>");
    v->eos = mk_vocab_find(v, "<|im_end|>");
    if (v->eos < 0) v->eos = eot;
    if (v->eos < 0) return mk_fail("the vocabulary has neither <|im_end|> nor <|endoftext|>");
    v->bos = v->pad = eot >= 0 ? eot : v->eos;
    return 0;
}

/* ---------------------------------------------------------------- chat template */

/* ChatML as QwQ uses it: an optional system turn, user/assistant turns (earlier
 * assistant turns keep only what follows </think>), tool results as user turns
 * wrapped in <tool_response>, and a generation prompt that opens the thinking. */
static const char mk_chat_template[] =
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' or (message['role'] == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{%- set answer = message['content'].split('</think>')[-1].lstrip('\\n') %}"
    "{{- '<|im_start|>assistant\\n' + answer + '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' }}"
    "{%- endif %}";

/* ---------------------------------------------------------------- tensor plan */

/* ---------------------------------------------------------------- weights file */

/* One tensor of a weights file: rows of ne0 values, f16 or f32, either all ne1
 * rows or n_rows of them (row_of[r]: index among the stored rows, -1: not
 * stored), the others equal to `fill`. */
typedef struct mk_wtensor {
    char name[48];
    int64_t ne0, ne1;
    bool f16;
    const uint8_t *data;   /* stored rows */
    int32_t *row_of;       /* [ne1], or NULL: every row stored */
    const uint8_t *fill;   /* float32[ne0] (unaligned), when row_of */
    bool used;             /* claimed by a tensor of the plan */
} mk_wtensor;

typedef struct mk_weights {
    uint8_t *buf;          /* the whole file */
    size_t size;
    json_t *header;
    mk_wtensor *t;
    size_t n;
} mk_weights;

typedef struct mk_tensor {
    char name[48];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne0, ne1;   /* ne0: row length; ne1: rows (1 for vectors) */
    float mean, std;
    uint64_t key;       /* random stream */
    const int32_t *zero_rows_of_type; /* [ne1] token types: rows of unused tokens are zero */
    const mk_wtensor *src;            /* trained values (--weights), or NULL: random */
    size_t row_bytes;
} mk_tensor;

typedef struct mk_plan {
    mk_tensor *t;
    int64_t n;
    uint64_t params, data_bytes;
    int64_t max_ne0;
} mk_plan;

/* Choose the type of a matrix with rows of ne0: `want`, or q8_0 / f16 when ne0 is
 * not a whole number of its blocks (said once per tensor role on stderr). */
static uint32_t mk_matrix_type(uint32_t want, int64_t ne0, const char *name, char said[][48], int *n_said) {
    const tensor_type_info *ti = tensor_type_get(want);
    if (ne0 % ti->block_elems == 0) return want;
    uint32_t alt = (ti->block_elems != QK8_0 && ne0 % QK8_0 == 0) ? TENSOR_Q8_0 : TENSOR_F16;
    const char *role = strncmp(name, "blk.", 4) == 0 ? strchr(name + 4, '.') + 1 : name;
    for (int i = 0; i < *n_said; i++)
        if (strcmp(said[i], role) == 0) return alt;
    if (*n_said < 16) snprintf(said[(*n_said)++], 48, "%s", role);
    log_msg("%s: row length %" PRId64 " is not a multiple of %u for %s: using %s%s", name, ne0,
            ti->block_elems, ti->name, tensor_type_get(alt)->name,
            strncmp(name, "blk.", 4) == 0 ? " (in every layer)" : "");
    return alt;
}

/* What a tensor is, for its type: a vector (always F32), an ordinary matrix, or
 * one of the matrices q4_k_m keeps in more bits. */
typedef enum mk_role { MK_VECTOR, MK_MATRIX, MK_MATRIX_STRONG } mk_role;

typedef struct mk_plan_ctx {
    mk_plan *p;
    const mk_scheme *sc;
    char said[16][48]; /* tensor roles whose fallback was already reported */
    int n_said;
} mk_plan_ctx;

/* Append one tensor to the plan (the array has room for all). */
static void mk_plan_add(mk_plan_ctx *c, const char *name, mk_role role, int64_t ne0, int64_t ne1, float mean,
                        float std) {
    mk_tensor *t = &c->p->t[c->p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->n_dims = role == MK_VECTOR ? 1 : 2;
    t->type = role == MK_VECTOR ? TENSOR_F32
                                : mk_matrix_type(role == MK_MATRIX_STRONG ? c->sc->strong : c->sc->base, ne0, t->name,
                                                 c->said, &c->n_said);
    t->mean = mean;
    t->std = std;
}

/* Build the list of tensors, in file order, with types, shapes and statistics.
 * 0, or -1 with a message. */
static int mk_plan_build(mk_plan *p, const mk_hparams *hp, const mk_scheme *sc, const mk_vocab *v, uint64_t seed) {
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const model_hparams mhp = {.n_embd = hp->n_embd, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
                               .head_dim = hp->n_embd / hp->n_head, .n_ff = hp->n_ff};
    mk_plan_ctx c = {.p = p, .sc = sc};
    p->n = 0;
    p->t = calloc((size_t)(3 + QWEN2_LAYER_TENSORS * (int64_t)hp->n_layer), sizeof *p->t);
    if (!p->t) return mk_fail("out of memory");

    /* Scales: a unit-variance residual stream; q, k, v and gate/up keep unit
     * variance, o and down add half a unit per layer; the head gives logits of
     * standard deviation ~1 so greedy decoding depends on the context. */
    const float s_in = 1.0f / sqrtf((float)E);
    mk_plan_add(&c, QWEN2_TOKEN_EMBD, MK_MATRIX, E, V, 0.0f, 1.0f);      /* [n_embd, n_vocab] */
    /* The layers as qwen2.h lists them: norms ~1, biases small; matrices std =
     * gain / sqrt(fan_in): unit output variance, halved for the two that add
     * into the residual stream; the *_m mixes keep the strong ones in more bits. */
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        for (size_t k = 0; k < QWEN2_LAYER_TENSORS; k++) {
            const qwen2_tensor *d = &qwen2_layer_tensors[k];
            const int64_t ne0 = qwen2_dim_size(&mhp, d->ne0), ne1 = qwen2_dim_size(&mhp, d->ne1);
            char name[48];
            qwen2_layer_name(name, sizeof name, (int32_t)l, d);
            if (d->kind == QWEN2_NORM) mk_plan_add(&c, name, MK_VECTOR, ne0, ne1, 1.0f, 0.1f);
            else if (d->kind == QWEN2_BIAS) mk_plan_add(&c, name, MK_VECTOR, ne0, ne1, 0.0f, 0.02f);
            else
                mk_plan_add(&c, name, d->strong ? MK_MATRIX_STRONG : MK_MATRIX, ne0, ne1, 0.0f,
                            (d->residual ? 0.5f : 1.0f) / sqrtf((float)ne0));
            if (d->kind == QWEN2_MATRIX && mk_scheme_mix(sc) != MK_MIX_NONE) {
                /* the llama.cpp mixes: the layer rule, not the strong flag */
                mk_tensor *t = &p->t[p->n - 1];
                t->type = mk_matrix_type(mk_mix_type(sc, d->suffix, (int)l, (int)hp->n_layer,
                                                     (int)(hp->n_head / hp->n_head_kv)),
                                         ne0, t->name, c.said, &c.n_said);
            }
        }
    }
    mk_plan_add(&c, QWEN2_OUTPUT_NORM, MK_VECTOR, E, 1, 1.0f, 0.1f);       /* [n_embd] */
    mk_plan_add(&c, QWEN2_OUTPUT, MK_MATRIX_STRONG, E, V, 0.0f, s_in);    /* [n_embd, n_vocab] */
    /* padding tokens get zero head rows (logit 0), as untrained rows would: greedy
     * decoding then picks real tokens even when most of the vocabulary is padding */
    p->t[p->n - 1].zero_rows_of_type = v->types;

    p->params = p->data_bytes = 0;
    p->max_ne0 = 0;
    for (int64_t i = 0; i < p->n; i++) {
        mk_tensor *t = &p->t[i];
        t->key = mk_tensor_key(seed, t->name);
        t->row_bytes = tensor_row_bytes(t->type, t->ne0);
        if (t->row_bytes == 0) return mk_fail("%s: type %u cannot hold rows of %" PRId64, t->name, t->type, t->ne0);
        p->params += (uint64_t)(t->ne0 * t->ne1);
        p->data_bytes += ((uint64_t)t->row_bytes * (uint64_t)t->ne1 + GGUF_DEFAULT_ALIGNMENT - 1) /
                         GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
        if (t->ne0 > p->max_ne0) p->max_ne0 = t->ne0;
    }
    return 0;
}

/* Row r of a weights-file tensor as float32 into dst[ne0]. */
static void mk_weights_row(const mk_wtensor *w, int64_t r, float *dst) {
    int64_t k = w->row_of ? w->row_of[r] : r;
    if (k < 0) {
        memcpy(dst, w->fill, (size_t)w->ne0 * sizeof(float));
        return;
    }
    const uint8_t *src = w->data + (size_t)k * (size_t)w->ne0 * (w->f16 ? 2u : 4u);
    if (!w->f16) {
        memcpy(dst, src, (size_t)w->ne0 * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < w->ne0; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = fp16_to_f32(h);
    }
}

/* Free a loaded weights file (not the struct). */
static void mk_weights_free(mk_weights *w) {
    for (size_t i = 0; i < w->n; i++) free(w->t[i].row_of);
    free(w->t);
    json_decref(w->header);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* The bytes [off, off + len) of the data section, or NULL when outside the file. */
static const uint8_t *mk_weights_span(const mk_weights *w, size_t data0, json_t *off, uint64_t len) {
    if (!json_is_integer(off) || json_integer_value(off) < 0) return NULL;
    uint64_t o = (uint64_t)json_integer_value(off);
    if (o > w->size - data0 || len > w->size - data0 - o) return NULL;
    return w->buf + data0 + o;
}

/* Read a weights file: b"BATONW1\n", a little-endian u64 n, n bytes of JSON, zero
 * padding to a multiple of 32, then the data. The JSON:
 *   {"hparams": {"name", "basename", "n_layer", "n_embd", "n_head", "n_head_kv",
 *                "n_ff", "n_ctx", "rope_base", "rms_eps"},
 *    "tensors": [{"name", "ne": [ne0, ne1], "dtype": "f16" | "f32",
 *                 "offset": first stored row, bytes from the data start,
 *                 and optionally "n_rows", "row_ids" (offset of int32[n_rows]: the
 *                 rows stored, in that order), "fill" (offset of float32[ne0]: the
 *                 value of every row not stored)}]}
 * Every offset and length is checked against the file size. 0, or -1 with a message. */
static int mk_weights_load(mk_weights *w, const char *path) {
    memset(w, 0, sizeof *w);
    FILE *f = fopen(path, "rb");
    if (!f) return mk_fail("cannot open %s: %s", path, strerror(errno));
    int rc = -1;
    if (fseeko(f, 0, SEEK_END) != 0) { log_msg("%s: cannot seek", path); goto done; }
    off_t sz = ftello(f);
    if (sz < 16 || fseeko(f, 0, SEEK_SET) != 0) { log_msg("%s: not a weights file (too short)", path); goto done; }
    w->size = (size_t)sz;
    if (!(w->buf = mk_alloc(w->size))) goto done;
    if (fread(w->buf, 1, w->size, f) != w->size) { log_msg("%s: read error", path); goto done; }
    if (memcmp(w->buf, "BATONW1\n", 8) != 0) { log_msg("%s: not a weights file (no BATONW1 magic)", path); goto done; }
    uint64_t hlen;
    memcpy(&hlen, w->buf + 8, 8);
    if (hlen > w->size - 16) { log_msg("%s: header length %" PRIu64 " beyond the file", path, hlen); goto done; }
    size_t data0 = (size_t)((16 + hlen + 31) / 32 * 32);
    if (data0 > w->size) { log_msg("%s: truncated after the header", path); goto done; }
    json_error_t je;
    if (!(w->header = json_loadb((const char *)w->buf + 16, (size_t)hlen, 0, &je))) {
        log_msg("%s: header: %s", path, je.text);
        goto done;
    }
    json_t *ts = json_object_get(w->header, "tensors");
    if (!json_is_object(json_object_get(w->header, "hparams")) || !json_is_array(ts)) {
        log_msg("%s: header needs \"hparams\" and \"tensors\"", path);
        goto done;
    }
    w->n = json_array_size(ts);
    if (!(w->t = calloc(w->n ? w->n : 1, sizeof *w->t))) { log_msg("out of memory"); goto done; }
    for (size_t i = 0; i < w->n; i++) {
        json_t *e = json_array_get(ts, i), *ne = json_object_get(e, "ne");
        mk_wtensor *t = &w->t[i];
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *dtype = json_string_value(json_object_get(e, "dtype"));
        if (!name || strlen(name) >= sizeof t->name || !dtype || (strcmp(dtype, "f16") && strcmp(dtype, "f32")) ||
            !json_is_array(ne) || json_array_size(ne) != 2 || !json_is_integer(json_array_get(ne, 0)) ||
            !json_is_integer(json_array_get(ne, 1))) {
            log_msg("%s: tensors[%zu] needs a name, \"dtype\": \"f16\" or \"f32\" and \"ne\": [ne0, ne1]", path, i);
            goto done;
        }
        snprintf(t->name, sizeof t->name, "%s", name);
        t->ne0 = json_integer_value(json_array_get(ne, 0));
        t->ne1 = json_integer_value(json_array_get(ne, 1));
        t->f16 = !strcmp(dtype, "f16");
        if (t->ne0 < 1 || t->ne1 < 1 || t->ne0 > (1 << 20) || t->ne1 > MK_MAX_TOKENS) {
            log_msg("%s: %s: bad shape [%" PRId64 ", %" PRId64 "]", path, name, t->ne0, t->ne1);
            goto done;
        }
        int64_t rows = t->ne1;
        json_t *ids = json_object_get(e, "row_ids");
        if (ids) {
            json_t *nr = json_object_get(e, "n_rows");
            rows = json_is_integer(nr) ? json_integer_value(nr) : -1;
            if (rows < 0 || rows > t->ne1) { log_msg("%s: %s: bad n_rows", path, name); goto done; }
            const uint8_t *idp = mk_weights_span(w, data0, ids, (uint64_t)rows * 4);
            t->fill = mk_weights_span(w, data0, json_object_get(e, "fill"), (uint64_t)t->ne0 * 4);
            if (!idp || !t->fill) { log_msg("%s: %s: row_ids or fill outside the file", path, name); goto done; }
            if (!(t->row_of = malloc((size_t)t->ne1 * sizeof *t->row_of))) { log_msg("out of memory"); goto done; }
            for (int64_t r = 0; r < t->ne1; r++) t->row_of[r] = -1;
            for (int64_t k = 0; k < rows; k++) {
                int32_t id;
                memcpy(&id, idp + 4 * k, 4);
                if (id < 0 || id >= t->ne1 || t->row_of[id] >= 0) {
                    log_msg("%s: %s: row id %d out of range or repeated", path, name, (int)id);
                    goto done;
                }
                t->row_of[id] = (int32_t)k;
            }
        }
        t->data = mk_weights_span(w, data0, json_object_get(e, "offset"),
                                  (uint64_t)rows * (uint64_t)t->ne0 * (t->f16 ? 2u : 4u));
        if (!t->data) { log_msg("%s: %s: data outside the file", path, name); goto done; }
    }
    rc = 0;
done:
    fclose(f);
    if (rc != 0) mk_weights_free(w);
    return rc;
}

/* Take the shapes and names of hp from the weights file's "hparams". 0, or -1. */
static int mk_weights_hparams(const mk_weights *w, const char *path, mk_hparams *hp) {
    json_t *h = json_object_get(w->header, "hparams");
    static const struct { const char *key; size_t off; } u32s[] = {
        {"n_layer", offsetof(mk_hparams, n_layer)}, {"n_embd", offsetof(mk_hparams, n_embd)},
        {"n_head", offsetof(mk_hparams, n_head)},   {"n_head_kv", offsetof(mk_hparams, n_head_kv)},
        {"n_ff", offsetof(mk_hparams, n_ff)},       {"n_ctx", offsetof(mk_hparams, n_ctx)},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        json_t *v = json_object_get(h, u32s[i].key);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 24))
            return mk_fail("%s: hparams.%s must be a positive integer", path, u32s[i].key);
        *(uint32_t *)(void *)((char *)hp + u32s[i].off) = (uint32_t)json_integer_value(v);
    }
    json_t *base = json_object_get(h, "rope_base"), *eps = json_object_get(h, "rms_eps");
    if (!json_is_number(base) || !json_is_number(eps) || json_number_value(base) <= 0 || json_number_value(eps) <= 0)
        return mk_fail("%s: hparams.rope_base and rms_eps must be positive numbers", path);
    hp->rope_base = (float)json_number_value(base);
    hp->rms_eps = (float)json_number_value(eps);
    if (hp->n_embd % hp->n_head || hp->n_head % hp->n_head_kv || (hp->n_embd / hp->n_head) % 2)
        return mk_fail("%s: n_embd %u, n_head %u, n_head_kv %u do not fit (even head_dim, whole groups)", path,
                       hp->n_embd, hp->n_head, hp->n_head_kv);
    if (json_is_string(json_object_get(h, "name"))) hp->name = json_string_value(json_object_get(h, "name"));
    if (json_is_string(json_object_get(h, "basename")))
        hp->basename = json_string_value(json_object_get(h, "basename"));
    return 0;
}

/* Point every tensor of the plan at its weights-file tensor: same name, same
 * shape; every weights-file tensor must be claimed. 0, or -1 with a message. */
static int mk_weights_attach(mk_weights *w, const char *path, mk_plan *p) {
    for (int64_t i = 0; i < p->n; i++) {
        mk_tensor *t = &p->t[i];
        mk_wtensor *s = NULL;
        for (size_t k = 0; k < w->n && !s; k++)
            if (!strcmp(w->t[k].name, t->name)) s = &w->t[k];
        if (!s) return mk_fail("%s has no tensor %s", path, t->name);
        if (s->ne0 != t->ne0 || s->ne1 != t->ne1)
            return mk_fail("%s: %s is [%" PRId64 ", %" PRId64 "], the model needs [%" PRId64 ", %" PRId64 "]", path,
                           t->name, s->ne0, s->ne1, t->ne0, t->ne1);
        s->used = true;
        t->src = s;
    }
    for (size_t k = 0; k < w->n; k++)
        if (!w->t[k].used) return mk_fail("%s: tensor %s is not part of the model", path, w->t[k].name);
    return 0;
}

/* ---------------------------------------------------------------- generation */

typedef struct mk_job {
    const mk_tensor *t;
    int64_t row0, row1;  /* rows [row0, row1) */
    uint8_t *out;        /* (row1 - row0) * row_bytes */
    float *scratch;      /* [ne0] */
    int failed;
} mk_job;

/* Generate and encode the rows of one job (rows of unused tokens in the output
 * head are zero). Sets job->failed if the encoder fails. */
static void *mk_job_run(void *arg) {
    mk_job *j = arg;
    const mk_tensor *t = j->t;
    for (int64_t r = j->row0; r < j->row1; r++) {
        uint8_t *dst = j->out + (size_t)(r - j->row0) * t->row_bytes;
        if (t->src) {
            float *row = t->type == TENSOR_F32 ? (float *)(void *)dst : j->scratch;
            mk_weights_row(t->src, r, row);
            if (t->type != TENSOR_F32 && quant_quantize_row(t->type, row, dst, t->ne0) != t->row_bytes) {
                j->failed = 1;
                return NULL;
            }
            continue;
        }
        if (t->zero_rows_of_type && t->zero_rows_of_type[r] == MK_TOK_UNUSED) {
            memset(j->scratch, 0, (size_t)t->ne0 * sizeof(float));
            if (quant_quantize_row(t->type, j->scratch, dst, t->ne0) != t->row_bytes) j->failed = 1;
            if (j->failed) return NULL;
            continue;
        }
        if (t->type == TENSOR_F32) {
            mk_gauss_fill(t->key, (uint64_t)(r * t->ne0), (float *)(void *)dst, t->ne0, t->mean, t->std);
            continue;
        }
        mk_gauss_fill(t->key, (uint64_t)(r * t->ne0), j->scratch, t->ne0, t->mean, t->std);
        if (quant_quantize_row(t->type, j->scratch, dst, t->ne0) != t->row_bytes) {
            j->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

typedef struct mk_progress {
    double t0, last;
    uint64_t done, total;
    bool tty, shown;
} mk_progress;

/* Account `bytes` more written; after the first second, report percent and MB/s
 * (every second on a terminal, every 10 s otherwise). */
static void mk_progress_add(mk_progress *pr, uint64_t bytes) {
    pr->done += bytes;
    double now = clock_s();
    if (now - pr->t0 < 1.0 || now - pr->last < (pr->tty ? 1.0 : 10.0)) return;
    pr->last = now;
    pr->shown = true;
    fprintf(stderr, "%sbaton-mkmodel: %5.1f%%  %.0f / %.0f MB  %.1f MB/s%s", pr->tty ? "\r" : "",
            100.0 * (double)pr->done / (double)pr->total, (double)pr->done / 1e6, (double)pr->total / 1e6,
            (double)pr->done / 1e6 / (now - pr->t0), pr->tty ? "" : "\n");
    fflush(stderr);
}

/* Generate every tensor of the plan and stream it to `out` with `threads` threads.
 * 0, or -1 with a message. */
static int mk_write_data(gguf_writer *w, FILE *out, const mk_plan *p, int threads, mk_progress *pr) {
    int rc = -1;
    size_t max_row = 0;
    for (int64_t i = 0; i < p->n; i++)
        if (p->t[i].row_bytes > max_row) max_row = p->t[i].row_bytes;
    size_t buf_bytes = max_row > MK_CHUNK_BYTES ? max_row * (size_t)threads : MK_CHUNK_BYTES + max_row * (size_t)threads;
    uint8_t *buf = mk_alloc(buf_bytes);
    float *scratch = mk_alloc((size_t)p->max_ne0 * sizeof(float) * (size_t)threads);
    if (!buf || !scratch) goto done;

    for (int64_t i = 0; i < p->n; i++) {
        const mk_tensor *t = &p->t[i];
        int64_t chunk_rows = (int64_t)(MK_CHUNK_BYTES / t->row_bytes);
        if (chunk_rows < threads) chunk_rows = threads;
        for (int64_t r0 = 0; r0 < t->ne1; r0 += chunk_rows) {
            int64_t r1 = r0 + chunk_rows < t->ne1 ? r0 + chunk_rows : t->ne1;
            int64_t per = (r1 - r0 + threads - 1) / threads;
            mk_job jobs[MK_MAX_THREADS];
            pthread_t tid[MK_MAX_THREADS];
            bool started[MK_MAX_THREADS] = {false};
            int n_jobs = 0;
            for (int64_t a = r0; a < r1; a += per, n_jobs++) {
                jobs[n_jobs] = (mk_job){t, a, a + per < r1 ? a + per : r1, buf + (size_t)(a - r0) * t->row_bytes,
                                        scratch + (size_t)n_jobs * (size_t)p->max_ne0, 0};
            }
            for (int k = 1; k < n_jobs; k++)
                started[k] = pthread_create(&tid[k], NULL, mk_job_run, &jobs[k]) == 0;
            mk_job_run(&jobs[0]);
            for (int k = 1; k < n_jobs; k++) {
                if (started[k]) pthread_join(tid[k], NULL);
                else mk_job_run(&jobs[k]); /* no thread: do it here */
            }
            for (int k = 0; k < n_jobs; k++)
                if (jobs[k].failed) {
                    log_msg("%s: encoding a row as %s failed", t->name, tensor_type_get(t->type)->name);
                    goto done;
                }
            size_t bytes = (size_t)(r1 - r0) * t->row_bytes;
            if (gguf_writer_write_tensor_data(w, out, i, buf, bytes) != 0) {
                log_msg("writing %s: %s", t->name, ferror(out) ? strerror(errno) : "writer refused the data");
                goto done;
            }
            mk_progress_add(pr, bytes);
        }
    }
    rc = 0;
done:
    free(buf);
    free(scratch);
    return rc;
}

/* ---------------------------------------------------------------- metadata */

/* "32B", "1.4M": a size label from a parameter count. */
static void mk_size_label(uint64_t params, char *buf, size_t len) {
    double x = (double)params;
    const char *unit = x >= 1e9 ? "B" : x >= 1e6 ? "M" : "K";
    double v = x >= 1e9 ? x / 1e9 : x >= 1e6 ? x / 1e6 : x / 1e3;
    snprintf(buf, len, v >= 10 ? "%.0f%s" : "%.1f%s", v, unit);
}

/* Declare all metadata and tensors to the writer. 0, or -1 with a message. */
static int mk_declare(gguf_writer *w, const mk_hparams *hp, const mk_scheme *sc, const mk_vocab *v,
                      const mk_plan *p) {
    char label[32];
    mk_size_label(p->params, label, sizeof label);
    int bad = 0;
    gguf_writer_set_alignment(w, GGUF_DEFAULT_ALIGNMENT);
    bad |= gguf_writer_add_string(w, "general.architecture", "qwen2");
    bad |= gguf_writer_add_string(w, "general.type", "model");
    bad |= gguf_writer_add_string(w, "general.name", hp->name);
    bad |= gguf_writer_add_string(w, "general.basename", hp->basename);
    bad |= gguf_writer_add_string(w, "general.size_label", label);
    bad |= gguf_writer_add_string(w, "general.license", "apache-2.0");
    bad |= gguf_writer_add_uint32(w, "qwen2.block_count", hp->n_layer);
    bad |= gguf_writer_add_uint32(w, "qwen2.context_length", hp->n_ctx);
    bad |= gguf_writer_add_uint32(w, "qwen2.embedding_length", hp->n_embd);
    bad |= gguf_writer_add_uint32(w, "qwen2.feed_forward_length", hp->n_ff);
    bad |= gguf_writer_add_uint32(w, "qwen2.attention.head_count", hp->n_head);
    bad |= gguf_writer_add_uint32(w, "qwen2.attention.head_count_kv", hp->n_head_kv);
    bad |= gguf_writer_add_float32(w, "qwen2.rope.freq_base", hp->rope_base);
    bad |= gguf_writer_add_float32(w, "qwen2.attention.layer_norm_rms_epsilon", hp->rms_eps);
    if (hp->rope_scaling) {
        bad |= gguf_writer_add_string(w, "qwen2.rope.scaling.type", hp->rope_scaling);
        if (hp->rope_scale > 0) bad |= gguf_writer_add_float32(w, "qwen2.rope.scaling.factor", (float)hp->rope_scale);
        if (hp->yarn_orig_ctx)
            bad |= gguf_writer_add_uint32(w, "qwen2.rope.scaling.original_context_length", hp->yarn_orig_ctx);
    }
    bad |= gguf_writer_add_uint32(w, "general.file_type", sc->file_type);
    bad |= gguf_writer_add_string(w, "tokenizer.ggml.model", "gpt2");
    bad |= gguf_writer_add_string(w, "tokenizer.ggml.pre", "qwen2");
    bad |= gguf_writer_add_array_string(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n);
    bad |= gguf_writer_add_array_int32(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n);
    bad |= gguf_writer_add_array_string(w, "tokenizer.ggml.merges", (const char *const *)v->merges,
                                        (uint64_t)v->n_merges);
    bad |= gguf_writer_add_uint32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    bad |= gguf_writer_add_uint32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
    bad |= gguf_writer_add_uint32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    bad |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false);
    bad |= gguf_writer_add_string(w, "tokenizer.chat_template", mk_chat_template);
    bad |= gguf_writer_add_uint32(w, "general.quantization_version", 2);
    if (bad) return mk_fail("the GGUF writer refused a metadata key");
    for (int64_t i = 0; i < p->n; i++) {
        const mk_tensor *t = &p->t[i];
        int64_t ne[2] = {t->ne0, t->ne1};
        if (gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne) != i)
            return mk_fail("the GGUF writer refused tensor %s", t->name);
    }
    return 0;
}

/* ---------------------------------------------------------------- command line */

typedef struct mk_options {
    const char *preset, *out, *tokenizer, *type;
    const char *weights;      /* --weights FILE: trained values instead of random ones */
    const char *rope_scaling; /* --rope-scaling none|yarn */
    double rope_scale;        /* --rope-scale F */
    int64_t yarn_orig_ctx;    /* --yarn-orig-ctx N */
    uint64_t seed;
    int64_t layers, embd, heads, kv_heads, ff, vocab, ctx; /* -1: from the preset */
    int threads;
    bool json;
} mk_options;

/* Print the command-line help on f. */
static void mk_usage(FILE *f) {
    fputs("usage: baton-mkmodel --preset tiny|qwq-32b [options] -o OUT.gguf\n"
          "       baton-mkmodel --weights FILE.btw [--tokenizer tokenizer.json] [--type T] -o OUT.gguf\n"
          "Writes a Qwen2-architecture GGUF v3 model with seeded random weights.\n"
          "  --preset NAME      tiny (2 layers, embd 256, 4/2 heads, ff 512, vocab 512, ctx 4096)\n"
          "                     or qwq-32b (64 layers, embd 5120, 40/8 heads, ff 27648, vocab 152064)\n"
          "  --layers N         number of layers (a slice with the preset's widths)\n"
          "  --type T           f32 f16 bf16 q8_0 q4_0 q4_k q6_k q4_k_m q4_1 q5_0 q5_1 iq4_nl iq4_xs\n"
          "                     q2_k q3_k q5_k q2_k_mix q3_k_s q3_k_m q3_k_l q4_k_s q5_k_s q5_k_m\n"
          "                     (default q8_0)\n"
          "                     q4_k_m: Q4_K, with Q6_K for attn_v, ffn_down and output\n"
          "                     q2_k q3_k q5_k: every matrix in that type\n"
          "                     the others: llama.cpp's mixes (output Q6_K; attn_v, attn_output,\n"
          "                     ffn_down per llama.cpp's per-layer rules, e.g. q5_k_m: Q5_K with\n"
          "                     Q6_K for attn_v and ffn_down in llama.cpp's use_more_bits layers)\n"
          "  --seed S           random seed (default 1); same seed, same bytes\n"
          "  --tokenizer FILE   vocabulary and merges from a Hugging Face tokenizer.json\n"
          "  --weights FILE     trained weights (a tools/train-demo weights file) instead of\n"
          "                     random ones: shapes from the file, matrices quantized to --type\n"
          "                     (default: a built-in byte-level vocabulary)\n"
          "  --embd N --heads N --kv-heads N --ff N --vocab N --ctx N   shape overrides\n"
          "                     (head_dim = embd / heads)\n"
          "  --rope-scaling none|yarn  write qwen2.rope.scaling.type; with yarn also\n"
          "  --rope-scale F     qwen2.rope.scaling.factor (YaRN factor, > 1; required with yarn)\n"
          "  --yarn-orig-ctx N  qwen2.rope.scaling.original_context_length (default: not written; readers then use --ctx)\n"
          "  --threads N        generator threads (default 2)\n"
          "  --json             print {path, bytes, params, n_layer, type} on stdout\n"
          "  -o, --out FILE     output file\n"
          "  -h, --help         this text\n",
          f);
}

/* Parse a decimal integer in [lo, hi] for option `opt`. 0, or -1 with a message. */
static int mk_parse_int(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    long long v;
    char err[200];
    if (cli_int(s, lo, hi, &v, err, sizeof err) != 0) return mk_fail("%s: %s", opt, err);
    *out = v;
    return 0;
}

/* Parse argv into o. 0 to run, 1 after --help, -1 with a message. */
static int mk_parse_args(int argc, char **argv, mk_options *o) {
    *o = (mk_options){.type = "q8_0", .seed = 1, .layers = -1, .embd = -1, .heads = -1, .kv_heads = -1,
                      .ff = -1, .vocab = -1, .ctx = -1, .threads = 2};
    static const struct { const char *name; size_t off; int64_t lo, hi; } ints[] = {
        {"--layers", offsetof(mk_options, layers), 1, 4096},
        {"--embd", offsetof(mk_options, embd), 1, 1 << 16},
        {"--heads", offsetof(mk_options, heads), 1, 4096},
        {"--kv-heads", offsetof(mk_options, kv_heads), 1, 4096},
        {"--ff", offsetof(mk_options, ff), 1, 1 << 18},
        {"--vocab", offsetof(mk_options, vocab), 1, MK_MAX_TOKENS},
        {"--ctx", offsetof(mk_options, ctx), 1, 1 << 24},
        {"--yarn-orig-ctx", offsetof(mk_options, yarn_orig_ctx), 1, 1 << 24},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { mk_usage(stdout); return 1; }
        if (!strcmp(a, "--json")) { o->json = true; continue; }
        if (i + 1 >= argc) return mk_fail("%s: unknown option or missing value (see --help)", a);
        const char *val = argv[++i];
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (!strcmp(a, ints[k].name)) {
                if (mk_parse_int(a, val, ints[k].lo, ints[k].hi, (int64_t *)(void *)((char *)o + ints[k].off)) != 0)
                    return -1;
                done = true;
            }
        if (done) continue;
        int64_t v = 0;
        if (!strcmp(a, "--preset")) o->preset = val;
        else if (!strcmp(a, "--type")) o->type = val;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer = val;
        else if (!strcmp(a, "--weights")) o->weights = val;
        else if (!strcmp(a, "--rope-scaling")) {
            if (strcmp(val, "none") && strcmp(val, "yarn")) return mk_fail("--rope-scaling must be none or yarn");
            o->rope_scaling = val;
        } else if (!strcmp(a, "--rope-scale")) {
            char err[200];
            if (cli_float(val, 1.0000001, 1024, &o->rope_scale, err, sizeof err) != 0)
                return mk_fail("--rope-scale: %s", err);
        }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) o->out = val;
        else if (!strcmp(a, "--seed")) {
            if (mk_parse_int(a, val, 0, INT64_MAX, &v) != 0) return -1;
            o->seed = (uint64_t)v;
        } else if (!strcmp(a, "--threads")) {
            if (mk_parse_int(a, val, 1, MK_MAX_THREADS, &v) != 0) return -1;
            o->threads = (int)v;
        } else return mk_fail("unknown option %s (see --help)", a);
    }
    if (o->weights && (o->preset || o->layers > 0 || o->embd > 0 || o->heads > 0 || o->kv_heads > 0 || o->ff > 0 ||
                       o->ctx > 0))
        return mk_fail("--weights gives the shapes: no --preset, --layers, --embd, --heads, --kv-heads, --ff, --ctx");
    if (o->weights) o->preset = "tiny"; /* the base the weights file's hparams replace */
    if (!o->preset) return mk_fail("--preset is required (tiny or qwq-32b; see --help)");
    if (!o->out) return mk_fail("-o OUT.gguf is required");
    return 0;
}

/* Resolve the preset and overrides into hyperparameters. 0, or -1 with a message. */
static int mk_resolve(const mk_options *o, mk_hparams *hp) {
    const mk_hparams *base = NULL;
    for (size_t i = 0; i < sizeof mk_presets / sizeof mk_presets[0]; i++)
        if (!strcmp(mk_presets[i].preset, o->preset)) base = &mk_presets[i];
    if (!base) return mk_fail("unknown preset \"%s\" (tiny or qwq-32b)", o->preset);
    *hp = *base;
    if (o->layers > 0) hp->n_layer = (uint32_t)o->layers;
    if (o->embd > 0) hp->n_embd = (uint32_t)o->embd;
    if (o->heads > 0) hp->n_head = (uint32_t)o->heads;
    if (o->kv_heads > 0) hp->n_head_kv = (uint32_t)o->kv_heads;
    if (o->ff > 0) hp->n_ff = (uint32_t)o->ff;
    if (o->vocab > 0) hp->n_vocab = (uint32_t)o->vocab;
    if (o->ctx > 0) hp->n_ctx = (uint32_t)o->ctx;
    if ((o->rope_scale > 0 || o->yarn_orig_ctx > 0) && !(o->rope_scaling && !strcmp(o->rope_scaling, "yarn")))
        return mk_fail("--rope-scale and --yarn-orig-ctx need --rope-scaling yarn");
    if (o->rope_scaling && !strcmp(o->rope_scaling, "yarn") && !(o->rope_scale > 0))
        return mk_fail("--rope-scaling yarn needs --rope-scale F");
    hp->rope_scaling = o->rope_scaling;
    hp->rope_scale = o->rope_scale;
    hp->yarn_orig_ctx = o->yarn_orig_ctx > 0 ? (uint32_t)o->yarn_orig_ctx : 0;
    if (hp->n_embd % hp->n_head != 0)
        return mk_fail("embd %u is not a multiple of heads %u", hp->n_embd, hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return mk_fail("heads %u is not a multiple of kv-heads %u", hp->n_head, hp->n_head_kv);
    if ((hp->n_embd / hp->n_head) % 2 != 0)
        return mk_fail("head_dim %u (embd / heads) must be even for RoPE", hp->n_embd / hp->n_head);
    return 0;
}

int main(int argc, char **argv) {
    log_set_program("baton-mkmodel");
    mk_options o;
    int r = mk_parse_args(argc, argv, &o);
    if (r != 0) return r > 0 ? 0 : 2;
    const mk_scheme *sc = mk_scheme_find(o.type);
    if (!sc) {
        log_msg("unknown --type \"%s\" (f32 f16 bf16 q8_0 q4_0 q4_k q6_k q4_k_m q4_1 q5_0 q5_1 iq4_nl iq4_xs q2_k "
                "q3_k q5_k q2_k_mix q3_k_s q3_k_m q3_k_l q4_k_s q5_k_s q5_k_m)", o.type);
        return 2;
    }
    mk_hparams hp = {0};
    mk_weights wf = {0};
    if (mk_resolve(&o, &hp) != 0) return 2;
    if (o.weights && (mk_weights_load(&wf, o.weights) != 0 || mk_weights_hparams(&wf, o.weights, &hp) != 0)) {
        mk_weights_free(&wf);
        return 1;
    }

    int rc = 1;
    mk_vocab v = {0};
    mk_plan p = {0};
    gguf_writer *w = NULL;
    FILE *out = NULL;
    char *tmp = NULL;
    int64_t n_vocab = hp.n_vocab;
    if (o.tokenizer ? mk_vocab_from_json(&v, o.tokenizer, &n_vocab, o.vocab > 0) : mk_vocab_builtin(&v, n_vocab))
        goto done;
    hp.n_vocab = (uint32_t)n_vocab;
    if (mk_vocab_special_ids(&v) != 0 || mk_plan_build(&p, &hp, sc, &v, o.seed) != 0) goto done;
    if (o.weights && mk_weights_attach(&wf, o.weights, &p) != 0) goto done;
    if (!(w = gguf_writer_new())) { log_msg("out of memory"); goto done; }
    if (mk_declare(w, &hp, sc, &v, &p) != 0) goto done;

    /* write to OUT.part, renamed when complete: no half-written model under the real name */
    size_t n = strlen(o.out) + 8;
    if (!(tmp = mk_alloc(n))) goto done;
    snprintf(tmp, n, "%s.part", o.out);
    if (!(out = fopen(tmp, "wb"))) { log_msg("cannot create %s: %s", tmp, strerror(errno)); goto done; }
    double t0 = clock_s();
    if (gguf_writer_write_header(w, out) != 0) { log_msg("writing the header of %s failed", tmp); goto done; }
    mk_progress pr = {t0, t0, 0, p.data_bytes, isatty(2) != 0, false};
    if (mk_write_data(w, out, &p, o.threads, &pr) != 0) goto done;
    if (fflush(out) != 0 || ferror(out)) { log_msg("writing %s: %s", tmp, strerror(errno)); goto done; }
    off_t bytes = ftello(out);
    int cerr = fclose(out);
    out = NULL;
    if (cerr != 0) { log_msg("closing %s: %s", tmp, strerror(errno)); goto done; }
    if (rename(tmp, o.out) != 0) { log_msg("renaming %s to %s: %s", tmp, o.out, strerror(errno)); goto done; }
    double secs = clock_s() - t0;
    if (pr.shown && pr.tty) fputc('\n', stderr);
    log_msg("wrote %s: %lld bytes (%.1f MiB), %" PRIu64 " params, %u layers, %s, %.2f s (%.1f MB/s)",
            o.out, (long long)bytes, (double)bytes / 1048576.0, p.params, hp.n_layer, sc->name, secs,
            secs > 0 ? (double)bytes / 1e6 / secs : 0.0);
    if (o.json) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:i, s:s, s:f}", "path", o.out, "bytes", (json_int_t)bytes,
                              "params", (json_int_t)p.params, "n_layer", (int)hp.n_layer, "type", sc->name,
                              "seconds", secs);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
        if (!s) { log_msg("out of memory"); goto done; }
    }
    rc = 0;
done:
    if (out) fclose(out);
    if (rc != 0 && tmp) unlink(tmp);
    free(tmp);
    gguf_writer_free(w);
    free(p.t);
    mk_vocab_free(&v);
    mk_weights_free(&wf);
    return rc;
}
