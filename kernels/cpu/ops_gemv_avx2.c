/* ops_gemv_avx2.c - the AVX2 quantized FAST matmul for few tokens (decode and
 * small micro-batches): kern_gemv_avx2, called by kern_mm_rows_avx2 when
 * n_tokens <= KERN_GEMV_AVX2_MAX_TOKENS, for Q4_0, Q8_0, Q4_K and Q6_K. Each
 * weight block of a tile is loaded and unpacked (nibbles, 6-bit codes, scales)
 * once for up to GV_NT tokens, each token with its own accumulators; more tokens
 * take further passes over the tile while it is still in cache. Same bits as
 * the scalar reference (ops_internal.h): per output row, per weight block in
 * increasing order, the exact int32 block dot, then one float step, with lane =
 * output row (8 rows per tile; the last rows of a range, fewer than 8, and Q4_K
 * jobs with n_tokens * cols > GV_XR_MAX run the scalar loop). Weights are read
 * in their GGUF layout (w->data, nothing repacked), so the many-token paths are
 * unaffected.
 *
 * A decode step streams every weight once: its speed is memory bandwidth if the
 * arithmetic per block keeps up and the loads are in flight early enough.
 *  - Q4_0: two rows per register (row A's 16 nibble bytes in the low half, row
 *    B's in the high half) against x's block halves broadcast to both halves;
 *    the 8 rows' int16 products are reduced with two levels of 16-bit horizontal
 *    adds (|sum| <= 4 * 2 * 2 * 15 * 127 = 30480, no overflow) and one madd.
 *  - Q4_K, Q6_K: one madd applies two sub-block scales (see each section).
 *  - the 8 rows' fp16 scales: integer loads and shifts (the integer pipes are
 *    otherwise idle) into one vcvtph2ps.
 *  - prefetch: a tile's 8 rows are one contiguous region that the kernel reads as
 *    8 short streams (a row is 3-5 KiB), which the hardware prefetcher picks up
 *    late; each block step prefetches the matching 8 blocks' worth of bytes of the
 *    next tile's region, so the next tile is in cache when it starts (measured on
 *    an EPYC (Zen 3) VM: Q6_K decode 6.7 -> 12 GB/s, Q4_0 9.7 -> 14 GB/s).
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "avx2_util.h"
#include "ops_internal.h"

#ifndef GV_PF
#define GV_PF 1 /* software prefetch of the next tile (-DGV_PF=0: off, for measurements) */
#endif
#ifndef GV_PF_HINT
#define GV_PF_HINT _MM_HINT_T0 /* T1 (to L2) measured the same on the EPYC VM */
#endif

#define GV_NT 4 /* tokens per pass over a tile: each unpacked weight block serves this many */

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

/* Prefetch [p, p + bytes): the span of the next tile that matches the blocks
 * about to be computed (a tile's 8 rows are one contiguous region, read as 8
 * short streams that the hardware prefetcher picks up late). */
static inline __attribute__((always_inline)) void gv_prefetch_span(const uint8_t *p, size_t bytes) {
#if GV_PF
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, GV_PF_HINT);
#else
    (void)p, (void)bytes;
#endif
}

/* ------------------------------------------------------------ Q4_0 */

/* One Q4_0 block of 8 rows (q[l] = the block of the row in lane l, lane order
 * r0 r2 r4 r6 r1 r3 r5 r7) for nt tokens (x[t] + b = token t's block): the
 * nibbles are unpacked once, then per token acc[t] = fma(d_w * d_x, isum, acc[t]). */
static inline __attribute__((always_inline)) void gv_q4_0_block(const uint8_t *const *q, size_t off,
                                                               const kq8_32 *const *x, int64_t b, int nt, __m256 *acc) {
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256i lo[4], hi[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) { /* rows 2k (low half) and 2k+1 (high half) */
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)(q[k] + off + 2))),
                                            _mm_loadu_si128((const void *)(q[k + 4] + off + 2)), 1);
        lo[k] = _mm256_and_si256(v, m4), hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    __m256 dw = gv_scales8(q, off);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        const kq8_32 *xt = x[t] + b;
        const __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)xt->q));
        const __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(xt->q + 16)));
        __m256i p[4];
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
            p[k] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[k], xlo), _mm256_maddubs_epi16(hi[k], xhi));
        /* halves: low [r0 r2 | r4 r6], high [r1 r3 | r5 r7] after two 16-bit levels and a madd */
        __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
        __m256i is = _mm256_sub_epi32(_mm256_madd_epi16(h, ones), _mm256_set1_epi32(8 * xt->sum));
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xt->d)), _mm256_cvtepi32_ps(is), acc[t]);
    }
}

