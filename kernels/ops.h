/* ops.h - the operations of a transformer forward pass, behind one run-time dispatch.
 *
 *     kern_init(0);                       // detect the CPU, size the thread pool
 *     kern_matrix w = { .type = TENSOR_Q8_0, .rows = 1024, .cols = 5120, .data = p };
 *     kern_matrix_prepare(&w);            // optional repacking for the chosen level
 *     kern_matmul(y, &w, x, n_tokens, bias);
 *
 * Levels: KERN_SCALAR (plain C), KERN_AVX2 (AVX2+FMA+F16C), KERN_AVX512
 * (F/BW/VL/DQ, with VNNI and BF16 used where present). kern_init picks the best
 * level the CPU supports (KERN_AMX: AMX-INT8 tiles for many-token Q8_0/Q4_0, see
 * cpu/gemm_amx.c); the environment variable BATON_ISA=scalar|avx2|avx512|amx
 * (or kern_set_level) forces one, so tests can run every path.
 *
 * Precision: KERN_EXACT multiplies dequantized weights by f32 activations (the
 * reference that the float64 numpy model is compared with). KERN_FAST, the
 * default, quantizes activations on the fly to 8-bit blocks and dots them with
 * the quantized weights in integers, as serving engines do.
 *
 * Determinism: for a given precision, the value of every output element depends
 * only on its own inputs - never on the number of tokens in the call, on the
 * thread count, or on which other rows are computed - so a token's result is the
 * same decoded alone, in a prefill chunk, or batched with other sequences.
 */
#ifndef BATON_OPS_H
#define BATON_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* A level is its index in the table of kernel backends (kernels/backend.c). */
typedef enum kern_level {
    KERN_SCALAR = 0,
    KERN_AVX2 = 1,
    KERN_AVX512 = 2,
    KERN_AMX = 3,
} kern_level;

typedef enum kern_precision {
    KERN_FAST = 0,
    KERN_EXACT = 1,
} kern_precision;

/* Detect the CPU, apply BATON_ISA and BATON_THREADS if set, and start a pool of
 * n_threads (0: one per core). Safe to call more than once; returns 0 or -1 if a
 * forced level is not supported by this CPU (the message goes to stderr). */
int kern_init(int n_threads);
void kern_shutdown(void);
int kern_threads(void);
kern_level kern_best_level(void);           /* what this CPU supports */
kern_level kern_get_level(void);
int kern_set_level(kern_level level);       /* -1 if the CPU lacks it */
const char *kern_level_name(kern_level level);
void kern_set_precision(kern_precision p);
kern_precision kern_get_precision(void);
/* The CPU features found, e.g. "avx2 fma f16c avx512f avx512bw avx512vnni". */
const char *kern_cpu_features(void);

/* A weight matrix in GGUF layout: `rows` rows of `cols` elements of `type`, each
 * row tensor_row_bytes(type, cols) long. `packed` is kernel-private. */
typedef struct kern_matrix {
    uint32_t type;
    int64_t rows, cols;
    const void *data;
    void *packed;
    size_t packed_bytes;
} kern_matrix;

/* Build any repacked copy the current level wants for the current precision
 * (FAST only; set the level and precision first; 0, or -1 out of memory). After a
 * later change of level or precision the copy is simply not used. */
int kern_matrix_prepare(kern_matrix *m);
void kern_matrix_release(kern_matrix *m);

/* y[t][r] = sum_c W[r][c] * x[t][c] + bias[r] for t < n_tokens, r < rows.
 * x is [n_tokens][cols], y is [n_tokens][rows]; bias may be NULL. */
void kern_matmul(float *y, const kern_matrix *w, const float *x, int n_tokens, const float *bias);

/* Several matmuls that read the same x: x is quantized once (per activation
 * format) and all of them run as one pool job - one wake-up for Q/K/V or for
 * gate/up in a decode step. Every output is bit-identical to kern_matmul's. A
 * matrix whose cols differ from the first one's runs on its own. */
typedef struct kern_mm_out {
    float *y;             /* [n_tokens][w->rows] */
    const kern_matrix *w;
    const float *bias;    /* [w->rows] or NULL */
} kern_mm_out;
void kern_matmul_multi(const kern_mm_out *outs, int n_outs, const float *x, int n_tokens);

/* y[c] = E[row][c]: one embedding row, dequantized. */
void kern_embed(float *y, const kern_matrix *e, int64_t row);

