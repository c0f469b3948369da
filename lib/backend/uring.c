/* SPDX-License-Identifier: MIT */
/* io_uring: reactors that complete I/O themselves.
 *
 * A ring is a thread with its own io_uring, connection lists, timer heap and
 * inbox, as an epoll reactor is; workers = N gives N rings. What differs is
 * how bytes move. A connection of the plain transport has one multishot
 * receive armed while it takes input: the kernel fills buffers from a ring
 * of provided buffers that all the ring's connections share, and each
 * completion is handed to the connection engine and its buffer given back at
 * once. Output is not written on the spot: it waits in the connection's
 * queue (whose bytes do not move until sent), and every connection with
 * output gets one send prepared per loop turn; one io_uring_enter() submits
 * them all and waits for the next completions. So a busy ring makes a few
 * system calls per turn, not two per message. (A write of DIRECT_MIN bytes
 * or more with nothing in flight is the exception: copying it would cost
 * more than the call.)
 *
 * A connection whose transport does its own I/O (TLS, or one still
 * connecting) is driven by readiness instead: one-shot poll requests on the
 * ring, and the engine reads and writes as under epoll.
 *
 * Listening sockets are polled and accepted with accept4(), not with a
 * multishot accept: a connection the kernel has not accepted stays queued
 * on the socket when a drain or a handover begins, for the successor, where
 * a multishot accept would already have taken it.
 *
 * A connection is freed only when no request of it is in flight: closing
 * cancels them, and the last completion frees it. Queued output that a
 * discarding close drops while a send reads it is kept aside until that
 * send completes (sk__outq_pin). */
#include "inbox.h"
#include "uring.h"
#include "../transport.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

/* ThreadSanitizer: liburing maps and unmaps a ring's memory with raw system
 * calls that it does not see, so a ring mapped where an earlier one was (of
 * another thread) would look like the same memory used by two threads. Every
 * ring's end happens before every later ring's start, as the unmap and the
 * map do. */
#if defined(__SANITIZE_THREAD__)
#define SK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SK_TSAN 1
#endif
#endif
#ifdef SK_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char ring_memory;
#define RING_MAPPED() __tsan_acquire(&ring_memory)
#define RING_UNMAPPING() __tsan_release(&ring_memory)
#else
#define RING_MAPPED() ((void)0)
#define RING_UNMAPPING() ((void)0)
#endif

#define SQ_ENTRIES 512
#define CQ_ENTRIES 4096
#define BUF_SIZE (64 * 1024)       /* one provided buffer (room for a NUL after it) */
#define BUF_STRIDE (BUF_SIZE + 64)
#define BUF_COUNT 64               /* provided buffers of a ring (a power of two) */
#define BUF_GROUP 0
#define BR_BYTES (BUF_COUNT * sizeof(struct io_uring_buf))
#define BUFS_BYTES ((size_t)BUF_COUNT * BUF_STRIDE)
#define SEND_IOV 8                 /* buffers of one send */
#define DIRECT_MIN (16 * 1024)     /* a write this large goes out at once */
#define BATCH_MAX 32               /* completions a busy ring waits for... */
#define BATCH_WAIT_NS (200 * 1000) /* ...this long at most */
#define ACCEPT_BATCH 64
#define LISTEN_PAUSE_MS 100        /* rest after running out of descriptors */
#define RETRY_MS 1                 /* no submission entry was free: try again */
#define READ_BUDGET 4              /* readiness: reads of a connection per turn */
#define THROTTLE_MS 1

/* What a request's user_data says: the object in the high bits, the
 * operation in the low three (every object is 8-byte aligned). */
enum op { OP_NONE, OP_RECV, OP_SEND, OP_POLL_IN, OP_POLL_OUT, OP_WATCH };
#define OP_MASK 7u

static uint64_t tag(const void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | op;
}

/* A descriptor a ring polls: a listener, the stop or drain descriptor. */
struct uwatch {
    struct sk__watch w;
    int fd;
    bool armed;
} __attribute__((aligned(8)));

struct ur_conn {
    sk_conn c;                   /* first: the core's pointer is this one's */
    struct ur_conn *prev, *next; /* on the open or the closing list */
    struct ur_conn *dirty_next;  /* on the dirty or held list */
    bool in_dirty;
    bool readiness;    /* its transport does its own I/O: polled, not fed */
    bool recv_armed;   /* a multishot receive is in flight */
    bool recv_cancel;  /* ...and its cancel is asked for */
    bool poll_in, poll_out;
    bool sending;      /* a send is in flight (its queue is pinned) */
    bool dying;        /* settled: freed when its last request completes */
    bool cancelled;    /* ...and the cancel of its requests is submitted */
    bool held_eof;     /* the peer's FIN came while it took no input */
    bool one_shot;     /* a receive takes one buffer (it has held input, or paces) */
    uint16_t ops;      /* requests in flight */
    int fault_recv, fault_send; /* tests: the error its injected completion carries */
    char *held;        /* input that came while it took none (room for a NUL), */
    size_t held_off, held_len; /* delivered up to held_off */
    struct iovec iov[SEND_IOV];
    struct msghdr msg;
};

static struct ur_conn *ur(sk_conn *c)
{
    return (struct ur_conn *)c;
}

struct list {
    struct ur_conn *head, *tail;
};

struct ur_state;

