/* pool.c - pool files, model sizes and the timing model of an offline plan; see pool.h. */
#include "pool.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliconf.h"
#include "cliparse.h"
#include "errmsg.h"
#include "qwen2.h"
#include "quant.h"

/* --- the pool file ------------------------------------------------------- */

/* Default codec cost: f32+lz4 (the default stage codec) encode + decode with its
 * checksums on one core of the machine this was written on, per byte of f32. */
#define POOL_CODEC_S_PER_BYTE 0.5e-9

typedef enum key_kind { K_BYTES, K_INT, K_RATE, K_MS, K_NS, K_GFLOPS, K_KV, K_NAME } key_kind;

/* A key of the file: where its value goes (offset into pool or pool_node) and its range. */
typedef struct pool_key {
    const char *name;
    int in_node;  /* 1: [node NAME]; 0: [pool] */
    key_kind kind;
    size_t offset;
    double min, max;
} pool_key;

/* The parse's state: nodes as written (each with its count), then expanded. */
typedef struct pool_parse {
    pool *p;
    pool_node raw[PLAN_MAX_NODES];
    int count[PLAN_MAX_NODES], n_raw;
    double gpu_mem, gpu_bw, gpu_fl; /* of the current node */
    char section[128];
} pool_parse;

enum { NODE_COUNT = -1, NODE_GPU_MEM = -2, NODE_GPU_BW = -3, NODE_GPU_FL = -4 };

static const pool_key pool_keys[] = {
    {"ctx", 0, K_INT, offsetof(pool, ctx), 1, 1 << 24},
    {"slots", 0, K_INT, offsetof(pool, slots), 1, 4096},
    {"chunk", 0, K_INT, offsetof(pool, chunk), 1, 1 << 16},
    {"kv", 0, K_KV, offsetof(pool, kv_type), 0, 0},
    {"coordinator-link", 0, K_RATE, offsetof(pool, coord_link_bps), 1e3, 1e15},
    {"coordinator-latency-ms", 0, K_MS, offsetof(pool, coord_latency_s), 0, 1e5},
    {"step-overhead-ms", 0, K_MS, offsetof(pool, step_overhead_s), 0, 1e5},
    {"count", 1, K_INT, (size_t)NODE_COUNT, 1, PLAN_MAX_NODES},
    {"memory", 1, K_BYTES, offsetof(pool_node, memory), 1 << 20, 1e18},
    {"cores", 1, K_INT, offsetof(pool_node, cores), 1, 1 << 16},
    {"membw", 1, K_RATE, offsetof(pool_node, membw), 1e6, 1e15},
    {"gflops", 1, K_GFLOPS, offsetof(pool_node, gflops), 1e-3, 1e9},
    {"link", 1, K_RATE, offsetof(pool_node, link_bps), 1e3, 1e15},
    {"latency-ms", 1, K_MS, offsetof(pool_node, latency_s), 0, 1e5},
    {"host", 1, K_NAME, offsetof(pool_node, host), 0, 0},
    {"threads", 1, K_INT, offsetof(pool_node, threads), 1, 4096},
    {"host-membw", 1, K_RATE, offsetof(pool_node, host_membw), 1e6, 1e15},
    {"codec-ns-per-byte", 1, K_NS, offsetof(pool_node, codec_s_per_byte), 0, 1e6},
    {"gpu-memory", 1, K_BYTES, (size_t)NODE_GPU_MEM, 1 << 20, 1e18},
    {"gpu-membw", 1, K_RATE, (size_t)NODE_GPU_BW, 1e6, 1e15},
    {"gpu-gflops", 1, K_GFLOPS, (size_t)NODE_GPU_FL, 1e-3, 1e9},
};

/* "1G", "2.5M", "400": a rate with decimal suffixes K, M, G, T. 0 or -1. */
static int parse_rate(const char *s, double min, double max, double *out, char *err, size_t errlen) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    size_t l = strlen(buf);
    double mul = 1;
    static const struct { char c; double m; } suffixes[] = {{'K', 1e3}, {'M', 1e6}, {'G', 1e9}, {'T', 1e12}};
    for (size_t i = 0; l && i < sizeof suffixes / sizeof *suffixes; i++)
        if (buf[l - 1] == suffixes[i].c || buf[l - 1] == suffixes[i].c + 32) {
            mul = suffixes[i].m;
            buf[--l] = 0;
            break;
        }
    double v;
    if (cli_float(buf, 0, 1e18, &v, err, errlen) != 0 || !(v * mul >= min && v * mul <= max)) {
        err_set(err, errlen, "expected a number with an optional suffix K, M, G or T in [%g, %g], got '%s'", min, max,
                s);
        return -1;
    }
    *out = v * mul;
    return 0;
}

