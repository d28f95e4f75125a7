/* gguf.c - GGUF reader (validating, memory-mapped) and streaming writer; see gguf.h.
 *
 * File layout (all little-endian):
 *   "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *   n_kv x      { string key; u32 value_type; value }
 *   n_tensors x { string name; u32 n_dims; u64 ne[n_dims]; u32 type; u64 offset }
 *   padding to general.alignment, then the data section (tensor offsets count from here)
 * string = u64 length + bytes (no NUL); array value = u32 element type + u64 count + elements.
 *
 * The reader trusts nothing: every count is checked against the bytes left before
 * anything is allocated for it, and lists grow as entries are actually parsed, so a
 * corrupt count costs at most memory proportional to the file.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "quant.h"

#define GGUF_VERSION_WRITTEN 3
#define GGUF_MAX_ALIGNMENT (1u << 30)
/* Longest metadata string accepted: far above any real one (chat templates, embedded
 * tokenizer JSON are kilobytes to a few megabytes), low enough that a corrupt length
 * in a 20 GB file cannot make the reader copy gigabytes. */
#define GGUF_MAX_STRING (64ull << 20)
/* Smallest possible table entries, used to bound counts before parsing them. */
#define GGUF_MIN_KV_BYTES 14     /* key length 8 + one key byte + type 4 + a 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 33 /* name length 8 + one byte + n_dims 4 + one dim 8 + type 4 + offset 8 */

/* ---------------------------------------------------------------- value types */

typedef struct value_type_info {
    const char *name;
    uint32_t size;     /* bytes of a scalar; 0 for string and array */
    uint32_t wire_min; /* fewest bytes one value can take in the file */
} value_type_info;

static const value_type_info value_types[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"uint8", 1, 1},     [GGUF_TYPE_INT8] = {"int8", 1, 1},
    [GGUF_TYPE_UINT16] = {"uint16", 2, 2},   [GGUF_TYPE_INT16] = {"int16", 2, 2},
    [GGUF_TYPE_UINT32] = {"uint32", 4, 4},   [GGUF_TYPE_INT32] = {"int32", 4, 4},
    [GGUF_TYPE_FLOAT32] = {"float32", 4, 4}, [GGUF_TYPE_BOOL] = {"bool", 1, 1},
    [GGUF_TYPE_STRING] = {"string", 0, 8},   [GGUF_TYPE_ARRAY] = {"array", 0, 12},
    [GGUF_TYPE_UINT64] = {"uint64", 8, 8},   [GGUF_TYPE_INT64] = {"int64", 8, 8},
    [GGUF_TYPE_FLOAT64] = {"float64", 8, 8},
};

/* Name of a value type, "invalid" for an out-of-range id. */
const char *gguf_type_name(gguf_value_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? value_types[t].name : "invalid";
}

/* True for the fixed-size types (everything but string and array). */
static bool type_is_scalar(uint32_t t) {
    return t < GGUF_TYPE_COUNT && value_types[t].size != 0;
}

/* Little-endian loads (the reader works on any host byte order). */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Scalar of type t at p as an unsigned integer: false unless t is an integer type
 * and the value is non-negative. */
static bool scalar_as_u64(uint32_t t, const uint8_t *p, uint64_t *out) {
    int64_t s;
    switch (t) {
    case GGUF_TYPE_UINT8: *out = p[0]; return true;
    case GGUF_TYPE_UINT16: *out = le16(p); return true;
    case GGUF_TYPE_UINT32: *out = le32(p); return true;
    case GGUF_TYPE_UINT64: *out = le64(p); return true;
    case GGUF_TYPE_INT8: s = (int8_t)p[0]; break;
    case GGUF_TYPE_INT16: s = (int16_t)le16(p); break;
    case GGUF_TYPE_INT32: s = (int32_t)le32(p); break;
    case GGUF_TYPE_INT64: s = (int64_t)le64(p); break;
    default: return false;
    }
    if (s < 0) return false;
    *out = (uint64_t)s;
    return true;
}

/* Scalar of type t at p as a signed integer: false unless t is an integer type
 * and the value fits in int64. */
static bool scalar_as_i64(uint32_t t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case GGUF_TYPE_INT8: *out = (int8_t)p[0]; return true;
    case GGUF_TYPE_INT16: *out = (int16_t)le16(p); return true;
    case GGUF_TYPE_INT32: *out = (int32_t)le32(p); return true;
    case GGUF_TYPE_INT64: *out = (int64_t)le64(p); return true;
    default: break;
    }
    uint64_t u;
    if (!scalar_as_u64(t, p, &u) || u > INT64_MAX) return false;
    *out = (int64_t)u;
    return true;
}

/* Scalar of type t at p as a double: floats and integers; false otherwise. */
static bool scalar_as_f64(uint32_t t, const uint8_t *p, double *out) {
    if (t == GGUF_TYPE_FLOAT32) {
        uint32_t bits = le32(p);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
        return true;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        uint64_t bits = le64(p);
        memcpy(out, &bits, sizeof *out);
        return true;
    }
    int64_t i;
    if (scalar_as_i64(t, p, &i)) {
        *out = (double)i;
        return true;
    }
    uint64_t u;
    if (scalar_as_u64(t, p, &u)) {
        *out = (double)u;
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------- reader state */

typedef struct gguf_strv {
    const char *s; /* NUL-terminated copy in the file's arena */
    size_t len;
} gguf_strv;

/* An array value. Scalar elements stay in the image; strings and sub-arrays are
 * parsed into lists. n_done counts the list entries that are initialised (what
 * cleanup must walk if parsing stops half-way). */
typedef struct arr_node {
    gguf_value_type type;
    uint64_t count;
    uint64_t n_done;
    uint64_t cap;
    const uint8_t *raw;    /* scalars: count packed little-endian values */
    gguf_strv *strs;       /* strings */
    struct arr_node *subs; /* arrays */
} arr_node;

typedef struct gguf_kv {
    const char *key;
    gguf_value_type type;
    const uint8_t *raw; /* scalars: the value's bytes in the image */
    gguf_strv str;      /* strings */
    arr_node arr;       /* arrays */
} gguf_kv;

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

/* Open-addressing table of names -> index; slots hold index + 1, 0 is empty. */
typedef struct name_index {
    int64_t *slots;
    uint64_t mask;
} name_index;

struct gguf_file {
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    gguf_kv *kv;
    int64_t n_kv, cap_kv;
    gguf_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    name_index kv_index, tensor_index;
    arena_block *arena;
};

typedef struct parser {
    gguf_file *f;
    const uint8_t *p;
    size_t len, pos;
    char *err;
    size_t errlen;
    const char *path;     /* prefix of every message, or NULL */
    char where[384];      /* which entry is being parsed: "metadata key 3 ('x')" */
    uint64_t idx[GGUF_MAX_NESTING + 1]; /* element index at each array level */
    int depth;            /* array levels open */
} parser;

/* Write "path: message" into the parser's error buffer (err_set). Always returns -1. */
static int fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *ps, const char *fmt, ...) {
    if (!ps->err || !ps->errlen) return -1;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->path) err_set(ps->err, ps->errlen, "%s: %s", ps->path, msg);
    else err_set(ps->err, ps->errlen, "%s", msg);
    /* Names are sanitised, but keep the promise of one line whatever happens. */
    for (char *c = ps->err; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return -1;
}

/* The current location, with array element indices: "metadata key 3 ('x') value[2][0]". */
static const char *where(parser *ps, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "%s", ps->where);
    for (int d = 0; d < ps->depth && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "[%" PRIu64 "]", ps->idx[d]);
    return buf;
}

