/* test_kernels.c - every operation of ops.h at every level this CPU has
 * (scalar, avx2, avx512, amx: its emulator, and its tiles where the CPU has
 * them), against float64 references and against each other.
 *
 * Checked:
 *  - matmul, every type (f32 f16 bf16 q8_0 q4_0 q4_K q6_K q2_K q3_K q5_K; q4_1 q5_0 q5_1
 *    iq4_nl iq4_xs in test_matmul_q22), ragged shapes (rows
 *    1 3 17 255, tokens 1 2 5 33, cols 32k / 256k with odd k, 37 for float types):
 *      EXACT within 1e-5 * sum|w x| of the float64 dot of the dequantized weights;
 *      FAST within sum_i |w_i| * amax(x block)/254 * 1.01 + 1e-5 * sum|w x| (the
 *      activation rounding bound), bias included;
 *      BIT-EXACT: every level == scalar (both precisions); each token computed
 *      alone == the batched call; 1 thread == 2 threads; with and without packing;
 *      kern_matmul_multi (Q/K/V-style fused calls, mixed types) == kern_matmul;
 *      extreme codes, scales and activations (largest integer sums), partial
 *      tiles and unrolled loops, a row wider than the decode kernel's buffer.
 *  - rmsnorm, swiglu, add, rope, attention (f16 and f32 cache, GQA, 1..70
 *    positions), embed, store_row: within tolerance of float64 and bit-exact
 *    across levels.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops_internal.h" /* kern_amx_test_epilogue */

#include "check.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1u << 23))) - 1.0f;
}

/* The levels to run: every level up to the best, the AMX one on its emulator
 * (main sets BATON_AMX_EMULATE) and, on a CPU with AMX, once more on the real
 * tiles (amx_real[li]). At most 8 entries. */
#define MAX_LEVELS 8
static int n_levels;
static kern_level levels[MAX_LEVELS];
static int amx_real[MAX_LEVELS];

static void set_level(kern_level l) {
    if (kern_set_level(l)) {
        fprintf(stderr, "cannot set level %s\n", kern_level_name(l));
        exit(1);
    }
}

/* Set level levels[li] (and, for AMX, the emulator or the real tiles: the AMX
 * level reads BATON_AMX_EMULATE per call). */
static void set_level_i(int li) {
    set_level(levels[li]);
    setenv("BATON_AMX_EMULATE", amx_real[li] ? "0" : "1", 1);
}

/* ------------------------------------------------------------ matmul */

static void matmul_case(uint32_t type, int64_t rows, int64_t cols, int nt) {
    size_t rb = tensor_row_bytes(type, cols);
    float *wf = malloc(sizeof(float) * rows * cols), *wd = malloc(sizeof(float) * rows * cols);
    uint8_t *wq = malloc(rb * rows);
    float *x = malloc(sizeof(float) * nt * cols), *bias = malloc(sizeof(float) * rows);
    float *y[MAX_LEVELS][2], *ys = malloc(sizeof(float) * nt * rows), *y1 = malloc(sizeof(float) * rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 7));
    for (int64_t r = 0; r < rows; r++) {
        quant_quantize_row(type, wf + r * cols, wq + r * rb, cols);
        quant_dequantize_row(type, wq + r * rb, wd + r * cols, cols);
        bias[r] = frand();
    }
    for (int64_t i = 0; i < nt * cols; i++) x[i] = frand() * (i % 5 == 0 ? 4.0f : 1.0f);
    kern_matrix m = {.type = type, .rows = rows, .cols = cols, .data = wq};
    const char *tn = tensor_type_get(type)->name;
    int blk = tensor_type_get(type)->block_elems == 256 ? 256 : 32;
    int quantized = type != TENSOR_F32 && type != TENSOR_F16 && type != TENSOR_BF16;
    for (int li = 0; li < n_levels; li++) {
        set_level_i(li);
        /* packing is for FAST only: the previous level's loop ended in EXACT */
        kern_set_precision(KERN_FAST);
        if (kern_matrix_prepare(&m)) CHECK(0, "prepare failed");
        for (int p = 0; p < 2; p++) {
            kern_set_precision(p ? KERN_EXACT : KERN_FAST);
            y[li][p] = malloc(sizeof(float) * nt * rows);
            const float *b = (rows % 2) ? bias : NULL;
            kern_matmul(y[li][p], &m, x, nt, b);
            /* against float64 */
            int bad = 0;
            for (int t = 0; t < nt && !bad; t++)
                for (int64_t r = 0; r < rows && !bad; r++) {
                    double ref = b ? b[r] : 0, mag = 0, qerr = 0;
                    for (int64_t c = 0; c < cols; c++) {
                        ref += (double)wd[r * cols + c] * x[t * cols + c];
                        mag += fabs((double)wd[r * cols + c] * x[t * cols + c]);
                    }
                    if (p == 0 && quantized)
                        for (int64_t c0 = 0; c0 < cols; c0 += blk) {
                            double amax = 0, sw = 0;
                            for (int64_t c = c0; c < c0 + blk; c++) {
                                amax = fmax(amax, fabs(x[t * cols + c]));
                                sw += fabs(wd[r * cols + c]);
                            }
                            qerr += sw * amax / 254.0 * 1.01;
                        }
                    double tol = 1e-5 * mag + qerr + 1e-6 * (b ? fabs(b[r]) : 0);
                    double got = y[li][p][t * rows + r];
                    if (!(fabs(got - ref) <= tol)) {
                        bad = 1;
                        CHECK(0, "%s %s %s rows %lld cols %lld tokens %d: y[%d][%lld] = %.8g, want %.8g +- %.3g",
                              kern_level_name(levels[li]), tn, p ? "exact" : "fast", (long long)rows, (long long)cols,
                              nt, t, (long long)r, got, ref, tol);
                    }
                }
            checks++;
            /* bit-exact against scalar */
            if (li > 0)
                CHECK(!memcmp(y[li][p], y[0][p], sizeof(float) * nt * rows),
                      "%s %s %s rows %lld cols %lld tokens %d: differs from scalar", kern_level_name(levels[li]), tn,
                      p ? "exact" : "fast", (long long)rows, (long long)cols, nt);
            /* each token alone == batched */
            if (nt > 1) {
                int same = 1;
                for (int t = 0; t < nt; t++) {
                    kern_matmul(y1, &m, x + t * cols, 1, b);
                    if (memcmp(y1, y[li][p] + t * rows, sizeof(float) * rows)) same = 0;
                }
                CHECK(same, "%s %s %s rows %lld tokens %d: single-token calls differ from the batched call",
                      kern_level_name(levels[li]), tn, p ? "exact" : "fast", (long long)rows, nt);
            }
            /* one thread == two threads; unpacked == packed */
            kern_init(1);
            kern_matmul(ys, &m, x, nt, b);
            CHECK(!memcmp(ys, y[li][p], sizeof(float) * nt * rows), "%s %s %s: 1 thread differs from 2",
                  kern_level_name(levels[li]), tn, p ? "exact" : "fast");
            kern_init(2);
            kern_matrix raw = m;
            raw.packed = NULL, raw.packed_bytes = 0;
            kern_matmul(ys, &raw, x, nt, b);
            CHECK(!memcmp(ys, y[li][p], sizeof(float) * nt * rows), "%s %s %s: unpacked differs from packed",
                  kern_level_name(levels[li]), tn, p ? "exact" : "fast");
        }
        kern_matrix_release(&m);
    }
    for (int li = 0; li < n_levels; li++) free(y[li][0]), free(y[li][1]);
    free(wf), free(wd), free(wq), free(x), free(bias), free(ys), free(y1);
}

