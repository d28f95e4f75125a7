/* gemm_avx2.c - the AVX2 level's quantized FAST matmul in lane = row tiles of 8
 * rows: Q8_0 repacked once at load (kern_pack_avx2, from kern_matrix_prepare;
 * avx2_mm_rows in ops_avx2.c picks it when w->packed holds the layout, for
 * every token count), Q4_0, Q4_K and Q6_K rearranged tile by tile inside the
 * call for jobs of many tokens (avx2_mm_rows: KERN_AVX2_Q4_MANY / _Q4K_MANY /
 * _Q6K_MANY; fewer tokens and unpacked Q8_0 run ops_avx2.c). The same arithmetic as the scalar reference, bit
 * for bit (ops_internal.h). Why: the row-wise kernels of ops_avx2.c reduce 8
 * horizontal sums per block and token (hadd trees) and keep 8 x nt partial
 * registers live (spills for nt > 1); here each lane accumulates its own row, so
 * a token's block costs 8 x (broadcast, [sign], vpmaddubsw, vpmaddwd, add) plus
 * one float step, with nothing to reduce.
 *
 * Q8_0 layout, per tile of 8 rows (Q4_0 the same with codes 0..15 as bytes; Q4_K
 * below):
 *   [nb x 16 B: the 8 rows' f16 scales of block b][pad to 64][nb x 256 B quants]
 * where quant register k (32 B) of block b holds, in lane r, the 4 weights
 * w[r][32b + 4k .. 32b + 4k + 3] as int8. The bytes are those of the GGUF blocks
 * (34 per row and block), only reordered; rows past the end of the matrix are
 * zero (scale 0, never stored).
 *
 * Per block and token: for k = 0..7, the token's 4 codes q[4k..4k+3] are
 * broadcast to all lanes, vpmaddubsw(|w|, sign(q, w)) gives exact s16 pairs
 * (|pair| <= 2*128*127), vpmaddwd with ones sums them to s32 and the 8 registers
 * add up, so lane r holds row r's exact int32 block dot; then one float step
 * acc = fma(d_w * d_x, (float)isum, acc) per lane - the scalar chain of each
 * output, in the same block order. Up to 4 tokens share each weight register
 * (4 x (int sum + float acc) + 6 temporaries = 14 of the 16 ymm registers).
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "avx2_util.h"
#include "ops_internal.h"

#define GM_ROWS 8       /* rows per tile (lanes) */
#define GM_NT 4         /* tokens sharing a weight register */
#define GM_PREFETCH 8   /* blocks ahead, one-token passes */
#define GM_QBYTES 256   /* quant bytes of one tile block */

/* Bytes of the scale region of a tile (nb x 16, padded to 64). */
static size_t gm_scale_bytes(int64_t nb) { return ((size_t)nb * 16 + 63) & ~(size_t)63; }

static size_t gm_tile_bytes(int64_t nb) { return gm_scale_bytes(nb) + (size_t)nb * GM_QBYTES; }

/* 8x8 transpose of 32-bit elements: out[k] dword r = in[r] dword k. */
static inline void transpose8x8(__m256i v[8]) {
    __m256i a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        a[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; h++) {
            b[i + 2 * h] = _mm256_unpacklo_epi64(a[i + h], a[i + 2 + h]);
            b[i + 2 * h + 1] = _mm256_unpackhi_epi64(a[i + h], a[i + 2 + h]);
        }
    /* b[k], k < 4: dword k (low half) and k + 4 (high half) of rows 0-3; b[4 + k]: the same of rows 4-7 */
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_permute2x128_si256(b[k], b[k + 4], 0x20);
        v[k + 4] = _mm256_permute2x128_si256(b[k], b[k + 4], 0x31);
    }
}

/* Repack a Q8_0 matrix into 8-row tiles (layout above): per tile and block, the
 * 8 rows' 32 quants are one 8x8 transpose of dwords. 1 if the type is not one
 * this level repacks, -1 if out of memory. */
