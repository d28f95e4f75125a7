/* test_sampler.c - sampler correctness (exact + statistical) and stop strings. */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0;
#define CHECK(c, ...) do { if (!(c)) { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Reference: exact final distribution for small vocab, straightforward definition. */
static void ref_probs(const sampler_params *p, const float *lg, int n, double *out) {
    int ord[64];
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 0; i < n; i++) /* selection sort by (logit desc, id asc) */
        for (int j = i + 1; j < n; j++)
            if (lg[ord[j]] > lg[ord[i]] || (lg[ord[j]] == lg[ord[i]] && ord[j] < ord[i])) { int t = ord[i]; ord[i] = ord[j]; ord[j] = t; }
    int k = n;
    if (p->top_k > 0 && p->top_k < k) k = p->top_k;
    double pr[64], s = 0;
    for (int i = 0; i < k; i++) { pr[i] = exp((double)lg[ord[i]] / p->temperature); s += pr[i]; }
    for (int i = 0; i < k; i++) pr[i] /= s;
    if (p->top_p < 1.0f) {
        double c = 0; int kk = 0;
        while (kk < k) { c += pr[kk++]; if (c >= p->top_p - 1e-12) break; }
        k = kk;
    }
    if (p->min_p > 0.0f) {
        int kk = 1;
        while (kk < k && pr[kk] >= p->min_p * pr[0]) kk++;
        k = kk;
    }
    s = 0;
    for (int i = 0; i < k; i++) s += pr[i];
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < k; i++) out[ord[i]] = pr[i] / s;
}

/* Draw N samples over steps and compare with ref_probs: impossible tokens never
 * appear, each frequency within 5 sigma, chi-square below a generous bound. */
static void stat_case(const char *name, sampler_params p, const float *lg, int n, sampler_scratch *s) {
    enum { N = 20000 };
    double ex[64];
    int cnt[64] = {0};
    ref_probs(&p, lg, n, ex);
    for (int i = 0; i < N; i++) {
        int32_t t = sampler_sample(&p, lg, n, NULL, 0, (uint64_t)i, s, NULL);
        if (t < 0 || t >= n) { CHECK(0, "%s: bad token %d", name, t); return; }
        cnt[t]++;
    }
    double chi = 0; int df = -1;
    for (int i = 0; i < n; i++) {
        if (ex[i] == 0) { CHECK(cnt[i] == 0, "%s: token %d has p=0 but drawn %d times", name, i, cnt[i]); continue; }
        double e = ex[i] * N, sd = sqrt(N * ex[i] * (1 - ex[i])) + 1e-9;
        CHECK(fabs(cnt[i] - e) <= 5 * sd + 1, "%s: token %d count %d expected %.1f", name, i, cnt[i], e);
        chi += (cnt[i] - e) * (cnt[i] - e) / e; df++;
    }
    /* chi-square 99.99% quantile for df<=6 is < 28 */
    CHECK(chi < 28.0, "%s: chi-square %.2f (df %d)", name, chi, df);
    printf("  %-14s chi2=%6.2f df=%d  freq:", name, chi, df);
    for (int i = 0; i < n; i++) printf(" %.4f/%.4f", (double)cnt[i] / N, ex[i]);
    printf("\n");
}