static inline __attribute__((always_inline)) void gv_q4_0_tile(const uint8_t *const *rows, int64_t nb,
                                                              const void *const *xv, const int8_t *const *xr,
                                                              const uint8_t *pf, float (*out)[8], int nt) {
    const kq8_32 *x[GV_NT];
    (void)xr;
    for (int t = 0; t < nt; t++) x[t] = xv[t];
    /* lane order r0 r2 r4 r6 r1 r3 r5 r7 */
    const uint8_t *q[8] = {rows[0], rows[2], rows[4], rows[6], rows[1], rows[3], rows[5], rows[7]};
    const size_t bb = sizeof(block_q4_0);
    __m256 acc[GV_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) { /* 72 bytes per row: one prefetch per row */
        gv_prefetch_span(pf + (size_t)b * 8 * bb, 4 * 8 * bb);
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) gv_q4_0_block(q, (size_t)(b + u) * bb, x, b + u, nt, acc);
    }
    for (; b < nb; b++) gv_q4_0_block(q, (size_t)b * bb, x, b, nt, acc);
    for (int t = 0; t < nt; t++)
        _mm256_storeu_ps(out[t], _mm256_permutevar8x32_ps(acc[t], _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
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
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x->d)), _mm256_cvtepi32_ps(avx2_reduce8(p)), acc);
}

static inline __attribute__((always_inline)) void gv_q8_0_tile(const uint8_t *const *rows, int64_t nb,
                                                              const void *const *xv, const int8_t *const *xr,
                                                              const uint8_t *pf, float (*out)[8], int nt) {
    const kq8_32 *x[GV_NT];
    (void)xr;
    for (int t = 0; t < nt; t++) x[t] = xv[t];
    const uint8_t *const *q = rows;
    const size_t bb = sizeof(block_q8_0);
    __m256 acc[GV_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* 68 bytes per row: one prefetch per row */
        gv_prefetch_span(pf + (size_t)b * 8 * bb, 2 * 8 * bb);
        _Pragma("GCC unroll 2") for (int u = 0; u < 2; u++) _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
            acc[t] = gv_q8_0_block(q, (size_t)(b + u) * bb, x[t] + b + u, acc[t]);
    }
    for (; b < nb; b++)
        for (int t = 0; t < nt; t++) acc[t] = gv_q8_0_block(q, (size_t)b * bb, x[t] + b, acc[t]);
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(out[t], acc[t]);
}

/* ------------------------------------------------------------ Q4_K
 *
 * Per row and 64-element pair p of sub-blocks (2p: low nibbles of qs[32p..],
 * 2p+1: high nibbles), 16 code bytes are broadcast to both halves and shifted by
 * 0 (low half) or 4 (high half): the low half holds 16 codes of sub-block 2p, the
 * high half 16 of 2p+1, so one madd with [sc_2p x 8 | sc_2p+1 x 8] scales both
 * (x is reordered to match once per call, gv_q4_k_xorder). |maddubs pair| <= 2 *
 * 15 * 127, two added <= 7620, times sc <= 63 in int32. The 6-bit scales and mins
 * are unpacked with byte shuffles, two rows per register. */

/* x reordered for gv_q4_k_tile: per block and pair p, [x 64p..+15, x 64p+32..+47]
 * then [x 64p+16..+31, x 64p+48..+63]. */
static void gv_q4_k_xorder(int8_t *xr, const kq8_256 *x, int64_t nb) {
    for (int64_t b = 0; b < nb; b++)
        for (int p = 0; p < 4; p++) {
            const int8_t *s = x[b].q + 64 * p;
            int8_t *d = xr + 256 * b + 64 * p;
            memcpy(d, s, 16), memcpy(d + 16, s + 32, 16), memcpy(d + 32, s + 16, 16), memcpy(d + 48, s + 48, 16);
        }
}

/* Two rows' packed scales (low half: row a, high half: row b) as bytes sc0..7,
 * m0..7 per half (GGUF: sc/m 0-3 in the low 6 bits of bytes 0-3 / 4-7, sc/m 4-7
 * in the nibbles of bytes 8-11 with their top 2 bits in the top of bytes 0-3 / 4-7). */
