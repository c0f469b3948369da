/* SPDX-License-Identifier: MIT */
/*
 * The io_uring floor: an echo server on raw io_uring (liburing), in the manner
 * of liburing's examples and the io_uring-echo-server. One multishot accept;
 * per connection one multishot receive that picks its buffers from a buffer
 * ring shared by every connection of the ring; sends prepared while the
 * completions are handled and submitted, with the wait for the next ones, by
 * one io_uring_enter per loop turn.
 *
 * A turn waits for 32 completions or 200 µs, whichever comes first; --wait1:
 * for one completion, with no timeout (fewer messages per system call, less
 * waiting).
 *
 * A connection has at most one send in flight, so its bytes leave in order:
 * the received buffer itself, or, when several arrived behind a send, their
 * bytes copied into the connection's own buffer. A buffer goes back to the
 * ring once its bytes are sent or copied; a short send is sent on from where
 * it stopped. A multishot request that ends (a completion without
 * IORING_CQE_F_MORE) is armed again: a receive that ran out of buffers
 * (-ENOBUFS) once buffers have come back, an accept out of descriptors once a
 * connection has closed, so neither spins.
 *
 * --threads N runs N such loops, each with its own SO_REUSEPORT listener on
 * the same port and its own ring and buffers: the kernel spreads the
 * connections.
 */
#include "peer.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define CQ_ENTRIES 8192
#define NBUFS 1024 /* provided buffers per ring: a power of 2 */
#define BUF_SIZE (16 * 1024)
#define BGID 0               /* the buffer group of every receive */
#define WAIT_NR 32           /* completions a turn waits for ... */
#define WAIT_NS (200 * 1000) /* ... or this long */

/* What a completion is for: in the low bits of its user_data, beside the
 * connection's address (NULL for the accept). */
enum { OP_ACCEPT, OP_RECV, OP_SEND, OP_MASK = 3 };

struct conn {
    int fd;
    bool receiving; /* a multishot receive is armed */
    bool sending;   /* a send is in flight */
    bool closing;   /* shut down: freed when nothing is in flight */
    bool parked;    /* its receive waits for buffers, on the dry list */
    struct conn *next_dry;
    int cur;         /* the buffer being sent, or -1 (sending copy) */
    char *out;       /* the bytes of the send in flight */
    size_t off, len; /* how far it has gone */
    int head, tail;  /* buffers waiting behind it (FIFO), or -1 */
    char *copy;      /* where waiting buffers are gathered */
    size_t cap;
};

struct loop {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;          /* NBUFS buffers of BUF_SIZE */
    uint32_t len[NBUFS]; /* bytes held in each buffer */
    int next[NBUFS];     /* the next waiting buffer of the same connection */
    int added;           /* buffers given back since the ring's tail moved */
    struct conn *dry;    /* connections whose receive ran out of buffers */
    int lfd;
    bool accept_parked; /* out of descriptors: accept again after a close */
};

static bool wait1;
static pthread_barrier_t ready;

static void *ud(struct conn *c, int op)
{
    return (void *)((uintptr_t)c | (uintptr_t)op);
}

static char *buf_at(struct loop *l, int bid)
{
    return l->bufs + (size_t)bid * BUF_SIZE;
}

static struct io_uring_sqe *sqe_get(struct loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
    while (!sqe) { /* the queue is full: hand it over early */
        io_uring_submit(&l->ring);
        sqe = io_uring_get_sqe(&l->ring);
    }
    return sqe;
}

static void give_back(struct loop *l, int bid)
{
    io_uring_buf_ring_add(l->br, buf_at(l, bid), BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), l->added++);
}

