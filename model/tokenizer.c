/* tokenizer.c - byte-level BPE (GPT-2 / Qwen2 style), streaming detokenizer, ChatML.
 *
 * Encoding a text, in order:
 *   1. (TOK_SPECIAL_PARSE only) cut out added tokens: at each position the longest
 *      added token that starts there wins, as Hugging Face's added-vocabulary does;
 *   2. cut each remaining segment into runs of valid UTF-8; every byte of an invalid
 *      sequence becomes its own byte token;
 *   3. split each valid run with the pre-tokenizer regex (PCRE2, UTF + UCP, JIT);
 *      text the regex does not match is kept as its own piece ("Isolated");
 *   4. each piece starts as one byte token per byte; the pair of adjacent symbols
 *      with the lowest merge rank is merged (leftmost first on ties) until no pair
 *      has a rank. A heap of candidate pairs makes this O(n log n) per piece, and a
 *      cache of recent pieces skips it for repeated words.
 *
 * Tokens are kept as raw bytes: the GPT-2 byte-to-unicode spelling of the vocabulary
 * files is undone at load time, so the BPE works on byte token ids and decoding is a
 * concatenation.
 *
 * Before step 3, text is put in Unicode NFC when the tokenizer asks for it (Qwen's
 * tokenizer.json has an NFC normalizer; a GGUF with tokenizer.ggml.pre = "qwen2" gets
 * the same, so that both give the same ids). A quick check skips text that cannot
 * change, which is nearly all text. NFC itself is libutf8proc's.
 */
#include "tokenizer.h"

#include "errmsg.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <utf8proc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's token types, as stored in tokenizer.ggml.token_type. */
enum {
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* The split patterns a GGUF may name in tokenizer.ggml.pre. Qwen2's is the exact
 * pattern of Qwen's tokenizer.json, so that a GGUF and its tokenizer.json agree. */
static const struct {
    const char *name;
    bool nfc; /* the model's tokenizer.json normalizes to NFC */
    const char *pattern;
} tok_pre_patterns[] = {
    {"qwen2", true, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
              "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"deepseek-r1-qwen", true, "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"gpt2", false, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
    {"default", false, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
};
#define TOK_QWEN2_PATTERN (tok_pre_patterns[0].pattern)
#define TOK_GPT2_PATTERN (tok_pre_patterns[2].pattern)

/* Pieces of at most this many bytes are cached. */
#define TOK_CACHE_MAX_WORD 64
#define TOK_CACHE_SLOTS (1u << 16)             /* power of two */
#define TOK_CACHE_MAX_ENTRIES (TOK_CACHE_SLOTS / 2)
#define TOK_CACHE_WORD_BYTES ((size_t)2 << 20)
#define TOK_CACHE_IDS ((size_t)1 << 19)

typedef struct tok_cache_entry {
    uint64_t hash;
    uint32_t word_off, ids_off;
    uint16_t word_len, n_ids;
} tok_cache_entry;

typedef struct tok_merge_slot {
    uint64_t key;   /* (left id << 32) | right id; 0 with rank -1 when empty */
    int32_t rank;   /* -1: empty */
    int32_t result; /* the merged token */
} tok_merge_slot;

typedef struct tok_added {
    int32_t id;
    uint32_t len;
    const char *text;
} tok_added;

struct tokenizer {
    int32_t n_vocab;
    char **piece;       /* [n_vocab] raw bytes of each token (NULL for a hole) */
    uint32_t *piece_len;/* [n_vocab] */
    uint8_t *type;      /* [n_vocab] TOK_TYPE_* */
    int32_t byte_id[256];

    int32_t *map;       /* [map_cap] piece -> id, open addressing, -1 empty */
    uint32_t map_cap;

    tok_merge_slot *merges; /* [merge_cap] */
    uint32_t merge_cap;
    int32_t n_merges;

    tok_added *added;   /* [n_added] longest first */
    int n_added;
    bool added_first[256];

    pcre2_code *re;
    bool re_jit;
    bool nfc;           /* normalize text to NFC before splitting */
    bool ignore_merges; /* a piece that is a token as a whole is that token (tokenizer.json) */

    int32_t eos;
    int32_t eog[8];
    int n_eog;

    /* Cache of piece -> ids. The tokenizer is shared read-only; the cache is the
     * one mutable part, taken with trylock by one tok_encode call at a time. */
    pthread_mutex_t cache_mu;
    uint32_t *cache_slot;       /* [TOK_CACHE_SLOTS] entry index + 1, 0 empty */
    tok_cache_entry *cache_ent; /* [TOK_CACHE_MAX_ENTRIES] */
    uint32_t cache_n;
    char *cache_words;          /* [TOK_CACHE_WORD_BYTES] */
    size_t cache_words_used;
    int32_t *cache_ids;         /* [TOK_CACHE_IDS] */
    size_t cache_ids_used;
};

/* ---------------------------------------------------------------- errors */

static _Thread_local char tok_err[256];

/* Record a message for tok_last_error (err_set); -1 for `return tok_fail(...)`. */
#define tok_fail(...) (err_set(tok_err, sizeof tok_err, __VA_ARGS__), -1)

const char *tok_last_error(void) { return tok_err; }

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the UTF-8 character at s (n > 0 bytes available): 1..4 when valid;
 * 0 when the bytes are a valid but incomplete start (the text ends too soon);
 * -k when invalid, k >= 1 being the length of the maximal invalid subpart
 * (Unicode's "maximal subpart": one U+FFFD per such part). Rejects overlongs,
 * surrogates and code points above U+10FFFF. */
static int utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) { need = 3; lo = 0xA0; }
    else if (c == 0xED) { need = 3; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) need = 3;
    else if (c == 0xF0) { need = 4; lo = 0x90; }
    else if (c == 0xF4) { need = 4; hi = 0x8F; }
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else return -1;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -i;
    }
    return need;
}

/* Decode one valid UTF-8 character of length len. */
static uint32_t utf8_cp(const uint8_t *s, int len) {
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
}

/* ---------------------------------------------------------------- NFC */

/* True when cp can make NFC change a text: a combining mark (any class: marks of
 * class 0 can still be the second half of a composite), a Hangul V or T jamo
 * (composed by formula), or a character whose canonical decomposition does not
 * compose back to itself (singletons, exclusions). Documented utf8proc calls only. */
static bool nfc_unstable_cp(uint32_t cp) {
    if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2)) return true;
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    if (p->combining_class != 0 || p->category == UTF8PROC_CATEGORY_MN || p->category == UTF8PROC_CATEGORY_MC ||
        p->category == UTF8PROC_CATEGORY_ME)
        return true;
    utf8proc_int32_t d[8];
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_DECOMPOSE, NULL);
    if (n == 1 && d[0] == (utf8proc_int32_t)cp) return false; /* no canonical decomposition */
    if (n <= 0 || n > 8) return true;
    n = utf8proc_normalize_utf32(d, n, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    return !(n == 1 && d[0] == (utf8proc_int32_t)cp);
}

