/* test_quant.c - the tensor number formats of kernels/quant.h.
 *
 * 1. The type table and row sizes, including ragged and bad inputs.
 * 2. fp16/bf16 conversions against known bit patterns, every fp16 value, and a
 *    nearest-even check on random floats.
 * 3. Hand-built blocks of every type: the bytes are written here, and every
 *    dequantized value is compared with a value computed here from the GGUF
 *    formulas (per-element index arithmetic, independent of quant.c's loops).
 * 4. Seeded random round trips (several distributions, outliers, all-zero
 *    blocks; 1, 3, 7 and 33 blocks) within quant_error_bound() * max +
 *    quant_error_floor(), at magnitudes from 2e4 to 1e-9, plus re-quantization
 *    stability for Q8_0 and Q4_0 and exact encodings of hand-picked blocks.
 * 5. Non-finite, tiny, huge and unaligned inputs: no crash, finite scales.
 * Exits 0 when every check passes. */
#include "quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ------------------------------------------------------------ utilities */

static uint64_t rng_state;

/* splitmix64: a small deterministic generator. */
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static double rng_unit(void) {
    return (double)(rng_next() >> 11) * 0x1p-53;
}

static double rng_gauss(void) {
    double u = rng_unit(), v = rng_unit();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* ------------------------------------------------------------ 1. table */

static void test_table(void) {
    static const struct {
        uint32_t type;
        const char *name;
        uint32_t elems, bytes;
    } want[] = {
        {0, "f32", 1, 4},        {1, "f16", 1, 2},        {2, "q4_0", 32, 18}, {8, "q8_0", 32, 34},
        {12, "q4_K", 256, 144}, {14, "q6_K", 256, 210}, {30, "bf16", 1, 2},
        {3, "q4_1", 32, 20},     {6, "q5_0", 32, 22},     {7, "q5_1", 32, 24},  {20, "iq4_nl", 32, 18},
        {23, "iq4_xs", 256, 136},
        {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110}, {13, "q5_K", 256, 176},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const tensor_type_info *t = tensor_type_get(want[i].type);
        CHECK(t != NULL, "type %u missing", want[i].type);
        if (!t) continue;
        CHECK(t->type == want[i].type && strcmp(t->name, want[i].name) == 0 && t->block_elems == want[i].elems &&
                  t->block_bytes == want[i].bytes,
              "row of type %u: %s %u %u", want[i].type, t->name, t->block_elems, t->block_bytes);
        CHECK(tensor_type_from_name(want[i].name) == (int)want[i].type, "from_name(%s)", want[i].name);
        CHECK(tensor_row_bytes(want[i].type, (int64_t)want[i].elems * 7) == (size_t)want[i].bytes * 7,
              "row bytes of 7 blocks of %s", want[i].name);
        if (want[i].elems > 1) {
            CHECK(tensor_row_bytes(want[i].type, want[i].elems + 1) == 0, "ragged row of %s", want[i].name);
            CHECK(tensor_row_bytes(want[i].type, want[i].elems / 2) == 0, "half block of %s", want[i].name);
        }
        CHECK(tensor_row_bytes(want[i].type, 0) == 0, "n=0 of %s", want[i].name);
        CHECK(tensor_row_bytes(want[i].type, -(int64_t)want[i].elems) == 0, "negative n of %s", want[i].name);
        CHECK(tensor_row_bytes(want[i].type, (int64_t)want[i].elems << 40) == ((size_t)want[i].bytes << 40),
              "2^40 blocks of %s", want[i].name);
        double max_bound = want[i].type == 10 ? 0.6 : want[i].type == 11 ? 0.3 : 0.2; /* 2 and 3 bits */
        CHECK(quant_error_bound(want[i].type) >= 0.0 && quant_error_bound(want[i].type) < max_bound &&
                  quant_error_floor(want[i].type) >= 0.0 && quant_error_floor(want[i].type) < 1e-5,
              "error bound of %s", want[i].name);
    }
    CHECK(tensor_type_from_name("Q4_k") == 12 && tensor_type_from_name("BF16") == 30, "case-insensitive names");
    CHECK(tensor_type_from_name("q4") == -1 && tensor_type_from_name("q4_K_M") == -1 &&
              tensor_type_from_name("") == -1 && tensor_type_from_name(NULL) == -1,
          "unknown names");
    CHECK(tensor_type_get(16) == NULL && tensor_type_get(15) == NULL && tensor_type_get(UINT32_MAX) == NULL,
          "unsupported ids");
    CHECK(tensor_row_bytes(16, 32) == 0 && quant_error_bound(16) < 0.0 && quant_error_floor(16) < 0.0,
          "unknown type sizes");
    /* every type has ggml's name, supported or not; the list names each supported type once */
    CHECK(strcmp(quant_type_name_any(16), "iq2_xxs") == 0 && strcmp(quant_type_name_any(34), "tq1_0") == 0 &&
              strcmp(quant_type_name_any(23), "iq4_xs") == 0 && strcmp(quant_type_name_any(13), "q5_K") == 0 &&
              quant_type_name_any(4) == NULL && quant_type_name_any(1000) == NULL,
          "quant_type_name_any");
    {
        const char *list = quant_supported_list();
        int words = 1, named = 0;
        for (const char *c = list; *c; c++) words += *c == ' ';
        for (uint32_t id = 0; id < 64; id++) {
            const tensor_type_info *t = tensor_type_get(id);
            if (!t) continue;
            size_t len = strlen(t->name);
            int found = 0;
            for (const char *c = list; (c = strstr(c, t->name)) != NULL; c += len)
                found += (c == list || c[-1] == ' ') && (c[len] == ' ' || c[len] == 0);
            CHECK(found == 1, "%s named %d times in the supported list", t->name, found);
            named++;
        }
        CHECK(words == named, "supported list has %d names for %d types: %s", words, named, list);
    }
    CHECK(tensor_row_bytes(TENSOR_F32, INT64_MAX) == 0, "f32 row whose size overflows size_t");
}

/* ------------------------------------------------------------ 2. halves */

static void test_fp16(void) {
    static const struct {
        uint16_t h;
        float f;
    } exact[] = {
        {0x3C00, 1.0f},          {0xC000, -2.0f},        {0x7BFF, 65504.0f},     {0xFBFF, -65504.0f},
        {0x0001, 0x1p-24f},      {0x8001, -0x1p-24f},    {0x03FF, 1023 * 0x1p-24f}, {0x0400, 0x1p-14f},
        {0x3800, 0.5f},          {0x3555, 0.333251953125f}, {0x0000, 0.0f},      {0x3BFF, 1.0f - 0x1p-11f},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        CHECK(fp16_to_f32(exact[i].h) == exact[i].f, "fp16_to_f32(0x%04X) = %g", exact[i].h,
              (double)fp16_to_f32(exact[i].h));
        CHECK(f32_to_fp16(exact[i].f) == exact[i].h, "f32_to_fp16(%g) = 0x%04X", (double)exact[i].f,
              f32_to_fp16(exact[i].f));
    }
    CHECK(check_bits_of(fp16_to_f32(0x8000)) == 0x80000000u, "-0 decodes");
    CHECK(f32_to_fp16(-0.0f) == 0x8000, "-0 encodes");
    CHECK(isinf(fp16_to_f32(0x7C00)) && fp16_to_f32(0x7C00) > 0, "+inf decodes");
    CHECK(isinf(fp16_to_f32(0xFC00)) && fp16_to_f32(0xFC00) < 0, "-inf decodes");
    CHECK(isnan(fp16_to_f32(0x7E00)) && isnan(fp16_to_f32(0x7C01)) && isnan(fp16_to_f32(0xFFFF)), "NaN decodes");
    /* a signalling NaN comes out quiet with its payload, as vcvtph2ps gives it */
    CHECK(check_bits_of(fp16_to_f32(0x7C01)) == 0x7FC02000u, "fp16 sNaN 0x7C01 -> 0x%08X, want 0x7FC02000",
          check_bits_of(fp16_to_f32(0x7C01)));
    CHECK(check_bits_of(fp16_to_f32(0xFD55)) == 0xFFEAA000u, "fp16 sNaN 0xFD55 -> 0x%08X, want 0xFFEAA000",
          check_bits_of(fp16_to_f32(0xFD55)));
    CHECK(f32_to_fp16(INFINITY) == 0x7C00 && f32_to_fp16(-INFINITY) == 0xFC00, "inf encodes");
    uint16_t hn = f32_to_fp16(NAN);
    CHECK((hn & 0x7C00) == 0x7C00 && (hn & 0x3FF) != 0, "NaN encodes as NaN: 0x%04X", hn);
    uint16_t hs = f32_to_fp16(check_float_of(0x7F800001u)); /* signalling NaN, tiny payload */
    CHECK((hs & 0x7C00) == 0x7C00 && (hs & 0x200), "sNaN becomes a quiet NaN: 0x%04X", hs);

    /* rounding: ties go to even */
    CHECK(f32_to_fp16(1.0f + 0x1p-11f) == 0x3C00, "tie 1+2^-11 -> 1.0");
    CHECK(f32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3C02, "tie 1+3*2^-11 -> 0x3C02");
    CHECK(f32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01, "above tie rounds up");
    CHECK(f32_to_fp16(65519.0f) == 0x7BFF, "65519 -> 65504");
    CHECK(f32_to_fp16(65520.0f) == 0x7C00, "65520 (tie, odd) -> inf");
    CHECK(f32_to_fp16(1e6f) == 0x7C00 && f32_to_fp16(-1e30f) == 0xFC00, "overflow -> inf");
    CHECK(f32_to_fp16(0x1p-25f) == 0x0000, "2^-25 (tie with 0) -> 0");
    CHECK(f32_to_fp16(0x1p-25f * 1.0000001f) == 0x0001, "just above 2^-25 -> smallest subnormal");
    CHECK(f32_to_fp16(3 * 0x1p-25f) == 0x0002, "1.5 quanta (tie, odd) -> 2 quanta");
    CHECK(f32_to_fp16(5 * 0x1p-25f) == 0x0002, "2.5 quanta (tie, even) -> 2 quanta");
    CHECK(f32_to_fp16(1023.5f * 0x1p-24f) == 0x0400, "largest subnormal + half rounds into normals");
    CHECK(f32_to_fp16(1e-10f) == 0x0000 && f32_to_fp16(-1e-10f) == 0x8000, "underflow -> signed zero");
    CHECK(f32_to_fp16(check_float_of(1)) == 0x0000, "f32 subnormal -> 0");

    /* every fp16 value survives fp16 -> f32 -> fp16 */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = fp16_to_f32((uint16_t)h);
        uint16_t back = f32_to_fp16(f);
        int is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (is_nan ? !isnan(f) || (back & 0x7C00) != 0x7C00 || !(back & 0x3FF) : back != h) bad++;
    }
    CHECK(bad == 0, "%d of 65536 fp16 values do not round-trip", bad);

    /* nearest-even on random floats in fp16's range: no neighbour is closer */
    rng_state = 11;
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        float f = (float)((rng_unit() * 2 - 1) * ldexp(1.0, (int)(rng_next() % 42) - 26));
        uint16_t h = f32_to_fp16(f);
        double e = fabs((double)fp16_to_f32(h) - f);
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            uint16_t n = (uint16_t)(h + dlt);
            if ((n & 0x7FFF) >= 0x7C00 || ((h ^ n) & 0x8000)) continue;
            double en = fabs((double)fp16_to_f32(n) - f);
            if (en < e || (en == e && (n & 1) == 0)) bad++;
        }
    }
    CHECK(bad == 0, "%d random floats not rounded to nearest even fp16", bad);
}

