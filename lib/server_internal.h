/* SPDX-License-Identifier: MIT */
/* The server core, shared by server.c, conn.c and the backends. Not exported. */
#ifndef SOCKKIT_SERVER_INTERNAL_H
#define SOCKKIT_SERVER_INTERNAL_H

#include "internal.h"
#include "framer.h"

#include <sockkit/backend.h>
#include <sockkit/server.h>

#include <pthread.h>
#include <stdarg.h>
#include <signal.h>

#define SK__MAX_LISTEN 8       /* addresses per server */
#define SK__MAX_WORKERS 256
#define SK__SCRATCH (64 * 1024) /* read buffer of a reactor, thread or child */

/* What an epoll registration points at: every such object starts with this. */
enum sk__kind { SK__W_CONN = 1, SK__W_LISTENER, SK__W_STOP, SK__W_INBOX, SK__W_RELAY };
struct sk__watch {
    int kind;
};

/* ---- counters ---------------------------------------------------------- */

enum {
    SK__C_ACCEPTED,
    SK__C_REFUSED,
    SK__C_CLOSED,
    SK__C_BYTES_IN,
    SK__C_BYTES_OUT,
    SK__C_READS,
    SK__C_READ_EVENTS,
    SK__C_BUFFERED,
    SK__NCOUNTERS
};

/* One block per owner. A block with one writer (a reactor) is updated without
 * a locked instruction; a shared one (all pthread connections) atomically. */
struct sk__counters {
    bool shared;
    unsigned long long v[SK__NCOUNTERS];
    struct sk__counters *next; /* the server's list of blocks */
};

static inline void sk__count(struct sk__counters *c, int i, long long n)
{
    if (c->shared)
        __atomic_fetch_add(&c->v[i], (unsigned long long)n, __ATOMIC_RELAXED);
    else
        __atomic_store_n(&c->v[i], c->v[i] + (unsigned long long)n, __ATOMIC_RELAXED);
}

/* ---- owners: who runs a connection's callbacks -------------------------- */

struct sk__owner {
    /* A connection needs its owner's attention from outside the owner's own
     * event handling: output became pending, or a close was requested. */
    void (*notify)(struct sk__owner *owner, sk_conn *conn);
    struct sk__counters *ctr;
    int64_t now; /* the owner loop's clock, ms, refreshed after every wait */
};

/* ---- connections ------------------------------------------------------- */

enum sk__state { SK__OPEN, SK__CLOSING };