static void test_greedy_penalties(sampler_scratch *s) {
    sampler_params p = sampler_defaults();
    float lg[4] = {1.0f, 3.0f, 3.0f, 2.0f};
    float lp = 1;
    CHECK(sampler_sample(&p, lg, 4, NULL, 0, 0, s, &lp) == 1, "greedy tie -> lowest id");
    double ref = -log(exp(1 - 3.0) + 1 + 1 + exp(2 - 3.0));
    CHECK(fabs(lp - ref) < 1e-5, "greedy logprob %f vs %f", lp, ref);

    /* repetition penalty, positive logit: 2/1.2 = 1.667 < 1.9 flips */
    float a[3] = {2.0f, 1.9f, -1.0f};
    int32_t h0[1] = {0};
    p.repetition_penalty = 1.2f;
    CHECK(sampler_sample(&p, a, 3, h0, 1, 0, s, &lp) == 1, "rep penalty flips");
    ref = -log(exp(2.0 / 1.2 - 1.9) + 1 + exp(-1 - 1.9));
    CHECK(fabs(lp - ref) < 1e-5, "rep logprob %f vs %f", lp, ref);
    p.repetition_penalty = 1.02f; /* 1.96 > 1.9: no flip */
    CHECK(sampler_sample(&p, a, 3, h0, 1, 0, s, NULL) == 0, "small rep penalty no flip");
    /* negative logit multiplied */
    float b[2] = {-1.0f, -1.1f};
    p.repetition_penalty = 2.0f;
    CHECK(sampler_sample(&p, b, 2, h0, 1, 0, s, &lp) == 1, "rep penalty negative logit");
    ref = -log(1 + exp(-2.0 + 1.1));
    CHECK(fabs(lp - ref) < 1e-5, "neg rep logprob %f vs %f", lp, ref);

    /* frequency: 5 - 3*0.2 = 4.4 < 4.5 flips; 5 - 0.3 = 4.7 does not */
    p = sampler_defaults();
    float c[3] = {5.0f, 4.5f, 0.0f};
    int32_t h3[3] = {0, 0, 0};
    p.frequency_penalty = 0.2f;
    CHECK(sampler_sample(&p, c, 3, h3, 3, 0, s, &lp) == 1, "freq flips");
    ref = -log(exp(4.4 - 4.5) + 1 + exp(-4.5));
    CHECK(fabs(lp - ref) < 1e-5, "freq logprob %f vs %f", lp, ref);
    p.frequency_penalty = 0.1f;
    CHECK(sampler_sample(&p, c, 3, h3, 3, 0, s, NULL) == 0, "freq no flip");
    /* presence: counted once regardless of repeats */
    p = sampler_defaults();
    p.presence_penalty = 0.6f;
    CHECK(sampler_sample(&p, c, 3, h3, 3, 0, s, NULL) == 1, "presence flips");
    p.presence_penalty = 0.4f;
    CHECK(sampler_sample(&p, c, 3, h3, 3, 0, s, NULL) == 0, "presence counted once");
    /* penalty_last_n: token 0 out of the window */
    int32_t hw[3] = {0, 2, 2};
    p.presence_penalty = 0.6f;
    p.penalty_last_n = 2;
    CHECK(sampler_sample(&p, c, 3, hw, 3, 0, s, NULL) == 0, "last_n excludes old token");
    p.penalty_last_n = 3;
    CHECK(sampler_sample(&p, c, 3, hw, 3, 0, s, NULL) == 1, "last_n includes token");
    /* scratch counts must be clean for the next call: same call twice */
    CHECK(sampler_sample(&p, c, 3, hw, 3, 0, s, NULL) == 1, "repeat call same result");
    /* penalties apply before temperature: sampled logprob of the only finite token */
    p = sampler_defaults();
    p.temperature = 0.7f; p.frequency_penalty = 0.5f; p.seed = 9;
    float d[3] = {1.0f, 1.0f, 0.0f};
    int32_t h1[2] = {1, 1};
    double e0 = exp(1.0 / 0.7), e1 = exp(0.0 / 0.7), e2 = exp(0.0);
    int32_t t = sampler_sample(&p, d, 3, h1, 2, 3, s, &lp);
    double pe = (t == 0 ? e0 : t == 1 ? e1 : e2) / (e0 + e1 + e2);
    CHECK(t >= 0 && fabs(lp - log(pe)) < 1e-5, "sampled logprob with penalty %f vs %f", lp, log(pe));
}

