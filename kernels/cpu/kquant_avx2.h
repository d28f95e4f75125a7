/* kquant_avx2.h - what kquant_avx2.c and kquant_avx512.c share for Q2_K / Q3_K
 * / Q5_K (see kquant_avx2.c): the block unpacking and the row-wise loop, which
 * takes each level's block dot. Include only from files built with -mavx2. */
#ifndef BATON_KQUANT_AVX2_H
#define BATON_KQUANT_AVX2_H

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "ops_internal.h"

#define KQ_NT 64 /* tokens whose accumulators a row pass keeps */

static inline int32_t kq_hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* One unpacked block: codes, per-register int16 scales, the min (or offset)
 * weights for the activation block sums, and the float scales. */
typedef struct {
    __m256i q[8];
    __m256i sc[8];  /* register m's scale(s) as int16: [sub-block 2m x 8 | 2m+1 x 8] or 16 x one */
    __m256i msum;   /* int16 weights of the activation block sums (16 x bsum16 or 8 x bsum32 + 8 zeros) */
    int use32;      /* msum pairs with bsum32 (Q5_K) instead of bsum16 */
    float d, dmin;  /* dmin = 0 for Q3_K (its offset term is folded into isum) */
} kq_block;

static inline __m256i kq_pair16(int a, int b) {
    return _mm256_setr_m128i(_mm_set1_epi16((short)a), _mm_set1_epi16((short)b));
}

static inline void kq_unpack(uint32_t type, const uint8_t *p, kq_block *k) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), m15 = _mm256_set1_epi8(15);
    if (type == TENSOR_Q5_K) {
        block_q5_K w;
        memcpy(&w, p, sizeof w);
        __m256i qh = _mm256_loadu_si256((const void *)w.qh);
        int sc[8], mn[8];
        for (int s = 0; s < 8; s++) kern_q4k_scale_min(w.scales, s, &sc[s], &mn[s]);
        for (int c = 0; c < 4; c++) {
            __m256i qs = _mm256_loadu_si256((const void *)(w.qs + 32 * c));
            __m256i lo = _mm256_and_si256(qs, m15), hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), m15);
            __m256i b0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            __m256i b1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            k->q[2 * c] = _mm256_or_si256(lo, b0);
            k->q[2 * c + 1] = _mm256_or_si256(hi, b1);
        }
        for (int s = 0; s < 8; s++) k->sc[s] = _mm256_set1_epi16((short)sc[s]);
        k->msum = _mm256_setr_epi16((short)mn[0], (short)mn[1], (short)mn[2], (short)mn[3], (short)mn[4], (short)mn[5],
                                    (short)mn[6], (short)mn[7], 0, 0, 0, 0, 0, 0, 0, 0);
        k->use32 = 1;
        k->d = fp16_to_f32(w.d);
        k->dmin = fp16_to_f32(w.dmin);
        return;
    }
    const uint8_t *qsp = type == TENSOR_Q2_K ? ((const block_q2_K *)p)->qs : ((const block_q3_K *)p)->qs;
    __m256i q0 = _mm256_loadu_si256((const void *)qsp), q1 = _mm256_loadu_si256((const void *)(qsp + 32));
    for (int kk = 0; kk < 4; kk++) {
        k->q[kk] = _mm256_and_si256(_mm256_srli_epi16(q0, 2 * kk), m3);
        k->q[4 + kk] = _mm256_and_si256(_mm256_srli_epi16(q1, 2 * kk), m3);
    }
    int s16[16], m16[16];
    if (type == TENSOR_Q2_K) {
        block_q2_K w;
        memcpy(&w, p, sizeof w);
        for (int j = 0; j < 16; j++) s16[j] = w.scales[j] & 15, m16[j] = w.scales[j] >> 4;
        k->d = fp16_to_f32(w.d);
        k->dmin = fp16_to_f32(w.dmin);
    } else {
        block_q3_K w;
        memcpy(&w, p, sizeof w);
        __m256i hm = _mm256_loadu_si256((const void *)w.hmask);
        for (int m = 0; m < 8; m++)
            k->q[m] = _mm256_or_si256(k->q[m], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, m), one), 2));
        for (int j = 0; j < 16; j++) s16[j] = kern_q3k_scale(w.scales, j) - 32, m16[j] = -4 * s16[j];
        k->d = fp16_to_f32(w.d);
        k->dmin = 0.0f;
    }
    for (int m = 0; m < 8; m++) k->sc[m] = kq_pair16(s16[2 * m], s16[2 * m + 1]);
    k->msum = _mm256_setr_epi16((short)m16[0], (short)m16[1], (short)m16[2], (short)m16[3], (short)m16[4],
                                (short)m16[5], (short)m16[6], (short)m16[7], (short)m16[8], (short)m16[9],
                                (short)m16[10], (short)m16[11], (short)m16[12], (short)m16[13], (short)m16[14],
                                (short)m16[15]);
    k->use32 = 0;
}

/* A level's block dot: the block's exact (isum, ism) with one activation
 * block; Q3_K: ism = 0, its offset term inside isum (the scalar reference's isum). */
typedef void (*kq_dot_fn)(uint32_t type, const kq_block *k, const kq8_256 *x, int32_t *isum, int32_t *ism);

/* Rows [r0, r1) of a quantized FAST job of a Q2_K / Q3_K / Q5_K matrix: few
 * tokens (decode) go to the 8-row tiles (kquant_tile_avx2.c); more run row-wise:
 * each block of a row is unpacked once for up to KQ_NT tokens, then per token
 * dot() and the scalar reference's float step(s). Anything else: the scalar loop. */
static inline __attribute__((always_inline)) void kq_mm_rows(const kern_mm_job *j, int64_t r0, int64_t r1,
                                                            kq_dot_fn dot) {
    const kern_matrix *w = j->w;
    const uint32_t type = w->type;
    if (j->prec != KERN_FAST || !j->xq || !kern_kq_is_new(type)) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    if (j->n_tokens <= KERN_GEMV_AVX2_MAX_TOKENS) {
        kern_gemv_kq_avx2(j, r0, r1);
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
                for (int t = 0; t < nt; t++) {
                    const kq8_256 *x = xq + (size_t)(t0 + t) * (size_t)nb + b;
                    int32_t isum, ism;
                    dot(type, &k, x, &isum, &ism);
                    acc[t] = fmaf(k.d * x->d, (float)isum, acc[t]);
                    if (type != TENSOR_Q3_K) acc[t] = fmaf(-(k.dmin * x->d), (float)ism, acc[t]);
                }
            }
            for (int t = 0; t < nt; t++)
                j->y[(size_t)(t0 + t) * w->rows + r] = j->bias ? acc[t] + j->bias[r] : acc[t];
        }
    }
}

#endif
