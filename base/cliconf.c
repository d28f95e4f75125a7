/* cliconf.c - a config file as command-line options; see cliconf.h. */
#include "cliconf.h"

#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"
#include "log.h"

#define CONF_MAX_ENTRIES 256

/* One parse of cli_ini_parse. */
typedef struct ini_run {
    const char *path;
    cli_ini_handler handler;
    void *user;
    int line;       /* lines read so far: the line the handler sees */
    bool long_line; /* a line did not fit libinih's buffer */
    char err[512];  /* the first error, "FILE:LINE: ..." */
} ini_run;

/* fgets that counts lines, for libinih (whose handler is not told the line). */
static char *ini_read_line(char *str, int num, void *stream) {
    ini_run *r = ((void **)stream)[1];
    FILE *f = ((void **)stream)[0];
    char *s = fgets(str, num, f);
    if (!s) return NULL;
    size_t l = strlen(s);
    if (!r->long_line) r->line++;
    if (l && s[l - 1] != '\n' && !feof(f) && !r->long_line) {
        r->long_line = true;
        if (!r->err[0])
            snprintf(r->err, sizeof r->err, "%s:%d: line too long (at most %d characters)", r->path, r->line, num - 2);
    }
    return s;
}

static int ini_entry(void *user, const char *section, const char *name, const char *value) {
    ini_run *r = user;
    if (r->err[0]) return 0;
    char msg[400] = "";
    if (r->handler(r->user, section, name, value, r->line, msg, sizeof msg) == 0) return 1;
    snprintf(r->err, sizeof r->err, "%s:%d: %s", r->path, r->line, msg);
    return 0;
}

int cli_ini_parse(const char *path, cli_ini_handler h, void *user, char err[], size_t errlen) {
    ini_run r = {.path = path, .handler = h, .user = user};
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    void *stream[2] = {f, &r};
    int rc = ini_parse_stream(ini_read_line, stream, ini_entry, &r);
    fclose(f);
    if (rc != 0 && !r.err[0])
        snprintf(r.err, sizeof r.err, "%s:%d: syntax error: expected 'key = value' or '[section]'", path,
                 rc > 0 ? rc : r.line);
    if (r.err[0]) {
        err_set(err, errlen, "%s", r.err);
        return -1;
    }
    return 0;
}

/* What --config collects; lives until exit (the merged argv points into it). */
static struct conf {
    const char *path;
    const struct option *longs;
    const char *section;
    int n;                          /* entries kept */
    char *args[CONF_MAX_ENTRIES];   /* "--key=value" or "--key" */
    int lines[CONF_MAX_ENTRIES];
    char keys[CONF_MAX_ENTRIES][64];
    char context[600];
    char **argv;                    /* the merged argv handed out */
} conf;

static const char *const sections[] = {"common", "coordinator", "worker"};

int cli_bool(const char *v) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcasecmp(v, yes[i])) return 1;
        if (!strcasecmp(v, no[i])) return 0;
    }
    return -1;
}

static int conf_entry(void *user, const char *section, const char *name, const char *value, int line, char *err,
                      size_t errlen) {
    (void)user;
    if (!section[0]) {
        err_set(err, errlen, "key '%s' outside a section (use [common], [coordinator] or [worker])", name);
        return -1;
    }
    size_t s = 0;
    while (s < sizeof sections / sizeof *sections && strcmp(sections[s], section)) s++;
    if (s == sizeof sections / sizeof *sections) {
        err_set(err, errlen, "unknown section [%s] (the sections are [common], [coordinator] and [worker])", section);
        return -1;
    }
    if (strcmp(section, "common") && strcmp(section, conf.section)) return 0; /* the other daemon's */
    const struct option *o = conf.longs;
    while (o->name && strcmp(o->name, name)) o++;
    if (!o->name) {
        err_set(err, errlen, "unknown key '%s' in [%s] (keys are the long options of --help, without the dashes)",
                name, section);
        return -1;
    }
    if (!strcmp(name, "help") || !strcmp(name, "config")) {
        err_set(err, errlen, "key '%s' is not allowed in a config file", name);
        return -1;
    }
    if (conf.n == CONF_MAX_ENTRIES) {
        err_set(err, errlen, "key '%s': more than %d entries", name, CONF_MAX_ENTRIES);
        return -1;
    }
    char *arg;
    if (o->has_arg == no_argument) {
        int b = cli_bool(value);
        if (b < 0) {
            err_set(err, errlen, "key '%s': expected true or false, got '%s'", name, value);
            return -1;
        }
        if (!b) return 0;
        arg = malloc(strlen(name) + 3);
        if (arg) sprintf(arg, "--%s", name);
    } else {
        arg = malloc(strlen(name) + strlen(value) + 4);
        if (arg) sprintf(arg, "--%s=%s", name, value);
    }
    if (!arg) {
        err_set(err, errlen, "key '%s': out of memory", name);
        return -1;
    }
    conf.args[conf.n] = arg;
    conf.lines[conf.n] = line;
    snprintf(conf.keys[conf.n], sizeof conf.keys[0], "%s", name);
    conf.n++;
    return 0;
}

/* The FILE of --config FILE / --config=FILE (the last one wins), or NULL. */
static const char *conf_path_of(int argc, char **argv) {
    const char *p = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--config") && i + 1 < argc) p = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9)) p = argv[i] + 9;
    }
    return p;
}

int cli_conf_argv(int argc, char **argv, const struct option *longs, const char *section, int *ac_out,
                  char ***av_out, char err[], size_t errlen) {
    *ac_out = argc;
    *av_out = argv;
    const char *path = conf_path_of(argc, argv);
    if (!path) return 0;
    conf.path = path;
    conf.longs = longs;
    conf.section = section;
    char e[600];
    if (cli_ini_parse(path, conf_entry, NULL, e, sizeof e) != 0) {
        err_set(err, errlen, "%s%s", strncmp(e, "cannot read ", 12) ? "" : "--config: ", e);
        return -1;
    }
    char **av = calloc((size_t)argc + (size_t)conf.n + 1, sizeof *av);
    if (!av) {
        err_set(err, errlen, "--config: out of memory");
        return -1;
    }
    av[0] = argv[0];
    for (int i = 0; i < conf.n; i++) av[1 + i] = conf.args[i];
    for (int i = 1; i < argc; i++) av[conf.n + i] = argv[i];
    *ac_out = argc + conf.n;
    *av_out = conf.argv = av;
    return 0;
}

void cli_conf_context(int optind_now) {
    int i = optind_now - 2; /* argv index optind - 1, less argv[0] */
    if (conf.path && i >= 0 && i < conf.n) {
        snprintf(conf.context, sizeof conf.context, "%s:%d: key '%s'", conf.path, conf.lines[i], conf.keys[i]);
        log_set_context(conf.context);
    } else {
        log_set_context(NULL);
    }
}

void cli_conf_reset(void) {
    for (int i = 0; i < conf.n; i++) free(conf.args[i]);
    free(conf.argv);
    log_set_context(NULL);
    memset(&conf, 0, sizeof conf);
}
