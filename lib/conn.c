/* SPDX-License-Identifier: MIT */
/* The connection engine every backend drives: reading and framing, queued
 * output with a cap, close requests and the orderly close. */
#include "server_internal.h"
#include "framer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define lock_conn(c) ((c)->lock ? (void)pthread_mutex_lock((c)->lock) : (void)0)
#define unlock_conn(c) ((c)->lock ? (void)pthread_mutex_unlock((c)->lock) : (void)0)

static int pending_of(const sk_conn *c)
{
    return __atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
}

static bool discards_output(int why)
{
    return why == SK_CLOSE_RESET || why == SK_CLOSE_SLOW || why == SK_CLOSE_ERROR;
}

/* ---- registry ---------------------------------------------------------- */

/* The length of an address the connection keeps (IPv4, IPv6), else 0. */
static socklen_t kept_len(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in)
         : family == AF_INET6 ? sizeof(struct sockaddr_in6) : 0;
}

sk_conn *sk__conn_new(sk_server *s, int fd, struct sk__owner *owner, pthread_mutex_t *lock,
                      const sk_addr *peer)
{
    sk_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (peer && peer->len == kept_len(peer->u.sa.sa_family)) /* 0 bytes for others */
        memcpy(&c->peer_sa, &peer->u, peer->len);
    c->w.kind = SK__W_CONN;
    c->fd = fd;
    c->srv = s;
    c->owner = owner;
    c->lock = lock;
    c->last_read = owner->now;
    pthread_mutex_lock(&s->reg_lock);
    c->rnext = s->reg_head;
    if (s->reg_head)
        s->reg_head->rprev = c;
    s->reg_head = c;
    c->registered = true;
    pthread_mutex_unlock(&s->reg_lock);
    sk__count(owner->ctr, SK__C_ACCEPTED, 1);
    return c;
}

/* Out of the registry: no longer counted, named or broadcast to. Takes only
 * the registry lock, never with the connection's held (broadcasts take them
 * in the other order). */
static void unregister(sk_conn *c)
{
    sk_server *s = c->srv;
    if (!c->registered)
        return;
    pthread_mutex_lock(&s->reg_lock);
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        s->reg_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    c->registered = false;
    pthread_mutex_unlock(&s->reg_lock);
    sk__server_release(s);
}

void sk__conn_open(sk_conn *c)
{
    if (c->srv->cfg.on_open)
        c->srv->cfg.on_open(c);
}

/* ---- output ------------------------------------------------------------ */

/* One non-blocking send: bytes taken (0 if none), or < 0 on a dead socket. */
static ssize_t send_some(int fd, const char *p, size_t len)
{
    for (;;) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static void drop_output(sk_conn *c)
{
    if (c->out_len)
        sk__count(c->owner->ctr, SK__C_BUFFERED, -(long long)c->out_len);
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    c->dead_output = true;
}

void sk__conn_request_close(sk_conn *c, sk_close_reason why)
{
    if (c->state != SK__OPEN || pending_of(c))
        return;
    __atomic_store_n(&c->pending, (uint8_t)why, __ATOMIC_RELEASE);
    if (discards_output(why))
        drop_output(c);
    if (c->owner->notify)
        c->owner->notify(c->owner, c);
}

/* Room for len more bytes at the end of the output buffer. */
static bool reserve_output(sk_conn *c, size_t len)
{
    if (c->out_off + c->out_len + len <= c->out_cap)
        return true;
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len);
        c->out_off = 0;
        if (c->out_len + len <= c->out_cap)
            return true;
    }
    size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
    while (cap < c->out_len + len)
        cap *= 2;
    char *out = realloc(c->out, cap);
    if (!out)
        return false;
    c->out = out;
    c->out_cap = cap;
    return true;
}

