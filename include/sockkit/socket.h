/* SPDX-License-Identifier: MIT */
/**
 * @file socket.h
 * @brief Listeners with an explicit reuse policy, connect with a timeout and
 *        happy eyeballs, and socket option helpers.
 *
 * Plain file descriptors in, plain file descriptors out: this layer works
 * with any event loop. Every descriptor it creates is close-on-exec.
 */
#ifndef SOCKKIT_SOCKET_H
#define SOCKKIT_SOCKET_H

#include <sockkit/common.h>
#include <sockkit/addr.h>

#include <stdbool.h>

/**
 * How a listener may share its address with other sockets.
 * See `doc/REUSE.md` for the full story.
 * @since 1.0
 */
typedef enum sk_reuse {
    /** Plain bind: fails with `-EADDRINUSE` while anything, even a connection
     *  in TIME_WAIT, still holds the port. */
    SK_REUSE_NONE = 0,
    /** `SO_REUSEADDR`: a restarted server binds at once although its previous
     *  connections sit in TIME_WAIT (the previous server must have used it too).
     *  Two live listeners still cannot share a port. For `unix:` paths: a stale
     *  socket file left by a dead server is replaced. The right choice for
     *  nearly every server. */
    SK_REUSE_ADDR = 1,
    /** `SO_REUSEPORT`: several listeners (of the same user) share one port and
     *  the kernel spreads incoming connections between them. */
    SK_REUSE_PORT = 2,
    /** Both of the above. */
    SK_REUSE_ADDR_PORT = 3
} sk_reuse;

SK_BEGIN_DECLS

/**
 * Create a listening stream socket.
 *
 * - `host:port`: a name is resolved and the first address that binds is used.
 * - `[v6]:port`: IPv6 only (`IPV6_V6ONLY`), so the IPv4 port stays free.
 * - `*:port`: every interface, dual-stack IPv6 where the host has IPv6,
 *   IPv4 `0.0.0.0` otherwise.
 * - `unix:/path`: a live socket at the path is never stolen; a stale socket
 *   file is replaced only under #SK_REUSE_ADDR; any other file is left alone.
 *   To tell the two apart sk_listen() connects to the path once, so a live
 *   server sees one connection that closes without data. The caller removes
 *   the path when done (`unlink`).
 * - `unix:@name`: an abstract name (Linux): no file, nothing to remove; a name
 *   in use gives `-EADDRINUSE`.
 *
 * @code
 * // An echo server with this layer alone, one client at a time.
 * static int echo_forever(const char *address)
 * {
 *     int lfd = sk_listen(address, SK_REUSE_ADDR, 0);
 *     if (lfd < 0)
 *         return lfd; // sk_strerror(lfd) says why
 *     for (;;) {
 *         int fd = sk_accept(lfd, NULL);
 *         if (fd == -ECONNABORTED)
 *             continue;
 *         if (fd < 0) {
 *             close(lfd);
 *             return fd; // -EMFILE, ...
 *         }
 *         char buf[4096];
 *         ssize_t n;
 *         while ((n = sk_read_some(fd, buf, sizeof(buf), 60000)) > 0 &&
 *                sk_write_all(fd, buf, (size_t)n, 60000) == n)
 *             ;
 *         close(fd);
 *     }
 * }
 * @endcode
 *
 * @param address The address to bind (see addr.h); port 0 picks a free port.
 * @param reuse   The reuse policy.
 * @param backlog Accept-queue length; `<= 0` means `SOMAXCONN`.
 * @return A listening, blocking, close-on-exec fd; or `-EADDRINUSE`,
 *         `-EACCES`, `-EADDRNOTAVAIL`, `-ENAMETOOLONG`, #SK_EADDR, #SK_EPORT,
 *         an `SK_EAI_*` code, `-EINVAL` (NULL address or bad @p reuse).
 * @since 1.0
 */
SK_API int sk_listen(const char *address, sk_reuse reuse, int backlog);

