/* kquant_avx2.c - the AVX2 quantized FAST matmul for Q2_K, Q3_K and Q5_K
 * weights (any token count): kern_mm_rows_kq_avx2, picked by avx2_mm_rows.
 * Few tokens (decode) run the 8-row tiles of kquant_tile_avx2.c; more run
 * row-wise (the loop in kquant_avx2.h): each weight block of a row is unpacked
 * once into 8 registers of 32 unsigned byte codes (register m = elements 32m .. 32m+31, the order of the
 * activation block's q), with the block's sub-block scales as int16 vectors;
 * then every token of the job takes it: vpmaddubsw (codes x activations, pair
 * sums <= 2 * 31 * 127, no saturation), vpmaddwd with the scales, a horizontal
 * sum, and the float step of the scalar reference (ops_internal.h) in the same
 * order, so the bits are the scalar loop's:
 *   Q2_K: codes 0..3,  16 sub-blocks of 16, isum = sum sc_j dot_j,
 *         ism = sum m_j bsum16_j
 *   Q3_K: codes q + 4 = 0..7 (unsigned for vpmaddubsw), 16 sub-blocks of 16,
 *         isum = sum s_j dotu_j - 4 sum s_j bsum16_j  (s_j = c_j - 32)
 *   Q5_K: codes 0..31, 8 sub-blocks of 32, isum = sum sc_j dot_j,
 *         ism = sum m_j bsum32_j
 * Integer sums are exact, so this grouping gives the scalar isum exactly.
 */
#include <immintrin.h>
#include <string.h>

#include "kquant_avx2.h"
#include "ops_internal.h"

/* The block's exact (isum, ism) with one activation block. Q3_K: ism is the
 * -4 offset term, added into isum here (the scalar reference's isum). */
static inline void kq_block_dot(uint32_t type, const kq_block *k, const kq8_256 *x, int32_t *isum, int32_t *ism) {
    __m256i acc = _mm256_setzero_si256();
    for (int m = 0; m < 8; m++) {
        __m256i p = _mm256_maddubs_epi16(k->q[m], _mm256_loadu_si256((const void *)(x->q + 32 * m)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, k->sc[m]));
    }
    __m256i bs = k->use32 ? _mm256_castsi128_si256(_mm_loadu_si128((const void *)x->bsum32))
                          : _mm256_loadu_si256((const void *)x->bsum16);
    if (k->use32) bs = _mm256_inserti128_si256(bs, _mm_setzero_si128(), 1);
    int32_t mterm = kq_hsum8(_mm256_madd_epi16(k->msum, bs));
    int32_t s = kq_hsum8(acc);
    if (type == TENSOR_Q3_K) {
        *isum = s + mterm;
        *ism = 0;
    } else {
        *isum = s;
        *ism = mterm;
    }
}

void kern_mm_rows_kq_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) { kq_mm_rows(j, r0, r1, kq_block_dot); }
