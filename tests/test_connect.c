/* SPDX-License-Identifier: MIT */
/* sk_connect: refused, timed out, happy eyeballs, unix, and bad input.
 * Names ending in ".sk-test" come from fake_resolver.c, never from DNS. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A listener whose accept queue is full: further SYNs go unanswered. */
static int full_listener(const char *address, int *filler)
{
    int l = sk_listen(address, SK_REUSE_NONE, 1);
    assert_true(l >= 0);
    assert_int_equal(listen(l, 0), 0); /* a queue of one connection */
    char ip[64];
    assert_true(sk_local_addr(l, ip, sizeof(ip)) > 0);
    *strrchr(ip, ':') = '\0';
    const char *host = ip[0] == '[' ? ip + 1 : ip;
    if (ip[0] == '[')
        ip[strlen(ip) - 1] = '\0';
    *filler = tu_dial(host, sk_local_port(l));
    assert_true(*filler >= 0);
    return l;
}

static void connects_and_returns_blocking_cloexec_fd(void **state)
{
    (void)state;
    char addr[64];
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", sk_local_port(l));
    int c = sk_connect(addr, 1000);
    assert_true(c >= 0);
    assert_int_equal(sk_is_nonblocking(c), 0);
    assert_true(tu_is_cloexec(c));
    int s = sk_accept(l, NULL);
    assert_true(s >= 0);
    assert_int_equal(sk_write_all(c, "ping", 4, 1000), 4);
    char buf[4];
    assert_int_equal(sk_read_full(s, buf, 4, 1000), 4);
    assert_memory_equal(buf, "ping", 4);
    close(s);
    close(c);
    int c2 = sk_connect(addr, -1); /* no limit of our own */
    assert_true(c2 >= 0);
    close(c2);
    close(l);
}

static void closed_port_is_refused(void **state)
{
    (void)state;
    char addr[64];
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", sk_local_port(l));
    close(l);
    int before = tu_fd_count();
    int64_t t0 = tu_now_ms();
    assert_int_equal(sk_connect(addr, 2000), -ECONNREFUSED);
    assert_true(tu_now_ms() - t0 < 1000);
    assert_int_equal(tu_fd_count(), before);
}

static void full_accept_queue_times_out(void **state)
{
    (void)state;
    char addr[64];
    int filler;
    int l = full_listener("127.0.0.1:0", &filler);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", sk_local_port(l));
    int before = tu_fd_count();
    int64_t t0 = tu_now_ms();
    assert_int_equal(sk_connect(addr, 500), -ETIMEDOUT);
    int64_t took = tu_now_ms() - t0;
    assert_true(took >= 450);
    assert_true(took < 1500);
    assert_int_equal(tu_fd_count(), before);
    close(filler);
    close(l);
}

/* Bind [::1]:P and 127.0.0.1:P for one port P; the IPv6 one has a full queue
 * when v6_full, and does not exist when !v6_listen. */
static int pair_on_one_port(int *l6, int *l4, int *filler, bool v6_listen, bool v6_full)
{
    for (int tries = 0; tries < 50; tries++) {
        *filler = -1;
        if (v6_full)
            *l6 = full_listener("[::1]:0", filler);
        else
            *l6 = sk_listen("[::1]:0", SK_REUSE_NONE, 0);
        assert_true(*l6 >= 0);
        int port = sk_local_port(*l6);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
        *l4 = sk_listen(addr, SK_REUSE_NONE, 0);
        if (!v6_listen) {
            close(*l6);
            *l6 = -1;
        }
        if (*l4 >= 0)
            return port;
        if (*filler >= 0)
            close(*filler);
        if (*l6 >= 0)
            close(*l6);
    }
    fail_msg("no port free on both ::1 and 127.0.0.1");
    return -1;
}

static void happy_eyeballs_falls_back_from_silent_ipv6(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    int l6, l4, filler;
    int port = pair_on_one_port(&l6, &l4, &filler, true, true);
    char addr[64], peer[SK_ADDR_STRLEN], want[64];
    snprintf(addr, sizeof(addr), "dual.sk-test:%d", port);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);

    int64_t t0 = tu_now_ms();
    int c = sk_connect(addr, 5000);
    int64_t took = tu_now_ms() - t0;
    assert_true(c >= 0);
    assert_true(sk_peer_addr(c, peer, sizeof(peer)) > 0);
    assert_string_equal(peer, want);
    assert_true(took >= 200); /* ::1 was tried first and given its 250 ms */
    assert_true(took < 1000);
    close(c);
    close(filler);
    close(l6);
    close(l4);
}

