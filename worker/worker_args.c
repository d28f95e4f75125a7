/* worker_args.c - baton-worker's options and their value checks; see worker_args.h. */
#include "worker_args.h"

#include <stdio.h>
#include <string.h>

#include "cliconf.h"
#include "cliparse.h"
#include "codec.h"

const struct option worker_args_options[] = {
    {"coordinator", required_argument, 0, 'c'}, {"model", required_argument, 0, 'm'},
    {"listen", required_argument, 0, 'l'},      {"threads", required_argument, 0, 't'},
    {"memory", required_argument, 0, 'M'},      {"speed", required_argument, 0, 's'},
    {"kv", required_argument, 0, 'k'},          {"cluster-id", required_argument, 0, 'C'},
    {"max-frame", required_argument, 0, 'F'},   {"secret", required_argument, 0, 'S'},
    {"queue-limit", required_argument, 0, 'Q'}, {"help", no_argument, 0, 'h'},
    {"mpi", no_argument, 0, 'P'},               {"codec", required_argument, 0, 'X'},
    {"handshake-timeout", required_argument, 0, 'T'}, {"idle-timeout", required_argument, 0, 'I'},
    {"max-conns", required_argument, 0, 'N'},   {"device", required_argument, 0, 'D'},
    {"config", required_argument, 0, CLI_CONF_OPT}, {"measure", no_argument, 0, 'E'},
    {0, 0, 0, 0},
};

worker_args worker_args_defaults(void) {
    return (worker_args){.o = {.listen = "127.0.0.1:0", .cluster_id = "baton", .kv_type = TENSOR_F16, .speed = -1,
                               .codec = CODEC_DEFAULT}};
}

/* --kv's names. */
static const struct {
    const char *name;
    uint32_t type;
} kv_types[] = {{"f16", TENSOR_F16}, {"f32", TENSOR_F32}, {"q8_0", TENSOR_Q8_0}};

/* A whole decimal integer in [lo, hi] into *out: 0, or -1 with "WHAT: why" in err. */
static int u32_opt(const char *s, const char *what, uint32_t lo, uint32_t hi, uint32_t *out, char *err, size_t errlen) {
    long long v;
    char why[200];
    if (cli_int(s, lo, hi, &v, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* A size (suffixes K, M, G) in [lo, hi] into *out: 0, or -1 with "WHAT: why" in err. */
static int bytes_opt(const char *s, const char *what, uint64_t lo, uint64_t hi, uint64_t *out, char *err,
                     size_t errlen) {
    char why[200];
    if (cli_bytes(s, lo, hi, out, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return -1;
    }
    return 0;
}

int worker_args_apply(worker_args *a, int ch, const char *arg, char *err, size_t errlen) {
    worker_opts *o = &a->o;
    char why[200];
    uint32_t u;
    switch (ch) {
    case 'h':
    case CLI_CONF_OPT: return 0;
    case 'c': o->coordinator = arg; return 0;
    case 'm': o->model_path = arg; return 0;
    case 'l': o->listen = arg; return 0;
    case 'C': o->cluster_id = arg; return 0;
    case 'S': o->secret_file = arg; return 0;
    case 'P': o->mpi = true; return 0;
    case 'E': o->measure = true; return 0;
    case 't':
        if (u32_opt(arg, "--threads", 1, 4096, &u, err, errlen) != 0) return -1;
        o->threads = (int)u;
        return 0;
    case 'T': return u32_opt(arg, "--handshake-timeout", 1, 3600000, &o->handshake_ms, err, errlen);
    case 'I': return u32_opt(arg, "--idle-timeout", 0, 0x7fffffff, &o->idle_ms, err, errlen);
    case 'N': return u32_opt(arg, "--max-conns", 1, 1u << 24, &o->max_conns, err, errlen);
    case 'M': return bytes_opt(arg, "--memory", 1, UINT64_MAX, &o->memory, err, errlen);
    case 'F': return bytes_opt(arg, "--max-frame", 1024, 0x7fffffff, &o->max_frame, err, errlen);
    case 'Q': return bytes_opt(arg, "--queue-limit", 4096, SIZE_MAX, &a->queue_limit, err, errlen);
    case 's':
        if (cli_float(arg, 1e-9, 1e6, &o->speed, why, sizeof why) != 0) {
            snprintf(err, errlen, "--speed: %s", why);
            return -1;
        }
        return 0;
    case 'k':
        for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++)
            if (!strcmp(arg, kv_types[i].name)) {
                o->kv_type = kv_types[i].type;
                return 0;
            }
        snprintf(err, errlen, "--kv must be f16, f32 or q8_0");
        return -1;
    case 'D': {
        int index, kind = gpu_parse_device(arg, &index);
        if (kind < 0) {
            snprintf(err, errlen, "--device must be cpu, vulkan, vulkan:N or list (not '%s')", arg);
            return -1;
        }
        if (kind == GPU_DEVICE_LIST) a->list_devices = true;
        else o->device = arg;
        return 0;
    }
    case 'X': {
        int c = codec_from_name(arg);
        if (c < 0) {
            snprintf(err, errlen, "--codec: unknown codec '%s'", arg);
            return -1;
        }
        o->codec = c;
        return 0;
    }
    default: snprintf(err, errlen, "unknown or incomplete option"); return -1;
    }
}
