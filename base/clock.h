/* clock.h - the one clock of Baton: monotonic time for durations, deadlines and
 * timeouts, and wall time for timestamps that other programs compare.
 *
 *     uint64_t t0 = clock_ms();  ...  uint64_t took = clock_ms() - t0;
 */
#ifndef BATON_CLOCK_H
#define BATON_CLOCK_H

#include <stdint.h>

uint64_t clock_ms(void);      /* milliseconds on CLOCK_MONOTONIC */
uint64_t clock_us(void);      /* microseconds on CLOCK_MONOTONIC */
double clock_s(void);         /* seconds on CLOCK_MONOTONIC, with nanosecond resolution */
uint64_t clock_wall_ms(void); /* milliseconds since the epoch (CLOCK_REALTIME) */

#endif
