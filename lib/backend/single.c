/* SPDX-License-Identifier: MIT */
/* A small loop run by the calling thread with poll(): the loop of the
 * pthread backend's threads and of the fork backend's children. It serves the
 * connection it was made for and the outbound connections their callbacks
 * open (a proxy pair), its own timers and its posts, until none is left.
 *
 * Parking (fork children and pthread threads, while the loop serves one
 * accepted connection alone): a poll() before every read costs a third
 * system call per message beside read and send, where the textbook child
 * blocks in read. So while the connection has nothing queued, its idle timer
 * is whole (it has just read, or there is no idle timeout), and nothing is
 * owed from the relay, the child blocks in recv() on its socket, made
 * blocking, with SO_RCVTIMEO as the idle timeout (1 s at most). Whoever may
 * need it meanwhile (fork's parent with a relay message or the stop; on
 * pthread another thread's broadcast, a post, the stop) bumps *posted and
 * then, if *parked is set, sends SK__PARK_SIGNAL to the loop's thread. The
 * loop sets *parked, then compares *posted with what it has seen: one of the
 * two sides sees the other's store, so a wake-up is never lost. The signal
 * interrupts the recv() (EINTR: a receive timeout is set, so even with
 * SA_RESTART); one that lands before the recv() has begun shortens the
 * timeout to a tick instead. After any return but data, the loop polls once,
 * as it would without parking; so it does, at the latest, after 1 s parked.
 *
 * The loop's timers are on c->owner->timers (the caller makes the heap): they
 * give poll() its timeout. The receive timeout of a park is counted from the
 * last read, as the idle timeout is, whatever the idle timer's place in the
 * heap: that one is moved only when it fires. While a timer of the
 * program's (sk_conn_timer) is armed, the child does not park: it polls, with
 * the heap's next due time as the timeout, so the timer fires on time. */
#include "../server_internal.h"
#include "../transport.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* A thread parks one connection at a time: the one the signal handler,
 * running in that thread, may wake. Initial-exec: the handler never makes
 * the thread's copy (a dynamic one could be allocated in it). */
#define SK__PARK_TLS __thread __attribute__((tls_model("initial-exec")))
static SK__PARK_TLS volatile sig_atomic_t parked_fd = -1;
static SK__PARK_TLS volatile sig_atomic_t shortened;

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

/* For a program's process (pthread): take the signal only if nobody else
 * has; once. */
static int shared_install = -1;
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

static void install_if_free(void)
{
    struct sigaction old, sa = {.sa_handler = on_park_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SK__PARK_SIGNAL, NULL, &old) < 0)
        return;
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
        shared_install = -EBUSY; /* the program's own: it keeps it */
    else
        shared_install = sigaction(SK__PARK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

int sk__park_install_shared(void)
{
    pthread_once(&shared_once, install_if_free);
    return shared_install;
}

int sk__park_unblock(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SK__PARK_SIGNAL);
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
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
    int idle = c->cfg->idle_ms;
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
    return !c->cfg->idle_ms || c->owner->now - c->last_read <= 1;
}

/* No timer of the program's is armed on the loop (whose heap holds this one
 * connection's timers): a park, up to a second long, would make it late. */
static bool no_user_timer(const sk_conn *c)
{
    return c->owner->timers->n <= (sk__timer_armed(&c->timer) ? 1u : 0u);
}

/* Block in recv() unless something was posted since seen: what it returned
 * (bytes, 0, -errno), or -EALREADY when it did not park. */
static ssize_t park_recv(sk_conn *c, struct sk__park *park, unsigned seen, char *buf, size_t cap)
{
    ssize_t n = -EALREADY;
    parked_fd = c->fd;
    __atomic_store_n(park->parked, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(park->posted, __ATOMIC_SEQ_CST) == seen)
        n = c->tp->read(c, buf, cap - 1, true);
    __atomic_store_n(park->parked, 0, __ATOMIC_RELEASE);
    parked_fd = -1;
    if (shortened) {
        shortened = 0;
        set_recv_timeout(c->fd, park_timeout(c));
    }
    return n;
}

/* An outbound connection opened by one of the loop's callbacks: served here. */
static int single_dial(struct sk__owner *owner, struct sk__dial *d, sk_conn **conn)
{
    struct sk__single *l = (struct sk__single *)owner;
    sk_conn *c = sk__conn_dial(l->s, sizeof(sk_conn), owner, d);
    if (!c)
        return -ENOMEM;
    if (sk__single_add(l, c) < 0) {
        sk__conn_free(c); /* never seen by the program */
        return -ENOMEM;
    }
    if (conn)
        *conn = c;
    return 0;
}

/* Its socket is polled from the next turn on: nothing to do. */
static void single_watch(struct sk__owner *owner, sk_conn *c)
{
    (void)owner;
    (void)c;
}