struct ring {
    struct sk__owner owner; /* first: the owner pointer is the ring */
    struct sk__counters ctr;
    sk_server *s;
    struct ur_state *st;
    struct io_uring ring;
    bool ring_up;
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned returned;      /* buffers given back, not yet published */
    bool stopping, stopped;
    bool server_timers;     /* the first ring: it runs the server's timers */
    bool retry;             /* a request could not be prepared: look again soon */
    struct uwatch *lw;
    int nlw;
    struct uwatch stop_w, drain_w;
    struct sk__timers timers;
    struct sk__timer pause; /* armed: listeners not polled until it fires */
    struct sk__inbox inbox;
    bool inbox_armed, posts_armed, home_armed;
    struct sk__posts posts;
    bool posts_open;
    struct list open, closing, dying;
    struct ur_conn *dirty;
    struct ur_conn *held;   /* readiness: input their transport holds */
    sk_conn *current;
    int nconns;             /* live and dying */
    int nthrottled;
    unsigned last_batch;    /* completions of the last turn */
    unsigned nbufs;         /* provided buffers */
    uint32_t rnd;           /* tests: the fault injection's random state */
    char *buf;              /* readiness: the read buffer */
    struct sk__chunk_cache cache; /* its connections' largest output chunks, for reuse */
    pthread_t thread;
    int rc;
};

struct ur_state {
    int n;
    struct ring r[];
};

static __thread struct ring *ur_current;

/* ---- the transport of a fed connection --------------------------------- */

/* Output waits for the loop's send, which takes every connection's in one
 * system call; but a large write (DIRECT_MIN or more) with nothing in
 * flight goes out on the spot, as under epoll: copying it into the queue
 * would cost more than the call. The rest is the plain transport's (the
 * reads of an orderly close, the FIN). */
static ssize_t fed_writev(sk_conn *c, const struct iovec *iov, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    if (len < DIRECT_MIN || c->out.pinned) /* pinned: a send of the queue is in flight */
        return -EAGAIN;
    return sk__plain_writev(c, iov, n);
}

static ssize_t fed_read(sk_conn *c, void *buf, size_t len, bool wait)
{
    return sk__transport_plain.read(c, buf, len, wait);
}

static int fed_shutdown(sk_conn *c)
{
    return sk__transport_plain.shutdown(c);
}

static const struct sk__transport fed = {
    .read = fed_read,
    .writev = fed_writev,
    .shutdown = fed_shutdown,
    .writev_now = sk__plain_writev,
};

/* ---- lists ------------------------------------------------------------- */

static void list_push(struct list *l, struct ur_conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_del(struct list *l, struct ur_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static void mark_on(struct ur_conn **list, struct ur_conn *c)
{
    if (!c->in_dirty && !c->dying) {
        c->in_dirty = true;
        c->dirty_next = *list;
        *list = c;
    }
}

static void mark_dirty(struct ring *r, struct ur_conn *c)
{
    mark_on(&r->dirty, c);
}

static void ur_notify(struct sk__owner *owner, sk_conn *c)
{
    mark_dirty((struct ring *)owner, ur(c));
}

/* ---- fault injection (tests) -------------------------------------------- */

struct sk__uring_faults sk__uring_faults;

static void fault_tell(enum sk__uring_fault kind)
{
    void (*fn)(enum sk__uring_fault) = __atomic_load_n(&sk__uring_faults.injected, __ATOMIC_ACQUIRE);
    if (fn)
        fn(kind);
}

/* The fault to inject into the request being prepared, or -1 for none:
 * SK__URING_SHORT (sends only), SK__URING_EAGAIN or SK__URING_EINTR. */
static int fault_pick(struct ring *r, bool send)
{
    int permille = __atomic_load_n(&sk__uring_faults.permille, __ATOMIC_RELAXED);
    if (permille <= 0)
        return -1;
    r->rnd = r->rnd * 1103515245u + 12345u;
    if ((r->rnd >> 8) % 1000 >= (unsigned)permille)
        return -1;
    int kind = (int)((r->rnd >> 20) % (send ? 3 : 2));
    return send ? kind : kind + 1;
}

/* An injected failure: a no-op whose completion the ring reads as err. */
static void fault_nop(struct io_uring_sqe *sqe, int kind, int *err)
{
    io_uring_prep_nop(sqe);
    *err = kind == SK__URING_EAGAIN ? -EAGAIN : -EINTR;
    fault_tell((enum sk__uring_fault)kind);
}

/* ---- requests ---------------------------------------------------------- */

/* A submission entry, submitting what is prepared if the queue is full:
 * NULL only if even that failed (then the caller tries next turn). */
static struct io_uring_sqe *sqe_get(struct ring *r)
{
    if (!r->ring_up)
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe && io_uring_submit(&r->ring) >= 0)
        sqe = io_uring_get_sqe(&r->ring);
    if (!sqe)
        r->retry = true;
    return sqe;
}

static bool cancel(struct ring *r, uint64_t what)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    if (!sqe)
        return false;
    io_uring_prep_cancel64(sqe, what, 0);
    io_uring_sqe_set_data64(sqe, 0);
    return true;
}

static void watch_arm(struct ring *r, void *w, int fd, bool multishot, bool *armed)
{
    struct io_uring_sqe *sqe;
    if (*armed || !(sqe = sqe_get(r)))
        return;
    if (multishot)
        io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    else
        io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag(w, OP_WATCH));
    *armed = true;
}

/* One-shot polls: armed again after each batch of accepts, a poll looks at
 * the socket as it is then, and a connection left queued (a batch cut at
 * its size, an accept4() that failed) is seen at once. */
static void listeners_arm(struct ring *r)
{
    for (int i = 0; i < r->nlw; i++)
        watch_arm(r, &r->lw[i], r->lw[i].fd, false, &r->lw[i].armed);
}

static void listeners_cancel(struct ring *r)
{
    for (int i = 0; i < r->nlw; i++)
        if (r->lw[i].armed)
            cancel(r, tag(&r->lw[i], OP_WATCH));
}

