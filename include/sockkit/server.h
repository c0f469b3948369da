/* SPDX-License-Identifier: MIT */
/**
 * @file server.h
 * @brief A server: one handler API, the concurrency model chosen by name at run time.
 *
 * A complete echo server:
 * @code
 * static void echo(sk_conn *c, char *data, size_t len) { sk_conn_send(c, data, len); }
 *
 * int main(void)
 * {
 *     sk_server *s = sk_server_new("127.0.0.1:5188");
 *     sk_server_on_data(s, echo);
 *     return sk_server_run(s) < 0;
 * }
 * @endcode
 *
 * ## Backends and the threading rule of every callback
 *
 * | backend | where callbacks run | state shared between connections |
 * |---|---|---|
 * | `epoll-et` (default), `epoll-lt` | the reactor thread that owns the connection; with `workers` = N > 1, N reactor threads run at once | with one reactor: no locks needed; with N: lock it |
 * | `pthread` | the connection's own thread; all connections' threads run at once | lock it |
 * | `fork` | the connection's own child process | there is none: each child has a copy of memory as it was at accept; talk through sk_server_broadcast() and the connection names |
 *
 * The same rules hold on every backend:
 * - The `sk_conn_*` functions are called only from that connection's own
 *   callbacks (in its thread or process); since 1.1, on a loop that runs
 *   several connections in one thread (`epoll-*` with one reactor, a
 *   program's own single-threaded backend), also from the callbacks of
 *   another connection of that loop (a relay). A connection handle is never
 *   valid after its @ref sk_close_fn returns.
 * - sk_server_broadcast(), sk_server_conn_count(), sk_server_names() and
 *   sk_server_stop() may be called from any callback of any connection;
 *   sk_server_stop() also from any thread and from a signal handler.
 * - Callbacks of one connection never run concurrently with each other.
 * - A callback must not block for long: on `epoll-*` it holds up every
 *   connection of its reactor.
 *
 * ## Life of a connection
 * @ref sk_open_fn once, then @ref sk_data_fn for each read (or each line), then
 * @ref sk_close_fn exactly once with the reason. When @ref sk_close_fn runs the
 * socket is still open: what it sends is flushed before the close (bounded by
 * the drain timeout), except after #SK_CLOSE_RESET, #SK_CLOSE_SLOW and
 * #SK_CLOSE_ERROR, where output is discarded.
 *
 * ## NULL handles
 * The functions of this header take a NULL server or connection without harm:
 * sk_server_free(), sk_server_stop(), sk_server_set_data(), sk_conn_close() and
 * sk_conn_set_data() ignore it; those returning text give `"?"`; sk_conn_pending()
 * gives 0; sk_conn_paused() and sk_conn_over_high() give false; sk_server_data(), sk_conn_data() and sk_conn_server() give NULL; those
 * returning `int` give `-EINVAL`.
 */
#ifndef SOCKKIT_SERVER_H
#define SOCKKIT_SERVER_H

#include <sockkit/common.h>
#include <sockkit/socket.h>

#include <stdbool.h>
#include <stddef.h>

/** A server: its configuration, listeners and connections. Opaque. @since 1.0 */
typedef struct sk_server sk_server;

/** One client connection of a server. Opaque. @since 1.0 */
typedef struct sk_conn sk_conn;

/**
 * Why a connection was closed, as @ref sk_close_fn receives it.
 * @since 1.0
 */
typedef enum sk_close_reason {
    SK_CLOSE_PEER = 1,  /**< the peer closed its side (end of file); pending output is flushed */
    SK_CLOSE_RESET,     /**< the peer reset the connection, or the socket failed */
    SK_CLOSE_IDLE,      /**< nothing received for the idle timeout */
    SK_CLOSE_SLOW,      /**< unsent output passed the cap: the peer does not read */
    SK_CLOSE_TOO_LONG,  /**< a line longer than the maximum (line framing) */
    SK_CLOSE_LOCAL,     /**< the handler called sk_conn_close() */
    SK_CLOSE_STOP,      /**< the server is stopping */
    SK_CLOSE_ERROR,     /**< the library could not go on with it (out of memory) */
    SK_CLOSE_CONNECT,   /**< an outbound connection could not be made: sk_conn_error()
                             says why (see loop.h). @since 1.1 */
    SK_CLOSE_TLS        /**< an accepted connection's TLS handshake or a TLS record
                             failed: sk_conn_error() says why (see tls.h). @since 1.1 */
} sk_close_reason;

/** How the bytes of a connection are handed to @ref sk_data_fn. @since 1.0 */
typedef enum sk_framing {
    SK_FRAMING_RAW = 0, /**< whatever each read returned (the default) */
    SK_FRAMING_LINES    /**< exactly one line per call, without its `\n` or `\r\n`
                             (a client reads lines the same way with sk_lines_next()) */
} sk_framing;

