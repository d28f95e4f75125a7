/* gpu_vk.c - the GPU backend on Vulkan 1.1 compute; see gpu.h.
 *
 * One device, one compute queue, one command buffer that records operations
 * until the host needs a result (gpu_read, gpu_write, gpu_sync): then it is
 * submitted, waited for and reset. Every dispatch is followed by a full
 * compute-to-compute memory barrier, so each operation sees the ones before
 * it. All pipelines share one layout: 8 storage-buffer bindings (unused ones
 * bound to a small dummy buffer) and 96 bytes of push constants; descriptor
 * sets come from a pool that is reset at each submit.
 *
 * Memory: buffers come from the device-local type when it is host-visible
 * (lavapipe, integrated GPUs, resizable BAR) and are then written in place;
 * otherwise from device-local memory through a host-visible staging buffer.
 *
 * The SPIR-V of every shader (kernels/vulkan/shaders/, one .comp each) was compiled by
 * glslc at build time and is included here as arrays of words.
 */
#include "gpu.h"

#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#include "ops_internal.h"
#include "quant.h"

/* the embedded shaders (build/.../spv/NAME.inc, see kernels/CMakeLists.txt) */
static const uint32_t spv_quant32[] =
#include <quant32.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_quant256[] =
#include <quant256.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_f32[] =
#include <mm_f32.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_f16[] =
#include <mm_f16.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_bf16[] =
#include <mm_bf16.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_q8_0[] =
#include <mm_q8_0.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_q4_0[] =
#include <mm_q4_0.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_q4_k[] =
#include <mm_q4_k.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mm_q6_k[] =
#include <mm_q6_k.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_f32[] =
#include <mme_f32.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_f16[] =
#include <mme_f16.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_bf16[] =
#include <mme_bf16.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_q8_0[] =
#include <mme_q8_0.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_q4_0[] =
#include <mme_q4_0.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_q4_k[] =
#include <mme_q4_k.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_mme_q6_k[] =
#include <mme_q6_k.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_rmsnorm[] =
#include <rmsnorm.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_swiglu[] =
#include <swiglu.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_add[] =
#include <add.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_rope[] =
#include <rope.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_kvstore[] =
#include <kvstore.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_attn[] =
#include <attn.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_copy[] =
#include <copy.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_peak[] =
#include <peak.inc> /* generated: build/.../spv */
    ;
static const uint32_t spv_probe[] =
#include <probe.inc> /* generated: build/.../spv */
    ;

enum {
    P_QUANT32, P_QUANT256,
    P_MM_F32, P_MM_F16, P_MM_BF16, P_MM_Q8_0, P_MM_Q4_0, P_MM_Q4_K, P_MM_Q6_K,        /* a workgroup per output */
    P_MME_F32, P_MME_F16, P_MME_BF16, P_MME_Q8_0, P_MME_Q4_0, P_MME_Q4_K, P_MME_Q6_K, /* an invocation per output */
    P_RMSNORM, P_SWIGLU, P_ADD, P_ROPE, P_KVSTORE, P_ATTN, P_COPY, P_PROBE, P_PEAK, P_COUNT
};
#define SPV(a) {a, sizeof a}
static const struct {
    const uint32_t *code;
    size_t bytes;
} shaders[P_COUNT] = {
    SPV(spv_quant32),  SPV(spv_quant256),
    SPV(spv_mm_f32),   SPV(spv_mm_f16),   SPV(spv_mm_bf16),  SPV(spv_mm_q8_0),  SPV(spv_mm_q4_0),  SPV(spv_mm_q4_k),
    SPV(spv_mm_q6_k),
    SPV(spv_mme_f32),  SPV(spv_mme_f16),  SPV(spv_mme_bf16), SPV(spv_mme_q8_0), SPV(spv_mme_q4_0), SPV(spv_mme_q4_k),
    SPV(spv_mme_q6_k),
    SPV(spv_rmsnorm),  SPV(spv_swiglu),   SPV(spv_add),      SPV(spv_rope),     SPV(spv_kvstore),  SPV(spv_attn),
    SPV(spv_copy),     SPV(spv_probe),    SPV(spv_peak),
};

/* The weight types with a matmul shader: pipeline, activation blocks (0 floats). */
static const struct {
    uint32_t type;
    int pipe;
    int block;
} mm_types[] = {
    {TENSOR_F32, P_MM_F32, 0},    {TENSOR_F16, P_MM_F16, 0},    {TENSOR_BF16, P_MM_BF16, 0},
    {TENSOR_Q8_0, P_MM_Q8_0, 32}, {TENSOR_Q4_0, P_MM_Q4_0, 32}, {TENSOR_Q4_K, P_MM_Q4_K, 256},
    {TENSOR_Q6_K, P_MM_Q6_K, 256},
};

#define N_BIND 8
#define PC_WORDS 24
#define POOL_SETS 512

struct gpu_buf {
    gpu_dev *dev;
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map; /* host pointer when the memory is host-visible */
    size_t bytes;
};

