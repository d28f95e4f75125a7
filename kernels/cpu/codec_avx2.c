/* codec_avx2.c - the codec primitives (codec_internal.h) with AVX2, F16C and
 * SSE4.2 (crc32). Bit-identical to the scalar definitions in codec.c: F16C
 * rounds to nearest even as f32_to_fp16 does, cvtps_epi32 rounds to nearest even
 * as nearbyintf does under the default rounding mode, and every tail that does
 * not fill a vector runs the same arithmetic on a padded copy or inline. The
 * AVX-512 level runs these too.
 */
#include <immintrin.h>

#include "codec_internal.h"

static void a_to_f16(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float t[8] = {0};
        uint16_t u[8];
        memcpy(t, x + i, (n - i) * 4);
        _mm_storeu_si128((__m128i *)(void *)u, _mm256_cvtps_ph(_mm256_loadu_ps(t), _MM_FROUND_TO_NEAREST_INT));
        memcpy(y + i, u, (n - i) * 2);
    }
}

static void a_from_f16(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i))));
    if (i < n) {
        uint16_t u[8] = {0};
        float t[8];
        memcpy(u, x + i, (n - i) * 2);
        _mm256_storeu_ps(t, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)u)));
        memcpy(y + i, t, (n - i) * 4);
    }
}

/* 8 floats to 8 bf16 in the low 16 bits of each dword (f32_to_bf16's rule). */
static inline __m256i bf16_round8(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)),
                                              _mm256_set1_epi32(0x7F800000));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd)), 16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x0040));
    return _mm256_blendv_epi8(r, nan, is_nan);
}

static void a_to_bf16(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i p = _mm256_packus_epi32(bf16_round8(_mm256_loadu_ps(x + i)), bf16_round8(_mm256_loadu_ps(x + i + 8)));
        _mm256_storeu_si256((__m256i *)(void *)(y + i), _mm256_permute4x64_epi64(p, 0xD8));
    }
    if (i < n) {
        float t[16] = {0};
        uint16_t u[16];
        memcpy(t, x + i, (n - i) * 4);
        __m256i p = _mm256_packus_epi32(bf16_round8(_mm256_loadu_ps(t)), bf16_round8(_mm256_loadu_ps(t + 8)));
        _mm256_storeu_si256((__m256i *)(void *)u, _mm256_permute4x64_epi64(p, 0xD8));
        memcpy(y + i, u, (n - i) * 2);
    }
}

static void a_from_bf16(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(x + i)));
        _mm256_storeu_si256((__m256i *)(void *)(y + i), _mm256_slli_epi32(v, 16));
    }
    for (; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, 4);
    }
}

static void a_q8_row(const float *x, size_t n, float *d, int8_t *q) {
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0, b = 0;
    for (; i + CODEC_Q8_BLOCK <= n; i += CODEC_Q8_BLOCK, b++) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        __m256i a = _mm256_max_epu32(_mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(v0), absmask),
                                                      _mm256_and_si256(_mm256_castps_si256(v1), absmask)),
                                     _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(v2), absmask),
                                                      _mm256_and_si256(_mm256_castps_si256(v3), absmask)));
        __m128i m = _mm_max_epu32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
        m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
        const uint32_t amax_bits = (uint32_t)_mm_cvtsi128_si32(m);
        if (amax_bits >= 0x7F800000u || amax_bits < CODEC_Q8_TINY) {
            d[b] = amax_bits < CODEC_Q8_TINY ? 0.0f : NAN;
            memset(q + i, 0, CODEC_Q8_BLOCK);
            continue;
        }
        float amax;
        memcpy(&amax, &amax_bits, 4);
        d[b] = amax / 127.0f;
        /* |x * id| <= 127 * (1 + 2^-23): rounds to at most 127, no clamp needed */
        const __m256 id = _mm256_set1_ps(127.0f / amax);
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
        __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        _mm256_storeu_si256((__m256i *)(void *)(q + i), _mm256_permutevar8x32_epi32(p, order));
    }
    if (i < n) codec_q8_block(x + i, n - i, &d[b], q + i);
}

