/* plan.h - which worker holds which layers.
 *
 *     plan_model pm = { .n_layer = 64, .layer_bytes = lb, .kv_bytes_per_layer = kv,
 *                       .embed_bytes = e, .head_bytes = h, .embed_cost = 0.01, .head_cost = 1.6 };
 *     plan_node nodes[3] = { {.mem_bytes = 16e9, .sec_per_layer = 0.004}, ... };
 *     plan_result r;
 *     if (plan_layers(&pm, nodes, 3, &r, err, sizeof err) != 0) puts(err);
 *
 * Nodes keep their order (the pipeline runs through them in that order); each
 * gets a contiguous, possibly empty, range of layers. The first non-empty range
 * holds the embeddings, the last one the output head. A dynamic program over
 * (nodes x layers) finds the assignment whose slowest stage is fastest, where a
 * stage's time is sec_per_layer x its layers (+ embed_cost / head_cost, in units
 * of layers of that node) and every node's weights plus KV cache fit its memory.
 * Among equally slow plans it picks the one with the smallest total time.
 */
#ifndef BATON_PLAN_H
#define BATON_PLAN_H

#include <stddef.h>
#include <stdint.h>

#define PLAN_MAX_NODES 256

typedef struct plan_model {
    int32_t n_layer;
    const uint64_t *layer_bytes;   /* [n_layer]: weight bytes of each layer */
    uint64_t kv_bytes_per_layer;   /* KV cache of one layer (all slots, full context), unless the node says */
    int32_t n_ctx, n_slots;        /* what that KV cache holds (for messages only; 0: not said) */
    uint64_t embed_bytes, head_bytes;
    double embed_cost, head_cost;  /* in layers: time of embed/head over time of one layer */
} plan_model;

typedef struct plan_node {
    uint64_t mem_bytes;     /* usable memory */
    double sec_per_layer;   /* measured decode time of one layer */
    uint64_t kv_bytes_per_layer; /* this node's KV cache of one layer (its KV format); 0: the model's */
} plan_node;

typedef struct plan_stage {
    int32_t node;           /* index into the nodes given */
    int32_t layer_begin, layer_end;
    int embed, head;
    uint64_t bytes;         /* weights + KV this stage needs */
    double seconds;         /* time of this stage per step */
} plan_stage;

typedef struct plan_result {
    int32_t n_stages;
    plan_stage stages[PLAN_MAX_NODES]; /* in pipeline order, non-empty ranges only */
    double bottleneck;      /* the slowest stage's seconds */
} plan_result;

/* Plan. 0, or -1 with a message (no nodes, too many, or no assignment fits the
 * memory - the message then says how much is needed against how much there is). */
int plan_layers(const plan_model *pm, const plan_node *nodes, int n_nodes, plan_result *out, char *err,
                size_t errlen);

#endif
