/* SPDX-License-Identifier: MIT */
/* pthread backend: the calling thread accepts; each connection gets a thread
 * running the one-connection loop. Output is shared with other threads
 * (broadcasts) under the connection's mutex; an eventfd wakes the owner when
 * another thread queued output or asked for a close. A thread serving its
 * accepted connection alone parks in a blocking recv() (single.c) when the
 * process lets the library take SK__PARK_SIGNAL: whoever writes its eventfd
 * also wakes it from there, and so does the stop. */
#include "../server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct pt_state;

struct pt_thread {
    struct sk__single loop; /* first: the owner pointer is the thread record */
    struct pt_state *st;
    pthread_t tid;
    pthread_mutex_t lock;   /* its connections' output */
    int wake_fd;
    struct pt_thread *next_done;
    struct pt_thread *prev_live, *next_live; /* st->live_list, under st->lock */
    int parked;             /* its park (single.c), when it may park */
    unsigned posted;
    struct sk__park park;
};

struct pt_state {
    struct sk__owner home;  /* first: the accepting thread, as the loop of outbound opens */
    sk_server *s;
    pthread_mutex_t lock;
    pthread_cond_t all_done;
    int live;
    struct pt_thread *live_list; /* the running threads: the stop wakes them */
    bool can_park;          /* the process's SK__PARK_SIGNAL is the library's */
    int reap_fd;            /* readable when a thread has finished */
    struct pt_thread *done; /* finished, waiting to be joined */
};

static __thread struct pt_thread *pt_current;

static void pt_notify(struct sk__owner *owner, sk_conn *c)
{
    struct pt_thread *t = (struct pt_thread *)owner;
    (void)c;
    if (pt_current != t) {
        uint64_t one = 1;
        ssize_t n = write(t->wake_fd, &one, sizeof(one));
        (void)n;
        sk__single_wake(&t->loop); /* after the write: woken, it polls and sees it */
    }
}

static void pt_woken(struct sk__single *l, void *arg)
{
    struct pt_thread *t = arg;
    uint64_t v;
    ssize_t n = read(t->wake_fd, &v, sizeof(v));
    (void)n;
    (void)l; /* the loop re-reads its connections' state itself */
}

static void *pt_main(void *arg)
{
    struct pt_thread *t = arg;
    struct pt_state *st = t->st;
    pt_current = t;
    if (t->loop.park && sk__park_unblock() < 0)
        t->loop.park = NULL; /* the signal cannot reach it: poll, as without parking */
    sk__single_run(&t->loop);
    pthread_mutex_lock(&st->lock);
    if (t->prev_live)
        t->prev_live->next_live = t->next_live;
    else
        st->live_list = t->next_live;
    if (t->next_live)
        t->next_live->prev_live = t->prev_live;
    t->next_done = st->done;
    st->done = t;
    st->live--;
    pthread_cond_signal(&st->all_done);
    pthread_mutex_unlock(&st->lock);
    uint64_t one = 1;
    ssize_t n = write(st->reap_fd, &one, sizeof(one));
    (void)n;
    return NULL;
}

static void pt_free_thread(struct pt_thread *t)
{
    close(t->wake_fd);
    pthread_mutex_destroy(&t->lock);
    sk__single_destroy(&t->loop);
    free(t);
}

static void pt_reap(struct pt_state *st)
{
    /* Clear the notification first, then take the list: a thread that adds
     * itself after the take writes after the clear, so it is not missed. */
    uint64_t v;
    ssize_t n = read(st->reap_fd, &v, sizeof(v));
    (void)n;
    pthread_mutex_lock(&st->lock);
    struct pt_thread *done = st->done;
    st->done = NULL;
    pthread_mutex_unlock(&st->lock);
    while (done) {
        struct pt_thread *next = done->next_done;
        pthread_join(done->tid, NULL);
        pt_free_thread(done);
        done = next;
    }
}

