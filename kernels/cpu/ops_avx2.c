/* ops_avx2.c - the AVX2+FMA level: the float dot (same 16-lane definition as
 * kern_dot16_ref: two 8-lane accumulators = lanes 0-7 and 8-15), the residual
 * add, the quantized FAST matmul (integer dots, below), and the level's backend
 * (kern_backend_avx2, at the end: which of this level's matmul kernels runs a
 * job). The element-wise, attention and quantizer kernels of this level are in
 * vec_avx2.c, the lane = row tiles in gemm_avx2.c, the few-token kernels in
 * ops_gemv_avx2.c, the codec primitives in codec_avx2.c. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "avx2_util.h"
#include "codec_internal.h"
#include "ops_internal.h"

float kern_dot16_avx2(const float *a, const float *b, int64_t n) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), hi);
    }
    float lane[16];
    _mm256_storeu_ps(lane, lo);
    _mm256_storeu_ps(lane + 8, hi);
    for (int64_t i = c; i < n; i++) {
        float *l = &lane[i - c];
        *l = __builtin_fmaf(a[i], b[i], *l);
    }
    for (int h = 8; h >= 1; h >>= 1)
        for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

void kern_add_avx2(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = y[i] + x[i];
}

/* ------------------------------------------------------------ quantized FAST matmul
 *
 * The FAST arithmetic of ops_internal.h without repacking: 8 rows at a time, each
 * row's block dotted "horizontally" (maddubs u8 x s8 -> s16 pairs, madd -> s32),
 * the 8 rows' partial vectors reduced together so that lane i holds row i's exact
 * int32 block sum, then one float step per block with lane = row - the scalar
 * chain of each output, in the same order. No saturation: |pair| <= 2*128*127
 * (Q8_0 through the sign trick: |w| times sign(w)*x), 2*63*127 (Q6_K codes).
 * A tile of up to 4 tokens shares each row's unpacked block.
 */
#define A2_NT 4
#define A2_PREFETCH 16 /* blocks ahead, Q8_0/Q4_0 decode */

/* 8 fp16 scales at byte offset `off` of 8 rows' blocks, as floats (exact). */
static inline __m256 scales8(const uint8_t *const *wb, size_t off) {
    uint16_t h[8];
    for (int i = 0; i < 8; i++) memcpy(&h[i], wb[i] + off, 2);
    /* built in a register: a 16-byte load of 8 fresh 2-byte stores would stall */
    return _mm256_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], (short)h[4], (short)h[5],
                                          (short)h[6], (short)h[7]));
}

static inline __m256i nibbles32(const uint8_t *q16) { /* 16 bytes -> codes 0..15: low nibbles, then high */
    __m128i v = _mm_loadu_si128((const void *)q16);
    const __m128i m4 = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4), _mm_and_si128(v, m4));
}

static inline __attribute__((always_inline)) void tile8_q32(uint32_t type, const uint8_t *const *rows, int64_t nb,
                                                           const kq8_32 *const *xs, int nt, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t bb = type == TENSOR_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    _Pragma("GCC unroll 8")
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb[8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) wb[i] = rows[i] + (size_t)b * bb;
        if (nt == 1 && b + A2_PREFETCH < nb) /* decode: 8 row streams; fetch ahead of the hardware prefetcher */
            _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) _mm_prefetch((const char *)wb[i] + A2_PREFETCH * bb, _MM_HINT_T0);
        __m256i part[A2_NT][8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) {
            if (type == TENSOR_Q8_0) {
                __m256i w = _mm256_loadu_si256((const void *)(wb[i] + 2)), aw = _mm256_sign_epi8(w, w);
                _Pragma("GCC unroll 8")
                for (int t = 0; t < nt; t++) {
                    __m256i x = _mm256_loadu_si256((const void *)xs[t][b].q);
                    part[t][i] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), ones);
                }
            } else {
                __m256i w = nibbles32(wb[i] + 2);
                _Pragma("GCC unroll 8")
                for (int t = 0; t < nt; t++)
                    part[t][i] = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(w, _mm256_loadu_si256((const void *)xs[t][b].q)), ones);
            }
        }
        __m256 dw = scales8(wb, 0);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < nt; t++) {
            const kq8_32 *x = &xs[t][b];
            __m256i is = avx2_reduce8(part[t]);
            if (type == TENSOR_Q4_0) is = _mm256_sub_epi32(is, _mm256_set1_epi32(8 * x->sum));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(is), acc[t]);
        }
    }
}

/* pshufb masks that broadcast int16 element `lo` to the low 128-bit half and `hi`
 * to the high half of a register whose two halves hold the same 8 int16. */
