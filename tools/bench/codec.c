/* codec.c - `baton-bench codec`: what each activation codec (kernels/codec.h)
 * costs and saves on one hop, on hidden states of a real forward pass.
 *
 *   baton-mkmodel --preset qwq-32b --layers 2 --vocab 1024 --type q8_0 -o /tmp/qwq2.gguf
 *   baton-bench codec --model /tmp/qwq2.gguf [--split K] [--prompt N] [--steps S]
 *                     [--seconds T] [--json]
 *
 * The model is cut in two slices, [0,K) with the embedding and [K,L) with the
 * head (K = L/2 by default), as two workers would hold it. A prompt of N tokens
 * (default 512) runs through the first slice in one chunk; its hidden states are
 * the data: "decode 1" is its first row, "batch 32" its first 32 rows (32 tokens
 * at once, as a batch of 32 streams sends them), "prefill N" all of it.
 *
 * Per case and codec: bytes per token on the wire and the ratio to f32; encode
 * and decode GB/s (of f32 data) on one core, codec only, timed in CPU time of
 * the thread (so that other processes on a shared machine do not count); the hop cost (sender's
 * hop_encode with its checksum - for lossy codecs a decode of its own output -
 * plus receiver's hop_decode with the checksum check); and a cost model, time per
 * step spent on the hop = hop cost + bytes / link speed, for 1 GbE (125 MB/s) and
 * 10 GbE (1250 MB/s), headers and latency left out.
 *
 * Quality, relative to f32 transport: the 32-token case decoded by each codec
 * runs through the second slice, and the logits are compared, |dl| / max|l| of
 * the row (max and mean over all logits); then greedy decoding of S steps
 * (default 64) from a 16-token prompt with every hop through the codec: how many
 * tokens equal f32's and the first step that differs. Codecs that decode to the
 * same floats (x and x+lz4) share one greedy run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "codec.h"
#include "forward.h"
#include "hop.h"
#include "ops.h"

#define CB_CASES 3

typedef struct cb_result {
    size_t bytes;                 /* encoded bytes for the case */
    double enc_s, dec_s;          /* codec only, seconds per call */
    double hop_enc_s, hop_dec_s;  /* with checksums */
} cb_result;

typedef struct cb_quality {
    double max_rel, mean_rel;
    int same, first_diff; /* greedy: tokens equal to f32's, first differing step (-1: none) */
} cb_quality;

/* The two slices and their state. */
typedef struct cb_pipe {
    model *a, *b;
    kv_cache *kva, *kvb;
    fwd_ctx *ca, *cb;
    int32_t n_embd, n_vocab;
} cb_pipe;

/* CPU seconds of this thread: what one core spends, whatever else runs. */
static double cb_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Mean CPU seconds per call of op(arg), repeated for at least `seconds` (3 calls
 * minimum). The clock is read between batches of calls that double until a batch
 * takes 1/64 of that: reading this thread's CPU clock is a system call (~1 us on
 * a VM), as long as a one-token f32 decode, and would count in every call. */
static double cb_time(void (*op)(void *), void *arg, double seconds) {
    long n = 0, batch = 1;
    double t0 = cb_cpu_now(), t, tb = t0;
    do {
        for (long i = 0; i < batch; i++) op(arg);
        n += batch;
        const double now = cb_cpu_now();
        if (now - tb < seconds / 64) batch *= 2;
        tb = now, t = now - t0;
    } while (t < seconds || n < 3);
    return t / (double)n;
}

typedef struct cb_op {
    int codec;
    const float *x;
    float *y;
    size_t rows, width, cap, len;
    uint8_t *enc;
    Baton__StageFrame *f;
} cb_op;

