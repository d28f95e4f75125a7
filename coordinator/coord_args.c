/* coord_args.c - baton-coord's options and their value checks; see coord_args.h. */
#include "coord_args.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cliconf.h"
#include "cliparse.h"

const struct option coord_args_options[] = {
    {"listen", required_argument, 0, 'l'},    {"model", required_argument, 0, 'm'},
    {"workers", required_argument, 0, 'w'},   {"slots", required_argument, 0, 's'},
    {"ctx", required_argument, 0, 'c'},       {"max-batch", required_argument, 0, 'b'},
    {"chunk", required_argument, 0, 'k'},     {"inflight", required_argument, 0, 'i'},
    {"cluster-id", required_argument, 0, 'C'}, {"max-frame", required_argument, 0, 'F'},
    {"heartbeat-timeout", required_argument, 0, 'H'}, {"metrics-listen", required_argument, 0, 'M'},
    {"secret", required_argument, 0, 'S'},   {"admin-token-file", required_argument, 0, 'A'},
    {"api-keys", required_argument, 0, 'K'},  {"help", no_argument, 0, 'h'},
    {"mpi", no_argument, 0, 'P'},
    {"step-timeout", required_argument, 0, 't'}, {"max-prompt-bytes", required_argument, 0, 'B'},
    {"handshake-timeout", required_argument, 0, 'T'}, {"idle-timeout", required_argument, 0, 'I'},
    {"max-conns", required_argument, 0, 'N'},
    {"max-requests", required_argument, 0, 'q'}, {"max-prompt-memory", required_argument, 0, 'G'},
    {"max-conn-prompt-memory", required_argument, 0, 'g'},
    {"rope-scaling", required_argument, 0, 'R'}, {"rope-scale", required_argument, 0, 'r'},
    {"yarn-orig-ctx", required_argument, 0, 'Y'}, {"http-listen", required_argument, 0, 'L'},
    {"config", required_argument, 0, CLI_CONF_OPT},
    {0, 0, 0, 0},
};

coord_args coord_args_defaults(void) {
    return (coord_args){.o = {.listen = NULL, .cluster_id = "baton", .want_workers = 1, .n_slots = 16,
                              .max_batch = 128, .chunk = 64, .handshake_ms = 10000, .idle_ms = 300000,
                              .max_conns = 1024, .rope = MODEL_ROPE_OPTS_UNSET}};
}

/* Integer options: where each goes and its range. */
typedef struct coord_int_opt {
    int ch;
    const char *name;
    long long lo, hi;
    size_t offset; /* in coord_opts */
    int size;      /* of the field: 4 (int, uint32_t) or 8 */
} coord_int_opt;

#define INT_OPT(ch, name, lo, hi, field) {ch, name, lo, hi, offsetof(coord_opts, field), (int)sizeof(((coord_opts *)0)->field)}
static const coord_int_opt int_opts[] = {
    INT_OPT('w', "--workers", 1, PLAN_MAX_NODES, want_workers),
    INT_OPT('s', "--slots", 1, 4096, n_slots),
    INT_OPT('c', "--ctx", 1, 1 << 24, n_ctx),
    INT_OPT('b', "--max-batch", 1, 1 << 16, max_batch),
    INT_OPT('k', "--chunk", 1, 1 << 16, chunk),
    INT_OPT('i', "--inflight", 1, 1024, max_inflight),
    INT_OPT('H', "--heartbeat-timeout", 100, 3600000, heartbeat_timeout_ms),
    INT_OPT('t', "--step-timeout", 100, 86400000, step_timeout_ms),
    INT_OPT('q', "--max-requests", 1, 1 << 24, max_requests),
    INT_OPT('T', "--handshake-timeout", 1, 3600000, handshake_ms),
    INT_OPT('I', "--idle-timeout", 0, 0x7fffffff, idle_ms),
    INT_OPT('N', "--max-conns", 1, 1 << 24, max_conns),
    INT_OPT('Y', "--yarn-orig-ctx", 1, 1 << 30, rope.orig_ctx),
};
#undef INT_OPT

/* Size options (suffixes K, M, G): where each goes and its range. */
typedef struct coord_bytes_opt {
    int ch;
    const char *name;
    uint64_t lo, hi;
    size_t offset; /* of a uint64_t in coord_opts */
} coord_bytes_opt;

static const coord_bytes_opt bytes_opts[] = {
    {'F', "--max-frame", 1024, 0x7fffffff, offsetof(coord_opts, max_frame)},
    {'B', "--max-prompt-bytes", 1, 1ull << 32, offsetof(coord_opts, max_prompt_bytes)},
    {'G', "--max-prompt-memory", 1, 1ull << 40, offsetof(coord_opts, max_prompt_memory)},
    {'g', "--max-conn-prompt-memory", 1, 1ull << 40, offsetof(coord_opts, max_conn_prompt_memory)},
};

/* Options taken as they are (addresses, paths, the cluster id). */
typedef struct coord_str_opt {
    int ch;
    size_t offset; /* of a const char * in coord_opts */
} coord_str_opt;

static const coord_str_opt str_opts[] = {
    {'l', offsetof(coord_opts, listen)},         {'m', offsetof(coord_opts, model_path)},
    {'C', offsetof(coord_opts, cluster_id)},     {'M', offsetof(coord_opts, metrics_listen)},
    {'L', offsetof(coord_opts, http_listen)},    {'S', offsetof(coord_opts, secret_file)},
    {'A', offsetof(coord_opts, admin_token_file)}, {'K', offsetof(coord_opts, api_keys_file)},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int coord_args_apply(coord_args *a, int ch, const char *arg, char *err, size_t errlen) {
    char why[200];
    char *base = (char *)&a->o;
    for (size_t i = 0; i < COUNT(str_opts); i++)
        if (str_opts[i].ch == ch) {
            *(const char **)(base + str_opts[i].offset) = arg;
            return 0;
        }
    for (size_t i = 0; i < COUNT(int_opts); i++) {
        const coord_int_opt *p = &int_opts[i];
        if (p->ch != ch) continue;
        long long v;
        if (cli_int(arg, p->lo, p->hi, &v, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", p->name, why);
            return -1;
        }
        if (p->size == 8) {
            int64_t x = v;
            memcpy(base + p->offset, &x, sizeof x);
        } else { /* int or uint32_t: every range here fits both */
            int32_t x = (int32_t)v;
            memcpy(base + p->offset, &x, sizeof x);
        }
        if (ch == 'w') a->workers_set = true;
        return 0;
    }
    for (size_t i = 0; i < COUNT(bytes_opts); i++) {
        const coord_bytes_opt *p = &bytes_opts[i];
        if (p->ch != ch) continue;
        uint64_t v;
        if (cli_bytes(arg, p->lo, p->hi, &v, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", p->name, why);
            return -1;
        }
        memcpy(base + p->offset, &v, sizeof v);
        return 0;
    }
    switch (ch) {
    case 'h':
    case CLI_CONF_OPT: return 0;
    case 'P': a->mpi = true; return 0;
    case 'R': {
        int t = model_rope_scaling_from_name(arg);
        if (t < 0) {
            snprintf(err, errlen, "--rope-scaling must be none or yarn, got '%s'", arg);
            return -1;
        }
        a->o.rope.type = t;
        return 0;
    }
    case 'r':
        if (cli_float(arg, 1.0000001, 1024, &a->o.rope.factor, why, sizeof why) != 0) {
            snprintf(err, errlen, "--rope-scale: %s", why);
            return -1;
        }
        return 0;
    default: snprintf(err, errlen, "unknown or incomplete option"); return -1;
    }
}
