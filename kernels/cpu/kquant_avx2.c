/* kquant_avx2.c - the AVX2 quantized FAST matmul for Q2_K, Q3_K and Q5_K
 * weights, every token count: kern_mm_rows_kq_avx2, picked by avx2_mm_rows (the
 * AVX-512 level has its own 16-row tiles, kquant_avx512.c, and runs these for
 * its last rows). For prompts these tiles, 4 tokens per unpacked block,
 * measured faster (Q5_K in cache, 1 CPU: 23 GB x tokens/s at 8 tokens) than the
 * former row-at-a-time kernels (14 at 32 tokens).
 *
 * The scheme of ops_gemv_avx2.c: 8 rows per tile, lane = output row; each
 * row's block is unpacked once (codes, sub-block scales as int16 vectors, mins)
 * for up to KT_NT tokens, each token with its own accumulators; more tokens take
 * further passes over the tile while it is in cache; each block step prefetches
 * the matching bytes of the next tile (a tile's 8 rows are one contiguous
 * region; the loop over tiles and passes is avx2_tile8_rows); the last rows
 * of a range, fewer than 8, run the scalar loop. Same bits as the scalar
 * reference (kern_kq_dot_row): per output row, per block in increasing order, the exact int32 isum (and ism), then the float
 * step(s) of ops_internal.h; integer sums are exact, so any grouping of them
 * gives the scalar values.
 *
 * Per row and block, 8 registers of 32 unsigned codes in element order
 * (register m = elements 32m .. 32m+31), each multiplied by the token's q with
 * vpmaddubsw and by its scales with vpmaddwd:
 *  - Q5_K: codes 0..31 (nibble | qh bit m << 4, the bit moved by one 16-bit
 *    shift), register m = sub-block m: scale sc_m in all 16 int16 lanes; ism =
 *    sum m_j bsum32_j. Scales and mins (the Q4_K packing) come out of the 12
 *    bytes with 32-bit integer shifts and masks.
 *  - Q2_K: codes 0..3, register m = sub-blocks 2m | 2m+1: [sc_2m x 8 | sc_2m+1
 *    x 8]; ism = sum m_j bsum16_j.
 *  - Q3_K: codes q + 4 = 0..7 (hmask bit m << 2), scales s_j = c_j - 32 as
 *    Q2_K's; isum = sum s_j dotu_j - 4 sum s_j bsum16_j, the offset subtracted
 *    from the row's lanes before the one reduction.
 * |vpmaddubsw pair| <= 2 * 31 * 127: no saturation.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "avx2_util.h"
#include "ops_internal.h"

#define KT_NT AVX2_TILE8_NT /* tokens per pass over a tile */

static inline uint16_t kt_ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 8 fp16 values at p[l] + off (lane l) as floats, exact. */
static inline __attribute__((always_inline)) __m256 kt_half8(const uint8_t *const *p, size_t off) {
    uint64_t lo = kt_ld16(p[0] + off) | (uint64_t)kt_ld16(p[1] + off) << 16 | (uint64_t)kt_ld16(p[2] + off) << 32 |
                  (uint64_t)kt_ld16(p[3] + off) << 48;
    uint64_t hi = kt_ld16(p[4] + off) | (uint64_t)kt_ld16(p[5] + off) << 16 | (uint64_t)kt_ld16(p[6] + off) << 32 |
                  (uint64_t)kt_ld16(p[7] + off) << 48;
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* v's bit `from` of every byte moved to bit `to` (the other bits: garbage) */
static inline __attribute__((always_inline)) __m256i kt_bit_to(__m256i v, int from, int to) {
    return from < to ? _mm256_slli_epi16(v, to - from) : from > to ? _mm256_srli_epi16(v, from - to) : v;
}

/* pshufb masks on int16 vectors (the same 8 values in both 128-bit halves):
 * avx2_i16_all[k]: value k in all 16 lanes; kt_pair[k]: [value 2k x 8 | value 2k+1 x 8] */
#define KT_PAIR(k) {4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1,       \
                    4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1,       \
                    4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2,   \
                    4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3,   \
                    4 * (k) + 2, 4 * (k) + 3}
static const int8_t kt_pair[4][32] = {KT_PAIR(0), KT_PAIR(1), KT_PAIR(2), KT_PAIR(3)};
#undef KT_PAIR

/* The scale vector of register m for the 16-element types: sc16 = the 16 int16
 * scales (low half 0..7, high half 8..15). */
static inline __attribute__((always_inline)) __m256i kt_scale16(__m256i sc16, int m) {
    /* the immediate must be a constant for clang (the fuzz build): one per half */
    __m256i h = m < 4 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
    return _mm256_shuffle_epi8(h, _mm256_loadu_si256((const void *)kt_pair[m % 4]));
}

