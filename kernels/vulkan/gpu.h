/* gpu.h - the GPU backend: Vulkan compute devices, buffers in device memory,
 * and the operations of a transformer stage as compute shaders that give the
 * scalar reference's bits (kernels/ops_scalar.c, FAST precision).
 *
 *     gpu_dev *d = gpu_open(0, err, sizeof err);         // --device vulkan:0
 *     gpu_mat w;  gpu_mat_upload(d, &w, &kern_w, err, sizeof err);  // once
 *     gpu_buf *x = gpu_buf_new(d, bytes, err, sizeof err), *y = ...;
 *     gpu_write(x, 0, host_x, bytes);
 *     gpu_matmul(d, GPU_SPAN(y, 0, w.rows), &w, GPU_SPAN(x, 0, w.cols), n_tokens, NULL);
 *     gpu_read(y, 0, host_y, n_tokens * w.rows * 4);     // waits for the work
 *
 * Operations are recorded, in call order, into one command stream that runs
 * when the host next reads or writes a buffer, or at gpu_sync; each one sees
 * the results of the ones before it. Offsets and strides are in floats (4-byte
 * words). Built without Vulkan (BATON_VULKAN off or not found), gpu_compiled()
 * is 0 and gpu_open fails with a message saying so.
 *
 * Numbers: every shader follows the scalar reference's order of float steps,
 * with no contraction into FMA except where the reference calls fmaf, e^x as
 * kern_expf_ref, division and square root correctly rounded (an exact residual
 * check), f16 conversions in integers. On a device whose add, multiply and fma
 * round as IEEE 754 requires (lavapipe does; tests/unit/test_gpu.c checks
 * every operation) the results are the CPU's bit for bit. Subnormal floats
 * may be flushed by a device; the reference keeps them (the README's GPU
 * section says where that can matter).
 */
#ifndef BATON_GPU_H
#define BATON_GPU_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ops.h"

typedef struct gpu_dev gpu_dev;
typedef struct gpu_buf gpu_buf;

/* The --device option of baton-worker and baton-run: "cpu", "vulkan" (device
 * 0), "vulkan:N" or "list"; -1 for anything else. *index gets N. */
enum { GPU_DEVICE_CPU = 0, GPU_DEVICE_VULKAN = 1, GPU_DEVICE_LIST = 2 };
int gpu_parse_device(const char *s, int *index);

/* 1 if this build has the Vulkan backend. */
int gpu_compiled(void);
/* Print one line per Vulkan device ("vulkan:N name, type, memory") to out;
 * returns the number of devices, or -1 with a line saying why none can be
 * listed (no Vulkan in this build, no loader or driver). */
int gpu_list(FILE *out);
/* Open device index (gpu_list's N) with one compute queue and build every
 * pipeline; NULL with a message. */
gpu_dev *gpu_open(int index, char *err, size_t errlen);
void gpu_close(gpu_dev *d);
const char *gpu_name(const gpu_dev *d);
/* 1 if the device's fma() rounds twice (lavapipe) and the shaders emulate a
 * fused one from exact products and sums (slower, the same bits). */
int gpu_soft_fma(const gpu_dev *d);
/* 1 if the matmul runs a workgroup of 64 per output element (blocks in
 * parallel, then the float chain in order: GPUs), 0 for an invocation per
 * output (CPU devices such as lavapipe). BATON_GPU_MM=row|element set at
 * gpu_open forces one (tests run both); the numbers are the same. */
int gpu_mm_rowwise(const gpu_dev *d);
/* Bytes of the largest buffer a shader can bind (maxStorageBufferRange; a
 * matrix larger than this goes up in parts). BATON_GPU_MAX_BUFFER set at
 * gpu_open lowers it for matrices only (a test hook). */
uint64_t gpu_max_buffer(const gpu_dev *d);
/* Bytes of the device's largest device-local memory heap (BATON_GPU_MEMORY, a test
 * hook, replaces it). */
uint64_t gpu_memory(const gpu_dev *d);

/* A buffer of `bytes` in device memory (zeroed); NULL with a message. */
gpu_buf *gpu_buf_new(gpu_dev *d, size_t bytes, char *err, size_t errlen);
void gpu_buf_free(gpu_buf *b);
size_t gpu_buf_bytes(const gpu_buf *b);
/* Copy host bytes in / out at byte offset off (after the recorded work has
 * run); 0, or -1 if the range is outside the buffer or the device failed. */
