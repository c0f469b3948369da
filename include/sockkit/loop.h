/* SPDX-License-Identifier: MIT */
/**
 * @file loop.h
 * @brief On the loop: outbound connections and work posted from other threads.
 *
 * ## Every connection has a home
 * A connection's home is the loop that runs its callbacks: its reactor
 * (`epoll-et`, `epoll-lt`), its thread (`pthread`) or its child process
 * (`fork`). Its timers, its posted work and the outbound connections its
 * callbacks open all run in that home, so two linked connections (a proxy's
 * client and upstream) never run at the same time and need no lock, on any
 * backend.
 *
 * ## Outbound connections
 * sk_server_connect() opens a connection of the server's own to
 * `host:port`, `[v6]:port` or `unix:/path`. It gets the server's callbacks,
 * as an accepted one does: @ref sk_open_fn once connected, @ref sk_data_fn,
 * @ref sk_close_fn. A connection that could not be made is closed with
 * #SK_CLOSE_CONNECT (sk_conn_error() says why: `-ECONNREFUSED`,
 * `-ETIMEDOUT`, `-ENOENT`, an `SK_EAI_*` resolver code); its @ref sk_open_fn is
 * never called, its @ref sk_close_fn always is, so the program frees what it
 * attached. Output sent before the connection is made waits for it.
 *
 * Numeric addresses connect on the loop without blocking. A name is resolved,
 * and its addresses raced as sk_connect() does (happy eyeballs), on a
 * short-lived helper thread, so a slow resolver never blocks a loop; the
 * result comes back to the connection's home. The timeout covers all of it.
 *
 * Where it lives:
 *
 * | opened from | `epoll-et`, `epoll-lt` | `pthread` | `fork` |
 * |---|---|---|---|
 * | a connection's callback or timer | that connection's reactor | that connection's thread | that connection's child |
 * | a server timer, before the run, another thread | the first reactor | a thread of its own | a child of its own |
 *
 * Outbound connections take no slot of sk_server_set_max_conns() and are not
 * counted by sk_server_conn_count() (both are about accepted clients); they
 * are broadcast to, named, idle-timed and closed at a stop like the others.
 * A server with no listener at all (sk_server_new(NULL)) runs only its
 * outbound connections: a client program. Its run lasts until
 * sk_server_stop(), as any run does. One asked for outside a loop (before
 * the run, from another thread) is made when its home loop next turns; if
 * the run ends first (or sk_server_free() comes with no run), it is closed
 * with #SK_CLOSE_CONNECT and `-ESHUTDOWN`, in the thread that ends the run
 * (or frees the server). Either way its @ref sk_close_fn runs once.
 *
 * ## Posted work
 * sk_server_post() runs a function on the loop that owns a connection, named
 * by its sk_conn_id(), or on the server's home loop (id 0: where its server
 * timers run). Any thread may post. Posts to one target run in the order they
 * were made; none is lost: each post that returned 0 runs exactly once. A post
 * whose connection closed before it could run still runs, with @p conn NULL,
 * so its argument can be freed. Posting is bounded: a loop holds at most
 * #SK_POST_MAX posts not yet run, and beyond that sk_server_post() returns
 * `-EAGAIN` (try again later) rather than let memory grow. Posts to the server
 * made outside a run wait for the next one; those still waiting when a run
 * ends are run by sk_server_run() before it returns, the rest by
 * sk_server_free().
 *
 * On `fork` a post reaches a loop of the process that makes it: from a
 * thread of a child to that child's connections (id 0: that child's loop);
 * a connection of another child is not found (`-ENOENT`).
 *
 * @code
 * static void reply(sk_server *s, sk_conn *c, void *arg)
 * {
 *     if (c) // still open
 *         sk_conn_send(c, arg, strlen(arg));
 *     free(arg);
 *     (void)s;
 * }
 * // in a worker thread, with the id taken in a callback:
 * if (sk_server_post(server, id, reply, text) < 0)
 *     free(text); // not posted: -ENOENT (gone) or -EAGAIN (full)
 * @endcode
 */
