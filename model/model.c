/* model.c - loading a Qwen2 model slice from GGUF; see model.h. */
#include "model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errmsg.h"
#include "quant.h"
#include "qwen2.h"

/* Read a required unsigned key that must fit in 32 bits and be at least `min`. */
static int need_u32(const gguf_file *f, const char *key, uint32_t min, uint32_t *out, char *err, size_t errlen) {
    uint64_t v;
    int rc = gguf_get_uint(f, key, &v);
    if (rc == -1) {
        err_set(err, errlen, "missing required key '%s'", key);
        return -1;
    }
    if (rc != 0) {
        err_set(err, errlen, "key '%s' is not an unsigned integer", key);
        return -1;
    }
    if (v < min || v > UINT32_MAX) {
        err_set(err, errlen, "key '%s' = %llu is out of range", key, (unsigned long long)v);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int model_rope_scaling_from_name(const char *name) {
    if (!strcmp(name, "none")) return MODEL_ROPE_NONE;
    if (!strcmp(name, "yarn")) return MODEL_ROPE_YARN;
    return -1;
}

int model_set_rope_scaling(model_hparams *hp, uint32_t type, double factor, uint32_t orig_ctx, char *err,
                           size_t errlen) {
    if (type == MODEL_ROPE_NONE) {
        hp->rope_scaling = MODEL_ROPE_NONE;
        hp->rope_scale = 1.0f;
        hp->rope_orig_ctx = 0;
        return 0;
    }
    if (type != MODEL_ROPE_YARN) {
        err_set(err, errlen, "unknown RoPE scaling type %u", type);
        return -1;
    }
    if (!(factor > 1.0 && factor <= 1024.0)) {
        err_set(err, errlen, "YaRN factor %g is out of range (1, 1024]", factor);
        return -1;
    }
    if (orig_ctx < 1) {
        err_set(err, errlen, "YaRN original context must be at least 1");
        return -1;
    }
    hp->rope_scaling = MODEL_ROPE_YARN;
    hp->rope_scale = (float)factor;
    hp->rope_orig_ctx = orig_ctx;
    return 0;
}

int model_apply_rope_opts(model_hparams *hp, const model_rope_opts *o, char *err, size_t errlen) {
    const bool file_yarn = hp->rope_scaling == MODEL_ROPE_YARN;
    if (o->type < 0 && !o->factor && !o->orig_ctx) return 0;
    int type = o->type >= 0 ? o->type : (int)hp->rope_scaling;
    if (type == MODEL_ROPE_NONE) {
        if (o->factor || o->orig_ctx) {
            err_set(err, errlen, "--rope-scale and --yarn-orig-ctx need --rope-scaling yarn (or a file with YaRN keys)");
            return -1;
        }
        return model_set_rope_scaling(hp, MODEL_ROPE_NONE, 1, 0, err, errlen);
    }
    double factor = o->factor ? o->factor : file_yarn ? hp->rope_scale : 0;
    if (!factor) {
        err_set(err, errlen, "--rope-scaling yarn needs --rope-scale F (the file has no qwen2.rope.scaling.factor)");
        return -1;
    }
    uint32_t orig = o->orig_ctx ? o->orig_ctx : file_yarn ? hp->rope_orig_ctx : hp->n_ctx_train;
    return model_set_rope_scaling(hp, (uint32_t)type, factor, orig, err, errlen);
}

kern_rope model_rope_of(const model_hparams *hp) {
    kern_rope r = {.base = hp->rope_base};
    if (hp->rope_scaling == MODEL_ROPE_YARN) r.yarn_factor = hp->rope_scale, r.yarn_orig_ctx = hp->rope_orig_ctx;
    return r;
}

void model_rope_describe(const model_hparams *hp, char *out, size_t outlen) {
    if (hp->rope_scaling == MODEL_ROPE_YARN)
        snprintf(out, outlen, "yarn:factor=%.9g:orig_ctx=%u", (double)hp->rope_scale, hp->rope_orig_ctx);
    else
        snprintf(out, outlen, "none");
}

/* qwen2.rope.scaling.* into hp (see model.h). */
static int read_rope_scaling(const gguf_file *f, model_hparams *hp, char *err, size_t errlen) {
    hp->rope_scaling = MODEL_ROPE_NONE;
    hp->rope_scale = 1.0f;
    const char *type;
    size_t type_len;
    if (gguf_find_key(f, "qwen2.rope.scaling.type") < 0) return 0;
    if (gguf_get_string(f, "qwen2.rope.scaling.type", &type, &type_len) != 0) {
        err_set(err, errlen, "key 'qwen2.rope.scaling.type' is not a string");
        return -1;
    }
    if (type_len == 4 && !memcmp(type, "none", 4)) return 0;
    if (!(type_len == 4 && !memcmp(type, "yarn", 4))) {
        err_set(err, errlen, "RoPE scaling '%.*s' is not supported (only 'yarn' and 'none')",
                (int)(type_len > 64 ? 64 : type_len), type);
        return -1;
    }
    double factor;
    if (gguf_get_float(f, "qwen2.rope.scaling.factor", &factor) != 0) {
        err_set(err, errlen, "RoPE scaling 'yarn' needs the key 'qwen2.rope.scaling.factor'");
        return -1;
    }
    uint32_t orig = 0;
    if (gguf_find_key(f, "qwen2.rope.scaling.original_context_length") >= 0) {
        if (need_u32(f, "qwen2.rope.scaling.original_context_length", 1, &orig, err, errlen)) return -1;
    } else {
        orig = hp->n_ctx_train; /* llama.cpp's and transformers' default */
    }
    if (model_set_rope_scaling(hp, MODEL_ROPE_YARN, factor, orig, err, errlen)) {
        size_t l = strlen(err);
        if (l + 1 < errlen) snprintf(err + l, errlen - l, " (qwen2.rope.scaling.*)");
        return -1;
    }
    return 0;
}

int model_read_hparams(const gguf_file *f, model_hparams *hp, char *err, size_t errlen) {
    memset(hp, 0, sizeof *hp);
    const char *arch;
    size_t arch_len;
    if (gguf_get_string(f, "general.architecture", &arch, &arch_len) != 0) {
        err_set(err, errlen, "missing required key 'general.architecture'");
        return -1;
    }
    if (arch_len != 5 || memcmp(arch, "qwen2", 5) != 0) {
        err_set(err, errlen, "architecture '%.*s' is not supported (expected 'qwen2')", (int)(arch_len > 64 ? 64 : arch_len), arch);
        return -1;
    }
    if (need_u32(f, "qwen2.block_count", 1, &hp->n_layer, err, errlen) ||
        need_u32(f, "qwen2.embedding_length", 1, &hp->n_embd, err, errlen) ||
        need_u32(f, "qwen2.feed_forward_length", 1, &hp->n_ff, err, errlen) ||
        need_u32(f, "qwen2.attention.head_count", 1, &hp->n_head, err, errlen) ||
        need_u32(f, "qwen2.context_length", 1, &hp->n_ctx_train, err, errlen))
        return -1;
    if (gguf_find_key(f, "qwen2.attention.head_count_kv") >= 0) {
        if (need_u32(f, "qwen2.attention.head_count_kv", 1, &hp->n_head_kv, err, errlen)) return -1;
    } else {
        hp->n_head_kv = hp->n_head;
    }
    if (hp->n_embd % hp->n_head) {
        err_set(err, errlen, "embedding length %u is not a multiple of the head count %u", hp->n_embd, hp->n_head);
        return -1;
    }
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim % 2) {
        err_set(err, errlen, "head dimension %u is odd; RoPE needs an even one", hp->head_dim);
        return -1;
    }
    if (hp->n_head % hp->n_head_kv) {
        err_set(err, errlen, "head count %u is not a multiple of the KV head count %u", hp->n_head, hp->n_head_kv);
        return -1;
    }
    double v;
    if (gguf_get_float(f, "qwen2.attention.layer_norm_rms_epsilon", &v) != 0) {
        err_set(err, errlen, "missing required key 'qwen2.attention.layer_norm_rms_epsilon'");
        return -1;
    }
    if (!(v > 0 && v < 1)) {
        err_set(err, errlen, "key 'qwen2.attention.layer_norm_rms_epsilon' = %g is out of range", v);
        return -1;
    }
    hp->rms_eps = (float)v;
    hp->rope_base = 10000.0f; /* the GGUF default when the key is absent */
    if (gguf_get_float(f, "qwen2.rope.freq_base", &v) == 0) {
        if (!(v > 1 && v < 1e12)) {
            err_set(err, errlen, "key 'qwen2.rope.freq_base' = %g is out of range", v);
            return -1;
        }
        hp->rope_base = (float)v;
    }
    if (read_rope_scaling(f, hp, err, errlen)) return -1;
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    if (!t) t = gguf_find_tensor(f, "output.weight");
    if (!t || t->n_dims != 2) {
        err_set(err, errlen, "cannot tell the vocabulary size: no 2-D 'token_embd.weight' or 'output.weight'");
        return -1;
    }
    if (t->ne[1] < 1 || t->ne[1] > INT32_MAX) {
        err_set(err, errlen, "tensor '%s': vocabulary size %lld is out of range", t->name, (long long)t->ne[1]);
        return -1;
    }
    hp->n_vocab = (uint32_t)t->ne[1];
    return 0;
}

/* Find a 2-D weight matrix of shape [cols, rows] (GGUF order: ne0 = row length). */
static int load_matrix(const gguf_file *f, const char *name, int64_t cols, int64_t rows, kern_matrix *m,
                       uint64_t *bytes, char *err, size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        err_set(err, errlen, "missing tensor '%s'", name);
        return -1;
    }
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows) {
        err_set(err, errlen, "tensor '%s' has shape [%lld, %lld] (%u dims), expected [%lld, %lld]", name,
                (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1), t->n_dims, (long long)cols,
                (long long)rows);
        return -1;
    }
    const tensor_type_info *ti = tensor_type_get(t->type);
    if (!ti) {
        err_set(err, errlen, "tensor '%s' has unsupported type %u", name, t->type);
        return -1;
    }
    *m = (kern_matrix){.type = t->type, .rows = rows, .cols = cols, .data = t->data};
    *bytes += t->bytes;
    return 0;
}

