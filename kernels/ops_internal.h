/* ops_internal.h - what the dispatch layer (ops.c), the backend table
 * (backend.c), the scalar reference (ops_scalar.c) and the ISA kernels (cpu/)
 * share. Not a public API.
 *
 * FAST arithmetic, defined once here and reproduced bit for bit by every level:
 *
 *  Activations (quantized types). Each token's row is cut into blocks of 32
 *  (kq8_32, for Q4_0/Q8_0 weights) or 256 (kq8_256, for Q4_K/Q6_K). Per block:
 *  amax = max|x|, d = amax / 127, id = amax ? 127 / amax : 0,
 *  q[i] = nearbyintf(x[i] * id) (round half to even), plus integer block sums.
 *  kern_quantize_x32/x256 (scalar) define it; the AVX-512 versions reproduce it
 *  bit for bit (same amax, same scalar d and id, same product, clamp, RNE).
 *
 *  Weights x activations. Per output element y[t][r], per weight block b in
 *  increasing order, an exact int32 dot `isum` of the block's integer weights
 *  with q, then one float step:
 *      Q8_0, Q4_0:  acc = fmaf(d_w * d_x, (float)isum, acc)
 *      Q6_K:        acc = fmaf(d_w * d_x, (float)isum, acc)
 *                   (isum = sum_j sc_j * (dot_j - 32 * bsum16_j))
 *      Q4_K:        acc = fmaf(d_w * d_x, (float)isum_sc, acc);
 *                   acc = fmaf(-(dmin_w * d_x), (float)isum_min, acc)
 *      Q5_0:        acc = fmaf(d_w * d_x, (float)isum, acc)   (weights q - 16)
 *      IQ4_NL:      acc = fmaf(d_w * d_x, (float)isum, acc)   (weights codebook values)
 *      Q4_1, Q5_1:  acc = fmaf(d_w * d_x, (float)isum, acc);  (weights the codes q)
 *                   acc = fmaf(m_w * d_x, (float)x.sum, acc)
 *      IQ4_XS:      acc = fmaf(d_w * d_x, (float)isum, acc)
 *                   (x256; isum = sum_j (ls_j - 32) * dot_j over the 8 sub-blocks,
 *                   dot_j of codebook values; |isum| < 8 * 32 * 32 * 127 * 127)
 *      Q2_K, Q5_K:  as Q4_K (Q2_K: 16 sub-blocks of 16, 4-bit scale and min,
 *                   isum_min = sum_j m_j * bsum16_j; Q5_K: 8 of 32, codes 0..31)
 *      Q3_K:        acc = fmaf(d_w * d_x, (float)isum, acc)
 *                   (isum = sum_j (c_j - 32) * dot_j, codes q - 4 in -4..3)
 *  starting from acc = +0, then y = acc + bias[r] (or acc). Integer sums are
 *  exact, so their evaluation order is free; the float chain is sequential per
 *  output element, which SIMD reproduces with lane = output row.
 *
 *  Float dots (F32/F16/BF16 weights in both precisions, EXACT for all types after
 *  quant_dequantize_row, attention scores, rmsnorm): 16 lanes, lane l
 *  accumulates a[c]*b[c] for c = l mod 16 in increasing c with fmaf, then a fixed
 *  tree: for h = 8,4,2,1: lane[i] += lane[i+h]. kern_dot16_ref is the definition.
 */
#ifndef BATON_OPS_INTERNAL_H
#define BATON_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

typedef struct { float d; int32_t sum; int8_t q[32]; } kq8_32;
typedef struct { float d; int16_t bsum16[16]; int16_t bsum32[8]; int8_t q[256]; } kq8_256;

/* One matmul call, split by output rows over the pool. */
typedef struct kern_mm_job {
    const kern_matrix *w;
    const float *x;     /* [n_tokens][cols] */
    const void *xq;     /* quantized x: [n_tokens][cols/32] kq8_32 or [n_tokens][cols/256] kq8_256 (FAST) */
    int n_tokens;
    const float *bias;  /* [rows] or NULL */
    float *y;           /* [n_tokens][rows] */
    kern_precision prec;
    float (*dot)(const float *, const float *, int64_t); /* the level's kern_dot16 (scalar loop) */
} kern_mm_job;

/* A kernel for rows [r0, r1) of a job, every token (r0 a multiple of 16). */
typedef void (*kern_rows_fn)(const kern_mm_job *j, int64_t r0, int64_t r1);

