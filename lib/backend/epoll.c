/* SPDX-License-Identifier: MIT */
/* epoll-et and epoll-lt: one core parameterised by trigger mode.
 *
 * A reactor is a thread with its own epoll set, read buffer, connection lists
 * and inbox. workers = N gives N reactors; each owns its connections, so no
 * connection state is ever locked. Broadcasts reach the other reactors as
 * reference-counted messages through their inboxes.
 *
 * Edge-triggered: a connection is registered once for IN|OUT|RDHUP and every
 * readiness edge is drained until the socket is empty, READ_BUDGET reads a
 * turn at most: a connection with more goes to the back of the queue (its
 * registration is modified, so epoll reports it again), and one flooding peer
 * cannot hold up the others. Level-triggered: one read per event, and
 * EPOLLOUT is in the interest set only while output waits.
 *
 * Each reactor's timers (its connections' idle timeouts and drain deadlines,
 * its listeners' rest) are on one heap, which also gives epoll_wait() its
 * timeout. */
#include "inbox.h"
#include "../transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define LISTEN_PAUSE_MS 100 /* rest after running out of descriptors */
#define RETRY_MS 10         /* epoll-lt: wait before trying a failed epoll_ctl again */
#define MAX_RETRIES 50      /* then give the connection up */
#define READ_BUDGET 4       /* epoll-et: reads of a connection per turn (256 KiB) */
#define THROTTLE_MS 1       /* a throttled broadcaster's reactor looks at the inboxes this often */

struct lwatch {
    struct sk__watch w; /* SK__W_LISTENER */
    int fd;
};

/* A connection as a reactor keeps it: the core's part, then the reactor's. */
struct ep_conn {
    sk_conn c;                   /* first: the core's pointer is this one's */
    struct ep_conn *prev, *next; /* on the open or the closing list */
    struct ep_conn *dirty_next;  /* on the dirty (or retry) list */
    uint32_t events;             /* the registered interest set */
    uint8_t retries;             /* epoll-lt: failed attempts to change it, in a row */
    bool in_dirty;               /* on the dirty, retry or held list */
};

static struct ep_conn *ep(sk_conn *c)
{
    return (struct ep_conn *)c;
}

struct list {
    struct ep_conn *head, *tail;
};

struct ep_state;

struct reactor {
    struct sk__owner owner; /* first: the owner pointer is the reactor */
    struct sk__counters ctr;
    sk_server *s;
    struct ep_state *st;
    int epfd;
    bool edge;
    bool stopping;
    bool exclusive;         /* listeners shared with other reactors */
    bool server_timers;     /* the first reactor: it runs the server's timers */
    struct lwatch *lw;
    int nlw;
    struct sk__timers timers;
    struct sk__timer pause; /* armed: listeners out of the set until it fires */
    struct sk__watch stop_w;
    struct sk__watch drain_w;
    bool stopped; /* the stop, not only a drain: every connection closes */
    struct sk__inbox inbox;
    struct sk__posts posts; /* sk_server_post() to its connections */
    bool posts_open;
    struct list open;       /* to broadcast to, and to stop */
    struct list closing;    /* flushing their last output */
    struct ep_conn *dirty;  /* to settle after this batch of events */
    struct ep_conn *retry;  /* epoll-lt: interest to set again after RETRY_MS */
    struct ep_conn *held;   /* input their transport holds: read next turn, unasked */
    sk_conn *current;       /* whose callback runs now, or NULL */
    int nconns;
    int nthrottled;         /* its connections not read while another inbox is full */
    char *buf;
    pthread_t thread;
    int rc;
};

struct ep_state {
    sk_server *s;
    int n;
    struct reactor r[];
};

static __thread struct reactor *ep_current;

/* ---- lists ------------------------------------------------------------- */

