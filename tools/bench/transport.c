/* transport.c - `baton-bench transport`: the same cluster (coordinator + 2
 * workers on this machine) with stage frames over TCP and over MPI; prefill and
 * decode tokens/s of each, and MPI/TCP as a ratio.
 *
 *   baton-bench transport [--model M.gguf] [--prompt N] [--gen N] [--reps R] [--threads T] [--json]
 *
 * Without --model it writes the 4-layer QwQ-32B-shaped model (q8_0, vocabulary
 * 1024, about 2 GB) into a temporary folder under /tmp and deletes it after.
 * Both clusters run at once as child processes (baton-coord/baton-worker, and
 * mpirun -np 3 baton-mpi), driven in turns through the client library so that
 * load from elsewhere falls on both; every worker reports the same speed, so both
 * get the same plan. Each figure is the best of R rounds, server-side times
 * (receipt to first token, first to last).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "baton_client.h"
#include "bench.h"

#define TB_MAX_PIDS 4
#define TR_SPEED "0.01" /* s/layer every worker reports: the same plan in both modes, whatever the load */

typedef struct tr_cluster {
    pid_t pids[TB_MAX_PIDS]; /* pids[0]: coordinator, or mpirun */
    int n;
    char addr[64];
} tr_cluster;

typedef struct tr_result {
    double prefill_tok_s, decode_tok_s;
} tr_result;

static char tr_bin[PATH_MAX - 64]; /* the build folder (parent of tools/) */

static void tr_find_bin(void) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(tr_bin, sizeof tr_bin, ".");
        return;
    }
    self[n] = 0;
    snprintf(tr_bin, sizeof tr_bin, "%s", dirname(dirname(self)));
}

/* Starts argv with stdout and stderr to log; the pid, or -1. */
static pid_t tr_spawn(char *const argv[], const char *log) {
    pid_t p = fork();
    if (p != 0) return p;
    FILE *f = freopen(log, "a", stdout);
    if (f) dup2(fileno(stdout), 2);
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Waits for "listening on 127.0.0.1:PORT" in the log; 0 with addr set, or -1. */
static int tr_wait_port(const char *log, pid_t pid, char *addr, size_t cap) {
    for (int i = 0; i < 1200; i++) {
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "listening on 127.0.0.1:");
            if (p) {
                snprintf(addr, cap, "127.0.0.1:%d", atoi(p + 23));
                fclose(f);
                return 0;
            }
        }
        if (f) fclose(f);
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        usleep(50000);
    }
    return -1;
}

/* Polls health until the plan serves; 0, or -1 after timeout_s. */
static int tr_wait_serving(const char *addr, int timeout_s) {
    for (int i = 0; i < timeout_s * 10; i++) {
        char err[256];
        baton_client *c = baton_connect(addr, "baton", err, sizeof err);
        bool ok = false;
        if (c) {
            baton_health_info h;
            if (baton_health(c, &h, err, sizeof err) == 0) {
                ok = h.serving;
                baton_health_free(&h);
            }
            baton_close(c);
        }
        if (ok) return 0;
        usleep(100000);
    }
    return -1;
}

static void tr_stop(tr_cluster *cl) {
    for (int i = cl->n - 1; i >= 0; i--) kill(cl->pids[i], SIGTERM);
    for (int i = 0; i < cl->n; i++) {
        int st;
        for (int k = 0; k < 100 && waitpid(cl->pids[i], &st, WNOHANG) == 0; k++) usleep(50000);
        if (waitpid(cl->pids[i], &st, WNOHANG) == 0) {
            kill(cl->pids[i], SIGKILL);
            waitpid(cl->pids[i], &st, 0);
        }
    }
    cl->n = 0;
}

