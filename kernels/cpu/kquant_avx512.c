/* kquant_avx512.c - the AVX-512 level's quantized FAST matmul for Q2_K, Q3_K
 * and Q5_K weights, every token count: kern_mm_rows_kq_avx512, picked by
 * avx512_mm_rows. It reads the GGUF blocks as they are (no repacked copy).
 * Same bits as the scalar reference (kern_kq_dot_row): per output row, per
 * block in increasing order, the exact int32 isum (and ism), then the float
 * step(s) of ops_internal.h; the integer sums are exact, so any grouping of
 * them gives the scalar values.
 *
 * Tiles of 16 rows, lane = output row in the float epilogue. Each row's block
 * is unpacked once for up to KZ_NT tokens (more tokens take further passes over
 * the tile while it is in cache); each block step prefetches the matching bytes
 * of the next tile (16 rows are one contiguous region) into L2: into L1 (T0),
 * as the 8-row AVX2 tiles do, a 16-row tile ran at half speed (Q5_K 5.5
 * against 11-12.5 GB/s of weights per CPU-second). Per row and block:
 *  - 4 registers of 64 unsigned codes in element order (register k = elements
 *    64k .. 64k+63): one 32-byte group of qs broadcast to both halves, shifted
 *    per half (vpsrlvw) and masked; the high bit of Q3_K (hmask) and Q5_K (qh)
 *    is a mask register (vptestmb of the 32 bytes broadcast) added in with a
 *    masked byte add. Codes: Q2_K 0..3, Q3_K q + 4 = 0..7, Q5_K 0..31.
 *  - vpmaddubsw with the token's q (contiguous: no rearranging), then vpdpwssd
 *    with the sub-block scales as int16 (one vpermw of the block's 16 or 8
 *    scales per register). |vpmaddubsw pair| <= 2 * 31 * 127: no saturation.
 *  - the second sum m (vpmaddwd of int16 words with the activation block sums):
 *    Q2_K, Q5_K: ism = sum_j min_j bsum_j; Q3_K: sum_j s_j bsum16_j, and isum =
 *    sum_j s_j dotu_j - 4 m (the codes' offset; s_j = c_j - 32).
 * The row's isum partials (16 lanes folded to 8) and m partials (8) share one
 * register; 16 of them reduce to lane = row vectors with in-lane shuffles and
 * adds (kz_pair), then the epilogue runs once per block for the 16 rows (d and
 * dmin fetched with one gather).
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "ops_internal.h"

#define KZ_NT 4 /* tokens per pass over a tile */
#define KZ_ROWS 16

/* [a x 16 words | b x 16 words] */
static inline __m512i kz_w2(short a, short b) {
    return _mm512_inserti64x4(_mm512_set1_epi16(a), _mm256_set1_epi16(b), 1);
}

/* [a x 32 bytes | b x 32 bytes] */
static inline __m512i kz_b2(char a, char b) {
    return _mm512_inserti64x4(_mm512_set1_epi8(a), _mm256_set1_epi8(b), 1);
}

/* The 32 bytes at p in both halves. */
static inline __m512i kz_bcast32(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const void *)p));
}

/* vpermw index: sub-block scale words of register k. 32-element sub-blocks
 * (Q5_K): [2k x 16 | 2k+1 x 16]; 16-element ones: [4k | 4k+1 | 4k+2 | 4k+3] x 8. */
static inline __m512i kz_sidx(int sub32, int k) {
    if (sub32) return kz_w2((short)(2 * k), (short)(2 * k + 1));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_inserti128_si256(
                                  _mm256_set1_epi16((short)(4 * k)), _mm_set1_epi16((short)(4 * k + 1)), 1)),
                              _mm256_inserti128_si256(_mm256_set1_epi16((short)(4 * k + 2)),
                                                      _mm_set1_epi16((short)(4 * k + 3)), 1),
                              1);
}

