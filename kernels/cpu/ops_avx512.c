/* ops_avx512.c - the AVX-512 level (F/BW/VL/DQ + VNNI): the same arithmetic as
 * the scalar reference, bit for bit (definitions in ops_internal.h), and the
 * level's backend (kern_backend_avx512, at the end; what it leaves NULL is
 * AVX2's).
 *
 * Quantized matmul, FAST: weights are repacked at load time into tiles of 16
 * rows, lane = row, so each lane accumulates its own row's blocks sequentially,
 * exactly as the scalar loop does. Inside a block the integer dot is vpdpbusd
 * (u8 x s8): Q8_0 is stored as w+128 and Q4_0/Q4_K/Q6_K as their unsigned codes,
 * and the offsets are removed with the activation block sums (exact integers).
 * Many tokens: each block's weights are unpacked once into registers and used
 * for a tile of up to 4 tokens.
 *
 * Packed layouts, per tile of 16 rows: first the scale parts of all nb blocks
 * (padded to 64 bytes), then the quant parts, so every register load is 64-byte
 * aligned; lane r = row r of the tile. Per block:
 *   Q8_0:  scales d[16] f16 (32 B) | quants 8 x 64 B: reg k, lane r = w[r][4k..4k+3] + 128
 *   Q4_0:  d[16] (32 B) | 4 x 64 B: reg k, lane r byte i = q[4k+i] | q[16+4k+i] << 4
 *   Q4_K:  d[16] dmin[16] (64 B) | sc[8][16] u8 | mins[4][16][2] u8 | 8 sub-blocks
 *          x 4 regs, nibbles as Q4_0 within each 32 (2304 B)
 *   Q6_K:  d[16] (32 B) | sc[8][16][2] i8 | 8 chunks of 32 x (4 low-nibble regs
 *          as Q4_0, then 2 regs of high bits: reg h lane r byte i =
 *          sum_c hi2(q[32s+16h+4c+i]) << 2c) (3328 B)
 * The same bytes as the GGUF blocks, except Q4_K (+4 B per row and block: the
 * 6-bit scales and mins are stored unpacked). The decode loops prefetch ahead:
 * without it the Q6_K stream ran at half speed; Q4_K and Q6_K 8 blocks ahead
 * into L2 (PF_KBLOCKS), Q8_0 and Q4_0 8 KiB ahead into L2.
 * Rows past the end of the matrix are zero (scale 0).
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"

#define NT_MAX 4
/* GCC at -O2 keeps these short loops rolled, with W[] spilled to the stack and the
 * accumulator copied every step: unrolled, W[] stays in registers */
#define UNROLL8 _Pragma("GCC unroll 8")
/* Q4_K / Q6_K decode: prefetch this many blocks ahead (18 / 26 KiB) into L2;
 * 2 blocks into L1 gave 9-11 GB/s of weights per CPU-second, this 12-16. */
#define PF_KBLOCKS 8

/* ------------------------------------------------------------ float */

/* kern_dot16_ref with one 16-lane accumulator; masked tail (zero lanes add +0). */
static inline float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    __m128 d = _mm_add_ss(c, _mm_shuffle_ps(c, c, 1));
    return _mm_cvtss_f32(d);
}

float kern_dot16_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), acc);
    if (c < n) {
        __mmask16 m = (__mmask16)((1u << (n - c)) - 1);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), acc);
    }
    return hsum16(acc);
}

/* kern_dot16_avx512 of one weight row with 4 token rows at once: each token keeps
 * its own accumulator (the same per-lane sequence), the weights load once. */
static void dot16x4(const float *a, const float *b0, const float *b1, const float *b2, const float *b3, int64_t n,
                    float out[4]) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        __m512 w = _mm512_loadu_ps(a + c);
        c0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b0 + c), c0);
        c1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b1 + c), c1);
        c2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b2 + c), c2);
        c3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b3 + c), c3);
    }
    if (c < n) {
        __mmask16 m = (__mmask16)((1u << (n - c)) - 1);
        __m512 w = _mm512_maskz_loadu_ps(m, a + c);
        c0 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, b0 + c), c0);
        c1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, b1 + c), c1);
        c2 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, b2 + c), c2);
        c3 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, b3 + c), c3);
    }
    out[0] = hsum16(c0), out[1] = hsum16(c1), out[2] = hsum16(c2), out[3] = hsum16(c3);
}

