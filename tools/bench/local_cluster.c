/* local_cluster.c - a loopback cluster of child processes; see local_cluster.h. */
#include "local_cluster.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baton_client.h"
#include "clock.h"

extern char **environ;

#define LC_MAX_ARGS 128

pid_t local_spawn(const char *who, char *const argv[], const char *log, const char *wrap) {
    char *args[LC_MAX_ARGS], buf[1024];
    int k = 0;
    if (wrap && *wrap) {
        snprintf(buf, sizeof buf, "%s", wrap);
        for (char *tok = strtok(buf, " "); tok && k < LC_MAX_ARGS / 2; tok = strtok(NULL, " ")) args[k++] = tok;
    }
    for (int i = 0; argv[i] && k < LC_MAX_ARGS - 1; i++) args[k++] = argv[i];
    args[k] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, args[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "baton-bench %s: cannot start %s: %s\n", who, args[0], strerror(rc));
        return -1;
    }
    return pid;
}

bool local_cluster_alive(const pid_t *pids, int n) {
    for (int i = 0; i < n; i++)
        if (waitpid(pids[i], NULL, WNOHANG) != 0) return false;
    return true;
}

/* The port of the coordinator's "listening on 127.0.0.1:PORT" line in log, or 0. */
static int lc_port(const char *log) {
    static const char key[] = "listening on 127.0.0.1:";
    FILE *f = fopen(log, "r");
    char line[1024];
    int port = 0;
    while (f && !port && fgets(line, sizeof line, f)) {
        char *p = strstr(line, key);
        if (p) port = atoi(p + strlen(key));
    }
    if (f) fclose(f);
    return port;
}

/* argv: head (NULL-terminated), then more (NULL-terminated, may be NULL), then NULL. */
static void lc_argv(char **argv, int cap, char *const *head, const char *const *more) {
    int n = 0;
    for (int i = 0; head[i] && n < cap - 1; i++) argv[n++] = head[i];
    for (int i = 0; more && more[i] && n < cap - 1; i++) argv[n++] = (char *)more[i];
    argv[n] = NULL;
}

int local_cluster_start(const local_cluster_spec *s, pid_t *pids, int *n, char *addr, size_t addr_cap) {
    char coord[4200], worker[4200], log[4200], nw[16], *argv[LC_MAX_ARGS];
    snprintf(coord, sizeof coord, "%s/coordinator/baton-coord", s->build);
    snprintf(worker, sizeof worker, "%s/worker/baton-worker", s->build);
    snprintf(nw, sizeof nw, "%d", s->workers);
    *n = 0;
    addr[0] = 0;
    char *chead[] = {coord, "--listen", "127.0.0.1:0", "--model", (char *)s->model, "--workers", nw, NULL};
    lc_argv(argv, LC_MAX_ARGS, chead, s->coord_args);
    snprintf(log, sizeof log, "%s/coord.log", s->dir);
    pid_t pid = local_spawn(s->who, argv, log, s->wrap);
    if (pid < 0) return -1;
    pids[(*n)++] = pid;
    for (double t0 = clock_s();; usleep(20000)) {
        int port = lc_port(log);
        if (port > 0) {
            snprintf(addr, addr_cap, "127.0.0.1:%d", port);
            break;
        }
        if (!local_cluster_alive(pids, *n) || clock_s() - t0 > s->start_s) {
            fprintf(stderr, "baton-bench %s: the coordinator did not start\n", s->who);
            return -1;
        }
    }
    for (int i = 0; i < s->workers; i++) {
        snprintf(log, sizeof log, "%s/worker-%d.log", s->dir, i + 1);
        char *whead[] = {worker, "--coordinator", addr, "--model", (char *)s->model, NULL};
        lc_argv(argv, LC_MAX_ARGS, whead, s->worker_args);
        if ((pid = local_spawn(s->who, argv, log, s->wrap)) < 0) return -1;
        pids[(*n)++] = pid;
        if (s->join_in_order) usleep(100000);
    }
    return 0;
}

int local_cluster_wait(const char *who, const char *addr, const pid_t *pids, int n, double limit_s) {
    char err[256] = "";
    for (double t0 = clock_s(); clock_s() - t0 < limit_s; usleep(50000)) {
        if (!local_cluster_alive(pids, n)) {
            snprintf(err, sizeof err, "a daemon exited");
            break;
        }
        baton_client *c = baton_connect(addr, NULL, err, sizeof err);
        if (!c) continue;
        baton_health_info h;
        int st = baton_health(c, &h, err, sizeof err);
        baton_close(c);
        if (st != BATON_STATUS_OK) continue;
        bool serving = h.serving;
        baton_health_free(&h);
        if (serving) return 0;
    }
    fprintf(stderr, "baton-bench %s: the cluster did not start serving (%s)\n", who, err);
    return -1;
}