/* Quick check of valid UTF-8: false when the text is certainly NFC already. */
static bool nfc_needed(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        if (s[i] < 0xCC) { /* below U+0300 (or a continuation byte): nothing changes */
            i++;
            continue;
        }
        int l = utf8_len(s + i, n - i);
        if (l <= 0) return true;
        if (nfc_unstable_cp(utf8_cp(s + i, l))) return true;
        i += (size_t)l;
    }
    return false;
}

/* NFC of valid UTF-8 s[0..n) (libutf8proc: decompose, canonical order, compose).
 * Returns a malloc'd buffer with its length in *out_len, or NULL when out of
 * memory (or, callers passing valid text, never: invalid UTF-8). */
static uint8_t *nfc_normalize(const uint8_t *s, size_t n, size_t *out_len) {
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t m = utf8proc_map(s, (utf8proc_ssize_t)n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) return NULL;
    *out_len = (size_t)m;
    return out;
}

/* ---------------------------------------------------------------- GPT-2 byte map */

/* GPT-2's byte-to-unicode map: printable bytes stand for themselves, the other 68
 * bytes for U+0100.. in byte order. unicode_byte[cp] for cp < 324 gives the byte
 * back, or -1. Built once; pure data afterwards. */
static int16_t unicode_byte[324];
static pthread_once_t byte_map_once = PTHREAD_ONCE_INIT;

/* Fill unicode_byte; run once through pthread_once. */
static void byte_map_init(void) {
    for (int i = 0; i < 324; i++) unicode_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) unicode_byte[b] = (int16_t)b;
        else unicode_byte[256 + extra++] = (int16_t)b;
    }
}

/* Undo the byte-to-unicode spelling of s (len bytes) into out (room for len bytes).
 * Returns the byte length, or -1 if s holds a character outside the map. */
static long byte_decode(const char *s, size_t len, char *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        int l = utf8_len(p + i, len - i);
        if (l <= 0) return -1;
        uint32_t cp = utf8_cp(p + i, l);
        if (cp >= 324 || unicode_byte[cp] < 0) return -1;
        out[o++] = (char)unicode_byte[cp];
        i += (size_t)l;
    }
    return (long)o;
}

/* ---------------------------------------------------------------- hashing */

/* 64-bit hash of a short byte string (vocabulary pieces, cached words). */
static uint64_t hash_bytes(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xFF51AFD7ED558CCDull);
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        len -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, len);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* 64-bit mix of a merge key. */
static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

/* Smallest power of two >= n (at least 16, at most 2^30): hash table sizes. */
static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n && c < (1u << 30)) c <<= 1;
    return c;
}

/* ---------------------------------------------------------------- building */

/* An empty tokenizer with room for n_vocab tokens, or NULL when out of memory. */
static tokenizer *tok_alloc(int32_t n_vocab) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_once(&byte_map_once, byte_map_init);
    t->n_vocab = n_vocab;
    t->piece = calloc((size_t)n_vocab, sizeof *t->piece);
    t->piece_len = calloc((size_t)n_vocab, sizeof *t->piece_len);
    t->type = calloc((size_t)n_vocab, sizeof *t->type);
    t->eos = -1;
    pthread_mutex_init(&t->cache_mu, NULL);
    if (!t->piece || !t->piece_len || !t->type) {
        tok_free(t);
        return NULL;
    }
    return t;
}

/* Release everything; accepts NULL. */
void tok_free(tokenizer *t) {
    if (!t) return;
    if (t->piece)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->type);
    free(t->map);
    free(t->merges);
    free(t->added);
    if (t->re) pcre2_code_free(t->re);
    free(t->cache_slot);
    free(t->cache_ent);
    free(t->cache_words);
    free(t->cache_ids);
    pthread_mutex_destroy(&t->cache_mu);
    free(t);
}

/* Set token id's text. Normal tokens arrive in byte-to-unicode spelling and are
 * decoded to bytes; a normal token that is not in that spelling keeps its text.
 * 0, or -1 when out of memory. */
static int tok_set_piece(tokenizer *t, int32_t id, const char *s, size_t len, int type) {
    char *p = malloc(len + 1);
    if (!p) return tok_fail("out of memory");
    long n = -1;
    if (type == TOK_TYPE_NORMAL) n = byte_decode(s, len, p);
    if (n < 0) {
        memcpy(p, s, len);
        n = (long)len;
    }
    p[n] = 0;
    free(t->piece[id]);
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)n;
    t->type[id] = (uint8_t)type;
    return 0;
}

/* Id of the token with exactly these bytes (normal tokens first), or -1. */
static int32_t map_find(const tokenizer *t, const char *s, size_t len) {
    if (!t->map) return -1;
    uint32_t mask = t->map_cap - 1;
    for (uint32_t i = (uint32_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        if (t->piece_len[id] == len && memcmp(t->piece[id], s, len) == 0) return id;
    }
}

/* Index every token's bytes; normal tokens first, so that an added token with the
 * same bytes as a normal one never shadows it for merges. */
static int tok_build_map(tokenizer *t) {
    t->map_cap = pow2_at_least((uint64_t)t->n_vocab * 2 + 2);
    t->map = malloc(sizeof *t->map * t->map_cap);
    if (!t->map) return tok_fail("out of memory");
    memset(t->map, 0xFF, sizeof *t->map * t->map_cap);
    uint32_t mask = t->map_cap - 1;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (!t->piece[id] || (t->type[id] == TOK_TYPE_NORMAL) != (pass == 0)) continue;
            if (map_find(t, t->piece[id], t->piece_len[id]) >= 0) continue;
            uint32_t i = (uint32_t)hash_bytes(t->piece[id], t->piece_len[id]) & mask;
            while (t->map[i] >= 0) i = (i + 1) & mask;
            t->map[i] = id;
        }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = map_find(t, &c, 1);
    }
    return 0;
}

/* The merge of tokens a then b, or NULL when they do not merge. */
static const tok_merge_slot *merge_find(const tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t i = (uint32_t)hash_u64(key) & mask;; i = (i + 1) & mask) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

/* An empty merge table for n merges. 0, or -1 when out of memory. */
static int tok_merges_init(tokenizer *t, uint64_t n) {
    t->merge_cap = pow2_at_least(n * 2 + 2);
    t->merges = malloc(sizeof *t->merges * t->merge_cap);
    if (!t->merges) return tok_fail("out of memory");
    for (uint32_t i = 0; i < t->merge_cap; i++) t->merges[i] = (tok_merge_slot){0, -1, -1};
    return 0;
}