/* Per 128-bit lane: [a0+a1, a2+a3, b0+b1, b2+b3] (exact int32 adds). */
static inline __m512i kz_pair(__m512i a, __m512i b) {
    const __m512 fa = _mm512_castsi512_ps(a), fb = _mm512_castsi512_ps(b);
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(fa, fb, 0x88)),
                            _mm512_castps_si512(_mm512_shuffle_ps(fa, fb, 0xDD)));
}

/* pshufb / shift / mask tables of the scale unpacking (int16 words; pshufb
 * index 0x80 gives 0). Q5_K (the Q4_K packing of 12 bytes s): words 0..7 the
 * scales, 8..15 the mins; sc_j = s[j] & 63 (j < 4), (s[j+4] & 15) | (s[j-4] >>
 * 6) << 4; m_j = s[j+4] & 63 (j < 4), (s[j+4] >> 4) | (s[j] >> 6) << 4: word =
 * (A >> shA) where C, else B >> 2 (bits 4, 5 = the byte's bits 6, 7).
 * Q3_K: c_j = lo4 | hi2 << 4 with lo4 = nibble j of bytes 0..7 and hi2 = bits
 * 2 (j / 4) of byte 8 + j % 4: A = byte j % 8 >> (j < 8 ? 0 : 4), B = that
 * byte << 8 >> (4 + 2 (j / 4)), masked to bits 4, 5. */
#define Z 0x80
static const uint8_t kz_q5k_ia[32] = {0, Z, 1, Z, 2, Z, 3, Z, 8, Z, 9, Z, 10, Z, 11, Z,
                                      4, Z, 5, Z, 6, Z, 7, Z, 8, Z, 9, Z, 10, Z, 11, Z};
static const uint8_t kz_q5k_ib[32] = {Z, Z, Z, Z, Z, Z, Z, Z, 0, Z, 1, Z, 2, Z, 3, Z,
                                      Z, Z, Z, Z, Z, Z, Z, Z, 4, Z, 5, Z, 6, Z, 7, Z};
static const int16_t kz_q5k_sh[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4};
static const int16_t kz_q5k_c[16] = {63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15};
static const uint8_t kz_q3k_ia[32] = {0, Z, 1, Z, 2, Z, 3, Z, 4, Z, 5, Z, 6, Z, 7, Z,
                                      0, Z, 1, Z, 2, Z, 3, Z, 4, Z, 5, Z, 6, Z, 7, Z};
static const uint8_t kz_q3k_ib[32] = {Z, 8, Z, 9, Z, 10, Z, 11, Z, 8, Z, 9, Z, 10, Z, 11,
                                      Z, 8, Z, 9, Z, 10, Z, 11, Z, 8, Z, 9, Z, 10, Z, 11};
static const int16_t kz_q3k_sha[16] = {0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4};
static const int16_t kz_q3k_shb[16] = {4, 4, 4, 4, 6, 6, 6, 6, 8, 8, 8, 8, 10, 10, 10, 10};
#undef Z
#define KZ_LD256(a) _mm256_loadu_si256((const void *)(a))

/* Q5_K's 8 scales (words 0..7) and 8 mins (words 8..15), 0..63. */
static inline __m256i kz_q5k_scales(const uint8_t *s12) {
    const __m256i S = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)s12)); /* + 4 bytes of qh */
    const __m256i A = _mm256_srlv_epi16(_mm256_shuffle_epi8(S, KZ_LD256(kz_q5k_ia)), KZ_LD256(kz_q5k_sh));
    const __m256i B = _mm256_srli_epi16(_mm256_shuffle_epi8(S, KZ_LD256(kz_q5k_ib)), 2);
    return _mm256_ternarylogic_epi32(A, B, KZ_LD256(kz_q5k_c), 0xE4); /* c ? a : b */
}

/* Q3_K's 16 scales s_j = c_j - 32 as int16. The 12 bytes end 2 bytes before
 * the block does: a 16-byte load would read past it, so 8 + 4 bytes. */