/* Inputs with inf, NaN, exact ties and tiny values: the activation quantizer must
 * give the same bits at every level (FAST), and no output may be NaN for the
 * all-finite tokens. */
static void test_quantizer_edges(void) {
    const int64_t cols = 512, rows = 17;
    static const uint32_t types[] = {TENSOR_Q8_0, TENSOR_Q4_K};
    float x[3 * 512], wf[17 * 512];
    for (int i = 0; i < 3 * 512; i++) x[i] = (float)((i % 9) - 4) * 0.5f; /* ties at .5 after scaling */
    x[3] = INFINITY, x[40] = NAN, x[300] = -INFINITY;                     /* token 0 only */
    for (int i = 512; i < 1024; i++) x[i] = 1e-30f * (float)(i % 7);
    for (int i = 0; i < 17 * 512; i++) wf[i] = frand();
    for (size_t k = 0; k < 2; k++) {
        size_t rb = tensor_row_bytes(types[k], cols);
        uint8_t *wq = malloc(rb * rows);
        for (int r = 0; r < rows; r++) quant_quantize_row(types[k], wf + r * cols, wq + r * rb, cols);
        kern_matrix m = {.type = types[k], .rows = rows, .cols = cols, .data = wq};
        float y[MAX_LEVELS][3 * 17];
        kern_set_precision(KERN_FAST);
        for (int li = 0; li < n_levels; li++) {
            set_level_i(li);
            kern_matrix_prepare(&m);
            kern_matmul(y[li], &m, x, 3, NULL);
            kern_matrix_release(&m);
            if (li)
                CHECK(!memcmp(y[li], y[0], sizeof y[0]), "%s %s: edge-case activations differ from scalar",
                      kern_level_name(levels[li]), tensor_type_get(types[k])->name);
            int nan = 0;
            for (int i = 17; i < 3 * 17; i++) nan |= y[li][i] != y[li][i];
            CHECK(!nan, "%s: NaN output for finite tokens", kern_level_name(levels[li]));
        }
        free(wq);
    }
}

/* The largest integer sums each quantized type can produce (all codes at their
 * extreme, 6-bit scales 63, Q6_K scales -128, activations all +127 or alternating
 * +-127, all -127), in matrices whose rows and block counts leave partial tiles
 * and partial unrolled loops (19 rows, 7 or 5 blocks), plus rows wider than the
 * AVX2 few-token kernel's stack buffer for 4 tokens (Q4_K: scalar fallback for 4
 * tokens, the kernel for 1; Q8_0: the kernel): every level == scalar, 1 token
 * (the decode kernels) and 4 tokens (the small-batch kernels; token 1 must equal
 * the 1-token call). Catches int16 overflow or saturation in any integer dot. */
