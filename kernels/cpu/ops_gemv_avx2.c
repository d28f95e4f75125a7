/* ops_gemv_avx2.c - the AVX2 quantized FAST matmul for one token (decode):
 * kern_gemv_avx2, called by kern_mm_rows_avx2 when n_tokens == 1. Same bits as
 * the scalar reference (ops_internal.h): per output row, per weight block in
 * increasing order, the exact int32 block dot, then one float step, with lane =
 * output row. Weights are read in their GGUF layout (w->data, no repacking).
 *
 * Why a separate path: a decode step streams every weight once, so its speed is
 * memory bandwidth if the arithmetic per block keeps up. The multi-token tiles of
 * ops_avx2.c spend most of their instructions turning 8 rows' horizontal dots
 * into a lane-per-row vector; here each type is arranged to shorten that:
 *  - Q4_0: two rows per register (row A's 16 nibble bytes in the low half, row B's
 *    in the high half) against x's block halves broadcast to both halves; the
 *    int16 products of 8 rows are reduced with two levels of 16-bit horizontal
 *    adds (|sum| <= 4 * 2 * 2 * 15 * 127 = 30480, no overflow) and one madd.
 *  - all types: the 8 rows' fp16 scales gathered with integer loads and shifts
 *    (the integer pipes are otherwise idle) into one vcvtph2ps; software prefetch
 *    of each row stream GV_PF_BYTES ahead, once per cache line.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "ops_internal.h"

#ifndef GV_PF_BYTES
#define GV_PF_BYTES 1024 /* prefetch distance of each row stream */
#endif

static inline uint64_t gv_ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 8 fp16 values at p[l] + off (lane l) as floats, exact. */
static inline __attribute__((always_inline)) __m256 gv_scales8(const uint8_t *const *p, size_t off) {
    uint64_t lo = gv_ld16(p[0] + off) | gv_ld16(p[1] + off) << 16 | gv_ld16(p[2] + off) << 32 | gv_ld16(p[3] + off) << 48;
    uint64_t hi = gv_ld16(p[4] + off) | gv_ld16(p[5] + off) << 16 | gv_ld16(p[6] + off) << 32 | gv_ld16(p[7] + off) << 48;
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* lane i = sum of the 8 int32 lanes of v[i] (exact). */
static inline __m256i gv_reduce8(const __m256i v[8]) {
    __m256i a = _mm256_hadd_epi32(v[0], v[1]), b = _mm256_hadd_epi32(v[2], v[3]);
    __m256i c = _mm256_hadd_epi32(v[4], v[5]), d = _mm256_hadd_epi32(v[6], v[7]);
    __m256i e = _mm256_hadd_epi32(a, b), f = _mm256_hadd_epi32(c, d);
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

static inline __attribute__((always_inline)) void gv_prefetch8(const uint8_t *const *p, size_t off) {
#if GV_PF_BYTES > 0
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) _mm_prefetch((const char *)p[i] + off, _MM_HINT_T0);
#else
    (void)p, (void)off;
#endif
}

/* ------------------------------------------------------------ Q4_0 */

/* One Q4_0 block of 8 rows (q[l] = the block of the row in lane l, lane order
 * r0 r2 r4 r6 r1 r3 r5 r7): acc = fma(d_w * d_x, isum, acc). */
static inline __attribute__((always_inline)) __m256 gv_q4_0_block(const uint8_t *const *q, size_t off,
                                                                 const kq8_32 *x, __m256 acc) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)x->q));
    const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(x->q + 16)));
    __m256i p[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) { /* rows 2k (low half) and 2k+1 (high half) */
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)(q[k] + off + 2))),
                                            _mm_loadu_si128((const void *)(q[k + 4] + off + 2)), 1);
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        p[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
    }
    /* halves: low [r0 r2 | r4 r6], high [r1 r3 | r5 r7] after two 16-bit levels and a madd */
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    __m256i is = _mm256_sub_epi32(_mm256_madd_epi16(h, ones), _mm256_set1_epi32(8 * x->sum));
    __m256 dw = gv_scales8(q, off);
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(is), acc);
}

static void gv_q4_0_tile(const uint8_t *const *rows, int64_t nb, const kq8_32 *x, float *out) {
    /* lane order r0 r2 r4 r6 r1 r3 r5 r7 */
    const uint8_t *q[8] = {rows[0], rows[2], rows[4], rows[6], rows[1], rows[3], rows[5], rows[7]};
    const size_t bb = sizeof(block_q4_0);
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) { /* 72 bytes per row: one prefetch per row */
        gv_prefetch8(q, (size_t)b * bb + GV_PF_BYTES);
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) acc = gv_q4_0_block(q, (size_t)(b + u) * bb, x + b + u, acc);
    }
    for (; b < nb; b++) acc = gv_q4_0_block(q, (size_t)b * bb, x + b, acc);
    _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* ------------------------------------------------------------ Q8_0 */

static inline __attribute__((always_inline)) __m256 gv_q8_0_block(const uint8_t *const *q, size_t off,
                                                                 const kq8_32 *x, __m256 acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i xv = _mm256_loadu_si256((const void *)x->q);
    __m256i p[8];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) { /* |w| * (sign(w) x): u8 x s8, pairs <= 2 * 128 * 127 */
        __m256i w = _mm256_loadu_si256((const void *)(q[i] + off + 2));
        p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)), ones);
    }
    __m256 dw = gv_scales8(q, off);
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(gv_reduce8(p)), acc);
}

static void gv_q8_0_tile(const uint8_t *const *rows, int64_t nb, const kq8_32 *x, float *out) {
    const uint8_t *const *q = rows;
    const size_t bb = sizeof(block_q8_0);
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* 68 bytes per row: one prefetch per row */
        gv_prefetch8(q, (size_t)b * bb + GV_PF_BYTES);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) acc = gv_q8_0_block(q, (size_t)(b + u) * bb, x + b + u, acc);
    }
    for (; b < nb; b++) acc = gv_q8_0_block(q, (size_t)b * bb, x + b, acc);
    _mm256_storeu_ps(out, acc);
}

/* ------------------------------------------------------------ dispatch */

typedef void (*gv_tile_fn)(const uint8_t *const *rows, int64_t nb, const void *x, float *out);

static const struct {
    uint32_t type;
    gv_tile_fn tile;
} gv_tiles[] = {
    {TENSOR_Q4_0, (gv_tile_fn)gv_q4_0_tile},
    {TENSOR_Q8_0, (gv_tile_fn)gv_q8_0_tile},
};

int kern_gemv_avx2_supports(uint32_t type) {
    for (size_t i = 0; i < sizeof gv_tiles / sizeof gv_tiles[0]; i++)
        if (gv_tiles[i].type == type) return 1;
    return 0;
}

void kern_gemv_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    gv_tile_fn tile = NULL;
    for (size_t i = 0; i < sizeof gv_tiles / sizeof gv_tiles[0]; i++)
        if (gv_tiles[i].type == w->type) tile = gv_tiles[i].tile;
    if (!tile || j->n_tokens != 1 || j->prec != KERN_FAST || !j->xq) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    const int64_t nb = w->cols / tensor_type_get(w->type)->block_elems;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w->data + (size_t)(r + i) * rb;
        float out[8];
        tile(rows, nb, j->xq, out);
        for (int i = 0; i < 8; i++) j->y[r + i] = j->bias ? out[i] + j->bias[r + i] : out[i];
    }
    if (r < r1) kern_mm_rows_scalar(j, r, r1);
}
