/* baton-coord - the coordinator: node registry, layer plan, client API, scheduler.
 * See coord.h for how a request flows. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliconf.h"
#include "cliparse.h"
#include "coord.h"
#include "log.h"
#include "net_mpi.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton-coord --listen HOST:PORT --model FILE [options]\n"
            "  --workers N        plan once N workers have joined (default 1)\n"
            "  --slots N          sequences served at once: KV slots on every worker (default 16)\n"
            "  --ctx N            positions per sequence (default: the model's, at most 4096)\n"
            "  --max-batch N      tokens per micro-batch (default 128)\n"
            "  --chunk N          prompt tokens per prefill chunk (default 64)\n"
            "  --inflight N       micro-batches in flight (default: stages + 1 while prompts wait, else stages)\n"
            "  --cluster-id ID    clients and workers must present it (default \"baton\")\n"
            "  --max-frame BYTES  largest frame accepted (default 256M; suffixes K, M, G)\n"
            "  --heartbeat-timeout MS  a worker silent this long is declared dead (default 3000)\n"
            "  --step-timeout MS  a micro-batch not back after this (plus 4x the plan's prediction for the\n"
            "                     tokens in flight) means a broken pipeline: re-plan and replay (default 10000)\n"
            "  --max-prompt-bytes BYTES  largest prompt text or chat accepted (default 8M)\n"
            "  --max-requests N   Generate calls queued, tokenising or running at once; more end at once\n"
            "                     with RESOURCE_EXHAUSTED (default 4096)\n"
            "  --max-prompt-memory BYTES  prompt memory of those calls, all clients (text while tokenising,\n"
            "                     then 4 bytes a token); beyond it RESOURCE_EXHAUSTED (default 512M)\n"
            "  --max-conn-prompt-memory BYTES  the same for one client connection (default 64M)\n"
            "  --rope-scaling none|yarn  RoPE scaling over the file's qwen2.rope.scaling.* keys; sent to\n"
            "                     every worker in its assignment (a worker computing another RoPE is left out)\n"
            "  --rope-scale F     YaRN factor (QwQ-32B: 4 for prompts beyond 8192 tokens)\n"
            "  --yarn-orig-ctx N  YaRN original context (default: the file's, else its context_length)\n"
            "  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "  --http-listen HOST:PORT  serve the OpenAI-compatible API (/v1/chat/completions,\n"
            "                     /v1/completions, /v1/models), /health, /metrics and the chat page at /\n"
            "  --handshake-timeout MS  close a connection not authenticated after MS (default 10000)\n"
            "  --idle-timeout MS  close a client connection idle (no request under way) for MS;\n"
            "                     0: never (default 300000)\n"
            "  --max-conns N      connections accepted at once (default 1024, at most the descriptor\n"
            "                     limit less 32); at the limit the oldest unauthenticated one is closed\n"
            "access control (files of at least 16 bytes; see README):\n"
            "  --secret FILE           cluster secret every worker must prove (default: $BATON_SECRET_FILE)\n"
            "  --admin-token-file FILE token admin connections must prove\n"
            "  --api-keys FILE         API keys, one per line: clients must prove one\n"
            "  --config FILE      read options from FILE (INI: [common] and [coordinator]; keys are these\n"
            "                     options without the dashes); options given here override it\n"
            "  --mpi              run under mpirun as rank 0: workers (ranks 1..N-1) join over MPI,\n"
            "                     clients still use --listen; --workers defaults to N-1\n");
    if (net_mpi_missing()) fprintf(out, "                     (not in this build: %s)\n", net_mpi_missing());
    if (metrics_http_missing())
        fprintf(out, "  --metrics-listen, --http-listen: not in this build: %s\n", metrics_http_missing());
}

/* The value of an integer option in [lo, hi]; a usage error (exit 2) otherwise. */
static int parse_int(const char *s, const char *what, int lo, int hi) {
    long long v;
    char err[200];
    if (cli_int(s, lo, hi, &v, err, sizeof err) != 0) log_exit(2, "%s: %s", what, err);
    return (int)v;
}

