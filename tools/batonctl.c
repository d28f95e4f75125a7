/* batonctl - the admin CLI of a Baton cluster.
 *
 *   batonctl nodes     --server HOST:PORT [--json]   workers: state, layers, memory, ISA, speed, heartbeat
 *   batonctl plan      --server HOST:PORT [--json]   layer ranges per worker and the predicted step time
 *   batonctl status    --server HOST:PORT [--json]   requests, tokens/s, per-stage busy time and traffic
 *   batonctl metrics   --server HOST:PORT            the Prometheus text (as GET /metrics)
 *   batonctl drain     NODE --server HOST:PORT       move its layers elsewhere; it then holds none
 *   batonctl undrain   NODE --server HOST:PORT       eligible again (rebalance gives it layers)
 *   batonctl remove    NODE --server HOST:PORT       drain it, then disconnect it
 *   batonctl rebalance --server HOST:PORT            re-plan over every eligible worker
 *   batonctl plan --pool POOL.ini --model FILE | --preset qwq-32b --type q4_k_m|q8_0 [--streams N]
 *                                                    offline: the plan of machines not bought yet (pool.h)
 *
 * The server may also come from $BATON_SERVER. The exit code is the call's
 * status (0 OK, 5 NOT_FOUND, 9 FAILED_PRECONDITION, 14 UNAVAILABLE, ...); 2 is
 * also a usage error.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "baton_client.h"
#include "cliparse.h"
#include "log.h"
#include "pool.h"

typedef struct ctl {
    const char *server, *cluster_id, *token_file;
    bool json;
    uint32_t node;
    /* plan --pool: offline */
    const char *pool, *model, *preset, *type;
    int streams, ctx, slots;
} ctl;

static void usage(FILE *out) {
    fprintf(out,
            "usage: batonctl COMMAND [NODE] --server HOST:PORT [--json] [--cluster-id ID] [--admin-token-file FILE]\n"
            "commands:\n"
            "  nodes         workers: id, address, state, layers, memory used/free, ISA, speed, last heartbeat\n"
            "  plan          layer ranges per worker and the plan's predicted step time\n"
            "  status        requests running and queued, tokens/s, per-stage busy time and hop traffic\n"
            "  metrics       the coordinator's metrics in Prometheus text format\n"
            "  drain NODE    move the worker's layers to the others without failing a request; it keeps none\n"
            "  undrain NODE  make a drained worker eligible again (rebalance gives it layers)\n"
            "  remove NODE   drain the worker, then disconnect it\n"
            "  rebalance     re-plan over every eligible worker (a worker that joined later gets layers)\n"
            "  shutdown      end every request with UNAVAILABLE and stop the coordinator; its workers exit too\n"
            "  plan --pool POOL.ini (--model FILE | --preset qwq-32b --type q4_k_m|q8_0) [--streams N]\n"
            "                [--ctx N] [--slots N]\n"
            "                offline, no coordinator: the coordinator's plan over the machines of POOL.ini\n"
            "                ([pool] and [node NAME] sections; baton-worker --measure prints a node's), the\n"
            "                memory each uses, and predicted tokens/s for one stream, N streams (default 8)\n"
            "                and prefill, each with its bottleneck (see README, \"Running QwQ-32B on N machines\")\n"
            "options:\n"
            "  --server HOST:PORT  the coordinator (default: $BATON_SERVER)\n"
            "  --json              one JSON object on stdout (nodes, plan, status)\n"
            "  --admin-token-file FILE  the admin token, when the coordinator requires one\n"
            "                      (default: $BATON_ADMIN_TOKEN_FILE)\n"
            "  --cluster-id ID     default \"baton\"\n"
            "exit code: the call's status (0 OK, 5 NOT_FOUND, 9 FAILED_PRECONDITION, 14 UNAVAILABLE...), 2 usage\n");
}

static void print_json(json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) puts(s);
    free(s);
    json_decref(j);
}

/* "1.5 GiB" style. */
static const char *human_bytes(uint64_t b, char *buf, size_t n) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

static const char *layers_text(const baton_node_info *n, char *buf, size_t len) {
    if (n->stage < 0 || n->layer_end <= n->layer_begin) snprintf(buf, len, "-");
    else
        snprintf(buf, len, "[%d,%d)%s%s", (int)n->layer_begin, (int)n->layer_end, n->embed ? "+E" : "",
                 n->head ? "+H" : "");
    return buf;
}

