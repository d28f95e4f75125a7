/* cliparse.h - strict parsing of the numbers given on a command line.
 *
 *     long long n;
 *     char err[160];
 *     if (cli_int(optarg, 1, INT32_MAX, &n, err, sizeof err) != 0) die(2, "--max-tokens: %s", err);
 *
 * Every binary parses its numeric options through these, so "4294967296", "12x",
 * "", " 5", "nan" or "1e999" never become a silently wrapped, truncated or
 * defaulted value. Each returns 0 with the value in *out, or -1 with a one-line
 * message in err that names the text given and the accepted range; the caller
 * prefixes the option's name and decides the exit status. *out is untouched on
 * error. Ranges are inclusive.
 */
#ifndef BATON_CLIPARSE_H
#define BATON_CLIPARSE_H

#include <stddef.h>
#include <stdint.h>

/* A decimal integer (optional sign, no spaces, no base prefix) in [min, max]. */
int cli_int(const char *s, long long min, long long max, long long *out, char *err, size_t errlen);

/* A finite decimal number (strtod syntax; NaN and infinities refused) in [min, max]. */
int cli_float(const char *s, double min, double max, double *out, char *err, size_t errlen);

/* A size in bytes: a non-negative number with an optional K, M or G suffix
 * (powers of 1024; "1.5G" allowed), rounded down, in [min, max]. */
int cli_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err, size_t errlen);

#endif
