/* SPDX-License-Identifier: MIT */
/*
 * A backend of the test program's own, "poll-test", built only from the
 * public driver functions of <sockkit/backend.h>: one thread, poll(2).
 * The conformance suite runs on it as on the built-in ones, which shows that
 * a program can bring its own concurrency model without touching handlers.
 */
#include "poll_backend.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

struct slot {
    sk_conn *conn;
    int want; /* SK_WANT_* from the last sk_conn_drive() */
};

static int min_ms(int a, int b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int poll_run(sk_server *s)
{
    int nl = 0;
    while (sk_server_listener(s, nl) >= 0)
        nl++;
    size_t cap = 64, n = 0;
    struct slot *conns = malloc(cap * sizeof(*conns));
    struct pollfd *p = NULL;
    int rc = 0;
    if (!conns)
        return -ENOMEM;

    bool stop_seen = false;
    for (;;) {
        bool stopping = sk_server_stopping(s);
        if (stopping && n == 0)
            break;
        if (stopping && !stop_seen) {
            /* The stop may have come after the connections were last driven:
             * drive them once now, or we would poll them without the stop fd,
             * perhaps with no deadline, forever. */
            stop_seen = true;
            size_t kept = 0;
            for (size_t i = 0; i < n; i++) {
                int want = sk_conn_drive(conns[i].conn, false, false);
                if (want) {
                    conns[kept].conn = conns[i].conn;
                    conns[kept++].want = want;
                }
            }
            n = kept;
            continue;
        }
        struct pollfd *np = realloc(p, (n + (size_t)nl + 1) * sizeof(*p));
        if (!np) {
            rc = -ENOMEM;
            break;
        }
        p = np;
        int timeout = -1;
        for (size_t i = 0; i < n; i++) {
            short ev = (short)(((conns[i].want & SK_WANT_READ) ? POLLIN : 0) |
                               ((conns[i].want & SK_WANT_WRITE) ? POLLOUT : 0));
            p[i] = (struct pollfd){.fd = sk_conn_fd(conns[i].conn), .events = ev};
            timeout = min_ms(timeout, sk_conn_deadline(conns[i].conn));
        }
        size_t extra = 0;
        if (!stopping) {
            for (int k = 0; k < nl; k++)
                p[n + extra++] = (struct pollfd){.fd = sk_server_listener(s, k), .events = POLLIN};
            p[n + extra++] = (struct pollfd){.fd = sk_server_stop_fd(s), .events = POLLIN};
        }
        if (poll(p, n + extra, timeout) < 0 && errno != EINTR) {
            rc = -errno;
            sk_server_stop(s);
        }
        /* Drive every connection; drop the finished ones. */
        size_t polled = n, kept = 0;
        for (size_t i = 0; i < polled; i++) {
            short re = p[i].revents;
            int want = sk_conn_drive(conns[i].conn, re & (POLLIN | POLLHUP | POLLERR),
                                     re & (POLLOUT | POLLERR | POLLHUP));
            if (want) {
                conns[kept].conn = conns[i].conn;
                conns[kept++].want = want;
            }
        }
        n = kept;
        /* Then accept on the listeners that polled readable. */
        for (int k = 0; !stopping && k < nl && rc == 0; k++) {
            if (!(p[polled + (size_t)k].revents & POLLIN))
                continue;
            sk_conn *c;
            while (sk_server_accept(s, sk_server_listener(s, k), &c) == 1) {
                if (n == cap) {
                    struct slot *bigger = realloc(conns, cap * 2 * sizeof(*conns));
                    if (!bigger) {
                        rc = -ENOMEM;
                        sk_server_stop(s);
                        sk_conn_close(c);
                        while (sk_conn_drive(c, false, false))
                            ; /* a connection we cannot keep: close it at once */
                        break;
                    }
                    conns = bigger;
                    cap *= 2;
                }
                conns[n].conn = c;
                conns[n].want = sk_conn_drive(c, false, false);
                if (conns[n].want)
                    n++;
            }
        }
    }
    free(p);
    free(conns);
    return rc;
}

static const sk_backend poll_backend = {
    .name = "poll-test",
    .summary = "a single-threaded poll(2) loop built on the public driver API",
    .run = poll_run,
};

int poll_backend_register(void)
{
    int rc = sk_backend_register(&poll_backend);
    return rc == -EEXIST ? 0 : rc;
}
