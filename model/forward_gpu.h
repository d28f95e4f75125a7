/* forward_gpu.h - the forward pass of a slice on a GPU (kernels/vulkan/gpu.h),
 * the same numbers as forward.c's on the CPU. forward.c calls it when a
 * device was chosen with forward_set_device (forward.h); nothing else should.
 */
#ifndef BATON_FORWARD_GPU_H
#define BATON_FORWARD_GPU_H

#include "forward.h"
#include "gpu.h"

typedef struct fwd_gpu fwd_gpu;

/* Upload the slice's weights and make the activation buffers for max_batch
 * tokens. NULL with a message: a weight type with no GPU matmul, or weights
 * plus activations that do not fit the device's memory (how much is needed
 * against how much there is). */
fwd_gpu *fwd_gpu_new(gpu_dev *d, const model *m, int32_t max_batch, char *err, size_t errlen);
void fwd_gpu_free(fwd_gpu *g);
/* Make the device KV cache for kv now (forward_prepare); 0 or -1 with a message. */
int fwd_gpu_prepare(fwd_gpu *g, const kv_cache *kv, char *err, size_t errlen);
/* forward_run on the device: hidden [n][n_embd] in (embedding already done)
 * and out; logits for the tokens that want them. The KV cache lives on the
 * device (made for kv's shape at first use: kv's host rows stay unused).
 * Returns the logit rows written, or -1 with a message. */
int fwd_gpu_run(fwd_gpu *g, const kv_cache *kv, const fwd_batch *b, float *hidden, float *logits, char *err,
                size_t errlen);

#endif