static void op_encode(void *p) {
    cb_op *o = p;
    o->len = codec_encode(o->codec, o->x, o->rows, o->width, o->enc, o->cap, NULL, 0);
}
static void op_decode(void *p) {
    cb_op *o = p;
    codec_decode(o->codec, o->enc, o->len, o->y, o->rows, o->width, NULL, 0);
}
static void op_hop_encode(void *p) {
    cb_op *o = p;
    hop_payload pl;
    if (hop_encode(o->f, o->codec, o->x, o->rows * o->width * sizeof(float), &pl, NULL, 0) == 0) {
        memcpy(o->enc, pl.data, pl.len);
        o->len = pl.len;
    }
    hop_payload_free(&pl);
}
static void op_hop_decode(void *p) {
    cb_op *o = p;
    float *h;
    size_t len;
    if (hop_decode(o->f, o->enc, o->len, &h, &len, NULL, 0) == 0) free(h);
}

/* Measure one codec on x ([rows][width]). */
static int cb_measure(int codec, const float *x, size_t rows, size_t width, double seconds, cb_result *r) {
    cb_op o = {.codec = codec, .x = x, .rows = rows, .width = width};
    o.cap = codec_max_encoded(codec, rows, width);
    o.enc = malloc(o.cap);
    o.y = malloc(rows * width * sizeof(float));
    Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
    f.token_count = (uint32_t)rows, f.width = (uint32_t)width;
    o.f = &f;
    int rc = -1;
    if (o.enc && o.y) {
        r->enc_s = cb_time(op_encode, &o, seconds);
        r->bytes = o.len;
        r->dec_s = cb_time(op_decode, &o, seconds);
        r->hop_enc_s = cb_time(op_hop_encode, &o, seconds);
        r->hop_dec_s = cb_time(op_hop_decode, &o, seconds);
        rc = o.len ? 0 : -1;
    }
    free(o.enc);
    free(o.y);
    return rc;
}

/* x through `codec` and back, as the receiving worker would see it (into y). */
static int cb_hop(int codec, const float *x, size_t rows, size_t width, float *y) {
    Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
    f.token_count = (uint32_t)rows, f.width = (uint32_t)width;
    hop_payload p;
    char err[256];
    float *h;
    size_t len;
    if (hop_encode(&f, codec, x, rows * width * sizeof(float), &p, err, sizeof err) < 0 ||
        hop_decode(&f, p.data, p.len, &h, &len, err, sizeof err) < 0) {
        fprintf(stderr, "baton-bench codec: %s: %s\n", codec_name(codec), err);
        hop_payload_free(&p);
        return -1;
    }
    memcpy(y, h, len);
    free(h);
    hop_payload_free(&p);
    return 0;
}

/* Run n tokens (positions pos0..) through both slices with the hop in `codec`;
 * logits of every token into logits ([n][vocab]) if all_logits, else of the last
 * one. hidden: scratch [n][n_embd]. Returns 0 or -1. */
static int cb_pipe_run(cb_pipe *p, int codec, const int32_t *tok, int n, int pos0, float *hidden, float *logits,
                       bool all_logits) {
    int32_t slot[512], pos[512];
    uint8_t want[512];
    char err[512];
    for (int i = 0; i < n; i++) slot[i] = 0, pos[i] = pos0 + i, want[i] = all_logits || i == n - 1;
    fwd_batch b = {.n = n, .tokens = tok, .slot = slot, .pos = pos, .logits = want};
    if (forward_run(p->ca, p->kva, &b, hidden, NULL, err, sizeof err) < 0 ||
        cb_hop(codec, hidden, (size_t)n, (size_t)p->n_embd, hidden) < 0 ||
        forward_run(p->cb, p->kvb, &b, hidden, logits, err, sizeof err) < 0) {
        fprintf(stderr, "baton-bench codec: forward: %s\n", err);
        return -1;
    }
    return 0;
}

