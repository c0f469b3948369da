/* SPDX-License-Identifier: MIT */
/* sk_connect: resolve, then race the addresses as RFC 8305 ("happy eyeballs") does. */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#define ATTEMPT_DELAY_MS 250 /* RFC 8305 "Connection Attempt Delay" */
#define MAX_ADDRS 32         /* addresses beyond this many are not tried */

struct race {
    const sk_addr *addrs; /* in the order to try */
    int n, next;          /* count; index of the next to start */
    struct pollfd pending[MAX_ADDRS];
    int npending;
    int first_err;
};

static void race_fail(struct race *r, int err)
{
    if (r->first_err == 0)
        r->first_err = err;
}

/* Start the next attempt: the connected fd if it won at once, else 0
 * (with *failed set if it failed at once). */
static int race_start(struct race *r, bool *failed)
{
    const sk_addr *a = &r->addrs[r->next++];
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0) {
        race_fail(r, -errno);
        *failed = true;
        return 0;
    }
    if (connect(fd, &a->u.sa, a->len) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        r->pending[r->npending++] = (struct pollfd){.fd = fd, .events = POLLOUT};
        return 0;
    }
    race_fail(r, -errno);
    close(fd);
    *failed = true;
    return 0;
}

/* Collect finished attempts: the winning fd, or 0; failed ones are closed. */
static int race_collect(struct race *r, bool *failed)
{
    int winner = 0;

    for (int i = 0; i < r->npending;) {
        struct pollfd *p = &r->pending[i];
        int err = 0;
        socklen_t len = sizeof(err);
        if (!p->revents || winner) {
            i++;
            continue;
        }
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0) {
            winner = p->fd;
        } else {
            race_fail(r, -err);
            close(p->fd);
            *failed = true;
        }
        *p = r->pending[--r->npending];
    }
    return winner;
}

static int race(const sk_addr *addrs, int n, int timeout_ms)
{
    struct race r = {.addrs = addrs, .n = n};
    int64_t deadline = sk__deadline(timeout_ms);
    int64_t next_start = 0;
    int winner = 0;

    while (!winner) {
        int64_t now = sk__now_ms();
        if (deadline >= 0 && now >= deadline) {
            r.first_err = -ETIMEDOUT;
            break;
        }
        if (r.next < r.n && (r.npending == 0 || now >= next_start)) {
            bool failed = false;
            winner = race_start(&r, &failed);
            next_start = failed ? now : now + ATTEMPT_DELAY_MS;
            continue;
        }
        if (r.npending == 0)
            break; /* every address failed */
        int wait = sk__remaining(deadline);
        if (r.next < r.n && (wait < 0 || next_start - now < wait))
            wait = (int)(next_start - now);
        int rc = poll(r.pending, (nfds_t)r.npending, wait);
        if (rc < 0 && errno != EINTR) {
            race_fail(&r, -errno);
            break;
        }
        bool failed = false;
        if (rc > 0)
            winner = race_collect(&r, &failed);
        if (failed)
            next_start = now; /* a failure starts the next attempt at once */
    }
    for (int i = 0; i < r.npending; i++)
        close(r.pending[i].fd);
    if (!winner)
        return r.first_err ? r.first_err : -ETIMEDOUT;
    int rc = sk_set_nonblocking(winner, false);
    if (rc < 0) {
        close(winner);
        return rc;
    }
    return winner;
}

/* Interleave the families, starting with the one the resolver put first. */
static int order_addrs(const struct addrinfo *res, sk_addr *out)
{
    int family = res->ai_family, n = 0;
    const struct addrinfo *same = res, *other = res;

    for (;;) {
        while (same && same->ai_family != family)
            same = same->ai_next;
        while (other && other->ai_family == family)
            other = other->ai_next;
        if ((!same && !other) || n == MAX_ADDRS)
            return n;
        for (int k = 0; k < 2 && n < MAX_ADDRS; k++) {
            const struct addrinfo **pick = k == 0 ? &same : &other;
            if (!*pick)
                continue;
            if ((*pick)->ai_addrlen <= sizeof(out[n].u)) {
                memcpy(&out[n].u, (*pick)->ai_addr, (*pick)->ai_addrlen);
                out[n].len = (*pick)->ai_addrlen;
                n++;
            }
            *pick = (*pick)->ai_next;
        }
    }
}

/* A unix connect does not complete asynchronously: bound it with SO_SNDTIMEO. */
static int connect_unix(const sk_addr *a, int timeout_ms)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int ms = timeout_ms > 0 ? timeout_ms : 1;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (timeout_ms >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int rc;
    do
        rc = connect(fd, &a->u.sa, a->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        rc = (errno == EAGAIN || errno == EINPROGRESS) ? -ETIMEDOUT : -errno;
        close(fd);
        return rc;
    }
    if (timeout_ms >= 0) {
        tv = (struct timeval){0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

int sk_connect(const char *address, int timeout_ms)
{
    struct sk__hostport hp;
    sk_addr addrs[MAX_ADDRS];

    if (!address)
        return -EINVAL;
    int rc = sk__hostport_target(address, &hp, &addrs[0]);
    if (rc == 0)
        return hp.kind == SK__UNIX ? connect_unix(&addrs[0], timeout_ms)
                                   : race(addrs, 1, timeout_ms);
    if (rc != SK_EAI_NONAME)
        return rc;

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    rc = getaddrinfo(hp.host, hp.port, &hints, &res);
    if (rc != 0)
        return sk__eai_code(rc, errno);
    if (!res)
        return SK_EAI_NODATA;
    int n = order_addrs(res, addrs);
    freeaddrinfo(res);
    return n > 0 ? race(addrs, n, timeout_ms) : SK_EAI_NODATA;
}