static void list_push(struct list *l, struct ep_conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_del(struct list *l, struct ep_conn *c)
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

/* Onto one of the reactor's lists of connections to look at (dirty, retry,
 * held), unless it is on one already: in_dirty keeps it on one at a time. */
static void mark_on(struct ep_conn **list, struct ep_conn *c)
{
    if (!c->in_dirty) {
        c->in_dirty = true;
        c->dirty_next = *list;
        *list = c;
    }
}

static void mark_dirty(struct reactor *r, struct ep_conn *c)
{
    mark_on(&r->dirty, c);
}

static void ep_notify(struct sk__owner *owner, sk_conn *c)
{
    mark_dirty((struct reactor *)owner, ep(c));
}

/* ---- broadcasts: to this reactor at once, to the others through their inboxes */

static void deliver_local(struct reactor *r, sk_conn *except, const void *data, size_t len)
{
    for (struct ep_conn *e = r->open.head; e; e = e->next)
        if (&e->c != except && !__atomic_load_n(&e->c.pending, __ATOMIC_RELAXED))
            sk__conn_queue(&e->c, data, len, false);
}

static void inbox_drain(struct reactor *r)
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

static int ep_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    struct reactor *self = ep_current && ep_current->s == s ? ep_current : NULL;
    if (self)
        deliver_local(self, except, data, len);
    if (self && self->st->n == 1)
        return 0;
    /* Made before the lock is taken: the lock is held only to post, so that a
     * thread broadcasting without pause does not keep the reactors from it. */
    struct sk__msg *m = sk__msg_new(except, data, len);
    if (!m)
        return -ENOMEM;
    /* A connection's broadcast may fill an inbox past SK__INBOX_MAX (up to
     * SK__INBOX_HARD): its reactor then stops reading it until the inbox
     * drains, so a reactor that is only late slows the sender down. Another
     * thread's broadcast stops at SK__INBOX_MAX and is told. */
    sk_conn *from = self ? self->current : NULL;
    size_t limit = from ? SK__INBOX_HARD : SK__INBOX_MAX;
    bool full = false;
    pthread_mutex_lock(&s->state_lock); /* keeps the reactors alive while posting */
    struct ep_state *st = s->backend_state;
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
    if (rc == -ENOBUFS && from) /* past even that: cut off, as a reader that cannot keep up */
        sk__conn_request_close(from, SK_CLOSE_SLOW);
    else if (full && from && !from->throttled) {
        from->throttled = true;
        self->nthrottled++;
    }
    return rc;
}

/* ---- connections ------------------------------------------------------- */

/* epoll-lt: keep the interest set equal to what the connection waits for. */
static void ep_interest(struct reactor *r, struct ep_conn *e)
{
    sk_conn *c = &e->c;
    uint32_t want = 0;
    if (c->fd < 0) /* an outbound connection whose name is being resolved */
        return;
    if (sk__conn_takes_input(c))
        want |= EPOLLIN;
    else if (sk__conn_reading(c)) /* paused: a hang-up is reported once, not each turn */
        want |= EPOLLET;
    if (sk__conn_wants_write(c))
        want |= EPOLLOUT;
    if (want == e->events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = e};
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        e->events = want;
        e->retries = 0;
    } else if (++e->retries > MAX_RETRIES) {
        sk__conn_request_close(c, SK_CLOSE_ERROR);
        mark_dirty(r, e);
    } else { /* ENOMEM is passing: try again soon */
        mark_on(&r->retry, e);
    }
}

/* epoll-et: a connection that used its read budget with bytes perhaps left
 * goes to the back of the queue: modifying its registration makes epoll look
 * at it again and report it, after the connections already ready. */
static void ep_requeue(struct reactor *r, struct ep_conn *e, bool hup)
{
    struct epoll_event ev = {.events = e->events, .data.ptr = e};
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, e->c.fd, &ev) < 0) /* then no edge may be lost */
        sk__conn_input(&e->c, r->buf, SK__SCRATCH + 1, INT32_MAX, hup);
}

