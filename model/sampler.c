/* sampler.c - reproducible token sampling and stop-string matching (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sampler_scratch {
    int32_t n_vocab;
    float *lg;      /* [n_vocab] penalized logits */
    int32_t *cnt;   /* [n_vocab] occurrences in the penalty window (kept all-zero between calls) */
    int32_t *ids;   /* [n_vocab] candidate ids (a heap or the top-k, see sampler_sample) */
    int32_t *ord;   /* [n_vocab] candidates popped best first for top-p / min-p */
    double *pr;     /* [n_vocab] unnormalized candidate probabilities */
};

/* The default parameters: greedy, every filter and penalty off, seed 0. */
sampler_params sampler_defaults(void) {
    sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.penalty_last_n = 0;
    p.seed = 0;
    return p;
}

/* Allocate scratch for vocabularies up to n_vocab; NULL if n_vocab <= 0 or out of memory. */
sampler_scratch *sampler_scratch_new(int32_t n_vocab) {
    if (n_vocab <= 0) return NULL;
    sampler_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n_vocab = n_vocab;
    s->lg = malloc((size_t)n_vocab * sizeof *s->lg);
    s->cnt = calloc((size_t)n_vocab, sizeof *s->cnt);
    s->ids = malloc((size_t)n_vocab * sizeof *s->ids);
    s->ord = malloc((size_t)n_vocab * sizeof *s->ord);
    s->pr = malloc((size_t)n_vocab * sizeof *s->pr);
    if (!s->lg || !s->cnt || !s->ids || !s->ord || !s->pr) {
        sampler_scratch_free(s);
        return NULL;
    }
    return s;
}

/* Free scratch (NULL is fine). */
void sampler_scratch_free(sampler_scratch *s) {
    if (!s) return;
    free(s->lg);
    free(s->cnt);
    free(s->ids);
    free(s->ord);
    free(s->pr);
    free(s);
}

/* splitmix64 finalizer: a bijective 64-bit mix. */
static uint64_t sampler_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Counter-based uniform double in [0,1) for (seed, step). */
static double sampler_uniform(uint64_t seed, uint64_t step) {
    uint64_t x = sampler_mix64(sampler_mix64(seed) ^ (step * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull));
    x = sampler_mix64(x);
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* 1 if candidate a ranks before b: (logit desc, id asc). */
static int sampler_before(const float *lg, int32_t a, int32_t b) {
    if (lg[a] != lg[b]) return lg[a] > lg[b];
    return a < b;
}

/* Sift-down in a heap of n ids: the worst candidate at the root (best = 0) or the best
 * (best = 1). */
static void sampler_heap_sift(const float *lg, int32_t *h, int32_t n, int32_t i, int best) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && sampler_before(lg, h[best ? l : w], h[best ? w : l])) w = l;
        if (r < n && sampler_before(lg, h[best ? r : w], h[best ? w : r])) w = r;
        if (w == i) return;
        int32_t t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void sampler_heap_down(const float *lg, int32_t *h, int32_t n, int32_t i) {
    sampler_heap_sift(lg, h, n, i, 0);
}

/* Sort ids[0..n) by (logit desc, id asc) with heapsort (deterministic, no recursion). */
static void sampler_sort(const float *lg, int32_t *ids, int32_t n) {
    for (int32_t i = n / 2 - 1; i >= 0; i--) sampler_heap_down(lg, ids, n, i);
    for (int32_t e = n - 1; e > 0; e--) {
        int32_t t = ids[0]; ids[0] = ids[e]; ids[e] = t;
        sampler_heap_down(lg, ids, e, 0);
    }
}

/* Fill ids with the best k candidates of ids[0..n) in order; returns k' = min(k, n).
 * ids[0..n) is overwritten. Uses a size-k heap: O(n log k). */
static int32_t sampler_top_k(const float *lg, int32_t *ids, int32_t n, int32_t k) {
    if (k >= n) {
        sampler_sort(lg, ids, n);
        return n;
    }
    for (int32_t i = k / 2 - 1; i >= 0; i--) sampler_heap_down(lg, ids, k, i);
    for (int32_t i = k; i < n; i++) {
        if (sampler_before(lg, ids[i], ids[0])) {
            ids[0] = ids[i];
            sampler_heap_down(lg, ids, k, 0);
        }
    }
    /* heap has the worst at the root: heapsort puts the best first */
    for (int32_t e = k - 1; e > 0; e--) {
        int32_t t = ids[0]; ids[0] = ids[e]; ids[e] = t;
        sampler_heap_down(lg, ids, e, 0);
    }
    return k;
}

/* Validate the parameters; 0 if usable. */
static int sampler_params_ok(const sampler_params *p) {
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p)) return -1;
    if (p->top_p < 0.0f || p->min_p > 1.0f) return -1;
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty)) return -1;
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty)) return -1;
    if (isinf(p->temperature)) return -1;
    return 0;
}