/* The same with f16 or bf16 weights converted on the fly (exact conversions). */
static float dot16_f16(const uint16_t *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16)
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(a + c))), _mm512_loadu_ps(b + c), acc);
    if (c < n) {
        __mmask16 m = (__mmask16)((1u << (n - c)) - 1);
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + c)), _mm512_maskz_loadu_ps(m, b + c),
                              acc);
    }
    return hsum16(acc);
}

static inline __m512 bf16x16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

static float dot16_bf16(const uint16_t *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= n; c += 16)
        acc = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const void *)(a + c))), _mm512_loadu_ps(b + c), acc);
    if (c < n) {
        __mmask16 m = (__mmask16)((1u << (n - c)) - 1);
        acc = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, a + c)), _mm512_maskz_loadu_ps(m, b + c), acc);
    }
    return hsum16(acc);
}

void kern_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps) {
    float ss = kern_dot16_avx512(x, x, n);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    __m512 s = _mm512_set1_ps(scale);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), s), _mm512_loadu_ps(w + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s), _mm512_maskz_loadu_ps(m, w + i)));
    }
}

/* kern_expf_ref, 16 lanes, the same operations in the same order. */
static inline __m512 exp16(__m512 x) {
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 low = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_NGE_UQ);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    e = _mm512_mask_blend_ps(low, e, _mm512_setzero_ps());
    return _mm512_mask_blend_ps(nan, e, x);
}

void kern_swiglu_avx512(float *y, const float *gate, const float *up, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
    }
}

void kern_add_avx512(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* kern_attention_head_scalar, with vector dots and value updates. */
void kern_attention_head_avx512(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh,
                                int n_head_kv, int head_dim) {
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
    float m = -INFINITY, l = 0.0f, qbuf[KERN_MAX_HEAD_DIM]; /* qbuf: a Q8_0 row piece as f32 */
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
            s[i] = (f16 ? dot16_f16(k, q, head_dim) : kern_dot16_avx512(k, q, head_dim)) * scale;
            if (s[i] > bmax) bmax = s[i];
        }
        float mn = m > bmax ? m : bmax;
        float c = kern_expf_ref(m - mn);
        l = l * c;
        __m512 cv = _mm512_set1_ps(c);
        for (int d = 0; d < head_dim; d += 16) {
            __mmask16 mk = head_dim - d >= 16 ? 0xffff : (__mmask16)((1u << (head_dim - d)) - 1);
            _mm512_mask_storeu_ps(out + d, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, out + d), cv));
        }
        for (int i = 0; i < nb; i++) {
            float e = kern_expf_ref(s[i] - mn);
            l = l + e;
            __m512 ev = _mm512_set1_ps(e);
            const uint8_t *v;
            if (q8) {
                kern_kv_load_q8_0((const uint8_t *)kv->v + (size_t)(p0 + i) * kv->row_stride, off, head_dim, qbuf);
                v = (const uint8_t *)qbuf;
            } else {
                v = (const uint8_t *)kv->v + (size_t)(p0 + i) * kv->row_stride + (size_t)off * esz;
            }
            for (int d = 0; d < head_dim; d += 16) {
                __mmask16 mk = head_dim - d >= 16 ? 0xffff : (__mmask16)((1u << (head_dim - d)) - 1);
                __m512 vv = f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, v + (size_t)d * 2))
                                : _mm512_maskz_loadu_ps(mk, v + (size_t)d * 4);
                _mm512_mask_storeu_ps(out + d, mk, _mm512_fmadd_ps(ev, vv, _mm512_maskz_loadu_ps(mk, out + d)));
            }
        }
        m = mn;
    }
    __m512 lv = _mm512_set1_ps(l);
    for (int d = 0; d < head_dim; d += 16) {
        __mmask16 mk = head_dim - d >= 16 ? 0xffff : (__mmask16)((1u << (head_dim - d)) - 1);
        _mm512_mask_storeu_ps(out + d, mk, _mm512_div_ps(_mm512_maskz_loadu_ps(mk, out + d), lv));
    }
}

/* ------------------------------------------------------------ packing */