struct gpu_dev {
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    char name[256];
    uint64_t heap_bytes;
    uint64_t max_range; /* maxStorageBufferRange: the largest buffer a shader can see */
    uint64_t mat_limit; /* the largest part of a matrix: max_range (or BATON_GPU_MAX_BUFFER) */
    uint32_t mem_local, mem_host; /* memory type indices */
    int local_mappable;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe[P_COUNT];
    VkDescriptorPool pool;
    int sets_used;
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    VkFence fence;
    int recording, failed;
    int soft_fma; /* the shaders emulate fma (the device's fma() rounds twice) */
    int mm_elem;  /* matmul: an invocation per output (CPU devices) instead of a workgroup */
    gpu_buf *dummy, *xq, *staging;
};

static void set_err(char *err, size_t len, const char *fmt, ...) {
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

int gpu_compiled(void) { return 1; }

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds: the loader unloads the driver (lavapipe: libvulkan_lvp.so
 * and the LLVM under it) at vkDestroyInstance, and LeakSanitizer then cannot
 * name the library of what the driver keeps until exit, so no suppression
 * (tests/lsan-vulkan.supp) can match it. Pin every loaded Vulkan driver. */
static int pin_driver(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size, (void)arg;
    const char *n = info->dlpi_name;
    if (n && (strstr(n, "libvulkan_") || strstr(n, "libLLVM"))) dlopen(n, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    return 0;
}
static void pin_drivers(void) { dl_iterate_phdr(pin_driver, NULL); }
#else
static void pin_drivers(void) {}
#endif

static VkInstance instance_new(void) {
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "baton",
                             .apiVersion = VK_API_VERSION_1_1};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    VkInstance inst = VK_NULL_HANDLE;
    if (vkCreateInstance(&ci, NULL, &inst) != VK_SUCCESS) return VK_NULL_HANDLE;
    VkPhysicalDevice pd[16];
    uint32_t n = 16;
    vkEnumeratePhysicalDevices(inst, &n, pd); /* the drivers are loaded by now */
    pin_drivers();
    return inst;
}

static const char *type_name(VkPhysicalDeviceType t) {
    static const char *names[] = {"other", "integrated GPU", "discrete GPU", "virtual GPU", "CPU"};
    return (unsigned)t < 5 ? names[t] : "unknown";
}

static uint64_t local_heap_bytes(VkPhysicalDevice p) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(p, &mp);
    uint64_t best = 0;
    for (uint32_t i = 0; i < mp.memoryHeapCount; i++)
        if ((mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && mp.memoryHeaps[i].size > best)
            best = mp.memoryHeaps[i].size;
    return best;
}

/* Up to 16 physical devices of a fresh instance; returns the count or -1. */
static int devices_of(VkInstance inst, VkPhysicalDevice *out) {
    uint32_t n = 16;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, out);
    return r == VK_SUCCESS || r == VK_INCOMPLETE ? (int)n : -1;
}

int gpu_list(FILE *out) {
    VkInstance inst = instance_new();
    if (!inst) {
        fprintf(out, "no Vulkan: the loader found no driver (install mesa-vulkan-drivers or a GPU driver)\n");
        return -1;
    }
    VkPhysicalDevice pd[16];
    int n = devices_of(inst, pd);
    for (int i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd[i], &p);
        fprintf(out, "vulkan:%d  %s  (%s, %.1f GiB device memory, Vulkan %u.%u)\n", i, p.deviceName,
                type_name(p.deviceType), (double)local_heap_bytes(pd[i]) / (1 << 30), VK_VERSION_MAJOR(p.apiVersion),
                VK_VERSION_MINOR(p.apiVersion));
    }
    if (n <= 0) fprintf(out, "no Vulkan device\n");
    vkDestroyInstance(inst, NULL);
    return n;
}

/* The first memory type with all of `want` allowed by `bits`, or -1. */
static int mem_type(VkPhysicalDevice p, uint32_t bits, VkMemoryPropertyFlags want) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(p, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return (int)i;
    return -1;
}

static gpu_buf *buf_alloc(gpu_dev *d, size_t bytes, int host, char *err, size_t errlen) {
    if (d->max_range && bytes > d->max_range) {
        set_err(err, errlen, "%s: a buffer of %.1f MiB is over the device's largest storage buffer (%.1f MiB)", d->name,
                (double)bytes / 1048576.0, (double)d->max_range / 1048576.0);
        return NULL;
    }
    gpu_buf *b = calloc(1, sizeof *b);
    if (!b) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    b->dev = d;
    b->bytes = bytes;
    size_t alloc = (bytes + 15) & ~(size_t)15;
    if (!alloc) alloc = 16;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = alloc,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    if (vkCreateBuffer(d->dev, &bi, NULL, &b->buf) != VK_SUCCESS) goto fail;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->dev, b->buf, &req);
    const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    int t = -1, mappable = 0;
    if (!host) {
        t = mem_type(d->phys, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | hv);
        mappable = t >= 0;
        if (t < 0) t = mem_type(d->phys, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    }
    if (t < 0) {
        t = mem_type(d->phys, req.memoryTypeBits, hv);
        mappable = t >= 0;
    }
    if (t < 0) goto fail;
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)t};
    if (vkAllocateMemory(d->dev, &ai, NULL, &b->mem) != VK_SUCCESS) goto fail;
    if (vkBindBufferMemory(d->dev, b->buf, b->mem, 0) != VK_SUCCESS) goto fail;
    if (mappable && vkMapMemory(d->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map) != VK_SUCCESS) goto fail;
    if (b->map) memset(b->map, 0, alloc);
    return b;