/* y = x / sqrt(mean(x^2) + eps) * w, n elements (y may alias x). */
void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps);

/* Rotate n_heads heads of head_dim in place for position pos, NeoX layout (element
 * i pairs with i + head_dim/2), theta_i = pos * base^(-2i/head_dim). */
void kern_rope_neox(float *x, int n_heads, int head_dim, int32_t pos, float base);

/* RoPE with an optional YaRN extension (Peng et al. 2023, "YaRN: Efficient Context
 * Window Extension"; as llama.cpp's ggml rope_yarn and transformers' "yarn"):
 * with s = yarn_factor > 1 and L = yarn_orig_ctx, pair i's frequency
 * f_i = base^(-2i/hd) becomes f_i * ((1 - r_i) / s + r_i), the ramp
 * r_i = 1 - clamp((i - lo) / max(0.001, hi - lo), 0, 1) with
 * lo = max(0, floor(c(32))), hi = min(hd - 1, ceil(c(1))),
 * c(beta) = hd * ln(L / (2 pi beta)) / (2 ln base) (beta_fast 32, beta_slow 1:
 * high frequencies extrapolate, low ones interpolate), and cos/sin are multiplied
 * by the attention temperature mscale = 0.1 ln(s) + 1. yarn_factor <= 1 is plain
 * RoPE (kern_rope_neox). Computed in double, rounded once to float per pair. */
typedef struct kern_rope {
    float base;
    float yarn_factor;      /* > 1: YaRN with this factor; otherwise none */
    uint32_t yarn_orig_ctx; /* YaRN: the context the model was trained for */
} kern_rope;
void kern_rope_neox_ext(float *x, int n_heads, int head_dim, int32_t pos, const kern_rope *r);
/* The rotation's cos and sin of pairs i < head_dim/2 for position pos: what
 * kern_rope_neox_ext multiplies by (v[i] = x0*c - x1*s, v[i+half] = x0*s + x1*c,
 * each product rounded, then the sum). The GPU backend rotates with this table. */
void kern_rope_table(float *c, float *s, int head_dim, int32_t pos, const kern_rope *r);

/* y[i] = silu(gate[i]) * up[i]. */
void kern_swiglu(float *y, const float *gate, const float *up, int n);

/* y[i] += x[i]. */
void kern_add(float *y, const float *x, int n);

/* Store one row of n floats into a cache row of `type` (TENSOR_F32, TENSOR_F16, or
 * TENSOR_Q8_0 when n is a multiple of 32: the GGUF Q8_0 block, an f16 scale
 * d = fp16(amax / 127) and 32 int8 codes nearbyintf(x * 127 / amax) (half to
 * even, 0 when amax is 0), 34 bytes per 32 values). */
void kern_store_row(uint32_t type, void *dst, const float *src, int n);
/* Bytes of such a row of n values. */
size_t kern_kv_row_bytes(uint32_t type, int n);

/* One query token's grouped-query causal attention over positions [0, n_pos) of a
 * KV cache. q is [n_head][head_dim] (already rotated); k and v hold one row of
 * n_head_kv*head_dim elements of `type` per position, `row_stride` bytes apart.
 * out is [n_head][head_dim]. Scores are scaled by 1/sqrt(head_dim); the softmax
 * runs online over blocks of positions in a fixed order. Q8_0 rows are dequantized
 * exactly (f16 scale x int8 fits a float) and then used as f32 rows. */
typedef struct kern_kv_view {
    uint32_t type; /* TENSOR_F32, TENSOR_F16 or TENSOR_Q8_0 (head_dim a multiple of 32) */
    const void *k, *v;
    size_t row_stride;
} kern_kv_view;
void kern_attention(float *out, const float *q, const kern_kv_view *kv, int n_pos,
                    int n_head, int n_head_kv, int head_dim);

/* Peak int8 dot arithmetic of one thread at the current level, in ops per second
 * (a multiply-add counts 2), measured for about `seconds` with the clock `now`:
 * vpdpbusd (avx512), vpmaddubsw + vpmaddwd + vpaddd (avx2); 0 for scalar. For
 * benchmarks. */
double kern_peak_int8(double seconds, double (*now)(void));
/* Sum of the 64-bit words of a 64-byte-aligned buffer (bytes a multiple of 512),
 * read with the widest loads of the current level: a memory-bandwidth probe. */
uint64_t kern_stream_sum(const void *buf, size_t bytes);

#endif
