/* gemm_amx.c - the AMX level (kern_backend_amx, at the end): the many-token
 * quantized FAST matmul of every quantized type with AMX-INT8 tiles (Q8_0, Q4_0,
 * Q4_K, Q6_K on the AVX-512 packed copy; issue 22's Q4_1, Q5_0, Q5_1, IQ4_NL,
 * IQ4_XS, Q2_K, Q3_K, Q5_K on their raw GGUF blocks: "raw GGUF blocks" below);
 * every other job (decode and small batches below AMX_MIN_TOKENS, other
 * types, float weights, EXACT) and every other operation is the AVX-512 level's (mm_rows
 * returns NULL, the other entries are NULL and filled from below).
 *
 * Layout: the AVX-512 level's packed tiles (ops_avx512.c, kern_pack_avx512, one
 * copy made at load; pack is inherited): per 16 rows and 32-element block,
 * register k (64 B) holds in dword r the 4 codes w[r][4k..4k+3]. That is exactly
 * an AMX B tile of 8 rows x 64 bytes (B[k][4n+i] = w[row n][4k+i]): Q8_0 loads it
 * straight from the packed copy (codes + 128, unsigned), Q4_0 unpacks its 4 nibble
 * registers into 8 (codes 0..15) per call, once per row tile, into a scratch.
 * The A tile is 16 tokens x 32 bytes read straight from the quantized
 * activations (kq8_32.q, stride one token's row): no copy.
 *
 * Arithmetic (ops_internal.h, FAST): per block, C[t][r] = sum_c x[t][c] *
 * (w[r][c] + off) by one tdpbsud (A signed, B unsigned) into a zeroed C tile,
 * so each block's integer sum is exact and on its own; minus off * xsum[t]
 * (exact); then, per token t with lane = row r, acc = fma(d_w * d_x,
 * (float)isum, acc) in increasing block order, + bias: the scalar loop's bits.
 *
 * The tile instructions are behind a tiny interface (tile_cfg / tile_zero /
 * tile_load / tile_dp / tile_store / tile_release) with two implementations:
 * the real instructions and a plain-C emulator of their documented semantics
 * (palette 1: a tile is rows x colsb bytes; tileloadd row m = colsb bytes at
 * base + m * stride, rows past `rows` zero; tdpb[su][su]d: C[m][n] += sum over k
 * < colsb(A)/4, i < 4 of A[m][4k+i] * B[k][4n+i] in int32; tilestored). The
 * emulator runs when BATON_AMX_EMULATE is set (and not "0") or the CPU has no
 * AMX, which also makes this level available on CPUs without AMX (backend.c;
 * for tests: it is slow).
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ops_internal.h"

#define AMX_MIN_TOKENS 4 /* fewer tokens: the AVX-512 decode kernels */
#define AMX_NT 16        /* tokens per A tile (its rows) */

/* ------------------------------------------------------------ tile interface */

