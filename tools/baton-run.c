/* baton-run - the whole model in one process: the reference the cluster is tested
 * against, and the simplest way to run a model on one machine.
 *
 *   baton-run --model FILE --tokens 1,2,3 [--max-tokens N] [--greedy] [--json]
 *   baton-run --model FILE --prompt TEXT [--chat] ...   text in, text out
 *   baton-run --model FILE | --tokenizer-json FILE --tokenize CORPUS   ids per line
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "cliparse.h"
#include "clock.h"
#include "log.h"
#include "proc.h"
#include "gguf.h"
#include "model.h"
#include "ops.h"
#include "sampler.h"
#include "tokenizer.h"

#define PREFILL_CHUNK 64

typedef struct run_opts {
    const char *model_path;
    const char *tokens;
    const char *logits_out;
    const char *prompt;         /* --prompt: text instead of --tokens */
    const char *tokenize;       /* --tokenize: corpus to turn into ids */
    const char *tokenizer_json; /* --tokenizer-json: instead of the GGUF's tokenizer */
    const char *device;         /* --device: cpu (NULL), vulkan, vulkan:N */
    int max_tokens;
    int threads;
    int ctx;
    uint32_t kv_type;
    model_rope_opts rope;       /* --rope-scaling, --rope-scale, --yarn-orig-ctx */
    bool json, exact, info, chat;
    bool prompt_logprobs;       /* --prompt-logprobs: score the prompt too */
    sampler_params sampling; /* greedy unless --temperature > 0 */
} run_opts;

#define die log_die

static double peak_rss_mb(void) { return (double)proc_peak_rss() / 1048576.0; }

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton-run --model FILE --tokens ID,ID,... [options]\n"
            "\n"
            "Runs a Qwen2 GGUF model in this process and generates greedily.\n"
            "\n"
            "  --model FILE        GGUF model file (required)\n"
            "  --tokens LIST       prompt as comma-separated token ids\n"
            "  --max-tokens N      tokens to generate (default 16)\n"
            "  --greedy            pick the most likely token (the default)\n"
            "  --temperature T     sample at temperature T (0: greedy)\n"
            "  --top-k K  --top-p P  --min-p P  --seed S   sampling filters and seed\n"
            "  --json              print one JSON object: tokens and timings\n"
            "  --exact             f32 activations x dequantized weights (reference precision)\n"
            "  --logits-out FILE   write float32 logits of every position fed to the model\n"
            "  --prompt-logprobs   also score the prompt: the log-probability (log-softmax, T = 1) of each\n"
            "                      prompt token after the first, and their perplexity (--json:\n"
            "                      prompt_logprobs, prompt_perplexity; `baton generate` gives the same)\n"
            "  --threads N         compute threads (default: all cores)\n"
            "  --device D          cpu (default), vulkan or vulkan:N: run the model on a Vulkan GPU (the\n"
            "                      same tokens as the CPU); list: print the Vulkan devices and exit\n"
            "  --ctx N             context length of the KV cache (default: prompt + max tokens)\n"
            "  --kv f16|f32|q8_0   KV-cache number format (default f16; q8_0: 32-value blocks with an\n"
            "                      f16 scale, about half of f16's bytes)\n"
            "  --rope-scaling none|yarn  RoPE scaling, over the file's qwen2.rope.scaling.* keys\n"
            "  --rope-scale F      YaRN factor (e.g. 4 for QwQ-32B beyond 8192 tokens)\n"
            "  --yarn-orig-ctx N   YaRN original context (default: the file's, else its context_length)\n"
            "  --info              print the model's hyperparameters and exit\n"
            "  --prompt TEXT       prompt as text (special-token strings recognised); prints\n"
            "                      the generated text and stops at an end-of-generation token\n"
            "  --chat              with --prompt: TEXT is a user message in the ChatML template\n"
            "                      (special-token strings in it stay text)\n"
            "  --tokenizer-json F  use this Hugging Face tokenizer.json, not the GGUF's\n"
            "  --tokenize CORPUS   print the ids of each line of CORPUS as a JSON array and exit\n"
            "                      (CORPUS.jsonl: one JSON string per line; else plain lines);\n"
            "                      fails, naming the line, unless decode(encode(x)) == normalize(x)\n"
            "  --help              this text\n"
            "\n"
            "Environment: BATON_ISA=scalar|avx2|avx512 forces a kernel level.\n");
}

