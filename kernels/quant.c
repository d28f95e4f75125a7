/* quant.c - the GGML/GGUF number formats: type table, half-precision
 * conversions, and the scalar reference encoders and decoders.
 *
 * Decoders follow the block layouts of quant.h byte for byte. Encoders are
 * deterministic (same input, same bytes on every machine) and choose scales the
 * way ggml's reference quantizers do: max-magnitude scales for Q8_0/Q4_0, a
 * weighted least-squares search for the sub-block scales of Q4_K and Q6_K.
 *
 * Robustness: every float-to-integer conversion goes through quant_nearest(),
 * which clamps and maps NaN to a chosen value, so no input can reach an
 * undefined conversion. Block scales saturate at the largest finite fp16, so the
 * encoders never write inf or NaN scales.
 */
#include "quant.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- table */

static const tensor_type_info quant_types[] = {
    {TENSOR_F32, "f32", 1, 4},
    {TENSOR_F16, "f16", 1, 2},
    {TENSOR_Q4_0, "q4_0", QK4_0, sizeof(block_q4_0)},
    {TENSOR_Q8_0, "q8_0", QK8_0, sizeof(block_q8_0)},
    {TENSOR_Q4_K, "q4_K", QK_K, sizeof(block_q4_K)},
    {TENSOR_Q6_K, "q6_K", QK_K, sizeof(block_q6_K)},
    {TENSOR_BF16, "bf16", 1, 2},
    {TENSOR_Q4_1, "q4_1", 32, sizeof(block_q4_1)},
    {TENSOR_Q5_0, "q5_0", 32, sizeof(block_q5_0)},
    {TENSOR_Q5_1, "q5_1", 32, sizeof(block_q5_1)},
    {TENSOR_IQ4_NL, "iq4_nl", 32, sizeof(block_iq4_nl)},
    {TENSOR_IQ4_XS, "iq4_xs", QK_K, sizeof(block_iq4_xs)},
    {TENSOR_Q2_K, "q2_K", QK_K, sizeof(block_q2_K)},
    {TENSOR_Q3_K, "q3_K", QK_K, sizeof(block_q3_K)},
    {TENSOR_Q5_K, "q5_K", QK_K, sizeof(block_q5_K)},
};

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block must be 18 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block must be 34 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K block must be 144 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K block must be 210 bytes");
_Static_assert(sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24 &&
                   sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136,
               "issue 22 block sizes (ggml: 20, 22, 24, 18, 136)");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K block must be 84 bytes");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K block must be 110 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K block must be 176 bytes");

#define QUANT_NTYPES (sizeof(quant_types) / sizeof(quant_types[0]))

/* The table row for `type`, or NULL if unsupported. */
const tensor_type_info *tensor_type_get(uint32_t type) {
    for (size_t i = 0; i < QUANT_NTYPES; i++)
        if (quant_types[i].type == type) return &quant_types[i];
    return NULL;
}

/* The type id whose name matches `name` case-insensitively, or -1 (also for NULL). */
int tensor_type_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < QUANT_NTYPES; i++) {
        const char *a = quant_types[i].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return (int)quant_types[i].type;
    }
    return -1;
}

/* Bytes for n elements of `type`; 0 for an unknown type, n <= 0, a ragged n, or a
 * size that would not fit in size_t. */
size_t tensor_row_bytes(uint32_t type, int64_t n) {
    const tensor_type_info *t = tensor_type_get(type);
    if (!t || n <= 0 || n % t->block_elems) return 0;
    uint64_t blocks = (uint64_t)n / t->block_elems;
    if (blocks > SIZE_MAX / t->block_bytes) return 0;
    return (size_t)(blocks * t->block_bytes);
}

/* ------------------------------------------------------ half precision */

/* The bits of a binary32, and back (memcpy: the defined way to pun). */
static uint32_t quant_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float quant_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* binary16 -> binary32, exact for every input (subnormals, inf); a NaN keeps its
 * payload and comes out quiet, as vcvtph2ps gives it (so every level agrees). */
float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    if (exp == 0x1F) return quant_bits_f32(sign | 0x7F800000u | (man << 13) | (man ? 0x00400000u : 0));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in binary32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return quant_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* binary32 -> binary16, round to nearest even; overflow gives inf, values below
 * half the smallest subnormal give signed zero, NaN gives a quiet NaN that keeps
 * the top payload bits. */
uint16_t f32_to_fp16(float f) {
    uint32_t u = quant_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((abs >> 13) & 0x3FF));
    if (abs >= 0x47800000u) return (uint16_t)(sign | 0x7C00); /* >= 65536 or inf */
    int32_t exp = (int32_t)(abs >> 23) - 127;                  /* unbiased */
    uint32_t man = (abs & 0x7FFFFFu) | 0x800000u;              /* 24 bits with the hidden one */
    uint32_t shift;                                            /* bits of `man` to drop */
    uint32_t base;                                             /* half bits before the mantissa */
    if (exp >= -14) {
        shift = 13;
        base = (uint32_t)(exp + 14) << 10; /* exponent field - 1: the hidden one carries in */
    } else {
        if (exp < -25) return sign; /* below half the smallest subnormal (2^-25) */
        shift = (uint32_t)(-1 - exp);     /* exp -15 -> 14, ..., exp -25 -> 24 */
        base = 0;
    }
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    /* Adding q (with its hidden one) to base: carries roll into the exponent,
     * and 65520 and above round up to 0x7C00 = inf, as they must. */
    return (uint16_t)(sign | (base + q));
}

/* bf16 -> binary32: the upper half of the binary32 bits, exact. */
float bf16_to_f32(uint16_t h) {
    return quant_bits_f32((uint32_t)h << 16);
}

/* binary32 -> bf16, round to nearest even (overflow rounds to inf); NaN stays NaN
 * and becomes quiet. */
uint16_t f32_to_bf16(float f) {
    uint32_t u = quant_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040);
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* --------------------------------------------------------------- helpers */

/* Largest finite fp16. Block scales saturate here instead of becoming inf. */
#define QUANT_FP16_MAX 65504.0f
/* Encoders clamp inputs to +-QUANT_INPUT_MAX (and read NaN as 0) so that the
 * Q4_K least-squares sums (cubic in x) stay finite. Far above any value a
 * block scale can represent anyway (at most 65504 * 127). */
#define QUANT_INPUT_MAX 0x1p32f
/* Refinement rounds of the Q4_K sub-block fit; more change almost nothing. */
#define QUANT_Q4K_ROUNDS 4