/* Header at the start of kern_matrix.packed: which layout it holds. */
typedef struct kern_pack_header {
    uint32_t magic;     /* KERN_PACK_MAGIC */
    uint32_t level;     /* kern_level the layout is for */
    uint32_t type;
    uint32_t pad;
} kern_pack_header;
#define KERN_PACK_MAGIC 0x4b505431u /* "KPT1" */
#define KERN_PACK_ALIGN 64

/* Whether m->packed holds the layout that level's pack wrote. */
static inline int kern_packed_for(const kern_matrix *m, kern_level level) {
    const kern_pack_header *h = m->packed;
    return h && m->packed_bytes >= sizeof *h && h->magic == KERN_PACK_MAGIC && h->level == (uint32_t)level &&
           h->type == m->type;
}

/* Per-thread scratch (ops.c), one buffer per slot, kept between calls and freed
 * when the thread exits: at least `bytes`, 64-byte aligned, valid until this
 * thread's next call for the same slot (NULL if out of memory). ACT holds a
 * matmul's quantized activations for the whole call (the calling thread's);
 * TILE is a pool task's rearranged weight tile. */
enum { KERN_SCRATCH_ACT, KERN_SCRATCH_TILE, KERN_SCRATCH_SLOTS };
void *kern_scratch(int slot, size_t bytes);

#define KERN_MAX_HEAD_DIM 1024 /* attention: larger heads give zeros */
#define KERN_ATT_BLOCK 32      /* attention: positions per online-softmax block */

/* n values (a multiple of 32) of a Q8_0 KV-cache row from element off (a multiple
 * of 32) as floats: d * q is exact in float (11-bit scale x 8-bit code), so every
 * level then runs its f32 path on them and gets the same bits. */
static inline void kern_kv_load_q8_0(const void *row, int64_t off, int n, float *dst) {
    const block_q8_0 *b = (const block_q8_0 *)row + off / QK8_0;
    for (int j = 0; j < n / QK8_0; j++, b++) {
        const float d = fp16_to_f32(b->d);
        for (int i = 0; i < QK8_0; i++) dst[j * QK8_0 + i] = d * (float)b->qs[i];
    }
}

/* ------------------------------------------------------------ backends
 *
 * A kernel backend is one level's implementation of every operation ops.c
 * dispatches: a const struct of function pointers defined next to that level's
 * kernels (kern_backend_scalar in ops_scalar.c, kern_backend_avx2 in
 * cpu/ops_avx2.c, kern_backend_avx512 in cpu/ops_avx512.c). backend.c lists
 * them in order, each with the CPU features it needs; the index in that list is
 * the kern_level. An entry left NULL is the level below's: backend.c fills it in
 * once, so ops.c calls g.be->op(...) with no test. The scalar backend fills
 * every entry. Every entry gives the scalar reference's bits. */
struct codec_ops;
typedef struct kern_backend {
    const char *name; /* BATON_ISA and kern_level_name */
    /* Repack m for this level's matmul (kern_matrix_prepare, FAST only): 0, 1 if
     * the type is not one this level packs, -1 out of memory. The header names
     * the level whose layout it is (kern_packed_for). */
    int (*pack)(kern_matrix *m);
    /* The row kernel for job j (every field set but xq), or
     * NULL to leave j to the level below (asked per job; scalar takes every job).
     * This is where a level says which matmuls it runs itself. */
    kern_rows_fn (*mm_rows)(const kern_mm_job *j);
    /* kern_dot16_ref, for the job's j->dot (the scalar row loop). */
    float (*dot16)(const float *a, const float *b, int64_t n);
    /* The FAST activation quantizers (kern_quantize_x32 / x256). */
    void (*quantize_x32)(kq8_32 *out, const float *x, int64_t n);
    void (*quantize_x256)(kq8_256 *out, const float *x, int64_t n);
    void (*rmsnorm)(float *y, const float *x, const float *w, int n, float eps);
    void (*swiglu)(float *y, const float *gate, const float *up, int n);
    void (*add)(float *y, const float *x, int n);
    /* One query head of kern_attention against KV head kvh. */
    void (*attention_head)(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh, int n_head_kv,
                           int head_dim);
    double (*peak_int8)(double seconds, double (*now)(void)); /* kern_peak_int8 */
    uint64_t (*stream_sum)(const void *buf, size_t bytes);    /* kern_stream_sum */
    const struct codec_ops *codec; /* the activation codec primitives (codec_internal.h) */
} kern_backend;