fail:
    set_err(err, errlen, "%s: cannot allocate a buffer of %zu bytes in device memory", d->name, bytes);
    gpu_buf_free(b);
    return NULL;
}

static int cmd_begin(gpu_dev *d);

gpu_buf *gpu_buf_new(gpu_dev *d, size_t bytes, char *err, size_t errlen) {
    gpu_buf *b = buf_alloc(d, bytes, 0, err, errlen);
    if (b && !b->map) { /* zero it on the device */
        if (cmd_begin(d) == 0) vkCmdFillBuffer(d->cmd, b->buf, 0, VK_WHOLE_SIZE, 0);
        if (gpu_sync(d) < 0) {
            set_err(err, errlen, "%s: cannot clear a new buffer", d->name);
            gpu_buf_free(b);
            return NULL;
        }
    }
    return b;
}

void gpu_buf_free(gpu_buf *b) {
    if (!b) return;
    if (b->dev->recording) gpu_sync(b->dev); /* recorded work may still use it */
    VkDevice dev = b->dev->dev;
    if (b->map) vkUnmapMemory(dev, b->mem);
    if (b->buf) vkDestroyBuffer(dev, b->buf, NULL);
    if (b->mem) vkFreeMemory(dev, b->mem, NULL);
    free(b);
}

size_t gpu_buf_bytes(const gpu_buf *b) { return b ? b->bytes : 0; }

static int cmd_begin(gpu_dev *d) {
    if (d->recording) return 0;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (vkBeginCommandBuffer(d->cmd, &bi) != VK_SUCCESS) return -1;
    d->recording = 1;
    return 0;
}

int gpu_sync(gpu_dev *d) {
    if (!d) return -1;
    if (d->recording) {
        d->recording = 0;
        VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &d->cmd};
        if (vkEndCommandBuffer(d->cmd) != VK_SUCCESS || vkQueueSubmit(d->queue, 1, &si, d->fence) != VK_SUCCESS ||
            vkWaitForFences(d->dev, 1, &d->fence, VK_TRUE, UINT64_MAX) != VK_SUCCESS)
            d->failed = 1;
        vkResetFences(d->dev, 1, &d->fence);
        vkResetCommandBuffer(d->cmd, 0);
    }
    if (d->sets_used) {
        vkResetDescriptorPool(d->dev, d->pool, 0);
        d->sets_used = 0;
    }
    return d->failed ? -1 : 0;
}

/* A host-visible staging buffer of at least `bytes` (recreated larger). */
static gpu_buf *staging(gpu_dev *d, size_t bytes) {
    if (d->staging && d->staging->bytes >= bytes) return d->staging;
    gpu_buf_free(d->staging);
    d->staging = buf_alloc(d, bytes, 1, NULL, 0);
    return d->staging;
}

static int copy_buf(gpu_dev *d, VkBuffer src, size_t so, VkBuffer dst, size_t doff, size_t n) {
    if (cmd_begin(d)) return -1;
    VkBufferCopy r = {so, doff, n};
    vkCmdCopyBuffer(d->cmd, src, dst, 1, &r);
    return gpu_sync(d);
}

int gpu_write(gpu_buf *b, size_t off, const void *src, size_t n) {
    if (!b || off > b->bytes || n > b->bytes - off) return -1;
    gpu_dev *d = b->dev;
    if (gpu_sync(d)) return -1;
    if (!n) return 0;
    if (b->map) {
        memcpy((uint8_t *)b->map + off, src, n);
        return 0;
    }
    gpu_buf *s = staging(d, n);
    if (!s) return -1;
    memcpy(s->map, src, n);
    return copy_buf(d, s->buf, 0, b->buf, off, n);
}

int gpu_read(gpu_buf *b, size_t off, void *dst, size_t n) {
    if (!b || off > b->bytes || n > b->bytes - off) return -1;
    gpu_dev *d = b->dev;
    if (gpu_sync(d)) return -1;
    if (!n) return 0;
    if (b->map) {
        memcpy(dst, (const uint8_t *)b->map + off, n);
        return 0;
    }
    gpu_buf *s = staging(d, n);
    if (!s || copy_buf(d, b->buf, off, s->buf, 0, n)) return -1;
    memcpy(dst, s->map, n);
    return 0;
}