static void test_stats(sampler_scratch *s) {
    float lg[6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
    sampler_params p = sampler_defaults();
    p.seed = 1234;
    p.temperature = 1.0f; stat_case("T=1", p, lg, 6, s);
    p.temperature = 0.5f; stat_case("T=0.5", p, lg, 6, s);
    p.temperature = 2.0f; stat_case("T=2", p, lg, 6, s);
    p.temperature = 1.0f; p.top_k = 3; stat_case("top_k=3", p, lg, 6, s);
    p.top_k = 0; p.top_p = 0.8f; stat_case("top_p=0.8", p, lg, 6, s);
    /* T=1 probs: .5236 .1926 .1168 .0708 .0261 .0035 -> nucleus {0,1,2} (cum .8330) */
    double ex[64]; ref_probs(&p, lg, 6, ex);
    CHECK(ex[2] > 0 && ex[3] == 0, "top_p nucleus is {0,1,2}");
    /* tight boundary: cum(0,1) = .7672 >= .76 -> nucleus {0,1} exactly */
    p.top_p = 0.76f; stat_case("top_p=0.76", p, lg, 6, s);
    ref_probs(&p, lg, 6, ex);
    CHECK(ex[1] > 0 && ex[2] == 0, "top_p=0.76 nucleus is {0,1}");
    p.top_p = 1.0f; p.min_p = 0.2f; stat_case("min_p=0.2", p, lg, 6, s);
    ref_probs(&p, lg, 6, ex); /* p_i/p0 >= .2: ids 0,1,2 (e^-1.5=.223), not 3 (e^-2) */
    CHECK(ex[2] > 0 && ex[3] == 0, "min_p set is {0,1,2}");
    p.min_p = 0.0f; p.temperature = 2.0f; p.top_k = 4; p.top_p = 0.9f; stat_case("T2 k4 p.9", p, lg, 6, s);
    /* ties: equal logits must be equally likely */
    float tie[4] = {1.0f, 1.0f, 1.0f, -2.0f};
    p = sampler_defaults(); p.temperature = 1.0f; p.seed = 7; stat_case("ties", p, tie, 4, s);
    p.top_k = 2; stat_case("ties k=2", p, tie, 4, s); /* keeps ids 0,1 */
}

/* top-p stops at the first prefix whose mass reaches top_p * total (>=, not >):
 * with an exact tie at the boundary the tied-but-later token is cut. */
static void test_top_p_boundary(sampler_scratch *s) {
    /* {1, 1, -inf}: token 0 holds exactly half of the mass (1 of 2, both exact) */
    float half[3] = {1.0f, 1.0f, -INFINITY};
    /* {1, 1, 1, 1} at 0.5: the first two hold exactly half */
    float four[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    /* {1, 1, -5}: token 0 holds 1 / (2 + e^-6) = .49938 < .5, so token 1 is kept too */
    float near[3] = {1.0f, 1.0f, -5.0f};
    int cnt_half[3] = {0}, cnt_four[4] = {0}, cnt_near[3] = {0};
    sampler_params p = sampler_defaults();
    p.temperature = 1.0f;
    p.top_p = 0.5f;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        p.seed = seed * 0x9e3779b97f4a7c15ull;
        for (uint64_t step = 0; step < 40; step++) {
            int32_t t = sampler_sample(&p, half, 3, NULL, 0, step, s, NULL);
            if (t >= 0 && t < 3) cnt_half[t]++;
            else CHECK(0, "top_p boundary {1,1,-inf}: bad token %d", t);
            t = sampler_sample(&p, four, 4, NULL, 0, step, s, NULL);
            if (t >= 0 && t < 4) cnt_four[t]++;
            else CHECK(0, "top_p boundary {1,1,1,1}: bad token %d", t);
            t = sampler_sample(&p, near, 3, NULL, 0, step, s, NULL);
            if (t >= 0 && t < 3) cnt_near[t]++;
            else CHECK(0, "top_p boundary {1,1,-5}: bad token %d", t);
        }
    }
    CHECK(cnt_half[0] == 2000 && cnt_half[1] == 0,
          "top_p=0.5 on {1,1,-inf}: token 0 drawn %d, token 1 %d of 2000 times; only token 0 may be drawn",
          cnt_half[0], cnt_half[1]);
    CHECK(cnt_four[0] > 0 && cnt_four[1] > 0 && cnt_four[2] == 0 && cnt_four[3] == 0,
          "top_p=0.5 on {1,1,1,1}: counts %d %d %d %d; only tokens 0 and 1 may be drawn", cnt_four[0], cnt_four[1],
          cnt_four[2], cnt_four[3]);
    CHECK(cnt_near[0] > 0 && cnt_near[1] > 0 && cnt_near[2] == 0,
          "top_p=0.5 on {1,1,-5}: counts %d %d %d; tokens 0 and 1 (mass .499 each), never 2", cnt_near[0],
          cnt_near[1], cnt_near[2]);
}

static const float *g_lg;
/* qsort comparator: (logit desc, id asc). */
static int cmp_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_lg[x] != g_lg[y]) return g_lg[x] > g_lg[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void test_determinism_and_large(void) {
    enum { V = 152064 };
    float *lg = malloc(V * sizeof *lg), *masked = malloc(V * sizeof *lg);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < V; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        lg[i] = (float)((int)(x % 2000) - 1000) / 100.0f; /* many ties */
    }
    sampler_scratch *s1 = sampler_scratch_new(V), *s2 = sampler_scratch_new(V);
    sampler_params p = sampler_defaults();
    p.temperature = 0.8f; p.top_k = 40; p.top_p = 0.95f; p.seed = 5;
    /* reference top-40 by a plain full sort of all ids by (logit desc, id asc) */
    int32_t *all = malloc(V * sizeof *all);
    for (int i = 0; i < V; i++) all[i] = i;
    g_lg = lg;
    qsort(all, V, sizeof *all, cmp_desc);
    int32_t top[40];
    for (int j = 0; j < 40; j++) top[j] = all[j];
    for (int i = 0; i < V; i++) masked[i] = -INFINITY;
    for (int j = 0; j < 40; j++) masked[top[j]] = lg[top[j]];
    sampler_params pm = p; pm.top_k = 0;
    int same = 0, diffseed = 0;
    int32_t hist[3] = {top[0], top[0], 17};
    p.repetition_penalty = 1.0f;
    for (int st = 0; st < 200; st++) {
        float l1, l2;
        int32_t a = sampler_sample(&p, lg, V, NULL, 0, (uint64_t)st, s1, &l1);
        int32_t b = sampler_sample(&pm, masked, V, NULL, 0, (uint64_t)st, s2, &l2);
        int in = 0;
        for (int j = 0; j < 40; j++) if (top[j] == a) in = 1;
        CHECK(in, "token %d outside top-40", a);
        if (a == b && l1 == l2) same++;
        /* scratch reuse (s2 just held other data) gives the same token */
        int32_t c = sampler_sample(&p, lg, V, NULL, 0, (uint64_t)st, s2, NULL);
        CHECK(a == c, "scratch reuse changed token at step %d", st);
        sampler_params q = p; q.seed = 6;
        if (sampler_sample(&q, lg, V, NULL, 0, (uint64_t)st, s1, NULL) != a) diffseed++;
        /* with history: repeated calls identical */
        p.frequency_penalty = 0.3f;
        int32_t h1 = sampler_sample(&p, lg, V, hist, 3, (uint64_t)st, s1, NULL);
        int32_t h2 = sampler_sample(&p, lg, V, hist, 3, (uint64_t)st, s2, NULL);
        CHECK(h1 == h2 && h1 >= 0, "penalized repeat differs");
        p.frequency_penalty = 0.0f;
    }
    CHECK(same == 200, "partial top-k differs from masked full sort: %d/200 identical", same);
    CHECK(diffseed > 100, "different seeds too similar: %d/200 differ", diffseed);
    printf("  large vocab: top-k partial == masked full %d/200, seed 5 vs 6 differ %d/200\n", same, diffseed);
    /* top-p / min-p without top-k take a prefix popped from a heap, not a full sort: every
     * draw lies in the reference prefix of the full sort, and the draws spread over it */
    for (int mode = 0; mode < 2; mode++) {
        sampler_params pp = sampler_defaults();
        pp.temperature = 0.8f; pp.seed = 11;
        if (mode == 0) pp.top_p = 0.3f; else pp.min_p = 0.5f;
        double tot = 0.0, m = (double)lg[all[0]] / pp.temperature;
        for (int i = 0; i < V; i++) tot += exp((double)lg[i] / pp.temperature - m);
        int kref = 0;
        for (double c = 0.0; kref < V;) {
            double q = exp((double)lg[all[kref]] / pp.temperature - m);
            if (mode == 1 && kref > 0 && q < pp.min_p) break;
            c += q; kref++;
            if (mode == 0 && c >= pp.top_p * tot) break;
        }
        char *inref = calloc(V, 1);
        for (int j = 0; j < kref; j++) inref[all[j]] = 1;
        int outside = 0, distinct = 0;
        char *seen = calloc(V, 1);
        for (int st = 0; st < 400; st++) {
            int32_t a = sampler_sample(&pp, lg, V, NULL, 0, (uint64_t)st, s1, NULL);
            if (a < 0 || !inref[a]) outside++;
            else if (!seen[a]++) distinct++;
        }
        CHECK(outside == 0, "%s: %d of 400 draws outside the reference prefix of %d", mode ? "min_p" : "top_p",
              outside, kref);
        CHECK(distinct > (kref < 100 ? kref / 2 : 50), "%s: only %d distinct draws from a prefix of %d",
              mode ? "min_p" : "top_p", distinct, kref);
        printf("  large vocab %s: prefix of %d, 400 draws inside it, %d distinct\n", mode ? "min_p=0.5" : "top_p=0.3",
               kref, distinct);
        free(inref); free(seen);
    }
    free(all);
    /* greedy on the large vocab: lowest id among the maxima */
    p = sampler_defaults();
    CHECK(sampler_sample(&p, lg, V, NULL, 0, 0, s1, NULL) == top[0], "large greedy");
    sampler_scratch_free(s1); sampler_scratch_free(s2);
    free(lg); free(masked);
}

