/* quant.h - tensor number formats: the GGML/GGUF types Baton reads and writes.
 *
 * Every type is described by one table row {id, name, elements per block, bytes
 * per block}; code asks the table instead of switching on types. The block layouts
 * are exactly those of the GGUF specification (little-endian, packed):
 *
 *   F32   1 elem,    4 bytes   IEEE binary32
 *   F16   1 elem,    2 bytes   IEEE binary16
 *   BF16  1 elem,    2 bytes   upper half of binary32
 *   Q4_0  32 elems, 18 bytes   { f16 d; u8 qs[16]; }            x = d * (q - 8),
 *                              q of element j<16 in qs[j] & 15, of j+16 in qs[j] >> 4
 *   Q8_0  32 elems, 34 bytes   { f16 d; i8 qs[32]; }            x = d * q
 *   Q4_K  256 elems, 144 bytes { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
 *                              8 sub-blocks of 32, 6-bit scale and min each
 *   Q6_K  256 elems, 210 bytes { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
 *                              16 sub-blocks of 16, x = d * scale * (q - 32)
 *
 * quant_quantize_row and quant_dequantize_row are the scalar reference: simple,
 * exact to the layout, used by the model generator and by the tests.
 */
#ifndef BATON_QUANT_H
#define BATON_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* GGML type ids, as stored in a GGUF tensor table. Only grows at the end. */
enum tensor_type {
    TENSOR_F32 = 0,
    TENSOR_F16 = 1,
    TENSOR_Q4_0 = 2,
    TENSOR_Q8_0 = 8,
    TENSOR_Q4_K = 12,
    TENSOR_Q6_K = 14,
    TENSOR_BF16 = 30,
};

#define QK4_0 32
#define QK8_0 32
#define QK_K 256

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;

typedef struct tensor_type_info {
    uint32_t type;        /* enum tensor_type */
    const char *name;     /* "f32", "q4_K", ... as llama.cpp spells them */
    uint32_t block_elems; /* elements per block */
    uint32_t block_bytes; /* bytes per block */
} tensor_type_info;

/* The table row for a GGML type id, or NULL if Baton does not support it. */
const tensor_type_info *tensor_type_get(uint32_t type);

/* The type id for a name ("q8_0", case-insensitive), or -1 if unknown. */
int tensor_type_from_name(const char *name);

/* Bytes taken by n elements of `type`; 0 if n is not a whole number of blocks or
 * the type is unknown. */
size_t tensor_row_bytes(uint32_t type, int64_t n);

/* Half-precision conversions (round to nearest even; NaN stays NaN). */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* Decode n elements (a whole number of blocks) of `type` from src into dst.
 * Returns 0, or -1 for an unknown type or a ragged n. */
int quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Encode n floats into `type` (the reference encoders: round to nearest, scales
 * chosen per block as llama.cpp's reference quantizers do). Returns the bytes
 * written, or 0 for an unknown type or a ragged n. */
size_t quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* The documented worst-case round-trip error of `type`, relative to the largest
 * magnitude in a block (used by tests and by the generator's self-check). */
double quant_error_bound(uint32_t type);

#endif
