/* load.c - `baton-bench load`: many concurrent client streams against a
 * loopback cluster for a bounded time; does every request end with the status
 * it should, and do the daemons' memory and descriptors stay flat?
 *
 *     baton-bench load [--model FILE] [--workers 3] [--streams 64] [--seconds 120]
 *                      [--warmup S] [--cancel-pct 10] [--deadline-pct 10] [--seed N]
 *                      [--slots N] [--ctx N] [--coord-opt OPT]... [--addr HOST:PORT] [--json]
 *
 * Without --model it generates the tiny synthetic model (baton-mkmodel --preset
 * tiny) into a temporary folder. The coordinator (--slots default: streams,
 * --ctx default 512) and --workers workers are child processes found next to
 * this binary, as `baton-bench cluster` starts them, stopped on every way out.
 * With --addr the load goes to a cluster already running there (tools/soak.sh)
 * and no daemon is sampled.
 * Each of the --streams threads keeps one connection and sends requests back to
 * back until --seconds have passed: prompts of 4 to 200 token ids or a text
 * prompt, greedy or sampled (temperature, top-p/top-k, penalties), 8 to 64 new
 * tokens; --cancel-pct of them are cancelled after 1 to 3 chunks, --deadline-pct
 * carry a deadline of 20 to 200 ms. Expected final statuses: OK, and also
 * CANCELLED for a cancelled request, DEADLINE_EXCEEDED for one with a deadline;
 * anything else (a lost connection included) is an unexpected error.
 * Reported: requests by final status, time to first token and the gap between
 * two tokens (p50, p99, over the OK and cancelled requests), generated tokens
 * per second over the run, and the daemons' RSS (VmRSS) and open descriptors
 * (/proc/PID/fd) at start (serving, before load), after the warm-up (--warmup
 * s, default a tenth of the run, at least 2) and at the end (streams done, 1 s
 * later). It exits 1 if any request ended unexpectedly, a daemon died, or the
 * RSS or descriptors of a daemon at the end are more than 10% above (RSS: and
 * 1 MiB) their after-warm-up value (only the coordinator's if the cluster
 * re-planned meanwhile: layers then move between workers; only descriptors under
 * BATON_LOAD_WRAP, whose tool's own memory is in RSS). BATON_BENCH_KEEP=1 keeps the temporary
 * folder (the daemons' logs); BATON_LOAD_WRAP="valgrind --leak-check=full ..."
 * runs the coordinator and the workers under that command (tools/memcheck.sh).
 */
#include <errno.h>
#include <dirent.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baton_client.h"
#include "bench.h"
#include "local_cluster.h"


#define LD_MAX_WORKERS 16
#define LD_MAX_STREAMS 1024
#define LD_MAX_PROCS (LD_MAX_WORKERS + 1)
#define LD_MAX_COORD_OPTS 16

typedef struct ld_opts {
    const char *model, *addr; /* addr: an existing cluster's coordinator (nothing started) */
    int workers, streams, seconds, warmup, cancel_pct, deadline_pct, slots, ctx;
    unsigned seed;
    const char *coord_opts[LD_MAX_COORD_OPTS];
    int n_coord_opts;
    bool json;
} ld_opts;

/* One sample of a daemon's resources. */
typedef struct ld_res {
    uint64_t rss_kb;
    int fds;
} ld_res;

/* Growable array of seconds. */
typedef struct ld_vec {
    double *v;
    size_t n, cap;
} ld_vec;

static void vec_push(ld_vec *a, double x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        double *v = realloc(a->v, cap * sizeof *v);
        if (!v) return;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
}

/* What one stream thread saw. */
typedef struct ld_stream {
    const ld_opts *o;
    const char *addr;
    int index;
    uint32_t n_vocab;
    double end_s;
    unsigned rng;
    uint64_t by_status[17];
    uint64_t unexpected, tokens, requests;
    char last_unexpected[300];
    ld_vec ttft, gaps;
} ld_stream;

/* The callback's view of the request under way. */
typedef struct ld_call {
    ld_stream *s;
    double sent, last;
    int chunks, cancel_after; /* 0: never */
} ld_call;

