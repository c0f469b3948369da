/* SPDX-License-Identifier: MIT */
/**
 * @file addr.h
 * @brief Socket addresses: parse, resolve and format `host:port`, `[v6]:port`,
 *        `*:port`, `unix:/path` and `unix:@name`.
 *
 * The text forms accepted everywhere in libsockkit:
 * - `127.0.0.1:5188`, `localhost:5188` — an IPv4 address or a host name and a port;
 * - `[::1]:5188`, `[fe80::1%eth0]:5188` — an IPv6 address in brackets;
 * - `*:5188` — every local interface (IPv6 and IPv4 where the host has IPv6);
 * - `unix:/run/app.sock` — a unix-domain stream socket;
 * - `unix:@app` — a unix-domain stream socket in Linux's abstract namespace
 *   (no file; the `@` stands for the name's leading NUL byte).
 *
 * The port is always required (but not for `unix:`); `0` asks the kernel for a
 * free one.
 */
#ifndef SOCKKIT_ADDR_H
#define SOCKKIT_ADDR_H

#include <sockkit/common.h>

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

/** Room for the text of any address, with its terminating NUL. @since 1.0 */
#define SK_ADDR_STRLEN 128

/**
 * A socket address of any family libsockkit handles.
 * Fill it with sk_addr_parse(), sk_addr_resolve(), sk_addr_getsockname() or
 * sk_addr_getpeername(); pass `&a.sa` and `a.len` to the socket calls.
 * @since 1.0
 */
typedef struct sk_addr {
    union {
        struct sockaddr sa;       /**< generic view, for the socket calls */
        struct sockaddr_in in;    /**< AF_INET */
        struct sockaddr_in6 in6;  /**< AF_INET6 */
        struct sockaddr_un un;    /**< AF_UNIX */
        struct sockaddr_storage storage; /**< size and alignment of any of them */
    } u;                          /**< the address itself */
    socklen_t len;                /**< bytes of `u` in use */
} sk_addr;

SK_BEGIN_DECLS

/**
 * Parse an address without any lookup: numeric hosts, `*` and `unix:` only.
 *
 * `*:P` gives the IPv6 wildcard `[::]:P`; sk_listen() binds it dual-stack.
 *
 * @param text The address text.
 * @param out  Receives the address.
 * @return 0; `-EINVAL` if an argument is NULL; #SK_EADDR if the text is
 *         malformed; #SK_EPORT for a missing or out-of-range port;
 *         #SK_EAI_NONAME if the host is a name (use sk_addr_resolve());
 *         `-ENAMETOOLONG` if a unix path does not fit `sun_path` (never truncated).
 * @since 1.0
 */
SK_API int sk_addr_parse(const char *text, sk_addr *out);

/**
 * Like sk_addr_parse(), but a host name is resolved with `getaddrinfo` and the
 * first address it returns is used. Blocks while the resolver works.
 *
 * @param text The address text.
 * @param out  Receives the address.
 * @return 0 or a negative code: the sk_addr_parse() codes, or an `SK_EAI_*` code.
 * @since 1.0
 */
SK_API int sk_addr_resolve(const char *text, sk_addr *out);

/**
 * Format an address as `127.0.0.1:5188`, `[::1]:5188`, `unix:/path` or
 * `unix:@name` (an unnamed unix socket gives `unix:`).
 *
 * @param addr The address.
 * @param buf  Receives the NUL-terminated text; #SK_ADDR_STRLEN bytes always suffice.
 * @param size Size of @p buf.
 * @return The length of the text (without the NUL); `-EINVAL` for NULL, a
 *         @p size of 0 or an unknown family; `-ENOSPC` if @p buf is too small
 *         (nothing is truncated: @p buf then holds an empty string).
 * @since 1.0
 */
SK_API int sk_addr_format(const sk_addr *addr, char *buf, size_t size);

/**
 * The port of an IPv4 or IPv6 address.
 *
 * @param addr The address.
 * @return The port (0 to 65535), or `-EINVAL` for NULL or a unix address.
 * @since 1.0
 */
SK_API int sk_addr_port(const sk_addr *addr);

/**
 * The local address a socket is bound to (`getsockname`).
 *
 * @param fd  A socket.
 * @param out Receives the address.
 * @return 0, or `-EBADF`, `-ENOTSOCK`, `-EINVAL`.
 * @since 1.0
 */
SK_API int sk_addr_getsockname(int fd, sk_addr *out);

/**
 * The address of a connected socket's peer (`getpeername`).
 *
 * @param fd  A connected socket.
 * @param out Receives the address.
 * @return 0, or `-ENOTCONN`, `-EBADF`, `-ENOTSOCK`, `-EINVAL`.
 * @since 1.0
 */
SK_API int sk_addr_getpeername(int fd, sk_addr *out);

/**
 * Format a socket's local address: `127.0.0.1:5188`, `[::1]:5188`, `unix:/path`.
 *
 * @param fd   A socket.
 * @param buf  Receives the text; #SK_ADDR_STRLEN bytes always suffice.
 * @param size Size of @p buf.
 * @return The length of the text, or a negative code (see sk_addr_getsockname()
 *         and sk_addr_format()): `-EINVAL` for a NULL @p buf or a @p size of 0;
 *         after any other error (`-ENOSPC`, ...) @p buf holds an empty string.
 * @since 1.0
 */
SK_API int sk_local_addr(int fd, char *buf, size_t size);

/**
 * Format a connected socket's peer address, as sk_local_addr() does.
 *
 * @param fd   A connected socket.
 * @param buf  Receives the text; #SK_ADDR_STRLEN bytes always suffice.
 * @param size Size of @p buf.
 * @return The length of the text, or a negative code (`-ENOTCONN`, ...), as
 *         sk_local_addr(): `-EINVAL` for a @p size of 0, else @p buf holds an
 *         empty string after an error (`-ENOSPC`, ...).
 * @since 1.0
 */
SK_API int sk_peer_addr(int fd, char *buf, size_t size);

SK_END_DECLS

#endif /* SOCKKIT_ADDR_H */
