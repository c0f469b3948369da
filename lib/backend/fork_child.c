/* SPDX-License-Identifier: MIT */
/* What runs in the fork backend's children: one connection each, or a pool
 * worker's accept loop. Everything between connections goes to the parent. */
#include "fork.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    bool active;
    int relay;
    sk_conn *conn;        /* NULL: a worker between connections */
    struct buf in;
    struct page *page;
    struct sk__park park;
    bool can_park;
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
    while (sk__next_msg(&child.in, &h, &payload)) {
        if (h.type == MSG_DELIVER && child.conn && sk__conn_reading(child.conn)) {
            sk__conn_queue(child.conn, payload, h.len, true);
        } else if (h.type == MSG_NAMES_REP && fn) {
            for (size_t off = 0; off < h.len; off += strlen(payload + off) + 1, names++)
                fn(payload + off, arg);
            *got_names = true;
        }
        sk__buf_consume(&child.in, sizeof(h) + h.len);
    }
    return names;
}

static void child_on_relay(sk_conn *c, void *arg)
{
    (void)arg;
    ssize_t n = sk__buf_read(&child.in, child.relay);
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
        ssize_t n = sk__buf_read(&child.in, child.relay);
        if (n == 0 || (n < 0 && n != -EAGAIN))
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
    close(fs->self.relay);
    close(fs->self_tx);
    for (int i = 0; i < s->nlisteners && !keep_listeners; i++)
        close(s->listeners[i]);
    /* Other threads of the parent may have held this at the fork. */
    pthread_mutex_init(&s->reg_lock, NULL);
    child.active = true;
    child.relay = relay;
    child.page = fs->page;
    s->count_hook = child_count;
    s->names_hook = child_names;
    s->rename_hook = child_rename;
    child.can_park = sk__park_install() == 0;
}

/* A child for one connection: the parent admitted it and will give its slot back. */
void sk__fork_child_main(struct fork_state *fs, int fd, int slot, int relay)
{
    sk_server *s = fs->s;
    static int held = 1;
    become_child(fs, relay, false);
    sk__server_set_counter(s, &held); /* our close releases nothing shared: the parent does */
    struct sk__owner owner = {.ctr = &fs->page->ctr, .now = sk__now_ms()};
    child.conn = sk__conn_new(s, fd, &owner, NULL, &fs->peer);
    if (!child.conn)
        _exit(1);
    sk__serve_one(child.conn, relay, child_on_relay, NULL, child_park(slot));
    _exit(0);
}

/* A pool worker: accept on the shared listener, serve, again, until the stop. */
void sk__fork_worker_main(struct fork_state *fs, int k, int slot, int relay)
{
    sk_server *s = fs->s;
    become_child(fs, relay, true);
    struct sk__owner owner = {.ctr = &fs->page->ctr};
    int n = s->nlisteners;
    struct pollfd *p = calloc((size_t)n + 2, sizeof(*p));
    if (!p)
        _exit(1);
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = s->listeners[i], .events = POLLIN};
    p[n] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
    p[n + 1] = (struct pollfd){.fd = relay, .events = POLLIN};
    while (!sk__stopping(s)) {
        if (poll(p, (nfds_t)n + 2, -1) < 0 && errno != EINTR)
            break;
        if (p[n].revents)
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
                (fd = sk__server_accept_fd(s, p[i].fd, owner.ctr, &peer)) <= 0)
                continue;
            __atomic_store_n(&fs->page->busy[k], 1, __ATOMIC_RELEASE);
            owner.now = sk__now_ms();
            child.conn = sk__conn_new(s, fd, &owner, NULL, &peer);
            if (child.conn) {
                const char *peer = sk_conn_peer(child.conn);
                child_send(MSG_OPEN, peer, strlen(peer) + 1);
                sk__serve_one(child.conn, relay, child_on_relay, NULL, child_park(slot));
                child.conn = NULL;
                child_send(MSG_CLOSED, NULL, 0);
            } else {
                sk__server_release(s);
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
    return child_send(except == child.conn ? MSG_BROADCAST_OTHERS : MSG_BROADCAST, data, len);
}
