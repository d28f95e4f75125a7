/* ops.c - run-time dispatch of the kernels in ops.h: CPU detection (cpuid and
 * xgetbv), the BATON_ISA / BATON_THREADS settings, the precision setting, and the
 * thread pool that splits work by output rows.
 *
 * Thread-count invariance: a matmul task is a range of whole output rows (in
 * tiles of 16) and an attention task is one whole query head, and every kernel
 * computes an output element from its own inputs only, so which thread - or how
 * many - computed it never changes a bit.
 *
 * What each level runs: AVX-512 has its own quantized matmul (packed tiles,
 * VNNI), float dots, rmsnorm, swiglu, add, attention and activation quantizers
 * (cpu/ops_avx512.c). AVX2 has its own float dot and add, its own quantized FAST
 * matmul (8-row tiles: cpu/ops_avx2.c row-wise; cpu/gemm_avx2.c lane = row, for
 * Q8_0 repacked at load and for many-token Q4_0 / Q4_K / Q6_K jobs), and its own
 * rmsnorm, swiglu, attention and activation quantizers (cpu/vec_avx2.c). Every
 * level's rope, store_row and embed are the scalar code. All of them give the
 * scalar reference's bits.
 */
#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops_internal.h"

#define KERN_MAX_THREADS 256

typedef void (*kern_task_fn)(void *ctx, int task);

/* ------------------------------------------------------------ CPU detection */

static struct {
    int detected;
    kern_level best;
    int has_vnni, has_bf16;
    char features[256];
} cpu;

/* XCR0: which register states the OS saves (bit 1 SSE, 2 AVX, 5-7 AVX-512). */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void feature_add(const char *name, int present) {
    if (!present) return;
    size_t len = strlen(cpu.features);
    snprintf(cpu.features + len, sizeof cpu.features - len, "%s%s", len ? " " : "", name);
}

/* Fill `cpu` once: the best level this CPU and OS support. */
static void cpu_detect(void) {
    if (cpu.detected) return;
    cpu.detected = 1;
    cpu.best = KERN_SCALAR;
    uint32_t a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    uint32_t b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_count(7, 0, &a, &b7, &c7, &d7)) {
        uint32_t bb, cc, dd;
        __get_cpuid_count(7, 1, &a71, &bb, &cc, &dd);
    }
    int avx2 = (b7 >> 5) & 1, f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    int vnni = (c7 >> 11) & 1, bf16 = (a71 >> 5) & 1;
    int amx = (d7 >> 24) & 1;
    feature_add("avx", avx && ymm_os);
    feature_add("avx2", avx2 && ymm_os);
    feature_add("fma", fma && ymm_os);
    feature_add("f16c", f16c && ymm_os);
    feature_add("avx512f", f && zmm_os);
    feature_add("avx512bw", bw && zmm_os);
    feature_add("avx512vl", vl && zmm_os);
    feature_add("avx512dq", dq && zmm_os);
    feature_add("avx512vnni", vnni && zmm_os);
    feature_add("avx512bf16", bf16 && zmm_os);
    feature_add("amx-tile", amx);
    if (avx && avx2 && fma && f16c && ymm_os) cpu.best = KERN_AVX2;
    /* The AVX-512 kernels use VNNI for every integer dot: require it. */
    if (cpu.best == KERN_AVX2 && f && bw && vl && dq && vnni && zmm_os) cpu.best = KERN_AVX512;
    cpu.has_vnni = vnni && zmm_os;
    cpu.has_bf16 = bf16 && zmm_os;
}

/* ------------------------------------------------------------ settings */

static struct {
    int inited;
    kern_level level;
    kern_precision prec;
} g;

static const char *const level_names[] = {"scalar", "avx2", "avx512"};

const char *kern_level_name(kern_level level) {
    return (unsigned)level < 3 ? level_names[level] : "unknown";
}

kern_level kern_best_level(void) {
    cpu_detect();
    return cpu.best;
}