static void test_bf16(void) {
    CHECK(f32_to_bf16(1.0f) == 0x3F80 && bf16_to_f32(0x3F80) == 1.0f, "bf16 1.0");
    CHECK(bf16_to_f32(0x4049) == 3.140625f, "bf16 0x4049");
    CHECK(check_bits_of(bf16_to_f32(0xC2F7)) == 0xC2F70000u, "bf16 decodes to the upper half");
    CHECK(f32_to_bf16(check_float_of(0x3F808000u)) == 0x3F80, "tie, even -> down");
    CHECK(f32_to_bf16(check_float_of(0x3F818000u)) == 0x3F82, "tie, odd -> up");
    CHECK(f32_to_bf16(check_float_of(0x3F808001u)) == 0x3F81, "above tie -> up");
    CHECK(f32_to_bf16(check_float_of(0x3F807FFFu)) == 0x3F80, "below tie -> down");
    CHECK(f32_to_bf16(check_float_of(0x7F7FFFFFu)) == 0x7F80, "FLT_MAX rounds to inf");
    CHECK(f32_to_bf16(INFINITY) == 0x7F80 && f32_to_bf16(-INFINITY) == 0xFF80, "bf16 inf");
    CHECK(f32_to_bf16(-0.0f) == 0x8000, "bf16 -0");
    uint16_t n1 = f32_to_bf16(check_float_of(0x7F800001u)), n2 = f32_to_bf16(check_float_of(0xFFFFFFFFu));
    CHECK((n1 & 0x7F80) == 0x7F80 && (n1 & 0x40), "sNaN with low payload stays a quiet NaN: 0x%04X", n1);
    CHECK((n2 & 0x7F80) == 0x7F80 && (n2 & 0x7F) && (n2 & 0x8000), "NaN 0xFFFFFFFF: 0x%04X", n2);
    CHECK(isnan(bf16_to_f32(n1)) && isnan(bf16_to_f32(f32_to_bf16(NAN))), "bf16 NaN decodes as NaN");
}