/* The value of key k into dst (the pool or the current node). 0, or -1 with a message. */
static int pool_set(pool_parse *pp, const pool_key *k, void *dst, const char *v, char *err, size_t errlen) {
    char e[256];
    long long iv;
    uint64_t bv;
    double dv;
    int rc = 0;
    switch (k->kind) {
    case K_BYTES: rc = cli_bytes(v, (uint64_t)k->min, (uint64_t)k->max, &bv, e, sizeof e), dv = (double)bv; break;
    case K_INT: rc = cli_int(v, (long long)k->min, (long long)k->max, &iv, e, sizeof e), dv = (double)iv; break;
    case K_RATE: rc = parse_rate(v, k->min, k->max, &dv, e, sizeof e); break;
    case K_MS: rc = cli_float(v, k->min, k->max, &dv, e, sizeof e), dv /= 1e3; break;
    case K_NS: rc = cli_float(v, k->min, k->max, &dv, e, sizeof e), dv /= 1e9; break;
    case K_GFLOPS: rc = cli_float(v, k->min, k->max, &dv, e, sizeof e); break;
    case K_NAME:
        if (!v[0] || strlen(v) >= sizeof pp->raw[0].host) {
            err_set(err, errlen, "key '%s': expected a name of 1 to %zu characters", k->name, sizeof pp->raw[0].host - 1);
            return -1;
        }
        snprintf((char *)dst + k->offset, sizeof pp->raw[0].host, "%s", v);
        return 0;
    case K_KV:
        if (!strcmp(v, "f16")) pp->p->kv_type = TENSOR_F16;
        else if (!strcmp(v, "q8_0")) pp->p->kv_type = TENSOR_Q8_0;
        else if (!strcmp(v, "f32")) pp->p->kv_type = TENSOR_F32;
        else rc = -1, snprintf(e, sizeof e, "expected f16, q8_0 or f32, got '%s'", v);
        return rc ? (err_set(err, errlen, "key '%s': %s", k->name, e), -1) : 0;
    }
    if (rc != 0) {
        err_set(err, errlen, "key '%s': %s", k->name, e);
        return -1;
    }
    switch ((long)k->offset) {
    case NODE_COUNT: pp->count[pp->n_raw - 1] = (int)dv; return 0;
    case NODE_GPU_MEM: pp->gpu_mem = dv; return 0;
    case NODE_GPU_BW: pp->gpu_bw = dv; return 0;
    case NODE_GPU_FL: pp->gpu_fl = dv; return 0;
    default: break;
    }
    char *at = (char *)dst + k->offset;
    if (k->kind == K_BYTES) *(uint64_t *)at = bv;
    else if (k->kind == K_INT) *(int *)at = (int)iv;
    else *(double *)at = dv;
    return 0;
}

/* The GPU keys of the node just finished: its layers live on the GPU. */
static void pool_node_close(pool_parse *pp) {
    if (!pp->n_raw || !pp->gpu_mem) return;
    pool_node *n = &pp->raw[pp->n_raw - 1];
    n->memory = (uint64_t)pp->gpu_mem;
    if (pp->gpu_bw) n->membw = pp->gpu_bw;
    if (pp->gpu_fl) n->gflops = pp->gpu_fl;
    n->gpu = 1;
    pp->gpu_mem = pp->gpu_bw = pp->gpu_fl = 0;
}

static int pool_entry(void *user, const char *section, const char *key, const char *value, int line, char *err,
                      size_t errlen) {
    (void)line;
    pool_parse *pp = user;
    int in_node = !strncmp(section, "node ", 5) && section[5];
    if (!in_node && strcmp(section, "pool")) {
        err_set(err, errlen, "key '%s' in %s%s%s: the sections are [pool] and [node NAME]", key, section[0] ? "[" : "",
                section[0] ? section : "no section", section[0] ? "]" : "");
        return -1;
    }
    if (in_node && strcmp(section, pp->section)) { /* a new machine */
        pool_node_close(pp);
        if (pp->n_raw == PLAN_MAX_NODES) {
            err_set(err, errlen, "more than %d nodes", PLAN_MAX_NODES);
            return -1;
        }
        pool_node *n = &pp->raw[pp->n_raw];
        *n = (pool_node){.cores = 1, .link_bps = 1e9, .latency_s = 1e-4, .codec_s_per_byte = POOL_CODEC_S_PER_BYTE};
        snprintf(n->name, sizeof n->name, "%s", section + 5);
        pp->count[pp->n_raw++] = 1;
    }
    snprintf(pp->section, sizeof pp->section, "%s", section);
    for (size_t i = 0; i < sizeof pool_keys / sizeof *pool_keys; i++)
        if (!strcmp(pool_keys[i].name, key) && pool_keys[i].in_node == in_node)
            return pool_set(pp, &pool_keys[i], in_node ? (void *)&pp->raw[pp->n_raw - 1] : (void *)pp->p, value, err,
                            errlen);
    err_set(err, errlen, "unknown key '%s' in [%s] (see batonctl plan --help)", key, section);
    return -1;
}

