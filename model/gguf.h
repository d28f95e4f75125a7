/* gguf.h - reading and writing GGUF model files (versions 2 and 3).
 *
 * Reading:
 *     char err[256];
 *     gguf_file *f = gguf_open("model.gguf", err, sizeof err);
 *     if (!f) { fprintf(stderr, "%s\n", err); ... }
 *     uint64_t n_layer;
 *     if (gguf_get_uint(f, "qwen2.block_count", &n_layer) != 0) ...
 *     const gguf_tensor *t = gguf_find_tensor(f, "blk.0.attn_q.weight");
 *     ... t->data points into the memory-mapped file ...
 *     gguf_close(f);
 *
 * gguf_open validates the whole header and tensor table before returning: magic,
 * version, counts, every string and array length against the bytes left, value
 * types, dimensions (and their product) against overflow, tensor types, data
 * offsets (aligned to general.alignment, inside the file, not overlapping).
 * Nothing in the data section is read: the file is mmap()ed, and only the pages of
 * the tensors a caller touches are ever loaded. Every failure produces one line
 * naming what is wrong and where (byte offset, key or tensor name).
 *
 * Writing streams: declare metadata and tensors, write the header, then each
 * tensor's bytes in declaration order, so a 20 GB file needs no 20 GB of memory.
 */
#ifndef BATON_GGUF_H
#define BATON_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT = 13, /* not a type: the number of types; gguf_key_type's answer for a bad index */
} gguf_value_type;

/* Arrays may hold arrays; deeper nesting than this is rejected as malformed. */
#define GGUF_MAX_NESTING 16

/* "uint8", "string", ...; "invalid" for anything else. */
const char *gguf_type_name(gguf_value_type t);

typedef struct gguf_tensor {
    const char *name;
    uint32_t type;              /* enum tensor_type (kernels/quant.h) */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the row length (fastest dimension) */
    int64_t n_elems;
    uint64_t offset;            /* from the start of the data section */
    size_t bytes;
    const void *data;           /* inside the mapping; pages load on first touch */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Open, map and validate a GGUF file. NULL on error, with a one-line message in err. */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
/* Parse an in-memory image (same checks; the buffer must outlive the result). */
gguf_file *gguf_open_memory(const void *buf, size_t len, char *err, size_t errlen);
void gguf_close(gguf_file *f); /* accepts NULL */

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
/* Byte offset in the file where the data section (tensor offset 0) starts. */
uint64_t gguf_data_offset(const gguf_file *f);

/* The identity of a model file without reading all its weights: a 64-bit hash
 * (FNV-1a) of the header (metadata and tensor table, every byte before the data
 * section), of the first and last GGUF_DIGEST_SAMPLE bytes of every tensor's data,
 * and the file size, written as "gguf:HASH:SIZE" (out: GGUF_DIGEST_LEN bytes).
 * Two files with the same shapes but other weights (another seed, another
 * quantization) differ in it; reading it touches two pages per tensor. */
#define GGUF_DIGEST_LEN 48
#define GGUF_DIGEST_SAMPLE 256
void gguf_digest(const gguf_file *f, char out[GGUF_DIGEST_LEN]);

/* Metadata. Keys are looked up by exact name. The typed getters return 0 on
 * success, -1 if the key is missing, -2 if it has another type. gguf_get_uint
 * accepts any unsigned or non-negative signed integer type; gguf_get_float any
 * float or integer type. */
int64_t gguf_key_count(const gguf_file *f);
const char *gguf_key_name(const gguf_file *f, int64_t i);
int64_t gguf_find_key(const gguf_file *f, const char *key);      /* -1 if absent */
gguf_value_type gguf_key_type(const gguf_file *f, int64_t i);
int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *out);
int gguf_get_int(const gguf_file *f, const char *key, int64_t *out);
int gguf_get_float(const gguf_file *f, const char *key, double *out);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out);
int gguf_get_string(const gguf_file *f, const char *key, const char **s, size_t *len);

/* Strings returned by gguf_get_string / gguf_array_string are NUL-terminated
 * copies owned by the file (len is authoritative: a value may contain NULs); key
 * and tensor names never contain NUL.
 *
 * Arrays: element type and count; elements by index. For nested arrays,
 * gguf_array_at returns the i-th sub-array as an opaque handle. Element
 * accessors return 0, -1 if i >= count, -2 if the element type does not fit. */
