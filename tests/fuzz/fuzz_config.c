/* fuzz_config.c - the daemons' config files (--config FILE, base/cliconf.h): the
 * input is written to a file and read by cli_conf_argv, as baton-coord and
 * baton-worker do first thing, with each daemon's section and option table.
 * The option tables are copies of coordinator/main.c's and worker/main.c's
 * (static there; keep them in step); the values' own checks (log_exit in the
 * daemons' option loops) are not reached: this target covers libinih, the
 * line/section/key checks and the merged argv. Checks: a refused file gives
 * "FILE:LINE: ..." (the file is always readable here); an accepted one gives
 * an argv that getopt_long reads as known options only, one per entry, with
 * the command line's --config FILE last. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliconf.h"

static const struct option coord_longs[] = {
    {"listen", required_argument, 0, 'l'}, {"model", required_argument, 0, 'm'},
    {"workers", required_argument, 0, 'w'}, {"slots", required_argument, 0, 's'},
    {"ctx", required_argument, 0, 'c'}, {"max-batch", required_argument, 0, 'b'},
    {"chunk", required_argument, 0, 'k'}, {"inflight", required_argument, 0, 'i'},
    {"cluster-id", required_argument, 0, 'C'}, {"max-frame", required_argument, 0, 'F'},
    {"heartbeat-timeout", required_argument, 0, 'H'}, {"metrics-listen", required_argument, 0, 'M'},
    {"secret", required_argument, 0, 'S'}, {"admin-token-file", required_argument, 0, 'A'},
    {"api-keys", required_argument, 0, 'K'}, {"help", no_argument, 0, 'h'},
    {"mpi", no_argument, 0, 'P'}, {"step-timeout", required_argument, 0, 't'},
    {"max-prompt-bytes", required_argument, 0, 'B'}, {"handshake-timeout", required_argument, 0, 'T'},
    {"idle-timeout", required_argument, 0, 'I'}, {"max-conns", required_argument, 0, 'N'},
    {"max-requests", required_argument, 0, 'q'}, {"max-prompt-memory", required_argument, 0, 'G'},
    {"max-conn-prompt-memory", required_argument, 0, 'g'}, {"rope-scaling", required_argument, 0, 'R'},
    {"rope-scale", required_argument, 0, 'r'}, {"yarn-orig-ctx", required_argument, 0, 'Y'},
    {"http-listen", required_argument, 0, 'L'}, {"config", required_argument, 0, CLI_CONF_OPT},
    {0, 0, 0, 0},
};

static const struct option worker_longs[] = {
    {"coordinator", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
    {"listen", required_argument, 0, 'l'}, {"threads", required_argument, 0, 't'},
    {"memory", required_argument, 0, 'M'}, {"speed", required_argument, 0, 's'},
    {"kv", required_argument, 0, 'k'}, {"cluster-id", required_argument, 0, 'C'},
    {"max-frame", required_argument, 0, 'F'}, {"secret", required_argument, 0, 'S'},
    {"queue-limit", required_argument, 0, 'Q'}, {"help", no_argument, 0, 'h'},
    {"mpi", no_argument, 0, 'P'}, {"codec", required_argument, 0, 'X'},
    {"handshake-timeout", required_argument, 0, 'T'}, {"idle-timeout", required_argument, 0, 'I'},
    {"max-conns", required_argument, 0, 'N'}, {"device", required_argument, 0, 'D'},
    {"config", required_argument, 0, CLI_CONF_OPT}, {"measure", no_argument, 0, 'E'},
    {0, 0, 0, 0},
};

static char path[64];

static void check(const struct option *longs, const char *section) {
    char *argv[] = {"baton-fuzz", "--config", path, NULL};
    int ac;
    char **av;
    char err[600] = "";
    if (cli_conf_argv(3, argv, longs, section, &ac, &av, err, sizeof err) != 0) {
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
    check(coord_longs, "coordinator");
    check(worker_longs, "worker");
    unlink(path);
    return 0;
}
