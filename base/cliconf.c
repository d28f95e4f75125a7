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

/* What the parse collects; lives until exit (the merged argv points into it). */
static struct conf {
    const char *path;
    const struct option *longs;
    const char *section;
    int line;                       /* lines read so far: the line the handler sees */
    bool long_line;                 /* a line did not fit INI_MAX_LINE */
    int n;                          /* entries kept */
    char *args[CONF_MAX_ENTRIES];   /* "--key=value" or "--key" */
    int lines[CONF_MAX_ENTRIES];
    char keys[CONF_MAX_ENTRIES][64];
    char err[512];                  /* the first error */
    char context[600];
} conf;

static const char *const sections[] = {"common", "coordinator", "worker"};

/* fgets that counts lines, for libinih (whose handler is not told the line). */
static char *conf_read_line(char *str, int num, void *stream) {
    char *s = fgets(str, num, stream);
    if (!s) return NULL;
    size_t l = strlen(s);
    if (!conf.long_line) conf.line++;
    if (l && s[l - 1] != '\n' && !feof(stream) && !conf.long_line) {
        conf.long_line = true;
        if (!conf.err[0])
            snprintf(conf.err, sizeof conf.err, "%s:%d: line too long (at most %d characters)", conf.path, conf.line,
                     num - 2);
    }
    return s;
}

static void conf_fail(const char *fmt_key, const char *key, const char *detail) {
    if (conf.err[0]) return;
    char what[300];
    snprintf(what, sizeof what, fmt_key, key, detail ? detail : "");
    snprintf(conf.err, sizeof conf.err, "%s:%d: %s", conf.path, conf.line, what);
}

/* true/false words; -1 for anything else. */
static int conf_bool(const char *v) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcasecmp(v, yes[i])) return 1;
        if (!strcasecmp(v, no[i])) return 0;
    }
    return -1;
}

static int conf_entry(void *user, const char *section, const char *name, const char *value) {
    (void)user;
    if (conf.err[0]) return 0;
    if (!section[0]) {
        conf_fail("key '%s' outside a section (use [common], [coordinator] or [worker])%s", name, NULL);
        return 0;
    }
    size_t s = 0;
    while (s < sizeof sections / sizeof *sections && strcmp(sections[s], section)) s++;
    if (s == sizeof sections / sizeof *sections) {
        conf_fail("unknown section [%s] (the sections are [common], [coordinator] and [worker])%s", section, NULL);
        return 0;
    }
    if (strcmp(section, "common") && strcmp(section, conf.section)) return 1; /* the other daemon's */
    const struct option *o = conf.longs;
    while (o->name && strcmp(o->name, name)) o++;
    if (!o->name || !strcmp(name, "help") || !strcmp(name, "config")) {
        conf_fail(o->name ? "key '%s' is not allowed in a config file%s"
                          : "unknown key '%s' in [%s] (keys are the long options of --help, without the dashes)",
                  name, section);
        return 0;
    }
    if (conf.n == CONF_MAX_ENTRIES) {
        conf_fail("key '%s': more than 256 entries%s", name, NULL);
        return 0;
    }
    char *arg;
    if (o->has_arg == no_argument) {
        int b = conf_bool(value);
        if (b < 0) {
            conf_fail("key '%s': expected true or false, got '%s'", name, value);
            return 0;
        }
        if (!b) return 1;
        arg = malloc(strlen(name) + 3);
        if (arg) sprintf(arg, "--%s", name);
    } else {
        arg = malloc(strlen(name) + strlen(value) + 4);
        if (arg) sprintf(arg, "--%s=%s", name, value);
    }
    if (!arg) {
        conf_fail("key '%s': out of memory%s", name, NULL);
        return 0;
    }
    conf.args[conf.n] = arg;
    conf.lines[conf.n] = conf.line;
    snprintf(conf.keys[conf.n], sizeof conf.keys[0], "%s", name);
    conf.n++;
    return 1;
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
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(err, errlen, "--config: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(conf_read_line, f, conf_entry, NULL);
    fclose(f);
    if (rc != 0 && !conf.err[0])
        snprintf(conf.err, sizeof conf.err, "%s:%d: syntax error: expected 'key = value' or '[section]'", path,
                 rc > 0 ? rc : conf.line);
    if (conf.err[0]) {
        err_set(err, errlen, "%s", conf.err);
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
    *av_out = av;
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
