/* baton-bench - every benchmark of Baton behind one binary; see tools/bench/bench.h. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cliparse.h"

#define MAX_BENCHES 32

static struct {
    const char *name, *help, *opts;
    bench_fn fn;
} benches[MAX_BENCHES];
static int n_benches;

void bench_register(const char *name, const char *help, const char *opts, bench_fn fn) {
    if (n_benches < MAX_BENCHES) {
        benches[n_benches].name = name;
        benches[n_benches].help = help;
        benches[n_benches].opts = opts;
        benches[n_benches].fn = fn;
        n_benches++;
    }
}

bool bench_want_json(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0) return true;
    return false;
}

int bench_int_opt(const char *name, const char *opt, const char *s, long long min, long long max, int *out) {
    long long v;
    char err[200];
    if (cli_int(s, min, max, &v, err, sizeof err) != 0) {
        fprintf(stderr, "baton-bench %s: %s: %s\n", name, opt, err);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int bench_float_opt(const char *name, const char *opt, const char *s, double min, double max, double *out) {
    char err[200];
    if (cli_float(s, min, max, out, err, sizeof err) != 0) {
        fprintf(stderr, "baton-bench %s: %s: %s\n", name, opt, err);
        return -1;
    }
    return 0;
}

typedef struct {
    const uint64_t *buf;
    size_t n;
    int reps;
    uint64_t sum;
} bw_job;

/* Sum a buffer of 64-bit words: the compiler vectorises this into plain loads, so
 * the time is the time to read it from memory. */
static void *bw_thread(void *arg) {
    bw_job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int r = 0; r < j->reps; r++)
        for (size_t i = 0; i + 4 <= j->n; i += 4) {
            s0 += j->buf[i];
            s1 += j->buf[i + 1];
            s2 += j->buf[i + 2];
            s3 += j->buf[i + 3];
        }
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

int bench_qwq_model(const char *who, const char *type, int layers, char *path, size_t len) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(path, len, "/tmp/baton-bench-qwq%d-%s.gguf", layers, type);
    if (access(path, R_OK) == 0) return 0;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s/baton-mkmodel' --preset qwq-32b --layers %d --vocab 1024 --type %s -o '%s.part' >/dev/null && "
             "mv '%s.part' '%s'",
             exe, layers, type, path, path, path);
    fprintf(stderr, "baton-bench %s: generating %s\n", who, path);
    return system(cmd) == 0 ? 0 : -1;
}

double bench_measure_bandwidth(int threads) {
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    const size_t per = (size_t)256 << 20; /* 256 MiB per thread: far beyond any cache */
    const int reps = 3;
    bw_job jobs[64];
    pthread_t tid[64];
    uint64_t *bufs[64];
    for (int t = 0; t < threads; t++) {
        bufs[t] = malloc(per);
        if (!bufs[t]) return 0;
        memset(bufs[t], t + 1, per);
        jobs[t] = (bw_job){bufs[t], per / 8, 1, 0};
    }
    for (int t = 0; t < threads; t++) bw_thread(&jobs[t]); /* warm the pages */
    double best = 0;
    for (int trial = 0; trial < 3; trial++) {
        double t0 = clock_s();
        for (int t = 0; t < threads; t++) {
            jobs[t].reps = reps;
            pthread_create(&tid[t], NULL, bw_thread, &jobs[t]);
        }
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        double gbs = (double)per * reps * threads / (clock_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    uint64_t sink = 0;
    for (int t = 0; t < threads; t++) {
        sink += jobs[t].sum;
        free(bufs[t]);
    }
    if (sink == 42) fputc(' ', stderr); /* keep the sums alive */
    return best;
}

static const char bandwidth_help[] = "memory read bandwidth with 1 and all threads";

static void usage(FILE *out) {
    fprintf(out, "usage: baton-bench BENCHMARK [options] [--json]\n"
                 "       baton-bench all [--json]\n\n"
                 "Every figure is printed next to a limit measured in the same run\n"
                 "(memory bandwidth, peak arithmetic, single-process baseline).\n\n"
                 "benchmarks:\n");
    for (int i = 0; i < n_benches; i++) fprintf(out, "  %-12s %s\n", benches[i].name, benches[i].help);
    fprintf(out, "  %-12s %s\n", "bandwidth", bandwidth_help);
    fprintf(out, "\n`baton-bench BENCHMARK --help` shows a benchmark's options.\n");
}

/* True when --help or -h is among the arguments. */
static bool wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return true;
    return false;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (wants_help(argc - 1, argv + 1)) {
        for (int i = 0; i < n_benches; i++)
            if (!strcmp(argv[1], benches[i].name)) {
                printf("usage: baton-bench %s %s [--json]\n%s\n", benches[i].name, benches[i].opts, benches[i].help);
                return 0;
            }
        if (!strcmp(argv[1], "bandwidth")) {
            printf("usage: baton-bench bandwidth [--json]\n%s\n", bandwidth_help);
            return 0;
        }
    }
    if (!strcmp(argv[1], "bandwidth")) {
        double one = bench_measure_bandwidth(1), all = bench_measure_bandwidth(0);
        if (bench_want_json(argc, argv))
            printf("{\"bandwidth_1thread_gbs\": %.2f, \"bandwidth_all_gbs\": %.2f}\n", one, all);
        else
            printf("memory read bandwidth: %.2f GB/s (1 thread), %.2f GB/s (all cores)\n", one, all);
        return 0;
    }
    int rc = 0;
    bool all = !strcmp(argv[1], "all");
    for (int i = 0; i < n_benches; i++) {
        if (all || !strcmp(argv[1], benches[i].name)) {
            int r = benches[i].fn(argc - 1, argv + 1);
            if (r) rc = r;
            if (!all) return r;
        }
    }
    if (!all) {
        fprintf(stderr, "baton-bench: unknown benchmark '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return rc;
}
