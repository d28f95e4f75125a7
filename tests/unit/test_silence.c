/* test_silence.c - the coordinator's heartbeat arithmetic (coord_silence_ms,
 * coord_seen_after_stall in coordinator/coord.h). The regression: after an
 * event-loop stall, a worker heard from during the stall was stamped in the
 * future, and check_silence's unsigned now - last_seen wrapped to ~2^64 ms, so
 * a live worker was declared dead. Now: a node seen "ahead of now" is silent
 * for 0 ms, and a stall extension never moves last_seen past now. */
#include <stdint.h>

#include "check.h"
#include "coord.h"

int main(void) {
    /* ordinary silence */
    CHECK(coord_silence_ms(1500, 1000) == 500, "500 ms silent: got %llu", (unsigned long long)coord_silence_ms(1500, 1000));
    CHECK(coord_silence_ms(1000, 1000) == 0, "seen right now: silent 0");
    /* the bug: last seen ahead of now (a stall extension) - 0, not ~2^64 */
    CHECK(coord_silence_ms(1000, 1250) == 0, "seen in the future: got %llu", (unsigned long long)coord_silence_ms(1000, 1250));
    CHECK(coord_silence_ms(0, UINT64_MAX) == 0, "extreme future: silent 0");
    CHECK(coord_silence_ms(UINT64_MAX, 0) == UINT64_MAX, "never seen, the end of time: the whole span");
    /* a heartbeat timeout of 3 s never fires for a node seen ahead of now, whatever the gap */
    for (uint64_t ahead = 1; ahead < (1ull << 40); ahead <<= 3)
        CHECK(coord_silence_ms(1000000, 1000000 + ahead) <= 3000, "ahead by %llu ms: declared silent",
              (unsigned long long)ahead);
    /* stall extension: seen at 1000, a 900 ms stall noticed at 2000 -> 1900 (100 ms silent) */
    CHECK(coord_seen_after_stall(1000, 900, 2000) == 1900, "extended: got %llu",
          (unsigned long long)coord_seen_after_stall(1000, 900, 2000));
    /* heard from during the stall (last_seen 1800): +900 would be 2700, in the future -> clamped to now */
    CHECK(coord_seen_after_stall(1800, 900, 2000) == 2000, "clamped to now: got %llu",
          (unsigned long long)coord_seen_after_stall(1800, 900, 2000));
    CHECK(coord_silence_ms(2000, coord_seen_after_stall(1800, 900, 2000)) == 0, "after the stall: silent 0");
    /* the tick after: 100 ms later, silence is 100 ms, not a wrap */
    CHECK(coord_silence_ms(2100, coord_seen_after_stall(1800, 900, 2000)) == 100, "next tick: 100 ms");
    CHECK(coord_seen_after_stall(500, 0, 2000) == 500, "no stall: unchanged");
    printf("test_silence: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