/**
 * A connection was accepted. May send (a greeting), set user data or a name,
 * or close it.
 * @param conn The new connection.
 * @since 1.0
 */
typedef void (*sk_open_fn)(sk_conn *conn);

/**
 * Bytes arrived. The buffer belongs to the library: it may be modified in
 * place (to transform and send it back without a copy) but is valid only
 * during the call. `data[len]` is always a NUL byte, so text can be used as
 * a C string (binary data may hold NUL bytes of its own).
 * @param conn The connection.
 * @param data The bytes (raw framing) or one line without its terminator (line framing).
 * @param len  Their count; in line framing an empty line gives 0.
 * @since 1.0
 */
typedef void (*sk_data_fn)(sk_conn *conn, char *data, size_t len);

/**
 * The connection is closing, for the reason given. Called exactly once. The
 * connection may still send (last words; see the file comment) but nothing
 * more will be received. @p conn is invalid once this returns.
 * @param conn   The connection.
 * @param reason Why.
 * @since 1.0
 */
typedef void (*sk_close_fn)(sk_conn *conn, sk_close_reason reason);

/**
 * A connection's event without data: its unsent output has drained (see
 * sk_server_on_drain()), or the peer closed its side (sk_server_on_eof()).
 * @param conn The connection.
 * @since 1.1
 */
typedef void (*sk_conn_fn)(sk_conn *conn);

/**
 * Receives the name of each live connection from sk_server_names().
 * @param name The connection's name (see sk_conn_set_name()).
 * @param arg  The caller's argument.
 * @since 1.0
 */
typedef void (*sk_name_fn)(const char *name, void *arg);

/**
 * Counters of a server, read with sk_server_stats_sized(); they add up over
 * runs. On `fork` the children count into a shared page, so the parent sees all.
 *
 * A 1.x release may append counters (never insert, remove or change one):
 * sk_server_stats_sized() fills as much of the struct as the program's
 * headers had, and counters the library does not keep read 0.
 * @since 1.0
 */
typedef struct sk_stats {
    unsigned long long accepted;     /**< connections accepted and served */
    unsigned long long refused;      /**< connections accepted and closed at once: limit or no fd */
    unsigned long long closed;       /**< connections closed */
    unsigned long long bytes_in;     /**< bytes read from connections */
    unsigned long long bytes_out;    /**< bytes written to connections */
    unsigned long long reads;        /**< successful read calls on connections */
    unsigned long long read_events;  /**< readiness events that led to reading */
    unsigned long long buffered;     /**< bytes now waiting in output buffers */
} sk_stats;

SK_BEGIN_DECLS

/**
 * Create a server. Nothing is bound until sk_server_bind() or sk_server_run().
 *
 * Defaults: reuse #SK_REUSE_ADDR, backend `epoll-et`, 1 worker, 1024
 * connections at most, no idle timeout, raw framing (with a `max-line` of 4096
 * bytes for when sk_server_set_option() sets `framing` to `lines`), 1 MiB of
 * unsent output per connection, 5 s to drain at close, `TCP_NODELAY` on,
 * 30 s of grace for a graceful drain, no handover socket.
 *
 * Besides the addresses of addr.h, a server takes sockets it inherited
 * (version 1.1 and later): `fd:N`, the listening socket on descriptor N (left open by
 * the program that started this one), and `systemd` or `systemd:NAME`, the
 * sockets systemd passed (socket activation: `LISTEN_PID` is this process,
 * `LISTEN_FDS` counts them from descriptor 3, `LISTEN_FDNAMES` names them),
 * all of them or those of that name; the three variables are unset once
 * the server has taken them. Each is served as it is (its address, backlog
 * and options are its creator's). A descriptor that is not a listening
 * stream socket fails the bind with #SK_ELISTENFD; `systemd` with nothing
 * passed, with #SK_ENOTACTIVATED.
 *
 * @param address Where to listen (see addr.h, and above), or NULL to add
 *                addresses with sk_server_add_listen(). Checked when the
 *                server binds.
 * @return The server, or NULL if memory (or a descriptor) ran out.
 * @since 1.0
 */
SK_API sk_server *sk_server_new(const char *address);

/**
 * Close the listeners (removing a unix socket file the server created) and
 * free the server. It does not stop a running server: stop it, and call this
 * once sk_server_run() has returned and no other thread (or signal handler)
 * can still be inside a call on it (a sk_server_stop() that made the run
 * return may not have returned itself yet). NULL is ignored.
 * @param server The server.
 * @since 1.0
 */
SK_API void sk_server_free(sk_server *server);

