/* kquant_avx512.c - the AVX-512 quantized FAST matmul for Q2_K, Q3_K and Q5_K
 * weights (any token count): kern_mm_rows_kq_avx512, picked by avx512_mm_rows.
 * Few tokens (decode) run AVX2's 8-row tiles (kquant_tile_avx2.c: at the
 * bandwidth bound, wider registers buy nothing); more run the row-wise loop of
 * kquant_avx2.h with this block dot: 64 codes per register (two of AVX2's code
 * registers and their scale vectors side by side), vpmaddubsw + vpmaddwd on 512
 * bits, one horizontal sum per block and token. Integer sums are exact, so the
 * bits are the scalar loop's.
 */
#include <immintrin.h>

#include "kquant_avx2.h"
#include "ops_internal.h"

static inline __m512i kq_join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __attribute__((always_inline)) void kq_block_dot512(uint32_t type, const kq_block *k, const kq8_256 *x,
                                                                 int32_t *isum, int32_t *ism) {
    __m512i a = _mm512_setzero_si512();
    for (int m = 0; m < 4; m++) {
        __m512i p = _mm512_maddubs_epi16(kq_join(k->q[2 * m], k->q[2 * m + 1]),
                                         _mm512_loadu_si512((const void *)(x->q + 64 * m)));
        a = _mm512_add_epi32(a, _mm512_madd_epi16(p, kq_join(k->sc[2 * m], k->sc[2 * m + 1])));
    }
    __m256i bs = k->use32 ? _mm256_castsi128_si256(_mm_loadu_si128((const void *)x->bsum32))
                          : _mm256_loadu_si256((const void *)x->bsum16);
    if (k->use32) bs = _mm256_inserti128_si256(bs, _mm_setzero_si128(), 1);
    int32_t mterm = kq_hsum8(_mm256_madd_epi16(k->msum, bs)), s = _mm512_reduce_add_epi32(a);
    *isum = type == TENSOR_Q3_K ? s + mterm : s;
    *ism = type == TENSOR_Q3_K ? 0 : mterm;
}

void kern_mm_rows_kq_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) { kq_mm_rows(j, r0, r1, kq_block_dot512); }