static size_t packed_block_bytes(uint32_t type) {
    switch (type) {
    case TENSOR_Q8_0: return 544;
    case TENSOR_Q4_0: return 288;
    case TENSOR_Q4_K: return 2368;
    case TENSOR_Q6_K: return 3360;
    default: return 0;
    }
}

/* Bytes of a block's scale part, kept in a separate region at the start of each
 * tile so that every quant register of the tile is 64-byte aligned. */
static size_t packed_scale_bytes(uint32_t type) { return type == TENSOR_Q4_K ? 64 : 32; }

/* Bytes of one tile of 16 rows: [nb scale parts, padded to 64][nb quant parts]. */
static size_t packed_tile_bytes(uint32_t type, int64_t nb) {
    size_t sb = packed_scale_bytes(type);
    return (((size_t)nb * sb + 63) & ~(size_t)63) + (size_t)nb * (packed_block_bytes(type) - sb);
}

static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Nibble registers for 32 codes (0..15) of 16 rows: out[k*64 + r*4 + i]. */
static void pack_nibbles(uint8_t *out, int r, const uint8_t *q32) {
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++) out[k * 64 + r * 4 + i] = (uint8_t)((q32[4 * k + i] & 15) | (q32[16 + 4 * k + i] << 4));
}

/* One row's block b into the tile block `o` at lane r. */
static void pack_block(uint32_t type, uint8_t *sp, uint8_t *o, int r, const uint8_t *src) {
    if (type == TENSOR_Q8_0) {
        const block_q8_0 *b = (const block_q8_0 *)src;
        memcpy(sp + 2 * r, &b->d, 2);
        for (int k = 0; k < 8; k++)
            for (int i = 0; i < 4; i++) o[k * 64 + r * 4 + i] = (uint8_t)(b->qs[4 * k + i] + 128);
    } else if (type == TENSOR_Q4_0) {
        const block_q4_0 *b = (const block_q4_0 *)src;
        uint8_t q[32];
        for (int i = 0; i < 16; i++) q[i] = b->qs[i] & 15, q[i + 16] = b->qs[i] >> 4;
        memcpy(sp + 2 * r, &b->d, 2);
        pack_nibbles(o, r, q);
    } else if (type == TENSOR_Q4_K) {
        const block_q4_K *b = (const block_q4_K *)src;
        memcpy(sp + 2 * r, &b->d, 2);
        memcpy(sp + 32 + 2 * r, &b->dmin, 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_scale_min(b->scales, j, &sc, &m);
            o[16 * j + r] = (uint8_t)sc;
            o[128 + (j / 2) * 32 + r * 2 + (j & 1)] = (uint8_t)m;
            uint8_t q[32];
            for (int l = 0; l < 32; l++) q[l] = (b->qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 15;
            pack_nibbles(o + 256 + j * 256, r, q);
        }
    } else if (type == TENSOR_Q6_K) {
        const block_q6_K *b = (const block_q6_K *)src;
        uint8_t q[256];
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
            uint8_t *d = q + 128 * half;
            for (int l = 0; l < 32; l++) {
                d[l] = (uint8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
                d[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                d[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                d[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
        memcpy(sp + 2 * r, &b->d, 2);
        for (int j = 0; j < 16; j++) o[(j / 2) * 32 + r * 2 + (j & 1)] = (uint8_t)b->scales[j];
        for (int s = 0; s < 8; s++) {
            pack_nibbles(o + 256 + s * 384, r, q + 32 * s);
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 4; i++) {
                    uint8_t v = 0;
                    for (int c = 0; c < 4; c++) v |= (uint8_t)((q[32 * s + 16 * h + 4 * c + i] >> 4) << (2 * c));
                    o[256 + s * 384 + 256 + h * 64 + r * 4 + i] = v;
                }
        }
    }
}

/* Repack a quantized matrix into 16-row tiles. 1 if the type needs none. */
int kern_pack_avx512(kern_matrix *m) {
    size_t pb = packed_block_bytes(m->type);
    const tensor_type_info *ti = tensor_type_get(m->type);
    if (!pb || !ti || m->rows <= 0 || m->cols % ti->block_elems) return 1;
    int64_t nb = m->cols / ti->block_elems, tiles = (m->rows + 15) / 16;
    size_t rb = tensor_row_bytes(m->type, m->cols);
    size_t tb = packed_tile_bytes(m->type, nb), sb = packed_scale_bytes(m->type), qoff = tb - (size_t)nb * (pb - sb);
    size_t bytes = KERN_PACK_ALIGN + (size_t)tiles * tb;
    uint8_t *p = aligned_alloc(KERN_PACK_ALIGN, (bytes + KERN_PACK_ALIGN - 1) & ~(size_t)(KERN_PACK_ALIGN - 1));
    if (!p) return -1;
    memset(p, 0, bytes);
    if (m->type == TENSOR_Q8_0) /* zero weights are stored as 128 */
        for (int64_t t = 0; t < tiles; t++) memset(p + KERN_PACK_ALIGN + t * tb + qoff, 128, (size_t)nb * 512);
    kern_pack_header h = {KERN_PACK_MAGIC, KERN_AVX512, m->type, 0};
    memcpy(p, &h, sizeof h);
    for (int64_t r = 0; r < m->rows; r++) {
        const uint8_t *row = (const uint8_t *)m->data + (size_t)r * rb;
        uint8_t *tile = p + KERN_PACK_ALIGN + (size_t)(r / 16) * tb;
        for (int64_t b = 0; b < nb; b++)
            pack_block(m->type, tile + b * sb, tile + qoff + b * (pb - sb), (int)(r % 16), row + b * ti->block_bytes);
    }
    m->packed = p;
    m->packed_bytes = bytes;
    return 0;
}

/* ------------------------------------------------------------ quantized tiles */

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Unpack nibble register k of a 32-code group into (lo, hi) dword groups. */
static inline void nib(__m512i L, __m512i *lo, __m512i *hi) {
    const __m512i m4 = _mm512_set1_epi8(15);
    *lo = _mm512_and_si512(L, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
}

/* Q8_0 / Q4_0 tile: 16 rows x nt tokens, all blocks. acc[t] per token. */
static inline __attribute__((always_inline)) void tile_q32(uint32_t type, const uint8_t *tb, int64_t nb,
                                                          const kq8_32 *const *xs, int nt, __m512 *acc) {
    const size_t qb = type == TENSOR_Q8_0 ? 512 : 256;
    const int off = type == TENSOR_Q8_0 ? 128 : 8;
    const uint8_t *qbase = tb + (((size_t)nb * 32 + 63) & ~(size_t)63);
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = qbase + b * qb;
        /* 8 KiB ahead into L2 (8 blocks into L1 read 13-16 GB/s of Q8_0 weights per CPU-second,
         * this 18-19); no bound: past the last block this fetches the next tile (contiguous; a
         * prefetch never faults) */
        for (size_t off = 0; off < qb; off += 64) _mm_prefetch((const char *)blk + 8192 + off, _MM_HINT_T1);
        __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const void *)(tb + 32 * b)));
        __m512i W[8];
        if (type == TENSOR_Q8_0) {
            UNROLL8 for (int k = 0; k < 8; k++) W[k] = _mm512_load_si512(blk + 64 * k);
        } else {
            UNROLL8 for (int k = 0; k < 4; k++) nib(_mm512_load_si512(blk + 64 * k), &W[k], &W[k + 4]);
        }
        UNROLL8 for (int t = 0; t < nt; t++) {
            const kq8_32 *x = &xs[t][b];
            __m512i is = _mm512_setzero_si512();
            UNROLL8 for (int k = 0; k < 8; k++) is = _mm512_dpbusd_epi32(is, W[k], bcast4(x->q + 4 * k));
            is = _mm512_sub_epi32(is, _mm512_set1_epi32(off * x->sum));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(x->d)), _mm512_cvtepi32_ps(is), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void tile_q4k(const uint8_t *tb, int64_t nb, const kq8_256 *const *xs,
                                                          int nt, __m512 *acc) {
    UNROLL8 for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tb + (((size_t)nb * 64 + 63) & ~(size_t)63) + b * 2304, *sblk = tb + 64 * b;
        for (int off = 0; off < 2304; off += 64) _mm_prefetch((const char *)blk + PF_KBLOCKS * 2304 + off, _MM_HINT_T1);
        __m512i isa[NT_MAX], ism[NT_MAX];
        UNROLL8 for (int t = 0; t < nt; t++) isa[t] = ism[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            __m512i W[8];
            UNROLL8 for (int k = 0; k < 4; k++) nib(_mm512_load_si512(blk + 256 + 256 * j + 64 * k), &W[k], &W[k + 4]);
            __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(blk + 16 * j)));
            UNROLL8 for (int t = 0; t < nt; t++) {
                const int8_t *xq = xs[t][b].q + 32 * j;
                __m512i dot = _mm512_setzero_si512();
                UNROLL8 for (int k = 0; k < 8; k++) dot = _mm512_dpbusd_epi32(dot, W[k], bcast4(xq + 4 * k));
                isa[t] = _mm512_add_epi32(isa[t], _mm512_mullo_epi32(dot, sc));
            }
        }
        UNROLL8 for (int p = 0; p < 4; p++) {
            __m512i mv = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const void *)(blk + 128 + 32 * p)));
            UNROLL8 for (int t = 0; t < nt; t++) {
                const int16_t *bs = xs[t][b].bsum32 + 2 * p;
                int32_t pair = (int32_t)(((uint32_t)(uint16_t)bs[1] << 16) | (uint16_t)bs[0]);
                ism[t] = _mm512_dpwssd_epi32(ism[t], mv, _mm512_set1_epi32(pair));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)sblk));
        __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(sblk + 32)));
        UNROLL8 for (int t = 0; t < nt; t++) {
            __m512 dx = _mm512_set1_ps(xs[t][b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(isa[t]), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(ism[t]), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void tile_q6k(const uint8_t *tb, int64_t nb, const kq8_256 *const *xs,
                                                          int nt, __m512 *acc) {
    const __m512i m30 = _mm512_set1_epi8(0x30);
    UNROLL8 for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = tb + (((size_t)nb * 32 + 63) & ~(size_t)63) + b * 3328, *sblk = tb + 32 * b;
        /* the hardware prefetcher falls behind this stream: fetch ahead */
        for (int off = 0; off < 3328; off += 64) _mm_prefetch((const char *)blk + PF_KBLOCKS * 3328 + off, _MM_HINT_T1);
        __m512i isa[NT_MAX], ism[NT_MAX];
        UNROLL8 for (int t = 0; t < nt; t++) isa[t] = ism[t] = _mm512_setzero_si512();
        for (int s = 0; s < 8; s++) {
            __m512i W[8];
            __m512i H0 = _mm512_load_si512(blk + 512 + 384 * s), H1 = _mm512_load_si512(blk + 576 + 384 * s);
            UNROLL8 for (int k = 0; k < 4; k++) nib(_mm512_load_si512(blk + 256 + 384 * s + 64 * k), &W[k], &W[k + 4]);
            W[0] = _mm512_ternarylogic_epi32(W[0], _mm512_slli_epi16(H0, 4), m30, 0xF8); /* a | (b & c) */
            W[1] = _mm512_ternarylogic_epi32(W[1], _mm512_slli_epi16(H0, 2), m30, 0xF8); /* a | (b & c) */
            W[2] = _mm512_ternarylogic_epi32(W[2], H0, m30, 0xF8); /* a | (b & c) */
            W[3] = _mm512_ternarylogic_epi32(W[3], _mm512_srli_epi16(H0, 2), m30, 0xF8); /* a | (b & c) */
            W[4] = _mm512_ternarylogic_epi32(W[4], _mm512_slli_epi16(H1, 4), m30, 0xF8); /* a | (b & c) */
            W[5] = _mm512_ternarylogic_epi32(W[5], _mm512_slli_epi16(H1, 2), m30, 0xF8); /* a | (b & c) */
            W[6] = _mm512_ternarylogic_epi32(W[6], H1, m30, 0xF8); /* a | (b & c) */
            W[7] = _mm512_ternarylogic_epi32(W[7], _mm512_srli_epi16(H1, 2), m30, 0xF8); /* a | (b & c) */
            __m512i sv = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const void *)(blk + 32 * s)));
            __m512i sc0 = _mm512_srai_epi32(_mm512_slli_epi32(sv, 16), 16), sc1 = _mm512_srai_epi32(sv, 16);
            UNROLL8 for (int t = 0; t < nt; t++) {
                const int8_t *xq = xs[t][b].q + 32 * s;
                __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();
                UNROLL8 for (int k = 0; k < 4; k++) d0 = _mm512_dpbusd_epi32(d0, W[k], bcast4(xq + 4 * k));
                UNROLL8 for (int k = 0; k < 4; k++) d1 = _mm512_dpbusd_epi32(d1, W[4 + k], bcast4(xq + 16 + 4 * k));
                isa[t] = _mm512_add_epi32(isa[t], _mm512_add_epi32(_mm512_mullo_epi32(d0, sc0), _mm512_mullo_epi32(d1, sc1)));
                const int16_t *bs = xs[t][b].bsum16 + 2 * s;
                int32_t pair = (int32_t)(((uint32_t)(uint16_t)bs[1] << 16) | (uint16_t)bs[0]);
                ism[t] = _mm512_dpwssd_epi32(ism[t], sv, _mm512_set1_epi32(pair));
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)sblk));
        UNROLL8 for (int t = 0; t < nt; t++) {
            __m512i is = _mm512_sub_epi32(isa[t], _mm512_slli_epi32(ism[t], 5));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xs[t][b].d)), _mm512_cvtepi32_ps(is), acc[t]);
        }
    }
}

