/* SPDX-License-Identifier: MIT */
/* The server: configuration, binding, run and stop, and what the registry
 * answers through the public API. Listening sockets are listener.c's, the
 * open connections registry.c's. */
#include "server_internal.h"
#include "handover.h"
#include "tls.h"

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
#include <sys/un.h>
#include <unistd.h>

/* The server each signal stops (sk_server_stop_on_signal) or drains
 * (sk_server_drain_on_signal). */
static sk_server *signal_servers[NSIG];
static bool signal_drains[NSIG];

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
        .grace_ms = 30000,
        .nodelay = true,
        .high = 64 << 10,
        .low = 16 << 10,
    };
    s->backend = sk__backend_default();
    sk__listeners_init(&s->lis);
    if ((s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        goto free_s;
    if ((s->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        goto close_stop;
    if (sk__registry_init(&s->reg) < 0)
        goto close_drain;
    if (pthread_mutex_init(&s->state_lock, NULL) != 0)
        goto destroy_reg;
    if (pthread_mutex_init(&s->plain_lock, NULL) != 0)
        goto destroy_state;
    if (sk__posts_open(&s->posts, -1) < 0)
        goto destroy_plain;
    if (!(s->link = calloc(1, sizeof(*s->link))) || pthread_mutex_init(&s->link->lock, NULL) != 0)
        goto close_posts;
    s->link->s = s;
    s->home_posts = &s->posts;
    s->link->refs = 1;
    s->plain_owner.ctr = &s->reg.ctr;
    s->plain_owner.lock = &s->plain_lock;
    sk__timers_init(&s->timers);
    if (address && sk_server_add_listen(s, address) < 0) {
        sk_server_free(s);
        return NULL;
    }
    return s;
close_posts:
    free(s->link);
    sk__posts_close(&s->posts, s, true);
destroy_plain:
    pthread_mutex_destroy(&s->plain_lock);
destroy_state:
    pthread_mutex_destroy(&s->state_lock);
destroy_reg:
    sk__registry_destroy(&s->reg);
close_drain:
    close(s->drain_fd);
close_stop:
    close(s->stop_fd);
free_s:
    free(s);
    return NULL;
}

void sk_server_free(sk_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < NSIG; i++) /* a late signal must not reach freed memory */
        __atomic_compare_exchange_n(&signal_servers[i], &(sk_server *){s}, NULL, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    sk__server_timers_free(s);
    sk__posts_close(&s->posts, s, true); /* what no run took: each runs once */
    pthread_mutex_lock(&s->link->lock); /* no helper thread reaches it after this */
    s->link->s = NULL;
    pthread_mutex_unlock(&s->link->lock);
    sk__link_drop(s->link);
    sk__handover_free(s->handover);
    sk__listeners_free(&s->lis);
    sk_tls_free(s->tls);
    close(s->stop_fd);
    close(s->drain_fd);
    sk__registry_destroy(&s->reg);
    pthread_mutex_destroy(&s->state_lock);
    pthread_mutex_destroy(&s->plain_lock);
    free(s->plain_owner.scratch);
    free(s);
}

/* Configuration may change until the server runs; what shapes the listeners,
 * until it is bound. */
static int check_idle(const sk_server *s, bool shapes_listeners)
{
    if (!s)
        return -EINVAL;
    if (__atomic_load_n(&s->running, __ATOMIC_ACQUIRE) || (shapes_listeners && s->lis.n > 0))
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
    return sk__listeners_add(&s->lis, address);
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
    const struct sk__backend *b = sk__backend_ops(name);
    if (!b)
        return SK_EBACKEND;
    s->backend = b;
    return 0;
}

int sk_server_set_tls(sk_server *s, sk_tls *tls)
{
    int rc = check_idle(s, false);
    if (rc < 0)
        return rc;
    if (!sk_tls_available())
        return SK_ENOTLS;
    if (tls && !sk__tls_is_server(tls))
        return -EINVAL;
    if (!(s->backend->caps & SK__CAP_LOOP)) /* a program's own loop: not supported */
        return -ENOTSUP;
    sk_tls_free(s->tls);
    s->tls = tls ? sk__tls_ref(tls) : NULL;
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
    SET_OR_FAIL(s, false, true, s->cfg.idle_ms = idle_ms < 0 ? 0 : idle_ms); /* < 0: none */
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

int sk_server_set_watermarks(sk_server *s, size_t high, size_t low)
{
    SET_OR_FAIL(s, false, high >= 1 && low < high, (s->cfg.high = high, s->cfg.low = low));
}

int sk_server_set_drain_timeout(sk_server *s, int drain_ms)
{
    SET_OR_FAIL(s, false, drain_ms >= 0, s->cfg.drain_ms = drain_ms);
}

int sk_server_set_grace_timeout(sk_server *s, int grace_ms)
{
    SET_OR_FAIL(s, false, grace_ms >= 0, s->cfg.grace_ms = grace_ms);
}

int sk_server_set_handover(sk_server *s, const char *path)
{
    int rc = check_idle(s, true);
    if (rc < 0)
        return rc;
    if (!path || !path[0] || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return -EINVAL;
    struct sk__handover *h = sk__handover_new(path);
    if (!h)
        return -ENOMEM;
    sk__handover_free(s->handover);
    s->handover = h;
    return 0;
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

int sk_server_on_drain(sk_server *s, sk_conn_fn fn)
{
    SET_OR_FAIL(s, false, true, s->cfg.on_drain = fn);
}

int sk_server_on_eof(sk_server *s, sk_conn_fn fn)
{
    SET_OR_FAIL(s, false, true, s->cfg.on_eof = fn);
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
    return s ? s->backend->ops.name : "?";
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
    if (strcmp(name, "handover") == 0)
        return sk_server_set_handover(s, value);
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
        {"grace-timeout", 0, INT32_MAX},
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
        case 5: return sk_server_set_drain_timeout(s, (int)n);
        default: return sk_server_set_grace_timeout(s, (int)n);
        }
    }
    return -ENOENT;
}

/* ---- stop on a signal -------------------------------------------------- */

static void stop_from_signal(int signo)
{
    sk_server *s = __atomic_load_n(&signal_servers[signo], __ATOMIC_ACQUIRE);
    if (!s)
        return;
    /* A drain's signal again, during the drain: stop at once. */
    if (__atomic_load_n(&signal_drains[signo], __ATOMIC_ACQUIRE) &&
        !__atomic_load_n(&s->drain_at, __ATOMIC_ACQUIRE) && (s->backend->caps & SK__CAP_DRAIN))
        sk__server_drain(s);
    else
        sk__server_stop(s);
}

static int on_signal(sk_server *s, int signo, bool drain)
{
    if (!s || signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    struct sigaction sa = {.sa_handler = stop_from_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    __atomic_store_n(&signal_drains[signo], drain, __ATOMIC_RELEASE);
    __atomic_store_n(&signal_servers[signo], s, __ATOMIC_RELEASE);
    return sigaction(signo, &sa, NULL) < 0 ? -errno : 0;
}

int sk_server_stop_on_signal(sk_server *s, int signo)
{
    return on_signal(s, signo, false);
}

int sk_server_drain_on_signal(sk_server *s, int signo)
{
    return on_signal(s, signo, true);
}

/* ---- binding ----------------------------------------------------------- */

/* One listener per worker (the kernel spreads connections) only when the
 * policy allows port sharing, the backend serves each set with a worker of
 * its own, and every address is TCP; otherwise one set. */
static int listener_sets(const sk_server *s)
{
    if (s->cfg.workers <= 1 || !(s->cfg.reuse & SK_REUSE_PORT) ||
        !(s->backend->caps & SK__CAP_LISTENER_SETS))
        return 1;
    for (int i = 0; i < s->lis.naddr; i++)
        if (strncmp(s->lis.addresses[i], "unix:", 5) == 0 ||
            sk__address_inherited(s->lis.addresses[i]))
            return 1;
    return s->cfg.workers;
}

int sk_server_bind(sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (s->lis.n > 0)
        return 0;
    /* A backend that cannot run here says so now, before anything is
     * bound or taken over from a running server. */
    int rc = s->backend->usable ? s->backend->usable() : 0;
    if (rc < 0)
        return rc;
    /* A server answering at the handover socket gives its listeners, and
     * the addresses are not bound: they are served already. */
    rc = s->handover ? sk__handover_take(s->handover, &s->lis) : 0;
    if (rc == 0 && s->lis.naddr == 0)
        rc = -EDESTADDRREQ;
    else if (rc == 0)
        rc = sk__listeners_bind(&s->lis, s->cfg.reuse, listener_sets(s));
    if (rc >= 0 && s->handover)
        rc = sk__handover_listen(s->handover);
    return rc < 0 ? rc : 0;
}

int sk_server_address(const sk_server *s, char *buf, size_t size)
{
    if (!s || !buf || size == 0)
        return -EINVAL;
    if (s->lis.n == 0)
        return -ENOTCONN;
    return sk_local_addr(s->lis.fd[0], buf, size);
}

int sk_server_listener(const sk_server *s, int index)
{
    if (!s || index < 0 || index >= s->lis.n)
        return -ENOENT;
    return s->lis.fd[index];
}

/* ---- run and stop ------------------------------------------------------ */

int sk_server_run(sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (__atomic_exchange_n(&s->running, 1, __ATOMIC_ACQ_REL))
        return -EBUSY;
    /* No address at all: a client program, which runs its outbound connections only. */
    int rc = s->lis.naddr || s->lis.n ? sk_server_bind(s) : 0;
    if (rc == 0 && s->handover)
        rc = sk__handover_start(s->handover, s);
    if (rc == 0) {
        sk__listeners_hold_spare(&s->lis, true);
        rc = s->backend->ops.run(s);
    }
    sk__handover_stop(s->handover);
    sk__listeners_hold_spare(&s->lis, false);
    sk__server_timers_stop(s); /* the program's still, for another run */
    sk__posts_run(&s->posts, s); /* posted to the server: none waits for another run */
    /* Ready for another run: clear the stop. */
    uint64_t v;
    while (read(s->stop_fd, &v, sizeof(v)) > 0)
        ;
    while (read(s->drain_fd, &v, sizeof(v)) > 0)
        ;
    __atomic_store_n(&s->drain_at, 0, __ATOMIC_RELEASE);
    sk__registry_close_all(&s->reg, false);
    __atomic_store_n(&s->stopping, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
    return rc;
}

void sk_server_stop(sk_server *s)
{
    if (!s)
        return;
    sk__server_stop(s);
}

int sk_server_drain(sk_server *s)
{
    if (!s)
        return -EINVAL;
    if (!(s->backend->caps & SK__CAP_DRAIN))
        return -EOPNOTSUPP;
    sk__server_drain(s);
    return 0;
}

bool sk_server_draining(const sk_server *s)
{
    return s && __atomic_load_n(&s->drain_at, __ATOMIC_ACQUIRE) != 0;
}

bool sk_server_stopping(const sk_server *s)
{
    return s && sk__stopping(s);
}

int sk_server_stop_fd(const sk_server *s)
{
    return s ? s->stop_fd : -EINVAL;
}

/* ---- a program's own backend ------------------------------------------ */

int sk_server_accept(sk_server *s, int lfd, sk_conn **out)
{
    if (!s || !out)
        return -EINVAL;
    *out = NULL;
    if (!s->plain_owner.scratch && !(s->plain_owner.scratch = malloc(SK__SCRATCH + 1)))
        return -ENOMEM;
    sk_addr peer;
    int fd = sk__accept_fd(s, lfd, &s->reg.ctr, &peer);
    if (fd <= 0)
        return fd;
    s->plain_owner.now = sk__now_ms();
    /* Its loop runs it; a broadcast from another thread may queue to it. */
    sk_conn *c = sk__conn_new(s, sizeof(sk_conn), fd, &s->plain_owner, &peer);
    if (!c) {
        sk__registry_release(&s->reg);
        sk__count(&s->reg.ctr, SK__C_REFUSED, 1);
        close(fd);
        return 0;
    }
    sk__conn_open(c);
    *out = c;
    return 1;
}

/* ---- what the registry answers ----------------------------------------- */

static void read_stats(const sk_server *s, sk_stats *st)
{
    unsigned long long v[SK__NCOUNTERS];
    sk__registry_totals((struct sk__registry *)&s->reg, v); /* its lock is not observable state */
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
}

#define STATS_SIZE_1_0 SK__SIZE_THROUGH(sk_stats, buffered)

int sk_server_stats(const sk_server *s, sk_stats *st)
{
    return sk_server_stats_sized(s, st, STATS_SIZE_1_0);
}

/* A struct from older headers gets what fits; one from newer headers gets
 * zeros past what this library keeps. */
int sk_server_stats_sized(const sk_server *s, sk_stats *st, size_t size)
{
    if (!s || !st || size < STATS_SIZE_1_0)
        return -EINVAL;
    sk_stats all;
    read_stats(s, &all);
    memcpy(st, &all, size < sizeof(all) ? size : sizeof(all));
    if (size > sizeof(all))
        memset((char *)st + sizeof(all), 0, size - sizeof(all));
    return 0;
}

int sk_server_conn_count(const sk_server *s)
{
    if (!s)
        return -EINVAL;
    return sk__registry_count((struct sk__registry *)&s->reg);
}

int sk_server_broadcast(sk_server *s, sk_conn *except, const void *data, size_t len)
{
    if (!s || (!data && len > 0))
        return -EINVAL;
    if (!__atomic_load_n(&s->running, __ATOMIC_ACQUIRE))
        return -ENOTCONN;
    if (len == 0)
        return 0;
    if (s->backend->ops.broadcast)
        return s->backend->ops.broadcast(s, except, data, len);
    return sk__conn_broadcast_direct(&s->reg, except, data, len);
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
    return sk__registry_names(&s->reg, fn, arg);
}
