/* SPDX-License-Identifier: MIT */
/* Outbound connections: sk_server_connect(). A numeric address (or a unix
 * path) connects on the loop with a non-blocking connect(); the loop sees it
 * finish when the socket turns writable. A name is resolved and its addresses
 * raced by sk_connect() on a short-lived helper thread, whose result is
 * posted back to the connection's loop: no loop ever waits for a resolver. */
#include "server_internal.h"
#include "tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000

/* What a dial request holds (not the request itself). */
static void dial_clear(struct sk__dial *d)
{
    free(d->address);
    free(d->host);
    sk_tls_free(d->tls);
    d->address = d->host = NULL;
    d->tls = NULL;
}

void sk__dial_free(struct sk__dial *d)
{
    dial_clear(d);
    free(d);
}

void sk__link_drop(struct sk__link *l)
{
    pthread_mutex_lock(&l->lock);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->lock);
    if (last) {
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
}

static void fail(sk_conn *c, int err)
{
    c->error = err;
    sk__conn_request_close(c, SK_CLOSE_CONNECT);
}

/* ---- a helper thread: resolve, race, post the result back ---------------- */

struct job {
    struct sk__link *link;
    uint64_t id;      /* the connection's */
    char *address;
    int timeout_ms;
    bool nodelay;     /* the server's TCP_NODELAY */
    int fd;           /* the connected socket, or -errno / SK_EAI_* */
};

static void job_free(struct job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->address);
    free(j);
}

/* On the connection's loop: its socket, or why there is none. */
static void job_done(sk_server *s, sk_conn *c, void *arg)
{
    struct job *j = arg;
    (void)s;
    if (c && c->connecting && c->fd < 0 && sk__conn_reading(c)) {
        if (j->fd < 0) {
            fail(c, j->fd);
        } else {
            c->fd = j->fd; /* connected: the loop sees it writable at once */
            j->fd = -1;
            if (c->owner->watch)
                c->owner->watch(c->owner, c);
        }
    }
    job_free(j); /* a connection gone meanwhile: its socket is closed here */
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct sk__link *l = j->link;
    j->fd = sk_connect(j->address, j->timeout_ms);
    if (j->fd >= 0 && sk_set_nonblocking(j->fd, true) < 0) {
        close(j->fd);
        j->fd = -EIO;
    }
    if (j->fd >= 0 && j->nodelay) /* fails, harmlessly, on a unix socket */
        setsockopt(j->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    pthread_mutex_lock(&l->lock); /* the server exists while it is held */
    int rc = l->s ? sk_server_post(l->s, j->id, job_done, j) : -ENOENT;
    pthread_mutex_unlock(&l->lock);
    if (rc < 0) /* gone, or its loop is full: its own timeout ends it */
        job_free(j);
    sk__link_drop(l);
    return NULL;
}

static int start_job(sk_server *s, sk_conn *c, char *address, int timeout_ms)
{
    struct job *j = malloc(sizeof(*j));
    if (!j) {
        free(address);
        return -ENOMEM;
    }
    *j = (struct job){.link = s->link, .id = c->id, .address = address,
                      .timeout_ms = timeout_ms, .nodelay = s->cfg.nodelay, .fd = -1};
    pthread_mutex_lock(&s->link->lock);
    s->link->refs++;
    pthread_mutex_unlock(&s->link->lock);
    pthread_attr_t attr;
    pthread_t tid;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 << 10); /* the resolver's needs, not 8 MiB */
        rc = pthread_create(&tid, &attr, job_main, j);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        sk__link_drop(s->link);
        job_free(j);
        return -rc;
    }
    return 0;
}

/* ---- on the loop --------------------------------------------------------- */

