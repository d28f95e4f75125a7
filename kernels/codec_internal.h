/* codec_internal.h - what codec.c (format logic, scalar reference) and the
 * ISA versions (cpu/codec_avx2.c) share. Not a public API.
 *
 * Every primitive works on a whole array, so a format costs a few passes over
 * memory and no call per element; the lossless planes take one (cut: fold,
 * byte planes and bit planes of the top byte at once, straight to where they
 * are stored; join: back). The scalar definitions in codec.c fix the bits;
 * the vector versions reproduce them exactly (tests/unit/test_codec.c checks).
 */
#ifndef BATON_CODEC_INTERNAL_H
#define BATON_CODEC_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

typedef struct codec_ops {
    void (*to_f16)(const float *x, uint16_t *y, size_t n);
    void (*from_f16)(const uint16_t *x, float *y, size_t n);
    void (*to_bf16)(const float *x, uint16_t *y, size_t n);
    void (*from_bf16)(const uint16_t *x, float *y, size_t n);
    /* One row of n values: ceil(n/32) scales d and n int8 q (codec.h, q8). */
    void (*q8_row)(const float *x, size_t n, float *d, int8_t *q);
    void (*dq8_row)(const int8_t *q, const float *d, size_t n, float *y);
    /* The planes of n values of k bytes (k = 2 or 4), in one pass: each value
     * folded first when `fold` (codec_fold32/16), then byte b (b < k-1) of value
     * j to dst[b][j], and bit p of its top byte to bit j%8 of dst[k-1+p][j/8]
     * (8 bit planes of ceil(n/8) bytes, padding bits 0). join is the inverse,
     * reading the planes from anywhere (a payload's stored planes in place). */
    void (*cut)(const uint8_t *src, size_t n, int k, bool fold, uint8_t *const *dst);
    void (*join)(const uint8_t *const *src, size_t n, int k, bool fold, uint8_t *dst);
    uint32_t (*crc32c)(uint32_t crc, const void *data, size_t n);
} codec_ops;

/* A level's set is its kernel backend's `codec` (ops_internal.h): scalar in
 * codec.c, AVX2 in cpu/codec_avx2.c, which AVX-512 inherits. */
extern const codec_ops codec_ops_scalar;
extern const codec_ops codec_ops_avx2;

/* The q8 block rule, shared by every level for whole and partial blocks:
 * amax from the magnitude bits (NaN sorts above inf), d = amax / 127,
 * q = nearbyint(x * (127 / amax)) clamped to +-127; a non-finite block gets
 * d = NaN and q = 0, a block with amax < 2^-120 (where 127 / amax would
 * overflow) d = 0 and q = 0. */
#define CODEC_Q8_TINY 0x03800000u /* bits of 2^-120 */
static inline void codec_q8_block(const float *x, size_t n, float *d, int8_t *q) {
    uint32_t amax_bits = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u &= 0x7FFFFFFFu;
        if (u > amax_bits) amax_bits = u;
    }
    float amax;
    memcpy(&amax, &amax_bits, 4);
    if (amax_bits >= 0x7F800000u || amax_bits < CODEC_Q8_TINY) {
        *d = amax_bits < CODEC_Q8_TINY ? 0.0f : NAN;
        memset(q, 0, n);
        return;
    }
    *d = amax / 127.0f;
    const float id = 127.0f / amax;
    for (size_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * id);
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        q[i] = (int8_t)v;
    }
}

/* The exponent fold of the lossless planes: rotate the sign to bit 0 so the
 * top byte is the whole exponent, then store that exponent as the zigzag of its
 * distance from 127 (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...). Activations near
 * magnitude 1 cross exponent 127/128, where the raw bits flip all at once
 * (0x7F -> 0x80); folded, only the low bits of the top byte move, and its high
 * bit planes stay zero. A bijection on bit patterns: unfold(fold(u)) == u. */
static inline uint32_t codec_fold32(uint32_t u) {
    uint32_t r = u << 1 | u >> 31;
    int32_t d = (int32_t)(((r >> 24) - 127u) << 24) >> 24; /* the distance, as a signed byte */
    uint32_t z = ((uint32_t)d << 1 ^ (uint32_t)(d >> 31)) & 0xFFu;
    return (r & 0xFFFFFFu) | z << 24;
}
static inline uint32_t codec_unfold32(uint32_t v) {
    uint32_t z = v >> 24;
    uint32_t e = ((z >> 1 ^ (0u - (z & 1))) + 127u) & 0xFFu;
    uint32_t r = (v & 0xFFFFFFu) | e << 24;
    return r >> 1 | r << 31;
}
static inline uint16_t codec_fold16(uint16_t u) {
    uint32_t r = ((uint32_t)u << 1 | (uint32_t)u >> 15) & 0xFFFFu;
    int32_t d = (int32_t)(((r >> 8) - 127u) << 24) >> 24;
    uint32_t z = ((uint32_t)d << 1 ^ (uint32_t)(d >> 31)) & 0xFFu;
    return (uint16_t)((r & 0xFFu) | z << 8);
}
static inline uint16_t codec_unfold16(uint16_t v) {
    uint32_t z = (uint32_t)v >> 8;
    uint32_t e = ((z >> 1 ^ (0u - (z & 1))) + 127u) & 0xFFu;
    uint32_t r = ((uint32_t)v & 0xFFu) | e << 8;
    return (uint16_t)(r >> 1 | r << 15);
}

/* codec_ops.cut and .join for values [i, n), i a multiple of 8, one value at a
 * time: the scalar definition, and the tails of the vector versions. */
static inline void codec_cut_range(const uint8_t *src, size_t i, size_t n, int k, bool fold, uint8_t *const *dst) {
    for (; i < n; i++) {
        uint32_t u = 0;
        for (int b = 0; b < k; b++) u |= (uint32_t)src[(size_t)k * i + (size_t)b] << (8 * b);
        if (fold) u = k == 4 ? codec_fold32(u) : codec_fold16((uint16_t)u);
        for (int b = 0; b < k - 1; b++) dst[b][i] = (uint8_t)(u >> (8 * b));
        const uint32_t top = u >> (8 * (k - 1)) & 0xFFu;
        for (int p = 0; p < 8; p++) {
            uint8_t *bits = dst[k - 1 + p] + i / 8;
            *bits = (uint8_t)((i % 8 ? *bits : 0) | ((top >> p) & 1u) << (i % 8));
        }
    }
}
static inline void codec_join_range(const uint8_t *const *src, size_t i, size_t n, int k, bool fold, uint8_t *dst) {
    for (; i < n; i++) {
        uint32_t top = 0, u = 0;
        for (int p = 0; p < 8; p++) top |= (uint32_t)((src[k - 1 + p][i / 8] >> (i % 8)) & 1u) << p;
        for (int b = 0; b < k - 1; b++) u |= (uint32_t)src[b][i] << (8 * b);
        u |= top << (8 * (k - 1));
        if (fold) u = k == 4 ? codec_unfold32(u) : codec_unfold16((uint16_t)u);
        for (int b = 0; b < k; b++) dst[(size_t)k * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
}

#endif