/* floor(v) clamped to [lo, hi]; NaN gives nan_value. Defined for every float. */
static int quant_floor(float v, int lo, int hi, int nan_value) {
    if (v != v) return nan_value;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)floorf(v);
}

/* v rounded to the nearest integer (halves away from zero), clamped to
 * [lo, hi]; NaN gives nan_value. Defined for every float. */
static int quant_nearest(float v, int lo, int hi, int nan_value) {
    if (v != v) return nan_value;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    /* roundf without the library call: |v| < 2^31 here, and v - trunc(v) is exact */
    int i = (int)v;
    float frac = v - (float)i;
    return i + (frac >= 0.5f) - (frac <= -0.5f);
}

/* A block scale in fp16, saturated to the largest finite fp16 (non-negative
 * scales only; NaN reads as 0). */
static uint16_t quant_scale_fp16(float s) {
    if (!(s >= 0.0f)) return 0;
    if (s > QUANT_FP16_MAX) s = QUANT_FP16_MAX;
    return f32_to_fp16(s);
}

/* A signed block scale in fp16, saturated to +-65504 (NaN reads as 0). */
static uint16_t quant_signed_scale_fp16(float s) {
    if (s != s) return 0;
    if (s > QUANT_FP16_MAX) s = QUANT_FP16_MAX;
    if (s < -QUANT_FP16_MAX) s = -QUANT_FP16_MAX;
    return f32_to_fp16(s);
}

/* A super-scale in fp16 rounded AWAY from zero (to the next fp16 of at least
 * |s|), saturated to +-65504, NaN read as 0. Rounding up means the largest
 * sub-block scale divided by the stored value never exceeds the code range, so
 * it never clamps; this matters when the scale is an fp16 subnormal with few
 * significant bits (tiny blocks), where nearest rounding could lose up to half
 * the magnitude or flush a non-zero scale to 0. */
static uint16_t quant_scale_fp16_up(float s) {
    if (s != s || s == 0.0f) return 0;
    float a = fminf(fabsf(s), QUANT_FP16_MAX);
    uint16_t h = f32_to_fp16(a);
    if (fp16_to_f32(h) < a) h++; /* a < 65504 here, so h + 1 is finite */
    return (uint16_t)(s < 0.0f ? h | 0x8000 : h);
}

/* Copy n inputs to dst with NaN -> 0 and magnitudes clamped to QUANT_INPUT_MAX. */
static void quant_sanitize(const float *src, float *dst, int n) {
    for (int i = 0; i < n; i++) {
        float v = src[i];
        if (v != v) v = 0.0f;
        if (v > QUANT_INPUT_MAX) v = QUANT_INPUT_MAX;
        if (v < -QUANT_INPUT_MAX) v = -QUANT_INPUT_MAX;
        dst[i] = v;
    }
}

/* ------------------------------------------------------------ F32/F16/BF16 */

static void quant_dequant_f32(const void *src, float *dst, int64_t nb) {
    memcpy(dst, src, (size_t)nb * sizeof(float));
}

static void quant_quant_f32(const float *src, void *dst, int64_t nb) {
    memcpy(dst, src, (size_t)nb * sizeof(float));
}

static void quant_dequant_f16(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++) dst[i] = fp16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

static void quant_quant_f16(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < nb; i++) {
        uint16_t h = f32_to_fp16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static void quant_dequant_bf16(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++) dst[i] = bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

static void quant_quant_bf16(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < nb; i++) {
        uint16_t h = f32_to_bf16(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* Blocks are read and written through memcpy into a local struct so that any
 * source/destination alignment works (GGUF data need not be 2-aligned). The
 * struct fields are little-endian on the targets Baton supports (x86-64, arm64). */

/* ------------------------------------------------------------------ Q8_0 */

/* x[i] = d * qs[i] */
static void quant_dequant_q8_0(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q8_0), dst += QK8_0) {
        block_q8_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int i = 0; i < QK8_0; i++) dst[i] = d * (float)blk.qs[i];
    }
}

/* d = max|x| / 127, qs = round(x / d): the largest element maps to +-127. */
static void quant_quant_q8_0(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q8_0), src += QK8_0) {
        float x[QK8_0];
        quant_sanitize(src, x, QK8_0);
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = fminf(amax / 127.0f, QUANT_FP16_MAX);
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        block_q8_0 blk;
        blk.d = quant_scale_fp16(d);
        for (int i = 0; i < QK8_0; i++) blk.qs[i] = (int8_t)quant_nearest(x[i] * id, -127, 127, 0);
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------------------------------ Q4_0 */

/* x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8) */
static void quant_dequant_q4_0(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_0), dst += QK4_0) {
        block_q4_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = d * (float)((blk.qs[j] & 15) - 8);
            dst[j + QK4_0 / 2] = d * (float)((blk.qs[j] >> 4) - 8);
        }
    }
}

/* As ggml: d = m / -8 where m is the element of largest magnitude (with its
 * sign), so that m itself encodes as q = 0; q = floor(x / d + 8.5) clamped to
 * [0, 15] (nearest, halves rounded up, as ggml's reference does). */
static void quant_quant_q4_0(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_0), src += QK4_0) {
        float x[QK4_0];
        quant_sanitize(src, x, QK4_0);
        float amax = 0.0f, m = 0.0f;
        for (int i = 0; i < QK4_0; i++) {
            if (fabsf(x[i]) > amax) {
                amax = fabsf(x[i]);
                m = x[i];
            }
        }
        float d = m / -8.0f;
        if (d > QUANT_FP16_MAX) d = QUANT_FP16_MAX;
        if (d < -QUANT_FP16_MAX) d = -QUANT_FP16_MAX;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        block_q4_0 blk;
        blk.d = quant_signed_scale_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = quant_floor(x[j] * id + 8.5f, 0, 15, 8);
            int hi = quant_floor(x[j + QK4_0 / 2] * id + 8.5f, 0, 15, 8);
            blk.qs[j] = (uint8_t)(lo | (hi << 4));
        }
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------------------------------ Q4_K */

/* The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes:
 *   j < 4:  sc = s[j] & 63,                         m = s[j + 4] & 63
 *   j >= 4: sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4,
 *           m  = (s[j + 4] >> 4) | (s[j] >> 6) << 4
 * i.e. bytes 0-3 hold the scales of 0-3 (low 6 bits) and the top bits of the
 * scales 4-7, bytes 4-7 the mins of 0-3 and the top bits of the mins 4-7, and
 * bytes 8-11 the low nibbles of scale (low half) and min (high half) of 4-7. */