/* ------------------------------------------------------- 3. hand blocks */

/* Dequantize `bytes` as `type` (n elements) and compare with want[] exactly:
 * every hand-built value here is a small integer times a power of two. */
static void check_decode(uint32_t type, const uint8_t *bytes, const float *want, int n, const char *what) {
    float got[512];
    CHECK(quant_dequantize_row(type, bytes, got, n) == 0, "%s: dequantize failed", what);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            if (bad < 5) fprintf(stderr, "  %s[%d]: got %g want %g\n", what, i, (double)got[i], (double)want[i]);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %d of %d values differ", what, bad, n);
}

static void test_hand_float(void) {
    const uint8_t f16[] = {0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0xFF, 0x7B, 0x00, 0x38};
    const float f16_want[] = {1.0f, -2.0f, 0x1p-24f, 65504.0f, 0.5f};
    check_decode(TENSOR_F16, f16, f16_want, 5, "f16");
    const uint8_t bf16[] = {0x80, 0x3F, 0x49, 0x40, 0x00, 0xC1};
    const float bf16_want[] = {1.0f, 3.140625f, -8.0f};
    check_decode(TENSOR_BF16, bf16, bf16_want, 3, "bf16");
    const uint8_t f32[] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC1};
    const float f32_want[] = {1.0f, -10.0f};
    check_decode(TENSOR_F32, f32, f32_want, 2, "f32");
}

static void test_hand_q8_0(void) {
    /* block 0: d = 0.5 (0x3800), q = -128, -127, ..., step 8; block 1: d = -2 (0xC000) */
    uint8_t b[68];
    float want[64];
    b[0] = 0x00, b[1] = 0x38;
    b[34] = 0x00, b[35] = 0xC0;
    for (int i = 0; i < 32; i++) {
        int q0 = -128 + 8 * i + (i & 1); /* -128, -119, -112, ... 127 at most */
        int q1 = 31 - 2 * i;
        b[2 + i] = (uint8_t)(q0 & 0xFF);
        b[36 + i] = (uint8_t)(q1 & 0xFF);
        want[i] = 0.5f * (float)q0;
        want[32 + i] = -2.0f * (float)q1;
    }
    check_decode(TENSOR_Q8_0, b, want, 64, "q8_0");
}

static void test_hand_q4_0(void) {
    /* block 0: d = 0.5, byte j = j | (15 - j) << 4; block 1: d = -0.25 (0xB400), byte j = 0x9F */
    uint8_t b[36];
    float want[64];
    b[0] = 0x00, b[1] = 0x38;
    b[18] = 0x00, b[19] = 0xB4;
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        b[20 + j] = 0x9F;
        want[j] = 0.5f * (float)(j - 8);             /* low nibble: first 16 */
        want[16 + j] = 0.5f * (float)((15 - j) - 8); /* high nibble: last 16 */
        want[32 + j] = -0.25f * (float)(15 - 8);
        want[48 + j] = -0.25f * (float)(9 - 8);
    }
    check_decode(TENSOR_Q4_0, b, want, 64, "q4_0");
}

static void test_hand_q4_K(void) {
    /* d = 0.5 (0x3800), dmin = 0.25 (0x3400),
     * scales = 1 2 3 63 17 33 48 5, mins = 0 7 63 12 40 1 22 59, packed by hand:
     *   bytes 0-3: scale j (6 bits) | top 2 bits of scale j+4 in bits 6-7
     *     17>>4=1, 33>>4=2, 48>>4=3, 5>>4=0 -> 0x41 0x82 0xC3 0x3F
     *   bytes 4-7: min j (6 bits) | top 2 bits of min j+4
     *     40>>4=2, 1>>4=0, 22>>4=1, 59>>4=3 -> 0x80 0x07 0x7F 0xCC
     *   bytes 8-11: low 4 bits of scale j+4 | low 4 bits of min j+4 << 4
     *     (1,8) (1,1) (0,6) (5,11) -> 0x81 0x11 0x60 0xB5 */
    static const uint8_t packed[12] = {0x41, 0x82, 0xC3, 0x3F, 0x80, 0x07, 0x7F, 0xCC, 0x81, 0x11, 0x60, 0xB5};
    static const int sc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
    static const int mn[8] = {0, 7, 63, 12, 40, 1, 22, 59};
    uint8_t b[144];
    b[0] = 0x00, b[1] = 0x38, b[2] = 0x00, b[3] = 0x34;
    memcpy(b + 4, packed, 12);
    for (int i = 0; i < 128; i++) b[16 + i] = (uint8_t)(i * 7 + 3);
    float want[256];
    for (int e = 0; e < 256; e++) {
        int chunk = e / 64, r = e % 64;
        uint8_t byte = b[16 + 32 * chunk + r % 32];
        int q = r < 32 ? (byte & 15) : (byte >> 4);
        int s = e / 32;
        want[e] = 0.5f * (float)sc[s] * (float)q - 0.25f * (float)mn[s];
    }
    check_decode(TENSOR_Q4_K, b, want, 256, "q4_K");

    /* a second block with all 6-bit fields at 63 and at 0 alternating, qs all 0xF0 */
    uint8_t c[144];
    c[0] = 0x00, c[1] = 0x3C, c[2] = 0x00, c[3] = 0x3C; /* d = dmin = 1 */
    /* scales: 63 for even sub-blocks, 0 for odd; mins the other way round */
    static const int sc2[8] = {63, 0, 63, 0, 63, 0, 63, 0};
    static const int mn2[8] = {0, 63, 0, 63, 0, 63, 0, 63};
    /* bytes 0-3: 63|(63>>4)<<6 = 0xFF, 0|(0)<<6 = 0x00 ... ; bytes 4-7: 0|(0<<6)=0x00, 63|(63>>4<<6)=0xFF
     * bytes 8-11: (63&15)|(0&15)<<4 = 0x0F, (0)|(15<<4) = 0xF0 */
    static const uint8_t packed2[12] = {0xFF, 0x00, 0xFF, 0x00, 0x00, 0xFF, 0x00, 0xFF, 0x0F, 0xF0, 0x0F, 0xF0};
    memcpy(c + 4, packed2, 12);
    memset(c + 16, 0xF0, 128);
    for (int e = 0; e < 256; e++) {
        int q = (e % 64) < 32 ? 0 : 15;
        want[e] = (float)sc2[e / 32] * (float)q - (float)mn2[e / 32];
    }
    check_decode(TENSOR_Q4_K, c, want, 256, "q4_K extremes");
}