static float parse_float(const char *s, const char *what, double min, double max) {
    double v;
    char err[200];
    if (cli_float(s, min, max, &v, err, sizeof err) != 0) die("%s: %s", what, err);
    return (float)v;
}

static long long parse_int(const char *s, const char *what, long long min, long long max) {
    long long v;
    char err[200];
    if (cli_int(s, min, max, &v, err, sizeof err) != 0) die("%s: %s", what, err);
    return v;
}

/* Parse "1,2,3" into a malloc'd array. */
static int32_t *parse_tokens(const char *s, int *n_out) {
    int cap = 16, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) die("--tokens: '%s' is not a list of token ids", s);
        if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[n++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) die("--tokens: unexpected '%c' in '%s'", *p, s);
    }
    if (!n) die("--tokens: empty list");
    *n_out = n;
    return v;
}

/* The next token, chosen exactly as the last stage of a cluster chooses it
 * (sampler.h: a pure function of logits, history, seed and step). */
static int32_t pick(const run_opts *o, const float *row, int32_t V, const int32_t *hist, int32_t n_hist, uint64_t step,
                    sampler_scratch *sc) {
    int32_t t = sampler_sample(&o->sampling, row, V, hist, n_hist, step, sc, NULL);
    if (t < 0) die("cannot sample: invalid sampling parameters or non-finite logits");
    return t;
}

