/* SPDX-License-Identifier: MIT */
/* The public timers (sockkit/timer.h): a timer of the loop's heap (timer.h)
 * with a user callback, on its connection's or its server's list, which frees
 * it with them. A connection's are on its owner's heap (or, for a program's
 * own loop, on a heap of the connection's, made with its first timer); a
 * server's on the server's heap, which the loop of sk_server_run()'s thread
 * runs. */
#include "server_internal.h"

#include <errno.h>
#include <stdlib.h>

struct sk_timer {
    struct sk__timer node; /* on heap */
    struct sk__timers *heap;
    sk_conn *conn;   /* its connection, or NULL: a server's */
    sk_timer **list; /* the list it is on: its connection's or its server's */
    sk_timer *prev, *next;
    sk_timer_fn fn;
    void *arg;
    int every;        /* ms between runs, 0: once */
    bool in_callback; /* its fn runs now */
    bool freed;       /* freed by its own fn: free it once fn returns */
};

/* Re-armed (if repeating) before its callback, from its due time: no drift;
 * a run made late is made up on the next turn of the loop (timers_run). */
static void fire(struct sk__timer *node, int64_t now)
{
    sk_timer *t = (sk_timer *)((char *)node - offsetof(sk_timer, node));
    sk_conn *c = t->conn;
    (void)now;
    if (t->every)
        sk__timer_start(t->heap, &t->node, t->node.due + t->every);
    t->in_callback = true;
    t->fn(t, t->arg);
    if (t->freed)
        free(t);
    else
        t->in_callback = false;
    /* What the callback did to the connection (output, a close) is looked at
     * as after any of its other callbacks. */
    if (c && c->owner->notify)
        c->owner->notify(c->owner, c);
}

static sk_timer *timer_new(struct sk__timers *heap, sk_timer **list, sk_timer_fn fn, void *arg)
{
    sk_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (sk__timer_attach(heap, &t->node, fire) < 0) {
        free(t);
        return NULL;
    }
    t->heap = heap;
    t->fn = fn;
    t->arg = arg;
    t->list = list;
    t->next = *list;
    if (t->next)
        t->next->prev = t;
    *list = t;
    return t;
}

sk_timer *sk_conn_timer(sk_conn *c, sk_timer_fn fn, void *arg)
{
    if (!c || !fn || c->state != SK__OPEN)
        return NULL;
    struct sk__timers *heap = c->owner->timers;
    if (!heap) { /* a program's own loop: sk_conn_drive() runs the connection's own heap */
        if (!c->own_timers && (c->own_timers = malloc(sizeof(*c->own_timers))))
            sk__timers_init(c->own_timers);
        if (!(heap = c->own_timers))
            return NULL;
    }
    sk_timer *t = timer_new(heap, &c->utimers, fn, arg);
    if (t)
        t->conn = c;
    return t;
}

sk_timer *sk_server_timer(sk_server *s, sk_timer_fn fn, void *arg)
{
    if (!s || !fn)
        return NULL;
    return timer_new(&s->timers, &s->utimers, fn, arg);
}

int sk_timer_start(sk_timer *t, int after_ms, int every_ms)
{
    if (!t || after_ms < 0 || every_ms < 0)
        return -EINVAL;
    if (t->conn && t->conn->state != SK__OPEN)
        return -EPIPE;
    t->every = every_ms;
    /* A fresh reading of the clock, not the loop's (up to a wait older): a
     * timer never fires before after_ms has passed. */
    sk__timer_start(t->heap, &t->node, sk__now_ms() + after_ms);
    return 0;
}

int sk_timer_stop(sk_timer *t)
{
    if (!t)
        return -EINVAL;
    sk__timer_stop(t->heap, &t->node);
    return 0;
}

bool sk_timer_armed(const sk_timer *t)
{
    return t && sk__timer_armed(&t->node);
}

void sk_timer_free(sk_timer *t)
{
    if (!t)
        return;
    sk__timer_detach(t->heap, &t->node);
    if (t->prev)
        t->prev->next = t->next;
    else
        *t->list = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (t->in_callback)
        t->freed = true; /* fire() frees it when the callback returns */
    else
        free(t);
}

/* ---- for conn.c and server.c ------------------------------------------- */

static void stop_all(sk_timer *t)
{
    for (; t; t = t->next)
        sk__timer_stop(t->heap, &t->node);
}

void sk__conn_timers_stop(sk_conn *c)
{
    stop_all(c->utimers);
}

void sk__conn_timers_free(sk_conn *c)
{
    while (c->utimers)
        sk_timer_free(c->utimers);
    if (c->own_timers) {
        sk__timers_free(c->own_timers);
        free(c->own_timers);
        c->own_timers = NULL;
    }
}

void sk__server_timers_stop(sk_server *s)
{
    stop_all(s->utimers);
}

void sk__server_timers_free(sk_server *s)
{
    while (s->utimers)
        sk_timer_free(s->utimers);
    sk__timers_free(&s->timers);
}
