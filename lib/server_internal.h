/* SPDX-License-Identifier: MIT */
/* The server core, shared by server.c, conn.c and the backends. Not exported. */
#ifndef SOCKKIT_SERVER_INTERNAL_H
#define SOCKKIT_SERVER_INTERNAL_H

#include "internal.h"
#include "framer.h"
#include "listener.h"
#include "outq.h"
#include "post.h"
#include "registry.h"
#include "timer.h"

#include <sockkit/backend.h>
#include <sockkit/server.h>
#include <sockkit/timer.h>
#include <sockkit/tls.h>

#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#define SK__MAX_WORKERS 256
#define SK__SCRATCH (64 * 1024) /* read buffer of a reactor, thread or child */

/* What an epoll registration points at: every such object starts with this. */
enum sk__kind {
    SK__W_CONN = 1, SK__W_LISTENER, SK__W_STOP, SK__W_INBOX, SK__W_RELAY, SK__W_POSTS, SK__W_DRAIN
};
struct sk__watch {
    int kind;
};

/* ---- owners: who runs a connection's callbacks -------------------------- */

struct sk__dial;

struct sk__owner {
    /* A connection needs its owner's attention from outside the owner's own
     * event handling: output became pending, a close was requested, or its
     * timer fired (idle or drain: settle it). */
    void (*notify)(struct sk__owner *owner, sk_conn *conn);
    struct sk__counters *ctr;
    int64_t now; /* the owner loop's clock, ms, refreshed after every wait */
    char *scratch; /* SK__SCRATCH + 1 bytes to read into, or NULL (its loop has its own) */
    /* The loop's timers, run with now: each connection's timer is on it. NULL:
     * a program's own loop, which asks sk_conn_deadline() instead. */
    struct sk__timers *timers;
    /* Where other threads may queue output into its connections directly
     * (pthread, a program's own backend): the lock around every change of
     * their output. NULL: only the owner's thread touches it. */
    pthread_mutex_t *lock;
    /* Where posts to its connections go (sk_server_post), or NULL: it takes none. */
    struct sk__posts *posts;
    /* Open an outbound connection from this loop (see outbound.c): 0, and
     * *conn set when it lives on this loop (NULL when it went to a loop of
     * its own: a thread or child); or -ENOMEM. NULL: the loop opens none. */
    int (*dial)(struct sk__owner *owner, struct sk__dial *d, sk_conn **conn);
    /* An outbound connection's socket exists now (its name resolved): watch it. */
    void (*watch)(struct sk__owner *owner, sk_conn *c);
};

/* ---- outbound.c: connections the server opens -------------------------- */

struct sk__dial {
    sk_addr addr;     /* numeric TCP or unix: where to connect */
    char *address;    /* a name (resolved on a helper thread), malloc'd; else NULL */
    int timeout_ms;
    void *data;
    sk_tls *tls;      /* a TLS client: a reference; else NULL */
    char *host;       /* the name its certificate is checked against, malloc'd, or NULL */
};

/* The loop running in this thread, while a library loop runs here. */
struct sk__loop {
    sk_server *s;
    struct sk__owner *owner;
};
SK__HIDDEN extern __thread struct sk__loop sk__here;
static inline void sk__loop_enter(sk_server *s, struct sk__owner *owner)
{
    sk__here = (struct sk__loop){.s = s, .owner = owner};
}

/* Make an outbound connection on owner's loop (size: as sk__conn_new). Its
 * connect has begun (or its failure is requested: it closes with
 * SK_CLOSE_CONNECT when settled); the caller lists it and, if c->fd >= 0,
 * watches c->fd for writing. NULL without memory. d->address is taken over. */
SK__HIDDEN sk_conn *sk__conn_dial(sk_server *s, size_t size, struct sk__owner *owner,
                                  struct sk__dial *d);
/* A connecting connection's socket is writable or failed: on_open, or the failure. */
SK__HIDDEN void sk__conn_connected(sk_conn *c);
/* Free a dial request that was never made into a connection. */
SK__HIDDEN void sk__dial_free(struct sk__dial *d);
/* No loop could take it: the connection fails at once, in the calling
 * thread, with err (its on_close runs there). */
SK__HIDDEN void sk__dial_refuse(sk_server *s, struct sk__dial *d, int err);

/* ---- connections ------------------------------------------------------- */

enum sk__state { SK__OPEN, SK__CLOSING };