static void parse_args(int argc, char **argv, run_opts *o) {
    enum { OPT_TOKENS = 256, OPT_MAX, OPT_GREEDY, OPT_JSON, OPT_EXACT, OPT_LOGITS, OPT_THREADS, OPT_CTX, OPT_KV, OPT_INFO,
           OPT_PROMPT, OPT_CHAT, OPT_TOKENIZE, OPT_TOKJSON, OPT_TEMP, OPT_TOPK, OPT_TOPP, OPT_MINP, OPT_SEED,
           OPT_ROPE_SCALING, OPT_ROPE_SCALE, OPT_YARN_ORIG, OPT_DEVICE, OPT_PROMPT_LP };
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},        {"tokens", required_argument, 0, OPT_TOKENS},
        {"max-tokens", required_argument, 0, OPT_MAX}, {"greedy", no_argument, 0, OPT_GREEDY},
        {"prompt-logprobs", no_argument, 0, OPT_PROMPT_LP},
        {"json", no_argument, 0, OPT_JSON},           {"exact", no_argument, 0, OPT_EXACT},
        {"logits-out", required_argument, 0, OPT_LOGITS}, {"threads", required_argument, 0, OPT_THREADS},
        {"ctx", required_argument, 0, OPT_CTX},       {"kv", required_argument, 0, OPT_KV},
        {"info", no_argument, 0, OPT_INFO},           {"help", no_argument, 0, 'h'},
        {"prompt", required_argument, 0, OPT_PROMPT}, {"chat", no_argument, 0, OPT_CHAT},
        {"tokenize", required_argument, 0, OPT_TOKENIZE}, {"tokenizer-json", required_argument, 0, OPT_TOKJSON},
        {"temperature", required_argument, 0, OPT_TEMP}, {"top-k", required_argument, 0, OPT_TOPK},
        {"top-p", required_argument, 0, OPT_TOPP},    {"min-p", required_argument, 0, OPT_MINP},
        {"seed", required_argument, 0, OPT_SEED},
        {"rope-scaling", required_argument, 0, OPT_ROPE_SCALING}, {"rope-scale", required_argument, 0, OPT_ROPE_SCALE},
        {"yarn-orig-ctx", required_argument, 0, OPT_YARN_ORIG}, {"device", required_argument, 0, OPT_DEVICE},
        {0, 0, 0, 0},
    };
    *o = (run_opts){.max_tokens = 16, .kv_type = TENSOR_F16, .rope = MODEL_ROPE_OPTS_UNSET,
                     .sampling = sampler_defaults()};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case OPT_TOKENS: o->tokens = optarg; break;
        case OPT_MAX: o->max_tokens = (int)parse_int(optarg, "--max-tokens", 0, 1 << 20); break;
        case OPT_GREEDY: o->sampling.temperature = 0; break;
        case OPT_TEMP: o->sampling.temperature = parse_float(optarg, "--temperature", 0, 100); break;
        case OPT_TOPK: o->sampling.top_k = (int32_t)parse_int(optarg, "--top-k", 0, 1 << 30); break;
        case OPT_TOPP: o->sampling.top_p = parse_float(optarg, "--top-p", 0, 1); break;
        case OPT_MINP: o->sampling.min_p = parse_float(optarg, "--min-p", 0, 1); break;
        case OPT_SEED: o->sampling.seed = (uint64_t)parse_int(optarg, "--seed", 0, INT64_MAX); break;
        case OPT_JSON: o->json = true; break;
        case OPT_PROMPT_LP: o->prompt_logprobs = true; break;
        case OPT_EXACT: o->exact = true; break;
        case OPT_LOGITS: o->logits_out = optarg; break;
        case OPT_THREADS: o->threads = (int)parse_int(optarg, "--threads", 1, 1024); break;
        case OPT_CTX: o->ctx = (int)parse_int(optarg, "--ctx", 1, 1 << 24); break;
        case OPT_KV:
            if (!strcmp(optarg, "f16")) o->kv_type = TENSOR_F16;
            else if (!strcmp(optarg, "f32")) o->kv_type = TENSOR_F32;
            else if (!strcmp(optarg, "q8_0")) o->kv_type = TENSOR_Q8_0;
            else die("--kv must be f16, f32 or q8_0, got '%s'", optarg);
            break;
        case OPT_ROPE_SCALING:
            if ((o->rope.type = model_rope_scaling_from_name(optarg)) < 0)
                die("--rope-scaling must be none or yarn, got '%s'", optarg);
            break;
        case OPT_ROPE_SCALE: o->rope.factor = parse_float(optarg, "--rope-scale", 1.0000001, 1024); break;
        case OPT_YARN_ORIG: o->rope.orig_ctx = (uint32_t)parse_int(optarg, "--yarn-orig-ctx", 1, UINT32_MAX); break;
        case OPT_INFO: o->info = true; break;
        case OPT_DEVICE: {
            int index, kind = gpu_parse_device(optarg, &index);
            if (kind < 0) die("--device must be cpu, vulkan, vulkan:N or list (not '%s')", optarg);
            if (kind == GPU_DEVICE_LIST) exit(gpu_list(stdout) > 0 ? 0 : 1);
            o->device = optarg;
            break;
        }
        case OPT_PROMPT: o->prompt = optarg; break;
        case OPT_CHAT: o->chat = true; break;
        case OPT_TOKENIZE: o->tokenize = optarg; break;
        case OPT_TOKJSON: o->tokenizer_json = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) die("unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->model_path && !(o->tokenize && o->tokenizer_json)) die("--model FILE is required (see --help)");
    if (o->tokens && o->prompt) die("--tokens and --prompt exclude each other");
    if (o->chat && !o->prompt) die("--chat needs --prompt TEXT");
    if (!o->tokens && !o->prompt && !o->info && !o->tokenize) die("--tokens or --prompt is required (see --help)");
}

/* The tokenizer: from --tokenizer-json when given, else from the GGUF. Dies on error. */
static tokenizer *load_tokenizer(const run_opts *o, const gguf_file *g) {
    char err[512];
    tokenizer *tok = o->tokenizer_json ? tok_load_json(o->tokenizer_json, err, sizeof err) : tok_load_gguf(g, err, sizeof err);
    if (!tok) die("%s", err);
    return tok;
}

/* --tokenize: one JSON array of ids per line of the corpus (special-token strings
 * recognised), checking that the ids decode to the normalized line. 0, or 1 when a
 * line fails (named on stderr). */