static void quant_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* The inverse of quant_q4k_scale_min: packs 8 scales and 8 mins (each 0..63). */
static void quant_q4k_pack_scales(const int sc[8], const int m[8], uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Each 64-element chunk c uses qs[32c .. 32c+31]: element 64c+l (l < 32) is the
 * low nibble of qs[32c+l] with sub-block 2c, element 64c+32+l the high nibble
 * with sub-block 2c+1. x = d * sc * q - dmin * m. */
static void quant_dequant_q4_K(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_K), dst += QK_K) {
        block_q4_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d), dmin = fp16_to_f32(blk.dmin);
        for (int c = 0; c < QK_K / 64; c++) {
            int sc0, m0, sc1, m1;
            quant_q4k_scale_min(blk.scales, 2 * c, &sc0, &m0);
            quant_q4k_scale_min(blk.scales, 2 * c + 1, &sc1, &m1);
            float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
            float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
            const uint8_t *q = blk.qs + 32 * c;
            float *y = dst + 64 * c;
            for (int l = 0; l < 32; l++) {
                y[l] = d0 * (float)(q[l] & 15) - mm0;
                y[l + 32] = d1 * (float)(q[l] >> 4) - mm1;
            }
        }
    }
}

/* The weighted least-squares (scale, min) for fixed codes L: minimizes
 * sum w[i] * (scale * L[i] + min - x[i])^2 with min <= 0 (an offset that would
 * be positive is pinned at 0 and the scale refitted alone). sum_w and sum_x are
 * sum w[i] and sum w[i] * x[i]. Returns 0, or -1 if L is constant (no fit). */
static int quant_lsq_scale_min(int n, const float *x, const float *w, const int *L, float sum_w, float sum_x,
                               float *scale, float *min) {
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; i++) {
        sum_l += w[i] * (float)L[i];
        sum_l2 += w[i] * (float)L[i] * (float)L[i];
        sum_xl += w[i] * (float)L[i] * x[i];
    }
    float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0.0f)) return -1;
    *scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    *min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (*min > 0.0f) {
        *min = 0.0f;
        *scale = sum_xl / sum_l2;
    }
    return 0;
}

/* The weighted squared error of x[i] ~ scale * L[i] + min, and in *emax the
 * largest plain error. */
static float quant_fit_error(int n, const float *x, const float *w, const int *L, float scale, float min,
                             float *emax) {
    float err = 0.0f;
    *emax = 0.0f;
    for (int i = 0; i < n; i++) {
        float diff = scale * (float)L[i] + min - x[i], adiff = fabsf(diff);
        err += w[i] * diff * diff;
        if (adiff > *emax) *emax = adiff; /* fmaxf without the call: a NaN diff is skipped the same way */
    }
    return err;
}

/* Fits x[i] ~ scale * L[i] - m with L in [0, nmax] and m >= 0, minimizing the
 * weighted squared error sum w[i] * (scale * L[i] - m - x[i])^2 (n <= 32):
 *  1. candidates: the plain grid over [min(x, 0), max(x)], and inverse scales
 *     (nmax - 1 + k/10) / (max - min) for k = 0..20, each rounded to codes L
 *     and refitted by least squares given L;
 *  2. the best candidate is refined by alternating "round L with the fit" and
 *     "least-squares fit given L" while that lowers the error (a few rounds).
 * A fit is only taken if no element is off by more than 0.75 of the plain grid
 * step (max - min) / nmax; this caps the worst error at 1.5 times that of the
 * plain grid (always available) at almost no cost in squared error.
 * Returns the scale; *min_out gets m. */
static float quant_fit_scale_min(int n, int nmax, const float *x, const float *w, float *min_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) { /* x is sanitized: no NaN */
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (lo > 0.0f) lo = 0.0f; /* m must be >= 0: the offset never goes positive */
    if (hi <= lo) {
        *min_out = -lo;
        return 0.0f;
    }
    float cap = 0.75f * (hi - lo) / (float)nmax;
    float sum_w = 0.0f, sum_x = 0.0f;
    for (int i = 0; i < n; i++) {
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    int L[32];
    float emax;
    float best_scale = (hi - lo) / (float)nmax, best_min = lo;
    for (int i = 0; i < n; i++) L[i] = quant_nearest((x[i] - lo) / best_scale, 0, nmax, 0);
    float best_err = quant_fit_error(n, x, w, L, best_scale, best_min, &emax);
    for (int k = 0; k <= 20; k++) {
        float iscale = ((float)nmax - 1.0f + 0.1f * (float)k) / (hi - lo), scale, min;
        for (int i = 0; i < n; i++) L[i] = quant_nearest(iscale * (x[i] - lo), 0, nmax, 0);
        if (quant_lsq_scale_min(n, x, w, L, sum_w, sum_x, &scale, &min)) continue;
        float err = quant_fit_error(n, x, w, L, scale, min, &emax);
        if (err < best_err && emax <= cap) {
            best_err = err;
            best_scale = scale;
            best_min = min;
        }
    }
    for (int round = 0; round < QUANT_Q4K_ROUNDS && best_scale > 0.0f; round++) {
        float scale, min;
        for (int i = 0; i < n; i++) L[i] = quant_nearest((x[i] - best_min) / best_scale, 0, nmax, 0);
        if (quant_lsq_scale_min(n, x, w, L, sum_w, sum_x, &scale, &min)) break;
        float err = quant_fit_error(n, x, w, L, scale, min, &emax);
        if (!(err < best_err && emax <= cap)) break;
        best_err = err;
        best_scale = scale;
        best_min = min;
    }
    *min_out = -best_min;
    return best_scale;
}

/* Per 32-element sub-block: fit (scale, min) with weights |x| + rms (large
 * values matter more, as in ggml), then quantize the 8 scales and 8 mins to 6
 * bits under fp16 super-scales d = max scale / 63 and dmin = max min / 63, and
 * round every element with the quantized scale and min actually stored. */
static void quant_quant_q4_K(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_K), src += QK_K) {
        float x[QK_K], w[32], scales[8], mins[8];
        quant_sanitize(src, x, QK_K);
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum2 = 0.0f;
            for (int l = 0; l < 32; l++) sum2 += xs[l] * xs[l];
            float rms = sqrtf(sum2 / 32.0f);
            for (int l = 0; l < 32; l++) w[l] = rms + fabsf(xs[l]);
            scales[j] = quant_fit_scale_min(32, 15, xs, w, &mins[j]);
            if (!(scales[j] >= 0.0f)) scales[j] = 0.0f; /* a degenerate fit */
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        block_q4_K blk;
        blk.d = quant_scale_fp16_up(max_scale / 63.0f);
        blk.dmin = quant_scale_fp16_up(max_min / 63.0f);
        float dq = fp16_to_f32(blk.d), dmq = fp16_to_f32(blk.dmin);
        float inv_d = dq > 0.0f ? 1.0f / dq : 0.0f, inv_dm = dmq > 0.0f ? 1.0f / dmq : 0.0f;
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = quant_nearest(scales[j] * inv_d, 0, 63, 0);
            mn[j] = quant_nearest(mins[j] * inv_dm, 0, 63, 0);
        }
        quant_q4k_pack_scales(sc, mn, blk.scales);
        uint8_t L[QK_K];
        for (int j = 0; j < 8; j++) {
            float ds = dq * (float)sc[j], dm = dmq * (float)mn[j];
            float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)quant_nearest((x[32 * j + l] + dm) * ids, 0, 15, 0);
        }
        for (int c = 0; c < QK_K / 64; c++)
            for (int l = 0; l < 32; l++)
                blk.qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------------------------------ Q6_K */

