/* test_gguf.c - GGUF reader and writer: round trip of every value type and of
 * tensors, truncation at every header byte, targeted corruption of every field
 * (with the message each must produce), a deterministic mutation fuzz, and the
 * file-system failures of gguf_open.
 *
 * Every image handed to the reader lives in a malloc'd buffer of exactly its
 * length, so that under ASan any read past the end is caught.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"

#include "check.h"

/* ------------------------------------------------------------------ helpers */

typedef struct image {
    uint8_t *p;
    size_t len;
} image;

/* A malloc'd copy of the first len bytes of src, exactly len long (1 if len is 0). */
static uint8_t *exact_copy(const uint8_t *src, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    if (!p) abort();
    if (len) memcpy(p, src, len);
    return p;
}

/* Open an exact-size copy of img[0, len); returns the message on failure ("" on success). */
static const char *try_open(const uint8_t *img, size_t len, char *err, size_t errlen) {
    uint8_t *copy = exact_copy(img, len);
    gguf_file *f = gguf_open_memory(copy, len, err, errlen);
    if (f) {
        err[0] = 0;
        gguf_close(f);
    }
    free(copy);
    return err;
}

/* A one-line, non-empty message. */
static bool good_message(const char *m) {
    return m[0] != 0 && strchr(m, '\n') == NULL && strlen(m) < 255;
}

/* Deterministic generator (splitmix64). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------------------ writer-made image */

typedef struct tspec {
    const char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
} tspec;

static const tspec tensors[] = {
    {"tok.f32", TENSOR_F32, 2, {8, 3, 1, 1}},     {"blk.0.f16", TENSOR_F16, 1, {16, 1, 1, 1}},
    {"blk.0.q8_0", TENSOR_Q8_0, 2, {64, 2, 1, 1}}, {"blk.0.q4_0", TENSOR_Q4_0, 3, {32, 1, 2, 1}},
    {"blk.1.q4_k", TENSOR_Q4_K, 2, {256, 2, 1, 1}}, {"blk.1.q6_k", TENSOR_Q6_K, 1, {256, 1, 1, 1}},
    {"out.bf16", TENSOR_BF16, 4, {4, 2, 2, 3}},
};
#define N_TENSORS (sizeof tensors / sizeof tensors[0])

/* Byte k of tensor i's data. */
static uint8_t tensor_byte(size_t i, size_t k) { return (uint8_t)(i * 31 + k * 7 + (k >> 8)); }

static const uint8_t a_u8[] = {0, 7, 255};
static const int8_t a_i8[] = {-128, 0, 127};
static const uint16_t a_u16[] = {0, 1234, 65535};
static const int16_t a_i16[] = {-32768, -1, 32767};
static const uint32_t a_u32[] = {0, 123456789, 4294967295u};
static const int32_t a_i32[] = {INT32_MIN, -5, INT32_MAX};
static const uint64_t a_u64[] = {0, 1ull << 40, UINT64_MAX};
static const int64_t a_i64[] = {INT64_MIN, -7, INT64_MAX};
static const float a_f32[] = {-1.5f, 0.0f, 3.25e10f};
static const double a_f64[] = {-2.5e300, 1e-300, 0.1};
static const bool a_bool[] = {true, false, true};
static const char *const a_str[] = {"alpha", "", "with space", "\xe4\xb8\xad"};

/* Write the round-trip model with alignment `align` (0: leave the default) into a
 * memory buffer. Returns 0 on success. */
static int write_sample(FILE *out, uint32_t align) {
    gguf_writer *w = gguf_writer_new();
    int rc = 0;
    if (align) gguf_writer_set_alignment(w, align);
    rc |= gguf_writer_add_string(w, "general.architecture", "qwen2");
    rc |= gguf_writer_add_uint8(w, "v.u8", 200);
    rc |= gguf_writer_add_int8(w, "v.i8", -100);
    rc |= gguf_writer_add_uint16(w, "v.u16", 60000);
    rc |= gguf_writer_add_int16(w, "v.i16", -30000);
    rc |= gguf_writer_add_uint32(w, "v.u32", 4000000000u);
    rc |= gguf_writer_add_int32(w, "v.i32", -2000000000);
    rc |= gguf_writer_add_uint64(w, "v.u64", (1ull << 63) + 5);
    rc |= gguf_writer_add_int64(w, "v.i64", -(1ll << 62));
    rc |= gguf_writer_add_float32(w, "v.f32", 1.5f);
    rc |= gguf_writer_add_float64(w, "v.f64", -2.25e300);
    rc |= gguf_writer_add_bool(w, "v.true", true);
    rc |= gguf_writer_add_bool(w, "v.false", false);
    rc |= gguf_writer_add_string(w, "v.str", "hello, gguf");
    rc |= gguf_writer_add_string(w, "v.empty", "");
    rc |= gguf_writer_add_array(w, "a.u8", GGUF_TYPE_UINT8, a_u8, 3);
    rc |= gguf_writer_add_array(w, "a.i8", GGUF_TYPE_INT8, a_i8, 3);
    rc |= gguf_writer_add_array(w, "a.u16", GGUF_TYPE_UINT16, a_u16, 3);
    rc |= gguf_writer_add_array(w, "a.i16", GGUF_TYPE_INT16, a_i16, 3);
    rc |= gguf_writer_add_array(w, "a.u32", GGUF_TYPE_UINT32, a_u32, 3);
    rc |= gguf_writer_add_array_int32(w, "a.i32", a_i32, 3);
    rc |= gguf_writer_add_array(w, "a.u64", GGUF_TYPE_UINT64, a_u64, 3);
    rc |= gguf_writer_add_array(w, "a.i64", GGUF_TYPE_INT64, a_i64, 3);
    rc |= gguf_writer_add_array_float32(w, "a.f32", a_f32, 3);
    rc |= gguf_writer_add_array(w, "a.f64", GGUF_TYPE_FLOAT64, a_f64, 3);
    rc |= gguf_writer_add_array(w, "a.bool", GGUF_TYPE_BOOL, a_bool, 3);
    rc |= gguf_writer_add_array_string(w, "a.str", a_str, 4);
    rc |= gguf_writer_add_array_int32(w, "a.empty", NULL, 0);
    rc |= gguf_writer_add_array_string(w, "a.empty_str", NULL, 0);
    /* n.ints = [[1, 2, 3], [], [4]] */
    rc |= gguf_writer_begin_array(w, "n.ints", GGUF_TYPE_ARRAY, 3);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_INT32, 3);
    for (int32_t v = 1; v <= 3; v++) rc |= gguf_writer_push_value(w, GGUF_TYPE_INT32, &v);
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_INT32, 0);
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_INT32, 1);
    rc |= gguf_writer_push_value(w, GGUF_TYPE_INT32, &(int32_t){4});
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_end_array(w);
    /* n.strs = [["a", "bc"], [""]] */
    rc |= gguf_writer_begin_array(w, "n.strs", GGUF_TYPE_ARRAY, 2);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_STRING, 2);
    rc |= gguf_writer_push_string(w, "a");
    rc |= gguf_writer_push_string(w, "bc");
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_STRING, 1);
    rc |= gguf_writer_push_string(w, "");
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_end_array(w);
    /* n.deep = [[[9, 8]]] (uint64 at the bottom) */
    rc |= gguf_writer_begin_array(w, "n.deep", GGUF_TYPE_ARRAY, 1);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_ARRAY, 1);
    rc |= gguf_writer_begin_array(w, NULL, GGUF_TYPE_UINT64, 2);
    rc |= gguf_writer_push_value(w, GGUF_TYPE_UINT64, &(uint64_t){9});
    rc |= gguf_writer_push_value(w, GGUF_TYPE_UINT64, &(uint64_t){8});
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_end_array(w);
    rc |= gguf_writer_end_array(w);
    if (rc) fprintf(stderr, "writer metadata: %s\n", gguf_writer_error(w));

    for (size_t i = 0; i < N_TENSORS; i++) {
        int64_t id = gguf_writer_add_tensor(w, tensors[i].name, tensors[i].type, tensors[i].n_dims, tensors[i].ne);
        if (id != (int64_t)i) {
            fprintf(stderr, "add_tensor %s: %s\n", tensors[i].name, gguf_writer_error(w));
            rc = -1;
        }
    }
    if (gguf_writer_write_header(w, out)) {
        fprintf(stderr, "write_header: %s\n", gguf_writer_error(w));
        rc = -1;
    }
    for (size_t i = 0; i < N_TENSORS && rc == 0; i++) {
        size_t n = gguf_writer_tensor_bytes(w, (int64_t)i);
        uint8_t *d = malloc(n);
        for (size_t k = 0; k < n; k++) d[k] = tensor_byte(i, k);
        /* Tensor 2 goes in three pieces, to exercise the streaming path. */
        if (i == 2) {
            rc |= gguf_writer_write_tensor_data(w, out, (int64_t)i, d, 5);
            rc |= gguf_writer_write_tensor_data(w, out, (int64_t)i, d + 5, 0);
            rc |= gguf_writer_write_tensor_data(w, out, (int64_t)i, d + 5, n - 5);
        } else {
            rc |= gguf_writer_write_tensor_data(w, out, (int64_t)i, d, n);
        }
        free(d);
        if (rc) fprintf(stderr, "write tensor %zu: %s\n", i, gguf_writer_error(w));
    }
    if (rc == 0 && gguf_writer_finish(w)) {
        fprintf(stderr, "finish: %s\n", gguf_writer_error(w));
        rc = -1;
    }
    gguf_writer_free(w);
    return rc;
}