static inline __attribute__((always_inline)) __m256i gv_q4_k_scales2(const uint8_t *a, const uint8_t *b) {
    const __m256i s = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const void *)a)),
                                              _mm_loadu_si128((const void *)b), 1);
    const __m256i ia = _mm256_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11,
                                        4, 5, 6, 7, 8, 9, 10, 11);
    const __m256i ib = _mm256_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 0, 1, 2,
                                        3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m256i ma = _mm256_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0, 63, 63, 63, 63, 15,
                                        15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
    const __m256i mh = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 15, 15, 15, 15);
    __m256i A = _mm256_shuffle_epi8(s, ia), B = _mm256_shuffle_epi8(s, ib);
    __m256i lo = _mm256_or_si256(_mm256_and_si256(A, ma), _mm256_and_si256(_mm256_srli_epi16(A, 4), mh));
    return _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(B, 2), _mm256_set1_epi8(0x30)));
}

/* pshufb masks: [sc_2p as int16 x 8 | sc_2p+1 x 8] from bytes sc0..7 in both halves */
#define GV_SCP(p)                                                                                                  \
    {2 * (p), -1, 2 * (p), -1, 2 * (p), -1, 2 * (p), -1, 2 * (p), -1, 2 * (p), -1, 2 * (p), -1, 2 * (p), -1,         \
     2 * (p) + 1, -1, 2 * (p) + 1, -1, 2 * (p) + 1, -1, 2 * (p) + 1, -1, 2 * (p) + 1, -1, 2 * (p) + 1, -1,             \
     2 * (p) + 1, -1, 2 * (p) + 1, -1}
static const int8_t gv_scp[4][32] = {GV_SCP(0), GV_SCP(1), GV_SCP(2), GV_SCP(3)};
#undef GV_SCP

/* row's exact int32 sum_j sc_j * dot_j spread over 8 lanes, per token t into
 * acc[t] (xr[t] + xo = token t's reordered block); sc = its scale bytes in both
 * halves. The nibbles and scales are unpacked once for all tokens. */
static inline __attribute__((always_inline)) void gv_q4_k_row(const uint8_t *qs, const int8_t *const *xr, size_t xo,
                                                             __m256i sc, int nt, __m256i *acc) {
    const __m256i m4 = _mm256_set1_epi8(15), sh = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
    _Pragma("GCC unroll 4") for (int p = 0; p < 4; p++) {
        __m256i u = _mm256_and_si256(_mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(qs + 32 * p))), sh), m4);
        __m256i v = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(qs + 32 * p + 16))), sh), m4);
        __m256i s = _mm256_shuffle_epi8(sc, _mm256_loadu_si256((const void *)gv_scp[p]));
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            __m256i d = _mm256_add_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const void *)(xr[t] + xo + 64 * p))),
                                         _mm256_maddubs_epi16(v, _mm256_loadu_si256((const void *)(xr[t] + xo + 64 * p + 32))));
            acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(d, s));
        }
    }
}

static inline __attribute__((always_inline)) void gv_q4_k_block(const uint8_t *const *q, size_t off,
                                                               const kq8_256 *const *x, int64_t b,
                                                               const int8_t *const *xr, int nt, __m256 *acc) {
    const __m256i mins16 = _mm256_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1, 8, -1, 9, -1,
                                            10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1);
    __m256i part[GV_NT][8], mn[GV_NT][4], r[GV_NT];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) { /* rows k and k + 4 */
        const block_q4_K *wa = (const block_q4_K *)(q[k] + off), *wb = (const block_q4_K *)(q[k + 4] + off);
        __m256i sc = gv_q4_k_scales2(wa->scales, wb->scales), ms = _mm256_shuffle_epi8(sc, mins16);
        for (int t = 0; t < nt; t++) /* [row k: 4 | row k+4: 4] */
            mn[t][k] = _mm256_madd_epi16(ms, _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)x[t][b].bsum32)));
        gv_q4_k_row(wa->qs, xr, (size_t)(256 * b), _mm256_permute2x128_si256(sc, sc, 0x00), nt, r);
        for (int t = 0; t < nt; t++) part[t][k] = r[t];
        gv_q4_k_row(wb->qs, xr, (size_t)(256 * b), _mm256_permute2x128_si256(sc, sc, 0x11), nt, r);
        for (int t = 0; t < nt; t++) part[t][k + 4] = r[t];
    }
    __m256 dw = gv_scales8(q, off + offsetof(block_q4_K, d)), dm = gv_scales8(q, off + offsetof(block_q4_K, dmin));
    for (int t = 0; t < nt; t++) {
        __m256i is = avx2_reduce8(part[t]);
        __m256i im = _mm256_hadd_epi32(_mm256_hadd_epi32(mn[t][0], mn[t][1]), _mm256_hadd_epi32(mn[t][2], mn[t][3]));
        __m256 dx = _mm256_set1_ps(x[t][b].d);
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(is), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(im), acc[t]);
    }
}