/* Render a name from the file for a message: printable ASCII kept, other bytes as
 * \xNN, cut with "..." after about 64 characters. */
static void show_name(char *out, size_t n, const char *s, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len && k + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k >= 64) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') out[k++] = (char)c;
        else k += (size_t)snprintf(out + k, n - k, "\\x%02x", c);
    }
    out[k] = 0;
}

/* Fail with "truncated" unless n bytes are left at the cursor. field says what
 * was being read ("type", "(string length 9)"). */
static int need(parser *ps, uint64_t n, const char *field) {
    size_t left = ps->len - ps->pos;
    if (n <= left) return 0;
    char w[512];
    return fail(ps, "truncated: %s %s needs %" PRIu64 " bytes at offset %zu, only %zu left", where(ps, w, sizeof w),
                field, n, ps->pos, left);
}

/* Read a little-endian u32/u64 at the cursor and advance; -1 if truncated. */
static int read_u32(parser *ps, const char *field, uint32_t *out) {
    if (need(ps, 4, field)) return -1;
    *out = le32(ps->p + ps->pos);
    ps->pos += 4;
    return 0;
}

static int read_u64(parser *ps, const char *field, uint64_t *out) {
    if (need(ps, 8, field)) return -1;
    *out = le64(ps->p + ps->pos);
    ps->pos += 8;
    return 0;
}

/* Copy len bytes into the file's arena, NUL-terminated. NULL when out of memory. */
static char *arena_copy(gguf_file *f, const uint8_t *s, size_t len) {
    arena_block *b = f->arena;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = f->arena;
        b->used = 0;
        b->cap = cap;
        f->arena = b;
    }
    char *d = b->data + b->used;
    memcpy(d, s, len);
    d[len] = 0;
    b->used += len + 1;
    return d;
}

/* Make room for `need` elements of `elem` bytes in *list (capacity *cap). */
static int grow(parser *ps, void **list, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return 0;
    uint64_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = c > SIZE_MAX / elem ? NULL : realloc(*list, (size_t)(c * elem));
    if (!p) return fail(ps, "out of memory reading the GGUF header");
    *list = p;
    *cap = c;
    return 0;
}

/* Read a string: u64 length, then that many bytes. `what` names it in messages. */
static int parse_string(parser *ps, const char *what, gguf_strv *out) {
    char field[96]; /* formatted only for a message: tokenizers hold 10^5 strings */
    if (ps->len - ps->pos < 8) {
        snprintf(field, sizeof field, "%s length", what);
        return need(ps, 8, field);
    }
    uint64_t len = le64(ps->p + ps->pos);
    ps->pos += 8;
    if (len > ps->len - ps->pos) {
        snprintf(field, sizeof field, "(%s length %" PRIu64 ")", what, len);
        return need(ps, len, field);
    }
    if (len > GGUF_MAX_STRING) {
        char w[512];
        return fail(ps, "%s: %s length %" PRIu64 " at offset %zu exceeds the limit of %llu bytes",
                    where(ps, w, sizeof w), what, len, ps->pos - 8, GGUF_MAX_STRING);
    }
    char *s = arena_copy(ps->f, ps->p + ps->pos, (size_t)len);
    if (!s) return fail(ps, "out of memory reading the GGUF header");
    out->s = s;
    out->len = (size_t)len;
    ps->pos += (size_t)len;
    return 0;
}

/* Read a key or tensor name: a string that is non-empty and has no NUL byte. */
static int parse_name(parser *ps, const char *what, gguf_strv *out) {
    if (parse_string(ps, what, out)) return -1;
    char w[512];
    if (out->len == 0) return fail(ps, "%s: empty %s", where(ps, w, sizeof w), what);
    if (memchr(out->s, 0, out->len)) {
        char shown[300];
        show_name(shown, sizeof shown, out->s, out->len);
        return fail(ps, "%s: %s '%s' contains a NUL byte", where(ps, w, sizeof w), what, shown);
    }
    return 0;
}

/* Bools must be 0 or 1; anything else means the file is not what it claims. */
static int check_bools(parser *ps, const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1) {
            char w[512];
            return fail(ps, "%s: bool value %u at offset %zu is not 0 or 1", where(ps, w, sizeof w), p[i],
                        (size_t)(p + i - ps->p));
        }
    }
    return 0;
}

static int parse_array(parser *ps, arr_node *a);

/* Read `n` elements of scalar type t, checking the bytes are there. */
static int parse_scalars(parser *ps, uint32_t t, uint64_t n, const uint8_t **raw) {
    uint64_t size = value_types[t].size;
    char field[96];
    snprintf(field, sizeof field, "(%" PRIu64 " x %s)", n, value_types[t].name);
    if (n > (ps->len - ps->pos) / size) {
        char w[512], bytes[32];
        if (n > UINT64_MAX / size) snprintf(bytes, sizeof bytes, "more than 2^64");
        else snprintf(bytes, sizeof bytes, "%" PRIu64, n * size);
        return fail(ps, "truncated: %s %s needs %s bytes at offset %zu, only %zu left", where(ps, w, sizeof w), field,
                    bytes, ps->pos, ps->len - ps->pos);
    }
    *raw = ps->p + ps->pos;
    if (t == GGUF_TYPE_BOOL && check_bools(ps, *raw, n)) return -1;
    ps->pos += (size_t)(n * size);
    return 0;
}

