/* SPDX-License-Identifier: MIT */
/* What runs in the fork backend's children: one connection each (with the
 * outbound connections its callbacks open), an outbound connection opened
 * outside any child, or a pool worker's accept loop. Everything between
 * processes goes through the parent. */
#include "fork.h"
#include "../handover.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    bool active;
    int relay;
    sk_conn *conn;        /* the accepted one, while served; else NULL */
    struct sk__single loop; /* the child's loop: its connections */
    struct buf in;
    struct page *page;
    struct sk__park park;
    bool can_park;
    int send_ms;          /* the longest wait for room in the relay */
} child;

/* The child's park, if it has a slot and took the signal. */
static struct sk__park *child_park(int slot)
{
    if (!child.can_park || slot < 0)
        return NULL;
    child.park = (struct sk__park){.parked = &child.page->slot[slot].parked,
                                   .posted = &child.page->slot[slot].posted};
    return &child.park;
}

/* Send a message to the parent. The parent reads no relay while a child is
 * congested, for stuck_ms at most (then it cuts that one off and reads on),
 * so a sender waits for room that long and a little more, never without end.
 * A send that fails leaves part of a message in the relay, which is then out
 * of step for good: it is shut, the parent sees its end, and this child's
 * connection closes (child_on_relay), cut off as the room could not take it. */
static int child_send(uint32_t type, const void *data, size_t len)
{
    struct msg_head h = {.type = type, .len = (uint32_t)len};
    if (len > MAX_MSG)
        return -EMSGSIZE;
    int64_t deadline = sk__deadline(child.send_ms);
    ssize_t rc = sk_write_all(child.relay, &h, sizeof(h), sk__remaining(deadline));
    if (rc >= 0 && len)
        rc = sk_write_all(child.relay, data, len, sk__remaining(deadline));
    if (rc < 0)
        shutdown(child.relay, SHUT_RDWR);
    return rc < 0 ? (int)rc : 0;
}

/* Handle the relay's complete messages; names (if any) go to fn. */
static int child_dispatch(sk_name_fn fn, void *arg, bool *got_names)
{
    struct msg_head h;
    char *payload;
    int names = 0;
    while (sk__next_msg(&child.in, &h, &payload)) {
        if (h.type == MSG_DELIVER) { /* to every connection of this child */
            for (int i = 0; i < child.loop.n; i++) {
                sk_conn *c = child.loop.conns[i];
                if (sk__conn_reading(c))
                    sk__conn_queue(c, payload, h.len, true);
            }
        } else if (h.type == MSG_NAMES_REP && fn) {
            for (size_t off = 0; off < h.len; off += strlen(payload + off) + 1, names++)
                fn(payload + off, arg);
            *got_names = true;
        }
        sk__buf_consume(&child.in, sizeof(h) + h.len);
    }
    return names;
}

static void child_on_relay(struct sk__single *l, void *arg)
{
    (void)arg;
    ssize_t n = sk__buf_read(&child.in, child.relay);
    if (n == 0 || (n < 0 && n != -EAGAIN)) {
        /* The parent cut us off for not keeping up, or is gone. */
        for (int i = 0; i < l->n; i++)
            sk__conn_request_close(l->conns[i],
                                   sk__stopping(l->s) ? SK_CLOSE_STOP : SK_CLOSE_SLOW);
        return;
    }
    child_dispatch(NULL, NULL, NULL);
}

static int child_names(void *unused, sk_name_fn fn, void *arg)
{
    (void)unused;
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
        ssize_t n = sk__buf_read(&child.in, child.relay);
        if (n == 0 || (n < 0 && n != -EAGAIN))
            return -ECONNRESET;
        names += child_dispatch(fn, arg, &got);
    }
    return names;
}

/* A name with its NUL (it may be ""); no payload: back to the default. */
static void child_rename(void *unused, sk_conn *c)
{
    (void)unused;
    child_send(MSG_NAME, c->name, c->name ? strlen(c->name) + 1 : 0);
}

static int child_count(void *unused)
{
    (void)unused;
    return __atomic_load_n(&child.page->count, __ATOMIC_ACQUIRE);
}

/* What every child does first: drop what the parent holds, take the hooks. */
static void become_child(struct fork_state *fs, int relay, bool keep_listeners)
{
    sk_server *s = fs->s;
    close(fs->epfd);
    for (struct child *ch = fs->head; ch; ch = ch->next)
        if (ch->relay >= 0)
            close(ch->relay);
    close(fs->self_efd);
    for (int i = 0; i < s->lis.n && !keep_listeners; i++)
        close(s->lis.fd[i]);
    int handover = sk__handover_fd(s->handover);
    if (handover >= 0) /* the parent's to answer */
        close(handover);
    /* Other threads of the parent may have held these at the fork. A child
     * without them cannot serve: it ends, and its connection with it. */
    if (pthread_mutex_init(&s->state_lock, NULL) != 0 || pthread_mutex_init(&s->reg.lock, NULL) != 0)
        _exit(1);
    child.active = true;
    child.relay = relay;
    child.send_ms = sk__relay_stuck_ms(s) + RELAY_SEND_SLACK_MS;
    child.page = fs->page;
    static const struct sk__remote remote = {
        .count = child_count, .names = child_names, .renamed = child_rename};
    sk__registry_set_remote(&s->reg, &remote, NULL);
    child.can_park = sk__park_install() == 0;
    if (sk__single_init(&child.loop, s) < 0)
        _exit(1);
    child.loop.owner.ctr = &fs->page->ctr;
    child.loop.extra_fd = relay;
    child.loop.on_extra = child_on_relay;
    s->home_posts = &child.loop.posts; /* a thread of this child posts to the server: here */
}