static inline __attribute__((always_inline)) void gv_q4_k_tile(const uint8_t *const *rows, int64_t nb,
                                                              const void *const *xv, const int8_t *const *xr,
                                                              const uint8_t *pf, float (*out)[8], int nt) {
    const kq8_256 *x[GV_NT];
    for (int t = 0; t < nt; t++) x[t] = xv[t];
    __m256 acc[GV_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        gv_prefetch_span(pf + (size_t)b * 8 * sizeof(block_q4_K), 8 * sizeof(block_q4_K));
        gv_q4_k_block(rows, (size_t)b * sizeof(block_q4_K), x, b, xr, nt, acc);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(out[t], acc[t]);
}

/* ------------------------------------------------------------ Q6_K
 *
 * Each 32-byte vector of 6-bit codes holds sub-blocks 2k (low half) and 2k+1
 * (high half) of one 128-element half h, so one madd with [sc_2k x 8 | sc_2k+1 x
 * 8] scales both; |maddubs pair| <= 2 * 63 * 127. The -32 code offset, 32 * sum_j
 * sc_j * bsum16_j, is subtracted from the row's lanes before the one reduction
 * (integer sums are exact in any order). */

/* pshufb masks: [sc_2k as int16 x 8 | sc_2k+1 x 8] from 8 int16 scales in both halves */
#define GV_SCQ(k)                                                                                                  \
    {4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, \
     4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k), 4 * (k) + 1, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2,       \
     4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2,         \
     4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3, 4 * (k) + 2, 4 * (k) + 3}
static const int8_t gv_scq[4][32] = {GV_SCQ(0), GV_SCQ(1), GV_SCQ(2), GV_SCQ(3)};
#undef GV_SCQ

/* row's exact int32 isum spread over 8 lanes, per token t into acc[t] (x[t] + b
 * = token t's block); the codes and scales are unpacked once for all tokens. */
static inline __attribute__((always_inline)) void gv_q6_k_row(const block_q6_K *w, const kq8_256 *const *x, int64_t b,
                                                             int nt, __m256i *acc) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)w->scales));
    /* -32 * sum_j sc_j * bsum16_j, spread over the lanes */
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                  _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const void *)x[t][b].bsum16)), 5));
    _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
        __m256i q[4];
        avx2_q6k_codes(w, h, q);
        /* the 8 scales of this half in both 128-bit halves */
        __m256i sh = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00); /* an immediate for clang */
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            __m256i s = _mm256_shuffle_epi8(sh, _mm256_loadu_si256((const void *)gv_scq[k]));
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
                __m256i d = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const void *)(x[t][b].q + 128 * h + 32 * k)));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(d, s));
            }
        }
    }
}

static inline __attribute__((always_inline)) void gv_q6_k_tile(const uint8_t *const *rows, int64_t nb,
                                                              const void *const *xv, const int8_t *const *xr,
                                                              const uint8_t *pf, float (*out)[8], int nt) {
    const kq8_256 *x[GV_NT];
    (void)xr;
    for (int t = 0; t < nt; t++) x[t] = xv[t];
    __m256 acc[GV_NT];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * sizeof(block_q6_K);
        gv_prefetch_span(pf + 8 * off, 8 * sizeof(block_q6_K));
        __m256i part[GV_NT][8], r[GV_NT];
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
            gv_q6_k_row((const block_q6_K *)(rows[i] + off), x, b, nt, r);
            for (int t = 0; t < nt; t++) part[t][i] = r[t];
        }
        __m256 dw = gv_scales8(rows, off + offsetof(block_q6_K, d));
        for (int t = 0; t < nt; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(x[t][b].d)), _mm256_cvtepi32_ps(avx2_reduce8(part[t])),
                                     acc[t]);
    }
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(out[t], acc[t]);
}

/* ------------------------------------------------------------ dispatch */

/* 8 rows' outputs (no bias) for NT tokens into out[t][8]; x[t] = token t's
 * quantized row, xr[t] = it reordered by xorder (or unused) */
#define GV_TILE_ARGS                                                                                                \
    const uint8_t *const *rows, int64_t nb, const void *const *x, const int8_t *const *xr, const uint8_t *pf,      \
        float(*out)[8]
typedef void (*gv_tile_fn)(GV_TILE_ARGS);
typedef void (*gv_xorder_fn)(int8_t *xr, const kq8_256 *x, int64_t nb);