static uint64_t mem_used(const baton_node_info *n) { return n->weight_bytes + n->kv_bytes; }
static uint64_t mem_free(const baton_node_info *n) {
    return n->memory > mem_used(n) ? n->memory - mem_used(n) : 0;
}

static json_t *node_json(const baton_node_info *n) {
    json_t *e = json_object();
    json_object_set_new(e, "id", json_integer(n->id));
    json_object_set_new(e, "address", json_string(n->address));
    json_object_set_new(e, "state", json_string(n->state));
    json_object_set_new(e, "stage", json_integer(n->stage));
    json_object_set_new(e, "layer_begin", json_integer(n->stage >= 0 ? n->layer_begin : 0));
    json_object_set_new(e, "layer_end", json_integer(n->stage >= 0 ? n->layer_end : 0));
    json_object_set_new(e, "layers", json_integer(n->stage >= 0 ? n->layer_end - n->layer_begin : 0));
    json_object_set_new(e, "embed", json_boolean(n->embed));
    json_object_set_new(e, "head", json_boolean(n->head));
    json_object_set_new(e, "ready", json_boolean(n->ready));
    json_object_set_new(e, "memory_bytes", json_integer((json_int_t)n->memory));
    json_object_set_new(e, "memory_used_bytes", json_integer((json_int_t)mem_used(n)));
    json_object_set_new(e, "memory_free_bytes", json_integer((json_int_t)mem_free(n)));
    json_object_set_new(e, "weight_bytes", json_integer((json_int_t)n->weight_bytes));
    json_object_set_new(e, "kv_bytes", json_integer((json_int_t)n->kv_bytes));
    json_object_set_new(e, "peak_rss_bytes", json_integer((json_int_t)n->peak_rss));
    json_object_set_new(e, "isa", json_string(n->isa));
    json_object_set_new(e, "device", json_string(n->device));
    json_object_set_new(e, "cores", json_integer(n->cores));
    json_object_set_new(e, "seconds_per_layer", json_real(n->seconds_per_layer));
    json_object_set_new(e, "heartbeat_age_ms", json_integer((json_int_t)n->heartbeat_age_ms));
    json_object_set_new(e, "stage_seconds", json_real(n->stage_seconds));
    json_object_set_new(e, "busy_s", json_real((double)n->busy_us / 1e6));
    json_object_set_new(e, "steps", json_integer((json_int_t)n->steps));
    json_object_set_new(e, "hop_bytes", json_integer((json_int_t)n->hop_bytes));
    json_object_set_new(e, "hop_frames", json_integer((json_int_t)n->hop_frames));
    json_object_set_new(e, "slots_used", json_integer(n->slots_used));
    return e;
}

/* The coordinator's view of every node and the plan; exits with the call's status on failure. */
static void fetch_state(baton_client *c, baton_health_info *h) {
    char msg[256];
    int st = baton_admin_state(c, h, msg, sizeof msg);
    if (st != BATON_STATUS_OK) log_exit(st, "%s: %s", baton_status_name(st), msg);
}

static int cmd_nodes(baton_client *c, const ctl *o) {
    baton_health_info h;
    fetch_state(c, &h);
    if (o->json) {
        json_t *j = json_object(), *a = json_array();
        for (size_t i = 0; i < h.n_nodes; i++) json_array_append_new(a, node_json(&h.nodes[i]));
        json_object_set_new(j, "nodes", a);
        print_json(j);
    } else {
        printf("%-4s %-22s %-9s %-14s %10s %10s %-8s %5s %10s %9s  %s\n", "ID", "ADDRESS", "STATE", "LAYERS", "MEM-USED",
               "MEM-FREE", "ISA", "CORES", "S/LAYER", "HEARTBEAT", "DEVICE");
        for (size_t i = 0; i < h.n_nodes; i++) {
            const baton_node_info *n = &h.nodes[i];
            char lb[32], ub[24], fb[24], hb[24];
            if (!strcmp(n->state, "dead") || !strcmp(n->state, "removed")) snprintf(hb, sizeof hb, "-");
            else snprintf(hb, sizeof hb, "%.1fs ago", (double)n->heartbeat_age_ms / 1000.0);
            printf("%-4u %-22s %-9s %-14s %10s %10s %-8s %5u %10.3g %9s  %s\n", (unsigned)n->id, n->address, n->state,
                   layers_text(n, lb, sizeof lb), human_bytes(mem_used(n), ub, sizeof ub),
                   human_bytes(mem_free(n), fb, sizeof fb), n->isa, (unsigned)n->cores, n->seconds_per_layer, hb,
                   n->device);
        }
    }
    baton_health_free(&h);
    return 0;
}

