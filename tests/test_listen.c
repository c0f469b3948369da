/* SPDX-License-Identifier: MIT */
/* sk_listen: the reuse policy on TCP and unix sockets, and bad input. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

static char *addr_of(int port)
{
    static char buf[64];
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", port);
    return buf;
}

static void listener_is_cloexec_and_blocking(void **state)
{
    (void)state;
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    assert_true(tu_is_cloexec(l));
    assert_int_equal(sk_is_nonblocking(l), 0);
    int accepting = 0;
    socklen_t len = sizeof(accepting);
    assert_int_equal(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len), 0);
    assert_int_equal(accepting, 1);
    close(l);
}

static void second_reuse_addr_listener_is_refused(void **state)
{
    (void)state;
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int port = sk_local_port(l);
    assert_int_equal(sk_listen(addr_of(port), SK_REUSE_ADDR, 0), -EADDRINUSE);
    assert_int_equal(sk_listen(addr_of(port), SK_REUSE_NONE, 0), -EADDRINUSE);
    close(l);
}

/* The seeds' "bind error: Address already in use", reproduced and cured. */
static void restart_while_in_time_wait(void **state)
{
    (void)state;
    char buf[1];
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int port = sk_local_port(l);
    int c = tu_dial("127.0.0.1", port);
    assert_true(c >= 0);
    int s = sk_accept(l, NULL);
    assert_true(s >= 0);
    close(s);                                  /* the server closes first: TIME_WAIT is its */
    assert_int_equal(sk_read_some(c, buf, 1, 2000), 0);
    close(c);
    close(l);

    assert_int_equal(sk_listen(addr_of(port), SK_REUSE_NONE, 0), -EADDRINUSE);
    int again = sk_listen(addr_of(port), SK_REUSE_ADDR, 0);
    assert_true(again >= 0);
    assert_int_equal(sk_local_port(again), port);
    close(again);
}

static void reuse_port_listeners_share_a_port(void **state)
{
    (void)state;
    enum { LISTENERS = 3, CLIENTS = 30 };
    int l[LISTENERS], c[CLIENTS], got[LISTENERS] = {0};
    l[0] = sk_listen("127.0.0.1:0", SK_REUSE_PORT, 0);
    assert_true(l[0] >= 0);
    int port = sk_local_port(l[0]);
    for (int i = 1; i < LISTENERS; i++) {
        l[i] = sk_listen(addr_of(port), i == 1 ? SK_REUSE_PORT : SK_REUSE_ADDR_PORT, 0);
        assert_true(l[i] >= 0);
    }
    assert_int_equal(sk_listen(addr_of(port), SK_REUSE_NONE, 0), -EADDRINUSE);
    assert_int_equal(sk_listen(addr_of(port), SK_REUSE_ADDR, 0), -EADDRINUSE);

    for (int i = 0; i < CLIENTS; i++)
        assert_true((c[i] = tu_dial("127.0.0.1", port)) >= 0);
    int accepted = 0;
    int64_t until = tu_now_ms() + 5000;
    while (accepted < CLIENTS && tu_now_ms() < until) {
        struct pollfd p[LISTENERS];
        for (int i = 0; i < LISTENERS; i++)
            p[i] = (struct pollfd){.fd = l[i], .events = POLLIN};
        assert_true(poll(p, LISTENERS, 1000) > 0);
        for (int i = 0; i < LISTENERS; i++) {
            if (p[i].revents & POLLIN) {
                close(sk_accept(l[i], NULL));
                got[i]++;
                accepted++;
            }
        }
    }
    assert_int_equal(accepted, CLIENTS);
    int serving = 0;
    for (int i = 0; i < LISTENERS; i++)
        serving += got[i] > 0;
    assert_true(serving >= 2); /* the kernel spread the connections */
    for (int i = 0; i < CLIENTS; i++)
        close(c[i]);
    for (int i = 0; i < LISTENERS; i++)
        close(l[i]);
}

