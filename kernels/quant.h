/* quant.h - tensor number formats: the GGML/GGUF types Baton reads and writes.
 *
 * Every type is described by one table row {id, name, elements per block, bytes
 * per block}; code asks the table instead of switching on types. The block layouts
 * are exactly those of the GGUF specification / ggml (little-endian, packed, no
 * alignment assumed):
 *
 *   F32   1 elem,    4 bytes   IEEE binary32
 *   F16   1 elem,    2 bytes   IEEE binary16
 *   BF16  1 elem,    2 bytes   upper half of binary32
 *   Q4_0  32 elems, 18 bytes   { f16 d; u8 qs[16]; }            x = d * (q - 8),
 *                              q of element j<16 in qs[j] & 15, of j+16 in qs[j] >> 4
 *   Q8_0  32 elems, 34 bytes   { f16 d; i8 qs[32]; }            x = d * q
 *   Q4_K  256 elems, 144 bytes { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
 *                              8 sub-blocks of 32, 6-bit scale sc and min m each:
 *                                x = d * sc[s] * q - dmin * m[s],  s = element / 32
 *                              sc/m of sub-block j from the 12 bytes S:
 *                                j < 4:  sc = S[j] & 63,  m = S[j+4] & 63
 *                                j >= 4: sc = (S[j+4] & 15) | (S[j-4] >> 6) << 4
 *                                        m  = (S[j+4] >> 4) | (S[j]   >> 6) << 4
 *                              q: 64-element chunk c uses qs[32c .. 32c+31]; element
 *                                64c+l (l<32) is the low nibble of qs[32c+l], element
 *                                64c+32+l the high nibble
 *   Q6_K  256 elems, 210 bytes { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }
 *                              16 sub-blocks of 16, x = d * scales[e/16] * (q - 32),
 *                              q = 4 low bits from ql | 2 high bits from qh << 4;
 *                              half h (128 elements) uses ql[64h..], qh[32h..]; for
 *                              l < 32 and r = 128h + l:
 *                                r      low nibble of ql[64h+l],    qh[32h+l] bits 0-1
 *                                r + 32 low nibble of ql[64h+l+32], qh[32h+l] bits 2-3
 *                                r + 64 high nibble of ql[64h+l],   qh[32h+l] bits 4-5
 *                                r + 96 high nibble of ql[64h+l+32],qh[32h+l] bits 6-7
 *   (issue 22; the 32-element ones use Q4_0's nibble order, and the 5-bit ones
 *   take bit 4 of element i from bit i of the little-endian u32 qh)
 *   Q4_1  32 elems, 20 bytes   { f16 d; f16 m; u8 qs[16]; }       x = d * q + m
 *   Q5_0  32 elems, 22 bytes   { f16 d; u8 qh[4]; u8 qs[16]; }    x = d * (q - 16)
 *   Q5_1  32 elems, 24 bytes   { f16 d; f16 m; u8 qh[4]; u8 qs[16]; } x = d * q + m
 *   IQ4_NL 32 elems, 18 bytes  { f16 d; u8 qs[16]; }            x = d * V[q], V = the
 *                              codebook -127 -104 -83 -65 -49 -35 -22 -10 1 13 25 38
 *                              53 69 89 113 (quant_iq4nl_values)
 *   IQ4_XS 256 elems, 136 bytes { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }
 *                              8 sub-blocks of 32 (sub-block j: qs[16j..16j+15] in
 *                              IQ4_NL's order), 6-bit ls_j = ((scales_l[j/2] >>
 *                              4*(j%2)) & 15) | ((scales_h >> 2j) & 3) << 4,
 *                              x = d * (ls_j - 32) * V[q]
 *   Q2_K  256 elems, 84 bytes  { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }
 *                              16 sub-blocks of 16, 4-bit scale sc = scales[s] & 15
 *                              and 4-bit min m = scales[s] >> 4 (s = element / 16):
 *                                x = d * sc * q - dmin * m,  q in 0..3
 *                              q of element 128h + 32k + l (h < 2, k < 4, l < 32) is
 *                              bits 2k, 2k+1 of qs[32h + l]
 *   Q3_K  256 elems, 110 bytes { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }
 *                              16 sub-blocks of 16, 6-bit scale code c_s (0..63):
 *                                x = d * (c_s - 32) * (q - 4),  q in 0..7
 *                              q of element e = 128h + 32k + l: low 2 bits = bits 2k,
 *                              2k+1 of qs[32h + l] (as Q2_K), bit 2 = bit e / 32 of
 *                              hmask[e % 32] (ggml writes it as "subtract 4 when
 *                              that bit is clear")
 *                              c_s from the 12 bytes S: low 4 bits S[s] & 15 for
 *                              s < 8, S[s-8] >> 4 for s >= 8; high 2 bits
 *                              (S[8 + s % 4] >> 2 (s / 4)) & 3
 *   Q5_K  256 elems, 176 bytes { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
 *                              as Q4_K (same scales[12] packing, same nibbles in
 *                              qs) with a fifth bit: element e (sub-block s = e / 32,
 *                              l = e % 32) adds 16 * (bit s of qh[l]);
 *                                x = d * sc[s] * q - dmin * m[s],  q in 0..31
 *
 * quant_quantize_row and quant_dequantize_row are the scalar reference: simple,
 * exact to the layout, used by the model generator and by the tests.
 *
 * ENCODERS (deterministic: the same floats give the same bytes everywhere)
 *   Q8_0  d = max|x| / 127, q = round(x / d): byte-identical to ggml's reference.
 *   Q4_0  d = m / -8 with m the element of largest magnitude (signed), q =
 *         min(15, floor(x / d + 8.5)): byte-identical to ggml's reference.
 *   Q4_K  per sub-block of 32: weighted least-squares fit of (scale, min) with
 *         weights rms + |x| over 21 candidate grids plus a few refinement rounds
 *         (a fit may not miss any element by more than 0.75 of the plain
 *         (max-min)/15 step); 6-bit scales/mins under fp16 d = max scale / 63 and
 *         dmin = max min / 63 (rounded up, so no scale clamps); elements rounded
 *         with the stored values. RMS error within 1% of ggml's reference on
 *         every distribution tried.
 *   Q6_K  per sub-block of 16: ggml's signed-scale search (x^2 weights, 20
 *         candidates around -32 / m), with the same 0.75-step cap; int8 scales
 *         under fp16 d = m / -128 (rounded up in magnitude). RMS error equal to
 *         ggml's reference (most blocks byte-identical).
 *   Q4_1, Q5_1  d = (max - min) / 15 (31), m = min, elements rounded to nearest
 *         with the stored fp16 d and m (ggml rounds with the unrounded ones).
 *   Q5_0  as ggml: d = m / -16 (m the signed element of largest magnitude), q =
 *         min(31, floor(x / d + 16.5)).
 *   IQ4_NL plain scale -m / 127 (m lands on -127) plus 30 candidates (m on -127+k
 *         or 113+k, k = -7..7), each refitted by unweighted least squares; the
 *         least squared error wins if no element misses by more than 14/127 |m|
 *         (the plain scale's worst case). RMS error 0.0672 of the RMS value
 *         against 0.0698 with the plain scale alone (-4%; 60000 mixed blocks).
 *   IQ4_XS per sub-block IQ4_NL's search; 6-bit scales l = round(s_j / d) under
 *         fp16 d = ms / -32 (ms the signed largest scale, rounded away from 0),
 *         elements re-rounded with the stored d * l. RMS 0.0684 vs 0.0702 plain.
 *   Q5_K  the Q4_K fit with 31 steps instead of 15, same 6-bit scale/min packing.
 *   Q2_K  per sub-block of 16: the Q4_K fit with 3 steps; 4-bit scales and mins
 *         under fp16 d = max scale / 15, dmin = max min / 15 (rounded up).
 *   Q3_K  per sub-block of 16: the Q6_K signed-scale search with codes -4..3;
 *         6-bit signed scales (-32..31) under fp16 d = m / -32 (rounded up in
 *         magnitude).
 *   Relative RMS error over test_quant's 7 distributions (its printout):
 *   Q2_K 0.278, Q3_K 0.155, Q5_K 0.037 (Q4_K 0.072, Q6_K 0.018 on the same
 *   data); not compared with ggml's reference encoders.
 *   NaN inputs encode as 0, +-inf and huge values saturate (scales stop at
 *   65504): no input gives a NaN or inf scale, and no conversion is undefined.
 *
 * ERROR BOUNDS, per block, for finite inputs whose block scale fits fp16
 * (max |x| below about 8e6 for Q8_0, 5e5 for Q4_0, 1e6 for the K types):
 *     max |x - x'| <= quant_error_bound(t) * max|x| + quant_error_floor(t)
 *   F32   0
 *   F16   2^-11 (half an ulp, relative), floor 2^-25 (subnormal spacing / 2);
 *         |x| >= 65520 becomes inf
 *   BF16  2^-8 (half an ulp of a 8-bit significand), floor 2^-133
 *   Q8_0  0.0045 = 1/254 (half a step) + 2^-11 (fp16 rounding of d, times 127
 *         steps); floor 127 * 2^-25 (fp16 rounding of a subnormal d)
 *   Q4_0  0.126 = 1/8 (the largest element on the side opposite to m clamps at
 *         7d = 7/8 max) + 7 * 2^-11 / 8; floor 8 * 2^-25
 *   Q4_K  0.125: the capped fit misses by at most 0.75 * (range / 15) <= 0.1 max;
 *         6-bit rounding of scale and min adds up to 15 * d / 2 + dmin / 2.
 *         That second term is not bounded in closed form, so 0.125 is checked,
 *         not proven: worst seen 0.1182 over 1.2 M random blocks of 20
 *         distributions (ggml's reference: 0.1173). Floor 16 * 2^-24.
 *   Q6_K  0.035: capped fit 0.75 / 32 = 0.0234, plus up to 32 steps of the
 *         int8 scale error (one d = max scale / 128 <= 0.033 max / 128) = 0.0083,
 *         plus fp16 rounding. Worst seen 0.0244. Floor 33 * 2^-24.
 *   Q4_1  0.068: half a step of the range (<= 2 max) / 15 = 1/15, plus fp16
 *         rounding of m (2^-11) and of d (15 steps); max |x| < 65504 (m is fp16).
 *         Worst seen 0.0667. Floor 16 * 2^-25.
 *   Q5_0  0.063 = 1/16 (as Q4_0: the side opposite to m clamps at 15d) +
 *         15 * 2^-11 / 16. Worst seen 0.0628. Floor 16 * 2^-25.
 *   Q5_1  0.034: 1/31 plus the fp16 terms as Q4_1. Worst seen 0.0323. Floor 32 * 2^-25.
 *   IQ4_NL 0.111: 14/127 (the plain scale puts m on -127; the far end of the
 *         codebook is 113; the widest gap, 24, gives 12/127) plus fp16 rounding
 *         of d. Worst seen 0.1104. Floor 128 * 2^-25.
 *   IQ4_XS 0.135, checked, not proven (the 6-bit scale of a sub-block of the
 *         opposite sign clamps at 31, not 32): worst seen 0.1281 over 60000
 *         mixed-distribution blocks. Floor 128 * 2^-24.
 *   Q5_K  0.07: capped fit 0.75 * range / 31 <= 0.049 max, plus the 6-bit
 *         scale/min rounding (checked, not proven, as Q4_K; worst seen 0.053).
 *         Floor 32 * 2^-24.
 *   Q2_K  0.55: capped fit 0.75 * range / 3 <= 0.5 max, plus 4-bit scale/min
 *         rounding (checked, not proven; worst seen 0.361). Floor 16 * 2^-24.
 *   Q3_K  0.25: capped fit 0.75 / 4 = 0.1875, plus up to 4 steps of the 6-bit
 *         scale error (d / 2 per step, d <= max scale / 32 <= max / 3.5 / 32 =
 *         0.009 max) = 0.036, plus fp16 rounding (worst seen 0.178). Floor
 *         5 * 2^-24.
 *         The measured worst cases are printed by test_quant.
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
    TENSOR_Q2_K = 10,
    TENSOR_Q3_K = 11,
    TENSOR_Q4_K = 12,
    TENSOR_Q5_K = 13,
    TENSOR_Q6_K = 14,
    TENSOR_BF16 = 30,
    /* issue 22: the legacy 32-element types and the non-linear 4-bit types */
    TENSOR_Q4_1 = 3,
    TENSOR_Q5_0 = 6,
    TENSOR_Q5_1 = 7,
    TENSOR_IQ4_NL = 20,
    TENSOR_IQ4_XS = 23,
};

