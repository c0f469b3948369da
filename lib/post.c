/* SPDX-License-Identifier: MIT */
/* Posted work: a ring per loop, under a mutex, with an eventfd that tells the
 * loop the ring is no longer empty. */
#include "post.h"
#include "server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FIRST_CAP 16
#define BATCH 32 /* posts taken out per lock */

int sk__posts_open(struct sk__posts *b, int efd)
{
    *b = (struct sk__posts){.kind = SK__W_POSTS, .efd = efd};
    if (efd < 0 && (b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return -errno;
    int rc = -pthread_mutex_init(&b->lock, NULL);
    if (rc < 0 && efd < 0)
        close(b->efd);
    return rc;
}

void sk__posts_close(struct sk__posts *b, sk_server *s, bool own_efd)
{
    sk__posts_run(b, s); /* nothing is lost: the rest runs, its connections gone */
    free(b->ring);
    b->ring = NULL;
    pthread_mutex_destroy(&b->lock);
    if (own_efd)
        close(b->efd);
    b->efd = -1;
}

static bool grow(struct sk__posts *b)
{
    size_t cap = b->cap ? b->cap * 2 : FIRST_CAP;
    struct sk__post *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return false;
    for (size_t i = 0; i < b->n; i++) /* unwrapped: head at 0 */
        ring[i] = b->ring[(b->head + i) % b->cap];
    free(b->ring);
    b->ring = ring;
    b->cap = cap;
    b->head = 0;
    return true;
}

int sk__posts_put(struct sk__posts *b, const struct sk__post *p)
{
    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap && (b->cap >= SK_POST_MAX || !grow(b))) {
        int rc = b->cap >= SK_POST_MAX ? -EAGAIN : -ENOMEM;
        pthread_mutex_unlock(&b->lock);
        return rc;
    }
    b->ring[(b->head + b->n) % b->cap] = *p;
    bool first = b->n++ == 0;
    __atomic_store_n(&b->waiting, b->n, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&b->lock);
    if (first) { /* the loop takes everything once woken: one write is enough */
        uint64_t one = 1;
        ssize_t w = write(b->efd, &one, sizeof(one));
        (void)w;
        if (b->wake)
            b->wake(b->wake_arg);
    }
    return 0;
}

void sk__posts_run(struct sk__posts *b, sk_server *s)
{
    uint64_t v;
    ssize_t r = read(b->efd, &v, sizeof(v)); /* before the take: a later post writes again */
    (void)r;
    size_t todo = __atomic_load_n(&b->waiting, __ATOMIC_ACQUIRE);
    while (todo > 0) {
        struct sk__post batch[BATCH];
        size_t k = 0;
        pthread_mutex_lock(&b->lock);
        for (; k < BATCH && k < todo && b->n > 0; k++) {
            batch[k] = b->ring[b->head];
            b->head = (b->head + 1) % b->cap;
            b->n--;
        }
        __atomic_store_n(&b->waiting, b->n, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&b->lock);
        if (k == 0)
            break;
        todo -= k;
        for (size_t i = 0; i < k; i++) {
            sk_conn *c = NULL;
            if (batch[i].id) { /* this loop's, if still open: only this loop frees it */
                pthread_mutex_lock(&s->reg.lock);
                c = sk__registry_find_locked(&s->reg, batch[i].id);
                pthread_mutex_unlock(&s->reg.lock);
            }
            batch[i].fn(s, c, batch[i].arg);
        }
    }
    /* Posted while these ran: no write told of them (the box was not empty),
     * so the loop is told now, to come back after its other work. */
    if (sk__posts_waiting(b)) {
        uint64_t one = 1;
        ssize_t w = write(b->efd, &one, sizeof(one));
        (void)w;
    }
}

/* ---- the public API ----------------------------------------------------- */

int sk_server_post(sk_server *s, uint64_t id, sk_post_fn fn, void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    struct sk__post p = {.fn = fn, .arg = arg, .id = id};
    if (!(s->backend->caps & SK__CAP_LOOP)) /* a program's own backend runs no loop of ours */
        return -ENOTSUP;
    if (id == 0)
        return sk__posts_put(s->home_posts, &p);
    pthread_mutex_lock(&s->reg.lock);
    sk_conn *c = sk__registry_find_locked(&s->reg, id);
    int rc = !c ? -ENOENT : c->owner->posts ? sk__posts_put(c->owner->posts, &p) : -ENOTSUP;
    pthread_mutex_unlock(&s->reg.lock);
    return rc;
}

uint64_t sk_conn_id(const sk_conn *c)
{
    return c ? c->id : 0;
}
