/* SPDX-License-Identifier: MIT */
/* Ping-pong and connection-rate loads. Every connection sends a slice of one
 * pseudo-random pattern, starting at its own offset; what comes back must be
 * the next bytes of that slice, so a lost, repeated or reordered byte shows. */
#include "load.h"
#include "tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct load load;
static unsigned char *pattern; /* PLEN bytes, then its first CHUNK bytes again */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const unsigned char *pattern_at(size_t salt, uint64_t off)
{
    return pattern + (salt + off) % PLEN;
}

int make_pattern(void)
{
    pattern = malloc(PLEN + CHUNK);
    if (!pattern)
        return -1;
    uint64_t x = 0x9e3779b97f4a7c15u; /* xorshift64: cheap, no short cycles */
    for (size_t i = 0; i < PLEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)x;
    }
    memcpy(pattern + PLEN, pattern, CHUNK);
    return 0;
}

/* ---- sockets ------------------------------------------------------------ */

int start_connect(void)
{
    int fd = socket(load.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&load.target, load.target_len) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static void set_interest(struct worker *w, struct conn *c, uint32_t events, bool add)
{
    if (!add && c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(w->ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* ---- the connection engine, shared by both modes ------------------------ */

static void drop(struct worker *w, struct conn *c)
{
    w->errors++;
    tls_end(c, false);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Send once: bytes taken (> 0), 0 if the socket would block, -1 on failure. */
static ssize_t put(struct conn *c, const unsigned char *p, size_t len)
{
    if (c->ssl)
        return tls_send(c, p, len);
    for (;;) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
}

/* Write what was issued and not sent; false if the connection failed. */
static bool pump_out(struct worker *w, struct conn *c)
{
    while (c->sent < c->issued) {
        uint64_t left = c->issued - c->sent;
        ssize_t n = put(c, pattern_at(c->salt, c->sent), left < CHUNK ? (size_t)left : CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            drop(w, c);
            return false;
        }
        c->sent += (uint64_t)n;
    }
    set_interest(w, c, EPOLLIN | (c->sent < c->issued ? EPOLLOUT : 0), false);
    return true;
}

/* Read once and check the bytes: how many arrived (0: nothing now), or -1 if
 * the connection failed (closed, reset, a wrong or unasked-for byte). */
static ssize_t take_in(struct worker *w, struct conn *c)
{
    ssize_t n;
    if (c->ssl) {
        if ((n = tls_recv(c, w->buf, CHUNK)) == 0)
            return 0;
    } else {
        n = recv(c->fd, w->buf, CHUNK, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
    }
    if (n <= 0 || c->recvd + (uint64_t)n > c->sent ||
        memcmp(w->buf, pattern_at(c->salt, c->recvd), (size_t)n) != 0) {
        drop(w, c);
        return -1;
    }
    c->recvd += (uint64_t)n;
    return n;
}

/* ---- pingpong ----------------------------------------------------------- */

static void issue(struct conn *c, uint64_t now)
{
    c->stamps[(c->issued / load.size) % (uint64_t)load.depth] = now;
    c->issued += load.size;
}

static void pp_readable(struct worker *w, struct conn *c)
{
    uint64_t before = c->recvd / load.size;
    if (take_in(w, c) <= 0)
        return;
    uint64_t after = c->recvd / load.size, now = now_ns();
    for (uint64_t k = before; k < after; k++) {
        if (now >= load.t_start && now < load.t_end) {
            hist_add(&w->hist, now - c->stamps[k % (uint64_t)load.depth]);
            w->msgs++;
        }
        if (now < load.t_end)
            issue(c, now);
    }
    pump_out(w, c);
}

static void pp_begin(struct worker *w, struct conn *c)
{
    uint64_t now = now_ns();
    set_interest(w, c, EPOLLIN, true);
    for (int i = 0; i < load.depth; i++)
        issue(c, now);
    pump_out(w, c);
}

static void pp_event(struct worker *w, struct conn *c, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        pp_readable(w, c);
    if (c->fd >= 0 && (ev & EPOLLOUT))
        pump_out(w, c);
}

/* ---- rate --------------------------------------------------------------- */

static void rate_begin(struct worker *w, struct conn *c)
{
    for (;;) {
        c->started = now_ns();
        if (c->started >= load.t_end)
            return;
        c->sent = c->recvd = 0;
        c->issued = load.size;
        c->connected = c->secured = false;
        c->salt = (size_t)((w->cycles++ * 7919u + (uint64_t)(c - w->conns)) % PLEN);
        c->fd = start_connect();
        if (c->fd >= 0) {
            set_interest(w, c, EPOLLOUT, true);
            return;
        }
        w->errors++;
    }
}

/* TLS: drive the handshake on a connected socket; true once it is done. */
static bool rate_secure(struct worker *w, struct conn *c)
{
    int rc = c->ssl || tls_begin(c) == 0 ? tls_handshake(c) : -1;
    if (rc < 0) {
        drop(w, c);
        rate_begin(w, c);
        return false;
    }
    if (rc == 0) {
        set_interest(w, c, c->want, false);
        return false;
    }
    c->secured = true;
    return true;
}

static void rate_event(struct worker *w, struct conn *c, uint32_t ev)
{
    if (!c->connected) {
        if (connect_error(c->fd) != 0) {
            drop(w, c);
            rate_begin(w, c);
            return;
        }
        c->connected = true;
        if (load.tls && !rate_secure(w, c))
            return;
        if (!pump_out(w, c))
            rate_begin(w, c);
        return;
    }
    if (load.tls && !c->secured) {
        if (rate_secure(w, c) && !pump_out(w, c))
            rate_begin(w, c);
        return;
    }
    if ((ev & EPOLLOUT) && !pump_out(w, c)) {
        rate_begin(w, c);
        return;
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    if (take_in(w, c) < 0) {
        rate_begin(w, c);
        return;
    }
    if (c->recvd < load.size)
        return;
    uint64_t now = now_ns();
    bool resumed = tls_resumed(c);
    tls_end(c, true);
    close(c->fd);
    c->fd = -1;
    if (now >= load.t_start && now < load.t_end) {
        hist_add(&w->hist, now - c->started);
        w->msgs++;
        w->resumed += resumed;
    }
    rate_begin(w, c);
}

/* ---- workers ------------------------------------------------------------ */

void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[MAX_EVENTS];
    for (int i = 0; i < w->nconns; i++) {
        if (load.mode == MODE_RATE)
            rate_begin(w, &w->conns[i]);
        else if (w->conns[i].fd >= 0)
            pp_begin(w, &w->conns[i]);
    }
    for (uint64_t now = now_ns(); now < load.t_end; now = now_ns()) {
        int ms = (int)((load.t_end - now) / 1000000u) + 1;
        int n = epoll_wait(w->ep, ev, MAX_EVENTS, ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = ev[i].data.ptr;
            if (c->fd < 0)
                continue; /* dropped earlier in this batch */
            if (load.mode == MODE_RATE)
                rate_event(w, c, ev[i].events);
            else
                pp_event(w, c, ev[i].events);
        }
    }
    return NULL;
}
