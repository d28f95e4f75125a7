/* test_gpu.c - every operation of the Vulkan GPU backend (kernels/vulkan/gpu.h)
 * against the scalar reference of ops.h, bit for bit, at odd sizes and ragged
 * tails, on the first Vulkan device (BATON_GPU_DEVICE=N picks another; CI has
 * Mesa's lavapipe, a conforming Vulkan device on the CPU).
 *
 * Checked, each output float's bits == the scalar level's (FAST precision):
 *  - matmul, weights f32 f16 bf16 q8_0 q4_0 q4_K q6_K: rows 1 17 67, tokens 1
 *    3 33, cols 32k / 256k with odd k (37 and 100 for the float types), with and
 *    without bias, x at an offset and stride (a span), activation blocks of all
 *    zeros, of large and of tiny values;
 *  - rmsnorm (n 1 37 1000, in place too), swiglu and add over 1000 values
 *    (gates from -120 to 120: e^x's clamps), rope plain and YaRN (head_dim 64
 *    and 128), kv_store + attention over f16 and f32 caches (GQA 4/2 heads,
 *    head_dim 64 and 80, 1..70 positions, several tokens of different
 *    lengths in one call), the copy kernel;
 *  - the matmul as a workgroup per output and as an invocation per output
 *    (BATON_GPU_MM=row|element: GPUs get the first, CPU devices the second);
 *  - matrices split into parts of rows when larger than the device's largest
 *    buffer (faked at 4 KiB with BATON_GPU_MAX_BUFFER).
 * No device is a failure, not a skip: this test exists only in builds with the
 * Vulkan backend, and CI installs lavapipe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "ops.h"

#include "check.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1u << 23))) - 1.0f;
}

static gpu_dev *dev;

static gpu_buf *upload(const void *p, size_t bytes) {
    char err[256];
    gpu_buf *b = gpu_buf_new(dev, bytes ? bytes : 4, err, sizeof err);
    if (!b) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    if (bytes && p) CHECK(gpu_write(b, 0, p, bytes) == 0, "write %zu bytes", bytes);
    return b;
}

/* count floats of got vs want, bit for bit; returns mismatches */
static int same_bits(const char *what, const float *got, const float *want, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (check_bits_of(got[i]) != check_bits_of(want[i])) {
            if (!bad)
                fprintf(stderr, "%s: element %zu: gpu %.9g (0x%08x), cpu %.9g (0x%08x)\n", what, i, got[i],
                        check_bits_of(got[i]), want[i], check_bits_of(want[i]));
            bad++;
        }
    CHECK(!bad, "%s: %d of %zu floats differ", what, bad, n);
    return bad;
}

/* ------------------------------------------------------------ matmul */

static void matmul_case(uint32_t type, int64_t rows, int64_t cols, int nt, int with_bias) {
    size_t rb = tensor_row_bytes(type, cols);
    float *wf = malloc(sizeof(float) * rows * cols);
    uint8_t *wq = malloc(rb * rows);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand() * (1.0f + (float)(i % 7));
    for (int64_t r = 0; r < rows; r++) quant_quantize_row(type, wf + r * cols, wq + r * rb, cols);
    /* x: token t at offset 5 + t * (cols + 3); some blocks all zero, some large, some tiny */
    const size_t stride = (size_t)cols + 3, off = 5;
    float *x = calloc(off + stride * nt, sizeof(float));
    for (int t = 0; t < nt; t++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t blk = c / 32;
            float v = frand();
            if (blk % 5 == 1) v = 0.0f;
            if (blk % 5 == 2) v *= 3000.0f;
            if (blk % 5 == 3) v *= 1e-6f;
            x[off + t * stride + c] = v;
        }
    float *bias = malloc(sizeof(float) * rows);
    for (int64_t r = 0; r < rows; r++) bias[r] = frand();
    /* the scalar reference, token by token from the packed x */
    float *want = malloc(sizeof(float) * rows * nt), *xt = malloc(sizeof(float) * cols * nt);
    for (int t = 0; t < nt; t++) memcpy(xt + t * cols, x + off + t * stride, sizeof(float) * cols);
    kern_matrix m = {.type = type, .rows = rows, .cols = cols, .data = wq};
    kern_matmul(want, &m, xt, nt, with_bias ? bias : NULL);

    char err[256];
    gpu_mat gm;
    CHECK(gpu_mat_upload(dev, &gm, &m, err, sizeof err) == 0, "upload: %s", err);
    gpu_buf *xb = upload(x, sizeof(float) * (off + stride * nt)), *bb = upload(bias, sizeof(float) * rows);
    const size_t yoff = 7, ystride = (size_t)rows + 1;
    gpu_buf *yb = upload(NULL, 0);
    gpu_buf_free(yb);
    float *y = calloc(yoff + ystride * nt, sizeof(float));
    yb = upload(y, sizeof(float) * (yoff + ystride * nt));
    CHECK(gpu_matmul(dev, GPU_SPAN(yb, yoff, ystride), &gm, GPU_SPAN(xb, off, stride), nt, with_bias ? bb : NULL) == 0,
          "matmul");
    CHECK(gpu_read(yb, 0, y, sizeof(float) * (yoff + ystride * nt)) == 0, "read");
    float *got = malloc(sizeof(float) * rows * nt);
    for (int t = 0; t < nt; t++) memcpy(got + t * rows, y + yoff + t * ystride, sizeof(float) * rows);
    char what[96];
    snprintf(what, sizeof what, "matmul %s %lldx%lld, %d tokens%s", tensor_type_get(type)->name, (long long)rows,
             (long long)cols, nt, with_bias ? ", bias" : "");
    same_bits(what, got, want, (size_t)rows * nt);
    gpu_mat_free(&gm);
    gpu_buf_free(xb), gpu_buf_free(bb), gpu_buf_free(yb);
    free(wf), free(wq), free(x), free(bias), free(want), free(xt), free(y), free(got);
}