void sk__single_wake(struct sk__single *l)
{
    struct sk__park *park = __atomic_load_n(&l->park, __ATOMIC_ACQUIRE);
    if (!park)
        return;
    __atomic_add_fetch(park->posted, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(park->parked, __ATOMIC_SEQ_CST))
        pthread_kill(l->thread, SK__PARK_SIGNAL);
}

/* A post from another thread: a parked loop is woken. */
static void single_wake(void *arg)
{
    sk__single_wake(arg);
}

int sk__single_init(struct sk__single *l, sk_server *s)
{
    *l = (struct sk__single){.s = s, .extra_fd = -1};
    sk__timers_init(&l->timers);
    l->owner.timers = &l->timers;
    l->owner.now = sk__now_ms();
    l->owner.dial = single_dial;
    l->owner.watch = single_watch;
    int rc = sk__posts_open(&l->posts, -1);
    if (rc < 0)
        return rc;
    l->posts_open = true;
    l->posts.wake = single_wake;
    l->posts.wake_arg = l;
    l->owner.posts = &l->posts;
    return 0;
}

void sk__single_destroy(struct sk__single *l)
{
    if (l->posts_open) /* what is left runs: its connections are gone */
        sk__posts_close(&l->posts, l->s, true);
    l->posts_open = false;
    sk__timers_free(&l->timers);
    free(l->conns);
    l->conns = NULL;
}

int sk__single_add(struct sk__single *l, sk_conn *c)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 2;
        sk_conn **more = realloc(l->conns, (size_t)cap * sizeof(*more));
        if (!more)
            return -ENOMEM;
        l->conns = more;
        l->cap = cap;
    }
    l->conns[l->n++] = c;
    return 0;
}

/* The connection at i is finished: freed, and out of the list (order kept). */
static void single_remove(struct sk__single *l, int i)
{
    sk__conn_free(l->conns[i]);
    memmove(&l->conns[i], &l->conns[i + 1], (size_t)(l->n - i - 1) * sizeof(*l->conns));
    l->n--;
}

/* Settle every connection; true while any is left. A callback run by a
 * settle (on_close, on_drain) may close a connection settled before it (a
 * proxy closes its client when the upstream closes): while a pass ran one,
 * or removed a connection, settle again, or that close would wait for the
 * next event on its socket. (Each pass that goes again has closed or removed
 * one, or run an on_drain that was owed: it ends.) */
static bool single_settle(struct sk__single *l)
{
    bool again = true;
    while (again) {
        again = false;
        for (int i = 0; i < l->n;) {
            sk_conn *c = l->conns[i];
            bool was_open = c->state == SK__OPEN, drain = c->drain_due;
            if (sk__conn_settle(c)) {
                single_remove(l, i);
                again = true;
                continue;
            }
            again |= (was_open && c->state != SK__OPEN) || (drain && !c->drain_due);
            i++;
        }
    }
    return l->n > 0;
}

/* Park only while one accepted connection is served alone, nothing is
 * queued for it, its idle timer is whole, and no timer of the program's
 * or post waits. */
static bool can_park(struct sk__single *l, bool held)
{
    sk_conn *c = l->conns[0];
    if (!l->park || l->n != 1 || c->outbound || held || c->handshaking ||
        !sk__conn_takes_input(c))
        return false;
    sk__conn_lock(c);
    bool want_write = sk__conn_wants_write(c);
    sk__conn_unlock(c);
    return !want_write && whole_idle_timer(c) && no_user_timer(c) && !sk__posts_waiting(&l->posts);
}