static void test_matmul_extremes(void) {
    static const struct { uint32_t type; int64_t cols; uint8_t fill; } cases[] = {
        {TENSOR_Q4_0, 32 * 7, 0xff}, {TENSOR_Q4_0, 32 * 7, 0x00}, {TENSOR_Q8_0, 32 * 7, 0x80},
        {TENSOR_Q8_0, 32 * 7, 0x7f}, {TENSOR_Q4_K, 256 * 5, 0xff}, {TENSOR_Q6_K, 256 * 5, 0xff},
        {TENSOR_Q6_K, 256 * 5, 0x00}, {TENSOR_Q4_K, 32768 + 256, 0xff}, {TENSOR_Q4_K, 65536 + 256, 0xff},
        {TENSOR_Q8_0, 32768 + 64, 0x80},
        /* issue 22: codes all 15 / 31 / 0, codebook ends -127 (code 0) and 113 (code 15), IQ4_XS
         * sub-block scales -32 (ls 0, fill 0x00) and 31 (ls 63, fill 0xff) */
        {TENSOR_Q4_1, 32 * 7, 0xff}, {TENSOR_Q5_0, 32 * 7, 0xff}, {TENSOR_Q5_0, 32 * 7, 0x00},
        {TENSOR_Q5_1, 32 * 7, 0xff}, {TENSOR_IQ4_NL, 32 * 7, 0x00}, {TENSOR_IQ4_NL, 32 * 7, 0xff},
        {TENSOR_IQ4_XS, 256 * 5, 0x00}, {TENSOR_IQ4_XS, 256 * 5, 0xff}, {TENSOR_IQ4_XS, 65536 + 256, 0x00},
        {TENSOR_Q5_1, 32768 + 64, 0xff}, {TENSOR_Q2_K, 256 * 5, 0xff}, {TENSOR_Q3_K, 256 * 7, 0xff},
        {TENSOR_Q3_K, 256 * 5, 0x00}, {TENSOR_Q5_K, 256 * 5, 0xff}, {TENSOR_Q5_K, 256 * 7, 0x00},
        {TENSOR_Q5_K, 32768 + 256, 0xff}};
    enum { NT = 4 };
    const int64_t rows = 19;
    uint16_t one = f32_to_fp16(1.0f / 1024);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const uint32_t type = cases[k].type;
        const int64_t cols = cases[k].cols;
        const tensor_type_info *ti = tensor_type_get(type);
        size_t rb = tensor_row_bytes(type, cols), nblk = rb * rows / ti->block_bytes;
        uint8_t *wq = malloc(rb * rows);
        float *x = malloc(sizeof(float) * NT * cols), *y[MAX_LEVELS];
        memset(wq, cases[k].fill, rb * rows);
        for (size_t b = 0; b < nblk; b++) { /* valid scales; Q6_K sub-block scales -128 */
            uint8_t *blk = wq + b * ti->block_bytes;
            if (type == TENSOR_Q6_K) {
                memset(blk + offsetof(block_q6_K, scales), 0x80, 16);
                memcpy(blk + offsetof(block_q6_K, d), &one, 2);
            } else if (type == TENSOR_Q2_K) { /* 0xff: scales 15, mins 15, codes 3 */
                memcpy(blk + offsetof(block_q2_K, d), &one, 2);
                memcpy(blk + offsetof(block_q2_K, dmin), &one, 2);
            } else if (type == TENSOR_Q3_K) { /* 0xff: scales +31, codes +3; 0x00: scales -32, codes -4 */
                memcpy(blk + offsetof(block_q3_K, d), &one, 2);
            } else {
                memcpy(blk, &one, 2);
                if (type == TENSOR_Q4_K || type == TENSOR_Q4_1 || type == TENSOR_Q5_1 || type == TENSOR_Q5_K)
                    memcpy(blk + 2, &one, 2);
            }
        }
        for (int64_t i = 0; i < NT * cols; i++) { /* tokens: all +1, +-1, all -1, -+1 */
            const int t = (int)(i / cols);
            x[i] = t == 0 ? 1.0f : t == 2 ? -1.0f : (i % 2 == t / 2 ? 1.0f : -1.0f);
        }
        kern_matrix m = {.type = type, .rows = rows, .cols = cols, .data = wq};
        kern_set_precision(KERN_FAST);
        for (int li = 0; li < n_levels; li++) {
            set_level_i(li);
            kern_matrix_prepare(&m);
            y[li] = malloc(sizeof(float) * (NT + 1) * rows);
            kern_matmul(y[li], &m, x, NT, NULL);
            kern_matmul(y[li] + NT * rows, &m, x + cols, 1, NULL);
            kern_matrix_release(&m);
            if (li)
                CHECK(!memcmp(y[li], y[0], sizeof(float) * (NT + 1) * rows), "%s %s cols %lld fill 0x%02x: differs from scalar",
                      kern_level_name(levels[li]), ti->name, (long long)cols, cases[k].fill);
            CHECK(!memcmp(y[li] + rows, y[li] + NT * rows, sizeof(float) * rows),
                  "%s %s cols %lld: 1-token call differs from the 4-token call", kern_level_name(levels[li]), ti->name,
                  (long long)cols);
        }
        for (int li = 0; li < n_levels; li++) free(y[li]);
        free(wq), free(x);
    }
}