static unsigned ld_rand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static int ld_on_chunk(void *ctx, const baton_chunk *ch) {
    ld_call *c = ctx;
    double now = clock_s();
    if (ch->n_tokens) {
        if (c->last == 0) vec_push(&c->s->ttft, now - c->sent);
        else vec_push(&c->s->gaps, (now - c->last) / (double)ch->n_tokens);
        c->last = now;
        c->s->tokens += ch->n_tokens;
    }
    return c->cancel_after && ++c->chunks >= c->cancel_after;
}

static void *ld_stream_run(void *arg) {
    ld_stream *s = arg;
    const ld_opts *o = s->o;
    baton_client *cl = NULL;
    char err[256];
    static const char *const texts[] = {"Tell me about the sea.", "The quick brown fox jumps over the lazy dog. ",
                                        "1, 2, 3, 4, 5, 6, 7", "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd"};
    int32_t prompt[256];
    while (clock_s() < s->end_s) {
        if (!cl) {
            cl = baton_connect(s->addr, NULL, err, sizeof err);
            if (!cl) {
                s->unexpected++;
                snprintf(s->last_unexpected, sizeof s->last_unexpected, "connect: %s", err);
                usleep(100000);
                continue;
            }
        }
        baton_gen_params p = baton_gen_defaults();
        static const int lens[] = {4, 16, 64, 200};
        unsigned r = ld_rand(&s->rng);
        int len = lens[r % 4];
        char text[512];
        if ((r >> 2) % 5 == 0) { /* a text prompt: tokenised by the coordinator */
            snprintf(text, sizeof text, "%s%s", texts[(r >> 5) % 4], texts[(r >> 7) % 4]);
            p.text = text;
        } else {
            for (int i = 0; i < len; i++) prompt[i] = (int32_t)(ld_rand(&s->rng) % s->n_vocab);
            p.tokens = prompt;
            p.n_tokens = (size_t)len;
        }
        static const uint32_t maxt[] = {8, 16, 32, 64};
        p.max_tokens = maxt[(r >> 9) % 4];
        switch ((r >> 11) % 4) {
        case 0: p.temperature = 0; break; /* greedy */
        case 1: p.temperature = 0.8f, p.top_p = 0.9f, p.seed = r; break;
        case 2: p.temperature = 1.0f, p.top_k = 40, p.min_p = 0.05f, p.seed = r; break;
        default: p.temperature = 0.7f, p.repetition_penalty = 1.1f, p.presence_penalty = 0.5f, p.seed = r; break;
        }
        p.ignore_eos = (r >> 13) & 1;
        unsigned pick = ld_rand(&s->rng) % 100;
        bool cancel = pick < (unsigned)o->cancel_pct;
        bool deadline = !cancel && pick < (unsigned)(o->cancel_pct + o->deadline_pct);
        if (deadline) p.deadline_ms = 20 + ld_rand(&s->rng) % 181;
        ld_call call = {.s = s, .sent = clock_s(), .cancel_after = cancel ? 1 + (int)(ld_rand(&s->rng) % 3) : 0};
        baton_result res;
        int st = baton_generate(cl, &p, ld_on_chunk, &call, &res);
        s->requests++;
        if (st >= 0 && st < 17) s->by_status[st]++;
        bool expected = st == BATON_STATUS_OK || (cancel && st == BATON_STATUS_CANCELLED) ||
                        (deadline && st == BATON_STATUS_DEADLINE_EXCEEDED);
        if (!expected) {
            s->unexpected++;
            snprintf(s->last_unexpected, sizeof s->last_unexpected, "%s: %s", baton_status_name(st), res.message);
        }
        baton_result_free(&res);
        if (st == BATON_STATUS_UNAVAILABLE) { /* the connection is gone */
            baton_close(cl);
            cl = NULL;
        }
    }
    baton_close(cl);
    return NULL;
}

/* --- the cluster ------------------------------------------------------------ */

typedef struct ld_cluster {
    pid_t pids[LD_MAX_PROCS]; /* [0] the coordinator */
    int n;
    char addr[64];
} ld_cluster;

static ld_cluster *ld_running; /* stopped by a signal */
static char ld_dir[256];

static void ld_stop(ld_cluster *cl) {
    for (int i = 0; i < cl->n; i++) kill(cl->pids[i], SIGTERM);
    double t0 = clock_s(), limit = getenv("BATON_LOAD_WRAP") ? 120 : 5; /* valgrind's leak check takes time */
    for (int i = 0; i < cl->n; i++) {
        while (waitpid(cl->pids[i], NULL, WNOHANG) == 0) {
            if (clock_s() - t0 > limit) {
                kill(cl->pids[i], SIGKILL);
                waitpid(cl->pids[i], NULL, 0);
                break;
            }
            usleep(20000);
        }
    }
    cl->n = 0;
    ld_running = NULL;
}