/* Add the merge of the byte-to-unicode spelled tokens a and b with the next rank.
 * A merge whose parts or result are not in the vocabulary can never apply and is
 * skipped; a repeated pair keeps its first (best) rank. */
static void tok_add_merge(tokenizer *t, const char *a, size_t la, const char *b, size_t lb) {
    char stack[256], *buf = la + lb <= sizeof stack ? stack : malloc(la + lb);
    if (!buf) return;
    long na = byte_decode(a, la, buf), nb = na < 0 ? -1 : byte_decode(b, lb, buf + na);
    int32_t rank = t->n_merges++;
    if (na >= 0 && nb >= 0) {
        int32_t ia = map_find(t, buf, (size_t)na), ib = map_find(t, buf + na, (size_t)nb);
        int32_t ir = map_find(t, buf, (size_t)(na + nb));
        if (ia >= 0 && ib >= 0 && ir >= 0 && !merge_find(t, ia, ib)) {
            uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
            uint32_t mask = t->merge_cap - 1, i = (uint32_t)hash_u64(key) & mask;
            while (t->merges[i].rank >= 0) i = (i + 1) & mask;
            t->merges[i] = (tok_merge_slot){key, rank, ir};
        }
    }
    if (buf != stack) free(buf);
}

/* A merge written "a b" (byte-to-unicode spelling has no spaces). */
static void tok_add_merge_str(tokenizer *t, const char *m, size_t len) {
    const char *sp = memchr(m, ' ', len);
    if (!sp) {
        t->n_merges++;
        return;
    }
    tok_add_merge(t, m, (size_t)(sp - m), sp + 1, len - (size_t)(sp - m) - 1);
}

/* qsort order of added tokens: longest first, then by id. */
static int added_cmp(const void *a, const void *b) {
    const tok_added *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Collect the control and user-defined tokens that TOK_SPECIAL_PARSE recognises,
 * longest first; then the end-of-generation ids. */
static int tok_finish(tokenizer *t, const char *pattern, char *err, size_t errlen) {
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->piece[id] && t->piece_len[id] > 0 && (t->type[id] == TOK_TYPE_CONTROL || t->type[id] == TOK_TYPE_USER))
            n++;
    t->added = calloc((size_t)(n ? n : 1), sizeof *t->added);
    if (!t->added) return tok_fail("out of memory");
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->piece[id] && t->piece_len[id] > 0 && (t->type[id] == TOK_TYPE_CONTROL || t->type[id] == TOK_TYPE_USER)) {
            t->added[t->n_added++] = (tok_added){id, t->piece_len[id], t->piece[id]};
            t->added_first[(uint8_t)t->piece[id][0]] = true;
        }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, added_cmp);

    if (t->eos < 0 || t->eos >= t->n_vocab) t->eos = tok_find(t, "<|im_end|>");
    if (t->eos < 0) t->eos = tok_find(t, "<|endoftext|>");
    const char *eog_names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>"};
    if (t->eos >= 0) t->eog[t->n_eog++] = t->eos;
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++) {
        int32_t id = tok_find(t, eog_names[i]);
        bool seen = id < 0;
        for (int k = 0; k < t->n_eog; k++) seen |= t->eog[k] == id;
        if (!seen) t->eog[t->n_eog++] = id;
    }

    int ec;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eoff, NULL);
    if (!t->re) {
        char msg[160];
        pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof msg);
        err_set(err, errlen, "pre-tokenizer regex, offset %zu: %s", (size_t)eoff, msg);
        return -1;
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;

    t->cache_slot = calloc(TOK_CACHE_SLOTS, sizeof *t->cache_slot);
    t->cache_ent = malloc(TOK_CACHE_MAX_ENTRIES * sizeof *t->cache_ent);
    t->cache_words = malloc(TOK_CACHE_WORD_BYTES);
    t->cache_ids = malloc(TOK_CACHE_IDS * sizeof *t->cache_ids);
    if (!t->cache_slot || !t->cache_ent || !t->cache_words || !t->cache_ids) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- loading: GGUF */

tokenizer *tok_load_gguf(const gguf_file *f, char *err, size_t errlen) {
    const char *s;
    size_t slen;
    if (gguf_get_string(f, "tokenizer.ggml.model", &s, &slen) != 0) {
        err_set(err, errlen, "GGUF has no tokenizer (tokenizer.ggml.model missing)");
        return NULL;
    }
    if (slen != 4 || memcmp(s, "gpt2", 4) != 0) {
        err_set(err, errlen, "tokenizer.ggml.model is \"%.*s\"; only \"gpt2\" (byte-level BPE) is supported",
                 (int)(slen > 40 ? 40 : slen), s);
        return NULL;
    }
    const char *pattern = TOK_GPT2_PATTERN;
    bool nfc = false;
    if (gguf_get_string(f, "tokenizer.ggml.pre", &s, &slen) == 0) {
        pattern = NULL;
        for (size_t i = 0; i < sizeof tok_pre_patterns / sizeof tok_pre_patterns[0]; i++)
            if (strlen(tok_pre_patterns[i].name) == slen && memcmp(tok_pre_patterns[i].name, s, slen) == 0) {
                pattern = tok_pre_patterns[i].pattern;
                nfc = tok_pre_patterns[i].nfc;
            }
        if (!pattern) {
            err_set(err, errlen, "tokenizer.ggml.pre \"%.*s\" is not supported (qwen2, gpt2, default are)",
                     (int)(slen > 40 ? 40 : slen), s);
            return NULL;
        }
    }
    gguf_array toks, types, merges;
    if (gguf_get_array(f, "tokenizer.ggml.tokens", &toks) != 0 || toks.type != GGUF_TYPE_STRING) {
        err_set(err, errlen, "tokenizer.ggml.tokens is missing or not an array of strings");
        return NULL;
    }
    if (toks.count == 0 || toks.count > (1u << 24)) {
        err_set(err, errlen, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)toks.count);
        return NULL;
    }
    bool have_types = gguf_get_array(f, "tokenizer.ggml.token_type", &types) == 0;
    if (have_types && types.count != toks.count) {
        err_set(err, errlen, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                 (unsigned long long)types.count, (unsigned long long)toks.count);
        return NULL;
    }
    tokenizer *t = tok_alloc((int32_t)toks.count);
    if (!t) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    t->nfc = nfc;
    for (uint64_t i = 0; i < toks.count; i++) {
        int64_t type = TOK_TYPE_NORMAL;
        if (gguf_array_string(&toks, i, &s, &slen) != 0 || (have_types && gguf_array_int(&types, i, &type) != 0)) {
            err_set(err, errlen, "tokenizer.ggml.tokens/token_type: entry %llu is unreadable", (unsigned long long)i);
            goto fail;
        }
        if (type < TOK_TYPE_NORMAL || type > TOK_TYPE_BYTE) type = TOK_TYPE_UNKNOWN;
        if (tok_set_piece(t, (int32_t)i, s, slen, (int)type) != 0) goto fail_msg;
    }
    if (tok_build_map(t) != 0) goto fail_msg;
    uint64_t n_merges = 0;
    bool have_merges = gguf_get_array(f, "tokenizer.ggml.merges", &merges) == 0;
    if (have_merges && merges.type != GGUF_TYPE_STRING) {
        err_set(err, errlen, "tokenizer.ggml.merges is not an array of strings");
        goto fail;
    }
    if (have_merges) n_merges = merges.count;
    if (tok_merges_init(t, n_merges) != 0) goto fail_msg;
    for (uint64_t i = 0; i < n_merges; i++) {
        if (gguf_array_string(&merges, i, &s, &slen) != 0) {
            err_set(err, errlen, "tokenizer.ggml.merges[%llu] is unreadable", (unsigned long long)i);
            goto fail;
        }
        tok_add_merge_str(t, s, slen);
    }
    uint64_t eos;
    if (gguf_get_uint(f, "tokenizer.ggml.eos_token_id", &eos) == 0 && eos < toks.count) t->eos = (int32_t)eos;
    if (tok_finish(t, pattern, err, errlen) != 0) goto fail;
    return t;