static void ep_conn_event(struct reactor *r, struct ep_conn *e, uint32_t ev)
{
    sk_conn *c = &e->c;
    if (c->connecting) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            r->current = c;
            sk__conn_connected(c); /* on_open, or the failure */
            r->current = NULL;
        }
        if (c->connecting) {
            mark_dirty(r, e);
            return;
        }
    }
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && c->state == SK__OPEN) {
        bool hup = (ev & (EPOLLRDHUP | EPOLLHUP)) != 0;
        r->current = c;
        if (sk__conn_input(c, r->buf, SK__SCRATCH + 1, r->edge ? READ_BUDGET : 1, hup) &&
            r->edge)
            ep_requeue(r, e, hup);
        r->current = NULL;
    }
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && sk__conn_wants_write(c))
        sk__conn_flush(c);
    mark_dirty(r, e);
}

static void ep_settle_dirty(struct reactor *r)
{
    while (r->dirty) {
        struct ep_conn *e = r->dirty;
        r->dirty = e->dirty_next;
        e->in_dirty = false;
        bool was_open = e->c.state == SK__OPEN;
        r->current = &e->c; /* on_close may broadcast */
        bool done = sk__conn_settle(&e->c);
        r->current = NULL;
        if (done) {
            list_del(was_open ? &r->open : &r->closing, e);
            r->nconns--;
            /* Out of the set before the close: another descriptor of the same
             * socket (the program's dup(), a child's copy, even a /proc
             * reader's passing reference) would keep its registration, and
             * events for freed memory, alive past close(). (A socket whose
             * EPOLL_CTL_ADD failed is not there: ENOENT, nothing lost.) */
            if (e->c.fd >= 0)
                (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, e->c.fd, NULL);
            sk__conn_free(&e->c);
            continue;
        }
        if (was_open && e->c.state == SK__CLOSING) {
            list_del(&r->open, e);
            list_push(&r->closing, e);
        }
        if (!r->edge) {
            e->c.resumed = false; /* EPOLLIN back in the set tells what waits */
            ep_interest(r, e);
        }
        /* epoll-et: a resumed connection may have missed its edges: read it unasked */
        if (sk__conn_takes_input(&e->c) && (sk__tp_pending(&e->c) || e->c.resumed))
            mark_on(&r->held, e);
    }
}

/* ---- listeners --------------------------------------------------------- */

/* Watch (ADD) or stop watching (DEL) the reactor's listeners: 0, or the
 * first failure (the others are still tried). */
static int listeners_ctl(struct reactor *r, int op)
{
    int rc = 0;
    for (int i = 0; i < r->nlw; i++) {
        struct epoll_event ev = {.events = EPOLLIN | (r->exclusive ? EPOLLEXCLUSIVE : 0),
                                 .data.ptr = &r->lw[i]};
        if (epoll_ctl(r->epfd, op, r->lw[i].fd, &ev) < 0 && rc == 0)
            rc = -errno;
    }
    return rc;
}

static void ep_accept(struct reactor *r, int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        sk_addr peer;
        int fd = sk__accept_fd(r->s, lfd, &r->ctr, &peer);
        if (fd == 0)
            return;
        if (fd < 0) { /* not even a descriptor to refuse with: rest the listeners */
            listeners_ctl(r, EPOLL_CTL_DEL);
            sk__timer_start(&r->timers, &r->pause, r->owner.now + LISTEN_PAUSE_MS);
            return;
        }
        sk_conn *c = sk__conn_new(r->s, sizeof(struct ep_conn), fd, &r->owner, &peer);
        if (!c) {
            sk__registry_release(&r->s->reg);
            sk__count(&r->ctr, SK__C_REFUSED, 1);
            close(fd);
            continue;
        }
        uint32_t events = r->edge ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLIN;
        struct epoll_event ev = {.events = events, .data.ptr = c};
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            sk__conn_free(c); /* accepted, closed unserved */
            continue;
        }
        ep(c)->events = events;
        list_push(&r->open, ep(c));
        r->nconns++;
        r->current = c;
        sk__conn_open(c);
        r->current = NULL;
        mark_dirty(r, ep(c));
    }
}

/* An outbound connection's socket: watched for the end of its connect (and,
 * edge-triggered, for everything after). */