/* Record one dispatch of pipeline p on buffers bufs[0..nb) (the rest: dummy)
 * with push constants pc, then a barrier. */
static int dispatch(gpu_dev *d, int p, gpu_buf *const *bufs, int nb, const uint32_t *pc, uint32_t gx, uint32_t gy,
                    uint32_t gz) {
    if (d->failed) return -1;
    if (!gx || !gy || !gz) return 0;
    if (d->sets_used == POOL_SETS && gpu_sync(d)) return -1;
    if (cmd_begin(d)) return -1;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = d->pool, .descriptorSetCount = 1, .pSetLayouts = &d->dsl};
    VkDescriptorSet set;
    if (vkAllocateDescriptorSets(d->dev, &ai, &set) != VK_SUCCESS) return -1;
    d->sets_used++;
    VkDescriptorBufferInfo info[N_BIND];
    VkWriteDescriptorSet w[N_BIND];
    for (int i = 0; i < N_BIND; i++) {
        gpu_buf *b = i < nb && bufs[i] ? bufs[i] : d->dummy;
        info[i] = (VkDescriptorBufferInfo){b->buf, 0, VK_WHOLE_SIZE};
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = set,
                                      .dstBinding = (uint32_t)i, .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .pBufferInfo = &info[i]};
    }
    vkUpdateDescriptorSets(d->dev, N_BIND, w, 0, NULL);
    vkCmdBindPipeline(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->pipe[p]);
    vkCmdBindDescriptorSets(d->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->layout, 0, 1, &set, 0, NULL);
    vkCmdPushConstants(d->cmd, d->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, PC_WORDS * 4, pc);
    vkCmdDispatch(d->cmd, gx, gy, gz);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0,
                         NULL);
    return 0;
}

/* Build every pipeline (or, with probe_only, the probe's) with SOFT_FMA =
 * d->soft_fma (specialization constant 0). */
static int pipelines_build(gpu_dev *d, int probe_only) {
    VkBool32 soft = d->soft_fma ? VK_TRUE : VK_FALSE;
    VkSpecializationMapEntry me = {0, 0, sizeof soft};
    VkSpecializationInfo si = {1, &me, sizeof soft, &soft};
    for (int p = 0; p < P_COUNT; p++) {
        if (probe_only && p != P_PROBE) continue;
        if (d->pipe[p]) vkDestroyPipeline(d->dev, d->pipe[p], NULL);
        d->pipe[p] = VK_NULL_HANDLE;
        VkShaderModuleCreateInfo mci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                        .codeSize = shaders[p].bytes, .pCode = shaders[p].code};
        VkShaderModule mod;
        if (vkCreateShaderModule(d->dev, &mci, NULL, &mod) != VK_SUCCESS) return -1;
        VkComputePipelineCreateInfo ci = {
            .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                      .stage = VK_SHADER_STAGE_COMPUTE_BIT, .module = mod, .pName = "main",
                      .pSpecializationInfo = &si},
            .layout = d->layout};
        VkResult r = vkCreateComputePipelines(d->dev, VK_NULL_HANDLE, 1, &ci, NULL, &d->pipe[p]);
        vkDestroyShaderModule(d->dev, mod, NULL);
        if (r != VK_SUCCESS) return -1;
    }
    return 0;
}

static int pipelines_new(gpu_dev *d, char *err, size_t errlen) {
    VkDescriptorSetLayoutBinding lb[N_BIND];
    for (int i = 0; i < N_BIND; i++)
        lb[i] = (VkDescriptorSetLayoutBinding){(uint32_t)i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1,
                                               VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                           .bindingCount = N_BIND, .pBindings = lb};
    VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, PC_WORDS * 4};
    if (vkCreateDescriptorSetLayout(d->dev, &dci, NULL, &d->dsl) != VK_SUCCESS) goto fail;
    VkPipelineLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1,
                                      .pSetLayouts = &d->dsl, .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pr};
    if (vkCreatePipelineLayout(d->dev, &lci, NULL, &d->layout) != VK_SUCCESS) goto fail;
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, POOL_SETS * N_BIND};
    VkDescriptorPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = POOL_SETS,
                                      .poolSizeCount = 1, .pPoolSizes = &ps};
    if (vkCreateDescriptorPool(d->dev, &pci, NULL, &d->pool) != VK_SUCCESS) goto fail;
    if (pipelines_build(d, 1)) goto fail; /* the rest once the probe has chosen SOFT_FMA */
    return 0;
fail:
    set_err(err, errlen, "%s: cannot build the compute pipelines", d->name);
    return -1;
}

static float probe_rand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)((int64_t)(*s >> 11) - ((int64_t)1 << 52)) * (float)(1.0 / (double)((uint64_t)1 << 52));
}

/* Run the probe shader on crafted and random triples: the number of results
 * that differ from C's fmaf, correctly rounded / and sqrtf, and
 * kern_expf_ref; -1 if the device failed. */
