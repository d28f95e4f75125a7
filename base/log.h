/* log.h - the one logger: a line "PROGRAM: message" on stderr, and the one way a
 * program gives up at startup.
 *
 *     log_set_program("baton-worker");      // once, first thing in main
 *     log_msg("loaded layers [%d,%d)", a, b);
 *     if (!cfg) log_die("--model is required (see --help)");   // exit status 1
 *
 * Libraries report errors as values (errmsg.h) and do not log; daemons and tools
 * log. Lines are written whole (one fprintf), so threads do not interleave them.
 */
#ifndef BATON_LOG_H
#define BATON_LOG_H

void log_set_program(const char *name); /* the prefix; "baton" until set */
const char *log_program(void);
/* A prefix for every line after the program's ("PROGRAM: CONTEXT: message"), e.g.
 * the config file line an option came from; NULL: none. The string is not copied. */
void log_set_context(const char *context);

__attribute__((format(printf, 1, 2))) void log_msg(const char *fmt, ...);
/* log_msg, then exit(status). */
__attribute__((format(printf, 2, 3), noreturn)) void log_exit(int status, const char *fmt, ...);
/* log_exit(1, ...): a fatal error at startup. */
#define log_die(...) log_exit(1, __VA_ARGS__)

#endif