int sk__conn_queue(sk_conn *c, const void *data, size_t len, bool from_owner)
{
    const char *p = data;
    if (c->dead_output)
        return -EPIPE;
    if (c->out_len == 0) { /* nothing queued: try the socket first */
        ssize_t n = send_some(c->fd, p, len);
        if (n < 0) {
            sk__conn_request_close(c, SK_CLOSE_RESET);
            return -EPIPE;
        }
        sk__count(c->owner->ctr, SK__C_BYTES_OUT, n);
        if ((size_t)n == len)
            return 0;
        p += n;
        len -= (size_t)n;
    }
    if (len > c->srv->cfg.max_output - c->out_len) {
        sk__conn_request_close(c, SK_CLOSE_SLOW);
        if (c->state == SK__CLOSING) /* last words of a closing connection */
            drop_output(c);
        return -ENOBUFS;
    }
    if (!reserve_output(c, len)) {
        sk__conn_request_close(c, SK_CLOSE_ERROR);
        return -ENOMEM;
    }
    bool was_empty = c->out_len == 0;
    memcpy(c->out + c->out_off + c->out_len, p, len);
    c->out_len += len;
    sk__count(c->owner->ctr, SK__C_BUFFERED, (long long)len);
    if (was_empty && !from_owner && c->owner->notify)
        c->owner->notify(c->owner, c);
    return 0;
}

int sk__conn_flush(sk_conn *c)
{
    while (c->out_len > 0) {
        ssize_t n = send_some(c->fd, c->out + c->out_off, c->out_len);
        if (n < 0) {
            sk__conn_request_close(c, SK_CLOSE_RESET);
            drop_output(c);
            return -1;
        }
        if (n == 0)
            return 0;
        c->out_off += (size_t)n;
        c->out_len -= (size_t)n;
        sk__count(c->owner->ctr, SK__C_BYTES_OUT, n);
        sk__count(c->owner->ctr, SK__C_BUFFERED, -n);
    }
    free(c->out); /* idle connections hold no buffer */
    c->out = NULL;
    c->out_off = c->out_cap = 0;
    return 1;
}

/* ---- input ------------------------------------------------------------- */

static bool line_to_handler(void *arg, char *line, size_t len)
{
    sk_conn *c = arg;
    if (c->srv->cfg.on_data)
        c->srv->cfg.on_data(c, line, len);
    return sk__conn_reading(c);
}

static void deliver(sk_conn *c, char *buf, size_t n)
{
    if (c->srv->cfg.framing == SK_FRAMING_LINES) {
        int rc = sk__framer_feed(&c->lines, c->srv->cfg.max_line, buf, n, line_to_handler, c);
        if (rc < 0)
            sk__conn_request_close(c, rc == SK_ETOOLONG ? SK_CLOSE_TOO_LONG : SK_CLOSE_ERROR);
        return;
    }
    buf[n] = '\0';
    if (c->srv->cfg.on_data)
        c->srv->cfg.on_data(c, buf, n);
}

static void end_of_input(sk_conn *c)
{
    if (sk__conn_reading(c)) /* a last line without '\n' */
        sk__framer_finish(&c->lines, line_to_handler, c);
    sk__conn_request_close(c, SK_CLOSE_PEER);
}

void sk__conn_got(sk_conn *c, char *buf, ssize_t n)
{
    if (n > 0) {
        struct sk__counters *ctr = c->owner->ctr;
        sk__count(ctr, SK__C_READS, 1);
        sk__count(ctr, SK__C_BYTES_IN, n);
        c->last_read = c->owner->now;
        deliver(c, buf, (size_t)n);
    } else if (n == 0) {
        end_of_input(c);
    } else if (n != -EINTR && n != -EAGAIN && n != -EWOULDBLOCK) {
        sk__conn_request_close(c, SK_CLOSE_RESET);
    }
}

void sk__conn_input(sk_conn *c, char *buf, size_t cap, bool drain, bool hup)
{
    sk__count(c->owner->ctr, SK__C_READ_EVENTS, 1);
    while (sk__conn_reading(c)) {
        /* A byte kept for the NUL; MSG_DONTWAIT: the fork backend's children
         * keep their sockets blocking (see single.c). */
        ssize_t n = recv(c->fd, buf, cap - 1, MSG_DONTWAIT);
        if (n < 0)
            n = -errno;
        sk__conn_got(c, buf, n);
        if (n == -EINTR)
            continue;
        /* A short read emptied the socket; unless the peer has closed (then
         * one more read sees the end), nothing is left to drain. */
        if (n <= 0 || !drain || ((size_t)n < cap - 1 && !hup))
            return;
    }
}