static int probe(gpu_dev *d) {
    enum { N = 512 };
    float a[N], b[N], c[N], r[4 * N];
    uint64_t s = 0x853c49e6748fea9bull;
    for (int i = 0; i < N; i++) {
        float scale = (float)(1 << (i % 13));
        a[i] = probe_rand(&s) * scale, b[i] = probe_rand(&s) * 3.0f, c[i] = probe_rand(&s) * 20.0f;
        if (i < 64) a[i] = 1.0f + (float)i * 0x1p-12f, b[i] = 1.0f + 0x1p-12f, c[i] = -1.0f; /* double rounding shows */
        if (b[i] == 0.0f) b[i] = 1.0f;
    }
    char err[128];
    gpu_buf *rb = gpu_buf_new(d, sizeof r, err, sizeof err), *ab = gpu_buf_new(d, sizeof a, err, sizeof err);
    gpu_buf *bb = gpu_buf_new(d, sizeof b, err, sizeof err), *cb = gpu_buf_new(d, sizeof c, err, sizeof err);
    int bad = -1;
    if (rb && ab && bb && cb && !gpu_write(ab, 0, a, sizeof a) && !gpu_write(bb, 0, b, sizeof b) &&
        !gpu_write(cb, 0, c, sizeof c)) {
        uint32_t pc[PC_WORDS] = {N};
        gpu_buf *bufs[4] = {rb, ab, bb, cb};
        if (!dispatch(d, P_PROBE, bufs, 4, pc, N / 64, 1, 1) && !gpu_read(rb, 0, r, sizeof r)) {
            bad = 0;
            for (int i = 0; i < N; i++) {
                float want[4] = {fmaf(a[i], b[i], c[i]), a[i] / b[i], sqrtf(fabsf(a[i])), kern_expf_ref(c[i])};
                for (int k = 0; k < 4; k++) bad += memcmp(&r[k * N + i], &want[k], 4) != 0;
            }
        }
    }
    gpu_buf_free(rb), gpu_buf_free(ab), gpu_buf_free(bb), gpu_buf_free(cb);
    return bad;
}

int gpu_soft_fma(const gpu_dev *d) { return d ? d->soft_fma : 0; }
int gpu_mm_rowwise(const gpu_dev *d) { return d ? !d->mm_elem : 0; }

gpu_dev *gpu_open(int index, char *err, size_t errlen) {
    gpu_dev *d = calloc(1, sizeof *d);
    if (!d) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(d->name, sizeof d->name, "vulkan:%d", index);
    if (!(d->inst = instance_new())) {
        set_err(err, errlen, "no Vulkan: the loader found no driver (install mesa-vulkan-drivers or a GPU driver)");
        goto fail;
    }
    VkPhysicalDevice pd[16];
    int n = devices_of(d->inst, pd);
    if (index < 0 || index >= n) {
        set_err(err, errlen, "no Vulkan device %d (%d found; --device list shows them)", index, n < 0 ? 0 : n);
        goto fail;
    }
    d->phys = pd[index];
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(d->phys, &props);
    snprintf(d->name, sizeof d->name, "vulkan:%d (%.200s)", index, props.deviceName);
    d->heap_bytes = local_heap_bytes(d->phys);
    d->max_range = props.limits.maxStorageBufferRange;
    d->mat_limit = d->max_range;
    /* lavapipe runs a workgroup as one CPU thread: the per-output matmul suits it */
    const char *mm = getenv("BATON_GPU_MM"); /* row | element: force one (tests) */
    d->mm_elem = mm && *mm ? !strcmp(mm, "element") : props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const char *cap = getenv("BATON_GPU_MAX_BUFFER"); /* test hook: matrices in parts of this many bytes */
    if (cap && *cap && strtoull(cap, NULL, 10) > 0 && strtoull(cap, NULL, 10) < d->max_range)
        d->mat_limit = strtoull(cap, NULL, 10);
    uint32_t nq = 16;
    VkQueueFamilyProperties qf[16];
    vkGetPhysicalDeviceQueueFamilyProperties(d->phys, &nq, qf);
    d->qfam = UINT32_MAX;
    for (uint32_t i = 0; i < nq && d->qfam == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) d->qfam = i;
    if (d->qfam == UINT32_MAX) {
        set_err(err, errlen, "%s has no compute queue", d->name);
        goto fail;
    }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, .queueFamilyIndex = d->qfam,
                                   .queueCount = 1, .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci};
    if (vkCreateDevice(d->phys, &dci, NULL, &d->dev) != VK_SUCCESS) {
        set_err(err, errlen, "%s: cannot create the device", d->name);
        goto fail;
    }
    vkGetDeviceQueue(d->dev, d->qfam, 0, &d->queue);
    VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = d->qfam};
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (vkCreateCommandPool(d->dev, &cpi, NULL, &d->cpool) != VK_SUCCESS ||
        vkCreateFence(d->dev, &fci, NULL, &d->fence) != VK_SUCCESS) {
        set_err(err, errlen, "%s: cannot create a command pool", d->name);
        goto fail;
    }
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .commandPool = d->cpool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1};
    if (vkAllocateCommandBuffers(d->dev, &cai, &d->cmd) != VK_SUCCESS) {
        set_err(err, errlen, "%s: cannot allocate a command buffer", d->name);
        goto fail;
    }
    if (pipelines_new(d, err, errlen)) goto fail;
    if (!(d->dummy = buf_alloc(d, 16, 0, err, errlen))) goto fail;
    /* the device's own fma first; if it is not one rounding, the emulation */
    int bad = probe(d);
    if (bad > 0) {
        d->soft_fma = 1;
        if (pipelines_build(d, 1)) {
            set_err(err, errlen, "%s: cannot build the compute pipelines", d->name);
            goto fail;
        }
        bad = probe(d);
    }
    if (bad == 0 && pipelines_build(d, 0)) {
        set_err(err, errlen, "%s: cannot build the compute pipelines", d->name);
        goto fail;
    }
    if (bad != 0) {
        set_err(err, errlen, "%s: %s", d->name,
                bad < 0 ? "the device failed its first computation"
                        : "its float arithmetic does not round as IEEE 754 requires (the probe of fma, division, "
                          "square root and e^x differs from the CPU's), so it cannot give the CPU's numbers");
        goto fail;
    }
    return d;
