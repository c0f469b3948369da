/* SPDX-License-Identifier: MIT */
/*
 * A getaddrinfo() of the test binary's own, which takes precedence over the C
 * library's for every caller, libsockkit included. Names under ".sk-test"
 * resolve to fixed loopback lists, so the happy-eyeballs tests depend neither
 * on /etc/hosts nor on DNS; every other name goes to the real resolver.
 *   dual.sk-test  -> ::1, then 127.0.0.1
 *   v4v6.sk-test  -> 127.0.0.1, then ::1
 *   *.sk-test     -> EAI_NONAME
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

static char magic[] = "sk-test fake";

static struct addrinfo *entry(const char *ip, int port, struct addrinfo *next)
{
    struct addrinfo *ai = calloc(1, sizeof(*ai));
    struct sockaddr_storage *ss = calloc(1, sizeof(*ss));
    if (!ai || !ss)
        abort(); /* test scaffolding only */
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_protocol = IPPROTO_TCP;
    ai->ai_canonname = magic; /* marks the entry as ours for freeaddrinfo */
    ai->ai_addr = (struct sockaddr *)ss;
    ai->ai_next = next;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, ip, &in6->sin6_addr);
        ai->ai_family = AF_INET6;
        ai->ai_addrlen = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, ip, &in->sin_addr);
        ai->ai_family = AF_INET;
        ai->ai_addrlen = sizeof(*in);
    }
    return ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    size_t n = node ? strlen(node) : 0;
    if (n > 8 && strcmp(node + n - 8, ".sk-test") == 0) {
        int port = service ? atoi(service) : 0;
        if (strcmp(node, "dual.sk-test") == 0) {
            *res = entry("::1", port, entry("127.0.0.1", port, NULL));
            return 0;
        }
        if (strcmp(node, "v4v6.sk-test") == 0) {
            *res = entry("127.0.0.1", port, entry("::1", port, NULL));
            return 0;
        }
        return EAI_NONAME;
    }
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    *(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo"); /* the POSIX-sanctioned cast */
    return real(node, service, hints, res);
}

void freeaddrinfo(struct addrinfo *ai)
{
    if (ai && ai->ai_canonname == magic) {
        while (ai) {
            struct addrinfo *next = ai->ai_next;
            free(ai->ai_addr);
            free(ai);
            ai = next;
        }
        return;
    }
    void (*real)(struct addrinfo *);
    *(void **)&real = dlsym(RTLD_NEXT, "freeaddrinfo");
    real(ai);
}
