/* worker_args.h - baton-worker's command line: its option table and the check of
 * each option's value, as values (no exit), so that the daemon (main.c) and the
 * config-file fuzz target (tests/fuzz/fuzz_config.c) run the very same checks.
 *
 *     worker_args a = worker_args_defaults();
 *     ... cli_conf_argv(argc, argv, worker_args_options, "worker", ...) ...
 *     while ((ch = getopt_long(ac, av, "h", worker_args_options, NULL)) != -1)
 *         if (worker_args_apply(&a, ch, optarg, err, sizeof err) < 0) die("%s", err);
 */
#ifndef BATON_WORKER_ARGS_H
#define BATON_WORKER_ARGS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/* What the command line sets: the worker's options and what main does with the rest. */
typedef struct worker_args {
    worker_opts o;
    uint64_t queue_limit; /* --queue-limit: net_set_water_marks(q, q / 4); 0: net's default */
    bool list_devices;    /* --device list: print the Vulkan devices and exit */
} worker_args;

/* getopt_long's table of baton-worker (--help is 'h', --config CLI_CONF_OPT). */
extern const struct option worker_args_options[];

/* The options' defaults (no --coordinator, no --model). */
worker_args worker_args_defaults(void);

/* Applies one option - getopt_long's ch and optarg - to a. 0, or -1 with
 * "--OPTION: why" in err for a value out of range or of the wrong form (a is then
 * unchanged) or "unknown or incomplete option" for ch '?', ':' or one not in the
 * table. 'h' and CLI_CONF_OPT change nothing. String values are kept as pointers
 * to arg. Changes nothing outside a (the caller applies queue_limit). */
int worker_args_apply(worker_args *a, int ch, const char *arg, char *err, size_t errlen);

#endif
