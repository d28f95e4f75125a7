/* test_codec.c - the activation codecs of kernels/codec.h and the hop payloads
 * of worker/hop.h.
 *
 * 1. CRC-32C check value, chaining, every level equal.
 * 2. Round trips of every codec at every level on seeded random data of odd
 *    shapes (1..5120 wide, 1..3 rows) with NaN (payloads), +-inf, subnormals,
 *    -0 and huge values: lossless codecs bit-exact; lossy ones within the bounds
 *    codec.h documents; encoded bytes and decoded floats identical at every level.
 *    Then shapes at the edges of the lz4 container's cut (sample thresholds,
 *    lengths off the vector step) and data whose planes shrink out of order.
 * 3. The same on real hidden states: a tiny model from baton-mkmodel, run
 *    forward through its first layer on a 24-token prompt.
 * 4. Fuzz: thousands of corrupted payloads (bit flips, truncation, extension,
 *    plane-table edits, wrong codec, wrong shape), each decoded into a buffer of
 *    exactly the claimed size (ASan sees any overrun): every one is rejected by
 *    the decoder or by the checksum, or decodes to exactly the original floats.
 * 5. hop.h: codec choice from the peer's mask, encode/decode through frames,
 *    and a rejected frame for each kind of damage.
 * Exits 0 when every check passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "forward.h"
#include "hop.h"
#include "model.h"
#include "ops.h"

#include "check.h"

static uint64_t rng_state = 1;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float frand(void) { return (float)((rng_next() >> 40) * (1.0 / (1u << 23))) - 1.0f; } /* [-1, 1) */

static int n_levels;
static kern_level levels[8]; /* every level of the backend table (kernels/backend.c) */

/* ------------------------------------------------------------ error bounds */

/* Whether y is within codec.h's bound of x for a lossy codec's number format.
 * blk_amax: q8's block amax bits (for q8 only). */
static bool within_bound(int codec, float x, float y, uint32_t blk_amax) {
    const int base = codec & 3;
    if (base == CODEC_Q8) {
        if (blk_amax >= 0x7F800000u) return isnan(y);
        float amax = check_float_of(blk_amax);
        if (amax < 0x1p-120f) return y == 0.0f;
        return fabsf(y - x) <= amax / 254.0f + amax * 0x1p-21f;
    }
    if (isnan(x)) return isnan(y);
    if (isinf(x)) return y == x;
    float ax = fabsf(x);
    if (base == CODEC_F16) {
        if (ax >= 65520.0f) return isinf(y) && signbit(y) == signbit(x);
        if (ax >= 0x1p-14f) return fabsf(y - x) <= ax * 0x1p-11f;
        return fabsf(y - x) <= 0x1p-25f;
    }
    /* bf16 */
    if (ax >= 0x1p-126f) return fabsf(y - x) <= ax * 0x1p-8f;
    return fabsf(y - x) <= 0x1p-134f;
}

/* ------------------------------------------------------------ round trips */

/* Encode and decode x ([rows][width]) with every codec at every level; check
 * bounds, bit-exactness where promised, and equality across levels.
 * bytes_out: encoded size per codec at the last level (may be NULL). */
