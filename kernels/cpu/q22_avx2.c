/* q22_avx2.c - the AVX2 quantized FAST matmul of issue 22's types: Q4_1, Q5_0,
 * Q5_1, IQ4_NL (x32 activations) and IQ4_XS (x256), every token count.
 *
 * Same bits as the scalar reference (ops_scalar.c, q22_fast_dot_row; the float
 * steps are listed in ops_internal.h): per output row, per weight block in
 * increasing order, the exact int32 block dot, then the float step(s), with
 * lane = output row. 8 rows per tile (the last rows of a range, fewer than 8,
 * run the scalar loop); each row's block is unpacked once for up to Q22_NT
 * tokens; more tokens take further passes over the tile while it is in cache.
 * Weights are read in their GGUF layout (nothing repacked).
 *
 * Unpacking, 32 codes per register in element order (low 128-bit half: the low
 * nibbles = elements 0..15, high half: the high nibbles = elements 16..31):
 *  - Q5_0 / Q5_1: bit 4 of element i is bit i of qh: the 4 qh bytes are
 *    spread so that byte i of the register holds qh byte i / 8, tested against
 *    1 << (i % 8), and 0x10 is or-ed in where set;
 *  - IQ4_NL / IQ4_XS: codes become codebook values with one pshufb (16 entries:
 *    one 128-bit table); signed x signed goes through |v| * (sign(v) x), which
 *    cannot saturate (|pair| <= 2 * 127 * 127; no value is 0).
 * Unsigned codes (Q4_1, Q5_0, Q5_1) multiply x directly (|pair| <= 2*31*127);
 * Q5_0's -16 offset is subtracted as 16 * x.sum (exact).
 *
 * Decode reads every weight once: the next tile's bytes are prefetched block by
 * block as ops_gemv_avx2.c does (a tile's 8 rows are one contiguous region).
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "avx2_util.h"
#include "ops_internal.h"

#define Q22_NT AVX2_TILE8_NT /* tokens per pass over a tile */

static inline uint16_t q22_ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 8 fp16 values at p[l] + off (lane l) as floats, exact. */
static inline __m256 q22_half8(const uint8_t *const *p, size_t off) {
    return _mm256_cvtph_ps(_mm_setr_epi16((short)q22_ld16(p[0] + off), (short)q22_ld16(p[1] + off),
                                          (short)q22_ld16(p[2] + off), (short)q22_ld16(p[3] + off),
                                          (short)q22_ld16(p[4] + off), (short)q22_ld16(p[5] + off),
                                          (short)q22_ld16(p[6] + off), (short)q22_ld16(p[7] + off)));
}

/* 16 nibble bytes -> 32 codes 0..15 in element order: the bytes in both
 * halves, the high half shifted by 4, one mask. */
static inline __m256i q22_nibbles(const uint8_t *qs) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)qs));
    return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(15));
}

/* 0x10 in byte i where bit i of the little-endian qh[0..3] is set. */
static inline __m256i q22_high_bits(const uint8_t *qh) {
    uint32_t h;
    memcpy(&h, qh, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                            3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)h), spread), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

static inline __m256i q22_table(void) { /* the IQ4 codebook in both halves */
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)quant_iq4nl_values));
}

/* ------------------------------------------------------------ 32-element types */

/* Rows' 32 weights of one block: codes (Q4_1, Q5_0, Q5_1) or codebook values
 * (IQ4_NL). */
static inline __attribute__((always_inline)) __m256i q22_w32(uint32_t type, const uint8_t *blk) {
    if (type == TENSOR_Q4_1) return q22_nibbles(blk + 4);
    if (type == TENSOR_Q5_0) return _mm256_or_si256(q22_nibbles(blk + 6), q22_high_bits(blk + 2));
    if (type == TENSOR_Q5_1) return _mm256_or_si256(q22_nibbles(blk + 8), q22_high_bits(blk + 4));
    return _mm256_shuffle_epi8(q22_table(), q22_nibbles(blk + 2));
}