/* One tile, nt tokens (a compile-time constant after inlining). */
static inline __attribute__((always_inline)) void tile_run(uint32_t type, const uint8_t *tb, int64_t nb,
                                                          const void *const *xs, int nt, __m512 *acc) {
    if (type == TENSOR_Q8_0 || type == TENSOR_Q4_0)
        tile_q32(type, tb, nb, (const kq8_32 *const *)xs, nt, acc);
    else if (type == TENSOR_Q4_K)
        tile_q4k(tb, nb, (const kq8_256 *const *)xs, nt, acc);
    else
        tile_q6k(tb, nb, (const kq8_256 *const *)xs, nt, acc);
}

#define TILE_FOR_TYPE(T)                                                                     \
    static void tile_##T(const uint8_t *tb, int64_t nb, const void *const *xs, int nt, __m512 *acc) { \
        switch (nt) {                                                                        \
        case 1: tile_run(T, tb, nb, xs, 1, acc); break;                                      \
        case 2: tile_run(T, tb, nb, xs, 2, acc); break;                                      \
        case 3: tile_run(T, tb, nb, xs, 3, acc); break;                                      \
        default: tile_run(T, tb, nb, xs, 4, acc); break;                                     \
        }                                                                                    \
    }
TILE_FOR_TYPE(TENSOR_Q8_0)
TILE_FOR_TYPE(TENSOR_Q4_0)
TILE_FOR_TYPE(TENSOR_Q4_K)
TILE_FOR_TYPE(TENSOR_Q6_K)