static int cmd_plan(baton_client *c, const ctl *o) {
    baton_health_info h;
    fetch_state(c, &h);
    /* stages in pipeline order */
    int32_t n_stages = 0;
    for (size_t i = 0; i < h.n_nodes; i++)
        if (h.nodes[i].stage + 1 > n_stages) n_stages = h.nodes[i].stage + 1;
    if (o->json) {
        json_t *j = json_object(), *a = json_array();
        json_object_set_new(j, "plan_id", json_integer(h.plan_id));
        json_object_set_new(j, "serving", json_boolean(h.serving));
        json_object_set_new(j, "predicted_step_s", json_real(h.predicted_step_s));
        json_object_set_new(j, "plan_error", json_string(h.plan_error));
        for (int32_t s = 0; s < n_stages; s++)
            for (size_t i = 0; i < h.n_nodes; i++)
                if (h.nodes[i].stage == s) json_array_append_new(a, node_json(&h.nodes[i]));
        json_object_set_new(j, "stages", a);
        print_json(j);
    } else if (!h.plan_id) {
        printf("no plan%s%s\n", h.plan_error[0] ? ": " : "", h.plan_error);
    } else {
        printf("plan %u, %s, predicted step time %.3g ms (the slowest stage)\n", (unsigned)h.plan_id,
               h.serving ? "serving" : "loading", h.predicted_step_s * 1e3);
        printf("%-6s %-4s %-22s %-14s %12s\n", "STAGE", "NODE", "ADDRESS", "LAYERS", "PREDICTED-MS");
        for (int32_t s = 0; s < n_stages; s++)
            for (size_t i = 0; i < h.n_nodes; i++) {
                const baton_node_info *n = &h.nodes[i];
                char lb[32];
                if (n->stage == s)
                    printf("%-6d %-4u %-22s %-14s %12.3g\n", (int)s, (unsigned)n->id, n->address,
                           layers_text(n, lb, sizeof lb), n->stage_seconds * 1e3);
            }
        for (size_t i = 0; i < h.n_nodes; i++)
            if (h.nodes[i].stage < 0)
                printf("%-6s %-4u %-22s %-14s (%s)\n", "-", (unsigned)h.nodes[i].id, h.nodes[i].address, "-",
                       h.nodes[i].state);
    }
    baton_health_free(&h);
    return 0;
}