/* The reference level, complete, and what ops.c runs before kern_init (the
 * other levels are declared where backend.c's table lists them). */
extern const kern_backend kern_backend_scalar;

/* backend.c: how many levels are compiled in (the table's length), and level
 * `level` with its NULL entries filled from the levels below (NULL outside
 * [0, count)). kern_best_level, kern_level_name and kern_cpu_features (ops.h)
 * are there too. */
int kern_backend_count(void);
const kern_backend *kern_backend_at(int level);
/* ops.c: the backend of the current level (kern_init first if needed). */
const kern_backend *kern_backend_now(void);

/* scalar reference (ops_scalar.c) */
float kern_expf_ref(float x);
float kern_dot16_ref(const float *a, const float *b, int64_t n);
void kern_quantize_x32(kq8_32 *out, const float *x, int64_t n);
void kern_quantize_x256(kq8_256 *out, const float *x, int64_t n);
void kern_mm_rows_scalar(const kern_mm_job *j, int64_t r0, int64_t r1);
int kern_mm_uses_x32(uint32_t type);   /* FAST activation format for a weight type */
int kern_mm_uses_x256(uint32_t type);
int kern_q22_uses_x32(uint32_t type);  /* Q4_1 Q5_0 Q5_1 IQ4_NL (IQ4_XS uses x256) */
/* Whether job j runs the FAST integer path (quantized activations, j->xq). */
static inline int kern_mm_quant_fast(const kern_mm_job *j) {
    return j->prec == KERN_FAST && (kern_mm_uses_x32(j->w->type) || kern_mm_uses_x256(j->w->type));
}
void kern_q4k_scale_min(const uint8_t *scales12, int j, int *sc, int *m); /* sub-block j's 6-bit scale, min */
/* Q2_K, Q3_K, Q5_K (ops_scalar.c): the scalar FAST reference and its pieces */
int kern_kq_is_new(uint32_t type);                                    /* 1 for Q2_K, Q3_K, Q5_K */
int kern_q3k_scale(const uint8_t *scales12, int s);                   /* Q3_K sub-block s's code 0..63 */
void kern_kq_codes(uint32_t type, const void *blk, int8_t q[256]);    /* a block's integer codes */
float kern_kq_dot_row(uint32_t type, const void *wrow, const kq8_256 *x, int64_t nb); /* one row . one token */
void kern_rmsnorm_scalar(float *y, const float *x, const float *w, int n, float eps);
void kern_swiglu_scalar(float *y, const float *gate, const float *up, int n);
void kern_add_scalar(float *y, const float *x, int n);
void kern_attention_head_scalar(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh,
                                int n_head_kv, int head_dim);

/* AVX-512 (cpu/ops_avx512.c); only called after detection */
int kern_pack_avx512(kern_matrix *m);                  /* 0, 1 = type not packed, -1 = OOM */
void kern_mm_rows_avx512(const kern_mm_job *j, int64_t r0, int64_t r1); /* r0 % 16 == 0 */
void kern_quantize_x32_avx512(kq8_32 *out, const float *x, int64_t n);   /* same bits as scalar */
void kern_quantize_x256_avx512(kq8_256 *out, const float *x, int64_t n);
uint64_t kern_stream_sum_avx512(const void *buf, size_t bytes);
/* AVX2 element-wise, attention and quantizer kernels (cpu/vec_avx2.c): same bits as scalar */
void kern_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps);
void kern_swiglu_avx2(float *y, const float *gate, const float *up, int n);
void kern_attention_head_avx2(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh, int n_head_kv,
                              int head_dim);
void kern_quantize_x32_avx2(kq8_32 *out, const float *x, int64_t n);
void kern_quantize_x256_avx2(kq8_256 *out, const float *x, int64_t n);
void kern_mm_rows_half_avx2(const kern_mm_job *j, int64_t r0, int64_t r1); /* F16/BF16 weights */
double kern_peak_int8_avx512(double seconds, double (*now)(void));
float kern_dot16_avx512(const float *a, const float *b, int64_t n);
void kern_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps);
void kern_swiglu_avx512(float *y, const float *gate, const float *up, int n);
void kern_add_avx512(float *y, const float *x, int n);
void kern_attention_head_avx512(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh,
                                int n_head_kv, int head_dim);

