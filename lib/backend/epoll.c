/* SPDX-License-Identifier: MIT */
/* epoll-et and epoll-lt: one core parameterised by trigger mode.
 *
 * A reactor is a thread with its own epoll set, read buffer, connection lists
 * and inbox. workers = N gives N reactors; each owns its connections, so no
 * connection state is ever locked. Broadcasts reach the other reactors as
 * reference-counted messages through their inboxes.
 *
 * Edge-triggered: a connection is registered once for IN|OUT|RDHUP and every
 * readiness edge is drained until the socket is empty. Level-triggered: one
 * read per event, and EPOLLOUT is in the interest set only while output waits. */
#include "../server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define LISTEN_PAUSE_MS 100 /* rest after running out of descriptors */
#define RETRY_MS 10         /* epoll-lt: wait before trying a failed epoll_ctl again */
#define MAX_RETRIES 50      /* then give the connection up */

struct ep_msg {
    int refs;
    sk_conn *except;
    size_t len;
    char data[];
};

struct inbox {
    struct sk__watch w; /* SK__W_INBOX */
    int efd;
    pthread_mutex_t lock;
    struct ep_msg **items;
    size_t n, cap;
};

struct lwatch {
    struct sk__watch w; /* SK__W_LISTENER */
    int fd;
};