static void recv_arm(struct ring *r, struct ur_conn *e)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    if (!sqe)
        return;
    int fault = fault_pick(r, false);
    if (fault >= 0) {
        fault_nop(sqe, fault, &e->fault_recv);
    } else {
        if (e->one_shot) { /* armed after a read: nothing waits yet, wait first */
            io_uring_prep_recv(sqe, e->c.fd, NULL, 0, 0);
            sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        } else
            io_uring_prep_recv_multishot(sqe, e->c.fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BUF_GROUP;
    }
    io_uring_sqe_set_data64(sqe, tag(e, OP_RECV));
    e->recv_armed = true;
    e->recv_cancel = false;
    e->ops++;
}

static void poll_arm(struct ring *r, struct ur_conn *e, bool out)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    if (!sqe)
        return;
    io_uring_prep_poll_add(sqe, e->c.fd, out ? POLLOUT : POLLIN | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, tag(e, out ? OP_POLL_OUT : OP_POLL_IN));
    *(out ? &e->poll_out : &e->poll_in) = true;
    e->ops++;
}

/* One send of what the queue holds, from its head: its bytes stay put until
 * the completion says how many went. */
static void send_arm(struct ring *r, struct ur_conn *e)
{
    sk_conn *c = &e->c;
    struct io_uring_sqe *sqe = sqe_get(r);
    if (!sqe)
        return;
    int k = sk__outq_iov(&c->out, e->iov, SEND_IOV);
    int fault = fault_pick(r, true);
    if (fault == SK__URING_SHORT && (k > 1 || e->iov[0].iov_len > 1)) {
        k = 1;
        e->iov[0].iov_len = (e->iov[0].iov_len + 1) / 2;
        fault_tell(SK__URING_SHORT);
    }
    if (fault == SK__URING_EAGAIN || fault == SK__URING_EINTR) {
        fault_nop(sqe, fault, &e->fault_send);
    } else if (k == 1) {
        io_uring_prep_send(sqe, c->fd, e->iov[0].iov_base, e->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        e->msg = (struct msghdr){.msg_iov = e->iov, .msg_iovlen = (size_t)k};
        io_uring_prep_sendmsg(sqe, c->fd, &e->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, tag(e, OP_SEND));
    sk__outq_pin(&c->out);
    e->sending = true;
    e->ops++;
}

/* ---- broadcasts: to this ring at once, to the others through their inboxes */

static void deliver_local(struct ring *r, sk_conn *except, const void *data, size_t len)
{
    for (struct ur_conn *e = r->open.head; e; e = e->next)
        if (&e->c != except && !__atomic_load_n(&e->c.pending, __ATOMIC_RELAXED))
            sk__conn_queue(&e->c, data, len, false);
}

static void inbox_drain(struct ring *r)
{
    size_t n;
    struct sk__msg **items = sk__inbox_take(&r->inbox, &n);
    for (size_t i = 0; i < n; i++) {
        if (!r->stopped)
            deliver_local(r, items[i]->except, items[i]->data, items[i]->len);
        sk__msg_release(items[i]);
    }
    free(items);
}

static int ur_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    struct ring *self = ur_current && ur_current->s == s ? ur_current : NULL;
    if (self)
        deliver_local(self, except, data, len);
    if (self && self->st->n == 1)
        return 0;
    struct sk__msg *m = sk__msg_new(except, data, len);
    if (!m)
        return -ENOMEM;
    /* As epoll's reactors: a connection's broadcast that fills another ring's
     * inbox is not read until it drains; another thread's is told. */
    sk_conn *from = self ? self->current : NULL;
    size_t limit = from ? SK__INBOX_HARD : SK__INBOX_MAX;
    bool full = false;
    pthread_mutex_lock(&s->state_lock);
    struct ur_state *st = s->backend_state;
    int rc = st || self ? 0 : -ENOTCONN;
    for (int i = 0; st && i < st->n; i++) {
        if (&st->r[i] == self)
            continue;
        int posted = sk__inbox_post(&st->r[i].inbox, m, limit);
        full |= sk__inbox_bytes(&st->r[i].inbox) > SK__INBOX_MAX;
        rc = rc < 0 ? rc : posted;
    }
    pthread_mutex_unlock(&s->state_lock);
    sk__msg_release(m);
    if (rc == -ENOBUFS && from)
        sk__conn_request_close(from, SK_CLOSE_SLOW);
    else if (full && from && !from->throttled) {
        from->throttled = true;
        self->nthrottled++;
    }
    return rc;
}

static void unthrottle(struct ring *r)
{
    for (int i = 0; i < r->st->n; i++)
        if (&r->st->r[i] != r && sk__inbox_bytes(&r->st->r[i].inbox) > SK__INBOX_MAX / 2)
            return;
    for (struct ur_conn *e = r->open.head; e; e = e->next) {
        if (e->c.throttled) {
            e->c.throttled = false;
            e->c.resumed = true;
            mark_dirty(r, e);
        }
    }
    r->nthrottled = 0;
}

/* ---- connections ------------------------------------------------------- */

/* A plain connection is fed by the ring; any other is polled. */
static void choose_mode(struct ur_conn *e)
{
    sk_conn *c = &e->c;
    c->out.cache = &((struct ring *)c->owner)->cache; /* all its output is queued */
    /* A program that paces its reading (on_drain: it pauses a source while
     * its sink is full, as a proxy does) gets a buffer per receive from the
     * start: a multishot receive would take what waits in the socket, up
     * to 32 buffers, before a pause could stop it, and hold it here. */
    e->one_shot = e->one_shot || c->cfg->on_drain;
    e->readiness = c->connecting || c->tp != &sk__transport_plain;
    if (!e->readiness)
        c->tp = &fed;
}

static void buffer_return(struct ring *r, unsigned bid)
{
    io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * BUF_STRIDE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)r->returned++);
}