/* Find a 1-D tensor of n elements and return an owned f32 copy. */
static float *load_vector(const gguf_file *f, const char *name, int64_t n, uint64_t *bytes, char *err,
                          size_t errlen) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        err_set(err, errlen, "missing tensor '%s'", name);
        return NULL;
    }
    if (t->n_dims != 1 || t->ne[0] != n) {
        err_set(err, errlen, "tensor '%s' has shape [%lld] (%u dims), expected [%lld]", name, (long long)t->ne[0],
                t->n_dims, (long long)n);
        return NULL;
    }
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        err_set(err, errlen, "out of memory loading '%s'", name);
        return NULL;
    }
    if (quant_dequantize_row(t->type, t->data, v, n) != 0) {
        err_set(err, errlen, "tensor '%s': cannot decode type %u", name, t->type);
        free(v);
        return NULL;
    }
    *bytes += t->bytes;
    return v;
}

/* Prepare a matrix for the kernels. When they keep a repacked copy, the file's
 * pages of that tensor are dropped from memory: the copy is what is read from now
 * on (paths that still read the original fault it back in from the page cache),
 * so a worker's resident memory is its share of the weights once, not twice.
 * keep_pages: the original is still read by another user (a tied head's
 * token_embd rows, read by kern_embed), so its pages stay. */
