/* qwen2.h - the tensors of a Qwen2 model as llama.cpp names them in GGUF: the one
 * list that the loader (model.c), the planner's byte counts (model_file_*_bytes)
 * and the synthetic-model generator (baton-mkmodel) all walk.
 *
 *     for (size_t i = 0; i < QWEN2_LAYER_TENSORS; i++) {
 *         const qwen2_tensor *d = &qwen2_layer_tensors[i];
 *         qwen2_layer_name(name, sizeof name, layer, d);            // "blk.3.attn_q.weight"
 *         int64_t ne0 = qwen2_dim_size(hp, d->ne0), ne1 = qwen2_dim_size(hp, d->ne1);
 *     }
 *
 * Outside the layers a model has token_embd.weight [n_embd, n_vocab], then
 * output_norm.weight [n_embd] and output.weight [n_embd, n_vocab] (absent when
 * the head is tied to the embedding).
 */
#ifndef BATON_QWEN2_H
#define BATON_QWEN2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define QWEN2_TOKEN_EMBD "token_embd.weight"
#define QWEN2_OUTPUT_NORM "output_norm.weight"
#define QWEN2_OUTPUT "output.weight"

/* What a layer tensor is, which decides how it is loaded and generated. */
typedef enum qwen2_kind {
    QWEN2_NORM,   /* 1-D RMSNorm weight: an owned f32 copy (float *) */
    QWEN2_BIAS,   /* 1-D bias added after a projection: an owned f32 copy (float *) */
    QWEN2_MATRIX, /* 2-D weight: mapped from the file, prepared for the kernels (kern_matrix) */
} qwen2_kind;

/* A dimension, in terms of the hyperparameters. */
typedef enum qwen2_dim {
    QWEN2_DIM_ONE,  /* 1: the rows of a vector */
    QWEN2_DIM_EMBD, /* n_embd */
    QWEN2_DIM_Q,    /* n_head * head_dim */
    QWEN2_DIM_KV,   /* n_head_kv * head_dim */
    QWEN2_DIM_FF,   /* n_ff */
} qwen2_dim;

typedef struct qwen2_tensor {
    const char *suffix;  /* the name after "blk.N.": "attn_q.weight" */
    qwen2_kind kind;
    qwen2_dim ne0, ne1;  /* GGUF order: ne0 is the row length, ne1 the rows */
    size_t field;        /* offsetof(model_layer, ...) of where it is loaded */
    bool strong;         /* kept in more bits by the *_m quantization mixes (llama.cpp's Q4_K_M) */
    bool residual;       /* its product is added into the residual stream */
} qwen2_tensor;

enum { QWEN2_LAYER_TENSORS = 12 };
/* The tensors of one layer, in the order llama.cpp writes them. */
extern const qwen2_tensor qwen2_layer_tensors[QWEN2_LAYER_TENSORS];

/* Where tensor d of a layer is loaded: its kern_matrix (kind MATRIX) or its
 * float * (NORM, BIAS). */
static inline kern_matrix *qwen2_matrix_of(model_layer *L, const qwen2_tensor *d) {
    return (kern_matrix *)(void *)((char *)L + d->field);
}
static inline float **qwen2_vector_of(model_layer *L, const qwen2_tensor *d) {
    return (float **)(void *)((char *)L + d->field);
}

/* The size of dimension d for these hyperparameters. */
int64_t qwen2_dim_size(const model_hparams *hp, qwen2_dim d);

/* Writes "blk.<layer>.<suffix>" into buf; returns buf. */
const char *qwen2_layer_name(char *buf, size_t n, int32_t layer, const qwen2_tensor *d);

#endif