fail_msg:
    err_set(err, errlen, "%s", tok_err);
fail:
    tok_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- loading: tokenizer.json */

/* The Split regex of a pre_tokenizer node (a Split, or a Sequence holding one), or
 * the GPT-2 pattern for a ByteLevel with use_regex. *pattern stays NULL when the
 * node has none. 0, or -1 with a message for a form this tokenizer cannot honour. */
static int json_pre_pattern(json_t *node, const char **pattern, char *err, size_t errlen) {
    if (!node || json_is_null(node)) return 0;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) {
        err_set(err, errlen, "pre_tokenizer without a type");
        return -1;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(node, "pretokenizers"), *item;
        size_t i;
        json_array_foreach(list, i, item) if (json_pre_pattern(item, pattern, err, errlen) != 0) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        json_t *use = json_object_get(node, "use_regex");
        if ((!use || json_is_true(use)) && !*pattern) *pattern = TOK_GPT2_PATTERN;
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const char *re = json_string_value(json_object_get(json_object_get(node, "pattern"), "Regex"));
        const char *behavior = json_string_value(json_object_get(node, "behavior"));
        if (!re) {
            err_set(err, errlen, "pre_tokenizer Split: only {\"Regex\": ...} patterns are supported");
            return -1;
        }
        if (behavior && strcmp(behavior, "Isolated") != 0) {
            err_set(err, errlen, "pre_tokenizer Split: behavior \"%s\" is not supported (Isolated is)", behavior);
            return -1;
        }
        if (json_is_true(json_object_get(node, "invert"))) {
            err_set(err, errlen, "pre_tokenizer Split: invert is not supported");
            return -1;
        }
        if (*pattern && *pattern != TOK_GPT2_PATTERN) {
            err_set(err, errlen, "pre_tokenizer: more than one Split is not supported");
            return -1;
        }
        *pattern = re;
        return 0;
    }
    err_set(err, errlen, "pre_tokenizer type \"%s\" is not supported", type);
    return -1;
}

/* Checks what tok_load_json supports in a tokenizer.json: a BPE model with an
 * object vocab, no byte fallback or affixes, array merges and added tokens, no
 * normalizer or NFC. 0, or -1 with a message. */
static int json_check_model(const json_t *root, const char *path, char *err, size_t errlen) {
    json_t *model = json_object_get(root, "model");
    json_t *merges = json_object_get(model, "merges"), *added = json_object_get(root, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *suffix = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if (!json_is_object(json_object_get(model, "vocab"))) {
        err_set(err, errlen, "%s: model.vocab is missing or not an object", path);
        return -1;
    }
    if (mtype && strcmp(mtype, "BPE") != 0) {
        err_set(err, errlen, "%s: model.type is \"%s\"; only BPE is supported", path, mtype);
        return -1;
    }
    if (json_is_true(json_object_get(model, "byte_fallback")) || (prefix && *prefix) || (suffix && *suffix)) {
        err_set(err, errlen, "%s: byte_fallback, continuing_subword_prefix and end_of_word_suffix are not supported",
                 path);
        return -1;
    }
    if (merges && !json_is_array(merges)) {
        err_set(err, errlen, "%s: model.merges is not an array", path);
        return -1;
    }
    if (added && !json_is_array(added)) {
        err_set(err, errlen, "%s: added_tokens is not an array", path);
        return -1;
    }
    json_t *norm = json_object_get(root, "normalizer");
    const char *ntype = json_string_value(json_object_get(norm, "type"));
    if (norm && !json_is_null(norm) && (!ntype || strcmp(ntype, "NFC") != 0)) {
        err_set(err, errlen, "%s: normalizer \"%s\" is not supported (none or NFC are)", path, ntype ? ntype : "?");
        return -1;
    }
    return 0;
}

/* The largest id of the vocabulary and the added tokens, or -1 with a message
 * (an id outside [0, 2^24), an added token without content, no ids at all). */
static int64_t json_max_id(json_t *vocab, json_t *added, const char *path, char *err, size_t errlen) {
    int64_t max_id = -1;
    const char *key;
    json_t *val, *item;
    size_t i;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 24)) {
            err_set(err, errlen, "%s: model.vocab[\"%.40s\"] is not an id in [0, 2^24)", path, key);
            return -1;
        }
        if (id > max_id) max_id = id;
    }
    json_array_foreach(added, i, item) {
        json_t *id = json_object_get(item, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24) ||
            !json_is_string(json_object_get(item, "content"))) {
            err_set(err, errlen, "%s: added_tokens[%zu] needs an id in [0, 2^24) and a content", path, i);
            return -1;
        }
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) err_set(err, errlen, "%s: the vocabulary is empty", path);
    return max_id;
}