static inline __m256i kz_q3k_scales(const uint8_t *s12) {
    uint32_t hi;
    memcpy(&hi, s12 + 8, 4);
    const __m256i S = _mm256_broadcastsi128_si256(_mm_insert_epi32(_mm_loadl_epi64((const void *)s12), (int)hi, 2));
    const __m256i A = _mm256_srlv_epi16(_mm256_shuffle_epi8(S, KZ_LD256(kz_q3k_ia)), KZ_LD256(kz_q3k_sha));
    const __m256i B = _mm256_and_si256(_mm256_srlv_epi16(_mm256_shuffle_epi8(S, KZ_LD256(kz_q3k_ib)), KZ_LD256(kz_q3k_shb)),
                                       _mm256_set1_epi16(0x30));
    return _mm256_sub_epi16(_mm256_ternarylogic_epi32(A, B, _mm256_set1_epi16(15), 0xE4), _mm256_set1_epi16(32));
}

/* One row's block for nt tokens (xb[t] = token t's block): V[t] = [8 lanes of
 * isum partials | 8 lanes of m partials] (see the file comment). bs[t] (Q5_K):
 * [0 x 8 | bsum32] as int16. */
static inline __attribute__((always_inline)) void kz_row(uint32_t type, const uint8_t *blk,
                                                        const kq8_256 *const *xb, const __m256i *bs, int nt,
                                                        __m512i *V) {
    __m512i code[4], scw[4];
    __m256i mw;
    if (type == TENSOR_Q5_K) {
        const block_q5_K *w = (const block_q5_K *)blk;
        const __m256i w16 = kz_q5k_scales(w->scales); /* [sc0..7 | m0..7] */
        mw = w16;
        const __m512i H = kz_bcast32(w->qh), sh = kz_w2(0, 4), m15 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            scw[k] = _mm512_permutexvar_epi16(kz_sidx(1, k), _mm512_castsi256_si512(w16));
            const __m512i n = _mm512_and_si512(_mm512_srlv_epi16(kz_bcast32(w->qs + 32 * k), sh), m15);
            const __mmask64 hb = _mm512_test_epi8_mask(H, kz_b2((char)(1 << (2 * k)), (char)(1 << (2 * k + 1))));
            code[k] = _mm512_mask_add_epi8(n, hb, n, b4);
        }
    } else {
        const uint8_t *qs = type == TENSOR_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
        __m256i sw;
        if (type == TENSOR_Q2_K) {
            const __m256i S = _mm256_cvtepu8_epi16(_mm_loadu_si128((const void *)((const block_q2_K *)blk)->scales));
            sw = _mm256_and_si256(S, _mm256_set1_epi16(15));
            mw = _mm256_srli_epi16(S, 4);
        } else {
            sw = kz_q3k_scales(((const block_q3_K *)blk)->scales);
            mw = sw;
        }
        const __m512i m3 = _mm512_set1_epi8(3);
        const __m512i Z0 = kz_bcast32(qs), Z1 = kz_bcast32(qs + 32);
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            scw[k] = _mm512_permutexvar_epi16(kz_sidx(0, k), _mm512_castsi256_si512(sw));
            code[k] = _mm512_and_si512(_mm512_srlv_epi16(k < 2 ? Z0 : Z1, kz_w2((short)(4 * (k % 2)), (short)(4 * (k % 2) + 2))), m3);
        }
        if (type == TENSOR_Q3_K) {
            const __m512i H = kz_bcast32(((const block_q3_K *)blk)->hmask), b2 = _mm512_set1_epi8(4);
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                const __mmask64 hb = _mm512_test_epi8_mask(H, kz_b2((char)(1 << (2 * k)), (char)(1 << (2 * k + 1))));
                code[k] = _mm512_mask_add_epi8(code[k], hb, code[k], b2);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        const int8_t *xq = xb[t]->q;
        __m512i a = _mm512_madd_epi16(_mm512_maddubs_epi16(code[0], _mm512_loadu_si512((const void *)xq)), scw[0]);
        _Pragma("GCC unroll 3") for (int k = 1; k < 4; k++)
            a = _mm512_dpwssd_epi32(a, _mm512_maddubs_epi16(code[k], _mm512_loadu_si512((const void *)(xq + 64 * k))),
                                    scw[k]);
        const __m256i f = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
        const __m256i m = _mm256_madd_epi16(
            mw, type == TENSOR_Q5_K ? bs[t] : _mm256_loadu_si256((const void *)xb[t]->bsum16));
        V[t] = _mm512_inserti64x4(_mm512_castsi256_si512(f), m, 1);
    }
}

