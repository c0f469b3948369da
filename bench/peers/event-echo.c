/* SPDX-License-Identifier: MIT */
/*
 * A libevent echo server as the libevent book writes one (chapter
 * "Connection listeners", the echo server example): an evconnlistener, a
 * bufferevent per connection, and a read callback that moves the whole input
 * buffer to the output buffer. Beyond the book: TCP_NODELAY, as libsockkit
 * sets it, and a backlog of SOMAXCONN.
 *
 * libevent 2.1 reads at most 4096 bytes per call into an evbuffer
 * (EVBUFFER_MAX_READ, not settable before 2.2), each read preceded by a
 * FIONREAD ioctl and followed by two epoll_ctl calls as the write event is
 * enabled and disabled: large messages cost it many system calls.
 */
#include "peer.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void on_event(struct bufferevent *bev, short events, void *arg)
{
    (void)arg;
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int len, void *arg)
{
    (void)addr;
    (void)len;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(listener);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    peer_nodelay(fd);
    bufferevent_setcb(bev, on_read, NULL, on_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, false, NULL);
    struct event_base *base = event_base_new();
    if (!base)
        return 1;
    struct evconnlistener *listener = evconnlistener_new_bind(
        base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        SOMAXCONN, (struct sockaddr *)&o.addr, (int)o.addr_len);
    if (!listener) {
        perror("event-echo: listen");
        return 1;
    }
    peer_announce(evconnlistener_get_fd(listener));
    event_base_dispatch(base);
    return 0;
}
