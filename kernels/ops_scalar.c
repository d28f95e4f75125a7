/* ops_scalar.c - the scalar reference of every operation in ops.h, and the
 * definition of the FAST arithmetic (see ops_internal.h) that the SIMD levels
 * reproduce bit for bit. Plain C: runs on any x86-64 (or other) CPU. At the end,
 * kern_backend_scalar: the bottom level of the backend table, complete.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "ops_internal.h"

/* e^x with a fixed operation sequence (range reduction by ln 2, degree-7
 * Taylor/Horner polynomial with fmaf, scaling by 2^n built from bits) so that
 * vector versions can reproduce it exactly. 0 below -87.3 (and for -inf), clamped
 * at e^88.3 above; NaN stays NaN. Relative error about 2 ulp. */
float kern_expf_ref(float x) {
    if (x != x) return x;
    if (!(x >= -87.3f)) return 0.0f;
    if (x > 88.3f) x = 88.3f;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693145751953125f, x);
    r = fmaf(-n, 1.42860682030941723212e-6f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* sum a[c]*b[c] over n: 16 lanes (lane = c mod 16) accumulated with fmaf in
 * increasing c, combined by the tree h = 8,4,2,1. The definition every level
 * follows for float dots. */
float kern_dot16_ref(const float *a, const float *b, int64_t n) {
    float lane[16] = {0};
    for (int64_t c = 0; c < n; c++) lane[c & 15] = fmaf(a[c], b[c], lane[c & 15]);
    for (int h = 8; h >= 1; h >>= 1)
        for (int i = 0; i < h; i++) lane[i] = lane[i] + lane[i + h];
    return lane[0];
}

/* One block of activation quantization: d and q from x (n elements); NaN and
 * infinities quantize to 0. Returns the sum of q. */
static int32_t quantize_block(const float *x, int n, float *d, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    if (!(amax <= 3.0e38f)) amax = 0.0f; /* inf/NaN: the block is garbage; keep it defined */
    *d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i] * id;
        if (v != v) v = 0.0f;
        if (v > 127.0f) v = 127.0f; /* amax * (127/amax) may round just above 127 */
        if (v < -127.0f) v = -127.0f;
        q[i] = (int8_t)nearbyintf(v);
        sum += q[i];
    }
    return sum;
}

/* x[n] (n a multiple of 32) into n/32 kq8_32 blocks. */
void kern_quantize_x32(kq8_32 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) out[b].sum = quantize_block(x + b * 32, 32, &out[b].d, out[b].q);
}

/* x[n] (n a multiple of 256) into n/256 kq8_256 blocks with sums per 16 and 32. */
void kern_quantize_x256(kq8_256 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++) {
        kq8_256 *o = &out[b];
        quantize_block(x + b * 256, 256, &o->d, o->q);
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += o->q[j * 16 + i];
            o->bsum16[j] = (int16_t)s;
        }
        for (int j = 0; j < 8; j++) o->bsum32[j] = (int16_t)(o->bsum16[2 * j] + o->bsum16[2 * j + 1]);
    }
}

int kern_mm_uses_x32(uint32_t type) { return type == TENSOR_Q8_0 || type == TENSOR_Q4_0 || kern_q22_uses_x32(type); }
int kern_mm_uses_x256(uint32_t type) {
    return type == TENSOR_Q4_K || type == TENSOR_Q6_K || type == TENSOR_IQ4_XS || kern_kq_is_new(type);
}

/* Issue 22's types on the FAST path (ops_internal.h gives the float steps):
 * the 32-element ones use x32 activations, IQ4_XS x256. */
int kern_q22_uses_x32(uint32_t type) {
    return type == TENSOR_Q4_1 || type == TENSOR_Q5_0 || type == TENSOR_Q5_1 || type == TENSOR_IQ4_NL;
}

/* The 32 integer weights of a 32-element block of an issue 22 type as the FAST
 * dot multiplies them: codes 0..15 / 0..31 (Q4_1, Q5_1: the offset m goes in
 * the float step), q - 16 (Q5_0), codebook values (IQ4_NL). The block's fp16 d
 * is its first two bytes, m (Q4_1, Q5_1) the next two. */