static void test_invalid(sampler_scratch *s) {
    float lg[3] = {0, 1, 2};
    sampler_params p = sampler_defaults();
    CHECK(sampler_sample(&p, lg, 0, NULL, 0, 0, s, NULL) == -1, "n_vocab 0");
    CHECK(sampler_sample(&p, lg, -3, NULL, 0, 0, s, NULL) == -1, "n_vocab <0");
    CHECK(sampler_sample(NULL, lg, 3, NULL, 0, 0, s, NULL) == -1, "NULL params");
    CHECK(sampler_sample(&p, NULL, 3, NULL, 0, 0, s, NULL) == -1, "NULL logits");
    CHECK(sampler_sample(&p, lg, 3, NULL, 0, 0, NULL, NULL) == -1, "NULL scratch");
    CHECK(sampler_sample(&p, lg, 1000, NULL, 0, 0, s, NULL) == -1, "scratch too small");
    float nanl[3] = {0, NAN, 1};
    CHECK(sampler_sample(&p, nanl, 3, NULL, 0, 0, s, NULL) == -1, "NaN logit");
    float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(sampler_sample(&p, ninf, 3, NULL, 0, 0, s, NULL) == -1, "all -inf");
    p.temperature = 1; p.top_p = -0.1f;
    CHECK(sampler_sample(&p, lg, 3, NULL, 0, 0, s, NULL) == -1, "top_p<0");
    p.top_p = NAN;
    CHECK(sampler_sample(&p, lg, 3, NULL, 0, 0, s, NULL) == -1, "top_p NaN");
    p = sampler_defaults(); p.repetition_penalty = 0;
    CHECK(sampler_sample(&p, lg, 3, NULL, 0, 0, s, NULL) == -1, "rep penalty 0");
    p = sampler_defaults();
    int32_t bad[2] = {1, 7};
    CHECK(sampler_sample(&p, lg, 3, bad, 2, 0, s, NULL) == -1, "history id out of range");
    CHECK(sampler_sample(&p, lg, 3, NULL, 2, 0, s, NULL) == -1, "NULL history");
    CHECK(sampler_scratch_new(0) == NULL, "scratch_new(0)");
    /* -inf tokens are never sampled; top_p = 0 keeps the best token */
    float part[3] = {-INFINITY, 0.0f, 0.0f};
    p.temperature = 1; p.seed = 3;
    for (int i = 0; i < 200; i++) CHECK(sampler_sample(&p, part, 3, NULL, 0, (uint64_t)i, s, NULL) != 0, "-inf drawn");
    p.top_p = 0.0f;
    for (int i = 0; i < 50; i++) CHECK(sampler_sample(&p, lg, 3, NULL, 0, (uint64_t)i, s, NULL) == 2, "top_p 0 -> best");
}