/* Input that came while the connection took none: kept until it does. */
static void hold(struct ur_conn *e, const char *data, size_t n)
{
    /* Its program pauses it (or it is throttled): from now on it receives
     * a buffer at a time, so that what it holds stays within one buffer or
     * so, not as much as a multishot receive takes in a turn. */
    e->one_shot = true;
    if (e->held_off) { /* what was delivered goes first */
        memmove(e->held, e->held + e->held_off, e->held_len - e->held_off);
        e->held_len -= e->held_off;
        e->held_off = 0;
    }
    char *p = realloc(e->held, e->held_len + n + 1);
    if (!p) {
        sk__conn_request_close(&e->c, SK_CLOSE_ERROR);
        return;
    }
    memcpy(p + e->held_len, data, n);
    e->held = p;
    e->held_len += n;
}

static void deliver(struct ring *r, struct ur_conn *e, char *buf, ssize_t n)
{
    r->current = &e->c;
    sk__count(&r->ctr, SK__C_READ_EVENTS, 1);
    sk__conn_got(&e->c, buf, n);
    r->current = NULL;
}

/* Deliver what is held, a read's worth (SK__SCRATCH) at a time, while the
 * connection takes it: a handler that pauses again stops it, as it would
 * stop reading the socket. */
static void deliver_held(struct ring *r, struct ur_conn *e)
{
    while (e->held && sk__conn_takes_input(&e->c)) {
        size_t n = e->held_len - e->held_off;
        n = n < SK__SCRATCH ? n : SK__SCRATCH;
        char *p = e->held + e->held_off;
        char after = p[n]; /* the engine writes a NUL there */
        e->held_off += n;
        deliver(r, e, p, (ssize_t)n);
        p[n] = after;
        if (e->held_off == e->held_len) {
            free(e->held);
            e->held = NULL;
            e->held_off = e->held_len = 0;
        }
    }
}

static void on_recv(struct ring *r, struct ur_conn *e, int res, unsigned flags)
{
    sk_conn *c = &e->c;
    if (res == -ENOBUFS)
        fault_tell(SK__URING_NOBUFS);
    if (!(flags & IORING_CQE_F_MORE)) { /* it ends here: armed again when wanted */
        e->recv_armed = false;
        e->ops--;
    }
    char *buf = NULL;
    if (flags & IORING_CQE_F_BUFFER)
        buf = r->bufs + (size_t)(flags >> IORING_CQE_BUFFER_SHIFT) * BUF_STRIDE;
    if (e->dying || !sk__conn_reading(c) || c->eof) {
        /* closing: what still comes is dropped, as the close would */
    } else if (res > 0 && buf) {
        if (sk__conn_takes_input(c) && !e->held_len)
            deliver(r, e, buf, res);
        else
            hold(e, buf, (size_t)res);
    } else if (res == 0) {
        if (sk__conn_takes_input(c) && !e->held_len)
            deliver(r, e, buf, 0);
        else
            e->held_eof = true;
    } else if (res < 0 && res != -ENOBUFS && res != -ECANCELED && res != -EAGAIN &&
               res != -EINTR) {
        deliver(r, e, NULL, res); /* the connection is broken */
    }
    /* -ENOBUFS: the shared buffers ran out; it is armed again at the end of
     * this turn, when the buffers handed out are back. */
    if (buf)
        buffer_return(r, flags >> IORING_CQE_BUFFER_SHIFT);
    mark_dirty(r, e);
}

static void on_send(struct ring *r, struct ur_conn *e, int res)
{
    sk_conn *c = &e->c;
    e->sending = false;
    e->ops--;
    bool kept = sk__outq_unpin(&c->out);
    if (kept && res > 0) {
        sk__conn_sent(c, (size_t)res); /* a short send: the rest goes next turn */
        if (c->shut_asked && !c->shut_done && c->out.bytes == 0)
            sk__conn_shut_write(c);
    } else if (kept && res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
        sk__conn_request_close(c, SK_CLOSE_RESET);
    }
    /* All sent by an open connection that owes nothing: nothing to settle
     * (the common case: one settle per message, not two). */
    if (c->out.bytes || c->state != SK__OPEN || c->drain_due || c->shut_asked ||
        __atomic_load_n(&c->pending, __ATOMIC_ACQUIRE))
        mark_dirty(r, e);
}

