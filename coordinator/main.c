/* baton-coord - the coordinator: node registry, layer plan, client API, scheduler.
 * See coord.h for how a request flows. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton-coord --listen HOST:PORT --model FILE [options]\n"
            "  --workers N        plan once N workers have joined (default 1)\n"
            "  --slots N          sequences served at once: KV slots on every worker (default 16)\n"
            "  --ctx N            positions per sequence (default: the model's, at most 4096)\n"
            "  --max-batch N      tokens per micro-batch (default 128)\n"
            "  --chunk N          prompt tokens per prefill chunk (default 64)\n"
            "  --inflight N       micro-batches in flight (default: stages + 1)\n"
            "  --cluster-id ID    clients and workers must present it (default \"baton\")\n"
            "  --max-frame BYTES  largest frame accepted (default 268435456)\n"
            "  --heartbeat-timeout MS  a worker silent this long is declared dead (default 3000)\n"
            "  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "access control (files of at least 16 bytes; see README):\n"
            "  --secret FILE           cluster secret every worker must prove (default: $BATON_SECRET_FILE)\n"
            "  --admin-token-file FILE token admin connections must prove\n"
            "  --api-keys FILE         API keys, one per line: clients must prove one\n");
}

static int parse_int(const char *s, const char *what, int lo, int hi) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "baton-coord: %s must be an integer in [%d, %d], got '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return (int)v;
}

static uv_signal_t sig_int, sig_term;

static void on_signal(uv_signal_t *s, int signum) {
    fprintf(stderr, "baton-coord: signal %d, shutting down\n", signum);
    uv_stop(s->loop);
}

int main(int argc, char **argv) {
    coord_opts o = {.listen = NULL, .cluster_id = "baton", .want_workers = 1, .n_slots = 16, .max_batch = 128,
                    .chunk = 64};
    static const struct option longs[] = {
        {"listen", required_argument, 0, 'l'},    {"model", required_argument, 0, 'm'},
        {"workers", required_argument, 0, 'w'},   {"slots", required_argument, 0, 's'},
        {"ctx", required_argument, 0, 'c'},       {"max-batch", required_argument, 0, 'b'},
        {"chunk", required_argument, 0, 'k'},     {"inflight", required_argument, 0, 'i'},
        {"cluster-id", required_argument, 0, 'C'}, {"max-frame", required_argument, 0, 'F'},
        {"heartbeat-timeout", required_argument, 0, 'H'}, {"metrics-listen", required_argument, 0, 'M'},
        {"secret", required_argument, 0, 'S'},   {"admin-token-file", required_argument, 0, 'A'},
        {"api-keys", required_argument, 0, 'K'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'l': o.listen = optarg; break;
        case 'm': o.model_path = optarg; break;
        case 'w': o.want_workers = parse_int(optarg, "--workers", 1, PLAN_MAX_NODES); break;
        case 's': o.n_slots = parse_int(optarg, "--slots", 1, 4096); break;
        case 'c': o.n_ctx = parse_int(optarg, "--ctx", 1, 1 << 24); break;
        case 'b': o.max_batch = parse_int(optarg, "--max-batch", 1, 1 << 16); break;
        case 'k': o.chunk = parse_int(optarg, "--chunk", 1, 1 << 16); break;
        case 'i': o.max_inflight = parse_int(optarg, "--inflight", 1, 1024); break;
        case 'C': o.cluster_id = optarg; break;
        case 'F': o.max_frame = (uint64_t)parse_int(optarg, "--max-frame", 1024, 0x7fffffff); break;
        case 'H': o.heartbeat_timeout_ms = parse_int(optarg, "--heartbeat-timeout", 100, 3600000); break;
        case 'M': o.metrics_listen = optarg; break;
        case 'S': o.secret_file = optarg; break;
        case 'A': o.admin_token_file = optarg; break;
        case 'K': o.api_keys_file = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "baton-coord: unknown or incomplete option '%s' (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc || !o.listen || !o.model_path) {
        fprintf(stderr, "baton-coord: --listen HOST:PORT and --model FILE are required (see --help)\n");
        return 2;
    }
    if (o.chunk > o.max_batch) o.chunk = o.max_batch;
    if (!o.secret_file) o.secret_file = getenv("BATON_SECRET_FILE");
    if (o.secret_file && !*o.secret_file) o.secret_file = NULL;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    static coord c;
    char err[512];
    if (coord_init(&c, &o, loop, err, sizeof err) != 0) {
        fprintf(stderr, "baton-coord: %s\n", err);
        return 1;
    }
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    coord_free(&c);
    return 0;
}
