/* forward_gpu.c - the Qwen2 forward pass on a GPU; see forward_gpu.h.
 *
 * Every step is forward.c's block_forward, in its order, as device
 * operations recorded into one command stream per batch: the hidden state
 * goes up once and comes back once (and the logits rows), the weights and the
 * KV cache stay in device memory. The host computes only what the CPU path
 * also computes in double or per token outside the kernels: the RoPE cos/sin
 * rows (kern_rope_table) and the cache row offsets.
 */
#include "forward_gpu.h"

#include "errmsg.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    gpu_mat wq, wk, wv, wo, gate, up, down;
    gpu_buf *attn_norm, *ffn_norm, *bq, *bk, *bv;
} gpu_layer;

struct fwd_gpu {
    gpu_dev *d;
    const model *m;
    int32_t max_batch, n_layers;
    gpu_layer *L;
    gpu_mat out;
    gpu_buf *out_norm;
    gpu_buf *hidden, *xn, *q, *k, *v, *att, *o, *gate, *up, *hn, *logits, *tab, *idx;
    gpu_buf **kc, **vc; /* the device KV cache, one buffer per layer (each under the device's largest) */
    int32_t kv_slots, kv_ctx;
    uint32_t kv_type;
    size_t kv_row_words;
    float *tab_host;
    uint32_t *idx_host;
};

static gpu_buf *floats_up(gpu_dev *d, const float *src, size_t n, char *err, size_t errlen) {
    gpu_buf *b = gpu_buf_new(d, n * sizeof(float), err, errlen);
    if (b && src && gpu_write(b, 0, src, n * sizeof(float))) {
        err_set(err, errlen, "%s: cannot upload", gpu_name(d));
        gpu_buf_free(b);
        return NULL;
    }
    return b;
}

static size_t mat_bytes(const kern_matrix *m) { return tensor_row_bytes(m->type, m->cols) * (size_t)m->rows; }

static int mat_up(gpu_dev *d, gpu_mat *g, const kern_matrix *m, const char *what, char *err, size_t errlen) {
    char e[256];
    if (gpu_mat_upload(d, g, m, e, sizeof e)) {
        err_set(err, errlen, "%s: %s", what, e);
        return -1;
    }
    return 0;
}