/* The sample written to memory. */
static image sample_image(uint32_t align) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    int rc = write_sample(out, align);
    fclose(out);
    CHECK(rc == 0, "writing the sample failed");
    image img = {exact_copy((uint8_t *)buf, len), len};
    free(buf);
    return img;
}

/* Every value of the sample must read back exactly. */
static void check_sample_metadata(const gguf_file *f) {
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t n;
    CHECK(gguf_get_string(f, "general.architecture", &s, &n) == 0 && n == 5 && strcmp(s, "qwen2") == 0, "arch");
    CHECK(gguf_get_uint(f, "v.u8", &u) == 0 && u == 200, "u8");
    CHECK(gguf_key_type(f, gguf_find_key(f, "v.u8")) == GGUF_TYPE_UINT8, "u8 type");
    CHECK(gguf_get_int(f, "v.i8", &i) == 0 && i == -100, "i8");
    CHECK(gguf_get_uint(f, "v.i8", &u) == -2, "negative i8 is not a uint");
    CHECK(gguf_get_uint(f, "v.u16", &u) == 0 && u == 60000, "u16");
    CHECK(gguf_get_int(f, "v.i16", &i) == 0 && i == -30000, "i16");
    CHECK(gguf_get_uint(f, "v.u32", &u) == 0 && u == 4000000000u, "u32");
    CHECK(gguf_get_int(f, "v.i32", &i) == 0 && i == -2000000000, "i32");
    CHECK(gguf_get_uint(f, "v.u64", &u) == 0 && u == (1ull << 63) + 5, "u64");
    CHECK(gguf_get_int(f, "v.u64", &i) == -2, "u64 above INT64_MAX is not an int");
    CHECK(gguf_get_int(f, "v.i64", &i) == 0 && i == -(1ll << 62), "i64");
    CHECK(gguf_get_float(f, "v.f32", &d) == 0 && d == 1.5, "f32");
    CHECK(gguf_get_float(f, "v.f64", &d) == 0 && d == -2.25e300, "f64");
    CHECK(gguf_get_float(f, "v.i32", &d) == 0 && d == -2000000000.0, "int as float");
    CHECK(gguf_get_uint(f, "v.f32", &u) == -2, "float is not a uint");
    CHECK(gguf_get_bool(f, "v.true", &b) == 0 && b, "bool true");
    CHECK(gguf_get_bool(f, "v.false", &b) == 0 && !b, "bool false");
    CHECK(gguf_get_bool(f, "v.u8", &b) == -2, "u8 is not a bool");
    CHECK(gguf_get_string(f, "v.str", &s, &n) == 0 && n == 11 && strcmp(s, "hello, gguf") == 0, "string");
    CHECK(gguf_get_string(f, "v.empty", &s, &n) == 0 && n == 0 && s[0] == 0, "empty string");
    CHECK(gguf_get_string(f, "v.u8", &s, &n) == -2, "u8 is not a string");
    CHECK(gguf_get_uint(f, "no.such.key", &u) == -1, "missing key");
    CHECK(gguf_find_key(f, "no.such.key") == -1, "find missing key");
    CHECK(gguf_key_type(f, 100000) == GGUF_TYPE_COUNT && gguf_key_name(f, -1) == NULL, "bad key index");

    gguf_array a, sub, sub2;
    int64_t v;
    CHECK(gguf_get_array(f, "v.u8", &a) == -2, "scalar is not an array");
    CHECK(gguf_get_array(f, "missing", &a) == -1, "missing array");
#define CHECK_INT_ARRAY(key, T, arr)                                                                                   \
    do {                                                                                                              \
        CHECK(gguf_get_array(f, key, &a) == 0 && a.type == T && a.count == 3, "%s", key);                             \
        for (uint64_t k = 0; k < 3; k++)                                                                              \
            CHECK(gguf_array_int(&a, k, &v) == 0 && v == (int64_t)arr[k], "%s[%" PRIu64 "]", key, k);                 \
        CHECK(gguf_array_int(&a, 3, &v) == -1, "%s out of range", key);                                               \
    } while (0)
    CHECK_INT_ARRAY("a.u8", GGUF_TYPE_UINT8, a_u8);
    CHECK_INT_ARRAY("a.i8", GGUF_TYPE_INT8, a_i8);
    CHECK_INT_ARRAY("a.u16", GGUF_TYPE_UINT16, a_u16);
    CHECK_INT_ARRAY("a.i16", GGUF_TYPE_INT16, a_i16);
    CHECK_INT_ARRAY("a.u32", GGUF_TYPE_UINT32, a_u32);
    CHECK_INT_ARRAY("a.i32", GGUF_TYPE_INT32, a_i32);
    CHECK_INT_ARRAY("a.i64", GGUF_TYPE_INT64, a_i64);
    CHECK(gguf_get_array(f, "a.u64", &a) == 0 && a.type == GGUF_TYPE_UINT64 && a.count == 3, "a.u64");
    CHECK(gguf_array_int(&a, 1, &v) == 0 && v == 1ll << 40, "a.u64[1]");
    CHECK(gguf_array_int(&a, 2, &v) == -2, "a.u64[2] does not fit int64");
    CHECK(gguf_array_float(&a, 2, &d) == 0 && d == (double)UINT64_MAX, "a.u64[2] as float");
    CHECK(gguf_get_array(f, "a.f32", &a) == 0 && a.type == GGUF_TYPE_FLOAT32 && a.count == 3, "a.f32");
    for (uint64_t k = 0; k < 3; k++) CHECK(gguf_array_float(&a, k, &d) == 0 && d == a_f32[k], "a.f32[%" PRIu64 "]", k);
    CHECK(gguf_array_int(&a, 0, &v) == -2, "float element is not an int");
    CHECK(gguf_get_array(f, "a.f64", &a) == 0 && a.type == GGUF_TYPE_FLOAT64 && a.count == 3, "a.f64");
    for (uint64_t k = 0; k < 3; k++) CHECK(gguf_array_float(&a, k, &d) == 0 && d == a_f64[k], "a.f64[%" PRIu64 "]", k);
    CHECK(gguf_get_array(f, "a.bool", &a) == 0 && a.type == GGUF_TYPE_BOOL && a.count == 3, "a.bool");
    CHECK(gguf_get_array(f, "a.str", &a) == 0 && a.type == GGUF_TYPE_STRING && a.count == 4, "a.str");
    for (uint64_t k = 0; k < 4; k++)
        CHECK(gguf_array_string(&a, k, &s, &n) == 0 && n == strlen(a_str[k]) && strcmp(s, a_str[k]) == 0,
              "a.str[%" PRIu64 "]", k);
    CHECK(gguf_array_string(&a, 4, &s, &n) == -1, "a.str out of range");
    CHECK(gguf_array_int(&a, 0, &v) == -2, "string element is not an int");
    CHECK(gguf_get_array(f, "a.empty", &a) == 0 && a.type == GGUF_TYPE_INT32 && a.count == 0, "empty array");
    CHECK(gguf_array_int(&a, 0, &v) == -1, "empty array has no element 0");
    CHECK(gguf_get_array(f, "a.empty_str", &a) == 0 && a.type == GGUF_TYPE_STRING && a.count == 0, "empty str array");

    CHECK(gguf_get_array(f, "n.ints", &a) == 0 && a.type == GGUF_TYPE_ARRAY && a.count == 3, "n.ints");
    CHECK(gguf_array_at(&a, 0, &sub) == 0 && sub.type == GGUF_TYPE_INT32 && sub.count == 3, "n.ints[0]");
    for (uint64_t k = 0; k < 3; k++)
        CHECK(gguf_array_int(&sub, k, &v) == 0 && v == (int64_t)k + 1, "n.ints[0][%" PRIu64 "]", k);
    CHECK(gguf_array_at(&a, 1, &sub) == 0 && sub.count == 0, "n.ints[1] empty");
    CHECK(gguf_array_at(&a, 2, &sub) == 0 && sub.count == 1 && gguf_array_int(&sub, 0, &v) == 0 && v == 4, "n.ints[2]");
    CHECK(gguf_array_at(&a, 3, &sub) == -1, "n.ints[3] out of range");
    CHECK(gguf_array_int(&a, 0, &v) == -2, "sub-array is not an int");
    CHECK(gguf_get_array(f, "n.strs", &a) == 0 && a.count == 2, "n.strs");
    CHECK(gguf_array_at(&a, 0, &sub) == 0 && sub.type == GGUF_TYPE_STRING && sub.count == 2, "n.strs[0]");
    CHECK(gguf_array_string(&sub, 1, &s, &n) == 0 && n == 2 && strcmp(s, "bc") == 0, "n.strs[0][1]");
    CHECK(gguf_array_at(&a, 1, &sub) == 0 && gguf_array_string(&sub, 0, &s, &n) == 0 && n == 0, "n.strs[1][0]");
    CHECK(gguf_get_array(f, "n.deep", &a) == 0 && gguf_array_at(&a, 0, &sub) == 0 &&
              gguf_array_at(&sub, 0, &sub2) == 0 && sub2.type == GGUF_TYPE_UINT64 && sub2.count == 2 &&
              gguf_array_int(&sub2, 1, &v) == 0 && v == 8,
          "n.deep[0][0][1]");
}