int32_t sampler_sample(const sampler_params *p, const float *logits, int32_t n_vocab,
                       const int32_t *history, int32_t n_history, uint64_t step,
                       sampler_scratch *s, float *logprob) {
    if (!p || !logits || n_vocab <= 0 || !s || s->n_vocab < n_vocab) return -1;
    if (n_history < 0 || (n_history > 0 && !history)) return -1;
    if (sampler_params_ok(p) != 0) return -1;
    for (int32_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (isnan(v) || v == INFINITY) return -1;
        s->lg[i] = v;
    }
    /* penalties over the last penalty_last_n history tokens */
    int32_t h0 = 0;
    if (p->penalty_last_n > 0 && n_history > p->penalty_last_n) h0 = n_history - p->penalty_last_n;
    for (int32_t i = h0; i < n_history; i++)
        if (history[i] < 0 || history[i] >= n_vocab) return -1;
    int pen = p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    if (pen) {
        for (int32_t i = h0; i < n_history; i++) s->cnt[history[i]]++;
        for (int32_t i = h0; i < n_history; i++) {
            int32_t t = history[i];
            int32_t c = s->cnt[t];
            if (c == 0) continue; /* already applied */
            float v = s->lg[t];
            if (p->repetition_penalty != 1.0f)
                v = v > 0.0f ? v / p->repetition_penalty : v * p->repetition_penalty;
            v -= p->presence_penalty + p->frequency_penalty * (float)c;
            s->lg[t] = v;
            s->cnt[t] = 0;
        }
    }
    const float *lg = s->lg;

    if (!(p->temperature > 0.0f)) {
        /* greedy; logprob = log softmax of the penalized logits */
        int32_t best = -1;
        for (int32_t i = 0; i < n_vocab; i++)
            if (lg[i] != -INFINITY && (best < 0 || lg[i] > lg[best])) best = i;
        if (best < 0) return -1;
        if (logprob) {
            double m = lg[best], sum = 0.0;
            for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)lg[i] - m);
            *logprob = (float)(-log(sum));
        }
        return best;
    }

    /* candidates: finite logits only */
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        if (lg[i] != -INFINITY) s->ids[n++] = i;
    if (n == 0) return -1;
    int32_t *ids = s->ids;
    double T = p->temperature, sum = 0.0;
    if (p->top_k > 0 && p->top_k < n) {
        /* top-k: the k best in order, softmax summed in that order */
        n = sampler_top_k(lg, ids, n, p->top_k);
        double m = (double)lg[ids[0]] / T;
        for (int32_t i = 0; i < n; i++) {
            s->pr[i] = exp((double)lg[ids[i]] / T - m);
            sum += s->pr[i];
        }
        if (p->top_p < 1.0f) { /* the shortest prefix whose mass reaches top_p (at least one) */
            double target = (double)p->top_p * sum, c = 0.0;
            int32_t k = 0;
            while (k < n) {
                c += s->pr[k++];
                if (c >= target) break;
            }
            n = k;
        }
        if (p->min_p > 0.0f) { /* tokens with p >= min_p * p_max (pr[0] = 1) */
            int32_t k = 1;
            while (k < n && s->pr[k] >= (double)p->min_p * s->pr[0]) k++;
            n = k;
        }
        sum = 0.0;
        for (int32_t i = 0; i < n; i++) sum += s->pr[i];
    } else {
        /* every candidate: softmax in id order, no sort (the vocabulary is 152k) */
        int32_t best = ids[0];
        for (int32_t i = 1; i < n; i++)
            if (sampler_before(lg, ids[i], best)) best = ids[i];
        double m = (double)lg[best] / T;
        for (int32_t i = 0; i < n; i++) {
            s->pr[i] = exp((double)lg[ids[i]] / T - m);
            sum += s->pr[i];
        }
        if (p->top_p < 1.0f || p->min_p > 0.0f) {
            /* top-p / min-p keep a prefix of the candidates in (logit desc, id asc) order:
             * pop it from a heap (O(n) to build, O(log n) a candidate) instead of sorting all */
            for (int32_t i = n / 2 - 1; i >= 0; i--) sampler_heap_sift(lg, ids, n, i, 1);
            double target = (double)p->top_p * sum, thr = (double)p->min_p, c = 0.0;
            int32_t k = 0, h = n;
            while (h > 0) {
                int32_t t = ids[0];
                double q = exp((double)lg[t] / T - m); /* the best popped first: q = 1 */
                if (k > 0 && p->min_p > 0.0f && !(q >= thr)) break;
                s->ord[k] = t;
                c += q;
                s->pr[k++] = q;
                ids[0] = ids[--h];
                sampler_heap_sift(lg, ids, h, 0, 1);
                if (p->top_p < 1.0f && c >= target) break;
            }
            n = k;
            ids = s->ord;
            sum = 0.0;
            for (int32_t i = 0; i < n; i++) sum += s->pr[i];
        }
    }
    /* draw */
    double u = sampler_uniform(p->seed, step) * sum, c = 0.0;
    int32_t pick = n - 1;
    for (int32_t i = 0; i < n; i++) {
        c += s->pr[i];
        if (u < c) { pick = i; break; }
    }
    if (logprob) *logprob = (float)log(s->pr[pick] / sum);
    return ids[pick];
}

