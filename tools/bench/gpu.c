/* gpu.c - baton-bench gpu: the Vulkan backend (kernels/vulkan) against limits
 * measured on the same device in the same run.
 *
 *  - bandwidth: a copy kernel over two buffers of --mib MiB (bytes read plus
 *    bytes written per second, the best of 5);
 *  - int32 multiply-add peak (gpu_peak_int: what the quantized matmul's block
 *    sums run on), ops per second, the best of 3;
 *  - decode: one token through a generated `--preset qwq-32b --layers N`
 *    model (default 4 layers, as `baton-bench decode`) at position 64 after a
 *    64-token prefill; weight bytes per token / time as a fraction of the
 *    bandwidth;
 *  - prefill: 64 tokens in one batch; 2 x multiply-adds / time as a fraction
 *    of the int32 peak.
 * One row per --type (default q8_0,q4_k_m). Options: --device N, --layers N,
 * --type LIST, --mib N, --json.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "forward.h"
#include "gpu.h"

#define GB_PREFILL 64

static double gb_bandwidth(gpu_dev *d, size_t mib) {
    char err[256];
    size_t bytes = mib << 20;
    gpu_buf *a = gpu_buf_new(d, bytes, err, sizeof err), *b = gpu_buf_new(d, bytes, err, sizeof err);
    double best = 0;
    if (a && b && !gpu_copy(d, b, a, bytes) && !gpu_sync(d)) /* first touch */
        for (int i = 0; i < 5; i++) {
            double t0 = clock_s();
            if (gpu_copy(d, b, a, bytes) || gpu_sync(d)) break;
            double gbs = 2.0 * (double)bytes / (clock_s() - t0) / 1e9;
            if (gbs > best) best = gbs;
        }
    gpu_buf_free(a), gpu_buf_free(b);
    return best;
}

static double gb_peak(gpu_dev *d) {
    char err[256];
    const uint32_t groups = 1024;
    gpu_buf *o = gpu_buf_new(d, (size_t)groups * 256 * 4, err, sizeof err);
    double best = 0;
    if (o && !gpu_peak_int(d, o, groups) && !gpu_sync(d))
        for (int i = 0; i < 3; i++) {
            double t0 = clock_s();
            if (gpu_peak_int(d, o, groups) || gpu_sync(d)) break;
            double ops = (double)groups * 256 * 8 * 256 * 2 / (clock_s() - t0);
            if (ops > best) best = ops;
        }
    gpu_buf_free(o);
    return best;
}

typedef struct {
    double bytes, macs;         /* per token, the layer matrices */
    double decode_s, prefill_s; /* one token; GB_PREFILL tokens */
} gb_result;

static int gb_run_model(const char *path, gb_result *r, char *err, size_t errlen) {
    model *m = model_load(path, NULL, err, errlen);
    if (!m) return -1;
    int rc = -1;
    kv_cache *kv = kv_cache_new(m, 1, 2 * GB_PREFILL + 4, TENSOR_F16, err, errlen);
    fwd_ctx *c = kv ? fwd_ctx_new_err(m, GB_PREFILL, err, errlen) : NULL;
    float *h = calloc((size_t)GB_PREFILL * m->hp.n_embd, sizeof(float));
    float *lg = malloc((size_t)GB_PREFILL * m->hp.n_vocab * sizeof(float));
    memset(r, 0, sizeof *r);
    for (int il = 0; il < m->slice.layer_end - m->slice.layer_begin; il++) {
        const model_layer *L = &m->layers[il];
        const kern_matrix *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) {
            r->macs += (double)mats[i]->rows * (double)mats[i]->cols;
            r->bytes += (double)tensor_row_bytes(mats[i]->type, mats[i]->cols) * (double)mats[i]->rows;
        }
    }
    if (c && h && lg && !forward_prepare(c, kv, err, errlen)) {
        int32_t tok[GB_PREFILL], slot[GB_PREFILL], pos[GB_PREFILL];
        uint8_t want[GB_PREFILL] = {0};
        for (int i = 0; i < GB_PREFILL; i++) tok[i] = (i * 37) % (int)m->hp.n_vocab, slot[i] = 0, pos[i] = i;
        fwd_batch b = {.n = GB_PREFILL, .tokens = tok, .slot = slot, .pos = pos, .logits = want};
        double t0 = clock_s();
        if (forward_run(c, kv, &b, h, lg, err, errlen) >= 0) {
            r->prefill_s = clock_s() - t0;
            double best = 0;
            for (int k = 0; k < 3; k++) {
                int32_t p = GB_PREFILL + k;
                fwd_batch one = {.n = 1, .tokens = tok, .slot = slot, .pos = &p, .logits = want};
                t0 = clock_s();
                if (forward_run(c, kv, &one, h, lg, err, errlen) < 0) break;
                double dt = clock_s() - t0;
                if (best == 0 || dt < best) best = dt;
            }
            r->decode_s = best;
            rc = best > 0 ? 0 : -1;
        }
    }
    free(h), free(lg);
    fwd_ctx_free(c);
    kv_cache_free(kv);
    model_free(m);
    return rc;
}

