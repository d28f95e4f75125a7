/* net_mpi.c - the MPI transport under net.h: see net_mpi.h for the design,
 * net_io.h for the seam. Threads: the progress thread owns every MPI call; the
 * loop thread owns the connections; they share only the two queues below
 * (outgoing messages, incoming events), under one mutex. */
#include "net_mpi.h"

#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "errmsg.h"
#include "log.h"
#include "net_io.h"

#define MPI_TAG_BATON 0x4241 /* every Baton message; the communicator is our own duplicate anyway */
#define HEAD_BYTES 16        /* type, receiver's side, 6 spare bytes, connection id (little endian) */
#define FLUSH_SECONDS 3      /* net_mpi_finalize waits this long for sends to complete */

enum { SIDE_CONNECTOR = 0, SIDE_ACCEPTOR = 1 };

/* Message types (byte 0 of the header); EV_SENT is a local event only. */
enum { MSG_OPEN = 1, MSG_ACCEPT = 2, MSG_DATA = 3, MSG_ACK = 4, MSG_CLOSE = 5, EV_SENT = 16 };

/* An outgoing message (loop -> progress thread) or an incoming event
 * (progress thread -> loop). */
typedef struct mpi_item {
    struct mpi_item *next;
    int rank;            /* destination, or source */
    uint8_t type, side;  /* side: the receiving end's */
    uint64_t id;
    net_write *w;        /* DATA out and EV_SENT: the write (io_head + bytes is the message) */
    uint8_t *buf;        /* received message (owned), header included */
    size_t len;
    uint8_t head[HEAD_BYTES]; /* control message out */
} mpi_item;

/* One end of a logical connection (loop thread only). */
typedef struct mpi_conn {
    struct mpi_conn *next;
    net_conn *c;
    int peer;
    uint64_t id;
    uint8_t side;
    bool reading, connected, peer_closed;
    uint32_t acks;                   /* acknowledgements not yet matched to a write */
    net_write *wq, *wq_tail;         /* writes waiting for their send and acknowledgement */
    mpi_item *held, *held_tail;      /* received, not yet fed (reading paused) */
} mpi_conn;

typedef struct item_list {
    mpi_item *head, *tail;
} item_list;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, init_done, stop, async_on;
    bool attached;  /* loop thread: async initialised */
    int init_rc;
    char init_err[256];
    int rank, size;
    MPI_Comm comm;
    item_list out, ev; /* under mu */
    /* loop thread only */
    uv_async_t async;
    mpi_conn *conns;
    net_server *listener;
    item_list pending_opens; /* OPENs that came before net_listen("mpi") */
    uint32_t next_id;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .rank = -1};

static void list_push(item_list *l, mpi_item *it) {
    it->next = NULL;
    if (l->tail) l->tail->next = it;
    else l->head = it;
    l->tail = it;
}

static void list_append(item_list *dst, item_list *src) {
    if (!src->head) return;
    if (dst->tail) dst->tail->next = src->head;
    else dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

static void head_encode(uint8_t *h, uint8_t type, uint8_t side, uint64_t id) {
    memset(h, 0, HEAD_BYTES);
    h[0] = type;
    h[1] = side;
    for (int i = 0; i < 8; i++) h[8 + i] = (uint8_t)(id >> (8 * i));
}

static uint64_t head_id(const uint8_t *h) {
    uint64_t id = 0;
    for (int i = 0; i < 8; i++) id |= (uint64_t)h[8 + i] << (8 * i);
    return id;
}

/* --- the progress thread ------------------------------------------------- */

/* Hands events to the loop and wakes it. */
static void deliver_events(item_list *evs) {
    if (!evs->head) return;
    pthread_mutex_lock(&g.mu);
    list_append(&g.ev, evs);
    bool on = g.async_on;
    pthread_mutex_unlock(&g.mu);
    if (on) uv_async_send(&g.async);
}

/* Sleeps until a message is queued or timeout_us passes. */
static void wait_for_work(long timeout_us) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += timeout_us * 1000;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&g.mu);
    if (!g.out.head && !g.stop) pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    pthread_mutex_unlock(&g.mu);
}

typedef struct send_set {
    MPI_Request *req;
    mpi_item **item;
    int *idx;
    int n, cap;
} send_set;