int kern_pack_avx2(kern_matrix *m) {
    if (m->type != TENSOR_Q8_0 || m->rows <= 0 || m->cols <= 0 || m->cols % 32) return 1;
    const int64_t nb = m->cols / 32, tiles = (m->rows + GM_ROWS - 1) / GM_ROWS;
    const size_t rb = tensor_row_bytes(m->type, m->cols), tb = gm_tile_bytes(nb), sb = gm_scale_bytes(nb);
    const size_t bytes = KERN_PACK_ALIGN + (size_t)tiles * tb;
    uint8_t *p = aligned_alloc(KERN_PACK_ALIGN, (bytes + KERN_PACK_ALIGN - 1) & ~(size_t)(KERN_PACK_ALIGN - 1));
    if (!p) return -1;
    kern_pack_header h = {KERN_PACK_MAGIC, KERN_AVX2, m->type, 0};
    memset(p, 0, KERN_PACK_ALIGN);
    memcpy(p, &h, sizeof h);
    for (int64_t t = 0; t < tiles; t++) {
        uint8_t *tile = p + KERN_PACK_ALIGN + (size_t)t * tb;
        const int n = m->rows - t * GM_ROWS < GM_ROWS ? (int)(m->rows - t * GM_ROWS) : GM_ROWS;
        memset(tile, 0, sb); /* scales of missing rows, and the padding, are 0 */
        for (int64_t b = 0; b < nb; b++) {
            __m256i v[GM_ROWS];
            for (int i = 0; i < GM_ROWS; i++) {
                if (i >= n) {
                    v[i] = _mm256_setzero_si256();
                    continue;
                }
                const block_q8_0 *src = (const block_q8_0 *)((const uint8_t *)m->data + (size_t)(t * GM_ROWS + i) * rb) + b;
                memcpy(tile + (size_t)b * 16 + 2 * i, &src->d, 2);
                v[i] = _mm256_loadu_si256((const void *)src->qs);
            }
            transpose8x8(v);
            for (int k = 0; k < 8; k++) _mm256_store_si256((void *)(tile + sb + (size_t)b * GM_QBYTES + 32 * k), v[k]);
        }
    }
    m->packed = p;
    m->packed_bytes = bytes;
    return 0;
}

static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* One tile (8 rows) x nt tokens over all nb blocks: acc[t] lane r = y[t][row r]
 * before the bias. Q8_0: int8 weights, vpmaddubsw(|w|, sign(q, w)); Q4_0 (tiles
 * rearranged at run time, see gm_rows_q4_0): codes 0..15 as u8, vpmaddubsw(c, q)
 * (|pair| <= 2*15*127) and isum = sum c*q - 8 * sum q. */
static inline __attribute__((always_inline)) void gm_tile(uint32_t type, const uint8_t *tile, int64_t nb,
                                                         const kq8_32 *const *xs, int nt, __m256 *acc) {
    const __m256i ones = _mm256_set1_epi16(1);
    const uint8_t *qbase = tile + gm_scale_bytes(nb);
    _Pragma("GCC unroll 4")
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qbase + (size_t)b * GM_QBYTES;
        if (nt == 1 && b + GM_PREFETCH < nb)
            _Pragma("GCC unroll 4") for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)blk + GM_PREFETCH * GM_QBYTES + 64 * l, _MM_HINT_T0);
        __m256i is[GM_NT];
        _Pragma("GCC unroll 4")
        for (int t = 0; t < nt; t++) is[t] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8")
        for (int k = 0; k < 8; k++) {
            const __m256i w = _mm256_load_si256((const void *)(blk + 32 * k));
            const __m256i aw = type == TENSOR_Q8_0 ? _mm256_sign_epi8(w, w) : w;
            _Pragma("GCC unroll 4")
            for (int t = 0; t < nt; t++) {
                __m256i s = bcast4(xs[t][b].q + 4 * k);
                if (type == TENSOR_Q8_0) s = _mm256_sign_epi8(s, w);
                is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, s), ones));
                __asm__("" : "+x"(is[t])); /* keep one running sum: a reassociated tree spills */
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const void *)(tile + (size_t)b * 16)));
        _Pragma("GCC unroll 4")
        for (int t = 0; t < nt; t++) {
            __m256i v = is[t];
            if (type == TENSOR_Q4_0) v = _mm256_sub_epi32(v, _mm256_set1_epi32(8 * xs[t][b].sum));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xs[t][b].d)), _mm256_cvtepi32_ps(v), acc[t]);
        }
    }
}

