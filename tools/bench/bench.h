/* bench.h - how a benchmark joins baton-bench.
 *
 * Each tools/bench/NAME.c defines its entry point and registers it:
 *
 *     static int bench_codec(int argc, char **argv) { ... }
 *     BENCH_REGISTER(codec, "activation codecs: bytes per token, GB/s, logit error",
 *                    "--model FILE [--steps S]", bench_codec)
 *
 * `baton-bench codec [args]` then runs it; `baton-bench` alone lists them all and
 * `baton-bench all` runs every one with default arguments. Figures are printed as
 * ratios to limits measured in the same run (bench_measure_bandwidth and friends),
 * as a table, or as one JSON object with --json.
 */
#ifndef BATON_BENCH_H
#define BATON_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "clock.h" /* time benchmarks with clock_s() */

typedef int (*bench_fn)(int argc, char **argv);

/* `opts`: the benchmark's options, shown by `baton-bench NAME --help`. */
void bench_register(const char *name, const char *help, const char *opts, bench_fn fn);

#define BENCH_REGISTER(name, help, opts, fn)                               \
    __attribute__((constructor)) static void bench_register_##name(void) { \
        bench_register(#name, help, opts, fn);                             \
    }

/* True when --json is among the arguments. */
bool bench_want_json(int argc, char **argv);
/* Memory read bandwidth of this machine, GB/s, measured over `threads` threads
 * (0: all cores) by streaming a buffer far larger than the caches. */
double bench_measure_bandwidth(int threads);

/* Benchmark `name`'s numeric option `opt`, given as text s, in [min, max]
 * (cliparse.h): 0 with the value in *out, or -1 after printing
 * "baton-bench NAME: OPT: why" (the benchmark then returns 2, a usage error). */
int bench_int_opt(const char *name, const char *opt, const char *s, long long min, long long max, int *out);
int bench_float_opt(const char *name, const char *opt, const char *s, double min, double max, double *out);

/* A generated qwq-32b-shaped model of `layers` layers, vocabulary 1024, of
 * `type` (a baton-mkmodel --type): its path /tmp/baton-bench-qwqL-TYPE.gguf in
 * path[len], made once by the baton-mkmodel next to this binary (under a
 * temporary name, so an interrupted run leaves no partial file) and reused by
 * later runs. `who` names the benchmark in the progress line. 0 or -1. */
int bench_qwq_model(const char *who, const char *type, int layers, char *path, size_t len);

#endif