static void q22_weights32(uint32_t type, const uint8_t *blk, int *q) {
    const uint8_t *qs = blk + (type == TENSOR_Q4_1 ? 4 : type == TENSOR_Q5_0 ? 6 : type == TENSOR_Q5_1 ? 8 : 2);
    uint32_t qh = 0;
    if (type == TENSOR_Q5_0 || type == TENSOR_Q5_1) {
        const uint8_t *h = qs - 4;
        qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    }
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
    for (int i = 0; i < 32; i++) {
        if (type == TENSOR_Q5_0) q[i] -= 16;
        if (type == TENSOR_IQ4_NL) q[i] = quant_iq4nl_values[q[i]];
    }
}

static uint16_t q22_ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* FAST dot of one issue 22 weight row with one quantized token. */
static float q22_fast_dot_row(uint32_t type, const uint8_t *w, const void *xq, int64_t cols) {
    float acc = 0.0f;
    if (type == TENSOR_IQ4_XS) {
        const kq8_256 *x = xq;
        for (int64_t b = 0; b < cols / 256; b++, w += sizeof(block_iq4_xs)) {
            block_iq4_xs blk;
            memcpy(&blk, w, sizeof blk);
            int32_t isum = 0;
            for (int j = 0; j < 8; j++) {
                int ls = ((blk.scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((blk.scales_h >> (2 * j)) & 3) << 4;
                int32_t dot = 0;
                for (int l = 0; l < 16; l++) {
                    dot += quant_iq4nl_values[blk.qs[16 * j + l] & 15] * x[b].q[32 * j + l];
                    dot += quant_iq4nl_values[blk.qs[16 * j + l] >> 4] * x[b].q[32 * j + 16 + l];
                }
                isum += (ls - 32) * dot;
            }
            acc = fmaf(fp16_to_f32(blk.d) * x[b].d, (float)isum, acc);
        }
        return acc;
    }
    const kq8_32 *x = xq;
    const size_t bb = tensor_type_get(type)->block_bytes;
    const int affine = type == TENSOR_Q4_1 || type == TENSOR_Q5_1; /* x = d * q + m */
    for (int64_t b = 0; b < cols / 32; b++, w += bb) {
        int q[32];
        q22_weights32(type, w, q);
        int32_t isum = 0;
        for (int i = 0; i < 32; i++) isum += q[i] * x[b].q[i];
        acc = fmaf(fp16_to_f32(q22_ld16(w)) * x[b].d, (float)isum, acc);
        if (affine) acc = fmaf(fp16_to_f32(q22_ld16(w + 2)) * x[b].d, (float)x[b].sum, acc);
    }
    return acc;
}

/* ------------------------------------------- Q2_K, Q3_K, Q5_K (FAST, scalar) */

int kern_kq_is_new(uint32_t type) { return type == TENSOR_Q2_K || type == TENSOR_Q3_K || type == TENSOR_Q5_K; }

/* The 6-bit scale code (0..63) of Q3_K sub-block s (quant.h). */
int kern_q3k_scale(const uint8_t *S, int s) {
    return (s < 8 ? S[s] & 15 : S[s - 8] >> 4) | ((S[8 + (s & 3)] >> (2 * (s >> 2))) & 3) << 4;
}

/* The 256 integer codes of one block, in element order: Q2_K 0..3, Q3_K -4..3
 * (the offset applied), Q5_K 0..31. */
void kern_kq_codes(uint32_t type, const void *blk, int8_t q[256]) {
    if (type == TENSOR_Q5_K) {
        const block_q5_K *w = blk;
        for (int e = 0; e < 256; e++)
            q[e] = (int8_t)(((w->qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) & 1))) & 15) |
                            ((w->qh[e % 32] >> (e / 32)) & 1) << 4);
        return;
    }
    const uint8_t *qs = type == TENSOR_Q2_K ? ((const block_q2_K *)blk)->qs : ((const block_q3_K *)blk)->qs;
    for (int e = 0; e < 256; e++) q[e] = (int8_t)((qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3);
    if (type == TENSOR_Q3_K) {
        const uint8_t *hm = ((const block_q3_K *)blk)->hmask;
        for (int e = 0; e < 256; e++) q[e] = (int8_t)(q[e] + (((hm[e % 32] >> (e / 32)) & 1) << 2) - 4);
    }
}