struct list {
    sk_conn *head, *tail;
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
    struct lwatch *lw;
    int nlw;
    int64_t paused_until;   /* listeners out of the set until then; 0: not paused */
    struct sk__watch stop_w;
    struct inbox inbox;
    struct list open;       /* by last read, oldest first */
    struct list closing;    /* by flush deadline, soonest first */
    sk_conn *dirty;         /* to settle after this batch of events */
    sk_conn *retry;         /* epoll-lt: interest to set again after RETRY_MS */
    int nconns;
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

static void list_push(struct list *l, sk_conn *c)
{
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void list_del(struct list *l, sk_conn *c)
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

static void mark_dirty(struct reactor *r, sk_conn *c)
{
    if (!c->in_dirty) {
        c->in_dirty = true;
        c->dirty_next = r->dirty;
        r->dirty = c;
    }
}

static void ep_notify(struct sk__owner *owner, sk_conn *c)
{
    mark_dirty((struct reactor *)owner, c);
}

/* ---- inbox: messages from other threads -------------------------------- */

static void msg_release(struct ep_msg *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(m);
}

static int inbox_post(struct inbox *in, struct ep_msg *m)
{
    pthread_mutex_lock(&in->lock);
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 16;
        struct ep_msg **items = realloc(in->items, cap * sizeof(*items));
        if (!items) {
            pthread_mutex_unlock(&in->lock);
            return -ENOMEM;
        }
        in->items = items;
        in->cap = cap;
    }
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    in->items[in->n++] = m;
    bool first = in->n == 1;
    pthread_mutex_unlock(&in->lock);
    if (first) {
        uint64_t one = 1;
        ssize_t w = write(in->efd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

static void deliver_local(struct reactor *r, sk_conn *except, const void *data, size_t len)
{
    for (sk_conn *c = r->open.head; c; c = c->next)
        if (c != except && !__atomic_load_n(&c->pending, __ATOMIC_RELAXED))
            sk__conn_queue(c, data, len, false);
}

static void inbox_drain(struct reactor *r)
{
    struct inbox *in = &r->inbox;
    uint64_t v;
    ssize_t got = read(in->efd, &v, sizeof(v));
    (void)got;
    pthread_mutex_lock(&in->lock);
    struct ep_msg **items = in->items;
    size_t n = in->n;
    in->items = NULL;
    in->n = in->cap = 0;
    pthread_mutex_unlock(&in->lock);
    for (size_t i = 0; i < n; i++) {
        if (!r->stopping)
            deliver_local(r, items[i]->except, items[i]->data, items[i]->len);
        msg_release(items[i]);
    }
    free(items);
}

static int ep_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    struct reactor *self = ep_current && ep_current->s == s ? ep_current : NULL;
    if (self)
        deliver_local(self, except, data, len);
    pthread_mutex_lock(&s->reg_lock); /* keeps the reactors alive while posting */
    struct ep_state *st = s->backend_state;
    if (!st || (self && st->n == 1)) {
        pthread_mutex_unlock(&s->reg_lock);
        return st || self ? 0 : -ENOTCONN;
    }
    struct ep_msg *m = malloc(sizeof(*m) + len);
    int rc = m ? 0 : -ENOMEM;
    if (m) {
        m->refs = 1;
        m->except = except;
        m->len = len;
        memcpy(m->data, data, len);
        for (int i = 0; i < st->n && rc == 0; i++)
            if (&st->r[i] != self)
                rc = inbox_post(&st->r[i].inbox, m);
        msg_release(m);
    }
    pthread_mutex_unlock(&s->reg_lock);
    return rc;
}

/* ---- connections ------------------------------------------------------- */

/* epoll-lt: keep the interest set equal to what the connection waits for. */
static void ep_interest(struct reactor *r, sk_conn *c)
{
    uint32_t want = 0;
    if (c->state == SK__OPEN && !__atomic_load_n(&c->pending, __ATOMIC_RELAXED))
        want |= EPOLLIN;
    if (sk__conn_wants_write(c))
        want |= EPOLLOUT;
    if (want == c->ep_events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->ep_events = want;
        c->ep_retries = 0;
    } else if (++c->ep_retries > MAX_RETRIES) {
        sk__conn_request_close(c, SK_CLOSE_ERROR);
        mark_dirty(r, c);
    } else { /* ENOMEM is passing: try again soon (in_dirty keeps it off the dirty list) */
        c->in_dirty = true;
        c->dirty_next = r->retry;
        r->retry = c;
    }
}

static void ep_conn_event(struct reactor *r, sk_conn *c, uint32_t ev)
{
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && c->state == SK__OPEN) {
        sk__conn_input(c, r->buf, SK__SCRATCH + 1, r->edge,
                       (ev & (EPOLLRDHUP | EPOLLHUP)) != 0);
        if (c->state == SK__OPEN && c != r->open.tail) { /* most recently heard from */
            list_del(&r->open, c);
            list_push(&r->open, c);
        }
    }
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && sk__conn_wants_write(c))
        sk__conn_flush(c);
    mark_dirty(r, c);
}

static void ep_settle_dirty(struct reactor *r)
{
    while (r->dirty) {
        sk_conn *c = r->dirty;
        r->dirty = c->dirty_next;
        c->in_dirty = false;
        bool was_open = c->state == SK__OPEN;
        if (sk__conn_settle(c)) {
            list_del(was_open ? &r->open : &r->closing, c);
            r->nconns--;
            sk__conn_free(c);
            continue;
        }
        if (was_open && c->state == SK__CLOSING) {
            list_del(&r->open, c);
            list_push(&r->closing, c);
        }
        if (!r->edge)
            ep_interest(r, c);
    }
}

/* ---- listeners --------------------------------------------------------- */

static void listeners_ctl(struct reactor *r, int op)
{
    for (int i = 0; i < r->nlw; i++) {
        struct epoll_event ev = {.events = EPOLLIN | (r->exclusive ? EPOLLEXCLUSIVE : 0),
                                 .data.ptr = &r->lw[i]};
        epoll_ctl(r->epfd, op, r->lw[i].fd, &ev);
    }
}

static void ep_accept(struct reactor *r, int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        sk_addr peer;
        int fd = sk__server_accept_fd(r->s, lfd, &r->ctr, &peer);
        if (fd == 0)
            return;
        if (fd < 0) { /* not even a descriptor to refuse with: rest the listeners */
            listeners_ctl(r, EPOLL_CTL_DEL);
            r->paused_until = r->owner.now + LISTEN_PAUSE_MS;
            return;
        }
        sk_conn *c = sk__conn_new(r->s, fd, &r->owner, NULL, &peer);
        if (!c) {
            sk__server_release(r->s);
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
        c->ep_events = events;
        list_push(&r->open, c);
        r->nconns++;
        sk__conn_open(c);
        mark_dirty(r, c);
    }
}

/* ---- the loop ---------------------------------------------------------- */

static int min_timeout(int a, int b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int ep_timeout(const struct reactor *r)
{
    int t = -1;
    if (r->open.head && r->s->cfg.idle_ms)
        t = sk__conn_timeout(r->open.head);
    if (r->closing.head)
        t = min_timeout(t, sk__conn_timeout(r->closing.head));
    if (r->paused_until) {
        int64_t left = r->paused_until - r->owner.now;
        t = min_timeout(t, left > 0 ? (int)left : 0);
    }
    if (r->retry)
        t = min_timeout(t, RETRY_MS);
    return t;
}

static void ep_expire(struct reactor *r)
{
    int64_t now = r->owner.now;
    int idle = r->s->cfg.idle_ms;
    if (idle)
        for (sk_conn *c = r->open.head; c && now - c->last_read >= idle; c = c->next)
            mark_dirty(r, c);
    for (sk_conn *c = r->closing.head; c && now >= c->deadline; c = c->next)
        mark_dirty(r, c);
    if (r->paused_until && now >= r->paused_until) {
        r->paused_until = 0;
        if (!r->stopping)
            listeners_ctl(r, EPOLL_CTL_ADD);
    }
}

static void ep_begin_stop(struct reactor *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    if (!r->paused_until)
        listeners_ctl(r, EPOLL_CTL_DEL);
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->s->stop_fd, NULL);
    for (sk_conn *c = r->open.head; c; c = c->next)
        mark_dirty(r, c); /* each one settles with SK_CLOSE_STOP */
}

static int reactor_loop(struct reactor *r)
{
    struct epoll_event ev[MAX_EVENTS];
    ep_current = r;
    while (!r->stopping || r->nconns > 0) {
        int n = epoll_wait(r->epfd, ev, MAX_EVENTS, ep_timeout(r));
        r->owner.now = sk__now_ms();
        if (n < 0 && errno != EINTR) {
            r->rc = -errno;
            sk_server_stop(r->s);
            for (sk_conn *c = r->open.head; c; c = c->next)
                sk__conn_request_close(c, SK_CLOSE_ERROR);
            for (sk_conn *c = r->closing.head; c; c = c->next)
                c->deadline = r->owner.now; /* no loop left to flush with */
            ep_begin_stop(r);
        }
        for (int i = 0; i < n; i++) {
            struct sk__watch *w = ev[i].data.ptr;
            switch (w->kind) {
            case SK__W_CONN:
                ep_conn_event(r, (sk_conn *)w, ev[i].events);
                break;
            case SK__W_LISTENER:
                if (!r->stopping)
                    ep_accept(r, ((struct lwatch *)w)->fd);
                break;
            case SK__W_STOP:
                ep_begin_stop(r);
                break;
            case SK__W_INBOX:
                inbox_drain(r);
                break;
            }
        }
        ep_expire(r);
        while (r->retry) { /* still marked in_dirty: move them onto the dirty list */
            sk_conn *c = r->retry;
            r->retry = c->dirty_next;
            c->dirty_next = r->dirty;
            r->dirty = c;
        }
        ep_settle_dirty(r);
    }
    ep_current = NULL;
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
    r->owner.notify = ep_notify;
    r->owner.ctr = &r->ctr;
    r->owner.now = sk__now_ms();
    r->stop_w.kind = SK__W_STOP;
    r->inbox.w.kind = SK__W_INBOX;
    r->inbox.efd = -1;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->buf = malloc(SK__SCRATCH + 1);
    r->inbox.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->epfd < 0 || !r->buf || r->inbox.efd < 0 ||
        pthread_mutex_init(&r->inbox.lock, NULL) != 0)
        return -ENOMEM;