struct sk_conn {
    struct sk__watch w; /* SK__W_CONN */
    int fd;
    uint8_t state;      /* SK__OPEN, SK__CLOSING (on_close has run) */
    uint8_t pending;    /* a requested close reason not yet handled, or 0 */
    uint8_t reason;     /* the reason on_close received */
    bool dead_output;   /* output is discarded (reset, slow, error) */
    bool paused;        /* sk_conn_pause(): no reads until sk_conn_resume(); owner only */
    bool resumed;       /* resumed, and its loop has not looked yet: input may wait unannounced */
    bool over_high;     /* unsent output reached high, not yet back to low; under the lock */
    bool drain_due;     /* it is back to low: on_drain is owed; owner only */
    bool shut_asked;    /* sk_conn_shutdown(): no more output; FIN once flushed; under the lock */
    bool shut_done;     /* that FIN is sent; owner only */
    bool eof;           /* the peer's FIN reached on_eof: no more input, still open; owner only */
    bool outbound;      /* opened by sk_server_connect(): no admission slot */
    bool throttled;     /* epoll: its broadcasts filled another reactor's inbox: not
                           read until that drains (as paused, by the library); owner only */
    bool connecting;    /* outbound, not yet connected (fd -1 while its name resolves) */
    bool handshaking;   /* its transport's handshake (TLS) is not complete: on_open has not
                           run, its output waits; owner only */
    int error;          /* why its connect failed (SK_CLOSE_CONNECT), else 0 */
    uint64_t id;        /* sk_conn_id(): its registry slot and generation */
    const struct sk__config *cfg; /* its server's: callbacks, limits, framing */
    struct sk__registry *reg;     /* its server's: where it is listed and named */
    sk_server *srv;               /* for sk_conn_server() only */
    struct sk__owner *owner;
    struct sk__framer lines; /* line framing: the start of an unfinished line */
    struct sk__outq out;     /* output the transport has not taken yet */
    const struct sk__transport *tp; /* how its bytes move (transport.h) */
    void *tp_state;          /* the transport's own, or NULL */
    size_t high, low;   /* output watermarks (sk_conn_set_watermarks) */
    int64_t last_read;  /* for the idle timeout */
    int64_t deadline;   /* CLOSING: when to give up flushing */
    /* On owner->timers: open, at the idle timeout counted from a read (not
     * moved by each read: when it fires it looks at last_read); closing, at
     * the deadline. */
    struct sk__timer timer;
    sk_timer *utimers;  /* the program's timers of it (sk_conn_timer), freed with it */
    /* A program's own loop (owner->timers NULL): the heap of those timers,
     * made with the first, run by sk_conn_drive(). Else NULL. */
    struct sk__timers *own_timers;
    sk_conn *rprev, *rnext;  /* server registry (open connections) */
    bool registered;
    char *name, *peer, *local; /* lazily made, under the registry lock */
    union {             /* the peer accept4() gave (AF_UNSPEC: ask getpeername), */
        struct sockaddr sa; /* which still names it after a reset */
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer_sa;
    void *data;
};

/* ---- the server -------------------------------------------------------- */

struct sk__config {
    sk_reuse reuse;
    int workers;
    int max_conns;
    int idle_ms;
    sk_framing framing;
    size_t max_line;
    size_t max_output;
    int drain_ms;
    int grace_ms; /* a graceful drain's limit (sk_server_drain); 0: none */
    bool nodelay;
    size_t high, low; /* each new connection's output watermarks */
    sk_open_fn on_open;
    sk_data_fn on_data;
    sk_close_fn on_close;
    sk_conn_fn on_drain;
    sk_conn_fn on_eof; /* set: a peer's FIN half-closes instead of closing */
};

struct sk_server {
    struct sk__config cfg;
    const struct sk__backend *backend;
    void *data;
    struct sk__listeners lis;
    struct sk__registry reg;
    int stop_fd;      /* eventfd, written by sk_server_stop, never read while running */
    int stopping;     /* atomic: stop accepting; the run ends when no connection is left */
    int drain_fd;     /* eventfd, written by sk_server_drain, never read while running */
    int64_t drain_at; /* atomic: 0, or a drain's deadline (ms; INT64_MAX: none) */
    struct sk__handover *handover; /* sk_server_set_handover(), or NULL */
    int running;      /* atomic */
    pthread_mutex_t state_lock; /* publishes backend_state to other threads */
    void *backend_state; /* the running backend's own data */
    /* For backends of a program's own (sk_server_accept, sk_conn_drive). */
    struct sk__owner plain_owner;
    pthread_mutex_t plain_lock; /* their connections' output, against other threads' broadcasts */
    /* The program's server timers (sk_server_timer): touched only by the
     * thread of sk_server_run(), whose loop runs them while not stopping. */
    struct sk__timers timers;
    sk_timer *utimers;
    /* Posts to the server (id 0): run by its home loop (where its timers
     * run) during a run; what is left, at the end of the run or by sk_server_free(). */
    struct sk__posts posts;
    struct sk__posts *home_posts; /* where they go: &posts, or a fork child's loop's */
    struct sk__link *link; /* for helper threads that outlive a connection, or NULL */
    sk_tls *tls; /* sk_server_set_tls(): accepted connections speak TLS; a reference */
};

/* A server as helper threads (outbound.c) hold it: s is NULL once it is freed. */
struct sk__link {
    pthread_mutex_t lock;
    sk_server *s;
    int refs;
};
SK__HIDDEN void sk__link_drop(struct sk__link *l);

/* ---- server.c ---------------------------------------------------------- */

/* The first step of a stop: accept no more; a run ends once no connection is
 * left. (sk_server_stop() also takes the second: sk__registry_close_all().) */
static inline bool sk__stopping(const sk_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) != 0;
}

