/* SPDX-License-Identifier: MIT */
/* fork backend: a child process per connection (workers = 0), or a pool of
 * N pre-forked workers that each accept on the shared listener and serve one
 * connection at a time (workers = N, as Apache's prefork does).
 *
 * Children share no memory, so everything between connections goes through
 * the parent over one socketpair (the relay) per child: a child's broadcast
 * is sent to the parent, which forwards it to the other children; names and
 * the list of names likewise. The live count (admission included, so that
 * workers agree on max_conns) sits in a page shared by all the processes.
 *
 * The parent never blocks on a child: what a child's relay does not take is
 * buffered. While any child has more than RELAY_HIGH waiting, the parent
 * stops reading the relays, so broadcasters wait (and their clients with
 * them, through TCP) instead of memory growing; a child that stays congested
 * longer than the drain timeout is stuck and is cut off. Slow clients are
 * not the parent's business: each child cuts its own at the output cap.
 *
 * The stop descriptor is an eventfd inherited by every child, so a stop in
 * any process (a signal to the process group, a handler in a child) reaches
 * all of them; the parent then waits for its children and reaps them. */
#include "fork.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ACCEPT_BATCH 16 /* connections accepted (children forked) per turn of the loop */

static void relay_flush(struct fork_state *fs, struct child *ch)
{
    size_t had = ch->out.len;
    while (ch->out.len) {
        ssize_t n = send(ch->relay, ch->out.p + ch->out.off, ch->out.len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        sk__buf_consume(&ch->out, (size_t)n);
    }
    if (ch->out.len < had)
        sk__fork_wake(fs, ch);
    sk__fork_watch_relay(fs, ch);
}

static void cut_off(struct fork_state *fs, struct child *ch)
{
    shutdown(ch->relay, SHUT_RDWR); /* the child reads end of file and closes */
    ch->cut = true;
    sk__buf_free(&ch->out);
    sk__fork_wake(fs, ch);
}

/* Queue a message to a child (flow control is congestion(), below). */
static void relay_send(struct fork_state *fs, struct child *ch, uint32_t type, const void *data,
                       size_t len)
{
    if (ch->cut || ch->exited)
        return;
    if (!sk__buf_put_msg(&ch->out, type, data, len)) {
        cut_off(fs, ch);
        return;
    }
    relay_flush(fs, ch);
    if (ch->out.len > RELAY_HIGH)
        fs->over_high = true;
}

static void send_names(struct fork_state *fs, struct child *to)
{
    struct buf all = {0};
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        if (ch->exited || !ch->serving)
            continue;
        const char *name = ch->name ? ch->name : ch->peer;
        size_t n = strlen(name) + 1;
        if (!sk__buf_reserve(&all, n))
            continue;
        memcpy(all.p + all.len, name, n);
        all.len += n;
    }
    relay_send(fs, to, MSG_NAMES_REP, all.p, all.len);
    sk__buf_free(&all);
}

static void relay_readable(struct fork_state *fs, struct child *ch);

static void handle_msg(struct fork_state *fs, struct child *from, struct msg_head *h, char *payload)
{
    switch (h->type) {
    case MSG_BROADCAST:
    case MSG_BROADCAST_OTHERS:
        for (struct child *ch = fs->head; ch; ch = ch->next)
            if (ch != from || h->type == MSG_BROADCAST)
                relay_send(fs, ch, MSG_DELIVER, payload, h->len);
        break;
    case MSG_NAME:
        if (from == &fs->self || (h->len && payload[h->len - 1] != '\0'))
            break;
        char *copy = h->len ? strdup(payload) : NULL; /* no payload: the default */
        if (h->len && !copy)
            break; /* no memory: the old name stays */
        pthread_mutex_lock(&fs->lock);
        free(from->name);
        from->name = copy;
        pthread_mutex_unlock(&fs->lock);
        break;
    case MSG_NAMES_REQ:
        if (from == &fs->self)
            break;
        /* What other children sent before this request (a join, a rename)
         * may still sit in their relays: take it in before answering (as far
         * as flow control allows: not past a congested child's limit). */
        if (!fs->catching_up) {
            fs->catching_up = true;
            for (struct child *ch = fs->head; ch; ch = ch->next)
                if (ch != from && !ch->exited)
                    relay_readable(fs, ch);
            fs->catching_up = false;
        }
        send_names(fs, from);
        break;
    case MSG_OPEN:
    case MSG_CLOSED:
        if (from == &fs->self || (h->type == MSG_OPEN && (!h->len || payload[h->len - 1])))
            break;
        pthread_mutex_lock(&fs->lock);
        free(from->name);
        free(from->peer);
        from->name = NULL;
        from->peer = h->type == MSG_OPEN ? strdup(payload) : NULL;
        from->serving = from->peer != NULL;
        pthread_mutex_unlock(&fs->lock);
        break;
    }
}

