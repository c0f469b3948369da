/* SPDX-License-Identifier: MIT */
/* pthread backend: the calling thread accepts; each connection gets a thread
 * running the one-connection loop. Output is shared with other threads
 * (broadcasts) under the connection's mutex; an eventfd wakes the owner when
 * another thread queued output or asked for a close. */
#include "../server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct pt_state;

struct pt_thread {
    struct sk__owner owner; /* first: the owner pointer is the thread record */
    struct pt_state *st;
    pthread_t tid;
    pthread_mutex_t lock;   /* the connection's output */
    int wake_fd;
    sk_conn *conn;
    struct pt_thread *next_done;
};

struct pt_state {
    sk_server *s;
    pthread_mutex_t lock;
    pthread_cond_t all_done;
    int live;
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
    }
}

static void pt_woken(sk_conn *c, void *arg)
{
    struct pt_thread *t = arg;
    uint64_t v;
    ssize_t n = read(t->wake_fd, &v, sizeof(v));
    (void)n;
    (void)c; /* the loop re-reads the connection's state itself */
}

static void *pt_main(void *arg)
{
    struct pt_thread *t = arg;
    struct pt_state *st = t->st;
    pt_current = t;
    sk__serve_one(t->conn, t->wake_fd, pt_woken, t, NULL);
    pthread_mutex_lock(&st->lock);
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

static void pt_spawn(struct pt_state *st, int fd, const sk_addr *peer)
{
    sk_server *s = st->s;
    struct pt_thread *t = calloc(1, sizeof(*t));
    if (!t)
        goto refuse;
    t->st = st;
    t->owner.notify = pt_notify;
    t->owner.ctr = &s->ctr;
    t->owner.now = sk__now_ms();
    t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->wake_fd < 0)
        goto free_t;
    if (pthread_mutex_init(&t->lock, NULL) != 0)
        goto close_wake;
    t->conn = sk__conn_new(s, fd, &t->owner, &t->lock, peer);
    if (!t->conn)
        goto destroy_lock;
    pthread_mutex_lock(&st->lock);
    st->live++;
    pthread_mutex_unlock(&st->lock);
    if (pthread_create(&t->tid, NULL, pt_main, t) == 0)
        return;
    pthread_mutex_lock(&st->lock);
    st->live--;
    pthread_mutex_unlock(&st->lock);
    sk__conn_free(t->conn); /* no thread: closed unserved; gives the slot back */
    pthread_mutex_destroy(&t->lock);
    close(t->wake_fd);
    free(t);
    return;
destroy_lock:
    pthread_mutex_destroy(&t->lock);
close_wake:
    close(t->wake_fd);
free_t:
    free(t);
refuse:
    sk__server_release(s);
    sk__count(&s->ctr, SK__C_REFUSED, 1);
    close(fd);
}

static int pt_run(sk_server *s)
{
    struct pt_state st = {.s = s};
    struct pollfd *p = calloc((size_t)s->nlisteners + 2, sizeof(*p));
    int rc = 0;

    st.reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!p || st.reap_fd < 0) {
        free(p);
        if (st.reap_fd >= 0)
            close(st.reap_fd);
        return -ENOMEM;
    }
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.all_done, NULL);
    int n = s->nlisteners;
    for (int i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = s->listeners[i], .events = POLLIN};
    p[n] = (struct pollfd){.fd = s->stop_fd, .events = POLLIN};
    p[n + 1] = (struct pollfd){.fd = st.reap_fd, .events = POLLIN};

    int pause_ms = -1; /* after an accept error: wait before polling the listeners again */
    while (!sk__stopping(s)) {
        int ready = poll(p, (nfds_t)n + 2, pause_ms);
        if (ready < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        if (p[n + 1].revents)
            pt_reap(&st);
        for (int i = 0; i < n; i++)
            p[i].fd = s->listeners[i]; /* back after a pause */
        pause_ms = -1;
        for (int i = 0; i < n && ready > 0; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd;
            sk_addr peer;
            while ((fd = sk__server_accept_fd(s, s->listeners[i], &s->ctr, &peer)) > 0)
                pt_spawn(&st, fd, &peer);
            if (fd < 0) { /* no descriptor even for refusing: rest the listeners */
                for (int k = 0; k < n; k++)
                    p[k].fd = -1;
                pause_ms = 100;
            }
        }
    }
    /* Stopping: every thread sees the stop descriptor and drains its connection. */
    pthread_mutex_lock(&st.lock);
    while (st.live > 0)
        pthread_cond_wait(&st.all_done, &st.lock);
    pthread_mutex_unlock(&st.lock);
    pt_reap(&st);
    pthread_cond_destroy(&st.all_done);
    pthread_mutex_destroy(&st.lock);
    close(st.reap_fd);
    free(p);
    return rc;
}

const sk_backend sk__backend_pthread = {
    .name = "pthread",
    .summary = "a thread per connection",
    .run = pt_run,
    .broadcast = NULL, /* the registry, each connection under its own mutex */
};