#define BC(lo, hi)                                                                                              \
    {2 * (lo), 2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (lo),   \
     2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (lo), 2 * (lo) + 1, 2 * (hi), 2 * (hi) + 1, \
     2 * (hi), 2 * (hi) + 1, 2 * (hi), 2 * (hi) + 1, 2 * (hi), 2 * (hi) + 1, 2 * (hi), 2 * (hi) + 1, 2 * (hi),    \
     2 * (hi) + 1, 2 * (hi), 2 * (hi) + 1, 2 * (hi), 2 * (hi) + 1}
static const uint8_t bc_same[8][32] = {BC(0, 0), BC(1, 1), BC(2, 2), BC(3, 3), BC(4, 4), BC(5, 5), BC(6, 6), BC(7, 7)};
static const uint8_t bc_pair[4][32] = {BC(0, 1), BC(2, 3), BC(4, 5), BC(6, 7)};
#undef BC

static inline __m256i bcast16(__m256i both, const uint8_t *mask) {
    return _mm256_shuffle_epi8(both, _mm256_loadu_si256((const void *)mask));
}

/* The 8 six-bit scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K block's packed
 * 12 bytes (GGUF: sc/m 0-3 in the low 6 bits of bytes 0-3 / 4-7, sc/m 4-7 in the
 * nibbles of bytes 8-11 with their top 2 bits in the top bits of bytes 0-3 / 4-7). */
static inline __m128i q4k_scales_mins(const uint8_t *s12) {
    uint32_t a, b, c, v[4];
    memcpy(&a, s12, 4), memcpy(&b, s12 + 4, 4), memcpy(&c, s12 + 8, 4);
    v[0] = a & 0x3f3f3f3fu;
    v[1] = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
    v[2] = b & 0x3f3f3f3fu;
    v[3] = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
    return _mm_loadu_si128((const void *)v);
}

/* horizontal sum of 4 int32 */
static inline int32_t hsum4(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
    return _mm_cvtsi128_si32(v);
}

static inline __attribute__((always_inline)) void tile8_q4k(const uint8_t *const *rows, int64_t nb,
                                                           const kq8_256 *const *xs, int nt, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(15);
    _Pragma("GCC unroll 8")
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb[8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) wb[i] = rows[i] + (size_t)b * sizeof(block_q4_K);
        __m256i part[A2_NT][8];
        int32_t ism[A2_NT][8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) {
            const block_q4_K *w = (const block_q4_K *)wb[i];
            __m128i scm = q4k_scales_mins(w->scales);
            __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));
            __m128i mn = _mm_cvtepu8_epi16(_mm_srli_si128(scm, 8));
            _Pragma("GCC unroll 8")
            for (int t = 0; t < nt; t++) {
                ism[t][i] = hsum4(_mm_madd_epi16(mn, _mm_loadu_si128((const void *)xs[t][b].bsum32)));
                part[t][i] = _mm256_setzero_si256();
            }
            _Pragma("GCC unroll 8")
            for (int p = 0; p < 4; p++) {
                __m256i q = _mm256_loadu_si256((const void *)(w->qs + 32 * p));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                __m256i slo = bcast16(sc, bc_same[2 * p]), shi = bcast16(sc, bc_same[2 * p + 1]);
                _Pragma("GCC unroll 8")
                for (int t = 0; t < nt; t++) {
                    const int8_t *xq = xs[t][b].q + 64 * p;
                    __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const void *)xq)), slo);
                    __m256i d1 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const void *)(xq + 32))), shi);
                    part[t][i] = _mm256_add_epi32(part[t][i], _mm256_add_epi32(d0, d1));
                }
            }
        }
        __m256 dw = scales8(wb, offsetof(block_q4_K, d)), dm = scales8(wb, offsetof(block_q4_K, dmin));
        _Pragma("GCC unroll 8")
        for (int t = 0; t < nt; t++) {
            __m256 dx = _mm256_set1_ps(xs[t][b].d);
            __m256i is = avx2_reduce8(part[t]), im = _mm256_loadu_si256((const void *)ism[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(is), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(im), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void tile8_q6k(const uint8_t *const *rows, int64_t nb,
                                                           const kq8_256 *const *xs, int nt, __m256 *acc) {
    _Pragma("GCC unroll 8")
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb[8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) wb[i] = rows[i] + (size_t)b * sizeof(block_q6_K);
        __m256i part[A2_NT][8];
        int32_t off[A2_NT][8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++) {
            const block_q6_K *w = (const block_q6_K *)wb[i];
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)w->scales));
            _Pragma("GCC unroll 8")
            for (int t = 0; t < nt; t++) {
                __m256i m = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const void *)xs[t][b].bsum16));
                off[t][i] = 32 * hsum4(_mm_add_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1)));
                part[t][i] = _mm256_setzero_si256();
            }
            _Pragma("GCC unroll 8")
            for (int h = 0; h < 2; h++) {
                __m256i q[4];
                avx2_q6k_codes(w, h, q);
                /* the 8 scales of this half in both 128-bit halves */
                __m256i sh = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
                _Pragma("GCC unroll 8")
                for (int k = 0; k < 4; k++) {
                    /* sub-blocks 8h+2k (low 16 codes) and 8h+2k+1 (high 16) */
                    __m256i sc = bcast16(sh, bc_pair[k]);
                    _Pragma("GCC unroll 8")
                    for (int t = 0; t < nt; t++) {
                        const int8_t *xq = xs[t][b].q + 128 * h + 32 * k;
                        __m256i d = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const void *)xq));
                        part[t][i] = _mm256_add_epi32(part[t][i], _mm256_madd_epi16(d, sc));
                    }
                }
            }
        }
        __m256 dw = scales8(wb, offsetof(block_q6_K, d));
        _Pragma("GCC unroll 8")
        for (int t = 0; t < nt; t++) {
            __m256i is = _mm256_sub_epi32(avx2_reduce8(part[t]), _mm256_loadu_si256((const void *)off[t]));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xs[t][b].d)), _mm256_cvtepi32_ps(is), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void tile8_run(uint32_t type, const uint8_t *const *rows, int64_t nb,
                                                           const void *const *xs, int nt, __m256 *acc) {
    if (type == TENSOR_Q8_0 || type == TENSOR_Q4_0)
        tile8_q32(type, rows, nb, (const kq8_32 *const *)xs, nt, acc);
    else if (type == TENSOR_Q4_K)
        tile8_q4k(rows, nb, (const kq8_256 *const *)xs, nt, acc);
    else
        tile8_q6k(rows, nb, (const kq8_256 *const *)xs, nt, acc);
}

