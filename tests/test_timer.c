/* SPDX-License-Identifier: MIT */
/*
 * The loop's timer heap (lib/timer.c), linked in directly: due order, ties in
 * start order, stopping (also from a timer's own callback), re-arming from a
 * callback, 100,000 random timers with random cancellations, the wait until
 * the next one, and that the heap's memory follows the timers attached, not
 * the starts and stops.
 */
#include "../lib/timer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

/* A timer that records its firing into a log. */
struct rec {
    struct sk__timer t;
    int id;
    int64_t fired_at;  /* the now it fired with, or -1 */
    int fired;         /* how many times */
    int64_t period;    /* > 0: starts itself again, period after its due time */
    int max_fires;     /* for the repeating ones */
    struct rec *victim; /* stopped by this one's callback (or itself) */
    struct sk__timers *h;
};

static int log_ids[64];
static int nlog;

static struct rec *rec_of(struct sk__timer *t)
{
    return (struct rec *)((char *)t - offsetof(struct rec, t));
}

static void on_fire(struct sk__timer *t, int64_t now)
{
    struct rec *r = rec_of(t);
    assert_false(sk__timer_armed(t)); /* out of the heap when called */
    assert_true(t->due <= now);
    r->fired_at = now;
    r->fired++;
    if (nlog < 64)
        log_ids[nlog++] = r->id;
    if (r->period > 0 && r->fired < r->max_fires)
        sk__timer_start(r->h, t, t->due + r->period); /* from its due: no drift */
    if (r->victim)
        sk__timer_stop(r->h, &r->victim->t);
}

static void recs_attach(struct sk__timers *h, struct rec *r, int n)
{
    nlog = 0;
    for (int i = 0; i < n; i++) {
        r[i] = (struct rec){.id = i, .fired_at = -1, .h = h};
        assert_int_equal(sk__timer_attach(h, &r[i].t, on_fire), 0);
        assert_false(sk__timer_armed(&r[i].t));
    }
}

static void fires_in_due_order(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[5];
    sk__timers_init(&h);
    recs_attach(&h, r, 5);
    int64_t due[5] = {30, 10, 50, 20, 40};
    for (int i = 0; i < 5; i++)
        sk__timer_start(&h, &r[i].t, due[i]);
    assert_int_equal(sk__timers_run(&h, 9), 0);
    assert_int_equal(sk__timers_run(&h, 25), 2);
    assert_int_equal(nlog, 2);
    assert_int_equal(log_ids[0], 1);
    assert_int_equal(log_ids[1], 3);
    assert_int_equal(r[1].fired_at, 25);
    assert_int_equal(sk__timers_run(&h, 100), 3);
    int want[] = {1, 3, 0, 4, 2};
    for (int i = 0; i < 5; i++)
        assert_int_equal(log_ids[i], want[i]);
    assert_int_equal(sk__timers_run(&h, 1000), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].fired, 1);
    sk__timers_free(&h);
}

static void ties_fire_in_start_order(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[6];
    sk__timers_init(&h);
    recs_attach(&h, r, 6);
    for (int i = 0; i < 6; i++)
        sk__timer_start(&h, &r[i].t, 100);
    sk__timer_start(&h, &r[1].t, 100); /* started again: now the last of its time */
    sk__timer_start(&h, &r[4].t, 99);  /* moved earlier */
    assert_int_equal(sk__timers_run(&h, 100), 6);
    int want[] = {4, 0, 2, 3, 5, 1};
    for (int i = 0; i < 6; i++)
        assert_int_equal(log_ids[i], want[i]);
    sk__timers_free(&h);
}

static void stopped_timers_do_not_fire(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[4];
    sk__timers_init(&h);
    recs_attach(&h, r, 4);
    for (int i = 0; i < 4; i++)
        sk__timer_start(&h, &r[i].t, 10 * (i + 1));
    sk__timer_stop(&h, &r[1].t);
    sk__timer_stop(&h, &r[1].t); /* again: nothing */
    sk__timer_stop(&h, &r[3].t); /* the last node */
    assert_false(sk__timer_armed(&r[1].t));
    assert_true(sk__timer_armed(&r[2].t));
    assert_int_equal(h.n, 2);
    assert_int_equal(sk__timers_run(&h, 100), 2);
    assert_int_equal(log_ids[0], 0);
    assert_int_equal(log_ids[1], 2);
    assert_int_equal(r[1].fired + r[3].fired, 0);
    /* A stopped timer starts again as any other. */
    sk__timer_start(&h, &r[1].t, 200);
    assert_int_equal(sk__timers_run(&h, 200), 1);
    assert_int_equal(r[1].fired, 1);
    sk__timers_free(&h);
}

