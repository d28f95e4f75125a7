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
} gguf_value_type;

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

/* Arrays: element type and count; elements by index. For nested arrays,
 * gguf_get_array_at returns the i-th sub-array as an opaque handle. */
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

/* Writing. */
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
/* Declare a tensor (ne[0] fastest); its bytes follow later. Returns its index or -1. */
int64_t gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne);
/* Write magic, version 3, metadata and tensor table, padded to the alignment. */
int gguf_writer_write_header(gguf_writer *w, FILE *out);
/* Write the bytes of tensor i (which must be the next one), with its padding.
 * May be called several times per tensor with consecutive pieces; the tensor is
 * complete when its declared size has been written. */
int gguf_writer_write_tensor_data(gguf_writer *w, FILE *out, int64_t i, const void *data, size_t bytes);

#endif