int pool_load(const char *path, pool *p, char *err, size_t errlen) {
    *p = (pool){.ctx = 4096, .slots = 16, .chunk = 64, .kv_type = TENSOR_F16, .coord_link_bps = 10e9};
    pool_parse *pp = calloc(1, sizeof *pp);
    if (!pp) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    pp->p = p;
    int rc = cli_ini_parse(path, pool_entry, pp, err, errlen);
    if (rc == 0) pool_node_close(pp);
    for (int i = 0; rc == 0 && i < pp->n_raw; i++) {
        pool_node *n = &pp->raw[i];
        if (!n->memory || !n->membw) {
            err_set(err, errlen, "%s: [node %s] needs memory and membw (or gpu-memory and gpu-membw)", path, n->name);
            rc = -1;
            break;
        }
        if (!n->gflops) n->gflops = 25.0 * n->cores;
        if (!n->threads) n->threads = n->cores;
        for (int k = 0; k < pp->count[i]; k++) {
            if (p->n == PLAN_MAX_NODES) {
                err_set(err, errlen, "%s: more than %d nodes", path, PLAN_MAX_NODES);
                rc = -1;
                break;
            }
            p->nodes[p->n] = *n;
            if (pp->count[i] > 1) snprintf(p->nodes[p->n].name, sizeof n->name, "%.50s-%d", n->name, k + 1);
            if (!n->host[0]) memcpy(p->nodes[p->n].host, p->nodes[p->n].name, sizeof n->host);
            p->n++;
        }
    }
    if (rc == 0 && !p->n) {
        err_set(err, errlen, "%s: no [node NAME] section", path);
        rc = -1;
    }
    free(pp);
    return rc;
}

/* --- the model ----------------------------------------------------------- */

int pool_model_of_file(const gguf_file *gf, const model_hparams *hp, int n_ctx, int n_slots, uint32_t kv_type,
                       pool_model *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const int32_t L = (int32_t)hp->n_layer;
    out->layer_bytes = calloc((size_t)L + 1, sizeof *out->layer_bytes);
    if (!out->layer_bytes) {
        err_set(err, errlen, "out of memory planning");
        return -1;
    }
    uint64_t total = 0;
    for (int32_t l = 0; l < L; l++) total += out->layer_bytes[l] = model_file_layer_bytes(gf, l);
    plan_model *pm = &out->pm;
    *pm = (plan_model){.n_layer = L, .layer_bytes = out->layer_bytes};
    pm->kv_bytes_per_layer = model_kv_bytes_per_token(hp, kv_type) * (uint64_t)n_ctx * (uint64_t)n_slots;
    pm->n_ctx = n_ctx;
    pm->n_slots = n_slots;
    pm->embed_bytes = model_file_embed_bytes(gf);
    pm->head_bytes = model_file_head_bytes(gf);
    double avg = L ? (double)total / L : 1;
    pm->embed_cost = 0;
    pm->head_cost = avg > 0 ? (double)pm->head_bytes / avg : 0;
    out->hp = *hp;
    out->layer_params = model_layer_params(hp);
    return 0;
}

/* The presets pool_model_preset knows (QwQ-32B's config.json). */
static const struct {
    const char *name;
    model_hparams hp;
} pool_presets[] = {
    {"qwq-32b", {.n_layer = 64, .n_embd = 5120, .n_head = 40, .n_head_kv = 8, .head_dim = 128, .n_ff = 27648,
                 .n_vocab = 152064, .n_ctx_train = 40960}},
};

/* The types of a preset's matrices: base, the "strong" ones (attn_v, ffn_down, output) and the embedding. */
static const struct {
    const char *name;
    uint32_t base, strong;
} pool_types[] = {
    {"q4_k_m", TENSOR_Q4_K, TENSOR_Q6_K},
    {"q8_0", TENSOR_Q8_0, TENSOR_Q8_0},
};