/* Read an array value (element type, count, elements) into a. a must be zeroed. */
static int parse_array(parser *ps, arr_node *a) {
    char w[512];
    if (ps->depth >= GGUF_MAX_NESTING)
        return fail(ps, "%s: arrays nested deeper than %d levels", where(ps, w, sizeof w), GGUF_MAX_NESTING);
    uint32_t t;
    uint64_t n;
    if (read_u32(ps, "array element type", &t)) return -1;
    if (t >= GGUF_TYPE_COUNT) return fail(ps, "%s: unknown array element type %u", where(ps, w, sizeof w), t);
    if (read_u64(ps, "array count", &n)) return -1;
    a->type = (gguf_value_type)t;
    a->count = n;
    uint64_t min = value_types[t].wire_min;
    if (n > (ps->len - ps->pos) / min) {
        char bytes[32];
        if (n > UINT64_MAX / min) snprintf(bytes, sizeof bytes, "2^64");
        else snprintf(bytes, sizeof bytes, "%" PRIu64, n * min);
        return fail(ps, "truncated: %s array of %" PRIu64 " %s needs at least %s bytes at offset %zu, only %zu left",
                    where(ps, w, sizeof w), n, value_types[t].name, bytes, ps->pos, ps->len - ps->pos);
    }
    if (type_is_scalar(t)) return parse_scalars(ps, t, n, &a->raw);

    int rc = 0;
    ps->depth++;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        ps->idx[ps->depth - 1] = i;
        if (t == GGUF_TYPE_STRING) {
            if ((rc = grow(ps, (void **)&a->strs, &a->cap, i + 1, sizeof *a->strs))) break;
            if ((rc = parse_string(ps, "string", &a->strs[i]))) break;
            a->n_done = i + 1;
        } else {
            if ((rc = grow(ps, (void **)&a->subs, &a->cap, i + 1, sizeof *a->subs))) break;
            memset(&a->subs[i], 0, sizeof a->subs[i]);
            a->n_done = i + 1;
            rc = parse_array(ps, &a->subs[i]);
        }
    }
    ps->depth--;
    return rc;
}

/* Free what parse_array allocated under a (not a itself). */
static void free_array(arr_node *a) {
    if (a->subs)
        for (uint64_t i = 0; i < a->n_done; i++) free_array(&a->subs[i]);
    free(a->subs);
    free(a->strs);
}

/* FNV-1a. */
static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Name of entry i, for the generic name index. */
typedef const char *(*name_of_fn)(const gguf_file *f, int64_t i);
static const char *kv_name(const gguf_file *f, int64_t i) { return f->kv[i].key; }
static const char *tensor_name(const gguf_file *f, int64_t i) { return f->tensors[i].name; }

/* Index n names. Returns -1 when out of memory; on a duplicate, the two indices
 * in *dup_a < *dup_b and returns 1. */
static int index_build(const gguf_file *f, name_index *ix, int64_t n, name_of_fn name_of, int64_t *dup_a,
                       int64_t *dup_b) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return -1;
    ix->mask = cap - 1;
    for (int64_t i = 0; i < n; i++) {
        const char *name = name_of(f, i);
        for (uint64_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
            int64_t s = ix->slots[h];
            if (s == 0) {
                ix->slots[h] = i + 1;
                break;
            }
            if (strcmp(name_of(f, s - 1), name) == 0) {
                *dup_a = s - 1;
                *dup_b = i;
                return 1;
            }
        }
    }
    return 0;
}

/* Index of name in ix, or -1. */
static int64_t index_find(const gguf_file *f, const name_index *ix, name_of_fn name_of, const char *name) {
    if (!ix->slots || !name) return -1;
    for (uint64_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        int64_t s = ix->slots[h];
        if (s == 0) return -1;
        if (strcmp(name_of(f, s - 1), name) == 0) return s - 1;
    }
}

/* "2^60" for large powers of two (corrupt counts read better that way), else decimal. */
static const char *show_count(char *buf, size_t n, uint64_t v) {
    if (v >= (1ull << 20) && (v & (v - 1)) == 0) snprintf(buf, n, "2^%d", __builtin_ctzll(v));
    else snprintf(buf, n, "%" PRIu64, v);
    return buf;
}

