/* SPDX-License-Identifier: MIT */
/* Post boxes: work other threads hand a loop (sk_server_post), bounded and in
 * order. Each loop that owns connections has one; the server has one for its
 * home loop. Not exported. */
#ifndef SOCKKIT_POST_H
#define SOCKKIT_POST_H

#include "internal.h"

#include <sockkit/loop.h>

#include <pthread.h>
#include <stdint.h>

struct sk__post {
    sk_post_fn fn;
    void *arg;
    uint64_t id; /* the connection it is for, or 0: the server */
};

struct sk__posts {
    int kind;            /* SK__W_POSTS: what an epoll registration of efd points at */
    int efd;             /* eventfd: readable while posts wait (written on empty -> not) */
    pthread_mutex_t lock;
    struct sk__post *ring; /* cap entries, grown by doubling up to SK_POST_MAX */
    size_t cap, head, n;
    size_t waiting;      /* n, readable without the lock (atomic) */
    /* Called after efd is written, if set: a loop that may sleep elsewhere
     * than on efd (a parked fork child) is woken by it too. */
    void (*wake)(void *arg);
    void *wake_arg;
};

/* Open a box; efd: an eventfd of the loop's to share, or -1 for one of its own. */
SK__HIDDEN int sk__posts_open(struct sk__posts *b, int efd);
/* Close it: what it still holds is run first (on_gone semantics: connections
 * are looked up, so the closed ones get NULL). */
SK__HIDDEN void sk__posts_close(struct sk__posts *b, sk_server *s, bool own_efd);
/* Queue a post: 0, -EAGAIN (full), -ENOMEM. */
SK__HIDDEN int sk__posts_put(struct sk__posts *b, const struct sk__post *p);
/* Run what the box holds now (not what is posted meanwhile), in order, each
 * with its connection looked up in s's registry (NULL if it is gone). */
SK__HIDDEN void sk__posts_run(struct sk__posts *b, sk_server *s);
static inline bool sk__posts_waiting(struct sk__posts *b)
{
    return __atomic_load_n(&b->waiting, __ATOMIC_ACQUIRE) != 0;
}

#endif /* SOCKKIT_POST_H */