static void test_matmul(void) {
    static const uint32_t types[] = {TENSOR_F32,  TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0, TENSOR_Q4_0,
                                     TENSOR_Q4_K, TENSOR_Q6_K, TENSOR_Q2_K, TENSOR_Q3_K, TENSOR_Q5_K};
    static const struct { int64_t rows; int nt; } shapes[] = {{1, 1}, {3, 2}, {17, 5}, {255, 1}, {17, 33}, {255, 5},
        /* AVX2 8-row tiles of up to 4 tokens: whole and partial tiles, every remainder of tokens (the
         * few-token kernels: 1 .. 8 tokens), the many-token Q4_0 (>= 8), Q4_K and Q6_K (>= 16) paths */
        {8, 4}, {9, 7}, {24, 3}, {40, 8}, {16, 9}, {7, 6}, {24, 16}, {19, 2}, {33, 6}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        int64_t colsv[2];
        if (tensor_type_get(t)->block_elems == 256)
            colsv[0] = 256, colsv[1] = 256 * 3;
        else if (t == TENSOR_Q8_0 || t == TENSOR_Q4_0)
            colsv[0] = 32 * 3, colsv[1] = 32 * 13;
        else
            colsv[0] = 37, colsv[1] = 32 * 5;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int c = 0; c < 2; c++) matmul_case(t, shapes[s].rows, colsv[c], shapes[s].nt);
    }
}

/* Issue 22's types (Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS): every level == scalar bit
 * for bit, both precisions, odd row counts (whole and partial 8/16-row tiles),
 * every token count 1..9 and 16, two widths each (odd block counts), and 33
 * rows x 33 tokens (AMX: 3 row tiles x 3 token tiles, the last ones partial). */
static void test_matmul_q22(void) {
    static const uint32_t types[] = {TENSOR_Q4_1, TENSOR_Q5_0, TENSOR_Q5_1, TENSOR_IQ4_NL, TENSOR_IQ4_XS};
    static const int64_t rows[] = {1, 3, 9, 17, 19, 33, 7, 25, 41, 11};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int64_t colsv[2] = {32 * 3, 32 * 13};
        if (types[ti] == TENSOR_IQ4_XS) colsv[0] = 256, colsv[1] = 256 * 3;
        for (int nt = 1; nt <= 10; nt++)
            for (int c = 0; c < 2; c++) matmul_case(types[ti], rows[(nt + c) % 10], colsv[c], nt == 10 ? 16 : nt);
        matmul_case(types[ti], 33, colsv[1], 33);
    }
}

/* kern_matmul_multi == one kern_matmul per matrix, bit for bit: mixed activation
 * formats (q8_0 x32, q4_K/q6_K x256, f16 floats), one matrix of another width
 * (runs alone), biases, 1 and 3 tokens, every level, both precisions, 1 and 2
 * threads. */
static void test_matmul_multi(void) {
    static const struct { uint32_t type; int64_t rows, cols; } mats[] = {
        {TENSOR_Q8_0, 40, 512}, {TENSOR_Q4_K, 17, 512}, {TENSOR_Q6_K, 33, 512}, {TENSOR_F16, 9, 512},
        {TENSOR_Q8_0, 24, 256}, {TENSOR_Q5_K, 21, 512}, {TENSOR_Q3_K, 9, 512}, {TENSOR_Q2_K, 8, 512}};
    enum { N = sizeof mats / sizeof mats[0], MAXT = 3 };
    kern_matrix m[N];
    uint8_t *data[N];
    float *bias[N], *y[N], *ys[N];
    float x[MAXT * 512];
    for (int i = 0; i < MAXT * 512; i++) x[i] = frand();
    for (int k = 0; k < N; k++) {
        size_t rb = tensor_row_bytes(mats[k].type, mats[k].cols);
        float *wf = malloc(sizeof(float) * mats[k].cols);
        data[k] = malloc(rb * mats[k].rows);
        for (int64_t r = 0; r < mats[k].rows; r++) {
            for (int64_t c = 0; c < mats[k].cols; c++) wf[c] = frand();
            quant_quantize_row(mats[k].type, wf, data[k] + r * rb, mats[k].cols);
        }
        free(wf);
        m[k] = (kern_matrix){.type = mats[k].type, .rows = mats[k].rows, .cols = mats[k].cols, .data = data[k]};
        bias[k] = malloc(sizeof(float) * mats[k].rows);
        for (int64_t r = 0; r < mats[k].rows; r++) bias[k][r] = frand();
        y[k] = malloc(sizeof(float) * MAXT * mats[k].rows);
        ys[k] = malloc(sizeof(float) * MAXT * mats[k].rows);
    }
    for (int li = 0; li < n_levels; li++) {
        set_level_i(li);
        for (int k = 0; k < N; k++) kern_matrix_prepare(&m[k]);
        for (int p = 0; p < 2; p++)
            for (int th = 1; th <= 2; th++)
                for (int nt = 1; nt <= MAXT; nt += 2) {
                    kern_set_precision(p ? KERN_EXACT : KERN_FAST);
                    kern_init(th);
                    kern_mm_out outs[N];
                    for (int k = 0; k < N; k++) {
                        outs[k] = (kern_mm_out){y[k], &m[k], k % 2 ? bias[k] : NULL};
                        kern_matmul(ys[k], &m[k], x, nt, outs[k].bias);
                    }
                    kern_matmul_multi(outs, N, x, nt);
                    for (int k = 0; k < N; k++)
                        CHECK(!memcmp(y[k], ys[k], sizeof(float) * nt * mats[k].rows),
                              "%s %s, %d tokens, %d threads: kern_matmul_multi output %d (%s) differs from kern_matmul",
                              kern_level_name(levels[li]), p ? "exact" : "fast", nt, th, k,
                              tensor_type_get(mats[k].type)->name);
                }
        for (int k = 0; k < N; k++) kern_matrix_release(&m[k]);
    }
    kern_set_precision(KERN_FAST);
    kern_init(2);
    for (int k = 0; k < N; k++) free(data[k]), free(bias[k]), free(y[k]), free(ys[k]);
}

