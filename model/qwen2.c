/* qwen2.c - the Qwen2 tensor table; see qwen2.h. */
#include "qwen2.h"

#include <stdio.h>

#define MAT(s, a, b, f, strong, res) {s, QWEN2_MATRIX, QWEN2_DIM_##a, QWEN2_DIM_##b, offsetof(model_layer, f), strong, res}
#define VEC(s, k, a, f) {s, QWEN2_##k, QWEN2_DIM_##a, QWEN2_DIM_ONE, offsetof(model_layer, f), false, false}

const qwen2_tensor qwen2_layer_tensors[QWEN2_LAYER_TENSORS] = {
    VEC("attn_norm.weight", NORM, EMBD, attn_norm),
    MAT("attn_q.weight", EMBD, Q, wq, false, false),
    VEC("attn_q.bias", BIAS, Q, bq),
    MAT("attn_k.weight", EMBD, KV, wk, false, false),
    VEC("attn_k.bias", BIAS, KV, bk),
    MAT("attn_v.weight", EMBD, KV, wv, true, false),
    VEC("attn_v.bias", BIAS, KV, bv),
    MAT("attn_output.weight", Q, EMBD, wo, false, true),
    VEC("ffn_norm.weight", NORM, EMBD, ffn_norm),
    MAT("ffn_gate.weight", EMBD, FF, w_gate, false, false),
    MAT("ffn_up.weight", EMBD, FF, w_up, false, false),
    MAT("ffn_down.weight", FF, EMBD, w_down, true, true),
};

int64_t qwen2_dim_size(const model_hparams *hp, qwen2_dim d) {
    switch (d) {
    case QWEN2_DIM_EMBD: return hp->n_embd;
    case QWEN2_DIM_Q: return (int64_t)hp->n_head * hp->head_dim;
    case QWEN2_DIM_KV: return (int64_t)hp->n_head_kv * hp->head_dim;
    case QWEN2_DIM_FF: return hp->n_ff;
    case QWEN2_DIM_ONE: break;
    }
    return 1;
}

const char *qwen2_layer_name(char *buf, size_t n, int32_t layer, const qwen2_tensor *d) {
    snprintf(buf, n, "blk.%d.%s", (int)layer, d->suffix);
    return buf;
}