/* Each 128-element half h uses ql[64h .. 64h+63], qh[32h .. 32h+31] and
 * scales[8h .. 8h+7]. For l < 32, with QL = ql + 64h, QH = qh + 32h:
 *   element 128h + l      : low nibble of QL[l],      bits 0-1 of QH[l]
 *   element 128h + l + 32 : low nibble of QL[l + 32], bits 2-3 of QH[l]
 *   element 128h + l + 64 : high nibble of QL[l],     bits 4-5 of QH[l]
 *   element 128h + l + 96 : high nibble of QL[l + 32], bits 6-7 of QH[l]
 * q = nibble | (2 bits) << 4 in 0..63; element e belongs to sub-block e / 16
 * and x = d * scales[e / 16] * (q - 32). */
static void quant_dequant_q6_K(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q6_K), dst += QK_K) {
        block_q6_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk.ql + 64 * h, *qh = blk.qh + 32 * h;
            float *y = dst + 128 * h;
            for (int l = 0; l < 32; l++) {
                int q0 = (ql[l] & 15) | ((qh[l] & 3) << 4);
                int q1 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
                int q2 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                int q3 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                y[l] = d * (float)blk.scales[(128 * h + l) / 16] * (float)(q0 - 32);
                y[l + 32] = d * (float)blk.scales[(128 * h + l + 32) / 16] * (float)(q1 - 32);
                y[l + 64] = d * (float)blk.scales[(128 * h + l + 64) / 16] * (float)(q2 - 32);
                y[l + 96] = d * (float)blk.scales[(128 * h + l + 96) / 16] * (float)(q3 - 32);
            }
        }
    }
}

/* Fits x[i] ~ scale * L[i] with L in [-nmax, nmax - 1], weights x[i]^2 (n <= 16).
 * The element of largest magnitude m sets the inverse scale -nmax / m (so it
 * lands on -nmax, using the asymmetric end of the range); neighbours
 * -(nmax + k/10) / m for k = -9..9 are tried, each with the least-squares scale
 * for its codes, and the fit of least weighted error wins. A fit is only taken
 * if no element is off by more than 0.75 * |m| / nmax (1.5 times half the
 * plain step); the fallback |m| / (nmax - 1/2), which puts both ends of
 * [-|m|, |m|] within half a step of the grid, always meets that. Returns the
 * scale, 0 for an all-zero input. The caller rounds again with the stored
 * scale, so codes are not returned. */
static float quant_fit_scale_sym(int n, int nmax, const float *x) {
    float amax = 0.0f, m = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            m = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    /* The search runs on x / amax (in [-1, 1]): the weighted sums are of
     * degree 4 in x and would overflow for large blocks. */
    float xn[16], mn = m / amax; /* divisions: 1 / amax overflows for f32 subnormals */
    for (int i = 0; i < n; i++) xn[i] = x[i] / amax;
    float cap = 0.75f / (float)nmax;
    float best_scale = -mn / ((float)nmax - 0.5f), best_score = -1.0f;
    for (int k = -10; k <= 9; k++) {
        /* k = -10 is the plain -nmax / m candidate */
        float iscale = k == -10 ? -(float)nmax / mn : -((float)nmax + 0.1f * (float)k) / mn;
        float sum_lx = 0.0f, sum_l2 = 0.0f;
        int L[16];
        for (int i = 0; i < n; i++) {
            float w = xn[i] * xn[i];
            L[i] = quant_nearest(iscale * xn[i], -nmax, nmax - 1, 0);
            sum_lx += w * xn[i] * (float)L[i];
            sum_l2 += w * (float)L[i] * (float)L[i];
        }
        /* with scale = sum_lx / sum_l2 the weighted error is
         * sum w x^2 - sum_lx^2 / sum_l2: maximize sum_lx^2 / sum_l2 */
        if (!(sum_l2 > 0.0f)) continue;
        float score = sum_lx * sum_lx / sum_l2, scale = sum_lx / sum_l2;
        if (!(score > best_score)) continue;
        float emax = 0.0f;
        for (int i = 0; i < n; i++) emax = fmaxf(emax, fabsf(scale * (float)L[i] - xn[i]));
        if (emax <= cap) {
            best_score = score;
            best_scale = scale;
        }
    }
    return best_scale * amax;
}

/* Per 16-element sub-block: fit a signed scale, then quantize the 16 scales to
 * int8 under an fp16 d chosen so the scale of largest magnitude maps to -128
 * (clamped to 127 on the positive side), and round every element with the
 * stored d * scale into [-32, 31]. */
static void quant_quant_q6_K(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q6_K), src += QK_K) {
        float x[QK_K], scales[16];
        quant_sanitize(src, x, QK_K);
        float amax = 0.0f, m = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = quant_fit_scale_sym(16, 32, x + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                m = scales[j];
            }
        }
        block_q6_K blk;
        memset(&blk, 0, sizeof blk);
        float d = m / -128.0f;
        blk.d = quant_scale_fp16_up(d);
        float dq = fp16_to_f32(blk.d);
        float id = dq != 0.0f ? 1.0f / dq : 0.0f;
        int L[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = quant_nearest(scales[j] * id, -128, 127, 0);
            blk.scales[j] = (int8_t)s;
            float ds = dq * (float)s;
            float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 16; l++) L[16 * j + l] = quant_nearest(x[16 * j + l] * ids, -32, 31, 0) + 32;
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = blk.ql + 64 * h, *qh = blk.qh + 32 * h;
            const int *Lh = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 15) | ((Lh[l + 64] & 15) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | ((Lh[l + 96] & 15) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS
 *
 * Issue 22's types. The 32-element ones share Q4_0's nibble order: byte j holds
 * element j in its low nibble and element j + 16 in its high nibble; the 5-bit
 * types add bit 4 of element i as bit i of the little-endian u32 qh. */

const int8_t quant_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static uint32_t quant_ld32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 32 codes of a 32-element block from its 16 nibble bytes and (5-bit types)
 * the 32 high bits qh (0 for the 4-bit types). */
static void quant_codes32(const uint8_t *qs, uint32_t qh, int *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
    }
}

/* The inverse: 32 codes (0..31 or 0..15) into nibble bytes and high bits. */
static uint32_t quant_pack32(const int *q, uint8_t *qs) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        qh |= (uint32_t)((q[j] >> 4) & 1) << j | (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    return qh;
}

/* x = d * q + m (Q4_1: nmax 15; Q5_1: nmax 31) */
static void quant_dequant_q4_1(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q4_1), dst += 32) {
        block_q4_1 blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d), m = fp16_to_f32(blk.m);
        int q[32];
        quant_codes32(blk.qs, 0, q);
        for (int i = 0; i < 32; i++) dst[i] = d * (float)q[i] + m;
    }
}

