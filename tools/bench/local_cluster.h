/* local_cluster.h - a loopback cluster of child processes for the benchmarks
 * (`baton-bench cluster`, `baton-bench load`): a coordinator on 127.0.0.1:0 and
 * N workers, each with its output in DIR/coord.log and DIR/worker-K.log.
 *
 *     pid_t pids[1 + 16]; int n = 0; char addr[64];
 *     local_cluster_spec s = {.who = "load", .build = build, .dir = dir, .model = model, .workers = 3};
 *     if (local_cluster_start(&s, pids, &n, addr, sizeof addr) != 0 ||
 *         local_cluster_wait(addr, pids, n, 180) != 0) ... stop pids[0..n) ...
 *
 * The caller owns the processes: pids fills as each one starts (pids[0] the
 * coordinator), so a signal handler that reads it stops whatever exists.
 */
#ifndef BATON_BENCH_LOCAL_CLUSTER_H
#define BATON_BENCH_LOCAL_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct local_cluster_spec {
    const char *who;   /* the benchmark's name, in messages: "baton-bench WHO: ..." */
    const char *build; /* build folder: coordinator/baton-coord, worker/baton-worker */
    const char *dir;   /* where the logs go */
    const char *model;
    int workers;
    const char *const *coord_args;  /* more coordinator arguments, NULL-terminated (or NULL) */
    const char *const *worker_args; /* more arguments of every worker, NULL-terminated (or NULL) */
    const char *wrap;  /* a command line the daemons run under ("valgrind ..."), or NULL */
    double start_s;    /* how long the coordinator may take to listen */
    bool join_in_order; /* 100 ms between workers, so they join (and are numbered) in order */
} local_cluster_spec;

/* Starts argv[0] (a path, or a name looked up in PATH when wrap is set) with
 * stdout and stderr in `log` (created), under the words of `wrap` if not NULL.
 * Its pid, or -1 after printing why (prefixed with "baton-bench WHO"). */
pid_t local_spawn(const char *who, char *const argv[], const char *log, const char *wrap);

/* Starts the coordinator, waits for its "listening on" line (address into addr)
 * and starts the workers. 0, or -1 after printing why; either way pids[0, *n)
 * are the processes started, for the caller to stop. */
int local_cluster_start(const local_cluster_spec *s, pid_t *pids, int *n, char *addr, size_t addr_cap);

/* True while every one of pids[0, n) is alive (none has exited). */
bool local_cluster_alive(const pid_t *pids, int n);

/* Polls the health call at addr until the cluster serves (0), a process exits or
 * limit_s pass (-1, after printing why). */
int local_cluster_wait(const char *who, const char *addr, const pid_t *pids, int n, double limit_s);

#endif
