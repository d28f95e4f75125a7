/* avx2_util.h - small AVX2 pieces the AVX2 kernel files share (ops_avx2.c,
 * ops_gemv_avx2.c, gemm_avx2.c, q22_avx2.c, kquant_avx2.c). Include only
 * from files built with -mavx2. */
#ifndef BATON_AVX2_UTIL_H
#define BATON_AVX2_UTIL_H

#include <immintrin.h>

#include "ops_internal.h"
#include "quant.h"

/* pshufb masks: avx2_i16_all[k] puts int16 value k of each 128-bit half in all
 * 8 lanes of that half (a broadcast of one of 8 scales, after a 128-bit broadcast) */
#define AVX2_I16_ALL(k) {2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, \
                         2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, \
                         2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, \
                         2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1, 2 * (k), 2 * (k) + 1}
static const int8_t avx2_i16_all[8][32] = {AVX2_I16_ALL(0), AVX2_I16_ALL(1), AVX2_I16_ALL(2), AVX2_I16_ALL(3),
                                           AVX2_I16_ALL(4), AVX2_I16_ALL(5), AVX2_I16_ALL(6), AVX2_I16_ALL(7)};
#undef AVX2_I16_ALL

/* Lane i = the exact sum of the 8 int32 lanes of v[i]. */
static inline __m256i avx2_reduce8(const __m256i v[8]) {
    __m256i a = _mm256_hadd_epi32(v[0], v[1]), b = _mm256_hadd_epi32(v[2], v[3]);
    __m256i c = _mm256_hadd_epi32(v[4], v[5]), d = _mm256_hadd_epi32(v[6], v[7]);
    __m256i e = _mm256_hadd_epi32(a, b), f = _mm256_hadd_epi32(c, d);
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

/* The 128 six-bit codes (0..63, before the -32 offset) of half h (0 or 1) of a
 * Q6_K block, 32 per register in the scalar reference's order: q[k] holds codes
 * 128 h + 32 k ... + 31. */
static inline void avx2_q6k_codes(const block_q6_K *w, int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const void *)(w->ql + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const void *)(w->ql + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const void *)(w->qh + 32 * h));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

/* An 8-row tile for nt tokens: rows[i] = row i's data (nb blocks), x[t] = token
 * t's quantized row, pf = bytes to prefetch block by block (the next tile's
 * region, or the tile itself); acc[t] lane i = row i's float accumulator. */
typedef void (*avx2_tile8_fn)(const uint8_t *const *rows, int64_t nb, const void *const *x, const uint8_t *pf,
                              __m256 *acc);
#define AVX2_TILE8_NT 4 /* tokens per pass over a tile */

/* Rows [r0, r1) of the quantized FAST job j in tiles of 8 rows, the tokens in
 * passes of up to AVX2_TILE8_NT over each tile (tile[nt - 1]; the later passes
 * read it from cache, so only the first prefetches the next tile); xstride =
 * bytes per token of j->xq; y = acc (+ bias). The last rows, fewer than 8, run
 * the scalar loop. */
static inline void avx2_tile8_rows(const kern_mm_job *j, int64_t r0, int64_t r1, const avx2_tile8_fn *tile,
                                   size_t xstride) {
    const kern_matrix *w = j->w;
    const int64_t nb = w->cols / tensor_type_get(w->type)->block_elems;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w->data + (size_t)(r + i) * rb;
        const __m256 bias = j->bias ? _mm256_loadu_ps(j->bias + r) : _mm256_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += AVX2_TILE8_NT) {
            const int nt = j->n_tokens - t0 < AVX2_TILE8_NT ? j->n_tokens - t0 : AVX2_TILE8_NT;
            const void *xs[AVX2_TILE8_NT];
            for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)j->xq + (size_t)(t0 + t) * xstride;
            __m256 acc[AVX2_TILE8_NT];
            tile[nt - 1](rows, nb, xs, t0 ? rows[0] : rows[0] + 8 * rb, acc);
            for (int t = 0; t < nt; t++)
                _mm256_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, j->bias ? _mm256_add_ps(acc[t], bias) : acc[t]);
        }
    }
    if (r < r1) kern_mm_rows_scalar(j, r, r1);
}

#endif
