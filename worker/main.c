/* baton-worker - one stage of the pipeline: its options, then worker_run
 * (worker.h says what a worker does). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cliconf.h"
#include "cliparse.h"
#include "codec.h"
#include "hop.h"
#include "log.h"
#include "net_mpi.h"
#include "ops.h"
#include "proc.h"
#include "worker_args.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: baton-worker --coordinator HOST:PORT --model FILE [options]\n"
            "  --listen HOST:PORT   where the predecessor stage connects (default 127.0.0.1:0, any port)\n"
            "  --threads N          kernel threads (default: one per core)\n"
            "  --device D           where the slice runs: cpu (default), vulkan, vulkan:N (a Vulkan GPU,\n"
            "                       the same numbers as the CPU); list: print the Vulkan devices and exit\n"
            "  --memory BYTES       memory this worker offers (default: MemAvailable); suffixes K, M, G\n"
            "  --speed S            seconds per layer to report instead of measuring\n"
            "  --kv f16|f32|q8_0    KV-cache type (default f16; q8_0: 32-value blocks with an f16 scale,\n"
            "                       about half of f16's bytes; reported in Join, the planner counts it)\n"
            "  --cluster-id ID      must match the coordinator's (default \"baton\")\n"
            "  --max-frame BYTES    largest frame accepted (default 256M)\n"
            "  --secret FILE        cluster secret, as given to the coordinator (default: $BATON_SECRET_FILE)\n"
            "  --queue-limit BYTES  stop taking frames while this much waits for the successor (default 32M)\n"
            "  --handshake-timeout MS  close a connection not authenticated after MS (default 10000)\n"
            "  --idle-timeout MS    close an accepted client or admin connection idle for MS; 0: never\n"
            "                       (default 0; the stage port accepts peers only)\n"
            "  --max-conns N        connections the stage port accepts at once (default 1024, at most the\n"
            "                       descriptor limit less 32); at the limit the oldest unauthenticated one goes\n"
            "  --config FILE        read options from FILE (INI: [common] and [worker]; keys are these\n"
            "                       options without the dashes); options given here override it\n"
            "  --measure            time layer 0 of --model with --threads and print this machine's [node]\n"
            "                       section for a pool file (batonctl plan --pool), then exit\n"
            "  --mpi                run under mpirun: the coordinator is rank 0 (mpi:0), stage frames\n"
            "                       arrive on mpi:<this rank>; --coordinator and --listen are then not needed\n");
    if (net_mpi_missing()) fprintf(out, "                       (not in this build: %s)\n", net_mpi_missing());
    fprintf(out,
            "  --codec NAME         activations to the successor: f32+lz4 (default, lossless), f32, f16, bf16,\n"
            "                       q8, f16+lz4, bf16+lz4, q8+lz4 (if the successor does not decode it: f32+lz4)\n");
}

/* The options of the command line into o; --help prints the usage and exits 0,
 * --device list prints the devices and exits, a bad option exits 1 with a message. */
static void parse_args(int argc, char **argv, worker_opts *o) {
    worker_args a = worker_args_defaults();
    opterr = 0;
    int ch;
    char cerr[600];
    if (cli_conf_argv(argc, argv, worker_args_options, "worker", &argc, &argv, cerr, sizeof cerr) != 0)
        log_die("%s", cerr);
    while ((ch = getopt_long(argc, argv, "h", worker_args_options, NULL)) != -1) {
        cli_conf_context(optind);
        if (ch == 'h') {
            usage(stdout);
            exit(0);
        }
        if (ch == '?' || ch == ':') log_die("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        if (worker_args_apply(&a, ch, optarg, cerr, sizeof cerr) != 0) log_die("%s", cerr);
    }
    cli_conf_context(0);
    if (optind < argc) log_die("unexpected argument '%s'", argv[optind]);
    if (a.list_devices) exit(gpu_list(stdout) > 0 ? 0 : 1);
    if (a.queue_limit) net_set_water_marks((size_t)a.queue_limit, (size_t)(a.queue_limit / 4));
    *o = a.o;
}

#define MEASURE_BATCH 16

/* Seconds of this thread's CPU time. */
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The stage codec's cost on this machine: hop_encode on the sender plus hop_decode
 * on the receiver (checksums included) of 4 rows of `width` floats shaped like
 * hidden states (no long repeats), in CPU seconds per byte of f32 (best of 20). */
static double measure_codec(int codec, uint32_t width) {
    const size_t rows = 4, n = rows * width;
    float *x = malloc(n * sizeof *x);
    double best = -1;
    uint64_t st = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; x && i < n; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        x[i] = (float)((int64_t)(st >> 40) - (1 << 23)) / (float)(1 << 22) * (i % 64 == 0 ? 20.0f : 1.0f);
    }
    for (int it = 0; x && it < 20; it++) {
        Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
        f.token_count = (uint32_t)rows;
        f.width = width;
        hop_payload pl;
        float *back = NULL;
        size_t back_len = 0;
        double t0 = thread_cpu_s();
        if (hop_encode(&f, codec, x, n * sizeof *x, &pl, NULL, 0) != 0) break;
        int rc = hop_decode(&f, pl.data, pl.len, &back, &back_len, NULL, 0);
        double dt = thread_cpu_s() - t0;
        hop_payload_free(&pl);
        free(back);
        if (rc != 0) break;
        if (best < 0 || dt < best) best = dt;
    }
    free(x);
    return best < 0 ? 0 : best / (double)(n * sizeof(float));
}

