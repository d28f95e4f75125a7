/* q22_avx512.c - the AVX-512 quantized FAST matmul of issue 22's types: Q4_1,
 * Q5_0, Q5_1, IQ4_NL (x32 activations) and IQ4_XS (x256), every token count.
 * Needs only the AVX-512 level's flags (F/BW/VL/DQ/VNNI; no VBMI).
 *
 * Same bits as the scalar reference (ops_scalar.c, q22_fast_dot_row; the float
 * steps are listed in ops_internal.h): per output row, per weight block in
 * increasing order, the exact int32 block dot, then the float step(s), with
 * lane = output row. 16 rows per tile; each block of the 16 rows is unpacked
 * once for up to Q5_NT tokens, more tokens take further passes over the tile
 * while it is in cache. Rows past the last full tile (fewer than 16) run the
 * AVX2 kernel (q22_avx2.c), the same bits.
 *
 * Weights are read in their GGUF block layout (nothing repacked: the AMX
 * kernels read the same bytes). Per block of the 16 rows:
 *  - the 16 code bytes (qs, the last 16 bytes of each 32-element block) of the
 *    16 rows become 4 registers, lane = row: four 128-bit loads per register
 *    (rows g, 4+g, 8+g, 12+g) and a 4x4 dword transpose, so register k lane r
 *    = bytes 4k..4k+3 of row r, i.e. elements 4k..4k+3 (low nibbles) and
 *    16+4k..16+4k+3 (high nibbles);
 *  - the block heads (d, m, Q5's qh, IQ4_XS's scales: bytes 0..7) are 16
 *    scalar 8-byte loads, paired into 128-bit registers and split into two
 *    lane = row dword registers (vpermt2d): on this Zen 4 CPU a vpgatherdd cost
 *    about as much as the rest of a Q4_1 block step;
 *  - Q5's bit 4: qh byte b is copied to each byte of its dword (vpshufb), a
 *    byte test against the element's bit gives a mask, and 16 is added there;
 *  - IQ4 codes become codebook values + 128 (unsigned, 1..241) with one vpshufb
 *    (16-entry table in every 128-bit lane); the +128 is removed as 128 times
 *    the activation block sum (Q5_0's -16 likewise as 16 times), exact.
 * The integer dots are vpdpbusd (u8 codes x s8 activations, no saturation).
 *
 * Decode reads every weight once: the next tile's bytes (16 contiguous rows)
 * are prefetched block by block while the current tile runs.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ops_internal.h"
#include "quant.h"

#define Q5_NT 4 /* tokens per pass over a tile */

static inline int32_t q5_ld32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The 16 bytes at p + r * rb (rows r = 0..15) as 4 registers, lane = row:
 * W[k] lane r = bytes 4k..4k+3 of row r. */
static inline __attribute__((always_inline)) void q5_load16(const uint8_t *p, size_t rb, __m512i W[4]) {
    __m512i z[4]; /* z[g] 128-bit lane l = row 4l + g */
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const void *)(p + (size_t)g * rb)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + (size_t)(4 + g) * rb)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + (size_t)(8 + g) * rb)), 2);
        z[g] = _mm512_inserti32x4(v, _mm_loadu_si128((const void *)(p + (size_t)(12 + g) * rb)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    W[0] = _mm512_unpacklo_epi64(t0, t2), W[1] = _mm512_unpackhi_epi64(t0, t2);
    W[2] = _mm512_unpacklo_epi64(t1, t3), W[3] = _mm512_unpackhi_epi64(t1, t3);
}

static inline uint64_t q5_ld64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The first 8 bytes of each of the 16 rows' block at p + r * rb: lo lane r =
 * bytes 0..3, hi lane r = bytes 4..7 (16 scalar loads and a few shuffles: a
 * dword gather costs more). */
static inline __attribute__((always_inline)) void q5_head16(const uint8_t *p, size_t rb, __m512i *lo, __m512i *hi) {
    __m128i q[8]; /* q[i] = rows 2i, 2i + 1 */
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        q[i] = _mm_insert_epi64(_mm_cvtsi64_si128((long long)q5_ld64(p + (size_t)(2 * i) * rb)),
                                (long long)q5_ld64(p + (size_t)(2 * i + 1) * rb), 1);
    const __m512i a = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1)),
        _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1), 1);
    const __m512i b = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(q[4]), q[5], 1)),
        _mm256_inserti128_si256(_mm256_castsi128_si256(q[6]), q[7], 1), 1);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *lo = _mm512_permutex2var_epi32(a, even, b);
    *hi = _mm512_permutex2var_epi32(a, _mm512_add_epi32(even, _mm512_set1_epi32(1)), b);
}