static void arm_accept(struct loop *l)
{
    struct io_uring_sqe *sqe = sqe_get(l);
    io_uring_prep_multishot_accept(sqe, l->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data(sqe, ud(NULL, OP_ACCEPT));
}

static void arm_recv(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get(l);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data(sqe, ud(c, OP_RECV));
    c->receiving = true;
}

static void send_out(struct loop *l, struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get(l);
    io_uring_prep_send(sqe, c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, ud(c, OP_SEND));
    c->sending = true;
}

/* Free a closing connection once no request of its own is in flight. */
static void release(struct loop *l, struct conn *c)
{
    if (c->receiving || c->sending)
        return;
    if (c->cur >= 0)
        give_back(l, c->cur);
    for (int b = c->head; b >= 0; b = l->next[b])
        give_back(l, b);
    close(c->fd);
    free(c->copy);
    free(c);
    if (l->accept_parked) { /* a descriptor is free again */
        l->accept_parked = false;
        arm_accept(l);
    }
}

/* Close a connection. What is in flight ends when the socket shuts down. */
static void drop(struct loop *l, struct conn *c)
{
    if (c->parked) {
        struct conn **p = &l->dry;
        while (*p != c)
            p = &(*p)->next_dry;
        *p = c->next_dry;
        c->parked = false;
    }
    if (!c->closing && (c->receiving || c->sending))
        shutdown(c->fd, SHUT_RDWR);
    c->closing = true;
    release(l, c);
}

/* Start the next send: one waiting buffer as it is, several gathered. */
static void send_next(struct loop *l, struct conn *c)
{
    c->off = 0;
    if (c->head >= 0 && l->next[c->head] < 0) {
        c->cur = c->head;
        c->out = buf_at(l, c->cur);
        c->len = l->len[c->cur];
        c->head = c->tail = -1;
        send_out(l, c);
        return;
    }
    size_t n = 0;
    for (int b = c->head; b >= 0; b = l->next[b])
        n += l->len[b];
    if (n > c->cap) {
        char *p = realloc(c->copy, n);
        if (!p) {
            drop(l, c);
            return;
        }
        c->copy = p;
        c->cap = n;
    }
    c->len = 0;
    for (int b = c->head; b >= 0; b = l->next[b]) {
        memcpy(c->copy + c->len, buf_at(l, b), l->len[b]);
        c->len += l->len[b];
        give_back(l, b);
    }
    c->cur = c->head = c->tail = -1;
    c->out = c->copy;
    send_out(l, c);
}

static void on_accept(struct loop *l, int res, unsigned flags)
{
    if (res >= 0) {
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(res);
        } else {
            c->fd = res;
            c->cur = c->head = c->tail = -1;
            peer_nodelay(res);
            arm_recv(l, c);
        }
    }
    if (flags & IORING_CQE_F_MORE)
        return;
    if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS)
        l->accept_parked = true;
    else
        arm_accept(l);
}

static void on_recv(struct loop *l, struct conn *c, int res, unsigned flags)
{
    if (res > 0) {
        int bid = (int)(flags >> IORING_CQE_BUFFER_SHIFT);
        l->len[bid] = (uint32_t)res;
        l->next[bid] = -1;
        if (c->closing) {
            give_back(l, bid);
        } else if (c->sending) { /* wait behind the send in flight */
            if (c->tail >= 0)
                l->next[c->tail] = bid;
            else
                c->head = bid;
            c->tail = bid;
        } else {
            c->head = c->tail = bid;
            send_next(l, c);
        }
    }
    if (flags & IORING_CQE_F_MORE)
        return;
    c->receiving = false;
    if (c->closing || res == 0 || (res < 0 && res != -ENOBUFS)) {
        drop(l, c);
    } else if (res == -ENOBUFS) { /* armed again once buffers come back */
        c->parked = true;
        c->next_dry = l->dry;
        l->dry = c;
    } else {
        arm_recv(l, c);
    }
}

static void on_sent(struct loop *l, struct conn *c, int res)
{
    c->sending = false;
    if (res <= 0 || c->closing) {
        drop(l, c);
        return;
    }
    c->off += (size_t)res;
    if (c->off < c->len) { /* short: send the rest */
        send_out(l, c);
        return;
    }
    if (c->cur >= 0)
        give_back(l, c->cur);
    c->cur = -1;
    c->len = 0;
    if (c->head >= 0)
        send_next(l, c);
}

/* Make the buffers given back visible to the kernel, and arm again the
 * receives that ran out while there were none. */
static void refill(struct loop *l)
{
    if (l->added == 0)
        return;
    io_uring_buf_ring_advance(l->br, l->added);
    l->added = 0;
    while (l->dry) {
        struct conn *c = l->dry;
        l->dry = c->next_dry;
        c->parked = false;
        arm_recv(l, c);
    }
}

