/* kquant_avx512.c - the AVX-512 quantized FAST matmul for Q2_K, Q3_K and Q5_K
 * weights (any token count): kern_mm_rows_kq_avx512, picked by avx512_mm_rows.
 * The row-wise scheme of kquant_avx2.c (and its block unpacking,
 * kquant_avx2.h) with 64 codes per register: two of AVX2's code registers and
 * their scale vectors side by side, vpmaddubsw + vpmaddwd on 512 bits, one
 * horizontal sum per block and token, then the scalar reference's float step.
 * Integer sums are exact, so the bits are the scalar loop's.
 */
#include <immintrin.h>
#include <math.h>

#include "kquant_avx2.h"
#include "ops_internal.h"

static inline __m512i kq_join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

void kern_mm_rows_kq_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const uint32_t type = w->type;
    if (j->prec != KERN_FAST || !j->xq || !kern_kq_is_new(type)) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    const int64_t nb = w->cols / 256;
    const size_t rb = tensor_row_bytes(type, w->cols), bb = tensor_type_get(type)->block_bytes;
    const kq8_256 *xq = j->xq;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
        for (int t0 = 0; t0 < j->n_tokens; t0 += KQ_NT) {
            const int nt = j->n_tokens - t0 < KQ_NT ? j->n_tokens - t0 : KQ_NT;
            float acc[KQ_NT];
            for (int t = 0; t < nt; t++) acc[t] = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                kq_block k;
                _mm_prefetch((const char *)row + (size_t)(b + 4) * bb, _MM_HINT_T0);
                kq_unpack(type, row + (size_t)b * bb, &k);
                __m512i q[4], sc[4];
                for (int m = 0; m < 4; m++) {
                    q[m] = kq_join(k.q[2 * m], k.q[2 * m + 1]);
                    sc[m] = kq_join(k.sc[2 * m], k.sc[2 * m + 1]);
                }
                for (int t = 0; t < nt; t++) {
                    const kq8_256 *x = xq + (size_t)(t0 + t) * (size_t)nb + b;
                    __m512i a = _mm512_setzero_si512();
                    for (int m = 0; m < 4; m++) {
                        __m512i p = _mm512_maddubs_epi16(q[m], _mm512_loadu_si512((const void *)(x->q + 64 * m)));
                        a = _mm512_add_epi32(a, _mm512_madd_epi16(p, sc[m]));
                    }
                    __m256i bs = k.use32 ? _mm256_castsi128_si256(_mm_loadu_si128((const void *)x->bsum32))
                                         : _mm256_loadu_si256((const void *)x->bsum16);
                    if (k.use32) bs = _mm256_inserti128_si256(bs, _mm_setzero_si128(), 1);
                    int32_t mterm = kq_hsum8(_mm256_madd_epi16(k.msum, bs));
                    int32_t s = _mm512_reduce_add_epi32(a);
                    if (type == TENSOR_Q3_K) {
                        acc[t] = fmaf(k.d * x->d, (float)(s + mterm), acc[t]);
                    } else {
                        acc[t] = fmaf(k.d * x->d, (float)s, acc[t]);
                        acc[t] = fmaf(-(k.dmin * x->d), (float)mterm, acc[t]);
                    }
                }
            }
            for (int t = 0; t < nt; t++)
                j->y[(size_t)(t0 + t) * w->rows + r] = j->bias ? acc[t] + j->bias[r] : acc[t];
        }
    }
}