static void relay_readable(struct fork_state *fs, struct child *ch)
{
    for (;;) {
        ssize_t n = sk__buf_read(&ch->in, ch->relay);
        if (n == 0 || (n < 0 && n != -EAGAIN)) {
            sk__fork_exited(fs, ch);
            return;
        }
        struct msg_head h;
        char *payload;
        while (ch->relay >= 0 && sk__next_msg(&ch->in, &h, &payload)) {
            if (h.len > MAX_MSG) { /* not our protocol: cut it */
                sk__fork_kill(ch, SIGKILL);
                sk__fork_exited(fs, ch);
                return;
            }
            handle_msg(fs, ch, &h, payload);
            sk__buf_consume(&ch->in, sizeof(h) + h.len);
        }
        /* A child fell behind: read no more (a busy broadcaster would keep this
         * loop going) until congestion() has paused the relays. */
        if (n < 0 || fs->over_high)
            return;
    }
}

static int parent_names(void *state, sk_name_fn fn, void *arg)
{
    struct fork_state *fs = state;
    struct buf all = {0};
    int n = 0;
    pthread_mutex_lock(&fs->lock);
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        if (ch->exited || !ch->serving)
            continue;
        const char *name = ch->name ? ch->name : ch->peer;
        size_t len = strlen(name) + 1;
        if (!sk__buf_reserve(&all, len)) { /* a short list would pass for the whole room */
            n = -ENOMEM;
            all.len = 0;
            break;
        }
        memcpy(all.p + all.len, name, len);
        all.len += len;
        n++;
    }
    pthread_mutex_unlock(&fs->lock);
    for (size_t off = 0; off < all.len; off += strlen(all.p + off) + 1)
        fn(all.p + off, arg);
    sk__buf_free(&all);
    return n;
}

static const struct sk__remote parent_remote = {.names = parent_names};

static int fork_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    if (sk__fork_in_child())
        return sk__fork_child_broadcast(except, data, len);
    /* Another thread of the parent process: queued in memory for the loop,
     * which it wakes; no lock is held across anything that can wait. The
     * queue is bounded: past it, the caller is told (one message alone may
     * be larger). */
    if (len > MAX_MSG)
        return -EMSGSIZE;
    pthread_mutex_lock(&s->state_lock); /* keeps the loop's state alive */
    struct fork_state *fs = s->backend_state;
    int rc = -ENOTCONN;
    if (fs) {
        pthread_mutex_lock(&fs->self_lock);
        struct buf *q = &fs->self_queue;
        bool first = q->len == 0;
        if (!first && q->len + sizeof(struct msg_head) + len > SELF_QUEUE_MAX)
            rc = -ENOBUFS;
        else
            rc = sk__buf_put_msg(q, MSG_BROADCAST, data, len) ? 0 : -ENOMEM;
        pthread_mutex_unlock(&fs->self_lock);
        uint64_t one = 1;
        if (rc == 0 && first && write(fs->self_efd, &one, sizeof(one)) < 0)
            rc = -errno; /* cannot happen: the counter is far from full */
    }
    pthread_mutex_unlock(&s->state_lock);
    return rc;
}

/* What other threads broadcast, relayed in the order they queued it; left
 * queued while the relays are paused (congestion() comes back for it). */
