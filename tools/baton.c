/* baton - the client CLI: generate, chat, tokenize, health.
 *
 *   baton generate --server HOST:PORT (--prompt TEXT | --tokens 1,2,3 | --chat FILE) [options] [--json]
 *   baton chat     --server HOST:PORT [--system TEXT] [sampling options]
 *   baton tokenize --server HOST:PORT (--text TEXT | --tokens 1,2,3) [--special]
 *   baton health   --server HOST:PORT [--json]
 *
 * The exit code is the call's status (0 OK, 1 CANCELLED, 3 INVALID_ARGUMENT,
 * 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE, 16 UNAUTHENTICATED, ...); 2 also means a
 * usage error. A refused connection exits with the refusal's status.
 * --api-key KEY (or $BATON_API_KEY) proves an API key when the coordinator wants
 * one; --admin [--admin-token-file FILE] connects as an admin instead.
 * Ctrl-C (SIGINT) during a generation cancels the call (the cluster frees its
 * sequence) and exits with 1; a second Ctrl-C exits at once.
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baton_client.h"
#include "cliparse.h"
#include "log.h"

#define MAX_STOPS 16

typedef struct cli {
    const char *server, *cluster_id, *prompt, *tokens, *chat_file, *text, *system;
    const char *api_key, *admin_token_file;
    bool json, special, show_tokens, admin;
    baton_gen_params p;
    const char *stops[MAX_STOPS];
    int n_stops;
} cli;

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton COMMAND --server HOST:PORT [options]\n"
            "commands:\n"
            "  generate  (--prompt TEXT | --tokens 1,2,3 | --chat FILE.json) stream a completion\n"
            "  chat      interactive chat on stdin (one user message per line)\n"
            "  tokenize  (--text TEXT [--special] | --tokens 1,2,3) text to ids or ids to text\n"
            "  health    the cluster's workers, plan and slots\n"
            "options:\n"
            "  --max-tokens N  --temperature T  --top-k K  --top-p P  --min-p P  --seed S\n"
            "  --repeat-penalty R  --presence-penalty P  --frequency-penalty F  --penalty-last-n N\n"
            "  --stop STRING (repeatable)  --deadline-ms MS  --ignore-eos  --show-tokens\n"
            "  --prompt-logprobs  also score the prompt: the log-probability of each prompt token after\n"
            "                     the first, and their perplexity (with --json: prompt_logprobs, prompt_perplexity)\n"
            "  --system TEXT (chat)  --cluster-id ID  --json (one JSON object on stdout)\n"
            "  --api-key KEY (default: $BATON_API_KEY)  --admin  --admin-token-file FILE (implies --admin)\n"
            "exit code: the call's status (0 OK, 1 CANCELLED, 3 INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE,\n"
            "  16 UNAUTHENTICATED...)\n");
}

static int32_t *parse_ids(const char *s, size_t *n) {
    size_t cap = 16;
    int32_t *v = malloc(cap * sizeof *v);
    *n = 0;
    while (v && *s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x > 0x7fffffff) log_exit(2, "--tokens: bad id list near '%s'", s);
        if (*n == cap) {
            cap *= 2;
            v = realloc(v, cap * sizeof *v);
            if (!v) break;
        }
        v[(*n)++] = (int32_t)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') log_exit(2, "--tokens: bad id list near '%s'", end);
    }
    if (!v || !*n) log_exit(2, "--tokens: empty list");
    return v;
}

/* The value of a numeric option in [min, max]; a usage error (exit 2) otherwise. */
static long long int_opt(const char *s, const char *what, long long min, long long max) {
    long long v;
    char err[200];
    if (cli_int(s, min, max, &v, err, sizeof err) != 0) log_exit(2, "%s: %s", what, err);
    return v;
}
static float float_opt(const char *s, const char *what, double min, double max) {
    double v;
    char err[200];
    if (cli_float(s, min, max, &v, err, sizeof err) != 0) log_exit(2, "%s: %s", what, err);
    return (float)v;
}

/* exp of the mean negative log-probability of the scored prompt tokens (double, in order). */
static double prompt_perplexity(const baton_result *r) {
    double nll = 0;
    for (size_t i = 0; i < r->n_prompt_logprobs; i++) nll -= r->prompt_logprobs[i];
    return r->n_prompt_logprobs ? exp(nll / (double)r->n_prompt_logprobs) : 1.0;
}