static void ld_cleanup(void) {
    char cmd[400];
    if (!ld_dir[0]) return;
    if (getenv("BATON_BENCH_KEEP")) { /* the logs, for a look afterwards */
        fprintf(stderr, "baton-bench load: logs kept in %s\n", ld_dir);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ld_dir);
    if (system(cmd) != 0) fprintf(stderr, "baton-bench load: could not remove %s\n", ld_dir);
    ld_dir[0] = 0;
}

static void ld_on_signal(int sig) {
    if (ld_running)
        for (int i = 0; i < ld_running->n; i++) kill(ld_running->pids[i], SIGTERM);
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool ld_alive(const ld_cluster *cl) { return local_cluster_alive(cl->pids, cl->n); }

static void ld_dump_logs(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "tail -n 15 '%s'/*.log >&2", ld_dir);
    if (system(cmd) != 0) fprintf(stderr, "(no logs)\n");
}

static ld_res ld_sample(pid_t pid) {
    ld_res r = {0, 0};
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmRSS:", 6)) r.rss_kb = strtoull(line + 6, NULL, 10);
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') r.fds++;
        closedir(d);
    }
    return r;
}

/* The coordinator's re-plan counter (health), or -1. */
static long long ld_replans(const char *addr) {
    char err[256];
    baton_client *c = baton_connect(addr, NULL, err, sizeof err);
    baton_health_info h;
    long long r = -1;
    if (c && baton_health(c, &h, err, sizeof err) == BATON_STATUS_OK) {
        r = (long long)h.replans;
        baton_health_free(&h);
    }
    baton_close(c);
    return r;
}

/* Starts the cluster (the daemons under $BATON_LOAD_WRAP if set) and waits until
 * it serves. 0, or -1 (the caller stops what started). */
static int ld_start(const ld_opts *o, const char *build, const char *model, ld_cluster *cl) {
    memset(cl, 0, sizeof *cl);
    char slots[16], ctx[16];
    snprintf(slots, sizeof slots, "%d", o->slots);
    snprintf(ctx, sizeof ctx, "%d", o->ctx);
    const char *cargs[4 + LD_MAX_COORD_OPTS + 1] = {"--slots", slots, "--ctx", ctx};
    for (int i = 0; i < o->n_coord_opts; i++) cargs[4 + i] = o->coord_opts[i];
    const char *wargs[] = {"--threads", "1", "--speed", "0.01", NULL};
    const char *wrap = getenv("BATON_LOAD_WRAP");
    double start_limit = wrap ? 300 : 30; /* valgrind starts slowly */
    local_cluster_spec s = {.who = "load", .build = build, .dir = ld_dir, .model = model, .workers = o->workers,
                            .coord_args = cargs, .worker_args = wargs, .wrap = wrap, .start_s = start_limit,
                            .join_in_order = true};
    ld_running = cl;
    if (local_cluster_start(&s, cl->pids, &cl->n, cl->addr, sizeof cl->addr) != 0) return -1;
    return local_cluster_wait("load", cl->addr, cl->pids, cl->n, 180 + start_limit * 2);
}

/* --- figures ------------------------------------------------------------------ */

static int ld_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double ld_pct(ld_vec *v, double q) {
    if (!v->n) return 0;
    size_t i = (size_t)(q * (double)(v->n - 1) + 0.5);
    return v->v[i];
}