/* Header: magic, version, the two counts (bounded by the bytes that follow). */
static int parse_header(parser *ps, uint64_t *n_tensors, uint64_t *n_kv) {
    gguf_file *f = ps->f;
    snprintf(ps->where, sizeof ps->where, "header");
    if (ps->len == 0) return fail(ps, "truncated: the file is empty (a GGUF header needs 24 bytes)");
    if (ps->len >= 4 && memcmp(ps->p, "GGUF", 4) != 0)
        return fail(ps, "bad magic 0x%08" PRIx32 " (expected 'GGUF')", le32(ps->p));
    if (need(ps, 4, "magic")) return -1;
    ps->pos = 4;
    if (read_u32(ps, "version", &f->version)) return -1;
    uint32_t v = f->version;
    uint32_t swapped = __builtin_bswap32(v);
    if (v > 0xffff && swapped >= 1 && swapped <= 3) return fail(ps, "big-endian GGUF is not supported");
    if (v != 2 && v != 3) return fail(ps, "unsupported GGUF version %" PRIu32 " (supported: 2, 3)", v);
    if (read_u64(ps, "tensor count", n_tensors) || read_u64(ps, "metadata key count", n_kv)) return -1;
    size_t left = ps->len - ps->pos;
    char c[32];
    if (*n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        return fail(ps, "tensor count %s exceeds what the file can hold (each entry takes at least %d bytes, %zu left "
                        "after the header; truncated or corrupt)",
                    show_count(c, sizeof c, *n_tensors), GGUF_MIN_TENSOR_BYTES, left);
    if (*n_kv > left / GGUF_MIN_KV_BYTES)
        return fail(ps, "metadata key count %s exceeds what the file can hold (each entry takes at least %d bytes, "
                        "%zu left after the header; truncated or corrupt)",
                    show_count(c, sizeof c, *n_kv), GGUF_MIN_KV_BYTES, left);
    if (*n_tensors * GGUF_MIN_TENSOR_BYTES + *n_kv * GGUF_MIN_KV_BYTES > left)
        return fail(ps, "%" PRIu64 " metadata keys and %" PRIu64 " tensors exceed what the file can hold (%zu bytes "
                        "left after the header; truncated or corrupt)",
                    *n_kv, *n_tensors, left);
    return 0;
}

/* The metadata list, then general.alignment from it. */
static int parse_metadata(parser *ps, uint64_t n_kv) {
    gguf_file *f = ps->f;
    char w[512];
    for (uint64_t i = 0; i < n_kv; i++) {
        if (grow(ps, (void **)&f->kv, (uint64_t *)&f->cap_kv, i + 1, sizeof *f->kv)) return -1;
        gguf_kv *kv = &f->kv[i];
        memset(kv, 0, sizeof *kv);
        f->n_kv = (int64_t)i + 1;
        snprintf(ps->where, sizeof ps->where, "metadata key %" PRIu64, i);
        gguf_strv key;
        if (parse_name(ps, "key name", &key)) return -1;
        kv->key = key.s;
        char shown[300];
        show_name(shown, sizeof shown, key.s, key.len);
        snprintf(ps->where, sizeof ps->where, "metadata key %" PRIu64 " ('%s')", i, shown);
        uint32_t t;
        if (read_u32(ps, "value type", &t)) return -1;
        if (t >= GGUF_TYPE_COUNT) return fail(ps, "%s: unknown value type %" PRIu32, where(ps, w, sizeof w), t);
        kv->type = (gguf_value_type)t;
        size_t at = strlen(ps->where);
        snprintf(ps->where + at, sizeof ps->where - at, " value");
        if (type_is_scalar(t)) {
            if (parse_scalars(ps, t, 1, &kv->raw)) return -1;
        } else if (t == GGUF_TYPE_STRING) {
            if (parse_string(ps, "string", &kv->str)) return -1;
        } else {
            if (parse_array(ps, &kv->arr)) return -1;
        }
    }

    int64_t a, b;
    int rc = index_build(f, &f->kv_index, f->n_kv, kv_name, &a, &b);
    if (rc < 0) return fail(ps, "out of memory reading the GGUF header");
    if (rc > 0) {
        char shown[300];
        show_name(shown, sizeof shown, f->kv[a].key, strlen(f->kv[a].key));
        return fail(ps, "duplicate metadata key '%s' (entries %" PRId64 " and %" PRId64 ")", shown, a, b);
    }

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t k = index_find(f, &f->kv_index, kv_name, "general.alignment");
    if (k >= 0) {
        uint64_t al;
        if (!type_is_scalar(f->kv[k].type) || !scalar_as_u64(f->kv[k].type, f->kv[k].raw, &al)) {
            int64_t sv;
            if (type_is_scalar(f->kv[k].type) && scalar_as_i64(f->kv[k].type, f->kv[k].raw, &sv))
                return fail(ps, "general.alignment %" PRId64 " is not a power of two", sv);
            return fail(ps, "general.alignment has type %s, expected an unsigned integer",
                        gguf_type_name(f->kv[k].type));
        }
        if (al == 0 || (al & (al - 1)) != 0)
            return fail(ps, "general.alignment %" PRIu64 " is not a power of two", al);
        if (al > GGUF_MAX_ALIGNMENT)
            return fail(ps, "general.alignment %" PRIu64 " is larger than the supported maximum %u", al,
                        GGUF_MAX_ALIGNMENT);
        f->alignment = al;
    }
    return 0;
}

/* One tensor table entry: name, dims, type, offset; sizes checked for overflow. */
static int parse_tensor_info(parser *ps, uint64_t i) {
    gguf_file *f = ps->f;
    if (grow(ps, (void **)&f->tensors, (uint64_t *)&f->cap_tensors, i + 1, sizeof *f->tensors)) return -1;
    gguf_tensor *t = &f->tensors[i];
    memset(t, 0, sizeof *t);
    snprintf(ps->where, sizeof ps->where, "tensor %" PRIu64, i);
    gguf_strv name;
    if (parse_name(ps, "tensor name", &name)) return -1;
    t->name = name.s;
    char shown[300];
    show_name(shown, sizeof shown, name.s, name.len);
    snprintf(ps->where, sizeof ps->where, "tensor '%s'", shown);
    const char *w = ps->where;

    if (read_u32(ps, "n_dims", &t->n_dims)) return -1;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(ps, "%s: n_dims %" PRIu32 " is outside 1..%d", w, t->n_dims, GGUF_MAX_DIMS);
    int64_t n_elems = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        char field[32];
        snprintf(field, sizeof field, "dimension %" PRIu32, d);
        uint64_t ne;
        if (read_u64(ps, field, &ne)) return -1;
        if (ne == 0) return fail(ps, "%s: dimension %" PRIu32 " is 0", w, d);
        if (ne > INT64_MAX) return fail(ps, "%s: dimension %" PRIu32 " (%" PRIu64 ") is too large", w, d, ne);
        t->ne[d] = (int64_t)ne;
        if (n_elems > INT64_MAX / (int64_t)ne) overflow = true;
        else n_elems *= (int64_t)ne;
    }
    if (overflow) return fail(ps, "%s: element count overflows", w);
    t->n_elems = n_elems;

    if (read_u32(ps, "type", &t->type)) return -1;
    const tensor_type_info *ti = tensor_type_get(t->type);
    if (!ti) {
        const char *tn = quant_type_name_any(t->type);
        return fail(ps, "%s: tensor type %s (%" PRIu32 ") is not one Baton runs (it runs: %s)", w,
                    tn ? tn : "unknown", t->type, quant_supported_list());
    }
    if (t->ne[0] % ti->block_elems != 0)
        return fail(ps, "%s: row length %" PRId64 " is not a multiple of the block size %" PRIu32 " of type %s", w,
                    t->ne[0], ti->block_elems, ti->name);
    uint64_t blocks_per_row = (uint64_t)t->ne[0] / ti->block_elems;
    if (blocks_per_row > SIZE_MAX / ti->block_bytes) return fail(ps, "%s: size in bytes overflows", w);
    size_t row_bytes = tensor_row_bytes(t->type, t->ne[0]);
    if (row_bytes != blocks_per_row * ti->block_bytes)
        return fail(ps, "%s: row size of type %s disagrees with its table entry", w, ti->name);
    uint64_t rows = (uint64_t)(n_elems / t->ne[0]);
    if (rows > SIZE_MAX / row_bytes) return fail(ps, "%s: size in bytes overflows", w);
    t->bytes = (size_t)(rows * row_bytes);

    if (read_u64(ps, "data offset", &t->offset)) return -1;
    if (t->offset % f->alignment != 0)
        return fail(ps, "%s: offset %" PRIu64 " is not aligned to %" PRIu64, w, t->offset, f->alignment);
    return 0;
}