fwd_gpu *fwd_gpu_new(gpu_dev *d, const model *m, int32_t max_batch, char *err, size_t errlen) {
    const model_hparams *hp = &m->hp;
    const size_t B = (size_t)max_batch, E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim,
                 KD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const int32_t nl = m->slice.layer_end - m->slice.layer_begin;
    /* what it takes, before anything is allocated */
    uint64_t need = 0;
    for (int32_t i = 0; i < nl; i++) {
        const model_layer *L = &m->layers[i];
        need += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo) +
                mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down) + (2 * E + QD + 2 * KD) * 4;
    }
    if (m->slice.head) need += mat_bytes(&m->output) + E * 4 + B * hp->n_vocab * 4;
    need += B * (4 * E + 2 * QD + 2 * KD + 2 * F) * 4;
    if (need > gpu_memory(d)) {
        err_set(err, errlen, "the slice needs %.1f MiB of device memory (weights and activations) and %s has %.1f MiB",
                (double)need / 1048576.0, gpu_name(d), (double)gpu_memory(d) / 1048576.0);
        return NULL;
    }
    fwd_gpu *g = calloc(1, sizeof *g);
    if (!g || !(g->L = calloc(nl ? (size_t)nl : 1, sizeof *g->L))) {
        free(g);
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    g->d = d, g->m = m, g->max_batch = max_batch, g->n_layers = nl;
    for (int32_t i = 0; i < nl; i++) {
        const model_layer *L = &m->layers[i];
        gpu_layer *G = &g->L[i];
        char what[64];
        snprintf(what, sizeof what, "layer %d", (int)(m->slice.layer_begin + i));
        if (mat_up(d, &G->wq, &L->wq, what, err, errlen) || mat_up(d, &G->wk, &L->wk, what, err, errlen) ||
            mat_up(d, &G->wv, &L->wv, what, err, errlen) || mat_up(d, &G->wo, &L->wo, what, err, errlen) ||
            mat_up(d, &G->gate, &L->w_gate, what, err, errlen) || mat_up(d, &G->up, &L->w_up, what, err, errlen) ||
            mat_up(d, &G->down, &L->w_down, what, err, errlen))
            goto fail;
        if (!(G->attn_norm = floats_up(d, L->attn_norm, E, err, errlen)) ||
            !(G->ffn_norm = floats_up(d, L->ffn_norm, E, err, errlen)))
            goto fail;
        if (L->bq && !(G->bq = floats_up(d, L->bq, QD, err, errlen))) goto fail;
        if (L->bk && !(G->bk = floats_up(d, L->bk, KD, err, errlen))) goto fail;
        if (L->bv && !(G->bv = floats_up(d, L->bv, KD, err, errlen))) goto fail;
    }
    if (m->slice.head) {
        if (mat_up(d, &g->out, &m->output, "output", err, errlen) ||
            !(g->out_norm = floats_up(d, m->output_norm, E, err, errlen)) ||
            !(g->logits = floats_up(d, NULL, B * hp->n_vocab, err, errlen)))
            goto fail;
    }
    if (!(g->hidden = floats_up(d, NULL, B * E, err, errlen)) || !(g->xn = floats_up(d, NULL, B * E, err, errlen)) ||
        !(g->q = floats_up(d, NULL, B * QD, err, errlen)) || !(g->k = floats_up(d, NULL, B * KD, err, errlen)) ||
        !(g->v = floats_up(d, NULL, B * KD, err, errlen)) || !(g->att = floats_up(d, NULL, B * QD, err, errlen)) ||
        !(g->o = floats_up(d, NULL, B * E, err, errlen)) || !(g->gate = floats_up(d, NULL, B * F, err, errlen)) ||
        !(g->up = floats_up(d, NULL, B * F, err, errlen)) || !(g->hn = floats_up(d, NULL, B * E, err, errlen)) ||
        !(g->tab = floats_up(d, NULL, B * hp->head_dim, err, errlen)) ||
        !(g->idx = floats_up(d, NULL, (size_t)(nl ? nl : 1) * 3 * B, err, errlen)))
        goto fail;
    g->tab_host = malloc(B * hp->head_dim * sizeof(float));
    g->idx_host = malloc((size_t)(nl ? nl : 1) * 3 * B * sizeof(uint32_t));
    if (!g->tab_host || !g->idx_host) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    return g;
fail:
    fwd_gpu_free(g);
    return NULL;
}

static void kv_drop(fwd_gpu *g) {
    for (int32_t i = 0; g->kc && g->vc && i < (g->n_layers ? g->n_layers : 1); i++)
        gpu_buf_free(g->kc[i]), gpu_buf_free(g->vc[i]);
    free(g->kc), free(g->vc);
    g->kc = g->vc = NULL;
}

void fwd_gpu_free(fwd_gpu *g) {
    if (!g) return;
    for (int32_t i = 0; g->L && i < g->n_layers; i++) {
        gpu_layer *G = &g->L[i];
        gpu_mat_free(&G->wq), gpu_mat_free(&G->wk), gpu_mat_free(&G->wv), gpu_mat_free(&G->wo);
        gpu_mat_free(&G->gate), gpu_mat_free(&G->up), gpu_mat_free(&G->down);
        gpu_buf_free(G->attn_norm), gpu_buf_free(G->ffn_norm);
        gpu_buf_free(G->bq), gpu_buf_free(G->bk), gpu_buf_free(G->bv);
    }
    free(g->L);
    gpu_mat_free(&g->out);
    kv_drop(g);
    gpu_buf *bufs[] = {g->out_norm, g->hidden, g->xn, g->q,  g->k,   g->v,   g->att, g->o,
                       g->gate,     g->up,     g->hn, g->logits, g->tab, g->idx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) gpu_buf_free(bufs[i]);
    free(g->tab_host);
    free(g->idx_host);
    free(g);
}