/* A tile loop for a fixed token count; xs: nt pointers to kq8_32 or kq8_256 rows. */
typedef void (*gm_tile_fn)(const uint8_t *, int64_t, const void *const *, __m256 *);
/* FN_T[nt]: FN(T, ..., nt) for nt = 1..4, a compile-time token count each; XT
 * the activation block type. */
#define GM_TILE_NT(FN, T, XT, N)                                                                \
    static void FN##_##T##_##N(const uint8_t *t, int64_t nb, const void *const *xs, __m256 *acc) { \
        FN(T, t, nb, (const XT *const *)xs, N, acc);                                                \
    }
#define GM_TILE_TABLE(FN, T, XT)                                                                        \
    GM_TILE_NT(FN, T, XT, 1) GM_TILE_NT(FN, T, XT, 2) GM_TILE_NT(FN, T, XT, 3) GM_TILE_NT(FN, T, XT, 4) \
    static const gm_tile_fn FN##_##T[GM_NT + 1] = {NULL, FN##_##T##_1, FN##_##T##_2, FN##_##T##_3, FN##_##T##_4};
GM_TILE_TABLE(gm_tile, TENSOR_Q8_0, kq8_32)
GM_TILE_TABLE(gm_tile, TENSOR_Q4_0, kq8_32)

/* y[t0 + t][r .. r + n) = acc[t] (+ bias[0 .. n)), t < nt. */
static void gm_store(const kern_mm_job *j, const __m256 *acc, int nt, int t0, int64_t r, int n, const float *bias) {
    const __m256 vb = _mm256_loadu_ps(bias);
    for (int t = 0; t < nt; t++) {
        float *y = j->y + (size_t)(t0 + t) * j->w->rows + r;
        __m256 v = j->bias ? _mm256_add_ps(acc[t], vb) : acc[t];
        if (n == GM_ROWS) {
            _mm256_storeu_ps(y, v);
        } else {
            float tmp[GM_ROWS];
            _mm256_storeu_ps(tmp, v);
            memcpy(y, tmp, (size_t)n * sizeof(float));
        }
    }
}

/* Every token of the job against one tile of `n` valid rows at row r, into y
 * (+ bias). Tokens go in ceil(n_tokens / 4) groups of sizes as equal as possible
 * (5 = 3 + 2, not 4 + 1): a one-token tile costs about half a four-token one. */
static void gm_tile_all_tokens(const kern_mm_job *j, const gm_tile_fn *tiles, const uint8_t *tile, int64_t r, int n) {
    const int x256 = kern_mm_uses_x256(j->w->type);
    const int64_t nb = j->w->cols / (x256 ? 256 : 32);
    const size_t xstride = (size_t)nb * (x256 ? sizeof(kq8_256) : sizeof(kq8_32));
    float bias[GM_ROWS] = {0};
    if (j->bias) memcpy(bias, j->bias + r, (size_t)n * sizeof(float));
    const int groups = (j->n_tokens + GM_NT - 1) / GM_NT;
    for (int g = 0, t0 = 0; g < groups; g++) {
        const int nt = j->n_tokens / groups + (g < j->n_tokens % groups);
        const void *xs[GM_NT];
        for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)j->xq + (size_t)(t0 + t) * xstride;
        __m256 acc[GM_NT];
        tiles[nt](tile, nb, xs, acc);
        gm_store(j, acc, nt, t0, r, n, bias);
        t0 += nt;
    }
}

/* Rows [r0, r1) of a job whose matrix holds this level's packed Q8_0 tiles
 * (r0 a multiple of 8; the pool gives multiples of 16). */
void kern_mm_rows_avx2_packed(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const size_t tb = gm_tile_bytes(j->w->cols / 32);
    for (int64_t r = r0; r < r1; r += GM_ROWS) {
        const uint8_t *tile = (const uint8_t *)j->w->packed + KERN_PACK_ALIGN + (size_t)(r / GM_ROWS) * tb;
        gm_tile_all_tokens(j, gm_tile_TENSOR_Q8_0, tile, r, r1 - r < GM_ROWS ? (int)(r1 - r) : GM_ROWS);
    }
}

/* A rearrangement of one 8-row tile (n valid rows of row length rb from `data`,
 * nb blocks) into `tile`. */
typedef void (*gm_rearrange_fn)(uint8_t *tile, const uint8_t *data, size_t rb, int n, int64_t nb);

/* Rows [r0, r1): each 8-row tile rearranged into a buffer of `tile_bytes`, then
 * every token against it (the row-wise kernels if the buffer cannot be had). */
