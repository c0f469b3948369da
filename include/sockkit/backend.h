/* SPDX-License-Identifier: MIT */
/**
 * @file backend.h
 * @brief Concurrency backends: the ops table, the registry, and the driver
 *        functions a backend of your own is built from.
 *
 * Four backends are built in: `epoll-et`, `epoll-lt`, `pthread` and `fork`,
 * and `io_uring` (since 1.1) where the library was built with liburing
 * (see `doc/BACKENDS.md` for how to choose). A backend is an ops table; a
 * program registers its own with sk_backend_register() and selects it by name
 * with sk_server_set_backend(), and the handler code does not change.
 *
 * A minimal single-threaded backend built on `poll(2)`:
 * @code
 * static int my_run(sk_server *s)
 * {
 *     // 1. Poll sk_server_listener(s, i) for every i, sk_server_stop_fd(s), and
 *     //    each connection for the events the last sk_conn_drive() returned.
 *     // 2. On a readable listener: sk_server_accept() until it returns 0.
 *     // 3. For every connection, after every wait: w = sk_conn_drive(c, rd, wr);
 *     //    w == 0 means it is finished and freed: forget it.
 *     // 4. Once sk_server_stopping(s): stop polling the listeners and stop_fd,
 *     //    drive every connection once at once (each starts closing with
 *     //    SK_CLOSE_STOP), keep driving them; return 0 when none is left.
 * }
 * static const sk_backend my_backend = {.name = "my-poll", .run = my_run};
 * sk_backend_register_sized(&my_backend, sizeof(my_backend));
 * @endcode
 * `tests/poll_backend.c` is such a backend, and the conformance suite runs on it.
 */
#ifndef SOCKKIT_BACKEND_H
#define SOCKKIT_BACKEND_H

#include <sockkit/common.h>
#include <sockkit/server.h>

#include <stdbool.h>
#include <stddef.h>

/**
 * A backend's ops table. Registered tables must outlive every server using them.
 *
 * The table may grow in a 1.x release: members are only ever appended, and a
 * program registers its table with sk_backend_register_sized(), which is told
 * how far the table goes. Members the program's headers did not have are
 * then absent to the library (as if NULL); members the library does not know
 * must be zero. Initialise the table with designated initialisers, as below.
 * @since 1.0
 */
typedef struct sk_backend {
    /** Unique name, 1 to 31 characters (letters, digits, `-`, `_`). */
    const char *name;
    /** One line for listings; may be NULL. */
    const char *summary;
    /**
     * Serve until sk_server_stopping() and no connection is left. Called by
     * sk_server_run() after the server is bound. Returns 0, or a negative code.
     */
    int (*run)(sk_server *server);
    /**
     * Deliver bytes to every live connection but @p except. NULL: the library
     * queues them directly to each connection from the calling thread, which
     * is right for a backend that runs all connections in one thread. From
     * another thread, what a socket does not take at once waits for the next
     * sk_conn_drive() of that connection (the library cannot wake your loop).
     */
    int (*broadcast)(sk_server *server, sk_conn *except, const void *data, size_t len);
} sk_backend;

/** sk_conn_drive() result bit: poll the connection for reading. @since 1.0 */
#define SK_WANT_READ 1
/** sk_conn_drive() result bit: poll the connection for writing. @since 1.0 */
#define SK_WANT_WRITE 2
/** sk_conn_drive() result bit: the connection is alive but waits for neither (it
 *  has a deadline; see sk_conn_deadline()). @since 1.0 */
#define SK_WANT_TIMER 4

SK_BEGIN_DECLS

/**
 * Register a backend whose table has the members of the 1.0 headers only
 * (`name`, `summary`, `run`, `broadcast`): members a later header appends are
 * not read, even if the program set them. Programs built against 1.1 or later
 * call sk_backend_register_sized() instead.
 * @param backend The ops table; it must stay valid for the life of the program.
 * @return 0; `-EEXIST` (a backend has that name); `-EINVAL` (bad name, no
 *         `run`); `-ENOSPC` (32 backends at most).
 * @since 1.0
 */
