/* quality.c - `baton-bench quality`: what a real (trained) model's output is worth
 * through each setup: perplexity of a text and greedy agreement.
 *
 *     baton-bench quality --model M.gguf --text FILE [--workers W] [--codec LIST]
 *                         [--ctx N] [--steps S] [--unigram META.json] [--json]
 *
 * The text is tokenized with the model's own tokenizer (special-token strings such
 * as <|endoftext|> recognised, as baton-run --prompt does) and cut into windows of N
 * tokens (default 128), each a fresh sequence from position 0; the perplexity is
 * exp of the mean negative log-likelihood of every token after the first of each
 * window, from the full softmax over the whole vocabulary (in double).
 *   - one process: the whole model in one slice, as baton-run runs it;
 *   - a pipeline of W stages (default 4), for each codec of LIST (default: every
 *     codec): the model cut as the coordinator cuts it for W equal workers, each
 *     slice with its own KV cache, and between two stages the hidden state goes
 *     through hop_encode and hop_decode (worker/hop.c: the bytes a worker sends,
 *     checksum included) - the numbers a cluster's workers compute, without the
 *     sockets (a real cluster scores a text with `baton generate --prompt-logprobs`; tests/reference/
 *     test_demo_model.sh holds a real 4-worker cluster's greedy tokens and their
 *     log-probabilities against baton-run's);
 *   - greedy agreement: S steps (default 64) from the text's first 16 tokens, one
 *     process against each pipeline: equal tokens and the first step that differs;
 *   - with --unigram (tools/train-demo/demo-meta.json): the unigram baseline on the
 *     same predicted tokens - train counts, add-one over the corpus's tokens.
 * Perplexities print with 4 decimals; equal strings mean equal to the last digit.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "codec.h"
#include "forward.h"
#include "gguf.h"
#include "hop.h"
#include "ops.h"
#include "tokenizer.h"

#define QB_MAX_STAGES 16

/* One setup: W slices (W = 1: one process) and the codec between them. */
typedef struct qb_pipe {
    int n;
    model *m[QB_MAX_STAGES];
    kv_cache *kv[QB_MAX_STAGES];
    fwd_ctx *c[QB_MAX_STAGES];
    int codec;
    int32_t n_embd, n_vocab;
} qb_pipe;

static void qb_pipe_free(qb_pipe *p) {
    for (int i = 0; i < p->n; i++) {
        fwd_ctx_free(p->c[i]);
        kv_cache_free(p->kv[i]);
        model_free(p->m[i]);
    }
    memset(p, 0, sizeof *p);
}

/* Load `path` cut into n stages of equal layer counts (the first ones take the
 * remainder, as an even plan does), for batches of up to max_batch tokens and
 * sequences of n_ctx. 0, or -1 with a message in err. */
