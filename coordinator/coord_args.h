/* coord_args.h - baton-coord's command line: its option table and the check of
 * each option's value, as values (no exit), so that the daemon (main.c) and the
 * config-file fuzz target (tests/fuzz/fuzz_config.c) run the very same checks.
 *
 *     coord_args a = coord_args_defaults();
 *     ... cli_conf_argv(argc, argv, coord_args_options, "coordinator", ...) ...
 *     while ((ch = getopt_long(ac, av, "h", coord_args_options, NULL)) != -1)
 *         if (coord_args_apply(&a, ch, optarg, err, sizeof err) != 0) die(2, "%s", err);
 */
#ifndef BATON_COORD_ARGS_H
#define BATON_COORD_ARGS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "coord.h"

/* What the command line sets: the coordinator's options and two launch flags. */
typedef struct coord_args {
    coord_opts o;
    bool mpi;         /* --mpi */
    bool workers_set; /* --workers given (under --mpi it defaults to the ranks less one) */
} coord_args;

/* getopt_long's table of baton-coord (--help is 'h', --config CLI_CONF_OPT). */
extern const struct option coord_args_options[];

/* The options' defaults (no --listen, no --model). */
coord_args coord_args_defaults(void);

/* Applies one option - getopt_long's ch and optarg - to a. 0, or -1 with
 * "--OPTION: why" in err for a value out of range or of the wrong form (a is then
 * unchanged) or "unknown or incomplete option" for ch '?', ':' or one not in the
 * table. 'h' and CLI_CONF_OPT change nothing (the caller prints the usage; the
 * file was read by cli_conf_argv). String values are kept as pointers to arg. */
int coord_args_apply(coord_args *a, int ch, const char *arg, char *err, size_t errlen);

#endif