static void mm_packed(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const tensor_type_info *ti = tensor_type_get(w->type);
    const int64_t nb = w->cols / ti->block_elems;
    const size_t tile_bytes = packed_tile_bytes(w->type, nb);
    const size_t xstride = kern_mm_uses_x32(w->type) ? (size_t)nb * sizeof(kq8_32) : (size_t)nb * sizeof(kq8_256);
    void (*tile)(const uint8_t *, int64_t, const void *const *, int, __m512 *) =
        w->type == TENSOR_Q8_0 ? tile_TENSOR_Q8_0
        : w->type == TENSOR_Q4_0 ? tile_TENSOR_Q4_0
        : w->type == TENSOR_Q4_K ? tile_TENSOR_Q4_K
                                 : tile_TENSOR_Q6_K;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *tb = (const uint8_t *)w->packed + KERN_PACK_ALIGN + (size_t)(r / 16) * tile_bytes;
        int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        __mmask16 mk = (__mmask16)((1u << nr) - 1);
        __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += NT_MAX) {
            int nt = j->n_tokens - t0 < NT_MAX ? j->n_tokens - t0 : NT_MAX;
            const void *xs[NT_MAX];
            for (int t = 0; t < nt; t++) xs[t] = (const uint8_t *)j->xq + (size_t)(t0 + t) * xstride;
            __m512 acc[NT_MAX];
            tile(tb, nb, xs, nt, acc);
            for (int t = 0; t < nt; t++) {
                __m512 v = j->bias ? _mm512_add_ps(acc[t], bias) : acc[t];
                _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, mk, v);
            }
        }
    }
}