#define QK4_0 32
#define QK8_0 32
#define QK_K 256

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[16]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; } block_q5_1;
typedef struct { uint16_t d; uint8_t qs[16]; } block_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[QK_K / 2]; } block_iq4_xs;

/* The IQ4_NL / IQ4_XS codebook (ggml's kvalues_iq4nl): code q in 0..15 means
 * quant_iq4nl_values[q] (then times the block or sub-block scale). */
extern const int8_t quant_iq4nl_values[16];
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d; uint16_t dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;

typedef struct tensor_type_info {
    uint32_t type;        /* enum tensor_type */
    const char *name;     /* "f32", "q4_K", ... as llama.cpp spells them */
    uint32_t block_elems; /* elements per block */
    uint32_t block_bytes; /* bytes per block */
} tensor_type_info;

/* The table row for a GGML type id, or NULL if Baton does not support it. */
const tensor_type_info *tensor_type_get(uint32_t type);

/* ggml's name of any GGML type id, supported by Baton or not ("iq2_xxs", "tq1_0",
 * ...), or NULL for an id ggml does not define (or retired: 4, 5). */
const char *quant_type_name_any(uint32_t type);

/* The names of the types Baton runs, space-separated ("f32 f16 q4_0 ..."), for
 * messages that refuse a file. */