kern_level kern_get_level(void) {
    if (!g.inited) kern_init(0);
    return g.level;
}

/* Force a level; -1 (and no change) if this CPU lacks it. */
int kern_set_level(kern_level level) {
    cpu_detect();
    if ((unsigned)level > (unsigned)cpu.best) return -1;
    g.level = level;
    return 0;
}

void kern_set_precision(kern_precision p) { g.prec = p == KERN_EXACT ? KERN_EXACT : KERN_FAST; }
kern_precision kern_get_precision(void) { return g.prec; }

const char *kern_cpu_features(void) {
    cpu_detect();
    return cpu.features;
}

/* ------------------------------------------------------------ thread pool */

/* A thread's scratch buffers, one per kern_scratch slot (heap-allocated so the
 * key destructor can free it at thread exit). */
typedef struct {
    void *buf[KERN_SCRATCH_SLOTS];
    size_t cap[KERN_SCRATCH_SLOTS];
} scratch_set;
static _Thread_local scratch_set *scratch;

/* Workers wait for a job by spinning briefly on the job counter (a decode step
 * issues its calls microseconds apart), then sleep on a condition variable; the
 * caller takes part in every job, tasks are claimed from an atomic counter, and
 * the caller likewise spins briefly before sleeping until the workers are done.
 * Every sleep re-checks its condition under the lock, so no wake-up is lost. */
#define KERN_SPIN 4000 /* pause instructions before sleeping: tens of microseconds */
static struct {
    pthread_t tid[KERN_MAX_THREADS];
    int n; /* threads including the caller */
    pthread_mutex_t busy; /* one job at a time; a second caller runs serially */
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    _Atomic uint64_t gen; /* bumped (under lock) for each job, after its fields are set */
    _Atomic int pending;  /* workers still in the current job */
    _Atomic int stop;
    _Atomic int next;
    kern_task_fn fn;
    void *ctx;
    int n_tasks;
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
          .start = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

/* Frees a thread's scratch buffers when that thread exits (threads the kernels
 * did not start, such as a worker's compute thread, call kern_matmul too). */
static void scratch_free_at_exit(void *p) {
    scratch_set *s = p;
    for (int i = 0; s && i < KERN_SCRATCH_SLOTS; i++) free(s->buf[i]);
    free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free_at_exit); }

static void pool_work(void) {
    int i;
    while ((i = atomic_fetch_add(&pool.next, 1)) < pool.n_tasks) pool.fn(pool.ctx, i);
}