fail:
    gpu_close(d);
    return NULL;
}

void gpu_close(gpu_dev *d) {
    if (!d) return;
    if (d->dev) {
        gpu_sync(d);
        vkDeviceWaitIdle(d->dev);
        gpu_buf_free(d->dummy);
        gpu_buf_free(d->xq);
        gpu_buf_free(d->staging);
        for (int p = 0; p < P_COUNT; p++)
            if (d->pipe[p]) vkDestroyPipeline(d->dev, d->pipe[p], NULL);
        if (d->pool) vkDestroyDescriptorPool(d->dev, d->pool, NULL);
        if (d->layout) vkDestroyPipelineLayout(d->dev, d->layout, NULL);
        if (d->dsl) vkDestroyDescriptorSetLayout(d->dev, d->dsl, NULL);
        if (d->fence) vkDestroyFence(d->dev, d->fence, NULL);
        if (d->cpool) vkDestroyCommandPool(d->dev, d->cpool, NULL);
        vkDestroyDevice(d->dev, NULL);
    }
    if (d->inst) vkDestroyInstance(d->inst, NULL);
    free(d);
}

const char *gpu_name(const gpu_dev *d) { return d ? d->name : ""; }
/* BATON_GPU_MEMORY (bytes), a test hook: the device claims that much memory,
 * so a test can make a slice that does not fit. */
uint64_t gpu_memory(const gpu_dev *d) {
    const char *fake = getenv("BATON_GPU_MEMORY");
    if (fake && *fake) return strtoull(fake, NULL, 10);
    return d ? d->heap_bytes : 0;
}

/* ------------------------------------------------------------ operations */

static int mm_index(uint32_t type) {
    for (size_t i = 0; i < sizeof mm_types / sizeof mm_types[0]; i++)
        if (mm_types[i].type == type) return (int)i;
    return -1;
}

int gpu_type_supported(uint32_t type) { return mm_index(type) >= 0; }

int gpu_mat_upload(gpu_dev *d, gpu_mat *out, const kern_matrix *m, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int i = mm_index(m->type);
    const tensor_type_info *ti = tensor_type_get(m->type);
    if (i < 0 || !ti) {
        set_err(err, errlen, "weights of type %s have no GPU matmul (f32 f16 bf16 q8_0 q4_0 q4_K q6_K do)",
                ti ? ti->name : "?");
        return -1;
    }
    if (mm_types[i].block && m->cols % mm_types[i].block) {
        set_err(err, errlen, "a %s matrix needs columns in multiples of %d", ti->name, mm_types[i].block);
        return -1;
    }
    out->type = m->type;
    out->rows = m->rows;
    out->cols = m->cols;
    out->row_bytes = tensor_row_bytes(m->type, m->cols);
    uint64_t limit = d->mat_limit ? d->mat_limit : UINT32_MAX;
    if (limit > UINT32_MAX) limit = UINT32_MAX; /* the shaders address bytes in 32 bits */
    out->part_rows = (int64_t)(limit / out->row_bytes);
    if (out->part_rows > m->rows) out->part_rows = m->rows;
    if (out->part_rows < 1 || (m->rows + out->part_rows - 1) / out->part_rows > GPU_MAT_PARTS) {
        set_err(err, errlen, "a matrix of %.1f MiB needs more than %d buffers of %s's largest (%.1f MiB)",
                (double)out->row_bytes * (double)m->rows / 1048576.0, GPU_MAT_PARTS, d->name,
                (double)limit / 1048576.0);
        return -1;
    }
    for (int64_t r0 = 0; r0 < m->rows; r0 += out->part_rows) {
        int64_t nr = m->rows - r0 < out->part_rows ? m->rows - r0 : out->part_rows;
        size_t bytes = out->row_bytes * (size_t)nr;
        gpu_buf *b = gpu_buf_new(d, bytes, err, errlen);
        if (!b) {
            gpu_mat_free(out);
            return -1;
        }
        out->part[out->n_parts++] = b;
        if (gpu_write(b, 0, (const uint8_t *)m->data + out->row_bytes * (size_t)r0, bytes)) {
            set_err(err, errlen, "%s: cannot upload a matrix", d->name);
            gpu_mat_free(out);
            return -1;
        }
    }
    return 0;
}