/* ------------------------------------------------------------ vector ops */

/* rmsnorm where eps matters: rows whose mean(x^2) is near eps (|x| ~ 1e-3), far
 * below it, short rows (1..3 values, scalar tails) and an all-zero row, with
 * Qwen2's eps (1e-6) and 1e-5. Every level against the float64 formula
 * x / sqrt(mean(x^2) + eps) * w, within a few ulp relative: eps added outside
 * the square root is off by a factor of 3 here, not 1e-6 as with |x| ~ 1. */
static void test_rmsnorm_eps(void) {
    const int ns[] = {1, 2, 3, 7, 16, 17, 33, 100};
    const float amps[] = {1e-3f, 3e-3f, 1e-4f, 0.0f};
    const float epss[] = {1e-6f, 1e-5f};
    float x[100], w[100], y[100];
    for (size_t a = 0; a < sizeof amps / sizeof amps[0]; a++)
        for (size_t e = 0; e < sizeof epss / sizeof epss[0]; e++)
            for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
                int n = ns[k];
                for (int i = 0; i < n; i++) x[i] = frand() * amps[a], w[i] = 0.5f + frand();
                double ss = 0;
                for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
                double sc = 1.0 / sqrt(ss / n + (double)epss[e]);
                for (int li = 0; li < n_levels; li++) {
                    set_level_i(li);
                    kern_rmsnorm(y, x, w, n, epss[e]);
                    int worst = -1;
                    double worst_rel = 0;
                    for (int i = 0; i < n; i++) {
                        double ref = (double)x[i] * sc * w[i];
                        double rel = ref == 0 ? (y[i] == 0 ? 0 : INFINITY) : fabs(y[i] - ref) / fabs(ref);
                        if (!(rel <= worst_rel)) worst_rel = rel, worst = i;
                    }
                    CHECK(worst_rel <= 8 * 1.1920929e-7,
                          "%s rmsnorm |x|~%g eps %g n=%d: y[%d] = %.9g, float64 %.9g (relative error %.3g)",
                          kern_level_name(levels[li]), (double)amps[a], (double)epss[e], n, worst,
                          worst >= 0 ? (double)y[worst] : 0.0,
                          worst >= 0 ? (double)x[worst] * sc * w[worst] : 0.0, worst_rel);
                }
            }
}

