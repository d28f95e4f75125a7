/* status.h - the status codes that end every call (gRPC's codes and numbers,
 * baton.proto's StatusCode): their count and their names.
 *
 *     fprintf(stderr, "%s: %s\n", status_name(code), message);  // "INVALID_ARGUMENT: ..."
 */
#ifndef BATON_STATUS_H
#define BATON_STATUS_H

/* Codes are 0 .. STATUS_COUNT - 1 (OK .. UNAUTHENTICATED). */
#define STATUS_COUNT 17

/* "OK", "CANCELLED", ..., "UNAUTHENTICATED"; "UNKNOWN" for a code out of range. */
const char *status_name(int code);

#endif