/* Fills t with the pieces of vocab and added, then the merges. 0, or -1 with a message. */
static int json_fill(tokenizer *t, json_t *vocab, json_t *added, json_t *merges, const char *path, char *err,
                     size_t errlen) {
    const char *key;
    json_t *val, *item;
    size_t i;
    json_object_foreach(vocab, key, val) {
        if (tok_set_piece(t, (int32_t)json_integer_value(val), key, strlen(key), TOK_TYPE_NORMAL) != 0) goto fail_msg;
    }
    json_array_foreach(added, i, item) {
        json_t *c = json_object_get(item, "content");
        int type = json_is_true(json_object_get(item, "special")) ? TOK_TYPE_CONTROL : TOK_TYPE_USER;
        if (tok_set_piece(t, (int32_t)json_integer_value(json_object_get(item, "id")), json_string_value(c),
                          json_string_length(c), type) != 0)
            goto fail_msg;
    }
    if (tok_build_map(t) != 0 || tok_merges_init(t, merges ? json_array_size(merges) : 0) != 0) goto fail_msg;
    json_array_foreach(merges, i, item) {
        if (json_is_string(item)) {
            tok_add_merge_str(t, json_string_value(item), json_string_length(item));
        } else if (json_is_array(item) && json_array_size(item) == 2 && json_is_string(json_array_get(item, 0)) &&
                   json_is_string(json_array_get(item, 1))) {
            json_t *a = json_array_get(item, 0), *b = json_array_get(item, 1);
            tok_add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b), json_string_length(b));
        } else {
            err_set(err, errlen, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            return -1;
        }
    }
    return 0;
fail_msg:
    err_set(err, errlen, "%s", tok_err);
    return -1;
}

tokenizer *tok_load_json(const char *path, char *err, size_t errlen) {
    json_error_t je;
    tokenizer *t = NULL;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        err_set(err, errlen, "%s:%d: %s", path, je.line, je.text);
        return NULL;
    }
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    const char *pattern = NULL;
    char perr[200] = "";
    if (json_check_model(root, path, err, errlen) != 0) goto done;
    if (json_pre_pattern(json_object_get(root, "pre_tokenizer"), &pattern, perr, sizeof perr) != 0) {
        err_set(err, errlen, "%s: %s", path, perr);
        goto done;
    }
    if (!pattern) pattern = TOK_QWEN2_PATTERN;
    int64_t max_id = json_max_id(vocab, added, path, err, errlen); /* the size is one past it */
    if (max_id < 0) goto done;
    if (!(t = tok_alloc((int32_t)max_id + 1))) {
        err_set(err, errlen, "out of memory");
        goto done;
    }
    t->nfc = json_string_value(json_object_get(json_object_get(root, "normalizer"), "type")) != NULL;
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (json_fill(t, vocab, added, merges, path, err, errlen) != 0 || tok_finish(t, pattern, err, errlen) != 0) {
        tok_free(t);
        t = NULL;
    }
done:
    json_decref(root);
    return t;
}

/* ---------------------------------------------------------------- queries */

int32_t tok_vocab_size(const tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t tok_eos(const tokenizer *t) { return t ? t->eos : -1; }

int tok_eog_ids(const tokenizer *t, int32_t *ids, int max) {
    int n = 0;
    for (int i = 0; t && i < t->n_eog && n < max; i++) ids[n++] = t->eog[i];
    return n;
}

int32_t tok_find(const tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    return map_find(t, piece, strlen(piece));
}

bool tok_is_special(const tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && t->type[id] == TOK_TYPE_CONTROL;
}

const char *tok_piece(const tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab || !t->piece[id]) return NULL;
    if (len) *len = t->piece_len[id];
    return t->piece[id];
}

/* ---------------------------------------------------------------- encoding */

typedef struct bpe_cand {
    int32_t rank, pos, left, right;
} bpe_cand;

/* State of one tok_encode call: where ids go and the scratch of the BPE. */
typedef struct tok_enc {
    const tokenizer *t;
    tokenizer *cache; /* non-NULL while this call holds the cache */
    int32_t *ids;
    int64_t max, n;
    pcre2_match_data *md;
    /* BPE scratch, grown on demand: symbols of one piece and the candidate heap */
    int32_t *sym, *next, *prev;
    bpe_cand *heap;
    size_t cap;
} tok_enc;

/* Count an id; store it when there is room. */
static inline void enc_push(tok_enc *e, int32_t id) {
    if (e->n < e->max) e->ids[e->n] = id;
    e->n++;
}

/* Make the BPE scratch hold a piece of n bytes. 0, or -1 when out of memory. */
static int enc_grow(tok_enc *e, size_t n) {
    if (n <= e->cap) return 0;
    size_t cap = e->cap ? e->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *sym = realloc(e->sym, cap * sizeof *sym);
    if (sym) e->sym = sym;
    int32_t *next = realloc(e->next, cap * sizeof *next);
    if (next) e->next = next;
    int32_t *prev = realloc(e->prev, cap * sizeof *prev);
    if (prev) e->prev = prev;
    bpe_cand *heap = realloc(e->heap, 3 * cap * sizeof *heap);
    if (heap) e->heap = heap;
    if (!sym || !next || !prev || !heap) return tok_fail("out of memory for a %zu-byte piece", n);
    e->cap = cap;
    return 0;
}

/* Heap order: lower rank first, then the leftmost pair. */
static inline bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

/* Add c to the binary min-heap h of *n entries. */
static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

/* Remove and return the smallest entry of the non-empty heap h. */
static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* Push the candidate merge of symbol pos with its right neighbour, if it has one. */
static inline void bpe_consider(tok_enc *e, size_t *nh, int32_t pos) {
    if (pos < 0) return;
    int32_t r = e->next[pos];
    if (r < 0) return;
    const tok_merge_slot *m = merge_find(e->t, e->sym[pos], e->sym[r]);
    if (m) heap_push(e->heap, nh, (bpe_cand){m->rank, pos, e->sym[pos], e->sym[r]});
}

/* Run the merges over one piece of n >= 2 bytes; leaves the symbols in e->sym
 * linked by e->next from 0. 0, or -1 (byte without a token, out of memory). */
static int bpe_merge(tok_enc *e, const uint8_t *w, size_t n) {
    const tokenizer *t = e->t;
    if (enc_grow(e, n) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = t->byte_id[w[i]];
        if (e->sym[i] < 0) return tok_fail("byte 0x%02x has no token in this vocabulary", w[i]);
        e->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++) bpe_consider(e, &nh, (int32_t)i);
    while (nh) {
        bpe_cand c = heap_pop(e->heap, &nh);
        int32_t r = e->next[c.pos];
        /* stale: one side has merged since (a merged symbol's id always changes) */
        if (e->sym[c.pos] != c.left || r < 0 || e->sym[r] != c.right) continue;
        e->sym[c.pos] = merge_find(t, c.left, c.right)->result;
        e->sym[r] = -1;
        e->next[c.pos] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = c.pos;
        bpe_consider(e, &nh, e->prev[c.pos]);
        bpe_consider(e, &nh, c.pos);
    }
    return 0;
}