/* Tile of 16 rows (row i at tile + i * rb, nb blocks) for nt tokens (x[t] =
 * token t's quantized row): acc[t] lane i = row i's float accumulator; pf = the
 * start of the next tile's region (prefetched), or the tile itself on later
 * passes; voff = lane i: i * rb + the offset of the dword read for d (and dmin). */
static inline __attribute__((always_inline)) void kz_tile(uint32_t type, const uint8_t *tile, size_t rb, int64_t nb,
                                                         const kq8_256 *const *x, const uint8_t *pf, __m512i voff,
                                                         int nt, __m512 *acc) {
    const size_t bb = type == TENSOR_Q5_K ? sizeof(block_q5_K) : type == TENSOR_Q3_K ? sizeof(block_q3_K)
                                                                                     : sizeof(block_q2_K);
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        for (size_t o = 0; o < KZ_ROWS * bb; o += 64) _mm_prefetch((const char *)pf + KZ_ROWS * off + o, _MM_HINT_T1);
        const kq8_256 *xb[KZ_NT];
        __m256i bs[KZ_NT];
        for (int t = 0; t < nt; t++) {
            xb[t] = &x[t][b];
            if (type == TENSOR_Q5_K)
                bs[t] = _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const void *)xb[t]->bsum32), 1);
        }
        const uint8_t *blk = tile + off;
        __m512i X[4][KZ_NT];
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            __m512i W[2][KZ_NT];
            _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++) {
                __m512i V0[KZ_NT], V1[KZ_NT];
                kz_row(type, blk + (size_t)(4 * q + 2 * p) * rb, xb, bs, nt, V0);
                kz_row(type, blk + (size_t)(4 * q + 2 * p + 1) * rb, xb, bs, nt, V1);
                for (int t = 0; t < nt; t++) W[p][t] = kz_pair(V0[t], V1[t]);
            }
            for (int t = 0; t < nt; t++) X[q][t] = kz_pair(W[0][t], W[1][t]);
        }
        /* d (and dmin) of the 16 rows: Q2_K, Q5_K: the dword {d, dmin}; Q3_K: d
         * is the dword's high half (its last 2 bytes end the block) */
        const __m512i g = _mm512_i32gather_epi32(voff, (const void *)blk, 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(type == TENSOR_Q3_K ? _mm512_srli_epi32(g, 16) : g));
        const __m512 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const __m512i T01 = _mm512_add_epi32(_mm512_shuffle_i32x4(X[0][t], X[1][t], 0x88),
                                                 _mm512_shuffle_i32x4(X[0][t], X[1][t], 0xDD));
            const __m512i T23 = _mm512_add_epi32(_mm512_shuffle_i32x4(X[2][t], X[3][t], 0x88),
                                                 _mm512_shuffle_i32x4(X[2][t], X[3][t], 0xDD));
            __m512i I = _mm512_shuffle_i32x4(T01, T23, 0x88); /* lane i: row i's isum */
            const __m512i M = _mm512_shuffle_i32x4(T01, T23, 0xDD);
            const __m512 dx = _mm512_set1_ps(xb[t]->d);
            if (type == TENSOR_Q3_K) I = _mm512_sub_epi32(I, _mm512_slli_epi32(M, 2));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(I), acc[t]);
            if (type != TENSOR_Q3_K) /* fmaf(-(dmin * d_x), ism, acc): the negation is exact */
                acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(M), acc[t]);
        }
    }
}

