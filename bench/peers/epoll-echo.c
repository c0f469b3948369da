/* SPDX-License-Identifier: MIT */
/*
 * The floor: an echo server on raw epoll with nothing in between. Bytes are
 * read into a per-thread buffer and written straight back; only what the
 * socket does not take is kept (and reading waits until it has gone).
 *
 * Edge-triggered (the default): each connection is registered once for
 * IN|OUT|RDHUP, and an edge is read until a short read or EAGAIN, so there is
 * never an epoll_ctl after the accept. --lt: level-triggered, one read per
 * event, EPOLLOUT in the interest set only while bytes wait.
 *
 * --threads N runs N such loops, each with its own SO_REUSEPORT listener on
 * the same port and its own epoll set: the kernel spreads the connections.
 */
#include "peer.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    char *rest; /* bytes the socket did not take yet */
    size_t off, len;
};

static bool edge = true;

static void drop(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->rest);
    free(c);
}

static void watch(int ep, int op, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

/* Write p[0..n) now and keep what is left. false: the connection was dropped. */
static bool echo(int ep, struct conn *c, const char *p, size_t n)
{
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
        drop(c);
        return false;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    if (done == n)
        return true;
    c->rest = malloc(n - done);
    if (!c->rest) {
        drop(c);
        return false;
    }
    memcpy(c->rest, p + done, n - done);
    c->off = 0;
    c->len = n - done;
    if (!edge)
        watch(ep, EPOLL_CTL_MOD, c, EPOLLOUT);
    return true;
}

/* Write kept bytes. false: the connection was dropped. */
static bool flush(int ep, struct conn *c)
{
    ssize_t w = send(c->fd, c->rest + c->off, c->len, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
        drop(c);
        return false;
    }
    if (w > 0) {
        c->off += (size_t)w;
        c->len -= (size_t)w;
    }
    if (c->len == 0) {
        free(c->rest);
        c->rest = NULL;
        if (!edge)
            watch(ep, EPOLL_CTL_MOD, c, EPOLLIN);
    }
    return true;
}

/* Read and echo: once (level-triggered) or until the socket is empty. */
static void input(int ep, struct conn *c, char *buf, bool hup)
{
    for (;;) {
        ssize_t n = recv(c->fd, buf, BUF_SIZE, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            drop(c);
            return;
        }
        if (n < 0 || !echo(ep, c, buf, (size_t)n) || c->rest || !edge)
            return;
        if (n < BUF_SIZE && !hup) /* a short read emptied the socket */
            return;
    }
}

static void on_event(int ep, struct conn *c, uint32_t ev, char *buf)
{
    if (c->rest && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !flush(ep, c))
        return;
    if (c->rest)
        return;
    /* Edge-triggered, after a flush: what arrived meanwhile raised no new edge. */
    if (edge || (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        input(ep, c, buf, (ev & (EPOLLRDHUP | EPOLLHUP)) != 0);
}

static void on_listener(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or out of descriptors: try at the next event */
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        peer_nodelay(fd);
        watch(ep, EPOLL_CTL_ADD, c, edge ? EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET : EPOLLIN);
    }
}

static void *loop(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char *buf = malloc(BUF_SIZE);
    struct epoll_event ev[MAX_EVENTS] = {{.events = EPOLLIN, .data.ptr = NULL}};
    if (ep < 0 || !buf || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev[0]) < 0) {
        perror("epoll-echo");
        exit(1);
    }
    for (;;) {
        int n = epoll_wait(ep, ev, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr)
                on_event(ep, ev[i].data.ptr, ev[i].events, buf);
            else
                on_listener(ep, lfd);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, true, "--lt");
    edge = !o.flag;
    int *lfd = calloc((size_t)o.threads, sizeof(*lfd));
    if (!lfd)
        return 1;
    /* The first listener picks the port (when 0); the others bind that one. */
    for (int t = 0; t < o.threads; t++) {
        lfd[t] = peer_listen((struct sockaddr *)&o.addr, o.addr_len, true, o.threads > 1);
        if (lfd[t] < 0) {
            perror("epoll-echo: listen");
            return 1;
        }
        if (t == 0) {
            socklen_t len = sizeof(o.addr);
            getsockname(lfd[0], (struct sockaddr *)&o.addr, &len);
            o.addr_len = len;
        }
    }
    peer_announce(lfd[0]);
    for (int t = 1; t < o.threads; t++) {
        pthread_t tid;
        if (pthread_create(&tid, NULL, loop, (void *)(intptr_t)lfd[t]) != 0) {
            fprintf(stderr, "epoll-echo: cannot start a thread\n");
            return 1;
        }
    }
    loop((void *)(intptr_t)lfd[0]);
    return 0;
}
