/* baton_client.c - blocking client over a plain socket. See baton_client.h. */
#include "baton_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "baton.pb-c.h"
#include "errmsg.h"
#include "frame.h"
#include "status.h"

struct baton_client {
    int fd;
    uint32_t next_call;
    uint8_t *buf; /* last frame's body */
    size_t cap;
};

const char *baton_status_name(int status) { return status_name(status); }

baton_gen_params baton_gen_defaults(void) {
    baton_gen_params p;
    memset(&p, 0, sizeof p);
    p.top_p = 1.0f;
    p.repetition_penalty = 1.0f;
    return p;
}

static int write_all(int fd, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_frame(baton_client *c, uint32_t kind, uint32_t call_id, const ProtobufCMessage *msg) {
    size_t ml = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t *b = malloc(FRAME_HEADER_BYTES + ml);
    if (!b) return -1;
    frame_header h = {.kind = (uint16_t)kind, .call_id = call_id, .msg_len = (uint32_t)ml};
    frame_header_encode(&h, b);
    if (msg) protobuf_c_message_pack(msg, b + FRAME_HEADER_BYTES);
    int rc = write_all(c->fd, b, FRAME_HEADER_BYTES + ml);
    free(b);
    return rc;
}

/* Reads one frame; its message is c->buf[0, h->msg_len). -1 on a broken connection. */
static int read_frame(baton_client *c, frame_header *h) {
    uint8_t hb[FRAME_HEADER_BYTES];
    if (read_all(c->fd, hb, sizeof hb) != 0 || frame_header_decode(hb, h) != 0) return -1;
    size_t body = (size_t)h->msg_len + h->payload_len;
    if (body > FRAME_DEFAULT_MAX) return -1;
    if (body > c->cap) {
        uint8_t *nb = realloc(c->buf, body);
        if (!nb) return -1;
        c->buf = nb;
        c->cap = body;
    }
    return body ? read_all(c->fd, c->buf, body) : 0;
}

/* Turns a CallStatus frame into a code and message. */
static int read_status(baton_client *c, const frame_header *h, char *msg, size_t msglen) {
    Baton__CallStatus *st = baton__call_status__unpack(NULL, h->msg_len, c->buf);
    if (!st) {
        err_set(msg, msglen, "malformed status from the server");
        return BATON_STATUS_INTERNAL;
    }
    int code = (int)st->code;
    err_set(msg, msglen, "%s", st->message ? st->message : "");
    baton__call_status__free_unpacked(st, NULL);
    return code;
}

/* The hello, the proof and the answer (see AuthProof in baton.proto). 0, or a
 * status code with the reason in err. */
static int handshake(baton_client *c, const char *host_port, const baton_connect_opts *o, const auth_key *cred,
                     char *err, size_t errlen) {
    uint8_t nonce[AUTH_NONCE_BYTES], mac[AUTH_MAC_BYTES];
    auth_nonce(nonce);
    Baton__Hello h = BATON__HELLO__INIT;
    h.protocol_version = FRAME_PROTOCOL_VERSION;
    h.role = o->admin ? BATON__ROLE__ROLE_ADMIN : BATON__ROLE__ROLE_CLIENT;
    h.cluster_id = (char *)(o->cluster_id ? o->cluster_id : "baton");
    h.name = o->admin ? "admin" : "client";
    h.accepted = true;
    h.nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    if (send_frame(c, BATON__FRAME_KIND__FRAME_HELLO, 0, &h.base) != 0) {
        err_set(err, errlen, "connection to %s lost during the hello", host_port);
        return BATON_STATUS_UNAVAILABLE;
    }
    for (int step = 0; step < 2; step++) { /* 0: the server's hello, 1: its answer to our proof */
        frame_header fh;
        if (read_frame(c, &fh) != 0) {
            err_set(err, errlen, "connection to %s lost during the hello", host_port);
            return BATON_STATUS_UNAVAILABLE;
        }
        if (fh.kind == BATON__FRAME_KIND__FRAME_CALL_STATUS) {
            char m[200];
            int code = read_status(c, &fh, m, sizeof m);
            err_set(err, errlen, "%s refused the connection: %s", host_port, m);
            return code ? code : BATON_STATUS_UNKNOWN;
        }
        if (step == 1) {
            if (fh.kind == BATON__FRAME_KIND__FRAME_AUTH_OK) return BATON_STATUS_OK;
            break;
        }
        Baton__Hello *sh =
            fh.kind == BATON__FRAME_KIND__FRAME_HELLO ? baton__hello__unpack(NULL, fh.msg_len, c->buf) : NULL;
        if (!sh || sh->protocol_version != FRAME_PROTOCOL_VERSION || sh->role != BATON__ROLE__ROLE_COORDINATOR ||
            sh->nonce.len != AUTH_NONCE_BYTES) {
            if (sh) baton__hello__free_unpacked(sh, NULL);
            break;
        }
        auth_transcript t = {h.cluster_id, h.role, BATON__ROLE__ROLE_COORDINATOR, nonce, sh->nonce.data};
        Baton__AuthProof p = BATON__AUTH_PROOF__INIT;
        if (cred) {
            auth_mac(cred, o->admin ? AUTH_ADMIN : AUTH_CLIENT, AUTH_CONNECTOR, &t, mac);
            p.key_proof = (ProtobufCBinaryData){sizeof mac, mac};
        }
        baton__hello__free_unpacked(sh, NULL);
        if (send_frame(c, BATON__FRAME_KIND__FRAME_AUTH_PROOF, 0, &p.base) != 0) {
            err_set(err, errlen, "connection to %s lost during the hello", host_port);
            return BATON_STATUS_UNAVAILABLE;
        }
    }
    err_set(err, errlen, "%s is not a Baton coordinator speaking protocol %d", host_port, FRAME_PROTOCOL_VERSION);
    return BATON_STATUS_UNAVAILABLE;
}

/* The credential of `o` (admin token or API key) into *cred: 1 if there is
 * one, 0 if none, -1 (message in err) if it is malformed. */
static int opts_credential(const baton_connect_opts *o, auth_key *cred, char *err, size_t errlen) {
    const char *s = o->admin ? o->admin_token : o->api_key;
    if (!s) return 0;
    char why[160];
    if (auth_key_from(s, strlen(s), cred, why, sizeof why) == 0) return 1;
    err_set(err, errlen, "the %s %s", o->admin ? "admin token" : "API key", why);
    return -1;
}

baton_client *baton_connect_with(const char *host_port, const baton_connect_opts *o, int *status, char *err,
                                 size_t errlen) {
    int st_local;
    if (!status) status = &st_local;
    *status = BATON_STATUS_INVALID_ARGUMENT;
    auth_key cred;
    if (opts_credential(o, &cred, err, errlen) < 0) return NULL; /* before connecting: a usage error */
    *status = BATON_STATUS_UNAVAILABLE;
    const char *colon = host_port ? strrchr(host_port, ':') : NULL;
    if (!colon) {
        err_set(err, errlen, "server address '%s' is not HOST:PORT", host_port ? host_port : "");
        return NULL;
    }
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - host_port), host_port);
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res) {
        err_set(err, errlen, "cannot resolve '%s'", host_port);
        return NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        err_set(err, errlen, "cannot connect to %s: %s", host_port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return baton_connect_fd(fd, host_port, o, status, err, errlen);
}

baton_client *baton_connect_fd(int fd, const char *peer, const baton_connect_opts *o, int *status, char *err,
                               size_t errlen) {
    int st_local;
    if (!status) status = &st_local;
    *status = BATON_STATUS_INVALID_ARGUMENT;
    auth_key cred;
    int has_cred = opts_credential(o, &cred, err, errlen);
    if (has_cred < 0) {
        close(fd);
        return NULL;
    }
    baton_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        *status = BATON_STATUS_UNAVAILABLE;
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = fd;
    *status = handshake(c, peer, o, has_cred ? &cred : NULL, err, errlen);
    if (*status != BATON_STATUS_OK) {
        baton_close(c);
        return NULL;
    }
    return c;
}

baton_client *baton_connect(const char *host_port, const char *cluster_id, char *err, size_t errlen) {
    baton_connect_opts o = {.cluster_id = cluster_id};
    return baton_connect_with(host_port, &o, NULL, err, errlen);
}

baton_client *baton_connect_admin(const char *host_port, const char *cluster_id, char *err, size_t errlen) {
    baton_connect_opts o = {.cluster_id = cluster_id, .admin = true};
    return baton_connect_with(host_port, &o, NULL, err, errlen);
}

void baton_close(baton_client *c) {
    if (!c) return;
    close(c->fd);
    free(c->buf);
    free(c);
}

void baton_result_free(baton_result *r) {
    if (!r) return;
    free(r->tokens);
    free(r->text);
    free(r->prompt_logprobs);
    r->tokens = NULL;
    r->text = NULL;
    r->prompt_logprobs = NULL;
}

static int append(baton_result *r, const Baton__GenerateChunk *ch) {
    int32_t *t = realloc(r->tokens, (r->n_tokens + ch->n_tokens + 1) * sizeof *t);
    if (!t) return -1;
    r->tokens = t;
    if (ch->n_tokens) memcpy(t + r->n_tokens, ch->tokens, ch->n_tokens * sizeof *t); /* tokens is NULL when none */
    r->n_tokens += ch->n_tokens;
    size_t tl = ch->text ? strlen(ch->text) : 0;
    char *s = realloc(r->text, r->text_len + tl + 1);
    if (!s) return -1;
    r->text = s;
    memcpy(s + r->text_len, ch->text ? ch->text : "", tl);
    r->text_len += tl;
    s[r->text_len] = 0;
    if (ch->n_prompt_logprobs && !r->prompt_logprobs) { /* the first chunk's */
        if (!(r->prompt_logprobs = malloc(ch->n_prompt_logprobs * sizeof *r->prompt_logprobs))) return -1;
        memcpy(r->prompt_logprobs, ch->prompt_logprobs, ch->n_prompt_logprobs * sizeof *r->prompt_logprobs);
        r->n_prompt_logprobs = ch->n_prompt_logprobs;
    }
    return 0;
}

int baton_generate(baton_client *c, const baton_gen_params *p, baton_chunk_cb cb, void *ctx, baton_result *out) {
    memset(out, 0, sizeof *out);
    out->text = calloc(1, 1);
    Baton__GenerateRequest g = BATON__GENERATE_REQUEST__INIT;
    Baton__SamplingParams sp = BATON__SAMPLING_PARAMS__INIT;
    g.n_tokens = p->n_tokens;
    g.tokens = (int32_t *)p->tokens;
    g.text = (char *)(p->text ? p->text : "");
    Baton__ChatMessage *cm = calloc(p->n_chat + 1, sizeof *cm);
    Baton__ChatMessage **cp = calloc(p->n_chat + 1, sizeof *cp);
    if (!cm || !cp || !out->text) {
        free(cm);
        free(cp);
        out->status = BATON_STATUS_RESOURCE_EXHAUSTED;
        snprintf(out->message, sizeof out->message, "out of memory");
        return out->status;
    }
    for (size_t i = 0; i < p->n_chat; i++) {
        baton__chat_message__init(&cm[i]);
        cm[i].role = (char *)p->chat[i].role;
        cm[i].content = (char *)p->chat[i].content;
        cp[i] = &cm[i];
    }
    g.n_chat = p->n_chat;
    g.chat = cp;
    sp.temperature = p->temperature;
    sp.top_k = p->top_k;
    sp.top_p = p->top_p;
    sp.min_p = p->min_p;
    sp.repetition_penalty = p->repetition_penalty;
    sp.presence_penalty = p->presence_penalty;
    sp.frequency_penalty = p->frequency_penalty;
    sp.penalty_last_n = p->penalty_last_n;
    sp.seed = p->seed;
    g.sampling = &sp;
    g.max_tokens = p->max_tokens;
    g.n_stop = p->n_stop;
    g.stop = (char **)p->stop;
    g.deadline_ms = p->deadline_ms;
    g.ignore_eos = p->ignore_eos;
    g.prompt_logprobs = p->prompt_logprobs;
    uint32_t call = ++c->next_call;
    int rc = send_frame(c, BATON__FRAME_KIND__FRAME_GENERATE, call, &g.base);
    free(cm);
    free(cp);
    if (rc != 0) {
        out->status = BATON_STATUS_UNAVAILABLE;
        snprintf(out->message, sizeof out->message, "connection lost sending the request");
        return out->status;
    }
    bool cancelled = false;
    for (;;) {
        frame_header h;
        if (read_frame(c, &h) != 0) {
            out->status = BATON_STATUS_UNAVAILABLE;
            snprintf(out->message, sizeof out->message, "connection to the coordinator lost");
            return out->status;
        }
        if (h.call_id != call) continue;
        if (h.kind == BATON__FRAME_KIND__FRAME_CALL_STATUS) {
            out->status = read_status(c, &h, out->message, sizeof out->message);
            return out->status;
        }
        if (h.kind != BATON__FRAME_KIND__FRAME_GENERATE_CHUNK) continue;
        Baton__GenerateChunk *ch = baton__generate_chunk__unpack(NULL, h.msg_len, c->buf);
        if (!ch) continue;
        append(out, ch);
        if (ch->done) {
            out->n_prompt = ch->n_prompt;
            out->prefill_s = ch->prefill_s;
            out->decode_s = ch->decode_s;
            snprintf(out->finish_reason, sizeof out->finish_reason, "%s", ch->finish_reason ? ch->finish_reason : "");
        }
        if (cb && !cancelled) {
            baton_chunk bc = {ch->tokens, ch->n_tokens, ch->logprobs, ch->text ? ch->text : "",
                              ch->text ? strlen(ch->text) : 0};
            if (cb(ctx, &bc) != 0) {
                cancelled = true;
                Baton__Cancel cn = BATON__CANCEL__INIT;
                send_frame(c, BATON__FRAME_KIND__FRAME_CANCEL, call, &cn.base);
            }
        }
        baton__generate_chunk__free_unpacked(ch, NULL);
    }
}

/* Sends a request and waits for its reply frame and final status. On OK *reply
 * is the unpacked reply (of `desc`; the caller frees it), else NULL. */
static int simple_call(baton_client *c, uint32_t kind, const ProtobufCMessage *req, uint32_t reply_kind,
                       void **reply, const ProtobufCMessageDescriptor *desc, char *msg, size_t msglen) {
    uint32_t call = ++c->next_call;
    *reply = NULL;
    if (send_frame(c, kind, call, req) != 0) {
        err_set(msg, msglen, "connection lost");
        return BATON_STATUS_UNAVAILABLE;
    }
    for (;;) {
        frame_header h;
        if (read_frame(c, &h) != 0) {
            err_set(msg, msglen, "connection lost");
            if (*reply) protobuf_c_message_free_unpacked(*reply, NULL);
            *reply = NULL;
            return BATON_STATUS_UNAVAILABLE;
        }
        if (h.call_id != call) continue;
        if (h.kind == reply_kind && !*reply) *reply = protobuf_c_message_unpack(desc, NULL, h.msg_len, c->buf);
        if (h.kind == BATON__FRAME_KIND__FRAME_CALL_STATUS) {
            int st = read_status(c, &h, msg, msglen);
            if (st == BATON_STATUS_OK && !*reply) {
                err_set(msg, msglen, "no reply from the server");
                st = BATON_STATUS_INTERNAL;
            }
            if (st != BATON_STATUS_OK && *reply) {
                protobuf_c_message_free_unpacked(*reply, NULL);
                *reply = NULL;
            }
            return st;
        }
    }
}

int baton_tokenize(baton_client *c, const char *text, bool parse_special, int32_t **ids, size_t *n_ids, char *msg,
                   size_t msglen) {
    Baton__TokenizeRequest t = BATON__TOKENIZE_REQUEST__INIT;
    t.text = (char *)text;
    t.parse_special = parse_special;
    void *rep;
    int st = simple_call(c, BATON__FRAME_KIND__FRAME_TOKENIZE, &t.base, BATON__FRAME_KIND__FRAME_TOKENIZE_REPLY, &rep,
                         &baton__tokenize_reply__descriptor, msg, msglen);
    *ids = NULL;
    *n_ids = 0;
    if (st != BATON_STATUS_OK) return st;
    Baton__TokenizeReply *r = rep;
    *ids = malloc((r->n_tokens + 1) * sizeof **ids);
    if (*ids) {
        if (r->n_tokens) memcpy(*ids, r->tokens, r->n_tokens * sizeof **ids); /* tokens is NULL when none */
        *n_ids = r->n_tokens;
    }
    baton__tokenize_reply__free_unpacked(r, NULL);
    return st;
}

int baton_detokenize(baton_client *c, const int32_t *ids, size_t n_ids, char **text, char *msg, size_t msglen) {
    Baton__TokenizeRequest t = BATON__TOKENIZE_REQUEST__INIT;
    t.tokens = (int32_t *)ids;
    t.n_tokens = n_ids;
    void *rep;
    int st = simple_call(c, BATON__FRAME_KIND__FRAME_TOKENIZE, &t.base, BATON__FRAME_KIND__FRAME_TOKENIZE_REPLY, &rep,
                         &baton__tokenize_reply__descriptor, msg, msglen);
    *text = NULL;
    if (st != BATON_STATUS_OK) return st;
    Baton__TokenizeReply *r = rep;
    *text = strdup(r->text ? r->text : "");
    baton__tokenize_reply__free_unpacked(r, NULL);
    return st;
}

/* The health or admin-state call: both answer a HealthReply. */
static int health_call(baton_client *c, uint32_t kind, uint32_t reply_kind, baton_health_info *out, char *msg,
                       size_t msglen) {
    memset(out, 0, sizeof *out);
    Baton__HealthRequest req = BATON__HEALTH_REQUEST__INIT;
    void *rep;
    int st = simple_call(c, kind, &req.base, reply_kind, &rep, &baton__health_reply__descriptor, msg, msglen);
    if (st != BATON_STATUS_OK) return st;
    Baton__HealthReply *r = rep;
    out->serving = r->serving;
    out->n_workers = r->n_workers;
    out->active_requests = r->active_requests;
    out->queued_requests = r->queued_requests;
    snprintf(out->plan_error, sizeof out->plan_error, "%s", r->plan_error ? r->plan_error : "");
    out->plan_id = r->plan_id;
    out->inflight_batches = r->inflight_batches;
    out->predicted_step_s = r->predicted_step_s;
    out->tokens_per_s = r->tokens_per_s;
    out->uptime_s = r->uptime_s;
    out->step_seconds_avg = r->step_seconds_avg;
    out->tokens_generated = r->tokens_generated;
    out->tokens_prompt = r->tokens_prompt;
    out->requests_total = r->requests_total;
    out->requests_failed = r->requests_failed;
    out->replans = r->replans;
    out->nodes = calloc(r->n_nodes + 1, sizeof *out->nodes);
    if (out->nodes) {
        out->n_nodes = r->n_nodes;
        for (size_t i = 0; i < r->n_nodes; i++) {
            const Baton__NodeStatus *n = r->nodes[i];
            baton_node_info *o = &out->nodes[i];
            o->id = n->node_id;
            snprintf(o->address, sizeof o->address, "%s", n->address ? n->address : "");
            o->layer_begin = n->layer_begin;
            o->layer_end = n->layer_end;
            o->embed = n->embed;
            o->head = n->head;
            o->ready = n->ready;
            o->slots_used = n->slots_used;
            o->kv_positions = n->kv_positions;
            o->peak_rss = n->peak_rss;
            o->weight_bytes = n->weight_bytes;
            o->kv_bytes = n->kv_bytes;
            o->hop_bytes = n->hop_bytes;
            o->hop_frames = n->hop_frames;
            o->busy_us = n->busy_us;
            snprintf(o->state, sizeof o->state, "%s", n->state ? n->state : "");
            o->memory = n->memory;
            snprintf(o->isa, sizeof o->isa, "%s", n->isa ? n->isa : "");
            snprintf(o->device, sizeof o->device, "%s", n->device && n->device[0] ? n->device : "cpu");
            o->cores = n->cores;
            o->seconds_per_layer = n->seconds_per_layer;
            o->heartbeat_age_ms = n->heartbeat_age_ms;
            o->stage = n->stage;
            o->stage_seconds = n->stage_seconds;
            o->steps = n->steps;
            o->queue_peak = n->queue_peak;
        }
    }
    baton__health_reply__free_unpacked(r, NULL);
    return st;
}

int baton_health(baton_client *c, baton_health_info *out, char *msg, size_t msglen) {
    return health_call(c, BATON__FRAME_KIND__FRAME_HEALTH, BATON__FRAME_KIND__FRAME_HEALTH_REPLY, out, msg, msglen);
}

int baton_admin_state(baton_client *c, baton_health_info *out, char *msg, size_t msglen) {
    return health_call(c, BATON__FRAME_KIND__FRAME_ADMIN_STATE, BATON__FRAME_KIND__FRAME_ADMIN_STATE_REPLY, out, msg,
                       msglen);
}

int baton_admin_node_op(baton_client *c, int op, uint32_t node_id, char *msg, size_t msglen) {
    Baton__AdminNodeOp req = BATON__ADMIN_NODE_OP__INIT;
    req.op = (Baton__AdminOp)op;
    req.node_id = node_id;
    void *rep;
    int st = simple_call(c, BATON__FRAME_KIND__FRAME_ADMIN_NODE_OP, &req.base,
                         BATON__FRAME_KIND__FRAME_ADMIN_NODE_OP_REPLY, &rep, &baton__admin_node_op_reply__descriptor, msg,
                         msglen);
    if (st != BATON_STATUS_OK) return st;
    Baton__AdminNodeOpReply *r = rep;
    err_set(msg, msglen, "%s", r->message ? r->message : "");
    baton__admin_node_op_reply__free_unpacked(r, NULL);
    return st;
}

int baton_metrics(baton_client *c, char **text, char *msg, size_t msglen) {
    Baton__MetricsRequest req = BATON__METRICS_REQUEST__INIT;
    void *rep;
    *text = NULL;
    int st = simple_call(c, BATON__FRAME_KIND__FRAME_METRICS, &req.base, BATON__FRAME_KIND__FRAME_METRICS_REPLY, &rep,
                         &baton__metrics_reply__descriptor, msg, msglen);
    if (st != BATON_STATUS_OK) return st;
    Baton__MetricsReply *r = rep;
    *text = strdup(r->text ? r->text : "");
    baton__metrics_reply__free_unpacked(r, NULL);
    return st;
}

void baton_health_free(baton_health_info *h) {
    if (!h) return;
    free(h->nodes);
    h->nodes = NULL;
}

int baton_model(baton_client *c, baton_model_info *out, char *msg, size_t msglen) {
    memset(out, 0, sizeof *out);
    Baton__ModelInfoRequest req = BATON__MODEL_INFO_REQUEST__INIT;
    void *rep;
    int st = simple_call(c, BATON__FRAME_KIND__FRAME_MODEL_INFO, &req.base, BATON__FRAME_KIND__FRAME_MODEL_INFO_REPLY,
                         &rep, &baton__model_info_reply__descriptor, msg, msglen);
    if (st != BATON_STATUS_OK) return st;
    Baton__ModelInfoReply *r = rep;
    out->n_layer = r->n_layer;
    out->n_embd = r->n_embd;
    out->n_vocab = r->n_vocab;
    out->n_ctx = r->n_ctx;
    out->has_tokenizer = r->has_tokenizer;
    baton__model_info_reply__free_unpacked(r, NULL);
    return st;
}