SK_API int sk_backend_register(const sk_backend *backend);

/**
 * Register a backend, saying how large its table is: `sizeof` of the
 * program's #sk_backend. The library reads the members it knows that fit in
 * @p size (the others count as NULL), so a table compiled against older or
 * newer headers registers correctly.
 * @param backend The ops table; it must stay valid for the life of the program.
 * @param size    `sizeof(*backend)` as the program was compiled.
 * @return 0; `-EEXIST` (a backend has that name); `-EINVAL` (bad name, no
 *         `run`, or @p size smaller than the 1.0 table); `-E2BIG` (a member
 *         this library does not know of is set: the program needs a newer
 *         libsockkit); `-ENOSPC` (32 backends at most).
 * @since 1.1
 */
SK_API int sk_backend_register_sized(const sk_backend *backend, size_t size);

/**
 * Look a backend up by name.
 * @param name The name.
 * @return The ops table, or NULL.
 * @since 1.0
 */
SK_API const sk_backend *sk_backend_find(const char *name);

/**
 * The names of all backends, built-in first, as `"epoll-et, epoll-lt,
 * pthread, fork, io_uring"` — ready for an error message.
 * @param buf  Receives the text.
 * @param size Size of @p buf.
 * @return The text's length; `-ENOSPC` (@p buf holds the whole names that
 *         fitted); `-EINVAL` (NULL, or @p size 0).
 * @since 1.0
 */
SK_API int sk_backend_list(char *buf, size_t size);

/**
 * A listening socket of a bound server (non-blocking, close-on-exec).
 * @param server The server.
 * @param index  0, 1, ...
 * @return The descriptor, or `-ENOENT` past the last one (also for NULL, and
 *         before the server is bound).
 * @since 1.0
 */
SK_API int sk_server_listener(const sk_server *server, int index);

/**
 * A descriptor that becomes readable when sk_server_stop() is called, and
 * stays readable. Never read it.
 * @param server The server.
 * @return The descriptor, or `-EINVAL` for NULL.
 * @since 1.0
 */
SK_API int sk_server_stop_fd(const sk_server *server);

/**
 * Whether a stop was requested.
 * @param server The server.
 * @return true once sk_server_stop() was called.
 * @since 1.0
 */
SK_API bool sk_server_stopping(const sk_server *server);

/**
 * Accept one connection from a readable listener, apply the connection limit
 * (a refused connection is closed and the next one tried), and call
 * @ref sk_open_fn. `EMFILE`/`ENFILE` are absorbed with a reserve descriptor:
 * the connection is refused rather than left to make the listener spin.
 * @param server    The server.
 * @param listen_fd One of sk_server_listener().
 * @param conn      Receives the connection (non-blocking socket).
 * @return 1 (a connection), 0 (nothing to accept now), or a negative code.
 * @since 1.0
 */
SK_API int sk_server_accept(sk_server *server, int listen_fd, sk_conn **conn);

/**
 * Let a connection make progress: read and deliver if @p readable, flush if
 * @p writable, and in any case apply timeouts, requested closes and the
 * server's stop. Call it for every connection after every wait.
 *
 * An epoll loop: while another descriptor shares the socket (see
 * sk_conn_fd()), `close()` does not take it out of the epoll set, so an event
 * may still come after the connection is finished. Give the registration the
 * descriptor's number, looked up in your own table, rather than the pointer.
 * @param conn     The connection.
 * @param readable Its socket polled readable (or in error).
 * @param writable Its socket polled writable.
 * @return A mask of `SK_WANT_*` bits for the next wait, or 0 when the
 *         connection is finished: it has been freed, its socket closed, and
 *         it must be forgotten.
 * @since 1.0
 */
SK_API int sk_conn_drive(sk_conn *conn, bool readable, bool writable);

/**
 * Milliseconds until the connection's next deadline (idle timeout, drain).
 * @param conn The connection.
 * @return Milliseconds (0: due now), or -1 for none.
 * @since 1.0
 */
SK_API int sk_conn_deadline(const sk_conn *conn);

SK_END_DECLS

#endif /* SOCKKIT_BACKEND_H */
