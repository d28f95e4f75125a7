/* hop.c - activation payloads on a hop (hop.h), on top of kernels/codec.h. */
#include "hop.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errmsg.h"

int hop_pick_codec(int want, uint32_t peer_mask) {
    const uint32_t ours = codec_supported_mask();
    if ((unsigned)want < 32 && ((peer_mask & ours) >> want & 1)) return want;
    if ((peer_mask & ours) >> CODEC_DEFAULT & 1) return CODEC_DEFAULT;
    return CODEC_F32;
}

/* Every Nth payload gets one byte flipped when BATON_CODEC_CORRUPT_EVERY=N (test only). */
static bool corrupt_this_one(void) {
    static long every = -1, count;
    if (every < 0) {
        const char *s = getenv("BATON_CODEC_CORRUPT_EVERY");
        every = s ? atol(s) : 0;
        if (every < 0) every = 0;
    }
    return every > 0 && ++count % every == 0;
}

int hop_encode(Baton__StageFrame *f, int codec, const float *hidden, size_t hidden_len, hop_payload *out, char *err,
               size_t errlen) {
    *out = (hop_payload){0};
    const size_t width = f->width;
    if (!width || !hidden_len || hidden_len % (width * sizeof(float))) {
        err_set(err, errlen, "hidden states of %zu bytes are not rows of %zu floats", hidden_len, width);
        return -1;
    }
    const size_t rows = hidden_len / (width * sizeof(float));
    uint32_t crc = codec_crc32c(0, hidden, hidden_len);
    if (codec == CODEC_F32) {
        out->data = (const uint8_t *)hidden, out->len = hidden_len;
    } else {
        size_t cap = codec_max_encoded(codec, rows, width);
        out->owned = cap ? malloc(cap) : NULL;
        if (!out->owned) {
            err_set(err, errlen, "%s: cannot encode %zu x %zu values", codec_name(codec), rows, width);
            return -1;
        }
        out->len = codec_encode(codec, hidden, rows, width, out->owned, cap, err, errlen);
        out->data = out->owned;
        float *back = out->len && !codec_is_lossless(codec) ? malloc(hidden_len) : NULL;
        if (back) {
            /* what the receiver will decode, not what we had */
            if (codec_decode(codec, out->data, out->len, back, rows, width, err, errlen) == 0)
                crc = codec_crc32c(0, back, hidden_len);
            else
                out->len = 0;
            free(back);
        } else if (!codec_is_lossless(codec)) {
            out->len = 0;
        }
        if (!out->len) {
            hop_payload_free(out);
            return -1;
        }
    }
    if (corrupt_this_one()) {
        if (!out->owned) {
            out->owned = malloc(out->len);
            if (out->owned) memcpy(out->owned, out->data, out->len);
            out->data = out->owned;
        }
        if (out->owned) out->owned[out->len / 2] ^= 0x5A;
    }
    if (!out->data) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    f->codec = (Baton__Codec)codec;
    f->raw_size = hidden_len;
    f->crc32c = crc;
    f->crc32 = 0;
    return 0;
}

void hop_payload_free(hop_payload *p) {
    if (!p) return;
    free(p->owned);
    *p = (hop_payload){0};
}

int hop_decode(const Baton__StageFrame *f, const uint8_t *payload, size_t len, float **hidden, size_t *hidden_len,
               char *err, size_t errlen) {
    *hidden = NULL, *hidden_len = 0;
    if (!len && !f->raw_size) return 0;
    const int codec = (int)f->codec;
    if ((unsigned)codec >= CODEC_COUNT) {
        err_set(err, errlen, "unknown codec %d", codec);
        return -1;
    }
    const uint64_t expect = (uint64_t)f->token_count * f->width * sizeof(float);
    if (!f->width || !f->token_count || f->raw_size != expect || f->raw_size > HOP_MAX_RAW) {
        err_set(err, errlen, "%s payload claims %llu bytes for %u tokens of width %u", codec_name(codec),
                (unsigned long long)f->raw_size, (unsigned)f->token_count, (unsigned)f->width);
        return -1;
    }
    float *h = malloc(f->raw_size);
    if (!h) {
        err_set(err, errlen, "out of memory for %llu bytes", (unsigned long long)f->raw_size);
        return -1;
    }
    if (codec_decode(codec, payload, len, h, f->token_count, f->width, err, errlen) < 0) {
        free(h);
        return -1;
    }
    const uint32_t crc = codec_crc32c(0, h, f->raw_size);
    if (crc != f->crc32c) {
        err_set(err, errlen, "%s payload decodes to crc32c %08x, the frame says %08x", codec_name(codec),
                (unsigned)crc, (unsigned)f->crc32c);
        free(h);
        return -1;
    }
    *hidden = h, *hidden_len = f->raw_size;
    return 0;
}
