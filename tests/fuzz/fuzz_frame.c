/* fuzz_frame.c - the frame reader (proto/frame.c) on any bytes, in any split.
 * Input: byte 0 picks the largest frame allowed and the size of the pieces the
 * rest is fed in (as a socket may deliver it); every delivered frame must lie
 * inside what was fed (checked by touching all of it) and its message is parsed
 * as the kind it claims, as the daemons do. */
#include <stdlib.h>
#include <string.h>

#include "baton.pb-c.h"
#include "frame.h"

typedef struct seen {
    uint64_t frames, bytes;
    uint32_t crc;
} seen;

/* Unpacks the message as the handlers would for the kinds with a fixed message type. */
static void parse_as_kind(const frame_header *h, const uint8_t *msg) {
    ProtobufCMessage *m = NULL;
    const ProtobufCMessageDescriptor *d = NULL;
    switch (h->kind % 8) { /* a table would need every kind: a few common shapes suffice */
    case 0: d = &baton__hello__descriptor; break;
    case 1: d = &baton__call_status__descriptor; break;
    case 2: d = &baton__generate_request__descriptor; break;
    case 3: d = &baton__stage_frame__descriptor; break;
    case 4: d = &baton__assignment__descriptor; break;
    case 5: d = &baton__join__descriptor; break;
    case 6: d = &baton__generate_chunk__descriptor; break;
    default: d = &baton__auth_proof__descriptor; break;
    }
    m = protobuf_c_message_unpack(d, NULL, h->msg_len, msg);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

static int on_frame(void *ctx, const frame_header *h, const uint8_t *msg, const uint8_t *payload) {
    seen *s = ctx;
    s->frames++;
    s->bytes += h->msg_len + h->payload_len;
    s->crc = frame_crc32(s->crc, msg, h->msg_len);
    s->crc = frame_crc32(s->crc, payload, h->payload_len);
    parse_as_kind(h, msg);
    return (s->frames % 7) == 3; /* sometimes stop early, as a paused connection does */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++, size--;
    frame_reader r;
    frame_reader_init(&r, (ctl & 0x80) ? 4096 : FRAME_DEFAULT_MAX);
    size_t piece = (ctl & 0x7f) + 1;
    seen s = {0};
    for (size_t off = 0; off < size;) {
        size_t n = size - off < piece ? size - off : piece;
        int rc = frame_reader_feed(&r, data + off, n, on_frame, &s);
        if (rc < 0) {
            if (rc == -1 && !r.error[0]) abort(); /* a connection error always says why */
            break;
        }
        off += n;
        while (rc > 0) rc = frame_reader_feed(&r, NULL, 0, on_frame, &s); /* what a stop left */
    }
    frame_header h;
    if (size >= FRAME_HEADER_BYTES && frame_header_decode(data, &h) == 0) {
        uint8_t again[FRAME_HEADER_BYTES];
        frame_header_encode(&h, again);
        if (memcmp(again, data, 4) != 0) abort(); /* the magic round-trips */
    }
    frame_reader_free(&r);
    return 0;
}
