/* SPDX-License-Identifier: MIT */
/* One connection served by the calling thread with poll(): the loop of the
 * pthread backend's threads and of the fork backend's children.
 *
 * Parking (fork children only): a poll() before every read costs a third
 * system call per message beside read and send, where the textbook child
 * blocks in read. So while the connection has nothing queued, its idle timer
 * is whole (it has just read, or there is no idle timeout), and nothing is
 * owed from the relay, the child blocks in recv() on its socket, made
 * blocking, with SO_RCVTIMEO as the idle timeout (1 s at most). Whoever may
 * need it meanwhile (the parent, with a relay message or the stop) bumps the
 * shared *posted and then, if *parked is set, sends SK__PARK_SIGNAL. The
 * child sets *parked, then compares *posted with what it has seen: one of the
 * two sides sees the other's store, so a wake-up is never lost. The signal
 * interrupts the recv() (EINTR: a receive timeout is set, so even with
 * SA_RESTART); one that lands before the recv() has begun shortens the
 * timeout to a tick instead. After any return but data, the loop polls once,
 * as it would without parking; so it does, at the latest, after 1 s parked. */
#include "../server_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#define lock_conn(c) ((c)->lock ? (void)pthread_mutex_lock((c)->lock) : (void)0)
#define unlock_conn(c) ((c)->lock ? (void)pthread_mutex_unlock((c)->lock) : (void)0)

/* A process parks one connection at a time: the one the handler may wake. */
static volatile sig_atomic_t parked_fd = -1;
static volatile sig_atomic_t shortened;

static int set_recv_timeout(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ? -errno : 0;
}

static void on_park_signal(int sig)
{
    (void)sig;
    int saved = errno;
    int fd = parked_fd;
    if (fd >= 0) { /* the recv() may not have begun: let it not wait long */
        struct timeval tick = {.tv_usec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof(tick));
        shortened = 1;
    }
    errno = saved;
}

int sk__park_install(void)
{
    struct sigaction sa = {.sa_handler = on_park_signal, .sa_flags = SA_RESTART};
    sigset_t set;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&set);
    sigaddset(&set, SK__PARK_SIGNAL);
    if (sigaction(SK__PARK_SIGNAL, &sa, NULL) < 0)
        return -errno;
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* The receive timeout while parked: the idle timeout, at most PARK_MAX_MS
 * (with no timeout at all, SA_RESTART would restart the recv() over the
 * signal). Past it the loop polls, as it would without parking: whatever the
 * wake-ups do, a parked child looks at its relay at least that often. */
#define PARK_MAX_MS 1000

static int park_timeout(const sk_conn *c)
{
    int idle = c->srv->cfg.idle_ms;
    return idle > 0 && idle < PARK_MAX_MS ? idle : PARK_MAX_MS;
}

static struct sk__park *park_begin(sk_conn *c, struct sk__park *park)
{
    if (!park)
        return NULL;
    if (set_recv_timeout(c->fd, park_timeout(c)) < 0)
        return NULL;
    if (sk_set_nonblocking(c->fd, false) < 0) {
        set_recv_timeout(c->fd, 0);
        return NULL;
    }
    return park;
}

/* The receive timeout cannot make the idle timeout late: none is set, or the
 * connection has just read (its clock ticks in ms: a tick may have passed). */
static bool whole_idle_timer(const sk_conn *c)
{
    return !c->srv->cfg.idle_ms || c->owner->now - c->last_read <= 1;
}

/* Block in recv() unless something was posted since seen: what it returned
 * (bytes, 0, -errno), or -EALREADY when it did not park. */
static ssize_t park_recv(sk_conn *c, struct sk__park *park, unsigned seen, char *buf, size_t cap)
{
    ssize_t n = -EALREADY;
    parked_fd = c->fd;
    __atomic_store_n(park->parked, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(park->posted, __ATOMIC_SEQ_CST) == seen) {
        n = recv(c->fd, buf, cap - 1, 0);
        if (n < 0)
            n = -errno;
    }
    __atomic_store_n(park->parked, 0, __ATOMIC_RELEASE);
    parked_fd = -1;
    if (shortened) {
        shortened = 0;
        set_recv_timeout(c->fd, park_timeout(c));
    }
    return n;
}

void sk__serve_one(sk_conn *c, int extra_fd, void (*on_extra)(sk_conn *c, void *arg), void *arg,
                   struct sk__park *park)
{
    sk_server *s = c->srv;
    char *buf = malloc(SK__SCRATCH + 1);
    /* Not equal to *posted: the first wait polls, taking in what the relay holds. */
    unsigned seen = park ? __atomic_load_n(park->posted, __ATOMIC_ACQUIRE) - 1 : 0;

    c->owner->now = sk__now_ms();
    if (!buf)
        sk__conn_request_close(c, SK_CLOSE_ERROR);
    else
        sk__conn_open(c);
    park = park_begin(c, park);
    for (;;) {
        c->owner->now = sk__now_ms();
        if (sk__conn_settle(c))
            break;
        bool open = sk__conn_reading(c);
        lock_conn(c);
        bool want_write = sk__conn_wants_write(c);
        unlock_conn(c);

        if (park && open && !want_write && whole_idle_timer(c)) {
            ssize_t n = park_recv(c, park, seen, buf, SK__SCRATCH + 1);
            if (n != -EALREADY) {
                c->owner->now = sk__now_ms();
                sk__conn_got(c, buf, n);
                if (n >= 0 || (n != -EINTR && n != -EAGAIN))
                    continue;
                /* A wake-up, a timeout or a stray signal: look at everything. */
                open = sk__conn_reading(c);
            }
        }

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
        unsigned posted = park ? __atomic_load_n(park->posted, __ATOMIC_SEQ_CST) : 0;
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
        /* Nothing in the relay after the load: all posted before it is taken in. */
        if (extra_at >= 0 && !p[extra_at].revents)
            seen = posted;
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
