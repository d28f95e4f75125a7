/* hop.h - the activation payload of a stage frame on one worker-to-worker hop:
 * which codec a link uses, encoding with the checksum the receiver verifies,
 * and decoding that rejects any payload that is not exactly what was sent.
 *
 *     int codec = hop_pick_codec(wanted, net_peer_codecs(successor));
 *     hop_payload p;
 *     if (hop_encode(frame, codec, hidden, hidden_len, &p, err, n) == 0)
 *         net_send(successor, FRAME_STAGE, 0, &frame->base, p.data, p.len);
 *     hop_payload_free(&p);
 *
 *     float *hidden; size_t len;      // receiver
 *     if (hop_decode(frame, payload, payload_len, &hidden, &len, err, n) < 0)
 *         end the step with STATUS_DATA_LOSS and err;
 *
 * The frame records the codec, the decoded size (raw_size) and the CRC-32C of
 * the decoded floats (crc32c): for a lossy codec the sender decodes its own
 * payload to checksum exactly what the receiver must get.
 *
 * Test only: BATON_CODEC_CORRUPT_EVERY=N in a sender's environment flips one
 * byte of every Nth payload it encodes (after the checksum), so that tests can
 * watch the receiver reject it.
 */
#ifndef BATON_WORKER_HOP_H
#define BATON_WORKER_HOP_H

#include <stddef.h>
#include <stdint.h>

#include "baton.pb-c.h"

/* Largest decoded payload accepted (bytes). */
#define HOP_MAX_RAW (1ull << 30)

typedef struct hop_payload {
    const uint8_t *data; /* what to send */
    size_t len;
    uint8_t *owned;      /* freed by hop_payload_free (NULL when data is the caller's) */
} hop_payload;

/* The codec to send on a link: `want` if the peer decodes it (bit in
 * peer_mask), else the lossless default if it does, else f32. */
int hop_pick_codec(int want, uint32_t peer_mask);

/* Encode hidden (hidden_len bytes: rows x f->width floats) in `codec` and fill
 * f->codec, f->raw_size, f->crc32c. 0, or -1 with a message (bad sizes, out of
 * memory); f is then unchanged. */
int hop_encode(Baton__StageFrame *f, int codec, const float *hidden, size_t hidden_len, hop_payload *out, char *err,
               size_t errlen);
void hop_payload_free(hop_payload *p);

/* Decode a frame's payload into a new buffer (*hidden, malloc'd; NULL with
 * *hidden_len 0 for an empty payload that claims no data). 0, or -1 with a
 * message naming what is wrong: unknown codec, size disagreeing with the
 * frame's token count and width, a payload that does not decode, checksum
 * mismatch. */
int hop_decode(const Baton__StageFrame *f, const uint8_t *payload, size_t len, float **hidden, size_t *hidden_len,
               char *err, size_t errlen);

#endif