static void wildcard_listens_on_every_loopback(void **state)
{
    (void)state;
    int l = sk_listen("*:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int port = sk_local_port(l);
    int c4 = tu_dial("127.0.0.1", port);
    assert_true(c4 >= 0);
    close(sk_accept(l, NULL));
    if (tu_have_ipv6()) {
        int c6 = tu_dial("::1", port);
        assert_true(c6 >= 0);
        close(sk_accept(l, NULL));
        close(c6);
    }
    close(c4);
    close(l);
}

static void ipv6_listener_leaves_ipv4_port_free(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    int l6 = sk_listen("[::1]:0", SK_REUSE_NONE, 0);
    assert_true(l6 >= 0);
    int port = sk_local_port(l6);
    char buf[64];
    snprintf(buf, sizeof(buf), "0.0.0.0:%d", port);
    int l4 = sk_listen(buf, SK_REUSE_NONE, 0);
    if (l4 == -EADDRINUSE) { /* someone else holds that IPv4 port: nothing to learn */
        close(l6);
        skip();
    }
    assert_true(l4 >= 0);
    close(l4);
    close(l6);
}

static void host_names_are_resolved(void **state)
{
    (void)state;
    int l = sk_listen("localhost:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    char buf[SK_ADDR_STRLEN];
    assert_true(sk_local_addr(l, buf, sizeof(buf)) > 0);
    assert_true(strncmp(buf, "127.0.0.1:", 10) == 0 || strncmp(buf, "[::1]:", 6) == 0);
    close(l);
    assert_int_equal(sk_listen("nosuchhost.sk-test:0", SK_REUSE_ADDR, 0), SK_EAI_NONAME);
}

static void unix_live_socket_is_never_stolen(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[4200];
    snprintf(addr, sizeof(addr), "unix:%s/live.sock", dir);
    int l = sk_listen(addr, SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    assert_int_equal(sk_listen(addr, SK_REUSE_ADDR, 0), -EADDRINUSE);
    assert_int_equal(sk_listen(addr, SK_REUSE_ADDR_PORT, 0), -EADDRINUSE);
    assert_int_equal(sk_listen(addr, SK_REUSE_NONE, 0), -EADDRINUSE);
    int c = sk_connect(addr, 1000); /* the first listener still owns the path */
    assert_true(c >= 0);
    assert_int_equal(sk_write_all(c, "hi", 2, 1000), 2);
    /* The liveness probes of the refused calls arrive first, empty. */
    char buf[2];
    int probes = 0;
    for (;;) {
        int s = sk_accept(l, NULL);
        assert_true(s >= 0);
        ssize_t n = sk_read_full(s, buf, 2, 1000);
        close(s);
        if (n == 2)
            break;
        assert_int_equal(n, 0);
        assert_true(++probes <= 2); /* one per SK_REUSE_ADDR call, none for NONE */
    }
    assert_memory_equal(buf, "hi", 2);
    close(c);
    close(l);
    tu_rmtree(dir);
}

static void unix_stale_socket_is_replaced_only_with_reuse_addr(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[4200];
    snprintf(addr, sizeof(addr), "unix:%s/stale.sock", dir);
    int dead = sk_listen(addr, SK_REUSE_NONE, 0);
    assert_true(dead >= 0);
    close(dead); /* a server that died without removing its socket file */
    struct stat st;
    assert_int_equal(stat(addr + 5, &st), 0);

    assert_int_equal(sk_listen(addr, SK_REUSE_NONE, 0), -EADDRINUSE);
    int l = sk_listen(addr, SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int c = sk_connect(addr, 1000);
    assert_true(c >= 0);
    close(c);
    close(l);
    tu_rmtree(dir);
}

static void unix_regular_file_is_left_alone(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[4200];
    snprintf(addr, sizeof(addr), "unix:%s/data.txt", dir);
    int f = open(addr + 5, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(f >= 0);
    assert_int_equal(write(f, "keep", 4), 4);
    close(f);
    assert_int_equal(sk_listen(addr, SK_REUSE_ADDR, 0), -EADDRINUSE);
    struct stat st;
    assert_int_equal(stat(addr + 5, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    tu_rmtree(dir);
}

static void unix_long_paths_are_refused(void **state)
{
    (void)state;
    char addr[400];
    snprintf(addr, sizeof(addr), "unix:/tmp/%0200d", 7);
    int before = tu_fd_count();
    assert_int_equal(sk_listen(addr, SK_REUSE_ADDR, 0), -ENAMETOOLONG);
    assert_int_equal(sk_connect(addr, 100), -ENAMETOOLONG);
    assert_int_equal(tu_fd_count(), before);
}

static void unix_abstract_names(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof(addr), "unix:@sktest-%d", (int)getpid());
    int l = sk_listen(addr, SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    assert_int_equal(sk_listen(addr, SK_REUSE_ADDR, 0), -EADDRINUSE);
    char name[SK_ADDR_STRLEN];
    assert_true(sk_local_addr(l, name, sizeof(name)) > 0);
    assert_string_equal(name, addr);
    int c = sk_connect(addr, 1000);
    assert_true(c >= 0);
    close(c);
    close(l);
}

static void bad_input_leaks_nothing(void **state)
{
    (void)state;
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:70000", "[::1:80", "garbage",
                         "::1:80", "unix:", "256.1.1.1:80", "[::1]:x"};
    int before = tu_fd_count();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = sk_listen(bad[i], SK_REUSE_ADDR, 0);
        if (rc >= 0)
            fail_msg("'%s' was accepted", bad[i]);
        assert_string_not_equal(sk_strerror(rc), "unknown error");
        assert_true(sk_connect(bad[i], 100) < 0);
    }
    assert_int_equal(sk_listen(NULL, SK_REUSE_ADDR, 0), -EINVAL);
    assert_int_equal(sk_listen("127.0.0.1:0", (sk_reuse)7, 0), -EINVAL);
    assert_int_equal(sk_listen("127.0.0.1:0", (sk_reuse)-1, 0), -EINVAL);
    assert_int_equal(tu_fd_count(), before);
}

static void backlog_is_honoured(void **state)
{
    (void)state;
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 1);
    assert_true(l >= 0);
    int port = sk_local_port(l);
    /* A backlog of 1 holds two connections on Linux; a third is not answered. */
    int a = tu_dial("127.0.0.1", port), b = tu_dial("127.0.0.1", port);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(sk_connect(addr_of(port), 300), -ETIMEDOUT);
    close(a);
    close(b);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listener_is_cloexec_and_blocking),
        cmocka_unit_test(second_reuse_addr_listener_is_refused),
        cmocka_unit_test(restart_while_in_time_wait),
        cmocka_unit_test(reuse_port_listeners_share_a_port),
        cmocka_unit_test(wildcard_listens_on_every_loopback),
        cmocka_unit_test(ipv6_listener_leaves_ipv4_port_free),
        cmocka_unit_test(host_names_are_resolved),
        cmocka_unit_test(unix_live_socket_is_never_stolen),
        cmocka_unit_test(unix_stale_socket_is_replaced_only_with_reuse_addr),
        cmocka_unit_test(unix_regular_file_is_left_alone),
        cmocka_unit_test(unix_long_paths_are_refused),
        cmocka_unit_test(unix_abstract_names),
        cmocka_unit_test(bad_input_leaks_nothing),
        cmocka_unit_test(backlog_is_honoured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
