/* test_kv_commit.c - kv_cache_commit (model/forward.h): a worker commits its KV
 * cache at assignment so that its memory counts from then on. The regression:
 * baton-bench load on a 6-layer model saw each worker's RSS grow 20-30% after
 * the warm-up - the calloc'd cache being faulted in position by position as
 * deeper positions of more slots were reached. Here: a new cache costs (almost)
 * nothing, a committed one is resident whole, and writing every row of it
 * afterwards adds nothing; its contents are still zero. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "forward.h"

/* This process's VmRSS in KiB. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int main(void) {
    model m;
    memset(&m, 0, sizeof m);
    m.hp.n_head_kv = 4, m.hp.head_dim = 64; /* 256 values a row: 512 B in f16 */
    m.slice = (model_slice){0, 4, false, false};
    char err[256];
    long r0 = rss_kib();
    kv_cache *kv = kv_cache_new(&m, 32, 512, TENSOR_F16, err, sizeof err); /* 2 x 4 x 32 x 512 x 512 B = 64 MiB */
    CHECK(kv != NULL, "kv_cache_new: %s", err);
    if (!kv) return 1;
    long bytes_kib = (long)(kv_cache_bytes(kv) >> 10);
    CHECK(bytes_kib == 64 << 10, "cache of %ld KiB, want 64 MiB", bytes_kib);
    long r1 = rss_kib();
    /* lazy (the sanitizers' shadow of the block may be touched: less than half) */
    CHECK(r1 - r0 < bytes_kib / 2, "a new cache is not committed yet: RSS +%ld KiB", r1 - r0);
    CHECK(kv_cache_commit(kv, err, sizeof err) == 0, "kv_cache_commit: %s", err);
    long r2 = rss_kib();
    CHECK(r2 - r1 >= bytes_kib * 95 / 100, "committed: RSS +%ld KiB, want about %ld", r2 - r1, bytes_kib);
    size_t half = kv_cache_bytes(kv) / 2;
    size_t nonzero = 0;
    for (size_t i = 0; i < half; i += 97) nonzero += kv->k[i] != 0 || kv->v[i] != 0;
    CHECK(nonzero == 0, "a committed cache is still zero (%zu bytes were not)", nonzero);
    memset(kv->k, 0x5a, half); /* every position of every slot and layer, as a long run would */
    memset(kv->v, 0xa5, half);
    long r3 = rss_kib();
    CHECK(r3 - r2 < 2048, "writing the whole committed cache grew RSS by %ld KiB", r3 - r2);
    kv_cache_free(kv);
    /* a q8_0 cache (rows not a multiple of the page size) commits too */
    kv = kv_cache_new(&m, 3, 77, TENSOR_Q8_0, err, sizeof err);
    CHECK(kv && kv_cache_commit(kv, err, sizeof err) == 0, "q8_0 cache: %s", err);
    kv_cache_free(kv);
    printf("test_kv_commit: %d checks, %d failures (cache 64 MiB: RSS +%ld KiB new, +%ld committed, +%ld written)\n",
           checks, failures, r1 - r0, r2 - r1, r3 - r2);
    return failures ? 1 : 0;
}
