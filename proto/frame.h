/* frame.h - frames on a byte stream, independent of any socket.
 *
 * A frame is a fixed 20-byte little-endian header, a protobuf message and an
 * optional raw payload:
 *
 *     offset 0  u32 magic "BTN1"
 *            4  u16 kind       (baton.FrameKind)
 *            6  u16 flags      (0; reserved)
 *            8  u32 call_id    (0 for connection-level messages)
 *           12  u32 msg_len    (bytes of the protobuf message)
 *           16  u32 payload_len(bytes of raw payload after the message)
 *
 * The reader is push-based: feed it whatever bytes arrived (any split, down to
 * one byte at a time) and it calls back once per complete frame. A bad magic or a
 * frame larger than the configured maximum is a connection error: the reader
 * stops and remembers one message saying why; the caller closes the connection.
 *
 *     frame_reader r; frame_reader_init(&r, 64 << 20);
 *     if (frame_reader_feed(&r, buf, n, on_frame, ctx) < 0) log(r.error), close;
 *     frame_reader_free(&r);
 */
#ifndef BATON_FRAME_H
#define BATON_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x314e5442u /* "BTN1" little-endian */
#define FRAME_HEADER_BYTES 20
#define FRAME_PROTOCOL_VERSION 1
#define FRAME_DEFAULT_MAX (256u << 20)

typedef struct frame_header {
    uint16_t kind;
    uint16_t flags;
    uint32_t call_id;
    uint32_t msg_len;
    uint32_t payload_len;
} frame_header;

/* Write the 20 header bytes for h into out. */
void frame_header_encode(const frame_header *h, uint8_t out[FRAME_HEADER_BYTES]);
/* Parse 20 header bytes. 0, or -1 if the magic is wrong. */
int frame_header_decode(const uint8_t in[FRAME_HEADER_BYTES], frame_header *h);

/* Called once per complete frame; msg and payload point into the reader's buffer
 * and are valid only during the call. Return 0 to go on, non-zero to stop the
 * feed (the reader then keeps the remaining bytes for the next feed). */
typedef int (*frame_cb)(void *ctx, const frame_header *h, const uint8_t *msg,
                        const uint8_t *payload);

typedef struct frame_reader {
    uint8_t *buf;         /* bytes of the frame being assembled */
    size_t len, cap;
    uint64_t max_frame;   /* msg_len + payload_len limit */
    int failed;           /* 1 after a connection error */
    char error[160];
} frame_reader;

void frame_reader_init(frame_reader *r, uint64_t max_frame);
void frame_reader_free(frame_reader *r);
/* Feed bytes. Returns the number of frames delivered, or -1 on a connection
 * error (r->error says why; every later feed also returns -1), or -2 if out of
 * memory. A callback's non-zero return stops delivery early (unconsumed bytes
 * are kept). */
int frame_reader_feed(frame_reader *r, const uint8_t *data, size_t n, frame_cb cb, void *ctx);

/* CRC-32 (IEEE, as zlib) of n bytes, continuing from crc (start with 0). */
uint32_t frame_crc32(uint32_t crc, const void *data, size_t n);

#endif
