/* SPDX-License-Identifier: MIT */
/* The server: configuration, listeners, run and stop, the registry of open
 * connections, admission (max_conns, EMFILE) and what the registry answers. */
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* The server each signal stops (sk_server_stop_on_signal). */
static sk_server *signal_servers[NSIG];

sk_server *sk_server_new(const char *address)
{
    sk_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = (struct sk__config){
        .reuse = SK_REUSE_ADDR,
        .max_conns = 1024,
        .max_line = 4096,
        .max_output = 1 << 20,
        .drain_ms = 5000,
        .nodelay = true,
    };
    s->backend = &sk__backend_epoll_et;
    s->ctr.shared = true;
    s->count_ptr = &s->count;
    s->plain_owner.ctr = &s->ctr;
    s->reserve_fd = -1;
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd < 0 || pthread_mutex_init(&s->reg_lock, NULL) != 0) {
        if (s->stop_fd >= 0)
            close(s->stop_fd);
        free(s);
        return NULL;
    }
    if (address && sk_server_add_listen(s, address) < 0) {
        sk_server_free(s);
        return NULL;
    }
    return s;
}

static void close_listeners(sk_server *s)
{
    for (int i = 0; i < s->nlisteners; i++)
        close(s->listeners[i]);
    free(s->listeners);
    s->listeners = NULL;
    s->nlisteners = s->nsets = 0;
    for (int i = 0; i < SK__MAX_LISTEN; i++) {
        if (s->unix_paths[i])
            unlink(s->unix_paths[i]);
        free(s->unix_paths[i]);
        s->unix_paths[i] = NULL;
    }
}

void sk_server_free(sk_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < NSIG; i++) /* a late signal must not reach freed memory */
        __atomic_compare_exchange_n(&signal_servers[i], &(sk_server *){s}, NULL, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    close_listeners(s);
    for (int i = 0; i < s->naddr; i++)
        free(s->addresses[i]);
    close(s->stop_fd);
    pthread_mutex_destroy(&s->reg_lock);
    free(s->scratch);
    free(s);
}

/* Configuration may change until the server runs; what shapes the listeners,
 * until it is bound. */
static int check_idle(const sk_server *s, bool shapes_listeners)
{
    if (!s)
        return -EINVAL;
    if (__atomic_load_n(&s->running, __ATOMIC_ACQUIRE) || (shapes_listeners && s->listeners))
        return -EBUSY;
    return 0;
}

#define SET_OR_FAIL(s, shapes, cond, assign)                                                       \
    do {                                                                                           \
        int rc_ = check_idle(s, shapes);                                                           \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
        if (!(cond))                                                                               \
            return -EINVAL;                                                                        \
        assign;                                                                                    \
        return 0;                                                                                  \
    } while (0)

int sk_server_add_listen(sk_server *s, const char *address)
{
    int rc = check_idle(s, true);
    if (rc < 0)
        return rc;
    if (!address)
        return -EINVAL;
    if (s->naddr == SK__MAX_LISTEN)
        return -ENOSPC;
    if (!(s->addresses[s->naddr] = strdup(address)))
        return -ENOMEM;
    s->naddr++;
    return 0;
}

int sk_server_set_reuse(sk_server *s, sk_reuse reuse)
{
    SET_OR_FAIL(s, true, (unsigned)reuse <= SK_REUSE_ADDR_PORT, s->cfg.reuse = reuse);
}

int sk_server_set_backend(sk_server *s, const char *name)
{
    int rc = check_idle(s, true);
    if (rc < 0)
        return rc;
    if (!name)
        return -EINVAL;
    const sk_backend *b = sk_backend_find(name);
    if (!b)
        return SK_EBACKEND;
    s->backend = b;
    return 0;
}

int sk_server_set_workers(sk_server *s, int workers)
{
    SET_OR_FAIL(s, true, workers >= 0 && workers <= SK__MAX_WORKERS, s->cfg.workers = workers);
}

int sk_server_set_max_conns(sk_server *s, int max_conns)
{
    SET_OR_FAIL(s, false, max_conns >= 1, s->cfg.max_conns = max_conns);
}