/**
 * Listen on one more address.
 * @param server  The server.
 * @param address An address (see addr.h; also `fd:N`, `systemd` and
 *                `systemd:NAME`: see sk_server_new()).
 * @return 0; `-EINVAL` (NULL); `-ENOSPC` (8 addresses at most); `-EBUSY`
 *         (already bound); `-ENOMEM`.
 * @since 1.0
 */
SK_API int sk_server_add_listen(sk_server *server, const char *address);

/**
 * Set the reuse policy of the listeners (default #SK_REUSE_ADDR).
 * @param server The server.
 * @param reuse  The policy.
 * @return 0, `-EINVAL`, or `-EBUSY` once bound.
 * @since 1.0
 */
SK_API int sk_server_set_reuse(sk_server *server, sk_reuse reuse);

/**
 * Choose the backend by name: `epoll-et` (the default), `epoll-lt`,
 * `pthread`, `fork`, `io_uring` (1.1, where built; see sk_server_bind() for
 * a system that refuses it), or one registered with sk_backend_register().
 * @param server The server.
 * @param name   The backend's name.
 * @return 0; #SK_EBACKEND for an unknown name (sk_backend_list() names the
 *         valid ones); `-EINVAL`; `-EBUSY` once bound.
 * @since 1.0
 */
SK_API int sk_server_set_backend(sk_server *server, const char *name);

/**
 * Number of workers: on `epoll-*`, reactor threads (each with its own
 * listener when the reuse policy includes #SK_REUSE_PORT, else sharing one);
 * on `fork`, 0 means a process per connection and N > 0 a pool of N
 * pre-forked processes; `pthread` ignores it (one thread per connection).
 * @param server  The server.
 * @param workers 0 to 256; 0 means the backend's default (1 reactor, or a
 *                process per connection).
 * @return 0, `-EINVAL`, or `-EBUSY` once bound.
 * @since 1.0
 */
SK_API int sk_server_set_workers(sk_server *server, int workers);

/**
 * Most connections served at once (default 1024). A connection beyond it is
 * refused: accepted and closed at once, so its client reads end of file
 * before any data. The count recovers as connections close.
 * @param server    The server.
 * @param max_conns At least 1.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_max_conns(sk_server *server, int max_conns);

/**
 * Close a connection that has sent nothing for this long (#SK_CLOSE_IDLE).
 * @param server  The server.
 * @param idle_ms Milliseconds; 0 (the default) or negative (since 1.1): no limit.
 * @return 0, `-EINVAL` (NULL server), or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_idle_timeout(sk_server *server, int idle_ms);

/**
 * How a connection's bytes reach @ref sk_data_fn.
 * @param server   The server.
 * @param framing  #SK_FRAMING_RAW or #SK_FRAMING_LINES.
 * @param max_line With #SK_FRAMING_LINES: the longest line accepted, its
 *                 terminator included (1 to 16 MiB); a longer one closes that
 *                 connection with #SK_CLOSE_TOO_LONG. Ignored for raw. A last
 *                 line the peer ends with its close instead of a `\n` is
 *                 delivered too. sk_lines_next() reads the same lines, with
 *                 the same limit, from a descriptor of a program's own.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_framing(sk_server *server, sk_framing framing, size_t max_line);

/**
 * Most unsent output a connection may hold (default 1 MiB). A send beyond it
 * closes that connection as a slow consumer (#SK_CLOSE_SLOW). The cap counts
 * the library's own buffer only: the kernel's socket send buffer (up to
 * `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default on Linux) fills first, so a
 * peer that never reads is cut off after about that much plus the cap.
 * @param server    The server.
 * @param max_bytes At least 1.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_max_output(sk_server *server, size_t max_bytes);

/**
 * Default output watermarks of new connections (built in: 64 KiB high, 16 KiB
 * low). A connection whose unsent output (sk_conn_pending()) reaches @p high
 * is over its high watermark (sk_conn_over_high()) until that output falls
 * to @p low or less; then @ref sk_conn_fn given to sk_server_on_drain() is
 * called, once per such crossing. The watermarks only report: the output cap
 * (sk_server_set_max_output()) still applies above them, so keep @p high
 * well under it. See sk_conn_pause() for their use.
 * @param server The server.
 * @param high   At least 1 byte.
 * @param low    Less than @p high (0: called once all output is written).
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.1
 */
SK_API int sk_server_set_watermarks(sk_server *server, size_t high, size_t low);