/* Tensor table and data of the sample; base is the image start (NULL for a mapped file). */
static void check_sample_tensors(const gguf_file *f, const uint8_t *base, uint64_t align) {
    CHECK(gguf_tensor_count(f) == (int64_t)N_TENSORS, "tensor count %" PRId64, gguf_tensor_count(f));
    CHECK(gguf_data_offset(f) % align == 0, "data offset %" PRIu64 " aligned to %" PRIu64, gguf_data_offset(f), align);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const gguf_tensor *t = gguf_find_tensor(f, tensors[i].name);
        CHECK(t != NULL && t == gguf_tensor_at(f, (int64_t)i), "find %s", tensors[i].name);
        if (!t) continue;
        CHECK(strcmp(t->name, tensors[i].name) == 0 && t->type == tensors[i].type &&
                  t->n_dims == tensors[i].n_dims,
              "tensor %zu header", i);
        int64_t n = 1;
        for (int d = 0; d < 4; d++) {
            CHECK(t->ne[d] == tensors[i].ne[d], "tensor %zu ne[%d] = %" PRId64, i, d, t->ne[d]);
            n *= tensors[i].ne[d];
        }
        CHECK(t->n_elems == n, "tensor %zu n_elems", i);
        size_t bytes = tensor_row_bytes(t->type, t->ne[0]) * (size_t)(n / t->ne[0]);
        CHECK(t->bytes == bytes && bytes > 0, "tensor %zu bytes %zu (expected %zu)", i, t->bytes, bytes);
        CHECK(t->offset % align == 0, "tensor %zu offset %" PRIu64 " aligned", i, t->offset);
        const uint8_t *d = t->data;
        if (base) CHECK(d == base + gguf_data_offset(f) + t->offset, "tensor %zu data pointer", i);
        else CHECK((uintptr_t)d % align == 0, "tensor %zu mapped data aligned to %" PRIu64, i, align);
        size_t bad = 0;
        for (size_t k = 0; k < t->bytes; k++) bad += d[k] != tensor_byte(i, k);
        CHECK(bad == 0, "tensor %zu: %zu data bytes differ", i, bad);
    }
    CHECK(gguf_find_tensor(f, "nope") == NULL && gguf_tensor_at(f, (int64_t)N_TENSORS) == NULL, "missing tensor");
}