static void stop_inside_callbacks(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[3];
    sk__timers_init(&h);
    recs_attach(&h, r, 3);
    r[0].victim = &r[0]; /* stops itself: already out, nothing happens */
    r[1].victim = &r[2]; /* stops another one, due at the same time */
    sk__timer_start(&h, &r[0].t, 5);
    sk__timer_start(&h, &r[1].t, 10);
    sk__timer_start(&h, &r[2].t, 10);
    assert_int_equal(sk__timers_run(&h, 10), 2);
    assert_int_equal(r[0].fired, 1);
    assert_int_equal(r[1].fired, 1);
    assert_int_equal(r[2].fired, 0);
    assert_int_equal(h.n, 0);
    /* One that re-arms and then stops itself in the same callback stays out. */
    r[0].victim = &r[0];
    r[0].period = 1;
    r[0].max_fires = 100;
    sk__timer_start(&h, &r[0].t, 20);
    assert_int_equal(sk__timers_run(&h, 100), 1);
    assert_false(sk__timer_armed(&r[0].t));
    sk__timers_free(&h);
}

static void rearm_inside_callback(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[2];
    sk__timers_init(&h);
    recs_attach(&h, r, 2);
    r[0].period = 10;
    r[0].max_fires = 5;
    sk__timer_start(&h, &r[0].t, 10);
    sk__timer_start(&h, &r[1].t, 25);
    /* Late: the repeating one counts its next due from its own, so it does not
     * drift; started again already due, it fires in the next run, and the
     * other one (due later) after it. */
    assert_int_equal(sk__timers_run(&h, 25), 1); /* 10 */
    assert_int_equal(r[0].t.due, 20);
    assert_int_equal(sk__timers_next(&h, 25), 0);
    assert_int_equal(sk__timers_run(&h, 25), 2); /* 20, then the other at 25 */
    assert_int_equal(log_ids[1], 0);
    assert_int_equal(log_ids[2], 1);
    assert_int_equal(r[0].t.due, 30);
    assert_int_equal(sk__timers_next(&h, 25), 5);
    assert_int_equal(sk__timers_run(&h, 1000), 1); /* 30 */
    assert_int_equal(sk__timers_run(&h, 1000), 1); /* 40 */
    assert_int_equal(sk__timers_run(&h, 1000), 1); /* 50, the fifth: not again */
    assert_int_equal(r[0].fired, 5);
    assert_int_equal(sk__timers_run(&h, 1000), 0);
    assert_int_equal(sk__timers_next(&h, 1000), -1);
    sk__timers_free(&h);
}

static void next_due(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[3];
    sk__timers_init(&h);
    assert_int_equal(sk__timers_next(&h, 0), -1);
    recs_attach(&h, r, 3);
    assert_int_equal(sk__timers_next(&h, 0), -1); /* attached, not armed */
    sk__timer_start(&h, &r[0].t, 1050);
    assert_int_equal(sk__timers_next(&h, 1000), 50);
    sk__timer_start(&h, &r[1].t, 1020);
    assert_int_equal(sk__timers_next(&h, 1000), 20);
    assert_int_equal(sk__timers_next(&h, 1020), 0);
    assert_int_equal(sk__timers_next(&h, 5000), 0); /* overdue */
    sk__timer_stop(&h, &r[1].t);
    assert_int_equal(sk__timers_next(&h, 1000), 50);
    sk__timer_start(&h, &r[0].t, INT64_MAX / 2); /* far: capped */
    assert_int_equal(sk__timers_next(&h, 0), INT32_MAX);
    sk__timer_stop(&h, &r[0].t);
    assert_int_equal(sk__timers_next(&h, 0), -1);
    sk__timers_free(&h);
}

/* ---- many random timers ------------------------------------------------- */

#define MANY 100000

struct big {
    struct sk__timer t;
    int fired;
    bool cancelled;
};

static struct big *many;
static struct sk__timers many_heap;
static int64_t last_due;
static uint64_t last_seq;
static int nfired;

static uint32_t rnd_state = 12345;
static uint32_t rnd(void) /* xorshift32: the same sequence on every run */
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void big_fire(struct sk__timer *t, int64_t now)
{
    struct big *b = (struct big *)((char *)t - offsetof(struct big, t));
    assert_false(b->cancelled);
    assert_true(t->due <= now);
    /* In order: by due, then by start. */
    assert_true(t->due > last_due || (t->due == last_due && t->seq > last_seq));
    last_due = t->due;
    last_seq = t->seq;
    b->fired++;
    nfired++;
    if (rnd() % 16 == 0) { /* cancel a random other one, perhaps due as well */
        struct big *v = &many[rnd() % MANY];
        if (sk__timer_armed(&v->t)) {
            sk__timer_stop(&many_heap, &v->t);
            v->cancelled = true;
        }
    }
}