/* Palette-1 tile configuration (the 64 bytes ldtilecfg reads). */
typedef struct __attribute__((aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* The emulator's tile registers: per thread, like the real ones. */
typedef struct {
    int rows, colsb;
    uint8_t d[16][64];
} emu_tile;
static _Thread_local emu_tile emu[8];

static void emu_cfg(const amx_cfg *c) {
    for (int t = 0; t < 8; t++) {
        emu[t].rows = c->rows[t] > 16 ? 16 : c->rows[t];
        emu[t].colsb = c->colsb[t] > 64 ? 64 : c->colsb[t];
        memset(emu[t].d, 0, sizeof emu[t].d);
    }
}

static void emu_zero(int t) { memset(emu[t].d, 0, sizeof emu[t].d); }

static void emu_load(int t, const void *base, size_t stride) {
    emu_tile *e = &emu[t];
    memset(e->d, 0, sizeof e->d);
    for (int m = 0; m < e->rows; m++) memcpy(e->d[m], (const uint8_t *)base + (size_t)m * stride, (size_t)e->colsb);
}

static void emu_store(int t, void *base, size_t stride) {
    const emu_tile *e = &emu[t];
    for (int m = 0; m < e->rows; m++) memcpy((uint8_t *)base + (size_t)m * stride, e->d[m], (size_t)e->colsb);
}

/* tdpb{a_signed ? s : u}{b_signed ? s : u}d C, A, B. B's bytes are first
 * spread into 16-lane int32 vectors (bt[k][i] lane n = B[k][4n + i], GNU C
 * vector types, no intrinsics), so each A byte times one vector is one step: the
 * tests run every many-token matmul through here, also under the sanitizers. */
typedef int32_t emu_v16i __attribute__((vector_size(64)));
typedef uint32_t emu_v16u __attribute__((vector_size(64)));
static inline __attribute__((always_inline)) void emu_dp(int c, int a, int b, int a_signed, int b_signed) {
    emu_tile *C = &emu[c];
    const emu_tile *A = &emu[a], *B = &emu[b];
    const int K = A->colsb / 4 < B->rows ? A->colsb / 4 : B->rows; /* B columns past colsb load as zero */
    emu_v16i bt[16][4];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < 4; i++)
            for (int n = 0; n < 16; n++) bt[k][i][n] = b_signed ? (int8_t)B->d[k][4 * n + i] : B->d[k][4 * n + i];
    for (int m = 0; m < C->rows; m++) {
        emu_v16u s; /* int32 wrap-around, as the hardware */
        memcpy(&s, C->d[m], sizeof s);
        for (int k = 0; k < K; k++)
            for (int i = 0; i < 4; i++) {
                const int32_t av = a_signed ? (int8_t)A->d[m][4 * k + i] : A->d[m][4 * k + i];
                s += (emu_v16u)(av * bt[k][i]);
            }
        memcpy(C->d[m], &s, sizeof s);
    }
}

/* The interface: `em` (a constant after inlining) picks the emulator; tile
 * numbers are constants too (the instructions encode them). */
#define AMX_INLINE static inline __attribute__((always_inline))
AMX_INLINE void tile_cfg(int em, const amx_cfg *c) {
    if (em) emu_cfg(c);
    else _tile_loadconfig(c);
}
AMX_INLINE void tile_release(int em) {
    if (!em) _tile_release();
}
AMX_INLINE void tile_zero(int em, int t) {
    if (em) emu_zero(t);
    else if (t == 0) _tile_zero(0);
    else if (t == 1) _tile_zero(1);
    else if (t == 2) _tile_zero(2);
    else if (t == 3) _tile_zero(3);
}
AMX_INLINE void tile_load(int em, int t, const void *base, size_t stride) {
    if (em) emu_load(t, base, stride);
    else if (t == 0) _tile_loadd(0, base, (long)stride);
    else if (t == 1) _tile_loadd(1, base, (long)stride);
    else if (t == 2) _tile_loadd(2, base, (long)stride);
    else if (t == 3) _tile_loadd(3, base, (long)stride);
}
AMX_INLINE void tile_store(int em, int t, void *base, size_t stride) {
    if (em) emu_store(t, base, stride);
    else if (t == 0) _tile_stored(0, base, (long)stride);
    else if (t == 1) _tile_stored(1, base, (long)stride);
}
/* C = tile 0, A = tile 1, B = tile 2 (the only combination used): signed A,
 * unsigned B (tdpbsud), or signed x signed (tdpbssd, the peak loop). */
AMX_INLINE void tile_dp_sud(int em) {
    if (em) emu_dp(0, 1, 2, 1, 0);
    else _tile_dpbsud(0, 1, 2);
}
/* C = tile 0, A = tile 1, B = tile 2, both signed (tdpbssd): the raw-block types. */
AMX_INLINE void tile_dp_ssd(int em) {
    if (em) emu_dp(0, 1, 2, 1, 1);
    else _tile_dpbssd(0, 1, 2);
}

/* ------------------------------------------------------------ kernel */

/* 0: the FAST epilogue. A test changes it (kern_amx_test_epilogue, ops_internal.h)
 * to show that test_kernels' bit comparison catches a 1-ulp difference. */
int kern_amx_test_epilogue;

/* One block's float step for 16 rows: acc = fma(dw * dx, isum, acc) (Q4_K: then
 * acc = fma(-(dm * dx), imin, acc)); the test variants change only the rounding
 * order. */
AMX_INLINE __m512 amx_epilogue(__m512 acc, __m512 dw, __m512 dx, __m512i is, const __m512 *dm, __m512i im) {
    if (__builtin_expect(kern_amx_test_epilogue != 0, 0)) { /* unfused: two roundings instead of one */
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(is)));
        if (dm) acc = _mm512_sub_ps(acc, _mm512_mul_ps(_mm512_mul_ps(*dm, dx), _mm512_cvtepi32_ps(im)));
        return acc;
    }
    acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(is), acc);
    if (dm) acc = _mm512_fnmadd_ps(_mm512_mul_ps(*dm, dx), _mm512_cvtepi32_ps(im), acc);
    return acc;
}

/* One float step of the raw-block kernels (amx_rows_raw): acc = fma(a * b,
 * (float)is, acc), a and b in the order the scalar definition multiplies them;
 * the test variant rounds the product and the sum apart. */
AMX_INLINE __m512 amx_step(__m512 acc, __m512 a, __m512 b, __m512i is) {
    if (__builtin_expect(kern_amx_test_epilogue != 0, 0))
        return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(a, b), _mm512_cvtepi32_ps(is)));
    return _mm512_fmadd_ps(_mm512_mul_ps(a, b), _mm512_cvtepi32_ps(is), acc);
}

/* Same layout arithmetic as ops_avx512.c's packed_tile_bytes (Q8_0, Q4_0). */
static size_t amx_tile_bytes(uint32_t type, int64_t nb) {
    return (((size_t)nb * 32 + 63) & ~(size_t)63) + (size_t)nb * (type == TENSOR_Q8_0 ? 512 : 256);
}

/* Rows [r0, r1) (r0 a multiple of 16), every token, Q8_0 or Q4_0 packed for
 * avx512. */