static void quant_dequant_q5_1(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_1), dst += 32) {
        block_q5_1 blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d), m = fp16_to_f32(blk.m);
        int q[32];
        quant_codes32(blk.qs, quant_ld32(blk.qh), q);
        for (int i = 0; i < 32; i++) dst[i] = d * (float)q[i] + m;
    }
}

/* x = d * (q - 16) */
static void quant_dequant_q5_0(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_0), dst += 32) {
        block_q5_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        int q[32];
        quant_codes32(blk.qs, quant_ld32(blk.qh), q);
        for (int i = 0; i < 32; i++) dst[i] = d * (float)(q[i] - 16);
    }
}

/* x = d * values[q] */
static void quant_dequant_iq4_nl(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_iq4_nl), dst += 32) {
        block_iq4_nl blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        int q[32];
        quant_codes32(blk.qs, 0, q);
        for (int i = 0; i < 32; i++) dst[i] = d * (float)quant_iq4nl_values[q[i]];
    }
}

/* The 6-bit stored scale of IQ4_XS sub-block j (the value is ls - 32). */
static int quant_iq4xs_ls(const block_iq4_xs *blk, int j) {
    return ((blk->scales_l[j / 2] >> (4 * (j % 2))) & 15) | ((blk->scales_h >> (2 * j)) & 3) << 4;
}

/* sub-block j (32 elements, qs[16j ..]): x = d * (ls_j - 32) * values[q] */
static void quant_dequant_iq4_xs(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_iq4_xs), dst += QK_K) {
        block_iq4_xs blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int j = 0; j < 8; j++) {
            float dl = d * (float)(quant_iq4xs_ls(&blk, j) - 32);
            int q[32];
            quant_codes32(blk.qs + 16 * j, 0, q);
            for (int i = 0; i < 32; i++) dst[32 * j + i] = dl * (float)quant_iq4nl_values[q[i]];
        }
    }
}

/* ------------------------------------------------------- Q2_K, Q3_K, Q5_K */

/* The 6-bit scale code (0..63, before the -32 offset) of Q3_K sub-block s
 * (0..15) from the 12 packed bytes: low 4 bits in S[s] (s < 8) or the high
 * nibble of S[s - 8]; high 2 bits in S[8 + s % 4] at bit 2 * (s / 4). */
static int quant_q3k_scale(const uint8_t *S, int s) {
    int lo = s < 8 ? S[s] & 15 : S[s - 8] >> 4;
    int hi = (S[8 + (s & 3)] >> (2 * (s >> 2))) & 3;
    return lo | hi << 4;
}

/* The inverse of quant_q3k_scale: 16 codes (0..63) into 12 bytes. */
static void quant_q3k_pack_scales(const int c[16], uint8_t S[12]) {
    memset(S, 0, 12);
    for (int s = 0; s < 16; s++) {
        if (s < 8)
            S[s] |= (uint8_t)(c[s] & 15);
        else
            S[s - 8] |= (uint8_t)((c[s] & 15) << 4);
        S[8 + (s & 3)] |= (uint8_t)(((c[s] >> 4) & 3) << (2 * (s >> 2)));
    }
}

/* The 2-bit code of element e of a 64-byte qs (Q2_K, and the low bits of Q3_K):
 * element 128h + 32k + l is bits 2k, 2k+1 of qs[32h + l]. */
static int quant_q2_bits(const uint8_t *qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
}

/* Pack 256 2-bit codes the way quant_q2_bits reads them. */
static void quant_q2_pack(const int *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            qs[32 * h + l] = (uint8_t)(L[128 * h + l] | L[128 * h + l + 32] << 2 | L[128 * h + l + 64] << 4 |
                                       L[128 * h + l + 96] << 6);
}

/* x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), s = e / 16. */
static void quant_dequant_q2_K(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q2_K), dst += QK_K) {
        block_q2_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d), dmin = fp16_to_f32(blk.dmin);
        for (int s = 0; s < 16; s++) {
            float dl = d * (float)(blk.scales[s] & 15), ml = dmin * (float)(blk.scales[s] >> 4);
            for (int l = 0; l < 16; l++) dst[16 * s + l] = dl * (float)quant_q2_bits(blk.qs, 16 * s + l) - ml;
        }
    }
}

/* Q4_1 / Q5_1: d = (max - min) / nmax, m = min (both fp16), every element
 * rounded to the nearest code with the stored d and m. */
static void quant_quant_affine32(const float *src, uint8_t *p, int64_t nb, int nmax, size_t bytes) {
    for (int64_t b = 0; b < nb; b++, p += bytes, src += 32) {
        float x[32];
        quant_sanitize(src, x, 32);
        float lo = x[0], hi = x[0];
        for (int i = 1; i < 32; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        uint16_t dh = quant_scale_fp16((hi - lo) / (float)nmax), mh = quant_signed_scale_fp16(lo);
        float d = fp16_to_f32(dh), m = fp16_to_f32(mh), id = d > 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = quant_nearest((x[i] - m) * id, 0, nmax, 0);
        uint8_t qs[16];
        uint32_t qh = quant_pack32(q, qs);
        if (nmax == 15) {
            block_q4_1 blk = {.d = dh, .m = mh};
            memcpy(blk.qs, qs, 16);
            memcpy(p, &blk, sizeof blk);
        } else {
            block_q5_1 blk = {.d = dh, .m = mh};
            for (int k = 0; k < 4; k++) blk.qh[k] = (uint8_t)(qh >> (8 * k));
            memcpy(blk.qs, qs, 16);
            memcpy(p, &blk, sizeof blk);
        }
    }
}

/* x = d * (c_s - 32) * (q - 4): q = 2 bits from qs | bit e/32 of hmask[e%32] << 2. */
static void quant_dequant_q3_K(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q3_K), dst += QK_K) {
        block_q3_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int s = 0; s < 16; s++) {
            float dl = d * (float)(quant_q3k_scale(blk.scales, s) - 32);
            for (int l = 0; l < 16; l++) {
                int e = 16 * s + l;
                int q = quant_q2_bits(blk.qs, e) | ((blk.hmask[e % 32] >> (e / 32)) & 1) << 2;
                dst[e] = dl * (float)(q - 4);
            }
        }
    }
}