static void on_poll(struct ring *r, struct ur_conn *e, bool out, int res)
{
    sk_conn *c = &e->c;
    e->ops--;
    *(out ? &e->poll_out : &e->poll_in) = false;
    if (e->dying || res < 0) {
        if (!e->dying)
            mark_dirty(r, e);
        return;
    }
    r->current = c;
    if (out && c->connecting) {
        sk__conn_connected(c); /* on_open, or the failure */
        if (!c->connecting)
            choose_mode(e);
    } else if (out && sk__conn_wants_write(c)) {
        sk__conn_flush(c);
    } else if (!out && sk__conn_takes_input(c)) {
        bool hup = (res & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
        if (sk__conn_input(c, r->buf, SK__SCRATCH + 1, READ_BUDGET, hup) || sk__tp_pending(c))
            mark_on(&r->held, e);
    }
    r->current = NULL;
    mark_dirty(r, e);
}

static void conn_gone(struct ring *r, struct ur_conn *e);

/* Every request on a dying connection's socket; what is under way completes. */
static void cancel_all(struct ring *r, struct ur_conn *e)
{
    struct io_uring_sqe *sqe = sqe_get(r);
    if (!sqe)
        return; /* tried again next turn */
    io_uring_prep_cancel_fd(sqe, e->c.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, 0);
    e->cancelled = true;
}

/* Settled: out of the lists; freed now, or when its requests have completed. */
static void retire(struct ring *r, struct ur_conn *e, bool was_open)
{
    list_del(was_open ? &r->open : &r->closing, e);
    if (e->ops == 0) {
        conn_gone(r, e);
        return;
    }
    e->dying = true;
    list_push(&r->dying, e);
    sk__timer_stop(&r->timers, &e->c.timer);
    cancel_all(r, e);
}

static void conn_gone(struct ring *r, struct ur_conn *e)
{
    free(e->held);
    r->nconns--;
    sk__conn_free(&e->c);
}

/* A dying connection's request completed. */
static void dying_done(struct ring *r, struct ur_conn *e, const struct io_uring_cqe *cqe,
                       enum op op)
{
    if (op == OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER))
        buffer_return(r, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    if (op == OP_RECV)
        e->fault_recv = 0; /* an injected failure's no-op, if it was one */
    if (op == OP_SEND) {
        e->fault_send = 0;
        sk__outq_unpin(&e->c.out);
    }
    if (op != OP_RECV || !(cqe->flags & IORING_CQE_F_MORE))
        e->ops--;
    if (e->ops == 0) {
        list_del(&r->dying, e);
        conn_gone(r, e);
    }
}

/* After settling: the requests the connection needs now. */
static void conn_arm(struct ring *r, struct ur_conn *e)
{
    sk_conn *c = &e->c;
    if (e->readiness) {
        if (sk__conn_takes_input(c) && !e->poll_in)
            poll_arm(r, e, false);
        if (sk__conn_wants_write(c) && !e->poll_out)
            poll_arm(r, e, true);
        return;
    }
    if (sk__conn_takes_input(c)) {
        if (!e->recv_armed && !e->held) /* what it holds first */
            recv_arm(r, e);
    } else if (e->recv_armed && !e->recv_cancel && sk__conn_reading(c) && !c->eof) {
        /* paused or throttled: no more buffers for it; what is in flight is
         * held. (A closing one keeps receiving, and drops what comes: its
         * socket is empty when it closes, and the close is a FIN, not a
         * reset that could destroy its last words at the peer.) */
        e->recv_cancel = cancel(r, tag(e, OP_RECV));
    }
    if (!e->sending && c->out.bytes > 0 && !c->dead_output)
        send_arm(r, e);
}

static void settle_dirty(struct ring *r)
{
    while (r->dirty) {
        struct ur_conn *e = r->dirty;
        r->dirty = e->dirty_next;
        e->in_dirty = false;
        sk_conn *c = &e->c;
        deliver_held(r, e); /* resumed: what came meanwhile goes first */
        if (e->held_eof && !e->held_len && sk__conn_takes_input(c)) {
            e->held_eof = false;
            deliver(r, e, NULL, 0);
        }
        bool was_open = c->state == SK__OPEN;
        r->current = c; /* on_close may broadcast */
        bool done = sk__conn_settle(c);
        r->current = NULL;
        if (done) {
            retire(r, e, was_open);
            continue;
        }
        if (was_open && c->state == SK__CLOSING) {
            list_del(&r->open, e);
            list_push(&r->closing, e);
        }
        bool resumed = c->resumed;
        c->resumed = false;
        if (!e->readiness && c->shut_asked && !c->shut_done && c->out.bytes == 0)
            sk__conn_shut_write(c);
        conn_arm(r, e);
        /* readiness: input its transport holds, or that came while it was
         * paused, is read unasked (a poll would not tell of the first) */
        if (e->readiness && sk__conn_takes_input(c) && (resumed || sk__tp_pending(c)))
            mark_on(&r->held, e);
    }
}

/* ---- accepting and connecting ------------------------------------------ */

static void ur_accept(struct ring *r, int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        sk_addr peer;
        int fd = sk__accept_fd(r->s, lfd, &r->ctr, &peer);
        if (fd == 0)
            return;
        if (fd < 0) { /* not even a descriptor to refuse with: rest the listeners */
            listeners_cancel(r);
            sk__timer_start(&r->timers, &r->pause, r->owner.now + LISTEN_PAUSE_MS);
            return;
        }
        sk_conn *c = sk__conn_new(r->s, sizeof(struct ur_conn), fd, &r->owner, &peer);
        if (!c) {
            sk__registry_release(&r->s->reg);
            sk__count(&r->ctr, SK__C_REFUSED, 1);
            close(fd);
            continue;
        }
        choose_mode(ur(c));
        list_push(&r->open, ur(c));
        r->nconns++;
        r->current = c;
        sk__conn_open(c);
        r->current = NULL;
        mark_dirty(r, ur(c));
    }
}

static void ur_watch(struct sk__owner *owner, sk_conn *c)
{
    mark_dirty((struct ring *)owner, ur(c)); /* its poll for the connect is armed there */
}

static int ur_dial(struct sk__owner *owner, struct sk__dial *d, sk_conn **conn)
{
    struct ring *r = (struct ring *)owner;
    sk_conn *c = sk__conn_dial(r->s, sizeof(struct ur_conn), owner, d);
    if (!c)
        return -ENOMEM;
    ur(c)->readiness = true; /* fed once connected, if it is plain */
    c->out.cache = &r->cache;
    list_push(&r->open, ur(c));
    r->nconns++;
    mark_dirty(r, ur(c));
    if (conn)
        *conn = c;
    return 0;
}

