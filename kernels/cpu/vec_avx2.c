/* vec_avx2.c - the AVX2+FMA level of the element-wise and attention kernels:
 * rmsnorm, swiglu (with an 8-lane kern_expf_ref), one attention head, the
 * activation quantizers of the FAST matmul, and the matmul of F16 / BF16 weights.
 * Each one repeats the scalar reference's operations in the same order per
 * element (ops_scalar.c), so the results are the same bits; tails shorter than a
 * vector run the scalar steps. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "ops_internal.h"
#include "quant.h"

/* Lanes 0-7 of a 16-lane dot (lo) and 8-15 (hi), plus the scalar tail, then the
 * tree of kern_dot16_ref. */
static float dot16_finish(__m256 lo, __m256 hi, const float *a, const float *b, int64_t c, int64_t n) {
    float lane[16];
    _mm256_storeu_ps(lane, lo);
    _mm256_storeu_ps(lane + 8, hi);
    for (int64_t i = c; i < n; i++) lane[i - c] = __builtin_fmaf(a[i], b[i], lane[i - c]);
    for (int h = 8; h >= 1; h >>= 1)
        for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

/* 8 half-precision values as floats (exact): fp16 by vcvtph2ps, bf16 by a shift. */
static inline __m256 half8(const uint16_t *p, int bf) {
    __m128i v = _mm_loadu_si128((const void *)p);
    return bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)) : _mm256_cvtph_ps(v);
}

/* kern_dot16_ref of fp16 (bf = 0) or bf16 (bf = 1) values h[n], converted
 * exactly, with x[n]. */
static float dot16_half(const uint16_t *h, int bf, const float *x, int64_t n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), half8(h + c, bf), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(x + c + 8), half8(h + c + 8, bf), hi);
    }
    float ht[16];
    for (int64_t i = c; i < n; i++) ht[i - c] = bf ? bf16_to_f32(h[i]) : fp16_to_f32(h[i]);
    return dot16_finish(lo, hi, x + c, ht, 0, n - c); /* tail lane i - c holds element i */
}

/* F16 / BF16 weights, either precision: each output is the float dot of
 * ops_internal.h (kern_dot16_ref of the exactly converted row with the token),
 * plus the bias; rows converted on the fly, no buffer. */
void kern_mm_rows_half_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const int bf = w->type == TENSOR_BF16;
    const int64_t cols = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = (const uint16_t *)w->data + (size_t)r * (size_t)cols;
        for (int t = 0; t < j->n_tokens; t++) {
            float acc = dot16_half(row, bf, j->x + (size_t)t * (size_t)cols, cols);
            j->y[(size_t)t * (size_t)w->rows + (size_t)r] = j->bias ? acc + j->bias[r] : acc;
        }
    }
}

