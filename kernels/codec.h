/* codec.h - activation codecs: how hidden states cross a stage boundary.
 *
 *     size_t cap = codec_max_encoded(CODEC_Q8_LZ4, rows, width);
 *     uint8_t *wire = malloc(cap);
 *     size_t len = codec_encode(CODEC_Q8_LZ4, x, rows, width, wire, cap, err, sizeof err);
 *     ...
 *     if (codec_decode(CODEC_Q8_LZ4, wire, len, y, rows, width, err, sizeof err) < 0) reject(err);
 *     if (codec_crc32c(0, y, rows * width * sizeof(float)) != sum_sent) reject("checksum");
 *
 * (worker/hop.h does this for stage frames, with the checksum of the decoded
 * floats computed by the sender.)
 *
 * x is [rows][width] floats (a batch of tokens' hidden states). The numbers are
 * Baton.Codec in proto/baton.proto. Formats (all little-endian):
 *
 *   f32    raw binary32. Lossless.
 *   f16    binary16, round to nearest even; |x| >= 65520 becomes +-inf, NaN
 *          stays NaN. Relative error <= 2^-11 for normal f16 values
 *          (6.1e-5 <= |x| < 65504), absolute error <= 2^-25 below that.
 *   bf16   the top half of binary32, round to nearest even, NaN stays NaN.
 *          Relative error <= 2^-8, same range as f32.
 *   q8     per row, blocks of 32 values (the last one may be shorter): one f32
 *          scale d = amax / 127 and int8 q = nearbyint(x * 127 / amax), x' = q * d.
 *          |x - x'| <= amax / 254 (+ one f32 rounding); a block holding inf or
 *          NaN decodes as NaN, one with amax < 2^-120 as zeros. Layout: every
 *          scale ([rows][ceil(width/32)] f32), then every q ([rows][width]
 *          int8): 28% of f32 at width 5120.
 *   *_lz4  the same numbers cut into byte planes (byte k of every value
 *          together), and the top byte plane (f32, bf16: after folding the
 *          exponent into it, sign rotated to bit 0 and the exponent stored as
 *          the zigzag of its distance from 127; f16: sign, exponent and 2
 *          mantissa bits; q8: the scales' top byte) further cut into 8 bit
 *          planes: the high bits of a folded exponent are almost always 0, so
 *          those planes shrink to almost nothing, while the mantissa bytes are
 *          noise and stay whole. Each plane is lz4-compressed, or stored as is when a
 *          sample or the whole plane does not shrink: u32 length of each plane,
 *          then the planes. q8's int8 values are one more whole plane.
 *
 * The lossless default, CODEC_DEFAULT, is f32+lz4. Encoders and decoders run the
 * level's vector code (kern_get_level(), as ops.h: AVX2 and AVX-512 run the AVX2
 * code; the scalar code defines the bits, and every level gives identical bytes).
 *
 * Decoding is bounds-checked for any input: a payload of the wrong size, a bad
 * lz4 stream or an unknown codec gives -1 and a one-line message; it never reads
 * past src + src_len or writes past y + rows * width. The checksum of the decoded
 * data (codec_crc32c) is the caller's, so that it covers the whole path.
 */
#ifndef BATON_CODEC_H
#define BATON_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum codec_id {
    CODEC_F32 = 0,
    CODEC_F16 = 1,
    CODEC_BF16 = 2,
    CODEC_Q8 = 3,
    CODEC_F32_LZ4 = 4,
    CODEC_F16_LZ4 = 5,
    CODEC_BF16_LZ4 = 6,
    CODEC_Q8_LZ4 = 7,
    CODEC_COUNT = 8,
} codec_id;

#define CODEC_DEFAULT CODEC_F32_LZ4
#define CODEC_Q8_BLOCK 32

/* "f32", "f16", "bf16", "q8", "f32+lz4", ...; "unknown" outside [0, CODEC_COUNT). */
const char *codec_name(int codec);
/* The codec called `name` (as codec_name, "f32-lz4" also accepted), or -1. */
int codec_from_name(const char *name);
/* Bit (1 << codec) for every codec this build encodes and decodes. */
uint32_t codec_supported_mask(void);
/* True for f32 and f32+lz4 (decode gives back every bit, NaN payloads included). */
bool codec_is_lossless(int codec);

/* Upper bound of codec_encode's output for rows x width floats; 0 for an
 * unknown codec or a size that overflows. */
size_t codec_max_encoded(int codec, size_t rows, size_t width);

/* Encode x ([rows][width] floats) into dst (cap bytes, at least
 * codec_max_encoded). Returns the bytes written, or 0 with a message (unknown
 * codec, cap too small, out of memory). */
size_t codec_encode(int codec, const float *x, size_t rows, size_t width, void *dst, size_t cap, char *err,
                    size_t errlen);

/* Decode src_len bytes of `codec` into y ([rows][width] floats). 0, or -1 with a
 * message when the payload is not a valid encoding of exactly that many values. */
int codec_decode(int codec, const void *src, size_t src_len, float *y, size_t rows, size_t width, char *err,
                 size_t errlen);

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (start with 0):
 * codec_crc32c(0, "123456789", 9) == 0xE3069283. SSE4.2 where the level allows. */
uint32_t codec_crc32c(uint32_t crc, const void *data, size_t n);

#endif