static int qb_pipe_open(qb_pipe *p, const char *path, int n, int n_layer, int max_batch, int n_ctx, int codec,
                        char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->codec = codec;
    int begin = 0;
    for (int i = 0; i < n; i++) {
        const int len = n_layer / n + (i < n_layer % n);
        model_slice s = {begin, i == n - 1 ? -1 : begin + len, i == 0, i == n - 1};
        begin += len;
        p->n = i + 1;
        if (!(p->m[i] = model_load(path, &s, err, errlen))) return -1;
        if (!(p->kv[i] = kv_cache_new(p->m[i], 1, n_ctx, TENSOR_F16, err, errlen))) return -1;
        if (!(p->c[i] = fwd_ctx_new(p->m[i], max_batch))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    p->n_embd = (int32_t)p->m[0]->hp.n_embd;
    p->n_vocab = (int32_t)p->m[0]->hp.n_vocab;
    return 0;
}

/* n tokens at positions pos0.. through every stage, the hidden state through the
 * codec between two; logits of every token (all) or of the last into logits. */
static int qb_run(qb_pipe *p, const int32_t *tok, int n, int pos0, bool all, float *hidden, float *logits, char *err,
                  size_t errlen) {
    int32_t *slot = calloc((size_t)n, sizeof *slot), *pos = malloc((size_t)n * sizeof *pos);
    uint8_t *want = malloc((size_t)n);
    int rc = -1;
    if (!slot || !pos || !want) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) pos[i] = pos0 + i, want[i] = all || i == n - 1;
    fwd_batch b = {.n = n, .tokens = tok, .slot = slot, .pos = pos, .logits = want};
    for (int s = 0; s < p->n; s++) {
        if (s > 0) {
            Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
            f.token_count = (uint32_t)n, f.width = (uint32_t)p->n_embd;
            hop_payload pl;
            float *h;
            size_t len;
            if (hop_encode(&f, p->codec, hidden, (size_t)n * (size_t)p->n_embd * sizeof(float), &pl, err, errlen) < 0)
                goto done;
            int d = hop_decode(&f, pl.data, pl.len, &h, &len, err, errlen);
            hop_payload_free(&pl);
            if (d < 0) goto done;
            memcpy(hidden, h, len);
            free(h);
        }
        if (forward_run(p->c[s], p->kv[s], &b, hidden, s == p->n - 1 ? logits : NULL, err, errlen) < 0) goto done;
    }
    rc = 0;
done:
    free(slot), free(pos), free(want);
    return rc;
}

/* Sum of -log p(next token) over the text's windows of ctx tokens, into *nll and
 * the count into *count (nll_tok[i]: the term of predicted token i, i >= 1 within
 * its window, for the unigram comparison). 0, or -1 with a message. */
static int qb_perplexity(qb_pipe *p, const int32_t *ids, int64_t n_ids, int ctx, double *nll, int64_t *count,
                         float *hidden, float *logits, char *err, size_t errlen) {
    *nll = 0, *count = 0;
    for (int64_t w0 = 0; w0 + 1 < n_ids; w0 += ctx) {
        const int n = (int)(n_ids - w0 < ctx ? n_ids - w0 : ctx);
        if (qb_run(p, ids + w0, n, 0, true, hidden, logits, err, errlen) < 0) return -1;
        for (int i = 0; i + 1 < n; i++) {
            const float *l = logits + (size_t)i * (size_t)p->n_vocab;
            double mx = l[0], s = 0;
            for (int v = 1; v < p->n_vocab; v++) mx = fmax(mx, l[v]);
            for (int v = 0; v < p->n_vocab; v++) s += (double)expf((float)((double)l[v] - mx));
            *nll += mx + log(s) - (double)l[ids[w0 + i + 1]];
            (*count)++;
        }
    }
    return 0;
}

static int32_t qb_argmax(const float *l, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

/* Greedy decoding of `steps` tokens after `prompt` (n_prompt tokens). */
static int qb_greedy(qb_pipe *p, const int32_t *prompt, int n_prompt, int steps, int32_t *out, float *hidden,
                     float *logits, char *err, size_t errlen) {
    if (qb_run(p, prompt, n_prompt, 0, false, hidden, logits, err, errlen) < 0) return -1;
    out[0] = qb_argmax(logits, p->n_vocab);
    for (int s = 1; s < steps; s++) {
        if (qb_run(p, &out[s - 1], 1, n_prompt + s - 1, false, hidden, logits, err, errlen) < 0) return -1;
        out[s] = qb_argmax(logits, p->n_vocab);
    }
    return 0;
}

/* The unigram baseline's negative log-likelihood of the same predicted tokens:
 * counts from META's "unigram": {"ids": [...], "counts": [...]}, add-one over
 * those ids. -1 with a message when META is unreadable. */
static int qb_unigram(const char *meta, const int32_t *ids, int64_t n_ids, int ctx, int32_t n_vocab, double *nll,
                      char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(meta, 0, &je);
    if (!root) {
        snprintf(err, errlen, "%s:%d: %s", meta, je.line, je.text);
        return -1;
    }
    json_t *u = json_object_get(root, "unigram"), *jid = json_object_get(u, "ids"), *jc = json_object_get(u, "counts");
    int rc = -1;
    double *cnt = calloc((size_t)n_vocab, sizeof *cnt);
    if (!cnt || !json_is_array(jid) || !json_is_array(jc) || json_array_size(jid) != json_array_size(jc)) {
        snprintf(err, errlen, "%s: needs \"unigram\": {\"ids\": [...], \"counts\": [...]} of equal lengths", meta);
        goto done;
    }
    double total = 0;
    const size_t V = json_array_size(jid);
    for (size_t i = 0; i < V; i++) {
        json_int_t id = json_integer_value(json_array_get(jid, i));
        if (id < 0 || id >= n_vocab) {
            snprintf(err, errlen, "%s: unigram id %lld outside the vocabulary", meta, (long long)id);
            goto done;
        }
        cnt[id] = (double)json_integer_value(json_array_get(jc, i));
        total += cnt[id];
    }
    *nll = 0;
    for (int64_t w0 = 0; w0 + 1 < n_ids; w0 += ctx) {
        const int64_t n = n_ids - w0 < ctx ? n_ids - w0 : ctx;
        for (int64_t i = 1; i < n; i++) *nll -= log((cnt[ids[w0 + i]] + 1) / (total + (double)V));
    }
    rc = 0;
done:
    free(cnt);
    json_decref(root);
    return rc;
}

/* The text of FILE as token ids with the model's tokenizer (malloc'd). */
static int32_t *qb_tokenize(const char *model_path, const char *text_path, int64_t *n, char *err, size_t errlen) {
    FILE *f = fopen(text_path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", text_path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, len = 0, got;
    do {
        if (len + 65536 > cap) {
            char *nb = realloc(buf, cap = (len + 65536) * 2);
            if (!nb) break;
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    fclose(f);
    gguf_file *g = gguf_open(model_path, err, errlen);
    tokenizer *tok = g ? tok_load_gguf(g, err, errlen) : NULL;
    int32_t *ids = NULL;
    *n = -1;
    if (tok && buf) *n = tok_encode_alloc(tok, buf, len, TOK_SPECIAL_PARSE, &ids, err, errlen);
    if (!buf) snprintf(err, errlen, "out of memory");
    tok_free(tok);
    gguf_close(g);
    free(buf);
    if (*n < 2) {
        if (*n >= 0) snprintf(err, errlen, "%s: fewer than 2 tokens", text_path);
        free(ids);
        return NULL;
    }
    return ids;
}

typedef struct qb_row {
    int codec;
    double ppl;
    int same, first_diff;
} qb_row;

static int bench_quality(int argc, char **argv) {
    const bool json = bench_want_json(argc, argv);
    const char *path = NULL, *text = NULL, *codecs = NULL, *meta = NULL;
    int workers = 4, ctx = 128, steps = 64;
    for (int i = 1; i < argc; i++) {
        const bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--model") && more) path = argv[++i];
        else if (!strcmp(argv[i], "--text") && more) text = argv[++i];
        else if (!strcmp(argv[i], "--codec") && more) codecs = argv[++i];
        else if (!strcmp(argv[i], "--unigram") && more) meta = argv[++i];
        else if (!strcmp(argv[i], "--workers") && more) {
            if (bench_int_opt("quality", argv[i], argv[i + 1], 2, QB_MAX_STAGES, &workers) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--ctx") && more) {
            if (bench_int_opt("quality", argv[i], argv[i + 1], 2, 4096, &ctx) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--steps") && more) {
            if (bench_int_opt("quality", argv[i], argv[i + 1], 1, 4096, &steps) != 0) return 2;
            i++;
        } else if (strcmp(argv[i], "--json")) {
            fprintf(stderr, "baton-bench quality: unknown option '%s' (or missing value)\n", argv[i]);
            return 2;
        }
    }
    if (!path || !text) {
        fprintf(stderr, "baton-bench quality: --model FILE and --text FILE are required\n");
        return 2;
    }
    int list[CODEC_COUNT], n_list = 0;
    if (!codecs) {
        for (int c = 0; c < CODEC_COUNT; c++)
            if (codec_supported_mask() & (1u << c)) list[n_list++] = c;
    } else {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", codecs);
        for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int c = codec_from_name(t);
            if (c < 0 || n_list == CODEC_COUNT) {
                fprintf(stderr, "baton-bench quality: --codec: unknown codec '%s'\n", t);
                return 2;
            }
            list[n_list++] = c;
        }
    }
    if (kern_init(0)) return 1;
    char err[512];
    int64_t n_ids;
    int32_t *ids = qb_tokenize(path, text, &n_ids, err, sizeof err);
    if (!ids) {
        fprintf(stderr, "baton-bench quality: %s\n", err);
        return 1;
    }
    const int n_prompt = n_ids < 16 ? (int)n_ids : 16;
    model *whole = model_load(path, &(model_slice){0, -1, true, true}, err, sizeof err);
    qb_pipe one = {0}, pipe = {0};
    float *hidden = NULL, *logits = NULL;
    int32_t *gref = malloc((size_t)steps * sizeof *gref), *g = malloc((size_t)steps * sizeof *g);
    static qb_row rows[CODEC_COUNT];
    int rc = 1;
    if (!whole) {
        fprintf(stderr, "baton-bench quality: %s\n", err);
        goto done;
    }
    const int n_layer = (int)whole->hp.n_layer;
    model_free(whole);
    if (workers > n_layer) {
        fprintf(stderr, "baton-bench quality: --workers %d is more than the model's %d layers\n", workers, n_layer);
        rc = 2;
        goto done;
    }
    const int n_ctx = (ctx > n_prompt + steps ? ctx : n_prompt + steps) + 1;
    if (qb_pipe_open(&one, path, 1, n_layer, ctx, n_ctx, CODEC_DEFAULT, err, sizeof err) < 0) {
        fprintf(stderr, "baton-bench quality: %s\n", err);
        goto done;
    }
    hidden = malloc((size_t)ctx * (size_t)one.n_embd * sizeof(float));
    logits = malloc((size_t)ctx * (size_t)one.n_vocab * sizeof(float));
    if (!hidden || !logits || !gref || !g) {
        fprintf(stderr, "baton-bench quality: out of memory\n");
        goto done;
    }
    double nll1, unigram = -1;
    int64_t count;
    if (qb_perplexity(&one, ids, n_ids, ctx, &nll1, &count, hidden, logits, err, sizeof err) < 0 ||
        qb_greedy(&one, ids, n_prompt, steps, gref, hidden, logits, err, sizeof err) < 0 ||
        (meta && qb_unigram(meta, ids, n_ids, ctx, one.n_vocab, &unigram, err, sizeof err) < 0)) {
        fprintf(stderr, "baton-bench quality: %s\n", err);
        goto done;
    }
    const double ppl1 = exp(nll1 / (double)count);
    for (int k = 0; k < n_list; k++) {
        qb_row *r = &rows[k];
        r->codec = list[k];
        double nll;
        int64_t cnt;
        if (qb_pipe_open(&pipe, path, workers, n_layer, ctx, n_ctx, list[k], err, sizeof err) < 0 ||
            qb_perplexity(&pipe, ids, n_ids, ctx, &nll, &cnt, hidden, logits, err, sizeof err) < 0 ||
            qb_greedy(&pipe, ids, n_prompt, steps, g, hidden, logits, err, sizeof err) < 0) {
            fprintf(stderr, "baton-bench quality: %s: %s\n", codec_name(list[k]), err);
            qb_pipe_free(&pipe);
            goto done;
        }
        qb_pipe_free(&pipe);
        r->ppl = exp(nll / (double)cnt);
        r->same = 0, r->first_diff = -1;
        for (int s = 0; s < steps; s++) {
            if (g[s] == gref[s]) r->same++;
            else if (r->first_diff < 0) r->first_diff = s;
        }
    }
    if (json) {
        printf("{\"model\":\"%s\",\"text\":\"%s\",\"tokens\":%lld,\"predicted\":%lld,\"ctx\":%d,\"workers\":%d,"
               "\"perplexity\":%.4f",
               path, text, (long long)n_ids, (long long)count, ctx, workers, ppl1);
        if (meta) printf(",\"unigram_perplexity\":%.4f", exp(unigram / (double)count));
        printf(",\"pipelines\":[");
        for (int k = 0; k < n_list; k++)
            printf("%s{\"codec\":\"%s\",\"perplexity\":%.4f,\"greedy_same\":%d,\"greedy_steps\":%d,"
                   "\"greedy_first_diff\":%d}",
                   k ? "," : "", codec_name(rows[k].codec), rows[k].ppl, rows[k].same, steps, rows[k].first_diff);
        printf("]}\n");
    } else {
        printf("model %s, text %s: %lld tokens, %lld predicted (windows of %d)\n", path, text, (long long)n_ids,
               (long long)count, ctx);
        printf("one process              perplexity %.4f\n", ppl1);
        if (meta) printf("unigram baseline         perplexity %.4f\n", exp(unigram / (double)count));
        printf("%-9s %-14s %12s %10s %10s %10s\n", "workers", "codec", "perplexity", "change", "greedy =", "first diff");
        for (int k = 0; k < n_list; k++)
            printf("%-9d %-14s %12.4f %+9.4f%% %6d/%-3d %10d\n", workers, codec_name(rows[k].codec), rows[k].ppl,
                   100.0 * (rows[k].ppl / ppl1 - 1), rows[k].same, steps, rows[k].first_diff);
    }
    rc = 0;
done:
    qb_pipe_free(&one);
    free(hidden), free(logits), free(ids), free(gref), free(g);
    return rc;
}
BENCH_REGISTER(quality, "a trained model through each setup: perplexity of a text, greedy agreement",
               "--model FILE --text FILE [--workers W] [--codec LIST] [--ctx N] [--steps S] [--unigram META.json]",
               bench_quality)