/* qsort order of tensor pointers: by data offset, then by table position. */
static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* The tensor table, then where the data lies: inside the file, without overlaps. */
static int parse_tensors(parser *ps, uint64_t n_tensors) {
    gguf_file *f = ps->f;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (parse_tensor_info(ps, i)) return -1;
        f->n_tensors = (int64_t)i + 1;
    }
    int64_t a, b;
    int rc = index_build(f, &f->tensor_index, f->n_tensors, tensor_name, &a, &b);
    if (rc < 0) return fail(ps, "out of memory reading the GGUF header");
    char s1[300], s2[300];
    if (rc > 0) {
        show_name(s1, sizeof s1, f->tensors[a].name, strlen(f->tensors[a].name));
        return fail(ps, "duplicate tensor name '%s' (tensors %" PRId64 " and %" PRId64 ")", s1, a, b);
    }

    uint64_t end = ps->pos;
    f->data_offset = (end + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_offset > ps->len)
        return fail(ps, "truncated: the data section starts at offset %" PRIu64 " (tensor table ends at %" PRIu64
                        ", aligned to %" PRIu64 ") but the file has only %zu bytes",
                    f->data_offset, end, f->alignment, ps->len);
    uint64_t room = ps->len - f->data_offset;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > room || t->bytes > room - t->offset) {
            show_name(s1, sizeof s1, t->name, strlen(t->name));
            if (t->offset > UINT64_MAX - f->data_offset || t->offset + f->data_offset > UINT64_MAX - t->bytes)
                return fail(ps, "tensor '%s': data at offset %" PRIu64 " (+%zu bytes) lies outside the file (size %zu)",
                            s1, t->offset, t->bytes, ps->len);
            return fail(ps, "tensor '%s': data [%" PRIu64 ", %" PRIu64 ") lies outside the file (size %zu)", s1,
                        f->data_offset + t->offset, f->data_offset + t->offset + t->bytes, ps->len);
        }
        t->data = ps->p + f->data_offset + t->offset;
    }

    if (f->n_tensors > 1) {
        gguf_tensor **order = malloc((size_t)f->n_tensors * sizeof *order);
        if (!order) return fail(ps, "out of memory reading the GGUF header");
        for (int64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_tensor_offset);
        for (int64_t i = 1; i < f->n_tensors; i++) {
            const gguf_tensor *x = order[i - 1], *y = order[i];
            if (x->offset + x->bytes > y->offset) {
                show_name(s1, sizeof s1, x->name, strlen(x->name));
                show_name(s2, sizeof s2, y->name, strlen(y->name));
                free(order);
                return fail(ps, "tensors '%s' and '%s' overlap (data offsets %" PRIu64 "+%zu and %" PRIu64 ")", s1, s2,
                            x->offset, x->bytes, y->offset);
            }
        }
        free(order);
    }
    return 0;
}

/* Parse and validate an image; the result points into buf. */
static gguf_file *parse_image(const void *buf, size_t len, const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    gguf_file *f = calloc(1, sizeof *f);
    parser ps = {.f = f, .p = buf, .len = len, .err = err, .errlen = errlen, .path = path};
    if (!f) {
        fail(&ps, "out of memory");
        return NULL;
    }
    f->base = buf;
    f->size = len;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint64_t n_tensors = 0, n_kv = 0;
    if (parse_header(&ps, &n_tensors, &n_kv) || parse_metadata(&ps, n_kv) || parse_tensors(&ps, n_tensors)) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open_memory(const void *buf, size_t len, char *err, size_t errlen) {
    if (!buf && len) {
        err_set(err, errlen, "no buffer given");
        return NULL;
    }
    static const uint8_t empty[1];
    return parse_image(buf ? buf : empty, len, NULL, err, errlen);
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!path) {
        err_set(err, errlen, "no model path given");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
        if (err && errlen)
            err_set(err, errlen, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        close(fd);
        return parse_image("", 0, path, err, errlen);
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        err_set(err, errlen, "%s: cannot map %zu bytes: %s", path, size, strerror(map_errno));
        return NULL;
    }
    gguf_file *f = parse_image(map, size, path, err, errlen);
    if (!f) {
        munmap(map, size);
        return NULL;
    }
    f->mapped = true;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].type == GGUF_TYPE_ARRAY) free_array(&f->kv[i].arr);
    free(f->kv);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    while (f->arena) {
        arena_block *next = f->arena->next;
        free(f->arena);
        f->arena = next;
    }
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f);
}

/* ---------------------------------------------------------------- reader queries */

uint32_t gguf_version(const gguf_file *f) { return f ? f->version : 0; }
uint64_t gguf_alignment(const gguf_file *f) { return f ? f->alignment : 0; }
size_t gguf_file_size(const gguf_file *f) { return f ? f->size : 0; }
uint64_t gguf_data_offset(const gguf_file *f) { return f ? f->data_offset : 0; }

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void gguf_digest(const gguf_file *f, char out[GGUF_DIGEST_LEN]) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, f->base, (size_t)f->data_offset);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        size_t n = t->bytes < GGUF_DIGEST_SAMPLE ? t->bytes : GGUF_DIGEST_SAMPLE;
        h = fnv1a(h, t->data, n);
        h = fnv1a(h, (const uint8_t *)t->data + t->bytes - n, n);
    }
    snprintf(out, GGUF_DIGEST_LEN, "gguf:%016llx:%llu", (unsigned long long)h, (unsigned long long)f->size);
}

int64_t gguf_key_count(const gguf_file *f) { return f ? f->n_kv : 0; }

const char *gguf_key_name(const gguf_file *f, int64_t i) {
    return f && i >= 0 && i < f->n_kv ? f->kv[i].key : NULL;
}

int64_t gguf_find_key(const gguf_file *f, const char *key) {
    return f ? index_find(f, &f->kv_index, kv_name, key) : -1;
}

gguf_value_type gguf_key_type(const gguf_file *f, int64_t i) {
    return f && i >= 0 && i < f->n_kv ? f->kv[i].type : GGUF_TYPE_COUNT;
}

/* The entry for key, or NULL. */
static const gguf_kv *find_kv(const gguf_file *f, const char *key) {
    int64_t i = gguf_find_key(f, key);
    return i < 0 ? NULL : &f->kv[i];
}

int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    return type_is_scalar(kv->type) && scalar_as_u64(kv->type, kv->raw, out) ? 0 : -2;
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    return type_is_scalar(kv->type) && scalar_as_i64(kv->type, kv->raw, out) ? 0 : -2;
}

int gguf_get_float(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    return type_is_scalar(kv->type) && scalar_as_f64(kv->type, kv->raw, out) ? 0 : -2;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_BOOL) return -2;
    *out = kv->raw[0] != 0;
    return 0;
}

int gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_STRING) return -2;
    *s = kv->str.s;
    if (len) *len = kv->str.len;
    return 0;
}