AMX_INLINE void amx_rows_body(const kern_mm_job *j, int64_t r0, int64_t r1, const int em) {
    const kern_matrix *w = j->w;
    const int64_t nb = w->cols / 32;
    const int q8 = w->type == TENSOR_Q8_0, off = q8 ? 128 : 8;
    const size_t tbytes = amx_tile_bytes(w->type, nb), xstride = (size_t)nb * sizeof(kq8_32);
    const uint8_t *xq = j->xq;
    uint8_t *unpacked = NULL;
    if (!q8 && !(unpacked = kern_scratch(KERN_SCRATCH_TILE, (size_t)nb * 512))) return;
    int32_t cbuf[AMX_NT][16] __attribute__((aligned(64)));
    int cfg_nt = -1;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *tb = (const uint8_t *)w->packed + KERN_PACK_ALIGN + (size_t)(r / 16) * tbytes;
        const uint8_t *qbase = tb + (((size_t)nb * 32 + 63) & ~(size_t)63), *bq = qbase;
        if (!q8) { /* 4 nibble registers -> 8 code registers per block: the B tile rows 0..7 */
            const __m512i m4 = _mm512_set1_epi8(15);
            for (int64_t b = 0; b < nb; b++)
                for (int k = 0; k < 4; k++) {
                    __m512i L = _mm512_load_si512(qbase + b * 256 + 64 * k);
                    _mm512_store_si512(unpacked + b * 512 + 64 * k, _mm512_and_si512(L, m4));
                    _mm512_store_si512(unpacked + b * 512 + 64 * (k + 4), _mm512_and_si512(_mm512_srli_epi16(L, 4), m4));
                }
            bq = unpacked;
        }
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        const __mmask16 mk = (__mmask16)((1u << nr) - 1);
        const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += AMX_NT) {
            const int nt = j->n_tokens - t0 < AMX_NT ? j->n_tokens - t0 : AMX_NT;
            if (nt != cfg_nt) {
                amx_cfg cfg;
                memset(&cfg, 0, sizeof cfg);
                cfg.palette = 1;
                cfg.rows[0] = (uint8_t)nt, cfg.colsb[0] = 64; /* C: tokens x 16 rows (int32) */
                cfg.rows[1] = (uint8_t)nt, cfg.colsb[1] = 32; /* A: tokens x one block of x */
                cfg.rows[2] = 8, cfg.colsb[2] = 64;           /* B: one block of 16 rows */
                tile_cfg(em, &cfg);
                cfg_nt = nt;
            }
            const uint8_t *x0 = xq + (size_t)t0 * xstride;
            __m512 acc[AMX_NT];
            for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = bq + b * 512;
                if (q8 && b + 8 < nb)
                    for (int o = 0; o < 512; o += 64) _mm_prefetch((const char *)blk + 8 * 512 + o, _MM_HINT_T0);
                tile_zero(em, 0);
                tile_load(em, 1, x0 + (size_t)b * sizeof(kq8_32) + offsetof(kq8_32, q), xstride);
                tile_load(em, 2, blk, 64);
                tile_dp_sud(em);
                tile_store(em, 0, cbuf, 64);
                const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const void *)(tb + 32 * b)));
                for (int t = 0; t < nt; t++) {
                    const kq8_32 *x = (const kq8_32 *)(x0 + (size_t)t * xstride) + b;
                    __m512i is = _mm512_sub_epi32(_mm512_load_si512(cbuf[t]), _mm512_set1_epi32(off * x->sum));
                    acc[t] = amx_epilogue(acc[t], dw, _mm512_set1_ps(x->d), is, NULL, is);
                }
            }
            for (int t = 0; t < nt; t++) {
                __m512 v = j->bias ? _mm512_add_ps(acc[t], bias) : acc[t];
                _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, mk, v);
            }
        }
    }
    tile_release(em);
}

void kern_mm_rows_amx(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_body(j, r0, r1, 0); }
void kern_mm_rows_amx_emulated(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_body(j, r0, r1, 1); }

/* ------------------------------------------------------------ Q4_K, Q6_K
 *
 * One tile dot per sub-block (Q4_K: 8 of 32 codes, A tokens x 32 bytes against
 * B 8 x 64; Q6_K: 16 of 16 codes, A tokens x 16 bytes against B 4 x 64), each
 * into a zeroed C, so every sub-block's integer dot is exact and on its own. The
 * sub-block scales are then applied in AVX-512 registers (lane = row, int32) and
 * the mins / the -32 offset come from the activation block sums, exactly as
 * ops_avx512.c's tile_q4k / tile_q6k do; the float epilogue is the FAST step
 * (ops_internal.h). Codes are unpacked from the avx512 packed copy once per row
 * tile into a scratch (4096 bytes per block: per sub-block of 32 codes, 8 rows of
 * 64 bytes, row k lane r = codes 4k..4k+3 of row r). */

/* Unpack one Q4_K / Q6_K row tile's codes (avx512 packed layout) into u. */
static void amx_unpack_k(uint32_t type, const uint8_t *qbase, int64_t nb, uint8_t *u) {
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; b++)
        for (int s = 0; s < 8; s++) {
            __m512i W[8];
            const uint8_t *src = type == TENSOR_Q4_K ? qbase + b * 2304 + 256 + 256 * s : qbase + b * 3328 + 256 + 384 * s;
            for (int k = 0; k < 4; k++) {
                __m512i L = _mm512_load_si512(src + 64 * k);
                W[k] = _mm512_and_si512(L, m4), W[k + 4] = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
            }
            if (type == TENSOR_Q6_K) { /* the 2 high bits: register h, bits 2c..2c+1 of byte i = code 16h + 4c + i */
                const __m512i H0 = _mm512_load_si512(src + 256), H1 = _mm512_load_si512(src + 320);
                const __m512i sh[4] = {_mm512_slli_epi16(H0, 4), _mm512_slli_epi16(H0, 2), H0, _mm512_srli_epi16(H0, 2)};
                const __m512i sl[4] = {_mm512_slli_epi16(H1, 4), _mm512_slli_epi16(H1, 2), H1, _mm512_srli_epi16(H1, 2)};
                for (int c = 0; c < 4; c++) {
                    W[c] = _mm512_or_si512(W[c], _mm512_and_si512(sh[c], m30));
                    W[c + 4] = _mm512_or_si512(W[c + 4], _mm512_and_si512(sl[c], m30));
                }
            }
            for (int k = 0; k < 8; k++) _mm512_store_si512(u + b * 4096 + s * 512 + 64 * k, W[k]);
        }
}