/* W[k] -> lo[k] = the low nibbles (elements 4k..), hi[k] = the high nibbles
 * (elements 16 + 4k..), as bytes 0..15. */
static inline __attribute__((always_inline)) void q5_nibbles(const __m512i W[4], __m512i lo[4], __m512i hi[4]) {
    const __m512i m4 = _mm512_set1_epi8(15);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        lo[k] = _mm512_and_si512(W[k], m4);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(W[k], 4), m4);
    }
}

/* Bit 4 of every code from qh (lane r = row r's little-endian u32 qh): element
 * i's bit is bit i of qh; element 4k+j sits in byte j of lo[k] (i < 16) and
 * element 16+4k+j in byte j of hi[k]. */
static inline __attribute__((always_inline)) void q5_high_bits(__m512i qh, __m512i lo[4], __m512i hi[4]) {
    const __m512i v16 = _mm512_set1_epi8(16);
    const __m512i even = _mm512_set1_epi32(0x08040201), odd = _mm512_set1_epi32((int)0x80402010u);
    /* vpshufb control: byte 4d of dword d, in all 4 bytes (plus b below) */
    const __m512i dw4 = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x04040404, 0x08080808, 0x0c0c0c0c));
    _Pragma("GCC unroll 4") for (int b = 0; b < 4; b++) { /* qh byte b: elements 8b..8b+7 = registers k = 2b, 2b+1 (mod 4) */
        const __m512i sb = _mm512_shuffle_epi8(qh, _mm512_add_epi32(_mm512_set1_epi32(0x01010101 * b), dw4));
        __m512i *r = b < 2 ? lo : hi;
        const int k = 2 * (b & 1);
        r[k] = _mm512_mask_add_epi8(r[k], _mm512_test_epi8_mask(sb, even), r[k], v16);
        r[k + 1] = _mm512_mask_add_epi8(r[k + 1], _mm512_test_epi8_mask(sb, odd), r[k + 1], v16);
    }
}

/* The exact dot of the 32 codes (lo, hi) with activation q[0..31], all lanes. */
static inline __attribute__((always_inline)) __m512i q5_dot32(const __m512i lo[4], const __m512i hi[4],
                                                             const int8_t *q) {
    __m512i a = _mm512_setzero_si512(), c = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        a = _mm512_dpbusd_epi32(a, lo[k], _mm512_set1_epi32(q5_ld32(q + 4 * k)));
        c = _mm512_dpbusd_epi32(c, hi[k], _mm512_set1_epi32(q5_ld32(q + 16 + 4 * k)));
    }
    return _mm512_add_epi32(a, c);
}

/* The IQ4 codebook + 128, in every 128-bit lane. */
static inline __m512i q5_table(void) {
    int8_t t[16];
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) t[i] = (int8_t)(quant_iq4nl_values[i] + 128);
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)t));
}

/* fp16 in the low 16 bits of each lane -> float, exact */
static inline __m512 q5_half_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

/* ------------------------------------------------------------ 32-element types */