static void quant_quant_q4_1(const float *src, void *dst, int64_t nb) {
    quant_quant_affine32(src, dst, nb, 15, sizeof(block_q4_1));
}

static void quant_quant_q5_1(const float *src, void *dst, int64_t nb) {
    quant_quant_affine32(src, dst, nb, 31, sizeof(block_q5_1));
}

/* As ggml (and Q4_0 above): d = m / -16 with m the element of largest
 * magnitude (signed), q = floor(x / d + 16.5) clamped to [0, 31]. */
static void quant_quant_q5_0(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_0), src += 32) {
        float x[32];
        quant_sanitize(src, x, 32);
        float amax = 0.0f, m = 0.0f;
        for (int i = 0; i < 32; i++)
            if (fabsf(x[i]) > amax) amax = fabsf(x[i]), m = x[i];
        float d = fmaxf(fminf(m / -16.0f, QUANT_FP16_MAX), -QUANT_FP16_MAX);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int i = 0; i < 32; i++) q[i] = quant_floor(x[i] * id + 16.5f, 0, 31, 16);
        block_q5_0 blk;
        blk.d = quant_signed_scale_fp16(d);
        uint32_t qh = quant_pack32(q, blk.qs);
        for (int k = 0; k < 4; k++) blk.qh[k] = (uint8_t)(qh >> (8 * k));
        memcpy(p, &blk, sizeof blk);
    }
}

/* The codebook as floats (exact). */
static const float quant_iq4_valuesf[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* L[i]: the codebook index nearest to v[i] (i < 32) by the float distance
 * |v - value|; where several tie, 8 if it is one of them, else the lowest (so a
 * NaN or an infinity, equally far from all, gives 8). The distance grows (never
 * shrinks) with the exact distance, so the nearest lie around the pair that
 * brackets v: k counts the values above the first that are <= v (15 independent
 * compares, no branch to mispredict), then k and k + 1 are compared and ties
 * widened outwards. Equal, for every one of the 2^32 floats, to a plain scan of
 * all 16 with a strict < from 8 (checked exhaustively); about 3x faster, and
 * baton-mkmodel spends most of an IQ4 file's time here. */
static void quant_iq4_index32(const float *v, int *L) {
    int kk[32];
    for (int i = 0; i < 32; i++) {
        int k = 0;
        for (int j = 1; j < 16; j++) k += quant_iq4_valuesf[j] <= v[i];
        kk[i] = k;
    }
    for (int i = 0; i < 32; i++) {
        float x = v[i];
        int k = kk[i], hi = k < 15 ? k + 1 : k;
        if (x != x) {
            L[i] = 8;
            continue;
        }
        float ek = fabsf(x - quant_iq4_valuesf[k]), eh = fabsf(x - quant_iq4_valuesf[hi]);
        float m = ek < eh ? ek : eh;
        int lo = ek == m ? k : hi;
        hi = eh == m ? hi : k;
        while (lo > 0 && fabsf(x - quant_iq4_valuesf[lo - 1]) == m) lo--;
        while (hi < 15 && fabsf(x - quant_iq4_valuesf[hi + 1]) == m) hi++;
        L[i] = lo <= 8 && 8 <= hi ? 8 : lo;
    }
}

/* A signed scale s for x[0..31] ~ s * values[L]: the plain scale puts the
 * element of largest magnitude m on -127 (s = -m / 127); then 30 candidates
 * put m on -127 + k or on 113 + k (k = -7..7), each rounded to codes L and
 * refitted by least squares (plain, unweighted: it minimizes the RMS error
 * directly; ggml's x^2 weights measured worse here). The fit of least error wins, but only if no
 * element misses by more than 14/127 of |m|: the plain scale's worst case
 * (the far end of the codebook is 113, not 127), so the bound stays that of
 * the plain scale. Runs on x / |m|. */
#ifndef QUANT_IQ4_TRIES
#define QUANT_IQ4_TRIES 30 /* -DQUANT_IQ4_TRIES=0: the plain scale only, to measure what the search gains */
#endif
static float quant_iq4_fit(const float *x) {
    float amax = 0.0f, m = 0.0f;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), m = x[i];
    if (amax == 0.0f) return 0.0f;
    float xn[32], mn = m / amax, cap = 14.0f / 127.0f;
    for (int i = 0; i < 32; i++) xn[i] = x[i] / amax;
    float best = -mn / 127.0f, best_score = -1.0f;
    for (int c = 0; c < QUANT_IQ4_TRIES; c++) {
        float target = c < 15 ? -127.0f + (float)(c - 7) : 113.0f + (float)(c - 22);
        float id = target / mn, sum_qx = 0.0f, sum_q2 = 0.0f;
        float y[32];
        int L[32];
        for (int i = 0; i < 32; i++) y[i] = xn[i] * id;
        quant_iq4_index32(y, L);
        for (int i = 0; i < 32; i++) {
            float v = (float)quant_iq4nl_values[L[i]];
            sum_qx += v * xn[i];
            sum_q2 += v * v;
        }
        if (!(sum_q2 > 0.0f)) continue;
        float score = sum_qx * sum_qx / sum_q2, s = sum_qx / sum_q2;
        if (!(score > best_score)) continue;
        float emax = 0.0f;
        for (int i = 0; i < 32; i++) emax = fmaxf(emax, fabsf(s * (float)quant_iq4nl_values[L[i]] - xn[i]));
        if (emax <= cap) best_score = score, best = s;
    }
    return best * amax;
}

/* Codes of x[0..31] for the stored scale s (0: all code 8, value 1 * 0). */
static void quant_iq4_codes(const float *x, float s, int *q) {
    float is = s != 0.0f ? 1.0f / s : 0.0f;
    float y[32];
    for (int i = 0; i < 32; i++) y[i] = x[i] * is;
    quant_iq4_index32(y, q);
    if (s == 0.0f)
        for (int i = 0; i < 32; i++) q[i] = 8;
}

