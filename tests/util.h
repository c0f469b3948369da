/* SPDX-License-Identifier: MIT */
/* Helpers shared by the cmocka tests. Loopback only, every wait bounded. */
#ifndef SK_TEST_UTIL_H
#define SK_TEST_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sockkit/sockkit.h>

/* Open file descriptors of this process (entries of /proc/self/fd). */
int tu_fd_count(void);

/* Monotonic milliseconds. */
int64_t tu_now_ms(void);

/* A fresh private directory under $TMPDIR or /tmp; tu_rmtree() removes it. */
char *tu_tmpdir(void);
void tu_rmtree(char *dir);

/* Blocking raw connect (no libsockkit) to a numeric address; the fd or -1. */
int tu_dial(const char *ip, int port);

/* Whether a [::1] socket can be bound here. */
int tu_have_ipv6(void);

/* Whether fd has FD_CLOEXEC. */
int tu_is_cloexec(int fd);

/* Fill buf with reproducible pseudo-random bytes from seed. */
void tu_fill_random(void *buf, size_t len, uint64_t seed);

/* A server running in a thread of this process (for backends whose callbacks
 * need no fork): tu_serve() binds it, fills addr and starts sk_server_run();
 * tu_serve_join() waits for the run to return (after a stop) and gives its
 * result. */
struct tu_serving {
    sk_server *s;
    char addr[SK_ADDR_STRLEN];
    pthread_t thread;
};
void tu_serve(struct tu_serving *sv, sk_server *s);
int tu_serve_join(struct tu_serving *sv);

#endif
