/* cliconf.h - a config file is more command-line options, parsed by the same table.
 *
 *     static const struct option longs[] = { {"listen", required_argument, 0, 'l'}, ...,
 *                                           {"config", required_argument, 0, CLI_CONF_OPT}, {0, 0, 0, 0} };
 *     int ac; char **av; char err[512];
 *     if (cli_conf_argv(argc, argv, longs, "worker", &ac, &av, err, sizeof err) != 0) log_exit(2, "%s", err);
 *     while ((ch = getopt_long(ac, av, "h", longs, NULL)) != -1) {
 *         cli_conf_context(optind);   // log lines say FILE:LINE: key 'K' while a file option is applied
 *         switch (ch) { ... case CLI_CONF_OPT: break; ... }
 *     }
 *     cli_conf_context(0);
 *
 * The file is INI (parsed with libinih): sections [common] (read by every daemon),
 * [coordinator] and [worker]; a daemon reads [common] and its own section and skips
 * the other daemon's. Every key is the name of a long option without its dashes
 * ("listen = 0.0.0.0:7000", "threads = 8"); an option without a value takes
 * true/false (yes/no, on/off, 1/0). The entries become "--key=value" arguments
 * placed before the command line's, so a flag given on the command line overrides
 * the file and each value goes through the very code that checks the flag. A new
 * option in a daemon's table is a new key with no other change.
 *
 * Errors (a value, not an exit): the file missing or unreadable, a syntax error, a
 * key outside a section, an unknown section or key, "help" or "config" as a key, a
 * bad true/false or a line over 199 characters - each "FILE:LINE: ..." naming the
 * key. A bad value of a known key is found by the option's own check, which then
 * logs under cli_conf_context's prefix "FILE:LINE: key 'K'".
 */
#ifndef BATON_CLICONF_H
#define BATON_CLICONF_H

#include <getopt.h>
#include <stddef.h>

/* One entry of an INI file: 0, or -1 with a message (without file and line) in err. */
typedef int (*cli_ini_handler)(void *user, const char *section, const char *key, const char *value, int line,
                               char *err, size_t errlen);

/* Parses the INI file at path with libinih, calling h for each entry with its
 * line. 0, or -1 with "FILE:LINE: message" (the handler's, a syntax error or a
 * line over 199 characters) or "cannot read FILE: reason" in err. */
int cli_ini_parse(const char *path, cli_ini_handler h, void *user, char err[], size_t errlen);

/* 1 for true/yes/on/1, 0 for false/no/off/0 (any case), -1 for anything else. */
int cli_bool(const char *v);

/* getopt_long's value for --config in a daemon's option table (outside char range). */
#define CLI_CONF_OPT 0x4346

/* argv with the entries of --config FILE (if given; "--config=FILE" too) put
 * after argv[0]: *ac_out, *av_out (argv itself when there is no --config; else
 * owned by this module until exit). section: the daemon's own section. 0, or -1
 * with the message in err. */
int cli_conf_argv(int argc, char **argv, const struct option *longs, const char *section, int *ac_out,
                  char ***av_out, char err[], size_t errlen);

/* Call after each getopt_long: if the option just returned came from the file
 * (its argument index is optind - 1), log lines get the prefix "FILE:LINE: key
 * 'K'" (log_set_context), else none. cli_conf_context(0) clears it. */
void cli_conf_context(int optind_now);

/* Frees what cli_conf_argv collected and forgets the file (the argv it handed
 * out is gone): for callers that read config files more than once, as the fuzz
 * target tests/fuzz/fuzz_config.c does; a daemon keeps them until exit. */
void cli_conf_reset(void);

#endif