static void quant_quant_iq4_nl(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_iq4_nl), src += 32) {
        float x[32];
        quant_sanitize(src, x, 32);
        block_iq4_nl blk;
        blk.d = quant_signed_scale_fp16(quant_iq4_fit(x));
        int q[32];
        quant_iq4_codes(x, fp16_to_f32(blk.d), q);
        quant_pack32(q, blk.qs);
        memcpy(p, &blk, sizeof blk);
    }
}

/* Per sub-block of 32: quant_iq4_fit's signed scale; the 8 scales become
 * l = round(s_j / d) in [-32, 31] under fp16 d = ms / -32 (ms the scale of
 * largest magnitude, d rounded away from zero so ms lands on -32 without
 * clamping), stored as l + 32; elements are rounded with the stored d * l. */
static void quant_quant_iq4_xs(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_iq4_xs), src += QK_K) {
        float x[QK_K], s[8], ms = 0.0f;
        quant_sanitize(src, x, QK_K);
        for (int j = 0; j < 8; j++) {
            s[j] = quant_iq4_fit(x + 32 * j);
            if (fabsf(s[j]) > fabsf(ms)) ms = s[j];
        }
        block_iq4_xs blk;
        memset(&blk, 0, sizeof blk);
        blk.d = quant_scale_fp16_up(ms / -32.0f);
        float d = fp16_to_f32(blk.d), id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 8; j++) {
            int l = quant_nearest(s[j] * id, -32, 31, 0);
            blk.scales_l[j / 2] |= (uint8_t)(((l + 32) & 15) << (4 * (j % 2)));
            blk.scales_h |= (uint16_t)(((l + 32) >> 4) << (2 * j));
            int q[32];
            quant_iq4_codes(x + 32 * j, d * (float)l, q);
            quant_pack32(q, blk.qs + 16 * j);
        }
        memcpy(p, &blk, sizeof blk);
    }
}

/* As Q4_K plus bit s of qh[l] as 16 for element 32s + l. */
static void quant_dequant_q5_K(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_K), dst += QK_K) {
        block_q5_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = fp16_to_f32(blk.d), dmin = fp16_to_f32(blk.dmin);
        for (int s = 0; s < 8; s++) {
            int sc, m;
            quant_q4k_scale_min(blk.scales, s, &sc, &m);
            float ds = d * (float)sc, ms = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int q = ((blk.qs[32 * (s / 2) + l] >> (4 * (s & 1))) & 15) | ((blk.qh[l] >> s) & 1) << 4;
                dst[32 * s + l] = ds * (float)q - ms;
            }
        }
    }
}

/* Fits every sub-block of `sub` elements with (scale, min) over codes 0..nmax
 * (weights rms + |x|, quant_fit_scale_min), quantizes the scales and mins to
 * 0..smax under fp16 super-scales rounded up (*d, *dmin), and returns the codes
 * sc[], mn[] and the element codes L[256] rounded with the stored values. */
static void quant_fit_k_asym(const float *x, int sub, int nmax, int smax, uint16_t *d, uint16_t *dmin, int *sc,
                             int *mn, int *L) {
    const int ns = QK_K / sub;
    float scales[16], mins[16], w[32], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < ns; j++) {
        const float *xs = x + sub * j;
        float sum2 = 0.0f;
        for (int l = 0; l < sub; l++) sum2 += xs[l] * xs[l];
        float rms = sqrtf(sum2 / (float)sub);
        for (int l = 0; l < sub; l++) w[l] = rms + fabsf(xs[l]);
        scales[j] = quant_fit_scale_min(sub, nmax, xs, w, &mins[j]);
        if (!(scales[j] >= 0.0f)) scales[j] = 0.0f;
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    *d = quant_scale_fp16_up(max_scale / (float)smax);
    *dmin = quant_scale_fp16_up(max_min / (float)smax);
    float dq = fp16_to_f32(*d), dmq = fp16_to_f32(*dmin);
    float inv_d = dq > 0.0f ? 1.0f / dq : 0.0f, inv_dm = dmq > 0.0f ? 1.0f / dmq : 0.0f;
    for (int j = 0; j < ns; j++) {
        sc[j] = quant_nearest(scales[j] * inv_d, 0, smax, 0);
        mn[j] = quant_nearest(mins[j] * inv_dm, 0, smax, 0);
        float ds = dq * (float)sc[j], dm = dmq * (float)mn[j];
        float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
        for (int l = 0; l < sub; l++) L[sub * j + l] = quant_nearest((x[sub * j + l] + dm) * ids, 0, nmax, 0);
    }
}

static void quant_quant_q2_K(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q2_K), src += QK_K) {
        float x[QK_K];
        int sc[16], mn[16], L[QK_K];
        quant_sanitize(src, x, QK_K);
        block_q2_K blk;
        quant_fit_k_asym(x, 16, 3, 15, &blk.d, &blk.dmin, sc, mn, L);
        for (int j = 0; j < 16; j++) blk.scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        quant_q2_pack(L, blk.qs);
        memcpy(p, &blk, sizeof blk);
    }
}

/* ggml's names of every type id it defines (4 and 5 were retired), supported or not. */
static const char *const quant_ggml_names[] = {
    [0] = "f32",      [1] = "f16",     [2] = "q4_0",    [3] = "q4_1",     [6] = "q5_0",    [7] = "q5_1",
    [8] = "q8_0",     [9] = "q8_1",    [10] = "q2_K",   [11] = "q3_K",    [12] = "q4_K",   [13] = "q5_K",
    [14] = "q6_K",    [15] = "q8_K",   [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s",
    [20] = "iq4_nl",  [21] = "iq3_s",  [22] = "iq2_s",  [23] = "iq4_xs",  [24] = "i8",     [25] = "i16",
    [26] = "i32",     [27] = "i64",    [28] = "f64",    [29] = "iq1_m",   [30] = "bf16",   [34] = "tq1_0",
    [35] = "tq2_0",   [39] = "mxfp4",
};

const char *quant_type_name_any(uint32_t type) {
    const tensor_type_info *t = tensor_type_get(type);
    if (t) return t->name;
    return type < sizeof quant_ggml_names / sizeof quant_ggml_names[0] ? quant_ggml_names[type] : NULL;
}

/* Kept by hand next to the table (test_quant checks that every row is named,
 * once): a literal, so no lazily built buffer to share between threads. */
const char *quant_supported_list(void) {
    return "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs";
}

static void quant_quant_q5_K(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q5_K), src += QK_K) {
        float x[QK_K];
        int sc[8], mn[8], L[QK_K];
        quant_sanitize(src, x, QK_K);
        block_q5_K blk;
        memset(&blk, 0, sizeof blk);
        quant_fit_k_asym(x, 32, 31, 63, &blk.d, &blk.dmin, sc, mn, L);
        quant_q4k_pack_scales(sc, mn, blk.scales);
        for (int s = 0; s < 8; s++)
            for (int l = 0; l < 32; l++) {
                int q = L[32 * s + l];
                blk.qs[32 * (s / 2) + l] |= (uint8_t)((q & 15) << (4 * (s & 1)));
                blk.qh[l] |= (uint8_t)((q >> 4) << s);
            }
        memcpy(p, &blk, sizeof blk);
    }
}