void gpu_mat_free(gpu_mat *m) {
    if (!m) return;
    for (int i = 0; i < m->n_parts; i++) gpu_buf_free(m->part[i]);
    m->n_parts = 0;
}

uint64_t gpu_max_buffer(const gpu_dev *d) { return d ? d->mat_limit : 0; }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The activation scratch of at least `bytes` (a larger one after a sync). */
static gpu_buf *xq_scratch(gpu_dev *d, size_t bytes) {
    if (d->xq && d->xq->bytes >= bytes) return d->xq;
    if (gpu_sync(d)) return NULL;
    gpu_buf_free(d->xq);
    d->xq = buf_alloc(d, bytes + bytes / 2, 0, NULL, 0);
    return d->xq;
}

int gpu_matmul(gpu_dev *d, gpu_span y, const gpu_mat *w, gpu_span x, int n_tokens, gpu_buf *bias) {
    int i = mm_index(w->type);
    if (i < 0 || n_tokens <= 0 || n_tokens > 65535) return -1;
    const int blk = mm_types[i].block;
    gpu_buf *xq = NULL;
    if (blk) {
        size_t nb = (size_t)w->cols / blk, rec = blk == 32 ? 10 : 89;
        if (!(xq = xq_scratch(d, nb * rec * 4 * (size_t)n_tokens))) return -1;
        uint32_t qpc[PC_WORDS] = {(uint32_t)w->cols, (uint32_t)n_tokens, (uint32_t)x.off, (uint32_t)x.stride};
        gpu_buf *qb[2] = {x.buf, xq};
        if (dispatch(d, blk == 32 ? P_QUANT32 : P_QUANT256, qb, 2, qpc, (uint32_t)((nb + 63) / 64),
                     (uint32_t)n_tokens, 1))
            return -1;
    }
    for (int p = 0; p < w->n_parts; p++) { /* the parts' rows in order: x is quantized once */
        int64_t r0 = (int64_t)p * w->part_rows, nr = w->rows - r0 < w->part_rows ? w->rows - r0 : w->part_rows;
        uint32_t pc[PC_WORDS] = {(uint32_t)nr,          (uint32_t)w->cols,   (uint32_t)n_tokens, bias != NULL,
                                 (uint32_t)(y.off + (size_t)r0), (uint32_t)y.stride, (uint32_t)x.off,
                                 (uint32_t)x.stride,    (uint32_t)w->row_bytes, 0, (uint32_t)r0, 0};
        gpu_buf *b[5] = {y.buf, w->part[p], x.buf, xq, bias};
        if (d->mm_elem) { /* an invocation per (row, token) */
            if (dispatch(d, mm_types[i].pipe + (P_MME_F32 - P_MM_F32), b, 5, pc, (uint32_t)((nr + 63) / 64),
                         (uint32_t)n_tokens, 1))
                return -1;
            continue;
        }
        /* a workgroup per (row, token): rows as x + 32768 z */
        uint32_t gx = nr < 32768 ? (uint32_t)nr : 32768, gz = (uint32_t)((nr + 32767) / 32768);
        if (dispatch(d, mm_types[i].pipe, b, 5, pc, gx, (uint32_t)n_tokens, gz)) return -1;
    }
    return 0;
}

int gpu_rmsnorm(gpu_dev *d, gpu_span y, gpu_span x, gpu_buf *w, size_t w_off, int n, int n_tokens, float eps) {
    if (n <= 0 || n_tokens <= 0) return n_tokens < 0 ? -1 : 0;
    uint32_t pc[PC_WORDS] = {(uint32_t)n,        (uint32_t)n_tokens, (uint32_t)x.off, (uint32_t)x.stride,
                             (uint32_t)y.off,    (uint32_t)y.stride, (uint32_t)w_off, fbits(eps)};
    gpu_buf *b[3] = {y.buf, x.buf, w};
    return dispatch(d, P_RMSNORM, b, 3, pc, (uint32_t)n_tokens, 1, 1);
}

