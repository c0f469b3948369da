/* SPDX-License-Identifier: MIT */
/* A reactor's inbox (inbox.c): broadcasts from other threads wait here for
 * the reactor, bounded in memory; an eventfd tells the reactor. A message is
 * reference-counted, posted to several inboxes at once. Not exported. */
#ifndef SOCKKIT_BACKEND_INBOX_H
#define SOCKKIT_BACKEND_INBOX_H

#include "../server_internal.h"

#define SK__INBOX_MAX (4 << 20) /* memory of the messages waiting in one inbox */
/* A connection's broadcast may take an inbox this far past SK__INBOX_MAX: its
 * reactor then stops reading it until the inbox is back under half (it is
 * slowed, not cut, by a reactor that is only late). Past it, it is cut. */
#define SK__INBOX_HARD (SK__INBOX_MAX + SK__INBOX_MAX / 2)

struct sk__msg {
    int refs;
    sk_conn *except; /* to every connection but this one */
    size_t len;
    char data[];
};

struct sk__inbox {
    struct sk__watch w; /* SK__W_INBOX */
    int efd;            /* readable while messages wait; -1: not open */
    pthread_mutex_t lock;
    struct sk__msg **items;
    size_t n, cap;
    size_t bytes;       /* memory the waiting messages hold (atomic; changed under lock) */
};

/* A message of len bytes with one reference (the caller's), or NULL. */
SK__HIDDEN struct sk__msg *sk__msg_new(sk_conn *except, const void *data, size_t len);
SK__HIDDEN void sk__msg_release(struct sk__msg *m);

/* Open (eventfd, lock) or close an inbox; closing drops what waits. */
SK__HIDDEN int sk__inbox_open(struct sk__inbox *in);
SK__HIDDEN void sk__inbox_close(struct sk__inbox *in);
/* Queue a message (taking a reference): 0, -ENOBUFS (limit bytes are
 * waiting already; one message alone may be larger), -ENOMEM. Any thread. */
SK__HIDDEN int sk__inbox_post(struct sk__inbox *in, struct sk__msg *m, size_t limit);
/* The bytes waiting now (any thread; a glance, not a promise). */
static inline size_t sk__inbox_bytes(struct sk__inbox *in)
{
    return __atomic_load_n(&in->bytes, __ATOMIC_RELAXED);
}
/* The reactor: take everything waiting, oldest first (*n of them); release
 * each, then free the array. */
SK__HIDDEN struct sk__msg **sk__inbox_take(struct sk__inbox *in, size_t *n);

#endif /* SOCKKIT_BACKEND_INBOX_H */
