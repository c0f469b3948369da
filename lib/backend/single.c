/* SPDX-License-Identifier: MIT */
/* One connection served by the calling thread with poll(): the loop of the
 * pthread backend's threads and of the fork backend's children. */
#include "../server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#define lock_conn(c) ((c)->lock ? (void)pthread_mutex_lock((c)->lock) : (void)0)
#define unlock_conn(c) ((c)->lock ? (void)pthread_mutex_unlock((c)->lock) : (void)0)

void sk__serve_one(sk_conn *c, int extra_fd, void (*on_extra)(sk_conn *c, void *arg), void *arg)
{
    sk_server *s = c->srv;
    char *buf = malloc(SK__SCRATCH + 1);

    c->owner->now = sk__now_ms();
    if (!buf)
        sk__conn_request_close(c, SK_CLOSE_ERROR);
    else
        sk__conn_open(c);
    for (;;) {
        c->owner->now = sk__now_ms();
        if (sk__conn_settle(c))
            break;
        bool open = c->state == SK__OPEN && !__atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
        lock_conn(c);
        bool want_write = sk__conn_wants_write(c);
        unlock_conn(c);

        struct pollfd p[3] = {{.fd = c->fd, .events = (short)((open ? POLLIN : 0) |
                                                             (want_write ? POLLOUT : 0))}};
        nfds_t n = 1;
        int stop_at = -1, extra_at = -1;
        if (open) { /* once closing, the stop has nothing more to say */
            stop_at = (int)n;
            p[n++] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
        }
        if (extra_fd >= 0) {
            extra_at = (int)n;
            p[n++] = (struct pollfd){.fd = extra_fd, .events = POLLIN};
        }
        int rc = poll(p, n, sk__conn_timeout(c));
        if (rc < 0) {
            if (errno != EINTR)
                sk__conn_request_close(c, SK_CLOSE_ERROR);
            continue;
        }
        c->owner->now = sk__now_ms();
        /* The stop descriptor may be shared with other processes (fork), the
         * flag is not: record what the descriptor says; settle does the rest. */
        if (stop_at >= 0 && p[stop_at].revents)
            __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
        short ev = p[0].revents;
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && open)
            sk__conn_input(c, buf, SK__SCRATCH + 1, false, false);
        if (ev & (POLLOUT | POLLERR | POLLHUP)) {
            lock_conn(c);
            if (sk__conn_wants_write(c))
                sk__conn_flush(c);
            unlock_conn(c);
        }
        if (extra_at >= 0 && p[extra_at].revents)
            on_extra(c, arg);
    }
    sk__conn_free(c);
    free(buf);
}