int gguf_get_array(const gguf_file *f, const char *key, gguf_array *out) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return -1;
    if (kv->type != GGUF_TYPE_ARRAY) return -2;
    out->type = kv->arr.type;
    out->count = kv->arr.count;
    out->opaque = &kv->arr;
    return 0;
}

/* The node behind a handle, if element i exists. */
static const arr_node *array_node(const gguf_array *a, uint64_t i) {
    if (!a || !a->opaque) return NULL;
    const arr_node *n = a->opaque;
    return i < n->count ? n : NULL;
}

int gguf_array_string(const gguf_array *a, uint64_t i, const char **s, size_t *len) {
    const arr_node *n = array_node(a, i);
    if (!n) return -1;
    if (n->type != GGUF_TYPE_STRING) return -2;
    *s = n->strs[i].s;
    if (len) *len = n->strs[i].len;
    return 0;
}

int gguf_array_int(const gguf_array *a, uint64_t i, int64_t *out) {
    const arr_node *n = array_node(a, i);
    if (!n) return -1;
    if (!type_is_scalar(n->type)) return -2;
    return scalar_as_i64(n->type, n->raw + i * value_types[n->type].size, out) ? 0 : -2;
}

int gguf_array_float(const gguf_array *a, uint64_t i, double *out) {
    const arr_node *n = array_node(a, i);
    if (!n) return -1;
    if (!type_is_scalar(n->type)) return -2;
    return scalar_as_f64(n->type, n->raw + i * value_types[n->type].size, out) ? 0 : -2;
}

int gguf_array_at(const gguf_array *a, uint64_t i, gguf_array *sub) {
    const arr_node *n = array_node(a, i);
    if (!n) return -1;
    if (n->type != GGUF_TYPE_ARRAY) return -2;
    sub->type = n->subs[i].type;
    sub->count = n->subs[i].count;
    sub->opaque = &n->subs[i];
    return 0;
}

int64_t gguf_tensor_count(const gguf_file *f) { return f ? f->n_tensors : 0; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return f && i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = f ? index_find(f, &f->tensor_index, tensor_name, name) : -1;
    return i < 0 ? NULL : &f->tensors[i];
}

/* ---------------------------------------------------------------- writer */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t bytes, offset;
} wtensor;

typedef struct wopen {
    gguf_value_type type;
    uint64_t count, done;
} wopen;

struct gguf_writer {
    wbuf meta; /* serialised metadata entries, in declaration order */
    int64_t n_kv;
    char **keys;
    int64_t n_keys, cap_keys;
    wtensor *tensors;
    int64_t n_tensors, cap_tensors;
    uint32_t alignment;
    bool alignment_set;
    wopen open[GGUF_MAX_NESTING]; /* arrays being built, outermost first */
    int depth;
    bool broken;         /* a misuse left the metadata inconsistent */
    bool header_written;
    int64_t next_tensor;  /* the tensor whose bytes come next */
    uint64_t next_done;   /* bytes of it written so far */
    char err[256];
};

/* Record why the last call failed (err_set); -1 for `return wfail(...)`. */
#define wfail(w, ...) (err_set((w)->err, sizeof (w)->err, __VA_ARGS__), -1)

/* Append n bytes; -1 when out of memory. */
static int wbuf_put(wbuf *b, const void *src, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* Append v / a string (u64 length + bytes) little-endian; -1 when out of memory. */
static int wbuf_u32(wbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return wbuf_put(b, x, 4);
}

static int wbuf_u64(wbuf *b, uint64_t v) { return wbuf_u32(b, (uint32_t)v) || wbuf_u32(b, (uint32_t)(v >> 32)); }

static int wbuf_str(wbuf *b, const char *s, size_t len) { return wbuf_u64(b, len) || wbuf_put(b, s, len); }

/* Append one scalar of type t read from the C value at v, little-endian. */
static int wbuf_scalar(wbuf *b, gguf_value_type t, const void *v) {
    switch (value_types[t].size) {
    case 1: {
        uint8_t x;
        if (t == GGUF_TYPE_BOOL) x = *(const bool *)v ? 1 : 0;
        else memcpy(&x, v, 1);
        return wbuf_put(b, &x, 1);
    }
    case 2: {
        uint16_t x;
        memcpy(&x, v, 2);
        uint8_t y[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
        return wbuf_put(b, y, 2);
    }
    case 4: {
        uint32_t x;
        memcpy(&x, v, 4);
        return wbuf_u32(b, x);
    }
    default: {
        uint64_t x;
        memcpy(&x, v, 8);
        return wbuf_u64(b, x);
    }
    }
}

/* C size of one value of scalar type t as passed by callers. */
static size_t c_size(gguf_value_type t) { return t == GGUF_TYPE_BOOL ? sizeof(bool) : value_types[t].size; }

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->meta.p);
    for (int64_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    free(w->keys);
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

const char *gguf_writer_error(const gguf_writer *w) { return w ? w->err : "no writer"; }

/* Check a writer can take another top-level key and that the key is acceptable. */
static int check_new_key(gguf_writer *w, const char *key) {
    if (w->broken) return -1;
    if (w->header_written) return wfail(w, "metadata key '%s' added after the header was written", key ? key : "");
    if (w->depth) return wfail(w, "metadata key '%s' added while an array is open", key ? key : "");
    if (!key || !key[0]) return wfail(w, "empty metadata key");
    for (int64_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0) return wfail(w, "duplicate metadata key '%s'", key);
    if (w->alignment_set && strcmp(key, "general.alignment") == 0)
        return wfail(w, "duplicate metadata key 'general.alignment'");
    return 0;
}

/* Remember a key as taken. */
static int remember_key(gguf_writer *w, const char *key) {
    if (w->n_keys == w->cap_keys) {
        int64_t cap = w->cap_keys ? w->cap_keys * 2 : 32;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) return wfail(w, "out of memory");
        w->keys = k;
        w->cap_keys = cap;
    }
    if (!(w->keys[w->n_keys] = strdup(key))) return wfail(w, "out of memory");
    w->n_keys++;
    return 0;
}

/* Start a top-level entry: key and value type. */
static int begin_kv(gguf_writer *w, const char *key, gguf_value_type t) {
    if (check_new_key(w, key)) return -1;
    if (strcmp(key, "general.alignment") == 0)
        return wfail(w, "general.alignment must be set with gguf_writer_set_alignment");
    size_t mark = w->meta.len;
    if (wbuf_str(&w->meta, key, strlen(key)) || wbuf_u32(&w->meta, t) || remember_key(w, key)) {
        w->meta.len = mark;
        return wfail(w, "out of memory");
    }
    w->n_kv++;
    return 0;
}

/* One scalar entry. */
static int add_scalar(gguf_writer *w, const char *key, gguf_value_type t, const void *v) {
    if (begin_kv(w, key, t)) return -1;
    if (wbuf_scalar(&w->meta, t, v)) {
        w->broken = true;
        return wfail(w, "out of memory");
    }
    return 0;
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment) {
    if (!w) return;
    if (w->header_written) {
        err_set(w->err, sizeof w->err, "alignment set after the header was written");
        return;
    }
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > GGUF_MAX_ALIGNMENT) {
        w->broken = true;
        err_set(w->err, sizeof w->err, "alignment %" PRIu32 " is not a power of two up to 2^30", alignment);
        return;
    }
    w->alignment = alignment;
    w->alignment_set = true;
}