    /* Own listeners when the server bound one set per worker, else share set 0. */
    int per_set = s->nlisteners / s->nsets;
    int set = s->nsets == st->n ? k : 0;
    r->exclusive = s->nsets != st->n && st->n > 1;
    r->lw = calloc((size_t)per_set, sizeof(*r->lw));
    if (!r->lw)
        return -ENOMEM;
    r->nlw = per_set;
    for (int i = 0; i < per_set; i++)
        r->lw[i] = (struct lwatch){.w.kind = SK__W_LISTENER, .fd = s->listeners[set * per_set + i]};
    listeners_ctl(r, EPOLL_CTL_ADD);
    ev.data.ptr = &r->stop_w;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, s->stop_fd, &ev) < 0)
        return -errno;
    ev.data.ptr = &r->inbox.w;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->inbox.efd, &ev) < 0)
        return -errno;
    sk__server_add_counters(s, &r->ctr);
    return 0;
}

static void reactor_destroy(struct reactor *r)
{
    if (r->owner.notify && r->s) /* added its counters */
        sk__server_remove_counters(r->s, &r->ctr);
    for (size_t i = 0; i < r->inbox.n; i++)
        msg_release(r->inbox.items[i]);
    free(r->inbox.items);
    if (r->inbox.efd >= 0) {
        close(r->inbox.efd);
        pthread_mutex_destroy(&r->inbox.lock);
    }
    if (r->epfd >= 0)
        close(r->epfd);
    free(r->buf);
    free(r->lw);
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
        pthread_mutex_lock(&s->reg_lock);
        s->backend_state = st;
        pthread_mutex_unlock(&s->reg_lock);
        for (; started < n; started++) {
            if (pthread_create(&st->r[started].thread, NULL, reactor_thread, &st->r[started])) {
                rc = -EAGAIN;
                sk_server_stop(s);
                break;
            }
        }
        int rc0 = reactor_loop(&st->r[0]);
        for (int i = 1; i < started; i++) {
            pthread_join(st->r[i].thread, NULL);
            rc = rc ? rc : st->r[i].rc;
        }
        rc = rc ? rc : rc0;
        pthread_mutex_lock(&s->reg_lock);
        s->backend_state = NULL;
        pthread_mutex_unlock(&s->reg_lock);
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

const sk_backend sk__backend_epoll_et = {
    .name = "epoll-et",
    .summary = "edge-triggered epoll reactor(s), each edge drained until EAGAIN",
    .run = ep_run_et,
    .broadcast = ep_broadcast,
};

const sk_backend sk__backend_epoll_lt = {
    .name = "epoll-lt",
    .summary = "level-triggered epoll reactor(s), one read per readiness event",
    .run = ep_run_lt,
    .broadcast = ep_broadcast,
};