static void test_matmul(void) {
    static const struct {
        uint32_t type;
        int64_t cols[2];
    } types[] = {
        {TENSOR_F32, {37, 100}},   {TENSOR_F16, {37, 100}},   {TENSOR_BF16, {37, 100}}, {TENSOR_Q8_0, {96, 544}},
        {TENSOR_Q4_0, {96, 544}},  {TENSOR_Q4_K, {256, 768}}, {TENSOR_Q6_K, {256, 768}},
    };
    static const int64_t rows[] = {1, 17, 67};
    static const int toks[] = {1, 3, 33};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (int c = 0; c < 2; c++)
            for (int r = 0; r < 3; r++)
                for (int t = 0; t < 3; t++)
                    if (!(rows[r] == 67 && toks[t] == 33 && c == 1)) /* keep lavapipe's time short */
                        matmul_case(types[i].type, rows[r], types[i].cols[c], toks[t], (r + t) & 1);
    CHECK(!gpu_type_supported(TENSOR_Q5_K), "q5_K has no GPU matmul and says so");
}

/* ------------------------------------------------------------ vector ops */

static void test_rmsnorm(void) {
    static const int ns[] = {1, 37, 1000};
    for (int k = 0; k < 3; k++) {
        int n = ns[k], nt = 3;
        float *x = malloc(sizeof(float) * n * nt), *w = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n * nt);
        float *got = malloc(sizeof(float) * n * nt);
        for (int i = 0; i < n * nt; i++) x[i] = frand() * (i % 3 == 0 ? 100.0f : 1.0f);
        for (int i = 0; i < n; i++) w[i] = frand() + 1.0f;
        for (int t = 0; t < nt; t++) kern_rmsnorm(want + t * n, x + t * n, w, n, 1e-6f);
        gpu_buf *xb = upload(x, sizeof(float) * n * nt), *wb = upload(w, sizeof(float) * n);
        gpu_buf *yb = upload(NULL, sizeof(float) * n * nt);
        gpu_rmsnorm(dev, GPU_SPAN(yb, 0, n), GPU_SPAN(xb, 0, n), wb, 0, n, nt, 1e-6f);
        gpu_rmsnorm(dev, GPU_SPAN(xb, 0, n), GPU_SPAN(xb, 0, n), wb, 0, n, nt, 1e-6f); /* in place */
        char what[64];
        snprintf(what, sizeof what, "rmsnorm n=%d", n);
        CHECK(gpu_read(yb, 0, got, sizeof(float) * n * nt) == 0, "read");
        same_bits(what, got, want, (size_t)n * nt);
        CHECK(gpu_read(xb, 0, got, sizeof(float) * n * nt) == 0, "read");
        same_bits("rmsnorm in place", got, want, (size_t)n * nt);
        gpu_buf_free(xb), gpu_buf_free(wb), gpu_buf_free(yb);
        free(x), free(w), free(want), free(got);
    }
}

static void test_elementwise(void) {
    enum { N = 1000 };
    float g[N], u[N], want[N], got[N], sum[N];
    for (int i = 0; i < N; i++) {
        g[i] = frand() * (i < 100 ? 120.0f : 8.0f);
        u[i] = frand() * 3.0f;
    }
    kern_swiglu(want, g, u, N);
    memcpy(sum, g, sizeof sum);
    kern_add(sum, u, N);
    gpu_buf *gb = upload(g, sizeof g), *ub = upload(u, sizeof u), *yb = upload(NULL, sizeof got);
    gpu_swiglu(dev, yb, 0, gb, 0, ub, 0, N);
    CHECK(gpu_read(yb, 0, got, sizeof got) == 0, "read");
    same_bits("swiglu", got, want, N);
    gpu_add(dev, gb, 0, ub, 0, N);
    CHECK(gpu_read(gb, 0, got, sizeof got) == 0, "read");
    same_bits("add", got, sum, N);
    /* copy */
    gpu_copy(dev, yb, ub, sizeof u - sizeof u % 16);
    CHECK(gpu_read(yb, 0, got, sizeof got) == 0, "read");
    same_bits("copy", got, u, N - N % 4);
    gpu_buf_free(gb), gpu_buf_free(ub), gpu_buf_free(yb);
}