static void round_trip(const char *what, const float *x, size_t rows, size_t width, size_t *bytes_out) {
    const size_t n = rows * width;
    float *y = malloc(n * sizeof(float)), *y0 = malloc(n * sizeof(float));
    char err[256];
    for (int c = 0; c < CODEC_COUNT; c++) {
        size_t cap = codec_max_encoded(c, rows, width);
        uint8_t *enc = malloc(cap), *enc0 = malloc(cap);
        size_t len0 = 0;
        for (int li = 0; li < n_levels; li++) {
            kern_set_level(levels[li]);
            size_t len = codec_encode(c, x, rows, width, enc, cap, err, sizeof err);
            CHECK(len > 0 && len <= cap, "%s %s %s %zux%zu: encode gave %zu (cap %zu): %s", what, codec_name(c),
                  kern_level_name(levels[li]), rows, width, len, cap, err);
            if (!len) continue;
            memset(y, 0xA5, n * sizeof(float));
            int rc = codec_decode(c, enc, len, y, rows, width, err, sizeof err);
            CHECK(rc == 0, "%s %s %s: decode failed: %s", what, codec_name(c), kern_level_name(levels[li]), err);
            /* frames put payloads at any offset: decode from an odd address too */
            uint8_t *odd = malloc(len + 1);
            float *y2 = malloc(n * sizeof(float));
            memcpy(odd + 1, enc, len);
            CHECK(codec_decode(c, odd + 1, len, y2, rows, width, err, sizeof err) == 0 &&
                      !memcmp(y, y2, n * sizeof(float)),
                  "%s %s %s: decoding from an odd address differs", what, codec_name(c), kern_level_name(levels[li]));
            free(odd);
            free(y2);
            if (codec_is_lossless(c)) {
                CHECK(!memcmp(x, y, n * sizeof(float)), "%s %s %s %zux%zu: not bit-exact", what, codec_name(c),
                      kern_level_name(levels[li]), rows, width);
            } else {
                size_t bad = 0, first = 0;
                for (size_t r = 0; r < rows; r++)
                    for (size_t i = 0; i < width; i++) {
                        uint32_t amax = 0;
                        size_t b0 = i / CODEC_Q8_BLOCK * CODEC_Q8_BLOCK;
                        for (size_t k = b0; k < width && k < b0 + CODEC_Q8_BLOCK; k++) {
                            uint32_t u = check_bits_of(x[r * width + k]) & 0x7FFFFFFFu;
                            if (u > amax) amax = u;
                        }
                        if (!within_bound(c, x[r * width + i], y[r * width + i], amax) && !bad++) first = r * width + i;
                    }
                CHECK(!bad, "%s %s %s %zux%zu: %zu values out of bounds, first [%zu] %g -> %g", what, codec_name(c),
                      kern_level_name(levels[li]), rows, width, bad, first, (double)x[first], (double)y[first]);
            }
            if (li == 0) {
                memcpy(enc0, enc, len);
                memcpy(y0, y, n * sizeof(float));
                len0 = len;
            } else {
                CHECK(len == len0 && !memcmp(enc, enc0, len), "%s %s: %s encodes differently from scalar", what,
                      codec_name(c), kern_level_name(levels[li]));
                CHECK(!memcmp(y, y0, n * sizeof(float)), "%s %s: %s decodes differently from scalar", what,
                      codec_name(c), kern_level_name(levels[li]));
            }
            if (bytes_out) bytes_out[c] = len;
        }
        free(enc);
        free(enc0);
    }
    kern_set_level(kern_best_level());
    free(y);
    free(y0);
}

/* Random data of one flavour: 0 plain, 1 with specials, 2 activations-like
 * (a few large channels over small values), 3 tiny magnitudes, 4 bf16 values
 * (low 16 bits 0: the low byte planes shrink, the one above is noise), 5 zeros
 * then plain values (the sample from the middle sees only half of it). */
static void fill(float *x, size_t n, int flavour) {
    static const uint32_t specials[] = {0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0x7FBFFFFFu, 0x7F800000u,
                                        0xFF800000u, 0x00000001u, 0x807FFFFFu, 0x00400000u, 0x80000000u,
                                        0x00000000u, 0x477FE000u, 0x47800000u, 0x38800000u, 0x33000000u};
    for (size_t i = 0; i < n; i++) {
        float v = frand();
        switch (flavour) {
        case 0: x[i] = v * 3.0f; break;
        case 1: x[i] = rng_next() % 7 == 0 ? check_float_of(specials[rng_next() % 15]) : v * 1e4f; break;
        case 2: x[i] = i % 97 == 5 ? v * 300.0f : v * 0.05f; break;
        case 3: x[i] = v * 1e-30f; break;
        case 4: x[i] = check_float_of(check_bits_of(v * 3.0f) & 0xFFFF0000u); break;
        default: x[i] = i < n / 2 ? 0.0f : v * 3.0f; break;
        }
    }
}

static void test_random(void) {
    static const size_t widths[] = {1, 7, 31, 32, 33, 100, 257, 1000, 5120};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
        for (size_t rows = 1; rows <= 3; rows++)
            for (int fl = 0; fl < 6; fl++) {
                size_t n = rows * widths[wi];
                float *x = malloc(n * sizeof(float));
                fill(x, n, fl);
                char what[64];
                snprintf(what, sizeof what, "random(flavour %d)", fl);
                round_trip(what, x, rows, widths[wi], NULL);
                free(x);
            }
    /* a whole all-zero row and an all-NaN block */
    float z[64] = {0};
    round_trip("zeros", z, 2, 32, NULL);
    for (int i = 0; i < 32; i++) z[i] = NAN;
    round_trip("nan block", z, 1, 64, NULL);
    printf("random round trips done (%d checks, %d failures)\n", checks, failures);
}