/* AVX2 (cpu/ops_avx2.c) */
float kern_dot16_avx2(const float *a, const float *b, int64_t n);
void kern_add_avx2(float *y, const float *x, int n);
void kern_mm_rows_avx2(const kern_mm_job *j, int64_t r0, int64_t r1); /* quantized FAST in 8-row tiles */
double kern_peak_int8_avx2(double seconds, double (*now)(void));
uint64_t kern_stream_sum_avx2(const void *buf, size_t bytes);
/* AVX2 few-token (decode, small batches) matmul (cpu/ops_gemv_avx2.c): same bits as the scalar loop */
#define KERN_GEMV_AVX2_MAX_TOKENS 8 /* kern_gemv_avx2 serves jobs of 1 .. this many tokens */
int kern_gemv_avx2_supports(uint32_t type);                      /* 1 if kern_gemv_avx2 has a kernel for type */
void kern_gemv_avx2(const kern_mm_job *j, int64_t r0, int64_t r1); /* n_tokens <= MAX_TOKENS, KERN_FAST, xq set */

/* AVX2 lane = row tiles (cpu/gemm_avx2.c): Q8_0 repacked at load, Q4_0, Q4_K, Q6_K rearranged per call */
int kern_pack_avx2(kern_matrix *m);                    /* 0, 1 = type not packed, -1 = OOM */
void kern_mm_rows_avx2_packed(const kern_mm_job *j, int64_t r0, int64_t r1); /* r0 % 8 == 0 */
#define KERN_AVX2_Q4_MANY 8 /* Q4_0 jobs of this many tokens or more: kern_mm_rows_avx2_q4_0 */
void kern_mm_rows_avx2_q4_0(const kern_mm_job *j, int64_t r0, int64_t r1); /* quantized FAST Q4_0, any rows */
#define KERN_AVX2_Q4K_MANY 16 /* Q4_K jobs of this many tokens or more: kern_mm_rows_avx2_q4_k */
void kern_mm_rows_avx2_q4_k(const kern_mm_job *j, int64_t r0, int64_t r1); /* quantized FAST Q4_K, any rows */
/* AVX2 issue 22 types (cpu/q22_avx2.c): Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS, quantized FAST, every token count */
int kern_q22_avx2_supports(uint32_t type);
void kern_mm_rows_q22_avx2(const kern_mm_job *j, int64_t r0, int64_t r1);
/* AVX-512 issue 22 types (cpu/q22_avx512.c): the same types in 16-row tiles on the raw
 * GGUF blocks (fewer than 16 rows left: kern_mm_rows_q22_avx2), every token count */
int kern_q22_avx512_supports(uint32_t type);
void kern_mm_rows_q22_avx512(const kern_mm_job *j, int64_t r0, int64_t r1);
#define KERN_AVX2_Q6K_MANY 16 /* Q6_K jobs of this many tokens or more: kern_mm_rows_avx2_q6_k */
void kern_mm_rows_avx2_q6_k(const kern_mm_job *j, int64_t r0, int64_t r1); /* quantized FAST Q6_K, any rows */

/* AMX (cpu/gemm_amx.c): many-token FAST, Q8_0 / Q4_0 / Q4_K / Q6_K on the avx512 packed copy,
 * issue 22's types on their raw GGUF blocks */
extern int kern_amx_test_epilogue; /* tests only: nonzero rounds the AMX epilogue unfused (wrong bits on purpose) */
int kern_amx_real(void); /* backend.c: the CPU has AMX-INT8 and Linux granted the tile state */
void kern_mm_rows_amx(const kern_mm_job *j, int64_t r0, int64_t r1);          /* the tile instructions */
void kern_mm_rows_amx_emulated(const kern_mm_job *j, int64_t r0, int64_t r1); /* the plain-C tile emulator */
/* Q2_K, Q3_K, Q5_K quantized FAST, any token count, on the GGUF blocks: 8-row AVX2 tiles
 * (cpu/kquant_avx2.c), 16-row AVX-512 tiles (cpu/kquant_avx512.c; its last rows, fewer than
 * 16, run the AVX2 kernel) */
void kern_mm_rows_kq_avx2(const kern_mm_job *j, int64_t r0, int64_t r1);
void kern_mm_rows_kq_avx512(const kern_mm_job *j, int64_t r0, int64_t r1);

#endif