/* The typed adders: one scalar entry each (see gguf.h). */
int gguf_writer_add_uint32(gguf_writer *w, const char *key, uint32_t v) {
    if (key && strcmp(key, "general.alignment") == 0) {
        if (check_new_key(w, key)) return -1;
        gguf_writer_set_alignment(w, v);
        return w->broken ? -1 : 0;
    }
    return add_scalar(w, key, GGUF_TYPE_UINT32, &v);
}
int gguf_writer_add_uint8(gguf_writer *w, const char *key, uint8_t v) { return add_scalar(w, key, GGUF_TYPE_UINT8, &v); }
int gguf_writer_add_int8(gguf_writer *w, const char *key, int8_t v) { return add_scalar(w, key, GGUF_TYPE_INT8, &v); }
int gguf_writer_add_uint16(gguf_writer *w, const char *key, uint16_t v) {
    return add_scalar(w, key, GGUF_TYPE_UINT16, &v);
}
int gguf_writer_add_int16(gguf_writer *w, const char *key, int16_t v) { return add_scalar(w, key, GGUF_TYPE_INT16, &v); }
int gguf_writer_add_int32(gguf_writer *w, const char *key, int32_t v) { return add_scalar(w, key, GGUF_TYPE_INT32, &v); }
int gguf_writer_add_uint64(gguf_writer *w, const char *key, uint64_t v) {
    return add_scalar(w, key, GGUF_TYPE_UINT64, &v);
}
int gguf_writer_add_int64(gguf_writer *w, const char *key, int64_t v) { return add_scalar(w, key, GGUF_TYPE_INT64, &v); }
int gguf_writer_add_float32(gguf_writer *w, const char *key, float v) {
    return add_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}
int gguf_writer_add_float64(gguf_writer *w, const char *key, double v) {
    return add_scalar(w, key, GGUF_TYPE_FLOAT64, &v);
}
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v) { return add_scalar(w, key, GGUF_TYPE_BOOL, &v); }

int gguf_writer_add_string(gguf_writer *w, const char *key, const char *v) {
    if (!v) return wfail(w, "metadata key '%s': NULL string", key ? key : "");
    if (begin_kv(w, key, GGUF_TYPE_STRING)) return -1;
    if (wbuf_str(&w->meta, v, strlen(v))) {
        w->broken = true;
        return wfail(w, "out of memory");
    }
    return 0;
}

int gguf_writer_begin_array(gguf_writer *w, const char *key, gguf_value_type type, uint64_t n) {
    if (!w || w->broken) return -1;
    if ((unsigned)type >= GGUF_TYPE_COUNT) {
        w->broken = true;
        return wfail(w, "array element type %d is invalid", (int)type);
    }
    if (key) {
        if (begin_kv(w, key, GGUF_TYPE_ARRAY)) return -1;
    } else {
        wopen *o = w->depth ? &w->open[w->depth - 1] : NULL;
        if (!o || o->type != GGUF_TYPE_ARRAY || o->done == o->count || w->depth == GGUF_MAX_NESTING) {
            w->broken = true;
            return wfail(w, "sub-array begun where no array of arrays has room for one");
        }
        o->done++;
    }
    if (wbuf_u32(&w->meta, type) || wbuf_u64(&w->meta, n)) {
        w->broken = true;
        return wfail(w, "out of memory");
    }
    w->open[w->depth++] = (wopen){type, n, 0};
    return 0;
}

/* Check the open array takes one more element of type t. */
static int push_check(gguf_writer *w, gguf_value_type t) {
    if (!w || w->broken) return -1;
    wopen *o = w->depth ? &w->open[w->depth - 1] : NULL;
    if (!o || o->type != t || o->done == o->count) {
        w->broken = true;
        return wfail(w, "array element of type %s pushed where none fits", gguf_type_name(t));
    }
    o->done++;
    return 0;
}

int gguf_writer_push_value(gguf_writer *w, gguf_value_type type, const void *v) {
    if (!type_is_scalar(type)) {
        if (w) w->broken = true;
        return w ? wfail(w, "push_value takes scalar types, not %s", gguf_type_name(type)) : -1;
    }
    if (push_check(w, type)) return -1;
    if (wbuf_scalar(&w->meta, type, v)) {
        w->broken = true;
        return wfail(w, "out of memory");
    }
    return 0;
}

int gguf_writer_push_string(gguf_writer *w, const char *s) {
    if (push_check(w, GGUF_TYPE_STRING)) return -1;
    if (!s || wbuf_str(&w->meta, s, strlen(s))) {
        w->broken = true;
        return wfail(w, s ? "out of memory" : "NULL string pushed");
    }
    return 0;
}

int gguf_writer_end_array(gguf_writer *w) {
    if (!w || w->broken) return -1;
    if (!w->depth) {
        w->broken = true;
        return wfail(w, "end_array without an open array");
    }
    wopen *o = &w->open[w->depth - 1];
    if (o->done != o->count) {
        w->broken = true;
        return wfail(w, "array closed after %" PRIu64 " of %" PRIu64 " elements", o->done, o->count);
    }
    w->depth--;
    return 0;
}

int gguf_writer_add_array(gguf_writer *w, const char *key, gguf_value_type type, const void *v, uint64_t n) {
    if (!w) return -1;
    if (!type_is_scalar(type)) return wfail(w, "add_array takes scalar element types, not %s", gguf_type_name(type));
    if (!key) return wfail(w, "add_array needs a key");
    if (n && !v) return wfail(w, "metadata key '%s': NULL array", key);
    if (gguf_writer_begin_array(w, key, type, n)) return -1;
    const uint8_t *p = v;
    for (uint64_t i = 0; i < n; i++)
        if (gguf_writer_push_value(w, type, p + i * c_size(type))) return -1;
    return gguf_writer_end_array(w);
}