static void test_round_trip(void) {
    char err[256];
    /* In memory, alignment 64. */
    image img = sample_image(64);
    gguf_file *f = gguf_open_memory(img.p, img.len, err, sizeof err);
    CHECK(f != NULL, "open sample: %s", err);
    if (f) {
        CHECK(gguf_version(f) == 3 && gguf_alignment(f) == 64 && gguf_file_size(f) == img.len, "header fields");
        uint64_t al;
        CHECK(gguf_get_uint(f, "general.alignment", &al) == 0 && al == 64, "general.alignment written");
        check_sample_metadata(f);
        check_sample_tensors(f, img.p, 64);
        gguf_close(f);
    }
    /* Version 2 has the same layout. */
    put_u32(img.p + 4, 2);
    f = gguf_open_memory(img.p, img.len, err, sizeof err);
    CHECK(f && gguf_version(f) == 2, "version 2 opens: %s", f ? "" : err);
    gguf_close(f);
    free(img.p);

    /* Default alignment: no key written, 32 used. */
    img = sample_image(0);
    f = gguf_open_memory(img.p, img.len, err, sizeof err);
    CHECK(f != NULL, "open default-aligned sample: %s", err);
    if (f) {
        CHECK(gguf_alignment(f) == 32 && gguf_find_key(f, "general.alignment") < 0, "default alignment 32");
        check_sample_tensors(f, img.p, 32);
        gguf_close(f);
    }
    free(img.p);

    /* Through a real file: mmap, alignment 64, data pointers aligned in memory. */
    char path[] = "/tmp/test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *out = fdopen(fd, "wb");
    CHECK(write_sample(out, 64) == 0, "write sample file");
    fclose(out);
    f = gguf_open(path, err, sizeof err);
    CHECK(f != NULL, "gguf_open sample: %s", err);
    if (f) {
        check_sample_metadata(f);
        check_sample_tensors(f, NULL, 64);
        gguf_close(f);
    }
    unlink(path);
    printf("round trip: every value type, nested arrays, %zu tensors of 7 types, alignment 64 and 32, v2/v3, "
           "memory and mmap\n",
           N_TENSORS);
}

static void test_writer_misuse(void) {
    gguf_writer *w = gguf_writer_new();
    int64_t ne[2] = {32, 2};
    CHECK(gguf_writer_add_uint32(w, "k", 1) == 0, "add");
    CHECK(gguf_writer_add_string(w, "k", "x") == -1 && strstr(gguf_writer_error(w), "duplicate"), "duplicate key");
    CHECK(gguf_writer_add_uint32(w, "", 1) == -1, "empty key");
    CHECK(gguf_writer_add_tensor(w, "t", TENSOR_Q8_0, 2, (int64_t[]){33, 1}) == -1, "ragged q8_0 row");
    CHECK(gguf_writer_add_tensor(w, "t", 99, 2, ne) == -1, "unknown type");
    CHECK(gguf_writer_add_tensor(w, "t", TENSOR_F32, 5, ne) == -1, "n_dims 5");
    CHECK(gguf_writer_add_tensor(w, "t", TENSOR_F32, 2, (int64_t[]){0, 1}) == -1, "zero dim");
    CHECK(gguf_writer_add_tensor(w, "t", TENSOR_F32, 2, ne) == 0, "add t");
    CHECK(gguf_writer_add_tensor(w, "u", TENSOR_F32, 2, ne) == 1, "add u");
    CHECK(gguf_writer_add_tensor(w, "t", TENSOR_F32, 2, ne) == -1, "duplicate tensor");
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    float data[64] = {0};
    CHECK(gguf_writer_write_tensor_data(w, out, 0, data, 256) == -1, "data before header");
    CHECK(gguf_writer_write_header(w, out) == 0, "header: %s", gguf_writer_error(w));
    CHECK(gguf_writer_add_uint32(w, "late", 1) == -1, "key after header");
    CHECK(gguf_writer_write_tensor_data(w, out, 1, data, 256) == -1, "out of order");
    CHECK(gguf_writer_write_tensor_data(w, out, 0, data, 257) == -1, "too many bytes");
    CHECK(gguf_writer_write_tensor_data(w, out, 0, data, 256) == 0, "tensor 0");
    CHECK(gguf_writer_finish(w) == -1, "finish with a tensor missing");
    CHECK(gguf_writer_write_tensor_data(w, out, 1, data, 256) == 0, "tensor 1");
    CHECK(gguf_writer_finish(w) == 0, "finish");
    gguf_writer_free(w);
    fclose(out);
    free(buf);

    /* Array builder misuse leaves the writer failed. */
    w = gguf_writer_new();
    CHECK(gguf_writer_begin_array(w, "a", GGUF_TYPE_INT32, 2) == 0, "begin");
    CHECK(gguf_writer_push_value(w, GGUF_TYPE_UINT8, &(uint8_t){1}) == -1, "wrong element type");
    out = open_memstream(&buf, &len);
    CHECK(gguf_writer_write_header(w, out) == -1, "header refused after misuse");
    fclose(out);
    free(buf);
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_writer_begin_array(w, "a", GGUF_TYPE_INT32, 2);
    gguf_writer_push_value(w, GGUF_TYPE_INT32, &(int32_t){1});
    CHECK(gguf_writer_end_array(w) == -1 && strstr(gguf_writer_error(w), "1 of 2"), "short array");
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_writer_set_alignment(w, 48);
    CHECK(strstr(gguf_writer_error(w), "power of two") != NULL, "alignment 48 refused");
    gguf_writer_free(w);
    printf("writer misuse: duplicates, bad tensors, order, sizes, array builder, alignment\n");
}

