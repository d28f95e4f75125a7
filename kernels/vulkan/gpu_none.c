/* gpu_none.c - the GPU backend of a build without Vulkan (BATON_VULKAN off,
 * or libvulkan-dev / glslc not found): every entry refuses with a message that
 * says how to get it. See gpu.h. */
#include "gpu.h"

#define NO_VULKAN "this build has no Vulkan GPU backend (install libvulkan-dev and glslc, configure with BATON_VULKAN=AUTO or ON)"

static void say(char *err, size_t len) {
    if (err && len) snprintf(err, len, "%s", NO_VULKAN);
}

int gpu_compiled(void) { return 0; }
int gpu_list(FILE *out) {
    fprintf(out, "%s\n", NO_VULKAN);
    return -1;
}
gpu_dev *gpu_open(int index, char *err, size_t errlen) {
    (void)index;
    say(err, errlen);
    return NULL;
}
void gpu_close(gpu_dev *d) { (void)d; }
const char *gpu_name(const gpu_dev *d) { return d ? "" : ""; }
int gpu_mm_rowwise(const gpu_dev *d) { return d ? 0 : 0; }
int gpu_soft_fma(const gpu_dev *d) { return d ? 0 : 0; }
uint64_t gpu_max_buffer(const gpu_dev *d) { return d ? 0 : 0; }
uint64_t gpu_memory(const gpu_dev *d) { return d ? 0 : 0; }
gpu_buf *gpu_buf_new(gpu_dev *d, size_t bytes, char *err, size_t errlen) {
    (void)d, (void)bytes;
    say(err, errlen);
    return NULL;
}
void gpu_buf_free(gpu_buf *b) { (void)b; }
size_t gpu_buf_bytes(const gpu_buf *b) { return b ? 0 : 0; }
int gpu_write(gpu_buf *b, size_t off, const void *src, size_t n) { return (void)b, (void)off, (void)src, (void)n, -1; }
int gpu_read(gpu_buf *b, size_t off, void *dst, size_t n) { return (void)b, (void)off, (void)dst, (void)n, -1; }
int gpu_sync(gpu_dev *d) { return (void)d, -1; }
int gpu_type_supported(uint32_t type) { return (void)type, 0; }
int gpu_mat_upload(gpu_dev *d, gpu_mat *out, const kern_matrix *m, char *err, size_t errlen) {
    (void)d, (void)out, (void)m;
    say(err, errlen);
    return -1;
}
void gpu_mat_free(gpu_mat *m) { (void)m; }
int gpu_matmul(gpu_dev *d, gpu_span y, const gpu_mat *w, gpu_span x, int n_tokens, gpu_buf *bias) {
    return (void)d, (void)y, (void)w, (void)x, (void)n_tokens, (void)bias, -1;
}
int gpu_rmsnorm(gpu_dev *d, gpu_span y, gpu_span x, gpu_buf *w, size_t w_off, int n, int n_tokens, float eps) {
    return (void)d, (void)y, (void)x, (void)w, (void)w_off, (void)n, (void)n_tokens, (void)eps, -1;
}
int gpu_swiglu(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *gate, size_t g_off, gpu_buf *up, size_t u_off,
               size_t count) {
    return (void)d, (void)y, (void)y_off, (void)gate, (void)g_off, (void)up, (void)u_off, (void)count, -1;
}
int gpu_add(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *x, size_t x_off, size_t count) {
    return (void)d, (void)y, (void)y_off, (void)x, (void)x_off, (void)count, -1;
}
int gpu_rope(gpu_dev *d, gpu_span x, int n_heads, int head_dim, int n_tokens, gpu_buf *tab, size_t tab_off) {
    return (void)d, (void)x, (void)n_heads, (void)head_dim, (void)n_tokens, (void)tab, (void)tab_off, -1;
}
int gpu_kv_store(gpu_dev *d, gpu_buf *kc, gpu_buf *vc, uint32_t type, int row_floats, gpu_span k, gpu_span v,
                 int n_tokens, gpu_buf *idx, size_t idx_off) {
    return (void)d, (void)kc, (void)vc, (void)type, (void)row_floats, (void)k, (void)v, (void)n_tokens, (void)idx,
           (void)idx_off, -1;
}
int gpu_attention(gpu_dev *d, gpu_span out, gpu_span q, gpu_buf *kc, gpu_buf *vc, uint32_t type, size_t row_words,
                  int n_head, int n_head_kv, int head_dim, int n_tokens, gpu_buf *idx, size_t idx_off) {
    return (void)d, (void)out, (void)q, (void)kc, (void)vc, (void)type, (void)row_words, (void)n_head,
           (void)n_head_kv, (void)head_dim, (void)n_tokens, (void)idx, (void)idx_off, -1;
}
int gpu_copy(gpu_dev *d, gpu_buf *dst, gpu_buf *src, size_t bytes) {
    return (void)d, (void)dst, (void)src, (void)bytes, -1;
}
int gpu_peak_int(gpu_dev *d, gpu_buf *out, uint32_t groups) { return (void)d, (void)out, (void)groups, -1; }
