/* SPDX-License-Identifier: MIT */
/* fork backend: a child process per connection.
 *
 * Children share no memory, so everything between connections goes through
 * the parent over one socketpair (the relay) per child: a child's broadcast
 * is sent to the parent, which forwards it to the other children; names and
 * the list of names likewise. The live count sits in a shared page.
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
#include "../server_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    MSG_BROADCAST = 1,  /* child -> parent: to every connection */
    MSG_BROADCAST_OTHERS, /* child -> parent: to every other connection */
    MSG_DELIVER,        /* parent -> child: queue for your connection */
    MSG_NAME,           /* child -> parent: my connection's name ("" = default) */
    MSG_NAMES_REQ,      /* child -> parent: list the names */
    MSG_NAMES_REP       /* parent -> child: the names, NUL-terminated, one after another */
};

struct msg_head {
    uint32_t type;
    uint32_t len;
};

#define MAX_MSG (1u << 30)
#define RELAY_READ (64 * 1024)
#define RELAY_HIGH (1u << 20)      /* backlog that pauses reading the relays */
#define RELAY_MIN_STUCK_MS 2000    /* congested this long (at least): cut off */

struct buf {
    char *p;
    size_t off, len, cap;
};

struct child {
    struct sk__watch w; /* SK__W_RELAY */
    pid_t pid;
    int relay;
    bool cut;           /* relay shut: the child did not keep up */
    bool exited;        /* relay closed; waiting to reap */
    uint32_t events;    /* the relay's epoll interest now */
    int64_t full_since; /* when its backlog passed RELAY_HIGH, or 0 */
    char *name;         /* set by the child, else NULL */
    char *peer;
    struct buf in, out;
    struct child *prev, *next;
};

struct fork_state {
    sk_server *s;
    int epfd;
    pthread_mutex_t lock; /* the children list, against sk_server_names from other threads */
    struct child *head;
    int nchildren;
    int *shared_count;    /* MAP_SHARED: the live count, for the children */
    struct child self;    /* reads what other threads of this process broadcast */
    int self_tx;
    pthread_mutex_t self_lock;
    bool stopping;
    bool paused;          /* not reading relays: some child is congested */
    int64_t kill_at;
    struct sk__watch stop_w;
    struct sk__watch listen_w;
};

/* ---- buffers ----------------------------------------------------------- */

static bool buf_reserve(struct buf *b, size_t n)
{
    if (b->off + b->len + n <= b->cap)
        return true;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len);
        b->off = 0;
        if (b->len + n <= b->cap)
            return true;
    }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    *b = (struct buf){0};
}