static int ld_parse(int argc, char **argv, ld_opts *o) {
    *o = (ld_opts){.workers = 3, .streams = 64, .seconds = 120, .warmup = -1, .cancel_pct = 10, .deadline_pct = 10,
                   .slots = 0, .ctx = 512, .seed = 1};
    o->json = bench_want_json(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) continue;
        if (!v) goto bad;
        i++;
        int x;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--addr")) o->addr = v;
        else if (!strcmp(a, "--coord-opt")) {
            if (o->n_coord_opts == LD_MAX_COORD_OPTS) goto bad;
            o->coord_opts[o->n_coord_opts++] = v;
        } else if (!strcmp(a, "--workers")) {
            if (bench_int_opt("load", a, v, 1, LD_MAX_WORKERS, &o->workers)) return -1;
        } else if (!strcmp(a, "--streams")) {
            if (bench_int_opt("load", a, v, 1, LD_MAX_STREAMS, &o->streams)) return -1;
        } else if (!strcmp(a, "--seconds")) {
            if (bench_int_opt("load", a, v, 1, 86400, &o->seconds)) return -1;
        } else if (!strcmp(a, "--warmup")) {
            if (bench_int_opt("load", a, v, 0, 86400, &o->warmup)) return -1;
        } else if (!strcmp(a, "--cancel-pct")) {
            if (bench_int_opt("load", a, v, 0, 100, &o->cancel_pct)) return -1;
        } else if (!strcmp(a, "--deadline-pct")) {
            if (bench_int_opt("load", a, v, 0, 100, &o->deadline_pct)) return -1;
        } else if (!strcmp(a, "--slots")) {
            if (bench_int_opt("load", a, v, 1, 4096, &o->slots)) return -1;
        } else if (!strcmp(a, "--ctx")) {
            if (bench_int_opt("load", a, v, 300, 1 << 20, &o->ctx)) return -1;
        } else if (!strcmp(a, "--seed")) {
            if (bench_int_opt("load", a, v, 0, 1 << 30, &x)) return -1;
            o->seed = (unsigned)x;
        } else goto bad;
        continue;
    bad:
        fprintf(stderr, "baton-bench load: bad or unknown option '%s' (see the top of tools/bench/load.c)\n", a);
        return -1;
    }
    if (o->cancel_pct + o->deadline_pct > 100) {
        fprintf(stderr, "baton-bench load: --cancel-pct + --deadline-pct must be at most 100\n");
        return -1;
    }
    if (!o->slots) o->slots = o->streams;
    if (o->warmup < 0) o->warmup = o->seconds / 10 < 2 ? 2 : o->seconds / 10;
    if (o->warmup >= o->seconds) o->warmup = o->seconds / 2;
    return 0;
}

static const char *const ld_when[3] = {"start", "warm", "end"};