static void gm_rows_rearranged(const kern_mm_job *j, int64_t r0, int64_t r1, int64_t nb, size_t tile_bytes,
                               gm_rearrange_fn rearrange, const gm_tile_fn *tiles) {
    const size_t rb = tensor_row_bytes(j->w->type, j->w->cols);
    uint8_t *tile = kern_scratch(KERN_SCRATCH_TILE, tile_bytes);
    if (!tile) {
        kern_mm_rows_avx2(j, r0, r1);
        return;
    }
    for (int64_t r = r0; r < r1; r += GM_ROWS) {
        const int n = r1 - r < GM_ROWS ? (int)(r1 - r) : GM_ROWS;
        rearrange(tile, (const uint8_t *)j->w->data + (size_t)r * rb, rb, n, nb);
        gm_tile_all_tokens(j, tiles, tile, r, n);
    }
}

static void gm_rearrange_q4_0(uint8_t *tile, const uint8_t *data, size_t rb, int n, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(15);
    const size_t sb = gm_scale_bytes(nb);
    for (int64_t b = 0; b < nb; b++) {
        __m256i v[8];
        uint16_t d[8] = {0};
        for (int i = 0; i < GM_ROWS; i++) {
            if (i >= n) {
                v[i] = _mm256_setzero_si256();
                continue;
            }
            const block_q4_0 *blk = (const block_q4_0 *)(data + (size_t)i * rb) + b;
            memcpy(&d[i], &blk->d, 2);
            __m128i q = _mm_loadu_si128((const void *)blk->qs);
            v[i] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
        }
        transpose8x8(v);
        memcpy(tile + (size_t)b * 16, d, 16);
        for (int k = 0; k < 8; k++) _mm256_store_si256((void *)(tile + sb + (size_t)b * GM_QBYTES + 32 * k), v[k]);
    }
}

/* Q4_0 rows [r0, r1) for many tokens: each 8-row tile is first rearranged into
 * the packed layout (f16 scales; codes 0..15, register k lane r = codes
 * 4k..4k+3 of row r, in the GGUF order: low nibbles are codes 0-15, high 16-31)
 * in a buffer of this call, then runs the lane = row loop. The rearrangement
 * costs about one token's pass, so avx2_mm_rows picks it only for jobs of
 * KERN_AVX2_Q4_MANY tokens or more. */
void kern_mm_rows_avx2_q4_0(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->w->cols / 32;
    gm_rows_rearranged(j, r0, r1, nb, gm_tile_bytes(nb), gm_rearrange_q4_0, gm_tile_TENSOR_Q4_0);
}

/* ------------------------------------------------------------ Q4_K, many tokens
 *
 * Each 8-row tile is rearranged per call, block by block (GM_Q4K_BYTES each):
 *   [d[8] f16 | dmin[8] f16]                     32 B
 *   sc reg j (j < 8): lane r = (sc_j, sc_j) of row r as two int16    8 x 32 B
 *   min reg i (i < 4): lane r = (m_2i, m_2i+1) of row r as int16    4 x 32 B
 *   codes: sub-block j reg k: lane r = codes 4k..4k+3 of sub-block j   64 x 32 B
 * The scale goes into vpmaddwd in place of ones: sc_j * (pair + pair), exact
 * (|pair| <= 2*15*127), so isum_sc = sum over j, k of those, lane = row; isum_min
 * = sum_i vpmaddwd(min reg i, (bsum32_2i, bsum32_2i+1)). Then the two float
 * steps of ops_internal.h per block. */
#define GM_Q4K_BYTES 2464
#define GM_Q4K_SC 32
#define GM_Q4K_MIN 288
#define GM_Q4K_CODES 416