/* Read what the relay has into b: > 0 bytes, 0 at end of file, < 0 nothing now. */
static ssize_t buf_read(struct buf *b, int fd)
{
    if (!buf_reserve(b, RELAY_READ))
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(fd, b->p + b->off + b->len, RELAY_READ);
        if (n > 0)
            b->len += (size_t)n;
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

/* The next whole message in b, or false. */
static bool next_msg(struct buf *b, struct msg_head *h, char **payload)
{
    if (b->len < sizeof(*h))
        return false;
    memcpy(h, b->p + b->off, sizeof(*h));
    if (b->len - sizeof(*h) < h->len)
        return false;
    *payload = b->p + b->off + sizeof(*h);
    return true;
}

/* ---- in a child -------------------------------------------------------- */

static struct {
    bool active;
    int relay;
    sk_conn *conn;
    struct buf in;
    int *shared_count;
} child;

static int child_send(uint32_t type, const void *data, size_t len)
{
    struct msg_head h = {.type = type, .len = (uint32_t)len};
    if (len > MAX_MSG)
        return -EMSGSIZE;
    ssize_t rc = sk_write_all(child.relay, &h, sizeof(h), -1);
    if (rc >= 0 && len)
        rc = sk_write_all(child.relay, data, len, -1);
    return rc < 0 ? (int)rc : 0;
}

/* Handle the relay's complete messages; names (if any) go to fn. */
static int child_dispatch(sk_name_fn fn, void *arg, bool *got_names)
{
    struct msg_head h;
    char *payload;
    int names = 0;
    while (next_msg(&child.in, &h, &payload)) {
        if (h.type == MSG_DELIVER && child.conn->state == SK__OPEN &&
            !__atomic_load_n(&child.conn->pending, __ATOMIC_RELAXED)) {
            sk__conn_queue(child.conn, payload, h.len, true);
        } else if (h.type == MSG_NAMES_REP && fn) {
            for (size_t off = 0; off < h.len; off += strlen(payload + off) + 1, names++)
                fn(payload + off, arg);
            *got_names = true;
        }
        buf_consume(&child.in, sizeof(h) + h.len);
    }
    return names;
}

static void child_on_relay(sk_conn *c, void *arg)
{
    (void)arg;
    ssize_t n = buf_read(&child.in, child.relay);
    if (n == 0 || (n < 0 && n != -EAGAIN)) {
        /* The parent cut us off for not keeping up, or is gone. */
        sk__conn_request_close(c, sk__stopping(c->srv) ? SK_CLOSE_STOP : SK_CLOSE_SLOW);
        return;
    }
    child_dispatch(NULL, NULL, NULL);
}

static int child_names(sk_server *s, sk_name_fn fn, void *arg)
{
    (void)s;
    int rc = child_send(MSG_NAMES_REQ, NULL, 0);
    if (rc < 0)
        return rc;
    int64_t deadline = sk__deadline(1000);
    bool got = false;
    int names = 0;
    while (!got) {
        int ready = sk__wait(child.relay, POLLIN, deadline);
        if (ready == 0)
            return -ETIMEDOUT;
        if (ready < 0)
            return ready;
        if (buf_read(&child.in, child.relay) <= 0)
            return -ECONNRESET;
        names += child_dispatch(fn, arg, &got);
    }
    return names;
}

static void child_rename(sk_conn *c)
{
    const char *name = c->name ? c->name : "";
    child_send(MSG_NAME, name, strlen(name) + 1);
}

static int child_count(const sk_server *s)
{
    (void)s;
    return __atomic_load_n(child.shared_count, __ATOMIC_ACQUIRE);
}

static void child_main(struct fork_state *fs, int fd, int relay)
{
    sk_server *s = fs->s;
    /* What the parent holds is not ours. */
    close(fs->epfd);
    for (struct child *ch = fs->head; ch; ch = ch->next)
        close(ch->relay);
    close(fs->self.relay);
    close(fs->self_tx);
    for (int i = 0; i < s->nlisteners; i++)
        close(s->listeners[i]);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    /* Other threads of the parent may have held these at the fork. */
    pthread_mutex_init(&s->reg_lock, NULL);

    child.active = true;
    child.relay = relay;
    child.shared_count = fs->shared_count;
    s->count_hook = child_count;
    s->names_hook = child_names;
    s->rename_hook = child_rename;
    struct sk__counters ctr = {.shared = false};
    struct sk__owner owner = {.ctr = &ctr, .now = sk__now_ms()};
    child.conn = sk__conn_new(s, fd, &owner, NULL);
    if (!child.conn)
        _exit(1);
    sk__serve_one(child.conn, relay, child_on_relay, NULL);
    _exit(0);
}

/* ---- in the parent ----------------------------------------------------- */

static void relay_interest(struct fork_state *fs, struct child *ch)
{
    uint32_t want = (fs->paused ? 0 : EPOLLIN) | (ch->out.len ? EPOLLOUT : 0);
    if (ch->events == want || ch->relay < 0)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = ch};
    epoll_ctl(fs->epfd, EPOLL_CTL_MOD, ch->relay, &ev);
    ch->events = want;
}

static void relay_flush(struct fork_state *fs, struct child *ch)
{
    while (ch->out.len) {
        ssize_t n = send(ch->relay, ch->out.p + ch->out.off, ch->out.len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        buf_consume(&ch->out, (size_t)n);
    }
    relay_interest(fs, ch);
}

static void cut_off(struct child *ch)
{
    shutdown(ch->relay, SHUT_RDWR); /* the child reads end of file and closes */
    ch->cut = true;
    buf_free(&ch->out);
}

/* Queue a message to a child (flow control is congestion(), below). */
static void relay_send(struct fork_state *fs, struct child *ch, uint32_t type, const void *data,
                       size_t len)
{
    struct msg_head h = {.type = type, .len = (uint32_t)len};
    if (ch->cut || ch->exited)
        return;
    if (!buf_reserve(&ch->out, sizeof(h) + len)) {
        cut_off(ch);
        return;
    }
    memcpy(ch->out.p + ch->out.off + ch->out.len, &h, sizeof(h));
    memcpy(ch->out.p + ch->out.off + ch->out.len + sizeof(h), data, len);
    ch->out.len += sizeof(h) + len;
    relay_flush(fs, ch);
}

static void send_names(struct fork_state *fs, struct child *to)
{
    struct buf all = {0};
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        const char *name = ch->name ? ch->name : ch->peer;
        size_t n = strlen(name) + 1;
        if (ch->exited || !buf_reserve(&all, n))
            continue;
        memcpy(all.p + all.len, name, n);
        all.len += n;
    }
    relay_send(fs, to, MSG_NAMES_REP, all.p, all.len);
    buf_free(&all);
}

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
        if (from != &fs->self)
            send_names(fs, from);
        break;
    }
}

static void child_exited(struct fork_state *fs, struct child *ch)
{
    epoll_ctl(fs->epfd, EPOLL_CTL_DEL, ch->relay, NULL);
    close(ch->relay);
    ch->relay = -1;
    ch->exited = true;
    buf_free(&ch->in);
    buf_free(&ch->out);
}