static void test_hand_q6_K(void) {
    static const int8_t scales[16] = {1, -2, 3, -4, 5, 127, -128, 0, 7, -8, 9, 10, -11, 12, 13, -14};
    uint8_t b[210];
    for (int i = 0; i < 128; i++) b[i] = (uint8_t)(i * 13 + 5);        /* ql */
    for (int i = 0; i < 64; i++) b[128 + i] = (uint8_t)(i * 29 + 1);   /* qh */
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)scales[i];      /* scales */
    b[208] = 0x00, b[209] = 0x34;                                       /* d = 0.25 at the end */
    float want[256];
    for (int e = 0; e < 256; e++) {
        int half = e / 128, r = e % 128, l = r % 32, group = r / 32; /* group 0..3 of 32 */
        uint8_t qlb = b[64 * half + l + (group & 1) * 32];
        int lo = group < 2 ? (qlb & 15) : (qlb >> 4);
        int hi = (b[128 + 32 * half + l] >> (2 * group)) & 3;
        int q = lo | (hi << 4);
        want[e] = 0.25f * (float)scales[e / 16] * (float)(q - 32);
    }
    check_decode(TENSOR_Q6_K, b, want, 256, "q6_K");
}

/* --------------------------------------------- 3b. issue 22 types by hand */

static void test_hand_q4_1(void) {
    /* d = 0.5 (0x3800), m = -2 (0xC000); byte j = j | (15 - j) << 4:
     * element j = 0.5 * j - 2, element 16 + j = 0.5 * (15 - j) - 2 */
    uint8_t b[20] = {0x00, 0x38, 0x00, 0xC0};
    float want[32];
    for (int j = 0; j < 16; j++) {
        b[4 + j] = (uint8_t)(j | (15 - j) << 4);
        want[j] = 0.5f * (float)j - 2.0f;
        want[16 + j] = 0.5f * (float)(15 - j) - 2.0f;
    }
    CHECK(want[0] == -2.0f && want[1] == -1.5f && want[15] == 5.5f && want[16] == 5.5f && want[31] == -2.0f,
          "q4_1 formula by hand");
    check_decode(TENSOR_Q4_1, b, want, 32, "q4_1");
}

static void test_hand_q5_0(void) {
    /* d = 0.25 (0x3400); byte j = 0x21 (low code 1, high code 2); qh = 0x00018003
     * (little-endian): bits 0, 1, 15 add 16 to the low codes of elements 0, 1,
     * 15, bit 16 to the high code of byte 0 (element 16). x = d * (q - 16). */
    uint8_t b[22] = {0x00, 0x34, 0x03, 0x80, 0x01, 0x00};
    float want[32];
    for (int j = 0; j < 16; j++) {
        b[6 + j] = 0x21;
        want[j] = 0.25f * (float)(1 - 16);
        want[16 + j] = 0.25f * (float)(2 - 16);
    }
    want[0] = want[1] = want[15] = 0.25f * (float)(17 - 16);
    want[16] = 0.25f * (float)(18 - 16);
    CHECK(want[2] == -3.75f && want[17] == -3.5f && want[0] == 0.25f && want[16] == 0.5f, "q5_0 formula by hand");
    check_decode(TENSOR_Q5_0, b, want, 32, "q5_0");
}

static void test_hand_q5_1(void) {
    /* d = 1 (0x3C00), m = 0.5 (0x3800), qh = 0xFFFF0000: elements 16..31 have
     * bit 4 set. byte j = j | j << 4: element j = j + 0.5, 16 + j = 16 + j + 0.5 */
    uint8_t b[24] = {0x00, 0x3C, 0x00, 0x38, 0x00, 0x00, 0xFF, 0xFF};
    float want[32];
    for (int j = 0; j < 16; j++) {
        b[8 + j] = (uint8_t)(j | j << 4);
        want[j] = (float)j + 0.5f;
        want[16 + j] = (float)(16 + j) + 0.5f;
    }
    CHECK(want[31] == 31.5f && want[0] == 0.5f && want[16] == 16.5f, "q5_1 formula by hand");
    check_decode(TENSOR_Q5_1, b, want, 32, "q5_1");
}