int sk_server_set_idle_timeout(sk_server *s, int idle_ms)
{
    SET_OR_FAIL(s, false, idle_ms >= 0, s->cfg.idle_ms = idle_ms);
}

int sk_server_set_framing(sk_server *s, sk_framing framing, size_t max_line)
{
    bool ok = framing == SK_FRAMING_RAW ||
              (framing == SK_FRAMING_LINES && max_line >= 1 && max_line <= (16u << 20));
    SET_OR_FAIL(s, false, ok, {
        s->cfg.framing = framing;
        if (framing == SK_FRAMING_LINES)
            s->cfg.max_line = max_line;
    });
}

int sk_server_set_max_output(sk_server *s, size_t max_bytes)
{
    SET_OR_FAIL(s, false, max_bytes >= 1, s->cfg.max_output = max_bytes);
}

int sk_server_set_drain_timeout(sk_server *s, int drain_ms)
{
    SET_OR_FAIL(s, false, drain_ms >= 0, s->cfg.drain_ms = drain_ms);
}

int sk_server_set_nodelay(sk_server *s, bool on)
{
    SET_OR_FAIL(s, false, true, s->cfg.nodelay = on);
}

int sk_server_on_open(sk_server *s, sk_open_fn fn)
{
    SET_OR_FAIL(s, false, true, s->cfg.on_open = fn);
}

int sk_server_on_data(sk_server *s, sk_data_fn fn)
{
    SET_OR_FAIL(s, false, true, s->cfg.on_data = fn);
}

int sk_server_on_close(sk_server *s, sk_close_fn fn)
{
    SET_OR_FAIL(s, false, true, s->cfg.on_close = fn);
}

void sk_server_set_data(sk_server *s, void *data)
{
    if (s)
        s->data = data;
}

void *sk_server_data(const sk_server *s)
{
    return s ? s->data : NULL;
}

const char *sk_server_backend(const sk_server *s)
{
    return s ? s->backend->name : "?";
}

/* ---- options by name -------------------------------------------------- */