static void relay_readable(struct fork_state *fs, struct child *ch)
{
    for (;;) {
        ssize_t n = buf_read(&ch->in, ch->relay);
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
        while (ch->relay >= 0 && next_msg(&ch->in, &h, &payload)) {
            if (h.len > MAX_MSG) { /* not our protocol: cut it */
                kill(ch->pid, SIGKILL);
                child_exited(fs, ch);
                return;
            }
            handle_msg(fs, ch, &h, payload);
            buf_consume(&ch->in, sizeof(h) + h.len);
        }
        if (n < 0)
            return;
    }
}

/* Reap children whose relay has closed; a child still exiting is tried again. */
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
        __atomic_fetch_sub(&fs->s->count, 1, __ATOMIC_ACQ_REL);
        __atomic_store_n(fs->shared_count, fs->s->count, __ATOMIC_RELEASE);
        sk__count(&fs->s->ctr, SK__C_CLOSED, 1);
        free(ch->name);
        free(ch->peer);
        free(ch);
    }
    return waiting;
}

static void spawn(struct fork_state *fs, int fd)
{
    sk_server *s = fs->s;
    int sv[2];
    char peer[SK_ADDR_STRLEN];
    struct child *ch = calloc(1, sizeof(*ch));
    if (!ch || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto refuse;
    if (sk_peer_addr(fd, peer, sizeof(peer)) < 0)
        strcpy(peer, "?");
    ch->w.kind = SK__W_RELAY;
    ch->peer = strdup(peer);
    __atomic_store_n(fs->shared_count, s->count, __ATOMIC_RELEASE);
    pid_t pid = ch->peer ? fork() : -1;
    if (pid == 0) {
        close(sv[0]);
        child_main(fs, fd, sv[1]); /* does not return */
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        goto refuse;
    }
    close(fd);
    ch->pid = pid;
    ch->relay = sv[0];
    sk_set_nonblocking(ch->relay, true);
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
    sk__count(&s->ctr, SK__C_ACCEPTED, 1);
    return;
refuse:
    if (ch)
        free(ch->peer);
    free(ch);
    close(fd);
    __atomic_fetch_sub(&s->count, 1, __ATOMIC_ACQ_REL);
    sk__count(&s->ctr, SK__C_REFUSED, 1);
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
        const char *name = ch->name ? ch->name : ch->peer;
        size_t len = strlen(name) + 1;
        if (!ch->exited && buf_reserve(&all, len)) {
            memcpy(all.p + all.len, name, len);
            all.len += len;
            n++;
        }
    }
    pthread_mutex_unlock(&fs->lock);
    for (size_t off = 0; off < all.len; off += strlen(all.p + off) + 1)
        fn(all.p + off, arg);
    buf_free(&all);
    return n;
}

static int fork_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    if (child.active)
        return child_send(except == child.conn ? MSG_BROADCAST_OTHERS : MSG_BROADCAST, data, len);
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
        watch_listeners(fs, EPOLL_CTL_DEL);
        epoll_ctl(fs->epfd, EPOLL_CTL_DEL, s->stop_fd, NULL);
        fs->kill_at = sk__now_ms() + s->cfg.drain_ms + 1000;
    } else if (w == &fs->listen_w) {
        for (int i = 0; i < s->nlisteners && !fs->stopping; i++) {
            int fd;
            while ((fd = sk__server_accept_fd(s, s->listeners[i], &s->ctr)) > 0)
                spawn(fs, fd);
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
    for (struct child *ch = fs->head; ch; ch = ch->next) {
        if (ch->cut || ch->exited || ch->out.len <= RELAY_HIGH) {
            ch->full_since = 0;
            continue;
        }
        if (!ch->full_since)
            ch->full_since = now;
        if (now - ch->full_since > stuck_ms)
            cut_off(ch);
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
        int timeout = waiting ? 10 : fs->paused ? 100 : -1;
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
    fs->epfd = epoll_create1(EPOLL_CLOEXEC);
    fs->shared_count = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fs->epfd < 0 || fs->shared_count == MAP_FAILED ||
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
    watch_listeners(fs, EPOLL_CTL_ADD);

    pthread_mutex_lock(&s->reg_lock);
    s->backend_state = fs;
    s->names_hook = parent_names;
    pthread_mutex_unlock(&s->reg_lock);
    rc = fork_loop(fs);
    pthread_mutex_lock(&s->reg_lock);
    s->backend_state = NULL;
    s->names_hook = NULL;
    pthread_mutex_unlock(&s->reg_lock);

    pthread_mutex_destroy(&fs->self_lock);
    pthread_mutex_destroy(&fs->lock);
    buf_free(&fs->self.in);
out:
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    if (fs->shared_count != MAP_FAILED && fs->shared_count)
        munmap(fs->shared_count, sizeof(int));
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
