/* cliparse.c - strict command-line numbers; see cliparse.h. */
#include "cliparse.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "errmsg.h"

/* strto* skip leading white space; a command-line value must not start with any. */
static bool starts_clean(const char *s) { return s && *s && !isspace((unsigned char)*s); }

int cli_int(const char *s, long long min, long long max, long long *out, char *err, size_t errlen) {
    char *end = NULL;
    errno = 0;
    long long v = starts_clean(s) ? strtoll(s, &end, 10) : 0;
    if (!starts_clean(s) || end == s || *end || errno || v < min || v > max) {
        err_set(err, errlen, "expected an integer in [%lld, %lld], got '%s'", min, max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *s, double min, double max, double *out, char *err, size_t errlen) {
    char *end = NULL;
    errno = 0;
    double v = starts_clean(s) ? strtod(s, &end) : 0;
    if (!starts_clean(s) || end == s || *end || errno || !isfinite(v) || !(v >= min && v <= max)) {
        err_set(err, errlen, "expected a number in [%g, %g], got '%s'", min, max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errlen) {
    char *end = NULL;
    errno = 0;
    double v = starts_clean(s) ? strtod(s, &end) : 0, mul = 1;
    if (end && end != s) {
        if (*end == 'K' || *end == 'k') mul = 1024.0, end++;
        else if (*end == 'M' || *end == 'm') mul = 1048576.0, end++;
        else if (*end == 'G' || *end == 'g') mul = 1073741824.0, end++;
    }
    double b = v * mul;
    /* 2^64 as a double: anything at or above it does not fit */
    if (!starts_clean(s) || end == s || *end || errno || !isfinite(b) || !(b >= 0) || b >= 18446744073709551616.0 ||
        (uint64_t)b < min || (uint64_t)b > max) {
        err_set(err, errlen, "expected a size in bytes (suffix K, M or G) in [%" PRIu64 ", %" PRIu64 "], got '%s'", min,
                max, s ? s : "");
        return -1;
    }
    *out = (uint64_t)b;
    return 0;
}
