/* test_kernels_backend.c - the table of kernel backends (kernels/backend.c):
 * every level compiled in has every entry once the NULL ones are filled from
 * below, its name is kern_level_name's, and each level's mm_rows routes the
 * matmul jobs to the kernels it did before the table (the bits are
 * test_kernels' business; this is which kernel runs, i.e. the speed). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops_internal.h"

/* A job on a matrix of `type` (no data: mm_rows only reads the header). */
static kern_mm_job job(kern_matrix *w, uint32_t type, int n_tokens, kern_precision prec) {
    *w = (kern_matrix){.type = type, .rows = 64, .cols = 256};
    return (kern_mm_job){.w = w, .n_tokens = n_tokens, .prec = prec};
}

/* The kernel level l runs j with (what ops.c's mm_rows_for does). */
static kern_rows_fn rows_at(int l, const kern_mm_job *j) {
    kern_rows_fn r = NULL;
    for (; l >= 0 && !r; l--) r = kern_backend_at(l)->mm_rows(j);
    return r;
}

static int level_named(const char *name) {
    for (int l = 0; l < kern_backend_count(); l++)
        if (!strcmp(kern_level_name((kern_level)l), name)) return l;
    return -1;
}

static void test_complete(void) {
    const int n = kern_backend_count();
    CHECK(n >= 1 && kern_backend_at(-1) == NULL && kern_backend_at(n) == NULL, "levels 0 .. %d only", n - 1);
    CHECK((int)kern_best_level() < n, "best level %d of %d", (int)kern_best_level(), n);
    CHECK(!strcmp(kern_level_name((kern_level)n), "unknown"), "level %d has no name", n);
    for (int l = 0; l < n; l++) {
        const kern_backend *b = kern_backend_at(l);
        CHECK(b && b->name && !strcmp(b->name, kern_level_name((kern_level)l)), "level %d: name", l);
        if (!b) continue;
        CHECK(b->pack && b->mm_rows && b->dot16 && b->quantize_x32 && b->quantize_x256 && b->rmsnorm && b->swiglu &&
                  b->add && b->attention_head && b->peak_int8 && b->stream_sum && b->codec,
              "level %s: an entry left NULL after filling from below", b->name);
        for (int k = 0; k < l; k++)
            CHECK(strcmp(b->name, kern_backend_at(k)->name), "levels %d and %d share the name %s", k, l, b->name);
    }
    CHECK(!memcmp(kern_backend_at(0), &kern_backend_scalar, sizeof kern_backend_scalar),
          "level 0 is the scalar backend as defined");
    int a2 = level_named("avx2"), a5 = level_named("avx512");
    if (a2 >= 0 && a5 >= 0)
        CHECK(kern_backend_at(a5)->dot16 == kern_backend_at(a2)->dot16 &&
                  kern_backend_at(a5)->codec == kern_backend_at(a2)->codec,
              "avx512 leaves dot16 and codec to avx2");
}

static void test_routing(void) {
    const int best = (int)kern_best_level();
    kern_matrix w;
    kern_pack_header h = {KERN_PACK_MAGIC, 0, TENSOR_Q8_0, 0};
    for (int l = 0; l <= best; l++) { /* every job has a kernel at every level */
        static const uint32_t types[] = {TENSOR_F32, TENSOR_F16, TENSOR_BF16, TENSOR_Q8_0,
                                         TENSOR_Q4_0, TENSOR_Q4_K, TENSOR_Q6_K};
        static const int tokens[] = {1, 7, 8, 15, 16, 64};
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (size_t n = 0; n < sizeof tokens / sizeof tokens[0]; n++)
                for (int p = 0; p < 2; p++) {
                    kern_mm_job j = job(&w, types[t], tokens[n], (kern_precision)p);
                    CHECK(rows_at(l, &j) != NULL, "level %d: no kernel for type %u", l, types[t]);
                }
    }
    kern_mm_job j;
    int a2 = level_named("avx2"), a5 = level_named("avx512");
    if (a2 >= 0 && a2 <= best) {
        j = job(&w, TENSOR_Q4_0, KERN_AVX2_Q4_MANY, KERN_FAST);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2_q4_0, "avx2: many-token Q4_0 in lane = row tiles");
        j = job(&w, TENSOR_Q4_0, KERN_AVX2_Q4_MANY - 1, KERN_FAST);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2, "avx2: few-token Q4_0 row-wise");
        j = job(&w, TENSOR_Q4_K, KERN_AVX2_Q4K_MANY, KERN_FAST);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2_q4_k, "avx2: many-token Q4_K");
        j = job(&w, TENSOR_Q6_K, KERN_AVX2_Q6K_MANY, KERN_FAST);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2_q6_k, "avx2: many-token Q6_K");
        j = job(&w, TENSOR_Q6_K, KERN_AVX2_Q6K_MANY, KERN_EXACT);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2, "avx2: EXACT row-wise");
        j = job(&w, TENSOR_Q8_0, 1, KERN_FAST);
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2, "avx2: unpacked Q8_0 row-wise");
        h.level = KERN_AVX2, w.packed = &h, w.packed_bytes = sizeof h;
        CHECK(rows_at(a2, &j) == kern_mm_rows_avx2_packed, "avx2: packed Q8_0 in its tiles");
    }
    if (a5 >= 0 && a5 <= best) {
        j = job(&w, TENSOR_Q8_0, 1, KERN_FAST);
        CHECK(rows_at(a5, &j) == kern_mm_rows_scalar, "avx512: unpacked Q8_0 in the scalar loop");
        h.level = KERN_AVX2, w.packed = &h, w.packed_bytes = sizeof h;
        CHECK(rows_at(a5, &j) == kern_mm_rows_scalar, "avx512: Q8_0 packed for avx2 in the scalar loop");
        h.level = KERN_AVX512;
        CHECK(rows_at(a5, &j) == kern_mm_rows_avx512, "avx512: packed Q8_0 in its tiles");
        j = job(&w, TENSOR_F16, 16, KERN_FAST);
        CHECK(rows_at(a5, &j) == kern_mm_rows_avx512, "avx512: F16 float dots");
        j = job(&w, TENSOR_Q4_K, 16, KERN_EXACT);
        CHECK(rows_at(a5, &j) == kern_mm_rows_avx512, "avx512: EXACT float dots");
    }
}

int main(void) {
    printf("test_kernels_backend: levels");
    for (int l = 0; l < kern_backend_count(); l++) printf(" %s", kern_level_name((kern_level)l));
    printf("; this CPU runs up to %s\n", kern_level_name(kern_best_level()));
    test_complete();
    test_routing();
    printf("test_kernels_backend: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