/* ------------------------------------------------------------------ truncation */

static void test_truncation(void) {
    image img = sample_image(64);
    char err[256];
    gguf_file *f = gguf_open_memory(img.p, img.len, err, sizeof err);
    if (!f) {
        CHECK(0, "sample does not open: %s", err);
        return;
    }
    size_t data_start = gguf_data_offset(f);
    size_t data_end = 0;
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (data_start + t->offset + t->bytes > data_end) data_end = data_start + t->offset + t->bytes;
    }
    gguf_close(f);
    int n = 0, bad = 0;
    for (size_t len = 0; len < data_end; len += len < data_start ? 1 : 1 + (data_end - data_start) / 97) {
        try_open(img.p, len, err, sizeof err);
        bool ok = good_message(err) && (strstr(err, "truncat") || strstr(err, "exceeds what the file can hold") ||
                                        strstr(err, "outside the file"));
        if (!ok && bad++ < 5) CHECK(0, "truncated at %zu: '%s'", len, err);
        n++;
    }
    CHECK(bad == 0, "%d truncations without a truncation message", bad);
    /* A few messages, to show what they look like. */
    printf("truncation: %d lengths (every byte of the %zu-byte header, samples of the data up to %zu); e.g.\n", n,
           data_start, data_end);
    size_t show[] = {0, 3, 20, 100, data_start - 1, data_start + 100};
    for (size_t k = 0; k < sizeof show / sizeof show[0]; k++)
        printf("  [%zu] %s\n", show[k], try_open(img.p, show[k], err, sizeof err));
    free(img.p);
}

/* ------------------------------------------------------------------ targeted corruption */

/* A hand-built image (independent of the writer), with the offset of every field. */
typedef struct hand {
    uint8_t p[1024];
    size_t len;
    size_t magic, version, n_tensors, n_kv;
    size_t k0_len, k0_type, k0_strlen, align_type, align_val, arr_type, arr_etype, arr_count, arr2_key;
    size_t strs_len0, bool_val;
    size_t t_name[2], t_ndims[2], t_dim[2][2], t_type[2], t_off[2];
} hand;

static void h_u32(hand *h, uint32_t v) {
    put_u32(h->p + h->len, v);
    h->len += 4;
}
static void h_u64(hand *h, uint64_t v) {
    put_u64(h->p + h->len, v);
    h->len += 8;
}
static void h_str(hand *h, const char *s) {
    h_u64(h, strlen(s));
    memcpy(h->p + h->len, s, strlen(s));
    h->len += strlen(s);
}

/* kv: general.architecture="qwen2", general.alignment=u32 32, arr1=[1,2,3] (int32),
 * arr2=["ab","c"], flag=true; tensors a: f32 [32, 2] at 0 (256 bytes), b: q8_0 [64] at 256 (68 bytes). */
static void hand_build(hand *h) {
    memset(h, 0, sizeof *h);
    h->magic = h->len;
    memcpy(h->p, "GGUF", 4);
    h->len = 4;
    h->version = h->len;
    h_u32(h, 3);
    h->n_tensors = h->len;
    h_u64(h, 2);
    h->n_kv = h->len;
    h_u64(h, 5);
    h->k0_len = h->len;
    h_str(h, "general.architecture");
    h->k0_type = h->len;
    h_u32(h, GGUF_TYPE_STRING);
    h->k0_strlen = h->len;
    h_str(h, "qwen2");
    h_str(h, "general.alignment");
    h->align_type = h->len;
    h_u32(h, GGUF_TYPE_UINT32);
    h->align_val = h->len;
    h_u32(h, 32);
    h_str(h, "arr1");
    h->arr_type = h->len;
    h_u32(h, GGUF_TYPE_ARRAY);
    h->arr_etype = h->len;
    h_u32(h, GGUF_TYPE_INT32);
    h->arr_count = h->len;
    h_u64(h, 3);
    for (uint32_t i = 1; i <= 3; i++) h_u32(h, i);
    h->arr2_key = h->len;
    h_str(h, "arr2");
    h_u32(h, GGUF_TYPE_ARRAY);
    h_u32(h, GGUF_TYPE_STRING);
    h_u64(h, 2);
    h->strs_len0 = h->len;
    h_str(h, "ab");
    h_str(h, "c");
    h_str(h, "flag");
    h_u32(h, GGUF_TYPE_BOOL);
    h->bool_val = h->len;
    h->p[h->len++] = 1;
    const char *names[2] = {"a", "b"};
    uint64_t dims[2][2] = {{32, 2}, {64, 0}};
    uint32_t types[2] = {TENSOR_F32, TENSOR_Q8_0};
    uint64_t offs[2] = {0, 256};
    for (int t = 0; t < 2; t++) {
        h->t_name[t] = h->len;
        h_str(h, names[t]);
        h->t_ndims[t] = h->len;
        uint32_t nd = t == 0 ? 2 : 1;
        h_u32(h, nd);
        for (uint32_t d = 0; d < nd; d++) {
            h->t_dim[t][d] = h->len;
            h_u64(h, dims[t][d]);
        }
        h->t_type[t] = h->len;
        h_u32(h, types[t]);
        h->t_off[t] = h->len;
        h_u64(h, offs[t]);
    }
    h->len = (h->len + 31) / 32 * 32 + 256 + 68; /* padding and data are zeros */
}

/* Apply a corruption to a fresh hand image, open it, and check the message holds `want`. */
typedef void (*corrupt_fn)(hand *h);
static void expect(const char *what, corrupt_fn fn, const char *want, const char *want2) {
    hand h;
    hand_build(&h);
    fn(&h);
    char err[256];
    try_open(h.p, h.len, err, sizeof err);
    CHECK(good_message(err) && strstr(err, want) && (!want2 || strstr(err, want2)), "%s: got '%s', want '%s'%s%s",
          what, err, want, want2 ? " and " : "", want2 ? want2 : "");
    printf("  %-28s -> %s\n", what, err);
}

#define CORRUPT(name, body)                                                                                           \
    static void name(hand *h) { body; }