static void *pool_worker(void *arg) {
    uint64_t seen = (uint64_t)(uintptr_t)arg; /* the generation when the pool started */
    for (;;) {
        for (int i = 0; i < KERN_SPIN && atomic_load(&pool.gen) == seen && !atomic_load(&pool.stop); i++) cpu_relax();
        if (atomic_load(&pool.gen) == seen && !atomic_load(&pool.stop)) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.gen) == seen && !atomic_load(&pool.stop)) pthread_cond_wait(&pool.start, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        if (atomic_load(&pool.stop)) return NULL;
        seen = atomic_load(&pool.gen);
        pool_work();
        if (atomic_fetch_sub(&pool.pending, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

/* Run fn(ctx, i) for i < n_tasks over the pool; returns when all are done. */
static void pool_run(kern_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    if (pool.n <= 1 || n_tasks == 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.pending, pool.n - 1);
    atomic_fetch_add(&pool.gen, 1);
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    pool_work();
    for (int i = 0; i < KERN_SPIN && atomic_load(&pool.pending) > 0; i++) cpu_relax();
    if (atomic_load(&pool.pending) > 0) {
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.busy);
}

static void pool_stop(void) {
    if (pool.n <= 1) {
        pool.n = 0;
        return;
    }
    pthread_mutex_lock(&pool.busy);
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.n; i++) pthread_join(pool.tid[i], NULL);
    atomic_store(&pool.stop, 0);
    pool.n = 0;
    pthread_mutex_unlock(&pool.busy);
}

static void pool_start(int n) {
    pool.n = 1;
    uintptr_t gen0 = (uintptr_t)atomic_load(&pool.gen);
    for (int i = 1; i < n; i++) {
        if (pthread_create(&pool.tid[i], NULL, pool_worker, (void *)gen0) != 0) break;
        pool.n = i + 1;
    }
}

/* Detect the CPU, apply BATON_ISA / BATON_THREADS, (re)start the pool. An
 * explicit n_threads > 0 wins over BATON_THREADS; 0 means one per core. */
int kern_init(int n_threads) {
    cpu_detect();
    int rc = 0;
    if (!g.inited) {
        g.level = cpu.best;
        g.prec = KERN_FAST;
    }
    const char *isa = getenv("BATON_ISA");
    if (isa && *isa) {
        int want = -1;
        for (int l = 0; l < 3; l++)
            if (!strcmp(isa, level_names[l])) want = l;
        if (want < 0) {
            fprintf(stderr, "kernels: BATON_ISA=%s is not one of scalar, avx2, avx512\n", isa);
            rc = -1;
        } else if (kern_set_level((kern_level)want) != 0) {
            fprintf(stderr, "kernels: BATON_ISA=%s is not supported by this CPU (best: %s)\n", isa,
                    level_names[cpu.best]);
            rc = -1;
        }
    }
    if (n_threads <= 0) {
        const char *env = getenv("BATON_THREADS");
        if (env && *env) n_threads = atoi(env);
    }
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > KERN_MAX_THREADS) n_threads = KERN_MAX_THREADS;
    if (!g.inited || pool.n != n_threads) {
        pool_stop();
        pool_start(n_threads);
    }
    g.inited = 1;
    return rc;
}

void kern_shutdown(void) {
    pool_stop();
    scratch_free_at_exit(scratch); /* the calling thread's; other threads' are freed with them */
    scratch = NULL;
    pthread_once(&scratch_once, scratch_key_init);
    pthread_setspecific(scratch_key, NULL);
    g.inited = 0;
}

int kern_threads(void) {
    if (!g.inited) kern_init(0);
    return pool.n;
}

/* ------------------------------------------------------------ matrices */

int kern_matrix_prepare(kern_matrix *m) {
    if (!m) return 0;
    if (!g.inited) kern_init(0);
    kern_matrix_release(m);
    /* the packed layouts serve FAST jobs only: EXACT reads m->data, and a copy it
     * never reads would only double the memory (model.c drops the original's pages) */
    if (g.prec != KERN_FAST) return 0;
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) {
        int rc = kern_pack_avx512(m);
        return rc < 0 ? -1 : 0;
    }
    if (g.level == KERN_AVX2) return kern_pack_avx2(m) < 0 ? -1 : 0;
#endif
    return 0;
}

void kern_matrix_release(kern_matrix *m) {
    if (!m) return;
    free(m->packed);
    m->packed = NULL;
    m->packed_bytes = 0;
}

void *kern_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= KERN_SCRATCH_SLOTS) return NULL;
    if (!scratch) {
        pthread_once(&scratch_once, scratch_key_init);
        if (!(scratch = calloc(1, sizeof *scratch))) return NULL;
        pthread_setspecific(scratch_key, scratch);
    }
    if (bytes > scratch->cap[slot]) {
        free(scratch->buf[slot]);
        scratch->buf[slot] = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        scratch->cap[slot] = scratch->buf[slot] ? bytes : 0;
    }
    return scratch->buf[slot];
}

/* Activation quantization of one matmul input for every format its matrices use. */
typedef struct {
    const float *x;
    int64_t cols;
    uint8_t *q[2];   /* [format]: x32 blocks, x256 blocks (NULL: format unused) */
    size_t bytes[2]; /* per token */
    int n_tokens;
    kern_level level;
} quant_ctx;

/* Quantize token `task % n_tokens` into format `task / n_tokens` (ops_internal.h:
 * one definition, every level). */