/* Encode one pre-token piece (bytes of a regex match, or a lone invalid byte). */
static int enc_piece(tok_enc *e, const uint8_t *w, size_t n) {
    const tokenizer *t = e->t;
    if (n == 1) {
        if (t->byte_id[w[0]] < 0) return tok_fail("byte 0x%02x has no token in this vocabulary", w[0]);
        enc_push(e, t->byte_id[w[0]]);
        return 0;
    }
    if (t->ignore_merges) {
        int32_t id = map_find(t, (const char *)w, n);
        if (id >= 0 && t->type[id] == TOK_TYPE_NORMAL) {
            enc_push(e, id);
            return 0;
        }
    }
    tokenizer *c = n <= TOK_CACHE_MAX_WORD ? e->cache : NULL;
    uint64_t h = 0;
    uint32_t slot = 0, mask = TOK_CACHE_SLOTS - 1;
    if (c) {
        h = hash_bytes(w, n);
        for (slot = (uint32_t)h & mask; c->cache_slot[slot]; slot = (slot + 1) & mask) {
            const tok_cache_entry *ce = &c->cache_ent[c->cache_slot[slot] - 1];
            if (ce->hash == h && ce->word_len == n && memcmp(c->cache_words + ce->word_off, w, n) == 0) {
                for (uint16_t k = 0; k < ce->n_ids; k++) enc_push(e, c->cache_ids[ce->ids_off + k]);
                return 0;
            }
        }
    }
    if (bpe_merge(e, w, n) != 0) return -1;
    size_t first = (size_t)e->n, count = 0;
    for (int32_t i = 0; i >= 0; i = e->next[i], count++) enc_push(e, e->sym[i]);
    /* remember it (when all ids fitted in the caller's array, so they can be copied) */
    if (c && (int64_t)(first + count) <= e->max) {
        if (c->cache_n == TOK_CACHE_MAX_ENTRIES || c->cache_words_used + n > TOK_CACHE_WORD_BYTES ||
            c->cache_ids_used + count > TOK_CACHE_IDS) {
            memset(c->cache_slot, 0, TOK_CACHE_SLOTS * sizeof *c->cache_slot);
            c->cache_n = 0;
            c->cache_words_used = c->cache_ids_used = 0;
            for (slot = (uint32_t)h & mask; c->cache_slot[slot]; slot = (slot + 1) & mask) {}
        }
        tok_cache_entry *ce = &c->cache_ent[c->cache_n];
        *ce = (tok_cache_entry){h, (uint32_t)c->cache_words_used, (uint32_t)c->cache_ids_used, (uint16_t)n,
                                (uint16_t)count};
        memcpy(c->cache_words + c->cache_words_used, w, n);
        memcpy(c->cache_ids + c->cache_ids_used, e->ids + first, count * sizeof *e->ids);
        c->cache_words_used += n;
        c->cache_ids_used += count;
        c->cache_slot[slot] = ++c->cache_n;
    }
    return 0;
}

/* Split valid UTF-8 text with the pre-tokenizer regex and encode every piece;
 * text the regex does not match is a piece of its own. */
static int enc_valid_split(tok_enc *e, const uint8_t *s, size_t n) {
    const tokenizer *t = e->t;
    size_t gap = 0, from = 0; /* unmatched text starts at gap; the next search at from */
    while (from < n) {
        int rc = t->re_jit ? pcre2_jit_match(t->re, s, n, from, 0, e->md, NULL)
                           : pcre2_match(t->re, s, n, from, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            char msg[120];
            pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
            return tok_fail("pre-tokenizer regex failed: %s", msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: the character stays in the gap */
            int l = utf8_len(s + a, n - a);
            from = a + (size_t)(l > 0 ? l : 1);
            continue;
        }
        if (a > gap && enc_piece(e, s + gap, a - gap) != 0) return -1;
        if (enc_piece(e, s + a, b - a) != 0) return -1;
        gap = from = b;
    }
    if (gap < n && enc_piece(e, s + gap, n - gap) != 0) return -1;
    return 0;
}

/* Encode valid UTF-8 text: NFC first when the tokenizer normalizes, then split. */
static int enc_valid(tok_enc *e, const uint8_t *s, size_t n) {
    if (!e->t->nfc || !nfc_needed(s, n)) return enc_valid_split(e, s, n);
    size_t m;
    uint8_t *norm = nfc_normalize(s, n, &m);
    if (!norm) return tok_fail("out of memory");
    int rc = enc_valid_split(e, norm, m);
    free(norm);
    return rc;
}

/* Encode text without added tokens: valid UTF-8 runs through the regex, every byte
 * of an invalid sequence as its byte token. */
static int enc_plain(tok_enc *e, const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            if (s[j] < 0x80) {
                j++;
                continue;
            }
            int l = utf8_len(s + j, n - j);
            if (l <= 0) break;
            j += (size_t)l;
        }
        if (j > i && enc_valid(e, s + i, j - i) != 0) return -1;
        if (j < n) {
            int l = utf8_len(s + j, n - j);
            size_t bad = l == 0 ? n - j : (size_t)-l;
            for (size_t k = 0; k < bad; k++)
                if (enc_piece(e, s + j + k, 1) != 0) return -1;
            j += bad;
        }
        i = j;
    }
    return 0;
}

/* The longest added token at s (n bytes left), or NULL. */
static const tok_added *added_at(const tokenizer *t, const uint8_t *s, size_t n) {
    if (!t->added_first[s[0]]) return NULL;
    for (int k = 0; k < t->n_added; k++) {
        const tok_added *a = &t->added[k];
        if (a->len <= n && (uint8_t)a->text[0] == s[0] && memcmp(a->text, s, a->len) == 0) return a;
    }
    return NULL;
}

/* Encode text; with parse, added tokens become their ids. */
static int enc_text(tok_enc *e, const uint8_t *s, size_t n, bool parse) {
    if (!parse || e->t->n_added == 0) return enc_plain(e, s, n);
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        const tok_added *a = added_at(e->t, s + i, n - i);
        if (!a) {
            i++;
            continue;
        }
        if (i > seg && enc_plain(e, s + seg, i - seg) != 0) return -1;
        enc_push(e, a->id);
        i += a->len;
        seg = i;
    }
    return seg < n ? enc_plain(e, s + seg, n - seg) : 0;
}

/* Start an encoding call: output array, regex match data, the cache if free.
 * 0, or -1 when out of memory. */
static int enc_begin(tok_enc *e, const tokenizer *t, int32_t *ids, int64_t max) {
    memset(e, 0, sizeof *e);
    e->t = t;
    e->ids = ids;
    e->max = ids ? max : 0;
    e->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!e->md) return tok_fail("out of memory");
    /* the cache belongs to whichever call takes it; the others go without */
    if (pthread_mutex_trylock((pthread_mutex_t *)&t->cache_mu) == 0) e->cache = (tokenizer *)t;
    return 0;
}