static int tr_start(tr_cluster *cl, bool mpi, const char *model, const char *threads, const char *dir) {
    char coord[PATH_MAX], worker[PATH_MAX], launch[PATH_MAX], log[PATH_MAX];
    snprintf(coord, sizeof coord, "%s/coordinator/baton-coord", tr_bin);
    snprintf(worker, sizeof worker, "%s/worker/baton-worker", tr_bin);
    snprintf(launch, sizeof launch, "%s/tools/baton-mpi", tr_bin);
    snprintf(log, sizeof log, "%s/%s.log", dir, mpi ? "mpi" : "tcp");
    cl->n = 0;
    const char *copts[] = {"--ctx", "1024", "--slots", "2", "--chunk", "64"};
    if (mpi) {
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
        setenv("OMPI_MCA_btl", "self,vader", 0);
        char *argv[] = {"mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "3", launch,
                        "--model", (char *)model, "--listen", "127.0.0.1:0", "--worker-threads", (char *)threads,
                        "--worker-speed", TR_SPEED,
                        (char *)copts[0], (char *)copts[1], (char *)copts[2], (char *)copts[3], (char *)copts[4],
                        (char *)copts[5], NULL};
        cl->pids[cl->n++] = tr_spawn(argv, log);
        return tr_wait_port(log, cl->pids[0], cl->addr, sizeof cl->addr);
    }
    char *argv[] = {coord, "--listen", "127.0.0.1:0", "--model", (char *)model, "--workers", "2", (char *)copts[0],
                    (char *)copts[1], (char *)copts[2], (char *)copts[3], (char *)copts[4], (char *)copts[5], NULL};
    cl->pids[cl->n++] = tr_spawn(argv, log);
    if (tr_wait_port(log, cl->pids[0], cl->addr, sizeof cl->addr) != 0) return -1;
    for (int k = 0; k < 2; k++) {
        char *wargv[] = {worker, "--coordinator", cl->addr, "--model", (char *)model, "--threads", (char *)threads,
                         "--speed", TR_SPEED, NULL};
        cl->pids[cl->n++] = tr_spawn(wargv, log);
        usleep(200000); /* join in order */
    }
    return 0;
}

/* One generate call; 0 with the server-side times, or -1. */
static int tr_generate(const char *addr, const int32_t *toks, size_t n, uint32_t max_tokens, baton_result *r) {
    char err[256];
    baton_client *c = baton_connect(addr, "baton", err, sizeof err);
    if (!c) return -1;
    baton_gen_params p = baton_gen_defaults();
    p.tokens = toks;
    p.n_tokens = n;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    int rc = baton_generate(c, &p, NULL, NULL, r);
    baton_close(c);
    return rc == 0 && r->status == 0 ? 0 : -1;
}

/* The prompt: n ids below the model's vocabulary (malloc'd), or NULL. */
static int32_t *tr_prompt(const char *addr, int n) {
    char err[256];
    baton_client *c = baton_connect(addr, "baton", err, sizeof err);
    baton_model_info mi = {0};
    int mrc = c ? baton_model(c, &mi, err, sizeof err) : -1;
    baton_close(c);
    if (mrc != 0 || mi.n_vocab == 0) return NULL;
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    for (int i = 0; toks && i < n; i++) toks[i] = (int32_t)((i * 37u + 11u) % mi.n_vocab);
    return toks;
}

/* One round on one cluster: a prefill-only call and a decode call; keeps the
 * best figures in out. 0 or -1. */
static int tr_round(const char *addr, const int32_t *toks, int n_prompt, int n_gen, tr_result *out) {
    int rc = 0;
    baton_result res = {0};
    if (tr_generate(addr, toks, (size_t)n_prompt, 1, &res) == 0 && res.prefill_s > 0) {
        double v = n_prompt / res.prefill_s;
        if (v > out->prefill_tok_s) out->prefill_tok_s = v;
    } else {
        rc = -1;
    }
    baton_result_free(&res);
    baton_result dres = {0};
    if (rc == 0 && tr_generate(addr, toks, 8, (uint32_t)n_gen, &dres) == 0 && dres.decode_s > 0 && dres.n_tokens > 1) {
        double v = (double)(dres.n_tokens - 1) / dres.decode_s;
        if (v > out->decode_tok_s) out->decode_tok_s = v;
    } else {
        rc = -1;
    }
    baton_result_free(&dres);
    return rc;
}