static void quant_task(void *arg, int task) {
    const quant_ctx *c = arg;
    int f = task / c->n_tokens, t = task % c->n_tokens;
    if (!c->q[f]) return;
    void *dst = c->q[f] + (size_t)t * c->bytes[f];
    const float *src = c->x + (size_t)t * c->cols;
#if defined(__x86_64__)
    if (c->level == KERN_AVX512) {
        if (f == 0)
            kern_quantize_x32_avx512(dst, src, c->cols);
        else
            kern_quantize_x256_avx512(dst, src, c->cols);
        return;
    }
    if (c->level == KERN_AVX2) {
        if (f == 0)
            kern_quantize_x32_avx2(dst, src, c->cols);
        else
            kern_quantize_x256_avx2(dst, src, c->cols);
        return;
    }
#endif
    if (f == 0)
        kern_quantize_x32(dst, src, c->cols);
    else
        kern_quantize_x256(dst, src, c->cols);
}

#define KERN_MULTI_MAX 8

/* One pool job for up to KERN_MULTI_MAX matmuls: task i belongs to the first
 * matrix m with i < task_end[m]. */
typedef struct {
    kern_mm_job job[KERN_MULTI_MAX];
    void (*rows[KERN_MULTI_MAX])(const kern_mm_job *, int64_t, int64_t);
    int task_end[KERN_MULTI_MAX];
    int n;
    int64_t rows_per_task; /* a multiple of 16 */
} mm_ctx;

static void mm_task(void *arg, int task) {
    const mm_ctx *c = arg;
    int m = 0;
    while (task >= c->task_end[m]) m++;
    int first = m ? c->task_end[m - 1] : 0;
    const kern_mm_job *j = &c->job[m];
    int64_t r0 = (int64_t)(task - first) * c->rows_per_task, r1 = r0 + c->rows_per_task;
    if (r1 > j->w->rows) r1 = j->w->rows;
    if (r0 < r1) c->rows[m](j, r0, r1);
}

/* Whether m->packed holds the layout of `level`. */
static int packed_for(const kern_matrix *m, kern_level level) {
    const kern_pack_header *h = m->packed;
    return h && m->packed_bytes >= sizeof *h && h->magic == KERN_PACK_MAGIC && h->level == (uint32_t)level &&
           h->type == m->type;
}

/* The activation format of w in FAST precision: 0 = x32, 1 = x256, -1 = floats. */
static int act_format(const kern_matrix *w) {
    if (g.prec != KERN_FAST) return -1;
    return kern_mm_uses_x32(w->type) ? 0 : kern_mm_uses_x256(w->type) ? 1 : -1;
}

