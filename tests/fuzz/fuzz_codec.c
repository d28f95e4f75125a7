/* fuzz_codec.c - the activation codecs' decoders (kernels/codec.c) on any
 * payload, at every kernel level the CPU has, plus the encoders on any floats.
 * Input: byte 0 the codec, bytes 1-2 rows and width (small), byte 3 the level;
 * the rest is the payload to decode. Checks: a decode either fails with a
 * message or fills exactly rows x width floats; the floats of the payload
 * encoded by each codec decode again, bit for bit with the lossless ones; and
 * every level decodes a payload to the same bits as the scalar code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ops.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    kern_init(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    int codec = data[0] % (CODEC_COUNT + 1); /* CODEC_COUNT: an unknown codec */
    size_t rows = data[1] % 9, width = data[2] % 200;
    int level = data[3];
    const uint8_t *src = data + 4;
    size_t len = size - 4;
    size_t nf = rows * width;
    float *y = malloc((nf + 1) * sizeof *y), *y0 = malloc((nf + 1) * sizeof *y0);
    char err[160] = "";
    kern_set_level(KERN_SCALAR);
    int rc0 = codec_decode(codec, src, len, y0, rows, width, err, sizeof err);
    if (rc0 != 0 && !err[0]) abort(); /* a refusal always says why */
    if (kern_set_level((kern_level)(level % 4)) == 0) {
        int rc = codec_decode(codec, src, len, y, rows, width, err, sizeof err);
        if (rc != rc0) abort(); /* every level accepts the same payloads */
        if (rc == 0 && nf && memcmp(y, y0, nf * sizeof *y) != 0) abort(); /* ... decoding to the same bits */
    }
    /* the payload's bytes as floats, through each codec and back */
    size_t nx = len / sizeof(float) < nf ? len / sizeof(float) : nf;
    if (nf && nx == nf && codec < CODEC_COUNT) {
        float *x = malloc(nf * sizeof *x);
        memcpy(x, src, nf * sizeof *x);
        size_t cap = codec_max_encoded(codec, rows, width);
        uint8_t *wire = malloc(cap ? cap : 1);
        size_t wl = codec_encode(codec, x, rows, width, wire, cap, err, sizeof err);
        if (!wl) abort(); /* any floats encode */
        if (codec_decode(codec, wire, wl, y, rows, width, err, sizeof err) != 0) {
            fprintf(stderr, "codec %s: own encoding refused: %s\n", codec_name(codec), err);
            abort();
        }
        if (codec_is_lossless(codec) && memcmp(x, y, nf * sizeof *x) != 0) abort();
        free(wire);
        free(x);
    }
    kern_set_level(KERN_SCALAR);
    free(y);
    free(y0);
    return 0;
}