/* FAST dot of one Q2_K / Q3_K / Q5_K row with one kq8_256 token (ops_internal.h):
 * per block the exact isum (scale-weighted sub-block dots) and, for the types
 * with mins, ism (min-weighted activation block sums), then
 *   Q3_K:        acc = fmaf(d * d_x, isum, acc)
 *   Q2_K, Q5_K:  acc = fmaf(d * d_x, isum, acc); acc = fmaf(-(dmin * d_x), ism, acc) */
float kern_kq_dot_row(uint32_t type, const void *wrow, const kq8_256 *x, int64_t nb) {
    const size_t bb = tensor_type_get(type)->block_bytes;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + (size_t)b * bb;
        int8_t q[256];
        kern_kq_codes(type, blk, q);
        int32_t isum = 0, ism = 0;
        if (type == TENSOR_Q5_K) {
            const block_q5_K *w = (const block_q5_K *)blk;
            for (int s = 0; s < 8; s++) {
                int sc, m;
                kern_q4k_scale_min(w->scales, s, &sc, &m);
                int32_t dot = 0;
                for (int l = 0; l < 32; l++) dot += q[32 * s + l] * x[b].q[32 * s + l];
                isum += sc * dot;
                ism += m * x[b].bsum32[s];
            }
            uint16_t d, dmin;
            memcpy(&d, &w->d, 2), memcpy(&dmin, &w->dmin, 2);
            acc = fmaf(fp16_to_f32(d) * x[b].d, (float)isum, acc);
            acc = fmaf(-(fp16_to_f32(dmin) * x[b].d), (float)ism, acc);
            continue;
        }
        for (int s = 0; s < 16; s++) {
            int32_t dot = 0;
            for (int l = 0; l < 16; l++) dot += q[16 * s + l] * x[b].q[16 * s + l];
            if (type == TENSOR_Q2_K) {
                uint8_t sm = ((const block_q2_K *)blk)->scales[s];
                isum += (sm & 15) * dot;
                ism += (sm >> 4) * x[b].bsum16[s];
            } else {
                isum += (kern_q3k_scale(((const block_q3_K *)blk)->scales, s) - 32) * dot;
            }
        }
        if (type == TENSOR_Q2_K) {
            block_q2_K w;
            memcpy(&w, blk, sizeof w);
            acc = fmaf(fp16_to_f32(w.d) * x[b].d, (float)isum, acc);
            acc = fmaf(-(fp16_to_f32(w.dmin) * x[b].d), (float)ism, acc);
        } else {
            block_q3_K w;
            memcpy(&w, blk, sizeof w);
            acc = fmaf(fp16_to_f32(w.d) * x[b].d, (float)isum, acc);
        }
    }
    return acc;
}