static void parse(int argc, char **argv, cli *o) {
    enum { O_SERVER = 256, O_PROMPT, O_TOKENS, O_CHAT, O_TEXT, O_MAX, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_SEED, O_REP,
           O_PRES, O_FREQ, O_LASTN, O_STOP, O_DEADLINE, O_IGNORE, O_JSON, O_SPECIAL, O_SYSTEM, O_CLUSTER, O_SHOW,
           O_API_KEY, O_ADMIN, O_ADMIN_TOKEN, O_PROMPT_LP };
    static const struct option longs[] = {
        {"server", required_argument, 0, O_SERVER},     {"prompt", required_argument, 0, O_PROMPT},
        {"tokens", required_argument, 0, O_TOKENS},     {"chat", required_argument, 0, O_CHAT},
        {"text", required_argument, 0, O_TEXT},         {"max-tokens", required_argument, 0, O_MAX},
        {"temperature", required_argument, 0, O_TEMP},  {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},        {"min-p", required_argument, 0, O_MINP},
        {"seed", required_argument, 0, O_SEED},         {"repeat-penalty", required_argument, 0, O_REP},
        {"presence-penalty", required_argument, 0, O_PRES}, {"frequency-penalty", required_argument, 0, O_FREQ},
        {"penalty-last-n", required_argument, 0, O_LASTN}, {"stop", required_argument, 0, O_STOP},
        {"deadline-ms", required_argument, 0, O_DEADLINE}, {"ignore-eos", no_argument, 0, O_IGNORE},
        {"prompt-logprobs", no_argument, 0, O_PROMPT_LP},
        {"json", no_argument, 0, O_JSON},               {"special", no_argument, 0, O_SPECIAL},
        {"system", required_argument, 0, O_SYSTEM},     {"cluster-id", required_argument, 0, O_CLUSTER},
        {"show-tokens", no_argument, 0, O_SHOW},        {"api-key", required_argument, 0, O_API_KEY},
        {"admin", no_argument, 0, O_ADMIN},             {"admin-token-file", required_argument, 0, O_ADMIN_TOKEN},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case O_SERVER: o->server = optarg; break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_TOKENS: o->tokens = optarg; break;
        case O_CHAT: o->chat_file = optarg; break;
        case O_TEXT: o->text = optarg; break;
        case O_MAX: o->p.max_tokens = (uint32_t)int_opt(optarg, "--max-tokens", 1, INT32_MAX); break;
        case O_TEMP: o->p.temperature = float_opt(optarg, "--temperature", 0, 100); break;
        case O_TOPK: o->p.top_k = (int32_t)int_opt(optarg, "--top-k", 0, INT32_MAX); break;
        case O_TOPP: o->p.top_p = float_opt(optarg, "--top-p", 0, 1); break;
        case O_MINP: o->p.min_p = float_opt(optarg, "--min-p", 0, 1); break;
        case O_SEED: o->p.seed = (uint64_t)int_opt(optarg, "--seed", 0, INT64_MAX); break;
        /* 0 is the protocol's "unset" (read as 1, off); below it the sampler refuses */
        case O_REP: o->p.repetition_penalty = float_opt(optarg, "--repeat-penalty", 0, 100); break;
        case O_PRES: o->p.presence_penalty = float_opt(optarg, "--presence-penalty", -100, 100); break;
        case O_FREQ: o->p.frequency_penalty = float_opt(optarg, "--frequency-penalty", -100, 100); break;
        case O_LASTN: o->p.penalty_last_n = (int32_t)int_opt(optarg, "--penalty-last-n", 0, INT32_MAX); break;
        case O_STOP:
            if (o->n_stops == MAX_STOPS) log_exit(2, "at most %d --stop strings", MAX_STOPS);
            o->stops[o->n_stops++] = optarg;
            break;
        case O_DEADLINE: o->p.deadline_ms = (uint64_t)int_opt(optarg, "--deadline-ms", 0, INT32_MAX); break;
        case O_IGNORE: o->p.ignore_eos = true; break;
        case O_PROMPT_LP: o->p.prompt_logprobs = true; break;
        case O_JSON: o->json = true; break;
        case O_SPECIAL: o->special = true; break;
        case O_SYSTEM: o->system = optarg; break;
        case O_CLUSTER: o->cluster_id = optarg; break;
        case O_SHOW: o->show_tokens = true; break;
        case O_API_KEY: o->api_key = optarg; break;
        case O_ADMIN: o->admin = true; break;
        case O_ADMIN_TOKEN: o->admin_token_file = optarg, o->admin = true; break;
        case 'h': usage(stdout); exit(0);
        default: log_exit(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) log_exit(2, "unexpected argument '%s'", argv[optind]);
    if (!o->server) log_exit(2, "--server HOST:PORT is required");
    if (!o->api_key) o->api_key = getenv("BATON_API_KEY");
    if (o->api_key && !*o->api_key) o->api_key = NULL;
    o->p.stop = o->stops;
    o->p.n_stop = (size_t)o->n_stops;
}

static volatile sig_atomic_t interrupted;

/* First SIGINT: ask for a clean cancel; the next one kills as usual. */
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL);
}