static inline __attribute__((always_inline)) void q22_tile32(uint32_t type, const uint8_t *const *rows, int64_t nb,
                                                            const kq8_32 *const *xs, const uint8_t *pf, int nt,
                                                            __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t bb = type == TENSOR_Q4_1 ? sizeof(block_q4_1)
                      : type == TENSOR_Q5_0 ? sizeof(block_q5_0)
                      : type == TENSOR_Q5_1 ? sizeof(block_q5_1)
                                            : sizeof(block_iq4_nl);
    const int affine = type == TENSOR_Q4_1 || type == TENSOR_Q5_1;
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        for (size_t o = 0; o < 8 * bb; o += 64) _mm_prefetch((const char *)pf + 8 * off + o, _MM_HINT_T0);
        __m256i part[Q22_NT][8];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
            const __m256i w = q22_w32(type, rows[i] + off);
            if (type == TENSOR_IQ4_NL) {
                const __m256i aw = _mm256_sign_epi8(w, w);
                _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
                    __m256i x = _mm256_loadu_si256((const void *)xs[t][b].q);
                    part[t][i] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), ones);
                }
            } else {
                _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
                    part[t][i] = _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_loadu_si256((const void *)xs[t][b].q)),
                                                   ones);
            }
        }
        const __m256 dw = q22_half8(rows, off);
        const __m256 mw = affine ? q22_half8(rows, off + 2) : _mm256_setzero_ps();
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const kq8_32 *x = &xs[t][b];
            __m256i is = avx2_reduce8(part[t]);
            if (type == TENSOR_Q5_0) is = _mm256_sub_epi32(is, _mm256_set1_epi32(16 * x->sum));
            const __m256 dx = _mm256_set1_ps(x->d);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(is), acc[t]);
            if (affine) acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(mw, dx), _mm256_set1_ps((float)x->sum), acc[t]);
        }
    }
}

/* ------------------------------------------------------------ IQ4_XS */

/* One row's exact int32 block sum sum_j (ls_j - 32) * dot_j, spread over 8
 * lanes, per token into r[t]. */
static inline __attribute__((always_inline)) void q22_iq4xs_row(const uint8_t *blk, const kq8_256 *const *xs,
                                                               int64_t b, int nt, __m256i *r) {
    const __m256i table = q22_table();
    /* the 8 six-bit scales ls_j as bytes: nibble j of scales_l, bits 2j..2j+1 of scales_h on top */
    uint32_t sl;
    memcpy(&sl, blk + 4, 4);
    uint64_t lo = sl, hi = q22_ld16(blk + 2);
    lo = (lo | lo << 16) & 0x0000ffff0000ffffull, lo = (lo | lo << 8) & 0x00ff00ff00ff00ffull; /* byte i -> 2i */
    lo = (lo & 0x000f000f000f000full) | (lo & 0x00f000f000f000f0ull) << 4;                     /* nibbles -> bytes */
    hi = (hi | hi << 24) & 0x000000ff000000ffull, hi = (hi | hi << 12) & 0x000f000f000f000full;
    hi = (hi | hi << 6) & 0x0303030303030303ull;                                                /* 2-bit groups -> bytes */
    const __m256i ls = _mm256_broadcastsi128_si256(
        _mm_sub_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)(lo | hi << 4))), _mm_set1_epi16(32)));
    const uint8_t *qs = blk + 8;
    for (int t = 0; t < nt; t++) r[t] = _mm256_setzero_si256();
    _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
        const __m256i s = _mm256_shuffle_epi8(ls, _mm256_loadu_si256((const void *)avx2_i16_all[j])); /* ls_j - 32 */
        const __m256i w = _mm256_shuffle_epi8(table, q22_nibbles(qs + 16 * j)), aw = _mm256_sign_epi8(w, w);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            __m256i x = _mm256_loadu_si256((const void *)(xs[t][b].q + 32 * j));
            r[t] = _mm256_add_epi32(r[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), s));
        }
    }
}