/* The 6-bit scale and min of sub-block j of a Q4_K block (GGUF packing). */
void kern_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* FAST dot of one quantized weight row with one quantized token (ops_internal.h). */
static float fast_dot_row(uint32_t type, const void *wrow, const void *xq, int64_t cols) {
    float acc = 0.0f;
    if (kern_q22_uses_x32(type) || type == TENSOR_IQ4_XS) return q22_fast_dot_row(type, wrow, xq, cols);
    if (type == TENSOR_Q8_0) {
        const block_q8_0 *w = wrow;
        const kq8_32 *x = xq;
        for (int64_t b = 0; b < cols / 32; b++) {
            int32_t isum = 0;
            for (int i = 0; i < 32; i++) isum += (int32_t)w[b].qs[i] * x[b].q[i];
            acc = fmaf(fp16_to_f32(w[b].d) * x[b].d, (float)isum, acc);
        }
    } else if (type == TENSOR_Q4_0) {
        const block_q4_0 *w = wrow;
        const kq8_32 *x = xq;
        for (int64_t b = 0; b < cols / 32; b++) {
            int32_t isum = 0;
            for (int i = 0; i < 16; i++) {
                isum += ((w[b].qs[i] & 15) - 8) * x[b].q[i];
                isum += ((w[b].qs[i] >> 4) - 8) * x[b].q[i + 16];
            }
            acc = fmaf(fp16_to_f32(w[b].d) * x[b].d, (float)isum, acc);
        }
    } else if (type == TENSOR_Q4_K) {
        const block_q4_K *w = wrow;
        const kq8_256 *x = xq;
        for (int64_t b = 0; b < cols / 256; b++) {
            int32_t isa = 0, ism = 0;
            for (int j = 0; j < 8; j++) {
                int sc, m;
                kern_q4k_scale_min(w[b].scales, j, &sc, &m);
                const uint8_t *qs = w[b].qs + 32 * (j / 2);
                int shift = (j & 1) * 4;
                int32_t dot = 0;
                for (int l = 0; l < 32; l++) dot += ((qs[l] >> shift) & 15) * x[b].q[32 * j + l];
                isa += sc * dot;
                ism += m * x[b].bsum32[j];
            }
            acc = fmaf(fp16_to_f32(w[b].d) * x[b].d, (float)isa, acc);
            acc = fmaf(-(fp16_to_f32(w[b].dmin) * x[b].d), (float)ism, acc);
        }
    } else if (type == TENSOR_Q6_K) {
        const block_q6_K *w = wrow;
        const kq8_256 *x = xq;
        for (int64_t b = 0; b < cols / 256; b++) {
            int8_t q[256];
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = w[b].ql + 64 * half, *qh = w[b].qh + 32 * half;
                int8_t *o = q + 128 * half;
                for (int l = 0; l < 32; l++) {
                    o[l] = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
                    o[l + 32] = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                    o[l + 64] = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                    o[l + 96] = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                }
            }
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t dot = 0;
                for (int i = 0; i < 16; i++) dot += q[16 * j + i] * x[b].q[16 * j + i];
                isum += w[b].scales[j] * (dot - 32 * x[b].bsum16[j]);
            }
            acc = fmaf(fp16_to_f32(w[b].d) * x[b].d, (float)isum, acc);
        }
    } else if (kern_kq_is_new(type)) {
        acc = kern_kq_dot_row(type, wrow, xq, cols / 256);
    }
    return acc;
}

/* Rows [r0, r1) of a matmul, all tokens, scalar. FAST for quantized types uses
 * the integer path; EXACT, and the float types in both precisions, dequantize the
 * row with quant_dequantize_row and take kern_dot16_ref with each token. */
void kern_mm_rows_scalar(const kern_mm_job *j, int64_t r0, int64_t r1) {
    const kern_matrix *w = j->w;
    const int64_t cols = w->cols, rows = w->rows;
    const size_t rb = tensor_row_bytes(w->type, cols);
    const int quant_fast = j->prec == KERN_FAST && (kern_mm_uses_x32(w->type) || kern_mm_uses_x256(w->type));
    float *buf = NULL;
    if (!quant_fast && w->type != TENSOR_F32) {
        buf = malloc((size_t)cols * sizeof(float));
        if (!buf) return;
    }
    const size_t xq_stride = kern_mm_uses_x32(w->type) ? (size_t)(cols / 32) * sizeof(kq8_32)
                                                       : (size_t)(cols / 256) * sizeof(kq8_256);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wrow = (const uint8_t *)w->data + (size_t)r * rb;
        const float *wf = NULL;
        if (!quant_fast) {
            if (w->type == TENSOR_F32) {
                wf = (const float *)wrow;
            } else {
                quant_dequantize_row(w->type, wrow, buf, cols);
                wf = buf;
            }
        }
        for (int t = 0; t < j->n_tokens; t++) {
            float acc = quant_fast ? fast_dot_row(w->type, wrow, (const uint8_t *)j->xq + (size_t)t * xq_stride, cols)
                                   : j->dot(wf, j->x + (size_t)t * cols, cols);
            j->y[(size_t)t * rows + r] = j->bias ? acc + j->bias[r] : acc;
        }
    }
    free(buf);
}

/* y = x / sqrt(mean(x^2) + eps) * w; the sum of squares is kern_dot16_ref(x, x). */
void kern_rmsnorm_scalar(float *y, const float *x, const float *w, int n, float eps) {
    float ss = kern_dot16_ref(x, x, n);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

/* y = gate / (1 + e^-gate) * up, with kern_expf_ref. */
void kern_swiglu_scalar(float *y, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        y[i] = (g / (1.0f + kern_expf_ref(-g))) * up[i];
    }
}