/* --measure: this machine's [node] section for a pool file (see batonctl plan).
 * membw and gflops fit t(M) = bytes / membw + M x 2 x params / flops through the
 * passes of 1 and MEASURE_BATCH tokens; exit status 0, or 1 with a message. */
static int measure_node(const worker_opts *o) {
    if (!o->model_path) log_die("--measure needs --model FILE (any model of the type to plan; a 4-layer slice will do)");
    if (kern_init(o->threads) != 0) log_die("cannot start the kernels");
    char err[512], host[256] = "this-machine";
    uint64_t bytes = 0, params = 0;
    uint32_t width = 0;
    double t1 = worker_measure_layer(o->model_path, 1, &bytes, &params, &width, err, sizeof err);
    double tm = t1 < 0 ? -1 : worker_measure_layer(o->model_path, MEASURE_BATCH, NULL, NULL, NULL, err, sizeof err);
    if (t1 < 0 || tm < 0) log_die("%s", err);
    double per_tok = (tm - t1) / (MEASURE_BATCH - 1);
    if (per_tok < t1 * 0.01) per_tok = t1 * 0.01; /* the batch was not measurably slower: a bound, not a figure */
    double fixed = t1 - per_tok > t1 * 0.05 ? t1 - per_tok : t1 * 0.05;
    gethostname(host, sizeof host - 1);
    uint64_t mem = o->memory ? o->memory : proc_mem_available();
    printf("; baton-worker --measure: layer 0 of %s (%.1f MiB, %.3g M parameters), %d thread(s):\n"
           ";   1 token %.3f ms, %d tokens %.3f ms\n",
           o->model_path, (double)bytes / 1048576.0, (double)params / 1e6, kern_threads(), t1 * 1e3, MEASURE_BATCH,
           tm * 1e3);
    printf("[node %s]\nmemory = %.2fG\ncores = %d\nmembw = %.3fG\ngflops = %.2f\nlink = 1G\ncodec-ns-per-byte = %.3f\n",
           host, (double)mem / 1073741824.0, kern_threads(), (double)bytes / fixed / 1e9,
           2.0 * (double)params / per_tok / 1e9, measure_codec(o->codec, width) * 1e9);
    return 0;
}

int main(int argc, char **argv) {
    log_set_program("baton-worker");
    worker_opts o;
    parse_args(argc, argv, &o);
    if (o.measure) return measure_node(&o);
    char err[512];
    char mpi_listen[32];
    if (o.mpi) { /* the coordinator is rank 0, stage frames come to our rank */
        if (net_mpi_init(err, sizeof err) != 0) log_die("%s", err);
        snprintf(mpi_listen, sizeof mpi_listen, "mpi:%d", net_mpi_rank());
        o.coordinator = "mpi:0";
        o.listen = mpi_listen;
    }
    if (!o.coordinator || !o.model_path) log_die("--coordinator and --model are required (see --help)");
    if (!o.secret_file) o.secret_file = getenv("BATON_SECRET_FILE");
    if (o.secret_file && !*o.secret_file) o.secret_file = NULL;
    static worker w;
    if (worker_init(&w, &o, uv_default_loop(), err, sizeof err) != 0) log_die("%s", err);
    int status = worker_run(&w);
    worker_free(&w);
    net_mpi_finalize();
    return status;
}
