/* SPDX-License-Identifier: MIT */
/*
 * Fault injection, for the test binaries that link this file.
 *
 * These definitions of read, recv, send, sendmsg, accept4, epoll_ctl, epoll_wait, poll,
 * epoll_create1, eventfd, close, fork and pthread_create take precedence over the C library's for every
 * caller in the process, libsockkit included. Until fault_enable() they only
 * pass through; after it, in that process, they fail at random:
 *   read, recv, send, sendmsg  EINTR, EAGAIN, or a short count (sockets only)
 *   accept4         EMFILE, ENFILE, ECONNABORTED, EINTR
 *   epoll_ctl       ENOMEM on ADD and MOD of a connection socket
 *   fork            EAGAIN
 *   pthread_create  EAGAIN
 * and, once, when fault_fail_next() asks, with the errno it gives:
 *   epoll_wait, poll (of a set with a listening socket), epoll_create1, eventfd,
 *   epoll_ctl (ADD of a socket that does not listen)
 *
 * A real socket that says EAGAIN, or takes only part of a write, signals
 * again when it changes; an edge-triggered loop relies on that. So an
 * injected EAGAIN or short count on a registered descriptor owes its epoll
 * set an event, and the epoll_wait wrapper delivers it, as the next real edge
 * would. Faults are counted in a page shared with every process.
 */
#include "fault.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_accept4)(int, __SOCKADDR_ARG, socklen_t *restrict, int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_epoll_wait)(int, struct epoll_event *, int, int);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_epoll_create1)(int);
static int (*real_eventfd)(unsigned int, int);
static int (*real_close)(int);
static pid_t (*real_fork)(void);
static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                                  void *);

__attribute__((constructor)) static void find_real(void)
{
    *(void **)&real_read = dlsym(RTLD_NEXT, "read");
    *(void **)&real_recv = dlsym(RTLD_NEXT, "recv");
    *(void **)&real_send = dlsym(RTLD_NEXT, "send");
    *(void **)&real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
    *(void **)&real_accept4 = dlsym(RTLD_NEXT, "accept4");
    *(void **)&real_epoll_ctl = dlsym(RTLD_NEXT, "epoll_ctl");
    *(void **)&real_epoll_wait = dlsym(RTLD_NEXT, "epoll_wait");
    *(void **)&real_poll = dlsym(RTLD_NEXT, "poll");
    *(void **)&real_epoll_create1 = dlsym(RTLD_NEXT, "epoll_create1");
    *(void **)&real_eventfd = dlsym(RTLD_NEXT, "eventfd");
    *(void **)&real_close = dlsym(RTLD_NEXT, "close");
    *(void **)&real_fork = dlsym(RTLD_NEXT, "fork");
    *(void **)&real_pthread_create = dlsym(RTLD_NEXT, "pthread_create");
}

struct fault_counts *fault_counts;
static bool armed; /* this process injects (inherited by the children it forks) */

void fault_init(void)
{
    fault_counts = mmap(NULL, sizeof(*fault_counts), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
}

void fault_set_rate(int permille)
{
    __atomic_store_n(&fault_counts->rate, permille, __ATOMIC_RELEASE);
}

void fault_enable(int permille)
{
    fault_set_rate(permille);
    __atomic_store_n(&armed, true, __ATOMIC_RELEASE);
}

static void count(long *n)
{
    if (fault_counts)
        __atomic_add_fetch(n, 1, __ATOMIC_RELAXED);
}

static uint64_t rnd(void)
{
    static __thread uint64_t x;
    if (!x)
        x = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uint64_t)syscall(SYS_gettid) ^ 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static bool roll(void)
{
    if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE))
        return false;
    int rate = __atomic_load_n(&fault_counts->rate, __ATOMIC_ACQUIRE);
    return rate > 0 && (int)(rnd() % 1000) < rate;
}

/* The kind of a read/send fault takes turns (shared by every process and
 * thread), so each kind is a third of them however few there are. */
static unsigned io_kind(void)
{
    return (unsigned)(__atomic_fetch_add(&fault_counts->turn, 1, __ATOMIC_RELAXED) % 3);
}

