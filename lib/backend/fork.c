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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void relay_interest(struct fork_state *fs, struct child *ch)
{
    uint32_t want = (fs->paused ? 0 : EPOLLIN) | (ch->out.len ? EPOLLOUT : 0);
    if (ch->events == want || ch->relay < 0)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = ch};
    epoll_ctl(fs->epfd, EPOLL_CTL_MOD, ch->relay, &ev);
    ch->events = want;
}

/* The child may be parked in a recv() (see single.c): what it has been sent
 * is posted before its parked flag is looked at, then it is signalled. */
static void wake(struct fork_state *fs, struct child *ch)
{
    if (ch->slot < 0)
        return;
    struct park_slot *slot = &fs->page->slot[ch->slot];
    __atomic_add_fetch(&slot->posted, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&slot->parked, __ATOMIC_SEQ_CST))
        kill(ch->pid, SK__PARK_SIGNAL);
}

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
        wake(fs, ch);
    relay_interest(fs, ch);
}

static void cut_off(struct fork_state *fs, struct child *ch)
{
    shutdown(ch->relay, SHUT_RDWR); /* the child reads end of file and closes */
    ch->cut = true;
    sk__buf_free(&ch->out);
    wake(fs, ch);
}

/* Queue a message to a child (flow control is congestion(), below). */
static void relay_send(struct fork_state *fs, struct child *ch, uint32_t type, const void *data,
                       size_t len)
{
    struct msg_head h = {.type = type, .len = (uint32_t)len};
    if (ch->cut || ch->exited)
        return;
    if (!sk__buf_reserve(&ch->out, sizeof(h) + len)) {
        cut_off(fs, ch);
        return;
    }
    memcpy(ch->out.p + ch->out.off + ch->out.len, &h, sizeof(h));
    memcpy(ch->out.p + ch->out.off + ch->out.len + sizeof(h), data, len);
    ch->out.len += sizeof(h) + len;
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
        if (from == &fs->self || h->len == 0 || payload[h->len - 1] != '\0')
            break;
        pthread_mutex_lock(&fs->lock);
        free(from->name);
        from->name = payload[0] ? strdup(payload) : NULL;
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

static void child_exited(struct fork_state *fs, struct child *ch)
{
    epoll_ctl(fs->epfd, EPOLL_CTL_DEL, ch->relay, NULL);
    close(ch->relay);
    ch->relay = -1;
    ch->exited = true;
    sk__buf_free(&ch->in);
    sk__buf_free(&ch->out);
}

static void relay_readable(struct fork_state *fs, struct child *ch)
{
    for (;;) {
        ssize_t n = sk__buf_read(&ch->in, ch->relay);
        if (n < 0 && n != -EAGAIN && ch != &fs->self) {
            child_exited(fs, ch);
            return;
        }
        if (n == 0) {
            if (ch != &fs->self)
                child_exited(fs, ch);
            return;
        }
        struct msg_head h;
        char *payload;
        while (ch->relay >= 0 && sk__next_msg(&ch->in, &h, &payload)) {
            if (h.len > MAX_MSG) { /* not our protocol: cut it */
                kill(ch->pid, SIGKILL);
                child_exited(fs, ch);
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

static void spawn_worker(struct fork_state *fs, int k);

/* Reap children whose relay has closed; a child still exiting is tried again.
 * A child's slot goes back here; a worker that died is replaced. */
static bool reap(struct fork_state *fs)
{
    bool waiting = false;
    for (struct child *ch = fs->head, *next; ch; ch = next) {
        next = ch->next;
        if (!ch->exited)
            continue;
        pid_t got = waitpid(ch->pid, NULL, WNOHANG);
        if (got == 0) {
            waiting = true;
            continue;
        }
        pthread_mutex_lock(&fs->lock);
        if (ch->prev)
            ch->prev->next = ch->next;
        else
            fs->head = ch->next;
        if (ch->next)
            ch->next->prev = ch->prev;
        fs->nchildren--;
        pthread_mutex_unlock(&fs->lock);
        if (ch->slot >= 0) /* killed while parked, it may have left the flag set */
            __atomic_store_n(&fs->page->slot[ch->slot].parked, 0, __ATOMIC_RELAXED);
        if (ch->worker < 0) {
            sk__server_release(fs->s);
            if (ch->slot >= 0)
                fs->free_slots[fs->nfree++] = ch->slot;
        } else {
            /* A worker releases its own slots; one that died holding one cannot. */
            if (__atomic_exchange_n(&fs->page->busy[ch->worker], 0, __ATOMIC_ACQ_REL))
                sk__server_release(fs->s);
            if (!fs->stopping)
                spawn_worker(fs, ch->worker);
        }
        free(ch->name);
        free(ch->peer);
        free(ch);
    }
    return waiting;
}

/* Fork a child on a new relay: in the child, run(fs, arg, slot, relay) never
 * returns; in the parent, the child's record (NULL if the fork failed). */
static struct child *fork_child(struct fork_state *fs,
                                void (*run)(struct fork_state *, int, int, int), int arg,
                                int slot, const char *peer)
{
    int sv[2];
    struct child *ch = calloc(1, sizeof(*ch));
    /* Non-blocking at both ends: a child may find its relay drained between
     * poll() and read() (a names reply taken in by a handler meanwhile). */
    if (!ch || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        free(ch);
        return NULL;
    }
    ch->w.kind = SK__W_RELAY;
    ch->worker = -1;
    ch->slot = slot;
    pid_t pid = -1;
    if (!peer || (ch->peer = strdup(peer)))
        pid = fork();
    if (pid == 0) {
        close(sv[0]);
        run(fs, arg, slot, sv[1]); /* does not return */
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        free(ch->peer);
        free(ch);
        return NULL;
    }
    ch->pid = pid;
    ch->relay = sv[0];
    ch->serving = peer != NULL;
    ch->events = fs->paused ? 0 : EPOLLIN;
    struct epoll_event ev = {.events = ch->events, .data.ptr = ch};
    epoll_ctl(fs->epfd, EPOLL_CTL_ADD, ch->relay, &ev);
    pthread_mutex_lock(&fs->lock);
    ch->next = fs->head;
    if (fs->head)
        fs->head->prev = ch;
    fs->head = ch;
    fs->nchildren++;
    pthread_mutex_unlock(&fs->lock);
    return ch;
}

static void spawn_worker(struct fork_state *fs, int k)
{
    struct child *ch = fork_child(fs, sk__fork_worker_main, k, k, NULL);
    if (ch) {
        ch->worker = k;
        if (fs->missing[k]) {
            fs->missing[k] = false;
            fs->nmissing--;
        }
    } else if (!fs->missing[k]) { /* tried again from the loop */
        fs->missing[k] = true;
        fs->nmissing++;
    }
}

/* A child per connection: the parent admitted it (the slot is released at reap). */
static void spawn(struct fork_state *fs, int fd, const sk_addr *addr)
{
    char peer[SK_ADDR_STRLEN];
    if (sk_addr_format(addr, peer, sizeof(peer)) < 0 && sk_peer_addr(fd, peer, sizeof(peer)) < 0)
        strcpy(peer, "?");
    fs->peer = *addr; /* what the child starts with */
    int slot = fs->nfree ? fs->free_slots[--fs->nfree] : -1; /* none: it does not park */
    if (!fork_child(fs, sk__fork_child_main, fd, slot, peer)) {
        if (slot >= 0)
            fs->free_slots[fs->nfree++] = slot;
        sk__server_release(fs->s);
        sk__count(&fs->s->ctr, SK__C_REFUSED, 1);
    }
    close(fd);
}

static int parent_names(sk_server *s, sk_name_fn fn, void *arg)
{
    struct fork_state *fs = s->backend_state;
    if (!fs)
        return 0;
    struct buf all = {0};
    int n = 0;
    pthread_mutex_lock(&fs->lock);
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        if (ch->exited || !ch->serving)
            continue;
        const char *name = ch->name ? ch->name : ch->peer;
        size_t len = strlen(name) + 1;
        if (sk__buf_reserve(&all, len)) {
            memcpy(all.p + all.len, name, len);
            all.len += len;
            n++;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    for (size_t off = 0; off < all.len; off += strlen(all.p + off) + 1)
        fn(all.p + off, arg);
    sk__buf_free(&all);
    return n;
}

static int fork_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    if (sk__fork_in_child())
        return sk__fork_child_broadcast(except, data, len);
    /* Another thread of the parent process: through the loop's own relay. */
    pthread_mutex_lock(&s->reg_lock);
    struct fork_state *fs = s->backend_state;
    int rc = -ENOTCONN;
    if (fs && len <= MAX_MSG) {
        struct msg_head h = {.type = MSG_BROADCAST, .len = (uint32_t)len};
        pthread_mutex_lock(&fs->self_lock);
        rc = (int)sk_write_all(fs->self_tx, &h, sizeof(h), 1000);
        if (rc >= 0)
            rc = (int)sk_write_all(fs->self_tx, data, len, 1000);
        pthread_mutex_unlock(&fs->self_lock);
    }
    pthread_mutex_unlock(&s->reg_lock);
    return rc < 0 ? rc : 0;
}

static void watch_listeners(struct fork_state *fs, int op)
{
    for (int i = 0; i < fs->s->nlisteners; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &fs->listen_w};
        epoll_ctl(fs->epfd, op, fs->s->listeners[i], &ev);
    }
}

static void on_event(struct fork_state *fs, struct sk__watch *w, uint32_t events)
{
    sk_server *s = fs->s;
    if (w == &fs->stop_w) {
        fs->stopping = true;
        for (struct child *ch = fs->head; ch; ch = ch->next)
            wake(fs, ch); /* a parked child would not see the stop descriptor */
        watch_listeners(fs, EPOLL_CTL_DEL);
        epoll_ctl(fs->epfd, EPOLL_CTL_DEL, s->stop_fd, NULL);
        fs->kill_at = sk__now_ms() + s->cfg.drain_ms + 1000;
    } else if (w == &fs->listen_w) {
        for (int i = 0; i < s->nlisteners && !fs->stopping; i++) {
            int fd;
            sk_addr peer;
            while ((fd = sk__server_accept_fd(s, s->listeners[i], &s->ctr, &peer)) > 0)
                spawn(fs, fd, &peer);
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
    int stuck_ms = fs->s->cfg.drain_ms > RELAY_MIN_STUCK_MS ? fs->s->cfg.drain_ms
                                                             : RELAY_MIN_STUCK_MS;
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
    relay_interest(fs, &fs->self);
    for (struct child *ch = fs->head; ch; ch = ch->next)
        relay_interest(fs, ch);
}

static int fork_loop(struct fork_state *fs)
{
    sk_server *s = fs->s;
    struct epoll_event ev[64];
    bool waiting = false;
    while (!fs->stopping || fs->nchildren > 0) {
        int timeout = waiting ? 10 : fs->paused || fs->nmissing ? 100 : -1;
        if (fs->stopping) {
            int64_t left = fs->kill_at - sk__now_ms();
            timeout = timeout < 0 || left < timeout ? (left > 0 ? (int)left : 0) : timeout;
        }
        int n = epoll_wait(fs->epfd, ev, 64, timeout);
        if (n < 0 && errno != EINTR)
            return -errno;
        for (int i = 0; i < n; i++)
            on_event(fs, ev[i].data.ptr, ev[i].events);
        if (fs->stopping && sk__now_ms() >= fs->kill_at) {
            for (struct child *ch = fs->head; ch; ch = ch->next) {
                kill(ch->pid, SIGKILL);
                if (!ch->exited)
                    child_exited(fs, ch);
            }
            for (struct child *ch = fs->head; ch; ch = ch->next)
                waitpid(ch->pid, NULL, 0);
        }
        waiting = reap(fs);
        congestion(fs);
        for (int k = 0; fs->nmissing && !fs->stopping && k < s->cfg.workers; k++)
            if (fs->missing[k])
                spawn_worker(fs, k);
        (void)s;
    }
    return 0;
}

static int fork_run(sk_server *s)
{
    struct fork_state *fs = calloc(1, sizeof(*fs));
    int sv[2] = {-1, -1}, rc = -ENOMEM;
    if (!fs)
        return -ENOMEM;
    fs->s = s;
    fs->stop_w.kind = SK__W_STOP;
    fs->listen_w.kind = SK__W_LISTENER;
    fs->self.w.kind = SK__W_RELAY;
    fs->self.slot = -1;
    fs->epfd = epoll_create1(EPOLL_CLOEXEC);
    /* A park slot per worker, or per admitted connection (children still
     * exiting may briefly want more: those do not park). Untouched slots
     * cost no memory. */
    int nslots = s->cfg.workers > 0 ? s->cfg.workers : s->cfg.max_conns;
    if (nslots > MAX_PARK_SLOTS)
        nslots = MAX_PARK_SLOTS;
    fs->page_size = sizeof(struct page) + (size_t)nslots * sizeof(struct park_slot);
    fs->page = mmap(NULL, fs->page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                    0);
    if (s->cfg.workers == 0 && (fs->free_slots = malloc((size_t)nslots * sizeof(int))))
        for (int i = nslots - 1; i >= 0; i--)
            fs->free_slots[fs->nfree++] = i;
    if (fs->epfd < 0 || fs->page == MAP_FAILED ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto out;
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->self_lock, NULL);
    fs->self.relay = sv[0];
    fs->self_tx = sv[1];
    sk_set_nonblocking(sv[0], true);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &fs->stop_w};
    epoll_ctl(fs->epfd, EPOLL_CTL_ADD, s->stop_fd, &ev);
    ev.data.ptr = &fs->self;
    fs->self.events = EPOLLIN;
    epoll_ctl(fs->epfd, EPOLL_CTL_ADD, fs->self.relay, &ev);
    pthread_mutex_lock(&s->reg_lock);
    s->backend_state = fs;
    s->names_hook = parent_names;
    sk__server_set_counter(s, &fs->page->count);
    pthread_mutex_unlock(&s->reg_lock);
    fs->page->ctr.shared = true;
    sk__server_add_counters(s, &fs->page->ctr);
    if (s->cfg.workers > 0) /* the pool accepts; the parent only relays */
        for (int k = 0; k < s->cfg.workers; k++)
            spawn_worker(fs, k);
    else
        watch_listeners(fs, EPOLL_CTL_ADD);
    rc = fork_loop(fs);
    sk__server_remove_counters(s, &fs->page->ctr);
    pthread_mutex_lock(&s->reg_lock);
    s->backend_state = NULL;
    s->names_hook = NULL;
    sk__server_set_counter(s, &s->count);
    pthread_mutex_unlock(&s->reg_lock);

    pthread_mutex_destroy(&fs->self_lock);
    pthread_mutex_destroy(&fs->lock);
    sk__buf_free(&fs->self.in);
out:
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    if (fs->page != MAP_FAILED && fs->page)
        munmap(fs->page, fs->page_size);
    free(fs->free_slots);
    if (fs->epfd >= 0)
        close(fs->epfd);
    free(fs);
    return rc;
}

const sk_backend sk__backend_fork = {
    .name = "fork",
    .summary = "a child process per connection; the parent relays broadcasts",
    .run = fork_run,
    .broadcast = fork_broadcast,
};