int gpu_write(gpu_buf *b, size_t off, const void *src, size_t n);
int gpu_read(gpu_buf *b, size_t off, void *dst, size_t n);
/* Run the recorded operations and wait for them; 0 or -1 (device lost). */
int gpu_sync(gpu_dev *d);

/* A weight matrix in device memory, GGUF layout, uploaded once: in parts of
 * part_rows rows (the last one shorter) where the whole is larger than the
 * device's largest storage buffer (lavapipe: 128 MiB). */
#define GPU_MAT_PARTS 16
typedef struct gpu_mat {
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
    int64_t part_rows;
    int n_parts;
    gpu_buf *part[GPU_MAT_PARTS];
} gpu_mat;
/* 1 if gpu_matmul has a shader for weights of this type: F32, F16, BF16, Q8_0,
 * Q4_0 (cols % 32 == 0), Q4_K, Q6_K (cols % 256 == 0). */
int gpu_type_supported(uint32_t type);
int gpu_mat_upload(gpu_dev *d, gpu_mat *out, const kern_matrix *m, char *err, size_t errlen);
void gpu_mat_free(gpu_mat *m);

/* Where a row of token t is: buf + off + t * stride floats. */
typedef struct gpu_span {
    gpu_buf *buf;
    size_t off, stride;
} gpu_span;
#define GPU_SPAN(b, o, s) ((gpu_span){(b), (o), (s)})

/* The FAST kern_matmul: y[t][r] = W[r] . x[t] (+ bias[r], bias floats from
 * offset 0 of its buffer, or NULL), x quantized on the device for the
 * quantized types. 0, or -1 (unsupported type, device error). */
int gpu_matmul(gpu_dev *d, gpu_span y, const gpu_mat *w, gpu_span x, int n_tokens, gpu_buf *bias);
/* kern_rmsnorm per token (y may be x); w is n floats at offset w_off. */
int gpu_rmsnorm(gpu_dev *d, gpu_span y, gpu_span x, gpu_buf *w, size_t w_off, int n, int n_tokens, float eps);
/* kern_swiglu over count floats: y = silu(gate) * up (y may be gate). */
int gpu_swiglu(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *gate, size_t g_off, gpu_buf *up, size_t u_off,
               size_t count);
/* kern_add over count floats: y += x. */
int gpu_add(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *x, size_t x_off, size_t count);
/* kern_rope_neox_ext of n_heads heads per token with the cos/sin rows that
 * kern_rope_table wrote, per token [c[hd/2], s[hd/2]], at tab_off. */
int gpu_rope(gpu_dev *d, gpu_span x, int n_heads, int head_dim, int n_tokens, gpu_buf *tab, size_t tab_off);
/* kern_store_row of token t's K and V rows (row_floats each) into the f16 or
 * f32 caches kc, vc at the word offset idx[idx_off + t]. */
int gpu_kv_store(gpu_dev *d, gpu_buf *kc, gpu_buf *vc, uint32_t type, int row_floats, gpu_span k, gpu_span v,
                 int n_tokens, gpu_buf *idx, size_t idx_off);
/* kern_attention for n_tokens query tokens: token t's heads at q, output at
 * out; its cache rows start at word idx[idx_off + 2t] of kc / vc,
 * row_words apart, and it attends to idx[idx_off + 2t + 1] positions.
 * head_dim <= 512, f16 or f32 cache. */
int gpu_attention(gpu_dev *d, gpu_span out, gpu_span q, gpu_buf *kc, gpu_buf *vc, uint32_t type, size_t row_words,
                  int n_head, int n_head_kv, int head_dim, int n_tokens, gpu_buf *idx, size_t idx_off);
/* dst = src over bytes (a multiple of 16): the bandwidth probe. */
int gpu_copy(gpu_dev *d, gpu_buf *dst, gpu_buf *src, size_t bytes);
/* groups x 256 invocations of 8 x 256 int32 multiply-adds (2 ops each) into
 * out (groups x 256 words): the arithmetic probe of baton-bench gpu. */
int gpu_peak_int(gpu_dev *d, gpu_buf *out, uint32_t groups);

#endif