/**
 * How long a closing connection (and the server, when stopping) may take to
 * flush its output (default 5000 ms). Output still unsent when the time is up
 * is dropped and the connection reset (`SO_LINGER` 0: an RST instead of a FIN,
 * and what the kernel still held for the peer is lost too).
 * @param server   The server.
 * @param drain_ms Milliseconds, 0 or more. 0: no wait: the output is written
 *                 once, as far as the socket takes it, and if any is left the
 *                 connection is reset at once.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_drain_timeout(sk_server *server, int drain_ms);

/**
 * Set `TCP_NODELAY` on accepted TCP connections (default on): small replies
 * leave at once instead of waiting for the peer's acknowledgement.
 * @param server The server.
 * @param on     true to set it.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_set_nodelay(sk_server *server, bool on);

/**
 * How long a graceful drain (sk_server_drain()) lets the connections live
 * (default 30000 ms). When it is over, the connections still open are
 * stopped as sk_server_stop() stops them: #SK_CLOSE_STOP, output flushed
 * within the drain timeout (sk_server_set_drain_timeout()).
 * @param server   The server.
 * @param grace_ms Milliseconds, 0 or more. 0: no limit: the drain lasts
 *                 until the last connection has closed by itself.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.1
 */
SK_API int sk_server_set_grace_timeout(sk_server *server, int grace_ms);

/**
 * Hand the listeners over to a successor, and take them from a predecessor,
 * through a unix socket at @p path: a restart without losing a connection.
 *
 * At bind, if a server of this library answers at @p path, this server
 * takes every one of its listening sockets (every address, every worker's
 * `SO_REUSEPORT` socket, unix ones too) instead of binding its own
 * addresses, and that server drains (sk_server_drain()) and its
 * sk_server_run() returns once its connections have ended. If nothing
 * answers, the addresses are bound as usual. Either way this server then
 * listens at @p path (mode 0600; a stale socket file is replaced, as a unix
 * listener's is, only when nothing answers on it) and, while it runs, hands
 * its listeners to the first successor that asks, then drains.
 *
 * The listening sockets are never closed in between, so a connection queued
 * on them is served by one server or the other; once the successor's
 * sk_server_bind() has returned, this server accepts none (the handover
 * waits for an accept under way here to finish). Both sides accept a peer of
 * their own uid, or root, only (`SO_PEERCRED`); a successor refused gets
 * `-EPERM` from sk_server_bind() (`-EACCES` if the socket file's mode
 * stopped it first), and the old server keeps serving. Every step of the
 * exchange is bounded (5 s). The handover socket file is removed when the
 * server is freed or hands over.
 *
 * @param server The server, not bound yet.
 * @param path   The socket file's path (shorter than 108 bytes).
 * @return 0; `-EINVAL`; `-EBUSY` (bound or running); `-ENOMEM`.
 * @since 1.1
 */
SK_API int sk_server_set_handover(sk_server *server, const char *path);

/**
 * Set an option by name, from text: for command lines and configuration files.
 *
 * | name | value | same as |
 * |---|---|---|
 * | `listen` | an address | sk_server_add_listen() |
 * | `reuse` | `none`, `addr`, `port`, `addr+port` | sk_server_set_reuse() |
 * | `backend` | a backend name | sk_server_set_backend() |
 * | `workers` | 0 to 256 | sk_server_set_workers() |
 * | `max-conns` | 1 or more | sk_server_set_max_conns() |
 * | `idle-timeout` | milliseconds, 0 for none | sk_server_set_idle_timeout() |
 * | `framing` | `raw`, `lines` | sk_server_set_framing() (the current `max-line`) |
 * | `max-line` | bytes; also turns line framing on | sk_server_set_framing() |
 * | `max-output` | bytes | sk_server_set_max_output() |
 * | `drain-timeout` | milliseconds | sk_server_set_drain_timeout() |
 * | `grace-timeout` | milliseconds, 0 for none | sk_server_set_grace_timeout() (1.1) |
 * | `handover` | a socket file's path | sk_server_set_handover() (1.1) |
 * | `nodelay` | `on`, `off` | sk_server_set_nodelay() |
 *
 * Numbers are decimal, with nothing after them.
 *
 * @code
 * // NAME=VALUE lines of a configuration file, each applied as it is read.
 * static int configure(sk_server *s, FILE *f)
 * {
 *     char line[256];
 *     while (fgets(line, sizeof(line), f)) {
 *         line[strcspn(line, "\n")] = '\0';
 *         char *eq = strchr(line, '=');
 *         if (!eq || line[0] == '#')
 *             continue;
 *         *eq = '\0';
 *         int rc = sk_server_set_option(s, line, eq + 1);
 *         if (rc < 0) {
 *             fprintf(stderr, "%s: %s\n", line, sk_strerror(rc));
 *             return rc;
 *         }
 *     }
 *     return 0;
 * }
 * @endcode
 *
 * @param server The server.
 * @param name   The option's name.
 * @param value  Its value as text.
 * @return 0; `-ENOENT` (no such option); `-EINVAL` (a bad value); #SK_EBACKEND;
 *         `-EBUSY`; what the setter returns.
 * @since 1.0
 */
SK_API int sk_server_set_option(sk_server *server, const char *name, const char *value);