/* r[t] += the register's scaled dot with token t's q at element 32m */
static inline __attribute__((always_inline)) void kt_dot(__m256i q, __m256i s, const kq8_256 *const *x, int64_t b,
                                                        int m, int nt, __m256i *r) {
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const void *)(x[t][b].q + 32 * m)));
        r[t] = _mm256_add_epi32(r[t], _mm256_madd_epi16(p, s));
    }
}

/* One row's block: r[t] = its exact isum spread over 8 lanes, mn[t] = its ism
 * spread over 8 lanes (Q2_K, Q5_K; untouched for Q3_K). */
static inline __attribute__((always_inline)) void kt_row(uint32_t type, const uint8_t *blk, const kq8_256 *const *x,
                                                        int64_t b, int nt, __m256i *r, __m256i *mn) {
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
    for (int t = 0; t < nt; t++) r[t] = _mm256_setzero_si256();
    if (type == TENSOR_Q5_K) {
        const block_q5_K *w = (const block_q5_K *)blk;
        uint32_t u[3];
        memcpy(u, w->scales, 12);
        const uint64_t sc = (u[0] & 0x3f3f3f3fu) |
                            (uint64_t)((u[2] & 0x0f0f0f0fu) | ((u[0] >> 6) & 0x03030303u) << 4) << 32;
        const uint64_t mv = (u[1] & 0x3f3f3f3fu) |
                            (uint64_t)(((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 6) & 0x03030303u) << 4) << 32;
        const __m256i scb = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mv)); /* m0..7, then 8 zeros */
        for (int t = 0; t < nt; t++)
            mn[t] = _mm256_madd_epi16(mn16, _mm256_castsi128_si256(_mm_loadu_si128((const void *)x[t][b].bsum32)));
        const __m256i qh = _mm256_loadu_si256((const void *)w->qh), b4 = _mm256_set1_epi8(0x10);
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            const __m256i qs = _mm256_loadu_si256((const void *)(w->qs + 32 * c));
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(qs, m15), _mm256_and_si256(kt_bit_to(qh, 2 * c, 4), b4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 4), m15),
                                               _mm256_and_si256(kt_bit_to(qh, 2 * c + 1, 4), b4));
            kt_dot(lo, _mm256_shuffle_epi8(scb, _mm256_loadu_si256((const void *)avx2_i16_all[2 * c])), x, b, 2 * c, nt, r);
            kt_dot(hi, _mm256_shuffle_epi8(scb, _mm256_loadu_si256((const void *)avx2_i16_all[2 * c + 1])), x, b, 2 * c + 1, nt, r);
        }
        return;
    }
    const uint8_t *qsp = type == TENSOR_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
    const __m256i q0 = _mm256_loadu_si256((const void *)qsp), q1 = _mm256_loadu_si256((const void *)(qsp + 32));
    __m256i sc16, hm = _mm256_setzero_si256();
    if (type == TENSOR_Q2_K) {
        const __m128i sm = _mm_loadu_si128((const void *)((const block_q2_K *)blk)->scales);
        sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(15)));
        const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(15)));
        for (int t = 0; t < nt; t++) mn[t] = _mm256_madd_epi16(mn16, _mm256_loadu_si256((const void *)x[t][b].bsum16));
    } else {
        const block_q3_K *w = (const block_q3_K *)blk;
        uint32_t a[3];
        memcpy(a, w->scales, 12);
        /* byte s of the 16: the low 4 bits from nibble s of bytes 0..7, the top 2 from byte 8 + s % 4, bits 2 (s / 4) */
        const uint32_t m2 = 0x03030303u, m4 = 0x0f0f0f0fu;
        const uint64_t lo = ((a[0] & m4) | ((a[2] & m2) << 4)) | (uint64_t)((a[1] & m4) | (((a[2] >> 2) & m2) << 4)) << 32;
        const uint64_t hi = (((a[0] >> 4) & m4) | (((a[2] >> 4) & m2) << 4)) |
                            (uint64_t)(((a[1] >> 4) & m4) | (((a[2] >> 6) & m2) << 4)) << 32;
        const __m128i c = _mm_sub_epi8(_mm_set_epi64x((long long)hi, (long long)lo), _mm_set1_epi8(32));
        sc16 = _mm256_cvtepi8_epi16(c);
        for (int t = 0; t < nt; t++) /* -4 sum_j s_j bsum16_j */
            r[t] = _mm256_sub_epi32(r[t], _mm256_slli_epi32(
                                              _mm256_madd_epi16(sc16, _mm256_loadu_si256((const void *)x[t][b].bsum16)), 2));
        hm = _mm256_loadu_si256((const void *)w->hmask);
    }
    _Pragma("GCC unroll 8") for (int m = 0; m < 8; m++) {
        __m256i q = _mm256_and_si256(_mm256_srli_epi16(m < 4 ? q0 : q1, 2 * (m % 4)), m3);
        if (type == TENSOR_Q3_K) q = _mm256_or_si256(q, _mm256_and_si256(kt_bit_to(hm, m, 2), _mm256_set1_epi8(4)));
        kt_dot(q, kt_scale16(sc16, m), x, b, m, nt, r);
    }
}