/* name_1 .. name_4: the tile with a constant token count, so its accumulators stay in registers */
#define GV_TILE_NT(name)                                                                                           \
    static void name##_1(GV_TILE_ARGS) { name(rows, nb, x, xr, pf, out, 1); }                                       \
    static void name##_2(GV_TILE_ARGS) { name(rows, nb, x, xr, pf, out, 2); }                                       \
    static void name##_3(GV_TILE_ARGS) { name(rows, nb, x, xr, pf, out, 3); }                                       \
    static void name##_4(GV_TILE_ARGS) { name(rows, nb, x, xr, pf, out, 4); }
GV_TILE_NT(gv_q4_0_tile)
GV_TILE_NT(gv_q8_0_tile)
GV_TILE_NT(gv_q4_k_tile)
GV_TILE_NT(gv_q6_k_tile)
#undef GV_TILE_NT

#define GV_XR_MAX (KERN_GEMV_AVX2_MAX_TOKENS * 32768) /* reordered x on the stack: n_tokens * cols up to this */

static const struct {
    uint32_t type;
    gv_tile_fn tile[GV_NT]; /* [nt - 1] */
    gv_xorder_fn xorder;    /* NULL: the tile reads j->xq as is */
} gv_tiles[] = {
    {TENSOR_Q4_0, {gv_q4_0_tile_1, gv_q4_0_tile_2, gv_q4_0_tile_3, gv_q4_0_tile_4}, NULL},
    {TENSOR_Q8_0, {gv_q8_0_tile_1, gv_q8_0_tile_2, gv_q8_0_tile_3, gv_q8_0_tile_4}, NULL},
    {TENSOR_Q4_K, {gv_q4_k_tile_1, gv_q4_k_tile_2, gv_q4_k_tile_3, gv_q4_k_tile_4}, gv_q4_k_xorder},
    {TENSOR_Q6_K, {gv_q6_k_tile_1, gv_q6_k_tile_2, gv_q6_k_tile_3, gv_q6_k_tile_4}, NULL},
};

int kern_gemv_avx2_supports(uint32_t type) {
    for (size_t i = 0; i < sizeof gv_tiles / sizeof gv_tiles[0]; i++)
        if (gv_tiles[i].type == type) return 1;
    return 0;
}

void kern_gemv_avx2(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const gv_tile_fn *tile = NULL;
    gv_xorder_fn xorder = NULL;
    for (size_t i = 0; i < sizeof gv_tiles / sizeof gv_tiles[0]; i++)
        if (gv_tiles[i].type == w->type) tile = gv_tiles[i].tile, xorder = gv_tiles[i].xorder;
    const int n = j->n_tokens;
    if (!tile || n < 1 || n > KERN_GEMV_AVX2_MAX_TOKENS || j->prec != KERN_FAST || !j->xq ||
        (xorder && (int64_t)n * w->cols > GV_XR_MAX)) {
        kern_mm_rows_scalar(j, r0, r1);
        return;
    }
    const int64_t nb = w->cols / tensor_type_get(w->type)->block_elems;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    const size_t xstride = (size_t)nb * (xorder || kern_mm_uses_x256(w->type) ? sizeof(kq8_256) : sizeof(kq8_32));
    _Alignas(32) int8_t xr[GV_XR_MAX];
    const void *xs[KERN_GEMV_AVX2_MAX_TOKENS];
    const int8_t *xrs[KERN_GEMV_AVX2_MAX_TOKENS];
    for (int t = 0; t < n; t++) {
        xs[t] = (const uint8_t *)j->xq + (size_t)t * xstride;
        xrs[t] = xr + (size_t)t * (size_t)w->cols;
        if (xorder) xorder(xr + (size_t)t * (size_t)w->cols, xs[t], nb);
    }
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        const uint8_t *rows[8];
        for (int i = 0; i < 8; i++) rows[i] = (const uint8_t *)w->data + (size_t)(r + i) * rb;
        for (int t0 = 0; t0 < n; t0 += GV_NT) { /* the tile's later token groups read it from cache */
            const int nt = n - t0 < GV_NT ? n - t0 : GV_NT;
            float out[GV_NT][8];
            tile[nt - 1](rows, nb, xs + t0, xrs + t0, rows[0] + 8 * rb, out);
            for (int t = 0; t < nt; t++)
                for (int i = 0; i < 8; i++)
                    j->y[(size_t)(t0 + t) * w->rows + r + i] = j->bias ? out[t][i] + j->bias[r + i] : out[t][i];
        }
    }
    if (r < r1) kern_mm_rows_scalar(j, r, r1);
}