/**
 * Install a handler for a signal that stops the server, gracefully, as
 * sk_server_stop() does (for `SIGINT` and `SIGTERM`, say). An explicit choice:
 * the library installs no handler unless asked. The handler stays installed;
 * sk_server_free() makes it stop nothing.
 * @param server The server.
 * @param signo  The signal (not `SIGKILL`, `SIGSTOP`).
 * @return 0; `-EINVAL`; or the negated `errno` of a failed `sigaction()`.
 * @since 1.0
 */
SK_API int sk_server_stop_on_signal(sk_server *server, int signo);

/**
 * Install a handler for a signal that drains the server (sk_server_drain()),
 * for `SIGQUIT`, say; the same signal again during the drain stops it at
 * once, as sk_server_stop() does. With a backend that cannot drain (a
 * program's own), the signal stops the server. The handler stays installed;
 * sk_server_free() makes it do nothing.
 * @param server The server.
 * @param signo  The signal (not `SIGKILL`, `SIGSTOP`).
 * @return 0; `-EINVAL`; or the negated `errno` of a failed `sigaction()`.
 * @since 1.1
 */
SK_API int sk_server_drain_on_signal(sk_server *server, int signo);

/**
 * Set the connection-opened callback.
 * @param server The server.
 * @param fn     The callback, or NULL.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_on_open(sk_server *server, sk_open_fn fn);

/**
 * Set the data callback. Without one, received bytes are discarded.
 * @param server The server.
 * @param fn     The callback, or NULL.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_on_data(sk_server *server, sk_data_fn fn);

/**
 * Set the connection-closed callback.
 * @param server The server.
 * @param fn     The callback, or NULL.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.0
 */
SK_API int sk_server_on_close(sk_server *server, sk_close_fn fn);

/**
 * Set the drain callback: a connection's unsent output, after reaching its
 * high watermark, has fallen to its low watermark or under (see
 * sk_server_set_watermarks()). It runs on the connection's own loop (its
 * reactor, thread or child), never from another thread's broadcast, and not
 * once the connection is closing.
 * @param server The server.
 * @param fn     The callback, or NULL.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.1
 */
SK_API int sk_server_on_drain(sk_server *server, sk_conn_fn fn);

/**
 * Opt in to half-close: set the end-of-input callback. Without one (the 1.0
 * behaviour) the peer's close of its side ends the connection with
 * #SK_CLOSE_PEER. With one, the peer's FIN calls it instead (after the
 * last, unterminated line in line framing) and the connection stays open:
 * nothing more is received, but it may still send, for as long as the
 * program likes (it is not closed for idleness). It closes with
 * #SK_CLOSE_PEER once the program has shut its write side too
 * (sk_conn_shutdown()) and that output is flushed, or as usual on
 * sk_conn_close(), a reset or the server's stop.
 * @param server The server.
 * @param fn     The callback, or NULL.
 * @return 0, `-EINVAL`, or `-EBUSY` while running.
 * @since 1.1
 */
SK_API int sk_server_on_eof(sk_server *server, sk_conn_fn fn);

/**
 * Attach a pointer for the handler (sk_server_data() returns it). It never
 * fails and, unlike the other setters, may be called at any time, also while
 * the server runs.
 * @param server The server.
 * @param data   Anything.
 * @since 1.0
 */
SK_API void sk_server_set_data(sk_server *server, void *data);

/**
 * The pointer given to sk_server_set_data().
 * @param server The server.
 * @return The pointer, or NULL.
 * @since 1.0
 */
SK_API void *sk_server_data(const sk_server *server);

/**
 * Create the listeners now, so that errors (a busy port) are known and the
 * real address can be printed before serving. sk_server_run() binds by itself
 * when this was not called. Idempotent.
 * @param server The server.
 * @return 0; `-EADDRINUSE`, `-EACCES`, `-ENAMETOOLONG` (a unix path), #SK_EADDR,
 *         #SK_EPORT, `SK_EAI_*` (see sk_listen()); `-EDESTADDRREQ` if no address
 *         was given; `-ENOMEM`; `-EINVAL`. Since 1.1, #SK_EURING_OFF or
 *         #SK_EURING_OLD when the backend is `io_uring` and this system
 *         refuses it (nothing is bound then).
 * @since 1.0
 */
SK_API int sk_server_bind(sk_server *server);

/**
 * The address of the first listener, as `127.0.0.1:5188` (the real port
 * when bound to port 0).
 * @param server The server, bound.
 * @param buf    Receives the text; #SK_ADDR_STRLEN bytes always suffice.
 * @param size   Size of @p buf.
 * @return The text's length; `-ENOTCONN` if not bound (@p buf untouched);
 *         `-EINVAL` (NULL, or @p size 0); `-ENOSPC` (@p buf then holds an empty
 *         string).
 * @since 1.0
 */
SK_API int sk_server_address(const sk_server *server, char *buf, size_t size);