/* A thread record with its loop, not yet running; NULL without resources. */
static struct pt_thread *pt_new(struct pt_state *st)
{
    sk_server *s = st->s;
    struct pt_thread *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (sk__single_init(&t->loop, s) < 0)
        goto free_t;
    t->st = st;
    t->loop.owner.notify = pt_notify;
    t->loop.owner.ctr = &s->reg.ctr;
    t->loop.owner.lock = &t->lock; /* other threads' broadcasts queue to it directly */
    t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->wake_fd < 0)
        goto destroy_loop;
    if (pthread_mutex_init(&t->lock, NULL) != 0)
        goto close_wake;
    t->loop.extra_fd = t->wake_fd;
    t->loop.on_extra = pt_woken;
    t->loop.arg = t;
    t->park = (struct sk__park){.parked = &t->parked, .posted = &t->posted};
    if (st->can_park) /* used only while it serves one accepted connection */
        t->loop.park = &t->park;
    return t;
close_wake:
    close(t->wake_fd);
destroy_loop:
    sk__single_destroy(&t->loop);
free_t:
    free(t);
    return NULL;
}

/* Run t's loop on a thread of its own: false if none could be made (then
 * t is freed, and its connections with it). */
static bool pt_start(struct pt_state *st, struct pt_thread *t)
{
    pthread_mutex_lock(&st->lock);
    st->live++;
    t->next_live = st->live_list;
    if (st->live_list)
        st->live_list->prev_live = t;
    st->live_list = t;
    bool made = pthread_create(&t->tid, NULL, pt_main, t) == 0;
    if (!made) {
        st->live--;
        st->live_list = t->next_live;
        if (t->next_live)
            t->next_live->prev_live = NULL;
    }
    pthread_mutex_unlock(&st->lock);
    return made;
}

static void pt_spawn(struct pt_state *st, int fd, const sk_addr *peer)
{
    sk_server *s = st->s;
    struct pt_thread *t = pt_new(st);
    sk_conn *c = t ? sk__conn_new(s, sizeof(sk_conn), fd, &t->loop.owner, peer) : NULL;
    if (c && sk__single_add(&t->loop, c) == 0) {
        if (!pt_start(st, t)) {
            sk__conn_free(c); /* no thread: closed unserved; gives the slot back */
            pt_free_thread(t);
        }
        return;
    }
    if (c) {
        sk__conn_free(c);
        pt_free_thread(t);
        return;
    }
    if (t)
        pt_free_thread(t);
    sk__registry_release(&s->reg);
    sk__count(&s->reg.ctr, SK__C_REFUSED, 1);
    close(fd);
}

/* An outbound connection opened outside any connection's thread (a server
 * timer, another thread, before the run): a thread of its own. */
static int pt_home_dial(struct sk__owner *home, struct sk__dial *d, sk_conn **conn)
{
    struct pt_state *st = (struct pt_state *)home;
    struct pt_thread *t = pt_new(st);
    sk_conn *c = t ? sk__conn_dial(st->s, sizeof(sk_conn), &t->loop.owner, d) : NULL;
    (void)conn; /* it lives on another thread: not the caller's to touch */
    if (c && sk__single_add(&t->loop, c) == 0 && pt_start(st, t))
        return 0;
    if (c)
        sk__conn_free(c); /* never seen by the program */
    if (t)
        pt_free_thread(t);
    sk__dial_refuse(st->s, d, -EAGAIN); /* no thread for it: it fails here */
    return 0;
}