static bool is_socket(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool is_listening(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* ---- what each epoll set watches, and the events it is owed ------------- */

#define MAX_FD 65536

struct watch {
    int epfd; /* 0: not registered */
    uint32_t events;
    epoll_data_t data;
    bool owed;
};
static struct watch watched[MAX_FD];
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;

static void owe(int fd)
{
    if (fd < 0 || fd >= MAX_FD)
        return;
    pthread_mutex_lock(&watch_lock);
    if (watched[fd].epfd)
        watched[fd].owed = true;
    pthread_mutex_unlock(&watch_lock);
}

/* ---- the wrappers ------------------------------------------------------ */

/* A read or send of n bytes on fd: false if it fails here (errno set), else
 * true with *n the bytes to try (fewer: a short read or write). */
static bool io_may_go(int fd, size_t *n)
{
    if (*n == 0 || !roll() || !is_socket(fd))
        return true;
    switch (io_kind()) {
    case 0:
        count(&fault_counts->eintr);
        errno = EINTR;
        return false;
    case 1:
        count(&fault_counts->eagain);
        owe(fd);
        errno = EAGAIN;
        return false;
    default:
        count(&fault_counts->short_io);
        owe(fd);
        *n = 1 + rnd() % *n;
        return true;
    }
}

ssize_t read(int fd, void *buf, size_t n)
{
    return io_may_go(fd, &n) ? real_read(fd, buf, n) : -1;
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    return io_may_go(fd, &n) ? real_recv(fd, buf, n, flags) : -1;
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    return io_may_go(fd, &n) ? real_send(fd, buf, n, flags) : -1;
}

/* A short count cuts the buffers at that many bytes. */
ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    size_t total = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        total += m->msg_iov[i].iov_len;
    size_t n = total;
    if (!io_may_go(fd, &n))
        return -1;
    if (n == total || m->msg_iovlen > 64)
        return real_sendmsg(fd, m, flags);
    struct iovec iov[64];
    struct msghdr cut = *m;
    size_t k = 0;
    for (; k < m->msg_iovlen && n > 0; k++) {
        iov[k] = m->msg_iov[k];
        iov[k].iov_len = iov[k].iov_len < n ? iov[k].iov_len : n;
        n -= iov[k].iov_len;
    }
    cut.msg_iov = iov;
    cut.msg_iovlen = k;
    return real_sendmsg(fd, &cut, flags);
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *restrict len, int flags) /* glibc's own type */
{
    static const int errors[] = {EMFILE, ENFILE, ECONNABORTED, EINTR};
    if (roll()) {
        count(&fault_counts->accept);
        errno = errors[rnd() % 4];
        return -1;
    }
    return real_accept4(fd, addr, len, flags);
}

static int once_fault(enum fault_once kind);
static bool once_asked(enum fault_once kind);

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && roll() && is_socket(fd) &&
        !is_listening(fd)) {
        count(&fault_counts->epoll);
        errno = ENOMEM;
        return -1;
    }
    if (op == EPOLL_CTL_ADD && once_asked(FAULT_EPOLL_ADD) && is_socket(fd) &&
        !is_listening(fd)) {
        int err = once_fault(FAULT_EPOLL_ADD);
        if (err) {
            errno = err;
            return -1;
        }
    }
    int rc = real_epoll_ctl(epfd, op, fd, ev);
    if (rc == 0 && fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&watch_lock);
        if (op == EPOLL_CTL_DEL)
            watched[fd] = (struct watch){0};
        else
            watched[fd] = (struct watch){.epfd = epfd, .events = ev->events, .data = ev->data};
        pthread_mutex_unlock(&watch_lock);
    }
    return rc;
}

void fault_fail_next(enum fault_once kind, int err)
{
    __atomic_store_n(&fault_counts->once[kind], err, __ATOMIC_RELEASE);
}

static bool once_asked(enum fault_once kind)
{
    return fault_counts && __atomic_load_n(&fault_counts->once[kind], __ATOMIC_ACQUIRE);
}

/* The one fault of that kind asked for, taken by the first armed caller: its
 * errno, or 0. */
static int once_fault(enum fault_once kind)
{
    if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE) || !once_asked(kind))
        return 0;
    int err = __atomic_exchange_n(&fault_counts->once[kind], 0, __ATOMIC_ACQ_REL);
    if (err)
        count(&fault_counts->once_hit);
    return err;
}

int epoll_create1(int flags)
{
    int err = once_fault(FAULT_EPOLL_CREATE);
    if (err) {
        errno = err;
        return -1;
    }
    return real_epoll_create1(flags);
}

int eventfd(unsigned int initval, int flags)
{
    int err = once_fault(FAULT_EVENTFD);
    if (err) {
        errno = err;
        return -1;
    }
    return real_eventfd(initval, flags);
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    bool asked = once_asked(FAULT_WAIT);
    bool accept_loop = false;
    for (nfds_t i = 0; asked && i < n && !accept_loop; i++)
        accept_loop = fds[i].fd >= 0 && is_listening(fds[i].fd);
    int err = accept_loop ? once_fault(FAULT_WAIT) : 0;
    if (err) {
        errno = err;
        return -1;
    }
    return real_poll(fds, n, timeout);
}

int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    int err = once_fault(FAULT_WAIT);
    if (err) {
        errno = err;
        return -1;
    }
    struct epoll_event owed[64];
    int nowed = 0;
    pthread_mutex_lock(&watch_lock);
    for (int fd = 0; fd < MAX_FD && nowed < max / 2 && nowed < 64; fd++) {
        struct watch *w = &watched[fd];
        if (w->owed && w->epfd == epfd) {
            w->owed = false;
            owed[nowed++] = (struct epoll_event){
                .events = w->events & (EPOLLIN | EPOLLOUT), .data = w->data};
        }
    }
    pthread_mutex_unlock(&watch_lock);
    int n = real_epoll_wait(epfd, events, max - nowed, nowed ? 0 : timeout);
    if (n < 0 && !nowed)
        return n;
    if (n < 0)
        n = 0;
    memcpy(events + n, owed, sizeof(owed[0]) * (size_t)nowed);
    if (nowed)
        count(&fault_counts->synthetic);
    return n + nowed;
}

int close(int fd)
{
    if (fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&watch_lock);
        watched[fd] = (struct watch){0};
        pthread_mutex_unlock(&watch_lock);
    }
    return real_close(fd);
}

pid_t fork(void)
{
    if (roll()) {
        count(&fault_counts->fork);
        errno = EAGAIN;
        return -1;
    }
    return real_fork();
}

int pthread_create(pthread_t *restrict t, const pthread_attr_t *restrict attr,
                   void *(*fn)(void *), void *restrict arg)
{
    if (roll()) {
        count(&fault_counts->thread);
        return EAGAIN;
    }
    return real_pthread_create(t, attr, fn, arg);
}