/* Both steps of a stop, as flags: a loop that learnt of the stop from the
 * shared stop descriptor (a fork child) records it with this alone. */
static inline void sk__server_note_stop(sk_server *s)
{
    sk__registry_close_all(&s->reg, true);
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
}

/* Both steps of a stop, and wake every loop: sk_server_stop(), also for a
 * backend whose loop failed. Async-signal-safe: atomic stores and a write(). */
static inline void sk__server_stop(sk_server *s)
{
    int saved = errno;
    sk__server_note_stop(s);
    uint64_t one = 1;
    ssize_t n = write(s->stop_fd, &one, sizeof(one));
    (void)n;
    errno = saved;
}

/* A graceful drain (sk_server_drain): accept no more, and let the
 * connections end by themselves until the grace time is over; then a stop.
 * The first drain sets the deadline; a loop that learns of a drain from the
 * shared drain descriptor (a fork parent, of a child's) sets it from its own
 * clock. Async-signal-safe: atomics, clock_gettime() and a write(). */
static inline void sk__server_note_drain(sk_server *s)
{
    int64_t none = 0;
    int64_t at = s->cfg.grace_ms ? sk__now_ms() + s->cfg.grace_ms : INT64_MAX;
    __atomic_compare_exchange_n(&s->drain_at, &none, at, false, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
}

static inline void sk__server_drain(sk_server *s)
{
    int saved = errno;
    uint64_t one = 1;
    ssize_t n = write(s->drain_fd, &one, sizeof(one)); /* first: seen draining, it is told */
    (void)n;
    sk__server_note_drain(s);
    errno = saved;
}

/* Milliseconds a loop may wait before a drain's deadline: -1 when there is
 * none. A deadline passed turns the drain into a stop (for every loop). */
static inline int sk__drain_wait(sk_server *s, int64_t now)
{
    int64_t at = __atomic_load_n(&s->drain_at, __ATOMIC_ACQUIRE);
    if (at == 0 || at == INT64_MAX || sk__stopping(s))
        return -1;
    if (now >= at) {
        sk__server_stop(s);
        return -1;
    }
    return at - now > INT32_MAX ? INT32_MAX : (int)(at - now);
}

/* The sooner of two poll timeouts (-1: none). */
static inline int sk__sooner(int a, int b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* ---- user_timer.c: the public timers ------------------------------------ */

/* Disarm a connection's timers (it is closing): none fires again. */
SK__HIDDEN void sk__conn_timers_stop(sk_conn *c);
/* Free a connection's timers (and its own heap, if it has one). */
SK__HIDDEN void sk__conn_timers_free(sk_conn *c);
/* Disarm the server's timers (its run is over). */
SK__HIDDEN void sk__server_timers_stop(sk_server *s);
/* Free the server's timers and their heap. */
SK__HIDDEN void sk__server_timers_free(sk_server *s);
/* The server's timers while a run lasts, as its loops ask for them: NULL once
 * a stop has begun, so no timer keeps a stopping server's loop busy. */
static inline struct sk__timers *sk__server_timers(sk_server *s)
{
    return sk__stopping(s) ? NULL : &s->timers;
}

/* ---- listener.c: accepting --------------------------------------------- */

/* Accept one socket: the fd (non-blocking, CLOEXEC), 0 if none, < 0 on error;
 * its peer's address in *peer (if not NULL). Refused sockets (max_conns,
 * EMFILE) are closed here and counted in ctr. */
SK__HIDDEN int sk__accept_fd(sk_server *s, int lfd, struct sk__counters *ctr, sk_addr *peer);

/* ---- conn.c: the connection engine ------------------------------------- */

/* A connection for an accepted socket, registered and counted; on_open not yet
 * called. size: of the owner's struct that begins with the sk_conn (zeroed),
 * sizeof(sk_conn) at least. */
SK__HIDDEN sk_conn *sk__conn_new(sk_server *s, size_t size, int fd, struct sk__owner *owner,
                                 const sk_addr *peer);
/* An outbound connection, registered (no admission slot), connecting, with
 * no socket yet (fd -1), its timer at the connect's deadline. */
SK__HIDDEN sk_conn *sk__conn_new_outbound(sk_server *s, size_t size, struct sk__owner *owner,
                                          const sk_addr *peer, int timeout_ms);
/* The output lock of the connection's owner, if it has one. */
static inline void sk__conn_lock(const sk_conn *c)
{
    if (c->owner->lock)
        pthread_mutex_lock(c->owner->lock);
}
static inline void sk__conn_unlock(const sk_conn *c)
{
    if (c->owner->lock)
        pthread_mutex_unlock(c->owner->lock);
}
/* printf into small (size bytes) if it fits, else into a malloc'd buffer:
 * *text says which (free it when it is not small). The length, or -EINVAL
 * (a bad format) or -ENOMEM. */
SK__HIDDEN int sk__vformat(char *small, size_t size, char **text, const char *fmt, va_list ap);
/* Queue bytes to every open registered connection but except, from the
 * calling thread. */
SK__HIDDEN int sk__conn_broadcast_direct(struct sk__registry *reg, sk_conn *except,
                                         const void *data, size_t len);
/* Call on_open (then the connection may already be closing). */
SK__HIDDEN void sk__conn_open(sk_conn *c);
/* Read and deliver until the socket is empty, at most reads times; hup: the
 * peer has closed (read on to its end). True when it stopped at that budget
 * with the connection still reading: more may be waiting. */
SK__HIDDEN bool sk__conn_input(sk_conn *c, char *buf, size_t cap, int reads, bool hup);
/* What one read of the socket returned (bytes, 0 at the end, or -errno), with
 * the bytes in buf (room for a NUL after them): count and deliver it. */
SK__HIDDEN void sk__conn_got(sk_conn *c, char *buf, ssize_t n);
/* Write pending output: 1 when none is left, 0 if some is, < 0 on error (close
 * requested). Caller holds its owner's lock, if any. */
SK__HIDDEN int sk__conn_flush(sk_conn *c);
/* n bytes of the queue's head were sent (n <= its bytes): count them and
 * free what they finish; a connection back under its low watermark owes
 * on_drain. Caller holds its owner's lock, if any. */
SK__HIDDEN void sk__conn_sent(sk_conn *c, size_t n);
/* Send the FIN of sk_conn_shutdown() (its output is all written). Owner, under its lock. */
SK__HIDDEN void sk__conn_shut_write(sk_conn *c);
/* Ask for a close; the first reason wins. Any thread; takes its owner's lock (if it has
 * one), so the caller must not hold it. */
SK__HIDDEN void sk__conn_request_close(sk_conn *c, sk_close_reason why);
/* Queue output; the core of sk_conn_send. Caller holds its owner's lock, if any. */
SK__HIDDEN int sk__conn_queue(sk_conn *c, const void *data, size_t len, bool from_owner);
/* Owner only: handle a requested close, idle and drain timeouts, the server's
 * stop. Returns true when the connection is finished: the caller unlinks it
 * from its structures and calls sk__conn_free(). */
SK__HIDDEN bool sk__conn_settle(sk_conn *c);
/* Close the socket and free the connection. */
SK__HIDDEN void sk__conn_free(sk_conn *c);
/* Milliseconds until the connection's next deadline, -1 for none: for a
 * program's own loop (sk_conn_deadline); the library's loops ask their heap. */
SK__HIDDEN int sk__conn_timeout(const sk_conn *c);
/* Open and no close requested: it still takes input. */
static inline bool sk__conn_reading(const sk_conn *c)
{
    return c->state == SK__OPEN && !__atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
}
/* Reading and not paused: its loop reads it now. */
static inline bool sk__conn_takes_input(const sk_conn *c)
{
    return sk__conn_reading(c) && !c->paused && !c->eof && !c->connecting && !c->throttled;
}
/* Bytes queued for output and not yet sent. Caller holds its owner's lock, if any. */
static inline size_t sk__conn_queued(const sk_conn *c)
{
    return c->out.bytes;
}
/* sk__conn_wants_write(): in transport.h */

/* ---- the built-in backends --------------------------------------------- */

/* What the library knows of a backend beyond its public table. */
enum {
    /* Each worker serves a listener set of its own: with workers > 1 and
     * SK_REUSE_PORT, one SO_REUSEPORT set per worker is bound for it. */
    SK__CAP_LISTENER_SETS = 1 << 0,
    /* Its loops run outbound connections and posts (loop.h): the built-in ones. */
    SK__CAP_LOOP = 1 << 1,
    /* It drains gracefully: its loops watch the drain descriptor, stop
     * accepting, and end when their connections have (sk_server_drain). */
    SK__CAP_DRAIN = 1 << 2,
};

/* A backend as the library runs it: its operations (a program's table copied
 * as far as it was registered, members it lacks zero) and its capabilities
 * (none for a program's own). */
struct sk__backend {
    sk_backend ops;
    unsigned caps;
    /* Whether it can run on this system (a built-in that needs a kernel
     * feature): 0, or the error sk_server_bind() returns. NULL: always. */
    int (*usable)(void);
};

SK__HIDDEN extern const struct sk__backend sk__backend_epoll_et;
SK__HIDDEN extern const struct sk__backend sk__backend_epoll_lt;
SK__HIDDEN extern const struct sk__backend sk__backend_pthread;
SK__HIDDEN extern const struct sk__backend sk__backend_fork;
#ifdef SK_HAVE_URING
SK__HIDDEN extern const struct sk__backend sk__backend_uring;
#endif

/* The backend a server runs unless told otherwise: epoll-et. */
SK__HIDDEN const struct sk__backend *sk__backend_default(void);
/* A backend by name; NULL if there is none. */
SK__HIDDEN const struct sk__backend *sk__backend_ops(const char *name);

/* single.c: the small loop of the pthread backend's threads and the fork
 * backend's children. It serves its connections (the one it was made for,
 * and the outbound ones their callbacks open) with poll() until none is
 * left; its timers, posts and outbound connections are its own.
 * park (or NULL) lets it block in recv() between messages while it serves
 * one accepted connection alone (see single.c): fork's children. */
struct sk__park {
    int *parked;      /* shared: set while (about to be) blocked in recv() */
    unsigned *posted; /* shared: bumped by a waker before it looks at *parked */
};
#define SK__PARK_SIGNAL SIGURG /* ignored by default; never sent by the kernel
                                  without F_SETOWN, which the library never sets */
/* Take SK__PARK_SIGNAL for this process (a fork child, before it parks). */
SK__HIDDEN int sk__park_install(void);
/* In a program's process (pthread): take it once, unless the program has a
 * handler of its own (-EBUSY: then nothing parks). */
SK__HIDDEN int sk__park_install_shared(void);
/* Let it reach the calling thread (a thread that parks). */
SK__HIDDEN int sk__park_unblock(void);

struct sk__single {
    struct sk__owner owner; /* first: the owner pointer is the loop */
    struct sk__timers timers;
    struct sk__posts posts;
    bool posts_open;
    sk_server *s;
    sk_conn **conns;        /* served now, in the order they came */
    int n, cap;
    int extra_fd;           /* -1, or polled too: on_extra is called when it is readable */
    void (*on_extra)(struct sk__single *l, void *arg);
    void *arg;
    struct sk__park *park;
    pthread_t thread;       /* the one that runs it (for a parked loop's wake-up) */
};
/* Make a loop: its owner's notify, counters and lock are the caller's to set. */
SK__HIDDEN int sk__single_init(struct sk__single *l, sk_server *s);
SK__HIDDEN void sk__single_destroy(struct sk__single *l);
/* Serve c there (0, or -ENOMEM: then c is the caller's). */
SK__HIDDEN int sk__single_add(struct sk__single *l, sk_conn *c);
/* Run until no connection is left: on_open for the accepted ones first. */
SK__HIDDEN void sk__single_run(struct sk__single *l);
/* Another thread changed what the loop must look at: a parked loop is woken. */
SK__HIDDEN void sk__single_wake(struct sk__single *l);

#endif /* SOCKKIT_SERVER_INTERNAL_H */