static void self_take(struct fork_state *fs)
{
    if (fs->paused) {
        fs->self_waiting = true;
        return;
    }
    fs->self_waiting = false;
    pthread_mutex_lock(&fs->self_lock);
    struct buf q = fs->self_queue;
    fs->self_queue = (struct buf){0};
    pthread_mutex_unlock(&fs->self_lock);
    struct msg_head h;
    char *payload;
    while (sk__next_msg(&q, &h, &payload)) {
        handle_msg(fs, &fs->self, &h, payload);
        sk__buf_consume(&q, sizeof(h) + h.len);
    }
    sk__buf_free(&q);
}

/* 0, or the first failure (the others are still tried). */
static int watch_listeners(struct fork_state *fs, int op)
{
    int rc = 0;
    for (int i = 0; i < fs->s->lis.n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &fs->listen_w};
        if (epoll_ctl(fs->epfd, op, fs->s->lis.fd[i], &ev) < 0 && rc == 0)
            rc = -errno;
    }
    return rc;
}

static void on_event(struct fork_state *fs, struct sk__watch *w, uint32_t events)
{
    sk_server *s = fs->s;
    if (w == &fs->drain_w) {
        /* Accept no more, make no more workers (they leave when drained):
         * the loop ends with the last child. */
        fs->stopping = true;
        sk__server_note_drain(s);
        (void)watch_listeners(fs, EPOLL_CTL_DEL);
        (void)epoll_ctl(fs->epfd, EPOLL_CTL_DEL, s->drain_fd, NULL);
    } else if (w == &fs->stop_w) {
        fs->stopping = true;
        for (struct child *ch = fs->head; ch; ch = ch->next)
            sk__fork_wake(fs, ch); /* a parked child would not see the stop descriptor */
        /* Removing a watched descriptor needs no memory: it does not fail. */
        (void)watch_listeners(fs, EPOLL_CTL_DEL);
        (void)epoll_ctl(fs->epfd, EPOLL_CTL_DEL, s->stop_fd, NULL);
        sk__timer_start(&fs->timers, &fs->kill, sk__now_ms() + s->cfg.drain_ms + 1000);
    } else if (w == &fs->self_w) {
        uint64_t v;
        ssize_t got = read(fs->self_efd, &v, sizeof(v)); /* the wake-up, not the queue */
        (void)got;
        self_take(fs);
    } else if (w->kind == SK__W_POSTS) { /* posted to the server */
        sk__posts_run(&s->posts, s);
    } else if (w == &fs->listen_w) {
        /* A batch a turn: clients that reconnect as fast as their children
         * serve them must not keep the loop from reaping the children that
         * are done (their slots) and from its relays. */
        for (int i = 0; i < s->lis.n && !fs->stopping; i++) {
            int fd, n = 0;
            sk_addr peer;
            while (n++ < ACCEPT_BATCH && (fd = sk__accept_fd(s, s->lis.fd[i], &s->reg.ctr, &peer)) > 0)
                sk__fork_spawn(fs, fd, &peer);
        }
    } else {
        struct child *ch = (struct child *)w;
        if (events & EPOLLOUT)
            relay_flush(fs, ch);
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            relay_readable(fs, ch);
    }
}

/* Pause reading the relays while a child is congested; cut off a stuck one. */
static void congestion(struct fork_state *fs)
{
    int64_t now = sk__now_ms();
    int stuck_ms = sk__relay_stuck_ms(fs->s);
    bool congested = false;
    fs->over_high = false;
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        if (ch->cut || ch->exited || ch->out.len <= RELAY_HIGH) {
            ch->full_since = 0;
            continue;
        }
        if (!ch->full_since)
            ch->full_since = now;
        if (now - ch->full_since > stuck_ms)
            cut_off(fs, ch);
        else
            congested = true;
    }
    if (congested == fs->paused)
        return;
    fs->paused = congested;
    for (struct child *ch = fs->head; ch; ch = ch->next)
        sk__fork_watch_relay(fs, ch);
    if (!fs->paused && fs->self_waiting)
        self_take(fs);
}

/* The loop cannot wait any more: stop the children as a stop would (each
 * closes its connection with SK_CLOSE_STOP, flushing), give them the drain
 * time, kill those still there, and reap them all, without epoll. */