/* Feed chunks; collect emitted text; returns stop flag. */
static int run_stop(const char *const *stops, int ns, const char *const *chunks, int nc, char *got, int *stop_at) {
    stop_matcher *m = stop_matcher_new(stops, ns);
    got[0] = 0;
    int st = 0;
    *stop_at = -1;
    for (int i = 0; i < nc; i++) {
        const char *o; size_t ol;
        int r = stop_matcher_feed(m, chunks[i], strlen(chunks[i]), &o, &ol);
        strncat(got, o, ol);
        if (r) { st = 1; *stop_at = i; break; }
    }
    if (!st) {
        const char *o; size_t ol;
        stop_matcher_flush(m, &o, &ol);
        strncat(got, o, ol);
    }
    stop_matcher_free(m);
    return st;
}

static void test_stop(void) {
    char got[256]; int at;
    { const char *st[] = {"</end>"}; const char *ch[] = {"hello <", "/en", "d> world"};
      CHECK(run_stop(st, 1, ch, 3, got, &at) == 1 && at == 2 && strcmp(got, "hello ") == 0, "span 3 chunks: '%s'", got); }
    { /* held text is released when the prefix breaks */
      stop_matcher *m = stop_matcher_new((const char *const[]){"STOP"}, 1);
      const char *o; size_t ol;
      CHECK(stop_matcher_feed(m, "abST", 4, &o, &ol) == 0 && ol == 2 && memcmp(o, "ab", 2) == 0, "holds 'ST'");
      CHECK(stop_matcher_feed(m, "x", 1, &o, &ol) == 0 && ol == 3 && memcmp(o, "STx", 3) == 0, "releases 'STx'");
      CHECK(stop_matcher_feed(m, "S", 1, &o, &ol) == 0 && ol == 0, "holds S");
      stop_matcher_flush(m, &o, &ol);
      CHECK(ol == 1 && o[0] == 'S', "flush returns held text");
      stop_matcher_free(m); }
    { const char *st[] = {"abc", "ab"}; const char *ch[] = {"xxa", "bc"};
      CHECK(run_stop(st, 2, ch, 2, got, &at) == 1 && strcmp(got, "xx") == 0, "overlap ab/abc: '%s'", got); }
    { const char *st[] = {"abc", "bd"}; const char *ch[] = {"xab", "d tail"};
      CHECK(run_stop(st, 2, ch, 2, got, &at) == 1 && strcmp(got, "xa") == 0, "later-starting stop: '%s'", got); }
    { const char *st[] = {"STOP"}; const char *ch[] = {"before STOP after"};
      CHECK(run_stop(st, 1, ch, 1, got, &at) == 1 && strcmp(got, "before ") == 0, "inside one chunk: '%s'", got); }
    { const char *st[] = {"zz", "STOP"}; const char *ch[] = {"a STOP b zz"};
      CHECK(run_stop(st, 2, ch, 1, got, &at) == 1 && strcmp(got, "a ") == 0, "earliest of several: '%s'", got); }
    { const char *st[] = {"\xe3\x80\x82\xe7\xb5\x82"}; /* "。終" */
      const char *ch[] = {"\xe6\x97\xa5\xe6\x9c\xac\xe3\x80", "\x82", "\xe7\xb5", "\x82!"};
      CHECK(run_stop(st, 1, ch, 4, got, &at) == 1 && at == 3 && strcmp(got, "\xe6\x97\xa5\xe6\x9c\xac") == 0, "utf8 split bytes"); }
    { const char *st[] = {"\xe3\x80\x82\xe7\xb5\x82"}; const char *ch[] = {"\xe3\x80\x82", "\xe3\x80\x82ok"};
      CHECK(run_stop(st, 1, ch, 2, got, &at) == 0 && strcmp(got, "\xe3\x80\x82\xe3\x80\x82ok") == 0, "utf8 no match passes through"); }
    { const char *st[] = {"<|im_end|>"}; const char *ch[] = {"no ", "stop ", "here <|im", "_"};
      CHECK(run_stop(st, 1, ch, 4, got, &at) == 0 && strcmp(got, "no stop here <|im_") == 0, "no stop, flush: '%s'", got); }
    { const char *ch[] = {"a", "b"};
      CHECK(run_stop(NULL, 0, ch, 2, got, &at) == 0 && strcmp(got, "ab") == 0, "no stops"); }
    { /* after a stop, further feeds stay stopped and emit nothing */
      stop_matcher *m = stop_matcher_new((const char *const[]){"x"}, 1);
      const char *o; size_t ol;
      CHECK(stop_matcher_feed(m, "ax", 2, &o, &ol) == 1 && ol == 1, "stop");
      CHECK(stop_matcher_feed(m, "more", 4, &o, &ol) == 1 && ol == 0, "stays stopped");
      stop_matcher_flush(m, &o, &ol);
      CHECK(ol == 0, "flush after stop empty");
      stop_matcher_free(m); }
}

