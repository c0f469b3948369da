/* SPDX-License-Identifier: MIT */
/* Blocking toggles and socket options. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void nonblocking_toggles(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(sk_is_nonblocking(fd), 0);
    assert_int_equal(sk_set_nonblocking(fd, true), 0);
    assert_int_equal(sk_is_nonblocking(fd), 1);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(sk_set_nonblocking(fd, true), 0); /* idempotent */
    assert_int_equal(sk_is_nonblocking(fd), 1);
    assert_int_equal(sk_set_nonblocking(fd, false), 0);
    assert_int_equal(sk_is_nonblocking(fd), 0);
    assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
    close(fd);
    assert_int_equal(sk_set_nonblocking(fd, true), -EBADF);
    assert_int_equal(sk_is_nonblocking(fd), -EBADF);
    assert_int_equal(sk_is_nonblocking(-1), -EBADF);
}

static void cloexec_toggles(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_false(tu_is_cloexec(fd));
    assert_int_equal(sk_set_cloexec(fd, true), 0);
    assert_true(tu_is_cloexec(fd));
    assert_int_equal(sk_set_cloexec(fd, false), 0);
    assert_false(tu_is_cloexec(fd));
    close(fd);
    assert_int_equal(sk_set_cloexec(-1, true), -EBADF);
}

static void nodelay_and_keepalive(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(sk_set_nodelay(fd, true), 0);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(sk_set_nodelay(fd, false), 0);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);

    int idle = get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    assert_int_equal(sk_set_keepalive(fd, true, 0, 0, 0), 0);
    assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle); /* default kept */
    assert_int_equal(sk_set_keepalive(fd, true, 30, 5, 4), 0);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    assert_int_equal(get_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
    assert_int_equal(sk_set_keepalive(fd, true, 1 << 30, 0, 0), -EINVAL);
    assert_int_equal(sk_set_keepalive(fd, false, 0, 0, 0), 0);
    assert_int_equal(get_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    close(fd);

    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sk_set_nodelay(p[0], true), -ENOTSOCK);
    assert_int_equal(sk_set_keepalive(p[0], true, 1, 1, 1), -ENOTSOCK);
    assert_int_equal(sk_local_port(p[0]), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    assert_int_equal(sk_set_nodelay(-1, true), -EBADF);
}

static void local_port_of_each_family(void **state)
{
    (void)state;
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    int port = sk_local_port(l);
    assert_true(port > 0 && port < 65536);
    close(l);
    int u = sk_listen("unix:@sk-options-test", SK_REUSE_ADDR, 0);
    assert_true(u >= 0);
    assert_int_equal(sk_local_port(u), -EINVAL);
    close(u);
    assert_int_equal(sk_local_port(-1), -EBADF);
}

static void accept_returns_peer_and_cloexec(void **state)
{
    (void)state;
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    int c = tu_dial("127.0.0.1", sk_local_port(l));
    sk_addr peer;
    int s = sk_accept(l, &peer);
    assert_true(s >= 0);
    assert_true(tu_is_cloexec(s));
    assert_int_equal(sk_is_nonblocking(s), 0);
    char a[SK_ADDR_STRLEN], b[SK_ADDR_STRLEN];
    sk_addr_format(&peer, a, sizeof(a));
    sk_local_addr(c, b, sizeof(b));
    assert_string_equal(a, b);
    assert_int_equal(sk_set_nonblocking(l, true), 0);
    assert_int_equal(sk_accept(l, NULL), -EAGAIN);
    assert_int_equal(sk_accept(-1, NULL), -EBADF);
    close(s);
    close(c);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nonblocking_toggles),
        cmocka_unit_test(cloexec_toggles),
        cmocka_unit_test(nodelay_and_keepalive),
        cmocka_unit_test(local_port_of_each_family),
        cmocka_unit_test(accept_returns_peer_and_cloexec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
