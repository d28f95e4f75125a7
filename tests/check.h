/* check.h - the one assertion of Baton's C tests.
 *
 *     #include "check.h"
 *     CHECK(got == want, "row %d: got %d, want %d", i, got, want);
 *     ...
 *     return failures ? 1 : 0;
 *
 * A failed CHECK prints "FAIL file:line: message" to stderr and counts; the test
 * goes on, so one run shows every failure (the first 40 are printed). `checks`
 * counts every CHECK, for a summary line. Include it once, in the test's only
 * translation unit.
 */
#ifndef BATON_TESTS_CHECK_H
#define BATON_TESTS_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                                             \
    do {                                                             \
        checks++;                                                    \
        if (!(cond)) {                                               \
            failures++;                                              \
            if (failures <= 40) {                                    \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);                        \
                fputc('\n', stderr);                                 \
            }                                                        \
        }                                                            \
    } while (0)

/* The bits of a float and back, for exact comparisons and crafted values. */
static inline uint32_t check_bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float check_float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