typedef struct stream_state {
    bool text_mode, quiet;
    size_t n;
} stream_state;

/* Prints each chunk as it arrives: text when the server has a tokenizer, else ids. */
static int on_chunk(void *ctx, const baton_chunk *ch) {
    stream_state *s = ctx;
    if (interrupted) return 1;
    if (s->quiet) return 0;
    if (s->text_mode) {
        fwrite(ch->text, 1, ch->text_len, stdout);
    } else {
        for (size_t i = 0; i < ch->n_tokens; i++) printf("%s%d", s->n++ ? "," : "", (int)ch->tokens[i]);
    }
    fflush(stdout);
    return 0;
}

static void print_stats(const baton_result *r) {
    double prefill = r->prefill_s > 0 ? r->n_prompt / r->prefill_s : 0;
    double decode = r->n_tokens > 1 && r->decode_s > 0 ? (double)(r->n_tokens - 1) / r->decode_s : 0;
    fprintf(stderr, "[%u prompt tokens, %.1f tok/s prefill; %zu generated, %.2f tok/s decode; %s]\n",
            (unsigned)r->n_prompt, prefill, r->n_tokens, decode, r->finish_reason[0] ? r->finish_reason : "-");
}

/* Reads a JSON chat file: [{"role": "...", "content": "..."}, ...]. */
static baton_chat_msg *load_chat(const char *path, size_t *n, json_t **keep) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_array(j)) log_exit(2, "--chat %s: not a JSON array of messages (%s)", path, j ? "" : je.text);
    *n = json_array_size(j);
    baton_chat_msg *m = calloc(*n + 1, sizeof *m);
    for (size_t i = 0; m && i < *n; i++) {
        json_t *e = json_array_get(j, i);
        const char *role = json_string_value(json_object_get(e, "role"));
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!role || !content) log_exit(2, "--chat %s: message %zu needs string 'role' and 'content'", path, i);
        m[i] = (baton_chat_msg){role, content};
    }
    *keep = j;
    return m;
}

static int cmd_generate(baton_client *c, cli *o) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    json_t *chat_json = NULL;
    baton_chat_msg *msgs = NULL;
    int given = !!o->prompt + !!o->tokens + !!o->chat_file;
    if (given != 1) log_exit(2, "generate needs exactly one of --prompt, --tokens, --chat");
    if (o->tokens) {
        ids = parse_ids(o->tokens, &n_ids);
        o->p.tokens = ids;
        o->p.n_tokens = n_ids;
    } else if (o->prompt) {
        o->p.text = o->prompt;
    } else {
        msgs = load_chat(o->chat_file, &o->p.n_chat, &chat_json);
        o->p.chat = msgs;
    }
    stream_state ss = {.text_mode = !o->tokens && !o->show_tokens, .quiet = o->json};
    baton_model_info mi;
    char msg[256];
    if (!o->tokens && baton_model(c, &mi, msg, sizeof msg) == BATON_STATUS_OK && !mi.has_tokenizer)
        log_exit(BATON_STATUS_FAILED_PRECONDITION, "the server's model has no tokenizer: use --tokens");
    baton_result r;
    int st = baton_generate(c, &o->p, on_chunk, &ss, &r);
    if (o->json) {
        json_t *j = json_object(), *toks = json_array();
        for (size_t i = 0; i < r.n_tokens; i++) json_array_append_new(toks, json_integer(r.tokens[i]));
        json_object_set_new(j, "tokens", toks);
        json_object_set_new(j, "text", json_stringn(r.text ? r.text : "", r.text_len));
        json_object_set_new(j, "n_prompt", json_integer(r.n_prompt));
        json_object_set_new(j, "prefill_tok_s", json_real(r.prefill_s > 0 ? r.n_prompt / r.prefill_s : 0));
        json_object_set_new(j, "decode_tok_s",
                            json_real(r.n_tokens > 1 && r.decode_s > 0 ? (double)(r.n_tokens - 1) / r.decode_s : 0));
        json_object_set_new(j, "finish_reason", json_string(r.finish_reason));
        if (r.prompt_logprobs) {
            json_t *a = json_array();
            for (size_t i = 0; i < r.n_prompt_logprobs; i++) json_array_append_new(a, json_real(r.prompt_logprobs[i]));
            json_object_set_new(j, "prompt_logprobs", a);
            json_object_set_new(j, "prompt_perplexity", json_real(prompt_perplexity(&r)));
        }
        json_object_set_new(j, "status", json_string(baton_status_name(st)));
        json_object_set_new(j, "message", json_string(r.message));
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("\n");
        if (st == BATON_STATUS_OK) print_stats(&r);
        if (r.prompt_logprobs)
            fprintf(stderr, "prompt: %zu tokens scored, perplexity %.4f\n", r.n_prompt_logprobs, prompt_perplexity(&r));
    }
    if (st != BATON_STATUS_OK) log_msg("%s: %s", baton_status_name(st), r.message);
    baton_result_free(&r);
    free(ids);
    free(msgs);
    json_decref(chat_json);
    return st;
}