static void test_vector_ops(void) {
    const int ns[] = {1, 15, 16, 37, 128, 5120 + 3};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
        float *out[MAX_LEVELS][3];
        for (int i = 0; i < n; i++) x[i] = frand() * 12.0f, w[i] = frand(), u[i] = frand();
        if (n > 3) x[0] = 95.0f, x[1] = -95.0f, x[2] = -0.0f; /* exp clamp paths */
        for (int li = 0; li < n_levels; li++) {
            set_level_i(li);
            for (int o = 0; o < 3; o++) out[li][o] = malloc(sizeof(float) * n);
            kern_rmsnorm(out[li][0], x, w, n, 1e-5f);
            kern_swiglu(out[li][1], x, u, n);
            memcpy(out[li][2], u, sizeof(float) * n);
            kern_add(out[li][2], x, n);
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            double sc = 1.0 / sqrt(ss / n + 1e-5);
            int bad[3] = {0, 0, 0};
            for (int i = 0; i < n; i++) {
                double rn = x[i] * sc * w[i], sw = x[i] / (1.0 + exp(-(double)x[i])) * u[i], ad = (double)u[i] + x[i];
                if (!(fabs(out[li][0][i] - rn) <= 1e-5 * fabs(rn) + 1e-7)) bad[0] = 1;
                if (!(fabs(out[li][1][i] - sw) <= 1e-5 * fabs(sw) + 1e-7)) bad[1] = 1;
                if (!(fabs(out[li][2][i] - ad) <= 1e-6 * fabs(ad))) bad[2] = 1;
            }
            CHECK(!bad[0], "%s rmsnorm n=%d off the float64 value", kern_level_name(levels[li]), n);
            CHECK(!bad[1], "%s swiglu n=%d off the float64 value", kern_level_name(levels[li]), n);
            CHECK(!bad[2], "%s add n=%d off the float64 value", kern_level_name(levels[li]), n);
            if (li > 0)
                for (int o = 0; o < 3; o++)
                    CHECK(!memcmp(out[li][o], out[0][o], sizeof(float) * n), "%s op %d n=%d differs from scalar",
                          kern_level_name(levels[li]), o, n);
        }
        for (int li = 0; li < n_levels; li++)
            for (int o = 0; o < 3; o++) free(out[li][o]);
        free(x), free(w), free(u);
    }
    /* rope: against float64 rotation, bit-exact across levels */
    const int H = 3, hd = 128;
    float base[3 * 128], r[MAX_LEVELS][3 * 128];
    for (int i = 0; i < H * hd; i++) base[i] = frand();
    for (int li = 0; li < n_levels; li++) {
        set_level_i(li);
        memcpy(r[li], base, sizeof base);
        kern_rope_neox(r[li], H, hd, 777, 1e6f);
        int bad = 0;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd / 2; i++) {
                double th = 777.0 * pow(1e6, -2.0 * i / hd);
                double a = base[h * hd + i], b = base[h * hd + i + hd / 2];
                double e0 = a * cos(th) - b * sin(th), e1 = a * sin(th) + b * cos(th);
                if (fabs(r[li][h * hd + i] - e0) > 1e-6 || fabs(r[li][h * hd + i + hd / 2] - e1) > 1e-6) bad = 1;
            }
        CHECK(!bad, "%s rope off the float64 rotation", kern_level_name(levels[li]));
        if (li) CHECK(!memcmp(r[li], r[0], sizeof base), "%s rope differs from scalar", kern_level_name(levels[li]));
    }
    /* YaRN rope (factor 4, original context 64, QwQ's base): against a float64 rotation
     * written from the formulas of ops.h, bit-exact across levels */
    const kern_rope yr = {.base = 1e6f, .yarn_factor = 4.0f, .yarn_orig_ctx = 64};
    float ry[MAX_LEVELS][3 * 128];
    for (int li = 0; li < n_levels; li++) {
        set_level(levels[li]);
        memcpy(ry[li], base, sizeof base);
        kern_rope_neox_ext(ry[li], H, hd, 777, &yr);
        double lo = floor(hd * log(64.0 / (32 * 2 * M_PI)) / (2 * log(1e6)));
        double hi = ceil(hd * log(64.0 / (1 * 2 * M_PI)) / (2 * log(1e6)));
        lo = lo < 0 ? 0 : lo, hi = hi > hd - 1 ? hd - 1 : hi;
        int bad = 0;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd / 2; i++) {
                double ramp = 1 - fmin(1, fmax(0, (i - lo) / fmax(0.001, hi - lo)));
                double f = pow(1e6, -2.0 * i / hd), th = 777.0 * (f / 4 * (1 - ramp) + f * ramp);
                double ms = 0.1 * log(4.0) + 1;
                double a = base[h * hd + i], b = base[h * hd + i + hd / 2];
                double e0 = ms * (a * cos(th) - b * sin(th)), e1 = ms * (a * sin(th) + b * cos(th));
                if (fabs(ry[li][h * hd + i] - e0) > 2e-6 || fabs(ry[li][h * hd + i + hd / 2] - e1) > 2e-6) bad = 1;
            }
        CHECK(!bad, "%s yarn rope off the float64 rotation", kern_level_name(levels[li]));
        CHECK(memcmp(ry[li], r[li], sizeof base), "%s yarn rope equals plain rope", kern_level_name(levels[li]));
        if (li) CHECK(!memcmp(ry[li], ry[0], sizeof base), "%s yarn rope differs from scalar", kern_level_name(levels[li]));
    }
    const kern_rope plain = {.base = 1e6f};
    memcpy(ry[0], base, sizeof base);
    kern_rope_neox_ext(ry[0], H, hd, 777, &plain);
    CHECK(!memcmp(ry[0], r[n_levels - 1], sizeof base), "kern_rope_neox_ext without YaRN differs from kern_rope_neox");

    /* embed and store_row */
    float row[64], back[64], e[64];
    uint16_t h16[64];
    for (int i = 0; i < 64; i++) row[i] = frand();
    uint8_t q8[2 * 68];
    quant_quantize_row(TENSOR_Q8_0, row, q8, 64);
    quant_quantize_row(TENSOR_Q8_0, row, q8 + 68, 64);
    kern_matrix em = {.type = TENSOR_Q8_0, .rows = 2, .cols = 64, .data = q8};
    quant_dequantize_row(TENSOR_Q8_0, q8 + 68, back, 64);
    kern_embed(e, &em, 1);
    CHECK(!memcmp(e, back, sizeof e), "embed row 1 differs from quant_dequantize_row");
    kern_embed(e, &em, 5);
    CHECK(e[0] == 0.0f && e[63] == 0.0f, "embed of an out-of-range row must give zeros");
    kern_store_row(TENSOR_F16, h16, row, 64);
    int bad = 0;
    for (int i = 0; i < 64; i++) bad |= h16[i] != f32_to_fp16(row[i]);
    CHECK(!bad, "store_row f16 differs from f32_to_fp16");
}