static int prepare_matrix(kern_matrix *m, bool keep_pages) {
    if (kern_matrix_prepare(m)) return -1;
    if (m->packed && m->data && !keep_pages) {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t begin = ((uintptr_t)m->data + page - 1) & ~(page - 1);
        uintptr_t end = ((uintptr_t)m->data + (uintptr_t)m->rows * tensor_row_bytes(m->type, m->cols)) & ~(page - 1);
        if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
    }
    return 0;
}

/* Load the tensors of layer il into L, as the Qwen2 table lists them. */
static int load_layer(model *m, int32_t il, model_layer *L, char *err, size_t errlen) {
    char name[96];
    for (size_t i = 0; i < QWEN2_LAYER_TENSORS; i++) {
        const qwen2_tensor *d = &qwen2_layer_tensors[i];
        const int64_t ne0 = qwen2_dim_size(&m->hp, d->ne0), ne1 = qwen2_dim_size(&m->hp, d->ne1);
        qwen2_layer_name(name, sizeof name, il, d);
        if (d->kind == QWEN2_MATRIX) {
            if (load_matrix(m->file, name, ne0, ne1, qwen2_matrix_of(L, d), &m->weight_bytes, err, errlen)) return -1;
        } else if (!(*qwen2_vector_of(L, d) = load_vector(m->file, name, ne0, &m->weight_bytes, err, errlen))) {
            return -1;
        }
    }
    for (size_t i = 0; i < QWEN2_LAYER_TENSORS; i++)
        if (qwen2_layer_tensors[i].kind == QWEN2_MATRIX && prepare_matrix(qwen2_matrix_of(L, &qwen2_layer_tensors[i]), false)) {
            err_set(err, errlen, "out of memory preparing layer %d", (int)il);
            return -1;
        }
    return 0;
}