static int bench_transport(int argc, char **argv) {
    const char *model = NULL, *threads = "1";
    int n_prompt = 256, n_gen = 32, reps = 2;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) {
            if (bench_int_opt("transport", argv[i], argv[i + 1], 1, 1 << 16, &n_prompt) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--gen") && i + 1 < argc) {
            if (bench_int_opt("transport", argv[i], argv[i + 1], 2, 1 << 16, &n_gen) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (bench_int_opt("transport", argv[i], argv[i + 1], 1, 1000, &reps) != 0) return 2;
            i++;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            int t;
            if (bench_int_opt("transport", argv[i], argv[i + 1], 1, 4096, &t) != 0) return 2;
            threads = argv[++i];
        }
    }
    if (n_prompt < 1 || n_gen < 2 || reps < 1) {
        fprintf(stderr, "baton-bench transport: --prompt >= 1, --gen >= 2, --reps >= 1\n");
        return 2;
    }
    tr_find_bin();
    char dir[] = "/tmp/baton-bench-transport.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "baton-bench transport: cannot make a temporary folder: %s\n", strerror(errno));
        return 1;
    }
    char made[PATH_MAX] = "";
    if (!model) {
        snprintf(made, sizeof made, "%s/qwq4.gguf", dir);
        char mk[PATH_MAX];
        snprintf(mk, sizeof mk, "%s/tools/baton-mkmodel", tr_bin);
        fprintf(stderr, "writing the 4-layer QwQ-shaped model to %s ...\n", made);
        char *mkargv[] = {mk, "--preset", "qwq-32b", "--layers", "4", "--type", "q8_0", "--vocab", "1024", "-o", made,
                          NULL};
        char mklog[PATH_MAX];
        snprintf(mklog, sizeof mklog, "%s/mkmodel.log", dir);
        pid_t p = tr_spawn(mkargv, mklog);
        int st = 0;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "baton-bench transport: baton-mkmodel failed (see %s)\n", mklog);
            return 1;
        }
        model = made;
    }
    const char *names[2] = {"tcp", "mpi"};
    tr_result res[2] = {{0}};
    int rc = 0;
    /* both clusters up at once, measured in turns, so a change in the load of
     * this machine falls on both */
    tr_cluster cl[2];
    memset(cl, 0, sizeof cl);
    int32_t *toks = NULL;
    for (int m = 0; m < 2 && rc == 0; m++) {
        fprintf(stderr, "%s: starting coordinator + 2 workers ...\n", names[m]);
        if (tr_start(&cl[m], m == 1, model, threads, dir) != 0 || tr_wait_serving(cl[m].addr, 300) != 0) {
            fprintf(stderr, "baton-bench transport: the %s cluster failed to start (logs in %s)\n", names[m], dir);
            rc = 1;
        }
    }
    if (rc == 0 && !(toks = tr_prompt(cl[0].addr, n_prompt))) rc = 1;
    for (int r = 0; r < reps && rc == 0; r++)
        for (int m = 0; m < 2 && rc == 0; m++) {
            if (tr_round(cl[m].addr, toks, n_prompt, n_gen, &res[m]) != 0) {
                fprintf(stderr, "baton-bench transport: a call to the %s cluster failed (logs in %s)\n", names[m],
                        dir);
                rc = 1;
            } else {
                fprintf(stderr, "round %d %s: best so far prefill %.1f tok/s, decode %.2f tok/s\n", r + 1, names[m],
                        res[m].prefill_tok_s, res[m].decode_tok_s);
            }
        }
    free(toks);
    for (int m = 0; m < 2; m++) tr_stop(&cl[m]);
    if (rc == 0) {
        double rp = res[1].prefill_tok_s / res[0].prefill_tok_s, rd = res[1].decode_tok_s / res[0].decode_tok_s;
        if (bench_want_json(argc, argv)) {
            printf("{\"model\": \"%s\", \"workers\": 2, \"prompt\": %d, \"gen\": %d, \"threads\": %s, "
                   "\"tcp\": {\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f}, "
                   "\"mpi\": {\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f}, "
                   "\"mpi_over_tcp\": {\"prefill\": %.3f, \"decode\": %.3f}}\n",
                   made[0] ? "qwq-32b 4 layers q8_0 vocab 1024" : model, n_prompt, n_gen, threads,
                   res[0].prefill_tok_s, res[0].decode_tok_s, res[1].prefill_tok_s, res[1].decode_tok_s, rp, rd);
        } else {
            printf("transport: coordinator + 2 workers (%s thread(s) each), prompt %d, %d generated, best of %d\n",
                   threads, n_prompt, n_gen, reps);
            printf("%-10s %16s %16s\n", "transport", "prefill tok/s", "decode tok/s");
            for (int m = 0; m < 2; m++)
                printf("%-10s %16.1f %16.2f\n", names[m], res[m].prefill_tok_s, res[m].decode_tok_s);
            printf("%-10s %16.3f %16.3f\n", "MPI/TCP", rp, rd);
        }
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "baton-bench transport: could not remove %s\n", dir);
    }
    return rc;
}

BENCH_REGISTER(transport, "stage frames over MPI vs TCP: prefill and decode tok/s of a 2-worker cluster",
               "--model FILE [--prompt N] [--gen N] [--reps R] [--threads T]", bench_transport)