/* Rows [r0, r1) (r0 a multiple of 16). Quantized FAST uses the packed tiles
 * (avx512_mm_rows only picks this then); everything else is a float dot per
 * (row, token), with the row converted or dequantized once. */
void kern_mm_rows_avx512(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    if (j->prec == KERN_FAST && (kern_mm_uses_x32(w->type) || kern_mm_uses_x256(w->type))) {
        mm_packed(j, r0, r1);
        return;
    }
    const int64_t cols = w->cols, rows = w->rows;
    const size_t rb = tensor_row_bytes(w->type, cols);
    if (j->n_tokens == 1 && (w->type == TENSOR_F32 || w->type == TENSOR_F16 || w->type == TENSOR_BF16)) {
        for (int64_t r = r0; r < r1; r++) { /* decode: stream the row, convert in registers */
            const uint8_t *wrow = (const uint8_t *)w->data + (size_t)r * rb;
            float acc = w->type == TENSOR_F32   ? kern_dot16_avx512((const float *)wrow, j->x, cols)
                        : w->type == TENSOR_F16 ? dot16_f16((const uint16_t *)wrow, j->x, cols)
                                                : dot16_bf16((const uint16_t *)wrow, j->x, cols);
            j->y[r] = j->bias ? acc + j->bias[r] : acc;
        }
        return;
    }
    /* many tokens (or EXACT): 16 rows as f32 at a time (they stay in L2), then
     * every token in groups of 4 against each of them */
    float *buf = NULL;
    if (w->type != TENSOR_F32) {
        buf = aligned_alloc(64, ((size_t)16 * cols * sizeof(float) + 63) & ~(size_t)63);
        if (!buf) return;
    }
    for (int64_t rb0 = r0; rb0 < r1; rb0 += 16) {
        int nr = r1 - rb0 < 16 ? (int)(r1 - rb0) : 16;
        const float *wf[16];
        for (int i = 0; i < nr; i++) {
            const uint8_t *wrow = (const uint8_t *)w->data + (size_t)(rb0 + i) * rb;
            if (w->type == TENSOR_F32) {
                wf[i] = (const float *)wrow;
            } else {
                quant_dequantize_row(w->type, wrow, buf + (size_t)i * cols, cols);
                wf[i] = buf + (size_t)i * cols;
            }
        }
        int t = 0;
        for (; t + 4 <= j->n_tokens; t += 4) {
            const float *x = j->x + (size_t)t * cols;
            for (int i = 0; i < nr; i++) {
                float acc[4];
                int64_t r = rb0 + i;
                dot16x4(wf[i], x, x + cols, x + 2 * cols, x + 3 * cols, cols, acc);
                for (int u = 0; u < 4; u++) j->y[(size_t)(t + u) * rows + r] = j->bias ? acc[u] + j->bias[r] : acc[u];
            }
        }
        for (; t < j->n_tokens; t++)
            for (int i = 0; i < nr; i++) {
                int64_t r = rb0 + i;
                float acc = kern_dot16_avx512(wf[i], j->x + (size_t)t * cols, cols);
                j->y[(size_t)t * rows + r] = j->bias ? acc + j->bias[r] : acc;
            }
    }
    free(buf);
}

