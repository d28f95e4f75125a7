/* frame.c - frame header codec, push reader, CRC-32. See frame.h. */
#include "frame.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Writes the fixed header: magic, kind, flags, call id, lengths (little-endian). */
void frame_header_encode(const frame_header *h, uint8_t out[FRAME_HEADER_BYTES]) {
    put_u32(out, FRAME_MAGIC);
    put_u16(out + 4, h->kind);
    put_u16(out + 6, h->flags);
    put_u32(out + 8, h->call_id);
    put_u32(out + 12, h->msg_len);
    put_u32(out + 16, h->payload_len);
}

/* Parses the fixed header; -1 when the magic does not match. */
int frame_header_decode(const uint8_t in[FRAME_HEADER_BYTES], frame_header *h) {
    if (get_u32(in) != FRAME_MAGIC) return -1;
    h->kind = get_u16(in + 4);
    h->flags = get_u16(in + 6);
    h->call_id = get_u32(in + 8);
    h->msg_len = get_u32(in + 12);
    h->payload_len = get_u32(in + 16);
    return 0;
}

/* Sets up an empty reader with the given frame size limit. */
void frame_reader_init(frame_reader *r, uint64_t max_frame) {
    memset(r, 0, sizeof *r);
    r->max_frame = max_frame ? max_frame : FRAME_DEFAULT_MAX;
}

/* Frees the assembly buffer (the reader can be initialised again). */
void frame_reader_free(frame_reader *r) {
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
}

/* Makes room for `need` bytes in the assembly buffer; -1 if out of memory. */
static int reserve(frame_reader *r, size_t need) {
    if (need <= r->cap) return 0;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < need) cap *= 2;
    uint8_t *b = realloc(r->buf, cap);
    if (!b) return -1;
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* Appends bytes to the assembly buffer and delivers every frame that completes.
 * Only one frame's worth of bytes is kept at a time, so the buffer stays bounded
 * by the maximum frame size plus the header. */
int frame_reader_feed(frame_reader *r, const uint8_t *data, size_t n, frame_cb cb, void *ctx) {
    if (r->failed) return -1;
    int delivered = 0;
    size_t off = 0;
    for (;;) {
        /* How many bytes does the current frame need in total? */
        size_t want = FRAME_HEADER_BYTES;
        frame_header h = {0};
        if (r->len >= FRAME_HEADER_BYTES) {
            if (frame_header_decode(r->buf, &h) != 0) {
                r->failed = 1;
                snprintf(r->error, sizeof r->error, "bad frame magic 0x%08x (not a Baton peer?)",
                         (unsigned)get_u32(r->buf));
                return -1;
            }
            uint64_t body = (uint64_t)h.msg_len + h.payload_len;
            if (body > r->max_frame) {
                r->failed = 1;
                snprintf(r->error, sizeof r->error,
                         "frame of %llu bytes (kind %u) exceeds the maximum of %llu bytes",
                         (unsigned long long)body, (unsigned)h.kind, (unsigned long long)r->max_frame);
                return -1;
            }
            want = FRAME_HEADER_BYTES + (size_t)body;
        }
        if (r->len >= want && r->len >= FRAME_HEADER_BYTES) {
            /* A whole frame is here. */
            int stop = cb(ctx, &h, r->buf + FRAME_HEADER_BYTES,
                          r->buf + FRAME_HEADER_BYTES + h.msg_len);
            delivered++;
            /* Bytes kept back by an earlier stop may hold further frames. */
            memmove(r->buf, r->buf + want, r->len - want);
            r->len -= want;
            if (stop) break;
            continue;
        }
        if (off == n) break;
        size_t take = want - r->len;
        if (take > n - off) take = n - off;
        if (reserve(r, r->len + take) != 0) return -2;
        memcpy(r->buf + r->len, data + off, take);
        r->len += take;
        off += take;
    }
    if (off < n) { /* stopped early: keep the rest for later */
        if (reserve(r, r->len + (n - off)) != 0) return -2;
        memcpy(r->buf + r->len, data + off, n - off);
        r->len += n - off;
    }
    return delivered;
}

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Builds the reflected CRC-32 table once (polynomial 0xEDB88320). */
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* CRC-32 as zlib's crc32(): frame_crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t frame_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}