/* Shapes at the edges of the lz4 container's cut (kernels/codec.c): around the
 * split part sizes where the sample that picks the planes to try starts
 * (4096 values) and grows (32768), sizes that are not a multiple of 8 or of the
 * 32 values of a vector step, and data where a plane stored as is follows one
 * that lz4 shrinks (so it is not cut straight into the output). */
static void test_layout(void) {
    static const size_t shapes[][2] = {{1, 4096}, {1, 4097}, {1, 4103}, {1, 4104}, {3, 1367},  {1, 4127},
                                       {1, 32767}, {1, 32768}, {1, 32769}, {7, 4683}, {2, 16411}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int fl = 0; fl < 6; fl++) {
            const size_t rows = shapes[si][0], width = shapes[si][1], n = rows * width;
            float *x = malloc(n * sizeof(float));
            fill(x, n, fl);
            char what[64];
            snprintf(what, sizeof what, "layout(flavour %d)", fl);
            size_t bytes[CODEC_COUNT];
            round_trip(what, x, rows, width, bytes);
            /* bf16 values: the two low byte planes are zeros and must shrink */
            if (fl == 4)
                CHECK(bytes[CODEC_F32_LZ4] < n * 4 * 6 / 10, "%zux%zu bf16 values: f32+lz4 is %zu bytes of %zu", rows,
                      width, bytes[CODEC_F32_LZ4], n * 4);
            free(x);
        }
    printf("layout round trips done (%d checks, %d failures)\n", checks, failures);
}

/* ------------------------------------------------------------ real activations */

/* Hidden states after layer 0 of a tiny generated model for a 24-token prompt:
 * [24][n_embd], malloc'd; NULL on failure (a failed check). */