void kern_matmul_multi(const kern_mm_out *outs, int n_outs, const float *x, int n_tokens) {
    if (!g.inited) kern_init(0);
    if (!outs || !x || n_tokens <= 0 || n_outs <= 0) return;
    if (n_outs > KERN_MULTI_MAX) {
        kern_matmul_multi(outs, KERN_MULTI_MAX, x, n_tokens);
        kern_matmul_multi(outs + KERN_MULTI_MAX, n_outs - KERN_MULTI_MAX, x, n_tokens);
        return;
    }
    const int64_t cols = outs[0].w ? outs[0].w->cols : 0;
    quant_ctx qc = {.x = x, .cols = cols, .n_tokens = n_tokens, .level = g.level};
    mm_ctx c = {.n = 0};
    int64_t tiles = 0;
    for (int i = 0; i < n_outs; i++) {
        const kern_matrix *w = outs[i].w;
        if (!outs[i].y || !w || w->rows <= 0 || !tensor_row_bytes(w->type, w->cols)) continue;
        if (w->cols != cols) { /* another input width: not this job */
            kern_matmul_multi(&outs[i], 1, x, n_tokens);
            continue;
        }
        int f = act_format(w);
        if (f >= 0) {
            if (cols % (f ? 256 : 32)) continue;
            qc.bytes[f] = (size_t)(cols / (f ? 256 : 32)) * (f ? sizeof(kq8_256) : sizeof(kq8_32));
        }
        kern_mm_job *j = &c.job[c.n];
        *j = (kern_mm_job){.w = w, .x = x, .n_tokens = n_tokens, .bias = outs[i].bias, .y = outs[i].y, .prec = g.prec};
        j->dot = kern_dot16_ref;
        c.rows[c.n] = kern_mm_rows_scalar;
#if defined(__x86_64__)
        if (g.level >= KERN_AVX2) j->dot = kern_dot16_avx2; /* same bits, 16 lanes as 2 x 8 */
        if (g.level == KERN_AVX2) {
            c.rows[c.n] = kern_mm_rows_avx2;
            if (f >= 0 && packed_for(w, KERN_AVX2)) c.rows[c.n] = kern_mm_rows_avx2_packed;
            if (f >= 0 && w->type == TENSOR_Q4_0 && n_tokens >= KERN_AVX2_Q4_MANY) c.rows[c.n] = kern_mm_rows_avx2_q4_0;
            if (f >= 0 && w->type == TENSOR_Q4_K && n_tokens >= KERN_AVX2_Q4K_MANY) c.rows[c.n] = kern_mm_rows_avx2_q4_k;
            if (f >= 0 && w->type == TENSOR_Q6_K && n_tokens >= KERN_AVX2_Q6K_MANY) c.rows[c.n] = kern_mm_rows_avx2_q6_k;
        }
        /* AVX-512: quantized FAST needs the packed tiles (else the scalar loop, same bits) */
        if (g.level == KERN_AVX512 && (f < 0 || packed_for(w, KERN_AVX512))) c.rows[c.n] = kern_mm_rows_avx512;
#endif
        tiles += (w->rows + 15) / 16;
        c.n++;
    }
    if (!c.n) return;
    /* quantize x once per format, into one scratch buffer */
    size_t total = (qc.bytes[0] + qc.bytes[1]) * (size_t)n_tokens;
    if (total) {
        uint8_t *q = kern_scratch(KERN_SCRATCH_ACT, total);
        if (!q) return;
        if (qc.bytes[0]) qc.q[0] = q;
        if (qc.bytes[1]) qc.q[1] = q + qc.bytes[0] * (size_t)n_tokens;
        if (n_tokens > 1)
            pool_run(quant_task, &qc, 2 * n_tokens); /* one token per task: the same bits */
        else
            for (int f = 0; f < 2; f++) quant_task(&qc, f);
        for (int i = 0; i < c.n; i++) {
            int f = act_format(c.job[i].w);
            if (f >= 0) c.job[i].xq = qc.q[f];
        }
    }
    /* tasks of whole 16-row tiles, about 8 per thread over the whole job: fine
     * enough that a thread finishing early waits little */
    int64_t per = tiles / ((int64_t)pool.n * 8);
    if (per < 1) per = 1;
    c.rows_per_task = per * 16;
    int n_tasks = 0;
    for (int i = 0; i < c.n; i++) {
        n_tasks += (int)((c.job[i].w->rows + c.rows_per_task - 1) / c.rows_per_task);
        c.task_end[i] = n_tasks;
    }
    pool_run(mm_task, &c, n_tasks);
}

void kern_matmul(float *y, const kern_matrix *w, const float *x, int n_tokens, const float *bias) {
    kern_mm_out o = {y, w, bias};
    kern_matmul_multi(&o, 1, x, n_tokens);
}

void kern_embed(float *y, const kern_matrix *e, int64_t row) {
    if (!y || !e) return;
    size_t rb = tensor_row_bytes(e->type, e->cols);
    if (row < 0 || row >= e->rows || !rb) {
        memset(y, 0, (size_t)(e->cols > 0 ? e->cols : 0) * sizeof(float));
        return;
    }
    quant_dequantize_row(e->type, (const uint8_t *)e->data + (size_t)row * rb, y, e->cols);
}