/* ------------------------------------------------------------ peak */

/* int8 multiply-adds per second of one thread running vpdpbusd on 12
 * independent accumulators for about `seconds` (counted as 2 ops each). */
double kern_peak_int8_avx512(double seconds, double (*now)(void)) {
    __m512i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    double t0 = now(), t;
    long iters = 0;
    do {
        for (int r = 0; r < 10000; r++)
            for (int i = 0; i < 12; i++) {
                acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
                __asm__ volatile("" : "+v"(acc[i]));
            }
        iters += 10000;
    } while ((t = now()) - t0 < seconds);
    int32_t sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_epi32(acc[i]);
    __asm__ volatile("" : : "r"(sink));
    return (double)iters * 12 * 64 * 2 / (t - t0);
}

/* Sum of the 64-bit words of buf (bytes a multiple of 512), read with 64-byte
 * loads into 8 accumulators and software prefetch 4 KiB ahead, as the kernels
 * stream (prefetches past the end never fault): a memory-read probe. */
uint64_t kern_stream_sum_avx512(const void *buf, size_t bytes) {
    __m512i a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm512_setzero_si512();
    const uint8_t *p = buf;
    for (size_t o = 0; o + 512 <= bytes; o += 512) {
        for (int i = 0; i < 8; i++) _mm_prefetch((const char *)p + o + 4096 + 64 * i, _MM_HINT_T0); /* as the kernels do */
        for (int i = 0; i < 8; i++) a[i] = _mm512_add_epi64(a[i], _mm512_load_si512(p + o + 64 * i));
    }
    for (int i = 1; i < 8; i++) a[0] = _mm512_add_epi64(a[0], a[i]);
    return (uint64_t)_mm512_reduce_add_epi64(a[0]);
}

