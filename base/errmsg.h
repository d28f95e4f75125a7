/* errmsg.h - the one way a function reports an error as a value: a one-line
 * message into the caller's buffer (err may be NULL or errlen 0: nothing written). */
#ifndef BATON_ERRMSG_H
#define BATON_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4))) static inline void err_set(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