const char *quant_supported_list(void);

/* The type id for a name ("q8_0", case-insensitive), or -1 if unknown. */
int tensor_type_from_name(const char *name);

/* Bytes taken by n elements of `type`; 0 if n is not a whole number of blocks,
 * n <= 0, the size overflows size_t, or the type is unknown. */
size_t tensor_row_bytes(uint32_t type, int64_t n);

/* Half-precision conversions. To binary32: exact. From binary32: round to
 * nearest even; fp16 handles subnormals (down to 2^-24), overflows to inf
 * (from 65520 up), keeps signed zeros, and turns NaN into a quiet NaN; bf16
 * rounds overflow to inf and turns NaN into a quiet NaN. */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* Decode n elements (a whole number of blocks) of `type` from src into dst.
 * src needs no alignment. Returns 0, or -1 (dst untouched) for an unknown type,
 * NULL buffers, n <= 0 or a ragged n. Any bytes decode (a NaN/inf scale in the
 * data decodes as such). */
int quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Encode n floats into `type` (the reference encoders described above). dst
 * needs no alignment and gets exactly tensor_row_bytes(type, n) bytes. Returns
 * the bytes written, or 0 (dst untouched) for an unknown type, NULL buffers,
 * n <= 0 or a ragged n. */
size_t quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* The documented worst-case round-trip error of `type`, relative to the largest
 * magnitude in a block (used by tests and by the generator's self-check): for
 * each block, max |x - x'| <= bound * max|x| + quant_error_floor(type). See the
 * table at the top of this file. -1 for an unknown type. */
double quant_error_bound(uint32_t type);

/* The absolute part of that bound: what tiny blocks (fp16-subnormal scales) can
 * lose. 0 for F32; -1 for an unknown type. */
double quant_error_floor(uint32_t type);

#endif
