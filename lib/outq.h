/* SPDX-License-Identifier: MIT */
/* A connection's output queue (outq.c). Not exported. */
#ifndef SOCKKIT_OUTQ_H
#define SOCKKIT_OUTQ_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* One block of queued output. Bytes once queued never move or change until
 * they are sent: a send in flight (a completion-based backend) may point into
 * them. Only the free room after len is written to, by later appends. */
struct sk__chunk {
    struct sk__chunk *next;
    size_t sent; /* bytes from the start already taken by the transport */
    size_t len;  /* bytes written */
    size_t cap;  /* room for bytes after this header */
    char data[];
};

/* Chunks of the largest size, kept for reuse by one thread's queues (a
 * loop that queues every send: io_uring), so that a large reply does not
 * cost an allocation, page faults and a trim each time. Bounded. */
#define SK__CHUNK_CACHE 16
struct sk__chunk_cache {
    struct sk__chunk *free;
    unsigned n;
};
/* Free what a cache keeps. */
SK__HIDDEN void sk__chunk_cache_clear(struct sk__chunk_cache *cache);

/* A FIFO of chunks; empty, it holds no memory. */
struct sk__outq {
    struct sk__chunk *head, *tail;
    size_t bytes; /* queued and not yet sent */
    /* A send in flight points into the queue (sk__outq_pin): chunks cleared
     * meanwhile are kept here, out of the queue, until it completes. */
    struct sk__chunk *dropped;
    bool pinned;
    /* Where its largest chunks come from and go back to, or NULL: the
     * allocator. Only the thread that owns the cache touches the queue. */
    struct sk__chunk_cache *cache;
};

/* Append len bytes (into the tail's free room, then a new chunk): 0, or
 * -ENOMEM with nothing appended. */
SK__HIDDEN int sk__outq_push(struct sk__outq *q, const void *data, size_t len);
/* Describe the unsent bytes, oldest first, in at most max iovecs: how many. */
SK__HIDDEN int sk__outq_iov(const struct sk__outq *q, struct iovec *iov, int max);
/* n bytes (at most q->bytes) were sent: free the chunks they finish (a chunk
 * lives until all its bytes are sent; the queue emptied holds no memory). */
SK__HIDDEN void sk__outq_consume(struct sk__outq *q, size_t n);
/* Free everything queued (while pinned: keep it aside, out of the queue). */
SK__HIDDEN void sk__outq_clear(struct sk__outq *q);
/* A send that points into the queue is in flight: until sk__outq_unpin(),
 * a clear may not free its bytes. */
static inline void sk__outq_pin(struct sk__outq *q)
{
    q->pinned = true;
}
/* That send completed: false if the queue was cleared meanwhile (its bytes
 * are freed now and must not be consumed), true if they are still queued. */
SK__HIDDEN bool sk__outq_unpin(struct sk__outq *q);

#endif /* SOCKKIT_OUTQ_H */