/* ------------------------------------------------------------ dispatch */

#define KZ_ARGS const uint8_t *tile, size_t rb, int64_t nb, const kq8_256 *const *x, const uint8_t *pf, __m512i voff, \
                __m512 *acc
typedef void (*kz_tile_fn)(KZ_ARGS);

/* kz_T_N: the tile of type T with a constant token count N, so its accumulators stay in registers */
#define KZ_FN(T, N) \
    static void kz_##T##_##N(KZ_ARGS) { kz_tile(TENSOR_##T, tile, rb, nb, x, pf, voff, N, acc); }
#define KZ_ALLN(T) KZ_FN(T, 1) KZ_FN(T, 2) KZ_FN(T, 3) KZ_FN(T, 4)
KZ_ALLN(Q2_K)
KZ_ALLN(Q3_K)
KZ_ALLN(Q5_K)
#undef KZ_ALLN
#undef KZ_FN

static const struct {
    uint32_t type;
    size_t doff; /* the dword gathered for d (and dmin) */
    kz_tile_fn tile[KZ_NT]; /* [nt - 1] */
} kz_tiles[] = {
    {TENSOR_Q2_K, offsetof(block_q2_K, d), {kz_Q2_K_1, kz_Q2_K_2, kz_Q2_K_3, kz_Q2_K_4}},
    {TENSOR_Q3_K, offsetof(block_q3_K, d) - 2, {kz_Q3_K_1, kz_Q3_K_2, kz_Q3_K_3, kz_Q3_K_4}},
    {TENSOR_Q5_K, offsetof(block_q5_K, d), {kz_Q5_K_1, kz_Q5_K_2, kz_Q5_K_3, kz_Q5_K_4}},
};

void kern_mm_rows_kq_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    size_t ti = 0;
    while (ti < sizeof kz_tiles / sizeof kz_tiles[0] && kz_tiles[ti].type != w->type) ti++;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    /* the gather's offsets are int32 */
    if (ti == sizeof kz_tiles / sizeof kz_tiles[0] || j->prec != KERN_FAST || !j->xq || rb * KZ_ROWS > INT32_MAX) {
        kern_mm_rows_kq_avx2(j, r0, r1);
        return;
    }
    const kz_tile_fn *tile = kz_tiles[ti].tile;
    const int64_t nb = w->cols / 256;
    const size_t xstride = (size_t)nb * sizeof(kq8_256);
    const __m512i voff = _mm512_add_epi32(
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)rb)),
        _mm512_set1_epi32((int)kz_tiles[ti].doff));
    int64_t r = r0;
    for (; r + KZ_ROWS <= r1; r += KZ_ROWS) {
        const uint8_t *tb = (const uint8_t *)w->data + (size_t)r * rb;
        const __m512 bias = j->bias ? _mm512_loadu_ps(j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += KZ_NT) {
            const int nt = j->n_tokens - t0 < KZ_NT ? j->n_tokens - t0 : KZ_NT;
            const kq8_256 *xs[KZ_NT];
            for (int t = 0; t < nt; t++) xs[t] = (const kq8_256 *)((const uint8_t *)j->xq + (size_t)(t0 + t) * xstride);
            __m512 acc[KZ_NT];
            tile[nt - 1](tb, rb, nb, xs, t0 ? tb : tb + KZ_ROWS * rb, voff, acc);
            for (int t = 0; t < nt; t++)
                _mm512_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, j->bias ? _mm512_add_ps(acc[t], bias) : acc[t]);
        }
    }
    if (r < r1) kern_mm_rows_kq_avx2(j, r, r1); /* the last rows: 8-row tiles, then scalar (the same bits) */
}