/* Rows [r0, r1) (r0 a multiple of 16), every token, Q4_K or Q6_K packed for avx512. */
AMX_INLINE void amx_rows_k_body(const kern_mm_job *j, int64_t r0, int64_t r1, const int em) {
    const kern_matrix *w = j->w;
    const int64_t nb = w->cols / 256;
    const int q4k = w->type == TENSOR_Q4_K;
    const size_t sb = q4k ? 64 : 32, qb = q4k ? 2304 : 3328;
    const size_t tbytes = (((size_t)nb * sb + 63) & ~(size_t)63) + (size_t)nb * qb, xstride = (size_t)nb * sizeof(kq8_256);
    const int ksub = q4k ? 32 : 16; /* codes per tile dot */
    const uint8_t *xq = j->xq;
    uint8_t *u = kern_scratch(KERN_SCRATCH_TILE, (size_t)nb * 4096);
    if (!u) return;
    int32_t cbuf[AMX_NT][16] __attribute__((aligned(64)));
    int cfg_nt = -1;
    for (int64_t r = r0; r < r1; r += 16) {
        const uint8_t *tb = (const uint8_t *)w->packed + KERN_PACK_ALIGN + (size_t)(r / 16) * tbytes;
        const uint8_t *qbase = tb + (((size_t)nb * sb + 63) & ~(size_t)63);
        amx_unpack_k(w->type, qbase, nb, u);
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        const __mmask16 mk = (__mmask16)((1u << nr) - 1);
        const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += AMX_NT) {
            const int nt = j->n_tokens - t0 < AMX_NT ? j->n_tokens - t0 : AMX_NT;
            if (nt != cfg_nt) {
                amx_cfg cfg;
                memset(&cfg, 0, sizeof cfg);
                cfg.palette = 1;
                cfg.rows[0] = (uint8_t)nt, cfg.colsb[0] = 64;                 /* C: tokens x 16 rows (int32) */
                cfg.rows[1] = (uint8_t)nt, cfg.colsb[1] = (uint16_t)ksub;     /* A: tokens x one sub-block of x */
                cfg.rows[2] = (uint8_t)(ksub / 4), cfg.colsb[2] = 64;         /* B: one sub-block of 16 rows */
                tile_cfg(em, &cfg);
                cfg_nt = nt;
            }
            const uint8_t *x0 = xq + (size_t)t0 * xstride;
            __m512 acc[AMX_NT];
            for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = qbase + b * qb;
                __m512i isa[AMX_NT], ism[AMX_NT];
                for (int t = 0; t < nt; t++) isa[t] = ism[t] = _mm512_setzero_si512();
                for (int sub = 0; sub < 256 / ksub; sub++) {
                    tile_zero(em, 0);
                    tile_load(em, 1, x0 + (size_t)b * sizeof(kq8_256) + offsetof(kq8_256, q) + (size_t)ksub * sub, xstride);
                    tile_load(em, 2, u + b * 4096 + (size_t)sub * (size_t)(ksub / 4) * 64, 64);
                    tile_dp_sud(em);
                    tile_store(em, 0, cbuf, 64);
                    __m512i sc; /* the sub-block's scale per row (lane) */
                    if (q4k)
                        sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(blk + 16 * sub)));
                    else /* sc[8][16][2] int8: pair (sub / 2) lane r, element sub & 1 */
                        sc = _mm512_srai_epi32(_mm512_slli_epi32(_mm512_cvtepi8_epi16(_mm256_loadu_si256((const void *)(blk + 32 * (sub / 2)))),
                                                                 (sub & 1) ? 0 : 16), 16);
                    for (int t = 0; t < nt; t++)
                        isa[t] = _mm512_add_epi32(isa[t], _mm512_mullo_epi32(_mm512_load_si512(cbuf[t]), sc));
                }
                for (int p = 0; p < 4 + 4 * !q4k; p++) { /* Q4_K: mins x bsum32; Q6_K: scales x bsum16 */
                    const __m512i mv = q4k ? _mm512_cvtepu8_epi16(_mm256_loadu_si256((const void *)(blk + 128 + 32 * p)))
                                           : _mm512_cvtepi8_epi16(_mm256_loadu_si256((const void *)(blk + 32 * p)));
                    for (int t = 0; t < nt; t++) {
                        const kq8_256 *x = (const kq8_256 *)(x0 + (size_t)t * xstride) + b;
                        const int16_t *bs = (q4k ? x->bsum32 : x->bsum16) + 2 * p;
                        int32_t pair = (int32_t)(((uint32_t)(uint16_t)bs[1] << 16) | (uint16_t)bs[0]);
                        ism[t] = _mm512_dpwssd_epi32(ism[t], mv, _mm512_set1_epi32(pair));
                    }
                }
                const uint8_t *sblk = tb + sb * b;
                const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)sblk));
                const __m512 dm = q4k ? _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(sblk + 32))) : dw;
                for (int t = 0; t < nt; t++) {
                    const kq8_256 *x = (const kq8_256 *)(x0 + (size_t)t * xstride) + b;
                    const __m512 dx = _mm512_set1_ps(x->d);
                    if (q4k)
                        acc[t] = amx_epilogue(acc[t], dw, dx, isa[t], &dm, ism[t]);
                    else /* isum = sum_j sc_j * (dot_j - 32 * bsum16_j) */
                        acc[t] = amx_epilogue(acc[t], dw, dx, _mm512_sub_epi32(isa[t], _mm512_slli_epi32(ism[t], 5)), NULL,
                                              ism[t]);
                }
            }
            for (int t = 0; t < nt; t++) {
                __m512 v = j->bias ? _mm512_add_ps(acc[t], bias) : acc[t];
                _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, mk, v);
            }
        }
    }
    tile_release(em);
}

static void amx_rows_k(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_k_body(j, r0, r1, 0); }
static void amx_rows_k_emulated(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_k_body(j, r0, r1, 1); }