/* The value of a size option (suffixes K, M, G) in [lo, hi]; a usage error (exit 2) otherwise. */
static uint64_t parse_bytes(const char *s, const char *what, uint64_t lo, uint64_t hi) {
    uint64_t v;
    char err[200];
    if (cli_bytes(s, lo, hi, &v, err, sizeof err) != 0) log_exit(2, "%s: %s", what, err);
    return v;
}

static uv_signal_t sig_int, sig_term;
static int exit_code;

/* --mpi: starts MPI and adds "mpi" to the addresses listened on. 0, or -1 after
 * printing why. */
static int coord_mpi_setup(coord_opts *o, bool *workers_set, char *listen, size_t cap) {
    char err[256];
    if (net_mpi_init(err, sizeof err) != 0) {
        log_msg("%s", err);
        return -1;
    }
    if (net_mpi_rank() != 0 || net_mpi_size() < 2) {
        log_msg("--mpi needs to be rank 0 of at least 2 ranks (this is rank %d of %d)", net_mpi_rank(),
                net_mpi_size());
        return -1;
    }
    if (!*workers_set) o->want_workers = net_mpi_size() - 1;
    snprintf(listen, cap, "%s,mpi", o->listen);
    o->listen = listen;
    return 0;
}

/* Under MPI no other worker can join: once all ranks have joined and no plan
 * fits, end the job with that error instead of waiting. */
static void on_mpi_watch(uv_timer_t *t) {
    const coord *c = t->data;
    int joined = 0;
    for (const coord_node *n = c->nodes; n; n = n->next) joined++;
    if (joined < c->o.want_workers || c->planned || !c->plan_error[0]) return;
    log_msg("the %d worker rank(s) cannot hold the model: %s", joined, c->plan_error);
    exit_code = 1;
    uv_stop(t->loop);
}

static void coord_mpi_watch(coord *c, uv_loop_t *loop) {
    static uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = c;
    uv_timer_start(&t, on_mpi_watch, 100, 100);
}

static void on_signal(uv_signal_t *s, int signum) {
    log_msg("signal %d, shutting down", signum);
    uv_stop(s->loop);
}