static inline __attribute__((always_inline)) void q22_tile_iq4xs(const uint8_t *const *rows, int64_t nb,
                                                                const kq8_256 *const *xs, const uint8_t *pf, int nt,
                                                                __m256 *acc) {
    const size_t bb = sizeof(block_iq4_xs);
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        for (size_t o = 0; o < 8 * bb; o += 64) _mm_prefetch((const char *)pf + 8 * off + o, _MM_HINT_T0);
        __m256i part[Q22_NT][8], r[Q22_NT];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
            q22_iq4xs_row(rows[i] + off, xs, b, nt, r);
            for (int t = 0; t < nt; t++) part[t][i] = r[t];
        }
        const __m256 dw = q22_half8(rows, off);
        for (int t = 0; t < nt; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xs[t][b].d)),
                                     _mm256_cvtepi32_ps(avx2_reduce8(part[t])), acc[t]);
    }
}

/* ------------------------------------------------------------ dispatch */

#define Q22_TILE_ARGS const uint8_t *const *rows, int64_t nb, const void *const *xv, const uint8_t *pf, __m256 *acc
typedef avx2_tile8_fn q22_tile_fn;

/* name_T_N: the tile of type T with a constant token count N, so its
 * accumulators stay in registers */
#define Q22_T32(T, N)                                                                                              \
    static void q22_##T##_##N(Q22_TILE_ARGS) {                                                                     \
        q22_tile32(TENSOR_##T, rows, nb, (const kq8_32 *const *)xv, pf, N, acc);                                  \
    }
#define Q22_TXS(N)                                                                                                 \
    static void q22_IQ4_XS_##N(Q22_TILE_ARGS) { q22_tile_iq4xs(rows, nb, (const kq8_256 *const *)xv, pf, N, acc); }
#define Q22_ALL(M, ...) M(__VA_ARGS__ 1) M(__VA_ARGS__ 2) M(__VA_ARGS__ 3) M(__VA_ARGS__ 4)
Q22_ALL(Q22_T32, Q4_1, )
Q22_ALL(Q22_T32, Q5_0, )
Q22_ALL(Q22_T32, Q5_1, )
Q22_ALL(Q22_T32, IQ4_NL, )
Q22_ALL(Q22_TXS, )
#undef Q22_ALL
#undef Q22_T32
#undef Q22_TXS

static const struct {
    uint32_t type;
    q22_tile_fn tile[Q22_NT]; /* [nt - 1] */
} q22_tiles[] = {
    {TENSOR_Q4_1, {q22_Q4_1_1, q22_Q4_1_2, q22_Q4_1_3, q22_Q4_1_4}},
    {TENSOR_Q5_0, {q22_Q5_0_1, q22_Q5_0_2, q22_Q5_0_3, q22_Q5_0_4}},
    {TENSOR_Q5_1, {q22_Q5_1_1, q22_Q5_1_2, q22_Q5_1_3, q22_Q5_1_4}},
    {TENSOR_IQ4_NL, {q22_IQ4_NL_1, q22_IQ4_NL_2, q22_IQ4_NL_3, q22_IQ4_NL_4}},
    {TENSOR_IQ4_XS, {q22_IQ4_XS_1, q22_IQ4_XS_2, q22_IQ4_XS_3, q22_IQ4_XS_4}},
};

int kern_q22_avx2_supports(uint32_t type) {
    for (size_t i = 0; i < sizeof q22_tiles / sizeof q22_tiles[0]; i++)
        if (q22_tiles[i].type == type) return 1;
    return 0;
}

void kern_mm_rows_q22_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const q22_tile_fn *tile = NULL;
    for (size_t i = 0; i < sizeof q22_tiles / sizeof q22_tiles[0]; i++)
        if (q22_tiles[i].type == w->type) tile = q22_tiles[i].tile;
    if (!tile || j->prec != KERN_FAST || !j->xq) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    const int64_t nb = w->cols / tensor_type_get(w->type)->block_elems;
    avx2_tile8_rows(j, r0, r1, tile, (size_t)nb * (kern_mm_uses_x256(w->type) ? sizeof(kq8_256) : sizeof(kq8_32)));
}