static void abandon(struct fork_state *fs)
{
    sk__server_stop(fs->s);
    fs->stopping = true;
    for (struct child *ch = fs->head; ch; ch = ch->next)
        sk__fork_wake(fs, ch);
    int64_t kill_at = sk__now_ms() + fs->s->cfg.drain_ms + 1000;
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        while (waitpid(ch->pid, NULL, WNOHANG) == 0) {
            if (sk__now_ms() >= kill_at) {
                sk__fork_kill(ch, SIGKILL);
                waitpid(ch->pid, NULL, 0);
                break;
            }
            usleep(10 * 1000);
        }
        if (!ch->exited)
            sk__fork_exited(fs, ch);
    }
    sk__fork_reap(fs); /* every child has exited: frees them all */
}

/* The drain time after the stop (and a second more) is over. */
static void kill_stragglers(struct sk__timer *t, int64_t now)
{
    struct fork_state *fs = (struct fork_state *)((char *)t - offsetof(struct fork_state, kill));
    (void)now;
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        sk__fork_kill(ch, SIGKILL);
        if (!ch->exited)
            sk__fork_exited(fs, ch);
    }
    for (struct child *ch = fs->head; ch; ch = ch->next)
        waitpid(ch->pid, NULL, 0);
}

static int fork_loop(struct fork_state *fs)
{
    sk_server *s = fs->s;
    struct epoll_event ev[64];
    bool waiting = false;
    while (!fs->stopping || fs->nchildren > 0) {
        int timeout = waiting || fs->nunsettled ? 10 : fs->paused || fs->nmissing ? 100 : -1;
        int64_t now = sk__now_ms();
        struct sk__timers *user = sk__server_timers(s); /* the server's timers run here */
        timeout = sk__sooner(timeout, sk__timers_next(&fs->timers, now));
        if (user)
            timeout = sk__sooner(timeout, sk__timers_next(user, now));
        if (fs->stopping) /* a drain's deadline (passed: the drain becomes a stop) */
            timeout = sk__sooner(timeout, sk__drain_wait(s, now));
        int n = epoll_wait(fs->epfd, ev, 64, timeout);
        if (n < 0 && errno != EINTR) {
            int rc = -errno;
            abandon(fs);
            return rc;
        }
        for (int i = 0; i < n; i++)
            on_event(fs, ev[i].data.ptr, ev[i].events);
        sk__timers_run(&fs->timers, sk__now_ms());
        if ((user = sk__server_timers(s)))
            sk__timers_run(user, sk__now_ms());
        waiting = sk__fork_reap(fs);
        congestion(fs);
        if (fs->nunsettled) {
            for (struct child *ch = fs->head; ch; ch = ch->next)
                sk__fork_watch_relay(fs, ch);
        }
        for (int k = 0; fs->nmissing && !fs->stopping && k < s->cfg.workers; k++)
            if (fs->missing[k])
                sk__fork_spawn_worker(fs, k);
        (void)s;
    }
    return 0;
}

/* An outbound connection opened outside any child (a server timer, another
 * thread, before the run): a child of its own. */
static int fork_home_dial(struct sk__owner *home, struct sk__dial *d, sk_conn **conn)
{
    struct fork_state *fs = (struct fork_state *)home;
    (void)conn; /* it lives in another process */
    int rc = sk__fork_spawn_dial(fs, d);
    if (rc < 0) /* no child for it: it fails here, its on_close called */
        sk__dial_refuse(fs->s, d, rc);
    return 0;
}