static void ep_watch(struct sk__owner *owner, sk_conn *c)
{
    struct reactor *r = (struct reactor *)owner;
    uint32_t events = r->edge ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLOUT;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        c->error = -errno;
        sk__conn_request_close(c, SK_CLOSE_CONNECT);
    } else {
        ep(c)->events = events;
    }
    mark_dirty(r, ep(c));
}

static int ep_dial(struct sk__owner *owner, struct sk__dial *d, sk_conn **conn)
{
    struct reactor *r = (struct reactor *)owner;
    sk_conn *c = sk__conn_dial(r->s, sizeof(struct ep_conn), owner, d);
    if (!c)
        return -ENOMEM;
    list_push(&r->open, ep(c));
    r->nconns++;
    if (c->fd >= 0)
        ep_watch(owner, c); /* marks it dirty too */
    else
        mark_dirty(r, ep(c));
    if (conn)
        *conn = c;
    return 0;
}

/* ---- the loop ---------------------------------------------------------- */

/* Read the throttled connections again once every other inbox is back under
 * half its bound. */
static void ep_unthrottle(struct reactor *r)
{
    for (int i = 0; i < r->st->n; i++)
        if (&r->st->r[i] != r && sk__inbox_bytes(&r->st->r[i].inbox) > SK__INBOX_MAX / 2)
            return;
    for (struct ep_conn *e = r->open.head; e; e = e->next) {
        if (e->c.throttled) {
            e->c.throttled = false;
            e->c.resumed = true; /* epoll-et: its edges were not read: read it unasked */
            mark_dirty(r, e);
        }
    }
    r->nthrottled = 0;
}

static int ep_timeout(const struct reactor *r)
{
    int t = sk__timers_next(&r->timers, r->owner.now);
    if (r->nthrottled)
        t = sk__sooner(t, THROTTLE_MS);
    struct sk__timers *st = r->server_timers ? sk__server_timers(r->s) : NULL;
    if (st)
        t = sk__sooner(t, sk__timers_next(st, r->owner.now));
    if (r->retry)
        t = sk__sooner(t, RETRY_MS);
    if (r->stopping) /* a drain's deadline (passed: the drain becomes a stop) */
        t = sk__sooner(t, sk__drain_wait(r->s, r->owner.now));
    return r->held ? 0 : t;
}

/* The listeners' rest is over. */
static void ep_resume(struct sk__timer *t, int64_t now)
{
    struct reactor *r = (struct reactor *)((char *)t - offsetof(struct reactor, pause));
    if (!r->stopping && listeners_ctl(r, EPOLL_CTL_ADD) < 0) {
        /* Not all watched again: take them all out and try after a pause. */
        listeners_ctl(r, EPOLL_CTL_DEL);
        sk__timer_start(&r->timers, t, now + LISTEN_PAUSE_MS);
    }
}

/* A drain, or the first step of a stop: accept no more. The loop ends once
 * its connections have. */
static void ep_stop_accepting(struct reactor *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    sk__server_note_drain(r->s); /* its deadline, if a child process began it */
    /* Removing a watched descriptor needs no memory: it does not fail. */
    if (!sk__timer_armed(&r->pause))
        (void)listeners_ctl(r, EPOLL_CTL_DEL);
    (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->s->drain_fd, NULL);
}

static void ep_begin_stop(struct reactor *r)
{
    if (r->stopped)
        return;
    ep_stop_accepting(r);
    r->stopped = true;
    (void)epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->s->stop_fd, NULL);
    for (struct ep_conn *e = r->open.head; e; e = e->next)
        mark_dirty(r, e); /* each one settles with SK_CLOSE_STOP */
}

