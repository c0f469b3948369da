/* SPDX-License-Identifier: MIT */
/* A reactor's inbox: the one place where epoll's reactors cross threads, a
 * lock-protected queue bounded in bytes, never locked across a system call
 * that can block. */
#include "inbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct sk__msg *sk__msg_new(sk_conn *except, const void *data, size_t len)
{
    struct sk__msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return NULL;
    *m = (struct sk__msg){.refs = 1, .except = except, .len = len};
    memcpy(m->data, data, len);
    return m;
}

void sk__msg_release(struct sk__msg *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(m);
}

/* What a waiting message costs: itself, and its place in the inbox. */
static size_t cost(const struct sk__msg *m)
{
    return sizeof(*m) + m->len + sizeof(m);
}

int sk__inbox_open(struct sk__inbox *in)
{
    *in = (struct sk__inbox){.w.kind = SK__W_INBOX, .efd = -1};
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return -errno;
    int rc = -pthread_mutex_init(&in->lock, NULL);
    if (rc < 0) {
        close(efd);
        return rc;
    }
    in->efd = efd;
    return 0;
}

void sk__inbox_close(struct sk__inbox *in)
{
    if (in->efd < 0)
        return;
    for (size_t i = 0; i < in->n; i++)
        sk__msg_release(in->items[i]);
    free(in->items);
    close(in->efd);
    pthread_mutex_destroy(&in->lock);
    in->efd = -1;
}

int sk__inbox_post(struct sk__inbox *in, struct sk__msg *m, size_t limit)
{
    pthread_mutex_lock(&in->lock);
    if (in->n > 0 && in->bytes + cost(m) > limit) {
        pthread_mutex_unlock(&in->lock);
        return -ENOBUFS;
    }
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 16;
        struct sk__msg **items = realloc(in->items, cap * sizeof(*items));
        if (!items) {
            pthread_mutex_unlock(&in->lock);
            return -ENOMEM;
        }
        in->items = items;
        in->cap = cap;
    }
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    in->items[in->n++] = m;
    __atomic_store_n(&in->bytes, in->bytes + cost(m), __ATOMIC_RELAXED);
    bool first = in->n == 1;
    pthread_mutex_unlock(&in->lock);
    if (first) { /* a non-blocking eventfd write, outside the lock */
        uint64_t one = 1;
        ssize_t w = write(in->efd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

struct sk__msg **sk__inbox_take(struct sk__inbox *in, size_t *n)
{
    uint64_t v;
    ssize_t got = read(in->efd, &v, sizeof(v));
    (void)got;
    pthread_mutex_lock(&in->lock);
    struct sk__msg **items = in->items;
    *n = in->n;
    in->items = NULL;
    in->n = in->cap = 0;
    __atomic_store_n(&in->bytes, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&in->lock);
    return items;
}
