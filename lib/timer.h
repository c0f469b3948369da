/* SPDX-License-Identifier: MIT */
/* The timers of one loop: a binary min-heap of nodes embedded in their owners.
 *
 * A loop (a reactor, a connection's thread, a fork child) owns one heap and is
 * the only thread that touches it. A timer is attached to the heap once, when
 * its owner is made: that is the only step that may allocate, since the heap
 * keeps room for every attached timer. Then start, re-arm and stop are O(log n)
 * and cannot fail, from anywhere in the loop, a timer's own callback included.
 * Times are monotonic milliseconds (sk__now_ms()). Not exported. */
#ifndef SOCKKIT_LIB_TIMER_H
#define SOCKKIT_LIB_TIMER_H

#include "internal.h"

#define SK__TIMER_IDLE SIZE_MAX /* the slot of a timer not in the heap */

struct sk__timer {
    int64_t due;   /* when it fires */
    size_t slot;   /* its index in the heap, SK__TIMER_IDLE when not armed */
    uint64_t seq;  /* the heap's start count when it was started: ties go by it */
    /* Called once it is out of the heap: it may start it again, stop or detach
     * it or any other timer, or free its owner. */
    void (*fire)(struct sk__timer *t, int64_t now);
};

struct sk__timers {
    struct sk__timer **node; /* node[0] is due first; node[i]'s children: 2i+1, 2i+2 */
    size_t n;                /* armed timers */
    size_t held;             /* attached timers: node[] has room for all of them */
    size_t cap;              /* room in node[] */
    uint64_t seq;            /* timers started so far */
};

SK__HIDDEN void sk__timers_init(struct sk__timers *h);
/* Free the heap's memory. Timers still armed are left idle: no callback runs. */
SK__HIDDEN void sk__timers_free(struct sk__timers *h);
/* Make room for one more timer and set its callback; it is not armed yet:
 * 0, or -ENOMEM (the timer is untouched). */
SK__HIDDEN int sk__timer_attach(struct sk__timers *h, struct sk__timer *t,
                                void (*fire)(struct sk__timer *t, int64_t now));
/* Stop it and give its room back. */
SK__HIDDEN void sk__timer_detach(struct sk__timers *h, struct sk__timer *t);
/* Arm an attached timer for due, or move it there if armed. Of timers due at
 * the same time, the one started first fires first. */
SK__HIDDEN void sk__timer_start(struct sk__timers *h, struct sk__timer *t, int64_t due);
/* Disarm it (nothing if it is not armed). */
SK__HIDDEN void sk__timer_stop(struct sk__timers *h, struct sk__timer *t);
/* Milliseconds from now until the first timer is due, as epoll_wait() and
 * poll() take them: 0 if one is due already, -1 if none is armed. */
SK__HIDDEN int sk__timers_next(const struct sk__timers *h, int64_t now);
/* Fire, in due order, every timer due at now: how many fired. A timer that a
 * callback started with a due time already past ends the run: it, and what is
 * due after it, fire in the next one (sk__timers_next() says 0), so a callback
 * that keeps re-arming cannot hold the loop. */
SK__HIDDEN int sk__timers_run(struct sk__timers *h, int64_t now);

static inline bool sk__timer_armed(const struct sk__timer *t)
{
    return t->slot != SK__TIMER_IDLE;
}

#endif /* SOCKKIT_LIB_TIMER_H */