/* ---- stopping ---------------------------------------------------------- */

static void pause_over(struct sk__timer *t, int64_t now)
{
    (void)now;
    struct ring *r = (struct ring *)((char *)t - offsetof(struct ring, pause));
    if (!r->stopping)
        listeners_arm(r);
}

static void stop_accepting(struct ring *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    sk__server_note_drain(r->s);
    sk__timer_stop(&r->timers, &r->pause);
    listeners_cancel(r);
}

static void begin_stop(struct ring *r)
{
    if (r->stopped)
        return;
    stop_accepting(r);
    r->stopped = true;
    for (struct ur_conn *e = r->open.head; e; e = e->next)
        mark_dirty(r, e);
}

/* ---- the loop ---------------------------------------------------------- */

static void on_watch(struct ring *r, struct sk__watch *w, const struct io_uring_cqe *cqe)
{
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    switch (w->kind) {
    case SK__W_LISTENER:
        ((struct uwatch *)w)->armed = false;
        if (!r->stopping && cqe->res > 0)
            ur_accept(r, ((struct uwatch *)w)->fd);
        if (!r->stopping && !sk__timer_armed(&r->pause))
            watch_arm(r, w, ((struct uwatch *)w)->fd, false, &((struct uwatch *)w)->armed);
        break;
    case SK__W_STOP:
        r->stop_w.armed = false;
        begin_stop(r);
        break;
    case SK__W_DRAIN:
        r->drain_w.armed = false;
        stop_accepting(r);
        break;
    case SK__W_INBOX:
        r->inbox_armed = more;
        inbox_drain(r);
        break;
    case SK__W_POSTS:
        if ((struct sk__posts *)w == &r->posts)
            r->posts_armed = more;
        else
            r->home_armed = more;
        sk__posts_run((struct sk__posts *)w, r->s);
        break;
    }
}

static void on_cqe(struct ring *r, const struct io_uring_cqe *cqe)
{
    uint64_t data = io_uring_cqe_get_data64(cqe);
    enum op op = (enum op)(data & OP_MASK);
    void *p = (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
    if (op == OP_NONE)
        return; /* a cancel's own completion */
    if (op == OP_WATCH) {
        on_watch(r, p, cqe);
        return;
    }
    struct ur_conn *e = p;
    if (e->dying) {
        dying_done(r, e, cqe, op);
        return;
    }
    int res = cqe->res;
    int *fault = op == OP_RECV ? &e->fault_recv : op == OP_SEND ? &e->fault_send : NULL;
    if (fault && *fault) { /* tests: an injected failure's no-op */
        res = *fault;
        *fault = 0;
    }
    switch (op) {
    case OP_RECV: on_recv(r, e, res, cqe->flags); break;
    case OP_SEND: on_send(r, e, res); break;
    case OP_POLL_IN: on_poll(r, e, false, cqe->res); break;
    case OP_POLL_OUT: on_poll(r, e, true, cqe->res); break;
    default: break;
    }
}

/* The loop's own descriptors, armed again where a request ended. */
static void watches_arm(struct ring *r)
{
    if (!r->stopped)
        watch_arm(r, &r->stop_w, r->stop_w.fd, false, &r->stop_w.armed);
    if (!r->stopping)
        watch_arm(r, &r->drain_w, r->drain_w.fd, false, &r->drain_w.armed);
    watch_arm(r, &r->inbox, r->inbox.efd, true, &r->inbox_armed);
    watch_arm(r, &r->posts, r->posts.efd, true, &r->posts_armed);
    if (r->server_timers)
        watch_arm(r, &r->s->posts, r->s->posts.efd, true, &r->home_armed);
}

static int ur_timeout(const struct ring *r)
{
    int t = sk__timers_next(&r->timers, r->owner.now);
    if (r->nthrottled)
        t = sk__sooner(t, THROTTLE_MS);
    struct sk__timers *st = r->server_timers ? sk__server_timers(r->s) : NULL;
    if (st)
        t = sk__sooner(t, sk__timers_next(st, r->owner.now));
    if (r->retry)
        t = sk__sooner(t, RETRY_MS);
    if (r->stopping)
        t = sk__sooner(t, sk__drain_wait(r->s, r->owner.now));
    return r->held ? 0 : t;
}

/* Submit what the turn prepared and wait: for the first completion, or,
 * when the last turn was busy, for as many as it had (BATCH_MAX at most) or
 * BATCH_WAIT_NS, whichever comes first; never past the next timer. */
static int submit_and_wait(struct ring *r)
{
    int ms = ur_timeout(r);
    if (r->returned) {
        io_uring_buf_ring_advance(r->br, (int)r->returned);
        r->returned = 0;
    }
    unsigned want = r->last_batch < 2 ? 1 : r->last_batch > BATCH_MAX ? BATCH_MAX : r->last_batch;
    struct __kernel_timespec ts = {0};
    long long ns = ms < 0 ? -1 : (long long)ms * 1000000;
    if (want > 1 && (ns < 0 || ns > BATCH_WAIT_NS))
        ns = BATCH_WAIT_NS;
    struct io_uring_cqe *cqe;
    int rc;
    if (ns == 0)
        rc = io_uring_submit_and_get_events(&r->ring);
    else if (ns < 0)
        rc = io_uring_submit_and_wait(&r->ring, 1);
    else {
        ts.tv_sec = ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, want, &ts, NULL);
    }
    if (rc == -ETIME || rc == -EINTR || rc == -EBUSY || rc == -EAGAIN)
        rc = 0;
    if (__atomic_load_n(&sk__uring_faults.fail_wait, __ATOMIC_RELAXED)) {
        int err = __atomic_exchange_n(&sk__uring_faults.fail_wait, 0, __ATOMIC_ACQ_REL);
        if (err) {
            fault_tell(SK__URING_WAIT);
            rc = err;
        }
    }
    return rc < 0 ? rc : 0;
}