/* quantize_block of ops_scalar.c for n = 32 or 256, 16 lanes at a time: the same
 * amax (max ignores NaN: vmaxps returns its second operand), the same scalar d and
 * id, the same product x*id, clamp to +-127 (NaN to 0) and round half to even. */
static int32_t quantize_block16(const float *x, int n, float *d, int8_t *q) {
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 mx = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) mx = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(x + i), sign), mx);
    float amax = _mm512_reduce_max_ps(mx);
    if (!(amax <= 3.0e38f)) amax = 0.0f;
    *d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const __m512 idv = _mm512_set1_ps(id), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    __m512i sum = _mm512_setzero_si512();
    for (int i = 0; i < n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), idv);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        v = _mm512_mask_blend_ps(nan, _mm512_max_ps(_mm512_min_ps(v, hi), lo), _mm512_setzero_ps());
        __m512i qi = _mm512_cvtps_epi32(v); /* MXCSR round to nearest even = nearbyintf */
        sum = _mm512_add_epi32(sum, qi);
        _mm_storeu_si128((void *)(q + i), _mm512_cvtepi32_epi8(qi));
    }
    return _mm512_reduce_add_epi32(sum);
}

void kern_quantize_x32_avx512(kq8_32 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) out[b].sum = quantize_block16(x + b * 32, 32, &out[b].d, out[b].q);
}

void kern_quantize_x256_avx512(kq8_256 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++) {
        kq8_256 *o = &out[b];
        quantize_block16(x + b * 256, 256, &o->d, o->q);
        for (int j = 0; j < 16; j++)
            o->bsum16[j] = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(o->q + 16 * j))));
        for (int j = 0; j < 8; j++) o->bsum32[j] = (int16_t)(o->bsum16[2 * j] + o->bsum16[2 * j + 1]);
    }
}

/* ------------------------------------------------------------ the AVX-512 backend */

/* Quantized FAST runs the packed tiles, so it needs them: a matrix packed for
 * another level (or not at all) runs the scalar loop, the same bits. Float
 * weights, and EXACT, run the float dots above. */
static kern_rows_fn avx512_mm_rows(const kern_mm_job *j) {
    /* issue 22's types (Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS) are not packed: q22_avx512.c
     * reads their GGUF blocks */
    if (kern_mm_quant_fast(j) && kern_q22_avx512_supports(j->w->type)) return kern_mm_rows_q22_avx512;
    if (kern_mm_quant_fast(j) && kern_kq_is_new(j->w->type)) return kern_mm_rows_kq_avx512; /* kquant_avx512.c */
    return !kern_mm_quant_fast(j) || kern_packed_for(j->w, KERN_AVX512) ? kern_mm_rows_avx512 : kern_mm_rows_scalar;
}

/* dot16 and the codec primitives are AVX2's: the row loop keeps kern_dot16_avx2
 * (the same bits) and the codecs have no AVX-512 version. */
const kern_backend kern_backend_avx512 = {
    .name = "avx512",
    .pack = kern_pack_avx512,
    .mm_rows = avx512_mm_rows,
    .quantize_x32 = kern_quantize_x32_avx512,
    .quantize_x256 = kern_quantize_x256_avx512,
    .rmsnorm = kern_rmsnorm_avx512,
    .swiglu = kern_swiglu_avx512,
    .add = kern_add_avx512,
    .attention_head = kern_attention_head_avx512,
    .peak_int8 = kern_peak_int8_avx512,
    .stream_sum = kern_stream_sum_avx512,
};