static int send_post(send_set *s, mpi_item *it) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        MPI_Request *r = realloc(s->req, (size_t)cap * sizeof *r);
        if (r) s->req = r;
        mpi_item **i = realloc(s->item, (size_t)cap * sizeof *i);
        if (i) s->item = i;
        int *x = realloc(s->idx, (size_t)cap * sizeof *x);
        if (x) s->idx = x;
        if (!r || !i || !x) return -1;
        s->cap = cap;
    }
    const void *buf = it->w ? (const void *)it->w->io_head : (const void *)it->head;
    size_t len = it->w ? HEAD_BYTES + it->w->len : HEAD_BYTES;
    MPI_Isend(buf, (int)len, MPI_BYTE, it->rank, MPI_TAG_BATON, g.comm, &s->req[s->n]);
    s->item[s->n++] = it;
    return 0;
}

/* Completes finished sends: a write becomes an EV_SENT event, a control message is freed. */
static int send_test(send_set *s, item_list *evs) {
    if (!s->n) return 0;
    int done = 0;
    MPI_Testsome(s->n, s->req, &done, s->idx, MPI_STATUSES_IGNORE);
    if (done <= 0) return 0;
    for (int k = 0; k < done; k++) {
        mpi_item *it = s->item[s->idx[k]];
        s->item[s->idx[k]] = NULL;
        if (it->w) {
            it->type = EV_SENT;
            list_push(evs, it);
        } else {
            free(it);
        }
    }
    int m = 0;
    for (int i = 0; i < s->n; i++)
        if (s->item[i]) s->req[m] = s->req[i], s->item[m++] = s->item[i];
    s->n = m;
    return done;
}

/* Receives the messages that have arrived (at most a batch) into events. */
static int recv_some(item_list *evs) {
    int got = 0;
    for (; got < 64; got++) {
        int flag = 0, count = 0;
        MPI_Message msg;
        MPI_Status st;
        MPI_Improbe(MPI_ANY_SOURCE, MPI_TAG_BATON, g.comm, &flag, &msg, &st);
        if (!flag) break;
        MPI_Get_count(&st, MPI_BYTE, &count);
        mpi_item *it = calloc(1, sizeof *it);
        uint8_t *buf = malloc(count > 0 ? (size_t)count : 1);
        if (!it || !buf) {
            log_msg("out of memory receiving an MPI message of %d bytes", count);
            abort(); /* a lost message would corrupt a stream: stop the job (MPI aborts it) */
        }
        MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        if (count < HEAD_BYTES) {
            free(buf);
            free(it);
            continue;
        }
        it->rank = st.MPI_SOURCE;
        it->type = buf[0];
        it->side = buf[1];
        it->id = head_id(buf);
        it->buf = buf;
        it->len = (size_t)count;
        list_push(evs, it);
    }
    return got;
}

static void *progress_main(void *arg) {
    (void)arg;
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    pthread_mutex_lock(&g.mu);
    if (rc != MPI_SUCCESS) {
        g.init_rc = -1;
        snprintf(g.init_err, sizeof g.init_err, "MPI_Init_thread failed (error %d)", rc);
    } else {
        MPI_Comm_dup(MPI_COMM_WORLD, &g.comm);
        MPI_Comm_rank(g.comm, &g.rank);
        MPI_Comm_size(g.comm, &g.size);
    }
    g.init_done = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    if (rc != MPI_SUCCESS) return NULL;

    send_set sends = {0};
    int idle = 0;
    double deadline = 0;
    for (;;) {
        pthread_mutex_lock(&g.mu);
        item_list out = g.out;
        g.out.head = g.out.tail = NULL;
        bool stop = g.stop;
        pthread_mutex_unlock(&g.mu);
        int work = 0;
        for (mpi_item *it = out.head, *next; it; it = next) {
            next = it->next;
            if (send_post(&sends, it) != 0) {
                log_msg("out of memory queueing an MPI send");
                abort();
            }
            work++;
        }
        item_list evs = {0};
        work += send_test(&sends, &evs);
        if (!stop) work += recv_some(&evs);
        deliver_events(&evs);
        if (stop) {
            if (deadline == 0) deadline = clock_s() + FLUSH_SECONDS;
            if (sends.n == 0 || clock_s() > deadline) break;
        }
        if (work) {
            idle = 0;
        } else if (++idle < 16) {
            sched_yield(); /* messages come in bursts: stay close for a moment */
        } else {
            /* a large send only moves (fragment by fragment) while this thread
             * calls MPI: poll often while one is in flight */
            wait_for_work(sends.n ? 10 : idle < 1024 ? 50 : 200);
        }
    }
    if (sends.n)
        log_msg("%d MPI send(s) still pending after %d s at shutdown", sends.n, FLUSH_SECONDS);
    free(sends.req);
    free(sends.idx);
    for (int i = 0; i < sends.n; i++)
        if (!sends.item[i]->w) free(sends.item[i]);
    free(sends.item);
    MPI_Comm_free(&g.comm);
    MPI_Finalize();
    return NULL;
}

