/* kernels.c - `baton-bench kernels` and `baton-bench decode`: how close the CPU
 * kernels come to this machine's limits, measured in the same run.
 *
 * kernels: memory read bandwidth (1 and 2 threads) and peak int8 dot arithmetic,
 * then for the QwQ-32B projection shapes and every weight type: GB/s of weights
 * streamed by a 1-token matmul (1 and 2 threads) as a ratio to the bandwidth, and
 * GFLOP/s of a 128-token matmul (2 threads) as a ratio to peak int8 arithmetic.
 * Weights are random bytes with small valid scales (speed does not depend on
 * values). Options: --quick (only 5120x5120), --type NAME, --shape ROWSxCOLS
 * (only that one), --json.
 *
 * decode: a generated `--preset qwq-32b --layers 4` model (or --model FILE):
 * decode ms per layer and tokens/s with 1 and 2 threads against the bandwidth
 * bound (bandwidth / weight bytes per token), prefill tokens/s for a 128-token
 * prompt, the per-token cost ratio decode / prefill, and the prefill's achieved
 * int8 TOPS (2 ops per weight per token) against the peak measured in the run.
 * Options: --model FILE, --type T (one generated model of any quantized type or
 * mix baton-mkmodel writes; default q8_0, q4_k_m and q4_0), --json.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bench.h"
#include "cliparse.h"
#include "forward.h"
#include "ops.h"

static uint64_t kb_rng = 88172645463325252ull;
static uint64_t kb_next(void) {
    kb_rng ^= kb_rng << 13, kb_rng ^= kb_rng >> 7, kb_rng ^= kb_rng << 17;
    return kb_rng;
}

/* Where each quantized type's block keeps its fp16 scale(s) (-1: none). */
static const struct {
    uint32_t type;
    int off[2];
} kb_scale_at[] = {
    {TENSOR_Q8_0, {0, -1}},   {TENSOR_Q4_0, {0, -1}},  {TENSOR_Q4_K, {0, 2}},    {TENSOR_Q6_K, {208, -1}},
    {TENSOR_Q4_1, {0, 2}},    {TENSOR_Q5_0, {0, -1}},  {TENSOR_Q5_1, {0, 2}},    {TENSOR_IQ4_NL, {0, -1}},
    {TENSOR_IQ4_XS, {0, -1}}, {TENSOR_Q2_K, {80, 82}}, {TENSOR_Q3_K, {108, -1}}, {TENSOR_Q5_K, {0, 2}},
};

/* A rows x cols matrix of `type` with random payload and valid small scales. */
static void *kb_random_matrix(uint32_t type, int64_t rows, int64_t cols) {
    size_t rb = tensor_row_bytes(type, cols), n = rb * (size_t)rows;
    uint8_t *p = malloc(n);
    if (!p) return NULL;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v = kb_next();
        memcpy(p + i, &v, 8);
    }
    const tensor_type_info *ti = tensor_type_get(type);
    size_t nblocks = n / ti->block_bytes;
    uint16_t small = f32_to_fp16(0.001f);
    for (size_t b = 0; b < nblocks; b++) {
        uint8_t *blk = p + b * ti->block_bytes;
        if (type == TENSOR_F16) {
            uint16_t h = f32_to_fp16((float)(kb_next() % 2000) * 1e-3f - 1.0f);
            memcpy(blk, &h, 2);
        } else if (type == TENSOR_BF16) {
            uint16_t h = f32_to_bf16((float)(kb_next() % 2000) * 1e-3f - 1.0f);
            memcpy(blk, &h, 2);
        } else if (type == TENSOR_F32) {
            float f = (float)(kb_next() % 2000) * 1e-3f - 1.0f;
            memcpy(blk, &f, 4);
        } else {
            for (size_t i = 0; i < sizeof kb_scale_at / sizeof kb_scale_at[0]; i++)
                if (kb_scale_at[i].type == type)
                    for (int k = 0; k < 2; k++)
                        if (kb_scale_at[i].off[k] >= 0) memcpy(blk + kb_scale_at[i].off[k], &small, 2);
        }
    }
    return p;
}

