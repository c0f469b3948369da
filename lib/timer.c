/* SPDX-License-Identifier: MIT */
/* The timers of one loop: a binary min-heap ordered by (due, seq). Each node
 * knows its index, so moving or removing it needs no search. */
#include "timer.h"

#include <errno.h>
#include <stdlib.h>

#define MIN_ROOM 16

static bool before(const struct sk__timer *a, const struct sk__timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(struct sk__timers *h, struct sk__timer *t, size_t i)
{
    h->node[i] = t;
    t->slot = i;
}

static void sift_up(struct sk__timers *h, size_t i)
{
    struct sk__timer *t = h->node[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, h->node[parent]))
            break;
        place(h, h->node[parent], i);
        i = parent;
    }
    place(h, t, i);
}

static void sift_down(struct sk__timers *h, size_t i)
{
    struct sk__timer *t = h->node[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && before(h->node[child + 1], h->node[child]))
            child++;
        if (!before(h->node[child], t))
            break;
        place(h, h->node[child], i);
        i = child;
    }
    place(h, t, i);
}

/* node[i] has a new key: move it up or down to where it belongs. */
static void fix(struct sk__timers *h, size_t i)
{
    if (i > 0 && before(h->node[i], h->node[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

void sk__timers_init(struct sk__timers *h)
{
    *h = (struct sk__timers){0};
}

void sk__timers_free(struct sk__timers *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->node[i]->slot = SK__TIMER_IDLE;
    free(h->node);
    sk__timers_init(h);
}

int sk__timer_attach(struct sk__timers *h, struct sk__timer *t,
                     void (*fire)(struct sk__timer *t, int64_t now))
{
    if (h->held == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : MIN_ROOM;
        struct sk__timer **node = realloc(h->node, cap * sizeof(*node));
        if (!node)
            return -ENOMEM;
        h->node = node;
        h->cap = cap;
    }
    h->held++;
    t->slot = SK__TIMER_IDLE;
    t->fire = fire;
    return 0;
}

void sk__timer_detach(struct sk__timers *h, struct sk__timer *t)
{
    sk__timer_stop(h, t);
    h->held--;
    /* After a peak, give most of the room back (a failure just keeps it). */
    if (h->cap > MIN_ROOM && h->held <= h->cap / 4) {
        struct sk__timer **node = realloc(h->node, h->cap / 2 * sizeof(*node));
        if (node) {
            h->node = node;
            h->cap /= 2;
        }
    }
}

void sk__timer_start(struct sk__timers *h, struct sk__timer *t, int64_t due)
{
    t->due = due;
    t->seq = h->seq++;
    if (sk__timer_armed(t)) {
        fix(h, t->slot);
        return;
    }
    place(h, t, h->n++); /* room is kept for every attached timer */
    sift_up(h, t->slot);
}

void sk__timer_stop(struct sk__timers *h, struct sk__timer *t)
{
    if (!sk__timer_armed(t))
        return;
    size_t i = t->slot;
    struct sk__timer *last = h->node[--h->n];
    t->slot = SK__TIMER_IDLE;
    if (last == t)
        return;
    place(h, last, i);
    fix(h, i);
}

int sk__timers_next(const struct sk__timers *h, int64_t now)
{
    if (h->n == 0)
        return -1;
    int64_t left = h->node[0]->due - now;
    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

int sk__timers_run(struct sk__timers *h, int64_t now)
{
    uint64_t started_before = h->seq;
    int fired = 0;
    while (h->n > 0 && h->node[0]->due <= now && h->node[0]->seq < started_before) {
        struct sk__timer *t = h->node[0];
        sk__timer_stop(h, t);
        fired++;
        t->fire(t, now); /* t may be gone after this */
    }
    return fired;
}