static int setup(struct loop *l)
{
    /* One thread submits to the ring, and completions are handled when it
     * waits for them (kernel 6.1): no wakeup for each one that comes. */
    struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                                         IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(RING_ENTRIES, &l->ring, &p);
    if (rc == -EINVAL) { /* an older kernel */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(RING_ENTRIES, &l->ring, &p);
    }
    if (rc < 0)
        return rc;
    /* liburing 2.3 has no io_uring_setup_buf_ring: the ring is ours to map. */
    size_t size = NBUFS * sizeof(struct io_uring_buf);
    if (posix_memalign((void **)&l->br, (size_t)sysconf(_SC_PAGESIZE), size) != 0 ||
        !(l->bufs = malloc((size_t)NBUFS * BUF_SIZE)))
        return -ENOMEM;
    io_uring_buf_ring_init(l->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)l->br, .ring_entries = NBUFS, .bgid = BGID};
    if ((rc = io_uring_register_buf_ring(&l->ring, &reg, 0)) < 0)
        return rc;
    for (int b = 0; b < NBUFS; b++)
        give_back(l, b);
    refill(l);
    arm_accept(l);
    return 0;
}

static void handle(struct loop *l, struct io_uring_cqe *cqe)
{
    uintptr_t data = (uintptr_t)io_uring_cqe_get_data(cqe);
    struct conn *c = (struct conn *)(data & ~(uintptr_t)OP_MASK);
    switch (data & OP_MASK) {
    case OP_ACCEPT:
        on_accept(l, cqe->res, cqe->flags);
        break;
    case OP_RECV:
        on_recv(l, c, cqe->res, cqe->flags);
        break;
    case OP_SEND:
        on_sent(l, c, cqe->res);
        break;
    }
}

/* One loop turn: submit what the last one prepared, wait, handle what came. */
static void serve(struct loop *l)
{
    struct __kernel_timespec ts = {.tv_nsec = WAIT_NS};
    for (;;) {
        struct io_uring_cqe *cqe;
        if (wait1)
            io_uring_submit_and_wait(&l->ring, 1);
        else /* -ETIME, fewer than WAIT_NR in time, is no error */
            io_uring_submit_and_wait_timeout(&l->ring, &cqe, WAIT_NR, &ts, NULL);
        unsigned head, n = 0;
        io_uring_for_each_cqe(&l->ring, head, cqe)
        {
            handle(l, cqe);
            n++;
        }
        io_uring_cq_advance(&l->ring, n);
        refill(l);
    }
}

static void start(struct loop *l)
{
    int rc = setup(l);
    if (rc < 0) {
        fprintf(stderr, "uring-echo: io_uring: %s\n", strerror(-rc));
        exit(1);
    }
    pthread_barrier_wait(&ready);
}

static void *thread_main(void *arg)
{
    start(arg);
    serve(arg);
    return NULL;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, true, "--wait1");
    wait1 = o.flag;
    struct loop *loops = calloc((size_t)o.threads, sizeof(*loops));
    if (!loops)
        return 1;
    /* The first listener picks the port (when 0); the others bind that one. */
    for (int t = 0; t < o.threads; t++) {
        loops[t].lfd = peer_listen((struct sockaddr *)&o.addr, o.addr_len, false, o.threads > 1);
        if (loops[t].lfd < 0) {
            perror("uring-echo: listen");
            return 1;
        }
        if (t == 0) {
            socklen_t len = sizeof(o.addr);
            getsockname(loops[0].lfd, (struct sockaddr *)&o.addr, &len);
            o.addr_len = len;
        }
    }
    /* Each thread makes its own ring (the ring's one submitter must be the
     * thread that made it); the line is printed once every ring is ready. */
    pthread_barrier_init(&ready, NULL, (unsigned)o.threads);
    for (int t = 1; t < o.threads; t++) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, thread_main, &loops[t]) != 0) {
            fprintf(stderr, "uring-echo: cannot start a thread\n");
            return 1;
        }
    }
    start(&loops[0]);
    peer_announce(loops[0].lfd);
    serve(&loops[0]);
    return 0;
}
