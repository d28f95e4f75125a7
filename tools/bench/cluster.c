/* cluster.c - `baton-bench cluster`: what the pipeline costs over the
 * single-process runner, on this machine, measured in the same run.
 *
 *     baton-bench cluster [--model FILE] [--tokens N] [--prompt P] [--streams S]
 *                         [--workers 1,2,4] [--cores C] [--reps R] [--codec NAME] [--json]
 * (--codec: the workers' stage codec, default f32+lz4 as in a real cluster; f32
 * shows the raw hidden-state bytes per hop)
 *
 * Without --model it generates the 4-layer QwQ-32B-shaped Q8_0 model (vocabulary
 * 1024, about 2 GB) into a temporary folder and deletes it afterwards. The cores
 * are shared by the workers: each gets --threads cores / workers (at least 1),
 * and the baseline runs with that same thread count. For every worker count:
 *   - the baseline: the whole model in this process, as build/tools/baton-run
 *     runs it (forward.h, greedy sampler), P prompt tokens then N tokens, each
 *     token timed;
 *   - one stream of the same prompt through a cluster of that many workers,
 *     each token timed at the client as it arrives;
 *   - decode tokens/s of both (tokens after the first / time from the first to
 *     the last token) and their ratio: the pipeline's own overhead, target
 *     >= 0.95; the same from the median gap between two tokens, which a
 *     neighbour's burst of load moves less; and the ratio of CPU seconds per
 *     token (baseline / coordinator + workers), which it moves less still;
 *   - bytes the workers sent to their successors (WorkerStatus hop_bytes, read
 *     with the health call) per token that crossed a hop, against the hidden
 *     state, n_embd * 4 bytes; greedy tokens equal to the baseline's or not.
 * With 2 workers also S concurrent streams (default 8): their aggregate decode
 * tokens/s - tokens that came while every stream was decoding, over that time -
 * against the single stream (target >= 6, issue 15), the workers' compute time as a share
 * of the run, and what the kernels allow: a pass of M = S / 2 tokens (the
 * micro-batch each stage gets) timed in the baseline against M one-token passes
 * (the batching gain; with 2 stages the ratio cannot pass about 2 x that), in
 * wall-clock and in CPU time; each worker's busy share; the tokens per
 * micro-batch; and the same ratio projected from CPU time (one stream's CPU
 * seconds per token over the S streams', times the 2 stages that run at once),
 * which a loaded machine moves much less than wall time. Each measurement runs
 * R times (default 1, baseline and cluster alternating) and keeps the best.
 *
 * The coordinator and workers are child processes (posix_spawn, found next to
 * this binary: <build>/coordinator/baton-coord, <build>/worker/baton-worker),
 * logging into the temporary folder; they are stopped with SIGTERM (SIGKILL
 * after 5 s) on every way out, an interrupt included. Workers report equal
 * speeds (--speed) so that the plan splits the layers evenly whatever a
 * neighbour does to their start-up timing.
 */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
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
#include "forward.h"
#include "sampler.h"


#define CB_MAX_WORKERS 16
#define CB_MAX_STREAMS 64
#define CB_MAX_PROCS (CB_MAX_WORKERS + 1)
#define CB_MAX_TOKENS 4096

typedef struct cb_opts {
    const char *model, *codec;
    int tokens, prompt, streams, cores, reps;
    int workers[8], n_workers;
    bool json;
} cb_opts;

/* Where the binaries and the temporary files are. */
typedef struct cb_env {
    char build[4096]; /* <build>: parent of the folder holding baton-bench */
    char dir[256];    /* temporary folder: logs, the generated model */
    char model[4200];
    uint32_t n_embd, n_vocab;
    const char *codec; /* --codec of every worker */
} cb_env;

/* One running cluster. */
typedef struct cb_cluster cb_cluster;
struct cb_cluster {
    pid_t pids[CB_MAX_PROCS]; /* [0] coordinator, then the workers */
    int n_pids, n_workers;
    char addr[64];
};

/* One stream's figures. */
typedef struct cb_stream {
    const char *addr;
    int32_t prompt[1024];
    int n_prompt, max_tokens;
    pthread_barrier_t *start;
    int status;
    char message[256];
    int32_t tokens[CB_MAX_TOKENS];
    double times[CB_MAX_TOKENS]; /* client clock when each token arrived */
    int n;
    const struct cb_cluster *cpu_of; /* set: read its CPU time at the first and last token */
    double cpu_first, cpu_last;
} cb_stream;

/* What an interrupt (SIGINT, SIGTERM) must undo: the processes of the running
 * cluster and the files of the temporary folder. Set before they exist. */
static struct {
    const cb_cluster *cluster;
    char files[CB_MAX_WORKERS + 4][300]; /* unlinked in order; the last is the folder */
    int n_files;
} cb_undo;