int pool_model_preset(const char *preset, const char *type, int n_ctx, int n_slots, uint32_t kv_type,
                      pool_model *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t p = 0, t = 0;
    while (p < sizeof pool_presets / sizeof *pool_presets && strcmp(pool_presets[p].name, preset)) p++;
    while (t < sizeof pool_types / sizeof *pool_types && strcasecmp(pool_types[t].name, type)) t++;
    if (p == sizeof pool_presets / sizeof *pool_presets) {
        err_set(err, errlen, "--preset: unknown preset '%s' (qwq-32b)", preset);
        return -1;
    }
    if (t == sizeof pool_types / sizeof *pool_types) {
        err_set(err, errlen, "--type: expected q4_k_m or q8_0, got '%s'", type);
        return -1;
    }
    const model_hparams *hp = &pool_presets[p].hp;
    const int32_t L = (int32_t)hp->n_layer;
    out->layer_bytes = calloc((size_t)L + 1, sizeof *out->layer_bytes);
    if (!out->layer_bytes) {
        err_set(err, errlen, "out of memory planning");
        return -1;
    }
    uint64_t layer = 0;
    for (size_t k = 0; k < QWEN2_LAYER_TENSORS; k++) {
        const qwen2_tensor *d = &qwen2_layer_tensors[k];
        int64_t ne0 = qwen2_dim_size(hp, d->ne0), ne1 = qwen2_dim_size(hp, d->ne1);
        uint32_t ty = d->kind != QWEN2_MATRIX ? TENSOR_F32 : d->strong ? pool_types[t].strong : pool_types[t].base;
        layer += (uint64_t)tensor_row_bytes(ty, ne0) * (uint64_t)ne1;
    }
    for (int32_t l = 0; l < L; l++) out->layer_bytes[l] = layer;
    plan_model *pm = &out->pm;
    *pm = (plan_model){.n_layer = L, .layer_bytes = out->layer_bytes};
    pm->kv_bytes_per_layer = model_kv_bytes_per_token(hp, kv_type) * (uint64_t)n_ctx * (uint64_t)n_slots;
    pm->n_ctx = n_ctx;
    pm->n_slots = n_slots;
    pm->embed_bytes = (uint64_t)tensor_row_bytes(pool_types[t].base, hp->n_embd) * hp->n_vocab;
    pm->head_bytes = (uint64_t)tensor_row_bytes(pool_types[t].strong, hp->n_embd) * hp->n_vocab + hp->n_embd * 4;
    pm->head_cost = (double)pm->head_bytes / (double)layer;
    out->hp = *hp;
    out->layer_params = model_layer_params(hp);
    snprintf(out->name, sizeof out->name, "%s %s", preset, pool_types[t].name);
    return 0;
}

void pool_model_free(pool_model *m) {
    free(m->layer_bytes);
    m->layer_bytes = NULL;
}

/* --- the timing model ---------------------------------------------------- */

/* Bytes read and floating-point operations of n tokens (n_logits of them through the head). */
static void stage_work(const pool_model *m, int32_t b, int32_t e, int head, double n, double n_logits, double *bytes,
                       double *flops) {
    double by = 0;
    for (int32_t l = b; l < e; l++) by += (double)m->layer_bytes[l];
    double fl = (double)(e - b) * 2.0 * (double)m->layer_params * n;
    if (head) {
        by += (double)m->pm.head_bytes;
        fl += 2.0 * m->hp.n_embd * (double)m->hp.n_vocab * n_logits;
    }
    *bytes = by;
    *flops = fl;
}

double pool_stage_seconds(const pool_node *node, const pool_model *m, int32_t b, int32_t e, int head, double n) {
    double by, fl;
    stage_work(m, b, e, head, n, n, &by, &fl);
    return by / node->membw + fl / (node->gflops * 1e9);
}

/* One step of micro-batches of n tokens through the plan: the parts of its time. */
typedef struct step_parts {
    double mem[PLAN_MAX_NODES], comp[PLAN_MAX_NODES]; /* per stage */
    double codec[PLAN_MAX_NODES];                      /* per stage: activations decoded in, encoded out */
    double bytes[PLAN_MAX_NODES];                      /* per stage: weight bytes read */
    double hop_lat, hop_xfer;                          /* all hops of the round trip */
    double link_busy_max;                              /* the busiest link's transfer time */
    int link_max;                                      /* the stage whose outgoing hop that is */
    double round_trip;
} step_parts;

