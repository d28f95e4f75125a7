/* backend.c - which kernel levels exist and which of them this CPU runs: the
 * CPU detection (cpuid and xgetbv) and the table of backends, lowest level
 * first, each with the CPU features it needs (ops_internal.h: kern_backend).
 *
 * A level's index in the table is its kern_level. The best level of a CPU is
 * the last one before the first whose features it lacks, so every level up to
 * the best one runs. Each level's NULL entries are filled once, here, from the
 * level below, so the dispatch in ops.c never tests for them.
 *
 * Adding a level: a new file under cpu/ that defines `const kern_backend
 * kern_backend_<name>` with only the operations it does better (NULL for the
 * rest, and a mm_rows that returns NULL for the matmuls it leaves to the level
 * below), then its row in the table below (and its extern above the table). A
 * CPU feature not yet detected is one more bit in cpu_detect. Nothing in ops.c
 * changes.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ops_internal.h"

/* ------------------------------------------------------------ CPU detection */

enum {
    CPU_AVX = 1u << 0,
    CPU_AVX2 = 1u << 1,
    CPU_FMA = 1u << 2,
    CPU_F16C = 1u << 3,
    CPU_AVX512F = 1u << 4,
    CPU_AVX512BW = 1u << 5,
    CPU_AVX512VL = 1u << 6,
    CPU_AVX512DQ = 1u << 7,
    CPU_AVX512VNNI = 1u << 8,
    CPU_AVX512BF16 = 1u << 9,
    CPU_AMX_TILE = 1u << 10,
    CPU_AMX_INT8 = 1u << 11,
};

/* kern_cpu_features' names, in its order. */
static const struct {
    uint32_t bit;
    const char *name;
} feature_names[] = {
    {CPU_AVX, "avx"},
    {CPU_AVX2, "avx2"},
    {CPU_FMA, "fma"},
    {CPU_F16C, "f16c"},
    {CPU_AVX512F, "avx512f"},
    {CPU_AVX512BW, "avx512bw"},
    {CPU_AVX512VL, "avx512vl"},
    {CPU_AVX512DQ, "avx512dq"},
    {CPU_AVX512VNNI, "avx512vnni"},
    {CPU_AVX512BF16, "avx512bf16"},
    {CPU_AMX_TILE, "amx-tile"},
    {CPU_AMX_INT8, "amx-int8"},
};

/* Linux: ask once per process for the AMX tile data state (ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA); without it the first tile instruction faults. 0 or -1. */
static int amx_request_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

/* XCR0: which register states the OS saves (bit 1 SSE, 2 AVX, 5-7 AVX-512). */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* The CPU_* features this CPU has and the OS saves the registers of. */
static uint32_t cpu_detect(void) {
    uint32_t a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
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
    int amx = (d7 >> 24) & 1, amx_int8 = (d7 >> 25) & 1;
    int tmm_os = (xcr0 & 0x60000) == 0x60000; /* XTILECFG, XTILEDATA */
    uint32_t m = 0;
    if (ymm_os) m |= (avx ? CPU_AVX : 0) | (avx2 ? CPU_AVX2 : 0) | (fma ? CPU_FMA : 0) | (f16c ? CPU_F16C : 0);
    if (zmm_os)
        m |= (f ? CPU_AVX512F : 0) | (bw ? CPU_AVX512BW : 0) | (vl ? CPU_AVX512VL : 0) | (dq ? CPU_AVX512DQ : 0) |
             (vnni ? CPU_AVX512VNNI : 0) | (bf16 ? CPU_AVX512BF16 : 0);
    if (amx && amx_int8 && tmm_os && amx_request_permission() == 0) m |= CPU_AMX_TILE | CPU_AMX_INT8;
    return m;
}

/* ------------------------------------------------------------ the table */

