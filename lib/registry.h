/* SPDX-License-Identifier: MIT */
/* The registry of a server's open connections: the list, their names, the
 * admission count and the counter blocks. Not exported. Its lock is never
 * held across a system call that can block, and it is taken before a
 * connection's output lock, never after. */
#ifndef SOCKKIT_REGISTRY_H
#define SOCKKIT_REGISTRY_H

#include "internal.h"

#include <sockkit/server.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

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
    struct sk__counters *next; /* the registry's list of blocks */
};

static inline void sk__count(struct sk__counters *c, int i, long long n)
{
    if (c->shared)
        __atomic_fetch_add(&c->v[i], (unsigned long long)n, __ATOMIC_RELAXED);
    else
        __atomic_store_n(&c->v[i], c->v[i] + (unsigned long long)n, __ATOMIC_RELAXED);
}

/* ---- the registry ------------------------------------------------------ */

/* Where the connections live in other processes (fork), their count and
 * names are asked of those processes. */
struct sk__remote {
    int (*count)(void *arg);
    int (*names)(void *arg, sk_name_fn fn, void *fn_arg);
    void (*renamed)(void *arg, sk_conn *c); /* c's name changed */
};

struct sk__registry {
    pthread_mutex_t lock;
    sk_conn *head;           /* registered (open) connections */
    int count;               /* admitted connections (atomic) */
    int *count_ptr;          /* where admission counts: &count, or memory shared by processes */
    int closing;             /* atomic: every connection is to close (a stop) */
    struct sk__counters ctr; /* shared block: pthread, fork parent, a program's backend */
    struct sk__counters *extra; /* blocks of reactors */
    const struct sk__remote *remote; /* NULL: this registry answers */
    void *remote_arg;
    /* Ids (sk_conn_id): slot + 1 in the low 32 bits, the slot's generation in
     * the high ones, so an id is not used again while the server exists. */
    struct sk__slot *slots;
    uint32_t nslots, free_slot; /* free_slot: the first free one + 1, or 0 */
};

struct sk__slot {
    sk_conn *conn;     /* NULL: free */
    uint32_t gen;      /* bumped each time it is freed */
    uint32_t next_free; /* free: the next free one + 1, or 0 */
};

SK__HIDDEN int sk__registry_init(struct sk__registry *r);
SK__HIDDEN void sk__registry_destroy(struct sk__registry *r);

/* Admission: take a slot (false at max), give one back. */
SK__HIDDEN bool sk__registry_admit(struct sk__registry *r, int max);
SK__HIDDEN void sk__registry_release(struct sk__registry *r);
/* Count admissions elsewhere (memory shared by processes), or again in
 * r->count (counter NULL). */
SK__HIDDEN void sk__registry_set_counter(struct sk__registry *r, int *counter);
SK__HIDDEN int sk__registry_count(struct sk__registry *r);

/* Publish a connection (named, counted, broadcast to, given its id): 0, or
 * -ENOMEM; take it out again (idempotent; an accepted one's admission slot
 * is given back). */
SK__HIDDEN int sk__registry_add(struct sk__registry *r, sk_conn *c);
SK__HIDDEN void sk__registry_remove(struct sk__registry *r, sk_conn *c);
/* Call fn for every registered connection, with the registry lock held: fn
 * must not block, and may take the connection's output lock. */
/* The open connection with this id, or NULL. Caller holds r->lock. */
SK__HIDDEN sk_conn *sk__registry_find_locked(struct sk__registry *r, uint64_t id);
SK__HIDDEN void sk__registry_each(struct sk__registry *r, void (*fn)(sk_conn *c, void *arg),
                                  void *arg);

/* Names: the one the program set, else the peer's address, made on first
 * use. The texts live until sk__registry_forget(). */
SK__HIDDEN const char *sk__registry_name(struct sk__registry *r, sk_conn *c);
SK__HIDDEN const char *sk__registry_address(struct sk__registry *r, sk_conn *c, bool peer);
SK__HIDDEN int sk__registry_set_name(struct sk__registry *r, sk_conn *c, const char *name);
SK__HIDDEN int sk__registry_names(struct sk__registry *r, sk_name_fn fn, void *arg);
SK__HIDDEN void sk__registry_forget(sk_conn *c);
/* The length of a peer address a connection keeps (IPv4, IPv6), else 0: the
 * others are asked of the socket. */
static inline socklen_t sk__kept_len(int family)
{
    return family == AF_INET ? sizeof(struct sockaddr_in)
         : family == AF_INET6 ? sizeof(struct sockaddr_in6) : 0;
}

/* Where the connections run in other processes, or here again (NULL). */
SK__HIDDEN void sk__registry_set_remote(struct sk__registry *r, const struct sk__remote *remote,
                                        void *arg);

/* Counter blocks of the loops; a departing block's counts go to the shared one. */
SK__HIDDEN void sk__registry_add_counters(struct sk__registry *r, struct sk__counters *c);
SK__HIDDEN void sk__registry_remove_counters(struct sk__registry *r, struct sk__counters *c);
SK__HIDDEN void sk__registry_totals(struct sk__registry *r, unsigned long long v[SK__NCOUNTERS]);

/* The second step of a stop: every connection closes (SK_CLOSE_STOP). */
static inline void sk__registry_close_all(struct sk__registry *r, bool on)
{
    __atomic_store_n(&r->closing, on ? 1 : 0, __ATOMIC_RELEASE);
}
static inline bool sk__registry_closing(const struct sk__registry *r)
{
    return __atomic_load_n(&r->closing, __ATOMIC_ACQUIRE) != 0;
}

#endif /* SOCKKIT_REGISTRY_H */