static void test_rope(void) {
    static const int hds[] = {64, 128};
    const kern_rope ropes[2] = {{.base = 10000.0f}, {.base = 1000000.0f, .yarn_factor = 4.0f, .yarn_orig_ctx = 4096}};
    for (int k = 0; k < 2; k++)
        for (int ri = 0; ri < 2; ri++) {
            int hd = hds[k], nh = 3, nt = 4;
            int32_t pos[4] = {0, 1, 77, 30000};
            float *x = malloc(sizeof(float) * nh * hd * nt), *want = malloc(sizeof(float) * nh * hd * nt);
            float *got = malloc(sizeof(float) * nh * hd * nt), *tab = malloc(sizeof(float) * hd * nt);
            for (int i = 0; i < nh * hd * nt; i++) x[i] = frand() * 5.0f;
            memcpy(want, x, sizeof(float) * nh * hd * nt);
            for (int t = 0; t < nt; t++) {
                kern_rope_neox_ext(want + t * nh * hd, nh, hd, pos[t], &ropes[ri]);
                kern_rope_table(tab + t * hd, tab + t * hd + hd / 2, hd, pos[t], &ropes[ri]);
            }
            gpu_buf *xb = upload(x, sizeof(float) * nh * hd * nt), *tb = upload(tab, sizeof(float) * hd * nt);
            gpu_rope(dev, GPU_SPAN(xb, 0, (size_t)nh * hd), nh, hd, nt, tb, 0);
            CHECK(gpu_read(xb, 0, got, sizeof(float) * nh * hd * nt) == 0, "read");
            same_bits(ri ? "rope yarn" : "rope", got, want, (size_t)nh * hd * nt);
            gpu_buf_free(xb), gpu_buf_free(tb);
            free(x), free(want), free(got), free(tab);
        }
}

/* A cache of n_ctx positions of one slot; n_new tokens written at positions
 * [p0, p0 + n_new) through gpu_kv_store (earlier ones from the host), then
 * each new token attends to its prefix. */
static void attention_case(uint32_t type, int hd, int n_ctx, int p0, int n_new) {
    const int H = 4, KVH = 2, KD = KVH * hd, QD = H * hd;
    const size_t rowb = kern_kv_row_bytes(type, KD);
    uint8_t *kc = calloc((size_t)n_ctx, rowb), *vc = calloc((size_t)n_ctx, rowb);
    float *k = malloc(sizeof(float) * KD * n_ctx), *v = malloc(sizeof(float) * KD * n_ctx);
    float *q = malloc(sizeof(float) * QD * n_new), *want = malloc(sizeof(float) * QD * n_new);
    float *got = malloc(sizeof(float) * QD * n_new);
    for (int i = 0; i < KD * n_ctx; i++) k[i] = frand() * 2.0f, v[i] = frand();
    for (int i = 0; i < QD * n_new; i++) q[i] = frand() * 3.0f;
    for (int p = 0; p < p0 + n_new; p++) {
        kern_store_row(type, kc + p * rowb, k + p * KD, KD);
        kern_store_row(type, vc + p * rowb, v + p * KD, KD);
    }
    kern_kv_view view = {.type = type, .k = kc, .v = vc, .row_stride = rowb};
    for (int t = 0; t < n_new; t++) kern_attention(want + t * QD, q + t * QD, &view, p0 + t + 1, H, KVH, hd);
    /* the device cache holds only the first p0 positions; the rest are stored on the device */
    uint8_t *kc0 = calloc((size_t)n_ctx, rowb), *vc0 = calloc((size_t)n_ctx, rowb);
    memcpy(kc0, kc, (size_t)p0 * rowb), memcpy(vc0, vc, (size_t)p0 * rowb);
    gpu_buf *kb = upload(kc0, n_ctx * rowb), *vb = upload(vc0, n_ctx * rowb);
    gpu_buf *ks = upload(k + p0 * KD, sizeof(float) * KD * n_new), *vs = upload(v + p0 * KD, sizeof(float) * KD * n_new);
    uint32_t *idx = malloc(sizeof(uint32_t) * 3 * n_new);
    for (int t = 0; t < n_new; t++) {
        idx[t] = (uint32_t)((p0 + t) * rowb / 4);         /* store: row word */
        idx[n_new + 2 * t] = 0;                           /* attention: slot's row 0 */
        idx[n_new + 2 * t + 1] = (uint32_t)(p0 + t + 1);  /* positions */
    }
    gpu_buf *ib = upload(idx, sizeof(uint32_t) * 3 * n_new), *qb = upload(q, sizeof(float) * QD * n_new);
    gpu_buf *ob = upload(NULL, sizeof(float) * QD * n_new);
    CHECK(gpu_kv_store(dev, kb, vb, type, KD, GPU_SPAN(ks, 0, KD), GPU_SPAN(vs, 0, KD), n_new, ib, 0) == 0, "store");
    CHECK(gpu_attention(dev, GPU_SPAN(ob, 0, QD), GPU_SPAN(qb, 0, QD), kb, vb, type, rowb / 4, H, KVH, hd, n_new, ib,
                        (size_t)n_new) == 0,
          "attention");
    uint8_t *back = malloc((size_t)n_ctx * rowb);
    CHECK(gpu_read(kb, 0, back, (size_t)(p0 + n_new) * rowb) == 0, "read");
    CHECK(!memcmp(back, kc, (size_t)(p0 + n_new) * rowb), "kv_store %s hd=%d: K rows differ from kern_store_row's",
          type == TENSOR_F16 ? "f16" : "f32", hd);
    CHECK(gpu_read(ob, 0, got, sizeof(float) * QD * n_new) == 0, "read");
    char what[96];
    snprintf(what, sizeof what, "attention %s hd=%d, positions %d..%d", type == TENSOR_F16 ? "f16" : "f32", hd, p0 + 1,
             p0 + n_new);
    same_bits(what, got, want, (size_t)QD * n_new);
    gpu_buf_free(kb), gpu_buf_free(vb), gpu_buf_free(ks), gpu_buf_free(vs), gpu_buf_free(ib), gpu_buf_free(qb);
    gpu_buf_free(ob);
    free(kc), free(vc), free(k), free(v), free(q), free(want), free(got), free(kc0), free(vc0), free(idx), free(back);
}