void sk__single_run(struct sk__single *l)
{
    sk_server *s = l->s;
    struct sk__owner *o = &l->owner;
    char *buf = malloc(SK__SCRATCH + 1);
    struct pollfd *p = NULL;
    int pcap = 0;
    struct sk__park *park = NULL;
    /* Not equal to *posted: the first wait polls, taking in what the relay holds. */
    unsigned seen = l->park ? __atomic_load_n(l->park->posted, __ATOMIC_ACQUIRE) - 1 : 0;

    l->thread = pthread_self();
    sk__loop_enter(s, o);
    o->now = sk__now_ms();
    for (int i = 0, n = l->n; i < n; i++) {
        if (!buf)
            sk__conn_request_close(l->conns[i], SK_CLOSE_ERROR);
        else if (!l->conns[i]->outbound) /* an outbound one opens once connected */
            sk__conn_open(l->conns[i]);
    }
    if (l->n == 1 && !l->conns[0]->outbound)
        park = park_begin(l->conns[0], l->park);
    __atomic_store_n(&l->park, park, __ATOMIC_RELEASE);
    for (;;) {
        o->now = sk__now_ms();
        sk__timers_run(o->timers, o->now);
        if (!single_settle(l))
            break;
        if (park && (l->n > 1 || l->conns[0]->outbound)) { /* a pair: never parked again */
            park = NULL;
            __atomic_store_n(&l->park, park, __ATOMIC_RELEASE);
        }
        int n = l->n;
        sk_conn *c0 = l->conns[0];
        bool held = false, any_open = false;
        for (int i = 0; i < n; i++) {
            held |= sk__conn_takes_input(l->conns[i]) && sk__tp_pending(l->conns[i]);
            any_open |= sk__conn_reading(l->conns[i]);
        }
        if (park && can_park(l, held)) {
            ssize_t got = park_recv(c0, park, seen, buf, SK__SCRATCH + 1);
            if (got != -EALREADY) {
                o->now = sk__now_ms();
                sk__conn_got(c0, buf, got);
                if (got >= 0 || (got != -EINTR && got != -EAGAIN))
                    continue;
                /* A wake-up, a timeout or a stray signal: look at everything. */
            }
        }

        if (pcap < n + 3) {
            struct pollfd *more = realloc(p, (size_t)(n + 3) * sizeof(*p));
            if (!more) {
                for (int i = 0; i < n; i++)
                    sk__conn_request_close(l->conns[i], SK_CLOSE_ERROR);
                continue;
            }
            p = more;
            pcap = n + 3;
        }
        for (int i = 0; i < n; i++) {
            sk_conn *c = l->conns[i];
            bool take = sk__conn_takes_input(c);
            sk__conn_lock(c);
            bool want_write = sk__conn_wants_write(c);
            sk__conn_unlock(c);
            /* Paused with nothing to write: not polled at all, or a hang-up
             * would be reported at once, again and again; it is read after
             * the resume. */
            bool idle_fd = (!take && sk__conn_reading(c) && !want_write) || c->fd < 0;
            p[i] = (struct pollfd){.fd = idle_fd ? -1 : c->fd,
                                   .events = (short)((take ? POLLIN : 0) | (want_write ? POLLOUT : 0))};
        }
        nfds_t np = (nfds_t)n;
        int stop_at = -1, extra_at = -1;
        if (any_open) { /* once all are closing, the stop has nothing more to say */
            stop_at = (int)np;
            p[np++] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
        }
        if (l->extra_fd >= 0) {
            extra_at = (int)np;
            p[np++] = (struct pollfd){.fd = l->extra_fd, .events = POLLIN};
        }
        int posts_at = (int)np;
        p[np++] = (struct pollfd){.fd = l->posts.efd, .events = POLLIN};
        unsigned posted = park ? __atomic_load_n(park->posted, __ATOMIC_SEQ_CST) : 0;
        int rc = poll(p, np, held ? 0 : sk__timers_next(o->timers, o->now));
        if (rc < 0) {
            if (errno != EINTR)
                for (int i = 0; i < n; i++)
                    sk__conn_request_close(l->conns[i], SK_CLOSE_ERROR);
            continue;
        }
        o->now = sk__now_ms();
        /* The stop descriptor may be shared with other processes (fork), the
         * flag is not: record what the descriptor says; settle does the rest. */
        if (stop_at >= 0 && p[stop_at].revents)
            sk__server_note_stop(s);
        /* Nothing in the relay after the load: all posted before it is taken in. */
        if (extra_at >= 0 && !p[extra_at].revents)
            seen = posted;
        /* The connections polled (callbacks may add more: they wait a turn). */
        for (int i = 0; i < n; i++) {
            sk_conn *c = l->conns[i];
            short ev = p[i].revents;
            if (c->connecting) {
                if (ev & (POLLOUT | POLLERR | POLLHUP))
                    sk__conn_connected(c);
                if (c->connecting)
                    continue;
            }
            if (((ev & (POLLIN | POLLHUP | POLLERR)) || sk__tp_pending(c)) &&
                sk__conn_takes_input(c))
                sk__conn_input(c, buf, SK__SCRATCH + 1, 1, false);
            if (ev & (POLLOUT | POLLERR | POLLHUP)) {
                sk__conn_lock(c);
                if (sk__conn_wants_write(c))
                    sk__conn_flush(c);
                sk__conn_unlock(c);
            }
        }
        if (extra_at >= 0 && p[extra_at].revents)
            l->on_extra(l, l->arg);
        if (p[posts_at].revents || sk__posts_waiting(&l->posts))
            sk__posts_run(&l->posts, s);
    }
    /* Posts made while its connections were open run here, with conn NULL:
     * none is made to them after (their ids are gone). */
    __atomic_store_n(&l->park, NULL, __ATOMIC_RELEASE); /* nobody signals this thread now */
    sk__posts_run(&l->posts, s);
    sk__loop_enter(NULL, NULL);
    free(p);
    free(buf);
}
