/* baton-coord - the coordinator: node registry, layer plan, client API, scheduler.
 * See coord.h for how a request flows. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliconf.h"
#include "coord_args.h"
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
    coord_args a = coord_args_defaults();
    opterr = 0;
    int ch;
    char cerr[600];
    if (cli_conf_argv(argc, argv, coord_args_options, "coordinator", &argc, &argv, cerr, sizeof cerr) != 0)
        log_exit(2, "%s", cerr);
    while ((ch = getopt_long(argc, argv, "h", coord_args_options, NULL)) != -1) {
        cli_conf_context(optind);
        if (ch == 'h') {
            usage(stdout);
            return 0;
        }
        if (coord_args_apply(&a, ch, optarg, cerr, sizeof cerr) != 0) {
            if (ch == '?' || ch == ':') log_exit(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
            log_exit(2, "%s", cerr);
        }
    }
    cli_conf_context(0);
    coord_opts o = a.o;
    bool mpi = a.mpi, workers_set = a.workers_set;
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