static int reactor_loop(struct reactor *r)
{
    struct epoll_event ev[MAX_EVENTS];
    ep_current = r;
    sk__loop_enter(r->s, &r->owner);
    while (!r->stopping || r->nconns > 0) {
        int n = epoll_wait(r->epfd, ev, MAX_EVENTS, ep_timeout(r));
        struct ep_conn *held = r->held; /* marked in_dirty: events leave them on this list */
        r->held = NULL;
        r->owner.now = sk__now_ms();
        if (n < 0 && errno != EINTR) {
            r->rc = -errno;
            sk__server_stop(r->s);
            for (struct ep_conn *e = r->open.head; e; e = e->next)
                sk__conn_request_close(&e->c, SK_CLOSE_ERROR);
            for (struct ep_conn *e = r->closing.head; e; e = e->next) {
                e->c.deadline = r->owner.now; /* no loop left to flush with */
                mark_dirty(r, e);
            }
            ep_begin_stop(r);
        }
        for (int i = 0; i < n; i++) {
            struct sk__watch *w = ev[i].data.ptr;
            switch (w->kind) {
            case SK__W_CONN:
                ep_conn_event(r, (struct ep_conn *)w, ev[i].events);
                break;
            case SK__W_LISTENER:
                if (!r->stopping)
                    ep_accept(r, ((struct lwatch *)w)->fd);
                break;
            case SK__W_STOP:
                ep_begin_stop(r);
                break;
            case SK__W_DRAIN:
                ep_stop_accepting(r);
                break;
            case SK__W_INBOX:
                inbox_drain(r);
                break;
            case SK__W_POSTS: /* this reactor's, or the server's (the first reactor) */
                sk__posts_run((struct sk__posts *)w, r->s);
                break;
            }
        }
        while (held) { /* no event will tell of the input their transport holds */
            struct ep_conn *e = held;
            held = e->dirty_next;
            e->in_dirty = false;
            /* resumed: read to the end, a peer's close included, as after RDHUP */
            uint32_t ev = EPOLLIN | (e->c.resumed ? EPOLLRDHUP : 0);
            e->c.resumed = false;
            ep_conn_event(r, e, ev);
        }
        sk__timers_run(&r->timers, r->owner.now);
        struct sk__timers *st = r->server_timers ? sk__server_timers(r->s) : NULL;
        if (st)
            sk__timers_run(st, r->owner.now);
        if (r->nthrottled)
            ep_unthrottle(r);
        while (r->retry) { /* still marked in_dirty: move them onto the dirty list */
            struct ep_conn *e = r->retry;
            r->retry = e->dirty_next;
            e->dirty_next = r->dirty;
            r->dirty = e;
        }
        ep_settle_dirty(r);
    }
    ep_current = NULL;
    sk__loop_enter(NULL, NULL);
    return r->rc;
}

static void *reactor_thread(void *arg)
{
    struct reactor *r = arg;
    r->rc = reactor_loop(r);
    return NULL;
}

/* ---- setup ------------------------------------------------------------- */