#define TILE8_FOR_TYPE(T)                                                                                   \
    static void tile8_##T(const uint8_t *const *rows, int64_t nb, const void *const *xs, int nt, __m256 *acc) { \
        switch (nt) {                                                                                       \
        case 1: tile8_run(T, rows, nb, xs, 1, acc); break;                                                  \
        case 2: tile8_run(T, rows, nb, xs, 2, acc); break;                                                  \
        case 3: tile8_run(T, rows, nb, xs, 3, acc); break;                                                  \
        default: tile8_run(T, rows, nb, xs, 4, acc); break;                                                 \
        }                                                                                                   \
    }
TILE8_FOR_TYPE(TENSOR_Q8_0)
TILE8_FOR_TYPE(TENSOR_Q4_0)
TILE8_FOR_TYPE(TENSOR_Q4_K)
TILE8_FOR_TYPE(TENSOR_Q6_K)

/* Rows [r0, r1): quantized FAST in tiles of 8 rows (the last < 8 rows, and every
 * other type or precision, go to the scalar loop, which uses this level's dot). */
void kern_mm_rows_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    if (w->type == TENSOR_F16 || w->type == TENSOR_BF16) { /* float dots in both precisions: vec_avx2.c */
        kern_mm_rows_half_avx2(j, r0, r1);
        return;
    }
    if (j->prec != KERN_FAST || !j->xq || !(kern_mm_uses_x32(w->type) || kern_mm_uses_x256(w->type)) ||
        (kern_kq_is_new(w->type) && !kern_gemv_avx2_supports(w->type))) { /* Q2_K/Q3_K/Q5_K: no 8-row tile here */
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    if (kern_q22_avx2_supports(w->type)) { /* issue 22's types: q22_avx2.c */
        kern_mm_rows_q22_avx2(j, r0, r1);
        return;
    }
    if (j->n_tokens <= KERN_GEMV_AVX2_MAX_TOKENS && kern_gemv_avx2_supports(w->type)) { /* few tokens: ops_gemv_avx2.c */
        kern_gemv_avx2(j, r0, r1);
        return;
    }
    const tensor_type_info *ti = tensor_type_get(w->type);
    const int64_t nb = w->cols / ti->block_elems;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    const size_t xstride = kern_mm_uses_x32(w->type) ? (size_t)nb * sizeof(kq8_32) : (size_t)nb * sizeof(kq8_256);
    void (*tile)(const uint8_t *const *, int64_t, const void *const *, int, __m256 *) =
        w->type == TENSOR_Q8_0   ? tile8_TENSOR_Q8_0
        : w->type == TENSOR_Q4_0 ? tile8_TENSOR_Q4_0
        : w->type == TENSOR_Q4_K ? tile8_TENSOR_Q4_K
                                 : tile8_TENSOR_Q6_K;
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w->data + (size_t)(r + i) * rb;
        __m256 bias = j->bias ? _mm256_loadu_ps(j->bias + r) : _mm256_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += A2_NT) {
            int nt = j->n_tokens - t0 < A2_NT ? j->n_tokens - t0 : A2_NT;
            const void *xs[A2_NT];
            for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)j->xq + (size_t)(t0 + t) * xstride;
            __m256 acc[A2_NT];
            tile(rows, nb, xs, nt, acc);
            for (int t = 0; t < nt; t++)
                _mm256_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, j->bias ? _mm256_add_ps(acc[t], bias) : acc[t]);
        }
    }
    if (r < r1) kern_mm_rows_scalar(j, r, r1);
}