/* the IQ4 codebook, written out here independently of quant.c */
static const int iq4_v[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void test_hand_iq4_nl(void) {
    /* d = -0.5 (0xB800); byte j = j | (15 - j) << 4: element j = -0.5 * v[j],
     * element 16 + j = -0.5 * v[15 - j] */
    uint8_t b[18] = {0x00, 0xB8};
    float want[32];
    for (int j = 0; j < 16; j++) {
        b[2 + j] = (uint8_t)(j | (15 - j) << 4);
        want[j] = -0.5f * (float)iq4_v[j];
        want[16 + j] = -0.5f * (float)iq4_v[15 - j];
    }
    CHECK(want[0] == 63.5f && want[8] == -0.5f && want[16] == -56.5f, "iq4_nl formula by hand");
    check_decode(TENSOR_IQ4_NL, b, want, 32, "iq4_nl");
}

static void test_hand_iq4_xs(void) {
    /* d = 0.125 (0x3000); sub-block scales ls = 32 33 0 63 31 40 1 32 (values
     * ls - 32 = 0 1 -32 31 -1 8 -31 0), packed by hand:
     *   scales_l[k] = (ls[2k] & 15) | (ls[2k+1] & 15) << 4 = 0x10 0xF0 0x8F 0x01
     *   scales_h bits 2j, 2j+1 = ls[j] >> 4 = 2 2 0 3 1 2 0 2 -> 0x89CA
     * sub-block j, byte i = ((i + j) & 15) | (15 - i) << 4 */
    static const int ls[8] = {32, 33, 0, 63, 31, 40, 1, 32};
    uint8_t b[136] = {0x00, 0x30, 0xCA, 0x89, 0x10, 0xF0, 0x8F, 0x01};
    float want[256];
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 16; i++) {
            b[8 + 16 * j + i] = (uint8_t)(((i + j) & 15) | (15 - i) << 4);
            want[32 * j + i] = 0.125f * (float)(ls[j] - 32) * (float)iq4_v[(i + j) & 15];
            want[32 * j + 16 + i] = 0.125f * (float)(ls[j] - 32) * (float)iq4_v[15 - i];
        }
    /* by hand: element 96 = sub-block 3 (31 * 0.125), code 3 (-65) = -251.875;
     * element 32 = 0.125 * -104 = -13; element 64 = -4 * -83 = 332 */
    CHECK(want[96] == -251.875f && want[32] == -13.0f && want[64] == 332.0f, "iq4_xs formula by hand");
    check_decode(TENSOR_IQ4_XS, b, want, 256, "iq4_xs");
}

/* Q2_K: d = 0.5 (0x3800), dmin = 0.25 (0x3400); scales[s] = sc | m << 4. A few
 * values written out by hand first, then every element from the formula
 *   e = 128h + 32k + l: q = (qs[32h + l] >> 2k) & 3, x = d * sc * q - dmin * m. */
static void test_hand_q2_K(void) {
    uint8_t b[84];
    for (int s = 0; s < 16; s++) b[s] = (uint8_t)((s * 5 + 1) % 16 | ((s * 3 + 2) % 16) << 4);
    for (int i = 0; i < 64; i++) b[16 + i] = (uint8_t)(i * 37 + 11);
    b[80] = 0x00, b[81] = 0x38, b[82] = 0x00, b[83] = 0x34;
    float got[256];
    CHECK(quant_dequantize_row(TENSOR_Q2_K, b, got, 256) == 0, "q2_K decode");
    /* element 0: scales[0] = 0x21 (sc 1, m 2), qs[0] = 11 = 0b00001011: q = 3
     *   -> 0.5 * 1 * 3 - 0.25 * 2 = 1.0
     * element 32 (k = 1, sub-block 2): scales[2] = 0x8B (sc 11, m 8), q = (11 >> 2) & 3 = 2
     *   -> 0.5 * 11 * 2 - 0.25 * 8 = 9.0
     * element 129 (h = 1, l = 1, sub-block 8): scales[8] = 0xA9 (sc 9, m 10),
     *   qs[33] = 33 * 37 + 11 = 1232 & 255 = 0xD0 -> q = 0 -> -0.25 * 10 = -2.5 */
    CHECK(got[0] == 1.0f && got[32] == 9.0f && got[129] == -2.5f, "q2_K hand values: %g %g %g", (double)got[0],
          (double)got[32], (double)got[129]);
    float want[256];
    for (int e = 0; e < 256; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32, s = e / 16;
        int q = (b[16 + 32 * h + l] >> (2 * k)) & 3;
        want[e] = 0.5f * (float)(b[s] & 15) * (float)q - 0.25f * (float)(b[s] >> 4);
    }
    check_decode(TENSOR_Q2_K, b, want, 256, "q2_K");
}

/* Q3_K: d = 0.25 (0x3400) at the end; 16 6-bit codes c_s, x = d * (c_s - 32) * (q - 4)
 * with q = 2 low bits (as Q2_K) | bit e/32 of hmask[e%32] << 2. Codes packed by hand:
 *   c = 0 63 32 33 31 1 62 40 | 8 16 24 48 56 5 10 20
 *   bytes 0-7: low nibble of c_s (s < 8) | low nibble of c_{s+8} << 4
 *     (0,8) (15,0) (0,8) (1,0) (15,8) (1,5) (14,10) (8,4)
 *     -> 0x80 0x0F 0x80 0x01 0x8F 0x51 0xAE 0x48
 *   bytes 8-11: top 2 bits of c_{s}, c_{s+4}, c_{s+8}, c_{s+12} at bits 0,2,4,6 of byte 8+s
 *     s=0: 0,1,0,3 -> 0xC4; s=1: 3,0,1,0 -> 0x13; s=2: 2,3,1,0 -> 0x1E; s=3: 2,2,3,1 -> 0x7A */
static void test_hand_q3_K(void) {
    static const int c[16] = {0, 63, 32, 33, 31, 1, 62, 40, 8, 16, 24, 48, 56, 5, 10, 20};
    static const uint8_t packed[12] = {0x80, 0x0F, 0x80, 0x01, 0x8F, 0x51, 0xAE, 0x48, 0xC4, 0x13, 0x1E, 0x7A};
    uint8_t b[110];
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(i * 53 + 7);       /* hmask */
    for (int i = 0; i < 64; i++) b[32 + i] = (uint8_t)(i * 37 + 11); /* qs */
    memcpy(b + 96, packed, 12);
    b[108] = 0x00, b[109] = 0x34;
    float got[256];
    CHECK(quant_dequantize_row(TENSOR_Q3_K, b, got, 256) == 0, "q3_K decode");
    /* element 0: c_0 = 0 -> scale -32; qs[0] = 11 -> low 3; hmask[0] = 7 bit 0 = 1 -> q = 7
     *   -> 0.25 * -32 * 3 = -24
     * element 16: c_1 = 63 -> 31; qs[16] = 16*37+11 = 603 & 255 = 0x5B -> 3; hmask[16] = 16*53+7 =
     *   855 & 255 = 0x57, bit 0 = 1 -> q = 7 -> 0.25 * 31 * 3 = 23.25
     * element 32: c_2 = 32 -> 0 -> 0 */
    CHECK(got[0] == -24.0f && got[16] == 23.25f && got[32] == 0.0f, "q3_K hand values: %g %g %g", (double)got[0],
          (double)got[16], (double)got[32]);
    float want[256];
    for (int e = 0; e < 256; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int q = ((b[32 + 32 * h + l] >> (2 * k)) & 3) | ((b[l] >> (e / 32)) & 1) << 2;
        want[e] = 0.25f * (float)(c[e / 16] - 32) * (float)(q - 4);
    }
    check_decode(TENSOR_Q3_K, b, want, 256, "q3_K");
}

