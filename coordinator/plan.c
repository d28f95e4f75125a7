/* plan.c - the layer planner: a dynamic program over (nodes x layers). See plan.h. */
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cell {
    double worst, total; /* slowest stage, sum of stage times (tie-break) */
    int32_t from;        /* layer where this node's range starts; -1 = unreachable */
} cell;

/* a is strictly better than b: lower worst stage, then lower total. */
static int better(double aw, double at, const cell *b) {
    if (b->from < 0) return 1;
    double eps = 1e-12 * (1 + fabs(b->worst));
    if (aw < b->worst - eps) return 1;
    if (aw > b->worst + eps) return 0;
    return at < b->total - 1e-12 * (1 + fabs(b->total));
}

/* Bytes and seconds of layers [k, j) on node n; j > k. */
static uint64_t node_kv(const plan_model *pm, const plan_node *n) {
    return n->kv_bytes_per_layer ? n->kv_bytes_per_layer : pm->kv_bytes_per_layer;
}

static void stage_cost(const plan_model *pm, const uint64_t *prefix, const plan_node *n, int32_t k, int32_t j,
                       uint64_t *bytes, double *sec) {
    uint64_t b = prefix[j] - prefix[k] + node_kv(pm, n) * (uint64_t)(j - k);
    double units = (double)(j - k);
    if (k == 0) {
        b += pm->embed_bytes;
        units += pm->embed_cost;
    }
    if (j == pm->n_layer) {
        b += pm->head_bytes;
        units += pm->head_cost;
    }
    *bytes = b;
    *sec = units * n->sec_per_layer;
}

int plan_layers(const plan_model *pm, const plan_node *nodes, int n_nodes, plan_result *out, char *err,
                size_t errlen) {
    memset(out, 0, sizeof *out);
    const int32_t L = pm->n_layer;
    if (n_nodes <= 0) {
        snprintf(err, errlen, "no workers to plan for");
        return -1;
    }
    if (n_nodes > PLAN_MAX_NODES) {
        snprintf(err, errlen, "%d workers: at most %d are supported", n_nodes, PLAN_MAX_NODES);
        return -1;
    }
    if (L <= 0 || !pm->layer_bytes) {
        snprintf(err, errlen, "the model has no layers to plan");
        return -1;
    }
    for (int i = 0; i < n_nodes; i++)
        if (!(nodes[i].sec_per_layer > 0) || !isfinite(nodes[i].sec_per_layer)) {
            snprintf(err, errlen, "worker %d reports a speed of %g s/layer; it must be positive", i,
                     nodes[i].sec_per_layer);
            return -1;
        }
    uint64_t *prefix = calloc((size_t)L + 1, sizeof *prefix);
    cell *f = malloc(sizeof *f * (size_t)(n_nodes + 1) * (size_t)(L + 1));
    if (!prefix || !f) {
        free(prefix);
        free(f);
        snprintf(err, errlen, "out of memory planning");
        return -1;
    }
    for (int32_t l = 0; l < L; l++) prefix[l + 1] = prefix[l] + pm->layer_bytes[l];
#define F(i, j) f[(size_t)(i) * (size_t)(L + 1) + (size_t)(j)]
    for (int32_t j = 0; j <= L; j++) F(0, j) = (cell){0, 0, j == 0 ? 0 : -1};
    for (int i = 1; i <= n_nodes; i++) {
        const plan_node *nd = &nodes[i - 1];
        for (int32_t j = 0; j <= L; j++) {
            cell best = {0, 0, -1};
            for (int32_t k = 0; k <= j; k++) {
                const cell *prev = &F(i - 1, k);
                if (prev->from < 0) continue;
                double w = prev->worst, t = prev->total;
                if (k < j) {
                    uint64_t bytes;
                    double sec;
                    stage_cost(pm, prefix, nd, k, j, &bytes, &sec);
                    if (bytes > nd->mem_bytes) continue;
                    if (sec > w) w = sec;
                    t += sec;
                }
                if (better(w, t, &best)) best = (cell){w, t, k};
            }
            F(i, j) = best;
        }
    }
    if (F(n_nodes, L).from < 0) {
        uint64_t total_mem = 0, kv_min = UINT64_MAX, kv_max = 0;
        for (int i = 0; i < n_nodes; i++) {
            total_mem += nodes[i].mem_bytes;
            uint64_t kv = node_kv(pm, &nodes[i]);
            if (kv < kv_min) kv_min = kv;
            if (kv > kv_max) kv_max = kv;
        }
        const uint64_t weights = prefix[L] + pm->embed_bytes + pm->head_bytes;
        uint64_t need = weights + kv_min * (uint64_t)L;
        char kvs[160] = "";
        if (pm->n_ctx > 0 && pm->n_slots > 0)
            snprintf(kvs, sizeof kvs, " for %d slot(s) x %d positions", (int)pm->n_slots, (int)pm->n_ctx);
        char kvr[96];
        if (kv_min == kv_max) snprintf(kvr, sizeof kvr, "%llu", (unsigned long long)(kv_min * (uint64_t)L));
        else snprintf(kvr, sizeof kvr, "%llu-%llu by the workers' KV formats", (unsigned long long)(kv_min * (uint64_t)L),
                      (unsigned long long)(kv_max * (uint64_t)L));
        snprintf(err, errlen,
                 "no plan fits: the model needs %llu bytes (%.1f MiB: weights %llu + KV cache %s%s) and the %d "
                 "worker(s) offer %llu bytes (%.1f MiB) in total, or some layer range does not fit any single worker",
                 (unsigned long long)need, (double)need / 1048576.0, (unsigned long long)weights, kvr, kvs, n_nodes,
                 (unsigned long long)total_mem, (double)total_mem / 1048576.0);
        free(prefix);
        free(f);
        return -1;
    }
    /* Walk back from (n_nodes, L), collecting the non-empty ranges. */
    plan_stage rev[PLAN_MAX_NODES];
    int ns = 0;
    int32_t j = L;
    for (int i = n_nodes; i >= 1; i--) {
        int32_t k = F(i, j).from;
        if (k < j) {
            plan_stage *s = &rev[ns++];
            s->node = i - 1;
            s->layer_begin = k;
            s->layer_end = j;
            s->embed = k == 0;
            s->head = j == L;
            stage_cost(pm, prefix, &nodes[i - 1], k, j, &s->bytes, &s->seconds);
        }
        j = k;
    }
    out->n_stages = ns;
    for (int s = 0; s < ns; s++) out->stages[s] = rev[ns - 1 - s];
    out->bottleneck = F(n_nodes, L).worst;
#undef F
    free(prefix);
    free(f);
    return 0;
}
