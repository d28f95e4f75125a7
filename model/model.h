/* model.h - a Qwen2-architecture model, or a contiguous slice of its layers, loaded
 * from a GGUF file.
 *
 *     char err[256];
 *     model *m = model_load("qwq.gguf", &(model_slice){0, -1, true, true}, err, sizeof err);
 *
 * Only the tensors of the slice are looked up and mapped; the rest of the file is
 * never touched. Every shape is checked against the qwen2.* hyperparameters, and a
 * mismatch is an error naming the tensor, never a crash.
 */
#ifndef BATON_MODEL_H
#define BATON_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "ops.h"

typedef struct model_hparams {
    uint32_t n_layer;     /* qwen2.block_count */
    uint32_t n_embd;      /* qwen2.embedding_length */
    uint32_t n_head;      /* qwen2.attention.head_count */
    uint32_t n_head_kv;   /* qwen2.attention.head_count_kv */
    uint32_t head_dim;    /* n_embd / n_head */
    uint32_t n_ff;        /* qwen2.feed_forward_length */
    uint32_t n_vocab;     /* rows of token_embd.weight */
    uint32_t n_ctx_train; /* qwen2.context_length */
    float rms_eps;        /* qwen2.attention.layer_norm_rms_epsilon */
    float rope_base;      /* qwen2.rope.freq_base */
    /* RoPE scaling: qwen2.rope.scaling.type ("none", "yarn"; absent: none),
     * qwen2.rope.scaling.factor, qwen2.rope.scaling.original_context_length
     * (absent: n_ctx_train, as llama.cpp and transformers). Only YaRN is supported. */
    uint32_t rope_scaling;   /* MODEL_ROPE_NONE or MODEL_ROPE_YARN */
    float rope_scale;        /* YaRN factor (> 1) */
    uint32_t rope_orig_ctx;  /* YaRN original context */
} model_hparams;

enum { MODEL_ROPE_NONE = 0, MODEL_ROPE_YARN = 1 };

/* The RoPE parameters of the kernels for these hyperparameters. */
kern_rope model_rope_of(const model_hparams *hp);
/* Set the RoPE scaling (the --rope-scaling/--rope-scale/--yarn-orig-ctx flags):
 * type MODEL_ROPE_NONE ignores the rest; YARN needs factor > 1 and orig_ctx >= 1.
 * 0, or -1 with a message. */
int model_set_rope_scaling(model_hparams *hp, uint32_t type, double factor, uint32_t orig_ctx, char *err,
                           size_t errlen);
/* "none" or "yarn:factor=4:orig_ctx=32768" - part of the model's identity in a cluster. */
void model_rope_describe(const model_hparams *hp, char *out, size_t outlen);
/* The flags --rope-scaling none|yarn, --rope-scale F, --yarn-orig-ctx N over the
 * file's setting (as llama.cpp): type -1, factor 0, orig_ctx 0 mean "not given".
 * YaRN takes its factor from the flag or the file (one of them must say it) and
 * its original context from the flag, the file, or else qwen2.context_length.
 * 0, or -1 with a message. */
typedef struct model_rope_opts {
    int type;
    double factor;
    uint32_t orig_ctx;
} model_rope_opts;
#define MODEL_ROPE_OPTS_UNSET ((model_rope_opts){-1, 0, 0})
int model_apply_rope_opts(model_hparams *hp, const model_rope_opts *o, char *err, size_t errlen);
/* Parse --rope-scaling's value: "none" -> MODEL_ROPE_NONE, "yarn" -> YARN; -1 otherwise. */
int model_rope_scaling_from_name(const char *name);

typedef struct model_layer {
    kern_matrix wq, wk, wv, wo;       /* [n_head*hd, n_embd], [n_kv*hd, n_embd] x2, [n_embd, n_head*hd] */
    kern_matrix w_gate, w_up, w_down; /* [n_ff, n_embd] x2, [n_embd, n_ff] */
    float *attn_norm, *ffn_norm;      /* [n_embd], owned f32 copies */
    float *bq, *bk, *bv;              /* [n_head*hd], [n_kv*hd] x2 */
} model_layer;

/* Which part of the model a process holds. layer_end = -1 means "to the last". */
typedef struct model_slice {
    int32_t layer_begin, layer_end;
    bool embed; /* holds token_embd (first stage) */
    bool head;  /* holds output_norm and output (last stage) */
} model_slice;

typedef struct model {
    gguf_file *file;
    model_hparams hp;
    model_slice slice;   /* resolved: layer_end is a real index */
    kern_matrix tok_embd; /* [n_vocab, n_embd] when slice.embed */
    kern_matrix output;   /* [n_vocab, n_embd] when slice.head */
    float *output_norm;   /* [n_embd] when slice.head */
    model_layer *layers;  /* layer_end - layer_begin of them */
    uint64_t weight_bytes; /* bytes of the mapped tensors this slice uses */
} model;

/* Read and check the qwen2.* hyperparameters (n_vocab from token_embd.weight, or
 * from tokenizer.ggml.tokens / output.weight). 0, or -1 with a message. */
int model_read_hparams(const gguf_file *f, model_hparams *hp, char *err, size_t errlen);

/* Load a slice of a model file. NULL with a one-line message on any error. */
model *model_load(const char *path, const model_slice *slice, char *err, size_t errlen);
void model_free(model *m); /* accepts NULL */

/* Bytes in file f of the tensors a slice maps, for planning before any load:
 * one layer's (as qwen2.h lists them), the embedding's, and the head's
 * (output.weight, or the tied token_embd.weight, plus output_norm.weight).
 * A tensor the file lacks counts 0. */
uint64_t model_file_layer_bytes(const gguf_file *f, int32_t layer);
uint64_t model_file_embed_bytes(const gguf_file *f);
uint64_t model_file_head_bytes(const gguf_file *f);
/* KV-cache bytes per token per layer for a cache of `type` (TENSOR_F16/F32/Q8_0). */
uint64_t model_kv_bytes_per_token(const model_hparams *hp, uint32_t type);
/* Matrix elements of one layer (q, k, v, o, gate, up, down): a token through the
 * layer costs 2x this in floating-point operations. */
uint64_t model_layer_params(const model_hparams *hp);

#endif