/* Q5_K: the Q4_K block of test_hand_q4_K's scales with qh in between:
 * x = d * sc_s * (nibble + 16 * (bit s of qh[l])) - dmin * m_s, s = e / 32. */
static void test_hand_q5_K(void) {
    static const uint8_t packed[12] = {0x41, 0x82, 0xC3, 0x3F, 0x80, 0x07, 0x7F, 0xCC, 0x81, 0x11, 0x60, 0xB5};
    static const int sc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
    static const int mn[8] = {0, 7, 63, 12, 40, 1, 22, 59};
    uint8_t b[176];
    b[0] = 0x00, b[1] = 0x38, b[2] = 0x00, b[3] = 0x34; /* d = 0.5, dmin = 0.25 */
    memcpy(b + 4, packed, 12);
    for (int i = 0; i < 32; i++) b[16 + i] = (uint8_t)(i * 53 + 7);  /* qh */
    for (int i = 0; i < 128; i++) b[48 + i] = (uint8_t)(i * 7 + 3); /* qs */
    float got[256];
    CHECK(quant_dequantize_row(TENSOR_Q5_K, b, got, 256) == 0, "q5_K decode");
    /* element 0: qs[0] = 3 low nibble 3, qh[0] = 7 bit 0 -> q = 19: 0.5 * 1 * 19 - 0 = 9.5
     * element 32 (sub-block 1: sc 2, m 7): qs[0] high nibble 0, qh[0] bit 1 -> q = 16:
     *   0.5 * 2 * 16 - 0.25 * 7 = 14.25
     * element 96 (sub-block 3: sc 63, m 12): qs[32] = 227 = 0xE3 high 14, qh[0] bit 3 = 0
     *   -> 0.5 * 63 * 14 - 3 = 438 */
    CHECK(got[0] == 9.5f && got[32] == 14.25f && got[96] == 438.0f, "q5_K hand values: %g %g %g", (double)got[0],
          (double)got[32], (double)got[96]);
    float want[256];
    for (int e = 0; e < 256; e++) {
        int s = e / 32, l = e % 32;
        uint8_t byte = b[48 + 32 * (e / 64) + l];
        int q = ((e % 64) < 32 ? (byte & 15) : (byte >> 4)) | ((b[16 + l] >> s) & 1) << 4;
        want[e] = 0.5f * (float)sc[s] * (float)q - 0.25f * (float)mn[s];
    }
    check_decode(TENSOR_Q5_K, b, want, 256, "q5_K");
}

/* ------------------------------------------------------ 4. round trips */

enum { DIST_UNIFORM, DIST_GAUSS, DIST_OUTLIERS, DIST_ZERO_BLOCKS, DIST_POSITIVE, DIST_NEGATIVE, DIST_WIDE, DIST_N };
static const char *dist_names[DIST_N] = {"uniform", "gauss", "outliers", "zero-blocks", "positive", "negative", "wide"};

/* n values of distribution `dist`; block = the type's block size (for zero blocks). */
static void fill(float *x, int n, int dist, int block) {
    for (int i = 0; i < n; i++) {
        double v;
        switch (dist) {
        case DIST_UNIFORM: v = rng_unit() * 2 - 1; break;
        case DIST_GAUSS: v = rng_gauss() * 0.02; break;
        case DIST_OUTLIERS: v = rng_gauss() * (rng_unit() < 0.01 ? 40.0 : 1.0); break;
        case DIST_ZERO_BLOCKS: v = (i / block) % 2 ? 0.0 : rng_gauss(); break;
        case DIST_POSITIVE: v = 0.5 + rng_unit(); break;
        case DIST_NEGATIVE: v = -3.0 - rng_unit(); break;
        default: v = rng_gauss() * pow(10.0, (double)((i / block) % 5) - 2.0); break; /* 1e-2..1e2 per block */
        }
        x[i] = (float)v;
    }
}

static void test_round_trips(void) {
    static const uint32_t types[] = {TENSOR_F32,  TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0,   TENSOR_Q4_0,  TENSOR_Q4_K,
                                     TENSOR_Q6_K, TENSOR_Q4_1, TENSOR_Q5_0, TENSOR_Q5_1, TENSOR_IQ4_NL, TENSOR_IQ4_XS,
                                     TENSOR_Q2_K, TENSOR_Q3_K, TENSOR_Q5_K};
    static const int block_counts[] = {1, 3, 7, 33};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const tensor_type_info *t = tensor_type_get(types[ti]);
        double bound = quant_error_bound(types[ti]), floor_ = quant_error_floor(types[ti]);
        double worst = 0, sum_err2 = 0, sum_x2 = 0;
        int bb = (int)(t->block_elems > 1 ? t->block_elems : 32); /* float types: 32-element "blocks" */
        for (int dist = 0; dist < DIST_N; dist++) {
            for (size_t bi = 0; bi < sizeof block_counts / sizeof block_counts[0]; bi++) {
                rng_state = 1000 * (uint64_t)types[ti] + 10 * (uint64_t)dist + bi;
                int n = bb * block_counts[bi];
                float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
                size_t bytes = tensor_row_bytes(types[ti], n);
                uint8_t *q = malloc(bytes + 1);
                fill(x, n, dist, bb);
                q[bytes] = 0xA5; /* guard byte */
                CHECK(quant_quantize_row(types[ti], x, q, n) == bytes, "%s: quantize size", t->name);
                CHECK(q[bytes] == 0xA5, "%s: wrote past the row", t->name);
                CHECK(quant_dequantize_row(types[ti], q, y, n) == 0, "%s: dequantize", t->name);
                for (int b0 = 0; b0 < n; b0 += bb) {
                    double amax = 0, emax = 0;
                    for (int i = b0; i < b0 + bb; i++) {
                        double e = fabs((double)x[i] - y[i]);
                        amax = fmax(amax, fabs(x[i]));
                        emax = fmax(emax, e);
                        sum_err2 += e * e;
                        sum_x2 += (double)x[i] * x[i];
                    }
                    double rel = amax > 0 ? emax / amax : emax;
                    if (rel > worst) worst = rel;
                    CHECK(emax <= bound * amax + floor_, "%s/%s/%d blocks: block at %d error %g > %g * max %g + %g",
                          t->name, dist_names[dist], block_counts[bi], b0, emax, bound, amax, floor_);
                    if (amax == 0) CHECK(emax == 0, "%s: an all-zero block must decode to zeros", t->name);
                }
                free(x), free(y), free(q);
            }
        }
        printf("  %-5s worst block error %.5f of max (bound %.5f), relative rms error %.5f\n", t->name, worst,
               bound, sqrt(sum_err2 / sum_x2));
    }
}