/**
 * Connect a stream socket.
 *
 * The host is resolved with `getaddrinfo` and the addresses are raced as
 * RFC 8305 ("happy eyeballs") describes: families interleaved, the next
 * attempt started when the previous one has not answered within 250 ms (or at
 * once when it fails), the first to connect wins and the others are closed.
 *
 * @code
 * // Ask a line-based server one question; print its first answer.
 * static int ask(const char *address, const char *question)
 * {
 *     int fd = sk_connect(address, 2000);
 *     if (fd < 0) {
 *         fprintf(stderr, "%s: %s\n", address, sk_strerror(fd));
 *         return fd;
 *     }
 *     char answer[512];
 *     ssize_t n = sk_write_all(fd, question, strlen(question), 2000);
 *     if (n >= 0)
 *         n = sk_read_some(fd, answer, sizeof(answer), 2000);
 *     if (n > 0)
 *         printf("%.*s", (int)n, answer);
 *     close(fd);
 *     return n < 0 ? (int)n : 0;
 * }
 * @endcode
 *
 * @param address    `host:port`, `[v6]:port`, `unix:/path` or `unix:@name`.
 * @param timeout_ms Bound on the connection attempts as a whole (name resolution
 *                   is not bounded by it); `< 0`: no limit of our own.
 * @return A connected, blocking, close-on-exec fd; or `-ECONNREFUSED`,
 *         `-ETIMEDOUT`, `-ENETUNREACH`, `-ENOENT` (no unix socket there), an
 *         `SK_EAI_*` code, #SK_EADDR, #SK_EPORT, `-EINVAL` (NULL address; a
 *         `*` host). When every attempt fails, the first failure's code.
 * @since 1.0
 */
SK_API int sk_connect(const char *address, int timeout_ms);

/**
 * Accept one connection, retrying on `EINTR`. The accepted socket is blocking
 * whatever the listener's mode; a non-blocking listener with nothing pending
 * gives `-EAGAIN` instead of waiting.
 *
 * @param listen_fd A listening socket, blocking or not.
 * @param peer      Receives the peer's address; may be NULL.
 * @return A connected, blocking, close-on-exec fd; or `-EAGAIN` (non-blocking
 *         listener, nothing pending), `-EMFILE`, `-ENFILE`, `-ECONNABORTED`,
 *         `-EBADF`, `-EINVAL`, ...
 * @since 1.0
 */
SK_API int sk_accept(int listen_fd, sk_addr *peer);

/**
 * Switch `O_NONBLOCK` on or off.
 *
 * @param fd A file descriptor.
 * @param on true for non-blocking.
 * @return 0, or `-EBADF`.
 * @since 1.0
 */
SK_API int sk_set_nonblocking(int fd, bool on);

/**
 * Whether `O_NONBLOCK` is set.
 *
 * @param fd A file descriptor.
 * @return 1 (non-blocking), 0 (blocking), or `-EBADF`.
 * @since 1.0
 */
SK_API int sk_is_nonblocking(int fd);

/**
 * Switch `FD_CLOEXEC` on or off.
 *
 * @param fd A file descriptor.
 * @param on true to close the fd on `exec`.
 * @return 0, or `-EBADF`.
 * @since 1.0
 */
SK_API int sk_set_cloexec(int fd, bool on);

/**
 * Switch `TCP_NODELAY` (no Nagle delay for small writes) on or off.
 *
 * @param fd A TCP socket.
 * @param on true to send small writes at once.
 * @return 0, or `-EBADF`, `-ENOTSOCK`, `-EOPNOTSUPP` (not TCP).
 * @since 1.0
 */
SK_API int sk_set_nodelay(int fd, bool on);

/**
 * Configure TCP keepalive probes, which detect a peer that vanished without
 * closing (power loss, a dropped NAT entry).
 *
 * @param fd         A TCP socket.
 * @param on         Enable (`SO_KEEPALIVE`) or disable.
 * @param idle_s     Seconds of silence before the first probe; `<= 0` keeps
 *                   the system default.
 * @param interval_s Seconds between probes; `<= 0` keeps the system default.
 * @param count      Unanswered probes before the connection is dropped;
 *                   `<= 0` keeps the system default.
 * @return 0, or `-EBADF`, `-ENOTSOCK`, `-EOPNOTSUPP`, `-EINVAL` (a value too large).
 * @since 1.0
 */
SK_API int sk_set_keepalive(int fd, bool on, int idle_s, int interval_s, int count);

/**
 * The port a socket is bound to, for example after listening on port 0.
 *
 * @param fd An IPv4 or IPv6 socket.
 * @return The port (0 to 65535), or `-EBADF`, `-ENOTSOCK`, `-EINVAL` (a unix socket).
 * @since 1.0
 */
SK_API int sk_local_port(int fd);

SK_END_DECLS

#endif /* SOCKKIT_SOCKET_H */
