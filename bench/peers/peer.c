/* SPDX-License-Identifier: MIT */
#include "peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_addr(const char *text, struct peer_opts *o)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *h = host;
    size_t n = strlen(h);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h[n - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai;
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(&o->addr, ai->ai_addr, ai->ai_addrlen);
    o->addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

void peer_parse(int argc, char **argv, struct peer_opts *o, bool threads_ok, const char *flag)
{
    const char *listen = "127.0.0.1:0";
    o->threads = 1;
    o->flag = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (threads_ok && strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            o->threads = atoi(argv[++i]);
        } else if (flag && strcmp(argv[i], flag) == 0) {
            o->flag = true;
        } else {
            fprintf(stderr, "usage: %s [--listen HOST:PORT]%s%s%s%s\n", argv[0],
                    threads_ok ? " [--threads N]" : "", flag ? " [" : "", flag ? flag : "",
                    flag ? "]" : "");
            exit(2);
        }
    }
    if (parse_addr(listen, o) < 0 || o->threads < 1) {
        fprintf(stderr, "%s: bad address or thread count\n", argv[0]);
        exit(2);
    }
}

int peer_listen(const struct sockaddr *sa, socklen_t len, bool nonblock, bool reuseport)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void peer_announce(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        }
    }
    if (ss.ss_family == AF_INET6)
        printf("listening on [%s]:%d\n", host, port);
    else
        printf("listening on %s:%d\n", host, port);
    fflush(stdout);
}

void peer_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool peer_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}
