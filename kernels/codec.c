/* codec.c - activation codecs (codec.h): the format table, the plane container
 * of the lz4 variants, the dispatch to the level's primitives, and the scalar
 * primitives that define the bits.
 *
 * Every format is a "body" - the numbers in their layout - cut for lz4 into
 * planes: k-1 byte planes of `count` bytes (byte b of each of `count` values
 * of k bytes), 8 bit planes of the top byte, plus, for q8, one plane of the
 * int8 values as they are. The cut is one pass that writes each plane where it
 * goes: the planes that will be stored as they are, straight into the output
 * (their offsets are known while every plane before them is stored too, which
 * is the usual case: noise first, then the planes lz4 shrinks), the others into
 * scratch for lz4. Whether lz4 is worth trying on a plane is decided before the
 * cut, from a sample cut of the middle values.
 */
#include <lz4.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec_internal.h"
#include "errmsg.h"
#include "ops_internal.h"
#include "quant.h"

enum { BASE_F32, BASE_F16, BASE_BF16, BASE_Q8 };

typedef struct codec_format {
    const char *name;
    uint8_t base;     /* BASE_*: the number format */
    uint8_t lz4;      /* planes + lz4 */
    uint8_t lossless;
    uint8_t fold;     /* lz4: exponent folded into the top byte first (codec_internal.h) */
} codec_format;

/* Bit planes for the top byte, which holds the exponent (sign and exponent
 * bits, nearly constant at the top, lz4 folds them to almost nothing); byte
 * planes for the low mantissa bytes, which are noise either way. */
static const codec_format formats[CODEC_COUNT] = {
    [CODEC_F32] = {"f32", BASE_F32, 0, 1, 0},          [CODEC_F16] = {"f16", BASE_F16, 0, 0, 0},
    [CODEC_BF16] = {"bf16", BASE_BF16, 0, 0, 0},       [CODEC_Q8] = {"q8", BASE_Q8, 0, 0, 0},
    [CODEC_F32_LZ4] = {"f32+lz4", BASE_F32, 1, 1, 1},  [CODEC_F16_LZ4] = {"f16+lz4", BASE_F16, 1, 0, 0},
    [CODEC_BF16_LZ4] = {"bf16+lz4", BASE_BF16, 1, 0, 1}, [CODEC_Q8_LZ4] = {"q8+lz4", BASE_Q8, 1, 0, 0},
};

const char *codec_name(int codec) { return (unsigned)codec < CODEC_COUNT ? formats[codec].name : "unknown"; }

int codec_from_name(const char *name) {
    char buf[16];
    snprintf(buf, sizeof buf, "%s", name ? name : "");
    char *dash = strchr(buf, '-');
    if (dash) *dash = '+';
    for (int c = 0; c < CODEC_COUNT; c++)
        if (!strcmp(buf, formats[c].name)) return c;
    return -1;
}

uint32_t codec_supported_mask(void) { return (1u << CODEC_COUNT) - 1; }

bool codec_is_lossless(int codec) { return (unsigned)codec < CODEC_COUNT && formats[codec].lossless; }

/* ---------------------------------------------------------------- layout */

/* Sizes of one payload of rows x width values. The lz4 container cuts the body
 * into planes (codec_ops.cut): k-1 byte planes of `count` bytes, 8 bit planes of
 * the top byte of ceil(count / 8) bytes, and q8's int8 values as one more
 * plane; each is stored or lz4-compressed, in that order. */
#define CODEC_MAX_PLANES 12
typedef struct codec_layout {
    size_t n;        /* values */
    size_t body;     /* bytes of the body */
    int k;           /* bytes per value of the split part */
    size_t count;    /* values in the split part (byte plane size) */
    size_t tail;     /* bytes after the split part, one more plane (q8's int8) */
    int n_cut;       /* planes of the split part: k-1 byte planes, 8 bit planes */
    int n_planes;    /* stored planes */
    size_t stored;   /* bytes of all stored planes */
} codec_layout;

/* Bytes of plane p. */
static size_t plane_size(const codec_layout *l, int p) {
    return p < l->k - 1 ? l->count : p < l->n_cut ? (l->count + 7) / 8 : l->tail;
}