/* Finish an encoding call: release what enc_begin took. Returns the id count,
 * or -1 when rc says the encoding failed. */
static int64_t enc_end(tok_enc *e, int rc) {
    if (e->cache) pthread_mutex_unlock(&e->cache->cache_mu);
    pcre2_match_data_free(e->md);
    free(e->sym);
    free(e->next);
    free(e->prev);
    free(e->heap);
    return rc == 0 ? e->n : -1;
}

int64_t tok_encode(const tokenizer *t, const char *text, size_t len, tok_special_mode mode, int32_t *ids,
                   int64_t max) {
    if (!t || (!text && len)) return tok_fail("tok_encode: no tokenizer or no text");
    tok_enc e;
    if (enc_begin(&e, t, ids, max) != 0) return -1;
    int rc = enc_text(&e, (const uint8_t *)text, len, mode == TOK_SPECIAL_PARSE);
    return enc_end(&e, rc);
}

/* Append n bytes to out (cap bytes) at *total, counting what does not fit. */
static void put_bytes(char *out, size_t cap, size_t *total, const void *p, size_t n) {
    if (out && *total < cap) memcpy(out + *total, p, n < cap - *total ? n : cap - *total);
    *total += n;
}

int64_t tok_normalize(const tokenizer *t, const char *text, size_t len, char *out, size_t cap) {
    if (!t || (!text && len)) return tok_fail("tok_normalize: bad arguments");
    const uint8_t *s = (const uint8_t *)text;
    size_t total = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i; /* [i, j): valid UTF-8 */
        while (j < len) {
            int l = s[j] < 0x80 ? 1 : utf8_len(s + j, len - j);
            if (l <= 0) break;
            j += (size_t)l;
        }
        if (t->nfc && nfc_needed(s + i, j - i)) {
            size_t n;
            uint8_t *norm = nfc_normalize(s + i, j - i, &n);
            if (!norm) return tok_fail("out of memory");
            put_bytes(out, cap, &total, norm, n);
            free(norm);
        } else {
            put_bytes(out, cap, &total, s + i, j - i);
        }
        if (j < len) { /* an invalid sequence: kept as it is */
            int l = utf8_len(s + j, len - j);
            size_t bad = l == 0 ? len - j : (size_t)-l;
            put_bytes(out, cap, &total, s + j, bad);
            j += bad;
        }
        i = j;
    }
    if (out && total < cap) out[total] = 0;
    return (int64_t)total;
}

/* ---------------------------------------------------------------- decoding */

int64_t tok_decode(const tokenizer *t, const int32_t *ids, int64_t n, char *buf, size_t cap) {
    if (!t || n < 0 || (n && !ids)) return tok_fail("tok_decode: bad arguments");
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *p = tok_piece(t, ids[i], &len);
        if (!p) return tok_fail("token id %d is not in the vocabulary", (int)ids[i]);
        if (buf && total < cap) memcpy(buf + total, p, len < cap - total ? len : cap - total);
        total += len;
    }
    if (buf && total < cap) buf[total] = 0;
    return (int64_t)total;
}

struct tok_stream {
    const tokenizer *t;
    uint8_t pend[4]; /* an incomplete UTF-8 start, waiting for its continuation */
    size_t n_pend;
    char *out;
    size_t cap;
};

/* A streaming detokenizer over t, or NULL (no tokenizer, out of memory). */
tok_stream *tok_stream_new(const tokenizer *t) {
    if (!t) return NULL;
    tok_stream *s = calloc(1, sizeof *s);
    if (s) s->t = t;
    return s;
}

/* Release a stream; accepts NULL. */
void tok_stream_free(tok_stream *s) {
    if (!s) return;
    free(s->out);
    free(s);
}

