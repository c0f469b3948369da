/* SPDX-License-Identifier: MIT */
/*
 * One reactor, two peers flooding it, a third that pings: the ping is
 * answered after a bounded number of the flooders' reads, counted by the
 * server, not timed.
 *   test_fairness BACKEND      (a backend that runs its connections in one loop)
 *
 * The reactor is held inside a handler while the flooders fill the server's
 * receive buffers (made large) and the ping is sent; when it is let go, all
 * three are ready at once, and megabytes wait on each flooder. An
 * edge-triggered loop that drained each flooder to the end before looking at
 * the next connection answered after 210 reads of the flooders; each
 * connection now gets a budget of reads per turn.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* At most this many reads of each flooder before the ping: epoll-et's budget
 * per turn (4), for one turn and the one the ping may fall behind. */
#define MAX_READS_PER_FLOODER 8

#define RCVBUF (4 << 20)

static int held;          /* server process: the reactor waits in a handler */
static int flooder_reads; /* server process, its reactor only */
static int fds[4], nfds;  /* server process: the connections, in order */

static void on_open(sk_conn *c)
{
    int fd = sk_conn_fd(c), size = RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)); /* room for a flood */
    int i = __atomic_load_n(&nfds, __ATOMIC_RELAXED);
    if (i < 4) {
        __atomic_store_n(&fds[i], fd, __ATOMIC_RELAXED);
        __atomic_store_n(&nfds, i + 1, __ATOMIC_RELEASE);
    }
}

static void handler(sk_conn *c, char *data, size_t len)
{
    if (len >= 4 && memcmp(data, "hold", 4) == 0) {
        sk_conn_send(c, "holding\n", 8);
        for (int i = 0; i < 20000 && __atomic_load_n(&held, __ATOMIC_ACQUIRE); i++)
            usleep(1000);
    } else if (len >= 4 && memcmp(data, "ping", 4) == 0) {
        sk_conn_sendf(c, "pong %d\n", flooder_reads);
    } else {
        flooder_reads++;
    }
}

/* Bytes waiting in the server's socket of the i-th connection. */
static int waiting(int i)
{
    int n = 0;
    if (i < __atomic_load_n(&nfds, __ATOMIC_ACQUIRE))
        ioctl(__atomic_load_n(&fds[i], __ATOMIC_RELAXED), FIONREAD, &n);
    return n;
}

/* "hold", and "release", which first says what waits on connections 1 and 2. */
static void on_command(const char *line, char *reply, size_t size)
{
    if (strcmp(line, "hold") == 0) {
        __atomic_store_n(&held, 1, __ATOMIC_RELEASE);
        snprintf(reply, size, "ok");
    } else if (strcmp(line, "release") == 0) {
        snprintf(reply, size, "ok %d %d", waiting(1), waiting(2));
        __atomic_store_n(&held, 0, __ATOMIC_RELEASE);
    }
}

/* Write to fd until the kernel takes no more; the bytes written. */
static size_t fill(int fd)
{
    static char flood[65536];
    memset(flood, 'f', sizeof(flood));
    size_t total = 0;
    for (int quiet = 0; quiet < 20;) { /* the window may open a little later */
        ssize_t n = send(fd, flood, sizeof(flood), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            total += (size_t)n;
            quiet = 0;
        } else {
            assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            quiet++;
            usleep(1000);
        }
    }
    return total;
}

static void a_ping_is_answered_while_two_peers_flood(void **state)
{
    (void)state;
    struct running r;
    sk_server *s = new_server(handler);
    sk_server_on_open(s, on_open);
    start(&r, s);
    int staller = dial(&r);
    wait_count(&r, 1, 5000); /* the connections open in this order */
    int a = dial(&r);
    wait_count(&r, 2, 5000);
    int b = dial(&r);
    wait_count(&r, 3, 5000);
    int pinger = dial(&r);
    wait_count(&r, 4, 5000);

    char answer[64];
    assert_string_equal(ask(&r, "hold\n", answer, sizeof(answer)), "ok\n");
    assert_int_equal(sk_write_all(staller, "hold", 4, 1000), 4);
    expect_text(staller, "holding\n"); /* the reactor waits in the handler now */
    size_t filled_a = fill(a), filled_b = fill(b);
    assert_int_equal(sk_write_all(pinger, "ping", 4, 1000), 4);
    int in_a = 0, in_b = 0;
    assert_int_equal(sscanf(ask(&r, "release\n", answer, sizeof(answer)), "ok %d %d", &in_a,
                            &in_b),
                     2);

    char pong[64] = {0};
    ssize_t n = sk_read_some(pinger, pong, sizeof(pong) - 1, 10000);
    assert_true(n > 0);
    int reads = -1;
    assert_int_equal(sscanf(pong, "pong %d", &reads), 1);
    printf("# %s: %zu KiB and %zu KiB sent by the flooders, %d KiB and %d KiB of it in the "
           "server's sockets; the ping was answered after %d of their reads\n",
           backend, filled_a >> 10, filled_b >> 10, in_a >> 10, in_b >> 10, reads);
    /* Enough waited in the server that draining one flooder to its end takes
     * far more reads of 64 KiB than the bound. */
    if (in_a < 2 << 20 || in_b < 2 << 20) {
        close(a);
        close(b);
        close(pinger);
        close(staller);
        finish(&r);
        skip(); /* net.core.rmem_max is below 4 MiB here: no flood fits in a socket */
    }
    assert_true(reads <= 2 * MAX_READS_PER_FLOODER);

    close(a);
    close(b);
    close(pinger);
    close(staller);
    finish(&r);
}

int main(int argc, char **argv)
{
    if (harness_init(argc, argv) != 0)
        return 1;
    harness_on_command = on_command;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_ping_is_answered_while_two_peers_flood, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests_name("fairness", tests, NULL, NULL);
}
