/* SPDX-License-Identifier: MIT */
/* The connection engine every backend drives: reading and framing, queued
 * output with a cap, close requests and the orderly close. */
#include "server_internal.h"
#include "framer.h"
#include "tls.h"
#include "transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Buffers one flush hands the transport (several chunks, one system call). */
#define FLUSH_IOV 16

static bool handshake(sk_conn *c);

__thread struct sk__loop sk__here;

static int pending_of(const sk_conn *c)
{
    return __atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
}

static bool discards_output(int why)
{
    return why == SK_CLOSE_RESET || why == SK_CLOSE_SLOW || why == SK_CLOSE_ERROR ||
           why == SK_CLOSE_CONNECT || why == SK_CLOSE_TLS;
}

/* ---- a new connection ------------------------------------------------ */

/* The connection's timer fired: settle it, unless it has read since the idle
 * timeout was counted from (then count again from its last read). Reads do
 * not touch the heap: a busy connection costs one re-arm per idle period. */
static void on_timer(struct sk__timer *t, int64_t now)
{
    sk_conn *c = (sk_conn *)((char *)t - offsetof(sk_conn, timer));
    int idle = c->cfg->idle_ms;
    if (c->state == SK__OPEN && (c->connecting || (c->outbound && c->handshaking))) {
        /* the connect's time is up (an outbound handshake counts in it) */
        c->error = -ETIMEDOUT;
        sk__conn_request_close(c, SK_CLOSE_CONNECT);
    } else if (c->state == SK__OPEN && idle && (c->paused || c->eof || c->throttled)) /* held */
        sk__timer_start(c->owner->timers, t, now + idle);
    else if (c->state == SK__OPEN && idle && now - c->last_read < idle)
        sk__timer_start(c->owner->timers, t, c->last_read + idle);
    else if (c->owner->notify)
        c->owner->notify(c->owner, c);
}

/* A connection's common part, registered; its timer attached, not started. */
static sk_conn *conn_make(sk_server *s, size_t size, int fd, struct sk__owner *owner,
                          const sk_addr *peer, bool outbound)
{
    sk_conn *c = calloc(1, size);
    if (!c)
        return NULL;
    if (owner->timers && sk__timer_attach(owner->timers, &c->timer, on_timer) < 0) {
        free(c);
        return NULL;
    }
    if (peer && peer->len == sk__kept_len(peer->u.sa.sa_family)) /* 0 bytes for others */
        memcpy(&c->peer_sa, &peer->u, peer->len);
    c->w.kind = SK__W_CONN;
    c->fd = fd;
    c->cfg = &s->cfg; /* what a connection sees of its server */
    c->reg = &s->reg;
    c->tp = &sk__transport_plain;
    if (!outbound && s->tls && sk__tls_attach(c, s->tls, NULL) < 0)
        goto fail;
    c->srv = s;
    c->owner = owner;
    c->high = s->cfg.high;
    c->low = s->cfg.low;
    c->last_read = owner->now;
    c->outbound = outbound;
    if (sk__registry_add(c->reg, c) < 0)
        goto fail;
    return c;
fail:
    if (owner->timers)
        sk__timer_detach(owner->timers, &c->timer);
    if (c->tp->free)
        c->tp->free(c);
    free(c);
    return NULL;
}

/* Connected (and its handshake done): from now on the idle timeout counts,
 * from its last read; the connect's deadline is over. */
static void idle_from_now(sk_conn *c)
{
    c->last_read = c->owner->now;
    if (c->owner->timers && c->cfg->idle_ms)
        sk__timer_start(c->owner->timers, &c->timer, c->last_read + c->cfg->idle_ms);
    else if (c->owner->timers)
        sk__timer_stop(c->owner->timers, &c->timer);
}

sk_conn *sk__conn_new(sk_server *s, size_t size, int fd, struct sk__owner *owner,
                      const sk_addr *peer)
{
    sk_conn *c = conn_make(s, size, fd, owner, peer, false);
    if (!c)
        return NULL;
    if (owner->timers && c->cfg->idle_ms)
        sk__timer_start(owner->timers, &c->timer, c->last_read + c->cfg->idle_ms);
    sk__count(owner->ctr, SK__C_ACCEPTED, 1);
    return c;
}

sk_conn *sk__conn_new_outbound(sk_server *s, size_t size, struct sk__owner *owner,
                               const sk_addr *peer, int timeout_ms)
{
    sk_conn *c = conn_make(s, size, -1, owner, peer, true);
    if (!c)
        return NULL;
    c->connecting = true;
    if (owner->timers) /* the connect's deadline; the idle timeout counts once connected */
        sk__timer_start(owner->timers, &c->timer, owner->now + timeout_ms);
    return c;
}