/* The bound holds at every magnitude: blocks of gaussian and uniform values
 * scaled from 2e4 down to 1e-9, where the fp16 scales become subnormal and the
 * absolute floor takes over. Also checks that the K encoders keep tiny blocks
 * alive (no flush to zero while the floor is small against the values). */
static void test_magnitudes(void) {
    static const uint32_t types[] = {TENSOR_F16,  TENSOR_BF16, TENSOR_Q8_0, TENSOR_Q4_0,   TENSOR_Q4_K,  TENSOR_Q6_K,
                                     TENSOR_Q4_1, TENSOR_Q5_0, TENSOR_Q5_1, TENSOR_IQ4_NL, TENSOR_IQ4_XS,
                                     TENSOR_Q2_K, TENSOR_Q3_K, TENSOR_Q5_K};
    enum { N = 256 * 3 };
    float x[N], y[N];
    uint8_t q[N * 4];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const tensor_type_info *t = tensor_type_get(types[ti]);
        double bound = quant_error_bound(types[ti]), floor_ = quant_error_floor(types[ti]);
        int bb = (int)(t->block_elems > 1 ? t->block_elems : 32), bad = 0, blocks = 0;
        for (double scale = 2e4; scale > 1e-9; scale /= 3.7) {
            rng_state = (uint64_t)(scale * 1e12) + types[ti];
            for (int i = 0; i < N; i++) x[i] = (float)(scale * ((i / bb) % 2 ? rng_gauss() : rng_unit() * 2 - 1));
            quant_quantize_row(types[ti], x, q, N);
            quant_dequantize_row(types[ti], q, y, N);
            for (int b0 = 0; b0 < N; b0 += bb, blocks++) {
                double amax = 0, emax = 0;
                for (int i = b0; i < b0 + bb; i++) {
                    amax = fmax(amax, fabs(x[i]));
                    emax = fmax(emax, fabs((double)x[i] - y[i]));
                }
                /* Q4_1 / Q5_1 store the block minimum itself in fp16: outside the format past 65504 */
                if ((types[ti] == TENSOR_Q4_1 || types[ti] == TENSOR_Q5_1) && amax >= 65504) continue;
                if (emax > bound * amax + floor_) {
                    if (bad < 3) fprintf(stderr, "  %s scale %g: error %g max %g\n", t->name, scale, emax, amax);
                    bad++;
                }
                /* where the floor is under 1e-4 of the values, the relative bound alone must hold */
                if (amax > 1e4 * floor_ && emax > bound * amax * 1.0001) bad++;
            }
        }
        CHECK(bad == 0, "%s: %d of %d blocks over the bound across magnitudes", t->name, bad, blocks);
    }
}

/* Re-quantizing a decoded Q8_0 or Q4_0 row gives the same bytes: the decoded
 * block max sits exactly on the grid, so the scale and every code recur. */
static void test_stability(void) {
    static const uint32_t types[] = {TENSOR_Q8_0, TENSOR_Q4_0};
    for (size_t ti = 0; ti < 2; ti++) {
        for (int dist = 0; dist < DIST_N; dist++) {
            rng_state = 77 + (uint64_t)dist;
            int n = 32 * 33;
            float x[32 * 33], y[32 * 33];
            uint8_t q1[34 * 33], q2[34 * 33];
            fill(x, n, dist, 32);
            size_t bytes = quant_quantize_row(types[ti], x, q1, n);
            quant_dequantize_row(types[ti], q1, y, n);
            quant_quantize_row(types[ti], y, q2, n);
            CHECK(bytes > 0 && memcmp(q1, q2, bytes) == 0, "%s/%s: quantize(dequantize(q)) != q",
                  tensor_type_get(types[ti])->name, dist_names[dist]);
        }
    }
}

/* Specific encodings that follow from the formulas. */
static void test_encoder_details(void) {
    float x[32];
    uint8_t q[34];
    /* Q4_0: the element of largest magnitude, negative, lands on code 0 and
     * d = max / -8 (positive); a positive max gives a negative d. */
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 8) * 0.25f;
    x[5] = -4.0f;
    x[9] = -0.25f;
    quant_quantize_row(TENSOR_Q4_0, x, q, 32);
    CHECK(q[0] == 0x00 && q[1] == 0x38, "q4_0 d = -4 / -8 = 0.5: got 0x%02X%02X", q[1], q[0]);
    CHECK((q[2 + 5] & 15) == 0, "q4_0 max element code 0");
    /* codes floor(x / d + 8.5): 0.25 -> 9 and -0.25 -> 8 (halves up), 1.0 -> 10,
     * element 16 + 3 = 0.75 -> 1.5 + 8.5 -> 10 in the high nibble of byte 3 */
    CHECK((q[2 + 1] & 15) == 9 && (q[2 + 9] & 15) == 8 && (q[2 + 4] & 15) == 10 && (q[2 + 3] >> 4) == 10,
          "q4_0 codes floor(x / d + 8.5): %d %d %d %d", q[2 + 1] & 15, q[2 + 9] & 15, q[2 + 4] & 15, q[2 + 3] >> 4);
    x[5] = 4.0f;
    quant_quantize_row(TENSOR_Q4_0, x, q, 32);
    CHECK(q[0] == 0x00 && q[1] == 0xB8, "q4_0 d = 4 / -8 = -0.5: got 0x%02X%02X", q[1], q[0]);
    /* Q8_0: d = max / 127, codes round(x / d) */
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * (127.0f / 16.0f) / 8.0f;
    quant_quantize_row(TENSOR_Q8_0, x, q, 32);
    float d = fp16_to_f32((uint16_t)(q[0] | q[1] << 8));
    CHECK(fabsf(d - 1.0f / 8.0f) < 1e-6f, "q8_0 d = %g", (double)d);
    CHECK((int8_t)q[2] == -127 && (int8_t)q[2 + 24] == 64, "q8_0 codes %d %d", (int8_t)q[2], (int8_t)q[2 + 24]);
}