/**
 * The name of the backend the server uses.
 * @param server The server.
 * @return The name; `"?"` for NULL.
 * @since 1.0
 */
SK_API const char *sk_server_backend(const sk_server *server);

/**
 * Serve until sk_server_stop(). Binds first if needed. On return every
 * connection has been closed (its output flushed within the drain timeout),
 * every child reaped and every thread joined; the listeners stay bound, and
 * the server may run again. A unix socket path is removed by sk_server_free().
 * @param server The server.
 * @return 0 after a stop; a bind error (see sk_server_bind()); `-EBUSY` if
 *         already running; `-ENOMEM`, or another code if the backend failed.
 * @since 1.0
 */
SK_API int sk_server_run(sk_server *server);

/**
 * Ask the server to stop: stop accepting, close every connection
 * (#SK_CLOSE_STOP) after flushing, then return from sk_server_run(). Safe from
 * any thread, any callback (also in a `fork` child) and a signal handler.
 * A stop before sk_server_run() makes that run return at once.
 * @param server The server.
 * @since 1.0
 */
SK_API void sk_server_stop(sk_server *server);

/**
 * Drain the server gracefully: stop accepting at once, and let the live
 * connections go on until each ends by itself (its peer closes, the handler
 * closes it, the idle timeout). Then sk_server_run() returns 0, as after a
 * stop. When the grace time (sk_server_set_grace_timeout()) is over first,
 * the drain becomes a stop: the connections left close with
 * #SK_CLOSE_STOP, their output flushed within the drain timeout.
 * sk_server_stop() during a drain stops at once; a second drain changes
 * nothing. The listening sockets stay open (sk_server_free() closes them).
 *
 * Timers, posts, broadcasts and outbound connections work as usual during a
 * drain. Safe from any thread, any callback (also in a `fork` child) and a
 * signal handler. A drain before sk_server_run() makes that run return once
 * it has no connection: at once.
 * @param server The server.
 * @return 0; `-EINVAL`; `-EOPNOTSUPP` with a backend that cannot drain (a
 *         program's own: stop it instead).
 * @since 1.1
 */
SK_API int sk_server_drain(sk_server *server);

/**
 * Is the server draining? From sk_server_drain() (or its signal, or a
 * handover) until sk_server_run() returns; also once the drain has become
 * a stop. A handler may use it to tell its clients to go elsewhere. In a
 * `fork` child, it knows only of a drain the child asked for itself.
 * @param server The server.
 * @return true while draining; false for NULL.
 * @since 1.1
 */
SK_API bool sk_server_draining(const sk_server *server);

/**
 * Send bytes to every live connection of the server, except one.
 * Each copy is queued as by sk_conn_send(), so a slow reader is cut off
 * rather than slowing the others, and the caller never waits for a reader
 * (on `epoll-*` and `pthread` the call returns once every copy is queued or
 * written). What waits between threads or processes is bounded too: with
 * several `epoll-*` reactors, 4 MiB may wait for each other reactor; on
 * `fork`, a child that sends faster than the parent relays waits for room a
 * bounded time, never the parent. A connection that broadcasts faster than
 * that is cut off, as a slow reader is (#SK_CLOSE_SLOW); a thread that is no
 * connection's gets `-ENOBUFS`.
 * @param server The server.
 * @param except A connection to skip (usually the sender), or NULL. On
 *               `fork` only the calling connection can be skipped.
 * @param data   The bytes.
 * @param len    Their count.
 * @return 0; `-EINVAL`; `-ENOTCONN` if the server is not running; `-ENOBUFS`
 *         (epoll-* with several reactors, or fork from a thread of the parent:
 *         the bound above is reached; the copies that fit were queued); on
 *         `epoll-*`, `-ENOMEM`; on `fork`, from a connection, `-EMSGSIZE` (over
 *         1 GiB), `-ETIMEDOUT` or the relay's write error (`-EPIPE`: the parent
 *         is gone).
 * @since 1.0
 */
SK_API int sk_server_broadcast(sk_server *server, sk_conn *except, const void *data,
                               size_t len);

/**
 * sk_server_broadcast() with `printf` formatting.
 * @param server The server.
 * @param except A connection to skip, or NULL.
 * @param fmt    A `printf` format.
 * @param ...    Its arguments.
 * @return As sk_server_broadcast(); also `-ENOMEM` on any backend (no memory
 *         for a long text) and `-EINVAL` (NULL @p fmt, or it fails to format).
 * @since 1.0
 */