static inline __attribute__((always_inline)) void q5_tile32(uint32_t type, const uint8_t *base, size_t rb,
                                                           int64_t nb, const kq8_32 *const *xs, const uint8_t *pf,
                                                           int nt, __m512 *acc_out) {
    __m512 acc[Q5_NT]; /* in registers: stored once at the end */
    const size_t bb = type == TENSOR_Q4_1 ? sizeof(block_q4_1)
                      : type == TENSOR_Q5_0 ? sizeof(block_q5_0)
                      : type == TENSOR_Q5_1 ? sizeof(block_q5_1)
                                            : sizeof(block_iq4_nl);
    const int affine = type == TENSOR_Q4_1 || type == TENSOR_Q5_1;
    const int iq4 = type == TENSOR_IQ4_NL;
    const int off_mul = type == TENSOR_Q5_0 ? 16 : iq4 ? 128 : 0; /* is -= off_mul * x.sum */
    const __m512i table = q5_table();
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        _Pragma("GCC unroll 40") for (size_t o = 0; o < 16 * bb; o += 64) _mm_prefetch((const char *)pf + 16 * off + o, _MM_HINT_T1);
        const uint8_t *p = base + off;
        __m512i W[4], lo[4], hi[4];
        q5_load16(p + bb - 16, rb, W);
        q5_nibbles(W, lo, hi);
        __m512i dm, h4; /* bytes 0..3 (d | m << 16, or d | qh[0..1] << 16) and 4..7 of each row's block */
        q5_head16(p, rb, &dm, &h4);
        if (type == TENSOR_Q5_0) /* qh = bytes 2..5 */
            q5_high_bits(_mm512_or_si512(_mm512_srli_epi32(dm, 16), _mm512_slli_epi32(h4, 16)), lo, hi);
        if (type == TENSOR_Q5_1) q5_high_bits(h4, lo, hi); /* qh = bytes 4..7 */
        if (iq4)
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
                lo[k] = _mm512_shuffle_epi8(table, lo[k]), hi[k] = _mm512_shuffle_epi8(table, hi[k]);
        const __m512 dw = q5_half_lo(dm);
        const __m512 mw = affine ? q5_half_lo(_mm512_srli_epi32(dm, 16)) : _mm512_setzero_ps();
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const kq8_32 *x = &xs[t][b];
            __m512i is = q5_dot32(lo, hi, x->q);
            if (off_mul) is = _mm512_sub_epi32(is, _mm512_set1_epi32(off_mul * x->sum));
            const __m512 dx = _mm512_set1_ps(x->d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(is), acc[t]);
            if (affine) acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(mw, dx), _mm512_set1_ps((float)x->sum), acc[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc_out[t] = acc[t];
}

/* ------------------------------------------------------------ IQ4_XS */

static inline __attribute__((always_inline)) void q5_tile_iq4xs(const uint8_t *base, size_t rb, int64_t nb,
                                                               const kq8_256 *const *xs, const uint8_t *pf, int nt,
                                                               __m512 *acc_out) {
    __m512 acc[Q5_NT]; /* in registers: stored once at the end */
    const size_t bb = sizeof(block_iq4_xs);
    const __m512i table = q5_table(), m4 = _mm512_set1_epi32(15), m30 = _mm512_set1_epi32(0x30),
                  v32 = _mm512_set1_epi32(32);
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * bb;
        _Pragma("GCC unroll 40") for (size_t o = 0; o < 16 * bb; o += 64) _mm_prefetch((const char *)pf + 16 * off + o, _MM_HINT_T1);
        const uint8_t *p = base + off;
        __m512i g0, sl; /* d | scales_h << 16, scales_l */
        q5_head16(p, rb, &g0, &sl);
        __m512i is[Q5_NT];
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) is[t] = _mm512_setzero_si512();
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            /* ls_j - 32: nibble j of scales_l, bits 2j..2j+1 of scales_h (bits 16+2j.. of g0) on top */
            const __m512i ls = _mm512_sub_epi32(
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(sl, 4 * j), m4),
                                _mm512_and_si512(_mm512_srli_epi32(g0, 12 + 2 * j), m30)),
                v32);
            __m512i W[4], lo[4], hi[4];
            q5_load16(p + 8 + 16 * j, rb, W);
            q5_nibbles(W, lo, hi);
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
                lo[k] = _mm512_shuffle_epi8(table, lo[k]), hi[k] = _mm512_shuffle_epi8(table, hi[k]);
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
                const kq8_256 *x = &xs[t][b];
                __m512i d = q5_dot32(lo, hi, x->q + 32 * j);
                d = _mm512_sub_epi32(d, _mm512_set1_epi32(128 * x->bsum32[j]));
                is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(d, ls));
            }
        }
        const __m512 dw = q5_half_lo(g0);
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xs[t][b].d)), _mm512_cvtepi32_ps(is[t]), acc[t]);
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) acc_out[t] = acc[t];
}

/* ------------------------------------------------------------ dispatch */

/* A 16-row tile (rows base + r * rb) for nt tokens; pf = the bytes to prefetch
 * (16 rows' worth, block by block); acc[t] lane r = row r's accumulator. */
typedef void (*q5_tile_fn)(const uint8_t *base, size_t rb, int64_t nb, const void *const *xs, const uint8_t *pf,
                           __m512 *acc);