static int bench_load(int argc, char **argv) {
    ld_opts o;
    if (ld_parse(argc, argv, &o) != 0) return 2;
    char exe[4096], build[4096], model[4300];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 1;
    exe[n] = 0;
    snprintf(build, sizeof build, "%s", dirname(dirname(exe)));
    snprintf(ld_dir, sizeof ld_dir, "/tmp/baton-bench-load.XXXXXX");
    if (!mkdtemp(ld_dir)) {
        fprintf(stderr, "baton-bench load: cannot make a temporary folder: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGINT, ld_on_signal);
    signal(SIGTERM, ld_on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (o.model || o.addr) snprintf(model, sizeof model, "%s", o.model ? o.model : "");
    else {
        snprintf(model, sizeof model, "%s/tiny.gguf", ld_dir);
        char bin[4200], log[400];
        snprintf(bin, sizeof bin, "%s/tools/baton-mkmodel", build);
        snprintf(log, sizeof log, "%s/mkmodel.log", ld_dir);
        char *mk[] = {bin, "--preset", "tiny", "--type", "q8_0", "-o", model, NULL};
        pid_t pid = local_spawn("load", mk, log, NULL);
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            ld_dump_logs();
            ld_cleanup();
            return 1;
        }
    }
    ld_cluster cl = {.n = 0};
    if (o.addr) snprintf(cl.addr, sizeof cl.addr, "%s", o.addr);
    else if (ld_start(&o, build, model, &cl) != 0) {
        ld_dump_logs();
        ld_stop(&cl);
        ld_cleanup();
        return 1;
    }
    uint32_t n_vocab = 0;
    {
        char err[256];
        baton_client *c = baton_connect(cl.addr, NULL, err, sizeof err);
        baton_model_info mi;
        if (c && baton_model(c, &mi, err, sizeof err) == BATON_STATUS_OK) n_vocab = mi.n_vocab;
        baton_close(c);
    }
    if (!n_vocab) {
        fprintf(stderr, "baton-bench load: no model info\n");
        ld_stop(&cl);
        ld_cleanup();
        return 1;
    }
    ld_res res[3][LD_MAX_PROCS];
    for (int i = 0; i < cl.n; i++) res[0][i] = ld_sample(cl.pids[i]);
    ld_stream *st = calloc((size_t)o.streams, sizeof *st);
    pthread_t *th = calloc((size_t)o.streams, sizeof *th);
    double t0 = clock_s();
    for (int i = 0; i < o.streams; i++) {
        st[i] = (ld_stream){.o = &o, .addr = cl.addr, .index = i, .n_vocab = n_vocab, .end_s = t0 + o.seconds,
                            .rng = o.seed * 7919u + (unsigned)i * 104729u + 1u};
        pthread_create(&th[i], NULL, ld_stream_run, &st[i]);
    }
    uint64_t tokens_warm = 0;
    double warm_s = t0 + o.warmup;
    while (clock_s() < warm_s) usleep(50000);
    for (int i = 0; i < cl.n; i++) res[1][i] = ld_sample(cl.pids[i]);
    long long replans_warm = ld_replans(cl.addr);
    for (int i = 0; i < o.streams; i++) tokens_warm += st[i].tokens; /* a racy read: a progress figure only */
    for (int i = 0; i < o.streams; i++) pthread_join(th[i], NULL);
    double t_end = clock_s();
    sleep(1);
    bool alive = ld_alive(&cl);
    long long replans_end = ld_replans(cl.addr);
    /* a re-plan after the warm-up moves layers (and their memory) between workers:
     * then only the coordinator's figures are compared */
    bool replanned = replans_end != replans_warm;
    for (int i = 0; i < cl.n; i++) res[2][i] = ld_sample(cl.pids[i]);
    int n_procs = cl.n;
    ld_stop(&cl);

    uint64_t by[17] = {0}, unexpected = 0, tokens = 0, requests = 0;
    ld_vec ttft = {0}, gaps = {0};
    const char *example = "";
    for (int i = 0; i < o.streams; i++) {
        for (int k = 0; k < 17; k++) by[k] += st[i].by_status[k];
        unexpected += st[i].unexpected, tokens += st[i].tokens, requests += st[i].requests;
        if (st[i].last_unexpected[0]) example = st[i].last_unexpected;
        for (size_t k = 0; k < st[i].ttft.n; k++) vec_push(&ttft, st[i].ttft.v[k]);
        for (size_t k = 0; k < st[i].gaps.n; k++) vec_push(&gaps, st[i].gaps.v[k]);
    }
    qsort(ttft.v, ttft.n, sizeof *ttft.v, ld_cmp);
    qsort(gaps.v, gaps.n, sizeof *gaps.v, ld_cmp);
    double run_s = t_end - t0;
    bool flat = true;
    /* under $BATON_LOAD_WRAP (valgrind) RSS is mostly the tool's own: descriptors only */
    bool wrapped = getenv("BATON_LOAD_WRAP") && *getenv("BATON_LOAD_WRAP");
    for (int i = 0; i < (replanned ? 1 : n_procs); i++) {
        double rss_w = (double)res[1][i].rss_kb, rss_e = (double)res[2][i].rss_kb;
        if (!wrapped && rss_e > rss_w * 1.10 && rss_e - rss_w > 1024) flat = false;
        if ((double)res[2][i].fds > (double)res[1][i].fds * 1.10) flat = false;
    }
    int rc = unexpected == 0 && alive && flat ? 0 : 1;
    if (o.json) {
        printf("{\"streams\": %d, \"workers\": %d, \"seconds\": %.1f, \"requests\": %llu, \"unexpected\": %llu, "
               "\"by_status\": {", o.streams, o.workers, run_s, (unsigned long long)requests,
               (unsigned long long)unexpected);
        bool first = true;
        for (int k = 0; k < 17; k++)
            if (by[k]) printf("%s\"%s\": %llu", first ? "" : ", ", baton_status_name(k), (unsigned long long)by[k]),
                    first = false;
        printf("}, \"ttft_ms\": {\"p50\": %.2f, \"p99\": %.2f}, \"itl_ms\": {\"p50\": %.2f, \"p99\": %.2f}, "
               "\"tokens\": %llu, \"tok_s\": %.1f, \"daemons\": [",
               ld_pct(&ttft, 0.5) * 1e3, ld_pct(&ttft, 0.99) * 1e3, ld_pct(&gaps, 0.5) * 1e3, ld_pct(&gaps, 0.99) * 1e3,
               (unsigned long long)tokens, (double)tokens / run_s);
        for (int i = 0; i < n_procs; i++) {
            printf("%s{\"name\": \"%s%d\"", i ? ", " : "", i ? "worker-" : "coordinator", i ? i : 0);
            for (int w = 0; w < 3; w++)
                printf(", \"rss_kb_%s\": %llu, \"fds_%s\": %d", ld_when[w], (unsigned long long)res[w][i].rss_kb,
                       ld_when[w], res[w][i].fds);
            printf("}");
        }
        printf("], \"replanned\": %s, \"alive\": %s, \"flat\": %s, \"pass\": %s}\n", replanned ? "true" : "false",
               alive ? "true" : "false", flat ? "true" : "false", rc == 0 ? "true" : "false");
    } else {
        printf("baton-bench load: %d streams on %d workers for %.1f s (warm-up %d s), %d%% cancelled, %d%% with "
               "deadlines\n", o.streams, o.workers, run_s, o.warmup, o.cancel_pct, o.deadline_pct);
        printf("  requests       %llu, by final status:", (unsigned long long)requests);
        for (int k = 0; k < 17; k++)
            if (by[k]) printf(" %s %llu", baton_status_name(k), (unsigned long long)by[k]);
        printf("\n  unexpected     %llu%s%s\n", (unsigned long long)unexpected, unexpected ? " - e.g. " : "",
               unexpected ? example : "");
        printf("  first token    p50 %.1f ms, p99 %.1f ms (%zu requests)\n", ld_pct(&ttft, 0.5) * 1e3,
               ld_pct(&ttft, 0.99) * 1e3, ttft.n);
        printf("  between tokens p50 %.2f ms, p99 %.2f ms\n", ld_pct(&gaps, 0.5) * 1e3, ld_pct(&gaps, 0.99) * 1e3);
        printf("  tokens         %llu, %.1f tokens/s (%llu by the end of the warm-up)\n", (unsigned long long)tokens,
               (double)tokens / run_s, (unsigned long long)tokens_warm);
        printf("  %-12s %28s %28s %28s\n", "daemon", "RSS MiB start/warm/end", "fds start/warm/end", "end vs warm");
        for (int i = 0; i < n_procs; i++) {
            char name[32], rss[64], fds[64], cmp[64];
            snprintf(name, sizeof name, i ? "worker-%d" : "coordinator", i);
            snprintf(rss, sizeof rss, "%.1f / %.1f / %.1f", res[0][i].rss_kb / 1024.0, res[1][i].rss_kb / 1024.0,
                     res[2][i].rss_kb / 1024.0);
            snprintf(fds, sizeof fds, "%d / %d / %d", res[0][i].fds, res[1][i].fds, res[2][i].fds);
            snprintf(cmp, sizeof cmp, "RSS %+.1f%%, fds %+d", res[1][i].rss_kb ?
                     100.0 * ((double)res[2][i].rss_kb / (double)res[1][i].rss_kb - 1) : 0.0,
                     res[2][i].fds - res[1][i].fds);
            printf("  %-12s %28s %28s %28s\n", name, rss, fds, cmp);
        }
        if (replanned)
            printf("  re-planned after the warm-up (%lld -> %lld re-plans): layers moved, workers' RSS not compared\n",
                   replans_warm, replans_end);
        printf("  daemons alive  %s; %s at the end within 10%% of after warm-up: %s\n", alive ? "yes" : "NO",
               wrapped ? "fds (RSS not compared: $BATON_LOAD_WRAP)" : "RSS and fds", flat ? "yes" : "NO");
        printf("%s\n", rc == 0 ? "PASS" : "FAIL");
    }
    if (rc != 0) ld_dump_logs();
    for (int i = 0; i < o.streams; i++) free(st[i].ttft.v), free(st[i].gaps.v);
    free(ttft.v);
    free(gaps.v);
    free(st);
    free(th);
    ld_cleanup();
    return rc;
}

BENCH_REGISTER(load, "N concurrent client streams for a bounded time: statuses, latency, daemons' RSS and fds",
               "[--model FILE] [--workers 3] [--streams 64] [--seconds 120] [--warmup S] [--cancel-pct 10] "
               "[--deadline-pct 10] [--seed N] [--slots N] [--ctx N] [--coord-opt OPT]... [--addr HOST:PORT] [--json]",
               bench_load)