/* One 8-row tile (n valid rows from `rows`) of Q4_K into the layout above. */
static void gm_rearrange_q4k(uint8_t *tile, const uint8_t *data, size_t rb, int n, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * GM_Q4K_BYTES;
        uint16_t d[16] = {0};
        int16_t sc[8][8][2] = {{{0}}}, mn[4][8][2] = {{{0}}};
        __m256i lo[4][8], hi[4][8];
        for (int i = 0; i < GM_ROWS; i++) {
            if (i >= n) {
                for (int c = 0; c < 4; c++) lo[c][i] = hi[c][i] = _mm256_setzero_si256();
                continue;
            }
            const block_q4_K *w = (const block_q4_K *)(data + (size_t)i * rb) + b;
            memcpy(&d[i], &w->d, 2);
            memcpy(&d[8 + i], &w->dmin, 2);
            for (int j = 0; j < 8; j++) {
                int s, m;
                kern_q4k_scale_min(w->scales, j, &s, &m);
                sc[j][i][0] = sc[j][i][1] = (int16_t)s;
                mn[j / 2][i][j & 1] = (int16_t)m;
            }
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const void *)(w->qs + 32 * c));
                lo[c][i] = _mm256_and_si256(q, m4);
                hi[c][i] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            }
        }
        memcpy(blk, d, 32);
        memcpy(blk + GM_Q4K_SC, sc, sizeof sc);
        memcpy(blk + GM_Q4K_MIN, mn, sizeof mn);
        for (int c = 0; c < 4; c++) { /* sub-block 2c: low nibbles of qs[32c..], 2c + 1: high */
            transpose8x8(lo[c]);
            transpose8x8(hi[c]);
            for (int k = 0; k < 8; k++) {
                _mm256_store_si256((void *)(blk + GM_Q4K_CODES + 256 * (2 * c) + 32 * k), lo[c][k]);
                _mm256_store_si256((void *)(blk + GM_Q4K_CODES + 256 * (2 * c + 1) + 32 * k), hi[c][k]);
            }
        }
    }
}

/* ------------------------------------------------------------ Q6_K, many tokens
 *
 * Per block (GM_Q6K_BYTES), rearranged per call like Q4_K:
 *   d[8] f16, padded                                                   32 B
 *   sc reg j (j < 16): lane r = (sc_j, sc_j) of row r as int16     16 x 32 B
 *   pair reg i (i < 8): lane r = (sc_2i, sc_2i+1) of row r          8 x 32 B
 *   codes (0..63): chunk c (32 codes) reg k: lane r = codes 32c + 4k .. + 3   64 x 32 B
 * isum = sum over c, k of vpmaddwd(vpmaddubsw(codes, q), sc_(2c + k/4)) (|pair| <=
 * 2*63*127) - 32 * sum_i vpmaddwd(pair reg i, (bsum16_2i, bsum16_2i+1)): the
 * scalar sum_j sc_j * (dot_j - 32 * bsum16_j), exactly. */
#define GM_Q6K_BYTES 2848
#define GM_Q6K_SC 32
#define GM_Q6K_PAIR 544
#define GM_Q6K_CODES 800

/* One tile x nt tokens of the rearranged Q4_K / Q6_K layouts (below): per block,
 * 8 chunks of 32 codes x 8 registers with the sub-block's scale register in
 * vpmaddwd, then the block's correction (Q4_K: the mins, a second float step;
 * Q6_K: -32 * the scaled 16-sums) and the float step(s) of ops_internal.h. */