/* Fill l for `codec`; -1 on an unknown codec, an empty or overflowing size. */
static int layout_get(int codec, size_t rows, size_t width, codec_layout *l) {
    if ((unsigned)codec >= CODEC_COUNT || rows == 0 || width == 0) return -1;
    if (rows > (SIZE_MAX / 16) / width) return -1;
    const codec_format *f = &formats[codec];
    l->n = rows * width;
    l->tail = 0;
    switch (f->base) {
    case BASE_F32: l->k = 4, l->count = l->n; break;
    case BASE_F16:
    case BASE_BF16: l->k = 2, l->count = l->n; break;
    default: l->k = 4, l->count = rows * ((width + CODEC_Q8_BLOCK - 1) / CODEC_Q8_BLOCK), l->tail = l->n; break;
    }
    l->body = l->count * (size_t)l->k + l->tail;
    l->n_cut = l->k - 1 + 8;
    l->n_planes = l->n_cut + (l->tail ? 1 : 0);
    l->stored = 0;
    for (int p = 0; p < l->n_planes; p++) l->stored += plane_size(l, p);
    return 0;
}

/* Encoded bytes at most: the body, or for lz4 the plane table and every plane stored. */
static size_t layout_max(const codec_layout *l, bool lz4) {
    return lz4 ? 4u * (size_t)l->n_planes + l->stored : l->body;
}

size_t codec_max_encoded(int codec, size_t rows, size_t width) {
    codec_layout l;
    if (layout_get(codec, rows, width, &l) < 0) return 0;
    return layout_max(&l, formats[codec].lz4);
}

/* lz4 acceleration: 1 for the planes (the exponent's bit planes shrink 4% more
 * than at 4), 4 for the samples that decide whether to try (most are noise,
 * which lz4 crosses faster the higher it is). */
#define CODEC_LZ4_ACCEL 1
#define CODEC_PROBE_ACCEL 4
#define CODEC_TAIL_ACCEL 4 /* q8's int8 plane: the same size at 4, and faster */

/* Scratch memory of the calling thread, kept between calls: fresh pages for
 * every frame would cost more than the codec (a 512-token chunk of f16 needs
 * ~8 MB), and its lz4 state, set up once: LZ4_compress_fast clears a fresh
 * 16 KiB table on every call, which costs more than compressing one token's
 * planes. Freed when the thread exits. */
typedef struct codec_scratch {
    LZ4_stream_t lz4;
    size_t cap;
    uint8_t *buf;
} codec_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_free(void *p) {
    codec_scratch *s = p;
    free(s->buf);
    free(s);
}
static void scratch_key_make(void) { pthread_key_create(&scratch_key, scratch_free); }

/* This thread's scratch; NULL if out of memory. */
static codec_scratch *scratch_mine(void) {
    pthread_once(&scratch_once, scratch_key_make);
    codec_scratch *s = pthread_getspecific(scratch_key);
    if (!s && (s = calloc(1, sizeof *s)) != NULL) {
        LZ4_initStream(&s->lz4, sizeof s->lz4);
        pthread_setspecific(scratch_key, s);
    }
    return s;
}

/* At least n bytes, 16-byte aligned, valid until this thread's next call; NULL
 * if out of memory. */
static uint8_t *scratch_get(size_t n) {
    codec_scratch *s = scratch_mine();
    if (!s) return NULL;
    if (s->cap < n) {
        free(s->buf);
        s->buf = malloc(n);
        s->cap = s->buf ? n : 0;
    }
    return s->buf;
}

/* LZ4_compress_fast of n bytes into at most cap (acceleration accel) with this
 * thread's state: the same block format, an independent block. Returns its
 * size, 0 if it does not fit (or out of memory). */
static int lz4_pack(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, int accel) {
    codec_scratch *s = scratch_mine();
    if (!s) return 0;
    LZ4_resetStream_fast(&s->lz4);
    return LZ4_compress_fast_continue(&s->lz4, (const char *)src, (char *)dst, (int)n, (int)cap, accel);
}

/* The current level's primitives (its kernel backend's). */
static const codec_ops *ops_now(void) { return kern_backend_now()->codec; }

/* ------------------------------------------------------- body conversion */

/* x ([rows][width]) into the body layout at out. */
static void body_encode(const codec_ops *o, int base, const float *x, size_t rows, size_t width,
                        const codec_layout *l, uint8_t *out) {
    switch (base) {
    case BASE_F32: memcpy(out, x, l->body); break;
    case BASE_F16: o->to_f16(x, (uint16_t *)(void *)out, l->n); break;
    case BASE_BF16: o->to_bf16(x, (uint16_t *)(void *)out, l->n); break;
    default: {
        const size_t nb = l->count / rows;
        for (size_t r = 0; r < rows; r++)
            o->q8_row(x + r * width, width, (float *)(void *)out + r * nb, (int8_t *)(out + l->count * 4) + r * width);
    }
    }
}