model *model_load(const char *path, const model_slice *slice, char *err, size_t errlen) {
    char sub[256];
    model *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    m->file = gguf_open(path, err, errlen);
    if (!m->file) {
        free(m);
        return NULL;
    }
    if (model_read_hparams(m->file, &m->hp, sub, sizeof sub)) {
        err_set(err, errlen, "%s: %s", path, sub);
        goto fail;
    }
    m->slice = slice ? *slice : (model_slice){0, -1, true, true};
    if (m->slice.layer_end < 0) m->slice.layer_end = (int32_t)m->hp.n_layer;
    if (m->slice.layer_begin < 0 || m->slice.layer_begin > m->slice.layer_end ||
        (uint32_t)m->slice.layer_end > m->hp.n_layer) {
        err_set(err, errlen, "%s: layer range [%d, %d) is outside the model's %u layers", path,
                (int)m->slice.layer_begin, (int)m->slice.layer_end, m->hp.n_layer);
        goto fail;
    }
    const int64_t E = m->hp.n_embd, V = m->hp.n_vocab;
    if (m->slice.embed && load_matrix(m->file, QWEN2_TOKEN_EMBD, E, V, &m->tok_embd, &m->weight_bytes, sub, sizeof sub))
        goto fail_sub;
    int32_t n = m->slice.layer_end - m->slice.layer_begin;
    m->layers = calloc(n ? (size_t)n : 1, sizeof *m->layers);
    if (!m->layers) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++)
        if (load_layer(m, m->slice.layer_begin + i, &m->layers[i], sub, sizeof sub)) goto fail_sub;
    if (m->slice.head) {
        if (!(m->output_norm = load_vector(m->file, QWEN2_OUTPUT_NORM, E, &m->weight_bytes, sub, sizeof sub)))
            goto fail_sub;
        /* Models with tied embeddings have no output.weight: the head reuses token_embd. */
        const bool tied = !gguf_find_tensor(m->file, QWEN2_OUTPUT);
        const char *head = tied ? QWEN2_TOKEN_EMBD : QWEN2_OUTPUT;
        if (load_matrix(m->file, head, E, V, &m->output, &m->weight_bytes, sub, sizeof sub)) goto fail_sub;
        if (prepare_matrix(&m->output, tied && m->slice.embed)) {
            err_set(err, errlen, "out of memory preparing the output head");
            goto fail;
        }
    }
    return m;
fail_sub:
    err_set(err, errlen, "%s: %s", path, sub);
fail:
    model_free(m);
    return NULL;
}

void model_free(model *m) {
    if (!m) return;
    if (m->layers) {
        for (int32_t i = 0; i < m->slice.layer_end - m->slice.layer_begin; i++) {
            for (size_t j = 0; j < QWEN2_LAYER_TENSORS; j++) {
                const qwen2_tensor *d = &qwen2_layer_tensors[j];
                if (d->kind == QWEN2_MATRIX) kern_matrix_release(qwen2_matrix_of(&m->layers[i], d));
                else free(*qwen2_vector_of(&m->layers[i], d));
            }
        }
        free(m->layers);
    }
    kern_matrix_release(&m->output);
    free(m->output_norm);
    gguf_close(m->file);
    free(m);
}

static uint64_t tensor_bytes(const gguf_file *f, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    return t ? t->bytes : 0;
}

uint64_t model_file_layer_bytes(const gguf_file *f, int32_t layer) {
    uint64_t total = 0;
    char name[96];
    for (size_t i = 0; i < QWEN2_LAYER_TENSORS; i++)
        total += tensor_bytes(f, qwen2_layer_name(name, sizeof name, layer, &qwen2_layer_tensors[i]));
    return total;
}

uint64_t model_file_embed_bytes(const gguf_file *f) { return tensor_bytes(f, QWEN2_TOKEN_EMBD); }

uint64_t model_file_head_bytes(const gguf_file *f) {
    const uint64_t out = gguf_find_tensor(f, QWEN2_OUTPUT) ? tensor_bytes(f, QWEN2_OUTPUT) : tensor_bytes(f, QWEN2_TOKEN_EMBD);
    return out + tensor_bytes(f, QWEN2_OUTPUT_NORM);
}

uint64_t model_kv_bytes_per_token(const model_hparams *hp, uint32_t type) {
    return 2ull * kern_kv_row_bytes(type, (int)(hp->n_head_kv * hp->head_dim));
}

uint64_t model_layer_params(const model_hparams *hp) {
    const uint64_t e = hp->n_embd, q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim;
    return e * q * 2 + e * kv * 2 + e * (uint64_t)hp->n_ff * 3;
}