/* ------------------------------------------------------------ attention */

static void attention_case(uint32_t kvtype, int n_pos, int n_head, int n_kv, int hd) {
    size_t stride = kern_kv_row_bytes(kvtype, n_kv * hd) + 16;
    uint8_t *k = calloc((size_t)n_pos, stride), *v = calloc((size_t)n_pos, stride);
    float *kf = malloc(sizeof(float) * n_pos * n_kv * hd), *vf = malloc(sizeof(float) * n_pos * n_kv * hd);
    float *q = malloc(sizeof(float) * n_head * hd), *out[MAX_LEVELS];
    for (int p = 0; p < n_pos; p++) {
        float tk[1024], tv[1024];
        for (int i = 0; i < n_kv * hd; i++) tk[i] = frand() * 3.0f, tv[i] = frand();
        kern_store_row(kvtype, k + p * stride, tk, n_kv * hd);
        kern_store_row(kvtype, v + p * stride, tv, n_kv * hd);
        if (kvtype == TENSOR_Q8_0) { /* the values the cache holds: quant_dequantize_row of the GGUF Q8_0 blocks */
            quant_dequantize_row(TENSOR_Q8_0, k + p * stride, kf + p * n_kv * hd, n_kv * hd);
            quant_dequantize_row(TENSOR_Q8_0, v + p * stride, vf + p * n_kv * hd, n_kv * hd);
            continue;
        }
        for (int i = 0; i < n_kv * hd; i++) {
            kf[p * n_kv * hd + i] = kvtype == TENSOR_F16 ? fp16_to_f32(f32_to_fp16(tk[i])) : tk[i];
            vf[p * n_kv * hd + i] = kvtype == TENSOR_F16 ? fp16_to_f32(f32_to_fp16(tv[i])) : tv[i];
        }
    }
    for (int i = 0; i < n_head * hd; i++) q[i] = frand() * 2.0f;
    kern_kv_view view = {kvtype, k, v, stride};
    for (int li = 0; li < n_levels; li++) {
        set_level_i(li);
        out[li] = malloc(sizeof(float) * n_head * hd);
        kern_attention(out[li], q, &view, n_pos, n_head, n_kv, hd);
        int bad = 0;
        for (int h = 0; h < n_head; h++) {
            int kh = h / (n_head / n_kv);
            double *s = malloc(sizeof(double) * n_pos), mx = -1e300, sum = 0;
            for (int p = 0; p < n_pos; p++) {
                s[p] = 0;
                for (int d = 0; d < hd; d++) s[p] += (double)q[h * hd + d] * kf[(p * n_kv + kh) * hd + d];
                s[p] /= sqrt(hd);
                if (s[p] > mx) mx = s[p];
            }
            for (int p = 0; p < n_pos; p++) sum += (s[p] = exp(s[p] - mx));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int p = 0; p < n_pos; p++) o += s[p] / sum * vf[(p * n_kv + kh) * hd + d];
                if (!(fabs(out[li][h * hd + d] - o) <= 2e-5)) bad = 1;
            }
            free(s);
        }
        CHECK(!bad, "%s attention %s n_pos %d off the float64 softmax", kern_level_name(levels[li]),
              kvtype == TENSOR_F16 ? "f16" : kvtype == TENSOR_Q8_0 ? "q8_0" : "f32", n_pos);
        if (li)
            CHECK(!memcmp(out[li], out[0], sizeof(float) * n_head * hd), "%s attention n_pos %d differs from scalar",
                  kern_level_name(levels[li]), n_pos);
    }
    for (int li = 0; li < n_levels; li++) free(out[li]);
    free(k), free(v), free(kf), free(vf), free(q);
}

/* The packed copy is made for FAST only: in EXACT the kernels read the original,
 * and a copy nobody reads would double the memory (model.c drops the original's
 * pages when a copy exists). At the SIMD levels FAST packs Q8_0. */
static void test_prepare_precision(void) {
    const int64_t rows = 16, cols = 64;
    size_t rb = tensor_row_bytes(TENSOR_Q8_0, cols);
    uint8_t *wq = calloc(rows, rb);
    kern_matrix m = {.type = TENSOR_Q8_0, .rows = rows, .cols = cols, .data = wq};
    for (int li = 1; li < n_levels; li++) {
        set_level_i(li);
        kern_set_precision(KERN_EXACT);
        CHECK(kern_matrix_prepare(&m) == 0 && !m.packed, "%s: EXACT must not pack", kern_level_name(levels[li]));
        kern_set_precision(KERN_FAST);
        CHECK(kern_matrix_prepare(&m) == 0 && m.packed, "%s: FAST packs Q8_0", kern_level_name(levels[li]));
        kern_matrix_release(&m);
    }
    kern_set_precision(KERN_FAST);
    free(wq);
}

/* The AMX level's bit check is sharp: with its epilogue rounded unfused
 * (kern_amx_test_epilogue, one extra rounding per block: a 1-ulp-scale change)
 * its many-token results must differ from scalar for every type it runs (the
 * packed Q8_0 Q4_0 Q4_K Q6_K and issue 22's raw-block types), where the FAST
 * epilogue gives scalar's bits (the same comparison test_matmul makes). */
