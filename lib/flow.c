/* SPDX-License-Identifier: MIT */
/* Flow control of a connection: pausing its reads, its output watermarks, and
 * shutting its write side. The loops honour c->paused (they neither read nor
 * wait for input), conn.c tracks the watermarks, owes on_drain, and sends the
 * FIN of a shutdown once the output is flushed. */
#include "server_internal.h"

#include <errno.h>

/* Its loop must look at it again: to change what it waits for (epoll-lt), or
 * to read what may have come meanwhile (epoll-et). */
static void tell_owner(sk_conn *c)
{
    if (c->owner->notify)
        c->owner->notify(c->owner, c);
}

int sk_conn_pause(sk_conn *c)
{
    if (!c)
        return -EINVAL;
    if (!c->paused) {
        c->paused = true;
        c->resumed = false;
        tell_owner(c);
    }
    return 0;
}

int sk_conn_resume(sk_conn *c)
{
    if (!c)
        return -EINVAL;
    if (c->paused) {
        c->paused = false;
        c->resumed = true; /* an edge may have come and gone: read without one */
        c->last_read = c->owner->now; /* idle counts again from here */
        tell_owner(c);
    }
    return 0;
}

bool sk_conn_paused(const sk_conn *c)
{
    return c && c->paused;
}

int sk_conn_set_watermarks(sk_conn *c, size_t high, size_t low)
{
    if (!c || high < 1 || low >= high)
        return -EINVAL;
    sk__conn_lock(c); /* another thread's broadcast may be queueing */
    c->high = high;
    c->low = low;
    bool drained = false;
    if (c->out.bytes >= high) {
        c->over_high = true;
    } else if (c->over_high && c->out.bytes <= low) { /* no flush may come to notice */
        c->over_high = false;
        c->drain_due = drained = true;
    }
    sk__conn_unlock(c);
    if (drained)
        tell_owner(c);
    return 0;
}

bool sk_conn_over_high(const sk_conn *c)
{
    if (!c)
        return false;
    sk__conn_lock(c);
    bool over = c->over_high;
    sk__conn_unlock(c);
    return over;
}

int sk_conn_shutdown(sk_conn *c)
{
    if (!c)
        return -EINVAL;
    int rc = 0;
    sk__conn_lock(c); /* against a broadcast queueing from another thread */
    if (c->state != SK__OPEN || c->dead_output) {
        rc = -EPIPE;
    } else if (!c->shut_asked) {
        c->shut_asked = true;
        if (c->out.bytes == 0 && !c->connecting) /* connecting: once connected */
            sk__conn_shut_write(c);
    }
    sk__conn_unlock(c);
    tell_owner(c); /* it may be over now (half-closed both ways), or wait to flush */
    return rc;
}