int gguf_writer_add_array_string(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (!w) return -1;
    if (!key) return wfail(w, "add_array_string needs a key");
    if (n && !v) return wfail(w, "metadata key '%s': NULL array", key);
    if (gguf_writer_begin_array(w, key, GGUF_TYPE_STRING, n)) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (gguf_writer_push_string(w, v[i])) return -1;
    return gguf_writer_end_array(w);
}

int gguf_writer_add_array_int32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    return gguf_writer_add_array(w, key, GGUF_TYPE_INT32, v, n);
}

int gguf_writer_add_array_float32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    return gguf_writer_add_array(w, key, GGUF_TYPE_FLOAT32, v, n);
}

int64_t gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne) {
    if (!w || w->broken) return -1;
    if (w->header_written) return wfail(w, "tensor '%s' added after the header was written", name ? name : "");
    if (!name || !name[0]) return wfail(w, "empty tensor name");
    const tensor_type_info *ti = tensor_type_get(type);
    if (!ti) return wfail(w, "tensor '%s': unknown type %" PRIu32, name, type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS || !ne)
        return wfail(w, "tensor '%s': n_dims %" PRIu32 " is outside 1..%d", name, n_dims, GGUF_MAX_DIMS);
    wtensor t = {.type = type, .n_dims = n_dims};
    int64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0) return wfail(w, "tensor '%s': dimension %" PRIu32 " is %" PRId64, name, d, t.ne[d]);
        if (n_elems > INT64_MAX / t.ne[d]) return wfail(w, "tensor '%s': element count overflows", name);
        n_elems *= t.ne[d];
    }
    if (t.ne[0] % ti->block_elems)
        return wfail(w, "tensor '%s': row length %" PRId64 " is not a multiple of the block size %" PRIu32 " of %s",
                     name, t.ne[0], ti->block_elems, ti->name);
    uint64_t blocks = (uint64_t)n_elems / ti->block_elems;
    if (blocks > (UINT64_MAX / 2) / ti->block_bytes) return wfail(w, "tensor '%s': size in bytes overflows", name);
    t.bytes = blocks * ti->block_bytes;
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return wfail(w, "duplicate tensor name '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p) return wfail(w, "out of memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return wfail(w, "out of memory");
    w->tensors[w->n_tensors] = t;
    return w->n_tensors++;
}

size_t gguf_writer_tensor_bytes(const gguf_writer *w, int64_t i) {
    return w && i >= 0 && i < w->n_tensors ? (size_t)w->tensors[i].bytes : 0;
}

/* n zero bytes to out. */
static int write_zeros(FILE *out, uint64_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, out) != k) return -1;
        n -= k;
    }
    return 0;
}

/* Bytes of padding after n to reach a multiple of a. */
static uint64_t pad_to(uint64_t n, uint64_t a) { return (a - n % a) % a; }

int gguf_writer_write_header(gguf_writer *w, FILE *out) {
    if (!w) return -1;
    if (w->broken) return -1; /* the reason is already in w->err */
    if (w->header_written) return wfail(w, "header written twice");
    if (w->depth) return wfail(w, "header written while an array is still open");
    wbuf b = {0};
    int rc = 0;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors && rc == 0; i++) {
        w->tensors[i].offset = off;
        uint64_t step = w->tensors[i].bytes + pad_to(w->tensors[i].bytes, w->alignment);
        if (off > UINT64_MAX - step) rc = wfail(w, "data section size overflows");
        off += step;
    }
    if (rc == 0) {
        rc = wbuf_put(&b, "GGUF", 4) || wbuf_u32(&b, GGUF_VERSION_WRITTEN) || wbuf_u64(&b, (uint64_t)w->n_tensors) ||
             wbuf_u64(&b, (uint64_t)w->n_kv + w->alignment_set) || wbuf_put(&b, w->meta.p, w->meta.len);
        if (rc == 0 && w->alignment_set)
            rc = wbuf_str(&b, "general.alignment", strlen("general.alignment")) || wbuf_u32(&b, GGUF_TYPE_UINT32) ||
                 wbuf_u32(&b, w->alignment);
        for (int64_t i = 0; i < w->n_tensors && rc == 0; i++) {
            const wtensor *t = &w->tensors[i];
            rc = wbuf_str(&b, t->name, strlen(t->name)) || wbuf_u32(&b, t->n_dims);
            for (uint32_t d = 0; d < t->n_dims && rc == 0; d++) rc = wbuf_u64(&b, (uint64_t)t->ne[d]);
            rc = rc || wbuf_u32(&b, t->type) || wbuf_u64(&b, t->offset);
        }
        if (rc) rc = wfail(w, "out of memory");
    }
    if (rc == 0 && (fwrite(b.p, 1, b.len, out) != b.len || write_zeros(out, pad_to(b.len, w->alignment))))
        rc = wfail(w, "writing the header failed: %s", strerror(errno));
    free(b.p);
    if (rc == 0) {
        w->header_written = true;
        w->next_tensor = 0;
        w->next_done = 0;
    }
    return rc;
}

int gguf_writer_write_tensor_data(gguf_writer *w, FILE *out, int64_t i, const void *data, size_t bytes) {
    if (!w) return -1;
    if (!w->header_written) return wfail(w, "tensor data written before the header");
    if (i != w->next_tensor || i >= w->n_tensors)
        return wfail(w, "tensor %" PRId64 " written out of order (expected tensor %" PRId64 " of %" PRId64 ")", i,
                     w->next_tensor, w->n_tensors);
    const wtensor *t = &w->tensors[i];
    if (bytes > t->bytes - w->next_done)
        return wfail(w, "tensor '%s': %zu bytes written past its size %" PRIu64 " (%" PRIu64 " already written)",
                     t->name, bytes, t->bytes, w->next_done);
    if (bytes && !data) return wfail(w, "tensor '%s': NULL data", t->name);
    if (bytes && fwrite(data, 1, bytes, out) != bytes)
        return wfail(w, "tensor '%s': write failed: %s", t->name, strerror(errno));
    w->next_done += bytes;
    if (w->next_done == t->bytes) {
        if (write_zeros(out, pad_to(t->bytes, w->alignment)))
            return wfail(w, "tensor '%s': write failed: %s", t->name, strerror(errno));
        w->next_tensor++;
        w->next_done = 0;
    }
    return 0;
}

int gguf_writer_finish(gguf_writer *w) {
    if (!w) return -1;
    if (!w->header_written) return wfail(w, "header not written");
    if (w->next_tensor != w->n_tensors)
        return wfail(w, "only %" PRId64 " of %" PRId64 " tensors written", w->next_tensor, w->n_tensors);
    return 0;
}
