/* pool.h - plan a pool of machines before buying it: the coordinator's planner
 * (plan.h) over machines described in a file, and what the plan predicts.
 *
 *     pool p;
 *     if (pool_load("pool.ini", &p, err, sizeof err) != 0) ...      // [pool] and [node NAME] sections
 *     pool_model pm;
 *     if (pool_model_preset("qwq-32b", "q4_k_m", p.ctx, p.slots, &pm, err, sizeof err) != 0) ...
 *     pool_prediction pr;
 *     if (pool_predict(&p, &pm, 8, &pr, err, sizeof err) != 0) ...   // plan_layers, then the timing model
 *     pool_model_free(&pm);
 *
 * The pool file (INI, parsed with cliconf.h's cli_ini_parse: errors name the file,
 * line and key):
 *
 *     [pool]                       ; all optional
 *     ctx = 4096                   ; positions per sequence (the coordinator's --ctx)
 *     slots = 16                   ; sequences at once (--slots): the KV cache
 *     kv = f16                     ; f16 or q8_0 (the workers' --kv)
 *     chunk = 64                   ; prompt tokens per prefill chunk (--chunk)
 *     coordinator-link = 10G       ; the coordinator's link, bits/s (K, M, G: powers of 1000)
 *     coordinator-latency-ms = 0   ; one way, to the switch
 *     step-overhead-ms = 0         ; the coordinator's own time per micro-batch
 *     [node desk]                  ; one machine, in pipeline order; "baton-worker --measure" prints one
 *     count = 4                    ; this many identical machines (desk-1 .. desk-4)
 *     memory = 14G                 ; bytes the worker offers (--memory; default MemAvailable)
 *     cores = 8
 *     membw = 20G                  ; decode bytes/s through a layer (measured, or ~60% of the RAM's peak)
 *     gflops = 200                 ; matrix GFLOP/s with a batch of tokens (default: 25 per core)
 *     link = 1G                    ; bits/s of its network link
 *     latency-ms = 0.1             ; one way, to the switch
 *     codec-ns-per-byte = 0.5      ; the stage codec's encode + decode time per byte of f32 activations
 *                                  ; (baton-worker --measure times it; default 0.5, f32+lz4 on one core)
 *     host = box1                  ; optional: workers on one machine (as in deploy/netns-pool.sh) share
 *     threads = 1                  ;   its cores: with several streams it runs at most cores / threads
 *                                  ;   of their stages at once (default: a host per node, threads = cores)
 *     host-membw = 28G             ;   and its memory: the stages running at once read at most this
 *                                  ;   (all cores reading; default: no limit beyond each stage's membw)
 *     gpu-memory = 24G             ; optional: a GPU holds the layers instead (memory, bandwidth, GFLOP/s)
 *     gpu-membw = 700G
 *     gpu-gflops = 20000
 *
 * The timing model: a stage of node i with layers [b, e) spends, for a micro-batch
 * of M tokens, its weight bytes / membw + M x 2 x parameters / flops (the head's
 * matrix too on the last stage; attention over the KV cache is left out), plus
 * the codec of its activations in and out (M x n_embd x 4 bytes x
 * codec-ns-per-byte each way); a hop of M tokens costs the two ends' latencies +
 * M x n_embd x 4 bytes over the slower link; the coordinator adds
 * step-overhead-ms per micro-batch. One stream: a token is one round trip (every
 * stage and hop). S decoding streams are spread over min(S, stages) micro-batches
 * (the scheduler keeps one per stage in flight while only decode tokens are
 * sent): a cycle is the longest of the round trip, the slowest stage doing every
 * micro-batch, the busiest shared host (cores / threads stages at once, and
 * host-membw shared by them) and the slowest link carrying them. Prefill: chunks
 * of `chunk` tokens, stages + 1 in flight.
 */
#ifndef BATON_COORD_POOL_H
#define BATON_COORD_POOL_H

#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "plan.h"

typedef struct pool_node {
    char name[64];
    uint64_t memory;
    int cores;
    double membw, gflops;      /* bytes/s, GFLOP/s: where the layers are (the GPU's if it has one) */
    double link_bps, latency_s;
    int gpu;                   /* the layers are on its GPU */
    char host[64];             /* nodes with the same host share its cores (default: their own name) */
    int threads;               /* the worker's kernel threads (default: cores) */
    double host_membw;         /* bytes/s the host's stages read together at most (0: no limit) */
    double codec_s_per_byte;   /* encode + decode seconds per byte of f32 activations */
} pool_node;

typedef struct pool {
    pool_node nodes[PLAN_MAX_NODES];
    int n;
    int ctx, slots, chunk;
    uint32_t kv_type;          /* TENSOR_F16 or TENSOR_Q8_0 */
    double coord_link_bps, coord_latency_s, step_overhead_s;
} pool;

/* Reads a pool file into p. 0, or -1 with "FILE:LINE: ..." naming the key. */
int pool_load(const char *path, pool *p, char *err, size_t errlen);

/* The planner's view of a model plus what the timing model needs. */
typedef struct pool_model {
    plan_model pm;
    uint64_t *layer_bytes;     /* owned: pm.layer_bytes */
    model_hparams hp;
    uint64_t layer_params;     /* matrix elements of one layer */
    char name[96];
} pool_model;

/* The plan inputs of a model file for a KV cache of n_slots x n_ctx positions of
 * kv_type: what the coordinator plans with (coord.c calls this too). 0 or -1. */
int pool_model_of_file(const gguf_file *gf, const model_hparams *hp, int n_ctx, int n_slots, uint32_t kv_type,
                       pool_model *out, char *err, size_t errlen);
/* The same for a model not at hand: preset "qwq-32b" (64 layers, QwQ-32B's
 * shapes) in type "q4_k_m" or "q8_0" (as baton-mkmodel writes them). 0 or -1. */
int pool_model_preset(const char *preset, const char *type, int n_ctx, int n_slots, uint32_t kv_type,
                      pool_model *out, char *err, size_t errlen);
void pool_model_free(pool_model *m);

typedef struct pool_prediction {
    plan_result plan;
    double stage_s[PLAN_MAX_NODES];  /* one token through each stage */
    double single_tps, multi_tps, prefill_tps;
    int streams;
    char single_why[320], multi_why[320], prefill_why[320]; /* the bottleneck of each */
} pool_prediction;

/* Plans the pool (plan_layers, as the coordinator does with the nodes' reports)
 * and predicts tokens/s for one stream, `streams` streams and prefill. 0, or -1
 * with the planner's message (no plan fits...). */
int pool_predict(const pool *p, const pool_model *m, int streams, pool_prediction *out, char *err, size_t errlen);

/* The seconds of a micro-batch of n tokens through node's layers [b, e) (+ embed, + head). */
double pool_stage_seconds(const pool_node *node, const pool_model *m, int32_t b, int32_t e, int head, double n);

#endif