static void test_amx_epilogue_sharp(void) {
    int li = -1;
    for (int i = 0; i < n_levels; i++)
        if (levels[i] == KERN_AMX && !amx_real[i]) li = i;
    if (li < 0) {
        printf("amx epilogue check: no AMX level (not even emulated) here\n");
        return;
    }
    static const uint32_t types[] = {TENSOR_Q8_0,   TENSOR_Q4_0,   TENSOR_Q4_K, TENSOR_Q6_K, /* avx512 packed copy */
                                     TENSOR_Q4_1,   TENSOR_Q5_0,   TENSOR_Q5_1, TENSOR_IQ4_NL, /* raw GGUF blocks */
                                     TENSOR_IQ4_XS, TENSOR_Q2_K,   TENSOR_Q3_K, TENSOR_Q5_K};
    const int64_t rows = 33, nt = 6;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const int64_t cols = tensor_type_get(type)->block_elems == 256 ? 256 * 3 : 32 * 13;
        size_t rb = tensor_row_bytes(type, cols);
        uint8_t *wq = malloc(rb * rows);
        float *wf = malloc(sizeof(float) * cols), *x = malloc(sizeof(float) * nt * cols);
        float *ys = malloc(sizeof(float) * nt * rows), *ya = malloc(sizeof(float) * nt * rows);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) wf[c] = frand() * (1.0f + (float)(c % 7));
            quant_quantize_row(type, wf, wq + r * rb, cols);
        }
        for (int64_t i = 0; i < nt * cols; i++) x[i] = frand();
        kern_matrix m = {.type = type, .rows = rows, .cols = cols, .data = wq};
        kern_set_precision(KERN_FAST);
        set_level(KERN_SCALAR);
        kern_matmul(ys, &m, x, (int)nt, NULL);
        set_level_i(li);
        if (kern_matrix_prepare(&m)) CHECK(0, "prepare failed");
        for (int mut = 0; mut < 2; mut++) {
            kern_amx_test_epilogue = mut;
            kern_matmul(ya, &m, x, (int)nt, NULL);
            int same = !memcmp(ya, ys, sizeof(float) * nt * rows);
            CHECK(mut ? !same : same, "amx(emulated) %s, %s epilogue: %s scalar", tensor_type_get(type)->name,
                  mut ? "unfused" : "FAST", same ? "equals" : "differs from");
        }
        kern_amx_test_epilogue = 0;
        kern_matrix_release(&m);
        free(wq), free(wf), free(x), free(ys), free(ya);
    }
}

int main(void) {
    /* the AMX level on its emulator wherever AVX-512 runs (backend.c reads this once) */
    setenv("BATON_AMX_EMULATE", "1", 1);
    if (kern_init(2)) {
        fprintf(stderr, "kern_init failed\n");
        return 1;
    }
    kern_level best = kern_best_level();
    for (int l = 0; l <= (int)best && n_levels < MAX_LEVELS; l++) levels[n_levels++] = (kern_level)l;
    if (best == KERN_AMX && strstr(kern_cpu_features(), "amx-int8") && n_levels < MAX_LEVELS) /* and the real tiles */
        amx_real[n_levels] = 1, levels[n_levels++] = KERN_AMX;
    printf("cpu features: %s\nlevels tested:", kern_cpu_features());
    for (int i = 0; i < n_levels; i++)
        printf(" %s%s", kern_level_name(levels[i]), levels[i] == KERN_AMX ? (amx_real[i] ? "(tiles)" : "(emulated)") : "");
    printf("\n");
    int n_compiled = 0; /* the table's length: the first level without a name */
    while (strcmp(kern_level_name((kern_level)n_compiled), "unknown")) n_compiled++;
    CHECK(kern_set_level((kern_level)n_compiled) == -1, "an unknown level must be refused");
    test_prepare_precision();

    test_vector_ops();
    test_rmsnorm_eps();
    printf("vector ops done (%d checks, %d failures)\n", checks, failures);
    attention_case(TENSOR_F16, 1, 4, 2, 128);
    attention_case(TENSOR_F16, 70, 8, 2, 128);
    attention_case(TENSOR_F32, 33, 5, 5, 40);
    attention_case(TENSOR_F32, 600, 2, 1, 64);
    attention_case(TENSOR_F16, 37, 6, 3, 20); /* head_dim not a multiple of 8 or 16: vector tails */
    attention_case(TENSOR_F32, 9, 2, 2, 12);
    attention_case(TENSOR_Q8_0, 1, 4, 2, 128);
    attention_case(TENSOR_Q8_0, 70, 8, 2, 128);
    attention_case(TENSOR_Q8_0, 600, 2, 1, 64);
    attention_case(TENSOR_Q8_0, 45, 3, 3, 32);
    printf("attention done (%d checks, %d failures)\n", checks, failures);
    test_quantizer_edges();
    test_matmul();
    test_matmul_extremes();
    test_matmul_q22();
    test_matmul_multi();
    test_amx_epilogue_sharp();
    printf("matmul done (%d checks, %d failures)\n", checks, failures);
    kern_shutdown();
    if (failures) {
        printf("test_kernels: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_kernels: all %d checks passed\n", checks);
    return 0;
}