static int cmd_status(baton_client *c, const ctl *o) {
    baton_health_info h;
    fetch_state(c, &h);
    if (o->json) {
        json_t *j = json_object(), *a = json_array();
        json_object_set_new(j, "serving", json_boolean(h.serving));
        json_object_set_new(j, "plan_id", json_integer(h.plan_id));
        json_object_set_new(j, "workers", json_integer(h.n_workers));
        json_object_set_new(j, "active", json_integer(h.active_requests));
        json_object_set_new(j, "queued", json_integer(h.queued_requests));
        json_object_set_new(j, "inflight_batches", json_integer(h.inflight_batches));
        json_object_set_new(j, "tokens_per_s", json_real(h.tokens_per_s));
        json_object_set_new(j, "tokens_generated", json_integer((json_int_t)h.tokens_generated));
        json_object_set_new(j, "tokens_prompt", json_integer((json_int_t)h.tokens_prompt));
        json_object_set_new(j, "requests_total", json_integer((json_int_t)h.requests_total));
        json_object_set_new(j, "requests_failed", json_integer((json_int_t)h.requests_failed));
        json_object_set_new(j, "step_seconds_avg", json_real(h.step_seconds_avg));
        json_object_set_new(j, "replans", json_integer((json_int_t)h.replans));
        json_object_set_new(j, "uptime_s", json_real(h.uptime_s));
        for (size_t i = 0; i < h.n_nodes; i++)
            if (h.nodes[i].stage >= 0) json_array_append_new(a, node_json(&h.nodes[i]));
        json_object_set_new(j, "stages", a);
        print_json(j);
    } else {
        printf("%s, plan %u, %u worker(s); requests: %u running, %u queued, %llu ended (%llu failed)\n",
               h.serving ? "serving" : "not serving", (unsigned)h.plan_id, (unsigned)h.n_workers,
               (unsigned)h.active_requests, (unsigned)h.queued_requests, (unsigned long long)h.requests_total,
               (unsigned long long)h.requests_failed);
        printf("tokens: %.1f/s over the last 10 s, %llu generated, %llu prompt; micro-batch round trip %.3g ms "
               "(mean), %u in flight\n",
               h.tokens_per_s, (unsigned long long)h.tokens_generated, (unsigned long long)h.tokens_prompt,
               h.step_seconds_avg * 1e3, (unsigned)h.inflight_batches);
        printf("%-6s %-4s %-14s %10s %8s %10s %10s %10s\n", "STAGE", "NODE", "LAYERS", "BUSY-S", "BUSY-%", "STEPS",
               "HOP-BYTES", "HOP-FRAMES");
        for (size_t i = 0; i < h.n_nodes; i++) {
            const baton_node_info *n = &h.nodes[i];
            char lb[32], bb[24];
            if (n->stage < 0) continue;
            printf("%-6d %-4u %-14s %10.3f %7.1f%% %10llu %10s %10llu\n", (int)n->stage, (unsigned)n->id,
                   layers_text(n, lb, sizeof lb), (double)n->busy_us / 1e6,
                   h.uptime_s > 0 ? (double)n->busy_us / 1e4 / h.uptime_s : 0.0, (unsigned long long)n->steps,
                   human_bytes(n->hop_bytes, bb, sizeof bb), (unsigned long long)n->hop_frames);
        }
    }
    baton_health_free(&h);
    return 0;
}

static int cmd_metrics(baton_client *c, const ctl *o) {
    (void)o;
    char *text, msg[256];
    int st = baton_metrics(c, &text, msg, sizeof msg);
    if (st != BATON_STATUS_OK) log_exit(st, "%s: %s", baton_status_name(st), msg);
    fputs(text, stdout);
    free(text);
    return 0;
}

/* drain, undrain, remove, rebalance: print the coordinator's answer. */
static int node_op(baton_client *c, const ctl *o, int op) {
    char msg[700];
    int st = baton_admin_node_op(c, op, o->node, msg, sizeof msg);
    if (st != BATON_STATUS_OK) log_exit(st, "%s: %s", baton_status_name(st), msg);
    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "status", json_string("OK"));
        json_object_set_new(j, "message", json_string(msg));
        print_json(j);
    } else {
        puts(msg);
    }
    return 0;
}

static int cmd_drain(baton_client *c, const ctl *o) { return node_op(c, o, BATON_ADMIN_DRAIN); }
static int cmd_undrain(baton_client *c, const ctl *o) { return node_op(c, o, BATON_ADMIN_UNDRAIN); }
static int cmd_remove(baton_client *c, const ctl *o) { return node_op(c, o, BATON_ADMIN_REMOVE); }
static int cmd_rebalance(baton_client *c, const ctl *o) { return node_op(c, o, BATON_ADMIN_REBALANCE); }
static int cmd_shutdown(baton_client *c, const ctl *o) { return node_op(c, o, BATON_ADMIN_SHUTDOWN); }

