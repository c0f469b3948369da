/* SPDX-License-Identifier: MIT */
/* Address text: parse, resolve, format, and the errors for bad input. */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void roundtrip(const char *text, const char *expect)
{
    sk_addr a;
    char buf[SK_ADDR_STRLEN];
    assert_int_equal(sk_addr_parse(text, &a), 0);
    assert_int_equal(sk_addr_format(&a, buf, sizeof(buf)), (int)strlen(expect));
    assert_string_equal(buf, expect);
}

static void parse_and_format_every_form(void **state)
{
    (void)state;
    roundtrip("127.0.0.1:5188", "127.0.0.1:5188");
    roundtrip("[::1]:5188", "[::1]:5188");
    roundtrip("[2001:db8::1]:0", "[2001:db8::1]:0");
    roundtrip("*:80", "[::]:80");
    roundtrip("0.0.0.0:65535", "0.0.0.0:65535");
    roundtrip("10.1.2.3:00080", "10.1.2.3:80");
    roundtrip("unix:/tmp/x.sock", "unix:/tmp/x.sock");
    roundtrip("unix:relative.sock", "unix:relative.sock");
    roundtrip("unix:@abstract-name", "unix:@abstract-name");
}

static void parse_fills_the_socket_address(void **state)
{
    (void)state;
    sk_addr a;
    assert_int_equal(sk_addr_parse("127.0.0.1:5188", &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(sk_addr_port(&a), 5188);
    assert_int_equal(sk_addr_parse("[::1]:1", &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET6);
    assert_int_equal(sk_addr_port(&a), 1);
    assert_int_equal(sk_addr_parse("unix:/a", &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_UNIX);
    assert_int_equal(sk_addr_port(&a), -EINVAL);
}

static void bad_addresses_give_clear_errors(void **state)
{
    (void)state;
    sk_addr a;
    struct {
        const char *text;
        int err;
    } cases[] = {
        {"", SK_EADDR},
        {"127.0.0.1", SK_EPORT},
        {"127.0.0.1:", SK_EPORT},
        {"127.0.0.1:70000", SK_EPORT},
        {"127.0.0.1:-1", SK_EPORT},
        {"127.0.0.1:http", SK_EPORT},
        {"127.0.0.1:123456", SK_EPORT},
        {"[::1:80", SK_EADDR},
        {"[::1]", SK_EPORT},
        {"[::1]80", SK_EADDR},
        {"[]:80", SK_EADDR},
        {"[127.0.0.1]:80", SK_EADDR},
        {"::1:80", SK_EADDR},
        {":80", SK_EADDR},
        {"garbage", SK_EPORT},
        {"ga]rb[age:1", SK_EADDR},
        {"unix:", SK_EADDR},
        {"[zz::zz]:80", SK_EADDR},
        {"localhost:80", SK_EAI_NONAME}, /* parse never resolves */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = sk_addr_parse(cases[i].text, &a);
        if (rc != cases[i].err)
            fail_msg("'%s': got %d (%s), want %d", cases[i].text, rc, sk_strerror(rc),
                     cases[i].err);
        assert_string_not_equal(sk_strerror(rc), "unknown error");
    }
    assert_int_equal(sk_addr_parse(NULL, &a), -EINVAL);
    assert_int_equal(sk_addr_parse("1.2.3.4:5", NULL), -EINVAL);
}

static void unix_paths_are_never_truncated(void **state)
{
    (void)state;
    sk_addr a;
    char text[300] = "unix:/";
    size_t room = sizeof(a.u.un.sun_path); /* 108: the path and its NUL */
    memset(text + 6, 'p', room - 2);       /* "/" + 106 bytes: 107, fits */
    assert_int_equal(sk_addr_parse(text, &a), 0);
    strcat(text, "q"); /* 108 bytes: no room for the NUL */
    assert_int_equal(sk_addr_parse(text, &a), -ENAMETOOLONG);
    memset(text + 6, 'p', 250);
    assert_int_equal(sk_addr_parse(text, &a), -ENAMETOOLONG);
}

static void resolve_handles_names(void **state)
{
    (void)state;
    sk_addr a;
    char buf[SK_ADDR_STRLEN];
    assert_int_equal(sk_addr_resolve("localhost:5188", &a), 0);
    assert_true(sk_addr_format(&a, buf, sizeof(buf)) > 0);
    assert_true(strcmp(buf, "127.0.0.1:5188") == 0 || strcmp(buf, "[::1]:5188") == 0);
    assert_int_equal(sk_addr_resolve("127.0.0.1:9", &a), 0);
    assert_int_equal(sk_addr_resolve("nosuchhost.sk-test:9", &a), SK_EAI_NONAME);
    assert_int_equal(sk_addr_resolve("localhost", &a), SK_EPORT);
}

static void format_refuses_small_buffers(void **state)
{
    (void)state;
    sk_addr a;
    char buf[SK_ADDR_STRLEN];
    assert_int_equal(sk_addr_parse("[2001:db8::1]:65535", &a), 0);
    assert_int_equal(sk_addr_format(&a, buf, 10), -ENOSPC);
    assert_string_equal(buf, "");
    assert_int_equal(sk_addr_format(&a, buf, 20), 19);
    assert_int_equal(sk_addr_format(&a, buf, 19), -ENOSPC);
    assert_int_equal(sk_addr_format(NULL, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(sk_addr_format(&a, NULL, 5), -EINVAL);
    memset(&a, 0, sizeof(a));
    assert_int_equal(sk_addr_format(&a, buf, sizeof(buf)), -EINVAL); /* AF_UNSPEC */
}

static void longest_texts_fit_in_sk_addr_strlen(void **state)
{
    (void)state;
    sk_addr a;
    char buf[SK_ADDR_STRLEN];
    assert_int_equal(sk_addr_parse("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", &a), 0);
    assert_true(sk_addr_format(&a, buf, sizeof(buf)) > 0);
    char text[200] = "unix:/";
    memset(text + 6, 'x', 106);
    assert_int_equal(sk_addr_parse(text, &a), 0);
    assert_int_equal(sk_addr_format(&a, buf, sizeof(buf)), 5 + 107);
    assert_string_equal(buf, text);
}

static void local_and_peer_addresses(void **state)
{
    (void)state;
    char local[SK_ADDR_STRLEN], peer[SK_ADDR_STRLEN], want[SK_ADDR_STRLEN];
    int l = sk_listen("127.0.0.1:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int port = sk_local_port(l);
    assert_true(port > 0);
    int c = tu_dial("127.0.0.1", port);
    assert_true(c >= 0);
    int s = sk_accept(l, NULL);
    assert_true(s >= 0);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_true(sk_local_addr(l, local, sizeof(local)) > 0);
    assert_string_equal(local, want);
    assert_true(sk_peer_addr(c, peer, sizeof(peer)) > 0);
    assert_string_equal(peer, want);
    assert_true(sk_peer_addr(s, peer, sizeof(peer)) > 0);
    assert_true(sk_local_addr(c, local, sizeof(local)) > 0);
    assert_string_equal(peer, local);
    assert_int_equal(sk_peer_addr(l, peer, sizeof(peer)), -ENOTCONN);
    assert_int_equal(sk_peer_addr(-1, peer, sizeof(peer)), -EBADF);
    assert_int_equal(sk_local_addr(l, NULL, 0), -EINVAL);
    close(c);
    close(s);
    close(l);
}

static void ipv4_clients_of_dual_stack_read_as_ipv4(void **state)
{
    (void)state;
    if (!tu_have_ipv6())
        skip(); /* the machine has no IPv6 loopback */
    char peer[SK_ADDR_STRLEN];
    int l = sk_listen("*:0", SK_REUSE_ADDR, 0);
    assert_true(l >= 0);
    int c = tu_dial("127.0.0.1", sk_local_port(l));
    assert_true(c >= 0);
    sk_addr from;
    int s = sk_accept(l, &from);
    assert_true(s >= 0);
    assert_int_equal(from.u.sa.sa_family, AF_INET6); /* v4-mapped */
    assert_true(sk_addr_format(&from, peer, sizeof(peer)) > 0);
    assert_int_equal(strncmp(peer, "127.0.0.1:", 10), 0);
    close(c);
    close(s);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_and_format_every_form),
        cmocka_unit_test(parse_fills_the_socket_address),
        cmocka_unit_test(bad_addresses_give_clear_errors),
        cmocka_unit_test(unix_paths_are_never_truncated),
        cmocka_unit_test(resolve_handles_names),
        cmocka_unit_test(format_refuses_small_buffers),
        cmocka_unit_test(longest_texts_fit_in_sk_addr_strlen),
        cmocka_unit_test(local_and_peer_addresses),
        cmocka_unit_test(ipv4_clients_of_dual_stack_read_as_ipv4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