/* ------------------------------------------------------------ raw GGUF blocks
 *
 * Issue 22's types (Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q5_K) are
 * packed at no level: these kernels read the GGUF rows themselves. Per 16-row
 * tile, once (reused by every token tile), each block of each row is unpacked
 * into the int8 weights the FAST dot multiplies (ops_internal.h: Q4_1 / Q5_1 /
 * Q5_K codes 0..31, Q5_0 q - 16, IQ4 codebook values, Q2_K 0..3, Q3_K q - 4),
 * in element order, then transposed into B tile rows (row k, dword r = weights
 * 4k..4k+3 of row r: byte (c / 4) * 64 + 4 r + c % 4 for column c, 16 bytes per
 * column), plus per block and row (lane) the float d and m (Q4_1 / Q5_1: m;
 * Q2_K / Q5_K: -dmin), the int32 sub-block scales and the int16 mins paired for
 * vpdpwssd. One tdpbssd per quantization (sub-)block (32 or 16 columns) into a
 * zeroed C: each integer dot exact and on its own; the scales and the min terms
 * are integer too (lane = row), then the scalar definition's float steps in its
 * order: acc = fma(d * d_x, isum, acc), then Q4_1 / Q5_1
 * acc = fma(m * d_x, x.sum, acc), Q2_K / Q5_K acc = fma(-dmin * d_x, ism, acc)
 * (-(dmin * d_x) == (-dmin) * d_x: rounding is symmetric). */

/* One row's block, unpacked: its weights in element order and its scalars. */
typedef struct {
    float d, m;       /* m: Q4_1 / Q5_1 min, Q2_K / Q5_K -dmin, else 0 */
    int32_t sc[16];   /* per sub-block scale (IQ4_XS ls - 32, Q3_K c - 32, Q2_K / Q5_K sc) */
    int16_t mn[16];   /* per sub-block min (Q2_K, Q5_K) */
} amx_blk_meta;
typedef void (*amx_unpack_fn)(const uint8_t *blk, int8_t *q, amx_blk_meta *mt);

static float amx_ld_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return fp16_to_f32(h);
}

/* 16 packed nibbles: low ones to q[0..15], high ones to q[16..31] (through the
 * IQ4 codebook when cb). */
AMX_INLINE void amx_nibbles16(const uint8_t *qs, int8_t *q, int cb) {
    const __m128i m4 = _mm_set1_epi8(15), v = _mm_loadu_si128((const void *)qs);
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    if (cb) {
        const __m128i tab = _mm_loadu_si128((const void *)quant_iq4nl_values);
        lo = _mm_shuffle_epi8(tab, lo), hi = _mm_shuffle_epi8(tab, hi);
    }
    _mm_storeu_si128((void *)q, lo);
    _mm_storeu_si128((void *)(q + 16), hi);
}

/* Q5_0 / Q5_1: the fifth bit of element i is bit i of qh; minus sub. */
AMX_INLINE void amx_q5_32(const uint8_t *qh4, const uint8_t *qs, int8_t *q, int sub) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    amx_nibbles16(qs, q, 0);
    __m256i v = _mm256_or_si256(_mm256_loadu_si256((const void *)q), _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(16)));
    _mm256_storeu_si256((void *)q, _mm256_sub_epi8(v, _mm256_set1_epi8((char)sub)));
}

static void amx_unpack_q4_1(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    mt->d = amx_ld_half(b), mt->m = amx_ld_half(b + 2);
    amx_nibbles16(b + offsetof(block_q4_1, qs), q, 0);
}
static void amx_unpack_q5_0(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    mt->d = amx_ld_half(b), mt->m = 0;
    amx_q5_32(b + offsetof(block_q5_0, qh), b + offsetof(block_q5_0, qs), q, 16);
}
static void amx_unpack_q5_1(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    mt->d = amx_ld_half(b), mt->m = amx_ld_half(b + 2);
    amx_q5_32(b + offsetof(block_q5_1, qh), b + offsetof(block_q5_1, qs), q, 0);
}
static void amx_unpack_iq4_nl(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    mt->d = amx_ld_half(b), mt->m = 0;
    amx_nibbles16(b + offsetof(block_iq4_nl, qs), q, 1);
}
static void amx_unpack_iq4_xs(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    block_iq4_xs w;
    memcpy(&w, b, sizeof w);
    mt->d = fp16_to_f32(w.d), mt->m = 0;
    for (int j = 0; j < 8; j++) {
        mt->sc[j] = (((w.scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((w.scales_h >> (2 * j)) & 3) << 4) - 32;
        amx_nibbles16(w.qs + 16 * j, q + 32 * j, 1);
    }
}
/* Q2_K / Q3_K codes: element 128 h + 32 s + l is bits 2s..2s+1 of qs[32 h + l]
 * (Q3_K: plus 4 * bit (4 h + s) of hmask[l], minus 4). */
AMX_INLINE void amx_k23_codes(const uint8_t *qs, const uint8_t *hmask, int8_t *q) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i hm = hmask ? _mm256_loadu_si256((const void *)hmask) : _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i v = _mm256_loadu_si256((const void *)(qs + 32 * h));
        for (int s = 0; s < 4; s++) {
            __m256i c = _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), m3);
            if (hmask) {
                const __mmask32 bit = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((char)(1 << (4 * h + s))));
                c = _mm256_sub_epi8(_mm256_or_si256(c, _mm256_maskz_mov_epi8(bit, _mm256_set1_epi8(4))), _mm256_set1_epi8(4));
            }
            _mm256_storeu_si256((void *)(q + 128 * h + 32 * s), c);
        }
    }
}
static void amx_unpack_q2_k(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    const block_q2_K *w = (const block_q2_K *)b;
    mt->d = amx_ld_half(b + offsetof(block_q2_K, d)), mt->m = -amx_ld_half(b + offsetof(block_q2_K, dmin));
    for (int s = 0; s < 16; s++) mt->sc[s] = w->scales[s] & 15, mt->mn[s] = (int16_t)(w->scales[s] >> 4);
    amx_k23_codes(w->qs, NULL, q);
}
static void amx_unpack_q3_k(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    const block_q3_K *w = (const block_q3_K *)b;
    mt->d = amx_ld_half(b + offsetof(block_q3_K, d)), mt->m = 0;
    for (int s = 0; s < 16; s++) mt->sc[s] = kern_q3k_scale(w->scales, s) - 32;
    amx_k23_codes(w->qs, w->hmask, q);
}
/* Q5_K: element 64 g + l (l < 32) is the low nibble of qs[32 g + l] plus 16 *
 * bit 2 g of qh[l]; element 64 g + 32 + l the high nibble plus bit 2 g + 1. */
