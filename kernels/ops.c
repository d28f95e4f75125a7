/* ops.c - the operations of ops.h: the settings (level, precision, BATON_ISA,
 * BATON_THREADS), the thread pool that splits work by output rows, and the
 * calls into the current level's backend (g.be, from the table in backend.c).
 * Nothing here depends on which levels exist.
 *
 * Thread-count invariance: a matmul task is a range of whole output rows (in
 * tiles of 16) and an attention task is one whole query head, and every kernel
 * computes an output element from its own inputs only, so which thread - or how
 * many - computed it never changes a bit.
 *
 * What each level runs: its backend's entries (ops_internal.h). The matmul of a
 * job is the row kernel its level's mm_rows picks: AVX-512 runs its packed tiles
 * (cpu/ops_avx512.c), AVX2 its row-wise, lane = row and few-token kernels
 * (cpu/ops_avx2.c, gemm_avx2.c, ops_gemv_avx2.c). Every level's rope, store_row
 * and embed are the scalar code here. All of them give the scalar reference's
 * bits.
 */
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

/* ------------------------------------------------------------ settings */

/* be: the current level's backend (backend.c), scalar until kern_init. */
static struct {
    int inited;
    kern_level level;
    const kern_backend *be;
    kern_precision prec;
} g = {.be = &kern_backend_scalar};

kern_level kern_get_level(void) {
    if (!g.inited) kern_init(0);
    return g.level;
}

const kern_backend *kern_backend_now(void) {
    if (!g.inited) kern_init(0);
    return g.be;
}

/* Force a level; -1 (and no change) if this CPU lacks it. */
int kern_set_level(kern_level level) {
    if ((unsigned)level > (unsigned)kern_best_level()) return -1;
    g.level = level;
    g.be = kern_backend_at((int)level);
    return 0;
}