sk_conn *sk__conn_dial(sk_server *s, size_t size, struct sk__owner *owner, struct sk__dial *d)
{
    sk_conn *c = sk__conn_new_outbound(s, size, owner, d->address ? NULL : &d->addr,
                                       d->timeout_ms);
    if (!c)
        return NULL;
    c->data = d->data;
    if (d->tls && sk__tls_attach(c, d->tls, d->host) < 0) {
        fail(c, -ENOMEM);
        return c;
    }
    char *name = d->address;
    d->address = NULL; /* taken over */
    const struct sockaddr *sa = &d->addr.u.sa;
    if (!name) {
        c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            fail(c, -errno);
            return c;
        }
        if (sa->sa_family != AF_UNIX && s->cfg.nodelay)
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        if (connect(c->fd, sa, d->addr.len) == 0 || errno == EINPROGRESS)
            return c; /* done when writable */
        int err = -errno;
        if (sa->sa_family != AF_UNIX || err != -EAGAIN) {
            fail(c, err);
            return c;
        }
        /* A unix listener's queue is full: wait for room on a helper thread. */
        close(c->fd);
        c->fd = -1;
        char text[SK_ADDR_STRLEN];
        if (sk_addr_format(&d->addr, text, sizeof(text)) < 0 || !(name = strdup(text))) {
            fail(c, err);
            return c;
        }
    }
    int rc = start_job(s, c, name, d->timeout_ms);
    if (rc < 0)
        fail(c, rc);
    return c;
}

void sk__dial_refuse(sk_server *s, struct sk__dial *d, int err)
{
    sk_conn *c = sk__conn_new_outbound(s, sizeof(sk_conn), &s->plain_owner, NULL, 1);
    if (!c)
        return;
    c->data = d->data;
    fail(c, err);
    while (!sk__conn_settle(c)) /* its output is discarded: done at once */
        ;
    sk__conn_free(c);
}

/* Posted to the server's home loop: a connection asked for outside any loop. */
static void dial_at_home(sk_server *s, sk_conn *unused, void *arg)
{
    struct sk__dial *d = arg;
    (void)unused;
    if (sk__here.s == s && sk__here.owner->dial)
        sk__here.owner->dial(sk__here.owner, d, NULL);
    else /* the run ended first (or never began): it fails, as promised, once */
        sk__dial_refuse(s, d, -ESHUTDOWN);
    sk__dial_free(d); /* its address, if the dial did not take it */
}

/* ---- the public API ----------------------------------------------------- */

static int dial(sk_server *s, const char *address, int timeout_ms, sk_tls *tls,
                const char *host, void *data, sk_conn **conn)
{
    struct sk__hostport hp;
    struct sk__dial d = {.timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS,
                         .data = data};
    if (conn)
        *conn = NULL;
    if (!s || !address)
        return -EINVAL;
    int rc = sk__hostport_target(address, &hp, &d.addr);
    if (rc < 0 && rc != SK_EAI_NONAME)
        return rc;
    if (sk__stopping(s))
        return -ESHUTDOWN;
    if (!(s->backend->caps & SK__CAP_LOOP)) /* a program's own backend runs no loop of ours */
        return -ENOTSUP;
    if (tls) {
        d.host = host ? strdup(host) : hp.kind == SK__HOST ? strdup(hp.host) : NULL;
        if (!d.host && (host || hp.kind == SK__HOST))
            return -ENOMEM;
        d.tls = sk__tls_ref(tls);
    }
    if (rc < 0 && !(d.address = strdup(address))) {
        dial_clear(&d);
        return -ENOMEM;
    }
    if (sk__here.s == s && sk__here.owner->dial) { /* a callback of this server's loop */
        rc = sk__here.owner->dial(sk__here.owner, &d, conn);
        dial_clear(&d);
        return rc;
    }
    struct sk__dial *copy = malloc(sizeof(*copy));
    if (!copy) {
        dial_clear(&d);
        return -ENOMEM;
    }
    *copy = d;
    rc = sk_server_post(s, 0, dial_at_home, copy);
    if (rc < 0)
        sk__dial_free(copy);
    return rc;
}

int sk_server_connect(sk_server *s, const char *address, int timeout_ms, void *data,
                      sk_conn **conn)
{
    return dial(s, address, timeout_ms, NULL, NULL, data, conn);
}

int sk_server_connect_tls(sk_server *s, const char *address, int timeout_ms, sk_tls *tls,
                          const char *host, void *data, sk_conn **conn)
{
    if (conn)
        *conn = NULL;
    if (!sk_tls_available())
        return SK_ENOTLS;
    if (!tls || sk__tls_is_server(tls) || !address)
        return -EINVAL;
    if (!host && strncmp(address, "unix:", 5) == 0 && !sk__tls_insecure(tls))
        return -EINVAL; /* nothing to check its certificate against */
    return dial(s, address, timeout_ms, tls, host, data, conn);
}

int sk_conn_error(const sk_conn *c)
{
    return c ? c->error : 0;
}

bool sk_conn_outbound(const sk_conn *c)
{
    return c && c->outbound;
}