typedef struct {
    double seconds, ops;
} kb_peak_job;

typedef struct {
    uint8_t *buf;
    size_t bytes;
    uint64_t sum;
} kb_stream_job;

static void *kb_stream_thread(void *arg) {
    kb_stream_job *j = arg;
    for (int r = 0; r < 3; r++) j->sum += kern_stream_sum(j->buf, j->bytes);
    return NULL;
}

/* Read bandwidth with the kernels' own wide loads (GB/s, best of 3), threads 1-2:
 * bench_measure_bandwidth's loop compiles to 16-byte loads here. */
static double kb_stream_bandwidth(int threads) {
    const size_t per = (size_t)256 << 20;
    kb_stream_job j[2];
    pthread_t tid[2];
    for (int t = 0; t < threads; t++) {
        j[t].buf = aligned_alloc(64, per);
        if (!j[t].buf) return 0;
        memset(j[t].buf, t + 1, per);
        j[t].bytes = per, j[t].sum = 0;
    }
    double best = 0;
    for (int trial = 0; trial < 3; trial++) {
        double t0 = clock_s();
        for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, kb_stream_thread, &j[t]);
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        double gbs = 3.0 * per * threads / (clock_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    uint64_t sink = 0;
    for (int t = 0; t < threads; t++) sink += j[t].sum, free(j[t].buf);
    if (sink == 42) fputc(' ', stderr);
    return best;
}

static void *kb_peak_thread(void *arg) {
    kb_peak_job *j = arg;
    j->ops = kern_peak_int8(j->seconds, clock_s);
    return NULL;
}

/* Seconds per call of a matmul, best of repeated runs for about `budget` s. */
/* Peak int8 dot arithmetic (ops/s) of 1 and of 2 threads at the current level,
 * best of 3 trials: the machine may be shared, and a busy core only lowers a figure. */
/* The instructions kern_peak_int8 times at the current level. */
static const char *kb_peak_instr(void) {
    kern_level l = kern_get_level();
    return l == KERN_AMX      ? "tdpbssd"
           : l == KERN_AVX512 ? "vpdpbusd"
           : l == KERN_AVX2   ? "vpmaddubsw+vpmaddwd"
                              : "none";
}

static void kb_measure_peak(double *peak1, double *peak2);

/* The int8 peaks (2 threads) of the AVX2, AVX-512 (VNNI) and AMX levels (the AMX
 * one a tile-resident tdpbssd loop), each "n/a" where this CPU lacks it (AMX on
 * its emulator included: kern_peak_int8 gives 0), into text; the current level
 * is restored. */
static void kb_level_peaks(char *text, size_t len) {
    kern_level now = kern_get_level();
    static const kern_level lv[] = {KERN_AVX2, KERN_AVX512, KERN_AMX};
    static const char *const nm[] = {"avx2 vpmaddubsw+vpmaddwd", "avx512 vpdpbusd", "amx tdpbssd"};
    size_t o = 0;
    text[0] = 0;
    for (int i = 0; i < 3; i++) {
        double p1 = 0, p2 = 0;
        if ((int)lv[i] <= (int)kern_best_level() && kern_set_level(lv[i]) == 0) kb_measure_peak(&p1, &p2);
        if (p2 > 0)
            o += (size_t)snprintf(text + o, len - o, "%s%s %.3f", i ? ", " : "", nm[i], p2 / 1e12);
        else /* the CPU lacks the level (AMX on its emulator included) */
            o += (size_t)snprintf(text + o, len - o, "%s%s n/a (no %s)", i ? ", " : "", nm[i],
                                  lv[i] == KERN_AMX ? "AMX" : lv[i] == KERN_AVX512 ? "AVX-512 VNNI" : "AVX2");
        if (o >= len) break;
    }
    kern_set_level(now);
}

static void kb_measure_peak(double *peak1, double *peak2) {
    *peak1 = *peak2 = 0;
    for (int trial = 0; trial < 3; trial++) {
        double p1 = kern_peak_int8(0.2, clock_s);
        if (p1 > *peak1) *peak1 = p1;
        kb_peak_job pj[2] = {{0.2, 0}, {0.2, 0}};
        pthread_t tid[2];
        for (int i = 0; i < 2; i++) pthread_create(&tid[i], NULL, kb_peak_thread, &pj[i]);
        for (int i = 0; i < 2; i++) pthread_join(tid[i], NULL);
        if (pj[0].ops + pj[1].ops > *peak2) *peak2 = pj[0].ops + pj[1].ops;
    }
}

static double kb_time_matmul(float *y, const kern_matrix *m, const float *x, int nt, double budget) {
    kern_matmul(y, m, x, nt, NULL); /* warm */
    double best = 1e30, t_start = clock_s();
    int runs = 0;
    while (runs < 3 || (clock_s() - t_start < budget && runs < 200)) {
        double t0 = clock_s();
        kern_matmul(y, m, x, nt, NULL);
        double dt = clock_s() - t0;
        if (dt < best) best = dt;
        runs++;
    }
    return best;
}

static int bench_kernels(int argc, char **argv) {
    int json = bench_want_json(argc, argv), quick = 0;
    const char *only = NULL;
    struct kb_shape { int64_t rows, cols; } one_shape = {0, 0}; /* --shape: only this one */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long r, c;
            char tail;
            if (sscanf(argv[++i], "%lldx%lld%c", &r, &c, &tail) != 2 || r < 1 || c < 256 || c % 256 || r > 1 << 20 ||
                c > 1 << 20) {
                fprintf(stderr, "baton-bench kernels: --shape must be ROWSxCOLS, COLS a multiple of 256\n");
                return 2;
            }
            one_shape.rows = r, one_shape.cols = c;
        } else if (strcmp(argv[i], "--json")) {
            fprintf(stderr, "baton-bench kernels: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (kern_init(2)) return 1;
    double pbw1 = bench_measure_bandwidth(1), pbw2 = bench_measure_bandwidth(2);
    double sbw1 = kb_stream_bandwidth(1), sbw2 = kb_stream_bandwidth(2);
    /* ratios use the larger of the two probes: the true limit is at least that */
    double bw1 = pbw1 > sbw1 ? pbw1 : sbw1, bw2 = pbw2 > sbw2 ? pbw2 : sbw2;
    double peak1, peak2;
    kb_measure_peak(&peak1, &peak2);
    char peaks[256];
    kb_level_peaks(peaks, sizeof peaks);
    if (!json) printf("int8 peaks, 2 threads, TOPS: %s\n", peaks);
    if (json)
        printf("{\"isa\":\"%s\",\"features\":\"%s\",\"bandwidth_1t_gbs\":%.2f,\"bandwidth_2t_gbs\":%.2f,"
               "\"bench_bandwidth_1t_gbs\":%.2f,\"bench_bandwidth_2t_gbs\":%.2f,\"stream512_1t_gbs\":%.2f,"
               "\"stream512_2t_gbs\":%.2f,\"int8_peak_1t_tops\":%.3f,\"int8_peak_2t_tops\":%.3f,\"results\":[",
               kern_level_name(kern_get_level()), kern_cpu_features(), bw1, bw2, pbw1, pbw2, sbw1, sbw2, peak1 / 1e12,
               peak2 / 1e12);
    else
        printf("level %s (%s)\nbench_measure_bandwidth: %.2f / %.2f GB/s, wide-load stream: %.2f / %.2f GB/s "
               "(1 / 2 threads)\nratios below use the larger: %.2f GB/s (1 thread), %.2f GB/s (2 threads)\n"
               "peak int8 dot (%s): %.3f TOPS (1 thread), %.3f TOPS (2 threads)\n\n"
               "%-6s %-12s %9s %6s %9s %6s %11s %7s\n",
               kern_level_name(kern_get_level()), kern_cpu_features(), pbw1, pbw2, sbw1, sbw2, bw1, bw2,
               kb_peak_instr(), peak1 / 1e12, peak2 / 1e12, "type",
               "shape", "dec1 GB/s", "ratio", "dec2 GB/s", "ratio", "pf128 GF/s", "/peak");
    static const struct kb_shape shapes_all[] = {{5120, 5120}, {1024, 5120}, {27648, 5120}, {5120, 27648}};
    const struct kb_shape *shapes = one_shape.rows ? &one_shape : shapes_all;
    const size_t n_shapes = one_shape.rows ? 1 : quick ? 1 : sizeof shapes_all / sizeof shapes_all[0];
    static const uint32_t types[] = {TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K, TENSOR_Q8_0,   TENSOR_Q4_1,
                                     TENSOR_Q5_0, TENSOR_Q5_1, TENSOR_IQ4_NL, TENSOR_IQ4_XS, TENSOR_Q2_K,
                                     TENSOR_Q3_K, TENSOR_Q5_K, TENSOR_F16,    TENSOR_BF16,   TENSOR_F32};
    int first = 1, matched = 0;
    for (size_t s = 0; s < n_shapes; s++) {
        int64_t rows = shapes[s].rows, cols = shapes[s].cols;
        float *x = malloc(sizeof(float) * 128 * cols), *y = malloc(sizeof(float) * 128 * rows);
        if (!x || !y) return 1;
        for (int64_t i = 0; i < 128 * cols; i++) x[i] = (float)(kb_next() % 2001) * 1e-3f - 1.0f;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const tensor_type_info *info = tensor_type_get(types[ti]);
            if (only && strcasecmp(only, info->name)) continue;
            matched = 1;
            void *data = kb_random_matrix(types[ti], rows, cols);
            if (!data) return 1;
            kern_matrix m = {.type = types[ti], .rows = rows, .cols = cols, .data = data};
            if (kern_matrix_prepare(&m)) return 1;
            double bytes = (double)tensor_row_bytes(types[ti], cols) * rows;
            kern_init(1);
            double t1 = kb_time_matmul(y, &m, x, 1, 0.4);
            kern_init(2);
            double t2 = kb_time_matmul(y, &m, x, 1, 0.4);
            double tp = kb_time_matmul(y, &m, x, 128, 0.5);
            double g1 = bytes / t1 / 1e9, g2 = bytes / t2 / 1e9, gf = 2.0 * rows * cols * 128 / tp / 1e9;
            int quantized = types[ti] != TENSOR_F16 && types[ti] != TENSOR_BF16 && types[ti] != TENSOR_F32;
            double pr = quantized && peak2 > 0 ? gf * 1e9 / peak2 : 0;
            if (json)
                printf("%s{\"type\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"decode_1t_gbs\":%.2f,\"decode_1t_ratio\":%.3f,"
                       "\"decode_2t_gbs\":%.2f,\"decode_2t_ratio\":%.3f,\"prefill128_gflops\":%.1f,"
                       "\"prefill128_ratio_to_int8_peak\":%.3f}",
                       first ? "" : ",", info->name, (long long)rows, (long long)cols, g1, g1 / bw1, g2, g2 / bw2, gf, pr);
            else
            {
                char frac[16] = "    n/a"; /* of the current level's peak; none for float types or an emulated level */
                if (pr > 0) snprintf(frac, sizeof frac, "%7.3f", pr);
                printf("%-6s %5lldx%-6lld %9.2f %6.2f %9.2f %6.2f %11.1f %s\n", info->name, (long long)rows,
                       (long long)cols, g1, g1 / bw1, g2, g2 / bw2, gf, frac);
            }
            fflush(stdout);
            first = 0;
            kern_matrix_release(&m);
            free(data);
        }
        free(x), free(y);
    }
    if (json) printf("]}\n");
    if (only && !matched) {
        fprintf(stderr, "baton-bench kernels: --type %s: not a quantized or float type of this benchmark (", only);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            fprintf(stderr, "%s%s", ti ? " " : "", tensor_type_get(types[ti])->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    return 0;
}
BENCH_REGISTER(kernels, "CPU kernels: decode GB/s vs bandwidth, prefill GFLOP/s vs int8 peak",
               "[--quick] [--type NAME] [--shape ROWSxCOLS]", bench_kernels)

/* ------------------------------------------------------------ decode */

/* Multiply-adds per token of the slice's layer matrices (attention excluded). */
static double kb_layer_macs(const model *m) {
    double macs = 0;
    for (int il = 0; il < m->slice.layer_end - m->slice.layer_begin; il++) {
        const model_layer *L = &m->layers[il];
        const kern_matrix *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) macs += (double)mats[i]->rows * (double)mats[i]->cols;
    }
    return macs;
}

/* decode --type: baton-mkmodel's quantized types and mixes */
#define KB_DECODE_TYPES                                                                                            \
    "q8_0 q4_0 q4_k q4_k_m q6_k q4_1 q5_0 q5_1 iq4_nl iq4_xs q2_k q3_k q5_k q2_k_mix q3_k_s q3_k_m q3_k_l q4_k_s " \
    "q5_k_s q5_k_m"
static const char *const kb_decode_types[] = {"q8_0",   "q4_0",   "q4_k",   "q4_k_m",   "q6_k",   "q4_1",   "q5_0",
                                              "q5_1",   "iq4_nl", "iq4_xs", "q2_k",     "q3_k",   "q5_k",   "q2_k_mix",
                                              "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s",   "q5_k_s", "q5_k_m"};

static int g_ctx;                        /* --ctx N: decode at positions N.. (0: right after the 128-token prefill) */
static uint32_t g_kv_type = TENSOR_F16;  /* --kv */

static int kb_decode_one(const char *path, double bw1, double bw2, double peak1, double peak2, int json, int *first) {
    char err[512];
    model *m = model_load(path, &(model_slice){0, -1, false, false}, err, sizeof err);
    if (!m) {
        fprintf(stderr, "baton-bench decode: %s\n", err);
        return 1;
    }
    const int n_layers = m->slice.layer_end - m->slice.layer_begin; /* end is exclusive */
    const int E = (int)m->hp.n_embd, P = 128, D = 8;
    const int start = g_ctx > P ? g_ctx : P; /* first decode position */
    kv_cache *kv = kv_cache_new(m, 1, start + D + 1, g_kv_type, err, sizeof err);
    fwd_ctx *c = fwd_ctx_new(m, P);
    float *hidden = malloc(sizeof(float) * P * E);
    int32_t tok[128], slot[128], pos[128];
    if (!kv || !c || !hidden) {
        fprintf(stderr, "baton-bench decode: %s\n", kv ? "out of memory" : err);
        return 1;
    }
    double res[2][2]; /* [threads-1][decode s/token, prefill s/token] */
    for (int th = 1; th <= 2; th++) {
        kern_init(th);
        for (int i = 0; i < P; i++) tok[i] = 0, slot[i] = 0, pos[i] = i;
        for (int64_t i = 0; i < (int64_t)P * E; i++) hidden[i] = (float)(kb_next() % 2001) * 1e-3f - 1.0f;
        fwd_batch b = {.n = P, .tokens = tok, .slot = slot, .pos = pos};
        double t0 = clock_s();
        if (forward_run(c, kv, &b, hidden, NULL, err, sizeof err)) {
            fprintf(stderr, "baton-bench decode: %s\n", err);
            return 1;
        }
        res[th - 1][1] = (clock_s() - t0) / P;
        if (th == 1 && start > P) { /* positions [P, start): random K/V rows, as a long prompt would leave */
            const int KD = (int)(m->hp.n_head_kv * m->hp.head_dim);
            float *row = malloc(sizeof(float) * (size_t)KD);
            if (!row) return 1;
            for (int il = 0; il < n_layers; il++)
                for (int p = P; p < start; p++)
                    for (int kvi = 0; kvi < 2; kvi++) {
                        for (int i = 0; i < KD; i++) row[i] = (float)(kb_next() % 2001) * 1e-3f - 1.0f;
                        size_t idx = (size_t)il * (size_t)kv->n_ctx + (size_t)p; /* slot 0 */
                        kern_store_row(kv->type, (kvi ? kv->v : kv->k) + idx * kv->row_bytes, row, KD);
                    }
            free(row);
        }
        double best = 1e30;
        for (int d = 0; d < D; d++) {
            int32_t p1 = start + d;
            fwd_batch b1 = {.n = 1, .tokens = tok, .slot = slot, .pos = &p1};
            double t1 = clock_s();
            if (forward_run(c, kv, &b1, hidden, NULL, err, sizeof err)) {
                fprintf(stderr, "baton-bench decode: %s\n", err);
                return 1;
            }
            double dt = clock_s() - t1;
            if (dt < best) best = dt;
        }
        res[th - 1][0] = best;
    }
    double bytes = (double)m->weight_bytes, macs = kb_layer_macs(m);
    /* a decode token at position ~start reads every earlier K and V row of each layer */
    const double kv_read = 2.0 * (double)kv->row_bytes * (double)(start + 1) * n_layers;
    for (int th = 1; th <= 2; th++) {
        double dec = res[th - 1][0], pf = res[th - 1][1], bw = th == 1 ? bw1 : bw2, peak = th == 1 ? peak1 : peak2;
        double bound = bytes / (bw * 1e9), tops = 2 * macs / pf / 1e12;
        if (json)
            printf("%s{\"model\":\"%s\",\"threads\":%d,\"layers\":%d,\"weight_bytes_per_token\":%.0f,"
                   "\"decode_ms_per_layer\":%.3f,\"decode_tok_s\":%.2f,\"decode_ratio_to_bandwidth\":%.3f,"
                   "\"prefill128_tok_s\":%.2f,\"prefill_ms_per_token_layer\":%.4f,\"decode_over_prefill\":%.1f,"
                   "\"prefill_int8_tops\":%.4f,\"int8_peak_tops\":%.4f,\"prefill_ratio_to_peak\":%.3f,"
                   "\"decode_position\":%d,\"kv_type\":\"%s\",\"kv_bytes_per_token\":%.0f,\"decode_gbs\":%.3f}",
                   *first ? "" : ",", path, th, n_layers, bytes, dec * 1e3 / n_layers, 1 / dec, bound / dec, 1 / pf,
                   pf * 1e3 / n_layers, dec / pf, tops, peak / 1e12, peak > 0 ? tops * 1e12 / peak : 0, start,
                   tensor_type_get(g_kv_type)->name, kv_read, (bytes + kv_read) / dec / 1e9);
        else
        {
            char frac[16] = "   n/a"; /* the fraction of the peak of the level that ran the prefill */
            if (peak > 0) snprintf(frac, sizeof frac, "%6.3f", tops * 1e12 / peak);
            printf("%-40s %2d %6.3f %8.2f %6.3f %10.2f %10.4f %7.1f %7.3f %s %7d %-4s %8.1f %7.2f\n", path, th,
                   dec * 1e3 / n_layers, 1 / dec, bound / dec, 1 / pf, pf * 1e3 / n_layers, dec / pf, tops, frac, start,
                   tensor_type_get(g_kv_type)->name, kv_read / 1048576.0, (bytes + kv_read) / dec / 1e9);
        }
        *first = 0;
    }
    free(hidden);
    fwd_ctx_free(c);
    kv_cache_free(kv);
    model_free(m);
    return 0;
}

static int bench_decode(int argc, char **argv) {
    int json = bench_want_json(argc, argv);
    const char *model_path = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model_path = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) {
            long long v;
            char perr[200];
            if (cli_int(argv[++i], 1, 1 << 22, &v, perr, sizeof perr)) {
                fprintf(stderr, "baton-bench decode: --ctx: %s\n", perr);
                return 2;
            }
            g_ctx = (int)v;
        } else if (!strcmp(argv[i], "--kv") && i + 1 < argc) {
            const char *k = argv[++i];
            if (!strcmp(k, "f16")) g_kv_type = TENSOR_F16;
            else if (!strcmp(k, "f32")) g_kv_type = TENSOR_F32;
            else if (!strcmp(k, "q8_0")) g_kv_type = TENSOR_Q8_0;
            else {
                fprintf(stderr, "baton-bench decode: --kv must be f16, f32 or q8_0\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--json")) {
            fprintf(stderr, "baton-bench decode: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    int known = !only;
    for (size_t i = 0; i < sizeof kb_decode_types / sizeof kb_decode_types[0]; i++)
        if (only && !strcmp(only, kb_decode_types[i])) known = 1;
    if (!known) {
        fprintf(stderr, "baton-bench decode: --type must be one of: %s\n", KB_DECODE_TYPES);
        return 2;
    }
    if (kern_init(2)) return 1;
    double bw1 = bench_measure_bandwidth(1), bw2 = bench_measure_bandwidth(2);
    double sbw1 = kb_stream_bandwidth(1), sbw2 = kb_stream_bandwidth(2);
    if (sbw1 > bw1) bw1 = sbw1;
    if (sbw2 > bw2) bw2 = sbw2;
    double peak1, peak2;
    kb_measure_peak(&peak1, &peak2);
    char peaks[256];
    kb_level_peaks(peaks, sizeof peaks);
    if (!json) printf("int8 peaks, 2 threads, TOPS: %s\n", peaks);
    if (json)
        printf("{\"isa\":\"%s\",\"bandwidth_1t_gbs\":%.2f,\"bandwidth_2t_gbs\":%.2f,\"int8_peak_1t_tops\":%.4f,"
               "\"int8_peak_2t_tops\":%.4f,\"results\":[",
               kern_level_name(kern_get_level()), bw1, bw2, peak1 / 1e12, peak2 / 1e12);
    else
        printf("level %s; bandwidth %.2f GB/s (1 thread), %.2f GB/s (2 threads); peak int8 (%s) %.3f / %.3f TOPS\n"
               "%-40s %2s %6s %8s %6s %10s %10s %7s %7s %6s %7s %-4s %8s %7s\n",
               kern_level_name(kern_get_level()), bw1, bw2, kb_peak_instr(), peak1 / 1e12, peak2 / 1e12, "model", "th",
               "ms/lay", "tok/s", "ratio", "pf tok/s", "pf ms/t/l", "dec/pf", "pf TOPS", "/peak", "dec-pos", "kv",
               "KV MiB/t", "GB/s");
    int first = 1, rc = 0;
    if (model_path) {
        rc = kb_decode_one(model_path, bw1, bw2, peak1, peak2, json, &first);
    } else {
        /* without --type: the three types of the first measurements (each generated model is 1-2 GB) */
        static const char *const dflt[] = {"q8_0", "q4_k_m", "q4_0"};
        const char *const *types = only ? &only : dflt;
        for (int i = 0; i < (only ? 1 : 3) && !rc; i++) {
            char path[512];
            if (bench_qwq_model("decode", types[i], 4, path, sizeof path)) {
                fprintf(stderr, "baton-bench decode: cannot generate the %s model\n", types[i]);
                rc = 1;
                break;
            }
            rc = kb_decode_one(path, bw1, bw2, peak1, peak2, json, &first);
        }
    }
    if (json) printf("]}\n");
    return rc;
}
BENCH_REGISTER(decode,
               "forward-pass decode/prefill speed of a 4-layer QwQ-32B-shaped model vs bandwidth (without --model, "
               "the model of --type is generated under /tmp)",
               "[--model FILE] [--type T] [--ctx N] [--kv f16|f32|q8_0]  (--ctx: decode at position N, "
               "the cache filled with random rows; GB/s counts weights + the K/V read; --type: one of " KB_DECODE_TYPES ")",
               bench_decode)