static int fork_run(sk_server *s)
{
    struct fork_state *fs = calloc(1, sizeof(*fs));
    int rc = -ENOMEM;
    if (!fs)
        return -ENOMEM;
    fs->s = s;
    fs->home = (struct sk__owner){.dial = fork_home_dial, .ctr = &s->reg.ctr};
    fs->stop_w.kind = SK__W_STOP;
    fs->drain_w.kind = SK__W_DRAIN;
    fs->listen_w.kind = SK__W_LISTENER;
    fs->self_w.kind = SK__W_INBOX;
    fs->self.relay = fs->self.slot = -1; /* no process, no relay: only a sender's name */
    fs->self_efd = -1;
    sk__timers_init(&fs->timers);
    if ((fs->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = sk__timer_attach(&fs->timers, &fs->kill, kill_stragglers)) < 0)
        goto out;
    /* A park slot per worker, or per admitted connection (children still
     * exiting may briefly want more: those do not park). Untouched slots
     * cost no memory. */
    int nslots = s->cfg.workers > 0 ? s->cfg.workers : s->cfg.max_conns;
    if (nslots > MAX_PARK_SLOTS)
        nslots = MAX_PARK_SLOTS;
    fs->page_size = sizeof(struct page) + (size_t)nslots * sizeof(struct park_slot);
    fs->page = mmap(NULL, fs->page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                    0);
    /* Handed out in order, and stacked when given back: the stack's pages are
     * touched only as deep as children ever ran at once, so a fork does not
     * copy a table of every possible slot. */
    if (s->cfg.workers == 0 && (fs->free_slots = malloc((size_t)nslots * sizeof(int))))
        fs->nslots = nslots;
    if (fs->page == MAP_FAILED || (fs->self_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = -pthread_mutex_init(&fs->lock, NULL)) < 0)
        goto out;
    if ((rc = -pthread_mutex_init(&fs->self_lock, NULL)) < 0)
        goto destroy_lock;
    struct epoll_event stop_ev = {.events = EPOLLIN, .data.ptr = &fs->stop_w};
    struct epoll_event drain_ev = {.events = EPOLLIN, .data.ptr = &fs->drain_w};
    struct epoll_event self_ev = {.events = EPOLLIN, .data.ptr = &fs->self_w};
    struct epoll_event posts_ev = {.events = EPOLLIN, .data.ptr = &s->posts};
    if (epoll_ctl(fs->epfd, EPOLL_CTL_ADD, s->stop_fd, &stop_ev) < 0 ||
        epoll_ctl(fs->epfd, EPOLL_CTL_ADD, s->drain_fd, &drain_ev) < 0 ||
        epoll_ctl(fs->epfd, EPOLL_CTL_ADD, fs->self_efd, &self_ev) < 0 ||
        epoll_ctl(fs->epfd, EPOLL_CTL_ADD, s->posts.efd, &posts_ev) < 0) {
        rc = -errno;
        goto destroy_locks;
    }
    pthread_mutex_lock(&s->state_lock);
    s->backend_state = fs;
    pthread_mutex_unlock(&s->state_lock);
    sk__registry_set_counter(&s->reg, &fs->page->count);
    sk__registry_set_remote(&s->reg, &parent_remote, fs);
    fs->page->ctr.shared = true;
    sk__registry_add_counters(&s->reg, &fs->page->ctr);
    if (s->cfg.workers > 0) /* the pool accepts; the parent only relays */
        for (int k = 0; k < s->cfg.workers; k++)
            sk__fork_spawn_worker(fs, k);
    else
        rc = watch_listeners(fs, EPOLL_CTL_ADD);
    sk__loop_enter(s, &fs->home); /* server timers and posts run here */
    if (rc == 0)
        rc = fork_loop(fs);
    sk__loop_enter(NULL, NULL);
    sk__registry_remove_counters(&s->reg, &fs->page->ctr);
    sk__registry_set_remote(&s->reg, NULL, NULL);
    sk__registry_set_counter(&s->reg, NULL);
    pthread_mutex_lock(&s->state_lock);
    s->backend_state = NULL;
    pthread_mutex_unlock(&s->state_lock);

destroy_locks:
    pthread_mutex_destroy(&fs->self_lock);
destroy_lock:
    pthread_mutex_destroy(&fs->lock);
    sk__buf_free(&fs->self_queue); /* what came after the stop goes nowhere */
out:
    if (fs->self_efd >= 0)
        close(fs->self_efd);
    if (fs->page != MAP_FAILED && fs->page)
        munmap(fs->page, fs->page_size);
    free(fs->free_slots);
    if (fs->epfd >= 0)
        close(fs->epfd);
    sk__timers_free(&fs->timers);
    free(fs);
    return rc;
}

const struct sk__backend sk__backend_fork = {.ops = {
    .name = "fork",
    .summary = "a child process per connection; the parent relays broadcasts",
    .run = fork_run,
    .broadcast = fork_broadcast,
}, .caps = SK__CAP_LOOP | SK__CAP_DRAIN};