static inline __attribute__((always_inline)) void gm_tile256(uint32_t type, const uint8_t *tile, int64_t nb,
                                                            const kq8_256 *const *xs, int nt, __m256 *acc) {
    const int q4k = type == TENSOR_Q4_K;
    const size_t bytes = q4k ? GM_Q4K_BYTES : GM_Q6K_BYTES, corr = q4k ? GM_Q4K_MIN : GM_Q6K_PAIR;
    const size_t codes0 = q4k ? GM_Q4K_CODES : GM_Q6K_CODES;
    _Pragma("GCC unroll 4")
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + (size_t)b * bytes;
        __m256i is[GM_NT];
        _Pragma("GCC unroll 4")
        for (int t = 0; t < nt; t++) is[t] = _mm256_setzero_si256();
        for (int c = 0; c < 8; c++) {
            const uint8_t *codes = blk + codes0 + 256 * c;
            _Pragma("GCC unroll 2")
            for (int hk = 0; hk < 2; hk++) { /* Q6_K: a scale per 16 codes; Q4_K: per 32 */
                const __m256i sc = _mm256_load_si256((const void *)(blk + 32 + 32 * (q4k ? c : 2 * c + hk)));
                _Pragma("GCC unroll 4")
                for (int k = 4 * hk; k < 4 * hk + 4; k++) {
                    const __m256i w = _mm256_load_si256((const void *)(codes + 32 * k));
                    _Pragma("GCC unroll 4")
                    for (int t = 0; t < nt; t++) {
                        __m256i s = bcast4(xs[t][b].q + 32 * c + 4 * k);
                        is[t] = _mm256_add_epi32(is[t], _mm256_madd_epi16(_mm256_maddubs_epi16(w, s), sc));
                        __asm__("" : "+x"(is[t]));
                    }
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_load_si128((const void *)blk));
        _Pragma("GCC unroll 4")
        for (int t = 0; t < nt; t++) {
            const kq8_256 *x = &xs[t][b];
            const int16_t *bsum = q4k ? x->bsum32 : x->bsum16;
            __m256i cs = _mm256_setzero_si256();
            for (int i = 0; i < (q4k ? 4 : 8); i++) {
                int32_t pair;
                memcpy(&pair, &bsum[2 * i], 4);
                cs = _mm256_add_epi32(cs, _mm256_madd_epi16(_mm256_load_si256((const void *)(blk + corr + 32 * i)),
                                                            _mm256_set1_epi32(pair)));
            }
            const __m256 dx = _mm256_set1_ps(x->d);
            if (q4k) {
                const __m256 dm = _mm256_cvtph_ps(_mm_load_si128((const void *)(blk + 16)));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(is[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(cs), acc[t]);
            } else {
                const __m256i v = _mm256_sub_epi32(is[t], _mm256_slli_epi32(cs, 5));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(v), acc[t]);
            }
        }
    }
}

GM_TILE_TABLE(gm_tile256, TENSOR_Q4_K, kq8_256)
GM_TILE_TABLE(gm_tile256, TENSOR_Q6_K, kq8_256)

/* One 8-row tile (n valid rows from `data`) of Q6_K into the layout above. */
static void gm_rearrange_q6k(uint8_t *tile, const uint8_t *data, size_t rb, int n, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = tile + (size_t)b * GM_Q6K_BYTES;
        uint16_t d[16] = {0};
        int16_t sc[16][8][2] = {{{0}}}, pr[8][8][2] = {{{0}}};
        __m256i ch[8][8]; /* [chunk][row] */
        for (int i = 0; i < GM_ROWS; i++) {
            if (i >= n) {
                for (int c = 0; c < 8; c++) ch[c][i] = _mm256_setzero_si256();
                continue;
            }
            const block_q6_K *w = (const block_q6_K *)(data + (size_t)i * rb) + b;
            memcpy(&d[i], &w->d, 2);
            for (int j = 0; j < 16; j++) {
                sc[j][i][0] = sc[j][i][1] = w->scales[j];
                pr[j / 2][i][j & 1] = w->scales[j];
            }
            for (int h = 0; h < 2; h++) { /* the scalar reference's code order, 32 at a time */
                __m256i q[4];
                avx2_q6k_codes(w, h, q);
                for (int k = 0; k < 4; k++) ch[4 * h + k][i] = q[k];
            }
        }
        memcpy(blk, d, 32);
        memcpy(blk + GM_Q6K_SC, sc, sizeof sc);
        memcpy(blk + GM_Q6K_PAIR, pr, sizeof pr);
        for (int c = 0; c < 8; c++) {
            transpose8x8(ch[c]);
            for (int k = 0; k < 8; k++) _mm256_store_si256((void *)(blk + GM_Q6K_CODES + 256 * c + 32 * k), ch[c][k]);
        }
    }
}

/* Q6_K rows [r0, r1) for many tokens (avx2_mm_rows: KERN_AVX2_Q6K_MANY or more). */
void kern_mm_rows_avx2_q6_k(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->w->cols / 256;
    gm_rows_rearranged(j, r0, r1, nb, (size_t)nb * GM_Q6K_BYTES, gm_rearrange_q6k, gm_tile256_TENSOR_Q6_K);
}

/* Q4_K rows [r0, r1) for many tokens (avx2_mm_rows: KERN_AVX2_Q4K_MANY or more; the
 * rearrangement costs about 4 tokens' passes). */
void kern_mm_rows_avx2_q4_k(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const int64_t nb = j->w->cols / 256;
    gm_rows_rearranged(j, r0, r1, nb, (size_t)nb * GM_Q4K_BYTES, gm_rearrange_q4k, gm_tile256_TENSOR_Q4_K);
}