CORRUPT(c_magic, h->p[3] = 'X')
CORRUPT(c_big_endian, put_u32(h->p + h->version, 0x03000000))
CORRUPT(c_version1, put_u32(h->p + h->version, 1))
CORRUPT(c_version4, put_u32(h->p + h->version, 4))
CORRUPT(c_tensor_count, put_u64(h->p + h->n_tensors, 1ull << 60))
CORRUPT(c_kv_count, put_u64(h->p + h->n_kv, 1000000))
CORRUPT(c_key_len, put_u64(h->p + h->k0_len, 1000000000000ull))
CORRUPT(c_key_empty, put_u64(h->p + h->k0_len, 0))
CORRUPT(c_key_nul, h->p[h->k0_len + 8 + 3] = 0)
CORRUPT(c_value_type, put_u32(h->p + h->k0_type, 13))
CORRUPT(c_string_len, put_u64(h->p + h->k0_strlen, 1000))
CORRUPT(c_array_etype, put_u32(h->p + h->arr_etype, 99))
CORRUPT(c_array_count, put_u64(h->p + h->arr_count, 1ull << 40))
CORRUPT(c_array_str_len, put_u64(h->p + h->strs_len0, 5000))
CORRUPT(c_dup_key, h->p[h->arr2_key + 8 + 3] = '1')
CORRUPT(c_bool, h->p[h->bool_val] = 2)
CORRUPT(c_align_48, put_u32(h->p + h->align_val, 48))
CORRUPT(c_align_0, put_u32(h->p + h->align_val, 0))
CORRUPT(c_align_type, put_u32(h->p + h->align_type, GGUF_TYPE_FLOAT32))
CORRUPT(c_ndims_5, put_u32(h->p + h->t_ndims[0], 5))
CORRUPT(c_ndims_0, put_u32(h->p + h->t_ndims[0], 0))
CORRUPT(c_dim0_zero, put_u64(h->p + h->t_dim[0][0], 0))
CORRUPT(c_dim1_zero, put_u64(h->p + h->t_dim[0][1], 0))
CORRUPT(c_dim_huge, put_u64(h->p + h->t_dim[0][0], 1ull << 63))
CORRUPT(c_dim_overflow, put_u64(h->p + h->t_dim[0][0], 1ull << 40); put_u64(h->p + h->t_dim[0][1], 1ull << 40))
CORRUPT(c_dim_outside, put_u64(h->p + h->t_dim[0][1], 1ull << 30))
CORRUPT(c_dim_overlap, put_u64(h->p + h->t_dim[0][0], 33))
CORRUPT(c_ragged_row, put_u64(h->p + h->t_dim[1][0], 33))
CORRUPT(c_tensor_type, put_u32(h->p + h->t_type[0], 99))
CORRUPT(c_tensor_type_iq2, put_u32(h->p + h->t_type[0], 16))
CORRUPT(c_offset_misaligned, put_u64(h->p + h->t_off[1], 100))
CORRUPT(c_offset_outside, put_u64(h->p + h->t_off[1], 1u << 20))
CORRUPT(c_offset_wrap, put_u64(h->p + h->t_off[1], UINT64_MAX - 31))
CORRUPT(c_offset_overlap, put_u64(h->p + h->t_off[1], 224))
CORRUPT(c_dup_tensor, h->p[h->t_name[1] + 8] = 'a')
CORRUPT(c_tensor_name_empty, put_u64(h->p + h->t_name[0], 0))
CORRUPT(c_tensor_name_len, put_u64(h->p + h->t_name[1], 1ull << 33))

static void test_corruption(void) {
    hand h;
    hand_build(&h);
    char err[256];
    try_open(h.p, h.len, err, sizeof err);
    CHECK(err[0] == 0, "hand-built image must open: %s", err);
    printf("corruption of each field:\n");
    expect("bad magic", c_magic, "bad magic 0x58554747 (expected 'GGUF')", NULL);
    expect("big-endian version", c_big_endian, "big-endian GGUF is not supported", NULL);
    expect("version 1", c_version1, "unsupported GGUF version 1", NULL);
    expect("version 4", c_version4, "unsupported GGUF version 4", NULL);
    expect("tensor count 2^60", c_tensor_count, "tensor count 2^60 exceeds what the file can hold", NULL);
    expect("kv count", c_kv_count, "metadata key count 1000000 exceeds what the file can hold", NULL);
    expect("key length", c_key_len, "truncated: metadata key 0", "1000000000000");
    expect("empty key", c_key_empty, "metadata key 0: empty key name", NULL);
    expect("NUL in key", c_key_nul, "metadata key 0: key name 'gen\\x00ral.architecture' contains a NUL byte", NULL);
    expect("value type", c_value_type, "metadata key 0 ('general.architecture'): unknown value type 13", NULL);
    expect("string length", c_string_len, "truncated: metadata key 0 ('general.architecture') value (string length 1000) needs 1000 bytes at offset", "left");
    expect("array element type", c_array_etype, "metadata key 2 ('arr1') value: unknown array element type 99", NULL);
    expect("array count", c_array_count, "truncated: metadata key 2 ('arr1') value array of 1099511627776 int32", NULL);
    expect("string in array", c_array_str_len, "truncated: metadata key 3 ('arr2') value[0] (string length 5000)", NULL);
    expect("duplicate key", c_dup_key, "duplicate metadata key 'arr1'", NULL);
    expect("bool 2", c_bool, "bool value 2", "is not 0 or 1");
    expect("alignment 48", c_align_48, "general.alignment 48 is not a power of two", NULL);
    expect("alignment 0", c_align_0, "general.alignment 0 is not a power of two", NULL);
    expect("alignment type", c_align_type, "general.alignment has type float32", NULL);
    expect("n_dims 5", c_ndims_5, "tensor 'a': n_dims 5 is outside 1..4", NULL);
    expect("n_dims 0", c_ndims_0, "tensor 'a': n_dims 0 is outside 1..4", NULL);
    expect("dimension 0 zero", c_dim0_zero, "tensor 'a': dimension 0 is 0", NULL);
    expect("dimension 1 zero", c_dim1_zero, "tensor 'a': dimension 1 is 0", NULL);
    expect("dimension 2^63", c_dim_huge, "tensor 'a': dimension 0", "too large");
    expect("element count", c_dim_overflow, "tensor 'a': element count overflows", NULL);
    expect("dimension outside", c_dim_outside, "tensor 'a': data [", "lies outside the file (size");
    expect("dimension overlap", c_dim_overlap, "tensors 'a' and 'b' overlap", NULL);
    expect("ragged row", c_ragged_row, "tensor 'b': row length 33 is not a multiple of the block size 32", NULL);
    expect("tensor type", c_tensor_type, "tensor 'a': tensor type unknown (99) is not one Baton runs", "q4_K");
    expect("unsupported tensor type", c_tensor_type_iq2, "tensor 'a': tensor type iq2_xxs (16) is not one Baton runs",
           "(it runs: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs)");
    expect("offset misaligned", c_offset_misaligned, "tensor 'b': offset 100 is not aligned to 32", NULL);
    expect("offset outside", c_offset_outside, "tensor 'b': data [", "lies outside the file");
    expect("offset wraps", c_offset_wrap, "tensor 'b'", "outside the file");
    expect("offset overlap", c_offset_overlap, "tensors 'a' and 'b' overlap", NULL);
    expect("duplicate tensor", c_dup_tensor, "duplicate tensor name 'a'", NULL);
    expect("empty tensor name", c_tensor_name_empty, "tensor 0: empty tensor name", NULL);
    expect("tensor name length", c_tensor_name_len, "truncated: tensor 1", "8589934592");

    /* Arrays nested 20 deep. */
    uint8_t deep[1024];
    size_t n = 0;
    memcpy(deep, "GGUF", 4);
    put_u32(deep + 4, 3);
    put_u64(deep + 8, 0);
    put_u64(deep + 16, 1);
    n = 24;
    put_u64(deep + n, 1);
    deep[n + 8] = 'd';
    n += 9;
    put_u32(deep + n, GGUF_TYPE_ARRAY);
    n += 4;
    for (int i = 0; i < 20; i++) {
        put_u32(deep + n, GGUF_TYPE_ARRAY);
        put_u64(deep + n + 4, 1);
        n += 12;
    }
    memset(deep + n, 0, 64);
    try_open(deep, n + 64, err, sizeof err);
    CHECK(strstr(err, "nested deeper than 16") != NULL, "deep nesting: '%s'", err);
    printf("  %-28s -> %s\n", "arrays nested 20 deep", err);
}