static int reactor_init(struct reactor *r, sk_server *s, struct ep_state *st, int k, bool edge)
{
    struct epoll_event ev = {.events = EPOLLIN};
    r->s = s;
    r->st = st;
    r->edge = edge;
    r->server_timers = k == 0; /* the thread of sk_server_run() */
    r->owner.notify = ep_notify;
    r->owner.ctr = &r->ctr;
    r->owner.now = sk__now_ms();
    r->owner.timers = &r->timers;
    r->owner.posts = &r->posts;
    r->owner.dial = ep_dial;
    r->owner.watch = ep_watch;
    sk__timers_init(&r->timers);
    r->stop_w.kind = SK__W_STOP;
    r->drain_w.kind = SK__W_DRAIN;
    r->inbox.efd = -1; /* not open: reactor_destroy() leaves it */
    if ((r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return -errno;
    int rc = sk__inbox_open(&r->inbox);
    if (rc < 0)
        return rc;
    if ((rc = sk__posts_open(&r->posts, -1)) < 0)
        return rc;
    r->posts_open = true;
    if (!(r->buf = malloc(SK__SCRATCH + 1)))
        return -ENOMEM;
    if ((rc = sk__timer_attach(&r->timers, &r->pause, ep_resume)) < 0)
        return rc;

    /* Own listeners when the server bound one set per worker, else share set 0. */
    int per_set = s->lis.nsets ? s->lis.n / s->lis.nsets : 0; /* none: a client program */
    int set = s->lis.nsets == st->n ? k : 0;
    r->exclusive = s->lis.nsets != st->n && st->n > 1;
    r->lw = calloc((size_t)per_set, sizeof(*r->lw));
    if (!r->lw)
        return -ENOMEM;
    r->nlw = per_set;
    for (int i = 0; i < per_set; i++)
        r->lw[i] = (struct lwatch){.w.kind = SK__W_LISTENER, .fd = s->lis.fd[set * per_set + i]};
    if ((rc = listeners_ctl(r, EPOLL_CTL_ADD)) < 0)
        return rc;
    ev.data.ptr = &r->stop_w;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, s->stop_fd, &ev) < 0)
        return -errno;
    ev.data.ptr = &r->drain_w;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, s->drain_fd, &ev) < 0)
        return -errno;
    ev.data.ptr = &r->inbox.w;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->inbox.efd, &ev) < 0)
        return -errno;
    ev.data.ptr = &r->posts;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->posts.efd, &ev) < 0)
        return -errno;
    ev.data.ptr = &s->posts; /* the server's home: where its timers run too */
    if (k == 0 && epoll_ctl(r->epfd, EPOLL_CTL_ADD, s->posts.efd, &ev) < 0)
        return -errno;
    sk__registry_add_counters(&s->reg, &r->ctr);
    return 0;
}

static void reactor_destroy(struct reactor *r)
{
    if (r->owner.notify && r->s) /* added its counters */
        sk__registry_remove_counters(&r->s->reg, &r->ctr);
    sk__inbox_close(&r->inbox);
    if (r->posts_open) /* what is left runs: its connections are gone */
        sk__posts_close(&r->posts, r->s, true);
    if (r->epfd >= 0)
        close(r->epfd);
    free(r->buf);
    free(r->lw);
    sk__timers_free(&r->timers);
}

static int ep_run(sk_server *s, bool edge)
{
    int n = s->cfg.workers > 1 ? s->cfg.workers : 1;
    struct ep_state *st = calloc(1, sizeof(*st) + (size_t)n * sizeof(struct reactor));
    if (!st)
        return -ENOMEM;
    st->s = s;
    st->n = n;
    int rc = 0, inited = 0;
    for (; inited < n && rc == 0; inited++) {
        st->r[inited].epfd = -1;
        rc = reactor_init(&st->r[inited], s, st, inited, edge);
    }
    int started = 1;
    if (rc == 0) {
        pthread_mutex_lock(&s->state_lock);
        s->backend_state = st;
        pthread_mutex_unlock(&s->state_lock);
        for (; started < n; started++) {
            if (pthread_create(&st->r[started].thread, NULL, reactor_thread, &st->r[started])) {
                rc = -EAGAIN;
                sk__server_stop(s);
                break;
            }
        }
        int rc0 = reactor_loop(&st->r[0]);
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
        reactor_destroy(&st->r[i]);
    free(st);
    return rc;
}

static int ep_run_et(sk_server *s)
{
    return ep_run(s, true);
}

static int ep_run_lt(sk_server *s)
{
    return ep_run(s, false);
}

const struct sk__backend sk__backend_epoll_et = {.ops = {
    .name = "epoll-et",
    .summary = "edge-triggered epoll reactor(s), each edge drained until EAGAIN",
    .run = ep_run_et,
    .broadcast = ep_broadcast,
}, .caps = SK__CAP_LISTENER_SETS | SK__CAP_LOOP | SK__CAP_DRAIN};

const struct sk__backend sk__backend_epoll_lt = {.ops = {
    .name = "epoll-lt",
    .summary = "level-triggered epoll reactor(s), one read per readiness event",
    .run = ep_run_lt,
    .broadcast = ep_broadcast,
}, .caps = SK__CAP_LISTENER_SETS | SK__CAP_LOOP | SK__CAP_DRAIN};
