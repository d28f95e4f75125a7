/* fuzz_config.c - the daemons' config files (--config FILE, base/cliconf.h): the
 * input is written to a file and read by cli_conf_argv, as baton-coord and
 * baton-worker do first thing, with each daemon's section and its own option
 * table (coord_args.h, worker_args.h), and every option of the merged argv goes
 * through the daemon's value check (coord_args_apply, worker_args_apply: errors
 * as values, no exit). Checks: a refused file gives "FILE:LINE: ..." (the file is
 * always readable here); an accepted one gives an argv that getopt_long reads as
 * known options only, one per entry, with the command line's --config FILE
 * last; a value the check refuses gives a message naming the option ("--NAME:"
 * or "--NAME must ..."). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliconf.h"
#include "coord_args.h"
#include "worker_args.h"

/* One daemon: its table, its section, and its value check over fresh defaults. */
typedef struct fz_daemon {
    const struct option *longs;
    const char *section;
    int (*apply)(int ch, const char *arg, char *err, size_t errlen);
} fz_daemon;

static int coord_apply(int ch, const char *arg, char *err, size_t errlen) {
    static coord_args a;
    a = coord_args_defaults();
    return coord_args_apply(&a, ch, arg, err, errlen);
}

static int worker_apply(int ch, const char *arg, char *err, size_t errlen) {
    static worker_args a;
    a = worker_args_defaults();
    return worker_args_apply(&a, ch, arg, err, errlen);
}

static const fz_daemon daemons[] = {
    {coord_args_options, "coordinator", coord_apply},
    {worker_args_options, "worker", worker_apply},
};

static char path[64];

static void check(const fz_daemon *d) {
    const struct option *longs = d->longs;
    char *argv[] = {"baton-fuzz", "--config", path, NULL};
    int ac;
    char **av;
    char err[600] = "";
    if (cli_conf_argv(3, argv, longs, d->section, &ac, &av, err, sizeof err) != 0) {
        size_t pl = strlen(path);
        if (strncmp(err, path, pl) != 0 || err[pl] != ':') abort();
        cli_conf_reset();
        return;
    }
    if (ac < 3 || strcmp(av[0], argv[0]) || strcmp(av[ac - 2], "--config") || strcmp(av[ac - 1], path) || av[ac])
        abort();
    opterr = 0;
    optind = 0; /* glibc: start over */
    int ch, n = 0;
    while ((ch = getopt_long(ac, av, "", longs, NULL)) != -1) {
        if (ch == '?' || ch == ':' || ch == 'h') abort();
        cli_conf_context(optind);
        char verr[300] = "";
        if (d->apply(ch, optarg, verr, sizeof verr) != 0 && (strncmp(verr, "--", 2) != 0 || !strchr(verr, ' ')))
            abort(); /* a refused value must say which option and why */
        n++;
    }
    cli_conf_context(0);
    if (n != ac - 2 || optind != ac) abort();
    cli_conf_reset();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_config.%d.ini", (int)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    for (size_t i = 0; i < sizeof daemons / sizeof daemons[0]; i++) check(&daemons[i]);
    unlink(path);
    return 0;
}