static int bench_gpu(int argc, char **argv) {
    int index = 0, layers = 4, mib = 256;
    const char *types = "q8_0,q4_k_m";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "baton-bench gpu: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--device")) {
            if (bench_int_opt("gpu", "--device", v, 0, 255, &index)) return 2;
        } else if (!strcmp(argv[i - 1], "--layers")) {
            if (bench_int_opt("gpu", "--layers", v, 1, 64, &layers)) return 2;
        } else if (!strcmp(argv[i - 1], "--mib")) {
            if (bench_int_opt("gpu", "--mib", v, 1, 16384, &mib)) return 2;
        } else if (!strcmp(argv[i - 1], "--type")) {
            types = v;
        } else {
            fprintf(stderr, "baton-bench gpu: unknown option '%s'\n", argv[i - 1]);
            return 2;
        }
    }
    const bool json = bench_want_json(argc, argv);
    char err[512];
    gpu_dev *d = gpu_open(index, err, sizeof err);
    if (!d) {
        fprintf(stderr, "baton-bench gpu: nothing measured: %s\n", err);
        return 1;
    }
    forward_set_device(d);
    if ((uint64_t)mib << 20 > gpu_max_buffer(d)) mib = (int)(gpu_max_buffer(d) >> 20); /* lavapipe: 128 */
    double bw = gb_bandwidth(d, (size_t)mib), peak = gb_peak(d);
    if (json)
        printf("{\"device\":\"%s\",\"soft_fma\":%d,\"bandwidth_gbs\":%.3f,\"int32_peak_gops\":%.3f,\"models\":[",
               gpu_name(d), gpu_soft_fma(d), bw, peak / 1e9);
    else
        printf("device %s%s\ncopy bandwidth %.2f GB/s (read + write, %d MiB buffers), int32 multiply-add peak %.1f "
               "Gop/s\n%-8s %6s %10s %10s %8s %12s %10s %8s\n",
               gpu_name(d), gpu_soft_fma(d) ? " (fma emulated)" : "", bw, mib, peak / 1e9, "type", "layers",
               "MB/token", "decode ms", "GB/s", "of bandwidth", "prefill", "of peak");
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    int rc = 0, first = 1;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char path[512];
        gb_result r;
        if (bench_qwq_model("gpu", t, layers, path, sizeof path) || gb_run_model(path, &r, err, sizeof err)) {
            fprintf(stderr, "baton-bench gpu: %s: %s\n", t, err);
            rc = 1;
            continue;
        }
        double gbs = r.bytes / r.decode_s / 1e9, ops = 2.0 * r.macs * GB_PREFILL / r.prefill_s;
        if (json)
            printf("%s{\"type\":\"%s\",\"layers\":%d,\"bytes_per_token\":%.0f,\"decode_ms\":%.3f,\"decode_gbs\":%.3f,"
                   "\"decode_of_bandwidth\":%.4f,\"prefill_tokens\":%d,\"prefill_ms\":%.3f,\"prefill_gops\":%.3f,"
                   "\"prefill_of_peak\":%.4f}",
                   first ? "" : ",", t, layers, r.bytes, r.decode_s * 1e3, gbs, bw > 0 ? gbs / bw : 0, GB_PREFILL,
                   r.prefill_s * 1e3, ops / 1e9, peak > 0 ? ops / peak : 0);
        else
            printf("%-8s %6d %10.1f %10.2f %8.3f %12.3f %7.1f G/s %8.3f\n", t, layers, r.bytes / 1e6, r.decode_s * 1e3,
                   gbs, bw > 0 ? gbs / bw : 0, ops / 1e9, peak > 0 ? ops / peak : 0);
        first = 0;
    }
    if (json) printf("]}\n");
    forward_set_device(NULL);
    gpu_close(d);
    return rc;
}

BENCH_REGISTER(gpu, "Vulkan GPU: copy bandwidth, decode GB/s and prefill ops vs the device's measured limits",
               "[--device N] [--layers N] [--type q8_0,q4_k_m] [--mib N]", bench_gpu)