static int run_tokenize(const run_opts *o) {
    char err[512];
    gguf_file *g = NULL;
    if (!o->tokenizer_json && !(g = gguf_open(o->model_path, err, sizeof err))) die("%s", err);
    tokenizer *tok = load_tokenizer(o, g);
    FILE *f = fopen(o->tokenize, "rb");
    if (!f) die("cannot open '%s': %s", o->tokenize, strerror(errno));
    size_t plen = strlen(o->tokenize);
    bool jsonl = plen > 6 && !strcmp(o->tokenize + plen - 6, ".jsonl");
    char *line = NULL, *dec = NULL, *norm = NULL;
    size_t cap = 0, dec_cap = 0, norm_cap = 0;
    int32_t *ids = NULL;
    long lineno = 0;
    int rc = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        const char *text = line;
        size_t len = (size_t)n;
        json_t *js = NULL;
        if (jsonl) {
            json_error_t je;
            js = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!js || !json_is_string(js)) die("%s:%ld: not a JSON string", o->tokenize, lineno);
            text = json_string_value(js);
            len = json_string_length(js);
        }
        free(ids);
        char terr[200];
        int64_t m = tok_encode_alloc(tok, text, len, TOK_SPECIAL_PARSE, &ids, terr, sizeof terr);
        if (m < 0) die("%s:%ld: %s", o->tokenize, lineno, terr);
        putchar('[');
        for (int64_t i = 0; i < m; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
        fputs("]\n", stdout);
        int64_t d = tok_decode(tok, ids, m, dec, dec_cap);
        if (d >= 0 && (size_t)d >= dec_cap) {
            dec_cap = (size_t)d + 256;
            if (!(dec = realloc(dec, dec_cap))) die("out of memory");
            d = tok_decode(tok, ids, m, dec, dec_cap);
        }
        int64_t w = tok_normalize(tok, text, len, norm, norm_cap);
        if (w >= 0 && (size_t)w >= norm_cap) {
            norm_cap = (size_t)w + 256;
            if (!(norm = realloc(norm, norm_cap))) die("out of memory");
            w = tok_normalize(tok, text, len, norm, norm_cap);
        }
        if (d < 0 || d != w || memcmp(dec, norm, (size_t)d) != 0) {
            log_msg("%s:%ld: decoding the ids does not give the text back", o->tokenize, lineno);
            rc = 1;
        }
        json_decref(js);
    }
    fclose(f);
    free(line);
    free(dec);
    free(norm);
    free(ids);
    tok_free(tok);
    gguf_close(g);
    return rc;
}

/* --prompt: the prompt's ids (malloc'd), from the text or, with --chat, from a
 * one-message ChatML conversation with the generation prompt. Dies on error. */
static int32_t *encode_prompt(const run_opts *o, const tokenizer *tok, int *n_out) {
    chat_message msg = {"user", o->prompt};
    int32_t *ids = NULL;
    char err[200];
    int64_t n = o->chat ? chat_encode_alloc(tok, &msg, 1, true, TOK_SPECIAL_PLAIN, &ids, err, sizeof err)
                        : tok_encode_alloc(tok, o->prompt, strlen(o->prompt), TOK_SPECIAL_PARSE, &ids, err, sizeof err);
    if (n < 0) die("--prompt: %s", err);
    if (n == 0) die("--prompt: the text has no tokens");
    if (n > INT32_MAX / 2) die("--prompt: too long");
    *n_out = (int)n;
    return ids;
}

/* True when id ends generation for this tokenizer. */
static bool is_eog(const tokenizer *tok, int32_t id) {
    int32_t eog[8];
    int n = tok_eog_ids(tok, eog, 8);
    for (int i = 0; i < n; i++)
        if (eog[i] == id) return true;
    return false;
}

/* The text of the generated ids, whole UTF-8 characters only (malloc'd). */
static char *decode_text(const tokenizer *tok, const int32_t *ids, int n) {
    tok_stream *st = tok_stream_new(tok);
    size_t len = 0, cap = 256;
    char *text = malloc(cap);
    if (!st || !text) die("out of memory");
    for (int i = 0; i <= n; i++) {
        const char *p;
        size_t l;
        if (i < n) {
            if (tok_stream_feed(st, ids[i], &p, &l) != 0) die("%s", tok_last_error());
        } else {
            tok_stream_flush(st, &p, &l);
        }
        if (len + l + 1 > cap) {
            while (len + l + 1 > cap) cap *= 2;
            if (!(text = realloc(text, cap))) die("out of memory");
        }
        memcpy(text + len, p, l);
        len += l;
    }
    text[len] = 0;
    tok_stream_free(st);
    return text;
}