static int32_t cb_argmax(const float *l, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

/* Greedy decoding of `steps` tokens from a 16-token prompt, every hop in codec. */
static int cb_greedy(cb_pipe *p, int codec, int steps, int32_t *out, float *hidden, float *logits) {
    int32_t prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (int32_t)((i * 131 + 7) % p->n_vocab);
    if (cb_pipe_run(p, codec, prompt, 16, 0, hidden, logits, false)) return -1;
    out[0] = cb_argmax(logits, p->n_vocab);
    for (int s = 1; s < steps; s++) {
        if (cb_pipe_run(p, codec, &out[s - 1], 1, 16 + s - 1, hidden, logits, false)) return -1;
        out[s] = cb_argmax(logits, p->n_vocab);
    }
    return 0;
}

static int bench_codec(int argc, char **argv) {
    const bool json = bench_want_json(argc, argv);
    const char *path = NULL;
    int split = -1, prompt = 512, steps = 64;
    double seconds = 0.15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--split") && i + 1 < argc) {
            if (bench_int_opt("codec", argv[i], argv[i + 1], 1, 4096, &split) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) {
            if (bench_int_opt("codec", argv[i], argv[i + 1], 32, 512, &prompt) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            if (bench_int_opt("codec", argv[i], argv[i + 1], 1, 1024, &steps) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            if (bench_float_opt("codec", argv[i], argv[i + 1], 0.001, 3600, &seconds) != 0) return 2;
            i++;
        }
        else if (strcmp(argv[i], "--json")) {
            fprintf(stderr, "baton-bench codec: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "baton-bench codec: --model FILE is required, e.g. from\n"
                        "  baton-mkmodel --preset qwq-32b --layers 2 --vocab 1024 --type q8_0 -o /tmp/qwq2.gguf\n");
        return 2;
    }
    if (prompt < 32 || prompt > 512 || steps < 1 || steps > 1024) {
        fprintf(stderr, "baton-bench codec: --prompt must be in [32, 512], --steps in [1, 1024]\n");
        return 2;
    }
    if (kern_init(0)) return 1;
    char err[512];
    cb_pipe p = {0};
    model *whole = model_load(path, &(model_slice){0, -1, false, false}, err, sizeof err);
    if (!whole) {
        fprintf(stderr, "baton-bench codec: %s\n", err);
        return 1;
    }
    const int n_layer = (int)whole->hp.n_layer;
    p.n_embd = (int32_t)whole->hp.n_embd, p.n_vocab = (int32_t)whole->hp.n_vocab;
    model_free(whole);
    if (split < 0) split = n_layer / 2;
    if (split < 1 || split >= n_layer) {
        fprintf(stderr, "baton-bench codec: --split must be in [1, %d)\n", n_layer);
        return 2;
    }
    const int n_ctx = prompt + steps + 32;
    p.a = model_load(path, &(model_slice){0, split, true, false}, err, sizeof err);
    if (p.a) p.b = model_load(path, &(model_slice){split, -1, false, true}, err, sizeof err);
    if (p.b) p.kva = kv_cache_new(p.a, 1, n_ctx, TENSOR_F16, err, sizeof err);
    if (p.kva) p.kvb = kv_cache_new(p.b, 1, n_ctx, TENSOR_F16, err, sizeof err);
    if (p.kvb) p.ca = fwd_ctx_new(p.a, prompt), p.cb = fwd_ctx_new(p.b, prompt);
    const size_t E = (size_t)p.n_embd;
    float *h = malloc((size_t)prompt * E * sizeof(float)), *scratch = malloc((size_t)prompt * E * sizeof(float));
    float *lref = malloc(32 * (size_t)p.n_vocab * sizeof(float)), *l = malloc(32 * (size_t)p.n_vocab * sizeof(float));
    int32_t *tok = malloc((size_t)(prompt + steps) * sizeof(int32_t));
    int32_t *gref = malloc((size_t)steps * sizeof(int32_t)), *g = malloc((size_t)steps * sizeof(int32_t));
    int rc = 1;
    if (!p.ca || !p.cb || !h || !scratch || !lref || !l || !tok || !gref || !g) {
        fprintf(stderr, "baton-bench codec: %s\n", p.kvb ? "out of memory" : err);
        goto done;
    }
    /* the data: hidden states after layer split-1 for a prompt chunk */
    for (int i = 0; i < prompt; i++) tok[i] = (int32_t)((i * 7919 + 13) % p.n_vocab);
    int32_t slot[512], pos[512];
    for (int i = 0; i < prompt; i++) slot[i] = 0, pos[i] = i;
    fwd_batch fb = {.n = prompt, .tokens = tok, .slot = slot, .pos = pos};
    double t0 = clock_s();
    if (forward_run(p.ca, p.kva, &fb, h, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "baton-bench codec: %s\n", err);
        goto done;
    }
    const double t_prefill = clock_s() - t0;
    fprintf(stderr, "baton-bench codec: %d-token chunk through layers [0,%d) in %.1f s; timing the codecs\n", prompt,
            split, t_prefill);

    const size_t case_rows[CB_CASES] = {1, 32, (size_t)prompt};
    const char *case_names[CB_CASES] = {"decode 1", "batch 32", "prefill"};
    static cb_result res[CB_CASES][CODEC_COUNT];
    for (int k = 0; k < CB_CASES; k++)
        for (int c = 0; c < CODEC_COUNT; c++)
            if (cb_measure(c, h, case_rows[k], E, seconds, &res[k][c]) < 0) goto done;

    /* quality: logits of the 32-token case, greedy tokens */
    fprintf(stderr, "baton-bench codec: logits and greedy decoding (%d steps) per codec\n", steps);
    static cb_quality q[CODEC_COUNT];
    for (int c = 0; c < CODEC_COUNT; c++) {
        if (cb_hop(c, h, 32, E, scratch) < 0) goto done;
        uint8_t want32[32];
        memset(want32, 1, sizeof want32);
        fwd_batch b32 = {.n = 32, .tokens = tok, .slot = slot, .pos = pos, .logits = want32};
        if (forward_run(p.cb, p.kvb, &b32, scratch, c == 0 ? lref : l, err, sizeof err) < 0) {
            fprintf(stderr, "baton-bench codec: %s\n", err);
            goto done;
        }
        if (c == 0) continue;
        double mx = 0, sum = 0;
        for (int r = 0; r < 32; r++) {
            const float *a = lref + (size_t)r * p.n_vocab, *b = l + (size_t)r * p.n_vocab;
            double amax = 0;
            for (int v = 0; v < p.n_vocab; v++) amax = fmax(amax, fabs(a[v]));
            for (int v = 0; v < p.n_vocab; v++) {
                double e = amax > 0 ? fabs((double)b[v] - a[v]) / amax : fabs((double)b[v] - a[v]);
                mx = fmax(mx, e), sum += e;
            }
        }
        q[c].max_rel = mx, q[c].mean_rel = sum / (32.0 * p.n_vocab);
    }
    for (int c = 0; c < CODEC_COUNT; c++) {
        const int base = c & 3; /* x+lz4 decodes to the floats x does */
        if (c >= CODEC_F32_LZ4 && c != CODEC_F32_LZ4) {
            q[c].same = q[base].same, q[c].first_diff = q[base].first_diff;
            continue;
        }
        if (cb_greedy(&p, c, steps, c == 0 ? gref : g, scratch, l) < 0) goto done;
        int32_t *gt = c == 0 ? gref : g;
        q[c].same = 0, q[c].first_diff = -1;
        for (int s = 0; s < steps; s++) {
            if (gt[s] == gref[s]) q[c].same++;
            else if (q[c].first_diff < 0) q[c].first_diff = s;
        }
    }

    /* report */
    static const double links[2] = {125e6, 1250e6}; /* bytes/s of 1 GbE and 10 GbE */
    if (json) {
        printf("{\"model\":\"%s\",\"split\":%d,\"n_layer\":%d,\"n_embd\":%zu,\"isa\":\"%s\",\"prefill_s\":%.3f,"
               "\"cases\":[",
               path, split, n_layer, E, kern_level_name(kern_get_level()), t_prefill);
        for (int k = 0; k < CB_CASES; k++)
            for (int c = 0; c < CODEC_COUNT; c++) {
                const cb_result *r = &res[k][c];
                const double raw = (double)case_rows[k] * E * 4, hop = r->hop_enc_s + r->hop_dec_s;
                printf("%s{\"case\":\"%s\",\"rows\":%zu,\"codec\":\"%s\",\"bytes_per_token\":%.1f,\"ratio\":%.4f,"
                       "\"encode_gbs\":%.3f,\"decode_gbs\":%.3f,\"hop_us\":%.1f,\"step_1gbe_ms\":%.4f,"
                       "\"step_10gbe_ms\":%.4f}",
                       k || c ? "," : "", case_names[k], case_rows[k], codec_name(c),
                       (double)r->bytes / (double)case_rows[k], (double)r->bytes / raw, raw / r->enc_s * 1e-9,
                       raw / r->dec_s * 1e-9, hop * 1e6, (hop + (double)r->bytes / links[0]) * 1e3,
                       (hop + (double)r->bytes / links[1]) * 1e3);
            }
        printf("],\"quality\":[");
        for (int c = 0; c < CODEC_COUNT; c++)
            printf("%s{\"codec\":\"%s\",\"logit_max_rel\":%.3g,\"logit_mean_rel\":%.3g,\"greedy_same\":%d,"
                   "\"greedy_steps\":%d,\"greedy_first_diff\":%d}",
                   c ? "," : "", codec_name(c), q[c].max_rel, q[c].mean_rel, q[c].same, steps, q[c].first_diff);
        printf("]}\n");
    } else {
        printf("model %s, layers [0,%d) | [%d,%d), width %zu, level %s, one core per codec call\n", path, split,
               split, n_layer, E, kern_level_name(kern_get_level()));
        printf("%-11s %-9s %9s %6s %8s %8s %8s %10s %10s\n", "case", "codec", "B/token", "ratio", "enc GB/s",
               "dec GB/s", "hop us", "1GbE ms", "10GbE ms");
        for (int k = 0; k < CB_CASES; k++)
            for (int c = 0; c < CODEC_COUNT; c++) {
                const cb_result *r = &res[k][c];
                const double raw = (double)case_rows[k] * E * 4, hop = r->hop_enc_s + r->hop_dec_s;
                char cn[24];
                snprintf(cn, sizeof cn, k == 2 ? "%s %zu" : "%s", case_names[k], case_rows[k]);
                printf("%-11s %-9s %9.0f %6.3f %8.2f %8.2f %8.1f %10.3f %10.3f\n", cn,
                       codec_name(c), (double)r->bytes / (double)case_rows[k], (double)r->bytes / raw,
                       raw / r->enc_s * 1e-9, raw / r->dec_s * 1e-9, hop * 1e6,
                       (hop + (double)r->bytes / links[0]) * 1e3, (hop + (double)r->bytes / links[1]) * 1e3);
            }
        printf("\nquality vs f32 transport: logits of 32 tokens (|dl| / max|l| per row), greedy over %d steps\n",
               steps);
        printf("%-9s %12s %12s %10s %10s\n", "codec", "logit max", "logit mean", "greedy =", "first diff");
        for (int c = 0; c < CODEC_COUNT; c++)
            printf("%-9s %12.3g %12.3g %6d/%-3d %10d\n", codec_name(c), q[c].max_rel, q[c].mean_rel, q[c].same, steps,
                   q[c].first_diff);
    }
    rc = 0;
done:
    free(h), free(scratch), free(lref), free(l), free(tok), free(gref), free(g);
    fwd_ctx_free(p.ca), fwd_ctx_free(p.cb);
    kv_cache_free(p.kva), kv_cache_free(p.kvb);
    model_free(p.a), model_free(p.b);
    return rc;
}
BENCH_REGISTER(codec, "activation codecs: bytes per token, GB/s, hop cost on 1/10 GbE, effect on logits and tokens",
               "--model FILE [--split K] [--prompt N] [--steps S] [--seconds T]", bench_codec)