/* A child for one connection: the parent admitted it and will give its slot back. */
void sk__fork_child_main(struct fork_state *fs, int fd, int slot, int relay)
{
    sk_server *s = fs->s;
    static int held = 1;
    become_child(fs, relay, false);
    sk__registry_set_counter(&s->reg, &held); /* our close releases nothing shared: the parent does */
    child.conn = sk__conn_new(s, sizeof(sk_conn), fd, &child.loop.owner, &fs->peer);
    if (!child.conn || sk__single_add(&child.loop, child.conn) < 0)
        _exit(1);
    child.loop.park = child_park(slot);
    sk__single_run(&child.loop);
    _exit(0);
}

/* A child for an outbound connection the parent was asked for. */
void sk__fork_dial_main(struct fork_state *fs, int unused, int slot, int relay)
{
    sk_server *s = fs->s;
    (void)unused;
    (void)slot;
    become_child(fs, relay, false);
    sk_conn *c = sk__conn_dial(s, sizeof(sk_conn), &child.loop.owner, fs->dialing);
    if (!c || sk__single_add(&child.loop, c) < 0)
        _exit(1);
    sk__single_run(&child.loop);
    _exit(0);
}

/* A pool worker: accept on the shared listener, serve, again, until the stop. */
void sk__fork_worker_main(struct fork_state *fs, int k, int slot, int relay)
{
    sk_server *s = fs->s;
    become_child(fs, relay, true);
    struct sk__owner *owner = &child.loop.owner; /* each connection's loop's in turn */
    int n = s->lis.n;
    struct pollfd *p = calloc((size_t)n + 3, sizeof(*p));
    if (!p)
        _exit(1);
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = s->lis.fd[i], .events = POLLIN};
    p[n] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
    p[n + 1] = (struct pollfd){.fd = relay, .events = POLLIN};
    p[n + 2] = (struct pollfd){.fd = s->drain_fd, .events = POLLIN};
    while (!sk__stopping(s)) {
        if (poll(p, (nfds_t)n + 3, -1) < 0 && errno != EINTR)
            break;
        if (p[n].revents || p[n + 2].revents) /* a stop, or a drain: between connections */
            break;
        if (p[n + 1].revents) {
            ssize_t got = sk__buf_read(&child.in, relay);
            if (got == 0 || (got < 0 && got != -EAGAIN))
                break; /* the parent is gone, or cut us off */
            child_dispatch(NULL, NULL, NULL);
        }
        for (int i = 0; i < n; i++) {
            int fd;
            sk_addr peer;
            if (!(p[i].revents & POLLIN) ||
                (fd = sk__accept_fd(s, p[i].fd, owner->ctr, &peer)) <= 0)
                continue;
            __atomic_store_n(&fs->page->busy[k], 1, __ATOMIC_RELEASE);
            owner->now = sk__now_ms();
            child.conn = sk__conn_new(s, sizeof(sk_conn), fd, owner, &peer);
            if (child.conn && sk__single_add(&child.loop, child.conn) < 0) {
                sk__conn_free(child.conn); /* gives the slot back */
                child.conn = NULL;
            } else if (child.conn) {
                const char *peer = sk_conn_peer(child.conn);
                child_send(MSG_OPEN, peer, strlen(peer) + 1);
                child.loop.park = child_park(slot);
                sk__single_run(&child.loop);
                child.conn = NULL;
                child_send(MSG_CLOSED, NULL, 0);
            } else {
                sk__registry_release(&s->reg);
                close(fd);
            }
            __atomic_store_n(&fs->page->busy[k], 0, __ATOMIC_RELEASE);
        }
    }
    _exit(0);
}

bool sk__fork_in_child(void)
{
    return child.active;
}

int sk__fork_child_broadcast(sk_conn *except, const void *data, size_t len)
{
    if (child.loop.n == 1 && child.loop.conns[0] == child.conn) /* through the parent, in its order */
        return child_send(except == child.conn ? MSG_BROADCAST_OTHERS : MSG_BROADCAST, data, len);
    /* Several connections here (a pair): this child's at once, the others' through the parent. */
    for (int i = 0; i < child.loop.n; i++) {
        sk_conn *c = child.loop.conns[i];
        if (c != except && sk__conn_reading(c))
            sk__conn_queue(c, data, len, true);
    }
    return child_send(MSG_BROADCAST_OTHERS, data, len);
}
