/* forward.c - the Qwen2 forward pass over a layer slice; see forward.h.
 *
 * One batch goes through the slice layer by layer; inside a layer every step
 * handles all tokens of the batch (so weights stream once per batch), except
 * attention, which each token does against its own sequence's cache.
 */
#include "forward.h"

#include "errmsg.h"
#include "forward_gpu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct fwd_ctx {
    const model *m;
    int32_t max_batch;
    float *xn;    /* [B][n_embd]      normed input of a block */
    float *q;     /* [B][n_head*hd]   */
    float *k, *v; /* [B][n_kv*hd]     */
    float *att;   /* [B][n_head*hd]   attention output before the projection */
    float *o;     /* [B][n_embd]      block output, added to the residual */
    float *gate;  /* [B][n_ff]        */
    float *up;    /* [B][n_ff]        */
    float *hn;    /* [B][n_embd]      final-normed rows that want logits */
    fwd_gpu *gpu; /* the slice on the GPU (forward_set_device), or NULL */
};

/* The device new contexts run on (forward_set_device); NULL: the CPU. */
static gpu_dev *fwd_device;

void forward_set_device(gpu_dev *d) { fwd_device = d; }
gpu_dev *forward_device(void) { return fwd_device; }

kv_cache *kv_cache_new(const model *m, int32_t n_slots, int32_t n_ctx, uint32_t type, char *err, size_t errlen) {
    if (type != TENSOR_F16 && type != TENSOR_F32 && type != TENSOR_Q8_0) {
        err_set(err, errlen, "KV cache type must be f16, f32 or q8_0");
        return NULL;
    }
    if (type == TENSOR_Q8_0 && m->hp.head_dim % 32) {
        err_set(err, errlen, "a q8_0 KV cache needs a head dimension that is a multiple of 32 (this model's is %u)",
                m->hp.head_dim);
        return NULL;
    }
    if (n_slots < 1 || n_ctx < 1) {
        err_set(err, errlen, "KV cache needs at least one slot and one position");
        return NULL;
    }
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) goto oom;
    kv->type = type;
    kv->n_slots = n_slots;
    kv->n_ctx = n_ctx;
    kv->n_layers = m->slice.layer_end - m->slice.layer_begin;
    kv->row_bytes = kern_kv_row_bytes(type, (int)(m->hp.n_head_kv * m->hp.head_dim));
    size_t total = (size_t)(kv->n_layers ? kv->n_layers : 1) * (size_t)n_slots * (size_t)n_ctx * kv->row_bytes;
    /* calloc of a large block maps zero pages lazily: memory is only committed as
     * positions are written, so an idle slot costs nothing (kv_cache_commit
     * commits it all at once). */
    kv->k = calloc(1, total);
    kv->v = calloc(1, total);
    if (!kv->k || !kv->v) goto oom;
    return kv;
oom:
    kv_cache_free(kv);
    err_set(err, errlen, "out of memory for a KV cache of %d slots x %d positions", (int)n_slots, (int)n_ctx);
    return NULL;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Faults in every page of buf[0, n) for writing: 0, or an errno. The whole pages
 * inside go through madvise(MADV_POPULATE_WRITE), which fails with ENOMEM
 * instead of leaving the shortfall to a later page fault; a kernel without it
 * (EINVAL) gets them written. The partial pages at both ends are buf's own bytes
 * (zero here): written. */
static int kv_populate(uint8_t *buf, size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)buf + page - 1) & ~(uintptr_t)(page - 1), e = ((uintptr_t)buf + n) & ~(uintptr_t)(page - 1);
    if (e <= a) {
        memset(buf, 0, n);
        return 0;
    }
    memset(buf, 0, (size_t)(a - (uintptr_t)buf));
    memset((void *)e, 0, (size_t)((uintptr_t)buf + n - e));
    if (madvise((void *)a, (size_t)(e - a), MADV_POPULATE_WRITE) == 0) return 0;
    if (errno != EINVAL) return errno;
    memset((void *)a, 0, (size_t)(e - a));
    return 0;
}