/* ------------------------------------------------------------------ fuzz */

/* Touch everything an opened file exposes (ASan checks the reads). */
static unsigned walk_array(const gguf_array *a, int depth) {
    unsigned sum = 0;
    for (uint64_t i = 0; i < a->count; i++) {
        int64_t v;
        double d;
        const char *s;
        size_t n;
        gguf_array sub;
        if (gguf_array_int(a, i, &v) == 0) sum += (unsigned)v;
        if (gguf_array_float(a, i, &d) == 0) sum += d > 0;
        if (gguf_array_string(a, i, &s, &n) == 0) sum += n ? (unsigned char)s[n - 1] + (unsigned char)s[n] : 0;
        if (gguf_array_at(a, i, &sub) == 0) {
            CHECK(depth < GGUF_MAX_NESTING, "nesting depth");
            sum += walk_array(&sub, depth + 1);
        }
    }
    return sum;
}

static unsigned walk_file(const gguf_file *f, const uint8_t *base, size_t len) {
    unsigned sum = 0;
    for (int64_t i = 0; i < gguf_key_count(f); i++) {
        const char *k = gguf_key_name(f, i);
        CHECK(k && k[0] && gguf_find_key(f, k) == i, "key %" PRId64 " found by name", i);
        uint64_t u;
        double d;
        const char *s;
        size_t n;
        gguf_array a;
        if (gguf_get_uint(f, k, &u) == 0) sum += (unsigned)u;
        if (gguf_get_float(f, k, &d) == 0) sum += d > 0;
        if (gguf_get_string(f, k, &s, &n) == 0) sum += (unsigned)n + (unsigned char)s[n];
        if (gguf_get_array(f, k, &a) == 0) sum += walk_array(&a, 1);
    }
    for (int64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *d = t->data;
        CHECK(d >= base && t->bytes > 0 && (size_t)(d - base) + t->bytes <= len, "tensor %" PRId64 " inside", i);
        sum += d[0] + d[t->bytes - 1];
        CHECK(gguf_find_tensor(f, t->name) == t, "tensor found by name");
    }
    return sum;
}