/* sampler_token_logprob: the log-softmax of the raw logits at one token against a
 * long-double reference, its invariance to a shift of all logits, agreement
 * with the greedy sampler's logprob of its pick, and refusals. */
static void test_token_logprob(sampler_scratch *s) {
    enum { V = 1001 };
    float lg[V];
    uint64_t x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        lg[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 24.0 - 12.0);
    }
    long double m = lg[0], sum = 0;
    for (int i = 0; i < V; i++) if (lg[i] > m) m = lg[i];
    for (int i = 0; i < V; i++) sum += expl((long double)lg[i] - m);
    double worst = 0;
    for (int t = 0; t < V; t += 37) {
        float lp;
        CHECK(sampler_token_logprob(lg, V, t, &lp) == 0, "token %d refused", t);
        long double ref = ((long double)lg[t] - m) - logl(sum);
        double err = fabs((double)(lp - ref)) / fabs((double)ref);
        if (err > worst) worst = err;
    }
    CHECK(worst < 1e-6, "relative error %.3g against the long-double reference", worst);
    /* greedy pick: its logprob from sampler_sample is the same log-softmax */
    sampler_params p = sampler_defaults();
    p.temperature = 0;
    p.repetition_penalty = 1;
    sampler_scratch *big = sampler_scratch_new(V);
    float lp_s = 0, lp_t = 1;
    int32_t best = sampler_sample(&p, lg, V, NULL, 0, 0, big, &lp_s);
    CHECK(best >= 0 && sampler_token_logprob(lg, V, best, &lp_t) == 0 && lp_s == lp_t,
          "greedy pick %d: sampler logprob %.9g, token_logprob %.9g", (int)best, lp_s, lp_t);
    sampler_scratch_free(big);
    /* refusals: token out of range, NaN or +inf logits, all -inf */
    float lp;
    CHECK(sampler_token_logprob(lg, V, -1, &lp) == -1 && sampler_token_logprob(lg, V, V, &lp) == -1, "token range");
    float bad[3] = {0, NAN, 1}, inf[3] = {0, INFINITY, 1}, ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK(sampler_token_logprob(bad, 3, 0, &lp) == -1, "NaN logit accepted");
    CHECK(sampler_token_logprob(inf, 3, 0, &lp) == -1, "+inf logit accepted");
    CHECK(sampler_token_logprob(ninf, 3, 0, &lp) == -1, "all -inf accepted");
    float one[3] = {-INFINITY, 2, -INFINITY};
    CHECK(sampler_token_logprob(one, 3, 1, &lp) == 0 && lp == 0.0f, "the only finite logit: log p = %g", lp);
    CHECK(sampler_token_logprob(one, 3, 0, &lp) == 0 && lp == -INFINITY, "a -inf logit: log p = %g", lp);
    (void)s;
}

int main(void) {
    sampler_scratch *s = sampler_scratch_new(64);
    printf("greedy + penalties\n"); test_greedy_penalties(s);
    printf("statistics (20000 draws each)\n"); test_stats(s);
    printf("top-p boundary\n"); test_top_p_boundary(s);
    printf("large vocab / determinism\n"); test_determinism_and_large();
    printf("invalid input\n"); test_invalid(s);
    printf("token log-probability (prompt scoring)\n"); test_token_logprob(s);
    printf("stop strings\n"); test_stop();
    sampler_scratch_free(s);
    printf(g_fail ? "test_sampler: %d FAILED\n" : "test_sampler: all passed\n", g_fail);
    return g_fail ? 1 : 0;
}