static void cb_on_signal(int sig) {
    if (cb_undo.cluster)
        for (int i = 0; i < cb_undo.cluster->n_pids; i++) kill(cb_undo.cluster->pids[i], SIGTERM);
    for (int i = 0; i + 1 < cb_undo.n_files; i++) unlink(cb_undo.files[i]);
    if (cb_undo.n_files) rmdir(cb_undo.files[cb_undo.n_files - 1]);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Starts argv[0] with stdout and stderr sent to `log` (created). Its pid, or -1. */
static pid_t cb_spawn(char *const argv[], const char *log) { return local_spawn("cluster", argv, log, NULL); }

/* Runs argv to completion with output in `log`. Its exit status, or -1. */
static int cb_run(char *const argv[], const char *log) {
    pid_t pid = cb_spawn(argv, log);
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SIGTERM to every process, SIGKILL to those still there after 5 s; reaps all. */
static void cb_stop(cb_cluster *cl) {
    for (int i = 0; i < cl->n_pids; i++) kill(cl->pids[i], SIGTERM);
    double t0 = clock_s();
    int left = cl->n_pids;
    bool reaped[CB_MAX_PROCS] = {0};
    while (left > 0) {
        for (int i = 0; i < cl->n_pids; i++)
            if (!reaped[i] && waitpid(cl->pids[i], NULL, WNOHANG) == cl->pids[i]) reaped[i] = true, left--;
        if (left == 0) break;
        if (clock_s() - t0 > 5) {
            for (int i = 0; i < cl->n_pids; i++)
                if (!reaped[i]) kill(cl->pids[i], SIGKILL), waitpid(cl->pids[i], NULL, 0);
            break;
        }
        usleep(20000);
    }
    cl->n_pids = 0;
    cb_undo.cluster = NULL;
}

/* CPU seconds (user + system) the cluster's processes have used so far. */
static double cb_cpu_seconds(const cb_cluster *cl) {
    double sum = 0;
    for (int i = 0; i < cl->n_pids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)cl->pids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* fields after the ")" closing the command name: state is field 3, utime 14, stime 15 */
        char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            sum += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return sum;
}

/* CPU seconds this process has used so far. */
static double cb_cpu_self(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Prints the last lines of every log of the temporary folder (after a failure). */
static void cb_dump_logs(const cb_env *e) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "tail -n 15 '%s'/*.log >&2", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "(no logs)\n");
}

/* --- the cluster --------------------------------------------------------- */

/* Starts a coordinator and n workers of `threads` threads; fills cl->addr from
 * the coordinator's "listening on" line. 0, or -1 (everything started is stopped). */
static int cb_cluster_start(const cb_env *e, const cb_opts *o, int n, int threads, cb_cluster *cl) {
    memset(cl, 0, sizeof *cl);
    char th[16], ctx[16], slots[16];
    snprintf(th, sizeof th, "%d", threads);
    snprintf(ctx, sizeof ctx, "%d", o->prompt + o->tokens + 8);
    snprintf(slots, sizeof slots, "%d", o->streams > 16 ? o->streams : 16);
    const char *cargs[] = {"--ctx", ctx, "--slots", slots, NULL};
    const char *wargs[] = {"--threads", th, "--speed", "0.01", "--codec", e->codec, NULL};
    local_cluster_spec s = {.who = "cluster", .build = e->build, .dir = e->dir, .model = e->model, .workers = n,
                            .coord_args = cargs, .worker_args = wargs, .start_s = 30};
    cb_undo.cluster = cl;
    if (local_cluster_start(&s, cl->pids, &cl->n_pids, cl->addr, sizeof cl->addr) != 0) {
        cb_dump_logs(e);
        cb_stop(cl);
        return -1;
    }
    cl->n_workers = n;
    return 0;
}

/* Polls the health call until the plan serves (180 s at most). 0, or -1. */
static int cb_cluster_wait(const cb_env *e, cb_cluster *cl) {
    if (local_cluster_wait("cluster", cl->addr, cl->pids, cl->n_pids, 180) == 0) return 0;
    cb_dump_logs(e);
    return -1;
}

/* Stage traffic as the health call reports it, per worker in join order. */
typedef struct cb_hop_snap {
    int n;
    uint64_t bytes[CB_MAX_WORKERS], frames[CB_MAX_WORKERS], busy_us[CB_MAX_WORKERS];
    bool head[CB_MAX_WORKERS], idle[CB_MAX_WORKERS]; /* last stage; no slot in use */
} cb_hop_snap;

/* 0, or -1 if the health call fails. */
static int cb_hops(const char *addr, cb_hop_snap *s) {
    char err[256];
    baton_client *c = baton_connect(addr, NULL, err, sizeof err);
    if (!c) return -1;
    baton_health_info h;
    int st = baton_health(c, &h, err, sizeof err);
    baton_close(c);
    if (st != BATON_STATUS_OK) return -1;
    s->n = 0;
    for (size_t i = 0; i < h.n_nodes && s->n < CB_MAX_WORKERS; i++, s->n++) {
        s->bytes[i] = h.nodes[i].hop_bytes;
        s->frames[i] = h.nodes[i].hop_frames;
        s->busy_us[i] = h.nodes[i].busy_us;
        s->head[i] = h.nodes[i].head;
        s->idle[i] = h.nodes[i].slots_used == 0;
    }
    baton_health_free(&h);
    return 0;
}

/* Bytes and frames every worker sent to its successor since `before`, and its
 * compute time (summed): waits (3 s at most) for the status each worker sends
 * once it has freed the run's slots - after its last frame of the run - so that
 * every counter is final; busy_each[i]: worker i's compute time. 0, or -1. */
static int cb_hops_since(const char *addr, const cb_hop_snap *before, uint64_t *bytes, uint64_t *frames,
                         uint64_t *busy_us, uint64_t *busy_each) {
    cb_hop_snap s;
    for (double t0 = clock_s(); clock_s() - t0 < 3; usleep(20000)) {
        if (cb_hops(addr, &s) != 0 || s.n != before->n) return -1;
        bool done = true;
        *bytes = *frames = *busy_us = 0;
        for (int i = 0; i < s.n; i++) {
            *busy_us += busy_each[i] = s.busy_us[i] - before->busy_us[i];
            done &= s.idle[i] && (s.head[i] || s.frames[i] > before->frames[i]);
            *bytes += s.bytes[i] - before->bytes[i];
            *frames += s.frames[i] - before->frames[i];
        }
        if (done) return 0;
    }
    return -1;
}

/* --- streams ---------------------------------------------------------------- */

static int cb_on_chunk(void *ctx, const baton_chunk *ch) {
    cb_stream *s = ctx;
    double now = clock_s();
    for (size_t i = 0; i < ch->n_tokens && s->n < CB_MAX_TOKENS; i++) {
        s->times[s->n] = now;
        s->tokens[s->n++] = ch->tokens[i];
    }
    if (s->cpu_of && ch->n_tokens) {
        s->cpu_last = cb_cpu_seconds(s->cpu_of);
        if (s->n == (int)ch->n_tokens) s->cpu_first = s->cpu_last;
    }
    return 0;
}

/* Thread body: connect, wait for the others (if a barrier is set), generate greedily. */
static void *cb_stream_run(void *arg) {
    cb_stream *s = arg;
    s->n = 0;
    baton_client *c = baton_connect(s->addr, NULL, s->message, sizeof s->message);
    if (s->start) pthread_barrier_wait(s->start);
    if (!c) {
        s->status = BATON_STATUS_UNAVAILABLE;
        return NULL;
    }
    baton_gen_params p = baton_gen_defaults();
    p.tokens = s->prompt;
    p.n_tokens = (size_t)s->n_prompt;
    p.max_tokens = (uint32_t)s->max_tokens;
    p.temperature = 0;
    p.ignore_eos = true;
    baton_result r;
    s->status = baton_generate(c, &p, cb_on_chunk, s, &r);
    snprintf(s->message, sizeof s->message, "%s", r.message);
    baton_result_free(&r);
    baton_close(c);
    return NULL;
}

/* Stream k's prompt: P distinct-looking ids inside the vocabulary. */
static void cb_prompt(const cb_env *e, const cb_opts *o, int k, cb_stream *s) {
    s->n_prompt = o->prompt;
    for (int i = 0; i < o->prompt; i++) s->prompt[i] = (int32_t)(((uint32_t)k * 37u + (uint32_t)i * 13u + 1u) % e->n_vocab);
    s->max_tokens = o->tokens;
}

typedef struct cb_result {
    double tok_s;                  /* decode tokens/s (aggregate for several streams) */
    double tok_s_median;           /* 1 / the median time between two tokens (stream 0) */
    double hop_bytes, hop_frames;  /* per token per hop (0 with one worker) */
    double prefill_s, batch_cost;  /* in-process baseline only: prompt pass; one step of `batch` tokens */
    double cpu_per_token;          /* CPU seconds per token after the first (single stream) */
    double busy;                   /* workers' compute time / (workers x the run's time) */
    double busy_each[CB_MAX_WORKERS]; /* each worker's compute time / the run's time (join order) */
    double tokens_per_frame;       /* tokens per micro-batch, prompts included (the first stage's frames) */
    double cpu_per_token_all;      /* several streams: the cluster's CPU s per token while all decode */
    double batch_cost_cpu;         /* in-process baseline: batch_cost in CPU seconds */
    double cpu_per_token_1;        /* in-process baseline: CPU s of a 1-token step (median) */
    int32_t tokens[CB_MAX_TOKENS]; /* stream 0's tokens */
    double times[CB_MAX_TOKENS];   /* and when each came */
    int n;
} cb_result;

static int cb_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Fills tok_s and tok_s_median from times[0..n): tokens after the first over the
 * time from the first to the last; 1 / the median gap, which a neighbour's burst
 * of load moves less. */
static void cb_rates(cb_result *r) {
    static double gaps[CB_MAX_TOKENS];
    int n = r->n - 1;
    r->tok_s = r->tok_s_median = 0;
    if (n < 1 || r->times[n] <= r->times[0]) return;
    r->tok_s = n / (r->times[n] - r->times[0]);
    for (int i = 0; i < n; i++) gaps[i] = r->times[i + 1] - r->times[i];
    qsort(gaps, (size_t)n, sizeof *gaps, cb_cmp_double);
    double med = n % 2 ? gaps[n / 2] : (gaps[n / 2 - 1] + gaps[n / 2]) / 2;
    if (med > 0) r->tok_s_median = 1 / med;
}

/* Runs n streams at once on the cluster and measures them. 0, or -1. */
static int cb_measure_streams(const cb_env *e, const cb_opts *o, const cb_cluster *cl, int n, cb_result *res) {
    static cb_stream s[CB_MAX_STREAMS];
    pthread_t tid[CB_MAX_STREAMS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    cb_hop_snap before;
    uint64_t bytes, frames, busy_us;
    if (cb_hops(cl->addr, &before) != 0) return -1;
    double t_start = clock_s();
    for (int k = 0; k < n; k++) {
        memset(&s[k], 0, sizeof s[k]);
        s[k].addr = cl->addr;
        s[k].start = n > 1 ? &start : NULL;
        s[k].cpu_of = cl;
        cb_prompt(e, o, k, &s[k]);
        pthread_create(&tid[k], NULL, cb_stream_run, &s[k]);
    }
    for (int k = 0; k < n; k++) pthread_join(tid[k], NULL);
    pthread_barrier_destroy(&start);
    double first = 1e300, last = 0, gen = 0, fed = 0;
    for (int k = 0; k < n; k++) {
        if (s[k].status != BATON_STATUS_OK || s[k].n < 2) {
            fprintf(stderr, "baton-bench cluster: stream %d: %s: %s (%d tokens)\n", k, baton_status_name(s[k].status),
                    s[k].message, s[k].n);
            return -1;
        }
        if (s[k].times[0] < first) first = s[k].times[0];
        if (s[k].times[s[k].n - 1] > last) last = s[k].times[s[k].n - 1];
        gen += s[k].n - 1;
        fed += s[k].n_prompt + s[k].n - 1; /* the last token is never fed back */
    }
    res->n = s[0].n;
    memcpy(res->tokens, s[0].tokens, (size_t)s[0].n * sizeof s[0].tokens[0]);
    memcpy(res->times, s[0].times, (size_t)s[0].n * sizeof s[0].times[0]);
    cb_rates(res);
    res->cpu_per_token = (s[0].cpu_last - s[0].cpu_first) / (s[0].n - 1);
    if (n > 1) {
        /* aggregate: the tokens that came while every stream was decoding (after
         * the last first token, up to the first last token), over that time; the
         * prompts of late streams then fall outside. No such overlap: all
         * tokens after the first over the whole time. */
        double t0 = 0, t1 = 1e300;
        int in = 0;
        int k0 = 0, k1 = 0; /* the streams whose first / last token bound the window */
        for (int k = 0; k < n; k++) {
            if (s[k].times[0] > t0) t0 = s[k].times[0], k0 = k;
            if (s[k].times[s[k].n - 1] < t1) t1 = s[k].times[s[k].n - 1], k1 = k;
        }
        for (int k = 0; k < n; k++)
            for (int i = 1; i < s[k].n; i++) in += s[k].times[i] > t0 && s[k].times[i] <= t1;
        res->tok_s = t1 > t0 && in >= n ? in / (t1 - t0) : last > first ? gen / (last - first) : 0;
        res->cpu_per_token_all = t1 > t0 && in >= n ? (s[k1].cpu_last - s[k0].cpu_first) / in : 0;
    }
    int hops = cl->n_workers - 1;
    uint64_t busy_each[CB_MAX_WORKERS] = {0};
    if (cb_hops_since(cl->addr, &before, &bytes, &frames, &busy_us, busy_each) != 0) {
        fprintf(stderr, "baton-bench cluster: the workers did not report their traffic\n");
        return -1;
    }
    res->hop_bytes = hops ? (double)bytes / (fed * hops) : 0;
    res->hop_frames = hops ? (double)frames / (fed * hops) : 0;
    res->busy = (double)busy_us * 1e-6 / (cl->n_workers * (last - t_start));
    for (int i = 0; i < cl->n_workers && i < CB_MAX_WORKERS; i++) res->busy_each[i] = (double)busy_each[i] * 1e-6 / (last - t_start);
    res->tokens_per_frame = hops && frames ? fed * hops / (double)frames : 0;
    return 0;
}

/* The single-process baseline, in this process, as build/tools/baton-run does it:
 * the whole model, `threads` kernel threads, stream 0's prompt in one batch, then
 * greedy decoding one token at a time, each token timed. Then one pass of
 * `batch` tokens from as many fresh sequences (a decode step of `batch` streams),
 * timed against a one-token step: res->batch_cost. 0, or -1. */
static int cb_measure_inproc(const cb_env *e, const cb_opts *o, int threads, int batch, cb_result *res) {
    static cb_stream s;
    cb_prompt(e, o, 0, &s);
    char err[512];
    if (kern_init(threads) != 0) return -1;
    model *m = model_load(e->model, NULL, err, sizeof err);
    const int P = s.n_prompt, N = o->tokens, B = P > batch ? P : batch;
    const int32_t V = m ? (int32_t)m->hp.n_vocab : 0, E = m ? (int32_t)m->hp.n_embd : 0;
    kv_cache *kv = m ? kv_cache_new(m, batch + 1, P + N + 1, TENSOR_F16, err, sizeof err) : NULL;
    fwd_ctx *fc = m ? fwd_ctx_new(m, B) : NULL;
    float *hidden = malloc((size_t)B * E * sizeof(float)), *logits = malloc((size_t)B * V * sizeof(float));
    int32_t *hist = malloc((size_t)(P + N) * sizeof *hist), *slot = calloc((size_t)B, sizeof *slot);
    int32_t *pos = calloc((size_t)B, sizeof *pos);
    sampler_scratch *sc = m ? sampler_scratch_new(V) : NULL;
    sampler_params sp = sampler_defaults();
    int rc = -1;
    if (!m || !kv || !fc || !hidden || !logits || !hist || !slot || !pos || !sc) {
        fprintf(stderr, "baton-bench cluster: baseline: %s\n", m && kv ? "out of memory" : err);
        goto out;
    }
    memcpy(hist, s.prompt, (size_t)P * sizeof *hist);
    for (int i = 0; i < P; i++) pos[i] = i;
    fwd_batch b = {.n = P, .tokens = hist, .slot = slot, .pos = pos, .logits = NULL};
    double t0 = clock_s();
    if (forward_run(fc, kv, &b, hidden, logits, err, sizeof err) < 0) goto fail;
    res->times[0] = clock_s();
    res->prefill_s = res->times[0] - t0;
    double cpu0 = cb_cpu_self();
    for (res->n = 0;;) {
        int32_t t = sampler_sample(&sp, logits, V, hist, P + res->n, (uint64_t)res->n, sc, NULL);
        hist[P + res->n] = t;
        res->tokens[res->n++] = t;
        if (res->n == N) break;
        int32_t p1 = P + res->n - 1;
        fwd_batch b1 = {.n = 1, .tokens = &hist[p1], .slot = slot, .pos = &p1, .logits = NULL};
        if (forward_run(fc, kv, &b1, hidden, logits, err, sizeof err) < 0) goto fail;
        res->times[res->n] = clock_s();
    }
    res->cpu_per_token = (cb_cpu_self() - cpu0) / (N - 1);
    cb_rates(res);
    /* one step of `batch` sequences: slots 1..batch, position 0 */
    res->batch_cost = 0;
    for (int rep = 0; rep < 2; rep++) {
        for (int i = 0; i < batch; i++) slot[i] = i + 1, pos[i] = 0, hist[i] = s.prompt[i % P];
        fwd_batch bb = {.n = batch, .tokens = hist, .slot = slot, .pos = pos, .logits = NULL};
        double t1 = clock_s(), c1 = cb_cpu_self();
        if (forward_run(fc, kv, &bb, hidden, logits, err, sizeof err) < 0) goto fail;
        double dt = clock_s() - t1, dc = cb_cpu_self() - c1;
        if (rep == 0 || dt < res->batch_cost) res->batch_cost = dt;
        if (rep == 0 || dc < res->batch_cost_cpu) res->batch_cost_cpu = dc;
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "baton-bench cluster: baseline: %s\n", err);
out:
    sampler_scratch_free(sc);
    free(pos);
    free(slot);
    free(hist);
    free(logits);
    free(hidden);
    fwd_ctx_free(fc);
    kv_cache_free(kv);
    model_free(m);
    return rc;
}

/* --- the benchmark ------------------------------------------------------ */

typedef struct cb_row {
    int workers, threads;
    double runner, runner_med;   /* baseline decode tok/s: mean, median gap (best of the tries) */
    double cluster, cluster_med; /* the same for one stream through the cluster */
    double batch_gain;           /* baseline: a step of M sequences costs M / batch_gain one-token steps, M =
                                  * the micro-batch of S streams over `workers` stages (ceil(S / workers)) */
    double cpu_ratio;            /* baseline CPU s per token / the cluster's (all its processes) */
    double batch_gain_cpu;       /* batch_gain from CPU seconds (a neighbour's load moves it less) */
    double cluster_cpu_per_token;/* the cluster's CPU s per token, one stream */
    double hop_bytes, hop_frames;
    bool same_tokens;            /* greedy output equal to the baseline's */
} cb_row;

static int cb_parse(int argc, char **argv, cb_opts *o) {
    *o = (cb_opts){.tokens = 16, .prompt = 8, .streams = 8, .reps = 1, .workers = {1, 2, 4}, .n_workers = 3,
                   .codec = "f32+lz4"};
    o->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    o->json = bench_want_json(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) continue;
        if (!v) goto bad;
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--codec")) o->codec = v;
        else if (!strcmp(a, "--tokens")) {
            if (bench_int_opt("cluster", a, v, 2, CB_MAX_TOKENS, &o->tokens) != 0) return -1;
        } else if (!strcmp(a, "--prompt")) {
            if (bench_int_opt("cluster", a, v, 1, 1024, &o->prompt) != 0) return -1;
        } else if (!strcmp(a, "--streams")) {
            if (bench_int_opt("cluster", a, v, 1, CB_MAX_STREAMS, &o->streams) != 0) return -1;
        } else if (!strcmp(a, "--cores")) {
            if (bench_int_opt("cluster", a, v, 1, 4096, &o->cores) != 0) return -1;
        } else if (!strcmp(a, "--reps")) {
            if (bench_int_opt("cluster", a, v, 1, 1000, &o->reps) != 0) return -1;
        }
        else if (!strcmp(a, "--workers")) {
            o->n_workers = 0;
            for (char *p = (char *)v; *p && o->n_workers < 8; p += *p == ',') {
                char *end;
                long w = strtol(p, &end, 10);
                if (end == p || w < 1 || w > CB_MAX_WORKERS) goto bad;
                o->workers[o->n_workers++] = (int)w;
                p = end;
            }
        } else goto bad;
        continue;
    bad:
        fprintf(stderr, "baton-bench cluster: bad or unknown option '%s' (see the top of tools/bench/cluster.c)\n", a);
        return -1;
    }
    if (o->tokens < 2 || o->tokens > CB_MAX_TOKENS || o->prompt < 1 || o->prompt > 1024 || o->streams < 1 ||
        o->streams > CB_MAX_STREAMS || o->cores < 1 || o->reps < 1 || o->n_workers < 1) {
        fprintf(stderr, "baton-bench cluster: need --tokens in [2, 4096], --prompt in [1, 1024], --streams in [1, %d], "
                        "--cores >= 1, --reps >= 1\n", CB_MAX_STREAMS);
        return -1;
    }
    return 0;
}

/* Finds the build folder, makes the temporary folder and, without --model,
 * generates the QwQ-shaped model there. 0, or -1. */
static int cb_setup(const cb_opts *o, cb_env *e) {
    memset(e, 0, sizeof *e);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return -1;
    exe[n] = 0;
    snprintf(e->build, sizeof e->build, "%s", dirname(dirname(exe))); /* <build>/tools/baton-bench */
    snprintf(e->dir, sizeof e->dir, "/tmp/baton-bench-cluster.XXXXXX");
    if (!mkdtemp(e->dir)) {
        fprintf(stderr, "baton-bench cluster: cannot make a temporary folder: %s\n", strerror(errno));
        return -1;
    }
    static const char *const files[] = {"qwq4-q8_0.gguf", "mkmodel.log", "coord.log"};
    for (int i = 0; i < (int)(sizeof files / sizeof *files) + CB_MAX_WORKERS; i++) {
        char *f = cb_undo.files[cb_undo.n_files++];
        if (i < 3) snprintf(f, sizeof cb_undo.files[0], "%s/%s", e->dir, files[i]);
        else snprintf(f, sizeof cb_undo.files[0], "%s/worker-%d.log", e->dir, i - 2);
    }
    snprintf(cb_undo.files[cb_undo.n_files++], sizeof cb_undo.files[0], "%s", e->dir);
    signal(SIGINT, cb_on_signal);
    signal(SIGTERM, cb_on_signal);
    if (o->model) {
        snprintf(e->model, sizeof e->model, "%s", o->model);
        return 0;
    }
    snprintf(e->model, sizeof e->model, "%s", cb_undo.files[0]);
    char bin[4200], log[4200];
    snprintf(bin, sizeof bin, "%s/tools/baton-mkmodel", e->build);
    snprintf(log, sizeof log, "%s/mkmodel.log", e->dir);
    char *argv[] = {bin, "--preset", "qwq-32b", "--layers", "4", "--type", "q8_0", "--vocab", "1024", "-o", e->model, NULL};
    fprintf(stderr, "baton-bench cluster: generating %s (about 2 GB)\n", e->model);
    if (cb_run(argv, log) != 0) {
        cb_dump_logs(e);
        return -1;
    }
    return 0;
}

static void cb_cleanup(const cb_env *e) {
    char cmd[8300];
    if (!e->dir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "baton-bench cluster: could not remove %s\n", e->dir);
}

/* Model shape from the running cluster. 0, or -1. */
static int cb_model_info(cb_env *e, const cb_cluster *cl) {
    char err[256];
    baton_client *c = baton_connect(cl->addr, NULL, err, sizeof err);
    baton_model_info mi;
    int st = c ? baton_model(c, &mi, err, sizeof err) : BATON_STATUS_UNAVAILABLE;
    baton_close(c);
    if (st != BATON_STATUS_OK) {
        fprintf(stderr, "baton-bench cluster: model info: %s\n", err);
        return -1;
    }
    e->n_embd = mi.n_embd;
    e->n_vocab = mi.n_vocab;
    return 0;
}

/* One worker count: the baseline and the single stream, alternating, best of R
 * each; with 2 workers also the concurrent streams (best of R). 0, or -1. */
static int cb_config(cb_env *e, const cb_opts *o, int n, cb_row *row, cb_result *conc) {
    int threads = o->cores / n > 0 ? o->cores / n : 1;
    *row = (cb_row){.workers = n, .threads = threads, .same_tokens = true};
    cb_cluster cl;
    if (cb_cluster_start(e, o, n, threads, &cl) != 0) return -1;
    int rc = -1;
    static cb_result base, one, c;
    if (cb_cluster_wait(e, &cl) != 0 || (!e->n_vocab && cb_model_info(e, &cl) != 0)) goto out;
    /* the scheduler spreads S decoding streams over one micro-batch per stage */
    const int micro = (o->streams + n - 1) / n;
    for (int r = 0; r < o->reps; r++) {
        /* alternate, so that a neighbour's load hits both sides alike */
        if (cb_measure_inproc(e, o, threads, micro, &base) != 0 || cb_measure_streams(e, o, &cl, 1, &one) != 0)
            goto out;
        row->runner = fmax(row->runner, base.tok_s);
        row->runner_med = fmax(row->runner_med, base.tok_s_median);
        row->cluster = fmax(row->cluster, one.tok_s);
        row->cluster_med = fmax(row->cluster_med, one.tok_s_median);
        if (one.cpu_per_token > 0) row->cpu_ratio = fmax(row->cpu_ratio, base.cpu_per_token / one.cpu_per_token);
        if (base.batch_cost > 0 && base.tok_s_median > 0)
            row->batch_gain = fmax(row->batch_gain, micro / (base.batch_cost * base.tok_s_median));
        if (base.batch_cost_cpu > 0 && base.cpu_per_token > 0)
            row->batch_gain_cpu = fmax(row->batch_gain_cpu, micro * base.cpu_per_token / base.batch_cost_cpu);
        if (one.cpu_per_token > 0 && (row->cluster_cpu_per_token == 0 || one.cpu_per_token < row->cluster_cpu_per_token))
            row->cluster_cpu_per_token = one.cpu_per_token;
        row->hop_bytes = one.hop_bytes;
        row->hop_frames = one.hop_frames;
        row->same_tokens &= base.n == one.n && !memcmp(base.tokens, one.tokens, (size_t)one.n * sizeof one.tokens[0]);
        fprintf(stderr, "  %d worker(s) x %d thread(s), try %d: baseline %.3f tok/s (median gap %.3f), cluster %.3f (%.3f)\n",
                n, threads, r + 1, base.tok_s, base.tok_s_median, one.tok_s, one.tok_s_median);
    }
    if (n == 2) {
        conc->tok_s = 0;
        for (int r = 0; r < o->reps; r++) {
            if (cb_measure_streams(e, o, &cl, o->streams, &c) != 0) goto out;
            fprintf(stderr, "  %d streams x 2 workers, try %d: %.3f tok/s\n", o->streams, r + 1, c.tok_s);
            if (c.tok_s > conc->tok_s) *conc = c;
        }
    }
    rc = 0;
out:
    if (rc != 0) cb_dump_logs(e);
    cb_stop(&cl);
    return rc;
}

static double cb_div(double a, double b) { return b > 0 ? a / b : 0; }

/* The 2-worker concurrent ratio projected from CPU time: one stream's CPU seconds
 * per token over S streams', times the stages that can run at once (2, or fewer
 * cores). A loaded machine stretches wall time, much less CPU time. */
static double cb_conc_cpu_ratio(const cb_opts *o, const cb_row *two, const cb_result *conc) {
    return cb_div(two->cluster_cpu_per_token, conc->cpu_per_token_all) * (o->cores < 2 ? o->cores : 2);
}

static void cb_print(const cb_env *e, const cb_opts *o, const cb_row *rows, int n_rows, const cb_result *conc,
                     const cb_row *two) {
    double hidden = (double)e->n_embd * 4;
    /* bytes per token: the 2-worker single stream, else the first row with a hop */
    const cb_row *hop = two;
    for (int i = 0; !hop && i < n_rows; i++)
        if (rows[i].workers > 1) hop = &rows[i];
    double conc_ratio = two ? cb_div(conc->tok_s, two->cluster) : 0;
    if (o->json) {
        json_t *j = json_object(), *arr = json_array();
        json_object_set_new(j, "model", json_string(o->model ? o->model : "qwq-32b 4 layers q8_0 vocab 1024 (generated)"));
        json_object_set_new(j, "n_embd", json_integer(e->n_embd));
        json_object_set_new(j, "cores", json_integer(o->cores));
        json_object_set_new(j, "prompt_tokens", json_integer(o->prompt));
        json_object_set_new(j, "tokens", json_integer(o->tokens));
        json_object_set_new(j, "reps", json_integer(o->reps));
        for (int i = 0; i < n_rows; i++) {
            const cb_row *r = &rows[i];
            json_t *x = json_object();
            json_object_set_new(x, "workers", json_integer(r->workers));
            json_object_set_new(x, "threads", json_integer(r->threads));
            json_object_set_new(x, "runner_tok_s", json_real(r->runner));
            json_object_set_new(x, "cluster_tok_s", json_real(r->cluster));
            json_object_set_new(x, "ratio", json_real(cb_div(r->cluster, r->runner)));
            json_object_set_new(x, "runner_tok_s_median", json_real(r->runner_med));
            json_object_set_new(x, "cluster_tok_s_median", json_real(r->cluster_med));
            json_object_set_new(x, "ratio_median", json_real(cb_div(r->cluster_med, r->runner_med)));
            json_object_set_new(x, "cpu_ratio", json_real(r->cpu_ratio));
            json_object_set_new(x, "batch_gain", json_real(r->batch_gain));
            json_object_set_new(x, "same_tokens", json_boolean(r->same_tokens));
            json_object_set_new(x, "hop_bytes_per_token", json_real(r->hop_bytes));
            json_object_set_new(x, "hop_frames_per_token", json_real(r->hop_frames));
            json_array_append_new(arr, x);
        }
        json_object_set_new(j, "single", arr);
        json_object_set_new(j, "single_ratio_target", json_real(0.95));
        if (two) {
            json_t *x = json_object();
            json_object_set_new(x, "workers", json_integer(2));
            json_object_set_new(x, "streams", json_integer(o->streams));
            json_object_set_new(x, "aggregate_tok_s", json_real(conc->tok_s));
            json_object_set_new(x, "single_tok_s", json_real(two->cluster));
            json_object_set_new(x, "ratio", json_real(conc_ratio));
            json_object_set_new(x, "ratio_target", json_real(6));
            json_object_set_new(x, "ratio_bound", json_real(2 * two->batch_gain));
            json_object_set_new(x, "ratio_bound_cpu", json_real(2 * two->batch_gain_cpu));
            json_object_set_new(x, "cpu_per_token", json_real(conc->cpu_per_token_all));
            json_object_set_new(x, "single_cpu_per_token", json_real(two->cluster_cpu_per_token));
            json_object_set_new(x, "ratio_cpu", json_real(cb_conc_cpu_ratio(o, two, conc)));
            json_object_set_new(x, "tokens_per_micro_batch", json_real(conc->tokens_per_frame));
            json_t *be = json_array();
            for (int i = 0; i < 2; i++) json_array_append_new(be, json_real(conc->busy_each[i]));
            json_object_set_new(x, "stage_busy_each", be);
            json_object_set_new(x, "hop_bytes_per_token", json_real(conc->hop_bytes));
            json_object_set_new(x, "hop_frames_per_token", json_real(conc->hop_frames));
            json_object_set_new(x, "stage_busy", json_real(conc->busy));
            json_object_set_new(j, "concurrent", x);
        }
        json_object_set_new(j, "hidden_state_bytes", json_real(hidden));
        json_object_set_new(j, "codec", json_string(e->codec));
        if (hop) {
            json_object_set_new(j, "hop_bytes_per_token", json_real(hop->hop_bytes));
            json_object_set_new(j, "hop_bytes_ratio", json_real(cb_div(hop->hop_bytes, hidden)));
        }
        char *str = json_dumps(j, JSON_INDENT(1));
        puts(str);
        free(str);
        json_decref(j);
        return;
    }
    printf("cluster: %s, n_embd %u, %d cores, prompt %d tokens, %d tokens per stream, best of %d, stage codec %s\n",
           o->model ? o->model : "qwq-32b 4 layers q8_0", (unsigned)e->n_embd, o->cores, o->prompt, o->tokens, o->reps,
           e->codec);
    printf("decode tok/s: tokens after the first / first-to-last time; med: 1 / median gap between tokens;\n"
           "cpu: baseline CPU seconds per token / the cluster's (coordinator and workers)\n");
    printf("%-7s %-7s %9s %9s %6s %9s %9s %6s %6s %6s %9s %8s %7s\n", "workers", "threads", "baseline", "cluster",
           "ratio", "base med", "clus med", "ratio", "target", "cpu", "hop B/tok", "frm/tok", "tokens");
    for (int i = 0; i < n_rows; i++) {
        const cb_row *r = &rows[i];
        printf("%-7d %-7d %9.3f %9.3f %6.3f %9.3f %9.3f %6.3f %6.2f %6.3f %9.0f %8.3f %7s\n", r->workers, r->threads,
               r->runner, r->cluster, cb_div(r->cluster, r->runner), r->runner_med, r->cluster_med,
               cb_div(r->cluster_med, r->runner_med), 0.95, r->cpu_ratio, r->hop_bytes, r->hop_frames,
               r->same_tokens ? "same" : "DIFFER");
    }
    if (two) {
        printf("%d streams x 2 workers: %.3f tok/s aggregate, %.3f single: ratio %.2f (target 6); bound here about "
               "2 stages x the batching gain of %d-token micro-batches: %.2f x 2 = %.2f (wall clock), %.2f x 2 = %.2f "
               "(CPU time)\n",
               o->streams, conc->tok_s, two->cluster, conc_ratio, (o->streams + 1) / 2, two->batch_gain,
               2 * two->batch_gain, two->batch_gain_cpu, 2 * two->batch_gain_cpu);
        printf("  stages busy %.0f%% of the time (worker 1 %.0f%%, worker 2 %.0f%%); %.2f tokens per micro-batch "
               "(prompts included); %.0f hop bytes/token\n",
               100 * conc->busy, 100 * conc->busy_each[0], 100 * conc->busy_each[1], conc->tokens_per_frame,
               conc->hop_bytes);
        printf("  CPU seconds per token (coordinator + workers): one stream %.4f, %d streams %.4f: ratio %.2f x %d "
               "cores = %.2f (what the wall-clock ratio would be with every core on a stage all the time)\n",
               two->cluster_cpu_per_token, o->streams, conc->cpu_per_token_all,
               cb_div(two->cluster_cpu_per_token, conc->cpu_per_token_all), o->cores < 2 ? o->cores : 2,
               cb_conc_cpu_ratio(o, two, conc));
    }
    if (hop)
        printf("bytes between stages per token: %.0f, hidden state %.0f (n_embd x 4): ratio %.3f\n", hop->hop_bytes,
               hidden, cb_div(hop->hop_bytes, hidden));
}

static int bench_cluster(int argc, char **argv) {
    cb_opts o;
    if (cb_parse(argc, argv, &o) != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    static cb_env e;
    if (cb_setup(&o, &e) != 0) {
        cb_cleanup(&e);
        return 1;
    }
    e.codec = o.codec;
    cb_row rows[8];
    static cb_result conc;
    int two = -1, rc = 0;
    for (int i = 0; i < o.n_workers && rc == 0; i++) {
        rc = cb_config(&e, &o, o.workers[i], &rows[i], &conc);
        if (o.workers[i] == 2) two = i;
    }
    if (rc == 0) cb_print(&e, &o, rows, o.n_workers, &conc, two >= 0 ? &rows[two] : NULL);
    cb_cleanup(&e);
    return rc ? 1 : 0;
}
BENCH_REGISTER(cluster, "pipeline vs single process: decode tok/s with 1/2/4 workers, 8 streams, bytes per hop",
               "[--model FILE] [--tokens N] [--prompt P] [--streams S] [--workers 1,2,4] [--cores C] [--reps R] "
               "[--codec NAME]",
               bench_cluster)