/* Queues a message for the progress thread. */
static void post(mpi_item *it) {
    pthread_mutex_lock(&g.mu);
    list_push(&g.out, it);
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static void post_ctl(int rank, uint8_t type, uint8_t side, uint64_t id) {
    mpi_item *it = calloc(1, sizeof *it);
    if (!it) return; /* the peer then misses a control message; only under memory exhaustion */
    it->rank = rank;
    head_encode(it->head, type, side, id);
    post(it);
}

/* --- public: start and stop ----------------------------------------------- */

int net_mpi_init(char *err, size_t errlen) {
    if (g.started) return g.init_rc;
    g.started = true;
    if (pthread_create(&g.thread, NULL, progress_main, NULL) != 0) {
        err_set(err, errlen, "cannot start the MPI progress thread");
        g.init_rc = -1;
        return -1;
    }
    pthread_mutex_lock(&g.mu);
    while (!g.init_done) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    if (g.init_rc != 0) {
        err_set(err, errlen, "%s", g.init_err);
        pthread_join(g.thread, NULL);
    }
    return g.init_rc;
}

const char *net_mpi_missing(void) { return NULL; }

bool net_mpi_active(void) { return g.started && g.init_rc == 0 && !g.stop; }
int net_mpi_rank(void) { return g.rank; }
int net_mpi_size(void) { return g.started && g.init_rc == 0 ? g.size : 0; }

static void free_item(mpi_item *it) {
    if (it->type == EV_SENT && it->w && !it->w->c) free(it->w);
    free(it->buf);
    free(it);
}

static void free_list(item_list *l) {
    for (mpi_item *it = l->head, *next; it; it = next) {
        next = it->next;
        free_item(it);
    }
    l->head = l->tail = NULL;
}

void net_mpi_finalize(void) {
    if (!net_mpi_active()) return;
    for (mpi_conn *mc = g.conns; mc; mc = mc->next) {
        if (mc->peer_closed) continue;
        mc->peer_closed = true;
        post_ctl(mc->peer, MSG_CLOSE, mc->side ^ 1, mc->id);
    }
    pthread_mutex_lock(&g.mu);
    g.stop = true;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.thread, NULL);
    pthread_mutex_lock(&g.mu);
    g.async_on = false;
    pthread_mutex_unlock(&g.mu);
    free_list(&g.ev);
    free_list(&g.out);
    free_list(&g.pending_opens);
    if (g.attached) uv_close((uv_handle_t *)&g.async, NULL);
    g.attached = false;
}

/* --- connections (loop thread) -------------------------------------------- */

static mpi_conn *find_conn(uint64_t id, uint8_t side) {
    for (mpi_conn *mc = g.conns; mc; mc = mc->next)
        if (mc->id == id && mc->side == side) return mc;
    return NULL;
}

static void unlink_conn(mpi_conn *mc) {
    for (mpi_conn **p = &g.conns; *p; p = &(*p)->next)
        if (*p == mc) {
            *p = mc->next;
            return;
        }
}

/* Completes the writes that are both sent and acknowledged, in order. */
static void complete_writes(mpi_conn *mc) {
    net_conn *c = mc->c;
    while (mc->wq && mc->wq->sent && mc->acks > 0) {
        net_write *w = mc->wq;
        mc->wq = w->next;
        if (!mc->wq) mc->wq_tail = NULL;
        mc->acks--;
        net_io_write_done(w, 0);
        if (net_io_closing(c)) return; /* mc is gone */
    }
}

/* True while held messages should be taken: reading is on, or the connection
 * only waits to flush its own writes (then they are dropped, as a closing TCP
 * socket's kernel would, so two ends closing at once cannot wait on each other). */
static bool taking(const mpi_conn *mc) { return mc->reading || net_io_flushing(mc->c); }

/* Feeds held messages while reading is on; acknowledges each one taken. */
static void feed_held(mpi_conn *mc) {
    net_conn *c = mc->c;
    while (!net_io_closing(c) && mc->held && taking(mc)) { /* closing: mc is gone */
        mpi_item *it = mc->held;
        mc->held = it->next;
        if (!mc->held) mc->held_tail = NULL;
        post_ctl(mc->peer, MSG_ACK, mc->side ^ 1, mc->id);
        if (!net_io_flushing(c)) net_io_feed(c, it->buf + HEAD_BYTES, it->len - HEAD_BYTES);
        free_item(it);
    }
}

