/* SPDX-License-Identifier: MIT */
/* Whole-buffer I/O that survives EINTR, short transfers and non-blocking fds. */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* write() to a pipe whose reader is gone raises SIGPIPE in the writing thread:
 * block it around the call and swallow the one we caused, never one that was
 * already pending for the program. */
static ssize_t write_no_sigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ssize_t n = write(fd, buf, len);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

/* One write: send() with MSG_NOSIGNAL on sockets, write() elsewhere; never
 * SIGPIPE. With a deadline a socket is written with MSG_DONTWAIT, so that a
 * blocking one cannot hold the call past it. */
static ssize_t write_once(int fd, const void *buf, size_t len, bool bounded, bool *not_socket)
{
    if (!*not_socket) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | (bounded ? MSG_DONTWAIT : 0));
        if (n >= 0 || errno != ENOTSOCK)
            return n;
        *not_socket = true;
    }
    return write_no_sigpipe(fd, buf, len);
}

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) < 0 || S_ISSOCK(st.st_mode); /* a bad fd: send() says so */
}

ssize_t sk_write_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = sk__deadline(timeout_ms);
    bool bounded = deadline >= 0;
    bool not_socket = bounded && !is_socket(fd);
    size_t done = 0;

    if (!buf && len > 0)
        return -EINVAL;
    if (len > SSIZE_MAX)
        return -EINVAL;
    while (done < len) {
        size_t want = len - done;
        if (bounded && not_socket) {
            /* A blocking pipe would wait inside write(): wait here, bounded,
             * then write no more than a writable pipe takes at once. */
            int rc = sk__wait(fd, POLLOUT, deadline);
            if (rc == 0)
                return -ETIMEDOUT;
            if (rc < 0)
                return rc;
            if (want > PIPE_BUF)
                want = PIPE_BUF;
        }
        ssize_t n = write_once(fd, (const char *)buf + done, want, bounded, &not_socket);
        if (n >= 0) {
            done += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = sk__wait(fd, POLLOUT, deadline);
        if (rc == 0)
            return -ETIMEDOUT;
        if (rc < 0)
            return rc;
    }
    return (ssize_t)len;
}

/* One read that waits (bounded) on a non-blocking fd: bytes, 0 at EOF, or < 0. */
static ssize_t read_once(int fd, void *buf, size_t len, int64_t deadline)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = sk__wait(fd, POLLIN, deadline);
        if (rc == 0)
            return -ETIMEDOUT;
        if (rc < 0)
            return rc;
    }
}

/* A blocking fd would ignore the deadline inside read(): wait for it first. */
static ssize_t read_bounded(int fd, void *buf, size_t len, int64_t deadline)
{
    if (deadline >= 0) {
        int rc = sk__wait(fd, POLLIN, deadline);
        if (rc == 0)
            return -ETIMEDOUT;
        if (rc < 0)
            return rc;
    }
    return read_once(fd, buf, len, deadline);
}

ssize_t sk_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    int64_t deadline = sk__deadline(timeout_ms);
    size_t done = 0;

    if ((!buf && len > 0) || len > SSIZE_MAX)
        return -EINVAL;
    while (done < len) {
        ssize_t n = read_bounded(fd, (char *)buf + done, len - done, deadline);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t sk_read_some(int fd, void *buf, size_t len, int timeout_ms)
{
    if (!buf || len == 0 || len > SSIZE_MAX)
        return -EINVAL;
    return read_bounded(fd, buf, len, sk__deadline(timeout_ms));
}
