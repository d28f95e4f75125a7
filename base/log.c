/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *program = "baton";
static const char *context;

void log_set_program(const char *name) { program = name ? name : "baton"; }
const char *log_program(void) { return program; }
void log_set_context(const char *c) { context = c; }

static void vlog(const char *fmt, va_list ap) {
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    if (context) fprintf(stderr, "%s: %s: %s\n", program, context, line);
    else fprintf(stderr, "%s: %s\n", program, line);
}

void log_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void log_exit(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
    exit(status);
}
