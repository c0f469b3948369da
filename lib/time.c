/* SPDX-License-Identifier: MIT */
/* Deadlines and bounded waits. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

int64_t sk__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sk__deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : sk__now_ms() + timeout_ms;
}

int sk__remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - sk__now_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

int sk__wait(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    if (fd < 0)
        return -EBADF; /* poll() would skip it and simply time out */
    for (;;) {
        int n = poll(&p, 1, sk__remaining(deadline));
        if (n > 0)
            return (p.revents & POLLNVAL) ? -EBADF : p.revents;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}
