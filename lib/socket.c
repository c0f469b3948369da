/* SPDX-License-Identifier: MIT */
/* Listeners with a reuse policy, accept, and socket options. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

static int close_keep_errno(int fd, int rc)
{
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* One socket bound and listening on one address. */
static int listen_on(const sk_addr *a, sk_reuse reuse, int backlog, bool dual_stack)
{
    int family = a->u.sa.sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0)
        return -errno;
    if (family != AF_UNIX) {
        if ((reuse & SK_REUSE_ADDR) && (rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0)
            return close_keep_errno(fd, rc);
        if ((reuse & SK_REUSE_PORT) && (rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1)) < 0)
            return close_keep_errno(fd, rc);
        /* An explicit IPv6 address means IPv6 only, whatever the sysctl default says. */
        if (family == AF_INET6 &&
            (rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual_stack ? 0 : 1)) < 0)
            return close_keep_errno(fd, rc);
    }
    if (bind(fd, &a->u.sa, a->len) < 0 || listen(fd, backlog) < 0)
        return close_keep_errno(fd, -errno);
    return fd;
}

/* Is a live server accepting on this unix address? A refused connect means the
 * file is a leftover of a dead server. */
static bool unix_is_stale(const sk_addr *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    int rc = connect(fd, &a->u.sa, a->len);
    int err = rc < 0 ? errno : 0;
    close(fd);
    return rc < 0 && err == ECONNREFUSED;
}

static int listen_unix(const sk_addr *a, sk_reuse reuse, int backlog)
{
    int fd = listen_on(a, reuse, backlog, false);
    const char *path = a->u.un.sun_path;
    struct stat st;

    if (fd != -EADDRINUSE || !(reuse & SK_REUSE_ADDR) || path[0] == '\0')
        return fd;
    /* Replace only a socket file nobody listens on; never a regular file. */
    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || !unix_is_stale(a))
        return -EADDRINUSE;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return listen_on(a, reuse, backlog, false);
}

static int listen_resolved(const struct sk__hostport *hp, sk_reuse reuse, int backlog)
{
    struct addrinfo hints = {
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(hp->host, hp->port, &hints, &res);
    if (rc != 0)
        return sk__eai_code(rc, errno);

    int first_err = SK_EAI_NODATA;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        sk_addr a = {.len = ai->ai_addrlen};
        memcpy(&a.u, ai->ai_addr, ai->ai_addrlen);
        int fd = listen_on(&a, reuse, backlog, false);
        if (fd >= 0) {
            freeaddrinfo(res);
            return fd;
        }
        if (first_err == SK_EAI_NODATA)
            first_err = fd;
    }
    freeaddrinfo(res);
    return first_err;
}

int sk_listen(const char *address, sk_reuse reuse, int backlog)
{
    struct sk__hostport hp;
    sk_addr a;

    if (!address || (unsigned)reuse > SK_REUSE_ADDR_PORT)
        return -EINVAL;
    int rc = sk__hostport_split(address, &hp);
    if (rc < 0)
        return rc;
    if (backlog <= 0)
        backlog = SOMAXCONN;
    rc = sk__hostport_numeric(&hp, &a);
    if (rc == SK_EAI_NONAME)
        return listen_resolved(&hp, reuse, backlog);
    if (rc < 0)
        return rc;
    if (hp.kind == SK__UNIX)
        return listen_unix(&a, reuse, backlog);
    if (hp.kind != SK__WILDCARD)
        return listen_on(&a, reuse, backlog, false);

    /* "*": dual-stack IPv6, or IPv4 on a host without IPv6. */
    int fd = listen_on(&a, reuse, backlog, true);
    if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)
        return fd;
    uint16_t port = a.u.in6.sin6_port;
    memset(&a, 0, sizeof(a));
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_addr.s_addr = htonl(INADDR_ANY);
    a.u.in.sin_port = port;
    a.len = sizeof(a.u.in);
    return listen_on(&a, reuse, backlog, false);
}

int sk_accept(int listen_fd, sk_addr *peer)
{
    sk_addr ignored;
    sk_addr *a = peer ? peer : &ignored;

    for (;;) {
        memset(a, 0, sizeof(*a));
        a->len = sizeof(a->u);
        int fd = accept4(listen_fd, &a->u.sa, &a->len, SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static int set_flag(int fd, int get, int set, int flag, bool on)
{
    int flags = fcntl(fd, get);
    if (flags < 0)
        return -errno;
    int want = on ? flags | flag : flags & ~flag;
    if (want != flags && fcntl(fd, set, want) < 0)
        return -errno;
    return 0;
}

int sk_set_nonblocking(int fd, bool on)
{
    return set_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, on);
}

int sk_is_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags < 0 ? -errno : (flags & O_NONBLOCK) != 0;
}

int sk_set_cloexec(int fd, bool on)
{
    return set_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, on);
}

int sk_set_nodelay(int fd, bool on)
{
    return set_int(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int sk_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count)
{
    int rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, on);
    if (rc < 0 || !on)
        return rc;
    if (idle_s > 0 && (rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
        return rc;
    if (interval_s > 0 && (rc = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
        return rc;
    if (count > 0 && (rc = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
        return rc;
    return 0;
}

int sk_local_port(int fd)
{
    sk_addr a;
    int rc = sk_addr_getsockname(fd, &a);
    return rc < 0 ? rc : sk_addr_port(&a);
}