static const char replacement_char[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Move complete characters of pend+piece into s->out; invalid subparts become
 * U+FFFD; an incomplete tail stays pending (or, when final, becomes U+FFFD). */
static int stream_run(tok_stream *s, const char *piece, size_t len, bool final, size_t *out_len) {
    size_t n = s->n_pend + len;
    size_t need = n * 3 + 4; /* worst case: every byte becomes U+FFFD */
    if (need > s->cap) {
        char *o = realloc(s->out, need);
        if (!o) return tok_fail("out of memory");
        s->out = o;
        s->cap = need;
    }
    /* work on a joined copy; pend holds at most 3 bytes */
    uint8_t small[256], *buf = n <= sizeof small ? small : malloc(n);
    if (!buf) return tok_fail("out of memory");
    memcpy(buf, s->pend, s->n_pend);
    if (len) memcpy(buf + s->n_pend, piece, len);
    size_t i = 0, o = 0;
    s->n_pend = 0;
    while (i < n) {
        int l = utf8_len(buf + i, n - i);
        if (l > 0) {
            memcpy(s->out + o, buf + i, (size_t)l);
            o += (size_t)l;
            i += (size_t)l;
        } else if (l == 0 && !final) {
            memcpy(s->pend, buf + i, n - i);
            s->n_pend = n - i;
            break;
        } else {
            memcpy(s->out + o, replacement_char, 3);
            o += 3;
            i += l == 0 ? n - i : (size_t)-l;
        }
    }
    if (buf != small) free(buf);
    *out_len = o;
    return 0;
}

int tok_stream_feed(tok_stream *s, int32_t id, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (!s) return tok_fail("no stream");
    size_t len;
    const char *p = tok_piece(s->t, id, &len);
    if (!p) return tok_fail("token id %d is not in the vocabulary", (int)id);
    if (stream_run(s, p, len, false, out_len) != 0) return -1;
    *out = s->out;
    return 0;
}

void tok_stream_flush(tok_stream *s, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (!s || stream_run(s, NULL, 0, true, out_len) != 0) return;
    *out = s->out;
}

/* ---------------------------------------------------------------- ChatML */

/* A growing string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

/* Append len bytes, keeping the string NUL-terminated; sets oom on failure. */
static void sb_add(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

/* One rendered part of a chat: template text (trusted) or message content. */
typedef void (*chat_emit_fn)(void *ctx, const char *s, size_t len, bool content);

/* What QwQ's template keeps of an assistant message,
 * content.split('</think>')[-1].lstrip('\n'): the text after the last </think>
 * (all of it when there is none), without leading newlines. */
static const char *chat_answer(const char *content) {
    const char *p = content, *q;
    while ((q = strstr(p, "</think>"))) p = q + 8;
    while (*p == '\n') p++;
    return p;
}

/* Walk the messages as QwQ-32B's chat template does (without tools):
 *   system/user:  <|im_start|>ROLE\nCONTENT<|im_end|>\n
 *   assistant:    <|im_start|>assistant\nANSWER<|im_end|>\n   (reasoning and leading newlines dropped)
 *   tool:         consecutive results in one user turn, each \n<tool_response>\n...\n</tool_response>
 *   generation:   <|im_start|>assistant\n<think>\n
 * 0, or -1 for a message without role/content or with an unknown role. */
static int chat_walk(const chat_message *msgs, int n, bool gen, chat_emit_fn emit, void *ctx) {
#define T(s) emit(ctx, s, sizeof s - 1, false)
    if (n < 0 || (n > 0 && !msgs)) return tok_fail("chat: bad message list");
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *content = msgs[i].content;
        if (!role || !content) return tok_fail("chat: message %d has no role or no content", i);
        if (!strcmp(role, "system") || !strcmp(role, "user")) {
            T("<|im_start|>");
            emit(ctx, role, strlen(role), false);
            T("\n");
            emit(ctx, content, strlen(content), true);
            T("<|im_end|>\n");
        } else if (!strcmp(role, "assistant")) {
            const char *answer = chat_answer(content);
            T("<|im_start|>assistant\n");
            emit(ctx, answer, strlen(answer), true);
            T("<|im_end|>\n");
        } else if (!strcmp(role, "tool")) {
            if (i == 0 || strcmp(msgs[i - 1].role ? msgs[i - 1].role : "", "tool") != 0) T("<|im_start|>user");
            T("\n<tool_response>\n");
            emit(ctx, content, strlen(content), true);
            T("\n</tool_response>");
            if (i == n - 1 || strcmp(msgs[i + 1].role ? msgs[i + 1].role : "", "tool") != 0) T("<|im_end|>\n");
        } else {
            return tok_fail("chat: message %d has unknown role \"%.32s\"", i, role);
        }
    }
    if (gen) T("<|im_start|>assistant\n<think>\n");
    return 0;
#undef T
}

/* chat_render's sink: every part goes into the string. */
static void render_emit(void *ctx, const char *s, size_t len, bool content) {
    (void)content;
    sb_add(ctx, s, len);
}

char *chat_render(const chat_message *msgs, int n, bool add_generation_prompt) {
    sbuf b = {0};
    if (chat_walk(msgs, n, add_generation_prompt, render_emit, &b) != 0 || b.oom) {
        if (b.oom) err_set(tok_err, sizeof tok_err, "out of memory");
        free(b.p);
        return NULL;
    }
    if (!b.p) sb_add(&b, "", 0);
    return b.p;
}

/* chat_encode: template text is scanned for added tokens; content joins the plain
 * text between them unless content_mode parses it too. Plain text is gathered until
 * the next added token so that a piece spanning template and content (say "\n\n")
 * is split exactly as in the rendered string. */
typedef struct chat_enc {
    tok_enc *e;
    tok_special_mode mode;
    sbuf plain;
    int rc;
} chat_enc;

/* Encode the plain text gathered so far (no added tokens in it). */
static void chat_flush(chat_enc *c) {
    if (c->rc == 0 && c->plain.n && enc_plain(c->e, (const uint8_t *)c->plain.p, c->plain.n) != 0) c->rc = -1;
    c->plain.n = 0;
}

/* chat_encode's sink: untrusted content is gathered as plain text; template
 * text (and trusted content) has its added tokens turned into ids. */
static void encode_emit(void *ctx, const char *s, size_t len, bool content) {
    chat_enc *c = ctx;
    if (content && c->mode == TOK_SPECIAL_PLAIN) {
        sb_add(&c->plain, s, len);
        return;
    }
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        const tok_added *a = added_at(c->e->t, (const uint8_t *)s + i, len - i);
        if (!a) {
            i++;
            continue;
        }
        sb_add(&c->plain, s + seg, i - seg);
        chat_flush(c);
        if (c->rc == 0) enc_push(c->e, a->id);
        i += a->len;
        seg = i;
    }
    sb_add(&c->plain, s + seg, len - seg);
}

int64_t chat_encode(const tokenizer *t, const chat_message *msgs, int n, bool add_generation_prompt,
                    tok_special_mode content_mode, int32_t *ids, int64_t max) {
    if (!t) return tok_fail("chat_encode: no tokenizer");
    tok_enc e;
    if (enc_begin(&e, t, ids, max) != 0) return -1;
    chat_enc c = {&e, content_mode, {0}, 0};
    int rc = chat_walk(msgs, n, add_generation_prompt, encode_emit, &c);
    chat_flush(&c);
    if (c.plain.oom) rc = tok_fail("out of memory");
    free(c.plain.p);
    return enc_end(&e, rc != 0 ? rc : c.rc);
}

/* ---------------------------------------------------------------- allocating entry points */

/* One encoding to run: a text (msgs NULL) or a chat. */
typedef struct enc_call {
    const tokenizer *t;
    tok_special_mode mode;
    const char *text;
    size_t len;
    const chat_message *msgs;
    int n;
    bool gen;
} enc_call;

/* Run the call into a malloc'd array of `guess` ids, once more with the exact
 * count if that was too few (the encoders return the count they need). */
static int64_t encode_alloc(const enc_call *c, int64_t guess, int32_t **out, char *err, size_t errlen) {
    *out = NULL;
    for (int64_t cap = guess > 0 ? guess : 1;;) {
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) {
            err_set(err, errlen, "out of memory for %lld token ids", (long long)cap);
            return -1;
        }
        int64_t got = c->msgs ? chat_encode(c->t, c->msgs, c->n, c->gen, c->mode, ids, cap)
                              : tok_encode(c->t, c->text, c->len, c->mode, ids, cap);
        if (got >= 0 && got <= cap) {
            *out = ids;
            return got;
        }
        free(ids);
        if (got < 0) {
            err_set(err, errlen, "%s", tok_last_error());
            return -1;
        }
        cap = got;
    }
}

int64_t tok_encode_alloc(const tokenizer *t, const char *text, size_t len, tok_special_mode mode, int32_t **out,
                         char *err, size_t errlen) {
    enc_call c = {.t = t, .mode = mode, .text = text, .len = len};
    /* a byte-level BPE id covers at least one byte; the slack is for NFC growth */
    return encode_alloc(&c, (int64_t)len + 16, out, err, errlen);
}

int64_t chat_encode_alloc(const tokenizer *t, const chat_message *msgs, int n, bool add_generation_prompt,
                          tok_special_mode content_mode, int32_t **out, char *err, size_t errlen) {
    enc_call c = {.t = t, .mode = content_mode, .msgs = msgs, .n = n, .gen = add_generation_prompt};
    int64_t guess = 32; /* the template's own tokens per turn are fewer than this */
    for (int i = 0; msgs && i < n; i++)
        guess += 32 + (int64_t)(msgs[i].content ? strlen(msgs[i].content) : 0);
    return encode_alloc(&c, guess, out, err, errlen);
}