static void amx_unpack_q5_k(const uint8_t *b, int8_t *q, amx_blk_meta *mt) {
    const block_q5_K *w = (const block_q5_K *)b;
    mt->d = amx_ld_half(b + offsetof(block_q5_K, d)), mt->m = -amx_ld_half(b + offsetof(block_q5_K, dmin));
    for (int s = 0; s < 8; s++) {
        int sc, m;
        kern_q4k_scale_min(w->scales, s, &sc, &m);
        mt->sc[s] = sc, mt->mn[s] = (int16_t)m;
    }
    const __m256i m4 = _mm256_set1_epi8(15), sixteen = _mm256_set1_epi8(16), qh = _mm256_loadu_si256((const void *)w->qh);
    for (int g = 0; g < 4; g++) {
        const __m256i v = _mm256_loadu_si256((const void *)(w->qs + 32 * g));
        const __mmask32 b0 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * g))));
        const __mmask32 b1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * g + 1))));
        _mm256_storeu_si256((void *)(q + 64 * g), _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_maskz_mov_epi8(b0, sixteen)));
        _mm256_storeu_si256((void *)(q + 64 * g + 32),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_maskz_mov_epi8(b1, sixteen)));
    }
}

/* The raw-block types: block elements, columns per tile dot (sub-block), what
 * the float steps add (AMX_MIN_X: m * x.sum; AMX_MIN_K: mins x block sums). */
enum { AMX_MIN_NONE, AMX_MIN_X, AMX_MIN_K };
typedef struct {
    uint32_t type;
    int be, ksub, mins;
    amx_unpack_fn unpack;
} amx_raw_type;
static const amx_raw_type amx_raw_types[] = {
    {TENSOR_Q4_1, 32, 32, AMX_MIN_X, amx_unpack_q4_1},      {TENSOR_Q5_0, 32, 32, AMX_MIN_NONE, amx_unpack_q5_0},
    {TENSOR_Q5_1, 32, 32, AMX_MIN_X, amx_unpack_q5_1},      {TENSOR_IQ4_NL, 32, 32, AMX_MIN_NONE, amx_unpack_iq4_nl},
    {TENSOR_IQ4_XS, 256, 32, AMX_MIN_NONE, amx_unpack_iq4_xs}, {TENSOR_Q2_K, 256, 16, AMX_MIN_K, amx_unpack_q2_k},
    {TENSOR_Q3_K, 256, 16, AMX_MIN_NONE, amx_unpack_q3_k},  {TENSOR_Q5_K, 256, 32, AMX_MIN_K, amx_unpack_q5_k},
};

/* The table's entry for type, NULL if none. */
static const amx_raw_type *amx_raw_find(uint32_t type) {
    for (size_t i = 0; i < sizeof amx_raw_types / sizeof amx_raw_types[0]; i++)
        if (amx_raw_types[i].type == type) return &amx_raw_types[i];
    return NULL;
}

/* Per block and row tile, the lane-layout scalars: float d[16], m[16]; int32
 * sc[nsub][16] (nsub > 1); int16 mn[nsub / 2][16][2] (AMX_MIN_K: lane r holds
 * the mins of sub-blocks 2p and 2p + 1, vpdpwssd's pair). */
static size_t amx_raw_meta_bytes(const amx_raw_type *T) {
    const int nsub = T->be / T->ksub;
    return 128 + (nsub > 1 ? (size_t)nsub * 64 : 0) + (T->mins == AMX_MIN_K ? (size_t)nsub / 2 * 64 : 0);
}

/* Out row k (k < nk) = dword k of each of the 16 rows src[r * 256 .. + 64]: the
 * 16 x 16 dword transpose (4 x 4 inside 128-bit lanes, then across lanes). */
static void amx_transpose16(const uint8_t *src, uint8_t *out, int nk) {
    __m512i u[4][4]; /* group g of rows 4g..4g+3, u[g][i] lane L = their dword 4L + i */
    for (int g = 0; g < 4; g++) {
        const __m512i a = _mm512_load_si512(src + (4 * g) * 256), b = _mm512_load_si512(src + (4 * g + 1) * 256);
        const __m512i c = _mm512_load_si512(src + (4 * g + 2) * 256), d = _mm512_load_si512(src + (4 * g + 3) * 256);
        const __m512i t0 = _mm512_unpacklo_epi32(a, b), t1 = _mm512_unpackhi_epi32(a, b);
        const __m512i t2 = _mm512_unpacklo_epi32(c, d), t3 = _mm512_unpackhi_epi32(c, d);
        u[g][0] = _mm512_unpacklo_epi64(t0, t2), u[g][1] = _mm512_unpackhi_epi64(t0, t2);
        u[g][2] = _mm512_unpacklo_epi64(t1, t3), u[g][3] = _mm512_unpackhi_epi64(t1, t3);
    }
    for (int i = 0; i < 4; i++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[0][i], u[1][i], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v1 = _mm512_shuffle_i32x4(u[0][i], u[1][i], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i v2 = _mm512_shuffle_i32x4(u[2][i], u[3][i], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i v3 = _mm512_shuffle_i32x4(u[2][i], u[3][i], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i o[4] = {_mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_i32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1)),
                              _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_i32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1))};
        for (int L = 0; L < 4; L++)
            if (4 * L + i < nk) _mm512_store_si512(out + (4 * L + i) * 64, o[L]);
    }
}

