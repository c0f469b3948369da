/* SPDX-License-Identifier: MIT */
/* The plain transport: a connection's bytes straight to and from its socket,
 * one system call each way (the hot path: nothing else may be added here). */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>

static ssize_t plain_read(sk_conn *c, void *buf, size_t len, bool wait)
{
    /* MSG_DONTWAIT: the fork backend's children keep their sockets blocking
     * (see single.c), and only their parked read may wait. */
    ssize_t n = recv(c->fd, buf, len, wait ? 0 : MSG_DONTWAIT);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t sk__plain_writev(sk_conn *c, const struct iovec *iov, int n)
{
    for (;;) {
        ssize_t w;
        if (n == 1) { /* the usual case: one message, written at once */
            w = send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
            w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (w > 0)
            return w;
        if (w == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static int plain_shutdown(sk_conn *c)
{
    return shutdown(c->fd, SHUT_WR) < 0 ? -errno : 0;
}

const struct sk__transport sk__transport_plain = {
    .read = plain_read,
    .writev = sk__plain_writev,
    .shutdown = plain_shutdown,
};