/* An element-wise pipeline over count elements: x groups of 64, rows of 65536. */
static int elementwise(gpu_dev *d, int p, gpu_buf *const *b, int nb, uint32_t *pc, size_t count) {
    if (!count) return 0;
    pc[0] = (uint32_t)count;
    uint32_t rows = (uint32_t)((count + 65535) / 65536);
    return dispatch(d, p, b, nb, pc, rows > 1 ? 1024 : (uint32_t)((count + 63) / 64), rows, 1);
}

int gpu_swiglu(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *gate, size_t g_off, gpu_buf *up, size_t u_off,
               size_t count) {
    uint32_t pc[PC_WORDS] = {0, (uint32_t)y_off, (uint32_t)g_off, (uint32_t)u_off};
    gpu_buf *b[3] = {y, gate, up};
    return elementwise(d, P_SWIGLU, b, 3, pc, count);
}

int gpu_add(gpu_dev *d, gpu_buf *y, size_t y_off, gpu_buf *x, size_t x_off, size_t count) {
    uint32_t pc[PC_WORDS] = {0, (uint32_t)y_off, (uint32_t)x_off, 0};
    gpu_buf *b[2] = {y, x};
    return elementwise(d, P_ADD, b, 2, pc, count);
}

int gpu_rope(gpu_dev *d, gpu_span x, int n_heads, int head_dim, int n_tokens, gpu_buf *tab, size_t tab_off) {
    uint32_t pairs = (uint32_t)(head_dim / 2) * (uint32_t)n_heads;
    uint32_t pc[PC_WORDS] = {(uint32_t)n_heads, (uint32_t)head_dim, (uint32_t)n_tokens,
                             (uint32_t)x.off,   (uint32_t)x.stride, (uint32_t)tab_off};
    gpu_buf *b[2] = {x.buf, tab};
    return dispatch(d, P_ROPE, b, 2, pc, (pairs + 63) / 64, (uint32_t)n_tokens, 1);
}

int gpu_kv_store(gpu_dev *d, gpu_buf *kc, gpu_buf *vc, uint32_t type, int row_floats, gpu_span k, gpu_span v,
                 int n_tokens, gpu_buf *idx, size_t idx_off) {
    if ((type != TENSOR_F16 && type != TENSOR_F32) || (type == TENSOR_F16 && row_floats % 2) || k.stride != v.stride)
        return -1;
    uint32_t words = type == TENSOR_F16 ? (uint32_t)row_floats / 2 : (uint32_t)row_floats;
    uint32_t pc[PC_WORDS] = {words,          (uint32_t)n_tokens, (uint32_t)k.off, (uint32_t)v.off,
                             (uint32_t)k.stride, type == TENSOR_F16, (uint32_t)idx_off};
    gpu_buf *b[5] = {kc, vc, k.buf, v.buf, idx};
    return dispatch(d, P_KVSTORE, b, 5, pc, (words + 63) / 64, (uint32_t)n_tokens, 1);
}

int gpu_attention(gpu_dev *d, gpu_span out, gpu_span q, gpu_buf *kc, gpu_buf *vc, uint32_t type, size_t row_words,
                  int n_head, int n_head_kv, int head_dim, int n_tokens, gpu_buf *idx, size_t idx_off) {
    if ((type != TENSOR_F16 && type != TENSOR_F32) || head_dim <= 0 || head_dim > 512 || n_head_kv <= 0 ||
        n_head % n_head_kv)
        return -1;
    float scale = 1.0f / sqrtf((float)head_dim);
    uint32_t pc[PC_WORDS] = {(uint32_t)n_head, (uint32_t)n_head_kv, (uint32_t)head_dim, (uint32_t)row_words,
                             type == TENSOR_F16, (uint32_t)q.off,   (uint32_t)q.stride, (uint32_t)out.off,
                             (uint32_t)out.stride, fbits(scale),    (uint32_t)idx_off};
    gpu_buf *b[5] = {out.buf, q.buf, kc, vc, idx};
    return dispatch(d, P_ATTN, b, 5, pc, (uint32_t)n_head, (uint32_t)n_tokens, 1);
}

int gpu_copy(gpu_dev *d, gpu_buf *dst, gpu_buf *src, size_t bytes) {
    if (bytes % 16 || bytes > dst->bytes || bytes > src->bytes) return -1;
    uint32_t pc[PC_WORDS] = {(uint32_t)(bytes / 4)};
    gpu_buf *b[2] = {dst, src};
    size_t groups = (bytes / 16 + 255) / 256;
    uint32_t gy = (uint32_t)((groups + 65534) / 65535);
    return dispatch(d, P_COPY, b, 2, pc, gy > 1 ? 65535 : (uint32_t)groups, gy, 1);
}

int gpu_peak_int(gpu_dev *d, gpu_buf *out, uint32_t groups) {
    if (!groups || gpu_buf_bytes(out) < (size_t)groups * 256 * 4 || groups > 65535) return -1;
    uint32_t pc[PC_WORDS] = {7};
    gpu_buf *b[1] = {out};
    return dispatch(d, P_PEAK, b, 1, pc, groups, 1, 1);
}