/* Tile of 8 rows (rows[i] = row i's data) for nt tokens (x[t] = token t's
 * quantized row): acc[t] lane i = the row's float accumulator; pf = the start
 * of the next tile's region (prefetched), or the tile itself on later passes. */
static inline __attribute__((always_inline)) void kt_tile(uint32_t type, const uint8_t *const *rows, int64_t nb,
                                                         const kq8_256 *const *x, const uint8_t *pf, int nt,
                                                         __m256 *acc) {
    const size_t bb = type == TENSOR_Q5_K ? sizeof(block_q5_K) : type == TENSOR_Q3_K ? sizeof(block_q3_K)
                                                                                     : sizeof(block_q2_K);
    const size_t doff = type == TENSOR_Q5_K ? offsetof(block_q5_K, d)
                        : type == TENSOR_Q3_K ? offsetof(block_q3_K, d)
                                              : offsetof(block_q2_K, d);
    const size_t moff = type == TENSOR_Q5_K ? offsetof(block_q5_K, dmin) : offsetof(block_q2_K, dmin);
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        for (size_t o = 0; o < 8 * bb; o += 64) _mm_prefetch((const char *)pf + 8 * off + o, _MM_HINT_T0);
        __m256i part[KT_NT][8], mins[KT_NT][8], r[KT_NT], mn[KT_NT];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
            kt_row(type, rows[i] + off, x, b, nt, r, mn);
            for (int t = 0; t < nt; t++) {
                part[t][i] = r[t];
                if (type != TENSOR_Q3_K) mins[t][i] = mn[t];
            }
        }
        const __m256 dw = kt_half8(rows, off + doff);
        const __m256 dm = type != TENSOR_Q3_K ? kt_half8(rows, off + moff) : _mm256_setzero_ps();
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const __m256 dx = _mm256_set1_ps(x[t][b].d);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(avx2_reduce8(part[t])), acc[t]);
            if (type != TENSOR_Q3_K) /* fmaf(-(dmin * d_x), ism, acc): the negation is exact */
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(avx2_reduce8(mins[t])), acc[t]);
        }
    }
}

/* ------------------------------------------------------------ dispatch */

#define KT_ARGS const uint8_t *const *rows, int64_t nb, const void *const *x, const uint8_t *pf, __m256 *acc
typedef avx2_tile8_fn kt_tile_fn;

/* kt_T_N: the tile of type T with a constant token count N, so its accumulators stay in registers */
#define KT_FN(T, N) \
    static void kt_##T##_##N(KT_ARGS) { kt_tile(TENSOR_##T, rows, nb, (const kq8_256 *const *)x, pf, N, acc); }
#define KT_ALLN(T) KT_FN(T, 1) KT_FN(T, 2) KT_FN(T, 3) KT_FN(T, 4)
KT_ALLN(Q2_K)
KT_ALLN(Q3_K)
KT_ALLN(Q5_K)
#undef KT_ALLN
#undef KT_FN

static const struct {
    uint32_t type;
    kt_tile_fn tile[KT_NT]; /* [nt - 1] */
} kt_tiles[] = {
    {TENSOR_Q2_K, {kt_Q2_K_1, kt_Q2_K_2, kt_Q2_K_3, kt_Q2_K_4}},
    {TENSOR_Q3_K, {kt_Q3_K_1, kt_Q3_K_2, kt_Q3_K_3, kt_Q3_K_4}},
    {TENSOR_Q5_K, {kt_Q5_K_1, kt_Q5_K_2, kt_Q5_K_3, kt_Q5_K_4}},
};

void kern_mm_rows_kq_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const kt_tile_fn *tile = NULL;
    for (size_t i = 0; i < sizeof kt_tiles / sizeof kt_tiles[0]; i++)
        if (kt_tiles[i].type == w->type) tile = kt_tiles[i].tile;
    if (!tile || j->prec != KERN_FAST || !j->xq) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    avx2_tile8_rows(j, r0, r1, tile, (size_t)(w->cols / 256) * sizeof(kq8_256));
}
