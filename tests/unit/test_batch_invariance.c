/* test_batch_invariance.c - a token's hidden state and logits do not depend on how
 * it was batched (issue 4, point 5).
 *
 * Models: `baton-mkmodel --preset tiny` in q8_0 and q4_k_m (Q4_K + Q6_K), then
 * issue 22's types in FAST with an f16 cache: q2_k_mix, q3_k_l (Q2_K, Q3_K,
 * Q5_K), iq4_xs, q5_1, q4_1, q5_0, iq4_nl (under the sanitizers only q3_k_l and
 * q5_1: test_kernels covers every type's kernels there), with a vocabulary of 509 so the head has a ragged last row tile.
 * Prompt: 80 tokens.
 * For every dispatch level this CPU has, in FAST and EXACT precision, with an f16
 * and a q8_0 KV cache (and f32 in FAST), the reference is the whole prompt in one batch on one
 * thread; then, compared with memcmp token by token - the hidden state after the
 * last layer (before the output norm) and the logits of every position:
 *   - prefill in chunks of 1 (decode), 7, 64 and all, with 1 and 2 threads;
 *   - the prompt in slot 2, interleaved token by token with two other sequences
 *     (slots 0 and 1, other prompts, other lengths) in batches of varying size;
 *   - across levels: every level's reference == the scalar reference.
 * The q8_0 cache's logit error against the f16 cache's is printed (and bounded).
 * Sanity: the reference depends on the prompt (another prompt changes it), so
 * the comparisons cannot pass on constant output.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "model.h"
#include "ops.h"

#include "check.h"

#define N_PROMPT 80
#define N_SEQ 3   /* slots: 0 and 1 hold other sequences, 2 the prompt under test */
#define MAX_BATCH 256
#define TINY_EMBD 256 /* --preset tiny */
#define TINY_VOCAB 509

static char g_dir[256], g_mk[4096];

/* The hidden states and logits of every position of one sequence. */
typedef struct {
    float *hidden; /* [N_PROMPT][n_embd] */
    float *logits; /* [N_PROMPT][n_vocab] */
} run_out;