/* Unpack rows [r, r + nr) (nr <= 16) of w, every block, into the B tile rows u
 * (cols * 16 bytes) and the lane scalars meta (nb * amx_raw_meta_bytes): rows
 * nr..15 read as zero weights and scales. */
static void amx_unpack_raw(const amx_raw_type *T, const kern_matrix *w, int64_t r, int nr, uint8_t *u, uint8_t *meta) {
    const int64_t nb = w->cols / T->be;
    const size_t bb = tensor_type_get(w->type)->block_bytes, rb = tensor_row_bytes(w->type, w->cols);
    const size_t mb = amx_raw_meta_bytes(T);
    const int nsub = T->be / T->ksub, group = T->be == 256 ? 256 : 64, bpg = group / T->be;
    uint8_t tmp[16][256] __attribute__((aligned(64))); /* each row's weights of one group of columns */
    memset(tmp, 0, sizeof tmp);
    if (nr < 16) memset(meta, 0, (size_t)nb * mb);
    for (int64_t b0 = 0; b0 < nb; b0 += bpg) {
        for (int n = 0; n < nr; n++)
            for (int k = 0; k < bpg && b0 + k < nb; k++) {
                const int64_t b = b0 + k;
                amx_blk_meta mt;
                T->unpack((const uint8_t *)w->data + (size_t)(r + n) * rb + (size_t)b * bb, (int8_t *)tmp[n] + k * T->be, &mt);
                uint8_t *mp = meta + (size_t)b * mb;
                ((float *)mp)[n] = mt.d, ((float *)mp)[16 + n] = mt.m;
                if (nsub > 1)
                    for (int s = 0; s < nsub; s++) ((int32_t *)(mp + 128))[16 * s + n] = mt.sc[s];
                if (T->mins == AMX_MIN_K)
                    for (int s = 0; s < nsub; s++) ((int16_t *)(mp + 128 + (size_t)nsub * 64))[32 * (s / 2) + 2 * n + s % 2] = mt.mn[s];
            }
        for (int c = 0; c < group && b0 * T->be + c < w->cols; c += 64) {
            const int64_t left = w->cols - (b0 * T->be + c);
            amx_transpose16(tmp[0] + c, u + (size_t)(b0 * T->be + c) * 16, left < 64 ? (int)left / 4 : 16);
        }
    }
}

/* Rows [r0, r1) (r0 a multiple of 16), every token, one of amx_raw_types. */
AMX_INLINE void amx_rows_raw_body(const kern_mm_job *j, int64_t r0, int64_t r1, const int em) {
    const kern_matrix *w = j->w;
    const amx_raw_type *T = amx_raw_find(w->type);
    if (!T) return;
    const int64_t nb = w->cols / T->be;
    const int x32 = T->be == 32, nsub = T->be / T->ksub;
    const size_t mb = amx_raw_meta_bytes(T), xsz = x32 ? sizeof(kq8_32) : sizeof(kq8_256), xstride = (size_t)nb * xsz;
    const size_t qoff = x32 ? offsetof(kq8_32, q) : offsetof(kq8_256, q), ubytes = (size_t)w->cols * 16;
    uint8_t *u = kern_scratch(KERN_SCRATCH_TILE, ubytes + (size_t)nb * mb);
    if (!u) return;
    uint8_t *meta = u + ubytes;
    const uint8_t *xq = j->xq;
    int32_t cbuf[AMX_NT][16] __attribute__((aligned(64)));
    int cfg_nt = -1;
    for (int64_t r = r0; r < r1; r += 16) {
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        amx_unpack_raw(T, w, r, nr, u, meta);
        const __mmask16 mk = (__mmask16)((1u << nr) - 1);
        const __m512 bias = j->bias ? _mm512_maskz_loadu_ps(mk, j->bias + r) : _mm512_setzero_ps();
        for (int t0 = 0; t0 < j->n_tokens; t0 += AMX_NT) {
            const int nt = j->n_tokens - t0 < AMX_NT ? j->n_tokens - t0 : AMX_NT;
            if (nt != cfg_nt) {
                amx_cfg cfg;
                memset(&cfg, 0, sizeof cfg);
                cfg.palette = 1;
                cfg.rows[0] = (uint8_t)nt, cfg.colsb[0] = 64;                  /* C: tokens x 16 rows (int32) */
                cfg.rows[1] = (uint8_t)nt, cfg.colsb[1] = (uint16_t)T->ksub;   /* A: tokens x one (sub-)block of x */
                cfg.rows[2] = (uint8_t)(T->ksub / 4), cfg.colsb[2] = 64;       /* B: one (sub-)block of 16 rows */
                tile_cfg(em, &cfg);
                cfg_nt = nt;
            }
            const uint8_t *x0 = xq + (size_t)t0 * xstride;
            __m512 acc[AMX_NT];
            for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *mp = meta + (size_t)b * mb;
                const __m512 dw = _mm512_load_ps(mp), mw = _mm512_load_ps(mp + 64);
                __m512i isa[AMX_NT];
                for (int s = 0; s < nsub; s++) {
                    tile_zero(em, 0);
                    tile_load(em, 1, x0 + (size_t)b * xsz + qoff + (size_t)s * T->ksub, xstride);
                    tile_load(em, 2, u + ((size_t)b * T->be + (size_t)s * T->ksub) * 16, 64);
                    tile_dp_ssd(em);
                    tile_store(em, 0, cbuf, 64);
                    if (nsub == 1) { /* the block's dot is isum */
                        for (int t = 0; t < nt; t++) isa[t] = _mm512_load_si512(cbuf[t]);
                        continue;
                    }
                    const __m512i sc = _mm512_load_si512(mp + 128 + 64 * s);
                    for (int t = 0; t < nt; t++) {
                        const __m512i p = _mm512_mullo_epi32(_mm512_load_si512(cbuf[t]), sc);
                        isa[t] = s ? _mm512_add_epi32(isa[t], p) : p;
                    }
                }
                for (int t = 0; t < nt; t++) {
                    const uint8_t *xb = x0 + (size_t)t * xstride + (size_t)b * xsz;
                    const __m512 dx = _mm512_set1_ps(x32 ? ((const kq8_32 *)xb)->d : ((const kq8_256 *)xb)->d);
                    acc[t] = amx_step(acc[t], dw, dx, isa[t]);
                    if (T->mins == AMX_MIN_X) {
                        acc[t] = amx_step(acc[t], mw, dx, _mm512_set1_epi32(((const kq8_32 *)xb)->sum));
                    } else if (T->mins == AMX_MIN_K) { /* ism = sum_s mn_s * bsum_s, in vpdpwssd pairs */
                        const kq8_256 *x = (const kq8_256 *)xb;
                        const int16_t *bs = T->ksub == 16 ? x->bsum16 : x->bsum32;
                        __m512i ism = _mm512_setzero_si512();
                        for (int p = 0; p < nsub / 2; p++) {
                            const int32_t pair = (int32_t)(((uint32_t)(uint16_t)bs[2 * p + 1] << 16) | (uint16_t)bs[2 * p]);
                            ism = _mm512_dpwssd_epi32(ism, _mm512_load_si512(mp + 128 + 64 * nsub + 64 * p), _mm512_set1_epi32(pair));
                        }
                        acc[t] = amx_step(acc[t], mw, dx, ism);
                    }
                }
            }
            for (int t = 0; t < nt; t++) {
                __m512 v = j->bias ? _mm512_add_ps(acc[t], bias) : acc[t];
                _mm512_mask_storeu_ps(j->y + (size_t)(t0 + t) * w->rows + r, mk, v);
            }
        }
    }
    tile_release(em);
}