static void happy_eyeballs_prefers_the_first_address(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    int l6, l4, filler;
    int port = pair_on_one_port(&l6, &l4, &filler, true, false);
    char addr[64], peer[SK_ADDR_STRLEN], want[64];

    snprintf(addr, sizeof(addr), "dual.sk-test:%d", port);
    snprintf(want, sizeof(want), "[::1]:%d", port);
    int c = sk_connect(addr, 5000);
    assert_true(c >= 0);
    assert_true(sk_peer_addr(c, peer, sizeof(peer)) > 0);
    assert_string_equal(peer, want);
    close(c);

    snprintf(addr, sizeof(addr), "v4v6.sk-test:%d", port);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    c = sk_connect(addr, 5000);
    assert_true(c >= 0);
    assert_true(sk_peer_addr(c, peer, sizeof(peer)) > 0);
    assert_string_equal(peer, want);
    close(c);
    close(l6);
    close(l4);
}

static void happy_eyeballs_moves_on_at_once_after_a_refusal(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    int l6, l4, filler;
    int port = pair_on_one_port(&l6, &l4, &filler, false, false);
    char addr[64];
    snprintf(addr, sizeof(addr), "dual.sk-test:%d", port);
    int64_t t0 = tu_now_ms();
    int c = sk_connect(addr, 5000);
    assert_true(c >= 0);
    assert_true(tu_now_ms() - t0 < 200);
    close(c);
    close(l4);
}

static void happy_eyeballs_all_silent_times_out(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    int f6, f4;
    int l6 = -1, l4 = -1, port = -1;
    for (int tries = 0; tries < 50 && l4 < 0; tries++) {
        if (l6 >= 0) {
            close(f6);
            close(l6);
        }
        l6 = full_listener("[::1]:0", &f6);
        port = sk_local_port(l6);
        char a4[64];
        snprintf(a4, sizeof(a4), "127.0.0.1:%d", port);
        l4 = sk_listen(a4, SK_REUSE_NONE, 1);
    }
    assert_true(l4 >= 0);
    assert_int_equal(listen(l4, 0), 0);
    f4 = tu_dial("127.0.0.1", port);
    assert_true(f4 >= 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "dual.sk-test:%d", port);
    int before = tu_fd_count();
    int64_t t0 = tu_now_ms();
    assert_int_equal(sk_connect(addr, 700), -ETIMEDOUT);
    int64_t took = tu_now_ms() - t0;
    assert_true(took >= 650 && took < 1700);
    assert_int_equal(tu_fd_count(), before);
    close(f4);
    close(f6);
    close(l4);
    close(l6);
}

static void unix_connect_errors(void **state)
{
    (void)state;
    char *dir = tu_tmpdir(), addr[4200];
    snprintf(addr, sizeof(addr), "unix:%s/none.sock", dir);
    assert_int_equal(sk_connect(addr, 500), -ENOENT);
    int l = sk_listen(addr, SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    close(l); /* stale file */
    assert_int_equal(sk_connect(addr, 500), -ECONNREFUSED);
    tu_rmtree(dir);
}

static void names_and_bad_input(void **state)
{
    (void)state;
    int before = tu_fd_count();
    assert_int_equal(sk_connect("nosuchhost.sk-test:80", 500), SK_EAI_NONAME);
    assert_int_equal(sk_connect(NULL, 500), -EINVAL);
    assert_int_equal(sk_connect("*:80", 500), -EINVAL);
    assert_int_equal(sk_connect("127.0.0.1", 500), SK_EPORT);
    assert_int_equal(sk_connect("[::1:80", 500), SK_EADDR);
    assert_int_equal(sk_connect("127.0.0.1:70000", 500), SK_EPORT);
    assert_int_equal(sk_connect("", 500), SK_EADDR);
    assert_int_equal(tu_fd_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connects_and_returns_blocking_cloexec_fd),
        cmocka_unit_test(closed_port_is_refused),
        cmocka_unit_test(full_accept_queue_times_out),
        cmocka_unit_test(happy_eyeballs_falls_back_from_silent_ipv6),
        cmocka_unit_test(happy_eyeballs_prefers_the_first_address),
        cmocka_unit_test(happy_eyeballs_moves_on_at_once_after_a_refusal),
        cmocka_unit_test(happy_eyeballs_all_silent_times_out),
        cmocka_unit_test(unix_connect_errors),
        cmocka_unit_test(names_and_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