static int parse_number(const char *text, long long min, long long max, long long *out)
{
    char *end;
    if (!text || !*text || *text == '-' || *text == '+' || *text == ' ')
        return -EINVAL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int sk_server_set_option(sk_server *s, const char *name, const char *value)
{
    static const char *const reuse_names[] = {"none", "addr", "port", "addr+port"};
    long long n;
    if (!s || !name || !value)
        return -EINVAL;
    if (strcmp(name, "listen") == 0)
        return sk_server_add_listen(s, value);
    if (strcmp(name, "backend") == 0)
        return sk_server_set_backend(s, value);
    if (strcmp(name, "reuse") == 0) {
        for (int i = 0; i < 4; i++)
            if (strcmp(value, reuse_names[i]) == 0)
                return sk_server_set_reuse(s, (sk_reuse)i);
        return -EINVAL;
    }
    if (strcmp(name, "framing") == 0) {
        if (strcmp(value, "raw") && strcmp(value, "lines"))
            return -EINVAL;
        return sk_server_set_framing(s, value[0] == 'r' ? SK_FRAMING_RAW : SK_FRAMING_LINES,
                                     s->cfg.max_line);
    }
    if (strcmp(name, "nodelay") == 0) {
        if (strcmp(value, "on") && strcmp(value, "off"))
            return -EINVAL;
        return sk_server_set_nodelay(s, value[1] == 'n');
    }
    struct {
        const char *name;
        long long min, max;
    } const numeric[] = {
        {"workers", 0, SK__MAX_WORKERS}, {"max-conns", 1, INT32_MAX},
        {"idle-timeout", 0, INT32_MAX},  {"max-line", 1, 16 << 20},
        {"max-output", 1, INT64_MAX},    {"drain-timeout", 0, INT32_MAX},
    };
    for (size_t i = 0; i < sizeof(numeric) / sizeof(numeric[0]); i++) {
        if (strcmp(name, numeric[i].name) != 0)
            continue;
        int rc = parse_number(value, numeric[i].min, numeric[i].max, &n);
        if (rc < 0)
            return rc;
        switch (i) {
        case 0: return sk_server_set_workers(s, (int)n);
        case 1: return sk_server_set_max_conns(s, (int)n);
        case 2: return sk_server_set_idle_timeout(s, (int)n);
        case 3: return sk_server_set_framing(s, SK_FRAMING_LINES, (size_t)n);
        case 4: return sk_server_set_max_output(s, (size_t)n);
        default: return sk_server_set_drain_timeout(s, (int)n);
        }
    }
    return -ENOENT;
}

/* ---- stop on a signal -------------------------------------------------- */

static void stop_from_signal(int signo)
{
    sk_server *s = __atomic_load_n(&signal_servers[signo], __ATOMIC_ACQUIRE);
    if (s)
        sk_server_stop(s);
}

int sk_server_stop_on_signal(sk_server *s, int signo)
{
    if (!s || signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    struct sigaction sa = {.sa_handler = stop_from_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    __atomic_store_n(&signal_servers[signo], s, __ATOMIC_RELEASE);
    return sigaction(signo, &sa, NULL) < 0 ? -errno : 0;
}

/* ---- binding ----------------------------------------------------------- */

/* The address text with its port replaced: how later workers find port 0's pick. */
static int with_port(const char *address, int port, char *out, size_t size)
{
    const char *colon = strrchr(address, ':');
    int n = snprintf(out, size, "%.*s:%d", (int)(colon - address), address, port);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* One listener per worker (the kernel spreads connections) only when the
 * policy allows port sharing and every address is TCP; otherwise one set. */
static int listener_sets(const sk_server *s)
{
    if (s->cfg.workers <= 1 || !(s->cfg.reuse & SK_REUSE_PORT) ||
        strncmp(s->backend->name, "epoll", 5) != 0)
        return 1;
    for (int i = 0; i < s->naddr; i++)
        if (strncmp(s->addresses[i], "unix:", 5) == 0)
            return 1;
    return s->cfg.workers;
}

static int bind_one(sk_server *s, int set, int a)
{
    char text[600];
    const char *address = s->addresses[a];
    if (set > 0) {
        int port = sk_local_port(s->listeners[a]);
        if (port < 0 || with_port(address, port, text, sizeof(text)) < 0)
            return port < 0 ? port : -ENAMETOOLONG;
        address = text;
    }
    int fd = sk_listen(address, s->cfg.reuse, 0);
    if (fd < 0)
        return fd;
    s->listeners[s->nlisteners++] = fd;
    if (sk_set_nonblocking(fd, true) < 0)
        return -EBADF;
    if (set == 0 && strncmp(address, "unix:", 5) == 0 && address[5] != '@')
        s->unix_paths[a] = strdup(address + 5);
    return 0;
}

int sk_server_bind(sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->listeners)
        return 0;
    if (s->naddr == 0)
        return -EDESTADDRREQ;
    int sets = listener_sets(s);
    s->listeners = calloc((size_t)sets * (size_t)s->naddr, sizeof(int));
    if (!s->listeners)
        return -ENOMEM;
    for (int set = 0; set < sets; set++) {
        for (int a = 0; a < s->naddr; a++) {
            int rc = bind_one(s, set, a);
            if (rc < 0) {
                close_listeners(s);
                return rc;
            }
        }
    }
    s->nsets = sets;
    return 0;
}

int sk_server_address(const sk_server *s, char *buf, size_t size)
{
    if (!s || !buf || size == 0)
        return -EINVAL;
    if (!s->listeners)
        return -ENOTCONN;
    return sk_local_addr(s->listeners[0], buf, size);
}

int sk_server_listener(const sk_server *s, int index)
{
    if (!s || index < 0 || index >= s->nlisteners)
        return -ENOENT;
    return s->listeners[index];
}

/* ---- run and stop ------------------------------------------------------ */

int sk_server_run(sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (__atomic_exchange_n(&s->running, 1, __ATOMIC_ACQ_REL))
        return -EBUSY;
    int rc = sk_server_bind(s);
    if (rc == 0) {
        if (s->reserve_fd < 0)
            s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        rc = s->backend->run(s);
    }
    if (s->reserve_fd >= 0) {
        close(s->reserve_fd);
        s->reserve_fd = -1;
    }
    /* Ready for another run: clear the stop. */
    uint64_t v;
    while (read(s->stop_fd, &v, sizeof(v)) > 0)
        ;
    __atomic_store_n(&s->stopping, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
    return rc;
}

void sk_server_stop(sk_server *s)
{
    if (!s)
        return;
    int saved = errno; /* async-signal-safe: an atomic store and a write() */
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    ssize_t n = write(s->stop_fd, &one, sizeof(one));
    (void)n;
    errno = saved;
}

bool sk__stopping(const sk_server *s)
{
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) != 0;
}

bool sk_server_stopping(const sk_server *s)
{
    return s && sk__stopping(s);
}

int sk_server_stop_fd(const sk_server *s)
{
    return s ? s->stop_fd : -EINVAL;
}

/* ---- admission --------------------------------------------------------- */

bool sk__server_admit(sk_server *s)
{
    int *counter = sk__server_counter(s);
    int n = __atomic_load_n(counter, __ATOMIC_RELAXED);
    do {
        if (n >= s->cfg.max_conns)
            return false;
    } while (!__atomic_compare_exchange_n(counter, &n, n + 1, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

/* Out of descriptors: give up the spare one, accept and close a pending
 * connection (it is refused rather than left to wake us forever), take the
 * spare back. */
static int refuse_without_fd(sk_server *s, int lfd, struct sk__counters *ctr)
{
    int spare = __atomic_exchange_n(&s->reserve_fd, -1, __ATOMIC_ACQ_REL);
    if (spare < 0)
        return -EMFILE;
    close(spare);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        sk__count(ctr, SK__C_REFUSED, 1);
        close(fd);
    }
    spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    __atomic_store_n(&s->reserve_fd, spare, __ATOMIC_RELEASE);
    return fd >= 0 ? 1 : 0;
}

int sk__server_accept_fd(sk_server *s, int lfd, struct sk__counters *ctr, sk_addr *peer)
{
    for (int refused = 0; refused < 64;) {
        socklen_t len = sizeof(peer->u);
        int fd = accept4(lfd, peer ? &peer->u.sa : NULL, peer ? &len : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer)
                peer->len = len;
            if (sk__server_admit(s)) {
                if (s->cfg.nodelay)
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
                return fd;
            }
            sk__count(ctr, SK__C_REFUSED, 1); /* counted before the peer can see it */
            close(fd);
            refused++;
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            refused++;
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return 0;
        case EMFILE:
        case ENFILE: {
            int rc = refuse_without_fd(s, lfd, ctr);
            if (rc <= 0)
                return rc;
            refused++;
            continue;
        }
        default:
            return -errno;
        }
    }
    return 0;
}

int sk_server_accept(sk_server *s, int lfd, sk_conn **out)
{
    if (!s || !out)
        return -EINVAL;
    *out = NULL;
    if (!s->scratch && !(s->scratch = malloc(SK__SCRATCH + 1)))
        return -ENOMEM;
    sk_addr peer;
    int fd = sk__server_accept_fd(s, lfd, &s->ctr, &peer);
    if (fd <= 0)
        return fd;
    s->plain_owner.now = sk__now_ms();
    sk_conn *c = sk__conn_new(s, fd, &s->plain_owner, NULL, &peer);
    if (!c) {
        sk__server_release(s);
        sk__count(&s->ctr, SK__C_REFUSED, 1);
        close(fd);
        return 0;
    }
    sk__conn_open(c);
    *out = c;
    return 1;
}

/* ---- counters ---------------------------------------------------------- */

void sk__server_add_counters(sk_server *s, struct sk__counters *c)
{
    pthread_mutex_lock(&s->reg_lock);
    c->next = s->extra_ctr;
    s->extra_ctr = c;
    pthread_mutex_unlock(&s->reg_lock);
}

/* A departing block's counts are folded into the shared one. */
void sk__server_remove_counters(sk_server *s, struct sk__counters *c)
{
    pthread_mutex_lock(&s->reg_lock);
    for (struct sk__counters **p = &s->extra_ctr; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    for (int i = 0; i < SK__NCOUNTERS; i++)
        sk__count(&s->ctr, i, (long long)__atomic_load_n(&c->v[i], __ATOMIC_RELAXED));
    pthread_mutex_unlock(&s->reg_lock);
}

int sk_server_stats(const sk_server *s, sk_stats *st)
{
    if (!s || !st)
        return -EINVAL;
    unsigned long long v[SK__NCOUNTERS];
    sk_server *m = (sk_server *)s; /* the lock is not part of the observable state */
    pthread_mutex_lock(&m->reg_lock);
    for (int i = 0; i < SK__NCOUNTERS; i++) {
        v[i] = __atomic_load_n(&s->ctr.v[i], __ATOMIC_RELAXED);
        for (struct sk__counters *c = s->extra_ctr; c; c = c->next)
            v[i] += __atomic_load_n(&c->v[i], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&m->reg_lock);
    *st = (sk_stats){
        .accepted = v[SK__C_ACCEPTED],
        .refused = v[SK__C_REFUSED],
        .closed = v[SK__C_CLOSED],
        .bytes_in = v[SK__C_BYTES_IN],
        .bytes_out = v[SK__C_BYTES_OUT],
        .reads = v[SK__C_READS],
        .read_events = v[SK__C_READ_EVENTS],
        .buffered = v[SK__C_BUFFERED],
    };
    return 0;
}

/* ---- what the registry answers ----------------------------------------- */

int sk_server_conn_count(const sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->count_hook)
        return s->count_hook(s);
    return __atomic_load_n(sk__server_counter(s), __ATOMIC_ACQUIRE);
}

int sk__server_broadcast_direct(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    pthread_mutex_lock(&s->reg_lock);
    for (sk_conn *c = s->reg_head; c; c = c->rnext) {
        if (c == except)
            continue;
        if (c->lock)
            pthread_mutex_lock(c->lock);
        if (c->state == SK__OPEN && !c->pending)
            sk__conn_queue(c, data, len, false);
        if (c->lock)
            pthread_mutex_unlock(c->lock);
    }
    pthread_mutex_unlock(&s->reg_lock);
    return 0;
}

int sk_server_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    if (!s || (!data && len > 0))
        return -EINVAL;
    if (!__atomic_load_n(&s->running, __ATOMIC_ACQUIRE))
        return -ENOTCONN;
    if (len == 0)
        return 0;
    if (s->backend->broadcast)
        return s->backend->broadcast(s, except, data, len);
    return sk__server_broadcast_direct(s, except, data, len);
}

int sk_server_broadcastf(sk_server *s, sk_conn *except, const char *fmt, ...)
{
    char small[512], *text;
    va_list ap;
    if (!fmt)
        return -EINVAL;
    va_start(ap, fmt);
    int n = sk__vformat(small, sizeof(small), &text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return n;
    int rc = sk_server_broadcast(s, except, text, (size_t)n);
    if (text != small)
        free(text);
    return rc;
}

int sk_server_names(sk_server *s, sk_name_fn fn, void *arg)
{
    if (!s || !fn)
        return -EINVAL;
    if (s->names_hook)
        return s->names_hook(s, fn, arg);
    /* Copy under the lock, call back without it: fn may use the server. */
    size_t cap = 1024, used = 0;
    char *all = malloc(cap);
    int n = 0;
    if (!all)
        return -ENOMEM;
    pthread_mutex_lock(&s->reg_lock);
    for (sk_conn *c = s->reg_head; c; c = c->rnext) {
        const char *name = sk__conn_name_locked(c);
        size_t len = strlen(name) + 1;
        if (used + len > cap) {
            char *bigger = realloc(all, cap * 2 + len);
            if (!bigger)
                break;
            all = bigger;
            cap = cap * 2 + len;
        }
        memcpy(all + used, name, len);
        used += len;
        n++;
    }
    pthread_mutex_unlock(&s->reg_lock);
    for (size_t off = 0; off < used; off += strlen(all + off) + 1)
        fn(all + off, arg);
    free(all);
    return n;
}