static int cmd_chat(baton_client *c, cli *o) {
    size_t cap = 64, n = 0;
    baton_chat_msg *msgs = calloc(cap, sizeof *msgs);
    char **owned = calloc(cap, sizeof *owned);
    if (!msgs || !owned) log_exit(BATON_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    if (o->system) msgs[n++] = (baton_chat_msg){"system", o->system};
    char line[8192];
    int st = BATON_STATUS_OK;
    fprintf(stderr, "> ");
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) {
            fprintf(stderr, "> ");
            continue;
        }
        if (n + 2 >= cap) log_exit(BATON_STATUS_RESOURCE_EXHAUSTED, "conversation too long");
        owned[n] = strdup(line);
        msgs[n] = (baton_chat_msg){"user", owned[n]};
        n++;
        baton_gen_params p = o->p;
        p.chat = msgs;
        p.n_chat = n;
        stream_state ss = {.text_mode = true};
        baton_result r;
        st = baton_generate(c, &p, on_chunk, &ss, &r);
        printf("\n");
        if (st != BATON_STATUS_OK) {
            log_msg("%s: %s", baton_status_name(st), r.message);
            baton_result_free(&r);
            break;
        }
        print_stats(&r);
        owned[n] = strdup(r.text);
        msgs[n] = (baton_chat_msg){"assistant", owned[n]};
        n++;
        baton_result_free(&r);
        fprintf(stderr, "> ");
    }
    for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(msgs);
    return st;
}

static int cmd_tokenize(baton_client *c, cli *o) {
    char msg[256];
    int st;
    if (o->text) {
        int32_t *ids;
        size_t n;
        st = baton_tokenize(c, o->text, o->special, &ids, &n, msg, sizeof msg);
        if (st == BATON_STATUS_OK) {
            for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", (int)ids[i]);
            printf("\n");
        }
        free(ids);
    } else if (o->tokens) {
        size_t n;
        int32_t *ids = parse_ids(o->tokens, &n);
        char *text;
        st = baton_detokenize(c, ids, n, &text, msg, sizeof msg);
        if (st == BATON_STATUS_OK) printf("%s\n", text);
        free(text);
        free(ids);
    } else {
        log_exit(2, "tokenize needs --text or --tokens");
    }
    if (st != BATON_STATUS_OK) log_msg("%s: %s", baton_status_name(st), msg);
    return st;
}