typedef struct gguf_array {
    gguf_value_type type;
    uint64_t count;
    const void *opaque; /* reader-internal */
} gguf_array;
int gguf_get_array(const gguf_file *f, const char *key, gguf_array *out);
int gguf_array_string(const gguf_array *a, uint64_t i, const char **s, size_t *len);
int gguf_array_int(const gguf_array *a, uint64_t i, int64_t *out);   /* any integer type */
int gguf_array_float(const gguf_array *a, uint64_t i, double *out);  /* float or integer */
int gguf_array_at(const gguf_array *a, uint64_t i, gguf_array *sub); /* nested array */

/* Tensors. */
int64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */

/* Writing. Every gguf_writer_* function returning int gives 0 on success and -1
 * on error, with the reason in gguf_writer_error(). Keys must be non-empty, free
 * of NUL and unique; "general.alignment" is managed by gguf_writer_set_alignment
 * (gguf_writer_add_uint32 with that key calls it). */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w); /* accepts NULL */
void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment); /* also writes general.alignment */
int gguf_writer_add_uint32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_int32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_uint64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_float32(gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_add_string(gguf_writer *w, const char *key, const char *v);
int gguf_writer_add_array_string(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
int gguf_writer_add_array_int32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
int gguf_writer_add_array_float32(gguf_writer *w, const char *key, const float *v, uint64_t n);
int gguf_writer_add_uint8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_add_int8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_add_uint16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_add_int16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_add_int64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_add_float64(gguf_writer *w, const char *key, double v);
/* An array of any scalar type (not string or array): v is a C array of n values
 * of the matching C type (uint8_t ... double, bool for GGUF_TYPE_BOOL). */
int gguf_writer_add_array(gguf_writer *w, const char *key, gguf_value_type type, const void *v, uint64_t n);
/* Arrays built element by element, which may nest:
 *     gguf_writer_begin_array(w, "k", GGUF_TYPE_ARRAY, 2);   // k = [[1, 2], ["a"]]
 *       gguf_writer_begin_array(w, NULL, GGUF_TYPE_INT32, 2);
 *         gguf_writer_push_value(w, GGUF_TYPE_INT32, &(int32_t){1}); ... (2)
 *       gguf_writer_end_array(w);
 *       gguf_writer_begin_array(w, NULL, GGUF_TYPE_STRING, 1);
 *         gguf_writer_push_string(w, "a");
 *       gguf_writer_end_array(w);
 *     gguf_writer_end_array(w);
 * key is given for a top-level array and NULL for an element of the open array.
 * push_value takes a pointer to one value of the C type matching `type`, which
 * must be the open array's element type. end_array fails unless exactly n
 * elements were pushed. A misuse leaves the writer failed (write_header refuses). */
int gguf_writer_begin_array(gguf_writer *w, const char *key, gguf_value_type type, uint64_t n);
int gguf_writer_push_value(gguf_writer *w, gguf_value_type type, const void *v);
int gguf_writer_push_string(gguf_writer *w, const char *s);
int gguf_writer_end_array(gguf_writer *w);
/* Declare a tensor (ne[0] fastest); its bytes follow later. Returns its index or -1. */
int64_t gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne);
/* Write magic, version 3, metadata and tensor table, padded to the alignment. */
int gguf_writer_write_header(gguf_writer *w, FILE *out);
/* Write the bytes of tensor i (which must be the next one), with its padding.
 * May be called several times per tensor with consecutive pieces; the tensor is
 * complete when its declared size has been written. */
int gguf_writer_write_tensor_data(gguf_writer *w, FILE *out, int64_t i, const void *data, size_t bytes);
/* 0 once the header and every tensor's bytes have been written, else -1. */
int gguf_writer_finish(gguf_writer *w);
/* Bytes tensor i takes in the file (without padding); 0 for a bad index. */
size_t gguf_writer_tensor_bytes(const gguf_writer *w, int64_t i);
/* The reason the last call failed ("" if none). */
const char *gguf_writer_error(const gguf_writer *w);

#endif