/* ------------------------------------------------------------ vector ops */

void kern_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    if (n <= 0) return;
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) {
        kern_rmsnorm_avx512(y, x, w, n, eps);
        return;
    }
    if (g.level == KERN_AVX2) {
        kern_rmsnorm_avx2(y, x, w, n, eps);
        return;
    }
#endif
    kern_rmsnorm_scalar(y, x, w, n, eps);
}

void kern_swiglu(float *y, const float *gate, const float *up, int n) {
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) {
        kern_swiglu_avx512(y, gate, up, n);
        return;
    }
    if (g.level == KERN_AVX2) {
        kern_swiglu_avx2(y, gate, up, n);
        return;
    }
#endif
    kern_swiglu_scalar(y, gate, up, n);
}

void kern_add(float *y, const float *x, int n) {
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) {
        kern_add_avx512(y, x, n);
        return;
    }
    if (g.level == KERN_AVX2) {
        kern_add_avx2(y, x, n);
        return;
    }
#endif
    kern_add_scalar(y, x, n);
}

/* cos/sin of pos * base^(-2i/head_dim), computed in double and rounded once, so
 * every level rotates with the same two floats. */
void kern_rope_neox(float *x, int n_heads, int head_dim, int32_t pos, float base) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        double theta = (double)pos * pow((double)base, -2.0 * i / head_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

void kern_store_row(uint32_t type, void *dst, const float *src, int n) {
    if (type == TENSOR_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

typedef struct {
    float *out;
    const float *q;
    const kern_kv_view *kv;
    int n_pos, n_head, n_head_kv, head_dim;
    kern_level level;
} att_ctx;

static void att_task(void *arg, int h) {
    const att_ctx *c = arg;
    int group = c->n_head / c->n_head_kv;
    const float *q = c->q + (size_t)h * c->head_dim;
    float *o = c->out + (size_t)h * c->head_dim;
#if defined(__x86_64__)
    if (c->level == KERN_AVX512) {
        kern_attention_head_avx512(o, q, c->kv, c->n_pos, h / group, c->n_head_kv, c->head_dim);
        return;
    }
    if (c->level == KERN_AVX2) {
        kern_attention_head_avx2(o, q, c->kv, c->n_pos, h / group, c->n_head_kv, c->head_dim);
        return;
    }
#endif
    kern_attention_head_scalar(o, q, c->kv, c->n_pos, h / group, c->n_head_kv, c->head_dim);
}

void kern_attention(float *out, const float *q, const kern_kv_view *kv, int n_pos, int n_head, int n_head_kv,
                    int head_dim) {
    if (!g.inited) kern_init(0);
    if (!out || !q || !kv || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0) return;
    att_ctx c = {out, q, kv, n_pos, n_head, n_head_kv, head_dim, g.level};
    /* short contexts are cheaper on one thread than a pool wake-up */
    if ((int64_t)n_pos * head_dim * n_head < 65536) {
        for (int h = 0; h < n_head; h++) att_task(&c, h);
        return;
    }
    pool_run(att_task, &c, n_head);
}

double kern_peak_int8(double seconds, double (*now)(void)) {
    if (!g.inited) kern_init(0);
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) return kern_peak_int8_avx512(seconds, now);
    if (g.level == KERN_AVX2) return kern_peak_int8_avx2(seconds, now);
#endif
    return 0.0;
}

uint64_t kern_stream_sum(const void *buf, size_t bytes) {
    if (!g.inited) kern_init(0);
#if defined(__x86_64__)
    if (g.level == KERN_AVX512) return kern_stream_sum_avx512(buf, bytes);
    if (g.level == KERN_AVX2) return kern_stream_sum_avx2(buf, bytes);
#endif
    const uint64_t *w = buf;
    uint64_t s0 = 0, s1 = 0;
    for (size_t i = 0; i + 2 <= bytes / 8; i += 2) s0 += w[i], s1 += w[i + 1];
    return s0 + s1;
}