static void print_info(const model *m) {
    const model_hparams *hp = &m->hp;
    printf("layers %u, embedding %u, heads %u (kv %u, dim %u), ffn %u, vocab %u, context %u, rope base %g, rms eps %g\n",
           hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab, hp->n_ctx_train,
           (double)hp->rope_base, (double)hp->rms_eps);
    char rope[96];
    model_rope_describe(hp, rope, sizeof rope);
    printf("rope scaling %s\n", rope);
    printf("weights %.1f MiB\n", (double)m->weight_bytes / (1 << 20));
}

/* The buffers of one generation: the model's outputs and the sequence so far. */
typedef struct gen_state {
    int32_t V, E;
    int32_t *prompt;
    int n_prompt;
    kv_cache *kv;
    fwd_ctx *fc;
    float *hidden;  /* (PREFILL_CHUNK, E) */
    float *logits;  /* (PREFILL_CHUNK, V) */
    int32_t *hist;  /* the sequence the sampler's penalties see: prompt, then generated tokens */
    int32_t *gen;   /* hist + n_prompt */
    int n_gen;
    sampler_scratch *sc;
    FILE *lf;       /* --logits-out, or NULL */
    float *plp;     /* --prompt-logprobs: [n_prompt - 1], else NULL */
    double prefill_s, decode_s;
} gen_state;

/* Checks the prompt (ids, taken) against the vocabulary and the context, and
 * allocates everything a generation needs; dies on error. */
static void gen_start(gen_state *g, const run_opts *o, model *m, int32_t *prompt, int n_prompt) {
    char err[512];
    memset(g, 0, sizeof *g);
    g->V = (int32_t)m->hp.n_vocab;
    g->E = (int32_t)m->hp.n_embd;
    g->prompt = prompt;
    g->n_prompt = n_prompt;
    for (int i = 0; i < n_prompt; i++)
        if ((uint32_t)prompt[i] >= (uint32_t)g->V)
            die("token id %d is outside the vocabulary [0, %d)", (int)prompt[i], (int)g->V);
    int ctx = o->ctx ? o->ctx : n_prompt + o->max_tokens;
    if (n_prompt + o->max_tokens > ctx) die("prompt (%d) + max tokens (%d) exceed the context %d", n_prompt, o->max_tokens, ctx);
    g->kv = kv_cache_new(m, 1, ctx, o->kv_type, err, sizeof err);
    if (!g->kv) die("%s", err);
    if (!(g->fc = fwd_ctx_new_err(m, PREFILL_CHUNK, err, sizeof err)) || forward_prepare(g->fc, g->kv, err, sizeof err))
        die("%s", err);
    g->hidden = malloc((size_t)PREFILL_CHUNK * g->E * sizeof(float));
    g->logits = malloc((size_t)PREFILL_CHUNK * g->V * sizeof(float));
    g->hist = malloc(((size_t)n_prompt + o->max_tokens + 1) * sizeof *g->hist);
    g->gen = g->hist ? g->hist + n_prompt : NULL;
    g->sc = sampler_scratch_new(g->V);
    if (!g->sc) die("out of memory");
    if (g->hist) memcpy(g->hist, prompt, (size_t)n_prompt * sizeof *g->hist);
    if (!g->fc || !g->hidden || !g->logits || !g->gen) die("out of memory");
    if (o->prompt_logprobs && n_prompt > 1 && !(g->plp = malloc((size_t)(n_prompt - 1) * sizeof *g->plp)))
        die("out of memory");
    if (o->logits_out && !(g->lf = fopen(o->logits_out, "wb"))) die("cannot write '%s': %s", o->logits_out, strerror(errno));
}

static void gen_end(gen_state *g) {
    free(g->hist);
    free(g->plp);
    sampler_scratch_free(g->sc);
    free(g->logits);
    free(g->hidden);
    free(g->prompt);
    fwd_ctx_free(g->fc);
    kv_cache_free(g->kv);
}

