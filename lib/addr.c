/* SPDX-License-Identifier: MIT */
/* Address text: split, parse, resolve, format. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

static int split_unix(const char *path, struct sk__hostport *hp)
{
    struct sockaddr_un *un = &hp->unix_addr.u.un;
    size_t n = strlen(path);

    if (n == 0)
        return SK_EADDR;
    /* A path needs its NUL inside sun_path; an abstract name ("@name") does not. */
    if (path[0] == '@' ? n > sizeof(un->sun_path) : n >= sizeof(un->sun_path))
        return -ENAMETOOLONG;
    memset(&hp->unix_addr, 0, sizeof(hp->unix_addr));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') {
        un->sun_path[0] = '\0';
        hp->unix_addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        hp->unix_addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    hp->kind = SK__UNIX;
    return 0;
}

static int copy_port(const char *s, char out[6])
{
    size_t n = strlen(s);
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return SK_EPORT;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SK_EPORT;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return SK_EPORT;
    snprintf(out, 6, "%lu", v);
    return 0;
}

int sk__hostport_split(const char *text, struct sk__hostport *hp)
{
    const char *host, *host_end, *port;

    if (!text || !hp)
        return -EINVAL;
    if (strncmp(text, "unix:", 5) == 0)
        return split_unix(text + 5, hp);
    if (text[0] == '[') {
        host = text + 1;
        host_end = strchr(host, ']');
        if (!host_end || host_end == host)
            return SK_EADDR;
        if (host_end[1] != ':')
            return host_end[1] == '\0' ? SK_EPORT : SK_EADDR;
        port = host_end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return text[0] ? SK_EPORT : SK_EADDR;
        host = text;
        host_end = colon;
        port = colon + 1;
        /* A bare IPv6 address ("::1:80") is ambiguous: it needs brackets. */
        if (memchr(host, ':', (size_t)(host_end - host)) || host_end == host)
            return SK_EADDR;
    }
    size_t n = (size_t)(host_end - host);
    if (n >= sizeof(hp->host))
        return SK_EADDR;
    int rc = copy_port(port, hp->port);
    if (rc < 0)
        return rc;
    memcpy(hp->host, host, n);
    hp->host[n] = '\0';
    if (memchr(hp->host, '[', n) || memchr(hp->host, ']', n))
        return SK_EADDR;
    if (text[0] != '[' && strcmp(hp->host, "*") == 0) {
        hp->kind = SK__WILDCARD;
        return 0;
    }
    if (text[0] == '[' && !strchr(hp->host, ':'))
        return SK_EADDR; /* brackets hold IPv6 addresses only */
    hp->kind = SK__HOST;
    return 0;
}

int sk__hostport_target(const char *text, struct sk__hostport *hp, sk_addr *out)
{
    int rc = sk__hostport_split(text, hp);
    if (rc < 0)
        return rc;
    return hp->kind == SK__WILDCARD ? -EINVAL : sk__hostport_numeric(hp, out);
}