/* ------------------------------------------------ 5. awkward inputs */

static int all_finite(const float *y, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(y[i])) return 0;
    return 1;
}

static void test_awkward(void) {
    static const uint32_t qtypes[] = {TENSOR_Q8_0, TENSOR_Q4_0, TENSOR_Q4_K,   TENSOR_Q6_K,   TENSOR_Q4_1,
                                      TENSOR_Q5_0, TENSOR_Q5_1, TENSOR_IQ4_NL, TENSOR_IQ4_XS, TENSOR_Q2_K,
                                      TENSOR_Q3_K, TENSOR_Q5_K};
    enum { NQT = sizeof qtypes / sizeof qtypes[0] };
    float x[512], y[512];
    uint8_t buf[1024 + 1];
    for (size_t ti = 0; ti < NQT; ti++) {
        uint32_t type = qtypes[ti];
        const char *name = tensor_type_get(type)->name;
        int n = 512;
        /* NaN, inf and huge values: decodes stay finite, normal values survive */
        rng_state = 5;
        fill(x, n, DIST_UNIFORM, 32);
        x[3] = NAN, x[40] = INFINITY, x[300] = -INFINITY, x[301] = 1e38f, x[302] = -1e38f, x[500] = NAN;
        CHECK(quant_quantize_row(type, x, buf, n) > 0, "%s: quantize non-finite", name);
        CHECK(quant_dequantize_row(type, buf, y, n) == 0 && all_finite(y, n), "%s: non-finite input", name);
        /* tiny values: scales in fp16's subnormal range, or below it */
        for (int i = 0; i < n; i++) x[i] = (float)(rng_unit() - 0.5) * 1e-6f;
        quant_quantize_row(type, x, buf, n);
        quant_dequantize_row(type, buf, y, n);
        int ok = all_finite(y, n);
        for (int i = 0; i < n; i++) ok &= fabsf(y[i] - x[i]) <= 0.5e-6 * quant_error_bound(type) + quant_error_floor(type);
        CHECK(ok, "%s: tiny values", name);
        /* subnormal f32 inputs and signed zeros */
        for (int i = 0; i < n; i++) x[i] = i % 3 ? check_float_of((uint32_t)rng_next() & 0x807FFFFFu) : -0.0f;
        quant_quantize_row(type, x, buf, n);
        CHECK(quant_dequantize_row(type, buf, y, n) == 0 && all_finite(y, n), "%s: f32 subnormal inputs", name);
        for (int i = 0; i < n; i++) ok &= fabsf(y[i] - x[i]) <= quant_error_floor(type);
        CHECK(ok, "%s: f32 subnormal inputs within the floor", name);
        /* huge values: scales saturate at 65504 instead of becoming inf */
        for (int i = 0; i < n; i++) x[i] = (float)(rng_unit() - 0.5) * 1e30f;
        quant_quantize_row(type, x, buf, n);
        CHECK(quant_dequantize_row(type, buf, y, n) == 0 && all_finite(y, n), "%s: huge values", name);
        /* unaligned source and destination */
        rng_state = 9;
        fill(x, n, DIST_GAUSS, 32);
        size_t bytes = tensor_row_bytes(type, n);
        uint8_t aligned[1024];
        quant_quantize_row(type, x, aligned, n);
        quant_quantize_row(type, x, buf + 1, n);
        CHECK(memcmp(aligned, buf + 1, bytes) == 0, "%s: unaligned destination", name);
        float y2[512];
        quant_dequantize_row(type, aligned, y, n);
        quant_dequantize_row(type, buf + 1, y2, n);
        CHECK(memcmp(y, y2, sizeof y) == 0, "%s: unaligned source", name);
        /* errors: ragged n, unknown type, NULL; dst untouched */
        memset(buf, 0x5A, sizeof buf);
        CHECK(quant_quantize_row(type, x, buf, n - 1) == 0 && buf[0] == 0x5A, "%s: ragged quantize", name);
        CHECK(quant_quantize_row(type, x, buf, 0) == 0 && quant_quantize_row(type, x, buf, -32) == 0,
              "%s: empty quantize", name);
        y[0] = 42.0f;
        CHECK(quant_dequantize_row(type, aligned, y, n + 16) == -1 && y[0] == 42.0f, "%s: ragged dequantize", name);
        CHECK(quant_dequantize_row(type, NULL, y, n) == -1 && quant_quantize_row(type, NULL, buf, n) == 0 &&
                  quant_quantize_row(type, x, NULL, n) == 0 && quant_dequantize_row(type, aligned, NULL, n) == -1,
              "%s: NULL buffers", name);
    }
    CHECK(quant_quantize_row(16, x, buf, 32) == 0 && quant_dequantize_row(99, buf, y, 32) == -1, "unknown types");
    /* arbitrary bytes decode without trouble (NaN/inf scales are the data's business) */
    rng_state = 3;
    uint8_t junk[210 * 4];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rng_next();
    for (size_t ti = 0; ti < NQT; ti++) CHECK(quant_dequantize_row(qtypes[ti], junk, y, 256) == 0, "junk decode");
}

int main(void) {
    test_table();
    test_fp16();
    test_bf16();
    test_hand_float();
    test_hand_q8_0();
    test_hand_q4_0();
    test_hand_q4_K();
    test_hand_q6_K();
    test_hand_q4_1();
    test_hand_q5_0();
    test_hand_q5_1();
    test_hand_iq4_nl();
    test_hand_iq4_xs();
    test_hand_q2_K();
    test_hand_q3_K();
    test_hand_q5_K();
    printf("round trips (per-block max error relative to the block's max magnitude):\n");
    test_round_trips();
    test_magnitudes();
    test_stability();
    test_encoder_details();
    test_awkward();
    printf("test_quant: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