#define NEEDS_AVX2 (CPU_AVX | CPU_AVX2 | CPU_FMA | CPU_F16C)
/* The AVX-512 kernels use VNNI for every integer dot: it is required. */
#define NEEDS_AVX512 (NEEDS_AVX2 | CPU_AVX512F | CPU_AVX512BW | CPU_AVX512VL | CPU_AVX512DQ | CPU_AVX512VNNI)

/* AMX: the tiles and their int8 products; the AVX-512 level underneath (every job
 * AMX leaves runs there). BATON_AMX_EMULATE (not "0") at the first use of the
 * kernels makes the level available without AMX, on its plain-C tile emulator
 * (cpu/gemm_amx.c; for tests). */
#define NEEDS_AMX (NEEDS_AVX512 | CPU_AMX_TILE | CPU_AMX_INT8)

extern const kern_backend kern_backend_avx2, kern_backend_avx512, kern_backend_amx;

/* The levels, lowest first; their order is the kern_level enum's (ops.h). */
static const struct {
    const kern_backend *be;
    uint32_t needs; /* CPU_* features, all of them */
} table[] = {
    {&kern_backend_scalar, 0},
    {&kern_backend_avx2, NEEDS_AVX2},     /* cpu/ops_avx2.c */
    {&kern_backend_avx512, NEEDS_AVX512}, /* cpu/ops_avx512.c */
    {&kern_backend_amx, NEEDS_AMX},       /* cpu/gemm_amx.c */
};
#define N_LEVELS ((int)(sizeof table / sizeof table[0]))

static struct {
    pthread_once_t once;
    uint32_t features;
    int best;
    char feature_text[256];
    kern_backend level[N_LEVELS]; /* table[l].be, NULL entries filled from level[l - 1] */
} bk = {.once = PTHREAD_ONCE_INIT};

#define FILL(op) \
    if (!r->op) r->op = below->op
/* Detect the CPU, choose the best level and fill every level's NULL entries. */
static void backends_init(void) {
    bk.features = cpu_detect();
    for (size_t i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++) {
        if (!(bk.features & feature_names[i].bit)) continue;
        size_t len = strlen(bk.feature_text);
        snprintf(bk.feature_text + len, sizeof bk.feature_text - len, "%s%s", len ? " " : "", feature_names[i].name);
    }
    uint32_t have = bk.features;
    const char *emu = getenv("BATON_AMX_EMULATE");
    if (emu && *emu && strcmp(emu, "0")) have |= CPU_AMX_TILE | CPU_AMX_INT8; /* the emulator's tiles */
    for (int l = 1; l < N_LEVELS && (have & table[l].needs) == table[l].needs; l++) bk.best = l;
    bk.level[0] = *table[0].be; /* complete by rule */
    for (int l = 1; l < N_LEVELS; l++) {
        kern_backend *r = &bk.level[l];
        const kern_backend *below = &bk.level[l - 1];
        *r = *table[l].be;
        FILL(pack);
        FILL(mm_rows);
        FILL(dot16);
        FILL(quantize_x32);
        FILL(quantize_x256);
        FILL(rmsnorm);
        FILL(swiglu);
        FILL(add);
        FILL(attention_head);
        FILL(peak_int8);
        FILL(stream_sum);
        FILL(codec);
    }
}
#undef FILL

int kern_backend_count(void) { return N_LEVELS; }

int kern_amx_real(void) {
    pthread_once(&bk.once, backends_init);
    return (bk.features & NEEDS_AMX) == NEEDS_AMX;
}

const kern_backend *kern_backend_at(int level) {
    if (level < 0 || level >= N_LEVELS) return NULL;
    pthread_once(&bk.once, backends_init);
    return &bk.level[level];
}

kern_level kern_best_level(void) {
    pthread_once(&bk.once, backends_init);
    return (kern_level)bk.best;
}

const char *kern_level_name(kern_level level) {
    return (unsigned)level < (unsigned)N_LEVELS ? table[level].be->name : "unknown";
}

const char *kern_cpu_features(void) {
    pthread_once(&bk.once, backends_init);
    return bk.feature_text;
}
