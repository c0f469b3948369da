/* SPDX-License-Identifier: MIT */
/**
 * @file timer.h
 * @brief Timers: one-shot and repeating, per connection and per server.
 *
 * A timer calls its function with its user pointer once @p after_ms has
 * passed, then (if repeating) every @p every_ms. Times are whole milliseconds
 * on the monotonic clock, counted from the sk_timer_start() call. A timer
 * never fires early. A repeating timer does not drift: its n-th run is due at
 * start + after_ms + (n - 1) * every_ms, whenever the run before it happened;
 * runs that a busy loop made late are made up, one per turn of the loop, so
 * the count of runs keeps up with the time elapsed.
 *
 * Each loop keeps its timers in a heap: creating a timer may allocate;
 * starting, stopping and firing one are O(log n) in the timers of that loop
 * and cannot fail. A callback holds up the other work of its loop (the other
 * connections of a reactor) only for its own run time.
 *
 * ## A connection's timers
 * Made with sk_conn_timer(), they run where the connection's callbacks run
 * (its reactor thread, its thread, its child process; on a backend of a
 * program's own, inside sk_conn_drive(), whose deadline they shorten), never
 * at the same time as another callback of that connection. Every `sk_timer_*`
 * call on them is made from that connection's callbacks (its timers'
 * included). They stop when the connection closes, before its @ref sk_close_fn
 * runs: none fires after, and none can be started again. They are freed with
 * the connection (after its @ref sk_close_fn returns), unless freed before with
 * sk_timer_free(). On `fork` a child does not park in a blocking receive
 * while one of its connection's timers is armed, so the timer is on time.
 *
 * ## A server's timers
 * Made with sk_server_timer(), they run in the thread that calls
 * sk_server_run(), while the run lasts:
 *
 * | backend | where a server timer runs |
 * |---|---|
 * | `epoll-et`, `epoll-lt` | the first reactor (the thread that called sk_server_run()), between its connections' events |
 * | `pthread` | the accepting thread (the one that called sk_server_run()) |
 * | `fork` | the parent process's loop (the one that called sk_server_run()) |
 * | a program's own | nowhere: the library runs no loop there (they stay armed, and do not fire) |
 *
 * Every call on a server's timers (sk_server_timer() too) is made from the
 * thread that runs, or will run, sk_server_run(): before the run, from a
 * server timer's callback during it, or after it. One started before the run
 * counts from its sk_timer_start() and fires, if already due, as soon as the
 * run begins. A timer does not keep a server running: once a stop has begun,
 * server timers no longer fire, and when sk_server_run() returns they are all
 * disarmed; they remain the program's, to start again for another run, to free
 * with sk_timer_free(), or to be freed by sk_server_free().
 *
 * ## From its own callback
 * A timer's callback may stop it, start it again (with new times), or free it;
 * also any other timer of the same loop. A repeating timer is already re-armed
 * for its next run when its callback is called: sk_timer_armed() says true, and
 * sk_timer_stop() ends the repetition.
 *
 * @code
 * static void tick(sk_timer *t, void *arg)
 * {
 *     sk_conn_sendf(arg, "tick\n");
 *     (void)t;
 * }
 * static void on_open(sk_conn *c)
 * {
 *     sk_timer *t = sk_conn_timer(c, tick, c); // freed with c
 *     if (!t || sk_timer_start(t, 1000, 1000) < 0)
 *         sk_conn_close(c);
 * }
 * @endcode
 */
#ifndef SOCKKIT_TIMER_H
#define SOCKKIT_TIMER_H

#include <sockkit/common.h>
#include <sockkit/server.h>

#include <stdbool.h>

/** A timer of a connection or of a server. Opaque. @since 1.1 */
typedef struct sk_timer sk_timer;

/**
 * A timer fired.
 * @param timer The timer (it may be stopped, started again or freed here).
 * @param arg   The pointer given when it was made.
 * @since 1.1
 */
typedef void (*sk_timer_fn)(sk_timer *timer, void *arg);

SK_BEGIN_DECLS

/**
 * Make a timer of a connection, not armed yet. Call it from the connection's
 * callbacks; the timer runs there too, and is freed with the connection.
 *
 * @code
 * // A greeting, then a line every 10 s for as long as the client stays.
 * static void tick(sk_timer *t, void *arg)
 * {
 *     (void)t;
 *     sk_conn_send(arg, "tick\n", 5);
 * }
 *
 * static void opened(sk_conn *c)
 * {
 *     sk_timer *t = sk_conn_timer(c, tick, c); // freed with the connection
 *     if (!t || sk_timer_start(t, 10000, 10000) < 0)
 *         sk_conn_close(c);
 *     else
 *         sk_conn_send(c, "hello\n", 6);
 * }
 * @endcode
 *
 * @param conn The connection (open: not after its @ref sk_close_fn has begun).
 * @param fn   Called each time it fires.
 * @param arg  Passed to @p fn.
 * @return The timer, or NULL: a NULL argument, a closing connection, or no memory.
 * @since 1.1
 */
SK_API sk_timer *sk_conn_timer(sk_conn *conn, sk_timer_fn fn, void *arg);

/**
 * Make a timer of a server, not armed yet. It fires during sk_server_run(), in
 * the thread that called it (see the file comment for each backend).
 * @param server The server.
 * @param fn     Called each time it fires.
 * @param arg    Passed to @p fn.
 * @return The timer, or NULL: a NULL argument or no memory.
 * @since 1.1
 */
SK_API sk_timer *sk_server_timer(sk_server *server, sk_timer_fn fn, void *arg);

/**
 * Arm a timer, or re-arm an armed one with new times (the old ones are
 * forgotten). Cannot fail for a valid timer of an open connection or of a
 * server.
 * @param timer    The timer.
 * @param after_ms Milliseconds until the first run (0: on the next turn of its loop).
 * @param every_ms Then every so many milliseconds, counted from the due time of
 *                 the first run (no drift); 0: once.
 * @return 0; -EINVAL for a NULL timer or a negative time; -EPIPE when the
 *         timer's connection is closing.
 * @since 1.1
 */
SK_API int sk_timer_start(sk_timer *timer, int after_ms, int every_ms);

/**
 * Disarm a timer; nothing happens if it is not armed.
 * @param timer The timer.
 * @return 0, or -EINVAL for NULL.
 * @since 1.1
 */
SK_API int sk_timer_stop(sk_timer *timer);

/**
 * Whether a timer is armed (will fire).
 * @param timer The timer.
 * @return true if armed; false if not, or for NULL.
 * @since 1.1
 */
SK_API bool sk_timer_armed(const sk_timer *timer);

/**
 * Stop a timer and free it, also from its own callback. NULL is ignored.
 * @param timer The timer; invalid afterwards.
 * @since 1.1
 */
SK_API void sk_timer_free(sk_timer *timer);

SK_END_DECLS

#endif /* SOCKKIT_TIMER_H */