static void ring_close(struct ring *r)
{
    if (r->ring_up) { /* what is still in flight is cancelled: no completion comes */
        RING_UNMAPPING();
        io_uring_queue_exit(&r->ring);
    }
    r->ring_up = false;
}

/* The ring failed: stop the server, and end every connection here and now
 * (with the ring gone no request completes, so none is waited for). The
 * dirty and held lists are dropped, and every connection settled afresh. */
static void ring_failed(struct ring *r, int rc)
{
    r->rc = rc;
    ring_close(r);
    sk__server_stop(r->s);
    r->dirty = r->held = NULL;
    struct list *lists[] = {&r->open, &r->closing, &r->dying};
    for (int i = 0; i < 3; i++) {
        for (struct ur_conn *e = lists[i]->head; e; e = e->next) {
            if (e->sending)
                sk__outq_unpin(&e->c.out);
            e->ops = 0;
            e->sending = e->recv_armed = e->poll_in = e->poll_out = false;
            e->in_dirty = false;
            e->c.deadline = r->owner.now; /* no loop left to flush with */
        }
    }
    while (r->dying.head) {
        struct ur_conn *e = r->dying.head;
        list_del(&r->dying, e);
        conn_gone(r, e);
    }
    begin_stop(r);
    struct list *live[] = {&r->open, &r->closing};
    for (int i = 0; i < 2; i++) {
        for (struct ur_conn *e = live[i]->head; e; e = e->next) {
            if (i == 0)
                sk__conn_request_close(&e->c, SK_CLOSE_ERROR); /* first reason wins */
            mark_dirty(r, e);
        }
    }
    settle_dirty(r); /* on_close for the open ones; all are freed */
}

static int ring_loop(struct ring *r)
{
    ur_current = r;
    sk__loop_enter(r->s, &r->owner);
    while (!r->stopping || r->nconns > 0) {
        if (r->retry)
            for (struct ur_conn *e = r->dying.head; e; e = e->next)
                if (!e->cancelled)
                    cancel_all(r, e);
        r->retry = false;
        watches_arm(r);
        int rc = submit_and_wait(r);
        struct ur_conn *held = r->held;
        r->held = NULL;
        r->owner.now = sk__now_ms();
        if (rc < 0) {
            ring_failed(r, rc);
            break;
        }
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&r->ring, head, cqe)
        {
            on_cqe(r, cqe);
            n++;
        }
        io_uring_cq_advance(&r->ring, n);
        r->last_batch = n;
        while (held) {
            struct ur_conn *e = held;
            held = e->dirty_next;
            e->in_dirty = false;
            if (e->dying)
                continue;
            r->current = &e->c;
            if (sk__conn_takes_input(&e->c) &&
                (sk__conn_input(&e->c, r->buf, SK__SCRATCH + 1, READ_BUDGET, false) ||
                 sk__tp_pending(&e->c)))
                mark_on(&r->held, e);
            r->current = NULL;
            mark_dirty(r, e);
        }
        sk__timers_run(&r->timers, r->owner.now);
        struct sk__timers *st = r->server_timers ? sk__server_timers(r->s) : NULL;
        if (st)
            sk__timers_run(st, r->owner.now);
        if (r->nthrottled)
            unthrottle(r);
        settle_dirty(r);
    }
    ur_current = NULL;
    sk__loop_enter(NULL, NULL);
    return r->rc;
}

/* ---- setup ------------------------------------------------------------- */

/* Linux 6.0 brought the multishot receive the rings rely on. */
static bool kernel_new_enough(void)
{
    struct utsname u;
    int major = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%d.", &major) != 1)
        return false;
    return major >= 6;
}

/* Why a ring could not be made, as the library's error. */
static int unavailable(int err)
{
    return err == -EPERM || err == -EACCES ? SK_EURING_OFF : SK_EURING_OLD;
}

static int ring_open(struct ring *r)
{
    if (!kernel_new_enough())
        return SK_EURING_OLD;
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_DEFER_TASKRUN,
                                .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &r->ring, &p);
    if (rc == -EINVAL) { /* before 6.1: no deferred task work */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN,
                                     .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(SQ_ENTRIES, &r->ring, &p);
    }
    if (rc < 0)
        return unavailable(rc);
    r->ring_up = true;
    RING_MAPPED();
    if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_FAST_POLL))
        return SK_EURING_OLD;
    /* Mapped, not allocated: a page takes memory only once a receive has
     * used it, and the ring of buffer descriptors must be page-aligned. */
    void *br = mmap(NULL, BR_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED)
        return -ENOMEM;
    r->br = br;
    void *bufs = mmap(NULL, BUFS_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED)
        return -ENOMEM;
    r->bufs = bufs;
    io_uring_buf_ring_init(r->br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)r->br,
                                   .ring_entries = BUF_COUNT,
                                   .bgid = BUF_GROUP};
    if ((rc = io_uring_register_buf_ring(&r->ring, &reg, 0)) < 0)
        return rc == -ENOMEM ? rc : unavailable(rc);
    /* Faults injected (tests): a few buffers, so that receives run out. */
    r->nbufs = __atomic_load_n(&sk__uring_faults.permille, __ATOMIC_RELAXED) ? 4 : BUF_COUNT;
    for (unsigned i = 0; i < r->nbufs; i++)
        buffer_return(r, i);
    return 0;
}