int kv_cache_commit(kv_cache *kv, char *err, size_t errlen) {
    size_t half = kv_cache_bytes(kv) / 2;
    int e = kv_populate(kv->k, half);
    if (!e) e = kv_populate(kv->v, half);
    if (e) {
        err_set(err, errlen, "cannot commit the KV cache's %.1f MiB: %s", 2.0 * (double)half / 1048576.0, strerror(e));
        return -1;
    }
    return 0;
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

size_t kv_cache_bytes(const kv_cache *kv) {
    return kv ? 2 * (size_t)(kv->n_layers ? kv->n_layers : 1) * (size_t)kv->n_slots * (size_t)kv->n_ctx * kv->row_bytes
              : 0;
}

/* Start of the cache row for (layer, slot, pos) in buffer `base`. */
static uint8_t *kv_row(const kv_cache *kv, uint8_t *base, int32_t layer, int32_t slot, int32_t pos) {
    size_t idx = ((size_t)layer * (size_t)kv->n_slots + (size_t)slot) * (size_t)kv->n_ctx + (size_t)pos;
    return base + idx * kv->row_bytes;
}

fwd_ctx *fwd_ctx_new(const model *m, int32_t max_batch) {
    char err[256];
    return fwd_ctx_new_err(m, max_batch, err, sizeof err);
}

fwd_ctx *fwd_ctx_new_err(const model *m, int32_t max_batch, char *err, size_t errlen) {
    err_set(err, errlen, "out of memory for the activations of %d tokens", (int)max_batch);
    if (max_batch < 1) return NULL;
    fwd_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (fwd_device && !(c->gpu = fwd_gpu_new(fwd_device, m, max_batch, err, errlen))) {
        free(c);
        return NULL;
    }
    const model_hparams *hp = &m->hp;
    size_t B = (size_t)max_batch, E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim,
           KD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    c->m = m;
    c->max_batch = max_batch;
    c->xn = malloc(B * E * sizeof(float));
    c->q = malloc(B * QD * sizeof(float));
    c->k = malloc(B * KD * sizeof(float));
    c->v = malloc(B * KD * sizeof(float));
    c->att = malloc(B * QD * sizeof(float));
    c->o = malloc(B * E * sizeof(float));
    c->gate = malloc(B * F * sizeof(float));
    c->up = malloc(B * F * sizeof(float));
    c->hn = malloc(B * E * sizeof(float));
    if (!c->xn || !c->q || !c->k || !c->v || !c->att || !c->o || !c->gate || !c->up || !c->hn) {
        fwd_ctx_free(c);
        return NULL;
    }
    return c;
}

void fwd_ctx_free(fwd_ctx *c) {
    if (!c) return;
    fwd_gpu_free(c->gpu);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->o);
    free(c->gate);
    free(c->up);
    free(c->hn);
    free(c);
}

int forward_prepare(fwd_ctx *c, const kv_cache *kv, char *err, size_t errlen) {
    return c->gpu ? fwd_gpu_prepare(c->gpu, kv, err, errlen) : 0;
}

/* Check every token's slot, position and id before anything is computed, so a bad
 * batch changes no cache row. */
static int check_batch(const fwd_ctx *c, const kv_cache *kv, const fwd_batch *b, char *err, size_t errlen) {
    const model *m = c->m;
    if (b->n < 1 || b->n > c->max_batch) {
        err_set(err, errlen, "batch of %d tokens (allowed 1..%d)", (int)b->n, (int)c->max_batch);
        return -1;
    }
    if (kv->n_layers != m->slice.layer_end - m->slice.layer_begin) {
        err_set(err, errlen, "KV cache was made for another slice");
        return -1;
    }
    for (int32_t t = 0; t < b->n; t++) {
        if (b->slot[t] < 0 || b->slot[t] >= kv->n_slots) {
            err_set(err, errlen, "token %d: slot %d outside [0, %d)", (int)t, (int)b->slot[t], (int)kv->n_slots);
            return -1;
        }
        if (b->pos[t] < 0 || b->pos[t] >= kv->n_ctx) {
            err_set(err, errlen, "token %d: position %d outside the context [0, %d)", (int)t, (int)b->pos[t],
                    (int)kv->n_ctx);
            return -1;
        }
        if (m->slice.embed && (b->tokens[t] < 0 || (uint32_t)b->tokens[t] >= m->hp.n_vocab)) {
            err_set(err, errlen, "token id %d outside the vocabulary [0, %u)", (int)b->tokens[t], m->hp.n_vocab);
            return -1;
        }
    }
    return 0;
}