void kern_add_scalar(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = y[i] + x[i];
}

/* Element `i` of a cache row as float. */
static void kv_load(uint32_t type, const void *row, int64_t off, int n, float *dst) {
    if (type == TENSOR_F16) {
        const uint16_t *h = (const uint16_t *)row + off;
        for (int i = 0; i < n; i++) dst[i] = fp16_to_f32(h[i]);
    } else if (type == TENSOR_Q8_0) {
        kern_kv_load_q8_0(row, off, n, dst);
    } else {
        memcpy(dst, (const float *)row + off, (size_t)n * sizeof(float));
    }
}

/* One query head against KV head kvh: scores s_p = dot16(q, k_p) * (1/sqrt(hd)),
 * then online softmax over blocks of KERN_ATT_BLOCK positions in order: per block
 * m' = max(m, max s), c = exp(m - m'), l = l*c, o = o*c, then per position in
 * order e = exp(s - m'), l += e, o[d] = fmaf(e, v[d], o[d]); finally o / l. */
void kern_attention_head_scalar(float *out, const float *q, const kern_kv_view *kv, int n_pos, int kvh,
                                int n_head_kv, int head_dim) {
    (void)n_head_kv;
    float kf[KERN_MAX_HEAD_DIM], s[KERN_ATT_BLOCK];
    if (head_dim > KERN_MAX_HEAD_DIM || n_pos <= 0) {
        for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
        return;
    }
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int64_t off = (int64_t)kvh * head_dim;
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    for (int p0 = 0; p0 < n_pos; p0 += KERN_ATT_BLOCK) {
        int nb = n_pos - p0 < KERN_ATT_BLOCK ? n_pos - p0 : KERN_ATT_BLOCK;
        float bmax = -INFINITY;
        for (int i = 0; i < nb; i++) {
            kv_load(kv->type, (const uint8_t *)kv->k + (size_t)(p0 + i) * kv->row_stride, off, head_dim, kf);
            s[i] = kern_dot16_ref(q, kf, head_dim) * scale;
            if (s[i] > bmax) bmax = s[i];
        }
        float mn = m > bmax ? m : bmax;
        float c = kern_expf_ref(m - mn);
        l = l * c;
        for (int d = 0; d < head_dim; d++) out[d] = out[d] * c;
        for (int i = 0; i < nb; i++) {
            float e = kern_expf_ref(s[i] - mn);
            l = l + e;
            kv_load(kv->type, (const uint8_t *)kv->v + (size_t)(p0 + i) * kv->row_stride, off, head_dim, kf);
            for (int d = 0; d < head_dim; d++) out[d] = fmaf(e, kf[d], out[d]);
        }
        m = mn;
    }
    for (int d = 0; d < head_dim; d++) out[d] = out[d] / l;
}

/* ------------------------------------------------------------ the scalar backend */

/* Nothing to repack: the scalar loop reads the GGUF rows. */
static int scalar_pack(kern_matrix *m) {
    (void)m;
    return 1;
}

static kern_rows_fn scalar_mm_rows(const kern_mm_job *j) {
    (void)j;
    return kern_mm_rows_scalar;
}

static double scalar_peak_int8(double seconds, double (*now)(void)) {
    (void)seconds, (void)now;
    return 0.0;
}

static uint64_t scalar_stream_sum(const void *buf, size_t bytes) {
    const uint64_t *w = buf;
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 2 <= bytes / 8; i += 2) s0 += w[i], s1 += w[i + 1];
    return s0 + s1;
}

/* The reference level: every entry set (the levels above inherit from it). */
const kern_backend kern_backend_scalar = {
    .name = "scalar",
    .pack = scalar_pack,
    .mm_rows = scalar_mm_rows,
    .dot16 = kern_dot16_ref,
    .quantize_x32 = kern_quantize_x32,
    .quantize_x256 = kern_quantize_x256,
    .rmsnorm = kern_rmsnorm_scalar,
    .swiglu = kern_swiglu_scalar,
    .add = kern_add_scalar,
    .attention_head = kern_attention_head_scalar,
    .peak_int8 = scalar_peak_int8,
    .stream_sum = scalar_stream_sum,
    .codec = &codec_ops_scalar,
};