void sk__conn_connected(sk_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (!c->connecting || c->state != SK__OPEN)
        return;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        c->error = -err;
        sk__conn_request_close(c, SK_CLOSE_CONNECT);
        return;
    }
    c->connecting = false;
    c->last_read = c->owner->now;
    if (c->handshaking) { /* TLS: the connect deadline runs on; on_open comes after it */
        sk__conn_lock(c);
        handshake(c);
        sk__conn_unlock(c);
        return;
    }
    idle_from_now(c);
    sk__conn_lock(c); /* what was sent while it connected goes first (and a FIN asked for) */
    if (c->out.bytes || c->shut_asked)
        sk__conn_flush(c);
    sk__conn_unlock(c);
    if (sk__conn_reading(c))
        sk__conn_open(c);
}

void sk__conn_open(sk_conn *c)
{
    if (c->handshaking) /* its transport's handshake first: see sk__conn_input() */
        return;
    if (c->cfg->on_open)
        c->cfg->on_open(c);
}

/* ---- output ------------------------------------------------------------ */

/* One write through the transport, never waiting: bytes taken (0 if none),
 * or < 0 on a dead socket. */
static ssize_t send_some(sk_conn *c, const struct iovec *iov, int n)
{
    ssize_t w = c->tp->writev(c, iov, n);
    return w == -EAGAIN ? 0 : w;
}

/* Whether this thread may write to c's transport now: always for a plain
 * socket; a TLS session only on its own loop (another thread's broadcast
 * queues, and the loop sends). */
static bool owner_writes(const sk_conn *c)
{
    return c->tp == &sk__transport_plain || sk__here.owner == c->owner;
}

static void drop_output(sk_conn *c)
{
    if (c->out.bytes)
        sk__count(c->owner->ctr, SK__C_BUFFERED, -(long long)c->out.bytes);
    sk__outq_clear(&c->out);
    c->dead_output = true;
}

/* With its owner's lock held (if it has one): a discarding reason frees
 * the output another thread's broadcast may be appending to, and of two
 * threads asking at once only the first may act. */
static void request_close_locked(sk_conn *c, sk_close_reason why)
{
    if (c->state != SK__OPEN || pending_of(c))
        return;
    __atomic_store_n(&c->pending, (uint8_t)why, __ATOMIC_RELEASE);
    if (discards_output(why))
        drop_output(c);
    if (c->owner->notify)
        c->owner->notify(c->owner, c);
}

void sk__conn_request_close(sk_conn *c, sk_close_reason why)
{
    sk__conn_lock(c);
    request_close_locked(c, why);
    sk__conn_unlock(c);
}

void sk__conn_shut_write(sk_conn *c)
{
    c->shut_done = true;
    if (c->tp->shutdown(c) < 0)
        request_close_locked(c, SK_CLOSE_RESET);
}

/* A transport whose writes wait for the loop, about to pass the cap: what
 * is queued and then *p go to the socket now, as far as it takes them (none
 * while a send of the loop's is in flight: the order would change). */
static void write_through(sk_conn *c, const char **p, size_t *len)
{
    if (c->out.pinned || c->connecting || c->handshaking)
        return;
    while (c->out.bytes > 0) {
        struct iovec iov[FLUSH_IOV];
        int k = sk__outq_iov(&c->out, iov, FLUSH_IOV);
        ssize_t n = c->tp->writev_now(c, iov, k);
        if (n <= 0)
            return; /* full, or an error its loop will see */
        sk__conn_sent(c, (size_t)n);
    }
    struct iovec iov = {.iov_base = (void *)*p, .iov_len = *len};
    ssize_t n = c->tp->writev_now(c, &iov, 1);
    if (n > 0) {
        sk__count(c->owner->ctr, SK__C_BYTES_OUT, n);
        *p += n;
        *len -= (size_t)n;
    }
}