static int ring_init(struct ring *r, sk_server *s, struct ur_state *st, int k)
{
    r->s = s;
    r->st = st;
    r->server_timers = k == 0;
    r->rnd = (uint32_t)k * 2654435761u + 1;
    r->owner.notify = ur_notify;
    r->owner.ctr = &r->ctr;
    r->owner.now = sk__now_ms();
    r->owner.timers = &r->timers;
    r->owner.posts = &r->posts;
    r->owner.dial = ur_dial;
    r->owner.watch = ur_watch;
    sk__timers_init(&r->timers);
    r->stop_w = (struct uwatch){.w.kind = SK__W_STOP, .fd = s->stop_fd};
    r->drain_w = (struct uwatch){.w.kind = SK__W_DRAIN, .fd = s->drain_fd};
    r->inbox.efd = -1;
    int rc = sk__inbox_open(&r->inbox);
    if (rc < 0)
        return rc;
    if ((rc = sk__posts_open(&r->posts, -1)) < 0)
        return rc;
    r->posts_open = true;
    if (!(r->buf = malloc(SK__SCRATCH + 1)))
        return -ENOMEM;
    if ((rc = sk__timer_attach(&r->timers, &r->pause, pause_over)) < 0)
        return rc;
    /* Its own listeners when the server bound one set per worker, else set 0. */
    int per_set = s->lis.nsets ? s->lis.n / s->lis.nsets : 0;
    int set = s->lis.nsets == st->n ? k : 0;
    if (!(r->lw = calloc((size_t)per_set + 1, sizeof(*r->lw))))
        return -ENOMEM;
    r->nlw = per_set;
    for (int i = 0; i < per_set; i++)
        r->lw[i] = (struct uwatch){.w.kind = SK__W_LISTENER, .fd = s->lis.fd[set * per_set + i]};
    sk__registry_add_counters(&s->reg, &r->ctr);
    return 0;
}

static void ring_destroy(struct ring *r)
{
    if (r->owner.notify && r->s)
        sk__registry_remove_counters(&r->s->reg, &r->ctr);
    sk__inbox_close(&r->inbox);
    if (r->posts_open)
        sk__posts_close(&r->posts, r->s, true);
    if (r->br)
        munmap(r->br, BR_BYTES);
    if (r->bufs)
        munmap(r->bufs, BUFS_BYTES);
    free(r->buf);
    free(r->lw);
    sk__chunk_cache_clear(&r->cache);
    sk__timers_free(&r->timers);
}

/* A ring is made, run and closed by the thread that runs it: a single
 * issuer's ring belongs to the thread that made it. (The first ring's is the
 * thread of sk_server_run(), where the server's timers run.) */
static int ring_run(struct ring *r)
{
    int rc = ring_open(r);
    if (rc < 0)
        sk__server_stop(r->s);
    else {
        listeners_arm(r);
        rc = ring_loop(r);
    }
    ring_close(r);
    return rc;
}

static void *ring_thread(void *arg)
{
    struct ring *r = arg;
    r->rc = ring_run(r);
    return NULL;
}

/* Whether io_uring works here at all: asked by sk_server_bind(), and again
 * before a run starts any thread, so that choosing it where it does not
 * fails at once, with the reason. */
static int probe(void)
{
    if (!kernel_new_enough())
        return SK_EURING_OLD;
    /* No ring is made: tearing one down would leave the kernel's clean-up to
     * interrupt this thread's next blocking call (EINTR). A setup with no
     * entries is refused for what it asks (EINVAL) only where io_uring is
     * allowed at all; a filter or the sysctl refuses it first (EPERM), a
     * kernel without it knows no such call (ENOSYS). */
    struct io_uring_params p = {0};
    long rc = syscall(__NR_io_uring_setup, 0, &p);
    int err = rc < 0 ? -errno : 0;
    if (rc >= 0)
        close((int)rc);
    return err == -EINVAL ? 0 : unavailable(err ? err : -EINVAL);
}

static int ur_run(sk_server *s)
{
    int rc = probe();
    if (rc < 0)
        return rc;
    int n = s->cfg.workers > 1 ? s->cfg.workers : 1;
    struct ur_state *st = calloc(1, sizeof(*st) + (size_t)n * sizeof(struct ring));
    if (!st)
        return -ENOMEM;
    st->n = n;
    int inited = 0;
    for (; inited < n && rc == 0; inited++)
        rc = ring_init(&st->r[inited], s, st, inited);
    int started = 1;
    if (rc == 0) {
        pthread_mutex_lock(&s->state_lock);
        s->backend_state = st;
        pthread_mutex_unlock(&s->state_lock);
        for (; started < n; started++) {
            if (pthread_create(&st->r[started].thread, NULL, ring_thread, &st->r[started])) {
                rc = -EAGAIN;
                sk__server_stop(s);
                break;
            }
        }
        int rc0 = ring_run(&st->r[0]);
        for (int i = 1; i < started; i++) {
            pthread_join(st->r[i].thread, NULL);
            rc = rc ? rc : st->r[i].rc;
        }
        rc = rc ? rc : rc0;
        pthread_mutex_lock(&s->state_lock);
        s->backend_state = NULL;
        pthread_mutex_unlock(&s->state_lock);
    }
    for (int i = 0; i < inited; i++)
        ring_destroy(&st->r[i]);
    free(st);
    return rc;
}

const struct sk__backend sk__backend_uring = {.ops = {
    .name = "io_uring",
    .summary = "io_uring ring(s): multishot receive into shared buffers, sends batched per turn",
    .run = ur_run,
    .broadcast = ur_broadcast,
}, .caps = SK__CAP_LISTENER_SETS | SK__CAP_LOOP | SK__CAP_DRAIN, .usable = probe};
