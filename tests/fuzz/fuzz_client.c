/* fuzz_client.c - the client library (client/baton_client.c) reading any bytes
 * from its coordinator: the handshake, then the answers of one call. The bytes
 * wait in one end of a socketpair; the library reads the other end through
 * baton_connect_fd, as it reads a TCP socket.
 * Input: byte 0 picks the call (generate: text, tokens or chat, cancelling
 * after some chunks; tokenize, detokenize, health, admin state and node ops,
 * metrics, model) and whether to connect as an admin; the rest is what the
 * coordinator says, starting with its hello. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "baton_client.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int on_chunk(void *ctx, const baton_chunk *ch) {
    int *left = ctx;
    if (ch->text_len) (void)(volatile char)ch->text[ch->text_len - 1];
    if (ch->n_tokens) (void)(volatile int32_t)ch->tokens[ch->n_tokens - 1];
    return --*left == 0; /* cancel after that many chunks */
}

static void call(baton_client *c, int which, uint8_t arg) {
    char msg[256];
    switch (which) {
    case 0: case 1: case 2: {
        baton_gen_params p = baton_gen_defaults();
        static const int32_t ids[] = {1, 2, 3};
        baton_chat_msg chat[1] = {{"user", "hi"}};
        if (which == 0) p.text = "hello";
        else if (which == 1) p.tokens = ids, p.n_tokens = 3;
        else p.chat = chat, p.n_chat = 1;
        p.max_tokens = 8;
        int left = arg % 4 ? arg % 4 : -1;
        baton_result r;
        int st = baton_generate(c, &p, on_chunk, &left, &r);
        if (st == 0 && r.text && strlen(r.text) > r.text_len) abort(); /* text_len covers the text */
        baton_result_free(&r);
        break;
    }
    case 3: {
        int32_t *ids = NULL;
        size_t n = 0;
        if (baton_tokenize(c, "hello", arg & 1, &ids, &n, msg, sizeof msg) == 0 && n) (void)(volatile int32_t)ids[n - 1];
        free(ids);
        break;
    }
    case 4: {
        static const int32_t ids[] = {1, 2, 3};
        char *text = NULL;
        if (baton_detokenize(c, ids, 3, &text, msg, sizeof msg) == 0 && text) (void)strlen(text);
        free(text);
        break;
    }
    case 5: case 6: {
        baton_health_info h;
        memset(&h, 0, sizeof h);
        int st = which == 5 ? baton_health(c, &h, msg, sizeof msg) : baton_admin_state(c, &h, msg, sizeof msg);
        if (st == 0) {
            for (size_t i = 0; i < h.n_nodes; i++) (void)strlen(h.nodes[i].state);
            baton_health_free(&h);
        }
        break;
    }
    case 7: (void)baton_admin_node_op(c, 1 + arg % 5, arg, msg, sizeof msg); break;
    case 8: {
        char *text = NULL;
        if (baton_metrics(c, &text, msg, sizeof msg) == 0 && text) (void)strlen(text);
        free(text);
        break;
    }
    default: {
        baton_model_info m;
        (void)baton_model(c, &m, msg, sizeof msg);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 200000) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    size_t off = 1;
    while (off < size) {
        ssize_t n = send(sv[1], data + off, size - off, MSG_DONTWAIT);
        if (n <= 0) break; /* the rest does not fit: the coordinator "said" less */
        off += (size_t)n;
    }
    shutdown(sv[1], SHUT_WR); /* then the connection ends */
    baton_connect_opts o = {.cluster_id = "fuzz", .admin = (data[0] & 0x80) != 0};
    char err[256];
    int st;
    baton_client *c = baton_connect_fd(sv[0], "fuzz", &o, &st, err, sizeof err);
    if (c) {
        call(c, (data[0] & 0x7f) % 10, (uint8_t)(data[0] >> 3));
        baton_close(c);
    } else if (!err[0]) {
        abort(); /* a failed connect always says why */
    }
    close(sv[1]);
    return 0;
}