int sk__conn_queue(sk_conn *c, const void *data, size_t len, bool from_owner)
{
    const char *p = data;
    if (c->dead_output || c->shut_asked)
        return -EPIPE;
    if (c->out.bytes == 0 && !c->connecting && !c->handshaking && owner_writes(c)) {
        /* nothing queued: try the socket first */
        struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
        ssize_t n = send_some(c, &iov, 1);
        if (n < 0) {
            request_close_locked(c, SK_CLOSE_RESET);
            return -EPIPE;
        }
        sk__count(c->owner->ctr, SK__C_BYTES_OUT, n);
        if ((size_t)n == len)
            return 0;
        p += n;
        len -= (size_t)n;
    }
    if (len > c->cfg->max_output - c->out.bytes && c->tp->writev_now)
        write_through(c, &p, &len);
    if (len > c->cfg->max_output - c->out.bytes) {
        request_close_locked(c, SK_CLOSE_SLOW);
        if (c->state == SK__CLOSING) /* last words of a closing connection */
            drop_output(c);
        return -ENOBUFS;
    }
    bool was_empty = c->out.bytes == 0;
    if (sk__outq_push(&c->out, p, len) < 0) {
        request_close_locked(c, SK_CLOSE_ERROR);
        return -ENOMEM;
    }
    sk__count(c->owner->ctr, SK__C_BUFFERED, (long long)len);
    if (c->out.bytes >= c->high)
        c->over_high = true;
    if (was_empty && !from_owner && c->owner->notify)
        c->owner->notify(c->owner, c);
    return 0;
}

struct broadcast {
    sk_conn *except;
    const void *data;
    size_t len;
};

static void queue_to(sk_conn *c, void *arg)
{
    const struct broadcast *b = arg;
    if (c == b->except)
        return;
    sk__conn_lock(c);
    if (c->state == SK__OPEN && !pending_of(c))
        sk__conn_queue(c, b->data, b->len, false);
    sk__conn_unlock(c);
}

int sk__conn_broadcast_direct(struct sk__registry *reg, sk_conn *except, const void *data,
                              size_t len)
{
    struct broadcast b = {.except = except, .data = data, .len = len};
    sk__registry_each(reg, queue_to, &b);
    return 0;
}

int sk__conn_flush(sk_conn *c)
{
    if (c->connecting)
        return 0;
    if (c->tp->flush) { /* what the transport holds goes before more of the queue */
        int f = c->tp->flush(c);
        if (f == -EAGAIN)
            return 0;
        if (f < 0) {
            request_close_locked(c, SK_CLOSE_RESET);
            drop_output(c);
            return -1;
        }
    }
    if (c->handshaking) /* the queue waits for the handshake */
        return 0;
    while (c->out.bytes > 0) {
        struct iovec iov[FLUSH_IOV];
        int k = sk__outq_iov(&c->out, iov, FLUSH_IOV);
        ssize_t n = send_some(c, iov, k);
        if (n < 0) {
            request_close_locked(c, SK_CLOSE_RESET);
            drop_output(c);
            return -1;
        }
        if (n == 0)
            return 0;
        sk__conn_sent(c, (size_t)n);
    }
    if (c->shut_asked && !c->shut_done) /* all written: now the FIN */
        sk__conn_shut_write(c);
    return 1;
}

void sk__conn_sent(sk_conn *c, size_t n)
{
    sk__outq_consume(&c->out, n); /* frees the chunks sent: idle holds none */
    sk__count(c->owner->ctr, SK__C_BYTES_OUT, (long long)n);
    sk__count(c->owner->ctr, SK__C_BUFFERED, -(long long)n);
    if (c->over_high && c->out.bytes <= c->low) { /* on_drain from settle, unlocked */
        c->over_high = false;
        c->drain_due = true;
    }
}

/* ---- input ------------------------------------------------------------- */

static bool line_to_handler(void *arg, char *line, size_t len)
{
    sk_conn *c = arg;
    if (c->cfg->on_data)
        c->cfg->on_data(c, line, len);
    return sk__conn_reading(c);
}

static void deliver(sk_conn *c, char *buf, size_t n)
{
    if (c->cfg->framing == SK_FRAMING_LINES) {
        int rc = sk__framer_feed(&c->lines, c->cfg->max_line, buf, n, line_to_handler, c);
        if (rc < 0)
            sk__conn_request_close(c, rc == SK_ETOOLONG ? SK_CLOSE_TOO_LONG : SK_CLOSE_ERROR);
        return;
    }
    buf[n] = '\0';
    if (c->cfg->on_data)
        c->cfg->on_data(c, buf, n);
}