#ifndef SOCKKIT_LOOP_H
#define SOCKKIT_LOOP_H

#include <sockkit/common.h>
#include <sockkit/server.h>

#include <stdbool.h>
#include <stdint.h>

SK_BEGIN_DECLS

/** Posts a loop holds, not yet run, before sk_server_post() says `-EAGAIN`. @since 1.1 */
#define SK_POST_MAX 65536

/**
 * Work posted with sk_server_post(), run on the target's loop.
 * @param server The server.
 * @param conn   The connection posted to, or NULL: posted to the server (id
 *               0), or the connection closed before the post could run.
 * @param arg    The poster's argument.
 * @since 1.1
 */
typedef void (*sk_post_fn)(sk_server *server, sk_conn *conn, void *arg);

/**
 * Open an outbound connection (see the file comment for where it lives).
 * @param server     The server whose callbacks it gets.
 * @param address    `host:port`, `[v6]:port` or `unix:/path`.
 * @param timeout_ms Give up after this long (#SK_CLOSE_CONNECT with
 *                   `-ETIMEDOUT`); <= 0: 5000.
 * @param data       Its user data (sk_conn_data()) from the start.
 * @param conn       If not NULL, receives the connection when it was made in
 *                   the calling loop (called from a callback or a timer of
 *                   this server): it can be sent to or closed at once. NULL
 *                   when it is made in another loop: the program meets it in
 *                   its callbacks, by its data.
 * @return 0: it is being made, and its @ref sk_close_fn will run once;
 *         -EINVAL (NULL server or address, or a wildcard address),
 *         #SK_EADDR, #SK_EPORT (an address that cannot parse), -ENOMEM,
 *         -ESHUTDOWN (the server is stopping), -ENOTSUP (the server's
 *         backend is a program's own: it runs no loop of the library's):
 *         nothing was made.
 * @since 1.1
 */
SK_API int sk_server_connect(sk_server *server, const char *address, int timeout_ms, void *data,
                             sk_conn **conn);

/**
 * Why an outbound connection could not be made, once it is closed with
 * #SK_CLOSE_CONNECT (in its @ref sk_close_fn).
 * @param conn The connection.
 * @return -errno (`-ECONNREFUSED`, `-ETIMEDOUT`, ...) or an `SK_EAI_*` code;
 *         0 for any other connection.
 * @since 1.1
 */
SK_API int sk_conn_error(const sk_conn *conn);

/**
 * Whether the connection was opened by sk_server_connect() (not accepted).
 * @param conn The connection.
 * @return true for an outbound connection; false for an accepted one or NULL.
 * @since 1.1
 */
SK_API bool sk_conn_outbound(const sk_conn *conn);

/**
 * The connection's id: never 0, never reused while the server exists. Other
 * threads name the connection by it in sk_server_post().
 * @param conn The connection.
 * @return Its id; 0 for NULL.
 * @since 1.1
 */
SK_API uint64_t sk_conn_id(const sk_conn *conn);

/**
 * Run @p fn on the loop that owns connection @p conn_id (0: the server's home
 * loop). Any thread. See the file comment.
 * @param server  The server.
 * @param conn_id The connection's sk_conn_id(), or 0 for the server.
 * @param fn      What to run there.
 * @param arg     Its argument.
 * @return 0: it will run exactly once; -EINVAL (NULL server or fn), -ENOENT
 *         (no open connection has that id), -EAGAIN (that loop holds
 *         #SK_POST_MAX posts: try again later), -ENOTSUP (the server's
 *         backend is a program's own), -ENOMEM.
 * @since 1.1
 */
SK_API int sk_server_post(sk_server *server, uint64_t conn_id, sk_post_fn fn, void *arg);

SK_END_DECLS

#endif /* SOCKKIT_LOOP_H */