static void none_read(net_conn *c) { (void)c; }
static int none_write(net_conn *c, net_write *w) { (void)c, (void)w; return -1; }
/* What a connection has once its MPI end is gone and its handle is closing. */
static const net_io_ops mpi_ops_closed = {.read_start = none_read, .read_stop = none_read, .write = none_write};

static void mpi_read_start(net_conn *c) {
    mpi_conn *mc = net_io_state(c);
    mc->reading = true;
    if (mc->held) uv_async_send(&g.async); /* fed from the loop, not from inside net_pause */
}

static void mpi_read_stop(net_conn *c) {
    mpi_conn *mc = net_io_state(c);
    mc->reading = false;
    if (mc->held && net_io_flushing(c)) uv_async_send(&g.async); /* drop them from the loop */
}

static int mpi_write(net_conn *c, net_write *w) {
    mpi_conn *mc = net_io_state(c);
    mpi_item *it = calloc(1, sizeof *it);
    if (!it) return -1;
    head_encode(w->io_head, MSG_DATA, mc->side ^ 1, mc->id);
    w->next = NULL;
    if (mc->wq_tail) mc->wq_tail->next = w;
    else mc->wq = w;
    mc->wq_tail = w;
    it->rank = mc->peer;
    it->w = w;
    post(it);
    return 0;
}

static void mpi_close(net_conn *c) {
    mpi_conn *mc = net_io_state(c);
    unlink_conn(mc);
    if (!mc->peer_closed) post_ctl(mc->peer, MSG_CLOSE, mc->side ^ 1, mc->id);
    for (net_write *w = mc->wq, *next; w; w = next) {
        next = w->next;
        if (w->sent) free(w);
        else w->c = NULL; /* its EV_SENT frees it */
    }
    for (mpi_item *it = mc->held, *next; it; it = next) {
        next = it->next;
        free_item(it);
    }
    net_io_set(c, &mpi_ops_closed, NULL);
    free(mc);
}

static const net_io_ops mpi_ops = {
    .read_start = mpi_read_start, .read_stop = mpi_read_stop, .write = mpi_write, .close = mpi_close};

static void accept_open(const mpi_item *it) {
    mpi_conn *mc = calloc(1, sizeof *mc);
    if (!mc) {
        post_ctl(it->rank, MSG_CLOSE, SIDE_CONNECTOR, it->id);
        return;
    }
    mc->peer = it->rank;
    mc->id = it->id;
    mc->side = SIDE_ACCEPTOR;
    mc->connected = true;
    mc->next = g.conns;
    g.conns = mc;
    post_ctl(mc->peer, MSG_ACCEPT, SIDE_CONNECTOR, mc->id); /* before any byte of ours */
    char addr[32];
    snprintf(addr, sizeof addr, "mpi:%d", it->rank);
    mc->c = net_io_accept(g.listener, &mpi_ops, mc, addr);
    if (!mc->c) {
        unlink_conn(mc);
        post_ctl(mc->peer, MSG_CLOSE, SIDE_CONNECTOR, mc->id);
        free(mc);
    }
}

/* Drops a pending OPEN the connector closed before we listened. */
static bool drop_pending(uint64_t id) {
    mpi_item **p = &g.pending_opens.head, *prev = NULL;
    for (; *p; prev = *p, p = &(*p)->next) {
        if ((*p)->id != id) continue;
        mpi_item *it = *p;
        *p = it->next;
        if (g.pending_opens.tail == it) g.pending_opens.tail = prev;
        free_item(it);
        return true;
    }
    return false;
}

/* Handles one event; takes ownership of it. */
static void handle_event(mpi_item *it) {
    mpi_conn *mc = it->type == EV_SENT ? NULL : find_conn(it->id, it->side);
    switch (it->type) {
    case EV_SENT:
        if (it->w->c) {
            it->w->sent = true;
            mc = net_io_state(it->w->c);
            it->w = NULL;
            complete_writes(mc);
        }
        break;
    case MSG_OPEN:
        if (!g.listener) {
            list_push(&g.pending_opens, it);
            return;
        }
        accept_open(it);
        break;
    case MSG_ACCEPT:
        if (mc && !mc->connected) {
            mc->connected = true;
            net_io_connected(mc->c);
        }
        break;
    case MSG_DATA:
        if (mc) {
            it->next = NULL;
            if (mc->held_tail) mc->held_tail->next = it;
            else mc->held = it;
            mc->held_tail = it;
            feed_held(mc);
            return;
        }
        break;
    case MSG_ACK:
        if (mc) {
            mc->acks++;
            complete_writes(mc);
        }
        break;
    case MSG_CLOSE:
        if (it->side == SIDE_ACCEPTOR) drop_pending(it->id);
        if (mc) {
            char why[64];
            snprintf(why, sizeof why, "connection closed by mpi:%d", mc->peer);
            mc->peer_closed = true;
            net_io_fail(mc->c, why);
        }
        break;
    default: break;
    }
    free_item(it);
}