/* The body at in back into y. */
static void body_decode(const codec_ops *o, int base, const uint8_t *in, size_t rows, size_t width,
                        const codec_layout *l, float *y) {
    switch (base) {
    case BASE_F32: memcpy(y, in, l->body); break;
    case BASE_F16: o->from_f16((const uint16_t *)(const void *)in, y, l->n); break;
    case BASE_BF16: o->from_bf16((const uint16_t *)(const void *)in, y, l->n); break;
    default: {
        const size_t nb = l->count / rows;
        for (size_t r = 0; r < rows; r++)
            o->dq8_row((const int8_t *)(in + l->count * 4) + r * width, (const float *)(const void *)in + r * nb,
                       width, y + r * width);
    }
    }
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---------------------------------------------------------------- encode */

#define CODEC_PROBE_BYTES 4096  /* lz4 sample of the tail plane */
#define CODEC_SAMPLE_VALUES 2048 /* values of the sample cut (a multiple of 8): bit plane samples of 256 bytes, */
#define CODEC_SAMPLE_LARGE 8192  /* or 1 KiB from a split part of at least 4x this many */
#define CODEC_SAMPLE_BYTES 1024  /* lz4 samples the byte planes' first this many */
#define CODEC_PROBE_GAIN 0.97    /* a sample must shrink below this to try the plane */

/* Whether lz4 shrinks n bytes at p below CODEC_PROBE_GAIN. */
static bool sample_shrinks(const uint8_t *p, size_t n) {
    uint8_t out[LZ4_COMPRESSBOUND(CODEC_PROBE_BYTES)];
    int c = lz4_pack(p, n, out, sizeof out, CODEC_PROBE_ACCEL);
    return c > 0 && c < CODEC_PROBE_GAIN * (double)n;
}

/* Whether lz4 may shrink a plane of n bytes: a sample from its middle must. */
static bool plane_worth_lz4(const uint8_t *p, size_t n) {
    return n <= 2 * CODEC_PROBE_BYTES || sample_shrinks(p + n / 2 - CODEC_PROBE_BYTES / 2, CODEC_PROBE_BYTES);
}

/* Planes of values [from, to) (from a multiple of 8) of the split part into the
 * planes at at[]. */
static void cut_range(const codec_ops *o, const codec_layout *l, const uint8_t *body, bool fold, size_t from,
                      size_t to, uint8_t *const at[CODEC_MAX_PLANES]) {
    if (from >= to) return;
    uint8_t *part[CODEC_MAX_PLANES];
    for (int p = 0; p < l->n_cut; p++) part[p] = at[p] + (p < l->k - 1 ? from : from / 8);
    o->cut(body + from * (size_t)l->k, to - from, l->k, fold, part);
}

/* The sample: *m values from the middle of the split part (CODEC_SAMPLE_LARGE
 * of a long one, CODEC_SAMPLE_VALUES of one at least twice that long, else
 * none: *m = 0), cut into planes at `sample` (scratch of CODEC_SAMPLE_LARGE * k
 * bytes, at[] set to them) and kept for the whole cut. For each plane, whether
 * lz4 is worth trying (try[p]): always without a sample, else when the plane's
 * sample shrinks (the first CODEC_SAMPLE_BYTES of a byte plane's: noise there
 * is the usual case and the costly one to sample; a bit plane's whole sample,
 * where a plane that lz4 shrinks by only 20% needs 1 KiB to show it). */
static void planes_worth_lz4(const codec_ops *o, const codec_layout *l, const uint8_t *body, bool fold,
                             uint8_t *sample, uint8_t *at[CODEC_MAX_PLANES], size_t *first, size_t *m,
                             bool try[CODEC_MAX_PLANES]) {
    *m = l->count >= 4 * CODEC_SAMPLE_LARGE    ? CODEC_SAMPLE_LARGE
         : l->count > 2 * CODEC_SAMPLE_VALUES ? CODEC_SAMPLE_VALUES
                                              : 0;
    *first = (l->count / 2 - *m / 2) & ~(size_t)7;
    for (int p = 0; p < l->n_cut; p++) {
        try[p] = true;
        at[p] = sample + (p < l->k - 1 ? (size_t)p * *m : (size_t)(l->k - 1) * *m + (size_t)(p - l->k + 1) * (*m / 8));
    }
    if (!*m) return;
    o->cut(body + *first * (size_t)l->k, *m, l->k, fold, at);
    for (int p = 0; p < l->n_cut; p++) try[p] = sample_shrinks(at[p], p < l->k - 1 ? CODEC_SAMPLE_BYTES : *m / 8);
}

/* A plane (size bytes at from) into out as lz4 (acceleration accel) when tried
 * and shorter, else as is; its length into the table at tab. Returns the bytes
 * written. */
static size_t plane_put(const uint8_t *from, size_t size, bool try, int accel, uint8_t *out, uint8_t *tab) {
    int c = try && size > 1 ? lz4_pack(from, size, out, size - 1, accel) : 0;
    if (c <= 0) {
        if (from != out) memcpy(out, from, size);
        c = (int)size;
    }
    put_u32(tab, (uint32_t)c);
    return (size_t)c;
}

size_t codec_encode(int codec, const float *x, size_t rows, size_t width, void *dst, size_t cap, char *err,
                    size_t errlen) {
    codec_layout l;
    if (layout_get(codec, rows, width, &l) < 0) {
        err_set(err, errlen, "cannot encode %zu x %zu values as codec %d (%s)", rows, width, codec, codec_name(codec));
        return 0;
    }
    const codec_format *f = &formats[codec];
    const size_t need = layout_max(&l, f->lz4);
    if (cap < need) {
        err_set(err, errlen, "%s: output of %zu bytes, %zu needed", f->name, cap, need);
        return 0;
    }
    const codec_ops *o = ops_now();
    uint8_t *out = dst;
    if (!f->lz4) {
        body_encode(o, f->base, x, rows, width, &l, out);
        return l.body;
    }
    if (l.count > LZ4_MAX_INPUT_SIZE || l.tail > LZ4_MAX_INPUT_SIZE) {
        err_set(err, errlen, "%s: %zu values are too many for one lz4 plane", f->name, l.n);
        return 0;
    }
    /* scratch: the body (converted numbers; x itself for f32), the planes not
     * cut into place, the sample cut */
    const size_t room = f->base == BASE_F32 ? 0 : l.body;
    uint8_t *tmp = scratch_get(room + l.stored + (size_t)CODEC_SAMPLE_LARGE * 4);
    if (!tmp) {
        err_set(err, errlen, "%s: out of memory", f->name);
        return 0;
    }
    const uint8_t *body = (const uint8_t *)x;
    if (f->base != BASE_F32) {
        body_encode(o, f->base, x, rows, width, &l, tmp);
        body = tmp;
    }
    bool try[CODEC_MAX_PLANES];
    uint8_t *sample[CODEC_MAX_PLANES];
    size_t first, m;
    planes_worth_lz4(o, &l, body, f->fold, tmp + room + l.stored, sample, &first, &m, try);
    /* planes stored as they are go straight to their place while every plane
     * before them is stored too; the rest to scratch */
    uint8_t *at[CODEC_MAX_PLANES], *spare = tmp + room;
    size_t off = 4u * (size_t)l.n_planes;
    bool in_place = true;
    for (int p = 0; p < l.n_cut; p++) {
        in_place = in_place && !try[p];
        at[p] = in_place ? out + off : spare;
        if (in_place) off += plane_size(&l, p);
        else spare += plane_size(&l, p);
    }
    /* around the sample, which is cut already */
    cut_range(o, &l, body, f->fold, 0, first, at);
    cut_range(o, &l, body, f->fold, first + m, l.count, at);
    for (int p = 0; m && p < l.n_cut; p++) {
        const bool bits = p >= l.k - 1;
        memcpy(at[p] + (bits ? first / 8 : first), sample[p], bits ? m / 8 : m);
    }
    off = 4u * (size_t)l.n_planes;
    for (int p = 0; p < l.n_cut; p++) off += plane_put(at[p], plane_size(&l, p), try[p], CODEC_LZ4_ACCEL, out + off, out + 4 * p);
    if (l.tail) {
        const uint8_t *q = body + l.count * (size_t)l.k;
        off += plane_put(q, l.tail, plane_worth_lz4(q, l.tail), CODEC_TAIL_ACCEL, out + off, out + 4 * l.n_cut);
    }
    return off;
}

/* ---------------------------------------------------------------- decode */

int codec_decode(int codec, const void *src, size_t src_len, float *y, size_t rows, size_t width, char *err,
                 size_t errlen) {
    codec_layout l;
    if ((unsigned)codec >= CODEC_COUNT) {
        err_set(err, errlen, "unknown codec %d", codec);
        return -1;
    }
    const codec_format *f = &formats[codec];
    if (layout_get(codec, rows, width, &l) < 0) {
        err_set(err, errlen, "%s: bad shape %zu x %zu", f->name, rows, width);
        return -1;
    }
    const codec_ops *o = ops_now();
    const uint8_t *in = src;
    if (!f->lz4) {
        if (src_len != l.body) {
            err_set(err, errlen, "%s payload of %zu bytes, %zu expected for %zu x %zu values", f->name, src_len,
                    l.body, rows, width);
            return -1;
        }
        /* a payload right after a frame's message is rarely aligned for its numbers */
        uint8_t *aligned = NULL;
        if (f->base != BASE_F32 && ((uintptr_t)in & 3)) {
            if (!(aligned = scratch_get(l.body))) {
                err_set(err, errlen, "%s: out of memory", f->name);
                return -1;
            }
            in = memcpy(aligned, in, l.body);
        }
        body_decode(o, f->base, in, rows, width, &l, y);
        return 0;
    }
    const size_t hdr = 4u * (size_t)l.n_planes;
    if (src_len < hdr) {
        err_set(err, errlen, "%s payload of %zu bytes is shorter than its %zu-byte plane table", f->name, src_len, hdr);
        return -1;
    }
    size_t total = hdr;
    for (int p = 0; p < l.n_planes; p++) {
        const size_t len = get_u32(in + 4 * p);
        if (len > plane_size(&l, p) || len == 0) {
            err_set(err, errlen, "%s plane %d: %zu bytes for a plane of %zu", f->name, p, len, plane_size(&l, p));
            return -1;
        }
        total += len;
    }
    if (total != src_len) {
        err_set(err, errlen, "%s payload of %zu bytes, its plane table says %zu", f->name, src_len, total);
        return -1;
    }
    /* scratch: the body (y itself for f32), then the planes that were compressed;
     * stored planes are joined from the payload in place */
    const size_t room = f->base == BASE_F32 ? 0 : l.body;
    uint8_t *tmp = scratch_get(room + l.stored);
    if (!tmp) {
        err_set(err, errlen, "%s: out of memory", f->name);
        return -1;
    }
    uint8_t *body = f->base == BASE_F32 ? (uint8_t *)y : tmp, *spare = tmp + room;
    const uint8_t *from[CODEC_MAX_PLANES];
    size_t off = hdr;
    for (int p = 0; p < l.n_planes; p++) {
        const size_t len = get_u32(in + 4 * p), size = plane_size(&l, p);
        uint8_t *to = p < l.n_cut ? spare : body + l.count * (size_t)l.k; /* the tail plane in the body */
        if (len == size && p < l.n_cut) {
            from[p] = in + off;
        } else if (len == size) {
            memcpy(to, in + off, size);
        } else if (LZ4_decompress_safe((const char *)in + off, (char *)to, (int)len, (int)size) != (int)size) {
            err_set(err, errlen, "%s plane %d: bad lz4 stream (%zu bytes for %zu)", f->name, p, len, size);
            return -1;
        } else if (p < l.n_cut) {
            from[p] = to, spare += size;
        }
        off += len;
    }
    o->join(from, l.count, l.k, f->fold, body);
    if (f->base != BASE_F32) body_decode(o, f->base, body, rows, width, &l, y);
    return 0;
}

uint32_t codec_crc32c(uint32_t crc, const void *data, size_t n) { return ops_now()->crc32c(crc, data, n); }

/* ------------------------------------------------------ scalar primitives */

static void s_to_f16(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = f32_to_fp16(x[i]);
}
static void s_from_f16(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = fp16_to_f32(x[i]);
}
static void s_to_bf16(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = f32_to_bf16(x[i]);
}
static void s_from_bf16(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = bf16_to_f32(x[i]);
}
static void s_q8_row(const float *x, size_t n, float *d, int8_t *q) {
    for (size_t b = 0; b * CODEC_Q8_BLOCK < n; b++) {
        size_t i = b * CODEC_Q8_BLOCK, m = n - i < CODEC_Q8_BLOCK ? n - i : CODEC_Q8_BLOCK;
        codec_q8_block(x + i, m, &d[b], q + i);
    }
}
static void s_dq8_row(const int8_t *q, const float *d, size_t n, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = (float)q[i] * d[i / CODEC_Q8_BLOCK];
}
static void s_cut(const uint8_t *src, size_t n, int k, bool fold, uint8_t *const *dst) {
    codec_cut_range(src, 0, n, k, fold, dst);
}
static void s_join(const uint8_t *const *src, size_t n, int k, bool fold, uint8_t *dst) {
    codec_join_range(src, 0, n, k, fold, dst);
}

/* CRC-32C, reflected polynomial 0x82F63B78, one table lookup per byte. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_table_fill(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int b = 0; b < 8; b++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t s_crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_table_fill);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

const codec_ops codec_ops_scalar = {s_to_f16, s_from_f16, s_to_bf16, s_from_bf16, s_q8_row,
                                    s_dq8_row, s_cut,     s_join,     s_crc32c};
