/* avx2_util.h - small AVX2 pieces the AVX2 kernel files share (ops_avx2.c,
 * ops_gemv_avx2.c, gemm_avx2.c). Include only from files built with -mavx2. */
#ifndef BATON_AVX2_UTIL_H
#define BATON_AVX2_UTIL_H

#include <immintrin.h>

#include "quant.h"

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

#endif