static void on_async(uv_async_t *a) {
    (void)a;
    if (g.listener && g.pending_opens.head) {
        item_list opens = g.pending_opens;
        g.pending_opens.head = g.pending_opens.tail = NULL;
        for (mpi_item *it = opens.head, *next; it; it = next) {
            next = it->next;
            handle_event(it);
        }
    }
    pthread_mutex_lock(&g.mu);
    item_list evs = g.ev;
    g.ev.head = g.ev.tail = NULL;
    pthread_mutex_unlock(&g.mu);
    for (mpi_item *it = evs.head, *next; it; it = next) {
        next = it->next;
        handle_event(it);
    }
    /* connections whose reading resumed */
    for (mpi_conn *mc = g.conns; mc;) {
        if (mc->held && taking(mc)) {
            feed_held(mc);
            mc = g.conns; /* feeding may close any connection: start over */
        } else {
            mc = mc->next;
        }
    }
}

/* Lets the progress thread wake this loop. */
static int attach_loop(uv_loop_t *loop, char *err, size_t errlen) {
    if (!net_mpi_active()) {
        err_set(err, errlen, "MPI addresses need MPI (run under mpirun with --mpi)");
        return -1;
    }
    if (g.attached) {
        if (g.async.loop == loop) return 0;
        err_set(err, errlen, "MPI connections are limited to one libuv loop");
        return -1;
    }
    uv_async_init(loop, &g.async, on_async);
    uv_unref((uv_handle_t *)&g.async); /* MPI alone does not keep the loop running */
    g.attached = true;
    pthread_mutex_lock(&g.mu);
    g.async_on = true;
    pthread_mutex_unlock(&g.mu);
    uv_async_send(&g.async); /* what arrived before */
    return 0;
}

/* Parses "mpi:RANK"; -1 with a message if it is not a rank of this job. */
static int parse_rank(const char *addr, char *err, size_t errlen) {
    char *end;
    long r = addr[3] == ':' ? strtol(addr + 4, &end, 10) : -1;
    if (addr[3] != ':' || !addr[4] || *end || r < 0 || r >= g.size) {
        err_set(err, errlen, "'%s' is not an MPI rank of this job (0..%d)", addr, g.size - 1);
        return -1;
    }
    return (int)r;
}

int net_mpi_connect(net_conn *c, uv_loop_t *loop, const char *addr, char *err, size_t errlen) {
    if (attach_loop(loop, err, errlen) != 0) return -1;
    int rank = parse_rank(addr, err, errlen);
    if (rank < 0) return -1;
    mpi_conn *mc = calloc(1, sizeof *mc);
    if (!mc) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    mc->c = c;
    mc->peer = rank;
    mc->side = SIDE_CONNECTOR;
    mc->id = (uint64_t)(uint32_t)g.rank << 32 | ++g.next_id;
    mc->next = g.conns;
    g.conns = mc;
    net_io_set(c, &mpi_ops, mc);
    post_ctl(rank, MSG_OPEN, SIDE_ACCEPTOR, mc->id);
    return 0;
}

int net_mpi_listen(net_server *s, const char *addr, char *err, size_t errlen) {
    if (attach_loop(net_server_loop(s), err, errlen) != 0) return -1;
    if (addr[3] == ':' && parse_rank(addr, err, errlen) != g.rank) {
        err_set(err, errlen, "cannot listen on '%s': this process is mpi:%d", addr, g.rank);
        return -1;
    }
    if (g.listener) {
        err_set(err, errlen, "cannot listen on '%s': this rank already listens on MPI", addr);
        return -1;
    }
    g.listener = s;
    if (g.pending_opens.head) uv_async_send(&g.async);
    return 0;
}

void net_mpi_unlisten(net_server *s) {
    if (g.listener == s) g.listener = NULL;
}