/* The device KV cache for kv's shape (made, or remade, on first use). */
static int kv_ready(fwd_gpu *g, const kv_cache *kv, char *err, size_t errlen) {
    if (g->kc && g->kv_slots == kv->n_slots && g->kv_ctx == kv->n_ctx && g->kv_type == kv->type) return 0;
    if (kv->type != TENSOR_F16 && kv->type != TENSOR_F32) {
        err_set(err, errlen, "the GPU keeps an f16 or f32 KV cache (not %s)", tensor_type_get(kv->type)->name);
        return -1;
    }
    kv_drop(g);
    size_t bytes = (size_t)kv->n_slots * (size_t)kv->n_ctx * kv->row_bytes; /* one layer's */
    if (bytes / 4 > UINT32_MAX) { /* the shaders address it in 32-bit words */
        err_set(err, errlen, "a GPU KV cache of %.1f GiB per layer is over the backend's 16 GiB (fewer slots or a shorter "
                "context)", (double)bytes / (1 << 30));
        return -1;
    }
    int32_t nl = g->n_layers ? g->n_layers : 1;
    if (!(g->kc = calloc((size_t)nl, sizeof *g->kc)) || !(g->vc = calloc((size_t)nl, sizeof *g->vc))) {
        kv_drop(g);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char e[256];
    for (int32_t i = 0; i < nl; i++)
        if (!(g->kc[i] = gpu_buf_new(g->d, bytes, e, sizeof e)) || !(g->vc[i] = gpu_buf_new(g->d, bytes, e, sizeof e))) {
            kv_drop(g);
            err_set(err, errlen, "a KV cache of 2 x %d x %.1f MiB does not fit %s: %s", (int)nl,
                    (double)bytes / 1048576.0, gpu_name(g->d), e);
            return -1;
        }
    g->kv_slots = kv->n_slots, g->kv_ctx = kv->n_ctx, g->kv_type = kv->type;
    g->kv_row_words = kv->row_bytes / 4;
    return 0;
}

int fwd_gpu_prepare(fwd_gpu *g, const kv_cache *kv, char *err, size_t errlen) { return kv_ready(g, kv, err, errlen); }

int fwd_gpu_run(fwd_gpu *g, const kv_cache *kv, const fwd_batch *b, float *hidden, float *logits, char *err,
                size_t errlen) {
    const model *m = g->m;
    const model_hparams *hp = &m->hp;
    const int n = b->n, E = (int)hp->n_embd, H = (int)hp->n_head, KV = (int)hp->n_head_kv, hd = (int)hp->head_dim;
    const int QD = H * hd, KD = KV * hd, F = (int)hp->n_ff;
    if (kv_ready(g, kv, err, errlen)) return -1;
    gpu_dev *d = g->d;
    /* per token: the RoPE rows; per layer and token: the cache row to store
     * (words), then the slot's row 0 and the positions to attend to */
    const kern_rope rope = model_rope_of(hp);
    for (int t = 0; t < n; t++) kern_rope_table(g->tab_host + (size_t)t * hd, g->tab_host + (size_t)t * hd + hd / 2, hd,
                                                b->pos[t], &rope);
    for (int32_t il = 0; il < g->n_layers; il++) {
        uint32_t *ix = g->idx_host + (size_t)il * 3 * n;
        for (int t = 0; t < n; t++) {
            size_t row0 = (size_t)b->slot[t] * (size_t)kv->n_ctx; /* in layer il's buffer */
            ix[t] = (uint32_t)((row0 + (size_t)b->pos[t]) * g->kv_row_words);
            ix[n + 2 * t] = (uint32_t)(row0 * g->kv_row_words);
            ix[n + 2 * t + 1] = (uint32_t)(b->pos[t] + 1);
        }
    }
    if (gpu_write(g->hidden, 0, hidden, (size_t)n * E * sizeof(float)) ||
        gpu_write(g->tab, 0, g->tab_host, (size_t)n * hd * sizeof(float)) ||
        gpu_write(g->idx, 0, g->idx_host, (size_t)g->n_layers * 3 * n * sizeof(uint32_t)))
        goto lost;
    int rc = 0;
    for (int32_t il = 0; il < g->n_layers; il++) {
        const gpu_layer *G = &g->L[il];
        const size_t ix = (size_t)il * 3 * n;
        rc |= gpu_rmsnorm(d, GPU_SPAN(g->xn, 0, E), GPU_SPAN(g->hidden, 0, E), G->attn_norm, 0, E, n, hp->rms_eps);
        rc |= gpu_matmul(d, GPU_SPAN(g->q, 0, QD), &G->wq, GPU_SPAN(g->xn, 0, E), n, G->bq);
        rc |= gpu_matmul(d, GPU_SPAN(g->k, 0, KD), &G->wk, GPU_SPAN(g->xn, 0, E), n, G->bk);
        rc |= gpu_matmul(d, GPU_SPAN(g->v, 0, KD), &G->wv, GPU_SPAN(g->xn, 0, E), n, G->bv);
        rc |= gpu_rope(d, GPU_SPAN(g->q, 0, QD), H, hd, n, g->tab, 0);
        rc |= gpu_rope(d, GPU_SPAN(g->k, 0, KD), KV, hd, n, g->tab, 0);
        rc |= gpu_kv_store(d, g->kc[il], g->vc[il], kv->type, KD, GPU_SPAN(g->k, 0, KD), GPU_SPAN(g->v, 0, KD), n, g->idx, ix);
        rc |= gpu_attention(d, GPU_SPAN(g->att, 0, QD), GPU_SPAN(g->q, 0, QD), g->kc[il], g->vc[il], kv->type, g->kv_row_words,
                            H, KV, hd, n, g->idx, ix + (size_t)n);
        rc |= gpu_matmul(d, GPU_SPAN(g->o, 0, E), &G->wo, GPU_SPAN(g->att, 0, QD), n, NULL);
        rc |= gpu_add(d, g->hidden, 0, g->o, 0, (size_t)n * E);
        rc |= gpu_rmsnorm(d, GPU_SPAN(g->xn, 0, E), GPU_SPAN(g->hidden, 0, E), G->ffn_norm, 0, E, n, hp->rms_eps);
        rc |= gpu_matmul(d, GPU_SPAN(g->gate, 0, F), &G->gate, GPU_SPAN(g->xn, 0, E), n, NULL);
        rc |= gpu_matmul(d, GPU_SPAN(g->up, 0, F), &G->up, GPU_SPAN(g->xn, 0, E), n, NULL);
        rc |= gpu_swiglu(d, g->gate, 0, g->gate, 0, g->up, 0, (size_t)n * F);
        rc |= gpu_matmul(d, GPU_SPAN(g->o, 0, E), &G->down, GPU_SPAN(g->gate, 0, F), n, NULL);
        rc |= gpu_add(d, g->hidden, 0, g->o, 0, (size_t)n * E);
        if (rc) {
            err_set(err, errlen, "%s: layer %d could not be recorded (head_dim %d over 512?)", gpu_name(d),
                    (int)(m->slice.layer_begin + il), hd);
            return -1;
        }
    }
    int nw = 0;
    if (m->slice.head) {
        for (int t = 0; t < n; t++) {
            bool want = b->logits ? b->logits[t] != 0 : t == n - 1;
            if (want)
                rc |= gpu_rmsnorm(d, GPU_SPAN(g->hn, (size_t)nw++ * E, E), GPU_SPAN(g->hidden, (size_t)t * E, E),
                                  g->out_norm, 0, E, 1, hp->rms_eps);
        }
        if (nw) rc |= gpu_matmul(d, GPU_SPAN(g->logits, 0, hp->n_vocab), &g->out, GPU_SPAN(g->hn, 0, E), nw, NULL);
    }
    if (rc || gpu_read(g->hidden, 0, hidden, (size_t)n * E * sizeof(float)) ||
        (nw && gpu_read(g->logits, 0, logits, (size_t)nw * hp->n_vocab * sizeof(float))))
        goto lost;
    return nw;
lost:
    err_set(err, errlen, "%s failed (device lost?)", gpu_name(d));
    return -1;
}