int sk__hostport_numeric(const struct sk__hostport *hp, sk_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (hp->kind == SK__UNIX) {
        *out = hp->unix_addr;
        return 0;
    }
    int port = 0;
    for (const char *p = hp->port; *p; p++)
        port = port * 10 + (*p - '0');
    if (hp->kind == SK__WILDCARD) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_addr = in6addr_any;
        out->u.in6.sin6_port = htons((uint16_t)port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    if (inet_pton(AF_INET, hp->host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons((uint16_t)port);
        out->len = sizeof(out->u.in);
        return 0;
    }
    /* All digits and dots but not an IPv4 address ("256.1.1.1"): no name looks like that. */
    if (strspn(hp->host, "0123456789.") == strlen(hp->host))
        return SK_EADDR;
    if (!strchr(hp->host, ':'))
        return SK_EAI_NONAME;
    /* IPv6, possibly with a zone ("fe80::1%eth0"): numeric getaddrinfo does no I/O. */
    struct addrinfo hints = {.ai_family = AF_INET6, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(hp->host, hp->port, &hints, &res) != 0 || !res)
        return SK_EADDR;
    memcpy(&out->u, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int sk_addr_parse(const char *text, sk_addr *out)
{
    struct sk__hostport hp;

    if (!text || !out)
        return -EINVAL;
    int rc = sk__hostport_split(text, &hp);
    return rc < 0 ? rc : sk__hostport_numeric(&hp, out);
}

int sk_addr_resolve(const char *text, sk_addr *out)
{
    struct sk__hostport hp;

    if (!text || !out)
        return -EINVAL;
    int rc = sk__hostport_split(text, &hp);
    if (rc < 0)
        return rc;
    rc = sk__hostport_numeric(&hp, out);
    if (rc != SK_EAI_NONAME)
        return rc;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    rc = getaddrinfo(hp.host, hp.port, &hints, &res);
    if (rc != 0)
        return sk__eai_code(rc, errno);
    if (!res)
        return SK_EAI_NODATA;
    memcpy(&out->u, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int format_unix(const sk_addr *addr, char *buf, size_t size)
{
    size_t n = addr->len > offsetof(struct sockaddr_un, sun_path)
                   ? addr->len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    const char *path = addr->u.un.sun_path;
    bool abstract = n > 0 && path[0] == '\0';

    if (n > sizeof(addr->u.un.sun_path))
        n = sizeof(addr->u.un.sun_path);
    if (!abstract)
        n = strnlen(path, n);
    if (5 + n + 1 > size)
        return -ENOSPC;
    memcpy(buf, "unix:", 5);
    memcpy(buf + 5, path, n);
    if (abstract)
        buf[5] = '@';
    buf[5 + n] = '\0';
    return (int)(5 + n);
}

int sk_addr_format(const sk_addr *addr, char *buf, size_t size)
{
    char host[NI_MAXHOST];
    int n;

    if (!addr || !buf || size == 0)
        return -EINVAL;
    buf[0] = '\0';
    switch (addr->u.sa.sa_family) {
    case AF_UNIX:
        n = format_unix(addr, buf, size);
        break;
    case AF_INET:
        inet_ntop(AF_INET, &addr->u.in.sin_addr, host, sizeof(host));
        n = snprintf(buf, size, "%s:%u", host, ntohs(addr->u.in.sin_port));
        break;
    case AF_INET6:
        /* An IPv4 client of a dual-stack listener reads better as plain IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&addr->u.in6.sin6_addr)) {
            inet_ntop(AF_INET, &addr->u.in6.sin6_addr.s6_addr[12], host, sizeof(host));
            n = snprintf(buf, size, "%s:%u", host, ntohs(addr->u.in6.sin6_port));
            break;
        }
        if (getnameinfo(&addr->u.sa, sizeof(addr->u.in6), host, sizeof(host), NULL, 0,
                        NI_NUMERICHOST) != 0)
            return -EINVAL;
        n = snprintf(buf, size, "[%s]:%u", host, ntohs(addr->u.in6.sin6_port));
        break;
    default:
        return -EINVAL;
    }
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return n < 0 ? n : -ENOSPC;
    }
    return n;
}

int sk_addr_port(const sk_addr *addr)
{
    if (!addr)
        return -EINVAL;
    if (addr->u.sa.sa_family == AF_INET)
        return ntohs(addr->u.in.sin_port);
    if (addr->u.sa.sa_family == AF_INET6)
        return ntohs(addr->u.in6.sin6_port);
    return -EINVAL;
}

static int get_name(int fd, sk_addr *out, bool peer)
{
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->u);
    int rc = peer ? getpeername(fd, &out->u.sa, &out->len) : getsockname(fd, &out->u.sa, &out->len);
    return rc < 0 ? -errno : 0;
}

int sk_addr_getsockname(int fd, sk_addr *out)
{
    return get_name(fd, out, false);
}

int sk_addr_getpeername(int fd, sk_addr *out)
{
    return get_name(fd, out, true);
}

static int format_name(int fd, char *buf, size_t size, bool peer)
{
    sk_addr a;

    if (!buf || size == 0)
        return -EINVAL;
    buf[0] = '\0';
    int rc = get_name(fd, &a, peer);
    return rc < 0 ? rc : sk_addr_format(&a, buf, size);
}

int sk_local_addr(int fd, char *buf, size_t size)
{
    return format_name(fd, buf, size, false);
}

int sk_peer_addr(int fd, char *buf, size_t size)
{
    return format_name(fd, buf, size, true);
}