static void amx_rows_raw(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_raw_body(j, r0, r1, 0); }
static void amx_rows_raw_emulated(const kern_mm_job *j, int64_t r0, int64_t r1) { amx_rows_raw_body(j, r0, r1, 1); }

/* ------------------------------------------------------------ peak */

/* tdpbssd ops per second of one thread on tile-resident operands (4 C tiles, no
 * loads in the loop: 16 x 16 x 64 multiply-adds each, counted as 2 ops); 0 when
 * the CPU has no AMX (the emulator has no peak worth printing). */
static double amx_peak_int8(double seconds, double (*now)(void)) {
    if (!kern_amx_real()) return 0;
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 6; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    int8_t src[16][64];
    memset(src, 1, sizeof src);
    _tile_loadconfig(&cfg);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    double t0 = now(), t;
    long iters = 0;
    do {
        for (int r = 0; r < 10000; r++) {
            _tile_dpbssd(0, 4, 5);
            _tile_dpbssd(1, 4, 5);
            _tile_dpbssd(2, 4, 5);
            _tile_dpbssd(3, 4, 5);
        }
        iters += 10000;
    } while ((t = now()) - t0 < seconds);
    int32_t out[16][16];
    _tile_stored(0, out, 64);
    _tile_release();
    __asm__ volatile("" : : "r"(out[0][0]));
    return (double)iters * 4 * 16 * 16 * 64 * 2 / (t - t0);
}

/* ------------------------------------------------------------ the AMX backend */

/* Whether this call runs the real instructions: the CPU has them and
 * BATON_AMX_EMULATE is unset or "0" (read per job, so a test can run both). */
static int amx_use_real(void) {
    const char *e = getenv("BATON_AMX_EMULATE");
    return kern_amx_real() && !(e && *e && strcmp(e, "0"));
}

/* The AMX kernels per type: {type, reads the avx512 packed copy, real tiles,
 * emulator}. */
static const struct {
    uint32_t type;
    int packed;
    kern_rows_fn real, emulated;
} amx_kernels[] = {
    {TENSOR_Q8_0, 1, kern_mm_rows_amx, kern_mm_rows_amx_emulated},
    {TENSOR_Q4_0, 1, kern_mm_rows_amx, kern_mm_rows_amx_emulated},
    {TENSOR_Q4_K, 1, amx_rows_k, amx_rows_k_emulated},
    {TENSOR_Q6_K, 1, amx_rows_k, amx_rows_k_emulated},
    {TENSOR_Q4_1, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_Q5_0, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_Q5_1, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_IQ4_NL, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_IQ4_XS, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_Q2_K, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_Q3_K, 0, amx_rows_raw, amx_rows_raw_emulated},
    {TENSOR_Q5_K, 0, amx_rows_raw, amx_rows_raw_emulated},
};

/* Many-token quantized FAST matmuls of the table's types (the packed ones only
 * with the avx512 packed copy present); NULL (the AVX-512 level's choice) for
 * everything else. */
static kern_rows_fn amx_mm_rows(const kern_mm_job *j) {
    if (!kern_mm_quant_fast(j) || j->n_tokens < AMX_MIN_TOKENS) return NULL;
    for (size_t i = 0; i < sizeof amx_kernels / sizeof amx_kernels[0]; i++)
        if (amx_kernels[i].type == j->w->type) {
            if (amx_kernels[i].packed && !kern_packed_for(j->w, KERN_AVX512)) return NULL;
            return amx_use_real() ? amx_kernels[i].real : amx_kernels[i].emulated;
        }
    return NULL;
}

const kern_backend kern_backend_amx = {
    .name = "amx",
    .mm_rows = amx_mm_rows,
    .peak_int8 = amx_peak_int8,
};