/* The time stage s is busy with one micro-batch. */
static double step_stage_s(const step_parts *sp, int s) { return sp->mem[s] + sp->comp[s] + sp->codec[s]; }

static void step_of(const pool *p, const pool_model *m, const plan_result *r, double n, double n_logits,
                    step_parts *sp) {
    memset(sp, 0, sizeof *sp);
    const double tok_bytes = 4.0 * m->hp.n_embd;
    sp->link_max = -1;
    for (int s = 0; s < r->n_stages; s++) {
        const plan_stage *st = &r->stages[s];
        const pool_node *nd = &p->nodes[st->node];
        double by, fl;
        stage_work(m, st->layer_begin, st->layer_end, st->head, n, n_logits, &by, &fl);
        sp->mem[s] = by / nd->membw;
        sp->comp[s] = fl / (nd->gflops * 1e9);
        sp->bytes[s] = by;
        /* the codec: decode what came from the previous stage, encode what goes to the next */
        sp->codec[s] = ((s > 0) + (s + 1 < r->n_stages)) * tok_bytes * n * nd->codec_s_per_byte;
        /* the hop into this stage: token ids from the coordinator, or activations from the previous stage */
        double in_lat, in_bps, in_bytes;
        if (s == 0) in_lat = p->coord_latency_s, in_bps = p->coord_link_bps, in_bytes = 4.0 * n;
        else {
            const pool_node *pv = &p->nodes[r->stages[s - 1].node];
            in_lat = pv->latency_s, in_bps = pv->link_bps, in_bytes = tok_bytes * n;
        }
        double bps = in_bps < nd->link_bps ? in_bps : nd->link_bps;
        double x = in_bytes * 8.0 / bps;
        sp->hop_lat += in_lat + nd->latency_s;
        sp->hop_xfer += x;
        if (x > sp->link_busy_max) sp->link_busy_max = x, sp->link_max = s;
    }
    const pool_node *last = &p->nodes[r->stages[r->n_stages - 1].node];
    sp->hop_lat += last->latency_s + p->coord_latency_s; /* the sampled tokens back */
    sp->round_trip = sp->hop_lat + sp->hop_xfer + p->step_overhead_s;
    for (int s = 0; s < r->n_stages; s++) sp->round_trip += step_stage_s(sp, s);
}

/* "round trip 1040 ms: memory bandwidth 81%, compute 18%, links 1%; slowest stage 1 (b)". */
static void round_trip_why(const pool *p, const plan_result *r, const step_parts *sp, char *out, size_t len,
                           const char *lead) {
    double mem = 0, comp = 0, codec = 0, worst = -1;
    int ws = 0;
    for (int s = 0; s < r->n_stages; s++) {
        mem += sp->mem[s], comp += sp->comp[s], codec += sp->codec[s];
        if (step_stage_s(sp, s) > worst) worst = step_stage_s(sp, s), ws = s;
    }
    const double rt = sp->round_trip;
    const struct { const char *name; double s; } parts[] = {
        {"memory bandwidth", mem}, {"compute", comp}, {"link latency", sp->hop_lat},
        {"link transfer", sp->hop_xfer}, {"the coordinator", p->step_overhead_s}, {"the codec", codec}};
    size_t big = 0;
    for (size_t i = 1; i < sizeof parts / sizeof *parts; i++)
        if (parts[i].s > parts[big].s) big = i;
    char coord[48] = "";
    if (p->step_overhead_s > 0) snprintf(coord, sizeof coord, ", coordinator %.0f%%", 100 * p->step_overhead_s / rt);
    snprintf(out, len, "%sround trip %.1f ms, mostly %s: memory bandwidth %.0f%%, compute %.0f%%, link latency %.0f%%, "
             "link transfer %.0f%%, codec %.0f%%%s; slowest stage %d (%s)", lead, rt * 1e3, parts[big].name, 100 * mem / rt,
             100 * comp / rt, 100 * sp->hop_lat / rt, 100 * sp->hop_xfer / rt, 100 * codec / rt, coord, ws,
             p->nodes[r->stages[ws].node].name);
}

/* The tokens/s of `groups` micro-batches of n tokens each in flight (n_logits through the head):
 * a cycle is the longest of the round trip / in flight, the busiest stage and the busiest link. */