static void heap_is_ordered(const struct sk__timers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        assert_int_equal(h->node[i]->slot, i);
        if (i > 0) {
            const struct sk__timer *p = h->node[(i - 1) / 2], *c = h->node[i];
            assert_true(p->due < c->due || (p->due == c->due && p->seq < c->seq));
        }
    }
}

static void many_random_timers(void **state)
{
    (void)state;
    struct sk__timers *h = &many_heap;
    many = calloc(MANY, sizeof(*many));
    assert_non_null(many);
    sk__timers_init(h);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(sk__timer_attach(h, &many[i].t, big_fire), 0);
        sk__timer_start(h, &many[i].t, rnd() % 100000); /* many ties */
    }
    int cancelled = 0;
    for (int i = 0; i < MANY / 10; i++) {
        struct big *b = &many[rnd() % MANY];
        if (rnd() % 2) {
            sk__timer_start(h, &b->t, rnd() % 100000); /* moved, or armed again */
            cancelled -= b->cancelled;
            b->cancelled = false;
        } else if (!b->cancelled) {
            sk__timer_stop(h, &b->t);
            b->cancelled = true;
            cancelled++;
        }
    }
    heap_is_ordered(h);
    assert_int_equal(h->n, MANY - cancelled);
    last_due = INT64_MIN;
    for (int64_t now = 0; now < 100000 + 1000; now += 1 + rnd() % 1000) {
        int before = nfired;
        int ran = sk__timers_run(h, now);
        assert_int_equal(ran, nfired - before);
        assert_true(h->n == 0 || h->node[0]->due > now);
        if (now % 7 == 0)
            heap_is_ordered(h);
    }
    assert_int_equal(h->n, 0);
    int fired = 0, dropped = 0;
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(many[i].fired, many[i].cancelled ? 0 : 1);
        fired += many[i].fired;
        dropped += many[i].cancelled;
    }
    assert_int_equal(fired, nfired);
    assert_int_equal(fired + dropped, MANY);
    assert_true(dropped > cancelled); /* some were cancelled by callbacks */
    for (int i = 0; i < MANY; i++)
        sk__timer_detach(h, &many[i].t);
    assert_int_equal(h->held, 0);
    sk__timers_free(h);
    free(many);
}

static void memory_follows_attached_timers(void **state)
{
    (void)state;
    struct sk__timers h;
    struct rec r[40];
    sk__timers_init(&h);
    recs_attach(&h, r, 40);
    size_t cap = h.cap;
    assert_true(cap >= 40 && cap <= 64);
    /* Churn: a million starts, re-arms and stops allocate nothing. */
    for (int i = 0; i < 1000000; i++) {
        struct rec *x = &r[rnd() % 40];
        if (rnd() % 3)
            sk__timer_start(&h, &x->t, rnd() % 1000);
        else
            sk__timer_stop(&h, &x->t);
        if (i % 1000 == 0)
            sk__timers_run(&h, rnd() % 100);
    }
    assert_int_equal(h.cap, cap);
    assert_true(h.n <= 40);
    /* Attach and detach churn: the room follows the peak, and comes back. */
    struct rec *extra = calloc(10000, sizeof(*extra));
    assert_non_null(extra);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 10000; i++) {
            assert_int_equal(sk__timer_attach(&h, &extra[i].t, on_fire), 0);
            sk__timer_start(&h, &extra[i].t, 5000 + i);
        }
        assert_true(h.cap >= 10040 && h.cap <= 2 * 10040);
        for (int i = 0; i < 10000; i++)
            sk__timer_detach(&h, &extra[i].t);
    }
    assert_int_equal(h.held, 40);
    assert_true(h.cap <= 4 * 40 + 16);
    free(extra);
    sk__timers_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fires_in_due_order),
        cmocka_unit_test(ties_fire_in_start_order),
        cmocka_unit_test(stopped_timers_do_not_fire),
        cmocka_unit_test(stop_inside_callbacks),
        cmocka_unit_test(rearm_inside_callback),
        cmocka_unit_test(next_due),
        cmocka_unit_test(many_random_timers),
        cmocka_unit_test(memory_follows_attached_timers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