int main(int argc, char **argv) {
    log_set_program("baton-coord");
    coord_opts o = {.listen = NULL, .cluster_id = "baton", .want_workers = 1, .n_slots = 16, .max_batch = 128,
                    .chunk = 64, .handshake_ms = 10000, .idle_ms = 300000, .max_conns = 1024, .rope = MODEL_ROPE_OPTS_UNSET};
    static const struct option longs[] = {
        {"listen", required_argument, 0, 'l'},    {"model", required_argument, 0, 'm'},
        {"workers", required_argument, 0, 'w'},   {"slots", required_argument, 0, 's'},
        {"ctx", required_argument, 0, 'c'},       {"max-batch", required_argument, 0, 'b'},
        {"chunk", required_argument, 0, 'k'},     {"inflight", required_argument, 0, 'i'},
        {"cluster-id", required_argument, 0, 'C'}, {"max-frame", required_argument, 0, 'F'},
        {"heartbeat-timeout", required_argument, 0, 'H'}, {"metrics-listen", required_argument, 0, 'M'},
        {"secret", required_argument, 0, 'S'},   {"admin-token-file", required_argument, 0, 'A'},
        {"api-keys", required_argument, 0, 'K'},  {"help", no_argument, 0, 'h'},
        {"mpi", no_argument, 0, 'P'},
        {"step-timeout", required_argument, 0, 't'}, {"max-prompt-bytes", required_argument, 0, 'B'},
        {"handshake-timeout", required_argument, 0, 'T'}, {"idle-timeout", required_argument, 0, 'I'},
        {"max-conns", required_argument, 0, 'N'},
        {"max-requests", required_argument, 0, 'q'}, {"max-prompt-memory", required_argument, 0, 'G'},
        {"max-conn-prompt-memory", required_argument, 0, 'g'},
        {"rope-scaling", required_argument, 0, 'R'}, {"rope-scale", required_argument, 0, 'r'},
        {"yarn-orig-ctx", required_argument, 0, 'Y'}, {"http-listen", required_argument, 0, 'L'},
        {"config", required_argument, 0, CLI_CONF_OPT},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    bool mpi = false, workers_set = false;
    char cerr[600];
    if (cli_conf_argv(argc, argv, longs, "coordinator", &argc, &argv, cerr, sizeof cerr) != 0) log_exit(2, "%s", cerr);
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        cli_conf_context(optind);
        switch (ch) {
        case CLI_CONF_OPT: break; /* read by cli_conf_argv */
        case 'l': o.listen = optarg; break;
        case 'm': o.model_path = optarg; break;
        case 'w': o.want_workers = parse_int(optarg, "--workers", 1, PLAN_MAX_NODES), workers_set = true; break;
        case 'P': mpi = true; break;
        case 's': o.n_slots = parse_int(optarg, "--slots", 1, 4096); break;
        case 'c': o.n_ctx = parse_int(optarg, "--ctx", 1, 1 << 24); break;
        case 'b': o.max_batch = parse_int(optarg, "--max-batch", 1, 1 << 16); break;
        case 'k': o.chunk = parse_int(optarg, "--chunk", 1, 1 << 16); break;
        case 'i': o.max_inflight = parse_int(optarg, "--inflight", 1, 1024); break;
        case 'C': o.cluster_id = optarg; break;
        case 'F': o.max_frame = parse_bytes(optarg, "--max-frame", 1024, 0x7fffffff); break;
        case 'H': o.heartbeat_timeout_ms = parse_int(optarg, "--heartbeat-timeout", 100, 3600000); break;
        case 'M': o.metrics_listen = optarg; break;
        case 'L': o.http_listen = optarg; break;
        case 't': o.step_timeout_ms = parse_int(optarg, "--step-timeout", 100, 86400000); break;
        case 'B': o.max_prompt_bytes = parse_bytes(optarg, "--max-prompt-bytes", 1, 1ull << 32); break;
        case 'q': o.max_requests = (uint32_t)parse_int(optarg, "--max-requests", 1, 1 << 24); break;
        case 'G': o.max_prompt_memory = parse_bytes(optarg, "--max-prompt-memory", 1, 1ull << 40); break;
        case 'g': o.max_conn_prompt_memory = parse_bytes(optarg, "--max-conn-prompt-memory", 1, 1ull << 40); break;
        case 'S': o.secret_file = optarg; break;
        case 'A': o.admin_token_file = optarg; break;
        case 'K': o.api_keys_file = optarg; break;
        case 'T': o.handshake_ms = (uint32_t)parse_int(optarg, "--handshake-timeout", 1, 3600000); break;
        case 'I': o.idle_ms = (uint32_t)parse_int(optarg, "--idle-timeout", 0, 0x7fffffff); break;
        case 'N': o.max_conns = (uint32_t)parse_int(optarg, "--max-conns", 1, 1 << 24); break;
        case 'R':
            if ((o.rope.type = model_rope_scaling_from_name(optarg)) < 0)
                log_exit(2, "--rope-scaling must be none or yarn, got '%s'", optarg);
            break;
        case 'r': {
            char perr[200];
            if (cli_float(optarg, 1.0000001, 1024, &o.rope.factor, perr, sizeof perr) != 0)
                log_exit(2, "--rope-scale: %s", perr);
            break;
        }
        case 'Y': o.rope.orig_ctx = (uint32_t)parse_int(optarg, "--yarn-orig-ctx", 1, 1 << 30); break;
        case 'h': usage(stdout); return 0;
        default: log_exit(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    cli_conf_context(0);
    if (optind < argc || !o.listen || !o.model_path)
        log_exit(2, "--listen HOST:PORT and --model FILE are required (see --help)");
    if (o.chunk > o.max_batch) o.chunk = o.max_batch;
    if (!o.secret_file) o.secret_file = getenv("BATON_SECRET_FILE");
    if (o.secret_file && !*o.secret_file) o.secret_file = NULL;
    char listen_mpi[300];
    if (mpi && coord_mpi_setup(&o, &workers_set, listen_mpi, sizeof listen_mpi) != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    static coord c;
    char err[512];
    if (coord_init(&c, &o, loop, err, sizeof err) != 0) log_die("%s", err);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    if (mpi) coord_mpi_watch(&c, loop);
    uv_run(loop, UV_RUN_DEFAULT);
    coord_free(&c);
    net_mpi_finalize();
    return exit_code;
}