static void a_dq8_row(const int8_t *q, const float *d, size_t n, float *y) {
    size_t i = 0, b = 0;
    for (; i + CODEC_Q8_BLOCK <= n; i += CODEC_Q8_BLOCK, b++) {
        const __m256 s = _mm256_set1_ps(d[b]);
        for (int j = 0; j < CODEC_Q8_BLOCK; j += 8) {
            __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(q + i + j)));
            _mm256_storeu_ps(y + i + j, _mm256_mul_ps(_mm256_cvtepi32_ps(v), s));
        }
    }
    for (; i < n; i++) y[i] = (float)q[i] * d[b];
}

/* codec_fold32 of 8 values and codec_unfold32 (the same steps as codec_internal.h). */
static inline __m256i fold32x8(__m256i v) {
    const __m256i r = _mm256_or_si256(_mm256_slli_epi32(v, 1), _mm256_srli_epi32(v, 31));
    /* the distance from 127 as a signed byte in the top byte, zigzagged there */
    const __m256i d = _mm256_sub_epi32(r, _mm256_set1_epi32(127 << 24));
    const __m256i z = _mm256_xor_si256(_mm256_slli_epi32(_mm256_srli_epi32(d, 24), 25), _mm256_srai_epi32(d, 31));
    return _mm256_blendv_epi8(r, z, _mm256_set1_epi32((int)0xFF000000u)); /* low 3 bytes of r, top of z */
}
static inline __m256i unfold32x8(__m256i v) {
    const __m256i z = _mm256_srli_epi32(v, 24);
    const __m256i d = _mm256_xor_si256(_mm256_srli_epi32(z, 1), _mm256_sub_epi32(_mm256_setzero_si256(),
                                                                                 _mm256_and_si256(z, _mm256_set1_epi32(1))));
    const __m256i r = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFFFF)),
                                      _mm256_slli_epi32(_mm256_add_epi32(d, _mm256_set1_epi32(127)), 24));
    return _mm256_or_si256(_mm256_srli_epi32(r, 1), _mm256_slli_epi32(r, 31));
}
/* codec_fold16 of 16 values and codec_unfold16. */
static inline __m256i fold16x16(__m256i v) {
    const __m256i ff = _mm256_set1_epi16(0xFF);
    const __m256i r = _mm256_or_si256(_mm256_slli_epi16(v, 1), _mm256_srli_epi16(v, 15));
    const __m256i d = _mm256_srai_epi16(_mm256_slli_epi16(_mm256_sub_epi16(_mm256_srli_epi16(r, 8), _mm256_set1_epi16(127)), 8), 8);
    const __m256i z = _mm256_and_si256(_mm256_xor_si256(_mm256_slli_epi16(d, 1), _mm256_srai_epi16(d, 15)), ff);
    return _mm256_or_si256(_mm256_and_si256(r, ff), _mm256_slli_epi16(z, 8));
}
static inline __m256i unfold16x16(__m256i v) {
    const __m256i z = _mm256_srli_epi16(v, 8);
    const __m256i d = _mm256_xor_si256(_mm256_srli_epi16(z, 1), _mm256_sub_epi16(_mm256_setzero_si256(),
                                                                                 _mm256_and_si256(z, _mm256_set1_epi16(1))));
    const __m256i e = _mm256_and_si256(_mm256_add_epi16(d, _mm256_set1_epi16(127)), _mm256_set1_epi16(0xFF));
    const __m256i r = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi16(0xFF)), _mm256_slli_epi16(e, 8));
    return _mm256_or_si256(_mm256_srli_epi16(r, 1), _mm256_slli_epi16(r, 15));
}

/* 32 bytes -> 4 bytes of each of the 8 bit planes at bit[p] + at: movemask takes
 * bit 7 of every byte, then a shift by one brings the next bit up (what crosses
 * from the byte below enters at bit 0 and never climbs to bit 7 within the 7
 * shifts). */
static inline __attribute__((always_inline)) void bits_cut(__m256i v, uint8_t *const bit[8], size_t at) {
    for (int p = 7; p >= 0; p--) {
        const uint32_t m = (uint32_t)_mm256_movemask_epi8(v);
        memcpy(bit[p] + at, &m, 4);
        v = _mm256_slli_epi16(v, 1);
    }
}