static double cycle_rate(const pool *p, const pool_model *m, const plan_result *r, double n, double n_logits,
                         int groups, int in_flight, char *why, size_t len) {
    step_parts sp;
    step_of(p, m, r, n, n_logits, &sp);
    double rt = sp.round_trip * groups / in_flight, stage = 0, link = sp.link_busy_max * groups;
    int smax = 0;
    for (int s = 0; s < r->n_stages; s++)
        if (step_stage_s(&sp, s) > stage) stage = step_stage_s(&sp, s), smax = s;
    /* stages on one host: at most cores / threads of them run at once, and together
     * they read no faster than the host's memory */
    char hostwhy[128] = "";
    for (int s = 0; s < r->n_stages; s++) {
        const pool_node *h = &p->nodes[r->stages[s].node];
        double sum = 0, bytes = 0;
        int k = 0, first = 1;
        for (int t = 0; t < r->n_stages; t++) {
            const pool_node *o = &p->nodes[r->stages[t].node];
            if (strcmp(o->host, h->host)) continue;
            if (t < s) first = 0;
            sum += step_stage_s(&sp, t), bytes += sp.bytes[t], k++;
        }
        int par = h->cores / (h->threads > 0 ? h->threads : 1);
        if (par < 1) par = 1;
        if (par > k) par = k;
        if (first && k > 1 && sum / par > stage) {
            stage = sum / par;
            snprintf(hostwhy, sizeof hostwhy, "host %s (%d stages on %d cores)", h->host, k, h->cores);
        }
        if (first && k > 1 && h->host_membw > 0 && bytes / h->host_membw > stage) {
            stage = bytes / h->host_membw;
            snprintf(hostwhy, sizeof hostwhy, "host %s memory bandwidth (%d stages reading at %.1f GB/s)", h->host, k,
                     h->host_membw / 1e9);
        }
    }
    stage *= groups;
    double cycle = rt;
    if (stage > cycle) {
        cycle = stage;
        if (hostwhy[0]) snprintf(why, len, "%s", hostwhy);
        else
            snprintf(why, len, "stage %d (%s) %s", smax, p->nodes[r->stages[smax].node].name,
                     sp.mem[smax] >= sp.comp[smax] ? "memory bandwidth" : "compute");
    } else if (link > cycle && sp.link_max >= 0) {
        cycle = link;
        snprintf(why, len, "the link into stage %d (%s)", sp.link_max, p->nodes[r->stages[sp.link_max].node].name);
    } else {
        round_trip_why(p, r, &sp, why, len, groups > 1 && groups <= r->n_stages ? "fewer streams than stages: " : "");
    }
    return n * groups / cycle;
}

int pool_predict(const pool *p, const pool_model *m, int streams, pool_prediction *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    static plan_node pn[PLAN_MAX_NODES];
    double avg = 0;
    for (int32_t l = 0; l < m->pm.n_layer; l++) avg += (double)m->layer_bytes[l] / m->pm.n_layer;
    const uint64_t kv = model_kv_bytes_per_token(&m->hp, p->kv_type) * (uint64_t)p->ctx * (uint64_t)p->slots;
    for (int i = 0; i < p->n; i++) {
        const pool_node *nd = &p->nodes[i];
        /* what the worker would report: one token through one layer */
        pn[i] = (plan_node){nd->memory, avg / nd->membw + 2.0 * (double)m->layer_params / (nd->gflops * 1e9), kv};
    }
    plan_model pm = m->pm;
    pm.kv_bytes_per_layer = kv;
    pm.n_ctx = p->ctx;
    pm.n_slots = p->slots;
    if (plan_layers(&pm, pn, p->n, &out->plan, err, errlen) != 0) return -1;
    const plan_result *r = &out->plan;
    for (int s = 0; s < r->n_stages; s++)
        out->stage_s[s] = pool_stage_seconds(&p->nodes[r->stages[s].node], m, r->stages[s].layer_begin,
                                             r->stages[s].layer_end, r->stages[s].head, 1);
    out->streams = streams;
    const int S = r->n_stages;
    out->single_tps = cycle_rate(p, m, r, 1, 1, 1, 1, out->single_why, sizeof out->single_why);
    /* with decode tokens only the scheduler keeps one micro-batch per stage in flight, the
     * streams spread evenly over them */
    int groups = streams < S ? streams : S;
    out->multi_tps = cycle_rate(p, m, r, (double)streams / groups, (double)streams / groups, groups, groups,
                                out->multi_why, sizeof out->multi_why);
    out->prefill_tps = cycle_rate(p, m, r, p->chunk, 1, S + 1, S + 1, out->prefill_why, sizeof out->prefill_why);
    return 0;
}