/* plan --pool: the plan and predictions for a pool file; exit status 0, 2 (usage) or 1. */
static int cmd_plan_offline(const ctl *o) {
    char err[700];
    pool *p = calloc(1, sizeof *p);
    pool_prediction *pr = calloc(1, sizeof *pr);
    if (!p || !pr) log_die("out of memory");
    if (pool_load(o->pool, p, err, sizeof err) != 0) log_exit(2, "--pool: %s", err);
    if (o->ctx) p->ctx = o->ctx;
    if (o->slots) p->slots = o->slots;
    pool_model m;
    if (o->model) {
        gguf_file *gf = gguf_open(o->model, err, sizeof err);
        model_hparams hp;
        if (!gf || model_read_hparams(gf, &hp, err, sizeof err) != 0 ||
            pool_model_of_file(gf, &hp, p->ctx, p->slots, p->kv_type, &m, err, sizeof err) != 0)
            log_die("--model: %s", err);
        gguf_close(gf);
        snprintf(m.name, sizeof m.name, "%.90s", o->model);
    } else if (pool_model_preset(o->preset, o->type ? o->type : "", p->ctx, p->slots, p->kv_type, &m, err,
                                 sizeof err) != 0) {
        log_exit(2, "%s", err);
    }
    if (pool_predict(p, &m, o->streams, pr, err, sizeof err) != 0) log_die("%s", err);
    const plan_result *r = &pr->plan;
    uint64_t weights = m.pm.embed_bytes + m.pm.head_bytes;
    for (int32_t l = 0; l < m.pm.n_layer; l++) weights += m.layer_bytes[l];
    if (o->json) {
        json_t *j = json_object(), *a = json_array();
        json_object_set_new(j, "model", json_string(m.name));
        json_object_set_new(j, "weight_bytes", json_integer((json_int_t)weights));
        for (int s = 0; s < r->n_stages; s++) {
            const plan_stage *st = &r->stages[s];
            json_t *e = json_object();
            json_object_set_new(e, "node", json_string(p->nodes[st->node].name));
            json_object_set_new(e, "layer_begin", json_integer(st->layer_begin));
            json_object_set_new(e, "layer_end", json_integer(st->layer_end));
            json_object_set_new(e, "embed", json_boolean(st->embed));
            json_object_set_new(e, "head", json_boolean(st->head));
            json_object_set_new(e, "bytes", json_integer((json_int_t)st->bytes));
            json_object_set_new(e, "memory_bytes", json_integer((json_int_t)p->nodes[st->node].memory));
            json_object_set_new(e, "token_s", json_real(pr->stage_s[s]));
            json_array_append_new(a, e);
        }
        json_object_set_new(j, "stages", a);
        json_object_set_new(j, "single_stream_tps", json_real(pr->single_tps));
        json_object_set_new(j, "streams", json_integer(pr->streams));
        json_object_set_new(j, "multi_stream_tps", json_real(pr->multi_tps));
        json_object_set_new(j, "prefill_tps", json_real(pr->prefill_tps));
        json_object_set_new(j, "single_stream_bottleneck", json_string(pr->single_why));
        json_object_set_new(j, "multi_stream_bottleneck", json_string(pr->multi_why));
        json_object_set_new(j, "prefill_bottleneck", json_string(pr->prefill_why));
        print_json(j);
    } else {
        char wb[24], kb[24];
        printf("model %s: %d layers, weights %s; KV cache %s per layer (%d slot(s) x %d positions)\n", m.name,
               (int)m.pm.n_layer, human_bytes(weights, wb, sizeof wb),
               human_bytes(model_kv_bytes_per_token(&m.hp, p->kv_type) * (uint64_t)p->ctx * (uint64_t)p->slots, kb,
                           sizeof kb),
               p->slots, p->ctx);
        printf("pool %s: %d machine(s), %d used\n", o->pool, p->n, r->n_stages);
        printf("%-6s %-16s %-14s %10s %10s %12s\n", "STAGE", "NODE", "LAYERS", "MEM-USED", "MEM-OFFER", "TOKEN-MS");
        for (int s = 0; s < r->n_stages; s++) {
            const plan_stage *st = &r->stages[s];
            char lb[40], ub[24], ob[24];
            snprintf(lb, sizeof lb, "[%d,%d)%s%s", (int)st->layer_begin, (int)st->layer_end, st->embed ? "+E" : "",
                     st->head ? "+H" : "");
            printf("%-6d %-16s %-14s %10s %10s %12.3f\n", s, p->nodes[st->node].name, lb,
                   human_bytes(st->bytes, ub, sizeof ub), human_bytes(p->nodes[st->node].memory, ob, sizeof ob),
                   pr->stage_s[s] * 1e3);
        }
        printf("predicted decode, 1 stream:   %8.2f tokens/s  (%s)\n", pr->single_tps, pr->single_why);
        printf("predicted decode, %d streams: %8.2f tokens/s  (%s)\n", pr->streams, pr->multi_tps, pr->multi_why);
        printf("predicted prefill:           %8.1f tokens/s  (%s)\n", pr->prefill_tps, pr->prefill_why);
    }
    pool_model_free(&m);
    free(p);
    free(pr);
    return 0;
}