/* 4 bytes of each of the 8 bit planes at bit[p] + at -> 32 bytes: each plane's
 * 32 bits spread to one byte each (the mask byte j/8 picked per byte, tested
 * against bit j%8). */
static inline __attribute__((always_inline)) __m256i bits_join(const uint8_t *const bit[8], size_t at) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i out = _mm256_setzero_si256();
    for (int p = 0; p < 8; p++) {
        uint32_t m;
        memcpy(&m, bit[p] + at, 4);
        const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)m), pick), sel);
        out = _mm256_or_si256(out, _mm256_and_si256(_mm256_cmpeq_epi8(v, sel), _mm256_set1_epi8((char)(1 << p))));
    }
    return out;
}

/* Byte j of dword i <-> byte i of dword j in each lane: its own inverse. */
static inline __m256i transpose4x4_bytes(void) {
    return _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14,
                            3, 7, 11, 15);
}

/* The vector loops, 32 values per step, each compiled with and without the fold
 * (always_inline with a constant `fold`); the plane pointers are copied to
 * locals, which the byte stores cannot alias. Return the values done.
 * k = 4: bytes grouped per dword in each lane, dwords ordered so that each
 * quadword holds one plane, then a 4x4 transpose of quadwords across the 4
 * registers gives a register per byte plane, the top one cut on into bit
 * planes. */
static inline __attribute__((always_inline)) size_t cut4(const uint8_t *src, size_t n, bool fold,
                                                         uint8_t *const *dst) {
    const __m256i bytes = transpose4x4_bytes();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint8_t *const d0 = dst[0], *const d1 = dst[1], *const d2 = dst[2];
    uint8_t *const bit[8] = {dst[3], dst[4], dst[5], dst[6], dst[7], dst[8], dst[9], dst[10]};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i *s = (const __m256i *)(const void *)(src + 4 * i);
        __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1);
        __m256i c = _mm256_loadu_si256(s + 2), d = _mm256_loadu_si256(s + 3);
        if (fold) a = fold32x8(a), b = fold32x8(b), c = fold32x8(c), d = fold32x8(d);
        a = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(a, bytes), order);
        b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(b, bytes), order);
        c = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(c, bytes), order);
        d = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(d, bytes), order);
        const __m256i ab_lo = _mm256_unpacklo_epi64(a, b), ab_hi = _mm256_unpackhi_epi64(a, b);
        const __m256i cd_lo = _mm256_unpacklo_epi64(c, d), cd_hi = _mm256_unpackhi_epi64(c, d);
        _mm256_storeu_si256((__m256i *)(void *)(d0 + i), _mm256_permute2x128_si256(ab_lo, cd_lo, 0x20));
        _mm256_storeu_si256((__m256i *)(void *)(d1 + i), _mm256_permute2x128_si256(ab_hi, cd_hi, 0x20));
        _mm256_storeu_si256((__m256i *)(void *)(d2 + i), _mm256_permute2x128_si256(ab_lo, cd_lo, 0x31));
        bits_cut(_mm256_permute2x128_si256(ab_hi, cd_hi, 0x31), bit, i / 8);
    }
    return i;
}

/* k = 2: low and high bytes gathered per lane, then the lanes paired. */
static inline __attribute__((always_inline)) size_t cut2(const uint8_t *src, size_t n, bool fold,
                                                         uint8_t *const *dst) {
    const __m256i bytes = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12,
                                           14, 1, 3, 5, 7, 9, 11, 13, 15);
    uint8_t *const d0 = dst[0];
    uint8_t *const bit[8] = {dst[1], dst[2], dst[3], dst[4], dst[5], dst[6], dst[7], dst[8]};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i *s = (const __m256i *)(const void *)(src + 2 * i);
        __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1);
        if (fold) a = fold16x16(a), b = fold16x16(b);
        a = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(a, bytes), 0xD8);
        b = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(b, bytes), 0xD8);
        _mm256_storeu_si256((__m256i *)(void *)(d0 + i), _mm256_permute2x128_si256(a, b, 0x20));
        bits_cut(_mm256_permute2x128_si256(a, b, 0x31), bit, i / 8);
    }
    return i;
}