void kern_set_precision(kern_precision p) { g.prec = p == KERN_EXACT ? KERN_EXACT : KERN_FAST; }
kern_precision kern_get_precision(void) { return g.prec; }

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
    int rc = 0;
    if (!g.inited) {
        kern_set_level(kern_best_level());
        g.prec = KERN_FAST;
    }
    const char *isa = getenv("BATON_ISA");
    if (isa && *isa) {
        int want = -1;
        char names[128] = "";
        for (int l = 0; l < kern_backend_count(); l++) {
            const char *name = kern_level_name((kern_level)l);
            if (!strcmp(isa, name)) want = l;
            size_t len = strlen(names);
            snprintf(names + len, sizeof names - len, "%s%s", l ? ", " : "", name);
        }
        if (want < 0) {
            fprintf(stderr, "kernels: BATON_ISA=%s is not one of %s\n", isa, names);
            rc = -1;
        } else if (kern_set_level((kern_level)want) != 0) {
            fprintf(stderr, "kernels: BATON_ISA=%s is not supported by this CPU (best: %s)\n", isa,
                    kern_level_name(kern_best_level()));
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
    return g.be->pack(m) < 0 ? -1 : 0;
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
    const kern_backend *be;
} quant_ctx;

/* Quantize token `task % n_tokens` into format `task / n_tokens` (ops_internal.h:
 * one definition, every level). */
static void quant_task(void *arg, int task) {
    const quant_ctx *c = arg;
    int f = task / c->n_tokens, t = task % c->n_tokens;
    if (!c->q[f]) return;
    void *dst = c->q[f] + (size_t)t * c->bytes[f];
    const float *src = c->x + (size_t)t * c->cols;
    if (f == 0)
        c->be->quantize_x32(dst, src, c->cols);
    else
        c->be->quantize_x256(dst, src, c->cols);
}

#define KERN_MULTI_MAX 8

/* One pool job for up to KERN_MULTI_MAX matmuls: task i belongs to the first
 * matrix m with i < task_end[m]. */
typedef struct {
    kern_mm_job job[KERN_MULTI_MAX];
    kern_rows_fn rows[KERN_MULTI_MAX];
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

/* The row kernel of job j: the current level's choice, or where that level
 * leaves the job (NULL), the choice of the level below (scalar takes every job). */
static kern_rows_fn mm_rows_for(const kern_mm_job *j) {
    kern_rows_fn rows = g.be->mm_rows(j);
    for (int l = (int)g.level - 1; !rows; l--) rows = kern_backend_at(l)->mm_rows(j);
    return rows;
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
    quant_ctx qc = {.x = x, .cols = cols, .n_tokens = n_tokens, .be = g.be};
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
        *j = (kern_mm_job){.w = w, .x = x, .n_tokens = n_tokens, .bias = outs[i].bias, .y = outs[i].y, .prec = g.prec,
                           .dot = g.be->dot16};
        c.rows[c.n] = mm_rows_for(j);
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
    g.be->rmsnorm(y, x, w, n, eps);
}

void kern_swiglu(float *y, const float *gate, const float *up, int n) { g.be->swiglu(y, gate, up, n); }

void kern_add(float *y, const float *x, int n) { g.be->add(y, x, n); }

/* pair i's YaRN frequency factor and the temperature; see ops.h. */
static double yarn_corr_dim(int head_dim, uint32_t orig_ctx, double beta, double base) {
    return head_dim * log((double)orig_ctx / (beta * 2.0 * M_PI)) / (2.0 * log(base));
}

/* cos/sin of pair i's angle, computed in double and rounded once to float, so
 * every level (and the GPU, which gets this table) rotates with the same two
 * floats: plain RoPE theta = pos * base^(-2i/head_dim), or YaRN's (ops.h). */
void kern_rope_table(float *c, float *sn, int head_dim, int32_t pos, const kern_rope *r) {
    const int half = head_dim / 2;
    if (!(r->yarn_factor > 1.0f) || r->yarn_orig_ctx == 0) {
        for (int i = 0; i < half; i++) {
            double theta = (double)pos * pow((double)r->base, -2.0 * i / head_dim);
            c[i] = (float)cos(theta), sn[i] = (float)sin(theta);
        }
        return;
    }
    const double base = r->base, s = r->yarn_factor;
    double lo = floor(yarn_corr_dim(head_dim, r->yarn_orig_ctx, 32.0, base));
    double hi = ceil(yarn_corr_dim(head_dim, r->yarn_orig_ctx, 1.0, base));
    if (lo < 0) lo = 0;
    if (hi > head_dim - 1) hi = head_dim - 1;
    const double span = hi - lo > 0.001 ? hi - lo : 0.001;
    const double mscale = 0.1 * log(s) + 1.0;
    for (int i = 0; i < half; i++) {
        double y = (i - lo) / span;
        double ramp = 1.0 - (y < 0 ? 0 : y > 1 ? 1 : y); /* 1: extrapolate (keep f_i), 0: interpolate (f_i / s) */
        double f = pow(base, -2.0 * i / head_dim);
        double theta = (double)pos * (f / s * (1.0 - ramp) + f * ramp);
        c[i] = (float)(cos(theta) * mscale), sn[i] = (float)(sin(theta) * mscale);
    }
}

void kern_rope_neox_ext(float *x, int n_heads, int head_dim, int32_t pos, const kern_rope *r) {
    const int half = head_dim / 2;
    if (half <= 0 || head_dim > 2 * KERN_MAX_HEAD_DIM) return;
    float c[KERN_MAX_HEAD_DIM], sn[KERN_MAX_HEAD_DIM];
    kern_rope_table(c, sn, head_dim, pos, r);
    for (int i = 0; i < half; i++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c[i] - x1 * sn[i];
            v[i + half] = x0 * sn[i] + x1 * c[i];
        }
}

void kern_rope_neox(float *x, int n_heads, int head_dim, int32_t pos, float base) {
    const kern_rope r = {.base = base};
    kern_rope_neox_ext(x, n_heads, head_dim, pos, &r);
}

/* One Q8_0 block of the KV cache (see kern_store_row). */
static void kv_quantize_q8_0(block_q8_0 *b, const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < QK8_0; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a; /* NaN never wins */
    }
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    b->d = f32_to_fp16(d);
    for (int i = 0; i < QK8_0; i++) {
        float v = x[i] * id;
        if (!(v == v)) v = 0.0f;
        v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
        b->qs[i] = (int8_t)nearbyintf(v);
    }
}

size_t kern_kv_row_bytes(uint32_t type, int n) {
    switch (type) {
    case TENSOR_F32: return (size_t)n * 4;
    case TENSOR_F16: return (size_t)n * 2;
    case TENSOR_Q8_0: return (size_t)(n / QK8_0) * sizeof(block_q8_0);
    default: return 0;
    }
}

void kern_store_row(uint32_t type, void *dst, const float *src, int n) {
    if (type == TENSOR_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
    } else if (type == TENSOR_Q8_0) {
        block_q8_0 *b = dst;
        for (int i = 0; i + QK8_0 <= n; i += QK8_0) kv_quantize_q8_0(b++, src + i);
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

typedef struct {
    float *out;
    const float *q;
    const kern_kv_view *kv;
    int n_pos, n_head, n_head_kv, head_dim;
    const kern_backend *be;
} att_ctx;

static void att_task(void *arg, int h) {
    const att_ctx *c = arg;
    int group = c->n_head / c->n_head_kv;
    const float *q = c->q + (size_t)h * c->head_dim;
    float *o = c->out + (size_t)h * c->head_dim;
    c->be->attention_head(o, q, c->kv, c->n_pos, h / group, c->n_head_kv, c->head_dim);
}

void kern_attention(float *out, const float *q, const kern_kv_view *kv, int n_pos, int n_head, int n_head_kv,
                    int head_dim) {
    if (!g.inited) kern_init(0);
    if (!out || !q || !kv || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0) return;
    att_ctx c = {out, q, kv, n_pos, n_head, n_head_kv, head_dim, g.be};
    /* short contexts are cheaper on one thread than a pool wake-up */
    if ((int64_t)n_pos * head_dim * n_head < 65536) {
        for (int h = 0; h < n_head; h++) att_task(&c, h);
        return;
    }
    pool_run(att_task, &c, n_head);
}

double kern_peak_int8(double seconds, double (*now)(void)) {
    if (!g.inited) kern_init(0);
    return g.be->peak_int8(seconds, now);
}

uint64_t kern_stream_sum(const void *buf, size_t bytes) {
    if (!g.inited) kern_init(0);
    return g.be->stream_sum(buf, bytes);
}