static uint64_t rng_state;
static uint32_t rng_next(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void make_prompt(int32_t *tok, int n, uint64_t seed, uint32_t vocab) {
    rng_state = seed;
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(rng_next() % vocab);
}

typedef struct {
    const model *m;
    kv_cache *kv;
    fwd_ctx *ctx;
    float *hidden, *logits; /* batch buffers */
} runner;

/* One forward_run on a batch of n tokens (all want logits); copies the rows of slot
 * `keep` into out at their positions. 0 or -1. */
static int run_batch(runner *r, int n, const int32_t *tok, const int32_t *slot, const int32_t *pos, int keep,
                     run_out *out) {
    const int E = (int)r->m->hp.n_embd, V = (int)r->m->hp.n_vocab;
    uint8_t want[MAX_BATCH];
    memset(want, 1, sizeof want);
    fwd_batch b = {.n = n, .tokens = tok, .slot = slot, .pos = pos, .logits = want};
    char err[256];
    int nl = forward_run(r->ctx, r->kv, &b, r->hidden, r->logits, err, sizeof err);
    if (nl != n) {
        fprintf(stderr, "forward_run: %s\n", nl < 0 ? err : "wrong number of logit rows");
        return -1;
    }
    for (int t = 0; t < n; t++) {
        if (slot[t] != keep) continue;
        memcpy(out->hidden + (size_t)pos[t] * E, r->hidden + (size_t)t * E, sizeof(float) * E);
        memcpy(out->logits + (size_t)pos[t] * V, r->logits + (size_t)t * V, sizeof(float) * V);
    }
    return 0;
}

/* The prompt alone in slot 2, in chunks of `chunk` tokens. */
static int run_chunked(runner *r, const int32_t *prompt, int chunk, run_out *out) {
    int32_t slot[MAX_BATCH], pos[MAX_BATCH];
    for (int p0 = 0; p0 < N_PROMPT; p0 += chunk) {
        int n = N_PROMPT - p0 < chunk ? N_PROMPT - p0 : chunk;
        for (int i = 0; i < n; i++) slot[i] = 2, pos[i] = p0 + i;
        if (run_batch(r, n, prompt + p0, slot, pos, 2, out)) return -1;
    }
    return 0;
}

/* The prompt in slot 2 interleaved token by token with two other sequences (slot
 * 0: 100 tokens, slot 1: 37), each batch taking a varying number of tokens from
 * each sequence that still has some. */
static int run_interleaved(runner *r, const int32_t *prompt, const int32_t *other0, const int32_t *other1,
                           run_out *out) {
    static const int lens[N_SEQ] = {100, 37, N_PROMPT};
    const int32_t *seqs[N_SEQ] = {other0, other1, prompt};
    static const int takes[] = {3, 1, 9, 4, 13, 2, 6};
    int done[N_SEQ] = {0};
    int32_t tok[MAX_BATCH], slot[MAX_BATCH], pos[MAX_BATCH];
    for (int step = 0;; step++) {
        int take[N_SEQ], n = 0, left = 0;
        for (int s = 0; s < N_SEQ; s++) {
            int want = takes[(step + 2 * s) % 7];
            take[s] = lens[s] - done[s] < want ? lens[s] - done[s] : want;
            left += lens[s] - done[s];
        }
        if (!left) break;
        /* round robin, one token of each sequence in turn, so slot 2's tokens sit
         * at different batch indices every time */
        for (int i = 0; n < take[0] + take[1] + take[2]; i++)
            for (int s = 0; s < N_SEQ; s++)
                if (i < take[s]) tok[n] = seqs[s][done[s] + i], slot[n] = s, pos[n] = done[s] + i, n++;
        if (run_batch(r, n, tok, slot, pos, 2, out)) return -1;
        for (int s = 0; s < N_SEQ; s++) done[s] += take[s];
    }
    return 0;
}

/* memcmp of every position's hidden state (E floats) and logits (V floats). */
static int same(const run_out *a, const run_out *b, size_t E, size_t V, const char *what) {
    for (int p = 0; p < N_PROMPT; p++) {
        if (memcmp(a->hidden + p * E, b->hidden + p * E, E * sizeof(float))) {
            CHECK(0, "%s: hidden state of position %d differs", what, p);
            return 0;
        }
        if (memcmp(a->logits + p * V, b->logits + p * V, V * sizeof(float))) {
            CHECK(0, "%s: logits of position %d differ", what, p);
            return 0;
        }
    }
    checks++;
    return 1;
}

static run_out out_new(const model *m) {
    run_out o = {malloc(sizeof(float) * N_PROMPT * m->hp.n_embd), malloc(sizeof(float) * N_PROMPT * m->hp.n_vocab)};
    if (!o.hidden || !o.logits) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(o.hidden, 0, sizeof(float) * N_PROMPT * m->hp.n_embd);
    memset(o.logits, 0, sizeof(float) * N_PROMPT * m->hp.n_vocab);
    return o;
}

static void out_free(run_out *o) {
    free(o->hidden);
    free(o->logits);
}

/* Every variant at the current level and precision against the one-batch,
 * one-thread reference, which is returned in *ref. */
static void check_level(const char *path, uint32_t kv_type, const char *tag, run_out *ref_out) {
    char err[256];
    model *m = model_load(path, &(model_slice){0, -1, true, true}, err, sizeof err); /* packs for this level */
    if (!m) {
        CHECK(0, "%s: %s", path, err);
        return;
    }
    CHECK(m->hp.n_embd == TINY_EMBD && m->hp.n_vocab == TINY_VOCAB, "%s: n_embd %u n_vocab %u", path, m->hp.n_embd,
          m->hp.n_vocab);
    runner r = {m, kv_cache_new(m, N_SEQ, 128, kv_type, err, sizeof err), fwd_ctx_new(m, MAX_BATCH),
                malloc(sizeof(float) * MAX_BATCH * m->hp.n_embd), malloc(sizeof(float) * MAX_BATCH * m->hp.n_vocab)};
    if (!r.kv || !r.ctx || !r.hidden || !r.logits) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    int32_t prompt[N_PROMPT], other0[100], other1[37], prompt2[N_PROMPT];
    make_prompt(prompt, N_PROMPT, 0x1234567u, m->hp.n_vocab);
    make_prompt(other0, 100, 0xabcdefu, m->hp.n_vocab);
    make_prompt(other1, 37, 0x777u, m->hp.n_vocab);
    memcpy(prompt2, prompt, sizeof prompt);
    prompt2[N_PROMPT / 2] = (prompt2[N_PROMPT / 2] + 1) % (int32_t)m->hp.n_vocab;

    run_out ref = out_new(m), got = out_new(m);
    kern_init(1);
    CHECK(run_chunked(&r, prompt, N_PROMPT, &ref) == 0, "%s: reference run failed", tag);

    /* sanity: the output depends on the input, and is finite and not constant */
    CHECK(run_chunked(&r, prompt2, N_PROMPT, &got) == 0, "%s: run failed", tag);
    const size_t E = m->hp.n_embd;
    CHECK(!memcmp(ref.hidden, got.hidden, E * sizeof(float) * (N_PROMPT / 2)), "%s: causality: positions before a "
          "changed token changed", tag);
    CHECK(memcmp(ref.hidden + E * (N_PROMPT - 1), got.hidden + E * (N_PROMPT - 1), E * sizeof(float)),
          "%s: changing a token did not change the last hidden state", tag);
    int finite = 1, varied = 0;
    for (size_t i = 0; i < N_PROMPT * E; i++) finite &= isfinite(ref.hidden[i]), varied |= ref.hidden[i] != ref.hidden[0];
    CHECK(finite && varied, "%s: hidden states are not finite, or constant", tag);

    static const int chunks[] = {1, 7, 64, N_PROMPT};
    char what[256];
    for (int th = 1; th <= 2; th++) {
        kern_init(th);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            snprintf(what, sizeof what, "%s, chunks of %d, %d thread(s)", tag, chunks[c], th);
            if (run_chunked(&r, prompt, chunks[c], &got) == 0) same(&ref, &got, m->hp.n_embd, m->hp.n_vocab, what);
            else CHECK(0, "%s: run failed", what);
        }
        snprintf(what, sizeof what, "%s, interleaved with 2 other sequences, %d thread(s)", tag, th);
        if (run_interleaved(&r, prompt, other0, other1, &got) == 0) same(&ref, &got, m->hp.n_embd, m->hp.n_vocab, what);
        else CHECK(0, "%s: run failed", what);
    }
    kern_init(1);
    *ref_out = ref;
    out_free(&got);
    free(r.hidden);
    free(r.logits);
    fwd_ctx_free(r.ctx);
    kv_cache_free(r.kv);
    model_free(m);
}