static void a_cut(const uint8_t *src, size_t n, int k, bool fold, uint8_t *const *dst) {
    const size_t i = k == 4 ? (fold ? cut4(src, n, true, dst) : cut4(src, n, false, dst))
                            : (fold ? cut2(src, n, true, dst) : cut2(src, n, false, dst));
    codec_cut_range(src, i, n, k, fold, dst);
}

static inline __attribute__((always_inline)) size_t join4(const uint8_t *const *src, size_t n, bool fold,
                                                          uint8_t *dst) {
    const __m256i bytes = transpose4x4_bytes();
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const uint8_t *const s0 = src[0], *const s1 = src[1], *const s2 = src[2];
    const uint8_t *const bit[8] = {src[3], src[4], src[5], src[6], src[7], src[8], src[9], src[10]};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i p0 = _mm256_loadu_si256((const __m256i *)(const void *)(s0 + i));
        const __m256i p1 = _mm256_loadu_si256((const __m256i *)(const void *)(s1 + i));
        const __m256i p2 = _mm256_loadu_si256((const __m256i *)(const void *)(s2 + i));
        const __m256i p3 = bits_join(bit, i / 8);
        const __m256i ab_lo = _mm256_permute2x128_si256(p0, p2, 0x20), cd_lo = _mm256_permute2x128_si256(p0, p2, 0x31);
        const __m256i ab_hi = _mm256_permute2x128_si256(p1, p3, 0x20), cd_hi = _mm256_permute2x128_si256(p1, p3, 0x31);
        __m256i a = _mm256_unpacklo_epi64(ab_lo, ab_hi), b = _mm256_unpackhi_epi64(ab_lo, ab_hi);
        __m256i c = _mm256_unpacklo_epi64(cd_lo, cd_hi), d = _mm256_unpackhi_epi64(cd_lo, cd_hi);
        a = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(a, order), bytes);
        b = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(b, order), bytes);
        c = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(c, order), bytes);
        d = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(d, order), bytes);
        if (fold) a = unfold32x8(a), b = unfold32x8(b), c = unfold32x8(c), d = unfold32x8(d);
        __m256i *out = (__m256i *)(void *)(dst + 4 * i);
        _mm256_storeu_si256(out, a);
        _mm256_storeu_si256(out + 1, b);
        _mm256_storeu_si256(out + 2, c);
        _mm256_storeu_si256(out + 3, d);
    }
    return i;
}

static inline __attribute__((always_inline)) size_t join2(const uint8_t *const *src, size_t n, bool fold,
                                                          uint8_t *dst) {
    const __m256i bytes = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3,
                                           11, 4, 12, 5, 13, 6, 14, 7, 15);
    const uint8_t *const s0 = src[0];
    const uint8_t *const bit[8] = {src[1], src[2], src[3], src[4], src[5], src[6], src[7], src[8]};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i p0 = _mm256_loadu_si256((const __m256i *)(const void *)(s0 + i));
        const __m256i p1 = bits_join(bit, i / 8);
        const __m256i a = _mm256_permute4x64_epi64(_mm256_permute2x128_si256(p0, p1, 0x20), 0xD8);
        const __m256i b = _mm256_permute4x64_epi64(_mm256_permute2x128_si256(p0, p1, 0x31), 0xD8);
        __m256i lo = _mm256_shuffle_epi8(a, bytes), hi = _mm256_shuffle_epi8(b, bytes);
        if (fold) lo = unfold16x16(lo), hi = unfold16x16(hi);
        __m256i *out = (__m256i *)(void *)(dst + 2 * i);
        _mm256_storeu_si256(out, lo);
        _mm256_storeu_si256(out + 1, hi);
    }
    return i;
}

static void a_join(const uint8_t *const *src, size_t n, int k, bool fold, uint8_t *dst) {
    const size_t i = k == 4 ? (fold ? join4(src, n, true, dst) : join4(src, n, false, dst))
                            : (fold ? join2(src, n, true, dst) : join2(src, n, false, dst));
    codec_join_range(src, i, n, k, fold, dst);
}

static uint32_t a_crc32c(uint32_t crc, const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}

const codec_ops codec_ops_avx2 = {a_to_f16, a_from_f16, a_to_bf16, a_from_bf16, a_q8_row,
                                  a_dq8_row, a_cut,      a_join,     a_crc32c};