void kern_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps) {
    float ss = kern_dot16_avx2(x, x, n);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m256 s = _mm256_set1_ps(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* kern_expf_ref on 8 lanes: the same operations in the same order. */
static inline __m256 exp8(__m256 x) {
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 low = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_NGE_UQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    e = _mm256_blendv_ps(e, _mm256_setzero_ps(), low);
    return _mm256_blendv_ps(e, x, nan);
}

void kern_swiglu_avx2(float *y, const float *gate, const float *up, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_xor_ps(g, sign)); /* -g, as the scalar negation */
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    if (i < n) kern_swiglu_scalar(y + i, gate + i, up + i, n - i);
}

/* kern_attention_head_scalar with vector dots and value updates. */
void kern_attention_head_avx2(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh, int n_head_kv,
                              int head_dim) {
    (void)n_head_kv;
    float s[KERN_ATT_BLOCK];
    if (head_dim > KERN_MAX_HEAD_DIM || n_pos <= 0) {
        for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
        return;
    }
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int64_t off = (int64_t)kvh * head_dim;
    const int f16 = kv->type == TENSOR_F16, q8 = kv->type == TENSOR_Q8_0;
    const size_t esz = f16 ? 2 : 4;
    const int dv = head_dim & ~7; /* vector part of a row; the rest is scalar */
    float m = -INFINITY, l = 0.0f, vt[8], qbuf[KERN_MAX_HEAD_DIM]; /* qbuf: a Q8_0 row piece as f32 */
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int p0 = 0; p0 < n_pos; p0 += KERN_ATT_BLOCK) {
        int nb = n_pos - p0 < KERN_ATT_BLOCK ? n_pos - p0 : KERN_ATT_BLOCK;
        float bmax = -INFINITY;
        for (int i = 0; i < nb; i++) {
            const void *k;
            if (q8) {
                kern_kv_load_q8_0((const uint8_t *)kv->k + (size_t)(p0 + i) * kv->row_stride, off, head_dim, qbuf);
                k = qbuf;
            } else {
                k = (const uint8_t *)kv->k + (size_t)(p0 + i) * kv->row_stride + (size_t)off * esz;
            }
            s[i] = (f16 ? dot16_half(k, 0, q, head_dim) : kern_dot16_avx2(q, k, head_dim)) * scale;
            if (s[i] > bmax) bmax = s[i];
        }
        float mn = m > bmax ? m : bmax;
        float c = kern_expf_ref(m - mn);
        l = l * c;
        __m256 cv = _mm256_set1_ps(c);
        int d = 0;
        for (; d < dv; d += 8) _mm256_storeu_ps(out + d, _mm256_mul_ps(_mm256_loadu_ps(out + d), cv));
        for (; d < head_dim; d++) out[d] = out[d] * c;
        for (int i = 0; i < nb; i++) {
            float e = kern_expf_ref(s[i] - mn);
            l = l + e;
            __m256 ev = _mm256_set1_ps(e);
            const uint8_t *v;
            if (q8) {
                kern_kv_load_q8_0((const uint8_t *)kv->v + (size_t)(p0 + i) * kv->row_stride, off, head_dim, qbuf);
                v = (const uint8_t *)qbuf;
            } else {
                v = (const uint8_t *)kv->v + (size_t)(p0 + i) * kv->row_stride + (size_t)off * esz;
            }
            for (d = 0; d < dv; d += 8) {
                __m256 vv = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const void *)(v + (size_t)d * 2)))
                                : _mm256_loadu_ps((const float *)(v + (size_t)d * 4));
                _mm256_storeu_ps(out + d, _mm256_fmadd_ps(ev, vv, _mm256_loadu_ps(out + d)));
            }
            if (d < head_dim) {
                int rest = head_dim - d;
                if (f16)
                    for (int t = 0; t < rest; t++) vt[t] = fp16_to_f32(((const uint16_t *)v)[d + t]);
                else
                    memcpy(vt, (const float *)v + d, (size_t)rest * sizeof(float));
                for (int t = 0; t < rest; t++) out[d + t] = __builtin_fmaf(e, vt[t], out[d + t]);
            }
        }
        m = mn;
    }
    __m256 lv = _mm256_set1_ps(l);
    int d = 0;
    for (; d < dv; d += 8) _mm256_storeu_ps(out + d, _mm256_div_ps(_mm256_loadu_ps(out + d), lv));
    for (; d < head_dim; d++) out[d] = out[d] / l;
}

/* The activation quantizer's block (ops_scalar.c quantize_block) for n a
 * multiple of 32: the same amax (max is exact in any order; NaN skipped), the
 * same scalar d and id, then per element x * id, NaN -> 0, clamp to +-127,
 * round half to even. Returns the sum of q. */
static int32_t quantize_block8(const float *x, int n, float *d, int8_t *q) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 am = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) am = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absmask), am);
    float lane[8];
    _mm256_storeu_ps(lane, am);
    float amax = 0.0f;
    for (int i = 0; i < 8; i++)
        if (lane[i] > amax) amax = lane[i];
    if (!(amax <= 3.0e38f)) amax = 0.0f;
    *d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < n; i += 32) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) {
            __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vid);
            f = _mm256_and_ps(f, _mm256_cmp_ps(f, f, _CMP_ORD_Q)); /* NaN -> 0 */
            f = _mm256_max_ps(_mm256_min_ps(f, hi), lo);
            v[k] = _mm256_cvtps_epi32(f); /* the current rounding mode: to nearest even */
            sum = _mm256_add_epi32(sum, v[k]);
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((void *)(q + i), _mm256_permutevar8x32_epi32(p, order));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

void kern_quantize_x32_avx2(kq8_32 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) out[b].sum = quantize_block8(x + b * 32, 32, &out[b].d, out[b].q);
}

void kern_quantize_x256_avx2(kq8_256 *out, const float *x, int64_t n) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 256; b++) {
        kq8_256 *o = &out[b];
        quantize_block8(x + b * 256, 256, &o->d, o->q);
        for (int j = 0; j < 8; j++) { /* 32 codes: two sums of 16 */
            /* 8 sums of 4 codes: lanes 0-3 cover codes 0-15, lanes 4-7 codes 16-31 */
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const void *)(o->q + 32 * j))),
                                          ones16);
            __m128i h = _mm_hadd_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            h = _mm_hadd_epi32(h, h); /* element 0: codes 0-15, element 1: codes 16-31 */
            int32_t a = _mm_extract_epi32(h, 0), c = _mm_extract_epi32(h, 1);
            o->bsum16[2 * j] = (int16_t)a;
            o->bsum16[2 * j + 1] = (int16_t)c;
        }
        for (int j = 0; j < 8; j++) o->bsum32[j] = (int16_t)(o->bsum16[2 * j] + o->bsum16[2 * j + 1]);
    }
}
