/* forward.h - the forward pass over a model slice, for a batch of tokens from any
 * number of sequences.
 *
 *     kv_cache *kv = kv_cache_new(m, 4, 2048, TENSOR_F16, err, sizeof err);
 *     fwd_ctx *ctx = fwd_ctx_new(m, 64);
 *     fwd_batch b = { .n = 3, .tokens = toks, .slot = slots, .pos = pos, .logits = want };
 *     forward_run(ctx, kv, &b, hidden, logits, err, sizeof err);
 *
 * A batch is a list of tokens, each naming its sequence slot and position. Tokens
 * of one slot must come in increasing, contiguous positions; their K/V are stored
 * before attention runs, so a prompt chunk attends causally within itself. A
 * stage without the embedding takes its input in `hidden`; every stage leaves its
 * output there. The last stage (slice.head) also writes logits for the tokens
 * whose `logits` flag is set, in batch order.
 */
#ifndef BATON_FORWARD_H
#define BATON_FORWARD_H

#include "gpu.h"
#include "model.h"

typedef struct kv_cache {
    uint32_t type;       /* TENSOR_F16, TENSOR_F32 or TENSOR_Q8_0 (32-value blocks, f16 scale: kern_store_row) */
    int32_t n_slots, n_ctx, n_layers;
    size_t row_bytes;    /* one position of K (or V) of one layer */
    uint8_t *k, *v;      /* [n_layers][n_slots][n_ctx][n_head_kv*head_dim] */
} kv_cache;

kv_cache *kv_cache_new(const model *m, int32_t n_slots, int32_t n_ctx, uint32_t type,
                       char *err, size_t errlen);
void kv_cache_free(kv_cache *kv);
/* Commits the whole cache now: every page of K and V is faulted in (written), so
 * the process's RSS includes it from here on and a cache the machine cannot hold
 * fails here - not at the first deep position of some later request. A new cache
 * is otherwise only committed as positions are written. 0, or -1 with a message
 * (ENOMEM: the memory is not there). A daemon's cache (baton-worker) is
 * committed; a tool's need not be. */
int kv_cache_commit(kv_cache *kv, char *err, size_t errlen);
/* A slot is reused for a new sequence without erasing it: forward_run writes a
 * position's K/V before any token attends to it, so the old sequence is never read. */
size_t kv_cache_bytes(const kv_cache *kv);

typedef struct fwd_batch {
    int32_t n;
    const int32_t *tokens;  /* [n]: token ids, read when the slice has the embedding */
    const int32_t *slot;    /* [n]: KV-cache slot of each token */
    const int32_t *pos;     /* [n]: position of each token in its sequence */
    const uint8_t *logits;  /* [n]: 1 where logits are wanted (head only); NULL = last token only */
} fwd_batch;

typedef struct fwd_ctx fwd_ctx;
/* Where the contexts made from now on run: on device d (kernels/vulkan/gpu.h;
 * the slice's weights are uploaded by fwd_ctx_new and the KV cache lives on
 * the device), or on the CPU (NULL, the default). The same numbers either way
 * (gpu.h). The caller keeps d open while such contexts exist. */
void forward_set_device(gpu_dev *d);
gpu_dev *forward_device(void);
fwd_ctx *fwd_ctx_new(const model *m, int32_t max_batch);
/* fwd_ctx_new with a message on failure (on a GPU: a weight type it cannot
 * run, or a slice that does not fit its memory, with both sizes). */
fwd_ctx *fwd_ctx_new_err(const model *m, int32_t max_batch, char *err, size_t errlen);
/* Make whatever ctx needs for cache kv before the first batch (on a GPU: the
 * device KV cache, so that a cache too large fails here). 0 or -1. */
int forward_prepare(fwd_ctx *ctx, const kv_cache *kv, char *err, size_t errlen);
void fwd_ctx_free(fwd_ctx *ctx);

/* Run the slice on a batch. hidden is [n][n_embd]; logits is [n_wanted][n_vocab].
 * Returns the number of logit rows written (0 for a non-head stage), or -1 with a
 * message (token id outside the vocabulary, slot or position out of range, batch
 * larger than max_batch). */
int forward_run(fwd_ctx *ctx, kv_cache *kv, const fwd_batch *b, float *hidden, float *logits,
                char *err, size_t errlen);

#endif