static void test_fuzz(void) {
    image sample = sample_image(64);
    hand h;
    hand_build(&h);
    size_t fields[] = {h.version, h.n_tensors, h.n_kv, h.k0_len, h.k0_type, h.k0_strlen, h.align_val, h.arr_etype,
                       h.arr_count, h.strs_len0, h.t_ndims[0], h.t_dim[0][0], h.t_dim[0][1], h.t_type[1], h.t_off[1],
                       h.t_name[1], h.t_off[0], h.t_dim[1][0]};
    static const uint64_t special[] = {0, 1, 2, 3, 4, 5, 12, 13, 31, 32, 33, 64, 255, 256, 0xffffffffu,
                                       1ull << 32, 1ull << 60, 1ull << 63, UINT64_MAX, UINT64_MAX - 31};
    char err[256];
    size_t sample_header = 0;
    gguf_file *sf = gguf_open_memory(sample.p, sample.len, err, sizeof err);
    CHECK(sf != NULL, "sample opens: %s", err);
    if (sf) sample_header = gguf_data_offset(sf);
    gguf_close(sf);
    int opened = 0, failed = 0, bad_msg = 0;
    /* BATON_GGUF_FUZZ=N runs a longer campaign by hand; CI uses the default. */
    const char *env = getenv("BATON_GGUF_FUZZ");
    const int iterations = env && atoi(env) > 0 ? atoi(env) : 5000;
    unsigned sum = 0;
    for (int it = 0; it < iterations; it++) {
        bool use_hand = it % 2;
        const uint8_t *src = use_hand ? h.p : sample.p;
        size_t len = use_hand ? h.len : sample.len;
        uint8_t *img = exact_copy(src, len);
        size_t header = use_hand ? h.t_off[1] + 8 : sample_header;
        if (header > len) header = len;
        int kind = (int)(rng() % 4);
        int n_mut = 1 + (int)(rng() % 4);
        for (int m = 0; m < n_mut; m++) {
            if (kind == 0) { /* random bytes in the header */
                img[rng() % header] = (uint8_t)rng();
            } else if (kind == 1) { /* random 64-bit value at a random header offset */
                size_t at = rng() % (header - 8);
                uint64_t v = rng() % 2 ? rng() : special[rng() % (sizeof special / sizeof special[0])];
                put_u64(img + at, v);
            } else if (kind == 2 && use_hand) { /* special value at a known field */
                size_t at = fields[rng() % (sizeof fields / sizeof fields[0])];
                put_u64(img + at, special[rng() % (sizeof special / sizeof special[0])]);
            } else { /* a byte anywhere */
                img[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
            }
        }
        if (rng() % 8 == 0) len = rng() % len; /* and sometimes cut short */
        uint8_t *cut = exact_copy(img, len);
        free(img);
        err[0] = 'X';
        gguf_file *f = gguf_open_memory(cut, len, err, sizeof err);
        if (f) {
            opened++;
            sum += walk_file(f, cut, len);
            gguf_close(f);
        } else {
            failed++;
            if (!good_message(err) && bad_msg++ < 5) CHECK(0, "fuzz %d: bad message '%s'", it, err);
        }
        free(cut);
    }
    CHECK(bad_msg == 0, "%d fuzz failures without a good message", bad_msg);
    CHECK(opened > 0 && failed > 0, "fuzz should both open and reject some images");
    printf("fuzz: %d mutated images, %d opened (all contents walked), %d rejected with one-line messages (sum %u)\n",
           iterations, opened, failed, sum);
    free(sample.p);
}

/* ------------------------------------------------------------------ lazy mapping */

/* gguf_open must not read the data section: declare a 64 MiB tensor, leave its bytes
 * a sparse hole, open the file, and ask mincore() which pages of the mapping are in
 * memory. Pages well past the header (beyond any readahead) must not be. */
static void test_lazy_mapping(void) {
    char path[] = "/tmp/test_gguf_lazy_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *out = fdopen(fd, "wb");
    gguf_writer *w = gguf_writer_new();
    int64_t ne[2] = {4096, 4096};
    gguf_writer_add_string(w, "general.architecture", "qwen2");
    CHECK(gguf_writer_add_tensor(w, "big", TENSOR_F32, 2, ne) == 0, "declare big tensor");
    CHECK(gguf_writer_write_header(w, out) == 0, "header");
    fflush(out);
    long header = ftell(out);
    size_t total = (size_t)header + gguf_writer_tensor_bytes(w, 0);
    CHECK(ftruncate(fd, (off_t)total) == 0, "ftruncate");
    fclose(out);
    gguf_writer_free(w);
    char err[256];
    gguf_file *f = gguf_open(path, err, sizeof err);
    CHECK(f != NULL, "open sparse file: %s", err);
    if (f) {
        const gguf_tensor *t = gguf_find_tensor(f, "big");
        long page = sysconf(_SC_PAGESIZE);
        uintptr_t lo = ((uintptr_t)t->data + (8u << 20) + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
        uintptr_t hi = ((uintptr_t)t->data + t->bytes) & ~((uintptr_t)page - 1);
        size_t pages = (hi - lo) / (size_t)page, resident = 0;
        unsigned char *vec = malloc(pages);
        CHECK(mincore((void *)lo, hi - lo, vec) == 0, "mincore");
        for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
        CHECK(resident == 0, "%zu of %zu data pages resident after gguf_open", resident, pages);
        /* Touching the data loads it (the check above can see residency). */
        volatile const uint8_t *d = (const uint8_t *)lo;
        CHECK(d[0] == 0, "hole reads as zero");
        CHECK(mincore((void *)lo, (size_t)page, vec) == 0 && (vec[0] & 1), "touched page resident");
        printf("lazy mapping: %zu of %zu pages of a 64 MiB tensor resident after gguf_open\n", resident, pages);
        free(vec);
        gguf_close(f);
    }
    unlink(path);
}

/* ------------------------------------------------------------------ files */

static void test_files(void) {
    char err[256];
    CHECK(gguf_open("/nonexistent/dir/model.gguf", err, sizeof err) == NULL && strstr(err, "model.gguf") &&
              strstr(err, "cannot open"),
          "missing: '%s'", err);
    printf("  missing file -> %s\n", err);
    char dir[] = "/tmp/test_gguf_dir_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(gguf_open(dir, err, sizeof err) == NULL && strstr(err, "is a directory"), "directory: '%s'", err);
    printf("  directory -> %s\n", err);
    char path[600];
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    FILE *e = fopen(path, "wb");
    fclose(e);
    CHECK(gguf_open(path, err, sizeof err) == NULL && strstr(err, "truncated") && strstr(err, "empty.gguf"),
          "empty: '%s'", err);
    printf("  empty file -> %s\n", err);
    /* A truncated real file gets its path in front. */
    image img = sample_image(32);
    e = fopen(path, "wb");
    fwrite(img.p, 1, 200, e);
    fclose(e);
    CHECK(gguf_open(path, err, sizeof err) == NULL && strncmp(err, path, strlen(path)) == 0 && strstr(err, "truncat"),
          "truncated file: '%s'", err);
    printf("  truncated file -> %s\n", err);
    free(img.p);
    unlink(path);
    rmdir(dir);
    gguf_close(NULL);
}

/* gguf_digest: equal for equal bytes; a changed metadata byte, a changed weight
 * byte at either end of a tensor, a changed size: another digest. */
static void digest_of(const uint8_t *p, size_t len, char out[GGUF_DIGEST_LEN]) {
    char err[256];
    gguf_file *f = gguf_open_memory(p, len, err, sizeof err);
    CHECK(f != NULL, "digest: open: %s", err);
    out[0] = 0;
    if (f) gguf_digest(f, out);
    gguf_close(f);
}

static void test_digest(void) {
    image img = sample_image(32);
    char a[GGUF_DIGEST_LEN], b[GGUF_DIGEST_LEN];
    digest_of(img.p, img.len, a);
    digest_of(img.p, img.len, b);
    CHECK(!strcmp(a, b) && !strncmp(a, "gguf:", 5), "digest repeatable: %s %s", a, b);
    char err[256];
    gguf_file *f = gguf_open_memory(img.p, img.len, err, sizeof err);
    CHECK(f != NULL, "open: %s", err);
    if (!f) return;
    const gguf_tensor *t = gguf_tensor_at(f, gguf_tensor_count(f) - 1);
    const uint8_t *alpha = memmem(img.p, img.len, "alpha", 5); /* a metadata string's bytes */
    CHECK(alpha != NULL, "sample has 'alpha'");
    size_t first = gguf_data_offset(f) + t->offset, last = first + t->bytes - 1, meta = alpha ? (size_t)(alpha - img.p) : 0;
    gguf_close(f);
    size_t where[] = {first, last, meta};
    for (int k = 0; k < 3; k++) {
        img.p[where[k]] ^= 0x40;
        f = gguf_open_memory(img.p, img.len, err, sizeof err);
        CHECK(f != NULL, "flipped byte %zu: %s", where[k], err);
        if (f) {
            gguf_digest(f, b);
            CHECK(strcmp(a, b) != 0, "byte %zu changed, digest the same: %s", where[k], b);
            gguf_close(f);
        }
        img.p[where[k]] ^= 0x40;
    }
    free(img.p);
}

int main(void) {
    test_round_trip();
    test_digest();
    test_writer_misuse();
    test_truncation();
    test_corruption();
    test_fuzz();
    test_lazy_mapping();
    printf("files:\n");
    test_files();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