int sampler_token_logprob(const float *logits, int32_t n_vocab, int32_t token, float *out) {
    if (!logits || token < 0 || token >= n_vocab) return -1;
    float m = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (logits[i] != logits[i] || logits[i] == INFINITY) return -1;
        if (logits[i] > m) m = logits[i];
    }
    if (m == -INFINITY) return -1;
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - m);
    *out = (float)(((double)logits[token] - m) - log(sum));
    return 0;
}

/* ---------------- stop strings ---------------- */

struct stop_matcher {
    char **stops;
    size_t *lens;
    int n;
    char *buf;      /* held-back text */
    size_t len, cap;
    char *out;      /* text returned by the last call */
    size_t out_cap;
    int stopped;
};

/* Make a matcher for n_stops strings (copied; empty strings and NULLs are ignored). NULL on OOM. */
stop_matcher *stop_matcher_new(const char *const *stops, int n_stops) {
    stop_matcher *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (n_stops > 0 && stops) {
        m->stops = calloc((size_t)n_stops, sizeof *m->stops);
        m->lens = calloc((size_t)n_stops, sizeof *m->lens);
        if (!m->stops || !m->lens) { stop_matcher_free(m); return NULL; }
        for (int i = 0; i < n_stops; i++) {
            if (!stops[i] || !stops[i][0]) continue;
            size_t l = strlen(stops[i]);
            m->stops[m->n] = malloc(l + 1);
            if (!m->stops[m->n]) { stop_matcher_free(m); return NULL; }
            memcpy(m->stops[m->n], stops[i], l + 1);
            m->lens[m->n++] = l;
        }
    }
    return m;
}

/* Free the matcher (NULL is fine). */
void stop_matcher_free(stop_matcher *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    free(m->buf);
    free(m->out);
    free(m);
}

/* Grow *p to at least need bytes. 0 on success. */
static int stop_grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Move the first k bytes of buf to out and shift the rest down. */
static void stop_emit(stop_matcher *m, size_t k, const char **out, size_t *out_len) {
    if (k > 0) memcpy(m->out, m->buf, k);
    memmove(m->buf, m->buf + k, m->len - k);
    m->len -= k;
    *out = m->out;
    *out_len = k;
}

int stop_matcher_feed(stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len) {
    static const char empty[1] = {0};
    if (out) *out = empty;
    if (out_len) *out_len = 0;
    if (!m || !out || !out_len || (len > 0 && !text)) return 0;
    if (m->stopped) return 1;
    if (stop_grow(&m->buf, &m->cap, m->len + len + 1) != 0) return 0;
    if (len) memcpy(m->buf + m->len, text, len);
    m->len += len;
    if (stop_grow(&m->out, &m->out_cap, m->len + 1) != 0) return 0;
    /* earliest complete stop string in the held text */
    size_t best = (size_t)-1;
    for (int i = 0; i < m->n; i++) {
        size_t l = m->lens[i];
        for (size_t pos = 0; pos + l <= m->len && pos < best; pos++)
            if (memcmp(m->buf + pos, m->stops[i], l) == 0) { best = pos; break; }
    }
    if (best != (size_t)-1) {
        stop_emit(m, best, out, out_len);
        m->len = 0;
        m->stopped = 1;
        return 1;
    }
    /* hold back the longest suffix that is a proper prefix of some stop string */
    size_t hold = 0;
    for (int i = 0; i < m->n; i++) {
        size_t l = m->lens[i];
        size_t maxh = l - 1 < m->len ? l - 1 : m->len;
        for (size_t h = maxh; h > hold; h--)
            if (memcmp(m->buf + m->len - h, m->stops[i], h) == 0) { hold = h; break; }
    }
    stop_emit(m, m->len - hold, out, out_len);
    return 0;
}

void stop_matcher_flush(stop_matcher *m, const char **out, size_t *out_len) {
    static const char empty[1] = {0};
    if (out) *out = empty;
    if (out_len) *out_len = 0;
    if (!m || !out || !out_len) return;
    if (stop_grow(&m->out, &m->out_cap, m->len + 1) != 0) return;
    stop_emit(m, m->len, out, out_len);
}