static void end_of_input(sk_conn *c)
{
    if (sk__conn_reading(c)) /* a last line without '\n' */
        sk__framer_finish(&c->lines, line_to_handler, c);
    if (c->cfg->on_eof && sk__conn_reading(c)) { /* half-closed: it may still send */
        c->eof = true;
        c->cfg->on_eof(c);
        return;
    }
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

/* A handshake step (caller holds the lock, if any): true once complete. A
 * failure closes it: an accepted connection with SK_CLOSE_TLS, an outbound
 * one with SK_CLOSE_CONNECT; sk_conn_error() tells why. */
static bool handshake(sk_conn *c)
{
    int rc = c->tp->handshake(c);
    if (rc == 1) {
        c->handshaking = false;
        return true;
    }
    if (rc != -EAGAIN) {
        c->error = rc;
        request_close_locked(c, c->outbound ? SK_CLOSE_CONNECT : SK_CLOSE_TLS);
    }
    return false;
}

/* Go on with the handshake; once complete, what was queued meanwhile goes
 * out and on_open runs. Whether it is complete. */
static bool handshake_input(sk_conn *c)
{
    sk__conn_lock(c);
    bool done = handshake(c);
    if (done && (c->out.bytes || c->shut_asked))
        sk__conn_flush(c);
    sk__conn_unlock(c);
    if (!done)
        return false;
    if (c->outbound) /* its connect deadline gives way to the idle timeout */
        idle_from_now(c);
    else
        c->last_read = c->owner->now;
    sk__conn_open(c);
    return true;
}

bool sk__conn_input(sk_conn *c, char *buf, size_t cap, int reads, bool hup)
{
    sk__count(c->owner->ctr, SK__C_READ_EVENTS, 1);
    while (sk__conn_takes_input(c)) {
        if (c->handshaking && !handshake_input(c))
            return false;
        ssize_t n = c->tp->read(c, buf, cap - 1, false); /* a byte kept for the NUL */
        sk__conn_got(c, buf, n);
        if (n == -EINTR)
            continue;
        /* A short read emptied the socket; unless the peer has closed (then
         * one more read sees the end) or the transport holds more, nothing
         * is left to drain. */
        if (n <= 0 || ((size_t)n < cap - 1 && !hup && !sk__tp_pending(c)))
            return false;
        if (--reads <= 0)
            return sk__conn_takes_input(c);
    }
    return false;
}

/* ---- closing ----------------------------------------------------------- */

static void begin_close(sk_conn *c, int why)
{
    sk__registry_remove(c->reg, c);
    sk__conn_lock(c);
    c->state = SK__CLOSING;
    c->reason = (uint8_t)why;
    if (discards_output(why) && !c->dead_output)
        drop_output(c);
    sk__conn_unlock(c);
    c->deadline = c->owner->now + c->cfg->drain_ms;
    if (c->owner->timers) /* the idle timer, if armed, becomes the deadline */
        sk__timer_start(c->owner->timers, &c->timer, c->deadline);
    sk__framer_reset(&c->lines);
    if (c->utimers) /* none fires after on_close, nor in it */
        sk__conn_timers_stop(c);
    if (c->cfg->on_close)
        c->cfg->on_close(c, (sk_close_reason)why);
}

bool sk__conn_settle(sk_conn *c)
{
    const struct sk__config *cfg = c->cfg;
    int64_t now = c->owner->now;
    if (c->state == SK__OPEN) {
        if (c->drain_due && !pending_of(c)) { /* flushed here, on its own loop */
            c->drain_due = false;
            if (cfg->on_drain)
                cfg->on_drain(c);
        }
        int why = pending_of(c);
        if (!why && sk__registry_closing(c->reg))
            why = SK_CLOSE_STOP;
        else if (!why && c->eof && c->shut_done) /* both sides shut: over */
            why = SK_CLOSE_PEER;
        else if (!why && cfg->idle_ms && !c->paused && !c->eof && !c->connecting && !c->throttled &&
                 now - c->last_read >= cfg->idle_ms)
            why = SK_CLOSE_IDLE;
        if (!why)
            return false;
        begin_close(c, why);
        sk__conn_lock(c);
        if (c->out.bytes || sk__tp_output(c))
            sk__conn_flush(c); /* the last words, at once if the socket takes them */
        sk__conn_unlock(c);
    }
    sk__conn_lock(c);
    bool done = c->dead_output || (c->out.bytes == 0 && !sk__tp_output(c)) || now >= c->deadline;
    sk__conn_unlock(c);
    return done;
}

void sk__conn_free(sk_conn *c)
{
    sk__conn_timers_free(c);
    if (c->owner->timers)
        sk__timer_detach(c->owner->timers, &c->timer);
    sk__registry_remove(c->reg, c);
    if (c->fd < 0) {
        /* an outbound connection whose name never resolved: no socket */
    } else if ((c->dead_output && c->reason != SK_CLOSE_TLS) || c->out.bytes > 0 ||
               c->connecting) {
        /* (A failed handshake closes in order: its alert reaches the peer.) */
        /* Abort: the peer does not read, or cannot. Nothing lingers in the kernel. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else {
        /* Orderly: send FIN, and take in what is queued so the close does not
         * turn into a reset that could destroy our last bytes at the peer. */
        char sink[4096];
        c->tp->shutdown(c);
        for (int i = 0; i < 16 && c->tp->read(c, sink, sizeof(sink), false) > 0; i++)
            ;
    }
    if (c->out.bytes)
        sk__count(c->owner->ctr, SK__C_BUFFERED, -(long long)c->out.bytes);
    if (!c->outbound) /* accepted ones: counted before the peer can see it */
        sk__count(c->owner->ctr, SK__C_CLOSED, 1);
    if (c->tp->free)
        c->tp->free(c);
    if (c->fd >= 0)
        close(c->fd);
    sk__outq_clear(&c->out);
    sk__framer_reset(&c->lines);
    sk__registry_forget(c);
    free(c);
}

int sk__conn_timeout(const sk_conn *c)
{
    /* Its own timers, on a program's own loop (the library's loops ask their heap). */
    int timers = c->own_timers ? sk__timers_next(c->own_timers, c->owner->now) : -1;
    int64_t when;
    if (c->state == SK__CLOSING)
        when = c->deadline;
    else if (c->resumed) /* to be driven at once: it may have input waiting */
        return 0;
    else if (c->cfg->idle_ms && !c->paused && !c->eof && !c->connecting)
        when = c->last_read + c->cfg->idle_ms;
    else
        return timers;
    int64_t left = when - c->owner->now;
    int ms = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
    return timers >= 0 && timers < ms ? timers : ms;
}

/* ---- the public connection API ----------------------------------------- */

int sk_conn_send(sk_conn *c, const void *data, size_t len)
{
    if (!c || (!data && len > 0))
        return -EINVAL;
    if (len == 0)
        return 0;
    sk__conn_lock(c);
    /* Not from_owner: a relay's callback may send to another connection of
     * its loop, which the loop must then look at. From the owner's own
     * thread, telling it costs no system call (epoll marks it dirty, pthread
     * writes its eventfd only from other threads). */
    int rc = sk__conn_queue(c, data, len, false);
    sk__conn_unlock(c);
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
    sk__conn_request_close(c, SK_CLOSE_LOCAL);
}

size_t sk_conn_pending(const sk_conn *c)
{
    if (!c)
        return 0;
    sk__conn_lock(c); /* another thread's broadcast may be appending */
    size_t n = sk__conn_queued(c);
    sk__conn_unlock(c);
    return n;
}

const char *sk_conn_peer(sk_conn *c)
{
    return c ? sk__registry_address(c->reg, c, true) : "?";
}

const char *sk_conn_local(sk_conn *c)
{
    return c ? sk__registry_address(c->reg, c, false) : "?";
}

int sk_conn_set_name(sk_conn *c, const char *name)
{
    if (!c || (name && strlen(name) > SK_NAME_MAX))
        return -EINVAL;
    return sk__registry_set_name(c->reg, c, name);
}

const char *sk_conn_name(sk_conn *c)
{
    return c ? sk__registry_name(c->reg, c) : "?";
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
        [SK_CLOSE_STOP] = "stop",   [SK_CLOSE_ERROR] = "error",       [SK_CLOSE_CONNECT] = "connect",
        [SK_CLOSE_TLS] = "tls",
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
    c->owner->now = sk__now_ms();
    /* No event announces input the transport holds, nor what came while paused:
     * take it in now. */
    if (c->resumed && sk__conn_takes_input(c))
        readable = true;
    c->resumed = false;
    if (readable && sk__conn_takes_input(c))
        while (sk__conn_input(c, c->owner->scratch, SK__SCRATCH + 1, 1, false) &&
               sk__tp_pending(c))
            ;
    if (c->own_timers) /* the connection's timers, on a program's own loop */
        sk__timers_run(c->own_timers, c->owner->now);
    sk__conn_lock(c); /* another thread's broadcast may be queueing */
    if ((writable || c->state == SK__CLOSING) && sk__conn_wants_write(c))
        sk__conn_flush(c);
    sk__conn_unlock(c);
    if (sk__conn_settle(c)) {
        sk__conn_free(c);
        return 0;
    }
    int want = SK_WANT_TIMER;
    if (sk__conn_takes_input(c))
        want |= SK_WANT_READ;
    sk__conn_lock(c);
    if (sk__conn_wants_write(c))
        want |= SK_WANT_WRITE;
    sk__conn_unlock(c);
    return want;
}

int sk_conn_deadline(const sk_conn *c)
{
    return c ? sk__conn_timeout(c) : -1;
}
