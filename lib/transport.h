/* SPDX-License-Identifier: MIT */
/* The transport under a connection (transport.c): every byte into and out of
 * a connection passes through one of these. Plain sockets here; TLS, or a
 * backend completing I/O itself, would be other implementations. Not exported. */
#ifndef SOCKKIT_TRANSPORT_H
#define SOCKKIT_TRANSPORT_H

#include "server_internal.h"

#include <sys/types.h>
#include <sys/uio.h>

struct sk__transport {
    /* Read up to len bytes: how many, 0 at the end of input, -EAGAIN when
     * none are ready, -EINTR (not retried: a parked reader is woken that
     * way), or another -errno. wait: the socket is blocking and the read may
     * wait (a parked fork child); otherwise it never does. A read shorter
     * than len took all the socket held, but for what has_pending reports. */
    ssize_t (*read)(sk_conn *c, void *buf, size_t len, bool wait);
    /* Write from n (>= 1) buffers without waiting: bytes taken (> 0),
     * -EAGAIN when none, or -errno (EINTR is retried inside). */
    ssize_t (*writev)(sk_conn *c, const struct iovec *iov, int n);
    /* End our output in order (plain: FIN): 0 or -errno. */
    int (*shutdown)(sk_conn *c);
    /* Input held inside the transport, which the socket will not signal
     * again (TLS: decrypted, unread). NULL: never any (plain). */
    bool (*has_pending)(const sk_conn *c);
    /* Free c->tp_state (the socket is closed by the caller). NULL: none. */
    void (*free)(sk_conn *c);
};

/* Plain sockets: recv, send (sendmsg for several buffers), shutdown. */
SK__HIDDEN extern const struct sk__transport sk__transport_plain;

/* Input the transport holds that no readiness event will announce. */
static inline bool sk__tp_pending(const sk_conn *c)
{
    return c->tp->has_pending && c->tp->has_pending(c);
}

#endif /* SOCKKIT_TRANSPORT_H */