/* One transformer block (layer index il within the slice) on n tokens of hidden. */
static void block_forward(fwd_ctx *c, kv_cache *kv, const fwd_batch *b, int32_t il, float *hidden) {
    const model_hparams *hp = &c->m->hp;
    const model_layer *L = &c->m->layers[il];
    const int n = b->n, E = (int)hp->n_embd, H = (int)hp->n_head, KV = (int)hp->n_head_kv, hd = (int)hp->head_dim;
    const int QD = H * hd, KD = KV * hd, F = (int)hp->n_ff;
    const kern_rope rope = model_rope_of(hp);

    /* attention */
    for (int t = 0; t < n; t++) kern_rmsnorm(c->xn + (size_t)t * E, hidden + (size_t)t * E, L->attn_norm, E, hp->rms_eps);
    const kern_mm_out qkv[3] = {{c->q, &L->wq, L->bq}, {c->k, &L->wk, L->bk}, {c->v, &L->wv, L->bv}};
    kern_matmul_multi(qkv, 3, c->xn, n); /* one quantization of xn, one pool job */
    for (int t = 0; t < n; t++) {
        float *q = c->q + (size_t)t * QD, *k = c->k + (size_t)t * KD;
        kern_rope_neox_ext(q, H, hd, b->pos[t], &rope);
        kern_rope_neox_ext(k, KV, hd, b->pos[t], &rope);
        kern_store_row(kv->type, kv_row(kv, kv->k, il, b->slot[t], b->pos[t]), k, KD);
        kern_store_row(kv->type, kv_row(kv, kv->v, il, b->slot[t], b->pos[t]), c->v + (size_t)t * KD, KD);
    }
    for (int t = 0; t < n; t++) {
        kern_kv_view view = {
            .type = kv->type,
            .k = kv_row(kv, kv->k, il, b->slot[t], 0),
            .v = kv_row(kv, kv->v, il, b->slot[t], 0),
            .row_stride = kv->row_bytes,
        };
        kern_attention(c->att + (size_t)t * QD, c->q + (size_t)t * QD, &view, b->pos[t] + 1, H, KV, hd);
    }
    kern_matmul(c->o, &L->wo, c->att, n, NULL);
    for (int t = 0; t < n; t++) kern_add(hidden + (size_t)t * E, c->o + (size_t)t * E, E);

    /* feed-forward (SwiGLU) */
    for (int t = 0; t < n; t++) kern_rmsnorm(c->xn + (size_t)t * E, hidden + (size_t)t * E, L->ffn_norm, E, hp->rms_eps);
    const kern_mm_out gate_up[2] = {{c->gate, &L->w_gate, NULL}, {c->up, &L->w_up, NULL}};
    kern_matmul_multi(gate_up, 2, c->xn, n);
    for (int t = 0; t < n; t++) kern_swiglu(c->gate + (size_t)t * F, c->gate + (size_t)t * F, c->up + (size_t)t * F, F);
    kern_matmul(c->o, &L->w_down, c->gate, n, NULL);
    for (int t = 0; t < n; t++) kern_add(hidden + (size_t)t * E, c->o + (size_t)t * E, E);
}

int forward_run(fwd_ctx *c, kv_cache *kv, const fwd_batch *b, float *hidden, float *logits, char *err, size_t errlen) {
    if (check_batch(c, kv, b, err, errlen)) return -1;
    const model *m = c->m;
    const int E = (int)m->hp.n_embd;

    if (m->slice.embed)
        for (int32_t t = 0; t < b->n; t++) kern_embed(hidden + (size_t)t * E, &m->tok_embd, b->tokens[t]);

    if (c->gpu) return fwd_gpu_run(c->gpu, kv, b, hidden, logits, err, errlen);
    for (int32_t il = 0; il < kv->n_layers; il++) block_forward(c, kv, b, il, hidden);

    if (!m->slice.head) return 0;
    int nw = 0;
    for (int32_t t = 0; t < b->n; t++) {
        bool want = b->logits ? b->logits[t] != 0 : t == b->n - 1;
        if (want) kern_rmsnorm(c->hn + (size_t)nw++ * E, hidden + (size_t)t * E, m->output_norm, E, m->hp.rms_eps);
    }
    if (nw) kern_matmul(logits, &m->output, c->hn, nw, NULL);
    return nw;
}