static const struct {
    const char *name;
    bool takes_node;
    int (*run)(baton_client *c, const ctl *o);
} commands[] = {
    {"nodes", false, cmd_nodes},     {"plan", false, cmd_plan},         {"status", false, cmd_status},
    {"metrics", false, cmd_metrics}, {"drain", true, cmd_drain},        {"undrain", true, cmd_undrain},
    {"remove", true, cmd_remove},    {"rebalance", false, cmd_rebalance}, {"shutdown", false, cmd_shutdown},
};

int main(int argc, char **argv) {
    log_set_program("batonctl");
    ctl o = {.server = getenv("BATON_SERVER"), .cluster_id = NULL, .token_file = getenv("BATON_ADMIN_TOKEN_FILE"),
             .streams = 8};
    static const struct option longs[] = {
        {"server", required_argument, 0, 's'}, {"cluster-id", required_argument, 0, 'C'},
        {"json", no_argument, 0, 'j'},         {"help", no_argument, 0, 'h'},
        {"admin-token-file", required_argument, 0, 'T'}, {"pool", required_argument, 0, 'p'},
        {"model", required_argument, 0, 'm'},  {"preset", required_argument, 0, 'P'},
        {"type", required_argument, 0, 't'},   {"streams", required_argument, 0, 'n'},
        {"ctx", required_argument, 0, 'c'},    {"slots", required_argument, 0, 'S'},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 's': o.server = optarg; break;
        case 'C': o.cluster_id = optarg; break;
        case 'j': o.json = true; break;
        case 'T': o.token_file = optarg; break;
        case 'p': o.pool = optarg; break;
        case 'm': o.model = optarg; break;
        case 'P': o.preset = optarg; break;
        case 't': o.type = optarg; break;
        case 'n': case 'c': case 'S': {
            long long v;
            char perr[200];
            if (cli_int(optarg, 1, ch == 'c' ? 1 << 24 : 4096, &v, perr, sizeof perr) != 0)
                log_exit(2, "%s: %s", ch == 'n' ? "--streams" : ch == 'c' ? "--ctx" : "--slots", perr);
            *(ch == 'n' ? &o.streams : ch == 'c' ? &o.ctx : &o.slots) = (int)v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: log_exit(2, "unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind++];
    size_t k = 0, n_cmds = sizeof commands / sizeof *commands;
    while (k < n_cmds && strcmp(commands[k].name, name)) k++;
    if (k == n_cmds) log_exit(2, "unknown command '%s' (see --help)", name);
    if (commands[k].takes_node) {
        if (optind >= argc) log_exit(2, "%s needs a node id (see batonctl nodes)", name);
        long long id;
        char perr[200];
        if (cli_int(argv[optind], 1, UINT32_MAX, &id, perr, sizeof perr) != 0) log_exit(2, "NODE: %s", perr);
        o.node = (uint32_t)id;
        optind++;
    }
    if (optind < argc) log_exit(2, "unexpected argument '%s'", argv[optind]);
    if (o.pool || o.model || o.preset || o.type) {
        if (commands[k].run != cmd_plan) log_exit(2, "--pool, --model, --preset and --type go with plan only");
        if (!o.pool || !!o.model == !!o.preset || (o.preset && !o.type))
            log_exit(2, "plan --pool POOL.ini needs --model FILE or --preset qwq-32b --type q4_k_m|q8_0 (see --help)");
        return cmd_plan_offline(&o);
    }
    if (!o.server) log_exit(2, "--server HOST:PORT is required (or set BATON_SERVER)");
    char err[512];
    baton_connect_opts co = {.cluster_id = o.cluster_id, .admin = true};
    char *token = NULL;
    if (o.token_file && o.token_file[0]) {
        int rc = auth_cred_read(o.token_file, "admin token", &token, err, sizeof err);
        if (rc < 0) log_exit(BATON_STATUS_INVALID_ARGUMENT, "%s", err);
        if (rc > 0) log_msg("%s", err);
        co.admin_token = token;
    }
    int status;
    baton_client *c = baton_connect_with(o.server, &co, &status, err, sizeof err);
    auth_cred_free(token);
    if (!c) log_exit(status, "%s", err);
    int rc = commands[k].run(c, &o);
    baton_close(c);
    return rc;
}