/* Writes n rows of logits to --logits-out, if given. */
static void write_logits(gen_state *g, const run_opts *o, int n) {
    if (g->lf && fwrite(g->logits, sizeof(float), (size_t)n * g->V, g->lf) != (size_t)n * g->V)
        die("write error on '%s'", o->logits_out);
}

/* Prefill in chunks; logits only for the last prompt token unless all are asked
 * for. Returns the first generated token. */
static int32_t prefill(gen_state *g, const run_opts *o) {
    char err[512];
    int32_t slots[PREFILL_CHUNK], pos[PREFILL_CHUNK];
    uint8_t want[PREFILL_CHUNK];
    memset(slots, 0, sizeof slots);
    double t1 = clock_s();
    int32_t next = -1;
    for (int done = 0; done < g->n_prompt;) {
        int n = g->n_prompt - done < PREFILL_CHUNK ? g->n_prompt - done : PREFILL_CHUNK;
        for (int t = 0; t < n; t++) {
            pos[t] = done + t;
            want[t] = g->lf != NULL || g->plp != NULL || done + t == g->n_prompt - 1;
        }
        fwd_batch b = {.n = n, .tokens = g->prompt + done, .slot = slots, .pos = pos, .logits = want};
        int nw = forward_run(g->fc, g->kv, &b, g->hidden, g->logits, err, sizeof err);
        if (nw < 0) die("%s", err);
        write_logits(g, o, nw);
        if (g->plp) /* every row's logits are there: score the prompt token after each */
            for (int t = 0; t < n && done + t < g->n_prompt - 1; t++)
                if (sampler_token_logprob(g->logits + (size_t)t * g->V, g->V, g->prompt[done + t + 1], &g->plp[done + t]))
                    die("cannot score prompt token %d: the logits are not finite", done + t + 1);
        done += n;
        if (done == g->n_prompt) next = pick(o, g->logits + (size_t)(nw - 1) * g->V, g->V, g->hist, g->n_prompt, 0, g->sc);
    }
    g->prefill_s = clock_s() - t1;
    return next;
}

/* Decodes one token at a time from next, until max_tokens (or, with a
 * tokenizer, an end-of-generation token). */
static void decode(gen_state *g, const run_opts *o, const tokenizer *tok, int32_t next) {
    char err[512];
    int32_t slot = 0;
    double t2 = clock_s();
    while (g->n_gen < o->max_tokens) {
        if (tok && is_eog(tok, next)) break; /* text mode ends at <|im_end|> and friends */
        g->gen[g->n_gen++] = next;
        if (g->n_gen == o->max_tokens) break;
        int32_t p = g->n_prompt + g->n_gen - 1;
        uint8_t w = 1;
        fwd_batch b = {.n = 1, .tokens = &next, .slot = &slot, .pos = &p, .logits = &w};
        if (forward_run(g->fc, g->kv, &b, g->hidden, g->logits, err, sizeof err) < 0) die("%s", err);
        write_logits(g, o, 1);
        next = pick(o, g->logits, g->V, g->hist, g->n_prompt + g->n_gen, (uint64_t)g->n_gen, g->sc);
    }
    g->decode_s = clock_s() - t2;
    if (g->lf && fclose(g->lf) != 0) die("write error on '%s'", o->logits_out);
    g->lf = NULL;
}

/* exp of the mean negative log-probability of the scored prompt tokens (double,
 * in order: as `baton generate --prompt-logprobs` computes it). */
static double prompt_perplexity(const gen_state *g) {
    double nll = 0;
    for (int i = 0; i < g->n_prompt - 1; i++) nll -= g->plp[i];
    return g->n_prompt > 1 ? exp(nll / (double)(g->n_prompt - 1)) : 1.0;
}