/* ------------------------------------------------------------ peak and stream */

/* int8 multiply-adds per second of one thread with this level's integer dot
 * (vpmaddubsw u8 x s8 -> s16 pairs, vpmaddwd -> s32, vpaddd: 32 multiply-adds per
 * 3 instructions, as the kernels above do) on 12 independent accumulators for
 * about `seconds`; counted as 2 ops per multiply-add. */
double kern_peak_int8_avx2(double seconds, double (*now)(void)) {
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    double t0 = now(), t;
    long iters = 0;
    do {
        for (int r = 0; r < 10000; r++)
            for (int i = 0; i < 12; i++) {
                acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
                __asm__ volatile("" : "+x"(acc[i]));
            }
        iters += 10000;
    } while ((t = now()) - t0 < seconds);
    int32_t sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm256_extract_epi32(acc[i], 0);
    __asm__ volatile("" : : "r"(sink));
    return (double)iters * 12 * 32 * 2 / (t - t0);
}

/* kern_stream_sum with 32-byte loads, 8 accumulators and software prefetch 4 KiB
 * ahead, as the AVX-512 probe does. */
uint64_t kern_stream_sum_avx2(const void *buf, size_t bytes) {
    __m256i a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_si256();
    const uint8_t *p = buf;
    for (size_t o = 0; o + 512 <= bytes; o += 512) {
        for (int i = 0; i < 8; i++) _mm_prefetch((const char *)p + o + 4096 + 64 * i, _MM_HINT_T0);
        for (int i = 0; i < 8; i++)
            a[i] = _mm256_add_epi64(a[i], _mm256_add_epi64(_mm256_load_si256((const void *)(p + o + 64 * i)),
                                                           _mm256_load_si256((const void *)(p + o + 64 * i + 32))));
    }
    for (int i = 1; i < 8; i++) a[0] = _mm256_add_epi64(a[0], a[i]);
    uint64_t s[4];
    _mm256_storeu_si256((void *)s, a[0]);
    return s[0] + s[1] + s[2] + s[3];
}

/* ------------------------------------------------------------ the AVX2 backend */

/* The kernel of a job: quantized FAST Q8_0 repacked at load, and Q4_0 / Q4_K /
 * Q6_K of many tokens, in lane = row tiles (gemm_avx2.c); everything else row-wise
 * (kern_mm_rows_avx2, which sends few tokens to ops_gemv_avx2.c, F16 / BF16 to
 * vec_avx2.c and the rest to the scalar loop). */
static kern_rows_fn avx2_mm_rows(const kern_mm_job *j) {
    const kern_matrix *w = j->w;
    if (!kern_mm_quant_fast(j)) return kern_mm_rows_avx2;
    if (kern_q22_avx2_supports(w->type)) return kern_mm_rows_q22_avx2; /* Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS */
    if (kern_kq_is_new(w->type)) return kern_mm_rows_kq_avx2; /* Q2_K, Q3_K, Q5_K: kquant_avx2.c */
    if (w->type == TENSOR_Q6_K && j->n_tokens >= KERN_AVX2_Q6K_MANY) return kern_mm_rows_avx2_q6_k;
    if (w->type == TENSOR_Q4_K && j->n_tokens >= KERN_AVX2_Q4K_MANY) return kern_mm_rows_avx2_q4_k;
    if (w->type == TENSOR_Q4_0 && j->n_tokens >= KERN_AVX2_Q4_MANY) return kern_mm_rows_avx2_q4_0;
    if (kern_packed_for(w, KERN_AVX2)) return kern_mm_rows_avx2_packed;
    return kern_mm_rows_avx2;
}

const kern_backend kern_backend_avx2 = {
    .name = "avx2",
    .pack = kern_pack_avx2,
    .mm_rows = avx2_mm_rows,
    .dot16 = kern_dot16_avx2,
    .quantize_x32 = kern_quantize_x32_avx2,
    .quantize_x256 = kern_quantize_x256_avx2,
    .rmsnorm = kern_rmsnorm_avx2,
    .swiglu = kern_swiglu_avx2,
    .add = kern_add_avx2,
    .attention_head = kern_attention_head_avx2,
    .peak_int8 = kern_peak_int8_avx2,
    .stream_sum = kern_stream_sum_avx2,
    .codec = &codec_ops_avx2,
};