/* ---- closing ----------------------------------------------------------- */

static void begin_close(sk_conn *c, int why)
{
    sk_server *s = c->srv;
    unregister(c);
    lock_conn(c);
    c->state = SK__CLOSING;
    c->reason = (uint8_t)why;
    if (discards_output(why) && !c->dead_output)
        drop_output(c);
    unlock_conn(c);
    c->deadline = c->owner->now + s->cfg.drain_ms;
    sk__framer_reset(&c->lines);
    if (s->cfg.on_close)
        s->cfg.on_close(c, (sk_close_reason)why);
}

bool sk__conn_settle(sk_conn *c)
{
    sk_server *s = c->srv;
    int64_t now = c->owner->now;
    if (c->state == SK__OPEN) {
        int why = pending_of(c);
        if (!why && sk__stopping(s))
            why = SK_CLOSE_STOP;
        else if (!why && s->cfg.idle_ms && now - c->last_read >= s->cfg.idle_ms)
            why = SK_CLOSE_IDLE;
        if (!why)
            return false;
        begin_close(c, why);
        lock_conn(c);
        if (c->out_len)
            sk__conn_flush(c); /* the last words, at once if the socket takes them */
        unlock_conn(c);
    }
    lock_conn(c);
    bool done = c->dead_output || c->out_len == 0 || now >= c->deadline;
    unlock_conn(c);
    return done;
}