#define Q5_TILE_ARGS const uint8_t *base, size_t rb, int64_t nb, const void *const *xv, const uint8_t *pf, __m512 *acc
/* name_T_N: the tile of type T with a constant token count N, so its
 * accumulators stay in registers */
#define Q5_T32(T, N)                                                                                               \
    static void q5_##T##_##N(Q5_TILE_ARGS) {                                                                       \
        q5_tile32(TENSOR_##T, base, rb, nb, (const kq8_32 *const *)xv, pf, N, acc);                               \
    }
#define Q5_TXS(N)                                                                                                  \
    static void q5_IQ4_XS_##N(Q5_TILE_ARGS) { q5_tile_iq4xs(base, rb, nb, (const kq8_256 *const *)xv, pf, N, acc); }
#define Q5_ALL(M, ...) M(__VA_ARGS__ 1) M(__VA_ARGS__ 2) M(__VA_ARGS__ 3) M(__VA_ARGS__ 4)
Q5_ALL(Q5_T32, Q4_1, )
Q5_ALL(Q5_T32, Q5_0, )
Q5_ALL(Q5_T32, Q5_1, )
Q5_ALL(Q5_T32, IQ4_NL, )
Q5_ALL(Q5_TXS, )
#undef Q5_ALL
#undef Q5_T32
#undef Q5_TXS

static const struct {
    uint32_t type;
    q5_tile_fn tile[Q5_NT]; /* [nt - 1] */
} q5_tiles[] = {
    {TENSOR_Q4_1, {q5_Q4_1_1, q5_Q4_1_2, q5_Q4_1_3, q5_Q4_1_4}},
    {TENSOR_Q5_0, {q5_Q5_0_1, q5_Q5_0_2, q5_Q5_0_3, q5_Q5_0_4}},
    {TENSOR_Q5_1, {q5_Q5_1_1, q5_Q5_1_2, q5_Q5_1_3, q5_Q5_1_4}},
    {TENSOR_IQ4_NL, {q5_IQ4_NL_1, q5_IQ4_NL_2, q5_IQ4_NL_3, q5_IQ4_NL_4}},
    {TENSOR_IQ4_XS, {q5_IQ4_XS_1, q5_IQ4_XS_2, q5_IQ4_XS_3, q5_IQ4_XS_4}},
};

int kern_q22_avx512_supports(uint32_t type) {
    for (size_t i = 0; i < sizeof q5_tiles / sizeof q5_tiles[0]; i++)
        if (q5_tiles[i].type == type) return 1;
    return 0;
}

void kern_mm_rows_q22_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const q5_tile_fn *tile = NULL;
    for (size_t i = 0; i < sizeof q5_tiles / sizeof q5_tiles[0]; i++)
        if (q5_tiles[i].type == w->type) tile = q5_tiles[i].tile;
    const size_t rb = tensor_row_bytes(w->type, w->cols);
    if (!tile || j->prec != KERN_FAST || !j->xq) {
        kern_mm_rows_q22_avx2(j, r0, r1);
        return;
    }
    const int64_t nb = w->cols / tensor_type_get(w->type)->block_elems;
    const size_t xstride = (size_t)nb * (kern_mm_uses_x256(w->type) ? sizeof(kq8_256) : sizeof(kq8_32));
    int64_t r = r0;
    for (; r + 16 <= r1; r += 16) {
        const uint8_t *base = (const uint8_t *)w->data + (size_t)r * rb;
        const __m512 bias = j->bias ? _mm512_loadu_ps(j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += Q5_NT) {
            const int nt = j->n_tokens - t0 < Q5_NT ? j->n_tokens - t0 : Q5_NT;
            const void *xs[Q5_NT];
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)j->xq + (size_t)(t0 + t) * xstride;
            __m512 acc[Q5_NT];
            /* the first pass prefetches the next tile, the later ones read this one from cache */
            tile[nt - 1](base, rb, nb, xs, t0 ? base : base + 16 * rb, acc);
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
                _mm512_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, j->bias ? _mm512_add_ps(acc[t], bias) : acc[t]);
        }
    }
    if (r < r1) kern_mm_rows_q22_avx2(j, r, r1); /* fewer than 16 rows: the AVX2 tiles, the same bits */
}
