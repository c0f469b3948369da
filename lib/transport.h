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
    /* A handshake step, while c->handshaking (TLS): 1 when complete (then
     * on_open runs), -EAGAIN (more input needed), or why it failed. */
    int (*handshake)(sk_conn *c);
    /* Send the bytes the transport holds itself (TLS: records encrypted and
     * not yet taken by the socket): 0 when none is left, -EAGAIN, or -errno.
     * NULL: it holds none. */
    int (*flush)(sk_conn *c);
    /* Whether it holds bytes (or a FIN) to send: the socket is watched for
     * writing until it does not. NULL: never. */
    bool (*has_output)(const sk_conn *c);
    /* Where writev never writes on the spot (a loop that batches its sends:
     * io_uring): write now, as writev would elsewhere. Used only when the
     * queue would otherwise pass its cap, so that what the socket takes at
     * once does not count against it, as on the other backends. NULL: writev
     * writes on the spot already. */
    ssize_t (*writev_now)(sk_conn *c, const struct iovec *iov, int n);
};

/* Plain sockets: recv, send (sendmsg for several buffers), shutdown. */
SK__HIDDEN extern const struct sk__transport sk__transport_plain;
/* Its writev: send, or sendmsg for several buffers, never waiting. */
SK__HIDDEN ssize_t sk__plain_writev(sk_conn *c, const struct iovec *iov, int n);

/* Output the transport holds (beside the connection's queue). */
static inline bool sk__tp_output(const sk_conn *c)
{
    return c->tp->has_output && c->tp->has_output(c);
}

/* Output to write (the queue's, or the transport's own), or a connect to see
 * finish (writable). Caller holds its owner's lock, if any. */
static inline bool sk__conn_wants_write(const sk_conn *c)
{
    if (c->connecting)
        return c->fd >= 0 && !__atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
    if (c->handshaking) /* the queue waits for the handshake; its flight may not */
        return sk__tp_output(c);
    return !c->dead_output && (sk__conn_queued(c) > 0 || sk__tp_output(c));
}

/* Input the transport holds that no readiness event will announce. */
static inline bool sk__tp_pending(const sk_conn *c)
{
    return c->tp->has_pending && c->tp->has_pending(c);
}

#endif /* SOCKKIT_TRANSPORT_H */