/* Generate a tiny model of `type` under g_dir; 0 or -1. */
static int make_model(const char *type, char *path, size_t len) {
    snprintf(path, len, "%s/tiny-%s.gguf", g_dir, type);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --vocab %d --type %s -o '%s' >/dev/null", g_mk, TINY_VOCAB, type, path);
    return system(cmd) == 0 ? 0 : -1;
}

#define MAX_RUNS 8 /* levels of the table, + AMX once more */

int main(void) {
    const char *build = getenv("BATON_BUILD");
    if (!build) {
        fprintf(stderr, "test_batch_invariance: BATON_BUILD is not set\n");
        return 1;
    }
    snprintf(g_mk, sizeof g_mk, "%s/tools/baton-mkmodel", build);
    snprintf(g_dir, sizeof g_dir, "/tmp/test_batch_invariance.XXXXXX");
    if (access(g_mk, X_OK) != 0 || !mkdtemp(g_dir)) {
        fprintf(stderr, "test_batch_invariance: %s is not built, or no temporary folder\n", g_mk);
        return 1;
    }
    unsetenv("BATON_ISA"); /* kern_init would re-apply it; the test sets levels itself */
    setenv("BATON_AMX_EMULATE", "1", 1); /* the AMX level on its emulator wherever AVX-512 runs */
    unsetenv("BATON_THREADS");
    kern_init(1);
    kern_level best = kern_best_level();
    printf("test_batch_invariance: CPU %s; levels up to %s\n", kern_cpu_features(), kern_level_name(best));
    /* issue 22's types after the first two, in FAST (their own kernels) with an f16 cache: q2_k_mix
     * (Q2_K, Q3_K, Q4_K, Q6_K) and q3_k_l (Q3_K, Q5_K, Q6_K) hold the new k-quants; under the
     * sanitizers (slower) one model each for the x256 and the x32 kernels */
    static const char *const types[] = {"q8_0", "q4_k_m", "q3_k_l", "q5_1",
#if !defined(__SANITIZE_ADDRESS__)
                                        "q2_k_mix", "iq4_xs", "q4_1", "q5_0", "iq4_nl"
#endif
    };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int issue22 = ti >= 2;
        char path[512];
        if (make_model(types[ti], path, sizeof path)) {
            CHECK(0, "cannot generate the %s model", types[ti]);
            continue;
        }
        for (int prec = 0; prec < (issue22 ? 1 : 2); prec++) {
            kern_set_precision(prec ? KERN_EXACT : KERN_FAST);
            /* KV formats: f16 and q8_0 in both precisions, f32 in FAST */
            static const uint32_t kvt[] = {TENSOR_F16, TENSOR_Q8_0, TENSOR_F32};
            static const char *const kvn[] = {"f16", "q8_0", "f32"};
            float *f16_logits = NULL;
            for (int kvi = 0; kvi < (issue22 ? 1 : prec ? 2 : 3); kvi++) {
                /* every level up to the best; AMX on its emulator and, with AMX, on the tiles too */
                run_out ref[MAX_RUNS] = {{0}};
                int n_runs = (int)best + 1 + (best == KERN_AMX && strstr(kern_cpu_features(), "amx-int8") ? 1 : 0);
                for (int l = 0; l < n_runs && l < MAX_RUNS; l++) {
                    kern_level lv = l <= (int)best ? (kern_level)l : KERN_AMX;
                    if (kern_set_level(lv)) continue;
                    setenv("BATON_AMX_EMULATE", l > (int)best ? "0" : "1", 1); /* read per call by the AMX level */
                    char tag[128];
                    snprintf(tag, sizeof tag, "%s %s%s %s, %s cache", types[ti], kern_level_name(lv),
                             lv == KERN_AMX ? (l > (int)best ? "(tiles)" : "(emulated)") : "", prec ? "exact" : "fast",
                             kvn[kvi]);
                    int before = failures;
                    check_level(path, kvt[kvi], tag, &ref[l]);
                    if (l > 0 && ref[0].hidden && ref[l].hidden) {
                        /* the levels reproduce the scalar arithmetic bit for bit */
                        char what[160];
                        snprintf(what, sizeof what, "%s vs scalar", tag);
                        same(&ref[0], &ref[l], TINY_EMBD, TINY_VOCAB, what);
                    }
                    printf("  %-36s %s\n", tag, failures == before ? "bit-identical" : "DIFFERS");
                }
                if (kvt[kvi] == TENSOR_F16 && ref[0].logits) {
                    f16_logits = malloc(sizeof(float) * N_PROMPT * TINY_VOCAB);
                    if (f16_logits) memcpy(f16_logits, ref[0].logits, sizeof(float) * N_PROMPT * TINY_VOCAB);
                }
                if (kvt[kvi] == TENSOR_Q8_0 && ref[0].logits && f16_logits) {
                    /* what the q8_0 cache costs: logits against the f16 cache's, every position */
                    double max_abs = 0, max_rel = 0;
                    for (int p = 0; p < N_PROMPT; p++) {
                        double amax = 0, dmax = 0;
                        for (int v = 0; v < TINY_VOCAB; v++) {
                            double a = f16_logits[p * TINY_VOCAB + v], b = ref[0].logits[p * TINY_VOCAB + v];
                            if (fabs(a) > amax) amax = fabs(a);
                            if (fabs(a - b) > dmax) dmax = fabs(a - b);
                        }
                        if (dmax > max_abs) max_abs = dmax;
                        if (amax > 0 && dmax / amax > max_rel) max_rel = dmax / amax;
                    }
                    printf("  %s %s: logits with a q8_0 KV cache vs f16, %d positions: max abs %.3e, max rel "
                           "(to the row's max|logit|) %.3e\n", types[ti], prec ? "exact" : "fast", N_PROMPT, max_abs,
                           max_rel);
                    CHECK(max_rel < 0.05, "%s: q8_0 KV logits off f16's by %.3e (relative)", types[ti], max_rel);
                    CHECK(max_abs > 0, "%s: q8_0 KV logits equal f16's: the cache format was not used", types[ti]);
                }
                for (int l = 0; l < MAX_RUNS; l++) out_free(&ref[l]);
                kern_set_level(best);
            }
            free(f16_logits);
        }
    }
    kern_set_precision(KERN_FAST);
    kern_shutdown();
    if (failures == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "test_batch_invariance: could not remove %s\n", g_dir);
    }
    printf("test_batch_invariance: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