/* --json: the tokens, text and speeds as one JSON object on stdout. */
static void print_json(const gen_state *g, const tokenizer *tok, const model *m, double load_s, double prefill_tps,
                       double decode_tps) {
    json_t *j = json_object(), *toks = json_array();
    for (int i = 0; i < g->n_gen; i++) json_array_append_new(toks, json_integer(g->gen[i]));
    json_object_set_new(j, "tokens", toks);
    if (tok) {
        char *text = decode_text(tok, g->gen, g->n_gen);
        json_object_set_new(j, "text", json_string(text));
        free(text);
    }
    json_object_set_new(j, "n_prompt", json_integer(g->n_prompt));
    if (g->plp) {
        json_t *a = json_array();
        for (int i = 0; i < g->n_prompt - 1; i++) json_array_append_new(a, json_real(g->plp[i]));
        json_object_set_new(j, "prompt_logprobs", a);
        json_object_set_new(j, "prompt_perplexity", json_real(prompt_perplexity(g)));
    }
    json_object_set_new(j, "load_s", json_real(load_s));
    json_object_set_new(j, "prefill_tok_s", json_real(prefill_tps));
    json_object_set_new(j, "decode_tok_s", json_real(decode_tps));
    json_object_set_new(j, "peak_rss_mb", json_real(peak_rss_mb()));
    json_object_set_new(j, "isa", json_string(kern_level_name(kern_get_level())));
    json_object_set_new(j, "threads", json_integer(kern_threads()));
    json_object_set_new(j, "weights_mb", json_real((double)m->weight_bytes / (1 << 20)));
    char *s = json_dumps(j, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(j);
}

/* The result: --json, or the text (ids without a tokenizer) on stdout and the speeds on stderr. */
static void print_result(const gen_state *g, const run_opts *o, const tokenizer *tok, const model *m, double load_s) {
    double prefill_tps = g->prefill_s > 0 ? g->n_prompt / g->prefill_s : 0;
    double decode_tps = g->n_gen > 1 && g->decode_s > 0 ? (g->n_gen - 1) / g->decode_s : 0;
    if (o->json) {
        print_json(g, tok, m, load_s, prefill_tps, decode_tps);
        return;
    }
    if (tok) {
        char *text = decode_text(tok, g->gen, g->n_gen);
        printf("%s\n", text);
        free(text);
    } else {
        for (int i = 0; i < g->n_gen; i++) printf("%s%d", i ? "," : "", (int)g->gen[i]);
        printf("\n");
    }
    if (g->plp) fprintf(stderr, "prompt: %d tokens scored, perplexity %.4f\n", g->n_prompt - 1, prompt_perplexity(g));
    fprintf(stderr, "load %.2f s, prefill %d tokens at %.1f tok/s, decode %d tokens at %.2f tok/s, peak RSS %.0f MiB (%s, %d threads)\n",
            load_s, g->n_prompt, prefill_tps, g->n_gen, decode_tps, peak_rss_mb(), kern_level_name(kern_get_level()),
            kern_threads());
}

int main(int argc, char **argv) {
    log_set_program("baton-run");
    run_opts o;
    parse_args(argc, argv, &o);
    if (o.tokenize) return run_tokenize(&o);
    if (kern_init(o.threads) != 0) die("cannot start the kernels (see above)");
    if (o.exact) kern_set_precision(KERN_EXACT);

    char err[512];
    gpu_dev *gpu = NULL;
    int gpu_index;
    if (gpu_parse_device(o.device, &gpu_index) == GPU_DEVICE_VULKAN) {
        if (o.exact) die("--device vulkan runs the FAST arithmetic only (not --exact)");
        if (!(gpu = gpu_open(gpu_index, err, sizeof err))) die("--device %s: %s", o.device, err);
        forward_set_device(gpu);
    }
    double t0 = clock_s();
    model *m = model_load(o.model_path, NULL, err, sizeof err);
    if (!m) die("%s", err);
    if (model_apply_rope_opts(&m->hp, &o.rope, err, sizeof err) != 0) die("%s", err);
    double load_s = clock_s() - t0;
    if (o.info) {
        print_info(m);
        model_free(m);
        return 0;
    }
    int n_prompt;
    tokenizer *tok = o.prompt ? load_tokenizer(&o, m->file) : NULL;
    int32_t *prompt = tok ? encode_prompt(&o, tok, &n_prompt) : parse_tokens(o.tokens, &n_prompt);
    gen_state g;
    gen_start(&g, &o, m, prompt, n_prompt);
    decode(&g, &o, tok, prefill(&g, &o));
    print_result(&g, &o, tok, m, load_s);
    gen_end(&g);
    tok_free(tok);
    model_free(m);
    forward_set_device(NULL);
    gpu_close(gpu);
    kern_shutdown();
    return 0;
}