static float *capture_hidden(const char *dir, size_t *rows, size_t *width) {
    const char *build = getenv("BATON_BUILD");
    char cmd[1024], path[512], err[512];
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    snprintf(cmd, sizeof cmd, "'%s/tools/baton-mkmodel' --preset tiny --seed 7 -o '%s' >/dev/null",
             build ? build : ".", path);
    CHECK(system(cmd) == 0, "baton-mkmodel failed: %s", cmd);
    model_slice sl = {0, 1, true, false};
    model *m = model_load(path, &sl, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (!m) return NULL;
    enum { T = 24 };
    kv_cache *kv = kv_cache_new(m, 1, 64, TENSOR_F16, err, sizeof err);
    fwd_ctx *ctx = fwd_ctx_new(m, T);
    float *h = malloc(T * m->hp.n_embd * sizeof(float));
    int32_t tok[T], slot[T], pos[T];
    for (int i = 0; i < T; i++) tok[i] = (int32_t)((i * 37 + 11) % m->hp.n_vocab), slot[i] = 0, pos[i] = i;
    fwd_batch b = {.n = T, .tokens = tok, .slot = slot, .pos = pos};
    int rc = kv && ctx && h ? forward_run(ctx, kv, &b, h, NULL, err, sizeof err) : -1;
    CHECK(rc == 0, "forward_run: %s", err);
    *rows = T, *width = m->hp.n_embd;
    fwd_ctx_free(ctx);
    kv_cache_free(kv);
    model_free(m);
    unlink(path);
    if (rc) free(h), h = NULL;
    return h;
}

static void test_real(const float *h, size_t rows, size_t width) {
    size_t bytes[CODEC_COUNT] = {0};
    round_trip("activations", h, rows, width, bytes);
    round_trip("activations (1 token)", h, 1, width, NULL);
    printf("real activations (%zu x %zu after layer 0 of a tiny model), bytes vs f32:", rows, width);
    for (int c = 0; c < CODEC_COUNT; c++) printf(" %s %.3f", codec_name(c), (double)bytes[c] / (double)bytes[0]);
    printf("\n");
    CHECK(bytes[CODEC_Q8_LZ4] < bytes[CODEC_F32] * 3 / 10, "q8+lz4 is %zu bytes, not under 30%% of %zu",
          bytes[CODEC_Q8_LZ4], bytes[CODEC_F32]);
    CHECK(bytes[CODEC_F32_LZ4] <= bytes[CODEC_F32] + 16, "f32+lz4 grows the payload: %zu", bytes[CODEC_F32_LZ4]);
}

/* ------------------------------------------------------------ fuzz */

/* Decode a corrupted payload with a buffer of exactly the claimed size and
 * classify: 1 rejected (decoder or checksum), 0 decoded the original exactly,
 * -1 accepted something else (a failure). */
static int judge(int codec, const uint8_t *p, size_t len, size_t rows, size_t width, uint32_t crc,
                 const float *orig, size_t orig_n) {
    uint8_t *copy = malloc(len + 1); /* at an odd address, ending where the payload does */
    memcpy(copy + 1, p, len);
    float *y = malloc(rows * width * sizeof(float));
    char err[256];
    int rc = codec_decode(codec, copy + 1, len, y, rows, width, err, sizeof err);
    int verdict = 1;
    if (rc == 0) {
        size_t n = rows * width;
        bool same = n == orig_n && !memcmp(y, orig, n * sizeof(float));
        if (!same && codec_crc32c(0, y, n * sizeof(float)) == crc) verdict = -1;
        else verdict = same ? 0 : 1;
    } else {
        CHECK(err[0] != 0 && strlen(err) < sizeof err - 1, "a rejection without a message");
    }
    free(copy);
    free(y);
    return verdict;
}

static void test_fuzz(const float *h, size_t rows, size_t width) {
    int rejected = 0, harmless = 0, cases = 0;
    char err[256];
    for (int c = 0; c < CODEC_COUNT; c++) {
        size_t cap = codec_max_encoded(c, rows, width);
        uint8_t *enc = malloc(cap + 64), *bad = malloc(cap + 64);
        size_t len = codec_encode(c, h, rows, width, enc, cap, err, sizeof err);
        float *ref = malloc(rows * width * sizeof(float));
        codec_decode(c, enc, len, ref, rows, width, err, sizeof err);
        const uint32_t crc = codec_crc32c(0, ref, rows * width * sizeof(float));
        for (int it = 0; it < 600; it++) {
            memcpy(bad, enc, len);
            size_t blen = len, brows = rows, bwidth = width;
            int bcodec = c;
            switch (it % 6) {
            case 0: /* 1..8 bit flips */
            case 1:
                for (int k = 0, nf = 1 + (int)(rng_next() % 8); k < nf; k++)
                    bad[rng_next() % blen] ^= (uint8_t)(1u << (rng_next() % 8));
                break;
            case 2: blen = rng_next() % len; break; /* truncation */
            case 3: /* extension */
                for (size_t k = 0, ne = 1 + rng_next() % 64; k < ne; k++) bad[blen++] = (uint8_t)rng_next();
                break;
            case 4: /* plane table or first bytes: a random 32-bit value at a 4-byte slot */
            {
                size_t at = 4 * (rng_next() % 6);
                if (at + 4 <= blen) {
                    uint32_t v = it % 12 == 4 ? (uint32_t)rng_next() : (uint32_t)(rng_next() % (2 * len + 1));
                    memcpy(bad + at, &v, 4);
                } else {
                    bad[0] ^= 0x80;
                }
                break;
            }
            default: /* wrong codec or shape */
                switch (rng_next() % 4) {
                case 0: bcodec = (int)(rng_next() % 40) - 8; break;
                case 1: brows = rows + 1 + rng_next() % 3; break;
                case 2: bwidth = width - 1 - rng_next() % 8; break;
                default: bcodec = (c + 1 + (int)(rng_next() % (CODEC_COUNT - 1))) % CODEC_COUNT; break;
                }
            }
            if (blen == len && bcodec == c && brows == rows && bwidth == width && !memcmp(bad, enc, len)) continue;
            int v = judge(bcodec, bad, blen, brows, bwidth, crc, ref, rows * width);
            cases++;
            CHECK(v >= 0, "%s case %d (kind %d): corrupted payload accepted with a matching checksum", codec_name(c),
                  it, it % 6);
            rejected += v == 1, harmless += v == 0;
        }
        free(ref);
        free(enc);
        free(bad);
    }
    printf("fuzz: %d corrupted payloads, %d rejected, %d decoded to the original floats\n", cases, rejected,
           harmless);
    CHECK(cases >= 4000, "only %d fuzz cases ran", cases);
}

/* ------------------------------------------------------------ hop */

static void test_hop(const float *h, size_t rows, size_t width) {
    CHECK(hop_pick_codec(CODEC_Q8, 0xFF) == CODEC_Q8, "a codec the peer decodes is used");
    CHECK(hop_pick_codec(CODEC_Q8, 0x11) == CODEC_F32_LZ4, "else the lossless default");
    CHECK(hop_pick_codec(CODEC_Q8, 0x01) == CODEC_F32, "else f32");
    CHECK(hop_pick_codec(40, 0xFF) == CODEC_F32_LZ4, "an unknown wish falls back");
    CHECK(codec_from_name("q8+lz4") == CODEC_Q8_LZ4 && codec_from_name("f16-lz4") == CODEC_F16_LZ4 &&
              codec_from_name("nope") < 0 && codec_from_name("f32+lz4+") < 0,
          "codec names");
    char err[256];
    const size_t bytes = rows * width * sizeof(float);
    for (int c = 0; c < CODEC_COUNT; c++) {
        Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
        f.token_count = (uint32_t)rows, f.width = (uint32_t)width;
        hop_payload p;
        CHECK(hop_encode(&f, c, h, bytes, &p, err, sizeof err) == 0, "hop_encode %s: %s", codec_name(c), err);
        CHECK(f.codec == (Baton__Codec)c && f.raw_size == bytes, "frame fields for %s", codec_name(c));
        float *y;
        size_t ylen;
        CHECK(hop_decode(&f, p.data, p.len, &y, &ylen, err, sizeof err) == 0 && ylen == bytes,
              "hop_decode %s: %s", codec_name(c), err);
        if (codec_is_lossless(c)) CHECK(!memcmp(y, h, bytes), "hop %s is not bit-exact", codec_name(c));
        free(y);
        /* each kind of damage is rejected with a message */
        uint8_t *bad = malloc(p.len);
        memcpy(bad, p.data, p.len);
        bad[p.len / 2] ^= 0x5A;
        CHECK(hop_decode(&f, bad, p.len, &y, &ylen, err, sizeof err) < 0 && strlen(err) > 0,
              "%s: a flipped byte passed", codec_name(c));
        CHECK(hop_decode(&f, p.data, p.len - 1, &y, &ylen, err, sizeof err) < 0, "%s: a short payload passed",
              codec_name(c));
        Baton__StageFrame g = f;
        g.crc32c ^= 1;
        CHECK(hop_decode(&g, p.data, p.len, &y, &ylen, err, sizeof err) < 0 && strstr(err, "crc32c"),
              "%s: a wrong checksum passed", codec_name(c));
        g = f, g.codec = (Baton__Codec)13;
        CHECK(hop_decode(&g, p.data, p.len, &y, &ylen, err, sizeof err) < 0 && strstr(err, "unknown codec"),
              "%s: an unknown codec passed", codec_name(c));
        g = f, g.raw_size += 4;
        CHECK(hop_decode(&g, p.data, p.len, &y, &ylen, err, sizeof err) < 0, "%s: a wrong raw size passed",
              codec_name(c));
        g = f, g.token_count = 1u << 31, g.raw_size = (uint64_t)g.token_count * width * 4;
        CHECK(hop_decode(&g, p.data, p.len, &y, &ylen, err, sizeof err) < 0, "%s: a huge claimed size passed",
              codec_name(c));
        free(bad);
        hop_payload_free(&p);
    }
    Baton__StageFrame e = BATON__STAGE_FRAME__INIT;
    float *y = (float *)1;
    size_t ylen = 1;
    CHECK(hop_decode(&e, NULL, 0, &y, &ylen, err, sizeof err) == 0 && !y && !ylen, "an empty payload is no data");
    printf("hop done (%d checks, %d failures)\n", checks, failures);
}

int main(void) {
    if (kern_init(1)) return 1;
    for (int l = 0; l <= (int)kern_best_level(); l++) levels[n_levels++] = (kern_level)l;
    printf("levels tested:");
    for (int i = 0; i < n_levels; i++) printf(" %s", kern_level_name(levels[i]));
    printf("\n");

    /* 1. CRC-32C */
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng_next();
    uint32_t c0 = 0;
    for (int li = 0; li < n_levels; li++) {
        kern_set_level(levels[li]);
        CHECK(codec_crc32c(0, "123456789", 9) == 0xE3069283u, "%s: crc32c check value %08x",
              kern_level_name(levels[li]), codec_crc32c(0, "123456789", 9));
        CHECK(codec_crc32c(codec_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c does not chain");
        uint32_t c = codec_crc32c(0, buf + 3, 997);
        if (li == 0) c0 = c;
        CHECK(c == c0, "%s: crc32c differs from scalar", kern_level_name(levels[li]));
    }

    test_random();
    test_layout();
    char dir[] = "/tmp/test_codec.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    size_t rows = 0, width = 0;
    float *h = capture_hidden(dir, &rows, &width);
    rmdir(dir);
    if (h) {
        test_real(h, rows, width);
        test_fuzz(h, 3, width);
        test_hop(h, rows, width);
    }
    free(h);
    kern_shutdown();
    if (failures) {
        printf("test_codec: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_codec: all %d checks passed\n", checks);
    return 0;
}