/* Per 16-element sub-block: the signed-scale search with codes -4..3, then 6-bit
 * signed scale codes under an fp16 d chosen so that the scale of largest
 * magnitude maps to -32 (clamped to 31 on the positive side). */
static void quant_quant_q3_K(const float *src, void *dst, int64_t nb) {
    uint8_t *p = dst;
    for (int64_t b = 0; b < nb; b++, p += sizeof(block_q3_K), src += QK_K) {
        float x[QK_K], scales[16], amax = 0.0f, m = 0.0f;
        quant_sanitize(src, x, QK_K);
        for (int j = 0; j < 16; j++) {
            scales[j] = quant_fit_scale_sym(16, 4, x + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                m = scales[j];
            }
        }
        block_q3_K blk;
        memset(&blk, 0, sizeof blk);
        blk.d = quant_scale_fp16_up(m / -32.0f);
        float dq = fp16_to_f32(blk.d), id = dq != 0.0f ? 1.0f / dq : 0.0f;
        int c[16], L[QK_K], lo[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = quant_nearest(scales[j] * id, -32, 31, 0);
            c[j] = s + 32;
            float ds = dq * (float)s, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 16; l++) L[16 * j + l] = quant_nearest(x[16 * j + l] * ids, -4, 3, 0) + 4;
        }
        quant_q3k_pack_scales(c, blk.scales);
        for (int e = 0; e < QK_K; e++) {
            lo[e] = L[e] & 3;
            blk.hmask[e % 32] |= (uint8_t)((L[e] >> 2) << (e / 32));
        }
        quant_q2_pack(lo, blk.qs);
        memcpy(p, &blk, sizeof blk);
    }
}

/* ---------------------------------------------------------------- dispatch */

typedef struct quant_codec {
    uint32_t type;
    void (*dequant)(const void *src, float *dst, int64_t nblocks);
    void (*quant)(const float *src, void *dst, int64_t nblocks);
    double error_bound; /* relative to the block's max |x| */
    double error_floor; /* absolute, for blocks whose scales are fp16 subnormals */
} quant_codec;

/* Round-trip error: max |x - x'| <= error_bound * max|x| + error_floor over
 * each block (quant.h gives the derivation of every number). */
static const quant_codec quant_codecs[] = {
    {TENSOR_F32, quant_dequant_f32, quant_quant_f32, 0.0, 0.0},
    {TENSOR_F16, quant_dequant_f16, quant_quant_f16, 0x1p-11, 0x1p-25},
    {TENSOR_BF16, quant_dequant_bf16, quant_quant_bf16, 0x1p-8, 0x1p-133},
    {TENSOR_Q8_0, quant_dequant_q8_0, quant_quant_q8_0, 0.0045, 127 * 0x1p-25},
    {TENSOR_Q4_0, quant_dequant_q4_0, quant_quant_q4_0, 0.126, 8 * 0x1p-25},
    {TENSOR_Q4_K, quant_dequant_q4_K, quant_quant_q4_K, 0.125, 16 * 0x1p-24},
    {TENSOR_Q6_K, quant_dequant_q6_K, quant_quant_q6_K, 0.035, 33 * 0x1p-24},
    {TENSOR_Q4_1, quant_dequant_q4_1, quant_quant_q4_1, 0.068, 16 * 0x1p-25},
    {TENSOR_Q5_0, quant_dequant_q5_0, quant_quant_q5_0, 0.063, 16 * 0x1p-25},
    {TENSOR_Q5_1, quant_dequant_q5_1, quant_quant_q5_1, 0.034, 32 * 0x1p-25},
    {TENSOR_IQ4_NL, quant_dequant_iq4_nl, quant_quant_iq4_nl, 0.111, 128 * 0x1p-25},
    {TENSOR_IQ4_XS, quant_dequant_iq4_xs, quant_quant_iq4_xs, 0.135, 128 * 0x1p-24},
    {TENSOR_Q2_K, quant_dequant_q2_K, quant_quant_q2_K, 0.55, 16 * 0x1p-24},
    {TENSOR_Q3_K, quant_dequant_q3_K, quant_quant_q3_K, 0.25, 5 * 0x1p-24},
    {TENSOR_Q5_K, quant_dequant_q5_K, quant_quant_q5_K, 0.07, 32 * 0x1p-24},
};

/* The codec row for `type`, or NULL. */
static const quant_codec *quant_codec_get(uint32_t type) {
    for (size_t i = 0; i < sizeof(quant_codecs) / sizeof(quant_codecs[0]); i++)
        if (quant_codecs[i].type == type) return &quant_codecs[i];
    return NULL;
}

/* Decode n elements; 0 on success, -1 for an unknown type, NULL buffers, n <= 0
 * or a ragged n (dst untouched on error). */
int quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const quant_codec *c = quant_codec_get(type);
    if (!c || !src || !dst || tensor_row_bytes(type, n) == 0) return -1;
    c->dequant(src, dst, n / tensor_type_get(type)->block_elems);
    return 0;
}

/* Encode n floats; returns the bytes written, or 0 for an unknown type, NULL
 * buffers, n <= 0 or a ragged n (dst untouched on error). */
size_t quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const quant_codec *c = quant_codec_get(type);
    size_t bytes = tensor_row_bytes(type, n);
    if (!c || !src || !dst || bytes == 0) return 0;
    c->quant(src, dst, n / tensor_type_get(type)->block_elems);
    return bytes;
}

/* The documented worst-case error of `type` relative to the block's max
 * magnitude; -1 for an unknown type. */
double quant_error_bound(uint32_t type) {
    const quant_codec *c = quant_codec_get(type);
    return c ? c->error_bound : -1.0;
}

/* The documented absolute error term of `type` for tiny blocks; -1 for an
 * unknown type. */
double quant_error_floor(uint32_t type) {
    const quant_codec *c = quant_codec_get(type);
    return c ? c->error_floor : -1.0;
}