SK_API int sk_server_broadcastf(sk_server *server, sk_conn *except, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Live connections now (on `fork`, as the parent counts them).
 * @param server The server.
 * @return The count, or `-EINVAL`.
 * @since 1.0
 */
SK_API int sk_server_conn_count(const sk_server *server);

/**
 * Call @p fn with the name of every live connection (see sk_conn_set_name()),
 * in no particular order. On `fork` the names come from the parent.
 * @param server The server.
 * @param fn     Called once per connection.
 * @param arg    Passed to @p fn.
 * @return The number of names; `-EINVAL`; `-ETIMEDOUT` (`fork`: the parent
 *         did not answer within a second).
 * @since 1.0
 */
SK_API int sk_server_names(sk_server *server, sk_name_fn fn, void *arg);

/**
 * Read the server's counters that the 1.0 headers have (the eight from
 * `accepted` to `buffered`); members a later header appends are left as they
 * were. Programs built against 1.1 or later call sk_server_stats_sized().
 * @param server The server.
 * @param stats  Receives them.
 * @return 0 or `-EINVAL`.
 * @since 1.0
 */
SK_API int sk_server_stats(const sk_server *server, sk_stats *stats);

/**
 * Read the server's counters into a #sk_stats of the program's size:
 * `sk_server_stats_sized(s, &st, sizeof(st))`. Every byte of @p size is
 * written: counters the library does not keep are set to 0.
 * @param server The server.
 * @param stats  Receives them.
 * @param size   `sizeof(*stats)` as the program was compiled; at least the
 *               size of the 1.0 struct.
 * @return 0 or `-EINVAL`.
 * @since 1.1
 */
SK_API int sk_server_stats_sized(const sk_server *server, sk_stats *stats, size_t size);

/**
 * Queue bytes for the peer. They are written at once as far as the socket
 * takes them; the rest is kept and sent when the peer reads. When the kept
 * bytes would pass the output cap (sk_server_set_max_output()), nothing is
 * queued and the connection closes with #SK_CLOSE_SLOW.
 * @param conn The connection.
 * @param data The bytes.
 * @param len  Their count.
 * @return 0; `-ENOBUFS` (over the cap: the connection is closing); `-EPIPE`
 *         (the connection is closing without output, or its write side is
 *         shut: sk_conn_shutdown()); `-EINVAL`; `-ENOMEM`.
 * @since 1.0
 */
SK_API int sk_conn_send(sk_conn *conn, const void *data, size_t len);

/**
 * sk_conn_send() with `printf` formatting.
 * @param conn The connection.
 * @param fmt  A `printf` format.
 * @param ...  Its arguments.
 * @return As sk_conn_send().
 * @since 1.0
 */
SK_API int sk_conn_sendf(sk_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Close the connection after its output is flushed. @ref sk_close_fn follows
 * with #SK_CLOSE_LOCAL once the current callback has returned. Idempotent.
 * @param conn The connection.
 * @since 1.0
 */
SK_API void sk_conn_close(sk_conn *conn);

/**
 * Output: bytes queued for the peer in the library's buffer, not yet written
 * to the socket.
 * @param conn The connection.
 * @return The count; 0 for NULL.
 * @since 1.0
 */
SK_API size_t sk_conn_pending(const sk_conn *conn);

/**
 * Stop reading the connection: @ref sk_data_fn is not called for it until
 * sk_conn_resume(); what the peer sends waits in the kernel, whose full
 * receive buffer then stops the peer (TCP flow control). Takes effect before
 * the next read: in line framing, the complete lines of the read under way
 * are still delivered. A paused connection is not closed for idleness; its
 * idle time counts again from sk_conn_resume(). A peer's close or reset is
 * noticed once the connection is resumed. Output is unaffected. Idempotent.
 *
 * With the watermarks this bounds a relay's memory: pause the source when the
 * destination is over its high watermark (sk_conn_over_high() after a send),
 * resume it from the destination's drain callback (sk_server_on_drain()).
 * @param conn The connection.
 * @return 0, or `-EINVAL`.
 * @since 1.1
 */
SK_API int sk_conn_pause(sk_conn *conn);

/**
 * Read the connection again after sk_conn_pause(); bytes that arrived
 * meanwhile are delivered, as is the peer's close. May be called from a
 * callback of another connection of the same loop (a relay's drain
 * callback). On a program's own backend, sk_conn_deadline() of a resumed
 * connection is 0 until its next sk_conn_drive(), so a loop that waits for
 * the deadlines drives it at once. Idempotent.
 * @param conn The connection.
 * @return 0, or `-EINVAL`.
 * @since 1.1
 */
SK_API int sk_conn_resume(sk_conn *conn);

/**
 * Whether the connection was paused by sk_conn_pause() and not resumed.
 * @param conn The connection.
 * @return true if paused; false for NULL.
 * @since 1.1
 */
SK_API bool sk_conn_paused(const sk_conn *conn);

/**
 * Set this connection's output watermarks (its defaults come from
 * sk_server_set_watermarks()). If its unsent output is at or over the new
 * @p high now, it is over its high watermark at once.
 * @param conn The connection.
 * @param high At least 1 byte.
 * @param low  Less than @p high.
 * @return 0, or `-EINVAL`.
 * @since 1.1
 */
SK_API int sk_conn_set_watermarks(sk_conn *conn, size_t high, size_t low);

/**
 * Whether the connection's unsent output has reached its high watermark and
 * not yet fallen to its low one: what a relay checks after sending, to pause
 * its source. The drain callback follows when it falls.
 * @param conn The connection.
 * @return true if over; false otherwise and for NULL.
 * @since 1.1
 */
SK_API bool sk_conn_over_high(const sk_conn *conn);

/**
 * Shut the connection's write side: the peer receives everything queued so
 * far, then end of file (a FIN: `shutdown(SHUT_WR)`), and the connection
 * keeps reading. Nothing more can be sent (sk_conn_send() returns `-EPIPE`,
 * broadcasts skip it). If the peer has already closed its side (see
 * sk_server_on_eof()), the connection closes with #SK_CLOSE_PEER once the
 * FIN is sent; else it does when the peer's FIN comes. May be called from a
 * callback of another connection of the same loop (a proxy passing a FIN
 * on). Idempotent.
 * @param conn The connection.
 * @return 0; `-EPIPE` (the connection is closing); `-EINVAL`.
 * @since 1.1
 */
SK_API int sk_conn_shutdown(sk_conn *conn);

/**
 * The peer's address as text (`127.0.0.1:40512`, `[::1]:40512`, `unix:`).
 * @param conn The connection.
 * @return The text, valid as long as the connection; `"?"` if unknown.
 * @since 1.0
 */
SK_API const char *sk_conn_peer(sk_conn *conn);

/**
 * The local address the connection arrived on, as text.
 * @param conn The connection.
 * @return The text, valid as long as the connection; `"?"` if unknown.
 * @since 1.0
 */
SK_API const char *sk_conn_local(sk_conn *conn);

/**
 * Give the connection a name, seen by sk_server_names() on every backend.
 * @param conn The connection.
 * @param name Up to #SK_NAME_MAX bytes, its NUL not counted; copied. NULL
 *             restores the default (the peer address).
 * @return 0; `-EINVAL` (too long); `-ENOMEM`.
 * @since 1.0
 */
SK_API int sk_conn_set_name(sk_conn *conn, const char *name);

/**
 * Longest name sk_conn_set_name() takes, in bytes, without the terminating NUL
 * (a buffer for one needs #SK_NAME_MAX + 1). A default name (the peer address)
 * may be longer: up to #SK_ADDR_STRLEN - 1 bytes.
 * @since 1.0
 */
#define SK_NAME_MAX 64

/**
 * The connection's name: the one set, or its peer address (which may be
 * longer than #SK_NAME_MAX: up to #SK_ADDR_STRLEN - 1 bytes).
 * @param conn The connection.
 * @return The name, valid until the next sk_conn_set_name(); `"?"` for NULL.
 * @since 1.0
 */
SK_API const char *sk_conn_name(sk_conn *conn);

/**
 * Attach a pointer for the handler (sk_conn_data() returns it). It never fails
 * and, unlike the server's setters, may be called at any time, also while the
 * server runs.
 * @param conn The connection.
 * @param data Anything; the library never touches it.
 * @since 1.0
 */
SK_API void sk_conn_set_data(sk_conn *conn, void *data);

/**
 * The pointer given to sk_conn_set_data().
 * @param conn The connection.
 * @return The pointer, or NULL.
 * @since 1.0
 */
SK_API void *sk_conn_data(const sk_conn *conn);

/**
 * The server a connection belongs to.
 * @param conn The connection.
 * @return The server.
 * @since 1.0
 */
SK_API sk_server *sk_conn_server(const sk_conn *conn);

/**
 * The connection's socket, for socket options. Reading or writing it
 * directly bypasses the library's buffering; closing it is not allowed, and
 * so is changing its blocking mode or `SO_RCVTIMEO` (the `fork` backend's
 * children keep it blocking, with a receive timeout, between messages). A
 * copy of it (`dup()`, a child process's) keeps the socket open after the
 * connection has ended, until the copy is closed too; the library stops
 * watching the socket at the end all the same.
 * @param conn The connection.
 * @return The descriptor, or `-EINVAL`.
 * @since 1.0
 */
SK_API int sk_conn_fd(const sk_conn *conn);

/**
 * A reason's name: `"peer"`, `"reset"`, `"idle"`, `"slow"`, `"too-long"`,
 * `"local"`, `"stop"`, `"error"`.
 * @param reason The reason.
 * @return The name; `"?"` for another value.
 * @since 1.0
 */
SK_API const char *sk_close_reason_name(sk_close_reason reason);

SK_END_DECLS

#endif /* SOCKKIT_SERVER_H */