static void test_attention(void) {
    uint32_t types[2] = {TENSOR_F16, TENSOR_F32};
    for (int ti = 0; ti < 2; ti++) {
        attention_case(types[ti], 64, 80, 0, 5);   /* a prompt chunk from position 0 */
        attention_case(types[ti], 64, 80, 63, 7);  /* across the 32-position blocks */
        attention_case(types[ti], 80, 80, 69, 1);  /* decode at 70 positions */
    }
}

int main(void) {
    kern_init(1);
    kern_set_level(KERN_SCALAR); /* the reference (every level gives its bits) */
    const char *env = getenv("BATON_GPU_DEVICE");
    int index = env && *env ? atoi(env) : 0;
    char err[256];
    if (!(dev = gpu_open(index, err, sizeof err))) {
        fprintf(stderr, "FAIL: no Vulkan device %d: %s\n", index, err);
        gpu_list(stderr);
        return 1;
    }
    printf("device %s, %.1f GiB, fma %s\n", gpu_name(dev), (double)gpu_memory(dev) / (1 << 30),
           gpu_soft_fma(dev) ? "emulated (the device rounds fma() twice)" : "the device's");
    /* the matmul both ways: a workgroup per output (GPUs) and an invocation per output (CPU devices) */
    gpu_dev *whole = dev;
    static const char *modes[2] = {"row", "element"};
    for (int mi = 0; mi < 2; mi++) {
        setenv("BATON_GPU_MM", modes[mi], 1);
        dev = gpu_open(index, err, sizeof err);
        CHECK(dev && gpu_mm_rowwise(dev) == (mi == 0), "BATON_GPU_MM=%s: %s", modes[mi], dev ? "not applied" : err);
        if (dev) {
            printf("matmul, %s per output\n", mi == 0 ? "a workgroup" : "an invocation");
            test_matmul();
            gpu_close(dev);
        }
        /* matrices larger than the largest buffer go up in parts of rows */
        setenv("BATON_GPU_MAX_BUFFER", "4096", 1);
        dev = gpu_open(index, err, sizeof err);
        unsetenv("BATON_GPU_MAX_BUFFER");
        CHECK(dev && gpu_max_buffer(dev) == 4096, "BATON_GPU_MAX_BUFFER=4096: %s", dev ? "not applied" : err);
        if (dev) {
            matmul_case(TENSOR_Q8_0, 67, 544, 3, 1); /* 578-byte rows: 10 parts of 7 rows */
            matmul_case(TENSOR_F16, 67, 100, 2, 1);
            gpu_close(dev);
        }
        unsetenv("BATON_GPU_MM");
    }
    dev = whole;
    test_rmsnorm();
    test_elementwise();
    test_rope();
    test_attention();
    gpu_close(dev);
    kern_shutdown();
    printf("test_gpu: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