static int cmd_health(baton_client *c, cli *o) {
    baton_health_info h;
    char msg[256];
    int st = baton_health(c, &h, msg, sizeof msg);
    if (st != BATON_STATUS_OK) {
        log_msg("%s: %s", baton_status_name(st), msg);
        return st;
    }
    if (o->json) {
        json_t *j = json_object(), *nodes = json_array();
        json_object_set_new(j, "serving", json_boolean(h.serving));
        json_object_set_new(j, "workers", json_integer(h.n_workers));
        json_object_set_new(j, "active", json_integer(h.active_requests));
        json_object_set_new(j, "queued", json_integer(h.queued_requests));
        json_object_set_new(j, "plan_error", json_string(h.plan_error));
        for (size_t i = 0; i < h.n_nodes; i++) {
            const baton_node_info *n = &h.nodes[i];
            json_t *e = json_object();
            json_object_set_new(e, "id", json_integer(n->id));
            json_object_set_new(e, "address", json_string(n->address));
            json_object_set_new(e, "layer_begin", json_integer(n->layer_begin));
            json_object_set_new(e, "layer_end", json_integer(n->layer_end));
            json_object_set_new(e, "embed", json_boolean(n->embed));
            json_object_set_new(e, "head", json_boolean(n->head));
            json_object_set_new(e, "ready", json_boolean(n->ready));
            json_object_set_new(e, "slots_used", json_integer(n->slots_used));
            json_object_set_new(e, "kv_positions", json_integer((json_int_t)n->kv_positions));
            json_object_set_new(e, "peak_rss", json_integer((json_int_t)n->peak_rss));
            json_object_set_new(e, "weight_bytes", json_integer((json_int_t)n->weight_bytes));
            json_object_set_new(e, "kv_bytes", json_integer((json_int_t)n->kv_bytes));
            json_object_set_new(e, "hop_bytes", json_integer((json_int_t)n->hop_bytes));
            json_object_set_new(e, "hop_frames", json_integer((json_int_t)n->hop_frames));
            json_object_set_new(e, "busy_us", json_integer((json_int_t)n->busy_us));
            json_object_set_new(e, "queue_peak", json_integer((json_int_t)n->queue_peak));
            json_array_append_new(nodes, e);
        }
        json_object_set_new(j, "nodes", nodes);
        char *s = json_dumps(j, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("%s, %u worker(s), %u active, %u queued%s%s\n", h.serving ? "serving" : "not serving",
               (unsigned)h.n_workers, (unsigned)h.active_requests, (unsigned)h.queued_requests,
               h.plan_error[0] ? "; plan: " : "", h.plan_error);
        for (size_t i = 0; i < h.n_nodes; i++) {
            const baton_node_info *n = &h.nodes[i];
            char what[64];
            /* a worker outside the plan holds no layers: not "[0,0) loading" but its state (idle, drained...) */
            if (n->layer_end <= n->layer_begin)
                snprintf(what, sizeof what, "no layers, %s", n->state[0] ? n->state : "idle");
            else
                snprintf(what, sizeof what, "layers [%d,%d)%s%s %s", (int)n->layer_begin, (int)n->layer_end,
                         n->embed ? " +embed" : "", n->head ? " +head" : "", n->ready ? "ready" : "loading");
            printf("  worker %u %s %s, slots %u, weights %.1f MiB, KV %.1f MiB, peak RSS %.1f MiB\n", (unsigned)n->id,
                   n->address, what, (unsigned)n->slots_used, (double)n->weight_bytes / 1048576.0,
                   (double)n->kv_bytes / 1048576.0, (double)n->peak_rss / 1048576.0);
        }
    }
    baton_health_free(&h);
    return st;
}

int main(int argc, char **argv) {
    log_set_program("baton");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    cli o;
    memset(&o, 0, sizeof o);
    o.p = baton_gen_defaults();
    parse(argc - 1, argv + 1, &o);
    char err[512];
    baton_connect_opts co = {.cluster_id = o.cluster_id, .api_key = o.api_key, .admin = o.admin};
    char *token = NULL;
    if (o.admin_token_file) {
        int rc = auth_cred_read(o.admin_token_file, "admin token", &token, err, sizeof err);
        if (rc < 0) log_exit(BATON_STATUS_INVALID_ARGUMENT, "%s", err);
        if (rc > 0) log_msg("%s", err);
        co.admin_token = token;
    }
    int status;
    baton_client *c = baton_connect_with(o.server, &co, &status, err, sizeof err);
    auth_cred_free(token);
    if (!c) log_exit(status, "%s: %s", baton_status_name(status), err);
    signal(SIGINT, on_sigint);
    int st;
    if (!strcmp(cmd, "generate")) st = cmd_generate(c, &o);
    else if (!strcmp(cmd, "chat")) st = cmd_chat(c, &o);
    else if (!strcmp(cmd, "tokenize")) st = cmd_tokenize(c, &o);
    else if (!strcmp(cmd, "health")) st = cmd_health(c, &o);
    else log_exit(2, "unknown command '%s' (generate, chat, tokenize, health)", cmd);
    baton_close(c);
    return st;
}