void sk__conn_free(sk_conn *c)
{
    unregister(c);
    if (c->dead_output || c->out_len > 0) {
        /* Abort: the peer does not read, or cannot. Nothing lingers in the kernel. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else {
        /* Orderly: send FIN, and take in what is queued so the close does not
         * turn into a reset that could destroy our last bytes at the peer. */
        char sink[4096];
        shutdown(c->fd, SHUT_WR);
        for (int i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
            ;
    }
    if (c->out_len)
        sk__count(c->owner->ctr, SK__C_BUFFERED, -(long long)c->out_len);
    sk__count(c->owner->ctr, SK__C_CLOSED, 1); /* counted before the peer can see it */
    close(c->fd);
    free(c->out);
    sk__framer_reset(&c->lines);
    free(c->name);
    free(c->peer);
    free(c->local);
    free(c);
}

int sk__conn_timeout(const sk_conn *c)
{
    int64_t when;
    if (c->state == SK__CLOSING)
        when = c->deadline;
    else if (c->srv->cfg.idle_ms)
        when = c->last_read + c->srv->cfg.idle_ms;
    else
        return -1;
    int64_t left = when - c->owner->now;
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* ---- the public connection API ----------------------------------------- */

int sk_conn_send(sk_conn *c, const void *data, size_t len)
{
    if (!c || (!data && len > 0))
        return -EINVAL;
    if (len == 0)
        return 0;
    lock_conn(c);
    int rc = sk__conn_queue(c, data, len, true);
    unlock_conn(c);
    return rc;
}

int sk__vformat(char *small, size_t size, char **text, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(small, size, fmt, ap);
    *text = small;
    if (n < 0)
        n = -EINVAL;
    else if ((size_t)n >= size && !(*text = malloc((size_t)n + 1)))
        n = -ENOMEM;
    else if (*text != small)
        vsnprintf(*text, (size_t)n + 1, fmt, again);
    va_end(again);
    if (n < 0)
        *text = small;
    return n;
}

int sk_conn_sendf(sk_conn *c, const char *fmt, ...)
{
    char small[512], *text;
    va_list ap;
    if (!c || !fmt)
        return -EINVAL;
    va_start(ap, fmt);
    int n = sk__vformat(small, sizeof(small), &text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return n;
    int rc = sk_conn_send(c, text, (size_t)n);
    if (text != small)
        free(text);
    return rc;
}

void sk_conn_close(sk_conn *c)
{
    if (!c)
        return;
    lock_conn(c);
    sk__conn_request_close(c, SK_CLOSE_LOCAL);
    unlock_conn(c);
}

size_t sk_conn_pending(const sk_conn *c)
{
    return c ? c->out_len : 0;
}

/* Under the registry lock: the address text, made on first use. */
static const char *addr_text_locked(sk_conn *c, char **slot, bool peer)
{
    if (!*slot) {
        char buf[SK_ADDR_STRLEN];
        int rc;
        sk_addr a = {.len = peer ? kept_len(c->peer_sa.sa.sa_family) : 0};
        if (a.len) {
            memcpy(&a.u, &c->peer_sa, a.len);
            rc = sk_addr_format(&a, buf, sizeof(buf));
        } else {
            rc = peer ? sk_peer_addr(c->fd, buf, sizeof(buf)) : sk_local_addr(c->fd, buf, sizeof(buf));
        }
        *slot = strdup(rc >= 0 ? buf : "?");
    }
    return *slot ? *slot : "?";
}

const char *sk__conn_name_locked(sk_conn *c)
{
    return c->name ? c->name : addr_text_locked(c, &c->peer, true);
}

static const char *addr_text(sk_conn *c, char **slot, bool peer)
{
    if (!c)
        return "?";
    pthread_mutex_lock(&c->srv->reg_lock);
    const char *text = addr_text_locked(c, slot, peer);
    pthread_mutex_unlock(&c->srv->reg_lock);
    return text;
}

const char *sk_conn_peer(sk_conn *c)
{
    return addr_text(c, c ? &c->peer : NULL, true);
}

const char *sk_conn_local(sk_conn *c)
{
    return addr_text(c, c ? &c->local : NULL, false);
}

int sk_conn_set_name(sk_conn *c, const char *name)
{
    if (!c || (name && strlen(name) > SK_NAME_MAX))
        return -EINVAL;
    char *copy = NULL;
    if (name && !(copy = strdup(name)))
        return -ENOMEM;
    pthread_mutex_lock(&c->srv->reg_lock);
    free(c->name);
    c->name = copy;
    pthread_mutex_unlock(&c->srv->reg_lock);
    if (c->srv->rename_hook)
        c->srv->rename_hook(c);
    return 0;
}

const char *sk_conn_name(sk_conn *c)
{
    if (!c)
        return "?";
    pthread_mutex_lock(&c->srv->reg_lock);
    const char *name = sk__conn_name_locked(c);
    pthread_mutex_unlock(&c->srv->reg_lock);
    return name;
}

void sk_conn_set_data(sk_conn *c, void *data)
{
    if (c)
        c->data = data;
}

void *sk_conn_data(const sk_conn *c)
{
    return c ? c->data : NULL;
}

sk_server *sk_conn_server(const sk_conn *c)
{
    return c ? c->srv : NULL;
}

int sk_conn_fd(const sk_conn *c)
{
    return c ? c->fd : -EINVAL;
}

const char *sk_close_reason_name(sk_close_reason r)
{
    static const char *const names[] = {
        [SK_CLOSE_PEER] = "peer",   [SK_CLOSE_RESET] = "reset",       [SK_CLOSE_IDLE] = "idle",
        [SK_CLOSE_SLOW] = "slow",   [SK_CLOSE_TOO_LONG] = "too-long", [SK_CLOSE_LOCAL] = "local",
        [SK_CLOSE_STOP] = "stop",   [SK_CLOSE_ERROR] = "error",
    };
    if ((unsigned)r >= sizeof(names) / sizeof(names[0]) || !names[r])
        return "?";
    return names[r];
}

/* ---- the driver API for backends of a program's own --------------------- */

int sk_conn_drive(sk_conn *c, bool readable, bool writable)
{
    if (!c)
        return 0;
    sk_server *s = c->srv;
    c->owner->now = sk__now_ms();
    if (readable && sk__conn_reading(c))
        sk__conn_input(c, s->scratch, SK__SCRATCH + 1, false, false);
    if ((writable || c->state == SK__CLOSING) && sk__conn_wants_write(c))
        sk__conn_flush(c);
    if (sk__conn_settle(c)) {
        sk__conn_free(c);
        return 0;
    }
    int want = SK_WANT_TIMER;
    if (sk__conn_reading(c))
        want |= SK_WANT_READ;
    if (sk__conn_wants_write(c))
        want |= SK_WANT_WRITE;
    return want;
}

int sk_conn_deadline(const sk_conn *c)
{
    return c ? sk__conn_timeout(c) : -1;
}