struct sk_conn {
    struct sk__watch w; /* SK__W_CONN */
    int fd;
    uint8_t state;      /* SK__OPEN, SK__CLOSING (on_close has run) */
    uint8_t pending;    /* a requested close reason not yet handled, or 0 */
    uint8_t reason;     /* the reason on_close received */
    bool dead_output;   /* output is discarded (reset, slow, error) */
    bool in_dirty;      /* queued on its owner's dirty list */
    uint32_t ep_events; /* epoll-lt: the interest set now registered */
    uint8_t ep_retries; /* epoll-lt: failed attempts to change it, in a row */
    sk_server *srv;
    struct sk__owner *owner;
    struct sk__framer lines; /* line framing: the start of an unfinished line */
    char *out;          /* output the socket has not taken yet */
    size_t out_off, out_len, out_cap;
    int64_t last_read;  /* for the idle timeout */
    int64_t deadline;   /* CLOSING: when to give up flushing */
    sk_conn *prev, *next;    /* owner's list */
    sk_conn *dirty_next;     /* owner's dirty list */
    sk_conn *rprev, *rnext;  /* server registry (open connections) */
    bool registered;
    char *name, *peer, *local; /* lazily made, under the registry lock */
    union {             /* the peer accept4() gave (AF_UNSPEC: ask getpeername), */
        struct sockaddr sa; /* which still names it after a reset */
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer_sa;
    void *data;
    pthread_mutex_t *lock; /* pthread backend: serialises output with other threads */
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
    bool nodelay;
    sk_open_fn on_open;
    sk_data_fn on_data;
    sk_close_fn on_close;
};

struct sk_server {
    struct sk__config cfg;
    const sk_backend *backend;
    void *data;
    char *addresses[SK__MAX_LISTEN];
    int naddr;
    int *listeners;   /* nsets sets of naddr descriptors: set k for worker k */
    int nlisteners;
    int nsets;
    char *unix_paths[SK__MAX_LISTEN]; /* socket files to remove when freed */
    int stop_fd;      /* eventfd, written by sk_server_stop, never read while running */
    int stopping;     /* atomic */
    int running;      /* atomic */
    int reserve_fd;   /* spare descriptor, given up to absorb EMFILE */
    pthread_mutex_t reg_lock;
    sk_conn *reg_head;
    int count;        /* open connections (atomic) */
    int *count_ptr;   /* where admission counts: &count, or a page shared by processes */
    struct sk__counters ctr; /* shared block: pthread, fork parent, custom backends */
    struct sk__counters *extra_ctr; /* blocks of reactors, under reg_lock */
    void *backend_state; /* the running backend's own data */
    /* Backend hooks beyond the public ops: NULL means the registry answers. */
    int (*count_hook)(const sk_server *s);
    int (*names_hook)(sk_server *s, sk_name_fn fn, void *arg);
    void (*rename_hook)(sk_conn *c);
    /* For backends of a program's own (sk_server_accept, sk_conn_drive). */
    struct sk__owner plain_owner;
    char *scratch;
};

/* ---- server.c ---------------------------------------------------------- */

/* Take a new connection's slot: false at max_conns. */
SK__HIDDEN bool sk__server_admit(sk_server *s);
/* The admission counter (a backend may move it to memory shared by processes). */
static inline int *sk__server_counter(const sk_server *s)
{
    return __atomic_load_n(&s->count_ptr, __ATOMIC_ACQUIRE);
}
static inline void sk__server_set_counter(sk_server *s, int *counter)
{
    __atomic_store_n(&s->count_ptr, counter, __ATOMIC_RELEASE);
}
/* Give a slot back. */
static inline void sk__server_release(sk_server *s)
{
    __atomic_fetch_sub(sk__server_counter(s), 1, __ATOMIC_ACQ_REL);
}
/* Accept one socket: the fd (non-blocking, CLOEXEC), 0 if none, < 0 on error;
 * its peer's address in *peer (if not NULL). Refused sockets (limit, EMFILE)
 * are closed here and counted. */
SK__HIDDEN int sk__server_accept_fd(sk_server *s, int lfd, struct sk__counters *ctr,
                                    sk_addr *peer);
SK__HIDDEN void sk__server_add_counters(sk_server *s, struct sk__counters *c);
SK__HIDDEN void sk__server_remove_counters(sk_server *s, struct sk__counters *c);
/* Queue bytes to every open registered connection, from the calling thread. */
/* printf into small (size bytes) if it fits, else into a malloc'd buffer:
 * *text says which (free it when it is not small). The length, or -EINVAL
 * (a bad format) or -ENOMEM. */
SK__HIDDEN int sk__vformat(char *small, size_t size, char **text, const char *fmt, va_list ap);
SK__HIDDEN int sk__server_broadcast_direct(sk_server *s, sk_conn *except, const void *data,
                                           size_t len);
SK__HIDDEN bool sk__stopping(const sk_server *s);

/* ---- conn.c: the connection engine ------------------------------------- */

/* A connection for an accepted socket, registered and counted; on_open not yet
 * called. lock (or NULL) guards its output against other threads; it is set
 * before the connection is published in the registry. */
SK__HIDDEN sk_conn *sk__conn_new(sk_server *s, int fd, struct sk__owner *owner,
                                 pthread_mutex_t *lock, const sk_addr *peer);
/* Call on_open (then the connection may already be closing). */
SK__HIDDEN void sk__conn_open(sk_conn *c);
/* Read and deliver: one read, or (drain) until EAGAIN; hup: the peer has closed. */
SK__HIDDEN void sk__conn_input(sk_conn *c, char *buf, size_t cap, bool drain, bool hup);
/* What one read of the socket returned (bytes, 0 at the end, or -errno), with
 * the bytes in buf (room for a NUL after them): count and deliver it. */
SK__HIDDEN void sk__conn_got(sk_conn *c, char *buf, ssize_t n);
/* Write pending output: 1 when none is left, 0 if some is, < 0 on error (close requested). */
SK__HIDDEN int sk__conn_flush(sk_conn *c);
/* Ask for a close; the first reason wins. Any thread (with c->lock held if it has one). */
SK__HIDDEN void sk__conn_request_close(sk_conn *c, sk_close_reason why);
/* Queue output; the core of sk_conn_send. Caller holds c->lock if it has one. */
SK__HIDDEN int sk__conn_queue(sk_conn *c, const void *data, size_t len, bool from_owner);
/* Owner only: handle a requested close, idle and drain timeouts, the server's
 * stop. Returns true when the connection is finished: the caller unlinks it
 * from its structures and calls sk__conn_free(). */
SK__HIDDEN bool sk__conn_settle(sk_conn *c);
/* Close the socket and free the connection. */
SK__HIDDEN void sk__conn_free(sk_conn *c);
/* Under the registry lock: the name, or the peer address made on first use. */
SK__HIDDEN const char *sk__conn_name_locked(sk_conn *c);
/* Milliseconds until the connection's next deadline, -1 for none. */
SK__HIDDEN int sk__conn_timeout(const sk_conn *c);
/* Open and no close requested: it still takes input. */
static inline bool sk__conn_reading(const sk_conn *c)
{
    return c->state == SK__OPEN && !__atomic_load_n(&c->pending, __ATOMIC_ACQUIRE);
}
static inline bool sk__conn_wants_write(const sk_conn *c)
{
    return c->out_len > 0 && !c->dead_output;
}

/* ---- the built-in backends --------------------------------------------- */

SK__HIDDEN extern const sk_backend sk__backend_epoll_et;
SK__HIDDEN extern const sk_backend sk__backend_epoll_lt;
SK__HIDDEN extern const sk_backend sk__backend_pthread;
SK__HIDDEN extern const sk_backend sk__backend_fork;

/* single.c: serve one connection in the calling thread until it finishes.
 * extra_fd (or -1) is polled too and on_extra called when it is readable.
 * park (or NULL) lets the loop block in recv() between messages (see
 * single.c): the fork backend's children, one connection per process. */
struct sk__park {
    int *parked;      /* shared: set while (about to be) blocked in recv() */
    unsigned *posted; /* shared: bumped by a waker before it looks at *parked */
};
#define SK__PARK_SIGNAL SIGURG /* ignored by default; never sent by the kernel
                                  without F_SETOWN, which the library never sets */
/* Take SK__PARK_SIGNAL for this process (a fork child, before it parks). */
SK__HIDDEN int sk__park_install(void);
SK__HIDDEN void sk__serve_one(sk_conn *c, int extra_fd, void (*on_extra)(sk_conn *c, void *arg),
                              void *arg, struct sk__park *park);

#endif /* SOCKKIT_SERVER_INTERNAL_H */