static int pt_run(sk_server *s)
{
    struct pt_state st = {.s = s, .home = {.dial = pt_home_dial, .ctr = &s->reg.ctr}};
    struct pollfd *p = calloc((size_t)s->lis.n + 4, sizeof(*p));
    int rc = 0;

    if (!p)
        return -ENOMEM;
    st.reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (st.reap_fd < 0) {
        rc = -errno;
        goto free_p;
    }
    if ((rc = -pthread_mutex_init(&st.lock, NULL)) < 0)
        goto close_reap;
    if ((rc = -pthread_cond_init(&st.all_done, NULL)) < 0)
        goto destroy_lock;
    /* Parking takes the process's SK__PARK_SIGNAL, unless the program has. */
    st.can_park = sk__park_install_shared() == 0;
    int n = s->lis.n;
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = s->lis.fd[i], .events = POLLIN};
    p[n] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
    p[n + 1] = (struct pollfd){.fd = st.reap_fd, .events = POLLIN};
    p[n + 2] = (struct pollfd){.fd = s->posts.efd, .events = POLLIN};
    p[n + 3] = (struct pollfd){.fd = s->drain_fd, .events = POLLIN};
    sk__loop_enter(s, &st.home); /* server timers and posts run here */

    int64_t rest_until = -1; /* after an accept error: the listeners rest until then */
    bool draining = false;
    while (!sk__stopping(s)) {
        int wait = sk__remaining(rest_until);
        /* The server's timers run here, in the thread of sk_server_run(). */
        struct sk__timers *timers = sk__server_timers(s);
        if (timers)
            wait = sk__sooner(wait, sk__timers_next(timers, sk__now_ms()));
        if (draining)
            wait = sk__sooner(wait, sk__drain_wait(s, sk__now_ms()));
        int ready = poll(p, (nfds_t)n + 4, wait);
        if (ready < 0 && errno != EINTR) {
            /* The threads stop only when told: stop them all, then report. */
            rc = -errno;
            sk__server_stop(s);
            break;
        }
        if ((timers = sk__server_timers(s)))
            sk__timers_run(timers, sk__now_ms());
        if (p[n + 1].revents)
            pt_reap(&st);
        if (p[n + 2].revents) /* posted to the server */
            sk__posts_run(&s->posts, s);
        if (p[n + 3].revents) { /* a drain: accept no more; end with the last thread */
            draining = true;
            sk__server_note_drain(s);
            for (int i = 0; i < n; i++)
                p[i].fd = -1;
            p[n + 3].fd = -1;
        }
        if (draining) {
            pthread_mutex_lock(&st.lock);
            bool drained = st.live == 0;
            pthread_mutex_unlock(&st.lock);
            if (drained)
                break;
            continue;
        }
        /* The rest is over (a timer or a finished thread may wake the loop before). */
        if (rest_until >= 0 && sk__remaining(rest_until) == 0) {
            for (int i = 0; i < n; i++)
                p[i].fd = s->lis.fd[i]; /* back after a pause */
            rest_until = -1;
        }
        for (int i = 0; i < n && ready > 0; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd;
            sk_addr peer;
            while ((fd = sk__accept_fd(s, s->lis.fd[i], &s->reg.ctr, &peer)) > 0)
                pt_spawn(&st, fd, &peer);
            if (fd < 0) { /* no descriptor even for refusing: rest the listeners */
                for (int k = 0; k < n; k++)
                    p[k].fd = -1;
                rest_until = sk__deadline(100);
            }
        }
    }
    sk__loop_enter(NULL, NULL);
    /* Stopping: every thread sees the stop descriptor and drains its
     * connection; a parked one is woken to look. */
    pthread_mutex_lock(&st.lock);
    for (struct pt_thread *t = st.live_list; t; t = t->next_live)
        sk__single_wake(&t->loop);
    while (st.live > 0)
        pthread_cond_wait(&st.all_done, &st.lock);
    pthread_mutex_unlock(&st.lock);
    pt_reap(&st);
    pthread_cond_destroy(&st.all_done);
destroy_lock:
    pthread_mutex_destroy(&st.lock);
close_reap:
    close(st.reap_fd);
free_p:
    free(p);
    return rc;
}

const struct sk__backend sk__backend_pthread = {.ops = {
    .name = "pthread",
    .summary = "a thread per connection",
    .run = pt_run,
    .broadcast = NULL, /* the registry, each connection under its own mutex */
}, .caps = SK__CAP_LOOP | SK__CAP_DRAIN};
